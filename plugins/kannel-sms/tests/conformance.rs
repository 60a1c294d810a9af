//! The conformance kit on the Kannel connector, answered as a Kannel smsbox answers an
//! accepted message (202, plain text).

use kannel_sms::KannelSms;
use plugin_api::conformance::Conformance;
use serde_json::json;

#[test]
fn the_kannel_connector_conforms() {
    let sample_config = json!({
        "baseUrl": "http://127.0.0.1:13013",
        "username": "sendsms-user",
        "password": "test-password",
        "from": "Acme",
        "dlrMask": 31,
        "dlrUrl": "https://example.com/kannel/dlr?status=%d",
        "templates": [
            {"usageType": "SignIn", "content": "Your sign-in code is {{code}}."},
            {"usageType": "Generic", "content": "Your code is {{code}}."}
        ]
    });
    Conformance::new(&sample_config)
        .success_response(202, "0: Accepted for delivery")
        .assert_conforms::<KannelSms>();
}
