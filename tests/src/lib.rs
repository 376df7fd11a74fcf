//! Cross-crate integration tests of peas; the tests live in `tests/tests/`.
//!
//! This library holds the shared fixtures. The main one is [`CorruptProvider`]: a peer that
//! speaks iroh-blobs' protocol (ALPN [`iroh_blobs::ALPN`]) and claims to have a whole blob, but
//! answers every get request with a bao stream whose *data* has flipped bits while the hash
//! tree (outboard) is the correct one. A verifying downloader therefore rejects the first
//! corrupted 16 KiB chunk group with a leaf hash mismatch. It is reusable by xtask or other
//! tests as "a lying peer".

use std::{net::SocketAddr, sync::Arc};

use bao_tree::io::{outboard::PreOrderMemOutboard, sync::encode_ranges};
use iroh::{
    Endpoint, EndpointAddr, EndpointId, SecretKey,
    endpoint::{Connection, PortmapperConfig, presets},
    protocol::{AcceptError, ProtocolHandler, Router},
};
use iroh_blobs::{
    Hash,
    protocol::{ChunkRanges, GetRequest, ObserveItem, ObserveRequest},
    store::IROH_BLOCK_SIZE,
};

/// Deterministic pseudo-random bytes (incompressible test content).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// A node configuration for loopback tests: random port on 127.0.0.1, fast peer exchange,
/// short connect and stall bounds.
pub fn test_config() -> peas_net::NodeConfig {
    peas_net::NodeConfig {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        pex_interval: std::time::Duration::from_millis(300),
        connect_timeout: std::time::Duration::from_secs(3),
        stall_timeout: std::time::Duration::from_secs(30),
        ..Default::default()
    }
}

/// A signed manifest for content `data` with `owners` (id, loopback address), signed by
/// `creator`.
pub fn manifest_for(
    data: &[u8],
    partition_size: u64,
    owners: &[(peas_proto::NodeId, SocketAddr)],
    creator: &[u8; 32],
) -> peas_proto::Manifest {
    peas_proto::ManifestDraft {
        hash: peas_proto::ContentHash(*blake3::hash(data).as_bytes()),
        size: data.len() as u64,
        name: peas_proto::SafeName::new("content.bin").expect("literal name"),
        partition_size,
        created_at: 1_700_000_000,
        owners: owners
            .iter()
            .map(|(id, a)| peas_proto::Owner {
                id: *id,
                addrs: vec![*a],
                relay: None,
            })
            .collect(),
    }
    .sign(creator)
    .expect("valid test manifest")
}

/// A secret key from a small test index.
pub fn secret(i: u8) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[0] = i;
    k[31] = 0x5a;
    k
}

/// Installs `manifest` on `node` with default options and returns the report. Fails the
/// test (panics) if the install cannot start, does not finish within `limit`, or fails.
pub async fn install_within(
    node: &peas_net::Node,
    manifest: &peas_proto::Manifest,
    limit: std::time::Duration,
) -> peas_net::InstallReport {
    let handle = node
        .install(manifest, peas_net::InstallOptions::default())
        .await
        .expect("install starts");
    tokio::time::timeout(limit, handle.wait())
        .await
        .unwrap_or_else(|_| panic!("install did not finish within {limit:?}"))
        .expect("install completes")
}

/// Signs a manifest for `data` naming `origin` as its only owner (with `creator`'s key), has
/// `origin` seed it, and returns the manifest. `origin`'s store must already hold `data`.
pub async fn seed_as_sole_owner(
    origin: &peas_net::Node,
    data: &[u8],
    partition_size: u64,
    creator: &[u8; 32],
) -> peas_proto::Manifest {
    let manifest = manifest_for(
        data,
        partition_size,
        &[(origin.id(), origin.addrs()[0])],
        creator,
    );
    origin.seed(&manifest).await.expect("seed");
    manifest
}

/// A UDP address on 127.0.0.1 that nobody listens on (bound, then released).
pub fn unused_udp_addr() -> SocketAddr {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("reserve a port");
    sock.local_addr().expect("addr")
}

/// Errors of the fixtures.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The endpoint could not be bound.
    #[error("cannot bind test endpoint: {0}")]
    Bind(String),
}

/// Binds an offline iroh endpoint on `127.0.0.1:0` (no relay, no DNS, no portmapper).
pub async fn local_endpoint(secret: SecretKey) -> Result<Endpoint, FixtureError> {
    endpoint_at(secret, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Binds an offline iroh endpoint on `addr` (no relay, no DNS, no portmapper).
pub async fn endpoint_at(secret: SecretKey, addr: SocketAddr) -> Result<Endpoint, FixtureError> {
    Endpoint::builder(presets::Minimal)
        .secret_key(secret)
        .portmapper_config(PortmapperConfig::Disabled)
        .clear_ip_transports()
        .bind_addr(addr)
        .map_err(|e| FixtureError::Bind(e.to_string()))?
        .bind()
        .await
        .map_err(|e| FixtureError::Bind(e.to_string()))
}

/// The first loopback socket address an endpoint is bound to.
pub fn loopback_addr(ep: &Endpoint) -> Option<SocketAddr> {
    ep.bound_sockets()
        .into_iter()
        .find(|s| s.ip().is_loopback())
}

/// The socket address an endpoint asked to bind `asked` is reachable at: the bound socket on
/// that IP, or a loopback one when `asked` is loopback or unspecified.
pub fn bound_addr(ep: &Endpoint, asked: SocketAddr) -> Option<SocketAddr> {
    if asked.ip().is_loopback() || asked.ip().is_unspecified() {
        return loopback_addr(ep);
    }
    ep.bound_sockets()
        .into_iter()
        .find(|s| s.ip() == asked.ip())
}

/// How a [`CorruptProvider`] damages the data it sends.
#[derive(Debug, Clone, Copy)]
pub enum Corruption {
    /// Flip one bit in every 16 KiB chunk group.
    EveryChunkGroup,
    /// Flip one bit only in the chunk groups whose index is `>= from` (good data before that).
    FromChunkGroup(u64),
}

/// A lying iroh-blobs provider for one blob; see the crate docs.
#[derive(Debug, Clone)]
pub struct CorruptProvider {
    hash: Hash,
    size: u64,
    corrupted: Arc<Vec<u8>>,
    outboard: Arc<PreOrderMemOutboard>,
    served_bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl CorruptProvider {
    /// A provider of `data` (whose correct hash it announces) corrupted as `how`.
    pub fn new(data: &[u8], how: Corruption) -> Self {
        let outboard = PreOrderMemOutboard::create(data, IROH_BLOCK_SIZE);
        let hash = Hash::from(outboard.root);
        let mut corrupted = data.to_vec();
        let group = IROH_BLOCK_SIZE.bytes() as u64;
        let first = match how {
            Corruption::EveryChunkGroup => 0,
            Corruption::FromChunkGroup(n) => n,
        };
        let mut off = first.saturating_mul(group);
        while off < corrupted.len() as u64 {
            // flip a bit in the middle of the group
            let i = (off + (group / 2)).min(corrupted.len() as u64 - 1) as usize;
            corrupted[i] ^= 0x10;
            off += group;
        }
        Self {
            hash,
            size: data.len() as u64,
            corrupted: Arc::new(corrupted),
            outboard: Arc::new(outboard),
            served_bytes: Default::default(),
        }
    }

    /// The (correct) hash this provider claims to serve.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// Bytes of bao stream written so far over all requests.
    pub fn served_bytes(&self) -> u64 {
        self.served_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Binds an endpoint with `secret` on 127.0.0.1 and serves this provider on it.
    pub async fn spawn(self, secret: SecretKey) -> Result<CorruptPeer, FixtureError> {
        self.spawn_at(secret, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
    }

    /// Binds an endpoint with `secret` on `addr` and serves this provider on it (reachable at
    /// `addr`'s IP, or loopback when that is unspecified).
    pub async fn spawn_at(
        self,
        secret: SecretKey,
        addr: SocketAddr,
    ) -> Result<CorruptPeer, FixtureError> {
        let ep = endpoint_at(secret, addr).await?;
        let addr = bound_addr(&ep, addr)
            .ok_or_else(|| FixtureError::Bind(format!("not bound on {}", addr.ip())))?;
        let id = ep.id();
        let router = Router::builder(ep)
            .accept(iroh_blobs::ALPN, self.clone())
            .spawn();
        Ok(CorruptPeer {
            router,
            id,
            addr,
            provider: self,
        })
    }

    async fn handle_stream(
        &self,
        mut send: iroh::endpoint::SendStream,
        mut recv: iroh::endpoint::RecvStream,
    ) -> Result<(), AcceptError> {
        let req = recv
            .read_to_end(64 * 1024)
            .await
            .map_err(AcceptError::from_err)?;
        let Some((&kind, body)) = req.split_first() else {
            return Ok(());
        };
        match kind {
            // Request::Get
            0 => {
                let Ok(get) = postcard::from_bytes::<GetRequest>(body) else {
                    return Ok(());
                };
                let ranges: ChunkRanges = match get.ranges.as_single() {
                    Some((0, r)) => r.clone(),
                    _ => return Ok(()),
                };
                if get.hash != self.hash {
                    return Ok(());
                }
                let mut out = Vec::new();
                out.extend_from_slice(&self.size.to_le_bytes());
                let outboard: &PreOrderMemOutboard = &self.outboard;
                if encode_ranges(&self.corrupted[..], outboard, &ranges, &mut out).is_err() {
                    return Ok(());
                }
                self.served_bytes
                    .fetch_add(out.len() as u64, std::sync::atomic::Ordering::Relaxed);
                // the receiver may reset the stream at the first bad group: ignore errors
                send.write_all(&out).await.ok();
                send.finish().ok();
                send.stopped().await.ok();
            }
            // Request::Observe: claim the whole blob
            1 => {
                let Ok(obs) = postcard::from_bytes::<ObserveRequest>(body) else {
                    return Ok(());
                };
                if obs.hash != self.hash {
                    return Ok(());
                }
                let item = ObserveItem {
                    size: self.size,
                    ranges: ChunkRanges::all(),
                };
                let Ok(bytes) = postcard::to_allocvec(&item) else {
                    return Ok(());
                };
                let mut framed = Vec::new();
                write_varint(&mut framed, bytes.len() as u64);
                framed.extend_from_slice(&bytes);
                send.write_all(&framed).await.ok();
                // keep the stream open until the observer goes away
                send.stopped().await.ok();
            }
            _ => {}
        }
        Ok(())
    }
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
}

impl ProtocolHandler for CorruptProvider {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let mut tasks = tokio::task::JoinSet::new();
        while let Ok((send, recv)) = conn.accept_bi().await {
            let this = self.clone();
            tasks.spawn(async move { this.handle_stream(send, recv).await });
        }
        tasks.abort_all();
        Ok(())
    }
}

/// A running [`CorruptProvider`] on its own endpoint.
#[derive(Debug)]
pub struct CorruptPeer {
    /// The router serving the provider.
    pub router: Router,
    /// The peer's endpoint id.
    pub id: EndpointId,
    /// The loopback address it listens on.
    pub addr: SocketAddr,
    /// The provider (for its counters).
    pub provider: CorruptProvider,
}

impl CorruptPeer {
    /// Dialable address of the peer.
    pub fn endpoint_addr(&self) -> EndpointAddr {
        EndpointAddr::new(self.id).with_ip_addr(self.addr)
    }

    /// Closes the endpoint.
    pub async fn shutdown(self) {
        self.router.shutdown().await.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iroh_blobs::{
        get::{GetError, fsm::DecodeError},
        protocol::ChunkRangesExt,
        store::mem::MemStore,
    };

    #[tokio::test]
    async fn corrupt_provider_is_detected_as_bad_data() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let peer = CorruptProvider::new(&data, Corruption::FromChunkGroup(2))
            .spawn(SecretKey::from_bytes(&[7; 32]))
            .await
            .expect("spawn");
        let hash = peer.provider.hash();
        assert_eq!(hash.as_bytes(), blake3::hash(&data).as_bytes());
        let client = local_endpoint(SecretKey::from_bytes(&[8; 32]))
            .await
            .expect("client");
        let store = MemStore::new();
        let conn = client
            .connect(peer.endpoint_addr(), iroh_blobs::ALPN)
            .await
            .expect("connect");
        // the first two groups are honest
        let ok = store
            .remote()
            .execute_get(
                conn.clone(),
                GetRequest::blob_ranges(hash, ChunkRanges::bytes(0..32 * 1024)),
            )
            .await;
        assert!(ok.is_ok(), "{ok:?}");
        let bad = store
            .remote()
            .execute_get(conn.clone(), GetRequest::blob(hash))
            .await;
        match bad {
            Err(GetError::Decode {
                source: DecodeError::LeafHashMismatch { .. },
                ..
            }) => {}
            other => panic!("expected a leaf hash mismatch, got {other:?}"),
        }
        let bf = store.observe(hash).await.expect("observe");
        assert_eq!(bf.ranges, ChunkRanges::chunks(0..32));
        conn.close(0u32.into(), b"done");
        client.close().await;
        peer.shutdown().await;
        store.shutdown().await.ok();
    }
}
