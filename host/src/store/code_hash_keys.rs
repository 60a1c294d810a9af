//! The code-hash keys a store's hosts share: the store records their fingerprints (never a
//! key), so a host started with another key file refuses to start instead of issuing codes
//! the other hosts refuse with `code_mismatch`; and `connector-host rotate-code-hash-key`
//! replaces the key in three steps that never make one host refuse another's codes.
//!
//! The key file holds one key per line: the first issues codes, every key verifies them
//! (`verification_code::CodeHasher`). The store records the fingerprints a host must hold
//! (`code_hash_key_ids`, file order) and, during a rotation, its step
//! (`code_hash_key_rotation`). A host starts when its issuing key is recorded and it holds
//! every recorded key. The rotation, one step per run of the command, each followed by
//! copying the key file to every host and restarting them one by one:
//! 1. stage: a new key is added *behind* the old one (it verifies, it does not issue) and
//!    recorded; hosts with the old file and with the new one issue under the old key and
//!    both verify it.
//! 2. promote: the new key moves in front (it issues); every host already holds it since
//!    step 1, so codes issued by a promoted host verify on the others, and the other way round.
//! 3. finish (once the code TTL has passed since the last host was promoted): the old key is
//!    dropped from the file and from the record; codes issued under it have expired.
//!
//! Each step writes the key file before the record, so an interrupted step is finished by
//! running the command again, and no key is lost.

use std::path::{Path, PathBuf};

use super::{ConnectorStore, StoreError};
use crate::verification_code::{CodeHashKeysParseError, CodeHasher};

/// The fingerprints every host must hold, comma-separated, the issuing key's first.
pub const KEY_IDS_SETTING: &str = "code_hash_key_ids";
/// `staged` or `promoted` while a rotation is under way.
pub const ROTATION_SETTING: &str = "code_hash_key_rotation";

/// Why this host's code-hash keys cannot be used with the store; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CodeHashKeyError {
    #[error("the code-hash key file {} is not usable: {problem}", .key_file.display())]
    NotUsable {
        key_file: PathBuf,
        problem: CodeHashKeysParseError,
    },
    #[error("cannot read the recorded code-hash keys: {0}")]
    RecordUnreadable(StoreError),
    #[error("the code-hash key file {} issues codes under key {issuing}, but this database's codes are hashed under code-hash key {recorded}: start every host with the same code-hash key file (to change the key, use `connector-host rotate-code-hash-key`)", .key_file.display())]
    IssuingKeyNotRecorded {
        key_file: PathBuf,
        issuing: String,
        /// The recorded fingerprints, comma-separated.
        recorded: String,
    },
    #[error("the code-hash key file {} lacks code-hash key {missing}, which this database's codes may be hashed under (a key rotation is under way): copy the key file from where `connector-host rotate-code-hash-key` last ran, or run it again if it was interrupted", .key_file.display())]
    RecordedKeyMissing {
        key_file: PathBuf,
        /// The fingerprints the file lacks, comma-separated.
        missing: String,
    },
}

/// Parses a code-hash key file's text; the error names the file.
pub fn parse_code_hash_keys(text: &str, key_file: &Path) -> Result<CodeHasher, CodeHashKeyError> {
    CodeHasher::parse(text).map_err(|problem| CodeHashKeyError::NotUsable {
        key_file: key_file.to_owned(),
        problem,
    })
}

/// Start-up: records this host's fingerprints when the store has none yet (the first host),
/// then checks them against the record. The error is one line that says what to do.
pub async fn prepare_code_hash_keys(
    store: &(impl ConnectorStore + ?Sized),
    hasher: &CodeHasher,
    key_file: &Path,
) -> Result<(), CodeHashKeyError> {
    let recorded = store
        .record_setting_once(KEY_IDS_SETTING, &hasher.fingerprints().join(","))
        .await
        .map_err(CodeHashKeyError::RecordUnreadable)?;
    check_code_hash_keys(&recorded, hasher, key_file)
}

/// A host may start when its issuing key is a recorded one (the others verify its codes) and
/// it holds every recorded key (it verifies theirs).
pub fn check_code_hash_keys(
    recorded: &str,
    hasher: &CodeHasher,
    key_file: &Path,
) -> Result<(), CodeHashKeyError> {
    let recorded: Vec<&str> = recorded.split(',').filter(|id| !id.is_empty()).collect();
    let held = hasher.fingerprints();
    let issuing = &held[0];
    if !recorded.contains(&issuing.as_str()) {
        return Err(CodeHashKeyError::IssuingKeyNotRecorded {
            key_file: key_file.to_owned(),
            issuing: issuing.clone(),
            recorded: recorded.join(", "),
        });
    }
    let missing: Vec<&str> = recorded
        .iter()
        .copied()
        .filter(|id| !held.iter().any(|held| held == id))
        .collect();
    if !missing.is_empty() {
        return Err(CodeHashKeyError::RecordedKeyMissing {
            key_file: key_file.to_owned(),
            missing: missing.join(", "),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_starts_only_with_the_recorded_keys_and_every_step_of_a_rotation_accepts_the_others() {
        let file = Path::new("/keys/code-hash-key");
        let old = CodeHasher::parse("old-key-of-at-least-32-characters-0000\n").unwrap();
        let stranger = CodeHasher::parse("another-key-of-at-least-32-characters-00\n").unwrap();
        let recorded = old.fingerprints().join(",");
        assert!(check_code_hash_keys(&recorded, &old, file).is_ok());
        let refused = check_code_hash_keys(&recorded, &stranger, file)
            .unwrap_err()
            .to_string();
        assert!(refused.contains(&old.fingerprints()[0]), "{refused}");
        assert!(!refused.contains('\n'));

        // Step 1: the staged file records both keys; hosts with either file issue under the
        // old key, which both hold.
        let staged = old.with_new_key_behind().unwrap();
        let new_key = staged.fingerprints()[1].clone();
        let recorded = staged.fingerprints().join(",");
        assert!(check_code_hash_keys(&recorded, &staged, file).is_ok());
        // A host restarted with the old file would lack the new key it is about to see.
        assert!(check_code_hash_keys(&recorded, &old, file)
            .unwrap_err()
            .to_string()
            .contains("lacks"));
        // Step 2: the promoted file issues under the new key; staged hosts verify it.
        let promoted = staged.with_issuing(&new_key).unwrap();
        assert!(check_code_hash_keys(&recorded, &promoted, file).is_ok());
        let code_of_promoted = promoted.hash("+1", plugin_api::TemplateType::SignIn, "123456");
        assert!(staged
            .hashes("+1", plugin_api::TemplateType::SignIn, "123456")
            .contains(&code_of_promoted));
        let code_of_staged = staged.hash("+1", plugin_api::TemplateType::SignIn, "123456");
        assert!(promoted
            .hashes("+1", plugin_api::TemplateType::SignIn, "123456")
            .contains(&code_of_staged));
        // Step 3: only the new key; a host with the staged file (old key in front) is refused.
        let finished = promoted.keeping(std::slice::from_ref(&new_key));
        assert!(check_code_hash_keys(&new_key, &finished, file).is_ok());
        assert!(check_code_hash_keys(&new_key, &promoted, file).is_ok());
        assert!(check_code_hash_keys(&new_key, &staged, file).is_err());
    }
}
