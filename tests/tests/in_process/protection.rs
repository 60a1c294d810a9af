//! The SMS-pumping protection through the HTTP API (issue 24): the `429 sms.blocked` of each
//! layer (reason, retry, block id, `Retry-After`), nothing sent for a blocked request, the
//! admin API (list, lift → sends again, allow a country, unknown block, bad region), monitor
//! mode, a malformed `ip`.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use connector_host::protection::{ProtectionMode, ProtectionSettings};
use e2e_tests::SEND_KEY;
use serde_json::{json, Value};

use crate::in_process_host::{code_of, InProcessHost};
use crate::{mock_config, mock_plugin, MOCK};

/// A host with the mock live (outbox on) and the protection `configure` sets.
fn protected_host(configure: impl FnOnce(&mut ProtectionSettings)) -> InProcessHost {
    let (name, file) = mock_plugin();
    let host = InProcessHost::start_with(&[(name, &file)], |config| {
        config.send_limits.max_sends_per_recipient = 1_000_000;
        config.send_limits.resend_cooldown = Duration::ZERO;
        let mut settings = ProtectionSettings::every_layer_off();
        configure(&mut settings);
        config.protection = settings;
    });
    let created = host.post(
        "/api/connectors",
        &json!({"connectorId": MOCK, "config": mock_config()}),
    );
    assert_eq!(created.0, 200, "{}", created.1);
    host
}

/// `POST /api/messages` with the send key; status, `Retry-After` and body.
fn send(host: &InProcessHost, body: Value) -> (u16, Option<String>, Value) {
    let text = body.to_string();
    let request = Request::builder()
        .method("POST")
        .uri("/api/messages")
        .header("Authorization", format!("Bearer {SEND_KEY}"))
        .header("Content-Type", "application/json")
        .header("Content-Length", text.len())
        .body(Body::from(text))
        .unwrap();
    let (status, headers, body) = host.call_with_headers(request);
    let retry_after = headers
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    (status, retry_after, body)
}

fn message_to(phone: &str) -> Value {
    json!({"to": phone, "type": "SignIn", "payload": {"code": "123456"}})
}

/// A `429 sms.blocked` with its reason; returns the block id.
fn assert_blocked(answer: (u16, Option<String>, Value), reason: &str) -> String {
    let (status, retry_after, body) = answer;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "sms.blocked", "{body}");
    assert_eq!(body["data"]["reason"], reason, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|message| message.contains("paused")),
        "{body}"
    );
    let retry = body["data"]["retryAfterSeconds"]
        .as_u64()
        .unwrap_or_else(|| panic!("no retryAfterSeconds: {body}"));
    assert!(retry >= 1, "{body}");
    assert_eq!(retry_after, Some(retry.to_string()));
    body["data"]["blockId"]
        .as_str()
        .unwrap_or_else(|| panic!("no blockId: {body}"))
        .to_owned()
}

#[test]
fn each_layer_refuses_with_its_reason_and_nothing_is_sent() {
    // ip_velocity, through messages and codes alike.
    let host = protected_host(|settings| settings.ip_velocity_max = 2);
    for index in 0..2 {
        let mut body = message_to(&format!("+1201555000{index}"));
        body["ip"] = json!("203.0.113.7");
        assert_eq!(send(&host, body).0, 200);
    }
    let mut body = message_to("+12015550009");
    body["ip"] = json!("203.0.113.7");
    assert_blocked(send(&host, body), "ip_velocity");
    let (status, refused) = host.request(
        "POST",
        "/api/verification-codes",
        Some(SEND_KEY),
        Some(&json!({"phone": "+12015550010", "ip": "203.0.113.7"})),
    );
    assert_eq!(
        (status, refused["data"]["reason"].clone()),
        (429, json!("ip_velocity"))
    );
    assert_eq!(
        host.outbox_lines().len(),
        2,
        "a blocked send reaches no connector"
    );
    // Another address, and none, still send.
    let mut body = message_to("+12015550009");
    body["ip"] = json!("2001:db8::1");
    assert_eq!(send(&host, body).0, 200);
    assert_eq!(send(&host, message_to("+12015550009")).0, 200);

    let host = protected_host(|settings| settings.prefix_velocity_max = 2);
    assert_eq!(send(&host, message_to("+12015550001")).0, 200);
    assert_eq!(send(&host, message_to("+12015550002")).0, 200);
    assert_blocked(send(&host, message_to("+12015559999")), "prefix_velocity");
    assert_eq!(send(&host, message_to("+12015560001")).0, 200);

    let host = protected_host(|settings| settings.first_seen_country_max = 1);
    assert_eq!(send(&host, message_to("+12015550001")).0, 200);
    assert_blocked(
        send(&host, message_to("+12025550001")),
        "first_seen_country",
    );

    let host = protected_host(|settings| settings.daily_budget = 1);
    assert_eq!(send(&host, message_to("+12015550001")).0, 200);
    assert_blocked(send(&host, message_to("+4915112345678")), "budget");

    let host = protected_host(|settings| settings.recipient_backoff = true);
    assert_eq!(send(&host, message_to("+12015550001")).0, 200);
    assert_blocked(send(&host, message_to("+12015550001")), "recipient_backoff");
    assert_eq!(send(&host, message_to("+12015550002")).0, 200);
}

#[test]
fn a_prefix_whose_codes_expire_unverified_is_blocked_for_low_conversion() {
    let (name, file) = mock_plugin();
    let host = InProcessHost::start_with(&[(name, &file)], |config| {
        config.send_limits.max_sends_per_recipient = 1_000_000;
        config.send_limits.resend_cooldown = Duration::ZERO;
        // Codes expire as they are issued: each is decided (unverified) at the next send.
        config.code_policy.time_to_live = Duration::ZERO;
        let mut settings = ProtectionSettings::every_layer_off();
        settings.low_conversion_min_samples = 3;
        settings.low_conversion_min_rate = 0.5;
        config.protection = settings;
    });
    assert_eq!(
        host.post(
            "/api/connectors",
            &json!({"connectorId": MOCK, "config": mock_config()})
        )
        .0,
        200
    );
    for index in 0..3 {
        let (status, body) = host.request(
            "POST",
            "/api/verification-codes",
            Some(SEND_KEY),
            Some(&json!({"phone": format!("+1201555000{index}")})),
        );
        assert_eq!(status, 204, "{body}");
    }
    // On PostgreSQL a code is decided a moment after it expired (a verify on another host is
    // heard of by then): polled.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let answer = send(&host, message_to("+12015550100"));
        if answer.0 != 200 || std::time::Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let block_id = assert_blocked(refused, "low_conversion");
    let (_, listed) = host.get("/api/protection");
    let blocks = listed["blocks"].as_array().unwrap();
    let prefix_block = blocks
        .iter()
        .find(|block| block["id"] == block_id.as_str())
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(prefix_block["kind"], "prefix");
    assert_eq!(prefix_block["subject"], "+1201555");
    assert_eq!(prefix_block["reason"], "low_conversion");
    assert_eq!(prefix_block["counts"]["issued"], 3);
    assert_eq!(prefix_block["counts"]["verified"], 0);
    assert_eq!(prefix_block["counts"]["blocked"], 1);
    // The country converts no better: blocked too.
    assert!(blocks
        .iter()
        .any(|block| block["kind"] == "country" && block["subject"] == "US"));
}

#[test]
fn the_admin_api_lists_lifts_and_allows() {
    let host = protected_host(|settings| {
        settings.prefix_velocity_max = 1;
        settings.first_seen_country_max = 1_000;
    });
    let (status, empty) = host.get("/api/protection");
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["mode"], "enforce");
    assert_eq!(empty["settings"]["prefixVelocityMax"], 1);
    assert_eq!(empty["settings"]["lowConversionMinRate"], 0.2);
    assert_eq!(empty["blocks"], json!([]));
    assert_eq!(empty["allowedCountries"], json!([]));

    assert_eq!(send(&host, message_to("+12015550001")).0, 200);
    let block_id = assert_blocked(send(&host, message_to("+12015550002")), "prefix_velocity");
    let (_, listed) = host.get("/api/protection");
    let block = &listed["blocks"][0];
    assert_eq!(block["id"], block_id.as_str());
    assert_eq!(
        (block["kind"].as_str(), block["subject"].as_str()),
        (Some("prefix"), Some("+1201555"))
    );
    assert!(block["since"].as_i64().is_some() && block["until"].as_i64() > block["since"].as_i64());
    // Filtered by reason and kind; an unknown one is a 400 naming the known ones.
    assert_eq!(
        host.get("/api/protection?reason=prefix_velocity&kind=prefix")
            .1["blocks"][0]["id"],
        block_id.as_str()
    );
    assert_eq!(
        host.get("/api/protection?reason=low_conversion").1["blocks"],
        json!([])
    );
    assert_eq!(host.get("/api/protection?kind=ip").1["blocks"], json!([]));
    for (query, named) in [
        (
            "reason=pumping",
            "unknown reason \"pumping\": use one of ip_velocity, prefix_velocity",
        ),
        (
            "kind=planet",
            "unknown kind \"planet\": use one of prefix, country",
        ),
        ("status=active", "unknown field `status`"),
    ] {
        let (status, body) = host.get(&format!("/api/protection?{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["code"], "guard.invalid_input", "{body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|message| message.contains(named)),
            "{query}: {body}"
        );
    }

    assert_eq!(
        host.delete(&format!("/api/protection/blocks/{block_id}")).0,
        204
    );
    assert_eq!(send(&host, message_to("+12015550002")).0, 200);
    assert_eq!(
        code_of(host.delete(&format!("/api/protection/blocks/{block_id}"))),
        (404, "entity.not_found".to_owned())
    );
    assert_eq!(
        code_of(host.delete("/api/protection/blocks/no-such-block")),
        (404, "entity.not_found".to_owned())
    );

    assert_eq!(
        host.post("/api/protection/countries/DE/allow", &json!({}))
            .0,
        204
    );
    let (status, _) = host.request(
        "POST",
        "/api/protection/countries/FR/allow",
        Some(e2e_tests::ADMIN_KEY),
        None,
    );
    assert_eq!(status, 204);
    for bad in ["usa", "us", "U1", "%FF"] {
        assert_eq!(
            code_of(host.request(
                "POST",
                &format!("/api/protection/countries/{bad}/allow"),
                Some(e2e_tests::ADMIN_KEY),
                None
            )),
            (400, "guard.invalid_input".to_owned()),
            "{bad}"
        );
    }
    assert_eq!(
        host.get("/api/protection").1["allowedCountries"],
        json!(["DE", "FR"])
    );
    // Admin only.
    assert_eq!(
        code_of(host.request("GET", "/api/protection", Some(SEND_KEY), None)),
        (403, "auth.forbidden".to_owned())
    );
}

#[test]
fn an_allowed_country_is_no_longer_first_seen() {
    let host = protected_host(|settings| settings.first_seen_country_max = 1);
    assert_eq!(send(&host, message_to("+12015550001")).0, 200);
    assert_blocked(
        send(&host, message_to("+12015550002")),
        "first_seen_country",
    );
    assert_eq!(
        host.post("/api/protection/countries/US/allow", &json!({}))
            .0,
        204
    );
    assert_eq!(host.get("/api/protection").1["blocks"], json!([]));
    for index in 2..6 {
        assert_eq!(
            send(&host, message_to(&format!("+1201555000{index}"))).0,
            200
        );
    }
}

#[test]
fn monitor_mode_sends_what_it_would_block_and_lists_it() {
    let host = protected_host(|settings| {
        settings.mode = ProtectionMode::Monitor;
        settings.prefix_velocity_max = 1;
    });
    for index in 0..3 {
        assert_eq!(
            send(&host, message_to(&format!("+1201555000{index}"))).0,
            200
        );
    }
    assert_eq!(host.outbox_lines().len(), 3);
    let (_, listed) = host.get("/api/protection");
    assert_eq!(listed["mode"], "monitor");
    assert_eq!(listed["blocks"][0]["reason"], "prefix_velocity");
}

#[test]
fn a_malformed_ip_is_refused_and_console_tests_are_not_protected() {
    let host = protected_host(|settings| settings.prefix_velocity_max = 1);
    for bad in [
        json!("203.0.113"),
        json!("not an ip"),
        json!(42),
        json!("2001:db8::/64"),
    ] {
        let mut body = message_to("+12015550001");
        body["ip"] = bad.clone();
        let (status, _, answer) = send(&host, body);
        assert_eq!(
            (status, answer["code"].clone()),
            (400, json!("guard.invalid_input")),
            "{bad}"
        );
        let (status, answer) = host.request(
            "POST",
            "/api/verification-codes",
            Some(SEND_KEY),
            Some(&json!({"phone": "+12015550001", "ip": bad})),
        );
        assert_eq!(
            (status, answer["code"].clone()),
            (400, json!("guard.invalid_input")),
            "{bad}"
        );
    }
    assert!(host.outbox_lines().is_empty());
    // The console's tests have their own budget: the prefix limit does not apply to them.
    for _ in 0..3 {
        let (status, body) = host.post(
            &format!("/api/connectors/{MOCK}/test"),
            &json!({"phone": "+12015550001", "config": mock_config()}),
        );
        assert_eq!(status, 204, "{body}");
    }
}
