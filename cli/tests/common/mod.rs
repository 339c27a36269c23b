//! A testnet of real `phalanx node` processes on loopback, for the
//! end-to-end tests: `phalanx testnet init`, start, kill -9, the HTTP API,
//! waiting, and the tail of every node's log when a wait times out.
//! `PHALANX_E2E_KEEP=1` keeps the testnet's directory for a look.

#![allow(dead_code)] // Each test file uses its own part.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_phalanx");

pub struct Testnet {
    pub dir: tempfile::TempDir,
    pub base_port: u16,
    pub nodes: Vec<Option<Child>>,
    /// Start each node with `--vote-log net/votes<i>.log`.
    vote_logs: bool,
    /// More `phalanx node` arguments for every node started from now on.
    pub node_args: Vec<String>,
}

impl Testnet {
    /// `phalanx testnet init` of `n` validators from `base_port`, every
    /// node started.
    pub fn init(n: usize, base_port: u16, vote_logs: bool) -> Testnet {
        Testnet::init_with(n, base_port, vote_logs, &[])
    }

    /// [`Testnet::init`], every node started with `node_args` as well.
    pub fn init_with(n: usize, base_port: u16, vote_logs: bool, node_args: &[&str]) -> Testnet {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .args([
                "testnet",
                "init",
                "--validators",
                &n.to_string(),
                "--output",
            ])
            .arg(dir.path().join("net"))
            .args(["--base-port", &base_port.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "testnet init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut t = Testnet {
            dir,
            base_port,
            nodes: (0..n).map(|_| None).collect(),
            vote_logs,
            node_args: node_args.iter().map(|a| a.to_string()).collect(),
        };
        for i in 0..n {
            t.start(i);
        }
        t
    }

    pub fn net(&self) -> PathBuf {
        self.dir.path().join("net")
    }

    pub fn api(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.base_port + 100 + i as u16)
    }

    pub fn start(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node{i} is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.net().join(format!("node{i}.log")))
            .unwrap();
        let mut node = Command::new(BIN);
        node.args(["node", "--home"])
            .arg(self.net().join(format!("node{i}")))
            .args(["--log", "info"]);
        node.args(&self.node_args);
        if self.vote_logs {
            node.arg("--vote-log")
                .arg(self.net().join(format!("votes{i}.log")));
        }
        let child = node.stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.nodes[i] = Some(child);
    }

    /// kill -9.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    pub fn get(&self, i: usize, path: &str) -> Option<Value> {
        let mut resp = ureq::get(&format!("{}{path}", self.api(i))).call().ok()?;
        resp.body_mut().read_json::<Value>().ok()
    }

    pub fn status(&self, i: usize) -> Option<Value> {
        self.get(i, "/status")
    }

    pub fn height(&self, i: usize) -> u64 {
        self.status(i)
            .and_then(|s| s["height"].as_u64())
            .unwrap_or(0)
    }

    /// POST /txs with a raw body: (HTTP status, JSON body).
    pub fn post(&self, i: usize, body: &str) -> (u16, Value) {
        self.post_to(i, "/txs", Some("application/json"), body)
    }

    /// POST to any route with a raw body and content type (none: no header).
    pub fn post_to(
        &self,
        i: usize,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut request = agent.post(&format!("{}{path}", self.api(i)));
        if let Some(c) = content_type {
            request = request.content_type(c);
        }
        let mut resp = request.send(body).unwrap();
        let status = resp.status().as_u16();
        (
            status,
            resp.body_mut().read_json::<Value>().unwrap_or(Value::Null),
        )
    }

    /// Polls `f` every 200 ms; true once it holds, false after `secs`.
    pub fn poll(&self, secs: u64, mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if f() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// [`Testnet::poll`], panicking with every node's status and log tail
    /// on a timeout.
    pub fn wait_until(&self, what: &str, secs: u64, f: impl FnMut() -> bool) {
        if !self.poll(secs, f) {
            panic!(
                "timed out after {secs} s waiting for {what}\n{}{}",
                self.statuses(),
                self.logs()
            );
        }
    }

    /// Every node's `/status`, one line each.
    pub fn statuses(&self) -> String {
        let mut s = String::from("statuses:");
        for i in 0..self.nodes.len() {
            let st = self
                .status(i)
                .map_or_else(|| "(no answer)".to_owned(), |v| v.to_string());
            s.push_str(&format!("\n  node{i}: {st}"));
        }
        s
    }

    /// The tail of every node's log.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for i in 0..self.nodes.len() {
            let text = std::fs::read_to_string(self.net().join(format!("node{i}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(25).collect();
            s.push_str(&format!(
                "\n--- node{i}.log (last 25 lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        s
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        if std::env::var_os("PHALANX_E2E_KEEP").is_some() {
            eprintln!("keeping {}", self.dir.path().display());
            let _ = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
        }
        for c in self.nodes.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
