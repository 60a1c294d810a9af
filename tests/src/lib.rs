//! Helpers for the end-to-end tests: build the binaries and plugin files once, start a real
//! `connector-host` on 127.0.0.1:0 with a chosen set of plugin files, and talk HTTP to it.
//!
//! # Layout
//! - [`artifacts`]: `cargo build` of the host and every plugin and fixture, once per test binary.
//! - [`TestHost`]: one running host process with its own plugins folder and data directory.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

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
];

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
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut command = Command::new(cargo);
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

/// A running `connector-host serve`. Killed on drop.
pub struct TestHost {
    child: Child,
    pub base_url: String,
    pub plugins_dir: PathBuf,
    pub data_dir: PathBuf,
    log_path: PathBuf,
    _scratch: tempfile::TempDir,
    agent: ureq::Agent,
}

impl TestHost {
    /// Starts a host whose plugins folder holds `plugins` (file name, source path).
    pub fn start(plugins: &[(&str, &Path)]) -> TestHost {
        let scratch = tempfile::tempdir().expect("scratch dir");
        let plugins_dir = scratch.path().join("plugins");
        let data_dir = scratch.path().join("data");
        std::fs::create_dir_all(&plugins_dir).expect("plugins dir");
        std::fs::set_permissions(&plugins_dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        for (name, source) in plugins {
            install_plugin(&plugins_dir, source, name);
        }
        Self::start_with_dirs(scratch, plugins_dir, data_dir)
    }

    pub fn start_with_dirs(
        scratch: tempfile::TempDir,
        plugins_dir: PathBuf,
        data_dir: PathBuf,
    ) -> TestHost {
        let log_path = scratch.path().join("host.log");
        let log_file = std::fs::File::create(&log_path).expect("log file");
        let mut child = Command::new(host_binary())
            .arg("serve")
            .arg("--plugins")
            .arg(&plugins_dir)
            .arg("--data")
            .arg(&data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info,connector_host=debug")
            .env("NO_COLOR", "1")
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
            plugins_dir,
            data_dir,
            log_path,
            _scratch: scratch,
            agent,
        }
    }

    /// What the host logged so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .agent
            .get(format!("{}{path}", self.base_url))
            .call()
            .expect("GET");
        read_json(response)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .agent
            .post(format!("{}{path}", self.base_url))
            .send_json(body)
            .expect("POST");
        read_json(response)
    }

    /// POSTs raw bytes with a content type, for malformed-body tests.
    pub fn post_raw(&self, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        let response = self
            .agent
            .post(format!("{}{path}", self.base_url))
            .header("Content-Type", content_type)
            .send(body)
            .expect("POST");
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
