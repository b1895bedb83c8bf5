//! One result from a request's legs: an announce goes out once per address family
//! (IPv4 and IPv6), and the caller gets one answer.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::Done;
use crate::tracker::peers::MAX_PEERS_PER_RESPONSE;
use crate::tracker::udp::Outcome;
use crate::tracker::TrackerError;

/// How much an error tells the user: a tracker's own answer beats "unreachable".
fn telling(error: &TrackerError) -> u8 {
    match error {
        TrackerError::Failure(_) => 6,
        TrackerError::Status(_) | TrackerError::Tls(_) => 5,
        TrackerError::Malformed(_) | TrackerError::TooLarge | TrackerError::TooManyRedirects => 4,
        TrackerError::BadUrl(_) | TrackerError::Timeout => 3,
        TrackerError::Io(_) | TrackerError::Resolve(_) => 2,
        TrackerError::Cancelled => 1,
    }
}

/// One request's result from its legs' (one per address family for an announce):
/// success if any leg succeeded, with every leg's peers (duplicates dropped) and
/// the first successful leg's other fields; else the most telling error.
pub(super) fn merge(results: Vec<Result<Done, TrackerError>>) -> Result<Done, TrackerError> {
    let mut merged: Option<Done> = None;
    let mut error: Option<TrackerError> = None;
    for result in results {
        match (result, &mut merged) {
            (Ok(done), None) => merged = Some(done),
            (Ok(Done::Tracker(Outcome::Announced(more))), Some(Done::Tracker(Outcome::Announced(first)))) => {
                let mut seen: HashSet<SocketAddr> = first.peers.iter().copied().collect();
                for peer in more.peers {
                    if first.peers.len() < MAX_PEERS_PER_RESPONSE && seen.insert(peer) {
                        first.peers.push(peer);
                    }
                }
                first.complete = first.complete.max(more.complete);
                first.incomplete = first.incomplete.max(more.incomplete);
            }
            (Ok(_), Some(_)) => {}
            (Err(e), _) => {
                if error.as_ref().is_none_or(|old| telling(&e) > telling(old)) {
                    error = Some(e);
                }
            }
        }
    }
    merged.ok_or_else(|| error.unwrap_or(TrackerError::Cancelled))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::tracker::AnnounceResponse;

    fn announced(peers: &[&str], complete: u32) -> Result<Done, TrackerError> {
        Ok(Done::Tracker(Outcome::Announced(AnnounceResponse {
            interval: Duration::from_secs(1800),
            min_interval: None,
            tracker_id: None,
            complete: Some(complete),
            incomplete: None,
            warning: None,
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
        })))
    }

    fn peers(result: Result<Done, TrackerError>) -> Vec<String> {
        match result {
            Ok(Done::Tracker(Outcome::Announced(r))) => r.peers.iter().map(|p| p.to_string()).collect(),
            _ => panic!("not an announce"),
        }
    }

    #[test]
    fn both_families_peers_are_joined_without_duplicates() {
        let v4 = announced(&["127.0.0.1:1", "127.0.0.2:2"], 3);
        let v6 = announced(&["[::1]:3", "127.0.0.1:1"], 5);
        assert_eq!(
            peers(merge(vec![v4, v6])),
            ["127.0.0.1:1", "127.0.0.2:2", "[::1]:3"]
        );
    }

    #[test]
    fn one_family_failing_is_no_failure_and_the_most_telling_error_wins() {
        let v4 = announced(&["127.0.0.1:1"], 1);
        let v6 = || Err(TrackerError::Io("network unreachable".into()));
        assert_eq!(peers(merge(vec![v6(), v4])), ["127.0.0.1:1"]);
        let refused = Err(TrackerError::Failure("unregistered torrent".into()));
        match merge(vec![v6(), refused]) {
            Err(TrackerError::Failure(why)) => assert_eq!(why, "unregistered torrent"),
            _ => panic!("the tracker's own answer is the one to report"),
        }
    }
}
