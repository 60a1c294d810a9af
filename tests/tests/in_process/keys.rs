//! The key checks: every `/api` route refuses a request without a known key, the admin
//! routes refuse a send key, and a refusal leaves nothing done.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::Request;
use e2e_tests::{ADMIN_KEY, SEND_KEY};
use serde_json::{json, Value};

use crate::in_process_host::{code_of, refusal_of};
use crate::{mock_config, mock_host, MOCK, PHONE};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Admin,
    /// The send key or the admin key.
    Send,
}

/// A key-checked route: method, path as the OpenAPI document names it, a path to call, and a
/// body a route taking one accepts (so that only the key can be what a refusal is about).
struct Route {
    method: &'static str,
    documented_path: &'static str,
    path: String,
    body: Option<Value>,
    scope: Scope,
}

fn routes() -> Vec<Route> {
    let route = |method, documented_path, path: &str, body: Option<Value>, scope| Route {
        method,
        documented_path,
        path: path.to_owned(),
        body,
        scope,
    };
    let factory = format!("/api/connector-factories/{MOCK}");
    vec![
        route(
            "GET",
            "/api/connector-factories",
            "/api/connector-factories",
            None,
            Scope::Admin,
        ),
        route(
            "GET",
            "/api/connector-factories/{id}",
            &factory,
            None,
            Scope::Admin,
        ),
        route(
            "GET",
            "/api/connector-factories/{id}/readme.html",
            &format!("{factory}/readme.html"),
            None,
            Scope::Admin,
        ),
        route(
            "GET",
            "/api/connectors",
            "/api/connectors",
            None,
            Scope::Admin,
        ),
        route(
            "POST",
            "/api/connectors",
            "/api/connectors",
            Some(json!({"connectorId": MOCK, "config": mock_config()})),
            Scope::Admin,
        ),
        route(
            "GET",
            "/api/connectors/{id}",
            "/api/connectors/missing",
            None,
            Scope::Admin,
        ),
        route(
            "PATCH",
            "/api/connectors/{id}",
            "/api/connectors/missing",
            Some(json!({"config": mock_config()})),
            Scope::Admin,
        ),
        route(
            "DELETE",
            "/api/connectors/{id}",
            "/api/connectors/missing",
            None,
            Scope::Admin,
        ),
        route(
            "POST",
            "/api/connectors/{id}/enable",
            "/api/connectors/missing/enable",
            None,
            Scope::Admin,
        ),
        route(
            "POST",
            "/api/connectors/{id}/fallback",
            "/api/connectors/missing/fallback",
            None,
            Scope::Admin,
        ),
        route(
            "DELETE",
            "/api/connectors/{id}/fallback",
            "/api/connectors/missing/fallback",
            None,
            Scope::Admin,
        ),
        route(
            "POST",
            "/api/connectors/{id}/test",
            &format!("/api/connectors/{MOCK}/test"),
            Some(json!({"phone": PHONE, "config": mock_config()})),
            Scope::Admin,
        ),
        route("GET", "/api/plugins", "/api/plugins", None, Scope::Admin),
        route(
            "POST",
            "/api/plugins/rescan",
            "/api/plugins/rescan",
            None,
            Scope::Admin,
        ),
        route(
            "GET",
            "/api/protection",
            "/api/protection",
            None,
            Scope::Admin,
        ),
        route(
            "DELETE",
            "/api/protection/blocks/{id}",
            "/api/protection/blocks/missing",
            None,
            Scope::Admin,
        ),
        route(
            "POST",
            "/api/protection/countries/{region}/allow",
            "/api/protection/countries/US/allow",
            None,
            Scope::Admin,
        ),
        route(
            "GET",
            "/api/openapi.json",
            "/api/openapi.json",
            None,
            Scope::Admin,
        ),
        route(
            "POST",
            "/api/messages",
            "/api/messages",
            Some(json!({"to": PHONE, "payload": {"code": "123456"}})),
            Scope::Send,
        ),
        route("GET", "/api/messages", "/api/messages", None, Scope::Admin),
        route(
            "GET",
            "/api/messages/{id}",
            "/api/messages/0193a5b2-7c4e-7d4f-9a1b-2c3d4e5f6a7b",
            None,
            Scope::Admin,
        ),
        route(
            "GET",
            "/api/messages/summary",
            "/api/messages/summary",
            None,
            Scope::Admin,
        ),
        route(
            "POST",
            "/api/verification-codes",
            "/api/verification-codes",
            Some(json!({"phone": PHONE})),
            Scope::Send,
        ),
        route(
            "POST",
            "/api/verification-codes/verify",
            "/api/verification-codes/verify",
            Some(json!({"phone": PHONE, "verificationCode": "123456"})),
            Scope::Send,
        ),
    ]
}

#[test]
fn requests_without_a_known_key_are_refused() {
    let host = mock_host();

    assert_eq!(
        code_of(host.request("GET", "/api/connectors", None, None)),
        (401, "auth.unauthorized".into())
    );
    assert_eq!(
        code_of(host.request("GET", "/api/connectors", Some("wrong"), None)),
        (401, "auth.unauthorized".into())
    );
    assert_eq!(
        code_of(host.request("GET", "/api/connectors", Some(SEND_KEY), None)),
        (403, "auth.forbidden".into())
    );
    assert_eq!(
        code_of(host.request("POST", "/api/messages", None, Some(&json!({"to": PHONE})))),
        (401, "auth.unauthorized".into())
    );
    assert_eq!(host.request("GET", "/health", None, None).0, 200);
    // The scheme is case-insensitive (RFC 9110).
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let authorization = format!("{scheme} {ADMIN_KEY}");
        let (status, body) =
            host.request_with_authorization("GET", "/api/connectors", Some(&authorization), None);
        assert_eq!(status, 200, "scheme {scheme}: {body}");
    }
}

/// Every route of the table, with every way of not holding its key; the table is the
/// document's list of key-checked routes.
#[test]
fn every_api_route_checks_its_key_before_anything_else() {
    let host = mock_host();
    let routes = routes();

    let (status, document) = host.get("/api/openapi.json");
    assert_eq!(status, 200, "{document}");
    let mut documented = BTreeSet::new();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            let Some(requirements) = operation["security"].as_array() else {
                continue;
            };
            let scope = if requirements
                .iter()
                .any(|requirement| requirement.get("send_key").is_some())
            {
                Scope::Send
            } else {
                Scope::Admin
            };
            documented.insert((method.to_uppercase(), path.clone(), scope));
        }
    }
    let tested: BTreeSet<_> = routes
        .iter()
        .map(|route| {
            (
                route.method.to_owned(),
                route.documented_path.to_owned(),
                route.scope,
            )
        })
        .collect();
    assert_eq!(
        tested, documented,
        "the table is every key-checked route of the document"
    );

    let no_known_key = [
        None,
        Some("Bearer wrong".to_owned()),
        Some("Bearer".to_owned()),
        Some("Bearer ".to_owned()),
        // The key without its scheme, or with another one.
        Some(ADMIN_KEY.to_owned()),
        Some(format!("Basic {ADMIN_KEY}")),
        // Near misses: keys compare whole and case-sensitively.
        Some(format!("Bearer {ADMIN_KEY}x")),
        Some(format!("Bearer {}", &ADMIN_KEY[..ADMIN_KEY.len() - 1])),
        Some(format!("Bearer {}", ADMIN_KEY.to_uppercase())),
    ];
    for route in &routes {
        let body = route.body.as_ref().map(Value::to_string);
        let body = body.as_deref().map(|body| ("application/json", body));
        for authorization in &no_known_key {
            assert_eq!(
                refusal_of(host.request_with_authorization(
                    route.method,
                    &route.path,
                    authorization.as_deref(),
                    body
                )),
                (401, "auth.unauthorized".to_owned()),
                "{} {} with {authorization:?}",
                route.method,
                route.path
            );
        }
        if route.scope == Scope::Admin {
            assert_eq!(
                refusal_of(host.request_raw(route.method, &route.path, Some(SEND_KEY), body)),
                (403, "auth.forbidden".to_owned()),
                "{} {} with the send key",
                route.method,
                route.path
            );
        }
    }
    // Nothing was done: no connector saved, no message sent, no code pending.
    assert_eq!(host.get("/api/connectors").1, json!([]));
    assert!(host.outbox_lines().is_empty(), "{:?}", host.outbox_lines());

    // The keys it takes get past the check, to the route itself.
    for route in &routes {
        let body = route.body.as_ref().map(Value::to_string);
        let body = body.as_deref().map(|body| ("application/json", body));
        let keys: &[&str] = match route.scope {
            Scope::Admin => &[ADMIN_KEY],
            Scope::Send => &[SEND_KEY, ADMIN_KEY],
        };
        for key in keys {
            let (status, answer) = host.request_raw(route.method, &route.path, Some(key), body);
            assert!(
                ![401, 403, 405].contains(&status) && answer["code"] != "request.route_not_found",
                "{} {}: {status} {answer}",
                route.method,
                route.path
            );
        }
    }
}

/// A refusal for the key comes before any verdict on the body; without a known key the body
/// is not even read (its size does not matter).
#[test]
fn the_key_is_checked_before_the_body() {
    let host = mock_host();
    let huge = "x".repeat(100_000);
    for (key, body, expected) in [
        (None, "{not json", (401, "auth.unauthorized")),
        (None, huge.as_str(), (401, "auth.unauthorized")),
        (Some(SEND_KEY), "{not json", (403, "auth.forbidden")),
    ] {
        let mut request = Request::builder()
            .method("POST")
            .uri("/api/connectors")
            .header("Content-Type", "application/json");
        if let Some(key) = key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let request = request
            .body(Body::from(body.to_owned()))
            .expect("a request");
        assert_eq!(
            refusal_of(host.call(request)),
            (expected.0, expected.1.to_owned()),
            "{key:?}, {} bytes",
            body.len()
        );
    }
}
