//! The conformance kit on the Vonage connector, answered as Vonage answers an accepted
//! message (HTTP 200 with a status per message).

use plugin_api::conformance::Conformance;
use serde_json::json;
use vonage_sms::VonageSms;

#[test]
fn the_vonage_connector_conforms() {
    let sample_config = json!({
        "apiKey": "test-key",
        "apiSecret": "test-secret",
        "brandName": "Acme",
        "baseUrl": "https://rest.nexmo.com",
        "templates": [
            {"usageType": "SignIn", "content": "Your sign-in code is {{code}}."},
            {"usageType": "Generic", "content": "Your code is {{code}}."}
        ]
    });
    Conformance::new(&sample_config)
        .success_response(
            200,
            r#"{"message-count": "1", "messages": [{"to": "12015550123", "message-id": "0A0000000123ABCD", "status": "0", "remaining-balance": "3.14", "message-price": "0.03", "network": "12345"}]}"#,
        )
        .assert_conforms::<VonageSms>();
}
