//! A connection's way in and out: outgoing connects, incoming peers handed over by
//! the session, handshakes, the first messages, and [`Torrent::remove_peer`], the
//! one function that takes a peer away and undoes everything it held.
//!
//! Connects in progress do not count against `max_peers`: a silent address (its
//! SYN never answered) would otherwise hold a peer slot for the whole connect
//! timeout, and a tracker's list of mostly dead peers would stall the torrent.
//! Up to twice the free slots may be connecting at once (the session's half-open
//! budget bounds them further); one that completes when the slots are full is
//! closed, and its address is kept for later. The connect timeout follows the
//! swarm's answers (`swarm::connect_timeout`), and is enforced here, so pending
//! connects are cut short as soon as the first answer shows how fast peers are.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::debug;

use super::pool::PeerState;
use super::{Output, Torrent, TorrentEvent};
use crate::peer::{PeerSession, OUR_REQQ};
use crate::reactor::HandleId;
use crate::swarm::{PeerHas, PeerKey};
use crate::wire::{self, Handshake, Message, EXTENSION_PROTOCOL, FAST};

/// Pieces in the allowed-fast set we give each Fast peer (BEP 6 suggests 10).
pub const ALLOWED_FAST_COUNT: usize = 10;

/// Why an incoming peer was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Stopping,
    Banned,
    Full,
    /// We are already connected to this address or peer id.
    Duplicate,
    /// It is ourselves.
    Ourselves,
}

impl Torrent {
    /// Whether we would start an outgoing connection now: a free peer slot, room
    /// for one more connect in progress (at most twice the free slots), and a
    /// candidate.
    pub fn wants_connections(&self) -> bool {
        let counts = self.pool.counts();
        let free = self.config.max_peers.saturating_sub(counts.established());
        !self.stopping
            && free > 0
            && counts.connecting < 2 * free
            && self.pool.candidates.queued() > 0
            && (!self.is_complete() || self.config.seed)
    }

    /// Whether a peer slot is free (connects in progress take none).
    pub(super) fn has_room(&self) -> bool {
        self.pool.counts().established() < self.config.max_peers
    }

    /// How long a connect to `addr` may take before it is given up: what the
    /// swarm's answers show, at most the configured `connect_timeout`. The driver
    /// may pass it to the transport; the torrent enforces it either way.
    pub fn connect_timeout(&self, addr: &SocketAddr) -> Duration {
        self.pool.connect_limit(addr, self.config.connect_timeout)
    }

    /// The next address to connect to, if there is room; the driver opens the
    /// connection and calls [`handle_connecting`](Self::handle_connecting), or
    /// [`handle_connect_error`](Self::handle_connect_error) if that failed at once.
    pub fn poll_connect(&mut self, now: Instant) -> Option<SocketAddr> {
        while self.wants_connections() {
            let addr = self.pool.candidates.pop()?;
            if self.pool.has_addr(&addr) {
                continue;
            }
            if self.bans.is_banned(addr, now) {
                self.pool.forget(addr);
                continue;
            }
            return Some(addr);
        }
        None
    }

    /// The key the next peer will get (its owner tag is made before it exists).
    pub fn vacant_key(&self) -> PeerKey {
        self.pool.vacant_key()
    }

    /// An outgoing connection to `addr` is opening on `conn`: our handshake is queued.
    pub fn handle_connecting(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        conn: HandleId,
        out: &mut Output,
    ) -> PeerKey {
        let key = self.pool.insert(now, conn, addr, false, PeerState::Connecting);
        self.send_handshake(key, conn, out);
        self.schedule_deadline(key, now + self.connect_timeout(&addr));
        key
    }

    /// The connect failed at once (EMFILE, ENETUNREACH, …): the address is
    /// forgotten, so addresses that can never work cannot fill the candidates.
    pub fn handle_connect_error(&mut self, addr: SocketAddr, error: &io::Error) {
        debug!("connect to {addr} failed at once: {error}");
        self.pool.forget(addr);
    }

    /// The outgoing connection of `key` is up. Past `max_peers` (more connects
    /// completed than slots were free) it is closed and its address kept.
    pub fn handle_connected(&mut self, now: Instant, key: PeerKey, conn: HandleId, out: &mut Output) {
        if !self.pool.is_current(key, conn) {
            return;
        }
        let peer = self.pool.get(key).expect("current");
        let (addr, took) = (peer.addr, now.saturating_duration_since(peer.since));
        self.connect_answered(now, took);
        if !self.has_room() {
            debug!("{addr} connected, but every peer slot is taken: keeping it for later");
            self.remove_peer(now, key, false, out);
            self.pool.candidates.offer(addr);
            return;
        }
        self.pool.set_state(key, now, PeerState::Handshaking);
        self.schedule_deadline(key, now + self.config.handshake_timeout);
    }

    /// The outgoing connect of `key` failed (refused, unreachable, timed out in
    /// the transport). A refusal is an answer from the host and teaches the
    /// connect timeout; the address may be tried again later either way.
    pub fn handle_connect_failed(
        &mut self,
        now: Instant,
        key: PeerKey,
        conn: HandleId,
        error: &io::Error,
        out: &mut Output,
    ) {
        if !self.pool.is_current(key, conn) {
            return;
        }
        let peer = self.pool.get(key).expect("current");
        let (addr, took) = (peer.addr, now.saturating_duration_since(peer.since));
        if error.kind() == io::ErrorKind::ConnectionRefused && matches!(peer.state, PeerState::Connecting) {
            self.connect_answered(now, took);
        }
        debug!("peer {addr}: connect failed: {error}");
        self.remove_peer(now, key, true, out);
    }

    /// A connect was answered after `took`. The first answer re-arms every
    /// pending connect for the timeout it gives (they were started under the
    /// ceiling); a one-time pass over the pool.
    fn connect_answered(&mut self, now: Instant, took: Duration) {
        if !self.pool.connect_answered(took) {
            return;
        }
        let pending: Vec<(PeerKey, Instant)> = self
            .pool
            .iter()
            .filter(|(_, p)| matches!(p.state, PeerState::Connecting))
            .map(|(key, p)| (key, p.since + self.connect_timeout(&p.addr)))
            .collect();
        for (key, at) in pending {
            self.schedule_deadline(key, at.max(now));
        }
    }

    /// An incoming peer whose handshake named this torrent, handed over by the
    /// session (which consumed the handshake). Bytes after it stay in the stream's
    /// buffer; the driver feeds them to [`handle_bytes`](Self::handle_bytes) next.
    pub fn handle_incoming(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        conn: HandleId,
        handshake: &Handshake,
        out: &mut Output,
    ) -> Result<PeerKey, Refusal> {
        if self.stopping {
            return Err(Refusal::Stopping);
        }
        if self.bans.is_banned(addr, now) {
            return Err(Refusal::Banned);
        }
        if !self.has_room() {
            return Err(Refusal::Full);
        }
        if handshake.peer_id == self.peer_id {
            return Err(Refusal::Ourselves);
        }
        if self.pool.has_addr(&addr) || !self.settle_duplicate(now, &handshake.peer_id, true, out) {
            return Err(Refusal::Duplicate);
        }
        let key = self.pool.insert(now, conn, addr, true, PeerState::Handshaking);
        self.send_handshake(key, conn, out);
        self.activate(now, key, handshake, out);
        Ok(key)
    }

    fn send_handshake(&mut self, key: PeerKey, conn: HandleId, out: &mut Output) {
        let start = out.bytes.len();
        Handshake::ours(self.info_hash, self.peer_id).encode(&mut out.bytes);
        out.sent(key, conn, start);
    }

    /// The handshake of an outgoing peer arrived. Returns whether it is still connected.
    pub(super) fn on_handshake(
        &mut self,
        now: Instant,
        key: PeerKey,
        handshake: &Handshake,
        out: &mut Output,
    ) -> bool {
        let Some(peer) = self.pool.get(key) else {
            return false;
        };
        let addr = peer.addr;
        if handshake.info_hash != self.info_hash {
            debug!("peer {addr} answered for another torrent");
            self.remove_peer(now, key, false, out);
            return false;
        }
        if handshake.peer_id == self.peer_id {
            debug!("{addr} is ourselves");
            self.pool.candidates.add_own(addr);
            self.remove_peer(now, key, false, out);
            return false;
        }
        if !self.settle_duplicate(now, &handshake.peer_id, false, out) {
            debug!("{addr} is a second connection to a peer we already have");
            self.remove_peer(now, key, false, out);
            return false;
        }
        self.activate(now, key, handshake, out);
        true
    }

    /// A new connection (`incoming`: they opened it) to a peer we may already be
    /// connected to. When two peers connect to each other at the same moment, each
    /// sees two connections; both must keep the same one, or each closes the one
    /// the other kept. The rule both sides apply: keep the connection opened by
    /// the peer with the lower peer id. Returns whether the new one is kept (the
    /// old one is then closed here).
    fn settle_duplicate(
        &mut self,
        now: Instant,
        id: &crate::tracker::PeerId,
        incoming: bool,
        out: &mut Output,
    ) -> bool {
        let Some(existing) = self.pool.by_peer_id(id) else {
            return true;
        };
        let existing_incoming = self.pool.get(existing).is_some_and(|p| p.incoming);
        let we_win = self.peer_id.0 < id.0;
        // The winner is the connection the lower id opened: ours if we win.
        let new_wins = incoming != existing_incoming && (incoming != we_win);
        if new_wins {
            debug!("keeping the newer of two connections to one peer (the lower id opened it)");
            self.remove_peer(now, existing, false, out);
        }
        new_wins
    }

    /// Handshaken: the session starts, and what we have goes out.
    fn activate(&mut self, now: Instant, key: PeerKey, handshake: &Handshake, out: &mut Output) {
        let fast = handshake.supports(FAST);
        let extensions = handshake.supports(EXTENSION_PROTOCOL);
        let piece_count = self.meta.as_ref().map(|m| m.picker.piece_count());
        let session = PeerSession::new(
            now,
            handshake.peer_id,
            fast,
            extensions,
            PeerHas::nothing(piece_count),
        );
        self.pool
            .set_state(key, now, PeerState::Active(Box::new(session)));
        let pending_haves = self.haves.pending() as u32;
        let peer = self.pool.get_mut(key).expect("just activated");
        // Our bitfield below includes the pieces waiting to be announced.
        peer.skip_haves = pending_haves;
        let (conn, addr) = (peer.conn, peer.addr);
        self.pool.retry_succeeded(&addr);
        self.choker.peer_connected(now, key);
        // What we have: a bitfield, or the Fast shorthand where that is shorter.
        match self.meta.as_ref().map(|m| m.picker.have()) {
            Some(have) if fast && have.count() == 0 => out.message(key, conn, &Message::HaveNone),
            Some(have) if fast && have.is_full() => out.message(key, conn, &Message::HaveAll),
            Some(have) if have.count() > 0 => out.message(key, conn, &Message::Bitfield(have.as_bytes())),
            None if fast => out.message(key, conn, &Message::HaveNone),
            _ => {}
        }
        if extensions {
            let start = out.bytes.len();
            extension_handshake(self.listen_port, &mut out.bytes);
            out.sent(key, conn, start);
        }
        if fast {
            self.send_allowed_fast(key, out);
        }
        if let Some(session) = self.pool.session_mut(key) {
            session.last_sent = now;
        }
        self.schedule_peer(now, key);
        debug!("peer {addr} handshaken (fast: {fast}, extensions: {extensions})");
    }

    /// BEP 6: the pieces this peer may request while we choke it (those we have).
    fn send_allowed_fast(&mut self, key: PeerKey, out: &mut Output) {
        let Some(meta) = &self.meta else { return };
        let Some(peer) = self.pool.get(key) else { return };
        let (conn, ip) = (peer.conn, peer.addr.ip());
        let count = meta.picker.piece_count();
        let set = wire::allowed_fast_set(ip, &self.info_hash, count, ALLOWED_FAST_COUNT);
        let mut sent = Vec::new();
        for piece in set {
            if meta.picker.have().get(piece) {
                out.message(key, conn, &Message::AllowedFast(piece));
                sent.push(piece);
            }
        }
        if let Some(session) = self.pool.session_mut(key) {
            session.allowed_fast_sent = sent;
        }
    }

    /// The connection of `key` ended on the peer's side (end of file, error, failed
    /// connect): the peer is removed and may be tried again later.
    pub fn handle_disconnected(
        &mut self,
        now: Instant,
        key: PeerKey,
        conn: HandleId,
        why: &str,
        out: &mut Output,
    ) {
        if !self.pool.is_current(key, conn) {
            return;
        }
        debug!("peer {}: {why}", self.pool.get(key).expect("current").addr);
        self.remove_peer(now, key, true, out);
    }

    /// The reactor closed the connection of `key` (without our asking, for example
    /// at shutdown): forget the peer.
    pub fn handle_closed(&mut self, now: Instant, key: PeerKey, conn: HandleId, out: &mut Output) {
        if self.pool.is_current(key, conn) {
            self.remove_peer(now, key, false, out);
        }
    }

    /// The one way a peer leaves: closes its connection, returns its requests and
    /// availability, drops its upload queue and choker slot, and schedules a
    /// reconnection if wanted.
    pub fn remove_peer(&mut self, now: Instant, key: PeerKey, reconnect: bool, out: &mut Output) {
        let Some(peer) = self.pool.remove(key) else { return };
        out.close(peer.conn);
        self.compact_deadlines();
        self.requestable.remove(&key);
        self.uploading.retain(|k| *k != key);
        if self.choker.peer_gone(key) {
            self.rechoke_soon = Some(now); // its slot can go to someone else now
        }
        let mut useful = false;
        if let PeerState::Active(session) = peer.state {
            useful = session.downloaded > 0 || session.uploaded > 0;
            if let Some(meta) = &mut self.meta {
                for (block, _) in &session.requests {
                    meta.picker.on_request_lost(*block, key);
                }
                meta.picker.peer_gone(&session.has);
            }
            self.drop_restarted();
            self.events.push_back(TorrentEvent::PeerGone {
                peer_id: session.peer_id,
                addr: peer.addr,
                downloaded: session.downloaded,
                uploaded: session.uploaded,
            });
            if !session.requests.is_empty() && !self.stopping {
                // Its requests went back to the pool: peers that unchoke us can take them.
                self.refill(now, out);
            }
        }
        // Only peers we connected to have a listening address worth retrying.
        if reconnect && !peer.incoming && !self.stopping && !self.bans.is_banned(peer.addr, now) {
            self.pool.schedule_retry(
                peer.addr,
                now,
                useful,
                self.config.reconnect_base,
                self.config.reconnect_attempts,
            );
        }
    }

    /// Peers announced bits before the metadata: check them now; a peer whose bits
    /// do not fit the torrent lied about it and is dropped.
    pub(super) fn metadata_arrived(&mut self, now: Instant, out: &mut Output) {
        let Some(meta) = &mut self.meta else { return };
        let count = meta.picker.piece_count();
        let mut liars = Vec::new();
        for key in self.pool.keys() {
            let Some(session) = self.pool.session_mut(key) else {
                continue;
            };
            let has = std::mem::replace(&mut session.has, PeerHas::nothing(Some(count)));
            match has.check(count) {
                Some(has) => {
                    meta.picker.peer_has_all_of(&has);
                    session.wanted = has.count_missing_from(meta.picker.have());
                    session.has = has;
                }
                None => liars.push(key),
            }
        }
        for key in liars {
            self.violation(now, key, super::Violation::BitfieldDoesNotFit, out);
        }
        // They heard "nothing" from us at their handshake; now they learn what we have.
        let have: Vec<u32> = self.have().map(|h| h.iter_ones().collect()).unwrap_or_default();
        for key in self.pool.keys() {
            if let Some(peer) = self.pool.get(key) {
                if peer.session().is_some() {
                    let conn = peer.conn;
                    for &piece in &have {
                        out.message(key, conn, &crate::wire::Message::Have(piece));
                    }
                }
            }
            self.update_interest(now, key, out);
        }
    }
}

/// Our BEP 10 handshake: our port, our request queue, our name.
fn extension_handshake(port: u16, out: &mut Vec<u8>) {
    let version = concat!("bitloop ", env!("CARGO_PKG_VERSION"));
    let body = format!(
        "d1:md{}e1:pi{port}e4:reqqi{OUR_REQQ}e1:v{}:{version}e",
        "",
        version.len()
    );
    wire::encode(
        &Message::Extended {
            id: 0,
            payload: body.as_bytes(),
        },
        out,
    );
}
