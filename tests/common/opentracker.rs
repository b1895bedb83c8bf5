//! Starting a real opentracker on loopback for a test.
//!
//! Debian's opentracker refuses to run as root and is built with a whitelist, so it
//! runs as `nobody`, chrooted into a folder of its own that holds the whitelist of
//! info hashes (hex, one per line). The process is killed when the guard drops.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
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
        // A free port: bind both kinds to be sure, then let go for opentracker.
        let port = loop {
            let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = tcp.local_addr().unwrap().port();
            if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
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
        let tracker = OpenTracker {
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
        tracker
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
