//! The e2e scenarios. Rates are capped per node so that the figures measure peas, not the CPU of
//! this 2-core machine: 8 MiB/s of upload per node against ~300 MiB/s that one iroh-blobs transfer
//! reaches on loopback here.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use super::cluster::{
    Cluster, MIB, Node, check_alive, event, events, file_hash, from_peers, last_event,
    swarm_completion, tail, wait_for,
};
use super::{Figures, Scenario};
use crate::proc::Proc;

/// Every scenario, in the order `cargo xtask e2e` runs them.
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "fanout",
        about: "origin + 8 nodes, 128 MiB, every upload capped at u",
        run: fanout,
    },
    Scenario {
        name: "late-join",
        about: "staggered joiners pick up early nodes as sources",
        run: late_join,
    },
    Scenario {
        name: "origin-loss",
        about: "origin killed once every partition has a copy elsewhere",
        run: origin_loss,
    },
    Scenario {
        name: "slow-peer",
        about: "4 providers, one at 1/10 rate: at most 15% slower than 3 fast",
        run: slow_peer,
    },
    Scenario {
        name: "corrupt-peer",
        about: "a bit-flipping provider is banned; every file is right",
        run: corrupt_peer,
    },
    Scenario {
        name: "resume",
        about: "SIGKILL a downloader near 50%, restart: refetch ≤ 2 partitions",
        run: resume,
    },
    Scenario {
        name: "bad-input",
        about: "bad manifests, dead owners, unwritable output: clean errors",
        run: bad_input,
    },
    Scenario {
        name: "interop",
        about: "a plain iroh-blobs provider is a usable source",
        run: interop,
    },
    Scenario {
        name: "restart-seed",
        about: "a seeder restarted on the same home serves again",
        run: restart_seed,
    },
];

/// Per-node upload cap that emulates a link.
const RATE: &str = "8MiB";
/// The same, in bytes/s.
const RATE_BPS: f64 = 8.0 * MIB as f64;
/// Partition size used by the scenarios (small files, so a fine grain).
const PARTITION: u64 = MIB;
/// How long any one node may take to finish a download in a scenario.
const DOWNLOAD_LIMIT: Duration = Duration::from_secs(180);
/// Grace for a clean shutdown after SIGTERM.
const GRACE: Duration = Duration::from_secs(20);

/// Built binaries, shared by all scenarios.
pub struct Ctx {
    peas: PathBuf,
    testbed: PathBuf,
    /// Nodes in network namespaces (`--netns`).
    netns: bool,
}

impl Ctx {
    /// Builds the release `peas` binary and the test provider once.
    pub fn build(netns: bool) -> Result<Ctx, String> {
        let peas = crate::proc::build_peas()?;
        let testbed = crate::proc::build_release_bin("peas-tests", "peas-testbed")?;
        Ok(Ctx {
            peas,
            testbed,
            netns,
        })
    }

    fn cluster(&self, label: &str) -> Result<Cluster, String> {
        Cluster::new(
            label,
            self.peas.clone(),
            Some(self.testbed.clone()),
            self.netns,
        )
    }
}

/// An origin serving a fresh random file at capped upload; the manifest names only the origin.
struct Origin {
    node: Node,
    id: String,
    file: PathBuf,
    hash: String,
    manifest: PathBuf,
    seed: Proc,
}

fn start_origin(c: &mut Cluster, size: u64, extra_owners: &[String]) -> Result<Origin, String> {
    let node = c.node("origin")?;
    let (file, hash) = c.random_file("content.bin", size)?;
    let manifest = c.create(&node, &file, extra_owners)?;
    let id = c.node_id(&node)?;
    let seed = c.seed(&node, &[&manifest], &["--max-upload-rate", RATE])?;
    wait_ready(&seed)?;
    Ok(Origin {
        node,
        id,
        file,
        hash,
        manifest,
        seed,
    })
}

fn wait_ready(p: &Proc) -> Result<(), String> {
    let mut p_name = p.name.clone();
    p_name.push_str(" ready");
    wait_for(Duration::from_secs(30), &p_name, || {
        if event(p, "serving").is_some() {
            return Ok(Some(()));
        }
        if !p.stderr().is_empty() && p.stderr().contains("error:") {
            return Err(format!("{}: {}", p.name, tail(&p.stderr(), 2)));
        }
        Ok(None)
    })
}

/// Waits until every install printed its `complete` event; returns those events.
fn wait_complete(procs: &mut [Proc], limit: Duration) -> Result<Vec<Value>, String> {
    let deadline = Instant::now() + limit;
    loop {
        for p in procs.iter_mut() {
            check_alive(p)?;
        }
        let done: Vec<Option<Value>> = procs.iter().map(|p| event(p, "complete")).collect();
        if done.iter().all(Option::is_some) {
            return Ok(done.into_iter().flatten().collect());
        }
        if Instant::now() >= deadline {
            let missing: Vec<String> = procs
                .iter()
                .zip(&done)
                .filter(|(_, d)| d.is_none())
                .map(|(p, _)| {
                    let v = last_event(p, "progress")
                        .and_then(|e| e["verified_bytes"].as_u64())
                        .unwrap_or(0);
                    format!("{} at {} MiB", p.name, v / MIB)
                })
                .collect();
            return Err(format!(
                "not complete after {} s: {}",
                limit.as_secs(),
                missing.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM a process, expect exit 0, return its final summary line (the last JSON line).
fn stop(p: &mut Proc) -> Result<Value, String> {
    let code = p.terminate(GRACE)?;
    if code != 0 {
        return Err(format!(
            "{} exited {code} after SIGTERM: {}",
            p.name,
            tail(&p.stderr(), 3)
        ));
    }
    p.last_json()
        .ok_or_else(|| format!("{}: no JSON summary on stdout", p.name))
}

fn check_file(out: &Path, hash: &str) -> Result<(), String> {
    match file_hash(out) {
        Some(h) if h == hash => Ok(()),
        Some(h) => Err(format!("{} has hash {h}, expected {hash}", out.display())),
        None => Err(format!("{} is missing", out.display())),
    }
}

fn round1(x: f64) -> Value {
    json!((x * 100.0).round() / 100.0)
}

fn secs(e: &Value) -> f64 {
    e["elapsed_s"].as_f64().unwrap_or(f64::NAN)
}

/// Starts `count` installers (`node0`..) of `manifest`, each with its upload capped at [`RATE`]
/// and seeding on after completion; returns them with their output paths.
fn start_installers(
    c: &mut Cluster,
    manifest: &Path,
    count: usize,
) -> Result<(Vec<Proc>, Vec<PathBuf>), String> {
    let mut procs = Vec::new();
    let mut outs = Vec::new();
    for i in 0..count {
        let n = c.node(&format!("node{i}"))?;
        let out = c.dir().join(format!("out{i}.bin"));
        let extra = ["--max-upload-rate", RATE, "--seed-after", "10m"];
        procs.push(c.install(&n, manifest, &out, &extra)?);
        outs.push(out);
    }
    Ok((procs, outs))
}

fn owner_arg(id: &str, addr: &str) -> String {
    format!("{id}@{addr}")
}

/// 1. origin + 8 nodes, 128 MiB, every node's upload capped at u.
fn fanout(ctx: &mut Ctx) -> Result<Figures, String> {
    let size = 128 * MIB;
    let mut c = ctx.cluster("fanout")?;
    let mut origin = start_origin(&mut c, size, &[])?;
    let (mut procs, outs) = start_installers(&mut c, &origin.manifest, 8)?;
    let done = wait_complete(&mut procs, DOWNLOAD_LIMIT)?;
    let completion = swarm_completion(&procs, &done);
    let mean = done.iter().map(secs).sum::<f64>() / done.len() as f64;
    let (mut multi_source, mut received) = (0, 0u64);
    for (p, out) in procs.iter_mut().zip(&outs) {
        let summary = stop(p)?;
        check_file(out, &origin.hash)?;
        let (total, per_peer) = from_peers(&summary);
        received += total;
        if per_peer.iter().filter(|(_, b)| *b > 0).count() > 1 {
            multi_source += 1;
        }
    }
    let stopped = stop(&mut origin.seed)?;
    let egress = stopped["uploaded_bytes"].as_u64().unwrap_or(u64::MAX);
    let bound = size as f64 / RATE_BPS;
    let figures = vec![
        ("completion_s", round1(completion)),
        ("mean_s", round1(mean)),
        ("bound_s", round1(bound)),
        ("ratio", round1(completion / bound)),
        ("origin_egress_x", round1(egress as f64 / size as f64)),
        // Verified bytes taken in per node, in files (above 1: fetched twice, e.g. by endgame).
        (
            "received_x",
            round1(received as f64 / (procs.len() as u64 * size) as f64),
        ),
        ("multi_source_nodes", json!(multi_source)),
    ];
    if egress as f64 > 2.0 * size as f64 {
        return Err(format!(
            "origin egress {:.2}× the file (limit 2×)",
            egress as f64 / size as f64
        ));
    }
    if multi_source < 8 {
        return Err(format!(
            "only {multi_source} of 8 nodes received data from more than one peer"
        ));
    }
    Ok(figures)
}

/// 2. nodes join at staggered times; the early ones serve the newcomers.
fn late_join(ctx: &mut Ctx) -> Result<Figures, String> {
    let size = 64 * MIB;
    let mut c = ctx.cluster("late-join")?;
    let mut origin = start_origin(&mut c, size, &[])?;
    let mut procs = Vec::new();
    let mut outs = Vec::new();
    let mut ids = Vec::new();
    let t0 = Instant::now();
    for (i, at) in [0u64, 0, 3, 3, 6, 6].into_iter().enumerate() {
        let n = c.node(&format!("node{i}"))?;
        ids.push(c.node_id(&n)?);
        std::thread::sleep(Duration::from_secs(at).saturating_sub(t0.elapsed()));
        let out = c.dir().join(format!("out{i}.bin"));
        procs.push(c.install(
            &n,
            &origin.manifest,
            &out,
            &["--max-upload-rate", RATE, "--seed-after", "10m"],
        )?);
        outs.push(out);
    }
    let origin_id = origin.id.clone();
    wait_complete(&mut procs, DOWNLOAD_LIMIT)?;
    let mut late_from_early = 0u64;
    for (i, p) in procs.iter_mut().enumerate() {
        let summary = stop(p)?;
        check_file(&outs[i], &origin.hash)?;
        if i >= 4 {
            late_from_early += from_peers(&summary)
                .1
                .iter()
                .filter(|(id, _)| *id != origin_id && ids[..2].contains(id))
                .map(|(_, b)| b)
                .sum::<u64>();
        }
    }
    stop(&mut origin.seed)?;
    if late_from_early == 0 {
        return Err("the late joiners received nothing from the early nodes".into());
    }
    Ok(vec![(
        "late_from_early_mib",
        round1(late_from_early as f64 / MIB as f64),
    )])
}

/// Partitions (by index) that a progress event says the node has.
fn have_set(e: &Value) -> Vec<u64> {
    let mut v = Vec::new();
    if let Some(ranges) = e["have"].as_array() {
        for r in ranges {
            if let (Some(a), Some(b)) = (r[0].as_u64(), r[1].as_u64()) {
                v.extend(a..b);
            }
        }
    }
    v
}

/// 3. the origin is killed as soon as every partition has a copy elsewhere.
fn origin_loss(ctx: &mut Ctx) -> Result<Figures, String> {
    let size = 64 * MIB;
    let partitions = size.div_ceil(PARTITION);
    let mut c = ctx.cluster("origin-loss")?;
    let mut origin = start_origin(&mut c, size, &[])?;
    let (mut procs, outs) = start_installers(&mut c, &origin.manifest, 4)?;
    let t0 = Instant::now();
    wait_for(
        DOWNLOAD_LIMIT,
        "every partition to have a copy outside the origin",
        || {
            for p in procs.iter_mut() {
                check_alive(p)?;
            }
            let mut covered = vec![false; partitions as usize];
            for p in &procs {
                for e in events(p)
                    .iter()
                    .filter(|e| e["event"] == "progress" || e["event"] == "complete")
                {
                    for i in have_set(e) {
                        if let Some(slot) = covered.get_mut(i as usize) {
                            *slot = true;
                        }
                    }
                }
            }
            Ok(covered.iter().all(|c| *c).then_some(()))
        },
    )?;
    let killed_at = t0.elapsed().as_secs_f64();
    origin.seed.signal(Signal::SIGKILL);
    origin.seed.kill();
    wait_complete(&mut procs, DOWNLOAD_LIMIT)?;
    for (p, out) in procs.iter_mut().zip(&outs) {
        stop(p)?;
        check_file(out, &origin.hash)?;
    }
    Ok(vec![("origin_killed_at_s", round1(killed_at))])
}

/// 4. four providers, one at 1/10 of the others' rate: ≤ 15 % slower than the three fast ones alone.
fn slow_peer(ctx: &mut Ctx) -> Result<Figures, String> {
    let size = 96 * MIB;
    let rate = "4MiB";
    let slow_rate = "400KiB";
    let mut c = ctx.cluster("slow-peer")?;
    let (file, hash) = c.random_file("content.bin", size)?;
    // Homes, ids and manifests first: a running seed holds its home's lock.
    let mut nodes = Vec::new();
    let mut owners = Vec::new();
    let mut own_manifests = Vec::new();
    for i in 0..4 {
        let n = c.node(&format!("provider{i}"))?;
        let own = c.create(&n, &file, &[])?;
        own_manifests.push(rename(&own, &format!("own{i}.peas"))?);
        owners.push(owner_arg(&c.node_id(&n)?, &n.addr));
        nodes.push(n);
    }
    // Two manifests of the same content, created on provider 0: fast owners only, and all four.
    let fast = c.create(&nodes[0], &file, &owners[1..3])?;
    let fast = rename(&fast, "fast.peas")?;
    let all = c.create(&nodes[0], &file, &owners[1..4])?;
    let all = rename(&all, "all.peas")?;
    let mut providers = Vec::new();
    for (i, (n, m)) in nodes.iter().zip(&own_manifests).enumerate() {
        let r = if i == 3 { slow_rate } else { rate };
        providers.push(c.seed(n, &[m], &["--max-upload-rate", r])?);
    }
    for p in &providers {
        wait_ready(p)?;
    }
    let mut time = |label: &str, manifest: &Path| -> Result<f64, String> {
        let n = c.node(label)?;
        let out = c.dir().join(format!("{label}.bin"));
        let mut p = c.install(&n, manifest, &out, &["--seed-after", "0", "--no-upload"])?;
        let code = p.wait_timeout(DOWNLOAD_LIMIT)?;
        if code != 0 {
            return Err(format!(
                "{label}: install exited {code}: {}",
                tail(&p.stderr(), 3)
            ));
        }
        check_file(&out, &hash)?;
        let e = event(&p, "complete").ok_or(format!("{label}: no complete event"))?;
        Ok(secs(&e))
    };
    let t_fast = time("three-fast", &fast)?;
    let t_all = time("with-slow", &all)?;
    for p in providers.iter_mut() {
        stop(p)?;
    }
    let ratio = t_all / t_fast;
    let figures = vec![
        ("fast_only_s", round1(t_fast)),
        ("with_slow_s", round1(t_all)),
        ("ratio", round1(ratio)),
    ];
    if ratio > 1.15 {
        return Err(format!(
            "with the slow provider the download took {ratio:.2}× as long (limit 1.15×)"
        ));
    }
    Ok(figures)
}

fn rename(from: &Path, name: &str) -> Result<PathBuf, String> {
    let to = from.with_file_name(name);
    std::fs::rename(from, &to).map_err(|e| e.to_string())?;
    Ok(to)
}

/// Starts the test provider; returns it with its node id (its first stdout line is `{"id": ...}`).
fn start_provider(
    c: &mut Cluster,
    name: &str,
    file: &Path,
    corrupt: bool,
) -> Result<(Proc, String, String), String> {
    let node = c.node(name)?;
    let addr = node.addr.clone();
    let p = c.plain_provider(&node, file, corrupt)?;
    let id = wait_for(
        Duration::from_secs(30),
        "the test provider to start",
        || {
            Ok(events(&p)
                .into_iter()
                .find_map(|e| e["id"].as_str().map(str::to_string)))
        },
    )?;
    Ok((p, id, addr))
}

/// 5. one provider flips bits; it is banned; every file is still right.
fn corrupt_peer(ctx: &mut Ctx) -> Result<Figures, String> {
    let size = 64 * MIB;
    let mut c = ctx.cluster("corrupt-peer")?;
    let origin_node = c.node("origin")?;
    let (file, hash) = c.random_file("content.bin", size)?;
    let (_bad, bad_id, bad_addr) = start_provider(&mut c, "corrupt", &file, true)?;
    let manifest = c.create(&origin_node, &file, &[owner_arg(&bad_id, &bad_addr)])?;
    let mut seed = c.seed(&origin_node, &[&manifest], &["--max-upload-rate", RATE])?;
    wait_ready(&seed)?;
    let (mut procs, outs) = start_installers(&mut c, &manifest, 3)?;
    wait_complete(&mut procs, DOWNLOAD_LIMIT)?;
    let mut banned_by = 0;
    for (p, out) in procs.iter_mut().zip(&outs) {
        let summary = stop(p)?;
        check_file(out, &hash)?;
        let banned = summary["banned"].as_array().cloned().unwrap_or_default();
        if banned.iter().any(|b| b.as_str() == Some(bad_id.as_str())) {
            banned_by += 1;
        }
    }
    stop(&mut seed)?;
    if banned_by == 0 {
        return Err("no node reports the corrupt provider as banned".into());
    }
    Ok(vec![("banned_by_nodes", json!(banned_by))])
}

/// 6. SIGKILL a downloader near 50 %, restart it: it completes, refetching ≤ 2 partitions.
fn resume(ctx: &mut Ctx) -> Result<Figures, String> {
    let size = 64 * MIB;
    let mut c = ctx.cluster("resume")?;
    let mut origin = start_origin(&mut c, size, &[])?;
    let n = c.node("downloader")?;
    let out = c.dir().join("out.bin");
    let mut p = c.install(
        &n,
        &origin.manifest,
        &out,
        &["--seed-after", "0", "--no-upload"],
    )?;
    let had = wait_for(DOWNLOAD_LIMIT, "the download to pass 50 %", || {
        check_alive(&mut p)?;
        Ok(last_event(&p, "progress")
            .and_then(|e| e["verified_bytes"].as_u64())
            .filter(|v| *v >= size / 2))
    })?;
    p.signal(Signal::SIGKILL);
    p.kill();
    if out.exists() {
        return Err("a killed download left a file under the final name".into());
    }
    let mut p2 = c.install(
        &n,
        &origin.manifest,
        &out,
        &["--seed-after", "0", "--no-upload"],
    )?;
    let code = p2.wait_timeout(DOWNLOAD_LIMIT)?;
    if code != 0 {
        return Err(format!(
            "restarted install exited {code}: {}",
            tail(&p2.stderr(), 3)
        ));
    }
    check_file(&out, &origin.hash)?;
    let summary = p2
        .last_json()
        .ok_or("no summary from the restarted install")?;
    let (fetched, _) = from_peers(&summary);
    stop(&mut origin.seed)?;
    let needed = size - had;
    let refetched = fetched.saturating_sub(needed);
    let figures = vec![
        ("had_mib", round1(had as f64 / MIB as f64)),
        ("fetched_mib", round1(fetched as f64 / MIB as f64)),
        (
            "refetched_partitions",
            round1(refetched as f64 / PARTITION as f64),
        ),
    ];
    if refetched > 2 * PARTITION {
        return Err(format!(
            "fetched {} MiB after the restart, {} MiB more than was missing (limit: 2 partitions)",
            fetched / MIB,
            refetched / MIB
        ));
    }
    Ok(figures)
}

/// Checks a command failed the way a user wants: non-zero, not a panic, one `error:` line.
fn expect_clean_failure(what: &str, code: i32, stderr: &str) -> Result<(), String> {
    if code == 0 {
        return Err(format!("{what}: exited 0"));
    }
    if code == 101 || stderr.contains("panicked") {
        return Err(format!("{what}: panicked: {}", tail(stderr, 3)));
    }
    if code < 0 {
        return Err(format!("{what}: killed by signal {}", -code));
    }
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != 1 || !lines[0].starts_with("error:") {
        return Err(format!(
            "{what}: expected one `error:` line on stderr, got: {}",
            tail(stderr, 4)
        ));
    }
    Ok(())
}

/// 7. bad manifests, owners that do not answer, an unwritable output path.
fn bad_input(ctx: &mut Ctx) -> Result<Figures, String> {
    let mut c = ctx.cluster("bad-input")?;
    let node = c.node("origin")?;
    let (file, _hash) = c.random_file("content.bin", 4 * MIB)?;
    let manifest = c.create(&node, &file, &[])?;
    let good = std::fs::read(&manifest).map_err(|e| e.to_string())?;
    let dir = c.dir().to_path_buf();
    let write = |name: &str, bytes: &[u8]| -> Result<PathBuf, String> {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| e.to_string())?;
        Ok(p)
    };
    let mut cases: Vec<(String, PathBuf)> = Vec::new();
    cases.push((
        "truncated".into(),
        write("truncated.peas", &good[..good.len() / 2])?,
    ));
    cases.push(("empty".into(), write("empty.peas", &[])?));
    let garbage: Vec<u8> = (0..good.len()).map(|i| (i * 7919 % 251) as u8).collect();
    cases.push(("garbled".into(), write("garbled.peas", &garbage)?));
    let mut tampered = good.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x01;
    cases.push(("tampered".into(), write("tampered.peas", &tampered)?));
    // Manifests that only a forger writes: the test bed encodes them per docs/manifest.md.
    for (label, args) in [
        ("unsigned", vec!["--unsigned"]),
        ("dotdot-name", vec!["--name", "../../etc/passwd"]),
        ("absolute-name", vec!["--name", "/etc/passwd"]),
        ("unknown-version", vec!["--version", "99"]),
    ] {
        let out = dir.join(format!("{label}.peas"));
        let mut cmd = std::process::Command::new(&ctx.testbed);
        cmd.arg("forge")
            .arg("--file")
            .arg(&file)
            .arg("-o")
            .arg(&out)
            .args(&args);
        let (code, _, err) = c.run(cmd, Duration::from_secs(60))?;
        if code != 0 {
            return Err(format!("forging {label}: exit {code}: {}", err.trim()));
        }
        cases.push((label.into(), out));
    }
    let before = list_files(&dir);
    let mut checked = 0;
    for (label, path) in &cases {
        for sub in ["info", "install"] {
            let mut cmd = c.peas(&node);
            cmd.arg(sub).arg(path);
            if sub == "install" {
                cmd.arg("-o").arg(dir.join(format!("out-{label}.bin")));
                cmd.arg("--listen").arg("127.0.0.1:0");
            }
            let (code, _, err) = c.run(cmd, Duration::from_secs(30))?;
            expect_clean_failure(&format!("peas {sub} {label}"), code, &err)?;
            checked += 1;
        }
    }
    // Owners that do not answer: a valid manifest, nobody serving. Bounded wait, then an error.
    let t = Instant::now();
    let lonely = c.node("lonely")?;
    let mut cmd = c.peas(&lonely);
    cmd.arg("install")
        .arg(&manifest)
        .arg("-o")
        .arg(dir.join("out-lonely.bin"));
    cmd.args(["--listen", "127.0.0.1:0", "--seed-after", "0"]);
    let (code, _, err) = c.run(cmd, Duration::from_secs(120))?;
    expect_clean_failure("install with owners that do not answer", code, &err)?;
    let dead_owner_s = t.elapsed().as_secs_f64();
    checked += 1;
    // An output path that cannot be written: its parent is a regular file.
    let mut seed = c.seed(&node, &[&manifest], &[])?;
    wait_ready(&seed)?;
    let unwritable = c.node("unwritable")?;
    let mut cmd = c.peas(&unwritable);
    cmd.arg("install")
        .arg(&manifest)
        .arg("-o")
        .arg(file.join("out.bin"));
    cmd.args(["--listen", "127.0.0.1:0", "--seed-after", "0"]);
    let (code, _, err) = c.run(cmd, Duration::from_secs(60))?;
    expect_clean_failure("install to an unwritable path", code, &err)?;
    checked += 1;
    stop(&mut seed)?;
    // Nothing was written next to the inputs: no output files, no temp files.
    let after = list_files(&dir);
    let new: Vec<&String> = after
        .iter()
        .filter(|f| {
            !before.contains(f)
                && !f.starts_with("home-")
                && !f.ends_with(".out")
                && !f.ends_with(".err")
        })
        .collect();
    if !new.is_empty() {
        return Err(format!("files appeared after failed commands: {new:?}"));
    }
    Ok(vec![
        ("cases", json!(checked)),
        ("dead_owner_wait_s", round1(dead_owner_s)),
    ])
}

fn list_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.retain(|f| f != "logs");
    v.sort();
    v
}

/// 8. a plain iroh-blobs provider (no swarm protocol) is a usable source.
fn interop(ctx: &mut Ctx) -> Result<Figures, String> {
    let size = 32 * MIB;
    let mut c = ctx.cluster("interop")?;
    let creator = c.node("creator")?;
    let (file, hash) = c.random_file("content.bin", size)?;
    let (mut plain, plain_id, plain_addr) = start_provider(&mut c, "plain", &file, false)?;
    // The creator's own address answers nothing: the plain provider is the only source.
    let manifest = c.create(&creator, &file, &[owner_arg(&plain_id, &plain_addr)])?;
    let n = c.node("downloader")?;
    let out = c.dir().join("out.bin");
    let mut p = c.install(&n, &manifest, &out, &["--seed-after", "0"])?;
    let code = p.wait_timeout(DOWNLOAD_LIMIT)?;
    if code != 0 {
        return Err(format!("install exited {code}: {}", tail(&p.stderr(), 3)));
    }
    check_file(&out, &hash)?;
    let summary = p.last_json().ok_or("no summary")?;
    let from_plain: u64 = from_peers(&summary)
        .1
        .iter()
        .filter(|(id, _)| *id == plain_id)
        .map(|(_, b)| b)
        .sum();
    plain.kill();
    if from_plain < size {
        return Err(format!(
            "received {from_plain} bytes from the plain provider, expected {size}"
        ));
    }
    Ok(vec![(
        "from_plain_mib",
        round1(from_plain as f64 / MIB as f64),
    )])
}

/// 9. a seeder restarted on the same home serves again without re-importing.
fn restart_seed(ctx: &mut Ctx) -> Result<Figures, String> {
    let size = 32 * MIB;
    let mut c = ctx.cluster("restart-seed")?;
    let mut origin = start_origin(&mut c, size, &[])?;
    let a = c.node("first")?;
    let out_a = c.dir().join("first.bin");
    let mut p = c.install(
        &a,
        &origin.manifest,
        &out_a,
        &["--seed-after", "0", "--no-upload"],
    )?;
    if p.wait_timeout(DOWNLOAD_LIMIT)? != 0 {
        return Err(format!("first install failed: {}", tail(&p.stderr(), 3)));
    }
    stop(&mut origin.seed)?;
    // Restart with no manifest argument: the home knows its content.
    let t = Instant::now();
    let mut seed = c.seed(&origin.node, &[], &["--max-upload-rate", RATE])?;
    wait_ready(&seed)?;
    let ready_s = t.elapsed().as_secs_f64();
    let serving = event(&seed, "serving").unwrap_or(Value::Null);
    if serving["complete"] != json!(true) {
        return Err(format!(
            "restarted seeder does not report complete content: {serving}"
        ));
    }
    let b = c.node("second")?;
    let out_b = c.dir().join("second.bin");
    let mut p = c.install(
        &b,
        &origin.manifest,
        &out_b,
        &["--seed-after", "0", "--no-upload"],
    )?;
    if p.wait_timeout(DOWNLOAD_LIMIT)? != 0 {
        return Err(format!("second install failed: {}", tail(&p.stderr(), 3)));
    }
    check_file(&out_b, &origin.hash)?;
    let summary = p.last_json().ok_or("no summary")?;
    stop(&mut seed)?;
    let _ = &origin.file;
    Ok(vec![
        ("restart_ready_s", round1(ready_s)),
        ("second_from_peers", json!(from_peers(&summary).1.len())),
    ])
}
