//! HTTPS end to end through the real binary (issue 20): `bitloop download` trusts a
//! test CA through `SSL_CERT_FILE`, announces to an HTTPS tracker on loopback, and
//! completes from the python3-libtorrent seeder that tracker names (no `--peer`:
//! the tracker is the only way to find it). A tracker whose certificate comes from
//! another CA ends the download with exit 1 and a message naming the tracker and
//! the reason, soon after `--timeout`, with no request sent to it. A torrent given
//! as an `https://` URL is fetched through the same TLS and downloads.

#![cfg(feature = "https")]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::bounded::output_within;
use common::http_server::{response, tracker_body, Seen};
use common::https_tracker::{serve_https, Leaf, TestPki};
use common::seeders::{Content, Seeder};

/// What a download run may take: the data is small and on loopback, so this is
/// only reached if something hangs.
const RUN_LIMIT: Duration = Duration::from_secs(90);

fn bitloop() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bitloop"))
}

/// The value of `name=` in a request line's query, if any.
fn param<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    let query = request.split(' ').nth(1)?.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// Downloads `content` (seeded by `seeder`) through an HTTPS tracker that answers
/// `started` and `completed` with the seeder and `stopped` with `stopped_peers`;
/// returns the run's output and the tracker's request lines.
fn through_https_tracker(
    content: &Content,
    seeder: &Seeder,
    stopped_peers: &[std::net::SocketAddr],
) -> (std::process::Output, Vec<String>) {
    let pki = TestPki::new(Leaf::Good);
    let answer = response("200 OK", "", &tracker_body(&[seeder.addr()]));
    let stopped = response("200 OK", "", &tracker_body(stopped_peers));
    let tracker = serve_https(&pki, vec![answer.clone(), answer, stopped]);
    let url = format!("https://127.0.0.1:{}/announce", tracker.addr.port());
    let torrent = content.with_trackers(vec![url], "https");
    let output = content.dir.path().join("out");
    let out = output_within(
        bitloop()
            .args(["download", torrent.to_str().unwrap(), "-o"])
            .arg(&output)
            .args(["--quiet", "--json", "--timeout", "30"])
            .env("SSL_CERT_FILE", &pki.ca_file),
        RUN_LIMIT,
        "bitloop download",
    );
    (out, tracker.requests())
}

#[test]
fn a_download_completes_through_an_https_tracker_trusted_by_ssl_cert_file() {
    let content = Content::make(false, 1_500_000, 32768, vec![]);
    let seeder = Seeder::start(&content.torrent_path, &content.save_path);
    let (out, requests) = through_https_tracker(&content, &seeder, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    content.assert_identical(&content.dir.path().join("out"));
    // The data came from the seeder the HTTPS tracker named.
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let from_seeder: u64 = summary["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["addr"] == seeder.addr().to_string().as_str())
        .map(|p| p["downloaded"].as_u64().unwrap())
        .sum();
    assert_eq!(from_seeder, content.torrent.total_length(), "{summary}");
    let events: Vec<Option<&str>> = requests.iter().map(|r| param(r, "event")).collect();
    assert_eq!(
        events,
        [Some("started"), Some("completed"), Some("stopped")],
        "{requests:?}"
    );
    assert!(param(&requests[0], "info_hash").is_some(), "{requests:?}");
}

/// Trackers commonly list peers in their answer to `stopped` too. Those peers are
/// offered to the stopped torrent's candidates after its addresses were cleared
/// (`TorrentTrackers::on_result` offers them whatever the event), so the session's
/// close finds a candidate left and its debug assertion panics (exit 101).
#[test]
fn peers_in_the_answer_to_stopped_are_not_kept() {
    let content = Content::make(false, 300_000, 16384, vec![]);
    let seeder = Seeder::start(&content.torrent_path, &content.save_path);
    let (out, requests) = through_https_tracker(&content, &seeder, &[seeder.addr()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(requests.len(), 3, "{requests:?}");
}

#[test]
fn a_tracker_certificate_from_another_ca_fails_the_download_clearly_and_soon() {
    let content = Content::make(false, 100_000, 16384, vec![]);
    let server_pki = TestPki::new(Leaf::Good);
    let trusted = TestPki::new(Leaf::Good);
    // Room for the first announce and retries; each handshake is refused.
    let answer = response("200 OK", "", &tracker_body(&[]));
    let tracker = serve_https(&server_pki, vec![answer; 8]);
    let url = format!("https://127.0.0.1:{}/announce", tracker.addr.port());
    let torrent = content.with_trackers(vec![url.clone()], "other-ca");
    let started = Instant::now();
    let out = output_within(
        bitloop()
            .args(["download", torrent.to_str().unwrap(), "-o"])
            .arg(content.dir.path().join("out"))
            .args(["--quiet", "--timeout", "2"])
            .env("SSL_CERT_FILE", &trusted.ca_file),
        RUN_LIMIT,
        "bitloop download",
    );
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains(&url))
        .unwrap_or_else(|| panic!("the error names the tracker {url}: {stderr}"));
    assert!(line.contains("unknown authority"), "{line}");
    assert!(stderr.contains("no peers within 2 s"), "{stderr}");
    // The stall check runs every --timeout seconds: failed at the first or second.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let seen = tracker.finish();
    assert!(!seen.is_empty(), "the tracker was tried");
    assert!(
        seen.iter().all(|s| matches!(s, Seen::Failed(_))),
        "no request may reach a tracker we do not trust: {seen:?}"
    );
}

#[test]
fn a_torrent_given_as_an_https_url_downloads() {
    let content = Content::make(true, 600_000, 16384, vec![]);
    let seeder = Seeder::start(&content.torrent_path, &content.save_path);
    let pki = TestPki::new(Leaf::Good);
    let bytes = std::fs::read(&content.torrent_path).unwrap();
    let server = serve_https(&pki, vec![response("200 OK", "", &bytes)]);
    let url = format!("https://127.0.0.1:{}/files/t.torrent", server.addr.port());
    let output = content.dir.path().join("out");
    let out = output_within(
        bitloop()
            .args(["download", &url, "-o"])
            .arg(&output)
            .args(["--quiet", "--timeout", "30", "--peer"])
            .arg(seeder.addr().to_string())
            .env("SSL_CERT_FILE", &pki.ca_file),
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
    assert_eq!(server.requests(), ["GET /files/t.torrent HTTP/1.1"]);
}
