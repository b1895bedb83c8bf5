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

use std::time::Instant;

use log::debug;

use super::messages::Violation;
use super::{Output, Torrent};
use crate::peer::OUR_REQQ;
use crate::reactor::HandleId;
use crate::swarm::{ChokeInput, PeerKey};
use crate::wire::{BlockRef, Message, BLOCK};

/// Bytes a peer's connection may hold unsent before we stop serving it.
pub const MAX_UNSENT: usize = 4 * (BLOCK as usize + 13);
/// Requests dropped (no Fast extension) before a flooding peer is closed.
const MAX_DROPPED: u32 = 2 * OUR_REQQ as u32;

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
        // A reject is owed with Fast, but not to a connection that is not reading
        // what we send: once its connection holds MAX_UNSENT unsent (as the driver
        // reported after the last batch; one batch of rejects is no bigger than
        // the requests that caused it), refusals are counted like a plain peer's
        // and a flood closes it, so its queue stays bounded.
        if session.fast && session.unsent < MAX_UNSENT {
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
            let (bytes, files) = (&mut out.bytes, &mut out.files);
            if let Err(e) = meta
                .store
                .read_block(files, block.index, block.begin, &mut bytes[data..])
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
    pub fn handle_sent(&mut self, key: PeerKey, conn: HandleId, unsent: usize) {
        if !self.pool.is_current(key, conn) {
            return; // the slot holds another peer now
        }
        let Some(session) = self.pool.session_mut(key) else {
            return;
        };
        session.unsent = unsent;
        self.enqueue_upload(key);
    }

    /// `key`'s connection sent everything queued.
    pub fn handle_drained(&mut self, key: PeerKey, conn: HandleId) {
        if !self.pool.is_current(key, conn) {
            return;
        }
        let Some(session) = self.pool.session_mut(key) else {
            return;
        };
        session.unsent = 0;
        self.enqueue_upload(key);
    }

    /// Re-decides who is unchoked (`swarm::Choker`: regular slots by reciprocation
    /// while downloading, round robin while seeding, one optimistic unchoke) and
    /// sends the chokes and unchokes that changed.
    pub(super) fn rechoke(&mut self, now: Instant, out: &mut Output) {
        self.rechoke_soon = None;
        let seeding = self.is_complete();
        let mut inputs = std::mem::take(&mut self.choke_inputs);
        inputs.clear();
        for (key, peer) in self.pool.iter() {
            let Some(s) = peer.session() else { continue };
            inputs.push(ChokeInput {
                key,
                interested: s.peer_interested,
                am_choking: s.am_choking,
                download_rate: s.download.at(now) as u64,
                upload_rate: s.upload.at(now) as u64,
                unchoked_us: !s.peer_choking,
                am_interested: s.am_interested,
                last_block_from_them: s.last_block,
                unchoked_us_since: s.unchoked_us_at,
                is_seed: s.has.is_seed(),
            });
        }
        let mut decisions = std::mem::take(&mut self.choke_decisions);
        self.choker.rechoke(now, seeding, &inputs, &mut decisions);
        for decision in &decisions {
            self.set_choking(now, decision.key, !decision.unchoke, out);
        }
        self.choke_inputs = inputs;
        self.choke_decisions = decisions;
    }

    /// Chokes or unchokes `key`. A choke rejects (Fast) or drops (BEP 3) the
    /// queued requests outside the allowed-fast set.
    fn set_choking(&mut self, now: Instant, key: PeerKey, choke: bool, out: &mut Output) {
        let Some(peer) = self.pool.get_mut(key) else {
            return;
        };
        let conn = peer.conn;
        let Some(session) = peer.session_mut() else { return };
        if choke == session.am_choking {
            return;
        }
        session.am_choking = choke;
        session.last_sent = now;
        if !choke {
            debug!("unchoking peer {}", peer.addr);
            out.message(key, conn, &Message::Unchoke);
            return;
        }
        out.message(key, conn, &Message::Choke);
        let queue = std::mem::take(&mut session.queue);
        for block in queue {
            if session.allowed_fast_sent.contains(&block.index) {
                session.queue.push_back(block);
            } else if session.fast {
                out.message(key, conn, &Message::Reject(block));
            }
        }
    }

    /// A peer became interested or left a slot: rechoke at the next turn if a
    /// slot may change hands, not at the next 10 s round.
    pub(super) fn note_interest(&mut self, now: Instant, interested: bool) {
        if !interested || self.choker.slot_free() {
            self.rechoke_soon.get_or_insert(now);
        }
    }
}
