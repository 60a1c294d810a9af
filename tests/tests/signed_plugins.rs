//! Signed plugin files end to end (`--trusted-plugin-key`), signed with the real minisign CLI
//! (Debian `minisign`, installed by `scripts/install-counterparts`): a signed file loads and
//! reports its signer; unsigned, altered, untrusted and misapplied signatures are each refused
//! with their own reason; a signature dropped beside a refused file loads it without a restart;
//! the SHA-256 allowlist still applies; a bad key file stops the host; `check` verifies too; a
//! signed upgrade is one event whichever file lands first (no WARN), and a mismatch is still
//! reported once the grace for the other file has passed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::{host_binary, plugin_file, HostFolders, TestHost, ADMIN_KEY};
use serde_json::Value;

const MOCK: &str = "mock-short-message-service";
const REQUEST_BUILDING: &str = "request-building-test-connector";

/// A minisign key pair made for one test (no password), and the folder it signs in.
struct SigningKey {
    folder: tempfile::TempDir,
    public_key_file: PathBuf,
    secret_key_file: PathBuf,
    /// As minisign prints it in the public key's comment.
    key_id: String,
}

fn minisign(args: &[&std::ffi::OsStr]) -> Output {
    let output = Command::new("minisign")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("minisign runs (apt-get install minisign, or scripts/install-counterparts)");
    assert!(
        output.status.success(),
        "minisign {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl SigningKey {
    fn generate() -> SigningKey {
        let folder = tempfile::tempdir().unwrap();
        let public_key_file = folder.path().join("key.pub");
        let secret_key_file = folder.path().join("key.sec");
        minisign(&[
            "-G".as_ref(),
            "-W".as_ref(),
            "-p".as_ref(),
            public_key_file.as_os_str(),
            "-s".as_ref(),
            secret_key_file.as_os_str(),
        ]);
        let key_id = std::fs::read_to_string(&public_key_file)
            .unwrap()
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("untrusted comment: minisign public key "))
            .and_then(|digits| u64::from_str_radix(digits.trim(), 16).ok())
            // minisign drops leading zeros in this comment; the host always prints 16 digits.
            .map(|key_number| format!("{key_number:016X}"))
            .expect("minisign names the key id in the public key's comment");
        SigningKey {
            folder,
            public_key_file,
            secret_key_file,
            key_id,
        }
    }

    fn public_key(&self) -> &str {
        self.public_key_file.to_str().unwrap()
    }

    /// Copies `source` into this key's folder as `name`, signs it there (`name.minisig`
    /// beside it) and returns the copy's path: a release as a vendor ships it.
    fn release(&self, source: &Path, name: &str, trusted_comment: &str) -> PathBuf {
        let plugin = self.folder.path().join(name);
        std::fs::copy(source, &plugin).unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o644)).unwrap();
        minisign(&[
            "-S".as_ref(),
            "-s".as_ref(),
            self.secret_key_file.as_os_str(),
            "-t".as_ref(),
            trusted_comment.as_ref(),
            "-m".as_ref(),
            plugin.as_os_str(),
        ]);
        plugin
    }

    /// The text of a signature of `source` by this key.
    fn signature_of(&self, source: &Path) -> String {
        let release = self.release(source, "signed-for-its-signature.so", "a release");
        std::fs::read_to_string(signature_file(&release)).unwrap()
    }
}

fn signature_file(plugin: &Path) -> PathBuf {
    let mut name = plugin.as_os_str().to_owned();
    name.push(".minisig");
    PathBuf::from(name)
}

/// Content under a hidden temporary name the folder watcher ignores, until `drop_in` renames it.
#[must_use]
struct Staged {
    temporary: PathBuf,
    target: PathBuf,
}

fn staged(plugins_dir: &Path, content: impl AsRef<[u8]>, name: &str) -> Staged {
    let temporary = plugins_dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, content).unwrap();
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o644)).unwrap();
    Staged {
        temporary,
        target: plugins_dir.join(name),
    }
}

impl Staged {
    fn drop_in(self) {
        std::fs::rename(&self.temporary, &self.target).unwrap();
    }
}

/// A released `mock.so` and its signature, both staged (in the order the caller drops them).
fn staged_release(plugins_dir: &Path, release: &Path) -> (Staged, Staged) {
    (
        staged(plugins_dir, std::fs::read(release).unwrap(), "mock.so"),
        staged(
            plugins_dir,
            std::fs::read(signature_file(release)).unwrap(),
            "mock.so.minisig",
        ),
    )
}

/// Copies under a hidden temporary name, then renames into place: the recommended drop-in.
fn drop_in_text(plugins_dir: &Path, text: &str, name: &str) {
    staged(plugins_dir, text, name).drop_in();
}

fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// The current report of the file `name` (loaded, rejected or incomplete).
fn current_report(host: &TestHost, name: &str) -> Option<Value> {
    file_reports(host).into_iter().find(|report| {
        report["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{name}"))
            && ["loaded", "rejected", "incomplete"].contains(&report["status"].as_str().unwrap())
    })
}

fn rejection_reason(host: &TestHost, name: &str) -> String {
    let report = current_report(host, name).unwrap_or_else(|| panic!("no report for {name}"));
    assert_eq!(report["status"], "rejected", "{report}");
    report["error"].as_str().unwrap().to_owned()
}

fn start_with_keys(folders: HostFolders, keys: &[&SigningKey], extra_args: &[&str]) -> TestHost {
    let mut args = vec!["--admin-key", ADMIN_KEY];
    for key in keys {
        args.extend(["--trusted-plugin-key", key.public_key()]);
    }
    args.extend(extra_args);
    folders.start_with_args(&args)
}

#[test]
fn a_signed_plugin_loads_and_reports_its_signer_and_trusted_comment() {
    let key = SigningKey::generate();
    let release = key.release(&plugin_file("mock_sms"), "libmock.so", "mock-sms 0.1.0 e2e");
    let folders = HostFolders::new(&[
        ("libmock.so", &release),
        ("libmock.so.minisig", &signature_file(&release)),
    ]);
    let host = start_with_keys(folders, &[&key], &[]);
    assert_eq!(factory_ids(&host), [MOCK]);
    let reports = file_reports(&host);
    assert_eq!(
        reports.len(),
        1,
        "the .minisig is not a plugin file: {reports:?}"
    );
    assert_eq!(reports[0]["status"], "loaded");
    assert_eq!(reports[0]["signerKeyId"], key.key_id.as_str());
    assert_eq!(reports[0]["trustedComment"], "mock-sms 0.1.0 e2e");
    assert!(host
        .log_eventually(|log| log.contains(&format!("signer_key_id={}", key.key_id)))
        .contains(&format!("signer_key_id={}", key.key_id)));

    let (_, document) = host.get("/api/openapi.json");
    let properties = &document["components"]["schemas"]["PluginFileReport"]["properties"];
    assert!(
        properties["signerKeyId"].is_object() && properties["trustedComment"].is_object(),
        "{properties}"
    );

    // Without keys the signature is not looked at, and the fields are null.
    let folders = HostFolders::new(&[
        ("libmock.so", &release),
        ("libmock.so.minisig", &signature_file(&release)),
    ]);
    let host = folders.start();
    let reports = file_reports(&host);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["status"], "loaded");
    assert!(reports[0]["signerKeyId"].is_null() && reports[0]["trustedComment"].is_null());
}

#[test]
fn each_bad_signature_is_refused_with_its_own_reason() {
    let trusted = SigningKey::generate();
    let stranger = SigningKey::generate();
    let mock = plugin_file("mock_sms");
    let good = trusted.release(
        &plugin_file("fixture_request_building_connector"),
        "good.so",
        "rb",
    );
    let folders = HostFolders::new(&[
        ("good.so", &good),
        ("good.so.minisig", &signature_file(&good)),
        ("unsigned.so", &mock),
        ("by-stranger.so", &mock),
        ("other-bytes.so", &mock),
        ("corrupt.so", &mock),
        ("altered.so", &mock),
    ]);
    let write_signature = |name: &str, text: &str| {
        std::fs::write(folders.plugins_dir.join(format!("{name}.minisig")), text).unwrap()
    };
    let mock_by_trusted = trusted.signature_of(&mock);
    write_signature("by-stranger.so", &stranger.signature_of(&mock));
    // A genuine signature by the trusted key, of another build.
    write_signature(
        "other-bytes.so",
        &trusted.signature_of(&plugin_file("fixture_mock_sms_next")),
    );
    write_signature("corrupt.so", "untrusted comment: x\nnot a signature\n");
    write_signature(
        "altered.so",
        &mock_by_trusted.replace("trusted comment: a release", "trusted comment: approved"),
    );
    let host = start_with_keys(folders, &[&trusted], &[]);

    assert_eq!(factory_ids(&host), [REQUEST_BUILDING]);
    let expected = [
        ("unsigned.so", "unsigned: no unsigned.so.minisig beside it".to_owned()),
        (
            "by-stranger.so",
            format!(
                "untrusted signing key: by-stranger.so.minisig is signed by key {}",
                stranger.key_id
            ),
        ),
        (
            "other-bytes.so",
            format!(
                "signature for other bytes: other-bytes.so.minisig by key {} was made for another file or build",
                trusted.key_id
            ),
        ),
        (
            "corrupt.so",
            "bad signature: corrupt.so.minisig is not a minisign signature".to_owned(),
        ),
        (
            "altered.so",
            "bad signature: altered.so.minisig does not verify".to_owned(),
        ),
    ];
    for (name, reason) in expected {
        let error = rejection_reason(&host, name);
        assert!(error.starts_with(&reason), "{name}: {error}");
        assert!(!error.contains('\n'), "{error}");
    }
    assert!(rejection_reason(&host, "unsigned.so")
        .ends_with("sign it with `minisign -S -s key.sec -m unsigned.so`"));
    let reports = file_reports(&host);
    assert_eq!(reports.len(), 6, "no report for a .minisig: {reports:?}");
    assert!(reports
        .iter()
        .all(|report| report["status"] == "loaded" || report["signerKeyId"].is_null()));
}

#[test]
fn a_signature_dropped_beside_a_refused_file_loads_it_without_a_restart() {
    let key = SigningKey::generate();
    let release = key.release(&plugin_file("mock_sms"), "mock.so", "first release");
    let host = start_with_keys(HostFolders::new(&[("mock.so", &release)]), &[&key], &[]);
    assert!(rejection_reason(&host, "mock.so").starts_with("unsigned:"));
    assert!(factory_ids(&host).is_empty());

    // Adding a signature file that is not valid: still refused, now for that.
    drop_in_text(&host.plugins_dir, "garbage\n", "mock.so.minisig");
    wait_until(
        "the bad signature's refusal",
        Duration::from_secs(10),
        || {
            current_report(&host, "mock.so").is_some_and(|report| {
                report["error"]
                    .as_str()
                    .is_some_and(|error| error.starts_with("bad signature:"))
            })
        },
    );
    assert!(factory_ids(&host).is_empty());

    // Replacing it with the valid one loads the file.
    let signature = std::fs::read_to_string(signature_file(&release)).unwrap();
    drop_in_text(&host.plugins_dir, &signature, "mock.so.minisig");
    wait_until("the signed file to load", Duration::from_secs(10), || {
        factory_ids(&host) == [MOCK]
    });
    let report = current_report(&host, "mock.so").unwrap();
    assert_eq!(report["status"], "loaded");
    assert_eq!(report["signerKeyId"], key.key_id.as_str());
    assert_eq!(report["trustedComment"], "first release");

    // The same build signed anew: its report follows the new signature.
    let resigned = key.release(&plugin_file("mock_sms"), "mock.so", "signed again");
    let signature = std::fs::read_to_string(signature_file(&resigned)).unwrap();
    drop_in_text(&host.plugins_dir, &signature, "mock.so.minisig");
    wait_until("the new trusted comment", Duration::from_secs(10), || {
        current_report(&host, "mock.so").is_some_and(|report| {
            report["status"] == "loaded" && report["trustedComment"] == "signed again"
        })
    });
}

#[test]
fn with_both_the_sha256_allowlist_and_keys_a_file_must_pass_both() {
    let key = SigningKey::generate();
    let mock_sha256 = {
        let scratch = tempfile::tempdir().unwrap();
        let loader =
            connector_host::plugins::loader::PluginLoader::new(scratch.path().join("c"), None)
                .unwrap();
        loader.load(&plugin_file("mock_sms")).unwrap().sha256
    };
    let mock = key.release(&plugin_file("mock_sms"), "mock.so", "mock");
    let request_building = key.release(
        &plugin_file("fixture_request_building_connector"),
        "rb.so",
        "rb",
    );
    let folders = HostFolders::new(&[
        ("mock.so", &mock),
        ("mock.so.minisig", &signature_file(&mock)),
        ("rb.so", &request_building),
        ("rb.so.minisig", &signature_file(&request_building)),
        ("mock-unsigned.so", &plugin_file("mock_sms")),
    ]);
    let stranger = SigningKey::generate();
    // Two keys, the flag repeated: either may sign.
    let host = start_with_keys(
        folders,
        &[&stranger, &key],
        &["--allowed-plugin-sha256", &mock_sha256],
    );
    assert_eq!(factory_ids(&host), [MOCK]);
    assert_eq!(
        current_report(&host, "mock.so").unwrap()["signerKeyId"],
        key.key_id.as_str()
    );
    assert!(rejection_reason(&host, "rb.so").starts_with("not in allowlist"));
    assert!(rejection_reason(&host, "mock-unsigned.so").starts_with("unsigned:"));
}

/// Runs the host binary to its end (killed after 30 s: it must not start serving).
fn run_host_to_exit(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let scratch = tempfile::tempdir().unwrap();
    let stdout_path = scratch.path().join("stdout");
    let stderr_path = scratch.path().join("stderr");
    let mut child = Command::new(host_binary())
        .args(args)
        .envs(envs.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
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
            panic!("connector-host {args:?} did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code(),
        std::fs::read_to_string(stdout_path).unwrap(),
        std::fs::read_to_string(stderr_path).unwrap(),
    )
}

#[test]
fn a_missing_or_malformed_key_file_stops_the_host_with_one_line_naming_it() {
    let folders = HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))]);
    let malformed = folders.scratch_path("malformed.pub");
    std::fs::write(&malformed, "untrusted comment: x\nnot a key\n").unwrap();
    let missing = folders.scratch_path("missing.pub");
    let key = SigningKey::generate();
    for (key_file, problem) in [
        (&missing, "cannot read it: No such file or directory"),
        (&malformed, "not a minisign public key"),
    ] {
        let (status, stdout, stderr) = run_host_to_exit(
            &[
                "serve",
                "--plugins",
                folders.plugins_dir.to_str().unwrap(),
                "--data",
                folders.data_dir.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--admin-key",
                ADMIN_KEY,
                "--trusted-plugin-key",
                key.public_key(),
                "--trusted-plugin-key",
                key_file.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(status, Some(1), "{stderr}");
        assert!(stdout.is_empty(), "it did not start: {stdout}");
        let expected = format!(
            "connector-host: cannot use the trusted plugin key {}: {problem}",
            key_file.display()
        );
        let error_lines: Vec<&str> = stderr
            .lines()
            .filter(|line| line.starts_with("connector-host:"))
            .collect();
        assert_eq!(error_lines.len(), 1, "{stderr}");
        assert!(error_lines[0].starts_with(&expected), "{stderr}");
    }
}

#[test]
fn check_verifies_and_reports_the_signature_when_keys_are_given() {
    let key = SigningKey::generate();
    let stranger = SigningKey::generate();
    let release = key.release(&plugin_file("mock_sms"), "libmock.so", "mock 0.1.0");
    let release_path = release.to_str().unwrap();

    let (status, stdout, stderr) = run_host_to_exit(
        &[
            "check",
            release_path,
            "--trusted-plugin-key",
            key.public_key(),
        ],
        &[],
    );
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("signed by key:      {}", key.key_id))
            && stdout.contains("trusted comment:    \"mock 0.1.0\""),
        "{stdout}"
    );

    // The environment variable, comma-separated, as for `serve`.
    let both_keys = format!("{},{}", stranger.public_key(), key.public_key());
    let (status, stdout, stderr) = run_host_to_exit(
        &["check", release_path, "--json"],
        &[("CONNECTOR_HOST_TRUSTED_PLUGIN_KEYS", &both_keys)],
    );
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["signature"]["keyId"], key.key_id.as_str());
    assert_eq!(report["signature"]["trustedComment"], "mock 0.1.0");

    let (status, stdout, _) = run_host_to_exit(
        &[
            "check",
            release_path,
            "--trusted-plugin-key",
            stranger.public_key(),
        ],
        &[],
    );
    assert_eq!(status, Some(1));
    assert!(
        stdout.starts_with(&format!("{release_path}: refused: untrusted signing key:")),
        "{stdout}"
    );

    let unsigned = plugin_file("mock_sms");
    let (status, stdout, _) = run_host_to_exit(
        &[
            "check",
            unsigned.to_str().unwrap(),
            "--trusted-plugin-key",
            key.public_key(),
        ],
        &[],
    );
    assert_eq!(status, Some(1));
    assert!(stdout.contains("refused: unsigned:"), "{stdout}");

    // Without keys: no signature is asked for or reported.
    let (status, stdout, _) = run_host_to_exit(&["check", release_path, "--json"], &[]);
    assert_eq!(status, Some(0));
    assert!(serde_json::from_str::<Value>(&stdout).unwrap()["signature"].is_null());
}

/// A FIFO named `<plugin>.so.minisig` once wedged the host in `open()`: it is refused without
/// being opened, rescan and `/health` stay prompt, and a real signature put in its place loads
/// the file. `check` refuses it the same way.
#[test]
fn a_fifo_as_the_signature_is_refused_without_blocking() {
    let key = SigningKey::generate();
    let release = key.release(&plugin_file("mock_sms"), "libmock.so", "mock 0.1.0");
    let signature_text = std::fs::read_to_string(signature_file(&release)).unwrap();
    let folders = HostFolders::new(&[]);
    let plugins_dir = folders.plugins_dir.clone();
    let host = start_with_keys(folders, &[&key], &[]);
    let fifo = plugins_dir.join("libmock.so.minisig");
    let made = Command::new("mkfifo")
        .arg("-m")
        .arg("644")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let installed = plugins_dir.join("libmock.so");
    std::fs::copy(&release, plugins_dir.join(".libmock.so.tmp")).unwrap();
    std::fs::rename(plugins_dir.join(".libmock.so.tmp"), &installed).unwrap();
    wait_until("the refusal", Duration::from_secs(10), || {
        current_report(&host, "libmock.so").is_some_and(|report| report["status"] == "rejected")
    });
    let reason = rejection_reason(&host, "libmock.so");
    assert!(
        reason.starts_with("libmock.so.minisig is not a regular file (a FIFO)"),
        "{reason}"
    );
    let (status, _) = host.post("/api/plugins/rescan", &serde_json::json!({}));
    assert_eq!(status, 200);
    assert_eq!(host.get("/health").0, 200);

    let (status, stdout, _) = run_host_to_exit(
        &[
            "check",
            installed.to_str().unwrap(),
            "--trusted-plugin-key",
            key.public_key(),
        ],
        &[],
    );
    assert_eq!(status, Some(1), "{stdout}");
    assert!(
        stdout.contains("refused: libmock.so.minisig is not a regular file (a FIFO)"),
        "{stdout}"
    );

    std::fs::remove_file(&fifo).unwrap();
    drop_in_text(&plugins_dir, &signature_text, "libmock.so.minisig");
    wait_until("the signed file to load", Duration::from_secs(10), || {
        factory_ids(&host) == [MOCK]
    });
}

/// `minisign -S` without `-t` signs the file's name along (`file:libacme.so` in the trusted
/// comment): a vendor's build installed under another name is refused, with how to fix it,
/// and loads under the name it was signed as.
#[test]
fn a_file_signed_as_one_name_and_installed_under_another_is_refused() {
    let key = SigningKey::generate();
    let release = key.folder.path().join("libacme.so");
    std::fs::copy(plugin_file("mock_sms"), &release).unwrap();
    minisign(&[
        "-S".as_ref(),
        "-s".as_ref(),
        key.secret_key_file.as_os_str(),
        "-m".as_ref(),
        release.as_os_str(),
    ]);
    let signature_text = std::fs::read_to_string(signature_file(&release)).unwrap();
    assert!(
        signature_text.contains("\tfile:libacme.so"),
        "{signature_text}"
    );
    let release_content = std::fs::read(&release).unwrap();

    let folders = HostFolders::new(&[]);
    let plugins_dir = folders.plugins_dir.clone();
    let host = start_with_keys(folders, &[&key], &[]);
    drop_in_text(&plugins_dir, &signature_text, "libother.so.minisig");
    let renamed = plugins_dir.join("libother.so");
    std::fs::write(plugins_dir.join(".libother.so.tmp"), &release_content).unwrap();
    std::fs::rename(plugins_dir.join(".libother.so.tmp"), &renamed).unwrap();
    let started = Instant::now();
    while !current_report(&host, "libother.so").is_some_and(|report| report["status"] == "rejected")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting for the refusal: {:?}\n{}",
            current_report(&host, "libother.so"),
            host.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let reason = rejection_reason(&host, "libother.so");
    assert_eq!(
        reason,
        "signed for another file name: libother.so.minisig's trusted comment names \
         file:libacme.so; install it as libacme.so (with libacme.so.minisig beside it), or have \
         it signed as libother.so"
    );
    assert!(factory_ids(&host).is_empty());

    let (status, stdout, _) = run_host_to_exit(
        &[
            "check",
            renamed.to_str().unwrap(),
            "--trusted-plugin-key",
            key.public_key(),
        ],
        &[],
    );
    assert_eq!(status, Some(1), "{stdout}");
    assert!(
        stdout.contains("refused: signed for another file name"),
        "{stdout}"
    );

    // Under the name it was signed as, it loads.
    drop_in_text(&plugins_dir, &signature_text, "libacme.so.minisig");
    std::fs::rename(&renamed, plugins_dir.join("libacme.so")).unwrap();
    wait_until(
        "the file to load under its own name",
        Duration::from_secs(10),
        || factory_ids(&host) == [MOCK],
    );
    let report = current_report(&host, "libacme.so").unwrap();
    assert!(
        report["trustedComment"]
            .as_str()
            .unwrap()
            .contains("file:libacme.so"),
        "{report}"
    );
}

/// Log lines at WARN level (the host logs without colour to its file).
fn warnings(log: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains(" WARN "))
        .map(str::to_owned)
        .collect()
}

/// Waits until `condition` holds for the plugin reports, and returns every status seen for
/// `name` meanwhile.
fn statuses_until(
    host: &TestHost,
    name: &str,
    what: &str,
    mut condition: impl FnMut(&[Value]) -> bool,
) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    wait_until(what, Duration::from_secs(10), || {
        let reports = file_reports(host);
        for report in &reports {
            let status = report["status"].as_str().unwrap().to_owned();
            let of_name = report["path"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/{name}"));
            if of_name && !seen.contains(&status) {
                seen.push(status);
            }
        }
        condition(&reports)
    });
    seen
}

fn serves(reports: &[Value], name: &str, version: &str) -> bool {
    reports.iter().any(|report| {
        report["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{name}"))
            && report["status"] == "loaded"
            && report["pluginVersion"] == version
            && report["sha256"].is_string()
    })
}

/// A signed upgrade is one event whichever of the plugin file and its `.minisig` lands
/// first: the first one is `pending` while the serving build stays listed as loaded, the
/// second loads the new build, and nothing is refused or logged at WARN.
#[test]
fn a_signed_upgrade_in_either_file_order_raises_no_warning() {
    let key = SigningKey::generate();
    let first = key.release(&plugin_file("mock_sms"), "mock.so", "mock 0.1.0");
    let host = start_with_keys(
        HostFolders::new(&[
            ("mock.so", &first),
            ("mock.so.minisig", &signature_file(&first)),
        ]),
        &[&key],
        &[],
    );
    assert_eq!(factory_ids(&host), [MOCK]);

    // The plugin file first, then its signature.
    let next = key.release(
        &plugin_file("fixture_mock_sms_next"),
        "mock.so",
        "mock 0.2.0",
    );
    // Staged up front: only a rename follows `pending`, as copying the .so can outlast the grace.
    let (next_file, next_signature) = staged_release(&host.plugins_dir, &next);
    next_file.drop_in();
    let mut while_pending = Vec::new();
    let mut seen = statuses_until(&host, "mock.so", "the file to wait", |reports| {
        while_pending = reports.to_vec();
        reports.iter().any(|report| report["status"] == "pending")
    });
    assert!(
        serves(&while_pending, "mock.so", "0.1.0"),
        "the serving build stays listed while the file waits: {while_pending:?}"
    );
    let pending = while_pending
        .iter()
        .find(|report| report["status"] == "pending")
        .unwrap();
    let reason = pending["error"].as_str().unwrap();
    assert!(
        reason.starts_with("the file and its signature do not match yet; waiting up to 2 s"),
        "{reason}"
    );
    next_signature.drop_in();
    seen.extend(statuses_until(&host, "mock.so", "0.2.0", |reports| {
        serves(reports, "mock.so", "0.2.0")
    }));

    // The signature first, then its plugin file.
    let again = key.release(&plugin_file("mock_sms"), "mock.so", "mock 0.1.0 again");
    let (again_file, again_signature) = staged_release(&host.plugins_dir, &again);
    again_signature.drop_in();
    seen.extend(statuses_until(
        &host,
        "mock.so",
        "the signature to wait",
        |reports| reports.iter().any(|report| report["status"] == "pending"),
    ));
    assert!(serves(&file_reports(&host), "mock.so", "0.2.0"));
    again_file.drop_in();
    seen.extend(statuses_until(&host, "mock.so", "0.1.0 again", |reports| {
        reports.iter().any(|report| {
            report["status"] == "loaded" && report["trustedComment"] == "mock 0.1.0 again"
        })
    }));

    assert!(seen.contains(&"pending".to_owned()), "{seen:?}");
    assert!(!seen.contains(&"rejected".to_owned()), "{seen:?}");
    let log = host.log_eventually(|log| log.matches("plugin loaded").count() >= 3);
    assert_eq!(log.matches("plugin loaded").count(), 3, "{log}");
    assert!(warnings(&log).is_empty(), "{:?}", warnings(&log));
}

/// A signature that does not match its file is still reported, and logged at WARN, once the
/// grace for the other file to arrive has passed; the build before keeps serving.
#[test]
fn a_signature_mismatch_is_reported_after_the_grace() {
    let key = SigningKey::generate();
    let first = key.release(&plugin_file("mock_sms"), "mock.so", "mock 0.1.0");
    let host = start_with_keys(
        HostFolders::new(&[
            ("mock.so", &first),
            ("mock.so.minisig", &signature_file(&first)),
        ]),
        &[&key],
        &[],
    );
    drop_in_text(
        &host.plugins_dir,
        &key.signature_of(&plugin_file("fixture_mock_sms_next")),
        "mock.so.minisig",
    );
    wait_until("the refusal", Duration::from_secs(10), || {
        current_report(&host, "mock.so").is_some_and(|report| report["status"] == "rejected")
    });
    let reason = rejection_reason(&host, "mock.so");
    assert!(
        reason.starts_with("signature for other bytes:") && reason.contains("keeps serving"),
        "{reason}"
    );
    assert!(serves(&file_reports(&host), "mock.so", "0.1.0"));
    assert_eq!(factory_ids(&host), [MOCK]);
    let log = host.log_eventually(|log| !warnings(log).is_empty());
    assert!(
        warnings(&log)
            .iter()
            .any(|line| line.contains("plugin rejected")
                && line.contains("signature for other bytes")),
        "{log}"
    );
}
