//! `connector-host rotate-code-hash-key`: the code-hash key replaced in three steps (stage,
//! promote, finish), one per run, that never make one host refuse another's codes. What the
//! steps are and why they are safe: [`super::code_hash_keys`].

use std::path::PathBuf;

use super::code_hash_keys::{
    check_code_hash_keys, parse_code_hash_keys, KEY_IDS_SETTING, ROTATION_SETTING,
};
use super::key_rotation::{open_store_for_command, KeyCommandError};
use super::secrets_keyring::SecretsKeyring;
use crate::verification_code::CodeHasher;

/// Where the store and the key file are.
#[derive(Debug, Clone)]
pub struct CodeHashRotationTarget {
    pub data_dir: PathBuf,
    /// PostgreSQL; `None`: the data directory's SQLite store.
    pub database_url: Option<String>,
    /// From `--database-password-file`, when the URL holds none.
    pub database_password: Option<String>,
    /// `None`: `<data>/code-hash-key` (SQLite only).
    pub code_hash_key_file: Option<PathBuf>,
}

/// What one run of the command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeHashRotationStep {
    /// A new key is behind the old one: it verifies, it does not issue yet.
    Staged { new_key: String },
    /// The new key issues; the old one still verifies.
    Promoted { new_key: String },
    /// Only the new key is left.
    Finished { dropped: Vec<String> },
}

pub async fn rotate_code_hash_key(
    target: CodeHashRotationTarget,
) -> Result<(CodeHashRotationStep, PathBuf), KeyCommandError> {
    // With the embedded store, no host may run on the directory meanwhile.
    let _data_directory_lock = match target.database_url {
        None => Some(crate::data_directory::lock(
            &target.data_dir,
            "rotate the code-hash key",
        )?),
        Some(_) => None,
    };
    let key_file = match (&target.code_hash_key_file, &target.database_url) {
        (Some(path), _) => path.clone(),
        (None, None) => target
            .data_dir
            .join(crate::data_directory::CODE_HASH_KEY_FILE),
        (None, Some(_)) => {
            return Err(KeyCommandError::DatabaseUrlWithoutKeyFile {
                flag: "--code-hash-key-file",
            })
        }
    };
    let text = crate::api_keys::read_shared_secret_file(&key_file)?;
    let hasher = parse_code_hash_keys(&text, &key_file)?;
    // This command reads and writes settings only, never a saved config: the stores need a
    // keyring to open, and a throwaway one opens nothing.
    let no_configs = SecretsKeyring::generate()?;
    let store = open_store_for_command(
        &target.data_dir,
        target.database_url.as_deref(),
        target.database_password.as_deref(),
        no_configs,
    )
    .await?;
    let failed = KeyCommandError::Store;
    let held = hasher.fingerprints();
    let recorded = store
        .record_setting_once(KEY_IDS_SETTING, &held[0])
        .await
        .map_err(failed)?;
    let recorded_ids: Vec<String> = recorded.split(',').map(str::to_owned).collect();
    let rotation = store.read_setting(ROTATION_SETTING).await.map_err(failed)?;
    let write_key_file = |next: &CodeHasher| {
        super::secrets_keyring::write_private_file(&key_file, next.file_text().as_bytes()).map_err(
            |source| KeyCommandError::WriteCodeHashKeyFile {
                path: key_file.clone(),
                source,
            },
        )
    };
    let step = match rotation.as_deref() {
        Some("promoted") => {
            // The key the previous step promoted must be the file's first: finishing with
            // another file would drop the key the hosts issue with.
            let promoted = recorded_ids.last().cloned().unwrap_or_default();
            if held[0] != promoted {
                return Err(KeyCommandError::PromotedKeyNotIssuing {
                    key_file: key_file.clone(),
                    issuing: held[0].clone(),
                    promoted,
                });
            }
            // The file may hold only the new key already (an interrupted finish): no other
            // check.
            let kept = vec![held[0].clone()];
            write_key_file(&hasher.keeping(&kept))?;
            store
                .write_settings(vec![
                    (KEY_IDS_SETTING, Some(held[0].clone())),
                    (ROTATION_SETTING, None),
                ])
                .await
                .map_err(failed)?;
            CodeHashRotationStep::Finished {
                dropped: recorded_ids
                    .into_iter()
                    .filter(|id| *id != held[0])
                    .collect(),
            }
        }
        Some("staged") => {
            check_code_hash_keys(&recorded, &hasher, &key_file)?;
            let new_key = recorded_ids.last().cloned().unwrap_or_default();
            let promoted =
                hasher
                    .with_issuing(&new_key)
                    .ok_or_else(|| KeyCommandError::StagedKeyMissing {
                        key_file: key_file.clone(),
                        new_key: new_key.clone(),
                    })?;
            write_key_file(&promoted)?;
            store
                .write_settings(vec![(ROTATION_SETTING, Some("promoted".to_owned()))])
                .await
                .map_err(failed)?;
            CodeHashRotationStep::Promoted { new_key }
        }
        _ => {
            check_code_hash_keys(&recorded, &hasher, &key_file)?;
            // Keys behind the recorded ones: a stage that wrote the file and was interrupted
            // before recording them; they are the new key.
            let staged = if held.len() > recorded_ids.len() {
                hasher
            } else {
                let staged = hasher
                    .keeping(&recorded_ids)
                    .with_new_key_behind()
                    .map_err(KeyCommandError::NewKey)?;
                write_key_file(&staged)?;
                staged
            };
            let ids = staged.fingerprints();
            store
                .write_settings(vec![
                    (KEY_IDS_SETTING, Some(ids.join(","))),
                    (ROTATION_SETTING, Some("staged".to_owned())),
                ])
                .await
                .map_err(failed)?;
            CodeHashRotationStep::Staged {
                new_key: ids.last().cloned().unwrap_or_default(),
            }
        }
    };
    Ok((step, key_file))
}
