//! Uploads: requests from peers checked and queued, served from disk in bounded
//! batches while the peer's connection keeps up, and who may download from us.
//!
//! A request is served only for a verified piece we have, while the peer is
//! unchoked (or the piece is in the allowed-fast set we gave it), for a range
//! inside the piece of at most one block, and while its queue is under our `reqq`.
//! With the Fast extension every refused request gets a `reject`; without it the
//! request is dropped, and a peer that keeps flooding is closed.
//!
//! Serving is pulled, not pushed: the driver calls [`Torrent::serve`] with a budget
//! (blocks per loop iteration, bytes the rate limit allows), peers take turns, and
//! a peer whose connection holds more than [`MAX_UNSENT`] bytes unsent waits for
//! its `Drained`, so one slow or greedy peer can neither grow a queue nor hold the
//! loop.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use log::debug;

use super::messages::Violation;
use super::{Output, Torrent};
use crate::peer::OUR_REQQ;
use crate::random::Xorshift;
use crate::swarm::PeerKey;
use crate::wire::{BlockRef, Message, BLOCK};

/// Bytes a peer's connection may hold unsent before we stop serving it.
pub const MAX_UNSENT: usize = 4 * (BLOCK as usize + 13);
/// Requests dropped (no Fast extension) before a flooding peer is closed.
const MAX_DROPPED: u32 = 2 * OUR_REQQ as u32;
/// How often the choker re-decides, and rotates the optimistic unchoke.
const RECHOKE: Duration = Duration::from_secs(10);
const OPTIMISTIC: Duration = Duration::from_secs(30);

/// How one peer's turn went.
enum Turn {
    Served,
    Nothing,
    NoTokens,
}

/// Room for one serving round.
#[derive(Clone, Copy, Debug)]
pub struct ServeBudget {
    /// Blocks that may be read from disk.
    pub blocks: usize,
    /// Bytes the upload rate limit allows.
    pub bytes: u64,
}

/// Who may download from us: a few regular slots and one optimistic unchoke.
/// (A stand-in with the real shape; `swarm::choker` replaces its policy.)
#[derive(Debug)]
pub struct Choker {
    slots: usize,
    peers: HashSet<PeerKey>,
    next_rechoke: Option<Instant>,
    optimistic: Option<PeerKey>,
    next_optimistic: Option<Instant>,
    /// Something changed (a slot freed, interest moved): rechoke at the next chance.
    dirty: bool,
    rng: Xorshift,
}

impl Choker {
    pub fn new(slots: usize, seed: u64) -> Choker {
        Choker {
            slots,
            peers: HashSet::new(),
            next_rechoke: None,
            optimistic: None,
            next_optimistic: None,
            dirty: false,
            rng: Xorshift::new(seed),
        }
    }

    pub fn peer_connected(&mut self, now: Instant, key: PeerKey) {
        self.peers.insert(key);
        self.next_rechoke.get_or_insert(now + RECHOKE);
    }

    pub fn peer_gone(&mut self, key: PeerKey) {
        self.peers.remove(&key);
        if self.optimistic == Some(key) {
            self.optimistic = None;
        }
        if self.peers.is_empty() {
            self.next_rechoke = None;
            self.next_optimistic = None;
        }
    }

    pub fn slot_freed(&mut self) {
        self.dirty = true;
    }

    pub fn interest_changed(&mut self) {
        self.dirty = true;
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_rechoke
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.dirty || self.next_rechoke.is_some_and(|at| at <= now)
    }
}

impl Torrent {
    /// A `request` from `key`.
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        key: PeerKey,
        block: BlockRef,
        out: &mut Output,
    ) -> Result<(), Violation> {
        let Some(meta) = &self.meta else {
            return self.refuse(key, block, out);
        };
        let size = meta.picker.piece_size_checked(block.index);
        let in_piece = size.is_some_and(|size| {
            block.length > 0
                && block.length <= BLOCK
                && u64::from(block.begin) + u64::from(block.length) <= u64::from(size)
        });
        if !in_piece {
            return Err(Violation::BadRequest(block));
        }
        let have = meta.picker.have().get(block.index);
        let session = self.pool.session_mut(key).expect("active");
        let allowed = !session.am_choking || session.allowed_fast_sent.contains(&block.index);
        if !have || !allowed || session.queue.len() >= OUR_REQQ {
            return self.refuse(key, block, out);
        }
        if session.queue.contains(&block) {
            return Ok(()); // a duplicate of a queued request
        }
        session.queue.push_back(block);
        let _ = now;
        self.enqueue_upload(key);
        Ok(())
    }

    /// Refuses a request: `reject` with Fast; without it the request is dropped and
    /// a peer that keeps sending more than we queue is closed.
    fn refuse(&mut self, key: PeerKey, block: BlockRef, out: &mut Output) -> Result<(), Violation> {
        self.stats.refused_requests += 1;
        let peer = self.pool.get_mut(key).expect("active");
        let conn = peer.conn;
        let session = peer.session_mut().expect("active");
        if session.fast {
            out.message(key, conn, &Message::Reject(block));
            return Ok(());
        }
        session.dropped_requests += 1;
        if session.dropped_requests > MAX_DROPPED {
            return Err(Violation::RequestFlood);
        }
        Ok(())
    }

    /// Whether some peer has requests we could serve now.
    pub fn wants_to_serve(&self) -> bool {
        !self.uploading.is_empty() && !self.stopping
    }

    /// Serves queued requests within `budget`, peers taking turns one block at a
    /// time. Returns the blocks served; `budget` is reduced by what was used.
    pub fn serve(&mut self, now: Instant, budget: &mut ServeBudget, out: &mut Output) -> usize {
        let mut served = 0;
        let mut misses = 0;
        while budget.blocks > 0 && misses <= self.uploading.len() {
            let Some(key) = self.uploading.pop_front() else {
                break;
            };
            if let Some(session) = self.pool.session_mut(key) {
                session.in_line = false;
            }
            match self.serve_one(now, key, budget, out) {
                Turn::Served => {
                    served += 1;
                    misses = 0;
                }
                Turn::Nothing => misses += 1,
                Turn::NoTokens => break,
            }
        }
        served
    }

    /// One block for `key`, which is put back in line if it has more to get.
    fn serve_one(&mut self, now: Instant, key: PeerKey, budget: &mut ServeBudget, out: &mut Output) -> Turn {
        let Some(meta) = &mut self.meta else {
            return Turn::Nothing;
        };
        let Some(peer) = self.pool.get_mut(key) else {
            return Turn::Nothing;
        };
        let conn = peer.conn;
        let Some(session) = peer.session_mut() else {
            return Turn::Nothing;
        };
        if session.unsent >= MAX_UNSENT {
            return Turn::Nothing; // back in line when its connection drains
        }
        let Some(block) = session.queue.pop_front() else {
            return Turn::Nothing;
        };
        if u64::from(block.length) > budget.bytes {
            session.queue.push_front(block);
            session.in_line = true;
            self.uploading.push_front(key);
            return Turn::NoTokens; // the driver comes back when the rate limit allows
        }
        let mut turn = Turn::Nothing;
        // Still allowed? A choke since the request rejects or drops it.
        if !session.am_choking || session.allowed_fast_sent.contains(&block.index) {
            let start = out.bytes.len();
            out.bytes.extend_from_slice(&(9 + block.length).to_be_bytes());
            out.bytes.push(7);
            out.bytes.extend_from_slice(&block.index.to_be_bytes());
            out.bytes.extend_from_slice(&block.begin.to_be_bytes());
            let data = out.bytes.len();
            out.bytes.resize(data + block.length as usize, 0);
            if let Err(e) = meta
                .store
                .read_block(block.index, block.begin, &mut out.bytes[data..])
            {
                out.bytes.truncate(start);
                self.fail(format!("cannot read for upload: {e}"));
                return Turn::NoTokens;
            }
            out.sent(key, conn, start);
            session.unsent += 13 + block.length as usize;
            session.uploaded += u64::from(block.length);
            session.upload.add(now, u64::from(block.length));
            session.last_sent = now;
            self.stats.uploaded += u64::from(block.length);
            budget.blocks -= 1;
            budget.bytes -= u64::from(block.length);
            turn = Turn::Served;
        } else if session.fast {
            out.message(key, conn, &Message::Reject(block));
        }
        self.enqueue_upload(key);
        turn
    }

    /// Puts `key` in line for uploads if it has requests, room on its connection,
    /// and is not in line already: each peer is in line at most once.
    fn enqueue_upload(&mut self, key: PeerKey) {
        let Some(session) = self.pool.session_mut(key) else {
            return;
        };
        if !session.in_line && !session.queue.is_empty() && session.unsent < MAX_UNSENT {
            session.in_line = true;
            self.uploading.push_back(key);
        }
    }

    /// The driver wrote to `key`'s connection and `unsent` bytes are still queued.
    pub fn handle_sent(&mut self, key: PeerKey, unsent: usize) {
        let Some(session) = self.pool.session_mut(key) else {
            return;
        };
        session.unsent = unsent;
        self.enqueue_upload(key);
    }

    /// `key`'s connection sent everything queued.
    pub fn handle_drained(&mut self, key: PeerKey) {
        let Some(session) = self.pool.session_mut(key) else {
            return;
        };
        session.unsent = 0;
        self.enqueue_upload(key);
    }

    /// Re-decides who is unchoked: regular slots to the interested peers we get
    /// the most from (while downloading) or give the most to (while seeding), and
    /// one optimistic unchoke rotated every 30 s.
    pub(super) fn rechoke(&mut self, now: Instant, out: &mut Output) {
        let seeding = self.is_complete();
        self.choker.dirty = false;
        if self.choker.peers.is_empty() {
            return;
        }
        self.choker.next_rechoke = Some(now + RECHOKE);
        let mut ranked: Vec<(u64, PeerKey)> = self
            .pool
            .iter()
            .filter_map(|(key, p)| p.session().map(|s| (key, s)))
            .filter(|(_, s)| s.peer_interested && !(seeding && s.has.is_seed()))
            .map(|(key, s)| {
                let rate = if seeding {
                    s.upload.at(now)
                } else {
                    s.download.at(now)
                };
                (rate as u64, key)
            })
            .collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        let mut unchoke: HashSet<PeerKey> = ranked.iter().take(self.choker.slots).map(|(_, k)| *k).collect();
        let rotate = self.choker.next_optimistic.is_none_or(|at| at <= now)
            || self
                .choker
                .optimistic
                .is_none_or(|k| !ranked.iter().any(|(_, r)| *r == k));
        if rotate {
            let rest: Vec<PeerKey> = ranked.iter().skip(self.choker.slots).map(|(_, k)| *k).collect();
            self.choker.optimistic = if rest.is_empty() {
                None
            } else {
                Some(rest[self.choker.rng.below(rest.len() as u64) as usize])
            };
            self.choker.next_optimistic = Some(now + OPTIMISTIC);
        }
        if let Some(optimistic) = self.choker.optimistic {
            unchoke.insert(optimistic);
        }
        for key in self.pool.keys() {
            let Some(peer) = self.pool.get_mut(key) else {
                continue;
            };
            let conn = peer.conn;
            let Some(session) = peer.session_mut() else {
                continue;
            };
            let choke = !unchoke.contains(&key);
            if choke == session.am_choking {
                continue;
            }
            session.am_choking = choke;
            session.last_sent = now;
            if choke {
                out.message(key, conn, &Message::Choke);
                // BEP 6: with Fast, requests outside the allowed-fast set are rejected;
                // without it, the choke itself discards them.
                let queue = std::mem::take(&mut session.queue);
                for block in queue {
                    if session.allowed_fast_sent.contains(&block.index) {
                        session.queue.push_back(block);
                    } else if session.fast {
                        out.message(key, conn, &Message::Reject(block));
                    }
                }
            } else {
                debug!("unchoking peer {}", peer.addr);
                out.message(key, conn, &Message::Unchoke);
            }
        }
    }
}
