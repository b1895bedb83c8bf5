//! A torrent's one timer: request timeouts, keep-alives, silent and slow-to-handshake
//! peers, reconnections and announces, all from the earliest deadline.

use std::time::Instant;

use log::debug;

use super::{PeerState, Torrent};
use crate::client::{Owner, TrackerClient};
use crate::reactor::Reactor;
use crate::wire::{self, Message};

impl Torrent {
    // ------------------------------------------------------------ timers

    pub(super) fn on_timer(&mut self, rx: &mut Reactor<Owner>, trackers: &mut TrackerClient) {
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
    pub(super) fn rearm(&mut self, rx: &mut Reactor<Owner>) {
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
            None => match rx.timer(Owner::TorrentTimer(0, self.key)) {
                Ok(timer) => *self.timer.insert(timer),
                Err(_) => return,
            },
        };
        let _ = rx.timer_start(timer, deadline.saturating_duration_since(now), None);
    }
}
