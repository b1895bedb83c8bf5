//! The peer pool of one torrent: every connection by state, the candidate
//! addresses, reconnection backoff, and how long connects may take.
//!
//! Every peer, connecting, handshaking or active, is one entry of one slab with a
//! state enum, so it is always in exactly one table (the seed's bugs #3, #7 and #9
//! came from peers kept in several tables). [`PeerPool::remove`] is the only way out
//! and undoes the indexes (address, peer id, counters); the caller undoes what
//! other parts kept for the peer (requests, availability, choker slot) with the
//! value it returns. Every state change goes through [`PeerPool::set_state`], which
//! keeps the counters and logs the transition.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::trace;
use slab::Slab;

use super::deadlines::Slot;
use crate::peer::PeerSession;
use crate::reactor::HandleId;
use crate::swarm::{Candidates, ConnectTimeout, PeerKey};
use crate::tracker::PeerId;

/// Where a connection is in its life.
#[derive(Debug)]
pub enum PeerState {
    /// TCP connect in progress; our handshake is queued.
    Connecting,
    /// Connected; waiting for the peer's handshake.
    Handshaking,
    /// Handshaken: the protocol runs.
    Active(Box<PeerSession>),
}

impl PeerState {
    fn name(&self) -> &'static str {
        match self {
            PeerState::Connecting => "connecting",
            PeerState::Handshaking => "handshaking",
            PeerState::Active(_) => "active",
        }
    }
}

/// One connection.
#[derive(Debug)]
pub struct Peer {
    pub conn: HandleId,
    pub addr: SocketAddr,
    /// It connected to us.
    pub incoming: bool,
    pub state: PeerState,
    /// When the current state began.
    pub since: Instant,
    /// Distinguishes this occupant of the slot from earlier ones (deadline heap).
    pub serial: u64,
    /// The peer's entry in the deadline heap.
    pub next_deadline: Option<Instant>,
    /// Pending announcements it knows from its bitfield (`haves.rs`): the first
    /// this many of the next batch are not sent to it.
    pub skip_haves: u32,
}

impl Peer {
    pub fn session(&self) -> Option<&PeerSession> {
        match &self.state {
            PeerState::Active(s) => Some(s),
            _ => None,
        }
    }

    pub fn session_mut(&mut self) -> Option<&mut PeerSession> {
        match &mut self.state {
            PeerState::Active(s) => Some(s),
            _ => None,
        }
    }

    pub fn slot(&self, key: PeerKey) -> Slot {
        Slot {
            key,
            serial: self.serial,
        }
    }
}

/// Peers by state, for status lines and budgets (kept as counters, not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCounts {
    pub connecting: usize,
    pub handshaking: usize,
    pub active: usize,
}

impl PeerCounts {
    pub fn total(&self) -> usize {
        self.connecting + self.handshaking + self.active
    }

    /// Connections that are up (handshaking or active): what `max_peers` limits.
    pub fn established(&self) -> usize {
        self.handshaking + self.active
    }

    fn add(&mut self, state: &PeerState, delta: isize) {
        let counter = match state {
            PeerState::Connecting => &mut self.connecting,
            PeerState::Handshaking => &mut self.handshaking,
            PeerState::Active(_) => &mut self.active,
        };
        *counter = counter.wrapping_add_signed(delta);
    }
}

/// Reconnection state of an address that dropped.
#[derive(Clone, Copy, Debug)]
struct Retry {
    failures: u32,
    /// Its entry in `due`, if waiting.
    at: Option<(Instant, u64)>,
}

/// The connections and the addresses that may become connections.
#[derive(Debug)]
pub struct PeerPool {
    peers: Slab<Peer>,
    by_addr: HashMap<SocketAddr, PeerKey>,
    by_id: HashMap<PeerId, PeerKey>,
    counts: PeerCounts,
    serial: u64,
    pub candidates: Candidates,
    retries: HashMap<SocketAddr, Retry>,
    /// Addresses waiting for their backoff, by due time.
    due: BTreeMap<(Instant, u64), SocketAddr>,
    retry_limit: usize,
    /// Recent connect answer times, which set the connect timeout.
    connect_times: ConnectTimeout,
}

impl PeerPool {
    pub fn new(candidate_limit: usize) -> PeerPool {
        PeerPool {
            peers: Slab::new(),
            by_addr: HashMap::new(),
            by_id: HashMap::new(),
            counts: PeerCounts::default(),
            serial: 0,
            candidates: Candidates::new(candidate_limit),
            retries: HashMap::new(),
            due: BTreeMap::new(),
            retry_limit: candidate_limit,
            connect_times: ConnectTimeout::default(),
        }
    }

    pub fn counts(&self) -> PeerCounts {
        self.counts
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    pub fn get(&self, key: PeerKey) -> Option<&Peer> {
        self.peers.get(key as usize)
    }

    pub fn get_mut(&mut self, key: PeerKey) -> Option<&mut Peer> {
        self.peers.get_mut(key as usize)
    }

    /// The active session of `key`, if it is active.
    pub fn session_mut(&mut self, key: PeerKey) -> Option<&mut PeerSession> {
        self.peers.get_mut(key as usize).and_then(Peer::session_mut)
    }

    pub fn session(&self, key: PeerKey) -> Option<&PeerSession> {
        self.peers.get(key as usize).and_then(Peer::session)
    }

    /// Whether `key` still names the peer on `conn` (tags outlive peers).
    pub fn is_current(&self, key: PeerKey, conn: HandleId) -> bool {
        self.get(key).is_some_and(|p| p.conn == conn)
    }

    pub fn iter(&self) -> impl Iterator<Item = (PeerKey, &Peer)> {
        self.peers.iter().map(|(k, p)| (k as PeerKey, p))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (PeerKey, &mut Peer)> {
        self.peers.iter_mut().map(|(k, p)| (k as PeerKey, p))
    }

    pub fn keys(&self) -> Vec<PeerKey> {
        self.peers.iter().map(|(k, _)| k as PeerKey).collect()
    }

    /// The key the next inserted peer gets (its owner tag is made before it exists).
    pub fn vacant_key(&self) -> PeerKey {
        self.peers.vacant_key() as PeerKey
    }

    pub fn has_addr(&self, addr: &SocketAddr) -> bool {
        self.by_addr.contains_key(addr)
    }

    pub fn has_peer_id(&self, id: &PeerId) -> bool {
        self.by_id.contains_key(id)
    }

    /// The active peer with this id, if any.
    pub fn by_peer_id(&self, id: &PeerId) -> Option<PeerKey> {
        self.by_id.get(id).copied()
    }

    /// Adds a connection; returns its key.
    pub fn insert(
        &mut self,
        now: Instant,
        conn: HandleId,
        addr: SocketAddr,
        incoming: bool,
        state: PeerState,
    ) -> PeerKey {
        self.serial += 1;
        self.counts.add(&state, 1);
        if let PeerState::Active(session) = &state {
            self.by_id
                .insert(session.peer_id, self.peers.vacant_key() as PeerKey);
        }
        trace!("peer {addr} {}", state.name());
        let key = self.peers.insert(Peer {
            conn,
            addr,
            incoming,
            state,
            since: now,
            serial: self.serial,
            next_deadline: None,
            skip_haves: 0,
        }) as PeerKey;
        self.by_addr.insert(addr, key);
        key
    }

    /// The one function that changes a peer's state.
    pub fn set_state(&mut self, key: PeerKey, now: Instant, state: PeerState) {
        let Some(peer) = self.peers.get_mut(key as usize) else {
            return;
        };
        trace!("peer {} {} -> {}", peer.addr, peer.state.name(), state.name());
        self.counts.add(&peer.state, -1);
        self.counts.add(&state, 1);
        if let PeerState::Active(session) = &peer.state {
            self.by_id.remove(&session.peer_id);
        }
        if let PeerState::Active(session) = &state {
            self.by_id.insert(session.peer_id, key);
        }
        peer.state = state;
        peer.since = now;
    }

    /// The one way a peer leaves the pool. The address is forgotten by the
    /// candidates; the caller decides about reconnecting (`schedule_retry`).
    pub fn remove(&mut self, key: PeerKey) -> Option<Peer> {
        let peer = self.peers.try_remove(key as usize)?;
        trace!("peer {} removed ({})", peer.addr, peer.state.name());
        self.counts.add(&peer.state, -1);
        self.by_addr.remove(&peer.addr);
        if let PeerState::Active(session) = &peer.state {
            if self.by_id.get(&session.peer_id) == Some(&key) {
                self.by_id.remove(&session.peer_id);
            }
        }
        self.candidates.forget(peer.addr);
        Some(peer)
    }

    // ------------------------------------------------------------ reconnection

    /// Schedules a reconnection to `addr` after a backoff of `base` doubling per
    /// failure, up to `attempts` failures; `useful`: it gave us data, so the count
    /// starts over. Returns whether a retry was scheduled.
    pub fn schedule_retry(
        &mut self,
        addr: SocketAddr,
        now: Instant,
        useful: bool,
        base: Duration,
        attempts: u32,
    ) -> bool {
        if !self.retries.contains_key(&addr) && self.retries.len() >= self.retry_limit {
            return false;
        }
        let retry = self.retries.entry(addr).or_insert(Retry {
            failures: 0,
            at: None,
        });
        retry.failures = if useful { 1 } else { retry.failures + 1 };
        if let Some(at) = retry.at.take() {
            self.due.remove(&at);
        }
        if retry.failures > attempts {
            self.retries.remove(&addr);
            return false;
        }
        self.serial += 1;
        let at = (now + base * 2u32.pow((retry.failures - 1).min(16)), self.serial);
        retry.at = Some(at);
        self.due.insert(at, addr);
        true
    }

    /// Failed connections to `addr` since it last handshook.
    pub fn failures(&self, addr: &SocketAddr) -> u32 {
        self.retries.get(addr).map_or(0, |r| r.failures)
    }

    /// The address connected and handshook: its backoff is over.
    pub fn retry_succeeded(&mut self, addr: &SocketAddr) {
        if let Some(retry) = self.retries.remove(addr) {
            if let Some(at) = retry.at {
                self.due.remove(&at);
            }
        }
    }

    /// Moves addresses whose backoff ended into the candidates.
    pub fn release_due(&mut self, now: Instant) {
        while let Some((&at, &addr)) = self.due.first_key_value() {
            if at.0 > now {
                break;
            }
            self.due.remove(&at);
            if let Some(retry) = self.retries.get_mut(&addr) {
                retry.at = None;
            }
            if !self.candidates.offer(addr) {
                self.retries.remove(&addr);
            }
        }
    }

    /// When the next backoff ends.
    pub fn next_retry(&self) -> Option<Instant> {
        self.due.first_key_value().map(|(at, _)| at.0)
    }

    // ------------------------------------------------------------ connect timeout

    /// A connect was answered after `took` (connected, or refused). Returns
    /// whether it is the first answer seen, which may shorten every pending
    /// connect's timeout from the ceiling to what this swarm shows.
    pub fn connect_answered(&mut self, took: Duration) -> bool {
        let first = self.connect_times.samples() == 0;
        self.connect_times.answered(took);
        first
    }

    /// How long a connect to `addr` may take: learned from the swarm's answers
    /// (`swarm::connect_timeout`), longer for addresses that failed before, never
    /// more than `ceiling`.
    pub fn connect_limit(&self, addr: &SocketAddr, ceiling: Duration) -> Duration {
        self.connect_times.for_attempt(self.failures(addr), ceiling)
    }

    /// An address will never be tried again (banned, unreachable): forget it everywhere.
    pub fn forget(&mut self, addr: SocketAddr) {
        self.candidates.forget(addr);
        self.retry_succeeded(&addr);
    }

    /// Sizes of the tables, for leak tests: peers, addresses, ids, retries, due, candidates.
    pub fn table_sizes(&self) -> [usize; 6] {
        [
            self.peers.len(),
            self.by_addr.len(),
            self.by_id.len(),
            self.retries.len(),
            self.due.len(),
            self.candidates.known(),
        ]
    }

    /// Forgets every address (shutdown; the peers themselves are removed first).
    pub fn clear_addresses(&mut self) {
        self.candidates.clear();
        self.retries.clear();
        self.due.clear();
    }
}
