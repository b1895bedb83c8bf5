//! The peer wire protocol (BEP 3) with the Fast extension (BEP 6), sans-IO.
//!
//! `decode` looks at the front of a receive buffer and returns one whole message
//! (borrowing its payload from the buffer), `Ok(None)` when more bytes are needed,
//! or an error naming what the peer did wrong. Every length prefix is checked
//! against [`Limits`] before anything is read or allocated, so a peer cannot make
//! us buffer more than one block plus its header. `encode` appends to a buffer.

use std::net::IpAddr;

use sha1::{Digest, Sha1};

use crate::metainfo::InfoHash;
use crate::tracker::PeerId;

/// The protocol string of the handshake.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Bytes in a handshake: length byte, protocol, reserved, info hash, peer id.
pub const HANDSHAKE_LEN: usize = 1 + 19 + 8 + 20 + 20;
/// The block size we request and the largest we serve.
pub const BLOCK: u32 = 16 * 1024;
/// Header of a `piece` message after the length prefix: id, index, begin.
const PIECE_HEADER: usize = 9;
/// Largest extension-protocol message accepted (a metadata piece plus its dictionary).
pub const MAX_EXTENDED: usize = 64 * 1024;

/// Reserved-bit positions (byte, mask) of the handshake.
pub const EXTENSION_PROTOCOL: (usize, u8) = (5, 0x10);
pub const FAST: (usize, u8) = (7, 0x04);
pub const DHT: (usize, u8) = (7, 0x01);

/// Message ids.
mod id {
    pub const CHOKE: u8 = 0;
    pub const UNCHOKE: u8 = 1;
    pub const INTERESTED: u8 = 2;
    pub const NOT_INTERESTED: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const BITFIELD: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const PIECE: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const PORT: u8 = 9;
    pub const SUGGEST: u8 = 0x0d;
    pub const HAVE_ALL: u8 = 0x0e;
    pub const HAVE_NONE: u8 = 0x0f;
    pub const REJECT: u8 = 0x10;
    pub const ALLOWED_FAST: u8 = 0x11;
    pub const EXTENDED: u8 = 20;
}

/// The handshake's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
}

impl Handshake {
    /// Our handshake: Fast and the extension protocol advertised.
    pub fn ours(info_hash: InfoHash, peer_id: PeerId) -> Handshake {
        let mut reserved = [0u8; 8];
        reserved[FAST.0] |= FAST.1;
        reserved[EXTENSION_PROTOCOL.0] |= EXTENSION_PROTOCOL.1;
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    pub fn supports(&self, bit: (usize, u8)) -> bool {
        self.reserved[bit.0] & bit.1 != 0
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(19);
        out.extend_from_slice(PROTOCOL);
        out.extend_from_slice(&self.reserved);
        out.extend_from_slice(&self.info_hash.0);
        out.extend_from_slice(&self.peer_id.0);
    }

    /// Decodes a handshake from the front of `buf`; `Ok(None)` until 68 bytes are there.
    pub fn decode(buf: &[u8]) -> Result<Option<Handshake>, WireError> {
        if !buf.is_empty() && buf[0] != 19 {
            return Err(WireError::NotBitTorrent);
        }
        if buf.len() < HANDSHAKE_LEN {
            // Reject a wrong protocol string as early as its bytes arrive.
            let seen = &buf[1.min(buf.len())..buf.len().min(20)];
            if seen != &PROTOCOL[..seen.len()] {
                return Err(WireError::NotBitTorrent);
            }
            return Ok(None);
        }
        if &buf[1..20] != PROTOCOL {
            return Err(WireError::NotBitTorrent);
        }
        Ok(Some(Handshake {
            reserved: buf[20..28].try_into().expect("8 bytes"),
            info_hash: InfoHash(buf[28..48].try_into().expect("20 bytes")),
            peer_id: PeerId(buf[48..68].try_into().expect("20 bytes")),
        }))
    }
}

/// One peer wire message; byte payloads borrow from the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(&'a [u8]),
    Request(BlockRef),
    Piece {
        index: u32,
        begin: u32,
        data: &'a [u8],
    },
    Cancel(BlockRef),
    Port(u16),
    /// BEP 6.
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject(BlockRef),
    AllowedFast(u32),
    /// BEP 10: an extension message.
    Extended {
        id: u8,
        payload: &'a [u8],
    },
    /// A message id we do not know, skipped.
    Unknown(u8),
}

/// A block: piece index, offset, length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
}

/// What a peer did wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    NotBitTorrent,
    /// A length prefix larger than the message may be.
    TooLong {
        id: Option<u8>,
        length: usize,
        limit: usize,
    },
    /// A message shorter than its kind needs.
    TooShort {
        id: u8,
        length: usize,
    },
    /// A bitfield of the wrong size or with spare bits set.
    BadBitfield(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::NotBitTorrent => write!(f, "peer does not speak the BitTorrent protocol"),
            WireError::TooLong { id, length, limit } => {
                write!(
                    f,
                    "peer sent a {length}-byte message (id {id:?}), more than {limit}"
                )
            }
            WireError::TooShort { id, length } => {
                write!(f, "peer sent a {length}-byte message with id {id}, too short")
            }
            WireError::BadBitfield(why) => write!(f, "peer sent a bad bitfield: {why}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Sizes a torrent allows, for checking length prefixes.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `None` before the metadata is known (a magnet link): a bitfield may then be
    /// as long as the largest torrent's, and its size is checked when the
    /// metadata arrives.
    pub piece_count: Option<u32>,
}

impl Limits {
    /// Limits for a torrent of `piece_count` pieces.
    pub fn pieces(piece_count: u32) -> Limits {
        Limits {
            piece_count: Some(piece_count),
        }
    }

    fn bitfield_bytes(&self) -> usize {
        match self.piece_count {
            Some(count) => (count as usize).div_ceil(8),
            None => crate::metainfo::MAX_PIECES.div_ceil(8),
        }
    }

    /// The largest message of kind `id` (the length prefix's value).
    fn max_length(&self, id: u8) -> usize {
        match id {
            id::PIECE => PIECE_HEADER + BLOCK as usize,
            id::BITFIELD => 1 + self.bitfield_bytes(),
            id::EXTENDED => MAX_EXTENDED,
            // Everything else is small; unknown ids get room for small extensions.
            _ => 1 + 16,
        }
    }

    /// The largest message of any kind.
    pub fn max_message(&self) -> usize {
        4 + (PIECE_HEADER + BLOCK as usize)
            .max(1 + self.bitfield_bytes())
            .max(MAX_EXTENDED)
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes the message at the front of `buf`: `Ok(Some((message, bytes used)))`,
/// `Ok(None)` when it is not complete yet, or an error.
pub fn decode<'a>(buf: &'a [u8], limits: &Limits) -> Result<Option<(Message<'a>, usize)>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let length = be32(buf) as usize;
    if length == 0 {
        return Ok(Some((Message::KeepAlive, 4)));
    }
    // The id is checked as soon as it arrives, so an oversize prefix is refused
    // before we wait for (and buffer) its body.
    let Some(&id) = buf.get(4) else { return Ok(None) };
    let limit = limits.max_length(id);
    if length > limit {
        return Err(WireError::TooLong {
            id: Some(id),
            length,
            limit,
        });
    }
    if buf.len() < 4 + length {
        return Ok(None);
    }
    let body = &buf[5..4 + length];
    let need = |n: usize| {
        if body.len() == n {
            Ok(())
        } else {
            Err(WireError::TooShort { id, length })
        }
    };
    let block = |body: &[u8]| BlockRef {
        index: be32(body),
        begin: be32(&body[4..]),
        length: be32(&body[8..]),
    };
    let message = match id {
        id::CHOKE => need(0).map(|_| Message::Choke)?,
        id::UNCHOKE => need(0).map(|_| Message::Unchoke)?,
        id::INTERESTED => need(0).map(|_| Message::Interested)?,
        id::NOT_INTERESTED => need(0).map(|_| Message::NotInterested)?,
        id::HAVE => need(4).map(|_| Message::Have(be32(body)))?,
        id::BITFIELD => {
            if let Some(count) = limits.piece_count {
                check_bitfield(body, count)?;
            }
            Message::Bitfield(body)
        }
        id::REQUEST => need(12).map(|_| Message::Request(block(body)))?,
        id::PIECE => {
            if body.len() < 8 {
                return Err(WireError::TooShort { id, length });
            }
            Message::Piece {
                index: be32(body),
                begin: be32(&body[4..]),
                data: &body[8..],
            }
        }
        id::CANCEL => need(12).map(|_| Message::Cancel(block(body)))?,
        id::PORT => need(2).map(|_| Message::Port(u16::from_be_bytes([body[0], body[1]])))?,
        id::SUGGEST => need(4).map(|_| Message::Suggest(be32(body)))?,
        id::HAVE_ALL => need(0).map(|_| Message::HaveAll)?,
        id::HAVE_NONE => need(0).map(|_| Message::HaveNone)?,
        id::REJECT => need(12).map(|_| Message::Reject(block(body)))?,
        id::ALLOWED_FAST => need(4).map(|_| Message::AllowedFast(be32(body)))?,
        id::EXTENDED => {
            if body.is_empty() {
                return Err(WireError::TooShort { id, length });
            }
            Message::Extended {
                id: body[0],
                payload: &body[1..],
            }
        }
        other => Message::Unknown(other),
    };
    Ok(Some((message, 4 + length)))
}

/// A bitfield must have exactly one bit per piece, spare bits clear.
fn check_bitfield(bits: &[u8], piece_count: u32) -> Result<(), WireError> {
    let expected = (piece_count as usize).div_ceil(8);
    if bits.len() != expected {
        return Err(WireError::BadBitfield(format!(
            "{} bytes for {piece_count} pieces",
            bits.len()
        )));
    }
    let spare = (expected * 8 - piece_count as usize) as u32;
    if spare > 0 && bits[expected - 1] & ((1u16 << spare) - 1) as u8 != 0 {
        return Err(WireError::BadBitfield("spare bits set".into()));
    }
    Ok(())
}

/// Appends `message` to `out`.
pub fn encode(message: &Message<'_>, out: &mut Vec<u8>) {
    let simple = |out: &mut Vec<u8>, id: u8, body: &[&[u8]]| {
        let len: usize = 1 + body.iter().map(|b| b.len()).sum::<usize>();
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.push(id);
        for part in body {
            out.extend_from_slice(part);
        }
    };
    let block = |b: &BlockRef| {
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&b.index.to_be_bytes());
        bytes[4..8].copy_from_slice(&b.begin.to_be_bytes());
        bytes[8..].copy_from_slice(&b.length.to_be_bytes());
        bytes
    };
    match message {
        Message::KeepAlive => out.extend_from_slice(&[0, 0, 0, 0]),
        Message::Choke => simple(out, id::CHOKE, &[]),
        Message::Unchoke => simple(out, id::UNCHOKE, &[]),
        Message::Interested => simple(out, id::INTERESTED, &[]),
        Message::NotInterested => simple(out, id::NOT_INTERESTED, &[]),
        Message::Have(i) => simple(out, id::HAVE, &[&i.to_be_bytes()]),
        Message::Bitfield(bits) => simple(out, id::BITFIELD, &[bits]),
        Message::Request(b) => simple(out, id::REQUEST, &[&block(b)]),
        Message::Piece { index, begin, data } => simple(
            out,
            id::PIECE,
            &[&index.to_be_bytes(), &begin.to_be_bytes(), data],
        ),
        Message::Cancel(b) => simple(out, id::CANCEL, &[&block(b)]),
        Message::Port(p) => simple(out, id::PORT, &[&p.to_be_bytes()]),
        Message::Suggest(i) => simple(out, id::SUGGEST, &[&i.to_be_bytes()]),
        Message::HaveAll => simple(out, id::HAVE_ALL, &[]),
        Message::HaveNone => simple(out, id::HAVE_NONE, &[]),
        Message::Reject(b) => simple(out, id::REJECT, &[&block(b)]),
        Message::AllowedFast(i) => simple(out, id::ALLOWED_FAST, &[&i.to_be_bytes()]),
        Message::Extended { id: ext, payload } => simple(out, id::EXTENDED, &[&[*ext], payload]),
        Message::Unknown(other) => simple(out, *other, &[]),
    }
}

/// The allowed-fast set a peer at `ip` gets (BEP 6): `k` pieces it may request while
/// choked. Only IPv4 addresses have a defined set; IPv6 peers get none.
pub fn allowed_fast_set(ip: IpAddr, info_hash: &InfoHash, piece_count: u32, k: usize) -> Vec<u32> {
    let IpAddr::V4(ip) = ip else { return Vec::new() };
    allowed_fast_set_for(u32::from(ip) & 0xffff_ff00, info_hash, piece_count, k)
}

/// The BEP 6 generator for an already masked address. (libtorrent skips the mask
/// for peers on a local network; the interop test uses this to check its sets.)
pub fn allowed_fast_set_for(address: u32, info_hash: &InfoHash, piece_count: u32, k: usize) -> Vec<u32> {
    let k = k.min(piece_count as usize);
    let mut set = Vec::with_capacity(k);
    let mut x: [u8; 20] = {
        let mut hasher = Sha1::new();
        hasher.update(address.to_be_bytes());
        hasher.update(info_hash.0);
        hasher.finalize().into()
    };
    while set.len() < k {
        for i in 0..5 {
            if set.len() == k {
                break;
            }
            let y = be32(&x[i * 4..]);
            let index = y % piece_count;
            if !set.contains(&index) {
                set.push(index);
            }
        }
        x = Sha1::digest(x).into();
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        piece_count: Some(20),
    };

    #[test]
    fn allowed_fast_matches_the_bep_6_vectors() {
        let hash = InfoHash([0xaa; 20]);
        let ip: IpAddr = "80.4.4.200".parse().unwrap();
        assert_eq!(
            allowed_fast_set(ip, &hash, 1313, 7),
            [1059, 431, 808, 1217, 287, 376, 1188]
        );
        assert_eq!(
            allowed_fast_set(ip, &hash, 1313, 9),
            [1059, 431, 808, 1217, 287, 376, 1188, 353, 508]
        );
        assert_eq!(
            allowed_fast_set(ip, &hash, 3, 9).len(),
            3,
            "never more than there are pieces"
        );
        assert!(allowed_fast_set("::1".parse().unwrap(), &hash, 100, 9).is_empty());
    }

    #[test]
    fn every_message_round_trips() {
        let b = BlockRef {
            index: 3,
            begin: 16384,
            length: 16384,
        };
        let data = [7u8; 100];
        let bits = [0xff, 0xff, 0xf0];
        let messages = [
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(19),
            Message::Bitfield(&bits),
            Message::Request(b),
            Message::Piece {
                index: 1,
                begin: 2,
                data: &data,
            },
            Message::Cancel(b),
            Message::Port(6881),
            Message::Suggest(4),
            Message::HaveAll,
            Message::HaveNone,
            Message::Reject(b),
            Message::AllowedFast(5),
            Message::Extended {
                id: 0,
                payload: b"d1:md11:ut_metadatai1eee",
            },
        ];
        let mut stream = Vec::new();
        for m in &messages {
            encode(m, &mut stream);
        }
        let mut at = 0;
        for expected in &messages {
            // Every prefix of a message is "need more", never an error.
            let (_, used) = decode(&stream[at..], &LIMITS).unwrap().unwrap();
            for cut in 0..used {
                assert_eq!(
                    decode(&stream[at..at + cut], &LIMITS),
                    Ok(None),
                    "{expected:?} cut at {cut}"
                );
            }
            let (message, used) = decode(&stream[at..], &LIMITS).unwrap().unwrap();
            assert_eq!(&message, expected);
            at += used;
        }
        assert_eq!(at, stream.len());
    }

    #[test]
    fn oversize_prefixes_are_refused_before_the_body_arrives() {
        // A piece message claiming 1 MiB: refused from its first 5 bytes.
        let mut huge = (1u32 << 20).to_be_bytes().to_vec();
        huge.push(7);
        assert!(matches!(decode(&huge, &LIMITS), Err(WireError::TooLong { .. })));
        let mut have = 100u32.to_be_bytes().to_vec();
        have.push(4);
        assert!(matches!(decode(&have, &LIMITS), Err(WireError::TooLong { .. })));
        let max = u32::MAX.to_be_bytes();
        assert_eq!(decode(&max, &LIMITS), Ok(None), "the id decides the limit");
        assert!(decode(&[0xff, 0xff, 0xff, 0xff, 20], &LIMITS).is_err());
        assert!(LIMITS.max_message() <= 4 + MAX_EXTENDED.max(PIECE_HEADER + BLOCK as usize) + 8);
    }

    #[test]
    fn bad_bitfields_and_short_messages() {
        let mut out = Vec::new();
        encode(&Message::Bitfield(&[0xff, 0xff]), &mut out);
        assert!(
            matches!(decode(&out, &LIMITS), Err(WireError::BadBitfield(_))),
            "too short for 20 pieces"
        );
        out.clear();
        encode(&Message::Bitfield(&[0xff, 0xff, 0xf8]), &mut out);
        assert!(
            matches!(decode(&out, &LIMITS), Err(WireError::BadBitfield(_))),
            "spare bit set"
        );
        assert!(matches!(
            decode(&[0, 0, 0, 2, 4, 1], &LIMITS),
            Err(WireError::TooShort { .. })
        ));
        assert!(matches!(
            decode(&[0, 0, 0, 3, 7, 0, 0], &LIMITS),
            Err(WireError::TooShort { .. })
        ));
        assert_eq!(
            decode(&[0, 0, 0, 1, 99], &LIMITS),
            Ok(Some((Message::Unknown(99), 5)))
        );
    }

    #[test]
    fn handshake_round_trip_and_refusal() {
        let ours = Handshake::ours(InfoHash([1; 20]), PeerId(*b"-BL0001-abcdefghijkl"));
        assert!(ours.supports(FAST) && ours.supports(EXTENSION_PROTOCOL) && !ours.supports(DHT));
        let mut bytes = Vec::new();
        ours.encode(&mut bytes);
        assert_eq!(bytes.len(), HANDSHAKE_LEN);
        assert_eq!(Handshake::decode(&bytes[..30]), Ok(None));
        assert_eq!(Handshake::decode(&bytes), Ok(Some(ours)));
        assert_eq!(
            Handshake::decode(b"GET / HTTP/1.1\r\n"),
            Err(WireError::NotBitTorrent)
        );
        assert_eq!(
            Handshake::decode(b"\x13BitTorrent pXotocol"),
            Err(WireError::NotBitTorrent)
        );
    }
}
