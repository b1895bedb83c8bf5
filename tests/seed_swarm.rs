//! A bitloop swarm of separate processes on loopback: one `bitloop seed` and three
//! `bitloop download --seed-time …` leechers, told each other's addresses with
//! `--peer`. Every copy must be right, and each leecher must have received some of
//! its bytes from another leecher, not only from the seeder: asserted from the
//! `--json` per-peer counts, classified by peer id against the seeder's own
//! `peer_id`.

#[path = "common/binary.rs"]
mod binary;
mod common;

use std::time::Duration;

use binary::{downloaded_by_peer, free_port, Bitloop};
use common::seeders::Content;

const LEECHERS: usize = 3;
/// 12 MiB of pieces.
const SIZE: usize = 12 << 20;
/// The seeder's upload limit. Without it the seeder alone could fill all three on
/// loopback before they trade; at 2 MiB/s it needs 18 s for three copies, while
/// together they finish in a few seconds, so each must take pieces from the others.
const SEEDER_RATE: &str = "2M";

/// Who is told whose address.
#[derive(Clone, Copy, PartialEq)]
enum Told {
    /// Each pair has one dialer: leecher i is told the seeder and leechers before it.
    Once,
    /// Everyone is told everyone (pairs dial each other, and one connection of the
    /// two is closed).
    Everyone,
}

fn peers(ports: &[u16]) -> Vec<String> {
    ports
        .iter()
        .flat_map(|p| ["--peer".to_string(), format!("127.0.0.1:{p}")])
        .collect()
}

/// What one swarm run produced: each leecher's summary, then the seeder's.
fn swarm(told: Told, seeder_last: bool) -> (Vec<serde_json::Value>, serde_json::Value) {
    let content = Content::make(false, SIZE, 262_144, vec![]);
    let torrent = content.torrent_path.to_str().unwrap();
    // Every port is chosen up front so that each process can be told the others.
    let ports: Vec<u16> = (0..LEECHERS).map(|_| free_port()).collect();
    let mut args = vec![
        "--json".to_string(),
        "--max-upload-rate".into(),
        SEEDER_RATE.into(),
    ];
    if told == Told::Everyone {
        args.extend(peers(&ports));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut seeder = Bitloop::seed(&content.torrent_path, &content.save_path, &args);

    let mut leechers = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        let output = content.dir.path().join(format!("leecher-{i}"));
        // The test stops them once all are complete; 120 s only bounds a failure.
        let mut args: Vec<String> = ["download", torrent, "-o", output.to_str().unwrap()]
            .map(String::from)
            .to_vec();
        args.extend(["--json", "--seed-time", "120s", "--timeout", "60"].map(String::from));
        let others: Vec<u16> = match told {
            Told::Once => ports[..i].to_vec(),
            Told::Everyone => ports.iter().copied().filter(|p| *p != port).collect(),
        };
        args.extend(peers(&others));
        args.extend(peers(&[seeder.port]));
        leechers.push((Bitloop::start_on(port, "bitloop download", &args), output));
    }
    for (leecher, _) in &mut leechers {
        leecher.wait_line(Duration::from_secs(90), |l| l.ends_with("complete"));
    }
    for (_, output) in &leechers {
        content.assert_identical(output);
    }
    let mut summaries = Vec::new();
    if !seeder_last {
        seeder.interrupt();
    }
    for (leecher, _) in leechers {
        let exit = leecher.stop(Duration::from_secs(10));
        assert!(
            exit.status.success(),
            "a seeding leecher stopped by Ctrl+C: {exit:?}"
        );
        summaries.push(exit.json());
    }
    if seeder_last {
        // The seeder has seen each leecher leave (and counted what it gave it).
        seeder.wait_no_peers(Duration::from_secs(15));
        seeder.interrupt();
    }
    let seeder_summary = seeder.wait_exit(Duration::from_secs(10)).json();
    for summary in summaries.iter().chain([&seeder_summary]) {
        assert_eq!(summary["torrents"][0]["outcome"], "completed", "{summary}");
    }
    (summaries, seeder_summary)
}

/// What a `--json` summary says each peer received from us, by peer id.
fn uploaded_by_peer(summary: &serde_json::Value) -> Vec<(String, u64)> {
    summary["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| {
            (
                p["peer_id"].as_str().unwrap().to_string(),
                p["uploaded"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Leechers stop first, so the seeder sees each leave and counts what it gave it
/// (a stopping process loses the counts of peers still connected: see the
/// ignored test below). What a leecher got from other leechers is what it
/// downloaded less what the seeder gave it.
#[test]
fn three_leechers_trade_with_each_other_while_a_rate_limited_seeder_serves_them() {
    let (summaries, seeder) = swarm(Told::Once, true);
    let seeder_id = seeder["peer_id"].as_str().unwrap();
    let gave = uploaded_by_peer(&seeder);
    for (i, summary) in summaries.iter().enumerate() {
        let id = summary["peer_id"].as_str().unwrap();
        assert_ne!(id, seeder_id);
        let downloaded = summary["torrents"][0]["downloaded"].as_u64().unwrap();
        assert!(downloaded >= SIZE as u64, "{summary}");
        assert!(
            gave.iter().any(|(p, _)| p == id),
            "the seeder counted what it gave leecher {i} ({id}): {seeder}"
        );
        let from_seeder: u64 = gave.iter().filter(|(p, _)| p == id).map(|(_, n)| n).sum();
        let from_leechers = downloaded.saturating_sub(from_seeder);
        eprintln!("leecher {i}: {from_seeder} bytes from the seeder, {from_leechers} from other leechers");
        assert!(
            from_leechers > 0,
            "leecher {i} downloaded {downloaded} bytes and the seeder gave it {from_seeder}: \
             nothing came from the other leechers"
        );
    }
    let uploaded = seeder["torrents"][0]["uploaded"].as_u64().unwrap();
    assert!(
        uploaded < (LEECHERS * SIZE) as u64,
        "the seeder served less than three copies ({uploaded} bytes): the leechers traded"
    );
}

/// The same swarm with everyone told everyone, each leecher's own counts read:
/// the bytes it got from each peer, by peer id, cover what it downloaded, and
/// some came from leechers.
#[test]
fn everyone_told_everyone_and_each_leechers_own_counts_show_the_trade() {
    let (summaries, seeder) = swarm(Told::Everyone, false);
    let seeder_id = seeder["peer_id"].as_str().unwrap();
    for (i, summary) in summaries.iter().enumerate() {
        let downloaded = summary["torrents"][0]["downloaded"].as_u64().unwrap();
        let (mut from_seeder, mut from_leechers) = (0, 0);
        for (id, bytes) in downloaded_by_peer(summary) {
            if id == seeder_id {
                from_seeder += bytes;
            } else {
                from_leechers += bytes;
            }
        }
        assert!(
            from_seeder + from_leechers >= downloaded,
            "leecher {i}'s per-peer counts ({from_seeder} + {from_leechers}) cover its {downloaded} bytes: {summary}"
        );
        assert!(from_leechers > 0, "leecher {i}: {summary}");
    }
}
