//! Hostile torrent files: every one is refused with an error that says why, quickly,
//! and nothing panics.

mod common;

use std::time::{Duration, Instant};

use bitloop::metainfo::{Magnet, Metainfo, MetainfoError};
use common::libtorrent::bitloop;

/// A bencoded byte string.
fn s(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out
}

/// A torrent whose `info` dictionary body (without the `d`…`e`) is `info`.
fn torrent_with_info(info: &[u8]) -> Vec<u8> {
    let mut out = b"d8:announce".to_vec();
    out.extend(s(b"http://127.0.0.1/a"));
    out.extend_from_slice(b"4:infod");
    out.extend_from_slice(info);
    out.extend_from_slice(b"ee");
    out
}

/// A valid single-file info body: `length` bytes in 16 KiB pieces.
fn single_info(length: u64, pieces: usize) -> Vec<u8> {
    let mut out = format!("6:lengthi{length}e4:name").into_bytes();
    out.extend(s(b"file.bin"));
    out.extend_from_slice(b"12:piece lengthi16384e6:pieces");
    out.extend(s(&vec![0xaa; 20 * pieces]));
    out
}

/// A valid multi-file info body with one file at `path`.
fn multi_info(path: &[&[u8]]) -> Vec<u8> {
    let mut out = b"5:filesld6:lengthi10e4:pathl".to_vec();
    for component in path {
        out.extend(s(component));
    }
    out.extend_from_slice(b"eee4:name");
    out.extend(s(b"dir"));
    out.extend_from_slice(b"12:piece lengthi16384e6:pieces");
    out.extend(s(&[0xbb; 20]));
    out
}

fn refuse(bytes: &[u8]) -> MetainfoError {
    let started = Instant::now();
    let err = Metainfo::parse(bytes).expect_err("hostile input accepted");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(!err.to_string().is_empty());
    err
}

#[test]
fn the_fixtures_are_valid_to_begin_with() {
    let t = Metainfo::parse(&torrent_with_info(&single_info(40_000, 3))).unwrap();
    assert_eq!(t.total_length(), 40_000);
    let m = Metainfo::parse(&torrent_with_info(&multi_info(&[b"a", b"b.txt"]))).unwrap();
    assert_eq!(m.info.files[0].path, std::path::PathBuf::from("dir/a/b.txt"));
}

#[test]
fn every_truncation_is_an_error() {
    let good = torrent_with_info(&multi_info(&[b"a", b"b.txt"]));
    for end in 0..good.len() {
        refuse(&good[..end]);
    }
}

#[test]
fn deep_nesting_is_refused_without_recursing() {
    // Hidden under an unknown key, where a parser must still walk it.
    let mut deep = b"d4:infod1:x".to_vec();
    deep.extend(std::iter::repeat_n(b'l', 100_000));
    deep.extend(std::iter::repeat_n(b'e', 100_000));
    deep.extend_from_slice(b"ee");
    assert!(
        matches!(refuse(&deep), MetainfoError::TooDeep { .. }),
        "{:?}",
        Metainfo::parse(&deep)
    );
    let mut lists = vec![b'l'; 100_000];
    lists.extend(vec![b'e'; 100_000]);
    // At top level it is refused sooner still: a torrent must be a dictionary.
    assert!(matches!(refuse(&lists), MetainfoError::WrongType { .. }));
}

#[test]
fn a_huge_input_is_refused_before_decoding() {
    let huge = vec![b'd'; 100 << 20];
    assert!(matches!(refuse(&huge), MetainfoError::TooLarge { .. }));
}

#[test]
fn a_huge_file_is_refused_by_the_cli_without_reading_it() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("huge.torrent");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(100 << 20).unwrap(); // sparse: costs no disk
    let started = Instant::now();
    let (ok, _, err) = bitloop(&["info", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("too large"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn wrong_types_are_named() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"le".to_vec(), "`torrent` should be a dictionary"),
        (b"d4:infoli1eee".to_vec(), "`info` should be a dictionary"),
        (
            torrent_with_info(b"6:lengthi1e4:name1:a12:piece length3:abc6:pieces20:aaaaaaaaaaaaaaaaaaaa"),
            "piece length",
        ),
        (
            torrent_with_info(b"5:filesi3e4:name1:a12:piece lengthi16384e6:pieces0:"),
            "`files` should be a list",
        ),
        (
            torrent_with_info(b"6:lengthi-5e4:name1:a12:piece lengthi16384e6:pieces0:"),
            "negative",
        ),
        (
            torrent_with_info(b"6:lengthi99999999999999999999999e4:name1:a12:piece lengthi1e6:pieces0:"),
            "out of range",
        ),
        (
            torrent_with_info(b"4:name1:a12:piece lengthi16384e6:pieces0:"),
            "length or info.files",
        ),
        (
            b"d8:announcei3e4:infod6:lengthi1e4:name1:a12:piece lengthi1e6:pieces20:aaaaaaaaaaaaaaaaaaaaee"
                .to_vec(),
            "announce",
        ),
    ];
    for (bytes, expect) in cases {
        let err = refuse(&bytes).to_string();
        assert!(err.contains(expect), "expected {expect:?} in {err:?}");
    }
}

#[test]
fn paths_that_leave_the_folder_are_refused_naming_the_file() {
    for path in [
        vec![&b".."[..], b"etc", b"passwd"],
        vec![b"a", b"..", b"..", b"b"],
        vec![b"/etc/passwd"],
        vec![b"a/../../b"],
        vec![b""],
        vec![b"."],
        vec![b"nul\0byte"],
    ] {
        let err = refuse(&torrent_with_info(&multi_info(&path)));
        assert!(matches!(err, MetainfoError::UnsafePath { .. }), "{path:?}: {err}");
    }
    // The torrent's name is a path component too.
    let mut info = b"6:lengthi1e4:name".to_vec();
    info.extend(s(b".."));
    info.extend_from_slice(b"12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaa");
    assert!(matches!(
        refuse(&torrent_with_info(&info)),
        MetainfoError::UnsafePath { .. }
    ));
}

#[test]
fn duplicate_and_unsorted_keys_are_refused_as_not_canonical() {
    let duplicate =
        b"d4:infod6:lengthi1e6:lengthi1e4:name1:a12:piece lengthi1e6:pieces20:aaaaaaaaaaaaaaaaaaaaee";
    let unsorted = b"d4:infod4:name1:a6:lengthi1e12:piece lengthi1e6:pieces20:aaaaaaaaaaaaaaaaaaaaee";
    let outer_unsorted =
        b"d4:infod6:lengthi1e4:name1:a12:piece lengthi1e6:pieces20:aaaaaaaaaaaaaaaaaaaae8:announce1:xe";
    for bytes in [&duplicate[..], &unsorted[..], &outer_unsorted[..]] {
        let err = refuse(bytes);
        assert_eq!(err, MetainfoError::NotCanonical);
        assert!(err.to_string().contains("not canonical"));
    }
}

#[test]
fn non_utf8_names_are_refused_unless_a_utf8_name_is_given() {
    let mut info = b"6:lengthi1e4:name".to_vec();
    info.extend(s(b"caf\xe9"));
    info.extend_from_slice(b"12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaa");
    assert!(refuse(&torrent_with_info(&info)).to_string().contains("UTF-8"));
    let err = refuse(&torrent_with_info(&multi_info(&[b"caf\xe9.txt"])));
    assert!(err.to_string().contains("UTF-8"), "{err}");

    // With `name.utf-8` present the readable name wins.
    let mut info = b"6:lengthi1e4:name".to_vec();
    info.extend(s(b"caf\xe9"));
    info.extend_from_slice(b"10:name.utf-8");
    info.extend(s("café".as_bytes()));
    info.extend_from_slice(b"12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaa");
    assert_eq!(
        Metainfo::parse(&torrent_with_info(&info)).unwrap().info.name,
        "café"
    );
}

#[test]
fn pieces_must_cover_the_total_length_exactly() {
    assert!(Metainfo::parse(&torrent_with_info(&single_info(32768, 2))).is_ok());
    assert!(refuse(&torrent_with_info(&single_info(32768, 1)))
        .to_string()
        .contains("needs 2"));
    assert!(refuse(&torrent_with_info(&single_info(32768, 3)))
        .to_string()
        .contains("needs 2"));
    assert!(refuse(&torrent_with_info(&single_info(32769, 2)))
        .to_string()
        .contains("needs 3"));
    let mut info = single_info(1, 1);
    info.extend_from_slice(b"");
    let bad_len =
        torrent_with_info(b"6:lengthi1e4:name1:a12:piece lengthi16384e6:pieces19:aaaaaaaaaaaaaaaaaaa");
    assert!(refuse(&bad_len).to_string().contains("multiple of 20"));
    let zero = torrent_with_info(b"6:lengthi1e4:name1:a12:piece lengthi0e6:pieces20:aaaaaaaaaaaaaaaaaaaa");
    assert!(refuse(&zero).to_string().contains("piece length"));
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = torrent_with_info(&single_info(10, 1));
    bytes.extend_from_slice(b"garbage");
    assert!(matches!(refuse(&bytes), MetainfoError::Malformed(_)));
}

/// A small deterministic generator, so failures reproduce.
struct Xorshift(u64);
impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn arbitrary_bytes_and_mutations_never_panic() {
    let mut rng = Xorshift(0x5eed_1234_abcd_0001);
    let seed = torrent_with_info(&multi_info(&[b"a", b"b.txt"]));
    let alphabet = b"deli0123456789:-abcdefghijklmnopqrstuvwxyz";
    let started = Instant::now();
    for round in 0..30_000 {
        let input: Vec<u8> = if round % 2 == 0 {
            let len = (rng.next() % 200) as usize;
            (0..len)
                .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
                .collect()
        } else {
            let mut mutated = seed.clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() % mutated.len() as u64) as usize;
                match rng.next() % 3 {
                    0 => mutated[at] = rng.next() as u8,
                    1 => {
                        mutated.remove(at);
                    }
                    _ => mutated.insert(at, alphabet[(rng.next() % alphabet.len() as u64) as usize]),
                }
            }
            mutated
        };
        let _ = Metainfo::parse(&input);
        let _ = Magnet::parse(&String::from_utf8_lossy(&input));
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}
