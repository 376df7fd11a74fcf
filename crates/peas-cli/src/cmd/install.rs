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
use peas_net::{InstallOptions, InstallReport, NetError, Node};
use peas_proto::Manifest;
use peas_store::Home;
use serde_json::{Value, json};

use super::seed::{
    NetArgs, emit, parse_duration, parse_timeout, progress_event, restore_peers, save_peers,
    shutdown_signal,
};
use super::{CmdResult, load_manifest, open_home};
use crate::GlobalArgs;
use crate::paths::{check_output_path, free_space};
use crate::size::format_size;

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
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Print JSON lines on stdout (progress events, a complete event, a final summary; the
    /// summary is also printed on failure, with `"ok": false` and the `error`).
    #[arg(long)]
    pub json: bool,
    /// Skip the check that the home and PATH's filesystem have room for the content (made
    /// before downloading: the home keeps its own verified copy, which it serves, and PATH is
    /// a second one).
    #[arg(long)]
    pub no_space_check: bool,
    #[command(flatten)]
    pub net: NetArgs,
}

/// Runs `peas install`.
pub async fn run(global: &GlobalArgs, args: InstallArgs) -> CmdResult {
    let res = run_inner(global, &args).await;
    if let (true, Err(e)) = (args.json, &res) {
        emit(&json!({
            "event": "summary",
            "ok": false,
            "error": e.one_line(),
            "output": args.output.display().to_string(),
        }));
    }
    res
}

async fn run_inner(global: &GlobalArgs, args: &InstallArgs) -> CmdResult {
    let m = load_manifest(&args.manifest)?;
    let out_dir = check_output_path(&args.output)?;
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
                "ok": true,
                "hash": m.hash().to_string(),
                "bytes": m.size(),
                "elapsed_s": 0.0,
                "changed": false,
                "from_peers": [],
                "uploaded_bytes": 0,
                "banned": [],
                "already_complete": true,
                "output": args.output.display().to_string(),
            });
            if args.json {
                emit(&json!({"event": "complete", "hash": m.hash().to_string(),
                    "bytes": m.size(), "elapsed_s": 0.0, "changed": false,
                    "from_peers": [], "already_complete": true}));
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
    let res = async {
        if !args.no_space_check {
            check_space(&home, &m, &args.output, &out_dir).await?;
        }
        install(&home, args, &m)
            .await
            .map_err(|e| full_disk_hint(e, &[home.dir(), &out_dir]))
    }
    .await;
    let shutdown = home.shutdown().await;
    let code = res?;
    shutdown.context("cannot flush the store")?;
    Ok(code)
}

/// Fails before downloading when the home (for the part of the content it lacks, plus its
/// hash tree) or PATH's filesystem (for a whole copy, written next to PATH then renamed) has
/// less free space than that.
async fn check_space(home: &Home, m: &Manifest, out: &Path, out_dir: &Path) -> anyhow::Result<()> {
    let held = home
        .store()
        .completion(m.hash(), &m.geometry())
        .await
        .map_or(0, |c| c.verified_bytes);
    // The hash tree: 64 bytes per 16 KiB chunk group.
    let need_home = (m.size() - held.min(m.size())) + m.size() / 256;
    let need_out = m.size();
    let (Some((free_home, dev_home)), Some((free_out, dev_out))) =
        (free_space(home.dir()), free_space(out_dir))
    else {
        return Ok(());
    };
    let fail = |need: u64, free: u64, what: String| {
        bail!(
            "not enough free space for {}: {what} needs {}, {} is free (--no-space-check to try anyway)",
            m.name(),
            format_size(need),
            format_size(free)
        )
    };
    let home_what = || format!("the home {}", home.dir().display());
    if dev_home == dev_out {
        let need = need_home + need_out;
        if need > free_home {
            return fail(
                need,
                free_home,
                format!("{} plus {} on one filesystem", home_what(), out.display()),
            );
        }
        return Ok(());
    }
    if need_home > free_home {
        return fail(need_home, free_home, home_what());
    }
    if need_out > free_out {
        return fail(need_out, free_out, out.display().to_string());
    }
    Ok(())
}

/// Names a full filesystem among `dirs` as the likely cause of `e` (iroh-blobs reports a
/// failed write to its store as a stalled download, and loses the reason of a failed export).
fn full_disk_hint(e: anyhow::Error, dirs: &[&Path]) -> anyhow::Error {
    const NEARLY_FULL: u64 = 1 << 20;
    match dirs.iter().find_map(|d| {
        free_space(d)
            .filter(|(free, _)| *free < NEARLY_FULL)
            .map(|f| (d, f.0))
    }) {
        Some((dir, free)) => e.context(format!(
            "the filesystem of {} is full ({} free)",
            dir.display(),
            format_size(free)
        )),
        None => e,
    }
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
    let spawn = |config| {
        Node::spawn(
            home.secret_key(),
            home.store().blobs().clone(),
            None,
            config,
        )
    };
    let node = match spawn(args.net.config()).await {
        // The default port is taken (a seeder or another install on this host): any port
        // works for a downloader, peers learn it from the swarm.
        Err(NetError::Bind { addr, reason }) if args.net.listen.is_none() => {
            tracing::warn!("cannot listen on {addr} ({reason}); using a free port");
            let mut config = args.net.config();
            config.listen.set_port(0);
            spawn(config).await?
        }
        r => r?,
    };
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
        if !args.json {
            eprintln!(
                "seeding {} for {} s (Ctrl-C stops)",
                m.name(),
                args.seed_after.as_secs_f64()
            );
        }
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
            "ok": true,
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
