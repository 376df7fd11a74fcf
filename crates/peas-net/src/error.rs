//! Errors of peas-net; each message is one line saying what is wrong.

/// Everything that can go wrong in a node.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The endpoint could not be bound (address in use, bad address...).
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The listen address.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// The relay URL does not parse.
    #[error("invalid relay URL {0:?}")]
    BadRelay(String),
    /// The manifest's geometry is not usable by the planner.
    #[error("unusable manifest geometry: {0}")]
    Geometry(String),
    /// A manifest owner id is not a valid ed25519 public key.
    #[error("manifest owner {0} is not a valid node id")]
    BadOwner(String),
    /// The local store failed.
    #[error("store error: {0}")]
    Store(String),
    /// No peer answered and nothing could be downloaded within the bound.
    #[error("no peer answered within {0:?}: could not reach any owner or peer of the content")]
    NoPeers(std::time::Duration),
    /// The download stopped making progress.
    #[error("download stalled: no data verified for {0:?}")]
    Stalled(std::time::Duration),
    /// The install gave up (the message says why).
    #[error("{0}")]
    Failed(String),
    /// The node is shutting down or the swarm task ended.
    #[error("the node is shutting down")]
    Shutdown,
}
