//! Wire types and the signed `.peas` manifest of peas. No IO, no async, no iroh.
//!
//! This crate owns:
//! - the identifiers [`NodeId`] (an ed25519 public key, the same bytes as iroh's `EndpointId`) and
//!   [`ContentHash`] (a BLAKE3 root hash, printed like `b3sum`);
//! - [`SafeName`], a file name that is safe to use as a single path component;
//! - the partition [`Geometry`] of a blob and the [`PartitionSet`] bit set over its partitions;
//! - the signed [`Manifest`] with its two encodings (the binary `.peas` file and the `peas1…` text
//!   ticket), built from a [`ManifestDraft`];
//! - the swarm protocol's [`SwarmMessage`]s and their length-prefixed framing.
//!
//! Decoding untrusted bytes is total: every input yields a value or a typed error
//! ([`ManifestError`], [`WireError`]), never a panic, and what is allocated is bounded by the
//! (itself bounded) input. The byte-level formats are specified in `docs/manifest.md`.
//!
//! ```
//! use peas_proto::{ContentHash, ManifestDraft, Manifest, Owner, SafeName, default_partition_size};
//! let data = b"hello peas";
//! let secret = [7u8; 32];
//! let draft = ManifestDraft {
//!     hash: ContentHash::of(data),
//!     size: data.len() as u64,
//!     name: SafeName::new("hello.txt").unwrap(),
//!     partition_size: default_partition_size(data.len() as u64),
//!     created_at: 1_700_000_000,
//!     owners: vec![],
//! };
//! let manifest = draft.sign(&secret).unwrap();
//! let ticket = manifest.to_ticket();
//! assert_eq!(Manifest::decode_any(ticket.as_bytes()).unwrap(), manifest);
//! assert_eq!(Manifest::from_file_bytes(&manifest.to_file_bytes()).unwrap(), manifest);
//! ```

mod geometry;
mod ids;
mod manifest;
mod name;
mod partition_set;
mod wire;

pub use geometry::{
    CHUNK_GROUP_SIZE, DEFAULT_MAX_PARTITION_SIZE, DEFAULT_MIN_PARTITION_SIZE,
    DEFAULT_TARGET_PARTITIONS, Geometry, GeometryError, MAX_PARTITION_SIZE, MAX_PARTITIONS,
    MAX_PIECE_SIZE, MIN_PARTITION_SIZE, default_partition_size,
};
pub use ids::{ContentHash, IdParseError, NodeId};
pub use manifest::{
    FILE_MAGIC, MANIFEST_VERSION, MAX_ADDRS_PER_OWNER, MAX_MANIFEST_LEN, MAX_OWNERS,
    MAX_RELAY_URL_LEN, MAX_TICKET_LEN, Manifest, ManifestDraft, ManifestError, Owner,
    SIGNATURE_DOMAIN, SIGNATURE_LEN, TICKET_PREFIX, node_id_from_secret,
};
pub use name::{MAX_NAME_LEN, NameError, SafeName};
pub use partition_set::PartitionSet;
pub use wire::{
    MAX_FRAME_LEN, MAX_HAVE_PARTITIONS, MAX_LISTEN_ADDRS, MAX_PEER_ADDRS, MAX_PEERS_PER_MESSAGE,
    PeerRecord, SWARM_ALPN, SWARM_VERSION, SwarmMessage, WireError, decode_frame,
    decode_frame_body, encode_frame, frame_len, try_encode_frame,
};
