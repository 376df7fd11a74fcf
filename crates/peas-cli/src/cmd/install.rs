//! `peas install`: join the swarm of a manifest, download from many peers at once while serving
//! what is verified, export atomically to PATH, keep seeding for `--seed-after`.
//!
//! Exit 0 only when PATH holds the complete verified content. With `--json`, stdout carries
//! JSON lines (`progress` events, one `complete` event when PATH is written) and, as the LAST
//! line, a summary object with `hash`, `bytes`, `elapsed_s`, `changed`, `from_peers`
//! (`{id, bytes}`), `uploaded_bytes` and `banned`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use peas_net::{InstallOptions, InstallReport, Node};
use peas_proto::Manifest;
use peas_store::Home;
use serde_json::{Value, json};

use super::seed::{
    NetArgs, emit, parse_duration, progress_event, restore_peers, save_peers, shutdown_signal,
};
use super::{CmdResult, load_manifest, open_home};
use crate::GlobalArgs;

/// Arguments of `peas install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The .peas manifest file or `peas1…` ticket of the content.
    #[arg(value_name = "MANIFEST_OR_TICKET")]
    pub manifest: String,
    /// Where to write the content (atomically: a temp file next to it, fsync, rename).
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: PathBuf,
    /// Keep serving the content for this long after it is written (e.g. 30s, 10m); 0 exits at
    /// once. SIGINT/SIGTERM end the seeding early (exit 0).
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    pub seed_after: Duration,
    /// Give up when no owner or peer answers, or nothing is verified, for this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print JSON lines on stdout (progress events, a complete event, a final summary).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub net: NetArgs,
}

/// Runs `peas install`.
pub async fn run(global: &GlobalArgs, args: InstallArgs) -> CmdResult {
    let m = load_manifest(&args.manifest)?;
    check_output_dir(&args.output)?;
    // Already there? Then nothing to do.
    if args.output.exists() {
        let path = args.output.clone();
        let mc = m.clone();
        let same = tokio::task::spawn_blocking(move || peas_store::verify_file(&path, &mc))
            .await
            .context("verification task failed")?
            .unwrap_or(false);
        if same {
            let summary = json!({
                "event": "summary",
                "hash": m.hash().to_string(),
                "bytes": m.size(),
                "elapsed_s": 0.0,
                "changed": false,
                "from_peers": [],
                "uploaded_bytes": 0,
                "banned": [],
                "output": args.output.display().to_string(),
            });
            if args.json {
                emit(&json!({"event": "complete", "hash": m.hash().to_string(),
                    "bytes": m.size(), "elapsed_s": 0.0, "changed": false}));
                emit(&summary);
            } else {
                eprintln!(
                    "{} already holds the verified content; nothing to do",
                    args.output.display()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
    let home = open_home(global).await?;
    let res = install(&home, &args, &m).await;
    let shutdown = home.shutdown().await;
    let code = res?;
    shutdown.context("cannot flush the store")?;
    Ok(code)
}

/// Fails early when PATH cannot be written: its parent must be an existing directory.
fn check_output_dir(out: &Path) -> anyhow::Result<()> {
    if out.is_dir() {
        bail!("{}: is a directory; give a file path", out.display());
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        bail!(
            "cannot write {}: {} is not a directory",
            out.display(),
            parent.display()
        );
    }
    Ok(())
}

fn report_json(r: &InstallReport) -> (Vec<Value>, Vec<Value>) {
    let from = r
        .from_peers
        .iter()
        .map(|(id, b)| json!({"id": id.to_string(), "bytes": b}))
        .collect();
    let banned = r.banned.iter().map(|id| json!(id.to_string())).collect();
    (from, banned)
}

async fn install(home: &Home, args: &InstallArgs, m: &Manifest) -> anyhow::Result<ExitCode> {
    home.meta().put_manifest(m)?;
    let node = Node::spawn(
        home.secret_key(),
        home.store().blobs().clone(),
        None,
        args.net.config(),
    )
    .await?;
    let res = download_and_seed(home, args, m, &node).await;
    save_peers(home, &node, m.hash()).await;
    node.shutdown().await?;
    res
}

async fn download_and_seed(
    home: &Home,
    args: &InstallArgs,
    m: &Manifest,
    node: &Node,
) -> anyhow::Result<ExitCode> {
    let opts = InstallOptions {
        stall_timeout: Some(args.timeout),
    };
    let handle = node.install(m, opts).await?;
    restore_peers(home, node, m.hash()).await;
    let mut progress = handle.progress();
    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(m.size());
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        ) {
            b.set_style(style);
        }
        b
    });
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let wait = handle.wait();
    tokio::pin!(wait);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last: Option<peas_net::Progress> = None;
    let report = loop {
        tokio::select! {
            r = &mut wait => break r,
            _ = &mut stop => {
                if let Some(b) = &bar {
                    b.abandon();
                }
                bail!("interrupted before the download completed");
            }
            _ = tick.tick() => {
                let p = progress.borrow_and_update().clone();
                if let Some(b) = &bar {
                    b.set_position(p.verified_bytes);
                    b.set_message(format!("{} peers", p.connected_peers));
                }
                if args.json && last.as_ref() != Some(&p) {
                    emit(&progress_event(home, m, &p).await);
                    last = Some(p);
                }
            }
        }
    };
    let report = report?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    home.store()
        .export_atomic(m.hash(), &args.output)
        .await
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let (from, banned) = report_json(&report);
    let elapsed = report.elapsed.as_secs_f64();
    if args.json {
        let p = progress.borrow().clone();
        emit(&progress_event(home, m, &p).await);
        emit(&json!({
            "event": "complete",
            "hash": m.hash().to_string(),
            "bytes": report.bytes,
            "elapsed_s": elapsed,
            "changed": true,
            "from_peers": from,
            "already_complete": report.already_complete,
        }));
    } else {
        let peers = report.from_peers.iter().filter(|(_, b)| *b > 0).count();
        eprintln!(
            "installed {} ({} bytes) to {} in {:.1}s from {} peer(s)",
            m.name(),
            report.bytes,
            args.output.display(),
            elapsed,
            peers
        );
    }
    // keep serving for --seed-after, or until a signal
    if !args.seed_after.is_zero() {
        let until = tokio::time::sleep(args.seed_after);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => break,
                _ = &mut stop => break,
                _ = tick.tick() => {
                    if args.json {
                        let p = progress.borrow_and_update().clone();
                        if last.as_ref() != Some(&p) {
                            emit(&progress_event(home, m, &p).await);
                            last = Some(p);
                        }
                    }
                }
            }
        }
    }
    if args.json {
        emit(&json!({
            "event": "summary",
            "hash": m.hash().to_string(),
            "bytes": report.bytes,
            "elapsed_s": elapsed,
            "changed": true,
            "from_peers": from,
            "uploaded_bytes": node.uploaded_bytes(),
            "banned": banned,
            "already_complete": report.already_complete,
            "output": args.output.display().to_string(),
        }));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_dir_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(check_output_dir(&dir.path().join("x.bin")).is_ok());
        assert!(check_output_dir(dir.path()).is_err());
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        let err = check_output_dir(&file.join("out.bin")).expect_err("parent is a file");
        assert!(err.to_string().contains("is not a directory"));
        assert!(check_output_dir(Path::new("relative.bin")).is_ok());
    }
}
