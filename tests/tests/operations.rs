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

/// TLS to PostgreSQL with a private CA, each `sslmode` as libpq means it. The server's
/// certificate names `db.internal` only; the host reaches it at 127.0.0.1 (`hostaddr`).
#[test]
fn postgresql_over_tls_with_a_private_ca_means_each_sslmode_as_libpq_does() {
    use e2e_tests::postgres::{PostgresCluster, TestCa};
    use e2e_tests::SharedDatabase;

    let ca = TestCa::new("connector-host test CA");
    let someone_elses_ca = TestCa::new("another CA");
    let (certificate, key) = ca.server_certificate("DNS:db.internal");
    let cluster = std::sync::Arc::new(PostgresCluster::start());
    cluster.enable_tls(&certificate, &key);
    let database = SharedDatabase::create(&cluster);
    let port = database
        .url
        .rsplit_once(':')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let by_name = format!(
        "postgres://postgres@db.internal:{port}/{}?hostaddr=127.0.0.1",
        database.name
    );
    let by_address = format!("postgres://postgres@127.0.0.1:{port}/{}?", database.name);
    let on = |url: String| {
        let mut database = database.clone();
        database.url = url;
        HostFolders::on_database(&[("mock.so", &plugin_file("mock_sms"))], &database)
    };
    let ca_file = ca.certificate.display().to_string();
    let other_ca_file = someone_elses_ca.certificate.display().to_string();
    let sessions_over_tls = || {
        database
            .psql("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name = 'connector-host'")
            .trim()
            .parse::<u32>()
            .unwrap()
    };

    // verify-full: the chain and the name; the host serves, over TLS.
    let host = on(format!(
        "{by_name}&sslmode=verify-full&sslrootcert={ca_file}"
    ))
    .start();
    assert_eq!(host.get("/api/connectors").0, 200);
    assert!(sessions_over_tls() > 0);
    drop(host);

    // verify-full at an address the certificate does not name: refused, and said why.
    let refused = on(format!(
        "{by_address}sslmode=verify-full&sslrootcert={ca_file}"
    ))
    .refused_start();
    assert!(
        refused.contains("NotValidForName") || refused.contains("not valid for"),
        "{refused}"
    );

    // verify-ca checks the chain only: the same address is fine...
    let host = on(format!(
        "{by_address}sslmode=verify-ca&sslrootcert={ca_file}"
    ))
    .start();
    assert_eq!(host.get("/api/connectors").0, 200);
    drop(host);
    // ...but not a certificate another CA signed.
    let refused = on(format!(
        "{by_address}sslmode=verify-ca&sslrootcert={other_ca_file}"
    ))
    .refused_start();
    assert!(
        refused.contains("UnknownIssuer") || refused.contains("unknown issuer"),
        "{refused}"
    );

    // require without a CA encrypts and checks nothing, as libpq's does; with one it is
    // verify-ca.
    let host = on(format!("{by_address}sslmode=require")).start();
    assert_eq!(host.get("/api/connectors").0, 200);
    assert!(sessions_over_tls() > 0);
    drop(host);
    let refused = on(format!(
        "{by_address}sslmode=require&sslrootcert={other_ca_file}"
    ))
    .refused_start();
    assert!(
        refused.contains("UnknownIssuer") || refused.contains("unknown issuer"),
        "{refused}"
    );

    // A mode libpq does not have: a clear refusal before any connection.
    let refused = on(format!("{by_address}sslmode=strict")).refused_start();
    assert!(
        refused.contains(
            "sslmode=strict is not one of disable, prefer, require, verify-ca, verify-full"
        ),
        "{refused}"
    );
}

/// What systemd's `MemoryDenyWriteExecute=yes` (deploy/connector-host.service) allows: every
/// bundled plugin loads and the live one sends under the kernel's equivalent, `PR_SET_MDWE`
/// (the spawn fails if the kernel refuses it, so this cannot pass without it).
#[test]
fn every_bundled_plugin_loads_and_sends_without_writable_executable_memory() {
    let plugins = [
        ("mock.so", plugin_file("mock_sms")),
        ("http.so", plugin_file("http_sms")),
        ("twilio.so", plugin_file("twilio_sms")),
        ("vonage.so", plugin_file("vonage_sms")),
        ("kannel.so", plugin_file("kannel_sms")),
    ];
    let plugins: Vec<(&str, &std::path::Path)> = plugins
        .iter()
        .map(|(name, path)| (*name, path.as_path()))
        .collect();
    let mut folders = HostFolders::new(&plugins);
    folders.deny_write_execute_memory = true;
    let host = folders.start();
    let (status, factories) = host.get("/api/connector-factories");
    assert_eq!(status, 200, "{factories}");
    assert_eq!(factories.as_array().map(Vec::len), Some(5), "{factories}");
    let (status, body) = host.post(
        "/api/connectors",
        &serde_json::json!({"connectorId": "mock-short-message-service", "config": {"templates": [{"usageType": "Generic", "content": "{{code}}"}]}}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = host.post(
        "/api/messages",
        &serde_json::json!({"to": "+12015550123", "type": "Generic", "payload": {"code": "1"}}),
    );
    assert_eq!(status, 200, "{body}");
}

/// The unit in deploy/ is valid and rates at most 2.0 in `systemd-analyze security` (offline:
/// no running systemd needed).
#[test]
fn the_systemd_unit_verifies_and_rates_at_most_two() {
    let scratch = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/connector-host.service"),
    )
    .unwrap();
    // `verify` checks that ExecStart's program exists: the one just built.
    let unit_file = scratch.path().join("connector-host.service");
    std::fs::write(
        &unit_file,
        unit.replace(
            "/usr/local/bin/connector-host",
            &host_binary().display().to_string(),
        ),
    )
    .unwrap();
    let analyze = |args: &[&str]| {
        Command::new("systemd-analyze")
            .args(args)
            .arg(&unit_file)
            .output()
            .expect("systemd-analyze (Debian's systemd package) runs")
    };
    let verify = analyze(&["verify"]);
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = analyze(&["security", "--offline=true", "--no-pager"]);
    let report = String::from_utf8_lossy(&security.stdout).into_owned()
        + &String::from_utf8_lossy(&security.stderr);
    let score: f64 = report
        .lines()
        .find_map(|line| {
            line.split("Overall exposure level for connector-host.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    assert!(score <= 2.0, "exposure {score}:\n{report}");
}
