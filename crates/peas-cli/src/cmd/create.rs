//! `peas create`: import a file and write its signed manifest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use peas_proto::{
    Geometry, MAX_ADDRS_PER_OWNER, MAX_OWNERS, ManifestDraft, NodeId, Owner, SafeName,
};

use super::{CmdResult, open_home};
use crate::GlobalArgs;
use crate::cmd::info::manifest_json;
use crate::paths::{check_output_path, same_file};
use crate::size::{format_size, parse_size};

/// Arguments of `peas create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The file to publish. It is served in place, not copied (unless --copy): keep it
    /// unchanged while this home seeds it (`peas seed` refuses to serve it once its size or
    /// modification time changed; run `peas create` again then).
    pub file: PathBuf,
    /// Where to write the signed manifest (written atomically).
    #[arg(short = 'o', long = "output", value_name = "OUT.peas")]
    pub output: PathBuf,
    /// Partition size (a power of two from 16KiB to 1GiB); default: chosen from the file size.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub partition_size: Option<u64>,
    /// A socket address this node will be reachable at (repeatable, at most 16).
    #[arg(long = "advertise", value_name = "ADDR")]
    pub advertise: Vec<SocketAddr>,
    /// Another owner that serves this content, as NODE_ID@ADDR (repeatable; e.g. a mirror
    /// that imported the same file). This node is always the first owner.
    #[arg(long = "owner", value_name = "NODE_ID@ADDR", value_parser = parse_owner)]
    pub owners: Vec<(NodeId, SocketAddr)>,
    /// The file name installers will use; default: the name of FILE.
    #[arg(long)]
    pub name: Option<String>,
    /// Copy the file into the home's store, so that it may change or go afterwards (needs
    /// the file's size in free space in the home).
    #[arg(long)]
    pub copy: bool,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// Runs `peas create`.
pub async fn run(global: &GlobalArgs, args: CreateArgs) -> CmdResult {
    Ok(run_inner(global, args).await?)
}

async fn run_inner(global: &GlobalArgs, args: CreateArgs) -> anyhow::Result<ExitCode> {
    let name = match &args.name {
        Some(n) => {
            SafeName::new(n.clone()).with_context(|| format!("invalid --name {:?}", shorten(n)))?
        }
        None => {
            let n = args
                .file
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| {
                    format!(
                        "{}: cannot use this file name, pass --name",
                        args.file.display()
                    )
                })?;
            SafeName::new(n).with_context(|| format!("invalid file name {n:?}, pass --name"))?
        }
    };
    if args.advertise.len() > MAX_ADDRS_PER_OWNER {
        bail!(
            "at most {MAX_ADDRS_PER_OWNER} --advertise addresses are allowed, got {}",
            args.advertise.len()
        );
    }
    for a in &args.advertise {
        if a.ip().is_unspecified() || a.port() == 0 {
            bail!("--advertise {a}: give an address and port others can dial");
        }
    }
    if let Some(ps) = args.partition_size {
        // Check the partition size alone before the (long) import.
        Geometry::new(0, ps).context("invalid --partition-size")?;
    }
    let meta = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", args.file.display());
    }
    if same_file(&args.file, &args.output) {
        bail!(
            "-o {} is the file to publish; write the manifest elsewhere (e.g. {}.peas)",
            args.output.display(),
            args.file.display()
        );
    }
    check_output_path(&args.output)?;

    let home = open_home(global).await?;
    let res = create(&home, &args, name).await;
    let shutdown = home.shutdown().await;
    let out = res?;
    shutdown.context("cannot shut down the store")?;
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

async fn create(
    home: &peas_store::Home,
    args: &CreateArgs,
    name: SafeName,
) -> anyhow::Result<String> {
    tracing::info!(file = %args.file.display(), "importing");
    let imported = home.store().import_file(&args.file, args.copy).await?;
    home.meta()
        .set_source(imported.hash, imported.source.as_ref())?;
    let partition_size = args
        .partition_size
        .unwrap_or_else(|| peas_proto::default_partition_size(imported.size));
    let geometry =
        Geometry::new(imported.size, partition_size).context("invalid --partition-size")?;
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let manifest = ManifestDraft {
        hash: imported.hash,
        size: imported.size,
        name,
        partition_size,
        created_at,
        owners: owners(home.node_id(), &args.advertise, &args.owners)?,
    }
    .sign(&home.secret_key())?;
    peas_store::write_file_atomic(&args.output, &manifest.to_file_bytes())?;
    home.meta().put_manifest(&manifest)?;
    let ticket = manifest.to_ticket();
    if args.json {
        let mut v = manifest_json(&manifest);
        v["path"] = args.output.display().to_string().into();
        return Ok(v.to_string());
    }
    let addrs: Vec<String> = args.advertise.iter().map(|a| a.to_string()).collect();
    Ok(format!(
        "wrote {}\n  name:        {}\n  hash:        {}\n  size:        {} bytes ({})\n  partitions:  {} × {}\n  node id:     {}\n  advertised:  {}\nticket:\n{}",
        args.output.display(),
        manifest.name(),
        manifest.hash(),
        manifest.size(),
        format_size(manifest.size()),
        geometry.partitions(),
        format_size(partition_size),
        home.node_id(),
        if addrs.is_empty() {
            "(none)".to_owned()
        } else {
            addrs.join(", ")
        },
        ticket
    ))
}

/// At most the first 64 characters of `s`, with "…" if cut (for quoting input in errors).
fn shorten(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Parses `--owner NODE_ID@ADDR`.
fn parse_owner(s: &str) -> Result<(NodeId, SocketAddr), String> {
    let (id, addr) = s
        .split_once('@')
        .ok_or_else(|| format!("expected NODE_ID@ADDR, got {s:?}"))?;
    let id: NodeId = id
        .parse()
        .map_err(|_| format!("{id:?} is not a node id (64 hex digits)"))?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not a socket address (IP:PORT)"))?;
    if addr.ip().is_unspecified() || addr.port() == 0 {
        return Err(format!("{addr}: give an address and port others can dial"));
    }
    Ok((id, addr))
}

/// The owner list: this node with its advertised addresses first, then the `--owner`s, one
/// entry per node id with all its addresses.
fn owners(
    me: NodeId,
    advertise: &[SocketAddr],
    extra: &[(NodeId, SocketAddr)],
) -> anyhow::Result<Vec<Owner>> {
    let mut list = vec![Owner {
        id: me,
        addrs: advertise.to_vec(),
        relay: None,
    }];
    for (id, addr) in extra {
        match list.iter_mut().find(|o| o.id == *id) {
            Some(o) if !o.addrs.contains(addr) => o.addrs.push(*addr),
            Some(_) => {}
            None => list.push(Owner {
                id: *id,
                addrs: vec![*addr],
                relay: None,
            }),
        }
    }
    if list.len() > MAX_OWNERS {
        bail!(
            "at most {MAX_OWNERS} owners are allowed, got {}",
            list.len()
        );
    }
    if let Some(o) = list.iter().find(|o| o.addrs.len() > MAX_ADDRS_PER_OWNER) {
        bail!(
            "owner {} has more than {MAX_ADDRS_PER_OWNER} addresses",
            o.id
        );
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_merge_addresses_by_id_and_keep_this_node_first() {
        let me = NodeId([1; 32]);
        let other = NodeId([2; 32]);
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let list = owners(me, &[a], &[(other, a), (other, b), (other, b), (me, b)]).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].id, me);
        assert_eq!(list[0].addrs, vec![a, b]);
        assert_eq!(list[1].addrs, vec![a, b]);
    }

    #[test]
    fn parse_owner_rejects_bad_input() {
        let id = "ab".repeat(32);
        assert!(parse_owner(&format!("{id}@127.0.0.1:7")).is_ok());
        assert!(parse_owner(&format!("{id}127.0.0.1:7")).is_err());
        assert!(parse_owner("xyz@127.0.0.1:7").is_err());
        assert!(parse_owner(&format!("{id}@0.0.0.0:7")).is_err());
        assert!(parse_owner(&format!("{id}@127.0.0.1")).is_err());
    }
}
