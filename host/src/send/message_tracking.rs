//! Every send's place in the message log: the host's id for it (a UUIDv7), the URL the
//! provider reports its delivery to, and what the send itself said. The log is what an
//! operator reads for "did the code arrive?"; writing it never stops a send: the send queues
//! its writes and goes on (`message_log_writer`), a failed write is logged, and a report for
//! that message is then counted as unknown.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use plugin_api::{DeliveryStatus, SendContext, SendReceipt};
use sha2::Sha256;

use crate::send::executor::DeliveryError;
use crate::send::message_log_writer::MessageLogWriter;
use crate::store::message_log::{
    EventOutcome, EventSource, MessageEvent, MessageFilter, MessageLog, MessageRecord,
    MessageWrite, NewMessage,
};
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
    log: Arc<dyn MessageLog>,
    /// The send path's writes, queued and written in batches.
    writer: MessageLogWriter,
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
    /// Starts the log's writer on the current tokio runtime. The error: a key HMAC refuses
    /// (it takes any length; kept for the type's sake).
    pub fn new(
        log: Arc<dyn MessageLog>,
        settings: &DeliveryReportSettings,
        token_key: &[u8],
    ) -> Result<Self, hmac::digest::InvalidLength> {
        Ok(Self {
            writer: MessageLogWriter::spawn(Arc::clone(&log)),
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
        log: Arc<dyn MessageLog>,
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

    /// The store's log, for what needs no write queued before it (the retention purge).
    pub fn log(&self) -> &dyn MessageLog {
        self.log.as_ref()
    }

    /// Returns once every write queued so far is in the store: a drain calls it last.
    pub async fn flush(&self) {
        self.writer.flush().await;
    }

    /// A message and its timeline, with every send queued so far written first.
    pub async fn message(
        &self,
        id: &str,
    ) -> Result<Option<(MessageRecord, Vec<MessageEvent>)>, StoreError> {
        self.writer.flush().await;
        self.log.message(id).await
    }

    /// Recent messages, with every send queued so far written first.
    pub async fn messages(&self, filter: MessageFilter) -> Result<Vec<MessageRecord>, StoreError> {
        self.writer.flush().await;
        self.log.messages(filter).await
    }

    /// Each connector's messages since `since` by status, with every send queued so far
    /// written first.
    pub async fn delivery_summary(
        &self,
        since: i64,
    ) -> Result<Vec<crate::store::message_log::ConnectorDeliverySummary>, StoreError> {
        self.writer.flush().await;
        self.log.delivery_summary(since).await
    }

    /// Adds a delivery report's event, after the writes queued so far: the message a report
    /// names was queued before its provider heard of it, so it is there.
    pub async fn record_report(
        &self,
        message_id: &str,
        event: MessageEvent,
    ) -> Result<EventOutcome, StoreError> {
        self.writer.flush().await;
        let mut waits = 0;
        loop {
            let outcome = self.log.record_event(message_id, event.clone()).await?;
            // Another host of the database sent it and may not have written it yet: its
            // batch is milliseconds away, a provider's report usually further.
            if outcome != EventOutcome::UnknownMessage
                || waits == REPORT_WAITS_FOR_A_RECENT_MESSAGE
                || !minted_within(message_id, RECENT_MESSAGE)
            {
                return Ok(outcome);
            }
            waits += 1;
            tokio::time::sleep(REPORT_WAIT).await;
        }
    }

    /// Queues a message about to be sent; returns the context its plugin is given. A
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
        self.writer
            .queue(MessageWrite::Message(NewMessage {
                id: id.clone(),
                connector_id: connector_id.unwrap_or_default().to_owned(),
                factory_id: factory_id.to_owned(),
                purpose: purpose.to_owned(),
                phone_tail: crate::send::phone_tail(phone_e164).to_owned(),
                created_at: now_millis(),
            }))
            .await;
        let report_url = connector_id.and_then(|connector_id| self.report_url(connector_id, &id));
        SendContext::new(id, report_url)
    }

    /// Queues what the send said: accepted by the provider (`queued`), refused (`failed`), or
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
        self.writer
            .queue(MessageWrite::Event {
                message_id: message_id.to_owned(),
                event,
            })
            .await;
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

/// How long after its send a message may still be in another host's queue.
const RECENT_MESSAGE: Duration = Duration::from_secs(30);
const REPORT_WAIT: Duration = Duration::from_millis(250);
const REPORT_WAITS_FOR_A_RECENT_MESSAGE: u32 = 4;

/// Whether a message id (a UUIDv7, which carries its creation time) was made within `age`.
fn minted_within(message_id: &str, age: Duration) -> bool {
    let Some(minted_ms) = uuid::Uuid::parse_str(message_id)
        .ok()
        .and_then(|id| id.get_timestamp())
        .map(|timestamp| {
            let (seconds, nanos) = timestamp.to_unix();
            i64::try_from(seconds)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000)
                .saturating_add(i64::from(nanos / 1_000_000))
        })
    else {
        return false;
    };
    let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
    (now_millis() - minted_ms).abs() <= age_ms
}

/// 128 bits: a forged report would have to guess them.
const TOKEN_BYTES: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_tells_its_age() {
        let fresh = uuid::Uuid::now_v7().to_string();
        assert!(minted_within(&fresh, RECENT_MESSAGE));
        // 2024-12-06, a UUIDv7 of then.
        let old = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            1_733_443_200,
            0,
        ))
        .to_string();
        assert!(!minted_within(&old, RECENT_MESSAGE));
        assert!(!minted_within("not-an-id", RECENT_MESSAGE));
        // A UUIDv4 carries no time.
        assert!(!minted_within(
            "936da01f-9abd-4d9d-80c7-02af85c822a8",
            RECENT_MESSAGE
        ));
    }
}
