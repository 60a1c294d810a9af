//! The protection's shared state in PostgreSQL (`V4__shared_protection.sql`): one exchange
//! per host and tick is one transaction whose statements are pipelined (sent together: begin,
//! one round trip for all of them, commit): the host's blocks, refusals, lifts, countries and
//! counts written, then the block table, the countries and the other hosts' new rows read.

use std::time::Duration;

use serde_json::{json, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::PostgresStore;
use crate::protection::shared_state::{
    CountDeltas, Pulled, Push, RemoteCounts, SharedSnapshot, SharedStateStore, StoredSnapshot,
};
use crate::protection::{Block, BlockKind, BlockReason, MAX_BLOCKS};
use crate::store::StoreError;

type Param = dyn ToSql + Sync;

/// The database's clock in milliseconds, as SQL.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";
/// Rows are read back this far (by the database's clock): a row is committed within the
/// operation deadline of being written.
const READ_BACK_MS: i64 = 60_000;
/// Rows this much older than the snapshot are purged (a host starting from the previous
/// snapshot still finds the rows after it).
const KEPT_BEFORE_SNAPSHOT_MS: i64 = 300_000;
/// Start-up reads the snapshot and the rows after it: more than one operation's deadline.
const LOAD_DEADLINE: Duration = Duration::from_secs(60);

fn label<T: serde::Serialize>(value: T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(text)) => text,
        _ => String::new(),
    }
}

fn parse_label<T: serde::de::DeserializeOwned>(text: String) -> Option<T> {
    serde_json::from_value(Value::String(text)).ok()
}

/// A block row; `None` (skipped, logged) for a kind or reason this host does not know.
fn read_block(row: &Row) -> Result<Option<Block>, StoreError> {
    let kind: String = row.try_get(1)?;
    let reason: String = row.try_get(3)?;
    let (Some(kind), Some(reason)) = (
        parse_label::<BlockKind>(kind.clone()),
        parse_label::<BlockReason>(reason.clone()),
    ) else {
        tracing::warn!(%kind, %reason, "a shared protection block of a kind or reason this host does not know is ignored");
        return Ok(None);
    };
    let blocked: i64 = row.try_get(7)?;
    Ok(Some(Block {
        id: row.try_get(0)?,
        kind,
        subject: row.try_get(2)?,
        reason,
        detail: row.try_get(4)?,
        since: row.try_get(5)?,
        until: row.try_get(6)?,
        blocked: u64::try_from(blocked).unwrap_or(0),
    }))
}

fn read_events(rows: &[Row]) -> Result<Vec<RemoteCounts>, StoreError> {
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let host_id: String = row.try_get(0)?;
        let seq: i64 = row.try_get(1)?;
        let body: Value = row.try_get(3)?;
        match serde_json::from_value::<CountDeltas>(body) {
            Ok(counts) => events.push(RemoteCounts {
                host_id,
                seq,
                at: row.try_get(2)?,
                counts,
            }),
            Err(error) => {
                tracing::warn!(%host_id, seq, %error, "an unreadable row of protection counts is ignored")
            }
        }
    }
    Ok(events)
}

fn pulled(
    block_rows: &[Row],
    country_rows: &[Row],
    event_rows: &[Row],
) -> Result<Pulled, StoreError> {
    let mut blocks = Vec::with_capacity(block_rows.len());
    for row in block_rows {
        blocks.extend(read_block(row)?);
    }
    let countries = country_rows
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, StoreError>>()?;
    Ok(Pulled {
        blocks,
        countries,
        events: read_events(event_rows)?,
    })
}

/// The snapshot row; `None` (logged) when it cannot be read: the host starts from the rows.
fn read_snapshot(row: &Row) -> Result<Option<StoredSnapshot>, StoreError> {
    let applied: Value = row.try_get(1)?;
    let body: Value = row.try_get(2)?;
    let applied = serde_json::from_value::<Vec<(String, i64)>>(applied);
    let snapshot = serde_json::from_value::<SharedSnapshot>(body);
    match (applied, snapshot) {
        (Ok(applied), Ok(snapshot)) => Ok(Some(StoredSnapshot {
            taken_at: row.try_get(0)?,
            applied,
            snapshot,
        })),
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(%error, "the shared protection snapshot is unreadable; starting from the rows kept");
            Ok(None)
        }
    }
}

/// Shared counts are worth less than an fsync per exchange and host.
const NO_FSYNC: &str = "SET LOCAL synchronous_commit = off";
/// A block for the same subject and reason in force wins; an ended one is replaced.
const INSERT_BLOCKS: &str =
    "INSERT INTO protection_blocks (id, kind, subject, reason, detail, since, until, blocked)
     SELECT id, kind, subject, reason, detail, since, until, 0
     FROM jsonb_to_recordset($1::jsonb)
       AS b(id text, kind text, subject text, reason text, detail text, since bigint, until bigint)
     ON CONFLICT (kind, subject, reason) DO UPDATE
       SET id = EXCLUDED.id, detail = EXCLUDED.detail, since = EXCLUDED.since,
           until = EXCLUDED.until, blocked = 0
       WHERE protection_blocks.until IS NOT NULL AND protection_blocks.until <= $2";
const ADD_BLOCKED: &str = "UPDATE protection_blocks p SET blocked = p.blocked + d.count
     FROM jsonb_to_recordset($1::jsonb) AS d(kind text, subject text, reason text, count bigint)
     WHERE p.kind = d.kind AND p.subject = d.subject AND p.reason = d.reason";
const DELETE_BLOCKS: &str = "DELETE FROM protection_blocks WHERE id = ANY($1) OR until <= $2";
const INSERT_COUNTRIES: &str = "INSERT INTO protection_countries (region, allowed)
     SELECT * FROM unnest($1::text[], $2::boolean[]) ON CONFLICT DO NOTHING";
/// At most [`MAX_BLOCKS`], as a host keeps them: the ones that end last. A block past the cap
/// is dropped from the table by the next exchange of a host that had it.
const SELECT_BLOCKS: &str = "SELECT id, kind, subject, reason, detail, since, until, blocked
     FROM protection_blocks ORDER BY until DESC NULLS FIRST LIMIT $1";
const MAX_BLOCKS_READ: i64 = MAX_BLOCKS as i64;
const SELECT_COUNTRIES: &str = "SELECT region, allowed FROM protection_countries";

#[async_trait::async_trait]
impl SharedStateStore for PostgresStore {
    async fn load_shared_protection(&self) -> Result<(Option<StoredSnapshot>, Pulled), String> {
        let load = async {
            let mut client = self.client().await?;
            // One view: the snapshot and the rows after it.
            let transaction = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let snapshot = transaction
                .query_opt(
                    "SELECT taken_at, applied, body FROM protection_snapshot WHERE id = 1",
                    &[],
                )
                .await?
                .map(|row| read_snapshot(&row))
                .transpose()?
                .flatten();
            let (after, applied_hosts, applied_seqs) = match &snapshot {
                Some(stored) => (
                    stored.taken_at - READ_BACK_MS,
                    stored
                        .applied
                        .iter()
                        .map(|(host, _)| host.clone())
                        .collect(),
                    stored.applied.iter().map(|(_, seq)| *seq).collect(),
                ),
                None => (i64::MIN, Vec::<String>::new(), Vec::<i64>::new()),
            };
            let event_params: [&Param; 3] = [&after, &applied_hosts, &applied_seqs];
            let block_read_params: [&Param; 1] = [&MAX_BLOCKS_READ];
            let (blocks, countries, events) = tokio::try_join!(
                transaction.query(SELECT_BLOCKS, &block_read_params),
                transaction.query(SELECT_COUNTRIES, &[]),
                transaction.query(
                    "SELECT e.host_id, e.seq, e.at, e.body FROM protection_events e
                     LEFT JOIN unnest($2::text[], $3::bigint[]) AS applied(host_id, seq)
                       ON applied.host_id = e.host_id
                     WHERE e.at > $1 AND e.seq > coalesce(applied.seq, 0)
                     ORDER BY e.at, e.host_id, e.seq",
                    &event_params,
                ),
            )?;
            transaction.commit().await?;
            Ok::<_, StoreError>((snapshot, pulled(&blocks, &countries, &events)?))
        };
        tokio::time::timeout(LOAD_DEADLINE, load)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "PostgreSQL did not answer within {} s",
                    LOAD_DEADLINE.as_secs()
                )))
            })
            .map_err(|error| error.to_string())
    }

    async fn exchange_protection(
        &self,
        host_id: &str,
        push: &Push,
        applied: &[(String, i64)],
        now: i64,
    ) -> Result<Pulled, String> {
        self.within_deadline(async {
            let new_blocks = serde_json::to_value(&push.new_blocks)?;
            let blocked: Value = push
                .blocked
                .iter()
                .map(|((kind, subject, reason), count)| {
                    json!({
                        "kind": label(kind),
                        "subject": subject,
                        "reason": label(reason),
                        "count": count,
                    })
                })
                .collect();
            let regions: Vec<String> = push
                .countries
                .iter()
                .map(|(region, _)| region.clone())
                .collect();
            let allowed: Vec<bool> = push.countries.iter().map(|(_, allowed)| *allowed).collect();
            let body = push.counts.as_ref().map(serde_json::to_value).transpose()?;
            let host_id = host_id.to_owned();
            let applied_hosts: Vec<String> = applied.iter().map(|(host, _)| host.clone()).collect();
            let applied_seqs: Vec<i64> = applied.iter().map(|(_, seq)| *seq).collect();
            let insert_events = format!(
                "INSERT INTO protection_events (host_id, seq, at, body)
                 SELECT $1::text, $2::bigint, {NOW_MS}, $3::jsonb WHERE $3::jsonb IS NOT NULL
                 ON CONFLICT DO NOTHING"
            );
            let select_events = format!(
                "SELECT e.host_id, e.seq, e.at, e.body FROM protection_events e
                 LEFT JOIN unnest($2::text[], $3::bigint[]) AS applied(host_id, seq)
                   ON applied.host_id = e.host_id
                 WHERE e.at > {NOW_MS} - $4 AND e.host_id <> $1
                   AND e.seq > coalesce(applied.seq, 0)
                 ORDER BY e.at, e.host_id, e.seq"
            );
            let block_params: [&Param; 2] = [&new_blocks, &now];
            let blocked_params: [&Param; 1] = [&blocked];
            let lift_params: [&Param; 2] = [&push.lifted_ids, &now];
            let country_params: [&Param; 2] = [&regions, &allowed];
            let event_params: [&Param; 3] = [&host_id, &push.seq, &body];
            let block_read_params: [&Param; 1] = [&MAX_BLOCKS_READ];
            let read_params: [&Param; 4] = [&host_id, &applied_hosts, &applied_seqs, &READ_BACK_MS];
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            // Prepared first (cached per connection): a prepared statement is sent when its
            // future is first polled, so the executions below run in this order.
            let (
                no_fsync,
                insert_blocks,
                add_blocked,
                delete_blocks,
                insert_countries,
                insert_row,
                select_blocks,
                select_countries,
                select_rows,
            ) = tokio::try_join!(
                transaction.prepare_cached(NO_FSYNC),
                transaction.prepare_cached(INSERT_BLOCKS),
                transaction.prepare_cached(ADD_BLOCKED),
                transaction.prepare_cached(DELETE_BLOCKS),
                transaction.prepare_cached(INSERT_COUNTRIES),
                transaction.prepare_cached(&insert_events),
                transaction.prepare_cached(SELECT_BLOCKS),
                transaction.prepare_cached(SELECT_COUNTRIES),
                transaction.prepare_cached(&select_events),
            )?;
            // Sent together, run in this order: one round trip.
            let (_, _, _, _, _, _, blocks, countries, events) = tokio::try_join!(
                transaction.execute(&no_fsync, &[]),
                transaction.execute(&insert_blocks, &block_params),
                transaction.execute(&add_blocked, &blocked_params),
                transaction.execute(&delete_blocks, &lift_params),
                transaction.execute(&insert_countries, &country_params),
                transaction.execute(&insert_row, &event_params),
                transaction.query(&select_blocks, &block_read_params),
                transaction.query(&select_countries, &[]),
                transaction.query(&select_rows, &read_params),
            )?;
            transaction.commit().await?;
            pulled(&blocks, &countries, &events)
        })
        .await
        .map_err(|error| error.to_string())
    }

    async fn purge_protection_events(&self, retention_ms: i64) -> Result<u64, String> {
        self.within_deadline(async {
            Ok(self
                .client()
                .await?
                .execute(
                    &format!(
                        "DELETE FROM protection_events WHERE at < greatest(
                           {NOW_MS} - $1,
                           (SELECT taken_at - $2 FROM protection_snapshot WHERE id = 1))"
                    ),
                    &[&retention_ms, &KEPT_BEFORE_SNAPSHOT_MS],
                )
                .await?)
        })
        .await
        .map_err(|error| error.to_string())
    }

    async fn protection_snapshot_age(&self) -> Result<Option<i64>, String> {
        self.within_deadline(async {
            let row = self
                .client()
                .await?
                .query_opt(
                    &format!("SELECT {NOW_MS} - taken_at FROM protection_snapshot WHERE id = 1"),
                    &[],
                )
                .await?;
            Ok(row.map(|row| row.try_get(0)).transpose()?)
        })
        .await
        .map_err(|error| error.to_string())
    }

    async fn save_protection_snapshot(
        &self,
        host_id: &str,
        applied: &[(String, i64)],
        snapshot: &SharedSnapshot,
        min_age_ms: i64,
    ) -> Result<(), String> {
        self.within_deadline(async {
            let applied: Value = applied
                .iter()
                .map(|(host, seq)| json!([host, seq]))
                .collect();
            let body = serde_json::to_value(snapshot)?;
            self.client()
                .await?
                .execute(
                    &format!(
                        "INSERT INTO protection_snapshot (id, host_id, taken_at, applied, body)
                         VALUES (1, $1, {NOW_MS}, $2, $3)
                         ON CONFLICT (id) DO UPDATE
                           SET host_id = EXCLUDED.host_id, taken_at = EXCLUDED.taken_at,
                               applied = EXCLUDED.applied, body = EXCLUDED.body
                           WHERE protection_snapshot.taken_at < {NOW_MS} - $4"
                    ),
                    &[&host_id, &applied, &body, &min_age_ms],
                )
                .await?;
            Ok(())
        })
        .await
        .map_err(|error| error.to_string())
    }
}

impl PostgresStore {
    /// An admin lifts a block for every host; `false` when the table has no such block.
    pub async fn lift_protection_block(&self, id: &str) -> Result<bool, StoreError> {
        self.within_deadline(async {
            Ok(self
                .client()
                .await?
                .execute("DELETE FROM protection_blocks WHERE id = $1", &[&id])
                .await?
                > 0)
        })
        .await
    }

    /// An admin allows a country for every host.
    pub async fn allow_protection_country(&self, region: &str) -> Result<(), StoreError> {
        self.within_deadline(async {
            self.client()
                .await?
                .execute(
                    "INSERT INTO protection_countries (region, allowed) VALUES ($1, true)
                     ON CONFLICT DO NOTHING",
                    &[&region],
                )
                .await?;
            // Its first_seen_country blocks end with it.
            self.client()
                .await?
                .execute(
                    "DELETE FROM protection_blocks WHERE reason = 'first_seen_country' AND subject = $1",
                    &[&region],
                )
                .await?;
            Ok(())
        })
        .await
    }
}
