//! The node's home directory: secret key, blob store, metadata database and lock.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use peas_proto::{ContentHash, NodeId, node_id_from_secret};

use crate::error::{Result, StoreError};
use crate::meta::MetaDb;
use crate::store::{PeasStore, tag_name};

/// The environment variable that names the home directory when `--home` is not given.
pub const HOME_ENV: &str = "PEAS_HOME";

const LOCK_FILE: &str = "lock";
const KEY_FILE: &str = "secret.key";
const BLOBS_DIR: &str = "blobs";
const META_FILE: &str = "peas.redb";

/// A node's opened home directory.
///
/// Layout: `secret.key` (32 raw bytes, mode 0600), `blobs/` (the iroh-blobs file store),
/// `peas.redb` (the [`MetaDb`]) and `lock` (held with an exclusive advisory lock while the home
/// is open, so a second process gets [`StoreError::HomeInUse`] instead of waiting). Call
/// [`Home::shutdown`] before exiting so the blob store flushes; a process killed without it
/// still leaves a home that reopens (iroh-blobs re-validates what it cannot trust).
#[derive(Debug)]
pub struct Home {
    dir: PathBuf,
    secret_key: [u8; 32],
    node_id: NodeId,
    store: PeasStore,
    meta: MetaDb,
    _lock: File,
}

impl Home {
    /// Picks the home directory: `flag` (from `--home`), else `$PEAS_HOME` if set and
    /// non-empty, else `<platform data dir>/peas`. The result is absolute.
    pub fn resolve_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
        let dir = match flag {
            Some(d) => d,
            None => match std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
                Some(d) => PathBuf::from(d),
                None => dirs::data_dir().ok_or(StoreError::NoHomeDir)?.join("peas"),
            },
        };
        std::path::absolute(&dir)
            .map_err(|e| StoreError::io(format!("cannot resolve home {}", dir.display()), e))
    }

    /// Opens (creating if needed) the home at `dir`: takes the lock, loads or creates the
    /// secret key, opens the blob store and the metadata database.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Home> {
        let dir = std::path::absolute(dir.as_ref()).map_err(|e| {
            StoreError::io(format!("cannot resolve home {}", dir.as_ref().display()), e)
        })?;
        create_private_dir(&dir)?;
        let lock = take_lock(&dir)?;
        let new_key = !dir.join(KEY_FILE).exists();
        let secret_key = load_or_create_key(&dir.join(KEY_FILE))?;
        let meta = MetaDb::open(dir.join(META_FILE))?;
        if new_key && !meta.manifests()?.is_empty() {
            tracing::warn!(
                home = %dir.display(),
                "{KEY_FILE} was missing in a home that holds content: this node has a new id, \
                 and manifests naming the old one as owner no longer reach it"
            );
        }
        let store = PeasStore::open_fs(dir.join(BLOBS_DIR)).await?;
        Ok(Home {
            node_id: node_id_from_secret(&secret_key),
            dir,
            secret_key,
            store,
            meta,
            _lock: lock,
        })
    }

    /// The node id of the home at `dir` if its key already exists, read without taking the
    /// lock, so it works while another process (e.g. `peas seed`) has the home open.
    /// `Ok(None)` when the home or its key does not exist yet.
    pub fn existing_node_id(dir: impl AsRef<Path>) -> Result<Option<NodeId>> {
        let path = dir.as_ref().join(KEY_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        load_or_create_key(&path).map(|k| Some(node_id_from_secret(&k)))
    }

    /// The absolute home directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node's ed25519 secret key (iroh `SecretKey::from_bytes` takes it as is).
    pub fn secret_key(&self) -> [u8; 32] {
        self.secret_key
    }

    /// The node's id, the public half of [`Home::secret_key`].
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The blob store.
    pub fn store(&self) -> &PeasStore {
        &self.store
    }

    /// The metadata database.
    pub fn meta(&self) -> &MetaDb {
        &self.meta
    }

    /// Removes content from the home: forgets its manifest, source file and peers, drops the
    /// store's tag on it, and deletes what the store holds of it (a file imported in place is
    /// left where it is; only the store's hash tree of it goes). Shuts the home down, since the
    /// deletion runs the store's garbage collection. Returns the hashes that were known (by a
    /// manifest or a tag).
    pub async fn remove(self, hashes: &[ContentHash]) -> Result<Vec<ContentHash>> {
        let mut known = Vec::new();
        for &hash in hashes {
            let had_manifest = self.meta.forget(hash)?;
            let had_tag = self
                .store
                .blobs()
                .tags()
                .delete(tag_name(hash))
                .await
                .map_err(|e| StoreError::blobs("cannot delete tag", e))?
                > 0;
            if had_manifest || had_tag {
                known.push(hash);
            }
        }
        self.store.shutdown().await?;
        // Only a store opened with garbage collection deletes untagged blobs: reopen it so,
        // still holding the lock, until the removed blobs are gone.
        let store = PeasStore::open_fs_collecting(self.dir.join(BLOBS_DIR)).await?;
        let res = wait_until_gone(&store, hashes).await;
        store.shutdown().await?;
        res.map(|()| known)
    }

    /// Flushes and shuts down the blob store, then closes the database and releases the lock.
    pub async fn shutdown(self) -> Result<()> {
        self.store.shutdown().await
    }
}

/// Waits (at most 30 s) until the store has none of `hashes`.
async fn wait_until_gone(store: &PeasStore, hashes: &[ContentHash]) -> Result<()> {
    use iroh_blobs::api::blobs::BlobStatus;
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(30);
    for &h in hashes {
        while !matches!(store.status(h).await?, BlobStatus::NotFound) {
            if Instant::now() > deadline {
                return Err(StoreError::Blobs(format!(
                    "blob {h} was not deleted within 30 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .map_err(|e| StoreError::io(format!("cannot create home {}", dir.display()), e))
}

fn take_lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(format!("cannot open lock file {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::HomeInUse(dir.to_owned())),
        Err(TryLockError::Error(e)) => {
            Err(StoreError::io(format!("cannot lock {}", path.display()), e))
        }
    }
}

fn load_or_create_key(path: &Path) -> Result<[u8; 32]> {
    match fs::read(path) {
        Ok(bytes) => {
            #[cfg(unix)]
            if let Ok(m) = fs::metadata(path) {
                use std::os::unix::fs::PermissionsExt;
                if m.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(
                        path = %path.display(),
                        "secret key file is readable by other users; chmod 600 it"
                    );
                }
            }
            let len = bytes.len() as u64;
            bytes.try_into().map_err(|_| StoreError::BadSecretKey {
                path: path.to_owned(),
                len,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            write_atomic(path, &key, 0o600)?;
            Ok(key)
        }
        Err(e) => Err(StoreError::io(
            format!("cannot read secret key {}", path.display()),
            e,
        )),
    }
}

/// Writes `data` to `path` atomically (file mode 0644 on unix): see [`write_atomic`]. For
/// small files such as `.peas` manifests.
pub fn write_file_atomic(path: impl AsRef<Path>, data: &[u8]) -> Result<()> {
    write_atomic(path.as_ref(), data, 0o644)
}

/// Writes `data` to a temporary file next to `path` (with `mode` on unix), fsyncs it, renames
/// it over `path` and fsyncs the directory, so `path` never holds a partial file.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().ok_or_else(|| StoreError::InvalidPath {
        path: path.to_owned(),
        reason: "has no parent directory",
    })?;
    let name = path.file_name().ok_or_else(|| StoreError::InvalidPath {
        path: path.to_owned(),
        reason: "has no file name",
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        rand::random::<u32>()
    ));
    let ctx = |what: &str| format!("cannot {what} {}", tmp.display());
    let res = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = opts
            .open(&tmp)
            .map_err(|e| StoreError::io(ctx("create"), e))?;
        f.write_all(data)
            .map_err(|e| StoreError::io(ctx("write"), e))?;
        f.sync_all().map_err(|e| StoreError::io(ctx("sync"), e))?;
        fs::rename(&tmp, path)
            .map_err(|e| StoreError::io(format!("cannot rename into {}", path.display()), e))?;
        sync_dir(dir);
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Best-effort fsync of a directory so a rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_dir_prefers_flag_and_is_absolute() {
        let d = Home::resolve_dir(Some(PathBuf::from("rel/home"))).unwrap();
        assert!(d.is_absolute() && d.ends_with("rel/home"));
        let d = Home::resolve_dir(Some(PathBuf::from("/x/y"))).unwrap();
        assert_eq!(d, PathBuf::from("/x/y"));
    }

    #[tokio::test]
    async fn open_creates_layout_and_keeps_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("home");
        let home = Home::open(&dir).await.unwrap();
        let id = home.node_id();
        assert_eq!(id, node_id_from_secret(&home.secret_key()));
        assert!(dir.join("secret.key").is_file());
        // readable while the home is open (locked) by someone else
        assert_eq!(Home::existing_node_id(&dir).unwrap(), Some(id));
        assert_eq!(Home::existing_node_id(dir.join("nope")).unwrap(), None);
        assert!(dir.join("peas.redb").is_file());
        assert!(dir.join("blobs").is_dir());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join("secret.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A second open while the first is alive fails at once with a clear message.
        let err = Home::open(&dir).await.unwrap_err();
        assert!(matches!(err, StoreError::HomeInUse(_)), "{err}");
        assert!(
            err.to_string().starts_with(&format!(
                "home {} is in use by another peas process (",
                dir.display()
            )),
            "{err}"
        );
        home.shutdown().await.unwrap();
        let again = Home::open(&dir).await.unwrap();
        assert_eq!(again.node_id(), id, "the key survives a reopen");
        again.shutdown().await.unwrap();
        // No temporary files are left behind.
        let stray: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(stray.is_empty());
    }

    #[tokio::test]
    async fn corrupt_key_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("secret.key"), b"short").unwrap();
        let err = Home::open(tmp.path()).await.unwrap_err();
        assert!(
            matches!(err, StoreError::BadSecretKey { len: 5, .. }),
            "{err}"
        );
    }

    #[test]
    fn write_atomic_replaces_and_reports_unwritable_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let err = write_atomic(&tmp.path().join("missing/f"), b"x", 0o644).unwrap_err();
        assert!(err.to_string().starts_with("cannot create"), "{err}");
    }
}
