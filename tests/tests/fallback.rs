//! The standby (fallback) connector end to end: sinks the tests control stand in for the
//! providers (refusing connections, answering 503, 429, 400, hanging after the request), and
//! every message is counted where it arrives, so "never twice" is a count.

use std::time::{Duration, Instant};

use e2e_tests::{
    plugin_file, CaptureServer, HostFolders, RefusingPort, TestHost, ADMIN_KEY, SEND_KEY,
    UNLIMITED_FLOOD_FLAGS,
};
use serde_json::{json, Value};

const PHONE: &str = "+12015550123";

fn host(extra: &[&str]) -> TestHost {
    host_with(&[("http.so", &plugin_file("http_sms"))], extra)
}

fn host_with(plugins: &[(&str, &std::path::Path)], extra: &[&str]) -> TestHost {
    HostFolders::new(plugins).start_with_args(&host_args(extra))
}

fn host_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
        "--fallback-after-failures",
        "3",
        // Long enough that a loaded machine does not see the breaker half-open before the
        // test looks (the tests wait for it by polling).
        "--fallback-cool-off-secs",
        "5",
        // Every hanging sink here answers after 5 s; a healthy one well within.
        "--request-timeout-secs",
        "3",
        "--protection",
        "off",
    ];
    args.extend_from_slice(&UNLIMITED_FLOOD_FLAGS);
    args.extend_from_slice(extra);
    args
}

/// A connector of the HTTP gateway sending to `endpoint`; it becomes the live one.
fn gateway(host: &TestHost, endpoint: &str) -> String {
    let (status, created) = host.post(
        "/api/connectors",
        &json!({"connectorId": "http-sms", "config": {"endpoint": endpoint}}),
    );
    assert_eq!(status, 200, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

fn send(host: &TestHost) -> (u16, Value) {
    host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "112233"}})),
    )
}

fn breaker(host: &TestHost) -> Value {
    let (status, health) = host.get("/health");
    assert_eq!(status, 200);
    health["fallback"]["breaker"].clone()
}

fn metric(host: &TestHost, series: &str) -> u64 {
    let (_, text) = host.request("GET", "/metrics", None, None);
    text.as_str()
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

#[test]
fn the_standby_sends_only_what_the_live_provider_took_nothing_of_and_the_breaker_skips_it() {
    let standby_sink = CaptureServer::start(200, r#"{"ok": true}"#);
    let refusing_sink = CaptureServer::start(503, "try later");
    let host = host(&[]);
    let standby = gateway(&host, &format!("{}/send", standby_sink.url));
    let live = gateway(&host, &format!("{}/send", refusing_sink.url));

    // No standby yet: a 503 is the caller's error, and nothing else is tried.
    let (status, error) = send(&host);
    assert_eq!(status, 502, "{error}");
    assert_eq!(error["data"]["providerAccepted"], false, "{error}");
    assert_eq!(standby_sink.requests().len(), 0);

    // The live connector cannot be its own standby.
    let (status, error) = host.post(&format!("/api/connectors/{live}/fallback"), &json!({}));
    assert_eq!(
        (status, error["code"].clone()),
        (409, json!("connector.fallback_is_live")),
        "{error}"
    );
    let (status, marked) = host.post(&format!("/api/connectors/{standby}/fallback"), &json!({}));
    assert_eq!(status, 200, "{marked}");
    assert_eq!(
        (marked["fallback"].clone(), marked["enabled"].clone()),
        (json!(true), json!(false))
    );

    // The breaker saw one failure already (without a standby every send tells it); two more
    // fail over and open it.
    for sent_by_standby in 1..=2 {
        let (status, sent) = send(&host);
        assert_eq!(status, 200, "{sent}");
        assert_eq!(sent["connectorId"], standby.as_str(), "{sent}");
        assert_eq!(sent["fallbackReason"], "not_accepted", "{sent}");
        assert_eq!(standby_sink.requests().len(), sent_by_standby);
    }
    assert_eq!(refusing_sink.requests().len(), 3);
    let open = breaker(&host);
    assert_eq!(open["state"], "open", "{open}");
    assert_eq!(open["watching"], live.as_str());
    assert!(
        open["lastError"].as_str().unwrap().contains("503"),
        "{open}"
    );

    // Open: the live connector is not even tried.
    let (status, sent) = send(&host);
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["fallbackReason"], "breaker_open", "{sent}");
    assert_eq!(refusing_sink.requests().len(), 3, "skipped while open");
    assert_eq!(standby_sink.requests().len(), 3);

    // The provider recovers (its connector now points to a working sink; same connector):
    // after the cool-off one send probes it, and it closes.
    let healthy_sink = CaptureServer::start(200, r#"{"ok": true}"#);
    let (status, body) = host.patch(
        &format!("/api/connectors/{live}"),
        &json!({"config": {"endpoint": format!("{}/send", healthy_sink.url)}}),
    );
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while breaker(&host)["state"] != "half_open" {
        assert!(Instant::now() < deadline, "{}", breaker(&host));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, sent) = send(&host);
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["connectorId"], live.as_str(), "the probe: {sent}");
    assert!(sent.get("fallbackReason").is_none(), "{sent}");
    assert_eq!(breaker(&host)["state"], "closed");

    // Healthy: the standby hears nothing.
    for _ in 0..5 {
        assert_eq!(send(&host).0, 200);
    }
    assert_eq!(healthy_sink.requests().len(), 6);
    assert_eq!(
        standby_sink.requests().len(),
        3,
        "no fallback while healthy"
    );

    let count = |reason: &str| {
        metric(
            &host,
            &format!("sms_fallback_sends_total{{reason=\"{reason}\"}} "),
        )
    };
    assert_eq!((count("not_accepted"), count("breaker_open")), (2, 1));
    let log = host.log_eventually(|log| log.contains("fallback breaker closed"));
    assert!(log.contains("fallback breaker open"), "{log}");
    assert!(log.contains("fallback breaker closed"), "{log}");
}

#[test]
fn a_refusal_of_the_message_or_an_unknown_outcome_never_reaches_the_standby() {
    let standby_sink = CaptureServer::start(200, r#"{"ok": true}"#);
    let host = host(&[]);
    let standby = gateway(&host, &format!("{}/send", standby_sink.url));

    // 400: the provider refused this message; another provider would be sent the same.
    let bad_request_sink = CaptureServer::start(400, "invalid number");
    let refusing = gateway(&host, &format!("{}/send", bad_request_sink.url));
    assert_eq!(
        host.post(&format!("/api/connectors/{standby}/fallback"), &json!({}))
            .0,
        200
    );
    for _ in 0..4 {
        let (status, error) = send(&host);
        assert_eq!(status, 502, "{error}");
        assert_eq!(error["code"], "connector.general", "{error}");
    }
    assert_eq!(bad_request_sink.requests().len(), 4);
    assert_eq!(
        breaker(&host)["state"],
        "closed",
        "a bad message says nothing of the provider"
    );

    // The request went out and no answer came: the provider may have it. Never sent again.
    let hanging_sink =
        CaptureServer::start_concurrent_with_delay(200, "{}", Duration::from_secs(5));
    let (status, body) = host.patch(
        &format!("/api/connectors/{refusing}"),
        &json!({"config": {"endpoint": format!("{}/send", hanging_sink.url)}}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, error) = send(&host);
    assert_eq!(
        (status, error["code"].clone()),
        (504, json!("connector.outcome_unknown")),
        "{error}"
    );
    assert_eq!(hanging_sink.requests_once(1).len(), 1);
    assert_eq!(
        standby_sink.requests().len(),
        0,
        "nothing reached the standby"
    );

    // Unreachable (nothing listens): provably not sent, the standby sends it.
    let closed = RefusingPort::new();
    let closed_port = closed.port;
    let (status, body) = host.patch(
        &format!("/api/connectors/{refusing}"),
        &json!({"config": {"endpoint": format!("http://127.0.0.1:{closed_port}/send")}}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, sent) = send(&host);
    assert_eq!(status, 200, "{sent}");
    assert_eq!(
        (sent["connectorId"].clone(), sent["fallbackReason"].clone()),
        (json!(standby), json!("unreachable")),
        "{sent}"
    );
    assert_eq!(standby_sink.requests().len(), 1);

    // A console test tries the config it was given, and that alone.
    let (status, body) = host.post(
        "/api/connectors/http-sms/test",
        &json!({"phone": PHONE, "config": {"endpoint": format!("http://127.0.0.1:{closed_port}/send")}}),
    );
    assert!(status >= 400, "{status} {body}");
    assert_eq!(
        standby_sink.requests().len(),
        1,
        "the standby heard nothing of the test"
    );
}

#[test]
fn a_code_sent_by_the_standby_verifies_and_the_mark_follows_the_connectors() {
    let standby_sink = CaptureServer::start(200, r#"{"ok": true}"#);
    let throttled_sink = CaptureServer::start(429, "slow down");
    let host = host(&[]);
    let standby = gateway(&host, &format!("{}/send", standby_sink.url));
    let live = gateway(&host, &format!("{}/send", throttled_sink.url));
    assert_eq!(
        host.post(&format!("/api/connectors/{standby}/fallback"), &json!({}))
            .0,
        200
    );
    let (status, body) = host.request(
        "POST",
        "/api/verification-codes",
        Some(SEND_KEY),
        Some(&json!({"phone": PHONE})),
    );
    assert_eq!(status, 204, "{body}");
    assert_eq!(throttled_sink.requests().len(), 1);
    let delivered: Value = serde_json::from_str(&standby_sink.requests()[0].body).unwrap();
    let code = delivered["payload"]["code"].as_str().unwrap().to_owned();
    let (status, body) = host.request(
        "POST",
        "/api/verification-codes/verify",
        Some(SEND_KEY),
        Some(&json!({"phone": PHONE, "verificationCode": code})),
    );
    assert_eq!(status, 204, "one code across both attempts: {body}");

    // One standby: marking another moves the mark; making it live clears it.
    let (_, live_listed) = host.get("/api/connectors");
    let (_, retired_listed) = host.get("/api/connectors?enabled=false");
    let marks: Vec<(String, bool, bool)> = retired_listed
        .as_array()
        .unwrap()
        .iter()
        .chain(live_listed.as_array().unwrap())
        .map(|connector| {
            (
                connector["id"].as_str().unwrap().to_owned(),
                connector["enabled"].as_bool().unwrap(),
                connector["fallback"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        marks,
        [(standby.clone(), false, true), (live.clone(), true, false)]
    );
    let (status, enabled) = host.post(&format!("/api/connectors/{standby}/enable"), &json!({}));
    assert_eq!(status, 200, "{enabled}");
    assert_eq!(enabled["fallback"], false, "{enabled}");
    let (_, health) = host.get("/health");
    assert_eq!(health["fallback"], Value::Null, "{health}");
    // Marked again (the throttled one, now retired), then deleted: no standby.
    assert_eq!(
        host.post(&format!("/api/connectors/{live}/fallback"), &json!({}))
            .0,
        200
    );
    let (_, health) = host.get("/health");
    assert_eq!(health["fallback"]["connectorId"], live.as_str(), "{health}");
    assert_eq!(host.delete(&format!("/api/connectors/{live}")).0, 204);
    let (_, health) = host.get("/health");
    assert_eq!(health["fallback"], Value::Null, "{health}");
    let (status, error) = host.request(
        "DELETE",
        &format!("/api/connectors/{live}/fallback"),
        Some(ADMIN_KEY),
        None,
    );
    assert_eq!(
        (status, error["code"].clone()),
        (404, json!("entity.not_found"))
    );
}

#[test]
fn through_a_whole_outage_and_a_swap_every_send_arrives_once() {
    // Four senders at once: a standby that answers them at once (one at a time, a request
    // could wait past the host's timeout on a loaded machine).
    let standby_sink =
        CaptureServer::start_concurrent_with_delay(200, r#"{"ok": true}"#, Duration::ZERO);
    let host = host(&[]);
    let standby = gateway(&host, &format!("{}/send", standby_sink.url));
    // The provider is down: nothing listens where the live connector sends.
    let down_port = RefusingPort::new();
    let down = format!("http://127.0.0.1:{}/send", down_port.port);
    gateway(&host, &down);
    assert_eq!(
        host.post(&format!("/api/connectors/{standby}/fallback"), &json!({}))
            .0,
        200
    );
    let sends = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..50 {
                    let (status, body) = send(&host);
                    sends.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if status != 200 {
                        failures.lock().unwrap().push(body);
                    }
                }
            });
        }
        // An operator swaps the live connector mid-outage (to another one that is down too).
        scope.spawn(|| {
            while sends.load(std::sync::atomic::Ordering::Relaxed) < 100 {
                std::thread::sleep(Duration::from_millis(5));
            }
            gateway(&host, &down);
        });
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(
        standby_sink.requests().len(),
        200,
        "each message once, at the standby"
    );
    assert_eq!(
        metric(&host, "sms_fallback_sends_total{reason=\"unreachable\"} ")
            + metric(&host, "sms_fallback_sends_total{reason=\"breaker_open\"} "),
        200
    );
}

/// A connector that fetches a token before it sends (`Step::sends_no_message` on the token
/// request, and on a status request after the message): any failure of the token request
/// proves the provider has nothing, even a timeout; after the message request was answered,
/// nothing does.
#[test]
fn a_step_that_sends_no_message_fails_over_even_on_a_timeout_and_nothing_after_the_message_does() {
    let host = host_with(
        &[
            ("http.so", &plugin_file("http_sms")),
            ("token.so", &plugin_file("fixture_token_step_connector")),
        ],
        &[],
    );
    let standby_sink = CaptureServer::start(200, r#"{"ok": true}"#);
    let standby = gateway(&host, &format!("{}/send", standby_sink.url));
    let hanging_token =
        CaptureServer::start_concurrent_with_delay(200, "tok", Duration::from_secs(5));
    let message_sink = CaptureServer::start(200, "provider-id-1");
    let token_config = |token: &str, status: Option<String>| {
        let mut config = json!({
            "tokenEndpoint": format!("{token}/token"),
            "sendEndpoint": format!("{}/send", message_sink.url),
        });
        if let Some(status) = status {
            config["statusEndpoint"] = json!(status);
        }
        config
    };
    let (status, created) = host.post(
        "/api/connectors",
        &json!({"connectorId": "token-step-test-connector", "config": token_config(&hanging_token.url, None)}),
    );
    assert_eq!(status, 200, "{created}");
    let live = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        host.post(&format!("/api/connectors/{standby}/fallback"), &json!({}))
            .0,
        200
    );
    let reconfigure = |config: Value| {
        let (status, body) = host.patch(
            &format!("/api/connectors/{live}"),
            &json!({ "config": config }),
        );
        assert_eq!(status, 200, "{body}");
    };

    // The token request timed out after it went out: it carries no message, so the standby
    // sends it.
    let (status, sent) = send(&host);
    assert_eq!(status, 200, "{sent}");
    assert_eq!(
        (sent["connectorId"].clone(), sent["fallbackReason"].clone()),
        (json!(standby), json!("unreachable")),
        "{sent}"
    );
    assert_eq!(hanging_token.requests_once(1).len(), 1);
    assert_eq!(standby_sink.requests().len(), 1);

    // The token endpoint says "try later": not accepted.
    let refusing_token = CaptureServer::start(503, "try later");
    reconfigure(token_config(&refusing_token.url, None));
    let (status, sent) = send(&host);
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["fallbackReason"], "not_accepted", "{sent}");
    assert_eq!(standby_sink.requests().len(), 2);
    assert_eq!(
        message_sink.requests().len(),
        0,
        "no message went to the live provider"
    );

    // A token, then the message request hangs: the provider may have it. Never sent again.
    let token = CaptureServer::start(200, "tok");
    let hanging_send =
        CaptureServer::start_concurrent_with_delay(200, "id", Duration::from_secs(5));
    let mut config = token_config(&token.url, None);
    config["sendEndpoint"] = json!(format!("{}/send", hanging_send.url));
    reconfigure(config);
    let (status, error) = send(&host);
    assert_eq!(
        (
            status,
            error["code"].clone(),
            error["data"]["providerContacted"].clone()
        ),
        (504, json!("connector.outcome_unknown"), json!(true)),
        "{error}"
    );
    assert_eq!(hanging_send.requests_once(1).len(), 1);
    assert_eq!(
        standby_sink.requests().len(),
        2,
        "the standby heard nothing"
    );

    // The message was answered; the status request after it fails (nothing listens, then a
    // 429 the connector marks not_accepted): neither proves anything, the standby stays out.
    let closed = RefusingPort::new();
    let closed_port = closed.port;
    reconfigure(token_config(
        &token.url,
        Some(format!("http://127.0.0.1:{closed_port}/status")),
    ));
    let (status, error) = send(&host);
    assert_eq!(
        (status, error["code"].clone()),
        (504, json!("connector.outcome_unknown")),
        "{error}"
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("may have handed over the message"),
        "{error}"
    );
    let throttled_status = CaptureServer::start(429, "slow down");
    reconfigure(token_config(
        &token.url,
        Some(format!("{}/status", throttled_status.url)),
    ));
    let (status, error) = send(&host);
    assert_eq!(status, 502, "{error}");
    assert!(error["data"].get("providerAccepted").is_none(), "{error}");
    assert_eq!(message_sink.requests().len(), 2);
    assert_eq!(throttled_status.requests().len(), 1);
    assert_eq!(
        standby_sink.requests().len(),
        2,
        "the standby heard nothing"
    );

    // Healthy, all three steps: the live connector sends it, with the provider's id.
    let status_sink = CaptureServer::start(200, "delivered");
    reconfigure(token_config(
        &token.url,
        Some(format!("{}/status", status_sink.url)),
    ));
    let (status, sent) = send(&host);
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["connectorId"], live.as_str(), "{sent}");
    assert!(sent.get("fallbackReason").is_none(), "{sent}");
    let requests = message_sink.requests();
    assert_eq!(
        requests.last().unwrap().header("authorization"),
        Some("Bearer tok")
    );
    assert_eq!(message_sink.requests().len(), 3);
    assert_eq!(standby_sink.requests().len(), 2);
}

/// The live connector's plugin file is gone (and the host restarted): the live connector
/// cannot be tried at all, so the standby sends everything, codes included; with the plugin
/// back, the live connector sends again.
#[test]
fn a_live_connector_that_cannot_send_on_this_host_hands_every_send_to_the_standby() {
    let standby_sink = CaptureServer::start(200, r#"{"ok": true}"#);
    let token_sink = CaptureServer::start(200, "tok");
    let message_sink = CaptureServer::start(200, "provider-id");
    let token_plugin = plugin_file("fixture_token_step_connector");
    let host = host_with(
        &[
            ("http.so", &plugin_file("http_sms")),
            ("token.so", &token_plugin),
        ],
        &[],
    );
    let standby = gateway(&host, &format!("{}/send", standby_sink.url));
    let (status, created) = host.post(
        "/api/connectors",
        &json!({"connectorId": "token-step-test-connector", "config": {
            "tokenEndpoint": format!("{}/token", token_sink.url),
            "sendEndpoint": format!("{}/send", message_sink.url),
        }}),
    );
    assert_eq!(status, 200, "{created}");
    let live = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        host.post(&format!("/api/connectors/{standby}/fallback"), &json!({}))
            .0,
        200
    );

    let folders = host.kill();
    std::fs::remove_file(folders.plugins_dir.join("token.so")).unwrap();
    let host = folders.start_with_args(&host_args(&[]));
    let (status, sent) = send(&host);
    assert_eq!(status, 200, "{sent}");
    assert_eq!(
        (sent["connectorId"].clone(), sent["fallbackReason"].clone()),
        (json!(standby), json!("live_unavailable")),
        "{sent}"
    );
    let (status, body) = host.request(
        "POST",
        "/api/verification-codes",
        Some(SEND_KEY),
        Some(&json!({"phone": "+12015550188"})),
    );
    assert_eq!(status, 204, "{body}");
    assert_eq!(standby_sink.requests().len(), 2);
    assert_eq!(
        metric(
            &host,
            "sms_fallback_sends_total{reason=\"live_unavailable\"} "
        ),
        2
    );
    assert_eq!(
        breaker(&host)["state"],
        "closed",
        "the breaker was not asked"
    );
    let (status, ready) = host.get("/ready");
    assert_eq!(
        (status, ready["failed"].clone()),
        (503, json!("liveConnectorUnavailable")),
        "a balancer still prefers hosts with the live connector: {ready}"
    );

    // Without a standby the send fails as before, clearly.
    let (status, body) = host.request(
        "DELETE",
        &format!("/api/connectors/{standby}/fallback"),
        Some(ADMIN_KEY),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (status, error) = send(&host);
    assert_eq!(
        (status, error["code"].clone()),
        (501, json!("connector.not_found")),
        "{error}"
    );
    assert_eq!(standby_sink.requests().len(), 2);

    // The plugin is back: the live connector sends again.
    assert_eq!(
        host.post(&format!("/api/connectors/{standby}/fallback"), &json!({}))
            .0,
        200
    );
    e2e_tests::install_plugin(&host.folders().plugins_dir, &token_plugin, "token.so");
    assert_eq!(host.post("/api/plugins/rescan", &json!({})).0, 200);
    let (status, sent) = send(&host);
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["connectorId"], live.as_str(), "{sent}");
    assert!(sent.get("fallbackReason").is_none(), "{sent}");
    assert_eq!(message_sink.requests().len(), 1);
    assert_eq!(standby_sink.requests().len(), 2);
}
