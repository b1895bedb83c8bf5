//! The pipeline rule against a simulated link: a peer that receives our requests
//! after a one-way delay, serves them in order at a fixed rate, and whose blocks
//! take the same delay back. Everything runs on a virtual clock.

use std::collections::VecDeque;

use super::*;

const BLOCK_BYTES: f64 = BLOCK as f64;

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// The peer and the wire between us.
struct Link {
    one_way: Duration,
    bytes_per_second: f64,
    /// When the peer finishes the request it is serving.
    busy_until: Instant,
    /// Blocks on their way: (arrival at our end, when we requested it), in order.
    blocks: VecDeque<(Instant, Instant)>,
}

/// Our side: the pipeline, the caller's loop, and what we measured.
struct Sim {
    t0: Instant,
    now: Instant,
    link: Link,
    pipeline: Pipeline,
    cap: usize,
    received: u64,
    most_in_flight: usize,
    most_target: usize,
    /// Blocks that arrived later than the request timeout said they could.
    late_blocks: u32,
}

impl Sim {
    fn new(one_way: Duration, bytes_per_second: f64, cap: usize) -> Sim {
        let t0 = Instant::now();
        Sim {
            t0,
            now: t0,
            link: Link {
                one_way,
                bytes_per_second,
                busy_until: t0,
                blocks: VecDeque::new(),
            },
            pipeline: Pipeline::new(t0),
            cap,
            received: 0,
            most_in_flight: 0,
            most_target: 0,
            late_blocks: 0,
        }
    }

    /// What the caller does after every event: top the pipeline up to its target.
    fn top_up(&mut self) {
        let target = self.pipeline.target(self.cap);
        assert!(target <= self.cap, "target {target} above the cap {}", self.cap);
        self.most_target = self.most_target.max(target);
        let in_flight = self.link.blocks.len();
        if in_flight >= target {
            return;
        }
        let service = Duration::from_secs_f64(BLOCK_BYTES / self.link.bytes_per_second);
        for _ in in_flight..target {
            let start = self.link.busy_until.max(self.now + self.link.one_way);
            self.link.busy_until = start + service;
            self.link
                .blocks
                .push_back((self.link.busy_until + self.link.one_way, self.now));
        }
        self.pipeline.on_request_sent(self.now, target - in_flight);
        self.most_in_flight = self.most_in_flight.max(self.link.blocks.len());
        assert_eq!(self.pipeline.in_flight(), self.link.blocks.len());
    }

    /// Runs until `at` (relative to the start); returns the bytes received meanwhile.
    fn run_until(&mut self, at: Duration) -> u64 {
        let until = self.t0 + at;
        let received = self.received;
        loop {
            self.top_up();
            match self.link.blocks.front() {
                Some(&(arrives, sent_at)) if arrives <= until => {
                    self.link.blocks.pop_front();
                    self.now = arrives;
                    if arrives - sent_at > self.pipeline.request_timeout() {
                        self.late_blocks += 1;
                    }
                    self.pipeline.on_block(self.now, BLOCK as usize, sent_at);
                    self.received += u64::from(BLOCK);
                }
                _ => break,
            }
        }
        self.now = until;
        self.received - received
    }

    /// The first time (relative to the start) the target reaches `goal`, checking
    /// every millisecond up to `limit`.
    fn time_to_reach(&mut self, goal: usize, limit: Duration) -> Option<Duration> {
        let mut at = Duration::ZERO;
        while at <= limit {
            self.run_until(at);
            if self.pipeline.target(self.cap) >= goal {
                return Some(at);
            }
            at += ms(1);
        }
        None
    }
}

fn rate_between(sim: &mut Sim, from: Duration, to: Duration) -> f64 {
    sim.run_until(from);
    sim.run_until(to) as f64 / (to - from).as_secs_f64()
}

/// 20 MB/s at 200 ms round trip: 244 requests in flight fill it.
const FAST: f64 = 20e6;
const LONG_ONE_WAY: Duration = Duration::from_millis(100);
const LONG_BDP: usize = 244;

#[test]
fn a_long_fast_link_is_full_within_six_round_trips() {
    let mut sim = Sim::new(LONG_ONE_WAY, FAST, MAX_IN_FLIGHT);
    assert_eq!(sim.pipeline.target(MAX_IN_FLIGHT), INITIAL_WINDOW);
    sim.time_to_reach(LONG_BDP, ms(1200))
        .expect("the window reaches the BDP within 6 round trips");
    // From then on the link is full, and the window stays near the BDP with headroom.
    let rate = rate_between(&mut sim, ms(1200), ms(9000));
    assert!(rate >= 0.97 * FAST, "{:.1} MB/s of 20", rate / 1e6);
    let target = sim.pipeline.target(MAX_IN_FLIGHT);
    assert!(
        (LONG_BDP..=2 * LONG_BDP).contains(&target),
        "steady target {target}"
    );
    assert!(
        sim.most_target <= 3 * LONG_BDP,
        "slow start overshot to {}",
        sim.most_target
    );
    let round_trip = sim.pipeline.round_trip().unwrap();
    assert!(
        round_trip >= ms(200) && round_trip <= ms(240),
        "round trip {round_trip:?}"
    );
    assert_eq!(sim.late_blocks, 0);
}

#[test]
fn draining_to_measure_the_round_trip_costs_little() {
    // Thirty seconds holds two or three probes; the link stays almost full.
    let mut sim = Sim::new(LONG_ONE_WAY, FAST, MAX_IN_FLIGHT);
    let rate = rate_between(&mut sim, ms(2000), ms(30_000));
    assert!(rate >= 0.95 * FAST, "{:.1} MB/s of 20", rate / 1e6);
    let round_trip = sim.pipeline.round_trip().unwrap();
    assert!(
        round_trip <= ms(240),
        "the estimate did not inflate: {round_trip:?}"
    );
    let target = sim.pipeline.target(MAX_IN_FLIGHT);
    assert!(target <= 2 * LONG_BDP, "steady target {target}");
}

#[test]
fn a_peer_that_slows_down_gets_fewer_requests() {
    let mut sim = Sim::new(LONG_ONE_WAY, FAST, MAX_IN_FLIGHT);
    sim.run_until(ms(5000));
    let fast_target = sim.pipeline.target(MAX_IN_FLIGHT);
    sim.link.bytes_per_second = FAST / 10.0; // 2 MB/s from now on
    sim.run_until(ms(15_000));
    let slow_target = sim.pipeline.target(MAX_IN_FLIGHT);
    assert!(slow_target * 4 <= fast_target, "{fast_target} -> {slow_target}");
    // Still enough for the slower link: 2 MB/s × 200 ms is 24 requests.
    assert!(slow_target >= 24, "{slow_target}");
    let rate = rate_between(&mut sim, ms(15_000), ms(20_000));
    assert!(rate >= 0.95 * FAST / 10.0, "{:.2} MB/s of 2", rate / 1e6);
    assert!(
        sim.link.blocks.len() <= 2 * slow_target,
        "the queue drained: {}",
        sim.link.blocks.len()
    );
    assert_eq!(sim.late_blocks, 0, "the timeout followed the longer queue");
}

#[test]
fn nothing_exceeds_the_cap() {
    // The peer allows 100 requests: that is what we send, and what we get.
    let mut sim = Sim::new(LONG_ONE_WAY, FAST, 100);
    let rate = rate_between(&mut sim, ms(1000), ms(5000));
    assert_eq!(sim.most_in_flight, 100);
    let expected = 100.0 * BLOCK_BYTES / 0.2;
    assert!(rate >= 0.95 * expected, "{:.1} MB/s", rate / 1e6);
    // A link with a BDP far beyond our own limit: 1 s round trip at 1 GB/s.
    let mut huge = Sim::new(ms(500), 1e9, MAX_IN_FLIGHT);
    huge.run_until(ms(20_000));
    assert_eq!(huge.most_in_flight, MAX_IN_FLIGHT);
    for cap in [0, 1, 7, 500] {
        assert!(huge.pipeline.target(cap) <= cap);
    }
}

#[test]
fn a_loopback_fast_peer_is_filled_with_a_small_window() {
    // 0.1 ms each way at 2 GB/s: 24 requests in flight fill it.
    let rate = 2e9;
    let mut sim = Sim::new(Duration::from_micros(100), rate, MAX_IN_FLIGHT);
    let measured = rate_between(&mut sim, ms(50), ms(500));
    assert!(measured >= 0.97 * rate, "{:.0} MB/s of 2000", measured / 1e6);
    let target = sim.pipeline.target(MAX_IN_FLIGHT);
    assert!((24..=96).contains(&target), "target {target}");
    assert!(sim.most_target <= 128, "at most {} requests", sim.most_target);
}

#[test]
fn a_longer_round_trip_is_learned_by_draining_the_queue() {
    // 50 ms round trip, then 300 ms (a congested path): the old estimate would
    // hold the window at a sixth of what the link needs.
    let mut sim = Sim::new(ms(25), FAST, MAX_IN_FLIGHT);
    sim.run_until(ms(5000));
    sim.link.one_way = ms(150);
    let rate = rate_between(&mut sim, ms(20_000), ms(25_000));
    assert!(rate >= 0.9 * FAST, "{:.1} MB/s of 20", rate / 1e6);
    let round_trip = sim.pipeline.round_trip().unwrap();
    assert!(round_trip >= ms(300), "round trip {round_trip:?}");
}

#[test]
fn request_timeout_follows_the_measured_latency() {
    let t0 = Instant::now();
    let mut pipeline = Pipeline::new(t0);
    assert_eq!(pipeline.request_timeout(), INITIAL_TIMEOUT);
    // Blocks after 200 ms: the floor, not 20 s.
    let mut now = t0;
    for _ in 0..50 {
        pipeline.on_request_sent(now, 1);
        now += ms(200);
        pipeline.on_block(now, BLOCK as usize, now - ms(200));
    }
    assert_eq!(pipeline.request_timeout(), MIN_TIMEOUT);
    // Blocks after 4 s (a deep queue at a slow peer): three times that.
    for _ in 0..50 {
        pipeline.on_request_sent(now, 1);
        now += ms(4000);
        pipeline.on_block(now, BLOCK as usize, now - ms(4000));
    }
    let timeout = pipeline.request_timeout();
    assert!(timeout >= ms(11_500) && timeout <= ms(13_000), "{timeout:?}");
    // Never beyond the ceiling.
    for _ in 0..50 {
        pipeline.on_request_sent(now, 1);
        now += ms(60_000);
        pipeline.on_block(now, BLOCK as usize, now - ms(60_000));
    }
    assert_eq!(pipeline.request_timeout(), MAX_TIMEOUT);
}

#[test]
fn a_timeout_sends_one_request_until_data_arrives_then_half() {
    let mut sim = Sim::new(LONG_ONE_WAY, FAST, MAX_IN_FLIGHT);
    sim.run_until(ms(5000));
    let before = sim.pipeline.target(MAX_IN_FLIGHT);
    let now = sim.now;
    sim.pipeline.on_timeout(now, 3);
    assert!(sim.pipeline.is_snubbed());
    assert_eq!(sim.pipeline.target(MAX_IN_FLIGHT), 1);
    assert_eq!(sim.pipeline.target(0), 0);
    sim.pipeline.on_request_sent(now, 3); // keep the counts matched for the test
    sim.pipeline.on_block(now + ms(1), BLOCK as usize, now - ms(200));
    assert!(!sim.pipeline.is_snubbed());
    let after = sim.pipeline.target(MAX_IN_FLIGHT);
    assert!(
        after < before * 2 / 3 && after > before / 3,
        "{before} -> {after}"
    );
}

#[test]
fn chokes_rejects_and_cancels_end_requests() {
    let t0 = Instant::now();
    let mut pipeline = Pipeline::new(t0);
    pipeline.on_request_sent(t0, 10);
    pipeline.on_reject(t0);
    pipeline.on_cancel(2);
    assert_eq!(pipeline.in_flight(), 7);
    pipeline.on_choke(t0, 7); // without the Fast extension every request is void
    assert_eq!(pipeline.in_flight(), 0);
    pipeline.on_choke(t0, 5); // more than there were: no underflow
    assert_eq!(pipeline.in_flight(), 0);
    assert_eq!(
        pipeline.target(MAX_IN_FLIGHT),
        INITIAL_WINDOW,
        "a choke is not a slowdown"
    );
}

#[test]
fn a_slow_peer_gets_a_small_window_and_no_false_timeouts() {
    // 100 KB/s at 50 ms round trip: under one request's worth of BDP. The first
    // 32 requests queue at the peer for up to 5 s; none may time out meanwhile.
    let rate = 100e3;
    let mut sim = Sim::new(ms(25), rate, MAX_IN_FLIGHT);
    let measured = rate_between(&mut sim, ms(1000), ms(30_000));
    assert!(measured >= 0.97 * rate, "{:.0} kB/s of 100", measured / 1e3);
    assert_eq!(sim.late_blocks, 0);
    // The spare requests and little more (the old rule's floor was 8).
    let target = sim.pipeline.target(MAX_IN_FLIGHT);
    assert!(target <= 12, "target {target}");
}
