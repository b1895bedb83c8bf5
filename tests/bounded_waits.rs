//! The bounded waits of `tests/common/bounded.rs`: each gives up at its deadline
//! when nothing comes, and returns as soon as something does.

#[allow(dead_code)]
#[path = "common/bounded.rs"]
mod bounded;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bounded::{
    accept_within, join_within, output_within, try_accept_within, try_join_within, wait_within, Lines, NoLine,
};

/// Long enough to be sure a wait really waited; short enough for the suite.
const SHORT: Duration = Duration::from_millis(200);
/// What a wait that should return at once may take on a loaded machine.
const GENEROUS: Duration = Duration::from_secs(20);

/// Asserts a wait that should time out waited its full time, and not hugely more.
fn assert_waited(started: Instant) {
    let took = started.elapsed();
    assert!(took >= SHORT, "gave up after {took:?}, before {SHORT:?}");
    assert!(took < GENEROUS, "took {took:?}");
}

#[test]
fn accept_gives_up_when_nobody_connects_and_returns_when_someone_does() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    assert!(try_accept_within(&listener, SHORT).is_none());
    assert_waited(started);

    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect(addr).unwrap();
    let (mut stream, peer) = accept_within(&listener, GENEROUS, "the client");
    assert_eq!(peer, client.local_addr().unwrap());
    stream
        .write_all(b"x")
        .expect("the accepted stream works (and blocks as usual)");
}

#[test]
#[should_panic(expected = "scripted tracker: nothing connected to 127.0.0.1:")]
fn accept_within_names_what_never_connected() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    accept_within(&listener, SHORT, "scripted tracker");
}

#[test]
fn join_gives_up_on_a_stuck_thread_and_returns_a_finished_one() {
    let (release, wait) = mpsc::channel::<u32>();
    let stuck = std::thread::spawn(move || wait.recv().unwrap() + 1);
    let started = Instant::now();
    let stuck = try_join_within(stuck, SHORT).expect_err("the thread is still waiting");
    assert_waited(started);

    release.send(41).unwrap();
    assert_eq!(join_within(stuck, GENEROUS, "released thread"), 42);
}

#[test]
#[should_panic(expected = "tracker thread: thread did not finish within")]
fn join_within_names_what_did_not_finish() {
    let (_keep, wait) = mpsc::channel::<()>();
    let stuck = std::thread::spawn(move || wait.recv());
    let _ = join_within(stuck, SHORT, "tracker thread");
}

#[test]
#[should_panic(expected = "boom in the thread")]
fn join_passes_on_the_thread_s_panic() {
    let failing = std::thread::spawn(|| panic!("boom in the thread"));
    join_within(failing, GENEROUS, "failing thread");
}

#[test]
fn a_line_comes_when_printed_and_silence_and_exit_are_told_apart() {
    // cat prints each line we send it, and nothing until we do.
    let mut child = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cat (coreutils) runs");
    let lines = Lines::new(child.stdout.take().unwrap(), "cat");
    let started = Instant::now();
    assert_eq!(lines.try_line_within(SHORT), Err(NoLine::Timeout));
    assert_waited(started);

    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"ready 1\nready 2\n").unwrap();
    assert_eq!(lines.line_within(GENEROUS), "ready 1");
    assert_eq!(lines.line_within(GENEROUS), "ready 2");
    drop(stdin); // cat exits
    assert_eq!(lines.try_line_within(GENEROUS), Err(NoLine::Closed));
    child.wait().unwrap();
}

#[test]
#[should_panic(expected = "silent child printed no line within")]
fn line_within_names_the_silent_process() {
    let mut child = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cat (coreutils) runs");
    let lines = Lines::new(child.stdout.take().unwrap(), "silent child");
    let _stdin = child.stdin.take();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lines.line_within(SHORT)));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn output_within_returns_what_a_quick_child_printed() {
    let started = Instant::now();
    let out = output_within(
        Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
        GENEROUS,
        "sh",
    );
    assert!(started.elapsed() < GENEROUS);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
}

#[test]
#[should_panic(expected = "sleepy child did not exit within")]
fn output_within_kills_a_child_that_runs_too_long() {
    output_within(
        Command::new("sh").args(["-c", "echo started >&2; exec sleep 30"]),
        SHORT,
        "sleepy child",
    );
}

#[test]
fn wait_within_kills_and_names_a_child_that_does_not_exit() {
    let mut child = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep (coreutils) runs");
    let pid = child.id();
    let started = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_within(&mut child, SHORT, "sleep 30")
    }));
    assert_waited(started);
    let message = *result.expect_err("it panics").downcast::<String>().unwrap();
    assert!(message.contains("sleep 30 did not exit within"), "{message}");
    // Killed and reaped: the process is gone.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());

    let mut quick = Command::new("true").spawn().unwrap();
    assert!(wait_within(&mut quick, GENEROUS, "true").success());
}
