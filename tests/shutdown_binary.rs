//! Shutdown of the real binary: Ctrl+C ends a download with exit code 130 after
//! telling the tracker `stopped`; a tracker that never answers cannot hold the
//! process past the 3 s deadline; a second Ctrl+C skips the goodbyes; a download
//! that cannot finish exits 1 with a message.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::bounded::output_within;
use common::seeders::Content;

/// An HTTP tracker that reports each request's `event` on a channel. It answers
/// `started` (and periodic) announces; `stopped` is answered only if `answer_stopped`.
fn recording_tracker(answer_stopped: bool) -> (String, mpsc::Receiver<String>, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/announce", listener.local_addr().unwrap());
    let (events, seen) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut held = Vec::new();
        while Instant::now() < deadline {
            let Ok((mut stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5)); // polling so the thread ends by itself
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 2048];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let text = String::from_utf8_lossy(&request).into_owned();
            // Only bitloop's announces are recorded (a seeder may announce here too).
            if !text.contains("peer_id=-BL0001-") {
                let body = b"d8:intervali1800e5:peers0:e";
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(body);
                continue;
            }
            let event = text
                .split(['&', ' '])
                .find_map(|p| p.strip_prefix("event="))
                .unwrap_or("")
                .to_string();
            let stopped = event == "stopped";
            if events.send(event).is_err() {
                return;
            }
            if stopped && !answer_stopped {
                held.push(stream); // never answered
                continue;
            }
            let body = b"d8:intervali1800e5:peers0:e";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        }
    });
    (url, seen, thread)
}

fn interrupt(pid: u32) {
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

struct Run {
    child: std::process::Child,
    events: mpsc::Receiver<String>,
    _content: Content,
    _tracker: std::thread::JoinHandle<()>,
}

/// Starts `bitloop download` on a torrent nobody seeds, announcing to a recording
/// tracker; returns once the tracker saw `started` (so the loop and its signal
/// handler are running).
fn start(answer_stopped: bool) -> Run {
    let (url, events, tracker) = recording_tracker(answer_stopped);
    let content = Content::make(false, 100_000, 16384, vec![url]);
    let output = content.dir.path().join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_bitloop"))
        .args([
            "download",
            content.torrent_path.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
            "--quiet",
        ])
        .args(["--port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = events
        .recv_timeout(Duration::from_secs(10))
        .expect("the binary announced");
    assert_eq!(first, "started");
    Run {
        child,
        events,
        _content: content,
        _tracker: tracker,
    }
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> (i32, String) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            return (status.code().unwrap_or(-1), stderr);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10)); // polling another process's exit
    }
}

#[test]
fn ctrl_c_announces_stopped_and_exits_130() {
    let mut run = start(true);
    interrupt(run.child.id());
    let (code, stderr) = wait_exit(&mut run.child, Duration::from_secs(5));
    assert_eq!(code, 130, "{stderr}");
    assert_eq!(
        run.events.recv_timeout(Duration::from_secs(1)).unwrap(),
        "stopped",
        "the tracker's log shows stopped"
    );
    assert!(stderr.is_empty(), "--quiet prints nothing: {stderr}");
}

#[test]
fn a_tracker_that_never_answers_stopped_cannot_hold_the_process() {
    let mut run = start(false);
    let signalled = Instant::now();
    interrupt(run.child.id());
    let (code, stderr) = wait_exit(&mut run.child, Duration::from_secs(5));
    let took = signalled.elapsed();
    assert_eq!(code, 130, "{stderr}");
    assert_eq!(
        run.events.recv_timeout(Duration::from_secs(1)).unwrap(),
        "stopped"
    );
    assert!(
        took >= Duration::from_secs(3) - Duration::from_millis(200),
        "waited for the deadline: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_second_ctrl_c_skips_the_goodbyes() {
    let mut run = start(false);
    interrupt(run.child.id());
    // The stopped announce is out (and will never be answered): interrupt again.
    assert_eq!(
        run.events.recv_timeout(Duration::from_secs(5)).unwrap(),
        "stopped"
    );
    let second = Instant::now();
    interrupt(run.child.id());
    let (code, stderr) = wait_exit(&mut run.child, Duration::from_secs(5));
    assert_eq!(code, 130, "{stderr}");
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "did not wait for the deadline: {:?}",
        second.elapsed()
    );
}

#[test]
fn a_download_without_peers_fails_with_a_message() {
    let content = Content::make(false, 100_000, 16384, vec![]);
    let output = content.dir.path().join("out");
    let mut out = Command::new(env!("CARGO_BIN_EXE_bitloop"));
    out.args([
        "download",
        content.torrent_path.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ])
    .args(["--timeout", "1", "--quiet"]);
    let out = output_within(&mut out, Duration::from_secs(30), "bitloop download");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no peers within 1 s"), "{stderr}");
}

#[test]
fn a_completed_download_announces_completed_then_stopped() {
    let (url, events, _tracker) = recording_tracker(true);
    let content = Content::make(false, 500_000, 16384, vec![url]);
    let seeder = common::seeders::Seeder::start(&content.torrent_path, &content.save_path);
    let output = content.dir.path().join("out");
    let mut out = Command::new(env!("CARGO_BIN_EXE_bitloop"));
    out.args([
        "download",
        content.torrent_path.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ])
    .args(["--peer", &seeder.addr().to_string(), "--quiet", "--timeout", "20"]);
    let out = output_within(&mut out, Duration::from_secs(60), "bitloop download");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Vec<String> = events.try_iter().collect();
    assert_eq!(seen, ["started", "completed", "stopped"]);
    content.assert_identical(&output);
}
