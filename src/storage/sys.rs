//! The file calls std does not offer, through the `libc` crate: allocating a
//! file's blocks (`posix_fallocate`), read-ahead hints (`posix_fadvise`), early
//! writeback (`sync_file_range`), writing several buffers at an offset in one
//! call (`pwritev`; std's `write_vectored_at` is unstable) and finding the parts
//! of a sparse file that hold data (`lseek` with `SEEK_DATA`/`SEEK_HOLE`).
//!
//! Why `libc` and not `rustix`: `libc` is already in the tree (mio and socket2 use
//! it), so it costs no new crate, and these are plain calls on a valid fd.
//! Why `posix_fallocate` and not `fallocate(2)`: glibc falls back to writing zeros on
//! file systems without `fallocate(2)`, so `--preallocate` works everywhere.
//! Elsewhere than Linux, Android and FreeBSD, preallocation is refused as
//! unsupported, the hint is skipped and every range counts as data.

use std::fs::File;
use std::io::{self, IoSlice};
use std::ops::Range;
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
use std::os::fd::AsRawFd;

/// Allocates the first `len` bytes of `file`, so that later writes there cannot
/// fail for lack of space. Data already in the file is kept.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub fn preallocate(file: &File, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: the fd is valid for the life of `file`, which we borrow; the call
        // takes no pointers. It returns an error number rather than setting errno.
        let code = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        match code {
            0 => return Ok(()),
            libc::EINTR => continue,
            code => return Err(io::Error::from_raw_os_error(code)),
        }
    }
}

/// Tells the kernel `file` will be read from start to end (a larger read-ahead).
/// Only a hint: failure changes nothing, so it is ignored.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub fn advise_sequential(file: &File) {
    // SAFETY: as above, a valid borrowed fd and no pointers.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
}

/// The next range of `file` at or after `from` (and before `end`) that may hold
/// data, skipping holes. `Ok(None)`: only holes remain. A file system that cannot
/// tell reports everything as data.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub fn next_data(file: &File, from: u64, end: u64) -> io::Result<Option<Range<u64>>> {
    if from >= end {
        return Ok(None);
    }
    let Ok(offset) = libc::off_t::try_from(from) else {
        return Ok(Some(from..end));
    };
    // SAFETY: as above. lseek moves this fd's offset, which nothing else uses:
    // storage reads and writes with pread/pwrite.
    let data = unsafe { libc::lseek(file.as_raw_fd(), offset, libc::SEEK_DATA) };
    if data < 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            Some(libc::EINVAL | libc::EOPNOTSUPP) => Ok(Some(from..end)),
            _ => Err(error),
        };
    }
    let data = data as u64;
    if data >= end {
        return Ok(None);
    }
    // SAFETY: as above.
    let hole = unsafe { libc::lseek(file.as_raw_fd(), data as libc::off_t, libc::SEEK_HOLE) };
    if hole < 0 {
        return Ok(Some(data..end));
    }
    Ok(Some(data..(hole as u64).min(end)))
}

/// Starts writing `file`'s dirty pages to the device without waiting for it
/// (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`), so that the fsync at
/// completion finds most of the data already written instead of all of it. Only
/// a hint, like read-ahead: errors surface at the fsync, so they are ignored here.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn start_writeback(file: &File) {
    // SAFETY: a valid borrowed fd and no pointers; offset 0 and length 0 mean
    // the whole file.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn start_writeback(_file: &File) {}

/// Writes every byte of `parts`, in order, at `offset` of `file`: one `pwritev`
/// per call where the kernel takes it all (a run of blocks costs the page cache
/// one write: half the CPU of a `pwrite` per 16 KiB block on ext4, measured),
/// retried after short writes and interruptions.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub fn write_all_vectored_at(file: &File, mut parts: &mut [IoSlice<'_>], mut offset: u64) -> io::Result<()> {
    IoSlice::advance_slices(&mut parts, 0); // skips empty leading parts
    while !parts.is_empty() {
        let at = libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let count = parts.len().min(MAX_IOVECS) as libc::c_int;
        // SAFETY: `IoSlice` is guaranteed ABI-compatible with `iovec` on Unix, and
        // the first `count` of them borrow live buffers for the whole call; the fd
        // is valid for the life of `file`, which we borrow.
        let written =
            unsafe { libc::pwritev(file.as_raw_fd(), parts.as_ptr().cast::<libc::iovec>(), count, at) };
        if written < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if written == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        offset += written as u64;
        IoSlice::advance_slices(&mut parts, written as usize);
    }
    Ok(())
}

/// At most this many buffers per `pwritev` (POSIX guarantees 16 as `IOV_MAX`;
/// Linux takes 1024). Longer lists go in several calls.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
const MAX_IOVECS: usize = 1024;

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
pub fn write_all_vectored_at(file: &File, parts: &mut [IoSlice<'_>], mut offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    for part in parts.iter() {
        file.write_all_at(part, offset)?;
        offset += part.len() as u64;
    }
    Ok(())
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
pub fn preallocate(_file: &File, _len: u64) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
pub fn advise_sequential(_file: &File) {}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
pub fn next_data(_file: &File, from: u64, end: u64) -> io::Result<Option<Range<u64>>> {
    Ok((from < end).then_some(from..end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    /// An empty file to read and write, in a folder that goes with the guard.
    fn scratch_file() -> (tempfile::TempDir, File) {
        let tmp = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(tmp.path().join("f"))
            .unwrap();
        (tmp, file)
    }

    #[test]
    fn a_vectored_write_writes_every_part_in_order_past_the_iovec_limit() {
        let (_tmp, file) = scratch_file();
        // More parts than one call takes, some of them empty.
        let parts: Vec<Vec<u8>> = (0..2500u32).map(|i| vec![i as u8; (i % 5) as usize]).collect();
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        write_all_vectored_at(&file, &mut slices, 100).unwrap();
        let expected: Vec<u8> = parts.concat();
        let mut back = vec![0; expected.len()];
        file.read_exact_at(&mut back, 100).unwrap();
        assert_eq!(back, expected);
        assert_eq!(file.metadata().unwrap().len(), 100 + expected.len() as u64);
    }

    #[test]
    fn data_ranges_skip_holes_and_preallocation_keeps_data() {
        let (_tmp, file) = scratch_file();
        let len = 8 << 20;
        file.set_len(len).unwrap();
        file.write_all_at(&[7; 4096], 4 << 20).unwrap();
        // Wherever the file system puts block boundaries, the written bytes are
        // inside the first data range and nothing is found after it.
        let first = next_data(&file, 0, len).unwrap().expect("data");
        assert!(
            first.start <= 4 << 20 && first.end >= (4 << 20) + 4096,
            "{first:?}"
        );
        assert_eq!(next_data(&file, first.end, len).unwrap(), None);
        assert_eq!(next_data(&file, len, len).unwrap(), None);

        preallocate(&file, len).unwrap();
        assert_eq!(file.metadata().unwrap().len(), len);
        let mut back = [0; 4096];
        file.read_exact_at(&mut back, 4 << 20).unwrap();
        assert_eq!(back, [7; 4096]);
    }
}
