//! End to end with real processes: `phalanx testnet init`, four `phalanx
//! node`s on loopback, transfers through the CLI and the HTTP API, and a
//! comparison of every node's chain and balances.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::{Testnet, BIN};

/// Ports from the pid (and a block per test) so parallel runs do not
/// collide; below 32768, where Linux hands out ephemeral ports.
fn base_port(block: u16) -> u16 {
    20_000 + (std::process::id() % 28) as u16 * 400 + block * 200
}

/// What the end-to-end tests do beyond the shared harness.
impl Testnet {
    fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(BIN).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn account(&self, j: usize) -> PathBuf {
        self.net().join(format!("accounts/account{j}.json"))
    }

    fn address(&self, key: &Path) -> String {
        let kp = phalanx_crypto::read_key_file(key, phalanx_crypto::KeyKind::Account).unwrap();
        kp.public().to_string()
    }
}

fn signed(key: &phalanx_crypto::Keypair, chain: &str, to: &str, amount: u64, nonce: u64) -> Value {
    let tx = phalanx_ledger::Transaction {
        chain_id: chain.to_owned(),
        from: phalanx_ledger::Address(key.public()),
        to: to.parse().unwrap(),
        amount,
        nonce,
        fee: 1,
    }
    .sign(key);
    serde_json::to_value(&tx).unwrap()
}

/// Submits `tx` to node `via` and waits until every node has it in a block.
fn submit_and_wait(t: &Testnet, via: usize, tx: &Value, what: &str) {
    let (status, resp) = t.post(via, &tx.to_string());
    assert!(status < 300, "{resp}");
    let hash = resp["tx_hash"].as_str().unwrap().to_owned();
    t.wait_until(what, 60, || {
        (0..t.nodes.len()).all(|i| {
            t.get(i, &format!("/txs/{hash}"))
                .is_some_and(|v| v["height"].is_u64())
        })
    });
}

/// Checks every node's vote log: no validator sent two different votes
/// (kind, view, seq) for one slot, across kills and restarts.
fn assert_no_double_signing(t: &Testnet) -> usize {
    let mut seen: std::collections::HashMap<String, String> = Default::default();
    let mut total = 0;
    for i in 0..t.nodes.len() {
        let text = std::fs::read_to_string(t.net().join(format!("votes{i}.log"))).unwrap();
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts.len(), 5, "vote log line {line:?}");
            assert_eq!(parts[0], i.to_string(), "node {i} logged another voter");
            let slot = parts[..4].join(" ");
            let digest = parts[4].to_owned();
            if let Some(prev) = seen.insert(slot.clone(), digest.clone()) {
                assert_eq!(prev, digest, "double-signed {slot}");
            }
            total += 1;
        }
    }
    total
}

/// Same block hash at every height on every running node; returns the height compared.
fn assert_same_chain(t: &Testnet, nodes: &[usize]) -> u64 {
    let h = nodes.iter().map(|i| t.height(*i)).min().unwrap();
    for height in 0..=h {
        let hashes: Vec<Value> = nodes
            .iter()
            .map(|i| t.get(*i, &format!("/blocks/{height}")).unwrap()["hash"].clone())
            .collect();
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "fork at {height}: {hashes:?}"
        );
    }
    h
}

/// The issue's first two checks on real processes: 4 nodes from `phalanx
/// testnet init`, over 500 signed transfers from several accounts through
/// the CLI and the API, kill -9 of a non-primary and then of the primary
/// under load (the rest keep committing; a view change happens), restarts
/// that catch up to the same chain, and no validator signing two votes for
/// one slot.
#[test]
fn four_nodes_agree_on_500_transfers_and_survive_kill_9_of_a_backup_and_the_primary() {
    let mut t = Testnet::init(4, base_port(0), true);
    t.wait_until("every API to answer", 60, || {
        (0..4).all(|i| t.get(i, "/health").is_some())
    });
    let chain = t.status(0).unwrap()["chain_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let keys: Vec<phalanx_crypto::Keypair> = (0..4)
        .map(|j| {
            phalanx_crypto::read_key_file(&t.account(j), phalanx_crypto::KeyKind::Account).unwrap()
        })
        .collect();
    let addrs: Vec<String> = (0..4).map(|j| t.address(&t.account(j))).collect();

    // CLI: 150 transfers from account0 (nonces 0..150), the last one waited for.
    let (ok, out, err) = t.cli(&[
        "tx",
        "transfer",
        "--node",
        &t.api(0),
        "--key",
        t.account(0).to_str().unwrap(),
        "--to",
        &addrs[1],
        "--amount",
        "3",
        "--count",
        "150",
        "--wait",
    ]);
    assert!(ok, "cli transfer failed: {out} {err}{}", t.logs());
    assert!(
        out.lines().filter(|l| !l.trim().is_empty()).count() >= 150,
        "{out}"
    );

    // API: 120 transfers each from accounts 1, 2, 3, spread over the nodes.
    let mut nonces = [150u64, 0, 0, 0];
    for round in 0..120u64 {
        for j in 1..4 {
            let body = signed(&keys[j], &chain, &addrs[(j + 1) % 4], 2, nonces[j]);
            let (status, resp) = t.post((j + round as usize) % 4, &body.to_string());
            assert!(status < 300, "api submit from account{j}: {status} {resp}");
            nonces[j] += 1;
        }
    }
    let expect = |t: &Testnet, i: usize, nonces: &[u64; 4]| {
        (1..4).all(|j| {
            t.get(i, &format!("/accounts/{}", addrs[j]))
                .and_then(|a| a["next_nonce"].as_u64())
                == Some(nonces[j])
        })
    };
    t.wait_until("all 510 transfers on every node", 180, || {
        (0..4).all(|i| expect(&t, i, &nonces))
    });
    assert_same_chain(&t, &[0, 1, 2, 3]);

    // Under load: account1 keeps sending through node 0 and 2 while nodes die.
    let load = |t: &Testnet, count: u64, via: usize, nonces: &mut [u64; 4]| {
        for _ in 0..count {
            let body = signed(&keys[1], &chain, &addrs[2], 1, nonces[1]);
            let (status, resp) = t.post(via, &body.to_string());
            assert!(status < 300, "submit under load: {status} {resp}");
            nonces[1] += 1;
        }
    };
    let primary = t.status(0).unwrap()["primary"].as_u64().unwrap() as usize;
    let backup = (primary + 1) % 4;
    let live = |skip: usize| (0..4).filter(move |i| *i != skip).collect::<Vec<_>>();

    // kill -9 a backup: the other three keep committing.
    t.kill(backup);
    let via = live(backup)[0];
    let before = t.height(via);
    load(&t, 30, via, &mut nonces);
    t.wait_until("the rest to commit without the killed backup", 90, || {
        live(backup).iter().all(|i| expect(&t, *i, &nonces)) && t.height(via) > before
    });
    t.start(backup);
    t.wait_until("the restarted backup to catch up", 120, || {
        expect(&t, backup, &nonces)
    });

    // kill -9 the primary: a view change, and the rest keep committing.
    // The primary is read again: a loaded machine may have changed views
    // while the backup was down.
    let status = t.status(via).unwrap();
    let view_before = status["view"].as_u64().unwrap();
    let primary = status["primary"].as_u64().unwrap() as usize;
    t.kill(primary);
    let via = live(primary)[0];
    load(&t, 30, via, &mut nonces);
    t.wait_until(
        "a view change and commits without the killed primary",
        120,
        || live(primary).iter().all(|i| expect(&t, *i, &nonces)),
    );
    let view_after = t.status(via).unwrap()["view"].as_u64().unwrap();
    assert!(
        view_after > view_before,
        "no view change: {view_before} -> {view_after}"
    );
    let metrics = ureq::get(&format!("{}/metrics", t.api(via)))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(metrics.contains("phalanx_view_changes"), "{metrics}");
    t.start(primary);
    t.wait_until("the restarted primary to catch up", 120, || {
        expect(&t, primary, &nonces)
    });

    // One chain, one set of balances, no double votes.
    let h = assert_same_chain(&t, &[0, 1, 2, 3]);
    assert!(h >= 5, "height {h}");
    for a in &addrs {
        let balances: Vec<Value> = (0..4)
            .map(|i| t.get(i, &format!("/accounts/{a}")).unwrap()["balance"].clone())
            .collect();
        assert!(
            balances.windows(2).all(|w| w[0] == w[1]),
            "balances differ: {balances:?}"
        );
    }
    let votes = assert_no_double_signing(&t);
    assert!(votes > 100, "only {votes} votes logged");
    let logs = t.logs();
    assert!(!logs.contains("panicked"), "a node panicked:{logs}");
}

/// The issue's third check: bad input gets a clear error or is dropped and
/// counted; nothing bad is committed and no node panics.
#[test]
fn bad_input_is_refused_or_dropped_and_nothing_bad_is_committed() {
    use std::io::Write as _;
    let t = Testnet::init(4, base_port(1), true);
    t.wait_until("every API to answer", 60, || {
        (0..4).all(|i| t.get(i, "/health").is_some())
    });
    let chain = t.status(0).unwrap()["chain_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key0 =
        phalanx_crypto::read_key_file(&t.account(0), phalanx_crypto::KeyKind::Account).unwrap();
    let a0 = t.address(&t.account(0));
    let a1 = t.address(&t.account(1));
    let refused = |t: &Testnet, body: &str, status: u16, code: &str| {
        let (s, resp) = t.post(1, body);
        assert_eq!(s, status, "{body}: {resp}");
        assert_eq!(resp["code"].as_str(), Some(code), "{resp}");
        assert!(!resp["message"].as_str().unwrap_or("").is_empty(), "{resp}");
    };

    // The admin routes of a node without --allow-fault-injection refuse
    // changes (403); a form post, what a web page could send, is refused
    // before that (415); reading the fault state is fine.
    let (s, resp) = t.post_to(1, "/admin/latency", Some("application/json"), r#"{"ms":5}"#);
    assert_eq!(
        (s, resp["code"].as_str()),
        (403, Some("fault_injection_disabled")),
        "{resp}"
    );
    for form in [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
    ] {
        let (s, resp) = t.post_to(1, "/admin/behaviour", form, r#"{"behaviour":"silent"}"#);
        assert_eq!(
            (s, resp["code"].as_str()),
            (415, Some("json_only")),
            "{form:?}: {resp}"
        );
    }
    let faults = t
        .get(1, "/admin/faults")
        .expect("GET /admin/faults from this machine");
    assert_eq!(faults["allow_fault_injection"], false);
    assert_eq!(faults["behaviour"], "honest", "{faults}");

    // Malformed JSON, and JSON that is not a transaction.
    refused(&t, "{not json", 400, "malformed");
    refused(&t, r#"{"tx": 1}"#, 400, "malformed");
    // A bad signature: a valid transfer with one signature byte flipped.
    let mut tx = signed(&key0, &chain, &a1, 5, 0);
    let sig = tx["signature"].as_str().unwrap().to_owned();
    let flipped = format!(
        "{}{}",
        if sig.starts_with('0') { "1" } else { "0" },
        &sig[1..]
    );
    tx["signature"] = Value::String(flipped);
    refused(&t, &tx.to_string(), 422, "bad_signature");
    // The wrong chain.
    refused(
        &t,
        &signed(&key0, "another-chain", &a1, 5, 0).to_string(),
        422,
        "wrong_chain_id",
    );
    // An unknown sender (a fresh key with no account).
    let stranger = phalanx_crypto::Keypair::from_label("a stranger with no account");
    refused(
        &t,
        &signed(&stranger, &chain, &a1, 5, 0).to_string(),
        422,
        "unknown_account",
    );
    // A good transfer commits; replaying its nonce is refused.
    let good = signed(&key0, &chain, &a1, 5, 0);
    submit_and_wait(&t, 0, &good, "the good transfer to commit");
    // Resubmitting it is harmless (it is not applied twice: checked below);
    // another transfer with its nonce is a replay.
    let _ = t.post(1, &good.to_string());
    let replay = signed(&key0, &chain, &a1, 6, 0);
    refused(&t, &replay.to_string(), 422, "nonce_used");
    // Overspend, through the CLI: a clear message and a non-zero exit.
    let (ok, _, err) = t.cli(&[
        "tx",
        "transfer",
        "--node",
        &t.api(2),
        "--key",
        t.account(0).to_str().unwrap(),
        "--to",
        &a1,
        "--amount",
        "999999999999999",
        "--wait",
    ]);
    assert!(!ok && err.contains("insufficient"), "overspend: {err}");

    // Garbage on every node's p2p port: dropped and counted, nodes keep going.
    for i in 0..4 {
        let port = t.base_port + i as u16;
        for junk in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            &[0xffu8; 4096][..],
            b"\x13/multistream/1.0.0\n",
        ] {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.write_all(junk);
                let _ = s.flush();
            }
        }
    }
    // Another good transfer still commits everywhere after the garbage.
    let next = signed(&key0, &chain, &a1, 7, 1);
    submit_and_wait(&t, 3, &next, "a transfer after the garbage to commit");
    // Refusals were counted by node 1, which received them.
    let metrics = ureq::get(&format!("{}/metrics", t.api(1)))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    // Every reason is exposed from start-up at 0: look at the values.
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no series {series}:\n{metrics}"))
    };
    for reason in ["wrong_chain_id", "unknown_account", "nonce_used"] {
        assert!(
            value(&format!(
                "phalanx_rejected_txs_total{{reason=\"{reason}\"}}"
            )) >= 1.0,
            "{reason} refusals are counted:\n{metrics}"
        );
    }
    assert!(
        value("phalanx_dropped_messages_total{reason=\"incoming_connection_error\"}") >= 1.0,
        "garbage connections are counted:\n{metrics}"
    );

    // Nothing bad committed: account0 made exactly its two good transfers.
    let h = assert_same_chain(&t, &[0, 1, 2, 3]);
    assert!(h >= 1);
    for i in 0..4 {
        let acct = t.get(i, &format!("/accounts/{a0}")).unwrap();
        assert_eq!(acct["next_nonce"].as_u64(), Some(2), "{acct}");
    }
    let logs = t.logs();
    assert!(!logs.contains("panicked"), "a node panicked:{logs}");
}
