//! `peas verify`: does a file match a manifest?

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::{CmdError, CmdResult, load_manifest};
use crate::GlobalArgs;

/// Arguments of `peas verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A .peas file, or a peas1… ticket.
    #[arg(value_name = "MANIFEST_OR_TICKET")]
    pub manifest: String,
    /// The file to check.
    pub path: PathBuf,
    /// Print one JSON object on stdout, also when the file cannot be read (with `error`); the
    /// exit code still tells the result.
    #[arg(long)]
    pub json: bool,
}

/// Runs `peas verify`: exit 0 if PATH has the manifest's size and BLAKE3 hash, 1 if not, 2 if
/// the manifest or the file cannot be read.
pub async fn run(global: &GlobalArgs, args: VerifyArgs) -> CmdResult {
    let res = run_inner(global, &args).await;
    // A mismatch (exit 1) printed its object already; an error printed nothing.
    if let (true, Err(e)) = (args.json, &res)
        && e.code != 1
    {
        println!(
            "{}",
            json!({
                "path": args.path.display().to_string(),
                "matches": false,
                "error": e.one_line(),
            })
        );
    }
    res
}

async fn run_inner(_global: &GlobalArgs, args: &VerifyArgs) -> CmdResult {
    let m = load_manifest(&args.manifest).map_err(CmdError::usage)?;
    let path = args.path.clone();
    let (hash, size) = tokio::task::spawn_blocking(move || peas_store::hash_file(&path))
        .await
        .context("hashing task failed")
        .map_err(CmdError::usage)?
        .map_err(|e| CmdError::usage(e.into()))?;
    let ok = hash == m.hash() && size == m.size();
    if args.json {
        println!(
            "{}",
            json!({
                "path": args.path.display().to_string(),
                "matches": ok,
                "expected_hash": m.hash().to_string(),
                "expected_size": m.size(),
                "hash": hash.to_string(),
                "size": size,
            })
        );
    }
    if ok {
        if !args.json {
            println!(
                "ok: {} matches {} ({} bytes)",
                args.path.display(),
                m.hash(),
                size
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let why = if size != m.size() {
        format!("size is {size} bytes, expected {}", m.size())
    } else {
        format!("BLAKE3 hash is {hash}, expected {}", m.hash())
    };
    Err(CmdError {
        code: 1,
        error: anyhow::anyhow!("{} does not match the manifest: {why}", args.path.display()),
    })
}
