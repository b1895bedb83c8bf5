//! Torrent files (BEP 3 v1, BEP 12, BEP 27) and magnet links (BEP 9): parsing,
//! validation, the piece↔file layout, and creating new torrents.
//!
//! Parsing is sans-IO: [`Metainfo::parse`] takes bytes and returns a validated
//! value or a [`MetainfoError`] that names what is wrong. Untrusted input is bounded
//! before it is decoded: the file size ([`MAX_TORRENT_BYTES`]), the nesting depth
//! ([`bencode::MAX_DEPTH`]), the number of files, pieces and trackers, and every
//! file path is checked so it cannot leave the download folder.

mod bencode;
pub mod create;
mod error;
mod layout;
pub mod magnet;
pub mod path;

use std::fmt;
use std::path::PathBuf;

use bendy::decoding::Object;
use sha1::{Digest, Sha1};

pub use bencode::MAX_DEPTH;
pub use error::MetainfoError;
pub use layout::{FileSpan, Layout, LayoutFile};
pub use magnet::Magnet;

use bencode::{bendy, Result};

/// Largest torrent file accepted. 16 MiB holds ~800,000 piece hashes.
pub const MAX_TORRENT_BYTES: u64 = 16 * 1024 * 1024;
/// Most files in one torrent.
pub const MAX_FILES: usize = 100_000;
/// Most pieces in one torrent.
pub const MAX_PIECES: usize = 1 << 20;
/// Largest piece length accepted: a piece is verified in memory.
pub const MAX_PIECE_LENGTH: u64 = 64 * 1024 * 1024;
/// Largest total size accepted (1 PiB): keeps every offset far from overflow.
pub const MAX_TOTAL_LENGTH: u64 = 1 << 50;
/// Most trackers over all tiers, and most entries in `url-list`.
pub const MAX_TRACKERS: usize = 1000;

/// The SHA-1 of a torrent's `info` dictionary: the torrent's identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    /// Lowercase hex, as trackers' whitelists and magnet links use.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 40 hex digits.
    pub fn from_hex(hex: &str) -> Option<InfoHash> {
        if hex.len() != 40 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 20];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(InfoHash(out))
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// One file of a torrent, as the torrent lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the download folder, validated: for a single-file torrent
    /// the torrent's name, otherwise `name/…/file`.
    pub path: PathBuf,
    pub length: u64,
    /// A BEP 47 padding file (`attr` contains `p`): zeros that align the next file
    /// to a piece boundary. Storage never creates it on disk.
    pub pad: bool,
}

/// The `info` dictionary, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub piece_length: u64,
    /// One SHA-1 per piece.
    pub pieces: Vec<[u8; 20]>,
    pub files: Vec<FileEntry>,
    /// True for the single-file form (`length` instead of `files`).
    pub single_file: bool,
    /// BEP 27: use only the torrent's trackers (no DHT, no PEX).
    pub private: bool,
}

/// A parsed, validated torrent file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metainfo {
    pub info_hash: InfoHash,
    pub info: Info,
    /// Tracker URLs by tier (BEP 12); `announce` alone becomes one tier.
    pub trackers: Vec<Vec<String>>,
    /// Web seeds (BEP 19), kept for later.
    pub url_list: Vec<String>,
    pub creation_date: Option<i64>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
}

impl Metainfo {
    /// Parses and validates a torrent file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Metainfo> {
        if bytes.len() as u64 > MAX_TORRENT_BYTES {
            return Err(MetainfoError::TooLarge {
                size: bytes.len() as u64,
                limit: MAX_TORRENT_BYTES,
            });
        }
        let mut decoder = bencode::decoder(bytes);
        let Some(Object::Dict(mut dict)) = decoder.next_object().map_err(bendy)? else {
            return Err(MetainfoError::WrongType {
                field: "torrent",
                expected: "a dictionary",
            });
        };
        let mut info = None;
        let mut announce = None;
        let mut tiers = None;
        let mut url_list = Vec::new();
        let (mut creation_date, mut comment, mut created_by) = (None, None, None);
        while let Some((key, value)) = dict.next_pair().map_err(bendy)? {
            match key {
                b"info" => info = Some(parse_info(value)?),
                b"announce" => announce = Some(bencode::text("announce", value)?),
                b"announce-list" => tiers = Some(parse_tiers(value)?),
                b"url-list" => url_list = parse_url_list(value)?,
                b"creation date" => creation_date = Some(bencode::integer("creation date", value)?),
                // Free text: keep what is readable rather than refuse the torrent.
                b"comment" => comment = Some(lossy(bencode::bytes("comment", value)?)),
                b"created by" => created_by = Some(lossy(bencode::bytes("created by", value)?)),
                _ => {} // unknown keys are skipped (bendy still checks their structure)
            }
        }
        drop(dict);
        if decoder.next_object().map_err(bendy)?.is_some() {
            return Err(MetainfoError::Malformed(
                "bytes after the torrent dictionary".into(),
            ));
        }
        let (info_hash, info) = info.ok_or(MetainfoError::Missing("info"))?;
        // BEP 12: when announce-list is present, clients use it and ignore announce.
        let mut trackers: Vec<Vec<String>> = match (tiers, announce) {
            (Some(tiers), _) if !tiers.is_empty() => tiers,
            (_, Some(url)) if !url.is_empty() => vec![vec![url]],
            _ => Vec::new(),
        };
        trackers.retain(|tier| !tier.is_empty());
        Ok(Metainfo {
            info_hash,
            info,
            trackers,
            url_list,
            creation_date,
            comment,
            created_by,
        })
    }

    /// The piece↔file mapping storage uses.
    pub fn layout(&self) -> Layout {
        Layout::new(&self.info)
    }

    pub fn total_length(&self) -> u64 {
        self.info.files.iter().map(|f| f.length).sum()
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses the `info` dictionary and hashes its exact bytes.
fn parse_info(value: Object<'_, '_>) -> Result<(InfoHash, Info)> {
    let Object::Dict(mut dict) = value else {
        return Err(MetainfoError::WrongType {
            field: "info",
            expected: "a dictionary",
        });
    };
    let mut name = None;
    let mut name_utf8 = None;
    let mut piece_length = None;
    let mut pieces = None;
    let mut length = None;
    let mut files = None;
    let mut private = false;
    while let Some((key, value)) = dict.next_pair().map_err(bendy)? {
        match key {
            b"name" => name = Some(bencode::bytes("name", value)?),
            b"name.utf-8" => name_utf8 = Some(bencode::bytes("name.utf-8", value)?),
            b"piece length" => piece_length = Some(bencode::unsigned("piece length", value)?),
            b"pieces" => pieces = Some(bencode::bytes("pieces", value)?),
            b"length" => length = Some(bencode::unsigned("length", value)?),
            b"files" => files = Some(parse_files(value)?),
            b"private" => private = bencode::integer("private", value)? == 1,
            _ => {}
        }
    }
    // The info hash is over the dictionary's bytes exactly as they appear in the file.
    let raw = dict.into_raw().map_err(bendy)?;
    let info_hash = InfoHash(Sha1::digest(raw).into());

    // Prefer the explicitly UTF-8 name some clients add; otherwise `name` must be UTF-8.
    let name = match name_utf8.and_then(|n| std::str::from_utf8(n).ok()) {
        Some(n) => n.to_string(),
        None => {
            let raw = name.ok_or(MetainfoError::Missing("info.name"))?;
            String::from_utf8(raw.to_vec()).map_err(|_| MetainfoError::invalid("name", "not UTF-8"))?
        }
    };
    path::check_component(&name, &name)?;

    let piece_length = piece_length.ok_or(MetainfoError::Missing("info.piece length"))?;
    if piece_length == 0 || piece_length > MAX_PIECE_LENGTH {
        return Err(MetainfoError::invalid(
            "piece length",
            format!("{piece_length} is not in 1..={MAX_PIECE_LENGTH}"),
        ));
    }
    let pieces = pieces.ok_or(MetainfoError::Missing("info.pieces"))?;
    if pieces.len() % 20 != 0 {
        return Err(MetainfoError::invalid("pieces", "length is not a multiple of 20"));
    }
    if pieces.len() / 20 > MAX_PIECES {
        return Err(MetainfoError::invalid(
            "pieces",
            format!("more than {MAX_PIECES} pieces"),
        ));
    }
    let pieces: Vec<[u8; 20]> = pieces
        .chunks_exact(20)
        .map(|c| c.try_into().expect("20 bytes"))
        .collect();

    let (files, single_file) = match (length, files) {
        (Some(length), None) => (
            vec![FileEntry {
                path: PathBuf::from(&name),
                length,
                pad: false,
            }],
            true,
        ),
        (None, Some(list)) => {
            let mut entries = Vec::with_capacity(list.len());
            for (components, length, pad) in list {
                let relative = path::safe_relative_path(&components)?;
                entries.push(FileEntry {
                    path: PathBuf::from(&name).join(relative),
                    length,
                    pad,
                });
            }
            (entries, false)
        }
        (Some(_), Some(_)) => return Err(MetainfoError::invalid("info", "has both `length` and `files`")),
        (None, None) => return Err(MetainfoError::Missing("info.length or info.files")),
    };
    let mut total: u64 = 0;
    for file in &files {
        total = total
            .checked_add(file.length)
            .filter(|t| *t <= MAX_TOTAL_LENGTH)
            .ok_or_else(|| MetainfoError::invalid("length", "total size is over 1 PiB"))?;
    }
    // Pieces must cover the total length exactly: the last piece may be short, not absent or extra.
    let needed = total.div_ceil(piece_length);
    if needed != pieces.len() as u64 {
        return Err(MetainfoError::invalid(
            "pieces",
            format!(
                "{} hashes for {total} bytes in {piece_length}-byte pieces (needs {needed})",
                pieces.len()
            ),
        ));
    }
    Ok((
        info_hash,
        Info {
            name,
            piece_length,
            pieces,
            files,
            single_file,
            private,
        },
    ))
}

/// `files`: a list of `{length, path}` dictionaries (with BEP 47's optional `attr`).
fn parse_files(value: Object<'_, '_>) -> Result<Vec<(Vec<String>, u64, bool)>> {
    let Object::List(mut list) = value else {
        return Err(MetainfoError::WrongType {
            field: "files",
            expected: "a list",
        });
    };
    let mut files = Vec::new();
    while let Some(item) = list.next_object().map_err(bendy)? {
        if files.len() == MAX_FILES {
            return Err(MetainfoError::invalid(
                "files",
                format!("more than {MAX_FILES} files"),
            ));
        }
        let Object::Dict(mut file) = item else {
            return Err(MetainfoError::WrongType {
                field: "files",
                expected: "a list of dictionaries",
            });
        };
        let (mut length, mut components, mut components_utf8) = (None, None, None);
        let mut pad = false;
        while let Some((key, value)) = file.next_pair().map_err(bendy)? {
            match key {
                b"attr" => pad = bencode::bytes("files.attr", value)?.contains(&b'p'),
                b"length" => length = Some(bencode::unsigned("files.length", value)?),
                b"path" => components = Some(path_list("files.path", value)?),
                b"path.utf-8" => components_utf8 = path_list("files.path.utf-8", value).ok(),
                _ => {}
            }
        }
        let components = match components_utf8 {
            Some(Ok(utf8)) => utf8,
            _ => components.ok_or(MetainfoError::Missing("files.path"))??,
        };
        files.push((
            components,
            length.ok_or(MetainfoError::Missing("files.length"))?,
            pad,
        ));
    }
    Ok(files)
}

/// A path list whose components may not be UTF-8; the outer result is structural,
/// the inner says whether every component was UTF-8.
fn path_list(field: &'static str, value: Object<'_, '_>) -> Result<Result<Vec<String>>> {
    let Object::List(mut list) = value else {
        return Err(MetainfoError::WrongType {
            field,
            expected: "a list",
        });
    };
    let mut components = Vec::new();
    let mut utf8 = true;
    while let Some(item) = list.next_object().map_err(bendy)? {
        if components.len() == path::MAX_PATH_DEPTH {
            return Err(MetainfoError::invalid(field, "path nests too deep"));
        }
        match std::str::from_utf8(bencode::bytes(field, item)?) {
            Ok(s) => components.push(s.to_string()),
            Err(_) => utf8 = false,
        }
    }
    Ok(if utf8 {
        Ok(components)
    } else {
        Err(MetainfoError::invalid(field, "a path component is not UTF-8"))
    })
}

/// `announce-list`: a list of tiers, each a list of URLs (BEP 12).
fn parse_tiers(value: Object<'_, '_>) -> Result<Vec<Vec<String>>> {
    let Object::List(mut list) = value else {
        return Err(MetainfoError::WrongType {
            field: "announce-list",
            expected: "a list of lists",
        });
    };
    let mut tiers = Vec::new();
    let mut count = 0;
    while let Some(tier) = list.next_object().map_err(bendy)? {
        let urls = bencode::text_list("announce-list", tier, MAX_TRACKERS)?;
        count += urls.len();
        if count > MAX_TRACKERS {
            return Err(MetainfoError::invalid(
                "announce-list",
                format!("more than {MAX_TRACKERS} trackers"),
            ));
        }
        tiers.push(urls);
    }
    Ok(tiers)
}

/// `url-list`: one URL or a list of them (BEP 19).
fn parse_url_list(value: Object<'_, '_>) -> Result<Vec<String>> {
    match value {
        Object::Bytes(_) => {
            let url = bencode::text("url-list", value)?;
            Ok(if url.is_empty() { Vec::new() } else { vec![url] })
        }
        other => bencode::text_list("url-list", other, MAX_TRACKERS),
    }
}
