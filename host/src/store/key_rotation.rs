//! `connector-host rotate-secrets-key`: every saved config sealed again under a new key.
//!
//! The order makes every interruption recoverable, and nothing saved is ever lost:
//! 1. the key file gets a new key in front, the old one kept behind it (written durably);
//! 2. one transaction reseals every config under the new key and records its id;
//! 3. the key file keeps only the new key.
//!
//! Stopped after 1, the store still opens with the file (it holds the old key) and a host
//! refuses to start with "a key rotation was interrupted"; stopped after 2, hosts start and
//! open everything. Either way, running the command again finishes: a key file that holds more
//! than one key is a rotation under way, and no new key is drawn.

use std::path::PathBuf;

use super::code_hash_keys::CodeHashKeyError;
use super::postgres::PostgresStore;
use super::secrets_keyring::{KeyringFileError, SecretsKeyring};
use super::sqlite::SqliteStore;
use super::{ConnectorStore, StoreError};
use crate::api_keys::SharedKeyFileError;
use crate::data_directory::DataDirectoryError;

/// Why `rotate-secrets-key` or `rotate-code-hash-key` stopped; one line each, saying what to
/// do. Every step leaves what is saved readable, so running the command again finishes.
#[derive(Debug, thiserror::Error)]
pub enum KeyCommandError {
    #[error(transparent)]
    DataDirectory(#[from] DataDirectoryError),
    #[error(transparent)]
    SecretsKeyFile(#[from] KeyringFileError),
    #[error(transparent)]
    SharedKeyFile(#[from] SharedKeyFileError),
    #[error(transparent)]
    CodeHashKey(#[from] CodeHashKeyError),
    #[error("with --database-url, pass {flag}: the key file every host of the database uses")]
    DatabaseUrlWithoutKeyFile { flag: &'static str },
    #[error("there is no secrets key file at {} (the host creates it on first start); nothing to rotate", .path.display())]
    NoSecretsKeyFile { path: PathBuf },
    #[error("cannot use the database: {0}")]
    Database(StoreError),
    #[error("there is no store at {}", .path.display())]
    NoStore { path: PathBuf },
    #[error("opening the store failed: {0}")]
    OpenStoreTask(tokio::task::JoinError),
    #[error("cannot open the store: {0}")]
    OpenStore(StoreError),
    #[error("cannot use the store: {0}")]
    Store(StoreError),
    /// The key file keeps both keys, which open every config whether or not the transaction
    /// committed: nothing is lost, and a new run finishes the rotation.
    #[error("resealing the saved configs failed: {source}; {} holds the old and the new key, run this command again to finish", .key_file.display())]
    ResealFailed {
        source: StoreError,
        key_file: PathBuf,
    },
    #[error("cannot write the code-hash key file {}: {source}", .path.display())]
    WriteCodeHashKeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the code-hash key file {} issues under key {issuing}, but the rotation promoted key {promoted}: run this command with the key file the previous step wrote", .key_file.display())]
    PromotedKeyNotIssuing {
        key_file: PathBuf,
        issuing: String,
        promoted: String,
    },
    #[error("the code-hash key file {} lacks the staged key {new_key}", .key_file.display())]
    StagedKeyMissing { key_file: PathBuf, new_key: String },
    #[error("cannot draw a new key from the OS: {0}")]
    NewKey(std::io::Error),
}

/// Where the store and its key file are.
#[derive(Debug, Clone)]
pub struct RotationTarget {
    pub data_dir: PathBuf,
    /// PostgreSQL; `None`: the data directory's SQLite store.
    pub database_url: Option<String>,
    /// From `--database-password-file`, when the URL holds none.
    pub database_password: Option<String>,
    /// `None`: `<data>/secrets-key` (SQLite only).
    pub secrets_key_file: Option<PathBuf>,
}

/// What a rotation did, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationSummary {
    pub key_file: PathBuf,
    pub previous_key_ids: Vec<String>,
    pub new_key_id: String,
    /// The key file already held a new key: an interrupted rotation was finished.
    pub finished_interrupted_rotation: bool,
    pub resealed_configs: usize,
}

pub async fn rotate_secrets_key(
    target: RotationTarget,
) -> Result<RotationSummary, KeyCommandError> {
    // With the embedded store, no host may run on the directory meanwhile: it holds the old
    // keyring in memory. (With PostgreSQL, running hosts fail closed on their next connector
    // change until they restart with the new key file; their sends go on.)
    let _data_directory_lock = match target.database_url {
        None => Some(crate::data_directory::lock(
            &target.data_dir,
            "rotate the secrets key",
        )?),
        Some(_) => None,
    };
    let key_file = match (&target.secrets_key_file, &target.database_url) {
        (Some(path), _) => path.clone(),
        (None, None) => target
            .data_dir
            .join(crate::data_directory::SECRETS_KEY_FILE),
        (None, Some(_)) => {
            return Err(KeyCommandError::DatabaseUrlWithoutKeyFile {
                flag: "--secrets-key-file",
            })
        }
    };
    if !key_file.exists() {
        return Err(KeyCommandError::NoSecretsKeyFile { path: key_file });
    }
    let current = SecretsKeyring::read_file(&key_file, target.secrets_key_file.is_some())?;
    let finished_interrupted_rotation = current.key_ids().len() > 1;
    let rotating = if finished_interrupted_rotation {
        current
    } else {
        let rotating = current.with_new_sealing_key()?;
        rotating.write_file(&key_file)?;
        rotating
    };
    let new_key_id = rotating.sealing_key_id().to_owned();
    let previous_key_ids = rotating
        .key_ids()
        .into_iter()
        .skip(1)
        .map(str::to_owned)
        .collect();
    let finished = rotating.sealing_key_only();
    let store = open_store_for_command(
        &target.data_dir,
        target.database_url.as_deref(),
        target.database_password.as_deref(),
        rotating,
    )
    .await?;
    let report =
        store
            .reseal_all_configs()
            .await
            .map_err(|source| KeyCommandError::ResealFailed {
                source,
                key_file: key_file.clone(),
            })?;
    finished.write_file(&key_file)?;
    Ok(RotationSummary {
        key_file,
        previous_key_ids,
        new_key_id,
        finished_interrupted_rotation,
        resealed_configs: report.rewritten(),
    })
}

/// The store a key command works on: the database at `database_url`, else the data
/// directory's SQLite store, which must exist already (a command never creates one).
pub(super) async fn open_store_for_command(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
    database_password: Option<&str>,
    keyring: SecretsKeyring,
) -> Result<Box<dyn ConnectorStore>, KeyCommandError> {
    match database_url {
        Some(url) => Ok(Box::new(
            PostgresStore::connect_with_password(url, database_password, keyring)
                .await
                .map_err(KeyCommandError::Database)?,
        )),
        None => {
            let store_path = data_dir.join("connectors.sqlite3");
            if !store_path.exists() {
                return Err(KeyCommandError::NoStore { path: store_path });
            }
            let store =
                tokio::task::spawn_blocking(move || SqliteStore::open(&store_path, keyring))
                    .await
                    .map_err(KeyCommandError::OpenStoreTask)?
                    .map_err(KeyCommandError::OpenStore)?;
            Ok(Box::new(store))
        }
    }
}
