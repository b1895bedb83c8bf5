//! Torrents by URL (issue 20): fetched with the trackers' HTTP code from a local
//! server, directly and through a redirect; a 404, an HTML page, something that is
//! not a torrent, and an oversized body each give a clear error. `bitloop info`
//! takes the URL like a path.

mod common;

use std::process::Command;

use bitloop::client::trackers::fetch_url;
use bitloop::metainfo::create::{create_torrent, CreateOptions};
use bitloop::metainfo::MAX_TORRENT_BYTES;
use common::bounded::output_within;
use common::http_server::{response, serve};
use common::trackers::config;

/// What one `bitloop info` of a loopback URL may take (only reached if it hangs).
const LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

fn torrent() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, b"hello from a torrent fetched by URL").unwrap();
    create_torrent(&file, &CreateOptions::default(), &mut |_, _| {}).unwrap()
}

fn fetch(responses: Vec<Vec<u8>>, path: &str) -> (Result<Vec<u8>, String>, Vec<String>) {
    let server = serve(responses);
    let url = format!("http://{}{path}", server.addr);
    let result = fetch_url(&url, &config());
    (result, server.requests())
}

#[test]
fn a_torrent_is_fetched_directly_and_through_a_redirect() {
    let bytes = torrent();
    let ok = response("200 OK", "Content-Type: application/x-bittorrent\r\n", &bytes);
    let (result, requests) = fetch(vec![ok.clone()], "/files/x.torrent");
    assert_eq!(result.as_deref(), Ok(&bytes[..]));
    assert_eq!(requests, ["GET /files/x.torrent HTTP/1.1"]);

    let moved = response("302 Found", "Location: ../other/x.torrent?sig=1\r\n", b"");
    let (result, requests) = fetch(vec![moved, ok], "/files/x.torrent");
    assert_eq!(result.as_deref(), Ok(&bytes[..]));
    assert_eq!(requests[1], "GET /other/x.torrent?sig=1 HTTP/1.1");
}

#[test]
fn not_found_html_not_a_torrent_and_oversized_are_clear_errors() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            response("404 Not Found", "", b"no such file"),
            "answered HTTP 404",
        ),
        (
            response(
                "200 OK",
                "Content-Type: text/html; charset=utf-8\r\n",
                b"d8:looks like bencode",
            ),
            "HTML page",
        ),
        (
            response("200 OK", "", b"  <!DOCTYPE html><html>login</html>"),
            "HTML page",
        ),
        (
            response("200 OK", "Content-Type: text/plain\r\n", b"hello"),
            "not a torrent file",
        ),
        (
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                MAX_TORRENT_BYTES + 1
            )
            .into_bytes(),
            "larger than",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2000000\r\n".to_vec(),
            "larger than",
        ),
    ];
    for (answer, expected) in cases {
        let (result, _) = fetch(vec![answer], "/x.torrent");
        let error = result.unwrap_err();
        assert!(error.contains(expected), "{error:?} should say {expected:?}");
        assert!(
            error.starts_with("http://127.0.0.1:"),
            "the error names the URL: {error}"
        );
    }
    // A body that just keeps coming, with no length: cut at the limit.
    let mut endless = b"HTTP/1.1 200 OK\r\n\r\nd".to_vec();
    endless.resize(MAX_TORRENT_BYTES as usize + 64 * 1024, b'x');
    let (result, _) = fetch(vec![endless], "/x.torrent");
    assert!(result.unwrap_err().contains("larger than"));
}

#[test]
fn bitloop_info_takes_a_url() {
    let bytes = torrent();
    let server = serve(vec![
        response("200 OK", "", &bytes),
        response("404 Not Found", "", b""),
    ]);
    let bin = env!("CARGO_BIN_EXE_bitloop");
    let url = format!("http://{}/x.torrent", server.addr);
    let out = output_within(Command::new(bin).args(["info", &url]), LIMIT, "bitloop info");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("name:       hello.txt"), "{stdout}");
    let out = output_within(Command::new(bin).args(["info", &url]), LIMIT, "bitloop info");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("answered HTTP 404"), "{stderr}");
    server.finish();
}

#[cfg(feature = "https")]
#[test]
fn bitloop_info_fetches_over_https_trusting_ssl_cert_file() {
    use common::https_tracker::{serve_https, Leaf, TestPki};
    let pki = TestPki::new(Leaf::Good);
    let bytes = torrent();
    let server = serve_https(
        &pki,
        vec![response("200 OK", "", &bytes), response("200 OK", "", &bytes)],
    );
    let url = format!("https://127.0.0.1:{}/x.torrent", server.addr.port());
    let bin = env!("CARGO_BIN_EXE_bitloop");
    let out = output_within(
        Command::new(bin)
            .args(["info", &url])
            .env("SSL_CERT_FILE", &pki.ca_file),
        LIMIT,
        "bitloop info",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello.txt"));
    // Without the test CA among the trusted roots: a clear error, not a hang.
    let other = TestPki::new(Leaf::Good);
    let out = output_within(
        Command::new(bin)
            .args(["info", &url])
            .env("SSL_CERT_FILE", &other.ca_file),
        LIMIT,
        "bitloop info",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown authority"), "{stderr}");
    server.finish();
}
