//! The wire side of a torrent: reading a peer's bytes, handshakes, messages, blocks
//! on their way to disk, verification, and keeping each peer's request pipeline full.

use std::time::Instant;

use log::{debug, info, trace, warn};

use super::{Peer, PeerState, Torrent, TorrentEvent};
use crate::client::Owner;
use crate::peer::{PeerSession, MAX_ALLOWED_FAST};
use crate::reactor::{HandleId, Reactor};
use crate::swarm::{Bitfield, Received};
use crate::wire::{self, BlockRef, Handshake, Message, WireError, FAST};

impl Torrent {
    pub(super) fn is_current(&self, key: usize, stream: HandleId) -> bool {
        self.peers.get(key).is_some_and(|p| p.stream == stream)
    }

    /// Decodes and handles every whole message in the peer's read buffer.
    pub(super) fn on_readable(&mut self, rx: &mut Reactor<Owner>, key: usize) {
        let stream = self.peers[key].stream;
        let mut handled = 0;
        while self.is_current(key, stream) {
            let Ok(buffer) = rx.tcp_received(stream) else {
                return;
            };
            if buffer.is_empty() {
                break;
            }
            if !matches!(self.peers[key].state, PeerState::Active(_)) {
                match Handshake::decode(buffer) {
                    Ok(None) => break,
                    Ok(Some(handshake)) => {
                        let _ = rx.tcp_consume(stream, wire::HANDSHAKE_LEN);
                        self.on_handshake(rx, key, handshake);
                        continue;
                    }
                    Err(e) => return self.misbehaved(rx, key, &e),
                }
            }
            match wire::decode(buffer, &self.limits) {
                Ok(None) => break, // an incomplete message: wait for more bytes
                Err(e) => return self.misbehaved(rx, key, &e),
                Ok(Some((Message::Piece { index, begin, data }, used))) => {
                    // The payload goes to disk straight from the read buffer.
                    let block = BlockRef {
                        index,
                        begin,
                        length: data.len() as u32,
                    };
                    let outcome = self.accept_block(rx.now(), key, block, data);
                    let _ = rx.tcp_consume(stream, used);
                    self.after_block(rx, key, block, outcome);
                }
                Ok(Some((message, used))) => {
                    let owned = OwnedMessage::from(&message);
                    let _ = rx.tcp_consume(stream, used);
                    if let Err(e) = self.on_message(rx, key, owned) {
                        return self.misbehaved(rx, key, &e);
                    }
                }
            }
            handled += 1;
        }
        if handled > 0 && self.is_current(key, stream) {
            if let PeerState::Active(session) = &mut self.peers[key].state {
                session.last_received = rx.now();
            }
            self.fill_requests(rx, key);
        }
    }

    pub(super) fn misbehaved(&mut self, rx: &mut Reactor<Owner>, key: usize, error: &WireError) {
        let addr = self.peers[key].addr;
        warn!("peer {addr}: {error}; disconnecting");
        self.strike(addr.ip());
        self.remove_peer(rx, key, false);
    }

    /// The peer's handshake arrived. Returns whether the peer is still connected.
    fn on_handshake(&mut self, rx: &mut Reactor<Owner>, key: usize, handshake: Handshake) -> bool {
        let addr = self.peers[key].addr;
        if handshake.info_hash != self.info_hash {
            debug!("peer {addr} wants another torrent");
            self.remove_peer(rx, key, false);
            return false;
        }
        if handshake.peer_id == self.peer_id {
            debug!("{addr} is ourselves");
            self.candidates.set_own(vec![addr]);
            self.remove_peer(rx, key, false);
            return false;
        }
        let duplicate = self.peers.iter().any(|(k, p)| {
            k != key && matches!(&p.state, PeerState::Active(s) if s.peer_id == handshake.peer_id)
        });
        if duplicate {
            debug!("{addr} is a second connection to a peer we already have");
            self.remove_peer(rx, key, false);
            return false;
        }
        let fast = handshake.supports(FAST);
        let now = rx.now();
        let session = PeerSession::new(now, handshake.peer_id, fast, self.limits.piece_count);
        self.peers[key].state = PeerState::Active(Box::new(session));
        self.retries.remove(&addr);
        // What we have: a bitfield, or the Fast shorthand for none/all.
        self.scratch.clear();
        let have = self.picker.have();
        match (fast, have.count()) {
            (true, 0) => wire::encode(&Message::HaveNone, &mut self.scratch),
            (true, n) if n == have.len() => wire::encode(&Message::HaveAll, &mut self.scratch),
            (_, 0) => {}
            _ => wire::encode(&Message::Bitfield(have.as_bytes()), &mut self.scratch),
        }
        self.send_scratch(rx, key);
        debug!("peer {addr} handshaken (fast: {fast})");
        true
    }

    pub(super) fn send_scratch(&mut self, rx: &mut Reactor<Owner>, key: usize) {
        if self.scratch.is_empty() {
            return;
        }
        let stream = self.peers[key].stream;
        if let PeerState::Active(session) = &mut self.peers[key].state {
            session.last_sent = rx.now();
        }
        if let Err(e) = rx.tcp_write(stream, &self.scratch) {
            debug!("write to peer {} failed: {e}", self.peers[key].addr);
        }
        self.scratch.clear();
    }

    fn session(&mut self, key: usize) -> &mut PeerSession {
        match &mut self.peers[key].state {
            PeerState::Active(session) => session,
            _ => unreachable!("messages come only from active peers"),
        }
    }

    /// One message from an active peer (pieces go to `on_piece`).
    fn on_message(
        &mut self,
        rx: &mut Reactor<Owner>,
        key: usize,
        message: OwnedMessage,
    ) -> Result<(), WireError> {
        let count = self.limits.piece_count;
        let bad = |why: String| Err(WireError::BadBitfield(why));
        match message {
            OwnedMessage::KeepAlive | OwnedMessage::Other => {}
            OwnedMessage::Choke => {
                for block in self.session(key).on_choke() {
                    self.picker.on_request_lost(block);
                }
            }
            OwnedMessage::Unchoke => self.session(key).peer_choking = false,
            OwnedMessage::Interested => self.session(key).peer_interested = true,
            OwnedMessage::NotInterested => self.session(key).peer_interested = false,
            OwnedMessage::Have(piece) => {
                if piece >= count {
                    return bad(format!("have for piece {piece} of {count}"));
                }
                if self.session(key).has.set(piece) {
                    self.picker.peer_has(piece);
                }
                self.update_interest(rx, key);
            }
            OwnedMessage::Bitfield(bytes) => {
                let bits = Bitfield::from_bytes(&bytes, count);
                let session = self.session(key);
                let old = std::mem::replace(&mut session.has, bits.clone());
                self.picker.peer_gone(&old);
                self.picker.peer_has_bitfield(&bits);
                self.update_interest(rx, key);
            }
            OwnedMessage::HaveAll | OwnedMessage::HaveNone => {
                let all = matches!(message, OwnedMessage::HaveAll);
                if all {
                    self.fast.have_all += 1;
                } else {
                    self.fast.have_none += 1;
                }
                if !self.session(key).fast {
                    return bad("Fast message from a peer without the Fast extension".into());
                }
                let bits = if all {
                    Bitfield::full(count)
                } else {
                    Bitfield::new(count)
                };
                let old = std::mem::replace(&mut self.session(key).has, bits.clone());
                self.picker.peer_gone(&old);
                self.picker.peer_has_bitfield(&bits);
                self.update_interest(rx, key);
            }
            OwnedMessage::Request(block) => {
                // We do not upload yet: the peer stays choked; with Fast we say so.
                if self.session(key).fast {
                    wire::encode(&Message::Reject(block), &mut self.scratch);
                    self.send_scratch(rx, key);
                }
            }
            OwnedMessage::Reject(block) => {
                self.fast.rejects += 1;
                if self.session(key).take_request(block) {
                    self.picker.on_request_lost(block);
                }
            }
            OwnedMessage::AllowedFast(piece) => {
                self.fast.allowed_fast += 1;
                let session = self.session(key);
                if piece < count
                    && session.allowed_fast.len() < MAX_ALLOWED_FAST
                    && !session.allowed_fast.contains(&piece)
                {
                    session.allowed_fast.push(piece);
                }
            }
            OwnedMessage::Extended(id, payload) => {
                if id == 0 {
                    self.session(key).reqq = extension_reqq(&payload);
                }
            }
        }
        Ok(())
    }

    fn update_interest(&mut self, rx: &mut Reactor<Owner>, key: usize) {
        let wants = {
            let PeerState::Active(session) = &self.peers[key].state else {
                return;
            };
            self.picker.wants_from(&session.has)
        };
        let session = self.session(key);
        if wants != session.am_interested {
            session.am_interested = wants;
            let message = if wants {
                Message::Interested
            } else {
                Message::NotInterested
            };
            wire::encode(&message, &mut self.scratch);
            self.send_scratch(rx, key);
        }
    }

    /// A block arrived: book it and write it. Needs no loop access, so `data` can
    /// borrow the reactor's read buffer. Returns what the picker made of it, or
    /// `None` if the disk failed.
    fn accept_block(&mut self, now: Instant, key: usize, block: BlockRef, data: &[u8]) -> Option<Received> {
        let addr = self.peers[key].addr;
        let session = self.session(key);
        session.last_received = now;
        session.take_request(block);
        session.on_block(now, data.len());
        let outcome = self.picker.on_block(block);
        if outcome == Received::Unwanted {
            self.wasted += data.len() as u64;
            return Some(outcome);
        }
        if let Err(e) = self.storage.write_block(block.index, block.begin, data) {
            self.fail(format!("cannot write: {e}"));
            return None;
        }
        self.downloaded += data.len() as u64;
        let contributors = self.contributors.entry(block.index).or_default();
        if !contributors.contains(&addr.ip()) {
            contributors.push(addr.ip());
        }
        Some(outcome)
    }

    /// What follows a stored block: endgame cancels, and verification of a finished piece.
    fn after_block(
        &mut self,
        rx: &mut Reactor<Owner>,
        key: usize,
        block: BlockRef,
        outcome: Option<Received>,
    ) {
        match outcome {
            None | Some(Received::Unwanted) => {}
            Some(stored) => {
                // Endgame: whoever else was asked for this block can stop.
                self.cancel_elsewhere(rx, key, block);
                if stored == Received::PieceComplete {
                    self.piece_finished(rx, block.index);
                }
            }
        }
    }

    fn cancel_elsewhere(&mut self, rx: &mut Reactor<Owner>, from: usize, block: BlockRef) {
        let holders: Vec<usize> = self
            .peers
            .iter()
            .filter(|(k, p)| {
                *k != from
                    && matches!(&p.state, PeerState::Active(s) if s.requests.iter().any(|(b, _)| *b == block))
            })
            .map(|(k, _)| k)
            .collect();
        for other in holders {
            self.session(other).take_request(block);
            wire::encode(&Message::Cancel(block), &mut self.scratch);
            self.send_scratch(rx, other);
        }
    }

    fn piece_finished(&mut self, rx: &mut Reactor<Owner>, piece: u32) {
        let ok = match self.storage.verify(piece) {
            Ok(ok) => ok,
            Err(e) => return self.fail(format!("cannot read back: {e}")),
        };
        self.picker.on_verified(piece, ok);
        let contributors = self.contributors.remove(&piece).unwrap_or_default();
        if !ok {
            let size = u64::from(self.picker.piece_size(piece));
            self.downloaded = self.downloaded.saturating_sub(size);
            self.wasted += size;
            if contributors.len() > 1 {
                // Several sources: we cannot tell who lied. Fetch it whole from one
                // peer next time, so a second failure names the culprit.
                warn!("piece {piece} failed its hash check (blocks from {contributors:?}); refetching it from one peer");
                self.picker.mark_suspect(piece);
                return;
            }
            warn!("piece {piece} failed its hash check; striking {contributors:?}");
            for ip in contributors {
                let strikes = self.strike(ip);
                if strikes >= self.config.max_strikes {
                    warn!("{ip} banned after {strikes} bad pieces");
                    let keys: Vec<usize> = self
                        .peers
                        .iter()
                        .filter(|(_, p)| p.addr.ip() == ip)
                        .map(|(k, _)| k)
                        .collect();
                    for key in keys {
                        self.remove_peer(rx, key, false);
                    }
                }
            }
            return;
        }
        trace!("piece {piece} verified");
        // Tell peers that lack it.
        let keys: Vec<usize> = self
            .peers
            .iter()
            .filter(|(_, p)| matches!(&p.state, PeerState::Active(s) if !s.has.get(piece)))
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            wire::encode(&Message::Have(piece), &mut self.scratch);
            self.send_scratch(rx, key);
        }
        if self.picker.is_complete() {
            info!(
                "download complete: {} bytes, {} wasted",
                self.downloaded, self.wasted
            );
            self.trackers.completed(rx.now());
            self.events.push(TorrentEvent::Completed);
            // Keep peers only as long as the owner wants to (console mode stops).
            let keys: Vec<usize> = self.peers.iter().map(|(k, _)| k).collect();
            for key in keys {
                self.update_interest(rx, key);
            }
        }
    }

    fn fail(&mut self, why: String) {
        warn!("{why}");
        self.events.push(TorrentEvent::Failed(why));
    }

    /// Tops up a peer's request pipeline.
    pub(super) fn fill_requests(&mut self, rx: &mut Reactor<Owner>, key: usize) {
        if self.stopping {
            return;
        }
        let Some(Peer {
            state: PeerState::Active(session),
            ..
        }) = self.peers.get_mut(key)
        else {
            return;
        };
        if !session.can_request() {
            return;
        }
        let target = session.pipeline_target();
        if session.requests.len() >= target {
            return;
        }
        let allowed = session.peer_choking.then(|| session.allowed_fast.clone());
        let outstanding = session.outstanding();
        let mut picks = std::mem::take(&mut self.picks);
        picks.clear();
        self.picker.pick(
            &session.has,
            allowed.as_deref(),
            &outstanding,
            target - session.requests.len(),
            &mut picks,
        );
        let now = rx.now();
        if session.peer_choking {
            self.fast.requests_while_choked += picks.len() as u32;
        }
        for block in &picks {
            session.requests.push((*block, now));
            wire::encode(&Message::Request(*block), &mut self.scratch);
        }
        self.picks = picks;
        self.send_scratch(rx, key);
    }
}

/// A decoded message with its payload copied out of the read buffer, so the
/// handler can use the loop (write, close) while handling it. Piece payloads are
/// not copied here; they go straight to storage.
enum OwnedMessage {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Vec<u8>),
    Request(BlockRef),
    Reject(BlockRef),
    HaveAll,
    HaveNone,
    AllowedFast(u32),
    Extended(u8, Vec<u8>),
    /// Cancel, port, suggest, unknown ids: nothing to do while we do not upload.
    Other,
}

impl From<&Message<'_>> for OwnedMessage {
    fn from(message: &Message<'_>) -> OwnedMessage {
        match *message {
            Message::KeepAlive => OwnedMessage::KeepAlive,
            Message::Choke => OwnedMessage::Choke,
            Message::Unchoke => OwnedMessage::Unchoke,
            Message::Interested => OwnedMessage::Interested,
            Message::NotInterested => OwnedMessage::NotInterested,
            Message::Have(i) => OwnedMessage::Have(i),
            Message::Bitfield(bits) => OwnedMessage::Bitfield(bits.to_vec()),
            Message::Request(b) => OwnedMessage::Request(b),
            Message::Reject(b) => OwnedMessage::Reject(b),
            Message::HaveAll => OwnedMessage::HaveAll,
            Message::HaveNone => OwnedMessage::HaveNone,
            Message::AllowedFast(i) => OwnedMessage::AllowedFast(i),
            Message::Extended { id: 0, payload } => OwnedMessage::Extended(0, payload.to_vec()),
            _ => OwnedMessage::Other,
        }
    }
}

/// `reqq` from a BEP 10 extension handshake, if present and sane.
fn extension_reqq(payload: &[u8]) -> Option<usize> {
    use bendy::decoding::{Decoder, Object};
    let mut decoder = Decoder::new(payload).with_max_depth(4);
    let Ok(Some(Object::Dict(mut dict))) = decoder.next_object() else {
        return None;
    };
    while let Ok(Some((key, value))) = dict.next_pair() {
        if key == b"reqq" {
            if let Object::Integer(n) = value {
                return n.parse::<usize>().ok().filter(|n| (1..=100_000).contains(n));
            }
        }
    }
    None
}
