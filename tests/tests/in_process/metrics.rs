//! `GET /metrics` as an SRE alerts on it: HELP and TYPE on every family, the series known in
//! advance at zero on a fresh host, requests by route template and status, refusals by code,
//! verification results, build info, and every metric the sample alert rules name.

use std::collections::{BTreeMap, BTreeSet};

use e2e_tests::{workspace_root, SEND_KEY};
use serde_json::json;

use crate::in_process_host::InProcessHost;
use crate::verification_codes::{issue, last_code};
use crate::{mock_config, mock_host, mock_plugin, MOCK, PHONE};

/// The scrape's samples: `name{labels}` as rendered, and its value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// A sample's value, by name and labels in the order the host gives them.
fn value(text: &str, series: &str) -> Option<f64> {
    samples(text).get(series).copied()
}

/// The families: name → (TYPE, has HELP).
fn families(text: &str) -> BTreeMap<String, (String, bool)> {
    let mut families: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            families.entry(name.to_owned()).or_default().0 = kind.to_owned();
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("# HELP name text");
            assert!(!help.trim().is_empty(), "{name} has an empty HELP");
            families.entry(name.to_owned()).or_default().1 = true;
        }
    }
    families
}

#[test]
fn a_fresh_host_exports_every_known_series_at_zero_with_help_and_type() {
    let host = mock_host();
    let text = host.metrics_text();
    let families = families(&text);
    for (name, (kind, has_help)) in &families {
        assert!(!kind.is_empty(), "{name} has HELP but no TYPE");
        assert!(*has_help, "{name} has no HELP text");
    }
    // Every metric of the catalogue that does not wait for a live connector or a write.
    let later = [
        "sms_sends_total",
        "sms_send_failures_total",
        "sms_delivery_reports_total",
        "sms_send_to_delivered_seconds",
        "sms_delivery_report_refusals_total",
        "sms_delivery_reports_unmatched_total",
        "sms_message_log_writes_lost_total",
        "sms_plugin_worker_failures_total",
        "sms_send_duration_seconds",
        "sms_connector_busy_total",
        "store_batch_size",
    ];
    for metric in connector_host::telemetry::METRICS {
        if !later.contains(&metric.name) {
            assert!(
                families.contains_key(metric.name),
                "{} is not exported by a fresh host:\n{text}",
                metric.name
            );
        }
    }
    for series in [
        r#"http_refusals_total{code="auth.unauthorized"}"#,
        r#"http_refusals_total{code="request.message_rate_limited"}"#,
        r#"http_refusals_total{code="verification_code.resend_cooldown"}"#,
        r#"http_refusals_total{code="sms.blocked"}"#,
        r#"http_refusals_total{code="store.unavailable"}"#,
        r#"http_refusals_total{code="connector.rate_limit_exceeded"}"#,
        r#"verification_code_checks_total{result="verified"}"#,
        r#"verification_code_checks_total{result="wrong"}"#,
        r#"verification_code_checks_total{result="expired"}"#,
        r#"verification_code_checks_total{result="too_many_attempts"}"#,
        r#"verification_code_checks_total{result="not_found"}"#,
        r#"sms_sends_blocked_total{reason="ip_velocity",mode="enforce"}"#,
        r#"sms_rate_limited_total{reason="cooldown"}"#,
        r#"http_timeouts_total{kind="request"}"#,
        "verification_codes_issued_total",
        "live_connector_ready",
        "live_connector_configured",
    ] {
        assert_eq!(value(&text, series), Some(0.0), "{series} in\n{text}");
    }
    assert_eq!(value(&text, "store_up"), Some(1.0), "{text}");
    // The start-up check of `/health` is counted by its route.
    assert_eq!(
        value(
            &text,
            r#"http_requests_total{route="/health",status="200"}"#
        ),
        Some(1.0),
        "{text}"
    );
}

#[test]
fn build_info_names_the_version() {
    let host = mock_host();
    let text = host.metrics_text();
    let build_info: Vec<(String, f64)> = samples(&text)
        .into_iter()
        .filter(|(series, _)| series.starts_with("build_info{"))
        .collect();
    assert_eq!(build_info.len(), 1, "{text}");
    let (series, value) = &build_info[0];
    assert_eq!(*value, 1.0);
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        series.starts_with(&format!(r#"build_info{{version="{version}",git_commit=""#)),
        "{series}"
    );
}

#[test]
fn requests_are_counted_by_route_template_and_status_and_refusals_by_code() {
    let host = mock_host();
    assert_eq!(host.get("/api/connectors").0, 200);
    assert_eq!(host.get("/api/connectors/no-such-connector").0, 404);
    assert_eq!(host.get("/api/connectors/another-missing-one").0, 404);
    assert_eq!(host.get("/no/such/route").0, 404);
    assert_eq!(
        host.request("GET", "/api/connectors", Some("not-a-key"), None)
            .0,
        401
    );
    let text = host.metrics_text();
    for (series, expected) in [
        (
            r#"http_requests_total{route="/api/connectors",status="200"}"#,
            1.0,
        ),
        (
            r#"http_requests_total{route="/api/connectors",status="401"}"#,
            1.0,
        ),
        (
            r#"http_requests_total{route="/api/connectors/{id}",status="404"}"#,
            2.0,
        ),
        (
            r#"http_requests_total{route="unmatched",status="404"}"#,
            1.0,
        ),
        (r#"http_refusals_total{code="entity.not_found"}"#, 2.0),
        (
            r#"http_refusals_total{code="request.route_not_found"}"#,
            1.0,
        ),
        (r#"http_refusals_total{code="auth.unauthorized"}"#, 1.0),
        (
            r#"http_request_duration_seconds_count{route="/api/connectors/{id}"}"#,
            2.0,
        ),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series} in\n{text}");
    }
    // Never the raw path: the series stay as few as the routes.
    assert!(!text.contains("no-such-connector"), "{text}");
    assert!(!text.contains("/no/such/route"), "{text}");
}

#[test]
fn verification_results_are_counted() {
    let (name, file) = mock_plugin();
    let host = InProcessHost::start_with(&[(name, &file)], |config| {
        config.send_limits.max_sends_per_recipient = 1_000_000;
        config.send_limits.resend_cooldown = std::time::Duration::ZERO;
        config.code_policy.max_attempts = 2;
    });
    assert_eq!(
        host.post(
            "/api/connectors",
            &json!({"connectorId": MOCK, "config": mock_config()})
        )
        .0,
        200
    );
    let verify = |code: &str| {
        host.request(
            "POST",
            "/api/verification-codes/verify",
            Some(SEND_KEY),
            Some(&json!({"phone": PHONE, "verificationCode": code, "type": "SignIn"})),
        )
        .0
    };
    let wrong = |code: &str| if code == "000000" { "111111" } else { "000000" }.to_owned();
    assert_eq!(
        issue(&host, json!({"phone": PHONE, "type": "SignIn"})).0,
        204
    );
    let code = last_code(&host);
    assert_eq!(verify(&wrong(&code)), 400);
    assert_eq!(verify(&code), 204);
    assert_eq!(verify(&code), 400, "a code works once");
    assert_eq!(
        issue(&host, json!({"phone": PHONE, "type": "SignIn"})).0,
        204
    );
    let code = last_code(&host);
    assert_eq!(verify(&wrong(&code)), 400);
    assert_eq!(verify(&wrong(&code)), 400);
    assert_eq!(verify(&code), 400, "locked after two wrong attempts");
    let text = host.metrics_text();
    for (result, expected) in [
        ("verified", 1.0),
        ("wrong", 3.0),
        ("not_found", 1.0),
        ("too_many_attempts", 1.0),
        ("expired", 0.0),
    ] {
        let series = format!(r#"verification_code_checks_total{{result="{result}"}}"#);
        assert_eq!(value(&text, &series), Some(expected), "{series} in\n{text}");
    }
    assert_eq!(value(&text, "verification_codes_issued_total"), Some(2.0));
    assert_eq!(value(&text, "live_connector_ready"), Some(1.0));
    assert_eq!(
        value(
            &text,
            &format!(r#"sms_connector_busy_total{{factory="{MOCK}"}}"#)
        ),
        Some(0.0),
        "{text}"
    );
}

/// The metric names an alert expression reads: every identifier that is not a function, a
/// keyword, a label (inside `{}` or a `by (...)` list) or a range; a histogram's `_bucket`,
/// `_sum` and `_count` name their histogram.
fn metric_names_in(expression: &str) -> BTreeSet<String> {
    let mut plain = String::new();
    let mut depth_braces = 0;
    let mut depth_brackets = 0;
    let mut in_string = false;
    for character in expression.chars() {
        match character {
            '"' if depth_braces == 0 => in_string = !in_string,
            _ if in_string => {}
            '{' => depth_braces += 1,
            '}' => depth_braces -= 1,
            '[' => depth_brackets += 1,
            ']' => depth_brackets -= 1,
            _ if depth_braces > 0 || depth_brackets > 0 => {}
            _ => plain.push(character),
        }
        if depth_braces > 0 || depth_brackets > 0 {
            plain.push(' ');
        }
    }
    const KEYWORDS: [&str; 10] = [
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
    ];
    let mut names = BTreeSet::new();
    let mut skip_label_list = false;
    let characters: Vec<char> = plain.chars().collect();
    let mut index = 0;
    while index < characters.len() {
        let character = characters[index];
        if character.is_ascii_alphabetic() || character == '_' {
            let start = index;
            while index < characters.len()
                && (characters[index].is_ascii_alphanumeric() || characters[index] == '_')
            {
                index += 1;
            }
            let word: String = characters[start..index].iter().collect();
            let next = characters[index..].iter().find(|c| !c.is_whitespace());
            if skip_label_list {
                continue;
            }
            if KEYWORDS.contains(&word.as_str()) {
                // `by (instance)`: the list that follows holds labels.
                skip_label_list = matches!(word.as_str(), "by" | "without" | "on" | "ignoring");
                continue;
            }
            // A function, or an aggregation with its `by` list before its argument.
            const AGGREGATIONS: [&str; 12] = [
                "sum",
                "min",
                "max",
                "avg",
                "count",
                "group",
                "stddev",
                "stdvar",
                "topk",
                "bottomk",
                "quantile",
                "count_values",
            ];
            if next == Some(&'(') || AGGREGATIONS.contains(&word.as_str()) {
                continue;
            }
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(&word);
            names.insert(name.to_owned());
            continue;
        }
        if character == ')' {
            skip_label_list = false;
        }
        index += 1;
    }
    names
}

/// Each rule's `expr`, one line or a `|` block.
fn alert_expressions(rules: &str) -> Vec<String> {
    let lines: Vec<&str> = rules.lines().collect();
    let mut expressions = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value != "|" && value != ">" {
            expressions.push(value.to_owned());
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let block: Vec<&str> = lines[index + 1..]
            .iter()
            .take_while(|next| {
                next.trim().is_empty() || next.len() - next.trim_start().len() > indent
            })
            .copied()
            .collect();
        expressions.push(block.join("\n"));
    }
    expressions
}

#[test]
fn the_expression_reader_finds_metrics_not_labels_or_functions() {
    assert_eq!(
        metric_names_in(
            r#"sum by (instance, factory) (rate(sms_sends_total{outcome!="sent"}[5m])) / on(instance) x_bucket > 0.1 and absent(build_info)"#
        ),
        BTreeSet::from([
            "sms_sends_total".to_owned(),
            "x".to_owned(),
            "build_info".to_owned()
        ])
    );
}

#[test]
fn every_metric_the_sample_alert_rules_name_is_exported() {
    let rules = std::fs::read_to_string(workspace_root().join("deploy/prometheus-alerts.yml"))
        .expect("deploy/prometheus-alerts.yml");
    let expressions = alert_expressions(&rules);
    assert!(expressions.len() >= 8, "{expressions:?}");
    let named: BTreeSet<String> = expressions
        .iter()
        .flat_map(|expression| metric_names_in(expression))
        .collect();
    // A host that has sent, so the per-factory series exist too.
    let host = mock_host();
    assert_eq!(
        host.post(
            "/api/connectors",
            &json!({"connectorId": MOCK, "config": mock_config()})
        )
        .0,
        200
    );
    assert_eq!(
        host.request(
            "POST",
            "/api/messages",
            Some(SEND_KEY),
            Some(&json!({"to": PHONE, "payload": {"code": "123456"}}))
        )
        .0,
        200
    );
    let exported = families(&host.metrics_text());
    for name in [
        "store_up",
        "http_requests_total",
        "verification_code_checks_total",
        "sms_sends_blocked_total",
        "live_connector_ready",
        "sms_sends_total",
        "sms_send_failures_total",
    ] {
        assert!(named.contains(name), "the rules no longer read {name}");
    }
    let missing: Vec<&String> = named
        .iter()
        .filter(|name| !exported.contains_key(*name))
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");
}
