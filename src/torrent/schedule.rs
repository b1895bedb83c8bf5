//! Request scheduling: keeping each peer's pipeline full from the picker, and
//! handing blocks that came back to the pool to the peers that can take them.

use std::time::Instant;

use super::pool::PeerState;
use super::{Output, Torrent};
use crate::swarm::PeerKey;
use crate::wire::Message;

impl Torrent {
    /// Tops up `key`'s request pipeline.
    pub(super) fn fill_requests(&mut self, now: Instant, key: PeerKey, out: &mut Output) {
        if self.stopping {
            return;
        }
        let Some(meta) = &mut self.meta else { return };
        let Some(peer) = self.pool.get_mut(key) else {
            return;
        };
        let conn = peer.conn;
        let Some(session) = peer.session_mut() else { return };
        if !session.can_request() {
            return;
        }
        let target = session.pipeline_target();
        if session.requests.len() >= target {
            return;
        }
        let allowed = session.peer_choking.then_some(session.allowed_fast.as_slice());
        self.picks.clear();
        meta.picker.pick(
            key,
            &session.has,
            allowed,
            target - session.requests.len(),
            &mut self.picks,
        );
        if self.picks.is_empty() {
            return;
        }
        if session.peer_choking {
            self.stats.requests_while_choked += self.picks.len() as u32;
        }
        let start = out.bytes.len();
        for block in &self.picks {
            session.requests.push_back((*block, now));
            crate::wire::encode(&Message::Request(*block), &mut out.bytes);
        }
        session.pipeline.on_request_sent(now, self.picks.len());
        out.sent(key, conn, start);
        session.last_sent = now;
        self.schedule_peer(now, key);
    }

    /// Blocks went back to the pool: every peer that can take requests gets a turn.
    pub(super) fn refill(&mut self, now: Instant, out: &mut Output) {
        if self.stopping || self.requestable.is_empty() {
            return;
        }
        let keys: Vec<PeerKey> = self.requestable.iter().copied().collect();
        for key in keys {
            self.fill_requests(now, key, out);
        }
    }

    /// The deadline `key` has next: its handshake timeout while connecting or
    /// handshaking; then the earliest of silence, keep-alive and oldest request.
    pub(super) fn schedule_peer(&mut self, now: Instant, key: PeerKey) {
        let config = &self.config;
        let Some(peer) = self.pool.get(key) else { return };
        let at = match &peer.state {
            PeerState::Connecting => peer.since + self.connect_timeout(&peer.addr),
            PeerState::Handshaking => peer.since + config.handshake_timeout,
            PeerState::Active(s) => {
                let mut at =
                    (s.last_received + config.silence_timeout).min(s.last_sent + config.keepalive_interval);
                if let Some(oldest) = s.oldest_request() {
                    at = at.min(oldest + s.pipeline.request_timeout().min(config.request_timeout));
                }
                at
            }
        };
        self.schedule_deadline(key, at.max(now));
    }

    pub(super) fn schedule_deadline(&mut self, key: PeerKey, at: std::time::Instant) {
        let Some(peer) = self.pool.get_mut(key) else {
            return;
        };
        let slot = peer.slot(key);
        self.deadlines.schedule(slot, at, &mut peer.next_deadline);
        self.compact_deadlines();
    }
}
