//! Logto's own HTTP SMS connector (npm `@logto/connector-http-sms`, pinned and installed into
//! target/counterparts by `scripts/install-counterparts`) sending through the host, run by
//! Node exactly as Logto core runs it: config `{endpoint, authorization}`, then
//! `sendMessage({to, type, payload, ip})` with what core passes (`to` as Logto stores phones,
//! digits only; `payload` with the code, locales and context objects; `ip` when known). Each
//! message must reach the live connector (the mock's outbox); a refusal must reach Logto as
//! the package's `ConnectorError` carrying the host's answer.

use std::io::Write;
use std::process::{Command, Stdio};

use e2e_tests::{
    counterparts_dir, plugin_file, HostFolders, TestHost, ADMIN_KEY, SEND_KEY,
    UNLIMITED_FLOOD_FLAGS,
};
use plugin_api::TemplateType;
use serde_json::{json, Value};

const MOCK: &str = "mock-short-message-service";
/// How Logto stores a phone: the country code and the number, digits only.
const LOGTO_PHONE: &str = "12015550123";
const PACKAGE: &str = "@logto/connector-http-sms";

/// Creates the connector from the package as Logto core does and calls `sendMessage` once per
/// entry of stdin's `sends`, in order; prints one JSON result per send: `{"sent": true}`, or
/// the error with whether it is the connector kit's `ConnectorError`, its `code` and `data`.
const DRIVER: &str = r#"
import { readFileSync } from 'node:fs';
import createConnector from '@logto/connector-http-sms';
import { ConnectorError } from '@logto/connector-kit';

const { endpoint, authorization, sends } = JSON.parse(readFileSync(0, 'utf8'));
const connector = await createConnector({ getConfig: async () => ({ endpoint, authorization }) });
const results = [];
for (const data of sends) {
  try {
    await connector.sendMessage(data);
    results.push({ sent: true });
  } catch (error) {
    results.push({
      sent: false,
      isConnectorError: error instanceof ConnectorError,
      code: error.code,
      data: error.data,
      message: String(error.message),
    });
  }
}
process.stdout.write(JSON.stringify(results));
"#;

/// Runs the package in Node against `endpoint` with this Authorization header value.
fn send_through_logto_package(endpoint: &str, authorization: &str, sends: &[Value]) -> Vec<Value> {
    let package_dir = counterparts_dir().join("node_modules").join(PACKAGE);
    assert!(
        package_dir.join("package.json").exists(),
        "{} is missing: run scripts/install-counterparts (the README's test command does)",
        package_dir.display()
    );
    let installed: Value = serde_json::from_str(
        &std::fs::read_to_string(package_dir.join("package.json")).expect("package.json"),
    )
    .expect("package.json is JSON");
    assert_eq!(installed["version"], "0.2.1", "the pinned version");
    let input = json!({"endpoint": endpoint, "authorization": authorization, "sends": sends});
    // The package is resolved from target/counterparts/node_modules.
    let mut node = Command::new("node")
        .args(["--input-type=module", "-e", DRIVER])
        .current_dir(counterparts_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (Node.js 20 or later)");
    node.stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write the sends");
    let output = node.wait_with_output().expect("node runs");
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).expect("results are JSON");
    assert_eq!(results.len(), sends.len());
    results
}

/// What Logto core puts in `payload` (packages/core/src/libraries/passcode.ts): the code, the
/// locale it resolved, the request's `ui_locales` and the context objects of the flow.
fn logto_payload(code: &str, locale: &str) -> Value {
    json!({
        "code": code,
        "locale": locale,
        "uiLocales": format!("{locale} en"),
        "application": {
            "id": "y8nqgk2l0wq7",
            "name": "Acme web",
            "displayName": null,
            "branding": {"logoUrl": "https://acme.example/logo.png", "darkLogoUrl": null},
            "customData": {}
        },
        "organization": {
            "id": "org_3k1x9",
            "name": "Acme",
            "description": null,
            "branding": {},
            "customData": {"tier": "gold", "seats": 25}
        },
        "user": {
            "id": "u7d2m0q4x1",
            "username": "ada",
            "primaryPhone": LOGTO_PHONE,
            "primaryEmail": null,
            "name": "Ada",
            "avatar": null,
            "profile": {"givenName": "Ada"},
            "identities": {},
            "customData": {}
        }
    })
}

/// A host whose live connector is the mock, with one template per usage type (and a German
/// SignIn one), each naming its type, so the outbox shows which template Logto's type picked.
/// One user gets every usage type within a second (16 codes, one prefix): a matrix, not a
/// user, so `prefix_velocity` and `first_seen_country` (Logto verifies its own codes) are off.
fn start_host_with_mock() -> TestHost {
    let flags: Vec<&str> = ["--admin-key", ADMIN_KEY, "--send-key", SEND_KEY]
        .into_iter()
        .chain(UNLIMITED_FLOOD_FLAGS)
        .collect();
    let host = HostFolders::new(&[("mock.so", &plugin_file("mock_sms"))]).start_with_args(&flags);
    let mut templates: Vec<Value> = TemplateType::ALL
        .iter()
        .map(|usage| json!({"usageType": usage.as_str(), "content": format!("{usage}: your code is {{{{code}}}}")}))
        .collect();
    templates.push(json!({"usageType": "SignIn", "locale": "de", "content": "SignIn (de): Ihr Code ist {{code}}"}));
    let (status, body) = host.post(
        "/api/connectors",
        &json!({"connectorId": MOCK, "config": {"templates": templates, "outbox": true}}),
    );
    assert_eq!(status, 200, "{body}");
    host
}

/// The host's answer a refused send carried back into Logto, read from the package's
/// `ConnectorError` (Logto's `General` error with the response body as its message).
fn host_answer_in(result: &Value) -> Value {
    assert_eq!(result["sent"], false, "{result}");
    assert_eq!(result["isConnectorError"], true, "{result}");
    assert_eq!(result["code"], "general", "{result}");
    let body = result["data"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no response body in {result}"));
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not the host's JSON answer: {body}"))
}

#[test]
fn logtos_http_sms_connector_sends_every_usage_type_through_the_host() {
    let host = start_host_with_mock();
    let endpoint = format!("{}/api/messages", host.base_url);
    let authorization = format!("Bearer {SEND_KEY}");
    let client_ips = [
        "203.0.113.7",
        "2001:db8:85a3::8a2e:370:7334",
        // What a dual-stack Node server reports for an IPv4 client.
        "::ffff:198.51.100.23",
    ];
    // Every usage type, each with and without an `ip`; a unique code per send.
    let mut sends = Vec::new();
    for (index, usage) in TemplateType::ALL.iter().enumerate() {
        for (variant, ip) in [None, Some(client_ips[index % 3])].into_iter().enumerate() {
            let code = format!("{:06}", 100_000 + index * 10 + variant);
            let mut send = json!({"to": LOGTO_PHONE, "type": usage.as_str(), "payload": logto_payload(&code, "en")});
            if let Some(ip) = ip {
                send["ip"] = json!(ip);
            }
            sends.push(send);
        }
    }
    // Logto's own locale choice picks the host's per-locale template.
    sends.push(json!({"to": LOGTO_PHONE, "type": "SignIn", "payload": logto_payload("424242", "de"), "ip": client_ips[0]}));
    // What Logto sends when its context is unknown: only the code.
    sends.push(json!({"to": LOGTO_PHONE, "type": "Generic", "payload": {"code": "515151"}}));

    let results = send_through_logto_package(&endpoint, &authorization, &sends);
    for (send, result) in sends.iter().zip(&results) {
        assert_eq!(result["sent"], true, "{send}: {result}");
    }

    // Each one reached the live connector, once, with its code rendered in its type's template.
    let outbox = host.outbox_lines_of(
        host.get("/api/connectors").1[0]["id"]
            .as_str()
            .expect("the mock's connector id"),
    );
    assert_eq!(outbox.len(), sends.len(), "{outbox:?}");
    for (send, line) in sends.iter().zip(&outbox) {
        let code = send["payload"]["code"].as_str().unwrap();
        let usage = send["type"].as_str().unwrap();
        assert_eq!(line["to"], format!("+{LOGTO_PHONE}"), "{line}");
        assert_eq!(line["type"], usage, "{line}");
        assert_eq!(line["payload"]["code"], code, "{line}");
        let expected = if send["payload"]["locale"] == "de" {
            format!("SignIn (de): Ihr Code ist {code}")
        } else {
            format!("{usage}: your code is {code}")
        };
        assert_eq!(line["content"], expected, "{line}");
        // The context objects reach the connector as Logto sent them.
        for context in ["application", "organization", "user", "uiLocales"] {
            assert_eq!(line["payload"][context], send["payload"][context], "{line}");
        }
    }

    // The client's address is personal data: not in the host's log, at any level.
    let log = host.log();
    for ip in client_ips {
        assert!(!log.contains(ip), "{ip} was logged");
    }
    assert!(log.contains("***0123"), "the sends were logged: {log}");
}

#[test]
fn logtos_connector_gets_the_hosts_refusals_as_connector_errors() {
    let host = start_host_with_mock();
    let endpoint = format!("{}/api/messages", host.base_url);
    let send = |ip: Value| json!({"to": LOGTO_PHONE, "type": "SignIn", "payload": logto_payload("123456", "en"), "ip": ip});
    let sends = [
        send(json!("203.0.113.999")),
        send(json!("not an address")),
        send(json!("fe80::1%eth0")),
    ];
    for (send, result) in sends.iter().zip(send_through_logto_package(
        &endpoint,
        &format!("Bearer {SEND_KEY}"),
        &sends,
    )) {
        let answer = host_answer_in(&result);
        assert_eq!(answer["code"], "guard.invalid_input", "{send}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.contains("ip: must be an IPv4 or IPv6 address"),
            "the message names the field: {message}"
        );
        assert!(
            !message.contains(send["ip"].as_str().unwrap()),
            "the address is not echoed: {message}"
        );
    }
    // The admin key is not the key to give Logto, but any wrong one is refused as such.
    let wrong_key = send_through_logto_package(
        &endpoint,
        "Bearer not-a-key",
        &[json!({"to": LOGTO_PHONE, "type": "SignIn", "payload": {"code": "123456"}})],
    );
    assert_eq!(host_answer_in(&wrong_key[0])["code"], "auth.unauthorized");
    assert!(host.outbox_lines().is_empty(), "nothing refused was sent");
}

/// `POST /api/verification-codes` takes the same optional `ip`; other unknown fields are
/// still refused, on both routes.
#[test]
fn both_sending_routes_take_an_optional_ip_and_refuse_other_unknown_fields() {
    let host = start_host_with_mock();
    let post = |path: &str, body: Value| host.request("POST", path, Some(SEND_KEY), Some(&body));
    for ip in ["203.0.113.7", "2001:db8::7"] {
        let (status, body) = post(
            "/api/verification-codes",
            json!({"phone": LOGTO_PHONE, "type": "SignIn", "ip": ip}),
        );
        assert_eq!(status, 204, "{ip}: {body}");
    }
    assert_eq!(host.outbox_lines().len(), 2);
    for path in ["/api/verification-codes", "/api/messages"] {
        let base = if path == "/api/messages" {
            json!({"to": LOGTO_PHONE, "payload": {"code": "123456"}})
        } else {
            json!({"phone": LOGTO_PHONE})
        };
        for (field, value, expected) in [
            (
                "ip",
                json!("203.0.113"),
                "ip: must be an IPv4 or IPv6 address",
            ),
            ("ip", json!(null), "ip: invalid type: null"),
            ("ip", json!(3405803783_u32), "ip: invalid type: integer"),
            ("clientIp", json!("203.0.113.7"), "unknown field `clientIp`"),
        ] {
            let mut body = base.clone();
            body[field] = value;
            let (status, answer) = post(path, body.clone());
            assert_eq!(
                (status, answer["code"].clone()),
                (400, json!("guard.invalid_input")),
                "{path} {body}: {answer}"
            );
            let message = answer["message"].as_str().unwrap();
            assert!(message.contains(expected), "{path} {body}: {message}");
        }
    }
    assert_eq!(host.outbox_lines().len(), 2, "nothing refused was sent");

    // The document states the field, with an example, on both routes.
    let (_, document) = host.request("GET", "/api/openapi.json", Some(ADMIN_KEY), None);
    let schemas = &document["components"]["schemas"];
    for body in ["SendMessageBody", "IssueCodeBody"] {
        assert_eq!(
            schemas[body]["properties"]["ip"]["$ref"], "#/components/schemas/ClientIp",
            "{body}: {}",
            schemas[body]
        );
        assert!(schemas[body]["example"]["ip"].is_string(), "{body}");
        let required = schemas[body]["required"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!required.contains(&json!("ip")), "{body}: ip is optional");
    }
    let formats: Vec<&Value> = schemas["ClientIp"]["anyOf"]
        .as_array()
        .expect("ClientIp is IPv4 or IPv6")
        .iter()
        .map(|schema| &schema["format"])
        .collect();
    assert_eq!(formats, [&json!("ipv4"), &json!("ipv6")]);
}
