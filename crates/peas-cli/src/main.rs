//! `peas`: push large files from one origin to many hosts, peer-to-peer.
//!
//! This binary parses arguments, opens the home when a command needs it, calls into
//! peas-store and peas-net, prints results, and turns every failure into one
//! `error: …` line on stderr and a non-zero exit code.

mod cmd;
mod paths;
mod size;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "peas",
    version,
    about = "Push large files to many hosts, peer-to-peer."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every subcommand accepts.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The node's home directory (key, blob store, metadata). Default: $PEAS_HOME, else the
    /// platform data directory + /peas.
    #[arg(long, global = true, env = "PEAS_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// More log output on stderr (default: peas' warnings only; -v info, -vv debug, -vvv
    /// trace, from every library); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Import a file into the home's store (in place unless --copy) and write a signed .peas
    /// manifest for it.
    Create(cmd::create::CreateArgs),
    /// Show what a .peas manifest or ticket says, after checking its signature.
    Info(cmd::info::InfoArgs),
    /// Check that a file has a manifest's size and BLAKE3 hash (exit 0 yes, 1 no, 2 error).
    Verify(cmd::verify::VerifyArgs),
    /// Serve all content in the home and join its swarms until SIGINT/SIGTERM.
    Seed(cmd::seed::SeedArgs),
    /// Download a manifest's content from the swarm, verify it and write it to a path.
    Install(cmd::install::InstallArgs),
    /// Print this node's id (creating the home and its key on first use).
    Id(cmd::id::IdArgs),
    /// Delete content from the home to reclaim its space (a file served in place stays).
    Remove(cmd::remove::RemoveArgs),
}

/// Logs go to stderr: without `-v` only peas' own warnings (a failure is the one `error:` line;
/// the libraries' internal errors behind it are for `-v`), colours only on a terminal.
fn init_tracing(verbose: u8) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "off,peas=warn,peas_net=warn,peas_store=warn,peas_sched=warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Help and version go to stdout as usual; a usage error becomes one `error: …` line, exit 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
    }
    let rendered = e.to_string();
    // clap's message is "error: …" plus indented detail lines, then "Usage: …"; keep the
    // message and its details, on one line.
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    let msg = parts.join(" ");
    let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
    let msg = if msg.is_empty() {
        "invalid arguments"
    } else {
        msg
    };
    eprintln!("error: {msg} (see 'peas --help')");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    init_tracing(cli.global.verbose);
    let res = match cli.command {
        Command::Create(a) => cmd::create::run(&cli.global, a).await,
        Command::Info(a) => cmd::info::run(&cli.global, a).await,
        Command::Verify(a) => cmd::verify::run(&cli.global, a).await,
        Command::Seed(a) => cmd::seed::run(&cli.global, a).await,
        Command::Install(a) => cmd::install::run(&cli.global, a).await,
        Command::Id(a) => cmd::id::run(&cli.global, a).await,
        Command::Remove(a) => cmd::remove::run(&cli.global, a).await,
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", e.one_line());
            ExitCode::from(e.code)
        }
    }
}
