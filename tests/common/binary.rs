//! The real `bitloop` binary as a child process: `bitloop seed` and `bitloop
//! download` on a port chosen here, waited for with deadlines, stopped with
//! SIGINT, and their `--json` summary read back. Also the child's memory and CPU
//! as the kernel reports them (`/proc/PID/status`, `/proc/PID/stat`).
//!
//! Every wait is bounded; a child still running when its guard drops is killed.

#![allow(dead_code)] // included with #[path] by several test binaries, each using a part

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::bounded::{Lines, NoLine};

/// How long a child may take to start listening, or to check small test data.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A port nobody listens on, outside the kernel's ephemeral range (so that no
/// outgoing connection of another test can hold it), never handed out twice in
/// this process. The caller's bind may still lose a race with another process:
/// [`Bitloop::start`] retries with another port when the child cannot listen.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos());
    let mut state = (std::process::id() ^ nanos) | 1;
    loop {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let port = 20_000 + (state % 12_000) as u16;
        let mut handed_out = HANDED_OUT.lock().unwrap();
        if handed_out.contains(&port) {
            continue;
        }
        let v4 = TcpListener::bind(("0.0.0.0", port)).is_ok();
        let v6 = TcpListener::bind(("::", port)).is_ok() || TcpListener::bind(("::1", 0)).is_err();
        if v4 && v6 {
            handed_out.push(port);
            return port;
        }
    }
}

/// Whether something listens on TCP `port` (from `/proc/net/tcp*`, without
/// connecting, so the child sees no probe connection).
pub fn listening(port: u16) -> bool {
    let wanted = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // local_address is field 1, st is field 3; 0A is LISTEN.
                fields.len() > 3 && fields[1].ends_with(&wanted) && fields[3] == "0A"
            })
    })
}

/// A running `bitloop`; killed if still running when dropped.
pub struct Bitloop {
    child: Child,
    stderr: Lines,
    /// Every stderr line read so far (for messages when something fails).
    seen: Vec<String>,
    stdout: Receiver<String>,
    pub port: u16,
    what: String,
}

/// How a child ended.
#[derive(Debug)]
pub struct Exit {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: Vec<String>,
}

impl Exit {
    /// The `--json` summary on stdout.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not the --json summary ({e}): {:?}\nstderr:\n{}",
                self.stdout,
                self.stderr.join("\n")
            )
        })
    }
}

impl Bitloop {
    /// `bitloop seed TORRENT --data DATA --port P ARGS…`, ready once its data is
    /// checked and it serves (its progress line says "complete").
    pub fn seed(torrent: &Path, data: &Path, args: &[&str]) -> Bitloop {
        let mut all = vec![
            "seed",
            torrent.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let mut seeder = Bitloop::start("bitloop seed", &all);
        seeder.wait_line(READY_WITHIN, |l| l.ends_with("complete"));
        seeder
    }

    /// `bitloop download TORRENT -o OUTPUT --port P ARGS…`, once it listens.
    pub fn download(torrent: &Path, output: &Path, args: &[&str]) -> Bitloop {
        let mut all = vec![
            "download",
            torrent.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        Bitloop::start("bitloop download", &all)
    }

    /// Runs `bitloop ARGS… --port P` on a free port, retrying with another port if
    /// it could not listen; returns once it listens.
    pub fn start(what: &str, args: &[&str]) -> Bitloop {
        for _ in 0..5 {
            match Bitloop::spawn(free_port(), what, args) {
                Ok(process) => return process,
                Err(_) => continue, // the port was taken after all: another one
            }
        }
        panic!("{what}: no free port in five tries");
    }

    /// Runs `bitloop ARGS… --port PORT` (a port others were told); returns once it
    /// listens.
    pub fn start_on(port: u16, what: &str, args: &[String]) -> Bitloop {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Bitloop::spawn(port, what, &args).unwrap_or_else(|why| panic!("{what}: {why}"))
    }

    /// Starts the child and waits until it listens; `Err` if it exited saying it
    /// cannot listen (another process took the port).
    fn spawn(port: u16, what: &str, args: &[&str]) -> Result<Bitloop, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bitloop"))
            .args(args)
            .args(["--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the bitloop binary");
        let stderr = Lines::new(child.stderr.take().unwrap(), what);
        let mut out = child.stdout.take().unwrap();
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        let mut process = Bitloop {
            child,
            stderr,
            seen: Vec::new(),
            stdout,
            port,
            what: format!("{what} (port {port})"),
        };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if listening(port) {
                return Ok(process);
            }
            if let Some(status) = process.child.try_wait().unwrap() {
                process.drain_stderr();
                let text = process.seen.join("\n");
                assert!(
                    text.contains("cannot listen"),
                    "{} exited ({status}) before listening:\n{text}",
                    process.what
                );
                return Err(text);
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen within {READY_WITHIN:?}",
                process.what
            );
            std::thread::sleep(Duration::from_millis(10)); // polling another process's startup
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads stderr until a line matches `wanted`, within `limit`; panics with
    /// everything it printed otherwise.
    pub fn wait_line(&mut self, limit: Duration, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.try_line_within(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(why) => panic!(
                    "{}: no awaited line within {limit:?} ({why:?}); stderr:\n{}",
                    self.what,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits until a progress line printed from now on says no peer is connected
    /// (lines already printed are skipped: they may predate what the caller waits
    /// for). Progress lines come every 5 s when stderr is not a terminal.
    pub fn wait_no_peers(&mut self, limit: Duration) {
        while let Ok(line) = self.stderr.try_line_within(Duration::ZERO) {
            self.seen.push(line);
        }
        self.wait_line(limit, |l| l.contains(" 0 peers "));
    }

    fn drain_stderr(&mut self) {
        while let Ok(line) = self.stderr.try_line_within(Duration::from_millis(200)) {
            self.seen.push(line);
        }
    }

    /// Sends SIGINT (Ctrl+C): a graceful stop.
    pub fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("run kill (procps)");
        assert!(status.success(), "kill -INT {} failed", self.child.id());
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the exit within `limit` (panics, after killing it, otherwise).
    pub fn wait_exit(mut self, limit: Duration) -> Exit {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.drain_stderr();
                panic!(
                    "{} did not exit within {limit:?}; stderr:\n{}",
                    self.what,
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10)); // polling a child's exit
        };
        loop {
            match self.stderr.try_line_within(Duration::from_secs(5)) {
                Ok(line) => self.seen.push(line),
                Err(NoLine::Closed) => break,
                Err(why) => panic!("{}: stderr after exit: {why:?}", self.what),
            }
        }
        let stdout = self
            .stdout
            .recv_timeout(Duration::from_secs(5))
            .expect("stdout closes at exit");
        Exit {
            status,
            stdout,
            stderr: std::mem::take(&mut self.seen),
        }
    }

    /// SIGINT, then the exit within `limit`.
    pub fn stop(self, limit: Duration) -> Exit {
        self.interrupt();
        self.wait_exit(limit)
    }

    /// A figure of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`, `RssAnon`, …).
    pub fn status_kib(&self, field: &str) -> u64 {
        proc_status_kib(self.child.id(), field)
    }
}

impl Drop for Bitloop {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A figure of `/proc/PID/status` in KiB; panics if the process is gone.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Each peer's `downloaded` from a `--json` summary, by peer id.
pub fn downloaded_by_peer(summary: &serde_json::Value) -> Vec<(String, u64)> {
    summary["peers"]
        .as_array()
        .expect("peers in the summary")
        .iter()
        .map(|p| {
            (
                p["peer_id"].as_str().expect("peer_id").to_string(),
                p["downloaded"].as_u64().expect("downloaded"),
            )
        })
        .collect()
}
