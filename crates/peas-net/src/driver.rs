//! The swarm driver: one task per content, running peas-sched's [`Planner`].
//!
//! The driver is the only place that reads the clock (`tokio::time::Instant`, turned into a
//! [`Duration`] since the driver started) and touches sockets. It feeds the planner events
//! (peer connected with its have-set, have-updates, request progress / done / failed, upload
//! requests, timeouts) and executes its actions:
//! - `Request` → a range request through iroh-blobs' get API into the store
//!   (`execute_get(conn, GetRequest::blob_ranges(..))`; every byte is verified against the
//!   BLAKE3 tree before it is stored; progress is reported as verified bytes);
//! - `Cancel` → the transfer task is aborted (verified chunk groups stay in the store);
//! - `Ban` → the peer is dropped and never dialed or accepted again;
//! - `Announce` → batched into one `Have` per connected peer;
//! - `AcceptUpload` / `RefuseUpload` → the intercepted iroh-blobs get request is answered;
//! - `Disconnect` → the session ends;
//! - `Offer` → an `Offer` message to that peer (a free upload slot), fed to the receiver's
//!   planner as `handle_peer_offer`.
//!
//! Peers come from the manifest's owners, the persisted peer table and peer exchange. A peer
//! that does not speak the swarm protocol (a plain iroh-blobs provider) is still used: its
//! have-set comes from iroh-blobs' observe request.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    ops::Range,
    sync::{Arc, Mutex},
    time::Duration,
};

use iroh::{
    Endpoint, EndpointAddr, EndpointId, RelayUrl,
    endpoint::{Connection, RecvStream, SendStream, VarInt},
};
use iroh_blobs::{
    Hash,
    api::{Store, remote::GetProgressItem},
    get::{GetError, fsm::DecodeError},
    protocol::{
        ChunkRanges, ChunkRangesExt, ERR_LIMIT, ERR_PERMISSION, GetRequest, ObserveRequest,
    },
};
use n0_future::StreamExt;
use peas_proto::{
    ContentHash, Geometry, MAX_HAVE_PARTITIONS, MAX_LISTEN_ADDRS, MAX_PEER_ADDRS, PartitionSet,
    PeerRecord, SWARM_ALPN, SwarmMessage,
};
use peas_sched::{Action, Failure, PeerHave, PeerId, Planner, RequestId, UploadId};
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::AbortHandle,
    time::Instant,
};

use crate::{
    config::NodeConfig,
    convert::{covered_partitions, covers_all, to_endpoint_id, to_node_id},
    peers::PeerTable,
    persist::PeerStore,
    rate::RateLimiter,
    swarm::{observed_addr, read_message, write_message},
    upload::UploadCounters,
    window::WindowSizer,
};

/// How long a peer that left is not redialed.
const REDIAL_AFTER_LEAVE: Duration = Duration::from_secs(30);
/// How long a peer whose session broke is not redialed.
const REDIAL_AFTER_DROP: Duration = Duration::from_secs(2);
/// Two sessions with one peer established within this window are simultaneous dials.
const SIMULTANEOUS_WINDOW: Duration = Duration::from_secs(5);
/// Most dials in progress per swarm.
const MAX_PARALLEL_DIALS: usize = 8;
/// Housekeeping period (dialing, peer exchange, expiry, stall check, progress).
const HOUSEKEEPING: Duration = Duration::from_millis(200);
/// Progress of a transfer is reported to the driver at least every this many bytes.
const PROGRESS_STEP: u64 = 128 * 1024;

/// A swarm stream accepted by the protocol handler, with the peer's `Hello` already read.
pub(crate) struct InboundSession {
    pub(crate) peer: EndpointId,
    pub(crate) conn: Connection,
    pub(crate) send: SendStream,
    pub(crate) recv: RecvStream,
    pub(crate) have: PartitionSet,
    pub(crate) listen: Vec<SocketAddr>,
    pub(crate) observed: Option<SocketAddr>,
    pub(crate) uploads: bool,
}

/// An intercepted iroh-blobs get request waiting for the planner's decision.
pub(crate) struct UploadRequest {
    pub(crate) peer: EndpointId,
    pub(crate) range: Range<u64>,
    /// `true` = serve, `false` = refuse.
    pub(crate) decide: oneshot::Sender<bool>,
    /// Resolves (or closes) when an accepted transfer ended.
    pub(crate) ended: oneshot::Receiver<()>,
}

/// The outcome of dialing a peer.
pub(crate) enum DialOutcome {
    /// The peer speaks the swarm protocol; `Hello`s exchanged.
    Swarm {
        conn: Connection,
        send: SendStream,
        recv: RecvStream,
        have: PartitionSet,
        listen: Vec<SocketAddr>,
        uploads: bool,
    },
    /// The peer only speaks iroh-blobs.
    Plain { conn: Connection },
    /// The peer answered `Leave` (not in this swarm, or full), maybe after telling us other
    /// peers to try.
    Refused { peers: Vec<PeerRecord> },
    /// Unreachable.
    Failed,
}

/// Messages to a driver.
pub(crate) enum DriverMsg {
    Inbound(Box<InboundSession>),
    Upload(Box<UploadRequest>),
    UploadEnded(UploadId),
    Dialed {
        peer: EndpointId,
        outcome: Box<DialOutcome>,
    },
    Frame {
        peer: EndpointId,
        epoch: u64,
        msg: SwarmMessage,
    },
    SessionEnded {
        peer: EndpointId,
        epoch: u64,
    },
    Observed {
        peer: EndpointId,
        epoch: u64,
        ranges: ChunkRanges,
    },
    BlobsConn {
        peer: EndpointId,
        epoch: u64,
        conn: Option<Connection>,
    },
    ReqProgress {
        id: RequestId,
        received: u64,
    },
    ReqDone {
        id: RequestId,
    },
    ReqFailed {
        id: RequestId,
        failure: Failure,
    },
    /// Peer hints (e.g. from the persisted peer table): id and addresses.
    AddPeers(Vec<(EndpointId, Vec<SocketAddr>)>),
    /// Asks for the known peers: id, addresses, time since last seen.
    KnownPeers(oneshot::Sender<Vec<(EndpointId, Vec<SocketAddr>, Duration)>>),
    /// The store reports the blob complete (after the planner said so).
    StoreComplete,
    /// This swarm is now an install: fail when nothing is verified for the stall bound.
    Install,
    Shutdown(oneshot::Sender<()>),
}

/// Where an install or seed stands; published on a watch channel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Verified bytes of the content held locally.
    pub verified_bytes: u64,
    /// The content's size.
    pub total_bytes: u64,
    /// Recent verified download rate in bytes/s (smoothed).
    pub rate: f64,
    /// Peers with an open session in this swarm.
    pub connected_peers: usize,
    /// Bytes this node uploaded (all contents, all peers).
    pub uploaded_bytes: u64,
    /// Whether the whole content is verified locally.
    pub complete: bool,
    /// Set when the download gave up (one-line reason).
    pub failed: Option<String>,
}

/// Per-swarm statistics shared with the handles.
#[derive(Debug, Default)]
pub(crate) struct SwarmStats {
    pub(crate) from_peers: HashMap<EndpointId, u64>,
    pub(crate) already_complete: bool,
    pub(crate) completed_at: Option<std::time::Instant>,
    pub(crate) banned: Vec<EndpointId>,
}

/// Everything a driver needs from the node.
#[derive(Clone)]
pub(crate) struct DriverEnv {
    pub(crate) endpoint: Endpoint,
    pub(crate) store: Store,
    pub(crate) config: NodeConfig,
    pub(crate) listen_addrs: Vec<SocketAddr>,
    pub(crate) download_limiter: RateLimiter,
    pub(crate) uploads: UploadCounters,
    pub(crate) peer_store: Option<Arc<dyn PeerStore>>,
}

enum SessionKind {
    Swarm { out: mpsc::Sender<SwarmMessage> },
    Plain,
}

enum BlobsState {
    None,
    Connecting(Vec<(RequestId, Range<u64>)>),
    /// The connection and the sizing of its receive window.
    Ready(Connection, WindowSizer),
}

struct Session {
    pid: PeerId,
    since: Duration,
    epoch: u64,
    kind: SessionKind,
    dialer: EndpointId,
    conn: Connection,
    blobs: BlobsState,
    tasks: Vec<AbortHandle>,
    uploads: bool,
    plain_have: Option<PartitionSet>,
}

impl Session {
    fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Inflight {
    peer: EndpointId,
    received: u64,
    task: AbortHandle,
}

/// The per-content driver state; see the module docs.
pub(crate) struct Driver {
    env: DriverEnv,
    me: EndpointId,
    hash: Hash,
    content: ContentHash,
    geometry: Geometry,
    planner: Planner,
    table: PeerTable,
    start: Instant,
    tx: mpsc::Sender<DriverMsg>,
    ids: HashMap<EndpointId, PeerId>,
    relays: HashMap<EndpointId, RelayUrl>,
    rev: HashMap<PeerId, EndpointId>,
    next_pid: u64,
    next_gen: u64,
    sessions: HashMap<EndpointId, Session>,
    dialing: HashSet<EndpointId>,
    banned: HashSet<EndpointId>,
    inflight: HashMap<RequestId, Inflight>,
    pending_uploads: HashMap<UploadId, UploadRequest>,
    pending_have: Vec<u32>,
    next_pex: Duration,
    last_progress_at: Duration,
    last_verified: u64,
    ever_connected: bool,
    fail_on_stall: bool,
    failed: bool,
    store_complete: bool,
    completion_watch: bool,
    progress: watch::Sender<Progress>,
    stats: Arc<Mutex<SwarmStats>>,
    rate_window: (Duration, u64),
    rate: f64,
}

/// A handle to a running driver.
#[derive(Clone)]
pub(crate) struct DriverHandle {
    pub(crate) tx: mpsc::Sender<DriverMsg>,
    pub(crate) progress: watch::Receiver<Progress>,
    pub(crate) stats: Arc<Mutex<SwarmStats>>,
}

/// Parameters of a new swarm.
pub(crate) struct SwarmSpec {
    pub(crate) content: ContentHash,
    pub(crate) geometry: Geometry,
    /// Owners from the manifest: id and addresses.
    pub(crate) owners: Vec<(EndpointId, Vec<SocketAddr>, Option<RelayUrl>)>,
}

fn now_since(start: Instant) -> Duration {
    start.elapsed()
}

impl Driver {
    /// Creates the driver, seeds the planner with the locally verified ranges, and spawns it.
    pub(crate) async fn spawn(
        env: DriverEnv,
        spec: SwarmSpec,
    ) -> Result<(DriverHandle, tokio::task::JoinHandle<()>), crate::NetError> {
        let hash = crate::convert::to_blobs_hash(spec.content);
        let mut pcfg = env.config.planner.clone();
        pcfg.max_connected_peers = env.config.max_connected_peers;
        let seed = env.config.seed.unwrap_or_else(rand::random);
        let planner = Planner::try_new(
            pcfg,
            spec.geometry.size(),
            spec.geometry.partition_size(),
            seed,
        )
        .map_err(|e| crate::NetError::Geometry(e.to_string()))?;
        let me = env.endpoint.id();
        let mut table = PeerTable::new(me, env.config.max_known_peers, env.config.peer_ttl);
        let mut relays = HashMap::new();
        for (id, addrs, relay) in &spec.owners {
            table.observe(*id, addrs, Duration::ZERO, true);
            if let Some(r) = relay {
                relays.insert(*id, r.clone());
            }
        }
        if let Some(ps) = &env.peer_store {
            for (id, addrs, age) in ps.load(spec.content) {
                if let Some(id) = to_endpoint_id(id) {
                    // persisted peers count as seen "age" ago; never in the future
                    let _ = age;
                    table.observe(id, &addrs, Duration::ZERO, false);
                }
            }
        }
        let (tx, rx) = mpsc::channel(1024);
        let (progress, progress_rx) = watch::channel(Progress {
            total_bytes: spec.geometry.size(),
            ..Default::default()
        });
        let stats = Arc::new(Mutex::new(SwarmStats::default()));
        let mut d = Driver {
            me,
            hash,
            content: spec.content,
            geometry: spec.geometry,
            planner,
            table,
            start: Instant::now(),
            tx: tx.clone(),
            ids: HashMap::new(),
            relays,
            rev: HashMap::new(),
            next_pid: 1,
            next_gen: 1,
            sessions: HashMap::new(),
            dialing: HashSet::new(),
            banned: HashSet::new(),
            inflight: HashMap::new(),
            pending_uploads: HashMap::new(),
            pending_have: Vec::new(),
            next_pex: Duration::ZERO,
            last_progress_at: Duration::ZERO,
            last_verified: 0,
            ever_connected: false,
            fail_on_stall: false,
            failed: false,
            store_complete: false,
            completion_watch: false,
            progress,
            stats: stats.clone(),
            rate_window: (Duration::ZERO, 0),
            rate: 0.0,
            env,
        };
        d.load_local().await?;
        let already = d.store_complete;
        d.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .already_complete = already;
        d.last_verified = d.planner.verified_bytes();
        d.rate_window = (Duration::ZERO, d.last_verified);
        d.publish(true);
        let task = tokio::spawn(d.run(rx));
        Ok((
            DriverHandle {
                tx,
                progress: progress_rx,
                stats,
            },
            task,
        ))
    }

    /// Seeds the planner with the ranges the store has verified (resume / seeding).
    async fn load_local(&mut self) -> Result<(), crate::NetError> {
        let size = self.geometry.size();
        // protect the blob, partial or complete, from garbage collection (same tag name as
        // peas-store's `tag_name`)
        self.env
            .store
            .tags()
            .set(
                format!("peas/{}", self.content),
                iroh_blobs::HashAndFormat::raw(self.hash),
            )
            .await
            .map_err(|e| crate::NetError::Store(e.to_string()))?;
        let bf = self
            .env
            .store
            .observe(self.hash)
            .await
            .map_err(|e| crate::NetError::Store(e.to_string()))?;
        if bf.is_complete() {
            self.store_complete = true;
            self.stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .completed_at = Some(std::time::Instant::now());
            self.planner.handle_local_have(0..size);
        } else {
            for r in crate::convert::byte_ranges(&bf.ranges, size) {
                self.planner.handle_local_have(r);
            }
        }
        // local-have emits only Complete; drain it so it is not mistaken for a fresh event
        while let Some(a) = self.planner.poll_action() {
            if a == Action::Complete {
                self.mark_complete();
            }
        }
        Ok(())
    }

    fn now(&self) -> Duration {
        now_since(self.start)
    }

    fn pid(&mut self, id: EndpointId) -> PeerId {
        if let Some(p) = self.ids.get(&id) {
            return *p;
        }
        let p = PeerId(self.next_pid);
        self.next_pid += 1;
        self.ids.insert(id, p);
        self.rev.insert(p, id);
        p
    }

    fn my_have(&self) -> PartitionSet {
        let n = self.geometry.partitions();
        if self.planner.is_complete() {
            return PartitionSet::full(n);
        }
        let mut s = PartitionSet::new(n);
        for p in 0..n {
            if self.planner.has_partition(p) {
                s.insert(p);
            }
        }
        s
    }

    fn my_hello(&self) -> SwarmMessage {
        SwarmMessage::Hello {
            hash: self.content,
            have: self.my_have(),
            listen: self
                .env
                .listen_addrs
                .iter()
                .take(MAX_LISTEN_ADDRS)
                .copied()
                .collect(),
            uploads: !self.env.config.no_upload,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<DriverMsg>) {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self
                .planner
                .poll_timeout()
                .map(|t| self.start + t)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    if let DriverMsg::Shutdown(ack) = msg {
                        self.shutdown().await;
                        ack.send(()).ok();
                        return;
                    }
                    self.handle(msg);
                    // drain what is queued without waiting, then act once
                    let mut n = 0;
                    while n < 256 {
                        match rx.try_recv() {
                            Ok(DriverMsg::Shutdown(ack)) => {
                                self.shutdown().await;
                                ack.send(()).ok();
                                return;
                            }
                            Ok(m) => self.handle(m),
                            Err(_) => break,
                        }
                        n += 1;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let now = self.now();
                    self.planner.handle_timeout(now);
                }
                _ = housekeeping.tick() => {
                    self.housekeeping();
                }
            }
            self.drain_actions();
            self.flush_have();
            self.publish(false);
        }
        self.shutdown().await;
    }

    fn handle(&mut self, msg: DriverMsg) {
        let now = self.now();
        match msg {
            DriverMsg::Inbound(s) => self.on_inbound(*s),
            DriverMsg::Upload(u) => {
                let u = *u;
                let pid = self.pid(u.peer);
                if self.banned.contains(&u.peer) {
                    u.decide.send(false).ok();
                    return;
                }
                let range = u.range.start..u.range.end.min(self.geometry.size());
                let uid = self.planner.handle_upload_request(now, pid, range);
                self.pending_uploads.insert(uid, u);
            }
            DriverMsg::UploadEnded(uid) => self.planner.handle_upload_done(now, uid),
            DriverMsg::Dialed { peer, outcome } => {
                self.dialing.remove(&peer);
                self.on_dialed(peer, *outcome);
            }
            DriverMsg::Frame { peer, epoch, msg } => self.on_frame(peer, epoch, msg),
            DriverMsg::SessionEnded { peer, epoch } => {
                if self.sessions.get(&peer).is_some_and(|s| s.epoch == epoch) {
                    self.end_session(peer, REDIAL_AFTER_DROP, false);
                }
            }
            DriverMsg::Observed {
                peer,
                epoch,
                ranges,
            } => self.on_observed(peer, epoch, ranges),
            DriverMsg::BlobsConn { peer, epoch, conn } => self.on_blobs_conn(peer, epoch, conn),
            DriverMsg::ReqProgress { id, received } => {
                if let Some(r) = self.inflight.get_mut(&id) {
                    if received > r.received {
                        let delta = received - r.received;
                        r.received = received;
                        *self
                            .stats
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .from_peers
                            .entry(r.peer)
                            .or_default() += delta;
                    }
                    self.planner.handle_request_progress(now, id, received);
                }
            }
            DriverMsg::ReqDone { id } => {
                if self.inflight.remove(&id).is_some() {
                    self.planner.handle_request_done(now, id);
                }
            }
            DriverMsg::ReqFailed { id, failure } => {
                if let Some(r) = self.inflight.remove(&id) {
                    tracing::debug!(peer = %r.peer.fmt_short(), ?failure, "request failed");
                    self.planner.handle_request_failed(now, id, failure);
                }
            }
            DriverMsg::AddPeers(peers) => {
                for (id, addrs) in peers {
                    if !self.banned.contains(&id) {
                        self.table.observe(id, &addrs, now, false);
                    }
                }
                self.dial_more(now);
            }
            DriverMsg::KnownPeers(reply) => {
                let all = self.table.exchange_sample(now, usize::MAX, &self.me);
                reply.send(all).ok();
            }
            DriverMsg::StoreComplete => {
                self.store_complete = true;
                let mut st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                if st.completed_at.is_none() {
                    st.completed_at = Some(std::time::Instant::now());
                }
            }
            DriverMsg::Install => {
                if !self.fail_on_stall {
                    self.fail_on_stall = true;
                    self.failed = false;
                    self.last_progress_at = now;
                    self.progress.send_modify(|p| p.failed = None);
                }
            }
            DriverMsg::Shutdown(_) => {}
        }
    }

    // ---------------------------------------------------------------------------------------
    // Sessions

    fn on_inbound(&mut self, s: InboundSession) {
        let InboundSession {
            peer,
            conn,
            mut send,
            recv,
            have,
            listen,
            observed,
            uploads,
        } = s;
        let banned = self.banned.contains(&peer);
        let full = !self.sessions.contains_key(&peer)
            && self.sessions.len() >= self.env.config.max_connected_peers;
        if banned || full {
            // a node turned away for lack of room learns others to try
            let hint = (!banned).then(|| self.pex_message(peer)).flatten();
            tokio::spawn(async move {
                if let Some(h) = hint {
                    write_message(&mut send, &h).await.ok();
                }
                write_message(&mut send, &SwarmMessage::Leave).await.ok();
                send.finish().ok();
                // give the Leave a moment to arrive, bounded
                tokio::time::timeout(Duration::from_secs(2), send.stopped())
                    .await
                    .ok();
            });
            return;
        }
        let mut addrs = listen;
        addrs.extend(observed);
        // we answer with our own Hello first
        let hello = self.my_hello();
        self.add_swarm_session(
            peer,
            conn,
            send,
            recv,
            have,
            addrs,
            uploads,
            peer,
            Some(hello),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn add_swarm_session(
        &mut self,
        peer: EndpointId,
        conn: Connection,
        mut send: SendStream,
        recv: RecvStream,
        have: PartitionSet,
        addrs: Vec<SocketAddr>,
        uploads: bool,
        dialer: EndpointId,
        first: Option<SwarmMessage>,
    ) {
        let now = self.now();
        if let Some(existing) = self.sessions.get(&peer) {
            // Two sessions with the same peer. Simultaneous dials (different dialers, the
            // existing session is young): both sides keep the one dialed by the smaller id.
            // Otherwise the peer reconnected (e.g. it restarted before the old connection
            // timed out): the new one wins.
            let simultaneous = existing.dialer != dialer
                && now.saturating_sub(existing.since) < SIMULTANEOUS_WINDOW;
            if simultaneous && existing.dialer < dialer {
                tokio::spawn(async move {
                    write_message(&mut send, &SwarmMessage::Leave).await.ok();
                    send.finish().ok();
                });
                return;
            }
            existing.abort();
            if existing.conn.stable_id() != conn.stable_id() {
                existing.conn.close(0u32.into(), b"replaced");
            }
            // its data connection belongs to the old incarnation too
            if let BlobsState::Ready(c, _) = &existing.blobs
                && c.stable_id() != conn.stable_id()
                && !simultaneous
            {
                c.close(0u32.into(), b"replaced");
            }
        }
        if !self.table.mark_connected(peer, &addrs, now) {
            return;
        }
        let epoch = self.next_gen;
        self.next_gen += 1;
        let (out_tx, mut out_rx) = mpsc::channel::<SwarmMessage>(256);
        let writer = tokio::spawn(async move {
            if let Some(h) = first
                && write_message(&mut send, &h).await.is_err()
            {
                return;
            }
            while let Some(m) = out_rx.recv().await {
                let leave = m == SwarmMessage::Leave;
                if write_message(&mut send, &m).await.is_err() {
                    return;
                }
                if leave {
                    send.finish().ok();
                    tokio::time::timeout(Duration::from_secs(2), send.stopped())
                        .await
                        .ok();
                    return;
                }
            }
            send.finish().ok();
        });
        let dtx = self.tx.clone();
        let reader = tokio::spawn(async move {
            let mut recv = recv;
            loop {
                match read_message(&mut recv).await {
                    Ok(Some(msg)) => {
                        let leave = msg == SwarmMessage::Leave;
                        if dtx
                            .send(DriverMsg::Frame { peer, epoch, msg })
                            .await
                            .is_err()
                            || leave
                        {
                            return;
                        }
                    }
                    Ok(None) | Err(_) => {
                        dtx.send(DriverMsg::SessionEnded { peer, epoch }).await.ok();
                        return;
                    }
                }
            }
        });
        let pid = self.pid(peer);
        let old = self.sessions.remove(&peer);
        let blobs = match old {
            Some(o) => o.blobs,
            None => BlobsState::None,
        };
        self.sessions.insert(
            peer,
            Session {
                pid,
                since: now,
                epoch,
                kind: SessionKind::Swarm { out: out_tx },
                dialer,
                conn,
                blobs,
                tasks: vec![writer.abort_handle(), reader.abort_handle()],
                uploads,
                plain_have: None,
            },
        );
        self.ever_connected = true;
        let peer_have = if !uploads {
            PeerHave::Partitions(Vec::new())
        } else if have.len() == self.geometry.partitions() && have.is_full() {
            PeerHave::All
        } else {
            PeerHave::Partitions(
                have.iter()
                    .filter(|p| *p < self.geometry.partitions())
                    .collect(),
            )
        };
        self.planner.handle_peer_connected(now, pid, peer_have);
        self.send_pex_to(peer);
        if let Some(ps) = &self.env.peer_store {
            let addrs = self
                .table
                .get(&peer)
                .map(|p| p.addrs.clone())
                .unwrap_or_default();
            ps.save(self.content, to_node_id(peer), &addrs);
        }
    }

    fn on_dialed(&mut self, peer: EndpointId, outcome: DialOutcome) {
        let now = self.now();
        if self.banned.contains(&peer) {
            return;
        }
        match outcome {
            DialOutcome::Swarm {
                conn,
                send,
                recv,
                have,
                listen,
                uploads,
            } => {
                let mut addrs = listen;
                addrs.extend(observed_addr(&conn));
                let me = self.me;
                self.add_swarm_session(peer, conn, send, recv, have, addrs, uploads, me, None);
            }
            DialOutcome::Plain { conn } => {
                if self.sessions.contains_key(&peer) {
                    return;
                }
                if !self.table.mark_connected(peer, &[], now) {
                    return;
                }
                let epoch = self.next_gen;
                self.next_gen += 1;
                let pid = self.pid(peer);
                let store = self.env.store.clone();
                let hash = self.hash;
                let dtx = self.tx.clone();
                let oconn = conn.clone();
                let observer = tokio::spawn(async move {
                    let stream = store.remote().observe(oconn, ObserveRequest::new(hash));
                    tokio::pin!(stream);
                    let mut acc = ChunkRanges::empty();
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(bf) => {
                                acc |= bf.ranges;
                                let msg = DriverMsg::Observed {
                                    peer,
                                    epoch,
                                    ranges: acc.clone(),
                                };
                                if dtx.send(msg).await.is_err() {
                                    return;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                    dtx.send(DriverMsg::SessionEnded { peer, epoch }).await.ok();
                });
                self.sessions.insert(
                    peer,
                    Session {
                        pid,
                        since: now,
                        epoch,
                        kind: SessionKind::Plain,
                        dialer: self.me,
                        conn: conn.clone(),
                        blobs: BlobsState::Ready(conn, WindowSizer::new()),
                        tasks: vec![observer.abort_handle()],
                        uploads: true,
                        plain_have: None,
                    },
                );
                self.ever_connected = true;
            }
            DialOutcome::Refused { peers } => {
                self.table.mark_disconnected(&peer, now, REDIAL_AFTER_LEAVE);
                self.learn_peers(now, peers);
            }
            DialOutcome::Failed => {
                self.table.mark_dial_failed(&peer, now);
            }
        }
    }

    fn on_observed(&mut self, peer: EndpointId, epoch: u64, ranges: ChunkRanges) {
        let now = self.now();
        let geometry = self.geometry;
        let Some(s) = self.sessions.get_mut(&peer) else {
            return;
        };
        if s.epoch != epoch {
            return;
        }
        let pid = s.pid;
        let parts = covered_partitions(&ranges, &geometry);
        match &mut s.plain_have {
            None => {
                let mut set = PartitionSet::new(geometry.partitions());
                for p in &parts {
                    set.insert(*p);
                }
                s.plain_have = Some(set);
                let have = if covers_all(&ranges, geometry.size()) {
                    PeerHave::All
                } else {
                    PeerHave::Partitions(parts)
                };
                self.planner.handle_peer_connected(now, pid, have);
            }
            Some(set) => {
                let new: Vec<u32> = parts.into_iter().filter(|p| set.insert(*p)).collect();
                for p in new {
                    self.planner.handle_peer_has(now, pid, p);
                }
            }
        }
    }

    fn on_frame(&mut self, peer: EndpointId, epoch: u64, msg: SwarmMessage) {
        let now = self.now();
        let n = self.geometry.partitions();
        let Some(s) = self.sessions.get(&peer) else {
            return;
        };
        if s.epoch != epoch {
            return;
        }
        let (pid, uploads) = (s.pid, s.uploads);
        match msg {
            SwarmMessage::Have { partitions } => {
                if uploads {
                    for p in partitions.into_iter().filter(|p| *p < n) {
                        self.planner.handle_peer_has(now, pid, p);
                    }
                }
                self.table.observe(peer, &[], now, false);
            }
            SwarmMessage::Offer => {
                if uploads {
                    self.planner.handle_peer_offer(now, pid);
                }
            }
            SwarmMessage::Peers { peers } => self.learn_peers(now, peers),
            SwarmMessage::Leave => self.end_session(peer, REDIAL_AFTER_LEAVE, false),
            SwarmMessage::Hello { .. } => {
                // a second Hello is a protocol violation
                self.end_session(peer, REDIAL_AFTER_LEAVE, true);
            }
        }
    }

    /// Adds peers learned by exchange to the table (bounded by the message limits).
    fn learn_peers(&mut self, now: Duration, peers: Vec<PeerRecord>) {
        for rec in peers
            .into_iter()
            .take(peas_proto::MAX_PEERS_PER_MESSAGE * 4)
        {
            let Some(id) = to_endpoint_id(rec.id) else {
                continue;
            };
            let seen = now.saturating_sub(Duration::from_secs(u64::from(rec.age_secs)));
            let addrs: Vec<SocketAddr> = rec.addrs.into_iter().take(MAX_PEER_ADDRS).collect();
            if !self.banned.contains(&id) {
                self.table.observe(id, &addrs, seen, false);
            }
        }
    }

    /// Ends the session with `peer`: tells the planner, stops its transfers, optionally says
    /// `Leave`.
    fn end_session(&mut self, peer: EndpointId, redial_after: Duration, say_leave: bool) {
        let now = self.now();
        let Some(s) = self.sessions.remove(&peer) else {
            return;
        };
        if say_leave && let SessionKind::Swarm { out } = &s.kind {
            out.try_send(SwarmMessage::Leave).ok();
        } else {
            s.abort();
        }
        if let BlobsState::Connecting(pending) = &s.blobs {
            for (id, _) in pending {
                self.planner.handle_request_failed(now, *id, Failure::Error);
            }
        }
        let ids: Vec<RequestId> = self
            .inflight
            .iter()
            .filter(|(_, r)| r.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(r) = self.inflight.remove(&id) {
                r.task.abort();
            }
        }
        self.planner.handle_peer_disconnected(now, s.pid);
        self.table.mark_disconnected(&peer, now, redial_after);
    }

    // ---------------------------------------------------------------------------------------
    // Actions

    fn drain_actions(&mut self) {
        let mut guard = 0;
        while let Some(a) = self.planner.poll_action() {
            guard += 1;
            if guard > 100_000 {
                break;
            }
            let now = self.now();
            match a {
                Action::Request { id, peer, range } => self.start_request(now, id, peer, range),
                Action::Cancel { id } => {
                    if let Some(r) = self.inflight.remove(&id) {
                        r.task.abort();
                    }
                    self.cancel_pending(id);
                }
                Action::AcceptUpload { id } => {
                    if let Some(u) = self.pending_uploads.remove(&id) {
                        if u.decide.send(true).is_ok() {
                            let dtx = self.tx.clone();
                            let ended = u.ended;
                            tokio::spawn(async move {
                                ended.await.ok();
                                dtx.send(DriverMsg::UploadEnded(id)).await.ok();
                            });
                        } else {
                            self.planner.handle_upload_done(now, id);
                        }
                    }
                }
                Action::RefuseUpload { id } => {
                    if let Some(u) = self.pending_uploads.remove(&id) {
                        u.decide.send(false).ok();
                    }
                }
                Action::Ban { peer } => {
                    if let Some(id) = self.rev.get(&peer).copied() {
                        tracing::warn!(peer = %id, "banning peer: it sent data that failed verification");
                        self.banned.insert(id);
                        self.stats
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .banned
                            .push(id);
                        if let Some(s) = self.sessions.get(&id) {
                            s.conn.close(1u32.into(), b"banned");
                            if let BlobsState::Ready(c, _) = &s.blobs {
                                c.close(1u32.into(), b"banned");
                            }
                        }
                        self.end_session(id, REDIAL_AFTER_LEAVE, false);
                        self.table.ban(id);
                    }
                }
                Action::Disconnect { peer } => {
                    if let Some(id) = self.rev.get(&peer).copied() {
                        self.end_session(id, REDIAL_AFTER_LEAVE, true);
                    }
                }
                Action::Offer { peer } => {
                    if let Some(id) = self.rev.get(&peer).copied()
                        && let Some(s) = self.sessions.get(&id)
                        && let SessionKind::Swarm { out } = &s.kind
                    {
                        out.try_send(SwarmMessage::Offer).ok();
                    }
                }
                Action::Announce { partition } => self.pending_have.push(partition),
                Action::Complete => self.mark_complete(),
            }
        }
    }

    fn cancel_pending(&mut self, id: RequestId) {
        for s in self.sessions.values_mut() {
            if let BlobsState::Connecting(p) = &mut s.blobs {
                p.retain(|(r, _)| *r != id);
            }
        }
    }

    /// The planner counts verified bytes as they arrive; the store may still be writing the
    /// last ones. Completion is published only once the store reports the blob complete.
    fn mark_complete(&mut self) {
        if self.store_complete || self.completion_watch {
            return;
        }
        self.completion_watch = true;
        let store = self.env.store.clone();
        let hash = self.hash;
        let dtx = self.tx.clone();
        tokio::spawn(async move {
            if store.observe(hash).await_completion().await.is_ok() {
                dtx.send(DriverMsg::StoreComplete).await.ok();
            }
        });
    }

    fn start_request(&mut self, now: Duration, id: RequestId, pid: PeerId, range: Range<u64>) {
        let Some(peer) = self.rev.get(&pid).copied() else {
            self.planner.handle_request_failed(now, id, Failure::Error);
            return;
        };
        let Some(s) = self.sessions.get_mut(&peer) else {
            self.planner.handle_request_failed(now, id, Failure::Error);
            return;
        };
        // a cached data connection that has closed meanwhile is replaced
        if let BlobsState::Ready(conn, _) = &s.blobs
            && conn.close_reason().is_some()
            && !matches!(s.kind, SessionKind::Plain)
        {
            s.blobs = BlobsState::None;
        }
        match &mut s.blobs {
            BlobsState::Ready(conn, _) => {
                let conn = conn.clone();
                self.spawn_transfer(id, peer, conn, range);
            }
            BlobsState::Connecting(pending) => pending.push((id, range)),
            BlobsState::None => {
                s.blobs = BlobsState::Connecting(vec![(id, range)]);
                let epoch = s.epoch;
                let addr = self.addr_of(peer);
                let ep = self.env.endpoint.clone();
                let dtx = self.tx.clone();
                let timeout = self.env.config.connect_timeout;
                tokio::spawn(async move {
                    let conn = tokio::time::timeout(timeout, ep.connect(addr, iroh_blobs::ALPN))
                        .await
                        .ok()
                        .and_then(|r| r.ok());
                    dtx.send(DriverMsg::BlobsConn { peer, epoch, conn })
                        .await
                        .ok();
                });
            }
        }
    }

    /// How to dial `peer`: its known direct addresses, plus its relay URL (from the manifest)
    /// when this node uses relays at all (an offline node never dials a relay).
    fn addr_of(&self, peer: EndpointId) -> EndpointAddr {
        let addrs = self
            .table
            .get(&peer)
            .map(|p| p.addrs.clone())
            .unwrap_or_default();
        let relay = if self.env.config.relay.is_some() {
            self.relays.get(&peer)
        } else {
            None
        };
        endpoint_addr(peer, &addrs, relay)
    }

    fn on_blobs_conn(&mut self, peer: EndpointId, epoch: u64, conn: Option<Connection>) {
        let now = self.now();
        let Some(s) = self.sessions.get_mut(&peer) else {
            return;
        };
        // a replaced session inherits the blobs state, so the epoch does not matter here: the
        // connection is to the same peer either way
        let _ = epoch;
        let pending = match std::mem::replace(&mut s.blobs, BlobsState::None) {
            BlobsState::Connecting(p) => p,
            other => {
                s.blobs = other;
                Vec::new()
            }
        };
        match conn {
            Some(c) => {
                s.blobs = BlobsState::Ready(c.clone(), WindowSizer::new());
                for (id, range) in pending {
                    self.spawn_transfer(id, peer, c.clone(), range);
                }
            }
            None => {
                for (id, _) in pending {
                    self.planner.handle_request_failed(now, id, Failure::Error);
                }
            }
        }
    }

    fn spawn_transfer(
        &mut self,
        id: RequestId,
        peer: EndpointId,
        conn: Connection,
        range: Range<u64>,
    ) {
        let store = self.env.store.clone();
        let hash = self.hash;
        let dtx = self.tx.clone();
        let limiter = self.env.download_limiter.clone();
        let task = tokio::spawn(async move {
            let outcome = run_transfer(&store, conn, hash, range, &limiter, id, &dtx).await;
            dtx.send(outcome).await.ok();
        });
        self.inflight.insert(
            id,
            Inflight {
                peer,
                received: 0,
                task: task.abort_handle(),
            },
        );
    }

    // ---------------------------------------------------------------------------------------
    // Announcements, peer exchange, dialing

    fn flush_have(&mut self) {
        if self.pending_have.is_empty() {
            return;
        }
        let mut parts = std::mem::take(&mut self.pending_have);
        parts.sort_unstable();
        parts.dedup();
        for chunk in parts.chunks(MAX_HAVE_PARTITIONS) {
            for s in self.sessions.values() {
                if let SessionKind::Swarm { out } = &s.kind {
                    out.try_send(SwarmMessage::Have {
                        partitions: chunk.to_vec(),
                    })
                    .ok();
                }
            }
        }
    }

    fn send_pex_to(&self, peer: EndpointId) {
        let Some(s) = self.sessions.get(&peer) else {
            return;
        };
        let SessionKind::Swarm { out } = &s.kind else {
            return;
        };
        if let Some(m) = self.pex_message(peer) {
            out.try_send(m).ok();
        }
    }

    /// A `Peers` message for `peer` (a sample of the table without `peer`), if any to tell.
    fn pex_message(&self, peer: EndpointId) -> Option<SwarmMessage> {
        let now = self.now();
        let sample = self
            .table
            .exchange_sample(now, self.env.config.pex_sample, &peer);
        if sample.is_empty() {
            return None;
        }
        let peers = sample
            .into_iter()
            .map(|(id, addrs, age)| PeerRecord {
                id: to_node_id(id),
                addrs: addrs.into_iter().take(MAX_PEER_ADDRS).collect(),
                age_secs: age.as_secs().min(u64::from(u32::MAX)) as u32,
            })
            .collect();
        Some(SwarmMessage::Peers { peers })
    }

    fn housekeeping(&mut self) {
        let now = self.now();
        // peer exchange: one message per connected peer per interval
        if now >= self.next_pex {
            self.next_pex = now + self.env.config.pex_interval;
            let peers: Vec<EndpointId> = self.sessions.keys().copied().collect();
            for p in peers {
                self.send_pex_to(p);
            }
            self.table.expire(now);
        }
        self.dial_more(now);
        self.check_stall(now);
        self.size_windows(now);
    }

    /// Sizes each data connection's receive window from what its peer delivered since the
    /// last housekeeping (see [`crate::window`]).
    fn size_windows(&mut self, now: Duration) {
        for s in self.sessions.values_mut() {
            if let BlobsState::Ready(conn, sizer) = &mut s.blobs {
                let rtt = conn.paths().iter().map(|p| p.rtt()).min();
                let received = conn.stats().udp_rx.bytes;
                if let Some(w) = sizer.sample(now, received, rtt) {
                    conn.set_receive_window(VarInt::from_u64(w).unwrap_or(VarInt::MAX));
                }
            }
        }
    }

    fn dial_more(&mut self, now: Duration) {
        let max = self.env.config.max_connected_peers;
        let busy = self.sessions.len() + self.dialing.len();
        if busy >= max || self.dialing.len() >= MAX_PARALLEL_DIALS {
            return;
        }
        let room = (max - busy).min(MAX_PARALLEL_DIALS - self.dialing.len());
        for peer in self.table.dial_candidates(now, room) {
            if self.sessions.contains_key(&peer) || self.dialing.contains(&peer) {
                continue;
            }
            let addr = self.addr_of(peer);
            self.table.mark_dialing(&peer);
            self.dialing.insert(peer);
            let ep = self.env.endpoint.clone();
            let dtx = self.tx.clone();
            let hello = self.my_hello();
            let timeout = self.env.config.connect_timeout;
            tokio::spawn(async move {
                let outcome = dial(&ep, peer, addr, hello, timeout).await;
                dtx.send(DriverMsg::Dialed {
                    peer,
                    outcome: Box::new(outcome),
                })
                .await
                .ok();
            });
        }
    }

    fn check_stall(&mut self, now: Duration) {
        let verified = self.planner.verified_bytes();
        if verified > self.last_verified {
            self.last_verified = verified;
            self.last_progress_at = now;
        }
        if !self.fail_on_stall || self.failed || self.planner.is_complete() {
            return;
        }
        let limit = self.env.config.stall_timeout;
        if now.saturating_sub(self.last_progress_at) > limit {
            self.failed = true;
            let err = if self.ever_connected {
                crate::NetError::Stalled(limit)
            } else {
                crate::NetError::NoPeers(limit)
            };
            self.progress
                .send_modify(|p| p.failed = Some(err.to_string()));
        }
    }

    fn publish(&mut self, force: bool) {
        let now = self.now();
        let verified = self.planner.verified_bytes();
        let dt = now.saturating_sub(self.rate_window.0);
        if dt >= Duration::from_millis(500) {
            let inst = (verified.saturating_sub(self.rate_window.1)) as f64 / dt.as_secs_f64();
            self.rate = if self.rate == 0.0 {
                inst
            } else {
                0.5 * self.rate + 0.5 * inst
            };
            self.rate_window = (now, verified);
        }
        let next = Progress {
            verified_bytes: verified,
            total_bytes: self.geometry.size(),
            rate: self.rate,
            connected_peers: self.sessions.len(),
            uploaded_bytes: self.env.uploads.total(),
            complete: self.store_complete,
            failed: self.progress.borrow().failed.clone(),
        };
        self.progress.send_if_modified(|p| {
            if force || *p != next {
                *p = next;
                true
            } else {
                false
            }
        });
    }

    async fn shutdown(&mut self) {
        let peers: Vec<EndpointId> = self.sessions.keys().copied().collect();
        let mut conns = Vec::new();
        for p in peers {
            if let Some(s) = self.sessions.get(&p) {
                conns.push(s.conn.clone());
            }
            self.end_session(p, REDIAL_AFTER_LEAVE, true);
        }
        for r in self.inflight.values() {
            r.task.abort();
        }
        self.inflight.clear();
        for (_, u) in self.pending_uploads.drain() {
            u.decide.send(false).ok();
        }
        // give the Leave frames a short, bounded time to go out
        tokio::time::sleep(Duration::from_millis(50)).await;
        for c in conns {
            c.close(0u32.into(), b"leave");
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // a driver that is aborted (node killed) must not leave transfers running
        for s in self.sessions.values() {
            s.abort();
        }
        for r in self.inflight.values() {
            r.task.abort();
        }
    }
}

/// A dialable address from an id, known socket addresses and, if any, a relay URL.
pub(crate) fn endpoint_addr(
    id: EndpointId,
    addrs: &[SocketAddr],
    relay: Option<&RelayUrl>,
) -> EndpointAddr {
    let mut a = EndpointAddr::new(id);
    for s in addrs {
        a = a.with_ip_addr(*s);
    }
    if let Some(r) = relay {
        a = a.with_relay_url(r.clone());
    }
    a
}

/// Dials `peer`: swarm protocol first (exchanging `Hello`s), falling back to plain iroh-blobs.
async fn dial(
    ep: &Endpoint,
    peer: EndpointId,
    addr: EndpointAddr,
    hello: SwarmMessage,
    timeout: Duration,
) -> DialOutcome {
    match tokio::time::timeout(timeout, ep.connect(addr.clone(), SWARM_ALPN)).await {
        Ok(Ok(conn)) => {
            let fut = async {
                let (mut send, mut recv) = conn.open_bi().await.ok()?;
                write_message(&mut send, &hello).await.ok()?;
                // a full peer sends `Peers` (others to try) before `Leave`
                let mut peers = Vec::new();
                for _ in 0..4 {
                    match read_message(&mut recv).await.ok()?? {
                        SwarmMessage::Peers { peers: p } => peers.extend(p),
                        other => return Some((send, recv, other, peers)),
                    }
                }
                None
            };
            match tokio::time::timeout(timeout, fut).await {
                Ok(Some((
                    send,
                    recv,
                    SwarmMessage::Hello {
                        have,
                        listen,
                        uploads,
                        ..
                    },
                    _,
                ))) => DialOutcome::Swarm {
                    conn,
                    send,
                    recv,
                    have,
                    listen,
                    uploads,
                },
                Ok(Some((_, _, _, peers))) => {
                    conn.close(0u32.into(), b"leave");
                    DialOutcome::Refused { peers }
                }
                _ => {
                    conn.close(0u32.into(), b"timeout");
                    DialOutcome::Failed
                }
            }
        }
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer.fmt_short(), "swarm dial failed ({e}), trying iroh-blobs");
            match tokio::time::timeout(timeout, ep.connect(addr, iroh_blobs::ALPN)).await {
                Ok(Ok(conn)) => DialOutcome::Plain { conn },
                _ => DialOutcome::Failed,
            }
        }
        Err(_) => DialOutcome::Failed,
    }
}

/// Classifies a failed get: data that failed BLAKE3 verification is [`Failure::BadData`], a
/// provider that refused (rate limit, permission) is [`Failure::Refused`], anything else is
/// [`Failure::Error`].
pub fn classify_get_error(e: &GetError) -> Failure {
    match e {
        GetError::Decode {
            source: DecodeError::LeafHashMismatch { .. } | DecodeError::ParentHashMismatch { .. },
            ..
        } => Failure::BadData,
        _ => match e.iroh_error_code() {
            Some(c) if c == ERR_LIMIT || c == ERR_PERMISSION => Failure::Refused,
            _ => Failure::Error,
        },
    }
}

/// Runs one range request into the store, reporting verified progress; returns the final
/// message (done or failed).
async fn run_transfer(
    store: &Store,
    conn: Connection,
    hash: Hash,
    range: Range<u64>,
    limiter: &RateLimiter,
    id: RequestId,
    dtx: &mpsc::Sender<DriverMsg>,
) -> DriverMsg {
    let req = GetRequest::blob_ranges(hash, ChunkRanges::bytes(range));
    let stream = store.remote().execute_get(conn, req).stream();
    tokio::pin!(stream);
    let mut last_paced = 0u64;
    let mut last_sent = 0u64;
    let mut received = 0u64;
    while let Some(item) = stream.next().await {
        match item {
            GetProgressItem::Progress(n) => {
                received = n;
                if n > last_paced {
                    limiter.acquire(n - last_paced).await;
                    last_paced = n;
                }
                if n - last_sent >= PROGRESS_STEP {
                    last_sent = n;
                    dtx.send(DriverMsg::ReqProgress { id, received: n })
                        .await
                        .ok();
                }
            }
            GetProgressItem::Done(_) => {
                if received > last_sent {
                    dtx.send(DriverMsg::ReqProgress { id, received }).await.ok();
                }
                return DriverMsg::ReqDone { id };
            }
            GetProgressItem::Error(e) => {
                if received > last_sent {
                    dtx.send(DriverMsg::ReqProgress { id, received }).await.ok();
                }
                let failure = classify_get_error(&e);
                tracing::debug!("get failed: {e:#} → {failure:?}");
                return DriverMsg::ReqFailed { id, failure };
            }
        }
    }
    DriverMsg::ReqFailed {
        id,
        failure: Failure::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_address_carries_direct_addrs_and_optional_relay() {
        let id = iroh::SecretKey::from_bytes(&[9; 32]).public();
        let a: SocketAddr = "127.0.0.1:7117".parse().expect("addr");
        let plain = endpoint_addr(id, &[a], None);
        assert_eq!(plain.ip_addrs().copied().collect::<Vec<_>>(), vec![a]);
        assert_eq!(plain.relay_urls().count(), 0);
        let relay: RelayUrl = "https://relay.example.org".parse().expect("url");
        let with = endpoint_addr(id, &[a], Some(&relay));
        assert_eq!(with.relay_urls().count(), 1);
    }
}
