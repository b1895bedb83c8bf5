//! IPv6 announces (issue 20): a tracker whose name has both an IPv4 and an IPv6
//! address is announced to over each (libtorrent's once-per-family convention), so
//! it learns both our addresses and returns peers of both families, merged into one
//! result; a family that fails does not fail the announce; IPv6 literals work over
//! HTTP and UDP (BEP 15's 18-byte peers).

mod common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use bitloop::client::TrackerConfig;
use bitloop::dns::ResolverConfig;
use bitloop::metainfo::InfoHash;
use bitloop::tracker::AnnounceEvent;
use common::bounded::join_within;
use common::http_server::{response, serve_on, tracker_body};
use common::trackers::{announce_and_wait, config, finish, reactor, request, Driver};

/// Listeners on 127.0.0.1:P and [::1]:P, the same port P.
fn dual_listeners() -> (TcpListener, TcpListener) {
    for _ in 0..50 {
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        if let Ok(v6) = TcpListener::bind(("::1", port)) {
            return (v4, v6);
        }
    }
    panic!("no port free on both 127.0.0.1 and ::1 (does this host have IPv6 on loopback?)");
}

fn dual_config() -> TrackerConfig {
    TrackerConfig {
        resolver: ResolverConfig::from_texts(
            "127.0.0.1 dual.bitloop.test\n::1 dual.bitloop.test\n",
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        ),
        ..config()
    }
}

fn peer(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn a_dual_stack_tracker_is_announced_to_over_each_family_and_the_peers_merge() {
    let (v4, v6) = dual_listeners();
    let port = v4.local_addr().unwrap().port();
    let body4 = tracker_body(&[peer("127.0.0.1:6881"), peer("127.0.0.2:6881")]);
    let body6 = tracker_body(&[peer("[::1]:6882"), peer("127.0.0.1:6881")]);
    let server4 = serve_on(v4, vec![response("200 OK", "", &body4)], None);
    let server6 = serve_on(v6, vec![response("200 OK", "", &body6)], None);
    let mut rx = reactor();
    let mut driver = Driver::new(dual_config());
    let url = format!("http://dual.bitloop.test:{port}/announce");
    let result = announce_and_wait(
        &mut rx,
        &mut driver,
        &url,
        request(InfoHash([6; 20]), 6881, AnnounceEvent::Started, 1),
    );
    finish(rx, driver);
    assert_eq!(
        result.map(|r| r.peers),
        Ok(vec![
            peer("127.0.0.1:6881"),
            peer("127.0.0.2:6881"),
            peer("[::1]:6882")
        ]),
        "both families' peers, once each"
    );
    let (seen4, seen6) = (server4.requests(), server6.requests());
    assert_eq!((seen4.len(), seen6.len()), (1, 1), "one announce per family");
    assert!(seen6[0].starts_with("GET /announce?info_hash="));
}

#[test]
fn a_family_that_fails_does_not_fail_the_announce() {
    let (v4, v6) = dual_listeners();
    let port = v4.local_addr().unwrap().port();
    drop(v6); // nothing listens on [::1]:port: that leg is refused
    let server4 = serve_on(
        v4,
        vec![response("200 OK", "", &tracker_body(&[peer("127.0.0.1:6881")]))],
        None,
    );
    let mut rx = reactor();
    let mut driver = Driver::new(dual_config());
    let url = format!("http://dual.bitloop.test:{port}/announce");
    let result = announce_and_wait(
        &mut rx,
        &mut driver,
        &url,
        request(InfoHash([6; 20]), 6881, AnnounceEvent::Started, 1),
    );
    finish(rx, driver);
    assert_eq!(result.map(|r| r.peers), Ok(vec![peer("127.0.0.1:6881")]));
    server4.finish();
}

#[test]
fn ipv6_literals_over_http_and_udp() {
    let listener = TcpListener::bind("[::1]:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = serve_on(
        listener,
        vec![response("200 OK", "", &tracker_body(&[peer("[::1]:7000")]))],
        None,
    );
    let mut rx = reactor();
    let mut driver = Driver::new(config());
    let req = request(InfoHash([6; 20]), 6881, AnnounceEvent::Started, 1);
    let http = announce_and_wait(
        &mut rx,
        &mut driver,
        &format!("http://[::1]:{port}/announce"),
        req.clone(),
    );
    assert_eq!(http.map(|r| r.peers), Ok(vec![peer("[::1]:7000")]));
    assert_eq!(server.requests().len(), 1);

    // A BEP 15 tracker on ::1: over IPv6 its peers are 18 bytes each.
    let udp = UdpSocket::bind("[::1]:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let fake = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        // Resends are answered too (with a 10 ms retry base, a loaded machine
        // resends the connect before we answer it); the announce ends the exchange.
        for _ in 0..50 {
            let (n, from) = udp.recv_from(&mut buf).expect("a datagram within 5 s");
            let tid = &buf[12..16];
            let mut reply = Vec::new();
            if n == 16 {
                reply.extend_from_slice(&[0, 0, 0, 0]);
                reply.extend_from_slice(tid);
                reply.extend_from_slice(&7u64.to_be_bytes());
            } else {
                reply.extend_from_slice(&[0, 0, 0, 1]);
                reply.extend_from_slice(tid);
                reply.extend_from_slice(&[0, 0, 7, 8, 0, 0, 0, 1, 0, 0, 0, 2]);
                let mut peer6 = [0u8; 18];
                peer6[15] = 1;
                peer6[16..].copy_from_slice(&7001u16.to_be_bytes());
                reply.extend_from_slice(&peer6);
            }
            udp.send_to(&reply, from).unwrap();
            if n != 16 {
                break;
            }
        }
    });
    let result = announce_and_wait(&mut rx, &mut driver, &format!("udp://[::1]:{udp_port}"), req);
    assert_eq!(result.map(|r| r.peers), Ok(vec![peer("[::1]:7001")]));
    finish(rx, driver);
    join_within(fake, Duration::from_secs(10), "the UDP tracker on ::1");
}

#[test]
fn a_family_whose_connect_hangs_delays_the_answer_by_the_grace_only() {
    // [::1]:port is a listener whose accept queue is full, so the IPv6 connect
    // neither succeeds nor fails (a broken IPv6 route looks the same).
    let (v4, port, _hole) = loop {
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        let socket = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
        let addr: SocketAddr = format!("[::1]:{port}").parse().unwrap();
        if socket.bind(&addr.into()).is_ok() {
            socket.listen(0).unwrap();
            let filler = std::net::TcpStream::connect(addr).unwrap();
            break (v4, port, (socket, filler));
        }
    };
    let server4 = serve_on(
        v4,
        vec![response("200 OK", "", &tracker_body(&[peer("127.0.0.1:6881")]))],
        None,
    );
    let mut rx = reactor();
    let mut driver = Driver::new(TrackerConfig {
        http_timeout: Duration::from_secs(30),
        ..dual_config()
    });
    let started = std::time::Instant::now();
    let url = format!("http://dual.bitloop.test:{port}/announce");
    let result = announce_and_wait(
        &mut rx,
        &mut driver,
        &url,
        request(InfoHash([6; 20]), 6881, AnnounceEvent::Started, 1),
    );
    let waited = started.elapsed();
    finish(rx, driver);
    assert_eq!(result.map(|r| r.peers), Ok(vec![peer("127.0.0.1:6881")]));
    assert!(
        waited >= bitloop::client::trackers::OTHER_FAMILY_GRACE && waited < Duration::from_secs(15),
        "the IPv4 answer came after {waited:?}: the grace, not the 30 s deadline"
    );
    server4.finish();
}

#[test]
fn the_mini_tracker_serves_one_swarm_over_both_families() {
    use common::mini_tracker::MiniTracker;
    let tracker = MiniTracker::start();
    let mut rx = reactor();
    let mut driver = Driver::new(dual_config());
    let hash = InfoHash([8; 20]);
    let over = |url: &str, port: u16, rx: &mut _, driver: &mut Driver| {
        let req = request(hash, port, AnnounceEvent::Started, 1);
        announce_and_wait(rx, driver, url, req).map(|r| r.peers)
    };
    assert_eq!(over(&tracker.url_v6(), 7001, &mut rx, &mut driver), Ok(vec![]));
    assert_eq!(
        over(&tracker.url_v4(), 7002, &mut rx, &mut driver),
        Ok(vec![peer("[::1]:7001")]),
        "an IPv4 announcer learns the IPv6 member through peers6"
    );
    // Through the dual-stack name, one announce per family: the tracker records
    // both our addresses.
    let dual = format!("http://dual.bitloop.test:{}/announce", tracker.port);
    let peers = over(&dual, 7003, &mut rx, &mut driver).unwrap();
    assert!(peers.contains(&peer("[::1]:7001")) && peers.contains(&peer("127.0.0.1:7002")));
    let members = tracker.peers(hash.0);
    assert!(
        members.contains(&peer("127.0.0.1:7003")) && members.contains(&peer("[::1]:7003")),
        "{members:?}"
    );
    finish(rx, driver);
}
