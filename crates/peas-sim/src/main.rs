//! `peas-sim`: runs one deterministic swarm simulation and prints one JSON object.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use peas_sim::{MIB, SimConfig, parse_size};

/// mimalloc maps memory in large aligned regions and asks for transparent huge pages on them
/// (glibc's heap grows in small steps: at N = 2048, 18 of 206 resident MiB were in huge pages
/// with it, 254 of 271 MiB with mimalloc). The simulator reads its planners (420 MB at
/// N = 4096) at random, so fewer pages mean fewer TLB misses: N = 4096 ran about 8 % faster,
/// back to back.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Simulate pushing one blob from an origin to N peers with the real peas planner.
#[derive(Parser, Debug)]
#[command(name = "peas-sim", version)]
struct Args {
    /// Number of downloaders (the origin comes on top).
    #[arg(long, default_value_t = 16)]
    nodes: usize,
    /// Blob size: bytes, or with a suffix (KiB, MiB, GiB, TiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    size: u64,
    /// Partition size: bytes or with a suffix; a multiple of 16 KiB.
    #[arg(long, default_value = "4MiB", value_parser = parse_size)]
    partition_size: u64,
    /// Largest piece, the unit nodes announce and request (peas uses 1 MiB); the planners work
    /// on pieces of min(partition size, this).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    piece_size: u64,
    /// Largest request (download block) size.
    #[arg(long, value_parser = parse_size)]
    request_size: Option<u64>,
    /// Fraction of downloaders at 1/K capacity.
    #[arg(long, default_value_t = 0.0)]
    slow_fraction: f64,
    /// K: capacity divisor of slow downloaders.
    #[arg(long, default_value_t = 10.0)]
    slow_factor: f64,
    /// Number of downloaders that serve bad data.
    #[arg(long, default_value_t = 0)]
    lying_nodes: usize,
    /// The origin leaves once every partition has a copy elsewhere.
    #[arg(long)]
    origin_leaves_after_copy: bool,
    /// Fraction of downloaders that join late (uniformly in the first half of the bound).
    #[arg(long, default_value_t = 0.0)]
    late_join_fraction: f64,
    /// Upload and download capacity of every node, MiB/s.
    #[arg(long, default_value_t = 100.0)]
    capacity_mib: f64,
    /// Upload capacity of the origin, MiB/s (default: the node capacity).
    #[arg(long)]
    origin_mib: Option<f64>,
    /// One-way link latency, milliseconds.
    #[arg(long, default_value_t = 1.0)]
    latency_ms: f64,
    /// Upload slots per node.
    #[arg(long)]
    upload_slots: Option<usize>,
    /// Upload slots of a complete seed.
    #[arg(long)]
    seed_upload_slots: Option<usize>,
    /// A fixed request budget per node (default: 112 / connected peers, between 6 and 16).
    #[arg(long)]
    max_inflight: Option<usize>,
    /// Requests in flight per peer.
    #[arg(long)]
    max_inflight_per_peer: Option<usize>,
    /// Take a request back when an idle peer is expected this many times faster.
    #[arg(long)]
    steal_factor: Option<f64>,
    /// Endgame once at most this many blocks are missing.
    #[arg(long)]
    endgame_blocks: Option<usize>,
    /// Upload queue length per node.
    #[arg(long)]
    upload_queue: Option<usize>,
    /// How long a refused partition is not asked again from that peer, milliseconds.
    #[arg(long)]
    refusal_memory_ms: Option<u64>,
    /// A request with no progress is moved to an idle peer after this long, milliseconds.
    #[arg(long)]
    stall_steal_ms: Option<u64>,
    /// No request is judged slow before this age, milliseconds.
    #[arg(long)]
    min_steal_ms: Option<u64>,
    /// Serve the peer furthest behind before the rarest partition.
    #[arg(long)]
    neediest_first: bool,
    /// Partitions chosen at random (not rarest-first) at the start.
    #[arg(long)]
    random_first: Option<u32>,
    /// At most one not-yet-flowing request per peer.
    #[arg(long)]
    one_waiting_per_peer: bool,
    /// An unanswered slot offer lapses after this long, milliseconds.
    #[arg(long)]
    offer_timeout_ms: Option<u64>,
    /// Do not offer free upload slots to peers.
    #[arg(long)]
    no_offers: bool,
    /// Disable super-seeding.
    #[arg(long)]
    no_super_seeding: bool,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print a timeline to stderr every this many simulated seconds.
    #[arg(long)]
    trace_s: Option<f64>,
    /// Print every action of this node to stderr (0 = origin).
    #[arg(long)]
    log_node: Option<u32>,
    /// Also re-share around nodes that gained capacity (closer to max-min, slower).
    #[arg(long)]
    two_rounds: bool,
    /// Transfers between odd and even nodes get their rates only at the end of each window of
    /// this many microseconds, which lets the two halves of the swarm run each window's
    /// events on two threads (see --threads): at most the latency; 0 for none (every transfer
    /// re-shared at once, events on one thread). Default: the latency.
    #[arg(long)]
    window_us: Option<u64>,
    /// Peers a node dials when it joins.
    #[arg(long, default_value_t = 16)]
    initial_peers: usize,
    /// Threads: 2 runs the two halves' events of each window on two threads, or without a
    /// window (--window-us 0) lets planners that cannot act on announcements take them in on
    /// a second thread (the same results, sooner on two cores); 1 runs everything on one.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    threads: u8,
    /// Print JSON (the only output format; accepted for compatibility).
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.partition_size == 0 || args.partition_size % peas_sched::CHUNK_GROUP != 0 {
        eprintln!(
            "peas-sim: --partition-size {} is not a positive multiple of 16 KiB",
            args.partition_size
        );
        return ExitCode::from(2);
    }
    if args.piece_size == 0 || args.piece_size % peas_sched::CHUNK_GROUP != 0 {
        eprintln!(
            "peas-sim: --piece-size {} is not a positive multiple of 16 KiB",
            args.piece_size
        );
        return ExitCode::from(2);
    }
    let latency_us = args.latency_ms.max(0.0) * 1000.0;
    let window_us = match args.window_us {
        Some(0) => None,
        Some(w) if w as f64 > latency_us => {
            eprintln!(
                "peas-sim: --window-us {w} is longer than the latency ({latency_us} µs); \
                 use at most that, or 0 for no window"
            );
            return ExitCode::from(2);
        }
        Some(w) => Some(w),
        // The longest window the latency allows (none below a microsecond).
        None => Some(latency_us.floor() as u64).filter(|&w| w > 0),
    };
    let mut cfg = SimConfig {
        nodes: args.nodes,
        size: args.size,
        partition_size: args.partition_size,
        piece_size: args.piece_size,
        upload: args.capacity_mib * MIB,
        download: args.capacity_mib * MIB,
        origin_upload: args.origin_mib.unwrap_or(args.capacity_mib) * MIB,
        latency: Duration::from_secs_f64(args.latency_ms.max(0.0) / 1000.0),
        slow_fraction: args.slow_fraction.clamp(0.0, 1.0),
        slow_factor: args.slow_factor.max(1.0),
        lying_nodes: args.lying_nodes,
        origin_leaves_after_copy: args.origin_leaves_after_copy,
        late_join_fraction: args.late_join_fraction.clamp(0.0, 1.0),
        seed: args.seed,
        ..SimConfig::default()
    };
    cfg.trace = args
        .trace_s
        .filter(|t| *t > 0.0)
        .map(Duration::from_secs_f64);
    cfg.log_node = args.log_node;
    cfg.second_round = args.two_rounds;
    cfg.window = window_us.map(Duration::from_micros);
    cfg.initial_peers = args.initial_peers;
    cfg.announcement_thread = args.threads == 2;
    cfg.parallel_halves = args.threads == 2;
    if let Some(r) = args.request_size {
        cfg.planner.request_size = r;
    }
    if let Some(s) = args.upload_slots {
        cfg.planner.upload_slots = s;
    }
    if let Some(s) = args.seed_upload_slots {
        cfg.planner.seed_upload_slots = s;
    }
    if let Some(s) = args.max_inflight {
        // A fixed budget: the same at every peer count.
        cfg.planner.max_inflight_total = s;
        cfg.planner.min_inflight_total = s;
    }
    if let Some(s) = args.max_inflight_per_peer {
        cfg.planner.max_inflight_per_peer = s;
    }
    if let Some(x) = args.steal_factor {
        cfg.planner.slow_factor = x;
    }
    if let Some(x) = args.endgame_blocks {
        cfg.planner.endgame_blocks = x;
    }
    if let Some(x) = args.upload_queue {
        cfg.planner.upload_queue_total = x;
    }
    if let Some(x) = args.stall_steal_ms {
        cfg.planner.stall_steal_age = Duration::from_millis(x);
    }
    if let Some(x) = args.min_steal_ms {
        cfg.planner.min_steal_age = Duration::from_millis(x);
    }
    if let Some(x) = args.refusal_memory_ms {
        cfg.planner.refusal_memory = Duration::from_millis(x);
    }
    if args.neediest_first {
        cfg.planner.neediest_first = true;
    }
    if let Some(x) = args.random_first {
        cfg.planner.random_first = x;
    }
    if args.one_waiting_per_peer {
        cfg.planner.one_waiting_per_peer = true;
    }
    if let Some(x) = args.offer_timeout_ms {
        cfg.planner.offer_timeout = Duration::from_millis(x);
    }
    if args.no_offers {
        cfg.planner.offers = false;
    }
    if args.no_super_seeding {
        cfg.planner.super_seeding = false;
    }
    let _ = args.json;
    let lying = cfg.lying_nodes > 0;
    let start = Instant::now();
    let report = peas_sim::run(cfg);
    let wall = start.elapsed().as_secs_f64();
    let mut json = report.to_json(wall, lying);
    json["window_us"] = window_us.into();
    println!("{json}");
    ExitCode::SUCCESS
}
