//! Waits with a deadline, so that no test can hang: accepting a connection,
//! joining a thread, reading a line from a child process, waiting for a child
//! to exit or running one to its end. Each has a `try_` form that says what
//! happened or a plain form that panics with a message naming what never came.
//!
//! They poll (a few milliseconds apart) or wait on a channel with a timeout;
//! neither is a sleep standing in for synchronisation.

use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::resume_unwind;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a polled wait looks again.
const POLL: Duration = Duration::from_millis(2);

/// Accepts one connection on `listener` if one comes within `limit`. The listener
/// is polled in non-blocking mode and left blocking again; the stream is blocking.
pub fn try_accept_within(listener: &TcpListener, limit: Duration) -> Option<(TcpStream, SocketAddr)> {
    listener.set_nonblocking(true).expect("non-blocking listener");
    let deadline = Instant::now() + limit;
    let accepted = loop {
        match listener.accept() {
            Ok(accepted) => break Some(accepted),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                if Instant::now() >= deadline {
                    break None;
                }
                std::thread::sleep(POLL);
            }
            Err(e) => panic!("accept failed: {e}"),
        }
    };
    listener.set_nonblocking(false).expect("blocking listener");
    let (stream, peer) = accepted?;
    stream.set_nonblocking(false).expect("blocking stream");
    Some((stream, peer))
}

/// Accepts one connection within `limit`, or panics saying `what` never connected.
pub fn accept_within(listener: &TcpListener, limit: Duration, what: &str) -> (TcpStream, SocketAddr) {
    try_accept_within(listener, limit).unwrap_or_else(|| {
        let at = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        panic!("{what}: nothing connected to {at} within {limit:?}")
    })
}

/// Joins `handle` if its thread ends within `limit`: `Ok` with its value, or
/// `Err(handle)` to wait again. A panic in the thread is re-raised here.
pub fn try_join_within<T>(handle: JoinHandle<T>, limit: Duration) -> Result<T, JoinHandle<T>> {
    let deadline = Instant::now() + limit;
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return Err(handle);
        }
        std::thread::sleep(POLL);
    }
    Ok(handle.join().unwrap_or_else(|panic| resume_unwind(panic)))
}

/// Joins `handle` within `limit`, or panics saying `what` did not finish (the
/// thread is left running; the failing test ends the process soon enough).
pub fn join_within<T>(handle: JoinHandle<T>, limit: Duration, what: &str) -> T {
    try_join_within(handle, limit)
        .unwrap_or_else(|_| panic!("{what}: thread did not finish within {limit:?}"))
}

/// Why no line came.
#[derive(Debug, PartialEq, Eq)]
pub enum NoLine {
    /// Nothing within the time allowed.
    Timeout,
    /// The output closed (the process exited, or closed its stdout).
    Closed,
    /// Reading failed.
    Io(ErrorKind),
}

/// The lines of a child's output, read on a thread of their own so that every
/// wait for one has a deadline. The thread ends when the output closes.
pub struct Lines {
    rx: Receiver<std::io::Result<String>>,
    what: String,
}

impl Lines {
    /// Reads `output` (for example `child.stdout.take().unwrap()`); `what` names
    /// the process in messages.
    pub fn new(output: impl Read + Send + 'static, what: &str) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines() {
                let failed = line.is_err();
                if tx.send(line).is_err() || failed {
                    break;
                }
            }
        });
        Lines {
            rx,
            what: what.to_string(),
        }
    }

    /// The next line (without its newline) if one comes within `limit`.
    pub fn try_line_within(&self, limit: Duration) -> Result<String, NoLine> {
        match self.rx.recv_timeout(limit) {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(e)) => Err(NoLine::Io(e.kind())),
            Err(RecvTimeoutError::Timeout) => Err(NoLine::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(NoLine::Closed),
        }
    }

    /// The next line within `limit`, or a panic saying what the process did instead.
    pub fn line_within(&self, limit: Duration) -> String {
        self.try_line_within(limit).unwrap_or_else(|why| match why {
            NoLine::Timeout => panic!("{} printed no line within {limit:?}", self.what),
            NoLine::Closed => panic!("{} closed its output without printing a line", self.what),
            NoLine::Io(kind) => panic!("reading {}'s output failed: {kind:?}", self.what),
        })
    }
}

/// Waits for `child` to exit within `limit`; past it the child is killed and the
/// test panics saying `what` did not exit. Polls `try_wait` (another process's
/// exit cannot be waited on with a timeout otherwise).
pub fn wait_within(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait(); // killed: ends at once
            panic!("{what} did not exit within {limit:?} (killed)");
        }
        std::thread::sleep(POLL);
    }
}

/// Runs `command` (stdin empty, stdout and stderr captured) to its end within
/// `limit`, as `Command::output` does but bounded: past the limit the process is
/// killed and the test panics naming `what` and what it printed on stderr so far.
pub fn output_within(command: &mut Command, limit: Duration, what: &str) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let said = try_join_within(stderr, Duration::from_secs(5)).unwrap_or_default();
            panic!(
                "{what} did not exit within {limit:?} (killed); its stderr:\n{}",
                String::from_utf8_lossy(&said)
            );
        }
        std::thread::sleep(POLL);
    };
    // The pipes close when the process (and any child it left) is gone.
    let pipe_limit = Duration::from_secs(10);
    Output {
        status,
        stdout: join_within(stdout, pipe_limit, &format!("{what}'s stdout")),
        stderr: join_within(stderr, pipe_limit, &format!("{what}'s stderr")),
    }
}
