//! The verification-code routes where they answer otherwise than Logto
//! (docs/logto-compatibility.md).

use e2e_tests::SEND_KEY;
use serde_json::{json, Value};

use crate::in_process_host::InProcessHost;
use crate::{mock_plugin, PHONE};

pub fn issue(host: &InProcessHost, body: Value) -> (u16, Value) {
    host.request(
        "POST",
        "/api/verification-codes",
        Some(SEND_KEY),
        Some(&body),
    )
}

fn verify(host: &InProcessHost, code: &str, template_type: &str) -> (u16, Value) {
    host.request(
        "POST",
        "/api/verification-codes/verify",
        Some(SEND_KEY),
        Some(&json!({"phone": PHONE, "verificationCode": code, "type": template_type})),
    )
}

/// The code of the last message the host sent.
pub fn last_code(host: &InProcessHost) -> String {
    host.outbox_lines().last().expect("a message was sent")["payload"]["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn code_routes_differ_from_logto_where_documented() {
    let (mock_name, mock_file) = mock_plugin();
    let host = InProcessHost::start_with(&[(mock_name, &mock_file)], |config| {
        config.code_policy.max_attempts = 1;
    });
    // No live connector: Logto saves the code and then fails 501; here the connector is
    // checked first, so the 501 leaves nothing pending.
    let (status, refused) = issue(&host, json!({"phone": PHONE, "type": "SignIn"}));
    assert_eq!(
        (status, refused["code"].clone()),
        (501, json!("connector.not_found"))
    );
    let config =
        json!({"templates": [{"usageType": "Generic", "content": "{{code}}"}], "outbox": true});
    assert_eq!(
        host.post(
            "/api/connectors",
            &json!({"connectorId": crate::MOCK, "config": config})
        )
        .0,
        200
    );
    assert_eq!(
        verify(&host, "000000", "SignIn").1["code"],
        "verification_code.not_found",
        "the refused request saved no code"
    );

    // Logto's email variant is not taken: SMS only.
    let (status, refused) = issue(&host, json!({"email": "a@example.com"}));
    assert_eq!(
        (status, refused["code"].clone()),
        (400, json!("guard.invalid_input"))
    );

    // A code that is not six digits is refused as malformed (Logto: `code_mismatch`), and it
    // costs no attempt: with one attempt allowed, the right code still works after it.
    assert_eq!(
        issue(&host, json!({"phone": PHONE, "type": "SignIn"})).0,
        204
    );
    let code = last_code(&host);
    for malformed in ["12345", "abcdef", " 123456", ""] {
        let (status, refused) = verify(&host, malformed, "SignIn");
        assert_eq!(
            (status, refused["code"].clone()),
            (400, json!("guard.invalid_input")),
            "{malformed:?}"
        );
    }
    assert_eq!(verify(&host, &code, "SignIn").0, 204);
}
