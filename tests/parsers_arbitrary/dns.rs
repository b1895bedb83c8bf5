//! DNS answers: `dns::message::decode_answer` on random, valid and mutated
//! messages, and a resolver fed mutated answers to its own query.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bitloop::dns::message::{decode_answer, encode_answer, encode_query, RecordType};
use bitloop::dns::{Resolver, ResolverConfig, Start};

use super::gen::{mutate, run_cases, Rng};
use crate::checks;

fn name(rng: &mut Rng) -> String {
    let labels: Vec<String> = (0..1 + rng.below(4))
        .map(|_| {
            (0..1 + rng.below(12))
                .map(|_| rng.pick(b"abcxyz0189-_") as char)
                .collect()
        })
        .collect();
    labels.join(".")
}

fn address(rng: &mut Rng) -> IpAddr {
    if rng.one_in(2) {
        IpAddr::from(<[u8; 4]>::try_from(rng.bytes(4)).unwrap())
    } else {
        IpAddr::from(<[u8; 16]>::try_from(rng.bytes(16)).unwrap())
    }
}

#[test]
fn valid_answers_decode_to_their_addresses() {
    run_cases("valid DNS answers", 0x5eed_0301, 10_000, |rng| {
        let id = rng.u16();
        let record = if rng.one_in(2) {
            RecordType::A
        } else {
            RecordType::Aaaa
        };
        let query = encode_query(id, &name(rng), record).unwrap();
        let ips: Vec<IpAddr> = (0..rng.below(70)).map(|_| address(rng)).collect();
        let answer = decode_answer(&encode_answer(&query, &ips)).unwrap();
        assert_eq!((answer.id, answer.rcode, answer.truncated), (id, 0, false));
        assert_eq!(answer.addresses, ips[..ips.len().min(64)]);
    });
}

#[test]
fn mutated_and_random_answers_never_break_the_decoder() {
    let mut decoded = 0;
    run_cases("mutated DNS answers", 0x5eed_0302, 40_000, |rng| {
        let mut bytes = if rng.one_in(4) {
            let mut b = rng.some_bytes(100);
            if b.len() > 7 {
                b[2] |= 0x80; // a response
                b[4] = 0;
                b[5] = rng.below(3) as u8;
                b[6] = 0;
                b[7] = rng.below(5) as u8;
            }
            b
        } else {
            let query = encode_query(rng.u16(), &name(rng), RecordType::A).unwrap();
            let ips: Vec<IpAddr> = (0..rng.below(5)).map(|_| address(rng)).collect();
            encode_answer(&query, &ips)
        };
        mutate(rng, &mut bytes);
        checks::dns(&bytes);
        decoded += decode_answer(&bytes).is_ok() as usize;
    });
    // Most single edits leave an answer readable: the happy path is exercised too.
    assert!(decoded > 5_000, "only {decoded} answers decoded");
}

#[test]
fn a_resolver_fed_hostile_answers_ends_each_lookup_at_most_once() {
    let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
    run_cases("resolver answers", 0x5eed_0303, 5_000, |rng| {
        let config = ResolverConfig::from_texts("", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
        let mut resolver = Resolver::new(config);
        let now = Instant::now();
        let Ok(Start::Pending(id)) = resolver.resolve(now, &name(rng)) else {
            panic!("a name needs a query")
        };
        let mut results = 0;
        for _ in 0..1 + rng.below(4) {
            let Some(transmit) = resolver.poll_transmit() else {
                break;
            };
            assert_eq!(transmit.server, server);
            let query = transmit.datagram;
            let ips: Vec<IpAddr> = (0..rng.below(3)).map(|_| address(rng)).collect();
            let mut answer = encode_answer(&query, &ips);
            if rng.one_in(2) {
                mutate(rng, &mut answer);
            }
            let from = if rng.one_in(8) {
                "127.0.0.2:53".parse().unwrap()
            } else {
                server
            };
            resolver.handle_datagram(now, transmit.query, from, &answer);
            while let Some((done, _)) = resolver.poll_result() {
                assert_eq!(done, id);
                results += 1;
            }
        }
        resolver.handle_timeout(now + Duration::from_secs(5));
        while let Some((done, _)) = resolver.poll_result() {
            assert_eq!(done, id);
            results += 1;
        }
        assert_eq!(results, 1, "a lookup ends exactly once");
        assert_eq!(resolver.in_progress(), 0);
    });
}
