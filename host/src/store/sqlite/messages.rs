//! The message log on SQLite: each operation a job of the writer's batch (group commit).

use plugin_api::DeliveryStatus;
use rusqlite::{params, Connection, OptionalExtension};

use crate::store::message_log::{
    advances, parse_status, plan_writes, summarize_status_counts, ConnectorDeliverySummary,
    EventOutcome, EventSource, MessageEvent, MessageFilter, MessageLog, MessageRecord,
    MessageWrite, NewMessage, PlannedWrite,
};
use crate::store::sqlite::SqliteStore;
use crate::store::StoreError;

/// The message log's tables (migration 3).
pub(super) const V3_MESSAGE_LOG: &str = "
CREATE TABLE messages (
    id                   TEXT PRIMARY KEY,
    connector_id         TEXT NOT NULL,
    factory_id           TEXT NOT NULL,
    purpose              TEXT NOT NULL,
    phone_tail           TEXT NOT NULL,
    status               TEXT,
    provider_message_id  TEXT,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX messages_by_creation ON messages (created_at);
-- One row per distinct event: a provider's retried report is not a second one.
CREATE TABLE message_events (
    message_id       TEXT NOT NULL,
    at               INTEGER NOT NULL,
    status           TEXT NOT NULL,
    provider_status  TEXT NOT NULL,
    error_code       TEXT NOT NULL,
    source           TEXT NOT NULL,
    UNIQUE (message_id, source, status, provider_status, error_code)
);
";

const MESSAGE_COLUMNS: &str = "id, connector_id, factory_id, purpose, phone_tail, status, provider_message_id, created_at, updated_at";

#[async_trait::async_trait]
impl MessageLog for SqliteStore {
    async fn record_event(
        &self,
        message_id: &str,
        event: MessageEvent,
    ) -> Result<EventOutcome, StoreError> {
        let message_id = message_id.to_owned();
        self.writer
            .run_batched(move |connection, _| record_event(connection, &message_id, &event))
            .await
    }

    async fn message(
        &self,
        id: &str,
    ) -> Result<Option<(MessageRecord, Vec<MessageEvent>)>, StoreError> {
        let id = id.to_owned();
        self.writer
            .run_batched(move |connection, _| {
                let Some(record) = connection
                    .query_row(
                        &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"),
                        params![id],
                        message_from_row,
                    )
                    .optional()?
                else {
                    return Ok(None);
                };
                let mut statement = connection.prepare(
                    "SELECT at, status, provider_status, error_code, source FROM message_events
                     WHERE message_id = ?1 ORDER BY at, rowid",
                )?;
                let events = statement
                    .query_map(params![id], |row| {
                        Ok(MessageEvent {
                            at: row.get(0)?,
                            status: parse_status(&row.get::<_, String>(1)?),
                            provider_status: row.get(2)?,
                            error_code: row.get(3)?,
                            source: EventSource::parse(&row.get::<_, String>(4)?),
                            provider_message_id: None,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some((record, events)))
            })
            .await
    }

    async fn messages(&self, filter: MessageFilter) -> Result<Vec<MessageRecord>, StoreError> {
        self.writer
            .run_batched(move |connection, _| {
                let mut statement = connection.prepare(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages
                     WHERE (?1 IS NULL OR status = ?1)
                       AND (?2 IS NULL OR connector_id = ?2)
                       AND (?3 IS NULL OR created_at >= ?3)
                       AND (?4 IS NULL OR id < ?4)
                     ORDER BY id DESC LIMIT ?5"
                ))?;
                let rows = statement.query_map(
                    params![
                        filter.status.map(DeliveryStatus::as_str),
                        filter.connector_id,
                        filter.since,
                        filter.before_id,
                        filter.limit
                    ],
                    message_from_row,
                )?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    async fn purge_messages(&self, before: i64) -> Result<usize, StoreError> {
        self.writer
            .run_batched(move |connection, _| {
                connection.execute(
                    "DELETE FROM message_events WHERE message_id IN
                       (SELECT id FROM messages WHERE created_at < ?1)",
                    params![before],
                )?;
                Ok(connection.execute(
                    "DELETE FROM messages WHERE created_at < ?1",
                    params![before],
                )?)
            })
            .await
    }

    async fn record_writes(&self, writes: Vec<MessageWrite>) -> Result<(), StoreError> {
        // One job: one savepoint, one answer and a share of one commit for the whole batch.
        self.writer
            .run_batched(move |connection, _| {
                for write in plan_writes(&writes) {
                    match write {
                        PlannedWrite::Message {
                            message,
                            first_event,
                        } => {
                            insert_message(connection, message, first_event)?;
                            if let Some(event) = first_event {
                                insert_event(connection, &message.id, event)?;
                            }
                        }
                        PlannedWrite::Event { message_id, event } => {
                            record_event(connection, message_id, event)?;
                        }
                    }
                }
                Ok(())
            })
            .await
    }
    async fn delivery_summary(
        &self,
        since: i64,
    ) -> Result<Vec<ConnectorDeliverySummary>, StoreError> {
        self.writer
            .run_batched(move |connection, _| {
                let mut statement = connection.prepare(DELIVERY_SUMMARY_QUERY)?;
                let rows = statement
                    .query_map(params![since], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, Option<String>>(2)?,
                            row.get::<_, i64>(3)?,
                        ))
                    })?
                    .map(|row| {
                        row.map(|(connector, factory, status, count)| {
                            (
                                connector,
                                factory,
                                status,
                                u64::try_from(count).unwrap_or(0),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(summarize_status_counts(rows))
            })
            .await
    }
}

fn insert_event(
    connection: &Connection,
    message_id: &str,
    event: &MessageEvent,
) -> Result<usize, StoreError> {
    Ok(connection
        .prepare_cached(
            "INSERT OR IGNORE INTO message_events (message_id, at, status, provider_status, error_code, source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            message_id,
            event.at,
            event.status.as_str(),
            event.provider_status,
            event.error_code,
            event.source.as_str()
        ])?)
}

/// A new message, with its first event's status and provider id when that event comes with
/// it (the first event always moves the status from none).
fn insert_message(
    connection: &Connection,
    message: &NewMessage,
    first_event: Option<&MessageEvent>,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO messages (id, connector_id, factory_id, purpose, phone_tail, created_at, updated_at,
                                   status, provider_message_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            message.id,
            message.connector_id,
            message.factory_id,
            message.purpose,
            message.phone_tail,
            message.created_at,
            first_event.map_or(message.created_at, |event| event.at),
            first_event.map(|event| event.status.as_str()),
            first_event.and_then(|event| event.provider_message_id.as_deref()),
        ])?;
    Ok(())
}

/// Messages since `?1` by connector and current status; the range is read through
/// `messages_by_creation`.
const DELIVERY_SUMMARY_QUERY: &str =
    "SELECT connector_id, factory_id, status, COUNT(*) FROM messages
     WHERE created_at >= ?1 AND connector_id <> ''
     GROUP BY connector_id, factory_id, status";

fn record_event(
    connection: &Connection,
    message_id: &str,
    event: &MessageEvent,
) -> Result<EventOutcome, StoreError> {
    let current: Option<Option<String>> = connection
        .prepare_cached("SELECT status FROM messages WHERE id = ?1")?
        .query_row(params![message_id], |row| row.get(0))
        .optional()?;
    let Some(current) = current else {
        return Ok(EventOutcome::UnknownMessage);
    };
    let inserted = insert_event(connection, message_id, event)?;
    if inserted == 0 {
        return Ok(EventOutcome::Duplicate);
    }
    let advanced = advances(current.as_deref().map(parse_status), event.status);
    // The provider's id is kept from the first event that tells it; the status moves only
    // forward.
    connection
        .prepare_cached(
            "UPDATE messages SET provider_message_id = COALESCE(provider_message_id, ?2), updated_at = ?3,
                 status = CASE WHEN ?4 THEN ?5 ELSE status END
             WHERE id = ?1",
        )?
        .execute(params![
            message_id,
            event.provider_message_id,
            event.at,
            advanced,
            event.status.as_str()
        ])?;
    Ok(if advanced {
        EventOutcome::Advanced
    } else {
        EventOutcome::Kept
    })
}

fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRecord> {
    Ok(MessageRecord {
        id: row.get(0)?,
        connector_id: row.get(1)?,
        factory_id: row.get(2)?,
        purpose: row.get(3)?,
        phone_tail: row.get(4)?,
        status: row
            .get::<_, Option<String>>(5)?
            .as_deref()
            .map(parse_status),
        provider_message_id: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message written as the send path writes it: a batch of its own.
    async fn record_message(store: &SqliteStore, message: NewMessage) -> Result<(), StoreError> {
        store
            .record_writes(vec![MessageWrite::Message(message)])
            .await
    }
    use crate::store::SecretsKeyring;

    fn message(id: &str, created_at: i64) -> NewMessage {
        NewMessage {
            id: id.to_owned(),
            connector_id: "c1".to_owned(),
            factory_id: "twilio-short-message-service".to_owned(),
            purpose: "verification_code".to_owned(),
            phone_tail: "0123".to_owned(),
            created_at,
        }
    }

    fn event(at: i64, status: DeliveryStatus, source: EventSource) -> MessageEvent {
        MessageEvent {
            at,
            status,
            provider_status: status.as_str().to_owned(),
            error_code: String::new(),
            source,
            provider_message_id: Some("SM1".to_owned()),
        }
    }

    #[tokio::test]
    async fn statuses_move_forward_reports_are_deduplicated_and_early_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (keyring, _) =
            SecretsKeyring::read_or_create_file(&dir.path().join("secrets-key")).unwrap();
        let store = SqliteStore::open(&dir.path().join("store.sqlite3"), keyring).unwrap();
        record_message(&store, message("m1", 1_000)).await.unwrap();
        // A report before the send returned: kept, and the send's outcome does not undo it.
        let delivered = event(1_500, DeliveryStatus::Delivered, EventSource::Report);
        assert_eq!(
            store.record_event("m1", delivered.clone()).await.unwrap(),
            EventOutcome::Advanced
        );
        assert_eq!(
            store.record_event("m1", delivered).await.unwrap(),
            EventOutcome::Duplicate
        );
        assert_eq!(
            store
                .record_event(
                    "m1",
                    event(1_200, DeliveryStatus::Queued, EventSource::Send)
                )
                .await
                .unwrap(),
            EventOutcome::Kept
        );
        assert_eq!(
            store
                .record_event("m2", event(1, DeliveryStatus::Sent, EventSource::Report))
                .await
                .unwrap(),
            EventOutcome::UnknownMessage
        );
        let (record, events) = store.message("m1").await.unwrap().unwrap();
        assert_eq!(record.status, Some(DeliveryStatus::Delivered));
        assert_eq!(record.provider_message_id.as_deref(), Some("SM1"));
        assert_eq!(
            events.iter().map(|event| event.status).collect::<Vec<_>>(),
            [DeliveryStatus::Queued, DeliveryStatus::Delivered],
            "in time order"
        );

        for (id, at) in [("m2", 2_000), ("m3", 3_000)] {
            record_message(&store, message(id, at)).await.unwrap();
        }
        let page = store
            .messages(MessageFilter {
                limit: 2,
                ..MessageFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            page.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["m3", "m2"]
        );
        let next = store
            .messages(MessageFilter {
                limit: 2,
                before_id: Some("m2".to_owned()),
                ..MessageFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(
            next.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["m1"]
        );
        let delivered_only = store
            .messages(MessageFilter {
                limit: 10,
                status: Some(DeliveryStatus::Delivered),
                ..MessageFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(delivered_only.len(), 1);

        assert_eq!(store.purge_messages(2_500).await.unwrap(), 2);
        assert!(store.message("m1").await.unwrap().is_none());
        assert!(store.message("m3").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_batch_of_writes_lands_in_order_and_skips_an_unknown_message() {
        let dir = tempfile::tempdir().unwrap();
        let (keyring, _) =
            SecretsKeyring::read_or_create_file(&dir.path().join("secrets-key")).unwrap();
        let store = SqliteStore::open(&dir.path().join("store.sqlite3"), keyring).unwrap();
        store
            .record_writes(vec![
                MessageWrite::Message(message("m1", 1_000)),
                MessageWrite::Event {
                    message_id: "m1".to_owned(),
                    event: event(1_100, DeliveryStatus::Queued, EventSource::Send),
                },
                MessageWrite::Event {
                    message_id: "never-written".to_owned(),
                    event: event(1_100, DeliveryStatus::Queued, EventSource::Send),
                },
                MessageWrite::Message(message("m2", 1_200)),
            ])
            .await
            .unwrap();
        let (m1, events) = store.message("m1").await.unwrap().unwrap();
        assert_eq!(m1.status, Some(DeliveryStatus::Queued));
        assert_eq!(m1.provider_message_id.as_deref(), Some("SM1"));
        assert_eq!(events.len(), 1);
        let (m2, events) = store.message("m2").await.unwrap().unwrap();
        assert_eq!((m2.status, events.len()), (None, 0));
        assert!(store.message("never-written").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_delivery_summary_counts_each_connectors_messages_by_current_status() {
        let dir = tempfile::tempdir().unwrap();
        let (keyring, _) =
            SecretsKeyring::read_or_create_file(&dir.path().join("secrets-key")).unwrap();
        let store = SqliteStore::open(&dir.path().join("store.sqlite3"), keyring).unwrap();
        let on = |id: &str, connector: &str, created_at: i64| NewMessage {
            connector_id: connector.to_owned(),
            ..message(id, created_at)
        };
        // c1: delivered twice, undelivered, failed, queued, sent, unknown, and one in flight.
        let c1 = [
            ("a1", Some(DeliveryStatus::Delivered)),
            ("a2", Some(DeliveryStatus::Delivered)),
            ("a3", Some(DeliveryStatus::Undelivered)),
            ("a4", Some(DeliveryStatus::Failed)),
            ("a5", Some(DeliveryStatus::Queued)),
            ("a6", Some(DeliveryStatus::Sent)),
            ("a7", Some(DeliveryStatus::Unknown)),
            ("a8", None),
        ];
        for (id, status) in c1 {
            record_message(&store, on(id, "c1", 2_000)).await.unwrap();
            if let Some(status) = status {
                store
                    .record_event(id, event(2_100, status, EventSource::Report))
                    .await
                    .unwrap();
            }
        }
        // Its message before `since` is not counted; c2's counts are its own; a console test of
        // an unsaved config (no connector) is left out.
        record_message(&store, on("old", "c1", 999)).await.unwrap();
        record_message(&store, on("b1", "c2", 1_000)).await.unwrap();
        store
            .record_event(
                "b1",
                event(1_100, DeliveryStatus::Queued, EventSource::Send),
            )
            .await
            .unwrap();
        record_message(&store, on("t1", "", 2_000)).await.unwrap();

        let summary = store.delivery_summary(1_000).await.unwrap();
        assert_eq!(
            summary,
            [
                ConnectorDeliverySummary {
                    connector_id: "c1".to_owned(),
                    factory_id: "twilio-short-message-service".to_owned(),
                    total: 8,
                    queued: 1,
                    sent: 1,
                    delivered: 2,
                    undelivered: 1,
                    failed: 1,
                    unknown: 1,
                    pending: 1,
                },
                ConnectorDeliverySummary {
                    connector_id: "c2".to_owned(),
                    factory_id: "twilio-short-message-service".to_owned(),
                    total: 1,
                    queued: 1,
                    ..ConnectorDeliverySummary::default()
                },
            ]
        );
        assert_eq!(store.delivery_summary(2_001).await.unwrap(), []);
    }
}
