//! How long to wait for an outgoing TCP connect, learned from the swarm.
//!
//! Trackers and PEX hand out many addresses that are gone. Some refuse at once,
//! but many never answer: the SYN vanishes (a firewall, a host that is off), and a
//! fixed 10 s timeout keeps a half-open slot busy all that time. Live peers answer
//! far sooner: a round trip or two on a LAN or the Internet, microseconds on
//! loopback. So the timeout follows what the swarm shows:
//!
//! - Every connect that got an answer (connected, or refused: a reset is an answer
//!   from the host, in one round trip) is a sample. Answers that are errors from
//!   the network (unreachable) and timeouts are not.
//! - The timeout is [`FACTOR`] (4) times the slowest of the last [`SAMPLES`] (16)
//!   answers, no less than [`FLOOR`] (1.5 s: the first SYN's retransmission comes
//!   after 1 s, so a host whose first SYN was lost on a link of up to 500 ms round
//!   trip is still reached) and no more than the configured ceiling (10 s), which
//!   is also the timeout until anything is observed.
//! - An address that failed before gets twice the timeout per earlier failure (up
//!   to the ceiling), as TCP backs off its own retransmissions: a peer that is
//!   just slow is reached on a later attempt instead of being cut short each time.
//!
//! Sans-IO: the caller passes the durations it measured.

use std::time::Duration;

/// Shortest timeout, whatever the swarm shows.
pub const FLOOR: Duration = Duration::from_millis(1500);
/// The timeout covers this multiple of the slowest recent answer.
pub const FACTOR: u32 = 4;
/// Answers remembered.
pub const SAMPLES: usize = 16;

/// The recent answer times of one swarm, and the timeouts they give. The
/// ceiling (the configured connect timeout) is passed in, so that configuration
/// stays in one place.
#[derive(Clone, Debug, Default)]
pub struct ConnectTimeout {
    /// The last answers, oldest overwritten first.
    recent: [Duration; SAMPLES],
    len: usize,
    next: usize,
}

impl ConnectTimeout {
    /// A connect was answered (connected or refused) after `took`.
    pub fn answered(&mut self, took: Duration) {
        self.recent[self.next] = took;
        self.next = (self.next + 1) % SAMPLES;
        self.len = (self.len + 1).min(SAMPLES);
    }

    /// The timeout for a first attempt: `ceiling` until an answer is seen.
    pub fn timeout(&self, ceiling: Duration) -> Duration {
        let Some(slowest) = self.recent[..self.len].iter().max() else {
            return ceiling;
        };
        slowest.saturating_mul(FACTOR).max(FLOOR).min(ceiling)
    }

    /// The timeout for an address that failed `failures` times before.
    pub fn for_attempt(&self, failures: u32, ceiling: Duration) -> Duration {
        self.timeout(ceiling)
            .saturating_mul(1 << failures.min(16))
            .min(ceiling)
    }

    /// Answers remembered (at most [`SAMPLES`]).
    pub fn samples(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const CEILING: Duration = Duration::from_secs(10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_ceiling_holds_until_an_answer_is_seen() {
        let t = ConnectTimeout::default();
        assert_eq!(t.timeout(CEILING), CEILING);
        assert_eq!(t.for_attempt(3, CEILING), CEILING);
    }

    #[test]
    fn loopback_answers_give_the_floor_and_slow_ones_four_times_the_slowest() {
        let mut t = ConnectTimeout::default();
        t.answered(Duration::from_micros(80));
        assert_eq!(t.timeout(CEILING), FLOOR, "microseconds on loopback: the floor");
        t.answered(ms(600));
        assert_eq!(
            t.timeout(CEILING),
            ms(2400),
            "one slow answer in the window sets it"
        );
        t.answered(ms(4000));
        assert_eq!(t.timeout(CEILING), CEILING, "never above the ceiling");
    }

    #[test]
    fn a_slow_answer_ages_out_after_sixteen_faster_ones() {
        let mut t = ConnectTimeout::default();
        t.answered(ms(900));
        for _ in 0..SAMPLES - 1 {
            t.answered(ms(50));
        }
        assert_eq!(t.timeout(CEILING), ms(3600), "still among the last sixteen");
        t.answered(ms(50));
        assert_eq!(t.timeout(CEILING), FLOOR, "gone: 4 × 50 ms is under the floor");
        assert_eq!(t.samples(), SAMPLES);
    }

    #[test]
    fn each_earlier_failure_doubles_an_address_timeout_up_to_the_ceiling() {
        let mut t = ConnectTimeout::default();
        t.answered(ms(1));
        assert_eq!(t.for_attempt(0, CEILING), FLOOR);
        assert_eq!(t.for_attempt(1, CEILING), ms(3000));
        assert_eq!(t.for_attempt(2, CEILING), ms(6000));
        assert_eq!(t.for_attempt(3, CEILING), CEILING);
        assert_eq!(t.for_attempt(u32::MAX, CEILING), CEILING, "no overflow");
    }

    #[test]
    fn a_ceiling_below_the_floor_wins() {
        let mut t = ConnectTimeout::default();
        t.answered(ms(1));
        assert_eq!(t.timeout(ms(20)), ms(20));
    }

    /// A swarm on a virtual clock, as the torrent runs it: of 100 silent
    /// addresses, 100 closed ports and one live peer, tried in random order with
    /// 64 connects in flight, each connect ending when it is older than the
    /// timeout as it stands now (the torrent re-arms pending connects when the
    /// first answer arrives). The live peer is reached within two floors, not
    /// after a ceiling.
    #[test]
    fn behind_silent_peers_the_live_one_is_reached_within_two_floors() {
        #[derive(Clone, Copy, PartialEq, Debug)]
        enum Kind {
            Silent,
            Closed,
            Live,
        }
        let t0 = Instant::now();
        let mut worst = Duration::ZERO;
        for seed in 1..=200u64 {
            let mut rng = crate::random::Xorshift::new(seed);
            let mut queue: Vec<Kind> = [Kind::Silent; 100]
                .into_iter()
                .chain([Kind::Closed; 100])
                .chain([Kind::Live])
                .collect();
            let mut estimate = ConnectTimeout::default();
            // (started, kind) of connects in flight.
            let mut pending: Vec<(Instant, Kind)> = Vec::new();
            let mut now = t0;
            let reached = loop {
                // Refusals come back a millisecond after they were sent.
                pending.retain(|&(since, kind)| {
                    let refused = kind == Kind::Closed && now > since;
                    if refused {
                        estimate.answered(now - since);
                    }
                    !refused
                });
                if pending
                    .iter()
                    .any(|&(since, kind)| kind == Kind::Live && now > since)
                {
                    break now;
                }
                let timeout = estimate.timeout(CEILING);
                pending.retain(|&(since, _)| now - since < timeout);
                while pending.len() < 64 && !queue.is_empty() {
                    let at = rng.below(queue.len() as u64) as usize;
                    pending.push((now, queue.swap_remove(at)));
                }
                now += ms(1);
            };
            worst = worst.max(reached - t0);
        }
        assert!(worst <= 2 * FLOOR + ms(10), "the live peer after {worst:?}");
        assert!(worst > FLOOR, "some orders need a timeout first: {worst:?}");
    }
}
