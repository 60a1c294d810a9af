//! Every send's place in the message log: the host's id for it (a UUIDv7), the URL the
//! provider reports its delivery to, and what the send itself said. The log is what an
//! operator reads for "did the code arrive?"; writing it never stops a send (a failed write
//! is logged, and a report for that message is then counted as unknown).

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use plugin_api::{DeliveryStatus, SendContext, SendReceipt};
use sha2::Sha256;

use crate::send::executor::DeliveryError;
use crate::store::message_log::{EventSource, MessageEvent, MessageLog, NewMessage};
use crate::store::{now_millis, Store, StoreError};

/// The store setting holding the key of report URLs' tokens.
const DELIVERY_REPORT_KEY_SETTING: &str = "delivery_report_key";

/// Where delivery reports come in, and how long messages are kept.
#[derive(Debug, Clone)]
pub struct DeliveryReportSettings {
    /// `--public-url`: the base URL providers reach this host at (`https://sms.example.com`);
    /// `None`: no delivery reports are asked for.
    pub public_url: Option<String>,
    /// `--message-retention-days`.
    pub retention: Duration,
    /// `--message-log off`: no message is logged and no report asked for (every send still
    /// gets its id, in its log line and answer).
    pub message_log: bool,
}

impl Default for DeliveryReportSettings {
    fn default() -> Self {
        Self {
            public_url: None,
            retention: Duration::from_secs(7 * 24 * 60 * 60),
            message_log: false,
        }
    }
}

/// The message log as the send path writes it.
pub struct MessageTracking {
    log: Box<dyn MessageLog>,
    /// `false` with `--message-log off`.
    enabled: bool,
    public_url: Option<String>,
    /// Keyed with the store's `delivery_report_key` (the same on every host of a database):
    /// the token in each report URL.
    token_mac: Hmac<Sha256>,
}

/// The name of the report URL's parameters: the message id and the host's token for it.
pub const MESSAGE_PARAMETER: &str = "m";
pub const TOKEN_PARAMETER: &str = "t";

impl MessageTracking {
    /// The error: a key HMAC refuses (it takes any length; kept for the type's sake).
    pub fn new(
        log: Box<dyn MessageLog>,
        settings: &DeliveryReportSettings,
        token_key: &[u8],
    ) -> Result<Self, hmac::digest::InvalidLength> {
        Ok(Self {
            log,
            enabled: settings.message_log,
            public_url: settings
                .public_url
                .as_deref()
                .map(|url| url.trim_end_matches('/').to_owned()),
            token_mac: <Hmac<Sha256> as Mac>::new_from_slice(token_key)?,
        })
    }

    /// The tracking of a host: its report-token key is the store's (made by the first host of
    /// a database, read by every other).
    pub async fn load(
        log: Box<dyn MessageLog>,
        store: &dyn Store,
        settings: &DeliveryReportSettings,
    ) -> Result<Self, StoreError> {
        let mut candidate = [0u8; 32];
        getrandom::fill(&mut candidate)
            .map_err(|error| StoreError::Failed(format!("no randomness for a key: {error}")))?;
        let candidate = base64::engine::general_purpose::STANDARD.encode(candidate);
        let key = store
            .record_setting_once(DELIVERY_REPORT_KEY_SETTING, &candidate)
            .await?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|_| {
                StoreError::Failed(format!(
                    "the store's {DELIVERY_REPORT_KEY_SETTING} is not base64"
                ))
            })?;
        Self::new(log, settings, &key)
            .map_err(|error| StoreError::Failed(format!("the report-token key: {error}")))
    }

    pub fn log(&self) -> &dyn MessageLog {
        self.log.as_ref()
    }

    /// Writes a message about to be sent; returns the context its plugin is given. A
    /// config under test (no `connector_id`) gets no report URL.
    pub async fn begin(
        &self,
        connector_id: Option<&str>,
        factory_id: &str,
        phone_e164: &str,
        purpose: &str,
    ) -> SendContext {
        let id = uuid::Uuid::now_v7().to_string();
        if !self.enabled {
            return SendContext::new(id, None);
        }
        let written = self
            .log
            .record_message(NewMessage {
                id: id.clone(),
                connector_id: connector_id.unwrap_or_default().to_owned(),
                factory_id: factory_id.to_owned(),
                purpose: purpose.to_owned(),
                phone_tail: crate::send::phone_tail(phone_e164).to_owned(),
                created_at: now_millis(),
            })
            .await;
        if let Err(error) = written {
            tracing::warn!(message_id = %id, %error, "the message log did not record a send; it goes on without a delivery report URL");
            return SendContext::new(id, None);
        }
        let report_url = connector_id.and_then(|connector_id| self.report_url(connector_id, &id));
        SendContext::new(id, report_url)
    }

    /// What the send said: accepted by the provider (`queued`), refused (`failed`), or
    /// maybe sent (`unknown`).
    pub async fn finish(&self, message_id: &str, result: &Result<SendReceipt, DeliveryError>) {
        if !self.enabled {
            return;
        }
        let (status, provider_status, error_code, provider_message_id) = match result {
            Ok(receipt) => (
                DeliveryStatus::Queued,
                "accepted",
                String::new(),
                receipt.provider_message_id().map(str::to_owned),
            ),
            Err(DeliveryError::Connector(error)) => (
                DeliveryStatus::Failed,
                "refused",
                error.code.to_string(),
                None,
            ),
            Err(DeliveryError::Unreachable(_)) => {
                (DeliveryStatus::Failed, "unreachable", String::new(), None)
            }
            Err(DeliveryError::OutcomeUnknown(_)) => (
                DeliveryStatus::Unknown,
                "outcome_unknown",
                String::new(),
                None,
            ),
        };
        let event = MessageEvent {
            at: now_millis(),
            status,
            provider_status: provider_status.to_owned(),
            error_code,
            source: EventSource::Send,
            provider_message_id,
        };
        if let Err(error) = self.log.record_event(message_id, event).await {
            tracing::warn!(%message_id, %error, "the message log did not record a send's outcome");
        }
    }

    /// `{public}/dlr/{connectorId}?m={messageId}&t={token}`, or `None` without a public URL.
    pub fn report_url(&self, connector_id: &str, message_id: &str) -> Option<String> {
        let public_url = self.public_url.as_deref()?;
        Some(format!(
            "{public_url}/dlr/{connector_id}?{MESSAGE_PARAMETER}={message_id}&{TOKEN_PARAMETER}={}",
            self.token(connector_id, message_id)
        ))
    }

    /// Whether `token` is the host's for this connector and message (constant time).
    pub fn token_matches(&self, connector_id: &str, message_id: &str, token: &str) -> bool {
        let Ok(presented) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        self.mac(connector_id, message_id)
            .verify_truncated_left(&presented)
            .is_ok()
            && presented.len() == TOKEN_BYTES
    }

    fn token(&self, connector_id: &str, message_id: &str) -> String {
        let mac = self.mac(connector_id, message_id).finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mac[..TOKEN_BYTES])
    }

    fn mac(&self, connector_id: &str, message_id: &str) -> Hmac<Sha256> {
        let mut mac = self.token_mac.clone();
        mac.update(connector_id.as_bytes());
        mac.update(b"\n");
        mac.update(message_id.as_bytes());
        mac
    }
}

/// 128 bits: a forged report would have to guess them.
const TOKEN_BYTES: usize = 16;
