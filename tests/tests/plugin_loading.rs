//! The foundation end to end: real `.so` files, the real binary, HTTP.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use e2e_tests::{host_binary, plugin_file, TestHost};
use serde_json::Value;

fn scratch_file(dir: &tempfile::TempDir, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn mock_plugin_is_listed_with_its_metadata() {
    let host = TestHost::start(&[("mock.so", &plugin_file("mock_sms"))]);
    let (status, factories) = host.get("/api/connector-factories");
    assert_eq!(status, 200);
    let factories = factories.as_array().unwrap();
    assert_eq!(factories.len(), 1);
    let mock = &factories[0];
    assert_eq!(mock["id"], "mock-short-message-service");
    assert_eq!(mock["type"], "Sms");
    // A development connector: it sends nothing.
    assert_eq!(mock["isDemo"], true);
    assert_eq!(mock["name"]["en"], "Mock SMS Service");
    assert_eq!(mock["pluginVersion"], "0.1.0");
    assert_eq!(mock["pluginApiVersion"], plugin_api::PLUGIN_API_VERSION);
    assert!(mock["readme"]
        .as_str()
        .unwrap()
        .starts_with("# Mock SMS connector"));
    let template: Value = serde_json::from_str(mock["configTemplate"].as_str().unwrap()).unwrap();
    assert_eq!(template["templates"].as_array().unwrap().len(), 4);
    let keys: Vec<&str> = mock["formItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["templates", "outbox"]);

    let (status, one) = host.get("/api/connector-factories/mock-short-message-service");
    assert_eq!(
        (status, &one["id"]),
        (200, &Value::from("mock-short-message-service"))
    );

    let (status, missing) = host.get("/api/connector-factories/nope");
    assert_eq!(status, 404);
    assert_eq!(missing["code"], "entity.not_found");
    assert!(
        missing["message"].as_str().unwrap().contains("\"nope\""),
        "{missing}"
    );

    let (status, health) = host.get("/health");
    assert_eq!((status, &health["status"]), (200, &Value::from("ok")));
    let (status, unknown_route) = host.get("/api/nothing-here");
    assert_eq!(
        (status, &unknown_route["code"]),
        (404, &Value::from("request.route_not_found"))
    );
}

#[test]
fn every_bad_file_kind_is_rejected_with_its_message_while_the_host_serves() {
    let scratch = tempfile::tempdir().unwrap();
    let mock = plugin_file("mock_sms");
    let mock_bytes = std::fs::read(&mock).unwrap();
    let empty = scratch_file(&scratch, "empty", b"");
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let random = scratch_file(&scratch, "random", &random);
    let text = scratch_file(&scratch, "text", b"#!/bin/sh\necho not a library\n");
    let truncated = scratch_file(&scratch, "truncated", &mock_bytes[..mock_bytes.len() / 2]);
    // The same plugin with bytes appended: a different build (digest) with the same factory id.
    let mut other_build = mock_bytes.clone();
    other_build.extend_from_slice(b"another build");
    let other_build = scratch_file(&scratch, "other-build", &other_build);

    let old_api_refusal = format!(
        "incompatible plugin-api version: the plugin was built against 0.0.9, this host speaks {}",
        plugin_api::PLUGIN_API_VERSION
    );
    let expectations: Vec<(&str, PathBuf, &str)> = vec![
        ("a-mock.so", mock.clone(), ""),
        ("empty.so", empty, "not a shared object: the file is empty"),
        ("random.so", random, "not a shared object: no ELF header"),
        ("text.so", text, "not a shared object: no ELF header"),
        ("truncated.so", truncated, "not a shared object: malformed ELF file"),
        ("not-a-connector.so", plugin_file("fixture_not_a_connector"), "not a connector plugin: the library exports no abi_stable root module"),
        ("foreign-layout.so", plugin_file("fixture_foreign_layout"), "incompatible ABI: the plugin's root module layout differs from this host's (mismatched package: expected plugin-api, found fixture-foreign-layout)"),
        ("old-api.so", plugin_file("fixture_incompatible_version"), &old_api_refusal),
        ("panicking-metadata.so", plugin_file("fixture_panicking_metadata"), "cannot read metadata: the plugin panicked in metadata: deliberate panic in metadata"),
        ("no-english.so", plugin_file("fixture_metadata_without_english_name"), "invalid metadata: name has no `en` text"),
        ("duplicate-keys.so", plugin_file("fixture_metadata_with_duplicate_form_keys"), "invalid metadata: duplicate form item key \"option\""),
        ("unknown-type.so", plugin_file("fixture_metadata_with_unknown_form_type"), "invalid metadata: unknown variant `Slider`"),
        ("z-other-build.so", other_build, "factory id \"mock-short-message-service\" is already provided by"),
    ];
    let plugins: Vec<(&str, &std::path::Path)> = expectations
        .iter()
        .map(|(name, path, _)| (*name, path.as_path()))
        .collect();
    let mut host = TestHost::start(&plugins);

    let (status, factories) = host.get("/api/connector-factories");
    assert_eq!(status, 200);
    let ids: Vec<&str> = factories
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["mock-short-message-service"]);

    let (status, files) = host.get("/api/plugins");
    assert_eq!(status, 200);
    let files = files.as_array().unwrap();
    assert_eq!(files.len(), expectations.len());
    let refused_at_load = |name: &str, expected_error: &str| {
        // A file that may still be being written is not a refusal yet: it waits for its next change.
        !expected_error.is_empty() && name != "empty.so" && name != "truncated.so"
    };
    let log = host.log_eventually(|log| {
        expectations
            .iter()
            .filter(|(name, _, expected_error)| refused_at_load(name, expected_error))
            .all(|(name, _, _)| {
                log.lines()
                    .any(|line| line.contains("plugin rejected") && line.contains(*name))
            })
    });
    for (name, _, expected_error) in &expectations {
        let report = files
            .iter()
            .find(|file| {
                file["path"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("/{name}"))
            })
            .unwrap_or_else(|| panic!("no report for {name}"));
        if expected_error.is_empty() {
            assert_eq!(report["status"], "loaded", "{name}: {report}");
            continue;
        }
        let expected_status = if refused_at_load(name, expected_error) {
            "rejected"
        } else {
            "incomplete"
        };
        assert_eq!(report["status"], expected_status, "{name}: {report}");
        let error = report["error"].as_str().unwrap();
        assert!(
            error.starts_with(expected_error),
            "{name}: {error:?} should start with {expected_error:?}"
        );
        assert!(
            !error.contains('\n'),
            "{name}: the reason must be one line: {error:?}"
        );
        if expected_status == "rejected" {
            let logged = log.lines().any(|line| {
                line.contains("plugin rejected")
                    && line.contains(*name)
                    && line.contains(error.split(':').next().unwrap())
            });
            assert!(logged, "{name} not logged:\n{log}");
        }
    }
    // The full layout report stays available, at debug level only.
    assert!(log.contains("abi_stable layout report"), "{log}");
    assert!(host.is_running());
}

#[test]
fn check_prints_metadata_or_the_one_line_reason_with_exit_status() {
    let mock = plugin_file("mock_sms");
    let output = Command::new(host_binary())
        .arg("check")
        .arg(&mock)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("loaded") && text.contains("factory id:         mock-short-message-service"),
        "{text}"
    );

    let output = Command::new(host_binary())
        .arg("check")
        .arg(&mock)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["loaded"], true);
    assert_eq!(report["metadata"]["id"], "mock-short-message-service");
    assert_eq!(report["sha256"].as_str().unwrap().len(), 64);

    let scratch = tempfile::tempdir().unwrap();
    let mut text_file = std::fs::File::create(scratch.path().join("notes.so")).unwrap();
    text_file.write_all(b"hello").unwrap();
    let output = Command::new(host_binary())
        .arg("check")
        .arg(scratch.path().join("notes.so"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("refused: not a shared object: no ELF header"),
        "{text}"
    );

    let output = Command::new(host_binary())
        .arg("check")
        .arg(plugin_file("fixture_foreign_layout"))
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["loaded"], false);
    assert!(report["error"]
        .as_str()
        .unwrap()
        .starts_with("incompatible ABI"));

    let output = Command::new(host_binary())
        .arg("check")
        .arg(scratch.path().join("missing.so"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8(output.stdout)
        .unwrap()
        .contains("refused: cannot read the file"));
}

/// `serve` disables core dumps at start-up: `RLIMIT_CORE` 0 (soft and hard, even when it
/// started with a higher limit) and non-dumpable, which the kernel shows by giving
/// `/proc/<pid>/status` to root instead of the host's user. `--allow-core-dumps` leaves both.
/// Run as root, the host is started as `nobody` so the owner tells the two apart.
#[test]
fn serve_disables_core_dumps_unless_allowed() {
    use std::io::BufRead;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;

    const NOBODY: u32 = 65534;
    let as_root = rustix::process::geteuid().is_root();
    if !as_root {
        eprintln!(
            "note: not run as root; the host runs as this user, and the dumpable check is skipped"
        );
    }
    for allow_core_dumps in [false, true] {
        let scratch = tempfile::tempdir().unwrap();
        let plugins = scratch.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        if as_root {
            std::os::unix::fs::chown(scratch.path(), Some(NOBODY), Some(NOBODY)).unwrap();
            std::os::unix::fs::chown(&plugins, Some(NOBODY), Some(NOBODY)).unwrap();
        }
        let mut command = std::process::Command::new(e2e_tests::host_binary());
        command
            .arg("serve")
            .arg("--plugins")
            .arg(&plugins)
            .arg("--data")
            .arg(scratch.path().join("data"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-key",
                e2e_tests::ADMIN_KEY,
            ])
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        if allow_core_dumps {
            command.arg("--allow-core-dumps");
        }
        if as_root {
            command.uid(NOBODY).gid(NOBODY);
        }
        // SAFETY: between fork and exec only getrlimit and setrlimit run, plain system calls.
        unsafe {
            command.pre_exec(|| {
                // Start with core dumps allowed up to the hard limit, so 0 is the host's doing.
                let limit = rustix::process::getrlimit(rustix::process::Resource::Core);
                let raised = rustix::process::Rlimit {
                    current: limit.maximum,
                    maximum: limit.maximum,
                };
                rustix::process::setrlimit(rustix::process::Resource::Core, raised)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn().unwrap();
        let mut first_line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first_line)
            .unwrap();
        let pid = child.id();
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let status_owner = std::fs::metadata(format!("/proc/{pid}/status"))
            .unwrap()
            .uid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(first_line.starts_with("listening on "), "{first_line:?}");
        let core_limit: Vec<&str> = limits
            .lines()
            .find_map(|line| line.strip_prefix("Max core file size"))
            .unwrap()
            .split_whitespace()
            .collect();
        if allow_core_dumps {
            assert_ne!(core_limit[..2], ["0", "0"], "{limits}");
        } else {
            assert_eq!(core_limit, ["0", "0", "bytes"], "{limits}");
        }
        if as_root {
            assert!(
                status.lines().any(|line| line.starts_with("Uid:\t65534\t")),
                "{status}"
            );
            let expected_owner = if allow_core_dumps { NOBODY } else { 0 };
            assert_eq!(
                status_owner, expected_owner,
                "owner of /proc/{pid}/status (allow_core_dumps: {allow_core_dumps})"
            );
        }
    }
}
