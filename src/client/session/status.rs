//! What a session tells its front ends: its identity and port, each torrent's
//! state and figures, events, and the sizes of its tables for the leak tests.

use std::net::SocketAddr;

use super::{IncomingStats, Phase, Session, SessionEvent, TorrentKey, MAX_EVENTS};
use crate::client::{Owner, SessionKey, TrackerClient};
use crate::metainfo::InfoHash;
use crate::reactor::Reactor;
use crate::torrent::{Torrent, TorrentStats};
use crate::tracker::{AnnounceEvent, PeerId};

impl Session {
    pub fn key(&self) -> SessionKey {
        self.key
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The port we listen on (0 when not listening).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The addresses we listen on.
    pub fn listen_addrs(&self, rx: &mut Reactor<Owner>) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| rx.local_addr(*l).ok())
            .collect()
    }

    pub fn torrent(&self, key: TorrentKey) -> Option<&Torrent> {
        self.torrents.get(key as usize).map(|e| &e.torrent)
    }

    pub fn torrent_keys(&self) -> Vec<TorrentKey> {
        self.torrents.iter().map(|(k, _)| k as TorrentKey).collect()
    }

    pub fn find(&self, info_hash: &InfoHash) -> Option<TorrentKey> {
        self.by_hash.get(info_hash).copied()
    }

    pub fn name(&self, key: TorrentKey) -> Option<&str> {
        self.torrents.get(key as usize).map(|e| e.name.as_str())
    }

    pub fn phase(&self, key: TorrentKey) -> Option<Phase> {
        self.torrents.get(key as usize).map(|e| e.phase)
    }

    pub fn stats(&self, key: TorrentKey) -> Option<TorrentStats> {
        self.torrent(key).map(Torrent::stats)
    }

    pub fn incoming_stats(&self) -> IncomingStats {
        self.incoming.stats
    }

    /// Announces in flight for `key` (for the stop deadline).
    pub fn announces_in_flight(&self, key: TorrentKey) -> usize {
        self.torrents
            .get(key as usize)
            .map_or(0, |e| e.trackers.in_flight())
    }

    /// Announces in flight for every torrent.
    pub fn all_announces_in_flight(&self) -> usize {
        self.torrents.iter().map(|(_, e)| e.trackers.in_flight()).sum()
    }

    /// The last announces of `key`: (tracker, event, answered).
    pub fn tracker_history(&self, key: TorrentKey) -> &[(String, AnnounceEvent, bool)] {
        self.torrents
            .get(key as usize)
            .map_or(&[], |e| &e.trackers.history)
    }

    /// What each tracker of `key` answered last (for a front end's final error).
    pub fn tracker_report(&self, key: TorrentKey) -> Vec<crate::client::TrackerStatus> {
        self.torrents
            .get(key as usize)
            .map_or_else(Vec::new, |e| e.trackers.report())
    }

    pub fn tracker_client(&self) -> &TrackerClient {
        &self.trackers
    }

    /// Connections and half-open connects counted against the session budgets.
    pub fn budget_use(&self) -> (usize, usize) {
        (self.connections, self.half_open)
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Events dropped because nobody polled them (see [`MAX_EVENTS`]).
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    pub(super) fn push_event(&mut self, event: SessionEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    /// Sizes of the session's own tables, for leak tests: torrents, info hashes,
    /// pending handshakes, pending deadlines, waiting, serving, listeners,
    /// checking, open files.
    pub fn table_sizes(&self) -> [usize; 9] {
        let [pending, deadlines] = self.incoming.table_sizes();
        [
            self.torrents.len(),
            self.by_hash.len(),
            pending,
            deadlines,
            self.waiting.len(),
            self.serving.len(),
            self.listeners.len(),
            self.checking_line.len(),
            self.out.files.len(),
        ]
    }
}
