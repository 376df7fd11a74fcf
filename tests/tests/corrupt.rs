//! A peer that speaks iroh-blobs' protocol but flips bits is banned at its first bad chunk
//! group, and the download still completes correctly from the honest origin.

use std::time::Duration;

use iroh::SecretKey;
use iroh_blobs::store::mem::MemStore;
use peas_net::{Node, NodeConfig};
use peas_tests::{
    CorruptProvider, Corruption, install_within, manifest_for, random_bytes, secret, test_config,
};

const SIZE: usize = 16 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_peer_is_banned_and_download_completes() {
    let data = random_bytes(SIZE, 99);
    let liar = CorruptProvider::new(&data, Corruption::EveryChunkGroup)
        .spawn(SecretKey::from_bytes(&secret(40)))
        .await
        .expect("liar");
    let liar_id = peas_net::convert::to_node_id(liar.id);

    let origin_store = MemStore::new();
    let tag = origin_store.add_slice(&data).await.expect("import");
    // a slow origin, so the planner wants the liar's (apparent) capacity too
    let origin_cfg = NodeConfig {
        max_upload_rate: Some(8 * 1024 * 1024),
        ..test_config()
    };
    let origin = Node::spawn(secret(41), (*origin_store).clone(), None, origin_cfg)
        .await
        .expect("origin");
    let manifest = manifest_for(
        &data,
        1024 * 1024,
        &[(liar_id, liar.addr), (origin.id(), origin.addrs()[0])],
        &secret(41),
    );
    origin.seed(&manifest).await.expect("seed");

    let store = MemStore::new();
    let node = Node::spawn(secret(42), (*store).clone(), None, test_config())
        .await
        .expect("node");
    let report = install_within(&node, &manifest, Duration::from_secs(60)).await;
    println!(
        "corrupt: liar served {} KiB of bao stream, banned {:?}, from {:?}",
        liar.provider.served_bytes() >> 10,
        report.banned,
        report.from_peers
    );
    assert!(liar.provider.served_bytes() > 0, "the liar was never asked");
    assert_eq!(report.banned, vec![liar_id]);
    assert!(
        report
            .from_peers
            .iter()
            .all(|(id, b)| *id != liar_id || *b == 0),
        "bytes from the liar were counted as verified"
    );
    let got = store.get_bytes(tag.hash).await.expect("complete");
    assert!(got[..] == data[..]);

    node.shutdown().await.expect("shutdown");
    origin.shutdown().await.expect("shutdown");
    liar.shutdown().await;
}
