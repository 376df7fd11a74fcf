//! Persistence of the peer table, so a restarted node can find its swarms again.

use std::net::SocketAddr;

use peas_proto::{ContentHash, NodeId};

/// Where a node keeps the peers it has met, per content. Implemented for peas-store's
/// `MetaDb`; errors are logged and ignored by the caller (a lost peer record only costs a
/// slower rejoin).
pub trait PeerStore: Send + Sync + 'static {
    /// Peers known for `hash`: id, addresses, and how many seconds ago they were last seen.
    fn load(&self, hash: ContentHash) -> Vec<(NodeId, Vec<SocketAddr>, u64)>;
    /// Records that `id` (reachable at `addrs`) was seen now in the swarm of `hash`.
    fn save(&self, hash: ContentHash, id: NodeId, addrs: &[SocketAddr]);
}
