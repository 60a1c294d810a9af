//! Sending one message to a recipient, the way every route does it: country allowlist and
//! per-recipient limits first (OWASP API4: SMS pumping), then the connector, with one log
//! line and metrics for each send. The code and secrets are never logged; the phone
//! appears masked to its last four digits.
//!
//! # Layout
//! - this module: [`send_with_flow_control`] = [`reserve_send`] then [`send_reserved`], the
//!   live connector as a [`SendTarget`], [`SendMetrics`].
//! - [`flow_control`]: the per-recipient window and resend cooldown, in memory or shared.
//! - [`executor`]: performs the HTTP requests a connector describes and drives its steps.
//! - [`outbox`]: the host's outbox, the one destination of development connectors.
//! - [`vendor_concurrency`]: at most so many sends in progress through one connector.

pub mod executor;
pub mod flow_control;
pub mod outbox;
pub mod provider_networks;
pub mod vendor_concurrency;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugin_api::{ConnectorInstance, SendReceipt, SmsMessage, TemplateType};
use serde::Serialize;
use tracing::Instrument;

use crate::api_error::ApiError;
use crate::live_connector::{LiveConnector, LiveStatus};
use crate::phone::PhoneNumber;
use crate::secret_redaction::SecretRedactor;
use crate::send::executor::SendError;
use crate::send::flow_control::{LimitError, SendRefusal, SendSlot};
use crate::state::AppState;

/// The flow-control limits, reported in `GET /health`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SendLimits {
    /// Successful sends per recipient per window (Logto: 10 per 600 s).
    pub max_sends_per_recipient: u32,
    #[serde(serialize_with = "as_seconds", rename = "windowSeconds")]
    pub window: Duration,
    /// Between two codes of the same type to the same recipient.
    #[serde(serialize_with = "as_seconds", rename = "resendCooldownSeconds")]
    pub resend_cooldown: Duration,
    /// ISO 3166 region codes; `None` allows every country.
    pub allowed_countries: Option<BTreeSet<String>>,
}

impl Default for SendLimits {
    fn default() -> Self {
        Self {
            max_sends_per_recipient: 10,
            window: Duration::from_secs(600),
            resend_cooldown: Duration::from_secs(60),
            allowed_countries: None,
        }
    }
}

pub(crate) fn as_seconds<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_secs())
}

/// Why a message is sent: decides the cooldown and labels the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendPurpose {
    /// `POST /api/messages`.
    Message,
    /// `POST /api/verification-codes`: the resend cooldown applies.
    VerificationCode,
    /// `POST /api/connectors/{factoryId}/test`.
    ConfigTest,
}

impl SendPurpose {
    const ALL: [SendPurpose; 3] = [
        SendPurpose::Message,
        SendPurpose::VerificationCode,
        SendPurpose::ConfigTest,
    ];

    fn label(self) -> &'static str {
        match self {
            SendPurpose::Message => "message",
            SendPurpose::VerificationCode => "verification_code",
            SendPurpose::ConfigTest => "config_test",
        }
    }
}

/// How a send ended, as the `outcome` label of `sms_sends_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendOutcome {
    Sent,
    ConnectorError,
    UpstreamError,
}

impl SendOutcome {
    const ALL: [SendOutcome; 3] = [
        SendOutcome::Sent,
        SendOutcome::ConnectorError,
        SendOutcome::UpstreamError,
    ];

    fn of(result: &Result<SendReceipt, SendError>) -> Self {
        match result {
            Ok(_) => SendOutcome::Sent,
            Err(SendError::Connector(_)) => SendOutcome::ConnectorError,
            Err(SendError::Upstream(_)) => SendOutcome::UpstreamError,
        }
    }

    fn label(self) -> &'static str {
        match self {
            SendOutcome::Sent => "sent",
            SendOutcome::ConnectorError => "connector_error",
            SendOutcome::UpstreamError => "upstream_error",
        }
    }
}

/// A factory's send metrics, registered once (when its live connector is built) rather than
/// looked up by name and labels on every send: a lookup allocated the labels and hashed the
/// key, about half a microsecond a send.
pub struct SendMetrics {
    duration_seconds: metrics::Histogram,
    /// `sms_sends_total`, indexed by purpose then outcome (the `ALL` orders).
    sends: [[metrics::Counter; 3]; 3],
}

impl SendMetrics {
    pub fn for_factory(factory_id: &str) -> Self {
        let counter = |purpose: SendPurpose, outcome: SendOutcome| metrics::counter!("sms_sends_total", "factory" => factory_id.to_owned(), "purpose" => purpose.label(), "outcome" => outcome.label());
        Self {
            duration_seconds: metrics::histogram!("sms_send_duration_seconds", "factory" => factory_id.to_owned()),
            sends: SendPurpose::ALL
                .map(|purpose| SendOutcome::ALL.map(|outcome| counter(purpose, outcome))),
        }
    }

    /// `ALL` lists each enum in declaration order, so a variant's discriminant is its index.
    fn count(&self, purpose: SendPurpose, outcome: SendOutcome) {
        self.sends[purpose as usize][outcome as usize].increment(1);
    }
}

/// The connector a send goes through.
pub struct SendTarget<'a> {
    pub connector_id: &'a str,
    pub factory_id: &'a str,
    pub instance: &'a ConnectorInstance,
    pub metrics: &'a SendMetrics,
    /// Applied to the send's error, receipt and log line.
    pub redactor: &'a SecretRedactor,
}

/// The live connector, or `501 connector.not_found` when none is. The caller keeps the `Arc`
/// until its send is done, so a swap meanwhile does not touch it.
pub fn current_live_connector(state: &AppState) -> Result<Arc<LiveConnector>, ApiError> {
    state.live.load_full().ok_or_else(|| {
        ApiError::NoLiveConnector(
            "no SMS connector is live: create one with POST /api/connectors".to_owned(),
        )
    })
}

impl<'a> SendTarget<'a> {
    /// The live connector as a send target, or why it cannot send (`501 connector.not_found`).
    pub fn live(live: &'a LiveConnector) -> Result<Self, ApiError> {
        match &live.status {
            LiveStatus::Ready { instance, .. } => Ok(Self {
                connector_id: &live.connector_id,
                factory_id: &live.factory_id,
                instance,
                metrics: &live.send_metrics,
                redactor: &live.redactor,
            }),
            LiveStatus::Unavailable { reason } => Err(ApiError::NoLiveConnector(format!(
                "the live connector {} cannot send: {reason}",
                live.connector_id
            ))),
            LiveStatus::ConfigUnreadable { reason } => Err(ApiError::ConnectorUnavailable {
                connector_id: live.connector_id.clone(),
                reason: reason.clone(),
            }),
        }
    }
}

/// `+12015550123` → `***0123`.
pub fn masked_phone(e164: &str) -> String {
    let last_four_start = e164
        .char_indices()
        .rev()
        .nth(3)
        .map_or(0, |(index, _)| index);
    format!("***{}", &e164[last_four_start..])
}

/// Refuses a recipient outside the allowlist, before anything is sent.
pub fn check_country(limits: &SendLimits, phone: &PhoneNumber) -> Result<(), ApiError> {
    let Some(allowed) = &limits.allowed_countries else {
        return Ok(());
    };
    match phone.region() {
        Some(region) if allowed.contains(region) => Ok(()),
        region => {
            metrics::counter!("sms_rate_limited_total", "reason" => "country").increment(1);
            Err(ApiError::CountryNotAllowed {
                region: region.unwrap_or("unknown").to_owned(),
            })
        }
    }
}

/// Checks the limits, sends, and counts the send only when it succeeded.
pub async fn send_with_flow_control(
    state: &AppState,
    target: SendTarget<'_>,
    phone: &PhoneNumber,
    message: SmsMessage,
    purpose: SendPurpose,
    client_ip: Option<IpAddr>,
) -> Result<SendReceipt, ApiError> {
    let reservation =
        reserve_send(state, phone, message.template_type(), purpose, client_ip).await?;
    send_reserved(state, reservation, target, phone, message, purpose).await
}

/// The flow-control half of a send: refuses a recipient outside the allowlist, over the
/// per-recipient limit or (for codes) inside the resend cooldown, and otherwise takes a slot
/// in the send log.
///
/// `client_ip` is the end user's address when the caller gave one (Logto's `ip`): the input
/// of per-client SMS-pumping protection, which will be decided here, before any cost (issue
/// 24). The per-recipient rules do not use it. It is personal data: never logged.
pub async fn reserve_send(
    state: &AppState,
    phone: &PhoneNumber,
    template_type: TemplateType,
    purpose: SendPurpose,
    client_ip: Option<IpAddr>,
) -> Result<SendSlot, ApiError> {
    let _ = client_ip;
    check_country(&state.config.send_limits, phone)?;
    let with_cooldown = purpose == SendPurpose::VerificationCode;
    state
        .send_limiter
        .reserve(phone.e164(), template_type, with_cooldown)
        .await
        .map_err(|error| match error {
            LimitError::Refused(refusal) => {
                let reason = match refusal {
                    SendRefusal::RateLimited { .. } => "window",
                    SendRefusal::Cooldown { .. } => "cooldown",
                };
                metrics::counter!("sms_rate_limited_total", "reason" => reason).increment(1);
                tracing::info!(phone = %masked_phone(phone.e164()), reason, "send refused by flow control");
                ApiError::from(refusal)
            }
            // Fail closed: no decision, no send.
            LimitError::StoreUnavailable(error) => ApiError::from(error),
        })
}

/// The sending half: through the connector, with a span, a log line and metrics; a failed
/// send gives its slot back, so only successful sends count against the recipient.
pub async fn send_reserved(
    state: &AppState,
    reservation: SendSlot,
    target: SendTarget<'_>,
    phone: &PhoneNumber,
    message: SmsMessage,
    purpose: SendPurpose,
) -> Result<SendReceipt, ApiError> {
    let recipient = masked_phone(phone.e164());
    // Held to the end of the exchange with the provider.
    let Some(_vendor_slot) = state
        .vendor_concurrency
        .try_acquire(target.factory_id, target.connector_id)
    else {
        metrics::counter!("sms_connector_busy_total", "factory" => target.factory_id.to_owned())
            .increment(1);
        tracing::warn!(connector_id = %target.connector_id, factory_id = %target.factory_id, phone = %recipient, purpose = purpose.label(), "send refused: the connector is at its limit of sends in progress");
        state.send_limiter.release(reservation).await;
        return Err(ApiError::ConnectorBusy {
            connector_id: target.connector_id.to_owned(),
            limit: state.vendor_concurrency.max_sends_per_connector(),
        });
    };
    // Debug level: the span gives the executor's own debug lines (connect retries) their
    // context. The outcome line carries the same fields at info, so a send at the default
    // level formats one line instead of a span and a line (~4 % of the host's CPU).
    let span = tracing::debug_span!(
        "send",
        connector_id = %target.connector_id,
        factory_id = %target.factory_id,
        template_type = %message.template_type(),
        phone = %recipient,
        purpose = purpose.label(),
    );
    let started = Instant::now();
    let origin = outbox::SendOrigin {
        // A config test sends through an unsaved config: no connector id.
        connector_id: (purpose != SendPurpose::ConfigTest).then_some(target.connector_id),
        factory_id: target.factory_id,
    };
    let result = state
        .send_executor
        .send(origin, target.instance, &message)
        .instrument(span)
        .await;
    // The provider may echo a credential into its answer: nothing of it leaves the process.
    let result = redact_send_result(target.redactor, result);
    let elapsed = started.elapsed();
    target
        .metrics
        .duration_seconds
        .record(elapsed.as_secs_f64());
    let outcome = SendOutcome::of(&result);
    target.metrics.count(purpose, outcome);
    let outcome = outcome.label();
    let latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    // One line per send, the audit trail: who sent what kind of message to whom, and how it went.
    macro_rules! log_send {
        ($level:expr, $($extra:tt)*) => {
            tracing::event!(
                $level,
                connector_id = %target.connector_id,
                factory_id = %target.factory_id,
                template_type = %message.template_type(),
                phone = %recipient,
                purpose = purpose.label(),
                outcome,
                latency_ms,
                $($extra)*
            )
        };
    }
    match result {
        Ok(receipt) => {
            log_send!(tracing::Level::INFO, "sent");
            Ok(receipt)
        }
        Err(error) => {
            log_send!(tracing::Level::WARN, reason = %error, "send failed");
            state.send_limiter.release(reservation).await;
            Err(ApiError::from_send(
                error,
                purpose == SendPurpose::ConfigTest,
            ))
        }
    }
}

fn redact_send_result(
    redactor: &SecretRedactor,
    result: Result<SendReceipt, SendError>,
) -> Result<SendReceipt, SendError> {
    if redactor.is_empty() {
        return result;
    }
    match result {
        Ok(receipt) => Ok(redactor.redact_receipt(receipt)),
        Err(SendError::Connector(error)) => Err(SendError::Connector(redactor.redact_error(error))),
        Err(SendError::Upstream(reason)) => {
            Err(SendError::Upstream(redactor.redact(&reason).into_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_metrics_index_is_the_variants_place_in_all() {
        for (index, purpose) in SendPurpose::ALL.into_iter().enumerate() {
            assert_eq!(purpose as usize, index);
        }
        for (index, outcome) in SendOutcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome as usize, index);
        }
    }

    #[test]
    fn phones_are_masked_to_their_last_four_digits() {
        assert_eq!(masked_phone("+12015550123"), "***0123");
        assert_eq!(masked_phone("12"), "***12");
    }
}
