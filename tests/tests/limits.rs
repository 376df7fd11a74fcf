//! Leech mode serves nothing; the download rate cap paces a download.

use std::time::{Duration, Instant};

use iroh::SecretKey;
use iroh_blobs::{
    protocol::{ChunkRanges, ChunkRangesExt, GetRequest},
    store::mem::MemStore,
};
use peas_net::{Node, NodeConfig};
use peas_tests::{
    install_within, local_endpoint, random_bytes, secret, seed_as_sole_owner, test_config,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leech_serves_nothing_and_download_cap_paces() {
    let data = random_bytes(8 * 1024 * 1024, 11);
    let origin_store = MemStore::new();
    let tag = origin_store.add_slice(&data).await.expect("add");
    let origin = Node::spawn(secret(50), (*origin_store).clone(), None, test_config())
        .await
        .expect("origin");
    let manifest = seed_as_sole_owner(&origin, &data, 1024 * 1024, &secret(50)).await;

    // a leech with a 4 MiB/s download cap
    let rate = 4 * 1024 * 1024;
    let leech_store = MemStore::new();
    let leech = Node::spawn(
        secret(51),
        (*leech_store).clone(),
        None,
        NodeConfig {
            no_upload: true,
            max_download_rate: Some(rate),
            ..test_config()
        },
    )
    .await
    .expect("leech");
    let t0 = Instant::now();
    let report = install_within(&leech, &manifest, Duration::from_secs(60)).await;
    let took = t0.elapsed();
    println!(
        "leech: 8 MiB at a 4 MiB/s cap took {:.2}s",
        took.as_secs_f64()
    );
    // the bucket's burst (0.4 MiB) is the only head start: 8 MiB takes at least ~1.9 s
    assert!(
        took >= Duration::from_millis(1500),
        "a 4 MiB/s cap moved 8 MiB in {took:?}"
    );
    assert_eq!(report.bytes, data.len() as u64);

    // a direct iroh-blobs request to the leech is refused although it has the data
    let client = local_endpoint(SecretKey::from_bytes(&secret(52)))
        .await
        .expect("client");
    let conn = client
        .connect(
            iroh::EndpointAddr::new(leech.endpoint_id()).with_ip_addr(leech.addrs()[0]),
            iroh_blobs::ALPN,
        )
        .await
        .expect("connect");
    let probe = MemStore::new();
    let res = probe
        .remote()
        .execute_get(
            conn.clone(),
            GetRequest::blob_ranges(tag.hash, ChunkRanges::bytes(0..16 * 1024)),
        )
        .await;
    assert!(res.is_err(), "leech served data: {res:?}");
    assert_eq!(leech.uploaded_bytes(), 0);

    // another node in the swarm never gets a byte from the leech
    let store = MemStore::new();
    let node = Node::spawn(secret(53), (*store).clone(), None, test_config())
        .await
        .expect("node");
    let report = install_within(&node, &manifest, Duration::from_secs(60)).await;
    assert!(
        report
            .from_peers
            .iter()
            .all(|(id, b)| *id != leech.id() || *b == 0)
    );
    assert_eq!(leech.uploaded_bytes(), 0);

    conn.close(0u32.into(), b"done");
    client.close().await;
    node.shutdown().await.expect("shutdown");
    leech.shutdown().await.expect("shutdown");
    origin.shutdown().await.expect("shutdown");
}
