//! The session-wide budgets and a torrent's life in a session: half-open connects
//! and connections are counted across all torrents (incoming peers included);
//! a torrent waiting for room gets its turn when room frees; stopping a torrent
//! gives its room to the others; a removed torrent is unknown to incoming peers
//! and can be added again; a tracker answer after the stop leaves it empty;
//! closing the session closes pending connections.

mod common;
#[path = "common/sessions.rs"]
mod sessions;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bitloop::client::session::{AddOptions, Session, SessionConfig, Source, TorrentKey};
use bitloop::client::Owner;
use bitloop::reactor::Reactor;
use bitloop::torrent::TorrentConfig;
use common::black_holes;
use common::seeders::Content;
use sessions::{handshake, peer_id, run_until, settled, shut_down, Host};

const LIMIT: Duration = Duration::from_secs(10);

struct Setup {
    rx: Reactor<Owner>,
    host: Host<()>,
    keys: Vec<TorrentKey>,
    contents: Vec<Content>,
}

/// A session with `n` torrents (different data) and the given budgets.
fn setup(n: usize, config: SessionConfig) -> Setup {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut rx: Reactor<Owner> = Reactor::new().unwrap();
    let session = Session::new(&mut rx, 0, config).unwrap();
    let mut host = Host::new(session, ());
    let mut keys = Vec::new();
    let mut contents = Vec::new();
    for i in 0..n {
        // Different sizes give different data and info hashes.
        let content = Content::make(i % 2 == 1, 100_000 + 1000 * i, 16384, vec![]);
        let key = host
            .session
            .add_torrent(
                &mut rx,
                Source::Torrent(&content.torrent),
                AddOptions::new(content.dir.path().join("out")),
            )
            .unwrap();
        keys.push(key);
        contents.push(content);
    }
    Setup {
        rx,
        host,
        keys,
        contents,
    }
}

fn connecting(s: &Setup, key: TorrentKey) -> usize {
    s.host.session.torrent(key).unwrap().peer_counts().connecting
}

/// The budget counts what the torrents hold, and never more than allowed.
fn assert_budget(session: &Session, keys: &[TorrentKey], max_half_open: usize) {
    let (connections, half_open) = session.budget_use();
    let counts: Vec<_> = keys
        .iter()
        .map(|k| session.torrent(*k).unwrap().peer_counts())
        .collect();
    let held: usize = counts.iter().map(|c| c.connecting).sum();
    let total: usize = counts.iter().map(|c| c.total()).sum();
    assert_eq!(half_open, held, "half-open budget vs connects held");
    assert_eq!(connections, total, "connection budget vs peers held");
    assert!(
        half_open <= max_half_open,
        "{half_open} half-open, budget {max_half_open}"
    );
}

fn finish(mut s: Setup) {
    shut_down(&mut s.rx, &mut s.host);
    s.rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
}

fn short_connects() -> TorrentConfig {
    TorrentConfig {
        connect_timeout: Duration::from_millis(300),
        reconnect_attempts: 0,
        ..TorrentConfig::default()
    }
}

#[test]
fn the_half_open_budget_is_shared_by_all_torrents() {
    let mut s = setup(
        2,
        SessionConfig {
            listen: Vec::new(),
            max_half_open: 4,
            torrent: short_connects(),
            ..sessions::config()
        },
    );
    let (_holes, holes) = black_holes(12);
    let (a, b) = (s.keys[0], s.keys[1]);
    for addr in &holes[..6] {
        s.host.session.add_peer(&mut s.rx, a, *addr);
    }
    for addr in &holes[6..] {
        s.host.session.add_peer(&mut s.rx, b, *addr);
    }
    assert_eq!(connecting(&s, a), 4, "the first torrent took the whole budget");
    assert_eq!(connecting(&s, b), 0, "the second waits");
    assert_budget(&s.host.session, &s.keys, 4);
    // As A's connects time out, room frees; every candidate of both is tried.
    let mut b_had = 0;
    let keys = s.keys.clone();
    run_until(&mut s.rx, &mut s.host, LIMIT, |h, _| {
        assert_budget(&h.session, &keys, 4);
        b_had = b_had.max(h.session.torrent(b).unwrap().peer_counts().connecting);
        keys.iter().all(|k| {
            let t = h.session.torrent(*k).unwrap();
            t.pool().is_empty() && t.pool().candidates.queued() == 0
        })
    });
    assert!(b_had > 0, "the waiting torrent never got a turn");
    finish(s);
}

#[test]
fn a_waiting_torrent_gets_the_first_slot_that_frees() {
    let mut s = setup(
        2,
        SessionConfig {
            listen: Vec::new(),
            max_half_open: 4,
            torrent: short_connects(),
            ..sessions::config()
        },
    );
    let (_holes, holes) = black_holes(24);
    let (a, b) = (s.keys[0], s.keys[1]);
    for addr in &holes[..20] {
        s.host.session.add_peer(&mut s.rx, a, *addr);
    }
    for addr in &holes[20..] {
        s.host.session.add_peer(&mut s.rx, b, *addr);
    }
    assert_eq!(connecting(&s, a), 4);
    // A's first four connects time out together: B waited, so B is served before
    // A dials more of its twenty. (Today A takes every slot until its candidates
    // run out: with 2,000 dead addresses that is minutes for every other torrent.)
    run_until(&mut s.rx, &mut s.host, LIMIT, |h, _| {
        h.session.torrent(a).unwrap().pool().candidates.queued() <= 12
            || h.session.torrent(b).unwrap().peer_counts().connecting > 0
    });
    assert!(
        connecting(&s, b) > 0,
        "B never got a slot while A dialled {} more",
        20 - 4 - s.host.session.torrent(a).unwrap().pool().candidates.queued()
    );
    finish(s);
}

#[test]
fn stopping_a_torrent_gives_its_room_to_a_waiting_one_at_once() {
    let mut s = setup(
        2,
        SessionConfig {
            listen: Vec::new(),
            max_half_open: 2,
            torrent: TorrentConfig {
                connect_timeout: Duration::from_secs(30),
                ..TorrentConfig::default()
            },
            ..sessions::config()
        },
    );
    let (_holes, holes) = black_holes(4);
    let (a, b) = (s.keys[0], s.keys[1]);
    for addr in &holes[..2] {
        s.host.session.add_peer(&mut s.rx, a, *addr);
    }
    for addr in &holes[2..] {
        s.host.session.add_peer(&mut s.rx, b, *addr);
    }
    assert_eq!((connecting(&s, a), connecting(&s, b)), (2, 0));
    s.host.session.stop_torrent(&mut s.rx, a);
    assert_eq!(
        (connecting(&s, a), connecting(&s, b)),
        (0, 2),
        "B took A's room when A stopped"
    );
    assert_budget(&s.host.session, &s.keys, 2);
    finish(s);
}

#[test]
fn incoming_peers_count_against_the_connection_budget() {
    let mut s = setup(
        1,
        SessionConfig {
            max_connections: 3,
            ..sessions::config()
        },
    );
    let key = s.keys[0];
    let hash = s.contents[0].torrent.info_hash;
    let to = SocketAddr::from(([127, 0, 0, 1], s.host.session.port()));
    let mut peers = Vec::new();
    for i in 0..3 {
        let mut peer = TcpStream::connect(to).unwrap();
        peer.write_all(&handshake(&hash, &peer_id(i), false)).unwrap();
        peers.push(peer);
    }
    run_until(&mut s.rx, &mut s.host, LIMIT, |h, _| {
        h.session.torrent(key).unwrap().peer_counts().active == 3
    });
    assert_eq!(s.host.session.budget_use(), (3, 0));
    // A fourth is refused at the door, and an outgoing connect waits.
    let mut fourth = TcpStream::connect(to).unwrap();
    fourth.set_read_timeout(Some(LIMIT)).unwrap();
    fourth.write_all(&handshake(&hash, &peer_id(9), false)).unwrap();
    run_until(&mut s.rx, &mut s.host, LIMIT, |h, rx| {
        h.session.incoming_stats().refused == 1 && settled(rx)
    });
    let mut buf = [0u8; 128];
    match fourth.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the fourth peer was not closed: {other:?}"),
    }
    let (_holes, holes) = black_holes(1);
    s.host.session.add_peer(&mut s.rx, key, holes[0]);
    assert_eq!(connecting(&s, key), 0, "no room for an outgoing connect");
    assert_budget(&s.host.session, &s.keys, 64);
    // One leaves: the waiting connect goes out.
    drop(peers.pop());
    run_until(&mut s.rx, &mut s.host, LIMIT, |h, _| {
        h.session.torrent(key).unwrap().peer_counts().connecting == 1
    });
    assert_budget(&s.host.session, &s.keys, 64);
    finish(s);
}

#[test]
fn a_removed_torrent_is_unknown_and_can_be_added_again() {
    let mut s = setup(1, sessions::config());
    let key = s.keys[0];
    let hash = s.contents[0].torrent.info_hash;
    s.host.session.stop_torrent(&mut s.rx, key);
    assert!(
        s.host.session.remove_torrent(key),
        "a stopped torrent with nothing in flight"
    );
    assert_eq!(s.host.session.find(&hash), None);
    assert_eq!(s.host.session.table_sizes()[..2], [0, 0], "torrents, info hashes");
    let to = SocketAddr::from(([127, 0, 0, 1], s.host.session.port()));
    let mut peer = TcpStream::connect(to).unwrap();
    peer.write_all(&handshake(&hash, &peer_id(1), false)).unwrap();
    run_until(&mut s.rx, &mut s.host, LIMIT, |h, _| {
        h.session.incoming_stats().unknown_info_hash == 1
    });
    let content = &s.contents[0];
    let again = s
        .host
        .session
        .add_torrent(
            &mut s.rx,
            Source::Torrent(&content.torrent),
            AddOptions::new(content.dir.path().join("out")),
        )
        .unwrap();
    s.keys = vec![again];
    let mut peer = TcpStream::connect(to).unwrap();
    peer.write_all(&handshake(&hash, &peer_id(2), false)).unwrap();
    run_until(&mut s.rx, &mut s.host, LIMIT, |h, _| {
        h.session.torrent(again).unwrap().peer_counts().active == 1
    });
    assert_eq!(s.host.session.incoming_stats().routed, 1);
    finish(s);
}

#[test]
fn closing_the_session_closes_pending_incoming_connections() {
    let mut s = setup(1, sessions::config());
    let to = SocketAddr::from(([127, 0, 0, 1], s.host.session.port()));
    let mut waiting: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(to).unwrap()).collect();
    run_until(&mut s.rx, &mut s.host, LIMIT, |h, _| {
        h.session.table_sizes()[2] == 3
    });
    finish(s);
    for peer in &mut waiting {
        peer.set_read_timeout(Some(LIMIT)).unwrap();
        let mut buf = [0u8; 16];
        match peer.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("a pending connection outlived the session: {other:?}"),
        }
    }
}

#[test]
fn a_tracker_answer_after_stop_leaves_the_torrent_empty() {
    let _ = env_logger::builder().is_test(true).try_init();
    // The tracker answers every announce, `stopped` included, with a peer (some do).
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let tracker = sessions::FakeTracker::start(sessions::peers_body(&[refused]));
    let content = Content::make(false, 100_000, 16384, vec![tracker.url.clone()]);
    let mut rx: Reactor<Owner> = Reactor::new().unwrap();
    let session = Session::new(
        &mut rx,
        0,
        SessionConfig {
            listen: Vec::new(),
            ..sessions::config()
        },
    )
    .unwrap();
    let mut host = Host::new(session, ());
    let key = host
        .session
        .add_torrent(
            &mut rx,
            Source::Torrent(&content.torrent),
            AddOptions::new(content.dir.path().join("out")),
        )
        .unwrap();
    let announced = |n: usize| {
        let count = tracker.announces.clone();
        move |h: &Host<()>, _: &Reactor<Owner>| {
            count.load(std::sync::atomic::Ordering::Relaxed) >= n && h.session.announces_in_flight(key) == 0
        }
    };
    run_until(&mut rx, &mut host, LIMIT, announced(1));
    assert_eq!(
        host.session.stop_torrent(&mut rx, key),
        1,
        "one `stopped` announce"
    );
    run_until(&mut rx, &mut host, LIMIT, announced(2));
    assert_eq!(
        host.session.torrent(key).unwrap().table_sizes(),
        [0; 11],
        "a stopped torrent's tables after its `stopped` announce was answered"
    );
    shut_down(&mut rx, &mut host);
    rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
}
