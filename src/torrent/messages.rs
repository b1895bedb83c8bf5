//! Reading a peer's bytes: the handshake of an outgoing peer, then whole wire
//! messages, each handled where it is decoded (payloads borrow the caller's
//! buffer; blocks go to disk straight from it, a run at a time: `blocks.rs`).
//!
//! A message that breaks the protocol is a [`Violation`]: the connection closes
//! and the peer's address (IP and port, not the IP) gets a strike.

use std::fmt;
use std::time::Instant;

use log::{debug, info};

use super::bans::Strike;
use super::pool::PeerState;
use super::{Output, Torrent};
use crate::peer::MAX_ALLOWED_FAST;
use crate::swarm::{Bitfield, PeerHas, PeerKey};
use crate::wire::{self, Handshake, Message, WireError};

/// Most blocks nobody asked for (beyond cancellations in flight) before the peer
/// is closed: a few are races, a stream of them is someone writing into our pieces.
pub const MAX_UNREQUESTED: u32 = 8;

/// What a peer did wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// The bytes are not the wire protocol (length, size, id).
    Wire(WireError),
    /// A `have` for a piece the torrent does not have.
    HaveOutOfRange(u32),
    /// A second bitfield, have-all or have-none (only the first message may be one).
    SecondBitfield,
    /// Have-all, have-none, reject or allowed-fast without the Fast extension.
    FastWithoutFast,
    /// A bitfield received before the metadata that does not fit it.
    BitfieldDoesNotFit,
    /// Blocks that were never requested, more than races explain.
    UnrequestedBlocks(u32),
    /// A request for a range that is not inside a piece, or longer than a block.
    BadRequest(wire::BlockRef),
    /// Requests past our queue, without the Fast extension to reject them.
    RequestFlood,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Wire(e) => write!(f, "{e}"),
            Violation::HaveOutOfRange(p) => write!(f, "peer sent `have` for piece {p}, past the end"),
            Violation::SecondBitfield => write!(f, "peer sent a second bitfield"),
            Violation::FastWithoutFast => write!(f, "peer sent a Fast message without the Fast extension"),
            Violation::BitfieldDoesNotFit => write!(f, "peer's bitfield does not fit the torrent"),
            Violation::UnrequestedBlocks(n) => write!(f, "peer sent {n} blocks nobody asked for"),
            Violation::BadRequest(b) => write!(
                f,
                "peer requested {} bytes at {} of piece {}, not a valid block",
                b.length, b.begin, b.index
            ),
            Violation::RequestFlood => write!(f, "peer kept requesting past our queue limit"),
        }
    }
}

impl std::error::Error for Violation {}

impl From<WireError> for Violation {
    fn from(e: WireError) -> Violation {
        Violation::Wire(e)
    }
}

impl Torrent {
    /// Bytes arrived from `key`: handles every whole message at the front of
    /// `buf` and returns how many bytes were used (a partial message waits).
    pub fn handle_bytes(&mut self, now: Instant, key: PeerKey, buf: &[u8], out: &mut Output) -> usize {
        let Some(peer) = self.pool.get(key) else { return 0 };
        let serial = peer.serial;
        let current = |t: &Torrent| t.pool.get(key).is_some_and(|p| p.serial == serial);
        let mut used = 0;
        let mut handled = 0;
        while current(self) && used < buf.len() {
            let rest = &buf[used..];
            let active = matches!(self.pool.get(key).map(|p| &p.state), Some(PeerState::Active(_)));
            if !active {
                match Handshake::decode(rest) {
                    Ok(None) => break,
                    Ok(Some(handshake)) => {
                        used += wire::HANDSHAKE_LEN;
                        self.on_handshake(now, key, &handshake, out);
                        continue;
                    }
                    Err(e) => {
                        self.violation(now, key, e.into(), out);
                        break;
                    }
                }
            }
            let limits = match &self.meta {
                Some(meta) => meta.limits,
                None => wire::Limits { piece_count: None },
            };
            match wire::decode(rest, &limits) {
                Ok(None) => break, // an incomplete message: wait for more bytes
                Err(e) => {
                    self.write_run(now, key, buf, out);
                    self.violation(now, key, e.into(), out);
                    break;
                }
                Ok(Some((message, size))) => {
                    used += size;
                    handled += 1;
                    if !self.run.continued_by(&message) {
                        // Booking may finish a piece, and a bad one may ban this peer.
                        self.write_run(now, key, buf, out);
                        if !current(self) {
                            break;
                        }
                    }
                    // A message ends the buffer's used part; a block's payload ends it.
                    if let Err(violation) = self.on_message(now, key, message, used, out) {
                        self.write_run(now, key, buf, out);
                        self.violation(now, key, violation, out);
                        break;
                    }
                }
            }
        }
        self.write_run(now, key, buf, out);
        // A reject or a choke may have restarted a suspect piece.
        self.drop_restarted();
        if handled > 0 && current(self) {
            if let Some(session) = self.pool.session_mut(key) {
                session.last_received = now;
            }
            self.fill_requests(now, key, out);
            self.schedule_peer(now, key);
        }
        used
    }

    /// Closes `key` for a protocol violation and strikes its address.
    pub(super) fn violation(&mut self, now: Instant, key: PeerKey, violation: Violation, out: &mut Output) {
        let Some(peer) = self.pool.get(key) else { return };
        let addr = peer.addr;
        self.stats.violations += 1;
        match self.bans.protocol_violation(addr, now) {
            Strike::Banned => info!("peer {addr}: {violation}; banned"),
            Strike::Counted(n) => info!("peer {addr}: {violation}; disconnecting (strike {n})"),
        }
        self.remove_peer(now, key, false, out);
        if self.bans.is_banned(addr, now) {
            self.pool.forget(addr);
        }
    }

    /// One message from an active peer.
    fn on_message(
        &mut self,
        now: Instant,
        key: PeerKey,
        message: Message<'_>,
        end: usize,
        out: &mut Output,
    ) -> Result<(), Violation> {
        let count = self.meta.as_ref().map(|m| m.picker.piece_count());
        let session = self
            .pool
            .session_mut(key)
            .expect("messages come from active peers");
        match message {
            Message::KeepAlive | Message::Port(_) | Message::Suggest(_) | Message::Unknown(_) => {}
            Message::Choke => {
                let mut cancelled = std::mem::take(&mut self.blocks);
                cancelled.clear();
                session.on_choke(now, &mut cancelled);
                self.requestable.remove(&key);
                if let Some(meta) = &mut self.meta {
                    for block in &cancelled {
                        meta.picker.on_request_lost(*block, key);
                    }
                }
                self.blocks = cancelled;
                if !self.blocks.is_empty() {
                    self.refill(now, out);
                }
            }
            Message::Unchoke => {
                if session.peer_choking {
                    session.peer_choking = false;
                    session.unchoked_us_at = Some(now);
                }
                self.update_requestable(key);
            }
            Message::Interested => {
                if !session.peer_interested {
                    session.peer_interested = true;
                    self.note_interest(now, true);
                }
            }
            Message::NotInterested => {
                if session.peer_interested {
                    let held_slot = !session.am_choking;
                    session.peer_interested = false;
                    if held_slot {
                        self.note_interest(now, false);
                    }
                }
            }
            Message::Have(piece) => {
                if let Some(count) = count {
                    if piece >= count {
                        return Err(Violation::HaveOutOfRange(piece));
                    }
                }
                if session.has.set(piece) {
                    if let Some(meta) = &mut self.meta {
                        if matches!(session.has, PeerHas::Bits(_)) {
                            meta.picker.peer_has(piece);
                        }
                        if !meta.picker.have().get(piece) {
                            session.wanted += 1;
                        }
                    }
                    // Seeds do not keep connections to peers that became seeds too.
                    if session.has.is_seed() && self.is_complete() {
                        debug!(
                            "peer {} completed, as have we: disconnecting",
                            self.pool.get(key).expect("active").addr
                        );
                        self.remove_peer(now, key, false, out);
                        return Ok(());
                    }
                    self.update_interest(now, key, out);
                }
            }
            Message::Bitfield(bytes) => {
                if std::mem::replace(&mut session.announced, true) {
                    return Err(Violation::SecondBitfield);
                }
                let has = match count {
                    // The codec checked its size against the torrent already.
                    Some(count) => PeerHas::from_bits(Bitfield::from_bytes(bytes, count)),
                    None => PeerHas::Unchecked {
                        bytes: bytes.to_vec(),
                        all: false,
                    },
                };
                self.announce(now, key, has, out);
            }
            Message::HaveAll | Message::HaveNone => {
                let all = matches!(message, Message::HaveAll);
                if all {
                    self.stats.have_all += 1;
                } else {
                    self.stats.have_none += 1;
                }
                if !session.fast {
                    return Err(Violation::FastWithoutFast);
                }
                if std::mem::replace(&mut session.announced, true) {
                    return Err(Violation::SecondBitfield);
                }
                let has = match (all, count) {
                    (true, Some(_)) => PeerHas::All,
                    (true, None) => PeerHas::Unchecked {
                        bytes: Vec::new(),
                        all: true,
                    },
                    (false, count) => PeerHas::nothing(count),
                };
                self.announce(now, key, has, out);
            }
            Message::Request(block) => self.on_request(now, key, block, out)?,
            Message::Cancel(block) => {
                if let Some(at) = session.queue.iter().position(|b| *b == block) {
                    session.queue.remove(at);
                }
            }
            Message::Piece { index, begin, data } => {
                self.on_piece(now, key, (index, begin), data, end - data.len())?
            }
            Message::Reject(block) => {
                self.stats.rejects += 1;
                if !session.fast {
                    return Err(Violation::FastWithoutFast);
                }
                if session.take_request(block).is_some() {
                    session.pipeline.on_reject(now);
                    if let Some(meta) = &mut self.meta {
                        meta.picker.on_request_lost(block, key);
                    }
                }
            }
            Message::AllowedFast(piece) => {
                self.stats.allowed_fast += 1;
                if !session.fast {
                    return Err(Violation::FastWithoutFast);
                }
                let in_range = count.is_none_or(|c| piece < c);
                if in_range
                    && session.allowed_fast.len() < MAX_ALLOWED_FAST
                    && !session.allowed_fast.contains(&piece)
                {
                    session.allowed_fast.push(piece);
                }
                self.update_requestable(key);
            }
            Message::Extended { id, payload } => {
                if id == 0 {
                    session.reqq = extension_reqq(payload);
                }
            }
        }
        Ok(())
    }

    /// The peer's first announcement of what it has.
    fn announce(&mut self, now: Instant, key: PeerKey, has: PeerHas, out: &mut Output) {
        let session = self.pool.session_mut(key).expect("active");
        if let Some(meta) = &mut self.meta {
            meta.picker.peer_gone(&session.has);
            meta.picker.peer_has_all_of(&has);
            session.wanted = has.count_missing_from(meta.picker.have());
        }
        session.has = has;
        // Seeds do not keep connections to other seeds.
        if self.is_complete() && self.pool.session(key).is_some_and(|s| s.has.is_seed()) {
            debug!(
                "peer {} is a seed, as are we: disconnecting",
                self.pool.get(key).expect("active").addr
            );
            self.remove_peer(now, key, false, out);
            return;
        }
        self.update_interest(now, key, out);
    }

    /// Sends `interested` or `not interested` when what the peer has for us changed.
    pub(super) fn update_interest(&mut self, now: Instant, key: PeerKey, out: &mut Output) {
        let Some(peer) = self.pool.get_mut(key) else {
            return;
        };
        let conn = peer.conn;
        let Some(session) = peer.session_mut() else { return };
        let wants = session.wanted > 0 && !self.stopping;
        if wants == session.am_interested {
            return;
        }
        session.am_interested = wants;
        session.last_sent = now;
        let message = if wants {
            Message::Interested
        } else {
            Message::NotInterested
        };
        out.message(key, conn, &message);
        self.update_requestable(key);
    }

    /// Keeps `requestable` (peers we can ask for blocks now) in step with a peer.
    pub(super) fn update_requestable(&mut self, key: PeerKey) {
        if self.pool.session(key).is_some_and(|s| s.can_request()) {
            self.requestable.insert(key);
        } else {
            self.requestable.remove(&key);
        }
    }
}

/// `reqq` from a BEP 10 extension handshake, if present and sane. Read with the
/// lenient reader: clients send these dictionaries with keys in any order.
fn extension_reqq(payload: &[u8]) -> Option<usize> {
    // An extension handshake is a small dictionary: a few levels, a few hundred values.
    let limits = crate::bencode::Limits {
        max_depth: 4,
        max_values: 1000,
    };
    let value = crate::bencode::decode(payload, limits).ok()?;
    let reqq = value.as_dict()?.int(b"reqq")?;
    usize::try_from(reqq).ok().filter(|n| (1..=100_000).contains(n))
}
