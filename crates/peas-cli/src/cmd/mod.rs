//! The subcommands. Each has an `Args` struct (clap) and `run(&GlobalArgs, Args)`.

pub mod create;
pub mod id;
pub mod info;
pub mod install;
pub mod remove;
pub mod seed;
pub mod verify;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use peas_proto::{MAX_TICKET_LEN, Manifest, TICKET_PREFIX};
use peas_store::Home;

use crate::GlobalArgs;

/// A failed command: the error and the process exit code to use.
#[derive(Debug)]
pub struct CmdError {
    /// Exit code (1 = failure, 2 = usage or IO error where a command distinguishes them).
    pub code: u8,
    /// What went wrong.
    pub error: anyhow::Error,
}

impl CmdError {
    /// An error with exit code 2.
    pub fn usage(error: anyhow::Error) -> Self {
        Self { code: 2, error }
    }

    /// The error chain on one line (`outer: inner: root`).
    pub fn one_line(&self) -> String {
        format!("{:#}", self.error).replace(['\n', '\r'], " ")
    }
}

impl From<anyhow::Error> for CmdError {
    fn from(error: anyhow::Error) -> Self {
        Self { code: 1, error }
    }
}

/// What a command returns.
pub type CmdResult = Result<ExitCode, CmdError>;

/// Opens the home named by the global flags.
pub async fn open_home(global: &GlobalArgs) -> anyhow::Result<Home> {
    let dir = Home::resolve_dir(global.home.clone())?;
    tracing::info!(home = %dir.display(), "opening home");
    Ok(Home::open(&dir).await?)
}

/// Loads a manifest from a `.peas` file path or a `peas1…` ticket string. An existing path
/// wins; otherwise an argument starting with `peas1` is a ticket. Errors are prefixed with the
/// argument (the path, or "ticket").
pub fn load_manifest(arg: &str) -> anyhow::Result<Manifest> {
    if arg.trim().is_empty() {
        anyhow::bail!("empty argument: give a .peas file or a {TICKET_PREFIX}… ticket");
    }
    let path = Path::new(arg);
    if path.exists() {
        let limit = (MAX_TICKET_LEN + 4096) as u64;
        let len = std::fs::metadata(path)
            .with_context(|| format!("cannot read {arg}"))?
            .len();
        if len > limit {
            anyhow::bail!("{arg}: file of {len} bytes is too large to be a peas manifest");
        }
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {arg}"))?;
        return Manifest::decode_any(&bytes).with_context(|| arg.to_owned());
    }
    let looks_like_ticket = arg
        .trim()
        .get(..TICKET_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(TICKET_PREFIX));
    if looks_like_ticket {
        return Manifest::from_ticket(arg).context("invalid ticket (truncated or mistyped?)");
    }
    anyhow::bail!("{arg}: no such file, and not a {TICKET_PREFIX}… ticket")
}
