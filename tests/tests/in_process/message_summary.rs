//! `GET /api/messages/summary`: each connector's messages counted by their current status, as
//! real sends through the HTTP gateway and its delivery reports leave them (on SQLite, and on
//! PostgreSQL with `E2E_STORE=postgres`).

use e2e_tests::{plugin_file, CaptureServer, SEND_KEY};
use serde_json::{json, Value};

use crate::in_process_host::{code_of, InProcessHost};
use crate::PHONE;

/// The base of the report URLs the host hands out; the reports are posted to the host itself.
const PUBLIC_URL: &str = "http://127.0.0.1:1";

fn host_with_message_log(on: bool) -> InProcessHost {
    let file = plugin_file("http_sms");
    InProcessHost::start_with(&[("http.so", &file)], |config| {
        config.send_limits.max_sends_per_recipient = 1_000_000;
        config.send_limits.resend_cooldown = std::time::Duration::ZERO;
        config.delivery_reports.message_log = on;
        config.delivery_reports.public_url = on.then(|| PUBLIC_URL.to_owned());
    })
}

fn create_gateway(host: &InProcessHost, provider: &CaptureServer) -> String {
    let (status, created) = host.post(
        "/api/connectors",
        &json!({"connectorId": "http-sms", "config": {"endpoint": format!("{}/send", provider.url)}}),
    );
    assert_eq!(status, 200, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

fn send(host: &InProcessHost) -> (u16, Value) {
    host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "123456"}})),
    )
}

/// The connector's entry of the summary.
fn entry<'a>(summary: &'a Value, connector_id: &str) -> &'a Value {
    summary["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["connectorId"] == connector_id)
        .unwrap_or_else(|| panic!("no entry for {connector_id}: {summary}"))
}

#[test]
fn the_summary_counts_each_connectors_messages_by_status_with_its_delivered_rate() {
    let host = host_with_message_log(true);
    let accepting = CaptureServer::start(200, r#"{"id": "gw-1"}"#);
    let gateway = create_gateway(&host, &accepting);
    for _ in 0..4 {
        let (status, body) = send(&host);
        assert_eq!(status, 200, "{body}");
    }
    // Each report goes to the URL the provider was given, on this host.
    let callbacks: Vec<String> = accepting
        .requests()
        .iter()
        .map(|request| {
            let body: Value = serde_json::from_str(&request.body).unwrap();
            body["callbackUrl"]
                .as_str()
                .unwrap()
                .trim_start_matches(PUBLIC_URL)
                .to_owned()
        })
        .collect();
    assert_eq!(callbacks.len(), 4);
    for (path, status) in callbacks
        .iter()
        .zip(["delivered", "delivered", "undelivered"])
    {
        let body = json!({"status": status}).to_string();
        let (answer, text) =
            host.request_raw("POST", path, None, Some(("application/json", &body)));
        assert_eq!(answer, 200, "{text}");
    }

    // A second gateway whose provider refuses: its send is failed.
    let refusing = CaptureServer::start(500, r#"{"error": "no"}"#);
    let refused = create_gateway(&host, &refusing);
    assert_ne!(send(&host).0, 200);

    let (status, summary) = host.get("/api/messages/summary");
    assert_eq!(status, 200, "{summary}");
    assert_eq!(
        (
            summary["messageLog"].clone(),
            summary["deliveryReports"].clone()
        ),
        (json!(true), json!(true))
    );
    assert_eq!(
        summary["connectors"].as_array().unwrap().len(),
        2,
        "{summary}"
    );
    let since = summary["since"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (now - 24 * 3600 * 1000 - 60_000..=now - 24 * 3600 * 1000).contains(&since),
        "the last 24 hours by default: {since}"
    );
    let first = entry(&summary, &gateway);
    assert_eq!(
        first,
        &json!({"connectorId": gateway, "factoryId": "http-sms", "total": 4, "delivered": 2,
                "undelivered": 1, "failed": 0, "sent": 0, "queued": 1, "unknown": 0,
                "pending": 0, "deliveredRate": 2.0 / 3.0}),
        "the queued one is not a failure"
    );
    let second = entry(&summary, &refused);
    assert_eq!(
        (second["total"].clone(), second["failed"].clone()),
        (json!(1), json!(1)),
        "{second}"
    );
    assert_eq!(second["deliveredRate"], 0.0, "{second}");

    // `since` as GET /api/messages takes it: after every message, nothing; out of range, 400.
    let (status, later) = host.get(&format!("/api/messages/summary?since={}", now + 60_000));
    assert_eq!(status, 200, "{later}");
    assert_eq!(later["connectors"], json!([]));
    assert_eq!(later["since"], now + 60_000);
    let (status, all) = host.get("/api/messages/summary?since=0");
    assert_eq!(status, 200, "{all}");
    assert_eq!(entry(&all, &gateway)["total"], 4);
    for refused in ["-1", "9007199254740992", "yesterday"] {
        assert_eq!(
            code_of(host.get(&format!("/api/messages/summary?since={refused}"))),
            (400, "guard.invalid_input".to_owned()),
            "since={refused}"
        );
    }
}

#[test]
fn with_the_message_log_off_the_summary_says_so_and_counts_nothing() {
    let host = host_with_message_log(false);
    let accepting = CaptureServer::start(200, r#"{"id": "gw-1"}"#);
    create_gateway(&host, &accepting);
    assert_eq!(send(&host).0, 200);
    let (status, summary) = host.get("/api/messages/summary");
    assert_eq!(status, 200, "{summary}");
    assert_eq!(
        (
            summary["messageLog"].clone(),
            summary["deliveryReports"].clone()
        ),
        (json!(false), json!(false))
    );
    assert_eq!(summary["connectors"], json!([]));
    let (status, listed) = host.get("/api/messages");
    assert_eq!((status, listed["messages"].clone()), (200, json!([])));
}
