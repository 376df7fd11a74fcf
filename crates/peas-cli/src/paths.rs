//! Checks on the paths a command will write, done before the long work (an import, a
//! download) so that a bad path fails at once with the operating system's reason.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Checks that `out` can be written as a file: it is not a directory, its parent directory
/// exists, and a file can be created there (a probe file, removed at once). Returns the parent
/// directory.
pub fn check_output_path(out: &Path) -> anyhow::Result<PathBuf> {
    if out.is_dir() {
        bail!("{}: is a directory; give a file path", out.display());
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        bail!(
            "cannot write {}: directory {} does not exist",
            out.display(),
            dir.display()
        );
    }
    if !dir.is_dir() {
        bail!(
            "cannot write {}: {} is not a directory",
            out.display(),
            dir.display()
        );
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let probe = dir.join(format!(".peas-probe-{}-{nanos}", std::process::id()));
    std::fs::File::create_new(&probe).with_context(|| format!("cannot write {}", out.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(dir)
}

/// Whether `a` and `b` name the same existing file (through links too).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

/// Free space for unprivileged writers on the filesystem holding `dir`, and that filesystem's
/// device id; `None` where it cannot be told (then no space check is made).
pub fn free_space(dir: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let st = rustix::fs::statvfs(dir).ok()?;
        let dev = std::fs::metadata(dir).ok()?.dev();
        Some((st.f_bavail.saturating_mul(st.f_frsize), dev))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_path_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(check_output_path(&dir.path().join("x.bin")).is_ok());
        assert!(check_output_path(dir.path()).is_err());
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        let err = check_output_path(&file.join("out.bin")).expect_err("parent is a file");
        assert!(err.to_string().contains("is not a directory"), "{err}");
        let err = check_output_path(&dir.path().join("nope/out.bin")).expect_err("no parent");
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(check_output_path(Path::new("relative.bin")).is_ok());
        // the probe leaves nothing behind
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    #[test]
    fn same_file_sees_through_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a");
        std::fs::write(&a, b"x").expect("write");
        assert!(same_file(&a, &dir.path().join(".").join("a")));
        assert!(!same_file(&a, &dir.path().join("b")));
    }

    #[test]
    fn free_space_is_known_here() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (free, _) = free_space(dir.path()).expect("statvfs works on unix");
        assert!(free > 0);
    }
}
