//! The choker on a virtual clock: a table of peers whose choke state follows the
//! decisions, rechoked whenever `poll_timeout` says so.

use super::*;

const SEED: u64 = 0x5eed_cafe;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// An interested leecher we choke, sending us `download_rate`.
fn leecher(key: u32, download_rate: u64) -> ChokeInput {
    ChokeInput {
        key,
        interested: true,
        am_choking: true,
        download_rate,
        upload_rate: 0,
        unchoked_us: false,
        am_interested: false,
        last_block_from_them: None,
        unchoked_us_since: None,
        is_seed: false,
    }
}

/// The caller's side: the peers' inputs, kept in step with the decisions.
struct Swarm {
    choker: Choker,
    peers: Vec<ChokeInput>,
    out: Vec<Decision>,
}

impl Swarm {
    fn new(config: ChokerConfig, seed: u64) -> Swarm {
        Swarm {
            choker: Choker::new(config, seed),
            peers: Vec::new(),
            out: Vec::new(),
        }
    }

    fn connect(&mut self, now: Instant, peer: ChokeInput) {
        self.choker.peer_connected(now, peer.key);
        self.peers.push(peer);
    }

    fn disconnect(&mut self, key: u32) -> bool {
        self.peers.retain(|p| p.key != key);
        self.choker.peer_gone(key)
    }

    fn peer(&mut self, key: u32) -> &mut ChokeInput {
        self.peers.iter_mut().find(|p| p.key == key).expect("connected")
    }

    /// Rechokes and applies the decisions (an unchoked peer that wants data gets
    /// `upload_rate` = 1 MB/s, as a real upload would show).
    fn rechoke(&mut self, now: Instant, seeding: bool) -> Vec<Decision> {
        self.choker.rechoke(now, seeding, &self.peers, &mut self.out);
        for d in &self.out {
            let peer = self
                .peers
                .iter_mut()
                .find(|p| p.key == d.key)
                .expect("decision for a known peer");
            assert_eq!(peer.am_choking, d.unchoke, "a decision changes the state");
            peer.am_choking = !d.unchoke;
            peer.upload_rate = if d.unchoke { 1_000_000 } else { 0 };
        }
        self.out.clone()
    }

    /// Runs every due rechoke up to and including `until`; returns the time of the last.
    fn run_until(&mut self, until: Instant, seeding: bool) -> Option<Instant> {
        let mut last = None;
        while let Some(at) = self.choker.poll_timeout().filter(|&at| at <= until) {
            self.rechoke(at, seeding);
            last = Some(at);
        }
        last
    }

    fn unchoked(&self) -> Vec<u32> {
        let mut keys: Vec<u32> = self
            .peers
            .iter()
            .filter(|p| !p.am_choking)
            .map(|p| p.key)
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Unchoked peers other than the optimistic one.
    fn regular(&self) -> Vec<u32> {
        let optimistic = self.choker.optimistic();
        self.unchoked()
            .into_iter()
            .filter(|&k| Some(k) != optimistic)
            .collect()
    }
}

#[test]
fn reciprocation_gives_the_regular_slots_to_the_four_fastest_of_ten() {
    let t0 = Instant::now();
    let mut swarm = Swarm::new(ChokerConfig::default(), SEED);
    // Rates in a scrambled order: peers 3, 7, 8 and 1 are the fastest.
    let rates = [50, 900, 10, 1000, 0, 20, 30, 800, 700, 40];
    for (key, rate) in rates.into_iter().enumerate() {
        swarm.connect(t0, leecher(key as u32, rate * 1000));
    }
    swarm.rechoke(t0, false);
    assert_eq!(swarm.regular(), vec![1, 3, 7, 8]);
    assert_eq!(
        swarm.unchoked().len(),
        5,
        "four regular slots and the optimistic one"
    );
    // The order changes: the next rechoke follows it.
    swarm.peer(3).download_rate = 0;
    swarm.peer(0).download_rate = 2_000_000;
    swarm.run_until(t0 + secs(10), false);
    assert_eq!(swarm.regular(), vec![0, 1, 7, 8]);
}

#[test]
fn the_optimistic_unchoke_rotates_every_thirty_seconds() {
    let t0 = Instant::now();
    let mut swarm = Swarm::new(ChokerConfig::default(), SEED);
    for key in 0..4 {
        swarm.connect(t0, leecher(key, 1_000_000)); // hold the regular slots
    }
    for key in 4..10 {
        swarm.connect(t0, leecher(key, 0));
    }
    let mut holders = Vec::new();
    let mut rechokes = 0;
    let mut now = t0;
    while now <= t0 + secs(300) {
        swarm.rechoke(now, false);
        rechokes += 1;
        let optimistic = swarm
            .choker
            .optimistic()
            .expect("someone holds the optimistic slot");
        assert!(optimistic >= 4, "the optimistic slot goes to a choked peer");
        assert_eq!(swarm.regular(), vec![0, 1, 2, 3]);
        holders.push((now - t0, optimistic));
        now = swarm.choker.poll_timeout().expect("rechokes stay scheduled");
    }
    assert_eq!(rechokes, 31, "a rechoke every 10 s");
    // It changes exactly at 0, 30, 60, ... s, and never to the same peer.
    for pair in holders.windows(2) {
        let ((_, before), (at, after)) = (pair[0], pair[1]);
        if at.as_secs() % 30 == 0 {
            assert_ne!(before, after, "rotated at {at:?}");
        } else {
            assert_eq!(before, after, "kept at {at:?}");
        }
    }
}

#[test]
fn the_optimistic_unchoke_prefers_new_peers_three_to_one() {
    let t0 = Instant::now();
    let mut swarm = Swarm::new(ChokerConfig::default(), SEED);
    for key in 0..4 {
        swarm.connect(t0, leecher(key, 1_000_000));
    }
    for key in 4..10 {
        swarm.connect(t0, leecher(key, 0)); // six old peers
    }
    // Rotations fall at t0 + 30k s. Long after the old peers joined, a newcomer
    // joins 5 s before each rotation, and the previous newcomer leaves then (if it
    // held the slot, the slot is drawn anew at the rotation itself).
    let rounds = 600u32;
    let mut newcomer_picked = 0;
    let mut rotation = t0 + secs(300);
    swarm.run_until(rotation, false);
    for round in 0..rounds {
        rotation += secs(30);
        let joined = rotation - secs(5);
        swarm.run_until(joined, false);
        if round > 0 {
            swarm.disconnect(100 + round - 1);
        }
        let key = 100 + round;
        swarm.connect(joined, leecher(key, 0));
        assert_eq!(
            swarm.run_until(rotation, false),
            Some(rotation),
            "a rechoke at the rotation"
        );
        if swarm.choker.optimistic() == Some(key) {
            newcomer_picked += 1;
        }
    }
    // Weight 3 against five old peers (the holder is skipped) or six (the holder
    // left): 3/8 or 3/9. Uniform would be 1/6 or 1/7.
    let share = f64::from(newcomer_picked) / f64::from(rounds);
    assert!(
        (0.30..0.43).contains(&share),
        "newcomers won {share:.3} of the rotations"
    );
}

#[test]
fn a_snubbing_peer_loses_its_slot_after_sixty_seconds_of_silence() {
    let t0 = Instant::now();
    let mut swarm = Swarm::new(ChokerConfig::default(), SEED);
    for (key, rate) in [(0, 9), (1, 8), (2, 7), (3, 6), (4, 5), (5, 0), (6, 0)] {
        let mut peer = leecher(key, rate * 100_000);
        peer.unchoked_us = true;
        peer.am_interested = true;
        peer.unchoked_us_since = Some(t0);
        peer.last_block_from_them = Some(t0);
        swarm.connect(t0, peer);
    }
    swarm.rechoke(t0, false);
    assert_eq!(swarm.regular(), vec![0, 1, 2, 3]);
    // Peer 0 goes silent at t0 (its reported rate is a stale average); the others
    // keep sending.
    let mut now = t0;
    while now < t0 + secs(120) {
        now = swarm.choker.poll_timeout().unwrap();
        for key in 1..5 {
            swarm.peer(key).last_block_from_them = Some(now);
        }
        swarm.rechoke(now, false);
        let silent_for = now - t0;
        let regular = swarm.regular();
        if silent_for < secs(60) {
            assert_eq!(regular, vec![0, 1, 2, 3], "at {silent_for:?}");
        } else {
            assert_eq!(regular, vec![1, 2, 3, 4], "snubbed at {silent_for:?}");
        }
    }
    // A block arrives again: the claim is back.
    swarm.peer(0).last_block_from_them = Some(now);
    swarm.rechoke(now, false);
    assert_eq!(swarm.regular(), vec![0, 1, 2, 3]);
}

#[test]
fn seeding_round_robin_gives_every_leecher_a_turn() {
    let t0 = Instant::now();
    let config = ChokerConfig::default();
    let mut swarm = Swarm::new(config, SEED);
    for key in 0..12 {
        swarm.connect(t0, leecher(key, 0));
    }
    // A turn is one unbroken unchoked spell, regular or optimistic (an optimistic
    // peer can move into a regular slot as another's turn ends, in the same spell).
    let mut turns = [0u32; 12];
    let mut since: [Option<Instant>; 12] = [None; 12];
    let mut now = t0;
    while now < t0 + secs(600) {
        swarm.rechoke(now, true);
        assert_eq!(swarm.regular().len(), 4);
        let unchoked = swarm.unchoked();
        for key in 0..12u32 {
            let i = key as usize;
            match (unchoked.contains(&key), since[i]) {
                (true, None) => {
                    since[i] = Some(now);
                    turns[i] += 1;
                }
                (false, Some(start)) => {
                    // No churn: at least an optimistic interval, at most a whole
                    // turn after one (plus one rechoke of lateness).
                    let held = now - start;
                    let longest = config.optimistic_interval + config.seed_turn + config.rechoke_interval;
                    assert!(
                        held >= config.optimistic_interval && held <= longest,
                        "{key} held {held:?}"
                    );
                    since[i] = None;
                }
                _ => {}
            }
        }
        now = swarm.choker.poll_timeout().unwrap();
    }
    // 10 minutes of five slots in spells of 30-100 s: every leecher had turns.
    assert!(turns.iter().all(|&t| (2..=8).contains(&t)), "turns {turns:?}");
    let total: u32 = turns.iter().sum();
    assert!(total >= 40, "{total} turns in 10 minutes");
}

#[test]
fn seeding_round_robin_moves_a_slot_nobody_uses() {
    let t0 = Instant::now();
    let mut swarm = Swarm::new(ChokerConfig::default(), SEED);
    for key in 0..6 {
        swarm.connect(t0, leecher(key, 0));
    }
    swarm.rechoke(t0, true);
    let regular = swarm.regular();
    // One slot holder requests nothing (we upload nothing to it): its slot goes to
    // a waiting peer at the next rechoke, long before its turn would end.
    let idle = regular[0];
    swarm.peer(idle).upload_rate = 0;
    swarm.run_until(t0 + secs(10), true);
    assert!(!swarm.regular().contains(&idle), "{idle} kept an unused slot");
    assert_eq!(swarm.regular().len(), 4);
}

#[test]
fn seeding_fastest_upload_keeps_the_fastest() {
    let t0 = Instant::now();
    let config = ChokerConfig {
        seed_order: SeedOrder::FastestUpload,
        ..ChokerConfig::default()
    };
    let mut swarm = Swarm::new(config, SEED);
    for key in 0..8 {
        swarm.connect(t0, leecher(key, 0));
    }
    swarm.rechoke(t0, true);
    let first = swarm.regular();
    // The slot holders take data at different speeds; order by them from now on.
    for (rank, key) in first.iter().enumerate() {
        swarm.peer(*key).upload_rate = 1_000_000 * (rank as u64 + 1);
    }
    let mut now = t0;
    while now < t0 + secs(600) {
        now = swarm.choker.poll_timeout().unwrap();
        let rates: Vec<(u32, u64)> = swarm.peers.iter().map(|p| (p.key, p.upload_rate)).collect();
        swarm.rechoke(now, true);
        for (key, rate) in rates {
            swarm.peer(key).upload_rate = rate; // the measured rates, not the test's 1 MB/s
        }
        assert_eq!(
            swarm.regular(),
            first,
            "the fastest four keep their slots at {:?}",
            now - t0
        );
    }
}

#[test]
fn peers_not_interested_and_seeds_never_get_a_slot() {
    let t0 = Instant::now();
    let mut swarm = Swarm::new(ChokerConfig::default(), SEED);
    let mut bored = leecher(0, 5_000_000);
    bored.interested = false;
    let mut seed = leecher(1, 5_000_000);
    seed.is_seed = true;
    swarm.connect(t0, bored);
    swarm.connect(t0, seed);
    swarm.connect(t0, leecher(2, 0));
    for seeding in [false, true] {
        swarm.rechoke(t0, seeding);
        assert_eq!(swarm.unchoked(), vec![2], "seeding: {seeding}");
    }
    // An unchoked peer that loses interest is choked at the next rechoke.
    swarm.peer(2).interested = false;
    assert!(swarm.rechoke(t0 + secs(1), false).contains(&Decision {
        key: 2,
        unchoke: false
    }));
    assert!(swarm.unchoked().is_empty());
    // No slots: nobody is unchoked, not even optimistically.
    let mut closed = Swarm::new(
        ChokerConfig {
            upload_slots: 0,
            ..ChokerConfig::default()
        },
        SEED,
    );
    closed.connect(t0, leecher(7, 1));
    closed.rechoke(t0, false);
    assert!(closed.unchoked().is_empty() && closed.choker.optimistic().is_none());
}

#[test]
fn slots_never_exceed_the_config_under_random_churn() {
    let t0 = Instant::now();
    let config = ChokerConfig {
        upload_slots: 3,
        ..ChokerConfig::default()
    };
    let mut swarm = Swarm::new(config, SEED);
    let mut rng = Xorshift::new(99);
    let mut next_key = 0u32;
    let mut now = t0;
    let mut max_unchoked = 0;
    for step in 0..3000u32 {
        now += Duration::from_millis(rng.below(4000));
        match rng.below(10) {
            0..=2 if swarm.peers.len() < 40 => {
                let mut peer = leecher(next_key, rng.below(3) * 100_000);
                peer.interested = rng.below(4) > 0;
                peer.is_seed = rng.below(8) == 0;
                swarm.connect(now, peer);
                next_key += 1;
            }
            3 if !swarm.peers.is_empty() => {
                let key = swarm.peers[rng.below(swarm.peers.len() as u64) as usize].key;
                swarm.disconnect(key);
            }
            4..=5 if !swarm.peers.is_empty() => {
                let i = rng.below(swarm.peers.len() as u64) as usize;
                swarm.peers[i].interested ^= true;
                swarm.peers[i].download_rate = rng.below(5) * 50_000;
            }
            _ => {}
        }
        let seeding = step % 500 > 250;
        let mut rechoked = swarm.run_until(now, seeding).is_some();
        if rng.below(5) == 0 {
            swarm.rechoke(now, seeding); // an early rechoke
            rechoked = true;
        }
        let unchoked = swarm.unchoked();
        max_unchoked = max_unchoked.max(unchoked.len());
        assert_eq!(swarm.choker.slot_free(), unchoked.len() < config.upload_slots + 1);
        assert!(
            unchoked.len() <= config.upload_slots + 1,
            "{} unchoked at step {step}",
            unchoked.len()
        );
        for key in unchoked {
            let peer = *swarm.peer(key);
            assert!(!peer.is_seed, "seed {key} unchoked");
            // Interest may have just been lost; the next rechoke acts on it.
            assert!(
                peer.interested || !rechoked,
                "{key} is not interested but unchoked"
            );
        }
        assert_eq!(swarm.choker.len(), swarm.peers.len());
    }
    assert_eq!(max_unchoked, config.upload_slots + 1, "the slots were used");
}

#[test]
fn a_gone_peer_leaves_no_state() {
    let t0 = Instant::now();
    let mut swarm = Swarm::new(ChokerConfig::default(), SEED);
    for key in 0..10 {
        swarm.connect(t0, leecher(key, u64::from(key) * 1000));
    }
    swarm.rechoke(t0, false);
    assert_eq!(swarm.choker.len(), 10);
    assert!(!swarm.choker.slot_free());
    let optimistic = swarm.choker.optimistic().unwrap();
    assert!(swarm.disconnect(optimistic), "the optimistic peer held a slot");
    assert_eq!(swarm.choker.optimistic(), None);
    assert!(swarm.choker.slot_free());
    let choked = (0..10)
        .find(|k| swarm.peers.iter().any(|p| p.key == *k && p.am_choking))
        .unwrap();
    assert!(!swarm.disconnect(choked), "a choked peer held no slot");
    for key in 0..10 {
        swarm.disconnect(key);
    }
    assert_eq!(swarm.choker.len(), 0);
    assert!(swarm.choker.is_empty());
    assert_eq!(swarm.choker.poll_timeout(), None, "no peers, no timer");
    // Decisions only name peers that are still there.
    swarm.connect(t0 + secs(1), leecher(42, 0));
    let decisions = swarm.rechoke(t0 + secs(1), false);
    assert_eq!(
        decisions,
        vec![Decision {
            key: 42,
            unchoke: true
        }]
    );
}

#[test]
fn the_same_seed_gives_the_same_decisions() {
    fn run(seed: u64) -> Vec<(Duration, Vec<Decision>)> {
        let t0 = Instant::now();
        let mut swarm = Swarm::new(ChokerConfig::default(), seed);
        for key in 0..20 {
            swarm.connect(t0 + secs(u64::from(key)), leecher(key, u64::from(key % 3) * 1000));
        }
        let mut log = Vec::new();
        let mut now = t0 + secs(20);
        while now < t0 + secs(400) {
            log.push((now - t0, swarm.rechoke(now, now > t0 + secs(200))));
            now = swarm.choker.poll_timeout().unwrap();
        }
        log
    }
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8), "the seed matters (for the draws)");
}

#[test]
fn poll_timeout_schedules_the_next_rechoke() {
    let t0 = Instant::now();
    let mut choker = Choker::new(ChokerConfig::default(), SEED);
    assert_eq!(choker.poll_timeout(), None);
    choker.peer_connected(t0, 1);
    assert_eq!(
        choker.poll_timeout(),
        Some(t0),
        "the first peer is ranked at once"
    );
    let mut out = Vec::new();
    choker.rechoke(t0, false, &[leecher(1, 0)], &mut out);
    assert_eq!(
        out,
        vec![Decision {
            key: 1,
            unchoke: true
        }]
    );
    assert_eq!(choker.poll_timeout(), Some(t0 + secs(10)));
    // An early rechoke starts the interval again.
    choker.rechoke(
        t0 + secs(4),
        false,
        &[ChokeInput {
            am_choking: false,
            ..leecher(1, 0)
        }],
        &mut out,
    );
    assert!(out.is_empty(), "no change, no decision");
    assert_eq!(choker.poll_timeout(), Some(t0 + secs(14)));
}
