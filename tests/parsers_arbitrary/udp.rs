//! UDP tracker replies (`tracker::udp::parse_reply` and a transaction fed them)
//! and compact peer lists (`tracker::peers`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bitloop::metainfo::InfoHash;
use bitloop::tracker::peers::{PeerList, COMPACT_V4, COMPACT_V6, MAX_PEERS_PER_RESPONSE};
use bitloop::tracker::udp::{
    compact_peer, parse_reply, Outcome, Progress, Purpose, Reply, UdpTransaction, MAX_SCRAPE_HASHES,
};
use bitloop::tracker::{clamp_interval, ScrapeStats};

use super::gen::{mutate, run_cases, Rng};
use crate::checks;

const CONNECT: u32 = 0;
const ANNOUNCE: u32 = 1;
const SCRAPE: u32 = 2;
const ERROR: u32 = 3;

fn header(action: u32, transaction_id: u32) -> Vec<u8> {
    let mut out = action.to_be_bytes().to_vec();
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out
}

/// A valid reply of a random kind and what `parse_reply` must make of it.
fn reply(rng: &mut Rng, ipv6: bool, transaction_id: u32) -> (Vec<u8>, Reply) {
    match rng.below(4) as u32 {
        CONNECT => {
            let connection_id = rng.u64();
            let mut out = header(CONNECT, transaction_id);
            out.extend_from_slice(&connection_id.to_be_bytes());
            (
                out,
                Reply::Connect {
                    transaction_id,
                    connection_id,
                },
            )
        }
        ANNOUNCE => {
            let (interval, leechers, seeders) = (rng.u32(), rng.u32(), rng.u32());
            let mut out = header(ANNOUNCE, transaction_id);
            for n in [interval, leechers, seeders] {
                out.extend_from_slice(&n.to_be_bytes());
            }
            let mut peers = Vec::new();
            for _ in 0..rng.below(60) {
                let port = if rng.one_in(10) { 0 } else { rng.u16() };
                let peer = if ipv6 {
                    SocketAddr::from((<[u8; 16]>::try_from(rng.bytes(16)).unwrap(), port))
                } else {
                    SocketAddr::from((<[u8; 4]>::try_from(rng.bytes(4)).unwrap(), port))
                };
                out.extend(compact_peer(peer));
                if port != 0 {
                    peers.push(peer);
                }
            }
            out.extend(rng.some_bytes(if ipv6 { 17 } else { 5 })); // a ragged tail is ignored
            let response = bitloop::tracker::AnnounceResponse {
                interval: clamp_interval(u64::from(interval)),
                min_interval: None,
                tracker_id: None,
                complete: Some(seeders),
                incomplete: Some(leechers),
                warning: None,
                peers,
            };
            (
                out,
                Reply::Announce {
                    transaction_id,
                    response,
                },
            )
        }
        SCRAPE => {
            let mut out = header(SCRAPE, transaction_id);
            let mut stats = Vec::new();
            for _ in 0..rng.below(MAX_SCRAPE_HASHES + 10) {
                let s = ScrapeStats {
                    seeders: rng.u32(),
                    completed: rng.u32(),
                    leechers: rng.u32(),
                };
                for n in [s.seeders, s.completed, s.leechers] {
                    out.extend_from_slice(&n.to_be_bytes());
                }
                stats.push(s);
            }
            stats.truncate(MAX_SCRAPE_HASHES);
            (
                out,
                Reply::Scrape {
                    transaction_id,
                    stats,
                },
            )
        }
        _ => {
            let message = "no such torrent".repeat(rng.below(4));
            let mut out = header(ERROR, transaction_id);
            out.extend_from_slice(message.as_bytes());
            (
                out,
                Reply::Error {
                    transaction_id,
                    message,
                },
            )
        }
    }
}

#[test]
fn valid_replies_decode_to_what_was_sent() {
    run_cases("valid UDP replies", 0x5eed_0201, 20_000, |rng| {
        let ipv6 = rng.one_in(2);
        let transaction_id = rng.u32();
        let (bytes, want) = reply(rng, ipv6, transaction_id);
        assert_eq!(parse_reply(&bytes, ipv6), Ok(want));
    });
}

#[test]
fn mutated_and_random_datagrams_never_break_the_decoder_or_a_transaction() {
    run_cases("mutated UDP replies", 0x5eed_0202, 40_000, |rng| {
        let flags = rng.u8();
        let mut datagram = if rng.one_in(3) {
            let mut d = header(rng.below(5) as u32, rng.u32());
            d.extend(rng.some_bytes(120));
            d
        } else {
            let transaction_id = rng.u32();
            reply(rng, flags & 1 != 0, transaction_id).0
        };
        mutate(rng, &mut datagram);
        datagram.insert(0, flags);
        checks::udp_tracker(&datagram);
    });
}

/// Drives a transaction through connect and request with garbage and stray
/// replies in between: only replies carrying its transaction id move it on.
#[test]
fn a_transaction_only_accepts_its_own_replies() {
    run_cases("UDP transactions", 0x5eed_0203, 5_000, |rng| {
        let now = Instant::now();
        let ipv6 = rng.one_in(2);
        let hashes = vec![InfoHash([3; 20]); 1 + rng.below(3)];
        let mut t = UdpTransaction::new(
            now,
            Purpose::Scrape(hashes.clone()),
            ipv6,
            Duration::from_secs(15),
            None,
        );
        assert!(t.poll_transmit().is_some());
        let stray = |rng: &mut Rng, t: &mut UdpTransaction| {
            for _ in 0..rng.below(4) {
                let wrong = t.transaction_id().wrapping_add(1 + rng.below(1000) as u32);
                let mut other = reply(rng, ipv6, wrong).0;
                if rng.one_in(2) {
                    mutate(rng, &mut other);
                    // A mutation may turn the wrong id into the right one (the two
                    // differ in a low byte or two): that is no longer a stray.
                    let own = t.transaction_id().to_be_bytes();
                    if other.get(4..8) == Some(&own[..]) {
                        other[7] ^= 0xff;
                    }
                }
                let progress = t.handle_datagram(now, &other);
                assert!(matches!(progress, Progress::Ignored), "{progress:?}");
            }
        };
        stray(rng, &mut t);
        let connection_id = rng.u64();
        let mut connect = header(CONNECT, t.transaction_id());
        connect.extend_from_slice(&connection_id.to_be_bytes());
        assert_eq!(
            t.handle_datagram(now, &connect),
            Progress::Connected { connection_id }
        );
        let request = t.poll_transmit().expect("the scrape request is due");
        assert_eq!(request[..8], connection_id.to_be_bytes());
        assert_eq!(request.len(), 16 + 20 * hashes.len());
        stray(rng, &mut t);
        let stats: Vec<ScrapeStats> = (0..hashes.len())
            .map(|_| ScrapeStats {
                seeders: rng.u32(),
                completed: rng.u32(),
                leechers: rng.u32(),
            })
            .collect();
        let mut scrape = header(SCRAPE, t.transaction_id());
        for s in &stats {
            for n in [s.seeders, s.completed, s.leechers] {
                scrape.extend_from_slice(&n.to_be_bytes());
            }
        }
        assert_eq!(
            t.handle_datagram(now, &scrape),
            Progress::Done(Outcome::Scraped(stats))
        );
    });
}

#[test]
fn compact_peer_lists_decode_exactly_or_are_refused() {
    run_cases("compact peer lists", 0x5eed_0204, 30_000, |rng| {
        let v6 = rng.one_in(2);
        let entry = if v6 { COMPACT_V6 } else { COMPACT_V4 };
        let mut bytes = rng.some_bytes(entry * 40);
        if rng.one_in(2) {
            bytes.truncate(bytes.len() / entry * entry);
        }
        if rng.one_in(500) {
            let count = MAX_PEERS_PER_RESPONSE + 1 + rng.below(50);
            bytes = rng.bytes(entry * count);
        }
        let mut list = if v6 {
            PeerList::with_room(&[], &bytes, 0)
        } else {
            PeerList::with_room(&bytes, &[], 0)
        };
        let added = if v6 {
            list.add_compact_v6(&bytes)
        } else {
            list.add_compact_v4(&bytes)
        };
        let peers = list.into_vec();
        if bytes.len() % entry != 0 {
            assert!(added.is_err(), "{} bytes accepted", bytes.len());
            assert!(peers.is_empty());
            return;
        }
        added.unwrap();
        let want: Vec<SocketAddr> = bytes
            .chunks_exact(entry)
            .map(|c| {
                let port = u16::from_be_bytes([c[entry - 2], c[entry - 1]]);
                if v6 {
                    SocketAddr::from((<[u8; 16]>::try_from(&c[..16]).unwrap(), port))
                } else {
                    SocketAddr::from((<[u8; 4]>::try_from(&c[..4]).unwrap(), port))
                }
            })
            .filter(|p| p.port() != 0)
            .take(MAX_PEERS_PER_RESPONSE)
            .collect();
        assert_eq!(peers, want);
        for peer in &peers {
            assert_eq!(compact_peer(*peer).len(), entry);
        }
    });
}
