//! The blob store: iroh-blobs (file or memory) plus peas' view of partitions.

use std::fs;
use std::path::{Path, PathBuf};

use iroh_blobs::api::Store;
use iroh_blobs::api::blobs::{AddPathOptions, BlobStatus, ImportMode};
use iroh_blobs::store::fs::FsStore;
use iroh_blobs::store::mem::MemStore;
use iroh_blobs::{BlobFormat, Hash, HashAndFormat};
use peas_proto::{ContentHash, Geometry, PartitionSet};

use crate::ChunkRanges;
use crate::error::{Result, StoreError};
use crate::home::sync_dir;

const CHUNK: u64 = 1024;

/// Converts a peas content hash to an iroh-blobs hash (same 32 bytes).
pub fn to_blobs_hash(hash: impl Into<ContentHash>) -> Hash {
    Hash::from_bytes(hash.into().0)
}

/// Converts an iroh-blobs hash to a peas content hash (same 32 bytes).
pub fn from_blobs_hash(hash: Hash) -> ContentHash {
    ContentHash(*hash.as_bytes())
}

/// The name of the iroh-blobs tag that keeps a blob (complete or partial) alive:
/// `peas/<lowercase hex hash>`.
pub fn tag_name(hash: impl Into<ContentHash>) -> String {
    format!("peas/{}", hash.into())
}

/// The result of [`PeasStore::import_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// BLAKE3 root hash of the file.
    pub hash: ContentHash,
    /// Size of the file in bytes.
    pub size: u64,
    /// The file the store now reads this content from, if it references the file in place
    /// instead of holding a copy: it must stay unchanged for the content to be served.
    pub source: Option<Source>,
}

/// A file that a store references in place, as it was when imported (see
/// [`Source::unchanged`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file's absolute path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, nanoseconds since the unix epoch (0 if unknown).
    pub mtime_ns: u128,
}

impl Source {
    /// Records the file at `path` as it is now (`path` should be absolute).
    pub fn of(path: &Path) -> Result<Source> {
        let meta = fs::metadata(path)
            .map_err(|e| StoreError::io(format!("cannot read {}", path.display()), e))?;
        Ok(Source {
            path: path.to_owned(),
            size: meta.len(),
            mtime_ns: mtime_ns(&meta),
        })
    }

    /// Whether the file still has the size and modification time it had when recorded (the
    /// quick check of make and rsync; a change that keeps both is not seen). `Err` with the
    /// reason if not.
    pub fn unchanged(&self) -> std::result::Result<(), String> {
        match fs::metadata(&self.path) {
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
            Ok(m) if m.len() != self.size || mtime_ns(&m) != self.mtime_ns => Err(format!(
                "{} changed since it was imported",
                self.path.display()
            )),
            Ok(_) => Ok(()),
        }
    }
}

fn mtime_ns(meta: &fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// Files up to this size are copied into the store even when referencing is asked for
/// (iroh-blobs' file store inlines them: its default `max_data_inlined`).
pub const MAX_INLINED: u64 = 16 * 1024;

/// Which partitions of a blob the store holds, verified.
///
/// Derived from iroh-blobs' bitfield: a partition is in `partitions` only if every 1 KiB chunk
/// of it has been verified against the BLAKE3 tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Fully verified partitions (`len()` = the geometry's partition count).
    pub partitions: PartitionSet,
    /// Verified bytes within the blob (whole partitions or not).
    pub verified_bytes: u64,
    /// True when the whole blob is verified.
    pub complete: bool,
}

impl Completion {
    /// Computes the completion of a blob of `geometry` from its verified chunk ranges (1 KiB
    /// chunks, as in iroh-blobs' `Bitfield::ranges`). Pure; used by [`PeasStore::completion`].
    pub fn from_ranges(ranges: &ChunkRanges, geometry: &Geometry) -> Completion {
        let size = geometry.size();
        let mut partitions = PartitionSet::new(geometry.partitions());
        let mut verified_bytes = 0u64;
        let bounds = ranges.boundaries();
        for pair in bounds.chunks(2) {
            let start = pair[0].0.saturating_mul(CHUNK).min(size);
            let end = match pair.get(1) {
                Some(e) => e.0.saturating_mul(CHUNK).min(size),
                None => size,
            };
            if end <= start {
                continue;
            }
            verified_bytes += end - start;
            // Partitions that lie entirely inside [start, end).
            let ps = geometry.partition_size();
            let mut i = start.div_ceil(ps);
            while i < u64::from(geometry.partitions()) {
                let r = geometry.partition_range(i as u32);
                if r.end > end {
                    break;
                }
                partitions.insert(i as u32);
                i += 1;
            }
        }
        let complete = verified_bytes == size;
        Completion {
            partitions,
            verified_bytes,
            complete,
        }
    }
}

#[derive(Debug, Clone)]
enum Backend {
    Mem(MemStore),
    Fs(FsStore),
    Plain(Store),
}

/// peas' handle on an iroh-blobs store. Cheap to clone (all clones share the store).
///
/// Blobs that peas cares about are protected from garbage collection with a named tag
/// ([`tag_name`]); partial blobs too, once [`PeasStore::ensure_tag`] was called.
#[derive(Debug, Clone)]
pub struct PeasStore {
    backend: Backend,
}

impl PeasStore {
    /// A new in-memory store (for tests and embedding). Must be called inside a tokio runtime.
    pub fn memory() -> Self {
        Self {
            backend: Backend::Mem(MemStore::new()),
        }
    }

    /// Opens (creating if needed) an iroh-blobs file store in `dir` (made absolute). The store
    /// runs its own tokio runtime; call [`PeasStore::shutdown`] before dropping it.
    pub async fn open_fs(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = std::path::absolute(dir.as_ref())
            .map_err(|e| StoreError::io(format!("cannot resolve {}", dir.as_ref().display()), e))?;
        let fs = FsStore::load(&dir)
            .await
            .map_err(|e| StoreError::blobs(&format!("cannot open {}", dir.display()), e))?;
        Ok(Self {
            backend: Backend::Fs(fs),
        })
    }

    /// Opens the file store in `dir` like [`PeasStore::open_fs`], with iroh-blobs' garbage
    /// collection running every 20 ms: it deletes every blob without a tag. For removing
    /// content only (peas tags every blob it keeps, partial ones included).
    pub async fn open_fs_collecting(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = std::path::absolute(dir.as_ref())
            .map_err(|e| StoreError::io(format!("cannot resolve {}", dir.as_ref().display()), e))?;
        let mut options = iroh_blobs::store::fs::options::Options::new(&dir);
        options.gc = Some(iroh_blobs::store::GcConfig {
            interval: std::time::Duration::from_millis(20),
            add_protected: None,
        });
        let fs = FsStore::load_with_opts(dir.join("blobs.db"), options)
            .await
            .map_err(|e| StoreError::blobs(&format!("cannot open {}", dir.display()), e))?;
        Ok(Self {
            backend: Backend::Fs(fs),
        })
    }

    /// Wraps an existing iroh-blobs store handle.
    pub fn from_store(store: Store) -> Self {
        Self {
            backend: Backend::Plain(store),
        }
    }

    /// The underlying iroh-blobs store: peas-net serves and fetches through it.
    pub fn blobs(&self) -> &Store {
        match &self.backend {
            Backend::Mem(m) => m,
            Backend::Fs(f) => f,
            Backend::Plain(s) => s,
        }
    }

    /// Imports the file at `path`, computing its BLAKE3 tree, and tags it with [`tag_name`].
    ///
    /// With `copy` false and the file store, a file larger than [`MAX_INLINED`] stays where it
    /// is and is referenced ([`Imported::source`]): nothing is copied, but the file must not
    /// change while it is served (iroh-blobs would serve the changed bytes, which every peer
    /// rejects). With `copy` true the store keeps its own copy. Either way the import replaces
    /// where the store reads the blob from, if it held it already.
    pub async fn import_file(&self, path: impl AsRef<Path>, copy: bool) -> Result<Imported> {
        let path = std::path::absolute(path.as_ref()).map_err(|e| {
            StoreError::io(format!("cannot resolve {}", path.as_ref().display()), e)
        })?;
        let meta = fs::metadata(&path)
            .map_err(|e| StoreError::io(format!("cannot read {}", path.display()), e))?;
        if !meta.is_file() {
            return Err(StoreError::InvalidPath {
                path,
                reason: "is not a regular file",
            });
        }
        let source = Source::of(&path)?;
        let tt = self
            .blobs()
            .add_path_with_opts(AddPathOptions {
                path: path.clone(),
                format: BlobFormat::Raw,
                mode: if copy {
                    ImportMode::Copy
                } else {
                    ImportMode::TryReference
                },
            })
            .temp_tag()
            .await
            .map_err(|e| StoreError::blobs(&format!("cannot import {}", path.display()), e))?;
        let hash = from_blobs_hash(tt.hash());
        self.ensure_tag(hash).await?;
        drop(tt);
        let size = match self.status(hash).await? {
            BlobStatus::Complete { size } => size,
            _ => return Err(StoreError::NotComplete(hash)),
        };
        let referenced = !copy && size > MAX_INLINED && matches!(self.backend, Backend::Fs(_));
        Ok(Imported {
            hash,
            size,
            source: referenced.then_some(source),
        })
    }

    /// Sets the named tag [`tag_name`] on `hash` (complete or not), protecting it from GC.
    pub async fn ensure_tag(&self, hash: impl Into<ContentHash>) -> Result<()> {
        let hash = hash.into();
        self.blobs()
            .tags()
            .set(tag_name(hash), HashAndFormat::raw(to_blobs_hash(hash)))
            .await
            .map_err(|e| StoreError::blobs("cannot set tag", e))
    }

    /// iroh-blobs' status of a blob (not found, partial, complete).
    pub async fn status(&self, hash: impl Into<ContentHash>) -> Result<BlobStatus> {
        self.blobs()
            .status(to_blobs_hash(hash))
            .await
            .map_err(|e| StoreError::blobs("cannot read blob status", e))
    }

    /// The verified chunk ranges (1 KiB chunks) of a blob; empty if the store has none of it.
    /// For a complete blob iroh-blobs reports `ChunkRanges::all()` (open-ended).
    pub async fn verified_ranges(&self, hash: impl Into<ContentHash>) -> Result<ChunkRanges> {
        let hash = hash.into();
        if matches!(self.status(hash).await?, BlobStatus::NotFound) {
            return Ok(ChunkRanges::empty());
        }
        let bf = self
            .blobs()
            .observe(to_blobs_hash(hash))
            .await
            .map_err(|e| StoreError::blobs("cannot observe blob", e))?;
        Ok(bf.ranges)
    }

    /// The fully verified partitions of `hash` for `geometry`.
    ///
    /// Fails with [`StoreError::SizeMismatch`] if iroh-blobs has verified a size (it has the
    /// last chunk) that differs from `geometry.size()`.
    pub async fn completion(
        &self,
        hash: impl Into<ContentHash>,
        geometry: &Geometry,
    ) -> Result<Completion> {
        let hash = hash.into();
        if matches!(self.status(hash).await?, BlobStatus::NotFound) {
            return Ok(Completion::from_ranges(&ChunkRanges::empty(), geometry));
        }
        let bf = self
            .blobs()
            .observe(to_blobs_hash(hash))
            .await
            .map_err(|e| StoreError::blobs("cannot observe blob", e))?;
        if let Some(actual) = bf.validated_size()
            && actual != geometry.size()
        {
            return Err(StoreError::SizeMismatch {
                hash,
                expected: geometry.size(),
                actual,
            });
        }
        Ok(Completion::from_ranges(&bf.ranges, geometry))
    }

    /// Exports a complete blob to `target` atomically: the data goes to a temporary file in the
    /// target's directory, is fsynced, then renamed to `target` (and the directory fsynced).
    /// `target` never holds a partial file. Overwrites an existing `target`.
    pub async fn export_atomic(
        &self,
        hash: impl Into<ContentHash>,
        target: impl AsRef<Path>,
    ) -> Result<u64> {
        let hash = hash.into();
        let target = std::path::absolute(target.as_ref()).map_err(|e| {
            StoreError::io(format!("cannot resolve {}", target.as_ref().display()), e)
        })?;
        let size = match self.status(hash).await? {
            BlobStatus::Complete { size } => size,
            _ => return Err(StoreError::NotComplete(hash)),
        };
        let (dir, name) = match (target.parent(), target.file_name()) {
            (Some(d), Some(n)) => (d.to_owned(), n.to_string_lossy().into_owned()),
            _ => {
                return Err(StoreError::InvalidPath {
                    path: target,
                    reason: "has no file name",
                });
            }
        };
        if !dir.is_dir() {
            return Err(StoreError::InvalidPath {
                path: dir,
                reason: "is not an existing directory",
            });
        }
        let tmp = dir.join(format!(
            ".{name}.peas-tmp-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        // Probe that the directory is writable, with a clear error, before exporting.
        fs::File::create_new(&tmp)
            .map_err(|e| StoreError::io(format!("cannot write to {}", dir.display()), e))?;
        let _ = fs::remove_file(&tmp);
        let res = self.export_to_tmp(hash, size, &tmp, &target).await;
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map(|()| size)
    }

    async fn export_to_tmp(
        &self,
        hash: ContentHash,
        size: u64,
        tmp: &PathBuf,
        target: &Path,
    ) -> Result<()> {
        self.blobs()
            .export(to_blobs_hash(hash), tmp)
            .finish()
            .await
            .map_err(|e| StoreError::blobs(&format!("cannot export {hash}"), e))?;
        let f = fs::OpenOptions::new()
            .write(true)
            .open(tmp)
            .map_err(|e| StoreError::io(format!("cannot open {}", tmp.display()), e))?;
        f.sync_all()
            .map_err(|e| StoreError::io(format!("cannot sync {}", tmp.display()), e))?;
        let len = f
            .metadata()
            .map_err(|e| StoreError::io(format!("cannot stat {}", tmp.display()), e))?
            .len();
        if len != size {
            return Err(StoreError::SizeMismatch {
                hash,
                expected: size,
                actual: len,
            });
        }
        drop(f);
        fs::rename(tmp, target)
            .map_err(|e| StoreError::io(format!("cannot rename into {}", target.display()), e))?;
        if let Some(dir) = target.parent() {
            sync_dir(dir);
        }
        Ok(())
    }

    /// Flushes and shuts down the store (for the file store: persists bitfields and closes the
    /// database). Other clones must not be used afterwards.
    pub async fn shutdown(&self) -> Result<()> {
        self.blobs()
            .shutdown()
            .await
            .map_err(|e| StoreError::blobs("cannot shut down", e))
    }
}

#[cfg(test)]
mod tests;
