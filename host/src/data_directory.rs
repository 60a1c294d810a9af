//! The data directory holds the store (provider secrets in saved configs), the keys and the
//! plugin copies: it is created `0700`, the files the host writes in it are `0600`, and a
//! directory that group or others can write is refused (they could swap the database or a
//! key), as sshd refuses a writable home.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The lock file's name inside the data directory.
const LOCK_FILE: &str = "host.lock";

/// Held for as long as one process uses the data directory (released when it exits, even by
/// kill -9): two hosts on one embedded store would each keep their own flow-control counters,
/// and a key rotation must not change the secrets key under a running host.
#[derive(Debug)]
pub struct DataDirectoryLock {
    _file: std::fs::File,
}

/// Takes the data directory's lock, or says who holds it. `purpose` completes the error:
/// "cannot <purpose>: ...".
pub fn lock(path: &Path, purpose: &str) -> Result<DataDirectoryLock, String> {
    let lock_path = path.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|error| {
            format!(
                "cannot {purpose}: cannot open {}: {error}",
                lock_path.display()
            )
        })?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(DataDirectoryLock { _file: file }),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(format!(
            "cannot {purpose}: another connector-host process is using the data directory {} (stop it first)",
            path.display()
        )),
        Err(error) => Err(format!(
            "cannot {purpose}: cannot lock {}: {error}",
            lock_path.display()
        )),
    }
}

/// Creates the directory (`0700`) or checks an existing one. Errors are one line.
pub fn prepare(path: &Path) -> Result<(), String> {
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|error| {
                format!(
                    "cannot create the data directory {}: {error}",
                    path.display()
                )
            })?;
        return Ok(());
    }
    let mode = std::fs::metadata(path)
        .map_err(|error| format!("cannot use the data directory {}: {error}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "the data directory {} is writable by group or others (mode {:o}); chmod 700 it",
            path.display(),
            mode & 0o777
        ));
    }
    if mode & 0o044 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the data directory is readable by others; chmod 700 it"
        );
    }
    Ok(())
}

/// Makes `path` a file only its owner can read and write: created `0600` when missing (so
/// SQLite gives its WAL and shared-memory files the same mode), tightened when it exists.
pub fn private_file(path: &Path) -> Result<(), String> {
    let failed = |error: std::io::Error| format!("cannot secure {}: {error}", path.display());
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
        let refused = prepare(&data).unwrap_err();
        assert!(refused.contains("chmod 700"), "{refused}");
    }

    #[test]
    fn one_process_at_a_time_holds_the_directory() {
        let scratch = tempfile::tempdir().unwrap();
        let held = lock(scratch.path(), "serve").unwrap();
        // flock locks belong to the open file: a second open in this process conflicts too.
        let refused = lock(scratch.path(), "rotate the secrets key").unwrap_err();
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
