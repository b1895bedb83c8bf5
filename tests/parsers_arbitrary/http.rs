//! HTTP tracker responses: `tracker::http::ResponseReader` fed responses in random
//! chunkings, then `parse_announce` and `parse_scrape`, through the tracker fuzz
//! target's own check, and valid announce and scrape bodies parsed exactly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bitloop::metainfo::InfoHash;
use bitloop::tracker::http::{parse_announce, parse_scrape, HttpResponse};
use bitloop::tracker::udp::compact_peer;
use bitloop::tracker::{clamp_interval, ScrapeStats, TrackerError};

use super::gen::{mutate, run_cases, Rng};
use crate::http_stream::{check, check_body, read_response, Read};
use crate::stream::StreamInput;

/// A bencoded byte string.
fn string(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out
}

/// A bencoded dictionary (keys sorted, as bencode requires).
fn dict(entries: &BTreeMap<&[u8], Vec<u8>>) -> Vec<u8> {
    let mut out = b"d".to_vec();
    for (key, value) in entries {
        out.extend(string(key));
        out.extend_from_slice(value);
    }
    out.push(b'e');
    out
}

fn peer(rng: &mut Rng, v6: bool) -> SocketAddr {
    let port = if rng.one_in(8) { 0 } else { rng.u16() };
    if v6 {
        SocketAddr::from((rng.bytes(16).try_into().map(|b: [u8; 16]| b).unwrap(), port))
    } else {
        SocketAddr::from((rng.bytes(4).try_into().map(|b: [u8; 4]| b).unwrap(), port))
    }
}

/// What an announce body must parse to: (interval, peers), or the failure reason.
type Expected = Result<(Duration, Vec<SocketAddr>), String>;

/// An announce body and what `parse_announce` must make of it.
fn announce_body(rng: &mut Rng) -> (Vec<u8>, Expected) {
    let mut entries: BTreeMap<&[u8], Vec<u8>> = BTreeMap::new();
    let interval = rng.below(100_000) as u64;
    entries.insert(b"interval", format!("i{interval}e").into_bytes());
    let min = rng.one_in(3).then(|| rng.below(100_000) as u64);
    if let Some(min) = min {
        entries.insert(b"min interval", format!("i{min}e").into_bytes());
    }
    let (v4, v6, listed): (Vec<_>, Vec<_>, Vec<_>) = (
        (0..rng.below(40)).map(|_| peer(rng, false)).collect(),
        (0..rng.below(8)).map(|_| peer(rng, true)).collect(),
        (0..rng.below(4))
            .map(|_| {
                let v6 = rng.one_in(2);
                peer(rng, v6)
            })
            .collect(),
    );
    let compact = |peers: &[SocketAddr]| peers.iter().flat_map(|p| compact_peer(*p)).collect::<Vec<u8>>();
    if listed.is_empty() {
        entries.insert(b"peers", string(&compact(&v4)));
    } else {
        let mut list = b"l".to_vec();
        for p in &listed {
            let fields: BTreeMap<&[u8], Vec<u8>> = [
                (&b"ip"[..], string(p.ip().to_string().as_bytes())),
                (&b"port"[..], format!("i{}e", p.port()).into_bytes()),
                (&b"peer id"[..], string(&[b'-'; 20])),
            ]
            .into();
            list.extend(dict(&fields));
        }
        list.push(b'e');
        entries.insert(b"peers", list);
    }
    entries.insert(b"peers6", string(&compact(&v6)));
    entries.insert(b"complete", format!("i{}e", rng.u16()).into_bytes());
    entries.insert(b"warning message", string(b"be nice"));
    entries.insert(b"x-unknown", b"li1ei2ee".to_vec());
    if rng.one_in(10) {
        entries.insert(b"failure reason", string(b"go away"));
        return (dict(&entries), Err("go away".into()));
    }
    let mut interval = clamp_interval(interval);
    if let Some(min) = min {
        interval = interval.max(clamp_interval(min));
    }
    let peers = if listed.is_empty() { v4 } else { Vec::new() };
    let peers = peers
        .into_iter()
        .chain(v6)
        .chain(listed)
        .filter(|p| p.port() != 0)
        .collect();
    (dict(&entries), Ok((interval, peers)))
}

/// A whole response around `body`: status, some headers, and one of the framings
/// (Content-Length, chunked with extensions and trailers, or close-delimited),
/// sometimes after a `100 Continue`. Returns the bytes and whether the body ends
/// only at the close.
fn response(rng: &mut Rng, status: u16, body: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    if rng.one_in(6) {
        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    out.extend_from_slice(format!("HTTP/1.{} {status} Whatever\r\n", rng.below(2)).as_bytes());
    out.extend_from_slice(rng.pick(&[&b"Server: t\r\n"[..], b"content-TYPE: text/plain\r\n", b""]));
    if (300..400).contains(&status) {
        out.extend_from_slice(b"Location: /elsewhere?x=1\r\n");
    }
    let framing = rng.below(3);
    match framing {
        0 => out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes()),
        1 => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n"),
        _ => out.extend_from_slice(b"Connection: close\r\n\r\n"),
    }
    if framing == 1 {
        let mut rest = body;
        while !rest.is_empty() {
            let size = (1 + rng.below(40)).min(rest.len());
            let extension = if rng.one_in(5) { ";name=value" } else { "" };
            out.extend_from_slice(format!("{size:x}{extension}\r\n").as_bytes());
            out.extend_from_slice(&rest[..size]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[size..];
        }
        out.extend_from_slice(if rng.one_in(3) {
            b"0\r\nX-Trailer: 1\r\n\r\n"
        } else {
            b"0\r\n\r\n"
        });
    } else {
        out.extend_from_slice(body);
    }
    (out, framing == 2)
}

#[test]
fn valid_responses_read_and_parse_the_same_in_any_chunking() {
    run_cases("valid tracker responses", 0x5eed_0101, 4_000, |rng| {
        let (body, expected) = announce_body(rng);
        let status = rng.pick(&[200, 200, 200, 302, 404]);
        let (bytes, at_close) = response(rng, status, &body);
        let response = HttpResponse {
            status,
            reason: "Whatever".into(),
            location: (status == 302).then(|| "/elsewhere?x=1".to_string()),
            content_type: String::from_utf8_lossy(&bytes)
                .contains("content-TYPE: text/plain")
                .then(|| "text/plain".to_string()),
            body: body.clone(),
        };
        let want = if at_close {
            Read::AtClose(response)
        } else {
            Read::Complete(response)
        };
        assert_eq!(read_response(&rng.chunking(), &bytes), want);
        match (parse_announce(&body), expected) {
            (Ok(got), Ok((interval, peers))) => {
                assert_eq!(got.interval, interval);
                assert_eq!(got.peers, peers);
            }
            (Err(TrackerError::Failure(why)), Err(expected)) => assert_eq!(why, expected),
            (got, expected) => panic!("{got:?}, expected {expected:?}"),
        }
    });
}

#[test]
fn mutated_responses_never_break_the_reader() {
    let mut refused = 0;
    run_cases("mutated tracker responses", 0x5eed_0102, 12_000, |rng| {
        let (body, _) = announce_body(rng);
        let status = rng.pick(&[200, 204, 301, 500]);
        let (mut bytes, _) = response(rng, status, &body);
        mutate(rng, &mut bytes);
        let sizes = rng.some_bytes(10);
        let whole = check(&StreamInput::parse(&StreamInput::encode(0, 0, &sizes, &bytes)));
        refused += matches!(whole, Read::Failed(_)) as usize;
        let mut body = body;
        mutate(rng, &mut body);
        check_body(&body);
    });
    assert!(refused > 2_000, "only {refused} mutated responses were refused");
}

#[test]
fn random_bytes_never_break_the_reader() {
    run_cases("random tracker bytes", 0x5eed_0103, 20_000, |rng| {
        let mut input = rng.some_bytes(300);
        if rng.one_in(2) {
            // Past the stream header, a plausible status line.
            let at = input
                .len()
                .min(6 + (input.get(5).copied().unwrap_or(0) % 33) as usize);
            input.splice(at..at, b"HTTP/1.1 200 OK\r\n".iter().copied());
        }
        let _ = check(&StreamInput::parse(&input));
    });
}

#[test]
fn valid_scrape_bodies_give_each_hash_its_figures() {
    run_cases("valid scrape bodies", 0x5eed_0104, 10_000, |rng| {
        let hashes: Vec<InfoHash> = (0..1 + rng.below(5))
            .map(|_| InfoHash(rng.bytes(20).try_into().unwrap()))
            .collect();
        let mut files: BTreeMap<&[u8], Vec<u8>> = BTreeMap::new();
        let mut want = vec![ScrapeStats::default(); hashes.len()];
        for (hash, stats) in hashes.iter().zip(&mut want) {
            if rng.one_in(3) {
                continue; // the tracker does not know it: zeros
            }
            *stats = ScrapeStats {
                seeders: rng.u32(),
                completed: rng.u32(),
                leechers: rng.u32(),
            };
            let figures: BTreeMap<&[u8], Vec<u8>> = [
                (&b"complete"[..], format!("i{}e", stats.seeders).into_bytes()),
                (&b"downloaded"[..], format!("i{}e", stats.completed).into_bytes()),
                (&b"incomplete"[..], format!("i{}e", stats.leechers).into_bytes()),
            ]
            .into();
            files.insert(&hash.0, dict(&figures));
        }
        let stranger = [0xee; 20];
        files.insert(&stranger, b"d8:completei1ee".to_vec());
        let body = dict(&[(&b"files"[..], dict(&files))].into());
        assert_eq!(parse_scrape(&body, &hashes), Ok(want));
    });
}
