//! Malformed requests: bodies that are not the JSON object a route takes, bodies past the
//! size limit, queries, methods and paths no route takes. Each gets its status and code.

use axum::body::Body;
use axum::http::Request;
use e2e_tests::{ADMIN_KEY, SEND_KEY};
use serde_json::{json, Value};

use crate::in_process_host::{code_of, refusal_of};
use crate::{mock_config, mock_host, PHONE};

/// Request bodies are JSON documents of at most 64 KiB (`http/limits.rs`).
const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024;

#[test]
fn malformed_bodies_get_400_and_oversized_ones_413() {
    let host = mock_host();
    let raw = |body: &str| {
        code_of(host.request_raw(
            "POST",
            "/api/connectors",
            Some(ADMIN_KEY),
            Some(("application/json", body)),
        ))
    };
    assert_eq!(raw("{not json"), (400, "guard.invalid_input".into()));
    // An array is not read as a struct by position.
    assert_eq!(
        raw(r#"["mock-short-message-service", {}]"#),
        (400, "guard.invalid_input".into())
    );
    assert_eq!(
        code_of(host.request_raw(
            "POST",
            "/api/messages",
            Some(SEND_KEY),
            Some((
                "application/json",
                r#"["+12015550123", "SignIn", {"code": "424242"}]"#
            )),
        )),
        (400, "guard.invalid_input".into())
    );
    assert_eq!(
        code_of(host.request_raw(
            "PATCH",
            "/api/connectors/missing",
            Some(ADMIN_KEY),
            Some(("application/json", "[null, null]")),
        )),
        (400, "guard.invalid_input".into())
    );
    assert_eq!(
        raw(r#"{"connectorId": 7, "config": {}}"#),
        (400, "guard.invalid_input".into())
    );
    assert_eq!(
        raw(r#"{"connectorId": "x", "config": {}, "surprise": 1}"#),
        (400, "guard.invalid_input".into())
    );
    let huge = format!(
        r#"{{"connectorId": "{}", "config": {{}}}}"#,
        "x".repeat(100_000)
    );
    assert_eq!(raw(&huge), (413, "guard.payload_too_large".into()));
    assert_eq!(
        code_of(host.request_raw(
            "POST",
            "/api/connectors",
            Some(ADMIN_KEY),
            Some(("text/plain", "{}"))
        )),
        (400, "guard.invalid_input".into())
    );
}

/// A route that takes a body, with a body it reads and what that gets (no connector is live
/// on the host these run on).
struct BodyRoute {
    method: &'static str,
    path: &'static str,
    key: &'static str,
    body: Value,
    answer: (u16, &'static str),
}

fn body_routes() -> Vec<BodyRoute> {
    vec![
        BodyRoute {
            method: "POST",
            path: "/api/connectors",
            key: ADMIN_KEY,
            body: json!({"connectorId": "non-exist-id", "config": {}}),
            answer: (422, "connector.not_found_with_connector_id"),
        },
        BodyRoute {
            method: "PATCH",
            path: "/api/connectors/missing",
            key: ADMIN_KEY,
            body: json!({"config": {}}),
            answer: (404, "entity.not_found"),
        },
        BodyRoute {
            method: "POST",
            path: "/api/connectors/non-exist-id/test",
            key: ADMIN_KEY,
            body: json!({"phone": PHONE, "config": mock_config()}),
            answer: (422, "connector.not_found_with_connector_id"),
        },
        BodyRoute {
            method: "POST",
            path: "/api/messages",
            key: SEND_KEY,
            body: json!({"to": PHONE, "payload": {"code": "123456"}}),
            answer: (501, "connector.not_found"),
        },
        BodyRoute {
            method: "POST",
            path: "/api/verification-codes",
            key: SEND_KEY,
            body: json!({"phone": PHONE, "type": "SignIn"}),
            answer: (501, "connector.not_found"),
        },
        BodyRoute {
            method: "POST",
            path: "/api/verification-codes/verify",
            key: SEND_KEY,
            body: json!({"phone": PHONE, "verificationCode": "123456", "type": "SignIn"}),
            answer: (400, "verification_code.not_found"),
        },
    ]
}

/// Every route that takes a body: the body it reads gets its own answer (so the refusals
/// below are about the body), and every malformed variant of it a `400 guard.invalid_input`,
/// past 64 KiB a `413 guard.payload_too_large`.
#[test]
fn every_body_route_refuses_what_is_not_its_json_object() {
    let host = mock_host();
    for route in body_routes() {
        let what = format!("{} {}", route.method, route.path);
        let expected = (route.answer.0, route.answer.1.to_owned());
        let body = route.body.to_string();
        let send = |content_type: Option<&str>, body: &str| {
            let mut request = Request::builder()
                .method(route.method)
                .uri(route.path)
                .header("Authorization", format!("Bearer {}", route.key));
            if let Some(content_type) = content_type {
                request = request.header("Content-Type", content_type);
            }
            let request = request
                .body(Body::from(body.to_owned()))
                .expect("a request");
            refusal_of(host.call(request))
        };
        let json = Some("application/json");

        assert_eq!(send(json, &body), expected, "{what}");
        assert_eq!(
            send(Some("application/json; charset=utf-8"), &body),
            expected,
            "{what}, with a charset"
        );
        // Exactly the limit is still read.
        let padded = format!("{}{body}", " ".repeat(MAX_REQUEST_BODY_BYTES - body.len()));
        assert_eq!(send(json, &padded), expected, "{what}, 64 KiB");

        let mut with_unknown_field = route.body.clone();
        with_unknown_field["surprise"] = json!(1);
        let wrong_content_types = [
            (Some("text/plain"), body.clone()),
            (Some("application/x-www-form-urlencoded"), body.clone()),
            (None, body.clone()),
        ];
        let not_its_object = [
            (json, "{not json".to_owned()),
            (json, format!("{body}}}")),
            (json, String::new()),
            (json, "null".to_owned()),
            (json, "42".to_owned()),
            (json, r#""a string""#.to_owned()),
            (json, "[]".to_owned()),
            (json, format!("[{body}]")),
            (json, with_unknown_field.to_string()),
        ];
        for (content_type, malformed) in wrong_content_types.iter().chain(&not_its_object) {
            assert_eq!(
                send(*content_type, malformed),
                (400, "guard.invalid_input".to_owned()),
                "{what} with {content_type:?}: {malformed}"
            );
        }

        let oversized = format!(
            "{}{body}",
            " ".repeat(MAX_REQUEST_BODY_BYTES + 1 - body.len())
        );
        let huge = format!("{}{body}", " ".repeat(100_000));
        for too_big in [oversized, huge] {
            assert_eq!(
                send(json, &too_big),
                (413, "guard.payload_too_large".to_owned()),
                "{what}, {} bytes",
                too_big.len()
            );
        }
    }
    // None of them did anything.
    assert_eq!(host.get("/api/connectors").1, json!([]));
    assert!(host.outbox_lines().is_empty(), "{:?}", host.outbox_lines());
}

#[test]
fn queries_methods_and_paths_no_route_takes() {
    let host = mock_host();
    assert_eq!(
        code_of(host.get("/api/connectors?enabled=maybe")),
        (400, "guard.invalid_input".into())
    );
    for query in ["enabled=", "enabled=1", "surprise=1"] {
        assert_eq!(
            refusal_of(host.get(&format!("/api/connectors?{query}"))),
            (400, "guard.invalid_input".into()),
            "{query}"
        );
    }
    for query in ["", "?enabled=true", "?enabled=false"] {
        let (status, list) = host.get(&format!("/api/connectors{query}"));
        assert_eq!((status, list), (200, json!([])), "{query}");
    }

    // A method a route does not take answers in the JSON error shape.
    assert_eq!(
        code_of(host.request("PUT", "/api/connectors", Some(ADMIN_KEY), None)),
        (405, "request.method_not_allowed".into())
    );
    for (method, path, key) in [
        ("DELETE", "/api/connectors", ADMIN_KEY),
        ("PUT", "/api/connectors/missing", ADMIN_KEY),
        ("GET", "/api/connectors/missing/enable", ADMIN_KEY),
        ("PUT", "/api/messages", SEND_KEY),
        ("GET", "/api/verification-codes", SEND_KEY),
        ("POST", "/health", SEND_KEY),
    ] {
        assert_eq!(
            refusal_of(host.request(method, path, Some(key), None)),
            (405, "request.method_not_allowed".into()),
            "{method} {path}"
        );
    }

    assert_eq!(
        code_of(host.get("/api/nothing")),
        (404, "request.route_not_found".into())
    );
    for path in ["/api", "/api/connectors/a/b/c", "/api/message"] {
        assert_eq!(
            refusal_of(host.get(path)),
            (404, "request.route_not_found".into()),
            "{path}"
        );
    }
}
