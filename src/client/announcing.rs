//! One torrent's trackers: its [`Announcer`] (what to announce, when) joined to the
//! shared [`TrackerClient`] (how), with new peers fed into its [`Candidates`].
//!
//! The owner (a torrent) calls `poll` whenever something may have changed (a result
//! arrived, its announce timer fired) and arms its timer for `poll_timeout`.
//!
//! So that the user learns why there are no peers, a failed announce is logged at
//! warning level with the tracker's URL and the reason, and [`TorrentTrackers::report`]
//! tells, per tracker, what it answered last (for a front end's final error).

use std::collections::HashMap;
use std::time::Instant;

use log::warn;

use super::trackers::AnnounceResult;
use super::{Owner, RequestId, TrackerClient};
use crate::reactor::Reactor;
use crate::swarm::Candidates;
use crate::tracker::announcer::{Announce, Announcer, TrackerIndex};
use crate::tracker::{AnnounceEvent, AnnounceRequest, TrackerError};

/// Announces remembered in [`TorrentTrackers::history`].
pub const HISTORY: usize = 64;

/// Transfer figures reported in every announce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
}

/// What one tracker answered last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerStatus {
    pub url: String,
    /// `None`: not answered yet. `Ok(n)`: the last announce succeeded with `n` peers.
    /// `Err(why)`: it failed, and why (the tracker's own `failure reason`, an HTTP
    /// status, a TLS or connection error, …).
    pub last: Option<Result<usize, String>>,
}

impl std::fmt::Display for TrackerStatus {
    /// One line for a front end's final error: `URL: 3 peers`, `URL: <why>`, or
    /// `URL: no answer yet`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.last {
            None => write!(f, "{}: no answer yet", self.url),
            Some(Ok(1)) => write!(f, "{}: 1 peer", self.url),
            Some(Ok(n)) => write!(f, "{}: {n} peers", self.url),
            Some(Err(why)) => write!(f, "{}: {why}", self.url),
        }
    }
}

/// The tracker side of one torrent.
#[derive(Debug)]
pub struct TorrentTrackers {
    announcer: Announcer,
    /// Announces in flight, by request: (tracker, event).
    pending: HashMap<RequestId, (TrackerIndex, AnnounceEvent)>,
    /// info hash, peer id, port and key: the fixed part of every request.
    template: AnnounceRequest,
    /// The most recent announces (event sent, answered?), oldest first, at most
    /// [`HISTORY`] of them: enough for status and tests, bounded for daemons.
    pub history: Vec<(String, AnnounceEvent, bool)>,
    /// The last outcome per tracker, by announcer index (one entry per tracker).
    last: Vec<Option<Result<usize, String>>>,
}

impl TorrentTrackers {
    pub fn new(announcer: Announcer, template: AnnounceRequest) -> TorrentTrackers {
        TorrentTrackers {
            last: vec![None; announcer.tracker_count()],
            announcer,
            pending: HashMap::new(),
            template,
            history: Vec::new(),
        }
    }

    fn send(
        &mut self,
        rx: &mut Reactor<Owner>,
        trackers: &mut TrackerClient,
        announce: Announce,
        transfer: Transfer,
    ) {
        let request = AnnounceRequest {
            event: announce.event,
            tracker_id: announce.tracker_id.clone(),
            uploaded: transfer.uploaded,
            downloaded: transfer.downloaded,
            left: transfer.left,
            ..self.template.clone()
        };
        let id = trackers.announce(rx, &announce.url, request);
        self.pending.insert(id, (announce.tracker, announce.event));
    }

    /// Sends whatever announce is due now.
    pub fn poll(&mut self, rx: &mut Reactor<Owner>, trackers: &mut TrackerClient, transfer: Transfer) {
        if let Some(announce) = self.announcer.poll_announce(rx.now()) {
            self.send(rx, trackers, announce, transfer);
        }
    }

    /// When `poll` should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.announcer.poll_timeout()
    }

    /// Takes a result if it belongs to this torrent; its peers go to `candidates`.
    /// Returns whether it was ours.
    pub fn on_result(
        &mut self,
        now: Instant,
        id: RequestId,
        result: &AnnounceResult,
        candidates: &mut Candidates,
    ) -> bool {
        let Some((tracker, event)) = self.pending.remove(&id) else {
            return false;
        };
        if self.history.len() == HISTORY {
            self.history.remove(0);
        }
        let url = self.announcer.url(tracker);
        self.history.push((url.to_string(), event, result.is_ok()));
        match result {
            Ok(response) => self.last[tracker] = Some(Ok(response.peers.len())),
            // Cancelled: the loop is shutting down; that is not the tracker's answer.
            Err(TrackerError::Cancelled) => {}
            Err(error) => {
                warn!("announce to {url} failed: {error}");
                self.last[tracker] = Some(Err(error.to_string()));
            }
        }
        if let Ok(response) = result {
            for peer in &response.peers {
                candidates.offer(*peer);
            }
        }
        if event != AnnounceEvent::Stopped {
            self.announcer.on_response(now, tracker, result.as_ref());
        }
        true
    }

    /// The download finished: `completed` goes out at the next poll.
    pub fn completed(&mut self, now: Instant) {
        self.announcer.set_completed(now);
    }

    /// Shutdown: `stopped` to every tracker that was told `started`, all at once.
    pub fn stop(
        &mut self,
        rx: &mut Reactor<Owner>,
        trackers: &mut TrackerClient,
        transfer: Transfer,
    ) -> usize {
        let stops = self.announcer.stop();
        let count = stops.len();
        for announce in stops {
            self.send(rx, trackers, announce, transfer);
        }
        count
    }

    /// What each tracker answered last, in the torrent's order of trackers. A front
    /// end that ends without peers names these in its error.
    pub fn report(&self) -> Vec<TrackerStatus> {
        self.last
            .iter()
            .enumerate()
            .map(|(tracker, last)| TrackerStatus {
                url: self.announcer.url(tracker).to_string(),
                last: last.clone(),
            })
            .collect()
    }

    /// Announces still waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::TrackerStatus;

    #[test]
    fn a_status_reads_as_one_line() {
        let status = |last| TrackerStatus {
            url: "udp://t.example:6969".into(),
            last,
        };
        assert_eq!(status(None).to_string(), "udp://t.example:6969: no answer yet");
        assert_eq!(status(Some(Ok(1))).to_string(), "udp://t.example:6969: 1 peer");
        assert_eq!(
            status(Some(Err("tracker refused: banned".into()))).to_string(),
            "udp://t.example:6969: tracker refused: banned"
        );
    }
}
