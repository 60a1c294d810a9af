//! The loader as a library, against real `.so` files: distinct files give distinct modules,
//! identical content is loaded once, and plugin panics come back as error values.

use connector_host::plugins::loader::PluginLoader;
use e2e_tests::plugin_file;
use plugin_api::{ConnectorErrorCode, HttpResponse, SendProgress, SmsMessage, TemplateType};
use serde_json::json;

fn message() -> SmsMessage {
    SmsMessage::new(
        "+12015550123".to_owned(),
        TemplateType::SignIn,
        json!({"code": "123456"}).as_object().cloned().unwrap(),
    )
}

#[test]
fn distinct_files_load_as_distinct_modules_and_same_content_loads_once() {
    let scratch = tempfile::tempdir().unwrap();
    let loader = PluginLoader::new(scratch.path().join("copies"), None).unwrap();
    // RootModule::load_from_file would hand back the mock for the second file too.
    let mock = loader.load(&plugin_file("mock_sms")).unwrap();
    let request_building = loader
        .load(&plugin_file("fixture_request_building_connector"))
        .unwrap();
    assert_eq!(mock.metadata.connector.id, "mock-short-message-service");
    assert_eq!(
        request_building.metadata.connector.id,
        "request-building-test-connector"
    );

    // A second path with the same bytes reuses the loaded build: one private copy per digest.
    let second_path = scratch.path().join("mock-again.so");
    std::fs::copy(plugin_file("mock_sms"), &second_path).unwrap();
    let again = loader.load(&second_path).unwrap();
    assert_eq!(again.sha256, mock.sha256);
    assert!(std::sync::Arc::ptr_eq(&again.metadata, &mock.metadata));
    let copies: Vec<_> = std::fs::read_dir(scratch.path().join("copies"))
        .unwrap()
        .collect();
    assert_eq!(copies.len(), 2, "one private copy per distinct build");
}

#[test]
fn the_loaded_mock_sends_through_the_boundary() {
    let scratch = tempfile::tempdir().unwrap();
    let loader = PluginLoader::new(scratch.path().join("copies"), None).unwrap();
    let mock = loader.load(&plugin_file("mock_sms")).unwrap();
    // A legacy outbox path: ignored. The plugin does no I/O; it asks the host's outbox.
    let planted = scratch.path().join("outbox.jsonl");
    let config = json!({"templates": [{"usageType": "Generic", "content": "Code {{code}}"}], "outbox": planted});
    let instance = mock.module.instantiate(&config).unwrap();
    let instance = instance.in_process().unwrap();
    let message = message();
    let step = instance.start(&message).unwrap();
    let request = step.request().expect("a request to the host's outbox");
    assert_eq!(
        (request.method(), request.url()),
        ("POST", "connector-host:outbox")
    );
    let line: serde_json::Value = serde_json::from_slice(request.body()).unwrap();
    assert_eq!(line["content"], "Code 123456");
    assert_eq!(line["type"], "SignIn");
    let done = instance
        .resume(&message, &step, &HttpResponse::new(200, Vec::new()))
        .unwrap();
    assert!(done.receipt().is_some());
    assert!(!planted.exists(), "the plugin wrote a file");

    let error = mock
        .module
        .validate_config(&json!({"templates": [{"usageType": "Nope", "content": "x"}]}))
        .unwrap_err();
    assert_eq!(error.code, ConnectorErrorCode::InvalidConfig);
    assert_eq!(
        error.data.unwrap()["errors"][0]["field"],
        "templates[0].usageType"
    );
}

#[test]
fn a_panicking_send_step_is_an_error_value_and_the_process_survives() {
    let scratch = tempfile::tempdir().unwrap();
    let loader = PluginLoader::new(scratch.path().join("copies"), None).unwrap();
    let plugin = loader
        .load(&plugin_file("fixture_panicking_connector"))
        .unwrap();
    let instance = plugin.module.instantiate(&json!({})).unwrap();
    let instance = instance.in_process().unwrap();
    for _ in 0..3 {
        let error = instance
            .step(&message(), SendProgress::start())
            .unwrap_err();
        assert_eq!(error.code, ConnectorErrorCode::General);
        assert_eq!(
            error.message,
            "the plugin panicked in step: deliberate panic in step"
        );
    }
    let error = plugin
        .module
        .validate_config(&json!({"panicIn": "validate"}))
        .unwrap_err();
    assert_eq!(
        error.message,
        "the plugin panicked in validate_config: deliberate panic in from_config"
    );
    let error = plugin
        .module
        .instantiate(&json!({"panicIn": "validate"}))
        .err()
        .unwrap();
    assert_eq!(
        error.message,
        "the plugin panicked in instantiate: deliberate panic in from_config"
    );
    // Still here: the panics never crossed the boundary.
}
