//! `peas-testbed`: the helpers the e2e suite (`cargo xtask e2e`) runs beside the real `peas`.
//!
//! - `peas-testbed provide --file F [--listen ADDR] [--corrupt]`: a plain iroh-blobs provider of
//!   one file (no peas swarm protocol), or with `--corrupt` the lying [`CorruptProvider`] that
//!   flips a bit in every 16 KiB chunk group. Binds ADDR (default 127.0.0.1:0), prints one JSON
//!   line `{"id": "<hex node id>", "addr": "IP:PORT"}`, then serves until killed.
//! - `peas-testbed forge --file F -o OUT [--name N] [--version V] [--unsigned]`: writes a `.peas`
//!   manifest for F that only a forger would write (unsafe name, unknown version, no signature).
//!   It is encoded from `docs/manifest.md` alone, independently of peas-proto, so it also checks
//!   that the spec is enough to write a compatible manifest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use iroh::SecretKey;
use peas_tests::{CorruptProvider, Corruption, FixtureError, bound_addr, endpoint_at};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("provide") => provide(&args[1..]),
        Some("forge") => forge(&args[1..]),
        _ => Err("usage: peas-testbed provide --file F [--listen ADDR] [--corrupt] | forge --file F -o OUT [--name N] [--version V] [--unsigned]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Minimal flag parsing: `--flag value` pairs and bare `--switch`es.
struct Flags(Vec<String>);

impl Flags {
    fn value(&self, name: &str) -> Option<&str> {
        let i = self.0.iter().position(|a| a == name)?;
        self.0.get(i + 1).map(String::as_str)
    }
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
    fn path(&self, name: &str) -> Result<PathBuf, String> {
        self.value(name)
            .map(PathBuf::from)
            .ok_or(format!("{name} is required"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn provide(args: &[String]) -> Result<(), String> {
    let flags = Flags(args.to_vec());
    let file = flags.path("--file")?;
    let data = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let listen: SocketAddr = flags
        .value("--listen")
        .unwrap_or("127.0.0.1:0")
        .parse()
        .map_err(|_| "--listen takes IP:PORT")?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let secret = SecretKey::generate();
        let fail = |e: FixtureError| e.to_string();
        let (id, addr, router, store) = if flags.has("--corrupt") {
            let peer = CorruptProvider::new(&data, Corruption::EveryChunkGroup)
                .spawn_at(secret, listen)
                .await
                .map_err(fail)?;
            (peer.id, peer.addr, peer.router, None)
        } else {
            let store = iroh_blobs::store::mem::MemStore::new();
            store
                .add_bytes(data)
                .await
                .map_err(|e| format!("import: {e}"))?;
            let ep = endpoint_at(secret, listen).await.map_err(fail)?;
            let addr: SocketAddr =
                bound_addr(&ep, listen).ok_or(format!("not bound on {}", listen.ip()))?;
            let id = ep.id();
            let blobs = iroh_blobs::BlobsProtocol::new(&store, None);
            let router = iroh::protocol::Router::builder(ep)
                .accept(iroh_blobs::ALPN, blobs)
                .spawn();
            (id, addr, router, Some(store))
        };
        println!(
            "{{\"id\": \"{}\", \"addr\": \"{addr}\"}}",
            hex(id.as_bytes())
        );
        let _ = tokio::signal::ctrl_c().await;
        router.shutdown().await.ok();
        if let Some(store) = store {
            store.shutdown().await.ok();
        }
        Ok(())
    })
}

/// The manifest body, field for field as `docs/manifest.md` lays it out.
#[derive(serde::Serialize)]
struct Body {
    hash: [u8; 32],
    size: u64,
    name: String,
    partition_size: u64,
    created_at: u64,
    owners: Vec<Owner>,
    creator: [u8; 32],
}

/// One owner, as `docs/manifest.md` lays it out.
#[derive(serde::Serialize)]
struct Owner {
    id: [u8; 32],
    addrs: Vec<SocketAddr>,
    relay: Option<String>,
}

fn forge(args: &[String]) -> Result<(), String> {
    let flags = Flags(args.to_vec());
    let file = flags.path("--file")?;
    let out = flags.path("-o")?;
    let data = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let version: u8 = flags
        .value("--version")
        .unwrap_or("1")
        .parse()
        .map_err(|_| "--version takes a number 0..=255")?;
    let name = flags
        .value("--name")
        .map(str::to_string)
        .or_else(|| file.file_name().map(|n| n.to_string_lossy().into_owned()))
        .ok_or("no name")?;
    let key = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let creator = key.verifying_key().to_bytes();
    let body = Body {
        hash: *blake3::hash(&data).as_bytes(),
        size: data.len() as u64,
        name,
        partition_size: 1 << 20,
        created_at: 1_700_000_000,
        owners: vec![Owner {
            id: creator,
            addrs: vec!["127.0.0.1:9".parse().expect("valid literal")],
            relay: None,
        }],
        creator,
    };
    let body = postcard::to_stdvec(&body).map_err(|e| e.to_string())?;
    let signature = if flags.has("--unsigned") {
        [0u8; 64]
    } else {
        use ed25519_dalek::Signer;
        let mut msg = b"peas manifest signature\0".to_vec();
        msg.push(version);
        msg.extend_from_slice(&body);
        key.sign(&msg).to_bytes()
    };
    let mut bytes = b"PEAS".to_vec();
    bytes.push(version);
    bytes.extend_from_slice(&body);
    bytes.extend_from_slice(&signature);
    std::fs::write(&out, bytes).map_err(|e| format!("{}: {e}", out.display()))
}
