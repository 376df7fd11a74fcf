//! `peas id`: print this node's id, the name other nodes and manifests know it by.

use std::process::ExitCode;

use clap::Args;
use peas_store::Home;
use serde_json::json;

use super::{CmdResult, open_home};
use crate::GlobalArgs;

/// Arguments of `peas id`.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// Print `{"id": ..., "home": ...}` instead of the bare id.
    #[arg(long)]
    pub json: bool,
}

/// Runs `peas id`: prints the home's node id as 64 hex digits. An existing key is read without
/// the home lock, so this works while `peas seed` runs; a new home is created first.
pub async fn run(global: &GlobalArgs, args: IdArgs) -> CmdResult {
    let dir = Home::resolve_dir(global.home.clone()).map_err(anyhow::Error::from)?;
    let id = match Home::existing_node_id(&dir).map_err(anyhow::Error::from)? {
        Some(id) => id,
        None => {
            let home = open_home(global).await?;
            let id = home.node_id();
            home.shutdown().await.map_err(anyhow::Error::from)?;
            id
        }
    };
    let dir = dir.display().to_string();
    if args.json {
        println!("{}", json!({"id": id.to_string(), "home": dir}));
    } else {
        println!("{id}");
    }
    Ok(ExitCode::SUCCESS)
}
