//! `peas id`: print this node's id, the name other nodes and manifests know it by.

use std::process::ExitCode;

use clap::Args;
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

/// Runs `peas id`: opens (or creates) the home and prints its node id as 64 hex digits.
pub async fn run(global: &GlobalArgs, args: IdArgs) -> CmdResult {
    let home = open_home(global).await?;
    let id = home.node_id();
    let dir = home.dir().display().to_string();
    home.shutdown().await.map_err(anyhow::Error::from)?;
    if args.json {
        println!("{}", json!({"id": id.to_string(), "home": dir}));
    } else {
        println!("{id}");
    }
    Ok(ExitCode::SUCCESS)
}
