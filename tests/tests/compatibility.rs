//! plugin-api 1.x compatibility, proven with real builds rather than promised:
//! - a connector built against plugin-api 1.0.0 as released (the frozen source in
//!   `tests/compat/plugin-api-1.0.0`, built out of this workspace with its own lock file, as a
//!   vendor builds) loads into the current host and sends through it;
//! - a "1.9" plugin, whose root module has one more trailing function than this host knows,
//!   loads and sends: the host ignores what it does not know (abi_stable accepts a library
//!   whose root module is longer than the host's; a shorter one, a 1.0 plugin's, the host
//!   checks against the frozen 1.0 layout, `plugin_api::ffi::v1_0`);
//! - a "2.0" plugin is refused with the one-line version message.
//!
//! The 1.9 and 2.0 builds are the frozen 1.0.0 source with the version (and, for 1.9, the
//! root module) changed in a scratch copy, so nothing but that difference is tested.

use std::path::{Path, PathBuf};

use e2e_tests::{workspace_root, CaptureServer, HostFolders, TestHost, SEND_KEY};
use serde_json::{json, Value};

const COMPAT_FACTORY: &str = "compat-plugin-api-1-0";
const PHONE: &str = "+12015550123";

fn compat_dir() -> PathBuf {
    workspace_root().join("tests/compat")
}

/// Builds the cdylib of the crate at `crate_dir` out of this workspace (its own lock file) and
/// returns the `.so`. One target directory for every variant: their dependencies are shared.
fn build_out_of_tree(crate_dir: &Path, library_name: &str, locked: bool) -> PathBuf {
    let target_dir = workspace_root().join("target/compat");
    let mut command = e2e_tests::cargo_command();
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        // Not this test's own profile settings or rustflags: a vendor's plain build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if locked {
        command.arg("--locked");
    }
    let output = command.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "building {} failed:\n{}",
        crate_dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let library = target_dir.join(format!("debug/lib{library_name}.so"));
    assert!(library.exists(), "{} was not built", library.display());
    library
}

fn copy_dir(source: &Path, destination: &Path) {
    std::fs::create_dir_all(destination).unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        let target = destination.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Replaces `from` by `to` in a file of the scratch copy; the text must be there.
fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains(from),
        "{} no longer holds {from:?}",
        path.display()
    );
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// The frozen 1.0.0 source and the connector, copied to `scratch` as plugin-api `version`
/// and a connector package named after it; `change_plugin_api` edits the copy further.
fn build_variant(scratch: &Path, version: &str, change_plugin_api: impl FnOnce(&Path)) -> PathBuf {
    let plugin_api = scratch.join("plugin-api");
    copy_dir(&compat_dir().join("plugin-api-1.0.0"), &plugin_api);
    edit(
        &plugin_api.join("Cargo.toml"),
        "version = \"1.0.0\"",
        &format!("version = \"{version}\""),
    );
    change_plugin_api(&plugin_api);
    let connector = scratch.join("connector");
    copy_dir(
        &compat_dir().join("connector-on-plugin-api-1.0"),
        &connector,
    );
    let package_name = format!("connector-on-plugin-api-{}", version.replace('.', "-"));
    edit(
        &connector.join("Cargo.toml"),
        "name = \"connector-on-plugin-api-1-0\"",
        &format!("name = \"{package_name}\""),
    );
    edit(
        &connector.join("Cargo.toml"),
        "path = \"../plugin-api-1.0.0\"",
        "path = \"../plugin-api\"",
    );
    // The lock file names plugin-api 1.0.0 and the old package name: let cargo update those
    // two entries (every registry dependency stays as locked).
    build_out_of_tree(&connector, &package_name.replace('-', "_"), false)
}

fn start_host_with(library: &Path) -> TestHost {
    HostFolders::new(&[("compat.so", library)]).start()
}

/// Creates the connector against a provider that answers the token and the send alike, sends
/// one code, and returns what the provider received.
fn send_through(host: &TestHost) -> Vec<e2e_tests::CapturedRequest> {
    let provider = CaptureServer::start(200, r#"{"token": "token-1", "id": "message-1"}"#);
    let (status, created) = host.post(
        "/api/connectors",
        &json!({"connectorId": COMPAT_FACTORY, "config": {
            "baseUrl": provider.url,
            "apiKey": "key-1",
            "templates": [{"usageType": "Generic", "content": "Your code is {{code}}"}]
        }}),
    );
    assert_eq!(status, 200, "{created}");
    let (status, receipt) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "type": "SignIn", "payload": {"code": "424242"}})),
    );
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["providerMessageId"], "message-1");
    provider.requests()
}

fn plugin_api_version_reported(host: &TestHost) -> Value {
    let (status, factory) = host.get(&format!("/api/connector-factories/{COMPAT_FACTORY}"));
    assert_eq!(status, 200, "{factory}");
    factory["pluginApiVersion"].clone()
}

#[test]
fn a_plugin_built_against_plugin_api_1_0_0_loads_and_sends_on_this_host() {
    let library = build_out_of_tree(
        &compat_dir().join("connector-on-plugin-api-1.0"),
        "connector_on_plugin_api_1_0",
        true,
    );
    // Beside plugins built against this host's plugin-api: each opens through its own layouts.
    let host = HostFolders::new(&[
        ("compat.so", &library),
        ("mock.so", &e2e_tests::plugin_file("mock_sms")),
    ])
    .start();
    assert_eq!(plugin_api_version_reported(&host), "1.0.0");
    let (status, mock) = host.get("/api/connector-factories/mock-short-message-service");
    assert_eq!(status, 200, "{mock}");
    assert_eq!(
        mock["pluginApiVersion"],
        plugin_api::PLUGIN_API_VERSION,
        "{mock}"
    );
    let requests = send_through(&host);
    assert_eq!(requests.len(), 2, "a token request, then the send");
    assert!(requests[0].request_line.starts_with("POST /token "));
    assert_eq!(requests[0].body, "key=key-1");
    assert!(requests[1].request_line.starts_with("POST /messages "));
    assert_eq!(requests[1].header("authorization"), Some("Bearer token-1"));
    let sent: Value = serde_json::from_str(&requests[1].body).unwrap();
    assert_eq!(sent, json!({"to": PHONE, "text": "Your code is 424242"}));
}

#[test]
fn a_plugin_whose_root_module_has_one_more_function_loads_and_sends() {
    let scratch = tempfile::tempdir().unwrap();
    let library = build_variant(scratch.path(), "1.9.0", |plugin_api| {
        // What a later 1.x would append: 1.1's `migrate_config`, then a function this host
        // has never heard of.
        edit(
            &plugin_api.join("src/ffi.rs"),
            "    pub instantiate: extern \"C\" fn(config_json: RStr<'_>) -> RResult<FfiConnectorBox, FfiError>,\n",
            "    pub instantiate: extern \"C\" fn(config_json: RStr<'_>) -> RResult<FfiConnectorBox, FfiError>,\n    /// Appended in 1.1.\n    pub migrate_config: extern \"C\" fn(saved_config_json: RStr<'_>) -> RResult<ROption<RString>, FfiError>,\n    /// Appended in \"1.9\".\n    pub describe_delivery_reports: extern \"C\" fn() -> RString,\n",
        );
        edit(
            &plugin_api.join("src/export.rs"),
            "        instantiate: export_instantiate::<Connector>,\n",
            "        instantiate: export_instantiate::<Connector>,\n        migrate_config: no_migration,\n        describe_delivery_reports,\n",
        );
        let export = plugin_api.join("src/export.rs");
        let mut text = std::fs::read_to_string(&export).unwrap();
        text.push_str(
            "\nextern \"C\" fn no_migration(_saved: RStr<'_>) -> RResult<ROption<RString>, FfiError> {\n    RResult::ROk(ROption::RNone)\n}\n\nextern \"C\" fn describe_delivery_reports() -> RString {\n    RString::from(\"not in 1.0\")\n}\n",
        );
        std::fs::write(export, text).unwrap();
    });
    let host = start_host_with(&library);
    assert_eq!(plugin_api_version_reported(&host), "1.9.0");
    assert_eq!(send_through(&host).len(), 2);
}

#[test]
fn a_plugin_built_against_plugin_api_2_is_refused_with_the_version_message() {
    let scratch = tempfile::tempdir().unwrap();
    let library = build_variant(scratch.path(), "2.0.0", |_| {});
    let host = start_host_with(&library);
    let (status, plugins) = host.get("/api/plugins");
    assert_eq!(status, 200);
    let report = plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|report| {
            report["path"]
                .as_str()
                .is_some_and(|path| path.ends_with("/compat.so"))
        })
        .unwrap_or_else(|| panic!("compat.so is reported: {plugins}"))
        .clone();
    assert_eq!(report["status"], "rejected", "{report}");
    let expected = format!(
        "incompatible plugin-api version: the plugin was built against 2.0.0, this host speaks {}; rebuild the plugin against plugin-api 1.x",
        plugin_api::PLUGIN_API_VERSION
    );
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|error| error.starts_with(&expected)),
        "{report}"
    );
}

/// The host opens 1.0 plugins through a frozen copy of the 1.0 ABI (`plugin-api/src/ffi/v1_0.rs`),
/// because abi_stable refuses a plugin whose root module or vtable has fewer functions than the
/// host's. That copy must be the 1.0 declarations exactly: the same items, fields and order.
#[test]
fn the_frozen_1_0_abi_is_the_1_0_declarations() {
    let declarations = |path: PathBuf| -> Vec<String> {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut kept = Vec::new();
        let mut inside = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with("pub struct SmsConnectorModule")
                || line.starts_with("pub trait FfiConnector")
                || line.starts_with("impl RootModule for")
            {
                inside = true;
            }
            if inside && !line.is_empty() && !line.starts_with("//") {
                kept.push(line.to_owned());
            }
            if inside && line == "}" {
                inside = false;
            }
        }
        kept
    };
    let without_version = |lines: Vec<String>| -> Vec<String> {
        lines
            .into_iter()
            .filter(|line| !line.starts_with("const VERSION_STRINGS"))
            .collect()
    };
    for (frozen, released) in [
        ("plugin-api/src/ffi/v1_0.rs", "plugin-api-1.0.0/src/ffi.rs"),
        ("plugin-api/src/ffi/v1_1.rs", "plugin-api-1.1.0/src/ffi.rs"),
    ] {
        let frozen_lines = declarations(workspace_root().join(frozen));
        assert!(frozen_lines.len() > 10, "{frozen}: {frozen_lines:?}");
        assert_eq!(
            without_version(frozen_lines),
            without_version(declarations(compat_dir().join(released))),
            "{frozen} differs from {released}"
        );
    }
}

#[test]
fn a_plugin_built_against_plugin_api_1_1_0_loads_sends_and_writes_its_notes() {
    let library = build_out_of_tree(
        &compat_dir().join("connector-on-plugin-api-1.1"),
        "connector_on_plugin_api_1_1",
        true,
    );
    let host = HostFolders::new(&[
        ("compat-1-1.so", &library),
        ("mock.so", &e2e_tests::plugin_file("mock_sms")),
    ])
    .start();
    let (status, factory) = host.get("/api/connector-factories/compat-plugin-api-1-1");
    assert_eq!(status, 200, "{factory}");
    assert_eq!(factory["pluginApiVersion"], "1.1.0");
    let provider = CaptureServer::start(200, r#"{"token": "token-1", "id": "message-1"}"#);
    let (status, created) = host.post(
        "/api/connectors",
        &json!({"connectorId": "compat-plugin-api-1-1", "config": {
            "baseUrl": provider.url,
            "apiKey": "key-1",
            "templates": [{"usageType": "Generic", "content": "Your code is {{code}}"}]
        }}),
    );
    assert_eq!(status, 200, "{created}");
    let (status, receipt) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "424242"}})),
    );
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["providerMessageId"], "message-1");
    assert_eq!(provider.requests().len(), 2);
    // Its notes cross through the frozen 1.1 layout (the test host logs sends at debug).
    host.log_eventually(|log| log.contains("fetched a token of 7 characters"));
}
