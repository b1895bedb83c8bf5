//! The choker: which peers we upload to (BEP 3, "Choking and optimistic unchoking",
//! with the refinements libtorrent made standard). Sans-IO: the caller passes each
//! peer's state and `now`, and gets back the chokes and unchokes to send.
//!
//! # The rules
//! - Every [`rechoke_interval`](ChokerConfig::rechoke_interval) (10 s) the peers are
//!   ranked and the top [`upload_slots`](ChokerConfig::upload_slots) (4) interested
//!   peers get a *regular* slot. Call [`Choker::rechoke`] early too, when a peer that
//!   held a slot leaves or loses interest, or a peer becomes interested while
//!   [`Choker::slot_free`].
//! - **Downloading**: the peers we download fastest from rank first (tit for tat).
//!   A peer that is *snubbing* us (it unchoked us and we are interested, but nothing
//!   arrived for [`snub_after`](ChokerConfig::snub_after), 60 s) has no claim.
//!   Peers with equal claims (at the start, nobody sends) are ordered as when seeding.
//! - **Seeding**, [`SeedOrder::RoundRobin`] by default (libtorrent's default for
//!   seeds): an unchoked peer that is taking data keeps its slot until its turn
//!   ([`seed_turn`](ChokerConfig::seed_turn), 60 s) is over; then, and whenever a slot
//!   holder takes nothing, the slot goes to the peer that has waited longest. Why not
//!   upload-rate order: the rate we upload to a peer is mostly the rate we chose to
//!   give it (a choked peer measures 0), so rate order keeps whoever got a slot first
//!   and starves the rest; rotating puts different pieces into more leechers, who then
//!   trade among themselves, which is what a swarm needs from a seed.
//!   [`SeedOrder::FastestUpload`] is available for a seed that wants only throughput.
//! - One **optimistic** slot on top of the regular ones, moved every
//!   [`optimistic_interval`](ChokerConfig::optimistic_interval) (30 s) to a random
//!   choked interested peer, never the same one twice in a row. Peers connected within
//!   the last interval are three times as likely to be drawn (as in the mainline
//!   client), so a newcomer soon gets something to trade with. An optimistic peer that
//!   earns a regular slot keeps it, and the optimistic slot moves on at once.
//! - Peers not interested, and seeds, are never unchoked: a seed downloads nothing.
//!
//! The choker remembers per peer only what the caller cannot know (when it joined,
//! when we last unchoked it, a random tie-break); [`Choker::peer_gone`] is the one
//! place that state is removed. Rechoking allocates nothing once its scratch vectors
//! have grown to the number of peers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::random::Xorshift;

/// Draws a peer connected within the last optimistic interval this many times as
/// often as another.
pub const NEW_PEER_WEIGHT: u64 = 3;

/// How seeding ranks peers for the regular slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedOrder {
    /// Turns of [`ChokerConfig::seed_turn`], longest-waiting first (the default).
    RoundRobin,
    /// The peers we upload to fastest (libtorrent's `fastest_upload`).
    FastestUpload,
}

/// The choker's knobs.
#[derive(Clone, Copy, Debug)]
pub struct ChokerConfig {
    /// Regular upload slots; the optimistic slot comes on top. 0 uploads to nobody.
    pub upload_slots: usize,
    /// Time between rechokes.
    pub rechoke_interval: Duration,
    /// Time between moves of the optimistic slot.
    pub optimistic_interval: Duration,
    /// Silence after which a peer that unchoked us counts as snubbing us.
    pub snub_after: Duration,
    /// How seeding ranks peers.
    pub seed_order: SeedOrder,
    /// How long a round-robin turn lasts while seeding.
    pub seed_turn: Duration,
}

impl Default for ChokerConfig {
    fn default() -> ChokerConfig {
        ChokerConfig {
            upload_slots: 4,
            rechoke_interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
            snub_after: Duration::from_secs(60),
            seed_order: SeedOrder::RoundRobin,
            seed_turn: Duration::from_secs(60),
        }
    }
}

/// One peer's state as the caller sees it at a rechoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChokeInput {
    /// The caller's key for this peer (the one given to [`Choker::peer_connected`]).
    pub key: u32,
    /// The peer is interested in us.
    pub interested: bool,
    /// We are choking the peer now.
    pub am_choking: bool,
    /// Bytes per second we receive from the peer, recently.
    pub download_rate: u64,
    /// Bytes per second we send to the peer, recently.
    pub upload_rate: u64,
    /// The peer is not choking us.
    pub unchoked_us: bool,
    /// We are interested in the peer.
    pub am_interested: bool,
    /// When the last block from the peer arrived.
    pub last_block_from_them: Option<Instant>,
    /// When the peer last unchoked us.
    pub unchoked_us_since: Option<Instant>,
    /// The peer has every piece.
    pub is_seed: bool,
}

/// A change to send: `unchoke` or (when false) `choke` the peer with this key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The peer.
    pub key: u32,
    /// Unchoke it (true) or choke it (false).
    pub unchoke: bool,
}

#[derive(Clone, Copy, Debug)]
struct PeerState {
    connected_at: Instant,
    /// When we last unchoked the peer (kept after it is choked again: round-robin
    /// serves the longest-waiting first).
    last_unchoked: Option<Instant>,
    /// Whether the last rechoke left it unchoked.
    unchoked: bool,
    /// Whether the last rechoke gave it a regular slot (the status quo wins ties).
    regular: bool,
    /// Random tie-break, fixed per peer so that equal peers keep their order.
    tie: u64,
}

/// One eligible peer's place in the ranking; the sort key is in rank order.
#[derive(Clone, Copy, Debug)]
struct Ranked {
    /// Index into the caller's `peers` slice.
    index: usize,
    /// Reciprocation claim (download rate while downloading, else 0); higher first.
    claim: u64,
    /// Its round-robin turn is over; false first.
    turn_done: bool,
    /// Upload rate if unchoked, 0 if choked; higher first.
    taking: u64,
    /// It holds a regular slot; true first, so that an equal optimistic peer does
    /// not swap places with it.
    regular: bool,
    /// When we last unchoked it (`None`: never, the longest wait); earlier first.
    last_unchoked: Option<Instant>,
    tie: u64,
    new: bool,
}

/// Decides who gets our upload slots. See the module documentation for the rules.
#[derive(Debug)]
pub struct Choker {
    config: ChokerConfig,
    rng: Xorshift,
    peers: HashMap<u32, PeerState>,
    next_rechoke: Option<Instant>,
    optimistic: Option<u32>,
    next_optimistic: Option<Instant>,
    /// Peers the last rechoke left unchoked (kept so `slot_free` needs no scan).
    unchoked: usize,
    /// Scratch reused by every rechoke.
    ranked: Vec<Ranked>,
    selected: Vec<bool>,
}

impl Choker {
    /// A choker with no peers; `seed` makes its random draws repeatable.
    pub fn new(config: ChokerConfig, seed: u64) -> Choker {
        Choker {
            config,
            rng: Xorshift::new(seed),
            peers: HashMap::new(),
            next_rechoke: None,
            optimistic: None,
            next_optimistic: None,
            unchoked: 0,
            ranked: Vec::new(),
            selected: Vec::new(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ChokerConfig {
        &self.config
    }

    /// A peer finished its handshake. The first peer schedules a rechoke at once.
    pub fn peer_connected(&mut self, now: Instant, key: u32) {
        let tie = self.rng.next_u64();
        self.peers.insert(
            key,
            PeerState {
                connected_at: now,
                last_unchoked: None,
                unchoked: false,
                regular: false,
                tie,
            },
        );
        self.next_rechoke.get_or_insert(now);
    }

    /// A peer is gone: the one place its state is removed. Returns whether it held
    /// a slot (then a rechoke now can give the slot to someone else).
    pub fn peer_gone(&mut self, key: u32) -> bool {
        let held = self.peers.remove(&key).is_some_and(|p| p.unchoked);
        self.unchoked -= usize::from(held);
        if self.optimistic == Some(key) {
            self.optimistic = None;
        }
        if self.peers.is_empty() {
            self.next_rechoke = None;
            self.next_optimistic = None;
        }
        held
    }

    /// Peers with state here.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// No peer has state here.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// When [`rechoke`](Self::rechoke) is due; `None` while no peer is connected.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_rechoke, self.next_optimistic) {
            (Some(r), Some(o)) => Some(r.min(o)),
            (r, o) => r.or(o),
        }
    }

    /// The peer in the optimistic slot.
    pub fn optimistic(&self) -> Option<u32> {
        self.optimistic
    }

    /// Fewer peers are unchoked than there are slots (regular and optimistic): a
    /// peer that just became interested can have one now, by an early rechoke.
    pub fn slot_free(&self) -> bool {
        let slots = self.config.upload_slots + usize::from(self.config.upload_slots > 0);
        self.unchoked < slots
    }

    /// Ranks `peers` (every connected peer, each once) and writes into `out` the
    /// chokes and unchokes that change their state. `seeding`: we have every piece.
    pub fn rechoke(&mut self, now: Instant, seeding: bool, peers: &[ChokeInput], out: &mut Vec<Decision>) {
        out.clear();
        self.next_rechoke = (!self.peers.is_empty()).then(|| now + self.config.rechoke_interval);
        self.rank(now, seeding, peers);
        let regular = self.config.upload_slots.min(self.ranked.len());
        self.selected.clear();
        self.selected.resize(peers.len(), false);
        for r in &self.ranked[..regular] {
            self.selected[r.index] = true;
        }
        self.place_optimistic(now, peers, regular);

        for (index, peer) in peers.iter().enumerate() {
            let Some(state) = self.peers.get_mut(&peer.key) else {
                // Not announced through peer_connected: it gets no slot.
                if !peer.am_choking {
                    out.push(Decision {
                        key: peer.key,
                        unchoke: false,
                    });
                }
                continue;
            };
            let unchoke = self.selected[index] || self.optimistic == Some(peer.key);
            if unchoke && (peer.am_choking || state.last_unchoked.is_none()) {
                state.last_unchoked = Some(now);
            }
            if unchoke == peer.am_choking {
                out.push(Decision {
                    key: peer.key,
                    unchoke,
                });
            }
            if state.unchoked != unchoke {
                state.unchoked = unchoke;
                if unchoke {
                    self.unchoked += 1;
                } else {
                    self.unchoked -= 1;
                }
            }
            state.regular = self.selected[index];
        }
    }

    /// Fills `self.ranked` with the eligible peers, best first.
    fn rank(&mut self, now: Instant, seeding: bool, peers: &[ChokeInput]) {
        let config = self.config;
        self.ranked.clear();
        for (index, peer) in peers.iter().enumerate() {
            let Some(state) = self.peers.get(&peer.key) else {
                continue;
            };
            if !peer.interested || peer.is_seed {
                continue;
            }
            let unchoked_for = match (peer.am_choking, state.last_unchoked) {
                (false, Some(at)) => now.saturating_duration_since(at),
                _ => Duration::ZERO,
            };
            let claim = if seeding || self.snubbing(now, peer, state) {
                0
            } else {
                peer.download_rate
            };
            let fastest = seeding && config.seed_order == SeedOrder::FastestUpload;
            self.ranked.push(Ranked {
                index,
                claim: if fastest { peer.upload_rate } else { claim },
                turn_done: !fastest && unchoked_for >= config.seed_turn,
                taking: if peer.am_choking { 0 } else { peer.upload_rate },
                regular: state.regular && !peer.am_choking,
                last_unchoked: state.last_unchoked,
                tie: state.tie,
                new: now.saturating_duration_since(state.connected_at) < config.optimistic_interval,
            });
        }
        self.ranked.sort_unstable_by(|a, b| {
            b.claim
                .cmp(&a.claim)
                .then(a.turn_done.cmp(&b.turn_done))
                .then(b.taking.cmp(&a.taking))
                .then(b.regular.cmp(&a.regular))
                .then(a.last_unchoked.cmp(&b.last_unchoked)) // None (never) sorts first
                .then(a.tie.cmp(&b.tie))
        });
    }

    /// It unchoked us and we want its pieces, but nothing came for `snub_after`.
    fn snubbing(&self, now: Instant, peer: &ChokeInput, state: &PeerState) -> bool {
        if !peer.unchoked_us || !peer.am_interested {
            return false;
        }
        let since = [peer.last_block_from_them, peer.unchoked_us_since]
            .into_iter()
            .flatten()
            .fold(state.connected_at, Instant::max);
        now.saturating_duration_since(since) >= self.config.snub_after
    }

    /// Keeps or moves the optimistic slot among the eligible peers below `regular`.
    fn place_optimistic(&mut self, now: Instant, peers: &[ChokeInput], regular: usize) {
        if self.config.upload_slots == 0 {
            self.optimistic = None;
            self.next_optimistic = None;
            return;
        }
        let candidates = &self.ranked[regular..];
        let current = self.optimistic;
        let still_choked_candidate =
            current.is_some_and(|key| candidates.iter().any(|r| peers[r.index].key == key));
        let due = self.next_optimistic.is_none_or(|at| now >= at);
        if still_choked_candidate && !due {
            return;
        }
        // Draw among the candidates, skipping the current holder if anyone else can
        // have the slot, with new peers weighted.
        let skip = |r: &Ranked| candidates.len() > 1 && Some(peers[r.index].key) == current;
        let weight = |r: &Ranked| if r.new { NEW_PEER_WEIGHT } else { 1 };
        let total: u64 = candidates.iter().filter(|r| !skip(r)).map(weight).sum();
        self.optimistic = None;
        self.next_optimistic = None;
        if total == 0 {
            return;
        }
        let mut draw = self.rng.below(total);
        for r in candidates.iter().filter(|r| !skip(r)) {
            if draw < weight(r) {
                self.optimistic = Some(peers[r.index].key);
                self.next_optimistic = Some(now + self.config.optimistic_interval);
                return;
            }
            draw -= weight(r);
        }
    }
}

#[cfg(test)]
mod tests;
