//! The live plugins folder end to end: drop-in, partial writes, upgrades of the live
//! connector under load, broken upgrades, removal, trust, allowlist, bursts of events, a
//! config migrated by a new build (or refused without a migration), superseded rows collapsed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_tests::{plugin_file, HostFolders, TestHost, ADMIN_KEY, SEND_KEY, UNLIMITED_FLOOD_FLAGS};
use serde_json::{json, Value};

const MOCK: &str = "mock-short-message-service";
const PHONE: &str = "+12015550123";

/// Copies under a hidden temporary name, then renames into place: the recommended drop-in.
fn drop_in(plugins_dir: &Path, source: &Path, name: &str) {
    let temporary = plugins_dir.join(format!(".{name}.tmp"));
    std::fs::copy(source, &temporary).unwrap();
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::rename(&temporary, plugins_dir.join(name)).unwrap();
}

fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

fn factory_ids(host: &TestHost) -> Vec<String> {
    let (_, factories) = host.get("/api/connector-factories");
    factories
        .as_array()
        .unwrap()
        .iter()
        .map(|factory| factory["id"].as_str().unwrap().to_owned())
        .collect()
}

fn file_reports(host: &TestHost) -> Vec<Value> {
    host.get("/api/plugins").1.as_array().unwrap().clone()
}

fn report_for<'a>(reports: &'a [Value], name: &str, status: &str) -> Option<&'a Value> {
    reports.iter().find(|report| {
        report["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{name}"))
            && report["status"] == status
    })
}

/// The one-line reason the file's current content is refused.
fn rejection_reason(host: &TestHost, name: &str) -> String {
    let reports = file_reports(host);
    let report = report_for(&reports, name, "rejected")
        .unwrap_or_else(|| panic!("{name} is not rejected: {reports:?}"));
    report["error"].as_str().unwrap().to_owned()
}

/// These tests send to one number again and again until a plugin change lands: a load, not
/// users, so the protection layers that stop exactly that and the recipient's limit are off.
fn sending_without_pause() -> Vec<&'static str> {
    ["--admin-key", ADMIN_KEY, "--send-key", SEND_KEY]
        .into_iter()
        .chain(UNLIMITED_FLOOD_FLAGS)
        .collect()
}

fn send(host: &TestHost) -> (u16, Value) {
    host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "1"}})),
    )
}

fn make_mock_live(host: &TestHost) -> String {
    let config =
        json!({"templates": [{"usageType": "Generic", "content": "{{code}}"}], "outbox": false});
    let (status, connector) = host.post(
        "/api/connectors",
        &json!({"connectorId": MOCK, "config": config}),
    );
    assert_eq!(status, 200, "{connector}");
    connector["id"].as_str().unwrap().to_owned()
}

#[test]
fn a_plugin_renamed_into_the_folder_is_listed_promptly() {
    for watch in [
        vec![],
        vec![
            "--plugins-watch",
            "poll",
            "--plugins-poll-interval-ms",
            "200",
        ],
    ] {
        let folders = HostFolders::new(&[]);
        let mut args = vec!["--admin-key", ADMIN_KEY, "--send-key", SEND_KEY];
        args.extend(watch.iter().copied());
        let host = folders.start_with_args(&args);
        assert!(factory_ids(&host).is_empty());
        // A hidden temporary name is ignored while the copy runs.
        let temporary = host.plugins_dir.join(".mock.so.tmp");
        std::fs::copy(plugin_file("mock_sms"), &temporary).unwrap();
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        assert!(factory_ids(&host).is_empty() && file_reports(&host).is_empty());
        let renamed_at = Instant::now();
        std::fs::rename(&temporary, host.plugins_dir.join("mock.so")).unwrap();
        wait_until("the factory to be listed", Duration::from_secs(10), || {
            factory_ids(&host) == [MOCK]
        });
        let latency = renamed_at.elapsed();
        eprintln!(
            "drop-in latency ({}): {latency:?}",
            if watch.is_empty() {
                "inotify"
            } else {
                "poll 200 ms"
            }
        );
        // The 1-second target is measured on release builds by `bench -- plugins`; this debug
        // build on a shared machine only has to be listed (no timed assertion here).
    }
}

#[test]
fn a_slow_chunked_copy_is_never_loaded_half_written() {
    let host = HostFolders::new(&[]).start_with_args(&sending_without_pause());
    let content = std::fs::read(plugin_file("mock_sms")).unwrap();
    let path = host.plugins_dir.join("mock.so");
    let mut file = std::fs::File::create(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let chunk = content.len() / 6 + 1;
    for piece in content.chunks(chunk) {
        use std::io::Write;
        file.write_all(piece).unwrap();
        file.flush().unwrap();
        std::thread::sleep(Duration::from_millis(250));
        let reports = file_reports(&host);
        assert!(
            report_for(&reports, "mock.so", "rejected").is_none(),
            "a partial file was refused: {reports:?}"
        );
    }
    drop(file);
    wait_until("the copied plugin to load", Duration::from_secs(5), || {
        factory_ids(&host) == [MOCK]
    });
    assert!(!host.log().contains("plugin rejected"), "{}", host.log());
}

#[test]
fn upgrading_the_live_plugin_under_continuous_sends_fails_nothing() {
    // Sends to one number without pause for as long as the upgrade takes (a load, not a
    // user): the protection layers that stop such a flood are off.
    let mut args = vec!["--admin-key", ADMIN_KEY, "--send-key", SEND_KEY];
    args.extend(UNLIMITED_FLOOD_FLAGS);
    let host =
        Arc::new(HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))]).start_with_args(&args));
    make_mock_live(&host);
    let stop = Arc::new(AtomicBool::new(false));
    let receipts = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..3)
        .map(|_| {
            let (host, stop, receipts) =
                (Arc::clone(&host), Arc::clone(&stop), Arc::clone(&receipts));
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match send(&host) {
                        (200, receipt) => receipts
                            .lock()
                            .unwrap()
                            .push(receipt["providerMessageId"].as_str().unwrap().to_owned()),
                        (status, body) => failures.push(format!("{status} {body}")),
                    }
                }
                failures
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    drop_in(
        &host.plugins_dir,
        &plugin_file("fixture_mock_sms_next"),
        "mock.so",
    );
    wait_until(
        "receipts from the new build",
        Duration::from_secs(10),
        || {
            receipts
                .lock()
                .unwrap()
                .iter()
                .any(|id| id.starts_with("mock-0.2.0-"))
        },
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = senders
        .into_iter()
        .flat_map(|sender| sender.join().unwrap())
        .collect();
    assert!(
        failures.is_empty(),
        "sends failed during the upgrade: {failures:?}"
    );
    let receipts = receipts.lock().unwrap();
    assert!(
        receipts.iter().any(|id| id.starts_with("mock-0.1.0-")),
        "sends before the upgrade"
    );
    let last = receipts.last().unwrap();
    assert!(
        last.starts_with("mock-0.2.0-"),
        "sends after the upgrade use the new build: {last}"
    );

    let reports = file_reports(&host);
    assert_eq!(
        report_for(&reports, "mock.so", "loaded").unwrap()["pluginVersion"],
        "0.2.0"
    );
    assert_eq!(
        report_for(&reports, "mock.so", "superseded").unwrap()["pluginVersion"],
        "0.1.0"
    );
    assert!(host
        .log_eventually(|log| log.contains("live connector moved to the new plugin build"))
        .contains("live connector moved to the new plugin build"));
}

#[test]
fn a_broken_upgrade_keeps_the_old_code_serving() {
    let host = HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))])
        .start_with_args(&sending_without_pause());
    make_mock_live(&host);
    drop_in(
        &host.plugins_dir,
        &plugin_file("fixture_foreign_layout"),
        "mock.so",
    );
    wait_until(
        "the broken build to be reported",
        Duration::from_secs(5),
        || report_for(&file_reports(&host), "mock.so", "rejected").is_some(),
    );
    let error = rejection_reason(&host, "mock.so");
    assert!(
        error.starts_with("incompatible ABI") && error.contains("keeps serving"),
        "{error}"
    );
    assert_eq!(
        factory_ids(&host),
        [MOCK],
        "the factory stays, on the old build"
    );
    let (status, receipt) = send(&host);
    assert_eq!(status, 200, "{receipt}");
    assert!(receipt["providerMessageId"]
        .as_str()
        .unwrap()
        .starts_with("mock-0.1.0-"));

    // A good build afterwards is taken up.
    drop_in(
        &host.plugins_dir,
        &plugin_file("fixture_mock_sms_next"),
        "mock.so",
    );
    wait_until("the good build", Duration::from_secs(5), || {
        send(&host).1["providerMessageId"]
            .as_str()
            .unwrap_or_default()
            .starts_with("mock-0.2.0-")
    });
}

/// Two files providing one factory: the file already serving it keeps it, and the other (a
/// renamed copy, here sorting first by name) is refused with a stated, logged reason. The
/// operator decides otherwise by removing a file: then the copy takes over.
#[test]
fn a_renamed_copy_never_takes_a_serving_plugin_s_place() {
    let host = HostFolders::new(&[("libmock_sms.so", &plugin_file("mock_sms"))])
        .start_with_args(&sending_without_pause());
    make_mock_live(&host);
    drop_in(
        &host.plugins_dir,
        &plugin_file("mock_sms"),
        "liba_copy_sms.so",
    );
    wait_until("the copy to be refused", Duration::from_secs(10), || {
        report_for(&file_reports(&host), "liba_copy_sms.so", "rejected").is_some()
    });
    let reports = file_reports(&host);
    assert!(
        report_for(&reports, "libmock_sms.so", "loaded").is_some(),
        "the original keeps serving: {reports:?}"
    );
    let reason = rejection_reason(&host, "liba_copy_sms.so");
    assert!(
        reason.contains("is already provided by")
            && reason.contains("libmock_sms.so")
            && reason.contains("keeps serving"),
        "{reason}"
    );
    host.log_eventually(|log| {
        log.lines()
            .any(|line| line.contains("plugin rejected") && line.contains("liba_copy_sms.so"))
    });
    let (status, receipt) = send(&host);
    assert_eq!((status, receipt["factoryId"].as_str()), (200, Some(MOCK)));

    // The original removed: the copy provides the factory now.
    std::fs::remove_file(host.plugins_dir.join("libmock_sms.so")).unwrap();
    wait_until("the copy to take over", Duration::from_secs(10), || {
        report_for(&file_reports(&host), "liba_copy_sms.so", "loaded").is_some()
    });
    assert_eq!(factory_ids(&host), [MOCK]);
}

#[test]
fn removing_a_file_removes_its_factory_and_orphans_the_live_connector() {
    let host = HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))])
        .start_with_args(&sending_without_pause());
    let connector_id = make_mock_live(&host);
    std::fs::remove_file(host.plugins_dir.join("mock.so")).unwrap();
    wait_until("the factory to go", Duration::from_secs(5), || {
        factory_ids(&host).is_empty()
    });
    let reports = file_reports(&host);
    assert!(
        report_for(&reports, "mock.so", "removed").is_some(),
        "{reports:?}"
    );
    let (status, receipt) = send(&host);
    assert_eq!(
        status, 200,
        "the live connector keeps working on the loaded code: {receipt}"
    );
    let (_, connector) = host.get(&format!("/api/connectors/{connector_id}"));
    assert_eq!(
        (connector["orphaned"].clone(), connector["loaded"].clone()),
        (json!(true), json!(true)),
        "{connector}"
    );
    // Its plugin returns: no longer orphaned.
    drop_in(&host.plugins_dir, &plugin_file("mock_sms"), "mock.so");
    wait_until("the factory to return", Duration::from_secs(5), || {
        factory_ids(&host) == [MOCK]
    });
    assert_eq!(
        host.get(&format!("/api/connectors/{connector_id}")).1["orphaned"],
        false
    );
}

#[test]
fn untrusted_files_and_folders_are_refused() {
    let folders = HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))]);
    let plugins_dir = folders.plugins_dir.clone();
    std::fs::set_permissions(
        plugins_dir.join("mock.so"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let host = folders.start();
    let error = rejection_reason(&host, "mock.so");
    assert!(
        error.contains("is writable by group or others (mode 666)"),
        "{error}"
    );
    assert!(factory_ids(&host).is_empty());

    std::fs::set_permissions(
        plugins_dir.join("mock.so"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    wait_until("the fixed file to load", Duration::from_secs(5), || {
        factory_ids(&host) == [MOCK]
    });

    // The folder itself: nothing new loads from a world-writable folder.
    std::fs::set_permissions(&plugins_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    drop_in(
        &plugins_dir,
        &plugin_file("fixture_request_building_connector"),
        "rb.so",
    );
    wait_until("the refusal", Duration::from_secs(5), || {
        report_for(&file_reports(&host), "rb.so", "rejected").is_some()
    });
    let error = rejection_reason(&host, "rb.so");
    assert!(
        error.starts_with("plugins folder") && error.contains("writable by group or others"),
        "{error}"
    );
    assert!(!factory_ids(&host).contains(&"request-building-test-connector".to_owned()));
    std::fs::set_permissions(&plugins_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (status, _) = host.post("/api/plugins/rescan", &json!({}));
    assert_eq!(status, 200);
    assert!(factory_ids(&host).contains(&"request-building-test-connector".to_owned()));
}

#[test]
fn only_allowlisted_builds_load() {
    let mock_sha = {
        let scratch = tempfile::tempdir().unwrap();
        let loader =
            connector_host::plugins::loader::PluginLoader::new(scratch.path().join("c"), None)
                .unwrap();
        loader.load(&plugin_file("mock_sms")).unwrap().sha256
    };
    let folders = HostFolders::new(&[
        ("mock.so", &plugin_file("mock_sms")),
        ("rb.so", &plugin_file("fixture_request_building_connector")),
    ]);
    let host = folders.start_with_args(&[
        "--admin-key",
        ADMIN_KEY,
        "--allowed-plugin-sha256",
        &mock_sha,
    ]);
    assert_eq!(factory_ids(&host), [MOCK]);
    let error = rejection_reason(&host, "rb.so");
    assert!(error.starts_with("not in allowlist"), "{error}");
}

#[test]
fn a_burst_of_fifty_file_events_settles_to_the_right_final_state() {
    let host = HostFolders::new(&[]).start_with_args(&sending_without_pause());
    let builds: [PathBuf; 3] = [
        plugin_file("mock_sms"),
        plugin_file("fixture_mock_sms_next"),
        plugin_file("fixture_request_building_connector"),
    ];
    for round in 0..50 {
        let name = format!("p{}.so", round % 5);
        if round % 7 == 6 {
            let _ = std::fs::remove_file(host.plugins_dir.join(&name));
        } else {
            drop_in(&host.plugins_dir, &builds[round % 3], &name);
        }
    }
    // The final state is the last operation on each name, replayed here.
    let mut expected: std::collections::BTreeMap<String, Option<usize>> = Default::default();
    for round in 0..50 {
        let name = format!("p{}.so", round % 5);
        expected.insert(
            name,
            if round % 7 == 6 {
                None
            } else {
                Some(round % 3)
            },
        );
    }
    let ids = [
        "mock-short-message-service",
        "mock-short-message-service",
        "request-building-test-connector",
    ];
    let versions = ["0.1.0", "0.2.0", "0.1.0"];
    wait_until("the folder to settle", Duration::from_secs(10), || {
        let reports = file_reports(&host);
        expected.iter().all(|(name, build)| match build {
            None => reports.iter().all(|report| {
                !(report["path"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("/{name}"))
                    && (report["status"] == "loaded" || report["status"] == "rejected"))
            }),
            Some(build) => reports.iter().any(|report| {
                report["path"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("/{name}"))
                    && (report["status"] == "loaded" || report["status"] == "rejected")
                    && report["factoryId"] == ids[*build]
                    && report["pluginVersion"] == versions[*build]
            }),
        })
    });
    // One factory per id: the first file by name providing it.
    let mut expected_ids: Vec<&str> = expected
        .values()
        .flatten()
        .map(|build| ids[*build])
        .collect();
    expected_ids.sort();
    expected_ids.dedup();
    assert_eq!(factory_ids(&host), expected_ids);
}

/// Runs `command` (`mkfifo`, `mknod`) and says whether it succeeded.
fn make_special_file(command: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let output = std::process::Command::new(command)
        .args(args)
        .output()
        .map_err(|error| format!("{command} did not run: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Runs `connector-host check` on `file`, killed after 30 s: a check that blocks fails.
fn check_file(file: &Path) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(e2e_tests::host_binary())
        .arg("check")
        .arg(file)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "connector-host check {} did not exit within 30 s",
                file.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    (status.code(), stdout)
}

/// A FIFO or a device node named like a plugin is refused with its reason, without being
/// opened: the reconcile, rescan and `/health` stay prompt, and a valid plugin still loads.
#[test]
fn fifos_and_device_nodes_are_refused_without_blocking_the_folder() {
    let host = HostFolders::new(&[]).start_with_args(&sending_without_pause());
    let fifo = host.plugins_dir.join("fifo.so");
    make_special_file("mkfifo", &["-m".as_ref(), "644".as_ref(), fifo.as_os_str()]).unwrap();
    let device = host.plugins_dir.join("null.so");
    // A character device like /dev/null (1:3); containers may not permit mknod.
    let device_made = match make_special_file(
        "mknod",
        &[
            "-m".as_ref(),
            "644".as_ref(),
            device.as_os_str(),
            "c".as_ref(),
            "1".as_ref(),
            "3".as_ref(),
        ],
    ) {
        Ok(()) => true,
        Err(problem) => {
            eprintln!(
                "note: mknod is not permitted here ({problem}); the device node case is skipped"
            );
            false
        }
    };
    let (status, _) = host.post("/api/plugins/rescan", &json!({}));
    assert_eq!(status, 200);
    let mut expected = vec![("fifo.so", "fifo.so is not a regular file (a FIFO)")];
    if device_made {
        expected.push((
            "null.so",
            "null.so is not a regular file (a character device)",
        ));
    }
    for (name, reason) in &expected {
        let error = rejection_reason(&host, name);
        assert!(error.starts_with(reason), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }
    assert_eq!(host.get("/health").0, 200);
    let (status, _) = host.post("/api/plugins/rescan", &json!({}));
    assert_eq!(status, 200);

    drop_in(&host.plugins_dir, &plugin_file("mock_sms"), "mock.so");
    wait_until("a valid plugin to load", Duration::from_secs(10), || {
        factory_ids(&host) == [MOCK]
    });
    make_mock_live(&host);
    assert_eq!(host.get("/health").0, 200);

    for (name, reason) in &expected {
        let (status, stdout) = check_file(&host.plugins_dir.join(name));
        assert_eq!(status, Some(1), "{stdout}");
        assert!(stdout.contains(&format!("refused: {reason}")), "{stdout}");
    }
}

/// On a terminal (the host's stderr a pseudo-terminal, through util-linux `script`), an ESC in
/// a plugin file's name reaches the terminal as the text `\x1b`, never as an escape sequence
/// that could erase or rewrite earlier lines; the formatter's own colours still do.
#[test]
fn on_a_terminal_an_escape_sequence_in_a_file_name_is_shown_as_text() {
    let folders = HostFolders::new(&[]);
    let hostile_name = "lib\x1b[2J\x1b[1Aevil.so";
    std::fs::write(
        folders.plugins_dir.join(hostile_name),
        b"not a shared object",
    )
    .unwrap();
    let quote = |text: &str| format!("'{}'", text.replace('\'', r"'\''"));
    let command_line = format!(
        "exec {} serve --plugins {} --data {} --listen 127.0.0.1:0 --admin-key {}",
        quote(e2e_tests::host_binary().to_str().unwrap()),
        quote(folders.plugins_dir.to_str().unwrap()),
        quote(folders.data_dir.to_str().unwrap()),
        quote(ADMIN_KEY),
    );
    let mut script = match std::process::Command::new("script")
        .args(["-qfec", &command_line, "/dev/null"])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(script) => script,
        Err(error) => {
            eprintln!("note: util-linux `script` did not run ({error}); test skipped");
            return;
        }
    };
    let output = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let output = Arc::clone(&output);
        let mut stdout = script.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read @ 1..) = std::io::Read::read(&mut stdout, &mut buffer) {
                output.lock().unwrap().extend_from_slice(&buffer[..read]);
            }
        })
    };
    let seen = |text: &[u8]| {
        output
            .lock()
            .unwrap()
            .windows(text.len())
            .any(|window| window == text)
    };
    let started = Instant::now();
    while !seen(b"plugin rejected") && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Ends the host: its terminal goes away with `script`.
    let _ = script.kill();
    let _ = script.wait();
    drop(script.stdin.take());
    let _ = reader.join();
    let text = String::from_utf8_lossy(&output.lock().unwrap()).into_owned();
    assert!(seen(b"plugin rejected"), "no refusal logged: {text:?}");
    // The log was coloured, so it went the terminal's way.
    assert!(seen(b"\x1b[33m WARN"), "{text:?}");
    assert!(seen(br"lib\x1b[2J\x1b[1Aevil.so"), "{text:?}");
    assert!(!seen(b"\x1b[2J") && !seen(b"\x1b[1A"), "{text:?}");
}

/// A scratch directory every ancestor of which the host trusts (owned by root or us, not
/// writable by group or others): under the target dir when the checkout is in such a place,
/// else under /var/lib (a clone under /tmp, 1777, has no trusted place in it).
fn scratch_dir_with_trusted_ancestors() -> tempfile::TempDir {
    use std::os::unix::fs::MetadataExt;
    let us = rustix::process::geteuid().as_raw();
    let trusted = |dir: &Path| {
        dir.ancestors().all(|ancestor| {
            std::fs::metadata(ancestor).is_ok_and(|metadata| {
                metadata.mode() & 0o022 == 0 && (metadata.uid() == 0 || metadata.uid() == us)
            })
        })
    };
    let candidates = [
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        PathBuf::from("/var/lib"),
    ];
    let place = candidates
        .iter()
        .find(|candidate| trusted(candidate))
        .unwrap_or_else(|| panic!("no directory with trusted ancestors among {candidates:?}"));
    tempfile::Builder::new()
        .prefix("connector-host-e2e-")
        .tempdir_in(place)
        .unwrap()
}

/// A plugin file may be a symlink, but every directory on its way is held to the folder's
/// rule: a symlink into a world-writable directory is refused with its reason, and loads once
/// the directory is fixed.
#[test]
fn a_symlink_into_a_world_writable_directory_is_refused() {
    let host = HostFolders::new(&[]).start_with_args(&sending_without_pause());
    let outside = scratch_dir_with_trusted_ancestors();
    std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let target = outside.path().join("libmock.so");
    std::fs::copy(plugin_file("mock_sms"), &target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&target, host.plugins_dir.join("mock.so")).unwrap();
    let (status, _) = host.post("/api/plugins/rescan", &json!({}));
    assert_eq!(status, 200);
    let error = rejection_reason(&host, "mock.so");
    assert!(
        error.contains(&format!(
            "is a symlink to {}, and the directory {} is writable by group or others (mode 777)",
            target.display(),
            outside.path().display()
        )),
        "{error}"
    );
    assert!(factory_ids(&host).is_empty());

    // Fixed, it loads at the next rescan: the directories' trust is part of what is watched.
    std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (status, _) = host.post("/api/plugins/rescan", &json!({}));
    assert_eq!(status, 200);
    assert_eq!(factory_ids(&host), [MOCK]);

    // A symlink into /tmp (world-writable, sticky or not) is refused too.
    let in_tmp = tempfile::tempdir_in("/tmp").unwrap();
    let tmp_target = in_tmp.path().join("librb.so");
    std::fs::copy(
        plugin_file("fixture_request_building_connector"),
        &tmp_target,
    )
    .unwrap();
    std::os::unix::fs::symlink(&tmp_target, host.plugins_dir.join("rb.so")).unwrap();
    let (status, _) = host.post("/api/plugins/rescan", &json!({}));
    assert_eq!(status, 200);
    let error = rejection_reason(&host, "rb.so");
    assert!(
        error.contains("and the directory /tmp is writable by group or others (mode 1777)"),
        "{error}"
    );
}

/// `live_connector_swaps_total` in `/metrics` (0 before the first swap registers it).
fn swaps_counted(host: &TestHost) -> u64 {
    let (status, metrics) = host.request("GET", "/metrics", None, None);
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("live_connector_swaps_total "))
        .map_or(0, |value| value.trim().parse().unwrap())
}

#[test]
fn every_swap_of_the_live_connector_is_counted_once() {
    let host = HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))])
        .start_with_args(&sending_without_pause());
    assert_eq!(swaps_counted(&host), 0);
    let first = make_mock_live(&host);
    assert_eq!(swaps_counted(&host), 1, "create");
    let second = make_mock_live(&host);
    assert_eq!(swaps_counted(&host), 2, "a second create");
    let (status, body) = host.post(&format!("/api/connectors/{first}/enable"), &json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(swaps_counted(&host), 3, "enable");
    let metadata = json!({"metadata": {"note": "patched"}});
    let (status, body) = host.patch(&format!("/api/connectors/{first}"), &metadata);
    assert_eq!(status, 200, "{body}");
    assert_eq!(swaps_counted(&host), 4, "PATCH of the live connector");
    let (status, body) = host.patch(&format!("/api/connectors/{second}"), &metadata);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        swaps_counted(&host),
        4,
        "PATCH of a retired connector swaps nothing"
    );
    assert_eq!(host.delete(&format!("/api/connectors/{second}")).0, 204);
    assert_eq!(
        swaps_counted(&host),
        4,
        "deleting a retired connector swaps nothing"
    );
    assert_eq!(host.delete(&format!("/api/connectors/{first}")).0, 204);
    assert_eq!(swaps_counted(&host), 5, "delete of the live connector");
    assert_eq!(send(&host).0, 501, "none is live");

    make_mock_live(&host);
    assert_eq!(swaps_counted(&host), 6);
    drop_in(
        &host.plugins_dir,
        &plugin_file("fixture_mock_sms_next"),
        "mock.so",
    );
    wait_until("the upgrade", Duration::from_secs(10), || {
        send(&host).1["providerMessageId"]
            .as_str()
            .unwrap_or_default()
            .starts_with("mock-0.2.0-")
    });
    assert_eq!(swaps_counted(&host), 7, "plugin upgrade");

    // Restarted without its plugin, the live connector waits for it; its return revives it.
    let folders = host.kill();
    std::fs::remove_file(folders.plugins_dir.join("mock.so")).unwrap();
    let host = folders.start();
    assert_eq!(send(&host).0, 501, "its plugin is gone");
    assert_eq!(
        swaps_counted(&host),
        0,
        "restoring at start-up is not a swap"
    );
    drop_in(&host.plugins_dir, &plugin_file("mock_sms"), "mock.so");
    wait_until("the revival", Duration::from_secs(10), || {
        send(&host).0 == 200
    });
    assert_eq!(swaps_counted(&host), 1, "revival");
    let back = "the live connector's plugin is back; it can send again";
    assert!(host.log_eventually(|log| log.contains(back)).contains(back));
}

/// Log lines at WARN level (the host logs without colour to its file).
fn warnings(log: &str) -> Vec<&str> {
    log.lines().filter(|line| line.contains(" WARN ")).collect()
}

/// A new build whose config gained a required field migrates the live connector's saved
/// config with its `migrate_config`: the host serves the new build with the migrated config,
/// saves it (a restart keeps it), and logs no warning.
#[test]
fn a_new_build_that_requires_a_field_migrates_the_saved_config() {
    let folders = HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))]);
    let args = sending_without_pause();
    let host = folders.start_with_args(&args);
    let connector_id = make_mock_live(&host);
    // Only what the upgrade logs: the mock warns that it is a development connector (that
    // line written first; the log is written by a thread of its own).
    let before_upgrade = host
        .log_eventually(|log| log.contains("development connector"))
        .len();
    drop_in(
        &host.plugins_dir,
        &plugin_file("fixture_mock_sms_with_region"),
        "mock.so",
    );
    wait_until(
        "sends through the new build",
        Duration::from_secs(10),
        || {
            send(&host).1["providerMessageId"]
                .as_str()
                .is_some_and(|id| id.starts_with("mock-0.3.0-eu-"))
        },
    );
    let (status, saved) = host.get(&format!("/api/connectors/{connector_id}"));
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["config"]["region"], "eu", "{saved}");
    assert_eq!(
        saved["config"]["templates"][0]["content"], "{{code}}",
        "the rest of the saved config is kept: {saved}"
    );
    let reports = file_reports(&host);
    assert_eq!(
        report_for(&reports, "mock.so", "loaded").unwrap()["pluginVersion"],
        "0.3.0"
    );
    assert!(
        report_for(&reports, "mock.so", "rejected").is_none(),
        "{reports:?}"
    );
    let log = host.log_eventually(|log| log.contains("migrated by the new plugin build and saved"));
    assert!(
        log.contains("the new build migrated the live connector's saved config"),
        "{log}"
    );
    let upgrade_log = &log[before_upgrade..];
    assert!(warnings(upgrade_log).is_empty(), "{upgrade_log}");
    // Nothing saved is lost: the config as it was is kept in a retired copy, for a way back
    // to the build that read it.
    let (status, retired) = host.get("/api/connectors?enabled=false");
    assert_eq!(status, 200, "{retired}");
    let kept: Vec<&serde_json::Value> = retired
        .as_array()
        .unwrap()
        .iter()
        .filter(|connector| connector["connectorId"] == "mock-short-message-service")
        .collect();
    assert_eq!(kept.len(), 1, "{retired}");
    assert_ne!(kept[0]["id"], connector_id.as_str(), "{retired}");
    assert!(kept[0]["config"].get("region").is_none(), "{retired}");
    assert_eq!(
        kept[0]["config"]["templates"], saved["config"]["templates"],
        "{retired}"
    );

    // The migrated config was saved: a restart serves it as it is.
    let host = host.kill().start_with_args(&args);
    let (status, receipt) = send(&host);
    assert_eq!(status, 200, "{receipt}");
    assert!(
        receipt["providerMessageId"]
            .as_str()
            .unwrap()
            .starts_with("mock-0.3.0-eu-"),
        "{receipt}"
    );
}

/// A new build that refuses the saved config and has no migration is refused, once, with a
/// reason naming the field, the connector and the build and saying what to do; the old build
/// keeps serving and is listed as loaded next to the refused one.
#[test]
fn a_new_build_that_refuses_the_saved_config_without_a_migration_names_the_field() {
    let host = HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))])
        .start_with_args(&sending_without_pause());
    let connector_id = make_mock_live(&host);
    drop_in(
        &host.plugins_dir,
        &plugin_file("fixture_mock_sms_with_region_unmigrated"),
        "mock.so",
    );
    wait_until("the refusal", Duration::from_secs(10), || {
        report_for(&file_reports(&host), "mock.so", "rejected").is_some()
    });
    let reports = file_reports(&host);
    let refused = report_for(&reports, "mock.so", "rejected").unwrap();
    assert_eq!(refused["pluginVersion"], "0.3.0-unmigrated", "{refused}");
    let sha256 = refused["sha256"]
        .as_str()
        .expect("the refused build's sha256");
    let error = refused["error"].as_str().unwrap();
    for expected in [
        "0.3.0-unmigrated",
        &sha256[..12],
        connector_id.as_str(),
        "(field region)",
        "#[serde(default)]",
        "migrate_config",
        "the previous build keeps serving",
    ] {
        assert!(error.contains(expected), "{expected:?} in {error}");
    }
    let serving = report_for(&reports, "mock.so", "loaded").expect("the serving build's row");
    assert_eq!(serving["pluginVersion"], "0.1.0", "{serving}");
    assert!(serving["sha256"].is_string(), "{serving}");
    let (status, receipt) = send(&host);
    assert_eq!(status, 200, "{receipt}");
    assert!(receipt["providerMessageId"]
        .as_str()
        .unwrap()
        .starts_with("mock-0.1.0-"));

    // Rescans of the unchanged file do not log the refusal again.
    for _ in 0..2 {
        assert_eq!(host.post("/api/plugins/rescan", &json!({})).0, 200);
    }
    let log = host.log_eventually(|log| log.contains("plugin upgrade refused"));
    let refusals = log
        .lines()
        .filter(|line| line.contains("plugin upgrade refused"))
        .count();
    assert_eq!(refusals, 1, "{log}");
}

/// Superseded builds do not pile up: each factory lists its 3 most recent ones.
#[test]
fn superseded_builds_are_collapsed_to_the_most_recent_per_factory() {
    let host = HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))])
        .start_with_args(&sending_without_pause());
    let builds = [
        ("fixture_mock_sms_next", "0.2.0"),
        ("mock_sms", "0.1.0"),
        ("fixture_mock_sms_next", "0.2.0"),
        ("mock_sms", "0.1.0"),
        ("fixture_mock_sms_with_region", "0.3.0"),
    ];
    for (superseded, (library, version)) in (1..).zip(builds) {
        drop_in(&host.plugins_dir, &plugin_file(library), "mock.so");
        wait_until(&format!("build {version}"), Duration::from_secs(10), || {
            let reports = file_reports(&host);
            let loaded = report_for(&reports, "mock.so", "loaded")
                .is_some_and(|report| report["pluginVersion"] == version);
            let listed = reports
                .iter()
                .filter(|report| report["status"] == "superseded")
                .count();
            loaded && listed == superseded.min(3)
        });
    }
    let reports = file_reports(&host);
    let versions: Vec<&str> = reports
        .iter()
        .filter(|report| report["status"] == "superseded")
        .map(|report| report["pluginVersion"].as_str().unwrap())
        .collect();
    assert_eq!(
        versions,
        ["0.1.0", "0.2.0", "0.1.0"],
        "newest first: {reports:?}"
    );
}

/// The same migration when the new build was installed while the host was down: the
/// restored live connector runs on it with the migrated config, saved.
#[test]
fn a_build_installed_while_the_host_was_down_migrates_the_saved_config() {
    let args = sending_without_pause();
    let host = HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))]).start_with_args(&args);
    let connector_id = make_mock_live(&host);
    let folders = host.kill();
    drop_in(
        &folders.plugins_dir,
        &plugin_file("fixture_mock_sms_with_region"),
        "mock.so",
    );
    let host = folders.start_with_args(&args);
    let (status, receipt) = send(&host);
    assert_eq!(status, 200, "{receipt}");
    assert!(
        receipt["providerMessageId"]
            .as_str()
            .unwrap()
            .starts_with("mock-0.3.0-eu-"),
        "{receipt}"
    );
    let (_, saved) = host.get(&format!("/api/connectors/{connector_id}"));
    assert_eq!(saved["config"]["region"], "eu", "{saved}");
    assert!(host
        .log_eventually(|log| log.contains("migrated the live connector's saved config; saved"))
        .contains("migrated the live connector's saved config; saved"));
}

/// The live connector's plugin missing, then back as a build that migrates its config: the
/// connector is revived on that build with the migrated config, saved.
#[test]
fn a_plugin_back_as_a_build_that_migrates_revives_the_live_connector() {
    let args = sending_without_pause();
    let host = HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))]).start_with_args(&args);
    let connector_id = make_mock_live(&host);
    let folders = host.kill();
    std::fs::remove_file(folders.plugins_dir.join("mock.so")).unwrap();
    let host = folders.start_with_args(&args);
    assert_ne!(
        send(&host).0,
        200,
        "no plugin provides the live connector's factory"
    );
    drop_in(
        &host.plugins_dir,
        &plugin_file("fixture_mock_sms_with_region"),
        "mock.so",
    );
    wait_until(
        "sends through the new build",
        Duration::from_secs(10),
        || {
            send(&host).1["providerMessageId"]
                .as_str()
                .is_some_and(|id| id.starts_with("mock-0.3.0-eu-"))
        },
    );
    let (_, saved) = host.get(&format!("/api/connectors/{connector_id}"));
    assert_eq!(saved["config"]["region"], "eu", "{saved}");
}

/// The standby's plugin is upgraded to a build that must migrate its saved config: the
/// standby sends on the new build with the config migrated in memory (nothing written), and
/// making it live migrates and saves its config, the config as it was kept in a retired copy.
#[test]
fn a_standby_on_a_build_that_migrates_its_config_still_sends_and_goes_live_migrated() {
    let args = sending_without_pause();
    let host = HostFolders::new(&[
        ("mock.so", &plugin_file("mock_sms")),
        ("http.so", &plugin_file("http_sms")),
    ])
    .start_with_args(&args);
    let standby = make_mock_live(&host);
    let closed = e2e_tests::RefusingPort::new();
    let closed_port = closed.port;
    let (status, live) = host.post(
        "/api/connectors",
        &json!({"connectorId": "http-sms", "config": {"endpoint": format!("http://127.0.0.1:{closed_port}/send")}}),
    );
    assert_eq!(status, 200, "{live}");
    assert_eq!(
        host.post(&format!("/api/connectors/{standby}/fallback"), &json!({}))
            .0,
        200
    );
    drop_in(
        &host.plugins_dir,
        &plugin_file("fixture_mock_sms_with_region"),
        "mock.so",
    );
    // The live provider is unreachable: each send goes to the standby, on the new build.
    wait_until(
        "the standby sends through the new build",
        Duration::from_secs(10),
        || {
            let (status, sent) = send(&host);
            status == 200
                && sent["connectorId"] == standby.as_str()
                && sent["providerMessageId"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("mock-0.3.0-eu-"))
        },
    );
    let (_, saved) = host.get(&format!("/api/connectors/{standby}"));
    assert!(
        saved["config"].get("region").is_none(),
        "the standby's saved config is not written: {saved}"
    );
    assert_eq!(saved["fallback"], true, "{saved}");

    let (status, enabled) = host.post(&format!("/api/connectors/{standby}/enable"), &json!({}));
    assert_eq!(status, 200, "{enabled}");
    assert_eq!(enabled["config"]["region"], "eu", "{enabled}");
    let (status, sent) = send(&host);
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["connectorId"], standby.as_str(), "{sent}");
    assert!(sent.get("fallbackReason").is_none(), "{sent}");
    let (_, retired) = host.get("/api/connectors?enabled=false");
    let kept: Vec<&Value> = retired
        .as_array()
        .unwrap()
        .iter()
        .filter(|connector| connector["connectorId"] == MOCK)
        .collect();
    assert_eq!(kept.len(), 1, "the config as it was, kept: {retired}");
    assert!(kept[0]["config"].get("region").is_none(), "{retired}");
}
