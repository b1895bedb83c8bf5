//! Storage errors: which file, what storage was doing, and what the OS said, sorted
//! into the few kinds a torrent reacts to differently (no space, read-only, a file
//! that vanished under us, a failing disk).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What storage was doing when it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Creating the folders a file lives in.
    CreateFolder,
    /// Creating a file or giving it its size.
    Create,
    /// Allocating a file's blocks up front (`preallocate`).
    Preallocate,
    /// Opening a file again (the pool had closed it).
    Open,
    /// Finding a file that must exist already (the data to seed).
    Find,
    /// Writing a block.
    Write,
    /// Reading a block, or reading data back to hash it.
    Read,
    /// Flushing a file to the device (fsync), or checking it is still whole.
    Sync,
    /// Looking at a file's size and modification time.
    Stat,
    /// Writing the resume file.
    SaveResume,
}

impl Op {
    fn doing(self) -> &'static str {
        match self {
            Op::CreateFolder => "creating the folder",
            Op::Create => "creating the file",
            Op::Preallocate => "preallocating",
            Op::Open => "opening",
            Op::Find => "looking for the data to seed",
            Op::Write => "writing",
            Op::Read => "reading",
            Op::Sync => "syncing to disk",
            Op::Stat => "looking at the file",
            Op::SaveResume => "saving resume data",
        }
    }
}

/// The kinds of failure a torrent reacts to differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// ENOSPC or EDQUOT: stop the torrent, save resume data, ask for room.
    NoSpace,
    /// EROFS, EACCES or EPERM: the folder or file cannot be written.
    ReadOnly,
    /// The file was removed or truncated while in use: it is gone on reopen, its
    /// link count is 0, it is shorter than the torrent says, or a read hit its end.
    /// The pieces on it are lost and must be checked or fetched again.
    Vanished,
    /// EIO: the device reported an error (a failing disk or card).
    Io,
    /// A block outside its piece or a piece past the end: a caller bug, refused.
    OutOfRange,
    /// Anything else; the message carries the OS's words.
    Other,
}

/// Why storage failed: the file (or folder), what we were doing and the OS error.
///
/// Displays as `/x/y.bin: no space left on device (while writing)`.
#[derive(Debug)]
pub struct StorageError {
    path: PathBuf,
    op: Op,
    kind: StorageErrorKind,
    error: io::Error,
}

impl StorageError {
    /// Sorts an OS error into its kind.
    pub fn io(path: &Path, op: Op, error: io::Error) -> StorageError {
        let kind = match error.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => StorageErrorKind::NoSpace,
            Some(libc::EROFS | libc::EACCES | libc::EPERM) => StorageErrorKind::ReadOnly,
            Some(libc::EIO) => StorageErrorKind::Io,
            _ => match error.kind() {
                io::ErrorKind::StorageFull => StorageErrorKind::NoSpace,
                io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied => {
                    StorageErrorKind::ReadOnly
                }
                // A read that ends early: the file is shorter than when we sized it.
                io::ErrorKind::UnexpectedEof => StorageErrorKind::Vanished,
                // Only reopening a file we created can miss it, so it was removed.
                io::ErrorKind::NotFound if !matches!(op, Op::Create | Op::CreateFolder | Op::Find) => {
                    StorageErrorKind::Vanished
                }
                _ => StorageErrorKind::Other,
            },
        };
        let error = if error.kind() == io::ErrorKind::UnexpectedEof {
            // std's words ("failed to fill whole buffer") mean nothing to a user.
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ends early (it was truncated while in use)",
            )
        } else {
            error
        };
        StorageError {
            path: path.to_path_buf(),
            op,
            kind,
            error,
        }
    }

    /// The file was unlinked while we held it open.
    pub(crate) fn removed(path: &Path, op: Op) -> StorageError {
        let error = io::Error::new(io::ErrorKind::NotFound, "the file was removed while in use");
        StorageError {
            path: path.to_path_buf(),
            op,
            kind: StorageErrorKind::Vanished,
            error,
        }
    }

    /// Another file took the name of ours while in use.
    pub(crate) fn replaced(path: &Path, op: Op) -> StorageError {
        let error = io::Error::new(io::ErrorKind::NotFound, "the file was replaced while in use");
        StorageError {
            path: path.to_path_buf(),
            op,
            kind: StorageErrorKind::Vanished,
            error,
        }
    }

    /// The file is shorter than the torrent says.
    pub(crate) fn truncated(path: &Path, op: Op, size: u64, expected: u64) -> StorageError {
        let error = io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the file is {size} bytes, the torrent says {expected}: it was truncated while in use"),
        );
        StorageError {
            path: path.to_path_buf(),
            op,
            kind: StorageErrorKind::Vanished,
            error,
        }
    }

    /// A range the caller should never have asked for.
    pub(crate) fn out_of_range(root: &Path, op: Op, what: String) -> StorageError {
        StorageError {
            path: root.to_path_buf(),
            op,
            kind: StorageErrorKind::OutOfRange,
            error: io::Error::new(io::ErrorKind::InvalidInput, what),
        }
    }

    /// The file or folder concerned.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What storage was doing.
    pub fn op(&self) -> Op {
        self.op
    }

    /// Which kind of failure this is.
    pub fn kind(&self) -> StorageErrorKind {
        self.kind
    }

    /// The underlying OS error.
    pub fn io_error(&self) -> &io::Error {
        &self.error
    }

    /// The message without the path, in words a user understands.
    fn message(&self) -> String {
        match self.kind {
            StorageErrorKind::NoSpace => "no space left on device".into(),
            StorageErrorKind::ReadOnly if self.error.raw_os_error() == Some(libc::EROFS) => {
                "read-only file system".into()
            }
            StorageErrorKind::ReadOnly => "permission denied".into(),
            StorageErrorKind::Io => "input/output error (the disk may be failing)".into(),
            StorageErrorKind::Vanished if self.error.raw_os_error().is_some() => {
                "no such file (it was removed while in use)".into()
            }
            _ => match self.error.raw_os_error() {
                // std appends " (os error N)"; users need only the words.
                Some(code) => strip_os_code(&io::Error::from_raw_os_error(code).to_string()),
                None => self.error.to_string(),
            },
        }
    }
}

fn strip_os_code(text: &str) -> String {
    let text = text.split(" (os error").next().unwrap_or(text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (while {})",
            self.path.display(),
            self.message(),
            self.op.doing()
        )
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Storage's result type.
pub type Result<T> = std::result::Result<T, StorageError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(code: i32, op: Op) -> (StorageErrorKind, String) {
        let e = StorageError::io(Path::new("/x/y.bin"), op, io::Error::from_raw_os_error(code));
        (e.kind(), e.to_string())
    }

    #[test]
    fn os_errors_sort_into_kinds_with_plain_messages() {
        assert_eq!(
            shown(libc::ENOSPC, Op::Write),
            (
                StorageErrorKind::NoSpace,
                "/x/y.bin: no space left on device (while writing)".into()
            )
        );
        assert_eq!(shown(libc::EDQUOT, Op::Write).0, StorageErrorKind::NoSpace);
        assert_eq!(
            shown(libc::EROFS, Op::Create).1,
            "/x/y.bin: read-only file system (while creating the file)"
        );
        assert_eq!(shown(libc::EACCES, Op::Create).0, StorageErrorKind::ReadOnly);
        assert_eq!(shown(libc::EIO, Op::Read).0, StorageErrorKind::Io);
        assert_eq!(shown(libc::ENOENT, Op::Open).0, StorageErrorKind::Vanished);
        assert_eq!(shown(libc::ENOENT, Op::Create).0, StorageErrorKind::Other);
        assert_eq!(
            shown(libc::ENOTDIR, Op::CreateFolder).1,
            "/x/y.bin: not a directory (while creating the folder)"
        );
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "failed to fill whole buffer");
        let e = StorageError::io(Path::new("/a"), Op::Read, eof);
        assert_eq!(e.kind(), StorageErrorKind::Vanished);
        assert_eq!(
            e.to_string(),
            "/a: the file ends early (it was truncated while in use) (while reading)"
        );
        let e = StorageError::truncated(Path::new("/a"), Op::Sync, 5, 10);
        assert!(e.to_string().contains("truncated while in use"), "{e}");
    }
}
