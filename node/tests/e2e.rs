//! End to end with real processes: `phalanx testnet init`, four `phalanx
//! node`s on loopback, transfers through the CLI and the HTTP API, and a
//! comparison of every node's chain and balances.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_phalanx");

struct Testnet {
    dir: tempfile::TempDir,
    base_port: u16,
    nodes: Vec<Option<Child>>,
}

impl Testnet {
    fn init(n: usize) -> Testnet {
        let dir = tempfile::tempdir().unwrap();
        // Ports from the pid so parallel test runs do not collide.
        let base_port = 30_000 + (std::process::id() % 150) as u16 * 200;
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
        };
        for i in 0..n {
            t.start(i);
        }
        t
    }

    fn net(&self) -> PathBuf {
        self.dir.path().join("net")
    }

    fn api(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.base_port + 100 + i as u16)
    }

    fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.net().join(format!("node{i}.log")))
            .unwrap();
        let child = Command::new(BIN)
            .args(["node", "--home"])
            .arg(self.net().join(format!("node{i}")))
            .args(["--log", "info"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[i] = Some(child);
    }

    fn get(&self, i: usize, path: &str) -> Option<Value> {
        let mut resp = ureq::get(&format!("{}{path}", self.api(i))).call().ok()?;
        resp.body_mut().read_json::<Value>().ok()
    }

    fn height(&self, i: usize) -> u64 {
        self.get(i, "/status")
            .and_then(|s| s["height"].as_u64())
            .unwrap_or(0)
    }

    fn wait_until(&self, what: &str, secs: u64, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("timed out waiting for {what}; logs in {}", self.logs());
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for i in 0..self.nodes.len() {
            let text = std::fs::read_to_string(self.net().join(format!("node{i}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            s.push_str(&format!(
                "\n--- node{i} ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        s
    }

    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(BIN).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn address(&self, key: &Path) -> String {
        let kp = phalanx_crypto::read_key_file(key, phalanx_crypto::KeyKind::Account).unwrap();
        kp.public().to_string()
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        for c in self.nodes.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn four_nodes_agree_on_transfers_from_cli_and_api() {
    let mut t = Testnet::init(4);
    t.wait_until("every API to answer", 60, || {
        (0..4).all(|i| t.get(i, "/health").is_some())
    });
    let a0 = t.net().join("accounts/account0.json");
    let a1 = t.net().join("accounts/account1.json");
    let to0 = t.address(&a0);
    let to1 = t.address(&a1);

    // Through the CLI: 40 sequential transfers from account0, the last one waited for.
    let api0 = t.api(0);
    let (ok, out, err) = t.cli(&[
        "tx",
        "transfer",
        "--node",
        &api0,
        "--key",
        a0.to_str().unwrap(),
        "--to",
        &to1,
        "--amount",
        "3",
        "--count",
        "40",
        "--wait",
    ]);
    assert!(ok, "cli transfer failed: {out} {err}{}", t.logs());

    // Through the API: 40 signed transfers from account1 to account0, to node 2.
    let key1 = phalanx_crypto::read_key_file(&a1, phalanx_crypto::KeyKind::Account).unwrap();
    let chain = t.get(2, "/status").unwrap()["chain_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let next = t.get(2, &format!("/accounts/{to1}")).unwrap()["next_nonce"]
        .as_u64()
        .unwrap();
    for k in 0..40 {
        let tx = phalanx_ledger::Transaction {
            chain_id: chain.clone(),
            from: phalanx_ledger::Address(key1.public()),
            to: to0.parse().unwrap(),
            amount: 2,
            nonce: next + k,
            fee: 1,
        }
        .sign(&key1);
        let resp = ureq::post(&format!("{}/txs", t.api(2))).send_json(&tx);
        assert!(resp.is_ok(), "api submit {k}: {:?}", resp.err());
    }

    // Bad input gets clear errors and commits nothing.
    let bad = ureq::post(&format!("{}/txs", t.api(1)))
        .content_type("application/json")
        .send("{not json");
    assert!(bad.is_err(), "malformed JSON must be refused");
    let (ok, _, err) = t.cli(&[
        "tx",
        "transfer",
        "--node",
        &api0,
        "--key",
        a0.to_str().unwrap(),
        "--to",
        &to1,
        "--amount",
        "999999999999",
        "--wait",
    ]);
    assert!(!ok && err.contains("insufficient"), "overspend: {err}");

    t.wait_until("all 80 transfers on every node", 120, || {
        (0..4).all(|i| {
            t.get(i, &format!("/accounts/{to1}"))
                .and_then(|a| a["next_nonce"].as_u64())
                == Some(next + 40)
                && t.get(i, &format!("/accounts/{to0}"))
                    .and_then(|a| a["next_nonce"].as_u64())
                    == Some(40)
        })
    });
    // Same block hash at every height on every node, same balances.
    let h = (0..4).map(|i| t.height(i)).min().unwrap();
    assert!(h >= 2);
    for height in 0..=h {
        let hashes: Vec<Value> = (0..4)
            .map(|i| t.get(i, &format!("/blocks/{height}")).unwrap()["hash"].clone())
            .collect();
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "fork at {height}: {hashes:?}"
        );
    }
    for who in [&to0, &to1] {
        let balances: Vec<Value> = (0..4)
            .map(|i| t.get(i, &format!("/accounts/{who}")).unwrap()["balance"].clone())
            .collect();
        assert!(
            balances.windows(2).all(|w| w[0] == w[1]),
            "balances differ: {balances:?}"
        );
    }

    // kill -9 a node and restart it: it comes back with the same chain.
    if let Some(mut c) = t.nodes[3].take() {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    t.start(3);
    t.wait_until("node 3 to serve again", 60, || t.height(3) >= h);
    for height in 0..=h {
        let a = t.get(0, &format!("/blocks/{height}")).unwrap()["hash"].clone();
        let b = t.get(3, &format!("/blocks/{height}")).unwrap()["hash"].clone();
        assert_eq!(a, b, "height {height} after restart");
    }
    let logs = t.logs();
    assert!(!logs.contains("panicked"), "a node panicked:{logs}");
}
