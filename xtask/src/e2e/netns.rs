//! `cargo xtask e2e --netns`: every node in its own network namespace, all on one bridge, with
//! `tc` token-bucket shaping of each node's egress in place of `peas --max-upload-rate`.
//!
//! Layout per cluster: a hub namespace holding the bridge `br0`; node `k` gets a namespace with
//! the veth `pv<k>` (address `10.99.<c>.<k>/24`, `c` one subnet per cluster) whose peer `hv<k>`
//! is a bridge port in the hub. Nothing is changed in the namespace `xtask` runs in. Needs root
//! and iproute2 (`ip`, `tc`). The namespaces are deleted when the cluster is dropped, and by the
//! interrupt handler.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::proc;

/// Clusters made so far (each gets its own subnet and names).
static CLUSTERS: AtomicU32 = AtomicU32::new(0);

/// The network of one cluster: a hub namespace with a bridge, plus one namespace per node.
pub struct Net {
    /// Name prefix of this cluster's namespaces (`peas<pid>c<n>`).
    prefix: String,
    /// The cluster's subnet number (third octet).
    subnet: u32,
    /// Namespaces made so far (the hub first).
    made: Vec<String>,
}

/// A node's place in the network.
#[derive(Clone, Debug)]
pub struct NodeNet {
    /// The node's namespace.
    pub ns: String,
    /// The node's address.
    pub ip: String,
    /// The node's veth (inside its namespace).
    pub dev: String,
}

/// Fails with a clear message unless this process can make namespaces and shape traffic.
pub fn check_available() -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("e2e: --netns needs root (it creates network namespaces and veths)".into());
    }
    for tool in ["ip", "tc"] {
        let ok = Command::new(tool)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Err(format!("e2e: --netns needs iproute2 (`{tool}` not found)"));
        }
    }
    Ok(())
}

/// A command running `program` inside namespace `ns`.
pub fn exec_in(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// Runs `ip`/`tc` with `args` (optionally inside namespace `ns`); a failure is an error that
/// names the command.
fn sh(ns: Option<&str>, tool: &str, args: &[&str]) -> Result<(), String> {
    let mut cmd = match ns {
        Some(ns) => exec_in(ns, tool),
        None => Command::new(tool),
    };
    cmd.args(args);
    let out = cmd
        .output()
        .map_err(|e| format!("{tool} {}: cannot start: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{tool} {}{}: {}",
            args.join(" "),
            ns.map(|n| format!(" (in {n})")).unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    /// A hub namespace with a bridge, for a new cluster.
    pub fn new() -> Result<Net, String> {
        let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let mut net = Net {
            prefix: format!("peas{}c{n}", std::process::id()),
            subnet: n % 250 + 1,
            made: Vec::new(),
        };
        let hub = net.hub();
        net.add_ns(&hub)?;
        sh(Some(&hub), "ip", &["link", "add", "br0", "type", "bridge"])?;
        sh(Some(&hub), "ip", &["link", "set", "br0", "up"])?;
        Ok(net)
    }

    fn hub(&self) -> String {
        format!("{}hub", self.prefix)
    }

    fn add_ns(&mut self, ns: &str) -> Result<(), String> {
        sh(None, "ip", &["netns", "add", ns])?;
        proc::register_netns(ns);
        self.made.push(ns.to_string());
        sh(Some(ns), "ip", &["link", "set", "lo", "up"])
    }

    /// Node `k` (1..=250): its namespace, on the bridge, with its address.
    pub fn node(&mut self, k: u32) -> Result<NodeNet, String> {
        if !(1..=250).contains(&k) {
            return Err(format!(
                "e2e --netns: at most 250 nodes per cluster (asked for {k})"
            ));
        }
        let ns = format!("{}n{k}", self.prefix);
        self.add_ns(&ns)?;
        let hub = self.hub();
        let (dev, port) = (format!("pv{k}"), format!("hv{k}"));
        sh(
            None,
            "ip",
            &[
                "link", "add", &dev, "netns", &ns, "type", "veth", "peer", "name", &port, "netns",
                &hub,
            ],
        )?;
        sh(
            Some(&hub),
            "ip",
            &["link", "set", &port, "master", "br0", "up"],
        )?;
        let ip = format!("10.99.{}.{k}", self.subnet);
        sh(
            Some(&ns),
            "ip",
            &["addr", "add", &format!("{ip}/24"), "dev", &dev],
        )?;
        sh(Some(&ns), "ip", &["link", "set", &dev, "up"])?;
        Ok(NodeNet { ns, ip, dev })
    }

    /// Caps what `node` sends at `bytes_per_s` with a token bucket on its veth (its upload).
    pub fn shape(&self, node: &NodeNet, bytes_per_s: u64) -> Result<(), String> {
        let rate = format!("{bytes_per_s}bps");
        // A bucket of 20 ms of traffic, at least a few full-size (GSO) packets.
        let burst = (bytes_per_s / 50).max(256 * 1024).to_string();
        sh(
            Some(&node.ns),
            "tc",
            &[
                "qdisc", "replace", "dev", &node.dev, "root", "tbf", "rate", &rate, "burst",
                &burst, "latency", "100ms",
            ],
        )
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Node namespaces first (their veths go with them), the hub last.
        for ns in self.made.iter().rev() {
            let _ = sh(None, "ip", &["netns", "del", ns]);
            proc::unregister_netns(ns);
        }
    }
}

/// `4MiB`, `400KiB`, `8388608` as bytes per second.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("bad rate `{s}`"))?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return Err(format!("bad rate `{s}`")),
    };
    Ok(n * mult)
}
