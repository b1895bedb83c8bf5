//! A session: one client identity on the loop, for any number of torrents.
//!
//! It owns, for all its torrents: one listening port (IPv4 and IPv6 where the
//! host has it), the incoming connections until their handshake names a torrent,
//! the tracker client, the peer id, and the session-wide budgets (connections
//! across all torrents, half-open connects). It drives each torrent's sans-IO
//! core (`crate::torrent::Torrent`) on the reactor: reactor events become
//! `handle_*` calls, and the core's [`Output`] becomes writes and closes.
//! Several sessions can share one reactor; every owner tag carries the session key.
//!
//! ```text
//!   front end (download, seed, demo, daemon)     owns sessions, signals, console
//!        │  add_torrent / stop_torrent / poll_event
//!   Session ── listener(s) ── Incoming (pending handshakes) ──┐ handshake names
//!        │                                                    │ an info hash
//!        ├── torrents: Slab<Entry> + info-hash index  ◄───────┘
//!        │      Entry = Torrent (sans-IO core) + TorrentTrackers + its one timer
//!        └── TrackerClient (HTTP, UDP, DNS for every torrent)
//! ```
//!
//! The DNS-free rules of the loop hold here: nothing blocks, every table has one
//! removal path, and [`Session::close`] leaves no handle and no entry behind.

mod drive;
mod incoming;
mod rates;
mod status;
mod storage;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use slab::Slab;

pub use incoming::IncomingStats;
pub use storage::{AddOptions, CHECK_SLICE, RESUME_INTERVAL, STATE_FOLDER};

use super::announcing::{TorrentTrackers, Transfer};
use super::{Owner, SessionKey, TrackerClient, TrackerConfig};
use crate::metainfo::{InfoHash, Magnet, Metainfo};
use crate::reactor::{Event, HandleId, Reactor};
use crate::torrent::{Output, PeerCounts, Torrent, TorrentConfig};
use crate::tracker::announcer::Announcer;
use crate::tracker::{random_u64, AnnounceEvent, AnnounceRequest, PeerId};
use incoming::Incoming;
use storage::{open_storage, Checking, Opened};

/// A torrent of a session, by slab key.
pub type TorrentKey = u32;

/// Events kept for a front end that does not poll: past this the oldest go, and
/// are counted, so a queue nobody reads cannot grow without bound.
pub const MAX_EVENTS: usize = 4096;

/// Knobs of a session.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Where to listen. Port 0 picks one; a wildcard IPv4 address is joined by the
    /// IPv6 wildcard on the same port where the host has IPv6. Empty: no listener.
    pub listen: Vec<SocketAddr>,
    /// Peer connections across all torrents.
    pub max_connections: usize,
    /// Outgoing connects in progress across all torrents.
    pub max_half_open: usize,
    /// Incoming connections waiting for their handshake.
    pub max_pending: usize,
    /// How long an incoming connection may take to send its handshake.
    pub handshake_timeout: Duration,
    /// Blocks read from disk for uploads per loop iteration, across all torrents.
    pub serve_blocks_per_iteration: usize,
    /// Files open at once across all torrents.
    pub max_open_files: usize,
    /// Upload and download limits in bytes per second, across all torrents.
    pub upload_rate: Option<u64>,
    pub download_rate: Option<u64>,
    /// Defaults for every torrent added.
    pub torrent: TorrentConfig,
    pub trackers: TrackerConfig,
    /// A fixed peer id (tests); otherwise a random one.
    pub peer_id: Option<PeerId>,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 0))],
            max_connections: default_max_connections(),
            max_half_open: 64,
            max_pending: 64,
            handshake_timeout: Duration::from_secs(10),
            serve_blocks_per_iteration: 64,
            max_open_files: crate::torrent::output::DEFAULT_OPEN_FILES,
            upload_rate: None,
            download_rate: None,
            torrent: TorrentConfig::default(),
            trackers: TrackerConfig::default(),
            peer_id: None,
        }
    }
}

/// Connections the process can afford: a share of its open-file limit, leaving
/// room for files, trackers and the loop itself.
fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse::<usize>().ok())
        });
    match soft {
        Some(limit) => limit.saturating_sub(128).clamp(16, 500),
        None => 200,
    }
}

/// What a front end hears from its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// The torrent's existing data is known (checked, or vouched for by resume
    /// data): it is running now.
    Checked(TorrentKey),
    /// Every piece of the torrent is verified (during the run, or at its start).
    Completed(TorrentKey),
    /// The torrent cannot go on (a disk error); it should be stopped.
    Failed(TorrentKey, String),
    /// A handshaken peer of the torrent left.
    PeerGone {
        torrent: TorrentKey,
        peer_id: PeerId,
        addr: SocketAddr,
        downloaded: u64,
        uploaded: u64,
    },
}

/// Where a torrent is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Known by its info hash only (a magnet link): peers, but no pieces yet.
    NoMetadata,
    /// Existing data is being checked (a slice per loop iteration); no peers yet.
    Checking,
    Running,
    /// Stopped: `stopped` announces may still be in flight.
    Stopped,
}

/// A torrent and what the session keeps for it.
struct Entry {
    torrent: Torrent,
    trackers: TorrentTrackers,
    name: String,
    phase: Phase,
    timer: Option<HandleId>,
    /// Peer counts as of the last settle, for the session-wide budgets.
    counts: PeerCounts,
    /// Waiting for room in the session's connection budget.
    waiting: bool,
    /// While the phase is `Checking`: the check in progress.
    checking: Option<Box<Checking>>,
    /// When resume data is to be saved next (pieces verified since the last save).
    resume_due: Option<Instant>,
}

/// What to add: a torrent file's metainfo, or a magnet link.
pub enum Source<'a> {
    Torrent(&'a Metainfo),
    Magnet(&'a Magnet),
}

/// One client identity on a loop.
pub struct Session {
    key: SessionKey,
    peer_id: PeerId,
    config: SessionConfig,
    listeners: Vec<HandleId>,
    port: u16,
    torrents: Slab<Entry>,
    by_hash: HashMap<InfoHash, TorrentKey>,
    incoming: Incoming,
    trackers: TrackerClient,
    /// One buffer for what every torrent sends.
    out: Output,
    /// The session's one timer: pending handshakes' deadlines.
    timer: Option<HandleId>,
    connections: usize,
    half_open: usize,
    /// Torrents waiting for room in the connection budget, in turn order.
    waiting: VecDeque<TorrentKey>,
    /// Torrents with uploads to serve.
    serving: VecDeque<TorrentKey>,
    /// Torrents checking their data, in turn order.
    checking_line: VecDeque<TorrentKey>,
    /// Deferred work (serving, checking) is queued for this iteration.
    deferred_queued: bool,
    events: VecDeque<SessionEvent>,
    events_dropped: u64,
    rates: rates::Rates,
    closed: bool,
}

impl Session {
    /// Opens the listener(s). Fails only if the first listen address cannot be bound.
    pub fn new(rx: &mut Reactor<Owner>, key: SessionKey, config: SessionConfig) -> Result<Session, String> {
        let peer_id = config.peer_id.unwrap_or_else(PeerId::generate);
        let mut session = Session {
            key,
            peer_id,
            listeners: Vec::new(),
            port: 0,
            torrents: Slab::new(),
            by_hash: HashMap::new(),
            incoming: Incoming::default(),
            trackers: TrackerClient::new(config.trackers.clone(), key),
            out: Output::new(config.max_open_files),
            timer: None,
            connections: 0,
            half_open: 0,
            waiting: VecDeque::new(),
            serving: VecDeque::new(),
            checking_line: VecDeque::new(),
            deferred_queued: false,
            events: VecDeque::new(),
            events_dropped: 0,
            rates: rates::Rates::new(config.upload_rate, config.download_rate, rx.now()),
            closed: false,
            config,
        };
        session.listen(rx)?;
        Ok(session)
    }

    fn listen(&mut self, rx: &mut Reactor<Owner>) -> Result<(), String> {
        let mut wanted = self.config.listen.clone();
        if let Some(first) = wanted.first() {
            if first.ip() == std::net::Ipv4Addr::UNSPECIFIED && wanted.len() == 1 {
                wanted.push(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, first.port())));
            }
        }
        for (i, mut addr) in wanted.into_iter().enumerate() {
            if i > 0 && addr.port() == 0 {
                addr.set_port(self.port);
            }
            match rx.tcp_listen(addr, Owner::Listener(self.key)) {
                Ok(listener) => {
                    if i == 0 {
                        self.port = rx.local_addr(listener).map_err(|e| e.to_string())?.port();
                    }
                    self.listeners.push(listener);
                    debug!("listening on {addr} (port {})", self.port);
                }
                Err(e) if i == 0 => return Err(format!("cannot listen on {addr}: {e}")),
                Err(e) => debug!("not listening on {addr}: {e}"),
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ torrents

    /// Adds a torrent saving into `options.output` (ignored for a magnet link until
    /// its metadata arrives). Existing data is checked first, in slices, unless
    /// resume data vouches for it; then the torrent announces and connects.
    pub fn add_torrent(
        &mut self,
        rx: &mut Reactor<Owner>,
        source: Source<'_>,
        options: AddOptions,
    ) -> Result<TorrentKey, String> {
        // A magnet's `x.pe` peers, literal addresses only (a lookup would block).
        let direct: Vec<SocketAddr> = match &source {
            Source::Magnet(m) => m.peers.iter().filter_map(|p| p.parse().ok()).collect(),
            Source::Torrent(_) => Vec::new(),
        };
        let (info_hash, name, tiers) = match &source {
            Source::Torrent(m) => (m.info_hash, m.info.name.clone(), m.trackers.clone()),
            Source::Magnet(m) => (
                m.info_hash,
                m.name.clone().unwrap_or_else(|| m.info_hash.to_hex()),
                m.trackers.iter().map(|t| vec![t.clone()]).collect(),
            ),
        };
        if self.closed {
            return Err("the session is closed".into());
        }
        if self.by_hash.contains_key(&info_hash) {
            return Err(format!("{name}: this torrent is already added"));
        }
        let now = rx.now();
        let mut torrent = Torrent::new(info_hash, self.peer_id, self.port, self.config.torrent.clone());
        let mut phase = Phase::NoMetadata;
        let mut checking = None;
        if let Source::Torrent(metainfo) = source {
            match open_storage(&mut self.out.files, metainfo, &options)? {
                Opened::Ready(store, have, resume_path) => {
                    torrent.set_metadata(now, metainfo, *store, have, Some(resume_path), &mut self.out);
                    phase = Phase::Running;
                }
                Opened::Check(check) => {
                    checking = Some(check);
                    phase = Phase::Checking;
                }
            }
        }
        for addr in self.listen_addrs(rx) {
            torrent.add_own_address(addr);
            torrent.add_own_address(SocketAddr::new([127, 0, 0, 1].into(), addr.port()));
        }
        let template = AnnounceRequest {
            info_hash,
            peer_id: self.peer_id,
            port: self.port,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: AnnounceEvent::None,
            numwant: Some(200),
            key: random_u64() as u32,
            tracker_id: None,
        };
        let trackers = TorrentTrackers::new(Announcer::new(now, &tiers, random_u64()), template);
        let key = self.torrents.insert(Entry {
            torrent,
            trackers,
            name,
            phase,
            timer: None,
            counts: PeerCounts::default(),
            waiting: false,
            checking,
            resume_due: None,
        }) as TorrentKey;
        self.by_hash.insert(info_hash, key);
        if self.torrents[key as usize].phase == Phase::Checking {
            self.checking_line.push_back(key);
            self.queue_deferred(rx);
        } else if self.torrents[key as usize].phase == Phase::Running {
            self.push_event(SessionEvent::Checked(key));
        }
        info!(
            "added torrent {} ({})",
            self.torrents[key as usize].name,
            info_hash.to_hex()
        );
        for addr in direct {
            self.torrents[key as usize].torrent.add_candidate(now, addr);
        }
        self.after(rx, key);
        Ok(key)
    }

    /// Adds a peer address to a torrent by hand (`--peer`, a magnet's `x.pe`).
    pub fn add_peer(&mut self, rx: &mut Reactor<Owner>, key: TorrentKey, addr: SocketAddr) {
        self.add_peers(rx, key, &[addr]);
    }

    /// Adds several addresses at once, so that they are tried in random order
    /// like a tracker's list (one by one, each would be connected to at once, in
    /// the order given).
    pub fn add_peers(&mut self, rx: &mut Reactor<Owner>, key: TorrentKey, addrs: &[SocketAddr]) {
        let now = rx.now();
        let mut rest = addrs;
        while !rest.is_empty() {
            let Some(entry) = self.torrents.get_mut(key as usize) else {
                return;
            };
            // As many as the candidates take; connecting (and addresses that fail at
            // once being forgotten) makes room for the next batch.
            let mut taken = 0;
            while taken < rest.len() && entry.torrent.pool().candidates.has_room() {
                entry.torrent.add_candidate(now, rest[taken]);
                taken += 1;
            }
            rest = &rest[taken..];
            self.after(rx, key);
            let room = self
                .torrents
                .get(key as usize)
                .is_some_and(|e| e.torrent.pool().candidates.has_room());
            if !room {
                break; // the rest would only be refused
            }
        }
    }

    /// Graceful stop of one torrent: its peers are closed and `stopped` goes to
    /// every tracker told `started`. Returns how many announces went out.
    pub fn stop_torrent(&mut self, rx: &mut Reactor<Owner>, key: TorrentKey) -> usize {
        let now = rx.now();
        let Some(entry) = self.torrents.get_mut(key as usize) else {
            return 0;
        };
        if entry.phase == Phase::Stopped {
            return 0;
        }
        entry.phase = Phase::Stopped;
        if let Some(checking) = entry.checking.take() {
            // Stopped while checking: nothing was promised, the next start checks again.
            checking.store.close(&mut self.out.files);
        }
        entry.torrent.stop(now, &mut self.out);
        if let Some(timer) = entry.timer.take() {
            rx.close(timer);
        }
        let transfer = transfer(&entry.torrent);
        let sent = entry.trackers.stop(rx, &mut self.trackers, transfer);
        self.flush(rx, key);
        // What the stop produced (every peer's PeerGone) goes to the front end.
        self.take_torrent_events(rx, key);
        self.settle(key);
        self.waiting.retain(|k| *k != key);
        self.serving.retain(|k| *k != key);
        self.checking_line.retain(|k| *k != key);
        if let Some(entry) = self.torrents.get_mut(key as usize) {
            entry.waiting = false;
        }
        // Its connections are gone: other torrents may use the room.
        if !self.closed {
            self.connect_waiting(rx);
        }
        sent
    }

    /// Stops every torrent (graceful part); returns the announces sent.
    pub fn stop_all(&mut self, rx: &mut Reactor<Owner>) -> usize {
        self.torrent_keys()
            .into_iter()
            .map(|k| self.stop_torrent(rx, k))
            .sum()
    }

    /// Forgets a stopped torrent whose announces are done (the daemon's remove).
    pub fn remove_torrent(&mut self, key: TorrentKey) -> bool {
        let removable = self
            .torrents
            .get(key as usize)
            .is_some_and(|e| e.phase == Phase::Stopped && e.trackers.in_flight() == 0);
        if removable {
            let entry = self.torrents.remove(key as usize);
            self.by_hash.remove(&entry.torrent.info_hash());
        }
        removable
    }

    /// The end of a session: every torrent stopped (if not yet), every handle
    /// closed (listeners, pending connections, timers, the tracker client). What
    /// the torrents hold afterwards is asserted empty in debug builds.
    pub fn close(&mut self, rx: &mut Reactor<Owner>) {
        if self.closed {
            return;
        }
        self.stop_all(rx);
        self.closed = true;
        self.trackers.close(rx);
        for listener in self.listeners.drain(..) {
            rx.close(listener);
        }
        for pending in self.incoming.drain() {
            rx.close(pending.conn);
        }
        if let Some(timer) = self.timer.take() {
            rx.close(timer);
        }
        self.waiting.clear();
        self.serving.clear();
        self.checking_line.clear();
        debug_assert_eq!((self.connections, self.half_open), (0, 0), "budgets after close");
        debug_assert!(self.out.files.is_empty(), "files open after close");
        for (_, entry) in &self.torrents {
            debug_assert_eq!(entry.torrent.table_sizes(), [0; 11], "{} after close", entry.name);
        }
    }

    // ------------------------------------------------------------ events

    /// Routes a reactor event for one of this session's handles.
    pub fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        match owner {
            Owner::Tracker(..) => {
                self.trackers.on_event(rx, id, owner, event);
                self.take_tracker_results(rx);
            }
            Owner::Listener(_) => self.on_listener_event(rx, id, event),
            Owner::Incoming(_, slot) => self.on_incoming_event(rx, id, slot, event),
            Owner::Peer(_, torrent, peer) => self.on_peer_event(rx, id, torrent, peer, event),
            Owner::TorrentTimer(_, torrent) => self.on_torrent_timer(rx, id, torrent, event),
            Owner::SessionTimer(_) => self.on_session_timer(rx, id, event),
            Owner::Signal | Owner::App(_) => {}
        }
    }

    /// The deferred phase: serve uploads within this iteration's budget, and check
    /// one slice of existing data.
    pub fn on_deferred(&mut self, rx: &mut Reactor<Owner>) {
        self.deferred_queued = false;
        self.serve_round(rx);
        self.check_round(rx);
    }

    /// Asks for a deferred phase this iteration if there is work for one.
    pub(super) fn queue_deferred(&mut self, rx: &mut Reactor<Owner>) {
        let work = !self.serving.is_empty() || !self.checking_line.is_empty();
        if work && !self.deferred_queued && !self.closed {
            self.deferred_queued = true;
            rx.defer(Owner::SessionTimer(self.key));
        }
    }

    /// Routes finished announces to their torrents; their peers become candidates.
    fn take_tracker_results(&mut self, rx: &mut Reactor<Owner>) {
        let now = rx.now();
        while let Some((id, result)) = self.trackers.poll_result() {
            if let Err(e) = &result {
                debug!("announce failed: {e}");
            }
            // A stopped torrent takes no new peers (the answer to `stopped`, or a
            // late one): they go to a set that takes nothing.
            let mut nowhere = crate::swarm::Candidates::new(0);
            let owner = self.torrents.iter_mut().find_map(|(key, entry)| {
                let candidates = if entry.phase == Phase::Stopped {
                    &mut nowhere
                } else {
                    entry.torrent.candidates_mut()
                };
                entry
                    .trackers
                    .on_result(now, id, &result, candidates)
                    .then_some(key as TorrentKey)
            });
            if let Some(key) = owner {
                self.after(rx, key);
            }
        }
    }

    fn on_torrent_timer(&mut self, rx: &mut Reactor<Owner>, id: HandleId, key: TorrentKey, event: Event) {
        let Some(entry) = self.torrents.get_mut(key as usize) else {
            return;
        };
        if entry.timer != Some(id) {
            return;
        }
        match event {
            Event::Timer => {
                let now = rx.now();
                entry.torrent.handle_timeout(now, &mut self.out);
                self.save_resume_if_due(key, now);
                self.after(rx, key);
            }
            Event::Closed(_) => entry.timer = None,
            _ => {}
        }
    }
}

/// What every announce of `torrent` reports.
fn transfer(torrent: &Torrent) -> Transfer {
    let stats = torrent.stats();
    Transfer {
        uploaded: stats.uploaded,
        downloaded: stats.downloaded,
        // Before the metadata we know nothing: report a leecher's "something left".
        left: torrent.left().unwrap_or(16 * 1024),
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.closed && !self.listeners.is_empty() && !std::thread::panicking() {
            warn!(
                "session {} dropped without close(); the reactor closes its handles",
                self.key
            );
        }
    }
}
