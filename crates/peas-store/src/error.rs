//! The error type of peas-store.

use std::path::PathBuf;

use peas_proto::{ContentHash, ManifestError};

/// What went wrong in the store. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the home's lock.
    #[error(
        "home {} is in use by another peas process (a running `peas seed`? stop it, or use another --home)",
        .0.display()
    )]
    HomeInUse(PathBuf),
    /// No home directory was given and the platform has no data directory.
    #[error("cannot find a data directory for the peas home; pass --home or set PEAS_HOME")]
    NoHomeDir,
    /// A file-system operation failed.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error (in the message, so not also exposed as `source()`).
        cause: std::io::Error,
    },
    /// The secret key file has the wrong length.
    #[error("secret key file {} is corrupt: expected 32 bytes, found {len}", path.display())]
    BadSecretKey {
        /// The key file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The iroh-blobs store reported an error.
    #[error("blob store: {0}")]
    Blobs(String),
    /// The metadata database reported an error.
    #[error("metadata database: {0}")]
    Meta(redb::Error),
    /// The blob is not (completely) in the store.
    #[error("blob {0} is not complete in the store")]
    NotComplete(ContentHash),
    /// The store's verified size of a blob differs from the size a caller expects.
    #[error("blob {hash} has size {actual} in the store, expected {expected}")]
    SizeMismatch {
        /// The blob.
        hash: ContentHash,
        /// The size the caller expected (e.g. from the manifest).
        expected: u64,
        /// The size iroh-blobs verified.
        actual: u64,
    },
    /// A stored manifest no longer decodes.
    #[error("stored manifest is invalid: {0}")]
    Manifest(ManifestError),
    /// A path argument is unusable (e.g. has no file name).
    #[error("invalid path {}: {reason}", path.display())]
    InvalidPath {
        /// The path.
        path: PathBuf,
        /// Why it is unusable.
        reason: &'static str,
    },
}

// Messages embed their cause, so these are plain `From`s (not `#[from]`, which would also
// expose the cause as `source()` and print it twice in `{:#}` chains).
impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        Self::Meta(e)
    }
}

impl From<ManifestError> for StoreError {
    fn from(e: ManifestError) -> Self {
        Self::Manifest(e)
    }
}

impl StoreError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            cause: source,
        }
    }

    pub(crate) fn blobs(context: &str, e: impl std::fmt::Display) -> Self {
        // Keep it to one line whatever the source error prints.
        let msg = format!("{context}: {e}").replace('\n', " ");
        Self::Blobs(msg)
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
