//! Disks that say no: a full tmpfs (writes fail with NoSpace naming the file;
//! `preallocate` fails at open instead), and a read-only mount (open fails naming
//! the folder or file). Each test mounts its own small tmpfs, so it needs root, as
//! CI has; without it the tests fail and say so, they never skip.

mod storage_util;

use bitloop::storage::{FilePool, PieceStore, StorageErrorKind, StoreOptions};
use bitloop::swarm::Bitfield;
use storage_util::{write_piece, Fixture, Order, Tmpfs};

#[test]
fn writing_past_a_full_disk_fails_with_no_space_naming_the_file() {
    let disk = Tmpfs::mount("2m");
    let fixture = Fixture::single(4 << 20, 256 << 10, 21);
    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, &disk.path);
    let path = disk.path.join("t/file.bin");

    let mut verified = Bitfield::new(fixture.piece_count());
    let error = 'fill: {
        for piece in 0..fixture.piece_count() {
            let data = fixture.piece(piece);
            for begin in (0..data.len()).step_by(16384) {
                if let Err(e) =
                    store.write_block(&mut files, piece, begin as u32, &data[begin..begin + 16384])
                {
                    break 'fill e;
                }
            }
            assert!(store.verify_piece(&mut files, piece).unwrap());
            verified.set(piece);
        }
        panic!("4 MiB fitted on a 2 MiB tmpfs");
    };
    assert_eq!(error.kind(), StorageErrorKind::NoSpace);
    assert_eq!(error.path(), path);
    assert_eq!(
        error.to_string(),
        format!("{}: no space left on device (while writing)", path.display())
    );
    assert!(
        (6..=8).contains(&verified.count()),
        "about 2 MiB fitted: {}",
        verified.count()
    );
    assert!(store.stats().bytes_written <= 2 << 20);
    // What was written before is intact, and the store keeps working for it.
    let mut block = vec![0; 16384];
    store.read_block(&mut files, 0, 0, &mut block).unwrap();
    assert_eq!(block, &fixture.piece(0)[..16384]);
    // Resume data cannot be saved on the full disk either: a clear error, and no
    // half-written resume file is left where the next start would read it.
    let resume = disk.path.join(".bitloop/x.resume");
    let e = store.save_resume(&mut files, &verified, &resume).unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::NoSpace, "{e}");
    assert!(
        e.to_string().contains("x.resume.tmp: no space left on device"),
        "{e}"
    );
    assert!(!resume.exists());
    store.close(&mut files);
    assert_eq!(files.len(), 0);
}

#[test]
fn preallocating_on_a_full_disk_fails_at_open_naming_the_file() {
    let disk = Tmpfs::mount("2m");
    let fixture = Fixture::new(
        &[("small", 1 << 20, false), ("big", 3 << 20, false)],
        256 << 10,
        22,
    );
    let mut files = FilePool::new(8);
    let options = StoreOptions {
        preallocate: true,
        ..StoreOptions::default()
    };
    let e = PieceStore::open(files.new_store_id(), &disk.path, &fixture.meta, &options)
        .err()
        .expect("4 MiB cannot be preallocated on 2 MiB");
    let big = disk.path.join("t/big");
    assert_eq!((e.kind(), e.path()), (StorageErrorKind::NoSpace, big.as_path()));
    assert_eq!(
        e.to_string(),
        format!("{}: no space left on device (while preallocating)", big.display())
    );

    // A torrent that fits is allocated whole, so no write can fail for room.
    let fits = Fixture::single(1536 << 10, 256 << 10, 23);
    let root = disk.path.join("fits");
    std::fs::remove_file(disk.path.join("t/small")).unwrap();
    std::fs::remove_file(&big).unwrap();
    let mut store = PieceStore::open(files.new_store_id(), &root, &fits.meta, &options).unwrap();
    let blocks = std::fs::metadata(root.join("t/file.bin")).unwrap();
    assert!(std::os::unix::fs::MetadataExt::blocks(&blocks) * 512 >= 1536 << 10);
    for piece in (0..fits.piece_count()).rev() {
        write_piece(&mut store, &mut files, &fits, piece, 16384, Order::InOrder);
        assert!(store.verify_piece(&mut files, piece).unwrap());
    }
    store.sync(&mut files).unwrap();
}

#[test]
fn a_read_only_folder_fails_at_open_naming_the_folder_or_the_file() {
    let disk = Tmpfs::mount("1m");
    std::fs::create_dir(disk.path.join("t")).unwrap();
    std::fs::create_dir(disk.path.join("out")).unwrap();
    disk.remount_read_only();
    let mut files = FilePool::new(8);

    // The torrent's folder exists: creating the file is refused.
    let fixture = Fixture::single(100_000, 16384, 24);
    let e = PieceStore::open(
        files.new_store_id(),
        &disk.path,
        &fixture.meta,
        &StoreOptions::default(),
    )
    .err()
    .expect("a read-only mount cannot be written");
    let file = disk.path.join("t/file.bin");
    assert_eq!((e.kind(), e.path()), (StorageErrorKind::ReadOnly, file.as_path()));
    assert_eq!(
        e.to_string(),
        format!(
            "{}: read-only file system (while creating the file)",
            file.display()
        )
    );

    // The torrent's folder must be made: that is refused, naming it.
    let out = disk.path.join("out");
    let e = PieceStore::open(
        files.new_store_id(),
        &out,
        &fixture.meta,
        &StoreOptions::default(),
    )
    .err()
    .expect("a read-only mount cannot be written");
    assert_eq!(
        (e.kind(), e.path()),
        (StorageErrorKind::ReadOnly, out.join("t").as_path())
    );
    assert!(
        e.to_string()
            .ends_with("read-only file system (while creating the folder)"),
        "{e}"
    );
    assert_eq!(files.len(), 0);
}
