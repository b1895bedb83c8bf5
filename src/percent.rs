//! Percent-encoding (RFC 3986) of binary values, shared by magnet links and HTTP
//! tracker requests: unreserved characters stay, every other byte becomes `%XX`.

use std::fmt::Write;

/// Appends `bytes`, percent-encoded, to `out`.
pub fn encode_into(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// `bytes`, percent-encoded.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    encode_into(bytes, &mut out);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn unreserved_stay_everything_else_is_escaped() {
        assert_eq!(super::encode(b"aZ09-._~ /\x00\xff"), "aZ09-._~%20%2F%00%FF");
    }
}
