//! HTTP trackers, sans-IO: the GET request and the bencoded announce and scrape
//! bodies. The response itself is read by [`crate::http::ResponseReader`].
//!
//! Bodies are read with the lenient [`crate::bencode`] reader, as other clients read
//! them: keys in any order; for a repeated key, the first occurrence wins.

use std::fmt::Write;

use super::peers::PeerList;
use super::url::TrackerUrl;
use super::{clamp_interval, AnnounceRequest, AnnounceResponse, ScrapeStats, TrackerError, DEFAULT_INTERVAL};
use crate::bencode::{self, Dict, Limits, Value};
use crate::metainfo::InfoHash;

pub use crate::http::{HttpResponse, ResponseReader, MAX_HEADER_BYTES, MAX_RESPONSE_BYTES};

/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 3;
/// Nesting accepted in a tracker's bencoded body.
const MAX_BODY_DEPTH: usize = 8;

/// Percent-encodes binary values for a query string (RFC 3986 unreserved kept).
pub use crate::percent::encode_into as url_encode;

/// A GET request for `target` on the tracker at `url`, closing after the response.
pub fn get_request(url: &TrackerUrl, target: &str) -> Vec<u8> {
    format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: bitloop/{}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
        url.host_header(),
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

/// The announce GET request, ready to write to the socket.
pub fn announce_request(url: &TrackerUrl, request: &AnnounceRequest) -> Vec<u8> {
    let mut target = url.target.clone();
    target.push(if target.contains('?') { '&' } else { '?' });
    target.push_str("info_hash=");
    url_encode(&request.info_hash.0, &mut target);
    target.push_str("&peer_id=");
    url_encode(&request.peer_id.0, &mut target);
    let _ = write!(
        target,
        "&port={}&uploaded={}&downloaded={}&left={}&compact=1&key={:08x}",
        request.port, request.uploaded, request.downloaded, request.left, request.key
    );
    if let Some(event) = request.event.http_name() {
        let _ = write!(target, "&event={event}");
    }
    if let Some(numwant) = request.numwant {
        let _ = write!(target, "&numwant={numwant}");
    }
    if let Some(id) = &request.tracker_id {
        target.push_str("&trackerid=");
        url_encode(id, &mut target);
    }
    get_request(url, &target)
}

/// The scrape URL of an announce URL (BEP 48): the last path segment's leading
/// `announce` becomes `scrape`. `None` when the tracker does not follow that
/// convention (then it offers no scrape).
pub fn scrape_url(url: &TrackerUrl) -> Option<TrackerUrl> {
    let (path, query) = url
        .target
        .split_once('?')
        .map_or((url.target.as_str(), None), |(p, q)| (p, Some(q)));
    let slash = path.rfind('/')?;
    let last = &path[slash + 1..];
    let rest = last.strip_prefix("announce")?;
    let mut target = format!("{}scrape{rest}", &path[..=slash]);
    if let Some(query) = query {
        target.push('?');
        target.push_str(query);
    }
    Some(TrackerUrl {
        target,
        ..url.clone()
    })
}

/// The scrape GET request for `hashes` on a URL made by [`scrape_url`].
pub fn scrape_request(url: &TrackerUrl, hashes: &[InfoHash]) -> Vec<u8> {
    let mut target = url.target.clone();
    for (i, hash) in hashes.iter().enumerate() {
        let joiner = if i == 0 && !target.contains('?') { '?' } else { '&' };
        target.push(joiner);
        target.push_str("info_hash=");
        url_encode(&hash.0, &mut target);
    }
    get_request(url, &target)
}

/// The body's top-level dictionary (bytes after it are ignored, as other clients do).
fn body_dict(body: &[u8]) -> Result<Dict<'_>, TrackerError> {
    let limits = Limits {
        max_depth: MAX_BODY_DEPTH,
        ..Limits::default()
    };
    match bencode::decode_prefix(body, limits) {
        Ok((Value::Dict(dict), _)) => Ok(dict),
        Ok(_) => Err(malformed("body is not a bencoded dictionary")),
        Err(e) => Err(malformed(e.to_string())),
    }
}

fn malformed(why: impl Into<String>) -> TrackerError {
    TrackerError::Malformed(why.into())
}

fn failure(dict: &Dict<'_>) -> Option<TrackerError> {
    let why = dict.bytes(b"failure reason")?;
    Some(TrackerError::Failure(String::from_utf8_lossy(why).into_owned()))
}

/// A count the tracker reports (seeders, leechers): negative or huge reads as none.
fn count(dict: &Dict<'_>, key: &[u8]) -> Option<u32> {
    dict.int(key).and_then(|n| u32::try_from(n).ok())
}

/// Parses a scrape body: figures for each requested hash, in `hashes` order (a hash
/// the tracker does not know gets zeros).
pub fn parse_scrape(body: &[u8], hashes: &[InfoHash]) -> Result<Vec<ScrapeStats>, TrackerError> {
    let dict = body_dict(body)?;
    if let Some(error) = failure(&dict) {
        return Err(error);
    }
    let mut stats = vec![ScrapeStats::default(); hashes.len()];
    if let Some(files) = dict.dict(b"files") {
        for (at, hash) in hashes.iter().enumerate() {
            if let Some(figures) = files.dict(&hash.0) {
                stats[at] = ScrapeStats {
                    seeders: count(figures, b"complete").unwrap_or(0),
                    completed: count(figures, b"downloaded").unwrap_or(0),
                    leechers: count(figures, b"incomplete").unwrap_or(0),
                };
            }
        }
    }
    Ok(stats)
}

/// Seconds from a tracker's interval field (negative counts as 0, then clamped).
fn seconds(n: i64) -> u64 {
    n.max(0) as u64
}

/// Parses a bencoded announce response body (the one parse; its peer list is the
/// only peer-list allocation).
pub fn parse_announce(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let dict = body_dict(body)?;
    if let Some(error) = failure(&dict) {
        return Err(error);
    }
    let text = |key: &[u8]| dict.bytes(key).map(|b| String::from_utf8_lossy(b).into_owned());
    let mut response = AnnounceResponse {
        interval: dict
            .int(b"interval")
            .map_or(DEFAULT_INTERVAL, |n| clamp_interval(seconds(n))),
        min_interval: dict.int(b"min interval").map(|n| clamp_interval(seconds(n))),
        tracker_id: dict.bytes(b"tracker id").map(<[u8]>::to_vec),
        complete: count(&dict, b"complete"),
        incomplete: count(&dict, b"incomplete"),
        warning: text(b"warning message"),
        peers: Vec::new(),
    };
    let compact_v4 = dict.bytes(b"peers").unwrap_or_default();
    let compact_v6 = dict.bytes(b"peers6").unwrap_or_default();
    // The original dictionary model: [{ip, port, peer id}, ...].
    let dictionary_peers = dict.list(b"peers").unwrap_or_default();
    let mut peers = PeerList::with_room(compact_v4, compact_v6, dictionary_peers.len());
    peers.add_compact_v4(compact_v4).map_err(malformed)?;
    peers.add_compact_v6(compact_v6).map_err(malformed)?;
    for peer in dictionary_peers.iter().filter_map(Value::as_dict) {
        let ip = peer.str(b"ip").and_then(|t| t.parse().ok());
        let port = peer.int(b"port").and_then(|p| u16::try_from(p).ok());
        if let (Some(ip), Some(port)) = (ip, port) {
            peers.push(std::net::SocketAddr::new(ip, port));
        }
    }
    response.peers = peers.into_vec();
    if let Some(min) = response.min_interval {
        response.interval = response.interval.max(min);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metainfo::InfoHash;
    use crate::tracker::{AnnounceEvent, PeerId};

    fn request() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash([
                0xc6, b'R', 0x9b, 0, b' ', b'~', 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
            ]),
            peer_id: PeerId(*b"-BL0001-abcdefghijkl"),
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: AnnounceEvent::Started,
            numwant: Some(50),
            key: 0xdead_beef,
            tracker_id: Some(b"t 1".to_vec()),
        }
    }

    #[test]
    fn request_encodes_binary_values_and_every_field() {
        let url = TrackerUrl::parse("http://127.0.0.1:6969/announce?passkey=x").unwrap();
        let text = String::from_utf8(announce_request(&url, &request())).unwrap();
        assert!(
            text.starts_with(
                "GET /announce?passkey=x&info_hash=%C6R%9B%00%20~%01%02%03%04%05%06%07%08%09%0A%0B%0C%0D%0E\
             &peer_id=-BL0001-abcdefghijkl&port=6881&uploaded=1&downloaded=2&left=3&compact=1&key=deadbeef\
             &event=started&numwant=50&trackerid=t%201 HTTP/1.1\r\n"
            ),
            "{text}"
        );
        assert!(text.contains("\r\nHost: 127.0.0.1:6969\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn announce_body_compact_dictionary_and_v6_peers() {
        let body = b"d8:completei5e10:incompletei3e8:intervali900e12:min intervali60e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x7f\x00\x00\x02\x1a\xe26:peers618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe310:tracker id2:ab15:warning message4:careee";
        let r = parse_announce(&body[..body.len() - 1]).unwrap();
        assert_eq!(r.interval, Duration::from_secs(900));
        assert_eq!(r.min_interval, Some(Duration::from_secs(60)));
        assert_eq!((r.complete, r.incomplete), (Some(5), Some(3)));
        assert_eq!(r.tracker_id.as_deref(), Some(&b"ab"[..]));
        assert_eq!(r.warning.as_deref(), Some("care"));
        let peers: Vec<String> = r.peers.iter().map(|p| p.to_string()).collect();
        assert_eq!(peers, ["127.0.0.1:6881", "127.0.0.2:6882", "[::1]:6883"]);

        let dict = b"d8:intervali10e5:peersld2:ip9:127.0.0.57:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti7000eed2:ip4:host4:porti1eeee";
        let r = parse_announce(dict).unwrap();
        assert_eq!(r.peers, vec!["127.0.0.5:7000".parse().unwrap()]);
        assert_eq!(
            r.interval,
            super::super::MIN_INTERVAL,
            "10 s is clamped up to the minimum"
        );
    }

    #[test]
    fn scrape_urls_and_bodies() {
        let url = |s: &str| TrackerUrl::parse(s).unwrap();
        assert_eq!(scrape_url(&url("http://t:1/announce")).unwrap().target, "/scrape");
        assert_eq!(
            scrape_url(&url("http://t:1/x/announce.php?k=1")).unwrap().target,
            "/x/scrape.php?k=1"
        );
        assert!(scrape_url(&url("http://t:1/a")).is_none());
        assert!(scrape_url(&url("http://t:1/announce/x")).is_none());
        let hashes = [InfoHash([b'a'; 20]), InfoHash([b'b'; 20])];
        let request = String::from_utf8(scrape_request(&url("http://t:1/scrape"), &hashes)).unwrap();
        assert!(request.starts_with(
            "GET /scrape?info_hash=aaaaaaaaaaaaaaaaaaaa&info_hash=bbbbbbbbbbbbbbbbbbbb HTTP/1.1"
        ));
        let body = b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei3e10:downloadedi7e10:incompletei2eeee";
        let stats = parse_scrape(body, &hashes).unwrap();
        assert_eq!(
            stats,
            [
                ScrapeStats {
                    seeders: 3,
                    completed: 7,
                    leechers: 2
                },
                ScrapeStats::default()
            ]
        );
        assert!(parse_scrape(b"d14:failure reason2:noe", &hashes).is_err());
        assert!(parse_scrape(b"garbage", &hashes).is_err());
    }

    #[test]
    fn unsorted_and_repeated_keys_are_read_as_other_clients_read_them() {
        // Keys out of order (as some tracker software sends them), a repeated key
        // (the first wins) and a newline after the dictionary.
        let body = b"d8:intervali900e5:peers6:\x7f\x00\x00\x01\x1a\xe18:completei2e8:intervali60ee\n";
        let r = parse_announce(body).unwrap();
        assert_eq!(r.interval, Duration::from_secs(900));
        assert_eq!(r.complete, Some(2));
        assert_eq!(r.peers, vec!["127.0.0.1:6881".parse().unwrap()]);
        let scrape = b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad10:incompletei2e8:completei3eeee";
        let stats = parse_scrape(scrape, &[InfoHash([b'a'; 20])]).unwrap();
        assert_eq!((stats[0].seeders, stats[0].leechers), (3, 2));
    }

    #[test]
    fn failure_reason_and_bad_bodies() {
        assert_eq!(
            parse_announce(b"d14:failure reason9:forbiddene"),
            Err(TrackerError::Failure("forbidden".into()))
        );
        for bad in [
            &b"le"[..],
            b"d5:peers5:abcdee",
            b"not bencode",
            b"d8:intervali9",
            b"",
        ] {
            assert!(
                matches!(parse_announce(bad), Err(TrackerError::Malformed(_))),
                "{bad:?}"
            );
        }
    }
}
