//! Magnet links (BEP 9): `magnet:?xt=urn:btih:<hash>&dn=<name>&tr=<tracker>&x.pe=<peer>`.
//!
//! The info hash may be 40 hex digits or 32 base32 characters. Values are
//! percent-decoded; `+` is a space only in `dn`, where browsers put it.

use super::error::MetainfoError;
use super::{InfoHash, MAX_TRACKERS};

/// Longest magnet link accepted.
pub const MAX_MAGNET_BYTES: usize = 64 * 1024;

/// A parsed magnet link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: InfoHash,
    /// `dn`: a display name until the metadata arrives.
    pub name: Option<String>,
    /// `tr`: trackers, each its own tier, in order.
    pub trackers: Vec<String>,
    /// `x.pe`: peers to try directly (`host:port`).
    pub peers: Vec<String>,
}

fn bad(why: impl Into<String>) -> MetainfoError {
    MetainfoError::Magnet(why.into())
}

impl Magnet {
    pub fn parse(uri: &str) -> Result<Magnet, MetainfoError> {
        if uri.len() > MAX_MAGNET_BYTES {
            return Err(bad(format!("longer than {MAX_MAGNET_BYTES} bytes")));
        }
        let query = uri
            .strip_prefix("magnet:?")
            .or_else(|| uri.strip_prefix("MAGNET:?"))
            .ok_or_else(|| bad("does not start with `magnet:?`"))?;
        let mut info_hash = None;
        let mut saw_v2_only = false;
        let (mut name, mut trackers, mut peers) = (None, Vec::new(), Vec::new());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "xt" => {
                    let value = percent_decode(value, false)?;
                    if let Some(hash) = value.strip_prefix("urn:btih:") {
                        if info_hash.is_none() {
                            info_hash = Some(parse_btih(hash)?);
                        }
                    } else if value.starts_with("urn:btmh:") {
                        saw_v2_only = true;
                    }
                }
                "dn" => name = Some(percent_decode(value, true)?),
                "tr" | "tr.1" | "tr.2" | "tr.3" | "tr.4" | "tr.5" => {
                    if trackers.len() == MAX_TRACKERS {
                        return Err(bad(format!("more than {MAX_TRACKERS} trackers")));
                    }
                    let url = percent_decode(value, false)?;
                    if !trackers.contains(&url) {
                        trackers.push(url);
                    }
                }
                "x.pe" => {
                    if peers.len() == MAX_TRACKERS {
                        return Err(bad(format!("more than {MAX_TRACKERS} peers")));
                    }
                    peers.push(percent_decode(value, false)?);
                }
                _ => {} // ws, xl, so, kt...: not used yet
            }
        }
        let info_hash = info_hash.ok_or_else(|| {
            if saw_v2_only {
                bad("only a v2 (btmh) hash: bitloop supports v1 torrents")
            } else {
                bad("no `xt=urn:btih:` info hash")
            }
        })?;
        Ok(Magnet {
            info_hash,
            name,
            trackers,
            peers,
        })
    }

    /// The link in canonical form (hex hash), as `bitloop info` prints it.
    pub fn to_uri(&self) -> String {
        let mut uri = format!("magnet:?xt=urn:btih:{}", self.info_hash.to_hex());
        if let Some(name) = &self.name {
            uri.push_str("&dn=");
            uri.push_str(&percent_encode(name.as_bytes()));
        }
        for tracker in &self.trackers {
            uri.push_str("&tr=");
            uri.push_str(&percent_encode(tracker.as_bytes()));
        }
        uri
    }
}

fn parse_btih(hash: &str) -> Result<InfoHash, MetainfoError> {
    match hash.len() {
        40 => InfoHash::from_hex(hash).ok_or_else(|| bad(format!("`{hash}` is not 40 hex digits"))),
        32 => base32_decode(hash)
            .map(InfoHash)
            .ok_or_else(|| bad(format!("`{hash}` is not valid base32"))),
        n => Err(bad(format!(
            "info hash has {n} characters; expected 40 (hex) or 32 (base32)"
        ))),
    }
}

/// RFC 4648 base32 (no padding), 32 characters → 20 bytes; case-insensitive.
fn base32_decode(text: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let mut buffer: u64 = 0;
    let mut bits = 0;
    let mut at = 0;
    for c in text.bytes() {
        let value = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buffer = buffer << 5 | u64::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(at)? = (buffer >> bits) as u8;
            at += 1;
        }
    }
    (at == 20).then_some(out)
}

/// Decodes `%XX` escapes (and `+` as space when `plus_is_space`); the result must be UTF-8.
pub fn percent_decode(text: &str, plus_is_space: bool) -> Result<String, MetainfoError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(|| bad("truncated %-escape"))?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad("bad %-escape"))?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad(format!("bad %-escape `%{hex}`")))?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad("a value is not UTF-8 after decoding"))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub use crate::percent::encode as percent_encode;

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    #[test]
    fn hex_and_base32_name_the_same_hash() {
        let hex = Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}")).unwrap();
        // The same 20 bytes in base32.
        let b32 = Magnet::parse("magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK").unwrap();
        assert_eq!(hex.info_hash.to_hex(), HEX);
        assert_eq!(b32.info_hash, hex.info_hash);
        let lower = Magnet::parse("magnet:?xt=urn:btih:yex6dqdlxisuvhoj6um3gnnkpqjwpkek").unwrap();
        assert_eq!(lower.info_hash, hex.info_hash);
    }

    #[test]
    fn name_trackers_and_peers_are_decoded() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{HEX}&dn=Big+Buck%20Bunny&tr=udp%3A%2F%2Ftracker.example%3A80\
             &tr=http%3A%2F%2Fa.example%2Fannounce&tr=udp%3A%2F%2Ftracker.example%3A80&x.pe=127.0.0.1:6881"
        ))
        .unwrap();
        assert_eq!(m.name.as_deref(), Some("Big Buck Bunny"));
        assert_eq!(
            m.trackers,
            vec!["udp://tracker.example:80", "http://a.example/announce"]
        );
        assert_eq!(m.peers, vec!["127.0.0.1:6881"]);
        assert_eq!(Magnet::parse(&m.to_uri()).unwrap(), Magnet { peers: vec![], ..m });
    }

    #[test]
    fn bad_links_are_refused_with_a_reason() {
        for (uri, expect) in [
            ("http://example.com", "magnet:?"),
            ("magnet:?dn=x", "no `xt=urn:btih:`"),
            ("magnet:?xt=urn:btih:1234", "4 characters"),
            (
                "magnet:?xt=urn:btih:zz2fe1c06bba254a9dc9f519b335aa7c1367a88a",
                "hex",
            ),
            ("magnet:?xt=urn:btih:11111111111111111111111111111111", "base32"),
            ("magnet:?xt=urn:btmh:1220abcd", "v2"),
            (
                "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&dn=%4",
                "truncated",
            ),
            (
                "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&dn=%ff",
                "UTF-8",
            ),
        ] {
            let err = Magnet::parse(uri).unwrap_err().to_string();
            assert!(err.contains(expect), "{uri}: {err}");
        }
    }
}
