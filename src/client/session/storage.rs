//! A torrent's storage from the session's side: at start, the resume plan (which
//! pieces to trust, check or fetch); the check of existing data in slices from the
//! loop's deferred phase, so signals, trackers and peers of other torrents keep
//! being served; and resume saves every few seconds while pieces verify.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{info, warn};

use super::{Phase, Session, TorrentKey};
use crate::client::Owner;
use crate::metainfo::Metainfo;
use crate::reactor::Reactor;
use crate::storage::{
    default_state_dir, CheckProgress, CheckStatus, Checker, FilePool, PieceStore, ResumeData, ResumeError,
    ResumePlan, StoreOptions,
};
use crate::swarm::Bitfield;

/// Bytes hashed per check slice (a few milliseconds at SHA-1 speed).
pub const CHECK_SLICE: u64 = 4 << 20;
/// Resume data is saved at most this often while pieces verify.
pub const RESUME_INTERVAL: Duration = Duration::from_secs(5);
/// The folder, inside a download's output folder, that holds its resume data.
pub const STATE_FOLDER: &str = ".bitloop";

/// How to add a torrent.
#[derive(Clone, Debug)]
pub struct AddOptions {
    /// The folder the torrent's file or folder goes into.
    pub output: PathBuf,
    /// Allocate every file at once, so a full disk fails at start, not halfway.
    pub preallocate: bool,
    /// Where resume data lives (`None`: `<output>/.bitloop`).
    pub state_dir: Option<PathBuf>,
    /// Serve the data as it is (seeding): never create, resize or write a file
    /// (`StoreOptions::read_only`). Without a `state_dir`, resume data goes to
    /// `<output>/.bitloop` if that can be written, else to the XDG state folder,
    /// so read-only media can be seeded.
    pub read_only: bool,
}

impl AddOptions {
    pub fn new(output: PathBuf) -> AddOptions {
        AddOptions {
            output,
            preallocate: false,
            state_dir: None,
            read_only: false,
        }
    }

    fn resume_path(&self, metainfo: &Metainfo) -> PathBuf {
        let dir = match &self.state_dir {
            Some(dir) => dir.clone(),
            None => self.output.join(STATE_FOLDER),
        };
        ResumeData::path_in(&dir, &metainfo.info_hash)
    }
}

/// A torrent whose existing data is being checked before it starts.
pub(super) struct Checking {
    pub(super) metainfo: Box<Metainfo>,
    pub(super) store: PieceStore,
    pub(super) checker: Checker,
    /// Trusted from resume data, plus what the check found good so far.
    pub(super) have: Bitfield,
    pub(super) resume_path: PathBuf,
}

/// What opening a torrent's storage gave.
pub(super) enum Opened {
    /// Ready: these pieces are verified.
    Ready(Box<PieceStore>, Bitfield, PathBuf),
    /// Some pieces must be checked first.
    Check(Box<Checking>),
}

/// Plans from resume data (trusting only unchanged files) and opens the files.
pub(super) fn open_storage(
    files: &mut FilePool,
    metainfo: &Metainfo,
    options: &AddOptions,
) -> Result<Opened, String> {
    let root = &options.output;
    let store_options = StoreOptions {
        preallocate: options.preallocate,
        read_only: options.read_only,
    };
    let open = |files: &mut FilePool| {
        PieceStore::open(files.new_store_id(), root, metainfo, &store_options).map_err(|e| e.to_string())
    };
    // Seeding opens first: the data must be there before anything is made beside
    // it. Downloading plans first: opening may resize files.
    let opened = if options.read_only {
        Some(open(files)?)
    } else {
        None
    };
    let resume_path = match resume_path(metainfo, options) {
        Ok(path) => path,
        Err(why) => {
            if let Some(store) = opened {
                store.close(files);
            }
            return Err(why);
        }
    };
    let plan = match ResumeData::load(&resume_path, metainfo) {
        Ok(resume) => resume.plan(root, metainfo),
        Err(ResumeError::Missing) => ResumePlan::without_resume(root, metainfo),
        Err(e) => {
            warn!("{}: {e}; checking the files again", resume_path.display());
            ResumePlan::without_resume(root, metainfo)
        }
    };
    for reason in &plan.reasons {
        info!("resume: {reason}; its pieces are checked again");
    }
    let store = match opened {
        Some(store) => store,
        None => open(files)?,
    };
    let trusted = plan.trusted.count();
    if plan.to_check.count() == 0 {
        if trusted > 0 {
            info!("resume: {trusted} pieces verified before, nothing to check");
        }
        return Ok(Opened::Ready(Box::new(store), plan.trusted, resume_path));
    }
    info!(
        "resume: {trusted} pieces trusted, {} to check",
        plan.to_check.count()
    );
    let checker = Checker::new(&store, &plan.to_check);
    Ok(Opened::Check(Box::new(Checking {
        metainfo: Box::new(metainfo.clone()),
        store,
        checker,
        have: plan.trusted,
        resume_path,
    })))
}

/// Where the torrent's resume data lives; its folder exists once this is Ok. The
/// folder must be writable: a read-only output fails at start, named, unless the
/// torrent only serves its data and the state folder can take the file instead.
fn resume_path(metainfo: &Metainfo, options: &AddOptions) -> Result<PathBuf, String> {
    let path = options.resume_path(metainfo);
    let Err(why) = ensure_folder(&path) else {
        return Ok(path);
    };
    let fallback = (options.read_only && options.state_dir.is_none())
        .then(default_state_dir)
        .flatten()
        .map(|dir| ResumeData::path_in(&dir, &metainfo.info_hash));
    match fallback {
        Some(other) if ensure_folder(&other).is_ok() => {
            info!("{why}; resume data goes to {}", other.display());
            Ok(other)
        }
        _ => Err(why),
    }
}

fn ensure_folder(resume_path: &Path) -> Result<(), String> {
    let Some(dir) = resume_path.parent() else {
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

impl Session {
    /// How far the check of `key` is, while it is checking.
    pub fn check_status(&self, key: TorrentKey) -> Option<CheckStatus> {
        self.torrents
            .get(key as usize)
            .and_then(|e| e.checking.as_ref())
            .map(|c| c.checker.status())
    }

    /// One slice of checking for the torrent at the front of the line; the next
    /// iteration's deferred phase does the next one.
    pub(super) fn check_round(&mut self, rx: &mut Reactor<Owner>) {
        let Some(key) = self.checking_line.pop_front() else {
            return;
        };
        let Some(entry) = self.torrents.get_mut(key as usize) else {
            return;
        };
        let Some(checking) = entry.checking.as_mut() else {
            return;
        };
        let step = checking
            .checker
            .step(&mut checking.store, &mut self.out.files, CHECK_SLICE);
        match step {
            Ok(CheckProgress::Running(_)) => self.checking_line.push_back(key),
            Ok(CheckProgress::Done(good)) => {
                let mut checking = entry.checking.take().expect("checking");
                for piece in good.iter_ones() {
                    checking.have.set(piece);
                }
                info!(
                    "{}: check done, {} of {} pieces verified",
                    entry.name,
                    checking.have.count(),
                    checking.have.len()
                );
                let now = rx.now();
                entry.torrent.set_metadata(
                    now,
                    &checking.metainfo,
                    checking.store,
                    checking.have,
                    Some(checking.resume_path),
                    &mut self.out,
                );
                entry.phase = Phase::Running;
                self.push_event(super::SessionEvent::Checked(key));
                // The check may have found pieces the resume data did not claim.
                self.resume_dirty(key, now);
                self.after(rx, key);
            }
            Err(e) => {
                let why = format!("cannot check existing data: {e}");
                log::debug!("{}: {why}", entry.name);
                self.push_event(super::SessionEvent::Failed(key, why));
            }
        }
        self.queue_deferred(rx);
    }

    /// A piece verified: save resume data within [`RESUME_INTERVAL`].
    pub(super) fn resume_dirty(&mut self, key: TorrentKey, now: Instant) {
        if let Some(entry) = self.torrents.get_mut(key as usize) {
            entry.resume_due.get_or_insert(now + RESUME_INTERVAL);
        }
    }

    /// Saves resume data of `key` if it is due.
    pub(super) fn save_resume_if_due(&mut self, key: TorrentKey, now: Instant) {
        let Some(entry) = self.torrents.get_mut(key as usize) else {
            return;
        };
        if entry.resume_due.is_none_or(|at| at > now) {
            return;
        }
        entry.resume_due = None;
        if let Err(e) = entry.torrent.save_resume(&mut self.out) {
            // Data that cannot be synced may be lost: the torrent stops, named.
            let why = format!("cannot save: {e}");
            self.push_event(super::SessionEvent::Failed(key, why));
        }
    }
}
