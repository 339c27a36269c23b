//! The API served on a real loopback listener over a `MemoryStore`, queried
//! with the CLI's own client (and raw requests for status codes and errors).

use super::types::*;
use crate::client::Client;
use crate::home::NodeConfig;
use crate::shared::Shared;
use phalanx_crypto::{Hash, Keypair, Signature};
use phalanx_ledger::{
    execute, make_block, Address, CommitCertificate, Evidence, Genesis, GenesisAccount, Height,
    Justification, MemoryStore, Payload, SignedTransaction, SignedVote, State, Store, Transaction,
    ValidatorIndex, ValidatorInfo, VerifyAll, Vote, VoteKind,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const CHAIN: &str = "api-test";

fn key(label: &str) -> Keypair {
    Keypair::from_label(label)
}

fn addr(label: &str) -> Address {
    Address(key(label).public())
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 1_700_000_000_000,
        validators: (0..4)
            .map(|i| ValidatorInfo {
                name: format!("node{i}"),
                public_key: key(&format!("v{i}")).public(),
                node_key: key(&format!("n{i}")).public(),
                stake: 1,
                p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 26000 + i),
                api_address: format!("127.0.0.1:{}", 26100 + i),
            })
            .collect(),
        accounts: vec![GenesisAccount {
            address: addr("alice"),
            balance: 1000,
        }],
        consensus: Default::default(),
    }
}

/// A served API over a store holding the genesis block.
struct Node {
    shared: Arc<Shared>,
    url: String,
    _runtime: tokio::runtime::Runtime,
}

impl Node {
    fn start(wait_timeout_ms: u64) -> Node {
        let genesis = genesis();
        let store = MemoryStore::new();
        let changed = genesis
            .state()
            .accounts()
            .map(|(a, acct)| (*a, *acct))
            .collect();
        let diff = State::default().diff(Height::GENESIS, changed);
        store.append_block(&genesis.block(), &[], &diff).unwrap();
        let mut config = NodeConfig::default();
        config.api.wait_timeout_ms = wait_timeout_ms;
        let shared = Arc::new(Shared::new(
            genesis,
            ValidatorIndex(0),
            config,
            Arc::new(store),
        ));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = super::router(shared.clone());
        runtime.spawn(async move { axum::serve(listener, router).await });
        Node {
            shared,
            url,
            _runtime: runtime,
        }
    }

    /// `GET /metrics`, with an `Accept` header if given: the content type
    /// and the body.
    fn metrics(&self, accept: Option<&str>) -> (String, String) {
        let agent = ureq::Agent::config_builder()
            .proxy(None)
            .build()
            .new_agent();
        let mut request = agent.get(format!("{}/metrics", self.url));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let mut response = request.call().unwrap();
        let content_type = response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        (content_type, response.body_mut().read_to_string().unwrap())
    }

    fn client(&self) -> Client {
        Client::new(&self.url).unwrap()
    }

    /// A request with any method and body; returns the status and the JSON answer.
    fn raw(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .new_agent();
        let url = format!("{}{path}", self.url);
        let result = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            ("DELETE", _) => agent.delete(&url).call(),
            ("POST", Some(b)) => agent.post(&url).content_type("application/json").send(b),
            ("POST", None) => agent.post(&url).send_empty(),
            _ => unreachable!(),
        };
        let mut response = result.unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Executes `txs` as the next block and commits it, as the driver would.
    fn commit(&self, txs: Vec<SignedTransaction>) -> Height {
        let store = &self.shared.store;
        let state = store.load_state().unwrap();
        let parent = store.latest_block().unwrap().unwrap();
        let payload = Payload {
            chain_id: CHAIN.into(),
            height: parent.height().next(),
            round: 0,
            proposer: ValidatorIndex(1),
            timestamp_ms: 1_700_000_001_000,
            txs,
            evidence: vec![],
        };
        let executed = execute(
            &state,
            &payload,
            &self.shared.genesis.fee_recipient(ValidatorIndex(1)),
            self.shared.genesis.consensus.min_fee,
            &VerifyAll,
        );
        let cert = CommitCertificate {
            view: 0,
            seq: payload.height,
            digest: payload.digest(),
            commits: vec![],
        };
        let block = make_block(
            payload,
            parent.hash(),
            executed.diff.root,
            Justification::Pbft(cert),
        );
        store
            .append_block(&block, &executed.receipts, &executed.diff)
            .unwrap();
        // As the driver does: the in-memory state follows the store.
        self.shared.executed.write().apply(&executed.diff);
        self.shared
            .mempool
            .on_commit(&block.txs, |a| store.account(a).ok().flatten());
        let height = block.height();
        self.shared.status.set(|s| {
            s.height = height.0;
            s.latest_block_hash = block.hash();
        });
        height
    }
}

fn transfer(nonce: u64, amount: u64) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN.into(),
        from: addr("alice"),
        to: addr("bob"),
        amount,
        nonce,
        fee: 1,
    }
    .sign(&key("alice"))
}

fn json(tx: &SignedTransaction) -> String {
    serde_json::to_string(tx).unwrap()
}

fn error_code(v: &Value) -> &str {
    v["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {v}"))
}

#[test]
fn reads_status_health_validators_blocks_and_metrics() {
    let node = Node::start(1000);
    let client = node.client();
    let status: crate::api::types::NodeStatus = client.get("/status").unwrap();
    assert_eq!(
        (status.chain_id.as_str(), status.validator_index),
        (CHAIN, 0)
    );
    let health: HealthResponse = client.get("/health").unwrap();
    assert!(health.ok);
    assert_eq!(health.error, None);

    let validators: Vec<ValidatorResponse> = client.get("/validators").unwrap();
    assert_eq!(validators.len(), 4);
    assert_eq!(validators[2].index, ValidatorIndex(2));
    assert_eq!(validators[2].name, "node2");
    assert_eq!(validators[2].public_key, key("v2").public());
    assert_eq!(validators[2].node_key, key("n2").public());
    assert_eq!(validators[2].api_address, "127.0.0.1:26102");

    let latest: BlockResponse = client.get("/blocks/latest").unwrap();
    assert_eq!(
        (latest.height, latest.finality),
        (Height(0), Finality::Final)
    );
    assert_eq!(latest.hash, node.shared.genesis.block().hash());
    let by_height: BlockResponse = client.get("/blocks/0").unwrap();
    let by_hash: BlockResponse = client.get(&format!("/blocks/{}", latest.hash)).unwrap();
    assert_eq!(by_height, latest);
    assert_eq!(by_hash, latest);

    let (status, body) = node.raw("GET", "/blocks/9", None);
    assert_eq!((status, error_code(&body)), (404, "unknown_block"));
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("latest height is 0"),
        "{body}"
    );
    let (status, body) = node.raw("GET", "/blocks/nine", None);
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
    let (status, body) = node.raw("GET", &format!("/blocks/{}", Hash::digest(b"x")), None);
    assert_eq!((status, error_code(&body)), (404, "unknown_block"));

    let (content_type, text) = node.metrics(None);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(text.contains("\nphalanx_height 0\n"), "{text}");
    assert!(text.contains("\nphalanx_committed_txs_total 0\n"), "{text}");
}

/// Prometheus's own `Accept` header (2.x; 3.x sends the same preference).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A node that refused one transaction as a duplicate, dropped a message
/// and counted some consensus traffic, so the exposition has non-zero
/// labelled series.
fn node_with_some_metrics() -> Node {
    let node = Node::start(1000);
    let tx = json(&transfer(0, 10));
    assert_eq!(node.raw("POST", "/txs", Some(&tx)).0, 202);
    assert_eq!(node.raw("POST", "/txs", Some(&tx)).0, 409);
    let m = &node.shared.metrics;
    m.dropped(crate::metrics::DropReason::MalformedTxBatch);
    m.consensus_message(crate::metrics::Direction::Sent, "prepare", 3);
    node
}

#[test]
fn metrics_are_classic_text_unless_the_client_asks_for_openmetrics() {
    use crate::metrics::classic;
    let node = node_with_some_metrics();
    for accept in [None, Some("*/*"), Some("text/plain")] {
        let (content_type, text) = node.metrics(accept);
        assert_eq!(
            content_type, "text/plain; version=0.0.4; charset=utf-8",
            "{accept:?}"
        );
        let families = classic::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let rejected = &families["phalanx_rejected_txs_total"];
        let value = |reason| rejected.value("phalanx_rejected_txs_total", &[("reason", reason)]);
        assert_eq!(value("duplicate"), Some(1.0), "{text}");
        assert_eq!(value("nonce_used"), Some(0.0), "{text}");
        assert!(
            families["phalanx_build_info"]
                .value(
                    "phalanx_build_info",
                    &[
                        ("version", crate::version::VERSION),
                        ("commit", crate::version::GIT_COMMIT)
                    ]
                )
                .is_some(),
            "{text}"
        );
        let messages = &families["phalanx_consensus_messages_total"];
        assert_eq!(
            messages.value(
                "phalanx_consensus_messages_total",
                &[("direction", "sent"), ("kind", "prepare")]
            ),
            Some(3.0)
        );
        let dropped = &families["phalanx_dropped_messages_total"];
        assert_eq!(
            dropped.value(
                "phalanx_dropped_messages_total",
                &[("reason", "malformed_tx_batch")]
            ),
            Some(1.0)
        );
    }

    let (content_type, text) = node.metrics(Some(PROMETHEUS_ACCEPT));
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# TYPE phalanx_rejected_txs counter\n"),
        "{text}"
    );
    assert!(
        text.contains("\nphalanx_rejected_txs_total{reason=\"duplicate\"} 1\n"),
        "{text}"
    );
}

/// Prometheus's linter on the node's real `/metrics`: `promtool check
/// metrics` parses the classic text format and reports, among others,
/// families without help, counters not named `_total` and bad units.
/// Needs `promtool` on PATH (Debian: `apt-get install -y
/// --no-install-recommends prometheus`); skipped, saying so, without it.
#[test]
fn promtool_check_metrics_accepts_the_exposition() {
    use std::io::Write as _;
    let node = node_with_some_metrics();
    let (_, text) = node.metrics(None);
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "SKIPPED promtool_check_metrics_accepts_the_exposition: promtool is not on PATH \
                 (install it with `apt-get install -y --no-install-recommends prometheus`)"
            );
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}\nstdout: {}\nstderr: {}\n--- exposition ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

#[test]
fn unknown_routes_and_methods_are_json_errors() {
    let node = Node::start(1000);
    let (status, body) = node.raw("GET", "/nope", None);
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    assert!(
        body["message"].as_str().unwrap().contains("POST /txs"),
        "the message lists the routes: {body}"
    );
    let (status, body) = node.raw("DELETE", "/status", None);
    assert_eq!((status, error_code(&body)), (405, "method_not_allowed"));
    let (status, body) = node.raw("POST", "/txs?wait=maybe", Some(&json(&transfer(0, 1))));
    assert_eq!((status, error_code(&body)), (400, "bad_query"));
}

#[test]
fn accounts() {
    let node = Node::start(1000);
    let client = node.client();
    let alice: AccountResponse = client.get(&format!("/accounts/{}", addr("alice"))).unwrap();
    assert_eq!(
        (alice.address, alice.balance, alice.next_nonce),
        (addr("alice"), 1000, 0)
    );
    let err = client
        .get::<AccountResponse>(&format!("/accounts/{}", addr("nobody")))
        .unwrap_err();
    assert_eq!(err.api_code(), Some("unknown_account"));
    assert!(err.to_string().contains("never received funds"), "{err}");
    let (status, body) = node.raw("GET", "/accounts/xyz", None);
    assert_eq!((status, error_code(&body)), (400, "bad_hex"));
}

#[test]
fn submission_refusals_have_codes_and_statuses() {
    let node = Node::start(1000);
    let tx = transfer(0, 10);
    let (status, body) = node.raw("POST", "/txs", Some(&json(&tx)));
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["tx_hash"], tx.hash().to_string());
    assert_eq!(body["committed"], false);

    let pending: TxResponse = node.client().get(&format!("/txs/{}", tx.hash())).unwrap();
    assert_eq!(pending.status, TxState::Pending);

    let cases: Vec<(String, u16, &str)> = vec![
        (json(&tx), 409, "duplicate"),
        (json(&transfer(0, 11)), 422, "nonce_taken"),
        (json(&transfer(1, 5000)), 422, "insufficient_funds"),
        (
            json(
                &Transaction {
                    chain_id: CHAIN.into(),
                    from: addr("bob"),
                    to: addr("alice"),
                    amount: 1,
                    nonce: 0,
                    fee: 1,
                }
                .sign(&key("bob")),
            ),
            422,
            "unknown_account",
        ),
        (
            json(
                &Transaction {
                    fee: 0,
                    ..transfer(1, 1).tx.clone()
                }
                .sign(&key("alice")),
            ),
            422,
            "fee_too_low",
        ),
        (
            json(
                &Transaction {
                    chain_id: "other".into(),
                    ..transfer(1, 1).tx
                }
                .sign(&key("alice")),
            ),
            422,
            "wrong_chain_id",
        ),
        (
            json(&SignedTransaction::new(
                transfer(1, 1).tx.clone(),
                Signature([7; 64]),
            )),
            422,
            "bad_signature",
        ),
        ("{\"tx\": ".into(), 400, "malformed"),
        ("{\"hello\": 1}".into(), 400, "malformed"),
        ("".into(), 400, "malformed"),
        (
            json(&tx).replace(&tx.signature.to_string(), "not-hex"),
            400,
            "bad_hex",
        ),
        ("x".repeat(super::MAX_BODY_BYTES + 1), 413, "too_large"),
    ];
    for (body, want_status, want_code) in cases {
        let (status, answer) = node.raw("POST", "/txs", Some(&body));
        assert_eq!(
            (status, error_code(&answer)),
            (want_status, want_code),
            "{answer}"
        );
        assert!(!answer["message"].as_str().unwrap().is_empty());
    }
    let err = node
        .client()
        .get::<TxResponse>(&format!("/txs/{}", transfer(5, 5).hash()))
        .unwrap_err();
    assert_eq!(err.api_code(), Some("unknown_tx"));
    let (status, body) = node.raw("GET", "/txs/1234", None);
    assert_eq!((status, error_code(&body)), (400, "bad_hex"));
}

#[test]
fn committed_transactions_have_receipts_and_resubmission_is_harmless() {
    let node = Node::start(1000);
    let tx = transfer(0, 10);
    let (status, _) = node.raw("POST", "/txs", Some(&json(&tx)));
    assert_eq!(status, 202);
    let height = node.commit(vec![tx.clone()]);

    let found: TxResponse = node.client().get(&format!("/txs/{}", tx.hash())).unwrap();
    assert_eq!(found.status, TxState::Committed);
    assert_eq!(
        (found.height, found.index, found.finality),
        (Some(height), Some(0), Some(Finality::Final))
    );
    assert!(found.receipt.as_ref().unwrap().is_success());
    assert_eq!(found.tx.as_ref(), Some(&tx));

    let block: BlockResponse = node.client().get("/blocks/latest").unwrap();
    assert_eq!(block.tx_hashes, vec![tx.hash()]);
    let alice: AccountResponse = node
        .client()
        .get(&format!("/accounts/{}", addr("alice")))
        .unwrap();
    assert_eq!((alice.balance, alice.next_nonce), (1000 - 11, 1));

    // The same transaction again: its nonce is used, but it is the committed one.
    let (status, body) = node.raw("POST", "/txs", Some(&json(&tx)));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["committed"].as_bool(), body["height"].as_u64()),
        (Some(true), Some(height.0))
    );
    // A different transaction with the used nonce is refused.
    let (status, body) = node.raw("POST", "/txs", Some(&json(&transfer(0, 12))));
    assert_eq!((status, error_code(&body)), (422, "nonce_used"));
}

#[test]
fn wait_returns_the_commit_or_the_hash_on_timeout() {
    let node = Arc::new(Node::start(200));
    // Times out: nothing commits.
    let tx = transfer(0, 10);
    let started = std::time::Instant::now();
    let (status, body) = node.raw("POST", "/txs?wait=true", Some(&json(&tx)));
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["tx_hash"], tx.hash().to_string());
    assert_eq!(body["committed"], false);
    assert!(started.elapsed() >= Duration::from_millis(200));

    // Commits while the request waits (a status change with an unrelated
    // field first, which must not end the wait).
    let committer = {
        let node = node.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            node.shared.status.set(|s| s.view = 1);
            std::thread::sleep(Duration::from_millis(50));
            node.commit(vec![tx])
        })
    };
    // Waiting on a transaction already in the mempool (a retry) is allowed.
    let answer: SubmitResponse = node
        .client()
        .post("/txs?wait=true", &tx, Duration::from_secs(5))
        .unwrap();
    let height = committer.join().unwrap();
    assert!(answer.committed, "{answer:?}");
    assert_eq!(answer.height, Some(height));
    assert!(answer.receipt.unwrap().is_success());
}

#[test]
fn evidence_is_listed() {
    let node = Node::start(1000);
    let empty: Vec<EvidenceResponse> = node.client().get("/evidence").unwrap();
    assert!(empty.is_empty());
    let vote = |d: &[u8]| SignedVote {
        vote: Vote {
            kind: VoteKind::Prepare,
            view: 3,
            seq: Height(7),
            digest: Hash::digest(d),
            voter: ValidatorIndex(2),
        },
        signature: Signature([1; 64]),
    };
    let evidence = Evidence {
        first: vote(b"a"),
        second: SignedVote {
            signature: Signature([2; 64]),
            ..vote(b"b")
        },
    };
    node.shared.store.put_evidence(&evidence).unwrap();
    let list: Vec<EvidenceResponse> = node.client().get("/evidence").unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].id, list[0].offender),
        (evidence.id(), ValidatorIndex(2))
    );
    assert_eq!(list[0].evidence, evidence);
}

#[test]
fn cli_transfer_and_queries_against_a_served_node() {
    use crate::cli::names::KeysDirArg;
    use crate::cli::query::{QueryCommand, QueryOpts};
    use crate::cli::tx::{NonceArg, TransferArgs, TxCommand};
    use crate::client::NodeArg;

    let node = Node::start(1000);
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("alice.json");
    phalanx_crypto::write_key_file(&key_file, phalanx_crypto::KeyKind::Account, &key("alice"))
        .unwrap();
    let node_arg = NodeArg {
        node: node.url.clone(),
    };
    let args = TransferArgs {
        node: node_arg.clone(),
        key: key_file.to_str().unwrap().into(),
        to: addr("bob").to_string(),
        keys: KeysDirArg::default(),
        timeout: Duration::from_secs(60),
        amount: 3,
        fee: 1,
        nonce: NonceArg::Auto,
        wait: None,
        chain_id: None,
        count: 3,
        json: false,
    };
    crate::cli::tx::run(&TxCommand::Transfer(args)).unwrap();
    assert_eq!(
        node.shared.mempool.len(),
        3,
        "three transfers with nonces 0, 1, 2"
    );
    let ready: Vec<u64> = node
        .shared
        .mempool
        .take_ready()
        .iter()
        .map(|t| t.tx.nonce)
        .collect();
    assert_eq!(ready.len(), 3);

    // An unfunded key: a clear message, before anything is signed.
    let bob_file = dir.path().join("bob.json");
    phalanx_crypto::write_key_file(&bob_file, phalanx_crypto::KeyKind::Account, &key("bob"))
        .unwrap();
    let args = TransferArgs {
        node: node_arg.clone(),
        key: bob_file.to_str().unwrap().into(),
        to: addr("alice").to_string(),
        keys: KeysDirArg::default(),
        timeout: Duration::from_secs(60),
        amount: 1,
        fee: 1,
        nonce: NonceArg::Auto,
        wait: None,
        chain_id: None,
        count: 1,
        json: false,
    };
    let err = crate::cli::tx::run(&TxCommand::Transfer(args))
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no funds"), "{err}");

    // A refused submission prints the node's message.
    let args = TransferArgs {
        node: node_arg.clone(),
        key: key_file.to_str().unwrap().into(),
        to: addr("bob").to_string(),
        keys: KeysDirArg::default(),
        timeout: Duration::from_secs(60),
        amount: 1,
        fee: 1,
        nonce: NonceArg::Fixed(0),
        wait: None,
        chain_id: None,
        count: 1,
        json: false,
    };
    let err = crate::cli::tx::run(&TxCommand::Transfer(args))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("already pending") && err.contains("nonce_taken"),
        "{err}"
    );

    let opts = |json| QueryOpts {
        node: node_arg.clone(),
        json,
    };
    for json in [false, true] {
        crate::cli::query::run(&QueryCommand::Status(opts(json))).unwrap();
        crate::cli::query::run(&QueryCommand::Block {
            id: "latest".into(),
            opts: opts(json),
        })
        .unwrap();
        crate::cli::query::run(&QueryCommand::Account {
            account: addr("alice").to_string(),
            keys: KeysDirArg::default(),
            opts: opts(json),
        })
        .unwrap();
        crate::cli::query::run(&QueryCommand::Validators(opts(json))).unwrap();
        crate::cli::query::run(&QueryCommand::Evidence(opts(json))).unwrap();
    }
    let err = crate::cli::query::run(&QueryCommand::Tx {
        hash: Hash::digest(b"?"),
        opts: opts(false),
    })
    .unwrap_err();
    assert!(err.to_string().contains("unknown to this node"), "{err}");
}

#[test]
fn batch_submit_refuses_per_transaction_and_queues_the_rest() {
    let node = Node::start(1000);
    let good0 = transfer(0, 5);
    let mut forged = transfer(1, 5);
    forged.signature.0[3] ^= 1;
    let good1 = transfer(1, 6);
    let body = serde_json::to_string(&vec![good0.clone(), forged, good1, good0]).unwrap();
    let (status, answer) = node.raw("POST", "/txs/batch", Some(&body));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 2, "{answer}");
    let rejected = answer["rejected"].as_array().unwrap();
    let got: Vec<(u64, &str)> = rejected
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(got, vec![(1, "bad_signature"), (3, "duplicate")]);
    assert_eq!(node.shared.mempool.len(), 2);

    // Not an array of transactions, or too many: the whole request fails.
    let (status, answer) = node.raw("POST", "/txs/batch", Some("{\"tx\": 1}"));
    assert_eq!((status, error_code(&answer)), (400, "malformed"));
    let too_many = format!(
        "[{}]",
        vec![json(&transfer(2, 1)); super::submit::MAX_BATCH + 1].join(",")
    );
    let (status, answer) = node.raw("POST", "/txs/batch", Some(&too_many));
    assert_eq!(
        (status, error_code(&answer)),
        (413, "too_large"),
        "{answer}"
    );
    assert_eq!(node.shared.mempool.len(), 2);
}

#[test]
fn commits_lists_recent_commits_and_long_polls() {
    let node = Node::start(1000);
    for h in 1..=3u64 {
        node.shared.commits.push(crate::api::types::CommitRecord {
            height: h,
            block_hash: phalanx_crypto::Hash([h as u8; 32]),
            proposed_at_ms: 1,
            committed_at_ms: 10 * h,
            tx_hashes: vec![phalanx_crypto::Hash([9; 32]); h as usize],
        });
    }
    node.shared.status.set(|s| s.height = 3);
    let answer: crate::api::types::CommitsResponse = node.client().get("/commits?from=2").unwrap();
    assert_eq!((answer.latest, answer.oldest_kept), (3, 1));
    let heights: Vec<u64> = answer.commits.iter().map(|c| c.height).collect();
    assert_eq!(heights, vec![2, 3]);
    assert_eq!(answer.commits[1].tx_hashes.len(), 3);
    // Nothing at height 9 yet: waits about wait_ms, then answers empty.
    let started = std::time::Instant::now();
    let answer: crate::api::types::CommitsResponse =
        node.client().get("/commits?from=9&wait_ms=300").unwrap();
    assert!(answer.commits.is_empty());
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    let (status, answer) = node.raw("GET", "/commits?from=x", None);
    assert_eq!((status, error_code(&answer)), (400, "bad_query"));
}

/// `--wait` outlives the node's own wait: the node gives up after its
/// `wait_timeout_ms` (here 200 ms) and the CLI polls until the commit, which
/// comes later; accounts are given by name from a keys folder.
#[test]
fn transfer_wait_outlasts_the_node_wait_and_takes_accounts_by_name() {
    use crate::cli::names::KeysDirArg;
    use crate::cli::tx::{NonceArg, TransferArgs, TxCommand, WaitArgs};
    use crate::client::NodeArg;

    let node = Node::start(200);
    let keys = tempfile::tempdir().unwrap();
    for name in ["alice", "bob"] {
        phalanx_crypto::write_key_file(
            &keys.path().join(format!("{name}.json")),
            phalanx_crypto::KeyKind::Account,
            &key(name),
        )
        .unwrap();
    }
    let node_arg = NodeArg {
        node: node.url.clone(),
    };
    let keys_arg = KeysDirArg {
        keys_dir: Some(keys.path().to_path_buf()),
    };
    let args = TransferArgs {
        node: node_arg.clone(),
        key: "alice".into(),
        to: "bob".into(),
        keys: keys_arg.clone(),
        amount: 7,
        fee: 1,
        nonce: NonceArg::Auto,
        wait: Some(crate::cli::tx::WaitFor::Final),
        timeout: Duration::from_secs(20),
        chain_id: None,
        count: 1,
        json: false,
    };
    let shared = node.shared.clone();
    let committer = std::thread::spawn(move || {
        // Commit well after the node's 200 ms wait has answered "pending".
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while shared.mempool.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the transfer never arrived"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(800));
        shared.mempool.take_ready()
    });
    let node_ref = &node;
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| crate::cli::tx::run(&TxCommand::Transfer(args)));
        let txs = committer.join().unwrap();
        assert_eq!(txs.len(), 1);
        assert_eq!(
            txs[0].tx.to,
            addr("bob"),
            "--to bob resolved from the keys folder"
        );
        let tx = txs[0].clone();
        node_ref.commit(vec![tx.clone()]);
        sender
            .join()
            .unwrap()
            .expect("the waited transfer committed");

        // `phalanx tx wait` on the committed hash answers at once.
        let started = std::time::Instant::now();
        crate::cli::tx::run(&TxCommand::Wait(WaitArgs {
            hash: tx.hash(),
            node: node_arg.clone(),
            timeout: Duration::from_secs(5),
            wait_for: crate::cli::tx::WaitFor::Final,
            json: false,
        }))
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
    });
    let account: AccountResponse = node
        .client()
        .get(&format!("/accounts/{}", addr("bob")))
        .unwrap();
    assert_eq!(account.balance, 7);

    // A hash that never commits: a clear error once the timeout passes.
    let err = crate::cli::tx::run(&TxCommand::Wait(WaitArgs {
        hash: Hash::digest(b"never sent"),
        node: node_arg,
        timeout: Duration::from_millis(500),
        wait_for: crate::cli::tx::WaitFor::Final,
        json: false,
    }))
    .unwrap_err()
    .to_string();
    assert!(err.contains("did not commit within"), "{err}");
}

/// Issue 18, finding 8: once the driver has stopped (a write failed), the
/// node still answers reads, but `/health` fails with the reason and
/// `/status` says why.
#[test]
fn health_fails_once_the_driver_has_stopped() {
    let node = Node::start(1000);
    node.shared
        .status
        .set(|s| s.stopped = Some("writing the vote log: No space left on device".into()));
    let (status, answer) = node.raw("GET", "/health", None);
    assert_eq!(status, 503, "{answer}");
    let health: HealthResponse = serde_json::from_value(answer).unwrap();
    assert!(!health.ok);
    assert!(health.error.unwrap().contains("No space left"));
    let st: crate::api::types::NodeStatus = node.client().get("/status").unwrap();
    assert!(st.stopped.is_some());
    let latest: BlockResponse = node.client().get("/blocks/latest").unwrap();
    assert_eq!(latest.height, Height(0), "reads still work");
}

/// Issue 18, finding 6: client batches are read and checked a bounded
/// number at a time; one more is answered 503 `busy` before its body is
/// read, and taken once there is room.
#[test]
fn client_batches_beyond_the_bound_are_answered_busy() {
    let node = Node::start(1000);
    let held: Vec<_> = (0..crate::intake::MAX_CLIENT_BATCHES_IN_FLIGHT)
        .map(|_| node.shared.intake.admit_client_batch().expect("room"))
        .collect();
    let body = serde_json::to_string(&vec![transfer(0, 5)]).unwrap();
    let (status, answer) = node.raw("POST", "/txs/batch", Some(&body));
    assert_eq!((status, error_code(&answer)), (503, "busy"), "{answer}");
    assert!(node.shared.mempool.is_empty());
    // Single transactions are not held up by it.
    let (status, answer) = node.raw("POST", "/txs", Some(&json(&transfer(0, 5))));
    assert_eq!(status, 202, "{answer}");
    drop(held);
    let (status, answer) = node.raw(
        "POST",
        "/txs/batch",
        Some(&serde_json::to_string(&vec![transfer(1, 5)]).unwrap()),
    );
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
}

/// The live page's stream, read as a browser's EventSource would.
struct EventStream {
    lines: std::io::Lines<std::io::BufReader<Box<dyn std::io::Read + Send>>>,
    cors: Option<String>,
}

impl EventStream {
    fn open(node: &Node) -> Result<EventStream, (u16, Value)> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .new_agent();
        let mut response = agent.get(format!("{}/events", node.url)).call().unwrap();
        let status = response.status().as_u16();
        if status != 200 {
            let text = response.body_mut().read_to_string().unwrap();
            return Err((status, serde_json::from_str(&text).unwrap()));
        }
        let cors = response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned());
        let reader: Box<dyn std::io::Read + Send> = Box::new(response.into_body().into_reader());
        use std::io::BufRead as _;
        Ok(EventStream {
            lines: std::io::BufReader::new(reader).lines(),
            cors,
        })
    }

    /// The next event's name and data (keep-alive comments skipped).
    fn next(&mut self) -> (String, Value) {
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            let line = self.lines.next().expect("the stream ended").unwrap();
            if line.is_empty() && !name.is_empty() {
                return (name, serde_json::from_str(&data).unwrap());
            }
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_owned();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data.push_str(d);
            }
        }
    }

    /// Events until `name`, which it returns; the ones before are dropped.
    fn until(&mut self, name: &str) -> Value {
        loop {
            let (n, v) = self.next();
            if n == name {
                return v;
            }
        }
    }
}

/// Issue 21: the page and its files come out of the binary, with a policy
/// that keeps it from loading anything from elsewhere.
#[test]
fn the_live_page_is_served_from_the_binary() {
    let node = Node::start(1000);
    let agent = ureq::Agent::config_builder()
        .proxy(None)
        .build()
        .new_agent();
    for (path, kind) in [
        ("/", "text/html"),
        ("/page/app.js", "text/javascript"),
        ("/page/style.css", "text/css"),
    ] {
        let mut response = agent.get(format!("{}{path}", node.url)).call().unwrap();
        let header = |h: &str| {
            response
                .headers()
                .get(h)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        assert!(
            header("content-security-policy").starts_with("default-src 'self'"),
            "{path}"
        );
        let body = response.body_mut().read_to_string().unwrap();
        assert!(!body.is_empty(), "{path}");
        // Nothing fetched from the internet: the page works offline.
        for pattern in ["https://", "<script src=\"http", "@import url(http"] {
            assert!(!body.contains(pattern), "{path} refers to {pattern}");
        }
        if path == "/" {
            assert!(body.contains("/page/app.js") && body.contains("/page/style.css"));
        }
        // The behaviours its fault buttons offer are the node's.
        if path == "/page/app.js" {
            let line = body
                .lines()
                .find(|l| l.starts_with("const BEHAVIOURS = ["))
                .expect("the page's list of behaviours");
            let list = &line[line.find('[').unwrap()..line.find(']').unwrap()];
            let names: Vec<&str> = list.split('\'').skip(1).step_by(2).collect();
            assert!(names.len() >= 5, "{line}");
            for name in names {
                name.parse::<crate::injection::Behaviour>()
                    .unwrap_or_else(|e| panic!("the page offers {name:?}: {e}"));
            }
        }
    }
}

/// Issue 21: `/events` says who the node is and where the others are,
/// sends its status on connect and on change, and what the node records,
/// in batches; other origins may read it.
#[test]
fn events_stream_hello_status_changes_and_batches() {
    let node = Node::start(1000);
    let mut events = EventStream::open(&node).unwrap();
    assert_eq!(events.cors.as_deref(), Some("*"));
    let (name, hello) = events.next();
    assert_eq!(name, "hello");
    assert_eq!(hello["validator_index"], 0);
    assert_eq!(hello["n"], 4);
    assert_eq!(hello["chain_id"], CHAIN);
    assert_eq!(hello["nodes"][3]["api"], "http://127.0.0.1:26103");
    let (name, status) = events.next();
    assert_eq!(
        (name.as_str(), &status["height"]),
        ("status", &Value::from(0))
    );

    node.shared.status.set(|s| s.height = 7);
    assert_eq!(events.until("status")["height"], 7);
    // A republished status with nothing new is not sent again.
    for _ in 0..3 {
        node.shared.status.set(|_| {});
        std::thread::sleep(super::live::STATUS_EVERY);
    }

    assert!(node.shared.watch.watched());
    for h in 1..=3 {
        node.shared
            .watch
            .record(|| crate::watch::WatchEvent::Finalized { t: 1, height: h });
    }
    let mut heights = Vec::new();
    while heights.len() < 3 {
        let (name, batch) = events.next();
        assert_eq!(name, "batch", "{batch}");
        for item in batch.as_array().unwrap() {
            assert_eq!(item["type"], "finalized");
            heights.push(item["height"].as_u64().unwrap());
        }
    }
    assert_eq!(heights, [1, 2, 3]);
    drop(events);
    // The server notices the client left (on its next write) and frees
    // the place.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while node.shared.watch.watched() {
        node.shared
            .watch
            .record(|| crate::watch::WatchEvent::Finalized { t: 1, height: 0 });
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher was never dropped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 21: a client that does not keep up is told what it missed, and
/// what it is sent stays bounded; past the bound on watchers, 503.
#[test]
fn events_are_bounded_per_client_and_in_clients() {
    let node = Node::start(1000);
    let mut slow = EventStream::open(&node).unwrap();
    slow.until("status");
    let total = crate::watch::RING as u64 * 3;
    for h in 0..total {
        node.shared
            .watch
            .record(|| crate::watch::WatchEvent::Finalized { t: 1, height: h });
    }
    let (mut got, mut missed, mut last) = (0u64, 0u64, None);
    while last != Some(total - 1) {
        let (name, data) = slow.next();
        match name.as_str() {
            "batch" => {
                let items = data.as_array().unwrap();
                assert!(items.len() <= super::live::BATCH_MAX);
                got += items.len() as u64;
                last = items.last().and_then(|i| i["height"].as_u64());
            }
            "lagged" => missed += data["missed"].as_u64().unwrap(),
            _ => {}
        }
    }
    assert!(missed > 0, "a client that fell behind was not told");
    assert_eq!(
        got + missed,
        total,
        "every event was sent or counted as missed"
    );

    let mut held = vec![slow];
    while held.len() < crate::watch::MAX_WATCHERS {
        held.push(EventStream::open(&node).unwrap());
    }
    let Err((status, answer)) = EventStream::open(&node) else {
        panic!("one watcher too many was let in");
    };
    assert_eq!((status, error_code(&answer)), (503, "too_many_watchers"));
}
