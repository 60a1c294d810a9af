//! `connector-host new-connector`: the crate it writes builds as it is, passes its own tests
//! (the conformance kit among them), and its release `.so` loads into a running host and
//! sends.

use std::path::Path;
use std::process::Command;

use e2e_tests::{host_binary, workspace_root, CaptureServer, HostFolders, SEND_KEY};
use serde_json::{json, Value};

fn cargo_in(crate_dir: &Path, args: &[&str]) {
    // Output captured, shown on failure: the inner `test result:` lines must not reach this
    // run's output, where scripts/test counts them.
    let output = e2e_tests::cargo_command()
        .args(args)
        .current_dir(crate_dir)
        // One target folder for the out-of-tree builds (see compatibility.rs): shared deps.
        .env("CARGO_TARGET_DIR", workspace_root().join("target/compat"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo {args:?} failed in the scaffold:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_scaffolded_connector_builds_passes_its_tests_and_sends_through_a_host() {
    let scratch = tempfile::tempdir().unwrap();
    let output = Command::new(host_binary())
        .args(["new-connector", "acme-sms", "--dir"])
        .arg(scratch.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let crate_dir = scratch.path().join("acme-sms");
    assert!(String::from_utf8_lossy(&output.stdout).contains("cargo build --release"));

    // A second run never overwrites.
    let again = Command::new(host_binary())
        .args(["new-connector", "acme-sms", "--dir"])
        .arg(scratch.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));

    // The workspace's lock file pins the same dependency versions: no download, no drift.
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        crate_dir.join("Cargo.lock"),
    )
    .unwrap();
    cargo_in(&crate_dir, &["test"]);
    cargo_in(&crate_dir, &["build", "--release"]);
    let library = workspace_root().join("target/compat/release/libacme_sms.so");
    assert!(library.exists(), "{} was not built", library.display());

    let provider = CaptureServer::start(200, r#"{"id": "acme-message-1"}"#);
    let host = HostFolders::new(&[("libacme_sms.so", &library)]).start();
    let (status, created) = host.post(
        "/api/connectors",
        &json!({"connectorId": "acme-sms", "config": {
            "baseUrl": provider.url,
            "apiKey": "acme-key",
            "sender": "Acme",
            "templates": [{"usageType": "Generic", "content": "Your code is {{code}}"}]
        }}),
    );
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["config"]["apiKey"], "******");
    let (status, receipt) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": "+12015550123", "type": "SignIn", "payload": {"code": "777777"}})),
    );
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["providerMessageId"], "acme-message-1");
    let requests = provider.requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].request_line.starts_with("POST /messages "));
    assert_eq!(requests[0].header("authorization"), Some("Bearer acme-key"));
    let body: Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(
        body,
        json!({"from": "Acme", "to": "+12015550123", "text": "Your code is 777777"})
    );
}
