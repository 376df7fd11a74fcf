//! Interop: a plain iroh-blobs provider (no swarm protocol) is a usable source, and a node
//! whose store already holds the content completes at once.

use std::time::Duration;

use iroh::{SecretKey, protocol::Router};
use iroh_blobs::{BlobsProtocol, store::mem::MemStore};
use peas_net::{InstallOptions, Node};
use peas_tests::{
    install_within, local_endpoint, loopback_addr, manifest_for, random_bytes, secret,
    seed_as_sole_owner, test_config, unused_udp_addr,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_iroh_blobs_provider_is_a_source() {
    let data = random_bytes(3 * 1024 * 1024 + 12_345, 1);
    // a plain iroh-blobs provider
    let provider_store = MemStore::new();
    let tag = provider_store.add_slice(&data).await.expect("add");
    let ep = local_endpoint(SecretKey::from_bytes(&secret(1)))
        .await
        .expect("bind");
    let provider_addr = loopback_addr(&ep).expect("loopback");
    let provider_id = peas_net::convert::to_node_id(ep.id());
    let router = Router::builder(ep)
        .accept(iroh_blobs::ALPN, BlobsProtocol::new(&provider_store, None))
        .spawn();

    let manifest = manifest_for(
        &data,
        1024 * 1024,
        &[(provider_id, provider_addr)],
        &secret(1),
    );
    assert_eq!(manifest.hash().0, *tag.hash.as_bytes());

    let store = MemStore::new();
    let node = Node::spawn(secret(2), (*store).clone(), None, test_config())
        .await
        .expect("node");
    let install = node
        .install(&manifest, InstallOptions::default())
        .await
        .expect("install");
    let report = tokio::time::timeout(Duration::from_secs(60), install.wait())
        .await
        .expect("bounded")
        .expect("install completes");
    assert!(!report.already_complete);
    assert_eq!(report.bytes, data.len() as u64);
    assert_eq!(report.from_peers.len(), 1);
    assert_eq!(report.from_peers[0].0, provider_id);
    assert!(report.from_peers[0].1 >= data.len() as u64);
    let got = store.get_bytes(tag.hash).await.expect("complete blob");
    assert_eq!(&got[..], &data[..]);

    // installing again: already complete, nothing fetched
    node.shutdown().await.expect("shutdown");
    let node = Node::spawn(secret(2), (*store).clone(), None, test_config())
        .await
        .expect("node");
    let report = install_within(&node, &manifest, Duration::from_secs(60)).await;
    assert!(report.already_complete);
    assert!(report.from_peers.is_empty());
    node.shutdown().await.expect("shutdown");
    router.shutdown().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_owner_fails_within_the_bound() {
    let data = random_bytes(256 * 1024, 3);
    // an owner address nobody listens on
    let dead = unused_udp_addr();
    let owner = peas_net::convert::to_node_id(SecretKey::from_bytes(&secret(5)).public());
    let manifest = manifest_for(&data, 64 * 1024, &[(owner, dead)], &secret(5));
    let store = MemStore::new();
    let node = Node::spawn(secret(6), (*store).clone(), None, test_config())
        .await
        .expect("node");
    let opts = InstallOptions {
        stall_timeout: Some(Duration::from_secs(2)),
    };
    let res = tokio::time::timeout(
        Duration::from_secs(30),
        node.install(&manifest, opts).await.expect("install").wait(),
    )
    .await
    .expect("the wait is bounded");
    let err = res.expect_err("nobody answers");
    let msg = err.to_string();
    assert!(msg.contains("no peer answered"), "{msg}");
    assert!(!msg.contains('\n'));
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_hints_find_the_swarm_when_owners_are_gone() {
    let data = random_bytes(2 * 1024 * 1024, 4);
    let seed_store = MemStore::new();
    seed_store.add_slice(&data).await.expect("add");
    let seeder = Node::spawn(secret(7), (*seed_store).clone(), None, test_config())
        .await
        .expect("seeder");
    let dead = unused_udp_addr();
    let gone = peas_net::convert::to_node_id(SecretKey::from_bytes(&secret(8)).public());
    let manifest = manifest_for(&data, 256 * 1024, &[(gone, dead)], &secret(8));
    seeder.seed(&manifest).await.expect("seed");

    let store = MemStore::new();
    let node = Node::spawn(secret(9), (*store).clone(), None, test_config())
        .await
        .expect("node");
    let install = node
        .install(&manifest, InstallOptions::default())
        .await
        .expect("install");
    // e.g. from the persisted peer table of a previous run
    node.add_peers(manifest.hash(), vec![(seeder.id(), seeder.addrs())])
        .await;
    let report = tokio::time::timeout(Duration::from_secs(30), install.wait())
        .await
        .expect("bounded")
        .expect("completes");
    assert_eq!(report.from_peers[0].0, seeder.id());
    let known = node.known_peers(manifest.hash()).await;
    assert!(known.iter().any(|(id, _, _)| *id == seeder.id()));
    node.shutdown().await.expect("shutdown");
    seeder.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_points_newcomers_to_other_peers() {
    let data = random_bytes(4 * 1024 * 1024, 12);
    let origin_store = MemStore::new();
    origin_store.add_slice(&data).await.expect("add");
    // an origin that accepts a single swarm session, and serves slowly
    let origin = Node::spawn(
        secret(60),
        (*origin_store).clone(),
        None,
        peas_net::NodeConfig {
            max_connected_peers: 1,
            max_upload_rate: Some(2 * 1024 * 1024),
            ..test_config()
        },
    )
    .await
    .expect("origin");
    let manifest = seed_as_sole_owner(&origin, &data, 256 * 1024, &secret(60)).await;

    let a_store = MemStore::new();
    let a = Node::spawn(secret(61), (*a_store).clone(), None, test_config())
        .await
        .expect("a");
    let a_install = a
        .install(&manifest, InstallOptions::default())
        .await
        .expect("install");
    let mut progress = a_install.progress();
    tokio::time::timeout(
        Duration::from_secs(30),
        progress.wait_for(|p| p.verified_bytes > 0),
    )
    .await
    .expect("bounded")
    .expect("progress");

    // b is turned away by the origin but told about a
    let b_store = MemStore::new();
    let b = Node::spawn(secret(62), (*b_store).clone(), None, test_config())
        .await
        .expect("b");
    let report = install_within(&b, &manifest, Duration::from_secs(60)).await;
    assert!(
        report
            .from_peers
            .iter()
            .any(|(id, b)| *id == a.id() && *b > 0)
    );
    assert!(
        report
            .from_peers
            .iter()
            .all(|(id, b)| *id != origin.id() || *b == 0)
    );
    a_install.wait().await.expect("a completes");
    b.shutdown().await.expect("shutdown");
    a.shutdown().await.expect("shutdown");
    origin.shutdown().await.expect("shutdown");
}
