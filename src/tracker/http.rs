//! HTTP trackers, sans-IO: the GET request, a bounded HTTP/1.1 response reader, and
//! the bencoded announce body.
//!
//! The reader is fed bytes as they arrive and answers "need more" (`Ok(None)`), a
//! complete response, or an error. It handles `Content-Length`, chunked bodies and
//! bodies that end when the server closes, and refuses anything larger than
//! [`MAX_RESPONSE_BYTES`].

use std::fmt::Write;

use bendy::decoding::{Decoder, Object};

use super::peers::PeerList;
use super::url::TrackerUrl;
use super::{clamp_interval, AnnounceRequest, AnnounceResponse, ScrapeStats, TrackerError, DEFAULT_INTERVAL};
use crate::metainfo::InfoHash;

/// Largest response (headers and body) accepted from a tracker.
pub const MAX_RESPONSE_BYTES: usize = 512 * 1024;
/// Largest header block accepted.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 3;
/// Nesting accepted in a tracker's bencoded body.
const MAX_BODY_DEPTH: usize = 8;

/// Percent-encodes binary values for a query string (RFC 3986 unreserved kept).
pub use crate::percent::encode_into as url_encode;

/// A GET request for `target` on the tracker at `url`, closing after the response.
fn get_request(url: &TrackerUrl, target: &str) -> Vec<u8> {
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

/// Parses a scrape body: figures for each requested hash, in `hashes` order (a hash
/// the tracker does not know gets zeros).
pub fn parse_scrape(body: &[u8], hashes: &[InfoHash]) -> Result<Vec<ScrapeStats>, TrackerError> {
    let bendy_error =
        |e: bendy::decoding::Error| malformed(e.to_string().lines().next().unwrap_or_default().to_string());
    let mut decoder = Decoder::new(body).with_max_depth(MAX_BODY_DEPTH);
    let Some(Object::Dict(mut dict)) = decoder.next_object().map_err(bendy_error)? else {
        return Err(malformed("scrape body is not a bencoded dictionary"));
    };
    let mut stats = vec![ScrapeStats::default(); hashes.len()];
    while let Some((key, value)) = dict.next_pair().map_err(bendy_error)? {
        match (key, value) {
            (b"failure reason", Object::Bytes(why)) => {
                return Err(TrackerError::Failure(String::from_utf8_lossy(why).into_owned()))
            }
            (b"files", Object::Dict(mut files)) => {
                while let Some((hash, entry)) = files.next_pair().map_err(bendy_error)? {
                    let Some(at) = hashes.iter().position(|h| h.0[..] == *hash) else {
                        continue;
                    };
                    let Object::Dict(mut figures) = entry else {
                        continue;
                    };
                    while let Some((name, value)) = figures.next_pair().map_err(bendy_error)? {
                        let Object::Integer(n) = value else { continue };
                        let n = n.parse::<u32>().unwrap_or(0);
                        match name {
                            b"complete" => stats[at].seeders = n,
                            b"downloaded" => stats[at].completed = n,
                            b"incomplete" => stats[at].leechers = n,
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(stats)
}

/// A complete HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// The `Location` header, for redirects.
    pub location: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Reads one HTTP/1.1 response from bytes fed in any chunking.
#[derive(Debug, Default)]
pub struct ResponseReader {
    buffer: Vec<u8>,
    head: Option<(u16, Option<String>, usize, Framing)>,
}

fn malformed(why: impl Into<String>) -> TrackerError {
    TrackerError::Malformed(why.into())
}

impl ResponseReader {
    pub fn new() -> ResponseReader {
        ResponseReader::default()
    }

    /// Adds received bytes; returns the response once it is complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<HttpResponse>, TrackerError> {
        if self.buffer.len() + bytes.len() > MAX_RESPONSE_BYTES {
            return Err(TrackerError::TooLarge);
        }
        self.buffer.extend_from_slice(bytes);
        self.try_complete(false)
    }

    /// The server closed the connection: a close-delimited body ends here; anything
    /// else incomplete is truncated.
    pub fn finish(&mut self) -> Result<HttpResponse, TrackerError> {
        self.try_complete(true)?
            .ok_or_else(|| malformed("connection closed before the response was complete"))
    }

    fn try_complete(&mut self, eof: bool) -> Result<Option<HttpResponse>, TrackerError> {
        if self.head.is_none() {
            let Some(end) = find(&self.buffer, b"\r\n\r\n") else {
                if self.buffer.len() > MAX_HEADER_BYTES {
                    return Err(TrackerError::TooLarge);
                }
                return Ok(None);
            };
            let head = parse_head(&self.buffer[..end])?;
            if (100..200).contains(&head.0) {
                // 100 Continue and friends: skip and read the real response.
                self.buffer.drain(..end + 4);
                return self.try_complete(eof);
            }
            self.head = Some((head.0, head.1, end + 4, head.2));
        }
        let (status, location, body_start, framing) = self.head.as_ref().expect("parsed above");
        let body = &self.buffer[*body_start..];
        let body = match framing {
            Framing::Length(n) if body.len() >= *n => body[..*n].to_vec(),
            Framing::Length(_) => return Ok(None),
            Framing::Chunked => match dechunk(body)? {
                Some(body) => body,
                None => return Ok(None),
            },
            Framing::UntilClose if eof => body.to_vec(),
            Framing::UntilClose => return Ok(None),
        };
        Ok(Some(HttpResponse {
            status: *status,
            location: location.clone(),
            body,
        }))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Status line and headers: (status, Location, framing).
fn parse_head(head: &[u8]) -> Result<(u16, Option<String>, Framing), TrackerError> {
    let head = std::str::from_utf8(head).map_err(|_| malformed("response headers are not text"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(malformed(format!("not an HTTP/1.x response: {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| malformed(format!("bad status line {status_line:?}")))?;
    let (mut length, mut chunked, mut location) = (None, false, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(malformed(format!("bad header line {line:?}")));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let n: usize = value.parse().map_err(|_| malformed("bad Content-Length"))?;
                if n > MAX_RESPONSE_BYTES {
                    return Err(TrackerError::TooLarge);
                }
                length = Some(n);
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "location" => location = Some(value.to_string()),
            _ => {}
        }
    }
    let framing = if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else if status == 204 || status == 304 {
        Framing::Length(0)
    } else {
        Framing::UntilClose
    };
    Ok((status, location, framing))
}

/// Decodes a complete chunked body, or `None` if more bytes are needed.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, TrackerError> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(data, b"\r\n") else {
            return if data.len() > 1024 {
                Err(malformed("chunk size line too long"))
            } else {
                Ok(None)
            };
        };
        let line = std::str::from_utf8(&data[..line_end]).map_err(|_| malformed("bad chunk size"))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| malformed(format!("bad chunk size {size_text:?}")))?;
        if size > MAX_RESPONSE_BYTES {
            return Err(TrackerError::TooLarge);
        }
        data = &data[line_end + 2..];
        if size == 0 {
            // Trailers, if any, end with an empty line.
            return Ok(find(data, b"\r\n").map(|_| body));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        if &data[size..size + 2] != b"\r\n" {
            return Err(malformed("chunk not followed by CRLF"));
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Parses a bencoded announce response body (the one parse; its peer list is the
/// only peer-list allocation).
pub fn parse_announce(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let bendy_error =
        |e: bendy::decoding::Error| malformed(e.to_string().lines().next().unwrap_or_default().to_string());
    let mut decoder = Decoder::new(body).with_max_depth(MAX_BODY_DEPTH);
    let Some(Object::Dict(mut dict)) = decoder.next_object().map_err(bendy_error)? else {
        return Err(malformed("body is not a bencoded dictionary"));
    };
    let mut response = AnnounceResponse {
        interval: DEFAULT_INTERVAL,
        min_interval: None,
        tracker_id: None,
        complete: None,
        incomplete: None,
        warning: None,
        peers: Vec::new(),
    };
    let mut failure = None;
    let (mut compact_v4, mut compact_v6): (&[u8], &[u8]) = (&[], &[]);
    let mut dictionary_peers = Vec::new();
    while let Some((key, value)) = dict.next_pair().map_err(bendy_error)? {
        match (key, value) {
            (b"failure reason", Object::Bytes(why)) => {
                failure = Some(String::from_utf8_lossy(why).into_owned())
            }
            (b"warning message", Object::Bytes(why)) => {
                response.warning = Some(String::from_utf8_lossy(why).into_owned())
            }
            (b"interval", Object::Integer(n)) => response.interval = clamp_interval(seconds(n)?),
            (b"min interval", Object::Integer(n)) => {
                response.min_interval = Some(clamp_interval(seconds(n)?))
            }
            (b"tracker id", Object::Bytes(id)) => response.tracker_id = Some(id.to_vec()),
            (b"complete", Object::Integer(n)) => response.complete = n.parse().ok(),
            (b"incomplete", Object::Integer(n)) => response.incomplete = n.parse().ok(),
            (b"peers", Object::Bytes(compact)) => compact_v4 = compact,
            (b"peers", Object::List(mut list)) => {
                // The original dictionary model: [{ip, port, peer id}, ...].
                while let Some(item) = list.next_object().map_err(bendy_error)? {
                    if dictionary_peers.len() >= super::peers::MAX_PEERS_PER_RESPONSE {
                        continue;
                    }
                    if let Object::Dict(mut peer) = item {
                        let (mut ip, mut port) = (None, None);
                        while let Some((k, v)) = peer.next_pair().map_err(bendy_error)? {
                            match (k, v) {
                                (b"ip", Object::Bytes(text)) => {
                                    ip = std::str::from_utf8(text).ok().and_then(|t| t.parse().ok())
                                }
                                (b"port", Object::Integer(p)) => port = p.parse::<u16>().ok(),
                                _ => {}
                            }
                        }
                        if let (Some(ip), Some(port)) = (ip, port) {
                            dictionary_peers.push(std::net::SocketAddr::new(ip, port));
                        }
                    }
                }
            }
            (b"peers6", Object::Bytes(compact)) => compact_v6 = compact,
            _ => {}
        }
    }
    drop(dict);
    if let Some(why) = failure {
        return Err(TrackerError::Failure(why));
    }
    let mut peers = PeerList::with_room(compact_v4, compact_v6, dictionary_peers.len());
    peers.add_compact_v4(compact_v4).map_err(malformed)?;
    peers.add_compact_v6(compact_v6).map_err(malformed)?;
    for peer in dictionary_peers {
        peers.push(peer);
    }
    response.peers = peers.into_vec();
    if let Some(min) = response.min_interval {
        response.interval = response.interval.max(min);
    }
    Ok(response)
}

fn seconds(text: &str) -> Result<u64, TrackerError> {
    let n: i64 = text
        .parse()
        .map_err(|_| malformed(format!("bad interval {text}")))?;
    Ok(n.max(0) as u64)
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

    fn read_all(chunks: &[&[u8]], eof: bool) -> Result<Option<HttpResponse>, TrackerError> {
        let mut reader = ResponseReader::new();
        let mut last = None;
        for chunk in chunks {
            last = reader.push(chunk)?;
        }
        if last.is_none() && eof {
            return reader.finish().map(Some);
        }
        Ok(last)
    }

    #[test]
    fn content_length_chunked_and_close_delimited_bodies() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        // Every split point gives the same result.
        for at in 0..full.len() {
            let r = read_all(&[&full[..at], &full[at..]], false).unwrap().unwrap();
            assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        }
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;ext=1\r\nlo\r\n0\r\n\r\n";
        for at in 0..chunked.len() {
            let r = read_all(&[&chunked[..at], &chunked[at..]], false)
                .unwrap()
                .unwrap();
            assert_eq!(r.body, b"hello");
        }
        let close = b"HTTP/1.0 200 OK\r\n\r\nhello";
        assert_eq!(read_all(&[close], false).unwrap(), None);
        assert_eq!(read_all(&[close], true).unwrap().unwrap().body, b"hello");
        let continued =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n";
        let r = read_all(&[continued], false).unwrap().unwrap();
        assert_eq!((r.status, r.location.as_deref()), (302, Some("/x")));
    }

    #[test]
    fn broken_responses_are_errors() {
        assert!(read_all(&[b"SSH-2.0-OpenSSH\r\n\r\n"], false).is_err());
        assert!(read_all(&[b"HTTP/1.1 abc OK\r\n\r\n"], false).is_err());
        assert!(read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"], true).is_err());
        assert!(read_all(
            &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
            false
        )
        .is_err());
        assert_eq!(
            read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n"], false),
            Err(TrackerError::TooLarge)
        );
        let endless = vec![b'a'; MAX_HEADER_BYTES + 10];
        assert_eq!(read_all(&[&endless], false), Err(TrackerError::TooLarge));
        let mut reader = ResponseReader::new();
        reader.push(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        let big = vec![0u8; MAX_RESPONSE_BYTES];
        assert_eq!(reader.push(&big), Err(TrackerError::TooLarge));
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
