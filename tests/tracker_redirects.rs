//! Redirects (issue 16, fix 8): every form of `Location` is resolved against the
//! current URL and followed; every hostile one is refused before anything more is
//! sent, so nothing that is not a URL ever reaches a request line.

mod common;

use std::net::TcpListener;

use bitloop::metainfo::InfoHash;
use bitloop::tracker::{AnnounceEvent, AnnounceResponse, TrackerError};
use common::http_server::{response, serve_on, tracker_body};
use common::trackers::{announce_and_wait, config, finish, reactor, request, Driver};

/// Announces to `/dir/announce` on a server that first answers `302` with
/// `location` (built from the server's port), then 200. Returns the result and the
/// request lines the server saw.
fn redirected(location: impl Fn(u16) -> Vec<u8>) -> (Result<AnnounceResponse, TrackerError>, Vec<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut first = b"HTTP/1.1 302 Found\r\nLocation: ".to_vec();
    first.extend(location(port));
    first.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    let ok = response("200 OK", "", &tracker_body(&["127.0.0.1:6881".parse().unwrap()]));
    let server = serve_on(listener, vec![first, ok], None);
    let mut rx = reactor();
    let mut driver = Driver::new(config());
    let url = format!("http://127.0.0.1:{port}/dir/announce?k=1");
    let result = announce_and_wait(
        &mut rx,
        &mut driver,
        &url,
        request(InfoHash([1; 20]), 6881, AnnounceEvent::Started, 1),
    );
    finish(rx, driver);
    (result, server.requests())
}

#[test]
fn every_form_of_location_is_followed() {
    let cases: [(&str, &str); 7] = [
        ("http://127.0.0.1:{port}/abs?x=1", "GET /abs?x=1&info_hash="),
        (
            "//127.0.0.1:{port}/scheme-relative",
            "GET /scheme-relative?info_hash=",
        ),
        ("/absolute/path?k=2", "GET /absolute/path?k=2&info_hash="),
        ("relative/x", "GET /dir/relative/x?info_hash="),
        ("?only=query", "GET /dir/announce?only=query&info_hash="),
        ("../up/./there", "GET /up/there?info_hash="),
        ("/frag#ignored", "GET /frag?info_hash="),
    ];
    for (location, expected) in cases {
        let (result, requests) =
            redirected(|port| location.replace("{port}", &port.to_string()).into_bytes());
        assert_eq!(result.map(|r| r.peers.len()), Ok(1), "{location}: {requests:?}");
        assert_eq!(requests.len(), 2, "{location}");
        assert!(requests[0].starts_with("GET /dir/announce?k=1&info_hash="));
        assert!(
            requests[1].starts_with(expected) && requests[1].ends_with(" HTTP/1.1"),
            "{location} → {:?}",
            requests[1]
        );
    }
}

#[test]
fn hostile_locations_are_refused_and_nothing_more_is_sent() {
    let hostile: [&[u8]; 13] = [
        b"/a b",
        b"/a\tb",
        b"/a\x00b",
        b"/a\x7fb",
        b"/caf\xc3\xa9",
        b"/a\rX-Injected: 1",
        b"javascript:alert(1)",
        b"ftp://127.0.0.1/x",
        b"udp://127.0.0.1:6969",
        b"//evil host/x",
        b"//127.0.0.1:99999/x",
        b"http://[::1/x",
        b"not a url at all",
    ];
    for location in hostile {
        let (result, requests) = redirected(|_| location.to_vec());
        let shown = String::from_utf8_lossy(location);
        assert!(
            matches!(result, Err(TrackerError::BadUrl(_) | TrackerError::Malformed(_))),
            "{shown:?}: {result:?}"
        );
        assert_eq!(
            requests.len(),
            1,
            "{shown:?}: a second request went out: {requests:?}"
        );
    }
}

#[test]
fn redirects_are_bounded() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let again = response("301 Moved", "Location: ./announce\r\n", b"");
    let server = serve_on(listener, vec![again; 5], None);
    let mut rx = reactor();
    let mut driver = Driver::new(config());
    let result = announce_and_wait(
        &mut rx,
        &mut driver,
        &format!("http://127.0.0.1:{port}/announce"),
        request(InfoHash([1; 20]), 6881, AnnounceEvent::Started, 1),
    );
    finish(rx, driver);
    assert_eq!(result, Err(TrackerError::TooManyRedirects));
    assert_eq!(
        server.requests().len(),
        4,
        "the first request and three redirects"
    );
}
