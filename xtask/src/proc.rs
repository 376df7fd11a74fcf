//! Child processes and temp dirs that are cleaned up on every exit path: normal return, error,
//! panic unwinding (via `Drop`), and SIGINT/SIGTERM (via the interrupt handler).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Pids of live children and temp dirs to remove, for the interrupt handler.
static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    pids: Vec::new(),
    dirs: Vec::new(),
    netns: Vec::new(),
});

struct Registry {
    pids: Vec<u32>,
    dirs: Vec<PathBuf>,
    /// Network namespaces made by `e2e --netns`, in the order made.
    netns: Vec<String>,
}

/// On SIGINT/SIGTERM: kill every registered child, remove every registered dir, exit 130.
pub fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        eprintln!("\nxtask: interrupted, cleaning up");
        cleanup_all();
        std::process::exit(130);
    });
}

/// Kills all registered children, removes all registered temp dirs and deletes all registered
/// network namespaces (newest first).
pub fn cleanup_all() {
    let (pids, dirs, netns) = {
        let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        (
            std::mem::take(&mut reg.pids),
            std::mem::take(&mut reg.dirs),
            std::mem::take(&mut reg.netns),
        )
    };
    for pid in pids {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
    for ns in netns.iter().rev() {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
    }
}

/// Remembers a network namespace for [`cleanup_all`].
pub fn register_netns(ns: &str) {
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.netns.push(ns.to_string());
}

/// Forgets a network namespace that was deleted.
pub fn unregister_netns(ns: &str) {
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.netns.retain(|n| n != ns);
}

/// A `cargo` command (honours `$CARGO`, set when run through `cargo xtask`).
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// Runs `cmd` to completion, inheriting stdio; a non-zero exit is an error naming `what`.
pub fn run_status(mut cmd: Command, what: &str) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Builds the release `peas` binary and returns its path.
pub fn build_peas() -> Result<PathBuf, String> {
    build_release_bin("peas-cli", "peas")
}

/// Builds binary `bin` of `package` in release mode and returns its path.
pub fn build_release_bin(package: &str, bin: &str) -> Result<PathBuf, String> {
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--quiet", "-p", package, "--bin", bin]);
    run_status(
        cmd,
        &format!("cargo build --release -p {package} --bin {bin}"),
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("release").join(bin);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("built binary not found at {}", path.display()))
    }
}

/// A temp dir removed on drop (and by the interrupt handler).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh dir under the system temp dir, named after `label`.
    pub fn new(label: &str) -> Result<TempDir, String> {
        let nonce: u64 = rand::random();
        let path = std::env::temp_dir().join(format!("peas-{label}-{nonce:016x}"));
        std::fs::create_dir_all(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dirs
            .push(path.clone());
        Ok(TempDir { path })
    }

    /// The dir's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        reg.dirs.retain(|d| d != &self.path);
    }
}

/// A running child process, killed on drop; stdout and stderr go to files in its node dir.
pub struct Proc {
    /// A short name for messages, e.g. `node3`.
    pub name: String,
    child: Option<Child>,
    started: Instant,
    /// Where the child's stdout goes.
    pub stdout_path: PathBuf,
    /// Where the child's stderr goes.
    pub stderr_path: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout/stderr redirected to `<log_dir>/<name>.{out,err}`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Result<Proc, String> {
        let stdout_path = log_dir.join(format!("{name}.out"));
        let stderr_path = log_dir.join(format!("{name}.err"));
        let out = std::fs::File::create(&stdout_path).map_err(|e| e.to_string())?;
        let err = std::fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("{name}: cannot start: {e}"))?;
        REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pids
            .push(child.id());
        Ok(Proc {
            name: name.to_string(),
            child: Some(child),
            started: Instant::now(),
            stdout_path,
            stderr_path,
        })
    }

    /// The child's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// When the process was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Sends a signal (e.g. SIGTERM for a clean shutdown, SIGKILL for a crash).
    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid as i32), sig);
        }
    }

    /// The exit code if the process has exited (`Some(-signal)` when killed by a signal).
    pub fn try_exit(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(exit_code(status)),
            _ => None,
        }
    }

    /// Waits up to `timeout` for the process to exit; kills it if it does not.
    /// Returns the exit code, or an error if it had to be killed.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<i32, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.try_exit() {
                self.forget_pid();
                return Ok(code);
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "{} did not exit within {:.0} s (killed)",
                    self.name,
                    timeout.as_secs_f64()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then wait up to `grace` for a clean exit (SIGKILL after that).
    pub fn terminate(&mut self, grace: Duration) -> Result<i32, String> {
        self.signal(Signal::SIGTERM);
        self.wait_timeout(grace)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.forget_pid();
    }

    fn forget_pid(&mut self) {
        if let Some(child) = self.child.take() {
            let pid = child.id();
            REGISTRY
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pids
                .retain(|p| *p != pid);
        }
    }

    /// Everything the child wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The last stdout line parsed as JSON, if any.
    pub fn last_json(&self) -> Option<serde_json::Value> {
        last_json_line(&self.stdout())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last non-empty line of `text` parsed as a JSON value.
pub fn last_json_line(text: &str) -> Option<serde_json::Value> {
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    serde_json::from_str(line.trim()).ok()
}

/// A process exit status as one number: the code, or minus the signal number.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| -status.signal().unwrap_or(0))
}
