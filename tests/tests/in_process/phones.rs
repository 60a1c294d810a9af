//! How phone numbers are checked: `--phone-validation` and `--allowed-countries`.

use connector_host::state::ServeConfig;
use e2e_tests::SEND_KEY;
use serde_json::json;

use crate::in_process_host::InProcessHost;
use crate::verification_codes::{issue, last_code};
use crate::{mock_plugin, MOCK, PHONE};

/// A host (flags at their defaults but those `configure` sets) whose live connector is the
/// mock with its outbox on.
fn mock_host_with(configure: impl FnOnce(&mut ServeConfig)) -> InProcessHost {
    let (mock_name, mock_file) = mock_plugin();
    let host = InProcessHost::start_with(&[(mock_name, &mock_file)], configure);
    let config = json!({
        "templates": [
            {"usageType": "Generic", "content": "Your code is {{code}}"},
            {"usageType": "SignIn", "content": "Sign in with {{code}}"},
            {"usageType": "SignIn", "locale": "de", "content": "Anmeldecode {{code}}"}
        ],
        "outbox": true
    });
    let (status, body) = host.post(
        "/api/connectors",
        &json!({"connectorId": MOCK, "config": config}),
    );
    assert_eq!(status, 200, "{body}");
    host
}

#[test]
fn the_country_allowlist_refuses_before_anything_is_sent() {
    let host = mock_host_with(|config| {
        config.send_limits.allowed_countries = Some(["US".to_owned(), "CA".to_owned()].into());
    });
    let (status, refused) = issue(&host, json!({"phone": "+4915112345678"}));
    assert_eq!(
        (status, refused["code"].clone()),
        (400, json!("guard.phone_country_not_allowed")),
        "{refused}"
    );
    assert!(refused["message"].as_str().unwrap().contains("DE"));
    assert!(host.outbox_lines().is_empty());
    assert_eq!(issue(&host, json!({"phone": PHONE})).0, 204);
}

/// `--phone-validation digits` takes the numbers Logto's `^\d+$` takes, which the strict
/// default refuses; plugins still get `+` and the digits.
#[test]
fn digits_phone_validation_takes_the_numbers_logto_takes() {
    const LOGTO_PHONES: [&str; 2] = ["8612345678901", "1233212321"];
    let strict_host = mock_host_with(|_| {});
    for phone in LOGTO_PHONES {
        let (status, refused) = issue(&strict_host, json!({"phone": phone}));
        assert_eq!(
            (status, refused["code"].clone()),
            (400, json!("guard.invalid_phone_number")),
            "{phone}"
        );
    }
    assert!(strict_host.outbox_lines().is_empty());
    drop(strict_host);

    let host = mock_host_with(|config| {
        config.phone_validation = connector_host::phone::PhoneValidation::Digits;
        config.send_limits.resend_cooldown = std::time::Duration::ZERO;
    });
    for phone in LOGTO_PHONES {
        let (status, body) = issue(&host, json!({"phone": phone}));
        assert_eq!(status, 204, "{phone}: {body}");
        let sent = host.outbox_lines().pop().unwrap();
        assert_eq!(sent["to"], format!("+{phone}"));
        let code = last_code(&host);
        let (status, body) = host.request(
            "POST",
            "/api/verification-codes/verify",
            Some(SEND_KEY),
            Some(&json!({"phone": phone, "verificationCode": code})),
        );
        assert_eq!(status, 204, "{phone}: {body}");
        let (status, body) = host.request(
            "POST",
            "/api/messages",
            Some(SEND_KEY),
            Some(&json!({"to": phone, "payload": {"code": "1"}})),
        );
        assert_eq!(status, 200, "{phone}: {body}");
        assert_eq!(
            host.outbox_lines().pop().unwrap()["to"],
            format!("+{phone}")
        );
    }
    // The served document describes this host's phones.
    let (_, document) = host.get("/api/openapi.json");
    assert_eq!(
        document["components"]["schemas"]["PhoneNumber"]["pattern"],
        r"^\+?[0-9]{1,32}$"
    );
    // `+E.164` still works; what is not digits does not.
    assert_eq!(issue(&host, json!({"phone": PHONE})).0, 204);
    for phone in ["+1 201 555 0123", "abc", "", "+", &"1".repeat(33)] {
        let (status, refused) = issue(&host, json!({"phone": phone}));
        assert_eq!(
            (status, refused["code"].clone()),
            (400, json!("guard.invalid_phone_number")),
            "{phone:?}"
        );
    }
}
