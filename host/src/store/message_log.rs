//! The message log: every send the host makes, with its status as the provider reports it
//! (delivery reports), for "did the code arrive?". One row per message, keyed by the host's
//! message id (a UUIDv7), and its events (the send's outcome, each report) in order.
//!
//! Only the last four digits of the phone are kept. A status only moves forward
//! (`DeliveryStatus::may_become`); a report repeated by the provider is one event; a report
//! that comes before the send returned finds the message, which is written before the send.

use plugin_api::DeliveryStatus;

use crate::store::StoreError;

/// A message about to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub id: String,
    pub connector_id: String,
    pub factory_id: String,
    /// `message`, `verification_code` or `config_test`.
    pub purpose: String,
    /// The phone's last four digits.
    pub phone_tail: String,
    pub created_at: i64,
}

/// Something that happened to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEvent {
    pub at: i64,
    pub status: DeliveryStatus,
    /// The provider's own word (`delivered`, `DELIVRD`, `1: ACK/`); empty for the host's events.
    pub provider_status: String,
    pub error_code: String,
    /// `send` (the send's outcome) or `report` (a delivery report).
    pub source: EventSource,
    /// The provider's id for the message, when this event tells it.
    pub provider_message_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    Send,
    Report,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Send => "send",
            EventSource::Report => "report",
        }
    }

    pub fn parse(text: &str) -> Self {
        match text {
            "send" => EventSource::Send,
            _ => EventSource::Report,
        }
    }
}

/// What recording an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// No such message (never sent here, or past the retention period).
    UnknownMessage,
    /// The same event was recorded before: a provider's retry.
    Duplicate,
    /// Kept in the timeline; the status stays (the event would move it back).
    Kept,
    /// Kept, and the message's status is now the event's.
    Advanced,
}

/// A message as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: String,
    pub connector_id: String,
    pub factory_id: String,
    pub purpose: String,
    pub phone_tail: String,
    /// `None` until the send returned.
    pub status: Option<DeliveryStatus>,
    pub provider_message_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Which messages a list shows, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    pub status: Option<DeliveryStatus>,
    pub connector_id: Option<String>,
    /// Created at or after (ms).
    pub since: Option<i64>,
    /// Created strictly before this message (its id): the next page.
    pub before_id: Option<String>,
    pub limit: u32,
}

/// One write of the send path, queued and written with others in one transaction
/// (`MessageLog::record_writes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageWrite {
    Message(NewMessage),
    Event {
        message_id: String,
        event: MessageEvent,
    },
}

/// The message log's storage, one transaction per method.
#[async_trait::async_trait]
pub trait MessageLog: Send + Sync {
    /// Adds an event to a message's timeline; moves its status forward when the event does.
    async fn record_event(
        &self,
        message_id: &str,
        event: MessageEvent,
    ) -> Result<EventOutcome, StoreError>;
    async fn message(
        &self,
        id: &str,
    ) -> Result<Option<(MessageRecord, Vec<MessageEvent>)>, StoreError>;
    async fn messages(&self, filter: MessageFilter) -> Result<Vec<MessageRecord>, StoreError>;
    /// Deletes messages created before `before` (ms), with their events; how many.
    async fn purge_messages(&self, before: i64) -> Result<usize, StoreError>;
    /// Writes messages and events in order, in one transaction: the send path's writes,
    /// batched. An event for a message that is not there is skipped, as `record_event` does.
    async fn record_writes(&self, writes: Vec<MessageWrite>) -> Result<(), StoreError>;
    /// Each connector's messages created at or after `since` (ms), counted by their current
    /// status (one aggregate query), by connector id. Console tests of an unsaved config
    /// (no connector id) are left out.
    async fn delivery_summary(
        &self,
        since: i64,
    ) -> Result<Vec<ConnectorDeliverySummary>, StoreError>;
}

/// A batch's writes as a store runs them: a message whose first event (its send's outcome,
/// usually) is in the same batch is written with it, as one new row with its status, instead
/// of a row, a read and an update.
#[derive(Debug, PartialEq, Eq)]
pub enum PlannedWrite<'a> {
    Message {
        message: &'a NewMessage,
        first_event: Option<&'a MessageEvent>,
    },
    Event {
        message_id: &'a str,
        event: &'a MessageEvent,
    },
}

/// Plans `writes` in order, each message's first later event folded into it.
pub fn plan_writes(writes: &[MessageWrite]) -> Vec<PlannedWrite<'_>> {
    let mut first_event_of = std::collections::HashMap::new();
    for (index, write) in writes.iter().enumerate() {
        if let MessageWrite::Event { message_id, .. } = write {
            first_event_of.entry(message_id.as_str()).or_insert(index);
        }
    }
    let mut folded = std::collections::HashSet::new();
    let mut planned = Vec::with_capacity(writes.len());
    for (index, write) in writes.iter().enumerate() {
        match write {
            MessageWrite::Message(message) => {
                let first_event = match first_event_of.get(message.id.as_str()) {
                    Some(&event_index) if event_index > index => {
                        folded.insert(event_index);
                        match &writes[event_index] {
                            MessageWrite::Event { event, .. } => Some(event),
                            MessageWrite::Message(_) => None,
                        }
                    }
                    _ => None,
                };
                planned.push(PlannedWrite::Message {
                    message,
                    first_event,
                });
            }
            MessageWrite::Event { .. } if folded.contains(&index) => {}
            MessageWrite::Event { message_id, event } => {
                planned.push(PlannedWrite::Event { message_id, event })
            }
        }
    }
    planned
}

/// One connector's messages by their current status (`MessageLog::delivery_summary`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectorDeliverySummary {
    pub connector_id: String,
    pub factory_id: String,
    pub total: u64,
    pub queued: u64,
    pub sent: u64,
    pub delivered: u64,
    pub undelivered: u64,
    pub failed: u64,
    pub unknown: u64,
    /// No status yet: the send has not returned.
    pub pending: u64,
}

impl ConnectorDeliverySummary {
    /// Adds `count` messages at `status` (`None`: no status yet).
    pub fn add(&mut self, status: Option<DeliveryStatus>, count: u64) {
        self.total += count;
        let bucket = match status {
            None => &mut self.pending,
            Some(DeliveryStatus::Queued) => &mut self.queued,
            Some(DeliveryStatus::Sent) => &mut self.sent,
            Some(DeliveryStatus::Delivered) => &mut self.delivered,
            Some(DeliveryStatus::Undelivered) => &mut self.undelivered,
            Some(DeliveryStatus::Failed) => &mut self.failed,
            // `unknown`, and any status a later plugin-api adds.
            Some(_) => &mut self.unknown,
        };
        *bucket += count;
    }
}

/// Folds `(connector id, factory id, stored status, count)` rows, as both stores' grouped
/// query returns them, into one summary per connector, in connector id order. A status text
/// this host does not know (a newer host's) counts as `unknown`, as `parse_status` reads it.
pub fn summarize_status_counts(
    rows: impl IntoIterator<Item = (String, String, Option<String>, u64)>,
) -> Vec<ConnectorDeliverySummary> {
    let mut summaries: std::collections::BTreeMap<(String, String), ConnectorDeliverySummary> =
        std::collections::BTreeMap::new();
    for (connector_id, factory_id, status, count) in rows {
        summaries
            .entry((connector_id.clone(), factory_id.clone()))
            .or_insert_with(|| ConnectorDeliverySummary {
                connector_id,
                factory_id,
                ..ConnectorDeliverySummary::default()
            })
            .add(status.as_deref().map(parse_status), count);
    }
    summaries.into_values().collect()
}

/// A stored status text, as the enum; an unknown text (a newer host's) reads as `unknown`.
pub fn parse_status(text: &str) -> DeliveryStatus {
    DeliveryStatus::ALL
        .into_iter()
        .find(|status| status.as_str() == text)
        .unwrap_or(DeliveryStatus::Unknown)
}

/// The outcome of an event on a message at `current` (`None`: the send has not returned).
pub fn advances(current: Option<DeliveryStatus>, next: DeliveryStatus) -> bool {
    match current {
        None => true,
        Some(current) => current.may_become(next),
    }
}

/// Writes for tests: a message, and its send's outcome.
#[cfg(test)]
pub(crate) mod test_writes {
    use super::*;

    pub(crate) fn message(id: &str) -> MessageWrite {
        MessageWrite::Message(NewMessage {
            id: id.to_owned(),
            connector_id: "c".into(),
            factory_id: "f".into(),
            purpose: "message".into(),
            phone_tail: "0123".into(),
            created_at: 1,
        })
    }

    pub(crate) fn event(id: &str, status: DeliveryStatus) -> MessageWrite {
        MessageWrite::Event {
            message_id: id.to_owned(),
            event: MessageEvent {
                at: 2,
                status,
                provider_status: String::new(),
                error_code: String::new(),
                source: EventSource::Send,
                provider_message_id: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_writes::{event, message};
    use super::*;

    #[test]
    fn a_message_takes_its_first_later_event_and_the_rest_stay_in_order() {
        let writes = vec![
            event("old", DeliveryStatus::Queued),
            message("a"),
            message("b"),
            event("a", DeliveryStatus::Queued),
            event("a", DeliveryStatus::Delivered),
            event("c", DeliveryStatus::Failed),
        ];
        let planned = plan_writes(&writes);
        let shape: Vec<String> = planned
            .iter()
            .map(|write| match write {
                PlannedWrite::Message {
                    message,
                    first_event,
                } => format!(
                    "message {} {:?}",
                    message.id,
                    first_event.map(|event| event.status.as_str())
                ),
                PlannedWrite::Event { message_id, event } => {
                    format!("event {message_id} {}", event.status.as_str())
                }
            })
            .collect();
        assert_eq!(
            shape,
            [
                "event old queued",
                "message a Some(\"queued\")",
                "message b None",
                "event a delivered",
                "event c failed",
            ]
        );
    }
}
