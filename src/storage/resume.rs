//! Resume data: which pieces were verified, and each file's size and modification
//! time when they were, so a restart need not hash what did not change.
//!
//! One small binary file per torrent (layout in `docs/storage.md` and below), written
//! atomically: a temporary file in the same folder, fsync, rename over the old one,
//! fsync of the folder. Loading trusts nothing: a file that is short, long, garbled,
//! of another version or of another torrent is an error that says which, and the
//! caller checks the files again instead.
//!
//! ```text
//! offset      size   field
//! 0           8      magic "BLRESUME"
//! 8           4      format version, u32 little-endian (1)
//! 12          20     info hash
//! 32          8      piece length, u64 LE
//! 40          4      piece count P, u32 LE
//! 44          4      file count F (every file of the torrent, padding included), u32 LE
//! 48          B      verified pieces, B = ceil(P / 8), piece 0 the high bit; spare bits 0
//! 48+B        17×F   per file: kind u8 (0 padding, 1 present, 2 absent),
//!                    size u64 LE, modification time i64 LE (ns since the epoch);
//!                    size and time are 0 unless present
//! 48+B+17F    20     SHA-1 of every byte before it
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::error::{Op, StorageError};
use super::store::PieceStore;
use crate::metainfo::{InfoHash, Metainfo, MAX_FILES, MAX_PIECES};
use crate::swarm::Bitfield;

/// The first bytes of every resume file.
pub const MAGIC: &[u8; 8] = b"BLRESUME";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
const HEADER: usize = 48;
const ENTRY: usize = 17;
const CHECKSUM: usize = 20;
/// Largest resume file read: the header, a bitfield of [`MAX_PIECES`] and entries
/// for [`MAX_FILES`] fit well inside.
pub const MAX_RESUME_BYTES: u64 = 4 << 20;

/// One file as it was when the resume data was saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileStamp {
    /// A padding file: never on disk.
    Pad,
    /// On disk with this size and modification time (ns since the epoch).
    Present { size: u64, mtime_ns: i64 },
    /// Not on disk (its pieces were not claimed).
    Absent,
}

/// Why a resume file was not used.
#[derive(Debug)]
pub enum ResumeError {
    /// There is no resume file: a first start, nothing to warn about.
    Missing,
    /// It could not be read.
    Read(io::Error),
    /// Larger than any resume file can be.
    TooLarge {
        size: u64,
    },
    /// Shorter than its header or its counts say: cut off.
    Truncated {
        len: usize,
        expected: usize,
    },
    /// Longer than its counts say.
    TrailingBytes {
        len: usize,
        expected: usize,
    },
    /// Not a resume file at all.
    BadMagic,
    /// Written by another format version.
    UnsupportedVersion {
        found: u32,
    },
    /// The checksum does not match: corrupted.
    ChecksumMismatch,
    /// Counts beyond what any torrent may have.
    TooManyPieces {
        count: u32,
    },
    TooManyFiles {
        count: u32,
    },
    /// Bits set past the last piece.
    SpareBitsSet,
    /// A file entry of unknown kind, or with a size or time where none belongs.
    BadFileEntry {
        index: usize,
    },
    /// It belongs to another torrent.
    OtherTorrent {
        found: InfoHash,
    },
    /// Same info hash but a different shape: cannot be ours.
    PieceCountDiffers {
        found: u32,
        expected: u32,
    },
    PieceLengthDiffers {
        found: u64,
        expected: u64,
    },
    FileCountDiffers {
        found: u32,
        expected: u32,
    },
    /// File `index` is padding in one and not in the other.
    PadDiffers {
        index: usize,
    },
}

impl std::fmt::Display for ResumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use ResumeError::*;
        match self {
            Missing => write!(f, "no resume file"),
            Read(e) => write!(f, "cannot read the resume file: {e}"),
            TooLarge { size } => write!(f, "resume file is {size} bytes, more than any can be"),
            Truncated { len, expected } => {
                write!(f, "resume file is cut off ({len} bytes, expected {expected})")
            }
            TrailingBytes { len, expected } => {
                write!(
                    f,
                    "resume file has extra bytes ({len} bytes, expected {expected})"
                )
            }
            BadMagic => write!(f, "not a bitloop resume file"),
            UnsupportedVersion { found } => {
                write!(
                    f,
                    "resume file format {found} is not supported (this build reads {VERSION})"
                )
            }
            ChecksumMismatch => write!(f, "resume file is corrupt (checksum mismatch)"),
            TooManyPieces { count } => {
                write!(f, "resume file claims {count} pieces, more than any torrent has")
            }
            TooManyFiles { count } => {
                write!(f, "resume file claims {count} files, more than any torrent has")
            }
            SpareBitsSet => write!(f, "resume file marks pieces past the last one"),
            BadFileEntry { index } => write!(f, "resume file has a malformed entry for file {index}"),
            OtherTorrent { found } => write!(f, "resume file belongs to another torrent ({found})"),
            PieceCountDiffers { found, expected } => {
                write!(f, "resume file has {found} pieces, the torrent {expected}")
            }
            PieceLengthDiffers { found, expected } => {
                write!(f, "resume file has {found}-byte pieces, the torrent {expected}")
            }
            FileCountDiffers { found, expected } => {
                write!(f, "resume file lists {found} files, the torrent {expected}")
            }
            PadDiffers { index } => write!(f, "resume file disagrees on whether file {index} is padding"),
        }
    }
}

impl std::error::Error for ResumeError {}

/// One torrent's resume data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeData {
    pub(crate) info_hash: InfoHash,
    pub(crate) piece_length: u64,
    pub(crate) have: Bitfield,
    pub(crate) files: Vec<FileStamp>,
}

impl ResumeData {
    /// Records `have` (pieces verified) with every file's size and modification
    /// time as they are now. Call it right after [`PieceStore::sync`], with no write
    /// in between (or use [`PieceStore::save_resume`], which does both): the times
    /// must be those of the data that was flushed. Pieces on a file that is absent
    /// or not of its full size are not claimed.
    pub fn capture(store: &PieceStore, have: &Bitfield) -> Result<ResumeData, StorageError> {
        let layout = store.layout();
        debug_assert_eq!(have.len(), layout.piece_count(), "a bitfield of this torrent");
        let mut claimed = Bitfield::new(layout.piece_count());
        for piece in have.iter_ones() {
            claimed.set(piece);
        }
        let mut have = claimed;
        let mut files = Vec::with_capacity(layout.files().len());
        for (index, file) in layout.files().iter().enumerate() {
            if store.is_pad(index) {
                files.push(FileStamp::Pad);
                continue;
            }
            let path = store.path(index);
            let stamp = match std::fs::metadata(path) {
                Ok(meta) => FileStamp::Present {
                    size: meta.len(),
                    mtime_ns: mtime_ns(&meta),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => FileStamp::Absent,
                Err(e) => return Err(StorageError::io(path, Op::Stat, e)),
            };
            if !matches!(stamp, FileStamp::Present { size, .. } if size == file.length) {
                for piece in layout.file_pieces(index) {
                    have.clear(piece);
                }
            }
            files.push(stamp);
        }
        Ok(ResumeData {
            info_hash: store.info_hash(),
            piece_length: layout.piece_length(),
            have,
            files,
        })
    }

    /// The pieces it claims were verified.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Each file as recorded, in the torrent's order.
    pub fn files(&self) -> &[FileStamp] {
        &self.files
    }

    /// The torrent it belongs to.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// Where a torrent's resume file lives in folder `dir`: `<dir>/<info-hash-hex>.resume`.
    pub fn path_in(dir: &Path, info_hash: &InfoHash) -> PathBuf {
        dir.join(format!("{}.resume", info_hash.to_hex()))
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(HEADER + self.have.as_bytes().len() + ENTRY * self.files.len() + CHECKSUM);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.info_hash.0);
        out.extend_from_slice(&self.piece_length.to_le_bytes());
        out.extend_from_slice(&self.have.len().to_le_bytes());
        out.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        out.extend_from_slice(self.have.as_bytes());
        for stamp in &self.files {
            let (kind, size, mtime) = match *stamp {
                FileStamp::Pad => (0u8, 0, 0),
                FileStamp::Present { size, mtime_ns } => (1, size, mtime_ns),
                FileStamp::Absent => (2, 0, 0),
            };
            out.push(kind);
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&mtime.to_le_bytes());
        }
        let checksum = Sha1::digest(&out);
        out.extend_from_slice(&checksum);
        out
    }

    /// Parses a resume file's bytes, checking everything it can without the torrent.
    pub fn decode(bytes: &[u8]) -> Result<ResumeData, ResumeError> {
        let truncated = |expected| ResumeError::Truncated {
            len: bytes.len(),
            expected,
        };
        if bytes.len() < MAGIC.len() {
            return Err(if MAGIC.starts_with(bytes) {
                truncated(HEADER + CHECKSUM)
            } else {
                ResumeError::BadMagic
            });
        }
        if &bytes[..8] != MAGIC {
            return Err(ResumeError::BadMagic);
        }
        if bytes.len() < HEADER + CHECKSUM {
            return Err(truncated(HEADER + CHECKSUM));
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err(ResumeError::UnsupportedVersion { found: version });
        }
        let pieces = u32_at(bytes, 40);
        let file_count = u32_at(bytes, 44);
        if pieces as usize > MAX_PIECES {
            return Err(ResumeError::TooManyPieces { count: pieces });
        }
        if file_count as usize > MAX_FILES {
            return Err(ResumeError::TooManyFiles { count: file_count });
        }
        let bits = (pieces as usize).div_ceil(8);
        let expected = HEADER + bits + ENTRY * file_count as usize + CHECKSUM;
        if bytes.len() < expected {
            return Err(truncated(expected));
        }
        if bytes.len() > expected {
            return Err(ResumeError::TrailingBytes {
                len: bytes.len(),
                expected,
            });
        }
        let (body, checksum) = bytes.split_at(expected - CHECKSUM);
        if Sha1::digest(body).as_slice() != checksum {
            return Err(ResumeError::ChecksumMismatch);
        }
        let bitfield = &body[HEADER..HEADER + bits];
        if pieces % 8 != 0 && bitfield[bits - 1] & (0xff >> (pieces % 8)) != 0 {
            return Err(ResumeError::SpareBitsSet);
        }
        let mut files = Vec::with_capacity(file_count as usize);
        for (index, entry) in body[HEADER + bits..].chunks_exact(ENTRY).enumerate() {
            let size = u64::from_le_bytes(entry[1..9].try_into().expect("8 bytes"));
            let mtime_ns = i64::from_le_bytes(entry[9..17].try_into().expect("8 bytes"));
            files.push(match (entry[0], size, mtime_ns) {
                (0, 0, 0) => FileStamp::Pad,
                (1, size, mtime_ns) => FileStamp::Present { size, mtime_ns },
                (2, 0, 0) => FileStamp::Absent,
                _ => return Err(ResumeError::BadFileEntry { index }),
            });
        }
        Ok(ResumeData {
            info_hash: InfoHash(bytes[12..32].try_into().expect("20 bytes")),
            piece_length: u64::from_le_bytes(bytes[32..40].try_into().expect("8 bytes")),
            have: Bitfield::from_bytes(bitfield, pieces),
            files,
        })
    }

    /// Refuses resume data that is not `metainfo`'s.
    pub fn check_matches(&self, metainfo: &Metainfo) -> Result<(), ResumeError> {
        if self.info_hash != metainfo.info_hash {
            return Err(ResumeError::OtherTorrent {
                found: self.info_hash,
            });
        }
        let expected = metainfo.info.pieces.len() as u32;
        if self.have.len() != expected {
            return Err(ResumeError::PieceCountDiffers {
                found: self.have.len(),
                expected,
            });
        }
        if self.piece_length != metainfo.info.piece_length {
            return Err(ResumeError::PieceLengthDiffers {
                found: self.piece_length,
                expected: metainfo.info.piece_length,
            });
        }
        let expected = metainfo.info.files.len() as u32;
        if self.files.len() as u32 != expected {
            return Err(ResumeError::FileCountDiffers {
                found: self.files.len() as u32,
                expected,
            });
        }
        for (index, (stamp, file)) in self.files.iter().zip(&metainfo.info.files).enumerate() {
            if (*stamp == FileStamp::Pad) != file.pad {
                return Err(ResumeError::PadDiffers { index });
            }
        }
        Ok(())
    }

    /// Reads `path` and checks it is `metainfo`'s resume data.
    pub fn load(path: &Path, metainfo: &Metainfo) -> Result<ResumeData, ResumeError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ResumeError::Missing),
            Err(e) => return Err(ResumeError::Read(e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_RESUME_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(ResumeError::Read)?;
        if bytes.len() as u64 > MAX_RESUME_BYTES {
            return Err(ResumeError::TooLarge {
                size: bytes.len() as u64,
            });
        }
        let resume = ResumeData::decode(&bytes)?;
        resume.check_matches(metainfo)?;
        Ok(resume)
    }

    /// Writes the file at `path` so that a crash at any moment leaves either the old
    /// file or the new one: `<path>.tmp` in the same folder (made if missing),
    /// fsync, rename over `path`, fsync of the folder.
    pub fn save_atomic(&self, path: &Path) -> Result<(), StorageError> {
        fn error(at: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
            move |e| StorageError::io(at, Op::SaveResume, e)
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir).map_err(error(dir))?;
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        let written = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .and_then(|mut file| {
                file.write_all(&self.encode())?;
                file.sync_all()
            })
            .map_err(error(&tmp))
            .and_then(|()| std::fs::rename(&tmp, path).map_err(error(path)));
        if written.is_err() {
            // A full disk must not be left with a half-written file of ours on it.
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(error(dir))?;
        Ok(())
    }
}

impl PieceStore {
    /// Saves resume data for the pieces in `have` the safe way: flush every file
    /// written since the last sync, then record sizes and times, then write the
    /// resume file atomically. Call it every few seconds while pieces verify, and
    /// at completion and stop. On error nothing new was promised.
    pub fn save_resume(
        &mut self,
        files: &mut super::FilePool,
        have: &Bitfield,
        path: &Path,
    ) -> Result<(), StorageError> {
        self.sync(files)?;
        ResumeData::capture(self, have)?.save_atomic(path)
    }
}

/// The daemon's state folder by XDG rules: `$XDG_STATE_HOME/bitloop`, else
/// `~/.local/state/bitloop`; `None` without either variable.
pub fn default_state_dir() -> Option<PathBuf> {
    state_dir_from(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
}

fn state_dir_from(xdg: Option<std::ffi::OsString>, home: Option<std::ffi::OsString>) -> Option<PathBuf> {
    // The XDG spec says relative values are to be ignored.
    if let Some(xdg) = xdg.map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Some(xdg.join("bitloop"));
    }
    let home = home.map(PathBuf::from).filter(|p| p.is_absolute())?;
    Some(home.join(".local/state/bitloop"))
}

/// A file's modification time in ns since the epoch (saturating far from now).
pub(crate) fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dir_follows_xdg() {
        let s = |x: Option<&str>, h: Option<&str>| state_dir_from(x.map(Into::into), h.map(Into::into));
        assert_eq!(s(Some("/st"), Some("/h")), Some("/st/bitloop".into()));
        assert_eq!(s(Some("rel"), Some("/h")), Some("/h/.local/state/bitloop".into()));
        assert_eq!(s(None, Some("/h")), Some("/h/.local/state/bitloop".into()));
        assert_eq!(s(None, None), None);
    }

    #[test]
    fn encoding_round_trips_and_every_cut_is_refused() {
        let mut have = Bitfield::new(11);
        have.set(0);
        have.set(10);
        let resume = ResumeData {
            info_hash: InfoHash([9; 20]),
            piece_length: 16384,
            have,
            files: vec![
                FileStamp::Present {
                    size: 5,
                    mtime_ns: -3,
                },
                FileStamp::Pad,
                FileStamp::Absent,
            ],
        };
        let bytes = resume.encode();
        assert_eq!(bytes.len(), HEADER + 2 + 3 * ENTRY + CHECKSUM);
        assert_eq!(ResumeData::decode(&bytes).unwrap(), resume);
        for len in 0..bytes.len() {
            assert!(ResumeData::decode(&bytes[..len]).is_err(), "cut at {len}");
        }
    }
}
