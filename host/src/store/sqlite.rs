//! The embedded default store: one SQLite file in the data directory, nothing to install.
//!
//! WAL journal with `synchronous=FULL`, so a commit that answered 200 survives a kill -9 or a
//! power cut. A partial unique index refuses a second live SMS connector whatever the code
//! does. One connection behind a mutex: writes are serialized, which also makes each verify
//! of a code atomic.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use subtle::ConstantTimeEq;

use super::secrets_keyring::{check_recorded_key, SecretsKeyring};
use super::{
    now_millis, ConnectorRecord, ConnectorStore, NewCode, NewConnector, SealingReport, StoreError,
    UpdateOutcome, VerificationCodeStore, VerifyOutcome,
};

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Failed(error.to_string())
    }
}

/// The SQLite store. Its work is blocking (SQLite has no async driver), so every method runs
/// on tokio's blocking pool.
#[derive(Clone)]
pub struct SqliteStore {
    database: Arc<SqliteDatabase>,
}

/// The connection and the blocking work on it, one transaction per method.
struct SqliteDatabase {
    connection: Mutex<Connection>,
    keyring: SecretsKeyring,
}

const SCHEMA: &str = "
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

const SECRETS_KEY_SETTING: &str = "secrets_key_id";

const COLUMNS: &str = "id, factory_id, config, metadata, enabled, created_at, updated_at";

impl SqliteStore {
    /// Opens (creating when missing) the database file; configs are sealed and opened with
    /// `keyring`. Blocking: call it off the async workers.
    pub fn open(path: &Path, keyring: SecretsKeyring) -> Result<Self, StoreError> {
        Ok(Self {
            database: Arc::new(SqliteDatabase::open(path, keyring)?),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&SqliteDatabase) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let database = Arc::clone(&self.database);
        tokio::task::spawn_blocking(move || work(&database))
            .await
            .map_err(|error| StoreError::Failed(format!("the store task failed: {error}")))?
    }
}

#[async_trait::async_trait]
impl ConnectorStore for SqliteStore {
    async fn list(&self, enabled: Option<bool>) -> Result<Vec<ConnectorRecord>, StoreError> {
        self.run(move |database| database.list(enabled)).await
    }

    async fn get(&self, id: &str) -> Result<Option<ConnectorRecord>, StoreError> {
        let id = id.to_owned();
        self.run(move |database| database.get(&id)).await
    }

    async fn live(&self) -> Result<Option<ConnectorRecord>, StoreError> {
        self.run(|database| database.live()).await
    }

    async fn insert_live(&self, connector: NewConnector) -> Result<ConnectorRecord, StoreError> {
        self.run(move |database| database.insert_live(connector))
            .await
    }

    async fn enable(&self, id: &str) -> Result<Option<ConnectorRecord>, StoreError> {
        let id = id.to_owned();
        self.run(move |database| database.enable(&id)).await
    }

    async fn update(
        &self,
        read: &ConnectorRecord,
        config: serde_json::Value,
        metadata: serde_json::Value,
    ) -> Result<UpdateOutcome, StoreError> {
        let read = read.clone();
        self.run(move |database| database.update(&read, config, metadata))
            .await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.run(move |database| database.delete(&id)).await
    }

    async fn prepare_sealing(&self) -> Result<SealingReport, StoreError> {
        self.run(|database| database.reseal_configs(ResealScope::Startup))
            .await
    }

    async fn reseal_all_configs(&self) -> Result<SealingReport, StoreError> {
        self.run(|database| database.reseal_configs(ResealScope::Rotation))
            .await
    }
}

#[async_trait::async_trait]
impl VerificationCodeStore for SqliteStore {
    async fn save_code(&self, code: NewCode) -> Result<(), StoreError> {
        self.run(move |database| database.save_code(code)).await
    }

    async fn discard_code(
        &self,
        phone: &str,
        template_type: &str,
        code_hash: &[u8],
    ) -> Result<(), StoreError> {
        let (phone, template_type, code_hash) = (
            phone.to_owned(),
            template_type.to_owned(),
            code_hash.to_owned(),
        );
        self.run(move |database| database.discard_code(&phone, &template_type, &code_hash))
            .await
    }

    async fn verify_code(
        &self,
        phone: &str,
        template_type: &str,
        presented_hash: &[u8],
        now: i64,
        max_attempts: u32,
    ) -> Result<VerifyOutcome, StoreError> {
        let (phone, template_type, presented_hash) = (
            phone.to_owned(),
            template_type.to_owned(),
            presented_hash.to_owned(),
        );
        self.run(move |database| {
            database.verify_code(&phone, &template_type, &presented_hash, now, max_attempts)
        })
        .await
    }

    async fn purge_expired_codes(&self, now: i64) -> Result<usize, StoreError> {
        self.run(move |database| database.purge_expired_codes(now))
            .await
    }
}

impl SqliteDatabase {
    fn open(path: &Path, keyring: SecretsKeyring) -> Result<Self, StoreError> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        // What a rewrite frees (a config before it was sealed, under an old key) is zeroed,
        // not left in free pages.
        connection.pragma_update(None, "secure_delete", "ON")?;
        connection.execute_batch(SCHEMA)?;
        Ok(Self {
            connection: Mutex::new(connection),
            keyring,
        })
    }

    fn with_connection<T>(
        &self,
        run: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut connection = self
            .connection
            .lock()
            .map_err(|_| StoreError::Failed("the store connection is poisoned".to_owned()))?;
        run(&mut connection)
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
        },
        row.get(2)?,
        row.get(3)?,
    ))
}

fn finish_record(
    keyring: &SecretsKeyring,
    (mut record, sealed_config, metadata): (ConnectorRecord, String, String),
) -> Result<ConnectorRecord, StoreError> {
    record.config = keyring.open(&record.id, &sealed_config)?;
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

/// Which stored configs [`SqliteDatabase::reseal_configs`] rewrites.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ResealScope {
    /// Start-up: seal configs stored in clear (from before sealing existed), check that every
    /// sealed one opens.
    Startup,
    /// `rotate-secrets-key`: every config, under the keyring's first key.
    Rotation,
}

fn retire_live(transaction: &rusqlite::Transaction<'_>, now: i64) -> Result<(), StoreError> {
    transaction.execute(
        "UPDATE connectors SET enabled = 0, updated_at = ?1 WHERE enabled = 1 AND type = 'Sms'",
        params![now],
    )?;
    Ok(())
}

impl SqliteDatabase {
    fn list(&self, enabled: Option<bool>) -> Result<Vec<ConnectorRecord>, StoreError> {
        self.with_connection(|connection| {
            let sql = format!(
                "SELECT {COLUMNS} FROM connectors WHERE (?1 IS NULL OR enabled = ?1) ORDER BY created_at, id"
            );
            let mut statement = connection.prepare(&sql)?;
            let rows = statement.query_map(params![enabled.map(i64::from)], read_record)?;
            rows.map(|row| finish_record(&self.keyring, row?)).collect()
        })
    }

    fn get(&self, id: &str) -> Result<Option<ConnectorRecord>, StoreError> {
        self.with_connection(|connection| select_one(connection, &self.keyring, id))
    }

    fn live(&self) -> Result<Option<ConnectorRecord>, StoreError> {
        self.with_connection(|connection| {
            let sql =
                format!("SELECT {COLUMNS} FROM connectors WHERE enabled = 1 AND type = 'Sms'");
            connection
                .query_row(&sql, [], read_record)
                .optional()?
                .map(|row| finish_record(&self.keyring, row))
                .transpose()
        })
    }

    fn insert_live(&self, connector: NewConnector) -> Result<ConnectorRecord, StoreError> {
        self.with_connection(|connection| {
            let now = now_millis();
            let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            retire_live(&transaction, now)?;
            transaction.execute(
                "INSERT INTO connectors (id, factory_id, type, config, metadata, enabled, created_at, updated_at)
                 VALUES (?1, ?2, 'Sms', ?3, ?4, 1, ?5, ?5)",
                params![
                    connector.id,
                    connector.factory_id,
                    self.keyring.seal(&connector.id, &connector.config)?,
                    connector.metadata.to_string(),
                    now
                ],
            )?;
            let record = select_one(&transaction, &self.keyring, &connector.id)?
                .ok_or_else(|| StoreError::Failed("the inserted connector is missing".to_owned()))?;
            transaction.commit()?;
            Ok(record)
        })
    }

    fn enable(&self, id: &str) -> Result<Option<ConnectorRecord>, StoreError> {
        self.with_connection(|connection| {
            let now = now_millis();
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            match select_one(&transaction, &self.keyring, id)? {
                None => return Ok(None),
                Some(record) if record.enabled => return Ok(Some(record)),
                Some(_) => {}
            }
            retire_live(&transaction, now)?;
            transaction.execute(
                "UPDATE connectors SET enabled = 1, updated_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            let record = select_one(&transaction, &self.keyring, id)?;
            transaction.commit()?;
            Ok(record)
        })
    }

    fn update(
        &self,
        read: &ConnectorRecord,
        config: serde_json::Value,
        metadata: serde_json::Value,
    ) -> Result<UpdateOutcome, StoreError> {
        self.with_connection(|connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let outcome = match select_one(&transaction, &self.keyring, &read.id)? {
                None => UpdateOutcome::NotFound,
                Some(current) if current != *read => UpdateOutcome::ChangedMeanwhile,
                Some(_) => {
                    transaction.execute(
                        "UPDATE connectors SET config = ?2, metadata = ?3, updated_at = ?4 WHERE id = ?1",
                        params![read.id, self.keyring.seal(&read.id, &config)?, metadata.to_string(), now_millis()],
                    )?;
                    select_one(&transaction, &self.keyring, &read.id)?
                        .map(UpdateOutcome::Updated)
                        .unwrap_or(UpdateOutcome::NotFound)
                }
            };
            transaction.commit()?;
            Ok(outcome)
        })
    }

    fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.with_connection(|connection| {
            let deleted =
                connection.execute("DELETE FROM connectors WHERE id = ?1", params![id])?;
            Ok(deleted > 0)
        })
    }
}

impl SqliteDatabase {
    /// One transaction: checks the recorded sealing key against the keyring, (re)seals the
    /// configs `scope` names and records the key that sealed them; then truncates the WAL so
    /// that what was rewritten leaves no copy behind.
    fn reseal_configs(&self, scope: ResealScope) -> Result<SealingReport, StoreError> {
        self.with_connection(|connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let recorded_key_id: Option<String> = transaction
                .query_row(
                    "SELECT value FROM store_settings WHERE name = ?1",
                    params![SECRETS_KEY_SETTING],
                    |row| row.get(0),
                )
                .optional()?;
            check_recorded_key(
                recorded_key_id.as_deref(),
                &self.keyring,
                scope == ResealScope::Rotation,
            )
            .map_err(StoreError::Failed)?;
            let stored_configs = {
                let mut statement = transaction.prepare("SELECT id, config FROM connectors")?;
                let rows = statement.query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            let mut report = SealingReport::new(self.keyring.sealing_key_id());
            for (id, stored) in stored_configs {
                let rewritten = self.keyring.reseal_stored_config(
                    &id,
                    &stored,
                    scope == ResealScope::Rotation,
                    &mut report,
                )?;
                if let Some(sealed) = rewritten {
                    transaction.execute(
                        "UPDATE connectors SET config = ?2 WHERE id = ?1",
                        params![id, sealed],
                    )?;
                }
            }
            transaction.execute(
                "INSERT INTO store_settings (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![SECRETS_KEY_SETTING, self.keyring.sealing_key_id()],
            )?;
            transaction.commit()?;
            if report.rewritten() > 0 {
                // The WAL still holds the pages as they were; checkpoint and cut it to zero.
                connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            }
            Ok(report)
        })
    }
}

impl SqliteDatabase {
    fn save_code(&self, code: NewCode) -> Result<(), StoreError> {
        self.with_connection(|connection| {
            connection.execute(
                "INSERT OR REPLACE INTO verification_codes (phone, type, code_hash, created_at, expires_at, failed_attempts)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0)",
                params![code.phone, code.template_type, code.code_hash, code.created_at, code.expires_at],
            )?;
            Ok(())
        })
    }

    fn discard_code(
        &self,
        phone: &str,
        template_type: &str,
        code_hash: &[u8],
    ) -> Result<(), StoreError> {
        self.with_connection(|connection| {
            connection.execute(
                "DELETE FROM verification_codes WHERE phone = ?1 AND type = ?2 AND code_hash = ?3",
                params![phone, template_type, code_hash],
            )?;
            Ok(())
        })
    }

    fn verify_code(
        &self,
        phone: &str,
        template_type: &str,
        presented_hash: &[u8],
        now: i64,
        max_attempts: u32,
    ) -> Result<VerifyOutcome, StoreError> {
        self.with_connection(|connection| {
            let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stored: Option<(Vec<u8>, i64, u32)> = transaction
                .query_row(
                    "SELECT code_hash, expires_at, failed_attempts FROM verification_codes WHERE phone = ?1 AND type = ?2",
                    params![phone, template_type],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            let outcome = match stored {
                None => VerifyOutcome::NotFound,
                Some((_, expires_at, _)) if expires_at <= now => VerifyOutcome::Expired,
                Some((_, _, failed_attempts)) if failed_attempts >= max_attempts => VerifyOutcome::ExceededMaxTry,
                Some((code_hash, _, failed_attempts)) => {
                    if bool::from(code_hash.as_slice().ct_eq(presented_hash)) {
                        transaction.execute(
                            "DELETE FROM verification_codes WHERE phone = ?1 AND type = ?2",
                            params![phone, template_type],
                        )?;
                        VerifyOutcome::Verified
                    } else {
                        transaction.execute(
                            "UPDATE verification_codes SET failed_attempts = failed_attempts + 1 WHERE phone = ?1 AND type = ?2",
                            params![phone, template_type],
                        )?;
                        VerifyOutcome::Mismatch {
                            attempts_left: max_attempts.saturating_sub(failed_attempts + 1),
                        }
                    }
                }
            };
            transaction.commit()?;
            Ok(outcome)
        })
    }

    fn purge_expired_codes(&self, now: i64) -> Result<usize, StoreError> {
        self.with_connection(|connection| {
            Ok(connection.execute(
                "DELETE FROM verification_codes WHERE expires_at <= ?1",
                params![now],
            )?)
        })
    }
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

    // The blocking layer, tested directly; the async wrapper only moves it to the blocking pool.
    fn open_store(dir: &tempfile::TempDir) -> SqliteDatabase {
        let (keyring, _) =
            SecretsKeyring::read_or_create_file(&dir.path().join("secrets-key")).unwrap();
        open_store_with(dir, keyring)
    }

    fn open_store_with(dir: &tempfile::TempDir, keyring: SecretsKeyring) -> SqliteDatabase {
        let database = SqliteDatabase::open(&dir.path().join("store.sqlite3"), keyring).unwrap();
        database.reseal_configs(ResealScope::Startup).unwrap();
        database
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

    #[test]
    fn configs_are_sealed_in_the_database_and_its_wal() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        let saved = store
            .insert_live(connector_with_secret("first", "token-AAAA-1111"))
            .unwrap();
        assert_eq!(saved.config["authToken"], "token-AAAA-1111");
        let UpdateOutcome::Updated(_) = store
            .update(
                &saved,
                json!({"authToken": "token-BBBB-2222", "endpoint": "https://sms.example/send"}),
                json!({}),
            )
            .unwrap()
        else {
            panic!("the update applies");
        };
        let raw = raw_store_bytes(&dir);
        assert!(!contains(&raw, "token-AAAA-1111"));
        assert!(!contains(&raw, "token-BBBB-2222"));
        assert!(!contains(&raw, "sms.example"));
        assert!(contains(&raw, "sealed1:"));
        assert_eq!(
            store.get("first").unwrap().unwrap().config["authToken"],
            "token-BBBB-2222"
        );
    }

    #[test]
    fn configs_saved_in_clear_are_sealed_at_start_up_and_no_copy_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite3");
        {
            // A store as the host wrote it before sealing existed.
            let connection = Connection::open(&path).unwrap();
            connection
                .pragma_update(None, "journal_mode", "WAL")
                .unwrap();
            connection.execute_batch(SCHEMA).unwrap();
            connection
                .execute(
                    "INSERT INTO connectors (id, factory_id, config, enabled, created_at, updated_at)
                     VALUES ('old', 'f', '{\"authToken\":\"token-CLEAR-3333\"}', 1, 0, 0)",
                    [],
                )
                .unwrap();
        }
        assert!(contains(&raw_store_bytes(&dir), "token-CLEAR-3333"));
        let store = open_store(&dir);
        assert!(!contains(&raw_store_bytes(&dir), "token-CLEAR-3333"));
        assert_eq!(
            store.live().unwrap().unwrap().config["authToken"],
            "token-CLEAR-3333"
        );
        // Once sealed, the next start-up rewrites nothing.
        let again = store.reseal_configs(ResealScope::Startup).unwrap();
        assert_eq!(again.rewritten(), 0);
    }

    #[test]
    fn another_key_file_is_refused_and_a_rotation_reseals_everything() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("secrets-key");
        let (original, _) = SecretsKeyring::read_or_create_file(&key_path).unwrap();
        let original_id = original.sealing_key_id().to_owned();
        let rotating = original.with_new_sealing_key().unwrap();
        drop(
            open_store_with(&dir, original)
                .insert_live(connector_with_secret("first", "t-1"))
                .unwrap(),
        );

        let stranger = SqliteDatabase::open(
            &dir.path().join("store.sqlite3"),
            SecretsKeyring::generate().unwrap(),
        )
        .unwrap();
        let refused = stranger
            .reseal_configs(ResealScope::Startup)
            .unwrap_err()
            .to_string();
        assert!(refused.contains(&original_id), "{refused}");
        drop(stranger);

        let finished = rotating.sealing_key_only();
        let interrupted =
            SqliteDatabase::open(&dir.path().join("store.sqlite3"), rotating).unwrap();
        let refused = interrupted
            .reseal_configs(ResealScope::Startup)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("interrupted"), "{refused}");
        let report = interrupted.reseal_configs(ResealScope::Rotation).unwrap();
        assert_eq!(report.resealed, 1);
        assert_eq!(report.key_id, finished.sealing_key_id());
        drop(interrupted);

        let rotated = open_store_with(&dir, finished);
        assert_eq!(
            rotated.get("first").unwrap().unwrap().config["authToken"],
            "t-1"
        );
    }

    #[test]
    fn creating_retires_the_live_connector_and_keeps_its_config() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        store.insert_live(new_connector("first")).unwrap();
        store.insert_live(new_connector("second")).unwrap();
        assert_eq!(store.live().unwrap().unwrap().id, "second");
        let retired = store.list(Some(false)).unwrap();
        assert_eq!(retired.len(), 1);
        assert_eq!(retired[0].config["id"], "first");
        assert_eq!(store.list(Some(true)).unwrap().len(), 1);
        assert_eq!(store.list(None).unwrap().len(), 2);
    }

    #[test]
    fn enable_switches_back_in_one_call_and_unknown_ids_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        store.insert_live(new_connector("first")).unwrap();
        store.insert_live(new_connector("second")).unwrap();
        let enabled = store.enable("first").unwrap().unwrap();
        assert!(enabled.enabled);
        assert!(!store.get("second").unwrap().unwrap().enabled);
        assert_eq!(store.enable("missing").unwrap(), None);
        let mut missing = store.get("first").unwrap().unwrap();
        missing.id = "missing".to_owned();
        assert_eq!(
            store.update(&missing, json!({}), json!({})).unwrap(),
            UpdateOutcome::NotFound
        );
        assert!(!store.delete("missing").unwrap());
        assert!(store.delete("second").unwrap());
        assert_eq!(store.get("second").unwrap(), None);
    }

    #[test]
    fn the_database_refuses_a_second_live_connector() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        store.insert_live(new_connector("first")).unwrap();
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
            template_type: "SignIn".to_owned(),
            code_hash: hash.to_vec(),
            created_at: 0,
            expires_at,
        }
    }

    #[test]
    fn a_code_works_once_and_wrong_attempts_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        let verify = |hash: &[u8], now| {
            store
                .verify_code("+12015550123", "SignIn", hash, now, 2)
                .unwrap()
        };
        assert_eq!(verify(b"x", 1), VerifyOutcome::NotFound);
        store.save_code(new_code(b"right", 1000)).unwrap();
        assert_eq!(
            verify(b"wrong", 1),
            VerifyOutcome::Mismatch { attempts_left: 1 }
        );
        assert_eq!(verify(b"right", 1), VerifyOutcome::Verified);
        assert_eq!(
            verify(b"right", 1),
            VerifyOutcome::NotFound,
            "a code works once"
        );

        store.save_code(new_code(b"right", 1000)).unwrap();
        assert_eq!(
            verify(b"wrong", 1),
            VerifyOutcome::Mismatch { attempts_left: 1 }
        );
        assert_eq!(
            verify(b"wrong", 1),
            VerifyOutcome::Mismatch { attempts_left: 0 }
        );
        assert_eq!(verify(b"right", 1), VerifyOutcome::ExceededMaxTry);

        store.save_code(new_code(b"new", 1000)).unwrap();
        assert_eq!(
            verify(b"right", 1),
            VerifyOutcome::Mismatch { attempts_left: 1 },
            "a new code replaces the old one"
        );
        assert_eq!(verify(b"new", 1000), VerifyOutcome::Expired);
        assert_eq!(store.purge_expired_codes(1000).unwrap(), 1);
        assert_eq!(verify(b"new", 1), VerifyOutcome::NotFound);
    }

    #[test]
    fn an_update_computed_from_a_stale_read_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        let read = store.insert_live(new_connector("first")).unwrap();
        let UpdateOutcome::Updated(_) = store.update(&read, json!({"a": 1}), json!({})).unwrap()
        else {
            panic!("the first update applies");
        };
        assert_eq!(
            store.update(&read, json!({"a": 2}), json!({})).unwrap(),
            UpdateOutcome::ChangedMeanwhile
        );
        assert_eq!(store.get("first").unwrap().unwrap().config, json!({"a": 1}));
    }

    #[test]
    fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open_store(&dir);
            let first = store.insert_live(new_connector("first")).unwrap();
            store
                .update(&first, json!({"a": 1}), json!({"name": {"en": "Mine"}}))
                .unwrap();
        }
        let store = open_store(&dir);
        let record = store.live().unwrap().unwrap();
        assert_eq!(record.config, json!({"a": 1}));
        assert_eq!(record.metadata["name"]["en"], "Mine");
    }
}
