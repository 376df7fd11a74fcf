//! The node: one iroh endpoint, a router with iroh-blobs' protocol and the peas swarm
//! protocol, and one swarm driver per content being installed or seeded.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use iroh::{
    Endpoint, EndpointId, RelayMode, RelayUrl, SecretKey,
    endpoint::{Connection, PortmapperConfig, QuicTransportConfig, VarInt, presets},
    protocol::{AcceptError, ProtocolHandler, Router},
};
use iroh_blobs::{Hash, api::Store, provider::events::EventSender};
use peas_proto::{ContentHash, Manifest, NodeId, SWARM_ALPN};
use tokio::sync::{oneshot, watch};

use crate::{
    NetError,
    config::NodeConfig,
    convert::{to_blobs_hash, to_endpoint_id, to_node_id},
    driver::{Driver, DriverEnv, DriverHandle, DriverMsg, Progress, SwarmSpec},
    persist::PeerStore,
    rate::RateLimiter,
    swarm::{Drivers, SwarmProtocol},
    upload::{UploadCounters, spawn_upload_hooks},
    window::MIN_WINDOW,
};

/// Options of one install.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Overrides [`NodeConfig::stall_timeout`] for this install.
    pub stall_timeout: Option<Duration>,
}

/// The outcome of a finished install.
#[derive(Debug, Clone)]
pub struct InstallReport {
    /// The content hash.
    pub hash: ContentHash,
    /// The content size in bytes.
    pub bytes: u64,
    /// From the install call to completion.
    pub elapsed: Duration,
    /// Verified bytes received per peer during this run (largest first).
    pub from_peers: Vec<(NodeId, u64)>,
    /// Bytes this node uploaded so far (all contents).
    pub uploaded_bytes: u64,
    /// Whether the store already held the whole verified content (nothing was fetched).
    pub already_complete: bool,
    /// Peers banned because their data failed verification.
    pub banned: Vec<NodeId>,
}

/// A running install: watch its progress, then await its report.
#[derive(Debug)]
pub struct InstallHandle {
    hash: ContentHash,
    started: Instant,
    progress: watch::Receiver<Progress>,
    stats: Arc<Mutex<crate::driver::SwarmStats>>,
    uploads: UploadCounters,
}

impl InstallHandle {
    /// A receiver of progress updates (verified bytes, total, rate, peers, uploaded).
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Waits until the content is complete and verified locally, or the install fails (no
    /// peer answered, or no progress for the stall bound).
    pub async fn wait(mut self) -> Result<InstallReport, NetError> {
        loop {
            {
                let p = self.progress.borrow_and_update();
                if p.complete {
                    break;
                }
                if let Some(f) = &p.failed {
                    return Err(NetError::Failed(f.clone()));
                }
            }
            if self.progress.changed().await.is_err() {
                return Err(NetError::Shutdown);
            }
        }
        let st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = st
            .completed_at
            .map(|t| t.saturating_duration_since(self.started))
            .unwrap_or_else(|| self.started.elapsed());
        let mut from_peers: Vec<(NodeId, u64)> = st
            .from_peers
            .iter()
            .map(|(id, b)| (to_node_id(*id), *b))
            .collect();
        from_peers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.0.cmp(&b.0.0)));
        Ok(InstallReport {
            hash: self.hash,
            bytes: self.progress.borrow().total_bytes,
            elapsed,
            from_peers,
            uploaded_bytes: self.uploads.total(),
            already_complete: st.already_complete,
            banned: st.banned.iter().map(|id| to_node_id(*id)).collect(),
        })
    }
}

/// The blobs protocol handler: iroh-blobs' provider over our store and event hooks. Unlike
/// `BlobsProtocol` it does not shut the store down with the router (the home owns the store).
#[derive(Debug, Clone)]
struct BlobsHandler {
    store: Store,
    events: EventSender,
}

impl ProtocolHandler for BlobsHandler {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        iroh_blobs::provider::handle_connection(conn, self.store.clone(), self.events.clone())
            .await;
        Ok(())
    }
}

struct Inner {
    router: Router,
    store: Store,
    config: NodeConfig,
    drivers: Drivers,
    handles: tokio::sync::Mutex<HashMap<Hash, (DriverHandle, tokio::task::JoinHandle<()>)>>,
    listen_addrs: Vec<SocketAddr>,
    download_limiter: RateLimiter,
    uploads: UploadCounters,
    upload_task: tokio::task::JoinHandle<()>,
    peer_store: Option<Arc<dyn PeerStore>>,
}

/// A peas node; see the module docs. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.endpoint_id())
            .field("addrs", &self.inner.listen_addrs)
            .finish()
    }
}

/// iroh's QUIC defaults, except that a connection starts with a receive window of
/// [`MIN_WINDOW`] (instead of no limit per connection), which the driver then sizes for each
/// data connection (see [`crate::window`]).
fn transport_config() -> QuicTransportConfig {
    QuicTransportConfig::builder()
        .receive_window(VarInt::from_u32(MIN_WINDOW as u32))
        .build()
}

impl Node {
    /// Binds the endpoint (offline-safe: no relay unless configured, no DNS/pkarr, no
    /// portmapper) with the stable `secret_key`, and starts serving `store`. `peer_store`
    /// persists met peers (pass the home's `MetaDb`).
    pub async fn spawn(
        secret_key: [u8; 32],
        store: Store,
        peer_store: Option<Arc<dyn PeerStore>>,
        config: NodeConfig,
    ) -> Result<Node, NetError> {
        let bind_err = |reason: String| NetError::Bind {
            addr: config.listen,
            reason,
        };
        let mut builder = Endpoint::builder(presets::Minimal)
            .secret_key(SecretKey::from_bytes(&secret_key))
            .portmapper_config(PortmapperConfig::Disabled)
            .clear_ip_transports()
            .bind_addr(config.listen)
            .map_err(|e| bind_err(error_chain(&e)))?
            .transport_config(transport_config());
        builder = match &config.relay {
            None => builder.relay_mode(RelayMode::Disabled),
            Some(url) => {
                let url: RelayUrl = url.parse().map_err(|_| NetError::BadRelay(url.clone()))?;
                builder.relay_mode(RelayMode::custom([url]))
            }
        };
        let endpoint = builder
            .bind()
            .await
            .map_err(|e| bind_err(error_chain(&e)))?;
        let listen_addrs = listen_addrs(&endpoint);
        let drivers: Drivers = Default::default();
        let uploads = UploadCounters::default();
        let (events, upload_task) = spawn_upload_hooks(
            config.no_upload,
            RateLimiter::new(config.max_upload_rate),
            uploads.clone(),
            drivers.clone(),
        );
        let router = Router::builder(endpoint)
            .accept(
                iroh_blobs::ALPN,
                BlobsHandler {
                    store: store.clone(),
                    events,
                },
            )
            .accept(
                SWARM_ALPN,
                SwarmProtocol {
                    drivers: drivers.clone(),
                },
            )
            .spawn();
        Ok(Node {
            inner: Arc::new(Inner {
                router,
                store,
                download_limiter: RateLimiter::new(config.max_download_rate),
                config,
                drivers,
                handles: Default::default(),
                listen_addrs,
                uploads,
                upload_task,
                peer_store,
            }),
        })
    }

    /// This node's id (its ed25519 public key).
    pub fn id(&self) -> NodeId {
        to_node_id(self.endpoint_id())
    }

    /// This node's iroh endpoint id.
    pub fn endpoint_id(&self) -> EndpointId {
        self.inner.router.endpoint().id()
    }

    /// The iroh endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        self.inner.router.endpoint()
    }

    /// The socket addresses this node accepts connections on (what it advertises).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.inner.listen_addrs.clone()
    }

    /// The store this node serves and downloads into.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Bytes uploaded so far, all peers and contents.
    pub fn uploaded_bytes(&self) -> u64 {
        self.inner.uploads.total()
    }

    /// Bytes uploaded so far per peer.
    pub fn uploaded_per_peer(&self) -> Vec<(NodeId, u64)> {
        self.inner
            .uploads
            .per_peer()
            .into_iter()
            .map(|(id, b)| (to_node_id(id), b))
            .collect()
    }

    async fn join(
        &self,
        manifest: &Manifest,
        stall_timeout: Option<Duration>,
    ) -> Result<DriverHandle, NetError> {
        let hash = to_blobs_hash(manifest.hash());
        let mut handles = self.inner.handles.lock().await;
        if let Some((h, task)) = handles.get(&hash)
            && !task.is_finished()
        {
            return Ok(h.clone());
        }
        let mut owners = Vec::new();
        for o in manifest.owners() {
            let id = to_endpoint_id(o.id).ok_or_else(|| NetError::BadOwner(o.id.to_string()))?;
            // an unparsable relay URL is ignored: the direct addresses may still work
            let relay = o.relay.as_deref().and_then(|r| r.parse::<RelayUrl>().ok());
            owners.push((id, o.addrs.clone(), relay));
        }
        let env = DriverEnv {
            endpoint: self.endpoint().clone(),
            store: self.inner.store.clone(),
            config: {
                let mut c = self.inner.config.clone();
                if let Some(t) = stall_timeout {
                    c.stall_timeout = t;
                }
                c
            },
            listen_addrs: self.inner.listen_addrs.clone(),
            download_limiter: self.inner.download_limiter.clone(),
            uploads: self.inner.uploads.clone(),
            peer_store: self.inner.peer_store.clone(),
        };
        let spec = SwarmSpec {
            content: manifest.hash(),
            // The swarm announces, requests and serves pieces (at most 1 MiB), not partitions.
            geometry: manifest.geometry().pieces(),
            owners,
        };
        let (handle, task) = Driver::spawn(env, spec).await?;
        self.inner
            .drivers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hash, handle.tx.clone());
        handles.insert(hash, (handle.clone(), task));
        Ok(handle)
    }

    /// Serves the content of `manifest` and joins its swarm (dials owners and known peers,
    /// answers peers, exchanges have-sets). Missing parts are fetched too. Returns a progress
    /// receiver.
    pub async fn seed(&self, manifest: &Manifest) -> Result<watch::Receiver<Progress>, NetError> {
        Ok(self.join(manifest, None).await?.progress)
    }

    /// Joins the swarm of `manifest` and downloads the content into the store, verified. Use
    /// the handle to watch progress and await the report; the node keeps serving afterwards.
    pub async fn install(
        &self,
        manifest: &Manifest,
        opts: InstallOptions,
    ) -> Result<InstallHandle, NetError> {
        let started = Instant::now();
        let handle = self.join(manifest, opts.stall_timeout).await?;
        handle
            .tx
            .send(DriverMsg::Install)
            .await
            .map_err(|_| NetError::Shutdown)?;
        Ok(InstallHandle {
            hash: manifest.hash(),
            started,
            progress: handle.progress.clone(),
            stats: handle.stats.clone(),
            uploads: self.inner.uploads.clone(),
        })
    }

    /// The driver of the swarm of `hash`, if this node has joined it.
    async fn driver(&self, hash: ContentHash) -> Option<DriverHandle> {
        self.inner
            .handles
            .lock()
            .await
            .get(&to_blobs_hash(hash))
            .map(|(h, _)| h.clone())
    }

    /// Adds peer hints (e.g. loaded from the home's persisted peer table) to the swarm of
    /// `hash`, if this node has joined it; they are dialed like peers learned by exchange.
    pub async fn add_peers(&self, hash: ContentHash, peers: Vec<(NodeId, Vec<SocketAddr>)>) {
        let peers: Vec<_> = peers
            .into_iter()
            .filter_map(|(id, a)| to_endpoint_id(id).map(|id| (id, a)))
            .collect();
        let handle = self.driver(hash).await;
        if let Some(h) = handle {
            h.tx.send(DriverMsg::AddPeers(peers)).await.ok();
        }
    }

    /// The peers known in the swarm of `hash` (id, addresses, time since last seen), freshest
    /// first; empty if this node has not joined it. Persist them to find the swarm again after
    /// a restart.
    pub async fn known_peers(&self, hash: ContentHash) -> Vec<(NodeId, Vec<SocketAddr>, Duration)> {
        let handle = self.driver(hash).await;
        let Some(h) = handle else {
            return Vec::new();
        };
        let (tx, rx) = oneshot::channel();
        if h.tx.send(DriverMsg::KnownPeers(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await
            .unwrap_or_default()
            .into_iter()
            .map(|(id, a, age)| (to_node_id(id), a, age))
            .collect()
    }

    /// The content hashes whose swarms this node has joined.
    pub async fn swarms(&self) -> Vec<ContentHash> {
        self.inner
            .handles
            .lock()
            .await
            .keys()
            .map(|h| crate::convert::to_content_hash(*h))
            .collect()
    }

    /// Leaves the swarm of `hash`: tells its peers `Leave` and stops its driver. The content
    /// stays in the store (and is still served to peers that ask).
    pub async fn leave(&self, hash: ContentHash) {
        let key = to_blobs_hash(hash);
        let entry = self.inner.handles.lock().await.remove(&key);
        self.inner
            .drivers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        if let Some((h, task)) = entry {
            let (ack, done) = oneshot::channel();
            if h.tx.send(DriverMsg::Shutdown(ack)).await.is_ok() {
                tokio::time::timeout(Duration::from_secs(5), done)
                    .await
                    .ok();
            }
            task.abort();
        }
    }

    /// Kills the node without telling peers anything (a crash, for tests): every swarm task
    /// and transfer is aborted and the endpoint is dropped without a close handshake, so peers
    /// only notice by timeout. Verified data already in the store stays; nothing is flushed.
    pub async fn abort(self) {
        let handles: Vec<_> = self.inner.handles.lock().await.drain().collect();
        self.inner
            .drivers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        for (_, (_, task)) in handles {
            task.abort();
            task.await.ok();
        }
        self.inner.upload_task.abort();
        // dropping the last handle drops the router and the endpoint ungracefully
    }

    /// Stops the node: every swarm says `Leave`, the router and endpoint close. The store is
    /// not shut down here (its owner, the home, flushes it).
    pub async fn shutdown(self) -> Result<(), NetError> {
        let hashes: Vec<Hash> = self.inner.handles.lock().await.keys().copied().collect();
        for h in hashes {
            self.leave(crate::convert::to_content_hash(h)).await;
        }
        self.inner.router.shutdown().await.ok();
        self.inner.upload_task.abort();
        Ok(())
    }
}

/// The addresses to advertise: the endpoint's direct addresses, plus bound sockets on a
/// specific IP (loopback included).
fn listen_addrs(ep: &Endpoint) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for s in ep.bound_sockets() {
        if !s.ip().is_unspecified() && !out.contains(&s) {
            out.push(s);
        }
    }
    for s in ep.addr().ip_addrs() {
        if !out.contains(s) {
            out.push(*s);
        }
    }
    out.truncate(peas_proto::MAX_LISTEN_ADDRS);
    out
}

/// An error and its causes on one line (`outer: inner: root`), each cause once: iroh's bind
/// error says only "Failed to bind sockets" at the top, the operating system's reason below.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = c.source();
    }
    out.replace(['\n', '\r'], " ")
}
