//! A delivery report received: the host's token checked first (it costs no store read), then
//! the connector (a retired one still reads the late reports of the messages it sent; a
//! deleted one is unknown), its own check (its signature) and reading, then each status
//! recorded in the message log.

use plugin_api::{DeliveryReportError, DeliveryStatus, InboundReport};

use crate::plugins::module::{PluginInstance, ReportReadError};

use crate::plugins::factory_registry::FactoryRegistry;
use crate::send::message_tracking::MessageTracking;
use crate::store::message_log::{EventOutcome, EventSource, MessageEvent};
use crate::store::{now_millis, Store, StoreError};

/// Why a report was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReportRefusal {
    #[error("no connector {0:?}")]
    UnknownConnector(String),
    /// The URL's token is not the host's for this connector and message (or missing).
    #[error("the report URL's token is not this host's for connector {0:?} and this message")]
    BadToken(String),
    /// The connector's plugin is not loaded here: the report cannot be checked now (the
    /// provider retries).
    #[error("the plugin of connector {connector_id:?} cannot read it now: {reason}")]
    Unavailable {
        connector_id: String,
        reason: String,
    },
    #[error("connector {0:?} takes no delivery reports")]
    Unsupported(String),
    #[error("{0}")]
    BadSignature(String),
    #[error("{0}")]
    Malformed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReportRefusal {
    /// The `reason` label of `sms_delivery_report_refusals_total`.
    pub fn label(&self) -> &'static str {
        match self {
            ReportRefusal::UnknownConnector(_) => "unknown_connector",
            ReportRefusal::BadToken(_) => "bad_token",
            ReportRefusal::Unavailable { .. } => "unavailable",
            ReportRefusal::Unsupported(_) => "unsupported",
            ReportRefusal::BadSignature(_) => "bad_signature",
            ReportRefusal::Malformed(_) => "malformed",
            ReportRefusal::Store(_) => "store",
        }
    }

    pub const LABELS: [&'static str; 7] = [
        "unknown_connector",
        "bad_token",
        "unavailable",
        "unsupported",
        "bad_signature",
        "malformed",
        "store",
    ];
}

/// What a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportReceived {
    /// The statuses read, each with what recording it did.
    pub statuses: Vec<(DeliveryStatus, EventOutcome)>,
}

/// Where the report came from and what it carries.
pub struct IncomingReport<'a> {
    pub connector_id: &'a str,
    /// The URL's `m` and `t`.
    pub message_id: Option<&'a str>,
    pub token: Option<&'a str>,
    pub report: InboundReport,
}

/// The live connector, when it is the one reported on (its instance is at hand).
pub struct LiveInstance<'a> {
    pub connector_id: &'a str,
    pub instance: &'a PluginInstance,
}

pub async fn receive(
    tracking: &MessageTracking,
    store: &dyn Store,
    factories: &FactoryRegistry,
    live: Option<LiveInstance<'_>>,
    incoming: IncomingReport<'_>,
) -> Result<ReportReceived, ReportRefusal> {
    let connector_id = incoming.connector_id;
    // The token first: it costs an HMAC, and a forged report costs the store nothing.
    let message_id = match (incoming.message_id, incoming.token) {
        (Some(message_id), Some(token))
            if tracking.token_matches(connector_id, message_id, token) =>
        {
            message_id
        }
        _ => return Err(ReportRefusal::BadToken(connector_id.to_owned())),
    };
    // A token this host made, for a connector deleted since.
    let record = store
        .get(connector_id)
        .await?
        .ok_or_else(|| ReportRefusal::UnknownConnector(connector_id.to_owned()))?;
    let built;
    let instance = match live {
        Some(live) if live.connector_id == connector_id => live.instance,
        _ => {
            let factory =
                factories
                    .get(&record.factory_id)
                    .ok_or_else(|| ReportRefusal::Unavailable {
                        connector_id: connector_id.to_owned(),
                        reason: format!("no loaded plugin provides {:?}", record.factory_id),
                    })?;
            built = factory
                .plugin
                .module
                .instantiate(&record.config)
                .map_err(|error| ReportRefusal::Unavailable {
                    connector_id: connector_id.to_owned(),
                    reason: error.message,
                })?;
            &built
        }
    };
    let reports = instance
        .parse_delivery_report(&incoming.report)
        .await
        .map_err(|error| match error {
            ReportReadError::Report(DeliveryReportError::Unsupported) => {
                ReportRefusal::Unsupported(connector_id.to_owned())
            }
            ReportReadError::Report(DeliveryReportError::BadSignature(reason)) => {
                ReportRefusal::BadSignature(reason)
            }
            ReportReadError::Report(DeliveryReportError::Malformed(reason)) => {
                ReportRefusal::Malformed(reason)
            }
            ReportReadError::Report(other) => ReportRefusal::Malformed(other.to_string()),
            // The provider retries a 503: the report is read by a fresh worker then.
            ReportReadError::WorkerLost(reason) => ReportRefusal::Unavailable {
                connector_id: connector_id.to_owned(),
                reason: format!("the plugin's worker process failed reading the report: {reason}"),
            },
        })?;
    let mut statuses = Vec::with_capacity(reports.len());
    for report in reports {
        let outcome = tracking
            .record_report(
                message_id,
                MessageEvent {
                    at: now_millis(),
                    status: report.status,
                    provider_status: report.provider_status,
                    error_code: report.error_code.unwrap_or_default(),
                    source: EventSource::Report,
                    provider_message_id: report.provider_message_id,
                },
            )
            .await?;
        metrics::counter!("sms_delivery_reports_total", "connector" => record.factory_id.clone(), "status" => report.status.as_str())
            .increment(1);
        if outcome == EventOutcome::UnknownMessage {
            metrics::counter!("sms_delivery_reports_unmatched_total").increment(1);
        }
        if outcome == EventOutcome::Advanced && report.status == DeliveryStatus::Delivered {
            if let Some((message, _)) = tracking.log().message(message_id).await? {
                let seconds = (now_millis() - message.created_at).max(0) as f64 / 1000.0;
                metrics::histogram!("sms_send_to_delivered_seconds", "connector" => record.factory_id.clone())
                    .record(seconds);
            }
        }
        statuses.push((report.status, outcome));
    }
    Ok(ReportReceived { statuses })
}
