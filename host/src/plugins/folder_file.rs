//! Reading a file from the plugins folder without ever blocking: a plugin file or its
//! signature is read only when it is a regular file (or a symlink to one) under a size limit.
//!
//! Anyone who can write the folder could otherwise wedge the host: `open()` of a FIFO blocks
//! until a writer appears, reading a character device may never end, and opening a device can
//! have side effects. So the path is `stat`ed first and anything but a regular file is refused
//! without being opened; a regular file is opened with `O_NONBLOCK | O_NOCTTY` (in case it was
//! swapped for a FIFO or a terminal in between), checked again with `fstat` on the opened
//! descriptor, which is what the caller's trust check sees too, and read up to the limit.
//! Symlinks are followed: they are part of the folder's rules (their directories are checked
//! by [`crate::plugins::folder`]), so `O_NOFOLLOW` does not apply.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::fs::{Mode, OFlags};

/// Why a file of the plugins folder was not read.
#[derive(Debug)]
pub enum FolderFileError {
    Missing,
    /// A FIFO, device, socket or directory; `kind` names it (`a FIFO`).
    NotRegularFile {
        kind: &'static str,
    },
    TooLarge {
        size: u64,
    },
    Unreadable(std::io::Error),
}

/// A file's content and the `fstat` of the descriptor it was read from.
pub struct FolderFile {
    pub content: Vec<u8>,
    pub metadata: fs::Metadata,
}

/// Reads `path` whole if it is a regular file of at most `limit` bytes; never blocks.
pub fn read_folder_file(path: &Path, limit: u64) -> Result<FolderFile, FolderFileError> {
    let unreadable = |error: std::io::Error| match error.kind() {
        std::io::ErrorKind::NotFound => FolderFileError::Missing,
        _ => FolderFileError::Unreadable(error),
    };
    // Before opening: a FIFO, device or socket is never opened at all.
    let before = fs::metadata(path).map_err(unreadable)?;
    check_regular_file(&before, limit)?;
    let descriptor = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|error| unreadable(error.into()))?;
    let file = fs::File::from(descriptor);
    let metadata = file.metadata().map_err(FolderFileError::Unreadable)?;
    check_regular_file(&metadata, limit)?;
    let mut content = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.take(limit + 1)
        .read_to_end(&mut content)
        .map_err(FolderFileError::Unreadable)?;
    // The file grew past the limit while it was read.
    if content.len() as u64 > limit {
        return Err(FolderFileError::TooLarge {
            size: content.len() as u64,
        });
    }
    Ok(FolderFile { content, metadata })
}

fn check_regular_file(metadata: &fs::Metadata, limit: u64) -> Result<(), FolderFileError> {
    if !metadata.file_type().is_file() {
        return Err(FolderFileError::NotRegularFile {
            kind: file_kind(&metadata.file_type()),
        });
    }
    if metadata.size() > limit {
        return Err(FolderFileError::TooLarge {
            size: metadata.size(),
        });
    }
    Ok(())
}

/// What a file that is not a regular file is, for a refusal: `a FIFO`.
pub fn file_kind(file_type: &fs::FileType) -> &'static str {
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_symlink() {
        "a symlink"
    } else {
        "not a file"
    }
}

/// `libx.so` for `/plugins/libx.so`, for messages.
pub fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_and_anything_else_is_refused_without_blocking() {
        let folder = tempfile::tempdir().unwrap();
        let regular = folder.path().join("libx.so");
        std::fs::write(&regular, b"content").unwrap();
        let read = read_folder_file(&regular, 100).unwrap();
        assert_eq!(read.content, b"content");
        assert!(read.metadata.is_file());
        assert!(matches!(
            read_folder_file(&regular, 3),
            Err(FolderFileError::TooLarge { size: 7 })
        ));
        assert!(matches!(
            read_folder_file(&folder.path().join("missing.so"), 100),
            Err(FolderFileError::Missing)
        ));

        // A FIFO with no writer: opening it for reading would block forever.
        let fifo = folder.path().join("fifo.so");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o644)).unwrap();
        assert!(matches!(
            read_folder_file(&fifo, 100),
            Err(FolderFileError::NotRegularFile { kind: "a FIFO" })
        ));
        let link = folder.path().join("link.so");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        assert!(matches!(
            read_folder_file(&link, 100),
            Err(FolderFileError::NotRegularFile { kind: "a FIFO" })
        ));
        assert!(matches!(
            read_folder_file(Path::new("/dev/zero"), 100),
            Err(FolderFileError::NotRegularFile {
                kind: "a character device"
            })
        ));
        assert!(matches!(
            read_folder_file(folder.path(), 100),
            Err(FolderFileError::NotRegularFile {
                kind: "a directory"
            })
        ));
    }
}
