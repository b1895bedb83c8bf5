//! UDP trackers (BEP 15), sans-IO: the wire format, and one transaction's state
//! machine (connect, then announce or scrape) driven by datagrams and time.
//!
//! ```text
//!   Connect ──connect reply──▶ Request ──announce/scrape reply──▶ done
//!      │  no reply by base·2ⁿ: resend, n ≤ 8      │ connection id older than 60 s: back to Connect
//!      └──────────── error reply, or n > 8 ───────┴──▶ failed
//! ```
//!
//! Replies are matched by transaction id; anything else is ignored and counted.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::peers::{PeerList, COMPACT_V4, COMPACT_V6};
use super::{
    clamp_interval, random_u64, AnnounceEvent, AnnounceRequest, AnnounceResponse, ScrapeStats, TrackerError,
};
use crate::metainfo::InfoHash;

/// The magic constant of a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
const ACTION_CONNECT: u32 = 0;
const ACTION_ANNOUNCE: u32 = 1;
const ACTION_SCRAPE: u32 = 2;
const ACTION_ERROR: u32 = 3;
/// A connection id may be used for this long after it was received.
pub const CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(60);
/// The standard retransmission base: a request is resent after 15·2ⁿ s.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(15);
/// The last retransmission exponent; no answer after it is a timeout.
pub const MAX_RETRY_EXPONENT: u32 = 8;
/// Most info hashes in one scrape (what fits a datagram of ~1500 bytes).
pub const MAX_SCRAPE_HASHES: usize = 74;
/// Longest datagram we accept from a tracker.
pub const MAX_DATAGRAM: usize = 64 * 1024;

/// A connect request.
pub fn connect_request(transaction_id: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
    out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out
}

/// An announce request (98 bytes).
pub fn announce_request(connection_id: u64, transaction_id: u32, request: &AnnounceRequest) -> Vec<u8> {
    let event: u32 = match request.event {
        AnnounceEvent::None => 0,
        AnnounceEvent::Completed => 1,
        AnnounceEvent::Started => 2,
        AnnounceEvent::Stopped => 3,
    };
    let mut out = Vec::with_capacity(98);
    out.extend_from_slice(&connection_id.to_be_bytes());
    out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(&request.info_hash.0);
    out.extend_from_slice(&request.peer_id.0);
    out.extend_from_slice(&request.downloaded.to_be_bytes());
    out.extend_from_slice(&request.left.to_be_bytes());
    out.extend_from_slice(&request.uploaded.to_be_bytes());
    out.extend_from_slice(&event.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes()); // IP: the sender's
    out.extend_from_slice(&request.key.to_be_bytes());
    let numwant = request.numwant.map_or(-1i32, |n| n.min(i32::MAX as u32) as i32);
    out.extend_from_slice(&numwant.to_be_bytes());
    out.extend_from_slice(&request.port.to_be_bytes());
    out
}

/// A scrape request for up to [`MAX_SCRAPE_HASHES`] torrents.
pub fn scrape_request(connection_id: u64, transaction_id: u32, hashes: &[InfoHash]) -> Vec<u8> {
    let hashes = &hashes[..hashes.len().min(MAX_SCRAPE_HASHES)];
    let mut out = Vec::with_capacity(16 + 20 * hashes.len());
    out.extend_from_slice(&connection_id.to_be_bytes());
    out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    for hash in hashes {
        out.extend_from_slice(&hash.0);
    }
    out
}

/// A decoded tracker datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Connect {
        transaction_id: u32,
        connection_id: u64,
    },
    Announce {
        transaction_id: u32,
        response: AnnounceResponse,
    },
    Scrape {
        transaction_id: u32,
        stats: Vec<ScrapeStats>,
    },
    Error {
        transaction_id: u32,
        message: String,
    },
}

fn be32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

/// Decodes a datagram from a tracker. Announce peers are IPv6 (18 bytes each) when
/// the tracker was reached over IPv6, as BEP 15 specifies.
pub fn parse_reply(data: &[u8], ipv6: bool) -> Result<Reply, TrackerError> {
    let short = || TrackerError::Malformed(format!("{}-byte UDP tracker reply is too short", data.len()));
    if data.len() < 8 {
        return Err(short());
    }
    if data.len() > MAX_DATAGRAM {
        return Err(TrackerError::TooLarge);
    }
    let (action, transaction_id) = (be32(data, 0), be32(data, 4));
    match action {
        ACTION_CONNECT => {
            if data.len() < 16 {
                return Err(short());
            }
            let connection_id = u64::from_be_bytes(data[8..16].try_into().expect("8 bytes"));
            Ok(Reply::Connect {
                transaction_id,
                connection_id,
            })
        }
        ACTION_ANNOUNCE => {
            if data.len() < 20 {
                return Err(short());
            }
            let interval = clamp_interval(u64::from(be32(data, 8)));
            let (leechers, seeders) = (be32(data, 12), be32(data, 16));
            let compact = &data[20..];
            let entry = if ipv6 { COMPACT_V6 } else { COMPACT_V4 };
            // Trailing bytes short of a whole entry are ignored, as other clients do.
            let whole = &compact[..compact.len() / entry * entry];
            let mut peers = if ipv6 {
                PeerList::with_room(&[], whole, 0)
            } else {
                PeerList::with_room(whole, &[], 0)
            };
            let added = if ipv6 {
                peers.add_compact_v6(whole)
            } else {
                peers.add_compact_v4(whole)
            };
            added.map_err(TrackerError::Malformed)?;
            Ok(Reply::Announce {
                transaction_id,
                response: AnnounceResponse {
                    interval,
                    min_interval: None,
                    tracker_id: None,
                    complete: Some(seeders),
                    incomplete: Some(leechers),
                    warning: None,
                    peers: peers.into_vec(),
                },
            })
        }
        ACTION_SCRAPE => {
            let stats = data[8..]
                .chunks_exact(12)
                .take(MAX_SCRAPE_HASHES)
                .map(|c| ScrapeStats {
                    seeders: be32(c, 0),
                    completed: be32(c, 4),
                    leechers: be32(c, 8),
                })
                .collect();
            Ok(Reply::Scrape {
                transaction_id,
                stats,
            })
        }
        ACTION_ERROR => {
            let message = String::from_utf8_lossy(&data[8..data.len().min(8 + 1024)]).into_owned();
            Ok(Reply::Error {
                transaction_id,
                message,
            })
        }
        other => Err(TrackerError::Malformed(format!(
            "unknown UDP tracker action {other}"
        ))),
    }
}

/// What a transaction asks for once connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    Announce(AnnounceRequest),
    Scrape(Vec<InfoHash>),
}

/// What a finished transaction produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Announced(AnnounceResponse),
    Scraped(Vec<ScrapeStats>),
}

/// What handling a datagram did.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Not for us (wrong transaction id or unexpected kind): ignored.
    Ignored,
    /// Connected; the id can be cached for [`CONNECTION_ID_LIFETIME`]. The
    /// request is ready in `poll_transmit`.
    Connected {
        connection_id: u64,
    },
    Done(Outcome),
    Failed(TrackerError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Connect,
    Request { connection_id: u64, obtained: Instant },
}

/// One connect-then-request exchange with one UDP tracker.
#[derive(Debug)]
pub struct UdpTransaction {
    purpose: Purpose,
    ipv6: bool,
    retry_base: Duration,
    step: Step,
    transaction_id: u32,
    /// Retransmissions of the current step so far.
    attempt: u32,
    deadline: Instant,
    send_pending: bool,
}

impl UdpTransaction {
    /// Starts a transaction. A `cached` connection id still within its lifetime
    /// skips the connect step.
    pub fn new(
        now: Instant,
        purpose: Purpose,
        ipv6: bool,
        retry_base: Duration,
        cached: Option<(u64, Instant)>,
    ) -> Self {
        let step = match cached {
            Some((connection_id, obtained))
                if now.saturating_duration_since(obtained) < CONNECTION_ID_LIFETIME =>
            {
                Step::Request {
                    connection_id,
                    obtained,
                }
            }
            _ => Step::Connect,
        };
        UdpTransaction {
            purpose,
            ipv6,
            retry_base,
            step,
            transaction_id: random_u64() as u32,
            attempt: 0,
            deadline: now + retry_base,
            send_pending: true,
        }
    }

    /// The id replies must carry to be ours.
    pub fn transaction_id(&self) -> u32 {
        self.transaction_id
    }

    /// The datagram to send now, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if !std::mem::take(&mut self.send_pending) {
            return None;
        }
        Some(match (&self.step, &self.purpose) {
            (Step::Connect, _) => connect_request(self.transaction_id),
            (Step::Request { connection_id, .. }, Purpose::Announce(request)) => {
                announce_request(*connection_id, self.transaction_id, request)
            }
            (Step::Request { connection_id, .. }, Purpose::Scrape(hashes)) => {
                scrape_request(*connection_id, self.transaction_id, hashes)
            }
        })
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Instant {
        self.deadline
    }

    /// No reply by the deadline: resend with a doubled wait, or give up after 2⁸.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TrackerError> {
        if now < self.deadline {
            return None;
        }
        if self.attempt == MAX_RETRY_EXPONENT {
            return Some(TrackerError::Timeout);
        }
        self.attempt += 1;
        if let Step::Request { obtained, .. } = self.step {
            if now.saturating_duration_since(obtained) >= CONNECTION_ID_LIFETIME {
                self.step = Step::Connect; // the id expired while we waited
                self.transaction_id = random_u64() as u32;
            }
        }
        // A resend keeps its transaction id, so a late reply to an earlier send of
        // the same step still counts.
        self.deadline = now + self.retry_base * 2u32.pow(self.attempt);
        self.send_pending = true;
        None
    }

    /// A datagram from the tracker.
    pub fn handle_datagram(&mut self, now: Instant, data: &[u8]) -> Progress {
        let reply = match parse_reply(data, self.ipv6) {
            Ok(reply) => reply,
            // Garbage is not proof the tracker failed: keep waiting for a real reply.
            Err(_) => return Progress::Ignored,
        };
        match (self.step, reply) {
            (
                _,
                Reply::Error {
                    transaction_id,
                    message,
                },
            ) if transaction_id == self.transaction_id => Progress::Failed(TrackerError::Failure(message)),
            (
                Step::Connect,
                Reply::Connect {
                    transaction_id,
                    connection_id,
                },
            ) if transaction_id == self.transaction_id => {
                self.step = Step::Request {
                    connection_id,
                    obtained: now,
                };
                self.attempt = 0;
                self.transaction_id = random_u64() as u32;
                self.deadline = now + self.retry_base;
                self.send_pending = true;
                Progress::Connected { connection_id }
            }
            (
                Step::Request { .. },
                Reply::Announce {
                    transaction_id,
                    response,
                },
            ) if transaction_id == self.transaction_id && matches!(self.purpose, Purpose::Announce(_)) => {
                Progress::Done(Outcome::Announced(response))
            }
            (
                Step::Request { .. },
                Reply::Scrape {
                    transaction_id,
                    stats,
                },
            ) if transaction_id == self.transaction_id && matches!(self.purpose, Purpose::Scrape(_)) => {
                Progress::Done(Outcome::Scraped(stats))
            }
            _ => Progress::Ignored,
        }
    }
}

/// Formats an IPv4 or IPv6 peer list entry (test helper for fake trackers).
pub fn compact_peer(peer: SocketAddr) -> Vec<u8> {
    let mut out = match peer.ip() {
        std::net::IpAddr::V4(ip) => Ipv4Addr::octets(&ip).to_vec(),
        std::net::IpAddr::V6(ip) => Ipv6Addr::octets(&ip).to_vec(),
    };
    out.extend_from_slice(&peer.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::PeerId;

    fn request() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash([7; 20]),
            peer_id: PeerId(*b"-BL0001-abcdefghijkl"),
            port: 6881,
            uploaded: 10,
            downloaded: 20,
            left: 30,
            event: AnnounceEvent::Started,
            numwant: None,
            key: 99,
            tracker_id: None,
        }
    }

    fn connect_reply(tid: u32, cid: u64) -> Vec<u8> {
        let mut out = ACTION_CONNECT.to_be_bytes().to_vec();
        out.extend_from_slice(&tid.to_be_bytes());
        out.extend_from_slice(&cid.to_be_bytes());
        out
    }

    fn announce_reply(tid: u32, peers: &[SocketAddr]) -> Vec<u8> {
        let mut out = ACTION_ANNOUNCE.to_be_bytes().to_vec();
        out.extend_from_slice(&tid.to_be_bytes());
        out.extend_from_slice(&1800u32.to_be_bytes());
        out.extend_from_slice(&4u32.to_be_bytes());
        out.extend_from_slice(&9u32.to_be_bytes());
        for peer in peers {
            out.extend(compact_peer(*peer));
        }
        out
    }

    /// The transaction id of a request we sent (bytes 12..16 in every request kind).
    fn tid_of(datagram: &[u8]) -> u32 {
        be32(datagram, 12)
    }

    #[test]
    fn request_layouts_match_bep_15() {
        let connect = connect_request(0x0102_0304);
        assert_eq!(
            connect,
            [0, 0, 4, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 1, 2, 3, 4]
        );
        let announce = announce_request(0xaabb, 5, &request());
        assert_eq!(announce.len(), 98);
        assert_eq!(&announce[8..12], &1u32.to_be_bytes());
        assert_eq!(&announce[80..84], &2u32.to_be_bytes(), "event started = 2");
        assert_eq!(&announce[92..96], &(-1i32).to_be_bytes(), "numwant default");
        assert_eq!(&announce[96..98], &6881u16.to_be_bytes());
        assert_eq!(
            scrape_request(1, 2, &[InfoHash([1; 20]); 100]).len(),
            16 + 20 * MAX_SCRAPE_HASHES
        );
    }

    #[test]
    fn connect_then_announce_with_transaction_ids_checked() {
        let t0 = Instant::now();
        let mut tx = UdpTransaction::new(
            t0,
            Purpose::Announce(request()),
            false,
            Duration::from_secs(15),
            None,
        );
        let first = tx.poll_transmit().unwrap();
        assert_eq!(first.len(), 16);
        assert!(tx.poll_transmit().is_none(), "sent once");
        let tid = tid_of(&first);
        assert_eq!(tid, tx.transaction_id());
        assert_eq!(
            tx.handle_datagram(t0, &connect_reply(tid ^ 1, 7)),
            Progress::Ignored
        );
        assert_eq!(tx.handle_datagram(t0, b"junk"), Progress::Ignored);
        assert_eq!(
            tx.handle_datagram(t0, &connect_reply(tid, 7)),
            Progress::Connected { connection_id: 7 }
        );
        let announce = tx.poll_transmit().unwrap();
        assert_eq!(&announce[..8], &7u64.to_be_bytes());
        let tid = be32(&announce, 12);
        let peer: SocketAddr = "127.0.0.1:6881".parse().unwrap();
        let done = tx.handle_datagram(t0, &announce_reply(tid, &[peer]));
        let Progress::Done(Outcome::Announced(response)) = done else {
            panic!("{done:?}")
        };
        assert_eq!(response.peers, vec![peer]);
        assert_eq!((response.complete, response.incomplete), (Some(9), Some(4)));
    }

    #[test]
    fn retransmits_at_base_times_two_to_the_n_then_times_out() {
        let t0 = Instant::now();
        let base = Duration::from_millis(10);
        let mut tx = UdpTransaction::new(t0, Purpose::Announce(request()), false, base, None);
        tx.poll_transmit().unwrap();
        let mut now = t0;
        let mut waits = Vec::new();
        loop {
            let deadline = tx.poll_timeout();
            waits.push(deadline - now);
            now = deadline;
            if let Some(error) = tx.handle_timeout(now) {
                assert_eq!(error, TrackerError::Timeout);
                break;
            }
            assert!(tx.poll_transmit().is_some(), "a retransmission is due");
        }
        let expected: Vec<Duration> = (0..=MAX_RETRY_EXPONENT).map(|n| base * 2u32.pow(n)).collect();
        assert_eq!(waits, expected);
    }

    #[test]
    fn a_late_reply_to_an_earlier_send_is_accepted() {
        let t0 = Instant::now();
        let base = Duration::from_millis(10);
        let mut tx = UdpTransaction::new(t0, Purpose::Announce(request()), false, base, None);
        let first = tid_of(&tx.poll_transmit().unwrap());
        assert!(tx.handle_timeout(t0 + base).is_none());
        let resent = tid_of(&tx.poll_transmit().unwrap());
        assert_eq!(resent, first, "the resend keeps its id");
        assert_eq!(
            tx.handle_datagram(t0 + base, &connect_reply(first, 5)),
            Progress::Connected { connection_id: 5 }
        );
    }

    #[test]
    fn a_cached_connection_id_is_reused_for_60_seconds() {
        let t0 = Instant::now();
        let base = Duration::from_secs(15);
        let fresh = UdpTransaction::new(t0, Purpose::Announce(request()), false, base, Some((42, t0)));
        let mut fresh = fresh;
        assert_eq!(fresh.poll_transmit().unwrap().len(), 98, "straight to announce");
        let later = t0 + CONNECTION_ID_LIFETIME;
        let mut stale = UdpTransaction::new(later, Purpose::Announce(request()), false, base, Some((42, t0)));
        assert_eq!(stale.poll_transmit().unwrap().len(), 16, "expired: connect again");
    }

    #[test]
    fn error_replies_and_ipv6_peers() {
        let t0 = Instant::now();
        let mut tx = UdpTransaction::new(
            t0,
            Purpose::Announce(request()),
            true,
            Duration::from_secs(1),
            Some((1, t0)),
        );
        let tid = be32(&tx.poll_transmit().unwrap(), 12);
        let peer: SocketAddr = "[::1]:7000".parse().unwrap();
        let Progress::Done(Outcome::Announced(r)) = tx.handle_datagram(t0, &announce_reply(tid, &[peer]))
        else {
            panic!()
        };
        assert_eq!(r.peers, vec![peer]);

        let mut tx = UdpTransaction::new(
            t0,
            Purpose::Scrape(vec![InfoHash([1; 20])]),
            false,
            Duration::from_secs(1),
            None,
        );
        let tid = tid_of(&tx.poll_transmit().unwrap());
        let mut error = ACTION_ERROR.to_be_bytes().to_vec();
        error.extend_from_slice(&tid.to_be_bytes());
        error.extend_from_slice(b"unregistered torrent");
        assert_eq!(
            tx.handle_datagram(t0, &error),
            Progress::Failed(TrackerError::Failure("unregistered torrent".into()))
        );
    }

    #[test]
    fn parse_reply_never_panics_on_short_or_odd_input() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37) as u8 % 4).collect();
            let _ = parse_reply(&data, len % 2 == 0);
        }
    }
}
