//! `peas seed`: serve all complete and partial content of the home and join those swarms until
//! SIGINT/SIGTERM, then leave cleanly (peers told, peers persisted, store flushed).
//!
//! Also holds what `peas install` shares with it: the network flags ([`NetArgs`]), duration
//! parsing, JSON events and peer persistence.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use peas_net::{Node, NodeConfig};
use peas_proto::{ContentHash, Manifest, PartitionSet};
use peas_store::{Home, PeerRecordEntry};
use serde_json::{Value, json};

use super::{CmdError, CmdResult, load_manifest, open_home};
use crate::GlobalArgs;
use crate::size::parse_size;

/// Network flags shared by `peas seed` and `peas install`.
#[derive(Debug, Clone, Args)]
pub struct NetArgs {
    /// UDP address to listen on (port 0 picks a free port). Default: 0.0.0.0:7117; `install`
    /// picks a free port instead when that one is taken (e.g. by a seeder on the same host).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// An iroh relay URL (http:// or https://), for hosts behind NAT. Default: none (fully
    /// offline: no relay, no DNS, no portmapper).
    #[arg(long, value_name = "URL", value_parser = parse_relay)]
    pub relay: Option<String>,
    /// Upload cap in bytes per second over all peers (e.g. 32MiB); default unlimited. Not 0:
    /// to serve nothing, use --no-upload.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_upload_rate: Option<u64>,
    /// Download cap in bytes per second over all peers (e.g. 100MiB); default unlimited.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_download_rate: Option<u64>,
    /// Leech mode: serve nothing to other peers (install only).
    #[arg(long)]
    pub no_upload: bool,
}

impl NetArgs {
    /// The node configuration these flags describe.
    pub fn config(&self) -> NodeConfig {
        NodeConfig {
            listen: self.listen.unwrap_or(peas_net::DEFAULT_LISTEN),
            relay: self.relay.clone(),
            max_upload_rate: self.max_upload_rate,
            max_download_rate: self.max_download_rate,
            no_upload: self.no_upload,
            ..NodeConfig::default()
        }
    }
}

/// Arguments of `peas seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Manifests (.peas files) or tickets to serve, in addition to every content already known
    /// in the home.
    #[arg(value_name = "MANIFEST_OR_TICKET")]
    pub manifests: Vec<String>,
    /// Print JSON lines on stdout: `serving`, `progress` events and a final summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub net: NetArgs,
}

/// Parses a rate cap in bytes per second (a size, see [`parse_size`]); 0 is refused, since
/// it would read as "nothing" but a zero cap cannot be enforced.
fn parse_rate(s: &str) -> Result<u64, String> {
    match parse_size(s).map_err(|e| e.to_string())? {
        0 => Err(format!(
            "invalid rate {s:?}: must be above 0 (omit the flag for no cap; --no-upload serves nothing)"
        )),
        n => Ok(n),
    }
}

/// Checks that a relay URL is an http:// or https:// URL with a host.
fn parse_relay(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("invalid relay URL {s:?}: expected http://HOST or https://HOST"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("invalid relay URL {s:?}: no host"));
    }
    Ok(s.to_owned())
}

/// Parses a timeout: a duration (see [`parse_duration`]) above zero.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("invalid timeout {s:?}: must be above 0")),
        d => Ok(d),
    }
}

/// Parses a duration: a whole number with an optional unit `ms`, `s` (default), `m`, `h`, `d`
/// (e.g. `0`, `30s`, `10m`, `1h`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 0, 30s, 10m, 1h"))?;
    let secs = |mul: u64| {
        n.checked_mul(mul)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("duration {s:?} is too large"))
    };
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" | "min" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        _ => Err(format!(
            "invalid duration {s:?}: unknown unit (use ms, s, m, h, d)"
        )),
    }
}

/// Seconds since the unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Prints one JSON line on stdout (flushed, so a parent process sees it at once).
pub fn emit(v: &Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Partition ranges `[[start, end), ...]` of a partition set, for JSON events.
pub fn have_ranges(set: &PartitionSet) -> Vec<[u32; 2]> {
    let mut out: Vec<[u32; 2]> = Vec::new();
    for p in set.iter() {
        match out.last_mut() {
            Some(r) if r[1] == p => r[1] = p + 1,
            _ => out.push([p, p + 1]),
        }
    }
    out
}

/// A `progress` event for one content.
pub async fn progress_event(home: &Home, m: &Manifest, p: &peas_net::Progress) -> Value {
    let have = home
        .store()
        .completion(m.hash(), &m.geometry())
        .await
        .map(|c| have_ranges(&c.partitions))
        .unwrap_or_default();
    json!({
        "event": "progress",
        "hash": m.hash().to_string(),
        "verified_bytes": p.verified_bytes,
        "total_bytes": p.total_bytes,
        "rate_bps": p.rate,
        "peers": p.connected_peers,
        "uploaded_bytes": p.uploaded_bytes,
        "have": have,
    })
}

/// Feeds the persisted peers of `hash` to the node's swarm (so a restarted node finds it).
pub async fn restore_peers(home: &Home, node: &Node, hash: ContentHash) {
    match home.meta().peers(hash) {
        Ok(peers) => {
            let hints = peers.into_iter().map(|p| (p.id, p.addrs)).collect();
            node.add_peers(hash, hints).await;
        }
        Err(e) => tracing::warn!("cannot read the persisted peers: {e}"),
    }
}

/// Persists the peers the node knows in the swarm of `hash`.
pub async fn save_peers(home: &Home, node: &Node, hash: ContentHash) {
    let now = unix_now();
    let entries: Vec<PeerRecordEntry> = node
        .known_peers(hash)
        .await
        .into_iter()
        .map(|(id, addrs, age)| PeerRecordEntry {
            id,
            addrs,
            last_seen_unix: now.saturating_sub(age.as_secs()),
        })
        .collect();
    if let Err(e) = home.meta().record_peers(hash, entries) {
        tracing::warn!("cannot persist the peers: {e}");
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `peas seed`.
pub async fn run(global: &GlobalArgs, args: SeedArgs) -> CmdResult {
    if args.net.no_upload {
        return Err(CmdError::usage(anyhow::anyhow!(
            "--no-upload: a seeder that uploads nothing serves no one (the flag is for install)"
        )));
    }
    let mut given = Vec::new();
    for a in &args.manifests {
        given.push(load_manifest(a)?);
    }
    let home = open_home(global).await?;
    let res = serve(&home, &args, given).await;
    let shutdown = home.shutdown().await;
    let code = res?;
    shutdown.context("cannot flush the store")?;
    Ok(code)
}

async fn serve(home: &Home, args: &SeedArgs, given: Vec<Manifest>) -> anyhow::Result<ExitCode> {
    for m in &given {
        home.meta().put_manifest(m)?;
    }
    // every content known in the home that the store holds at least partly, plus the given ones
    let mut contents: Vec<Manifest> = Vec::new();
    for m in home
        .meta()
        .manifests()?
        .into_iter()
        .chain(given.iter().cloned())
    {
        if contents.iter().any(|c| c.hash() == m.hash()) {
            continue;
        }
        // Content imported in place is served from its file: once that changed, the store
        // would serve bytes every peer rejects.
        if let Some(why) = changed_source(home, &m)? {
            if args.json {
                emit(&json!({
                    "event": "not_serving",
                    "hash": m.hash().to_string(),
                    "name": m.name().as_str(),
                    "reason": why,
                }));
            } else {
                eprintln!(
                    "not serving {} ({}): {why}; run `peas create` on it again",
                    m.name(),
                    m.hash()
                );
            }
            continue;
        }
        let held = home
            .store()
            .completion(m.hash(), &m.geometry())
            .await
            .map(|c| c.verified_bytes > 0)
            .unwrap_or(false);
        if held || given.iter().any(|g| g.hash() == m.hash()) {
            contents.push(m);
        }
    }
    let node = Node::spawn(
        home.secret_key(),
        home.store().blobs().clone(),
        None,
        args.net.config(),
    )
    .await?;
    let t0 = std::time::Instant::now();
    let mut watches = Vec::new();
    for m in &contents {
        let w = node.seed(m).await?;
        restore_peers(home, &node, m.hash()).await;
        let p = w.borrow().clone();
        if args.json {
            emit(&json!({
                "event": "serving",
                "hash": m.hash().to_string(),
                "name": m.name().as_str(),
                "complete": p.complete,
                "verified_bytes": p.verified_bytes,
                "total_bytes": p.total_bytes,
                "id": node.id().to_string(),
                "addrs": node.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            }));
        } else {
            eprintln!(
                "serving {} ({}, {}) as {} on {}",
                m.name(),
                m.hash(),
                if p.complete { "complete" } else { "partial" },
                node.id(),
                join_addrs(&node.addrs()),
            );
        }
        watches.push((m.clone(), w));
    }
    if contents.is_empty() {
        if args.json {
            emit(&json!({
                "event": "serving",
                "complete": true,
                "contents": 0,
                "id": node.id().to_string(),
                "addrs": node.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            }));
        } else {
            eprintln!("no content to serve in this home; waiting for requests");
        }
    }
    // report progress until a signal comes
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last: Vec<Option<peas_net::Progress>> = vec![None; watches.len()];
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                if args.json {
                    for (i, (m, w)) in watches.iter().enumerate() {
                        let p = w.borrow().clone();
                        if last[i].as_ref() != Some(&p) {
                            emit(&progress_event(home, m, &p).await);
                            last[i] = Some(p);
                        }
                    }
                }
            }
        }
    }
    for m in &contents {
        save_peers(home, &node, m.hash()).await;
    }
    let uploaded = node.uploaded_bytes();
    let per_peer = node.uploaded_per_peer();
    node.shutdown().await?;
    if args.json {
        emit(&json!({
            "event": "summary",
            "contents": contents.iter().map(|m| m.hash().to_string()).collect::<Vec<_>>(),
            "uploaded_bytes": uploaded,
            "to_peers": per_peer
                .iter()
                .map(|(id, b)| json!({"id": id.to_string(), "bytes": b}))
                .collect::<Vec<_>>(),
            "elapsed_s": t0.elapsed().as_secs_f64(),
        }));
    } else {
        eprintln!("stopped; uploaded {uploaded} bytes");
    }
    Ok(ExitCode::SUCCESS)
}

/// Why the file that content `m` was imported from in place can no longer be served (`None`
/// if it was copied into the store, or is unchanged).
fn changed_source(home: &Home, m: &Manifest) -> anyhow::Result<Option<String>> {
    Ok(match home.meta().source(m.hash())? {
        Some(src) => src.unchanged().err(),
        None => None,
    })
}

/// Addresses joined with ", ".
pub fn join_addrs(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(parse_timeout("0").is_err());
        assert_eq!(parse_timeout("5s"), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn rates_and_relays() {
        assert_eq!(parse_rate("8MiB"), Ok(8 << 20));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-1").is_err());
        assert!(parse_relay("https://relay.example.com").is_ok());
        assert!(parse_relay("http://10.0.0.1:3340/").is_ok());
        assert!(parse_relay("ftp://example.com").is_err());
        assert!(parse_relay("https://").is_err());
        assert!(parse_relay("relay.example.com").is_err());
    }

    #[test]
    fn have_ranges_merge_runs() {
        let mut s = PartitionSet::new(10);
        for p in [0, 1, 2, 5, 7, 8] {
            s.insert(p);
        }
        assert_eq!(have_ranges(&s), vec![[0, 3], [5, 6], [7, 9]]);
    }
}
