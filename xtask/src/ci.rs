//! `cargo xtask ci`: what CI runs, in order, stopping at the first failure.

use std::time::Instant;

use crate::proc::{cargo, run_status};

/// Runs formatting, lints, the workspace tests, then the e2e suite.
///
/// `--no-e2e` skips the e2e suite (for a quick local check).
pub fn run(args: &[String]) -> Result<(), String> {
    let skip_e2e = args.iter().any(|a| a == "--no-e2e");
    if let Some(bad) = args.iter().find(|a| *a != "--no-e2e") {
        return Err(format!("ci: unknown argument `{bad}` (only --no-e2e)"));
    }
    let started = Instant::now();

    step("cargo fmt --check", || {
        let mut cmd = cargo();
        cmd.args(["fmt", "--all", "--", "--check"]);
        run_status(cmd, "cargo fmt --check")
    })?;
    step("cargo clippy", || {
        let mut cmd = cargo();
        cmd.args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]);
        run_status(cmd, "cargo clippy")
    })?;
    step("cargo deny", || {
        let probe = cargo().args(["deny", "--version"]).output();
        if !probe.is_ok_and(|o| o.status.success()) {
            eprintln!(
                "skipped: cargo-deny is not installed (`cargo install cargo-deny` enables this step)"
            );
            return Ok(());
        }
        let mut cmd = cargo();
        cmd.args(["deny", "check", "bans", "licenses", "sources"]);
        run_status(cmd, "cargo deny")
    })?;
    step("cargo test", || {
        let mut cmd = cargo();
        cmd.args(["test", "--workspace", "--locked"]);
        run_status(cmd, "cargo test")
    })?;
    if !skip_e2e {
        step("cargo xtask e2e", || crate::e2e::run(&[]))?;
    }
    eprintln!(
        "ci: all steps passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn step(name: &str, f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    eprintln!("\n==> {name}");
    let t = Instant::now();
    let r = f();
    eprintln!(
        "<== {name}: {} in {:.0} s",
        if r.is_ok() { "ok" } else { "FAILED" },
        t.elapsed().as_secs_f64()
    );
    r
}
