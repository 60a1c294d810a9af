//! The shared store for several hosts: PostgreSQL through a deadpool of tokio-postgres
//! connections (TLS through rustls when the URL asks for it).
//!
//! - Every connector change bumps the one-row `connector_generation` first: its row lock
//!   serializes changes from all hosts, and the transaction ends with `pg_notify`, which the
//!   other hosts' listeners turn into a reload of the live connector.
//! - A verify is one transaction (`SELECT ... FOR UPDATE`, hashes compared in Rust in
//!   constant time), so concurrent verifies on several hosts give exactly one success.
//! - Flow control: each send gets one decision from `reserve_sends` (see the migrations);
//!   concurrent sends of a host share its round trips ([`reservation_batcher`]).
//! - The SMS-pumping protection's blocks and counts, exchanged by each host every 250 ms
//!   ([`protection`]).
//! - Every operation has a deadline: a store that does not answer is `Unavailable` (503), never
//!   a hung request.
//! - Configs are sealed by the host (`secrets_keyring`); the database records the sealing
//!   key's id, and a write from a host whose key is not that one (left behind by a rotation)
//!   fails closed. After configs are (re)sealed, `VACUUM FULL` rewrites the table so the old
//!   row versions are gone from it.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use plugin_api::TemplateType;

use super::code_verification::{decide_verification, CodeWrite, StoredCode};
use super::secrets_keyring::{SecretsKeyring, StoredConfig};
use super::{
    now_millis, ConnectorRecord, ConnectorStore, FallbackOutcome, NewCode, NewConnector,
    SealingReport, StoreError, UnreadableConfig, UpdateOutcome, VerificationCodeStore,
    VerifyOutcome,
};

pub mod messages;
pub mod protection;
pub mod reservation_batcher;
pub mod tls;

use reservation_batcher::{ReservationBatcher, ReservationExecutor};
pub use reservation_batcher::{ReservationRequest, SendLimits};

mod embedded {
    refinery::embed_migrations!("src/store/migrations");
}

/// The channel connector changes are announced on.
pub const CHANGES_CHANNEL: &str = "connector_changes";
/// Held while migrating, so hosts that start together migrate once.
const MIGRATION_LOCK: i64 = 0x636f_6e6e_6563_746f;
/// How long any one store operation may take before the request fails closed.
const OPERATION_DEADLINE: Duration = Duration::from_secs(5);

const COLUMNS: &str = "id, factory_id, config, metadata, enabled, created_at, updated_at, fallback";
const SECRETS_KEY_SETTING: &str = "secrets_key_id";

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        // A database error (a constraint, a bad statement) is ours, unless it says the
        // database is going away or cannot take the connection now; anything else (closed
        // connection, I/O, TLS) means the database cannot be reached now.
        match error.as_db_error() {
            Some(database_error)
                if !error.is_closed()
                    && !means_unreachable(database_error.code(), database_error.message()) =>
            {
                StoreError::Failed(format!(
                    "{}: {}",
                    database_error.code().code(),
                    database_error.message()
                ))
            }
            Some(database_error) => StoreError::Unavailable(format!(
                "{}: {}",
                database_error.code().code(),
                database_error.message()
            )),
            None => StoreError::Unavailable(postgres_error_words(&error)),
        }
    }
}

/// An error from tokio-postgres in words: its own text says only "db error" or "error
/// connecting to server", the reason is in its sources (the server's message, the I/O error).
pub fn postgres_error_words(error: &tokio_postgres::Error) -> String {
    if let Some(database_error) = error.as_db_error() {
        return format!(
            "{} (SQLSTATE {})",
            database_error.message(),
            database_error.code().code()
        );
    }
    database_error_in_words(error)
}

/// Whether start-up should wait and try again: the server cannot be reached or is not
/// accepting connections yet (an I/O error, a timeout, a closed connection, "the database
/// system is starting up"); not a refusal that stays (authentication, no such database).
fn worth_waiting_for(error: &tokio_postgres::Error) -> bool {
    if let Some(database_error) = error.as_db_error() {
        return means_unreachable(database_error.code(), database_error.message());
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        // A certificate the host refuses (sslmode verify-ca, verify-full) stays refused.
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return false;
        }
        if let Some(io_error) = cause.downcast_ref::<std::io::Error>() {
            return io_error
                .get_ref()
                .is_none_or(|inner| inner.downcast_ref::<rustls::Error>().is_none());
        }
        source = cause.source();
    }
    // tokio-postgres's own kinds, known only by their text: the connect timeout and a
    // connection lost before it was ready.
    error.is_closed() || error.to_string() == "timeout waiting for server"
}

/// Why the pool gave no connection, in words, naming the database it tried.
fn pool_error_words(error: deadpool_postgres::PoolError, target: &str) -> StoreError {
    StoreError::Unavailable(pool_error_in_words(&error, target))
}

/// Why the pool gave no connection, in words that name the database, e.g. `cannot connect
/// to PostgreSQL at 127.0.0.1:5433: connection refused` (deadpool alone says "Error occurred
/// while creating a new object: db error").
pub fn pool_error_in_words(error: &deadpool_postgres::PoolError, address: &str) -> String {
    use deadpool_postgres::{PoolError, TimeoutType};
    let seconds = OPERATION_DEADLINE.as_secs();
    match error {
        PoolError::Timeout(TimeoutType::Wait) => format!(
            "no connection to PostgreSQL at {address} became free within {seconds} s (every pooled connection is in use)"
        ),
        PoolError::Timeout(TimeoutType::Create) => {
            format!("cannot connect to PostgreSQL at {address}: no answer within {seconds} s")
        }
        PoolError::Timeout(TimeoutType::Recycle) => format!(
            "PostgreSQL at {address} did not answer a pooled connection's check within {seconds} s"
        ),
        PoolError::Backend(error) => format!(
            "cannot connect to PostgreSQL at {address}: {}",
            database_error_in_words(error)
        ),
        other => format!(
            "cannot use PostgreSQL at {address}: {}",
            database_error_in_words(other)
        ),
    }
}

/// An error and its causes in words: each cause that adds something, joined by `: `.
/// Wrappers that only name a kind ("db error", "error connecting to server") give way to
/// their cause, and an OS error loses its number ("connection refused", not "Connection
/// refused (os error 111)").
pub fn database_error_in_words(error: &(dyn std::error::Error + 'static)) -> String {
    const WRAPPERS: [&str; 4] = [
        "Error occurred while creating a new object",
        "db error",
        "error connecting to server",
        "error communicating with the server",
    ];
    let mut words: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(error) = current {
        let cause = error.source();
        let text = error.to_string();
        let is_wrapper = WRAPPERS.iter().any(|wrapper| text.starts_with(wrapper));
        if cause.is_none() || !is_wrapper {
            let text = match error.downcast_ref::<std::io::Error>() {
                Some(io_error) => io_error_in_words(io_error),
                None => text,
            };
            if !words.contains(&text) {
                words.push(text);
            }
        }
        current = cause;
    }
    words.join(": ")
}

/// `Connection refused (os error 111)` as `connection refused`.
fn io_error_in_words(error: &std::io::Error) -> String {
    let text = error.to_string();
    let text = match text.find(" (os error ") {
        Some(end) => &text[..end],
        None => text.as_str(),
    };
    let mut characters = text.chars();
    match characters.next() {
        Some(first) => first.to_lowercase().chain(characters).collect(),
        None => text.to_owned(),
    }
}

/// Where a connection config points, for messages: `host:port` (several comma-separated),
/// never the user or password.
pub fn database_target(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let port = ports
                .get(index)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            match host {
                tokio_postgres::config::Host::Tcp(name) if name.contains(':') => {
                    format!("[{name}]:{port}")
                }
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                tokio_postgres::config::Host::Unix(path) => {
                    format!("{}/.s.PGSQL.{port}", path.display())
                }
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a database error means the server is going away or cannot take connections now
/// (a restart, a failover, a crash): the request fails closed with 503, as when the database
/// cannot be reached at all, and the pool replaces the connection.
fn means_unreachable(code: &SqlState, message: &str) -> bool {
    let code = code.code();
    // Class 08: connection exceptions. 57P01-57P03: administrator or crash shutdown, cannot
    // connect now (starting up, shutting down, in recovery). 53300: too many connections.
    code.starts_with("08")
        || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
        || message.contains("the database system is shutting down")
        || message.contains("the database system is starting up")
        || message.contains("terminating connection")
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    connect_config: tokio_postgres::Config,
    /// `host:port`, named in every error about reaching the database.
    target: std::sync::Arc<str>,
    tls: MakeRustlsConnect,
    keyring: std::sync::Arc<SecretsKeyring>,
    reservations: ReservationBatcher,
}

/// What a host needs to serve the live connector another host may have changed.
#[derive(Debug, Clone)]
pub struct LiveSnapshot {
    pub generation: i64,
    /// The live connector, or why its config cannot be opened here (then it must not send).
    pub live: Option<Result<ConnectorRecord, UnreadableConfig>>,
}

/// The outcome of one flow-control reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedReservation {
    Reserved { id: i64 },
    Cooldown { retry_after_ms: i64 },
    RateLimited { retry_after_ms: i64 },
}

/// Why `reserve_send` (the migration's function) refused a send: its `refusal` column,
/// `'cooldown'` or `'rate_limited'`. Any other text is an error, not a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationRefusal {
    Cooldown,
    RateLimited,
}

impl ReservationRefusal {
    /// The text `reserve_send` returns for this refusal.
    pub fn as_sql(self) -> &'static str {
        match self {
            ReservationRefusal::Cooldown => "cooldown",
            ReservationRefusal::RateLimited => "rate_limited",
        }
    }
}

impl<'a> tokio_postgres::types::FromSql<'a> for ReservationRefusal {
    fn from_sql(
        sql_type: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = <&str as tokio_postgres::types::FromSql>::from_sql(sql_type, raw)?;
        [
            ReservationRefusal::Cooldown,
            ReservationRefusal::RateLimited,
        ]
        .into_iter()
        .find(|refusal| refusal.as_sql() == text)
        .ok_or_else(|| format!("reserve_send returned an unknown refusal {text:?}").into())
    }

    fn accepts(sql_type: &tokio_postgres::types::Type) -> bool {
        <&str as tokio_postgres::types::FromSql>::accepts(sql_type)
    }
}

impl SharedReservation {
    /// One row of `reserve_send`: a reservation id, or a refusal and when it lifts.
    fn from_row(
        id: Option<i64>,
        refusal: Option<ReservationRefusal>,
        retry_after_ms: Option<i64>,
    ) -> Result<Self, StoreError> {
        let retry_after_ms = retry_after_ms.unwrap_or(1000);
        match (id, refusal) {
            (Some(id), _) => Ok(SharedReservation::Reserved { id }),
            (None, Some(ReservationRefusal::Cooldown)) => {
                Ok(SharedReservation::Cooldown { retry_after_ms })
            }
            (None, Some(ReservationRefusal::RateLimited)) => {
                Ok(SharedReservation::RateLimited { retry_after_ms })
            }
            (None, None) => Err(StoreError::Failed(
                "reserve_send returned neither a reservation nor a refusal".to_owned(),
            )),
        }
    }
}

/// Runs `work` with the store's deadline; past it, the store is unavailable.
async fn within_deadline<T>(
    work: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(OPERATION_DEADLINE, work)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "PostgreSQL did not answer within {} s",
                OPERATION_DEADLINE.as_secs()
            )))
        })
}

/// [`within_deadline`], and an unavailable store named by its `host:port`: errors from a
/// connection the pool had already opened (closed, terminated) and deadlines say only what
/// failed.
async fn within_deadline_at<T>(
    target: &str,
    work: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    within_deadline(work).await.map_err(|error| match error {
        StoreError::Unavailable(reason) if !reason.contains("PostgreSQL at ") => {
            StoreError::Unavailable(match reason.strip_prefix("PostgreSQL ") {
                Some(rest) => format!("PostgreSQL at {target} {rest}"),
                None => format!("PostgreSQL at {target}: {reason}"),
            })
        }
        other => other,
    })
}

/// A connector from the columns [`COLUMNS`] names, starting at `first`, its config opened.
fn read_record(
    keyring: &SecretsKeyring,
    row: &Row,
    first: usize,
) -> Result<ConnectorRecord, StoreError> {
    let id: String = row.try_get(first)?;
    let factory_id: String = row.try_get(first + 1)?;
    let sealed_config: String = row.try_get(first + 2)?;
    let metadata: String = row.try_get(first + 3)?;
    Ok(ConnectorRecord {
        config: keyring.open(&id, &factory_id, &sealed_config)?,
        factory_id,
        metadata: serde_json::from_str(&metadata)?,
        enabled: row.try_get(first + 4)?,
        created_at: row.try_get(first + 5)?,
        updated_at: row.try_get(first + 6)?,
        fallback: row.try_get(first + 7)?,
        id,
    })
}

/// The id of the key the configs are sealed under; `None` before the first host recorded it.
async fn recorded_sealing_key_id(
    transaction: &deadpool_postgres::Transaction<'_>,
) -> Result<Option<String>, StoreError> {
    Ok(transaction
        .query_opt(
            "SELECT value FROM store_settings WHERE name = $1",
            &[&SECRETS_KEY_SETTING],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?)
}

/// Inside a change: the configs must still be sealed under this host's key. A host left
/// behind by a rotation would seal configs the other hosts cannot open: it fails closed.
async fn require_current_sealing_key(
    transaction: &deadpool_postgres::Transaction<'_>,
    keyring: &SecretsKeyring,
) -> Result<(), StoreError> {
    match recorded_sealing_key_id(transaction).await? {
        Some(recorded) if recorded != keyring.sealing_key_id() => Err(StoreError::Unavailable(format!(
            "the saved configs are sealed under secrets key {recorded} since a key rotation, but this host seals with {}: restart it with the new secrets key file",
            keyring.sealing_key_id()
        ))),
        _ => Ok(()),
    }
}

/// Takes the change lock (the generation row) and returns the new generation.
async fn begin_change(transaction: &deadpool_postgres::Transaction<'_>) -> Result<i64, StoreError> {
    let row = transaction
        .query_one(
            "UPDATE connector_generation SET value = value + 1 RETURNING value",
            &[],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Announces the change to every host's listener (delivered when the transaction commits).
async fn announce_change(
    transaction: &deadpool_postgres::Transaction<'_>,
    generation: i64,
) -> Result<(), StoreError> {
    transaction
        .execute(
            "SELECT pg_notify($1, $2)",
            &[&CHANGES_CHANNEL, &generation.to_string()],
        )
        .await?;
    Ok(())
}

/// Retires the live connector, inside a change.
async fn retire_live(
    transaction: &deadpool_postgres::Transaction<'_>,
    now: i64,
) -> Result<(), StoreError> {
    transaction
        .execute(
            "UPDATE connectors SET enabled = false, updated_at = $1 WHERE enabled AND type = 'Sms'",
            &[&now],
        )
        .await?;
    Ok(())
}

async fn select_one(
    client: &impl deadpool_postgres::GenericClient,
    keyring: &SecretsKeyring,
    id: &str,
) -> Result<Option<ConnectorRecord>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM connectors WHERE id = $1");
    client
        .query_opt(&sql, &[&id])
        .await?
        .map(|row| read_record(keyring, &row, 0))
        .transpose()
}

impl PostgresStore {
    /// Connects (the pool opens connections on demand) and runs the migrations under an
    /// advisory lock. Fails when the database cannot be reached: a host does not start on a
    /// store it has never seen.
    pub async fn connect(url: &str, keyring: SecretsKeyring) -> Result<Self, StoreError> {
        Self::connect_with_password(url, None, keyring).await
    }

    /// [`PostgresStore::connect`] with the password given apart from the URL
    /// (`--database-password-file`), so it stays out of the command line. tokio-postgres is
    /// not libpq: it reads no `PGPASSWORD` or `PGPASSFILE`.
    pub async fn connect_with_password(
        url: &str,
        password: Option<&str>,
        keyring: SecretsKeyring,
    ) -> Result<Self, StoreError> {
        let (connect_config, tls) = connection_config(url, password)?;
        let target: std::sync::Arc<str> = database_target(&connect_config).into();
        let manager = Manager::from_config(
            connect_config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(OPERATION_DEADLINE))
            .create_timeout(Some(OPERATION_DEADLINE))
            .recycle_timeout(Some(OPERATION_DEADLINE))
            .build()
            .map_err(|error| StoreError::Failed(format!("cannot build the pool: {error}")))?;
        let store = Self {
            reservations: ReservationBatcher::start(DatabaseReservations {
                pool: pool.clone(),
                target: std::sync::Arc::clone(&target),
            }),
            pool,
            connect_config,
            target,
            tls,
            keyring: std::sync::Arc::new(keyring),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Start-up with a database that may not be up yet (a host started with it, or during its
    /// restart): tries to connect with backoff (0.5 s doubling to 10 s), logging each failed
    /// attempt with the database's `host:port` (never the password). `wait` bounds the
    /// waiting (`None`: for ever); past it, the last failure is returned. A URL that cannot
    /// be used at all fails at once.
    pub async fn wait_until_reachable(
        url: &str,
        password: Option<&str>,
        wait: Option<Duration>,
    ) -> Result<(), StoreError> {
        let (connect_config, tls) = connection_config(url, password)?;
        let target = database_target(&connect_config);
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(500);
        for attempt in 1u32.. {
            let attempt_once = async {
                let (client, connection) = connect_config.connect(tls.clone()).await?;
                let connection_task = tokio::spawn(connection);
                let answered = client.simple_query("SELECT 1").await;
                drop(client);
                let _ = connection_task.await;
                answered.map(drop)
            };
            let reason = match tokio::time::timeout(OPERATION_DEADLINE, attempt_once).await {
                Ok(Ok(())) => {
                    if attempt > 1 {
                        tracing::info!(database = %target, attempt, waited_ms = started.elapsed().as_millis() as u64, "PostgreSQL is reachable");
                    }
                    return Ok(());
                }
                // Wrong credentials, a missing password or database: waiting does not help.
                Ok(Err(error)) if !worth_waiting_for(&error) => {
                    return Err(StoreError::Failed(format!(
                        "PostgreSQL at {target} refused the connection: {}",
                        postgres_error_words(&error)
                    )))
                }
                Ok(Err(error)) => postgres_error_words(&error),
                Err(_) => format!("no answer within {} s", OPERATION_DEADLINE.as_secs()),
            };
            let waited = started.elapsed();
            if wait.is_some_and(|wait| waited + backoff > wait) {
                return Err(StoreError::Unavailable(format!(
                    "cannot reach PostgreSQL at {target} (gave up after {} s, --database-wait-secs): {reason}",
                    waited.as_secs()
                )));
            }
            tracing::warn!(database = %target, attempt, retry_in_ms = backoff.as_millis() as u64, %reason, "cannot reach PostgreSQL at {target}; waiting for it");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let (mut client, connection) = self
            .connect_config
            .connect(self.tls.clone())
            .await
            .map_err(|error| self.unreachable(&error))?;
        let connection_task = tokio::spawn(connection);
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let migrated = embedded::migrations::runner()
            .run_async(&mut client)
            .await
            .map_err(|error| StoreError::Failed(format!("migrating the database failed: {error}")));
        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        drop(client);
        let _ = connection_task.await;
        migrated?;
        unlocked?;
        Ok(())
    }

    /// A connection that could not be opened, naming the database.
    fn unreachable(&self, error: &tokio_postgres::Error) -> StoreError {
        StoreError::Unavailable(format!(
            "cannot reach PostgreSQL at {}: {}",
            self.target,
            postgres_error_words(error)
        ))
    }
}

/// The connection config from the URL and the password file's password, and the TLS
/// connector its `sslmode` and `sslrootcert` mean (libpq's, which tokio-postgres does not
/// read itself: [`tls`]).
fn connection_config(
    url: &str,
    password: Option<&str>,
) -> Result<(tokio_postgres::Config, MakeRustlsConnect), StoreError> {
    let tls::ConnectOptions {
        config: mut connect_config,
        tls,
        ssl_mode,
    } = tls::connect_options(url).map_err(StoreError::Failed)?;
    tracing::debug!(sslmode = ssl_mode.label(), "PostgreSQL TLS");
    if let Some(password) = password {
        if connect_config.get_password().is_some() {
            return Err(StoreError::Failed(
                    "the database URL holds a password and --database-password-file gives another: keep one".to_owned(),
                ));
        }
        connect_config.password(password);
    }
    if connect_config.get_connect_timeout().is_none() {
        connect_config.connect_timeout(OPERATION_DEADLINE);
    }
    connect_config.application_name("connector-host");
    Ok((connect_config, tls))
}

impl PostgresStore {
    /// One transaction under the change lock (so no host writes a config meanwhile), without
    /// a new generation (the configs mean what they meant): checks the recorded sealing key,
    /// (re)seals, records the key. Then `VACUUM FULL` rewrites the table, so the row versions
    /// as they were before are not left in it.
    async fn reseal_configs(&self, during_rotation: bool) -> Result<SealingReport, StoreError> {
        let report = self
            .within_deadline(async {
                let mut client = self.client().await?;
                let transaction = client.transaction().await?;
                transaction
                    .execute("SELECT value FROM connector_generation FOR UPDATE", &[])
                    .await?;
                let recorded_key_id = recorded_sealing_key_id(&transaction).await?;
                let mut stored_configs = Vec::new();
                for row in transaction
                    .query("SELECT id, factory_id, config FROM connectors", &[])
                    .await?
                {
                    stored_configs.push(StoredConfig {
                        connector_id: row.try_get(0)?,
                        factory_id: row.try_get(1)?,
                        stored: row.try_get(2)?,
                    });
                }
                let plan = self.keyring.plan_reseal(
                    recorded_key_id.as_deref(),
                    during_rotation,
                    stored_configs,
                )?;
                for (id, sealed) in &plan.rewrites {
                    transaction
                        .execute(
                            "UPDATE connectors SET config = $2 WHERE id = $1",
                            &[id, sealed],
                        )
                        .await?;
                }
                transaction
                    .execute(
                        "INSERT INTO store_settings (name, value) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        &[&SECRETS_KEY_SETTING, &self.keyring.sealing_key_id()],
                    )
                    .await?;
                transaction.commit().await?;
                Ok(plan.report)
            })
            .await?;
        if report.rewritten() > 0 {
            self.within_deadline(async {
                self.client()
                    .await?
                    .batch_execute("VACUUM FULL connectors")
                    .await?;
                Ok(())
            })
            .await?;
        }
        Ok(report)
    }

    /// [`within_deadline_at`] this store's database.
    async fn within_deadline<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        within_deadline_at(&self.target, work).await
    }

    async fn client(&self) -> Result<Object, StoreError> {
        pool_client(&self.pool, &self.target).await
    }

    /// The generation and the live connector, read in one statement (one snapshot).
    pub async fn live_snapshot(&self) -> Result<LiveSnapshot, StoreError> {
        self.within_deadline(async {
            let client = self.client().await?;
            let sql = format!(
                "SELECT g.value, c.* FROM connector_generation g
                 LEFT JOIN (SELECT {COLUMNS} FROM connectors WHERE enabled AND type = 'Sms') c ON true"
            );
            let row = client.query_one(&sql, &[]).await?;
            let generation: i64 = row.try_get(0)?;
            let live_id: Option<String> = row.try_get(1)?;
            let live = match live_id {
                None => None,
                Some(_) => match read_record(&self.keyring, &row, 1) {
                    Ok(record) => Some(Ok(record)),
                    Err(StoreError::ConfigUnreadable(unreadable)) => Some(Err(unreadable)),
                    Err(error) => return Err(error),
                },
            };
            Ok(LiveSnapshot { generation, live })
        })
        .await
    }

    /// The current generation (the poll that backs up notifications).
    pub async fn generation(&self) -> Result<i64, StoreError> {
        self.within_deadline(async {
            let client = self.client().await?;
            let row = client
                .query_one("SELECT value FROM connector_generation", &[])
                .await?;
            Ok(row.try_get(0)?)
        })
        .await
    }

    /// Whether the database answers now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.within_deadline(async {
            self.client().await?.simple_query("SELECT 1").await?;
            Ok(())
        })
        .await
    }

    /// Opens a dedicated connection that `LISTEN`s for connector changes. Each notification
    /// arrives as one `()`; the receiver ends when the connection is lost.
    pub async fn listen_for_changes(&self) -> Result<ChangeListener, StoreError> {
        self.within_deadline(async {
            let (client, mut connection) = self
                .connect_config
                .connect(self.tls.clone())
                .await
                .map_err(|error| self.unreachable(&error))?;
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            let forward = tokio::spawn(async move {
                while let Some(message) =
                    std::future::poll_fn(|context| connection.poll_message(context)).await
                {
                    match message {
                        Ok(AsyncMessage::Notification(_)) => {
                            if sender.send(()).is_err() {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(%error, "the PostgreSQL listener connection failed");
                            break;
                        }
                    }
                }
            });
            client
                .batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))
                .await?;
            Ok(ChangeListener {
                notifications: receiver,
                _client: client,
                forward,
            })
        })
        .await
    }

    /// Flow control for one send, shared by every host: the cooldown (when asked) and the
    /// sliding window, then a slot. Sent with the other sends waiting now, in one round trip.
    pub async fn reserve_send(
        &self,
        phone: &str,
        template_type: TemplateType,
        with_cooldown: bool,
        max_sends: u32,
        window: Duration,
        cooldown: Duration,
    ) -> Result<SharedReservation, StoreError> {
        let request = ReservationRequest {
            phone: phone.to_owned(),
            template_type,
            with_cooldown,
        };
        let limits = SendLimits {
            max_sends,
            window,
            cooldown,
        };
        self.within_deadline(self.reservations.reserve(request, limits))
            .await
    }

    /// One batch of reservations in one round trip: one decision per request, in their order
    /// (a later request for a phone sees the earlier ones); an error is every request's.
    pub async fn reserve_sends(
        &self,
        limits: SendLimits,
        requests: &[ReservationRequest],
    ) -> Result<Vec<SharedReservation>, StoreError> {
        reserve_batch(&self.pool, &self.target, limits, requests).await
    }

    /// Gives a slot back (the send failed), so only successful sends count.
    pub async fn release_send(&self, reservation_id: i64) -> Result<(), StoreError> {
        delete_send(&self.pool, &self.target, reservation_id).await
    }

    /// Forgets sends older than `retention` (by the database's clock); returns how many.
    pub async fn purge_sends(&self, retention: Duration) -> Result<u64, StoreError> {
        self.within_deadline(async {
            let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
            Ok(self
                .client()
                .await?
                .execute(
                    "DELETE FROM recipient_sends
                     WHERE sent_at <= (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $1",
                    &[&retention_ms],
                )
                .await?)
        })
        .await
    }
}

/// The batcher's way to the database.
struct DatabaseReservations {
    pool: Pool,
    target: std::sync::Arc<str>,
}

impl ReservationExecutor for DatabaseReservations {
    fn reserve_batch(
        &self,
        limits: SendLimits,
        requests: Vec<ReservationRequest>,
    ) -> impl Future<Output = Result<Vec<SharedReservation>, StoreError>> + Send {
        let pool = self.pool.clone();
        let target = std::sync::Arc::clone(&self.target);
        async move { reserve_batch(&pool, &target, limits, &requests).await }
    }

    fn release(&self, reservation_id: i64) -> impl Future<Output = ()> + Send {
        let pool = self.pool.clone();
        let target = std::sync::Arc::clone(&self.target);
        async move {
            if let Err(error) = delete_send(&pool, &target, reservation_id).await {
                tracing::warn!(%error, "could not give back the slot of a send that gave up");
            }
        }
    }
}

async fn pool_client(pool: &Pool, target: &str) -> Result<Object, StoreError> {
    pool.get()
        .await
        .map_err(|error| pool_error_words(error, target))
}

async fn reserve_batch(
    pool: &Pool,
    target: &str,
    limits: SendLimits,
    requests: &[ReservationRequest],
) -> Result<Vec<SharedReservation>, StoreError> {
    within_deadline_at(target, async {
        let client = pool_client(pool, target).await?;
        let statement = client
            .prepare_cached(
                "SELECT request_index, reservation_id, refusal, retry_after_ms
                 FROM reserve_sends($1, $2, $3, $4, $5, $6)",
            )
            .await?;
        let phones: Vec<&str> = requests
            .iter()
            .map(|request| request.phone.as_str())
            .collect();
        let types: Vec<&str> = requests
            .iter()
            .map(|request| request.template_type.as_str())
            .collect();
        let with_cooldowns: Vec<bool> = requests
            .iter()
            .map(|request| request.with_cooldown)
            .collect();
        let max_sends = i32::try_from(limits.max_sends).unwrap_or(i32::MAX);
        let window_ms = i64::try_from(limits.window.as_millis()).unwrap_or(i64::MAX);
        let cooldown_ms = i64::try_from(limits.cooldown.as_millis()).unwrap_or(i64::MAX);
        let rows = client
            .query(
                &statement,
                &[
                    &phones,
                    &types,
                    &with_cooldowns,
                    &max_sends,
                    &window_ms,
                    &cooldown_ms,
                ],
            )
            .await?;
        let mut outcomes = Vec::with_capacity(rows.len());
        for (expected_index, row) in (1..).zip(&rows) {
            let index: i32 = row.try_get(0)?;
            if index != expected_index {
                return Err(StoreError::Failed(format!(
                    "reserve_sends answered request {index} where {expected_index} was due"
                )));
            }
            outcomes.push(SharedReservation::from_row(
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            )?);
        }
        Ok(outcomes)
    })
    .await
}

async fn delete_send(pool: &Pool, target: &str, reservation_id: i64) -> Result<(), StoreError> {
    within_deadline_at(target, async {
        pool_client(pool, target)
            .await?
            .execute(
                "DELETE FROM recipient_sends WHERE id = $1",
                &[&reservation_id],
            )
            .await?;
        Ok(())
    })
    .await
}

/// A `LISTEN`ing connection; `notifications` ends when it is lost.
pub struct ChangeListener {
    pub notifications: tokio::sync::mpsc::UnboundedReceiver<()>,
    _client: tokio_postgres::Client,
    forward: tokio::task::JoinHandle<()>,
}

impl Drop for ChangeListener {
    fn drop(&mut self) {
        self.forward.abort();
    }
}

#[async_trait::async_trait]
impl ConnectorStore for PostgresStore {
    async fn list(&self, enabled: Option<bool>) -> Result<Vec<ConnectorRecord>, StoreError> {
        self.within_deadline(async {
            let sql = format!(
                "SELECT {COLUMNS} FROM connectors WHERE ($1::boolean IS NULL OR enabled = $1) ORDER BY created_at, id"
            );
            let rows = self.client().await?.query(&sql, &[&enabled]).await?;
            rows.iter().map(|row| read_record(&self.keyring, row, 0)).collect()
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<ConnectorRecord>, StoreError> {
        self.within_deadline(async {
            let client = self.client().await?;
            select_one(&client, &self.keyring, id).await
        })
        .await
    }

    async fn live(&self) -> Result<Option<ConnectorRecord>, StoreError> {
        self.live_snapshot()
            .await?
            .live
            .transpose()
            .map_err(StoreError::ConfigUnreadable)
    }

    async fn insert_live(&self, connector: NewConnector) -> Result<ConnectorRecord, StoreError> {
        self.within_deadline(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            let generation = begin_change(&transaction).await?;
            require_current_sealing_key(&transaction, &self.keyring).await?;
            let now = now_millis();
            retire_live(&transaction, now).await?;
            transaction
                .execute(
                    "INSERT INTO connectors (id, factory_id, type, config, metadata, enabled, created_at, updated_at)
                     VALUES ($1, $2, 'Sms', $3, $4, true, $5, $5)",
                    &[
                        &connector.id,
                        &connector.factory_id,
                        &self.keyring.seal(&connector.id, &connector.factory_id, &connector.config)?,
                        &connector.metadata.to_string(),
                        &now,
                    ],
                )
                .await?;
            let record = select_one(&transaction, &self.keyring, &connector.id)
                .await?
                .ok_or_else(|| StoreError::Failed("the inserted connector is missing".to_owned()))?;
            announce_change(&transaction, generation).await?;
            transaction.commit().await?;
            Ok(record)
        })
        .await
    }

    async fn enable(&self, id: &str) -> Result<Option<ConnectorRecord>, StoreError> {
        self.within_deadline(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            let generation = begin_change(&transaction).await?;
            match select_one(&transaction, &self.keyring, id).await? {
                None => return Ok(None),
                Some(record) if record.enabled => return Ok(Some(record)),
                Some(_) => {}
            }
            let now = now_millis();
            retire_live(&transaction, now).await?;
            transaction
                .execute(
                    // The standby going live is no longer the standby.
                    "UPDATE connectors SET enabled = true, fallback = false, updated_at = $2 WHERE id = $1",
                    &[&id, &now],
                )
                .await?;
            let record = select_one(&transaction, &self.keyring, id).await?;
            announce_change(&transaction, generation).await?;
            transaction.commit().await?;
            Ok(record)
        })
        .await
    }

    async fn update(
        &self,
        read: &ConnectorRecord,
        config: serde_json::Value,
        metadata: serde_json::Value,
    ) -> Result<UpdateOutcome, StoreError> {
        self.within_deadline(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            // The change lock first: no other host can change a connector until this commits.
            let generation = begin_change(&transaction).await?;
            require_current_sealing_key(&transaction, &self.keyring).await?;
            let outcome = match select_one(&transaction, &self.keyring, &read.id).await? {
                None => UpdateOutcome::NotFound,
                Some(current) if current != *read => UpdateOutcome::ChangedMeanwhile,
                Some(_) => {
                    transaction
                        .execute(
                            "UPDATE connectors SET config = $2, metadata = $3, updated_at = $4 WHERE id = $1",
                            &[&read.id, &self.keyring.seal(&read.id, &read.factory_id, &config)?, &metadata.to_string(), &now_millis()],
                        )
                        .await?;
                    match select_one(&transaction, &self.keyring, &read.id).await? {
                        Some(record) => {
                            announce_change(&transaction, generation).await?;
                            UpdateOutcome::Updated(record)
                        }
                        None => UpdateOutcome::NotFound,
                    }
                }
            };
            transaction.commit().await?;
            Ok(outcome)
        })
        .await
    }

    async fn save_migrated_config(
        &self,
        read: &ConnectorRecord,
        migrated: serde_json::Value,
        previous_copy_id: &str,
    ) -> Result<UpdateOutcome, StoreError> {
        self.within_deadline(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            let generation = begin_change(&transaction).await?;
            require_current_sealing_key(&transaction, &self.keyring).await?;
            let outcome = match select_one(&transaction, &self.keyring, &read.id).await? {
                None => UpdateOutcome::NotFound,
                Some(current) if current != *read => UpdateOutcome::ChangedMeanwhile,
                Some(_) => {
                    let now = now_millis();
                    transaction
                        .execute(
                            "INSERT INTO connectors (id, factory_id, type, config, metadata, enabled, created_at, updated_at)
                             VALUES ($1, $2, 'Sms', $3, $4, false, $5, $5)",
                            &[
                                &previous_copy_id,
                                &read.factory_id,
                                &self.keyring.seal(previous_copy_id, &read.factory_id, &read.config)?,
                                &read.metadata.to_string(),
                                &now,
                            ],
                        )
                        .await?;
                    transaction
                        .execute(
                            "UPDATE connectors SET config = $2, updated_at = $3 WHERE id = $1",
                            &[&read.id, &self.keyring.seal(&read.id, &read.factory_id, &migrated)?, &now],
                        )
                        .await?;
                    match select_one(&transaction, &self.keyring, &read.id).await? {
                        Some(record) => {
                            announce_change(&transaction, generation).await?;
                            UpdateOutcome::Updated(record)
                        }
                        None => UpdateOutcome::NotFound,
                    }
                }
            };
            transaction.commit().await?;
            Ok(outcome)
        })
        .await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.within_deadline(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            let generation = begin_change(&transaction).await?;
            let deleted = transaction
                .execute("DELETE FROM connectors WHERE id = $1", &[&id])
                .await?;
            if deleted == 0 {
                return Ok(false);
            }
            announce_change(&transaction, generation).await?;
            transaction.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn set_fallback(&self, id: &str) -> Result<FallbackOutcome, StoreError> {
        self.within_deadline(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            let generation = begin_change(&transaction).await?;
            match select_one(&transaction, &self.keyring, id).await? {
                None => return Ok(FallbackOutcome::NotFound),
                Some(record) if record.enabled => return Ok(FallbackOutcome::IsLive),
                Some(record) if record.fallback => return Ok(FallbackOutcome::Set(record)),
                Some(_) => {}
            }
            let now = now_millis();
            transaction
                .execute(
                    "UPDATE connectors SET fallback = false, updated_at = $1 WHERE fallback AND type = 'Sms'",
                    &[&now],
                )
                .await?;
            transaction
                .execute(
                    "UPDATE connectors SET fallback = true, updated_at = $2 WHERE id = $1",
                    &[&id, &now],
                )
                .await?;
            let record = select_one(&transaction, &self.keyring, id)
                .await?
                .ok_or_else(|| StoreError::Failed("the fallback connector is missing".to_owned()))?;
            announce_change(&transaction, generation).await?;
            transaction.commit().await?;
            Ok(FallbackOutcome::Set(record))
        })
        .await
    }

    async fn clear_fallback(&self, id: &str) -> Result<Option<ConnectorRecord>, StoreError> {
        self.within_deadline(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            let generation = begin_change(&transaction).await?;
            let cleared = transaction
                .execute(
                    "UPDATE connectors SET fallback = false, updated_at = $2 WHERE id = $1 AND fallback",
                    &[&id, &now_millis()],
                )
                .await?;
            let record = select_one(&transaction, &self.keyring, id).await?;
            // Nothing changed: dropped, the transaction rolls the generation back too.
            if cleared > 0 {
                announce_change(&transaction, generation).await?;
                transaction.commit().await?;
            }
            Ok(record)
        })
        .await
    }

    async fn fallback(&self) -> Result<Option<ConnectorRecord>, StoreError> {
        self.within_deadline(async {
            let client = self.client().await?;
            let sql = format!("SELECT {COLUMNS} FROM connectors WHERE fallback AND type = 'Sms'");
            client
                .query_opt(&sql, &[])
                .await?
                .map(|row| read_record(&self.keyring, &row, 0))
                .transpose()
        })
        .await
    }

    async fn prepare_sealing(&self) -> Result<SealingReport, StoreError> {
        self.reseal_configs(false).await
    }

    async fn reseal_all_configs(&self) -> Result<SealingReport, StoreError> {
        self.reseal_configs(true).await
    }

    async fn read_setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.within_deadline(async {
            Ok(self
                .client()
                .await?
                .query_opt("SELECT value FROM store_settings WHERE name = $1", &[&name])
                .await?
                .map(|row| row.try_get(0))
                .transpose()?)
        })
        .await
    }

    async fn record_setting_once(&self, name: &str, value: &str) -> Result<String, StoreError> {
        self.within_deadline(async {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO store_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                    &[&name, &value],
                )
                .await?;
            Ok(client
                .query_one("SELECT value FROM store_settings WHERE name = $1", &[&name])
                .await?
                .try_get(0)?)
        })
        .await
    }

    async fn write_settings(
        &self,
        settings: Vec<(&'static str, Option<String>)>,
    ) -> Result<(), StoreError> {
        self.within_deadline(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            for (name, value) in &settings {
                match value {
                    Some(value) => {
                        transaction
                            .execute(
                                "INSERT INTO store_settings (name, value) VALUES ($1, $2)
                             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                                &[name, value],
                            )
                            .await?
                    }
                    None => {
                        transaction
                            .execute("DELETE FROM store_settings WHERE name = $1", &[name])
                            .await?
                    }
                };
            }
            transaction.commit().await?;
            Ok(())
        })
        .await
    }
}

#[async_trait::async_trait]
impl VerificationCodeStore for PostgresStore {
    async fn save_code(&self, code: NewCode) -> Result<(), StoreError> {
        self.within_deadline(async {
            self.client()
                .await?
                .execute(
                    "INSERT INTO verification_codes (phone, type, code_hash, created_at, expires_at, failed_attempts)
                     VALUES ($1, $2, $3, $4, $5, 0)
                     ON CONFLICT (phone, type) DO UPDATE SET code_hash = EXCLUDED.code_hash,
                        created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, failed_attempts = 0",
                    &[&code.phone, &code.template_type.as_str(), &code.code_hash, &code.created_at, &code.expires_at],
                )
                .await?;
            Ok(())
        })
        .await
    }

    async fn discard_code(
        &self,
        phone: &str,
        template_type: TemplateType,
        code_hash: &[u8],
    ) -> Result<(), StoreError> {
        let template_type = template_type.as_str();
        self.within_deadline(async {
            self.client()
                .await?
                .execute(
                    "DELETE FROM verification_codes WHERE phone = $1 AND type = $2 AND code_hash = $3",
                    &[&phone, &template_type, &code_hash],
                )
                .await?;
            Ok(())
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
        let template_type = template_type.as_str();
        self.within_deadline(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await?;
            let stored = match transaction
                .query_opt(
                    "SELECT code_hash, expires_at, failed_attempts FROM verification_codes
                     WHERE phone = $1 AND type = $2 FOR UPDATE",
                    &[&phone, &template_type],
                )
                .await?
            {
                None => None,
                Some(row) => Some(StoredCode {
                    code_hash: row.try_get(0)?,
                    expires_at: row.try_get(1)?,
                    failed_attempts: u32::try_from(row.try_get::<_, i32>(2)?).unwrap_or(0),
                }),
            };
            let outcome = decide_verification(stored.as_ref(), presented_hashes, now, max_attempts);
            let write = match outcome.code_write() {
                CodeWrite::Nothing => None,
                CodeWrite::Consume => {
                    Some("DELETE FROM verification_codes WHERE phone = $1 AND type = $2")
                }
                CodeWrite::CountWrongAttempt => Some(
                    "UPDATE verification_codes SET failed_attempts = failed_attempts + 1
                     WHERE phone = $1 AND type = $2",
                ),
            };
            if let Some(statement) = write {
                transaction
                    .execute(statement, &[&phone, &template_type])
                    .await?;
            }
            transaction.commit().await?;
            Ok(outcome)
        })
        .await
    }

    async fn purge_expired_codes(&self, now: i64) -> Result<usize, StoreError> {
        self.within_deadline(async {
            let purged = self
                .client()
                .await?
                .execute(
                    "DELETE FROM verification_codes WHERE expires_at <= $1",
                    &[&now],
                )
                .await?;
            Ok(usize::try_from(purged).unwrap_or(usize::MAX))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::types::{FromSql, Type};

    /// What an operator read during an outage was deadpool's "Error occurred while creating
    /// a new object: db error"; the cause and the address say what happened.
    #[tokio::test]
    async fn a_refused_connection_is_said_in_words_with_the_address() {
        // Nothing listens on port 1 of loopback: refused at once.
        let options =
            tls::connect_options("host=127.0.0.1 port=1 user=nobody connect_timeout=5").unwrap();
        let config = options.config;
        let manager = Manager::from_config(
            config.clone(),
            options.tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(1)
            .runtime(Runtime::Tokio1)
            .build()
            .unwrap();
        let error = pool.get().await.expect_err("nothing listens there");
        assert_eq!(
            pool_error_in_words(&error, &database_target(&config)),
            "cannot connect to PostgreSQL at 127.0.0.1:1: connection refused"
        );
    }

    /// An unavailable store names its database once; other errors stay as they are.
    #[tokio::test]
    async fn unavailable_errors_name_the_database_once() {
        let named = |error: StoreError| async move {
            within_deadline_at::<()>("db.internal:5432", async { Err(error) })
                .await
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            named(StoreError::Unavailable("connection closed".to_owned())).await,
            "the store is unavailable: PostgreSQL at db.internal:5432: connection closed"
        );
        assert_eq!(
            named(StoreError::Unavailable(
                "PostgreSQL did not answer within 5 s".to_owned()
            ))
            .await,
            "the store is unavailable: PostgreSQL at db.internal:5432 did not answer within 5 s"
        );
        let reached = "cannot reach PostgreSQL at db.internal:5432: error connecting to server";
        assert_eq!(
            named(StoreError::Unavailable(reached.to_owned())).await,
            format!("the store is unavailable: {reached}")
        );
        assert_eq!(
            named(StoreError::Failed("23505: duplicate key".to_owned())).await,
            "store error: 23505: duplicate key"
        );
    }

    /// Messages name the database by host and port, never the user or password.
    #[test]
    fn the_target_is_host_and_port_without_credentials() {
        let (config, _) =
            connection_config("postgres://app:s3cret@db.internal:5433/connectors", None).unwrap();
        assert_eq!(database_target(&config), "db.internal:5433");
        let (config, _) = connection_config("postgres://app@[::1]/connectors", None).unwrap();
        assert_eq!(database_target(&config), "[::1]:5432");
        let (config, _) = connection_config(
            "host=10.0.0.5,10.0.0.6 port=5432,5433 user=app dbname=c",
            Some("pw"),
        )
        .unwrap();
        assert_eq!(database_target(&config), "10.0.0.5:5432,10.0.0.6:5433");
    }

    /// "connection refused", not "error connecting to server" alone; start-up waits for it.
    #[tokio::test]
    async fn a_refused_connection_is_said_in_words_and_waited_for() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (config, _) =
            connection_config(&format!("postgres://app@127.0.0.1:{port}/c"), None).unwrap();
        let error = config
            .connect(tokio_postgres::NoTls)
            .await
            .err()
            .expect("nothing listens there");
        let words = postgres_error_words(&error);
        assert_eq!(words, "connection refused");
        assert!(worth_waiting_for(&error), "{words}");
        let refused = wait_until_reachable_within(port).await;
        assert!(
            refused.contains(&format!("cannot reach PostgreSQL at 127.0.0.1:{port}"))
                && refused.contains("--database-wait-secs"),
            "{refused}"
        );
    }

    async fn wait_until_reachable_within(port: u16) -> String {
        PostgresStore::wait_until_reachable(
            &format!("postgres://app:pw@127.0.0.1:{port}/c"),
            None,
            Some(Duration::from_millis(100)),
        )
        .await
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn reserve_send_s_refusals_are_read_as_types_and_unknown_text_is_an_error() {
        for refusal in [
            ReservationRefusal::Cooldown,
            ReservationRefusal::RateLimited,
        ] {
            let read = ReservationRefusal::from_sql(&Type::TEXT, refusal.as_sql().as_bytes());
            assert_eq!(read.unwrap(), refusal);
        }
        // The words the migration's function returns.
        assert_eq!(ReservationRefusal::Cooldown.as_sql(), "cooldown");
        assert_eq!(ReservationRefusal::RateLimited.as_sql(), "rate_limited");
        assert!(ReservationRefusal::from_sql(&Type::TEXT, b"slow_down").is_err());
        assert_eq!(
            SharedReservation::from_row(Some(7), None, None).unwrap(),
            SharedReservation::Reserved { id: 7 }
        );
        assert_eq!(
            SharedReservation::from_row(None, Some(ReservationRefusal::Cooldown), Some(1500))
                .unwrap(),
            SharedReservation::Cooldown {
                retry_after_ms: 1500
            }
        );
        assert_eq!(
            SharedReservation::from_row(None, Some(ReservationRefusal::RateLimited), None).unwrap(),
            SharedReservation::RateLimited {
                retry_after_ms: 1000
            }
        );
        assert!(SharedReservation::from_row(None, None, None).is_err());
        // The function returns exactly these words.
        let migration = include_str!("migrations/V1__initial.sql");
        for refusal in [
            ReservationRefusal::Cooldown,
            ReservationRefusal::RateLimited,
        ] {
            assert!(migration.contains(&format!("'{}'::text", refusal.as_sql())));
        }
    }

    #[test]
    fn errors_that_mean_the_database_is_going_away_are_unavailable() {
        for code in [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::CONNECTION_EXCEPTION,
            SqlState::CONNECTION_FAILURE,
            SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            SqlState::PROTOCOL_VIOLATION,
            SqlState::TOO_MANY_CONNECTIONS,
        ] {
            assert!(means_unreachable(&code, "whatever"), "{}", code.code());
        }
        assert!(means_unreachable(
            &SqlState::from_code("XX000"),
            "the database system is shutting down"
        ));
        assert!(means_unreachable(
            &SqlState::from_code("XX000"),
            "the database system is starting up"
        ));
        for code in [
            SqlState::UNIQUE_VIOLATION,
            SqlState::SYNTAX_ERROR,
            SqlState::UNDEFINED_TABLE,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::QUERY_CANCELED,
        ] {
            assert!(
                !means_unreachable(&code, "duplicate key"),
                "{}",
                code.code()
            );
        }
    }
}
