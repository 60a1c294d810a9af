//! The message log on PostgreSQL, shared by the hosts of one database: a report may reach
//! another host than the one that sent.

use plugin_api::DeliveryStatus;

use crate::store::message_log::{
    advances, parse_status, plan_writes, summarize_status_counts, ConnectorDeliverySummary,
    EventOutcome, EventSource, MessageEvent, MessageFilter, MessageLog, MessageRecord,
    MessageWrite, NewMessage, PlannedWrite,
};
use crate::store::postgres::PostgresStore;
use crate::store::StoreError;

const MESSAGE_COLUMNS: &str = "id, connector_id, factory_id, purpose, phone_tail, status, provider_message_id, created_at, updated_at";

#[async_trait::async_trait]
impl MessageLog for PostgresStore {
    async fn record_event(
        &self,
        message_id: &str,
        event: MessageEvent,
    ) -> Result<EventOutcome, StoreError> {
        self.within_deadline(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            let outcome = record_event(&transaction, message_id, &event).await?;
            transaction.commit().await?;
            Ok(outcome)
        })
        .await
    }

    async fn message(
        &self,
        id: &str,
    ) -> Result<Option<(MessageRecord, Vec<MessageEvent>)>, StoreError> {
        self.within_deadline(async {
            let client = self.client().await?;
            let Some(row) = client
                .query_opt(
                    &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"),
                    &[&id],
                )
                .await?
            else {
                return Ok(None);
            };
            let record = message_from_row(&row)?;
            let events = client
                .query(
                    "SELECT at, status, provider_status, error_code, source FROM message_events
                     WHERE message_id = $1 ORDER BY at, seq",
                    &[&id],
                )
                .await?
                .iter()
                .map(|row| {
                    Ok(MessageEvent {
                        at: row.try_get(0)?,
                        status: parse_status(row.try_get(1)?),
                        provider_status: row.try_get(2)?,
                        error_code: row.try_get(3)?,
                        source: EventSource::parse(row.try_get(4)?),
                        provider_message_id: None,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Some((record, events)))
        })
        .await
    }

    async fn messages(&self, filter: MessageFilter) -> Result<Vec<MessageRecord>, StoreError> {
        self.within_deadline(async {
            let limit = i64::from(filter.limit);
            let rows = self
                .client()
                .await?
                .query(
                    &format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages
                         WHERE ($1::text IS NULL OR status = $1)
                           AND ($2::text IS NULL OR connector_id = $2)
                           AND ($3::bigint IS NULL OR created_at >= $3)
                           AND ($4::text IS NULL OR id < $4)
                         ORDER BY id DESC LIMIT $5"
                    ),
                    &[
                        &filter.status.map(DeliveryStatus::as_str),
                        &filter.connector_id,
                        &filter.since,
                        &filter.before_id,
                        &limit,
                    ],
                )
                .await?;
            rows.iter().map(message_from_row).collect()
        })
        .await
    }

    async fn purge_messages(&self, before: i64) -> Result<usize, StoreError> {
        self.within_deadline(async {
            let deleted = self
                .client()
                .await?
                .execute("DELETE FROM messages WHERE created_at < $1", &[&before])
                .await?;
            Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
        })
        .await
    }

    async fn record_writes(&self, writes: Vec<MessageWrite>) -> Result<(), StoreError> {
        self.within_deadline(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            for write in plan_writes(&writes) {
                match write {
                    PlannedWrite::Message {
                        message,
                        first_event,
                    } => {
                        insert_message(&transaction, message, first_event).await?;
                        if let Some(event) = first_event {
                            insert_event(&transaction, &message.id, event).await?;
                        }
                    }
                    PlannedWrite::Event { message_id, event } => {
                        record_event(&transaction, message_id, event).await?;
                    }
                }
            }
            transaction.commit().await?;
            Ok(())
        })
        .await
    }
    async fn delivery_summary(
        &self,
        since: i64,
    ) -> Result<Vec<ConnectorDeliverySummary>, StoreError> {
        self.within_deadline(async {
            // Messages since $1 by connector and current status; the range is read through
            // `messages_by_creation`.
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT connector_id, factory_id, status, COUNT(*) FROM messages
                     WHERE created_at >= $1 AND connector_id <> ''
                     GROUP BY connector_id, factory_id, status",
                    &[&since],
                )
                .await?;
            let counts = rows
                .iter()
                .map(|row| {
                    let count: i64 = row.try_get(3)?;
                    Ok((
                        row.try_get::<_, String>(0)?,
                        row.try_get::<_, String>(1)?,
                        row.try_get::<_, Option<String>>(2)?,
                        u64::try_from(count).unwrap_or(0),
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(summarize_status_counts(counts))
        })
        .await
    }
}

/// A new message, with its first event's status and provider id when that event comes with
/// it (the first event always moves the status from none).
async fn insert_message(
    transaction: &deadpool_postgres::Transaction<'_>,
    message: &NewMessage,
    first_event: Option<&MessageEvent>,
) -> Result<(), StoreError> {
    let statement = transaction
        .prepare_cached(
            "INSERT INTO messages (id, connector_id, factory_id, purpose, phone_tail, created_at, updated_at,
                                   status, provider_message_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[
                &message.id,
                &message.connector_id,
                &message.factory_id,
                &message.purpose,
                &message.phone_tail,
                &message.created_at,
                &first_event.map_or(message.created_at, |event| event.at),
                &first_event.map(|event| event.status.as_str()),
                &first_event.and_then(|event| event.provider_message_id.as_deref()),
            ],
        )
        .await?;
    Ok(())
}

async fn insert_event(
    transaction: &deadpool_postgres::Transaction<'_>,
    message_id: &str,
    event: &MessageEvent,
) -> Result<u64, StoreError> {
    let statement = transaction
        .prepare_cached(
            "INSERT INTO message_events (message_id, at, status, provider_status, error_code, source)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .await?;
    Ok(transaction
        .execute(
            &statement,
            &[
                &message_id,
                &event.at,
                &event.status.as_str(),
                &event.provider_status,
                &event.error_code,
                &event.source.as_str(),
            ],
        )
        .await?)
}

async fn record_event(
    transaction: &deadpool_postgres::Transaction<'_>,
    message_id: &str,
    event: &MessageEvent,
) -> Result<EventOutcome, StoreError> {
    // Locked: two hosts reading one message's reports apply them one after the other.
    let current = transaction
        .query_opt(
            "SELECT status FROM messages WHERE id = $1 FOR UPDATE",
            &[&message_id],
        )
        .await?;
    let Some(current) = current else {
        return Ok(EventOutcome::UnknownMessage);
    };
    let current: Option<String> = current.try_get(0)?;
    let inserted = insert_event(transaction, message_id, event).await?;
    if inserted == 0 {
        return Ok(EventOutcome::Duplicate);
    }
    let advanced = advances(current.as_deref().map(parse_status), event.status);
    // The provider's id is kept from the first event that tells it; the status moves only
    // forward.
    transaction
        .execute(
            "UPDATE messages SET provider_message_id = COALESCE(provider_message_id, $2), updated_at = $3,
                 status = CASE WHEN $4 THEN $5 ELSE status END
             WHERE id = $1",
            &[
                &message_id,
                &event.provider_message_id,
                &event.at,
                &advanced,
                &event.status.as_str(),
            ],
        )
        .await?;
    Ok(if advanced {
        EventOutcome::Advanced
    } else {
        EventOutcome::Kept
    })
}

fn message_from_row(row: &tokio_postgres::Row) -> Result<MessageRecord, StoreError> {
    Ok(MessageRecord {
        id: row.try_get(0)?,
        connector_id: row.try_get(1)?,
        factory_id: row.try_get(2)?,
        purpose: row.try_get(3)?,
        phone_tail: row.try_get(4)?,
        status: row.try_get::<_, Option<&str>>(5)?.map(parse_status),
        provider_message_id: row.try_get(6)?,
        created_at: row.try_get(7)?,
        updated_at: row.try_get(8)?,
    })
}
