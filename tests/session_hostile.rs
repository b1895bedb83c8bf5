//! Fixes 11 and 2 of issue 16, against a real libtorrent seeder.
//!
//! Fix 11: a protocol violation counts against that address (IP and port) alone.
//! Misbehaving scripted peers (an oversize length prefix, a second bitfield,
//! garbage instead of a handshake) and an honest seeder all on 127.0.0.1: the
//! misbehaving ones are closed and counted, the honest one is not banned and the
//! download completes from it, whether we dial it after the violations, it dials
//! us after them, or everyone is there from the start.
//!
//! Fix 2: addresses whose connect fails at once are forgotten. 10,000 of them
//! (multicast addresses: the kernel refuses a TCP connect to one with
//! ENETUNREACH before any packet is sent), then a peer from a tracker is still
//! connected to, and the download completes.

mod common;
#[path = "common/sessions.rs"]
mod sessions;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitloop::client::download::{run, DownloadOptions, Outcome};
use bitloop::client::session::{AddOptions, Session, Source, TorrentKey};
use bitloop::client::Owner;
use bitloop::reactor::Reactor;
use common::bounded::{try_accept_within, try_join_within, Lines, NoLine};
use common::seeders::{Content, Seeder};
use common::trackers::offline_resolver;
use sessions::{handshake, peer_id, peers_body, run_until, shut_down, FakeTracker, Guarded, Host};

const DOWNLOAD_WITHIN: Duration = Duration::from_secs(90);

// ------------------------------------------------------------------ fix 11

/// How a scripted peer breaks the protocol.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Bad {
    /// Handshakes, then sends a length prefix of 4 GiB.
    OversizePrefix,
    /// Handshakes, sends have-all, then have-all again.
    SecondBitfield,
    /// Answers our handshake with an HTTP error page.
    Garbage,
}

const BAD: [Bad; 3] = [Bad::OversizePrefix, Bad::SecondBitfield, Bad::Garbage];

/// A scripted peer on 127.0.0.1 (its own port): it serves each connection on a
/// thread and counts the connections we closed on it.
struct BadPeer {
    addr: SocketAddr,
    closed_by_us: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn misbehave(mut stream: TcpStream, bad: Bad, id: u64) -> Option<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut theirs = [0u8; 68];
    stream.read_exact(&mut theirs).ok()?;
    let info_hash = bitloop::metainfo::InfoHash(theirs[28..48].try_into().unwrap());
    let mut bytes = Vec::new();
    match bad {
        Bad::Garbage => {
            let page = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
            bytes.extend_from_slice(page);
            bytes.resize(68, b' ');
        }
        Bad::OversizePrefix => {
            bytes.extend_from_slice(&handshake(&info_hash, &peer_id(id), true));
            bytes.extend_from_slice(&[0, 0, 0, 1, 0x0e]);
            bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 7]);
        }
        Bad::SecondBitfield => {
            bytes.extend_from_slice(&handshake(&info_hash, &peer_id(id), true));
            bytes.extend_from_slice(&[0, 0, 0, 1, 0x0e, 0, 0, 0, 1, 0x0e]);
        }
    }
    stream.write_all(&bytes).ok()?;
    // Until we close (bounded by the read timeout).
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return Some(()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(()),
            Err(_) => return None,
        }
    }
}

impl BadPeer {
    fn start(bad: Bad, id: u64) -> BadPeer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let closed_by_us = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (closed, stopped) = (closed_by_us.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut workers = Vec::new();
            while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let Some((stream, _)) = try_accept_within(&listener, Duration::from_millis(50)) {
                    let closed = closed.clone();
                    workers.push(std::thread::spawn(move || {
                        if misbehave(stream, bad, id).is_some() {
                            closed.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                }
            }
            for worker in workers {
                let _ = try_join_within(worker, Duration::from_secs(15));
            }
        });
        BadPeer {
            addr,
            closed_by_us,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for BadPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = try_join_within(thread, Duration::from_secs(20));
        }
    }
}

/// Three scripted peers of each kind.
fn bad_peers() -> Vec<BadPeer> {
    (0..9).map(|i| BadPeer::start(BAD[i % 3], i as u64)).collect()
}

struct Leech {
    rx: Reactor<Owner>,
    host: Host<()>,
    key: TorrentKey,
    output: std::path::PathBuf,
}

fn leech(content: &Content, listen: bool) -> Leech {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut rx: Reactor<Owner> = Reactor::new().unwrap();
    let mut config = sessions::config();
    if !listen {
        config.listen.clear();
    }
    let session = Session::new(&mut rx, 0, config).unwrap();
    let mut host = Host::new(session, ());
    let output = content.dir.path().join("download");
    let key = host
        .session
        .add_torrent(
            &mut rx,
            Source::Torrent(&content.torrent),
            AddOptions::new(output.clone()),
        )
        .unwrap();
    Leech {
        rx,
        host,
        key,
        output,
    }
}

/// Dials every bad peer and runs until each was closed for its violation.
fn suffer(l: &mut Leech, bad: &[BadPeer]) {
    for peer in bad {
        l.host.session.add_peer(&mut l.rx, l.key, peer.addr);
    }
    let key = l.key;
    run_until(&mut l.rx, &mut l.host, Duration::from_secs(20), |h, _| {
        let torrent = h.session.torrent(key).unwrap();
        torrent.stats().violations == 9 && torrent.pool().is_empty()
    });
    for peer in bad {
        let deadline = Instant::now() + Duration::from_secs(10);
        while peer.closed_by_us.load(Ordering::Relaxed) == 0 {
            assert!(Instant::now() < deadline, "{} was never closed", peer.addr);
            std::thread::sleep(Duration::from_millis(5)); // polling the peer's thread
        }
    }
}

fn assert_not_banned(l: &Leech, honest: SocketAddr) {
    let torrent = l.host.session.torrent(l.key).unwrap();
    let now = l.rx.now();
    assert!(
        !torrent.bans().is_banned(honest, now),
        "the honest seeder {honest} is banned for its neighbours' violations"
    );
    assert_eq!(torrent.banned(now), Vec::<std::net::IpAddr>::new(), "IPs banned");
}

#[test]
fn violations_on_one_ip_do_not_ban_an_honest_seeder_we_dial_there_later() {
    let content = Content::make(false, 2_000_000, 16384, vec![]);
    let bad = bad_peers();
    let mut l = leech(&content, false);
    suffer(&mut l, &bad);
    let seeder = Seeder::start(&content.torrent_path, &content.save_path);
    assert_not_banned(&l, seeder.addr());
    l.host.session.add_peer(&mut l.rx, l.key, seeder.addr());
    let key = l.key;
    run_until(&mut l.rx, &mut l.host, DOWNLOAD_WITHIN, |h, _| {
        h.completed.contains(&key)
    });
    content.assert_identical(&l.output);
    assert_eq!(l.host.session.stats(key).unwrap().violations, 9);
    assert_not_banned(&l, seeder.addr());
    shut_down(&mut l.rx, &mut l.host);
    l.rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
}

#[test]
fn violations_on_one_ip_do_not_refuse_an_honest_seeder_that_connects_in_later() {
    let content = Content::make(true, 2_000_000, 16384, vec![]);
    let bad = bad_peers();
    let mut l = leech(&content, true);
    suffer(&mut l, &bad);
    let ours = format!("127.0.0.1:{}", l.host.session.port());
    let _seeder = Seeder::start_with(&content.torrent_path, &content.save_path, &["--connect", &ours]);
    let key = l.key;
    run_until(&mut l.rx, &mut l.host, DOWNLOAD_WITHIN, |h, _| {
        h.completed.contains(&key)
    });
    content.assert_identical(&l.output);
    let stats = l.host.session.incoming_stats();
    assert!(stats.routed >= 1, "{stats:?}");
    assert_eq!(stats.refused, 0, "an incoming peer was refused: {stats:?}");
    assert_eq!(l.host.session.stats(key).unwrap().violations, 9);
    shut_down(&mut l.rx, &mut l.host);
    l.rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
}

#[test]
fn a_download_beside_misbehaving_peers_on_its_ip_completes_from_the_honest_one() {
    let _ = env_logger::builder().is_test(true).try_init();
    let content = Content::make(false, 2_000_000, 16384, vec![]);
    let bad = bad_peers();
    // Rate limited (1 MB/s), so that every scripted peer has had its say before
    // the honest one could finish alone.
    let seeder = Seeder::start_with(
        &content.torrent_path,
        &content.save_path,
        &["--upload-limit", "1000000"],
    );
    let output = content.dir.path().join("download");
    let mut options = DownloadOptions::new(output.clone());
    options.listen = None;
    options.watch_signals = false;
    options.timeout = Duration::from_secs(30);
    options.trackers.resolver = offline_resolver();
    options.peers = bad.iter().map(|b| b.addr).collect();
    options.peers.push(seeder.addr());
    let summary = run(&content.torrent, options).unwrap();
    assert_eq!(summary.outcome, Outcome::Completed);
    summary.report.as_ref().unwrap_or_else(|busy| panic!("{busy}"));
    content.assert_identical(&output);
    let torrent = &summary.torrents[0];
    assert_eq!(torrent.stats.violations, 9, "{:?}", torrent.stats);
    assert!(summary.banned.is_empty(), "IPs banned: {:?}", summary.banned);
    let honest = summary
        .peers
        .values()
        .find(|p| p.addr == Some(seeder.addr()))
        .expect("the honest seeder's tally");
    assert_eq!(
        honest.downloaded,
        content.torrent.total_length(),
        "every byte came from the honest seeder"
    );
}

// ------------------------------------------------------------------ fix 2

/// `n` distinct multicast addresses (224.1.0.0 and up): a TCP connect to one
/// fails at once with ENETUNREACH, on any host, without sending a packet.
fn unreachable(n: usize) -> Vec<SocketAddr> {
    (0..n as u32)
        .map(|i| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(0xe001_0000 + i), 6881)))
        .collect()
}

/// A seeder, and the same torrent naming a fake tracker that answers with it.
fn seeded_via_tracker(multi: bool) -> (Content, Seeder, FakeTracker, Content) {
    // The seeder's copy names no tracker; the info hash does not depend on them.
    let probe = Content::make(multi, 2_000_000, 16384, vec![]);
    let seeder = Seeder::start(&probe.torrent_path, &probe.save_path);
    let tracker = FakeTracker::start(peers_body(&[seeder.addr()]));
    let content = Content::make(multi, 2_000_000, 16384, vec![tracker.url.clone()]);
    assert_eq!(content.torrent.info_hash, probe.torrent.info_hash);
    (probe, seeder, tracker, content)
}

#[test]
fn ten_thousand_addresses_that_fail_at_once_are_forgotten_and_a_tracker_peer_still_connects() {
    let (_probe, seeder, tracker, content) = seeded_via_tracker(false);
    let mut l = leech(&content, false);
    // The announce is out; its answer is read only once the loop runs, after these.
    for addr in unreachable(10_000) {
        l.host.session.add_peer(&mut l.rx, l.key, addr);
    }
    let torrent = l.host.session.torrent(l.key).unwrap();
    assert_eq!(
        torrent.table_sizes()[..6],
        [0; 6],
        "pool tables (peers, addresses, ids, retries, due, candidates) after 10,000 failed connects"
    );
    let key = l.key;
    run_until(&mut l.rx, &mut l.host, DOWNLOAD_WITHIN, |h, _| {
        h.completed.contains(&key)
    });
    content.assert_identical(&l.output);
    assert!(tracker.announces.load(Ordering::Relaxed) >= 1);
    drop(seeder);
    shut_down(&mut l.rx, &mut l.host);
    l.rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
}

#[test]
fn the_binary_given_ten_thousand_unreachable_peers_still_downloads_from_its_tracker() {
    let (_probe, _seeder, tracker, content) = seeded_via_tracker(true);
    let output = content.dir.path().join("download");
    let bad = unreachable(10_000);
    let mut command = Command::new(env!("CARGO_BIN_EXE_bitloop"));
    command
        .arg("download")
        .arg(&content.torrent_path)
        .arg("-o")
        .arg(&output)
        .args(["--quiet", "--timeout", "20"]);
    for addr in &bad {
        command.args(["--peer", &addr.to_string()]);
    }
    // The connect module's debug lines name each connect that failed at once.
    command.env("RUST_LOG", "bitloop::torrent::connect=debug");
    let mut spawned = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::new(spawned.stderr.take().unwrap(), "bitloop");
    let mut child = Guarded(Some(spawned));
    let status = child.wait_within(DOWNLOAD_WITHIN, "bitloop with 10,000 unreachable peers");
    let mut failed_at_once = 0;
    let mut tail = Vec::new();
    loop {
        match lines.try_line_within(Duration::from_secs(5)) {
            Ok(line) => {
                if line.contains("failed at once") {
                    failed_at_once += 1;
                } else {
                    tail.push(line);
                }
            }
            Err(NoLine::Closed) => break,
            Err(why) => panic!("reading bitloop's output: {why:?}"),
        }
    }
    assert_eq!(
        status.code(),
        Some(0),
        "exit status; stderr:\n{}",
        tail.join("\n")
    );
    content.assert_identical(&output);
    assert_eq!(failed_at_once, 10_000, "connects that failed at once");
    assert!(tracker.announces.load(Ordering::Relaxed) >= 1);
}
