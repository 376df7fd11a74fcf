//! A local cluster of `peas` processes: one home and one port per node, all on 127.0.0.1, or
//! (`--netns`) each node in its own network namespace on a bridge (see [`super::netns`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::netns::{Net, NodeNet, exec_in, parse_rate};
use crate::proc::{Proc, TempDir};

/// 1 MiB.
pub const MIB: u64 = 1 << 20;

/// The binaries a scenario runs, and where it keeps its files.
pub struct Cluster {
    /// The release `peas` binary.
    pub peas: PathBuf,
    /// The plain iroh-blobs provider used by `interop` and `corrupt-peer`, if built.
    pub provider: Option<PathBuf>,
    dir: TempDir,
    next: usize,
    /// The namespaces and bridge of `--netns` mode (`None`: loopback).
    net: Option<Net>,
}

/// One node: its home, its listen address and its node id (once known).
#[derive(Clone)]
pub struct Node {
    /// A short name, e.g. `origin`, `node3`.
    pub name: String,
    /// The node's `--home`.
    pub home: PathBuf,
    /// `127.0.0.1:PORT` (`--netns`: the node's own address).
    pub addr: String,
    /// Its namespace (`--netns` mode only).
    pub net: Option<NodeNet>,
}

impl Cluster {
    /// A cluster with its own temp dir; with `netns`, its nodes get network namespaces.
    pub fn new(
        label: &str,
        peas: PathBuf,
        provider: Option<PathBuf>,
        netns: bool,
    ) -> Result<Cluster, String> {
        Ok(Cluster {
            peas,
            provider,
            dir: TempDir::new(label)?,
            next: 0,
            net: if netns { Some(Net::new()?) } else { None },
        })
    }

    /// The cluster's scratch dir (files, manifests, logs, homes).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new node with a fresh home and a free port.
    pub fn node(&mut self, name: &str) -> Result<Node, String> {
        self.next += 1;
        let home = self.dir().join(format!("home-{name}"));
        std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
        let (addr, net) = match &mut self.net {
            Some(net) => {
                let n = net.node(self.next as u32)?;
                (format!("{}:7000", n.ip), Some(n))
            }
            None => (format!("127.0.0.1:{}", free_udp_port()?), None),
        };
        Ok(Node {
            name: name.to_string(),
            home,
            addr,
            net,
        })
    }

    /// `program` run as `node` (inside its namespace in `--netns` mode).
    fn command(node: &Node, program: &Path) -> Command {
        match &node.net {
            Some(n) => exec_in(&n.ns, program),
            None => Command::new(program),
        }
    }

    /// A `peas --home <node home>` command.
    pub fn peas(&self, node: &Node) -> Command {
        let mut cmd = Self::command(node, &self.peas);
        cmd.arg("--home").arg(&node.home);
        cmd.env("RUST_LOG", "warn");
        cmd
    }

    /// `extra` for a long-running `peas` command of `node`: in `--netns` mode an upload cap
    /// (`--max-upload-rate R`) becomes a token bucket on the node's link instead.
    fn link_rates<'a>(&self, node: &Node, extra: &[&'a str]) -> Result<Vec<&'a str>, String> {
        let (Some(net), Some(n)) = (&self.net, &node.net) else {
            return Ok(extra.to_vec());
        };
        let mut out = Vec::with_capacity(extra.len());
        let mut it = extra.iter();
        while let Some(&a) = it.next() {
            if a == "--max-upload-rate" {
                let r = it.next().ok_or("--max-upload-rate without a value")?;
                net.shape(n, parse_rate(r)?)?;
            } else {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// Runs a short `peas` command to completion (bounded), returning (exit code, stdout, stderr).
    pub fn run(
        &self,
        mut cmd: Command,
        timeout: Duration,
    ) -> Result<(i32, String, String), String> {
        let log = self.dir().join("logs");
        std::fs::create_dir_all(&log).map_err(|e| e.to_string())?;
        let mut p = Proc::spawn(
            "cmd",
            {
                cmd.current_dir(self.dir());
                cmd
            },
            &log,
        )?;
        let code = p.wait_timeout(timeout)?;
        Ok((code, p.stdout(), p.stderr()))
    }

    /// Writes `size` random bytes to `name` in the cluster dir; returns the path and its BLAKE3 hex.
    pub fn random_file(&self, name: &str, size: u64) -> Result<(PathBuf, String), String> {
        let path = self.dir().join(name);
        let hash = write_random_file(&path, size)?;
        Ok((path, hash))
    }

    /// `peas create FILE -o <name>.peas --advertise <node addr> [--owner ID@ADDR]...`; returns the manifest path.
    pub fn create(
        &self,
        node: &Node,
        file: &Path,
        extra_owners: &[String],
    ) -> Result<PathBuf, String> {
        let out = self.dir().join(format!("{}.peas", node.name));
        let mut cmd = self.peas(node);
        cmd.arg("create").arg(file).arg("-o").arg(&out);
        cmd.arg("--advertise").arg(&node.addr);
        cmd.arg("--partition-size").arg("1MiB");
        for o in extra_owners {
            cmd.arg("--owner").arg(o);
        }
        let (code, _out, err) = self.run(cmd, Duration::from_secs(120))?;
        if code != 0 {
            return Err(format!(
                "{}: peas create exited {code}: {}",
                node.name,
                err.trim()
            ));
        }
        Ok(out)
    }

    /// The node id of a node (creates its home's key on first use), from `peas id`.
    pub fn node_id(&self, node: &Node) -> Result<String, String> {
        let mut cmd = self.peas(node);
        cmd.arg("id");
        let (code, out, err) = self.run(cmd, Duration::from_secs(30))?;
        if code != 0 {
            return Err(format!(
                "{}: peas id exited {code}: {}",
                node.name,
                err.trim()
            ));
        }
        Ok(out.trim().to_string())
    }

    /// Starts `peas seed [MANIFEST...] --listen ADDR --json` with the given extra flags.
    pub fn seed(&self, node: &Node, manifests: &[&Path], extra: &[&str]) -> Result<Proc, String> {
        let extra = self.link_rates(node, extra)?;
        let mut cmd = self.peas(node);
        cmd.arg("seed")
            .args(manifests)
            .arg("--listen")
            .arg(&node.addr)
            .arg("--json");
        cmd.args(extra);
        Proc::spawn(&node.name, cmd, self.dir())
    }

    /// Starts `peas install MANIFEST -o OUT --listen ADDR --json` with the given extra flags.
    pub fn install(
        &self,
        node: &Node,
        manifest: &Path,
        out: &Path,
        extra: &[&str],
    ) -> Result<Proc, String> {
        let extra = self.link_rates(node, extra)?;
        let mut cmd = self.peas(node);
        cmd.arg("install").arg(manifest).arg("-o").arg(out);
        cmd.arg("--listen").arg(&node.addr).arg("--json");
        cmd.args(extra);
        Proc::spawn(&node.name, cmd, self.dir())
    }

    /// Starts the plain iroh-blobs provider serving `file` as `node` (at its address).
    pub fn plain_provider(&self, node: &Node, file: &Path, corrupt: bool) -> Result<Proc, String> {
        let bin = self
            .provider
            .as_ref()
            .ok_or("the test provider binary was not built")?;
        let mut cmd = Self::command(node, bin);
        cmd.arg("provide")
            .arg("--file")
            .arg(file)
            .arg("--listen")
            .arg(&node.addr);
        if corrupt {
            cmd.arg("--corrupt");
        }
        Proc::spawn(&node.name, cmd, self.dir())
    }
}

/// A free UDP port on 127.0.0.1 (bound then released; good enough for tests on one machine).
pub fn free_udp_port() -> Result<u16, String> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(sock.local_addr().map_err(|e| e.to_string())?.port())
}

/// Writes `size` random bytes (from the kernel) to `path`; returns the BLAKE3 hex of the content.
pub fn write_random_file(path: &Path, size: u64) -> Result<String, String> {
    use std::io::Write;
    let mut rng = std::fs::File::open("/dev/urandom").map_err(|e| e.to_string())?;
    let mut out = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.read_exact(&mut buf[..n]).map_err(|e| e.to_string())?;
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        left -= n as u64;
    }
    out.sync_all().map_err(|e| e.to_string())?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// The BLAKE3 hex of a file, or None if it cannot be read.
pub fn file_hash(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Some(hasher.finalize().to_hex().to_string())
}

/// Polls `cond` every 100 ms until it returns `Some`, or fails after `timeout` with `what`.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "timed out after {:.0} s waiting for {what}",
                timeout.as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The NDJSON events a `peas ... --json` process printed so far.
pub fn events(p: &Proc) -> Vec<Value> {
    p.stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .collect()
}

/// The first event with `"event": kind`, if printed yet.
pub fn event(p: &Proc, kind: &str) -> Option<Value> {
    events(p).into_iter().find(|e| e["event"] == kind)
}

/// The last event with `"event": kind`, if printed yet.
pub fn last_event(p: &Proc, kind: &str) -> Option<Value> {
    events(p).into_iter().rev().find(|e| e["event"] == kind)
}

/// Fails with the process' stderr tail if it has exited with a non-zero code.
pub fn check_alive(p: &mut Proc) -> Result<(), String> {
    if let Some(code) = p.try_exit()
        && code != 0
    {
        return Err(format!(
            "{} exited {code}: {}",
            p.name,
            tail(&p.stderr(), 3)
        ));
    }
    Ok(())
}

/// The last `n` lines of `text`, joined with " | ".
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Sum of `bytes` in a summary's `from_peers`, and the bytes from one peer id.
pub fn from_peers(summary: &Value) -> (u64, Vec<(String, u64)>) {
    let list: Vec<(String, u64)> = summary["from_peers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["id"].as_str().unwrap_or("").to_string(),
                        p["bytes"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (list.iter().map(|(_, b)| b).sum(), list)
}

/// When the swarm finished, in seconds since the first of `procs` was started: each process'
/// start offset plus its `complete` event's `elapsed_s` (measured by the process itself), so a
/// node started late does not look faster than the swarm.
pub fn swarm_completion(procs: &[Proc], done: &[Value]) -> f64 {
    let Some(t0) = procs.iter().map(Proc::started).min() else {
        return 0.0;
    };
    procs
        .iter()
        .zip(done)
        .map(|(p, e)| {
            (p.started() - t0).as_secs_f64() + e["elapsed_s"].as_f64().unwrap_or(f64::NAN)
        })
        .fold(0.0, f64::max)
}
