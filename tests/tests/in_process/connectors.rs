//! The connector routes' refusals, and where they answer as Logto's do or, documented,
//! otherwise (docs/logto-compatibility.md).

use e2e_tests::plugin_file;
use serde_json::{json, Value};

use crate::in_process_host::{code_of, InProcessHost};
use crate::{mock_config, mock_host, mock_plugin, MOCK, PHONE};

#[test]
fn unknown_factories_invalid_configs_and_missing_connectors_are_refused() {
    let host = mock_host();
    assert_eq!(
        code_of(host.post(
            "/api/connectors",
            &json!({"connectorId": "nope", "config": {}})
        )),
        (422, "connector.not_found_with_connector_id".into())
    );
    let (status, invalid) = host.post("/api/connectors", &json!({"connectorId": MOCK, "config": {"templates": [{"usageType": "Login", "content": "x"}]}}));
    assert_eq!(
        (status, invalid["code"].clone()),
        (400, json!("connector.invalid_config")),
        "{invalid}"
    );
    assert_eq!(
        invalid["data"]["errors"][0]["field"],
        "templates[0].usageType"
    );
    // A missing field is named by its own path, not the object's (`.`).
    let (status, missing) = host.post(
        "/api/connectors",
        &json!({"connectorId": MOCK, "config": {}}),
    );
    assert_eq!(status, 400, "{missing}");
    assert_eq!(
        missing["data"]["errors"][0]["field"], "templates",
        "{missing}"
    );
    assert_eq!(
        code_of(host.get("/api/connectors/missing")),
        (404, "entity.not_found".into())
    );
    assert_eq!(
        code_of(host.patch("/api/connectors/missing", &json!({"config": {}}))),
        (404, "entity.not_found".into())
    );
    assert_eq!(
        code_of(host.post("/api/connectors/missing/enable", &json!({}))),
        (404, "entity.not_found".into())
    );
    assert_eq!(
        code_of(host.delete("/api/connectors/missing")),
        (404, "entity.not_found".into())
    );
    assert_eq!(
        code_of(host.get("/api/connectors?enabled=maybe")),
        (400, "guard.invalid_input".into())
    );
    let test_path = format!("/api/connectors/{MOCK}/test");
    assert_eq!(
        code_of(host.post(
            &test_path,
            &json!({"phone": "abc", "config": mock_config()})
        )),
        (400, "guard.invalid_phone_number".into())
    );
    assert_eq!(
        code_of(host.post(
            &test_path,
            &json!({"phone": PHONE, "config": {"templates": "no"}})
        )),
        (400, "connector.invalid_config".into())
    );
}

/// Logto's own integration tests, replayed: `config` is optional on create (`{}` when left out)
/// and the factory is looked up before the config is read, so an unknown factory is `422`
/// whatever the body holds; a config the plugin refuses is still never made live.
#[test]
fn create_without_config_looks_up_the_factory_first_as_logto_does() {
    let (mock_name, mock_file) = mock_plugin();
    let host = InProcessHost::start(&[
        (mock_name, &mock_file),
        ("any.so", &plugin_file("fixture_without_form_items")),
    ]);
    let not_found = (422, "connector.not_found_with_connector_id".to_owned());
    assert_eq!(
        code_of(host.post("/api/connectors", &json!({"connectorId": "non-exist-id"}))),
        not_found
    );
    assert_eq!(
        code_of(host.post(
            "/api/connectors",
            &json!({"connectorId": "non-exist-id", "config": {"templates": "no"}})
        )),
        not_found
    );

    // A known factory without a config: `{}`, which the mock refuses; nothing is saved.
    let (status, refused) = host.post("/api/connectors", &json!({"connectorId": MOCK}));
    assert_eq!(
        (status, refused["code"].clone()),
        (400, json!("connector.invalid_config")),
        "{refused}"
    );
    assert_eq!(host.get("/api/connectors").1, json!([]));
    assert_eq!(host.get("/api/connectors?enabled=false").1, json!([]));

    // A plugin that takes `{}` gets it, and the connector is live.
    let (status, created) = host.post(
        "/api/connectors",
        &json!({"connectorId": "without-form-items"}),
    );
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        (
            created["config"].clone(),
            created["metadata"].clone(),
            created["enabled"].clone()
        ),
        (json!({}), json!({}), json!(true))
    );

    // What the guard refuses before any lookup, as Logto's does.
    for body in [
        json!({"connectorId": ""}),
        json!({"connectorId": "non-exist-id", "config": null}),
        json!({"connectorId": "non-exist-id", "config": []}),
        json!({"connectorId": "non-exist-id", "metadata": null}),
        // Logto's optional `id` and `syncProfile` are not taken here.
        json!({"connectorId": MOCK, "id": "chosen-id"}),
        json!({"connectorId": MOCK, "syncProfile": true}),
    ] {
        assert_eq!(
            code_of(host.post("/api/connectors", &body)),
            (400, "guard.invalid_input".to_owned()),
            "{body}"
        );
    }
    // PATCH: a present `config` or `metadata` is an object, never `null`.
    let id = created["id"].as_str().unwrap();
    for body in [json!({"config": null}), json!({"metadata": null})] {
        assert_eq!(
            code_of(host.patch(&format!("/api/connectors/{id}"), &body)),
            (400, "guard.invalid_input".to_owned()),
            "{body}"
        );
    }
    assert_eq!(
        host.patch(&format!("/api/connectors/{id}"), &json!({})).0,
        200
    );
}

/// Where the connector routes answer otherwise than Logto (docs/logto-compatibility.md).
#[test]
fn connector_routes_differ_from_logto_where_documented() {
    let host = mock_host();
    // A test through a factory no plugin provides: Logto says 400 `connector.not_found`; here
    // it is the same 422 as creating a connector of that factory.
    assert_eq!(
        code_of(host.post(
            "/api/connectors/non-exist-id/test",
            &json!({"phone": PHONE, "config": mock_config()})
        )),
        (422, "connector.not_found_with_connector_id".to_owned())
    );
    // Logto's `target` filter: these connectors are all SMS ones; the query is refused.
    assert_eq!(
        code_of(host.get("/api/connectors?target=mock-sms")),
        (400, "guard.invalid_input".to_owned())
    );
    // The test code is random here (Logto sends `000000`).
    let test_path = format!("/api/connectors/{MOCK}/test");
    for _ in 0..2 {
        let (status, body) = host.post(
            &test_path,
            &json!({"phone": PHONE, "config": mock_config()}),
        );
        assert_eq!(status, 204, "{body}");
    }
    let codes: Vec<Value> = host
        .outbox_lines()
        .iter()
        .map(|line| line["payload"]["code"].clone())
        .collect();
    assert_eq!(codes.len(), 2);
    assert!(
        codes.iter().any(|code| code != "000000"),
        "a fixed code: {codes:?}"
    );
    // An email test (Logto's `email`) is not taken: SMS only.
    assert_eq!(
        code_of(host.post(
            &test_path,
            &json!({"email": "a@example.com", "config": mock_config()})
        )),
        (400, "guard.invalid_input".to_owned())
    );
}
