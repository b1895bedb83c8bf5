//! No storage buffer grows with the piece length: verifying a 16 MiB piece (read
//! back almost whole) and checking 16 MiB pieces allocate less than 256 KiB at
//! peak, as they do for 256 KiB pieces.
//!
//! Its own binary with a peak-tracking global allocator and a plain `main`, so no
//! other test thread allocates while a scenario measures.

mod storage_util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use bitloop::storage::{CheckProgress, Checker, FilePool};
use bitloop::swarm::Bitfield;
use storage_util::{write_piece, Fixture, Order};

struct Peak;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn grew(by: isize) {
    let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call goes unchanged to the system allocator, which upholds the
// `GlobalAlloc` contract; we only update counters, which allocate nothing.
unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            grew(layout.size() as isize);
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            grew(layout.size() as isize);
        }
        ptr
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            grew(new_size as isize - layout.size() as isize);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Peak = Peak;

/// Most bytes `f` had allocated at once beyond what was live before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, isize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed) - base)
}

const LIMIT: isize = 256 << 10;

/// Peaks of (verifying one piece written in reverse, checking every piece) for
/// pieces of `piece_length`.
fn peaks(piece_length: u64) -> (isize, isize) {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Fixture::single(2 * piece_length, piece_length, 31);
    let mut files = FilePool::new(8);
    let mut store = fixture.open(&mut files, tmp.path());
    // Blocks in reverse: all but the first block are read back. The first read
    // back of the pool, so its scratch buffer is counted too.
    write_piece(&mut store, &mut files, &fixture, 1, 16384, Order::Reversed);
    let (ok, verify) = peak_of(|| store.verify_piece(&mut files, 1).unwrap());
    assert!(ok);
    assert_eq!(store.stats().bytes_read_back, piece_length - 16384);
    write_piece(&mut store, &mut files, &fixture, 0, 16384, Order::InOrder);
    assert!(store.verify_piece(&mut files, 0).unwrap());

    let all = Bitfield::full(2);
    let (good, check) = peak_of(|| {
        let mut checker = Checker::new(&store, &all);
        loop {
            if let CheckProgress::Done(good) = checker.step(&mut store, &mut files, 4 << 20).unwrap() {
                return good;
            }
        }
    });
    assert_eq!(good.count(), 2);
    store.close(&mut files);
    (verify, check)
}

fn sixteen_mib_pieces_cost_what_small_ones_do() {
    let (small_verify, small_check) = peaks(256 << 10);
    let (big_verify, big_check) = peaks(16 << 20);
    println!(
        "peak allocation: verify {small_verify} B / {big_verify} B, check {small_check} B / {big_check} B \
         (256 KiB / 16 MiB pieces)"
    );
    for peak in [small_verify, small_check, big_verify, big_check] {
        assert!(peak < LIMIT, "a storage operation allocated {peak} bytes at peak");
    }
    assert!(
        (big_verify - small_verify).abs() < 16 << 10 && (big_check - small_check).abs() < 16 << 10,
        "memory does not depend on the piece length"
    );
}

fn main() {
    let tests: [(&str, fn()); 1] = [(
        "sixteen_mib_pieces_cost_what_small_ones_do",
        sixteen_mib_pieces_cost_what_small_ones_do,
    )];
    let mut failed = 0;
    for (name, test) in tests {
        match std::panic::catch_unwind(test) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("\n{} passed, {failed} failed", tests.len() - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}
