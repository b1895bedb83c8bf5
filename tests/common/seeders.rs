//! python3-libtorrent seeders for download tests, and torrents to seed.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use bitloop::metainfo::create::{create_torrent, CreateOptions};
use bitloop::metainfo::Metainfo;

use super::bounded::Lines;
use super::libtorrent::{write_file, PYTHON};

/// How long a seeder may take to say it is ready: the tool gives up checking the
/// data after 60 s (and says so), so this is only reached if it hangs.
const READY_WITHIN: Duration = Duration::from_secs(90);

/// A libtorrent session seeding one torrent; it exits when dropped.
pub struct Seeder {
    child: Child,
    stdin: Option<ChildStdin>,
    pub port: u16,
}

impl Seeder {
    /// Seeds `torrent` from `save_path` (which must hold the data).
    pub fn start(torrent: &Path, save_path: &Path) -> Seeder {
        Seeder::start_with(torrent, save_path, &[])
    }

    /// With extra `seed` options (for example `--never-unchoke`).
    pub fn start_with(torrent: &Path, save_path: &Path, extra: &[&str]) -> Seeder {
        let tool = format!("{}/tests/interop/libtorrent_tool.py", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(PYTHON)
            .args([
                &tool,
                "seed",
                torrent.to_str().unwrap(),
                save_path.to_str().unwrap(),
            ])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {PYTHON} ({e}); scripts/test-all.sh installs python3-libtorrent")
            });
        let lines = Lines::new(child.stdout.take().unwrap(), "the libtorrent seeder");
        let line = match lines.try_line_within(READY_WITHIN) {
            Ok(line) => line,
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the libtorrent seeder did not say it was ready within {READY_WITHIN:?}: {why:?}");
            }
        };
        let ready: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("seeder said {line:?}"));
        let port = ready["port"]
            .as_u64()
            .unwrap_or_else(|| panic!("seeder not ready: {line}")) as u16;
        let stdin = child.stdin.take();
        Seeder { child, stdin, port }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The address of a seeder started with `--interface [::1]`.
    pub fn addr_v6(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, self.port))
    }
}

impl Drop for Seeder {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF on stdin: the seeder exits
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Source data and a torrent for it.
pub struct Content {
    pub dir: tempfile::TempDir,
    /// The folder the seeders use as their save path.
    pub save_path: PathBuf,
    pub torrent_path: PathBuf,
    pub torrent: Metainfo,
}

impl Content {
    /// One file of `size` bytes, or (multi) a folder of awkward files.
    pub fn make(multi: bool, size: usize, piece_length: u64, trackers: Vec<String>) -> Content {
        let dir = tempfile::tempdir().unwrap();
        let save_path = dir.path().join("seed");
        let source = if multi {
            let root = save_path.join("collection");
            write_file(&root.join("a.bin"), size / 2 + 1, 11);
            write_file(&root.join("tiny.txt"), 5, 12);
            write_file(&root.join("empty"), 0, 13);
            write_file(&root.join("sub/dir/b.bin"), size / 2 - 3, 14);
            write_file(&root.join("sub/c.bin"), 3 * piece_length as usize / 2, 15);
            root
        } else {
            let file = save_path.join("single.bin");
            write_file(&file, size, 10);
            file
        };
        let options = CreateOptions {
            trackers,
            piece_length: Some(piece_length),
            ..CreateOptions::default()
        };
        let bytes = create_torrent(&source, &options, &mut |_, _| {}).unwrap();
        let torrent_path = dir.path().join("t.torrent");
        std::fs::write(&torrent_path, &bytes).unwrap();
        let torrent = Metainfo::parse(&bytes).unwrap();
        Content {
            dir,
            save_path,
            torrent_path,
            torrent,
        }
    }

    /// Writes another torrent of the same data naming `trackers` (the info hash is
    /// unchanged: trackers are outside the info dictionary), as `<name>.torrent`.
    pub fn with_trackers(&self, trackers: Vec<String>, name: &str) -> PathBuf {
        let source = self.save_path.join(&self.torrent.info.name);
        let options = CreateOptions {
            trackers,
            piece_length: Some(self.torrent.info.piece_length),
            ..CreateOptions::default()
        };
        let bytes = create_torrent(&source, &options, &mut |_, _| {}).unwrap();
        assert_eq!(Metainfo::parse(&bytes).unwrap().info_hash, self.torrent.info_hash);
        let path = self.dir.path().join(format!("{name}.torrent"));
        std::fs::write(&path, &bytes).unwrap();
        path
    }

    /// Asserts every file under `output` equals the seeded original.
    pub fn assert_identical(&self, output: &Path) {
        for file in &self.torrent.info.files {
            let ours = std::fs::read(output.join(&file.path))
                .unwrap_or_else(|e| panic!("{}: {e}", file.path.display()));
            let original = std::fs::read(self.save_path.join(&file.path)).unwrap();
            assert!(
                ours == original,
                "{} differs from the original",
                file.path.display()
            );
        }
    }
}
