//! `GET|POST /dlr/{connectorId}`: providers' delivery reports, outside `/api` and without an
//! API key (providers hold none): the host's token in the URL and the connector's own
//! signature check stand in for one. Capped in size and rate, answered at once.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use plugin_api::InboundReport;

use crate::api_error::ApiError;
use crate::send::delivery_reports::{self, IncomingReport, LiveInstance};
use crate::send::message_tracking::{MESSAGE_PARAMETER, TOKEN_PARAMETER};
use crate::state::AppState;

/// A report's body at most: providers send a few hundred bytes.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;

/// Reads a provider's report; 200 once it is recorded (or its message is unknown: providers
/// retry on errors, and a message past retention will never be known again).
pub async fn receive_report(
    State(state): State<Arc<AppState>>,
    Path(connector_id): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let body = body.map_err(|_| ApiError::PayloadTooLarge {
        limit_bytes: MAX_REPORT_BYTES,
    })?;
    if state.delivery_report_limiter.check().is_err() {
        return Err(ApiError::ReportsOverLimit);
    }
    let Some(public_url) = state.config.delivery_reports.public_url.as_deref() else {
        return Err(ApiError::NoDeliveryReports);
    };
    let query = query.unwrap_or_default();
    // The URL as the provider called it and signed it: this host's public URL, never a
    // forwarded header.
    let mut url = format!("{public_url}/dlr/{connector_id}");
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query);
    }
    let report = headers
        .iter()
        .fold(
            InboundReport::new(method.as_str(), url),
            |report, (name, value)| {
                report.with_header(name.as_str(), String::from_utf8_lossy(value.as_bytes()))
            },
        )
        .with_body(body.to_vec());
    let parameters = report.query_pairs();
    let parameter = |name: &str| {
        parameters
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let live = state.live.current();
    let live_instance = live.as_ref().and_then(|live| match &live.status {
        crate::live::live_connector::LiveStatus::Ready { instance, .. } => Some(LiveInstance {
            connector_id: &live.connector_id,
            instance,
        }),
        _ => None,
    });
    let factories = state.factories.load();
    let received = delivery_reports::receive(
        &state.sender.tracking,
        state.store(),
        &factories,
        live_instance,
        IncomingReport {
            connector_id: &connector_id,
            message_id: parameter(MESSAGE_PARAMETER),
            token: parameter(TOKEN_PARAMETER),
            report,
        },
    )
    .await;
    match received {
        Ok(received) => {
            tracing::debug!(%connector_id, message_id = parameter(MESSAGE_PARAMETER).unwrap_or(""), statuses = ?received.statuses, "delivery report");
            Ok(StatusCode::OK)
        }
        Err(refusal) => {
            metrics::counter!("sms_delivery_report_refusals_total", "reason" => refusal.label())
                .increment(1);
            tracing::info!(%connector_id, reason = %refusal, "delivery report refused");
            Err(ApiError::from(refusal))
        }
    }
}
