//! The conformance kit on the mock connector. It sends nothing to a provider: with its outbox
//! on, its one request goes to the host's own outbox (`connector-host:outbox`), which the
//! kit's request rules (an http/https URL from the config) do not fit; `outbox: false` makes
//! it finish without a request, so the remaining rules apply.

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
        "outbox": false
    });
    Conformance::new(&sample_config)
        .sends_without_http()
        .assert_conforms::<MockSms>();
}
