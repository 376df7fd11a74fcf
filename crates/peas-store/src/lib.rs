//! The verified store of peas: the node's home directory, the iroh-blobs blob store, and the
//! peas metadata database.
//!
//! - [`Home`] owns a node's home directory: the secret key file (`secret.key`), the iroh-blobs
//!   file store (`blobs/`) and the metadata database (`peas.redb`), and a lock file that keeps
//!   a second process out.
//! - [`PeasStore`] wraps an `iroh_blobs::api::Store` (file-backed or in memory): import a file,
//!   export a complete blob atomically, and read the per-partition [`Completion`] of a blob from
//!   iroh-blobs' verified chunk bitfield.
//! - [`MetaDb`] keeps known manifests, per content hash a bounded table of peers with their
//!   last-seen times, and the [`Source`] file of content imported in place.
//! - [`verify_file`] / [`hash_file`] check a file on disk against a manifest.
//!
//! Invariant: only data that iroh-blobs verified against the BLAKE3 tree is reported as
//! present. This crate never re-implements outboards, validation or partial-blob tracking.

mod error;
mod home;
mod meta;
mod store;
mod verify;

pub use error::StoreError;
pub use home::{HOME_ENV, Home, write_file_atomic};
pub use iroh_blobs::protocol::ChunkRanges;
pub use meta::{MAX_PEERS_PER_HASH, MetaDb, PeerRecordEntry};
pub use store::{
    Completion, Imported, MAX_INLINED, PeasStore, Source, from_blobs_hash, tag_name, to_blobs_hash,
};
pub use verify::{hash_file, verify_file};
