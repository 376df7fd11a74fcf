use super::*;
use crate::MetaDb;
use crate::home::Home;
use bao_tree::ChunkNum;
use iroh_blobs::protocol::ChunkRangesExt;

const PS: u64 = 64 * 1024;

fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed) * 7919 + 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Copies the bao encoding of `ranges` of a complete blob from `src` into `dst`.
async fn copy_ranges(src: &PeasStore, dst: &PeasStore, hash: ContentHash, ranges: ChunkRanges) {
    let bao = src
        .blobs()
        .export_bao(to_blobs_hash(hash), ranges.clone())
        .bao_to_vec()
        .await
        .unwrap();
    dst.blobs()
        .import_bao_bytes(to_blobs_hash(hash), ranges, bao)
        .await
        .unwrap();
}

fn byte_ranges(r: std::ops::Range<u64>) -> ChunkRanges {
    ChunkRanges::bytes(r)
}

#[test]
fn completion_from_ranges() {
    let g = Geometry::new(4 * PS + 100, PS).unwrap();
    let c = Completion::from_ranges(&ChunkRanges::empty(), &g);
    assert_eq!(
        (c.partitions.count(), c.verified_bytes, c.complete),
        (0, 0, false)
    );
    let c = Completion::from_ranges(&ChunkRanges::all(), &g);
    assert_eq!(c.partitions.count(), 5);
    assert!(c.partitions.is_full() && c.complete);
    assert_eq!(c.verified_bytes, g.size());
    // Partition 1 fully, half of partition 2, and the short tail partition 4.
    let r = byte_ranges(PS..2 * PS + PS / 2) | ChunkRanges::from(ChunkNum(4 * PS / 1024)..);
    let c = Completion::from_ranges(&r, &g);
    assert_eq!(c.partitions.iter().collect::<Vec<_>>(), vec![1, 4]);
    assert_eq!(c.verified_bytes, PS + PS / 2 + 100);
    assert!(!c.complete);
    // Ranges past the end are clamped.
    let r = byte_ranges(4 * PS..10 * PS);
    let c = Completion::from_ranges(&r, &g);
    assert_eq!(c.partitions.iter().collect::<Vec<_>>(), vec![4]);
    assert_eq!(c.verified_bytes, 100);
    // Empty blob: complete with nothing.
    let g0 = Geometry::new(0, PS).unwrap();
    assert!(Completion::from_ranges(&ChunkRanges::empty(), &g0).complete);
}

#[test]
fn completion_matches_a_naive_model() {
    // Deterministic pseudo-random cases: random chunk ranges over random geometries.
    let mut x = 0x9e3779b97f4a7c15u64;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    for _ in 0..300 {
        let ps = 16384u64 << next(3);
        let size = next(20 * ps);
        let g = Geometry::new(size, ps).unwrap();
        let chunks = size.div_ceil(1024) + 3;
        let mut ranges = ChunkRanges::empty();
        for _ in 0..next(6) {
            let a = next(chunks + 1);
            let b = a + next(chunks + 1 - a) + 1;
            ranges |= ChunkRanges::from(ChunkNum(a)..ChunkNum(b));
        }
        if next(10) == 0 {
            ranges |= ChunkRanges::from(ChunkNum(next(chunks))..);
        }
        let c = Completion::from_ranges(&ranges, &g);
        let has_byte = |b: u64| ranges.contains(&ChunkNum(b / 1024));
        for i in 0..g.partitions() {
            let r = g.partition_range(i);
            let first = r.start / 1024;
            let last = (r.end - 1) / 1024;
            let naive = (first..=last).all(|ch| ranges.contains(&ChunkNum(ch)));
            assert_eq!(
                c.partitions.contains(i),
                naive,
                "partition {i} of {g:?}, {ranges:?}"
            );
        }
        let naive_bytes: u64 = (0..size.div_ceil(1024))
            .filter(|ch| has_byte(ch * 1024))
            .map(|ch| ((ch + 1) * 1024).min(size) - ch * 1024)
            .sum();
        assert_eq!(c.verified_bytes, naive_bytes);
        assert_eq!(c.complete, naive_bytes == size);
    }
}

#[tokio::test]
async fn memory_import_export_and_completion() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(3 * PS as usize + 5000, 1);
    let src = tmp.path().join("src.bin");
    fs::write(&src, &d).unwrap();
    let store = PeasStore::memory();
    let imp = store.import_file(&src, false).await.unwrap();
    assert_eq!(imp.hash, ContentHash::of(&d));
    assert_eq!(imp.size, d.len() as u64);
    let g = Geometry::new(imp.size, PS).unwrap();
    let c = store.completion(imp.hash, &g).await.unwrap();
    assert!(c.complete && c.partitions.is_full() && c.verified_bytes == imp.size);
    let tag = store.blobs().tags().get(tag_name(imp.hash)).await.unwrap();
    assert_eq!(tag.map(|t| from_blobs_hash(t.hash)), Some(imp.hash));

    let out = tmp.path().join("out.bin");
    assert_eq!(store.export_atomic(imp.hash, &out).await.unwrap(), imp.size);
    assert_eq!(fs::read(&out).unwrap(), d);

    // Unknown blob: nothing verified, export refused.
    let unknown = ContentHash([5; 32]);
    let c = store.completion(unknown, &g).await.unwrap();
    assert_eq!((c.partitions.count(), c.verified_bytes), (0, 0));
    assert!(store.verified_ranges(unknown).await.unwrap().is_empty());
    let err = store
        .export_atomic(unknown, tmp.path().join("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotComplete(_)), "{err}");
    assert!(!tmp.path().join("x").exists());
    // Missing directory and missing source file: clear errors.
    let err = store
        .export_atomic(imp.hash, tmp.path().join("no/such/dir/f"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("is not an existing directory"),
        "{err}"
    );
    let err = store
        .import_file(tmp.path().join("missing"), false)
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("cannot read"), "{err}");
    // A geometry whose size disagrees with the verified size is an error.
    let wrong = Geometry::new(imp.size + 1, PS).unwrap();
    assert!(matches!(
        store.completion(imp.hash, &wrong).await,
        Err(StoreError::SizeMismatch { .. })
    ));
    store.shutdown().await.unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn export_into_readonly_dir_fails_cleanly() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let store = PeasStore::memory();
    let src = tmp.path().join("src.bin");
    fs::write(&src, data(40_000, 3)).unwrap();
    let imp = store.import_file(&src, false).await.unwrap();
    let ro = tmp.path().join("ro");
    fs::create_dir(&ro).unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
    // Root ignores directory permissions; only assert when the probe really is denied.
    if fs::File::create(ro.join("probe")).is_err() {
        let err = store
            .export_atomic(imp.hash, ro.join("f"))
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("cannot write to"), "{err}");
    }
    assert!(!ro.join("f").exists());
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o700)).unwrap();
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn fs_store_partial_blob_reports_only_verified_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(6 * PS as usize + 777, 2);
    let hash = ContentHash::of(&d);
    let g = Geometry::new(d.len() as u64, PS).unwrap();
    let full = PeasStore::memory();
    full.blobs().add_slice(&d).await.unwrap();

    let fs_store = PeasStore::open_fs(tmp.path().join("blobs")).await.unwrap();
    fs_store.ensure_tag(hash).await.unwrap();
    // Partition 1, half of partition 3 and the tail partition 6.
    let ranges = byte_ranges(PS..2 * PS)
        | byte_ranges(3 * PS..3 * PS + PS / 2)
        | byte_ranges(6 * PS..g.size());
    copy_ranges(&full, &fs_store, hash, ranges.clone()).await;
    let c = fs_store.completion(hash, &g).await.unwrap();
    assert_eq!(c.partitions.iter().collect::<Vec<_>>(), vec![1, 6]);
    assert_eq!(c.verified_bytes, PS + PS / 2 + 777);
    assert!(!c.complete);
    assert!(
        fs_store
            .export_atomic(hash, tmp.path().join("o"))
            .await
            .is_err()
    );
    assert!(!tmp.path().join("o").exists());
    fs_store.shutdown().await.unwrap();

    // After a clean reopen the same partitions are reported; then complete it.
    let fs_store = PeasStore::open_fs(tmp.path().join("blobs")).await.unwrap();
    let c2 = fs_store.completion(hash, &g).await.unwrap();
    assert_eq!(c2, c);
    copy_ranges(&full, &fs_store, hash, ChunkRanges::all()).await;
    let c3 = fs_store.completion(hash, &g).await.unwrap();
    assert!(c3.complete && c3.partitions.is_full());
    let out = tmp.path().join("out");
    fs_store.export_atomic(hash, &out).await.unwrap();
    assert_eq!(fs::read(&out).unwrap(), d);
    fs_store.shutdown().await.unwrap();
    full.shutdown().await.unwrap();
}

#[tokio::test]
async fn fs_import_references_large_files_unless_copying() {
    let tmp = tempfile::tempdir().unwrap();
    let store = PeasStore::open_fs(tmp.path().join("blobs")).await.unwrap();
    let meta = MetaDb::open(tmp.path().join("meta.redb")).unwrap();
    let small = tmp.path().join("small.bin");
    fs::write(&small, data(MAX_INLINED as usize, 3)).unwrap();
    assert_eq!(store.import_file(&small, false).await.unwrap().source, None);

    let big = tmp.path().join("big.bin");
    let d = data(3 * PS as usize, 4);
    fs::write(&big, &d).unwrap();
    let imp = store.import_file(&big, false).await.unwrap();
    let src = imp.source.clone().expect("a large file is referenced");
    assert_eq!(
        (src.path.as_path(), src.size),
        (big.as_path(), d.len() as u64)
    );
    assert_eq!(src.unchanged(), Ok(()));
    meta.set_source(imp.hash, Some(&src)).unwrap();
    assert_eq!(meta.source(imp.hash).unwrap(), Some(src.clone()));

    // A changed or missing file is seen; copying makes the store independent of it.
    fs::write(&big, data(3 * PS as usize - 1, 5)).unwrap();
    let why = src.unchanged().expect_err("size changed");
    assert!(why.contains("changed since it was imported"), "{why}");
    fs::write(&big, &d).unwrap();
    let copied = store.import_file(&big, true).await.unwrap();
    assert_eq!((copied.hash, copied.source), (imp.hash, None));
    meta.set_source(imp.hash, None).unwrap();
    assert_eq!(meta.source(imp.hash).unwrap(), None);
    fs::remove_file(&big).unwrap();
    assert!(Source::of(&big).is_err());
    let out = tmp.path().join("out.bin");
    store.export_atomic(imp.hash, &out).await.unwrap();
    assert_eq!(fs::read(&out).unwrap(), d);
    store.shutdown().await.unwrap();
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    n
}

#[tokio::test]
async fn remove_deletes_copies_keeps_files_in_place_and_forgets_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let home_dir = tmp.path().join("home");
    let copied = tmp.path().join("copied.bin");
    let in_place = tmp.path().join("in-place.bin");
    let (dc, dp) = (data(8 * PS as usize, 6), data(8 * PS as usize, 7));
    fs::write(&copied, &dc).unwrap();
    fs::write(&in_place, &dp).unwrap();
    let home = Home::open(&home_dir).await.unwrap();
    let c = home.store().import_file(&copied, true).await.unwrap();
    let p = home.store().import_file(&in_place, false).await.unwrap();
    home.meta().set_source(p.hash, p.source.as_ref()).unwrap();
    let blobs = home_dir.join("blobs");
    let before = dir_bytes(&blobs);
    assert!(before >= dc.len() as u64, "the copy is in the store");
    let unknown = ContentHash([9; 32]);
    let known = home.remove(&[c.hash, p.hash, unknown]).await.unwrap();
    assert_eq!(known, vec![c.hash, p.hash]);

    let home = Home::open(&home_dir).await.unwrap();
    for h in [c.hash, p.hash] {
        assert!(matches!(
            home.store().status(h).await.unwrap(),
            BlobStatus::NotFound
        ));
        assert_eq!(home.meta().source(h).unwrap(), None);
    }
    assert_eq!(
        fs::read(&in_place).unwrap(),
        dp,
        "a file served in place stays"
    );
    let after = dir_bytes(&blobs);
    assert!(after + dc.len() as u64 <= before, "{before} -> {after}");
    home.shutdown().await.unwrap();
}

const CRASH_ENV: &str = "PEAS_STORE_CRASH_CHILD";
const CRASH_SIZE: usize = 8 * PS as usize + 1000;

/// Run in a child process: writes partitions 0 and 2, syncs, writes half of 3 and all of 5,
/// then aborts without any shutdown.
fn crash_child(dir: &str) -> ! {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let home = Home::open(dir).await.unwrap();
        let d = data(CRASH_SIZE, 9);
        let hash = ContentHash::of(&d);
        let full = PeasStore::memory();
        full.blobs().add_slice(&d).await.unwrap();
        home.store().ensure_tag(hash).await.unwrap();
        // Partitions 0 and 2, then a database sync: these must survive the crash.
        for r in [0..PS, 2 * PS..3 * PS] {
            copy_ranges(&full, home.store(), hash, byte_ranges(r)).await;
        }
        home.store().blobs().sync_db().await.unwrap();
        // Half of partition 3 and partition 5, not synced: may or may not survive.
        for r in [3 * PS..3 * PS + PS / 2, 5 * PS..6 * PS] {
            copy_ranges(&full, home.store(), hash, byte_ranges(r)).await;
        }
        std::process::abort();
    })
}

#[test]
fn crash_leaves_a_reopenable_home_that_reports_only_verified_data() {
    if let Ok(dir) = std::env::var(CRASH_ENV) {
        crash_child(&dir);
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("home");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::tests::crash_leaves_a_reopenable_home_that_reports_only_verified_data",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CRASH_ENV, &dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must have aborted");
    assert!(dir.join("secret.key").is_file(), "the child ran");
    // Simulate a torn write on top of the crash: garble the partial blob's bitfield file and
    // flip a byte of partition 5 in its data file. iroh-blobs must then re-validate the data,
    // and partition 5 must not be reported.
    let d = data(CRASH_SIZE, 9);
    let hex = ContentHash::of(&d).to_string();
    let data_dir = dir.join("blobs").join("data");
    let bitfield = data_dir.join(format!("{hex}.bitfield"));
    if bitfield.exists() {
        fs::write(&bitfield, b"garbage").unwrap();
    }
    let data_file = data_dir.join(format!("{hex}.data"));
    let mut bytes = fs::read(&data_file).unwrap();
    bytes[5 * PS as usize + 100] ^= 0xff;
    fs::write(&data_file, &bytes).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let home = Home::open(&dir).await.expect("a crashed home reopens");
        let d = data(CRASH_SIZE, 9);
        let hash = ContentHash::of(&d);
        let g = Geometry::new(d.len() as u64, PS).unwrap();
        let c = home.store().completion(hash, &g).await.unwrap();
        for p in c.partitions.iter() {
            assert!(
                [0, 2].contains(&p),
                "partition {p} was never written or is corrupt"
            );
            let r = g.partition_range(p);
            let got = home
                .store()
                .blobs()
                .export_ranges(to_blobs_hash(hash), r.clone())
                .concatenate()
                .await
                .unwrap();
            assert_eq!(got, &d[r.start as usize..r.end as usize]);
        }
        assert!(c.verified_bytes <= 3 * PS + PS / 2);
        assert!(
            c.partitions.contains(0) && c.partitions.contains(2),
            "synced partitions survive: {:?}",
            c.partitions.iter().collect::<Vec<_>>()
        );
        assert!(!c.complete);
        eprintln!(
            "after crash: {} of 3 written partitions reported, {} verified bytes",
            c.partitions.count(),
            c.verified_bytes
        );
        home.shutdown().await.unwrap();
    });
}
