//! `testnet/local.sh` end to end, as the README uses it: `up --faults
//! --json` prints the nodes and the prefunded accounts; the README's first
//! transaction works pasted as it is (accounts by name, from the folder the
//! README runs in); the `/admin` examples work; a node killed with -9 comes
//! back with its flags and answers as soon as `up` returns; `reset` is
//! refused while nodes run and starts a fresh chain once they are down.
//!
//! The script is given this test's binary (`PHALANX_BIN`), so it builds nothing.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_phalanx");

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testnet/local.sh")
}

/// One testnet at a time: the tests of this file share the process id
/// their ports are picked from, and two nets starting at once would pick
/// the same block (and compete for two cores).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A base port whose P2P and API ports are free (local.sh checks again).
fn base_port() -> u16 {
    // Below 32768 (Linux's ephemeral range), away from e2e.rs's 20000..31200 blocks.
    let start = 12_000 + (std::process::id() % 40) as u16 * 200;
    (0..40)
        .map(|k| start.wrapping_add(k * 211) % 20_000 + 10_000)
        .find(|p| {
            (0..4).all(|i| {
                std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()
                    && std::net::TcpListener::bind(("127.0.0.1", p + 100 + i)).is_ok()
            })
        })
        .expect("a free block of ports")
}

struct LocalNet {
    /// The folder the README's commands run in; the testnet is its testnet-data/.
    cwd: tempfile::TempDir,
    base_port: u16,
}

impl LocalNet {
    fn dir(&self) -> PathBuf {
        self.cwd.path().join("testnet-data")
    }

    fn local_sh(&self, args: &[&str]) -> Output {
        let out = Command::new("bash")
            .arg(script())
            .args(args)
            .args(["--dir", "testnet-data"])
            .current_dir(self.cwd.path())
            .env("PHALANX_BIN", BIN)
            .env_remove("PHALANX_NODE")
            .env_remove("PHALANX_KEYS_DIR")
            .output()
            .expect("run local.sh");
        eprintln!(
            "local.sh {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs `phalanx` in the README's folder; returns stdout, failing on
    /// error. The test's ports are not the default ones, so the default
    /// `--node` (node0) comes from PHALANX_NODE.
    fn phalanx(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(self.cwd.path())
            .env("PHALANX_NODE", self.api(0))
            .env_remove("PHALANX_KEYS_DIR")
            .env("HOME", self.cwd.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "phalanx {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn api(&self, i: u16) -> String {
        format!("http://127.0.0.1:{}", self.base_port + 100 + i)
    }

    fn status(&self, i: u16) -> Value {
        serde_json::from_str(&self.phalanx(&["query", "status", "--json", "--node", &self.api(i)]))
            .unwrap()
    }

    fn pid(&self, i: u16) -> i32 {
        std::fs::read_to_string(self.dir().join(format!("pids/node{i}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for LocalNet {
    fn drop(&mut self) {
        let _ = self.local_sh(&["down"]);
    }
}

fn post(url: &str, body: &str) -> (u16, String) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut r = agent
        .post(url)
        .content_type("application/json")
        .send(body)
        .unwrap();
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn balance(net: &LocalNet, name: &str, node: u16) -> u64 {
    let json: Value = serde_json::from_str(&net.phalanx(&[
        "query",
        "account",
        name,
        "--json",
        "--node",
        &net.api(node),
    ]))
    .unwrap();
    json["balance"].as_u64().unwrap()
}

#[test]
fn local_sh_up_accounts_by_name_faults_restart_and_reset() {
    let _serial = one_at_a_time();
    let base_port = base_port();
    let net = LocalNet {
        cwd: tempfile::tempdir().unwrap(),
        base_port,
    };
    let up = net.local_sh(&[
        "up",
        "--faults",
        "--json",
        "--base-port",
        &base_port.to_string(),
    ]);
    assert!(up.status.success(), "local.sh up failed");
    let summary: Value = serde_json::from_slice(&up.stdout).expect("up --json prints JSON");
    let nodes = summary["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4);
    assert_eq!(nodes[0]["api"], net.api(0));
    assert_eq!(nodes[1]["flags"], "--allow-fault-injection");
    let accounts = summary["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 4, "{summary}");
    assert_eq!(accounts[0]["name"], "account0");
    assert!(
        accounts[0]["balance"].as_u64().unwrap() > 1_000,
        "{summary}"
    );
    let key0 = accounts[0]["key_file"].as_str().unwrap();
    assert!(Path::new(key0).is_file(), "{key0}");

    // The README's first transaction, as it is: names, default --node.
    let before = balance(&net, "account1", 2);
    let out = net.phalanx(&[
        "tx", "transfer", "--key", "account0", "--to", "account1", "--amount", "10", "--wait",
    ]);
    assert!(out.contains("committed at height"), "{out}");
    // The hash comes first, on its own line, before the answer.
    let first_line = out.lines().next().unwrap();
    assert!(first_line.ends_with("sending"), "{out}");
    assert_eq!(balance(&net, "account1", 2), before + 10);
    assert_eq!(
        balance(&net, accounts[1]["address"].as_str().unwrap(), 3),
        before + 10
    );

    // The README's /admin examples work on a testnet started with --faults.
    let admin =
        |i: u16, route: &str, body: &str| post(&format!("{}/admin/{route}", net.api(i)), body);
    let (code, body) = admin(1, "latency", r#"{"ms":5}"#);
    assert_eq!(code, 200, "{body}");
    let (code, body) = admin(1, "latency", r#"{"ms":0}"#);
    assert_eq!(code, 200, "{body}");

    // kill -9 of a backup; `up` restarts just it, with its flags, and
    // returns only once it answers.
    let primary = net.status(0)["primary"].as_u64().unwrap() as u16;
    let victim = (primary + 1) % 4;
    let old_pid = net.pid(victim);
    let killed = Command::new("kill")
        .args(["-9", &old_pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Wait until the process is gone (not only signalled).
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{old_pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{old_pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "node{victim} survived kill -9");
        std::thread::sleep(Duration::from_millis(50));
    }
    let again = net.local_sh(&["up"]);
    assert!(again.status.success());
    assert_ne!(net.pid(victim), old_pid, "a new process");
    // No waiting here: `up` returned, so the node answers now.
    assert_eq!(net.status(victim)["validator_index"], victim as u64);
    let (code, body) = admin(victim, "latency", r#"{"ms":0}"#);
    assert_eq!(
        code, 200,
        "the restarted node kept --allow-fault-injection: {body}"
    );

    // reset is refused while nodes run, then starts over.
    let refused = net.local_sh(&["reset"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("down"));
    assert!(net.dir().join("genesis.json").is_file(), "nothing deleted");
    assert!(net.local_sh(&["down"]).status.success());
    let reset = net.local_sh(&["reset"]);
    assert!(reset.status.success());
    assert!(!net.dir().exists(), "the chain is gone");
}

/// `local.sh up --consensus pow` (issue 19): four miners under the
/// default hash-rate cap make blocks and commit a transfer (tentative,
/// with confirmations); a 2|2 partition makes both halves mine their own
/// branch; once healed, all four converge on one chain and the side that
/// lost reports the reorg in `/status`.
#[test]
fn local_sh_up_consensus_pow_mines_commits_and_converges_after_a_partition() {
    let _serial = one_at_a_time();
    let base_port = base_port();
    let net = LocalNet {
        cwd: tempfile::tempdir().unwrap(),
        base_port,
    };
    let up = net.local_sh(&[
        "up",
        "--consensus",
        "pow",
        "--faults",
        "--json",
        "--base-port",
        &base_port.to_string(),
    ]);
    assert!(up.status.success(), "local.sh up --consensus pow failed");
    let status = net.status(0);
    assert_eq!(status["consensus"], "pow", "{status}");
    assert_eq!(status["final_height"], 0, "{status}");

    let out = net.phalanx(&[
        "tx", "transfer", "--key", "account0", "--to", "account1", "--amount", "10", "--wait",
    ]);
    assert!(out.contains("committed at height"), "{out}");
    let hash = out
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let tx: Value = serde_json::from_str(&net.phalanx(&["query", "tx", &hash, "--json"])).unwrap();
    assert_eq!(tx["finality"], "tentative", "{tx}");
    assert!(tx["confirmations"].as_u64().unwrap() >= 1, "{tx}");

    // 2|2: nodes 0 and 1 stop talking to 2 and 3, and back.
    let admin =
        |i: u16, route: &str, body: &str| post(&format!("{}/admin/{route}", net.api(i)), body);
    for (i, blocked) in [(0, "[2,3]"), (1, "[2,3]"), (2, "[0,1]"), (3, "[0,1]")] {
        let (code, body) = admin(i, "partition", &format!(r#"{{"blocked":{blocked}}}"#));
        assert_eq!(code, 200, "{body}");
    }
    let start = (0..4)
        .map(|i| net.status(i)["height"].as_u64().unwrap())
        .max()
        .unwrap();
    // Both halves mine on: each passes the height the partition started at.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h: Vec<u64> = (0..4)
            .map(|i| net.status(i)["height"].as_u64().unwrap())
            .collect();
        if h.iter().all(|x| *x >= start + 3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the halves did not both mine: {h:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let a = net.status(0)["latest_block_hash"].clone();
    let b = net.status(2)["latest_block_hash"].clone();
    assert_ne!(a, b, "two halves, two branches");
    for i in 0..4 {
        let (code, body) = admin(i, "partition", r#"{"blocked":[]}"#);
        assert_eq!(code, 200, "{body}");
    }
    // Healed: one head on all four (checked at one height on all nodes,
    // as heads keep moving), and someone reverted its branch.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let heights: Vec<u64> = (0..4)
            .map(|i| net.status(i)["height"].as_u64().unwrap())
            .collect();
        let low = *heights.iter().min().unwrap();
        let at = low.saturating_sub(2).max(start + 3);
        // A reorg may take a node below `at` between the two reads: a
        // missing block counts as "not converged yet".
        let hashes: Vec<Value> = (0..4)
            .map(|i| {
                let agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .new_agent();
                agent
                    .get(&format!("{}/blocks/{at}", net.api(i)))
                    .call()
                    .ok()
                    .and_then(|mut r| r.body_mut().read_to_string().ok())
                    .and_then(|body| serde_json::from_str::<Value>(&body).ok())
                    .map_or(Value::Null, |b| b["hash"].clone())
            })
            .collect();
        let reorgs: u64 = (0..4)
            .map(|i| net.status(i)["reorgs"].as_u64().unwrap_or(0))
            .sum();
        if low >= start + 3 && hashes.iter().all(|h| *h == hashes[0] && !h.is_null()) && reorgs > 0
        {
            let s = (0..4)
                .map(|i| net.status(i))
                .find(|s| s["reorgs"].as_u64().unwrap_or(0) > 0)
                .unwrap();
            let r = &s["last_reorg"];
            let depth = r["from_height"].as_u64().unwrap() - r["to_height"].as_u64().unwrap();
            assert!(depth > 0, "{s}");
            // The running totals include the last reorg.
            assert!(s["discarded_blocks"].as_u64().unwrap() >= depth, "{s}");
            assert!(
                s["returned_txs"].as_u64().unwrap() >= r["returned_txs"].as_u64().unwrap(),
                "{s}"
            );
            // The two heads of the split: the node that held the losing
            // one still answers for it, as discarded.
            let finality = |i: u16, hash: &Value| -> Value {
                let url = format!("{}/blocks/{}", net.api(i), hash.as_str().unwrap());
                let body = ureq::get(&url)
                    .call()
                    .unwrap()
                    .body_mut()
                    .read_to_string()
                    .unwrap();
                serde_json::from_str::<Value>(&body).unwrap()["finality"].clone()
            };
            let mut seen = [finality(0, &a), finality(2, &b)];
            seen.sort_by_key(|f| f.to_string());
            assert_eq!(seen, ["discarded", "tentative"], "heads {a} and {b}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence after the heal: heights {heights:?}, hashes at {at}: {hashes:?}, reorgs {reorgs}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(net.local_sh(&["down"]).status.success());
}

/// `local.sh up --consensus pos` (issue 19): slot leaders make blocks and
/// commit a transfer; a validator switched to equivocate signs two blocks
/// for a slot it leads; honest nodes catch it, the evidence goes into a
/// block, its stake is slashed on every node (`/validators`), and it
/// leads no more slots.
#[test]
fn local_sh_up_consensus_pos_slashes_an_equivocating_leader() {
    let _serial = one_at_a_time();
    let base_port = base_port();
    let net = LocalNet {
        cwd: tempfile::tempdir().unwrap(),
        base_port,
    };
    let up = net.local_sh(&[
        "up",
        "--consensus",
        "pos",
        "--faults",
        "--json",
        "--base-port",
        &base_port.to_string(),
    ]);
    assert!(up.status.success(), "local.sh up --consensus pos failed");
    assert_eq!(net.status(0)["consensus"], "pos");
    let out = net.phalanx(&[
        "tx", "transfer", "--key", "account0", "--to", "account1", "--amount", "10", "--wait",
    ]);
    assert!(out.contains("committed at height"), "{out}");

    let validators = |i: u16| -> Value {
        let body = ureq::get(&format!("{}/validators", net.api(i)))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&body).unwrap()
    };
    assert_eq!(validators(0)[3]["stake"], 100);
    assert_eq!(validators(0)[3]["slashed"], false);

    let (code, body) = post(
        &format!("{}/admin/behaviour", net.api(3)),
        r#"{"behaviour":"equivocate"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let slashed_at = loop {
        let all = (0..3).all(|i| {
            let v = validators(i);
            v[3]["slashed"] == true && v[3]["stake"] == 0
        });
        if all {
            break net.status(0)["height"].as_u64().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "validator 3 was not slashed everywhere: {}",
            validators(0)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let evidence = ureq::get(&format!("{}/evidence", net.api(1)))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(evidence.contains("\"offender\":3"), "{evidence}");
    // Slashed to nothing: it leads no more slots.
    let deadline = Instant::now() + Duration::from_secs(60);
    while net.status(0)["height"].as_u64().unwrap() < slashed_at + 8 {
        assert!(
            Instant::now() < deadline,
            "the chain stopped after the slashing"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for h in slashed_at + 2..=slashed_at + 8 {
        let b: Value =
            serde_json::from_str(&net.phalanx(&["query", "block", &h.to_string(), "--json"]))
                .unwrap();
        assert_ne!(b["block"]["header"]["proposer"], 3, "{b}");
    }
    assert!(net.local_sh(&["down"]).status.success());
}

/// Kills node `i` with SIGKILL and waits until its process is gone.
fn kill_node(net: &LocalNet, i: u16) {
    let pid = net.pid(i);
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "node{i} survived kill -9");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The README's demo (issue 20): `local.sh up --fallback pos`, then two of
/// the four validators stop — PBFT has no quorum. A transfer still lands,
/// in a tentative block (`/status` says `fallback`; the `finalized` tag
/// stays behind). The two come back (`local.sh up` restarts them) and the
/// same transfer turns final on every node, in one block everywhere —
/// usually the tentative block itself; should PBFT's view change fill
/// that height with another block, the transfer returns to the mempool
/// and commits again.
#[test]
fn local_sh_fallback_pos_keeps_going_without_a_quorum_and_finalizes_after() {
    let _serial = one_at_a_time();
    let base_port = base_port();
    let net = LocalNet {
        cwd: tempfile::tempdir().unwrap(),
        base_port,
    };
    let up = net.local_sh(&[
        "up",
        "--fallback",
        "pos",
        "--json",
        "--base-port",
        &base_port.to_string(),
    ]);
    assert!(up.status.success(), "local.sh up --fallback pos failed");
    let status = net.status(0);
    assert_eq!(status["consensus"], "pbft+pos", "{status}");
    assert_eq!(status["mode"], "pbft", "{status}");

    kill_node(&net, 2);
    kill_node(&net, 3);
    let out = net.phalanx(&[
        "tx",
        "transfer",
        "--key",
        "account0",
        "--to",
        "account1",
        "--amount",
        "10",
        "--wait",
        "tentative",
        "--timeout",
        "120",
    ]);
    assert!(out.contains("(tentative"), "{out}");
    let hash = out.split_whitespace().next().unwrap().to_owned();
    let tx: Value = serde_json::from_str(&net.phalanx(&["query", "tx", &hash, "--json"])).unwrap();
    assert_eq!(tx["finality"], "tentative", "{tx}");
    let height = tx["height"].as_u64().unwrap();
    let tentative_hash = {
        let b: Value =
            serde_json::from_str(&net.phalanx(&["query", "block", &height.to_string(), "--json"]))
                .unwrap();
        b["hash"].clone()
    };
    let status = net.status(0);
    assert_eq!(status["mode"], "fallback", "{status}");
    assert!(
        status["final_height"].as_u64().unwrap() < height,
        "{status}"
    );
    let finalized: Value =
        serde_json::from_str(&net.phalanx(&["query", "block", "finalized", "--json"])).unwrap();
    assert!(
        finalized["height"].as_u64().unwrap() < height,
        "{finalized}"
    );

    // The quorum is back: the same transfer turns final, block unchanged.
    assert!(net.local_sh(&["up"]).status.success());
    let out = net.phalanx(&["tx", "wait", &hash, "--timeout", "180"]);
    assert!(out.contains("(final)"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut final_block = None;
    for i in 0..4 {
        loop {
            let tx: Value = serde_json::from_str(&net.phalanx(&[
                "query",
                "tx",
                &hash,
                "--json",
                "--node",
                &net.api(i),
            ]))
            .unwrap_or(Value::Null);
            if tx["finality"] == "final" {
                break;
            }
            assert!(Instant::now() < deadline, "node{i}: {tx}");
            std::thread::sleep(Duration::from_millis(500));
        }
        let tx: Value = serde_json::from_str(&net.phalanx(&[
            "query",
            "tx",
            &hash,
            "--json",
            "--node",
            &net.api(i),
        ]))
        .unwrap();
        let at = tx["height"].as_u64().unwrap().to_string();
        let b: Value = serde_json::from_str(&net.phalanx(&[
            "query",
            "block",
            &at,
            "--json",
            "--node",
            &net.api(i),
        ]))
        .unwrap();
        assert_eq!(b["finality"], "final", "{b}");
        match &final_block {
            None => final_block = Some(b["hash"].clone()),
            Some(h) => assert_eq!(&b["hash"], h, "node{i} finalized another block"),
        }
    }
    eprintln!(
        "the transfer's tentative block {} kept: {}",
        height,
        final_block.as_ref() == Some(&tentative_hash)
    );
    assert!(net.local_sh(&["down"]).status.success());
}
