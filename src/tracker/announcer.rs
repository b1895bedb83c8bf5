//! One torrent's announce schedule: which tracker to ask, when, and with which event.
//!
//! Sans-IO, in the quinn style: `poll_announce(now)` says what to send,
//! `on_response(now, …)` takes the result, `poll_timeout()` says when to ask again.
//!
//! - BEP 12 tiers: each tier is shuffled once; trackers are tried in order, tier by
//!   tier, and one that answers moves to the front of its tier, so it is asked first
//!   next time.
//! - Events: `started` to a tracker before anything else, then periodic announces at
//!   the tracker's interval (never sooner than its `min interval`), `completed` once
//!   when the download finishes, and `stopped` at shutdown to every tracker that was
//!   told `started`.
//! - When every tracker fails, back off: 30 s, doubling, up to 30 minutes.

use std::time::{Duration, Instant};

use super::{AnnounceEvent, AnnounceResponse, TrackerError};

/// First retry after every tracker failed; doubles per failed round.
pub const BACKOFF_BASE: Duration = Duration::from_secs(30);
/// Longest wait between failed rounds.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30 * 60);

/// Index of a tracker in this announcer.
pub type TrackerIndex = usize;

/// What to send to which tracker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce {
    pub tracker: TrackerIndex,
    pub url: String,
    pub event: AnnounceEvent,
    pub tracker_id: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
struct Tracker {
    url: String,
    /// The tracker acknowledged a `started` (or any later announce).
    started: bool,
    completed_sent: bool,
    tracker_id: Option<Vec<u8>>,
}

/// The announce state of one torrent.
#[derive(Debug)]
pub struct Announcer {
    trackers: Vec<Tracker>,
    /// Tiers of tracker indexes, in the order they are tried.
    tiers: Vec<Vec<TrackerIndex>>,
    /// Position in the flattened try order of the round in progress.
    cursor: usize,
    in_flight: Option<(TrackerIndex, AnnounceEvent)>,
    next_at: Instant,
    failed_rounds: u32,
    completed: bool,
    stopping: bool,
}

impl Announcer {
    /// Tiers of tracker URLs; `seed` drives the BEP 12 shuffle (tests pass a fixed one).
    pub fn new(now: Instant, tiers: &[Vec<String>], seed: u64) -> Announcer {
        let mut trackers = Vec::new();
        let mut order = Vec::new();
        let mut rng = crate::random::Xorshift::new(seed);
        for tier in tiers {
            let mut indexes: Vec<TrackerIndex> = Vec::new();
            for url in tier {
                indexes.push(trackers.len());
                trackers.push(Tracker {
                    url: url.clone(),
                    started: false,
                    completed_sent: false,
                    tracker_id: None,
                });
            }
            // Fisher-Yates with a xorshift: BEP 12 asks for a random order per tier.
            for i in (1..indexes.len()).rev() {
                indexes.swap(i, rng.below(i as u64 + 1) as usize);
            }
            if !indexes.is_empty() {
                order.push(indexes);
            }
        }
        Announcer {
            trackers,
            tiers: order,
            cursor: 0,
            in_flight: None,
            next_at: now,
            failed_rounds: 0,
            completed: false,
            stopping: false,
        }
    }

    pub fn tracker_count(&self) -> usize {
        self.trackers.len()
    }

    pub fn url(&self, tracker: TrackerIndex) -> &str {
        &self.trackers[tracker].url
    }

    /// The flattened try order.
    fn order(&self) -> impl Iterator<Item = TrackerIndex> + '_ {
        self.tiers.iter().flatten().copied()
    }

    /// The announce to send now, if one is due.
    pub fn poll_announce(&mut self, now: Instant) -> Option<Announce> {
        if self.stopping || self.in_flight.is_some() || now < self.next_at {
            return None;
        }
        let tracker = self.order().nth(self.cursor)?;
        let state = &self.trackers[tracker];
        let event = if !state.started {
            AnnounceEvent::Started
        } else if self.completed && !state.completed_sent {
            AnnounceEvent::Completed
        } else {
            AnnounceEvent::None
        };
        self.in_flight = Some((tracker, event));
        Some(Announce {
            tracker,
            url: state.url.clone(),
            event,
            tracker_id: state.tracker_id.clone(),
        })
    }

    /// When `poll_announce` will next have something (`None` while waiting for an
    /// answer, when stopping, or without trackers).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.stopping || self.in_flight.is_some() || self.trackers.is_empty() {
            None
        } else {
            Some(self.next_at)
        }
    }

    /// The result of the announce `poll_announce` returned.
    pub fn on_response(
        &mut self,
        now: Instant,
        tracker: TrackerIndex,
        result: Result<&AnnounceResponse, &TrackerError>,
    ) {
        let Some((expected, event)) = self.in_flight else {
            return;
        };
        if expected != tracker {
            return;
        }
        self.in_flight = None;
        match result {
            Ok(response) => {
                let state = &mut self.trackers[tracker];
                state.started = true;
                if event == AnnounceEvent::Completed {
                    state.completed_sent = true;
                }
                if response.tracker_id.is_some() {
                    state.tracker_id = response.tracker_id.clone();
                }
                let interval = response.interval.max(response.min_interval.unwrap_or_default());
                let completed_pending = self.completed && !self.trackers[tracker].completed_sent;
                self.promote(tracker);
                self.cursor = 0;
                self.failed_rounds = 0;
                // A pending `completed` goes out at once; otherwise wait the interval.
                self.next_at = if completed_pending { now } else { now + interval };
            }
            Err(error) => {
                log::debug!("tracker {} failed: {error}", self.trackers[tracker].url);
                self.cursor += 1;
                if self.cursor < self.trackers.len() {
                    self.next_at = now; // try the next tracker at once
                } else {
                    self.cursor = 0;
                    self.failed_rounds += 1;
                    let backoff = BACKOFF_BASE.saturating_mul(1 << (self.failed_rounds - 1).min(16));
                    self.next_at = now + backoff.min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Moves `tracker` to the front of its tier (BEP 12).
    fn promote(&mut self, tracker: TrackerIndex) {
        for tier in &mut self.tiers {
            if let Some(at) = tier.iter().position(|&t| t == tracker) {
                tier[..=at].rotate_right(1);
                return;
            }
        }
    }

    /// The download finished: send `completed` as soon as the tracker allows.
    pub fn set_completed(&mut self, now: Instant) {
        if self.completed {
            return;
        }
        self.completed = true;
        // An event, not a re-announce: `min interval` does not hold it back. If an
        // announce is in flight, its answer schedules this one (`on_response`).
        if self.in_flight.is_none() {
            self.next_at = now;
        }
    }

    /// Shutdown: no more announces. Returns every tracker that was told `started`;
    /// each gets a `stopped`.
    pub fn stop(&mut self) -> Vec<Announce> {
        self.stopping = true;
        self.in_flight = None;
        self.trackers
            .iter()
            .enumerate()
            .filter(|(_, t)| t.started)
            .map(|(tracker, t)| Announce {
                tracker,
                url: t.url.clone(),
                event: AnnounceEvent::Stopped,
                tracker_id: t.tracker_id.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(interval: u64) -> AnnounceResponse {
        AnnounceResponse {
            interval: Duration::from_secs(interval),
            min_interval: None,
            tracker_id: None,
            complete: None,
            incomplete: None,
            warning: None,
            peers: Vec::new(),
        }
    }

    fn tiers(urls: &[&[&str]]) -> Vec<Vec<String>> {
        urls.iter()
            .map(|tier| tier.iter().map(|u| u.to_string()).collect())
            .collect()
    }

    #[test]
    fn started_periodic_completed_stopped_in_order() {
        let t0 = Instant::now();
        let mut a = Announcer::new(t0, &tiers(&[&["http://a"]]), 1);
        let mut events = Vec::new();
        let mut now = t0;
        for step in 0..4 {
            let announce = a.poll_announce(now).expect("due");
            assert!(a.poll_announce(now).is_none(), "one at a time");
            events.push(announce.event);
            a.on_response(now, announce.tracker, Ok(&ok(1800)));
            assert_eq!(a.poll_timeout(), Some(now + Duration::from_secs(1800)));
            assert!(a.poll_announce(now + Duration::from_secs(1799)).is_none());
            now += Duration::from_secs(1800);
            if step == 2 {
                a.set_completed(now - Duration::from_secs(900));
                now -= Duration::from_secs(900);
            }
        }
        let stopped: Vec<_> = a.stop().into_iter().map(|s| s.event).collect();
        events.extend(stopped);
        assert_eq!(
            events,
            [
                AnnounceEvent::Started,
                AnnounceEvent::None,
                AnnounceEvent::None,
                AnnounceEvent::Completed,
                AnnounceEvent::Stopped
            ]
        );
        assert!(
            a.poll_announce(now + Duration::from_secs(99_999)).is_none(),
            "nothing after stop"
        );
    }

    #[test]
    fn completed_is_sent_once() {
        let t0 = Instant::now();
        let mut a = Announcer::new(t0, &tiers(&[&["http://a"]]), 1);
        let first = a.poll_announce(t0).unwrap();
        a.on_response(t0, first.tracker, Ok(&ok(60)));
        a.set_completed(t0);
        a.set_completed(t0);
        let second = a.poll_announce(t0).unwrap();
        assert_eq!(second.event, AnnounceEvent::Completed);
        a.on_response(t0, second.tracker, Ok(&ok(60)));
        let third = a.poll_announce(t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(third.event, AnnounceEvent::None);
    }

    #[test]
    fn failover_within_and_across_tiers_and_promotion() {
        let t0 = Instant::now();
        let mut a = Announcer::new(t0, &tiers(&[&["http://a1", "http://a2"], &["http://b1"]]), 7);
        let mut tried = Vec::new();
        loop {
            let announce = a.poll_announce(t0).expect("next tracker is tried at once");
            tried.push(announce.url.clone());
            if announce.url == "http://b1" {
                a.on_response(t0, announce.tracker, Ok(&ok(100)));
                break;
            }
            a.on_response(t0, announce.tracker, Err(&TrackerError::Timeout));
        }
        assert_eq!(tried.len(), 3, "both of tier 1, then tier 2: {tried:?}");
        assert!(
            tried[..2].contains(&"http://a1".to_string()) && tried[..2].contains(&"http://a2".to_string())
        );
        // Next round starts from tier 1 again; the tier-1 tracker that answers moves to the front.
        let now = t0 + Duration::from_secs(100);
        let first = a.poll_announce(now).unwrap();
        let second_url = if first.url == "http://a1" {
            "http://a2"
        } else {
            "http://a1"
        };
        a.on_response(now, first.tracker, Err(&TrackerError::Timeout));
        let second = a.poll_announce(now).unwrap();
        assert_eq!(second.url, second_url);
        a.on_response(now, second.tracker, Ok(&ok(100)));
        let later = now + Duration::from_secs(100);
        assert_eq!(
            a.poll_announce(later).unwrap().url,
            second_url,
            "promoted to the front of its tier"
        );
    }

    #[test]
    fn every_tracker_failing_backs_off_exponentially_up_to_the_cap() {
        let t0 = Instant::now();
        let mut a = Announcer::new(t0, &tiers(&[&["http://a"]]), 1);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..10 {
            let announce = a.poll_announce(now).unwrap();
            a.on_response(now, announce.tracker, Err(&TrackerError::Timeout));
            let next = a.poll_timeout().unwrap();
            waits.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1800, 1800, 1800, 1800]);
    }

    #[test]
    fn completed_follows_an_in_flight_started_at_once() {
        let t0 = Instant::now();
        let mut a = Announcer::new(t0, &tiers(&[&["http://a"]]), 1);
        let started = a.poll_announce(t0).unwrap();
        a.set_completed(t0); // the download finished before `started` was answered
        let response = AnnounceResponse {
            min_interval: Some(Duration::from_secs(900)),
            ..ok(1800)
        };
        a.on_response(t0, started.tracker, Ok(&response));
        let next = a
            .poll_announce(t0)
            .expect("completed is due at once, min interval or not");
        assert_eq!(next.event, AnnounceEvent::Completed);
    }

    #[test]
    fn min_interval_is_respected_and_stopped_goes_to_started_trackers_only() {
        let t0 = Instant::now();
        let mut a = Announcer::new(t0, &tiers(&[&["http://a"], &["http://b"]]), 1);
        let announce = a.poll_announce(t0).unwrap();
        let response = AnnounceResponse {
            min_interval: Some(Duration::from_secs(900)),
            ..ok(300)
        };
        a.on_response(t0, announce.tracker, Ok(&response));
        assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_secs(900)));
        let stops = a.stop();
        assert_eq!(stops.len(), 1);
        assert_eq!(stops[0].url, "http://a");
    }

    #[test]
    fn shuffle_is_a_permutation_per_tier() {
        let t0 = Instant::now();
        let urls: Vec<String> = (0..10).map(|i| format!("http://t{i}")).collect();
        for seed in 1..50 {
            let a = Announcer::new(t0, &[urls.clone(), vec!["http://z".into()]], seed);
            let mut first_tier: Vec<_> = a.tiers[0].clone();
            first_tier.sort();
            assert_eq!(first_tier, (0..10).collect::<Vec<_>>());
            assert_eq!(a.tiers[1], vec![10]);
        }
    }
}
