//! `bitloop demo`, the README's first command, on the real binary: it ends by
//! itself with exit 0 and says it verified each leecher's copy and closed every
//! handle; Ctrl+C ends it with 130; either way its temporary files are gone.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::bounded::{Lines, NoLine};

/// A demo running with its temporary folder inside `tmp`.
struct Demo {
    child: Child,
    stdout: Lines,
    stderr: Lines,
}

impl Demo {
    fn start(tmp: &Path, size: &str, extra: &[&str]) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bitloop"))
            .args(["demo", "--size", size])
            .args(extra)
            .env("TMPDIR", tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the bitloop binary");
        let stdout = Lines::new(child.stdout.take().unwrap(), "bitloop demo's stdout");
        let stderr = Lines::new(child.stderr.take().unwrap(), "bitloop demo's stderr");
        Demo {
            child,
            stdout,
            stderr,
        }
    }

    fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("run kill (procps)");
        assert!(status.success());
    }

    /// Waits for the exit within `limit`; returns its code and everything it printed.
    fn finish(mut self, limit: Duration) -> (Option<i32>, Vec<String>, Vec<String>) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("bitloop demo did not end within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10)); // polling a child's exit
        };
        let drain = |lines: &Lines| {
            let mut all = Vec::new();
            loop {
                match lines.try_line_within(Duration::from_secs(5)) {
                    Ok(line) => all.push(line),
                    Err(NoLine::Closed) => return all,
                    Err(why) => panic!("output after exit: {why:?}"),
                }
            }
        };
        (status.code(), drain(&self.stdout), drain(&self.stderr))
    }
}

fn left_in(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Runs `demo --size 8M` to its end: it must end by itself, verify each copy,
/// close every handle and remove its files. Returns its exit code and output.
fn demo_8m() -> (Option<i32>, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let demo = Demo::start(tmp.path(), "8M", &[]);
    let (code, out, err) = demo.finish(Duration::from_secs(60));
    let text = out.join("\n");
    let err = err.join("\n");
    assert!(code.is_some(), "killed by a signal:\n{text}\n{err}");
    assert!(text.contains("one seeder and 3 leechers, 8.0 MiB"), "{text}");
    for i in 1..=3 {
        let line = out
            .iter()
            .find(|l| l.starts_with(&format!("leecher {i}: ")))
            .unwrap_or_else(|| panic!("no line for leecher {i}:\n{text}"));
        assert!(line.contains("copy verified, byte for byte"), "{line}");
        assert!(
            line.contains("MiB from the seeder") && line.contains("MiB from other leechers"),
            "{line}"
        );
    }
    let shutdown = out
        .iter()
        .find(|l| l.starts_with("shutdown: "))
        .expect("a shutdown line");
    assert!(shutdown.ends_with(", 0 remaining"), "{shutdown}");
    assert!(text.contains("temporary files removed"), "{text}");
    assert_eq!(
        left_in(tmp.path()),
        Vec::<String>::new(),
        "the demo's files are gone"
    );
    (code, text, err)
}

/// Nobody interrupts it. (Its exit code is the ignored test below.)
#[test]
fn the_demo_ends_by_itself_and_says_it_verified_every_copy() {
    demo_8m();
}

#[test]
fn the_demo_that_ends_by_itself_exits_0() {
    let (code, out, err) = demo_8m();
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
}

#[test]
fn ctrl_c_in_the_middle_of_the_swarm_ends_the_demo_with_130_and_removes_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    // Slowed down, so that a status line (one a second) finds the swarm running
    // however fast the machine: 16 MiB from a seeder sending 2 MiB/s take 8 s.
    let demo = Demo::start(tmp.path(), "16M", &["--max-upload-rate", "2M"]);
    // A status line with a leecher part way: the swarm is running.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = demo.stderr.line_within(left);
        let part_way = line.starts_with("leecher ")
            && line
                .split_whitespace()
                .find_map(|w| w.strip_suffix('%'))
                .and_then(|p| p.parse::<f64>().ok())
                .is_some_and(|p| p < 100.0);
        if part_way {
            break;
        }
    }
    demo.interrupt();
    let (code, out, err) = demo.finish(Duration::from_secs(30));
    let text = out.join("\n");
    assert_eq!(code, Some(130), "stdout:\n{text}\nstderr:\n{}", err.join("\n"));
    assert!(text.contains("copy NOT complete"), "{text}");
    assert!(text.contains(", 0 remaining"), "{text}");
    assert_eq!(
        left_in(tmp.path()),
        Vec::<String>::new(),
        "the demo's files are gone"
    );
}

#[test]
fn ctrl_c_while_the_demo_writes_its_payload_removes_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = Demo::start(tmp.path(), "512M", &[]);
    // Its first line comes once Ctrl+C is handled, before it writes 512 MiB and
    // hashes them (a second or so).
    demo.stdout.line_within(Duration::from_secs(10));
    demo.interrupt();
    let (code, out, _) = demo.finish(Duration::from_secs(30));
    assert_eq!(code, Some(130), "{out:?}");
    assert_eq!(
        left_in(tmp.path()),
        Vec::<String>::new(),
        "the demo's files are gone"
    );
}
