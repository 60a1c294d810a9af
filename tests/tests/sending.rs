//! Sending end to end: verification codes through the mock connector's outbox, flow control,
//! a fake vendor that fails or stalls, and what reaches the logs and metrics. Refusals that
//! are a request and its answer (phones, countries, Logto differences) are in
//! `tests/in_process`.

use std::path::Path;
use std::time::Duration;

use e2e_tests::{
    outbox_lines, plugin_file, CaptureServer, HostFolders, TestHost, ADMIN_KEY, SEND_KEY,
};
use serde_json::{json, Value};

const MOCK: &str = "mock-short-message-service";
const PHONE: &str = "+12015550123";

/// A host whose live connector is the mock with its outbox on, and the host's outbox file.
fn start_mock_host(extra_args: &[&str]) -> (TestHost, std::path::PathBuf) {
    let folders = HostFolders::new(&[
        ("mock.so", &plugin_file("mock_sms")),
        ("rb.so", &plugin_file("fixture_request_building_connector")),
    ]);
    let outbox = folders.outbox_path();
    let mut args = vec!["--admin-key", ADMIN_KEY, "--send-key", SEND_KEY];
    args.extend_from_slice(extra_args);
    let host = folders.start_with_args(&args);
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
    (host, outbox)
}

fn issue(host: &TestHost, body: Value) -> (u16, Value) {
    host.request(
        "POST",
        "/api/verification-codes",
        Some(SEND_KEY),
        Some(&body),
    )
}

fn verify(host: &TestHost, code: &str, template_type: &str) -> (u16, Value) {
    host.request(
        "POST",
        "/api/verification-codes/verify",
        Some(SEND_KEY),
        Some(&json!({"phone": PHONE, "verificationCode": code, "type": template_type})),
    )
}

fn last_code(outbox: &Path) -> String {
    outbox_lines(outbox).last().expect("a message was sent")["payload"]["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_code_is_issued_through_the_connector_verified_once_and_never_logged() {
    let (host, outbox) = start_mock_host(&["--resend-cooldown-secs", "0"]);
    let (status, body) = issue(&host, json!({"phone": "12015550123", "type": "SignIn"}));
    assert_eq!(status, 204, "{body}");
    let line = outbox_lines(&outbox).pop().unwrap();
    let code = last_code(&outbox);
    assert_eq!(line["to"], PHONE);
    assert_eq!(line["content"], format!("Sign in with {code}"));

    assert_eq!(
        verify(&host, &code, "Register").1["code"],
        "verification_code.not_found",
        "codes are scoped by type"
    );
    assert_eq!(verify(&host, &code, "SignIn").0, 204);
    let (status, again) = verify(&host, &code, "SignIn");
    assert_eq!(
        (status, again["code"].clone()),
        (400, json!("verification_code.not_found")),
        "a code works once"
    );

    // Per-locale template; Generic when no type is given.
    assert_eq!(
        issue(
            &host,
            json!({"phone": PHONE, "type": "SignIn", "locale": "de-AT"})
        )
        .0,
        204
    );
    assert_eq!(
        outbox_lines(&outbox).pop().unwrap()["content"],
        format!("Anmeldecode {}", last_code(&outbox))
    );
    assert_eq!(issue(&host, json!({"phone": PHONE})).0, 204);
    let generic = outbox_lines(&outbox).pop().unwrap();
    assert_eq!(
        (generic["type"].clone(), generic["content"].clone()),
        (
            json!("Generic"),
            json!(format!("Your code is {}", last_code(&outbox)))
        )
    );

    // Codes are stored hashed: the store never holds one.
    let stored = host.folders().stored_bytes();
    assert!(!stored.is_empty());
    for code in outbox_lines(&outbox)
        .iter()
        .map(|line| line["payload"]["code"].as_str().unwrap().to_owned())
    {
        let needle = code.as_bytes();
        assert!(
            !stored.windows(6).any(|window| window == needle),
            "code {code} stored in clear"
        );
        assert!(!host.log().contains(&code), "code {code} reached the log");
    }
    let log = host.log_eventually(|log| log.contains("***0123"));
    assert!(
        log.contains("***0123") && !log.contains("2015550123"),
        "phones are logged masked only"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour escape codes in a log that is not a terminal"
    );
}

#[test]
fn wrong_codes_count_durably_and_are_capped() {
    let (host, outbox) = start_mock_host(&["--code-max-attempts", "2"]);
    assert_eq!(
        issue(&host, json!({"phone": PHONE, "type": "SignIn"})).0,
        204
    );
    let code = last_code(&outbox);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, first) = verify(&host, wrong, "SignIn");
    assert_eq!(
        (
            status,
            first["code"].clone(),
            first["data"]["attemptsLeft"].clone()
        ),
        (400, json!("verification_code.code_mismatch"), json!(1))
    );
    // A restart keeps the count.
    let host = host.kill().start_with_args(&[
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
        "--code-max-attempts",
        "2",
    ]);
    assert_eq!(
        verify(&host, wrong, "SignIn").1["code"],
        "verification_code.code_mismatch"
    );
    let (status, capped) = verify(&host, &code, "SignIn");
    assert_eq!(
        (status, capped["code"].clone()),
        (400, json!("verification_code.exceed_max_try"))
    );
}

#[test]
fn a_new_code_invalidates_the_previous_one_and_expired_codes_are_refused() {
    let (host, outbox) = start_mock_host(&["--resend-cooldown-secs", "0"]);
    assert_eq!(
        issue(&host, json!({"phone": PHONE, "type": "SignIn"})).0,
        204
    );
    let first = last_code(&outbox);
    assert_eq!(
        issue(&host, json!({"phone": PHONE, "type": "SignIn"})).0,
        204
    );
    let second = last_code(&outbox);
    if first != second {
        assert_eq!(
            verify(&host, &first, "SignIn").1["code"],
            "verification_code.code_mismatch"
        );
    }
    assert_eq!(verify(&host, &second, "SignIn").0, 204);

    // Age the pending code past its expiry, as ten minutes would.
    assert_eq!(
        issue(&host, json!({"phone": PHONE, "type": "Register"})).0,
        204
    );
    let code = last_code(&outbox);
    let aged = host.folders().execute_sql(
        "UPDATE verification_codes SET expires_at = expires_at - 601000 WHERE type = 'Register'",
    );
    assert_eq!(aged, 1);
    let (status, expired) = verify(&host, &code, "Register");
    assert_eq!(
        (status, expired["code"].clone()),
        (400, json!("verification_code.expired"))
    );
}

#[test]
fn concurrent_verifies_of_one_code_succeed_exactly_once() {
    let (host, outbox) = start_mock_host(&[]);
    assert_eq!(
        issue(&host, json!({"phone": PHONE, "type": "SignIn"})).0,
        204
    );
    let code = last_code(&outbox);
    let host = std::sync::Arc::new(host);
    let verifiers: Vec<_> = (0..8)
        .map(|_| {
            let (host, code) = (std::sync::Arc::clone(&host), code.clone());
            std::thread::spawn(move || verify(&host, &code, "SignIn").0)
        })
        .collect();
    let statuses: Vec<u16> = verifiers
        .into_iter()
        .map(|verifier| verifier.join().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|status| **status == 204).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|status| *status == 204 || *status == 400),
        "{statuses:?}"
    );
}

#[test]
fn per_recipient_limit_and_resend_cooldown_answer_429() {
    let (host, outbox) = start_mock_host(&[
        "--max-sends-per-recipient",
        "3",
        "--resend-cooldown-secs",
        "60",
    ]);
    assert_eq!(
        issue(&host, json!({"phone": PHONE, "type": "SignIn"})).0,
        204
    );
    let pending = last_code(&outbox);
    let (status, cooldown) = issue(&host, json!({"phone": PHONE, "type": "SignIn"}));
    assert_eq!(
        (status, cooldown["code"].clone()),
        (429, json!("verification_code.resend_cooldown")),
        "{cooldown}"
    );
    let seconds = cooldown["data"]["retryAfterSeconds"].as_u64().unwrap();
    assert!((1..=60).contains(&seconds), "{seconds}");
    assert_eq!(
        verify(&host, &pending, "SignIn").0,
        204,
        "a refused resend leaves the pending code valid"
    );

    assert_eq!(
        issue(&host, json!({"phone": PHONE, "type": "Register"})).0,
        204
    );
    let raw = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "1"}})),
    );
    assert_eq!(raw.0, 200, "{}", raw.1);
    let (status, limited) = issue(&host, json!({"phone": PHONE, "type": "ForgotPassword"}));
    assert_eq!(
        (status, limited["code"].clone()),
        (429, json!("request.message_rate_limited")),
        "{limited}"
    );
    assert!(limited["data"]["retryAfterSeconds"].as_u64().unwrap() > 500);
    let sent_before = outbox_lines(&outbox).len();
    let (status, _) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "1"}})),
    );
    assert_eq!(status, 429);
    assert_eq!(
        outbox_lines(&outbox).len(),
        sent_before,
        "nothing sent past the limit"
    );

    // Console tests have their own budget: past the recipient's limit they still go out, a
    // recipient's real sends are not used up by them, and a limited recipient can be tested.
    let other = "+12015550124";
    let config =
        json!({"templates": [{"usageType": "Generic", "content": "{{code}}"}], "outbox": false});
    let test_to = |phone: &str| {
        host.post(
            &format!("/api/connectors/{MOCK}/test"),
            &json!({"phone": phone, "config": config}),
        )
    };
    for _ in 0..5 {
        let (status, body) = test_to(other);
        assert_eq!(status, 204, "{body}");
    }
    let (status, body) = test_to(PHONE);
    assert_eq!(
        status, 204,
        "a limited recipient can still be tested: {body}"
    );
    for _ in 0..3 {
        let (status, body) = host.request(
            "POST",
            "/api/messages",
            Some(SEND_KEY),
            Some(&json!({"to": other, "payload": {"code": "1"}})),
        );
        assert_eq!(
            status, 200,
            "tests used none of the recipient's sends: {body}"
        );
    }
    // Still capped: 20 tests per 10 minutes on a host.
    for _ in 6..20 {
        let (status, body) = test_to(other);
        assert_eq!(status, 204, "{body}");
    }
    let (status, body) = test_to(other);
    assert_eq!(
        (status, body["code"].clone()),
        (429, json!("request.console_test_rate_limited")),
        "{body}"
    );
    assert!(body["data"]["retryAfterSeconds"].as_u64().unwrap() > 500);
    host.log_eventually(|log| log.contains("console test refused"));

    let (_, health) = host.request("GET", "/health", None, None);
    assert_eq!(health["limits"]["sending"]["maxSendsPerRecipient"], 3);
    assert_eq!(health["limits"]["sending"]["resendCooldownSeconds"], 60);
    assert_eq!(
        health["limits"]["verificationCodes"]["timeToLiveSeconds"],
        600
    );
}

#[test]
fn vendor_failures_answer_502_after_exactly_one_request() {
    let failing = CaptureServer::start(503, r#"{"error": "maintenance"}"#);
    let stalling =
        CaptureServer::start_with_delay(200, r#"{"id": "late"}"#, Duration::from_secs(3));
    let folders =
        HostFolders::new(&[("rb.so", &plugin_file("fixture_request_building_connector"))]);
    let host = folders.start_with_args(&[
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
        // Below the stalling provider's 3 s; the others answer well within it.
        "--request-timeout-secs",
        "2",
    ]);
    let send = || {
        host.request(
            "POST",
            "/api/messages",
            Some(SEND_KEY),
            Some(&json!({"to": PHONE, "payload": {"code": "987654"}})),
        )
    };
    let use_vendor = |url: &str| {
        let config = json!({"endpoint": format!("{url}/sms"), "authorization": "Bearer top-secret-token", "templates": [{"usageType": "Generic", "content": "{{code}}"}]});
        let (status, body) = host.post(
            "/api/connectors",
            &json!({"connectorId": "request-building-test-connector", "config": config}),
        );
        assert_eq!(status, 200, "{body}");
    };

    use_vendor(&failing.url);
    let (status, error) = send();
    assert_eq!(
        (status, error["code"].clone()),
        (502, json!("connector.general")),
        "{error}"
    );
    assert!(
        error["message"].as_str().unwrap().contains("503"),
        "{error}"
    );
    assert_eq!(failing.requests().len(), 1, "no retry after a response");

    use_vendor(&stalling.url);
    let (status, error) = send();
    // The request went out and no answer came: maybe sent, which is not "failed".
    assert_eq!(
        (status, error["code"].clone()),
        (504, json!("connector.outcome_unknown")),
        "{error}"
    );
    assert_eq!(error["data"]["providerContacted"], true, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("did not answer within"),
        "{error}"
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(stalling.requests().len(), 1, "no retry after a timeout");

    // A code whose SMS may have gone out stays valid: the recipient may be reading it.
    let (status, error) = host.request(
        "POST",
        "/api/verification-codes",
        Some(SEND_KEY),
        Some(&json!({"phone": PHONE, "type": "SignIn"})),
    );
    assert_eq!(
        (status, error["code"].clone()),
        (504, json!("connector.outcome_unknown")),
        "{error}"
    );
    // The provider reads one request at a time: the second once the first's stall is over.
    let requests = stalling.requests_once(2);
    let sent: Value = serde_json::from_str(&requests.last().unwrap().body).unwrap();
    let sent_code = sent["text"].as_str().unwrap().to_owned();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let (status, body) = host.request(
        "POST",
        "/api/verification-codes/verify",
        Some(SEND_KEY),
        Some(&json!({"phone": PHONE, "type": "SignIn", "verificationCode": sent_code})),
    );
    assert_eq!(status, 204, "the maybe-sent code verifies: {body}");

    // Nothing listens: the connection is refused, so a retry cannot send twice; still 502.
    let closed = e2e_tests::RefusingPort::new();
    let closed_port = closed.port;
    use_vendor(&format!("http://127.0.0.1:{closed_port}"));
    let (status, error) = send();
    assert_eq!(
        (status, error["code"].clone()),
        (502, json!("connector.general")),
        "{error}"
    );
    assert_eq!(error["data"]["providerContacted"], false, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains(&format!(
            "could not connect to the SMS provider at 127.0.0.1:{closed_port}"
        )),
        "the host and its port: {error}"
    );

    let log = host.log();
    assert!(
        !log.contains("top-secret-token") && !log.contains("987654"),
        "a secret or a code reached the log"
    );
    assert!(
        !error["message"].as_str().unwrap().contains("/sms"),
        "errors name the host, not the URL"
    );

    let (status, metrics) = host.request("GET", "/metrics", None, None);
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics.contains("sms_sends_total")
            && metrics.contains("outcome=\"connector_error\"")
            && metrics.contains("outcome=\"upstream_error\"")
            && metrics.contains("outcome=\"outcome_unknown\""),
        "{metrics}"
    );
    let failures = |error: &str| {
        metrics
            .lines()
            .find(|line| {
                line.starts_with("sms_send_failures_total")
                    && line.contains(&format!("error=\"{error}\""))
            })
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|count| count.parse::<u64>().ok())
    };
    assert_eq!(failures("general"), Some(1), "the 503: {metrics}");
    assert_eq!(failures("outcome_unknown"), Some(2), "{metrics}");
    assert_eq!(failures("unreachable"), Some(1), "{metrics}");
    assert_eq!(
        failures("invalid_config"),
        Some(0),
        "at zero from the start: {metrics}"
    );
    assert!(metrics.contains("live_connector_swaps_total"), "{metrics}");
}

/// A provider that echoes the credential it was sent, in the forms providers and proxies
/// repeat it: as is, URL- and form-encoded, JSON-escaped, base64, and inside Basic auth.
fn echoed_forms(secret: &str) -> Vec<String> {
    use base64::Engine;
    let base64 = base64::engine::general_purpose::STANDARD;
    vec![
        secret.to_owned(),
        form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        secret
            .bytes()
            .map(|byte| {
                if byte.is_ascii_alphanumeric() {
                    (byte as char).to_string()
                } else {
                    format!("%{byte:02X}")
                }
            })
            .collect(),
        // The JSON string without its enclosing quotes (its escaped inner quotes kept).
        serde_json::to_string(secret).unwrap()[1..]
            .strip_suffix('"')
            .unwrap()
            .to_owned(),
        base64.encode(secret),
        base64.encode(format!("AC0123456789:{secret}")),
    ]
}

#[test]
fn a_provider_echoing_the_key_does_not_leak_it_to_clients_or_the_log() {
    // The secret holds characters every encoding changes.
    let secret = "Bearer sk_live/Zq9+Y=w&k \"x\"";
    let forms = echoed_forms(secret);
    let page = format!(
        "<html><title>401</title>You sent {}; as a query {} or {}; JSON \\\"{}\\\"; stored as {}; Authorization: Basic {}</html>",
        forms[0], forms[1], forms[2], forms[3], forms[4], forms[5]
    );
    let echoing: &'static str = Box::leak(page.into_boxed_str());
    let refusing = CaptureServer::start(401, echoing);
    let receipt_body: &'static str = Box::leak(
        json!({"id": format!("msg-{}", forms[4])})
            .to_string()
            .into_boxed_str(),
    );
    let accepting = CaptureServer::start(200, receipt_body);
    let folders = HostFolders::new(&[
        ("rb.so", &plugin_file("fixture_request_building_connector")),
        ("http.so", &plugin_file("http_sms")),
    ]);
    let host = folders.start_with_args(&["--admin-key", ADMIN_KEY, "--send-key", SEND_KEY]);
    let config = |url: &str| json!({"endpoint": format!("{url}/sms"), "authorization": secret, "templates": [{"usageType": "Generic", "content": "{{code}}"}]});
    let leaks = |text: &str| -> Vec<String> {
        forms
            .iter()
            .filter(|form| text.contains(form.as_str()))
            .cloned()
            .collect()
    };

    // A send through the live connector, with the send key.
    let (status, body) = host.post(
        "/api/connectors",
        &json!({"connectorId": "request-building-test-connector", "config": config(&refusing.url)}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, error) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "987654"}})),
    );
    assert_eq!(
        (status, error["code"].as_str()),
        (502, Some("connector.general")),
        "{error}"
    );
    let message = error["message"].as_str().unwrap();
    assert_eq!(leaks(&error.to_string()), Vec::<String>::new(), "{error}");
    assert!(
        message.contains("******") && message.contains("You sent"),
        "{error}"
    );
    let sent = refusing.requests();
    assert_eq!(
        sent.last().unwrap().header("authorization"),
        Some(secret),
        "the provider got it"
    );

    // `/test` with the same config unsaved: its secrets are redacted the same way.
    let (status, error) = host.post(
        "/api/connectors/request-building-test-connector/test",
        &json!({"phone": PHONE, "config": config(&refusing.url)}),
    );
    assert_eq!(status, 502, "{error}");
    assert_eq!(leaks(&error.to_string()), Vec::<String>::new(), "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("******"),
        "{error}"
    );

    // A bundled plugin puts only the status and the structured error fields into its error.
    let (status, error) = host.post(
        "/api/connectors/http-sms/test",
        &json!({"phone": PHONE, "config": config(&refusing.url)}),
    );
    assert_eq!(status, 400, "401 means the tested config is wrong: {error}");
    assert_eq!(leaks(&error.to_string()), Vec::<String>::new(), "{error}");
    assert!(
        !error["message"].as_str().unwrap().contains("You sent"),
        "{error}"
    );

    // A receipt that echoes the key.
    let (status, body) = host.post(
        "/api/connectors",
        &json!({"connectorId": "request-building-test-connector", "config": config(&accepting.url)}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, receipt) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "987654"}})),
    );
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["providerMessageId"], "msg-******", "{receipt}");

    let log = host.log_eventually(|log| log.matches("send failed").count() >= 3);
    assert_eq!(leaks(&log), Vec::<String>::new(), "{log}");
    assert!(log.contains("******"), "{log}");
}

#[test]
fn public_only_provider_networks_refuse_loopback_destinations() {
    let local = CaptureServer::start(200, r#"{"id": "local"}"#);
    let port = local.url.rsplit(':').next().unwrap().to_owned();
    let destinations = [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ];
    let config = |url: &str| json!({"endpoint": format!("{url}/sms"), "templates": [{"usageType": "Generic", "content": "{{code}}"}]});
    let start = |extra_args: &[&str]| {
        let folders =
            HostFolders::new(&[("rb.so", &plugin_file("fixture_request_building_connector"))]);
        let mut args = vec!["--admin-key", ADMIN_KEY, "--send-key", SEND_KEY];
        args.extend_from_slice(extra_args);
        folders.start_with_args(&args)
    };
    let test_send = |host: &TestHost, url: &str| {
        host.post(
            "/api/connectors/request-building-test-connector/test",
            &json!({"phone": PHONE, "config": config(url)}),
        )
    };
    let live_send = |host: &TestHost, url: &str| {
        let (status, body) = host.post(
            "/api/connectors",
            &json!({"connectorId": "request-building-test-connector", "config": config(url)}),
        );
        assert_eq!(status, 200, "{body}");
        host.request(
            "POST",
            "/api/messages",
            Some(SEND_KEY),
            Some(&json!({"to": PHONE, "payload": {"code": "987654"}})),
        )
    };

    let guarded = start(&["--provider-networks", "public-only"]);
    for url in &destinations {
        let (status, error) = test_send(&guarded, url);
        assert_eq!(
            (status, error["code"].as_str()),
            (400, Some("connector.invalid_config")),
            "{url}: {error}"
        );
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("public-only") && message.contains("loopback"),
            "{url}: {error}"
        );
        let (status, error) = live_send(&guarded, url);
        assert_eq!(
            (status, error["code"].as_str()),
            (502, Some("connector.invalid_config")),
            "{url}: {error}"
        );
        assert!(
            error["message"].as_str().unwrap().contains("loopback"),
            "{error}"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(local.requests().len(), 0, "the local server saw a request");
    let log = guarded.log_eventually(|log| log.matches("send failed").count() >= 4);
    assert!(
        !log.contains("could not connect to the provider; retrying"),
        "{log}"
    );
    drop(guarded);

    // The default reaches the same server by either name.
    let open = start(&[]);
    for url in &destinations {
        let (status, body) = test_send(&open, url);
        assert_eq!(status, 204, "{url}: {body}");
    }
    let (status, receipt) = live_send(&open, &destinations[1]);
    assert_eq!(
        (status, receipt["providerMessageId"].as_str()),
        (200, Some("local")),
        "{receipt}"
    );
    assert_eq!(local.requests().len(), 3);
}

#[test]
fn a_client_value_cannot_forge_or_split_a_log_line() {
    let (host, _outbox) = start_mock_host(&[]);
    // A live config without a Register or Generic template, so the locale reaches the error.
    let (status, body) = host.post(
        "/api/connectors",
        &json!({"connectorId": MOCK, "config": {
            "templates": [{"usageType": "SignIn", "content": "Sign in with {{code}}"}],
            "outbox": false
        }}),
    );
    assert_eq!(status, 200, "{body}");
    let forged =
        "2026-11-27T04:30:01.000000Z ERROR connector_host::forged: injected via the send key";
    let (status, body) = issue(
        &host,
        json!({"phone": PHONE, "type": "Register", "locale": format!("y\n{forged}")}),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("connector.template_not_found")),
        "{body}"
    );
    let log = host.log_eventually(|log| log.contains("send failed"));
    assert!(log.contains("send failed"), "{log}");
    assert!(
        !log.lines().any(|line| line.starts_with(forged)),
        "a forged line in the log:\n{log}"
    );
    assert!(
        log.contains("y\\n2026-11-27T04:30:01.000000Z ERROR connector_host::forged"),
        "{log}"
    );

    // JSON lines: one object per line, whatever the values hold.
    let folders = HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))]);
    let host = folders.start_with_args(&[
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
        "--log-format",
        "json",
    ]);
    host.post(
        "/api/connectors",
        &json!({"connectorId": MOCK, "config": {
            "templates": [{"usageType": "SignIn", "content": "Sign in with {{code}}"}],
            "outbox": false
        }}),
    );
    issue(
        &host,
        json!({"phone": PHONE, "type": "Register", "locale": format!("y\n{forged}")}),
    );
    let log = host.log_eventually(|log| log.contains("send failed"));
    let lines: Vec<&str> = log.lines().filter(|line| !line.trim().is_empty()).collect();
    assert!(
        lines.iter().any(|line| line.contains("send failed")),
        "{log}"
    );
    for line in lines {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
        assert!(event.is_object() && event["level"].is_string(), "{line}");
    }
}

/// The latest code sent to each phone, read from the host's outbox (which may end in a line
/// still being written).
fn codes_by_phone(outbox: &Path) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(outbox)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|line| {
            Some((
                line["to"].as_str()?.to_owned(),
                line["payload"]["code"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// What one client of the burst saw before the kill: codes whose issue answered 204 and that
/// it did not try to verify, codes whose verify answered 204, and codes whose verify got no
/// answer (it may or may not have committed).
#[derive(Default)]
struct BurstOutcome {
    issued_not_verified: Vec<(String, String)>,
    verified: Vec<(String, String)>,
    verify_unanswered: Vec<(String, String)>,
    unexpected: Vec<String>,
}

#[test]
fn kill_9_during_a_burst_of_codes_loses_no_issued_code_and_no_verify() {
    let args = [
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
        "--resend-cooldown-secs",
        "0",
        "--max-sends-per-recipient",
        "1000000",
        // 8,000 codes to one prefix within seconds: the flood `prefix_velocity` stops.
        "--prefix-velocity-max",
        "0",
    ];
    let (host, outbox) = start_mock_host(&args[4..]);
    let host = std::sync::Arc::new(host);
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Eight clients, each issuing to phones of its own and verifying every other code at
    // once: the writer has concurrent issues and verifies to put in one batch.
    let clients: Vec<_> = (0..8u32)
        .map(|client| {
            let (host, issued, outbox) = (
                std::sync::Arc::clone(&host),
                std::sync::Arc::clone(&issued),
                outbox.clone(),
            );
            std::thread::spawn(move || {
                let mut outcome = BurstOutcome::default();
                for index in 0..1000u32 {
                    let phone = format!("+1201555{:04}", client * 1000 + index);
                    let body = json!({"phone": phone});
                    match host.try_request(
                        "POST",
                        "/api/verification-codes",
                        Some(SEND_KEY),
                        Some(&body),
                    ) {
                        Ok((204, _)) => {}
                        Ok((status, body)) => {
                            outcome
                                .unexpected
                                .push(format!("issue {phone}: {status} {body}"));
                            break;
                        }
                        Err(_) => break, // killed
                    }
                    issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // The message is in the outbox before the 204.
                    let Some(code) = codes_by_phone(&outbox).remove(&phone) else {
                        outcome
                            .unexpected
                            .push(format!("no code in the outbox for {phone}"));
                        break;
                    };
                    if index % 2 == 1 {
                        outcome.issued_not_verified.push((phone, code));
                        continue;
                    }
                    let body = json!({"phone": phone, "verificationCode": code});
                    match host.try_request(
                        "POST",
                        "/api/verification-codes/verify",
                        Some(SEND_KEY),
                        Some(&body),
                    ) {
                        Ok((204, _)) => outcome.verified.push((phone, code)),
                        Ok((status, body)) => {
                            outcome
                                .unexpected
                                .push(format!("verify {phone}: {status} {body}"));
                            break;
                        }
                        Err(_) => {
                            outcome.verify_unanswered.push((phone, code));
                            break;
                        }
                    }
                }
                outcome
            })
        })
        .collect();
    // Let the burst get going, then kill without warning.
    let started = std::time::Instant::now();
    while issued.load(std::sync::atomic::Ordering::Relaxed) < 200
        && started.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    if e2e_tests::store_kind() == e2e_tests::StoreKind::Sqlite {
        // The writer's batch sizes: some commits carried several operations.
        let (_, metrics) = host.request("GET", "/metrics", None, None);
        let metrics = metrics.as_str().unwrap_or_default().to_owned();
        let sample = |name: &str| -> u64 {
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        };
        let batches = sample("store_batch_size_count");
        let single_operation_batches = sample("store_batch_size_bucket{le=\"1\"}");
        assert!(
            single_operation_batches < batches,
            "no commit carried more than one operation: {metrics}"
        );
    }
    std::process::Command::new("kill")
        .args(["-9", &host.pid().to_string()])
        .status()
        .unwrap();
    let outcomes: Vec<BurstOutcome> = clients
        .into_iter()
        .map(|client| client.join().unwrap())
        .collect();
    let unexpected: Vec<&String> = outcomes.iter().flat_map(|o| &o.unexpected).collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    let pending: Vec<&(String, String)> = outcomes
        .iter()
        .flat_map(|o| &o.issued_not_verified)
        .collect();
    let verified: Vec<&(String, String)> = outcomes.iter().flat_map(|o| &o.verified).collect();
    assert!(
        pending.len() >= 50 && verified.len() >= 50,
        "the burst ran: {} pending, {} verified",
        pending.len(),
        verified.len()
    );

    let host = std::sync::Arc::into_inner(host)
        .expect("the clients are done")
        .kill()
        .start_with_args(&args);
    let verify_phone = |phone: &str, code: &str| {
        host.request(
            "POST",
            "/api/verification-codes/verify",
            Some(SEND_KEY),
            Some(&json!({"phone": phone, "verificationCode": code})),
        )
    };
    for (phone, code) in &pending {
        let (status, body) = verify_phone(phone, code);
        assert_eq!(
            status, 204,
            "{phone}'s code answered 204 at issue but was lost: {body}"
        );
        let (status, again) = verify_phone(phone, code);
        assert_eq!(
            (status, again["code"].clone()),
            (400, json!("verification_code.not_found")),
            "{phone}'s code works once"
        );
    }
    for (phone, code) in &verified {
        let (status, body) = verify_phone(phone, code);
        assert_eq!(
            (status, body["code"].clone()),
            (400, json!("verification_code.not_found")),
            "{phone}'s code was verified before the kill and works again after it"
        );
    }
    // A verify cut by the kill either committed or not; either way the code works at most
    // once from here.
    for (phone, code) in outcomes.iter().flat_map(|o| &o.verify_unanswered) {
        let first = verify_phone(phone, code).0;
        assert!(first == 204 || first == 400, "{phone}: {first}");
        assert_eq!(verify_phone(phone, code).0, 400, "{phone}");
    }
}

/// The protection's state of one host is saved in its SQLite file: a block holds across a
/// kill -9 and a restart, and is lifted by the admin API afterwards. (With `E2E_STORE=postgres`
/// the state is shared through the database instead: `several_hosts.rs` checks it.)
#[test]
fn protection_blocks_hold_across_a_restart_on_sqlite() {
    if e2e_tests::store_kind() == e2e_tests::StoreKind::Postgres {
        return;
    }
    let args = ["--prefix-velocity-max", "1"];
    let (host, _outbox) = start_mock_host(&args);
    let message = |to: &str| json!({"to": to, "type": "SignIn", "payload": {"code": "123456"}});
    let send = |host: &TestHost, to: &str| {
        host.request("POST", "/api/messages", Some(SEND_KEY), Some(&message(to)))
    };
    assert_eq!(send(&host, "+12015550001").0, 200);
    let (status, refused) = send(&host, "+12015550002");
    assert_eq!(
        (status, refused["data"]["reason"].as_str()),
        (429, Some("prefix_velocity")),
        "{refused}"
    );
    let block_id = refused["data"]["blockId"].as_str().unwrap().to_owned();
    // A new block is saved within about a second (the flush task); wait until it is on disk.
    let database = host.data_dir.join("connectors.sqlite3");
    let saved = (0..100).any(|_| {
        let snapshot: Option<String> = rusqlite::Connection::open_with_flags(
            &database,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .ok()
        .and_then(|connection| {
            connection
                .query_row(
                    "SELECT value FROM protection_state WHERE name = 'snapshot'",
                    [],
                    |row| row.get(0),
                )
                .ok()
        });
        let found = snapshot.is_some_and(|snapshot| snapshot.contains(&block_id));
        if !found {
            std::thread::sleep(Duration::from_millis(100));
        }
        found
    });
    assert!(saved, "the block was not saved");
    // Every block is explained in the log (masked phone, reason, mode) and the metric.
    let log = host.log_eventually(|log| log.contains("send blocked by protection"));
    let line = log
        .lines()
        .find(|line| line.contains("send blocked by protection"))
        .unwrap();
    assert!(
        line.contains("***0002") && !line.contains("+12015550002"),
        "{line}"
    );
    assert!(
        line.contains("prefix_velocity") && line.contains("enforce"),
        "{line}"
    );
    // A flood on one block: every refusal counted, its lines collapsed (one at once, then at
    // most one per 5 s saying how many were left out), not one line per refused send.
    for index in 0..30 {
        assert_eq!(send(&host, &format!("+120155510{index:02}")).0, 429);
    }
    let (_, metrics) = host.request("GET", "/metrics", None, None);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("sms_sends_blocked_total")
                && line.contains("reason=\"prefix_velocity\"")
                && line.contains("mode=\"enforce\"")
                && line.ends_with(" 31")),
        "{metrics}"
    );
    let lines = host
        .log()
        .lines()
        .filter(|line| line.contains("send blocked by protection") && line.contains(&block_id))
        .count();
    assert!((1..31).contains(&lines), "{lines} lines for 31 refusals");

    let host = host.kill().start_with_args(&[
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
        args[0],
        args[1],
    ]);
    let (status, refused) = send(&host, "+12015550003");
    assert_eq!(status, 429, "{refused}");
    assert_eq!(refused["data"]["blockId"], block_id.as_str());
    let (_, listed) = host.get("/api/protection");
    assert_eq!(listed["blocks"][0]["id"], block_id.as_str(), "{listed}");
    assert_eq!(listed["blocks"][0]["counts"]["blocked"], 2, "{listed}");
    assert_eq!(
        host.delete(&format!("/api/protection/blocks/{block_id}")).0,
        204
    );
    assert_eq!(send(&host, "+12015550003").0, 200);
}

/// Monitor mode decides and explains, and sends: the log line says what would have been
/// blocked, the metric counts it with `mode="monitor"`.
#[test]
fn monitor_mode_logs_and_counts_what_it_would_block_and_sends_it() {
    let (host, outbox) =
        start_mock_host(&["--protection", "monitor", "--prefix-velocity-max", "1"]);
    for to in ["+12015550001", "+12015550002"] {
        let body = json!({"to": to, "payload": {"code": "123456"}});
        let (status, answer) = host.request("POST", "/api/messages", Some(SEND_KEY), Some(&body));
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(outbox_lines(&outbox).len(), 2);
    let log = host.log_eventually(|log| log.contains("send would be blocked by protection"));
    assert!(!log.contains("send blocked by protection"), "{log}");
    let (_, metrics) = host.request("GET", "/metrics", None, None);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("sms_sends_blocked_total")
                && line.contains("mode=\"monitor\"")
                && !line.ends_with(" 0")),
        "{metrics}"
    );
}

/// Twilio through a stand-in for its API: what a vendor's step did shows in the host's debug
/// log (the request's method and URL without secrets, the answer's status, the plugin's own
/// notes), and a provider's `Retry-After` reaches the API client.
#[test]
fn a_providers_retry_after_reaches_the_client_and_each_step_shows_in_the_debug_log() {
    let created = CaptureServer::start(201, r#"{"sid": "SM4242", "status": "queued"}"#);
    let throttled = CaptureServer::start_with_headers(
        429,
        "Retry-After: 42\r\n",
        r#"{"code": 20429, "message": "Too Many Requests"}"#,
    );
    // The test host logs at debug for connector_host (tests/src/lib.rs).
    let host = HostFolders::new(&[("twilio.so", &plugin_file("twilio_sms"))]).start();
    let use_twilio = |base_url: &str| {
        let config = json!({
            "accountSID": "AC0123456789abcdef0123456789abcdef",
            "authToken": "twilio-secret-token",
            "from": "+12015550100",
            "baseUrl": base_url,
            "templates": [{"usageType": "Generic", "content": "Your code is {{code}}"}]
        });
        let (status, body) = host.post(
            "/api/connectors",
            &json!({"connectorId": "twilio-short-message-service", "config": config}),
        );
        assert_eq!(status, 200, "{body}");
    };
    let message = json!({"to": PHONE, "payload": {"code": "135791"}});

    use_twilio(&created.url);
    let (status, body) = host.request("POST", "/api/messages", Some(SEND_KEY), Some(&message));
    assert_eq!(
        (status, body["providerMessageId"].clone()),
        (200, json!("SM4242")),
        "{body}"
    );
    let log = host.log_eventually(|log| log.contains("plugin note"));
    let line_with = |text: &str| {
        log.lines()
            .find(|line| line.contains(text))
            .unwrap_or_else(|| panic!("no line with {text:?} in:\n{log}"))
            .to_owned()
    };
    let note = line_with("Twilio created message SM4242 with status queued");
    assert!(
        note.contains("plugin note") && note.contains("connector_id"),
        "{note}"
    );
    let request = line_with("step request");
    assert!(
        request.contains("POST")
            && request
                .contains("/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"),
        "{request}"
    );
    assert!(line_with("step response").contains("201"), "{log}");
    assert!(
        !log.contains("twilio-secret-token") && !log.contains("135791"),
        "a secret or the message reached the debug log"
    );

    use_twilio(&throttled.url);
    let response = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .post(&format!("{}/api/messages", host.base_url))
        .header("Authorization", format!("Bearer {SEND_KEY}"))
        .send_json(&message)
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok()),
        Some("42"),
        "the provider's Retry-After, passed on"
    );
    let body: Value = response.into_body().read_json().unwrap();
    assert_eq!(body["code"], "connector.rate_limit_exceeded", "{body}");
    assert_eq!(body["data"]["retryAfterSeconds"], 42, "{body}");
    assert_eq!(throttled.requests().len(), 1, "no retry after a 429");
}

/// Delivery reports end to end through the HTTP gateway's documented callback: a message is
/// followed to `delivered` through `GET /api/messages/{id}`; a report that beats the send's
/// answer is kept; a repeated one is one event; a forged token or an unknown connector is
/// refused; a retired connector still takes the late reports of what it sent.
#[test]
fn delivery_reports_follow_a_message_to_delivered_and_forged_ones_are_refused() {
    // The provider answers after a moment: long enough to report before the send returns,
    // on a loaded machine too (below the host's provider timeout).
    let provider =
        CaptureServer::start_with_delay(200, r#"{"id": "gw-1"}"#, Duration::from_secs(4));
    let folders = HostFolders::new(&[
        ("http.so", &plugin_file("http_sms")),
        ("mock.so", &plugin_file("mock_sms")),
    ]);
    let host = folders.start_with_args(&[
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
        "--public-url",
        "http://127.0.0.1:1/",
    ]);
    let (status, created) = host.post(
        "/api/connectors",
        &json!({"connectorId": "http-sms", "config": {"endpoint": format!("{}/send", provider.url)}}),
    );
    assert_eq!(status, 200, "{created}");
    let connector_id = created["id"].as_str().unwrap().to_owned();

    let sender = {
        let base_url = host.base_url.clone();
        std::thread::spawn(move || {
            ureq::post(&format!("{base_url}/api/messages"))
                .header("Authorization", format!("Bearer {SEND_KEY}"))
                .send_json(json!({"to": PHONE, "payload": {"code": "246810"}}))
                .unwrap()
                .into_body()
                .read_json::<Value>()
                .unwrap()
        })
    };
    // The request reached the provider; its answer has not come back yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let sent = loop {
        if let Some(request) = provider.requests().first() {
            break serde_json::from_str::<Value>(&request.body).unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the provider got nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let callback = sent["callbackUrl"].as_str().unwrap().to_owned();
    let message_id = sent["messageId"].as_str().unwrap().to_owned();
    assert!(
        callback.starts_with(&format!(
            "http://127.0.0.1:1/dlr/{connector_id}?m={message_id}&t="
        )),
        "{callback}"
    );
    // The host's own address, where the provider's call would arrive.
    let report_path = callback.trim_start_matches("http://127.0.0.1:1");
    let report = |path: &str, body: &Value| {
        host.request_raw(
            "POST",
            path,
            None,
            Some(("application/json", &body.to_string())),
        )
    };
    let (status, body) = report(
        report_path,
        &json!({"status": "delivered", "providerMessageId": "gw-1"}),
    );
    assert_eq!(status, 200, "an early report is taken: {body}");
    let answer = sender.join().unwrap();
    assert_eq!(answer["messageId"], message_id.as_str(), "{answer}");

    let (status, message) = host.get(&format!("/api/messages/{message_id}"));
    assert_eq!(status, 200, "{message}");
    assert_eq!(
        message["status"], "delivered",
        "the send's answer did not undo it: {message}"
    );
    assert_eq!(message["phone"], "***0123");
    assert_eq!(message["providerMessageId"], "gw-1");
    let sources: Vec<(&str, &str)> = message["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["source"].as_str().unwrap(),
                event["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        [("report", "delivered"), ("send", "queued")],
        "{message}"
    );

    // The provider retries: one event still.
    let (status, _) = report(
        report_path,
        &json!({"status": "delivered", "providerMessageId": "gw-1"}),
    );
    assert_eq!(status, 200);
    let (_, again) = host.get(&format!("/api/messages/{message_id}"));
    assert_eq!(again["events"].as_array().unwrap().len(), 2, "{again}");

    // Forged: another token, no token, another connector's path.
    let forged = report_path.replace("&t=", "&t=AAAA");
    let (status, body) = report(&forged, &json!({"status": "failed"}));
    assert_eq!(
        (status, body["code"].clone()),
        (403, json!("delivery_report.forbidden")),
        "{body}"
    );
    let untokened = report_path.split("&t=").next().unwrap().to_owned();
    assert_eq!(report(&untokened, &json!({"status": "failed"})).0, 403);
    let (status, body) = report(
        &report_path.replace(&connector_id, "nosuchconnector"),
        &json!({"status": "failed"}),
    );
    assert_eq!(
        (status, body["code"].clone()),
        (403, json!("delivery_report.forbidden")),
        "another connector's path: {body}"
    );
    let (status, body) = report(report_path, &json!({"state": "delivered"}));
    assert_eq!(
        (status, body["code"].clone()),
        (400, json!("delivery_report.invalid")),
        "{body}"
    );
    let (_, unchanged) = host.get(&format!("/api/messages/{message_id}"));
    assert_eq!(unchanged["status"], "delivered");

    // Retired: the mock goes live; the HTTP gateway still reads its late reports.
    let (status, body) = host.post(
        "/api/connectors",
        &json!({"connectorId": "mock-short-message-service", "config": {"templates": [{"usageType": "Generic", "content": "{{code}}"}], "outbox": false}}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = report(
        report_path,
        &json!({"status": "undelivered", "errorCode": "late"}),
    );
    assert_eq!(status, 200, "{body}");
    let (_, late) = host.get(&format!("/api/messages/{message_id}"));
    assert_eq!(
        late["status"], "delivered",
        "final: never downgraded: {late}"
    );
    assert_eq!(
        late["events"].as_array().unwrap().len(),
        3,
        "kept in the timeline: {late}"
    );

    // Deleted: its reports' tokens are still the host's, but nothing reads them any more.
    assert_eq!(
        host.delete(&format!("/api/connectors/{connector_id}")).0,
        204
    );
    let (status, body) = report(report_path, &json!({"status": "failed"}));
    assert_eq!(
        (status, body["code"].clone()),
        (404, json!("entity.not_found")),
        "{body}"
    );

    let (status, listed) = host.get("/api/messages?status=delivered&limit=5");
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["messages"][0]["id"], message_id.as_str(), "{listed}");
    let (status, body) = host.get("/api/messages?status=arrived");
    assert_eq!(
        (status, body["code"].clone()),
        (400, json!("guard.invalid_input")),
        "{body}"
    );
    let (status, body) = host.get("/api/messages/0193a5b2-0000-7000-8000-000000000000");
    assert_eq!(
        (status, body["code"].clone()),
        (404, json!("entity.not_found")),
        "{body}"
    );

    let (_, metrics) = host.request("GET", "/metrics", None, None);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics
            .contains(r#"sms_delivery_reports_total{connector="http-sms",status="delivered"} 2"#),
        "{metrics}"
    );
}

#[test]
fn a_codes_message_id_is_followed_to_delivered_across_a_restart_between_send_and_report() {
    let provider = CaptureServer::start(200, r#"{"id": "gw-7"}"#);
    let folders = HostFolders::new(&[("http.so", &plugin_file("http_sms"))]);
    let args = [
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
        "--public-url",
        "http://127.0.0.1:1/",
        "--drain-grace-secs",
        "0",
    ];
    let mut host = folders.start_with_args(&args);
    let (status, created) = host.post(
        "/api/connectors",
        &json!({"connectorId": "http-sms", "config": {"endpoint": format!("{}/send", provider.url)}}),
    );
    assert_eq!(status, 200, "{created}");

    // Logto's way: 204 and no body; the id rides in a header.
    let issue = |phone: &str, prefer: Option<&str>| {
        let mut request = ureq::post(&format!("{}/api/verification-codes", host.base_url))
            .header("Authorization", format!("Bearer {SEND_KEY}"));
        if let Some(prefer) = prefer {
            request = request.header("Prefer", prefer);
        }
        let mut response = request.send_json(json!({"phone": phone})).unwrap();
        let header = response
            .headers()
            .get("x-message-id")
            .map(|value| value.to_str().unwrap().to_owned());
        let body = response.body_mut().read_to_string().unwrap();
        (response.status().as_u16(), header, body)
    };
    let (status, header, body) = issue(PHONE, None);
    assert_eq!((status, body.as_str()), (204, ""));
    let message_id = header.expect("X-Message-Id");
    let sent: Value = serde_json::from_str(&provider.requests()[0].body).unwrap();
    assert_eq!(sent["messageId"], message_id.as_str(), "{sent}");
    let callback = sent["callbackUrl"].as_str().unwrap().to_owned();
    // RFC 7240's ask for the representation: 201 with the id in the body too.
    let (status, header, body) = issue("+12015550124", Some("return=representation"));
    assert_eq!(status, 201, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["messageId"].as_str(), header.as_deref(), "{body}");
    assert!(
        host.log().contains(&format!("message_id={message_id}")),
        "the send's log line names its message"
    );

    // A restart (SIGTERM: the drain writes what the log still had queued) before the report.
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &host.pid().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while host.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let host = host.kill().start_with_args(&args);
    let report_path = callback.trim_start_matches("http://127.0.0.1:1");
    let (status, body) = host.request_raw(
        "POST",
        report_path,
        None,
        Some((
            "application/json",
            &json!({"status": "delivered", "providerMessageId": "gw-7"}).to_string(),
        )),
    );
    assert_eq!(status, 200, "the token outlives the process: {body}");
    let (status, message) = host.get(&format!("/api/messages/{message_id}"));
    assert_eq!(status, 200, "{message}");
    assert_eq!(message["status"], "delivered", "{message}");
    assert_eq!(message["purpose"], "verification_code", "{message}");
    let timeline: Vec<&str> = message["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["status"].as_str().unwrap())
        .collect();
    assert_eq!(timeline, ["queued", "delivered"], "{message}");
}
