//! Running python3-libtorrent (through `tests/interop/libtorrent_tool.py`) and
//! bitloop's own binary from tests.
//!
//! These tests never skip silently: if libtorrent is missing they fail and say
//! how to install it (`scripts/test-all.sh` does that itself).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::bounded::output_within;

/// What one run of the libtorrent tool may take: `verify` gives up checking after
/// 60 s by itself, so this is reached only if something hangs.
const TOOL_LIMIT: Duration = Duration::from_secs(120);
/// What one short `bitloop` command (info, create, announce) may take.
const BITLOOP_LIMIT: Duration = Duration::from_secs(60);

/// Debian's interpreter: the one that has the libtorrent module.
pub const PYTHON: &str = "/usr/bin/python3";

fn tool() -> String {
    format!("{}/tests/interop/libtorrent_tool.py", env!("CARGO_MANIFEST_DIR"))
}

/// Runs the libtorrent tool and parses the JSON it prints.
pub fn libtorrent(args: &[&str]) -> Value {
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} is missing; install python3-libtorrent (scripts/test-all.sh does)"
    );
    let output = output_within(
        Command::new(PYTHON).arg(tool()).args(args),
        TOOL_LIMIT,
        "the libtorrent tool",
    );
    assert!(
        output.status.success(),
        "libtorrent tool {args:?} failed (is python3-libtorrent installed? scripts/test-all.sh installs it):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("libtorrent tool prints JSON")
}

/// Runs the bitloop binary; returns (success, stdout, stderr).
pub fn bitloop(args: &[&str]) -> (bool, String, String) {
    let output = output_within(
        Command::new(env!("CARGO_BIN_EXE_bitloop")).args(args),
        BITLOOP_LIMIT,
        "bitloop",
    );
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `bitloop info --json` parsed.
pub fn bitloop_info(torrent: &Path) -> Value {
    let (ok, out, err) = bitloop(&["info", "--json", torrent.to_str().unwrap()]);
    assert!(ok, "bitloop info failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bitloop info --json is not JSON ({e}): {out}"))
}

/// Writes `size` deterministic pseudo-random bytes.
pub fn write_file(path: &Path, size: usize, seed: u32) {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    let bytes: Vec<u8> = (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}
