//! `peas remove`: delete content from the home, to reclaim its disk space.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use peas_proto::ContentHash;
use peas_store::Home;
use serde_json::json;

use super::{CmdError, CmdResult, load_manifest};
use crate::GlobalArgs;
use crate::size::format_size;

/// Arguments of `peas remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The content to remove: .peas files, peas1… tickets or BLAKE3 hashes (64 hex digits).
    #[arg(value_name = "MANIFEST_TICKET_OR_HASH", required = true)]
    pub content: Vec<String>,
    /// Print one JSON object: `removed` (hashes), `unknown` (hashes), `freed_bytes`.
    #[arg(long)]
    pub json: bool,
}

/// Runs `peas remove`: exit 0 when every argument named content of the home, 1 if some did
/// not (the others are removed all the same).
pub async fn run(global: &GlobalArgs, args: RemoveArgs) -> CmdResult {
    let mut hashes: Vec<ContentHash> = Vec::new();
    for a in &args.content {
        let hash = match a.trim().parse::<ContentHash>() {
            Ok(h) => h,
            Err(_) => load_manifest(a).map_err(CmdError::usage)?.hash(),
        };
        if !hashes.contains(&hash) {
            hashes.push(hash);
        }
    }
    let dir = Home::resolve_dir(global.home.clone()).map_err(anyhow::Error::from)?;
    if !dir.is_dir() {
        return Err(anyhow::anyhow!("no peas home at {}", dir.display()).into());
    }
    let home = Home::open(&dir).await.map_err(anyhow::Error::from)?;
    let before = dir_bytes(&dir);
    let known = home.remove(&hashes).await.map_err(anyhow::Error::from)?;
    let freed = before.saturating_sub(dir_bytes(&dir));
    let unknown: Vec<ContentHash> = hashes
        .iter()
        .copied()
        .filter(|h| !known.contains(h))
        .collect();
    if args.json {
        println!(
            "{}",
            json!({
                "removed": known.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
                "unknown": unknown.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
                "freed_bytes": freed,
            })
        );
    } else {
        for h in &known {
            println!("removed {h}");
        }
        if !known.is_empty() {
            println!("freed {}", format_size(freed));
        }
    }
    if !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|h| h.to_string()).collect();
        return Err(anyhow::anyhow!("not in this home: {}", list.join(", ")).into());
    }
    Ok(ExitCode::SUCCESS)
}

/// Bytes in the files under `dir` (what removing content frees shows up here).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
