//! The per-blob planner: downloads (which range from which peer) and uploads (which request to
//! serve when). See `docs/scheduling.md` for the policies.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::num::NonZeroU32;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::bits::PartitionBits;
use crate::slots::PeerSlots;
use crate::sorted_map::SortedMap;
use crate::{
    Action, CHUNK_GROUP, Config, Failure, PeerHave, PeerId, RequestId, UploadId, prefetch_all,
};

/// Largest number of partitions a planner tracks; a larger geometry is rejected by
/// [`Planner::try_new`] and clamped by [`Planner::new`].
pub const MAX_PARTITIONS: u64 = 1 << 24;

/// Largest number of download blocks a planner tracks (bounds memory to a few hundred MiB).
pub const MAX_BLOCKS: u64 = 1 << 26;

/// Why a geometry cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// The partition size is zero or not a multiple of 16 KiB.
    #[error("partition size {0} is not a positive multiple of 16 KiB")]
    BadPartitionSize(u64),
    /// The blob has more partitions or blocks than the planner tracks.
    #[error("blob of {size} bytes with {partition_size}-byte partitions has too many partitions")]
    TooManyPartitions {
        /// Blob size in bytes.
        size: u64,
        /// Partition size in bytes.
        partition_size: u64,
    },
}

/// Statistics about one connected peer, for display and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerStats {
    /// Verified bytes received from this peer (completed requests and verified prefixes).
    pub bytes_received: u64,
    /// Estimated throughput of one request from this peer, bytes per second (0 = unknown).
    pub throughput: f64,
    /// Requests currently in flight to this peer.
    pub inflight: usize,
    /// Consecutive failures (reset by a success).
    pub failures: u32,
    /// Times a request was taken back from this peer because it was much slower than others.
    pub slow_strikes: u32,
    /// Whether the peer is a complete seed or has announced every partition.
    pub is_seed: bool,
}

#[derive(Debug)]
struct Block {
    /// Verified prefix of the block, in bytes.
    done: u64,
    /// Requests in flight for the rest of the block (more than one only in endgame).
    reqs: BlockReqs,
    /// Whether an offer already moved this block's request once (it is not moved again: a
    /// request that delivers nothing for a while may be slow rather than queued).
    moved: bool,
}

/// The requests in flight for one block, in the order they were issued. Nearly always none or
/// one (duplicates only in endgame), so the first is kept inline and only the others are
/// allocated: a `Vec` here cost an allocation and a free per request and a read behind a
/// pointer on every release.
#[derive(Debug, Default)]
struct BlockReqs {
    first: Option<RequestId>,
    /// The rest, in order (`None` when there are none). Boxed: one pointer in every block
    /// instead of a `Vec`'s three words, for what only endgame uses.
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<RequestId>>>,
}

impl BlockReqs {
    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.as_ref().map_or(0, |m| m.len())
    }

    fn push(&mut self, id: RequestId) {
        if self.first.is_none() {
            self.first = Some(id);
        } else {
            self.more.get_or_insert_default().push(id);
        }
    }

    /// Removes `id` (if present), keeping the order of the others.
    fn remove(&mut self, id: RequestId) {
        if self.first == Some(id) {
            self.first = match &mut self.more {
                Some(m) if !m.is_empty() => Some(m.remove(0)),
                _ => None,
            };
        } else if let Some(m) = &mut self.more {
            m.retain(|r| *r != id);
        }
        if self.more.as_ref().is_some_and(|m| m.is_empty()) {
            self.more = None;
        }
    }

    /// The requests, in the order they were issued.
    fn iter(&self) -> impl Iterator<Item = RequestId> + '_ {
        (self.first.iter().copied()).chain(self.more.iter().flat_map(|m| m.iter().copied()))
    }
}

#[derive(Debug, Default, Clone)]
struct Part {
    /// Blocks not yet fully verified.
    blocks_left: u32,
}

#[derive(Debug)]
struct Req {
    peer: PeerId,
    block: u32,
    range: Range<u64>,
    issued: Duration,
    last_progress: Duration,
    received: u64,
}

#[derive(Debug)]
#[repr(C, align(64))]
struct Peer {
    // Everything the hot paths read (offer rounds, scheduling) sits in the first cache line,
    // together with the refused set's count: thousands of planners in the simulator miss the
    // caches on nearly every access. What the peer has is in `Planner::slots`.
    /// Its bit in the per-partition holder masks and its entry in `Planner::slots`
    /// (`0..max_connected_peers`, unique among connected peers).
    slot: u32,
    failures: u32,
    inflight: usize,
    rate: f64,
    retry_at: Duration,
    bytes_received: u64,
    slow_strikes: u32,
    refused: PartitionBits,
    refused_until: Option<Duration>,
}

impl Peer {
    /// Whether partition `p` may be asked from this peer (`sets`: what the planner's peers
    /// have): it has it and did not refuse it lately.
    fn can_serve(&self, sets: &PeerSlots, p: u32) -> bool {
        sets.contains(self.slot, p) && (self.refused.is_empty() || !self.refused.contains(p))
    }
}

/// Where a planner keeps a connected peer: its slot in the per-peer arrays, fixed while the
/// peer stays connected (and reused after it leaves). A shell that delivers many announcements
/// remembers it ([`Planner::peer_slot`]) and passes it to [`Planner::handle_peer_has_in`],
/// which then finds the peer's state without a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerSlot(NonZeroU32);

impl PeerSlot {
    fn new(slot: u32) -> Self {
        Self(NonZeroU32::MIN.saturating_add(slot))
    }

    fn index(self) -> u32 {
        self.0.get() - 1
    }
}

#[derive(Debug)]
struct Upload {
    peer: PeerId,
    partition: u32,
    active: bool,
    seq: u64,
    len: u64,
}

/// The planner for one blob: a pure state machine (no IO, no clock, no hidden randomness).
///
/// Invariants kept at every step: at most [`Config::max_inflight_total`] requests in flight,
/// at most [`Config::max_inflight_per_peer`] per peer, at most [`Config::upload_slots`] uploads
/// accepted and not done, at most [`Config::max_connected_peers`] peers tracked; a range is
/// only requested from a peer that announced its partition; a banned peer is never used again.
#[derive(Debug)]
#[repr(C)]
pub struct Planner {
    // Laid out hottest first (the fields nearly every call reads share the first cache
    // lines): in the simulator thousands of planners miss the caches on nearly every access,
    // and the default layout spread these over the whole record.
    now: Duration,
    /// Shared: a swarm's planners usually run one configuration, and one copy stays cached.
    config: Arc<Config>,
    n_parts: u32,
    completed_parts: u32,
    blocks_per_part: u32,
    seed_peers: u32,
    active_uploads: usize,
    missing_blocks: u64,
    partition_size: u64,
    block_size: u64,
    size: u64,

    peers: SortedMap<PeerId, Peer>,
    /// The peers' slots, in the order of `peers` (by peer id): an offer round reads the slot
    /// table in this order, so its candidates come out sorted by peer.
    peer_slots: Vec<u32>,
    requests: BTreeMap<RequestId, Req>,
    /// Requests in `requests` that have delivered nothing yet.
    unstarted: u32,
    actions: VecDeque<Action>,
    /// Per partition, [`Planner::mask_words`] words: bit `slot` is set if the connected peer
    /// in that slot (not a complete seed) has it. Its count is the partition's availability.
    holders: Vec<u32>,
    /// Words per partition in `holders` (`max_connected_peers / 32`, rounded up).
    mask_words: u32,
    /// Slots of connected peers that are not complete seeds (`mask_words` words).
    partial_slots: Vec<u32>,
    /// Per peer slot: the peer in it, what it has, and how many of our partitions it lacks
    /// (kept up to date as either side gains one: whether it is worth an offer, without a
    /// word-wise compare). Apart from the peer records, so that an announcement given with its
    /// slot ([`Planner::handle_peer_has_in`]) reads nothing whose address depends on another
    /// read.
    slots: PeerSlots,
    parts: Vec<Part>,
    blocks: Vec<Block>,

    /// Outstanding upload-slot offers: peer → when the offer lapses, and the peer's slot.
    offers: SortedMap<PeerId, (Duration, u32)>,
    /// Per peer slot: until when its peer is not offered a slot again, because its last
    /// offer lapsed unanswered (an earlier time: no quiet period). Reset when the slot is
    /// vacated.
    quiet_until: Vec<Duration>,
    /// Earliest lapse in `offers`. No timer: checked on the next event (see
    /// [`Config::offer_timeout`]).
    offer_deadline: Option<Duration>,
    uploads: SortedMap<UploadId, Upload>,
    upload_queue: Vec<UploadId>,
    /// Buffers reused by the scheduling and offer rounds (they run on most events).
    scratch: Scratch,
    next_request: u64,
    verified: u64,
    /// Per partition: 1 + the first peer we served it to (0 = never served).
    first_taker: Vec<u64>,
    /// Per partition: bytes of finished uploads.
    served_bytes: Vec<u64>,
    assigned: Vec<u32>,
    /// Uploads accepted per peer (fairness among queued requests); forgotten on disconnect.
    accepted_per_peer: BTreeMap<PeerId, u64>,

    have: PartitionBits,
    /// Partitions not had that have a block neither verified nor requested.
    needed: PartitionBits,
    /// Partitions with some block verified in part or requested (started).
    touched: PartitionBits,
    rng: ChaCha8Rng,

    last_tick: Duration,
    /// Earliest backoff end or refusal expiry among peers (a lower bound; refreshed on ticks).
    peer_deadline: Option<Duration>,
    /// Whether `peer_deadline` is exactly what [`Planner::handle_timeout`]'s walk over the
    /// peers would find (false once a deadline it counted was moved or left with its peer):
    /// while it is and not due, that walk is skipped.
    peer_deadline_exact: bool,
    complete_emitted: bool,
    release_cursor: u32,
    next_upload: u64,
    upload_seq: u64,
    bytes_uploaded_started: u64,
    banned: BTreeSet<PeerId>,
    /// Super-seeding refusals per (peer, partition); forgotten on disconnect.
    superseed_refusals: BTreeMap<(PeerId, u32), u32>,
}

/// See [`Planner::scratch`]: always empty between calls.
#[derive(Debug, Default)]
struct Scratch {
    waiting: Vec<PeerId>,
    cands: Vec<(usize, u64, PeerId)>,
    loads: Vec<(PeerId, u32)>,
    offer_cands: Vec<(u32, u32, u64, PeerId, u32)>,
}

/// Order of queued uploads: (not a continuation, then copies / peer's active uploads or, with
/// `neediest_first`, peer's progress / copies / active uploads, then the peer's accepted
/// uploads, arrival).
type QueueKey = (bool, u32, u32, u32, u64, u64);

/// Counts the occurrences of each peer in `peers` into `counts` (few peers: a linear scan).
fn tally_peers(peers: impl Iterator<Item = PeerId>, counts: &mut Vec<(PeerId, u32)>) {
    for peer in peers {
        match counts.iter_mut().find(|(q, _)| *q == peer) {
            Some((_, n)) => *n += 1,
            None => counts.push((peer, 1)),
        }
    }
}

/// Makes sure `v[..=i]` holds the smallest `i + 1` elements in ascending order, given that
/// `v[..ordered]` already does (`ordered <= i`); returns the new length of that prefix. The
/// first few positions are found by selection, then the rest is sorted at once, so that
/// reading a prefix costs O(prefix × len) at most and reading all costs one sort.
fn order_up_to<T: Ord>(v: &mut [T], ordered: usize, i: usize) -> usize {
    const SELECTED: usize = 4;
    if i < ordered {
        return ordered;
    }
    if i >= SELECTED {
        v[ordered..].sort_unstable();
        return v.len();
    }
    let mut o = ordered;
    while o <= i {
        let min = (o..v.len()).min_by(|&a, &b| v[a].cmp(&v[b])).unwrap_or(o);
        v.swap(o, min);
        o += 1;
    }
    o
}

/// `peer`'s count in a [`tally_peers`] result.
fn count_of(counts: &[(PeerId, u32)], peer: PeerId) -> u32 {
    counts
        .iter()
        .find(|(q, _)| *q == peer)
        .map_or(0, |(_, n)| *n)
}

/// Where partition `p`'s words are in `Planner::holders` (`words` per partition).
fn mask_range(words: u32, p: u32) -> Range<usize> {
    let w = words as usize;
    p as usize * w..(p as usize + 1) * w
}

/// A peer slot's word in a mask, and its bit there.
fn slot_bit(slot: u32) -> (usize, u32) {
    ((slot / 32) as usize, 1 << (slot % 32))
}

fn round_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to).saturating_mul(to)
}

impl Planner {
    /// A planner for a blob of `size` bytes cut into partitions of `partition_size` bytes, with
    /// its random choices drawn from `seed`. Nothing is had locally yet: call
    /// [`Planner::handle_local_have`] for what the store already verified.
    ///
    /// Never panics: a partition size that is not a positive multiple of 16 KiB is rounded up
    /// to one, and one that would give more than [`MAX_PARTITIONS`] partitions is enlarged;
    /// [`Planner::partition_size`] tells the size used. Use [`Planner::try_new`] to reject such
    /// input instead.
    pub fn new(config: impl Into<Arc<Config>>, size: u64, partition_size: u64, seed: u64) -> Self {
        let mut ps = round_up(partition_size.max(1), CHUNK_GROUP);
        let min_ps = round_up(size.div_ceil(MAX_PARTITIONS), CHUNK_GROUP);
        ps = ps.max(min_ps).max(CHUNK_GROUP);
        Self::build(config.into(), size, ps, seed)
    }

    /// Like [`Planner::new`] but rejects a partition size that is not a positive multiple of
    /// 16 KiB or a geometry with too many partitions or blocks.
    pub fn try_new(
        config: impl Into<Arc<Config>>,
        size: u64,
        partition_size: u64,
        seed: u64,
    ) -> Result<Self, GeometryError> {
        let config = config.into();
        if partition_size == 0 || !partition_size.is_multiple_of(CHUNK_GROUP) {
            return Err(GeometryError::BadPartitionSize(partition_size));
        }
        let parts = size.div_ceil(partition_size);
        let bs = round_up(config.request_size.max(1), CHUNK_GROUP).min(partition_size);
        let blocks = parts.saturating_mul(partition_size.div_ceil(bs));
        if parts > MAX_PARTITIONS || blocks > MAX_BLOCKS {
            return Err(GeometryError::TooManyPartitions {
                size,
                partition_size,
            });
        }
        Ok(Self::build(config, size, partition_size, seed))
    }

    fn build(config: Arc<Config>, size: u64, ps: u64, seed: u64) -> Self {
        let n_parts = size.div_ceil(ps) as u32;
        let mut bs = round_up(config.request_size.max(1), CHUNK_GROUP).min(ps);
        // Keep the block table bounded.
        let min_bs = round_up(
            (u64::from(n_parts) * ps.div_ceil(bs))
                .div_ceil(MAX_BLOCKS)
                .max(1)
                * bs,
            CHUNK_GROUP,
        );
        if u64::from(n_parts) * ps.div_ceil(bs) > MAX_BLOCKS {
            bs = min_bs.min(ps);
        }
        let bpp = ps.div_ceil(bs) as u32;
        let mut blocks = Vec::with_capacity((n_parts as usize) * (bpp as usize));
        let mut parts = vec![Part::default(); n_parts as usize];
        let mut needed = PartitionBits::new(n_parts);
        let mut missing_blocks = 0u64;
        for p in 0..n_parts {
            let pstart = u64::from(p) * ps;
            let pend = (pstart + ps).min(size);
            for j in 0..bpp {
                let bstart = pstart + u64::from(j) * bs;
                if bstart < pend {
                    parts[p as usize].blocks_left += 1;
                    missing_blocks += 1;
                }
                blocks.push(Block {
                    done: 0,
                    reqs: BlockReqs::default(),
                    moved: false,
                });
            }
            needed.insert(p);
        }
        let mask_words = config.max_connected_peers.div_ceil(32).max(1) as u32;
        // Peer slots: one bit each in the holder masks.
        let n_slots = mask_words as usize * 32;
        let mut planner = Self {
            config,
            size,
            partition_size: ps,
            block_size: bs,
            n_parts,
            blocks_per_part: bpp,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: Duration::ZERO,
            last_tick: Duration::ZERO,
            blocks,
            parts,
            have: PartitionBits::new(n_parts),
            needed,
            touched: PartitionBits::new(n_parts),
            completed_parts: 0,
            missing_blocks,
            verified: 0,
            complete_emitted: false,
            holders: vec![0; n_parts as usize * mask_words as usize],
            mask_words,
            partial_slots: vec![0; mask_words as usize],
            slots: PeerSlots::new(n_slots, n_parts),
            seed_peers: 0,
            peers: SortedMap::new(),
            peer_slots: Vec::new(),
            banned: BTreeSet::new(),
            requests: BTreeMap::new(),
            unstarted: 0,
            next_request: 0,
            uploads: SortedMap::new(),
            upload_queue: Vec::new(),
            active_uploads: 0,
            next_upload: 0,
            upload_seq: 0,
            assigned: vec![0; n_parts as usize],
            first_taker: vec![0; n_parts as usize],
            served_bytes: vec![0; n_parts as usize],
            release_cursor: 0,
            actions: VecDeque::new(),
            bytes_uploaded_started: 0,
            accepted_per_peer: BTreeMap::new(),
            peer_deadline: None,
            peer_deadline_exact: true,
            superseed_refusals: BTreeMap::new(),
            offers: SortedMap::new(),
            quiet_until: vec![Duration::ZERO; n_slots],
            offer_deadline: None,
            scratch: Scratch::default(),
        };
        planner.check_complete();
        planner
    }

    // ----------------------------------------------------------------------------------------
    // Getters

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Blob size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Partition size in bytes actually used (see [`Planner::new`]).
    pub fn partition_size(&self) -> u64 {
        self.partition_size
    }

    /// Size of a download block (the largest request), in bytes.
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> u32 {
        self.n_parts
    }

    /// Byte range of partition `p` (empty if out of range).
    pub fn partition_range(&self, p: u32) -> Range<u64> {
        if p >= self.n_parts {
            return self.size..self.size;
        }
        let s = u64::from(p) * self.partition_size;
        s..(s + self.partition_size).min(self.size)
    }

    /// Whether the whole blob is verified locally.
    pub fn is_complete(&self) -> bool {
        self.completed_parts == self.n_parts
    }

    /// Bytes verified locally (counting verified prefixes of partly fetched blocks).
    pub fn verified_bytes(&self) -> u64 {
        self.verified
    }

    /// Whether partition `p` is fully verified locally.
    pub fn has_partition(&self, p: u32) -> bool {
        self.have.contains(p)
    }

    /// The partitions fully verified locally (what to tell a peer on connect).
    pub fn have_partitions(&self) -> &PartitionBits {
        &self.have
    }

    /// Number of requests in flight.
    pub fn inflight(&self) -> usize {
        self.requests.len()
    }

    /// Number of uploads accepted and not done.
    pub fn active_uploads(&self) -> usize {
        self.active_uploads
    }

    /// Number of uploads waiting for a slot.
    pub fn queued_uploads(&self) -> usize {
        self.upload_queue.len()
    }

    /// Number of connected peers tracked.
    pub fn connected_peers(&self) -> usize {
        self.peers.len()
    }

    /// Whether `peer` is banned.
    pub fn is_banned(&self, peer: PeerId) -> bool {
        self.banned.contains(&peer)
    }

    /// The banned peers, ascending.
    pub fn banned_peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.banned.iter().copied()
    }

    /// Statistics of a connected peer (`None` if not connected).
    pub fn peer_stats(&self, peer: PeerId) -> Option<PeerStats> {
        let p = self.peers.get(&peer)?;
        Some(PeerStats {
            bytes_received: p.bytes_received,
            throughput: p.rate,
            inflight: p.inflight,
            failures: p.failures,
            slow_strikes: p.slow_strikes,
            is_seed: self.slots.count(p.slot) == self.n_parts,
        })
    }

    /// How many connected peers have partition `p` (complete seeds included).
    pub fn availability(&self, p: u32) -> u32 {
        if p >= self.n_parts {
            return self.seed_peers;
        }
        self.avail(p) + self.seed_peers
    }

    /// The peer and range of an in-flight request (`None` if unknown).
    pub fn request_info(&self, id: RequestId) -> Option<(PeerId, Range<u64>)> {
        self.requests.get(&id).map(|r| (r.peer, r.range.clone()))
    }

    /// Bytes of uploads accepted so far (the full requested ranges).
    pub fn upload_bytes_accepted(&self) -> u64 {
        self.bytes_uploaded_started
    }

    // ----------------------------------------------------------------------------------------
    // Geometry helpers

    fn block_range(&self, b: u32) -> Range<u64> {
        let p = b / self.blocks_per_part;
        let j = b % self.blocks_per_part;
        let pstart = u64::from(p) * self.partition_size;
        let pend = (pstart + self.partition_size).min(self.size);
        let s = (pstart + u64::from(j) * self.block_size).min(pend);
        s..(s + self.block_size).min(pend)
    }

    fn block_is_done(&self, b: u32) -> bool {
        let r = self.block_range(b);
        self.blocks[b as usize].done >= r.end - r.start
    }

    fn partition_of(&self, offset: u64) -> u32 {
        (offset / self.partition_size) as u32
    }

    /// Recomputes whether partition `p` is in the `needed` set and whether it is touched.
    fn refresh_part(&mut self, p: u32) {
        if self.have.contains(p) {
            self.needed.remove(p);
            return;
        }
        let mut unassigned = false;
        let mut touched = false;
        for j in 0..self.blocks_per_part {
            let b = p * self.blocks_per_part + j;
            let blk = &self.blocks[b as usize];
            if blk.done > 0 || !blk.reqs.is_empty() {
                touched = true;
            }
            if !self.block_is_done(b) && self.blocks[b as usize].reqs.is_empty() {
                unassigned = true;
            }
        }
        if touched {
            self.touched.insert(p);
        } else {
            self.touched.remove(p);
        }
        if unassigned {
            self.needed.insert(p);
        } else {
            self.needed.remove(p);
        }
    }

    /// Records that the first `upto - block_start` bytes of block `b` are verified.
    /// Returns true if this completed the block.
    fn credit(&mut self, b: u32, upto: u64, announce: bool) -> bool {
        let r = self.block_range(b);
        let len = r.end - r.start;
        let new_done = upto.saturating_sub(r.start).min(len);
        let blk = &mut self.blocks[b as usize];
        if new_done <= blk.done {
            return false;
        }
        let was_done = blk.done >= len;
        self.verified += new_done - blk.done;
        blk.done = new_done;
        if was_done || new_done < len {
            return false;
        }
        // The block is complete: cancel duplicates.
        let others = std::mem::take(&mut self.blocks[b as usize].reqs);
        for id in others.iter() {
            if let Some(req) = self.requests.remove(&id) {
                self.forget_request_counts(&req);
                self.actions.push_back(Action::Cancel { id });
            }
        }
        self.missing_blocks -= 1;
        let p = b / self.blocks_per_part;
        let part = &mut self.parts[p as usize];
        part.blocks_left -= 1;
        if part.blocks_left == 0 {
            self.have.insert(p);
            // Every peer (not a seed) that lacks it now lacks one more of ours.
            let holders = &self.holders[mask_range(self.mask_words, p)];
            for (i, (&partial, &has)) in self.partial_slots.iter().zip(holders).enumerate() {
                let mut m = partial & !has;
                while m != 0 {
                    *self.slots.lacking_mut(i as u32 * 32 + m.trailing_zeros()) += 1;
                    m &= m - 1;
                }
            }
            self.needed.remove(p);
            self.completed_parts += 1;
            if announce {
                self.actions.push_back(Action::Announce { partition: p });
                self.make_offers();
            }
            self.check_complete();
        }
        true
    }

    fn check_complete(&mut self) {
        if self.is_complete() && !self.complete_emitted {
            self.complete_emitted = true;
            let ids: Vec<RequestId> = self.requests.keys().copied().collect();
            for id in ids {
                if let Some(req) = self.requests.remove(&id) {
                    self.forget_request_counts(&req);
                    self.actions.push_back(Action::Cancel { id });
                }
            }
            self.actions.push_back(Action::Complete);
        }
    }

    /// Decrements the in-flight counters of a request already removed from `requests`.
    fn forget_request_counts(&mut self, req: &Req) {
        if req.received == 0 {
            self.unstarted -= 1;
        }
        if let Some(peer) = self.peers.get_mut(&req.peer) {
            peer.inflight = peer.inflight.saturating_sub(1);
        }
    }

    /// Removes request `id`, keeps its verified prefix, and makes its block requestable again.
    fn release_request(&mut self, id: RequestId) -> Option<Req> {
        let req = self.requests.remove(&id)?;
        self.forget_request_counts(&req);
        self.blocks[req.block as usize].reqs.remove(id);
        self.credit(req.block, req.range.start + req.received, true);
        self.refresh_part(req.block / self.blocks_per_part);
        Some(req)
    }

    // ----------------------------------------------------------------------------------------
    // Local state

    /// Marks `range` of the blob as already verified locally (resume, or a seed's whole blob).
    /// Only whole blocks and verified block prefixes are counted: the range is rounded inward.
    /// Emits no [`Action::Announce`] (the shell tells peers its state on connect) but emits
    /// [`Action::Complete`] if this completes the blob.
    pub fn handle_local_have(&mut self, range: Range<u64>) {
        let end = range.end.min(self.size);
        if range.start >= end {
            return;
        }
        let first_block = self.block_index_at(range.start);
        let mut b = first_block;
        let total = self.n_parts * self.blocks_per_part;
        while b < total {
            let r = self.block_range(b);
            if r.start >= end {
                break;
            }
            if r.start < r.end && range.start <= r.start + self.blocks[b as usize].done {
                self.credit(b, end, false);
                self.refresh_part(b / self.blocks_per_part);
            }
            b += 1;
        }
    }

    fn block_index_at(&self, offset: u64) -> u32 {
        let p = self.partition_of(offset);
        let within = offset - u64::from(p) * self.partition_size;
        p * self.blocks_per_part + (within / self.block_size) as u32
    }

    // ----------------------------------------------------------------------------------------
    // Peers

    /// A peer connected and told what it has. A banned peer gets [`Action::Ban`] again; a peer
    /// beyond [`Config::max_connected_peers`] gets [`Action::Disconnect`]. An already connected
    /// peer has its have-set replaced. New peers are used at once, taking work from much slower
    /// in-flight requests (rebalancing).
    pub fn handle_peer_connected(&mut self, now: Duration, peer: PeerId, have: PeerHave) {
        self.advance(now);
        if self.banned.contains(&peer) {
            self.actions.push_back(Action::Ban { peer });
            return;
        }
        let slot = if let Some(old) = self.peers.get(&peer) {
            let slot = old.slot;
            self.remove_have(slot);
            slot
        } else if self.peers.len() >= self.config.max_connected_peers {
            self.actions.push_back(Action::Disconnect { peer });
            return;
        } else {
            let slot = self.slots.occupy(peer);
            self.peers.insert(
                peer,
                Peer {
                    slot,
                    inflight: 0,
                    failures: 0,
                    retry_at: Duration::ZERO,
                    rate: 0.0,
                    bytes_received: 0,
                    refused: PartitionBits::new(self.n_parts),
                    refused_until: None,
                    slow_strikes: 0,
                },
            );
            let i = self.peers.index_of(&peer).expect("just inserted");
            self.peer_slots.insert(i, slot);
            slot
        };
        match have {
            PeerHave::All => {
                self.seed_peers += 1;
                self.slots.set_seed(slot);
            }
            PeerHave::Partitions(list) => {
                let (w, bit) = slot_bit(slot);
                self.partial_slots[w] |= bit;
                for p in list {
                    if self.slots.insert(slot, p) {
                        self.holders[mask_range(self.mask_words, p).start + w] |= bit;
                    }
                }
            }
        }
        *self.slots.lacking_mut(slot) = self.lacking_of(self.slots.words(slot));
        self.rebalance(now);
        self.schedule(now);
    }

    /// Forgets what the peer in `slot` had.
    fn remove_have(&mut self, slot: u32) {
        match self.slots.words(slot) {
            None => self.seed_peers = self.seed_peers.saturating_sub(1),
            Some(words) => {
                let (w, bit) = slot_bit(slot);
                self.partial_slots[w] &= !bit;
                for (wi, &word) in words.iter().enumerate() {
                    let mut m = word;
                    while m != 0 {
                        let p = wi as u32 * 64 + m.trailing_zeros();
                        m &= m - 1;
                        self.holders[mask_range(self.mask_words, p).start + w] &= !bit;
                    }
                }
            }
        }
        self.slots.clear(slot);
    }

    /// How many connected peers other than complete seeds have partition `p`.
    fn avail(&self, p: u32) -> u32 {
        (self.holders[mask_range(self.mask_words, p)].iter())
            .map(|m| m.count_ones())
            .sum()
    }

    /// A connected peer announced that it now has partition `p`. Ignored for unknown peers and
    /// out-of-range partitions.
    pub fn handle_peer_has(&mut self, now: Duration, peer: PeerId, p: u32) {
        self.advance(now);
        if p >= self.n_parts {
            return;
        }
        if let Some(pe) = self.peers.get(&peer) {
            self.note_peer_has(now, pe.slot, p);
        }
    }

    /// A connected peer's slot (`None` if it is not connected); see [`PeerSlot`].
    pub fn peer_slot(&self, peer: PeerId) -> Option<PeerSlot> {
        self.peers.get(&peer).map(|pe| PeerSlot::new(pe.slot))
    }

    /// [`Planner::handle_peer_has`] for a peer in a slot the caller remembers from
    /// [`Planner::peer_slot`]: the same outcome, without looking the peer up. A slot that no
    /// longer holds `peer` falls back to the lookup.
    pub fn handle_peer_has_in(&mut self, now: Duration, peer: PeerId, slot: PeerSlot, p: u32) {
        let slot = slot.index();
        if !self.slots.holds(slot, peer) {
            return self.handle_peer_has(now, peer, p);
        }
        self.advance(now);
        if p < self.n_parts {
            self.note_peer_has(now, slot, p);
        }
    }

    /// [`Planner::handle_peer_has_in`] (or, for an entry without a slot,
    /// [`Planner::handle_peer_has`]) for each `(peer, slot, partition)` of `have`, in order:
    /// the same outcome. The words these calls update are read first, all in one pass, so
    /// that their cache misses overlap: for a shell that takes in a batch of announcements
    /// for a planner it has not touched for a while.
    pub fn handle_peers_have(&mut self, now: Duration, have: &[(PeerId, Option<PeerSlot>, u32)]) {
        let mut seen = 0u64;
        for &(_, slot, p) in have {
            if let Some(slot) = slot
                && p < self.n_parts
            {
                let slot = slot.index();
                let (w, _) = slot_bit(slot);
                seen ^= self.slots.word_of(slot, p);
                seen ^= u64::from(
                    (self.holders.get(mask_range(self.mask_words, p).start + w)).map_or(0, |m| *m),
                );
            }
        }
        // Reads whose result no one needs could be left out.
        std::hint::black_box(seen);
        for &(peer, slot, p) in have {
            match slot {
                Some(slot) => self.handle_peer_has_in(now, peer, slot, p),
                None => self.handle_peer_has(now, peer, p),
            }
        }
    }

    /// The peer in `slot` has partition `p` (`p` in range).
    fn note_peer_has(&mut self, now: Duration, slot: u32, p: u32) {
        if self.slots.insert(slot, p) {
            if self.have.contains(p) {
                *self.slots.lacking_mut(slot) -= 1;
            }
            let (w, bit) = slot_bit(slot);
            self.holders[mask_range(self.mask_words, p).start + w] |= bit;
            if self.needed.contains(p) {
                self.schedule(now);
            }
        }
    }

    /// Whether an announcement ([`Planner::handle_peer_has`]) may lead to an action now.
    /// When false (the blob is complete, or the request budget is full) it only updates
    /// bookkeeping, so a shell may hold announcements back and deliver them in a batch just
    /// before its next call into this planner, with the same outcome.
    pub fn acts_on_announcements(&self) -> bool {
        !self.is_complete() && !self.peers.is_empty() && self.requests.len() < self.inflight_cap()
    }

    /// A peer went away. Its in-flight requests end (their verified prefixes kept, their blocks
    /// requestable again), its uploads are dropped. Its ban, if any, stays.
    pub fn handle_peer_disconnected(&mut self, now: Duration, peer: PeerId) {
        self.advance(now);
        self.drop_peer(peer);
        self.fill_upload_slots();
        self.schedule(now);
    }

    /// The ids of the requests in flight to `peer`.
    fn requests_to(&self, peer: PeerId) -> Vec<RequestId> {
        self.requests
            .iter()
            .filter(|(_, r)| r.peer == peer)
            .map(|(id, _)| *id)
            .collect()
    }

    fn drop_peer(&mut self, peer: PeerId) {
        let ids = self.requests_to(peer);
        for id in ids {
            self.release_request(id);
        }
        if let Some(i) = self.peers.index_of(&peer) {
            self.peer_slots.remove(i);
        }
        if let Some(pe) = self.peers.remove(&peer) {
            self.remove_have(pe.slot);
            self.slots.vacate(pe.slot);
            self.quiet_until[pe.slot as usize] = Duration::ZERO;
            if pe.refused_until.is_some() || pe.retry_at > self.now {
                // The earliest deadline may have been this peer's.
                self.peer_deadline_exact = false;
            }
        }
        self.accepted_per_peer.remove(&peer);
        self.withdraw_offer(peer);
        self.superseed_refusals.retain(|(q, _), _| *q != peer);
        // A partition handed to a peer that left has no copy through it any more.
        let tag = peer.0.wrapping_add(1);
        for t in self.first_taker.iter_mut() {
            if *t == tag {
                *t = 0;
            }
        }
        let ups: Vec<UploadId> = self
            .uploads
            .iter()
            .filter(|(_, u)| u.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in ups {
            self.remove_upload(id);
        }
    }

    fn ban(&mut self, peer: PeerId) {
        // Cancel everything in flight to the peer; verified prefixes stay.
        let ids = self.requests_to(peer);
        for id in ids {
            self.release_request(id);
            self.actions.push_back(Action::Cancel { id });
        }
        self.drop_peer(peer);
        if self.banned.insert(peer) {
            self.actions.push_back(Action::Ban { peer });
        }
        self.fill_upload_slots();
    }

    fn advance(&mut self, now: Duration) {
        if now > self.now {
            self.now = now;
        }
    }

    // ----------------------------------------------------------------------------------------
    // Requests

    /// `received` bytes from the start of request `id`'s range are verified (cumulative).
    /// Counted in whole 16 KiB chunk groups (or up to the blob's end). Unknown ids are ignored.
    pub fn handle_request_progress(&mut self, now: Duration, id: RequestId, received: u64) {
        self.advance(now);
        let size = self.size;
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        let len = req.range.end - req.range.start;
        let mut rec = received.min(len);
        if rec < len || req.range.end != size {
            rec -= rec % CHUNK_GROUP;
        }
        if rec <= req.received {
            return;
        }
        let delta = rec - req.received;
        if req.received == 0 {
            self.unstarted -= 1;
        }
        req.received = rec;
        req.last_progress = now;
        let (peer, block, upto, full) = (req.peer, req.block, req.range.start + rec, rec == len);
        if let Some(pe) = self.peers.get_mut(&peer) {
            pe.bytes_received += delta;
        }
        if full {
            self.handle_request_done(now, id);
        } else {
            self.credit(block, upto, true);
        }
    }

    /// Request `id` delivered its whole range, verified. Unknown ids are ignored.
    pub fn handle_request_done(&mut self, now: Duration, id: RequestId) {
        self.advance(now);
        let Some(req) = self.requests.get(&id) else {
            return;
        };
        let len = req.range.end - req.range.start;
        let fresh = len - req.received;
        let took = now.saturating_sub(req.issued).as_secs_f64();
        let peer = req.peer;
        if let Some(req) = self.requests.get_mut(&id) {
            if req.received == 0 {
                self.unstarted -= 1;
            }
            req.received = len;
        }
        if let Some(pe) = self.peers.get_mut(&peer) {
            pe.bytes_received += fresh;
            pe.failures = 0;
            if took > 0.0 {
                let sample = len as f64 / took;
                pe.rate = if pe.rate == 0.0 {
                    sample
                } else {
                    0.6 * pe.rate + 0.4 * sample
                };
            }
        }
        self.release_request(id);
        self.schedule(now);
    }

    /// Request `id` ended without its whole range. Its verified prefix (as last reported by
    /// progress) is kept. `Error`/`Timeout`: the peer is retried after an exponential backoff;
    /// `Refused`: that partition is not asked from that peer for a while; `BadData`: the peer is
    /// banned ([`Action::Ban`]) and all its requests cancelled. Unknown ids are ignored.
    pub fn handle_request_failed(&mut self, now: Duration, id: RequestId, failure: Failure) {
        self.advance(now);
        let Some(req) = self.release_request(id) else {
            return;
        };
        self.note_failure(now, req.peer, req.block / self.blocks_per_part, failure);
        self.schedule(now);
    }

    fn note_failure(&mut self, now: Duration, peer: PeerId, partition: u32, failure: Failure) {
        match failure {
            Failure::BadData => self.ban(peer),
            Failure::Refused => {
                let memory = self.config.refusal_memory;
                if let Some(pe) = self.peers.get_mut(&peer) {
                    pe.refused.insert(partition);
                    if pe.refused_until.is_none() {
                        pe.refused_until = Some(now + memory);
                    }
                    let d = now + memory;
                    self.peer_deadline = Some(self.peer_deadline.map_or(d, |x| x.min(d)));
                }
            }
            Failure::Error | Failure::Timeout => {
                let (base, max) = (self.config.backoff_base, self.config.backoff_max);
                if let Some(pe) = self.peers.get_mut(&peer) {
                    pe.failures = pe.failures.saturating_add(1);
                    let shift = (pe.failures - 1).min(20);
                    let delay = base.saturating_mul(1u32 << shift).min(max);
                    if pe.retry_at > now {
                        // A backoff the earliest deadline may stand for moves later.
                        self.peer_deadline_exact = false;
                    }
                    pe.retry_at = now + delay;
                    let d = now + delay;
                    self.peer_deadline = Some(self.peer_deadline.map_or(d, |x| x.min(d)));
                }
            }
        }
    }

    fn usable(&self, pe: &Peer, now: Duration) -> bool {
        pe.retry_at <= now
    }

    fn issue(&mut self, now: Duration, peer: PeerId, b: u32) {
        let r = self.block_range(b);
        let start = r.start + self.blocks[b as usize].done;
        if start >= r.end {
            return;
        }
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.requests.insert(
            id,
            Req {
                peer,
                block: b,
                range: start..r.end,
                issued: now,
                last_progress: now,
                received: 0,
            },
        );
        self.unstarted += 1;
        self.blocks[b as usize].reqs.push(id);
        if let Some(pe) = self.peers.get_mut(&peer) {
            pe.inflight += 1;
        }
        self.refresh_part(b / self.blocks_per_part);
        self.actions.push_back(Action::Request {
            id,
            peer,
            range: start..r.end,
        });
    }

    /// Chooses the partition to fetch next from `peer`: partitions already started first, then
    /// rarest-first (random among the first [`Config::random_first`]), random tie-breaks.
    fn pick_partition(&mut self, peer: PeerId) -> Option<u32> {
        let pe = self.peers.get(&peer)?;
        let random_mode = self.completed_parts < self.config.random_first;
        let needed = self.needed.words();
        // Refusals are rare: an empty set is not read at all.
        let refused = (!pe.refused.is_empty()).then(|| pe.refused.words());
        let peer_words = self.slots.words(pe.slot);
        let mut best: Option<(u32, (bool, u32))> = None;
        let mut ties = 0u32;
        for (wi, &nw) in needed.iter().enumerate() {
            let hw = peer_words.map_or(u64::MAX, |b| b[wi]);
            let mut w = nw & hw & !refused.map_or(0, |r| r[wi]);
            let tw = self.touched.words()[wi];
            while w != 0 {
                let bit = w.trailing_zeros();
                let p = wi as u32 * 64 + bit;
                w &= w - 1;
                let untouched = tw & (1 << bit) == 0;
                let rarity = if random_mode {
                    0
                } else {
                    self.avail(p) + self.seed_peers
                };
                let key = (untouched, rarity);
                match &best {
                    Some((_, k)) if key > *k => {}
                    Some((_, k)) if key == *k => {
                        ties += 1;
                        if self.rng.random_range(0..ties) == 0 {
                            best = Some((p, key));
                        }
                    }
                    _ => {
                        best = Some((p, key));
                        ties = 1;
                    }
                }
            }
        }
        best.map(|(p, _)| p)
    }

    fn first_unassigned_block(&self, p: u32) -> Option<u32> {
        (0..self.blocks_per_part)
            .map(|j| p * self.blocks_per_part + j)
            .find(|&b| !self.block_is_done(b) && self.blocks[b as usize].reqs.is_empty())
    }

    /// Hands out requests while limits allow: peers with the fewest requests in flight first,
    /// faster ones first among equals.
    fn schedule(&mut self, now: Duration) {
        if self.is_complete() || self.peers.is_empty() {
            return;
        }
        if self.requests.len() >= self.inflight_cap() {
            return;
        }
        // Peers with a request that has not delivered anything yet (queued behind a busy
        // uploader) get no second one: demand spreads over more sources.
        let mut waiting = std::mem::take(&mut self.scratch.waiting);
        // Only in a big neighbourhood (the request budget below its maximum): with few peers a
        // second, queued request to a peer is what keeps that download pipelined.
        let one_waiting = self.config.one_waiting_per_peer
            && self.inflight_cap() < self.config.max_inflight_total;
        if one_waiting && self.unstarted > 0 {
            waiting.extend(
                self.requests
                    .values()
                    .filter(|r| r.received == 0)
                    .map(|r| r.peer),
            );
        }
        let mut cands = std::mem::take(&mut self.scratch.cands);
        cands.extend(
            self.peers
                .iter()
                .filter(|(id, pe)| {
                    self.usable(pe, now)
                        && pe.inflight < self.config.max_inflight_per_peer
                        && !waiting.contains(id)
                })
                .map(|(id, pe)| (pe.inflight, u64::MAX - pe.rate as u64, *id)),
        );
        // Peers are tried in key order (keys are distinct: they end with the peer id). Most
        // rounds issue one request and need only the first peers in that order, so the order
        // is found lazily: the first few by selection, the rest by one sort when reached.
        let mut ordered = 0;
        if !self.needed.is_empty() {
            let mut progress = true;
            while progress && self.requests.len() < self.inflight_cap() {
                progress = false;
                for i in 0..cands.len() {
                    if self.requests.len() >= self.inflight_cap() {
                        break;
                    }
                    ordered = order_up_to(&mut cands, ordered, i);
                    let peer = cands[i].2;
                    let inflight = self.peers.get(&peer).map_or(usize::MAX, |p| p.inflight);
                    if inflight >= self.config.max_inflight_per_peer || waiting.contains(&peer) {
                        continue;
                    }
                    if let Some(p) = self.pick_partition(peer)
                        && let Some(b) = self.first_unassigned_block(p)
                    {
                        self.issue(now, peer, b);
                        if one_waiting {
                            // The new request has delivered nothing yet either.
                            waiting.push(peer);
                        }
                        progress = true;
                    }
                }
                if self.needed.is_empty() {
                    break;
                }
            }
        }
        if self.needed.is_empty()
            && self.missing_blocks <= self.config.endgame_blocks as u64
            && self.requests.len() < self.inflight_cap()
        {
            if ordered < cands.len() {
                cands[ordered..].sort_unstable();
            }
            self.endgame(now, &cands);
        }
        cands.clear();
        waiting.clear();
        self.scratch.cands = cands;
        self.scratch.waiting = waiting;
    }

    /// The request budget in force: [`Config::inflight_budget`] divided by the connected
    /// peers, within [`Config::min_inflight_total`] and [`Config::max_inflight_total`].
    fn inflight_cap(&self) -> usize {
        let max = self.config.max_inflight_total;
        (self.config.inflight_budget / self.peers.len().max(1))
            .clamp(self.config.min_inflight_total.min(max), max)
    }

    /// Mean throughput of peers with an estimate (None if none has one).
    fn mean_rate(&self) -> Option<f64> {
        let (sum, n) = self
            .peers
            .values()
            .filter(|p| p.rate > 0.0)
            .fold((0.0, 0u32), |(s, n), p| (s + p.rate, n + 1));
        (n > 0).then(|| sum / f64::from(n))
    }

    /// Projected seconds until request `r` finishes at its observed rate (infinite if none).
    fn projected(&self, now: Duration, r: &Req) -> f64 {
        let age = now.saturating_sub(r.issued).as_secs_f64();
        let remaining = (r.range.end - r.range.start - r.received) as f64;
        if r.received == 0 || age <= 0.0 {
            return f64::INFINITY;
        }
        remaining / (r.received as f64 / age)
    }

    /// Endgame: duplicates in-flight requests that an idle peer would likely finish first.
    fn endgame(&mut self, now: Duration, cands: &[(usize, u64, PeerId)]) {
        let mean = self.mean_rate();
        for &(_, _, q) in cands {
            if self.requests.len() >= self.inflight_cap() {
                return;
            }
            let Some(qp) = self.peers.get(&q) else {
                continue;
            };
            if qp.inflight >= self.config.max_inflight_per_peer {
                continue;
            }
            let alt = if qp.rate > 0.0 {
                qp.rate
            } else {
                mean.unwrap_or(0.0)
            };
            let mut best: Option<(f64, u32)> = None;
            for r in self.requests.values() {
                if r.peer == q || self.blocks[r.block as usize].reqs.len() > 1 {
                    continue;
                }
                let p = r.block / self.blocks_per_part;
                if !qp.can_serve(&self.slots, p) {
                    continue;
                }
                let age = now.saturating_sub(r.issued);
                if age < self.config.min_steal_age
                    || (r.received == 0 && age < self.config.stall_steal_age)
                {
                    continue;
                }
                let proj = self.projected(now, r);
                let remaining = (r.range.end - r.range.start - r.received) as f64;
                let alt_time = if alt > 0.0 { remaining / alt } else { 0.0 };
                if proj > 2.0 * alt_time && best.is_none_or(|(bp, _)| proj > bp) {
                    best = Some((proj, r.block));
                }
            }
            if let Some((_, b)) = best {
                self.issue(now, q, b);
            }
        }
    }

    /// Takes work back from requests much slower than an idle peer would be, and gives it to
    /// that peer (the verified prefix is kept; only the rest is re-requested).
    fn rebalance(&mut self, now: Duration) {
        if self.is_complete() || self.requests.is_empty() {
            return;
        }
        // The mean peer rate reads every peer record: found only when a request may be taken
        // back and a candidate peer has no rate of its own yet.
        let mut mean: Option<Option<f64>> = None;
        let mut used: Vec<PeerId> = Vec::new();
        let mut steals: Vec<(RequestId, PeerId)> = Vec::new();
        for (id, r) in &self.requests {
            if self.blocks[r.block as usize].reqs.len() > 1 {
                continue;
            }
            let age = now.saturating_sub(r.issued);
            if age < self.config.min_steal_age {
                continue;
            }
            let remaining = r.range.end - r.range.start - r.received;
            if remaining < CHUNK_GROUP {
                continue;
            }
            if r.received == 0 && age < self.config.stall_steal_age {
                continue;
            }
            let cur = r.received as f64 / age.as_secs_f64();
            let p = r.block / self.blocks_per_part;
            let mut alt_peer: Option<(f64, PeerId)> = None;
            for (qid, q) in self.peers.iter() {
                if *qid == r.peer
                    || q.inflight > 0
                    || !self.usable(q, now)
                    || used.contains(qid)
                    || !q.can_serve(&self.slots, p)
                {
                    continue;
                }
                let rate = if q.rate > 0.0 {
                    q.rate
                } else {
                    mean.get_or_insert_with(|| self.mean_rate())
                        .unwrap_or(f64::MAX)
                };
                if alt_peer.is_none_or(|(br, _)| rate > br) {
                    alt_peer = Some((rate, *qid));
                }
            }
            let Some((alt, q)) = alt_peer else { continue };
            if alt <= cur * self.config.slow_factor {
                continue;
            }
            let gain = if cur > 0.0 {
                remaining as f64 / cur - remaining as f64 / alt
            } else {
                f64::INFINITY
            };
            if gain < self.config.min_steal_age.as_secs_f64() {
                continue;
            }
            used.push(q);
            steals.push((*id, q));
        }
        for (id, q) in steals {
            let Some(req) = self.release_request(id) else {
                continue;
            };
            self.actions.push_back(Action::Cancel { id });
            if let Some(pe) = self.peers.get_mut(&req.peer) {
                pe.slow_strikes += 1;
            }
            if !self.block_is_done(req.block) && self.blocks[req.block as usize].reqs.is_empty() {
                self.issue(now, q, req.block);
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Time

    /// Time passed: fails requests without progress for [`Config::request_timeout`], takes work
    /// back from slow peers, retries peers whose backoff ended, and hands out new requests.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.advance(now);
        if !self.peer_deadline_exact || self.peer_deadline.is_some_and(|d| d <= now) {
            self.walk_peer_deadlines(now);
        } else {
            debug_assert!(
                self.peers
                    .values()
                    .all(|pe| pe.refused_until.is_none_or(|t| t > now)),
                "a refusal memory ended unnoticed"
            );
            debug_assert_eq!(
                self.peer_deadline,
                self.earliest_peer_deadline(now),
                "the earliest peer deadline went stale"
            );
        }
        let timeout = self.config.request_timeout;
        let stale: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, r)| now.saturating_sub(r.last_progress) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(req) = self.release_request(id) {
                self.actions.push_back(Action::Cancel { id });
                self.note_failure(
                    now,
                    req.peer,
                    req.block / self.blocks_per_part,
                    Failure::Timeout,
                );
            }
        }
        if now >= self.last_tick + self.config.tick {
            self.last_tick = now;
            self.rebalance(now);
        }
        self.schedule(now);
        self.make_offers();
    }

    /// Forgets refusals whose memory ended and finds the earliest peer deadline by walking
    /// every peer.
    fn walk_peer_deadlines(&mut self, now: Duration) {
        for pe in self.peers.values_mut() {
            if pe.refused_until.is_some_and(|t| t <= now) {
                pe.refused.clear();
                pe.refused_until = None;
            }
        }
        self.peer_deadline = self.earliest_peer_deadline(now);
        self.peer_deadline_exact = true;
    }

    /// The earliest refusal memory end, or backoff end after `now`, over every peer.
    fn earliest_peer_deadline(&self, now: Duration) -> Option<Duration> {
        self.peers
            .values()
            .flat_map(|pe| [pe.refused_until, Some(pe.retry_at).filter(|&t| t > now)])
            .flatten()
            .min()
    }

    /// When [`Planner::handle_timeout`] should be called next (`None`: no timer needed).
    pub fn poll_timeout(&self) -> Option<Duration> {
        let mut t: Option<Duration> = None;
        let mut consider = |x: Duration| {
            t = Some(t.map_or(x, |y| y.min(x)));
        };
        if !self.requests.is_empty() {
            consider(self.last_tick + self.config.tick);
            if let Some(first) = self.requests.values().map(|r| r.last_progress).min() {
                consider(first + self.config.request_timeout);
            }
        }
        if !self.is_complete()
            && let Some(d) = self.peer_deadline
        {
            consider(d);
        }
        t
    }

    /// Whether [`Planner::poll_action`] has something to hand out. An event that queued no
    /// action changed no timer either, so a shell may skip its poll then.
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    // ----------------------------------------------------------------------------------------
    // Uploads

    fn serves(&self, range: &Range<u64>) -> bool {
        if range.start >= range.end || range.end > self.size {
            return false;
        }
        let first = self.partition_of(range.start);
        let last = self.partition_of(range.end - 1);
        (first..=last).all(|p| self.have.contains(p))
    }

    /// A partition is released once a connected peer has it or we served its full length.
    fn released(&self, p: u32) -> bool {
        let r = self.partition_range(p);
        self.served_bytes[p as usize] >= r.end - r.start || self.avail(p) + self.seed_peers > 0
    }

    /// Whether some partition has no copy anywhere we know of (super-seeding still going on).
    /// The cursor only moves forward: a partition once released stays released.
    fn release_pending(&mut self) -> bool {
        while self.release_cursor < self.n_parts && self.released(self.release_cursor) {
            self.release_cursor += 1;
        }
        self.release_cursor < self.n_parts
    }

    /// Whether super-seeding refuses partition `p` to `peer`: we are a complete seed, some
    /// partition has no copy yet, `p` already has one (a connected peer has it, or we serve or
    /// served it to another connected peer), and, when no connected peer has announced it, this
    /// peer was refused `p` at most [`Config::superseed_patience`] times. Counts the refusal.
    fn superseed_refuses(&mut self, p: u32, peer: PeerId) -> bool {
        if !self.config.super_seeding || !self.is_complete() {
            return false;
        }
        let taker = self.first_taker[p as usize];
        let other_taker = taker != 0 && taker != peer.0.wrapping_add(1);
        let other_upload = self.assigned[p as usize] > 0
            && self
                .uploads
                .values()
                .any(|u| u.partition == p && u.peer != peer);
        let copies = self.avail(p) + self.seed_peers > 0;
        if !((copies || other_taker || other_upload) && self.release_pending()) {
            return false;
        }
        if copies {
            // A connected peer has it: the requester can get it there (or, once every
            // partition has a copy, here).
            return true;
        }
        // Only handed out by us and not announced yet: a peer that keeps asking (the taker
        // may be stuck) is served after `superseed_patience` refusals.
        let n = self.superseed_refusals.entry((peer, p)).or_default();
        *n += 1;
        *n <= self.config.superseed_patience
    }

    fn note_taker(&mut self, p: u32, peer: PeerId) {
        if self.first_taker[p as usize] == 0 {
            self.first_taker[p as usize] = peer.0.wrapping_add(1);
        }
    }

    /// A peer asks us to serve `range`. The decision comes as [`Action::AcceptUpload`] or
    /// [`Action::RefuseUpload`] for the returned id, at once or when a slot frees (queued).
    /// Refused: banned peers, ranges we do not fully have, a full queue, and (super-seeding)
    /// partitions that someone else already has while some partition has no copy yet.
    pub fn handle_upload_request(
        &mut self,
        now: Duration,
        peer: PeerId,
        range: Range<u64>,
    ) -> UploadId {
        self.advance(now);
        let id = UploadId(self.next_upload);
        self.next_upload += 1;
        self.withdraw_offer(peer);
        if self.banned.contains(&peer) || !self.serves(&range) {
            self.actions.push_back(Action::RefuseUpload { id });
            return id;
        }
        let p = self.partition_of(range.start);
        if self.superseed_refuses(p, peer) {
            self.actions.push_back(Action::RefuseUpload { id });
            return id;
        }
        let seq = self.upload_seq;
        self.upload_seq += 1;
        if self.active_uploads < self.upload_slots() {
            self.uploads.insert(
                id,
                Upload {
                    peer,
                    partition: p,
                    active: true,
                    seq,
                    len: range.end - range.start,
                },
            );
            self.assigned[p as usize] += 1;
            self.active_uploads += 1;
            self.note_taker(p, peer);
            *self.accepted_per_peer.entry(peer).or_default() += 1;
            self.bytes_uploaded_started += range.end - range.start;
            self.actions.push_back(Action::AcceptUpload { id });
            return id;
        }
        let queued_from_peer = self
            .upload_queue
            .iter()
            .filter(|u| self.uploads.get(u).is_some_and(|x| x.peer == peer))
            .count();
        if self.upload_queue.len() >= self.config.upload_queue_total
            || queued_from_peer >= self.config.upload_queue_per_peer
        {
            self.actions.push_back(Action::RefuseUpload { id });
            return id;
        }
        self.uploads.insert(
            id,
            Upload {
                peer,
                partition: p,
                active: false,
                seq,
                len: range.end - range.start,
            },
        );
        self.assigned[p as usize] += 1;
        self.upload_queue.push(id);
        id
    }

    /// Whether [`Planner::handle_upload_request`] reads what peers have: only a complete,
    /// super-seeding planner does (it refuses partitions a peer already has). When false, a
    /// shell holding announcements back from this planner ([`Planner::acts_on_announcements`])
    /// may keep holding them across that call: the outcome is the same.
    pub fn upload_requests_read_announcements(&self) -> bool {
        self.config.super_seeding && self.is_complete()
    }

    /// Upload slots in force: [`Config::seed_upload_slots`] once complete.
    pub fn upload_slots(&self) -> usize {
        if self.is_complete() {
            self.config.seed_upload_slots.max(self.config.upload_slots)
        } else {
            self.config.upload_slots
        }
    }

    fn remove_upload(&mut self, id: UploadId) -> Option<Upload> {
        let up = self.uploads.remove(&id)?;
        self.assigned[up.partition as usize] -= 1;
        if up.active {
            self.active_uploads -= 1;
            self.served_bytes[up.partition as usize] += up.len;
        } else {
            self.upload_queue.retain(|u| *u != id);
        }
        Some(up)
    }

    /// Upload `id` finished or was abandoned (also for queued ones the peer cancelled). Frees
    /// its slot for the next queued upload. Unknown ids are ignored.
    pub fn handle_upload_done(&mut self, now: Duration, id: UploadId) {
        self.advance(now);
        if self.remove_upload(id).is_some() {
            self.fill_upload_slots();
        }
    }

    /// Accepts queued uploads while slots are free: rarest partition first, then the peer with
    /// the fewest active uploads from us, then the oldest.
    fn fill_upload_slots(&mut self) {
        while self.active_uploads < self.upload_slots() && !self.upload_queue.is_empty() {
            let mut active_per_peer = Vec::new();
            tally_peers(
                self.uploads.values().filter(|u| u.active).map(|u| u.peer),
                &mut active_per_peer,
            );
            let mut best: Option<(QueueKey, usize)> = None;
            for (i, uid) in self.upload_queue.iter().enumerate() {
                let Some(u) = self.uploads.get(uid) else {
                    continue;
                };
                let copies = self.avail(u.partition) + self.seed_peers;
                let peer_active = count_of(&active_per_peer, u.peer);
                // Continuing a partition this peer already gets from us comes first: the
                // partition then completes (and can be shared on) sooner.
                let fresh = self.first_taker[u.partition as usize] != u.peer.0.wrapping_add(1);
                let served = self.accepted_per_peer.get(&u.peer).copied().unwrap_or(0);
                let key = if self.config.neediest_first {
                    // The peer furthest behind first: the last node to finish sets the time.
                    let progress =
                        (self.peers.get(&u.peer)).map_or(0, |pe| self.slots.count(pe.slot));
                    (fresh, progress, copies, peer_active, served, u.seq)
                } else {
                    (fresh, copies, peer_active, 0, served, u.seq)
                };
                if best.is_none_or(|(k, _)| key < k) {
                    best = Some((key, i));
                }
            }
            let Some((_, i)) = best else { break };
            let id = self.upload_queue.remove(i);
            let Some((p, peer)) = self.uploads.get(&id).map(|u| (u.partition, u.peer)) else {
                continue;
            };
            self.assigned[p as usize] -= 1;
            let refuse = self.superseed_refuses(p, peer);
            self.assigned[p as usize] += 1;
            if refuse {
                self.uploads.remove(&id);
                self.assigned[p as usize] -= 1;
                self.actions.push_back(Action::RefuseUpload { id });
                continue;
            }
            if let Some(u) = self.uploads.get_mut(&id) {
                u.active = true;
                self.bytes_uploaded_started += u.len;
            }
            self.active_uploads += 1;
            self.note_taker(p, peer);
            *self.accepted_per_peer.entry(peer).or_default() += 1;
            self.actions.push_back(Action::AcceptUpload { id });
        }
        self.make_offers();
    }

    /// Partitions we have that a peer with have-set `theirs` lacks (`None`: a seed, 0), counted
    /// word by word; `Planner::slots` keeps this up to date incrementally.
    fn lacking_of(&self, theirs: Option<&[u64]>) -> u32 {
        theirs.map_or(0, |t| {
            (t.iter())
                .zip(self.have.words())
                .map(|(t, m)| (m & !t).count_ones())
                .sum()
        })
    }

    /// Forgets the offer to `peer` (it answered or left), keeping `offer_deadline` exact.
    fn withdraw_offer(&mut self, peer: PeerId) {
        if self.offers.remove(&peer).is_some() {
            self.offer_deadline = self.offers.values().map(|o| o.0).min();
        }
    }

    /// Forgets lapsed offers (their peers are not offered again for a while).
    fn expire_offers(&mut self) {
        let now = self.now;
        if self.offer_deadline.is_some_and(|d| d <= now) {
            let quiet = now + self.config.offer_timeout * 10;
            let quiet_until = &mut self.quiet_until;
            self.offers.retain(|_, &mut (t, slot)| {
                if t > now {
                    return true;
                }
                quiet_until[slot as usize] = quiet;
                false
            });
            self.offer_deadline = self.offers.values().map(|o| o.0).min();
        }
    }

    /// Offers free upload slots (none queued) to peers that lack something we have: those we
    /// serve least first, then the neediest, random among equals.
    fn make_offers(&mut self) {
        self.expire_offers();
        if !self.config.offers || !self.upload_queue.is_empty() || self.have.count() == 0 {
            return;
        }
        // A super-seeding seed does not invite requests: most would be for partitions it
        // refuses while some partition has no copy yet.
        if self.config.super_seeding && self.is_complete() && self.release_pending() {
            return;
        }
        let now = self.now;
        let free = self
            .upload_slots()
            .saturating_sub(self.active_uploads + self.offers.len());
        if free == 0 {
            return;
        }
        // What the passes below read, asked for at once (in the simulator, among thousands of
        // planners, each would otherwise miss the caches line after line).
        self.slots.prefetch_table();
        prefetch_all(&self.quiet_until);
        self.uploads.prefetch();
        self.offers.prefetch();
        // Uploads per peer, queued or active (few: at most the slots plus the queue).
        let mut loads = std::mem::take(&mut self.scratch.loads);
        tally_peers(self.uploads.values().map(|u| u.peer), &mut loads);
        loads.sort_unstable();
        let mut cands = std::mem::take(&mut self.scratch.offer_cands);
        // From the slot table, which holds each peer's id, count and lacking together (the
        // peer records would cost a cache line or two each), in peer order.
        debug_assert_eq!(self.peer_slots.len(), self.peers.len());
        for &slot in &self.peer_slots {
            let (peer, progress, lacking) = self.slots.entry(slot);
            debug_assert_eq!(lacking, self.lacking_of(self.slots.words(slot)));
            if lacking > 0 && self.quiet_until[slot as usize] <= now {
                cands.push((0, progress, 0, peer, slot));
            }
        }
        debug_assert!(cands.is_sorted_by_key(|c| c.3));
        // Offers and loads are ordered by peer too: one merged pass.
        let offered = self.offers.keys();
        let (mut o, mut u) = (0, 0);
        cands.retain_mut(|c| {
            let id = &c.3;
            o += offered[o..].iter().take_while(|q| *q < id).count();
            if offered.get(o) == Some(id) {
                return false;
            }
            u += loads[u..].iter().take_while(|(q, _)| q < id).count();
            c.0 = loads.get(u).filter(|(q, _)| q == id).map_or(0, |(_, n)| *n);
            true
        });
        for c in cands.iter_mut() {
            c.2 = self.rng.random::<u64>();
        }
        // The `free` first in order (keys are distinct: they end with the peer id).
        if free < cands.len() {
            cands.select_nth_unstable(free);
            cands.truncate(free);
        }
        cands.sort_unstable();
        let until = now + self.config.offer_timeout;
        for &(_, _, _, peer, slot) in cands.iter() {
            self.offers.insert(peer, (until, slot));
            self.offer_deadline = Some(self.offer_deadline.map_or(until, |d| d.min(until)));
            self.actions.push_back(Action::Offer { peer });
        }
        cands.clear();
        loads.clear();
        self.scratch.offer_cands = cands;
        self.scratch.loads = loads;
    }

    /// `peer` offered us an upload slot ([`Action::Offer`] on its side). If it has something
    /// we need, a request goes to it now; when our request budget is full, a request that has
    /// delivered nothing yet (queued at a busy peer) is moved to it.
    pub fn handle_peer_offer(&mut self, now: Duration, peer: PeerId) {
        self.advance(now);
        if self.ignores_offer(now, peer) {
            return;
        }
        let full = self.requests.len() >= self.inflight_cap();
        let settle = self.config.offer_timeout * 2;
        let silent = |r: &Req| Self::is_silent(r, now, settle, peer);
        let pick = self
            .pick_partition(peer)
            .and_then(|p| self.first_unassigned_block(p));
        // Movable: silent, not duplicated, and not moved before.
        let waiting = |r: &Req| {
            silent(r)
                && self.blocks[r.block as usize].reqs.len() == 1
                && !self.blocks[r.block as usize].moved
        };
        // The oldest movable request the offering peer can serve: moved to it, with no change
        // to the request budget.
        let offerer = self.peers.get(&peer);
        let movable = self.oldest_request(|r| {
            waiting(r)
                && offerer.is_some_and(|o| o.can_serve(&self.slots, r.block / self.blocks_per_part))
        });
        let (victim, block) = match (full, pick, movable) {
            (false, Some(b), _) => (None, b),
            (_, _, Some((vid, vb))) => (Some(vid), vb),
            (true, Some(b), None) => {
                // Budget full: the oldest movable request makes room for a new block.
                match self.oldest_request(waiting) {
                    Some((vid, _)) => (Some(vid), b),
                    None => return,
                }
            }
            (_, None, None) => {
                // Everything is requested: near the end, the slowest request is duplicated
                // at the offering peer (endgame); the loser is cancelled when one finishes.
                if !full && self.missing_blocks <= self.config.endgame_blocks as u64 {
                    self.endgame_at(now, peer);
                }
                return;
            }
        };
        if let Some(vid) = victim {
            if let Some(req) = self.release_request(vid) {
                self.blocks[req.block as usize].moved = true;
            }
            self.actions.push_back(Action::Cancel { id: vid });
        }
        if !self.block_is_done(block) && self.blocks[block as usize].reqs.is_empty() {
            self.issue(now, peer, block);
        }
    }

    /// Whether [`Planner::handle_peer_offer`] with these arguments would do nothing: we are
    /// complete, the peer is not usable or has its share of our requests, or our request
    /// budget is full with no silent request to move. Announcements held back from a planner
    /// that does not act on them ([`Planner::acts_on_announcements`]) cannot change the
    /// answer, and progress not reported yet (short of a whole request) can only turn it
    /// from false to true, so a shell may skip such an offer, with whatever it holds back
    /// for this planner, and get the same outcome.
    pub fn ignores_offer(&self, now: Duration, peer: PeerId) -> bool {
        if self.is_complete() {
            return true;
        }
        // The usual answer first (a full request budget with no request to move: 94 % of the
        // offers in the simulator), without reading the peer's record, nor the requests when
        // every one has delivered something.
        debug_assert_eq!(
            self.unstarted as usize,
            self.requests.values().filter(|r| r.received == 0).count()
        );
        let settle = self.config.offer_timeout * 2;
        if self.requests.len() >= self.inflight_cap()
            && (self.unstarted == 0
                || !self
                    .requests
                    .values()
                    .any(|r| Self::is_silent(r, now, settle, peer)))
        {
            return true;
        }
        let Some(pe) = self.peers.get(&peer) else {
            return true;
        };
        !self.usable(pe, now) || pe.inflight >= self.config.max_inflight_per_peer
    }

    /// Silent: a request to another peer than `offerer` that has delivered nothing for
    /// `settle` (queued at a busy peer).
    fn is_silent(r: &Req, now: Duration, settle: Duration, offerer: PeerId) -> bool {
        r.received == 0 && now.saturating_sub(r.issued) >= settle && r.peer != offerer
    }

    /// The oldest in-flight request matching `f` (ties: the lower id), with its block.
    fn oldest_request(&self, f: impl Fn(&Req) -> bool) -> Option<(RequestId, u32)> {
        self.requests
            .iter()
            .filter(|(_, r)| f(r))
            .min_by_key(|(id, r)| (r.issued, **id))
            .map(|(id, r)| (*id, r.block))
    }

    /// Endgame at an offering peer: duplicates the in-flight request with the most bytes
    /// left among those the peer can serve and that have no duplicate yet.
    fn endgame_at(&mut self, now: Duration, peer: PeerId) {
        let Some(pe) = self.peers.get(&peer) else {
            return;
        };
        let best = self
            .requests
            .values()
            .filter(|r| {
                r.peer != peer
                    && self.blocks[r.block as usize].reqs.len() == 1
                    && pe.can_serve(&self.slots, r.block / self.blocks_per_part)
            })
            .max_by_key(|r| (r.range.end - r.range.start - r.received, r.block))
            .map(|r| r.block);
        if let Some(b) = best {
            self.issue(now, peer, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;
    const PS: u64 = 64 * KIB;

    fn drain(p: &mut Planner) -> Vec<Action> {
        std::iter::from_fn(|| p.poll_action()).collect()
    }

    /// A block's requests behave as a list in issue order, whichever one goes first.
    #[test]
    fn block_requests_keep_their_order() {
        let mut r = BlockReqs::default();
        assert!(r.is_empty());
        for i in 1..=4 {
            r.push(RequestId(i));
        }
        assert_eq!(r.len(), 4);
        r.remove(RequestId(1));
        r.remove(RequestId(3));
        r.remove(RequestId(9));
        assert_eq!(r.iter().collect::<Vec<_>>(), [RequestId(2), RequestId(4)]);
        r.remove(RequestId(2));
        assert_eq!(r.iter().collect::<Vec<_>>(), [RequestId(4)]);
        assert!(r.more.is_none());
        r.remove(RequestId(4));
        assert!(r.is_empty());
        assert_eq!(r.len(), 0);
        r.push(RequestId(5));
        assert_eq!(r.iter().collect::<Vec<_>>(), [RequestId(5)]);
    }

    fn requests(actions: &[Action]) -> Vec<(RequestId, PeerId, Range<u64>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Request { id, peer, range } => Some((*id, *peer, range.clone())),
                _ => None,
            })
            .collect()
    }

    /// Defaults, but whole-partition requests, no random first picks, and several silent
    /// requests per peer allowed (most tests below count requests to one peer).
    fn cfg() -> Config {
        Config {
            request_size: PS,
            random_first: 0,
            one_waiting_per_peer: false,
            ..Config::default()
        }
    }

    #[test]
    fn the_request_budget_shrinks_with_many_peers() {
        // 112 / 8 peers = 14 requests in flight; 112 / 20 peers -> the floor of 6.
        let mut p = Planner::new(cfg(), 64 * PS, PS, 5);
        for q in 0..8 {
            p.handle_peer_connected(ms(0), PeerId(q), PeerHave::All);
        }
        assert_eq!(p.inflight(), 14);
        let mut p = Planner::new(cfg(), 64 * PS, PS, 5);
        for q in 0..20 {
            p.handle_peer_connected(ms(0), PeerId(q), PeerHave::Partitions(vec![]));
        }
        for q in 0..20 {
            for part in 0..64 {
                p.handle_peer_has(ms(1), PeerId(q), part);
            }
        }
        assert_eq!(p.inflight(), 6);
        assert!(requests(&drain(&mut p)).len() >= 6);
    }

    #[test]
    fn a_second_request_to_a_peer_waits_until_the_first_flows() {
        let c = Config {
            one_waiting_per_peer: true,
            ..cfg()
        };
        let mut p = Planner::new(c, 4 * PS, PS, 5);
        // A big neighbourhood (the rule applies only then): 19 peers with nothing yet.
        for q in 2..21 {
            p.handle_peer_connected(ms(0), PeerId(q), PeerHave::Partitions(vec![]));
        }
        p.handle_peer_connected(ms(0), PeerId(1), PeerHave::All);
        let first = requests(&drain(&mut p));
        assert_eq!(first.len(), 1);
        // The first delivers its first chunk group: the next request is pipelined behind it.
        p.handle_request_progress(ms(1), first[0].0, 16 * KIB);
        p.handle_timeout(ms(2));
        let second = requests(&drain(&mut p));
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].1, PeerId(1));
        assert_eq!(p.inflight(), 2);
    }

    fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    /// Reading a lazily ordered vector position by position, stopping anywhere, gives the
    /// sorted order's prefix; reading it all gives the sorted vector.
    #[test]
    fn lazy_order_matches_a_sort() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for len in 0..40usize {
            for stop in 0..=len {
                let v: Vec<(u32, u64)> = (0..len)
                    .map(|i| (rng.random_range(0..4), i as u64 ^ rng.random::<u64>()))
                    .collect();
                let mut sorted = v.clone();
                sorted.sort_unstable();
                let mut lazy = v;
                let mut ordered = 0;
                for i in 0..stop {
                    ordered = order_up_to(&mut lazy, ordered, i);
                    assert_eq!(lazy[i], sorted[i]);
                }
                assert!(ordered >= stop);
                if ordered < len {
                    lazy[ordered..].sort_unstable();
                }
                assert_eq!(lazy, sorted);
            }
        }
    }

    /// More peers than one 32-bit mask word holds: availability counts them all, a peer
    /// beyond the limit is dropped, and a leaving peer's slot serves the next one.
    #[test]
    fn availability_counts_peers_beyond_one_mask_word() {
        let c = Config {
            max_connected_peers: 70,
            ..cfg()
        };
        let mut p = Planner::new(c, 4 * PS, PS, 1);
        for i in 0..70u64 {
            let parts = if i % 2 == 0 { vec![0, 1] } else { vec![1] };
            p.handle_peer_connected(ms(0), PeerId(i), PeerHave::Partitions(parts));
        }
        assert_eq!(p.availability(0), 35);
        assert_eq!(p.availability(1), 70);
        drain(&mut p);
        p.handle_peer_connected(ms(0), PeerId(100), PeerHave::Partitions(vec![0]));
        let acts = drain(&mut p);
        assert!(
            acts.iter()
                .any(|a| matches!(a, Action::Disconnect { peer } if *peer == PeerId(100)))
        );
        assert_eq!(p.availability(0), 35);
        p.handle_peer_disconnected(ms(1), PeerId(64));
        assert_eq!(p.availability(0), 34);
        p.handle_peer_connected(ms(2), PeerId(200), PeerHave::Partitions(vec![2]));
        assert_eq!(p.availability(2), 1);
        p.handle_peer_has(ms(3), PeerId(69), 3);
        p.handle_peer_has(ms(3), PeerId(200), 3);
        assert_eq!(p.availability(3), 2);
        assert_eq!(p.availability(1), 69);
    }

    /// An announcement given with the peer's slot, alone or in a batch, does what one given by
    /// peer id does; a slot that no longer holds the peer (it left, another took the slot)
    /// falls back to the lookup, and a peer that is gone is ignored.
    #[test]
    fn announcements_by_slot_match_those_by_peer() {
        // 0: by peer; 1: by slot; 2: in batches (`handle_peers_have`, one entry without a slot).
        let run = |mode: u8| {
            let mut p = Planner::new(cfg(), 8 * PS, PS, 5);
            p.handle_peer_connected(ms(0), PeerId(1), PeerHave::Partitions(vec![0]));
            p.handle_peer_connected(ms(0), PeerId(2), PeerHave::Partitions(vec![]));
            let slot1 = p.peer_slot(PeerId(1)).expect("connected");
            let slot2 = p.peer_slot(PeerId(2)).expect("connected");
            assert_ne!(slot1, slot2);
            assert_eq!(p.peer_slot(PeerId(3)), None);
            let mut acts = drain(&mut p);
            let has = |p: &mut Planner, t, batch: &[(PeerId, PeerSlot, u32)]| {
                for &(peer, slot, part) in batch {
                    match mode {
                        0 => p.handle_peer_has(ms(t), peer, part),
                        1 => p.handle_peer_has_in(ms(t), peer, slot, part),
                        _ => {}
                    }
                }
                if mode == 2 {
                    let b: Vec<_> = (batch.iter().enumerate())
                        .map(|(i, &(peer, slot, part))| (peer, (i != 1).then_some(slot), part))
                        .collect();
                    p.handle_peers_have(ms(t), &b);
                }
            };
            has(&mut p, 1, &[(PeerId(2), slot2, 3), (PeerId(1), slot1, 4)]);
            // Peer 1 leaves and peer 3 takes its slot: the stale slot still means peer 1.
            p.handle_peer_disconnected(ms(2), PeerId(1));
            p.handle_peer_connected(ms(2), PeerId(3), PeerHave::Partitions(vec![]));
            assert_eq!(p.peer_slot(PeerId(3)), Some(slot1));
            has(&mut p, 3, &[(PeerId(1), slot1, 5), (PeerId(2), slot1, 6)]);
            acts.extend(drain(&mut p));
            let avail: Vec<u32> = (0..8).map(|q| p.availability(q)).collect();
            (acts, avail)
        };
        let (acts, avail) = run(1);
        assert_eq!((acts.clone(), avail.clone()), run(0));
        assert_eq!((acts.clone(), avail.clone()), run(2));
        assert_eq!(avail, vec![0, 0, 0, 1, 0, 0, 1, 0]);
        assert!(
            acts.iter()
                .any(|a| matches!(a, Action::Request { peer, .. } if *peer == PeerId(2)))
        );
    }

    #[test]
    fn free_slots_are_offered_to_peers_that_lack_our_data() {
        let mut p = Planner::new(cfg(), 2 * PS, PS, 3);
        p.handle_local_have(0..PS);
        drain(&mut p);
        // Peer 1 lacks partition 0, peer 2 has it, peer 3 is a seed: only peer 1 is offered.
        p.handle_peer_connected(ms(0), PeerId(1), PeerHave::Partitions(vec![]));
        p.handle_peer_connected(ms(0), PeerId(2), PeerHave::Partitions(vec![0]));
        p.handle_peer_connected(ms(0), PeerId(3), PeerHave::All);
        drain(&mut p);
        p.handle_timeout(ms(1));
        let offers: Vec<Action> = drain(&mut p)
            .into_iter()
            .filter(|a| matches!(a, Action::Offer { .. }))
            .collect();
        assert_eq!(offers, vec![Action::Offer { peer: PeerId(1) }]);
        // Unanswered, the offer lapses; the peer is not offered again for a while.
        p.handle_timeout(ms(12));
        assert!(!drain(&mut p).contains(&Action::Offer { peer: PeerId(1) }));
        p.handle_timeout(ms(200));
        assert!(drain(&mut p).contains(&Action::Offer { peer: PeerId(1) }));
    }

    #[test]
    fn a_lapsing_offer_wakes_no_timer() {
        let mut p = Planner::new(cfg(), 2 * PS, PS, 3);
        p.handle_local_have(0..PS);
        drain(&mut p);
        p.handle_peer_connected(ms(0), PeerId(1), PeerHave::Partitions(vec![]));
        drain(&mut p);
        p.handle_timeout(ms(1));
        assert!(drain(&mut p).contains(&Action::Offer { peer: PeerId(1) }));
        // Nothing in flight (peer 1 has nothing we need): no timer, not even for the offer.
        assert_eq!(p.poll_timeout(), None);
        // The next event after the lapse frees the slot; peer 1 stays quiet, peer 2 is offered.
        p.handle_peer_connected(ms(20), PeerId(2), PeerHave::Partitions(vec![]));
        p.handle_timeout(ms(20));
        let offers: Vec<Action> = drain(&mut p)
            .into_iter()
            .filter(|a| matches!(a, Action::Offer { .. }))
            .collect();
        assert_eq!(offers, vec![Action::Offer { peer: PeerId(2) }]);
    }

    #[test]
    fn no_offers_while_requests_wait_or_when_disabled() {
        let c = Config {
            upload_slots: 1,
            seed_upload_slots: 1,
            ..cfg()
        };
        let mut p = Planner::new(c.clone(), 2 * PS, PS, 3);
        p.handle_local_have(0..2 * PS);
        drain(&mut p);
        p.handle_peer_connected(ms(0), PeerId(1), PeerHave::Partitions(vec![]));
        p.handle_peer_connected(ms(0), PeerId(2), PeerHave::Partitions(vec![]));
        drain(&mut p);
        // Both slots' worth of requests: one served, one queued: no slot to offer.
        p.handle_upload_request(ms(1), PeerId(1), 0..PS);
        p.handle_upload_request(ms(1), PeerId(2), PS..2 * PS);
        p.handle_timeout(ms(2));
        assert!(
            !drain(&mut p)
                .iter()
                .any(|a| matches!(a, Action::Offer { .. }))
        );
        let off = Config { offers: false, ..c };
        let mut q = Planner::new(off, 2 * PS, PS, 3);
        q.handle_local_have(0..2 * PS);
        q.handle_peer_connected(ms(0), PeerId(1), PeerHave::Partitions(vec![]));
        q.handle_timeout(ms(1));
        assert!(
            !drain(&mut q)
                .iter()
                .any(|a| matches!(a, Action::Offer { .. }))
        );
    }

    #[test]
    fn an_offer_takes_a_request_or_moves_a_queued_one() {
        let c = Config {
            max_inflight_total: 1,
            ..cfg()
        };
        let mut p = Planner::new(c, 4 * PS, PS, 5);
        p.handle_peer_connected(ms(0), PeerId(1), PeerHave::Partitions(vec![0]));
        let first = requests(&drain(&mut p));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].1, PeerId(1));
        // Budget full, the request to peer 1 still silent but young: an offer does nothing.
        p.handle_peer_connected(ms(1), PeerId(2), PeerHave::Partitions(vec![1, 2]));
        drain(&mut p);
        assert!(p.ignores_offer(ms(5), PeerId(2)));
        p.handle_peer_offer(ms(5), PeerId(2));
        assert!(requests(&drain(&mut p)).is_empty());
        // Once it has waited a while, the offer moves it: cancel at peer 1, ask peer 2.
        assert!(!p.ignores_offer(ms(50), PeerId(2)));
        p.handle_peer_offer(ms(50), PeerId(2));
        let acts = drain(&mut p);
        assert!(acts.contains(&Action::Cancel { id: first[0].0 }));
        let moved = requests(&acts);
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].1, PeerId(2));
        assert!(moved[0].2.start >= PS && moved[0].2.end <= 3 * PS);
        // An offer from a peer with nothing we need is ignored.
        p.handle_peer_connected(ms(51), PeerId(3), PeerHave::Partitions(vec![]));
        drain(&mut p);
        p.handle_peer_offer(ms(100), PeerId(3));
        assert!(requests(&drain(&mut p)).is_empty());
    }

    /// An incomplete planner decides an upload request the same whether announcements held
    /// back from it come before or after; a complete super-seeding one reads them.
    #[test]
    fn upload_requests_read_announcements_only_when_super_seeding() {
        let build = || {
            let c = Config {
                max_inflight_total: 1,
                ..cfg()
            };
            let mut p = Planner::new(c, 4 * PS, PS, 3);
            p.handle_local_have(0..PS);
            p.handle_peer_connected(ms(0), PeerId(1), PeerHave::Partitions(vec![1]));
            p.handle_peer_connected(ms(0), PeerId(2), PeerHave::Partitions(vec![]));
            drain(&mut p);
            // The request budget is full: announcements cannot make it act.
            assert!(!p.acts_on_announcements());
            assert!(!p.upload_requests_read_announcements());
            p
        };
        let (mut early, mut late) = (build(), build());
        early.handle_peer_has(ms(1), PeerId(2), 0);
        early.handle_peer_has(ms(1), PeerId(2), 2);
        let a = early.handle_upload_request(ms(2), PeerId(2), 0..PS);
        let acts_early = drain(&mut early);
        let b = late.handle_upload_request(ms(2), PeerId(2), 0..PS);
        let acts_late = drain(&mut late);
        late.handle_peer_has(ms(1), PeerId(2), 0);
        late.handle_peer_has(ms(1), PeerId(2), 2);
        assert_eq!(a, b);
        assert_eq!(acts_early, acts_late);
        assert_eq!(acts_early, vec![Action::AcceptUpload { id: a }]);
        assert!(drain(&mut late).is_empty());

        let mut seed = Planner::new(cfg(), 4 * PS, PS, 3);
        seed.handle_local_have(0..4 * PS);
        assert!(seed.upload_requests_read_announcements());
    }

    #[test]
    fn rarest_partition_first() {
        let c = Config {
            max_inflight_total: 0,
            ..cfg()
        };
        let mut p = Planner::new(c, 4 * PS, PS, 7);
        // Partition 3 is held by one peer only, the others by three.
        p.handle_peer_connected(ms(0), PeerId(1), PeerHave::Partitions(vec![0, 1, 2]));
        p.handle_peer_connected(ms(0), PeerId(2), PeerHave::Partitions(vec![0, 1, 2]));
        p.handle_peer_connected(ms(0), PeerId(3), PeerHave::All);
        assert_eq!(p.availability(3), 1);
        assert_eq!(p.availability(0), 3);
        for _ in 0..10 {
            assert_eq!(p.pick_partition(PeerId(3)), Some(3));
        }
        // Among equally rare partitions, ties are broken at random.
        let picks: BTreeSet<u32> = (0..50)
            .filter_map(|_| p.pick_partition(PeerId(1)))
            .collect();
        assert_eq!(picks, BTreeSet::from([0, 1, 2]));
        // A started partition comes before a rarer untouched one.
        p.touched.insert(0);
        assert_eq!(p.pick_partition(PeerId(3)), Some(0));
    }

    #[test]
    fn seed_completes_at_once_and_serves() {
        let mut p = Planner::new(cfg(), 3 * PS + 100, PS, 1);
        p.handle_local_have(0..3 * PS + 100);
        assert!(p.is_complete());
        assert_eq!(drain(&mut p), vec![Action::Complete]);
        let id = p.handle_upload_request(ms(0), PeerId(1), 3 * PS..3 * PS + 100);
        assert_eq!(drain(&mut p), vec![Action::AcceptUpload { id }]);
    }

    #[test]
    fn refuses_ranges_it_lacks_and_bad_ranges() {
        let mut p = Planner::new(cfg(), 2 * PS, PS, 1);
        p.handle_local_have(0..PS);
        let a = p.handle_upload_request(ms(0), PeerId(1), PS..2 * PS);
        let b = p.handle_upload_request(ms(0), PeerId(1), 0..3 * PS);
        let c = p.handle_upload_request(ms(0), PeerId(1), 5..5);
        let d = p.handle_upload_request(ms(0), PeerId(1), 0..PS);
        assert_eq!(
            drain(&mut p),
            vec![
                Action::RefuseUpload { id: a },
                Action::RefuseUpload { id: b },
                Action::RefuseUpload { id: c },
                Action::AcceptUpload { id: d },
            ]
        );
    }

    #[test]
    fn super_seeding_refuses_partitions_someone_else_has() {
        let c = Config {
            offers: false,
            ..cfg()
        };
        let mut p = Planner::new(c, 3 * PS, PS, 1);
        p.handle_local_have(0..3 * PS);
        drain(&mut p);
        p.handle_peer_connected(ms(0), PeerId(1), PeerHave::Partitions(vec![0]));
        p.handle_peer_connected(ms(0), PeerId(2), PeerHave::Partitions(vec![]));
        // Partition 0 has a copy; 1 and 2 have none: 0 is refused, 1 accepted.
        let a = p.handle_upload_request(ms(1), PeerId(2), 0..PS);
        let b = p.handle_upload_request(ms(1), PeerId(2), PS..2 * PS);
        // Another peer asking for partition 1 while we serve it to peer 2: refused.
        let c = p.handle_upload_request(ms(1), PeerId(1), PS..2 * PS);
        assert_eq!(
            drain(&mut p),
            vec![
                Action::RefuseUpload { id: a },
                Action::AcceptUpload { id: b },
                Action::RefuseUpload { id: c },
            ]
        );
        p.handle_upload_done(ms(2), b);
        let d = p.handle_upload_request(ms(3), PeerId(1), 2 * PS..3 * PS);
        p.handle_upload_done(ms(4), d);
        // Every partition now has a copy: anything is served.
        let e = p.handle_upload_request(ms(5), PeerId(2), 0..PS);
        assert_eq!(
            drain(&mut p),
            vec![
                Action::AcceptUpload { id: d },
                Action::AcceptUpload { id: e }
            ]
        );
    }

    #[test]
    fn upload_slots_queue_and_fairness() {
        let c = Config {
            upload_slots: 1,
            seed_upload_slots: 1,
            upload_queue_total: 2,
            upload_queue_per_peer: 2,
            super_seeding: false,
            ..cfg()
        };
        let mut p = Planner::new(c, 2 * PS, PS, 1);
        p.handle_local_have(0..2 * PS);
        drain(&mut p);
        let a = p.handle_upload_request(ms(0), PeerId(1), 0..PS);
        let b = p.handle_upload_request(ms(0), PeerId(1), PS..2 * PS);
        let c2 = p.handle_upload_request(ms(0), PeerId(2), 0..PS);
        let d = p.handle_upload_request(ms(0), PeerId(3), 0..PS);
        assert_eq!(
            drain(&mut p),
            vec![
                Action::AcceptUpload { id: a },
                Action::RefuseUpload { id: d }
            ]
        );
        assert_eq!(p.queued_uploads(), 2);
        // Peer 1 is served already: peer 2 comes next although it asked later.
        p.handle_upload_done(ms(1), a);
        assert_eq!(drain(&mut p), vec![Action::AcceptUpload { id: c2 }]);
        p.handle_upload_done(ms(2), c2);
        assert_eq!(drain(&mut p), vec![Action::AcceptUpload { id: b }]);
        assert_eq!(p.active_uploads(), 1);
    }

    #[test]
    fn bad_data_bans_for_good_and_keeps_verified_prefix() {
        let mut p = Planner::new(cfg(), 2 * PS, PS, 3);
        p.handle_peer_connected(ms(0), PeerId(9), PeerHave::All);
        let reqs = requests(&drain(&mut p));
        assert_eq!(reqs.len(), 2);
        let (id, _, range) = reqs[0].clone();
        p.handle_request_progress(ms(1), id, 20 * KIB);
        p.handle_request_failed(ms(2), id, Failure::BadData);
        let acts = drain(&mut p);
        assert!(acts.contains(&Action::Ban { peer: PeerId(9) }));
        assert!(acts.contains(&Action::Cancel { id: reqs[1].0 }));
        assert!(p.is_banned(PeerId(9)));
        // Progress is counted in whole chunk groups.
        assert_eq!(p.verified_bytes(), 16 * KIB);
        p.handle_peer_connected(ms(3), PeerId(9), PeerHave::All);
        assert_eq!(drain(&mut p), vec![Action::Ban { peer: PeerId(9) }]);
        // An honest peer gets the rest, starting after the verified prefix.
        p.handle_peer_connected(ms(4), PeerId(10), PeerHave::All);
        let reqs = requests(&drain(&mut p));
        assert!(reqs.iter().all(|(_, peer, _)| *peer == PeerId(10)));
        assert!(
            reqs.iter()
                .any(|(_, _, r)| r.start == range.start + 16 * KIB)
        );
    }

    #[test]
    fn errors_back_off_exponentially() {
        let c = Config {
            max_inflight_per_peer: 1,
            ..cfg()
        };
        let mut p = Planner::new(c, 4 * PS, PS, 3);
        p.handle_peer_connected(ms(0), PeerId(1), PeerHave::All);
        let r = requests(&drain(&mut p));
        p.handle_request_failed(ms(10), r[0].0, Failure::Error);
        assert!(requests(&drain(&mut p)).is_empty());
        assert_eq!(p.poll_timeout(), Some(ms(510)));
        p.handle_timeout(ms(509));
        assert!(requests(&drain(&mut p)).is_empty());
        p.handle_timeout(ms(510));
        let r = requests(&drain(&mut p));
        assert_eq!(r.len(), 1);
        p.handle_request_failed(ms(600), r[0].0, Failure::Timeout);
        drain(&mut p);
        // Second failure in a row: twice the delay.
        assert_eq!(p.poll_timeout(), Some(ms(1600)));
    }

    #[test]
    fn refused_partition_is_not_asked_again_for_a_while() {
        let c = Config {
            max_inflight_per_peer: 1,
            max_inflight_total: 1,
            ..cfg()
        };
        let mut p = Planner::new(c, 2 * PS, PS, 3);
        p.handle_peer_connected(ms(0), PeerId(1), PeerHave::All);
        let r = requests(&drain(&mut p));
        let refused = r[0].2.clone();
        p.handle_request_failed(ms(1), r[0].0, Failure::Refused);
        let r = requests(&drain(&mut p));
        assert_eq!(r.len(), 1);
        assert_ne!(r[0].2, refused, "the other partition is asked instead");
    }

    #[test]
    fn slow_peer_work_is_taken_back_by_an_idle_faster_peer() {
        let c = Config {
            max_inflight_per_peer: 1,
            max_inflight_total: 2,
            ..cfg()
        };
        let mut p = Planner::new(c, 3 * PS, PS, 3);
        p.handle_peer_connected(ms(0), PeerId(1), PeerHave::All);
        p.handle_peer_connected(ms(0), PeerId(2), PeerHave::All);
        let r = requests(&drain(&mut p));
        assert_eq!(r.len(), 2);
        let (fast, slow) = if r[0].1 == PeerId(1) {
            (r[0].clone(), r[1].clone())
        } else {
            (r[1].clone(), r[0].clone())
        };
        // Peer 1 delivers its whole partition in 10 ms, then gets the last partition.
        p.handle_request_done(ms(10), fast.0);
        let r3 = requests(&drain(&mut p));
        assert_eq!(r3.len(), 1);
        p.handle_request_done(ms(20), r3[0].0);
        drain(&mut p);
        // Peer 2 has delivered 16 KiB in 300 ms: far slower. Peer 1 is idle and takes over.
        p.handle_request_progress(ms(300), slow.0, 16 * KIB);
        p.handle_timeout(ms(300));
        let acts = drain(&mut p);
        assert!(acts.contains(&Action::Cancel { id: slow.0 }));
        let r = requests(&acts);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].1, PeerId(1));
        assert_eq!(r[0].2, slow.2.start + 16 * KIB..slow.2.end);
        assert_eq!(p.peer_stats(PeerId(2)).map(|s| s.slow_strikes), Some(1));
    }

    #[test]
    fn endgame_duplicates_a_straggler_and_cancels_the_loser() {
        let c = Config {
            max_inflight_per_peer: 1,
            max_inflight_total: 4,
            slow_factor: 1e9,
            ..cfg()
        };
        let mut p = Planner::new(c, 2 * PS, PS, 5);
        p.handle_peer_connected(ms(0), PeerId(1), PeerHave::All);
        p.handle_peer_connected(ms(0), PeerId(2), PeerHave::All);
        let r = requests(&drain(&mut p));
        assert_eq!(r.len(), 2);
        let (a, b) = (r[0].clone(), r[1].clone());
        p.handle_request_done(ms(5), a.0);
        drain(&mut p);
        // Peer a.1 is idle and fast; b crawls (16 KiB in 400 ms): duplicate the rest of it.
        p.handle_request_progress(ms(400), b.0, 16 * KIB);
        p.handle_timeout(ms(400));
        let acts = drain(&mut p);
        assert!(!acts.iter().any(|x| matches!(x, Action::Cancel { .. })));
        let dup = requests(&acts);
        assert_eq!(dup.len(), 1);
        assert_eq!(dup[0].1, a.1);
        assert_eq!(dup[0].2, b.2.start + 16 * KIB..b.2.end);
        // The duplicate wins; the original is cancelled.
        p.handle_request_done(ms(410), dup[0].0);
        let acts = drain(&mut p);
        assert!(acts.contains(&Action::Cancel { id: b.0 }));
        assert!(acts.contains(&Action::Complete));
        assert!(p.is_complete());
    }

    #[test]
    fn a_new_peer_takes_work_at_once() {
        let c = Config {
            max_inflight_per_peer: 2,
            max_inflight_total: 2,
            ..cfg()
        };
        let mut p = Planner::new(c, 4 * PS, PS, 5);
        p.handle_peer_connected(ms(0), PeerId(1), PeerHave::All);
        let r = requests(&drain(&mut p));
        assert_eq!(r.len(), 2);
        // Peer 1 has sent nothing for long; a new peer appears: one request moves at once.
        p.handle_peer_connected(ms(2500), PeerId(2), PeerHave::All);
        let acts = drain(&mut p);
        let moved = requests(&acts);
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].1, PeerId(2));
        assert!(acts.iter().any(|a| matches!(a, Action::Cancel { .. })));
        assert_eq!(p.inflight(), 2);
    }

    #[test]
    fn connected_peer_limit() {
        let c = Config {
            max_connected_peers: 1,
            ..cfg()
        };
        let mut p = Planner::new(c, PS, PS, 5);
        p.handle_peer_connected(ms(0), PeerId(1), PeerHave::Partitions(vec![]));
        p.handle_peer_connected(ms(0), PeerId(2), PeerHave::All);
        assert_eq!(drain(&mut p), vec![Action::Disconnect { peer: PeerId(2) }]);
        assert_eq!(p.connected_peers(), 1);
    }

    #[test]
    fn same_seed_same_actions() {
        let run = |seed| {
            let mut p = Planner::new(
                Config {
                    random_first: 100,
                    ..cfg()
                },
                64 * PS,
                PS,
                seed,
            );
            p.handle_peer_connected(ms(0), PeerId(1), PeerHave::All);
            requests(&drain(&mut p))
                .into_iter()
                .map(|r| r.2)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn geometry_is_validated_or_clamped() {
        assert!(Planner::try_new(cfg(), 10, 1000, 0).is_err());
        assert!(Planner::try_new(cfg(), u64::MAX, CHUNK_GROUP, 0).is_err());
        let p = Planner::new(cfg(), 10 * PS, 1000, 0);
        assert_eq!(p.partition_size(), CHUNK_GROUP);
        let p = Planner::new(cfg(), 0, PS, 0);
        assert!(p.is_complete());
    }
}
