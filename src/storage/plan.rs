//! What to do with each piece at start: trust it (the resume data claims it and
//! none of its files changed), check it (it may hold data), or fetch it.
//!
//! A claimed piece is trusted only if every file it touches has the recorded size
//! (which must be the torrent's length) and modification time. Every other piece is
//! checked if any of its bytes may be on disk: a file that exists, in a range that
//! `SEEK_DATA` does not report as a hole. So pieces verified after the last save
//! (kill -9, power loss) are found again by checking, and the never-written parts
//! of sparse files are neither read nor hashed.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::resume::{mtime_ns, FileStamp, ResumeData};
use super::sys;
use crate::metainfo::{Layout, LayoutFile, Metainfo};
use crate::swarm::Bitfield;

/// How a file differs from what the resume data recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileChange {
    /// It is not there (or is not a regular file).
    Missing,
    /// It cannot be looked at.
    Unreadable(io::ErrorKind),
    /// It was not there, or not of full size, when the resume data was saved.
    NotRecorded,
    /// Its size changed.
    Size { recorded: u64, found: u64 },
    /// It was written since (or replaced by another file of the same size).
    Modified { recorded_ns: i64, found_ns: i64 },
}

/// Why pieces the resume data claims are checked again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanReason {
    /// Index of the file in the torrent, and where it is.
    pub file: usize,
    pub path: PathBuf,
    pub change: FileChange,
}

impl std::fmt::Display for PlanReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display();
        match &self.change {
            FileChange::Missing => write!(f, "{path} is missing"),
            FileChange::Unreadable(kind) => write!(f, "{path} cannot be read ({kind})"),
            FileChange::NotRecorded => write!(f, "{path} was incomplete when resume data was saved"),
            FileChange::Size { recorded, found } => {
                write!(f, "{path} changed size ({recorded} → {found} bytes)")
            }
            FileChange::Modified { .. } => write!(f, "{path} was modified since resume data was saved"),
        }
    }
}

/// The start-up decision for every piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumePlan {
    /// Verified before and unchanged since: had at once, nothing read.
    pub trusted: Bitfield,
    /// To hash with a [`Checker`](super::Checker): may hold data.
    pub to_check: Bitfield,
    /// Pieces in neither set: never written (holes, missing files), so fetched.
    pub unwritten: u32,
    /// The files whose claimed pieces are checked again, and why.
    pub reasons: Vec<PlanReason>,
}

impl ResumeData {
    /// Which claimed pieces `root` still holds unchanged, and what to check.
    /// Call it before [`PieceStore::open`](super::PieceStore::open), which may
    /// resize files.
    /// Resume data that is not `metainfo`'s (see [`ResumeData::check_matches`]) is
    /// ignored: nothing is trusted.
    pub fn plan(&self, root: &Path, metainfo: &Metainfo) -> ResumePlan {
        match self.check_matches(metainfo) {
            Ok(()) => build(root, metainfo, Some(self)),
            Err(_) => build(root, metainfo, None),
        }
    }
}

impl ResumePlan {
    /// The plan without (usable) resume data: trust nothing, check every piece that
    /// may hold data.
    pub fn without_resume(root: &Path, metainfo: &Metainfo) -> ResumePlan {
        build(root, metainfo, None)
    }
}

fn build(root: &Path, metainfo: &Metainfo, resume: Option<&ResumeData>) -> ResumePlan {
    let layout = metainfo.layout();
    let count = layout.piece_count();
    // Pieces on a file that is not as recorded (all of them without resume data),
    // and the files on disk with their sizes.
    let mut changed = Bitfield::new(count);
    let mut on_disk = Vec::new();
    let mut reasons = Vec::new();
    for (index, (file, entry)) in layout.files().iter().zip(&metainfo.info.files).enumerate() {
        if entry.pad || file.length == 0 {
            continue; // no bytes on disk to trust or check
        }
        let path = root.join(&file.path);
        let change = match std::fs::metadata(&path) {
            Ok(meta) if !meta.is_file() => Some(FileChange::Missing),
            Ok(meta) => {
                if meta.len() > 0 {
                    on_disk.push((index, path.clone(), meta.len()));
                }
                resume.and_then(|r| compare(r.files.get(index), file, &meta))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(FileChange::Missing),
            Err(e) => Some(FileChange::Unreadable(e.kind())),
        };
        match (resume, change) {
            (Some(resume), Some(change)) => {
                mark(&mut changed, layout.file_pieces(index));
                if layout.file_pieces(index).any(|p| resume.have.get(p)) {
                    reasons.push(PlanReason {
                        file: index,
                        path,
                        change,
                    });
                }
            }
            (Some(_), None) => {}
            (None, _) => mark(&mut changed, layout.file_pieces(index)),
        }
    }
    let mut trusted = Bitfield::new(count);
    if let Some(resume) = resume {
        for piece in resume.have.iter_ones().filter(|&p| !changed.get(p)) {
            trusted.set(piece);
        }
    }
    // Only files with untrusted pieces are looked into, so a complete torrent with
    // good resume data starts without a look at its data.
    let mut has_data = Bitfield::new(count);
    for (index, path, size) in on_disk {
        if layout.file_pieces(index).any(|p| !trusted.get(p)) {
            mark_data(&path, &layout.files()[index], size, &layout, &mut has_data);
        }
    }
    let mut to_check = Bitfield::new(count);
    for piece in has_data.iter_ones().filter(|&p| !trusted.get(p)) {
        to_check.set(piece);
    }
    ResumePlan {
        unwritten: count - trusted.count() - to_check.count(),
        trusted,
        to_check,
        reasons,
    }
}

/// How `meta` differs from the recorded stamp; `None` if it does not.
fn compare(recorded: Option<&FileStamp>, file: &LayoutFile, meta: &std::fs::Metadata) -> Option<FileChange> {
    let (size, mtime) = (meta.len(), mtime_ns(meta));
    match recorded {
        Some(&FileStamp::Present { size: was, mtime_ns }) if was == file.length => {
            if size != was {
                Some(FileChange::Size {
                    recorded: was,
                    found: size,
                })
            } else if mtime != mtime_ns {
                Some(FileChange::Modified {
                    recorded_ns: mtime_ns,
                    found_ns: mtime,
                })
            } else {
                None
            }
        }
        _ => Some(FileChange::NotRecorded),
    }
}

fn mark(bits: &mut Bitfield, pieces: std::ops::Range<u32>) {
    for piece in pieces {
        bits.set(piece);
    }
}

/// Marks the pieces with bytes in the data ranges of `path` (`size` bytes on disk).
fn mark_data(path: &Path, file: &LayoutFile, size: u64, layout: &Layout, has_data: &mut Bitfield) {
    let piece_length = layout.piece_length();
    let end = size.min(file.length);
    let piece_of = |file_offset: u64| ((file.offset + file_offset) / piece_length) as u32;
    let Ok(handle) = File::open(path) else {
        // Cannot look inside: it may all be data.
        mark(has_data, piece_of(0)..piece_of(end - 1) + 1);
        return;
    };
    let mut at = 0;
    // Each round marks at least one piece and moves past it, so this ends.
    while at < end {
        let range = match sys::next_data(&handle, at, end) {
            Ok(Some(range)) => range,
            Ok(None) => break,
            Err(_) => at..end,
        };
        let last = piece_of(range.end - 1);
        mark(has_data, piece_of(range.start)..last + 1);
        let past_last = (u64::from(last) + 1) * piece_length - file.offset;
        at = range.end.max(past_last);
    }
}
