//! Checking a file on disk against a manifest.

use std::path::Path;

use peas_proto::{ContentHash, Manifest};

use crate::error::{Result, StoreError};

/// Computes the BLAKE3 hash and size of the file at `path` (memory-mapped and multi-threaded
/// for large files). Blocking: use `spawn_blocking` from async code.
pub fn hash_file(path: impl AsRef<Path>) -> Result<(ContentHash, u64)> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path)
        .map_err(|e| StoreError::io(format!("cannot read {}", path.display()), e))?;
    if !meta.is_file() {
        return Err(StoreError::InvalidPath {
            path: path.to_owned(),
            reason: "is not a regular file",
        });
    }
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(path)
        .map_err(|e| StoreError::io(format!("cannot read {}", path.display()), e))?;
    Ok((ContentHash(*h.finalize().as_bytes()), h.count()))
}

/// True if the file at `path` has exactly the manifest's size and BLAKE3 hash. A size
/// mismatch is detected without reading the file. Errors only for IO problems (missing file,
/// unreadable, not a regular file). Blocking.
pub fn verify_file(path: impl AsRef<Path>, manifest: &Manifest) -> Result<bool> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path)
        .map_err(|e| StoreError::io(format!("cannot read {}", path.display()), e))?;
    if meta.is_file() && meta.len() != manifest.size() {
        return Ok(false);
    }
    let (hash, size) = hash_file(path)?;
    Ok(hash == manifest.hash() && size == manifest.size())
}

#[cfg(test)]
mod tests {
    use super::*;
    use peas_proto::{ManifestDraft, SafeName};

    #[test]
    fn verify_tells_files_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let p = tmp.path().join("f");
        std::fs::write(&p, &data).unwrap();
        let m = ManifestDraft {
            hash: ContentHash::of(&data),
            size: data.len() as u64,
            name: SafeName::new("f").unwrap(),
            partition_size: 1 << 20,
            created_at: 0,
            owners: vec![],
        }
        .sign(&[1; 32])
        .unwrap();
        assert_eq!(hash_file(&p).unwrap(), (m.hash(), m.size()));
        assert!(verify_file(&p, &m).unwrap());
        let mut changed = data.clone();
        changed[123_456] ^= 1;
        std::fs::write(&p, &changed).unwrap();
        assert!(!verify_file(&p, &m).unwrap());
        std::fs::write(&p, &data[1..]).unwrap();
        assert!(!verify_file(&p, &m).unwrap());
        assert!(verify_file(tmp.path().join("missing"), &m).is_err());
        assert!(verify_file(tmp.path(), &m).is_err());
        // Empty file.
        std::fs::write(&p, b"").unwrap();
        assert_eq!(hash_file(&p).unwrap(), (ContentHash::of(b""), 0));
    }
}
