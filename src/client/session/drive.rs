//! Driving torrents on the reactor: accepting and routing incoming connections,
//! feeding peer events to the sans-IO cores, carrying out what they asked for,
//! connecting within the session's budgets, serving uploads in the deferred
//! phase, and keeping every timer armed for its earliest deadline.

use std::time::Instant;

use log::{debug, trace};

use super::incoming::Pending;
use super::{transfer, Phase, Session, SessionEvent, TorrentKey};
use crate::client::Owner;
use crate::reactor::{Event, HandleId, Reactor};
use crate::torrent::output::Action;
use crate::torrent::upload::ServeBudget;
use crate::torrent::TorrentEvent;
use crate::wire::{self, Handshake};

impl Session {
    // ------------------------------------------------------------ incoming

    pub(super) fn on_listener_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, event: Event) {
        match event {
            Event::Accepted { stream, peer } => {
                self.incoming.stats.accepted += 1;
                let room = self.incoming.len() < self.config.max_pending
                    && self.connections + self.incoming.len() < self.config.max_connections;
                if self.closed || !room {
                    self.incoming.stats.refused += 1;
                    rx.close(stream);
                    return;
                }
                let slot = self.incoming.vacant_key();
                if rx.set_owner(stream, Owner::Incoming(self.key, slot)).is_err() {
                    return;
                }
                let _ = rx.tcp_set_nodelay(stream, true);
                let deadline = rx.now() + self.config.handshake_timeout;
                self.incoming.insert(Pending {
                    conn: stream,
                    addr: peer,
                    deadline,
                });
                trace!("incoming connection from {peer} pending as {slot}");
                self.rearm_session_timer(rx);
            }
            Event::Closed(_) => self.listeners.retain(|l| *l != id),
            _ => {}
        }
    }

    pub(super) fn on_incoming_event(
        &mut self,
        rx: &mut Reactor<Owner>,
        id: HandleId,
        slot: u32,
        event: Event,
    ) {
        let Some(pending) = self.incoming.get(slot, id) else {
            return;
        };
        match event {
            Event::Readable => {
                let decoded = match rx.tcp_received(id) {
                    Ok(buffer) => Handshake::decode(buffer),
                    Err(_) => return,
                };
                match decoded {
                    Ok(None) => {}
                    Ok(Some(handshake)) => {
                        self.incoming.remove(slot, id);
                        let _ = rx.tcp_consume(id, wire::HANDSHAKE_LEN);
                        self.route(rx, pending, &handshake);
                    }
                    Err(e) => {
                        debug!("incoming {}: {e}", pending.addr);
                        self.incoming.stats.not_bittorrent += 1;
                        self.incoming.remove(slot, id);
                        rx.close(id);
                    }
                }
            }
            Event::Eof | Event::Error(_) => {
                self.incoming.stats.hung_up += 1;
                self.incoming.remove(slot, id);
                rx.close(id);
            }
            Event::Closed(_) => {
                self.incoming.remove(slot, id);
            }
            _ => {}
        }
    }

    /// A handshake arrived: hand the stream to the torrent it names.
    fn route(&mut self, rx: &mut Reactor<Owner>, pending: Pending, handshake: &Handshake) {
        let now = rx.now();
        let target = self.by_hash.get(&handshake.info_hash).copied().filter(|key| {
            matches!(
                self.torrents[*key as usize].phase,
                Phase::Running | Phase::NoMetadata
            )
        });
        let Some(key) = target else {
            debug!("incoming {} wants a torrent we do not serve", pending.addr);
            self.incoming.stats.unknown_info_hash += 1;
            rx.close(pending.conn);
            return;
        };
        self.pause_if_limited(rx, pending.conn);
        let entry = &mut self.torrents[key as usize];
        // The torrent picks the peer's slot (taking it over may free another first,
        // when this connection wins a duplicate); the tag follows. Nothing reaches
        // the stream between the two: we are inside its own callback.
        match entry
            .torrent
            .handle_incoming(now, pending.addr, pending.conn, handshake, &mut self.out)
        {
            Ok(peer) => {
                let _ = rx.set_owner(pending.conn, Owner::Peer(self.key, key, peer));
                self.incoming.stats.routed += 1;
                // Bytes after the handshake may already be buffered: no new event
                // would announce them.
                self.read_peer(rx, key, peer, pending.conn);
                self.after(rx, key);
            }
            Err(refusal) => {
                debug!("incoming {} refused: {refusal:?}", pending.addr);
                self.incoming.stats.refused += 1;
                if refusal == crate::torrent::Refusal::Ourselves {
                    // We dialled ourselves (a tracker echoed our address): answer
                    // with our handshake, so the dialling side sees its own peer id,
                    // marks the address as ours and never tries it again.
                    let mut hello = Vec::with_capacity(wire::HANDSHAKE_LEN);
                    Handshake::ours(handshake.info_hash, self.peer_id).encode(&mut hello);
                    let _ = rx.tcp_write(pending.conn, &hello);
                }
                rx.close(pending.conn);
            }
        }
    }

    pub(super) fn on_session_timer(&mut self, rx: &mut Reactor<Owner>, id: HandleId, event: Event) {
        match event {
            Event::Timer if self.timer == Some(id) => {
                self.rates_tick(rx);
                let mut expired = Vec::new();
                self.incoming.expire(rx.now(), &mut expired);
                for pending in expired {
                    debug!("incoming {}: no handshake in time", pending.addr);
                    self.incoming.stats.timed_out += 1;
                    rx.close(pending.conn);
                }
                self.rearm_session_timer(rx);
            }
            Event::Closed(_) if self.timer == Some(id) => self.timer = None,
            _ => {}
        }
    }

    pub(super) fn rearm_session_timer(&mut self, rx: &mut Reactor<Owner>) {
        let now = rx.now();
        let deadline = match (self.incoming.next_deadline(), self.rates_deadline(now)) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return,
        };
        if self.timer.is_none() {
            self.timer = rx.timer(Owner::SessionTimer(self.key)).ok();
        }
        if let Some(timer) = self.timer {
            let _ = rx.timer_start(timer, deadline.saturating_duration_since(rx.now()), None);
        }
    }

    // ------------------------------------------------------------ peers

    pub(super) fn on_peer_event(
        &mut self,
        rx: &mut Reactor<Owner>,
        id: HandleId,
        key: TorrentKey,
        peer: u32,
        event: Event,
    ) {
        let now = rx.now();
        let Some(entry) = self.torrents.get_mut(key as usize) else {
            return;
        };
        let torrent = &mut entry.torrent;
        if !torrent.pool().is_current(peer, id) {
            return; // the tag's slot holds another peer now, or none
        }
        match event {
            Event::Connected => torrent.handle_connected(now, peer, id, &mut self.out),
            Event::Readable => self.read_peer(rx, key, peer, id),
            Event::Drained => torrent.handle_drained(peer, id),
            Event::Eof => torrent.handle_disconnected(now, peer, id, "closed the connection", &mut self.out),
            Event::ConnectFailed(e) => torrent.handle_connect_failed(now, peer, id, &e, &mut self.out),
            Event::Error(e) => {
                torrent.handle_disconnected(now, peer, id, &format!("failed: {e}"), &mut self.out)
            }
            Event::Closed(_) => torrent.handle_closed(now, peer, id, &mut self.out),
            _ => {}
        }
        self.after(rx, key);
    }

    /// Feeds what the stream holds to the torrent and consumes what it used.
    fn read_peer(&mut self, rx: &mut Reactor<Owner>, key: TorrentKey, peer: u32, conn: HandleId) {
        let now = rx.now();
        let Some(entry) = self.torrents.get_mut(key as usize) else {
            return;
        };
        let used = match rx.tcp_received(conn) {
            Ok(buffer) if !buffer.is_empty() => entry.torrent.handle_bytes(now, peer, buffer, &mut self.out),
            _ => return,
        };
        let _ = rx.tcp_consume(conn, used);
        self.downloaded(rx, used as u64);
    }

    // ------------------------------------------------------------ after each call

    /// After anything touched torrent `key`: carry out its output, settle the
    /// budgets, pass its events on, connect within the budgets, queue uploads,
    /// and re-arm its timer.
    pub(super) fn after(&mut self, rx: &mut Reactor<Owner>, key: TorrentKey) {
        self.flush(rx, key);
        self.take_torrent_events(rx, key);
        self.settle(key);
        // Torrents that waited for room go first: the one that just freed a slot
        // must not take it straight back while others starve.
        if !self.waiting.is_empty() && self.budget_has_room() {
            self.connect_waiting(rx);
        }
        self.connect_more(rx, key);
        self.flush(rx, key);
        self.settle(key);
        let Some(entry) = self.torrents.get_mut(key as usize) else {
            return;
        };
        if entry.phase == Phase::Stopped {
            return;
        }
        if entry.torrent.wants_to_serve() && !self.serving.contains(&key) {
            self.serving.push_back(key);
        }
        self.queue_deferred(rx);
        self.rearm_torrent_timer(rx, key);
    }

    /// Carries out the actions in the shared output, in order. A write that fails
    /// is reported back, which may queue more actions; repeat until none are left.
    pub(super) fn flush(&mut self, rx: &mut Reactor<Owner>, key: TorrentKey) {
        let now = rx.now();
        while !self.out.is_empty() {
            let mut out = std::mem::take(&mut self.out);
            for action in out.actions.drain(..) {
                match action {
                    Action::Send { peer, conn, range } => match rx.tcp_write(conn, &out.bytes[range]) {
                        Ok(()) => {
                            if let Some(entry) = self.torrents.get_mut(key as usize) {
                                let unsent = rx.tcp_unsent(conn).unwrap_or(0);
                                entry.torrent.handle_sent(peer, conn, unsent);
                            }
                        }
                        Err(e) => {
                            if let Some(entry) = self.torrents.get_mut(key as usize) {
                                let why = format!("write failed: {e}");
                                entry
                                    .torrent
                                    .handle_disconnected(now, peer, conn, &why, &mut self.out);
                            }
                        }
                    },
                    Action::Close { conn } => rx.close(conn),
                }
            }
            out.clear();
            if self.out.is_empty() {
                self.out = out; // keep the buffer's capacity for the next batch
            }
        }
    }

    /// Updates the session-wide connection counts from the torrent's own.
    pub(super) fn settle(&mut self, key: TorrentKey) {
        let Some(entry) = self.torrents.get_mut(key as usize) else {
            return;
        };
        let now = entry.torrent.peer_counts();
        let before = std::mem::replace(&mut entry.counts, now);
        self.connections = self.connections + now.total() - before.total();
        self.half_open = self.half_open + now.connecting - before.connecting;
    }

    fn budget_has_room(&self) -> bool {
        self.half_open < self.config.max_half_open && self.connections < self.config.max_connections
    }

    /// Torrents that waited for room in the budgets get their turn, in order.
    pub(super) fn connect_waiting(&mut self, rx: &mut Reactor<Owner>) {
        let mut turns = self.waiting.len();
        while turns > 0 && self.budget_has_room() {
            turns -= 1;
            let Some(key) = self.waiting.pop_front() else {
                break;
            };
            if let Some(entry) = self.torrents.get_mut(key as usize) {
                entry.waiting = false;
            }
            self.connect_more(rx, key);
            self.flush(rx, key);
            self.settle(key);
            self.rearm_torrent_timer(rx, key);
        }
    }

    /// Opens connections to candidates while the torrent and the session have room.
    fn connect_more(&mut self, rx: &mut Reactor<Owner>, key: TorrentKey) {
        let now = rx.now();
        let timeout = self.config.torrent.connect_timeout;
        loop {
            self.settle(key);
            let Some(entry) = self.torrents.get_mut(key as usize) else {
                return;
            };
            // A checking torrent does not know what it has yet; a stopped one is done.
            if !matches!(entry.phase, Phase::Running | Phase::NoMetadata) || self.closed {
                return;
            }
            if !entry.torrent.wants_connections() {
                return;
            }
            if !(self.half_open < self.config.max_half_open && self.connections < self.config.max_connections)
            {
                if !entry.waiting {
                    entry.waiting = true;
                    self.waiting.push_back(key);
                }
                return;
            }
            let Some(addr) = entry.torrent.poll_connect(now) else {
                return;
            };
            let peer = entry.torrent.vacant_key();
            match rx.tcp_connect(addr, Owner::Peer(self.key, key, peer), Some(timeout)) {
                Ok(conn) => {
                    let _ = rx.tcp_set_nodelay(conn, true);
                    if self.rates.reads_paused {
                        let _ = rx.tcp_pause_reads(conn);
                    }
                    let got = entry.torrent.handle_connecting(now, addr, conn, &mut self.out);
                    debug_assert_eq!(got, peer);
                    trace!("connecting to {addr} as peer {peer}");
                }
                Err(e) => {
                    let error = match e {
                        crate::reactor::ReactorError::Io(e) => e,
                        other => std::io::Error::other(other.to_string()),
                    };
                    entry.torrent.handle_connect_error(addr, &error);
                }
            }
        }
    }

    /// Torrent events become session events; completion is announced.
    pub(super) fn take_torrent_events(&mut self, rx: &mut Reactor<Owner>, key: TorrentKey) {
        let now = rx.now();
        loop {
            let Some(entry) = self.torrents.get_mut(key as usize) else {
                return;
            };
            let Some(event) = entry.torrent.poll_event() else {
                break;
            };
            let event = match event {
                TorrentEvent::Completed => {
                    // `completed` is for a download that finished, not for data
                    // that was complete when we started (a seed announces left=0).
                    if entry.torrent.stats().downloaded > 0 {
                        entry.trackers.completed(now);
                    }
                    SessionEvent::Completed(key)
                }
                TorrentEvent::Failed(why) => SessionEvent::Failed(key, why),
                TorrentEvent::PeerGone {
                    peer_id,
                    addr,
                    downloaded,
                    uploaded,
                } => SessionEvent::PeerGone {
                    torrent: key,
                    peer_id,
                    addr,
                    downloaded,
                    uploaded,
                },
                TorrentEvent::Verified(_) => {
                    self.resume_dirty(key, now);
                    continue;
                }
            };
            self.push_event(event);
        }
        let Some(entry) = self.torrents.get_mut(key as usize) else {
            return;
        };
        // A checking torrent announces once it knows what it has (`left` then is
        // right: a seed says 0).
        if matches!(entry.phase, Phase::Running | Phase::NoMetadata) {
            let transfer = transfer(&entry.torrent);
            entry.trackers.poll(rx, &mut self.trackers, transfer);
        }
    }

    fn rearm_torrent_timer(&mut self, rx: &mut Reactor<Owner>, key: TorrentKey) {
        let Some(entry) = self.torrents.get_mut(key as usize) else {
            return;
        };
        let deadline = [
            entry.torrent.poll_timeout(),
            entry.trackers.poll_timeout(),
            entry.resume_due,
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(deadline) = deadline else {
            if let Some(timer) = entry.timer {
                let _ = rx.timer_stop(timer);
            }
            return;
        };
        if entry.timer.is_none() {
            entry.timer = rx.timer(Owner::TorrentTimer(self.key, key)).ok();
        }
        if let Some(timer) = entry.timer {
            let _ = rx.timer_start(timer, deadline.saturating_duration_since(rx.now()), None);
        }
    }

    // ------------------------------------------------------------ uploads

    /// Serves uploads for this iteration: at most `serve_blocks_per_iteration`
    /// blocks read from disk across all torrents, torrents taking turns; what is
    /// left waits for the next iteration's deferred phase.
    pub(super) fn serve_round(&mut self, rx: &mut Reactor<Owner>) {
        let now: Instant = rx.now();
        let mut bytes = self.upload_allowance(now);
        let mut left = self.config.serve_blocks_per_iteration;
        // Passes over the torrents; each gets a small share per turn, so one
        // torrent cannot take the whole round. A pass that serves nothing ends it.
        while left > 0 && bytes > 0 && !self.serving.is_empty() {
            let mut served_this_pass = 0;
            for _ in 0..self.serving.len() {
                let Some(key) = self.serving.pop_front() else {
                    break;
                };
                let Some(entry) = self.torrents.get_mut(key as usize) else {
                    continue;
                };
                let mut share = ServeBudget {
                    blocks: left.min(8),
                    bytes,
                };
                let served = entry.torrent.serve(now, &mut share, &mut self.out);
                let used = bytes - share.bytes;
                bytes -= used;
                self.uploaded(now, used);
                left -= served;
                served_this_pass += served;
                self.flush(rx, key);
                // A block that could not be read failed the torrent: say so now.
                self.take_torrent_events(rx, key);
                if self
                    .torrents
                    .get(key as usize)
                    .is_some_and(|e| e.torrent.wants_to_serve())
                {
                    self.serving.push_back(key);
                }
                if left == 0 || bytes == 0 {
                    break;
                }
            }
            if served_this_pass == 0 {
                break;
            }
        }
        if left == 0 {
            // More to serve: the next iteration's deferred phase continues.
            self.queue_deferred(rx);
        } else if !self.serving.is_empty() {
            // Held back by the upload limit: the session timer wakes us.
            self.rearm_session_timer(rx);
        }
    }
}
