//! `cargo xtask`: project automation for peas, in Rust instead of shell scripts.
//!
//! - `cargo xtask ci`: formatting, clippy, the workspace tests, then the e2e suite.
//! - `cargo xtask e2e [SCENARIO] [--json] [--netns]`: multi-node scenarios of the real `peas` binary
//!   (on 127.0.0.1, or with `--netns` each node in its own network namespace).
//! - `cargo xtask demo`: the main job on an embedded default (origin + 4 nodes, 256 MiB).
//! - `cargo xtask sim ARGS...`: the deterministic swarm simulator (`peas-sim`), built with the
//!   `sim` profile (release with link-time optimisation).
//! - `cargo xtask bench`: measured throughput of the real code paths.
//!
//! xtask depends on none of the peas crates: it drives cargo and the built binaries, like a user.

mod bench;
mod ci;
mod demo;
mod e2e;
mod proc;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  ci                     fmt --check, clippy -D warnings, cargo test --workspace, then the e2e suite
  e2e [SCENARIO] [--json] [--netns] [--list]
                         multi-node scenarios of the release `peas` binary on 127.0.0.1;
                         --netns: each node in its own network namespace on a bridge, its
                         upload shaped by tc instead of --max-upload-rate (needs root, iproute2)
  demo [--size SIZE] [--nodes N] [--rate RATE]
                         origin + 4 local nodes exchanging a 256 MiB file, with live progress
  sim ARGS...            the deterministic swarm simulator (see `cargo xtask sim --help`)
  bench                  throughput of the real code paths, printed as a table
";

fn main() -> ExitCode {
    proc::install_interrupt_handler();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "ci" => ci::run(rest),
        "e2e" => e2e::run(rest),
        "demo" => demo::run(rest),
        "sim" => sim(rest),
        "bench" => bench::run(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    };
    proc::cleanup_all();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask sim ARGS...` runs the simulator binary (the `sim` profile: release with
/// link-time optimisation) with the given arguments. (Its allocator, mimalloc, backs the
/// planners with transparent huge pages by itself.)
fn sim(args: &[String]) -> Result<(), String> {
    let mut cmd = proc::cargo();
    cmd.args(["run", "--quiet", "--profile", "sim", "-p", "peas-sim", "--"]);
    cmd.args(args);
    proc::run_status(cmd, "peas-sim")
}
