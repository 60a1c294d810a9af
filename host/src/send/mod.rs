//! Sending one message to a recipient, the way every route does it: country allowlist and
//! per-recipient limits first (OWASP API4: SMS pumping), then the connector, with one log
//! line and metrics for each send. The code and secrets are never logged; the phone
//! appears masked to its last four digits.
//!
//! # Layout
//! - this module: the [`Sender`] (limits, limiter, vendor concurrency, executor):
//!   [`Sender::send_with_flow_control`] = [`Sender::reserve_send`] then
//!   [`Sender::send_reserved`]; the live connector as a [`SendTarget`]; [`SendError`], why a
//!   send did not happen.
//! - [`metrics`]: why a message is sent, how a send ended, [`metrics::SendMetrics`].
//! - [`config_test`]: an unsaved config validated, then a code sent through it.
//! - [`verification_codes`]: a code issued (reserved, generated, stored, sent) and verified.
//! - [`flow_control`]: the per-recipient window and resend cooldown, in memory or shared.
//! - [`executor`]: performs the HTTP requests a connector describes and drives its steps.
//! - [`outbox`]: the host's outbox, the one destination of development connectors.
//! - [`vendor_concurrency`]: at most so many sends in progress through one connector.

pub mod admin_test_budget;
pub mod config_test;
pub mod delivery_reports;
pub mod executor;
pub mod fallback;
pub mod flow_control;
pub mod message_log_writer;
pub mod message_tracking;
pub mod metrics;
pub mod outbox;
pub mod provider_networks;
pub mod vendor_concurrency;
pub mod verification_codes;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use plugin_api::{SendReceipt, SmsMessage, TemplateType};

use crate::plugins::module::PluginInstance;
use serde::Serialize;
use tracing::Instrument;

use crate::live::live_connector::{LiveConnector, LiveStatus, NoLiveConnector};
use crate::phone::PhoneNumber;
use crate::protection::{Blocked, Protection, SendFacts, Verdict};
use crate::secret_redaction::SecretRedactor;
use crate::send::executor::{DeliveryError, SendExecutor};
use crate::send::flow_control::{LimitError, SendLimiter, SendRefusal, SendSlot};
use crate::send::metrics::{SendMetrics, SendOutcome, SendPurpose};
use crate::send::vendor_concurrency::VendorConcurrency;
use crate::store::StoreError;

/// The flow-control limits, reported in `GET /health`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SendLimits {
    /// Successful sends per recipient per window (Logto: 10 per 600 s).
    pub max_sends_per_recipient: u32,
    #[serde(
        serialize_with = "crate::durations::as_seconds",
        rename = "windowSeconds"
    )]
    pub window: Duration,
    /// Between two codes of the same type to the same recipient.
    #[serde(
        serialize_with = "crate::durations::as_seconds",
        rename = "resendCooldownSeconds"
    )]
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

/// Why a send did not happen. The HTTP edge decides what each one answers.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    NoLiveConnector(#[from] NoLiveConnector),
    /// The live connector cannot send (its plugin is missing, or rejects its saved config).
    #[error("the live connector {connector_id} cannot send: {reason}")]
    LiveConnectorUnavailable {
        connector_id: String,
        reason: String,
    },
    /// This host cannot open the live connector's saved config.
    #[error("connector {connector_id:?} cannot be used on this host: {reason}")]
    ConfigUnreadable {
        connector_id: String,
        reason: String,
    },
    #[error("phone numbers of region {region} are not allowed")]
    CountryNotAllowed { region: String },
    /// The console's tests have spent their own budget (`admin_test_budget`).
    #[error("the console's test budget is spent; retry in {retry_after_secs} s")]
    ConsoleTestsLimited { retry_after_secs: u64 },
    /// Refused by a protection layer (SMS pumping): nothing was reserved or sent.
    #[error("{}", .0.message)]
    Blocked(Blocked),
    /// Over the per-recipient limit or inside the resend cooldown.
    #[error("refused by flow control: {0:?}")]
    Refused(SendRefusal),
    /// The store could not decide or record (fail closed: nothing is sent).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The connector has its limit of sends in progress.
    #[error("connector {connector_id:?} has {limit} sends in progress, its limit")]
    ConnectorBusy { connector_id: String, limit: u32 },
    /// The connector or its provider refused or failed. `during_test`: the config was the
    /// client's (a config test), not the saved one.
    #[error("{error}")]
    Delivery {
        error: DeliveryError,
        during_test: bool,
    },
    /// The OS gave no randomness for a code.
    #[error("cannot generate a code: {0}")]
    CodeNotGenerated(String),
}

/// One send as every route does it: the limits, the limiter, the sends in progress per
/// connector and the executor.
pub struct Sender {
    pub limits: SendLimits,
    pub limiter: SendLimiter,
    pub vendor_concurrency: VendorConcurrency,
    pub executor: SendExecutor,
    /// Console tests' own budget, apart from the recipients' limits.
    pub admin_test_budget: admin_test_budget::AdminTestBudget,
    /// The SMS-pumping layers, decided before the per-recipient reservation (console tests
    /// have their own budget instead).
    pub protection: Protection,
    /// The refusals' log lines, one per block at once and then at most one per interval (a
    /// pumping flood would otherwise write one line per refused send; the metric counts each).
    pub protection_log: crate::log_dedup::LogDedup,
    /// Every send's id, delivery-report URL and outcome in the message log.
    pub tracking: message_tracking::MessageTracking,
    /// Skips a failing live connector for the standby (this host's own view).
    pub fallback_breaker: fallback::Breaker,
}

/// A send the provider accepted: its receipt and the host's id for the message.
#[derive(Debug, Clone)]
pub struct Sent {
    pub receipt: SendReceipt,
    pub message_id: String,
    /// The connector that sent it: the live one, or its standby.
    pub connector_id: String,
    pub factory_id: String,
    /// Why the standby sent it, when it did.
    pub fallback: Option<fallback::FallbackReason>,
}

/// How often a block's refusals are logged again, with how many were left out.
pub const PROTECTION_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The connector a send goes through.
pub struct SendTarget<'a> {
    pub connector_id: &'a str,
    pub factory_id: &'a str,
    pub instance: &'a PluginInstance,
    pub metrics: &'a SendMetrics,
    /// Applied to the send's error, receipt and log line.
    pub redactor: &'a SecretRedactor,
    /// The standby connector, which sends when this one's provider provably took nothing.
    pub standby: Option<&'a LiveConnector>,
    /// Set when this is the standby sending because the live connector cannot send at all
    /// ([`SendTarget::live_or_standby`]).
    instead_of_live: Option<fallback::FallbackReason>,
}

impl<'a> SendTarget<'a> {
    /// With the standby connector, if one is marked.
    pub fn with_standby(self, standby: Option<&'a LiveConnector>) -> Self {
        Self { standby, ..self }
    }

    /// The standby as a send target, when it can send (a standby that cannot is skipped).
    fn standby(standby: &'a LiveConnector) -> Option<Self> {
        match &standby.status {
            LiveStatus::Ready { instance, .. } => Some(Self {
                connector_id: &standby.connector_id,
                factory_id: &standby.factory_id,
                instance,
                metrics: &standby.send_metrics,
                redactor: &standby.redactor,
                standby: None,
                instead_of_live: None,
            }),
            LiveStatus::Unavailable { .. } | LiveStatus::ConfigUnreadable { .. } => None,
        }
    }

    /// The live connector with its standby; when the live one cannot send at all on this
    /// host (nothing can be tried, so nothing can have been sent), the standby in its place,
    /// if it can send; else why the live one cannot.
    pub fn live_or_standby(
        live: &'a LiveConnector,
        standby: Option<&'a LiveConnector>,
    ) -> Result<Self, SendError> {
        match Self::live(live) {
            Ok(target) => Ok(target.with_standby(standby)),
            Err(error) => match standby.and_then(Self::standby) {
                Some(standby) => {
                    tracing::debug!(connector_id = %live.connector_id, standby_connector_id = %standby.connector_id, reason = %error, "the live connector cannot send on this host; the standby connector sends it");
                    Ok(Self {
                        instead_of_live: Some(fallback::FallbackReason::LiveUnavailable),
                        ..standby
                    })
                }
                None => Err(error),
            },
        }
    }

    /// The live connector as a send target, or why it cannot send.
    pub fn live(live: &'a LiveConnector) -> Result<Self, SendError> {
        match &live.status {
            LiveStatus::Ready { instance, .. } => Ok(Self {
                connector_id: &live.connector_id,
                factory_id: &live.factory_id,
                instance,
                metrics: &live.send_metrics,
                redactor: &live.redactor,
                standby: None,
                instead_of_live: None,
            }),
            LiveStatus::Unavailable { reason } => Err(SendError::LiveConnectorUnavailable {
                connector_id: live.connector_id.clone(),
                reason: reason.clone(),
            }),
            LiveStatus::ConfigUnreadable { reason } => Err(SendError::ConfigUnreadable {
                connector_id: live.connector_id.clone(),
                reason: reason.clone(),
            }),
        }
    }
}

/// `+12015550123` → `***0123`.
pub fn masked_phone(e164: &str) -> String {
    format!("***{}", phone_tail(e164))
}

/// The last four characters of an E.164 number: all of it that logs and the message log keep.
pub fn phone_tail(e164: &str) -> &str {
    let last_four_start = e164
        .char_indices()
        .rev()
        .nth(3)
        .map_or(0, |(index, _)| index);
    &e164[last_four_start..]
}

/// Refuses a recipient outside the allowlist, before anything is sent.
pub fn check_country(limits: &SendLimits, phone: &PhoneNumber) -> Result<(), SendError> {
    let Some(allowed) = &limits.allowed_countries else {
        return Ok(());
    };
    match phone.region() {
        Some(region) if allowed.contains(region) => Ok(()),
        region => {
            ::metrics::counter!("sms_rate_limited_total", "reason" => "country").increment(1);
            Err(SendError::CountryNotAllowed {
                region: region.unwrap_or("unknown").to_owned(),
            })
        }
    }
}

impl Sender {
    /// Checks the limits, sends, and counts the send only when it succeeded.
    pub async fn send_with_flow_control(
        &self,
        target: SendTarget<'_>,
        phone: &PhoneNumber,
        message: SmsMessage,
        purpose: SendPurpose,
        client_ip: Option<IpAddr>,
    ) -> Result<Sent, SendError> {
        let reservation = self
            .reserve_send(phone, message.template_type(), purpose, client_ip)
            .await?;
        self.send_reserved(reservation, target, phone, message, purpose)
            .await
    }

    /// Sends a console test: the country allowlist applies, the recipients' limits do not;
    /// the console's own budget does, and a test that was not sent gives its slot back.
    pub async fn send_config_test(
        &self,
        target: SendTarget<'_>,
        phone: &PhoneNumber,
        message: SmsMessage,
    ) -> Result<Sent, SendError> {
        check_country(&self.limits, phone)?;
        let slot = self
            .admin_test_budget
            .reserve(Instant::now())
            .map_err(|retry_after_secs| {
                ::metrics::counter!("sms_rate_limited_total", "reason" => "console_tests")
                    .increment(1);
                tracing::info!(phone = %masked_phone(phone.e164()), retry_after_secs, "console test refused: the console's test budget is spent");
                SendError::ConsoleTestsLimited { retry_after_secs }
            })?;
        let sent = self
            .send_reserved(
                SendSlot::Unmetered,
                target,
                phone,
                message,
                SendPurpose::ConfigTest,
            )
            .await;
        if sent.is_err() {
            self.admin_test_budget.release(slot);
        }
        sent
    }

    /// The flow-control half of a send: refuses a recipient outside the allowlist, one a
    /// protection layer blocks, over the per-recipient limit or (for codes) inside the resend
    /// cooldown, and otherwise takes a slot in the send log.
    pub async fn reserve_send(
        &self,
        phone: &PhoneNumber,
        template_type: TemplateType,
        purpose: SendPurpose,
        client_ip: Option<IpAddr>,
    ) -> Result<SendSlot, SendError> {
        check_country(&self.limits, phone)?;
        self.check_protection(phone, client_ip)?;
        let with_cooldown = purpose == SendPurpose::VerificationCode;
        self.limiter
            .reserve(phone.e164(), template_type, with_cooldown)
            .await
            .map_err(|error| match error {
                LimitError::Refused(refusal) => {
                    let reason = match refusal {
                        SendRefusal::RateLimited { .. } => "window",
                        SendRefusal::Cooldown { .. } => "cooldown",
                    };
                    ::metrics::counter!("sms_rate_limited_total", "reason" => reason).increment(1);
                    tracing::info!(phone = %masked_phone(phone.e164()), reason, "send refused by flow control");
                    SendError::Refused(refusal)
                }
                // Fail closed: no decision, no send.
                LimitError::StoreUnavailable(error) => SendError::Store(error),
            })
    }

    /// The protection layers' decision: a block is logged and counted, and refuses the send
    /// in `enforce` mode; in `monitor` mode the send goes on.
    fn check_protection(
        &self,
        phone: &PhoneNumber,
        client_ip: Option<IpAddr>,
    ) -> Result<(), SendError> {
        let facts = SendFacts {
            phone: phone.e164(),
            region: phone.region(),
            client_ip,
        };
        let mode = self.protection.mode().label();
        let now = crate::store::now_millis();
        // Several hosts: no decision on a shared state gone stale (fail closed, 503).
        if let Some(reason) = self.protection.shared_state_stale(now) {
            return Err(SendError::Store(StoreError::Unavailable(reason)));
        }
        match self.protection.check(&facts, now) {
            Verdict::Allowed => Ok(()),
            Verdict::WouldBlock(blocked) => {
                let reason = blocked.reason.label();
                ::metrics::counter!("sms_sends_blocked_total", "reason" => reason, "mode" => mode)
                    .increment(1);
                if let Some(left_out) = self.admit_protection_line(&blocked) {
                    tracing::info!(phone = %masked_phone(phone.e164()), reason, mode, block_id = %blocked.block_id, left_out = left_out.count, "send would be blocked by protection{}", left_out.suffix());
                }
                Ok(())
            }
            Verdict::Blocked(blocked) => {
                let reason = blocked.reason.label();
                ::metrics::counter!("sms_sends_blocked_total", "reason" => reason, "mode" => mode)
                    .increment(1);
                if let Some(left_out) = self.admit_protection_line(&blocked) {
                    tracing::info!(phone = %masked_phone(phone.e164()), reason, mode, block_id = %blocked.block_id, left_out = left_out.count, "send blocked by protection{}", left_out.suffix());
                }
                Err(SendError::Blocked(blocked))
            }
        }
    }

    /// Whether this refusal gets its log line now (the first of its block, then one per
    /// [`PROTECTION_LOG_INTERVAL`]), with how many were left out before it.
    fn admit_protection_line(
        &self,
        blocked: &crate::protection::Blocked,
    ) -> Option<crate::log_dedup::LeftOut> {
        self.protection_log
            .admit(&blocked.block_id, std::time::Instant::now())
    }

    /// The sending half: through the live connector, or its standby when the live one's
    /// provider provably took nothing (or the breaker skips it); a failed send gives its slot
    /// back unless the provider may have the message, so only sends that may arrive count
    /// against the recipient. One slot and one message for both attempts.
    pub async fn send_reserved(
        &self,
        reservation: SendSlot,
        target: SendTarget<'_>,
        phone: &PhoneNumber,
        message: SmsMessage,
        purpose: SendPurpose,
    ) -> Result<Sent, SendError> {
        // Config tests try the config they were given, nothing else, and tell the live
        // connector's breaker nothing.
        if purpose == SendPurpose::ConfigTest {
            let result = self.attempt(&target, phone, &message, purpose).await;
            return self.settle(reservation, result, purpose).await;
        }
        // The standby in place of a live connector that cannot send here: no breaker to ask.
        if let Some(reason) = target.instead_of_live {
            return self
                .send_by_standby(reservation, &target, reason, phone, &message, purpose)
                .await;
        }
        let standby = target.standby.and_then(SendTarget::standby);
        let route = match &standby {
            Some(_) => self
                .fallback_breaker
                .route(target.connector_id, Instant::now()),
            None => fallback::Route::Live,
        };
        let reason = match route {
            fallback::Route::Standby => fallback::FallbackReason::BreakerOpen,
            fallback::Route::Live | fallback::Route::Probe => {
                // Dropped unfinished (busy, or the send cancelled with its request), it lets
                // another send probe.
                let probe_ticket =
                    (route == fallback::Route::Probe).then(|| self.fallback_breaker.probe_ticket());
                let result = self.attempt(&target, phone, &message, purpose).await;
                // Without a standby every send tells the breaker how the provider is (there
                // is nothing to route, only a state to show).
                let probe = route == fallback::Route::Probe || standby.is_none();
                match &result {
                    Err(AttemptError::Busy(_)) => {}
                    Err(AttemptError::Delivery(error))
                        if fallback::provider_took_nothing(error) =>
                    {
                        self.fallback_breaker.record(
                            target.connector_id,
                            Some(&error.to_string()),
                            probe,
                            Instant::now(),
                        );
                    }
                    Ok(_) | Err(AttemptError::Delivery(_)) => {
                        self.fallback_breaker.record(
                            target.connector_id,
                            None,
                            probe,
                            Instant::now(),
                        );
                    }
                }
                if let (Some(ticket), false) =
                    (probe_ticket, matches!(result, Err(AttemptError::Busy(_))))
                {
                    ticket.finish();
                }
                match (result, &standby) {
                    (Err(AttemptError::Delivery(error)), Some(standby))
                        if fallback::provider_took_nothing(&error) =>
                    {
                        tracing::warn!(
                            connector_id = %target.connector_id,
                            standby_connector_id = %standby.connector_id,
                            phone = %masked_phone(phone.e164()),
                            reason = %error,
                            "the live connector's provider took nothing; the standby connector sends it"
                        );
                        fallback::FallbackReason::of(&error)
                    }
                    (result, _) => return self.settle(reservation, result, purpose).await,
                }
            }
        };
        let Some(standby) = standby else {
            // Cannot happen: only a standby makes a route to it. Nothing was sent.
            self.limiter.release(reservation).await;
            return Err(SendError::LiveConnectorUnavailable {
                connector_id: target.connector_id.to_owned(),
                reason: "no standby connector".to_owned(),
            });
        };
        self.send_by_standby(reservation, &standby, reason, phone, &message, purpose)
            .await
    }

    /// The standby sends it, for `reason`: counted, and said in the answer.
    async fn send_by_standby(
        &self,
        reservation: SendSlot,
        standby: &SendTarget<'_>,
        reason: fallback::FallbackReason,
        phone: &PhoneNumber,
        message: &SmsMessage,
        purpose: SendPurpose,
    ) -> Result<Sent, SendError> {
        ::metrics::counter!("sms_fallback_sends_total", "reason" => reason.label()).increment(1);
        let result = self
            .attempt(standby, phone, message, purpose)
            .await
            .map(|sent| Sent {
                fallback: Some(reason),
                ..sent
            });
        self.settle(reservation, result, purpose).await
    }

    /// The reservation after the last attempt: kept when the message went out or may have,
    /// given back otherwise.
    async fn settle(
        &self,
        reservation: SendSlot,
        result: Result<Sent, AttemptError>,
        purpose: SendPurpose,
    ) -> Result<Sent, SendError> {
        match result {
            Ok(sent) => Ok(sent),
            Err(AttemptError::Busy(busy)) => {
                self.limiter.release(reservation).await;
                Err(busy)
            }
            // The message may arrive: its slot stays taken, so a client that sends again at
            // once meets the limits as if it had been delivered.
            Err(AttemptError::Delivery(error)) if error.provider_may_have_accepted() => {
                Err(SendError::Delivery {
                    error,
                    during_test: purpose == SendPurpose::ConfigTest,
                })
            }
            Err(AttemptError::Delivery(error)) => {
                self.limiter.release(reservation).await;
                Err(SendError::Delivery {
                    error,
                    during_test: purpose == SendPurpose::ConfigTest,
                })
            }
        }
    }

    /// One connector's try: its slot of sends in progress, the message log, the exchange
    /// with the provider, one log line and the metrics.
    async fn attempt(
        &self,
        target: &SendTarget<'_>,
        phone: &PhoneNumber,
        message: &SmsMessage,
        purpose: SendPurpose,
    ) -> Result<Sent, AttemptError> {
        let recipient = masked_phone(phone.e164());
        // Held to the end of the exchange with the provider.
        let Some(_vendor_slot) = self
            .vendor_concurrency
            .try_acquire(target.factory_id, target.connector_id)
        else {
            target.metrics.busy.increment(1);
            tracing::warn!(connector_id = %target.connector_id, factory_id = %target.factory_id, phone = %recipient, purpose = purpose.label(), "send refused: the connector is at its limit of sends in progress");
            return Err(AttemptError::Busy(SendError::ConnectorBusy {
                connector_id: target.connector_id.to_owned(),
                limit: self.vendor_concurrency.max_sends_per_connector(),
            }));
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
        // In the message log before the provider hears of it: a report that beats the send's
        // answer finds its message.
        let context = self
            .tracking
            .begin(
                origin.connector_id,
                target.factory_id,
                phone.e164(),
                purpose.label(),
            )
            .await;
        let message_id = context.message_id().to_owned();
        let result = self
            .executor
            .send(origin, target.instance, message, &context, target.redactor)
            .instrument(span)
            .await;
        self.tracking.finish(&message_id, &result).await;
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
                    %message_id,
                    outcome,
                    latency_ms,
                    $($extra)*
                )
            };
        }
        match result {
            Ok(receipt) => {
                log_send!(tracing::Level::INFO, "sent");
                Ok(Sent {
                    receipt,
                    message_id,
                    connector_id: target.connector_id.to_owned(),
                    factory_id: target.factory_id.to_owned(),
                    fallback: None,
                })
            }
            Err(error) if error.provider_may_have_accepted() => {
                log_send!(tracing::Level::WARN, reason = %error, "send outcome unknown: the provider may have accepted the message");
                target.metrics.count_failure(&error);
                Err(AttemptError::Delivery(error))
            }
            Err(error) => {
                log_send!(tracing::Level::WARN, reason = %error, "send failed");
                target.metrics.count_failure(&error);
                Err(AttemptError::Delivery(error))
            }
        }
    }
}

/// Why one connector's try did not send.
enum AttemptError {
    /// At its limit of sends in progress: nothing went out (`SendError::ConnectorBusy`).
    Busy(SendError),
    Delivery(DeliveryError),
}

fn redact_send_result(
    redactor: &SecretRedactor,
    result: Result<SendReceipt, DeliveryError>,
) -> Result<SendReceipt, DeliveryError> {
    if redactor.is_empty() {
        return result;
    }
    match result {
        Ok(receipt) => Ok(redactor.redact_receipt(receipt)),
        Err(DeliveryError::Connector(error)) => {
            Err(DeliveryError::Connector(redactor.redact_error(error)))
        }
        Err(DeliveryError::Unreachable(reason)) => Err(DeliveryError::Unreachable(
            redactor.redact(&reason).into_owned(),
        )),
        Err(DeliveryError::OutcomeUnknown(reason)) => Err(DeliveryError::OutcomeUnknown(
            redactor.redact(&reason).into_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_masked_to_their_last_four_digits() {
        assert_eq!(masked_phone("+12015550123"), "***0123");
        assert_eq!(masked_phone("12"), "***12");
    }
}
