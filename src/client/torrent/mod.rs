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

use log::{debug, info, trace};
use slab::Slab;

use super::announcing::{TorrentTrackers, Transfer};
use super::trackers::AnnounceResult;
use super::{Owner, RequestId, TrackerClient};
use crate::metainfo::{InfoHash, Metainfo};
use crate::peer::PeerSession;
use crate::reactor::{Event, HandleId, Reactor};
use crate::storage::{Storage, StorageError};
use crate::swarm::{Bitfield, Candidates, Picker};
use crate::tracker::announcer::Announcer;
use crate::tracker::{random_u64, AnnounceEvent, AnnounceRequest, PeerId};
use crate::wire::{BlockRef, Handshake, Limits};

mod timers;
mod wire_side;

/// Most addresses with strikes remembered at once.
pub const MAX_STRIKE_ENTRIES: usize = 10_000;

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
                Owner::Peer(0, self.key, key as u32),
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
            self.send_handshake(rx, stream);
            trace!("connecting to {addr} as peer {key}");
        }
        // Not due yet: back into the queue for a later round.
        for addr in deferred {
            self.candidates.forget(addr);
            self.candidates.offer(addr);
        }
    }

    /// Our handshake, the first thing we send on every connection.
    fn send_handshake(&mut self, rx: &mut Reactor<Owner>, stream: HandleId) {
        self.scratch.clear();
        Handshake::ours(self.info_hash, self.peer_id).encode(&mut self.scratch);
        let _ = rx.tcp_write(stream, &self.scratch);
        self.scratch.clear();
    }

    /// Adds a strike against `ip`. The table is bounded: past [`MAX_STRIKE_ENTRIES`]
    /// addresses, those not (yet) banned are forgotten first.
    fn strike(&mut self, ip: IpAddr) -> u32 {
        if self.strikes.len() >= MAX_STRIKE_ENTRIES && !self.strikes.contains_key(&ip) {
            let limit = self.config.max_strikes;
            self.strikes.retain(|_, strikes| *strikes >= limit);
        }
        let strikes = self.strikes.entry(ip).or_insert(0);
        *strikes += 1;
        *strikes
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
            Owner::Peer(_, _, key) => self.on_peer_event(rx, id, key as usize, event),
            Owner::TorrentTimer(..) => match event {
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
                let _ = rx.set_owner(stream, Owner::Peer(0, self.key, key as u32));
                let _ = rx.tcp_set_nodelay(stream, true);
                self.send_handshake(rx, stream);
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

    /// Sends whatever announce is due now (for example `completed`).
    pub fn poll_trackers(&mut self, rx: &mut Reactor<Owner>, trackers: &mut TrackerClient) {
        let transfer = self.transfer();
        self.trackers.poll(rx, trackers, transfer);
    }

    /// Announces still in flight (for the shutdown deadline).
    pub fn announces_in_flight(&self) -> usize {
        self.trackers.in_flight()
    }
}
