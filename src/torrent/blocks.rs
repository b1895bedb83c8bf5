//! Blocks on their way in: checked against what we asked the sender for, gathered
//! into runs and written to disk (and only then booked), endgame copies
//! cancelled, finished pieces verified, and good ones announced with `have`.
//!
//! # Write runs
//! A peer answers our requests in order, so the blocks at hand in one read are
//! mostly one piece's, back to back. They go to disk as a run, in one vectored
//! write straight from the reader's buffer: on ext4 that costs the page cache half
//! the CPU of one write per block (256 MiB: 0.07 s against 0.14 s, measured). A
//! run lives inside one [`handle_bytes`](Torrent::handle_bytes) call and holds
//! only offsets into its buffer; it is written at the first message that does not
//! continue it and at the end of the bytes, so nothing waits between calls and a
//! block is still booked only once its write succeeded.

use std::net::IpAddr;
use std::time::Instant;

use log::{debug, info, trace, warn};

use super::bans::Strike;
use super::messages::{Violation, MAX_UNREQUESTED};
use super::write_run::MAX_RUN_BLOCKS;
use super::{Output, Torrent, TorrentEvent};
use crate::swarm::{PeerKey, Received};
use crate::wire::{BlockRef, Message};

impl Torrent {
    /// A `piece` message whose payload `data` is at `at` of the reader's buffer.
    /// A block we want joins the write run (which the caller has written first if
    /// this block does not continue it: [`WriteRun::continued_by`]).
    pub(super) fn on_piece(
        &mut self,
        now: Instant,
        key: PeerKey,
        (index, begin): (u32, u32),
        data: &[u8],
        at: usize,
    ) -> Result<(), Violation> {
        let block = BlockRef {
            index,
            begin,
            length: data.len() as u32,
        };
        let peer = self.pool.get_mut(key).expect("active");
        let ip = peer.addr.ip();
        let session = peer.session_mut().expect("active");
        session.last_received = now;
        let Some(sent_at) = session.take_request(block) else {
            // Nobody asked this peer for it: a race with a cancel or a choke, or a
            // peer writing into pieces of others. Never written, counted as wasted.
            self.stats.wasted += data.len() as u64;
            self.stats.unrequested_blocks += 1;
            if session.late_allowance > 0 {
                session.late_allowance -= 1;
                return Ok(());
            }
            session.unrequested += 1;
            if session.unrequested > MAX_UNREQUESTED {
                return Err(Violation::UnrequestedBlocks(session.unrequested));
            }
            return Ok(());
        };
        session.on_block(now, data.len(), sent_at);
        let Some(meta) = &mut self.meta else {
            self.stats.wasted += data.len() as u64;
            return Ok(());
        };
        if !meta.picker.wants(block) {
            // Requested, but a copy from another peer won (endgame) or the piece restarted.
            self.stats.wasted += data.len() as u64;
            return Ok(());
        }
        self.run.push(ip, block, at);
        Ok(())
    }

    /// Writes the run of blocks taken from `buf` (if any) and books them: counted,
    /// their contributor noted, endgame copies cancelled, a finished piece verified.
    /// A failed write books nothing and fails the torrent.
    pub(super) fn write_run(&mut self, now: Instant, key: PeerKey, buf: &[u8], out: &mut Output) {
        let Some(run) = self.run.take() else { return };
        let (ip, blocks) = (run.ip(), run.blocks());
        let Some(meta) = &mut self.meta else { return };
        let mut parts: [&[u8]; MAX_RUN_BLOCKS] = [&[]; MAX_RUN_BLOCKS];
        let mut bytes = 0;
        for (part, (block, at)) in parts.iter_mut().zip(blocks) {
            *part = &buf[*at..*at + block.length as usize];
            bytes += u64::from(block.length);
        }
        let first = blocks[0].0;
        if let Err(e) = meta
            .store
            .write_run(&mut out.files, first.index, first.begin, &parts[..blocks.len()])
        {
            for (block, _) in blocks {
                meta.picker.on_request_lost(*block, key);
            }
            self.fail(format!("cannot write: {e}"));
            return;
        }
        self.stats.downloaded += bytes;
        let contributors = meta.contributors.entry(first.index).or_default();
        if !contributors.contains(&ip) {
            contributors.push(ip);
        }
        for &(block, _) in blocks {
            let Some(meta) = &mut self.meta else { return };
            let (cancel, complete) = match meta.picker.on_block(block, key) {
                Received::Unwanted => (None, false),
                Received::Stored { cancel } => (cancel, false),
                Received::PieceComplete { cancel } => (cancel, true),
            };
            if let Some(other) = cancel {
                // Endgame: the other peer asked for this block can stop.
                self.cancel_at(now, other, block, out);
            }
            if complete {
                self.piece_finished(now, block.index, out);
            }
        }
    }

    /// Cancels our request for `block` at `key`.
    fn cancel_at(&mut self, now: Instant, key: PeerKey, block: BlockRef, out: &mut Output) {
        let Some(peer) = self.pool.get_mut(key) else {
            return;
        };
        let conn = peer.conn;
        let Some(session) = peer.session_mut() else { return };
        if session.take_request(block).is_some() {
            session.pipeline.on_cancel(1);
            session.late_allowance = session.late_allowance.saturating_add(1);
            session.last_sent = now;
            out.message(key, conn, &Message::Cancel(block));
        }
    }

    fn piece_finished(&mut self, now: Instant, piece: u32, out: &mut Output) {
        let meta = self.meta.as_mut().expect("loaded");
        let ok = match meta.store.verify_piece(&mut out.files, piece) {
            Ok(ok) => ok,
            Err(e) => return self.fail(format!("cannot read back: {e}")),
        };
        meta.picker.on_verified(piece, ok);
        let contributors = meta.contributors.remove(&piece).unwrap_or_default();
        if !ok {
            let size = u64::from(meta.picker.piece_size(piece));
            self.stats.downloaded = self.stats.downloaded.saturating_sub(size);
            self.stats.wasted += size;
            return self.piece_failed(now, piece, contributors, out);
        }
        trace!("piece {piece} verified");
        self.events.push_back(TorrentEvent::Verified(piece));
        // Peers that have it have one piece less for us; those that lack it hear
        // of it (in batches: `haves.rs`). One pass, allocating only for peers that
        // have nothing more for us.
        let mut done_with = Vec::new();
        for (key, peer) in self.pool.iter_mut() {
            if let Some(session) = peer.session_mut() {
                if session.has.get(piece) {
                    session.wanted = session.wanted.saturating_sub(1);
                    if session.wanted == 0 {
                        done_with.push(key);
                    }
                }
            }
        }
        for key in done_with {
            self.update_interest(now, key, out);
        }
        self.announce_piece(now, piece, out);
        if self.is_complete() {
            let stats = self.stats;
            info!(
                "download complete: {} bytes, {} wasted",
                stats.downloaded, stats.wasted
            );
            self.events.push_back(TorrentEvent::Completed);
            // Seeds do not keep connections to other seeds.
            for key in self.pool.keys() {
                if self.pool.session(key).is_some_and(|s| s.has.is_seed()) {
                    self.remove_peer(now, key, false, out);
                }
            }
        }
    }

    /// A piece failed its hash check. With one contributor that IP is struck; with
    /// several we cannot tell who lied, so the piece is fetched whole from one peer
    /// next time and a second failure names the culprit.
    fn piece_failed(&mut self, now: Instant, piece: u32, contributors: Vec<IpAddr>, out: &mut Output) {
        let meta = self.meta.as_mut().expect("loaded");
        if contributors.len() > 1 {
            info!("piece {piece} failed its hash check (blocks from {contributors:?}); refetching it from one peer");
            meta.picker.mark_suspect(piece);
            return;
        }
        info!("piece {piece} failed its hash check; striking {contributors:?}");
        for ip in contributors {
            if self.bans.bad_data(ip, now) == Strike::Banned {
                warn!("{ip} banned after bad pieces");
                let keys: Vec<PeerKey> = self
                    .pool
                    .iter()
                    .filter(|(_, p)| p.addr.ip() == ip)
                    .map(|(k, _)| k)
                    .collect();
                for key in keys {
                    let addr = self.pool.get(key).expect("listed").addr;
                    self.remove_peer(now, key, false, out);
                    self.pool.forget(addr);
                }
            }
        }
    }

    pub(super) fn fail(&mut self, why: String) {
        // The front end reports it (the torrent stops); here only for the log.
        debug!("{why}");
        self.events.push_back(TorrentEvent::Failed(why));
    }

    /// Exclusive pieces that started over: what we kept for them goes (fix: a
    /// restarted suspect piece has no contributors, so its next failure names one).
    pub(super) fn drop_restarted(&mut self) {
        let Some(meta) = &mut self.meta else { return };
        for piece in meta.picker.take_restarted() {
            meta.contributors.remove(&piece);
            meta.store.abandon_piece(piece);
        }
    }
}
