//! Several torrents through one session and one port, against python3-libtorrent
//! seeders: two separate swarms (different seeders, different data) downloaded
//! at once by one `bitloop download A B`, found through a real opentracker; and
//! seeders told our address (`connect_peer`) that connect in and are routed to
//! the right one of two torrents, with no outgoing connection at all.

mod common;
#[path = "common/sessions.rs"]
mod sessions;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bitloop::client::session::{AddOptions, Session, Source};
use bitloop::client::Owner;
use bitloop::reactor::Reactor;
use common::bounded::{Lines, NoLine};
use common::opentracker::OpenTracker;
use common::seeders::{Content, Seeder};
use sessions::{free_port, run_until, shut_down, wait_for_seeder, Guarded, Host};

/// How long a whole download of a few MB from loopback seeders may take.
const DOWNLOAD_WITHIN: Duration = Duration::from_secs(90);

/// Every line a finished process wrote to `lines` (bounded: it has exited).
fn all_lines(lines: &Lines) -> Vec<String> {
    let mut all = Vec::new();
    loop {
        match lines.try_line_within(Duration::from_secs(5)) {
            Ok(line) => all.push(line),
            Err(NoLine::Closed) => return all,
            Err(why) => panic!("reading bitloop's output: {why:?}"),
        }
    }
}

/// `bitloop download` with `args`, stderr read on a thread; killed if the test fails.
fn spawn_download(args: &[String]) -> (Guarded, Lines) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitloop"))
        .arg("download")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bitloop");
    let lines = Lines::new(child.stderr.take().unwrap(), "bitloop");
    (Guarded(Some(child)), lines)
}

/// Each torrent's progress line says it completed, and each has its `done:` line.
fn assert_per_torrent_lines(lines: &[String], names: &[&str]) {
    for name in names {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{name}: ")) && l.ends_with("complete")),
            "no completed progress line for {name}:\n{}",
            lines.join("\n")
        );
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("done: {name} ("))),
            "no done line for {name}:\n{}",
            lines.join("\n")
        );
    }
}

#[test]
fn two_swarms_download_at_once_through_one_binary_and_one_port() {
    // The tracker needs the info hashes, which do not depend on the trackers: make
    // the torrents once without, start it, then again with its URLs.
    let probe_a = Content::make(false, 3_000_000, 32768, vec![]);
    let probe_b = Content::make(true, 2_000_000, 16384, vec![]);
    let tracker = OpenTracker::start(&[
        probe_a.torrent.info_hash.to_hex(),
        probe_b.torrent.info_hash.to_hex(),
    ]);
    // Swarm A over HTTP, swarm B over UDP; each seeder has only its own torrent.
    let a = Content::make(false, 3_000_000, 32768, vec![tracker.http_url()]);
    let b = Content::make(true, 2_000_000, 16384, vec![tracker.udp_url()]);
    assert_eq!(a.torrent.info_hash, probe_a.torrent.info_hash);
    assert_eq!(b.torrent.info_hash, probe_b.torrent.info_hash);
    let _seeder_a = Seeder::start(&a.torrent_path, &a.save_path);
    let _seeder_b = Seeder::start(&b.torrent_path, &b.save_path);
    wait_for_seeder(tracker.port, &a.torrent.info_hash);
    wait_for_seeder(tracker.port, &b.torrent.info_hash);

    let output = tempfile::tempdir().unwrap();
    let (mut child, lines) = spawn_download(&[
        a.torrent_path.display().to_string(),
        b.torrent_path.display().to_string(),
        "-o".into(),
        output.path().display().to_string(),
        "--timeout".into(),
        "60".into(),
    ]);
    let status = child.wait_within(DOWNLOAD_WITHIN, "bitloop download A B");
    let lines = all_lines(&lines);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status; stderr:\n{}",
        lines.join("\n")
    );
    a.assert_identical(output.path());
    b.assert_identical(output.path());
    assert_per_torrent_lines(&lines, &[&a.torrent.info.name, &b.torrent.info.name]);
}

#[test]
fn the_binary_serves_seeders_that_connect_in_for_two_torrents_on_one_port() {
    let a = Content::make(false, 3_000_000, 32768, vec![]);
    let b = Content::make(true, 2_000_000, 16384, vec![]);
    let port = free_port();
    let output = tempfile::tempdir().unwrap();
    // No --peer and no tracker: data can only come through incoming connections.
    let (mut child, lines) = spawn_download(&[
        a.torrent_path.display().to_string(),
        b.torrent_path.display().to_string(),
        "-o".into(),
        output.path().display().to_string(),
        "--port".into(),
        port.to_string(),
        "--timeout".into(),
        "60".into(),
    ]);
    // Bounded wait until it listens (the probe is counted as a hang-up, nothing more).
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "bitloop never listened on {port}");
        assert!(
            child.child().try_wait().unwrap().is_none(),
            "bitloop exited: {:?}",
            all_lines(&lines)
        );
        std::thread::sleep(Duration::from_millis(10)); // polling another process
    }
    let ours = format!("127.0.0.1:{port}");
    let _seeder_a = Seeder::start_with(&a.torrent_path, &a.save_path, &["--connect", &ours]);
    let _seeder_b = Seeder::start_with(&b.torrent_path, &b.save_path, &["--connect", &ours]);
    let status = child.wait_within(DOWNLOAD_WITHIN, "bitloop download A B --port");
    let lines = all_lines(&lines);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status; stderr:\n{}",
        lines.join("\n")
    );
    a.assert_identical(output.path());
    b.assert_identical(output.path());
    assert_per_torrent_lines(&lines, &[&a.torrent.info.name, &b.torrent.info.name]);
}

#[test]
fn a_seeder_that_connects_in_is_routed_to_the_right_one_of_two_torrents() {
    let _ = env_logger::builder().is_test(true).try_init();
    let a = Content::make(false, 3_000_000, 32768, vec![]);
    let b = Content::make(true, 2_000_000, 16384, vec![]);
    let mut rx: Reactor<Owner> = Reactor::new().unwrap();
    let session = Session::new(&mut rx, 0, sessions::config()).unwrap();
    let mut host = Host::new(session, ());
    let out_a = a.dir.path().join("download");
    let out_b = b.dir.path().join("download");
    let key_a = host
        .session
        .add_torrent(
            &mut rx,
            Source::Torrent(&a.torrent),
            AddOptions::new(out_a.clone()),
        )
        .unwrap();
    let key_b = host
        .session
        .add_torrent(
            &mut rx,
            Source::Torrent(&b.torrent),
            AddOptions::new(out_b.clone()),
        )
        .unwrap();
    let ours = format!("127.0.0.1:{}", host.session.port());

    // B's seeder first, the second torrent added: it must land there, not in A.
    let _seeder_b = Seeder::start_with(&b.torrent_path, &b.save_path, &["--connect", &ours]);
    run_until(&mut rx, &mut host, DOWNLOAD_WITHIN, |h, _| {
        h.completed.contains(&key_b)
    });
    b.assert_identical(&out_b);
    let untouched = host.session.torrent(key_a).unwrap();
    assert_eq!(untouched.stats().downloaded, 0, "A got data from B's seeder");
    assert_eq!(untouched.pool().len(), 0, "A got a peer");
    let stats = host.session.incoming_stats();
    assert!(stats.routed >= 1, "{stats:?}");
    // libtorrent tries an encrypted (MSE) handshake first, which we do not speak:
    // that one counts as not BitTorrent, and it falls back to the plain one.
    assert_eq!(stats.unknown_info_hash, 0, "{stats:?}");

    let _seeder_a = Seeder::start_with(&a.torrent_path, &a.save_path, &["--connect", &ours]);
    run_until(&mut rx, &mut host, DOWNLOAD_WITHIN, |h, _| {
        h.completed.contains(&key_a)
    });
    a.assert_identical(&out_a);
    assert!(host.session.incoming_stats().routed >= 2);
    for key in [key_a, key_b] {
        // Candidates (addresses to dial): none ever, so every byte came in.
        let candidates = host.session.torrent(key).unwrap().table_sizes()[5];
        assert_eq!(candidates, 0, "torrent {key} had addresses to connect to");
    }
    shut_down(&mut rx, &mut host);
    rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
}

#[test]
fn one_torrent_that_cannot_finish_makes_the_run_exit_1_after_the_other_completes() {
    let a = Content::make(false, 1_000_000, 16384, vec![]);
    let b = Content::make(true, 1_000_000, 16384, vec![]);
    let seeder_a = Seeder::start(&a.torrent_path, &a.save_path);
    let output = tempfile::tempdir().unwrap();
    // B's only peer is A's seeder, which does not serve it.
    let (mut child, lines) = spawn_download(&[
        a.torrent_path.display().to_string(),
        b.torrent_path.display().to_string(),
        "-o".into(),
        output.path().display().to_string(),
        "--peer".into(),
        seeder_a.addr().to_string(),
        "--timeout".into(),
        "3".into(),
    ]);
    let status = child.wait_within(DOWNLOAD_WITHIN, "bitloop download A B");
    let lines = all_lines(&lines);
    let text = lines.join("\n");
    assert_eq!(status.code(), Some(1), "exit status; stderr:\n{text}");
    a.assert_identical(output.path());
    let (name_a, name_b) = (&a.torrent.info.name, &b.torrent.info.name);
    assert!(
        lines.iter().any(|l| l.starts_with(&format!("done: {name_a} ("))),
        "A completed:\n{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("bitloop: {name_b}: ")) && l.ends_with(" 3 s")),
        "B's failure named:\n{text}"
    );
}

#[test]
fn a_magnet_link_among_torrents_exits_2_and_says_why() {
    let a = Content::make(false, 100_000, 16384, vec![]);
    let output = tempfile::tempdir().unwrap();
    let magnet = format!("magnet:?xt=urn:btih:{}", "ab".repeat(20));
    let (mut child, lines) = spawn_download(&[
        a.torrent_path.display().to_string(),
        magnet,
        "-o".into(),
        output.path().display().to_string(),
    ]);
    let status = child.wait_within(Duration::from_secs(10), "bitloop download A magnet");
    let text = all_lines(&lines).join("\n");
    assert_eq!(status.code(), Some(2), "exit status; stderr:\n{text}");
    assert!(text.contains("metadata"), "says why:\n{text}");
}

#[test]
fn the_same_torrent_given_twice_is_refused() {
    let a = Content::make(false, 100_000, 16384, vec![]);
    let output = tempfile::tempdir().unwrap();
    let path = a.torrent_path.display().to_string();
    let (mut child, lines) = spawn_download(&[
        path.clone(),
        path,
        "-o".into(),
        output.path().display().to_string(),
    ]);
    let status = child.wait_within(Duration::from_secs(10), "bitloop download A A");
    let text = all_lines(&lines).join("\n");
    assert!(!status.success(), "exit status {status:?}; stderr:\n{text}");
    assert!(text.contains("twice"), "says why:\n{text}");
}
