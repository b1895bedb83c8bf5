//! Storage benchmarks: a full check of 1 GiB of warm (page-cached) data through
//! `Checker` (1 MiB and 64 KiB pieces) next to SHA-1 of the same bytes in memory
//! (the limit), the download
//! path (16 KiB blocks written in order and verified), writing 256 MiB a block at
//! a time against runs of 16 blocks (what the torrent gathers from one read), and
//! the cost of verifying a piece that arrived in order (nothing read back) against
//! one that did not.
//!
//! Run with `cargo bench --bench storage` (1 GiB, medians and bests of 5 runs; the data goes
//! to a temporary folder under `$TMPDIR`, so it needs 1 GiB free there). Without
//! `--bench` (as `cargo test --all-targets` runs it) it is a 16 MiB smoke run.

use std::path::Path;
use std::time::Instant;

use bitloop::metainfo::Metainfo;
use bitloop::storage::{CheckProgress, Checker, FilePool, PieceStore, StoreOptions};
use bitloop::swarm::Bitfield;
use sha1::{Digest, Sha1};

const PIECE: usize = 1 << 20;
const BLOCK: usize = 16384;
/// Distinct piece contents; piece `i` holds `RING[i % RING]`.
const RING: usize = 64;
/// Bytes asked of each check step (the torrent would run one per loop iteration).
const BUDGET: u64 = 4 << 20;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

/// The ring of 1 MiB contents.
fn ring() -> Vec<Vec<u8>> {
    (0..RING)
        .map(|r| {
            let mut x = (r as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            (0..PIECE)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect()
}

/// `megabytes` MiB of the ring in one file, cut into pieces of `piece` bytes.
fn torrent(ring: &[Vec<u8>], megabytes: usize, piece: usize) -> Metainfo {
    let per_ring = PIECE / piece;
    let hashes: Vec<[u8; 20]> = ring
        .iter()
        .flat_map(|r| r.chunks(piece).map(|p| Sha1::digest(p).into()))
        .collect();
    let pieces = megabytes * per_ring;
    let mut info = format!(
        "d6:lengthi{}e4:name9:bench.bin12:piece lengthi{piece}e6:pieces{}:",
        megabytes * PIECE,
        pieces * 20
    )
    .into_bytes();
    for i in 0..pieces {
        info.extend_from_slice(&hashes[i % hashes.len()]);
    }
    info.push(b'e');
    let mut bytes = b"d4:info".to_vec();
    bytes.extend(info);
    bytes.push(b'e');
    Metainfo::parse(&bytes).expect("valid")
}

fn write_piece(store: &mut PieceStore, files: &mut FilePool, piece: u32, data: &[u8], reversed: bool) {
    let mut begins: Vec<usize> = (0..data.len()).step_by(BLOCK).collect();
    if reversed {
        begins.reverse();
    }
    for begin in begins {
        store
            .write_block(files, piece, begin as u32, &data[begin..begin + BLOCK])
            .expect("written");
    }
}

/// This process's CPU time (user + system) so far, in seconds.
fn cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec for the call's duration.
    let code = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    assert_eq!(code, 0, "clock_gettime");
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Writes the first `pieces` pieces into fresh files `runs` times each way, one
/// write per block and runs of 16 blocks alternating, and prints the medians of
/// the CPU time each took. CPU, not wall: writing from memory outruns the disk,
/// and the kernel then pauses the writer for the writeback to catch up, by an
/// amount that depends on the device's state more than on the writes (here the
/// faster of the two ways was paused to 0.8 s in some rounds, 0.24 s in others).
fn write_runs(ring: &[Vec<u8>], meta: &Metainfo, files: &mut FilePool, tmp: &Path, pieces: u32, runs: usize) {
    let mut seconds = [Vec::new(), Vec::new()];
    for round in 0..runs {
        for as_runs in [round % 2 == 0, round % 2 == 1] {
            let folder = tmp.join(format!("writes-{round}-{as_runs}"));
            let mut store =
                PieceStore::open(files.new_store_id(), &folder, meta, &StoreOptions::default()).unwrap();
            let started = cpu_seconds();
            for piece in 0..pieces {
                let data = &ring[piece as usize % RING];
                let run = if as_runs { 16 * BLOCK } else { BLOCK };
                for (i, chunk) in data.chunks(run).enumerate() {
                    let parts: Vec<&[u8]> = chunk.chunks(BLOCK).collect();
                    store
                        .write_run(files, piece, (i * run) as u32, &parts)
                        .expect("written");
                }
            }
            seconds[usize::from(as_runs)].push(cpu_seconds() - started);
            // Untimed: the writeback this run started must not slow the next one.
            store.sync(files).expect("synced");
            for piece in 0..pieces {
                store.abandon_piece(piece);
            }
            store.close(files);
            std::fs::remove_dir_all(&folder).unwrap();
        }
    }
    let [single, runs16] = seconds.map(median);
    println!(
        "writing {pieces} MiB (hashed in order as it goes), CPU: one write per 16 KiB block {:.0} ms, \
         runs of 16 blocks {:.0} ms",
        single * 1e3,
        runs16 * 1e3
    );
}

fn full_check(store: &mut PieceStore, files: &mut FilePool, pieces: u32) -> f64 {
    let all = Bitfield::full(pieces);
    let started = Instant::now();
    let mut checker = Checker::new(store, &all);
    let good = loop {
        if let CheckProgress::Done(good) = checker.step(store, files, BUDGET).expect("readable") {
            break good;
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    assert!(good.is_full(), "every piece checks");
    seconds
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (pieces, runs) = if quick { (16, 1) } else { (1024, 5) };
    let bytes = (pieces * PIECE) as f64;
    let gbs = |seconds: f64| bytes / seconds / 1e9;
    let ring = ring();
    let meta = torrent(&ring, pieces, PIECE);
    let tmp = tempfile::tempdir().expect("temporary folder");
    let mut files = FilePool::new(64);
    let mut store =
        PieceStore::open(files.new_store_id(), tmp.path(), &meta, &StoreOptions::default()).unwrap();

    // The download path: blocks in order, each piece verified when complete.
    let started = Instant::now();
    for piece in 0..pieces as u32 {
        write_piece(&mut store, &mut files, piece, &ring[piece as usize % RING], false);
        assert!(store.verify_piece(&mut files, piece).unwrap());
    }
    let download = started.elapsed().as_secs_f64();
    assert_eq!(store.stats().bytes_read_back, 0);
    println!(
        "download path: {} MiB in 16 KiB blocks, in order, verified: {:.2} GB/s, 0 bytes read back",
        pieces,
        gbs(download)
    );

    store.sync(&mut files).expect("synced"); // its writeback must not slow what follows
    write_runs(&ring, &meta, &mut files, tmp.path(), pieces.min(256) as u32, runs);

    // The same file as 64 KiB pieces too, where per-piece costs would show.
    let small = torrent(&ring, pieces, 64 << 10);
    let mut store_small =
        PieceStore::open(files.new_store_id(), tmp.path(), &small, &StoreOptions::default()).unwrap();
    let small_count = small.info.pieces.len() as u32;
    full_check(&mut store, &mut files, pieces as u32); // warm the cache
                                                       // The limit (SHA-1 of the same bytes in memory) and the checks alternate, so
                                                       // that all of them see the same load from whatever else runs on the machine.
    let (mut limit, mut check, mut check_small) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let started = Instant::now();
        for piece in 0..pieces {
            std::hint::black_box(Sha1::digest(&ring[piece % RING]));
        }
        limit.push(started.elapsed().as_secs_f64());
        check.push(full_check(&mut store, &mut files, pieces as u32));
        check_small.push(full_check(&mut store_small, &mut files, small_count));
    }
    store_small.close(&mut files);
    let best = |samples: &[f64]| samples.iter().copied().fold(f64::MAX, f64::min);
    let limit_best = best(&limit);
    let (limit, check_best, check, small_best, check_small) = (
        median(limit),
        best(&check),
        median(check),
        best(&check_small),
        median(check_small),
    );
    println!(
        "full check of {pieces} MiB warm data, {BUDGET} bytes per step: median {:.2} GB/s, best {:.2} GB/s \
         (SHA-1 in memory: median {:.2} GB/s, best {:.2} GB/s; check at {:.0} % of it)",
        gbs(check),
        gbs(check_best),
        gbs(limit),
        gbs(limit_best),
        100.0 * limit / check
    );
    println!(
        "the same as 64 KiB pieces: median {:.2} GB/s, best {:.2} GB/s",
        gbs(check_small),
        gbs(small_best)
    );

    // Verify cost: 64 pieces in order against 64 pieces in reverse block order.
    let sample = 64u32.min(pieces as u32);
    for reversed in [false, true] {
        let read_back = store.stats().bytes_read_back;
        let mut seconds = 0.0;
        for piece in 0..sample {
            write_piece(
                &mut store,
                &mut files,
                piece,
                &ring[piece as usize % RING],
                reversed,
            );
            let started = Instant::now();
            assert!(store.verify_piece(&mut files, piece).unwrap());
            seconds += started.elapsed().as_secs_f64();
        }
        println!(
            "verify a 1 MiB piece written {}: {:.0} µs, {} KiB read back",
            if reversed { "out of order" } else { "in order    " },
            seconds / f64::from(sample) * 1e6,
            (store.stats().bytes_read_back - read_back) / u64::from(sample) / 1024
        );
    }
    store.close(&mut files);
}
