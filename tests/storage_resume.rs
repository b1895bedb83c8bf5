//! Resume data: saved after a sync and trusted only while every file of a piece has
//! its recorded size and mtime; pieces verified after the last save (kill -9) are
//! found again by checking; corrupt, truncated, garbage and foreign files are
//! refused with a reason and lead to a re-check; no input makes decoding panic.

mod storage_util;

use std::path::Path;
use std::time::{Duration, SystemTime};

use bitloop::random::Xorshift;
use bitloop::storage::resume::MAGIC;
use bitloop::storage::{
    CheckProgress, Checker, FileChange, FilePool, PieceStore, ResumeData, ResumeError, ResumePlan,
};
use bitloop::swarm::Bitfield;
use sha1::{Digest, Sha1};
use storage_util::{download_all, write_piece, Fixture, Order};

/// Three files of 5 pieces each (64 KiB pieces, aligned), 15 pieces.
fn three_files() -> Fixture {
    let specs = [
        ("a", 5 << 16, false),
        ("b", 5 << 16, false),
        ("c", 5 << 16, false),
    ];
    Fixture::new(&specs, 1 << 16, 11)
}

fn full(store: &PieceStore) -> Bitfield {
    Bitfield::full(store.layout().piece_count())
}

fn ones(bits: &Bitfield) -> Vec<u32> {
    bits.iter_ones().collect()
}

fn check(store: &mut PieceStore, files: &mut FilePool, pieces: &Bitfield) -> Bitfield {
    let mut checker = Checker::new(store, pieces);
    loop {
        if let CheckProgress::Done(good) = checker.step(store, files, 1 << 20).unwrap() {
            return good;
        }
    }
}

fn set_mtime(path: &Path, when: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

#[test]
fn a_saved_complete_torrent_is_trusted_whole_and_reads_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = three_files();
    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, tmp.path());
    download_all(&mut store, &mut files, &fixture);
    let path = ResumeData::path_in(&tmp.path().join(".bitloop"), &fixture.meta.info_hash);
    assert!(path.ends_with(format!(".bitloop/{}.resume", fixture.meta.info_hash.to_hex())));
    store.save_resume(&mut files, &full(&store), &path).unwrap();
    assert_eq!(store.unsynced_files(), 0, "saving synced the data first");
    assert!(
        !path.with_extension("resume.tmp").exists(),
        "no temporary file is left"
    );
    store.close(&mut files);

    let resume = ResumeData::load(&path, &fixture.meta).unwrap();
    assert_eq!(resume.have().count(), 15);
    let plan = resume.plan(tmp.path(), &fixture.meta);
    assert_eq!(plan.trusted.count(), 15);
    assert_eq!(plan.to_check.count(), 0);
    assert!(plan.reasons.is_empty(), "{:?}", plan.reasons);
    // Opening the store again changes nothing the plan relied on.
    let store = fixture.open(&mut files, tmp.path());
    assert_eq!(resume.plan(tmp.path(), &fixture.meta), plan);
    store.close(&mut files);
}

#[test]
fn after_a_kill_the_pieces_verified_since_the_last_save_are_checked_not_fetched() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = three_files();
    let path = tmp.path().join("state.resume");
    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, tmp.path());
    let mut have = Bitfield::new(15);
    // a and b complete, two pieces of c: saved.
    for piece in 0..12 {
        write_piece(&mut store, &mut files, &fixture, piece, 16384, Order::InOrder);
        assert!(store.verify_piece(&mut files, piece).unwrap());
        have.set(piece);
    }
    store.save_resume(&mut files, &have, &path).unwrap();
    // Two more pieces of c verified, and half of another written: then kill -9
    // (the store is dropped without a sync or a save).
    for piece in [12, 13] {
        write_piece(&mut store, &mut files, &fixture, piece, 16384, Order::Reversed);
        assert!(store.verify_piece(&mut files, piece).unwrap());
    }
    store
        .write_block(&mut files, 14, 0, &fixture.piece(14)[..32768])
        .unwrap();
    drop(store);
    drop(files);

    let resume = ResumeData::load(&path, &fixture.meta).unwrap();
    let plan = resume.plan(tmp.path(), &fixture.meta);
    // a and b were not written since the save: trusted. c was written: what it
    // holds is checked. (Its claimed pieces 10 and 11 are checked too wherever the
    // write after the save moved c's mtime; with coarse timestamps it may not have,
    // and they are then trusted, rightly, since nothing rewrites a verified piece.)
    assert!((0..10).all(|p| plan.trusted.get(p)), "{:?}", ones(&plan.trusted));
    assert!(
        ones(&plan.trusted).iter().all(|&p| p < 12),
        "only claimed pieces are trusted"
    );
    assert!([12, 13, 14].iter().all(|&p| plan.to_check.get(p)));
    assert!(ones(&plan.to_check).iter().all(|&p| !plan.trusted.get(p)));
    if plan.to_check.get(10) {
        assert_eq!(plan.reasons.len(), 1);
        assert_eq!(plan.reasons[0].path, tmp.path().join("t/c"));
        assert!(matches!(plan.reasons[0].change, FileChange::Modified { .. }));
        assert!(plan.reasons[0].to_string().contains("was modified"));
    }

    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, tmp.path());
    let mut have = check(&mut store, &mut files, &plan.to_check);
    for piece in plan.trusted.iter_ones() {
        have.set(piece);
    }
    assert_eq!(
        ones(&have),
        (0..14).collect::<Vec<_>>(),
        "nothing verified is lost"
    );
    assert!(store.stats().bytes_checked <= 5 << 16, "only c was read");
}

#[test]
fn a_file_whose_size_or_mtime_disagrees_is_checked_again() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = three_files();
    let path = tmp.path().join("r.resume");
    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, tmp.path());
    download_all(&mut store, &mut files, &fixture);
    store.save_resume(&mut files, &full(&store), &path).unwrap();
    store.close(&mut files);
    let resume = ResumeData::load(&path, &fixture.meta).unwrap();
    let root = tmp.path().join("t");

    // Same bytes, other time (a copy, a restore from backup): checked again.
    let a_time = std::fs::metadata(root.join("a")).unwrap().modified().unwrap();
    set_mtime(&root.join("a"), a_time + Duration::from_nanos(1));
    let plan = resume.plan(tmp.path(), &fixture.meta);
    assert_eq!(ones(&plan.to_check), (0..5).collect::<Vec<_>>());
    assert_eq!(ones(&plan.trusted), (5..15).collect::<Vec<_>>());
    assert!(matches!(plan.reasons[0].change, FileChange::Modified { .. }));
    set_mtime(&root.join("a"), a_time);
    assert_eq!(resume.plan(tmp.path(), &fixture.meta).trusted.count(), 15);

    // b grew by a byte: checked again, whatever its time says.
    let b = std::fs::File::options().write(true).open(root.join("b")).unwrap();
    let b_time = b.metadata().unwrap().modified().unwrap();
    b.set_len((5 << 16) + 1).unwrap();
    b.set_modified(b_time).unwrap();
    let plan = resume.plan(tmp.path(), &fixture.meta);
    assert_eq!(ones(&plan.to_check), (5..10).collect::<Vec<_>>());
    assert_eq!(
        plan.reasons[0].change,
        FileChange::Size {
            recorded: 5 << 16,
            found: (5 << 16) + 1
        }
    );

    // c is gone: its pieces are neither trusted nor checked, they are fetched.
    std::fs::remove_file(root.join("c")).unwrap();
    let plan = resume.plan(tmp.path(), &fixture.meta);
    assert_eq!(ones(&plan.trusted), (0..5).collect::<Vec<_>>());
    assert_eq!(ones(&plan.to_check), (5..10).collect::<Vec<_>>());
    assert_eq!(plan.unwritten, 5);
    assert_eq!(plan.reasons.len(), 2);
    assert_eq!(plan.reasons[1].change, FileChange::Missing);
}

#[test]
fn a_piece_spanning_a_changed_file_is_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    // Piece 1 holds the end of a and the start of b.
    let fixture = Fixture::new(&[("a", 100_000, false), ("b", 100_000, false)], 1 << 16, 12);
    let path = tmp.path().join("r.resume");
    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, tmp.path());
    download_all(&mut store, &mut files, &fixture);
    store.save_resume(&mut files, &full(&store), &path).unwrap();
    let b = tmp.path().join("t/b");
    let when = std::fs::metadata(&b).unwrap().modified().unwrap();
    set_mtime(&b, when - Duration::from_secs(3600));
    let plan = ResumeData::load(&path, &fixture.meta)
        .unwrap()
        .plan(tmp.path(), &fixture.meta);
    assert_eq!(ones(&plan.trusted), vec![0]);
    assert_eq!(ones(&plan.to_check), vec![1, 2, 3]);
}

/// Recomputes the checksum after a test edits a resume file's body.
fn reseal(bytes: &mut Vec<u8>) {
    let body = bytes.len() - 20;
    bytes.truncate(body);
    let checksum = Sha1::digest(&bytes[..]);
    bytes.extend_from_slice(&checksum);
}

#[test]
fn corrupt_truncated_garbage_and_foreign_resume_files_are_refused_and_rechecked() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = three_files();
    let other = Fixture::single(15 << 16, 1 << 16, 99);
    let path = tmp.path().join("r.resume");
    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, tmp.path().join("ours").as_path());
    download_all(&mut store, &mut files, &fixture);
    store.save_resume(&mut files, &full(&store), &path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let mut theirs = other.open(&mut files, tmp.path().join("theirs").as_path());
    let foreign = tmp.path().join("foreign.resume");
    theirs.save_resume(&mut files, &full(&theirs), &foreign).unwrap();

    let load = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        ResumeData::load(&path, &fixture.meta)
    };
    let mut flipped = good.clone();
    flipped[50] ^= 1;
    assert!(matches!(load(&flipped), Err(ResumeError::ChecksumMismatch)));
    assert!(matches!(
        load(&good[..good.len() - 7]),
        Err(ResumeError::Truncated { .. })
    ));
    assert!(matches!(load(&good[..5]), Err(ResumeError::Truncated { .. })));
    assert!(matches!(load(b""), Err(ResumeError::Truncated { .. })));
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(load(&long), Err(ResumeError::TrailingBytes { .. })));
    assert!(matches!(load(b"d8:announce3:abce"), Err(ResumeError::BadMagic)));
    let mut garbage = vec![0u8; good.len()];
    garbage
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (i * 31) as u8);
    assert!(matches!(load(&garbage), Err(ResumeError::BadMagic)));
    let mut version = good.clone();
    version[8] = 2;
    assert!(matches!(
        load(&version),
        Err(ResumeError::UnsupportedVersion { found: 2 })
    ));
    let foreign_bytes = std::fs::read(&foreign).unwrap();
    let e = load(&foreign_bytes).unwrap_err();
    assert!(matches!(e, ResumeError::OtherTorrent { found } if found == other.meta.info_hash));
    assert!(e.to_string().contains("another torrent"), "{e}");
    let theirs_decoded = ResumeData::decode(&foreign_bytes).unwrap();
    let ours = tmp.path().join("ours");
    assert_eq!(
        theirs_decoded.plan(&ours, &fixture.meta).trusted.count(),
        0,
        "never trusted"
    );
    // Our info hash with another shape: refused too (piece count, then length).
    let mut shape = good.clone();
    shape[40] = 14;
    shape[48 + 1] &= 0xfc; // no bit past piece 13
    reseal(&mut shape);
    assert!(matches!(
        load(&shape),
        Err(ResumeError::PieceCountDiffers {
            found: 14,
            expected: 15
        })
    ));
    let mut shape = good.clone();
    shape[33] = 0x80;
    reseal(&mut shape);
    assert!(matches!(
        load(&shape),
        Err(ResumeError::PieceLengthDiffers { .. })
    ));
    let mut spare = good.clone();
    spare[48 + 1] |= 1; // piece 15 of 15
    reseal(&mut spare);
    assert!(matches!(load(&spare), Err(ResumeError::SpareBitsSet)));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        ResumeData::load(&path, &fixture.meta),
        Err(ResumeError::Missing)
    ));

    // What the torrent then does: check every piece that may hold data.
    let plan = ResumePlan::without_resume(&tmp.path().join("ours"), &fixture.meta);
    assert_eq!(plan.trusted.count(), 0);
    assert_eq!(plan.to_check.count(), 15);
    assert_eq!(check(&mut store, &mut files, &plan.to_check).count(), 15);
}

#[test]
fn without_resume_data_only_pieces_that_may_hold_data_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Fixture::single(64 << 16, 1 << 16, 13);
    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, tmp.path());
    let plan = ResumePlan::without_resume(tmp.path(), &fixture.meta);
    assert_eq!(
        (plan.to_check.count(), plan.unwritten),
        (0, 64),
        "a new sparse file holds nothing"
    );
    for piece in [3, 40, 41] {
        write_piece(&mut store, &mut files, &fixture, piece, 16384, Order::InOrder);
    }
    store.sync(&mut files).unwrap();
    let plan = ResumePlan::without_resume(tmp.path(), &fixture.meta);
    assert_eq!(ones(&plan.to_check), vec![3, 40, 41]);
    assert_eq!(plan.unwritten, 61);
}

#[test]
fn save_atomic_replaces_the_old_file_and_capture_claims_only_whole_files() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = three_files();
    let path = tmp.path().join("deep/er/r.resume");
    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, tmp.path());
    download_all(&mut store, &mut files, &fixture);
    let mut have = Bitfield::new(15);
    have.set(0);
    store.save_resume(&mut files, &have, &path).unwrap();
    store.save_resume(&mut files, &full(&store), &path).unwrap();
    assert_eq!(ResumeData::load(&path, &fixture.meta).unwrap().have().count(), 15);
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["r.resume"]);

    // A file cut short is not claimed, whatever the caller says.
    std::fs::File::options()
        .write(true)
        .open(tmp.path().join("t/b"))
        .unwrap()
        .set_len(1000)
        .unwrap();
    let resume = ResumeData::capture(&store, &full(&store)).unwrap();
    assert_eq!(ones(resume.have()), [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]);
}

#[test]
fn decoding_random_and_mutated_inputs_never_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Fixture::new(
        &[("a", 100_000, false), (".pad/0", 31_072, true), ("b", 5, false)],
        1 << 16,
        14,
    );
    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, tmp.path());
    let mut have = Bitfield::new(fixture.piece_count());
    have.set(1);
    let good = ResumeData::capture(&store, &have).unwrap();
    let good_bytes = good.encode();
    assert_eq!(ResumeData::decode(&good_bytes).unwrap(), good);
    good.check_matches(&fixture.meta).unwrap();
    download_all(&mut store, &mut files, &fixture);

    let mut rng = Xorshift::new(0x5eed);
    let mut accepted = 0;
    for round in 0..60_000u32 {
        let mut bytes = if round % 4 == 0 {
            // Random bytes, some starting like a resume file.
            let len = rng.below(200) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if round % 8 == 0 {
                bytes.splice(0..len.min(8), MAGIC.iter().copied());
            }
            bytes
        } else {
            let mut bytes = good_bytes.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len() as u64) as usize;
                match rng.below(4) {
                    0 => bytes[at] ^= 1 << rng.below(8),
                    1 => bytes[at] = rng.next_u64() as u8,
                    2 => bytes.truncate(at),
                    _ => bytes.insert(at, rng.next_u64() as u8),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            bytes
        };
        // Half the mutants get a valid checksum, so the checks behind it are reached.
        if round % 2 == 1 && bytes.len() >= 68 && bytes.starts_with(MAGIC) {
            reseal(&mut bytes);
        }
        if let Ok(resume) = ResumeData::decode(&bytes) {
            assert_eq!(resume.encode(), bytes, "what decodes encodes back to itself");
            if resume.check_matches(&fixture.meta).is_ok() {
                accepted += 1;
                // Whatever it claims, the plan only trusts what is on disk unchanged.
                let plan = resume.plan(tmp.path(), &fixture.meta);
                let pieces = plan.trusted.count() + plan.to_check.count() + plan.unwritten;
                assert_eq!(pieces, fixture.piece_count());
            }
        }
    }
    assert!(
        accepted > 0,
        "some mutants (of the bitfield, say) are well-formed"
    );
}
