//! Running the host as operators do: `serve` configured from a TOML file (`--config`), and
//! `config show`.

use std::process::Command;

use e2e_tests::{host_binary, plugin_file, HostFolders, ADMIN_KEY};

#[test]
fn serve_takes_its_flags_from_a_config_file_below_the_command_line() {
    let folders = HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))]);
    let config = folders
        .data_dir
        .parent()
        .unwrap()
        .join("connector-host.toml");
    std::fs::write(
        &config,
        format!(
            "# as an operator writes it\nadmin-key = \"{ADMIN_KEY}\"\nprotection = \"monitor\"\nprefix-velocity-max = 3\nip-velocity-max = 7\nallowed-countries = [\"US\", \"CA\"]\n"
        ),
    )
    .unwrap();
    let host = folders.start_with_args(&[
        "--config",
        config.to_str().unwrap(),
        "--ip-velocity-max",
        "9",
    ]);
    // The file's admin key is the one accepted.
    let (status, protection) = host.get("/api/protection");
    assert_eq!(status, 200, "{protection}");
    assert_eq!(protection["mode"], "monitor", "{protection}");
    assert_eq!(
        protection["settings"]["prefixVelocityMax"], 3,
        "{protection}"
    );
    assert_eq!(protection["settings"]["ipVelocityMax"], 9, "{protection}");
    let (status, body) = host.post(
        "/api/connectors",
        &serde_json::json!({"connectorId": "mock-short-message-service", "config": {"templates": [{"usageType": "Generic", "content": "{{code}}"}]}}),
    );
    assert_eq!(status, 200, "{body}");
    // A country the file does not allow is refused; one it allows is sent.
    let (status, body) = host.post(
        "/api/messages",
        &serde_json::json!({"to": "+12015550123", "type": "Generic", "payload": {"code": "1"}}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = host.post(
        "/api/messages",
        &serde_json::json!({"to": "+442071838750", "type": "Generic", "payload": {"code": "1"}}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "guard.phone_country_not_allowed", "{body}");
}

#[test]
fn config_show_prints_the_effective_values_with_their_sources_and_masks_secrets() {
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("host.toml");
    std::fs::write(
        &config,
        "admin-key = \"a-long-admin-key\"\ndatabase-url = \"postgres://app:s3cret@db.internal/hosts\"\nmax-in-flight = 64\nlisten = \"127.0.0.1:4100\"\n",
    )
    .unwrap();
    let output = Command::new(host_binary())
        .args(["config", "show", "--config"])
        .arg(&config)
        .args(["--max-in-flight", "128"])
        .env("CONNECTOR_HOST_LISTEN", "127.0.0.1:4200")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let shown = String::from_utf8(output.stdout).unwrap();
    for line in [
        "admin-key = \"******\"  # config file",
        "database-url = \"postgres://app:******@db.internal/hosts\"  # config file",
        "max-in-flight = 128  # command line",
        "listen = \"127.0.0.1:4200\"  # environment",
        "protection = \"enforce\"  # default",
    ] {
        assert!(
            shown.lines().any(|shown| shown == line),
            "{line} in\n{shown}"
        );
    }
    assert!(
        !shown.contains("s3cret") && !shown.contains("a-long-admin-key"),
        "{shown}"
    );

    // An unknown key: the host does not start, and says which and where.
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nmax-inflight = 5\n").unwrap();
    let output = Command::new(host_binary())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("host.toml:2: unknown key `max-inflight`")
            && stderr.contains("did you mean `max-in-flight`?"),
        "{stderr}"
    );
}
