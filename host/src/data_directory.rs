//! The data directory holds the store (provider secrets in saved configs), the keys and the
//! plugin copies: it is created `0700`, the files the host writes in it are `0600`, and a
//! directory that group or others can write is refused (they could swap the database or a
//! key), as sshd refuses a writable home.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
const LOCK_FILE: &str = "host.lock";
/// The generated admin key, when no `--admin-key` is given.
pub const ADMIN_KEY_FILE: &str = "admin-key";
/// The keyring file when no `--secrets-key-file` is given.
pub const SECRETS_KEY_FILE: &str = "secrets-key";
/// The code-hash key file (SQLite; with PostgreSQL, `--code-hash-key-file`).
pub const CODE_HASH_KEY_FILE: &str = "code-hash-key";

/// Why the data directory, its lock or a key file cannot be used; each message is one line
/// that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DataDirectoryError {
    #[error("cannot {purpose}: cannot open {}: {source}", .lock_path.display())]
    OpenLock {
        purpose: &'static str,
        lock_path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot {purpose}: another connector-host process is using the data directory {} (stop it first)", .path.display())]
    Locked {
        purpose: &'static str,
        path: PathBuf,
    },
    #[error("cannot {purpose}: cannot lock {}: {source}", .lock_path.display())]
    Lock {
        purpose: &'static str,
        lock_path: PathBuf,
        source: rustix::io::Errno,
    },
    #[error("cannot create the data directory {}: {source}", .path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot use the data directory {}: {source}", .path.display())]
    Unusable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {} is owned by uid {owner}, not by the host's user (uid {host_user}); chown it to the host's user", .path.display())]
    NotOwned {
        what: &'static str,
        path: PathBuf,
        owner: u32,
        host_user: u32,
    },
    #[error("{what} {} is writable by group or others (mode {mode:o}); chmod {private_mode:o} it{advice}", .path.display())]
    Writable {
        what: &'static str,
        path: PathBuf,
        mode: u32,
        private_mode: u32,
        advice: &'static str,
    },
    #[error("cannot make {what} {} private (chmod {private_mode:o}): {source}", .path.display())]
    MakePrivate {
        what: &'static str,
        path: PathBuf,
        private_mode: u32,
        source: std::io::Error,
    },
    #[error("cannot use the key file {}: {source}", .path.display())]
    KeyFileUnusable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the key file {} is not a regular file", .path.display())]
    KeyFileNotRegular { path: PathBuf },
    #[error("cannot read {flag} {}: {source}", .path.display())]
    ReadKeyList {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag} {} holds no key", .path.display())]
    NoKey { flag: &'static str, path: PathBuf },
    #[error("cannot secure {}: {source}", .path.display())]
    SecureFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held for as long as one process uses the data directory (released when it exits, even by
/// kill -9): two hosts on one embedded store would each keep their own flow-control counters,
/// and a key rotation must not change the secrets key under a running host.
#[derive(Debug)]
pub struct DataDirectoryLock {
    _file: std::fs::File,
}

/// Takes the data directory's lock, or says who holds it. `purpose` completes the error:
/// "cannot <purpose>: ...".
pub fn lock(path: &Path, purpose: &'static str) -> Result<DataDirectoryLock, DataDirectoryError> {
    let lock_path = path.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|source| DataDirectoryError::OpenLock {
            purpose,
            lock_path: lock_path.clone(),
            source,
        })?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(DataDirectoryLock { _file: file }),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(DataDirectoryError::Locked {
            purpose,
            path: path.to_owned(),
        }),
        Err(source) => Err(DataDirectoryError::Lock {
            purpose,
            lock_path,
            source,
        }),
    }
}

/// Creates the directory (`0700`), or checks an existing one and tightens it to `0700`: one
/// owned by another user or writable by group or others is refused (they could swap the
/// database or a key). Errors are one line.
pub fn prepare(path: &Path) -> Result<(), DataDirectoryError> {
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| DataDirectoryError::Create {
                path: path.to_owned(),
                source,
            })?;
        return Ok(());
    }
    let metadata = std::fs::metadata(path).map_err(|source| DataDirectoryError::Unusable {
        path: path.to_owned(),
        source,
    })?;
    make_private(path, "the data directory", &metadata, 0o700, "")
}

/// Refuses a file or directory that is not the host user's own.
fn check_owner(path: &Path, what: &'static str, owner: u32) -> Result<(), DataDirectoryError> {
    let host_user = rustix::process::geteuid().as_raw();
    if owner != host_user {
        return Err(DataDirectoryError::NotOwned {
            what,
            path: path.to_owned(),
            owner,
            host_user,
        });
    }
    Ok(())
}

/// Checks a key file before it is read, wherever it is (in the data directory or given with
/// a `--*-key-file` flag): it must be a regular file owned by the host's user that group and
/// others cannot write; one that group or others can read is tightened to `0600`. Errors are
/// one line. A missing file is left to the reader (which creates or reports it).
pub fn secure_key_file(path: &Path) -> Result<(), DataDirectoryError> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(DataDirectoryError::KeyFileUnusable {
                path: path.to_owned(),
                source,
            })
        }
    };
    if !metadata.is_file() {
        return Err(DataDirectoryError::KeyFileNotRegular {
            path: path.to_owned(),
        });
    }
    make_private(
        path,
        "the key file",
        &metadata,
        0o600,
        " and check its contents",
    )
}

/// The host user's own file or directory, not writable by group or others (refused, in one
/// line), and not readable by them either (tightened to `private_mode`).
fn make_private(
    path: &Path,
    what: &'static str,
    metadata: &std::fs::Metadata,
    private_mode: u32,
    advice_when_writable: &'static str,
) -> Result<(), DataDirectoryError> {
    check_owner(path, what, metadata.uid())?;
    let mode = metadata.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(DataDirectoryError::Writable {
            what,
            path: path.to_owned(),
            mode: mode & 0o777,
            private_mode,
            advice: advice_when_writable,
        });
    }
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(private_mode)).map_err(
            |source| DataDirectoryError::MakePrivate {
                what,
                path: path.to_owned(),
                private_mode,
                source,
            },
        )?;
        tracing::info!(path = %path.display(), was = format!("{:o}", mode & 0o777), "made {what} private ({private_mode:04o})");
    }
    Ok(())
}

/// Reads API keys from a file (after [`secure_key_file`]): separated by commas or newlines,
/// blanks ignored. A file without a key is refused.
pub fn read_key_list_file(
    path: &Path,
    flag: &'static str,
) -> Result<Vec<String>, DataDirectoryError> {
    secure_key_file(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| DataDirectoryError::ReadKeyList {
        flag,
        path: path.to_owned(),
        source,
    })?;
    let keys: Vec<String> = text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map(str::to_owned)
        .collect();
    if keys.is_empty() {
        return Err(DataDirectoryError::NoKey {
            flag,
            path: path.to_owned(),
        });
    }
    Ok(keys)
}

/// Makes `path` a file only its owner can read and write: created `0600` when missing (so
/// SQLite gives its WAL and shared-memory files the same mode), tightened when it exists.
pub fn private_file(path: &Path) -> Result<(), DataDirectoryError> {
    let failed = |source: std::io::Error| DataDirectoryError::SecureFile {
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        let mode = std::fs::metadata(path)
            .map_err(failed)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(failed)?;
            tracing::info!(path = %path.display(), was = format!("{:o}", mode & 0o777), "made a data file private (0600)");
        }
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_directory_is_private_and_a_writable_one_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let data = scratch.path().join("data");
        prepare(&data).unwrap();
        assert_eq!(mode_of(&data), 0o700);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused = prepare(&data).unwrap_err().to_string();
        assert!(refused.contains("chmod 700"), "{refused}");
    }

    #[test]
    fn a_readable_directory_is_tightened_to_0700() {
        let scratch = tempfile::tempdir().unwrap();
        let data = scratch.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&data).unwrap();
        assert_eq!(mode_of(&data), 0o700);
    }

    #[test]
    fn key_files_are_tightened_or_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let key = scratch.path().join("key");
        std::fs::write(&key, "k1,k2\n\nk3\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            read_key_list_file(&key, "--admin-key-file").unwrap(),
            ["k1", "k2", "k3"]
        );
        assert_eq!(mode_of(&key), 0o600);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o620)).unwrap();
        let refused = secure_key_file(&key).unwrap_err().to_string();
        assert!(refused.contains("writable by group or others"), "{refused}");
        assert_eq!(mode_of(&key), 0o620, "a refused file is left as it is");
        let refused = secure_key_file(scratch.path()).unwrap_err().to_string();
        assert!(refused.contains("not a regular file"), "{refused}");
        assert!(secure_key_file(&scratch.path().join("missing")).is_ok());
        let empty = scratch.path().join("empty");
        std::fs::write(&empty, " ,\n").unwrap();
        let refused = read_key_list_file(&empty, "--send-key-file")
            .unwrap_err()
            .to_string();
        assert!(refused.contains("holds no key"), "{refused}");
        // Owned by another user: made so when the tests run as root, else root's own file.
        let foreign = if rustix::process::geteuid().is_root() {
            let foreign = scratch.path().join("foreign");
            std::fs::write(&foreign, "k").unwrap();
            std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::chown(&foreign, Some(4321), Some(4321)).unwrap();
            foreign
        } else {
            Path::new("/etc/hostname").to_owned()
        };
        let refused = secure_key_file(&foreign).unwrap_err().to_string();
        assert!(refused.contains("not by the host's user"), "{refused}");
    }

    #[test]
    fn one_process_at_a_time_holds_the_directory() {
        let scratch = tempfile::tempdir().unwrap();
        let held = lock(scratch.path(), "serve").unwrap();
        // flock locks belong to the open file: a second open in this process conflicts too.
        let refused = lock(scratch.path(), "rotate the secrets key")
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("another connector-host process"),
            "{refused}"
        );
        assert!(
            refused.starts_with("cannot rotate the secrets key"),
            "{refused}"
        );
        drop(held);
        assert!(lock(scratch.path(), "serve").is_ok());
    }

    #[test]
    fn files_are_created_or_tightened_to_0600() {
        let scratch = tempfile::tempdir().unwrap();
        let created = scratch.path().join("store");
        private_file(&created).unwrap();
        assert_eq!(mode_of(&created), 0o600);
        let loose = scratch.path().join("loose");
        std::fs::write(&loose, b"x").unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_file(&loose).unwrap();
        assert_eq!(mode_of(&loose), 0o600);
    }
}
