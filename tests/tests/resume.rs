//! A downloader killed halfway (in-process abort, no clean swarm shutdown) and restarted on
//! the same store completes without fetching again what it had verified.

use std::time::Duration;

use iroh_blobs::store::fs::FsStore;
use peas_net::{InstallOptions, Node, NodeConfig};
use peas_tests::{install_within, random_bytes, secret, seed_as_sole_owner, test_config};

const SIZE: usize = 32 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_without_refetching_verified_data() {
    let data = random_bytes(SIZE, 7);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::path::absolute(dir.path()).expect("absolute");

    let origin_store = FsStore::load(root.join("origin")).await.expect("store");
    let tag = origin_store.add_slice(&data).await.expect("import");
    let origin_cfg = NodeConfig {
        max_upload_rate: Some(8 * 1024 * 1024),
        ..test_config()
    };
    let origin = Node::spawn(secret(30), (*origin_store).clone(), None, origin_cfg)
        .await
        .expect("origin");
    let manifest = seed_as_sole_owner(&origin, &data, 1024 * 1024, &secret(30)).await;

    // first run: stop once about 40% is verified
    let store_dir = root.join("downloader");
    let store = FsStore::load(&store_dir).await.expect("store");
    let node = Node::spawn(secret(31), (*store).clone(), None, test_config())
        .await
        .expect("node");
    let install = node
        .install(&manifest, InstallOptions::default())
        .await
        .expect("install");
    let mut progress = install.progress();
    let target = (SIZE as u64) * 2 / 5;
    tokio::time::timeout(
        Duration::from_secs(60),
        progress.wait_for(|p| p.verified_bytes >= target),
    )
    .await
    .expect("bounded")
    .expect("progress");
    let seen_before_kill = progress.borrow().verified_bytes;
    node.abort().await;
    store.shutdown().await.ok();
    drop(install);

    // restart on the same store
    let store = FsStore::load(&store_dir).await.expect("reopen");
    let local = store.observe(tag.hash).await.expect("observe");
    let local_bytes = local.total_bytes();
    println!(
        "resume: {} MiB verified when killed, {} MiB in the store at restart",
        seen_before_kill >> 20,
        local_bytes >> 20
    );
    assert!(
        !local.is_complete(),
        "the kill came too late to test resume"
    );
    assert!(
        local_bytes >= seen_before_kill - (seen_before_kill % (16 * 1024)),
        "store lost verified data: {local_bytes} < {seen_before_kill}"
    );
    let node = Node::spawn(secret(31), (*store).clone(), None, test_config())
        .await
        .expect("node");
    let report = install_within(&node, &manifest, Duration::from_secs(60)).await;
    let fetched: u64 = report.from_peers.iter().map(|(_, b)| b).sum();
    println!(
        "resume: second run fetched {} KiB of the {} KiB missing",
        fetched >> 10,
        (SIZE as u64 - local_bytes) >> 10
    );
    assert!(!report.already_complete);
    // nothing verified is fetched again (slack: one 16 KiB chunk group per partition edge)
    assert!(
        fetched <= SIZE as u64 - local_bytes + 64 * 1024,
        "fetched {fetched} bytes, but only {} were missing",
        SIZE as u64 - local_bytes
    );
    let got = store.get_bytes(tag.hash).await.expect("complete");
    assert!(got[..] == data[..]);

    node.shutdown().await.expect("shutdown");
    store.shutdown().await.ok();
    origin.shutdown().await.expect("shutdown");
    origin_store.shutdown().await.ok();
}
