//! `connector-host new-connector`: the crate it writes, in a folder outside this workspace,
//! builds against plugin-api *as packaged* for the `connector-host` registry (the `.crate`
//! `cargo package` makes, served in place of the registry), passes its own tests (the
//! conformance kit among them), and its release `.so` loads into a running host and sends.

use std::path::{Path, PathBuf};
use std::process::Command;

use connector_host::scaffold::PLACEHOLDER_REGISTRY_INDEX;
use e2e_tests::{host_binary, workspace_root, CaptureServer, HostFolders, SEND_KEY};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// `cargo package -p plugin-api` (its `.crate` is what a vendor downloads from the registry),
/// unpacked into `scratch` as a directory source, and a cargo config file that serves it in
/// place of the `connector-host` registry at `index`: the scaffold builds against exactly the
/// packaged files, and nothing asks the registry (the placeholder index does not resolve). Returns the config file and the `.crate`'s SHA-256, which the
/// scaffold's Cargo.lock must then record.
fn serve_packaged_plugin_api(scratch: &Path, index: &str) -> (PathBuf, String) {
    let target_dir = workspace_root().join("target/compat");
    let output = e2e_tests::cargo_command()
        .args(["package", "-p", "plugin-api", "--locked", "--no-verify"])
        // A developer's uncommitted changes are what they want tested.
        .arg("--allow-dirty")
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(workspace_root())
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo package -p plugin-api failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let crate_file = target_dir.join(format!(
        "package/plugin-api-{}.crate",
        plugin_api::PLUGIN_API_VERSION
    ));
    let crate_bytes = std::fs::read(&crate_file)
        .unwrap_or_else(|error| panic!("{}: {error}", crate_file.display()));
    let checksum = format!("{:x}", Sha256::digest(&crate_bytes));

    // A directory source (`cargo vendor`'s layout): one folder per crate, each with a
    // `.cargo-checksum.json` giving the package's checksum (no per-file sums needed).
    let packages = scratch.join("packaged");
    std::fs::create_dir_all(&packages).unwrap();
    let unpacked = Command::new("tar")
        .arg("-xzf")
        .arg(&crate_file)
        .arg("-C")
        .arg(&packages)
        .status()
        .expect("tar runs");
    assert!(
        unpacked.success(),
        "tar could not unpack {}",
        crate_file.display()
    );
    let package_dir = packages.join(format!("plugin-api-{}", plugin_api::PLUGIN_API_VERSION));
    std::fs::write(
        package_dir.join(".cargo-checksum.json"),
        json!({"files": {}, "package": checksum}).to_string(),
    )
    .unwrap();
    // The source manifest stands alone, so the folder builds wherever it is copied:
    // nothing inherited from the workspace (`cargo package` would resolve it silently).
    let manifest = std::fs::read_to_string(workspace_root().join("plugin-api/Cargo.toml")).unwrap();
    assert!(!manifest.contains("workspace = true"), "{manifest}");

    let config = scratch.join("packaged-plugin-api.toml");
    std::fs::write(
        &config,
        format!(
            "[source.connector-host]\nregistry = {index:?}\nreplace-with = \"packaged-plugin-api\"\n\n[source.packaged-plugin-api]\ndirectory = {:?}\n",
            packages.display().to_string()
        ),
    )
    .unwrap();
    (config, checksum)
}

fn cargo_in(crate_dir: &Path, config: &Path, args: &[&str]) {
    // Output captured, shown on failure: the inner `test result:` lines must not reach this
    // run's output, where scripts/test counts them.
    let output = e2e_tests::cargo_command()
        .arg("--config")
        .arg(config)
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
    let next_steps = String::from_utf8_lossy(&output.stdout);
    assert!(next_steps.contains("cargo build --release"), "{next_steps}");
    // The default index is a placeholder, and the output says to replace it.
    assert!(next_steps.contains(".cargo/config.toml"), "{next_steps}");

    // A second run never overwrites.
    let again = Command::new(host_binary())
        .args(["new-connector", "acme-sms", "--dir"])
        .arg(scratch.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));

    // The workspace's lock file pins the same dependency versions: no download, no drift.
    // plugin-api in it is the workspace's path package; the scaffold's build locks the
    // registry's instead.
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        crate_dir.join("Cargo.lock"),
    )
    .unwrap();
    let (config, checksum) = serve_packaged_plugin_api(scratch.path(), PLACEHOLDER_REGISTRY_INDEX);
    cargo_in(&crate_dir, &config, &["test"]);
    cargo_in(&crate_dir, &config, &["build", "--release"]);
    // Built against the packaged copy, locked as a registry package: the `.crate`'s checksum.
    let lock = std::fs::read_to_string(crate_dir.join("Cargo.lock")).unwrap();
    let plugin_api_entry = format!(
        "name = \"plugin-api\"\nversion = \"{}\"\nsource = \"{PLACEHOLDER_REGISTRY_INDEX}\"\nchecksum = \"{checksum}\"\n",
        plugin_api::PLUGIN_API_VERSION
    );
    assert!(lock.contains(&plugin_api_entry), "{lock}");
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
