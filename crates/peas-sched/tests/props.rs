//! Property tests: a mock shell drives one planner with random events and checks, after every
//! step, the planner's contract (see `docs/scheduling.md`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use peas_sched::{
    Action, CHUNK_GROUP, Config, Failure, PeerHave, PeerId, Planner, RequestId, UploadId,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What the mock shell knows and checks.
struct Shell {
    planner: Planner,
    cfg: Config,
    size: u64,
    psize: u64,
    now: Duration,
    /// Peers the shell considers connected, with what they have (`None` = all).
    connected: BTreeMap<PeerId, Option<BTreeSet<u32>>>,
    /// Outstanding requests: id -> (peer, range).
    outstanding: BTreeMap<RequestId, (PeerId, Range<u64>)>,
    /// Uploads accepted and not done, with the requesting peer.
    accepted: BTreeMap<UploadId, PeerId>,
    /// Uploads waiting for a decision, with the requesting peer.
    pending_uploads: BTreeMap<UploadId, PeerId>,
    banned: BTreeSet<PeerId>,
    completes: usize,
}

impl Shell {
    fn new(cfg: Config, size: u64, psize: u64, seed: u64) -> Self {
        Self {
            planner: Planner::new(cfg.clone(), size, psize, seed),
            cfg,
            size,
            psize,
            now: Duration::ZERO,
            connected: BTreeMap::new(),
            outstanding: BTreeMap::new(),
            accepted: BTreeMap::new(),
            pending_uploads: BTreeMap::new(),
            banned: BTreeSet::new(),
            completes: 0,
        }
    }

    fn has(&self, peer: PeerId, p: u32) -> bool {
        match self.connected.get(&peer) {
            Some(None) => true,
            Some(Some(s)) => s.contains(&p),
            None => false,
        }
    }

    /// Drains actions, checking each against the contract.
    fn drain(&mut self) {
        while let Some(a) = self.planner.poll_action() {
            match a {
                Action::Request { id, peer, range } => {
                    assert!(
                        !self.banned.contains(&peer),
                        "request to banned peer {peer:?}"
                    );
                    assert!(
                        self.connected.contains_key(&peer),
                        "request to unknown peer"
                    );
                    assert!(range.start < range.end && range.end <= self.size);
                    assert_eq!(range.start % CHUNK_GROUP, 0, "unaligned start");
                    assert!(range.end % CHUNK_GROUP == 0 || range.end == self.size);
                    let p = (range.start / self.psize) as u32;
                    assert_eq!(
                        p,
                        ((range.end - 1) / self.psize) as u32,
                        "crosses partitions"
                    );
                    assert!(
                        self.has(peer, p),
                        "requested partition {p} from a peer lacking it"
                    );
                    assert!(self.outstanding.insert(id, (peer, range)).is_none());
                    let per_peer = self
                        .outstanding
                        .values()
                        .filter(|(q, _)| *q == peer)
                        .count();
                    assert!(per_peer <= self.cfg.max_inflight_per_peer, "per-peer limit");
                    assert!(
                        self.outstanding.len() <= self.cfg.max_inflight_total,
                        "total limit"
                    );
                }
                Action::Cancel { id } => {
                    assert!(
                        self.outstanding.remove(&id).is_some(),
                        "cancel of unknown request"
                    );
                }
                Action::AcceptUpload { id } => {
                    let peer = self.pending_uploads.remove(&id);
                    assert!(peer.is_some(), "accept of unknown upload");
                    self.accepted.insert(id, peer.unwrap_or(PeerId(0)));
                    let slots = self.cfg.upload_slots.max(self.cfg.seed_upload_slots);
                    assert!(self.accepted.len() <= slots, "upload slots exceeded");
                }
                Action::RefuseUpload { id } => {
                    assert!(
                        self.pending_uploads.remove(&id).is_some(),
                        "refuse of unknown upload"
                    );
                }
                Action::Ban { peer } => {
                    self.banned.insert(peer);
                    self.disconnect_local(peer);
                }
                Action::Disconnect { peer } => {
                    self.disconnect_local(peer);
                }
                Action::Announce { partition } => {
                    assert!(self.planner.has_partition(partition));
                }
                Action::Offer { peer } => {
                    assert!(
                        self.connected.contains_key(&peer),
                        "offer to an unknown peer"
                    );
                    assert!(!self.banned.contains(&peer), "offer to a banned peer");
                }
                Action::Complete => {
                    self.completes += 1;
                    assert!(self.planner.is_complete());
                }
            }
        }
        assert!(self.completes <= 1, "Complete emitted twice");
        assert!(self.planner.connected_peers() <= self.cfg.max_connected_peers);
        assert!(self.planner.inflight() <= self.cfg.max_inflight_total);
    }

    fn disconnect_local(&mut self, peer: PeerId) {
        self.connected.remove(&peer);
        self.outstanding.retain(|_, (q, _)| *q != peer);
        // The planner forgets a gone peer's uploads; the connection closing ends them.
        self.accepted.retain(|_, q| *q != peer);
        self.pending_uploads.retain(|_, q| *q != peer);
    }

    fn connect(&mut self, peer: PeerId, have: Option<BTreeSet<u32>>) {
        let ph = match &have {
            None => PeerHave::All,
            Some(s) => PeerHave::Partitions(s.iter().copied().collect()),
        };
        let fresh = !self.connected.contains_key(&peer);
        if !self.banned.contains(&peer) {
            self.connected.insert(peer, have);
        }
        self.planner.handle_peer_connected(self.now, peer, ph);
        // A peer over the limit gets Disconnect, handled in drain.
        let _ = fresh;
        self.drain();
    }

    /// Per connected peer (in id order): whether the planner ignores an offer from it now.
    fn ignored_offers(&self) -> Vec<bool> {
        self.connected
            .keys()
            .map(|&q| self.planner.ignores_offer(self.now, q))
            .collect()
    }

    fn step(&mut self, rng: &mut ChaCha8Rng, n_parts: u32, allow_failures: bool) {
        self.now += Duration::from_millis(rng.random_range(0..50));
        match rng.random_range(0..11) {
            0..=3 => {
                // Finish or progress an outstanding request.
                if let Some((&id, (_, range))) = self
                    .outstanding
                    .iter()
                    .nth(rng.random_range(0..self.outstanding.len().max(1)))
                {
                    let len = range.end - range.start;
                    let r = rng.random_range(0..4);
                    if r == 0 {
                        let got = rng.random_range(0..=len);
                        let before = self.ignored_offers();
                        self.planner.handle_request_progress(self.now, id, got);
                        if got < len && !self.planner.has_actions() {
                            // Progress not reported yet only ever hides that an offer is
                            // ignored.
                            let after = self.ignored_offers();
                            for (b, a) in before.iter().zip(&after) {
                                assert!(!b || *a, "progress made an ignored offer count");
                            }
                        }
                        if got == len {
                            self.outstanding.remove(&id);
                        }
                    } else if r == 1 && allow_failures {
                        let f = [
                            Failure::Error,
                            Failure::Timeout,
                            Failure::Refused,
                            Failure::BadData,
                        ][rng.random_range(0..4)];
                        self.outstanding.remove(&id);
                        self.planner.handle_request_failed(self.now, id, f);
                    } else {
                        self.outstanding.remove(&id);
                        self.planner.handle_request_done(self.now, id);
                    }
                }
            }
            4 => {
                // A peer gains a partition.
                let peers: Vec<PeerId> = self.connected.keys().copied().collect();
                if !peers.is_empty() {
                    let peer = peers[rng.random_range(0..peers.len())];
                    let p = rng.random_range(0..n_parts);
                    if let Some(Some(s)) = self.connected.get_mut(&peer) {
                        s.insert(p);
                    }
                    let passive = !self.planner.acts_on_announcements();
                    let before = self.ignored_offers();
                    self.planner.handle_peer_has(self.now, peer, p);
                    if passive {
                        // An announcement held back from a planner that cannot act on it
                        // does not change which offers it ignores.
                        assert_eq!(before, self.ignored_offers());
                    }
                }
            }
            5 => {
                // An upload request from a random peer.
                let peer = PeerId(rng.random_range(0..8));
                let p = rng.random_range(0..n_parts);
                let start = u64::from(p) * self.psize;
                let end = (start + self.psize).min(self.size);
                let id = self
                    .planner
                    .handle_upload_request(self.now, peer, start..end);
                self.pending_uploads.insert(id, peer);
            }
            6 => {
                if let Some(&id) = self.accepted.keys().next() {
                    self.accepted.remove(&id);
                    self.planner.handle_upload_done(self.now, id);
                }
            }
            10 => {
                // A peer offers an upload slot; an offer the planner says it ignores does
                // nothing (a shell may skip it).
                let peers: Vec<PeerId> = self.connected.keys().copied().collect();
                if !peers.is_empty() {
                    let peer = peers[rng.random_range(0..peers.len())];
                    let ignored = self.planner.ignores_offer(self.now, peer);
                    assert!(!self.planner.has_actions());
                    self.planner.handle_peer_offer(self.now, peer);
                    assert!(
                        !ignored || !self.planner.has_actions(),
                        "an offer the planner ignores acted"
                    );
                }
            }
            7 if allow_failures => {
                let peers: Vec<PeerId> = self.connected.keys().copied().collect();
                if !peers.is_empty() {
                    let peer = peers[rng.random_range(0..peers.len())];
                    self.disconnect_local(peer);
                    self.planner.handle_peer_disconnected(self.now, peer);
                }
            }
            _ => {
                let t = self
                    .planner
                    .poll_timeout()
                    .unwrap_or(self.now)
                    .max(self.now);
                self.now = t;
                self.planner.handle_timeout(self.now);
            }
        }
        self.drain();
    }
}

fn random_have(rng: &mut ChaCha8Rng, n_parts: u32) -> Option<BTreeSet<u32>> {
    if rng.random_range(0..4) == 0 {
        None
    } else {
        Some(
            (0..n_parts)
                .filter(|_| rng.random_range(0..3) == 0)
                .collect(),
        )
    }
}

fn small_config(rng: &mut ChaCha8Rng) -> Config {
    Config {
        max_connected_peers: rng.random_range(1..6),
        max_inflight_total: rng.random_range(1..6),
        max_inflight_per_peer: rng.random_range(1..3),
        upload_slots: rng.random_range(1..4),
        seed_upload_slots: rng.random_range(1..4),
        upload_queue_total: rng.random_range(0..4),
        upload_queue_per_peer: rng.random_range(0..3),
        request_size: CHUNK_GROUP * rng.random_range(1..5),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Nothing is requested from a peer lacking it, limits are never exceeded, a banned peer is
    /// never used again, Complete is emitted at most once.
    #[test]
    fn contract_holds_under_random_events(seed in any::<u64>(), parts in 1u32..12, tail in 0u64..4) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let cfg = small_config(&mut rng);
        let psize = CHUNK_GROUP * 4;
        let size = u64::from(parts - 1) * psize + tail * CHUNK_GROUP + 100;
        let n_parts = size.div_ceil(psize) as u32;
        let mut sh = Shell::new(cfg, size, psize, seed);
        if rng.random_range(0..3) == 0 {
            sh.planner.handle_local_have(0..size);
            sh.drain();
        }
        for i in 0..8u64 {
            let have = random_have(&mut rng, n_parts);
            sh.connect(PeerId(i), have);
        }
        for _ in 0..400 {
            sh.step(&mut rng, n_parts, true);
            // A peer that reconnects after a ban stays banned.
            if rng.random_range(0..40) == 0 && let Some(&b) = sh.banned.iter().next() {
                sh.connect(b, None);
                prop_assert!(!sh.connected.contains_key(&b));
            }
        }
    }

    /// When the connected peers together hold every partition and nothing fails, the planner
    /// completes.
    #[test]
    fn completes_when_the_swarm_holds_everything(seed in any::<u64>(), parts in 1u32..16) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut cfg = small_config(&mut rng);
        cfg.max_connected_peers = 8;
        let psize = CHUNK_GROUP * 4;
        let size = u64::from(parts) * psize - 5;
        let n_parts = size.div_ceil(psize) as u32;
        let mut sh = Shell::new(cfg, size, psize, seed);
        // Four peers; every partition held by at least one of them.
        let mut haves: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); 4];
        for p in 0..n_parts {
            haves[rng.random_range(0..4)].insert(p);
            haves[rng.random_range(0..4)].insert(p);
        }
        for (i, h) in haves.into_iter().enumerate() {
            sh.connect(PeerId(i as u64), Some(h));
        }
        for _ in 0..20_000 {
            if sh.planner.is_complete() {
                break;
            }
            sh.step(&mut rng, n_parts, false);
        }
        prop_assert!(sh.planner.is_complete());
        prop_assert_eq!(sh.planner.verified_bytes(), size);
        prop_assert_eq!(sh.completes, 1);
    }
}
