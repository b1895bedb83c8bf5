//! Creating v1 torrents: choose a piece length, hash the files, encode with bendy.
//!
//! The hashing itself is [`PieceHasher`], which takes bytes in any chunking and
//! yields piece hashes; reading the files is the only I/O here.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bendy::encoding::{Encoder, SingleItemEncoder};
use sha1::{Digest, Sha1};

use super::path::safe_relative_path;
use super::{MAX_FILES, MAX_PIECE_LENGTH};

/// Smallest and largest piece length `create` picks by itself.
pub const MIN_AUTO_PIECE_LENGTH: u64 = 16 * 1024;
pub const MAX_AUTO_PIECE_LENGTH: u64 = 16 * 1024 * 1024;
/// Fewest pieces `create` aims for (it picks 1,000–2,000 when sizes allow).
const TARGET_MIN_PIECES: u64 = 1000;

/// What `bitloop create` was asked for.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    pub trackers: Vec<String>,
    pub piece_length: Option<u64>,
    pub private: bool,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    /// Seconds since the Unix epoch; `None` leaves the field out.
    pub creation_date: Option<i64>,
}

/// Why a torrent could not be created.
#[derive(Debug)]
pub enum CreateError {
    Io {
        path: PathBuf,
        error: io::Error,
    },
    /// The source has no bytes to share.
    Empty(PathBuf),
    /// A file name cannot go into a torrent, or an option is out of range.
    Invalid(String),
    /// A file changed size while it was being hashed.
    Changed(PathBuf),
}

impl std::fmt::Display for CreateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CreateError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            CreateError::Empty(path) => {
                write!(f, "{}: no data to share (no files, or all empty)", path.display())
            }
            CreateError::Invalid(why) => write!(f, "{why}"),
            CreateError::Changed(path) => write!(f, "{}: changed size while being hashed", path.display()),
        }
    }
}

impl std::error::Error for CreateError {}

/// The piece length common tools would pick: a power of two giving 1,000–2,000
/// pieces, within 16 KiB..=16 MiB.
pub fn default_piece_length(total: u64) -> u64 {
    let target = (total / TARGET_MIN_PIECES).max(1);
    // Largest power of two not above `target`, so the count lands in [1000, 2000).
    let power = 1u64 << (63 - target.leading_zeros());
    power.clamp(MIN_AUTO_PIECE_LENGTH, MAX_AUTO_PIECE_LENGTH)
}

/// Hashes a byte stream into piece hashes, whatever the chunking of the input.
pub struct PieceHasher {
    piece_length: u64,
    in_piece: u64,
    hasher: Sha1,
    hashes: Vec<u8>,
}

impl PieceHasher {
    pub fn new(piece_length: u64) -> PieceHasher {
        assert!(piece_length > 0);
        PieceHasher {
            piece_length,
            in_piece: 0,
            hasher: Sha1::new(),
            hashes: Vec::new(),
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = ((self.piece_length - self.in_piece) as usize).min(data.len());
            self.hasher.update(&data[..take]);
            self.in_piece += take as u64;
            data = &data[take..];
            if self.in_piece == self.piece_length {
                self.hashes.extend_from_slice(&self.hasher.finalize_reset());
                self.in_piece = 0;
            }
        }
    }

    /// The concatenated 20-byte hashes (the `pieces` field), last short piece included.
    pub fn finish(mut self) -> Vec<u8> {
        if self.in_piece > 0 {
            self.hashes.extend_from_slice(&self.hasher.finalize());
        }
        self.hashes
    }
}

/// One file going into the torrent.
struct SourceFile {
    components: Vec<String>,
    disk_path: PathBuf,
    length: u64,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CreateError + '_ {
    move |error| CreateError::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn utf8_name(path: &Path) -> Result<String, CreateError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| CreateError::Invalid(format!("{}: file name is not UTF-8", path.display())))
}

/// Regular files under `dir`, sorted by path; symlinks are not followed.
fn walk(dir: &Path, prefix: &mut Vec<String>, out: &mut Vec<SourceFile>) -> Result<(), CreateError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_error(dir))?
        .collect::<Result<_, _>>()
        .map_err(io_error(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type().map_err(io_error(&path))?;
        if kind.is_dir() {
            prefix.push(utf8_name(&path)?);
            walk(&path, prefix, out)?;
            prefix.pop();
        } else if kind.is_file() {
            if out.len() == MAX_FILES {
                return Err(CreateError::Invalid(format!("more than {MAX_FILES} files")));
            }
            let mut components = prefix.clone();
            components.push(utf8_name(&path)?);
            let length = entry.metadata().map_err(io_error(&path))?.len();
            out.push(SourceFile {
                components,
                disk_path: path,
                length,
            });
        }
    }
    Ok(())
}

/// Builds a torrent for the file or folder at `source`. `progress(done, total)` is
/// called as bytes are hashed.
pub fn create_torrent(
    source: &Path,
    options: &CreateOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<u8>, CreateError> {
    let name = utf8_name(&source.canonicalize().map_err(io_error(source))?)?;
    safe_relative_path(std::slice::from_ref(&name)).map_err(|e| CreateError::Invalid(e.to_string()))?;
    let meta = std::fs::metadata(source).map_err(io_error(source))?;
    let single_file = meta.is_file();
    let mut files = Vec::new();
    if single_file {
        files.push(SourceFile {
            components: vec![name.clone()],
            disk_path: source.into(),
            length: meta.len(),
        });
    } else {
        walk(source, &mut Vec::new(), &mut files)?;
    }
    let total: u64 = files.iter().map(|f| f.length).sum();
    if total == 0 {
        return Err(CreateError::Empty(source.into()));
    }
    let piece_length = options
        .piece_length
        .unwrap_or_else(|| default_piece_length(total));
    if piece_length == 0 || piece_length > MAX_PIECE_LENGTH {
        return Err(CreateError::Invalid(format!(
            "piece length must be in 1..={MAX_PIECE_LENGTH}"
        )));
    }

    let mut hasher = PieceHasher::new(piece_length);
    let mut buffer = vec![0u8; 1 << 20];
    let mut done = 0;
    for file in &files {
        let mut reader = File::open(&file.disk_path).map_err(io_error(&file.disk_path))?;
        let mut read = 0;
        loop {
            let n = reader.read(&mut buffer).map_err(io_error(&file.disk_path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            read += n as u64;
            done += n as u64;
            progress(done, total);
        }
        if read != file.length {
            return Err(CreateError::Changed(file.disk_path.clone()));
        }
    }
    let pieces = hasher.finish();
    encode(&name, single_file, &files, piece_length, &pieces, options)
        .map_err(|e| CreateError::Invalid(format!("encoding failed: {e}")))
}

fn encode(
    name: &str,
    single_file: bool,
    files: &[SourceFile],
    piece_length: u64,
    pieces: &[u8],
    options: &CreateOptions,
) -> Result<Vec<u8>, bendy::encoding::Error> {
    let info = |e: SingleItemEncoder| {
        e.emit_dict(|mut d| {
            if single_file {
                d.emit_pair(b"length", files[0].length)?;
            } else {
                d.emit_pair_with(b"files", |e| {
                    e.emit_list(|e| {
                        for file in files {
                            e.emit_dict(|mut f| {
                                f.emit_pair(b"length", file.length)?;
                                f.emit_pair_with(b"path", |e| {
                                    e.emit_list(|e| {
                                        for component in &file.components {
                                            e.emit_str(component)?;
                                        }
                                        Ok(())
                                    })
                                })
                            })?;
                        }
                        Ok(())
                    })
                })?;
            }
            d.emit_pair(b"name", name)?;
            d.emit_pair(b"piece length", piece_length)?;
            d.emit_pair_with(b"pieces", |e| e.emit_bytes(pieces))?;
            if options.private {
                d.emit_pair(b"private", 1)?;
            }
            Ok(())
        })
    };
    // Keys in byte order: bendy checks it and refuses otherwise.
    let mut encoder = Encoder::new();
    encoder.emit_dict(|mut d| {
        if let Some(first) = options.trackers.first() {
            d.emit_pair(b"announce", first)?;
        }
        if options.trackers.len() > 1 {
            // One tracker per tier, in the order given (BEP 12).
            d.emit_pair_with(b"announce-list", |e| {
                e.emit_list(|e| {
                    for tracker in &options.trackers {
                        e.emit_list(|e| e.emit_str(tracker))?;
                    }
                    Ok(())
                })
            })?;
        }
        if let Some(comment) = &options.comment {
            d.emit_pair(b"comment", comment)?;
        }
        if let Some(created_by) = &options.created_by {
            d.emit_pair(b"created by", created_by)?;
        }
        if let Some(date) = options.creation_date {
            d.emit_pair(b"creation date", date)?;
        }
        d.emit_pair_with(b"info", info)
    })?;
    encoder.get_output()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_length_gives_one_to_two_thousand_pieces() {
        for total in [20 << 20, 256 << 20, 700 << 20, 4 << 30, 30u64 << 30] {
            let pl = default_piece_length(total);
            let count = total.div_ceil(pl);
            assert!(pl.is_power_of_two());
            assert!((1000..2000).contains(&count), "{total}: {pl} → {count}");
        }
        assert_eq!(default_piece_length(1), MIN_AUTO_PIECE_LENGTH);
        // Past 32 GiB the 16 MiB cap wins and the count grows instead.
        assert_eq!(default_piece_length(1 << 50), MAX_AUTO_PIECE_LENGTH);
    }

    #[test]
    fn hasher_is_independent_of_chunking() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 256) as u8).collect();
        let mut whole = PieceHasher::new(16384);
        whole.update(&data);
        let mut bytewise = PieceHasher::new(16384);
        for chunk in data.chunks(7) {
            bytewise.update(chunk);
        }
        let (a, b) = (whole.finish(), bytewise.finish());
        assert_eq!(a, b);
        assert_eq!(a.len(), 20 * 7);
        assert_eq!(&a[..20], Sha1::digest(&data[..16384]).as_slice());
        assert_eq!(&a[120..], Sha1::digest(&data[6 * 16384..]).as_slice());
    }
}
