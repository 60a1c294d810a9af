//! The embedded default store: one SQLite file in the data directory, nothing to install.
//!
//! WAL journal with `synchronous=FULL`, so a commit that answered 200 survives a kill -9 or a
//! power cut. A partial unique index refuses a second live SMS connector whatever the code
//! does. Every operation runs on one writer thread that owns the connection and commits
//! concurrent operations together ([`super::sqlite_writer`]: group commit, one fsync per
//! batch); each operation is a savepoint of its batch, atomic against every other, which makes
//! each verify of a code atomic and one-use.
//!
//! This file holds the schema and the operations themselves, plain blocking functions on a
//! connection; the writer decides the transaction they run in.

mod messages;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::code_verification::{decide_verification, CodeWrite, StoredCode};
use super::secrets_keyring::{SecretsKeyring, StoredConfig};
use super::sqlite_writer::SqliteWriterHandle;
use super::{
    now_millis, ConnectorRecord, ConnectorStore, FallbackOutcome, NewCode, NewConnector,
    SealingReport, StoreError, UpdateOutcome, VerificationCodeStore, VerifyOutcome,
};
use plugin_api::TemplateType;

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Failed(error.to_string())
    }
}

/// The SQLite store. Its work is blocking (SQLite has no async driver), so every method hands
/// it to the writer thread and awaits the answer.
///
/// Reads (`list`, `get`, `live`) go through the writer too, in its batches: they are rare
/// management and start-up calls, one connection keeps the file handling simple, and a read
/// answered after its batch's commit never shows a write that was then lost.
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqliteWriterHandle,
}

/// The schema, one migration per version, recorded in the file's `PRAGMA user_version` (as
/// the PostgreSQL store numbers its migrations). A migration that has shipped is never
/// edited: a change is the next one. Version 1 is the schema from before the numbering,
/// written with `IF NOT EXISTS`: a database made then (`user_version` 0, these tables)
/// takes it as it is, changing nothing, and is recorded at version 1.
const MIGRATIONS: &[&str] = &[
    V1_INITIAL,
    V2_PROTECTION_STATE,
    messages::V3_MESSAGE_LOG,
    V4_FALLBACK_CONNECTOR,
];

/// The standby connector: at most one, never the live one.
const V4_FALLBACK_CONNECTOR: &str = "
ALTER TABLE connectors ADD COLUMN fallback INTEGER NOT NULL DEFAULT 0
    CHECK (fallback IN (0, 1) AND NOT (fallback = 1 AND enabled = 1));
CREATE UNIQUE INDEX one_fallback_connector_per_type ON connectors (type) WHERE fallback = 1;
";

const V1_INITIAL: &str = "
CREATE TABLE IF NOT EXISTS connectors (
    id          TEXT PRIMARY KEY,
    factory_id  TEXT NOT NULL,
    type        TEXT NOT NULL DEFAULT 'Sms',
    config      TEXT NOT NULL,
    metadata    TEXT NOT NULL DEFAULT '{}',
    enabled     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
-- At most one live connector per type: the database refuses a second one.
CREATE UNIQUE INDEX IF NOT EXISTS one_live_connector_per_type ON connectors (type) WHERE enabled = 1;

-- One code per phone and usage type, as a keyed hash; never the code itself.
CREATE TABLE IF NOT EXISTS verification_codes (
    phone            TEXT NOT NULL,
    type             TEXT NOT NULL,
    code_hash        BLOB NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    failed_attempts  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (phone, type)
);
CREATE INDEX IF NOT EXISTS verification_codes_by_expiry ON verification_codes (expires_at);

-- `secrets_key_id`: the key the configs are sealed under (its id, never the key).
CREATE TABLE IF NOT EXISTS store_settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
";

/// The SMS-pumping protection's state of this host (blocks, conversion statistics, allowed
/// and verified countries, budgets' counts), one JSON snapshot saved on block changes and
/// periodically, never per send (`protection::persistence`).
const V2_PROTECTION_STATE: &str = "
CREATE TABLE protection_state (
    name      TEXT PRIMARY KEY,
    value     TEXT NOT NULL,
    saved_at  INTEGER NOT NULL
);
";

const PROTECTION_SNAPSHOT: &str = "snapshot";

const SECRETS_KEY_SETTING: &str = "secrets_key_id";

const COLUMNS: &str = "id, factory_id, config, metadata, enabled, created_at, updated_at, fallback";

impl SqliteStore {
    /// Opens (creating when missing) the database file and starts its writer thread; configs
    /// are sealed and opened with `keyring`. Blocking: call it off the async workers.
    pub fn open(path: &Path, keyring: SecretsKeyring) -> Result<Self, StoreError> {
        let connection = open_connection(path)?;
        Ok(Self {
            writer: SqliteWriterHandle::spawn(connection, keyring)?,
        })
    }

    /// How many batches the writer has committed, each with one fsync: fewer than the
    /// operations when group commit works.
    pub fn committed_batches(&self) -> u64 {
        self.writer.committed_batches()
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let mut connection = Connection::open(path)?;
    // Another connection (a test's, an operator's sqlite3 shell) may hold the write lock a
    // moment: the writer waits for it rather than failing a whole batch.
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    // What a rewrite frees (a config before it was sealed, under an old key) is zeroed,
    // not left in free pages.
    connection.pragma_update(None, "secure_delete", "ON")?;
    migrate(&mut connection)?;
    Ok(connection)
}

/// Brings the schema to the last migration, in one transaction: the migrations the file's
/// `user_version` says it lacks, each followed by its version. A file from a newer build
/// (a version this build does not know) is refused rather than used.
fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = transaction.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let known = MIGRATIONS.len();
    let applied = usize::try_from(version).unwrap_or(usize::MAX);
    if applied > known {
        return Err(StoreError::Failed(format!(
            "the store's schema is at version {version}, newer than this build knows ({known}): it was written by a newer connector-host"
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", index + 1)?;
    }
    transaction.commit()?;
    Ok(())
}

#[async_trait::async_trait]
impl ConnectorStore for SqliteStore {
    async fn list(&self, enabled: Option<bool>) -> Result<Vec<ConnectorRecord>, StoreError> {
        self.writer
            .run_batched(move |connection, keyring| list(connection, keyring, enabled))
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<ConnectorRecord>, StoreError> {
        let id = id.to_owned();
        self.writer
            .run_batched(move |connection, keyring| select_one(connection, keyring, &id))
            .await
    }

    async fn live(&self) -> Result<Option<ConnectorRecord>, StoreError> {
        self.writer.run_batched(live).await
    }

    async fn insert_live(&self, connector: NewConnector) -> Result<ConnectorRecord, StoreError> {
        self.writer
            .run_batched(move |connection, keyring| insert_live(connection, keyring, connector))
            .await
    }

    async fn enable(&self, id: &str) -> Result<Option<ConnectorRecord>, StoreError> {
        let id = id.to_owned();
        self.writer
            .run_batched(move |connection, keyring| enable(connection, keyring, &id))
            .await
    }

    async fn update(
        &self,
        read: &ConnectorRecord,
        config: serde_json::Value,
        metadata: serde_json::Value,
    ) -> Result<UpdateOutcome, StoreError> {
        let read = read.clone();
        self.writer
            .run_batched(move |connection, keyring| {
                update(connection, keyring, &read, config, metadata)
            })
            .await
    }

    async fn save_migrated_config(
        &self,
        read: &ConnectorRecord,
        migrated: serde_json::Value,
        previous_copy_id: &str,
    ) -> Result<UpdateOutcome, StoreError> {
        let (read, previous_copy_id) = (read.clone(), previous_copy_id.to_owned());
        self.writer
            .run_batched(move |connection, keyring| {
                // One job, one savepoint: a copy that fails to insert undoes the update.
                let outcome = update(connection, keyring, &read, migrated, read.metadata.clone())?;
                if matches!(outcome, UpdateOutcome::Updated(_)) {
                    insert_retired_copy(connection, keyring, &read, &previous_copy_id)?;
                }
                Ok(outcome)
            })
            .await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.writer
            .run_batched(move |connection, _| delete(connection, &id))
            .await
    }

    async fn set_fallback(&self, id: &str) -> Result<FallbackOutcome, StoreError> {
        let id = id.to_owned();
        self.writer
            .run_batched(move |connection, keyring| {
                match select_one(connection, keyring, &id)? {
                    None => return Ok(FallbackOutcome::NotFound),
                    Some(record) if record.enabled => return Ok(FallbackOutcome::IsLive),
                    Some(record) if record.fallback => return Ok(FallbackOutcome::Set(record)),
                    Some(_) => {}
                }
                let now = now_millis();
                connection.execute(
                    "UPDATE connectors SET fallback = 0, updated_at = ?1 WHERE fallback = 1 AND type = 'Sms'",
                    params![now],
                )?;
                connection.execute(
                    "UPDATE connectors SET fallback = 1, updated_at = ?2 WHERE id = ?1",
                    params![id, now],
                )?;
                select_one(connection, keyring, &id)?
                    .map(FallbackOutcome::Set)
                    .ok_or_else(|| StoreError::Failed("the fallback connector is missing".to_owned()))
            })
            .await
    }

    async fn clear_fallback(&self, id: &str) -> Result<Option<ConnectorRecord>, StoreError> {
        let id = id.to_owned();
        self.writer
            .run_batched(move |connection, keyring| {
                connection.execute(
                    "UPDATE connectors SET fallback = 0, updated_at = ?2 WHERE id = ?1 AND fallback = 1",
                    params![id, now_millis()],
                )?;
                select_one(connection, keyring, &id)
            })
            .await
    }

    async fn fallback(&self) -> Result<Option<ConnectorRecord>, StoreError> {
        self.writer
            .run_batched(|connection, keyring| {
                let sql =
                    format!("SELECT {COLUMNS} FROM connectors WHERE fallback = 1 AND type = 'Sms'");
                connection
                    .query_row(&sql, [], read_record)
                    .optional()?
                    .map(|row| finish_record(keyring, row))
                    .transpose()
            })
            .await
    }

    async fn prepare_sealing(&self) -> Result<SealingReport, StoreError> {
        self.writer
            .run_exclusive(|connection, keyring| {
                reseal_configs(connection, keyring, ResealScope::Startup)
            })
            .await
    }

    async fn reseal_all_configs(&self) -> Result<SealingReport, StoreError> {
        self.writer
            .run_exclusive(|connection, keyring| {
                reseal_configs(connection, keyring, ResealScope::Rotation)
            })
            .await
    }

    async fn read_setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        let name = name.to_owned();
        self.writer
            .run_batched(move |connection, _| read_setting(connection, &name))
            .await
    }

    async fn record_setting_once(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.writer
            .run_batched(move |connection, _| {
                connection.execute(
                    "INSERT INTO store_settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                    params![name, value],
                )?;
                read_setting(connection, &name)?
                    .ok_or_else(|| StoreError::Failed(format!("the setting {name} is missing")))
            })
            .await
    }

    async fn write_settings(
        &self,
        settings: Vec<(&'static str, Option<String>)>,
    ) -> Result<(), StoreError> {
        self.writer
            .run_batched(move |connection, _| {
                for (name, value) in &settings {
                    match value {
                        Some(value) => connection.execute(
                            "INSERT INTO store_settings (name, value) VALUES (?1, ?2)
                             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                            params![name, value],
                        )?,
                        None => connection
                            .execute("DELETE FROM store_settings WHERE name = ?1", params![name])?,
                    };
                }
                Ok(())
            })
            .await
    }
}

#[async_trait::async_trait]
impl crate::protection::persistence::SnapshotStore for SqliteStore {
    async fn load_snapshot(&self) -> Result<Option<String>, String> {
        self.writer
            .run_batched(|connection, _| {
                Ok(connection
                    .query_row(
                        "SELECT value FROM protection_state WHERE name = ?1",
                        params![PROTECTION_SNAPSHOT],
                        |row| row.get(0),
                    )
                    .optional()?)
            })
            .await
            .map_err(|error| error.to_string())
    }

    async fn save_snapshot(&self, snapshot: String) -> Result<(), String> {
        self.writer
            .run_batched(move |connection, _| {
                connection.execute(
                    "INSERT INTO protection_state (name, value, saved_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value, saved_at = excluded.saved_at",
                    params![PROTECTION_SNAPSHOT, snapshot, now_millis()],
                )?;
                Ok(())
            })
            .await
            .map_err(|error| error.to_string())
    }
}

fn read_setting(connection: &Connection, name: &str) -> Result<Option<String>, StoreError> {
    Ok(connection
        .query_row(
            "SELECT value FROM store_settings WHERE name = ?1",
            params![name],
            |row| row.get(0),
        )
        .optional()?)
}

#[async_trait::async_trait]
impl VerificationCodeStore for SqliteStore {
    async fn save_code(&self, code: NewCode) -> Result<(), StoreError> {
        self.writer
            .run_batched(move |connection, _| save_code(connection, code))
            .await
    }

    async fn discard_code(
        &self,
        phone: &str,
        template_type: TemplateType,
        code_hash: &[u8],
    ) -> Result<(), StoreError> {
        let (phone, code_hash) = (phone.to_owned(), code_hash.to_owned());
        self.writer
            .run_batched(move |connection, _| {
                discard_code(connection, &phone, template_type, &code_hash)
            })
            .await
    }

    async fn verify_code(
        &self,
        phone: &str,
        template_type: TemplateType,
        presented_hashes: &[Vec<u8>],
        now: i64,
        max_attempts: u32,
    ) -> Result<VerifyOutcome, StoreError> {
        let (phone, presented_hashes) = (phone.to_owned(), presented_hashes.to_vec());
        self.writer
            .run_batched(move |connection, _| {
                verify_code(
                    connection,
                    &phone,
                    template_type,
                    &presented_hashes,
                    now,
                    max_attempts,
                )
            })
            .await
    }

    async fn purge_expired_codes(&self, now: i64) -> Result<usize, StoreError> {
        self.writer
            .run_batched(move |connection, _| purge_expired_codes(connection, now))
            .await
    }
}

fn read_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<(ConnectorRecord, String, String)> {
    Ok((
        ConnectorRecord {
            id: row.get(0)?,
            factory_id: row.get(1)?,
            config: serde_json::Value::Null,
            metadata: serde_json::Value::Null,
            enabled: row.get::<_, i64>(4)? == 1,
            created_at: row.get(5)?,
            updated_at: row.get(6)?,
            fallback: row.get::<_, i64>(7)? == 1,
        },
        row.get(2)?,
        row.get(3)?,
    ))
}

fn finish_record(
    keyring: &SecretsKeyring,
    (mut record, sealed_config, metadata): (ConnectorRecord, String, String),
) -> Result<ConnectorRecord, StoreError> {
    record.config = keyring.open(&record.id, &record.factory_id, &sealed_config)?;
    record.metadata = serde_json::from_str(&metadata)?;
    Ok(record)
}

fn select_one(
    connection: &Connection,
    keyring: &SecretsKeyring,
    id: &str,
) -> Result<Option<ConnectorRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM connectors WHERE id = ?1");
    connection
        .query_row(&sql, params![id], read_record)
        .optional()?
        .map(|row| finish_record(keyring, row))
        .transpose()
}

/// Which stored configs [`reseal_configs`] rewrites.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ResealScope {
    /// Start-up: seal configs stored in clear (from before sealing existed), check that every
    /// sealed one opens.
    Startup,
    /// `rotate-secrets-key`: every config, under the keyring's first key.
    Rotation,
}

fn retire_live(connection: &Connection, now: i64) -> Result<(), StoreError> {
    connection.execute(
        "UPDATE connectors SET enabled = 0, updated_at = ?1 WHERE enabled = 1 AND type = 'Sms'",
        params![now],
    )?;
    Ok(())
}

// The connector operations. Each runs under a savepoint of its batch's transaction (see
// `sqlite_writer`): an error rolls back everything it wrote, never a neighbour's work.

fn list(
    connection: &Connection,
    keyring: &SecretsKeyring,
    enabled: Option<bool>,
) -> Result<Vec<ConnectorRecord>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM connectors WHERE (?1 IS NULL OR enabled = ?1) ORDER BY created_at, id"
    );
    let mut statement = connection.prepare(&sql)?;
    let rows = statement.query_map(params![enabled.map(i64::from)], read_record)?;
    rows.map(|row| finish_record(keyring, row?)).collect()
}

fn live(
    connection: &Connection,
    keyring: &SecretsKeyring,
) -> Result<Option<ConnectorRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM connectors WHERE enabled = 1 AND type = 'Sms'");
    connection
        .query_row(&sql, [], read_record)
        .optional()?
        .map(|row| finish_record(keyring, row))
        .transpose()
}

fn insert_live(
    connection: &Connection,
    keyring: &SecretsKeyring,
    connector: NewConnector,
) -> Result<ConnectorRecord, StoreError> {
    let now = now_millis();
    retire_live(connection, now)?;
    connection.execute(
        "INSERT INTO connectors (id, factory_id, type, config, metadata, enabled, created_at, updated_at)
         VALUES (?1, ?2, 'Sms', ?3, ?4, 1, ?5, ?5)",
        params![
            connector.id,
            connector.factory_id,
            keyring.seal(&connector.id, &connector.factory_id, &connector.config)?,
            connector.metadata.to_string(),
            now
        ],
    )?;
    select_one(connection, keyring, &connector.id)?
        .ok_or_else(|| StoreError::Failed("the inserted connector is missing".to_owned()))
}

fn enable(
    connection: &Connection,
    keyring: &SecretsKeyring,
    id: &str,
) -> Result<Option<ConnectorRecord>, StoreError> {
    let now = now_millis();
    match select_one(connection, keyring, id)? {
        None => return Ok(None),
        Some(record) if record.enabled => return Ok(Some(record)),
        Some(_) => {}
    }
    retire_live(connection, now)?;
    connection.execute(
        // The standby going live is no longer the standby.
        "UPDATE connectors SET enabled = 1, fallback = 0, updated_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    select_one(connection, keyring, id)
}

fn update(
    connection: &Connection,
    keyring: &SecretsKeyring,
    read: &ConnectorRecord,
    config: serde_json::Value,
    metadata: serde_json::Value,
) -> Result<UpdateOutcome, StoreError> {
    Ok(match select_one(connection, keyring, &read.id)? {
        None => UpdateOutcome::NotFound,
        Some(current) if current != *read => UpdateOutcome::ChangedMeanwhile,
        Some(_) => {
            connection.execute(
                "UPDATE connectors SET config = ?2, metadata = ?3, updated_at = ?4 WHERE id = ?1",
                params![
                    read.id,
                    keyring.seal(&read.id, &read.factory_id, &config)?,
                    metadata.to_string(),
                    now_millis()
                ],
            )?;
            select_one(connection, keyring, &read.id)?
                .map(UpdateOutcome::Updated)
                .unwrap_or(UpdateOutcome::NotFound)
        }
    })
}

/// A retired copy of `record` under another id: its config sealed for that id.
fn insert_retired_copy(
    connection: &Connection,
    keyring: &SecretsKeyring,
    record: &ConnectorRecord,
    copy_id: &str,
) -> Result<(), StoreError> {
    let now = now_millis();
    connection.execute(
        "INSERT INTO connectors (id, factory_id, type, config, metadata, enabled, created_at, updated_at)
         VALUES (?1, ?2, 'Sms', ?3, ?4, 0, ?5, ?5)",
        params![
            copy_id,
            record.factory_id,
            keyring.seal(copy_id, &record.factory_id, &record.config)?,
            record.metadata.to_string(),
            now
        ],
    )?;
    Ok(())
}

fn delete(connection: &Connection, id: &str) -> Result<bool, StoreError> {
    let deleted = connection.execute("DELETE FROM connectors WHERE id = ?1", params![id])?;
    Ok(deleted > 0)
}

/// An exclusive job (the connection alone, autocommit): one transaction checks the recorded
/// sealing key against the keyring, (re)seals the configs `scope` names and records the key
/// that sealed them; then the WAL is truncated so that what was rewritten leaves no copy
/// behind. The checkpoint is why it cannot share a batch: it needs the commit first.
fn reseal_configs(
    connection: &mut Connection,
    keyring: &SecretsKeyring,
    scope: ResealScope,
) -> Result<SealingReport, StoreError> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let recorded_key_id: Option<String> = transaction
        .query_row(
            "SELECT value FROM store_settings WHERE name = ?1",
            params![SECRETS_KEY_SETTING],
            |row| row.get(0),
        )
        .optional()?;
    let stored_configs = {
        let mut statement = transaction.prepare("SELECT id, factory_id, config FROM connectors")?;
        let rows = statement.query_map([], |row| {
            Ok(StoredConfig {
                connector_id: row.get(0)?,
                factory_id: row.get(1)?,
                stored: row.get(2)?,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let plan = keyring.plan_reseal(
        recorded_key_id.as_deref(),
        scope == ResealScope::Rotation,
        stored_configs,
    )?;
    for (id, sealed) in &plan.rewrites {
        transaction.execute(
            "UPDATE connectors SET config = ?2 WHERE id = ?1",
            params![id, sealed],
        )?;
    }
    transaction.execute(
        "INSERT INTO store_settings (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        params![SECRETS_KEY_SETTING, keyring.sealing_key_id()],
    )?;
    transaction.commit()?;
    if plan.report.rewritten() > 0 {
        // The WAL still holds the pages as they were; checkpoint and cut it to zero.
        connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    Ok(plan.report)
}

// The code operations, the hot path: their statements are prepared once per connection.

fn save_code(connection: &Connection, code: NewCode) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT OR REPLACE INTO verification_codes (phone, type, code_hash, created_at, expires_at, failed_attempts)
             VALUES (?1, ?2, ?3, ?4, ?5, 0)",
        )?
        .execute(params![
            code.phone,
            code.template_type.as_str(),
            code.code_hash,
            code.created_at,
            code.expires_at
        ])?;
    Ok(())
}

fn discard_code(
    connection: &Connection,
    phone: &str,
    template_type: TemplateType,
    code_hash: &[u8],
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "DELETE FROM verification_codes WHERE phone = ?1 AND type = ?2 AND code_hash = ?3",
        )?
        .execute(params![phone, template_type.as_str(), code_hash])?;
    Ok(())
}

/// Reads, then consumes or counts, with nothing in between: the writer runs one job at a time,
/// so of concurrent verifies of one code exactly one finds it. The decision is the stores'
/// shared one ([`decide_verification`]).
fn verify_code(
    connection: &Connection,
    phone: &str,
    template_type: TemplateType,
    presented_hashes: &[Vec<u8>],
    now: i64,
    max_attempts: u32,
) -> Result<VerifyOutcome, StoreError> {
    let template_type = template_type.as_str();
    let stored = connection
        .prepare_cached(
            "SELECT code_hash, expires_at, failed_attempts FROM verification_codes WHERE phone = ?1 AND type = ?2",
        )?
        .query_row(params![phone, template_type], |row| {
            Ok(StoredCode {
                code_hash: row.get(0)?,
                expires_at: row.get(1)?,
                failed_attempts: row.get(2)?,
            })
        })
        .optional()?;
    let outcome = decide_verification(stored.as_ref(), presented_hashes, now, max_attempts);
    let write = match outcome.code_write() {
        CodeWrite::Nothing => None,
        CodeWrite::Consume => Some("DELETE FROM verification_codes WHERE phone = ?1 AND type = ?2"),
        CodeWrite::CountWrongAttempt => Some(
            "UPDATE verification_codes SET failed_attempts = failed_attempts + 1 WHERE phone = ?1 AND type = ?2",
        ),
    };
    if let Some(statement) = write {
        connection
            .prepare_cached(statement)?
            .execute(params![phone, template_type])?;
    }
    Ok(outcome)
}

fn purge_expired_codes(connection: &Connection, now: i64) -> Result<usize, StoreError> {
    Ok(connection.execute(
        "DELETE FROM verification_codes WHERE expires_at <= ?1",
        params![now],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn new_connector(id: &str) -> NewConnector {
        NewConnector {
            id: id.to_owned(),
            factory_id: "mock-short-message-service".to_owned(),
            config: json!({"templates": [], "id": id}),
            metadata: json!({}),
        }
    }

    // Through the async API, as the host uses it: every call goes through the writer thread.
    async fn open_store(dir: &tempfile::TempDir) -> SqliteStore {
        let (keyring, _) =
            SecretsKeyring::read_or_create_file(&dir.path().join("secrets-key")).unwrap();
        open_store_with(dir, keyring).await
    }

    async fn open_store_with(dir: &tempfile::TempDir, keyring: SecretsKeyring) -> SqliteStore {
        let store = open_unprepared(dir, keyring);
        store.prepare_sealing().await.unwrap();
        store
    }

    fn open_unprepared(dir: &tempfile::TempDir, keyring: SecretsKeyring) -> SqliteStore {
        SqliteStore::open(&dir.path().join("store.sqlite3"), keyring).unwrap()
    }

    /// Every file SQLite keeps for the store, read raw.
    fn raw_store_bytes(dir: &tempfile::TempDir) -> Vec<u8> {
        ["store.sqlite3", "store.sqlite3-wal", "store.sqlite3-shm"]
            .iter()
            .filter_map(|name| std::fs::read(dir.path().join(name)).ok())
            .flatten()
            .collect()
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    }

    fn connector_with_secret(id: &str, secret: &str) -> NewConnector {
        NewConnector {
            config: json!({"authToken": secret, "endpoint": "https://sms.example/send"}),
            ..new_connector(id)
        }
    }

    #[tokio::test]
    async fn configs_are_sealed_in_the_database_and_its_wal() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir).await;
        let saved = store
            .insert_live(connector_with_secret("first", "token-AAAA-1111"))
            .await
            .unwrap();
        assert_eq!(saved.config["authToken"], "token-AAAA-1111");
        let UpdateOutcome::Updated(_) = store
            .update(
                &saved,
                json!({"authToken": "token-BBBB-2222", "endpoint": "https://sms.example/send"}),
                json!({}),
            )
            .await
            .unwrap()
        else {
            panic!("the update applies");
        };
        let raw = raw_store_bytes(&dir);
        assert!(!contains(&raw, "token-AAAA-1111"));
        assert!(!contains(&raw, "token-BBBB-2222"));
        assert!(!contains(&raw, "sms.example"));
        assert!(contains(&raw, "sealed2:"));
        assert_eq!(
            store.get("first").await.unwrap().unwrap().config["authToken"],
            "token-BBBB-2222"
        );
    }

    #[tokio::test]
    async fn configs_saved_in_clear_are_sealed_at_start_up_and_no_copy_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite3");
        {
            // A store as the host wrote it before sealing existed.
            let connection = Connection::open(&path).unwrap();
            connection
                .pragma_update(None, "journal_mode", "WAL")
                .unwrap();
            connection
                .execute_batch(SCHEMA_BEFORE_NUMBERED_MIGRATIONS)
                .unwrap();
            connection
                .execute(
                    "INSERT INTO connectors (id, factory_id, config, enabled, created_at, updated_at)
                     VALUES ('old', 'f', '{\"authToken\":\"token-CLEAR-3333\"}', 1, 0, 0)",
                    [],
                )
                .unwrap();
        }
        assert!(contains(&raw_store_bytes(&dir), "token-CLEAR-3333"));
        let store = open_store(&dir).await;
        assert!(!contains(&raw_store_bytes(&dir), "token-CLEAR-3333"));
        assert_eq!(
            store.live().await.unwrap().unwrap().config["authToken"],
            "token-CLEAR-3333"
        );
        // Once sealed, the next start-up rewrites nothing.
        let again = store.prepare_sealing().await.unwrap();
        assert_eq!(again.rewritten(), 0);
        // A config written in clear now (the key is recorded) is refused, not sealed: it stays
        // as written, does not open, and the live connector reads as unreadable, by name.
        let planted = "{\"authToken\":\"planted-4444\"}";
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE connectors SET config = ?1 WHERE id = 'old'",
                [planted],
            )
            .unwrap();
        let refused = store.prepare_sealing().await.unwrap();
        assert_eq!(refused.refused, vec!["old"]);
        assert_eq!(refused.rewritten(), 0);
        match store.live().await {
            Err(StoreError::ConfigUnreadable(unreadable)) => {
                assert_eq!(unreadable.connector_id, "old");
                assert!(
                    unreadable.reason.contains("is not sealed"),
                    "{}",
                    unreadable.reason
                );
            }
            other => panic!("{other:?}"),
        }
        let rotation = store.reseal_all_configs().await.unwrap();
        assert_eq!(rotation.refused, vec!["old"]);
        assert!(
            contains(&raw_store_bytes(&dir), "planted-4444"),
            "left as written"
        );
    }

    #[tokio::test]
    async fn a_sealed_config_moved_to_another_factory_does_not_open_and_the_others_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir).await;
        store
            .insert_live(connector_with_secret("kept", "t-1"))
            .await
            .unwrap();
        store
            .insert_live(connector_with_secret("moved", "t-2"))
            .await
            .unwrap();
        Connection::open(dir.path().join("store.sqlite3"))
            .unwrap()
            .execute(
                "UPDATE connectors SET factory_id = 'another-plugin' WHERE id = 'moved'",
                [],
            )
            .unwrap();
        let report = store.prepare_sealing().await.unwrap();
        assert_eq!(report.refused, vec!["moved"]);
        match store.live().await {
            Err(StoreError::ConfigUnreadable(unreadable)) => {
                assert_eq!(unreadable.factory_id, "another-plugin");
                assert!(unreadable.reason.contains("another connector or factory"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            store.get("kept").await.unwrap().unwrap().config["authToken"],
            "t-1"
        );
    }

    #[tokio::test]
    async fn another_key_file_is_refused_and_a_rotation_reseals_everything() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("secrets-key");
        let (original, _) = SecretsKeyring::read_or_create_file(&key_path).unwrap();
        let original_id = original.sealing_key_id().to_owned();
        let rotating = original.with_new_sealing_key().unwrap();
        drop(
            open_store_with(&dir, original)
                .await
                .insert_live(connector_with_secret("first", "t-1"))
                .await
                .unwrap(),
        );

        let stranger = open_unprepared(&dir, SecretsKeyring::generate().unwrap());
        let refused = stranger.prepare_sealing().await.unwrap_err().to_string();
        assert!(refused.contains(&original_id), "{refused}");
        drop(stranger);

        let finished = rotating.sealing_key_only();
        let interrupted = open_unprepared(&dir, rotating);
        let refused = interrupted.prepare_sealing().await.unwrap_err().to_string();
        assert!(refused.contains("interrupted"), "{refused}");
        let report = interrupted.reseal_all_configs().await.unwrap();
        assert_eq!(report.resealed, 1);
        assert_eq!(report.key_id, finished.sealing_key_id());
        drop(interrupted);

        let rotated = open_store_with(&dir, finished).await;
        assert_eq!(
            rotated.get("first").await.unwrap().unwrap().config["authToken"],
            "t-1"
        );
    }

    #[tokio::test]
    async fn creating_retires_the_live_connector_and_keeps_its_config() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir).await;
        store.insert_live(new_connector("first")).await.unwrap();
        store.insert_live(new_connector("second")).await.unwrap();
        assert_eq!(store.live().await.unwrap().unwrap().id, "second");
        let retired = store.list(Some(false)).await.unwrap();
        assert_eq!(retired.len(), 1);
        assert_eq!(retired[0].config["id"], "first");
        assert_eq!(store.list(Some(true)).await.unwrap().len(), 1);
        assert_eq!(store.list(None).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn enable_switches_back_in_one_call_and_unknown_ids_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir).await;
        store.insert_live(new_connector("first")).await.unwrap();
        store.insert_live(new_connector("second")).await.unwrap();
        let enabled = store.enable("first").await.unwrap().unwrap();
        assert!(enabled.enabled);
        assert!(!store.get("second").await.unwrap().unwrap().enabled);
        assert_eq!(store.enable("missing").await.unwrap(), None);
        let mut missing = store.get("first").await.unwrap().unwrap();
        missing.id = "missing".to_owned();
        assert_eq!(
            store.update(&missing, json!({}), json!({})).await.unwrap(),
            UpdateOutcome::NotFound
        );
        assert!(!store.delete("missing").await.unwrap());
        assert!(store.delete("second").await.unwrap());
        assert_eq!(store.get("second").await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_database_refuses_a_second_live_connector() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir).await;
        store.insert_live(new_connector("first")).await.unwrap();
        let connection = Connection::open(dir.path().join("store.sqlite3")).unwrap();
        let second_live = connection.execute(
            "INSERT INTO connectors (id, factory_id, config, enabled, created_at, updated_at) VALUES ('x', 'f', '{}', 1, 0, 0)",
            [],
        );
        assert!(second_live.is_err());
    }

    fn new_code(hash: &[u8], expires_at: i64) -> NewCode {
        NewCode {
            phone: "+12015550123".to_owned(),
            template_type: TemplateType::SignIn,
            code_hash: hash.to_vec(),
            created_at: 0,
            expires_at,
        }
    }

    #[tokio::test]
    async fn a_code_works_once_and_wrong_attempts_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir).await;
        let verify = |hash: &'static [u8], now| {
            let store = store.clone();
            async move {
                store
                    .verify_code(
                        "+12015550123",
                        TemplateType::SignIn,
                        &[hash.to_vec()],
                        now,
                        2,
                    )
                    .await
                    .unwrap()
            }
        };
        assert_eq!(verify(b"x", 1).await, VerifyOutcome::NotFound);
        store.save_code(new_code(b"right", 1000)).await.unwrap();
        assert_eq!(
            verify(b"wrong", 1).await,
            VerifyOutcome::Mismatch { attempts_left: 1 }
        );
        assert_eq!(verify(b"right", 1).await, VerifyOutcome::Verified);
        assert_eq!(
            verify(b"right", 1).await,
            VerifyOutcome::NotFound,
            "a code works once"
        );

        store.save_code(new_code(b"right", 1000)).await.unwrap();
        assert_eq!(
            verify(b"wrong", 1).await,
            VerifyOutcome::Mismatch { attempts_left: 1 }
        );
        assert_eq!(
            verify(b"wrong", 1).await,
            VerifyOutcome::Mismatch { attempts_left: 0 }
        );
        assert_eq!(verify(b"right", 1).await, VerifyOutcome::ExceededMaxTry);

        store.save_code(new_code(b"new", 1000)).await.unwrap();
        assert_eq!(
            verify(b"right", 1).await,
            VerifyOutcome::Mismatch { attempts_left: 1 },
            "a new code replaces the old one"
        );
        assert_eq!(verify(b"new", 1000).await, VerifyOutcome::Expired);
        assert_eq!(store.purge_expired_codes(1000).await.unwrap(), 1);
        assert_eq!(verify(b"new", 1).await, VerifyOutcome::NotFound);
    }

    fn code_for(phone: &str, hash: &[u8]) -> NewCode {
        NewCode {
            phone: phone.to_owned(),
            ..new_code(hash, i64::MAX)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_code_operations_share_commits_and_all_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir).await;
        let phones: Vec<String> = (0..200)
            .map(|index| format!("+1201555{index:04}"))
            .collect();
        let batches_before = store.committed_batches();
        let saves: Vec<_> = phones
            .iter()
            .map(|phone| {
                let (store, phone) = (store.clone(), phone.clone());
                tokio::spawn(async move { store.save_code(code_for(&phone, b"right")).await })
            })
            .collect();
        for save in saves {
            save.await.unwrap().unwrap();
        }
        // Every other phone verifies its code, all at once.
        let verifies: Vec<_> = phones
            .iter()
            .step_by(2)
            .map(|phone| {
                let (store, phone) = (store.clone(), phone.clone());
                tokio::spawn(async move {
                    store
                        .verify_code(&phone, TemplateType::SignIn, &[b"right".to_vec()], 1, 3)
                        .await
                })
            })
            .collect();
        for verify in verifies {
            assert_eq!(verify.await.unwrap().unwrap(), VerifyOutcome::Verified);
        }
        let operations = phones.len() as u64 * 3 / 2;
        let batches = store.committed_batches() - batches_before;
        assert!(
            batches < operations,
            "{operations} operations took {batches} commits: no group commit"
        );
        drop(store);

        let reopened = open_store(&dir).await;
        for (index, phone) in phones.iter().enumerate() {
            let expected = if index % 2 == 0 {
                VerifyOutcome::NotFound
            } else {
                VerifyOutcome::Verified
            };
            assert_eq!(
                reopened
                    .verify_code(phone, TemplateType::SignIn, &[b"right".to_vec()], 1, 3)
                    .await
                    .unwrap(),
                expected,
                "{phone}"
            );
        }
    }

    #[tokio::test]
    async fn a_panicking_operation_answers_an_error_and_the_store_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir).await;
        let panicked = store
            .writer
            .run_batched(|connection, _| -> Result<(), StoreError> {
                save_code(connection, new_code(b"half-done", 1000))?;
                panic!("a bug in a store operation")
            })
            .await
            .unwrap_err();
        assert!(panicked.to_string().contains("panicked"), "{panicked}");
        assert_eq!(
            store
                .verify_code(
                    "+12015550123",
                    TemplateType::SignIn,
                    &[b"half-done".to_vec()],
                    1,
                    3
                )
                .await
                .unwrap(),
            VerifyOutcome::NotFound,
            "what the panicking operation wrote was rolled back"
        );
        store.save_code(new_code(b"right", 1000)).await.unwrap();
        assert_eq!(
            store
                .verify_code(
                    "+12015550123",
                    TemplateType::SignIn,
                    &[b"right".to_vec()],
                    1,
                    3
                )
                .await
                .unwrap(),
            VerifyOutcome::Verified
        );
    }

    #[tokio::test]
    async fn a_second_live_connector_refused_by_the_index_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir).await;
        store.insert_live(new_connector("first")).await.unwrap();
        // Queued at once, so they may share a batch (the writer's own tests make sure of it).
        let refused = store.writer.run_batched(|connection, _| {
            connection.execute(
                "INSERT INTO connectors (id, factory_id, config, enabled, created_at, updated_at) VALUES ('x', 'f', '{}', 1, 0, 0)",
                [],
            )?;
            Ok(())
        });
        let saved = store.save_code(new_code(b"right", 1000));
        let created = store.insert_live(new_connector("second"));
        let (refused, saved, created) = tokio::join!(refused, saved, created);
        assert!(refused.unwrap_err().to_string().contains("UNIQUE"));
        saved.unwrap();
        assert_eq!(created.unwrap().id, "second");
        assert_eq!(store.live().await.unwrap().unwrap().id, "second");
        assert_eq!(store.get("x").await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_update_computed_from_a_stale_read_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir).await;
        let read = store.insert_live(new_connector("first")).await.unwrap();
        let UpdateOutcome::Updated(_) = store
            .update(&read, json!({"a": 1}), json!({}))
            .await
            .unwrap()
        else {
            panic!("the first update applies");
        };
        assert_eq!(
            store
                .update(&read, json!({"a": 2}), json!({}))
                .await
                .unwrap(),
            UpdateOutcome::ChangedMeanwhile
        );
        assert_eq!(
            store.get("first").await.unwrap().unwrap().config,
            json!({"a": 1})
        );
    }

    /// The schema as the store created it before migrations were numbered (`user_version`
    /// 0), kept here as it was: a database made by that build must open without loss.
    const SCHEMA_BEFORE_NUMBERED_MIGRATIONS: &str = "
CREATE TABLE IF NOT EXISTS connectors (
    id          TEXT PRIMARY KEY,
    factory_id  TEXT NOT NULL,
    type        TEXT NOT NULL DEFAULT 'Sms',
    config      TEXT NOT NULL,
    metadata    TEXT NOT NULL DEFAULT '{}',
    enabled     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_live_connector_per_type ON connectors (type) WHERE enabled = 1;
CREATE TABLE IF NOT EXISTS verification_codes (
    phone            TEXT NOT NULL,
    type             TEXT NOT NULL,
    code_hash        BLOB NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    failed_attempts  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (phone, type)
);
CREATE INDEX IF NOT EXISTS verification_codes_by_expiry ON verification_codes (expires_at);
CREATE TABLE IF NOT EXISTS store_settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
";

    fn user_version(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn a_database_from_before_numbered_migrations_opens_at_the_last_version_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite3");
        let (keyring, _) =
            SecretsKeyring::read_or_create_file(&dir.path().join("secrets-key")).unwrap();
        let config = json!({"authToken": "kept", "templates": []});
        {
            let old = Connection::open(&path).unwrap();
            old.pragma_update(None, "journal_mode", "WAL").unwrap();
            old.execute_batch(SCHEMA_BEFORE_NUMBERED_MIGRATIONS)
                .unwrap();
            old.execute(
                "INSERT INTO connectors (id, factory_id, config, metadata, enabled, created_at, updated_at)
                 VALUES ('old', 'mock-short-message-service', ?1, '{\"name\":{\"en\":\"Old\"}}', 1, 1, 2)",
                params![keyring.seal("old", "mock-short-message-service", &config).unwrap()],
            )
            .unwrap();
            old.execute(
                "INSERT INTO verification_codes (phone, type, code_hash, created_at, expires_at, failed_attempts)
                 VALUES ('+12015550123', 'SignIn', x'0102', 1, 9000000000000, 1)",
                [],
            )
            .unwrap();
            old.execute(
                "INSERT INTO store_settings (name, value) VALUES (?1, ?2)",
                params![SECRETS_KEY_SETTING, keyring.sealing_key_id()],
            )
            .unwrap();
        }
        assert_eq!(user_version(&path), 0);
        let store = SqliteStore::open(&path, keyring).unwrap();
        let sealing = store.prepare_sealing().await.unwrap();
        assert_eq!((sealing.rewritten(), sealing.refused.len()), (0, 0));
        let live = store.live().await.unwrap().unwrap();
        assert_eq!((live.id.as_str(), &live.config), ("old", &config));
        assert_eq!(live.metadata["name"]["en"], "Old");
        assert_eq!((live.created_at, live.updated_at), (1, 2));
        // The code kept its hash and its count of wrong attempts.
        assert_eq!(
            store
                .verify_code("+12015550123", TemplateType::SignIn, &[vec![9]], 5, 3)
                .await
                .unwrap(),
            VerifyOutcome::Mismatch { attempts_left: 1 }
        );
        assert_eq!(
            store
                .verify_code("+12015550123", TemplateType::SignIn, &[vec![1, 2]], 5, 3)
                .await
                .unwrap(),
            VerifyOutcome::Verified
        );
        drop(store);
        assert_eq!(user_version(&path), MIGRATIONS.len() as i64);
    }

    #[tokio::test]
    async fn a_new_database_is_at_the_last_version_and_one_from_a_newer_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite3");
        drop(open_store(&dir).await);
        assert_eq!(user_version(&path), MIGRATIONS.len() as i64);
        // Opening again runs nothing and keeps the version.
        drop(open_store(&dir).await);
        assert_eq!(user_version(&path), MIGRATIONS.len() as i64);
        let newer = MIGRATIONS.len() as i64 + 1;
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", newer)
            .unwrap();
        let (keyring, _) =
            SecretsKeyring::read_or_create_file(&dir.path().join("secrets-key")).unwrap();
        let refused = SqliteStore::open(&path, keyring).err().unwrap().to_string();
        assert!(refused.contains("newer connector-host"), "{refused}");
        assert_eq!(user_version(&path), newer);
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open_store(&dir).await;
            let first = store.insert_live(new_connector("first")).await.unwrap();
            store
                .update(&first, json!({"a": 1}), json!({"name": {"en": "Mine"}}))
                .await
                .unwrap();
        }
        let store = open_store(&dir).await;
        let record = store.live().await.unwrap().unwrap();
        assert_eq!(record.config, json!({"a": 1}));
        assert_eq!(record.metadata["name"]["en"], "Mine");
    }
}
