//! `cargo xtask e2e`: multi-node scenarios of the real `peas` binary on 127.0.0.1 (or, with
//! `--netns`, each node in its own network namespace: see [`netns`]).
//!
//! Each scenario starts child processes (one home and one port per node), caps every node's
//! rates so that this machine's CPU is not what limits the run, checks what a user would check
//! (the files are bit-identical, the right peers were used, bad input fails cleanly), prints
//! PASS/FAIL with its figures, and cleans up its processes and temp dirs on every exit path.

pub mod cluster;
pub mod netns;
mod scenarios;

use std::time::Instant;

use serde_json::{Value, json};

/// What a scenario measured: `(name, value)` pairs printed after PASS/FAIL.
pub type Figures = Vec<(&'static str, Value)>;

/// A scenario: name, one-line description, and the function that runs it.
pub struct Scenario {
    /// The name used on the command line.
    pub name: &'static str,
    /// What it shows.
    pub about: &'static str,
    /// Runs the scenario; `Ok(figures)` is a pass.
    pub run: fn(&mut scenarios::Ctx) -> Result<Figures, String>,
}

/// Runs all scenarios, or the one named, and prints `e2e: N passed, N failed`.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut json = false;
    let mut netns = false;
    let mut only: Option<&str> = None;
    for a in args {
        match a.as_str() {
            "--json" => json = true,
            "--list" => {
                for s in scenarios::ALL {
                    println!("{:<14} {}", s.name, s.about);
                }
                return Ok(());
            }
            "--netns" => netns = true,
            s if !s.starts_with('-') && only.is_none() => only = Some(s),
            other => return Err(format!("e2e: unknown argument `{other}`")),
        }
    }
    let selected: Vec<&Scenario> = scenarios::ALL
        .iter()
        .filter(|s| only.is_none_or(|o| o == s.name))
        .collect();
    if selected.is_empty() {
        let names: Vec<&str> = scenarios::ALL.iter().map(|s| s.name).collect();
        return Err(format!(
            "e2e: no scenario named `{}` (have: {})",
            only.unwrap_or(""),
            names.join(", ")
        ));
    }

    if netns {
        netns::check_available()?;
    }
    eprintln!("e2e: building the release binaries");
    let mut ctx = scenarios::Ctx::build(netns)?;
    let started = Instant::now();
    let (mut passed, mut failed) = (0, 0);
    for s in selected {
        eprintln!("e2e: {} — {}", s.name, s.about);
        let t = Instant::now();
        let result = (s.run)(&mut ctx);
        crate::proc::cleanup_all();
        let secs = t.elapsed().as_secs_f64();
        let (ok, figures, error) = match result {
            Ok(f) => (true, f, None),
            Err(e) => (false, Vec::new(), Some(e)),
        };
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
        let figs: Vec<String> = figures.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{} {:<14} {:>6.1}s  {}{}",
            if ok { "PASS" } else { "FAIL" },
            s.name,
            secs,
            figs.join(" "),
            error
                .as_deref()
                .map(|e| format!("error: {e}"))
                .unwrap_or_default()
        );
        if json {
            let mut obj = serde_json::Map::new();
            obj.insert("scenario".into(), json!(s.name));
            obj.insert("pass".into(), json!(ok));
            obj.insert("wall_s".into(), json!((secs * 10.0).round() / 10.0));
            for (k, v) in figures {
                obj.insert(k.into(), v);
            }
            if let Some(e) = error {
                obj.insert("error".into(), json!(e));
            }
            println!("{}", Value::Object(obj));
        }
    }
    println!("e2e: {passed} passed, {failed} failed");
    eprintln!("e2e: finished in {:.0} s", started.elapsed().as_secs_f64());
    if failed > 0 {
        Err(format!("{failed} e2e scenario(s) failed"))
    } else {
        Ok(())
    }
}
