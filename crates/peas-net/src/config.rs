//! Node configuration and its documented defaults (see `docs/network.md`).

use std::{net::SocketAddr, time::Duration};

/// The default UDP port peas listens on.
pub const DEFAULT_PORT: u16 = 7117;

/// The default listen address: every IPv4 interface on [`DEFAULT_PORT`].
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    DEFAULT_PORT,
);

/// Default most peers connected per swarm.
pub const DEFAULT_MAX_CONNECTED_PEERS: usize = 32;
/// Default most peers known per swarm.
pub const DEFAULT_MAX_KNOWN_PEERS: usize = 1024;
/// Default time after which a peer not seen is forgotten.
pub const DEFAULT_PEER_TTL: Duration = Duration::from_secs(30 * 60);
/// Default period of peer exchange to each connected peer.
pub const DEFAULT_PEX_INTERVAL: Duration = Duration::from_secs(2);
/// Default most peer records sent in one peer-exchange message.
pub const DEFAULT_PEX_SAMPLE: usize = 32;
/// Default bound on one connection attempt.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on an install with no verified progress.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How a [`crate::Node`] binds, limits and discovers. Build with [`NodeConfig::default`] and
/// change fields.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// UDP socket to listen on (default [`DEFAULT_LISTEN`], `0.0.0.0:7117`). Port 0 picks a
    /// free port.
    pub listen: SocketAddr,
    /// Optional relay URL for hosts behind NAT. `None` (default) keeps the node fully offline:
    /// no relay, no DNS/pkarr, no portmapper.
    pub relay: Option<String>,
    /// Upload cap in bytes/s over all peers and contents; `None` = unlimited.
    pub max_upload_rate: Option<u64>,
    /// Download cap in bytes/s over all peers and contents; `None` = unlimited.
    pub max_download_rate: Option<u64>,
    /// Leech mode: refuse every upload request and tell peers we do not serve.
    pub no_upload: bool,
    /// Most peers connected per swarm (also the planner's limit).
    pub max_connected_peers: usize,
    /// Most peers remembered per swarm; the least recently seen are evicted first.
    pub max_known_peers: usize,
    /// Peers not seen for this long are forgotten.
    pub peer_ttl: Duration,
    /// Period of peer exchange (`Peers` messages) to each connected peer.
    pub pex_interval: Duration,
    /// Most peer records per `Peers` message.
    pub pex_sample: usize,
    /// Bound on one connection attempt.
    pub connect_timeout: Duration,
    /// An install fails when no byte was verified for this long.
    pub stall_timeout: Duration,
    /// Planner tunables (request size, in-flight limits, upload slots...).
    pub planner: peas_sched::Config,
    /// Seed of the planner's random choices; `None` = random per swarm.
    pub seed: Option<u64>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            relay: None,
            max_upload_rate: None,
            max_download_rate: None,
            no_upload: false,
            max_connected_peers: DEFAULT_MAX_CONNECTED_PEERS,
            max_known_peers: DEFAULT_MAX_KNOWN_PEERS,
            peer_ttl: DEFAULT_PEER_TTL,
            pex_interval: DEFAULT_PEX_INTERVAL,
            pex_sample: DEFAULT_PEX_SAMPLE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            planner: peas_sched::Config::default(),
            seed: None,
        }
    }
}
