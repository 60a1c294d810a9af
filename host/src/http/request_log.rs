//! What every request leaves behind: `http_requests_total{route,status}` and
//! `http_request_duration_seconds{route}` (the route template, never the raw path, so the
//! series stay few), a line in the optional access log (`--access-log`), and a log line for
//! the refusals an operator watches (401, 403, 429) and for the store or a connector being
//! unavailable, each kind at most once every few seconds with a count of those left out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use crate::api_keys::KeyId;
use crate::log_dedup::{LeftOut, LogDedup};

/// One line per kind of refusal or failure at most this often.
const REPEAT_INTERVAL: Duration = Duration::from_secs(5);

/// The route label of a request no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The client's address, put in each request's extensions by the connection loop (absent
/// when the router is called without it, as in-process tests do).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub SocketAddr);

/// What an error answer tells the request log, put in the response's extensions by
/// `ApiError`: its code, and for a failure the operator must see (the store or a connector
/// unavailable) the reason, which is never sent to the client.
#[derive(Debug, Clone)]
pub struct ErrorReport {
    pub code: String,
    pub logged_reason: Option<String>,
}

pub struct RequestLog {
    access_log: bool,
    series: RwLock<Series>,
    /// 401, 403 and 429, per code and key (or client).
    refusals: LogDedup,
    /// The store or a connector unavailable, per code and reason.
    failures: LogDedup,
}

/// Each route's series, registered on first use rather than looked up by name and labels on
/// every request.
#[derive(Default)]
struct Series {
    requests: HashMap<u16, HashMap<String, metrics::Counter>>,
    durations: HashMap<String, metrics::Histogram>,
}

impl RequestLog {
    pub fn new(access_log: bool) -> Self {
        Self {
            access_log,
            series: RwLock::new(Series::default()),
            refusals: LogDedup::new(REPEAT_INTERVAL),
            failures: LogDedup::new(REPEAT_INTERVAL),
        }
    }

    fn count(&self, route: &str, status: StatusCode, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        {
            let series = self
                .series
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let counter = series
                .requests
                .get(&status.as_u16())
                .and_then(|routes| routes.get(route));
            if let (Some(counter), Some(duration)) = (counter, series.durations.get(route)) {
                counter.increment(1);
                duration.record(seconds);
                return;
            }
        }
        let mut series = self
            .series
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        series
            .requests
            .entry(status.as_u16())
            .or_default()
            .entry(route.to_owned())
            .or_insert_with(|| {
                metrics::counter!("http_requests_total", "route" => route.to_owned(), "status" => status.as_str().to_owned())
            })
            .increment(1);
        series
            .durations
            .entry(route.to_owned())
            .or_insert_with(|| {
                metrics::histogram!("http_request_duration_seconds", "route" => route.to_owned())
            })
            .record(seconds);
    }

    /// A refusal or failure worth a line, at most one per kind per interval.
    fn report(
        &self,
        status: StatusCode,
        report: &ErrorReport,
        key: Option<KeyId>,
        client: Option<ClientAddress>,
    ) {
        let now = Instant::now();
        if let Some(reason) = &report.logged_reason {
            let Some(left_out) = self
                .failures
                .admit(&format!("{} {reason}", report.code), now)
            else {
                return;
            };
            log_failure(&report.code, reason, left_out);
            return;
        }
        if !matches!(
            status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
        ) {
            return;
        }
        let who = match (key, client) {
            (Some(key), _) => key.to_string(),
            (None, Some(ClientAddress(address))) => address.ip().to_string(),
            (None, None) => "-".to_owned(),
        };
        let Some(left_out) = self.refusals.admit(&format!("{} {who}", report.code), now) else {
            return;
        };
        let key_id = key.map(|key| key.to_string());
        let key_id = key_id.as_deref().unwrap_or("-");
        let client = client.map(|ClientAddress(address)| address.ip().to_string());
        let client = client.as_deref().unwrap_or("-");
        let code = report.code.as_str();
        let status = status.as_u16();
        match (status, left_out.is_none()) {
            (429, true) => tracing::info!(status, %code, %key_id, %client, "request refused"),
            (429, false) => {
                tracing::info!(status, %code, %key_id, %client, left_out = left_out.count, "request refused; {left_out}")
            }
            (_, true) => tracing::warn!(status, %code, %key_id, %client, "request refused"),
            (_, false) => {
                tracing::warn!(status, %code, %key_id, %client, left_out = left_out.count, "request refused; {left_out}")
            }
        }
    }

    /// The end of each flood: how many lines were left out since the last one written.
    pub fn report_quiet_floods(&self) {
        let now = Instant::now();
        for (kind, left_out) in self.failures.take_quiet(now) {
            let (code, reason) = kind.split_once(' ').unwrap_or((kind.as_str(), ""));
            log_failure(code, reason, left_out);
        }
        for (kind, left_out) in self.refusals.take_quiet(now) {
            let (code, who) = kind.split_once(' ').unwrap_or((kind.as_str(), ""));
            tracing::info!(%code, %who, left_out = left_out.count, "request refused; {left_out} (the flood is over)");
        }
    }
}

fn log_failure(code: &str, reason: &str, left_out: LeftOut) {
    let what = match code {
        "store.unavailable" => "store unavailable",
        "connector.unavailable" => "connector unavailable on this host",
        _ => "request failed",
    };
    if left_out.is_none() {
        tracing::warn!(%code, %reason, "{what}");
    } else {
        tracing::warn!(%code, %reason, left_out = left_out.count, "{what}; {left_out}");
    }
}

/// Reports the end of floods every few seconds, for as long as the host serves.
pub async fn report_quiet_floods_periodically(log: Arc<RequestLog>) {
    let mut interval = tokio::time::interval(REPEAT_INTERVAL);
    loop {
        interval.tick().await;
        log.report_quiet_floods();
    }
}

/// The middleware around the whole router (`from_fn_with_state`).
pub async fn log_request(
    State(log): State<Arc<RequestLog>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let client = request.extensions().get::<ClientAddress>().copied();
    let method = log.access_log.then(|| request.method().clone());
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let route = route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
    let status = response.status();
    log.count(route, status, elapsed);
    let key = response.extensions().get::<KeyId>().copied();
    if let Some(report) = response.extensions().get::<ErrorReport>() {
        log.report(status, report, key, client);
    }
    if let Some(method) = method {
        let key_id = key.map(|key| key.to_string());
        let client = client.map(|ClientAddress(address)| address.to_string());
        // Microseconds, as milliseconds with three decimals.
        let latency_ms = elapsed.as_micros() as f64 / 1000.0;
        tracing::info!(
            target: "access_log",
            method = %method,
            route = %route,
            status = status.as_u16(),
            latency_ms,
            key_id = %key_id.as_deref().unwrap_or("-"),
            client = %client.as_deref().unwrap_or("-"),
            "request"
        );
    }
    response
}
