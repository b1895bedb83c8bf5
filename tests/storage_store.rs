//! PieceStore and Checker: hashing while downloading (nothing read back for pieces
//! that arrive in order), multi-file pieces with padding files, rewrites that must
//! not verify, files removed or truncated under us, the bounded file pool, and
//! checks run in slices.

mod storage_util;

use bitloop::random::Xorshift;
use bitloop::storage::{CheckProgress, Checker, FilePool, StorageErrorKind, CHUNK};
use bitloop::swarm::Bitfield;
use storage_util::{download_all, write_piece, Fixture, Order};

#[test]
fn in_order_pieces_read_nothing_back_and_out_of_order_ones_read_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Fixture::single(4 << 20, 1 << 20, 1);
    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, tmp.path());

    write_piece(&mut store, &mut files, &fixture, 0, 16384, Order::InOrder);
    assert_eq!(store.in_progress(), 1);
    assert!(store.verify_piece(&mut files, 0).unwrap());
    assert_eq!(
        store.stats().bytes_read_back,
        0,
        "an in-order piece is not read back"
    );
    assert_eq!(store.stats().bytes_hashed_in_order, 1 << 20);

    // Reversed: only the block at 0, written last, continues the (empty) prefix.
    write_piece(&mut store, &mut files, &fixture, 1, 16384, Order::Reversed);
    assert!(store.verify_piece(&mut files, 1).unwrap());
    assert_eq!(store.stats().bytes_read_back, (1 << 20) - 16384);

    // A gap filled later: the prefix grows through the filler (0..32768), and only
    // the block that arrived before it is read back.
    let piece = fixture.piece(2);
    store.write_block(&mut files, 2, 0, &piece[..16384]).unwrap();
    store.write_block(&mut files, 2, 32768, &piece[32768..]).unwrap();
    store
        .write_block(&mut files, 2, 16384, &piece[16384..32768])
        .unwrap();
    let before = store.stats().bytes_read_back;
    assert!(store.verify_piece(&mut files, 2).unwrap());
    assert_eq!(store.stats().bytes_read_back - before, (1 << 20) - 32768);

    let stats = store.stats();
    assert_eq!((stats.pieces_verified, stats.pieces_failed), (3, 0));
    assert_eq!(stats.bytes_written, 3 << 20);
    assert_eq!(store.in_progress(), 0, "verification drops every hash state");
    store.close(&mut files);
    assert_eq!(files.len(), 0);
}

#[test]
fn a_bad_block_fails_and_a_rewritten_prefix_never_verifies_on_stale_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Fixture::single(256 << 10, 64 << 10, 2);
    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, tmp.path());
    let piece = fixture.piece(0).to_vec();

    // Good bytes hashed in order, then garbage written over them: the disk holds
    // garbage, so the piece must fail although the hashed bytes were right.
    store.write_block(&mut files, 0, 0, &piece[..16384]).unwrap();
    store.write_block(&mut files, 0, 0, &[0xee; 16384]).unwrap();
    store.write_block(&mut files, 0, 16384, &piece[16384..]).unwrap();
    assert_eq!(store.stats().hash_restarts, 1);
    assert!(!store.verify_piece(&mut files, 0).unwrap());
    // Written again correctly, it verifies (read back, as the state was dropped).
    write_piece(&mut store, &mut files, &fixture, 0, 16384, Order::InOrder);
    assert!(store.verify_piece(&mut files, 0).unwrap());

    // A wrong byte inside an in-order piece.
    let mut bad = fixture.piece(1).to_vec();
    bad[1000] ^= 1;
    store.write_block(&mut files, 1, 0, &bad).unwrap();
    assert!(!store.verify_piece(&mut files, 1).unwrap());
    assert_eq!(store.stats().pieces_failed, 2);

    // An abandoned piece leaves no state behind.
    store
        .write_block(&mut files, 2, 0, &fixture.piece(2)[..16384])
        .unwrap();
    store.abandon_piece(2);
    assert_eq!(store.in_progress(), 0);

    // Ranges outside the torrent are refused, not a panic.
    let e = store.write_block(&mut files, 4, 0, &[0; 10]).unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::OutOfRange);
    let e = store.write_block(&mut files, 3, 65530, &[0; 10]).unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::OutOfRange, "{e}");
    assert_eq!(
        store.verify_piece(&mut files, 9).unwrap_err().kind(),
        StorageErrorKind::OutOfRange
    );
}

#[test]
fn pieces_spanning_files_and_padding_files_in_any_order() {
    let tmp = tempfile::tempdir().unwrap();
    let specs = [
        ("a", 10_000, false),
        (".pad/0", 6384, true),
        ("sub/b", 40_000, false),
        ("empty", 0, false),
        ("sub/c", 5, false),
        ("d", 100, false),
        (".pad/1", 16_279, true),
        ("e", 30_000, false),
    ];
    let fixture = Fixture::new(&specs, 16384, 3);
    let mut files = FilePool::new(3);
    let mut store = fixture.open(&mut files, tmp.path());
    let root = tmp.path().join("t");
    assert!(!root.join(".pad").exists(), "padding files are never created");
    assert_eq!(std::fs::metadata(root.join("empty")).unwrap().len(), 0);

    // Pieces in a shuffled order, blocks of 1000 bytes in a shuffled order.
    let mut rng = Xorshift::new(7);
    let mut pieces: Vec<u32> = (0..fixture.piece_count()).collect();
    for i in (1..pieces.len()).rev() {
        pieces.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for &piece in &pieces {
        let data = fixture.piece(piece);
        let mut begins: Vec<usize> = (0..data.len()).step_by(1000).collect();
        for i in (1..begins.len()).rev() {
            begins.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for begin in begins {
            let end = (begin + 1000).min(data.len());
            store
                .write_block(&mut files, piece, begin as u32, &data[begin..end])
                .unwrap();
            assert!(files.len() <= 3, "the pool stays within its budget");
        }
        assert!(store.verify_piece(&mut files, piece).unwrap(), "piece {piece}");
    }
    let mut at = 0;
    for (name, len, pad) in specs {
        if !pad {
            let on_disk = std::fs::read(root.join(name)).unwrap();
            assert_eq!(on_disk, &fixture.data[at..at + len as usize], "{name}");
        }
        at += len as usize;
    }
    let stored: u64 = specs.iter().filter(|s| !s.2).map(|s| s.1).sum();
    assert_eq!(store.stats().bytes_written, stored, "padding is never written");
    // Reading for peers: padding reads as zeros.
    let mut block = vec![0xff; 16384];
    store.read_block(&mut files, 0, 0, &mut block).unwrap();
    assert_eq!(block, fixture.piece(0));
    assert!(block[10_000..].iter().all(|&b| b == 0));
    assert_eq!(store.stats().bytes_read, 16384);
}

#[test]
fn a_truncated_file_reads_as_a_clear_error_and_never_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Fixture::single(1 << 20, 64 << 10, 4);
    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, tmp.path());
    download_all(&mut store, &mut files, &fixture);
    let path = tmp.path().join("t/file.bin");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(300_000)
        .unwrap();

    let mut block = vec![0; 16384];
    let e = store.read_block(&mut files, 15, 0, &mut block).unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Vanished);
    assert_eq!(e.path(), path);
    let message = e.to_string();
    assert!(
        message.starts_with(&path.display().to_string()) && message.contains("truncated while in use"),
        "{message}"
    );
    // A piece wholly before the cut still reads; verifying one on the file fails.
    store.read_block(&mut files, 0, 0, &mut block).unwrap();
    write_piece(&mut store, &mut files, &fixture, 3, 16384, Order::InOrder);
    let e = store.verify_piece(&mut files, 3).unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Vanished, "{e}");
    assert!(e.to_string().contains("the torrent says 1048576"), "{e}");
}

#[test]
fn a_file_removed_under_us_is_reported_not_silently_recreated() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Fixture::single(1 << 20, 64 << 10, 5);
    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, tmp.path());
    let path = tmp.path().join("t/file.bin");
    write_piece(&mut store, &mut files, &fixture, 0, 16384, Order::InOrder);
    std::fs::remove_file(&path).unwrap();

    // The open handle still writes (to the unlinked file); verification and sync
    // notice, so the piece is never reported verified.
    write_piece(&mut store, &mut files, &fixture, 1, 16384, Order::InOrder);
    let e = store.verify_piece(&mut files, 1).unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Vanished);
    assert!(e.to_string().contains("removed while in use"), "{e}");
    let e = store.sync(&mut files).unwrap_err();
    assert_eq!((e.kind(), e.path()), (StorageErrorKind::Vanished, path.as_path()));
    // Once the pool has closed it, writing fails naming the file; nothing re-creates it.
    files.close_store(store.id());
    let e = store
        .write_block(&mut files, 2, 0, &fixture.piece(2)[..16384])
        .unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Vanished);
    assert!(
        e.to_string().starts_with(&format!(
            "{}: no such file (it was removed while in use)",
            path.display()
        )),
        "{e}"
    );
    assert!(!path.exists());
}

#[test]
fn sync_flushes_only_written_files_and_forgets_them() {
    let tmp = tempfile::tempdir().unwrap();
    let specs: Vec<(String, u64, bool)> = (0..20).map(|i| (format!("f{i:02}"), 20_000, false)).collect();
    let specs: Vec<_> = specs.iter().map(|(n, l, p)| (n.as_str(), *l, *p)).collect();
    let fixture = Fixture::new(&specs, 16384, 6);
    let mut files = FilePool::new(4);
    let mut store = fixture.open(&mut files, tmp.path());
    assert_eq!(store.unsynced_files(), 0);
    write_piece(&mut store, &mut files, &fixture, 0, 16384, Order::InOrder); // f00
    write_piece(&mut store, &mut files, &fixture, 10, 16384, Order::InOrder); // f08, f09
    assert_eq!(store.unsynced_files(), 3);
    store.sync(&mut files).unwrap();
    assert_eq!(store.unsynced_files(), 0);
    download_all(&mut store, &mut files, &fixture);
    assert_eq!(store.unsynced_files(), 20);
    assert!(files.len() <= 4);
    store.sync(&mut files).unwrap();
    assert_eq!(store.unsynced_files(), 0);
    store.close(&mut files);
    assert!(files.is_empty());
}

#[test]
fn a_check_runs_in_bounded_slices_and_finds_the_good_pieces() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Fixture::new(&[("a", 3_000_000, false), ("b", 1_500_001, false)], 1 << 20, 8);
    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, tmp.path());
    download_all(&mut store, &mut files, &fixture);
    // Corrupt one byte of piece 2 on disk.
    let path = tmp.path().join("t/a");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(2 << 20) + 5] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();

    let all = Bitfield::full(fixture.piece_count());
    let mut checker = Checker::new(&store, &all);
    assert_eq!(checker.status().bytes_total, fixture.data.len() as u64);
    let budget = 300_000u64;
    let mut steps = 0;
    let mut last = 0;
    let good = loop {
        steps += 1;
        assert!(steps < 1000, "the check ends");
        match checker.step(&mut store, &mut files, budget).unwrap() {
            CheckProgress::Running(status) => {
                let step = status.bytes_checked - last;
                assert!(
                    step > 0 && step <= budget.next_multiple_of(CHUNK as u64),
                    "{step}"
                );
                last = status.bytes_checked;
                assert!(status.pieces_checked <= status.pieces_total);
            }
            CheckProgress::Done(good) => break good,
        }
    };
    assert!(steps >= (fixture.data.len() as u64 / budget.next_multiple_of(CHUNK as u64)) as usize);
    let expected: Vec<u32> = (0..fixture.piece_count()).filter(|&p| p != 2).collect();
    assert_eq!(good.iter_ones().collect::<Vec<_>>(), expected);
    assert_eq!(checker.status().pieces_checked, fixture.piece_count());
    assert_eq!(store.stats().bytes_checked, fixture.data.len() as u64);
    assert_eq!(
        checker.step(&mut store, &mut files, budget).unwrap(),
        CheckProgress::Done(good),
        "a finished check stays finished"
    );

    // Only the pieces asked for are checked.
    let mut some = Bitfield::new(fixture.piece_count());
    some.set(1);
    some.set(2);
    let mut checker = Checker::new(&store, &some);
    let CheckProgress::Done(good) = checker.step(&mut store, &mut files, u64::MAX).unwrap() else {
        panic!("an unbounded step finishes");
    };
    assert_eq!(good.iter_ones().collect::<Vec<_>>(), vec![1]);
}

#[test]
fn a_check_that_hits_a_truncated_file_reports_it_and_can_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Fixture::single(8 << 20, 1 << 20, 9);
    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, tmp.path());
    download_all(&mut store, &mut files, &fixture);
    let mut checker = Checker::new(&store, &Bitfield::full(8));
    let step = checker.step(&mut store, &mut files, 2 << 20).unwrap();
    assert!(matches!(step, CheckProgress::Running(s) if s.pieces_checked == 2));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(tmp.path().join("t/file.bin"))
        .unwrap();
    file.set_len(5 << 19).unwrap(); // 2.5 MiB: piece 2 is cut
    let e = checker.step(&mut store, &mut files, 2 << 20).unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Vanished, "{e}");
    // Grown back (zeros past the cut), the check goes on from piece 2.
    file.set_len(8 << 20).unwrap();
    let good = loop {
        if let CheckProgress::Done(good) = checker.step(&mut store, &mut files, 2 << 20).unwrap() {
            break good;
        }
    };
    assert_eq!(ones(&good), vec![0, 1]);
    assert_eq!(checker.status().pieces_checked, 8);
}

fn ones(bits: &Bitfield) -> Vec<u32> {
    bits.iter_ones().collect()
}

#[test]
fn a_file_replaced_under_us_is_not_taken_for_ours() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Fixture::single(1 << 20, 64 << 10, 10);
    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, tmp.path());
    let path = tmp.path().join("t/file.bin");
    // Piece 0 hashed in order as written, then the file is swapped for one that
    // holds other bytes there: the hash state would verify bytes no longer on disk.
    write_piece(&mut store, &mut files, &fixture, 0, 16384, Order::InOrder);
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
    files.close_store(store.id()); // the pool reopens by name
    let e = store.verify_piece(&mut files, 0).unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Vanished);
    assert!(e.to_string().contains("replaced while in use"), "{e}");
    assert_eq!(
        store.sync(&mut files).unwrap_err().kind(),
        StorageErrorKind::Vanished
    );
}
