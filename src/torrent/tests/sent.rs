//! What we sent, as a peer reads it: each connection's bytes decoded into owned
//! messages (our handshake first), and helpers that pick kinds of message out.

use super::{wire, BlockRef, Handshake, Limits, Message, PeerKey};

/// What we sent, as the peer decodes it (an owned [`Message`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    Handshake(Handshake),
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Vec<u8>),
    Request(BlockRef),
    Piece { index: u32, begin: u32, data: Vec<u8> },
    Cancel(BlockRef),
    Port(u16),
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject(BlockRef),
    AllowedFast(u32),
    Extended { id: u8, payload: Vec<u8> },
    Unknown(u8),
}

impl From<Message<'_>> for Sent {
    fn from(m: Message<'_>) -> Sent {
        match m {
            Message::KeepAlive => Sent::KeepAlive,
            Message::Choke => Sent::Choke,
            Message::Unchoke => Sent::Unchoke,
            Message::Interested => Sent::Interested,
            Message::NotInterested => Sent::NotInterested,
            Message::Have(p) => Sent::Have(p),
            Message::Bitfield(b) => Sent::Bitfield(b.to_vec()),
            Message::Request(b) => Sent::Request(b),
            Message::Piece { index, begin, data } => Sent::Piece {
                index,
                begin,
                data: data.to_vec(),
            },
            Message::Cancel(b) => Sent::Cancel(b),
            Message::Port(p) => Sent::Port(p),
            Message::Suggest(p) => Sent::Suggest(p),
            Message::HaveAll => Sent::HaveAll,
            Message::HaveNone => Sent::HaveNone,
            Message::Reject(b) => Sent::Reject(b),
            Message::AllowedFast(p) => Sent::AllowedFast(p),
            Message::Extended { id, payload } => Sent::Extended {
                id,
                payload: payload.to_vec(),
            },
            Message::Unknown(id) => Sent::Unknown(id),
        }
    }
}

/// The requests among `sent`, in order.
pub fn requests(sent: &[Sent]) -> Vec<BlockRef> {
    sent.iter()
        .filter_map(|m| match m {
            Sent::Request(b) => Some(*b),
            _ => None,
        })
        .collect()
}

/// The cancels among `sent`, in order.
pub fn cancels(sent: &[Sent]) -> Vec<BlockRef> {
    sent.iter()
        .filter_map(|m| match m {
            Sent::Cancel(b) => Some(*b),
            _ => None,
        })
        .collect()
}

/// The rejects among `sent`, in order.
pub fn rejects(sent: &[Sent]) -> Vec<BlockRef> {
    sent.iter()
        .filter_map(|m| match m {
            Sent::Reject(b) => Some(*b),
            _ => None,
        })
        .collect()
}

/// The blocks (index, begin, length) among `sent`, in order.
pub fn pieces(sent: &[Sent]) -> Vec<BlockRef> {
    sent.iter()
        .filter_map(|m| match m {
            Sent::Piece { index, begin, data } => Some(BlockRef {
                index: *index,
                begin: *begin,
                length: data.len() as u32,
            }),
            _ => None,
        })
        .collect()
}

/// One connection as the harness sees it.
#[derive(Debug, Default)]
pub(super) struct Wire {
    pub(super) key: PeerKey,
    /// Bytes we sent, not yet decoded (a partial message).
    pub(super) from_us: Vec<u8>,
    pub(super) handshake_read: bool,
    pub(super) decoded: Vec<Sent>,
    /// Bytes the peer sent that `handle_bytes` has not used yet.
    pub(super) to_us: Vec<u8>,
    pub(super) closed: bool,
}

impl Wire {
    pub(super) fn decode(&mut self, limits: &Limits) {
        if !self.handshake_read {
            match Handshake::decode(&self.from_us) {
                Ok(Some(h)) => {
                    self.from_us.drain(..wire::HANDSHAKE_LEN);
                    self.handshake_read = true;
                    self.decoded.push(Sent::Handshake(h));
                }
                Ok(None) => return,
                Err(e) => panic!("we sent something that is not a handshake first: {e}"),
            }
        }
        let mut at = 0;
        loop {
            match wire::decode(&self.from_us[at..], limits) {
                Ok(Some((m, used))) => {
                    self.decoded.push(m.into());
                    at += used;
                }
                Ok(None) => break,
                Err(e) => panic!("we sent bytes a peer cannot decode: {e}"),
            }
        }
        self.from_us.drain(..at);
    }
}
