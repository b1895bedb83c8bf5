//! Starting a real opentracker on loopback for a test.
//!
//! Debian's opentracker refuses to run as root and is built with a whitelist, so it
//! runs as `nobody`, chrooted into a folder of its own that holds the whitelist of
//! info hashes (hex, one per line). The process is killed when the guard drops.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct OpenTracker {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl OpenTracker {
    /// Starts opentracker serving HTTP and UDP on one loopback port for `hashes`.
    pub fn start(hashes: &[String]) -> OpenTracker {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("whitelist"), hashes.join("\n") + "\n").unwrap();
        // A free port: bind both kinds to be sure, then let go for opentracker. Ports
        // handed out earlier in this process are skipped, since a tracker started a
        // moment ago may not have bound its port yet.
        static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
        let port = loop {
            let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = tcp.local_addr().unwrap().port();
            let mut handed_out = HANDED_OUT.lock().unwrap();
            if !handed_out.contains(&port) && UdpSocket::bind(("127.0.0.1", port)).is_ok() {
                handed_out.push(port);
                break port;
            }
        };
        let child = Command::new("/usr/bin/opentracker")
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-P",
                &port.to_string(),
            ])
            .args([
                "-d",
                dir.path().to_str().unwrap(),
                "-u",
                "nobody",
                "-w",
                "whitelist",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start /usr/bin/opentracker ({e}); scripts/test-all.sh installs it")
            });
        let mut tracker = OpenTracker {
            child,
            port,
            _dir: dir,
        };
        // Wait (bounded) until it accepts connections.
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(
                Instant::now() < deadline,
                "opentracker did not start listening on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20)); // polling an external process's startup
        }
        // Listening, and it is ours: a tracker that failed to bind would have exited.
        assert!(
            tracker.child.try_wait().unwrap().is_none(),
            "opentracker exited (port {port} taken?)"
        );
        // opentracker loads its whitelist in the background after it starts listening:
        // wait (bounded) until it accepts the first hash.
        if let Some(first) = hashes.first() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !tracker.accepts(first) {
                assert!(
                    Instant::now() < deadline,
                    "opentracker never loaded its whitelist"
                );
                std::thread::sleep(Duration::from_millis(20)); // polling an external process
            }
        }
        tracker
    }

    /// Whether announces for `hash_hex` are accepted: a probe peer announces
    /// `started` (which the whitelist governs) and, if accepted, `stopped` at once,
    /// so it never shows in a test's swarm.
    fn accepts(&self, hash_hex: &str) -> bool {
        let accepted = self.announce(hash_hex, "started");
        if accepted {
            self.announce(hash_hex, "stopped");
        }
        accepted
    }

    fn announce(&self, hash_hex: &str, event: &str) -> bool {
        let encoded: String = (0..20)
            .map(|i| format!("%{}", &hash_hex[2 * i..2 * i + 2]))
            .collect();
        let request = format!(
            "GET /announce?info_hash={encoded}&peer_id=-XX0001-readinessprb&port=1&uploaded=0&downloaded=0\
             &left=1&compact=1&event={event} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        );
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response);
        text.starts_with("HTTP/1.") && !text.contains("failure reason")
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }

    pub fn udp_url(&self) -> String {
        format!("udp://127.0.0.1:{}", self.port)
    }
}

impl Drop for OpenTracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
