//! A tracker's HTTP response as the announce client receives it: pushed to
//! `tracker::http::ResponseReader` read by read, `finish` at the close, the body
//! handed to the announce and scrape parsers. One check, used by the `tracker`
//! fuzz target and by the normal suite (which includes this file next to
//! `stream.rs`, as `peer_stream.rs` is).
//!
//! What it asserts, for any bytes:
//! - nothing panics;
//! - a complete response has a final status (200..600) and a body no larger than
//!   [`MAX_RESPONSE_BYTES`];
//! - the response (or the error) is the same whatever the chunking;
//! - a body that parses as an announce has no peer with port 0 and no more than
//!   [`MAX_PEERS_PER_RESPONSE`] peers.

use bitloop::metainfo::InfoHash;
use bitloop::tracker::http::{
    parse_announce, parse_scrape, HttpResponse, ResponseReader, MAX_RESPONSE_BYTES,
};
use bitloop::tracker::peers::MAX_PEERS_PER_RESPONSE;
use bitloop::tracker::TrackerError;

use super::stream::{Chunking, StreamInput};

/// How reading one response ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// Complete before the connection closed.
    Complete(HttpResponse),
    /// Complete once the connection closed (`finish`).
    AtClose(HttpResponse),
    Failed(TrackerError),
}

/// Pushes `stream` to a fresh reader in `chunking`, then closes.
pub fn read_response(chunking: &Chunking, stream: &[u8]) -> Read {
    let mut reader = ResponseReader::new();
    for read in chunking.chunks(stream) {
        match reader.push(read) {
            Ok(None) => {}
            Ok(Some(response)) => return Read::Complete(response),
            Err(e) => return Read::Failed(e),
        }
    }
    match reader.finish() {
        Ok(response) => Read::AtClose(response),
        Err(e) => Read::Failed(e),
    }
}

/// Checks what the body parsers make of `body`.
pub fn check_body(body: &[u8]) {
    if let Ok(announce) = parse_announce(body) {
        assert!(
            announce.peers.len() <= MAX_PEERS_PER_RESPONSE,
            "{} peers",
            announce.peers.len()
        );
        assert!(announce.peers.iter().all(|p| p.port() != 0), "a peer with port 0");
        if let Some(min) = announce.min_interval {
            assert!(announce.interval >= min, "interval below min interval");
        }
    }
    let hashes = [InfoHash([0; 20]), InfoHash(*b"0123456789abcdefghij")];
    if let Ok(stats) = parse_scrape(body, &hashes) {
        assert_eq!(stats.len(), hashes.len(), "one figure set per requested hash");
    }
}

/// The whole check on one input (`param` and `flags` are unused); returns what
/// the stream in one read gave.
pub fn check(input: &StreamInput<'_>) -> Read {
    let chunked = read_response(&input.chunking, input.stream);
    let whole = read_response(&Chunking::whole(), input.stream);
    if let Read::Complete(response) | Read::AtClose(response) = &whole {
        assert!(
            (200..600).contains(&response.status),
            "status {}",
            response.status
        );
        assert!(response.body.len() <= MAX_RESPONSE_BYTES);
        check_body(&response.body);
    }
    assert_eq!(chunked, whole, "the chunking changed the response");
    check_body(input.stream);
    whole
}
