//! `cargo xtask bench`: throughput of the real code paths, measured with the release binary on
//! 127.0.0.1 without rate limits: import (`peas create`), a download from one seeder, and a
//! download striped over three seeders. Prints a table (and JSON lines with `--json`).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::e2e::cluster::{Cluster, MIB, event, file_hash, tail};

/// Runs the benchmarks. Flags: `--size MIB` (default 256), `--json`.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut size_mib: u64 = 256;
    let mut as_json = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--size" => {
                size_mib = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v > 0)
                    .ok_or("bench: --size takes a positive number of MiB")?
            }
            "--json" => as_json = true,
            other => {
                return Err(format!(
                    "bench: unknown argument `{other}` (--size MIB, --json)"
                ));
            }
        }
    }
    let size = size_mib * MIB;
    let peas = crate::proc::build_peas()?;
    let mut c = Cluster::new("bench", peas, None, false)?;
    let (file, hash) = c.random_file("content.bin", size)?;
    let mut results = Vec::new();

    // Import: hashing + outboard + store metadata.
    let mut seeds = Vec::new();
    let mut owners = Vec::new();
    let mut manifest = None;
    for i in 0..3 {
        let n = c.node(&format!("seed{i}"))?;
        let t = Instant::now();
        let m = c.create(&n, &file, &owners)?;
        if i == 0 {
            results.push(("create (import + sign)", size, t.elapsed().as_secs_f64()));
        }
        owners.push(format!("{}@{}", c.node_id(&n)?, n.addr));
        manifest = Some(m);
        seeds.push(n);
    }
    let manifest_all = manifest.ok_or("no manifest")?;
    let one = c.create(&seeds[0], &file, &[])?;
    let one = {
        let to = one.with_file_name("one.peas");
        std::fs::rename(&one, &to).map_err(|e| e.to_string())?;
        to
    };
    let mut procs = Vec::new();
    for n in &seeds {
        procs.push(c.seed(n, &[], &[])?);
    }
    for p in &procs {
        crate::e2e::cluster::wait_for(Duration::from_secs(30), "seeder ready", || {
            Ok(event(p, "serving").map(|_| ()))
        })?;
    }
    for (label, m) in [
        ("install from 1 seeder", &one),
        ("install from 3 seeders", &manifest_all),
    ] {
        let n = c.node(&label.replace(' ', "-"))?;
        let out = c.dir().join(format!("{}.bin", n.name));
        let mut p = c.install(&n, m, &out, &["--seed-after", "0", "--no-upload"])?;
        let code = p.wait_timeout(Duration::from_secs(300))?;
        if code != 0 {
            return Err(format!(
                "bench: {label}: exit {code}: {}",
                tail(&p.stderr(), 3)
            ));
        }
        if file_hash(&out).as_deref() != Some(hash.as_str()) {
            return Err(format!("bench: {label}: output does not match"));
        }
        let secs = event(&p, "complete")
            .and_then(|e| e["elapsed_s"].as_f64())
            .ok_or("bench: no complete event")?;
        results.push((label, size, secs));
    }
    for p in procs.iter_mut() {
        p.terminate(Duration::from_secs(20))?;
    }

    println!(
        "{:<26} {:>9} {:>9} {:>10}",
        "benchmark", "MiB", "seconds", "MiB/s"
    );
    for (label, bytes, secs) in &results {
        let mibs = *bytes as f64 / MIB as f64 / secs;
        println!("{label:<26} {:>9} {secs:>9.2} {mibs:>10.1}", bytes / MIB);
        if as_json {
            println!(
                "{}",
                json!({"bench": label, "bytes": bytes, "seconds": secs, "mib_per_s": mibs})
            );
        }
    }
    Ok(())
}
