//! The testnet a benchmark drives: one it launches (fresh homes from
//! `phalanx testnet init`, one `phalanx node` process per validator), or one
//! already running that `testnet/local.sh up` made.

use crate::testnet::InitArgs;
use anyhow::Context as _;
use phalanx_crypto::{read_key_file, KeyKind, Keypair};
use phalanx_ledger::EngineKind;
use phalanx_node::api::types::NodeStatus;
use phalanx_node::client::Client;
use phalanx_node::home::Home;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Validators of a testnet and how to reach them.
#[derive(Debug)]
pub struct Cluster {
    /// The testnet directory (homes, accounts, logs).
    pub dir: PathBuf,
    /// Each validator's API, `http://host:port`.
    pub apis: Vec<String>,
    /// Each validator's process id, when known (for CPU and memory figures).
    pub pids: Vec<Option<u32>>,
    /// The chain id.
    pub chain_id: String,
    children: Vec<Child>,
    /// How each launched node was started (for restarts).
    commands: Vec<Vec<std::ffi::OsString>>,
    /// Twins started next to launched nodes (validator index, process).
    twins: Vec<(usize, Child)>,
}

impl Cluster {
    /// Writes a fresh `n`-validator testnet into `dir` with `accounts` funded
    /// accounts and starts every node (logs in `dir/logs/`).
    pub fn launch(
        n: u32,
        consensus: EngineKind,
        dir: &Path,
        base_port: u16,
        accounts: u32,
    ) -> anyhow::Result<Cluster> {
        Cluster::launch_with(n, consensus, dir, base_port, accounts, &[])
    }

    /// [`Cluster::launch`], with `extra` appended to every node's
    /// `phalanx node` command line.
    pub fn launch_with(
        n: u32,
        consensus: EngineKind,
        dir: &Path,
        base_port: u16,
        accounts: u32,
        extra: &[&str],
    ) -> anyhow::Result<Cluster> {
        for port in (0..n).flat_map(|i| [base_port + i as u16, base_port + 100 + i as u16]) {
            std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| {
                format!(
                    "port {port} is in use; pick other ports with --base-port (node i uses \
                     base+i and base+100+i)"
                )
            })?;
        }
        crate::testnet::write_quietly(&InitArgs {
            validators: n,
            consensus,
            // (`consensus` may be pbft+pow or pbft+pos itself.)
            fallback: phalanx_ledger::Fallback::None,
            output: dir.to_path_buf(),
            base_port,
            hosts: None,
            chain_id: "phalanx-bench".into(),
            accounts,
            balance: 1_000_000_000_000,
        })?;
        std::fs::create_dir_all(dir.join("logs"))?;
        let mut children = Vec::new();
        let mut pids = Vec::new();
        let mut commands = Vec::new();
        for i in 0..n {
            let mut command: Vec<std::ffi::OsString> = vec![
                "node".into(),
                "--home".into(),
                dir.join(format!("node{i}")).into(),
            ];
            command.extend(extra.iter().map(Into::into));
            let child = spawn_node(dir, i as usize, &command)?;
            pids.push(Some(child.id()));
            children.push(child);
            commands.push(command);
        }
        let apis = (0..n)
            .map(|i| format!("http://127.0.0.1:{}", base_port + 100 + i as u16))
            .collect();
        Ok(Cluster {
            dir: dir.to_path_buf(),
            apis,
            pids,
            chain_id: "phalanx-bench".into(),
            children,
            commands,
            twins: Vec::new(),
        })
    }

    /// The running testnet in `dir` (as `testnet/local.sh up` lays it out:
    /// `dir/node<i>/config/config.toml`, `dir/accounts/`, `dir/pids/`).
    pub fn attach(dir: &Path) -> anyhow::Result<Cluster> {
        let mut apis = Vec::new();
        let mut pids = Vec::new();
        for i in 0.. {
            let home = Home::new(dir.join(format!("node{i}")));
            if !home.root().exists() {
                break;
            }
            let config = home.load_config()?;
            apis.push(format!("http://{}", config.api.listen));
            let pid = std::fs::read_to_string(dir.join(format!("pids/node{i}.pid")))
                .ok()
                .and_then(|s| s.trim().parse().ok());
            pids.push(pid);
        }
        anyhow::ensure!(
            !apis.is_empty(),
            "{} holds no node homes (node0/, node1/, ...): start a testnet with \
             `testnet/local.sh up`, or let the benchmark launch one with --validators N",
            dir.display()
        );
        let status: NodeStatus = Client::new(&apis[0])?.get("/status")?;
        Ok(Cluster {
            dir: dir.to_path_buf(),
            apis,
            pids,
            chain_id: status.chain_id,
            children: Vec::new(),
            commands: Vec::new(),
            twins: Vec::new(),
        })
    }

    /// Waits until every node answers and sees all its peers.
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let n = self.apis.len();
        loop {
            if let Some(i) = self.exited() {
                anyhow::bail!(
                    "node{i} exited while starting; see {}",
                    self.dir.join(format!("logs/node{i}.log")).display()
                );
            }
            let ready = self.apis.iter().all(|api| {
                Client::new(api)
                    .and_then(|c| c.get::<NodeStatus>("/status"))
                    .is_ok_and(|s| s.peers.len() + 1 >= n)
            });
            if ready {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the testnet in {} was not ready (every node up and connected) within {:?}",
                self.dir.display(),
                timeout
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILLs launched node `i` (a crash: no chance to flush anything).
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let child = self
            .children
            .get_mut(i)
            .with_context(|| format!("node{i} was not launched by this cluster"))?;
        let _ = child.kill();
        let _ = child.wait();
        self.pids[i] = None;
        Ok(())
    }

    /// Starts launched node `i` again, as it was first started (its log is
    /// appended to).
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let command = self
            .commands
            .get(i)
            .with_context(|| format!("node{i} was not launched by this cluster"))?;
        let child = spawn_node(&self.dir, i, command)?;
        self.pids[i] = Some(child.id());
        self.children[i] = child;
        Ok(())
    }

    /// Starts a Twin of launched node `i`: a second process with its keys
    /// (`phalanx testnet twin`), an empty database, P2P on `p2p_port` and
    /// the API on `api_port`, started like the original. Returns its API.
    pub fn start_twin(&mut self, i: usize, p2p_port: u16, api_port: u16) -> anyhow::Result<String> {
        let mut command = self
            .commands
            .get(i)
            .with_context(|| format!("node{i} was not launched by this cluster"))?
            .clone();
        let home = self.dir.join(format!("node{i}-twin"));
        let api = crate::testnet::write_twin(&crate::testnet::TwinArgs {
            home: self.dir.join(format!("node{i}")),
            output: home.clone(),
            p2p_port,
            api_port,
        })?;
        // The same command line, another home.
        if let Some(k) = command.iter().position(|a| a == "--home") {
            if let Some(h) = command.get_mut(k + 1) {
                *h = home.into();
            }
        }
        let child = spawn_logged(&self.dir, &format!("node{i}-twin"), &command)?;
        self.twins.push((i, child));
        Ok(api)
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to launched node `i`.
    pub fn signal(&self, i: usize, signal: &str) -> anyhow::Result<()> {
        let pid = self
            .pids
            .get(i)
            .copied()
            .flatten()
            .with_context(|| format!("node{i} is not running"))?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .context("cannot run kill(1) to signal a node")?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
        Ok(())
    }

    /// A launched node that has exited, if any.
    pub fn exited(&mut self) -> Option<usize> {
        self.children
            .iter_mut()
            .position(|c| c.try_wait().ok().flatten().is_some())
    }

    /// The funded account keys of the testnet (`dir/accounts/*.json`).
    pub fn accounts(&self) -> anyhow::Result<Vec<Keypair>> {
        let dir = self.dir.join("accounts");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list funded accounts in {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        anyhow::ensure!(!files.is_empty(), "no account keys in {}", dir.display());
        files
            .iter()
            .map(|f| read_key_file(f, KeyKind::Account).map_err(Into::into))
            .collect()
    }

    /// Stops the nodes this cluster launched (SIGKILL: the benchmark is over
    /// and their data is thrown away).
    pub fn stop(&mut self) {
        // A paused node must run again to die of SIGKILL promptly.
        for i in 0..self.children.len() {
            let _ = self.signal(i, "CONT");
        }
        for c in self
            .children
            .iter_mut()
            .chain(self.twins.iter_mut().map(|(_, c)| c))
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
        self.twins.clear();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `phalanx <command>` for node `i` of the testnet in `dir`, its
/// output appended to `dir/logs/node<i>.log`.
fn spawn_node(dir: &Path, i: usize, command: &[std::ffi::OsString]) -> anyhow::Result<Child> {
    spawn_logged(dir, &format!("node{i}"), command)
}

/// Starts `phalanx <command>`, its output appended to `dir/logs/<name>.log`.
fn spawn_logged(dir: &Path, name: &str, command: &[std::ffi::OsString]) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("cannot find the phalanx binary")?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("logs/{name}.log")))?;
    Command::new(&exe)
        .args(command)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))
}

/// CPU time (user + system) and peak resident memory of a process, from /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    /// CPU seconds used so far.
    pub cpu_s: f64,
    /// Peak resident set size so far (VmHWM), in bytes.
    pub peak_rss: u64,
}

/// Linux's USER_HZ: /proc reports CPU time in these ticks.
const TICKS_PER_S: f64 = 100.0;

/// Samples `/proc/<pid>` (`None` if the process is gone or not on Linux).
pub fn sample(pid: u32) -> Option<ProcSample> {
    sample_path(&format!("/proc/{pid}"))
}

/// Samples this process.
pub fn sample_self() -> Option<ProcSample> {
    sample_path("/proc/self")
}

fn sample_path(base: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("{base}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("{base}/status")).ok()?;
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(ProcSample {
        cpu_s: (utime + stime) / TICKS_PER_S,
        peak_rss: hwm_kb * 1024,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let before = sample_self().expect("/proc/self is readable on Linux");
        // Burn some CPU and memory so both figures move.
        let v: Vec<u64> = (0..2_000_000u64).map(|i| i.wrapping_mul(i)).collect();
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_add(v.iter().sum::<u64>());
        }
        let after = sample_self().unwrap();
        assert!(x != 1);
        assert!(after.cpu_s > before.cpu_s, "{before:?} -> {after:?}");
        assert!(after.peak_rss >= 16_000_000, "{after:?}");
    }

    #[test]
    fn a_missing_process_gives_none() {
        assert!(sample(u32::MAX).is_none());
    }
}
