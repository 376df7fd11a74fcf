//! peas-sched: the IO-less swarm planner of peas.
//!
//! A pure state machine in the style of quinn-proto. The shell (peas-net, or the simulator
//! peas-sim) feeds events through the `handle_*` methods of [`Planner`], executes what
//! [`Planner::poll_action`] hands out, and calls [`Planner::handle_timeout`] at the time given by
//! [`Planner::poll_timeout`]. Time is passed in as a [`Duration`] since an arbitrary start chosen
//! by the shell; randomness comes from a seed passed in. Same events and seed, same actions.
//!
//! [`Downloads`] is a second, smaller state machine over many content items: intents (several
//! waiters share one download), resource hints and node groups.
//!
//! The policies are explained in `docs/scheduling.md`.

mod bits;
mod downloads;
mod planner;
mod slots;
mod sorted_map;

pub use bits::PartitionBits;
pub use downloads::{ContentId, DownloadAction, Downloads, GroupId, IntentId, IntentOutcome};
pub use planner::{GeometryError, MAX_BLOCKS, MAX_PARTITIONS, PeerSlot, PeerStats, Planner};

use std::ops::Range;
use std::time::Duration;

/// The verification granularity of iroh-blobs (a BLAKE3 chunk group): 16 KiB. Every requested
/// range starts at a multiple of it and ends at a multiple of it or at the blob's end.
pub const CHUNK_GROUP: u64 = 16 * 1024;

/// An opaque handle for a remote peer, chosen by the shell. The planner never interprets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// Identifies one outgoing range request; chosen by the planner, unique per planner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Identifies one incoming upload request; chosen by the planner, unique per planner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(pub u64);

/// What a peer said it has when it connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerHave {
    /// A complete seed: every partition.
    All,
    /// These partitions (indices out of range are ignored).
    Partitions(Vec<u32>),
}

/// Why a request ended without delivering its whole range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Failure {
    /// A transport or protocol error: the peer is retried after an exponential backoff.
    Error,
    /// No progress for too long: treated like [`Failure::Error`].
    Timeout,
    /// The peer declined to serve (busy, or super-seeding): no backoff, but this partition is
    /// not asked from this peer again for [`Config::refusal_memory`].
    Refused,
    /// Data failed BLAKE3 verification: the peer is banned and never used again.
    BadData,
}

/// What the planner wants the shell to do. Handed out by [`Planner::poll_action`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Fetch `range` of the blob from `peer`. `range.start` is a multiple of [`CHUNK_GROUP`];
    /// `range.end` is a multiple of it or the blob size; the range lies within one partition.
    Request {
        /// Handle to report progress, completion or failure with.
        id: RequestId,
        /// Who to ask.
        peer: PeerId,
        /// Byte range of the blob.
        range: Range<u64>,
    },
    /// Stop the request `id`; the planner has already forgotten it (no further event needed,
    /// events for it are ignored). Bytes verified before the cancel stay counted.
    Cancel {
        /// The request to stop.
        id: RequestId,
    },
    /// Start serving the upload `id` now.
    AcceptUpload {
        /// The upload to serve.
        id: UploadId,
    },
    /// Decline the upload `id`; the planner has already forgotten it.
    RefuseUpload {
        /// The upload to decline.
        id: UploadId,
    },
    /// Never talk to `peer` again (it served data that failed verification). Emitted once per
    /// ban, and again if the banned peer connects again.
    Ban {
        /// The banned peer.
        peer: PeerId,
    },
    /// Close the connection to `peer` (over the connected-peer limit).
    Disconnect {
        /// The peer to drop.
        peer: PeerId,
    },
    /// We have a free upload slot and something `peer` lacks: tell it, so it may send us a
    /// request now (a hint; it may ignore it). Answered by [`Planner::handle_peer_offer`] on
    /// the peer's side.
    Offer {
        /// The peer invited to request.
        peer: PeerId,
    },
    /// We now have (verified) this partition: tell connected peers.
    Announce {
        /// Partition index.
        partition: u32,
    },
    /// The whole blob is verified locally. Emitted once.
    Complete,
}

/// Limits and tunables of a [`Planner`]. Every field has a sensible [`Default`].
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Most peers connected at once; a peer connecting beyond it gets [`Action::Disconnect`].
    /// The planner keeps a mask of these peers per partition: 4 bytes per partition for every
    /// 32 of them.
    pub max_connected_peers: usize,
    /// Most outgoing requests in flight at once, over all peers (the budget with few peers).
    pub max_inflight_total: usize,
    /// Fewest requests in flight the budget allows, with many peers.
    pub min_inflight_total: usize,
    /// Requests in flight at once: this divided by the connected peers, within
    /// [`Config::min_inflight_total`] and [`Config::max_inflight_total`] (112: 16 with up to
    /// 7 peers, 6 with 19 or more). Many peers mean busy uploaders, where extra requests only
    /// wait in queues and hide demand from idle ones.
    pub inflight_budget: usize,
    /// Most outgoing requests in flight to one peer.
    pub max_inflight_per_peer: usize,
    /// Most uploads served at once.
    pub upload_slots: usize,
    /// Most uploads served at once while we are a complete seed (a seed has no downloads
    /// competing for its link, and the origin's upload is the swarm's scarcest resource).
    pub seed_upload_slots: usize,
    /// Most uploads waiting for a slot, over all peers (beyond: refused).
    pub upload_queue_total: usize,
    /// Most uploads waiting for a slot from one peer (beyond: refused).
    pub upload_queue_per_peer: usize,
    /// Largest request, in bytes; rounded up to a multiple of [`CHUNK_GROUP`]. A partition is
    /// fetched as `ceil(partition_size / request_size)` blocks.
    pub request_size: u64,
    /// A request without progress for this long fails as [`Failure::Timeout`].
    pub request_timeout: Duration,
    /// First retry delay after a failure; doubles per consecutive failure.
    pub backoff_base: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
    /// How long a [`Failure::Refused`] partition is not asked again from that peer.
    pub refusal_memory: Duration,
    /// Period of the housekeeping tick (timeouts, slow-peer checks) while work is in flight.
    pub tick: Duration,
    /// A request is taken back when another idle peer is expected to be this many times faster.
    pub slow_factor: f64,
    /// A request is not judged slow before it is this old.
    pub min_steal_age: Duration,
    /// A request without any progress (typically queued behind a busy uploader) is only taken
    /// back after this long: moving queued work around too eagerly starves it.
    pub stall_steal_age: Duration,
    /// The first this-many partitions are chosen at random rather than rarest-first.
    pub random_first: u32,
    /// A complete seed refuses partitions that another peer already has or is getting from it,
    /// as long as some partition has no copy yet (super-seeding).
    pub super_seeding: bool,
    /// Super-seeding refuses one peer a partition that no connected peer has announced (only
    /// handed out by us) at most this many times; then it is served, so a stuck taker cannot
    /// block the swarm.
    pub superseed_patience: u32,
    /// At most one request per peer that has delivered nothing yet: a second request goes to a
    /// peer only once the first is flowing. Applies only while the request budget is below
    /// [`Config::max_inflight_total`] (many peers); with few peers the queued second request
    /// keeps each download pipelined.
    pub one_waiting_per_peer: bool,
    /// Queued uploads go to the peer with the fewest partitions first (before rarity); when
    /// false, the rarest partition goes first and the neediest peer breaks ties.
    pub neediest_first: bool,
    /// Offer free upload slots to peers that lack something we have ([`Action::Offer`]) when no
    /// request is queued.
    pub offers: bool,
    /// An offer not answered by a request within this long frees its slot for another peer,
    /// and that peer is not offered again for ten times as long. Checked at the planner's
    /// next event: lapsing wakes no timer (an uploader with a free slot hears of requests,
    /// finished uploads and new partitions often enough).
    pub offer_timeout: Duration,
    /// Endgame (duplicate in-flight requests) is allowed once at most this many blocks are
    /// missing and none is unrequested.
    pub endgame_blocks: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_connected_peers: 32,
            max_inflight_total: 16,
            min_inflight_total: 6,
            inflight_budget: 112,
            max_inflight_per_peer: 2,
            upload_slots: 8,
            seed_upload_slots: 8,
            upload_queue_total: 64,
            upload_queue_per_peer: 2,
            request_size: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            refusal_memory: Duration::from_secs(1),
            tick: Duration::from_millis(100),
            slow_factor: 3.0,
            min_steal_age: Duration::from_millis(200),
            stall_steal_age: Duration::from_secs(2),
            random_first: 4,
            super_seeding: true,
            superseed_patience: 4,
            endgame_blocks: 16,
            offers: true,
            offer_timeout: Duration::from_millis(10),
            neediest_first: false,
            one_waiting_per_peer: true,
        }
    }
}

/// Asks the processor for every cache line of `v` at once (a hint: reads nothing), before a
/// pass over it whose loads would otherwise miss one line after another.
pub(crate) fn prefetch_all<T>(v: &[T]) {
    let per_line = (64 / std::mem::size_of::<T>().max(1)).max(1);
    for i in (0..v.len()).step_by(per_line) {
        prefetch_index::prefetch_index(v, i);
    }
    if let Some(last) = v.len().checked_sub(1) {
        prefetch_index::prefetch_index(v, last);
    }
}
