//! Typed reads of bendy's decoded objects, with errors that name the field.
//!
//! bendy does the decoding (and enforces canonical form and the depth limit);
//! these helpers only check that a value has the type a field needs.

use bendy::decoding::{Decoder, Object};

use super::error::{from_bendy, MetainfoError};

/// Nesting allowed in a torrent. Real ones need 5 (info → files → file → path → component).
pub const MAX_DEPTH: usize = 32;

pub(crate) type Result<T> = std::result::Result<T, MetainfoError>;

pub(crate) fn decoder(bytes: &[u8]) -> Decoder<'_> {
    Decoder::new(bytes).with_max_depth(MAX_DEPTH)
}

pub(crate) fn bendy(error: bendy::decoding::Error) -> MetainfoError {
    from_bendy(error, MAX_DEPTH)
}

pub(crate) fn bytes<'s>(field: &'static str, value: Object<'_, 's>) -> Result<&'s [u8]> {
    match value {
        Object::Bytes(bytes) => Ok(bytes),
        _ => Err(MetainfoError::WrongType {
            field,
            expected: "a byte string",
        }),
    }
}

pub(crate) fn text(field: &'static str, value: Object<'_, '_>) -> Result<String> {
    let raw = bytes(field, value)?;
    String::from_utf8(raw.to_vec()).map_err(|_| MetainfoError::invalid(field, "not UTF-8"))
}

pub(crate) fn integer(field: &'static str, value: Object<'_, '_>) -> Result<i64> {
    match value {
        Object::Integer(digits) => digits
            .parse()
            .map_err(|_| MetainfoError::invalid(field, format!("integer {digits} out of range"))),
        _ => Err(MetainfoError::WrongType {
            field,
            expected: "an integer",
        }),
    }
}

pub(crate) fn unsigned(field: &'static str, value: Object<'_, '_>) -> Result<u64> {
    let n = integer(field, value)?;
    u64::try_from(n).map_err(|_| MetainfoError::invalid(field, format!("{n} is negative")))
}

/// A list of strings (for `url-list`, a tier of `announce-list`, a `path`),
/// bounded to `limit` entries.
pub(crate) fn text_list(field: &'static str, value: Object<'_, '_>, limit: usize) -> Result<Vec<String>> {
    let Object::List(mut list) = value else {
        return Err(MetainfoError::WrongType {
            field,
            expected: "a list",
        });
    };
    let mut out = Vec::new();
    while let Some(item) = list.next_object().map_err(bendy)? {
        if out.len() == limit {
            return Err(MetainfoError::invalid(
                field,
                format!("more than {limit} entries"),
            ));
        }
        out.push(text(field, item)?);
    }
    Ok(out)
}
