//! IPv6 end to end on `::1` through the real binary (issue 20), with the mini
//! tracker (Debian's opentracker is IPv4-only) and python3-libtorrent:
//! - `bitloop download` finds two libtorrent seeders listening only on `[::1]`
//!   through the tracker's `peers6` and completes from them (no `--peer`);
//! - a libtorrent leecher listening only on `[::1]` downloads from `bitloop seed`,
//!   whose IPv6 address and port the tracker learnt from its announce over IPv6.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bounded::{output_within, wait_within, Lines};
use common::libtorrent::PYTHON;
use common::mini_tracker::MiniTracker;
use common::seeders::{Content, Seeder};

/// What a run may take: small data on loopback, so only reached if something hangs.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// Polls the tracker until its swarm for `content` holds `count` IPv6 members;
/// returns them.
fn wait_for_v6_members(
    tracker: &MiniTracker,
    content: &Content,
    count: usize,
    what: &str,
) -> Vec<SocketAddr> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let members: Vec<SocketAddr> = tracker
            .peers(content.torrent.info_hash.0)
            .into_iter()
            .filter(SocketAddr::is_ipv6)
            .collect();
        if members.len() >= count {
            return members;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not announce over IPv6 within 30 s: {members:?}"
        );
        std::thread::sleep(Duration::from_millis(20)); // polling the tracker's table
    }
}

#[test]
fn a_download_from_libtorrent_seeders_on_ipv6_found_through_peers6() {
    let tracker = MiniTracker::start();
    let content = Content::make(true, 2_000_000, 32768, vec![tracker.url_v6()]);
    let seeders: Vec<Seeder> = (0..2)
        .map(|_| {
            Seeder::start_with(
                &content.torrent_path,
                &content.save_path,
                &["--interface", "[::1]"],
            )
        })
        .collect();
    let members = wait_for_v6_members(&tracker, &content, 2, "the seeders");
    for seeder in &seeders {
        assert!(members.contains(&seeder.addr_v6()), "{members:?}");
    }
    assert!(
        tracker
            .peers(content.torrent.info_hash.0)
            .iter()
            .all(SocketAddr::is_ipv6),
        "the seeders listen on ::1 only"
    );

    let output = content.dir.path().join("out");
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_bitloop"))
            .args(["download", content.torrent_path.to_str().unwrap(), "-o"])
            .arg(&output)
            .args(["--quiet", "--json", "--timeout", "30"]),
        RUN_LIMIT,
        "bitloop download",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    content.assert_identical(&output);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut total = 0;
    for peer in summary["peers"].as_array().unwrap() {
        let addr: SocketAddr = peer["addr"].as_str().unwrap().parse().unwrap();
        assert!(
            seeders.iter().any(|s| s.addr_v6() == addr),
            "every peer is one of the IPv6 seeders: {summary}"
        );
        total += peer["downloaded"].as_u64().unwrap();
    }
    assert_eq!(total, content.torrent.total_length(), "{summary}");
    // bitloop told the tracker `stopped` over IPv6 as it left: only the seeders remain.
    assert_eq!(tracker.peers(content.torrent.info_hash.0).len(), 2);
}

#[test]
fn a_libtorrent_leecher_downloads_from_bitloop_seed_over_ipv6() {
    let tracker = MiniTracker::start();
    let content = Content::make(false, 2_000_000, 32768, vec![tracker.url_v6()]);
    let mut seed = Command::new(env!("CARGO_BIN_EXE_bitloop"))
        .args(["seed", content.torrent_path.to_str().unwrap(), "--data"])
        .arg(&content.save_path)
        .args(["--json", "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = Lines::new(seed.stdout.take().unwrap(), "bitloop seed");
    let stderr = Lines::new(seed.stderr.take().unwrap(), "bitloop seed's stderr");
    // bitloop announced over IPv6 from ::1 with the port it listens on for both families.
    let members = wait_for_v6_members(&tracker, &content, 1, "bitloop seed");
    let ours = members[0];
    assert_eq!(ours.ip(), IpAddr::from(std::net::Ipv6Addr::LOCALHOST));

    let leeched = content.dir.path().join("leeched");
    let tool = format!("{}/tests/interop/libtorrent_tool.py", env!("CARGO_MANIFEST_DIR"));
    let out = output_within(
        Command::new(PYTHON)
            .arg(&tool)
            .args(["leech", content.torrent_path.to_str().unwrap()])
            .arg(&leeched)
            .args(["--interface", "[::1]", "--timeout", "60", "--peer"])
            .arg(ours.to_string()),
        RUN_LIMIT,
        "the libtorrent leecher",
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("\"complete\": true"),
        "the leecher did not complete: {said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    content.assert_identical(&leeched);

    // Ctrl+C is how a seed ends (exit 0: the torrent is complete); its summary names
    // the leecher, over IPv6, and what it took.
    let status = Command::new("kill")
        .args(["-INT", &seed.id().to_string()])
        .status()
        .expect("kill (procps) runs; scripts/test-all.sh installs it");
    assert!(status.success());
    let status = wait_within(&mut seed, Duration::from_secs(20), "bitloop seed");
    let json = stdout.line_within(Duration::from_secs(5));
    let mut errors = Vec::new();
    while let Ok(line) = stderr.try_line_within(Duration::from_secs(5)) {
        errors.push(line);
    }
    assert_eq!(status.code(), Some(0), "{errors:?}");
    let summary: serde_json::Value = serde_json::from_str(&json).unwrap();
    let peers = summary["peers"].as_array().unwrap();
    let uploaded: u64 = peers
        .iter()
        .filter(|p| {
            let addr: SocketAddr = p["addr"].as_str().unwrap().parse().unwrap();
            addr.is_ipv6()
        })
        .map(|p| p["uploaded"].as_u64().unwrap())
        .sum();
    assert!(
        uploaded >= content.torrent.total_length(),
        "the IPv6 leecher took everything from us: {summary}"
    );
}
