//! The application state every route shares, what `serve` is configured with, and start-up:
//! data directory, keys, plugins folder, store and the live connector restored.
//!
//! Only the routes, the console and the server see [`AppState`]; the modules below them take
//! the narrow handles it holds.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::api_keys::{ApiKeys, SharedKeyFileError};
use crate::core_dumps::CoreDumpError;
use crate::data_directory::{
    DataDirectoryError, ADMIN_KEY_FILE, CODE_HASH_KEY_FILE, SECRETS_KEY_FILE,
};
use crate::http::limits::LimitsError;
use crate::http::request_admission::AdmissionGate;
use crate::live::lifecycle::ConnectorLifecycle;
use crate::live::live_connector::{LiveConnector, LiveSlot};
use crate::live::plugin_watcher::{PluginRescan, PluginWatchMode};
use crate::live::store_follower::StoreFollower;
use crate::plugins::config_migration::instantiate_or_migrate;
use crate::plugins::factory_registry::FactoryRegistry;
use crate::plugins::folder::PluginFolder;
use crate::plugins::loader::PluginLoader;
use crate::plugins::signature::{TrustedPluginKeyError, TrustedPluginKeys};
use crate::protection::shared_state::SharedStateSync;
use crate::protection::ProtectionMode;
use crate::send::executor::{SendExecutor, SendExecutorConfig};
use crate::send::flow_control::{RecipientLimiter, SendLimiter};
use crate::send::verification_codes::VerificationCodes;
use crate::send::{SendLimits, Sender};
use crate::store::code_hash_keys::CodeHashKeyError;
use crate::store::key_rotation::KeyCommandError;
use crate::store::postgres::PostgresStore;
use crate::store::secrets_keyring::KeyringFileError;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    ConnectorRecord, SecretsKeyring, Store, StoreBackend, StoreError, UpdateOutcome,
};
use crate::verification_code::{CodeHasher, CodePolicy};

/// Why the host or a key command did not start: one line that says what to do, printed by
/// the command line as `connector-host: <message>`. Errors a module owns are its own types,
/// wrapped here unchanged.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    DataDirectory(#[from] DataDirectoryError),
    #[error(transparent)]
    SecretsKeyFile(#[from] KeyringFileError),
    #[error(transparent)]
    SharedKeyFile(#[from] SharedKeyFileError),
    #[error(transparent)]
    CodeHashKey(#[from] CodeHashKeyError),
    #[error(transparent)]
    TrustedPluginKey(#[from] TrustedPluginKeyError),
    #[error(transparent)]
    CoreDumps(#[from] CoreDumpError),
    #[error(transparent)]
    Limits(#[from] LimitsError),
    #[error(transparent)]
    KeyCommand(#[from] KeyCommandError),
    #[error("with --database-url, pass --code-hash-key-file: the same key file on every host (a key in the database would let a dump brute-force the codes)")]
    DatabaseUrlWithoutCodeHashKeyFile,
    #[error("with --database-url, pass --secrets-key-file: the same key file on every host (it seals the saved configs and must never be in the database)")]
    DatabaseUrlWithoutSecretsKeyFile,
    #[error("with --database-url, pass --admin-key or --admin-key-file: every host must accept the same admin key")]
    DatabaseUrlWithoutAdminKey,
    #[error("cannot read --database-password-file {}: {source}", .path.display())]
    DatabasePasswordUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--database-password-file {} is empty", .path.display())]
    DatabasePasswordEmpty { path: PathBuf },
    /// Unreachable: `prepare` opens SQLite exactly when there is no URL.
    #[error("no store was opened")]
    NoStore,
    #[error("start-up failed: {0}")]
    StartupTask(tokio::task::JoinError),
    #[error("cannot open the store {}: {source}", .path.display())]
    OpenStore { path: PathBuf, source: StoreError },
    #[error("cannot use the database: {0}")]
    Database(StoreError),
    #[error("cannot use the store: {0}")]
    Store(StoreError),
    #[error("cannot read the live connector: {0}")]
    ReadLiveConnector(StoreError),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(reqwest::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// After start-up: the listener failed (its local address, or serving).
    #[error("{0}")]
    Serving(std::io::Error),
}

/// What `serve` needs to start.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// `--public-url` and `--message-retention-days`: delivery reports and the message log.
    pub delivery_reports: crate::send::message_tracking::DeliveryReportSettings,
    /// `--fallback-after-failures` and `--fallback-cool-off-secs`.
    pub fallback_breaker: crate::send::fallback::BreakerSettings,
    pub plugins_dir: PathBuf,
    /// `--plugin-isolation process`: the worker processes' settings (`None`: in-process).
    pub plugin_workers: Option<crate::isolation::pool::WorkerSettings>,
    pub data_dir: PathBuf,
    pub admin_keys: Vec<String>,
    pub send_keys: Vec<String>,
    pub send_executor: SendExecutorConfig,
    pub send_limits: SendLimits,
    pub code_policy: CodePolicy,
    /// The SMS-pumping protection's flags.
    pub protection: crate::protection::ProtectionSettings,
    /// When set, only plugin builds with these SHA-256 digests load.
    pub allowed_plugin_sha256: Option<std::collections::BTreeSet<String>>,
    /// Minisign public key files; when any, plugin files load only signed by one of them.
    pub trusted_plugin_key_files: Vec<PathBuf>,
    pub plugin_watch: PluginWatchMode,
    /// `--phone-validation`: how every route checks a phone number.
    pub phone_validation: crate::phone::PhoneValidation,
    /// PostgreSQL shared by several hosts; `None`: SQLite in the data directory.
    pub database_url: Option<String>,
    /// The code-hash key's file; `None`: `<data>/code-hash-key` (SQLite only).
    pub code_hash_key_file: Option<PathBuf>,
    /// The keyring that seals saved configs; `None`: `<data>/secrets-key` (SQLite only).
    pub secrets_key_file: Option<PathBuf>,
    /// The database password, apart from the URL (which then holds none).
    pub database_password_file: Option<PathBuf>,
    /// With PostgreSQL: LISTEN for other hosts' changes (else only the one-second poll).
    pub store_notifications: bool,
    /// Timeouts and caps on connections, requests and sends per connector.
    pub http_limits: crate::http::HttpLimits,
    /// `--access-log`: one log line per request.
    pub access_log: bool,
    /// With PostgreSQL: how long start-up waits for the database (`None`: for ever).
    pub database_wait: Option<std::time::Duration>,
    /// The drain on SIGTERM and SIGINT.
    pub shutdown: crate::readiness::ShutdownSettings,
}

/// Shared by every request.
/// Delivery reports a host takes a second: far over what its own sends cause (a report or
/// three per message), far under what would let a flood of forged ones cost anything.
const DELIVERY_REPORTS_PER_SECOND: std::num::NonZeroU32 = match std::num::NonZeroU32::new(500) {
    Some(rate) => rate,
    None => panic!("a positive rate"),
};

pub struct AppState {
    pub config: ServeConfig,
    pub loader: Arc<PluginLoader>,
    /// What the plugins folder held at the last reconcile; only reconciles touch it.
    pub plugin_folder: Arc<Mutex<PluginFolder>>,
    /// Swapped whole when plugins change; readers never block.
    pub factories: ArcSwap<FactoryRegistry>,
    /// The embedded store or PostgreSQL; [`AppState::store`] for what both keep.
    pub store_backend: StoreBackend,
    /// The live SMS connector; a send keeps the `Arc` it loaded until it finishes. Only the
    /// slot's change lock swaps it.
    pub live: LiveSlot,
    /// Limits, limiter, sends in progress per connector, and the executor.
    pub sender: Sender,
    pub api_keys: Arc<ApiKeys>,
    pub code_hasher: CodeHasher,
    /// The connector generation this host serves (PostgreSQL; 0 with SQLite).
    pub served_generation: std::sync::atomic::AtomicI64,
    /// Renders `/metrics`; `None` when no recorder is installed (library use, tests).
    pub metrics: Option<PrometheusHandle>,
    /// This process is the data directory's only user while the state lives.
    pub data_directory_lock: crate::data_directory::DataDirectoryLock,
    /// The API routes' gate: in-flight cap, body and request deadlines.
    pub request_admission: Arc<crate::http::RequestAdmission>,
    /// On PostgreSQL, the protection's exchanges with the other hosts, until `serve` starts
    /// them.
    pub protection_sharing: std::sync::Mutex<Option<SharedStateSync>>,
    /// Requests counted by route and status, the access log, refusals logged.
    pub request_log: Arc<crate::http::request_log::RequestLog>,
    /// Draining or not (`/ready`).
    pub readiness: crate::readiness::Readiness,
    /// Delivery reports a second this host takes (`/dlr`), before any work is done for them.
    pub delivery_report_limiter: governor::DefaultDirectRateLimiter,
}

impl AppState {
    /// Prepares the data directory, loads the plugins folder, opens the store and restores the
    /// live connector. A plugins folder that cannot be read leaves the host serving with no
    /// factories; only an unusable data directory or store is fatal.
    pub async fn load(
        config: ServeConfig,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Self, StartupError> {
        if config.database_url.is_some() {
            // Every host of one database must hash codes and accept keys alike, and the
            // code-hash key must never sit in the database beside the hashes.
            if config.code_hash_key_file.is_none() {
                return Err(StartupError::DatabaseUrlWithoutCodeHashKeyFile);
            }
            if config.secrets_key_file.is_none() {
                return Err(StartupError::DatabaseUrlWithoutSecretsKeyFile);
            }
            if config.admin_keys.is_empty() {
                return Err(StartupError::DatabaseUrlWithoutAdminKey);
            }
        }
        crate::telemetry::register_metrics(&crate::api_error::ApiError::all_codes());
        let database_url = config.database_url.clone();
        let prepared = tokio::task::spawn_blocking(move || PreparedHost::prepare(config))
            .await
            .map_err(StartupError::StartupTask)??;
        let PreparedHost {
            config,
            loader,
            plugin_folder,
            registry,
            sqlite_store,
            secrets_keyring,
            admin_keys,
            code_hash_key,
            data_directory_lock,
            database_password,
        } = prepared;
        let backend = match (database_url, sqlite_store, secrets_keyring) {
            (Some(url), _, Some(keyring)) => {
                // The database may be starting with this host: wait for it (bounded by
                // `--database-wait-secs`) rather than exit.
                PostgresStore::wait_until_reachable(
                    &url,
                    database_password.as_deref(),
                    config.database_wait,
                )
                .await
                .map_err(StartupError::Database)?;
                StoreBackend::Shared(Box::new(
                    PostgresStore::connect_with_password(
                        &url,
                        database_password.as_deref(),
                        keyring,
                    )
                    .await
                    .map_err(StartupError::Database)?,
                ))
            }
            (None, Some(sqlite), _) => StoreBackend::Embedded(sqlite),
            _ => return Err(StartupError::NoStore),
        };
        crate::telemetry::report_store_up(true);
        let store = backend.store();
        let protection = crate::protection::Protection::new(
            config.protection.clone(),
            config
                .send_limits
                .allowed_countries
                .clone()
                .unwrap_or_default(),
        );
        let mut protection_sharing = None;
        match (backend.embedded(), backend.shared()) {
            (Some(sqlite), _) => crate::protection::persistence::restore(&protection, sqlite)
                .await
                .map_err(|error| StartupError::Store(StoreError::Failed(error)))?,
            // Several hosts: one protection for all, through the database.
            (None, Some(postgres)) if protection.mode() != ProtectionMode::Off => {
                protection_sharing = Some(
                    crate::protection::shared_state::start_sharing(&protection, postgres)
                        .await
                        .map_err(|error| StartupError::Store(StoreError::Unavailable(error)))?,
                );
            }
            _ => {}
        }
        let sealing = store.prepare_sealing().await.map_err(StartupError::Store)?;
        if sealing.sealed_from_clear > 0 {
            tracing::info!(configs = sealing.sealed_from_clear, key_id = %sealing.key_id, "sealed saved configs that were stored in clear");
        }
        // Codes issued here must verify on every host of the store, and theirs here.
        let code_hash_key_file = config
            .code_hash_key_file
            .clone()
            .unwrap_or_else(|| config.data_dir.join(CODE_HASH_KEY_FILE));
        let code_hasher = crate::store::code_hash_keys::parse_code_hash_keys(
            &code_hash_key,
            &code_hash_key_file,
        )?;
        crate::store::code_hash_keys::prepare_code_hash_keys(
            store,
            &code_hasher,
            &code_hash_key_file,
        )
        .await?;
        let (generation, live_record) = match backend.shared() {
            Some(postgres) => {
                let snapshot = postgres
                    .live_snapshot()
                    .await
                    .map_err(StartupError::ReadLiveConnector)?;
                (snapshot.generation, snapshot.live)
            }
            None => (
                0,
                match store.live().await {
                    Ok(record) => record.map(Ok),
                    Err(StoreError::ConfigUnreadable(unreadable)) => Some(Err(unreadable)),
                    Err(error) => return Err(StartupError::ReadLiveConnector(error)),
                },
            ),
        };
        // A live connector whose config this host cannot open is kept as such: reported, and
        // never used to send.
        let live = match live_record {
            None => None,
            Some(Ok(record)) => {
                // A build installed while the host was down may have to migrate the saved config.
                let record = migrate_saved_config(store, &registry, record).await;
                Some(LiveConnector::build(
                    &record.id,
                    &record.factory_id,
                    &record.config,
                    &registry,
                ))
            }
            Some(Err(unreadable)) => Some(LiveConnector::config_unreadable(&unreadable)),
        };
        let live = live.map(|live| {
            tracing::info!(connector_id = %live.connector_id, factory_id = %live.factory_id, ready = live.unavailable_reason().is_none(), "live connector restored");
            Arc::new(live)
        });
        let standby = match store.fallback().await {
            Ok(record) => LiveConnector::standby_for(record.as_ref(), None, &registry),
            Err(StoreError::ConfigUnreadable(unreadable)) => {
                Some(Arc::new(LiveConnector::config_unreadable(&unreadable)))
            }
            Err(error) => return Err(StartupError::ReadLiveConnector(error)),
        };
        let send_limiter = match backend.shared() {
            Some(postgres) => SendLimiter::Shared {
                store: Box::new(postgres.clone()),
                max_sends_per_window: config.send_limits.max_sends_per_recipient,
                window: config.send_limits.window,
                cooldown: config.send_limits.resend_cooldown,
            },
            None => SendLimiter::Local(RecipientLimiter::new(
                config.send_limits.max_sends_per_recipient,
                config.send_limits.window,
                config.send_limits.resend_cooldown,
            )),
        };
        // Development connectors' messages go to a file the host owns, never to a path from
        // a config.
        let send_executor = SendExecutor::new(SendExecutorConfig {
            outbox_file: Some(crate::send::outbox::outbox_path(&config.data_dir)),
            ..config.send_executor.clone()
        })
        .map_err(StartupError::HttpClient)?;
        if let Some(live) = &live {
            if live.unavailable_reason().is_none() {
                crate::send::outbox::warn_if_development_connector_is_live(
                    &live.connector_id,
                    &live.factory_id,
                    send_executor.outbox_path(),
                );
            }
        }
        tracing::info!(
            max_connections = config.http_limits.max_connections,
            max_in_flight = config.http_limits.max_in_flight,
            max_vendor_concurrency = config.http_limits.max_vendor_concurrency,
            header_read_timeout_secs = config.http_limits.header_read_timeout.as_secs(),
            body_read_timeout_secs = config.http_limits.body_read_timeout.as_secs(),
            response_write_timeout_secs = config.http_limits.response_write_timeout.as_secs(),
            api_request_timeout_secs = config.http_limits.api_request_timeout.as_secs(),
            "connection and request limits"
        );
        let tracking = crate::send::message_tracking::MessageTracking::load(
            match &backend {
                StoreBackend::Embedded(sqlite) => Arc::new(sqlite.clone()),
                StoreBackend::Shared(postgres) => Arc::new(postgres.as_ref().clone()),
            },
            backend.store(),
            &config.delivery_reports,
        )
        .await
        .map_err(StartupError::Store)?;
        Ok(Self {
            delivery_report_limiter: governor::RateLimiter::direct(governor::Quota::per_second(
                DELIVERY_REPORTS_PER_SECOND,
            )),
            readiness: Default::default(),
            request_admission: Arc::new(crate::http::RequestAdmission::new(&config.http_limits)),
            request_log: Arc::new(crate::http::request_log::RequestLog::new(config.access_log)),
            sender: Sender {
                limits: config.send_limits.clone(),
                limiter: send_limiter,
                vendor_concurrency: crate::send::vendor_concurrency::VendorConcurrency::new(
                    config.http_limits.max_vendor_concurrency,
                ),
                executor: send_executor,
                admin_test_budget: Default::default(),
                protection,
                protection_log: crate::log_dedup::LogDedup::new(
                    crate::send::PROTECTION_LOG_INTERVAL,
                ),
                tracking,
                fallback_breaker: crate::send::fallback::Breaker::new(config.fallback_breaker),
            },
            protection_sharing: std::sync::Mutex::new(protection_sharing),
            code_hasher,
            served_generation: std::sync::atomic::AtomicI64::new(generation),
            metrics,
            data_directory_lock,
            api_keys: Arc::new(ApiKeys::new(&admin_keys, &config.send_keys)),
            config,
            loader: Arc::new(loader),
            plugin_folder: Arc::new(Mutex::new(plugin_folder)),
            factories: ArcSwap::from_pointee(registry),
            store_backend: backend,
            live: LiveSlot::with_standby(live, standby),
        })
    }

    /// Connectors and codes, whichever the backend.
    pub fn store(&self) -> &dyn Store {
        self.store_backend.store()
    }

    /// Connectors created, updated, enabled and deleted, the live one swapped with them.
    pub fn connector_lifecycle(&self) -> ConnectorLifecycle<'_> {
        ConnectorLifecycle {
            factories: &self.factories,
            store: self.store_backend.store(),
            live: &self.live,
            outbox_path: self.sender.executor.outbox_path(),
            changed_by: None,
        }
    }

    /// A reconcile of the plugins folder.
    pub fn plugin_rescan(&self) -> PluginRescan<'_> {
        PluginRescan {
            loader: &self.loader,
            folder: &self.plugin_folder,
            factories: &self.factories,
            live: &self.live,
            store: self.store_backend.store(),
        }
    }

    /// Verification codes issued and checked.
    pub fn verification_codes(&self) -> VerificationCodes<'_> {
        VerificationCodes {
            live: &self.live,
            sender: &self.sender,
            store: self.store_backend.store(),
            hasher: &self.code_hasher,
            policy: &self.config.code_policy,
        }
    }

    /// Following other hosts' changes to the shared store; `None` with SQLite.
    pub fn store_follower(&self) -> Option<StoreFollower<'_>> {
        Some(StoreFollower {
            store: self.store_backend.shared()?,
            live: &self.live,
            factories: &self.factories,
            served_generation: &self.served_generation,
            notifications: self.config.store_notifications,
            outbox_path: self.sender.executor.outbox_path(),
        })
    }

    /// The API routes' gate: the keys, then the admission limits.
    pub fn admission_gate(&self) -> AdmissionGate {
        AdmissionGate {
            api_keys: Arc::clone(&self.api_keys),
            admission: Arc::clone(&self.request_admission),
        }
    }
}

/// What start-up does on the blocking pool: files, plugins, the store's file, the keys.
struct PreparedHost {
    config: ServeConfig,
    loader: PluginLoader,
    plugin_folder: PluginFolder,
    registry: FactoryRegistry,
    /// Opened here unless a database URL is given.
    sqlite_store: Option<SqliteStore>,
    /// For the PostgreSQL store (the SQLite store holds its own).
    secrets_keyring: Option<SecretsKeyring>,
    admin_keys: Vec<String>,
    code_hash_key: String,
    data_directory_lock: crate::data_directory::DataDirectoryLock,
    database_password: Option<String>,
}

impl PreparedHost {
    fn prepare(config: ServeConfig) -> Result<Self, StartupError> {
        let data_dir_error = |source: std::io::Error| DataDirectoryError::Unusable {
            path: config.data_dir.clone(),
            source,
        };
        // First: a key file that cannot be used stops the host before anything is touched.
        let trusted_plugin_keys = TrustedPluginKeys::read_files(&config.trusted_plugin_key_files)?;
        if let Some(keys) = &trusted_plugin_keys {
            tracing::info!(
                key_ids = %keys.key_ids().join(","),
                "plugin files load only with a minisign signature by one of these keys"
            );
        }
        crate::data_directory::prepare(&config.data_dir)?;
        let data_directory_lock = crate::data_directory::lock(&config.data_dir, "serve")?;
        // Every key file private before anything reads it, in the data directory or not.
        let key_files = [ADMIN_KEY_FILE, CODE_HASH_KEY_FILE, SECRETS_KEY_FILE]
            .map(|name| config.data_dir.join(name))
            .into_iter()
            .chain(config.code_hash_key_file.clone())
            .chain(config.secrets_key_file.clone());
        for path in key_files {
            crate::data_directory::secure_key_file(&path)?;
        }
        let database_password = config
            .database_password_file
            .as_deref()
            .map(read_database_password)
            .transpose()?;
        std::fs::create_dir_all(&config.plugins_dir).map_err(data_dir_error)?;
        let secrets_keyring = load_secrets_keyring(&config)?;
        let loader = PluginLoader::new(
            config.data_dir.join("plugin-copies"),
            config.allowed_plugin_sha256.clone(),
        )
        .map_err(data_dir_error)?
        .with_trusted_keys(trusted_plugin_keys)
        .with_workers(config.plugin_workers.clone());
        let mut plugin_folder = PluginFolder::new(config.plugins_dir.clone());
        let registry = match plugin_folder.reconcile(&loader, None) {
            Ok(outcome) => outcome.registry,
            Err(error) => {
                tracing::error!(%error, "cannot load the plugins folder; serving with no factories");
                FactoryRegistry::default()
            }
        };
        let (sqlite_store, secrets_keyring) = if config.database_url.is_none() {
            let store_path = config.data_dir.join("connectors.sqlite3");
            // Saved configs hold provider secrets: the database and (SQLite copies the mode)
            // its WAL and shared-memory files are the host's only.
            for file in [
                "connectors.sqlite3",
                "connectors.sqlite3-wal",
                "connectors.sqlite3-shm",
            ] {
                let path = config.data_dir.join(file);
                if file == "connectors.sqlite3" || path.exists() {
                    crate::data_directory::private_file(&path)?;
                }
            }
            let store = SqliteStore::open(&store_path, secrets_keyring).map_err(|source| {
                StartupError::OpenStore {
                    path: store_path.clone(),
                    source,
                }
            })?;
            (Some(store), None)
        } else {
            (None, Some(secrets_keyring))
        };
        let mut admin_keys = config.admin_keys.clone();
        if admin_keys.is_empty() {
            let key_path = config.data_dir.join(ADMIN_KEY_FILE);
            let (key, created) =
                crate::api_keys::load_or_create_admin_key(&key_path).map_err(data_dir_error)?;
            if created {
                // Printed once, on first start; afterwards it lives only in the 0600 file.
                eprintln!(
                    "connector-host: generated an admin API key (kept in {}): {key}",
                    key_path.display()
                );
            }
            admin_keys.push(key);
        }
        crate::phone::load_numbering_plans();
        let code_hash_key = match &config.code_hash_key_file {
            Some(path) => crate::api_keys::read_shared_secret_file(path)?,
            None => {
                crate::api_keys::load_or_create_secret_file(
                    &config.data_dir.join(CODE_HASH_KEY_FILE),
                )
                .map_err(data_dir_error)?
                .0
            }
        };
        Ok(Self {
            config,
            loader,
            plugin_folder,
            registry,
            sqlite_store,
            secrets_keyring,
            admin_keys,
            code_hash_key,
            data_directory_lock,
            database_password,
        })
    }
}

/// The live connector's saved record, with its config migrated and saved when the loaded
/// build of its factory refuses the config as saved but migrates it (`migrate_config`). Any
/// other case, a failed save included (logged), leaves the record as it is: building the
/// live connector then reports the refusal.
async fn migrate_saved_config(
    store: &dyn Store,
    registry: &FactoryRegistry,
    record: ConnectorRecord,
) -> ConnectorRecord {
    let Some(factory) = registry.get(&record.factory_id) else {
        return record;
    };
    let migrated = match instantiate_or_migrate(&factory.plugin.module, &record.config) {
        Ok((_, Some(migrated))) => migrated,
        Ok((_, None)) | Err(_) => return record,
    };
    let previous_copy_id = match crate::live::lifecycle::new_connector_id() {
        Ok(id) => id,
        Err(error) => {
            tracing::error!(connector_id = %record.id, %error, "the config the loaded build migrated was not saved");
            return record;
        }
    };
    match store
        .save_migrated_config(&record, migrated, &previous_copy_id)
        .await
    {
        Ok(UpdateOutcome::Updated(saved)) => {
            tracing::info!(connector_id = %saved.id, factory_id = %saved.factory_id, plugin_version = %factory.plugin.metadata.plugin_version, sha256 = %factory.plugin.sha256, previous_config_kept_as = %previous_copy_id, "the loaded build migrated the live connector's saved config; saved, and the config as it was kept in a retired copy");
            saved
        }
        Ok(UpdateOutcome::NotFound | UpdateOutcome::ChangedMeanwhile) => record,
        Err(error) => {
            tracing::error!(connector_id = %record.id, %error, "the config the loaded build migrated was not saved");
            record
        }
    }
}

/// The password in `--database-password-file` (checked and made private first), without its
/// final newline.
pub fn read_database_password(path: &std::path::Path) -> Result<String, StartupError> {
    crate::data_directory::secure_key_file(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| {
        StartupError::DatabasePasswordUnreadable {
            path: path.to_owned(),
            source,
        }
    })?;
    let password = text
        .strip_suffix('\n')
        .map(|rest| rest.strip_suffix('\r').unwrap_or(rest))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(StartupError::DatabasePasswordEmpty {
            path: path.to_owned(),
        });
    }
    Ok(password.to_owned())
}

/// The keyring that seals saved configs: the file given to every host of one database, or the
/// data directory's own, created with a new key on first start.
pub fn load_secrets_keyring(config: &ServeConfig) -> Result<SecretsKeyring, KeyringFileError> {
    match &config.secrets_key_file {
        Some(path) => SecretsKeyring::read_file(path, true),
        None => {
            // A new key is logged (with its id, never its value) by the keyring itself.
            let (keyring, _created) =
                SecretsKeyring::read_or_create_file(&config.data_dir.join(SECRETS_KEY_FILE))?;
            Ok(keyring)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Operators and scripts read these lines: typed errors print them as they always were.
    #[test]
    fn start_up_refusals_keep_their_words() {
        assert_eq!(
            StartupError::DatabaseUrlWithoutCodeHashKeyFile.to_string(),
            "with --database-url, pass --code-hash-key-file: the same key file on every host (a key in the database would let a dump brute-force the codes)"
        );
        assert_eq!(
            StartupError::DatabasePasswordEmpty {
                path: PathBuf::from("/run/password")
            }
            .to_string(),
            "--database-password-file /run/password is empty"
        );
        let writable = StartupError::from(DataDirectoryError::Writable {
            what: "the key file",
            path: PathBuf::from("/keys/admin"),
            mode: 0o666,
            private_mode: 0o600,
            advice: " and check its contents",
        });
        assert_eq!(
            writable.to_string(),
            "the key file /keys/admin is writable by group or others (mode 666); chmod 600 it and check its contents"
        );
        let locked =
            StartupError::from(KeyCommandError::DataDirectory(DataDirectoryError::Locked {
                purpose: "rotate the secrets key",
                path: PathBuf::from("/data"),
            }));
        assert_eq!(
            locked.to_string(),
            "cannot rotate the secrets key: another connector-host process is using the data directory /data (stop it first)"
        );
        let empty_keyring = crate::store::secrets_keyring::KeyringFileError::NotAKeyring {
            path: PathBuf::from("/keys/secrets"),
            problem: SecretsKeyring::parse("# none\n").unwrap_err(),
        };
        assert_eq!(
            StartupError::from(empty_keyring).to_string(),
            "the secrets key file /keys/secrets is not a keyring: it holds no key"
        );
    }

    #[test]
    fn an_empty_database_password_file_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("password");
        std::fs::write(&path, "\n").unwrap();
        let refused = read_database_password(&path).unwrap_err();
        assert!(matches!(
            refused,
            StartupError::DatabasePasswordEmpty { .. }
        ));
        std::fs::write(&path, "secret\r\n").unwrap();
        assert_eq!(read_database_password(&path).unwrap(), "secret");
    }
}
