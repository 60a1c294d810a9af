//! Saved configs sealed at rest.
//!
//! Connector configs hold provider credentials (auth tokens, API secrets), so the store never
//! holds them in clear: each config is sealed whole with XChaCha20-Poly1305 under the host's
//! secrets key, with the connector id as associated data. The database alone (a dump, a
//! backup, the WAL) reveals no secret; and because a config is one sealed value, whoever can
//! write the database but lacks the key can neither read a secret nor move it: pointing a
//! saved secret at a new endpoint, or pasting one connector's sealed config into another row,
//! fails to open.
//!
//! The key lives in a file, never in the database: `<data>/secrets-key` (0600, created on
//! first start) or, with PostgreSQL, a file given to every host (`--secrets-key-file`). The
//! file is a keyring, one key per line: the first key seals, every key opens (a sealed value
//! names its key by id). The database records the id of the key its configs are sealed under,
//! so a host started with another key file, or one left behind by a rotation, refuses to start
//! or to write instead of sealing configs nobody else can open. `connector-host
//! rotate-secrets-key` adds a key in front, reseals every config in one transaction, then drops
//! the old key; interrupted at any point, running it again finishes the job.
//!
//! A sealed value: `sealed2:<key id: 16 hex digits>:<base64 of nonce (24 bytes) + ciphertext>`,
//! bound (associated data) to the connector id and the factory id: moved to another row, or
//! with its row's factory id changed, it does not open. `sealed1:` values (connector id
//! only, written by older versions) still open and are sealed as `sealed2` on the next write.
//!
//! Once the store records its sealing key, a config stored in clear is refused, never sealed:
//! only a host with the key writes configs, so a clear one was written by something else (a
//! database writer redirecting codes). Configs in clear are sealed only on the first start
//! of a database that never recorded a key (one from before sealing existed).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::StoreError;

/// The format hosts seal with: bound to the connector id and the factory id.
const SEALED_PREFIX: &str = "sealed2:";
/// The first format, bound to the connector id only: still opened (configs saved by an older
/// version, or by an older host during a rolling upgrade), sealed again as `sealed2` on the
/// next write of the connector or by `rotate-secrets-key`.
const SEALED_V1_PREFIX: &str = "sealed1:";
const NONCE_BYTES: usize = 24;
const KEY_BYTES: usize = 32;
/// Bind a sealed config to its format version and to what it belongs to.
const ASSOCIATED_DATA_V1_PREFIX: &[u8] = b"connector-host sealed config v1\0";
const ASSOCIATED_DATA_V2_PREFIX: &[u8] = b"connector-host sealed config v2\0";

const KEYRING_FILE_HEADER: &str = "\
# connector-host secrets keyring: the first key seals saved connector configs, every key opens them.
# Keep this file readable by the host only (0600) and back it up apart from the database:
# without it the saved configs cannot be read. Rotate with `connector-host rotate-secrets-key`.
";

/// Why a secrets key file cannot be read, written or created; one line each, never quoting a
/// key.
#[derive(Debug, thiserror::Error)]
pub enum KeyringFileError {
    #[error("cannot draw a secrets key from the OS: {0}")]
    Random(getrandom::Error),
    #[error("cannot read the secrets key file {}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `access`: "writable" or "readable".
    #[error("the secrets key file {} is {access} by group or others (mode {mode:o}); chmod 600 it", .path.display())]
    NotPrivate {
        path: PathBuf,
        access: &'static str,
        mode: u32,
    },
    #[error("the secrets key file {} is not a keyring: {problem}", .path.display())]
    NotAKeyring {
        path: PathBuf,
        problem: KeyringParseError,
    },
    #[error("cannot write the secrets key file {}: {source}", .path.display())]
    Unwritable {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What is wrong with a keyring file's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringParseError {
    #[error("line {line} is not a key (a key is {} hex digits)", KEY_BYTES * 2)]
    NotAKey { line: usize },
    #[error("line {line} repeats a key")]
    RepeatedKey { line: usize },
    #[error("it holds no key")]
    NoKey,
}

/// One key: its id (public: it is written beside every sealed value) and its cipher.
struct SecretsKey {
    id: String,
    bytes: Zeroizing<[u8; KEY_BYTES]>,
    cipher: XChaCha20Poly1305,
}

impl SecretsKey {
    fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        let bytes = Zeroizing::new(bytes);
        // The id is a hash of the key, not the key: naming a key must not weaken it.
        let digest = Sha256::new()
            .chain_update(b"connector-host secrets key id\0")
            .chain_update(bytes.as_slice())
            .finalize();
        Self {
            id: hex::encode(&digest[..8]),
            cipher: XChaCha20Poly1305::new(bytes.as_slice().into()),
            bytes,
        }
    }

    fn generate() -> Result<Self, KeyringFileError> {
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::fill(&mut bytes).map_err(KeyringFileError::Random)?;
        Ok(Self::from_bytes(bytes))
    }
}

/// The keys a host seals and opens saved configs with. Never printed: `Debug` shows ids only.
pub struct SecretsKeyring {
    /// Never empty; the first key seals.
    keys: Vec<SecretsKey>,
}

impl std::fmt::Debug for SecretsKeyring {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SecretsKeyring")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

impl SecretsKeyring {
    /// A keyring of one new random key.
    pub fn generate() -> Result<Self, KeyringFileError> {
        Ok(Self {
            keys: vec![SecretsKey::generate()?],
        })
    }

    /// The id of the key that seals.
    pub fn sealing_key_id(&self) -> &str {
        &self.keys[0].id
    }

    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|key| key.id.as_str()).collect()
    }

    pub fn holds(&self, key_id: &str) -> bool {
        self.keys.iter().any(|key| key.id == key_id)
    }

    /// This keyring with a new random key in front (it seals from now on).
    pub fn with_new_sealing_key(&self) -> Result<Self, KeyringFileError> {
        let mut keys = vec![SecretsKey::generate()?];
        keys.extend(
            self.keys
                .iter()
                .map(|key| SecretsKey::from_bytes(*key.bytes)),
        );
        Ok(Self { keys })
    }

    /// Only the key that seals.
    pub fn sealing_key_only(&self) -> Self {
        Self {
            keys: vec![SecretsKey::from_bytes(*self.keys[0].bytes)],
        }
    }

    /// Parses a keyring file's text: `#` comments, blank lines, one key per line (64 hex
    /// digits). Errors are one line and never quote a key.
    pub fn parse(text: &str) -> Result<Self, KeyringParseError> {
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
            hex::decode_to_slice(line, bytes.as_mut_slice())
                .map_err(|_| KeyringParseError::NotAKey { line: index + 1 })?;
            let key = SecretsKey::from_bytes(*bytes);
            if keys.iter().any(|held: &SecretsKey| held.id == key.id) {
                return Err(KeyringParseError::RepeatedKey { line: index + 1 });
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(KeyringParseError::NoKey);
        }
        Ok(Self { keys })
    }

    fn file_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(KEYRING_FILE_HEADER.to_owned());
        for key in &self.keys {
            text.push_str(&hex::encode(key.bytes.as_slice()));
            text.push('\n');
        }
        text
    }

    /// Reads a keyring file. One that group or others can write is refused (whoever writes
    /// the key chooses it); one they can read is refused too when `refuse_readable` (a file an
    /// operator gives every host), else a warning (the data directory's own file).
    pub fn read_file(path: &Path, refuse_readable: bool) -> Result<Self, KeyringFileError> {
        let unreadable = |source: std::io::Error| KeyringFileError::Unreadable {
            path: path.to_owned(),
            source,
        };
        let mode = std::fs::metadata(path)
            .map_err(unreadable)?
            .permissions()
            .mode();
        if mode & 0o022 != 0 || (refuse_readable && mode & 0o044 != 0) {
            return Err(KeyringFileError::NotPrivate {
                path: path.to_owned(),
                access: if mode & 0o022 != 0 {
                    "writable"
                } else {
                    "readable"
                },
                mode: mode & 0o777,
            });
        }
        if mode & 0o044 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the secrets key file is readable by others; chmod 600 it");
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(unreadable)?);
        Self::parse(&text).map_err(|problem| KeyringFileError::NotAKeyring {
            path: path.to_owned(),
            problem,
        })
    }

    /// Reads the data directory's keyring, or creates it with a new key; `true` when created.
    pub fn read_or_create_file(path: &Path) -> Result<(Self, bool), KeyringFileError> {
        if path.exists() {
            return Self::read_file(path, false).map(|keyring| (keyring, false));
        }
        let keyring = Self::generate()?;
        keyring.write_file(path)?;
        tracing::info!(path = %path.display(), key_id = keyring.sealing_key_id(), "created the secrets key that seals saved configs; back it up");
        Ok((keyring, true))
    }

    /// Replaces the file durably: a private temp file, fsync, rename over, fsync the folder. A
    /// crash leaves the old keyring or the new one, never a torn one.
    pub fn write_file(&self, path: &Path) -> Result<(), KeyringFileError> {
        write_private_file(path, self.file_text().as_bytes()).map_err(|source| {
            KeyringFileError::Unwritable {
                path: path.to_owned(),
                source,
            }
        })
    }

    /// Seals a config under the first key, bound to its connector's id and factory id.
    pub fn seal(
        &self,
        connector_id: &str,
        factory_id: &str,
        config: &serde_json::Value,
    ) -> Result<String, StoreError> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|error| {
            StoreError::Failed(format!("cannot draw a nonce from the OS: {error}"))
        })?;
        let plaintext = Zeroizing::new(config.to_string().into_bytes());
        let associated_data = associated_data_v2(connector_id, factory_id);
        let ciphertext = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: &associated_data,
                },
            )
            .map_err(|_| StoreError::Failed("sealing a config failed".to_owned()))?;
        let mut sealed_bytes = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        sealed_bytes.extend_from_slice(&nonce);
        sealed_bytes.extend_from_slice(&ciphertext);
        Ok(format!(
            "{SEALED_PREFIX}{}:{}",
            key.id,
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(sealed_bytes)
        ))
    }

    /// Opens a config sealed by [`Self::seal`] for this connector and factory (or, in the
    /// first format, for this connector). A config in clear, one sealed under a key this
    /// keyring lacks, or one changed or moved in any way is [`StoreError::ConfigUnreadable`],
    /// naming the connector.
    pub fn open(
        &self,
        connector_id: &str,
        factory_id: &str,
        stored: &str,
    ) -> Result<serde_json::Value, StoreError> {
        let unreadable = |key_not_held: bool, why: String| {
            StoreError::ConfigUnreadable(UnreadableConfig {
                connector_id: connector_id.to_owned(),
                factory_id: factory_id.to_owned(),
                key_not_held,
                reason: format!("the saved config of connector {connector_id:?} {why}"),
            })
        };
        let (associated_data, rest) = if let Some(rest) = stored.strip_prefix(SEALED_PREFIX) {
            (associated_data_v2(connector_id, factory_id), rest)
        } else if let Some(rest) = stored.strip_prefix(SEALED_V1_PREFIX) {
            (associated_data_v1(connector_id), rest)
        } else {
            return Err(unreadable(
                false,
                format!("is not sealed: {NOT_SEALED_ADVICE}"),
            ));
        };
        let Some((key_id, encoded)) = rest.split_once(':') else {
            return Err(unreadable(false, "is damaged (no key id)".to_owned()));
        };
        let Some(key) = self.keys.iter().find(|key| key.id == key_id) else {
            // A host left behind by a key rotation: it serves again once it restarts with
            // the new key file.
            return Err(unreadable(true, format!(
                "is sealed under secrets key {key_id}, which this host's key file does not hold (start every host with the same secrets key file: after a rotation, copy the new one here and restart)"
            )));
        };
        let sealed_bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(encoded)
            .map_err(|_| unreadable(false, "is damaged (not base64)".to_owned()))?;
        if sealed_bytes.len() < NONCE_BYTES {
            return Err(unreadable(false, "is damaged (too short)".to_owned()));
        }
        let (nonce, ciphertext) = sealed_bytes.split_at(NONCE_BYTES);
        let plaintext = Zeroizing::new(
            key.cipher
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &associated_data,
                    },
                )
                .map_err(|_| unreadable(false, "does not open with its key (it was altered, or belongs to another connector or factory)".to_owned()))?,
        );
        Ok(serde_json::from_slice(&plaintext)?)
    }
}

/// What to do about a config in clear once the store records a key.
const NOT_SEALED_ADVICE: &str = "written to the database by something other than a host (hosts seal every config they save); it is not used: delete the connector and create it again through the API, or restore the row from a backup";

/// A saved config this host cannot open: the connector is not used (never a config it did not
/// seal, never a stale one), and the reason is one line naming the connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableConfig {
    pub connector_id: String,
    pub factory_id: String,
    /// Sealed under a key this host's key file lacks (a rotation it was left out of).
    pub key_not_held: bool,
    pub reason: String,
}

/// Replaces a key file durably: a private (0600) temp file, fsync, rename over, fsync the
/// folder. A crash leaves the old file or the new one, never a torn one.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".to_owned());
    let temporary = folder.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        std::fs::File::open(folder)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Whether a stored config is sealed (in either format), as opposed to plain JSON.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX) || stored.starts_with(SEALED_V1_PREFIX)
}

fn associated_data_v1(connector_id: &str) -> Vec<u8> {
    let mut data = ASSOCIATED_DATA_V1_PREFIX.to_vec();
    data.extend_from_slice(connector_id.as_bytes());
    data
}

/// Each part length-prefixed, so no two (connector id, factory id) pairs give the same bytes.
fn associated_data_v2(connector_id: &str, factory_id: &str) -> Vec<u8> {
    let mut data = ASSOCIATED_DATA_V2_PREFIX.to_vec();
    for part in [connector_id, factory_id] {
        data.extend_from_slice(&(part.len() as u64).to_be_bytes());
        data.extend_from_slice(part.as_bytes());
    }
    data
}

impl SecretsKeyring {
    /// What start-up or a rotation writes back for one stored config. A config in clear is
    /// sealed only when `first_sealing` (the store never recorded a key: a database from
    /// before sealing); otherwise it is refused, left as it is (it does not open) and
    /// reported. A sealed one is opened and, when `reseal_sealed`, sealed again under the
    /// first key in the current format; one that does not open (altered, moved to another
    /// row or factory, sealed under a key the keyring lacks) is refused and reported the
    /// same way: it was unreadable before and stays so, its connector is unavailable, and
    /// the other connectors go on. `None`: the stored value stays.
    pub fn reseal_stored_config(
        &self,
        connector_id: &str,
        factory_id: &str,
        stored: &str,
        reseal_sealed: bool,
        first_sealing: bool,
        report: &mut SealingReport,
    ) -> Result<Option<String>, StoreError> {
        if !is_sealed(stored) {
            if !first_sealing {
                let refusal = format!(
                    "connector {connector_id:?}: config is not sealed: {NOT_SEALED_ADVICE}"
                );
                tracing::error!(%connector_id, %factory_id, "{refusal}");
                report.refused.push(connector_id.to_owned());
                return Ok(None);
            }
            let config: serde_json::Value = serde_json::from_str(stored)?;
            report.sealed_from_clear += 1;
            return self.seal(connector_id, factory_id, &config).map(Some);
        }
        let config = match self.open(connector_id, factory_id, stored) {
            Ok(config) => config,
            Err(StoreError::ConfigUnreadable(unreadable)) => {
                tracing::error!(%connector_id, %factory_id, "{}; the connector is not used", unreadable.reason);
                report.refused.push(connector_id.to_owned());
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        if !reseal_sealed {
            return Ok(None);
        }
        report.resealed += 1;
        self.seal(connector_id, factory_id, &config).map(Some)
    }
}

/// A saved config as a reseal reads it from a store.
#[derive(Debug, Clone)]
pub struct StoredConfig {
    pub connector_id: String,
    pub factory_id: String,
    /// The config column as stored: sealed, or in clear from before sealing.
    pub stored: String,
}

/// What a reseal writes back, in the transaction it read the configs in: each rewritten
/// config (connector id, sealed config), then the keyring's sealing key id as the recorded
/// one.
#[derive(Debug)]
pub struct ResealPlan {
    pub report: SealingReport,
    pub rewrites: Vec<(String, String)>,
}

impl SecretsKeyring {
    /// The reseal both stores run, at start-up and in a rotation (`during_rotation`): the
    /// recorded key checked against this keyring, then every config (re)sealed as
    /// [`Self::reseal_stored_config`] says (configs in clear are sealed only when no key is
    /// recorded yet). No store access: the store reads and writes around it.
    pub fn plan_reseal(
        &self,
        recorded_key_id: Option<&str>,
        during_rotation: bool,
        stored_configs: Vec<StoredConfig>,
    ) -> Result<ResealPlan, StoreError> {
        check_recorded_key(recorded_key_id, self, during_rotation)?;
        let mut report = SealingReport::new(self.sealing_key_id());
        let mut rewrites = Vec::new();
        for config in stored_configs {
            let rewritten = self.reseal_stored_config(
                &config.connector_id,
                &config.factory_id,
                &config.stored,
                during_rotation,
                recorded_key_id.is_none(),
                &mut report,
            )?;
            if let Some(sealed) = rewritten {
                rewrites.push((config.connector_id, sealed));
            }
        }
        Ok(ResealPlan { report, rewrites })
    }
}

/// What a store's start-up check or a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealingReport {
    /// The key the configs are sealed under now.
    pub key_id: String,
    /// Configs found in clear (saved before sealing existed) and sealed.
    pub sealed_from_clear: usize,
    /// Sealed configs sealed again under the first key (a rotation).
    pub resealed: usize,
    /// Connectors whose config is in clear although the store records a key, or does not
    /// open: refused (left as stored, never used).
    pub refused: Vec<String>,
}

impl SealingReport {
    pub fn new(key_id: &str) -> Self {
        Self {
            key_id: key_id.to_owned(),
            sealed_from_clear: 0,
            resealed: 0,
            refused: Vec::new(),
        }
    }

    pub fn rewritten(&self) -> usize {
        self.sealed_from_clear + self.resealed
    }
}

/// Why the host's keyring does not fit the store's recorded sealing key; each says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordedKeyMismatch {
    #[error("the saved configs are sealed under secrets key {recorded}, but the key file's first key is {sealing}: a key rotation was interrupted; run `connector-host rotate-secrets-key` again to finish it")]
    RotationInterrupted { recorded: String, sealing: String },
    #[error("the saved configs are sealed under secrets key {recorded}, which the secrets key file does not hold (it holds {held}): restore the key file this store was used with, or, after a rotation elsewhere, copy the new key file here")]
    KeyNotHeld { recorded: String, held: String },
}

impl From<RecordedKeyMismatch> for StoreError {
    fn from(mismatch: RecordedKeyMismatch) -> Self {
        StoreError::Failed(mismatch.to_string())
    }
}

/// Checks a store's recorded sealing key against the host's keyring. `None` recorded: a new
/// database (or one from before sealing). At start-up the keyring's first key must be the
/// recorded one; during a rotation the keyring need only hold it. Errors are one line and say
/// what to do.
pub fn check_recorded_key(
    recorded_key_id: Option<&str>,
    keyring: &SecretsKeyring,
    during_rotation: bool,
) -> Result<(), RecordedKeyMismatch> {
    match recorded_key_id {
        None => Ok(()),
        Some(recorded) if recorded == keyring.sealing_key_id() => Ok(()),
        Some(recorded) if during_rotation && keyring.holds(recorded) => Ok(()),
        Some(recorded) if keyring.holds(recorded) => {
            Err(RecordedKeyMismatch::RotationInterrupted {
                recorded: recorded.to_owned(),
                sealing: keyring.sealing_key_id().to_owned(),
            })
        }
        Some(recorded) => Err(RecordedKeyMismatch::KeyNotHeld {
            recorded: recorded.to_owned(),
            held: keyring.key_ids().join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_sealed_config_opens_only_with_its_key_its_connector_id_and_its_factory_id() {
        let keyring = SecretsKeyring::generate().unwrap();
        let config = json!({"authToken": "twilio-secret-123", "endpoint": "https://api.example"});
        let sealed = keyring.seal("connector-a", "twilio", &config).unwrap();
        assert!(is_sealed(&sealed));
        assert!(sealed.starts_with("sealed2:"));
        assert!(!sealed.contains("twilio-secret-123"));
        assert!(!sealed.contains("api.example"));
        assert_eq!(
            keyring.open("connector-a", "twilio", &sealed).unwrap(),
            config
        );
        // Pasted into another connector's row: refused.
        let moved = keyring
            .open("connector-b", "twilio", &sealed)
            .unwrap_err()
            .to_string();
        assert!(moved.contains("belongs to another connector"), "{moved}");
        // Its row's factory id changed (the config sent to another plugin): refused.
        let refactored = keyring
            .open("connector-a", "http-sms", &sealed)
            .unwrap_err();
        assert!(
            matches!(refactored, StoreError::ConfigUnreadable(ref unreadable)
            if unreadable.connector_id == "connector-a" && !unreadable.key_not_held)
        );
        // The length prefixes keep (id, factory) pairs apart.
        assert_ne!(associated_data_v2("ab", "c"), associated_data_v2("a", "bc"));
        // Another installation's key: refused, naming the key id.
        let other = SecretsKeyring::generate().unwrap();
        let foreign = other.open("connector-a", "twilio", &sealed).unwrap_err();
        assert!(
            matches!(&foreign, StoreError::ConfigUnreadable(unreadable) if unreadable.key_not_held)
        );
        assert!(
            foreign.to_string().contains(keyring.sealing_key_id()),
            "{foreign}"
        );
        // One character changed: refused.
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(keyring.open("connector-a", "twilio", &altered).is_err());
        // Plain JSON: refused, naming the connector.
        let plain = keyring
            .open("connector-a", "twilio", &config.to_string())
            .unwrap_err()
            .to_string();
        assert!(plain.contains("\"connector-a\" is not sealed"), "{plain}");
        // Two seals of one config differ (a fresh nonce each time).
        assert_ne!(
            keyring.seal("connector-a", "twilio", &config).unwrap(),
            sealed
        );
    }

    /// A value in the first format, bound to the connector id only, as older versions sealed.
    fn seal_v1(keyring: &SecretsKeyring, connector_id: &str, config: &serde_json::Value) -> String {
        let nonce = [7u8; NONCE_BYTES];
        let ciphertext = keyring.keys[0]
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: config.to_string().as_bytes(),
                    aad: &associated_data_v1(connector_id),
                },
            )
            .unwrap();
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        format!(
            "sealed1:{}:{}",
            keyring.sealing_key_id(),
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
        )
    }

    #[test]
    fn configs_sealed_in_the_first_format_still_open_and_are_resealed_bound_to_the_factory() {
        let keyring = SecretsKeyring::generate().unwrap();
        let config = json!({"apiKey": "k"});
        let old = seal_v1(&keyring, "c", &config);
        assert!(is_sealed(&old));
        assert_eq!(keyring.open("c", "twilio", &old).unwrap(), config);
        assert!(keyring.open("d", "twilio", &old).is_err());
        let mut report = SealingReport::new(keyring.sealing_key_id());
        let resealed = keyring
            .reseal_stored_config("c", "twilio", &old, true, false, &mut report)
            .unwrap()
            .unwrap();
        assert!(resealed.starts_with("sealed2:"));
        assert_eq!(keyring.open("c", "twilio", &resealed).unwrap(), config);
        assert!(keyring.open("c", "http-sms", &resealed).is_err());
    }

    fn stored(connector_id: &str, factory_id: &str, stored: &str) -> StoredConfig {
        StoredConfig {
            connector_id: connector_id.to_owned(),
            factory_id: factory_id.to_owned(),
            stored: stored.to_owned(),
        }
    }

    /// The reseal both stores run: what it rewrites at start-up and in a rotation.
    #[test]
    fn a_reseal_plan_rewrites_what_start_up_or_a_rotation_needs_and_nothing_else() {
        let keyring = SecretsKeyring::generate().unwrap();
        let config = json!({"apiKey": "k"});
        let sealed = keyring.seal("a", "twilio", &config).unwrap();
        let plain = json!({"apiKey": "clear"}).to_string();
        // First start on a database from before sealing: the clear config is sealed, the
        // sealed one stays.
        let plan = keyring
            .plan_reseal(
                None,
                false,
                vec![
                    stored("a", "twilio", &sealed),
                    stored("b", "http-sms", &plain),
                ],
            )
            .unwrap();
        assert_eq!(plan.report.sealed_from_clear, 1);
        assert_eq!(plan.report.resealed, 0);
        assert_eq!(plan.rewrites.len(), 1);
        assert_eq!(plan.rewrites[0].0, "b");
        assert_eq!(
            keyring.open("b", "http-sms", &plan.rewrites[0].1).unwrap(),
            json!({"apiKey": "clear"})
        );
        // Later starts rewrite nothing; a clear config is refused.
        let recorded = keyring.sealing_key_id().to_owned();
        let plan = keyring
            .plan_reseal(
                Some(&recorded),
                false,
                vec![
                    stored("a", "twilio", &sealed),
                    stored("b", "http-sms", &plain),
                ],
            )
            .unwrap();
        assert!(plan.rewrites.is_empty());
        assert_eq!(plan.report.refused, vec!["b"]);
        // A rotation: every sealed config under the new key, which the old keyring lacks.
        let rotating = keyring.with_new_sealing_key().unwrap();
        let plan = rotating
            .plan_reseal(Some(&recorded), true, vec![stored("a", "twilio", &sealed)])
            .unwrap();
        assert_eq!(plan.report.resealed, 1);
        assert_eq!(plan.report.key_id, rotating.sealing_key_id());
        let resealed = &plan.rewrites[0].1;
        assert_eq!(
            rotating
                .sealing_key_only()
                .open("a", "twilio", resealed)
                .unwrap(),
            config
        );
        // Started with the rotating keyring but not rotating: the interrupted rotation stops it.
        let refused = rotating
            .plan_reseal(Some(&recorded), false, vec![stored("a", "twilio", &sealed)])
            .unwrap_err()
            .to_string();
        assert!(refused.contains("interrupted"), "{refused}");
    }

    #[test]
    fn a_config_in_clear_is_sealed_only_on_the_first_sealing() {
        let keyring = SecretsKeyring::generate().unwrap();
        let plain = json!({"endpoint": "https://attacker.example"}).to_string();
        let mut report = SealingReport::new(keyring.sealing_key_id());
        let sealed = keyring
            .reseal_stored_config("c", "http-sms", &plain, false, true, &mut report)
            .unwrap();
        assert!(sealed.is_some_and(|sealed| is_sealed(&sealed)));
        assert_eq!(report.sealed_from_clear, 1);
        // Once a key is recorded, a config in clear was written by something else: refused,
        // left as it is (it does not open), reported by connector.
        let mut report = SealingReport::new(keyring.sealing_key_id());
        for reseal_sealed in [false, true] {
            assert_eq!(
                keyring
                    .reseal_stored_config(
                        "c",
                        "http-sms",
                        &plain,
                        reseal_sealed,
                        false,
                        &mut report
                    )
                    .unwrap(),
                None
            );
        }
        assert_eq!(report.sealed_from_clear, 0);
        assert_eq!(report.refused, vec!["c", "c"]);
        // A sealed config that does not open here (moved to another factory's row): refused
        // and reported the same way, never fatal to the other connectors.
        let sealed = keyring
            .seal("c", "twilio", &json!({"apiKey": "k"}))
            .unwrap();
        let mut report = SealingReport::new(keyring.sealing_key_id());
        for reseal_sealed in [false, true] {
            assert_eq!(
                keyring
                    .reseal_stored_config(
                        "c",
                        "http-sms",
                        &sealed,
                        reseal_sealed,
                        false,
                        &mut report
                    )
                    .unwrap(),
                None
            );
        }
        assert_eq!(report.refused, vec!["c", "c"]);
        assert_eq!(report.rewritten(), 0);
    }

    #[test]
    fn a_rotated_keyring_opens_old_values_and_seals_with_the_new_key() {
        let old = SecretsKeyring::generate().unwrap();
        let sealed_before = old.seal("c", "f", &json!({"apiKey": "k"})).unwrap();
        let rotating = old.with_new_sealing_key().unwrap();
        assert_ne!(rotating.sealing_key_id(), old.sealing_key_id());
        assert!(rotating.holds(old.sealing_key_id()));
        assert_eq!(
            rotating.open("c", "f", &sealed_before).unwrap(),
            json!({"apiKey": "k"})
        );
        let sealed_after = rotating.seal("c", "f", &json!({"apiKey": "k"})).unwrap();
        assert!(sealed_after.contains(rotating.sealing_key_id()));
        let finished = rotating.sealing_key_only();
        assert_eq!(finished.key_ids(), vec![rotating.sealing_key_id()]);
        assert!(finished.open("c", "f", &sealed_before).is_err());
        assert!(finished.open("c", "f", &sealed_after).is_ok());
    }

    #[test]
    fn the_key_file_round_trips_and_bad_files_are_one_line_errors() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("secrets-key");
        let (created, was_created) = SecretsKeyring::read_or_create_file(&path).unwrap();
        assert!(was_created);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (read, was_created) = SecretsKeyring::read_or_create_file(&path).unwrap();
        assert!(!was_created);
        assert_eq!(read.key_ids(), created.key_ids());
        let rotating = created.with_new_sealing_key().unwrap();
        rotating.write_file(&path).unwrap();
        assert_eq!(
            SecretsKeyring::read_file(&path, true).unwrap().key_ids(),
            rotating.key_ids()
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(SecretsKeyring::read_file(&path, true)
            .unwrap_err()
            .to_string()
            .contains("readable by group or others"));
        assert!(SecretsKeyring::read_file(&path, false).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(SecretsKeyring::read_file(&path, false)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
        assert!(SecretsKeyring::parse("# only a comment\n")
            .unwrap_err()
            .to_string()
            .contains("no key"));
        let not_hex = SecretsKeyring::parse("zz\n").unwrap_err().to_string();
        assert!(not_hex.contains("line 1"), "{not_hex}");
        let one_key = hex::encode([7u8; 32]);
        assert!(SecretsKeyring::parse(&format!("{one_key}\n{one_key}\n"))
            .unwrap_err()
            .to_string()
            .contains("repeats"));
        assert!(!format!("{read:?}").contains(&hex::encode(read.keys[0].bytes.as_slice())));
    }

    #[test]
    fn the_recorded_key_must_be_the_sealing_key() {
        let keyring = SecretsKeyring::generate().unwrap();
        assert!(check_recorded_key(None, &keyring, false).is_ok());
        assert!(check_recorded_key(Some(keyring.sealing_key_id()), &keyring, false).is_ok());
        let rotating = keyring.with_new_sealing_key().unwrap();
        assert!(
            check_recorded_key(Some(keyring.sealing_key_id()), &rotating, false)
                .unwrap_err()
                .to_string()
                .contains("interrupted")
        );
        assert!(check_recorded_key(Some(keyring.sealing_key_id()), &rotating, true).is_ok());
        let stranger = SecretsKeyring::generate().unwrap();
        for during_rotation in [false, true] {
            assert!(
                check_recorded_key(Some(keyring.sealing_key_id()), &stranger, during_rotation)
                    .unwrap_err()
                    .to_string()
                    .contains("does not hold")
            );
        }
    }
}
