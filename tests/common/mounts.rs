//! A small tmpfs mounted for one test, unmounted on every path (the guard's
//! `Drop` runs on success, on failure and while a panic unwinds).
//!
//! Mounting needs root, as CI has. A test that cannot mount fails and says so; it
//! never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs at a fresh temporary folder; unmounted (then the folder removed) when dropped.
pub struct Tmpfs {
    path: PathBuf,
    // Dropped after `drop` has unmounted: it removes the then empty mount point.
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` bytes (rounded up to pages by the kernel).
    pub fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let size = format!("size={bytes}");
        run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &size,
            "tmpfs",
            path.to_str().unwrap(),
        ]);
        Tmpfs { path, _dir: dir }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Grows (or shrinks) the mount to `bytes`; its files stay.
    pub fn resize(&self, bytes: u64) {
        let options = format!("remount,size={bytes}");
        run(&["mount", "-o", &options, self.path.to_str().unwrap()]);
    }

    /// Makes the mount read-only (root writes through `chmod 0555`, not through this).
    pub fn make_read_only(&self) {
        run(&["mount", "-o", "remount,ro", self.path.to_str().unwrap()]);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still holds it (a child the failing test left): detach it
            // now, the kernel frees it when the last user goes.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

fn run(args: &[&str]) {
    match Command::new(args[0]).args(&args[1..]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "`{}` failed: {}. This test mounts a small tmpfs and needs root (CI runs as \
             root); run it as root, e.g. `sudo -E cargo test --test disk_full`.",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("cannot run `{}`: {e} (install util-linux's mount)", args[0]),
    }
}
