//! Metainfo against libtorrent: torrents libtorrent makes parse to the same info
//! hash, files and trackers in bitloop; torrents bitloop makes are accepted by
//! libtorrent, which verifies the data against them.

mod common;

use std::path::Path;

use common::libtorrent::{bitloop, bitloop_info, libtorrent, write_file};
use serde_json::{json, Value};

/// A folder with awkward contents: a file smaller than a block, an empty file,
/// a nested folder, a file spanning many pieces, a non-ASCII name.
fn awkward_folder(root: &Path) -> std::path::PathBuf {
    let dir = root.join("awkward set");
    write_file(&dir.join("big.bin"), 700_001, 1);
    write_file(&dir.join("tiny.txt"), 3, 2);
    write_file(&dir.join("empty"), 0, 3);
    write_file(&dir.join("nested/deeper/ünïcödé.dat"), 40_000, 4);
    dir
}

fn files_of(value: &Value) -> Vec<(Vec<String>, u64)> {
    value["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f["path"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            (path, f["length"].as_u64().unwrap())
        })
        .collect()
}

fn same_torrent(ours: &Value, theirs: &Value) {
    for key in [
        "info_hash",
        "name",
        "piece_length",
        "piece_count",
        "total_length",
        "private",
        "trackers",
    ] {
        assert_eq!(
            ours[key], theirs[key],
            "{key} differs:\nbitloop: {ours}\nlibtorrent: {theirs}"
        );
    }
    assert_eq!(files_of(ours), files_of(theirs));
}

#[test]
fn libtorrent_torrents_parse_to_the_same_hash_files_and_trackers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = awkward_folder(tmp.path());
    let single = tmp.path().join("single.iso");
    write_file(&single, 1_000_000, 9);
    let cases: Vec<(&Path, Vec<&str>)> = vec![
        (&dir, vec!["--piece-length", "16384"]),
        (
            &dir,
            vec![
                "--piece-length",
                "65536",
                "--private",
                "--tracker",
                "http://127.0.0.1:1/a",
            ],
        ),
        // Hybrid v1+v2: BEP 47 pad files and v2 keys inside `info`.
        (
            &dir,
            vec![
                "--piece-length",
                "32768",
                "--hybrid",
                "--tracker",
                "http://t1/a",
                "--tracker",
                "udp://t2:1",
            ],
        ),
        (
            &single,
            vec![
                "--piece-length",
                "262144",
                "--tracker",
                "udp://127.0.0.1:6969/announce",
            ],
        ),
    ];
    for (i, (source, extra)) in cases.iter().enumerate() {
        let out = tmp.path().join(format!("lt-{i}.torrent"));
        let mut args = vec!["create", source.to_str().unwrap(), out.to_str().unwrap()];
        args.extend(extra);
        let theirs = libtorrent(&args);
        let ours = bitloop_info(&out);
        same_torrent(&ours, &theirs);
    }
}

#[test]
fn bitloop_torrents_are_accepted_and_verified_by_libtorrent() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = awkward_folder(tmp.path());
    let single = tmp.path().join("one file.bin");
    write_file(&single, 2_500_000, 5);
    for (source, extra) in [
        (&dir, vec!["--piece-length", "16384"]),
        (&dir, vec!["--private", "--comment", "hello"]),
        (
            &single,
            vec!["-t", "http://127.0.0.1:1/announce", "-t", "udp://127.0.0.1:2"],
        ),
    ] {
        let out = tmp.path().join("ours.torrent");
        let mut args = vec!["create", source.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend(extra.iter().copied());
        let (ok, _, err) = bitloop(&args);
        assert!(ok, "bitloop create failed: {err}");
        let theirs = libtorrent(&["inspect", out.to_str().unwrap()]);
        same_torrent(&bitloop_info(&out), &theirs);
        let verified = libtorrent(&["verify", out.to_str().unwrap(), tmp.path().to_str().unwrap()]);
        assert_eq!(verified["pieces_verified"], theirs["piece_count"], "{verified}");
        assert_eq!(verified["seeding"], json!(true));
    }
}

#[test]
fn libtorrent_finds_corruption_in_data_for_a_bitloop_torrent() {
    // The other direction of "verifies the data": a changed byte is caught.
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("data.bin");
    write_file(&single, 300_000, 6);
    let out = tmp.path().join("t.torrent");
    let (ok, _, err) = bitloop(&[
        "create",
        single.to_str().unwrap(),
        "--piece-length",
        "16384",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let mut bytes = std::fs::read(&single).unwrap();
    bytes[100_000] ^= 0xff;
    std::fs::write(&single, bytes).unwrap();
    let verified = libtorrent(&["verify", out.to_str().unwrap(), tmp.path().to_str().unwrap()]);
    assert_eq!(verified["pieces_verified"], json!(18), "{verified}");
}
