//! python3-libtorrent leechers (`libtorrent_tool.py leech`) as child processes, for
//! tests of bitloop as a seeder: started, then waited for with a deadline.

#![allow(dead_code)] // included with #[path] by several test binaries, each using a part

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::libtorrent::PYTHON;

/// A libtorrent leecher; killed if still running when dropped.
pub struct Leecher {
    child: Child,
    what: String,
}

impl Leecher {
    /// Downloads `torrent` into `save_path` from `peers` (given directly, with
    /// `connect_peer`) and, if `trackers`, from the peers its trackers name.
    pub fn start(
        torrent: &Path,
        save_path: &Path,
        peers: &[SocketAddr],
        trackers: bool,
        what: &str,
    ) -> Leecher {
        let tool = format!("{}/tests/interop/libtorrent_tool.py", env!("CARGO_MANIFEST_DIR"));
        let mut command = Command::new(PYTHON);
        command.args([
            &tool,
            "leech",
            torrent.to_str().unwrap(),
            save_path.to_str().unwrap(),
        ]);
        for peer in peers {
            command.args(["--peer", &peer.to_string()]);
        }
        if trackers {
            command.arg("--trackers");
        }
        let child = command
            .args(["--timeout", "170"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {PYTHON} ({e}); scripts/test-all.sh installs python3-libtorrent")
            });
        Leecher {
            child,
            what: what.to_string(),
        }
    }

    /// Whether it is still downloading.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits until it exits within `limit`; panics unless it completed.
    pub fn wait_complete(mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the libtorrent leecher did not finish within {limit:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(10)); // polling a child's exit
        };
        let mut out = String::new();
        use std::io::Read;
        let _ = self.child.stdout.take().unwrap().read_to_string(&mut out);
        assert!(
            status.success() && out.contains("\"complete\": true"),
            "{}: the libtorrent leecher failed ({status}): {out}",
            self.what
        );
    }
}

impl Drop for Leecher {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
