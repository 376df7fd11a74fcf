//! peas-net: the iroh shell of peas.
//!
//! A [`Node`] owns an iroh [`iroh::Endpoint`] (offline-safe by default: no relay, no DNS/pkarr,
//! no portmapper) and a router serving two protocols:
//! - iroh-blobs' own protocol ([`iroh_blobs::ALPN`]): verified ranges straight from the store,
//!   partial blobs included, with upload decisions by the planner, leech mode, an upload rate
//!   limit and per-peer byte counts ([`upload`]);
//! - the peas swarm protocol ([`peas_proto::SWARM_ALPN`]): have-sets, have-updates, peer
//!   exchange and leave ([`swarm`]).
//!
//! For each content installed or seeded a driver task runs peas-sched's planner: it is the
//! only place that reads the clock and touches sockets. It sizes each data connection's
//! receive window from what that peer delivers ([`window`]). See `docs/network.md` for the
//! protocol, discovery, limits and defaults.
//!
//! ```no_run
//! # async fn demo(secret: [u8; 32], store: iroh_blobs::api::Store, manifest: peas_proto::Manifest) -> Result<(), peas_net::NetError> {
//! use peas_net::{InstallOptions, Node, NodeConfig};
//! let node = Node::spawn(secret, store, None, NodeConfig::default()).await?;
//! let install = node.install(&manifest, InstallOptions::default()).await?;
//! let report = install.wait().await?;
//! println!("{} bytes from {} peers", report.bytes, report.from_peers.len());
//! node.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod config;
pub mod convert;
mod driver;
mod error;
mod node;
pub mod peers;
pub mod persist;
pub mod rate;
pub mod swarm;
pub mod upload;
pub mod window;

pub use config::{DEFAULT_LISTEN, DEFAULT_PORT, NodeConfig};
pub use driver::{Progress, classify_get_error};
pub use error::NetError;
pub use node::{InstallHandle, InstallOptions, InstallReport, Node};
pub use persist::PeerStore;
