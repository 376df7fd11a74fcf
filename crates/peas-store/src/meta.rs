//! The peas metadata database (redb): known manifests, the peer table, and the files the
//! blob store references in place.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use peas_proto::{ContentHash, Manifest, NodeId};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::store::Source;

/// The most peers remembered per content hash; recording more evicts the least recently seen.
pub const MAX_PEERS_PER_HASH: usize = 1024;
/// The most addresses remembered per peer (extra ones are dropped).
const MAX_ADDRS: usize = 16;

/// Content hash → `.peas` file bytes.
const MANIFESTS: TableDefinition<'static, &[u8; 32], &[u8]> = TableDefinition::new("manifests");
/// (content hash, node id) → postcard([`PeerValue`]).
const PEERS: TableDefinition<'static, (&[u8; 32], &[u8; 32]), &[u8]> =
    TableDefinition::new("peers");

/// Content hash → postcard([`SourceValue`]): the file the blob store references for it.
const SOURCES: TableDefinition<'static, &[u8; 32], &[u8]> = TableDefinition::new("sources");

#[derive(Serialize, Deserialize)]
struct SourceValue {
    /// The path's bytes (unix) or UTF-8 text (elsewhere).
    path: Vec<u8>,
    size: u64,
    mtime_ns: u128,
}

#[cfg(unix)]
fn path_bytes(p: &Path) -> Vec<u8> {
    std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec()
}

#[cfg(unix)]
fn path_from_bytes(b: &[u8]) -> PathBuf {
    PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b))
}

#[cfg(not(unix))]
fn path_bytes(p: &Path) -> Vec<u8> {
    p.to_string_lossy().into_owned().into_bytes()
}

#[cfg(not(unix))]
fn path_from_bytes(b: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(b).into_owned())
}

#[derive(Serialize, Deserialize)]
struct PeerValue {
    addrs: Vec<SocketAddr>,
    last_seen_unix: u64,
}

/// A remembered peer of one swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecordEntry {
    /// The peer's node id.
    pub id: NodeId,
    /// Its known direct addresses (at most 16 are kept).
    pub addrs: Vec<SocketAddr>,
    /// When it was last heard from, unix seconds.
    pub last_seen_unix: u64,
}

/// The metadata database in `peas.redb`. All methods are blocking (short redb transactions,
/// each committed durably); call them from `spawn_blocking` in latency-sensitive async code.
#[derive(Debug)]
pub struct MetaDb {
    db: Database,
}

fn meta_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Meta(e.into())
}

impl MetaDb {
    /// Opens (creating if needed) the database file at `path` and its tables.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let db = Database::create(path.as_ref()).map_err(meta_err)?;
        let tx = db.begin_write().map_err(meta_err)?;
        tx.open_table(MANIFESTS).map_err(meta_err)?;
        tx.open_table(PEERS).map_err(meta_err)?;
        tx.open_table(SOURCES).map_err(meta_err)?;
        tx.commit().map_err(meta_err)?;
        Ok(Self { db })
    }

    /// Records the file the blob store references for `hash` (see [`Imported::source`]), or
    /// with `None` forgets it (the store holds its own copy).
    ///
    /// [`Imported::source`]: crate::Imported::source
    pub fn set_source(&self, hash: impl Into<ContentHash>, source: Option<&Source>) -> Result<()> {
        let hash = hash.into();
        let tx = self.db.begin_write().map_err(meta_err)?;
        {
            let mut t = tx.open_table(SOURCES).map_err(meta_err)?;
            match source {
                Some(src) => {
                    let v = postcard::to_stdvec(&SourceValue {
                        path: path_bytes(&src.path),
                        size: src.size,
                        mtime_ns: src.mtime_ns,
                    })
                    .expect("postcard encoding into a Vec is infallible");
                    t.insert(hash.as_bytes(), v.as_slice()).map_err(meta_err)?;
                }
                None => {
                    t.remove(hash.as_bytes()).map_err(meta_err)?;
                }
            }
        }
        tx.commit().map_err(meta_err)
    }

    /// The file the blob store references for `hash`, if recorded (see
    /// [`MetaDb::set_source`]); an unreadable record counts as none.
    pub fn source(&self, hash: impl Into<ContentHash>) -> Result<Option<Source>> {
        let hash = hash.into();
        let tx = self.db.begin_read().map_err(meta_err)?;
        let t = tx.open_table(SOURCES).map_err(meta_err)?;
        let Some(v) = t.get(hash.as_bytes()).map_err(meta_err)? else {
            return Ok(None);
        };
        Ok(postcard::from_bytes::<SourceValue>(v.value())
            .ok()
            .map(|v| Source {
                path: path_from_bytes(&v.path),
                size: v.size,
                mtime_ns: v.mtime_ns,
            }))
    }

    /// Stores (or replaces) a manifest under its content hash.
    pub fn put_manifest(&self, manifest: &Manifest) -> Result<()> {
        let tx = self.db.begin_write().map_err(meta_err)?;
        {
            let mut t = tx.open_table(MANIFESTS).map_err(meta_err)?;
            t.insert(
                manifest.hash().as_bytes(),
                manifest.to_file_bytes().as_slice(),
            )
            .map_err(meta_err)?;
        }
        tx.commit().map_err(meta_err)
    }

    /// The manifest stored for `hash`, re-verified on read.
    pub fn get_manifest(&self, hash: impl Into<ContentHash>) -> Result<Option<Manifest>> {
        let hash = hash.into();
        let tx = self.db.begin_read().map_err(meta_err)?;
        let t = tx.open_table(MANIFESTS).map_err(meta_err)?;
        let Some(v) = t.get(hash.as_bytes()).map_err(meta_err)? else {
            return Ok(None);
        };
        Ok(Some(Manifest::from_file_bytes(v.value())?))
    }

    /// All stored manifests, in hash order.
    pub fn manifests(&self) -> Result<Vec<Manifest>> {
        let tx = self.db.begin_read().map_err(meta_err)?;
        let t = tx.open_table(MANIFESTS).map_err(meta_err)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(meta_err)? {
            let (_, v) = item.map_err(meta_err)?;
            out.push(Manifest::from_file_bytes(v.value())?);
        }
        Ok(out)
    }

    /// Removes the manifest of `hash`; returns whether one was stored.
    pub fn remove_manifest(&self, hash: impl Into<ContentHash>) -> Result<bool> {
        let hash = hash.into();
        let tx = self.db.begin_write().map_err(meta_err)?;
        let removed = {
            let mut t = tx.open_table(MANIFESTS).map_err(meta_err)?;
            t.remove(hash.as_bytes()).map_err(meta_err)?.is_some()
        };
        tx.commit().map_err(meta_err)?;
        Ok(removed)
    }

    /// Records (inserts or updates) a peer of the swarm of `hash`. If the swarm then has more
    /// than [`MAX_PEERS_PER_HASH`] peers, the least recently seen ones are evicted.
    pub fn record_peer(&self, hash: impl Into<ContentHash>, entry: PeerRecordEntry) -> Result<()> {
        self.record_peers(hash, [entry])
    }

    /// Records several peers in one transaction (see [`MetaDb::record_peer`]).
    pub fn record_peers(
        &self,
        hash: impl Into<ContentHash>,
        entries: impl IntoIterator<Item = PeerRecordEntry>,
    ) -> Result<()> {
        let hash = hash.into();
        let tx = self.db.begin_write().map_err(meta_err)?;
        {
            let mut t = tx.open_table(PEERS).map_err(meta_err)?;
            for mut e in entries {
                e.addrs.truncate(MAX_ADDRS);
                let v = postcard::to_stdvec(&PeerValue {
                    addrs: e.addrs,
                    last_seen_unix: e.last_seen_unix,
                })
                .expect("postcard encoding into a Vec is infallible");
                t.insert((hash.as_bytes(), e.id.as_bytes()), v.as_slice())
                    .map_err(meta_err)?;
            }
            let mut all = Vec::new();
            for item in t
                .range((hash.as_bytes(), &[0u8; 32])..=(hash.as_bytes(), &[0xffu8; 32]))
                .map_err(meta_err)?
            {
                let (k, v) = item.map_err(meta_err)?;
                let last_seen = postcard::from_bytes::<PeerValue>(v.value())
                    .map(|p| p.last_seen_unix)
                    .unwrap_or(0);
                all.push((last_seen, *k.value().1));
            }
            if all.len() > MAX_PEERS_PER_HASH {
                all.sort_unstable();
                let excess = all.len() - MAX_PEERS_PER_HASH;
                for (_, id) in &all[..excess] {
                    t.remove((hash.as_bytes(), id)).map_err(meta_err)?;
                }
            }
        }
        tx.commit().map_err(meta_err)
    }

    /// Forgets everything recorded for `hash`: its manifest, its source file and its peers.
    /// Returns whether a manifest was stored.
    pub fn forget(&self, hash: impl Into<ContentHash>) -> Result<bool> {
        let hash = hash.into();
        let tx = self.db.begin_write().map_err(meta_err)?;
        let had = {
            let mut t = tx.open_table(MANIFESTS).map_err(meta_err)?;
            t.remove(hash.as_bytes()).map_err(meta_err)?.is_some()
        };
        {
            let mut t = tx.open_table(SOURCES).map_err(meta_err)?;
            t.remove(hash.as_bytes()).map_err(meta_err)?;
            let mut t = tx.open_table(PEERS).map_err(meta_err)?;
            t.retain_in(
                (hash.as_bytes(), &[0u8; 32])..=(hash.as_bytes(), &[0xffu8; 32]),
                |_, _| false,
            )
            .map_err(meta_err)?;
        }
        tx.commit().map_err(meta_err)?;
        Ok(had)
    }

    /// The remembered peers of the swarm of `hash`, most recently seen first.
    pub fn peers(&self, hash: impl Into<ContentHash>) -> Result<Vec<PeerRecordEntry>> {
        let hash = hash.into();
        let tx = self.db.begin_read().map_err(meta_err)?;
        let t = tx.open_table(PEERS).map_err(meta_err)?;
        let mut out = Vec::new();
        for item in t
            .range((hash.as_bytes(), &[0u8; 32])..=(hash.as_bytes(), &[0xffu8; 32]))
            .map_err(meta_err)?
        {
            let (k, v) = item.map_err(meta_err)?;
            // A value that does not decode (it was written by this crate) is skipped.
            if let Ok(p) = postcard::from_bytes::<PeerValue>(v.value()) {
                out.push(PeerRecordEntry {
                    id: NodeId(*k.value().1),
                    addrs: p.addrs,
                    last_seen_unix: p.last_seen_unix,
                });
            }
        }
        out.sort_by(|a, b| {
            b.last_seen_unix
                .cmp(&a.last_seen_unix)
                .then(a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// Forgets every peer (of every swarm) last seen before `older_than_unix`; returns how many.
    pub fn expire_peers(&self, older_than_unix: u64) -> Result<usize> {
        let tx = self.db.begin_write().map_err(meta_err)?;
        let mut removed = 0usize;
        {
            let mut t = tx.open_table(PEERS).map_err(meta_err)?;
            t.retain(|_, v| {
                let keep = postcard::from_bytes::<PeerValue>(v)
                    .is_ok_and(|p| p.last_seen_unix >= older_than_unix);
                if !keep {
                    removed += 1;
                }
                keep
            })
            .map_err(meta_err)?;
        }
        tx.commit().map_err(meta_err)?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peas_proto::{ManifestDraft, SafeName};

    fn manifest(seed: u8) -> Manifest {
        ManifestDraft {
            hash: ContentHash([seed; 32]),
            size: 1000,
            name: SafeName::new("x.bin").unwrap(),
            partition_size: 1 << 20,
            created_at: 1,
            owners: vec![],
        }
        .sign(&[seed; 32])
        .unwrap()
    }

    fn peer(id: u8, last_seen_unix: u64) -> PeerRecordEntry {
        PeerRecordEntry {
            id: NodeId([id; 32]),
            addrs: vec![SocketAddr::from(([127, 0, 0, 1], 1000 + u16::from(id)))],
            last_seen_unix,
        }
    }

    #[test]
    fn manifests_roundtrip_and_persist() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("peas.redb");
        let (a, b) = (manifest(1), manifest(2));
        {
            let db = MetaDb::open(&path).unwrap();
            assert_eq!(db.get_manifest(a.hash()).unwrap(), None);
            db.put_manifest(&a).unwrap();
            db.put_manifest(&b).unwrap();
            db.put_manifest(&a).unwrap();
            assert_eq!(db.get_manifest(a.hash()).unwrap(), Some(a.clone()));
        }
        let db = MetaDb::open(&path).unwrap();
        assert_eq!(db.manifests().unwrap(), vec![a.clone(), b.clone()]);
        assert!(db.remove_manifest(a.hash()).unwrap());
        assert!(!db.remove_manifest(a.hash()).unwrap());
        assert_eq!(db.manifests().unwrap(), vec![b]);
    }

    #[test]
    fn peers_are_per_hash_updated_expired_and_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let db = MetaDb::open(tmp.path().join("peas.redb")).unwrap();
        let (h1, h2) = (ContentHash([1; 32]), ContentHash([2; 32]));
        db.record_peer(h1, peer(1, 100)).unwrap();
        db.record_peer(h1, peer(2, 200)).unwrap();
        db.record_peer(h2, peer(1, 50)).unwrap();
        db.record_peer(h1, peer(1, 300)).unwrap();
        let p = db.peers(h1).unwrap();
        assert_eq!(p, vec![peer(1, 300), peer(2, 200)]);
        assert_eq!(db.peers(h2).unwrap(), vec![peer(1, 50)]);
        assert_eq!(db.peers(ContentHash([3; 32])).unwrap(), vec![]);
        assert_eq!(db.expire_peers(250).unwrap(), 2);
        assert_eq!(db.peers(h1).unwrap(), vec![peer(1, 300)]);
        assert_eq!(db.peers(h2).unwrap(), vec![]);

        // Bound: 1030 peers recorded, the 6 least recently seen are gone.
        let entries = (0..1030u32).map(|i| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            PeerRecordEntry {
                id: NodeId(id),
                addrs: vec![],
                last_seen_unix: 1000 + u64::from(i),
            }
        });
        db.record_peers(h2, entries).unwrap();
        let p = db.peers(h2).unwrap();
        assert_eq!(p.len(), MAX_PEERS_PER_HASH);
        assert_eq!(p.last().unwrap().last_seen_unix, 1006);
        assert_eq!(p.first().unwrap().last_seen_unix, 1000 + 1029);
    }
}
