//! `POST /api/messages` refusals: no live connector, phones, template types.

use e2e_tests::SEND_KEY;
use serde_json::{json, Value};

use crate::in_process_host::code_of;
use crate::{mock_host, MOCK, PHONE};

#[test]
fn a_message_is_refused_without_a_connector_a_valid_phone_or_its_template() {
    let host = mock_host();
    let send =
        |body: Value| code_of(host.request("POST", "/api/messages", Some(SEND_KEY), Some(&body)));
    assert_eq!(
        send(json!({"to": PHONE})),
        (501, "connector.not_found".into())
    );
    let (status, created) = host.post(
        "/api/connectors",
        &json!({"connectorId": MOCK, "config": {"templates": [{"usageType": "SignIn", "content": "{{code}}"}], "outbox": true}}),
    );
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        send(json!({"to": "+1 201 555 0123"})),
        (400, "guard.invalid_phone_number".into())
    );
    assert_eq!(
        send(json!({"to": "15555550123"})),
        (400, "guard.invalid_phone_number".into())
    );
    assert_eq!(
        send(json!({"to": PHONE, "type": "Login"})),
        (400, "guard.invalid_input".into())
    );
    assert_eq!(
        send(json!({"to": PHONE, "type": "Register"})),
        (400, "connector.template_not_found".into())
    );
    assert!(host.outbox_lines().is_empty(), "{:?}", host.outbox_lines());
    assert_eq!(
        send(json!({"to": PHONE, "type": "SignIn", "payload": {"code": "1"}})).0,
        200
    );
    assert_eq!(host.outbox_lines().len(), 1);
}
