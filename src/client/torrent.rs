//! One torrent on the reactor: its peer connections, picker, storage and trackers.
//!
//! Every peer, whether connecting, handshaking or active, lives in one slab with a
//! state enum, so it is always in exactly one table (the seed's bugs #3, #7 and #9
//! came from peers kept in several tables). [`Torrent::remove_peer`] is the only
//! function that removes a peer, and it undoes everything the peer held: its
//! stream, its requests (back to the picker), its availability, its address entry.
//!
//! One timer per torrent is armed for the earliest deadline it cares about:
//! request timeouts, keep-alives, silent peers, reconnections and announces.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use log::{debug, info, trace, warn};
use slab::Slab;

use super::announcing::{TorrentTrackers, Transfer};
use super::trackers::AnnounceResult;
use super::{Owner, RequestId, TrackerClient};
use crate::metainfo::{InfoHash, Metainfo};
use crate::peer::{PeerSession, MAX_ALLOWED_FAST};
use crate::reactor::{Event, HandleId, Reactor};
use crate::storage::{Storage, StorageError};
use crate::swarm::{Bitfield, Candidates, Picker, Received};
use crate::tracker::announcer::Announcer;
use crate::tracker::{random_u64, AnnounceEvent, AnnounceRequest, PeerId};
use crate::wire::{self, BlockRef, Handshake, Limits, Message, WireError, FAST};

/// Knobs of a download.
#[derive(Clone, Debug)]
pub struct TorrentConfig {
    pub max_peers: usize,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    /// A request unanswered this long goes back to the pool (and to other peers).
    pub request_timeout: Duration,
    pub keepalive_interval: Duration,
    /// A peer silent this long is dropped.
    pub silence_timeout: Duration,
    /// Failed hash checks an address may cause before it is banned.
    pub max_strikes: u32,
    /// First wait before reconnecting to a peer that dropped; doubles per failure.
    pub reconnect_base: Duration,
    pub reconnect_attempts: u32,
    pub candidate_limit: usize,
}

impl Default for TorrentConfig {
    fn default() -> TorrentConfig {
        TorrentConfig {
            max_peers: 50,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(20),
            keepalive_interval: Duration::from_secs(120),
            silence_timeout: Duration::from_secs(180),
            max_strikes: 3,
            reconnect_base: Duration::from_secs(5),
            reconnect_attempts: 5,
            candidate_limit: 2000,
        }
    }
}

enum PeerState {
    /// TCP connect in progress; our handshake is queued.
    Connecting,
    /// Connected; waiting for the peer's handshake.
    Handshaking {
        since: Instant,
    },
    Active(Box<PeerSession>),
}

struct Peer {
    stream: HandleId,
    addr: SocketAddr,
    state: PeerState,
}

/// Peers by state, for status lines and the shutdown report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCounts {
    pub connecting: usize,
    pub handshaking: usize,
    pub active: usize,
    /// Active and unchoked (blocks can flow).
    pub unchoked: usize,
}

/// Fast-extension traffic seen, for status and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastCounts {
    pub have_all: u32,
    pub have_none: u32,
    pub allowed_fast: u32,
    pub rejects: u32,
    /// Requests we sent while the peer was choking us (allowed-fast pieces).
    pub requests_while_choked: u32,
}

/// What the owner of a torrent needs to know.
#[derive(Debug)]
pub enum TorrentEvent {
    /// Every piece is verified.
    Completed,
    /// The torrent cannot go on (a disk error).
    Failed(String),
}

/// Reconnection state of an address that dropped.
#[derive(Clone, Copy, Debug)]
struct Retry {
    failures: u32,
    not_before: Instant,
}

/// One torrent being downloaded.
pub struct Torrent {
    key: u32,
    info_hash: InfoHash,
    peer_id: PeerId,
    config: TorrentConfig,
    limits: Limits,
    picker: Picker,
    storage: Storage,
    peers: Slab<Peer>,
    /// Address → peer slot, for every peer in the slab (and nothing else).
    by_addr: HashMap<SocketAddr, usize>,
    candidates: Candidates,
    retries: HashMap<SocketAddr, Retry>,
    strikes: HashMap<IpAddr, u32>,
    /// Addresses that sent blocks of each piece in progress (struck if it fails).
    contributors: HashMap<u32, Vec<IpAddr>>,
    trackers: TorrentTrackers,
    listener: Option<HandleId>,
    timer: Option<HandleId>,
    downloaded: u64,
    wasted: u64,
    events: Vec<TorrentEvent>,
    stopping: bool,
    fast: FastCounts,
    scratch: Vec<u8>,
    picks: Vec<BlockRef>,
}

impl Torrent {
    /// Prepares storage (and checks existing data) for `torrent` in `output`.
    pub fn new(
        key: u32,
        torrent: &Metainfo,
        output: &std::path::Path,
        peer_id: PeerId,
        port: u16,
        config: TorrentConfig,
        now: Instant,
    ) -> Result<Torrent, StorageError> {
        let resume = Storage::has_existing_data(output, torrent);
        let mut storage = Storage::create(output, torrent)?;
        let piece_count = torrent.info.pieces.len() as u32;
        let have = if resume {
            storage.check_existing()?
        } else {
            Bitfield::new(piece_count)
        };
        if resume {
            info!(
                "resume: {} of {piece_count} pieces already verified on disk",
                have.count()
            );
        }
        let picker = Picker::new(
            torrent.info.piece_length,
            torrent.total_length(),
            have,
            random_u64(),
        );
        let template = AnnounceRequest {
            info_hash: torrent.info_hash,
            peer_id,
            port,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: AnnounceEvent::None,
            numwant: Some(200),
            key: random_u64() as u32,
            tracker_id: None,
        };
        let announcer = Announcer::new(now, &torrent.trackers, random_u64());
        Ok(Torrent {
            key,
            info_hash: torrent.info_hash,
            peer_id,
            limits: Limits { piece_count },
            picker,
            storage,
            peers: Slab::new(),
            by_addr: HashMap::new(),
            candidates: Candidates::new(config.candidate_limit),
            retries: HashMap::new(),
            strikes: HashMap::new(),
            contributors: HashMap::new(),
            trackers: TorrentTrackers::new(announcer, template),
            listener: None,
            timer: None,
            downloaded: 0,
            wasted: 0,
            events: Vec::new(),
            stopping: false,
            fast: FastCounts::default(),
            scratch: Vec::new(),
            picks: Vec::new(),
            config,
        })
    }

    // ------------------------------------------------------------ status

    pub fn is_complete(&self) -> bool {
        self.picker.is_complete()
    }

    pub fn have(&self) -> &Bitfield {
        self.picker.have()
    }

    pub fn downloaded(&self) -> u64 {
        self.downloaded
    }

    pub fn wasted(&self) -> u64 {
        self.wasted
    }

    pub fn total_length(&self) -> u64 {
        self.storage.layout().total_length()
    }

    pub fn left(&self) -> u64 {
        let layout = self.storage.layout();
        (0..layout.piece_count())
            .filter(|&p| !self.picker.have().get(p))
            .map(|p| layout.piece_size(p).unwrap_or(0))
            .sum()
    }

    pub fn peer_counts(&self) -> PeerCounts {
        let mut counts = PeerCounts::default();
        for (_, peer) in &self.peers {
            match &peer.state {
                PeerState::Connecting => counts.connecting += 1,
                PeerState::Handshaking { .. } => counts.handshaking += 1,
                PeerState::Active(s) => {
                    counts.active += 1;
                    counts.unchoked += usize::from(!s.peer_choking);
                }
            }
        }
        counts
    }

    /// Sizes of every table this torrent keeps, for leak tests.
    pub fn table_sizes(&self) -> [usize; 5] {
        [
            self.peers.len(),
            self.by_addr.len(),
            self.retries.len(),
            self.contributors.len(),
            self.candidates.known(),
        ]
    }

    pub fn fast_counts(&self) -> FastCounts {
        self.fast
    }

    /// Addresses banned for sending bad data.
    pub fn banned(&self) -> Vec<IpAddr> {
        let mut banned: Vec<IpAddr> = self
            .strikes
            .iter()
            .filter(|(_, s)| **s >= self.config.max_strikes)
            .map(|(ip, _)| *ip)
            .collect();
        banned.sort();
        banned
    }

    pub fn take_events(&mut self) -> Vec<TorrentEvent> {
        std::mem::take(&mut self.events)
    }

    pub fn tracker_history(&self) -> &[(String, AnnounceEvent, bool)] {
        &self.trackers.history
    }

    fn transfer(&self) -> Transfer {
        Transfer {
            uploaded: 0,
            downloaded: self.downloaded,
            left: self.left(),
        }
    }

    // ------------------------------------------------------------ start

    /// Takes over `listener` (opened with `Owner::Listener(key)`), announces, and
    /// connects to known peers.
    pub fn start(
        &mut self,
        rx: &mut Reactor<Owner>,
        trackers: &mut TrackerClient,
        listener: Option<HandleId>,
    ) {
        if let Some(listener) = listener {
            if let Ok(local) = rx.local_addr(listener) {
                self.candidates
                    .set_own(vec![local, SocketAddr::new([127, 0, 0, 1].into(), local.port())]);
            }
            self.listener = Some(listener);
        }
        if self.is_complete() {
            self.trackers.completed(rx.now());
            self.events.push(TorrentEvent::Completed);
        }
        let transfer = self.transfer();
        self.trackers.poll(rx, trackers, transfer);
        self.connect_more(rx);
        self.rearm(rx);
    }

    /// Adds a peer address by hand (`--peer`).
    pub fn add_peer(&mut self, rx: &mut Reactor<Owner>, addr: SocketAddr) {
        self.candidates.offer(addr);
        self.connect_more(rx);
    }

    /// A tracker result: returns whether it was this torrent's.
    pub fn on_tracker_result(
        &mut self,
        rx: &mut Reactor<Owner>,
        trackers: &mut TrackerClient,
        id: RequestId,
        result: &AnnounceResult,
    ) -> bool {
        let mine = self
            .trackers
            .on_result(rx.now(), id, result, &mut self.candidates);
        if mine && !self.stopping {
            let transfer = self.transfer();
            self.trackers.poll(rx, trackers, transfer);
            self.connect_more(rx);
            self.rearm(rx);
        }
        mine
    }

    /// Opens connections to candidates while there is room.
    fn connect_more(&mut self, rx: &mut Reactor<Owner>) {
        if self.stopping || self.is_complete() {
            return;
        }
        let now = rx.now();
        let mut deferred = Vec::new();
        while self.peers.len() < self.config.max_peers {
            let Some(addr) = self.candidates.pop() else { break };
            if self.by_addr.contains_key(&addr) || self.is_banned(addr.ip()) {
                continue;
            }
            if self.retries.get(&addr).is_some_and(|r| r.not_before > now) {
                deferred.push(addr);
                continue;
            }
            let entry = self.peers.vacant_entry();
            let key = entry.key();
            let stream = match rx.tcp_connect(
                addr,
                Owner::Peer(self.key, key as u32),
                Some(self.config.connect_timeout),
            ) {
                Ok(stream) => stream,
                Err(e) => {
                    debug!("connect to {addr} failed at once: {e}");
                    continue;
                }
            };
            entry.insert(Peer {
                stream,
                addr,
                state: PeerState::Connecting,
            });
            self.by_addr.insert(addr, key);
            let _ = rx.tcp_set_nodelay(stream, true);
            self.scratch.clear();
            Handshake::ours(self.info_hash, self.peer_id).encode(&mut self.scratch);
            let _ = rx.tcp_write(stream, &self.scratch);
            trace!("connecting to {addr} as peer {key}");
        }
        // Not due yet: back into the queue for a later round.
        for addr in deferred {
            self.candidates.forget(addr);
            self.candidates.offer(addr);
        }
    }

    fn is_banned(&self, ip: IpAddr) -> bool {
        self.strikes
            .get(&ip)
            .is_some_and(|&s| s >= self.config.max_strikes)
    }

    // ------------------------------------------------------------ events

    /// Routes a reactor event for one of this torrent's handles.
    pub fn on_event(
        &mut self,
        rx: &mut Reactor<Owner>,
        trackers: &mut TrackerClient,
        id: HandleId,
        owner: Owner,
        event: Event,
    ) {
        match owner {
            Owner::Listener(_) => self.on_listener_event(rx, id, event),
            Owner::Peer(_, key) => self.on_peer_event(rx, id, key as usize, event),
            Owner::TorrentTimer(_) => match event {
                Event::Timer => self.on_timer(rx, trackers),
                Event::Closed(_) if self.timer == Some(id) => self.timer = None,
                _ => {}
            },
            _ => {}
        }
        if !self.stopping {
            self.rearm(rx);
        }
    }

    fn on_listener_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, event: Event) {
        match event {
            Event::Accepted { stream, peer } => {
                let full = self.peers.len() >= self.config.max_peers;
                if self.stopping || full || self.by_addr.contains_key(&peer) || self.is_banned(peer.ip()) {
                    rx.close(stream);
                    return;
                }
                let key = self.peers.insert(Peer {
                    stream,
                    addr: peer,
                    state: PeerState::Handshaking { since: rx.now() },
                });
                self.by_addr.insert(peer, key);
                let _ = rx.set_owner(stream, Owner::Peer(self.key, key as u32));
                let _ = rx.tcp_set_nodelay(stream, true);
                self.scratch.clear();
                Handshake::ours(self.info_hash, self.peer_id).encode(&mut self.scratch);
                let _ = rx.tcp_write(stream, &self.scratch);
            }
            Event::Closed(_) if self.listener == Some(id) => self.listener = None,
            _ => {}
        }
    }

    fn on_peer_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, key: usize, event: Event) {
        // The tag's slot may hold a newer peer: act only if the stream matches.
        if self.peers.get(key).is_none_or(|p| p.stream != id) {
            return;
        }
        match event {
            Event::Connected => {
                let peer = &mut self.peers[key];
                peer.state = PeerState::Handshaking { since: rx.now() };
            }
            Event::Readable => self.on_readable(rx, key),
            Event::ConnectFailed(e) => {
                debug!("peer {} unreachable: {e}", self.peers[key].addr);
                self.remove_peer(rx, key, true);
            }
            Event::Error(e) => {
                debug!("peer {} failed: {e}", self.peers[key].addr);
                self.remove_peer(rx, key, true);
            }
            Event::Eof => {
                debug!("peer {} closed the connection", self.peers[key].addr);
                self.remove_peer(rx, key, true);
            }
            Event::Closed(_) => self.remove_peer(rx, key, false),
            _ => {}
        }
        self.connect_more(rx);
    }

    /// The one way a peer leaves: closes its stream, returns its requests and
    /// availability, forgets its address, and schedules a reconnection if wanted.
    pub fn remove_peer(&mut self, rx: &mut Reactor<Owner>, key: usize, reconnect: bool) {
        let Some(peer) = self.peers.try_remove(key) else {
            return;
        };
        rx.close(peer.stream);
        self.by_addr.remove(&peer.addr);
        let useful = matches!(&peer.state, PeerState::Active(s) if s.downloaded > 0);
        if let PeerState::Active(session) = peer.state {
            for (block, _) in &session.requests {
                self.picker.on_request_lost(*block);
            }
            self.picker.peer_gone(&session.has);
        }
        self.candidates.forget(peer.addr);
        if reconnect && !self.stopping && !self.is_banned(peer.addr.ip()) {
            let retry = self.retries.entry(peer.addr).or_insert(Retry {
                failures: 0,
                not_before: rx.now(),
            });
            retry.failures = if useful { 1 } else { retry.failures + 1 };
            if retry.failures <= self.config.reconnect_attempts {
                retry.not_before = rx.now() + self.config.reconnect_base * 2u32.pow(retry.failures - 1);
                self.candidates.offer(peer.addr);
            } else {
                self.retries.remove(&peer.addr);
            }
        }
        // Requests went back to the pool: other peers can take them now.
        if !self.stopping {
            let keys: Vec<usize> = self.peers.iter().map(|(k, _)| k).collect();
            for other in keys {
                self.fill_requests(rx, other);
            }
        }
    }

    fn is_current(&self, key: usize, stream: HandleId) -> bool {
        self.peers.get(key).is_some_and(|p| p.stream == stream)
    }

    /// Decodes and handles every whole message in the peer's read buffer.
    fn on_readable(&mut self, rx: &mut Reactor<Owner>, key: usize) {
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

    fn misbehaved(&mut self, rx: &mut Reactor<Owner>, key: usize, error: &WireError) {
        let addr = self.peers[key].addr;
        warn!("peer {addr}: {error}; disconnecting");
        *self.strikes.entry(addr.ip()).or_insert(0) += 1;
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

    fn send_scratch(&mut self, rx: &mut Reactor<Owner>, key: usize) {
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
                let strikes = self.strikes.entry(ip).or_insert(0);
                *strikes += 1;
                if *strikes >= self.config.max_strikes {
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
    fn fill_requests(&mut self, rx: &mut Reactor<Owner>, key: usize) {
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

    // ------------------------------------------------------------ timers

    fn on_timer(&mut self, rx: &mut Reactor<Owner>, trackers: &mut TrackerClient) {
        let now = rx.now();
        let request_cutoff = now.checked_sub(self.config.request_timeout);
        let mut drop_peers = Vec::new();
        let keys: Vec<usize> = self.peers.iter().map(|(k, _)| k).collect();
        for key in keys {
            let peer = &mut self.peers[key];
            match &mut peer.state {
                PeerState::Connecting => {} // the reactor's connect timeout covers it
                PeerState::Handshaking { since } => {
                    if now.saturating_duration_since(*since) >= self.config.handshake_timeout {
                        drop_peers.push(key);
                    }
                }
                PeerState::Active(session) => {
                    if now.saturating_duration_since(session.last_received) >= self.config.silence_timeout {
                        drop_peers.push(key);
                        continue;
                    }
                    if let Some(cutoff) = request_cutoff {
                        let expired = session.expire_requests(cutoff);
                        if !expired.is_empty() {
                            debug!("peer {}: {} requests timed out", peer.addr, expired.len());
                        }
                        for block in expired {
                            self.picker.on_request_lost(block);
                        }
                    }
                    if now.saturating_duration_since(session.last_sent) >= self.config.keepalive_interval {
                        wire::encode(&Message::KeepAlive, &mut self.scratch);
                        self.send_scratch(rx, key);
                    }
                }
            }
        }
        for key in drop_peers {
            debug!("dropping silent peer {}", self.peers[key].addr);
            self.remove_peer(rx, key, true);
        }
        // Timed-out blocks can go to any peer now.
        let keys: Vec<usize> = self.peers.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.fill_requests(rx, key);
        }
        // Keep reconnection state only for addresses still connected or queued.
        let (candidates, by_addr) = (&self.candidates, &self.by_addr);
        self.retries
            .retain(|addr, _| by_addr.contains_key(addr) || candidates.contains(addr));
        let transfer = self.transfer();
        self.trackers.poll(rx, trackers, transfer);
        self.connect_more(rx);
    }

    /// Arms the torrent's one timer for its earliest deadline.
    fn rearm(&mut self, rx: &mut Reactor<Owner>) {
        let now = rx.now();
        let mut earliest = self.trackers.poll_timeout();
        let mut consider = |at: Instant| earliest = Some(earliest.map_or(at, |e: Instant| e.min(at)));
        for (_, peer) in &self.peers {
            match &peer.state {
                PeerState::Connecting => {}
                PeerState::Handshaking { since } => consider(*since + self.config.handshake_timeout),
                PeerState::Active(s) => {
                    consider(s.last_received + self.config.silence_timeout);
                    consider(s.last_sent + self.config.keepalive_interval);
                    if let Some(oldest) = s.oldest_request() {
                        consider(oldest + self.config.request_timeout);
                    }
                }
            }
        }
        if let Some(retry) = self.retries.values().map(|r| r.not_before).min() {
            consider(retry.max(now));
        }
        let Some(deadline) = earliest else { return };
        let timer = match self.timer {
            Some(timer) => timer,
            None => match rx.timer(Owner::TorrentTimer(self.key)) {
                Ok(timer) => *self.timer.insert(timer),
                Err(_) => return,
            },
        };
        let _ = rx.timer_start(timer, deadline.saturating_duration_since(now), None);
    }

    // ------------------------------------------------------------ shutdown

    /// Graceful stop: closes every peer and the listener, and announces `stopped` to
    /// every tracker that was told `started`. Returns how many announces went out.
    pub fn stop(&mut self, rx: &mut Reactor<Owner>, trackers: &mut TrackerClient) -> usize {
        let counts = self.peer_counts();
        self.stopping = true;
        let keys: Vec<usize> = self.peers.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.remove_peer(rx, key, false);
        }
        for id in [self.listener.take(), self.timer.take()].into_iter().flatten() {
            rx.close(id);
        }
        debug!(
            "torrent stopped with {} peers connecting, {} handshaking, {} active; {} candidates dropped",
            counts.connecting,
            counts.handshaking,
            counts.active,
            self.candidates.queued()
        );
        self.retries.clear();
        self.contributors.clear();
        self.candidates.clear();
        let transfer = self.transfer();
        let sent = self.trackers.stop(rx, trackers, transfer);
        // Shutdown empties every table this torrent keeps, not just its handles.
        debug_assert_eq!(
            self.table_sizes(),
            [0; 5],
            "peers, addresses, retries, contributors, candidates"
        );
        sent
    }

    /// Announces still in flight (for the shutdown deadline).
    pub fn announces_in_flight(&self) -> usize {
        self.trackers.in_flight()
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
