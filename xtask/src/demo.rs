//! `cargo xtask demo`: the main job on an embedded default. Generates a 256 MiB file, starts an
//! origin and 4 local nodes (each its own `peas` process, home and port, upload capped at u),
//! shows each node's live progress, then prints a summary and cleans up.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::e2e::cluster::{
    Cluster, MIB, check_alive, event, file_hash, from_peers, last_event, tail,
};
use crate::proc::Proc;

/// Runs the demo. Flags: `--size SIZE_MIB`, `--nodes N`, `--rate MIB_PER_S`.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut size_mib: u64 = 256;
    let mut nodes: usize = 4;
    let mut rate_mib: u64 = 16;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.trim_end_matches("MiB").parse().ok())
                .filter(|v| *v > 0)
                .ok_or(format!("demo: {name} takes a positive whole number"))
        };
        match a.as_str() {
            "--size" => size_mib = num("--size (MiB)")?,
            "--nodes" => nodes = num("--nodes")? as usize,
            "--rate" => rate_mib = num("--rate (MiB/s)")?,
            other => {
                return Err(format!(
                    "demo: unknown argument `{other}` (--size MIB, --nodes N, --rate MIB_PER_S)"
                ));
            }
        }
    }
    let size = size_mib * MIB;
    let rate = format!("{rate_mib}MiB");
    println!(
        "peas demo: one origin and {nodes} nodes on 127.0.0.1, a {size_mib} MiB file, every node's upload capped at {rate_mib} MiB/s"
    );
    println!("building the release binary (the first build takes a few minutes)...");
    let peas = crate::proc::build_peas()?;
    let mut c = Cluster::new("demo", peas, None, false)?;

    let origin = c.node("origin")?;
    let (file, hash) = c.random_file("content.bin", size)?;
    let manifest = c.create(&origin, &file, &[])?;
    let (_, info, _) = c.run(
        {
            let mut cmd = c.peas(&origin);
            cmd.arg("info").arg(&manifest);
            cmd
        },
        Duration::from_secs(30),
    )?;
    println!(
        "\n$ peas create content.bin -o origin.peas\n{}",
        info.trim_end()
    );
    let origin_id = c.node_id(&origin)?;
    let mut seed = c.seed(&origin, &[&manifest], &["--max-upload-rate", &rate])?;

    let mut procs: Vec<Proc> = Vec::new();
    let mut names = Vec::new();
    let mut ids = vec![(origin_id.clone(), "origin".to_string())];
    for i in 1..=nodes {
        let n = c.node(&format!("node{i}"))?;
        ids.push((c.node_id(&n)?, n.name.clone()));
        let out = c.dir().join(format!("node{i}.bin"));
        procs.push(c.install(
            &n,
            &manifest,
            &out,
            &["--max-upload-rate", &rate, "--seed-after", "10m"],
        )?);
        names.push((n.name.clone(), out));
    }
    println!();
    let started = Instant::now();
    let limit = Duration::from_secs(60 + 20 * size / (rate_mib * MIB));
    let mut drawn = 0;
    loop {
        check_alive(&mut seed)?;
        for p in procs.iter_mut() {
            check_alive(p)?;
        }
        // Live progress: one bar per node.
        if drawn > 0 {
            print!("\x1b[{drawn}A");
        }
        drawn = 0;
        let mut all_done = true;
        for (p, (name, _)) in procs.iter().zip(&names) {
            let done = event(p, "complete");
            let last = last_event(p, "progress");
            let got = done
                .as_ref()
                .map(|_| size)
                .or_else(|| last.as_ref().and_then(|e| e["verified_bytes"].as_u64()))
                .unwrap_or(0);
            let peers = last.as_ref().and_then(|e| e["peers"].as_u64()).unwrap_or(0);
            let rate = last
                .as_ref()
                .and_then(|e| e["rate_bps"].as_f64())
                .unwrap_or(0.0);
            let width = 40;
            let filled = (got as f64 / size as f64 * width as f64) as usize;
            let status = match &done {
                Some(e) => format!("done in {:.1} s", e["elapsed_s"].as_f64().unwrap_or(0.0)),
                None => {
                    all_done = false;
                    format!("{:5.1} MiB/s, {peers} peers", rate / MIB as f64)
                }
            };
            println!(
                "{name:>6} [{}{}] {:>4}/{size_mib} MiB  {status:<28}",
                "#".repeat(filled.min(width)),
                "-".repeat(width - filled.min(width)),
                got / MIB
            );
            drawn += 1;
        }
        std::io::stdout().flush().ok();
        if all_done {
            break;
        }
        if started.elapsed() > limit {
            return Err(format!("demo: not done after {} s", limit.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(250));
    }

    // Times count from the first node's start, so a node started late does not look faster.
    let first_start = procs.iter().map(Proc::started).min().unwrap_or(started);
    // Collect each node's summary (SIGTERM ends its seeding), then the origin's.
    let mut rows = Vec::new();
    for (p, (name, out)) in procs.iter_mut().zip(&names) {
        let offset = (p.started() - first_start).as_secs_f64();
        let elapsed = event(p, "complete")
            .and_then(|e| e["elapsed_s"].as_f64())
            .map(|e| e + offset)
            .unwrap_or(0.0);
        let code = p.terminate(Duration::from_secs(20))?;
        let summary = p.last_json().ok_or(format!(
            "{name}: no summary (exit {code}): {}",
            tail(&p.stderr(), 2)
        ))?;
        let ok = file_hash(out).as_deref() == Some(hash.as_str());
        rows.push((name.clone(), elapsed, ok, summary));
    }
    seed.terminate(Duration::from_secs(20))?;
    let origin_up = seed
        .last_json()
        .and_then(|v| v["uploaded_bytes"].as_u64())
        .unwrap_or(0);

    let bound = size as f64 / (rate_mib * MIB) as f64;
    let last = rows.iter().map(|r| r.1).fold(0.0, f64::max);
    let name_of = |id: &str| {
        ids.iter()
            .find(|(i, _)| i == id)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| id.chars().take(8).collect())
    };
    println!("\nsummary ({size_mib} MiB, u = {rate_mib} MiB/s per node, F/u = {bound:.1} s)");
    println!(
        "{:<7} {:>8} {:>7} {:>10}  received from (MiB)",
        "node", "time s", "x F/u", "uploaded"
    );
    for (name, elapsed, ok, s) in &rows {
        let (_, from) = from_peers(s);
        let from: Vec<String> = from
            .iter()
            .filter(|(_, b)| *b > 0)
            .map(|(id, b)| format!("{} {}", name_of(id), b / MIB))
            .collect();
        println!(
            "{name:<7} {elapsed:>8.1} {:>7.2} {:>6} MiB  {}{}",
            elapsed / bound,
            s["uploaded_bytes"].as_u64().unwrap_or(0) / MIB,
            from.join(", "),
            if *ok { "" } else { "  HASH MISMATCH" }
        );
    }
    println!(
        "all done in {last:.1} s = {:.2} x F/u; origin egress {} MiB = {:.2} x the file",
        last / bound,
        origin_up / MIB,
        origin_up as f64 / size as f64
    );
    if rows.iter().all(|r| r.2) {
        println!(
            "every node holds a bit-identical copy (BLAKE3 {})",
            &hash[..16]
        );
        Ok(())
    } else {
        Err("demo: some node's file does not match".into())
    }
}
