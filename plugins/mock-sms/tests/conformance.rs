//! The conformance kit on the mock connector. It sends nothing over HTTP (it appends to an
//! outbox file), so the request and answer rules do not apply; `outbox: null` keeps the kit's
//! sends from writing a file.

use mock_sms::MockSms;
use plugin_api::conformance::Conformance;
use serde_json::json;

#[test]
fn the_mock_connector_conforms() {
    let sample_config = json!({
        "templates": [
            {"usageType": "SignIn", "content": "Your sign-in code is {{code}}."},
            {"usageType": "Generic", "content": "Your code is {{code}}."}
        ],
        "outbox": null
    });
    Conformance::new(&sample_config)
        .sends_without_http()
        .assert_conforms::<MockSms>();
}
