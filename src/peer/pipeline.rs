//! How many requests to keep in flight to one peer, and when a request has timed
//! out. Sans-IO: the caller reports requests sent, blocks received (with the time
//! each was requested), rejects, chokes and timeouts, and asks for the target.
//!
//! # The rule
//! A peer serves our requests in order, so the requests in flight are what keeps
//! its upload busy while ours travel to it and its blocks travel back. Filling the
//! link takes its *bandwidth × round trip* in flight (the bandwidth-delay product,
//! BDP) and a little more, so that the peer always has the next request queued.
//! More only queues at the peer: those blocks are committed to that one peer and
//! arrive no sooner. So:
//!
//! - **Window** = [`HEADROOM`] (1.5) × *rate* × *round trip* / 16 KiB + [`SPARE`] (8)
//!   requests, never more than the caller's cap (the peer's `reqq` and our
//!   [`MAX_IN_FLIGHT`], 2000).
//! - **Rate** is measured per *round*: from one block's arrival until a block that
//!   was requested after that arrival comes back (one round trip, at least 1 ms).
//!   The window uses the highest round rate of the last one to two seconds, so a
//!   round that was short of work does not shrink it, while a peer that slows down
//!   gets fewer requests within a few seconds. While the window is what limits the
//!   rate, the next round measures more and the window grows by half each round.
//! - **Round trip** is the lowest *average* latency of a round's blocks: the
//!   lowest, because latency measured behind our own queue at the peer includes that
//!   queue and would inflate itself (more requests, more queue, a longer "round
//!   trip", more requests); an average, because a peer that answers in batches makes
//!   single samples arbitrarily short. The first rounds, sent into an empty pipe,
//!   measure it. If no round confirms it for [`RTT_PROBE_INTERVAL`] (10 s), the
//!   window drops to half the BDP until the peer's queue has drained and a few blocks
//!   requested since have come back; their average latency replaces the estimate.
//!   A round trip that has really grown is learned that way, at the cost of about
//!   one round trip at half the rate every 10 s.
//! - **Start**: [`INITIAL_WINDOW`] (64) requests, 1 MiB: a 40 MB/s link with a
//!   25 ms round trip is full from the first round trip (the old fixed 8 filled
//!   2.6 MB/s at 50 ms). 64 rather than 32 saves one round trip of slow start on
//!   long links (at 100 ms each way, 64 MiB took 1.70 s instead of 1.88 s); more
//!   would commit over 1 MiB to a peer whose speed is still unknown. Then, like
//!   TCP's slow start, one more request per block received (the window doubles
//!   each round trip) while each round's rate grows by a quarter or more. Slow
//!   start ends after two rounds without such growth, or as
//!   soon as four blocks in a row took over 1.5 × the quickest one (they queued
//!   behind our own requests: the window is past the BDP; the round trip is then
//!   taken as at most twice the quickest block). A 200 ms, 20 MB/s link (BDP ≈ 244
//!   requests) holds 256 requests after three round trips and settles near 1.5 × BDP.
//! - **Falling behind**: a timeout halves the rate estimate and sends one request at
//!   a time until a block arrives again; a rate that drops shrinks the window as
//!   above.
//! - **Request timeout**: 3 × the smoothed request latency (queueing included,
//!   smoothed as RFC 6298 does) + 4 × its variation, within 5 s and 30 s; 20 s
//!   before the first block. A dead peer is noticed after 5 s on a fast link instead
//!   of 20 s, and a slow peer with a deep queue is not timed out while it delivers.

use std::time::{Duration, Instant};

use crate::wire::BLOCK;

/// Requests in flight before anything is measured.
pub const INITIAL_WINDOW: usize = 64;
/// Our own limit on requests in flight to one peer (32 MiB).
pub const MAX_IN_FLIGHT: usize = 2000;
/// The window covers this multiple of the bandwidth-delay product.
pub const HEADROOM: f64 = 1.5;
/// Requests on top of the estimate, for peers that answer in batches.
pub const SPARE: f64 = 8.0;
/// How long the round-trip estimate stands without being confirmed.
pub const RTT_PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// Timeout before the first block.
pub const INITIAL_TIMEOUT: Duration = Duration::from_secs(20);
/// Shortest request timeout.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);

/// Shortest round, so that rate samples on sub-millisecond links span many blocks.
const MIN_ROUND: Duration = Duration::from_millis(1);
/// Rate samples are kept in buckets of this length; the window uses the last two.
const RATE_BUCKET: Duration = Duration::from_secs(1);
/// Growth that counts as "the rate keeps rising" in slow start.
const GROWTH: f64 = 1.25;
/// Rounds without growth that end slow start.
const STALLED_ROUNDS: u32 = 2;
/// Blocks in a row that waited in a queue at the peer, ending slow start.
const LATE_BLOCKS: u32 = 4;
/// When slow start ends on a queue, the round trip is at most this many times the
/// quickest block (room for jitter and peers that answer in batches).
const LATE_ROUND_TRIP_FACTOR: f64 = 2.0;
/// A round whose mean latency is within this factor of the estimate confirms it.
const CONFIRM: f64 = 1.125;
/// Fewest requests in flight while draining the queue to measure the round trip.
const PROBE_MIN_WINDOW: f64 = 2.0;
/// Blocks requested after the drain whose mean latency is the new estimate.
const PROBE_SAMPLES: u32 = 4;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// Slow start: +1 request per block while the rate keeps rising.
    Startup {
        best_rate: f64,
        stalled: u32,
        /// Lowest single latency so far, and how many blocks in a row came later
        /// than [`HEADROOM`] times it.
        min_latency: f64,
        late: u32,
    },
    /// The window follows the bandwidth-delay product.
    Steady,
    /// Draining the peer's queue to measure the round trip again.
    ProbeRtt {
        drained_at: Option<Instant>,
        samples: u32,
        latency_sum: f64,
    },
}

/// The request pipeline of one peer. See the module documentation for the rule.
#[derive(Clone, Debug)]
pub struct Pipeline {
    phase: Phase,
    /// Requests to keep in flight, before the cap.
    window: f64,
    in_flight: usize,
    /// A request timed out and no block has arrived since.
    snubbed: bool,

    /// The arrival that began the current round (`None`: the next one begins it).
    round_start: Option<Instant>,
    round_bytes: u64,
    round_blocks: u32,
    round_latency_sum: f64,
    round_window: f64,

    /// Highest round rate (bytes/s) in the current and the previous bucket.
    rate_bucket_start: Instant,
    rate_current: f64,
    rate_previous: f64,

    /// Round-trip estimate in seconds, and when a round last confirmed it.
    round_trip: Option<f64>,
    round_trip_confirmed: Instant,

    /// Smoothed request latency and its variation (RFC 6298), in seconds.
    srtt: Option<f64>,
    rttvar: f64,
}

impl Pipeline {
    /// A pipeline for a peer that has just connected.
    pub fn new(now: Instant) -> Pipeline {
        Pipeline {
            phase: Phase::Startup {
                best_rate: 0.0,
                stalled: 0,
                min_latency: f64::INFINITY,
                late: 0,
            },
            window: INITIAL_WINDOW as f64,
            in_flight: 0,
            snubbed: false,
            round_start: None,
            round_bytes: 0,
            round_blocks: 0,
            round_latency_sum: 0.0,
            round_window: INITIAL_WINDOW as f64,
            rate_bucket_start: now,
            rate_current: 0.0,
            rate_previous: 0.0,
            round_trip: None,
            round_trip_confirmed: now,
            srtt: None,
            rttvar: 0.0,
        }
    }

    /// How many requests to keep in flight now: at most `cap` (the peer's `reqq`
    /// and [`MAX_IN_FLIGHT`]), at least 1 when `cap` allows.
    pub fn target(&self, cap: usize) -> usize {
        if self.snubbed {
            return cap.min(1);
        }
        let window = match self.phase {
            Phase::ProbeRtt { .. } => self.probe_window(),
            _ => self.window,
        };
        (window as usize).clamp(1, MAX_IN_FLIGHT).min(cap)
    }

    /// Requests are outstanding longer than this: they have timed out.
    pub fn request_timeout(&self) -> Duration {
        let Some(srtt) = self.srtt else {
            return INITIAL_TIMEOUT;
        };
        let secs = 3.0 * srtt + 4.0 * self.rttvar;
        Duration::from_secs_f64(secs.min(MAX_TIMEOUT.as_secs_f64())).clamp(MIN_TIMEOUT, MAX_TIMEOUT)
    }

    /// Requests outstanding, as this pipeline has counted them.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The rate the window is sized for, in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate_max() as u64
    }

    /// The round-trip estimate, once a round has measured it.
    pub fn round_trip(&self) -> Option<Duration> {
        self.round_trip.map(Duration::from_secs_f64)
    }

    /// A request timed out and no block has come since (the target is 1).
    pub fn is_snubbed(&self) -> bool {
        self.snubbed
    }

    /// `count` requests went out.
    pub fn on_request_sent(&mut self, _now: Instant, count: usize) {
        if self.in_flight == 0 {
            // After an idle spell (choked, nothing to ask for) the next arrival
            // starts a fresh round, so the gap does not count as a slow round.
            self.round_start = None;
        }
        self.in_flight = self.in_flight.saturating_add(count);
    }

    /// A block of `bytes` arrived for a request sent at `sent_at`.
    pub fn on_block(&mut self, now: Instant, bytes: usize, sent_at: Instant) {
        let before = self.in_flight;
        self.in_flight = self.in_flight.saturating_sub(1);
        self.snubbed = false;
        let latency = now.saturating_duration_since(sent_at).as_secs_f64();
        self.smooth_latency(latency);

        if let Phase::Startup { .. } = self.phase {
            self.slow_start(before, latency);
        }

        match self.round_start {
            Some(start) if sent_at >= start && now.saturating_duration_since(start) >= MIN_ROUND => {
                let elapsed = now.saturating_duration_since(start).as_secs_f64();
                let rate = self.round_bytes as f64 / elapsed;
                let mean_latency = self.round_latency_sum / f64::from(self.round_blocks.max(1));
                self.end_round(now, rate, mean_latency);
                self.begin_round(now, bytes, latency);
            }
            Some(_) => {
                self.round_bytes += bytes as u64;
                self.round_blocks += 1;
                self.round_latency_sum += latency;
            }
            None => self.begin_round(now, bytes, latency),
        }

        self.probe_step(now, sent_at, latency);
    }

    /// `count` requests timed out: the peer is falling behind.
    pub fn on_timeout(&mut self, _now: Instant, count: usize) {
        self.in_flight = self.in_flight.saturating_sub(count);
        self.snubbed = true;
        self.rate_current /= 2.0;
        self.rate_previous /= 2.0;
        self.window = self.bdp_window().unwrap_or(self.window / 2.0).max(1.0);
        self.phase = Phase::Steady;
        self.round_start = None;
    }

    /// The peer rejected one request (BEP 6).
    pub fn on_reject(&mut self, _now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// We cancelled `count` requests (their blocks came from elsewhere).
    pub fn on_cancel(&mut self, count: usize) {
        self.in_flight = self.in_flight.saturating_sub(count);
    }

    /// The peer choked us; `cancelled` requests are void (all of them without the
    /// Fast extension, none with it: those are rejected one by one).
    pub fn on_choke(&mut self, _now: Instant, cancelled: usize) {
        self.in_flight = self.in_flight.saturating_sub(cancelled);
        self.round_start = None;
    }

    /// One block in slow start: grow by one, or stop when the peer's queue grows.
    fn slow_start(&mut self, in_flight_before: usize, latency: f64) {
        let Phase::Startup {
            best_rate,
            stalled,
            min_latency,
            late,
        } = self.phase
        else {
            return;
        };
        let min_latency = min_latency.min(latency);
        let late = if latency > HEADROOM * min_latency {
            late + 1
        } else {
            0
        };
        if late >= LATE_BLOCKS {
            // Blocks wait behind our own requests at the peer: the window is past
            // the bandwidth-delay product. Keep it; the next round sizes it. The
            // rounds so far averaged that queue in, so the round trip is at most
            // twice the quickest block (one whose request met an empty pipe).
            let cap = LATE_ROUND_TRIP_FACTOR * min_latency;
            self.round_trip = Some(self.round_trip.map_or(cap, |rt| rt.min(cap)));
            self.phase = Phase::Steady;
            return;
        }
        self.phase = Phase::Startup {
            best_rate,
            stalled,
            min_latency,
            late,
        };
        // One more per block while the window is in use, at most doubling a round.
        if stalled == 0 && in_flight_before as f64 >= self.window / 2.0 {
            self.window = (self.window + 1.0)
                .min(2.0 * self.round_window)
                .min(MAX_IN_FLIGHT as f64);
        }
    }

    fn begin_round(&mut self, now: Instant, bytes: usize, latency: f64) {
        self.round_start = Some(now);
        self.round_bytes = bytes as u64;
        self.round_blocks = 1;
        self.round_latency_sum = latency;
        self.round_window = self.window;
    }

    fn end_round(&mut self, now: Instant, rate: f64, mean_latency: f64) {
        self.sample_rate(now, rate);
        match self.round_trip {
            Some(rt) if mean_latency > rt * CONFIRM => {}
            Some(rt) if mean_latency > rt => self.round_trip_confirmed = now,
            _ => {
                self.round_trip = Some(mean_latency);
                self.round_trip_confirmed = now;
            }
        }
        match self.phase {
            Phase::Startup {
                best_rate,
                stalled,
                min_latency,
                late,
            } => {
                let (best_rate, stalled) = if rate >= best_rate * GROWTH {
                    (rate, 0)
                } else {
                    (best_rate, stalled + 1)
                };
                let bdp = self.bdp_window().unwrap_or(0.0);
                if stalled >= STALLED_ROUNDS {
                    self.phase = Phase::Steady;
                    self.window = bdp;
                } else {
                    self.phase = Phase::Startup {
                        best_rate,
                        stalled,
                        min_latency,
                        late,
                    };
                    self.window = self.window.max(bdp);
                }
            }
            Phase::Steady => {
                if let Some(window) = self.bdp_window() {
                    self.window = window;
                }
                if now.saturating_duration_since(self.round_trip_confirmed) >= RTT_PROBE_INTERVAL {
                    self.phase = Phase::ProbeRtt {
                        drained_at: None,
                        samples: 0,
                        latency_sum: 0.0,
                    };
                }
            }
            Phase::ProbeRtt { .. } => {}
        }
        self.window = self.window.clamp(1.0, MAX_IN_FLIGHT as f64);
    }

    /// While probing: notes when the queue has drained, then averages the latency
    /// of blocks requested after that.
    fn probe_step(&mut self, now: Instant, sent_at: Instant, latency: f64) {
        let Phase::ProbeRtt {
            drained_at,
            samples,
            latency_sum,
        } = self.phase
        else {
            return;
        };
        match drained_at {
            None => {
                if self.in_flight as f64 <= self.probe_window() {
                    self.phase = Phase::ProbeRtt {
                        drained_at: Some(now),
                        samples,
                        latency_sum,
                    };
                }
            }
            Some(drained) if sent_at >= drained => {
                let (samples, latency_sum) = (samples + 1, latency_sum + latency);
                if samples < PROBE_SAMPLES {
                    self.phase = Phase::ProbeRtt {
                        drained_at,
                        samples,
                        latency_sum,
                    };
                    return;
                }
                self.round_trip = Some(latency_sum / f64::from(samples));
                self.round_trip_confirmed = now;
                self.phase = Phase::Steady;
                if let Some(window) = self.bdp_window() {
                    self.window = window.clamp(1.0, MAX_IN_FLIGHT as f64);
                }
            }
            Some(_) => {}
        }
    }

    fn sample_rate(&mut self, now: Instant, rate: f64) {
        let age = now.saturating_duration_since(self.rate_bucket_start);
        if age >= RATE_BUCKET {
            self.rate_previous = if age >= 2 * RATE_BUCKET {
                0.0
            } else {
                self.rate_current
            };
            self.rate_current = 0.0;
            self.rate_bucket_start = now;
        }
        self.rate_current = self.rate_current.max(rate);
    }

    fn rate_max(&self) -> f64 {
        self.rate_current.max(self.rate_previous)
    }

    /// The bandwidth-delay product in requests, once both are measured.
    fn bdp(&self) -> Option<f64> {
        let round_trip = self.round_trip?;
        Some(self.rate_max() * round_trip / f64::from(BLOCK))
    }

    fn bdp_window(&self) -> Option<f64> {
        self.bdp().map(|bdp| HEADROOM * bdp + SPARE)
    }

    fn probe_window(&self) -> f64 {
        (self.bdp().unwrap_or(0.0) / 2.0).max(PROBE_MIN_WINDOW)
    }

    fn smooth_latency(&mut self, sample: f64) {
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2.0;
            }
            Some(srtt) => {
                self.rttvar = 0.75 * self.rttvar + 0.25 * (srtt - sample).abs();
                self.srtt = Some(0.875 * srtt + 0.125 * sample);
            }
        }
    }
}

#[cfg(test)]
mod tests;
