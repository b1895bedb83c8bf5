//! One handshaken peer's protocol state, sans-IO: choking and interest both ways,
//! what the peer has, our requests at it, its requests to us, rates and times.
//!
//! The torrent core (`crate::torrent`) owns one [`PeerSession`] per active peer and
//! drops it in the one place a peer is removed; nothing here refers to another
//! peer, a socket or the clock.

pub mod pipeline;
mod rate;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub use pipeline::Pipeline;
pub use rate::Rate;

use crate::swarm::PeerHas;
use crate::tracker::PeerId;
use crate::wire::BlockRef;

/// The peer's request queue when it does not say (BEP 10's note on libtorrent).
pub const DEFAULT_REQQ: usize = 250;
/// Most allowed-fast pieces remembered per peer.
pub const MAX_ALLOWED_FAST: usize = 64;
/// Requests from a peer we queue at most (the `reqq` we advertise). libtorrent
/// keeps up to 500 requests out to a peer (its `max_out_request_queue`) but no more
/// than the peer's `reqq`: at 250 its downloads from us ran about 60 % slower on
/// loopback (1.60 s against 0.97 s for 256 MiB, medians of 9), the pipeline empty
/// while it waited for blocks. 500 queued requests are 6 KB of `BlockRef`s.
pub const OUR_REQQ: usize = 500;

/// The state of one handshaken peer.
#[derive(Debug)]
pub struct PeerSession {
    pub peer_id: PeerId,
    /// Both sides support the Fast extension (BEP 6).
    pub fast: bool,
    /// The peer supports the extension protocol (BEP 10).
    pub extensions: bool,
    pub has: PeerHas,
    /// How many pieces the peer has that we lack; we are interested while > 0.
    pub wanted: u32,
    /// A bitfield, have-all or have-none arrived (only one may, BEP 3 and 6).
    pub announced: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    pub am_interested: bool,
    pub am_choking: bool,
    /// Our requests at this peer, oldest first, with when they were sent.
    pub requests: VecDeque<(BlockRef, Instant)>,
    /// Pieces the peer lets us request while it chokes us.
    pub allowed_fast: Vec<u32>,
    /// Pieces we let the peer request while we choke it.
    pub allowed_fast_sent: Vec<u32>,
    /// The peer's request queue limit from its extension handshake.
    pub reqq: Option<usize>,
    /// Its requests to us, oldest first (at most [`OUR_REQQ`]).
    pub queue: VecDeque<BlockRef>,
    /// Requests we dropped because the queue was full (no Fast extension to reject).
    pub dropped_requests: u32,
    /// Bytes handed to the transport and not yet known to be sent.
    pub unsent: usize,
    /// In the torrent's line of peers to upload to (at most once).
    pub in_line: bool,
    /// How many requests to keep in flight, and when one has timed out.
    pub pipeline: Pipeline,
    pub download: Rate,
    pub upload: Rate,
    pub downloaded: u64,
    pub uploaded: u64,
    pub connected_at: Instant,
    pub last_received: Instant,
    pub last_sent: Instant,
    /// When the last block arrived, and when the peer last unchoked us (snubbing).
    pub last_block: Option<Instant>,
    pub unchoked_us_at: Option<Instant>,
    /// Blocks we cancelled (or that a choke cancelled) and that may still arrive:
    /// that many unrequested blocks are not held against the peer.
    pub late_allowance: u32,
    /// Blocks it sent that nobody asked for (beyond the allowance).
    pub unrequested: u32,
}

impl PeerSession {
    pub fn new(now: Instant, peer_id: PeerId, fast: bool, extensions: bool, has: PeerHas) -> PeerSession {
        PeerSession {
            peer_id,
            fast,
            extensions,
            has,
            wanted: 0,
            announced: false,
            peer_choking: true,
            peer_interested: false,
            am_interested: false,
            am_choking: true,
            requests: VecDeque::new(),
            allowed_fast: Vec::new(),
            allowed_fast_sent: Vec::new(),
            reqq: None,
            queue: VecDeque::new(),
            dropped_requests: 0,
            unsent: 0,
            in_line: false,
            pipeline: Pipeline::new(now),
            download: Rate::new(now),
            upload: Rate::new(now),
            downloaded: 0,
            uploaded: 0,
            connected_at: now,
            last_received: now,
            last_sent: now,
            last_block: None,
            unchoked_us_at: None,
            late_allowance: 0,
            unrequested: 0,
        }
    }

    /// How many requests to keep in flight now: what the link carries
    /// ([`Pipeline`]), within the peer's `reqq` and our own limit.
    pub fn pipeline_target(&self) -> usize {
        let cap = self.reqq.unwrap_or(DEFAULT_REQQ).min(pipeline::MAX_IN_FLIGHT);
        self.pipeline.target(cap.max(1))
    }

    /// May we request now (interested, and unchoked or holding allowed-fast pieces)?
    pub fn can_request(&self) -> bool {
        self.am_interested && (!self.peer_choking || (self.fast && !self.allowed_fast.is_empty()))
    }

    /// The blocks outstanding, without their times.
    pub fn outstanding(&self, out: &mut Vec<BlockRef>) {
        out.clear();
        out.extend(self.requests.iter().map(|(b, _)| *b));
    }

    /// Removes `block` from our requests; returns when it was sent, if it was.
    /// Blocks usually arrive in request order, so the search ends at the front.
    pub fn take_request(&mut self, block: BlockRef) -> Option<Instant> {
        let at = self.requests.iter().position(|(b, _)| *b == block)?;
        self.requests.remove(at).map(|(_, sent)| sent)
    }

    /// A requested block arrived from this peer; it was requested at `sent_at`.
    pub fn on_block(&mut self, now: Instant, bytes: usize, sent_at: Instant) {
        self.download.add(now, bytes as u64);
        self.pipeline.on_block(now, bytes, sent_at);
        self.downloaded += bytes as u64;
        self.last_block = Some(now);
    }

    /// Requests sent at or before `cutoff`: they time out and are returned.
    pub fn expire_requests(&mut self, now: Instant, cutoff: Instant, expired: &mut Vec<BlockRef>) {
        let before = expired.len();
        while let Some(&(block, sent)) = self.requests.front() {
            if sent > cutoff {
                break;
            }
            self.requests.pop_front();
            expired.push(block);
        }
        if expired.len() > before {
            self.pipeline.on_timeout(now, expired.len() - before);
        }
    }

    /// The peer choked us. Without the Fast extension that cancels every request
    /// (returned); with it, requests stand until the peer rejects them (BEP 6).
    pub fn on_choke(&mut self, now: Instant, cancelled: &mut Vec<BlockRef>) {
        self.peer_choking = true;
        self.unchoked_us_at = None;
        if !self.fast {
            cancelled.extend(self.requests.drain(..).map(|(b, _)| b));
            self.late_allowance = self.late_allowance.saturating_add(cancelled.len() as u32);
        }
        self.pipeline.on_choke(now, cancelled.len());
    }

    pub fn oldest_request(&self) -> Option<Instant> {
        self.requests.front().map(|(_, sent)| *sent)
    }

    /// Snubbed: it unchokes us, we want something, and nothing came for `after`.
    pub fn is_snubbing(&self, now: Instant, after: Duration) -> bool {
        let Some(since) = self.unchoked_us_at else {
            return false;
        };
        let quiet_since = self.last_block.map_or(since, |b| b.max(since));
        self.am_interested && now.saturating_duration_since(quiet_since) >= after
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::BLOCK;

    fn session(fast: bool) -> PeerSession {
        PeerSession::new(
            Instant::now(),
            PeerId([0; 20]),
            fast,
            false,
            PeerHas::nothing(Some(10)),
        )
    }

    fn block(index: u32, begin: u32) -> BlockRef {
        BlockRef {
            index,
            begin,
            length: BLOCK,
        }
    }

    #[test]
    fn the_pipeline_stays_within_reqq() {
        let t0 = Instant::now();
        let mut s = PeerSession::new(t0, PeerId([0; 20]), true, false, PeerHas::All);
        assert_eq!(s.pipeline_target(), pipeline::INITIAL_WINDOW);
        s.reqq = Some(5);
        assert_eq!(s.pipeline_target(), 5);
    }

    #[test]
    fn choke_cancels_requests_only_without_fast() {
        let now = Instant::now();
        let mut plain = session(false);
        plain.requests.push_back((block(1, 0), now));
        let mut cancelled = Vec::new();
        plain.on_choke(now, &mut cancelled);
        assert_eq!(cancelled, vec![block(1, 0)]);
        assert_eq!(plain.late_allowance, 1, "it may still arrive");
        let mut fast = session(true);
        fast.requests.push_back((block(1, 0), now));
        cancelled.clear();
        fast.on_choke(now, &mut cancelled);
        assert!(cancelled.is_empty());
        assert!(fast.take_request(block(1, 0)).is_some() && fast.take_request(block(1, 0)).is_none());
    }

    #[test]
    fn expired_requests_leave_in_order() {
        let t0 = Instant::now();
        let mut s = session(true);
        s.requests.push_back((block(0, 0), t0));
        s.requests
            .push_back((block(0, BLOCK), t0 + Duration::from_secs(5)));
        let mut expired = Vec::new();
        s.expire_requests(
            t0 + Duration::from_secs(2),
            t0 + Duration::from_secs(1),
            &mut expired,
        );
        assert_eq!(expired, vec![block(0, 0)]);
        assert_eq!(s.requests.len(), 1);
        assert_eq!(s.pipeline_target(), 1, "after a timeout, one request at a time");
    }

    #[test]
    fn a_peer_that_unchokes_and_sends_nothing_is_snubbing() {
        let t0 = Instant::now();
        let mut s = session(true);
        s.am_interested = true;
        s.unchoked_us_at = Some(t0);
        assert!(!s.is_snubbing(t0 + Duration::from_secs(59), Duration::from_secs(60)));
        assert!(s.is_snubbing(t0 + Duration::from_secs(60), Duration::from_secs(60)));
        s.on_block(t0 + Duration::from_secs(61), 100, t0 + Duration::from_secs(60));
        assert!(!s.is_snubbing(t0 + Duration::from_secs(100), Duration::from_secs(60)));
    }
}
