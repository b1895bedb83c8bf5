//! A lenient bencode reader for what other clients send us: tracker responses now,
//! BEP 10 extension messages and DHT (KRPC) packets later.
//!
//! Torrent files are read strictly elsewhere (`metainfo`, with bendy), because their
//! info hash depends on the exact bytes. Here we read what libtorrent, rqbit and
//! aria2c read:
//!
//! - dictionary keys in any order, and repeated keys: **the first occurrence wins**
//!   (as libtorrent's `bdecode` lookups, which scan from the start);
//! - integers with leading zeros or `-0`, and string lengths with leading zeros;
//! - bytes after the top-level value are left to the caller ([`decode_prefix`]).
//!
//! What stays an error: truncation, a key that is not a byte string, an integer that
//! does not fit an `i64`, a string longer than the input, nesting deeper than
//! [`Limits::max_depth`] and more than [`Limits::max_values`] values. The reader
//! borrows from the input (byte strings are slices of it, zero-copy); lists and
//! dictionaries are one `Vec` each, so memory is bounded by the value count.

use std::fmt;

/// Bounds on the work one input can cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of lists and dictionaries (the top level counts as 1).
    pub max_depth: usize,
    /// Most values (integers, strings, lists, dictionaries) in one input.
    pub max_values: usize,
}

impl Default for Limits {
    /// Depth 32 and 100,000 values: a tracker response with 5,000 dictionary-model
    /// peers fits (four values each); a 48-byte-per-entry tree stays under 5 MiB.
    fn default() -> Limits {
        Limits {
            max_depth: 32,
            max_values: 100_000,
        }
    }
}

/// A decoded value, borrowing its byte strings from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Integer(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    Dict(Dict<'a>),
}

/// A dictionary in the order its entries arrived (not necessarily sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dict<'a> {
    entries: Vec<(&'a [u8], Value<'a>)>,
}

/// What was wrong with the input, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// Byte offset in the input where the problem was found.
    pub offset: usize,
    pub kind: ErrorKind,
}

/// The kinds of bad input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ended inside a value.
    Truncated,
    /// A byte that cannot start a value.
    UnexpectedByte(u8),
    /// A dictionary key that is not a byte string.
    KeyNotBytes,
    /// An integer that is empty, not decimal, or outside `i64`.
    BadInteger,
    /// A string length that is not decimal or exceeds the input.
    BadLength,
    /// Nesting deeper than `Limits::max_depth`.
    TooDeep,
    /// More values than `Limits::max_values`.
    TooManyValues,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::Truncated => "input ends inside a value".to_string(),
            ErrorKind::UnexpectedByte(b) => format!("unexpected byte 0x{b:02x}"),
            ErrorKind::KeyNotBytes => "dictionary key is not a byte string".to_string(),
            ErrorKind::BadInteger => "bad integer".to_string(),
            ErrorKind::BadLength => "bad string length".to_string(),
            ErrorKind::TooDeep => "nested too deeply".to_string(),
            ErrorKind::TooManyValues => "too many values".to_string(),
        };
        write!(f, "bencode: {what} at byte {}", self.offset)
    }
}

impl std::error::Error for Error {}

/// Decodes one value that must fill the whole input.
pub fn decode(input: &[u8], limits: Limits) -> Result<Value<'_>, Error> {
    let (value, used) = decode_prefix(input, limits)?;
    if used != input.len() {
        return Err(Error {
            offset: used,
            kind: ErrorKind::UnexpectedByte(input[used]),
        });
    }
    Ok(value)
}

/// Decodes the value at the start of `input`; returns it and the bytes it used.
pub fn decode_prefix(input: &[u8], limits: Limits) -> Result<(Value<'_>, usize), Error> {
    let mut reader = Reader {
        input,
        at: 0,
        values: 0,
        limits,
    };
    let value = reader.value(1)?;
    Ok((value, reader.at))
}

struct Reader<'a> {
    input: &'a [u8],
    at: usize,
    values: usize,
    limits: Limits,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, kind: ErrorKind) -> Result<T, Error> {
        Err(Error {
            offset: self.at,
            kind,
        })
    }

    fn peek(&self) -> Result<u8, Error> {
        match self.input.get(self.at) {
            Some(&b) => Ok(b),
            None => self.fail(ErrorKind::Truncated),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, Error> {
        self.values += 1;
        if self.values > self.limits.max_values {
            return self.fail(ErrorKind::TooManyValues);
        }
        match self.peek()? {
            b'i' => {
                self.at += 1;
                let digits = self.until(b'e')?;
                parse_integer(digits).map(Value::Integer).ok_or(Error {
                    offset: self.at - digits.len() - 1,
                    kind: ErrorKind::BadInteger,
                })
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' | b'd' if depth > self.limits.max_depth => self.fail(ErrorKind::TooDeep),
            b'l' => {
                self.at += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.at += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.at += 1;
                let mut entries = Vec::new();
                while self.peek()? != b'e' {
                    if !self.peek()?.is_ascii_digit() {
                        return self.fail(ErrorKind::KeyNotBytes);
                    }
                    let key = self.bytes()?;
                    let value = self.value(depth + 1)?;
                    entries.push((key, value));
                }
                self.at += 1;
                Ok(Value::Dict(Dict { entries }))
            }
            other => self.fail(ErrorKind::UnexpectedByte(other)),
        }
    }

    /// The bytes up to (not including) `end`, which is consumed.
    fn until(&mut self, end: u8) -> Result<&'a [u8], Error> {
        let rest = &self.input[self.at..];
        // Longer than any i64 or usize in decimal: refuse rather than scan far.
        let window = &rest[..rest.len().min(24)];
        match window.iter().position(|&b| b == end) {
            Some(n) => {
                self.at += n + 1;
                Ok(&rest[..n])
            }
            None if rest.len() < 24 => self.fail(ErrorKind::Truncated),
            None => self.fail(ErrorKind::BadInteger),
        }
    }

    /// A byte string: `<length>:<bytes>`.
    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let start = self.at;
        let digits = self.until(b':').map_err(|e| Error {
            kind: if e.kind == ErrorKind::BadInteger {
                ErrorKind::BadLength
            } else {
                e.kind
            },
            ..e
        })?;
        let length = std::str::from_utf8(digits)
            .ok()
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<usize>().ok());
        let Some(length) = length else {
            return Err(Error {
                offset: start,
                kind: ErrorKind::BadLength,
            });
        };
        if length > self.input.len() - self.at {
            return Err(Error {
                offset: start,
                kind: ErrorKind::Truncated,
            });
        }
        let bytes = &self.input[self.at..self.at + length];
        self.at += length;
        Ok(bytes)
    }
}

/// `-?[0-9]+` as an `i64` (leading zeros and `-0` accepted).
fn parse_integer(digits: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(digits).ok()?;
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl<'a> Value<'a> {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string as UTF-8 text, if it is.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match self {
            Value::Dict(dict) => Some(dict),
            _ => None,
        }
    }
}

impl<'a> Dict<'a> {
    /// The value of `key`; for a repeated key, its first occurrence.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn int(&self, key: &[u8]) -> Option<i64> {
        self.get(key)?.as_int()
    }

    pub fn bytes(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.get(key)?.as_bytes()
    }

    pub fn str(&self, key: &[u8]) -> Option<&'a str> {
        self.get(key)?.as_str()
    }

    pub fn list(&self, key: &[u8]) -> Option<&[Value<'a>]> {
        self.get(key)?.as_list()
    }

    pub fn dict(&self, key: &[u8]) -> Option<&Dict<'a>> {
        self.get(key)?.as_dict()
    }

    /// Entries in the order they arrived, repeats included.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &Value<'a>)> {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Value<'_>, Error> {
        decode(input, Limits::default())
    }

    #[test]
    fn values_of_every_kind() {
        let v = parse(b"d3:numi-42e3:str5:hello4:listli1e0:e4:dictd1:ai0eee").unwrap();
        let d = v.as_dict().unwrap();
        assert_eq!(d.int(b"num"), Some(-42));
        assert_eq!(d.str(b"str"), Some("hello"));
        assert_eq!(d.list(b"list").unwrap(), &[Value::Integer(1), Value::Bytes(b"")]);
        assert_eq!(d.dict(b"dict").unwrap().int(b"a"), Some(0));
        assert_eq!(d.len(), 4);
        assert!(d.get(b"missing").is_none());
    }

    #[test]
    fn unsorted_and_repeated_keys_are_read_and_the_first_wins() {
        let v = parse(b"d5:peers0:8:intervali900e8:intervali60ee").unwrap();
        let d = v.as_dict().unwrap();
        assert_eq!(d.int(b"interval"), Some(900), "first occurrence wins");
        assert_eq!(d.iter().count(), 3, "repeats are kept in order");
    }

    #[test]
    fn lenient_numbers() {
        assert_eq!(parse(b"i007e").unwrap(), Value::Integer(7));
        assert_eq!(parse(b"i-0e").unwrap(), Value::Integer(0));
        assert_eq!(parse(b"03:abc").unwrap(), Value::Bytes(b"abc"));
    }

    #[test]
    fn bad_input_is_an_error_with_its_offset() {
        let kind = |input: &[u8]| parse(input).unwrap_err().kind;
        assert_eq!(kind(b""), ErrorKind::Truncated);
        assert_eq!(kind(b"d3:abc"), ErrorKind::Truncated);
        assert_eq!(kind(b"5:abc"), ErrorKind::Truncated);
        assert_eq!(kind(b"i12"), ErrorKind::Truncated);
        assert_eq!(kind(b"ie"), ErrorKind::BadInteger);
        assert_eq!(kind(b"i1-2e"), ErrorKind::BadInteger);
        assert_eq!(kind(b"i99999999999999999999e"), ErrorKind::BadInteger);
        assert_eq!(kind(b"i123456789012345678901234567890e"), ErrorKind::BadInteger);
        assert_eq!(kind(b"di1ei2ee"), ErrorKind::KeyNotBytes);
        assert_eq!(kind(b"x"), ErrorKind::UnexpectedByte(b'x'));
        assert_eq!(kind(b"99999999999999999999999999:a"), ErrorKind::BadLength);
        assert_eq!(kind(b"i1etrailing"), ErrorKind::UnexpectedByte(b't'));
        assert_eq!(parse(b"d1:a").unwrap_err().offset, 4);
        let (v, used) = decode_prefix(b"i1e\n", Limits::default()).unwrap();
        assert_eq!((v, used), (Value::Integer(1), 3));
    }

    #[test]
    fn depth_and_value_count_are_bounded() {
        let limits = Limits {
            max_depth: 3,
            max_values: 10,
        };
        assert!(decode(b"llleee", limits).is_ok());
        assert_eq!(decode(b"lllleeee", limits).unwrap_err().kind, ErrorKind::TooDeep);
        let deep = vec![b'l'; 1_000_000];
        assert_eq!(parse(&deep).unwrap_err().kind, ErrorKind::TooDeep);
        assert!(decode(b"li1ei2ei3ei4ei5ei6ei7ei8ei9ee", limits).is_ok());
        assert_eq!(
            decode(b"li1ei2ei3ei4ei5ei6ei7ei8ei9ei10ee", limits)
                .unwrap_err()
                .kind,
            ErrorKind::TooManyValues
        );
    }

    #[test]
    fn arbitrary_and_mutated_input_never_panics() {
        // A bounded stand-in for the fuzz target: xorshift-mutated valid messages and
        // random bytes; every result is a value or an error.
        let seeds: [&[u8]; 3] = [
            b"d8:intervali1800e5:peers6:\x7f\x00\x00\x01\x1a\xe1e",
            b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe",
            b"ld1:ai-1eeli0el3:xyzeee",
        ];
        let mut rng = crate::random::Xorshift::new(0x5eed);
        for round in 0..20_000 {
            let mut input = seeds[round % seeds.len()].to_vec();
            for _ in 0..(rng.below(4) + 1) {
                let at = rng.below(input.len() as u64) as usize;
                match rng.below(3) {
                    0 => input[at] = rng.below(256) as u8,
                    1 => input.truncate(at),
                    _ => input.insert(at, b"ilde:0123456789-"[rng.below(16) as usize]),
                }
                if input.is_empty() {
                    break;
                }
            }
            let _ = decode_prefix(&input, Limits::default());
            let random: Vec<u8> = (0..rng.below(64)).map(|_| rng.below(256) as u8).collect();
            let _ = decode(&random, Limits::default());
        }
    }
}
