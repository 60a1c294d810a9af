//! The store boundary: what the host keeps (connectors, verification codes), as async traits
//! with one transaction per method, and two implementations: [`sqlite::SqliteStore`], the
//! embedded default, whose blocking work runs on a writer thread of its own that commits
//! concurrent operations together (group commit, `sqlite_writer`), so callers never block an
//! async worker, and [`postgres::PostgresStore`], shared by several hosts.
//!
//! The store keeps every connector, live or retired, with its config sealed under the host's
//! secrets key ([`secrets_keyring`]). Making one connector
//! live retires the current one in the same transaction, so a kill -9 at any moment leaves
//! either the old state or the new one, never two live connectors. Codes are stored as keyed
//! hashes only (see `verification_code`), one per phone and usage type: a new code replaces
//! the previous one.

pub mod code_hash_key_rotation;
pub mod code_hash_keys;
pub mod code_verification;
pub mod key_rotation;
pub mod message_log;
pub mod postgres;
pub mod secrets_keyring;
pub mod sqlite;
mod sqlite_writer;

pub use secrets_keyring::{SealingReport, SecretsKeyring, UnreadableConfig};

use std::time::{SystemTime, UNIX_EPOCH};

use plugin_api::TemplateType;

/// The store a host runs on: the embedded SQLite store of its data directory, or PostgreSQL
/// shared by several hosts (which adds the connector generation, change notifications and
/// flow control kept for every host).
pub enum StoreBackend {
    Embedded(sqlite::SqliteStore),
    /// Boxed: the pool and its settings are large, and the enum is built once.
    Shared(Box<postgres::PostgresStore>),
}

impl StoreBackend {
    /// Connectors and codes, whichever the backend.
    pub fn store(&self) -> &dyn Store {
        match self {
            StoreBackend::Embedded(sqlite) => sqlite,
            StoreBackend::Shared(postgres) => postgres.as_ref(),
        }
    }

    /// The PostgreSQL store, when several hosts share one.
    pub fn shared(&self) -> Option<&postgres::PostgresStore> {
        match self {
            StoreBackend::Embedded(_) => None,
            StoreBackend::Shared(postgres) => Some(postgres.as_ref()),
        }
    }

    /// The embedded store, when the host runs on its data directory's own.
    pub fn embedded(&self) -> Option<&sqlite::SqliteStore> {
        match self {
            StoreBackend::Embedded(sqlite) => Some(sqlite),
            StoreBackend::Shared(_) => None,
        }
    }

    /// `sqlite` or `postgres`, as `/health` names it.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreBackend::Embedded(_) => "sqlite",
            StoreBackend::Shared(_) => "postgres",
        }
    }
}

/// A saved connector.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorRecord {
    pub id: String,
    pub factory_id: String,
    pub config: serde_json::Value,
    /// Per-connector overrides of the factory's metadata (Logto's `metadata`: name, logo, ...).
    pub metadata: serde_json::Value,
    pub enabled: bool,
    /// The standby: the one retired connector sends fail over to when the live one's
    /// provider provably did not take a message. Never the live one.
    pub fallback: bool,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

/// What [`ConnectorStore::set_fallback`] did.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum FallbackOutcome {
    /// It is the fallback now (any other one is not).
    Set(ConnectorRecord),
    NotFound,
    /// The live connector cannot be its own fallback.
    IsLive,
}

/// A connector to create; it becomes the live one.
#[derive(Debug, Clone)]
pub struct NewConnector {
    pub id: String,
    pub factory_id: String,
    pub config: serde_json::Value,
    pub metadata: serde_json::Value,
}

/// A code to save; it replaces any code for the same phone and type.
#[derive(Debug, Clone)]
pub struct NewCode {
    pub phone: String,
    pub template_type: TemplateType,
    pub code_hash: Vec<u8>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub expires_at: i64,
}

/// What [`ConnectorStore::update`] did.
// One per connector change, moved once: its size (an order-keeping JSON map in the record)
// costs nothing worth a box at every store and caller.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOutcome {
    Updated(ConnectorRecord),
    NotFound,
    /// The connector changed after it was read; read it again and recompute.
    ChangedMeanwhile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    Verified,
    NotFound,
    Expired,
    ExceededMaxTry,
    Mismatch { attempts_left: u32 },
}

/// Saved connectors: what the management routes use. Every method is one transaction (on
/// SQLite, one savepoint of a batch that is committed before the method returns).
#[async_trait::async_trait]
pub trait ConnectorStore: Send + Sync {
    /// All connectors, or only live (`Some(true)`) or retired (`Some(false)`) ones, oldest first.
    async fn list(&self, enabled: Option<bool>) -> Result<Vec<ConnectorRecord>, StoreError>;
    async fn get(&self, id: &str) -> Result<Option<ConnectorRecord>, StoreError>;
    async fn live(&self) -> Result<Option<ConnectorRecord>, StoreError>;
    /// Saves a new connector as the live one, retiring the current live one.
    async fn insert_live(&self, connector: NewConnector) -> Result<ConnectorRecord, StoreError>;
    /// Makes a saved connector live, retiring the current one. `None` for an unknown id.
    async fn enable(&self, id: &str) -> Result<Option<ConnectorRecord>, StoreError>;
    /// Replaces config and metadata if the connector is still as `read` (the record the new
    /// config was computed from): a change committed meanwhile, by this host or another, is
    /// `ChangedMeanwhile` and nothing is written. One transaction.
    async fn update(
        &self,
        read: &ConnectorRecord,
        config: serde_json::Value,
        metadata: serde_json::Value,
    ) -> Result<UpdateOutcome, StoreError>;
    /// Replaces a connector's config with the one a new plugin build migrated it to (like
    /// `update`, if the connector is still as `read`), and keeps the config as it was in a
    /// retired copy with the id `previous_copy_id` (same factory and metadata): nothing saved
    /// is lost, and an operator who goes back to the build that read it can make that copy
    /// live. One transaction.
    async fn save_migrated_config(
        &self,
        read: &ConnectorRecord,
        migrated: serde_json::Value,
        previous_copy_id: &str,
    ) -> Result<UpdateOutcome, StoreError>;
    /// `false` for an unknown id.
    async fn delete(&self, id: &str) -> Result<bool, StoreError>;
    /// Makes a retired connector the fallback, in place of any other.
    async fn set_fallback(&self, id: &str) -> Result<FallbackOutcome, StoreError>;
    /// Clears the fallback mark of `id`; `None` when there is no such connector.
    async fn clear_fallback(&self, id: &str) -> Result<Option<ConnectorRecord>, StoreError>;
    /// The fallback connector, if one is marked.
    async fn fallback(&self) -> Result<Option<ConnectorRecord>, StoreError>;
    /// Start-up, one transaction: the recorded sealing key must be the keyring's first key
    /// (else a one-line error that says what to do), configs stored in clear are sealed, and
    /// every sealed config must open.
    async fn prepare_sealing(&self) -> Result<SealingReport, StoreError>;
    /// `rotate-secrets-key`, one transaction: every config sealed again under the keyring's
    /// first key, which becomes the recorded one.
    async fn reseal_all_configs(&self) -> Result<SealingReport, StoreError>;
    /// A setting the store records for the hosts that share it (a key fingerprint), if any.
    async fn read_setting(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Records `value` under `name` unless a value is recorded already; returns the recorded
    /// value (of two hosts that start together, the first one's).
    async fn record_setting_once(&self, name: &str, value: &str) -> Result<String, StoreError>;
    /// Sets (`Some`) or removes (`None`) settings, in one transaction.
    async fn write_settings(
        &self,
        settings: Vec<(&'static str, Option<String>)>,
    ) -> Result<(), StoreError>;
}

/// Verification codes: what the code routes use. Every method is one transaction (on SQLite,
/// one savepoint of a batch that is committed before the method returns).
#[async_trait::async_trait]
pub trait VerificationCodeStore: Send + Sync {
    async fn save_code(&self, code: NewCode) -> Result<(), StoreError>;
    /// Removes the code for the phone and type if it is still this one (a send that failed).
    async fn discard_code(
        &self,
        phone: &str,
        template_type: TemplateType,
        code_hash: &[u8],
    ) -> Result<(), StoreError>;
    /// One transaction: refuses an expired code or one past its attempts, counts a wrong
    /// attempt durably, and consumes a right one (a code works once). `presented_hashes`: the
    /// presented code under each code-hash key (several during a key rotation); it is right
    /// when one of them is the stored hash. The hashes are compared in constant time.
    async fn verify_code(
        &self,
        phone: &str,
        template_type: TemplateType,
        presented_hashes: &[Vec<u8>],
        now: i64,
        max_attempts: u32,
    ) -> Result<VerifyOutcome, StoreError>;
    /// Deletes codes expired before `now`; returns how many.
    async fn purge_expired_codes(&self, now: i64) -> Result<usize, StoreError>;
}

/// Everything the host keeps: connectors and verification codes.
pub trait Store: ConnectorStore + VerificationCodeStore {}

impl<T: ConnectorStore + VerificationCodeStore> Store for T {}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached now (PostgreSQL down, a timeout): the request fails closed
    /// with 503 and the host recovers by itself when the store is back.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Failed(String),
    /// A saved config this host cannot open (in clear, sealed under a key it lacks, altered
    /// or moved): the connector is not used; `503 connector.unavailable`.
    #[error("{}", .0.reason)]
    ConfigUnreadable(UnreadableConfig),
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        StoreError::Failed(format!("stored JSON is invalid: {error}"))
    }
}

/// Whether the stored hash is one of the presented ones, compared in constant time (every
/// presented hash is compared, whichever matches).
pub(crate) fn hash_matches_any(stored: &[u8], presented_hashes: &[Vec<u8>]) -> bool {
    use subtle::ConstantTimeEq;
    let matched = presented_hashes
        .iter()
        .fold(subtle::Choice::from(0), |matched, presented| {
            matched | stored.ct_eq(presented)
        });
    bool::from(matched)
}

/// Milliseconds since the Unix epoch, the stores' clock.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}
