//! Torrents by URL through the real binary (issue 20): `bitloop download URL`
//! fetches the torrent from a local HTTP server, directly and through a redirect,
//! and completes from a python3-libtorrent seeder; a URL that answers 404, an HTML
//! page, something that is not a torrent or an oversized body ends with exit 1 and
//! a message naming the URL and what was wrong, and nothing is downloaded.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use bitloop::metainfo::MAX_TORRENT_BYTES;
use common::bounded::output_within;
use common::http_server::{response, serve};
use common::seeders::{Content, Seeder};

/// What a run may take: small data on loopback, so only reached if something hangs.
const RUN_LIMIT: Duration = Duration::from_secs(90);

fn download(url: &str, output: &Path, extra: &[&str]) -> Output {
    output_within(
        Command::new(env!("CARGO_BIN_EXE_bitloop"))
            .args(["download", url, "-o"])
            .arg(output)
            .args(["--quiet", "--timeout", "30"])
            .args(extra),
        RUN_LIMIT,
        "bitloop download",
    )
}

#[test]
fn a_torrent_fetched_by_url_downloads_directly_and_through_a_redirect() {
    let content = Content::make(true, 800_000, 16384, vec![]);
    let seeder = Seeder::start(&content.torrent_path, &content.save_path);
    let bytes = std::fs::read(&content.torrent_path).unwrap();
    let peer = seeder.addr().to_string();
    let torrent = response("200 OK", "Content-Type: application/x-bittorrent\r\n", &bytes);

    let server = serve(vec![torrent.clone()]);
    let direct = content.dir.path().join("direct");
    let url = format!("http://{}/t.torrent", server.addr);
    let out = download(&url, &direct, &["--peer", &peer]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    content.assert_identical(&direct);
    assert_eq!(server.requests(), ["GET /t.torrent HTTP/1.1"]);

    // A relative redirect, as file hosts and trackers' download links answer.
    let moved = response("302 Found", "Location: /files/real.torrent?key=1\r\n", b"");
    let server = serve(vec![moved, torrent]);
    let redirected = content.dir.path().join("redirected");
    let url = format!("http://{}/download.php?id=7", server.addr);
    let out = download(&url, &redirected, &["--peer", &peer]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    content.assert_identical(&redirected);
    assert_eq!(
        server.requests(),
        [
            "GET /download.php?id=7 HTTP/1.1",
            "GET /files/real.torrent?key=1 HTTP/1.1"
        ]
    );
}

#[test]
fn a_url_that_answers_404_html_or_too_much_fails_with_exit_1() {
    let endless = {
        let mut body = b"HTTP/1.1 200 OK\r\n\r\nd".to_vec();
        body.resize(MAX_TORRENT_BYTES as usize + 64 * 1024, b'x');
        body
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "404",
            response("404 Not Found", "", b"no such file"),
            "answered HTTP 404",
        ),
        (
            "HTML",
            response(
                "200 OK",
                "Content-Type: text/html\r\n",
                b"<html>log in first</html>",
            ),
            "HTML page",
        ),
        (
            "not a torrent",
            response("200 OK", "", b"just text"),
            "not a torrent file",
        ),
        (
            "bencode that is not a torrent",
            response("200 OK", "", b"d3:foo3:bare"),
            "no `info`",
        ),
        (
            "an oversized Content-Length",
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                MAX_TORRENT_BYTES + 1
            )
            .into_bytes(),
            "larger than",
        ),
        ("an endless body", endless, "larger than"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (case, answer, says) in cases {
        let server = serve(vec![answer]);
        let url = format!("http://{}/t.torrent", server.addr);
        let output = dir.path().join("out");
        let out = download(&url, &output, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
        assert!(
            stderr.starts_with(&format!("bitloop: {url}: ")) && stderr.contains(says),
            "{case}: the error names the URL and says {says:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{case}: one line: {stderr}");
        assert!(out.stdout.is_empty(), "{case}");
        assert!(!output.exists(), "{case}: nothing was downloaded");
        server.finish();
    }
}
