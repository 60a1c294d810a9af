//! The conformance kit on the HTTP SMS connector. Like Logto's, it takes any 2xx as sent,
//! whatever the body: the endpoint is the operator's own service.

use http_sms::HttpSms;
use plugin_api::conformance::Conformance;
use serde_json::json;

#[test]
fn the_http_sms_connector_conforms() {
    let sample_config = json!({
        "endpoint": "https://sms.example.com/send",
        "authorization": "Bearer test-token"
    });
    Conformance::new(&sample_config)
        .accepts_any_2xx_body()
        .assert_conforms::<HttpSms>();
}
