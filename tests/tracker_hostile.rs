//! Scripted fake trackers on loopback that misbehave in every way we know of. Each
//! case ends in a clear error (or, where the protocol allows, a retry that
//! succeeds); none panics, and the loop is empty afterwards.

mod common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::thread::JoinHandle;
use std::time::Duration;

use bitloop::metainfo::InfoHash;
use bitloop::tracker::{AnnounceEvent, TrackerError};
use common::bounded::join_within;
use common::http_server::{response, serve};
use common::trackers::{announce_and_wait, config, finish, reactor, request, Driver};

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/announce")
}

fn announce_http(
    responses: Vec<Vec<u8>>,
) -> (
    Result<bitloop::tracker::AnnounceResponse, TrackerError>,
    Vec<String>,
) {
    let server = serve(responses);
    let port = server.addr.port();
    let mut rx = reactor();
    let mut driver = Driver::new(config());
    let result = announce_and_wait(
        &mut rx,
        &mut driver,
        &url(port),
        request(InfoHash([1; 20]), 6881, AnnounceEvent::Started, 1),
    );
    finish(rx, driver);
    (result, server.requests())
}

fn ok_body(peers: &[u8]) -> Vec<u8> {
    let mut body = format!("d8:intervali1800e5:peers{}:", peers.len()).into_bytes();
    body.extend_from_slice(peers);
    body.push(b'e');
    body
}

#[test]
fn garbage_is_malformed() {
    let (result, _) = announce_http(vec![b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec()]);
    assert!(matches!(result, Err(TrackerError::Malformed(_))), "{result:?}");
}

#[test]
fn truncated_response_is_malformed() {
    let (result, _) = announce_http(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nd8:interval".to_vec()
    ]);
    assert!(
        matches!(result, Err(TrackerError::Malformed(ref why)) if why.contains("closed")),
        "{result:?}"
    );
}

#[test]
fn oversized_responses_are_refused() {
    let (result, _) = announce_http(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n".to_vec()
    ]);
    assert_eq!(result, Err(TrackerError::TooLarge));
    let mut endless = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    endless.extend(vec![b'x'; 2 << 20]);
    let (result, _) = announce_http(vec![endless]);
    assert_eq!(result, Err(TrackerError::TooLarge));
}

#[test]
fn failure_reason_is_reported() {
    let (result, _) = announce_http(vec![response("200 OK", "", b"d14:failure reason11:banned peere")]);
    assert_eq!(result, Err(TrackerError::Failure("banned peer".into())));
}

#[test]
fn chunked_body_is_decoded() {
    let body = ok_body(&[127, 0, 0, 1, 0x1a, 0xe1]);
    let (first, rest) = body.split_at(7);
    let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    chunked.extend(format!("{:x}\r\n", first.len()).bytes());
    chunked.extend_from_slice(first);
    chunked.extend(format!("\r\n{:x}\r\n", rest.len()).bytes());
    chunked.extend_from_slice(rest);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let (result, _) = announce_http(vec![chunked]);
    assert_eq!(
        result.unwrap().peers,
        vec!["127.0.0.1:6881".parse::<SocketAddr>().unwrap()]
    );
}

#[test]
fn bad_status_and_bad_body() {
    let (result, _) = announce_http(vec![response("500 Internal Server Error", "", b"oops")]);
    assert_eq!(result, Err(TrackerError::Status(500)));
    let (result, _) = announce_http(vec![response("200 OK", "", b"<html>not bencode</html>")]);
    assert!(matches!(result, Err(TrackerError::Malformed(_))), "{result:?}");
}

#[test]
fn a_redirect_is_followed_and_a_redirect_loop_is_cut() {
    let redirect = response("302 Found", "Location: /moved?x=1\r\n", b"");
    let (result, requests) = announce_http(vec![redirect.clone(), response("200 OK", "", &ok_body(&[]))]);
    assert!(result.is_ok(), "{result:?}");
    assert!(
        requests[1].starts_with("GET /moved?x=1&info_hash="),
        "{requests:?}"
    );

    let loop_to_self = response("302 Found", "Location: /announce\r\n", b"");
    let (result, requests) = announce_http(vec![loop_to_self; 4]);
    assert_eq!(result, Err(TrackerError::TooManyRedirects));
    assert_eq!(requests.len(), 4, "the first request and three redirects");
}

#[test]
fn a_tracker_that_never_answers_times_out() {
    // Accepted by the kernel's backlog and never answered: nobody calls accept.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut rx = reactor();
    let mut driver = Driver::new(bitloop::client::TrackerConfig {
        http_timeout: Duration::from_millis(500),
        ..config()
    });
    let started = std::time::Instant::now();
    let result = announce_and_wait(
        &mut rx,
        &mut driver,
        &url(port),
        request(InfoHash([1; 20]), 1, AnnounceEvent::Started, 1),
    );
    assert_eq!(result, Err(TrackerError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(3));
    finish(rx, driver);
    drop(listener);
}

#[test]
fn unsupported_and_bad_urls_are_clear_errors() {
    let mut rx = reactor();
    let mut driver = Driver::new(config());
    let req = request(InfoHash([1; 20]), 1, AnnounceEvent::Started, 1);
    let https = announce_and_wait(&mut rx, &mut driver, "https://127.0.0.1:1/a", req.clone());
    if cfg!(feature = "https") {
        // Tried, and refused by the closed port (or by missing roots, if any).
        assert!(
            matches!(https, Err(TrackerError::Io(_) | TrackerError::Tls(_))),
            "{https:?}"
        );
    } else {
        assert!(matches!(https, Err(TrackerError::BadUrl(ref why)) if why.contains("`https` feature")));
    }
    let bad = announce_and_wait(&mut rx, &mut driver, "gopher://x", req.clone());
    assert!(matches!(bad, Err(TrackerError::BadUrl(_))));
    let refused = announce_and_wait(&mut rx, &mut driver, "http://127.0.0.1:1/announce", req);
    assert!(matches!(refused, Err(TrackerError::Io(_))), "{refused:?}");
    finish(rx, driver);
}

// ---------------------------------------------------------------- UDP

/// A UDP tracker that answers each datagram with what `script` returns (nothing for
/// an empty list). It ends once no datagram arrived for a second, and returns how
/// many it received.
/// A scripted UDP tracker's thread ends 1 s after the last datagram (its read timeout).
const SERVER_ENDS: Duration = Duration::from_secs(10);

fn serve_udp(mut script: impl FnMut(&[u8]) -> Vec<Vec<u8>> + Send + 'static) -> (u16, JoinHandle<usize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let port = socket.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut received = 0;
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            for reply in script(&buf[..n]) {
                socket.send_to(&reply, from).unwrap();
            }
            received += 1;
        }
        received
    });
    (port, handle)
}

fn tid(datagram: &[u8]) -> [u8; 4] {
    datagram[12..16].try_into().unwrap()
}

fn connect_reply(tid: [u8; 4]) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 0];
    out.extend_from_slice(&tid);
    out.extend_from_slice(&0x1234_5678_9abc_def0u64.to_be_bytes());
    out
}

fn announce_reply(tid: [u8; 4], peers: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 1];
    out.extend_from_slice(&tid);
    out.extend_from_slice(&[0, 0, 7, 8, 0, 0, 0, 1, 0, 0, 0, 2]);
    out.extend_from_slice(peers);
    out
}

fn announce_udp(
    config: bitloop::client::TrackerConfig,
    port: u16,
) -> Result<bitloop::tracker::AnnounceResponse, TrackerError> {
    let mut rx = reactor();
    let mut driver = Driver::new(config);
    let url = format!("udp://127.0.0.1:{port}");
    let result = announce_and_wait(
        &mut rx,
        &mut driver,
        &url,
        request(InfoHash([2; 20]), 1, AnnounceEvent::Started, 1),
    );
    finish(rx, driver);
    result
}

#[test]
fn udp_wrong_transaction_ids_and_garbage_are_ignored() {
    // Replies by request kind (16 bytes: connect; 98: announce), so resends under
    // load get answers too.
    let (port, server) = serve_udp(|request| {
        let wrong = [tid(request)[0] ^ 0xff, 1, 2, 3];
        if request.len() == 16 {
            // Garbage, a reply with the wrong id, then the right one.
            vec![
                b"junk".to_vec(),
                connect_reply(wrong),
                connect_reply(tid(request)),
            ]
        } else {
            vec![
                announce_reply(wrong, &[9, 9, 9, 9, 0, 9]),
                announce_reply(tid(request), &[127, 0, 0, 1, 0x1a, 0xe1]),
            ]
        }
    });
    let result = announce_udp(config(), port).unwrap();
    assert_eq!(
        result.peers,
        vec!["127.0.0.1:6881".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(result.interval, Duration::from_secs(0x708));
    assert!(
        join_within(server, SERVER_ENDS, "the UDP tracker") >= 2,
        "a connect and an announce at least"
    );
}

#[test]
fn udp_error_reply_is_a_failure() {
    let (port, server) = serve_udp(|request| {
        let mut error = vec![0, 0, 0, 3];
        error.extend_from_slice(&tid(request));
        error.extend_from_slice(b"torrent not registered");
        vec![error]
    });
    assert_eq!(
        announce_udp(config(), port),
        Err(TrackerError::Failure("torrent not registered".into()))
    );
    join_within(server, SERVER_ENDS, "the UDP tracker");
}

#[test]
fn udp_tracker_that_never_answers_times_out_after_nine_tries() {
    let (port, server) = serve_udp(|_| Vec::new());
    let config = bitloop::client::TrackerConfig {
        udp_retry_base: Duration::from_millis(2),
        ..config()
    };
    let started = std::time::Instant::now();
    assert_eq!(announce_udp(config, port), Err(TrackerError::Timeout));
    // 2 ms · (2⁰ + … + 2⁸) = 1.022 s of waiting.
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        join_within(server, SERVER_ENDS, "the UDP tracker"),
        9,
        "the first try and eight retransmissions"
    );
}
