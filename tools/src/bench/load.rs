//! The load: transfers signed and encoded before the timed window, then
//! submitted in batches (`POST /txs/batch`) open-loop at a target rate or
//! closed-loop as fast as the nodes take them.

use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::{Address, SignedTransaction, Transaction};
use phalanx_node::api::types::{AccountResponse, BatchSubmitResponse};
use phalanx_node::client::Client;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One request's worth of transactions, ready to send.
#[derive(Debug)]
pub struct Batch {
    /// The JSON body of `POST /txs/batch`.
    pub body: Vec<u8>,
    /// The transactions' hashes, in order.
    pub hashes: Vec<Hash>,
}

/// Milliseconds since the Unix epoch, with sub-millisecond precision (the
/// nodes' commit times are on the same clock: everything runs on one machine).
pub fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Each account's next nonce, from the committed state.
pub fn next_nonces(api: &str, accounts: &[Keypair]) -> anyhow::Result<Vec<u64>> {
    let client = Client::new(api)?;
    accounts
        .iter()
        .map(|k| {
            let a: AccountResponse = client.get(&format!("/accounts/{}", Address(k.public())))?;
            Ok(a.next_nonce)
        })
        .collect()
}

/// Signs `total` transfers and packs them into batches of `batch_size`, in
/// submission order, for `nodes` nodes: batch k goes to node k mod `nodes`.
///
/// Each account sends through one node only (account i through node
/// i mod `nodes`), as a wallet talks to its own node, and each node's
/// batches interleave its accounts round-robin with every account's nonces
/// consecutive from `nonces`. (Spreading one account's consecutive nonces
/// over every node made each transaction wait for the gossip of all the
/// others before the mempool could release it: at n = 16 one lost gossip
/// message held an account back everywhere.) Signing runs on every core.
pub fn presign(
    accounts: &[Keypair],
    nonces: &[u64],
    chain_id: &str,
    total: usize,
    batch_size: usize,
    nodes: usize,
) -> Vec<Batch> {
    let a = accounts.len().max(1);
    // The caller gives every node at least one account; fewer accounts
    // would leave nodes idle and break "batch k to node k mod nodes".
    let nodes = nodes.clamp(1, a);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Node j's accounts j, j + nodes, ... share node j's part of `total`.
    let node_total = |j: usize| total / nodes + usize::from(j < total % nodes);
    let accounts_of = |j: usize| (a - j).div_ceil(nodes);
    let count_of = |i: usize| {
        let (j, rank) = (i % nodes, i / nodes);
        let (t, m) = (node_total(j), accounts_of(j));
        t / m + usize::from(rank < t % m)
    };
    // Per account, its transactions in nonce order.
    let per_account: Vec<Vec<SignedTransaction>> = std::thread::scope(|s| {
        let chunks: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..a)
                        .step_by(threads)
                        .map(|i| {
                            let key = &accounts[i];
                            let to = Address(accounts[(i + 1) % a].public());
                            (0..count_of(i) as u64)
                                .map(|j| {
                                    Transaction {
                                        chain_id: chain_id.to_owned(),
                                        from: Address(key.public()),
                                        to,
                                        amount: 1,
                                        nonce: nonces[i] + j,
                                        fee: 1,
                                    }
                                    .sign(key)
                                })
                                .collect::<Vec<_>>()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out: Vec<Vec<SignedTransaction>> = vec![Vec::new(); a];
        for (t, h) in chunks.into_iter().enumerate() {
            for (k, txs) in h.join().expect("signing thread").into_iter().enumerate() {
                out[t + k * threads] = txs;
            }
        }
        out
    });
    // Per node, its accounts round-robin, cut into batches.
    let mut iters: Vec<_> = per_account.into_iter().map(Vec::into_iter).collect();
    let mut per_node: Vec<std::collections::VecDeque<Batch>> = (0..nodes)
        .map(|j| {
            let mut order = Vec::with_capacity(node_total(j));
            loop {
                let mut any = false;
                for it in iters.iter_mut().skip(j).step_by(nodes) {
                    if let Some(tx) = it.next() {
                        order.push(tx);
                        any = true;
                    }
                }
                if !any {
                    break;
                }
            }
            order
                .chunks(batch_size.max(1))
                .map(|chunk| Batch {
                    body: serde_json::to_vec(chunk).expect("transactions encode"),
                    hashes: chunk.iter().map(SignedTransaction::hash).collect(),
                })
                .collect()
        })
        .collect();
    // Batch k for node k mod nodes, while every node has batches left (the
    // pacing and the lanes of `submit` rely on that assignment).
    let mut batches = Vec::new();
    while per_node.iter().all(|q| !q.is_empty()) {
        for q in &mut per_node {
            batches.extend(q.pop_front());
        }
    }
    batches
}

/// How to pace submissions.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// Open loop: batch k is due at `k × batch / rate` seconds.
    Rate(f64),
    /// Closed loop: as fast as accepted, with at most this many accepted
    /// transactions not yet committed everywhere.
    Max {
        /// The in-flight bound.
        window: u64,
    },
}

/// What happened to the submissions.
#[derive(Debug, Default)]
pub struct Submitted {
    /// Per batch: when its request started (Unix ms), if it was sent.
    pub sent_at: Vec<Option<f64>>,
    /// Transactions the nodes accepted.
    pub accepted: u64,
    /// Refusals by error code.
    pub rejected: BTreeMap<String, u64>,
    /// Requests that failed outright (connection, timeout).
    pub failed_requests: u64,
}

/// Live counters shared with the observers and the progress bar.
#[derive(Debug, Default)]
pub struct Live {
    /// Transactions sent.
    pub sent: AtomicU64,
    /// Transactions accepted.
    pub accepted: AtomicU64,
    /// Transactions committed on every node (the slowest node's count).
    pub committed: AtomicU64,
    /// Set to stop submitting.
    pub stop: AtomicBool,
}

/// Submits `batches` to `apis` (batch k to node k mod n) with `pace`, using
/// `threads_per_node` connections per node, until all are sent or
/// `live.stop` or `deadline`.
pub fn submit(
    batches: &[Batch],
    apis: &[String],
    pace: Pace,
    threads_per_node: usize,
    start: Instant,
    deadline: Instant,
    live: &Live,
) -> Submitted {
    let lanes = apis.len() * threads_per_node.max(1);
    let result = Mutex::new(Submitted {
        sent_at: vec![None; batches.len()],
        ..Submitted::default()
    });
    let batch_len = batches.first().map_or(1, |b| b.hashes.len()) as f64;
    std::thread::scope(|s| {
        for lane in 0..lanes {
            let api = &apis[lane % apis.len()];
            let result = &result;
            s.spawn(move || {
                let agent = agent();
                let url = format!("{api}/txs/batch");
                for k in (lane..batches.len()).step_by(lanes) {
                    if live.stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                        return;
                    }
                    match pace {
                        Pace::Rate(rate) => {
                            let due = start + Duration::from_secs_f64(k as f64 * batch_len / rate);
                            if due >= deadline {
                                return;
                            }
                            let now = Instant::now();
                            if due > now {
                                std::thread::sleep(due - now);
                            }
                        }
                        Pace::Max { window } => {
                            while live
                                .accepted
                                .load(Ordering::Relaxed)
                                .saturating_sub(live.committed.load(Ordering::Relaxed))
                                > window
                            {
                                if live.stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                                    return;
                                }
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                    let batch = &batches[k];
                    let sent_at = unix_ms();
                    live.sent
                        .fetch_add(batch.hashes.len() as u64, Ordering::Relaxed);
                    let answer = post(&agent, &url, &batch.body);
                    let mut r = result.lock().unwrap_or_else(|e| e.into_inner());
                    r.sent_at[k] = Some(sent_at);
                    match answer {
                        Ok(a) => {
                            live.accepted
                                .fetch_add(a.accepted as u64, Ordering::Relaxed);
                            r.accepted += a.accepted as u64;
                            for rej in a.rejected {
                                *r.rejected.entry(rej.code).or_default() += 1;
                            }
                        }
                        Err(_) => r.failed_requests += 1,
                    }
                }
            });
        }
    });
    result.into_inner().unwrap_or_else(|e| e.into_inner())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> anyhow::Result<BatchSubmitResponse> {
    let mut response = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body)?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string()?;
    anyhow::ensure!(status == 200, "HTTP {status}: {text}");
    Ok(serde_json::from_str(&text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_account_goes_through_one_node_with_consecutive_nonces() {
        let accounts: Vec<Keypair> = (0..4)
            .map(|i| Keypair::from_label(&format!("bench-test-{i}")))
            .collect();
        // Two nodes: accounts 0 and 2 through node 0, 1 and 3 through node 1.
        let batches = presign(&accounts, &[5, 0, 9, 2], "c", 12, 2, 2);
        assert_eq!(batches.len(), 6);
        let account_of = |t: &SignedTransaction| {
            accounts
                .iter()
                .position(|k| Address(k.public()) == t.tx.from)
                .unwrap()
        };
        let mut seen: Vec<Vec<(usize, u64)>> = vec![Vec::new(); 2];
        for (k, b) in batches.iter().enumerate() {
            let txs: Vec<SignedTransaction> = serde_json::from_slice(&b.body).unwrap();
            assert_eq!(txs.len(), 2);
            for (t, h) in txs.iter().zip(&b.hashes) {
                assert!(t.verify().is_ok());
                assert_eq!(t.hash(), *h);
                seen[k % 2].push((account_of(t), t.tx.nonce));
            }
        }
        // Round-robin over the node's accounts; nonces consecutive per account.
        assert_eq!(
            seen[0],
            vec![(0, 5), (2, 9), (0, 6), (2, 10), (0, 7), (2, 11)]
        );
        assert_eq!(
            seen[1],
            vec![(1, 0), (3, 2), (1, 1), (3, 3), (1, 2), (3, 4)]
        );
    }
}
