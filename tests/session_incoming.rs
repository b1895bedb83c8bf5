//! Incoming connections through a session's one port: a handshake naming a
//! torrent we serve is handed to that torrent (and not to another); an unknown
//! info hash, garbage instead of a handshake, silence past the handshake timeout,
//! a hang-up and a full pending table are each closed and counted in
//! `Session::incoming_stats()`, and nothing is left in any table.
//!
//! The session runs in-process; the remote peers are plain sockets of the test,
//! which wait for what the session did (bounded reads) after the loop ran.

mod common;
#[path = "common/sessions.rs"]
mod sessions;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bitloop::client::session::{AddOptions, IncomingStats, Session, SessionConfig, Source, TorrentKey};
use bitloop::client::Owner;
use bitloop::metainfo::InfoHash;
use bitloop::reactor::{HandleKind, Reactor};
use common::seeders::Content;
use sessions::{handshake, peer_id, run_until, settled, shut_down, Host};

const LIMIT: Duration = Duration::from_secs(10);

struct Two {
    rx: Reactor<Owner>,
    host: Host<()>,
    a: TorrentKey,
    b: TorrentKey,
    hash_a: InfoHash,
    hash_b: InfoHash,
    addr: SocketAddr,
    _contents: [Content; 2],
}

/// A session listening on 127.0.0.1 with two torrents (nothing on disk yet).
fn two_torrents(config: SessionConfig) -> Two {
    let _ = env_logger::builder().is_test(true).try_init();
    let single = Content::make(false, 100_000, 16384, vec![]);
    let multi = Content::make(true, 100_000, 16384, vec![]);
    let mut rx: Reactor<Owner> = Reactor::new().unwrap();
    let mut session = Session::new(&mut rx, 0, config).unwrap();
    let a = session
        .add_torrent(
            &mut rx,
            Source::Torrent(&single.torrent),
            AddOptions::new(single.dir.path().join("out")),
        )
        .unwrap();
    let b = session
        .add_torrent(
            &mut rx,
            Source::Torrent(&multi.torrent),
            AddOptions::new(multi.dir.path().join("out")),
        )
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], session.port()));
    Two {
        rx,
        host: Host::new(session, ()),
        a,
        b,
        hash_a: single.torrent.info_hash,
        hash_b: multi.torrent.info_hash,
        addr,
        _contents: [single, multi],
    }
}

fn connect(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    if !bytes.is_empty() {
        stream.write_all(bytes).unwrap();
    }
    stream
}

/// The session closed our connection: the next read ends (EOF or a reset),
/// after at most the bytes it sent first.
fn assert_closed_by_session(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 1024];
    let started = Instant::now();
    loop {
        // Each read waits at most LIMIT (the stream's read timeout).
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => assert!(started.elapsed() < LIMIT, "{what}: still sending"),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: the session did not close the connection within {LIMIT:?}")
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

fn incoming(t: &Two) -> IncomingStats {
    t.host.session.incoming_stats()
}

fn pending(t: &Two) -> usize {
    t.host.session.table_sizes()[2]
}

fn finish(mut t: Two) {
    shut_down(&mut t.rx, &mut t.host);
    t.rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
}

#[test]
fn a_handshake_is_routed_to_the_torrent_it_names_and_only_to_it() {
    let mut t = two_torrents(sessions::config());
    // The second torrent, so that routing to key 0 by accident would show.
    let mut peer = connect(t.addr, &handshake(&t.hash_b, &peer_id(1), false));
    let b = t.b;
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, _| {
        h.session.torrent(b).unwrap().peer_counts().active == 1
    });
    let stats = incoming(&t);
    assert_eq!((stats.accepted, stats.routed), (1, 1), "{stats:?}");
    assert_eq!(
        t.host.session.torrent(t.a).unwrap().pool().len(),
        0,
        "the other torrent got nothing"
    );
    let (_, routed) = t.host.session.torrent(b).unwrap().pool().iter().next().unwrap();
    assert!(routed.incoming, "the peer is known as incoming");
    assert_eq!(pending(&t), 0, "the pending entry left with the handover");
    // Our answer: a handshake for the torrent it asked for, with our peer id.
    let mut answer = [0u8; 68];
    peer.read_exact(&mut answer).unwrap();
    assert_eq!(&answer[28..48], &t.hash_b.0, "answered for the torrent named");
    assert_eq!(&answer[48..68], &t.host.session.peer_id().0);
    // And the other torrent is reachable through the same port.
    let _peer_a = connect(t.addr, &handshake(&t.hash_a, &peer_id(2), false));
    let a = t.a;
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, _| {
        h.session.torrent(a).unwrap().peer_counts().active == 1
    });
    assert_eq!(incoming(&t).routed, 2);
    assert_eq!(t.host.session.torrent(b).unwrap().peer_counts().active, 1);
    finish(t);
}

#[test]
fn an_unknown_info_hash_is_closed_and_counted() {
    let mut t = two_torrents(sessions::config());
    let stranger = InfoHash([0x5a; 20]);
    let mut peer = connect(t.addr, &handshake(&stranger, &peer_id(1), true));
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, rx| {
        h.session.incoming_stats().unknown_info_hash == 1 && settled(rx)
    });
    assert_closed_by_session(&mut peer, "unknown info hash");
    let stats = incoming(&t);
    assert_eq!(
        stats,
        IncomingStats {
            accepted: 1,
            unknown_info_hash: 1,
            ..IncomingStats::default()
        }
    );
    assert_eq!(pending(&t), 0);
    for key in [t.a, t.b] {
        assert_eq!(t.host.session.torrent(key).unwrap().pool().len(), 0);
    }
    assert_eq!(t.rx.stats().open.get(HandleKind::TcpStream), 0);
    finish(t);
}

#[test]
fn garbage_instead_of_a_handshake_is_closed_and_counted() {
    let mut t = two_torrents(sessions::config());
    let mut http = connect(t.addr, b"GET /announce HTTP/1.1\r\nHost: x\r\n\r\n");
    // A handshake with the wrong protocol string.
    let mut other = handshake(&t.hash_a, &peer_id(2), false);
    other[1..20].copy_from_slice(b"BitTorrent protocoX");
    let mut wrong = connect(t.addr, &other);
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, rx| {
        h.session.incoming_stats().not_bittorrent == 2 && settled(rx)
    });
    assert_closed_by_session(&mut http, "HTTP instead of a handshake");
    assert_closed_by_session(&mut wrong, "a wrong protocol string");
    let stats = incoming(&t);
    assert_eq!(
        (stats.accepted, stats.not_bittorrent, stats.routed),
        (2, 2, 0),
        "{stats:?}"
    );
    assert_eq!(pending(&t), 0);
    finish(t);
}

#[test]
fn silence_past_the_handshake_timeout_is_closed_and_counted() {
    let timeout = Duration::from_millis(300);
    let mut t = two_torrents(SessionConfig {
        handshake_timeout: timeout,
        ..sessions::config()
    });
    let started = Instant::now();
    let mut silent = connect(t.addr, b"");
    // Most of a handshake is not a handshake: it times out too.
    let mut partial = connect(t.addr, &handshake(&t.hash_a, &peer_id(3), false)[..40]);
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, _| {
        h.session.incoming_stats().accepted == 2
    });
    assert_eq!(pending(&t), 2, "both wait for their handshake");
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, rx| {
        h.session.incoming_stats().timed_out == 2 && settled(rx)
    });
    let waited = started.elapsed();
    assert!(
        waited >= timeout,
        "closed after {waited:?}, before the {timeout:?} timeout"
    );
    assert_closed_by_session(&mut silent, "a silent peer");
    assert_closed_by_session(&mut partial, "a partial handshake");
    let stats = incoming(&t);
    assert_eq!(
        (stats.timed_out, stats.routed, stats.hung_up),
        (2, 0, 0),
        "{stats:?}"
    );
    assert_eq!(
        t.host.session.table_sizes()[2..4],
        [0, 0],
        "pending and deadlines"
    );
    finish(t);
}

#[test]
fn a_peer_hanging_up_before_its_handshake_is_counted() {
    let mut t = two_torrents(sessions::config());
    let peer = connect(t.addr, &[19, b'B', b'i']);
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, _| {
        h.session.incoming_stats().accepted == 1
    });
    drop(peer);
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, rx| {
        h.session.incoming_stats().hung_up == 1 && settled(rx)
    });
    assert_eq!(pending(&t), 0);
    assert_eq!(t.rx.stats().open.get(HandleKind::TcpStream), 0);
    finish(t);
}

#[test]
fn a_full_pending_table_refuses_more() {
    let mut t = two_torrents(SessionConfig {
        max_pending: 2,
        ..sessions::config()
    });
    let _first = connect(t.addr, b"");
    let _second = connect(t.addr, b"");
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, _| {
        h.session.incoming_stats().accepted == 2
    });
    let mut third = connect(t.addr, b"");
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, rx| {
        h.session.incoming_stats().refused == 1 && settled(rx)
    });
    assert_closed_by_session(&mut third, "a connection past max_pending");
    assert_eq!(pending(&t), 2, "the first two still wait");
    finish(t);
}

#[test]
fn a_handshake_for_a_stopped_torrent_is_unknown() {
    let mut t = two_torrents(sessions::config());
    let stopped = t.a;
    t.host.session.stop_torrent(&mut t.rx, stopped);
    let mut peer = connect(t.addr, &handshake(&t.hash_a, &peer_id(4), false));
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, rx| {
        h.session.incoming_stats().unknown_info_hash == 1 && settled(rx)
    });
    assert_closed_by_session(&mut peer, "a stopped torrent");
    assert_eq!(t.host.session.torrent(stopped).unwrap().pool().len(), 0);
    finish(t);
}

#[test]
fn messages_sent_with_the_handshake_are_read_at_once() {
    let mut t = two_torrents(sessions::config());
    // Handshake and have-all in one segment: no further readable event announces
    // the have-all, so the session must feed it to the torrent on handover.
    let mut bytes = handshake(&t.hash_b, &peer_id(5), true);
    bytes.extend_from_slice(&[0, 0, 0, 1, 0x0e]);
    let _peer = connect(t.addr, &bytes);
    let b = t.b;
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, _| {
        h.session.torrent(b).unwrap().stats().have_all == 1
    });
    assert_eq!(t.host.session.torrent(b).unwrap().peer_counts().active, 1);
    finish(t);
}

#[test]
fn two_connections_with_one_peer_id_keep_the_first() {
    let mut t = two_torrents(sessions::config());
    let _first = connect(t.addr, &handshake(&t.hash_a, &peer_id(6), false));
    let a = t.a;
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, _| {
        h.session.torrent(a).unwrap().peer_counts().active == 1
    });
    let mut again = connect(t.addr, &handshake(&t.hash_a, &peer_id(6), false));
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, rx| {
        h.session.incoming_stats().refused == 1 && settled(rx)
    });
    assert_closed_by_session(&mut again, "a second connection of one peer");
    assert_eq!(t.host.session.torrent(a).unwrap().peer_counts().active, 1);
    finish(t);
}

#[test]
fn the_wildcard_listener_takes_ipv6_too_where_the_host_has_it() {
    let host_has_ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let mut t = two_torrents(SessionConfig {
        listen: vec!["0.0.0.0:0".parse().unwrap()],
        ..sessions::config()
    });
    let port = t.host.session.port();
    let addrs = t.host.session.listen_addrs(&mut t.rx);
    let v6 = addrs.iter().any(|a| a.is_ipv6() && a.port() == port);
    assert_eq!(v6, host_has_ipv6, "IPv6 listener on the same port: {addrs:?}");
    // One port for both families (and, over IPv4, for every torrent).
    let mut peers = vec![connect(
        SocketAddr::from(([127, 0, 0, 1], port)),
        &handshake(&t.hash_a, &peer_id(1), false),
    )];
    if host_has_ipv6 {
        let v6_loopback = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
        peers.push(connect(v6_loopback, &handshake(&t.hash_b, &peer_id(2), false)));
    }
    let (a, b) = (t.a, t.b);
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, _| {
        let active = |k| h.session.torrent(k).unwrap().peer_counts().active;
        active(a) == 1 && active(b) == usize::from(host_has_ipv6)
    });
    assert_eq!(incoming(&t).routed, peers.len() as u64);
    finish(t);
}

#[test]
fn dialling_our_own_address_is_recognised_and_not_retried() {
    // Trackers echo our own address back; here it is 127.0.0.2, which reaches our
    // wildcard listener but is not one of the addresses we know as ours.
    let mut t = two_torrents(SessionConfig {
        listen: vec!["0.0.0.0:0".parse().unwrap()],
        ..sessions::config()
    });
    let ourselves = SocketAddr::from(([127, 0, 0, 2], t.host.session.port()));
    let a = t.a;
    t.host.session.add_peer(&mut t.rx, a, ourselves);
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, _| {
        h.session.incoming_stats().accepted == 1 && h.session.torrent(a).unwrap().pool().is_empty()
    });
    let sizes = t.host.session.torrent(a).unwrap().table_sizes();
    assert_eq!(
        (sizes[3], sizes[4]),
        (0, 0),
        "a connection to ourselves is scheduled for a retry (retries, due)"
    );
    t.host.session.add_peer(&mut t.rx, a, ourselves);
    assert_eq!(
        t.host.session.torrent(a).unwrap().peer_counts().connecting,
        0,
        "we dial ourselves again"
    );
    finish(t);
}

#[test]
fn a_handshake_that_arrives_in_pieces_is_routed() {
    let mut t = two_torrents(sessions::config());
    let hello = handshake(&t.hash_a, &peer_id(7), false);
    let mut peer = connect(t.addr, &hello[..1]);
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, _| {
        h.session.incoming_stats().accepted == 1
    });
    for chunk in [&hello[1..20], &hello[20..47], &hello[47..]] {
        // Let the loop see each piece on its own before the next comes.
        let before = t.rx.stats().iterations;
        peer.write_all(chunk).unwrap();
        run_until(&mut t.rx, &mut t.host, LIMIT, |_, rx| {
            rx.stats().iterations > before + 2
        });
    }
    let a = t.a;
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, _| {
        h.session.torrent(a).unwrap().peer_counts().active == 1
    });
    assert_eq!(incoming(&t).routed, 1);
    finish(t);
}

#[test]
fn a_torrent_without_metadata_takes_incoming_peers_and_drops_violators() {
    let _ = env_logger::builder().is_test(true).try_init();
    let hash = InfoHash([0x42; 20]);
    let magnet = bitloop::metainfo::Magnet::parse(&format!("magnet:?xt=urn:btih:{}", hash.to_hex())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut rx: Reactor<Owner> = Reactor::new().unwrap();
    let session = Session::new(&mut rx, 0, sessions::config()).unwrap();
    let mut host = Host::new(session, ());
    let key = host
        .session
        .add_torrent(
            &mut rx,
            Source::Magnet(&magnet),
            AddOptions::new(dir.path().join("out")),
        )
        .unwrap();
    assert_eq!(
        host.session.phase(key),
        Some(bitloop::client::session::Phase::NoMetadata)
    );
    let to = SocketAddr::from(([127, 0, 0, 1], host.session.port()));
    // A seed (have-all), and a peer announcing a piece far past any torrent's end.
    let mut seed = handshake(&hash, &peer_id(1), true);
    seed.extend_from_slice(&[0, 0, 0, 1, 0x0e]);
    let _seed = connect(to, &seed);
    let mut far = handshake(&hash, &peer_id(2), true);
    far.extend_from_slice(&[0, 0, 0, 1, 0x0f]); // have-none first
    far.extend_from_slice(&[0, 0, 0, 5, 4, 0xff, 0xff, 0xff, 0xf0]);
    let _far = connect(to, &far);
    run_until(&mut rx, &mut host, LIMIT, |h, _| {
        h.session.torrent(key).unwrap().peer_counts().active == 2
    });
    // And one that sends a 4 GiB length prefix: closed for it.
    let mut liar = handshake(&hash, &peer_id(3), true);
    liar.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 5]);
    let _liar = connect(to, &liar);
    run_until(&mut rx, &mut host, LIMIT, |h, _| {
        h.session.torrent(key).unwrap().stats().violations == 1
    });
    let torrent = host.session.torrent(key).unwrap();
    assert_eq!(torrent.peer_counts().active, 2, "the others stay");
    assert!(!torrent.has_metadata());
    assert_eq!(host.session.incoming_stats().routed, 3);
    shut_down(&mut rx, &mut host);
    rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
}

#[test]
fn the_pending_deadline_queue_stays_bounded_behind_a_silent_connection() {
    let mut t = two_torrents(SessionConfig {
        max_pending: 64,
        handshake_timeout: Duration::from_secs(30),
        ..sessions::config()
    });
    let _silent = connect(t.addr, b"");
    run_until(&mut t.rx, &mut t.host, LIMIT, |h, _| {
        h.session.incoming_stats().accepted == 1
    });
    // 1,000 peers that come and go (garbage: closed at once) behind the silent one.
    for round in 0..20 {
        let _peers: Vec<TcpStream> = (0..50)
            .map(|_| connect(t.addr, b"GET / HTTP/1.0\r\n\r\n"))
            .collect();
        let closed = 50 * (round + 1);
        run_until(&mut t.rx, &mut t.host, LIMIT, |h, _| {
            h.session.incoming_stats().not_bittorrent == closed
        });
    }
    let [pending, deadlines] = [t.host.session.table_sizes()[2], t.host.session.table_sizes()[3]];
    assert_eq!(pending, 1, "only the silent one waits");
    assert!(
        deadlines <= 2 * pending + 64,
        "{deadlines} deadline entries for {pending} pending connection (max_pending 64)"
    );
    finish(t);
}
