//! Prometheus metrics: the recorder and its upkeep, every metric's HELP text, and the series
//! known in advance registered at zero.
//!
//! The recorder is installed once per process (the `metrics` facade is global by design). The
//! exporter has no HTTP listener of its own (`/metrics` is a route of ours), so nothing drains
//! its histogram buckets but [`PrometheusHandle::run_upkeep`]: without the periodic upkeep
//! below, every recorded sample would be kept until the next scrape.

use std::time::Duration;

use metrics_exporter_prometheus::{
    BuildError, Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Send durations, seconds: a local mock answers in microseconds, a provider in tens of
/// milliseconds, a stalled one at the timeout.
const SEND_DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Operations per SQLite commit (group commit): 1 at low load, up to the writer's cap of 256.
/// Buckets rather than the exporter's default summary: they show how often batches of each
/// size formed, which is what tells whether group commit is at work.
const STORE_BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// API request durations, seconds: most answers take well under a millisecond, a send one
/// provider round trip, the slowest the request deadline.
const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn recorder_builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("sms_send_duration_seconds".to_owned()),
            SEND_DURATION_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("store_batch_size".to_owned()),
            STORE_BATCH_SIZE_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("http_request_duration_seconds".to_owned()),
            REQUEST_DURATION_BUCKETS,
        )
}

/// The process's recorder (`serve`).
pub fn install_metrics_recorder() -> Result<PrometheusHandle, BuildError> {
    recorder_builder()?.install_recorder()
}

/// A recorder of its own, not installed: for a host in a test process, set as the local
/// recorder of the threads that run it.
pub fn build_metrics_recorder() -> Result<PrometheusRecorder, BuildError> {
    Ok(recorder_builder()?.build_recorder())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric the host exports: its name, kind and HELP text.
#[derive(Debug, Clone, Copy)]
pub struct MetricDescription {
    pub name: &'static str,
    pub kind: MetricKind,
    pub help: &'static str,
}

const fn metric(name: &'static str, kind: MetricKind, help: &'static str) -> MetricDescription {
    MetricDescription { name, kind, help }
}

/// Every metric the host exports (the README's table says the same).
pub const METRICS: &[MetricDescription] = &[
    metric("build_info", MetricKind::Gauge, "Always 1; the labels say which build runs (version, git_commit)."),
    metric("http_requests_total", MetricKind::Counter, "HTTP requests answered, by route template (`unmatched` when no route matched) and status."),
    metric("http_request_duration_seconds", MetricKind::Histogram, "Time to answer an HTTP request, by route template."),
    metric("http_refusals_total", MetricKind::Counter, "Error answers (4xx and 5xx), by the error's code (auth.unauthorized, request.message_rate_limited, sms.blocked, store.unavailable, ...)."),
    metric("http_requests_in_flight", MetricKind::Gauge, "API requests in progress (limit: --max-in-flight)."),
    metric("http_requests_shed_total", MetricKind::Counter, "API requests refused at once with 503 server.overloaded: --max-in-flight requests were in progress."),
    metric("http_timeouts_total", MetricKind::Counter, "Requests or connections cut by a deadline, by kind: head (the request head), body (the request body), request (no answer in time; the work goes on), write (the client took no response)."),
    metric("http_connections_open", MetricKind::Gauge, "Client connections open (limit: --max-connections)."),
    metric("http_connections_refused_total", MetricKind::Counter, "Connections closed at once: --max-connections were open, none of them idle."),
    metric("http_connections_evicted_total", MetricKind::Counter, "Idle or slow connections closed to make room for new ones."),
    metric("http_accept_errors_total", MetricKind::Counter, "Errors accepting connections (out of descriptors or memory)."),
    metric("store_up", MetricKind::Gauge, "1 when the store answers, 0 when it cannot be reached (PostgreSQL checked every second; SQLite always 1)."),
    metric("store_batch_size", MetricKind::Histogram, "Operations per SQLite commit (group commit)."),
    metric("live_connector_configured", MetricKind::Gauge, "1 when an SMS connector is live, 0 when none is."),
    metric("live_connector_ready", MetricKind::Gauge, "1 when the live SMS connector can send here, 0 when none is live or it cannot send (its plugin missing, its config refused or unreadable)."),
    metric("live_connector_swaps_total", MetricKind::Counter, "Changes of the live SMS connector on this host."),
    metric("sms_sends_total", MetricKind::Counter, "Sends through a connector, by factory, purpose (message, verification_code, config_test) and outcome (sent, connector_error, upstream_error: not sent, outcome_unknown: maybe sent)."),
    metric("sms_delivery_reports_total", MetricKind::Counter, "Delivery reports read, by connector (factory) and the status they give (queued, sent, delivered, undelivered, failed, unknown)."),
    metric("sms_send_to_delivered_seconds", MetricKind::Histogram, "Time from a send to its first delivered report, by connector (factory)."),
    metric("sms_delivery_report_refusals_total", MetricKind::Counter, "Delivery reports refused, by reason: unknown_connector, bad_token, bad_signature, malformed, unsupported, unavailable, store."),
    metric("sms_message_log_writes_lost_total", MetricKind::Counter, "Message-log writes (a message or a send's outcome) the store refused: the sends went out, their log entries are missing."),
    metric("sms_fallback_sends_total", MetricKind::Counter, "Sends the standby connector made, by reason: unreachable or not_accepted (the live connector's provider took nothing), breaker_open (the live connector was skipped), live_unavailable (the live connector cannot send on this host)."),
    metric("sms_fallback_breaker_state", MetricKind::Gauge, "This host's breaker of the live connector: 0 closed, 1 open (sends go to the standby), 2 half-open (one send probes the live connector)."),
    metric("sms_plugin_worker_failures_total", MetricKind::Counter, "Plugin worker processes (--plugin-isolation process) that died or were killed during a call, by factory; each is replaced, and the call replayed once."),
    metric("sms_fallback_connector_ready", MetricKind::Gauge, "1 when a standby (fallback) connector is marked and can send here."),
    metric("sms_delivery_reports_unmatched_total", MetricKind::Counter, "Delivery reports for a message the log does not have (never sent here, or past its retention): answered 200 and counted."),
    metric("sms_send_failures_total", MetricKind::Counter, "Failed sends, by factory and error: the connector's error code (invalid_config, rate_limit_exceeded, ...), unreachable (not sent) or outcome_unknown (maybe sent)."),
    metric("sms_send_duration_seconds", MetricKind::Histogram, "Time of a send through a connector, by factory."),
    metric("sms_connector_busy_total", MetricKind::Counter, "Sends refused with 503 connector.busy: the connector had --max-vendor-concurrency sends in progress."),
    metric("sms_rate_limited_total", MetricKind::Counter, "Sends refused before the connector, by reason: window (per-recipient limit), cooldown (resend cooldown), country (not allowed), console_tests (the console's test budget)."),
    metric("sms_sends_blocked_total", MetricKind::Counter, "Sends the SMS-pumping protection blocked (mode enforce) or would have blocked (mode monitor), by reason."),
    metric("verification_codes_issued_total", MetricKind::Counter, "Verification codes sent."),
    metric("verification_codes_verified_total", MetricKind::Counter, "Verification codes checked and found right."),
    metric("verification_codes_failed_total", MetricKind::Counter, "Verification code checks that failed, by Logto's reason (not_found, expired, exceed_max_try, code_mismatch)."),
    metric("verification_code_checks_total", MetricKind::Counter, "Verification code checks, by result: verified, wrong, expired, too_many_attempts, not_found, store_error."),
];

/// The results of `verification_code_checks_total`.
pub const VERIFICATION_RESULTS: [&str; 6] = [
    "verified",
    "wrong",
    "expired",
    "too_many_attempts",
    "not_found",
    "store_error",
];

/// Gives every metric its HELP text, and registers at zero every series the host knows in
/// advance, so `rate()` and `absent()` work from the first scrape rather than from the first
/// event. Series of a route, a factory or a status appear with their first use (each
/// factory's send series when its connector goes live). Uses the current recorder: the
/// process's, or a test's local one.
pub fn register_metrics(refusal_codes: &[String]) {
    for metric in METRICS {
        match metric.kind {
            MetricKind::Counter => metrics::describe_counter!(metric.name, metric.help),
            MetricKind::Gauge => metrics::describe_gauge!(metric.name, metric.help),
            MetricKind::Histogram => metrics::describe_histogram!(metric.name, metric.help),
        }
    }
    metrics::gauge!("build_info", "version" => env!("CARGO_PKG_VERSION"), "git_commit" => option_env!("CONNECTOR_HOST_GIT_COMMIT").unwrap_or("unknown")).set(1.0);
    for code in refusal_codes {
        metrics::counter!("http_refusals_total", "code" => code.clone()).increment(0);
    }
    for result in VERIFICATION_RESULTS {
        metrics::counter!("verification_code_checks_total", "result" => result).increment(0);
    }
    for reason in ["not_found", "expired", "exceed_max_try", "code_mismatch"] {
        metrics::counter!("verification_codes_failed_total", "reason" => reason).increment(0);
    }
    for reason in ["window", "cooldown", "country", "console_tests"] {
        metrics::counter!("sms_rate_limited_total", "reason" => reason).increment(0);
    }
    for reason in crate::protection::BlockReason::ALL.map(crate::protection::BlockReason::label) {
        for mode in ["monitor", "enforce"] {
            metrics::counter!("sms_sends_blocked_total", "reason" => reason, "mode" => mode)
                .increment(0);
        }
    }
    for kind in ["head", "body", "request", "write"] {
        metrics::counter!("http_timeouts_total", "kind" => kind).increment(0);
    }
    for reason in crate::send::fallback::FallbackReason::ALL {
        metrics::counter!("sms_fallback_sends_total", "reason" => reason.label()).increment(0);
    }
    for name in [
        "verification_codes_issued_total",
        "verification_codes_verified_total",
        "http_requests_shed_total",
        "http_connections_refused_total",
        "http_connections_evicted_total",
        "http_accept_errors_total",
        "live_connector_swaps_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::gauge!("http_connections_open").set(0.0);
    metrics::gauge!("http_requests_in_flight").set(0.0);
}

/// `store_up`: set once the store is opened, then by each check of a shared store.
pub fn report_store_up(up: bool) {
    metrics::gauge!("store_up").set(f64::from(u8::from(up)));
}

/// Drains the recorder's buckets every few seconds, for as long as the host runs.
pub async fn run_metrics_upkeep(handle: PrometheusHandle) {
    let mut interval = tokio::time::interval(Duration::from_secs(5));
    loop {
        interval.tick().await;
        handle.run_upkeep();
    }
}
