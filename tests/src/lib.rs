//! Helpers for the end-to-end tests: build the binaries and plugin files once, start a real
//! `connector-host` on 127.0.0.1:0 with a chosen set of plugin files, and talk HTTP to it.
//!
//! # Layout
//! - [`artifacts`]: `cargo build` of the host and every plugin and fixture, once per test binary.
//! - [`TestHost`]: one running host process with its own plugins folder and data directory,
//!   on SQLite or (`E2E_STORE=postgres`, [`HostFolders::on_database`]) PostgreSQL, with plugins
//!   in-process or (`E2E_PLUGIN_ISOLATION=process`) in worker processes.
//! - [`postgres`]: a throwaway PostgreSQL cluster.
//! - [`browser`]: a headless Chromium driven through chromedriver, for the admin console's
//!   tests.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod browser;
pub mod postgres;

/// Every package whose artifacts the tests use.
const PACKAGES: &[&str] = &[
    "connector-host",
    "mock-sms",
    "fixture-panicking-connector",
    "fixture-panicking-metadata",
    "fixture-metadata-without-english-name",
    "fixture-metadata-with-duplicate-form-keys",
    "fixture-metadata-with-unknown-form-type",
    "fixture-not-a-connector",
    "fixture-foreign-layout",
    "fixture-incompatible-version",
    "fixture-request-building-connector",
    "fixture-mock-sms-next",
    "fixture-mock-sms-with-region",
    "fixture-mock-sms-with-region-unmigrated",
    "fixture-hostile-metadata",
    "fixture-every-form-item",
    "fixture-without-form-items",
    "fixture-token-step-connector",
    "fixture-misbehaving-connector",
    "http-sms",
    "twilio-sms",
    "vonage-sms",
    "kannel-sms",
];

/// `cargo`, for a build started from inside a test or the bench harness, without the
/// variables `cargo test` / `cargo run` set for the process it runs (`CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR`, ...). Build scripts such as ring's ask to rerun when those change,
/// so inheriting them rebuilt ring, rustls, reqwest and the host on every switch between the
/// outer command and this inner build.
pub fn cargo_command() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_for_the_running_target = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
            || matches!(
                name,
                "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "OUT_DIR"
            );
        if set_for_the_running_target {
            command.env_remove(name);
        }
    }
    command
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_owned()
}

/// The output directory of this build's profile (debug for tests, release for benchmarks, so a
/// benchmark never compares optimized code with a debug plugin), after building every package
/// the tests need (once).
pub fn artifacts() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut command = cargo_command();
        command.arg("build").current_dir(workspace_root());
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        if profile == "release" {
            command.arg("--release");
        }
        for package in PACKAGES {
            command.args(["-p", package]);
        }
        let status = command.status().expect("cargo runs");
        assert!(status.success(), "building the host and plugins failed");
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"));
        target_dir.join(profile)
    })
}

/// The plugin file of a package, e.g. `plugin_file("mock_sms")` for `libmock_sms.so`.
pub fn plugin_file(library_name: &str) -> PathBuf {
    let path = artifacts().join(format!("lib{library_name}.so"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

pub fn host_binary() -> PathBuf {
    artifacts().join("connector-host")
}

/// Copies a file into a plugins folder under `name`, with the permissions an operator would
/// give it (0644).
pub fn install_plugin(plugins_dir: &Path, source: &Path, name: &str) -> PathBuf {
    let destination = plugins_dir.join(name);
    std::fs::copy(source, &destination).expect("copy plugin");
    std::fs::set_permissions(&destination, std::fs::Permissions::from_mode(0o644))
        .expect("chmod plugin");
    destination
}

/// The admin key every [`TestHost`] is started with, unless a test chooses otherwise.
pub const ADMIN_KEY: &str = "test-admin-key";
/// The send key every [`TestHost`] is started with.
pub const SEND_KEY: &str = "test-send-key";

/// For tests that send to one number prefix without pause (a load, not users): the
/// protection layers that stop exactly such a flood (`prefix_velocity`, and
/// `first_seen_country` where no code is verified) are off; the rest of protection stays on.
pub const FLOOD_FLAGS: [&str; 4] = [
    "--prefix-velocity-max",
    "0",
    "--first-seen-country-max",
    "0",
];

/// A flood's flags plus no per-recipient limit or cooldown: a test that sends to one number
/// as fast as it can.
pub const UNLIMITED_FLOOD_FLAGS: [&str; 8] = [
    "--max-sends-per-recipient",
    "1000000",
    "--resend-cooldown-secs",
    "0",
    "--prefix-velocity-max",
    "0",
    "--first-seen-country-max",
    "0",
];

/// The folders a host runs on; they outlive the process, so a test can restart it.
pub struct HostFolders {
    pub plugins_dir: PathBuf,
    pub data_dir: PathBuf,
    /// With `E2E_STORE=postgres` (or [`HostFolders::on_database`]): the database the host uses.
    pub database: Option<SharedDatabase>,
    /// The host's open file limit (soft and hard), as `ulimit -n` would set it; `None`: this
    /// process's.
    pub open_file_limit: Option<u64>,
    /// Runs the host with the kernel's memory-deny-write-execute (`PR_SET_MDWE`), what
    /// systemd's `MemoryDenyWriteExecute=yes` applies: no mapping may become executable.
    pub deny_write_execute_memory: bool,
    scratch: tempfile::TempDir,
}

/// Which store the hosts of this test run use. `E2E_STORE=postgres` runs the same suites
/// against PostgreSQL (each host on a database of a throwaway cluster); the default is the
/// embedded SQLite store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

pub fn store_kind() -> StoreKind {
    match std::env::var("E2E_STORE").as_deref() {
        Ok("postgres") => StoreKind::Postgres,
        _ => StoreKind::Sqlite,
    }
}

/// A PostgreSQL database hosts share, with the key files they all use.
#[derive(Clone)]
pub struct SharedDatabase {
    pub cluster: std::sync::Arc<postgres::PostgresCluster>,
    pub url: String,
    pub name: String,
    pub code_hash_key_file: PathBuf,
    /// The keyring that seals saved configs: one key, 64 hex digits.
    pub secrets_key_file: PathBuf,
    _key_folder: std::sync::Arc<tempfile::TempDir>,
}

impl SharedDatabase {
    /// A new database on `cluster`, and a key file (0600) for its hosts.
    pub fn create(cluster: &std::sync::Arc<postgres::PostgresCluster>) -> SharedDatabase {
        let url = cluster.create_database();
        let name = url.rsplit('/').next().unwrap_or_default().to_owned();
        let key_folder = tempfile::tempdir().expect("key folder");
        let code_hash_key_file = key_folder.path().join("code-hash-key");
        std::fs::write(
            &code_hash_key_file,
            "a-shared-test-key-of-at-least-32-characters\n",
        )
        .expect("key file");
        std::fs::set_permissions(&code_hash_key_file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod key file");
        let secrets_key_file = key_folder.path().join("secrets-key");
        std::fs::write(
            &secrets_key_file,
            "# a test keyring\n5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7\n",
        )
        .expect("secrets key file");
        std::fs::set_permissions(&secrets_key_file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod secrets key file");
        SharedDatabase {
            cluster: std::sync::Arc::clone(cluster),
            url,
            name,
            code_hash_key_file,
            secrets_key_file,
            _key_folder: std::sync::Arc::new(key_folder),
        }
    }

    /// On a cluster of its own.
    pub fn on_new_cluster() -> SharedDatabase {
        Self::create(&std::sync::Arc::new(postgres::PostgresCluster::start()))
    }

    pub fn psql(&self, sql: &str) -> String {
        self.cluster.psql(&self.name, sql)
    }
}

impl HostFolders {
    /// Fresh folders whose plugins folder holds `plugins` (file name, source path).
    pub fn new(plugins: &[(&str, &Path)]) -> HostFolders {
        let database = match store_kind() {
            StoreKind::Sqlite => None,
            StoreKind::Postgres => Some(SharedDatabase::on_new_cluster()),
        };
        HostFolders::with_database(plugins, database)
    }

    /// Fresh folders on `database`, or on SQLite in the data directory (`None`), whatever
    /// `E2E_STORE` says.
    pub fn with_database(
        plugins: &[(&str, &Path)],
        database: Option<SharedDatabase>,
    ) -> HostFolders {
        let scratch = tempfile::tempdir().expect("scratch dir");
        let plugins_dir = scratch.path().join("plugins");
        let data_dir = scratch.path().join("data");
        std::fs::create_dir_all(&plugins_dir).expect("plugins dir");
        std::fs::set_permissions(&plugins_dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        for (name, source) in plugins {
            install_plugin(&plugins_dir, source, name);
        }
        HostFolders {
            plugins_dir,
            data_dir,
            database,
            open_file_limit: None,
            deny_write_execute_memory: false,
            scratch,
        }
    }

    /// Fresh folders whose host uses `database` (several hosts on one database).
    pub fn on_database(plugins: &[(&str, &Path)], database: &SharedDatabase) -> HostFolders {
        HostFolders::with_database(plugins, Some(database.clone()))
    }

    /// Everything the host's store holds, as bytes (the SQLite file and its WAL, or a dump
    /// of the PostgreSQL database), to search for what must never be saved.
    pub fn stored_bytes(&self) -> Vec<u8> {
        match &self.database {
            Some(database) => database.cluster.dump(&database.name),
            None => {
                let mut bytes =
                    std::fs::read(self.data_dir.join("connectors.sqlite3")).unwrap_or_default();
                bytes.extend(
                    std::fs::read(self.data_dir.join("connectors.sqlite3-wal")).unwrap_or_default(),
                );
                bytes
            }
        }
    }

    /// Runs one SQL statement against the host's store (to age a code, say); returns the
    /// number of rows it changed.
    pub fn execute_sql(&self, sql: &str) -> usize {
        match &self.database {
            Some(database) => {
                let counted =
                    format!("WITH changed AS ({sql} RETURNING 1) SELECT count(*) FROM changed");
                database.psql(&counted).parse().expect("a row count")
            }
            None => {
                let connection =
                    rusqlite::Connection::open(self.data_dir.join("connectors.sqlite3"))
                        .expect("open the store");
                connection
                    .busy_timeout(Duration::from_secs(5))
                    .expect("busy timeout");
                connection.execute(sql, []).expect("execute")
            }
        }
    }

    /// A path in the scratch folder (fixtures, files a test checks are never written).
    pub fn scratch_path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// The host's outbox, where development connectors' messages go:
    /// `<data>/mock-sms-outbox.jsonl`. It outlives the process, like the data directory.
    pub fn outbox_path(&self) -> PathBuf {
        self.data_dir.join("mock-sms-outbox.jsonl")
    }

    /// Every line of the host's outbox, parsed, oldest first.
    pub fn outbox_lines(&self) -> Vec<Value> {
        outbox_lines(&self.outbox_path())
    }

    /// The lines a saved connector wrote (`connectorId`); config tests carry `null`.
    pub fn outbox_lines_of(&self, connector_id: &str) -> Vec<Value> {
        let mut lines = self.outbox_lines();
        lines.retain(|line| line["connectorId"] == connector_id);
        lines
    }

    /// Starts a host with the test keys and a per-recipient limit high enough for tests that
    /// send many messages to one number (the flow-control tests set their own).
    pub fn start(self) -> TestHost {
        self.start_with_args(&[
            "--admin-key",
            ADMIN_KEY,
            "--send-key",
            SEND_KEY,
            "--max-sends-per-recipient",
            "1000000",
            "--resend-cooldown-secs",
            "0",
        ])
    }

    /// Runs `serve` on these folders as [`HostFolders::start`] would and expects it to refuse
    /// to start: its stderr.
    pub fn refused_start(&self) -> String {
        let mut command = Command::new(host_binary());
        command
            .arg("serve")
            .arg("--data")
            .arg(&self.data_dir)
            .arg("--plugins")
            .arg(&self.plugins_dir)
            .args(["--listen", "127.0.0.1:0", "--admin-key", ADMIN_KEY]);
        if let Some(database) = &self.database {
            command
                .args(["--database-url", &database.url])
                .arg("--code-hash-key-file")
                .arg(&database.code_hash_key_file)
                .arg("--secrets-key-file")
                .arg(&database.secrets_key_file);
        }
        let output = command.output().expect("run the host");
        assert!(
            !output.status.success(),
            "the host started: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    pub fn start_with_args(self, extra_args: &[&str]) -> TestHost {
        let mut store_args: Vec<String> = Vec::new();
        if let Some(database) = &self.database {
            store_args.extend([
                "--database-url".to_owned(),
                database.url.clone(),
                "--code-hash-key-file".to_owned(),
                database.code_hash_key_file.display().to_string(),
                "--secrets-key-file".to_owned(),
                database.secrets_key_file.display().to_string(),
            ]);
            // Hosts of one database need an explicit admin key.
            if !extra_args.contains(&"--admin-key") {
                store_args.extend(["--admin-key".to_owned(), ADMIN_KEY.to_owned()]);
            }
        }
        let log_path = self.scratch.path().join("host.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let mut command = Command::new(host_binary());
        if self.deny_write_execute_memory {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec only prctl runs, a plain system call.
            unsafe {
                command.pre_exec(|| {
                    // PR_MDWE_REFUSE_EXEC_GAIN; the spawn fails if the kernel refuses.
                    if libc::prctl(libc::PR_SET_MDWE, 1, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        if let Some(limit) = self.open_file_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec only setrlimit runs, a plain system call.
            unsafe {
                command.pre_exec(move || {
                    let limit = rustix::process::Rlimit {
                        current: Some(limit),
                        maximum: Some(limit),
                    };
                    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)
                        .map_err(std::io::Error::from)
                });
            }
        }
        let mut child = command
            .arg("serve")
            .arg("--plugins")
            .arg(&self.plugins_dir)
            .arg("--data")
            .arg(&self.data_dir)
            // A restart on the same port passes its own `--listen`.
            .args(if extra_args.contains(&"--listen") {
                &[][..]
            } else {
                &["--listen", "127.0.0.1:0"][..]
            })
            .args(extra_args)
            .args(&store_args)
            .env("RUST_LOG", "info,connector_host=debug")
            .env("NO_COLOR", "1")
            // `E2E_PLUGIN_ISOLATION=process`: the same suites with every plugin build in
            // worker processes (a test's own `--plugin-isolation` wins).
            .env(
                "CONNECTOR_HOST_PLUGIN_ISOLATION",
                std::env::var("E2E_PLUGIN_ISOLATION").unwrap_or_else(|_| "in-process".to_owned()),
            )
            // A worker's step deadline is not what those suites test (isolation.rs sets its
            // own): room for a loaded machine.
            .env("CONNECTOR_HOST_PLUGIN_CALL_TIMEOUT_MS", "5000")
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("start connector-host");
        let stdout = child.stdout.take().expect("stdout");
        let mut first_line = String::new();
        BufReader::new(stdout)
            .read_line(&mut first_line)
            .expect("read the listening line");
        let base_url = first_line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("host did not start: {first_line:?}\n{log}")
            })
            .to_owned();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        TestHost {
            child,
            base_url,
            plugins_dir: self.plugins_dir.clone(),
            data_dir: self.data_dir.clone(),
            log_path,
            folders: Some(self),
            agent,
        }
    }
}

/// A running `connector-host serve`. Killed on drop.
pub struct TestHost {
    child: Child,
    pub base_url: String,
    pub plugins_dir: PathBuf,
    pub data_dir: PathBuf,
    log_path: PathBuf,
    folders: Option<HostFolders>,
    agent: ureq::Agent,
}

impl TestHost {
    /// Starts a host whose plugins folder holds `plugins` (file name, source path).
    pub fn start(plugins: &[(&str, &Path)]) -> TestHost {
        HostFolders::new(plugins).start()
    }

    /// Kills the process with SIGKILL (no chance to clean up) and hands back its folders.
    pub fn kill(mut self) -> HostFolders {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.folders.take().expect("folders")
    }

    pub fn folders(&self) -> &HostFolders {
        self.folders.as_ref().expect("folders")
    }

    /// Every line of this host's outbox (see [`HostFolders::outbox_lines`]).
    pub fn outbox_lines(&self) -> Vec<Value> {
        self.folders().outbox_lines()
    }

    /// The lines the saved connector `connector_id` wrote to this host's outbox.
    pub fn outbox_lines_of(&self, connector_id: &str) -> Vec<Value> {
        self.folders().outbox_lines_of(connector_id)
    }

    /// The process id, to signal it from another thread.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the host logged so far (stderr), once the file stops growing: the host writes
    /// lines from a background thread in batches every few milliseconds, and a check that a
    /// secret is absent must not run before the last line is out.
    pub fn log(&self) -> String {
        let size = || {
            std::fs::metadata(&self.log_path)
                .map(|metadata| metadata.len())
                .ok()
        };
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut last = size();
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let now = size();
            if now == last || Instant::now() > deadline {
                break;
            }
            last = now;
        }
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The log once `expected` holds for it (or after 10 s, for the caller's assertion to
    /// report): the host writes log lines from a background thread, a moment after the event.
    pub fn log_eventually(&self, expected: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if expected(&log) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A request with the admin key.
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.request("GET", path, Some(ADMIN_KEY), None)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request("POST", path, Some(ADMIN_KEY), Some(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request("PATCH", path, Some(ADMIN_KEY), Some(body))
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.request("DELETE", path, Some(ADMIN_KEY), None)
    }

    /// Any method, with a chosen key (or none) and an optional JSON body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let body = body.map(|body| body.to_string());
        self.request_raw(
            method,
            path,
            key,
            body.as_deref().map(|body| ("application/json", body)),
        )
    }

    /// Like [`TestHost::request`], but a failed exchange (the host was killed) is an error.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_url));
        if let Some(key) = key {
            builder = builder.header("Authorization", format!("Bearer {key}"));
        }
        let request = builder
            .header("Content-Type", "application/json")
            .body(body.map(Value::to_string).unwrap_or_default())
            .map_err(|error| error.to_string())?;
        self.agent
            .run(request)
            .map(read_json)
            .map_err(|error| error.to_string())
    }

    /// Any method with a raw body and content type, for malformed-body tests.
    pub fn request_raw(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<(&str, &str)>,
    ) -> (u16, Value) {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_url));
        if let Some(key) = key {
            builder = builder.header("Authorization", format!("Bearer {key}"));
        }
        let response = match body {
            Some((content_type, body)) => {
                let request = builder
                    .header("Content-Type", content_type)
                    .body(body.to_owned())
                    .expect("request");
                self.agent.run(request)
            }
            None => self.agent.run(builder.body(()).expect("request")),
        }
        .expect("HTTP exchange");
        read_json(response)
    }
}

fn read_json(mut response: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, json)
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-connection-at-a-time HTTP listener on 127.0.0.1 that records every request and
/// answers each with a fixed status and body: the SMS provider for request-building
/// connectors.
pub struct CaptureServer {
    pub url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<CapturedRequest>>>,
}

#[derive(Debug, Clone)]
pub struct CapturedRequest {
    pub request_line: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl CapturedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

impl CaptureServer {
    pub fn start(status: u16, response_body: &'static str) -> CaptureServer {
        Self::start_with_delay(status, response_body, Duration::ZERO)
    }

    /// Like [`CaptureServer::start`], but waits `delay` before answering each request.
    pub fn start_with_delay(
        status: u16,
        response_body: &'static str,
        delay: Duration,
    ) -> CaptureServer {
        Self::start_serving(status, response_body, delay, false, "")
    }

    /// Like [`CaptureServer::start`], with extra header lines (`"Retry-After: 42\r\n"`).
    pub fn start_with_headers(
        status: u16,
        extra_headers: &'static str,
        response_body: &'static str,
    ) -> CaptureServer {
        Self::start_serving(status, response_body, Duration::ZERO, false, extra_headers)
    }

    /// Like [`CaptureServer::start_with_delay`], but each connection on its own thread: a
    /// provider that stalls every request at once rather than one after another.
    pub fn start_concurrent_with_delay(
        status: u16,
        response_body: &'static str,
        delay: Duration,
    ) -> CaptureServer {
        Self::start_serving(status, response_body, delay, true, "")
    }

    fn start_serving(
        status: u16,
        response_body: &'static str,
        delay: Duration,
        concurrent: bool,
        extra_headers: &'static str,
    ) -> CaptureServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = std::sync::Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let recorded = std::sync::Arc::clone(&recorded);
                let answer = move || {
                    answer_one(
                        stream,
                        &recorded,
                        (status, extra_headers, response_body),
                        delay,
                    )
                };
                if concurrent {
                    std::thread::spawn(answer);
                } else {
                    answer();
                }
            }
        });
        CaptureServer { url, requests }
    }

    pub fn requests(&self) -> Vec<CapturedRequest> {
        self.requests.lock().expect("lock").clone()
    }

    /// The requests once at least `count` arrived, or as they are after 10 s: for a request
    /// the host gave up waiting on, whose reading thread may not have run yet on a busy
    /// machine.
    pub fn requests_once(&self, count: usize) -> Vec<CapturedRequest> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let requests = self.requests();
            if requests.len() >= count || std::time::Instant::now() > deadline {
                return requests;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Reads one request from `stream`, records it, waits `delay`, answers and closes.
fn answer_one(
    stream: std::net::TcpStream,
    recorded: &std::sync::Mutex<Vec<CapturedRequest>>,
    (status, extra_headers, response_body): (u16, &str, &str),
    delay: Duration,
) {
    use std::io::{Read, Write};
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.trim().split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let length = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    recorded.lock().expect("lock").push(CapturedRequest {
        request_line: request_line.trim().to_owned(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    std::thread::sleep(delay);
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{response_body}",
        response_body.len()
    );
}

/// The lines of an outbox file, parsed (see [`HostFolders::outbox_lines`]).
pub fn outbox_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("outbox line is JSON"))
        .collect()
}

/// A port on 127.0.0.1 where nothing listens for as long as it lives: a socket bound there
/// and never listening, so a connection is refused (a provider that is down) and no other
/// test's port-0 bind can take the port meanwhile, as one can a released [`free_port`].
pub struct RefusingPort {
    pub port: u16,
    _socket: rustix::fd::OwnedFd,
}

impl RefusingPort {
    pub fn new() -> RefusingPort {
        use rustix::net::{bind, getsockname, socket, AddressFamily, SocketType};
        let socket = socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
        bind(
            &socket,
            &std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
        )
        .expect("bind");
        let address = getsockname(&socket).expect("getsockname");
        let port = std::net::SocketAddr::try_from(address)
            .expect("an IPv4 address")
            .port();
        RefusingPort {
            port,
            _socket: socket,
        }
    }
}

impl Default for RefusingPort {
    fn default() -> Self {
        Self::new()
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; the caller binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Waits until something accepts connections on the port.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < timeout {
        // A connection to itself does not count: when nothing listens yet, the kernel may
        // pick the target port as the source port, and the two ends meet (TCP simultaneous
        // open), which looks like a listener that is not there.
        let accepted = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|stream| {
            stream.local_addr().ok().map(|address| address.port()) != Some(port)
        });
        if accepted {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Where `scripts/install-counterparts` puts the npm counterparts.
pub fn counterparts_dir() -> PathBuf {
    workspace_root().join("target/counterparts")
}

/// A child process killed on drop (counterparts the tests start).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
