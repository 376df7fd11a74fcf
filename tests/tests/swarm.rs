//! An origin and four downloaders on loopback: everyone ends with the bit-identical file,
//! every downloader receives from more than one peer, and with every node's upload capped the
//! origin sends less than twice the file.

use std::time::{Duration, Instant};

use iroh_blobs::store::fs::FsStore;
use peas_net::{InstallOptions, Node, NodeConfig};
use peas_tests::{manifest_for, random_bytes, secret, test_config};

const SIZE: usize = 64 * 1024 * 1024;
const UPLOAD_CAP: u64 = 24 * 1024 * 1024;

fn capped() -> NodeConfig {
    NodeConfig {
        max_upload_rate: Some(UPLOAD_CAP),
        ..test_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_and_four_nodes_share_the_load() {
    let data = random_bytes(SIZE, 42);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::path::absolute(dir.path()).expect("absolute");

    let origin_store = FsStore::load(root.join("origin")).await.expect("store");
    let tag = origin_store.add_slice(&data).await.expect("import");
    let origin = Node::spawn(secret(10), (*origin_store).clone(), None, capped())
        .await
        .expect("origin");
    let origin_addr = origin.addrs()[0];
    let manifest = manifest_for(
        &data,
        1024 * 1024,
        &[(origin.id(), origin_addr)],
        &secret(10),
    );
    origin.seed(&manifest).await.expect("seed");

    let mut nodes = Vec::new();
    for i in 0..4u8 {
        let store = FsStore::load(root.join(format!("node{i}")))
            .await
            .expect("store");
        let node = Node::spawn(secret(20 + i), (*store).clone(), None, capped())
            .await
            .expect("node");
        nodes.push((node, store));
    }
    let t0 = Instant::now();
    let mut installs = Vec::new();
    for (node, _) in &nodes {
        installs.push(
            node.install(&manifest, InstallOptions::default())
                .await
                .expect("install"),
        );
    }
    let mut reports = Vec::new();
    for h in installs {
        let r = tokio::time::timeout(Duration::from_secs(90), h.wait())
            .await
            .expect("bounded")
            .expect("install completes");
        reports.push(r);
    }
    let elapsed = t0.elapsed();
    let origin_egress = origin.uploaded_bytes();
    println!(
        "swarm: {} MiB to 4 nodes in {:.2}s; origin egress {:.2}x the file",
        SIZE >> 20,
        elapsed.as_secs_f64(),
        origin_egress as f64 / SIZE as f64
    );
    for (i, r) in reports.iter().enumerate() {
        let from: Vec<String> = r
            .from_peers
            .iter()
            .map(|(id, b)| format!("{}:{}MiB", id.fmt_short(), b >> 20))
            .collect();
        println!("node{i}: {:.2}s from {from:?}", r.elapsed.as_secs_f64());
    }

    for ((node, store), r) in nodes.iter().zip(&reports) {
        assert_eq!(r.bytes, SIZE as u64);
        let got = store.get_bytes(tag.hash).await.expect("complete");
        assert!(got[..] == data[..], "content differs");
        let sources = r.from_peers.iter().filter(|(_, b)| *b > 0).count();
        assert!(
            sources > 1,
            "node {} got data from {sources} peer(s)",
            node.id()
        );
    }
    assert!(
        origin_egress < 2 * SIZE as u64,
        "origin sent {origin_egress} bytes for a {SIZE}-byte file"
    );

    for (node, store) in nodes {
        node.shutdown().await.expect("shutdown");
        store.shutdown().await.ok();
    }
    origin.shutdown().await.expect("shutdown");
    origin_store.shutdown().await.ok();
}
