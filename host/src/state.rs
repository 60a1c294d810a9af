//! The application state every route shares, what `serve` is configured with, and start-up:
//! data directory, keys, plugins folder, store and the live connector restored.
//!
//! Only the routes, the console and the server see [`AppState`]; the modules below them take
//! the narrow handles it holds.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::api_keys::ApiKeys;
use crate::data_directory::{ADMIN_KEY_FILE, CODE_HASH_KEY_FILE, SECRETS_KEY_FILE};
use crate::live_connector::LiveConnector;
use crate::plugins::factory_registry::FactoryRegistry;
use crate::plugins::folder::PluginFolder;
use crate::plugins::loader::PluginLoader;
use crate::plugins::signature::TrustedPluginKeys;
use crate::plugins::watcher::PluginWatchMode;
use crate::send::executor::{SendExecutor, SendExecutorConfig};
use crate::send::flow_control::{RecipientLimiter, SendLimiter};
use crate::send::SendLimits;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{SecretsKeyring, Store, StoreError};
use crate::verification_code::{CodeHasher, CodePolicy};

/// What `serve` needs to start.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub plugins_dir: PathBuf,
    pub data_dir: PathBuf,
    pub admin_keys: Vec<String>,
    pub send_keys: Vec<String>,
    pub send_executor: SendExecutorConfig,
    pub send_limits: SendLimits,
    pub code_policy: CodePolicy,
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
}

/// Shared by every request.
pub struct AppState {
    pub config: ServeConfig,
    pub loader: PluginLoader,
    /// What the plugins folder held at the last reconcile; only reconciles touch it.
    pub plugin_folder: std::sync::Mutex<PluginFolder>,
    /// Swapped whole when plugins change; readers never block.
    pub factories: ArcSwap<FactoryRegistry>,
    pub store: Arc<dyn Store>,
    /// The live SMS connector; a send keeps the `Arc` it loaded until it finishes.
    pub live: ArcSwapOption<LiveConnector>,
    /// Serializes connector changes (store write + swap) so the live pointer always matches
    /// the last committed change. Sends never take it.
    pub connector_changes: tokio::sync::Mutex<()>,
    pub send_executor: SendExecutor,
    pub api_keys: ApiKeys,
    pub code_hasher: CodeHasher,
    pub send_limiter: SendLimiter,
    /// Console tests' own budget, apart from the recipients' limits.
    pub admin_test_budget: crate::send::admin_test_budget::AdminTestBudget,
    /// The PostgreSQL store when several hosts share one; `None` with SQLite.
    pub shared_store: Option<PostgresStore>,
    /// The connector generation this host serves (PostgreSQL; 0 with SQLite).
    pub served_generation: std::sync::atomic::AtomicI64,
    /// Renders `/metrics`; `None` when no recorder is installed (library use, tests).
    pub metrics: Option<PrometheusHandle>,
    /// This process is the data directory's only user while the state lives.
    pub data_directory_lock: crate::data_directory::DataDirectoryLock,
    /// The API routes' gate: in-flight cap, body and request deadlines.
    pub request_admission: crate::http::RequestAdmission,
    /// Sends in progress per connector, capped.
    pub vendor_concurrency: crate::send::vendor_concurrency::VendorConcurrency,
}

impl AppState {
    /// Prepares the data directory, loads the plugins folder, opens the store and restores the
    /// live connector. A plugins folder that cannot be read leaves the host serving with no
    /// factories; only an unusable data directory or store is fatal.
    pub async fn load(
        config: ServeConfig,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Self, String> {
        if config.database_url.is_some() {
            // Every host of one database must hash codes and accept keys alike, and the
            // code-hash key must never sit in the database beside the hashes.
            if config.code_hash_key_file.is_none() {
                return Err("with --database-url, pass --code-hash-key-file: the same key file on every host (a key in the database would let a dump brute-force the codes)".to_owned());
            }
            if config.secrets_key_file.is_none() {
                return Err("with --database-url, pass --secrets-key-file: the same key file on every host (it seals the saved configs and must never be in the database)".to_owned());
            }
            if config.admin_keys.is_empty() {
                return Err("with --database-url, pass --admin-key or --admin-key-file: every host must accept the same admin key".to_owned());
            }
        }
        let database_url = config.database_url.clone();
        let prepared = tokio::task::spawn_blocking(move || PreparedHost::prepare(config))
            .await
            .map_err(|error| format!("start-up failed: {error}"))??;
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
        let (store, shared_store): (Arc<dyn Store>, Option<PostgresStore>) =
            match (database_url, sqlite_store, secrets_keyring) {
                (Some(url), _, Some(keyring)) => {
                    let postgres = PostgresStore::connect_with_password(
                        &url,
                        database_password.as_deref(),
                        keyring,
                    )
                    .await
                    .map_err(|error| format!("cannot use the database: {error}"))?;
                    (Arc::new(postgres.clone()), Some(postgres))
                }
                (None, Some(sqlite), _) => (Arc::new(sqlite), None),
                _ => return Err("no store was opened".to_owned()),
            };
        let sealing = store
            .prepare_sealing()
            .await
            .map_err(|error| format!("cannot use the store: {error}"))?;
        if sealing.sealed_from_clear > 0 {
            tracing::info!(configs = sealing.sealed_from_clear, key_id = %sealing.key_id, "sealed saved configs that were stored in clear");
        }
        // Codes issued here must verify on every host of the store, and theirs here.
        let code_hash_key_file = config
            .code_hash_key_file
            .clone()
            .unwrap_or_else(|| config.data_dir.join(CODE_HASH_KEY_FILE));
        let code_hasher = CodeHasher::parse(&code_hash_key).map_err(|problem| {
            format!(
                "the code-hash key file {} is not usable: {problem}",
                code_hash_key_file.display()
            )
        })?;
        crate::store::code_hash_keys::prepare_code_hash_keys(
            store.as_ref(),
            &code_hasher,
            &code_hash_key_file,
        )
        .await?;
        let (generation, live_record) = match &shared_store {
            Some(postgres) => {
                let snapshot = postgres
                    .live_snapshot()
                    .await
                    .map_err(|error| format!("cannot read the live connector: {error}"))?;
                (snapshot.generation, snapshot.live)
            }
            None => (
                0,
                match store.live().await {
                    Ok(record) => record.map(Ok),
                    Err(StoreError::ConfigUnreadable(unreadable)) => Some(Err(unreadable)),
                    Err(error) => return Err(format!("cannot read the live connector: {error}")),
                },
            ),
        };
        // A live connector whose config this host cannot open is kept as such: reported, and
        // never used to send.
        let live = live_record.map(|record| {
            let live = match record {
                Ok(record) => LiveConnector::build(&record.id, &record.factory_id, &record.config, &registry),
                Err(unreadable) => LiveConnector::config_unreadable(&unreadable),
            };
            tracing::info!(connector_id = %live.connector_id, factory_id = %live.factory_id, ready = live.unavailable_reason().is_none(), "live connector restored");
            Arc::new(live)
        });
        let send_limiter = match &shared_store {
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
        })?;
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
        Ok(Self {
            request_admission: crate::http::RequestAdmission::new(&config.http_limits),
            vendor_concurrency: crate::send::vendor_concurrency::VendorConcurrency::new(
                config.http_limits.max_vendor_concurrency,
            ),
            code_hasher,
            send_limiter,
            admin_test_budget: Default::default(),
            shared_store,
            served_generation: std::sync::atomic::AtomicI64::new(generation),
            metrics,
            data_directory_lock,
            api_keys: ApiKeys::new(&admin_keys, &config.send_keys),
            config,
            loader,
            plugin_folder: std::sync::Mutex::new(plugin_folder),
            factories: ArcSwap::from_pointee(registry),
            store,
            live: ArcSwapOption::new(live),
            connector_changes: tokio::sync::Mutex::new(()),
            send_executor,
        })
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
    fn prepare(config: ServeConfig) -> Result<Self, String> {
        let data_dir_error = |error: std::io::Error| {
            format!(
                "cannot use the data directory {}: {error}",
                config.data_dir.display()
            )
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
        .with_trusted_keys(trusted_plugin_keys);
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
            let store = SqliteStore::open(&store_path, secrets_keyring).map_err(|error| {
                format!("cannot open the store {}: {error}", store_path.display())
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

/// The password in `--database-password-file`: the whole file but its final line break.
/// The password in `--database-password-file` (checked and made private first), without its
/// final newline.
pub fn read_database_password(path: &std::path::Path) -> Result<String, String> {
    crate::data_directory::secure_key_file(path)?;
    let text = std::fs::read_to_string(path).map_err(|error| {
        format!(
            "cannot read --database-password-file {}: {error}",
            path.display()
        )
    })?;
    let password = text
        .strip_suffix('\n')
        .map(|rest| rest.strip_suffix('\r').unwrap_or(rest))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(format!(
            "--database-password-file {} is empty",
            path.display()
        ));
    }
    Ok(password.to_owned())
}

/// The keyring that seals saved configs: the file given to every host of one database, or the
/// data directory's own, created with a new key on first start.
pub fn load_secrets_keyring(config: &ServeConfig) -> Result<SecretsKeyring, String> {
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
