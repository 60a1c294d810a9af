//! API keys: admin keys reach every `/api` route, send keys only the sending routes.
//!
//! Keys are kept as SHA-256 digests and a presented key is compared with every configured
//! key in constant time (subtle), so neither the comparison nor its position leaks through
//! timing.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    Admin,
    Send,
}

impl KeyScope {
    pub fn label(self) -> &'static str {
        match self {
            KeyScope::Admin => "admin",
            KeyScope::Send => "send",
        }
    }
}

/// Which key made a request, for the log and the access log: its scope and the first 8 hex
/// digits of its SHA-256 (`printf %s "$KEY" | sha256sum | cut -c1-8`), never the key. Keys
/// are 32 random bytes, so 32 bits of their digest say nothing of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId {
    pub scope: KeyScope,
    fingerprint: [u8; 4],
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{}:{}",
            self.scope.label(),
            hex::encode(self.fingerprint)
        )
    }
}

pub struct ApiKeys {
    admin_key_digests: Vec<[u8; 32]>,
    send_key_digests: Vec<[u8; 32]>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn any_matches(digests: &[[u8; 32]], presented: &[u8; 32]) -> bool {
    let matched = digests.iter().fold(Choice::from(0), |found, candidate| {
        found | candidate.ct_eq(presented)
    });
    matched.into()
}

impl ApiKeys {
    pub fn new(admin_keys: &[String], send_keys: &[String]) -> Self {
        Self {
            admin_key_digests: admin_keys.iter().map(|key| digest(key)).collect(),
            send_key_digests: send_keys.iter().map(|key| digest(key)).collect(),
        }
    }

    /// The scope of a presented key; `None` when it matches no key.
    pub fn scope_of(&self, presented: &str) -> Option<KeyScope> {
        self.identify(presented).map(|key| key.scope)
    }

    /// The scope and id of a presented key; `None` when it matches no key.
    pub fn identify(&self, presented: &str) -> Option<KeyId> {
        let presented = digest(presented);
        let is_admin = any_matches(&self.admin_key_digests, &presented);
        let is_send = any_matches(&self.send_key_digests, &presented);
        let scope = if is_admin {
            KeyScope::Admin
        } else if is_send {
            KeyScope::Send
        } else {
            return None;
        };
        let mut fingerprint = [0u8; 4];
        fingerprint.copy_from_slice(&presented[..4]);
        Some(KeyId { scope, fingerprint })
    }
}

/// Splits a comma-separated key list, dropping blanks.
pub fn parse_key_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A new random key: 32 bytes from the OS CSPRNG, hex.
pub fn generate_key() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| std::io::Error::other(error.to_string()))?;
    Ok(hex::encode(bytes))
}

/// The admin key kept in the data directory when none is configured: read it, or on first
/// start create it (mode 0600) and return `(key, true)` so the caller prints it once.
pub fn load_or_create_admin_key(path: &Path) -> std::io::Result<(String, bool)> {
    load_or_create_secret_file(path)
}

/// A secret kept in a file of the data directory: read it, or create it with a new random
/// value (mode 0600, temp file then rename) and return `(secret, true)`.
pub fn load_or_create_secret_file(path: &Path) -> std::io::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(content) if !content.trim().is_empty() => {
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o022 != 0 {
                // Whoever can write the key can choose it.
                return Err(std::io::Error::other(format!(
                    "the key file {} is writable by group or others (mode {:o}); chmod 600 it",
                    path.display(),
                    mode & 0o777
                )));
            }
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "a secret file is readable by others; chmod 600 it"
                );
            }
            Ok((content.trim().to_owned(), false))
        }
        Ok(_) => create_secret_file(path).map(|secret| (secret, true)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            create_secret_file(path).map(|secret| (secret, true))
        }
        Err(error) => Err(error),
    }
}

/// Why a key file shared by several hosts cannot be used; one line each.
#[derive(Debug, thiserror::Error)]
pub enum SharedKeyFileError {
    #[error("cannot read the key file {}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the key file {} is readable by others (mode {mode:o}); chmod 600 it", .path.display())]
    ReadableByOthers { path: PathBuf, mode: u32 },
    #[error("the key file {} must hold at least 32 characters (e.g. `openssl rand -hex 32`)", .path.display())]
    TooShort { path: PathBuf },
}

/// A secret shared by several hosts, from a file the operator provides: it must exist, hold
/// at least 32 characters, and be readable by its owner only.
pub fn read_shared_secret_file(path: &Path) -> Result<String, SharedKeyFileError> {
    let unreadable = |source: std::io::Error| SharedKeyFileError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(unreadable)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(SharedKeyFileError::ReadableByOthers {
            path: path.to_owned(),
            mode: mode & 0o777,
        });
    }
    let secret = std::fs::read_to_string(path)
        .map_err(unreadable)?
        .trim()
        .to_owned();
    if secret.len() < 32 {
        return Err(SharedKeyFileError::TooShort {
            path: path.to_owned(),
        });
    }
    Ok(secret)
}

fn create_secret_file(path: &Path) -> std::io::Result<String> {
    let secret = generate_key()?;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_told_apart() {
        let keys = ApiKeys::new(
            &parse_key_list("admin-1, admin-2"),
            &parse_key_list("send-1,,"),
        );
        assert_eq!(keys.scope_of("admin-2"), Some(KeyScope::Admin));
        assert_eq!(keys.scope_of("send-1"), Some(KeyScope::Send));
        assert_eq!(keys.scope_of("admin-"), None);
        assert_eq!(keys.scope_of(""), None);
    }

    /// What an operator computes with `printf %s "$KEY" | sha256sum | cut -c1-8`.
    #[test]
    fn a_key_id_is_its_scope_and_digest_prefix() {
        let keys = ApiKeys::new(&parse_key_list("admin-1, admin-2"), &[]);
        let id = keys.identify("admin-2").expect("a known key");
        assert_eq!(id.to_string(), "admin:bba86a1e");
        assert_eq!(keys.identify("admin-3"), None);
    }

    #[test]
    fn the_generated_admin_key_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-key");
        let (key, created) = load_or_create_admin_key(&path).unwrap();
        assert!(created);
        assert_eq!(key.len(), 64);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_or_create_admin_key(&path).unwrap(), (key, false));
    }
}
