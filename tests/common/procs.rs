//! The bitloop binary as a user runs it, with every wait bounded: a running
//! process whose stderr lines can be waited for, its exit (code, output, wall
//! time), `kill -9` and Ctrl+C, a run that reports the bytes it read
//! (`/proc/PID/io`), and `bitloop seed` as a rate-limited seeder whose upload is
//! counted per run.

use std::ffi::OsStr;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::bounded::{join_within, Lines, NoLine};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_bitloop");

/// How often an exit is polled.
const POLL: Duration = Duration::from_millis(5);

/// `bitloop download TORRENT -o OUTPUT --peer PEER EXTRA...`, the arguments for
/// [`Running::spawn`] of a download from one known peer.
pub fn download_args(torrent: &Path, output: &Path, peer: SocketAddr, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["download", path_str(torrent), "-o", path_str(output), "--peer"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    args.push(peer.to_string());
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// A bitloop process; killed (and reaped) if dropped while running.
pub struct Running {
    child: Option<Child>,
    stderr: Lines,
    /// Every stderr line read so far.
    pub lines: Vec<String>,
    stdout: Option<JoinHandle<String>>,
    started: Instant,
}

/// How a process ended.
#[derive(Debug)]
pub struct Exit {
    /// The exit code, `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// From spawn to exit.
    pub wall: Duration,
}

impl Exit {
    /// The `--json` summary on stdout.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "no JSON summary on stdout ({e}): {:?}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The first torrent of the `--json` summary.
    pub fn torrent(&self) -> Value {
        self.json()["torrents"][0].clone()
    }

    /// A counter of the first torrent (`downloaded`, `pieces`, …).
    pub fn figure(&self, name: &str) -> u64 {
        let torrent = self.torrent();
        torrent[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no {name} in {torrent}"))
    }

    /// Asserts the process exited with `code`, showing its stderr otherwise.
    pub fn assert_code(&self, code: i32) {
        assert_eq!(self.code, Some(code), "exit status; stderr:\n{}", self.stderr);
        assert!(!self.stderr.contains("panicked"), "a panic:\n{}", self.stderr);
    }
}

impl Running {
    /// Starts `bitloop ARGS` with `env` added to the environment.
    pub fn spawn<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> Running {
        let mut command = Command::new(BIN);
        command.args(args);
        Running::spawn_command(command, env)
    }

    /// Starts `program ARGS` (a wrapper such as valgrind around the binary).
    pub fn spawn_command(mut command: Command, env: &[(&str, &str)]) -> Running {
        command.envs(env.iter().copied());
        if !env.iter().any(|(k, _)| *k == "RUST_LOG") {
            command.env_remove("RUST_LOG");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        let started = Instant::now();
        let stderr = Lines::new(child.stderr.take().unwrap(), "bitloop's stderr");
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        Running {
            child: Some(child),
            stderr,
            lines: Vec::new(),
            stdout: Some(stdout),
            started,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Waits for a stderr line that `matches`, within `limit`; panics with what it
    /// printed instead.
    pub fn wait_for_line(&mut self, limit: Duration, matches: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.lines.iter().find(|l| matches(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.try_line_within(left) {
                Ok(line) => {
                    self.lines.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(why) => panic!(
                    "the line never came ({why:?} within {limit:?}); stderr so far:\n{}",
                    self.lines.join("\n")
                ),
            }
        }
    }

    /// Whether the process has exited (it is reaped by the next wait).
    pub fn has_exited(&mut self) -> bool {
        let child = self.child.as_mut().expect("running");
        child.try_wait().expect("try_wait").is_some()
    }

    /// Sends SIGINT (Ctrl+C).
    pub fn interrupt(&self) {
        signal(self.pid(), "-INT");
    }

    /// `kill -9`, then the exit.
    pub fn kill9(mut self) -> Exit {
        let _ = self.child.as_mut().expect("running").kill();
        self.wait_exit(Duration::from_secs(10))
    }

    /// Waits for the exit within `limit`; kills the process and panics after that.
    pub fn wait_exit(mut self, limit: Duration) -> Exit {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "bitloop did not exit within {limit:?}; stderr so far:\n{}",
                    self.lines.join("\n")
                );
            }
            std::thread::sleep(POLL); // polling another process's exit
        };
        let wall = self.started.elapsed();
        // The process is gone, so its outputs close: read what is left.
        loop {
            match self.stderr.try_line_within(Duration::from_secs(10)) {
                Ok(line) => self.lines.push(line),
                Err(NoLine::Closed) => break,
                Err(why) => panic!("stderr did not close after the exit: {why:?}"),
            }
        }
        let stdout = join_within(
            self.stdout.take().unwrap(),
            Duration::from_secs(10),
            "stdout reader",
        );
        Exit {
            code: status.code(),
            stdout,
            stderr: self.lines.join("\n"),
            wall,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(pid: u32, which: &str) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("run kill (procps)");
    assert!(status.success(), "kill {which} {pid}");
}

/// Bytes a run read, from `/proc/PID/io` (the process and its reaped children).
#[derive(Clone, Copy, Debug)]
pub struct ReadCounts {
    /// Bytes passed to read(2) and pread(2): page-cache hits included.
    pub rchar: u64,
    /// Bytes fetched from the disk itself.
    pub read_bytes: u64,
}

/// Runs `bitloop ARGS` to its exit (within `limit`) and says what it read. A shell
/// runs it and, once it has reaped it, prints its own `/proc/$$/io`: a reaped
/// child's counts are added to its parent's, and the shell itself reads a few
/// hundred bytes at most.
pub fn run_counting_reads<S: AsRef<OsStr>>(
    args: &[S],
    limit: Duration,
    counts_file: &Path,
) -> (Exit, ReadCounts) {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#""$0" "$@"; code=$?; cat /proc/$$/io > "$BITLOOP_IO_OUT"; exit $code"#)
        .arg(BIN)
        .args(args)
        .env("BITLOOP_IO_OUT", counts_file);
    let exit = Running::spawn_command(command, &[]).wait_exit(limit);
    let io = std::fs::read_to_string(counts_file).expect("the wrapper wrote /proc/$$/io");
    let field = |name: &str| -> u64 {
        io.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": ")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {io}"))
    };
    let counts = ReadCounts {
        rchar: field("rchar"),
        read_bytes: field("read_bytes"),
    };
    (exit, counts)
}

/// `bitloop seed` on a port of its own, with an upload limit (`None`: none).
pub struct BitloopSeeder {
    run: Running,
    pub port: u16,
}

impl BitloopSeeder {
    /// Seeds `torrent` from `data` (which must hold it); returns once it has
    /// checked its data and serves.
    pub fn start(torrent: &Path, data: &Path, rate: Option<&str>) -> BitloopSeeder {
        BitloopSeeder::start_with(torrent, data, rate, &[])
    }

    /// The same with `env` added to its environment.
    pub fn start_with(
        torrent: &Path,
        data: &Path,
        rate: Option<&str>,
        env: &[(&str, &str)],
    ) -> BitloopSeeder {
        let port = free_port();
        let mut args = vec![
            "seed".to_string(),
            torrent.to_str().unwrap().into(),
            "-d".into(),
            data.to_str().unwrap().into(),
            "--port".into(),
            port.to_string(),
            "--json".into(),
        ];
        if let Some(rate) = rate {
            args.extend(["--max-upload-rate".into(), rate.into()]);
        }
        let mut run = Running::spawn(&args, env);
        // Its progress line says "complete" once the check found every piece.
        run.wait_for_line(Duration::from_secs(60), |l| l.ends_with("complete"));
        BitloopSeeder { run, port }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Ctrl+C (a seed's normal end: exit 0); returns the bytes it uploaded in this run.
    pub fn stop(self) -> u64 {
        self.run.interrupt();
        let exit = self.run.wait_exit(Duration::from_secs(10));
        exit.assert_code(0);
        exit.figure("uploaded")
    }
}

/// A loopback port nobody listens on now (the kernel's pick for port 0).
pub fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// The bytes of `path` that are on disk: its allocated blocks (holes excluded), so
/// a sparse download's progress can be watched from outside.
pub fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}
