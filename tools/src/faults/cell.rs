//! One cell of the fault matrix: launch a testnet, load it, break f nodes
//! at 30 % of the measured window, heal at 65 %, and measure.
//!
//! "Live" nodes are the ones the fault never touches: load goes to them,
//! and throughput and latency count a transaction once every live node has
//! executed it. The safety verdict compares the chains of every honest node
//! still running at the end (paused, restarted and partitioned nodes
//! included; Byzantine ones not), height by height.

use super::{Fault, FaultsArgs, Setup};
use crate::bench::cluster::Cluster;
use crate::bench::load::{self, Live, Pace};
use crate::bench::observe::{self, Percentiles};
use phalanx_consensus::FaultModel;
use phalanx_crypto::Hash;
use phalanx_node::api::types::{CommitRecord, NodeStatus};
use phalanx_node::api::types::{CommitsResponse, EvidenceResponse};
use phalanx_node::client::Client;
use phalanx_testnet::progress::{self, Progress};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where the fault comes and goes, as fractions of the measured window.
const FAULT_AT: f64 = 0.30;
const HEAL_AT: f64 = 0.65;
/// Width of a timeline bucket, seconds.
const BUCKET_S: f64 = 0.5;
/// How long a cell without a quorum waits, once its load has ended, for
/// every node to hold nothing tentative again.
pub const FINALITY_WAIT: Duration = Duration::from_secs(60);
/// How often the finality sampler reads every node's `/status`.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// The measured window of a cell: `--duration`, but at least 50 s for the
/// cells without a quorum, whose outage (35 % of it) must outlast PBFT's
/// two view changes (about 8 s) before the fallback makes blocks.
pub fn duration(args: &FaultsArgs, fault: Fault) -> f64 {
    if fault.loses_quorum() {
        args.duration.max(50.0)
    } else {
        args.duration
    }
}

/// Finality through a cell, from every node's `/status` twice a second.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FinalityFigures {
    /// The highest final height at the fault.
    pub final_at_fault: u64,
    /// Blocks above the final one on the longest branch just before the
    /// heal: what the fallback made during the outage (0: PBFT alone halted).
    pub tentative_blocks: u64,
    /// The most blocks any node held above its final block, at any time.
    pub max_finality_lag: u64,
    /// From the heal until every node answered with nothing tentative
    /// (finality lag 0, back in PBFT mode) and a final block above the
    /// highest one at the heal, ms (None: not within the cell and
    /// [`FINALITY_WAIT`]). PBFT alone must commit a new block; PBFT with
    /// a fallback must finalize (or replace) every tentative block.
    pub finalize_again_ms: Option<f64>,
    /// Tentative blocks the nodes reverted (the branches not finalized).
    pub discarded_blocks: u64,
    /// Transactions of those blocks put back in mempools.
    pub returned_txs: u64,
    /// The highest final height and head at the end.
    pub final_at_end: u64,
    /// The highest head at the end.
    pub head_at_end: u64,
    /// (seconds since the fault, highest head, highest final height).
    pub heights: Vec<(f64, u64, u64)>,
}

/// One node's `/status`, as the sampler keeps it.
#[derive(Clone, Debug)]
struct Sample {
    height: u64,
    final_height: u64,
    mode: String,
    discarded: u64,
    returned: u64,
}

impl Sample {
    fn settled(&self) -> bool {
        self.height == self.final_height && (self.mode.is_empty() || self.mode == "pbft")
    }
}

/// Every node's status at one moment (None: it did not answer).
#[derive(Clone, Debug)]
struct Round {
    at_ms: f64,
    nodes: Vec<Option<Sample>>,
}

/// Reads every node's `/status` every [`SAMPLE_EVERY`] on its own thread.
struct Sampler {
    stop: std::sync::Arc<AtomicBool>,
    rounds: std::sync::Arc<std::sync::Mutex<Vec<Round>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start(apis: Vec<String>) -> Sampler {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let rounds = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (stop, rounds) = (stop.clone(), rounds.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let at_ms = load::unix_ms();
                    let nodes = apis
                        .iter()
                        .map(|a| {
                            status(a).ok().map(|s| Sample {
                                height: s.height,
                                final_height: s.final_height,
                                mode: s.mode,
                                discarded: s.discarded_blocks,
                                returned: s.returned_txs,
                            })
                        })
                        .collect();
                    rounds
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Round { at_ms, nodes });
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
        };
        Sampler {
            stop,
            rounds,
            thread,
        }
    }

    /// The figures so far.
    fn figures(&self, fault_ms: f64, heal_ms: Option<f64>) -> FinalityFigures {
        finality_figures(
            &self.rounds.lock().unwrap_or_else(|e| e.into_inner()),
            fault_ms,
            heal_ms,
        )
    }

    fn finish(self) -> Vec<Round> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        std::mem::take(&mut *self.rounds.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Whether every node answered, holds nothing tentative and has a final
/// block above `final_at_heal`.
fn finalized_again(round: &Round, final_at_heal: u64) -> bool {
    round.nodes.iter().all(|n| {
        n.as_ref()
            .is_some_and(|s| s.settled() && s.final_height > final_at_heal)
    })
}

/// The figures from the sampler's rounds, with the fault and heal times.
fn finality_figures(rounds: &[Round], fault_ms: f64, heal_ms: Option<f64>) -> FinalityFigures {
    let answered = |r: &Round| r.nodes.iter().flatten().cloned().collect::<Vec<_>>();
    let before = |t: f64| {
        rounds
            .iter()
            .rev()
            .find(|r| r.at_ms <= t)
            .or(rounds.first())
            .map(answered)
            .unwrap_or_default()
    };
    let final_at_fault = before(fault_ms)
        .iter()
        .map(|s| s.final_height)
        .max()
        .unwrap_or(0);
    let tentative_blocks = heal_ms.map_or(0, |h| {
        before(h)
            .iter()
            .map(|s| s.height.saturating_sub(s.final_height))
            .max()
            .unwrap_or(0)
    });
    let max_finality_lag = rounds
        .iter()
        .flat_map(answered)
        .map(|s| s.height.saturating_sub(s.final_height))
        .max()
        .unwrap_or(0);
    let finalize_again_ms = heal_ms.and_then(|h| {
        let final_at_heal = before(h).iter().map(|s| s.final_height).max().unwrap_or(0);
        rounds
            .iter()
            .find(|r| r.at_ms >= h && finalized_again(r, final_at_heal))
            .map(|r| r.at_ms - h)
    });
    // Counters restart with a node: keep each node's highest.
    let mut discarded = Vec::new();
    let mut returned = Vec::new();
    for r in rounds {
        discarded.resize(r.nodes.len(), 0);
        returned.resize(r.nodes.len(), 0);
        for (i, s) in r.nodes.iter().enumerate() {
            if let Some(s) = s {
                discarded[i] = discarded[i].max(s.discarded);
                returned[i] = returned[i].max(s.returned);
            }
        }
    }
    let heights: Vec<(f64, u64, u64)> = rounds
        .iter()
        .filter_map(|r| {
            let a = answered(r);
            let head = a.iter().map(|s| s.height).max()?;
            let fin = a.iter().map(|s| s.final_height).max()?;
            Some(((r.at_ms - fault_ms) / 1000.0, head, fin))
        })
        .collect();
    let (head_at_end, final_at_end) = heights.last().map_or((0, 0), |(_, h, f)| (*h, *f));
    FinalityFigures {
        final_at_fault,
        tentative_blocks,
        max_finality_lag,
        finalize_again_ms,
        discarded_blocks: discarded.iter().sum(),
        returned_txs: returned.iter().sum(),
        final_at_end,
        head_at_end,
        heights,
    }
}

/// The first height where two honest nodes hold different blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fork {
    /// The height.
    pub height: u64,
    /// One node and its block hash there.
    pub a: (usize, Hash),
    /// Another node and its different block hash.
    pub b: (usize, Hash),
}

/// What one cell measured.
#[derive(Clone, Debug, Serialize)]
pub struct CellResult {
    /// The testnet.
    pub setup: Setup,
    /// The fault.
    pub fault: Fault,
    /// Faults the engine tolerates.
    pub f: u32,
    /// The nodes the fault hit (the primary/leader first).
    pub faulty_nodes: Vec<usize>,
    /// What was done to them.
    pub injected: String,
    /// Seconds after the load started when the fault came, and when it was healed.
    pub fault_at_s: f64,
    /// When it was healed (None: it stays).
    pub heal_at_s: Option<f64>,
    /// Transactions committed on every live node in the measured window, per second.
    pub committed_tps: f64,
    /// Submit → committed-on-every-live-node latency of transactions sent in the window, ms.
    pub latency_ms: Percentiles,
    /// Transactions the latency figures are over.
    pub latency_samples: usize,
    /// Views (PBFT) or terms (CFT) moved through during the cell.
    pub view_changes: u64,
    /// From the fault to the moment every live node had committed a block
    /// proposed after it, ms (None: never within the cell).
    pub recovery_ms: Option<f64>,
    /// Equivocation evidence pieces stored (most on any honest node).
    pub evidence: usize,
    /// Validators the honest nodes marked faulty.
    pub marked_faulty: Vec<u32>,
    /// Honest nodes whose chains were compared.
    pub nodes_compared: Vec<usize>,
    /// Heights compared.
    pub heights_compared: u64,
    /// The first divergence between honest nodes, if any (longest-chain
    /// engines: below the last [`TENTATIVE_TIP`] blocks, which may still
    /// change).
    pub fork: Option<Fork>,
    /// Reorgs the live nodes went through (proof of work, proof of stake).
    #[serde(default)]
    pub reorgs: u64,
    /// The deepest of their last reorgs, in blocks.
    #[serde(default)]
    pub deepest_reorg: u64,
    /// Validators slashed on the honest chain (proof of stake).
    #[serde(default)]
    pub slashed: Vec<u32>,
    /// Transactions sent, accepted, and committed on every live node.
    pub sent: u64,
    /// Accepted by the nodes.
    pub accepted: u64,
    /// Committed on every live node by the end.
    pub committed: u64,
    /// (seconds relative to the fault, committed tx/s on every live node).
    pub timeline: Vec<(f64, f64)>,
    /// Finality before, during and after the fault (every cell; the report
    /// shows it for the cells without a quorum).
    #[serde(default)]
    pub finality: Option<FinalityFigures>,
}

/// Blocks at the tip of a longest chain that the comparison leaves out:
/// honest nodes may still disagree on them when the cell ends.
pub const TENTATIVE_TIP: usize = 6;

impl CellResult {
    /// "one chain" or "FORK at h" (with reorgs and slashing for
    /// longest-chain engines).
    pub fn verdict(&self) -> String {
        let mut extra = String::new();
        if self.setup.model() == FaultModel::Nakamoto {
            extra = if self.reorgs == 0 {
                "; no reorg".into()
            } else {
                format!(
                    "; {} reorg(s), deepest {} block(s)",
                    self.reorgs, self.deepest_reorg
                )
            };
            if !self.slashed.is_empty() {
                let _ = write!(extra, "; slashed {:?}", self.slashed);
            }
        }
        match &self.fork {
            None => format!("one chain ({} heights){extra}", self.heights_compared),
            Some(f) => format!(
                "FORK at {}: node{} {} vs node{} {}{extra}",
                f.height,
                f.a.0,
                short(&f.a.1),
                f.b.0,
                short(&f.b.1)
            ),
        }
    }
}

/// The first 12 hex digits of a hash.
pub fn short(h: &Hash) -> String {
    h.to_string().chars().take(12).collect()
}

fn status(api: &str) -> anyhow::Result<NodeStatus> {
    Ok(Client::new(api)?.get("/status")?)
}

/// The primary (PBFT) or leader (CFT) most nodes agree on, once they do.
fn current_primary(apis: &[String], consensus_cft: bool, wait: Duration) -> anyhow::Result<usize> {
    let deadline = Instant::now() + wait;
    loop {
        let statuses: Vec<NodeStatus> = apis.iter().filter_map(|a| status(a).ok()).collect();
        let mut votes: BTreeMap<u32, usize> = BTreeMap::new();
        for s in &statuses {
            if !s.view_changing && (!consensus_cft || s.view > 0) {
                *votes.entry(s.primary).or_default() += 1;
            }
        }
        if let Some((p, count)) = votes.iter().max_by_key(|(_, c)| **c) {
            if *count > apis.len() / 2 {
                return Ok(*p as usize);
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the nodes did not agree on a primary/leader within {wait:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn admin(api: &str, path: &str, body: serde_json::Value) -> anyhow::Result<()> {
    let _: serde_json::Value = Client::new(api)?
        .post(path, &body, Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("{api}{path}: {e}"))?;
    Ok(())
}

/// Every block the node at `api` executed from height `from` on.
fn chain(api: &str, from: u64) -> anyhow::Result<Vec<(u64, Hash)>> {
    let client = Client::new(api)?;
    let mut next = from;
    let mut out = Vec::new();
    loop {
        let r: CommitsResponse =
            client.get(&format!("/commits?from={next}&limit=1000&wait_ms=0"))?;
        if r.commits.is_empty() {
            return Ok(out);
        }
        for c in r.commits {
            next = c.height + 1;
            out.push((c.height, c.block_hash));
        }
    }
}

/// Compares chains height by height; the first height with two hashes.
pub fn compare(chains: &[(usize, Vec<(u64, Hash)>)]) -> (u64, Option<Fork>) {
    let mut at: BTreeMap<u64, Vec<(usize, Hash)>> = BTreeMap::new();
    for (node, chain) in chains {
        for (h, hash) in chain {
            at.entry(*h).or_default().push((*node, *hash));
        }
    }
    let mut compared = 0;
    for (h, seen) in &at {
        if seen.len() >= 2 {
            compared += 1;
        }
        if let Some(b) = seen.iter().find(|(_, x)| *x != seen[0].1) {
            return (
                compared,
                Some(Fork {
                    height: *h,
                    a: seen[0],
                    b: *b,
                }),
            );
        }
    }
    (compared, None)
}

/// Runs one cell on ports from `base`.
pub fn run(
    args: &FaultsArgs,
    setup: Setup,
    fault: Fault,
    base: u16,
    label: &str,
) -> anyhow::Result<CellResult> {
    let dir = args
        .out
        .join("testnets")
        .join(format!("{}-{}", setup.name(), fault.name()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot clear {}: {e}", dir.display()))?;
    }
    let n = setup.n as usize;
    let f = setup.f() as usize;
    let duration = duration(args, fault);
    let mut cluster = Cluster::launch_with(
        setup.n,
        setup.consensus,
        &dir,
        base,
        args.accounts,
        &["--allow-fault-injection"],
    )?;
    cluster.wait_ready(Duration::from_secs(60))?;
    let cft = !setup.model().byzantine();
    let primary = current_primary(&cluster.apis, cft, Duration::from_secs(20))?;
    // A longest chain splits in halves (2|2 at n = 4): both sides keep
    // producing, and the one that falls behind reorgs after the heal.
    let nakamoto = setup.model() == FaultModel::Nakamoto;
    // Without a quorum: f+1 crashed, or halves of which neither holds one.
    let cut = match fault {
        Fault::None => 0,
        Fault::QuorumCrash => f + 1,
        Fault::QuorumPartition => n / 2,
        Fault::Partition if nakamoto => n / 2,
        _ => f,
    };
    let targets: Vec<usize> = (0..cut).map(|k| (primary + k) % n).collect();
    let others: Vec<usize> = (0..n).filter(|i| !targets.contains(i)).collect();
    // A split without a quorum leaves no side untouched: both halves take
    // load (each its own accounts) and both are watched.
    let live_nodes: Vec<usize> = if fault == Fault::QuorumPartition {
        (0..n).collect()
    } else {
        others.clone()
    };
    let live_apis: Vec<String> = live_nodes
        .iter()
        .map(|i| cluster.apis[*i].clone())
        .collect();

    let accounts = cluster.accounts()?;
    let nonces = load::next_nonces(&live_apis[0], &accounts)?;
    let seconds = args.warmup + duration;
    let total = (args.rate * seconds).ceil() as usize;
    let batch = ((args.rate / 200.0) as usize).clamp(10, 500);
    let batches = load::presign(
        &accounts,
        &nonces,
        &cluster.chain_id,
        total,
        batch,
        live_apis.len(),
    );
    let before: Vec<NodeStatus> = live_apis
        .iter()
        .map(|a| status(a))
        .collect::<anyhow::Result<_>>()?;
    let from = before.iter().map(|s| s.height).max().unwrap_or(0) + 1;
    let view_before = before.iter().map(|s| s.view).max().unwrap_or(0);

    let fault_at_s = args.warmup + duration * FAULT_AT;
    let heal_at_s = match fault {
        Fault::Pause | Fault::Partition | Fault::QuorumCrash | Fault::QuorumPartition => {
            Some(args.warmup + duration * HEAL_AT)
        }
        Fault::Crash => args.restart_after.map(|r| fault_at_s + r),
        _ => None,
    };
    let live = Live::default();
    let counts: Vec<AtomicU64> = live_nodes.iter().map(|_| AtomicU64::new(0)).collect();
    let observers_stop = AtomicBool::new(false);
    let start = Instant::now();
    let start_ms = load::unix_ms();
    let measure_to = start + Duration::from_secs_f64(seconds);
    let mut injected = String::from("nothing");
    let mut fault_ms = start_ms + fault_at_s * 1000.0;
    let mut heal_ms = None;
    let sampler = Sampler::start(cluster.apis.clone());

    let (submitted, per_node) = std::thread::scope(|s| -> anyhow::Result<_> {
        let observers: Vec<_> = live_apis
            .iter()
            .enumerate()
            .map(|(k, api)| {
                let (live, counts, stop) = (&live, &counts, &observers_stop);
                s.spawn(move || {
                    let r = observe::observe(api, from, stop, &counts[k], || {
                        observe::update_min(live, counts)
                    });
                    if r.is_err() {
                        live.stop.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        let submitter = {
            let (batches, apis, live) = (&batches, &live_apis, &live);
            s.spawn(move || {
                load::submit(
                    batches,
                    apis,
                    Pace::Rate(args.rate),
                    2,
                    start,
                    measure_to,
                    live,
                )
            })
        };
        let progress = Progress::new(format!("faults {label}"), progress::Unit::Seconds, seconds);
        let mut injected_done = false;
        let mut healed = false;
        let mut last = (Instant::now(), 0u64);
        let mut rate = 0.0;
        let result = (|| -> anyhow::Result<()> {
            while !submitter.is_finished() {
                std::thread::sleep(Duration::from_millis(100));
                observe::update_min(&live, &counts);
                let t = start.elapsed().as_secs_f64();
                if !injected_done && t >= fault_at_s {
                    injected_done = true;
                    injected = inject(&mut cluster, base, fault, &targets, &others)?;
                    // After the injection took effect: a primary that
                    // proposed in the moment before its SIGSTOP arrived
                    // made a block that still committed, and counted as
                    // "58 ms from fault to commit" at PBFT n = 7.
                    fault_ms = load::unix_ms();
                }
                if injected_done && !healed && heal_at_s.is_some_and(|h| t >= h) {
                    healed = true;
                    heal(&mut cluster, fault, &targets, &others)?;
                    heal_ms = Some(load::unix_ms());
                }
                let now = Instant::now();
                if now.duration_since(last.0) >= Duration::from_secs(1) {
                    let c = live.committed.load(Ordering::Relaxed);
                    rate =
                        c.saturating_sub(last.1) as f64 / now.duration_since(last.0).as_secs_f64();
                    last = (now, c);
                }
                let phase = if t < args.warmup {
                    "warm-up"
                } else if fault == Fault::None {
                    "no fault"
                } else if !injected_done {
                    "before the fault"
                } else if healed {
                    "healed"
                } else {
                    "FAULT"
                };
                progress.update(t, &progress_detail(rate, phase));
            }
            Ok(())
        })();
        if result.is_err() {
            live.stop.store(true, Ordering::Relaxed);
        }
        let submitted = submitter
            .join()
            .map_err(|_| anyhow::anyhow!("the submitter thread panicked"))?;
        // Drain: accepted transactions get time to commit everywhere. It ends
        // as soon as they have, so it only costs time when a view change is
        // still under way (slow on a loaded machine: a CI run once needed
        // more than 6 s after a crashed primary).
        observe::drain(&live, &counts, submitted.accepted, Duration::from_secs(20));
        progress.finish();
        observers_stop.store(true, Ordering::Relaxed);
        let per_node = observe::join_observers(observers)?;
        result?;
        Ok((submitted, per_node))
    })?;
    // Without a quorum: wait (the load is over) until every node holds
    // nothing tentative again, for the time to finalize and a settled chain.
    if fault.loses_quorum() {
        let until = Instant::now() + FINALITY_WAIT;
        while Instant::now() < until
            && sampler
                .figures(fault_ms, heal_ms)
                .finalize_again_ms
                .is_none()
        {
            std::thread::sleep(SAMPLE_EVERY);
        }
    }
    let finality = finality_figures(&sampler.finish(), fault_ms, heal_ms);
    let per_node = if nakamoto {
        observe::settled(&live_apis, from, TENTATIVE_TIP as u64).unwrap_or(per_node)
    } else if setup.model() == FaultModel::Hybrid {
        // Reverted tentative blocks were read too: read the chains again.
        observe::settled(&live_apis, from, 0).unwrap_or(per_node)
    } else {
        per_node
    };
    if heal_at_s.is_none() && fault == Fault::Pause {
        let _ = heal(&mut cluster, fault, &targets, &others);
    }

    // Safety: every honest node still running, chain against chain.
    let honest: Vec<usize> = (0..n)
        .filter(|i| !(fault.byzantine() && targets.contains(i)))
        .filter(|i| cluster.pids[*i].is_some())
        .collect();
    // A longest chain converges after a heal: give it a few blocks.
    if nakamoto {
        std::thread::sleep(Duration::from_secs(5));
    }
    let mut chains = Vec::new();
    for i in &honest {
        if let Ok(c) = chain(&cluster.apis[*i], 1) {
            chains.push((*i, c));
        }
    }
    // PBFT with a fallback: agreement is on final blocks; each node's
    // tentative tip may still change.
    if setup.model() == FaultModel::Hybrid {
        for (i, c) in &mut chains {
            match status(&cluster.apis[*i]) {
                Ok(s) => c.retain(|(h, _)| *h <= s.final_height),
                Err(_) => c.clear(),
            }
        }
    }
    if nakamoto {
        let settled = chains.iter().map(|(_, c)| c.len()).min().unwrap_or(0);
        let settled = settled.saturating_sub(TENTATIVE_TIP);
        for (_, c) in &mut chains {
            c.truncate(settled);
        }
    }
    let (heights_compared, fork) = compare(&chains);
    let (mut reorgs, mut deepest_reorg, mut slashed) = (0, 0, Vec::new());
    for i in &honest {
        if let Ok(s) = status(&cluster.apis[*i]) {
            reorgs += s.reorgs;
            if let Some(r) = s.last_reorg {
                deepest_reorg = deepest_reorg.max(r.from_height - r.to_height);
            }
        }
    }
    if let Some(i) = honest.first() {
        if let Ok(vs) = Client::new(&cluster.apis[*i])
            .and_then(|c| c.get::<Vec<phalanx_node::api::types::ValidatorResponse>>("/validators"))
        {
            slashed = vs.iter().filter(|v| v.slashed).map(|v| v.index.0).collect();
        }
    }
    let nodes_compared: Vec<usize> = chains.iter().map(|(i, _)| *i).collect();
    let mut evidence = 0;
    let mut marked_faulty: Vec<u32> = Vec::new();
    let mut view_after = view_before;
    for api in &live_apis {
        if let Ok(e) = Client::new(api).and_then(|c| c.get::<Vec<EvidenceResponse>>("/evidence")) {
            evidence = evidence.max(e.len());
        }
        if let Ok(s) = status(api) {
            view_after = view_after.max(s.view);
            marked_faulty.extend(s.faulty_peers);
        }
    }
    marked_faulty.sort_unstable();
    marked_faulty.dedup();
    cluster.stop();
    if !args.keep_testnets {
        let _ = std::fs::remove_dir_all(&dir);
    }

    let mut sent_at = HashMap::new();
    let mut sent = 0u64;
    for (t, b) in submitted.sent_at.iter().zip(&batches) {
        if let Some(t) = t {
            sent += b.hashes.len() as u64;
            for h in &b.hashes {
                sent_at.insert(*h, *t);
            }
        }
    }
    // When each block was on every live node; after a fork, the first
    // live node's own view (there is no common chain to time).
    let blocks: Vec<(f64, Vec<Hash>)> = match observe::merge(&per_node) {
        Ok(m) => m
            .into_iter()
            .map(|b| (b.all_committed_at, b.tx_hashes))
            .collect(),
        Err(_) => per_node
            .first()
            .map(|rs| {
                rs.iter()
                    .map(|r| (r.committed_at_ms as f64, r.tx_hashes.clone()))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let window = (start_ms + args.warmup * 1000.0, start_ms + seconds * 1000.0);
    let mut latencies = Vec::new();
    let mut committed = 0u64;
    let mut in_window = 0u64;
    let mut buckets: BTreeMap<i64, u64> = BTreeMap::new();
    for (at, txs) in &blocks {
        for h in txs {
            let Some(t) = sent_at.get(h) else { continue };
            committed += 1;
            if *at >= window.0 && *at < window.1 {
                in_window += 1;
            }
            if *t >= window.0 && *t < window.1 {
                latencies.push(at - t);
            }
            let b = ((at - fault_ms) / 1000.0 / BUCKET_S).floor() as i64;
            *buckets.entry(b).or_default() += 1;
        }
    }
    let first_bucket = ((start_ms - fault_ms) / 1000.0 / BUCKET_S).floor() as i64;
    let last_bucket = ((window.1 - fault_ms) / 1000.0 / BUCKET_S).ceil() as i64;
    let timeline = (first_bucket..=last_bucket)
        .map(|b| {
            (
                b as f64 * BUCKET_S,
                *buckets.get(&b).unwrap_or(&0) as f64 / BUCKET_S,
            )
        })
        .collect();
    Ok(CellResult {
        setup,
        fault,
        f: setup.f(),
        faulty_nodes: targets,
        injected,
        fault_at_s: (fault_ms - start_ms) / 1000.0,
        heal_at_s,
        committed_tps: in_window as f64 / duration,
        latency_samples: latencies.len(),
        latency_ms: observe::percentiles(&mut latencies),
        view_changes: view_after.saturating_sub(view_before),
        recovery_ms: recovery(&per_node, fault_ms),
        evidence,
        marked_faulty,
        nodes_compared,
        heights_compared,
        fork,
        reorgs,
        deepest_reorg,
        slashed,
        sent,
        accepted: submitted.accepted,
        committed,
        timeline,
        finality: Some(finality),
    })
}

/// From `fault_ms` until every live node had committed a block proposed
/// after it.
pub fn recovery(per_node: &[Vec<CommitRecord>], fault_ms: f64) -> Option<f64> {
    let mut worst: f64 = 0.0;
    for records in per_node {
        let first = records
            .iter()
            .find(|r| r.proposed_at_ms as f64 > fault_ms)?;
        worst = worst.max(first.committed_at_ms as f64 - fault_ms);
    }
    (!per_node.is_empty()).then_some(worst)
}

/// A twin's P2P port: clear of the cells' node ports (base..base+49 and
/// base+100..base+149); its API port is 100 above.
fn twin_p2p_port(base: u16, node: usize) -> u16 {
    base + 200 + node as u16
}

fn inject(
    cluster: &mut Cluster,
    base: u16,
    fault: Fault,
    targets: &[usize],
    live: &[usize],
) -> anyhow::Result<String> {
    let names = targets
        .iter()
        .map(|t| format!("node{t}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(match fault {
        Fault::None => "nothing".into(),
        Fault::Crash | Fault::QuorumCrash => {
            for t in targets {
                cluster.kill(*t)?;
            }
            format!("SIGKILL {names}")
        }
        Fault::Pause => {
            for t in targets {
                cluster.signal(*t, "STOP")?;
            }
            format!("SIGSTOP {names}, SIGCONT at heal")
        }
        Fault::Silent | Fault::Equivocate | Fault::BadSig => {
            for t in targets {
                admin(
                    &cluster.apis[*t],
                    "/admin/behaviour",
                    serde_json::json!({ "behaviour": fault.name() }),
                )?;
            }
            format!("{names}: behaviour {}", fault.name())
        }
        Fault::Partition | Fault::QuorumPartition => {
            partition(cluster, targets, live)?;
            format!("{{{names}}} cut off from the rest (transport level)")
        }
        Fault::Twins => {
            for t in targets {
                cluster.start_twin(*t, twin_p2p_port(base, *t), twin_p2p_port(base, *t) + 100)?;
            }
            format!("{names}: a second process with the same keys and an empty database")
        }
    })
}

fn partition(cluster: &Cluster, side: &[usize], rest: &[usize]) -> anyhow::Result<()> {
    for t in side {
        admin(
            &cluster.apis[*t],
            "/admin/partition",
            serde_json::json!({ "blocked": rest }),
        )?;
    }
    for l in rest {
        admin(
            &cluster.apis[*l],
            "/admin/partition",
            serde_json::json!({ "blocked": side }),
        )?;
    }
    Ok(())
}

fn heal(
    cluster: &mut Cluster,
    fault: Fault,
    targets: &[usize],
    live: &[usize],
) -> anyhow::Result<()> {
    match fault {
        Fault::Pause => {
            for t in targets {
                cluster.signal(*t, "CONT")?;
            }
        }
        Fault::Partition | Fault::QuorumPartition => {
            let all: Vec<usize> = targets.iter().chain(live).copied().collect();
            for i in all {
                admin(
                    &cluster.apis[i],
                    "/admin/partition",
                    serde_json::json!({ "blocked": [] }),
                )?;
            }
        }
        Fault::Crash | Fault::QuorumCrash => {
            for t in targets {
                cluster.restart(*t)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// What `phalanx faults` reports beside a cell's progress.
fn progress_detail(committed_per_s: f64, phase: &str) -> String {
    format!(
        "committed {} tx/s, {phase}",
        progress::count(committed_per_s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(height: u64, proposed: u64, committed: u64) -> CommitRecord {
        CommitRecord {
            height,
            block_hash: Hash([height as u8; 32]),
            proposed_at_ms: proposed,
            committed_at_ms: committed,
            tx_hashes: Vec::new(),
        }
    }

    #[test]
    fn compare_finds_the_first_divergent_height_and_both_hashes() {
        let a = vec![(1, Hash([1; 32])), (2, Hash([2; 32])), (3, Hash([3; 32]))];
        let mut b = a.clone();
        b[1].1 = Hash([9; 32]);
        b[2].1 = Hash([8; 32]);
        let (_, fork) = compare(&[(0, a.clone()), (2, b)]);
        let fork = fork.unwrap();
        assert_eq!(fork.height, 2);
        assert_eq!(fork.a, (0, Hash([2; 32])));
        assert_eq!(fork.b, (2, Hash([9; 32])));
        // Chains of different lengths agree where they overlap.
        let (compared, fork) = compare(&[(0, a.clone()), (1, a[..2].to_vec())]);
        assert_eq!((compared, fork), (2, None));
    }

    #[test]
    fn the_progress_line_names_the_cell_its_rate_and_phase() {
        let line = progress::line(
            "faults [2/3] PBFT n=4 · f equivocating",
            progress::Unit::Seconds,
            4.5,
            9.0,
            &progress_detail(1_234.4, "FAULT"),
        );
        assert_eq!(
            line,
            "faults [2/3] PBFT n=4 · f equivocating: 50% 4.5/9.0 s, committed 1,234 tx/s, FAULT"
        );
    }

    /// (height, final height, mode, discarded, returned).
    type Seen = (u64, u64, &'static str, u64, u64);

    fn round(at_ms: f64, nodes: &[Option<Seen>]) -> Round {
        Round {
            at_ms,
            nodes: nodes
                .iter()
                .map(|n| {
                    n.map(|(height, final_height, mode, discarded, returned)| Sample {
                        height,
                        final_height,
                        mode: mode.into(),
                        discarded,
                        returned,
                    })
                })
                .collect(),
        }
    }

    #[test]
    fn finality_figures_follow_the_outage_and_the_heal() {
        // Fault at 1,000 ms, heal at 3,000 ms; node 1 is down in between
        // and comes back with its counters reset.
        let rounds = vec![
            round(
                500.0,
                &[Some((10, 10, "pbft", 0, 0)), Some((10, 10, "pbft", 0, 0))],
            ),
            round(1_500.0, &[Some((12, 10, "fallback", 0, 0)), None]),
            round(2_500.0, &[Some((15, 10, "fallback", 0, 0)), None]),
            round(
                3_500.0,
                &[
                    Some((15, 12, "recovering", 0, 0)),
                    Some((11, 10, "fallback", 0, 0)),
                ],
            ),
            round(
                4_000.0,
                &[
                    Some((16, 16, "pbft", 2, 5)),
                    Some((16, 15, "recovering", 3, 7)),
                ],
            ),
            round(
                4_500.0,
                &[Some((17, 17, "pbft", 2, 5)), Some((17, 17, "pbft", 1, 0))],
            ),
        ];
        let f = finality_figures(&rounds, 1_000.0, Some(3_000.0));
        assert_eq!(f.final_at_fault, 10);
        assert_eq!(f.tentative_blocks, 5, "15 − 10 on the longest branch");
        assert_eq!(f.max_finality_lag, 5);
        assert_eq!(
            f.finalize_again_ms,
            Some(1_500.0),
            "first round all settled"
        );
        assert_eq!((f.discarded_blocks, f.returned_txs), (2 + 3, 5 + 7));
        assert_eq!((f.final_at_end, f.head_at_end), (17, 17));
        assert_eq!(f.heights.len(), 6);
        assert_eq!(f.heights[1], (0.5, 12, 10));
        // Never settled: a node still tentative at the end.
        let f = finality_figures(&rounds[..5], 1_000.0, Some(3_000.0));
        assert_eq!(f.finalize_again_ms, None);
        // PBFT alone: nothing tentative, final again once it commits above
        // the height at the fault.
        let alone = vec![
            round(500.0, &[Some((10, 10, "", 0, 0))]),
            round(2_000.0, &[Some((10, 10, "", 0, 0))]),
            round(3_200.0, &[Some((10, 10, "", 0, 0))]),
            round(3_700.0, &[Some((11, 11, "", 0, 0))]),
        ];
        let f = finality_figures(&alone, 1_000.0, Some(3_000.0));
        assert_eq!((f.tentative_blocks, f.max_finality_lag), (0, 0));
        assert_eq!(f.finalize_again_ms, Some(700.0));
        // A block in flight at the fault commits just after it: that is
        // not "final again after the heal"; the next one is.
        let in_flight = vec![
            round(500.0, &[Some((10, 10, "", 0, 0))]),
            round(1_500.0, &[Some((11, 11, "", 0, 0))]),
            round(3_200.0, &[Some((11, 11, "", 0, 0))]),
            round(3_900.0, &[Some((12, 12, "", 0, 0))]),
        ];
        let f = finality_figures(&in_flight, 1_000.0, Some(3_000.0));
        assert_eq!(f.final_at_fault, 10);
        assert_eq!(f.finalize_again_ms, Some(900.0));
    }

    #[test]
    fn recovery_waits_for_the_slowest_live_node() {
        let a = vec![rec(1, 900, 950), rec(2, 1_100, 1_300)];
        let b = vec![rec(1, 900, 960), rec(2, 1_100, 1_700)];
        assert_eq!(recovery(&[a.clone(), b], 1_000.0), Some(700.0));
        // A node that never committed anything proposed after the fault.
        assert_eq!(recovery(&[a, vec![rec(1, 900, 950)]], 1_000.0), None);
    }
}
