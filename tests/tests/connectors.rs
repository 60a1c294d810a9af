//! Connector management end to end: the seed's flow on the mock connector, secrets, restarts,
//! kill -9, hot swap under concurrent sends. Bad inputs, keys and the Logto differences that
//! are a request and its answer are in `tests/in_process`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use e2e_tests::{plugin_file, CaptureServer, HostFolders, TestHost, ADMIN_KEY, SEND_KEY};
use serde_json::{json, Value};

const MOCK: &str = "mock-short-message-service";
const REQUEST_BUILDING: &str = "request-building-test-connector";
const PHONE: &str = "+12015550123";

/// The mock with its outbox on: its messages land in the host's outbox.
fn mock_config() -> Value {
    json!({
        "templates": [
            {"usageType": "Generic", "content": "Generic code {{code}}"},
            {"usageType": "SignIn", "content": "Sign-in code {{code}}"}
        ],
        "outbox": true
    })
}

fn mock_host() -> TestHost {
    HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))]).start()
}

/// The mock host for a test that floods one number prefix on purpose (thousands of sends or
/// codes to `+1201555…` within seconds, as a bench does): the protection layers that are
/// there to stop exactly such a flood (`prefix_velocity`, and `first_seen_country` on a host
/// where no code is verified) are turned off, the rest of protection stays on.
fn flooding_mock_host() -> TestHost {
    let mut args = vec!["--admin-key", ADMIN_KEY, "--send-key", SEND_KEY];
    args.extend(e2e_tests::UNLIMITED_FLOOD_FLAGS);
    HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))]).start_with_args(&args)
}

fn create(host: &TestHost, factory_id: &str, config: Value) -> Value {
    let (status, connector) = host.post(
        "/api/connectors",
        &json!({"connectorId": factory_id, "config": config}),
    );
    assert_eq!(status, 200, "{connector}");
    connector
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn seed_flow_set_up_test_save_change_and_switch_back() {
    let host = mock_host();

    let (status, factories) = host.get("/api/connector-factories");
    assert_eq!((status, ids(&factories)), (200, vec![MOCK.to_owned()]));
    // The suite runs on the store the run asked for (E2E_STORE).
    let expected_store = match e2e_tests::store_kind() {
        e2e_tests::StoreKind::Sqlite => "sqlite",
        e2e_tests::StoreKind::Postgres => "postgres",
    };
    let (_, health) = host.get("/health");
    assert_eq!(
        (health["storeKind"].as_str(), health["store"].as_str()),
        (Some(expected_store), Some("ok"))
    );

    // Test the config before saving: a Generic code to the number, nothing saved.
    let test_path = format!("/api/connectors/{MOCK}/test");
    let (status, body) = host.post(
        &test_path,
        &json!({"phone": "12015550123", "config": mock_config()}),
    );
    assert_eq!(status, 204, "{body}");
    let sent = host.outbox_lines();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0]["connectorId"].clone(), sent[0]["factoryId"].clone()),
        (Value::Null, json!(MOCK)),
        "a config test has no connector id"
    );
    assert_eq!(sent[0]["to"], PHONE);
    assert_eq!(sent[0]["type"], "Generic");
    let code = sent[0]["payload"]["code"].as_str().unwrap();
    assert!(code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()));
    assert_eq!(sent[0]["content"], format!("Generic code {code}"));
    assert_eq!(
        ids(&host.get("/api/connectors").1).len(),
        0,
        "testing saves nothing"
    );

    // Save: it becomes live.
    let first = create(&host, MOCK, mock_config());
    assert_eq!(
        (first["enabled"].clone(), first["loaded"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(first["connectorId"], MOCK);
    assert_eq!(first["type"], "Sms");
    assert_eq!(first["name"]["en"], "Mock SMS Service");
    assert!(first["formItems"].is_array() && first["readme"].is_string());
    assert!(first["createdAt"].as_i64().unwrap() > 0);
    let first_id = first["id"].as_str().unwrap().to_owned();

    // Change connector: the new one is live, the old one retired with its config.
    let second = create(&host, MOCK, mock_config());
    let second_id = second["id"].as_str().unwrap().to_owned();
    assert_eq!(
        ids(&host.get("/api/connectors").1),
        std::slice::from_ref(&second_id)
    );
    let (_, retired) = host.get("/api/connectors?enabled=false");
    assert_eq!(ids(&retired), std::slice::from_ref(&first_id));
    assert_eq!(retired[0]["enabled"], false);
    assert_eq!(retired[0]["config"]["outbox"], json!(true));
    let (status, one) = host.get(&format!("/api/connectors/{first_id}"));
    assert_eq!((status, one["enabled"].clone()), (200, json!(false)));

    let send = |template_type: &str| {
        host.request(
            "POST",
            "/api/messages",
            Some(SEND_KEY),
            Some(&json!({"to": PHONE, "type": template_type, "payload": {"code": "123456"}})),
        )
    };
    let (status, receipt) = send("SignIn");
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["connectorId"], second_id.as_str());
    assert_eq!(receipt["factoryId"], MOCK);
    assert!(receipt["providerMessageId"]
        .as_str()
        .unwrap()
        .starts_with("mock-"));
    assert_eq!(
        host.outbox_lines_of(&second_id).last().unwrap()["content"],
        "Sign-in code 123456"
    );

    // Switch back in one call.
    let (status, enabled) = host.post(&format!("/api/connectors/{first_id}/enable"), &json!({}));
    assert_eq!(
        (status, enabled["enabled"].clone()),
        (200, json!(true)),
        "{enabled}"
    );
    assert_eq!(
        ids(&host.get("/api/connectors").1),
        std::slice::from_ref(&first_id)
    );
    assert_eq!(
        ids(&host.get("/api/connectors?enabled=false").1),
        std::slice::from_ref(&second_id)
    );
    let (_, receipt) = send("Register");
    assert_eq!(receipt["connectorId"], first_id.as_str());
    assert_eq!(
        host.outbox_lines_of(&first_id).last().unwrap()["content"],
        "Generic code 123456",
        "Register falls back to Generic"
    );

    // PATCH replaces the whole config and swaps the live connector.
    let replaced = json!({"templates": [{"usageType": "Generic", "content": "Patched {{code}}"}], "outbox": true});
    let (status, patched) = host.patch(
        &format!("/api/connectors/{first_id}"),
        &json!({"config": replaced}),
    );
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["config"]["templates"].as_array().unwrap().len(), 1);
    send("SignIn");
    assert_eq!(
        host.outbox_lines_of(&first_id).last().unwrap()["content"],
        "Patched 123456"
    );

    // Delete: retired and live alike; then nothing is live.
    assert_eq!(host.delete(&format!("/api/connectors/{second_id}")).0, 204);
    assert_eq!(host.delete(&format!("/api/connectors/{first_id}")).0, 204);
    let (status, error) = send("SignIn");
    assert_eq!(
        (status, error["code"].clone()),
        (501, json!("connector.not_found"))
    );
    let (status, error) = host.get(&format!("/api/connectors/{first_id}"));
    assert_eq!(
        (status, error["code"].clone()),
        (404, json!("entity.not_found"))
    );
}

#[test]
fn secrets_are_masked_and_a_masked_round_trip_keeps_them() {
    let provider = CaptureServer::start(200, r#"{"id": "provider-1"}"#);
    let host =
        HostFolders::new(&[("rb.so", &plugin_file("fixture_request_building_connector"))]).start();
    let config = json!({
        "endpoint": format!("{}/sms", provider.url),
        "authorization": "Bearer very-secret-value",
        "templates": [{"usageType": "Generic", "content": "Code {{code}}"}]
    });
    let created = create(&host, REQUEST_BUILDING, config);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["config"]["authorization"], "******");
    let (_, fetched) = host.get(&format!("/api/connectors/{id}"));
    assert_eq!(fetched["config"]["authorization"], "******");

    // Edit one field, send the rest back as received (mask included).
    let mut edited = fetched["config"].clone();
    edited["templates"] = json!([{"usageType": "Generic", "content": "Edited {{code}}"}]);
    let (status, patched) =
        host.patch(&format!("/api/connectors/{id}"), &json!({"config": edited}));
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["config"]["authorization"], "******");

    let (status, receipt) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "424242"}})),
    );
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["providerMessageId"], "provider-1");
    let requests = provider.requests();
    let last = requests.last().unwrap();
    assert_eq!(
        last.header("authorization"),
        Some("Bearer very-secret-value"),
        "the stored secret was kept"
    );
    assert!(last.request_line.starts_with("POST /sms "));
    let body: Value = serde_json::from_str(&last.body).unwrap();
    assert_eq!(
        body,
        json!({"to": PHONE, "type": "Generic", "text": "Edited 424242"})
    );

    // The placeholder is never saved as a secret.
    let (status, error) = host.post(
        "/api/connectors",
        &json!({"connectorId": REQUEST_BUILDING, "config": {"endpoint": provider.url, "authorization": "******", "templates": []}}),
    );
    assert_eq!(
        (status, error["code"].clone()),
        (400, json!("connector.invalid_config")),
        "{error}"
    );
    assert_eq!(error["data"]["errors"][0]["field"], "authorization");

    // The test route resolves a mask from the saved connector of the factory.
    let (status, body) = host.post(
        &format!("/api/connectors/{REQUEST_BUILDING}/test"),
        &json!({"phone": PHONE, "config": patched["config"]}),
    );
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        provider.requests().last().unwrap().header("authorization"),
        Some("Bearer very-secret-value")
    );

    // A masked secret never travels to a changed destination: not by PATCH, not by /test.
    let elsewhere = CaptureServer::start(200, "{}");
    let mut moved = patched["config"].clone();
    moved["endpoint"] = json!(format!("{}/collect", elsewhere.url));
    let (status, error) = host.patch(&format!("/api/connectors/{id}"), &json!({"config": moved}));
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("connector.invalid_config")),
        "{error}"
    );
    assert_eq!(error["data"]["errors"][0]["field"], "authorization");
    let (status, error) = host.post(
        &format!("/api/connectors/{REQUEST_BUILDING}/test"),
        &json!({"phone": PHONE, "config": moved, "savedConnectorId": id}),
    );
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("connector.invalid_config"))
    );
    let (status, _) = host.post(
        &format!("/api/connectors/{REQUEST_BUILDING}/test"),
        &json!({"phone": PHONE, "config": moved}),
    );
    assert_eq!(status, 400);
    assert!(
        elsewhere.requests().is_empty(),
        "the secret went to a new endpoint"
    );
    // With the secret typed again, the new endpoint is fine.
    moved["authorization"] = json!("Bearer typed-again");
    let (status, body) = host.patch(&format!("/api/connectors/{id}"), &json!({"config": moved}));
    assert_eq!(status, 200, "{body}");

    assert!(
        !host.log().contains("very-secret-value"),
        "a secret reached the log"
    );
}

/// The keys of a JSON object in the order they came (the workspace's serde_json keeps it).
fn key_order(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .map(|map| map.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn a_saved_config_comes_back_in_the_order_it_was_written_masked_secret_included() {
    let host = HostFolders::new(&[("twilio.so", &plugin_file("twilio_sms"))]).start();
    // Neither alphabetical nor the plugin's field order; sent as text so nothing reorders it.
    let body = r#"{"connectorId": "twilio-short-message-service", "config": {
        "templates": [
            {"usageType": "SignIn", "content": "Sign-in code {{code}}"},
            {"locale": "fr", "content": "Code {{code}}", "usageType": "Generic"}
        ],
        "from": "+12015550100",
        "authToken": "a-token-kept-secret",
        "accountSID": "AC0123456789abcdef0123456789abcdef"
    }}"#;
    let (status, created) = host.request_raw(
        "POST",
        "/api/connectors",
        Some(ADMIN_KEY),
        Some(("application/json", body)),
    );
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let written = ["templates", "from", "authToken", "accountSID"];
    let check = |config: &Value, when: &str| {
        let keys = key_order(config);
        // The plugin's defaults (baseUrl, the Messaging Service SID) follow what was written.
        assert_eq!(keys[..written.len()], written, "{when}: {config}");
        assert_eq!(config["authToken"], "******", "{when}");
        assert_eq!(
            key_order(&config["templates"][0]),
            ["usageType", "content"],
            "{when}"
        );
        assert_eq!(
            key_order(&config["templates"][1]),
            ["locale", "content", "usageType"],
            "{when}"
        );
    };
    check(&created["config"], "as created");
    let (_, fetched) = host.get(&format!("/api/connectors/{id}"));
    check(&fetched["config"], "as fetched");

    // Sent back as received (mask included), it stays as written, through a restart too.
    let (status, patched) = host.patch(
        &format!("/api/connectors/{id}"),
        &json!({"config": fetched["config"]}),
    );
    assert_eq!(status, 200, "{patched}");
    check(&patched["config"], "after a masked round trip");
    let host = host.kill().start();
    let (_, fetched) = host.get(&format!("/api/connectors/{id}"));
    check(&fetched["config"], "after a restart");
}

#[test]
fn a_test_resolves_masks_from_the_saved_connector_it_names() {
    let provider = CaptureServer::start(200, r#"{"id": "provider-1"}"#);
    let host = HostFolders::new(&[
        ("rb.so", &plugin_file("fixture_request_building_connector")),
        ("mock.so", &plugin_file("mock_sms")),
    ])
    .start();
    let config_with = |secret: &str| {
        json!({
            "endpoint": format!("{}/sms", provider.url),
            "authorization": secret,
            "templates": [{"usageType": "Generic", "content": "Code {{code}}"}]
        })
    };
    let retired = create(
        &host,
        REQUEST_BUILDING,
        config_with("Bearer retired-secret"),
    );
    let live = create(&host, REQUEST_BUILDING, config_with("Bearer live-secret"));
    let test_path = format!("/api/connectors/{REQUEST_BUILDING}/test");

    // Testing edits on the retired connector's page uses its own secret, not the live one's.
    let (status, body) = host.post(
        &test_path,
        &json!({"phone": PHONE, "config": retired["config"], "savedConnectorId": retired["id"]}),
    );
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        provider.requests().last().unwrap().header("authorization"),
        Some("Bearer retired-secret")
    );
    // Without it, the live connector of the factory stands behind the mask, as before.
    let (status, body) = host.post(
        &test_path,
        &json!({"phone": PHONE, "config": live["config"]}),
    );
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        provider.requests().last().unwrap().header("authorization"),
        Some("Bearer live-secret")
    );

    // A connector of another factory, or none: refused before anything is sent.
    let mock = create(&host, MOCK, mock_config());
    let sent_before = provider.requests().len();
    let (status, error) = host.post(
        &test_path,
        &json!({"phone": PHONE, "config": live["config"], "savedConnectorId": mock["id"]}),
    );
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("guard.invalid_input")),
        "{error}"
    );
    let (status, error) = host.post(
        &test_path,
        &json!({"phone": PHONE, "config": live["config"], "savedConnectorId": "nosuchconnector"}),
    );
    assert_eq!(
        (status, error["code"].as_str()),
        (404, Some("entity.not_found")),
        "{error}"
    );
    assert_eq!(provider.requests().len(), sent_before);
}

#[test]
fn restart_keeps_the_live_and_retired_connectors() {
    let host = mock_host();
    let first = create(&host, MOCK, mock_config());
    let second = create(&host, MOCK, mock_config());
    let folders = host.kill();
    let host = folders.start();
    assert_eq!(
        ids(&host.get("/api/connectors").1),
        [second["id"].as_str().unwrap()]
    );
    assert_eq!(
        ids(&host.get("/api/connectors?enabled=false").1),
        [first["id"].as_str().unwrap()]
    );
    let (status, receipt) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "1"}})),
    );
    assert_eq!(
        (status, receipt["connectorId"].clone()),
        (200, second["id"].clone()),
        "{receipt}"
    );
}

#[test]
fn a_live_connector_whose_plugin_is_gone_is_reported_and_sends_fail_clearly() {
    let provider = CaptureServer::start(200, r#"{"id": "x"}"#);
    let folders =
        HostFolders::new(&[("rb.so", &plugin_file("fixture_request_building_connector"))]);
    let host = folders.start();
    let config = json!({"endpoint": provider.url, "templates": [{"usageType": "Generic", "content": "{{code}}"}]});
    let created = create(&host, REQUEST_BUILDING, config);
    assert_eq!(created["isDemo"], false, "a vendor connector is not a demo");
    let folders = host.kill();
    std::fs::remove_file(folders.plugins_dir.join("rb.so")).unwrap();
    let host = folders.start();
    let (status, connector) = host.get(&format!(
        "/api/connectors/{}",
        created["id"].as_str().unwrap()
    ));
    assert_eq!(status, 200);
    assert_eq!(connector["enabled"], true);
    assert_eq!(connector["loaded"], false);
    assert!(
        connector["loadError"]
            .as_str()
            .unwrap()
            .contains(REQUEST_BUILDING),
        "{connector}"
    );
    let (status, error) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "1"}})),
    );
    assert_eq!(
        (status, error["code"].clone()),
        (501, json!("connector.not_found"))
    );
    assert!(
        error["message"].as_str().unwrap().contains("cannot send"),
        "{error}"
    );
}

#[test]
fn kill_9_during_a_burst_of_changes_leaves_one_live_connector_and_loses_nothing_saved() {
    let host = flooding_mock_host();
    let seed = create(&host, MOCK, mock_config());
    let saved = Arc::new(std::sync::Mutex::new(vec![seed["id"]
        .as_str()
        .unwrap()
        .to_owned()]));
    let base_url = host.base_url.clone();
    let pid = host.pid();
    let agent = || -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(5)))
            .build()
            .into()
    };
    // Concurrent clients, so the store's writer puts changes in batches with other work:
    // three change connectors (the host serializes changes), two issue codes meanwhile.
    let changers: Vec<_> = (0..3)
        .map(|_| {
            let (saved, base_url, agent) = (Arc::clone(&saved), base_url.clone(), agent());
            std::thread::spawn(move || {
                for round in 0..150 {
                    let result = if round % 3 == 2 {
                        let id = saved.lock().unwrap()[round % 2].clone();
                        agent
                            .post(format!("{base_url}/api/connectors/{id}/enable"))
                            .header("Authorization", format!("Bearer {ADMIN_KEY}"))
                            .send_json(json!({}))
                    } else {
                        agent
                            .post(format!("{base_url}/api/connectors"))
                            .header("Authorization", format!("Bearer {ADMIN_KEY}"))
                            .send_json(json!({"connectorId": MOCK, "config": {"templates": [{"usageType": "Generic", "content": "{{code}}"}], "outbox": false}}))
                    };
                    let Ok(mut response) = result else { return };
                    if response.status() == 200 && round % 3 != 2 {
                        let created: Value = response.body_mut().read_json().unwrap();
                        saved
                            .lock()
                            .unwrap()
                            .push(created["id"].as_str().unwrap().to_owned());
                    }
                }
            })
        })
        .collect();
    let issuers: Vec<_> = (0..2)
        .map(|issuer| {
            let (base_url, agent) = (base_url.clone(), agent());
            std::thread::spawn(move || {
                for index in 0..2000 {
                    let phone = format!("+1201555{:04}", issuer * 2000 + index);
                    let issued = agent
                        .post(format!("{base_url}/api/verification-codes"))
                        .header("Authorization", format!("Bearer {ADMIN_KEY}"))
                        .send_json(json!({"phone": phone}));
                    let Ok(response) = issued else { return };
                    assert_eq!(response.status(), 204, "{phone}");
                }
            })
        })
        .collect();
    // Let the burst get going, then kill without warning.
    while saved.lock().unwrap().len() < 15 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    for client in changers.into_iter().chain(issuers) {
        client.join().unwrap();
    }
    let folders = host.kill();
    let host = folders.start();
    let (_, live) = host.get("/api/connectors");
    assert_eq!(
        live.as_array().unwrap().len(),
        1,
        "exactly one live connector: {live}"
    );
    let (_, retired) = host.get("/api/connectors?enabled=false");
    let mut all = ids(&live);
    all.extend(ids(&retired));
    for id in saved.lock().unwrap().iter() {
        assert!(all.contains(id), "connector {id} answered 200 but was lost");
    }
}

#[test]
fn swaps_never_fail_a_send_and_each_send_goes_through_exactly_one_connector() {
    let host = Arc::new(flooding_mock_host());
    let a = create(&host, MOCK, mock_config())["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = create(&host, MOCK, mock_config())["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..4)
        .map(|sender| {
            let (host, stop, sent) = (Arc::clone(&host), Arc::clone(&stop), Arc::clone(&sent));
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let mut index = 0;
                while !stop.load(Ordering::Relaxed) && index < 2000 {
                    let marker = format!("{sender}-{index}");
                    let body = json!({"to": PHONE, "payload": {"code": "1", "marker": marker}});
                    let (status, response) =
                        host.request("POST", "/api/messages", Some(SEND_KEY), Some(&body));
                    if status == 200 {
                        sent.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures.push(format!("{status} {response}"));
                    }
                    index += 1;
                }
                failures
            })
        })
        .collect();
    let mut swaps = 0;
    while swaps < 60 {
        let target = if swaps % 2 == 0 { &a } else { &b };
        let (status, body) = if swaps % 3 == 0 {
            host.patch(
                &format!("/api/connectors/{target}"),
                &json!({"config": mock_config()}),
            )
        } else {
            host.post(&format!("/api/connectors/{target}/enable"), &json!({}))
        };
        assert_eq!(status, 200, "{body}");
        swaps += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = senders
        .into_iter()
        .flat_map(|sender| sender.join().unwrap())
        .collect();
    assert!(
        failures.is_empty(),
        "failed sends during swaps: {failures:?}"
    );

    let lines = host.outbox_lines();
    assert!(
        lines
            .iter()
            .all(|line| line["connectorId"] == a.as_str() || line["connectorId"] == b.as_str()),
        "every line names one of the two connectors"
    );
    let mut markers: Vec<String> = lines
        .iter()
        .map(|line| line["payload"]["marker"].as_str().unwrap().to_owned())
        .collect();
    let total = markers.len();
    markers.sort();
    markers.dedup();
    assert_eq!(
        total,
        sent.load(Ordering::Relaxed),
        "every successful send is in the outbox exactly once"
    );
    assert_eq!(markers.len(), total, "no send went through both connectors");
    assert!(total > 0);
}

#[test]
fn an_admin_key_is_generated_once_when_none_is_configured() {
    if e2e_tests::store_kind() == e2e_tests::StoreKind::Postgres {
        // Hosts of one database need an explicit key (tested in several_hosts.rs).
        return;
    }
    let folders = HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))]);
    let host = folders.start_with_args(&[]);
    let key_path = host.data_dir.join("admin-key");
    let key = std::fs::read_to_string(&key_path)
        .unwrap()
        .trim()
        .to_owned();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        host.log_eventually(|log| log.contains(&key))
            .matches(&key)
            .count(),
        1,
        "printed once"
    );
    assert_eq!(
        host.request("GET", "/api/connectors", Some(&key), None).0,
        200
    );
    assert_eq!(
        host.request("GET", "/api/connectors", Some(ADMIN_KEY), None)
            .0,
        401
    );
    let host = host.kill().start_with_args(&[]);
    assert_eq!(host.log().matches(&key).count(), 1, "not printed again");
    assert_eq!(
        host.request("GET", "/api/connectors", Some(&key), None).0,
        200
    );
}

#[test]
fn the_openapi_document_describes_every_route() {
    let host = mock_host();
    let (status, document) = host.get("/api/openapi.json");
    assert_eq!(status, 200);
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().unwrap();
    let described: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    for (method, path) in [
        ("get", "/health"),
        ("get", "/ready"),
        ("get", "/api/connector-factories"),
        ("get", "/api/connector-factories/{id}"),
        ("get", "/api/connector-factories/{id}/readme.html"),
        ("get", "/api/connectors"),
        ("post", "/api/connectors"),
        ("get", "/api/connectors/{id}"),
        ("patch", "/api/connectors/{id}"),
        ("delete", "/api/connectors/{id}"),
        ("post", "/api/connectors/{id}/enable"),
        ("post", "/api/connectors/{id}/fallback"),
        ("delete", "/api/connectors/{id}/fallback"),
        ("post", "/api/connectors/{id}/test"),
        ("post", "/api/messages"),
        ("post", "/api/verification-codes"),
        ("post", "/api/verification-codes/verify"),
        ("get", "/metrics"),
        ("get", "/api/plugins"),
        ("get", "/api/openapi.json"),
    ] {
        assert!(
            described.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} is not described"
        );
    }
    assert_eq!(
        document["paths"]["/api/connectors"]["get"]["parameters"][0]["in"],
        "query"
    );
    assert!(document["components"]["schemas"]["ErrorBody"]["properties"]["code"].is_object());
    let responses = |path: &str, method: &str| {
        document["paths"][path][method]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    let send = responses("/api/messages", "post");
    assert!(
        send.contains(&"413".to_owned()) && send.contains(&"503".to_owned()),
        "{send:?}"
    );
    let test = responses("/api/connectors/{id}/test", "post");
    for status in ["413", "429", "501", "503"] {
        assert!(
            test.contains(&status.to_owned()),
            "/test lacks {status}: {test:?}"
        );
    }
    assert!(document["components"]["securitySchemes"]["admin_key"].is_object());

    // The document says what the host parses (scripts/api-contract-test holds the host to
    // it): usage types, phones, codes, what is required, nullable or non-empty.
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["UsageType"]["enum"],
        json!([
            "Register",
            "SignIn",
            "ForgotPassword",
            "Generic",
            "OrganizationInvitation",
            "UserPermissionValidation",
            "BindNewIdentifier",
            "MfaVerification",
            "BindMfa"
        ])
    );
    assert_eq!(
        schemas["SendMessageBody"]["properties"]["type"]["$ref"],
        "#/components/schemas/UsageType"
    );
    assert_eq!(
        schemas["SendMessageBody"]["properties"]["payload"]["type"], "object",
        "payload is not nullable"
    );
    assert_eq!(
        schemas["PhoneNumber"]["pattern"], r"^\+?[1-9][0-9]{5,14}$",
        "strict by default"
    );
    assert_eq!(
        schemas["VerifyCodeBody"]["properties"]["verificationCode"]["pattern"],
        "^[0-9]{6}$"
    );
    assert_eq!(
        schemas["CreateConnectorBody"]["required"],
        json!(["connectorId"])
    );
    assert_eq!(
        schemas["CreateConnectorBody"]["properties"]["connectorId"]["minLength"],
        1
    );
    for body in [
        "CreateConnectorBody",
        "UpdateConnectorBody",
        "TestConnectorBody",
        "SendMessageBody",
        "IssueCodeBody",
        "VerifyCodeBody",
        "ConnectorResponse",
        "FactoryResponse",
        "SendMessageResponse",
    ] {
        assert!(
            schemas[body]["example"].is_object(),
            "{body} has no example"
        );
    }
    // Each error response lists its codes, from the host's own error type.
    let create = &document["paths"]["/api/connectors"]["post"]["responses"];
    assert_eq!(
        create["422"]["content"]["application/json"]["schema"]["allOf"][1]["properties"]["code"]
            ["enum"],
        json!(["connector.not_found_with_connector_id"])
    );
    // Links: from the id a create returns, and from the factories list.
    for (link, operation) in [
        ("GetConnector", "get_connector"),
        ("UpdateConnector", "update_connector"),
        ("DeleteConnector", "delete_connector"),
        ("EnableConnector", "enable_connector"),
    ] {
        assert_eq!(create["200"]["links"][link]["operationId"], operation);
        assert_eq!(
            create["200"]["links"][link]["parameters"]["id"],
            "$response.body#/id"
        );
    }
    let factories = &document["paths"]["/api/connector-factories"]["get"]["responses"]["200"];
    assert_eq!(
        factories["links"]["TestConnectorConfig"]["operationId"],
        "test_connector_config"
    );
}

#[test]
fn key_files_are_tightened_at_start_and_keys_stay_out_of_the_command_line() {
    use std::os::unix::fs::PermissionsExt;
    let mode_of = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let chmod = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    const ADMIN_FROM_FILE: &str = "second-admin-key-from-a-file-0123456789";
    const SEND_FROM_FILE: &str = "send-key-from-a-file-0123456789";
    let folders = HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))]);
    let key_folder = folders.scratch_path("etc");
    std::fs::create_dir(&key_folder).unwrap();
    let admin_key_file = key_folder.join("admin-keys");
    std::fs::write(
        &admin_key_file,
        format!("first-admin-key-from-a-file-0123456789\n{ADMIN_FROM_FILE}\n"),
    )
    .unwrap();
    let send_key_file = key_folder.join("send-keys");
    std::fs::write(&send_key_file, format!("{SEND_FROM_FILE},\n")).unwrap();
    chmod(&admin_key_file, 0o644);
    chmod(&send_key_file, 0o644);
    let args = [
        "--admin-key-file",
        admin_key_file.to_str().unwrap(),
        "--send-key-file",
        send_key_file.to_str().unwrap(),
    ];
    let host = folders.start_with_args(&args);
    assert_eq!(mode_of(&admin_key_file), 0o600);
    assert_eq!(mode_of(&send_key_file), 0o600);
    let (status, body) = host.request("GET", "/api/connectors", Some(ADMIN_FROM_FILE), None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_FROM_FILE),
        Some(&json!({"to": "+12015550123"})),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (501, Some("connector.not_found")),
        "{body}"
    );
    let (status, _) = host.request("GET", "/api/connectors", Some(SEND_FROM_FILE), None);
    assert_eq!(status, 403, "a send key is no admin key");
    let command_line = std::fs::read(format!("/proc/{}/cmdline", host.pid())).unwrap();
    let command_line = String::from_utf8_lossy(&command_line);
    assert!(command_line.contains("--admin-key-file"), "{command_line}");
    for key in [ADMIN_FROM_FILE, SEND_FROM_FILE, "first-admin-key"] {
        assert!(!command_line.contains(key), "{key} in {command_line}");
    }

    // Loosened while the host was stopped: the data directory and its key files are made
    // private again at the next start.
    let folders = host.kill();
    let data_dir = folders.data_dir.clone();
    chmod(&data_dir, 0o755);
    let data_key_files: Vec<_> = ["code-hash-key", "secrets-key", "admin-key"]
        .iter()
        .map(|name| data_dir.join(name))
        .filter(|path| path.exists())
        .collect();
    for path in &data_key_files {
        chmod(path, 0o644);
    }
    chmod(&admin_key_file, 0o640);
    let _host = folders.start_with_args(&args);
    assert_eq!(mode_of(&data_dir), 0o700);
    for path in &data_key_files {
        assert_eq!(mode_of(path), 0o600, "{}", path.display());
    }
    assert_eq!(mode_of(&admin_key_file), 0o600);
    // The host keeps its folders (the key folder among them) until the end.

    // Refused, with one line: a key file others can write, one owned by another user.
    let scratch = tempfile::tempdir().unwrap();
    let refusal = |args: &[&str]| {
        let output = std::process::Command::new(e2e_tests::host_binary())
            .arg("serve")
            .arg("--data")
            .arg(scratch.path().join("data"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success());
        // One line says why (log lines may be flushed after it).
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let refusals: Vec<&str> = stderr
            .lines()
            .filter(|line| line.starts_with("connector-host: "))
            .collect();
        assert_eq!(refusals.len(), 1, "{stderr}");
        refusals[0].to_owned()
    };
    chmod(&admin_key_file, 0o666);
    let refused = refusal(&["--admin-key-file", admin_key_file.to_str().unwrap()]);
    assert!(
        refused.contains("writable by group or others") && refused.contains("chmod 600"),
        "{refused}"
    );
    assert_eq!(
        mode_of(&admin_key_file),
        0o666,
        "a refused file is left alone"
    );
    let code_hash_key_file = key_folder.join("code-hash-key");
    std::fs::write(&code_hash_key_file, "k".repeat(64)).unwrap();
    chmod(&code_hash_key_file, 0o644);
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&code_hash_key_file, Some(4321), Some(4321)).unwrap();
        let refused = refusal(&[
            "--admin-key",
            ADMIN_KEY,
            "--code-hash-key-file",
            code_hash_key_file.to_str().unwrap(),
        ]);
        assert!(refused.contains("not by the host's user"), "{refused}");
        assert_eq!(mode_of(&code_hash_key_file), 0o644, "not ours to tighten");
    }
}

#[test]
fn the_data_directory_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode_of = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let host = mock_host();
    create(&host, MOCK, mock_config());
    let (status, body) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "1"}})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(mode_of(&host.data_dir), 0o700);
    // The outbox holds codes in clear.
    assert_eq!(mode_of(&host.folders().outbox_path()), 0o600);
    if e2e_tests::store_kind() == e2e_tests::StoreKind::Sqlite {
        for file in [
            "connectors.sqlite3",
            "connectors.sqlite3-wal",
            "connectors.sqlite3-shm",
        ] {
            assert_eq!(mode_of(&host.data_dir.join(file)), 0o600, "{file}");
        }
        assert_eq!(mode_of(&host.data_dir.join("code-hash-key")), 0o600);
    }

    // A data directory others can write is refused, with one line saying how to fix it.
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = std::process::Command::new(e2e_tests::host_binary())
        .arg("serve")
        .arg("--data")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--admin-key", ADMIN_KEY])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("writable by group or others") && stderr.contains("chmod 700"),
        "{stderr}"
    );
}

fn contains_text(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// `connector-host rotate-secrets-key` on a host's folders: (succeeded, stdout, stderr).
fn rotate_secrets_key(folders: &HostFolders) -> (bool, String, String) {
    let mut command = std::process::Command::new(e2e_tests::host_binary());
    command
        .arg("rotate-secrets-key")
        .arg("--data")
        .arg(&folders.data_dir);
    if let Some(database) = &folders.database {
        command
            .args(["--database-url", &database.url])
            .arg("--secrets-key-file")
            .arg(&database.secrets_key_file);
    }
    let output = command.output().expect("run rotate-secrets-key");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn send_and_capture_authorization(host: &TestHost, provider: &CaptureServer) -> String {
    let (status, receipt) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "424242"}})),
    );
    assert_eq!(status, 200, "{receipt}");
    let requests = provider.requests();
    let last = requests.last().expect("the provider got the send");
    last.header("authorization").unwrap_or_default().to_owned()
}

#[test]
fn provider_secrets_are_sealed_at_rest_and_a_key_rotation_keeps_every_connector() {
    use std::os::unix::fs::PermissionsExt;
    let provider = CaptureServer::start(200, r#"{"id": "provider-1"}"#);
    let host =
        HostFolders::new(&[("rb.so", &plugin_file("fixture_request_building_connector"))]).start();
    let config_with = |secret: &str| {
        json!({
            "endpoint": format!("{}/sms", provider.url),
            "authorization": format!("Bearer {secret}"),
            "templates": [{"usageType": "Generic", "content": "Code {{code}}"}]
        })
    };
    let first = create(&host, REQUEST_BUILDING, config_with("sealed-secret-4711"));
    let second = create(&host, REQUEST_BUILDING, config_with("sealed-secret-4712"));
    let first_id = first["id"].as_str().unwrap().to_owned();
    let second_id = second["id"].as_str().unwrap().to_owned();
    let assert_sealed = |folders: &HostFolders| {
        let stored = folders.stored_bytes();
        assert!(!stored.is_empty());
        for secret in ["sealed-secret-4711", "sealed-secret-4712"] {
            assert!(
                !contains_text(&stored, secret),
                "{secret} is stored in clear"
            );
        }
        assert!(contains_text(&stored, "sealed2:"));
    };
    assert_sealed(host.folders());
    assert_eq!(
        send_and_capture_authorization(&host, &provider),
        "Bearer sealed-secret-4712"
    );

    let key_file = match &host.folders().database {
        Some(database) => database.secrets_key_file.clone(),
        None => host.data_dir.join("secrets-key"),
    };
    let key_before = std::fs::read_to_string(&key_file).unwrap();
    let folders = match e2e_tests::store_kind() {
        e2e_tests::StoreKind::Sqlite => {
            // Not under a running host: it holds the old key.
            let (succeeded, _, stderr) = rotate_secrets_key(host.folders());
            assert!(!succeeded);
            assert!(stderr.contains("stop it first"), "{stderr}");
            assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key_before);
            let folders = host.kill();
            // Loosened meanwhile: the rotation makes it private again before reading it.
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let (succeeded, stdout, stderr) = rotate_secrets_key(&folders);
            assert!(succeeded, "{stderr}");
            assert!(
                stdout.contains("resealed 2 saved connector configs"),
                "{stdout}"
            );
            assert_eq!(
                std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
                0o600
            );
            folders
        }
        e2e_tests::StoreKind::Postgres => {
            // Hosts of a database keep running; one left with the old key file keeps sending
            // the unchanged config but fails closed on a change (it cannot open the resealed
            // configs) until it restarts with the new file.
            let (succeeded, stdout, stderr) = rotate_secrets_key(host.folders());
            assert!(succeeded, "{stderr}");
            assert!(stdout.contains("restart them"), "{stdout}");
            assert_eq!(
                send_and_capture_authorization(&host, &provider),
                "Bearer sealed-secret-4712"
            );
            let (status, refused) =
                host.post(&format!("/api/connectors/{first_id}/enable"), &json!({}));
            assert_eq!(
                (status, refused["code"].clone()),
                (503, json!("connector.unavailable")),
                "{refused}"
            );
            assert!(
                refused["message"]
                    .as_str()
                    .is_some_and(|message| message.contains("does not hold")),
                "{refused}"
            );
            host.kill()
        }
    };
    let key_after = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(key_after, key_before);
    assert_eq!(
        key_after
            .lines()
            .filter(|line| !line.starts_with('#'))
            .count(),
        1,
        "only the new key is kept"
    );
    assert_sealed(&folders);

    let host = folders.start();
    assert_eq!(
        send_and_capture_authorization(&host, &provider),
        "Bearer sealed-secret-4712"
    );
    let (status, enabled) = host.post(&format!("/api/connectors/{first_id}/enable"), &json!({}));
    assert_eq!(status, 200, "{enabled}");
    assert_eq!(
        send_and_capture_authorization(&host, &provider),
        "Bearer sealed-secret-4711"
    );
    let (status, _) = host.get(&format!("/api/connectors/{second_id}"));
    assert_eq!(status, 200);

    // A host started with a key file that is not the store's refuses to start, in one line.
    let folders = host.kill();
    let stranger_key = format!("{}\n", "ab".repeat(32));
    std::fs::write(&key_file, stranger_key).unwrap();
    let stderr = folders.refused_start();
    assert!(
        stderr.contains("which the secrets key file does not hold"),
        "{stderr}"
    );
}

/// Issues a code to `phone` through `host`; the code, read from the host's outbox.
fn issue_code(host: &TestHost, phone: &str) -> String {
    let (status, body) = host.request(
        "POST",
        "/api/verification-codes",
        Some(SEND_KEY),
        Some(&json!({"phone": phone})),
    );
    assert_eq!(status, 204, "{body}");
    host.outbox_lines().pop().unwrap()["payload"]["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn verify_code(host: &TestHost, phone: &str, code: &str) -> (u16, Value) {
    host.request(
        "POST",
        "/api/verification-codes/verify",
        Some(SEND_KEY),
        Some(&json!({"phone": phone, "verificationCode": code})),
    )
}

/// `connector-host rotate-code-hash-key` on a host's folders: its stdout (it must succeed).
fn rotate_code_hash_key(folders: &HostFolders) -> String {
    let mut command = std::process::Command::new(e2e_tests::host_binary());
    command
        .arg("rotate-code-hash-key")
        .arg("--data")
        .arg(&folders.data_dir);
    if let Some(database) = &folders.database {
        command
            .args(["--database-url", &database.url])
            .arg("--code-hash-key-file")
            .arg(&database.code_hash_key_file);
    }
    let output = command.output().expect("run rotate-code-hash-key");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn another_code_hash_key_is_refused_at_start_and_a_rotation_never_refuses_a_code() {
    let host = mock_host();
    create(&host, MOCK, mock_config());
    let before_rotation = issue_code(&host, "+12015550161");
    let key_file = match &host.folders().database {
        Some(database) => database.code_hash_key_file.clone(),
        None => host.data_dir.join("code-hash-key"),
    };
    let folders = host.kill();
    let key = std::fs::read(&key_file).unwrap();

    // Another key in the key file: the host refuses to start, in one line naming the key the
    // store's codes are hashed under.
    std::fs::write(&key_file, format!("{}\n", "cd".repeat(32))).unwrap();
    let stderr = folders.refused_start();
    let refusal: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("code-hash key"))
        .collect();
    assert_eq!(refusal.len(), 1, "{stderr}");
    assert!(
        refusal[0].contains("this database's codes are hashed under code-hash key")
            && refusal[0].contains("same code-hash key file"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&"cd".repeat(32)),
        "the key is never printed"
    );
    std::fs::write(&key_file, &key).unwrap();

    // The rotation, step by step, with the host restarted after each: no code is refused.
    // A key file loosened meanwhile is made private again before it is read.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(rotate_code_hash_key(&folders).contains("step 1 of 3"));
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let host = folders.start();
    let staged = issue_code(&host, "+12015550162");
    let folders = host.kill();
    assert!(rotate_code_hash_key(&folders).contains("step 2 of 3"));
    let host = folders.start();
    assert_eq!(verify_code(&host, "+12015550161", &before_rotation).0, 204);
    assert_eq!(verify_code(&host, "+12015550162", &staged).0, 204);
    let promoted = issue_code(&host, "+12015550163");
    let folders = host.kill();
    assert!(rotate_code_hash_key(&folders).contains("step 3 of 3"));
    let keys_left = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(
        keys_left
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .count(),
        1,
        "{keys_left}"
    );
    assert!(!keys_left.contains(String::from_utf8_lossy(&key).trim()));
    let host = folders.start();
    assert_eq!(verify_code(&host, "+12015550163", &promoted).0, 204);
    // The old key is gone: the file it was in no longer starts a host.
    let folders = host.kill();
    std::fs::write(&key_file, &key).unwrap();
    assert!(folders.refused_start().contains("code-hash key"));
    drop(folders);
}

#[test]
fn a_config_written_in_clear_into_the_live_row_is_refused_and_nothing_is_sent_through_it() {
    let host = mock_host();
    let live = create(&host, MOCK, mock_config());
    let live_id = live["id"].as_str().unwrap().to_owned();
    let (status, _) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "111111"}})),
    );
    assert_eq!(status, 200);
    let folders = host.kill();

    // A database writer without the keys rewrites the live connector with a config in clear
    // (here its template; with a real provider, the endpoint that receives the codes).
    let sent_before = folders.outbox_lines().len();
    let planted = json!({
        "templates": [{"usageType": "Generic", "content": "PLANTED {{code}}"}],
        "outbox": true
    })
    .to_string()
    .replace('\'', "''");
    assert_eq!(
        folders.execute_sql(&format!(
            "UPDATE connectors SET config = '{planted}' WHERE id = '{live_id}'"
        )),
        1
    );
    let host = folders.start();
    let refusals: Vec<String> = host
        .log_eventually(|log| log.contains("config is not sealed"))
        .lines()
        .filter(|line| line.contains("config is not sealed"))
        .map(str::to_owned)
        .collect();
    assert!(
        refusals.iter().any(|line| line.contains(&live_id)
            && line.contains("written to the database by something other than a host")),
        "{refusals:?}"
    );
    // Not ready, and sends through it are refused: nothing goes out with the planted config.
    let (status, ready) = host.request("GET", "/ready", None, None);
    assert_eq!(
        (status, ready["failed"].as_str()),
        (503, Some("liveConfigUnreadable")),
        "{ready}"
    );
    let (status, health) = host.request("GET", "/health", None, None);
    assert_eq!(
        (status, health["ready"].clone()),
        (200, json!(false)),
        "{health}"
    );
    assert_eq!(health["live"]["configReadable"], json!(false), "{health}");
    assert!(
        health["live"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("is not sealed") && reason.contains(&live_id)),
        "{health}"
    );
    for _ in 0..3 {
        let (status, refused) = host.request(
            "POST",
            "/api/messages",
            Some(SEND_KEY),
            Some(&json!({"to": PHONE, "payload": {"code": "222222"}})),
        );
        assert_eq!(
            (status, refused["code"].as_str()),
            (503, Some("connector.unavailable")),
            "{refused}"
        );
        let (status, refused) = host.request(
            "POST",
            "/api/verification-codes",
            Some(SEND_KEY),
            Some(&json!({"phone": PHONE})),
        );
        assert_eq!(
            (status, refused["code"].as_str()),
            (503, Some("connector.unavailable"))
        );
    }
    let sent_planted = |host: &TestHost| {
        // The outbox holds only what was sent before the planting.
        let lines = host.outbox_lines();
        assert_eq!(lines.len(), sent_before, "a message went out: {lines:?}");
    };
    sent_planted(&host);
    // Nothing sealed the planted config: a restart refuses it again.
    let host = host.kill().start();
    let (status, ready) = host.request("GET", "/ready", None, None);
    assert_eq!(status, 503, "{ready}");
    let (status, refused) = host.request(
        "POST",
        "/api/messages",
        Some(SEND_KEY),
        Some(&json!({"to": PHONE, "payload": {"code": "333333"}})),
    );
    assert_eq!(status, 503, "{refused}");
    sent_planted(&host);
    // Listing names it; deleting it (which never reads the config) recovers the host.
    let (status, listed) = host.get("/api/connectors");
    assert_eq!(
        (status, listed["code"].as_str()),
        (503, Some("connector.unavailable")),
        "{listed}"
    );
    assert!(listed["message"].as_str().unwrap().contains(&live_id));
    let (status, _) = host.request(
        "DELETE",
        &format!("/api/connectors/{live_id}"),
        Some(ADMIN_KEY),
        None,
    );
    assert_eq!(status, 204);
    assert_eq!(host.get("/api/connectors").0, 200);
    assert_eq!(host.request("GET", "/ready", None, None).0, 200);
    sent_planted(&host);
}

/// Issue 22, finding 1: the mock's `outbox` was a path from the config, so `/test` (and a
/// saved connector) let the admin key append admin-chosen text to any file the host could
/// write, a shell start-up file say. Plugins do no file I/O now: the mock's messages go to the
/// host's own outbox (`<data>/mock-sms-outbox.jsonl`), a legacy path is ignored (normalized to
/// `true`), and the mock is marked as a development connector.
#[test]
fn the_mock_writes_only_to_the_hosts_outbox_never_to_a_path_from_the_api() {
    let host = mock_host();
    let planted = host.folders().scratch_path("bashrc");
    let legacy = |outbox: Value| json!({"templates": [{"usageType": "Generic", "content": "echo $(id) {{code}}"}], "outbox": outbox});
    let send = || {
        host.request(
            "POST",
            "/api/messages",
            Some(SEND_KEY),
            Some(&json!({"to": PHONE, "payload": {"code": "123456"}})),
        )
    };

    // The test route, nothing saved: the message lands in the host's outbox, not at the path.
    let (status, body) = host.post(
        &format!("/api/connectors/{MOCK}/test"),
        &json!({"phone": PHONE, "config": legacy(json!(planted))}),
    );
    assert_eq!(status, 204, "{body}");
    assert!(!planted.exists(), "the test wrote to a path from the API");
    let lines = host.outbox_lines();
    assert_eq!(lines.len(), 1);
    assert!(lines[0]["content"]
        .as_str()
        .unwrap()
        .starts_with("echo $(id) "));

    // Saved with a legacy path: validated, normalized to the switch, sent to the host's outbox.
    let created = create(&host, MOCK, legacy(json!(planted)));
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["config"]["outbox"], json!(true), "{created}");
    assert_eq!(created["isDemo"], true);
    assert_eq!(send().0, 200);
    assert!(!planted.exists());
    assert_eq!(host.outbox_lines_of(&id).len(), 1);
    assert_eq!(host.outbox_lines_of(&id)[0]["factoryId"], MOCK);

    // PATCH with a path: the same; with null (Logto's "discard"): off, nothing written.
    let (status, patched) = host.patch(
        &format!("/api/connectors/{id}"),
        &json!({"config": legacy(json!(planted))}),
    );
    assert_eq!(
        (status, patched["config"]["outbox"].clone()),
        (200, json!(true))
    );
    assert_eq!(send().0, 200);
    assert_eq!(host.outbox_lines_of(&id).len(), 2);
    let (status, patched) = host.patch(
        &format!("/api/connectors/{id}"),
        &json!({"config": legacy(Value::Null)}),
    );
    assert_eq!(
        (status, patched["config"]["outbox"].clone()),
        (200, json!(false))
    );
    assert_eq!(send().0, 200);
    assert_eq!(host.outbox_lines_of(&id).len(), 2, "outbox off discards");
    assert!(!planted.exists());

    // Marked as a development connector, in the API and in the log.
    let (_, factory) = host.get(&format!("/api/connector-factories/{MOCK}"));
    assert_eq!(factory["isDemo"], true);
    let (_, listed) = host.get("/api/connectors");
    assert_eq!(listed[0]["isDemo"], true);
    let warning = format!(
        "development connector {id} ({MOCK}) is live: messages go to {}, nothing is sent",
        host.folders().outbox_path().display()
    );
    let log = host.log_eventually(|log| log.contains(&warning));
    assert!(log.contains(&warning), "{log}");
    // Once per change that makes it live, and at start-up.
    let warnings = log.matches(&warning).count();
    let host = host.kill().start();
    let log = host.log_eventually(|log| log.matches(&warning).count() > warnings);
    assert_eq!(log.matches(&warning).count(), warnings + 1, "{log}");
    assert_eq!(
        host.outbox_lines_of(&id).len(),
        2,
        "the outbox outlives the process"
    );

    // The form has a switch, no text field a path could go into.
    let items = factory["formItems"].as_array().unwrap();
    let outbox = items.iter().find(|item| item["key"] == "outbox").unwrap();
    assert_eq!(outbox["type"], "Switch");
    assert!(items.iter().all(|item| item["type"] != "Text"), "{items:?}");
}

/// `--access-log`: one line per request with the route template, the status, the latency,
/// the key's id and the client, never the key or a body; a burst of 401s is a few lines, not
/// one per request; a connector change names the key that made it.
#[test]
fn the_access_log_and_change_lines_name_the_key_id_never_the_key() {
    let host = HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))]).start_with_args(&[
        "--admin-key",
        ADMIN_KEY,
        "--send-key",
        SEND_KEY,
        "--access-log",
    ]);
    let id = create(&host, MOCK, mock_config())["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(host.delete(&format!("/api/connectors/{id}")).0, 204);
    let refusals = 20;
    for _ in 0..refusals {
        let (status, _) = host.request("GET", "/api/connectors", Some("not-a-key"), None);
        assert_eq!(status, 401);
    }
    // What an operator computes: `printf %s "$KEY" | sha256sum | cut -c1-8`.
    let digest = std::process::Command::new("sh")
        .args(["-c", "printf %s \"$KEY\" | sha256sum | cut -c1-8"])
        .env("KEY", ADMIN_KEY)
        .output()
        .expect("sha256sum");
    let key_id = format!("admin:{}", String::from_utf8_lossy(&digest.stdout).trim());
    assert_eq!(key_id.len(), "admin:".len() + 8, "{key_id}");
    let log = host.log_eventually(|log| {
        log.contains("connector deleted") && log.matches("status=401").count() > refusals
    });
    let line_with = |parts: &[&str]| {
        log.lines()
            .find(|line| parts.iter().all(|part| line.contains(part)))
            .unwrap_or_else(|| panic!("no line with {parts:?} in\n{log}"))
            .to_owned()
    };
    let created = line_with(&[
        "access_log",
        "method=POST",
        "route=/api/connectors ",
        "status=200",
    ]);
    assert!(created.contains(&format!("key_id={key_id}")), "{created}");
    assert!(created.contains("client=127.0.0.1:"), "{created}");
    assert!(created.contains("latency_ms="), "{created}");
    let deleted = line_with(&["access_log", "method=DELETE", "status=204"]);
    assert!(deleted.contains("route=/api/connectors/{id}"), "{deleted}");
    assert!(!deleted.contains(&id), "the raw path: {deleted}");
    line_with(&["connector created", &id, &format!("key_id={key_id}")]);
    line_with(&["connector deleted", &id, &format!("key_id={key_id}")]);
    // Every refused request is in the access log; the refusal itself is logged once and
    // then collapsed.
    line_with(&["access_log", "status=401", "key_id=-"]);
    let refused_lines = log
        .lines()
        .filter(|line| line.contains("request refused") && line.contains("auth.unauthorized"))
        .count();
    assert!(
        (1..refusals).contains(&refused_lines),
        "{refused_lines} lines for {refusals} refusals:\n{log}"
    );
    assert!(!log.contains(ADMIN_KEY), "the admin key is in the log");
    assert!(!log.contains("not-a-key"), "a presented key is in the log");
}
