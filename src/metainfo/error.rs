//! Why a torrent file or magnet link was refused.

use std::fmt;

/// Everything that can be wrong with a torrent or magnet link, named after what
/// the input did wrong, so a log line reads like a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetainfoError {
    /// The input is larger than any sane torrent.
    TooLarge { size: u64, limit: u64 },
    /// Dictionary keys are unsorted or repeated. bitloop decodes canonical bencode
    /// only (see `docs/metainfo.md`).
    NotCanonical,
    /// Lists and dictionaries nest deeper than any torrent needs.
    TooDeep { limit: usize },
    /// The bencode itself is broken (truncated, bad syntax, trailing bytes).
    Malformed(String),
    /// A required field is absent.
    Missing(&'static str),
    /// A field has the wrong bencode type.
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    /// A field has an impossible value.
    Invalid { field: &'static str, reason: String },
    /// A file path would escape the download folder or is otherwise unusable.
    UnsafePath { path: String, reason: &'static str },
    /// A magnet link could not be understood.
    Magnet(String),
}

impl fmt::Display for MetainfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetainfoError::TooLarge { size, limit } => {
                write!(f, "torrent is {size} bytes, more than the {limit}-byte limit")
            }
            MetainfoError::NotCanonical => write!(
                f,
                "torrent is not canonical bencode: dictionary keys are unsorted or repeated"
            ),
            MetainfoError::TooDeep { limit } => write!(f, "torrent nests deeper than {limit} levels"),
            MetainfoError::Malformed(why) => write!(f, "torrent is not valid bencode: {why}"),
            MetainfoError::Missing(field) => write!(f, "torrent has no `{field}`"),
            MetainfoError::WrongType { field, expected } => write!(f, "`{field}` should be {expected}"),
            MetainfoError::Invalid { field, reason } => write!(f, "`{field}` is invalid: {reason}"),
            MetainfoError::UnsafePath { path, reason } => write!(f, "unsafe file path {path:?}: {reason}"),
            MetainfoError::Magnet(why) => write!(f, "bad magnet link: {why}"),
        }
    }
}

impl std::error::Error for MetainfoError {}

impl MetainfoError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> MetainfoError {
        MetainfoError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// Classifies a bendy decoding error. bendy does not export its error kinds, so
/// we match its messages; `tests` pins them so an upgrade that changes them fails.
pub(crate) fn from_bendy(error: bendy::decoding::Error, depth_limit: usize) -> MetainfoError {
    let text = error.to_string();
    if text.contains("Keys were not sorted") {
        MetainfoError::NotCanonical
    } else if text.contains("Maximum nesting depth exceeded") {
        MetainfoError::TooDeep { limit: depth_limit }
    } else {
        MetainfoError::Malformed(text.lines().next().unwrap_or_default().to_string())
    }
}
