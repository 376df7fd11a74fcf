//! peas-sim: a deterministic discrete-event simulator of a peas swarm.
//!
//! Every simulated node runs the real [`peas_sched::Planner`]. The network is a fluid model:
//! each node has an upload and a download capacity (bytes/s) shared among its active transfers
//! (see [`Sim`] for the sharing rule), every message takes one link latency, and a request
//! therefore costs a round trip before data flows; a receiver reports each transfer's first
//! 128 KiB to its planner, as peas-net does every 128 KiB. Nodes may join late, be slow, or lie
//! (serve data that fails verification at the first 16 KiB chunk group); the origin may leave
//! once every partition has another copy. Same [`SimConfig`], same [`SimReport`], with one
//! thread or two ([`SimConfig::announcement_thread`], [`SimConfig::parallel_halves`]).
//!
//! What is modelled and what is not is explained in `docs/scheduling.md`.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::{Deref, DerefMut, Range};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

mod queue;

use queue::EventQueue;

use peas_sched::{
    Action, CHUNK_GROUP, Config, Failure, PeerHave, PeerId, PeerSlot, Planner, RequestId, UploadId,
};
use prefetch_index::prefetch_index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One mebibyte per second, in bytes per second.
pub const MIB: f64 = 1024.0 * 1024.0;

/// Parameters of one simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Downloaders (the origin comes on top).
    pub nodes: usize,
    /// Blob size in bytes.
    pub size: u64,
    /// Partition size in bytes (a multiple of 16 KiB).
    pub partition_size: u64,
    /// Largest piece, the unit nodes announce and request (peas: `peas_proto::MAX_PIECE_SIZE`,
    /// 1 MiB): the planners work on pieces of `min(partition_size, piece_size)` bytes.
    pub piece_size: u64,
    /// Upload capacity of a normal node, bytes/s.
    pub upload: f64,
    /// Download capacity of a normal node, bytes/s.
    pub download: f64,
    /// Upload capacity of the origin, bytes/s.
    pub origin_upload: f64,
    /// One-way latency of every link.
    pub latency: Duration,
    /// Fraction of downloaders whose capacities are divided by `slow_factor`.
    pub slow_fraction: f64,
    /// Capacity divisor of slow nodes.
    pub slow_factor: f64,
    /// Number of downloaders that serve bad data.
    pub lying_nodes: usize,
    /// The origin leaves as soon as every partition has a copy on another honest node.
    pub origin_leaves_after_copy: bool,
    /// Fraction of downloaders joining late, uniformly within the first half of the bound.
    pub late_join_fraction: f64,
    /// Peers a node dials when it joins (more may dial it, up to `max_peers`).
    pub initial_peers: usize,
    /// Most peers per node.
    pub max_peers: usize,
    /// Seed of every random choice (topology, roles, planners).
    pub seed: u64,
    /// Planner configuration of every node.
    pub planner: Config,
    /// Print a timeline (one line per simulated `trace` interval) to stderr.
    pub trace: Option<Duration>,
    /// Safety limit on processed events.
    pub max_events: u64,
    /// Print every action of this node to stderr (debugging).
    pub log_node: Option<u32>,
    /// Re-share around nodes that gained capacity after a change (closer to global max-min,
    /// about twice the cost).
    pub second_round: bool,
    /// Hold announcements back for a planner that cannot act on them and deliver them just
    /// before its next call (same outcome, far fewer cache misses); false delivers each at once.
    pub hold_back_announcements: bool,
    /// Let planners that cannot act on announcements take them in on a second thread while
    /// the simulation goes on (same outcome: they commute, and whatever a planner has not
    /// taken in yet it takes in before the simulator calls it). Takes a second core.
    pub announcement_thread: bool,
    /// What lets the halves run in parallel (see `docs/scheduling.md`, Known gaps): the
    /// nodes form two halves (even and odd indices), and transfers between the halves get
    /// their rates only at the end of each window of this length (at most the latency, so
    /// that within a window neither half affects the other): they start at rate 0, keep
    /// their rates when something changes around them, and what one end of such a transfer
    /// frees reaches the other end at the window's end, where only the sides at which such
    /// a transfer started or ended are re-shared (those where one started as one group, the
    /// others as another). Transfers within a half are re-shared at once, as without a
    /// window. `None`: every transfer at once.
    pub window: Option<Duration>,
    /// With a window: run the two halves' events of each window on two threads (the same
    /// results as one after the other, sooner on two cores).
    pub parallel_halves: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 16,
            size: 1 << 30,
            partition_size: 4 << 20,
            piece_size: 1 << 20,
            upload: 100.0 * MIB,
            download: 100.0 * MIB,
            origin_upload: 100.0 * MIB,
            latency: Duration::from_millis(1),
            slow_fraction: 0.0,
            slow_factor: 10.0,
            lying_nodes: 0,
            origin_leaves_after_copy: false,
            late_join_fraction: 0.0,
            initial_peers: 16,
            max_peers: 32,
            seed: 1,
            planner: Config::default(),
            trace: None,
            max_events: 2_000_000_000,
            log_node: None,
            second_round: false,
            hold_back_announcements: true,
            announcement_thread: false,
            window: None,
            parallel_halves: false,
        }
    }
}

/// Results of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct SimReport {
    /// Downloaders.
    pub nodes: usize,
    /// Blob size.
    pub size: u64,
    /// Partition size.
    pub partition_size: u64,
    /// Piece size the planners worked on.
    pub piece_size: u64,
    /// Time the last honest downloader completed (or the end of the run), seconds.
    pub completion_s: f64,
    /// Mean completion time of the honest downloaders that completed, seconds.
    pub mean_completion_s: f64,
    /// Kumar–Ross lower bound for the run's capacities, seconds.
    pub bound_s: f64,
    /// `completion_s / bound_s`.
    pub ratio: f64,
    /// Bytes the origin uploaded.
    pub origin_egress_bytes: u64,
    /// Honest downloaders that completed.
    pub completed_nodes: usize,
    /// Honest downloaders (not lying).
    pub honest_nodes: usize,
    /// Bytes a node received from a lying node after it had verified a bad chunk group from it.
    pub bytes_accepted_from_liars_after_first_bad: u64,
    /// Bytes received in transfers that a node cancelled or that failed (wasted bandwidth).
    pub wasted_bytes: u64,
    /// Requests issued over all nodes.
    pub requests: u64,
    /// Events processed.
    pub events: u64,
    /// Events processed by kind, in the order of [`EVENT_KINDS`] (where simulation time goes).
    pub events_by_kind: [u64; 10],
    /// Whether the origin left during the run.
    pub origin_left: bool,
    /// Whether the run stopped at its safety limit instead of completing.
    pub hit_limit: bool,
    /// Completion time of every downloader `1..=N` in seconds (`None`: did not complete).
    pub node_completion_s: Vec<Option<f64>>,
    /// Downloaders that are slow (capacity divided by the slow factor).
    pub slow_nodes: Vec<usize>,
    /// Downloaders that lie.
    pub lying_nodes: Vec<usize>,
}

impl SimReport {
    /// The report as one JSON object.
    pub fn to_json(&self, wall_s: f64, lying: bool) -> serde_json::Value {
        let mut v = serde_json::json!({
            "nodes": self.nodes,
            "size": self.size,
            "partition_size": self.partition_size,
            "piece_size": self.piece_size,
            "completion_s": self.completion_s,
            "mean_completion_s": self.mean_completion_s,
            "bound_s": self.bound_s,
            "ratio": self.ratio,
            "origin_egress_bytes": self.origin_egress_bytes,
            "origin_egress_x": self.origin_egress_bytes as f64 / self.size.max(1) as f64,
            "completed_nodes": self.completed_nodes,
            "honest_nodes": self.honest_nodes,
            "wasted_bytes": self.wasted_bytes,
            "requests": self.requests,
            "events": self.events,
            "events_by_kind": EVENT_KINDS
                .iter()
                .zip(self.events_by_kind)
                .map(|(k, n)| ((*k).to_string(), serde_json::Value::from(n)))
                .collect::<serde_json::Map<_, _>>(),
            "origin_left": self.origin_left,
            "hit_limit": self.hit_limit,
            "wall_s": wall_s,
        });
        if lying && let Some(o) = v.as_object_mut() {
            o.insert(
                "bytes_accepted_from_liars_after_first_bad".into(),
                self.bytes_accepted_from_liars_after_first_bad.into(),
            );
        }
        v
    }
}

/// Kumar–Ross bound: `max(F/u_s, F/min d_i, N·F/(u_s + Σ u_i))`, in seconds.
pub fn kumar_ross_bound(size: u64, origin_up: f64, ups: &[f64], downs: &[f64]) -> f64 {
    let f = size as f64;
    let dmin = downs.iter().copied().fold(f64::INFINITY, f64::min);
    let total_up: f64 = origin_up + ups.iter().sum::<f64>();
    let n = ups.len() as f64;
    (f / origin_up).max(f / dmin).max(n * f / total_up)
}

type Ns = u64;

fn ns(d: Duration) -> Ns {
    d.as_nanos() as Ns
}

fn dur(t: Ns) -> Duration {
    Duration::from_nanos(t)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Join {
        node: u32,
    },
    /// A request (for the byte range `range`) arrives at its uploader `src`.
    ReqArrive {
        src: u32,
        dst: u32,
        req: u64,
        range: (u64, u64),
    },
    Refused {
        dst: u32,
        req: u64,
    },
    FlowEnd {
        flow: u32,
        ver: u32,
    },
    /// The last byte of request `req` reaches `dst`; `bad` bytes of it were bad (a liar's).
    DataDone {
        dst: u32,
        req: u64,
        bad: u32,
    },
    /// `dst` cancelled its request `req`: the cancel arrives at the uploader `src`.
    CancelArrive {
        src: u32,
        dst: u32,
        req: u64,
    },
    Have {
        from: u32,
        part: u32,
    },
    Offer {
        from: u32,
        to: u32,
    },
    Timer {
        node: u32,
        ver: u32,
    },
}

/// A transfer's first progress report ([`PROGRESS_STEP`]), due at its receiver's planner at
/// `(at, seq)` in event order. Not an event in the queue: the report never makes the planner
/// act, so it is handed over just before the receiver's next call (see [`Cx::planner_mut`]).
#[derive(Debug, Clone, Copy)]
struct Report {
    at: Ns,
    /// The sequence number the report would have had as an event (ties at `at`).
    seq: u64,
    /// The transfer, while it lasts (`u32::MAX` once it ended after the report was due).
    flow: u32,
    req: u64,
}

#[derive(Debug)]
struct ReqState {
    peer: u32,
    /// It reached its uploader (without a window; with one, the requester cannot know).
    arrived: bool,
    flow: Option<u32>,
}

#[derive(Debug)]
struct Node {
    joined: bool,
    liar: bool,
    join_at: Ns,
    done_at: Option<Ns>,
    timer: Option<Ns>,
    timer_ver: u32,
    reqs: HashMap<u64, ReqState, IdHash>,
    /// Uploads by id: the requester, its request id and the range.
    ups: HashMap<u64, (u32, u64, (u64, u64)), IdHash>,
    /// When this node learned that a given peer lies: it verified a bad chunk group from it
    /// (bad data of a request it had already cancelled teaches it nothing).
    bad_from: HashMap<u32, Ns>,
    /// First progress reports of its downloads not handed to its planner yet.
    reports: Vec<Report>,
    /// With a window: announcements it sent (each written to its log as it is sent, see the
    /// `Have` event).
    announced: u32,
}

/// Hashing of request and upload ids (small sequential integers, not attacker-chosen): one
/// multiplication instead of SipHash. Nothing iterates these maps in an order that matters.
type IdHash = BuildHasherDefault<IdHasher>;

/// See [`IdHash`].
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A node's planner and how far it has taken in each peer's announcements: the part of a node
/// that the announcement thread ([`SimConfig::announcement_thread`]) may touch.
#[derive(Debug)]
struct Slot {
    planner: Planner,
    /// Per connected peer: how many of its announcements (entries of [`Shared::log`]) the
    /// planner has been given, and the peer's slot in the planner once known (announcements
    /// given with it need no lookup of the peer).
    seen: Vec<Seen>,
    /// Whose arrival counts ([`Shared::arrived`]) the planner reads: its node's half with a
    /// window, else 0.
    half: usize,
}

/// An announcement as [`Planner::handle_peers_have`] takes it: the announcing peer, its slot
/// in the planner if known, and the partition.
type Announced = (PeerId, Option<PeerSlot>, u32);

/// See [`Slot::seen`].
#[derive(Debug)]
struct Seen {
    /// The announcing peer (a node index).
    peer: u32,
    /// How many of its announcements the planner has been given.
    taken: u32,
    /// Its slot in the planner (`None` until the planner knows the peer).
    slot: Option<PeerSlot>,
}

impl Slot {
    /// Gives the planner every announcement of its peers that arrived since it last took them
    /// in (announcer by announcer; for a planner that cannot act on them their order does not
    /// matter, and one that can gets each as it arrives). The announcements are gathered
    /// first (`batch`: scratch space), so that the reads of the peers' logs overlap, then
    /// given to the planner in one call.
    fn take_in(&mut self, shared: &Shared, now: Duration, batch: &mut Vec<Announced>) {
        batch.clear();
        let arrived = &shared.arrived[self.half];
        // The logs with new entries are read ahead: their reads overlap.
        for s in self.seen.iter() {
            if arrived[s.peer as usize].load(Ordering::Relaxed) != s.taken {
                prefetch_index(&shared.log, shared.log_index(s.peer, s.taken));
            }
        }
        for s in self.seen.iter_mut() {
            gather(&self.planner, s, arrived, shared, batch);
        }
        self.planner.handle_peers_have(now, batch);
    }

    /// [`Slot::take_in`] for one peer, `announcer` (none if it is no longer a peer).
    fn take_in_of(
        &mut self,
        announcer: u32,
        shared: &Shared,
        now: Duration,
        batch: &mut Vec<Announced>,
    ) {
        batch.clear();
        if let Some(s) = self.seen.iter_mut().find(|s| s.peer == announcer) {
            gather(&self.planner, s, &shared.arrived[self.half], shared, batch);
        }
        self.planner.handle_peers_have(now, batch);
    }
}

/// Adds to `batch` the announcements of the peer `s` stands for that arrived since the
/// planner last took them in (`arrived`: the arrival counts its node reads), and counts them
/// as taken.
fn gather(
    planner: &Planner,
    s: &mut Seen,
    arrived: &[AtomicU32],
    shared: &Shared,
    batch: &mut Vec<Announced>,
) {
    let n = arrived[s.peer as usize].load(Ordering::Acquire);
    if s.taken == n {
        return;
    }
    let peer = PeerId(u64::from(s.peer));
    if s.slot.is_none() {
        s.slot = planner.peer_slot(peer);
    }
    let log = &shared.log[shared.log_index(s.peer, s.taken)..shared.log_index(s.peer, n)];
    batch.extend(
        log.iter()
            .map(|p| (peer, s.slot, p.load(Ordering::Relaxed))),
    );
    s.taken = n;
}

/// What the simulator shares with the announcement thread, and the two halves with each
/// other ([`SimConfig::window`]). Announcements are not delivered one by one: an announcer's
/// arrive in its log, and a planner takes them in (see [`Slot::take_in`]) before its next
/// call, or earlier on the announcement thread.
#[derive(Debug)]
struct Shared {
    slots: Box<[Mutex<Slot>]>,
    /// Per node: the pieces it announced, in the order the announcements arrive (a node
    /// announces a piece once, and its announcements arrive in the order sent). One array,
    /// `log_stride` entries per node (see [`Shared::log_index`]): where an entry is takes no
    /// read to find.
    log: Box<[AtomicU32]>,
    /// Entries of `log` per node: the number of pieces.
    log_stride: usize,
    /// Per half of the receivers (with a window; without, all in the first) and per node: how
    /// many of its announcements have arrived there (valid entries of `log`).
    arrived: [Box<[AtomicU32]>; 2],
    /// Per node: announcements may have arrived that its planner has not taken in, and it
    /// cannot act on them (set by the simulator when it holds one back, cleared by the
    /// simulator when it brings the planner up to date: the announcement thread touches a
    /// planner only while this is set).
    unseen: Box<[AtomicBool]>,
    /// Per node: entries of `backlog` for it that the announcement thread has handled
    /// (compared with [`Half::posted`]).
    handled: Box<[AtomicU32]>,
    /// Announcements for the announcement thread to take in: (receiver, announcer).
    backlog: Mutex<Vec<(u32, u32)>>,
    /// Set after nodes were added to `backlog` (the thread polls this, not the lock).
    ready: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    /// Where `node`'s `i`-th announcement is in [`Shared::log`].
    fn log_index(&self, node: u32, i: u32) -> usize {
        node as usize * self.log_stride + i as usize
    }
}

/// Locks a slot (a poisoned lock means the announcement thread panicked: a bug).
fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    slot.lock().expect("the announcement thread panicked")
}

/// A locked planner.
struct PlannerRef<'a>(MutexGuard<'a, Slot>);

impl Deref for PlannerRef<'_> {
    type Target = Planner;
    fn deref(&self) -> &Planner {
        &self.0.planner
    }
}

impl DerefMut for PlannerRef<'_> {
    fn deref_mut(&mut self) -> &mut Planner {
        &mut self.0.planner
    }
}

/// The announcement thread: gives the planners handed to it the announcements of the peer
/// named with each (they cannot act on announcements, so this is bookkeeping only), until
/// told to stop. One announcer per entry: going through all of a planner's peers for each
/// announcement read about 30 peers' counters per announcement taken in.
fn take_in_background(shared: &Shared) {
    let mut batch = Vec::new();
    let mut announced = Vec::new();
    let mut idle = 0u32;
    loop {
        // Read before swapping: spinning on a swap would keep the line from the simulator.
        if shared.ready.load(Ordering::Relaxed) && shared.ready.swap(false, Ordering::Acquire) {
            std::mem::swap(
                &mut *shared.backlog.lock().expect("the simulator panicked"),
                &mut batch,
            );
            for (x, announcer) in batch.drain(..) {
                if_still_held(shared, x, |slot| {
                    slot.take_in_of(announcer, shared, Duration::ZERO, &mut announced);
                });
                shared.handled[x as usize].fetch_add(1, Ordering::Release);
            }
            idle = 0;
        } else if shared.stop.load(Ordering::Acquire) {
            return;
        } else if idle < 4096 {
            idle += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// What a thread of a window on two threads does while it waits for the other (or for the
/// window's end): it takes in the announcements held back for the planners of `held`, as the
/// announcement thread does, so that the planners' next calls find little left to take in.
/// Stops when `busy` says there is other work, leaving the rest in `held`.
fn take_in_held(
    shared: &Shared,
    held: &mut Vec<u32>,
    batch: &mut Vec<Announced>,
    busy: impl Fn() -> bool,
) {
    while !busy() {
        let Some(x) = held.pop() else {
            return;
        };
        if_still_held(shared, x, |slot| {
            slot.take_in(shared, Duration::ZERO, batch)
        });
    }
}

/// Runs `take_in` on node `x`'s planner (locked) if announcements are still held back for it
/// ([`Shared::unseen`]): the intake of the announcement thread and of a waiting thread. Once
/// the flag is cleared, the simulator has brought the planner up to date, and it may act on
/// the next announcements: they are no longer this intake's.
///
/// The intake runs at the time of no call (`Duration::ZERO`): these planners only count what
/// peers have. (A planner may have actions queued that the simulator has not polled yet: a
/// call that reads no announcements was made with some still held.)
fn if_still_held(shared: &Shared, x: u32, take_in: impl FnOnce(&mut Slot)) {
    let mut slot = lock(&shared.slots[x as usize]);
    if shared.unseen[x as usize].load(Ordering::Acquire) {
        let had = slot.planner.has_actions();
        take_in(&mut slot);
        debug_assert!(
            had || !slot.planner.has_actions(),
            "a held-back announcement acted"
        );
    }
}

/// A node's transfers, kept apart from its planner so that the rate re-sharing, which runs
/// around every transfer start and end, touches a few compact arrays instead of the large
/// per-node records (capacities are in [`Half::sides`]).
///
/// Each transfer is listed with the node at its other end: the rate re-sharing, which reads
/// both ends of every transfer it gathers, then finds them without another read.
#[derive(Debug, Default)]
struct Nic {
    /// (transfer, receiver) of the node's uploads.
    up_flows: Vec<(u32, u32)>,
    /// (transfer, sender) of the node's downloads.
    down_flows: Vec<(u32, u32)>,
}

/// One side of a node's link (its upload or its download, see [`side`]), in an array of its
/// own: the rate re-sharing reads the far end of every transfer it touches.
#[derive(Debug, Default, Clone, Copy)]
struct Side {
    cap: f64,
    /// Sum of the rates of the side's transfers, kept up to date with every rate change.
    used: f64,
}

#[derive(Debug, Default, Clone)]
#[repr(C)]
struct Flow {
    // What the rate re-sharing and an end event read first, together.
    src: u32,
    dst: u32,
    alive: bool,
    bad: bool,
    /// Whether the receiver's first progress report is scheduled.
    progress: bool,
    /// When that report is due while it is pending ([`Report`]; `Ns::MAX`: none): advancing
    /// the transfer past it stops there first, as handling it as an event did.
    report_at: Ns,
    rate: f64,
    total: f64,
    done: f64,
    last: Ns,
    /// Time of the FlowEnd event pending for this flow (`Ns::MAX`: none).
    sched: Ns,
    /// Bytes done at `snap_at`, the last change of rate: what the receiver's half reads of
    /// a transfer from the other half ([`SimConfig::window`]).
    snap_done: f64,
    snap_at: Ns,
    req: u64,
    upload: u64,
}

impl Flow {
    /// What the receiver's half is told of this transfer (as of its last change of rate).
    fn snap(&self) -> Snap {
        Snap {
            done: self.snap_done,
            at: self.snap_at,
            rate: self.rate,
            total: self.total,
            bad: self.bad,
            req: self.req,
        }
    }
}

/// What a receiver's half knows of a transfer from the other half ([`SimConfig::window`]):
/// its bytes done at its last change of rate, and that rate (set at a window's end).
#[derive(Debug, Default, Clone, Copy)]
struct Snap {
    done: f64,
    at: Ns,
    rate: f64,
    total: f64,
    bad: bool,
    req: u64,
}

/// What no event changes: the configuration and the planners.
struct Setup {
    cfg: SimConfig,
    shared: Arc<Shared>,
    /// Nodes, the origin included.
    total: usize,
    lat: Ns,
    /// [`SimConfig::window`] in nanoseconds (0: none).
    win: Ns,
    /// The announcement thread runs (only without a window).
    thread: bool,
    /// The halves' windows run on two threads ([`SimConfig::parallel_halves`]).
    parallel: bool,
}

/// What touches both halves: read by both during a window, changed only at a window's end
/// (or by any event without a window).
struct Top {
    /// Per node: its connected peers.
    peers: Vec<Vec<u32>>,
    /// Per node: it left the swarm.
    left: Vec<bool>,
    rng: ChaCha8Rng,
    /// Pairs (low, high) never to connect again (one banned or dropped the other).
    shunned: BTreeSet<(u32, u32)>,
    open_slots: Vec<u32>,
    /// Per partition: honest copies (with a window: halves holding one).
    copies: Vec<u32>,
    uncovered: u32,
    origin_left: bool,
    /// Without a window: free transfer ids, and how many were numbered.
    free_flows: Vec<u32>,
    flows_made: u32,
    next_trace: Ns,
}

/// The state of the nodes of one parity (all of it that events touch, but for [`Top`] and
/// the planners), and of the transfers they send. Node, side or transfer `x` is at `x >> 1`
/// in half `x & 1` ([`at`]). Without a window the halves are only storage.
struct Half {
    nodes: Vec<Node>,
    /// Link state per node.
    nics: Vec<Nic>,
    /// Capacity and use per [`side`] (at `(node >> 1) * 2 + is_up`, see [`side_at`]).
    sides: Vec<Side>,
    /// Transfers whose ids have this parity (with a window: those its nodes send).
    flows: Vec<Flow>,
    /// Per transfer: its version, which its end events carry. Moved on when it starts, ends,
    /// or its end moves earlier, so that the end events made before are out of date. Apart
    /// from the transfers' records: most end events are out of date, and this tells without
    /// reading the record.
    vers: Vec<u32>,
    /// With a window: transfers from the other half into this one, as their receivers see
    /// them (by the transfer's position in the other half).
    xin: Vec<Snap>,
    /// Per node: its planner cannot act on an announcement now
    /// ([`Planner::acts_on_announcements`] is false, as of its last drain).
    passive: Vec<bool>,
    /// Per node: announcements arrived for it since its planner was last called:
    /// [`UNSEEN_NONE`], [`UNSEEN_HELD`] or [`UNSEEN_NOW`].
    unseen: Vec<u8>,
    /// Per node: announcements handed to the announcement thread for it (when that equals
    /// [`Shared::handled`], it has taken in every announcement held back for the node).
    posted: Vec<u32>,
    /// Per node: events it made (with a window, see [`Cx::next_seq`]).
    made: Vec<u64>,
    /// Events to handle (without a window, every event is in the first half's).
    heap: EventQueue<Ev>,
    /// Events made in this window for the other half (moved at the window's end).
    outbox: Vec<(Ns, u64, Ev)>,
    origin_egress: f64,
    /// With a window, counted by the receiver's half; without, all in the first.
    liar_bytes_after_bad: f64,
    /// With a window, counted by the transfer's sender's half; without, all in the first.
    wasted: f64,
    /// Honest downloaders of this half not complete yet.
    honest_left: usize,
    /// With a window: the partitions this half holds an honest copy of, and those it got
    /// a first one of in this window.
    covered: Vec<bool>,
    newly_covered: Vec<u32>,
    /// Transfers to the other half started in this window, listed at their receivers at
    /// its end.
    win_adds: Vec<u32>,
    /// Transfers to the other half ended in this window, taken off their receivers' sides
    /// (side, transfer, rate) at its end.
    win_unlists: Vec<(u32, u32, f64)>,
    /// Their ids, freed at the window's end (until then the receiver's half lists them).
    win_free: Vec<u32>,
    /// Both sides of each transfer to the other half started in this window, side by side
    /// (re-shared together: apart, each end would find the other full).
    win_pairs: Vec<u32>,
    /// Nodes that joined in this window, connected at its end (connecting touches both
    /// ends).
    win_joins: Vec<u32>,
    /// Bans and disconnections (node, peer) of this window, carried out at its end.
    win_drops: Vec<(u32, u32)>,
    /// With a window: free ids of transfers this half sends, and how many it numbered.
    free: Vec<u32>,
    flows_made: u32,
}

/// What a thread running events needs for itself: the clock, scratch space, counts.
#[derive(Default)]
struct Worker {
    now: Ns,
    /// Sequence number of the event being handled (with `now`, its place in event order).
    cur_seq: u64,
    /// Without a window: events numbered so far.
    seq: u64,
    /// Sides (`node * 2 + is_up`) whose transfers changed at the current instant; rates are
    /// re-shared once per instant, before time advances.
    dirty: Vec<u32>,
    drain_queue: Vec<u32>,
    draining: bool,
    scratch: Scratch,
    /// Reusable snapshot of an announcer's peers.
    peers_scratch: Vec<u32>,
    /// Reusable buffer of [`Cx::planner_mut`].
    due_scratch: Vec<Report>,
    /// Reusable buffer of [`Slot::take_in`].
    announced: Vec<Announced>,
    /// Receivers of the current announcement that cannot act on it, with its announcer, for
    /// the announcement thread.
    to_post: Vec<(u32, u32)>,
    /// With a window on two threads: the nodes whose planners had announcements held back
    /// in this window, for the thread to take in while it waits (see [`take_in_held`]).
    held: Vec<u32>,
    /// Running a window's end (what touches both halves happens at once).
    in_barrier: bool,
    /// Set while re-sharing at a window's end (transfers between the halves included).
    window_flush: bool,
    events: u64,
    /// Events processed, by kind ([`EVENT_KINDS`]).
    events_by_kind: [u64; 10],
    requests: u64,
}

/// The simulator. Rate sharing: max-min fair (what competing TCP or QUIC flows converge to),
/// recomputed locally around every change by progressive filling (see `Cx::recompute`).
///
/// With a window ([`SimConfig::window`]) each half's events of a window run on their own
/// (on two threads with [`SimConfig::parallel_halves`]), then what touches both halves runs
/// at the window's end; the borrow checker sees to it that a half's events reach nothing of
/// the other half (see `Cx`).
pub struct Sim {
    k: Setup,
    top: Top,
    halves: [Half; 2],
    /// The first also runs the windows' ends, and every event without a window.
    workers: [Worker; 2],
    /// End of the current window.
    win_end: Ns,
}

/// How the event loop and the helper thread that runs the second half's windows
/// ([`SimConfig::parallel_halves`]) take turns: spinning, a window lasts a few microseconds.
struct WindowSync {
    /// End of the window to run.
    end: AtomicU64,
    /// Windows started, and finished by the helper.
    started: AtomicU64,
    finished: AtomicU64,
    stop: AtomicBool,
    /// The helper has returned (or panicked).
    helper_gone: AtomicBool,
}

/// Sets a flag when dropped: when its thread returns or panics.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl WindowSync {
    /// The helper's wait for the window after its `seen`-th (`None`: the run is over).
    fn wait_for_start(&self, seen: u64) -> Option<u64> {
        let mut spins = 0u32;
        loop {
            let n = self.started.load(Ordering::Acquire);
            if n > seen {
                return Some(n);
            }
            if self.stop.load(Ordering::Acquire) {
                return None;
            }
            spin(&mut spins);
        }
    }

    /// The event loop's wait for the helper to finish window `n`.
    fn wait_for_finish(&self, n: u64) {
        let mut spins = 0u32;
        while self.finished.load(Ordering::Acquire) < n {
            assert!(
                !self.helper_gone.load(Ordering::Acquire),
                "the helper thread panicked"
            );
            spin(&mut spins);
        }
    }
}

/// One step of a wait: spinning at first, then yielding the core.
fn spin(spins: &mut u32) {
    if *spins < 1 << 12 {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// [`Cx::top`]: read-only in a window.
enum TopRef<'a> {
    Read(&'a Top),
    Write(&'a mut Top),
}

/// What an event may touch: every half and [`Top`] at a window's end or without a window; in
/// a window, one half (and [`Top`] read-only). Touching anything else is a bug and panics.
struct Cx<'a> {
    k: &'a Setup,
    top: TopRef<'a>,
    w: &'a mut Worker,
    h: [Option<&'a mut Half>; 2],
    /// In a window: the half running.
    mine: Option<usize>,
}

const ORIGIN: u32 = 0;

/// No announcement arrived for the node since its planner was last called.
const UNSEEN_NONE: u8 = 0;
/// Announcements arrived while its planner could not act on them: taken in before its next
/// call, unless the announcement thread did it first ([`Shared::unseen`]).
const UNSEEN_HELD: u8 = 1;
/// An announcement arrived that its planner may act on: taken in by the simulator now.
const UNSEEN_NOW: u8 = 2;

/// A receiver reports a transfer's progress to its planner after this many bytes (peas-net
/// reports every 128 KiB); the simulator models the first report of every transfer (not queued
/// as an event but handed over before the receiver's next call, see [`Report`]; counted among
/// the events as `progress`).
const PROGRESS_STEP: u64 = 128 * 1024;

/// Verified bytes the first progress report tells (whole chunk groups).
const FIRST_REPORT: u64 = (PROGRESS_STEP / CHUNK_GROUP) * CHUNK_GROUP;

/// Names of the event kinds, in the order of [`SimReport::events_by_kind`].
pub const EVENT_KINDS: [&str; 10] = [
    "join",
    "request_arrives",
    "refused",
    "transfer_end",
    "data_done",
    "cancel_arrives",
    "have",
    "offer",
    "timer",
    "progress",
];

/// Where node, transfer or side owner `x` is in its half (see [`Half`]).
fn at(x: u32) -> usize {
    (x >> 1) as usize
}

/// Where [`side`] `k` is in its half's `sides`.
fn side_at(k: u32) -> usize {
    at(k / 2) * 2 + (k & 1) as usize
}

impl Ev {
    /// With a window, the half that handles this event (whose state it touches); an
    /// announcement goes to both (each takes it in for its own receivers).
    fn half(self) -> usize {
        let x = match self {
            Ev::Join { node } | Ev::Timer { node, .. } => node,
            Ev::ReqArrive { src, .. } | Ev::CancelArrive { src, .. } => src,
            Ev::Refused { dst, .. } | Ev::DataDone { dst, .. } => dst,
            Ev::FlowEnd { flow, .. } => flow,
            Ev::Offer { to, .. } => to,
            Ev::Have { from, .. } => from,
        };
        (x & 1) as usize
    }
}

impl Half {
    fn new() -> Self {
        Self {
            nodes: Vec::new(),
            nics: Vec::new(),
            sides: Vec::new(),
            flows: Vec::new(),
            vers: Vec::new(),
            xin: Vec::new(),
            passive: Vec::new(),
            unseen: Vec::new(),
            posted: Vec::new(),
            made: Vec::new(),
            heap: EventQueue::new(),
            outbox: Vec::new(),
            origin_egress: 0.0,
            liar_bytes_after_bad: 0.0,
            wasted: 0.0,
            honest_left: 0,
            covered: Vec::new(),
            newly_covered: Vec::new(),
            win_adds: Vec::new(),
            win_unlists: Vec::new(),
            win_free: Vec::new(),
            win_pairs: Vec::new(),
            win_joins: Vec::new(),
            win_drops: Vec::new(),
            free: Vec::new(),
            flows_made: 0,
        }
    }

    /// Adds room for one more transfer id: its record and version, side by side.
    fn add_flow_slot(&mut self) {
        self.flows.push(Flow::default());
        self.vers.push(0);
    }
}

impl Sim {
    /// Builds the swarm: node 0 is the origin (a complete seed), nodes `1..=N` downloaders.
    pub fn new(cfg: SimConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let n = cfg.nodes;
        let total = n + 1;
        // Roles: slow and lying downloaders chosen at random.
        let mut order: Vec<u32> = (1..=n as u32).collect();
        shuffle(&mut order, &mut rng);
        let n_slow = ((cfg.slow_fraction * n as f64).round() as usize).min(n);
        let n_liars = cfg.lying_nodes.min(n);
        let slow: BTreeSet<u32> = order.iter().take(n_slow).copied().collect();
        shuffle(&mut order, &mut rng);
        let liars: BTreeSet<u32> = order.iter().take(n_liars).copied().collect();
        let ups: Vec<f64> = (1..=n as u32)
            .map(|i| {
                if slow.contains(&i) {
                    cfg.upload / cfg.slow_factor
                } else {
                    cfg.upload
                }
            })
            .collect();
        let downs: Vec<f64> = (1..=n as u32)
            .map(|i| {
                if slow.contains(&i) {
                    cfg.download / cfg.slow_factor
                } else {
                    cfg.download
                }
            })
            .collect();
        let bound = kumar_ross_bound(cfg.size, cfg.origin_upload, &ups, &downs);
        let n_late = ((cfg.late_join_fraction * n as f64).round() as usize).min(n);
        shuffle(&mut order, &mut rng);
        let late: BTreeSet<u32> = order.iter().take(n_late).copied().collect();

        let win = cfg.window.map_or(0, |w| ns(w).max(1));
        let mut slots = Vec::with_capacity(total);
        // One configuration, shared by every planner (one copy in the caches).
        let planner_cfg = Arc::new(cfg.planner.clone());
        let piece = cfg.partition_size.min(cfg.piece_size.max(1));
        let mut halves = [Half::new(), Half::new()];
        for i in 0..total as u32 {
            let seed = rng.random::<u64>();
            let mut planner = Planner::new(Arc::clone(&planner_cfg), cfg.size, piece, seed);
            let (up, down) = if i == ORIGIN {
                planner.handle_local_have(0..cfg.size);
                while planner.poll_action().is_some() {}
                (cfg.origin_upload, cfg.download)
            } else {
                (ups[i as usize - 1], downs[i as usize - 1])
            };
            let join_at = if late.contains(&i) {
                (rng.random::<f64>() * bound * 0.5 * 1e9) as Ns
            } else {
                0
            };
            let h = &mut halves[(i & 1) as usize];
            h.nics.push(Nic::default());
            h.sides.push(Side {
                cap: down,
                used: 0.0,
            });
            h.sides.push(Side { cap: up, used: 0.0 });
            h.passive.push(false);
            h.unseen.push(UNSEEN_NONE);
            h.posted.push(0);
            h.made.push(0);
            let liar = liars.contains(&i);
            if i != ORIGIN && !liar {
                h.honest_left += 1;
            }
            h.nodes.push(Node {
                joined: false,
                liar,
                join_at,
                done_at: None,
                timer: None,
                timer_ver: 0,
                reqs: HashMap::default(),
                ups: HashMap::default(),
                bad_from: HashMap::new(),
                reports: Vec::new(),
                announced: 0,
            });
            slots.push(Mutex::new(Slot {
                planner,
                seen: Vec::new(),
                half: if win > 0 { (i & 1) as usize } else { 0 },
            }));
        }
        let n_parts = cfg.size.div_ceil(lock(&slots[0]).planner.partition_size()) as usize;
        for h in &mut halves {
            h.covered = vec![false; n_parts];
        }
        let counts = || (0..total).map(|_| AtomicU32::new(0)).collect();
        let shared = Arc::new(Shared {
            slots: slots.into(),
            log: (0..total * n_parts).map(|_| AtomicU32::new(0)).collect(),
            log_stride: n_parts,
            arrived: [counts(), counts()],
            unseen: (0..total).map(|_| AtomicBool::new(false)).collect(),
            handled: counts(),
            backlog: Mutex::new(Vec::new()),
            ready: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let k = Setup {
            thread: cfg.announcement_thread && win == 0,
            parallel: cfg.parallel_halves && win > 0,
            lat: ns(cfg.latency),
            cfg,
            shared,
            total,
            win,
        };
        let top = Top {
            peers: vec![Vec::new(); total],
            left: vec![false; total],
            rng,
            shunned: BTreeSet::new(),
            open_slots: Vec::new(),
            copies: vec![0; n_parts],
            uncovered: n_parts as u32,
            origin_left: false,
            free_flows: Vec::new(),
            flows_made: 0,
            next_trace: 0,
        };
        let mut sim = Self {
            k,
            top,
            halves,
            workers: [Worker::default(), Worker::default()],
            win_end: win,
        };
        let mut cx = sim.cx();
        // The origin first, then everyone else in a random order (ties at t=0).
        cx.node_mut(ORIGIN).joined = true;
        cx.top_mut().open_slots.push(ORIGIN);
        let mut joins: Vec<u32> = (1..total as u32).collect();
        shuffle(&mut joins, &mut cx.top_mut().rng);
        // Nodes present from the start can all be dialed from the start: the first to dial
        // must not fill every early node's slots (that would make a band-shaped graph with a
        // diameter of N / initial_peers hops instead of a random one).
        for &i in &joins {
            if cx.node(i).join_at == 0 {
                cx.node_mut(i).joined = true;
                cx.top_mut().open_slots.push(i);
            }
        }
        for i in joins {
            let t = cx.node(i).join_at;
            cx.push(i, t, Ev::Join { node: i });
        }
        sim
    }

    /// Everything, for a window's end or a run without a window (on the first worker).
    fn cx(&mut self) -> Cx<'_> {
        let [h0, h1] = &mut self.halves;
        Cx {
            k: &self.k,
            top: TopRef::Write(&mut self.top),
            w: &mut self.workers[0],
            h: [Some(h0), Some(h1)],
            mine: None,
        }
    }

    /// Upload (`up`) or download capacity of `node`, bytes/s.
    fn cap(&self, node: u32, up: bool) -> f64 {
        self.halves[(node & 1) as usize].sides[side_at(side(node, up))].cap
    }

    fn node(&self, x: u32) -> &Node {
        &self.halves[(x & 1) as usize].nodes[at(x)]
    }

    /// The run's lower bound in seconds.
    pub fn bound_s(&self) -> f64 {
        let n = self.k.total as u32;
        let ups: Vec<f64> = (1..n).map(|i| self.cap(i, true)).collect();
        let downs: Vec<f64> = (1..n).map(|i| self.cap(i, false)).collect();
        kumar_ross_bound(self.k.cfg.size, self.k.cfg.origin_upload, &ups, &downs)
    }

    fn events(&self) -> u64 {
        self.workers[0].events + self.workers[1].events
    }

    /// Runs to completion of every honest downloader, or to the safety limit (50× the bound
    /// plus 60 simulated seconds, or [`SimConfig::max_events`]).
    pub fn run(mut self) -> SimReport {
        let bound = self.bound_s();
        let limit: Ns = ((bound * 50.0 + 60.0) * 1e9) as Ns;
        let thread = self.k.thread.then(|| {
            let shared = Arc::clone(&self.k.shared);
            std::thread::spawn(move || take_in_background(&shared))
        });
        let hit_limit = if self.k.win == 0 {
            self.run_at_once(limit)
        } else {
            self.run_windows(limit)
        };
        // Reports due by the end count the bytes sent by then (as events, they did).
        let mut cx = self.cx();
        let mut due = std::mem::take(&mut cx.w.due_scratch);
        for x in 0..cx.k.total as u32 {
            if !cx.node(x).reports.is_empty() {
                cx.take_due_reports(x, &mut due);
                due.clear();
            }
        }
        if let Some(t) = thread {
            self.k.shared.stop.store(true, Ordering::Release);
            if t.join().is_err() {
                panic!("the announcement thread panicked");
            }
        }
        let honest: Vec<&Node> = (1..self.k.total as u32)
            .map(|i| self.node(i))
            .filter(|n| !n.liar)
            .collect();
        let done: Vec<f64> = honest
            .iter()
            .filter_map(|n| n.done_at.map(|t| t as f64 / 1e9))
            .collect();
        let completion = if done.len() == honest.len() {
            done.iter().copied().fold(0.0, f64::max)
        } else {
            self.workers[0].now as f64 / 1e9
        };
        let mean = if done.is_empty() {
            0.0
        } else {
            done.iter().sum::<f64>() / done.len() as f64
        };
        let [h0, h1] = &self.halves;
        let [w0, w1] = &self.workers;
        let mut events_by_kind = w0.events_by_kind;
        for (a, b) in events_by_kind.iter_mut().zip(w1.events_by_kind) {
            *a += b;
        }
        let cfg = &self.k.cfg;
        SimReport {
            nodes: cfg.nodes,
            size: cfg.size,
            partition_size: cfg.partition_size,
            piece_size: lock(&self.k.shared.slots[0]).planner.partition_size(),
            completion_s: completion,
            mean_completion_s: mean,
            bound_s: bound,
            ratio: completion / bound,
            origin_egress_bytes: (h0.origin_egress + h1.origin_egress).round() as u64,
            completed_nodes: done.len(),
            honest_nodes: honest.len(),
            bytes_accepted_from_liars_after_first_bad: (h0.liar_bytes_after_bad
                + h1.liar_bytes_after_bad)
                .round() as u64,
            wasted_bytes: (h0.wasted + h1.wasted).round() as u64,
            requests: w0.requests + w1.requests,
            events: self.events(),
            events_by_kind,
            origin_left: self.top.origin_left,
            hit_limit,
            node_completion_s: (1..self.k.total as u32)
                .map(|i| self.node(i).done_at.map(|t| t as f64 / 1e9))
                .collect(),
            slow_nodes: (1..self.k.total)
                .filter(|&i| self.cap(i as u32, true) < cfg.upload)
                .collect(),
            lying_nodes: (1..self.k.total)
                .filter(|&i| self.node(i as u32).liar)
                .collect(),
        }
    }

    /// The event loop without a window: one queue, every event in order. Returns whether
    /// the run hit the safety limit.
    fn run_at_once(&mut self, limit: Ns) -> bool {
        let mut cx = self.cx();
        while cx.honest_left() > 0 {
            if !cx.w.dirty.is_empty() && cx.hh(0).heap.peek_time().is_none_or(|t| t > cx.w.now) {
                cx.flush_dirty();
                continue;
            }
            let Some((t, seq, ev)) = cx.hh(0).heap.pop() else {
                return true;
            };
            if t > limit || cx.w.events >= cx.k.cfg.max_events {
                return true;
            }
            if let Some(step) = cx.k.cfg.trace {
                while t >= cx.top().next_trace {
                    cx.print_trace();
                    cx.top_mut().next_trace += ns(step).max(1);
                }
            }
            if let Some(&next) = cx.hh(0).heap.peek_hint() {
                cx.read_ahead(next);
            }
            cx.w.now = t;
            cx.w.cur_seq = seq;
            cx.handle(ev);
        }
        false
    }

    /// The event loop with a window: each half runs the window's events on its own (on two
    /// threads with [`SimConfig::parallel_halves`]), then what touches both halves runs at
    /// its end. The run ends at the end of the window in which the last node completed (a
    /// half learns that only there). Returns whether the run hit the safety limit.
    fn run_windows(&mut self, limit: Ns) -> bool {
        let win = self.k.win;
        let Sim {
            k,
            top,
            halves: [h0, h1],
            workers: [w0, w1],
            win_end,
        } = self;
        let k: &Setup = k;
        // The second half and its worker: the helper thread's during a window.
        let second = Mutex::new((h1, w1));
        let top = RwLock::new(top);
        let sync = WindowSync {
            end: AtomicU64::new(0),
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            helper_gone: AtomicBool::new(false),
        };
        // Planners the event loop had no time to take held-back announcements in for, handed
        // to the helper at the window's end.
        let handoff = Mutex::new(Vec::new());
        let lock_second = || second.lock().expect("the helper thread panicked");
        let read_top = || top.read().expect("a thread panicked");
        let shared = &*k.shared;
        std::thread::scope(|s| {
            if k.parallel {
                s.spawn(|| {
                    let _gone = SetOnDrop(&sync.helper_gone);
                    let mut seen = 0;
                    let (mut held, mut batch) = (Vec::new(), Vec::new());
                    let next = |seen| sync.started.load(Ordering::Acquire) > seen;
                    loop {
                        take_in_held(shared, &mut held, &mut batch, || next(seen));
                        if held.is_empty() && !next(seen) {
                            held.append(&mut handoff.lock().expect("a thread panicked"));
                            take_in_held(shared, &mut held, &mut batch, || next(seen));
                        }
                        let Some(n) = sync.wait_for_start(seen) else {
                            break;
                        };
                        seen = n;
                        let end = sync.end.load(Ordering::Acquire);
                        {
                            let mut g = lock_second();
                            let (h, w) = &mut *g;
                            Cx::window(k, &read_top(), h, w, 1).run_window(end);
                            held.append(&mut w.held);
                        }
                        sync.finished.store(n, Ordering::Release);
                    }
                });
            }
            let mut batch = Vec::new();
            // Also when this thread panics: the helper returns, and the scope can end.
            let _stop = SetOnDrop(&sync.stop);
            let mut n = 0;
            loop {
                let end = *win_end;
                n += 1;
                if k.parallel {
                    sync.end.store(end, Ordering::Release);
                    sync.started.store(n, Ordering::Release);
                }
                Cx::window(k, &read_top(), h0, w0, 0).run_window(end);
                if k.parallel {
                    let done = || sync.finished.load(Ordering::Acquire) >= n;
                    take_in_held(shared, &mut w0.held, &mut batch, done);
                    sync.wait_for_finish(n);
                    handoff
                        .lock()
                        .expect("a thread panicked")
                        .append(&mut w0.held);
                } else {
                    let mut g = lock_second();
                    let (h, w) = &mut *g;
                    Cx::window(k, &read_top(), h, w, 1).run_window(end);
                }
                // The window's end: everything within reach.
                let mut g = lock_second();
                let (h1, w1) = &mut *g;
                let events = w0.events + w1.events;
                let mut t = top.write().expect("a thread panicked");
                let mut cx = Cx {
                    k,
                    top: TopRef::Write(&mut t),
                    w: w0,
                    h: [Some(&mut *h0), Some(&mut **h1)],
                    mine: None,
                };
                // It comes before the events at that instant.
                cx.w.now = end;
                cx.w.cur_seq = 0;
                cx.merge_window();
                if cx.honest_left() == 0 {
                    break false;
                }
                let next = cx.next_time();
                let pending = cx.window_end_has_work();
                if (next.is_none() && !pending)
                    || next.is_some_and(|t| t > limit)
                    || events >= k.cfg.max_events
                {
                    break true;
                }
                if let Some(step) = k.cfg.trace {
                    while end >= cx.top().next_trace {
                        cx.print_trace();
                        cx.top_mut().next_trace += ns(step).max(1);
                    }
                }
                if pending {
                    cx.window_end();
                }
                let t = cx.next_time().unwrap_or(end);
                *win_end = (end + win).max((t / win + 1) * win);
            }
        })
    }
}

impl<'a> Cx<'a> {
    /// One half's view for a window: its own state, [`Top`] read-only.
    fn window(k: &'a Setup, top: &'a Top, h: &'a mut Half, w: &'a mut Worker, mine: usize) -> Self {
        let mut halves = [None, None];
        halves[mine] = Some(h);
        Cx {
            k,
            top: TopRef::Read(top),
            w,
            h: halves,
            mine: Some(mine),
        }
    }

    /// Runs this half's events before `end` (the window's end).
    fn run_window(mut self, end: Ns) {
        let m = self.mine.expect("a window runs in one half");
        loop {
            let next = self.hh(m).heap.peek_time();
            if !self.w.dirty.is_empty() && next.is_none_or(|t| t > self.w.now) {
                self.flush_dirty();
                continue;
            }
            if next.is_none_or(|t| t >= end) {
                return;
            }
            let (t, seq, ev) = self.hh(m).heap.pop().expect("an event was peeked");
            if let Some(&next) = self.hh(m).heap.peek_hint() {
                self.read_ahead(next);
            }
            self.w.now = t;
            self.w.cur_seq = seq;
            self.handle(ev);
        }
    }

    /// Half `h` (which must be within reach).
    fn hh(&mut self, h: usize) -> &mut Half {
        self.h[h]
            .as_deref_mut()
            .expect("an event touched the other half's state in a window")
    }

    /// The half of node, transfer or side owner `x`.
    fn half(&self, x: u32) -> &Half {
        self.h[(x & 1) as usize]
            .as_deref()
            .expect("an event read the other half's state in a window")
    }

    fn half_mut(&mut self, x: u32) -> &mut Half {
        self.hh((x & 1) as usize)
    }

    fn node(&self, x: u32) -> &Node {
        &self.half(x).nodes[at(x)]
    }

    fn node_mut(&mut self, x: u32) -> &mut Node {
        &mut self.half_mut(x).nodes[at(x)]
    }

    fn nic(&self, x: u32) -> &Nic {
        &self.half(x).nics[at(x)]
    }

    fn nic_mut(&mut self, x: u32) -> &mut Nic {
        &mut self.half_mut(x).nics[at(x)]
    }

    fn flow(&self, f: u32) -> &Flow {
        &self.half(f).flows[at(f)]
    }

    fn flow_mut(&mut self, f: u32) -> &mut Flow {
        &mut self.half_mut(f).flows[at(f)]
    }

    /// [`side`] `k`.
    fn side_of(&self, k: u32) -> &Side {
        &self.half(k / 2).sides[side_at(k)]
    }

    fn side_of_mut(&mut self, k: u32) -> &mut Side {
        &mut self.half_mut(k / 2).sides[side_at(k)]
    }

    fn top(&self) -> &Top {
        match &self.top {
            TopRef::Read(t) => t,
            TopRef::Write(t) => t,
        }
    }

    fn top_mut(&mut self) -> &mut Top {
        match &mut self.top {
            TopRef::Write(t) => t,
            TopRef::Read(_) => panic!("an event changed what both halves share in a window"),
        }
    }

    fn left(&self, x: u32) -> bool {
        self.top().left[x as usize]
    }

    fn honest_left(&self) -> usize {
        self.h.iter().flatten().map(|h| h.honest_left).sum()
    }

    /// The time of the next event of either half.
    fn next_time(&self) -> Option<Ns> {
        self.h
            .iter()
            .flatten()
            .filter_map(|h| h.heap.peek_time())
            .min()
    }

    /// Queues `ev` at `t`, made by node `by` (see [`Cx::next_seq`]): in the queue of the half
    /// that handles it ([`Ev::half`]), through this half's outbox if that is the other one.
    fn push(&mut self, by: u32, t: Ns, ev: Ev) {
        debug_assert!(self.owns(by), "node {by} acted from the other half");
        let seq = self.next_seq(by);
        if self.k.win == 0 {
            self.hh(0).heap.push(t, seq, ev);
        } else if let Ev::Have { .. } = ev {
            self.push_to(0, t, seq, ev);
            self.push_to(1, t, seq, ev);
        } else {
            self.push_to(ev.half(), t, seq, ev);
        }
    }

    fn push_to(&mut self, h: usize, t: Ns, seq: u64, ev: Ev) {
        match self.mine {
            Some(m) if m != h => self.hh(m).outbox.push((t, seq, ev)),
            _ => self.hh(h).heap.push(t, seq, ev),
        }
    }

    /// The sequence number of an event made by node `by` (ties in time go by it). Without a
    /// window, one count over the whole run; with one, the node and its own count, which
    /// each half can compute alone and which orders a half's events the same whatever the
    /// other half does.
    fn next_seq(&mut self, by: u32) -> u64 {
        if self.k.win == 0 {
            self.w.seq += 1;
            self.w.seq
        } else {
            let c = &mut self.half_mut(by).made[at(by)];
            *c += 1;
            (u64::from(by) << 40) | *c
        }
    }

    /// Upload capacity of `node`, bytes/s.
    fn up(&self, node: u32) -> f64 {
        self.side_of(side(node, true)).cap
    }

    /// Download capacity of `node`, bytes/s.
    fn down(&self, node: u32) -> f64 {
        self.side_of(side(node, false)).cap
    }

    /// Every transfer record (alive or not).
    fn all_flows(&self) -> impl Iterator<Item = &Flow> {
        self.h.iter().flatten().flat_map(|h| h.flows.iter())
    }

    fn print_trace(&self) {
        let (mut up, mut origin, mut active) = (0.0, 0.0, 0usize);
        for f in self.all_flows().filter(|f| f.alive) {
            up += f.rate;
            active += 1;
            if f.src == ORIGIN {
                origin += f.rate;
            }
        }
        let total = self.k.total as u32;
        let done = (1..total)
            .filter(|&i| self.node(i).done_at.is_some())
            .count();
        let verified: u64 = (1..total).map(|i| self.peek(i).verified_bytes()).sum();
        let n = self.k.cfg.nodes.max(1) as f64;
        let holders = (1..total)
            .filter(|&i| self.peek(i).have_partitions().count() > 0)
            .count();
        let to_empty: f64 = self
            .all_flows()
            .filter(|f| f.alive && self.peek(f.dst).have_partitions().count() == 0)
            .map(|f| f.rate)
            .sum();
        eprintln!(
            "  holders {holders}; rate into nodes holding nothing {:.1} MiB/s",
            to_empty / MIB
        );
        let (global, up_sat, down_sat, both) = self.global_max_min();
        eprintln!(
            "  global max-min total={:8.1}MiB/s; nodes with upload >=95%: {}, download >=95%: {}, flows with neither end saturated: {}",
            global / MIB,
            up_sat,
            down_sat,
            both
        );
        eprintln!(
            "t={:7.3}s swarm_up={:8.1}MiB/s ({:5.1}%) origin_up={:6.1}MiB/s flows={} done={} avg_verified={:5.1}% uncovered={}",
            self.top().next_trace as f64 / 1e9,
            up / MIB,
            100.0 * up / (0..total).map(|i| self.up(i)).sum::<f64>(),
            origin / MIB,
            active,
            done,
            100.0 * verified as f64 / n / self.k.cfg.size.max(1) as f64,
            self.top().uncovered,
        );
    }

    /// Diagnostic: total rate of a global max-min allocation over the live flows, the nodes
    /// whose upload / download is at least 95 % used now, and live flows with neither end
    /// saturated now (capacity the local re-sharing left unused).
    fn global_max_min(&self) -> (f64, usize, usize, usize) {
        let live: Vec<&Flow> = self.all_flows().filter(|f| f.alive).collect();
        let nn = self.k.total;
        let mut cap: Vec<f64> = (0..nn as u32 * 2).map(|k| self.side_of(k).cap).collect();
        let mut users = vec![0u32; nn * 2];
        for f in &live {
            users[f.src as usize * 2 + 1] += 1;
            users[f.dst as usize * 2] += 1;
        }
        let mut frozen = vec![false; live.len()];
        let mut total = 0.0;
        let mut left = live.len();
        while left > 0 {
            let delta = (0..nn * 2)
                .filter(|&k| users[k] > 0)
                .map(|k| cap[k] / f64::from(users[k]))
                .fold(f64::INFINITY, f64::min);
            if !delta.is_finite() {
                break;
            }
            for (i, f) in live.iter().enumerate() {
                if !frozen[i] {
                    total += delta;
                    cap[f.src as usize * 2 + 1] -= delta;
                    cap[f.dst as usize * 2] -= delta;
                }
            }
            for (i, f) in live.iter().enumerate() {
                let (a, b) = (f.src as usize * 2 + 1, f.dst as usize * 2);
                if !frozen[i] && (cap[a] <= 1e-6 * (1.0 + delta) || cap[b] <= 1e-6 * (1.0 + delta))
                {
                    frozen[i] = true;
                    left -= 1;
                    users[a] -= 1;
                    users[b] -= 1;
                }
            }
        }
        let mut upr = vec![0.0; nn];
        let mut dnr = vec![0.0; nn];
        for f in &live {
            upr[f.src as usize] += f.rate;
            dnr[f.dst as usize] += f.rate;
        }
        let up_sat = (0..nn)
            .filter(|&i| upr[i] >= 0.95 * self.up(i as u32))
            .count();
        let down_sat = (0..nn)
            .filter(|&i| dnr[i] >= 0.95 * self.down(i as u32))
            .count();
        let both = live
            .iter()
            .filter(|f| {
                upr[f.src as usize] < 0.95 * self.up(f.src)
                    && dnr[f.dst as usize] < 0.95 * self.down(f.dst)
            })
            .count();
        // Unsaturated downloaders: requests in flight, of which flowing.
        let (mut dn, mut dreq, mut dflow, mut dsrc) = (0usize, 0usize, 0usize, 0usize);
        let (mut un, mut uflows, mut uq, mut uneed) = (0usize, 0usize, 0usize, 0usize);
        for i in 1..nn {
            let x = self.node(i as u32);
            let peers = &self.top().peers[i];
            if !x.joined || self.left(i as u32) || x.done_at.is_some() {
                continue;
            }
            if dnr[i] < 0.95 * self.down(i as u32) {
                dn += 1;
                dreq += x.reqs.len();
                dflow += x.reqs.values().filter(|r| r.flow.is_some()).count();
                let me = self.peek(i as u32);
                let mine = me.have_partitions();
                dsrc += peers
                    .iter()
                    .filter(|&&q| {
                        let other = self.peek(q);
                        let o = other.have_partitions();
                        o.iter().any(|p| !mine.contains(p))
                    })
                    .count();
            }
            if upr[i] < 0.95 * self.up(i as u32) {
                un += 1;
                uflows += self.nic(i as u32).up_flows.len();
                let me = self.peek(i as u32);
                uq += me.queued_uploads();
                let mine = me.have_partitions();
                uneed += peers
                    .iter()
                    .filter(|&&q| {
                        let o = self.node(q);
                        q != ORIGIN && o.done_at.is_none() && {
                            let other = self.peek(q);
                            mine.iter().any(|p| !other.has_partition(p))
                        }
                    })
                    .count();
            }
        }
        let dnf = dn.max(1) as f64;
        let unf = un.max(1) as f64;
        eprintln!(
            "  unsat downloaders {dn}: reqs {:.1} flowing {:.1} peers with data it lacks {:.1}; unsat uploaders {un}: flows {:.1} queued {:.1} peers needing its data {:.1}",
            dreq as f64 / dnf,
            dflow as f64 / dnf,
            dsrc as f64 / dnf,
            uflows as f64 / unf,
            uq as f64 / unf,
            uneed as f64 / unf
        );
        (total, up_sat, down_sat, both)
    }

    fn handle(&mut self, ev: Ev) {
        let k = match ev {
            Ev::Join { .. } => 0,
            Ev::ReqArrive { .. } => 1,
            Ev::Refused { .. } => 2,
            Ev::FlowEnd { .. } => 3,
            Ev::DataDone { .. } => 4,
            Ev::CancelArrive { .. } => 5,
            Ev::Have { .. } => 6,
            Ev::Offer { .. } => 7,
            Ev::Timer { .. } => 8,
        };
        // An announcement handled in both halves counts once (in its sender's).
        if self.mine.is_none_or(|m| m == ev.half()) {
            self.w.events += 1;
            self.w.events_by_kind[k] += 1;
        }
        match ev {
            Ev::Join { node } if self.k.win > 0 => self.half_mut(node).win_joins.push(node),
            Ev::Join { node } => self.join(node),
            Ev::ReqArrive {
                src,
                dst,
                req,
                range,
            } => self.req_arrive(src, dst, req, range.0..range.1),
            Ev::Refused { dst, req } => {
                if self.node_mut(dst).reqs.remove(&req).is_some() {
                    let now = dur(self.w.now);
                    self.planner_mut(dst).handle_request_failed(
                        now,
                        RequestId(req),
                        Failure::Refused,
                    );
                    self.drain(dst);
                }
            }
            Ev::FlowEnd { flow, ver } => {
                // Out of date (the transfer ended, or its end moved earlier): nothing to read.
                if self.half(flow).vers[at(flow)] != ver {
                    return;
                }
                debug_assert!(
                    self.flow(flow).alive,
                    "a current end event of an ended transfer"
                );
                self.flow_mut(flow).sched = Ns::MAX;
                let now = self.w.now;
                self.advance_flow(flow, now);
                let x = self.flow_mut(flow);
                let remaining = x.total - x.done;
                if remaining <= 1e-6 * x.total.max(1.0) || remaining < 1.0 {
                    self.flow_end(flow);
                } else if x.rate > 0.0 {
                    let t = now.saturating_add(((remaining / x.rate) * 1e9).ceil().max(1.0) as Ns);
                    x.sched = t;
                    // The same version: no other end event of it is current.
                    let src = x.src;
                    self.push(src, t, Ev::FlowEnd { flow, ver });
                }
            }
            Ev::DataDone { dst, req, bad } => {
                if self.left(dst) {
                    return;
                }
                if let Some(r) = self.node_mut(dst).reqs.remove(&req) {
                    let t = self.w.now;
                    let now = dur(t);
                    // With a window the receiver counts a liar's bytes it takes in (without,
                    // the transfer does, as they flow).
                    if self.k.win > 0
                        && bad > 0
                        && self
                            .node(dst)
                            .bad_from
                            .get(&r.peer)
                            .is_some_and(|&at| at < t)
                    {
                        self.half_mut(dst).liar_bytes_after_bad += f64::from(bad);
                    }
                    if bad > 0 {
                        // The node learns here that this peer lies (a request it cancelled
                        // while the bad data was in flight taught it nothing).
                        self.node_mut(dst).bad_from.entry(r.peer).or_insert(t);
                        self.planner_mut(dst).handle_request_failed(
                            now,
                            RequestId(req),
                            Failure::BadData,
                        );
                    } else {
                        self.planner_mut(dst)
                            .handle_request_done(now, RequestId(req));
                    }
                    self.drain(dst);
                }
            }
            Ev::CancelArrive { src, dst, req } => self.cancel_arrive(src, dst, req),
            Ev::Have { from, part } => self.have(from, part),
            Ev::Offer { from, to } => {
                // An offer from a peer that is gone is ignored by the planner.
                if self.left(to) {
                    return;
                }
                let now = dur(self.w.now);
                let from = PeerId(u64::from(from));
                // An offer the planner would ignore is skipped: the announcements and reports
                // held back for it stay so (most offers reach planners with a full request
                // budget, at the same instant as the offerer's announcement, before the
                // second thread has taken that in). Not when its timer is due now: that drain
                // moves it.
                if !self.timer_due_now(to) && self.peek(to).ignores_offer(now, from) {
                    return;
                }
                self.planner_mut(to).handle_peer_offer(now, from);
                self.drain(to);
            }
            Ev::Timer { node, ver } => {
                if self.left(node) || self.node(node).timer_ver != ver {
                    return;
                }
                self.node_mut(node).timer = None;
                self.report_progress(node);
                let now = dur(self.w.now);
                self.planner_mut(node).handle_timeout(now);
                self.drain_forced(node);
            }
        }
    }

    /// Starts loading into the caches what handling `ev` reads first (its transfer, or its
    /// node's record and planner), while the event before it is handled: at thousands of
    /// nodes nearly every one of these reads misses the caches, and the misses of two events
    /// then overlap. Only a hint to the processor: it changes no state.
    fn read_ahead(&self, ev: Ev) {
        let node = match ev {
            Ev::FlowEnd { flow, .. } => {
                if let Some(h) = self.h[(flow & 1) as usize].as_deref() {
                    prefetch_index(&h.vers, at(flow));
                    prefetch_index(&h.flows, at(flow));
                }
                return;
            }
            Ev::Have { from, .. } => {
                // The list's header is in a small array, most likely cached: its entries are
                // what would miss.
                let peers = &self.top().peers[from as usize];
                for i in (0..peers.len()).step_by(16) {
                    prefetch_index(peers, i);
                }
                return;
            }
            Ev::Join { .. } => return,
            Ev::Offer { to: node, .. }
            | Ev::Timer { node, .. }
            | Ev::DataDone { dst: node, .. }
            | Ev::Refused { dst: node, .. }
            | Ev::ReqArrive { src: node, .. }
            | Ev::CancelArrive { src: node, .. } => node,
        };
        if let Some(h) = self.h[(node & 1) as usize].as_deref() {
            // The record's three cache lines.
            let n = &h.nodes[at(node)];
            prefetch_index(std::slice::from_ref(&n.timer), 0);
            prefetch_index(std::slice::from_ref(&n.reqs), 0);
            prefetch_index(std::slice::from_ref(&n.ups), 0);
            prefetch_index(std::slice::from_ref(&n.liar), 0);
            prefetch_index(std::slice::from_ref(&n.reports), 0);
        }
        prefetch_index(&self.k.shared.slots, node as usize);
    }

    /// An announcement of `from` arrives at its current peers (with a window, at those of
    /// this half): it joins the announcer's log, which each peer's planner takes in before
    /// its next call (a receiver that cannot act on it now is not touched, and with a second
    /// thread takes it in there; the same outcome, far fewer cache misses).
    fn have(&mut self, from: u32, part: u32) {
        let k = self.k;
        let q = from as usize;
        let arrived = &k.shared.arrived[self.mine.unwrap_or(0)][q];
        let n = arrived.load(Ordering::Relaxed);
        if k.win == 0 {
            k.shared.log[k.shared.log_index(from, n)].store(part, Ordering::Relaxed);
        } else {
            // Written as it was sent (see `Action::Announce`).
            debug_assert_eq!(
                k.shared.log[k.shared.log_index(from, n)].load(Ordering::Relaxed),
                part
            );
        }
        arrived.store(n + 1, Ordering::Release);
        // A snapshot: a drain below may connect or drop peers of `from`.
        let mut peers = std::mem::take(&mut self.w.peers_scratch);
        peers.clear();
        match self.mine {
            None => peers.extend_from_slice(&self.top().peers[q]),
            Some(m) => peers.extend(
                self.top().peers[q]
                    .iter()
                    .copied()
                    .filter(|&p| (p & 1) as usize == m),
            ),
        }
        let mut kept = 0;
        for i in 0..peers.len() {
            let node = peers[i];
            if self.left(node) {
                continue;
            }
            let x = at(node);
            let h = self.half_mut(node);
            if k.cfg.hold_back_announcements && h.passive[x] && k.cfg.log_node != Some(node) {
                // Only these may be taken in on the announcement thread. (Only the
                // simulator clears the shared flag: it is set already if held.)
                let newly = h.unseen[x] == UNSEEN_NONE;
                if newly {
                    h.unseen[x] = UNSEEN_HELD;
                    k.shared.unseen[node as usize].store(true, Ordering::Release);
                }
                if k.thread {
                    h.posted[x] = h.posted[x].wrapping_add(1);
                    self.w.to_post.push((node, from));
                }
                if newly && k.parallel {
                    self.w.held.push(node);
                }
            } else {
                h.unseen[x] = UNSEEN_NOW;
                peers[kept] = node;
                kept += 1;
            }
        }
        peers.truncate(kept);
        // The receivers' records and planners are asked for at once: the loop below calls
        // each in turn, and would otherwise wait for each one's cache misses alone.
        for &node in &peers {
            let n = &self.half(node).nodes[at(node)];
            prefetch_index(std::slice::from_ref(&n.reports), 0);
            prefetch_index(&k.shared.slots, node as usize);
        }
        if !self.w.to_post.is_empty() {
            k.shared
                .backlog
                .lock()
                .expect("the announcement thread panicked")
                .append(&mut self.w.to_post);
            k.shared.ready.store(true, Ordering::Release);
        }
        for &node in &peers {
            if k.cfg.log_node == Some(node) {
                eprintln!(
                    "{:.4} n{node} <- Have {part} from {from}",
                    self.w.now as f64 / 1e9
                );
            }
            // Takes the announcement in.
            let planner = self.planner_mut(node);
            let (acts, passive) = (planner.has_actions(), !planner.acts_on_announcements());
            drop(planner);
            if acts {
                self.drain(node);
            } else {
                self.half_mut(node).passive[at(node)] = passive;
            }
        }
        self.w.peers_scratch = peers;
    }

    fn have_of(&self, node: u32) -> PeerHave {
        let p = self.peek(node);
        if p.is_complete() {
            PeerHave::All
        } else {
            PeerHave::Partitions(p.have_partitions().iter().collect())
        }
    }

    fn join(&mut self, node: u32) {
        if !self.node(node).joined {
            self.node_mut(node).joined = true;
            self.top_mut().open_slots.push(node);
        }
        self.connect_random(node, self.k.cfg.initial_peers);
        self.drain_forced(node);
    }

    /// Connects `node` to up to `want` random joined nodes with a free peer slot (a tracker
    /// handing out a random sample).
    fn connect_random(&mut self, node: u32, want: usize) {
        let max = self.k.cfg.max_peers;
        let mut tries = want * 8 + 8;
        let mut added = 0;
        while added < want && tries > 0 && !self.top().open_slots.is_empty() {
            tries -= 1;
            let top = self.top_mut();
            let i = top.rng.random_range(0..top.open_slots.len());
            let cand = top.open_slots[i];
            if top.left[cand as usize] || top.peers[cand as usize].len() >= max {
                top.open_slots.swap_remove(i);
                continue;
            }
            if cand == node
                || top.peers[node as usize].contains(&cand)
                || top.shunned.contains(&(node.min(cand), node.max(cand)))
            {
                continue;
            }
            if top.peers[node as usize].len() >= max {
                break;
            }
            self.connect(node, cand);
            added += 1;
        }
    }

    fn connect(&mut self, a: u32, b: u32) {
        let now = dur(self.w.now);
        let top = self.top_mut();
        top.peers[a as usize].push(b);
        top.peers[b as usize].push(a);
        let hb = self.have_of(b);
        let ha = self.have_of(a);
        self.link(a, b);
        self.link(b, a);
        self.planner_mut(a)
            .handle_peer_connected(now, PeerId(u64::from(b)), hb);
        self.planner_mut(b)
            .handle_peer_connected(now, PeerId(u64::from(a)), ha);
        self.drain(b);
        self.drain(a);
    }

    /// Cuts the link a–b: flows between them stop, both planners learn the disconnect.
    fn disconnect(&mut self, a: u32, b: u32) {
        if !self.top().peers[a as usize].contains(&b) {
            return;
        }
        let top = self.top_mut();
        top.peers[a as usize].retain(|x| *x != b);
        top.peers[b as usize].retain(|x| *x != a);
        // Progress first, so verified prefixes count.
        self.report_progress(a);
        self.report_progress(b);
        let nic = self.nic(a);
        let flows: Vec<u32> = nic
            .up_flows
            .iter()
            .chain(nic.down_flows.iter())
            .filter(|&&(_, far)| far == b)
            .map(|&(f, _)| f)
            .collect();
        for f in flows {
            self.kill_flow(f, true, a);
        }
        for (x, y) in [(a, b), (b, a)] {
            let n = self.node_mut(x);
            n.reqs.retain(|_, r| r.peer != y);
            n.ups.retain(|_, (d, _, _)| *d != y);
        }
        let now = dur(self.w.now);
        self.planner_mut(a)
            .handle_peer_disconnected(now, PeerId(u64::from(b)));
        self.planner_mut(b)
            .handle_peer_disconnected(now, PeerId(u64::from(a)));
        self.unlink(a, b);
        self.unlink(b, a);
        self.drain(a);
        self.drain(b);
        for x in [a, b] {
            if !self.left(x)
                && self.top().peers[x as usize].len() < 4
                && self.node(x).done_at.is_none()
            {
                self.connect_random(x, self.k.cfg.initial_peers);
            }
        }
    }

    fn leave(&mut self, node: u32) {
        self.top_mut().left[node as usize] = true;
        let peers = self.top().peers[node as usize].clone();
        for p in peers {
            self.disconnect(node, p);
        }
        self.node_mut(node).timer_ver += 1;
    }

    /// Reports verified progress of `node`'s active downloads to its planner.
    fn report_progress(&mut self, node: u32) {
        let now = self.w.now;
        // Neither call below adds or removes transfers.
        for i in 0..self.nic(node).down_flows.len() {
            let (f, _) = self.nic(node).down_flows[i];
            let (done, bad, req) = if self.comes_from_other_half(f, node) {
                // Read, not advanced: the sender's half owns it. Its rate holds since `at`.
                let s = self.half(node).xin[at(f)];
                let done = s.done + s.rate * now.saturating_sub(s.at) as f64 / 1e9;
                (done.min(s.total), s.bad, s.req)
            } else {
                self.advance_flow(f, now);
                let fl = self.flow(f);
                (fl.done, fl.bad, fl.req)
            };
            if bad {
                continue;
            }
            let received = (done as u64 / CHUNK_GROUP) * CHUNK_GROUP;
            self.planner_mut(node)
                .handle_request_progress(dur(now), RequestId(req), received);
        }
    }

    fn req_arrive(&mut self, src: u32, dst: u32, req: u64, range: Range<u64>) {
        // Cancelled meanwhile. (With a window the uploader reads nothing of the requester:
        // the cancel follows this request.)
        if self.k.win == 0 && !self.node(dst).reqs.contains_key(&req) {
            return;
        }
        if self.left(src) || !self.top().peers[src as usize].contains(&dst) {
            let t = self.w.now + self.k.lat;
            self.push(src, t, Ev::Refused { dst, req });
            return;
        }
        let now = dur(self.w.now);
        // Most uploaders read nothing announcements change here: those held back for them
        // stay so (a request often arrives at the same instant as the requester's
        // announcement, before the second thread has taken that in).
        let mut planner = if self.peek(src).upload_requests_read_announcements() {
            self.planner_mut(src)
        } else {
            self.planner_keep_held(src)
        };
        let uid = planner.handle_upload_request(now, PeerId(u64::from(dst)), range.clone());
        drop(planner);
        let ups = &mut self.node_mut(src).ups;
        ups.insert(uid.0, (dst, req, (range.start, range.end)));
        if self.k.win == 0
            && let Some(r) = self.node_mut(dst).reqs.get_mut(&req)
        {
            r.arrived = true;
        }
        self.drain(src);
    }

    fn cancel_arrive(&mut self, src: u32, dst: u32, req: u64) {
        if self.left(src) {
            return;
        }
        let ups = &mut self.node_mut(src).ups;
        let Some(upload) = ups
            .iter()
            .find(|(_, u)| u.0 == dst && u.1 == req)
            .map(|(&id, _)| id)
        else {
            return;
        };
        ups.remove(&upload);
        let flow = self
            .nic(src)
            .up_flows
            .iter()
            .map(|&(f, _)| f)
            .find(|&f| self.flow(f).upload == upload);
        if let Some(f) = flow {
            self.kill_flow(f, true, src);
        }
        let now = dur(self.w.now);
        self.planner_mut(src)
            .handle_upload_done(now, UploadId(upload));
        self.drain(src);
    }

    /// Executes every pending action of `node`'s planner. Re-entrant calls (an action that
    /// makes another planner act) are queued, so the call depth stays bounded.
    fn drain(&mut self, node: u32) {
        // A call that queued no action changed no timer ([`Planner::has_actions`]): only
        // whether the planner may act on announcements needs updating. Except that a drain
        // moves a timer due at this instant one nanosecond later (see `drain_one`), which
        // changes the order of events: that drain still runs.
        let planner = self.peek(node);
        if !planner.has_actions() && !self.timer_due_now(node) {
            let passive = !planner.acts_on_announcements();
            drop(planner);
            let left = self.left(node);
            self.half_mut(node).passive[at(node)] = !left && passive;
            return;
        }
        drop(planner);
        self.drain_forced(node);
    }

    /// Whether `node`'s timer is due at this instant (a drain then moves it, see `drain_one`).
    fn timer_due_now(&self, node: u32) -> bool {
        self.node(node).timer.is_some_and(|t| t <= self.w.now)
    }

    /// [`Cx::drain`], also when the planner queued no action (its timer is re-armed).
    fn drain_forced(&mut self, node: u32) {
        self.w.drain_queue.push(node);
        if self.w.draining {
            return;
        }
        self.w.draining = true;
        while let Some(n) = self.w.drain_queue.pop() {
            self.drain_one(n);
        }
        self.w.draining = false;
    }

    fn drain_one(&mut self, node: u32) {
        // One lock for the last poll and the two queries after it.
        let (timeout, acts) = loop {
            // Polls read nothing announcements change.
            let mut planner = self.planner_keep_held(node);
            let Some(a) = planner.poll_action() else {
                break (planner.poll_timeout(), planner.acts_on_announcements());
            };
            drop(planner);
            if self.k.cfg.log_node == Some(node) {
                eprintln!("{:.4} n{node} {a:?}", self.w.now as f64 / 1e9);
            }
            self.act(node, a);
        };
        // Re-arm the timer if the planner wants another one.
        let want = timeout.map(|d| ns(d).max(self.w.now + 1));
        let left = self.left(node);
        let n = self.node_mut(node);
        if !left && want.is_some() && want != n.timer {
            n.timer = want;
            n.timer_ver = n.timer_ver.wrapping_add(1);
            let ver = n.timer_ver;
            if let Some(t) = want {
                self.push(node, t, Ev::Timer { node, ver });
            }
        }
        self.half_mut(node).passive[at(node)] = !left && !acts;
    }

    /// `node`'s planner, for a call into it: the announcements that arrived for it are taken
    /// in first (see the `Have` event), and until its next drain it counts as one that may
    /// act on announcements.
    fn planner_mut(&mut self, node: u32) -> PlannerRef<'a> {
        self.planner_with(node, true)
    }

    /// `node`'s planner for a call that does not read what peers have (polling it, or see
    /// [`Planner::upload_requests_read_announcements`]): like [`Cx::planner_mut`], but the
    /// announcements held back for it stay so (for the announcement thread, or its next
    /// call that reads them).
    fn planner_keep_held(&mut self, node: u32) -> PlannerRef<'a> {
        self.planner_with(node, false)
    }

    /// [`Cx::planner_mut`] (`catch_up`) or [`Cx::planner_keep_held`].
    fn planner_with(&mut self, node: u32, catch_up: bool) -> PlannerRef<'a> {
        let k = self.k;
        let x = at(node);
        let mut due = std::mem::take(&mut self.w.due_scratch);
        if !self.node(node).reports.is_empty() {
            self.take_due_reports(node, &mut due);
        }
        let now = self.w.now;
        let h = self.half_mut(node);
        let was_passive = h.passive[x];
        h.passive[x] = false;
        let mut slot = lock(&k.shared.slots[node as usize]);
        // First the reports due before this call, in event order: they came before the
        // announcement this call may be taking in, and commute with those held back (which
        // only count what peers have).
        for r in due.drain(..) {
            slot.planner
                .handle_request_progress(dur(r.at), RequestId(r.req), FIRST_REPORT);
            debug_assert!(!slot.planner.has_actions(), "a first progress report acted");
            self.w.events += 1;
            self.w.events_by_kind[9] += 1;
        }
        self.w.due_scratch = due;
        let h = self.half_mut(node);
        if !catch_up {
            // Only announcements a planner cannot act on are still held at a call.
            debug_assert_ne!(h.unseen[x], UNSEEN_NOW);
            return PlannerRef(slot);
        }
        match std::mem::replace(&mut h.unseen[x], UNSEEN_NONE) {
            UNSEEN_NONE => {}
            UNSEEN_HELD => {
                k.shared.unseen[node as usize].store(false, Ordering::Relaxed);
                // Unless the announcement thread has taken in all that was held back.
                let handled = k.shared.handled[node as usize].load(Ordering::Acquire);
                if !k.thread || handled != h.posted[x] {
                    slot.take_in(&k.shared, dur(now), &mut self.w.announced);
                }
                debug_assert!(
                    !was_passive || !slot.planner.has_actions(),
                    "a held-back announcement acted"
                );
            }
            _ => {
                k.shared.unseen[node as usize].store(false, Ordering::Relaxed);
                slot.take_in(&k.shared, dur(now), &mut self.w.announced);
            }
        }
        PlannerRef(slot)
    }

    /// Moves `node`'s progress reports that are due before the event being handled into
    /// `due`, in event order, each transfer advanced to its report's time on the way.
    fn take_due_reports(&mut self, node: u32, due: &mut Vec<Report>) {
        let (now, seq) = (self.w.now, self.w.cur_seq);
        self.node_mut(node).reports.retain(|r| {
            let is_due = (r.at, r.seq) < (now, seq);
            if is_due {
                due.push(*r);
            }
            !is_due
        });
        due.sort_unstable_by_key(|r| (r.at, r.seq));
        for r in due.iter() {
            // (A transfer from the other half is not stopped at its report: the sender's half
            // owns it.)
            if r.flow != u32::MAX && !self.comes_from_other_half(r.flow, node) {
                self.advance_flow(r.flow, r.at);
                self.flow_mut(r.flow).report_at = Ns::MAX;
            }
        }
    }

    /// Makes `b` a peer whose announcements `a`'s planner takes in, from the next one on
    /// (the earlier ones are in the have set `a` is given on connecting).
    fn link(&mut self, a: u32, b: u32) {
        let shared = &self.k.shared;
        let mut slot = lock(&shared.slots[a as usize]);
        let taken = shared.arrived[slot.half][b as usize].load(Ordering::Relaxed);
        slot.seen.push(Seen {
            peer: b,
            taken,
            slot: None,
        });
    }

    /// Undoes [`Cx::link`].
    fn unlink(&mut self, a: u32, b: u32) {
        lock(&self.k.shared.slots[a as usize])
            .seen
            .retain(|s| s.peer != b);
    }

    /// `node`'s planner for a query that announcements cannot change (those not taken in
    /// yet stay so).
    fn peek(&self, node: u32) -> PlannerRef<'a> {
        let k: &'a Setup = self.k;
        PlannerRef(lock(&k.shared.slots[node as usize]))
    }

    fn act(&mut self, node: u32, a: Action) {
        let lat = self.k.lat;
        let now = self.w.now;
        match a {
            Action::Request { id, peer, range } => {
                let peer = peer.0 as u32;
                self.w.requests += 1;
                self.node_mut(node).reqs.insert(
                    id.0,
                    ReqState {
                        peer,
                        arrived: false,
                        flow: None,
                    },
                );
                self.push(
                    node,
                    now + lat,
                    Ev::ReqArrive {
                        src: peer,
                        dst: node,
                        req: id.0,
                        range: (range.start, range.end),
                    },
                );
            }
            Action::Cancel { id } => {
                if let Some(r) = self.node_mut(node).reqs.remove(&id.0) {
                    // Stop counting at the receiver now; the sender stops one latency later.
                    // (A transfer from the other half, with a window, runs on until the
                    // cancel arrives: the receiver cannot reach into the sender's half.)
                    if let Some(f) = r.flow
                        && !self.crosses(node, r.peer)
                    {
                        self.kill_flow(f, true, node);
                    }
                    // Without a window, a request that has not arrived yet is not followed:
                    // ReqArrive finds it gone.
                    if r.arrived || self.k.win > 0 {
                        self.push(
                            node,
                            now + lat,
                            Ev::CancelArrive {
                                src: r.peer,
                                dst: node,
                                req: id.0,
                            },
                        );
                    }
                }
            }
            Action::AcceptUpload { id } => {
                let Some(&(dst, req, range)) = self.node(node).ups.get(&id.0) else {
                    return;
                };
                if self.k.win == 0 && !self.node(dst).reqs.contains_key(&req) {
                    // Cancelled: the CancelArrive is on its way.
                    return;
                }
                let liar = self.node(node).liar;
                let len = (range.1 - range.0) as f64;
                let total = if liar {
                    (CHUNK_GROUP as f64).min(len)
                } else {
                    len
                };
                let f = self.start_flow(node, dst, req, id.0, total, liar);
                // A receiver cannot end a transfer from the other half: it is not told which
                // serves its request.
                if !self.crosses(node, dst)
                    && let Some(r) = self.node_mut(dst).reqs.get_mut(&req)
                {
                    r.flow = Some(f);
                }
            }
            Action::RefuseUpload { id } => {
                if let Some((dst, req, _)) = self.node_mut(node).ups.remove(&id.0) {
                    self.push(node, now + lat, Ev::Refused { dst, req });
                }
            }
            Action::Ban { peer } | Action::Disconnect { peer } => {
                let peer = peer.0 as u32;
                if self.k.win > 0 {
                    // Touches both ends: at the window's end.
                    self.half_mut(node).win_drops.push((node, peer));
                } else {
                    self.top_mut()
                        .shunned
                        .insert((node.min(peer), node.max(peer)));
                    self.disconnect(node, peer);
                }
            }
            Action::Offer { peer } => {
                self.push(
                    node,
                    now + lat,
                    Ev::Offer {
                        from: node,
                        to: peer.0 as u32,
                    },
                );
            }
            Action::Announce { partition } => {
                // Only honest copies count for the origin's departure.
                if node != ORIGIN && !self.node(node).liar {
                    if self.k.win == 0 {
                        let leaves = self.k.cfg.origin_leaves_after_copy;
                        let top = self.top_mut();
                        let c = &mut top.copies[partition as usize];
                        *c += 1;
                        if *c == 1 {
                            top.uncovered -= 1;
                            if top.uncovered == 0 && leaves && !top.origin_left {
                                top.origin_left = true;
                                self.leave(ORIGIN);
                            }
                        }
                    } else {
                        // Each half counts its own; the counts meet at the window's end.
                        let h = self.half_mut(node);
                        if !h.covered[partition as usize] {
                            h.covered[partition as usize] = true;
                            h.newly_covered.push(partition);
                        }
                    }
                }
                if self.k.win > 0 {
                    // Written to the log as it is sent: each half counts its arrivals.
                    let n = self.node(node).announced;
                    let shared = &self.k.shared;
                    shared.log[shared.log_index(node, n)].store(partition, Ordering::Relaxed);
                    self.node_mut(node).announced += 1;
                }
                self.push(
                    node,
                    now + lat,
                    Ev::Have {
                        from: node,
                        part: partition,
                    },
                );
            }
            Action::Complete => {
                let n = self.node_mut(node);
                if n.done_at.is_none() && node != ORIGIN {
                    n.done_at = Some(now);
                    if !n.liar {
                        self.half_mut(node).honest_left -= 1;
                    }
                }
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Fluid transfers

    /// Whether the event being handled may touch `node`'s state (its half runs).
    fn owns(&self, node: u32) -> bool {
        self.mine.is_none_or(|m| m == (node & 1) as usize)
    }

    /// Whether transfer `f` comes into `node` from the other half (its id is even when its
    /// sender is; [`SimConfig::window`]).
    fn comes_from_other_half(&self, f: u32, node: u32) -> bool {
        self.k.win > 0 && (f ^ node) & 1 == 1
    }

    /// Whether a transfer between `a` and `b` crosses the halves ([`SimConfig::window`]).
    fn crosses(&self, a: u32, b: u32) -> bool {
        self.k.win > 0 && (a ^ b) & 1 == 1
    }

    /// Whether the current window's end has anything to do.
    fn window_end_has_work(&self) -> bool {
        self.h.iter().flatten().any(|h| {
            !h.win_adds.is_empty()
                || !h.win_unlists.is_empty()
                || !h.win_free.is_empty()
                || !h.win_pairs.is_empty()
                || !h.win_joins.is_empty()
                || !h.win_drops.is_empty()
        }) || (self.top().origin_left && !self.left(ORIGIN))
    }

    /// The transfers of a [`side`], each with the node at its other end.
    fn side_flows(&self, k: u32) -> &[(u32, u32)] {
        let n = self.nic(k / 2);
        if k % 2 == 1 {
            &n.up_flows
        } else {
            &n.down_flows
        }
    }

    /// First at a window's end: the events each half made for the other reach its queue, and
    /// the partitions the halves got first copies of are counted (the origin may leave).
    fn merge_window(&mut self) {
        for h in 0..2 {
            let mut out = std::mem::take(&mut self.hh(h).outbox);
            for (t, seq, ev) in out.drain(..) {
                self.hh(1 - h).heap.push(t, seq, ev);
            }
            self.hh(h).outbox = out;
            let mut newly = std::mem::take(&mut self.hh(h).newly_covered);
            let leaves = self.k.cfg.origin_leaves_after_copy;
            let top = self.top_mut();
            for p in newly.drain(..) {
                let c = &mut top.copies[p as usize];
                *c += 1;
                if *c == 1 {
                    top.uncovered -= 1;
                }
            }
            if top.uncovered == 0 && leaves {
                top.origin_left = true;
            }
            self.hh(h).newly_covered = newly;
        }
    }

    /// The end of a window: what touches both halves happens (joins, bans and
    /// disconnections, the origin's departure, receivers learning of transfers from the
    /// other half), what ended at one end of a transfer between the halves reaches the
    /// other, and the rates are re-shared around every side where such a transfer started,
    /// or ended at its receiver (its sender's side was re-shared in the window).
    fn window_end(&mut self) {
        self.w.in_barrier = true;
        // What one half did to the other's side of transfers between them.
        for h in 0..2 {
            for f in std::mem::take(&mut self.hh(h).win_adds) {
                let x = self.flow(f);
                if x.alive {
                    let (src, dst, snap) = (x.src, x.dst, x.snap());
                    self.nic_mut(dst).down_flows.push((f, src));
                    self.set_snap(dst, f, snap);
                }
            }
        }
        let mut d = Vec::new();
        for h in 0..2 {
            for (k, f, rate) in std::mem::take(&mut self.hh(h).win_unlists) {
                let half = self.half_mut(k / 2);
                let x = &mut half.sides[side_at(k)];
                remove_flow(&mut half.nics[at(k / 2)].down_flows, &mut x.used, f, rate);
                d.push(k);
            }
            let x = self.hh(h);
            x.free.append(&mut x.win_free);
        }
        // What touches both halves.
        for h in 0..2 {
            for node in std::mem::take(&mut self.hh(h).win_joins) {
                self.join(node);
            }
        }
        for h in 0..2 {
            for (node, peer) in std::mem::take(&mut self.hh(h).win_drops) {
                self.top_mut()
                    .shunned
                    .insert((node.min(peer), node.max(peer)));
                self.disconnect(node, peer);
            }
        }
        if self.top().origin_left && !self.left(ORIGIN) {
            self.leave(ORIGIN);
        }
        // The sides these changed: re-shared first with the transfers between the halves
        // held fixed, then with them below. (A side whose changes stayed within its half was
        // re-shared in the window, its transfers between the halves held at their rates
        // until one starts or ends at it.)
        if !self.w.dirty.is_empty() {
            d.extend_from_slice(&self.w.dirty);
            self.flush_dirty();
        }
        let mut pairs = Vec::new();
        for h in 0..2 {
            pairs.append(&mut self.hh(h).win_pairs);
        }
        d.sort_unstable();
        d.dedup();
        // The sides where a transfer between the halves started, as one group, then the
        // other changed sides as another; not a few sides at a time as within a window: the
        // groups of a window's end share far sides, and a group re-shared early took what
        // later ones would have shared (and the transfers of shared sides were visited once
        // per group).
        self.w.window_flush = true;
        self.recompute(&pairs);
        self.recompute(&d);
        self.w.window_flush = false;
        self.w.in_barrier = false;
    }

    /// What `dst`'s half knows of transfer `f` from the other half.
    fn set_snap(&mut self, dst: u32, f: u32, snap: Snap) {
        let h = self.half_mut(dst);
        let i = at(f);
        if h.xin.len() <= i {
            h.xin.resize(i + 1, Snap::default());
        }
        h.xin[i] = snap;
    }

    /// Moves transfer `f`'s version on (see [`Half::vers`]); returns the new one.
    fn next_ver(&mut self, f: u32) -> u32 {
        let v = &mut self.half_mut(f).vers[at(f)];
        *v = v.wrapping_add(1);
        *v
    }

    fn start_flow(
        &mut self,
        src: u32,
        dst: u32,
        req: u64,
        upload: u64,
        total: f64,
        bad: bool,
    ) -> u32 {
        let id = if self.k.win == 0 {
            let top = self.top_mut();
            match top.free_flows.pop() {
                Some(id) => id,
                None => {
                    let id = top.flows_made;
                    top.flows_made += 1;
                    self.half_mut(id).add_flow_slot();
                    id
                }
            }
        } else {
            // Ids by the sender's half: each half numbers its transfers alone.
            let h = self.half_mut(src);
            h.free.pop().unwrap_or_else(|| {
                let id = 2 * h.flows_made + (src & 1);
                h.flows_made += 1;
                h.add_flow_slot();
                id
            })
        };
        let now = self.w.now;
        // End events of the id's earlier transfer are out of date.
        self.next_ver(id);
        *self.flow_mut(id) = Flow {
            alive: true,
            src,
            dst,
            req,
            upload,
            total,
            done: 0.0,
            rate: 0.0,
            last: now,
            bad,
            sched: Ns::MAX,
            progress: false,
            report_at: Ns::MAX,
            snap_done: 0.0,
            snap_at: now,
        };
        self.nic_mut(src).up_flows.push((id, dst));
        if self.crosses(src, dst) {
            // The receiver's half lists it at the window's end.
            let h = self.half_mut(src);
            h.win_adds.push(id);
            h.win_pairs.push(side(src, true));
            h.win_pairs.push(side(dst, false));
        } else {
            self.nic_mut(dst).down_flows.push((id, src));
            self.w.dirty.push(side(src, true));
            self.w.dirty.push(side(dst, false));
        }
        id
    }

    fn advance_flow(&mut self, f: u32, now: Ns) {
        // A pending first progress report stops the transfer at its time first (handled as an
        // event, it did; the same rounding of `done`).
        let at = self.flow(f).report_at;
        if at < now {
            self.advance_flow_to(f, at);
        }
        self.advance_flow_to(f, now);
    }

    fn advance_flow_to(&mut self, f: u32, now: Ns) {
        let win = self.k.win;
        // (Only the sender's half reaches it.)
        let fl = self.flow_mut(f);
        if now <= fl.last {
            return;
        }
        let add = (fl.rate * (now - fl.last) as f64 / 1e9).min(fl.total - fl.done);
        fl.done += add;
        fl.last = now;
        let (src, dst, bad, req) = (fl.src, fl.dst, fl.bad, fl.req);
        if src == ORIGIN {
            self.half_mut(ORIGIN).origin_egress += add;
        }
        // A liar's transfers, and only those, carry bad data; the receiver takes in bytes of
        // requests it still has. (With a window the receiver counts them, see `DataDone`.)
        if win == 0 && bad {
            let d = self.node(dst);
            if d.bad_from.get(&src).is_some_and(|&t| t < now) && d.reqs.contains_key(&req) {
                self.hh(0).liar_bytes_after_bad += add;
            }
        }
    }

    /// Removes a flow (finished or aborted at node `at`, one of its ends) and re-shares the
    /// capacities around it (at the other end at the window's end, for a transfer between
    /// the halves).
    fn kill_flow(&mut self, f: u32, aborted: bool, at_node: u32) {
        let now = self.w.now;
        self.advance_flow(f, now);
        let fl = self.flow_mut(f);
        if !fl.alive {
            return;
        }
        fl.alive = false;
        let (src, dst, done, bad, req, rate) = (fl.src, fl.dst, fl.done, fl.bad, fl.req, fl.rate);
        let had_report = std::mem::replace(&mut fl.report_at, Ns::MAX) != Ns::MAX;
        fl.rate = 0.0;
        self.next_ver(f);
        if had_report {
            // A report due before now stays for the receiver's next call; a later one would
            // have found the transfer gone.
            let seq = self.w.cur_seq;
            let reports = &mut self.node_mut(dst).reports;
            if let Some(i) = reports.iter().position(|r| r.flow == f) {
                if (reports[i].at, reports[i].seq) < (now, seq) {
                    reports[i].flow = u32::MAX;
                } else {
                    reports.swap_remove(i);
                }
            }
        }
        if aborted {
            // The receiver keeps the verified prefix (whole chunk groups) of an honest transfer.
            let kept = if bad {
                0.0
            } else {
                (done / CHUNK_GROUP as f64).floor() * CHUNK_GROUP as f64
            };
            let h = if self.k.win == 0 { 0 } else { (f & 1) as usize };
            self.hh(h).wasted += done - kept;
        }
        // Within a window, a transfer between the halves ends at its sender (a receiver
        // does not end one): its receiver's side learns of it at the window's end.
        let defer = self.crosses(src, dst) && !self.w.in_barrier;
        debug_assert!(self.owns(at_node), "transfer {f} ended from the other half");
        debug_assert!(
            !defer || at_node == src,
            "a receiver ended a transfer from the other half"
        );
        let h = self.half_mut(src);
        let k = side_at(side(src, true));
        remove_flow(&mut h.nics[at(src)].up_flows, &mut h.sides[k].used, f, rate);
        self.w.dirty.push(side(src, true));
        if defer {
            let h = self.half_mut(src);
            h.win_unlists.push((side(dst, false), f, rate));
            h.win_free.push(f);
        } else {
            let h = self.half_mut(dst);
            let k = side_at(side(dst, false));
            remove_flow(
                &mut h.nics[at(dst)].down_flows,
                &mut h.sides[k].used,
                f,
                rate,
            );
            self.w.dirty.push(side(dst, false));
            if let Some(r) = self.node_mut(dst).reqs.get_mut(&req)
                && r.flow == Some(f)
            {
                r.flow = None;
            }
            if self.k.win == 0 {
                self.top_mut().free_flows.push(f);
            } else {
                self.half_mut(f).free.push(f);
            }
        }
    }

    fn flow_end(&mut self, f: u32) {
        let fl = self.flow(f).clone();
        self.advance_flow(f, self.w.now);
        let (src, dst, req, upload, bad) = (fl.src, fl.dst, fl.req, fl.upload, fl.bad);
        // Bytes of a liar's transfer are counted as wasted.
        self.kill_flow(f, bad, src);
        self.node_mut(src).ups.remove(&upload);
        let now = dur(self.w.now);
        self.planner_mut(src)
            .handle_upload_done(now, UploadId(upload));
        self.drain(src);
        let bad = if bad { fl.total as u32 } else { 0 };
        let t = self.w.now + self.k.lat;
        self.push(src, t, Ev::DataDone { dst, req, bad });
    }

    /// Re-shares capacities after the transfers on `changed` sides (`node * 2 + is_up`: a
    /// node's upload or its download) changed.
    ///
    /// Max-min fairness by progressive filling over the transfers of the changed sides, with
    /// every other transfer's rate held fixed (its share of a node is taken off that node's
    /// capacity first). A second round re-fills around the sides that gained capacity because
    /// a transfer of theirs slowed down. Local, so O(transfers near the change) per event,
    /// and always feasible: no node ever sends or receives more than its capacity.
    fn recompute(&mut self, changed: &[u32]) {
        let freed = self.refill(changed);
        if self.k.cfg.second_round && !freed.is_empty() {
            self.refill(&freed);
        }
    }

    /// Re-shares rates around every side whose transfers changed at this instant, eight
    /// sides at a time (the reports were measured so; one group per instant was no faster,
    /// see `docs/scheduling.md`, sixteenth round).
    fn flush_dirty(&mut self) {
        let mut d = std::mem::take(&mut self.w.dirty);
        d.sort_unstable();
        d.dedup();
        for chunk in d.chunks(8) {
            self.recompute(chunk);
        }
        d.clear();
        self.w.dirty = d;
    }

    /// One progressive-filling round over the transfers of `sides`; returns the sides at the
    /// far end of transfers that slowed down (only with [`SimConfig::second_round`]).
    fn refill(&mut self, sides: &[u32]) -> Vec<u32> {
        let mut sc = std::mem::take(&mut self.w.scratch);
        let freed = self.refill_with(sides, &mut sc);
        self.w.scratch = sc;
        freed
    }

    fn refill_with(&mut self, sides: &[u32], sc: &mut Scratch) -> Vec<u32> {
        // (transfer, sender, receiver), in the order of the transfers' ids.
        let fl = &mut sc.flows;
        fl.clear();
        let all = self.k.win == 0 || self.w.window_flush;
        for &k in sides {
            let node = k / 2;
            let list = self.side_flows(k);
            // In a window, without the transfers between the halves: their rates are set at
            // the window's end (and a download's from the other half are that half's).
            let mine = |far: u32| all || (far ^ node) & 1 == 0;
            let up = k % 2 == 1;
            fl.extend(
                list.iter()
                    .filter(|x| mine(x.1))
                    .map(|&(f, far)| if up { (f, node, far) } else { (f, far, node) }),
            );
        }
        fl.sort_unstable_by_key(|x| x.0);
        fl.dedup_by_key(|x| x.0);
        if fl.is_empty() {
            return Vec::new();
        }
        // Constraints: one per (node, direction) that a transfer of `fl` uses, found through
        // `sc.slot` (indexed by `node * 2 + is_up`, valid when stamped with this round's
        // epoch): residual capacity and unfrozen users.
        sc.epoch = sc.epoch.wrapping_add(1);
        if sc.epoch == 0 {
            sc.slot.iter_mut().for_each(|s| *s = (0, 0));
            sc.epoch = 1;
        }
        if sc.slot.len() < self.k.total * 2 {
            sc.slot.resize(self.k.total * 2, (0, 0));
        }
        let epoch = sc.epoch;
        // The transfers' records (prefetched: only their rates are read below) and both their
        // sides (known from the nodes' transfer lists) are read ahead, in a pass with no branch
        // on what it reads, so that these cache misses overlap instead of stalling the pass
        // below one by one.
        let mut ahead = 0u64;
        for &(f, src, dst) in fl.iter() {
            prefetch_index(&self.half(f).flows, at(f));
            ahead ^= self.side_of(side(src, true)).used.to_bits()
                ^ self.side_of(side(dst, false)).used.to_bits()
                ^ u64::from(sc.slot[side(src, true) as usize].0)
                ^ u64::from(sc.slot[side(dst, false) as usize].0);
        }
        std::hint::black_box(ahead);
        let cons = &mut sc.cons;
        cons.clear();
        let ends = &mut sc.ends;
        ends.clear();
        for &(_, src, dst) in fl.iter() {
            let mut end = |node: u32, up: bool| {
                let k = side(node, up) as usize;
                let s = &mut sc.slot[k];
                if s.0 != epoch {
                    *s = (epoch, cons.len() as u32);
                    // Residual capacity: what the transfers outside `fl` leave (their rates
                    // held fixed); the rates of `fl` are added back below.
                    let x = self.side_of(k as u32);
                    cons.push((x.cap - x.used, 0u32));
                }
                s.1 as usize
            };
            ends.push((end(src, true), end(dst, false)));
        }
        for (i, &(f, _, _)) in fl.iter().enumerate() {
            let r = self.flow(f).rate;
            cons[ends[i].0].0 += r;
            cons[ends[i].1].0 += r;
        }
        for c in cons.iter_mut() {
            c.0 = c.0.max(0.0);
        }
        for &(a, b) in ends.iter() {
            cons[a].1 += 1;
            cons[b].1 += 1;
        }
        let rate = &mut sc.rate;
        rate.clear();
        rate.resize(fl.len(), 0.0);
        // The transfers not frozen yet, as indices into `fl` (each round works on these only;
        // every change to a constraint in a round is the same subtraction, so their order
        // does not matter).
        let active = &mut sc.active;
        active.clear();
        active.extend(0..fl.len() as u32);
        let mut rounds = 0;
        while !active.is_empty() {
            rounds += 1;
            if rounds > 6 {
                // Bounded work per event: the remaining transfers get an equal share of what
                // is left at their tighter end (still feasible, slightly below max-min).
                for &i in active.iter() {
                    let (a, b) = ends[i as usize];
                    let ga = cons[a].0 / f64::from(cons[a].1.max(1));
                    let gb = cons[b].0 / f64::from(cons[b].1.max(1));
                    rate[i as usize] += ga.min(gb).max(0.0);
                }
                break;
            }
            let delta = cons
                .iter()
                .filter(|c| c.1 > 0)
                .map(|c| c.0 / f64::from(c.1))
                .fold(f64::INFINITY, f64::min)
                .max(0.0);
            if !delta.is_finite() {
                break;
            }
            for &i in active.iter() {
                let (a, b) = ends[i as usize];
                rate[i as usize] += delta;
                cons[a].0 -= delta;
                cons[b].0 -= delta;
            }
            let before = active.len();
            let full = 1e-6 * (1.0 + delta);
            active.retain(|&i| {
                let (a, b) = ends[i as usize];
                if cons[a].0 <= full || cons[b].0 <= full {
                    cons[a].1 -= 1;
                    cons[b].1 -= 1;
                    false
                } else {
                    true
                }
            });
            if active.len() == before {
                break;
            }
        }
        let now = self.w.now;
        let mut freed = Vec::new();
        for (i, &(f, _, _)) in fl.iter().enumerate() {
            // Below a byte per second is no progress (and would overflow the clock).
            let new = if rate[i] < 1.0 { 0.0 } else { rate[i] };
            let old = self.flow(f).rate;
            // A rise under 1 % is not applied: it would only move this transfer's end event a
            // little earlier (a fifth of all events), and leaving it is feasible (at most 1 %
            // of a capacity unused, so the simulator errs on the slow side).
            if (new - old).abs() <= 1e-9 * new.max(1.0) || (new > old && new < old * 1.01) {
                continue;
            }
            if new < old && self.k.cfg.second_round {
                let x = self.flow(f);
                for s in [side(x.src, true), side(x.dst, false)] {
                    if !sides.contains(&s) {
                        freed.push(s);
                    }
                }
            }
            self.advance_flow(f, now);
            let x = self.flow_mut(f);
            x.rate = new;
            x.snap_done = x.done;
            x.snap_at = now;
            let (src, dst, snap) = (x.src, x.dst, x.snap());
            self.side_of_mut(side(src, true)).used += new - old;
            self.side_of_mut(side(dst, false)).used += new - old;
            let cross = self.crosses(src, dst);
            if cross {
                // (At a window's end: in a window these keep their rates.)
                self.set_snap(dst, f, snap);
            }
            let lat = self.k.lat;
            let x = self.flow_mut(f);
            let remaining = (x.total - x.done).max(0.0);
            if new > 0.0 && !x.progress && x.total > PROGRESS_STEP as f64 && !x.bad {
                // The receiver sees the first PROGRESS_STEP bytes one latency after they left.
                x.progress = true;
                let step = (PROGRESS_STEP as f64 - x.done).max(0.0);
                let t = now + lat + ((step / new) * 1e9).ceil() as Ns;
                if !cross {
                    x.report_at = t;
                }
                let (src, dst, req) = (x.src, x.dst, x.req);
                // Numbered as the event it stands for.
                let seq = self.next_seq(src);
                self.node_mut(dst).reports.push(Report {
                    at: t,
                    seq,
                    flow: f,
                    req,
                });
            }
            let x = self.flow_mut(f);
            if new > 0.0 {
                // Only an earlier end needs a new event; a later one is re-armed when the
                // pending event fires early.
                let t = now.saturating_add(((remaining / new) * 1e9).ceil() as Ns);
                if t < x.sched {
                    x.sched = t;
                    let src = x.src;
                    let ver = self.next_ver(f);
                    self.push(src, t, Ev::FlowEnd { flow: f, ver });
                }
            }
        }
        debug_assert!(
            fl.iter().all(|&(f, _, _)| {
                let x = self.flow(f);
                [side(x.src, true), side(x.dst, false)].iter().all(|&k| {
                    let s = self.side_of(k);
                    s.used <= s.cap * (1.0 + 1e-6) + 1.0
                })
            }),
            "a side carries more than its capacity"
        );
        freed.sort_unstable();
        freed.dedup();
        freed
    }
}

/// Reusable buffers of [`Cx::refill`] (it runs millions of times; allocating them each time
/// cost a tenth of the run).
#[derive(Debug, Default)]
struct Scratch {
    /// (transfer, sender, receiver).
    flows: Vec<(u32, u32, u32)>,
    /// Per constraint: residual capacity, unfrozen users.
    cons: Vec<(f64, u32)>,
    /// Per transfer of `flows`: its constraints (upload end, download end).
    ends: Vec<(usize, usize)>,
    /// Per `node * 2 + is_up`: (epoch, constraint index).
    slot: Vec<(u32, u32)>,
    epoch: u32,
    rate: Vec<f64>,
    /// Transfers of `flows` not frozen yet (indices).
    active: Vec<u32>,
}

/// A node's upload (`up`) or download side, as a key: `node * 2 + up`.
fn side(node: u32, up: bool) -> u32 {
    node * 2 + u32::from(up)
}

/// Takes transfer `f` (at `rate`) off one side of a node: its list and its rate sum (reset to
/// exactly 0 when no transfer is left, so rounding errors do not pile up).
fn remove_flow(flows: &mut Vec<(u32, u32)>, used: &mut f64, f: u32, rate: f64) {
    flows.retain(|x| x.0 != f);
    *used = if flows.is_empty() { 0.0 } else { *used - rate };
}

fn shuffle<T>(v: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

/// Runs one simulation.
pub fn run(cfg: SimConfig) -> SimReport {
    Sim::new(cfg).run()
}

/// Why a size argument could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {0:?}: expected bytes like 4194304, 4MiB, 1GiB, 512KiB or 1TiB")]
pub struct SizeError(pub String);

/// Parses `1234`, `16KiB`, `4MiB`, `1GiB`, `1TiB` (also `K`/`M`/`G`/`T`, `KB`… meaning the same
/// binary units).
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| SizeError(s.to_string()))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(SizeError(s.to_string())),
    };
    n.checked_mul(mult).ok_or_else(|| SizeError(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nodes present from the start form a random graph: every node is a few hops from the
    /// origin (joining one by one into the slots of earlier joiners made a band-shaped graph
    /// with a diameter of about N / initial_peers hops).
    #[test]
    fn start_topology_has_a_small_diameter() {
        let mut sim = Sim::new(SimConfig {
            nodes: 400,
            size: 1 << 20,
            partition_size: 1 << 20,
            ..SimConfig::default()
        });
        let mut cx = sim.cx();
        while cx.hh(0).heap.peek_time() == Some(0) {
            match cx.hh(0).heap.pop() {
                Some((_, _, Ev::Join { node })) => cx.join(node),
                Some((t, seq, ev)) => {
                    cx.hh(0).heap.push(t, seq, ev);
                    break;
                }
                None => break,
            }
        }
        let mut dist = vec![u32::MAX; cx.k.total];
        dist[ORIGIN as usize] = 0;
        let mut queue = std::collections::VecDeque::from([ORIGIN]);
        while let Some(x) = queue.pop_front() {
            for &y in &cx.top().peers[x as usize] {
                if dist[y as usize] == u32::MAX {
                    dist[y as usize] = dist[x as usize] + 1;
                    queue.push_back(y);
                }
            }
        }
        let far = dist.iter().copied().max().unwrap_or(u32::MAX);
        assert!(far <= 4, "a node is {far} hops from the origin");
    }

    /// Planners with more peers than one 32-bit mask word holds: the swarm completes (debug
    /// builds also check every planner's per-slot counts on each offer round).
    #[test]
    fn planners_with_more_than_32_peers_complete() {
        let r = run(SimConfig {
            nodes: 64,
            size: 16 << 20,
            partition_size: 1 << 20,
            initial_peers: 40,
            max_peers: 48,
            planner: Config {
                max_connected_peers: 48,
                ..Config::default()
            },
            ..SimConfig::default()
        });
        assert!(!r.hit_limit);
        assert_eq!(r.completed_nodes, r.honest_nodes);
    }

    /// With a window (rates between the two halves set once per window, whatever touches
    /// both halves done at its end): every honest node completes, no byte of a liar is taken
    /// in after its first bad one, the run is reproducible, and no side ever carries more
    /// than its capacity (checked in every re-sharing of debug builds).
    #[test]
    fn windowed_runs_complete_and_repeat() {
        let cfg = SimConfig {
            nodes: 48,
            size: 48 << 20,
            partition_size: 1 << 20,
            slow_fraction: 0.1,
            lying_nodes: 2,
            late_join_fraction: 0.2,
            window: Some(Duration::from_millis(1)),
            ..SimConfig::default()
        };
        let a = run(cfg.clone());
        assert!(!a.hit_limit);
        assert_eq!(a.completed_nodes, a.honest_nodes);
        assert_eq!(a.bytes_accepted_from_liars_after_first_bad, 0);
        let origin_leaves = run(SimConfig {
            lying_nodes: 0,
            origin_leaves_after_copy: true,
            ..cfg.clone()
        });
        assert!(origin_leaves.origin_left);
        assert_eq!(origin_leaves.completed_nodes, origin_leaves.honest_nodes);
        let b = run(cfg.clone());
        assert_eq!(a.node_completion_s, b.node_completion_s);
        // The halves' windows on two threads: the same run, to the last byte counted.
        let parallel = run(SimConfig {
            parallel_halves: true,
            ..cfg.clone()
        });
        assert_eq!(a, parallel);
        let parallel_origin_leaves = run(SimConfig {
            lying_nodes: 0,
            origin_leaves_after_copy: true,
            parallel_halves: true,
            ..cfg.clone()
        });
        assert_eq!(origin_leaves, parallel_origin_leaves);
        let at_once = run(SimConfig {
            window: None,
            ..cfg
        });
        assert_ne!(a.node_completion_s, at_once.node_completion_s);
    }

    /// Holding announcements back for passive planners, and delivering them on a second
    /// thread, changes nothing but the cost.
    #[test]
    fn held_back_announcements_give_the_same_run() {
        let cfg = SimConfig {
            nodes: 48,
            size: 48 << 20,
            partition_size: 1 << 20,
            lying_nodes: 2,
            slow_fraction: 0.1,
            ..SimConfig::default()
        };
        let held = run(cfg.clone());
        let direct = run(SimConfig {
            hold_back_announcements: false,
            ..cfg.clone()
        });
        let threaded = run(SimConfig {
            announcement_thread: true,
            ..cfg
        });
        assert_eq!(held.completed_nodes, held.honest_nodes);
        assert_eq!(held, direct);
        assert_eq!(held, threaded);
    }
}
