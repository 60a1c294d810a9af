//! The conformance kit on the Twilio connector, answered as Twilio answers a created message.

use plugin_api::conformance::Conformance;
use serde_json::json;
use twilio_sms::TwilioSms;

#[test]
fn the_twilio_connector_conforms() {
    let sample_config = json!({
        "accountSID": "AC0123456789abcdef0123456789abcdef",
        "authToken": "test-auth-token",
        "fromMessagingServiceSID": "MG0123456789abcdef0123456789abcdef",
        "baseUrl": "https://api.twilio.com",
        "templates": [
            {"usageType": "SignIn", "content": "Your sign-in code is {{code}}."},
            {"usageType": "Generic", "content": "Your code is {{code}}."}
        ]
    });
    Conformance::new(&sample_config)
        .success_response(
            201,
            r#"{"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued", "to": "+12015550123"}"#,
        )
        .assert_conforms::<TwilioSms>();
}
