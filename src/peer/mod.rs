//! One peer connection's protocol state, sans-IO: choking and interest, what the
//! peer has, the requests we have outstanding at it and how many we keep in flight.
//!
//! The pipeline is sized by the peer's measured rate (enough requests to cover
//! [`PIPELINE_SECONDS`] of transfer), within [`MIN_PIPELINE`] and the peer's `reqq`.

pub mod pipeline;

pub use pipeline::Pipeline;

use std::time::{Duration, Instant};

use crate::swarm::Bitfield;
use crate::tracker::PeerId;
use crate::wire::{BlockRef, BLOCK};

/// Requests in flight when nothing is known about the peer yet.
pub const MIN_PIPELINE: usize = 8;
/// Upper bound on requests in flight, whatever the peer allows.
pub const MAX_PIPELINE: usize = 500;
/// Seconds of transfer the pipeline should cover.
pub const PIPELINE_SECONDS: f64 = 1.0;
/// Most allowed-fast pieces remembered per peer.
pub const MAX_ALLOWED_FAST: usize = 64;

/// A moving estimate of a peer's download rate.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    bytes_per_second: f64,
    window_start: Instant,
    window_bytes: u64,
}

impl Rate {
    fn new(now: Instant) -> Rate {
        Rate {
            bytes_per_second: 0.0,
            window_start: now,
            window_bytes: 0,
        }
    }

    fn add(&mut self, now: Instant, bytes: u64) {
        self.window_bytes += bytes;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= Duration::from_millis(100) {
            let sample = self.window_bytes as f64 / elapsed.as_secs_f64();
            // Rise fast, fall slowly: a quiet moment should not starve the pipeline.
            self.bytes_per_second = if sample > self.bytes_per_second {
                sample
            } else {
                0.7 * self.bytes_per_second + 0.3 * sample
            };
            self.window_start = now;
            self.window_bytes = 0;
        }
    }

    pub fn bytes_per_second(&self) -> f64 {
        self.bytes_per_second
    }
}

/// The state of one handshaken peer.
#[derive(Debug)]
pub struct PeerSession {
    pub peer_id: PeerId,
    /// Both sides support the Fast extension (BEP 6).
    pub fast: bool,
    pub has: Bitfield,
    pub peer_choking: bool,
    pub peer_interested: bool,
    pub am_interested: bool,
    pub am_choking: bool,
    /// Our requests at this peer, with when they were sent.
    pub requests: Vec<(BlockRef, Instant)>,
    /// Pieces the peer lets us request while it chokes us.
    pub allowed_fast: Vec<u32>,
    /// The peer's request queue limit from its extension handshake.
    pub reqq: Option<usize>,
    pub rate: Rate,
    pub downloaded: u64,
    pub last_received: Instant,
    pub last_sent: Instant,
    /// Requests that timed out since the last block arrived.
    pub timeouts: u32,
}

impl PeerSession {
    pub fn new(now: Instant, peer_id: PeerId, fast: bool, piece_count: u32) -> PeerSession {
        PeerSession {
            peer_id,
            fast,
            has: Bitfield::new(piece_count),
            peer_choking: true,
            peer_interested: false,
            am_interested: false,
            am_choking: true,
            requests: Vec::new(),
            allowed_fast: Vec::new(),
            reqq: None,
            rate: Rate::new(now),
            downloaded: 0,
            last_received: now,
            last_sent: now,
            timeouts: 0,
        }
    }

    /// How many requests to keep in flight now.
    pub fn pipeline_target(&self) -> usize {
        if self.timeouts > 0 {
            return 1; // snubbed: probe with one request until it answers again
        }
        let by_rate = (self.rate.bytes_per_second() * PIPELINE_SECONDS / f64::from(BLOCK)) as usize;
        let cap = self.reqq.unwrap_or(MAX_PIPELINE).clamp(1, MAX_PIPELINE);
        by_rate.max(MIN_PIPELINE).min(cap)
    }

    /// May we request now (unchoked, or choked with allowed-fast pieces)?
    pub fn can_request(&self) -> bool {
        self.am_interested && (!self.peer_choking || (self.fast && !self.allowed_fast.is_empty()))
    }

    /// The blocks outstanding, without their times.
    pub fn outstanding(&self) -> Vec<BlockRef> {
        self.requests.iter().map(|(b, _)| *b).collect()
    }

    /// Removes `block` from the outstanding requests; returns whether it was there.
    pub fn take_request(&mut self, block: BlockRef) -> bool {
        match self.requests.iter().position(|(b, _)| *b == block) {
            Some(at) => {
                self.requests.swap_remove(at);
                true
            }
            None => false,
        }
    }

    /// A block arrived from this peer.
    pub fn on_block(&mut self, now: Instant, bytes: usize) {
        self.rate.add(now, bytes as u64);
        self.downloaded += bytes as u64;
        self.timeouts = 0;
    }

    /// Requests sent before `cutoff`: they time out and are returned.
    pub fn expire_requests(&mut self, cutoff: Instant) -> Vec<BlockRef> {
        let mut expired = Vec::new();
        self.requests.retain(|(block, sent)| {
            let keep = *sent > cutoff;
            if !keep {
                expired.push(*block);
            }
            keep
        });
        if !expired.is_empty() {
            self.timeouts += 1;
        }
        expired
    }

    /// The peer choked us. Without the Fast extension that cancels every request
    /// (returned); with it, requests stand until the peer rejects them (BEP 6).
    pub fn on_choke(&mut self) -> Vec<BlockRef> {
        self.peer_choking = true;
        if self.fast {
            Vec::new()
        } else {
            self.requests.drain(..).map(|(b, _)| b).collect()
        }
    }

    pub fn oldest_request(&self) -> Option<Instant> {
        self.requests.iter().map(|(_, sent)| *sent).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(fast: bool) -> PeerSession {
        PeerSession::new(Instant::now(), PeerId([0; 20]), fast, 10)
    }

    #[test]
    fn pipeline_grows_with_the_measured_rate_within_reqq() {
        let t0 = Instant::now();
        let mut s = PeerSession::new(t0, PeerId([0; 20]), true, 10);
        assert_eq!(s.pipeline_target(), MIN_PIPELINE);
        // 110 blocks in 110 ms: ~16 MB/s, so about a second's worth is ~1000 blocks, capped.
        for i in 0..110 {
            s.on_block(t0 + Duration::from_millis(i + 1), BLOCK as usize);
        }
        assert_eq!(s.pipeline_target(), MAX_PIPELINE);
        s.reqq = Some(250);
        assert_eq!(s.pipeline_target(), 250);
    }

    #[test]
    fn choke_cancels_requests_only_without_fast() {
        let now = Instant::now();
        let block = BlockRef {
            index: 1,
            begin: 0,
            length: BLOCK,
        };
        let mut plain = session(false);
        plain.requests.push((block, now));
        assert_eq!(plain.on_choke(), vec![block]);
        let mut fast = session(true);
        fast.requests.push((block, now));
        assert!(fast.on_choke().is_empty());
        assert!(fast.take_request(block) && !fast.take_request(block));
    }

    #[test]
    fn expired_requests_snub_the_peer_until_data_arrives() {
        let t0 = Instant::now();
        let mut s = session(true);
        s.requests.push((
            BlockRef {
                index: 0,
                begin: 0,
                length: BLOCK,
            },
            t0,
        ));
        s.requests.push((
            BlockRef {
                index: 0,
                begin: BLOCK,
                length: BLOCK,
            },
            t0 + Duration::from_secs(5),
        ));
        assert_eq!(s.expire_requests(t0 + Duration::from_secs(1)).len(), 1);
        assert_eq!(s.pipeline_target(), 1);
        s.on_block(t0 + Duration::from_secs(6), BLOCK as usize);
        assert!(s.pipeline_target() >= MIN_PIPELINE);
    }
}
