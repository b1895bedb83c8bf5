//! One torrent's protocol logic, sans-IO, in the style of quinn-proto's
//! `Connection`: bytes, connection events and the time go in (`handle_*`), and
//! actions come out (messages to send and connections to close, in an
//! [`Output`]), plus [`TorrentEvent`]s and the next deadline (`poll_timeout`).
//! Nothing here touches a socket or reads the clock; `client::session` drives it
//! on the reactor, and the tests drive it with byte strings and a virtual clock.
//!
//! The parts, each with one job and one place its state is removed:
//! - [`pool`]: connections by state, candidate addresses, reconnection backoff;
//! - [`bans`]: strikes and bans (protocol errors per address, bad data per IP);
//! - the picker (`swarm::Picker`) with the request pipelines (`schedule.rs`);
//! - the piece store (`storage::Storage`) with verification (`blocks.rs`);
//! - uploads and choking (`upload.rs`);
//! - deadlines in one heap (`deadlines.rs`, `timers.rs`).
//!
//! A torrent can exist before its metadata (a magnet link): the parts that need
//! the piece count live in [`Loaded`], made by [`Torrent::set_metadata`]. Until
//! then peers can connect and handshake, and what they announce is kept unchecked.

pub mod bans;
mod blocks;
mod connect;
pub mod deadlines;
pub mod haves;
mod messages;
pub mod output;
pub mod pool;
mod schedule;
mod timers;
pub mod upload;
mod write_run;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub use bans::{Bans, Strike};
pub use connect::Refusal;
pub use messages::Violation;
pub use output::{Action, Output};
pub use pool::{Peer, PeerCounts, PeerPool, PeerState};

use crate::metainfo::{InfoHash, Metainfo};
use crate::storage::{PieceStore, StorageError, StoreStats};
use crate::swarm::{Bitfield, ChokeInput, Choker, ChokerConfig, Decision, PeerKey, Picker};
use crate::tracker::PeerId;
use crate::wire::{BlockRef, Limits};
use deadlines::Deadlines;

/// Knobs of one torrent.
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
    /// Strikes an address (protocol) or IP (bad data) may collect before a ban.
    pub max_strikes: u32,
    /// First wait before reconnecting to a peer that dropped; doubles per failure.
    pub reconnect_base: Duration,
    pub reconnect_attempts: u32,
    pub candidate_limit: usize,
    /// Regular upload slots of the choker.
    pub upload_slots: usize,
    /// Keep connections once complete (seeding); otherwise peers are let go.
    pub seed: bool,
    /// Seed of the picker's and choker's random choices (`None`: random). Tests
    /// fix it to assert exact picks.
    pub rng_seed: Option<u64>,
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
            upload_slots: 4,
            seed: false,
            rng_seed: None,
        }
    }
}

/// What the driver of a torrent needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TorrentEvent {
    /// Every piece is verified.
    Completed,
    /// A piece was verified (resume data can be saved).
    Verified(u32),
    /// The torrent cannot go on (a disk error).
    Failed(String),
    /// A handshaken peer left, with what it gave and took.
    PeerGone {
        peer_id: PeerId,
        addr: SocketAddr,
        downloaded: u64,
        uploaded: u64,
    },
}

/// Counters for status lines, reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TorrentStats {
    /// Bytes of verified-or-pending blocks received (failed pieces subtracted).
    pub downloaded: u64,
    pub uploaded: u64,
    /// Bytes received and thrown away (duplicates, unrequested, failed pieces).
    pub wasted: u64,
    /// Blocks received that were never requested (or already cancelled).
    pub unrequested_blocks: u64,
    /// Connections closed for protocol violations.
    pub violations: u64,
    /// Requests refused (reject sent, or dropped without Fast).
    pub refused_requests: u64,
    pub have_all: u32,
    pub have_none: u32,
    pub allowed_fast: u32,
    pub rejects: u32,
    /// Requests we sent while the peer was choking us (allowed-fast pieces).
    pub requests_while_choked: u32,
}

/// The parts that need the metadata.
pub struct Loaded {
    pub picker: Picker,
    pub store: PieceStore,
    /// Where resume data is saved (`None`: not saved).
    pub resume_path: Option<std::path::PathBuf>,
    pub limits: Limits,
    /// Addresses that sent blocks of each piece in progress (struck if it fails).
    pub contributors: HashMap<u32, Vec<IpAddr>>,
    pub piece_length: u64,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("picker", &self.picker)
            .field("contributors", &self.contributors.len())
            .finish_non_exhaustive()
    }
}

/// One torrent.
#[derive(Debug)]
pub struct Torrent {
    info_hash: InfoHash,
    peer_id: PeerId,
    /// Our listening port, told to peers in the extension handshake.
    listen_port: u16,
    config: TorrentConfig,
    pool: PeerPool,
    bans: Bans,
    deadlines: Deadlines,
    meta: Option<Box<Loaded>>,
    choker: Choker,
    /// A slot may change hands: rechoke at the next turn (set with the time then).
    rechoke_soon: Option<Instant>,
    choke_inputs: Vec<ChokeInput>,
    choke_decisions: Vec<Decision>,
    events: VecDeque<TorrentEvent>,
    stats: TorrentStats,
    stopping: bool,
    /// Active peers that may get requests (unchoked or holding allowed-fast pieces).
    requestable: BTreeSet<PeerKey>,
    /// Active peers with requests of theirs to serve, in turn order.
    uploading: VecDeque<PeerKey>,
    /// Verified pieces waiting to be announced.
    haves: haves::Haves,
    /// Scratch lists reused by every call (nothing allocates per message).
    picks: Vec<BlockRef>,
    blocks: Vec<BlockRef>,
    /// Blocks accepted during one `handle_bytes` call and not yet written.
    run: write_run::WriteRun,
}

impl Torrent {
    /// A torrent known by its info hash; [`set_metadata`](Self::set_metadata) makes
    /// it downloadable.
    pub fn new(info_hash: InfoHash, peer_id: PeerId, listen_port: u16, config: TorrentConfig) -> Torrent {
        Torrent {
            info_hash,
            peer_id,
            listen_port,
            pool: PeerPool::new(config.candidate_limit),
            bans: Bans::new(config.max_strikes),
            deadlines: Deadlines::default(),
            meta: None,
            choker: Choker::new(
                ChokerConfig {
                    upload_slots: config.upload_slots,
                    ..ChokerConfig::default()
                },
                config.rng_seed.unwrap_or_else(crate::random::random_u64),
            ),
            rechoke_soon: None,
            choke_inputs: Vec::new(),
            choke_decisions: Vec::new(),
            events: VecDeque::new(),
            stats: TorrentStats::default(),
            stopping: false,
            requestable: BTreeSet::new(),
            uploading: VecDeque::new(),
            haves: haves::Haves::default(),
            picks: Vec::new(),
            blocks: Vec::new(),
            run: write_run::WriteRun::default(),
            config,
        }
    }

    /// The metadata is known and its data checked: `have` are the pieces verified
    /// on disk. Peers already connected get their announcements checked now.
    pub fn set_metadata(
        &mut self,
        now: Instant,
        metainfo: &Metainfo,
        store: PieceStore,
        have: Bitfield,
        resume_path: Option<std::path::PathBuf>,
        out: &mut Output,
    ) {
        let piece_count = metainfo.info.pieces.len() as u32;
        let picker = Picker::new(
            metainfo.info.piece_length,
            metainfo.total_length(),
            have,
            self.config
                .rng_seed
                .map_or_else(crate::random::random_u64, |s| s ^ 0x9e37_79b9),
        );
        self.meta = Some(Box::new(Loaded {
            picker,
            store,
            resume_path,
            limits: Limits::pieces(piece_count),
            contributors: HashMap::new(),
            piece_length: metainfo.info.piece_length,
        }));
        self.metadata_arrived(now, out);
        if self.is_complete() {
            self.events.push_back(TorrentEvent::Completed);
        }
    }

    // ------------------------------------------------------------ status

    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    pub fn has_metadata(&self) -> bool {
        self.meta.is_some()
    }

    pub fn is_complete(&self) -> bool {
        self.meta.as_ref().is_some_and(|m| m.picker.is_complete())
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// The pieces we have (empty before the metadata).
    pub fn have(&self) -> Option<&Bitfield> {
        self.meta.as_ref().map(|m| m.picker.have())
    }

    /// Bytes still missing (O(1)); 0 before the metadata is unknown, so `None`.
    pub fn left(&self) -> Option<u64> {
        self.meta.as_ref().map(|m| m.picker.left())
    }

    pub fn total_length(&self) -> Option<u64> {
        self.meta.as_ref().map(|m| m.store.layout().total_length())
    }

    pub fn stats(&self) -> TorrentStats {
        self.stats
    }

    /// What storage did (bytes read back, hashed in order, …).
    pub fn store_stats(&self) -> Option<StoreStats> {
        self.meta.as_ref().map(|m| m.store.stats())
    }

    /// Syncs the data and saves resume data (at most every few seconds while
    /// pieces verify, at completion and at stop). `Ok(false)`: nothing to save.
    pub fn save_resume(&mut self, out: &mut Output) -> Result<bool, StorageError> {
        let Some(meta) = &mut self.meta else {
            return Ok(false);
        };
        let Some(path) = &meta.resume_path else {
            return Ok(false);
        };
        meta.store.save_resume(&mut out.files, meta.picker.have(), path)?;
        Ok(true)
    }

    pub fn peer_counts(&self) -> PeerCounts {
        self.pool.counts()
    }

    /// Active peers that unchoke us and from which blocks can flow.
    pub fn unchoked_by(&self) -> usize {
        self.requestable.len()
    }

    pub fn config(&self) -> &TorrentConfig {
        &self.config
    }

    pub fn pool(&self) -> &PeerPool {
        &self.pool
    }

    pub fn loaded(&self) -> Option<&Loaded> {
        self.meta.as_deref()
    }

    /// IPs banned for bad data.
    pub fn banned(&self, now: Instant) -> Vec<IpAddr> {
        self.bans.banned_ips(now)
    }

    pub fn bans(&self) -> &Bans {
        &self.bans
    }

    pub fn poll_event(&mut self) -> Option<TorrentEvent> {
        self.events.pop_front()
    }

    /// Sizes of every table this torrent keeps, for leak tests: the pool's six,
    /// contributors, requestable, uploading, deadline entries, choker entries.
    pub fn table_sizes(&self) -> [usize; 11] {
        let [a, b, c, d, e, f] = self.pool.table_sizes();
        [
            a,
            b,
            c,
            d,
            e,
            f,
            self.meta.as_ref().map_or(0, |m| m.contributors.len()),
            self.requestable.len(),
            self.uploading.len(),
            self.deadlines.len(),
            self.choker.len(),
        ]
    }

    /// Adds a peer address (from a tracker, `--peer`, and later DHT and PEX).
    /// Returns whether it was new.
    pub fn add_candidate(&mut self, now: Instant, addr: SocketAddr) -> bool {
        if self.stopping || self.bans.is_banned(addr, now) || self.pool.has_addr(&addr) {
            return false;
        }
        self.pool.candidates.offer(addr)
    }

    /// The candidate addresses, for trackers to feed.
    pub fn candidates_mut(&mut self) -> &mut crate::swarm::Candidates {
        &mut self.pool.candidates
    }

    /// One of our own addresses (our listener, as trackers echo it back).
    pub fn add_own_address(&mut self, addr: SocketAddr) {
        self.pool.candidates.add_own(addr);
    }

    // ------------------------------------------------------------ stopping

    /// Stops: every peer is removed (its connection closed through `out`), every
    /// table emptied (asserted in debug builds). Trackers are the driver's.
    pub fn stop(&mut self, now: Instant, out: &mut Output) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        let counts = self.pool.counts();
        for key in self.pool.keys() {
            self.remove_peer(now, key, false, out);
        }
        log::debug!(
            "torrent {} stopped with {} peers connecting, {} handshaking, {} active; {} candidates dropped",
            self.info_hash.to_hex(),
            counts.connecting,
            counts.handshaking,
            counts.active,
            self.pool.candidates.queued()
        );
        self.pool.clear_addresses();
        self.deadlines.clear();
        self.haves.clear();
        if let Some(meta) = &mut self.meta {
            meta.contributors.clear();
            // Pieces in progress start over next time: their hashes go now.
            for piece in meta.picker.partial_pieces() {
                meta.store.abandon_piece(piece);
            }
            debug_assert_eq!(meta.store.in_progress(), 0, "hashes in progress after stop");
        }
        // Data and resume data are on disk at a graceful stop (docs/storage.md).
        if let Err(e) = self.save_resume(out) {
            log::warn!("cannot save resume data: {e}");
        }
        if let Some(meta) = &self.meta {
            out.files.close_store(meta.store.id());
        }
        // Stopping empties every table this torrent keeps, not just its connections.
        debug_assert_eq!(self.table_sizes(), [0; 11], "tables left after stop");
        debug_assert!(self.run.is_empty(), "a write run outlived handle_bytes");
    }
}
