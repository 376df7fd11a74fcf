//! `peas info`: print a manifest after checking its signature.

use std::process::ExitCode;

use clap::Args;
use peas_proto::Manifest;
use serde_json::{Value, json};

use super::{CmdResult, load_manifest};
use crate::GlobalArgs;
use crate::size::format_size;

/// Arguments of `peas info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A .peas file, or a peas1… ticket.
    #[arg(value_name = "MANIFEST_OR_TICKET")]
    pub manifest: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The JSON form of a (verified) manifest and its ticket, shared by `info --json` and
/// `create --json`.
pub fn manifest_json(m: &Manifest) -> Value {
    let owners: Vec<Value> = m
        .owners()
        .iter()
        .map(|o| {
            json!({
                "id": o.id.to_string(),
                "addrs": o.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "relay": o.relay,
            })
        })
        .collect();
    json!({
        "version": m.version(),
        "name": m.name().as_str(),
        "hash": m.hash().to_string(),
        "size": m.size(),
        "partition_size": m.partition_size(),
        "partitions": m.geometry().partitions(),
        "created_at": m.created_at(),
        "creator": m.creator().to_string(),
        "owners": owners,
        "signature": m.signature().iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "signature_valid": true,
        "ticket": m.to_ticket(),
    })
}

/// Runs `peas info`.
pub async fn run(_global: &GlobalArgs, args: InfoArgs) -> CmdResult {
    let m = load_manifest(&args.manifest)?;
    if args.json {
        println!("{}", manifest_json(&m));
        return Ok(ExitCode::SUCCESS);
    }
    println!("name:           {}", m.name());
    println!("hash:           {}", m.hash());
    println!(
        "size:           {} bytes ({})",
        m.size(),
        format_size(m.size())
    );
    println!(
        "partitions:     {} × {} ({} bytes)",
        m.geometry().partitions(),
        format_size(m.partition_size()),
        m.partition_size()
    );
    println!("created at:     {} (unix seconds)", m.created_at());
    println!("creator:        {}", m.creator());
    println!("owners:         {}", m.owners().len());
    for o in m.owners() {
        let addrs: Vec<String> = o.addrs.iter().map(|a| a.to_string()).collect();
        println!(
            "  {}  addrs: {}  relay: {}",
            o.id,
            if addrs.is_empty() {
                "-".to_owned()
            } else {
                addrs.join(", ")
            },
            o.relay.as_deref().unwrap_or("-")
        );
    }
    println!("version:        {}", m.version());
    println!("signature:      valid");
    println!("ticket:\n{}", m.to_ticket());
    Ok(ExitCode::SUCCESS)
}
