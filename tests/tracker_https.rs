//! HTTPS trackers (issue 20): announced to over TLS on loopback with a test CA the
//! test makes, peers returned; a certificate the client cannot trust (another CA,
//! expired, another name) is a clear error naming the tracker and what is wrong,
//! soon, not a hang, and the other trackers go on.

#![cfg(feature = "https")]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bitloop::client::TrackerConfig;
use bitloop::metainfo::InfoHash;
use bitloop::tracker::{AnnounceEvent, TrackerError};
use common::http_server::{response, serve, tracker_body, Seen};
use common::https_tracker::{serve_https, Leaf, TestPki};
use common::trackers::{announce_and_wait, config, finish, reactor, request, wait_for, Driver};

fn trusting(pki: &TestPki) -> TrackerConfig {
    TrackerConfig {
        ca_file: Some(pki.ca_file.clone()),
        ..config()
    }
}

fn peers() -> Vec<SocketAddr> {
    vec!["127.0.0.1:6881".parse().unwrap(), "[::1]:6882".parse().unwrap()]
}

#[test]
fn an_https_tracker_is_announced_to_and_returns_peers() {
    let pki = TestPki::new(Leaf::Good);
    let server = serve_https(&pki, vec![response("200 OK", "", &tracker_body(&peers()))]);
    let mut rx = reactor();
    let mut driver = Driver::new(trusting(&pki));
    let url = format!("https://127.0.0.1:{}/announce", server.addr.port());
    let result = announce_and_wait(
        &mut rx,
        &mut driver,
        &url,
        request(InfoHash([7; 20]), 6881, AnnounceEvent::Started, 1),
    );
    finish(rx, driver);
    assert_eq!(result.map(|r| r.peers), Ok(peers()));
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].starts_with("GET /announce?info_hash="),
        "{requests:?}"
    );
}

/// Announces to an HTTPS tracker whose certificate is `leaf` from `server_pki` while
/// the client trusts `client_pki`, and to a plain tracker at the same time.
fn refused(server_pki: &TestPki, client_pki: &TestPki) -> (TrackerError, u16) {
    let tls = serve_https(server_pki, vec![response("200 OK", "", &tracker_body(&peers()))]);
    let plain = serve(vec![response("200 OK", "", &tracker_body(&peers()))]);
    let mut rx = reactor();
    let mut driver = Driver::new(trusting(client_pki));
    let started = Instant::now();
    let req = request(InfoHash([7; 20]), 6881, AnnounceEvent::Started, 1);
    let https = format!("https://127.0.0.1:{}/announce", tls.addr.port());
    let http = format!("http://127.0.0.1:{}/announce", plain.addr.port());
    let bad = driver.trackers.announce(&mut rx, &https, req.clone());
    let good = driver.trackers.announce(&mut rx, &http, req);
    let bad = wait_for(&mut rx, &mut driver, bad, Duration::from_secs(10));
    let good = wait_for(&mut rx, &mut driver, good, Duration::from_secs(10));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    finish(rx, driver);
    assert_eq!(good.map(|r| r.peers.len()), Ok(2), "the other tracker goes on");
    let port = tls.addr.port();
    let seen = tls.finish();
    assert!(
        matches!(seen.as_slice(), [Seen::Failed(_)]),
        "no request may reach a server we do not trust: {seen:?}"
    );
    (bad.unwrap_err(), port)
}

#[test]
fn a_certificate_from_another_ca_is_a_clear_error() {
    let (error, port) = refused(&TestPki::new(Leaf::Good), &TestPki::new(Leaf::Good));
    let text = error.to_string();
    assert!(matches!(error, TrackerError::Tls(_)), "{error:?}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("unknown authority"), "{text}");
}

#[test]
fn an_expired_certificate_and_one_for_another_name_are_named_as_such() {
    let expired = TestPki::new(Leaf::Expired);
    let (error, _) = refused(&expired, &expired);
    assert!(error.to_string().contains("expired"), "{error}");
    let other = TestPki::new(Leaf::OtherName);
    let (error, _) = refused(&other, &other);
    assert!(error.to_string().contains("another name"), "{error}");
}

#[test]
fn http_may_redirect_to_https_but_not_back() {
    let pki = TestPki::new(Leaf::Good);
    let tls = serve_https(&pki, vec![response("200 OK", "", &tracker_body(&peers()))]);
    let location = format!("Location: https://127.0.0.1:{}/secure\r\n", tls.addr.port());
    let plain = serve(vec![response("302 Found", &location, b"")]);
    let mut rx = reactor();
    let mut driver = Driver::new(trusting(&pki));
    let req = request(InfoHash([7; 20]), 6881, AnnounceEvent::Started, 1);
    let url = format!("http://127.0.0.1:{}/announce", plain.addr.port());
    let up = announce_and_wait(&mut rx, &mut driver, &url, req.clone());
    assert_eq!(up.map(|r| r.peers.len()), Ok(2));
    assert!(tls.requests()[0].starts_with("GET /secure?info_hash="));
    plain.finish();

    let plain = serve(vec![response("200 OK", "", &tracker_body(&peers()))]);
    let location = format!("Location: http://127.0.0.1:{}/plain\r\n", plain.addr.port());
    let tls = serve_https(&pki, vec![response("302 Found", &location, b"")]);
    let url = format!("https://127.0.0.1:{}/announce?passkey=secret", tls.addr.port());
    let down = announce_and_wait(&mut rx, &mut driver, &url, req);
    assert!(
        matches!(down, Err(TrackerError::BadUrl(ref why)) if why.contains("plain HTTP")),
        "{down:?}"
    );
    finish(rx, driver);
    assert!(plain.requests().is_empty(), "the passkey never left TLS");
    tls.finish();
}
