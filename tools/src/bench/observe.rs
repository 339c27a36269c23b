//! Watching commits: one long-polling reader of `GET /commits` per node,
//! then the merge that turns what every node saw into the figures users ask
//! for (committed tx/s on all nodes, submit→commit latency, blocks/s).

use super::load::Live;
use phalanx_crypto::Hash;
use phalanx_node::api::types::CommitRecord;
use phalanx_node::api::types::CommitsResponse;
use phalanx_node::client::Client;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Reads node `api`'s commits from height `from` until `stop` is set and
/// the node has nothing newer; counts committed transactions in `count`.
pub fn observe(
    api: &str,
    from: u64,
    stop: &AtomicBool,
    count: &AtomicU64,
    on_commits: impl Fn(),
) -> anyhow::Result<Vec<CommitRecord>> {
    let client = Client::new(api)?;
    let mut next = from;
    let mut records = Vec::new();
    let mut failures = 0;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let wait = if stopping { 0 } else { 250 };
        let answer: CommitsResponse =
            match client.get(&format!("/commits?from={next}&limit=1000&wait_ms={wait}")) {
                Ok(a) => {
                    failures = 0;
                    a
                }
                Err(e) => {
                    failures += 1;
                    anyhow::ensure!(failures < 20, "lost contact with {api}: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
        anyhow::ensure!(
            answer.oldest_kept <= next || answer.commits.is_empty() && answer.latest < next,
            "{api} no longer remembers commit times from height {next} (oldest kept {}): \
             the benchmark fell behind",
            answer.oldest_kept
        );
        let got = answer.commits.len();
        for r in answer.commits {
            count.fetch_add(r.tx_hashes.len() as u64, Ordering::Relaxed);
            next = r.height + 1;
            records.push(r);
        }
        if got > 0 {
            on_commits();
        }
        if stopping && got == 0 {
            return Ok(records);
        }
    }
}

/// Keeps `live.committed` at the slowest node's count.
/// Waits up to `wait` for every accepted transaction to commit on every
/// observed node (the load has ended); returns early once they have, or
/// when an observer gave up.
pub fn drain(live: &Live, counts: &[AtomicU64], accepted: u64, wait: Duration) {
    let until = std::time::Instant::now() + wait;
    while std::time::Instant::now() < until
        && live.committed.load(Ordering::Relaxed) < accepted
        && !live.stop.load(Ordering::Relaxed)
    {
        std::thread::sleep(Duration::from_millis(50));
        update_min(live, counts);
    }
}

/// Longest-chain engines (PoW, PoS): a reorg replaces blocks the observers
/// already read, so their streams are not the chain. Once the run is
/// over, read each node's commit log again from `from` (a reorg truncates
/// it, so it is the node's current chain with the time it executed each
/// block) and leave out the last `tip` heights, which may still change.
pub fn settled(apis: &[String], from: u64, tip: u64) -> anyhow::Result<Vec<Vec<CommitRecord>>> {
    let mut per_node = Vec::new();
    for api in apis {
        let client = Client::new(api)?;
        let mut records: Vec<CommitRecord> = Vec::new();
        let mut next = from;
        loop {
            let answer: CommitsResponse =
                client.get(&format!("/commits?from={next}&limit=1000&wait_ms=0"))?;
            let Some(last) = answer.commits.last() else {
                break;
            };
            next = last.height + 1;
            records.extend(answer.commits);
        }
        per_node.push(records);
    }
    let top = per_node
        .iter()
        .map(|rs| rs.last().map_or(0, |r| r.height))
        .min()
        .unwrap_or(0);
    let keep = top.saturating_sub(tip);
    for rs in &mut per_node {
        rs.retain(|r| r.height <= keep);
    }
    Ok(per_node)
}

/// Joins the observer threads, in node order, with their commit records.
pub fn join_observers(
    observers: Vec<std::thread::ScopedJoinHandle<'_, anyhow::Result<Vec<CommitRecord>>>>,
) -> anyhow::Result<Vec<Vec<CommitRecord>>> {
    observers
        .into_iter()
        .map(|o| {
            o.join()
                .map_err(|_| anyhow::anyhow!("an observer thread panicked"))?
        })
        .collect()
}

pub fn update_min(live: &Live, counts: &[AtomicU64]) {
    let min = counts
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0);
    live.committed.store(min, Ordering::Relaxed);
}

/// The first height where two nodes stored different blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// The height.
    pub height: u64,
    /// (node index, block hash) per node that has the height.
    pub hashes: Vec<(usize, Hash)>,
}

/// One block as every node committed it.
#[derive(Clone, Debug)]
pub struct MergedBlock {
    /// When the last node had it (Unix ms).
    pub all_committed_at: f64,
    /// When the first node had it (Unix ms).
    pub first_committed_at: f64,
    /// The proposer's timestamp (Unix ms, the proposer's clock).
    pub proposed_at: f64,
    /// Its transactions.
    pub tx_hashes: Vec<Hash>,
}

/// The heights every node committed, in order, with the time the slowest
/// node committed each; or the first divergence.
pub fn merge(per_node: &[Vec<CommitRecord>]) -> Result<Vec<MergedBlock>, Divergence> {
    let maps: Vec<HashMap<u64, &CommitRecord>> = per_node
        .iter()
        .map(|rs| rs.iter().map(|r| (r.height, r)).collect())
        .collect();
    let mut heights: Vec<u64> = per_node.iter().flatten().map(|r| r.height).collect();
    heights.sort_unstable();
    heights.dedup();
    let mut merged = Vec::new();
    for h in heights {
        let at: Vec<(usize, &CommitRecord)> = maps
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.get(&h).map(|r| (i, *r)))
            .collect();
        if at.iter().any(|(_, r)| r.block_hash != at[0].1.block_hash) {
            return Err(Divergence {
                height: h,
                hashes: at.iter().map(|(i, r)| (*i, r.block_hash)).collect(),
            });
        }
        if at.len() == maps.len() {
            merged.push(MergedBlock {
                all_committed_at: at
                    .iter()
                    .map(|(_, r)| r.committed_at_ms as f64)
                    .fold(0.0, f64::max),
                first_committed_at: at
                    .iter()
                    .map(|(_, r)| r.committed_at_ms as f64)
                    .fold(f64::INFINITY, f64::min),
                proposed_at: at[0].1.proposed_at_ms as f64,
                tx_hashes: at[0].1.tx_hashes.clone(),
            });
        }
    }
    Ok(merged)
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// Nearest-rank percentiles of `samples` (sorted in place); zeros if empty.
pub fn percentiles(samples: &mut [f64]) -> Percentiles {
    if samples.is_empty() {
        return Percentiles::default();
    }
    samples.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let i = ((p / 100.0) * samples.len() as f64).ceil() as usize;
        samples[i.clamp(1, samples.len()) - 1]
    };
    Percentiles {
        p50: rank(50.0),
        p90: rank(90.0),
        p99: rank(99.0),
        max: samples[samples.len() - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(height: u64, hash: u8, at: u64, txs: &[u8]) -> CommitRecord {
        CommitRecord {
            height,
            block_hash: Hash([hash; 32]),
            proposed_at_ms: 0,
            committed_at_ms: at,
            tx_hashes: txs.iter().map(|t| Hash([*t; 32])).collect(),
        }
    }

    #[test]
    fn merge_takes_the_slowest_node_and_only_heights_all_have() {
        let a = vec![rec(1, 1, 100, &[7]), rec(2, 2, 200, &[8, 9])];
        let b = vec![rec(1, 1, 130, &[7])];
        let m = merge(&[a, b]).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].tx_hashes, vec![Hash([7; 32])]);
        assert_eq!(m[0].all_committed_at, 130.0);
    }

    #[test]
    fn merge_reports_the_first_fork() {
        let a = vec![rec(1, 1, 100, &[]), rec(2, 2, 200, &[])];
        let b = vec![rec(1, 1, 100, &[]), rec(2, 3, 200, &[])];
        let d = merge(&[a, b]).unwrap_err();
        assert_eq!(d.height, 2);
        assert_eq!(d.hashes, vec![(0, Hash([2; 32])), (1, Hash([3; 32]))]);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = percentiles(&mut v);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(percentiles(&mut []), Percentiles::default());
        assert_eq!(percentiles(&mut [3.0]).p99, 3.0);
    }
}
