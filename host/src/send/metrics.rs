//! What sends are counted by: why a message is sent, how a send ended, and each factory's
//! send metrics, registered once.

use plugin_api::{ConnectorErrorCode, SendReceipt};

use crate::send::executor::DeliveryError;

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

    pub(super) fn label(self) -> &'static str {
        match self {
            SendPurpose::Message => "message",
            SendPurpose::VerificationCode => "verification_code",
            SendPurpose::ConfigTest => "config_test",
        }
    }
}

/// How a send ended, as the `outcome` label of `sms_sends_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SendOutcome {
    Sent,
    ConnectorError,
    /// The provider could not be reached: not sent.
    UpstreamError,
    /// The request went out and no whole answer came back: maybe sent.
    OutcomeUnknown,
}

impl SendOutcome {
    const ALL: [SendOutcome; 4] = [
        SendOutcome::Sent,
        SendOutcome::ConnectorError,
        SendOutcome::UpstreamError,
        SendOutcome::OutcomeUnknown,
    ];

    pub(super) fn of(result: &Result<SendReceipt, DeliveryError>) -> Self {
        match result {
            Ok(_) => SendOutcome::Sent,
            Err(DeliveryError::Connector(_)) => SendOutcome::ConnectorError,
            Err(DeliveryError::Unreachable(_)) => SendOutcome::UpstreamError,
            Err(DeliveryError::OutcomeUnknown(_)) => SendOutcome::OutcomeUnknown,
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            SendOutcome::Sent => "sent",
            SendOutcome::ConnectorError => "connector_error",
            SendOutcome::UpstreamError => "upstream_error",
            SendOutcome::OutcomeUnknown => "outcome_unknown",
        }
    }
}

/// Why a send failed, as the `error` label of `sms_send_failures_total`: the connector's error
/// code, or what happened on the way to the provider. One series per reason lets an operator
/// alert on a revoked key (`invalid_config`) apart from a provider's bad minute.
fn failure_label(error: &DeliveryError) -> &'static str {
    match error {
        DeliveryError::Connector(error) => error.code.as_str(),
        DeliveryError::Unreachable(_) => "unreachable",
        DeliveryError::OutcomeUnknown(_) => "outcome_unknown",
    }
}

/// Every `error` label of `sms_send_failures_total`, for its series at zero.
fn failure_labels() -> impl Iterator<Item = &'static str> {
    ConnectorErrorCode::ALL
        .into_iter()
        .map(ConnectorErrorCode::as_str)
        .chain(["unreachable", "outcome_unknown"])
}

/// A factory's send metrics, registered once (when its live connector is built) rather than
/// looked up by name and labels on every send: a lookup allocated the labels and hashed the
/// key, about half a microsecond a send.
pub struct SendMetrics {
    pub(super) duration_seconds: metrics::Histogram,
    /// `sms_sends_total`, indexed by purpose then outcome (the `ALL` orders).
    sends: [[metrics::Counter; 4]; 3],
    /// `sms_send_failures_total` by its `error` label.
    failures: Vec<(&'static str, metrics::Counter)>,
    /// `sms_connector_busy_total`: registered with the others, so it is at zero from the start.
    pub(super) busy: metrics::Counter,
}

impl SendMetrics {
    pub fn for_factory(factory_id: &str) -> Self {
        let counter = |purpose: SendPurpose, outcome: SendOutcome| metrics::counter!("sms_sends_total", "factory" => factory_id.to_owned(), "purpose" => purpose.label(), "outcome" => outcome.label());
        Self {
            duration_seconds: metrics::histogram!("sms_send_duration_seconds", "factory" => factory_id.to_owned()),
            sends: SendPurpose::ALL
                .map(|purpose| SendOutcome::ALL.map(|outcome| counter(purpose, outcome))),
            busy: metrics::counter!("sms_connector_busy_total", "factory" => factory_id.to_owned()),
            failures: failure_labels()
                .map(|error| (error, metrics::counter!("sms_send_failures_total", "factory" => factory_id.to_owned(), "error" => error)))
                .collect(),
        }
    }

    /// Counts a failed send under its reason.
    pub(super) fn count_failure(&self, error: &DeliveryError) {
        let label = failure_label(error);
        if let Some((_, counter)) = self.failures.iter().find(|(error, _)| *error == label) {
            counter.increment(1);
        }
    }

    /// `ALL` lists each enum in declaration order, so a variant's discriminant is its index.
    pub(super) fn count(&self, purpose: SendPurpose, outcome: SendOutcome) {
        self.sends[purpose as usize][outcome as usize].increment(1);
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
    fn every_failure_has_a_series_at_zero() {
        let errors = [
            DeliveryError::Connector(plugin_api::ConnectorError::invalid_config("revoked")),
            DeliveryError::Unreachable("refused".to_owned()),
            DeliveryError::OutcomeUnknown("timed out".to_owned()),
        ];
        let labels: Vec<&str> = failure_labels().collect();
        for error in &errors {
            assert!(labels.contains(&failure_label(error)), "{error}");
        }
        assert_eq!(failure_label(&errors[0]), "invalid_config");
        for code in ConnectorErrorCode::ALL {
            assert!(labels.contains(&code.as_str()));
        }
    }
}
