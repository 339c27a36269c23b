//! `phalanx bench`: how fast is it? A load generator and a report.
//!
//! Transfers are signed and JSON-encoded before the timed window, submitted
//! in batches to every validator's `POST /txs/batch` (open loop at `--rate`,
//! or closed loop with `--max`), and timed with each node's own commit times
//! from `GET /commits`. A transaction counts as committed when every node has
//! executed its block; its latency runs from the start of the request that
//! carried it to that moment. The warm-up is excluded from every figure.

pub(crate) mod cluster;
pub(crate) mod load;
pub(crate) mod observe;
mod report;

use cluster::{sample, sample_self, Cluster, ProcSample};
use load::{Live, Pace};
use observe::{Divergence, Percentiles};
use phalanx_testnet::progress::{self, Progress};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `phalanx bench` arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  phalanx bench --validators 4 --rate 5000 --duration 60     launch a fresh 4-node testnet and drive it
  phalanx bench --validators 4 --max --duration 60            as fast as the nodes accept
  testnet/local.sh up && phalanx bench --rate 1000            drive the running testnet in ./testnet-data
  phalanx bench --sweep                                       rates × n = 4, 7, 10, 16 (about 15 minutes)
  phalanx bench --quick                                       a few seconds, n = 4 (what CI runs)

Output (--out, default ./bench-results): bench.md, bench.json, throughput-vs-load.svg,
latency-vs-load.svg, throughput-over-time.svg; the summary is also printed.")]
pub struct BenchArgs {
    /// Launch a fresh local testnet of N validators for the run (instead of
    /// driving the running one in --testnet).
    #[arg(long, short = 'n', value_name = "N")]
    pub validators: Option<u32>,
    /// The consensus engine of launched testnets.
    #[arg(long, value_parser = phalanx_runtime::registry::parse, default_value = "pbft")]
    pub consensus: phalanx_ledger::EngineKind,
    /// The running testnet to drive (the directory `testnet/local.sh up` made).
    #[arg(long, value_name = "DIR", default_value = "testnet-data")]
    pub testnet: PathBuf,
    /// Offered load in transactions per second (open loop).
    #[arg(
        long,
        value_name = "TX/S",
        default_value_t = 2000.0,
        conflicts_with = "max"
    )]
    pub rate: f64,
    /// Submit as fast as the nodes accept (closed loop, bounded in-flight).
    #[arg(long)]
    pub max: bool,
    /// Measured seconds (after the warm-up).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub warmup: f64,
    /// Funded accounts of a launched testnet (more accounts, more parallel nonces).
    #[arg(long, default_value_t = 256)]
    pub accounts: u32,
    /// Transactions per request (default: about 5 ms of load, 10–500).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Connections per node submitting in parallel.
    #[arg(long, default_value_t = 2)]
    pub connections: usize,
    /// Where to write bench.md, bench.json and the SVG charts.
    #[arg(long, value_name = "DIR", default_value = "bench-results")]
    pub out: PathBuf,
    /// Run every rate of --rates on every validator count of --sweep-validators.
    #[arg(long)]
    pub sweep: bool,
    /// Offered loads of a sweep (tx/s).
    #[arg(long, value_delimiter = ',', default_value = "1000,2500,5000,10000")]
    pub rates: Vec<f64>,
    /// Validator counts of a sweep.
    #[arg(long, value_delimiter = ',', default_value = "4,7,10,16")]
    pub sweep_validators: Vec<u32>,
    /// A few seconds on a fresh 4-node testnet (a smoke test; CI runs it).
    #[arg(long)]
    pub quick: bool,
    /// P2P port of node0 of launched testnets (node i: base+i, API base+100+i).
    #[arg(long, default_value_t = 27000)]
    pub base_port: u16,
    /// Keep launched testnets' directories (data and logs) after the run.
    #[arg(long)]
    pub keep_testnet: bool,
    /// Fail (exit 1) unless this many tx/s were committed in every run.
    #[arg(long, value_name = "TX/S")]
    pub min_tps: Option<f64>,
}

/// One node's resource use over the measured window.
#[derive(Clone, Debug, Serialize)]
pub struct NodeUsage {
    /// Validator index.
    pub index: usize,
    /// CPU time over wall time, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Peak resident memory (VmHWM), MiB.
    pub peak_rss_mib: Option<f64>,
}

/// The stages of submit→commit latency, each the median over the
/// transactions sent in the window (the medians need not add up to the
/// median of the whole).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LatencySplit {
    /// From the request to the proposal of the block that holds the
    /// transaction (signature check, mempool, gossip to the primary, and
    /// the primary's batching). The proposer's clock; all on one machine here.
    pub to_proposal: f64,
    /// From the proposal to the first node that executed the block
    /// (the consensus rounds).
    pub proposal_to_first_commit: f64,
    /// From the first node to the last node that executed it.
    pub first_to_last_commit: f64,
}

/// The figures of one run (one rate on one testnet).
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// Validators.
    pub validators: usize,
    /// "rate" or "max".
    pub mode: String,
    /// The target rate (open loop), tx/s.
    pub offered_tps: Option<f64>,
    /// What was actually sent during the measured window, tx/s.
    pub sent_tps: f64,
    /// Transactions committed on every node during the measured window, per second.
    pub committed_tps: f64,
    /// Submit→commit-on-every-node latency of transactions sent in the window, ms.
    pub latency_ms: Percentiles,
    /// Transactions the latency figures are over.
    pub latency_samples: usize,
    /// Where the median transaction's time went, ms (medians of each stage).
    pub latency_split_ms: LatencySplit,
    /// Blocks committed per second in the window.
    pub blocks_per_s: f64,
    /// Mean transactions per block in the window.
    pub mean_block_txs: f64,
    /// View changes during the run (highest view after − before, over the nodes).
    pub view_changes: u64,
    /// Transactions sent in total (warm-up included).
    pub sent: u64,
    /// Accepted by the nodes.
    pub accepted: u64,
    /// Refused, by error code.
    pub rejected: BTreeMap<String, u64>,
    /// Requests that failed outright.
    pub failed_requests: u64,
    /// Accepted transactions seen committed on every node by the end.
    pub committed: u64,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Measured seconds.
    pub duration_s: f64,
    /// Per node CPU and memory.
    pub nodes: Vec<NodeUsage>,
    /// The load generator's own CPU use, percent of one core.
    pub generator_cpu_percent: Option<f64>,
    /// (second since the load started, transactions committed on every node in it).
    pub timeline: Vec<(f64, f64)>,
    /// Heights compared across all nodes.
    pub heights_compared: usize,
    /// The first height where nodes disagree, if any (a safety failure).
    pub divergence: Option<Divergence>,
}

/// What a whole `phalanx bench` invocation measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The command line.
    pub command: String,
    /// The phalanx version that measured.
    pub version: String,
    /// The git commit that phalanx was built from.
    pub git_commit: String,
    /// Where it ran.
    pub machine: Machine,
    /// When (Unix seconds).
    pub started_unix_s: u64,
    /// One per (validators, rate).
    pub runs: Vec<RunResult>,
}

impl BenchReport {
    /// An empty report of `command` run now, on this machine, by this binary.
    pub fn new(command: String) -> BenchReport {
        BenchReport {
            command,
            version: phalanx_node::version::VERSION.into(),
            git_commit: phalanx_node::version::GIT_COMMIT.into(),
            machine: Machine::detect(),
            started_unix_s: load::unix_ms() as u64 / 1000,
            runs: Vec::new(),
        }
    }
}

/// The machine the figures come from.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// The phalanx build profile.
    pub build: String,
}

impl Machine {
    /// This machine.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".into());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib,
            build: if cfg!(debug_assertions) {
                "debug".into()
            } else {
                "release".into()
            },
        }
    }
}

/// Runs `phalanx bench`.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let mut args = args.clone();
    if args.quick {
        args.validators = Some(args.validators.unwrap_or(4));
        args.duration = 3.0;
        args.warmup = 1.0;
        args.accounts = args.accounts.min(64);
        if !args.max {
            args.rate = args.rate.min(1000.0);
        }
    }
    anyhow::ensure!(
        args.duration > 0.0 && args.warmup >= 0.0,
        "--duration must be positive and --warmup not negative"
    );
    anyhow::ensure!(
        args.max || args.rate > 0.0,
        "--rate must be positive (or use --max)"
    );
    anyhow::ensure!(args.accounts > 0, "--accounts must be at least 1");
    std::fs::create_dir_all(&args.out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", args.out.display()))?;
    let mut report = BenchReport::new(std::env::args().collect::<Vec<_>>().join(" "));
    let paces: Vec<Pace> = if args.max {
        vec![Pace::Max { window: 0 }]
    } else if args.sweep {
        args.rates.iter().map(|r| Pace::Rate(*r)).collect()
    } else {
        vec![Pace::Rate(args.rate)]
    };
    if args.sweep || args.validators.is_some() {
        let counts = if args.sweep {
            args.sweep_validators.clone()
        } else {
            vec![args.validators.unwrap_or(4)]
        };
        for n in counts {
            anyhow::ensure!(
                args.accounts >= n,
                "--accounts {} is below --validators {n}: each account sends through one \
                 node, so every node needs at least one",
                args.accounts
            );
            let dir = args
                .out
                .join(format!("testnet-n{n}-{}", load::unix_ms() as u64));
            eprintln!("==> launching a {n}-validator testnet in {}", dir.display());
            let mut cluster =
                Cluster::launch(n, args.consensus, &dir, args.base_port, args.accounts)?;
            cluster.wait_ready(Duration::from_secs(60))?;
            for pace in &paces {
                let result = run_once(&mut cluster, &args, *pace)?;
                eprintln!("{}", report::one_line(&result));
                report.runs.push(result);
            }
            cluster.stop();
            if !args.keep_testnet {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    } else {
        let mut cluster = Cluster::attach(&args.testnet)?;
        cluster.wait_ready(Duration::from_secs(10))?;
        for pace in &paces {
            let result = run_once(&mut cluster, &args, *pace)?;
            eprintln!("{}", report::one_line(&result));
            report.runs.push(result);
        }
    }
    let summary = report::write(&report, &args.out)?;
    println!("{summary}");
    if let Some(r) = report.runs.iter().find(|r| r.divergence.is_some()) {
        anyhow::bail!(
            "SAFETY: nodes committed different blocks at height {} (n = {})",
            r.divergence.as_ref().map_or(0, |d| d.height),
            r.validators
        );
    }
    if let Some(min) = args.min_tps {
        for r in &report.runs {
            anyhow::ensure!(
                r.committed_tps >= min,
                "n = {}: committed {:.0} tx/s, below --min-tps {min}",
                r.validators,
                r.committed_tps
            );
        }
    }
    Ok(())
}

/// Default batch: about 5 ms of load, 10–500 transactions.
fn batch_size(args: &BenchArgs, pace: Pace) -> usize {
    args.batch.unwrap_or(match pace {
        Pace::Rate(r) => ((r / 200.0) as usize).clamp(10, 500),
        Pace::Max { .. } => 500,
    })
}

fn run_once(cluster: &mut Cluster, args: &BenchArgs, pace: Pace) -> anyhow::Result<RunResult> {
    let n = cluster.apis.len();
    let accounts = cluster.accounts()?;
    anyhow::ensure!(
        accounts.len() >= n,
        "the testnet has {} funded accounts for {n} validators: the benchmark sends each \
         account's transfers through one node, so it needs at least one account per node \
         (launch with --accounts {n} or more)",
        accounts.len()
    );
    let nonces = load::next_nonces(&cluster.apis[0], &accounts)?;
    let seconds = args.warmup + args.duration;
    let batch = batch_size(args, pace);
    let pace = match pace {
        Pace::Max { .. } => Pace::Max {
            window: (batch * n * args.connections * 4) as u64,
        },
        p => p,
    };
    let total = match pace {
        Pace::Rate(r) => (r * seconds).ceil() as usize,
        // Enough for 20,000 tx/s, the most this machine could take.
        Pace::Max { .. } => (20_000.0 * seconds).min(2_000_000.0) as usize,
    };
    eprintln!(
        "==> n = {n}: signing {total} transfers from {} accounts ahead of the run",
        accounts.len()
    );
    let batches = load::presign(&accounts, &nonces, &cluster.chain_id, total, batch, n);
    let statuses: Vec<phalanx_node::api::types::NodeStatus> = cluster
        .apis
        .iter()
        .map(|a| phalanx_node::client::Client::new(a)?.get("/status"))
        .collect::<Result<_, _>>()?;
    let from = statuses.iter().map(|s| s.height).max().unwrap_or(0) + 1;
    let view_before = statuses.iter().map(|s| s.view).max().unwrap_or(0);

    let live = Live::default();
    let counts: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let observers_stop = AtomicBool::new(false);
    let start = Instant::now();
    let start_ms = load::unix_ms();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let measure_to = start + Duration::from_secs_f64(seconds);
    let mut usage_at_warmup: Option<(Vec<Option<ProcSample>>, Option<ProcSample>, Instant)> = None;
    let mut usage_at_end = None;

    let (submitted, per_node) = std::thread::scope(|s| -> anyhow::Result<_> {
        let observers: Vec<_> = cluster
            .apis
            .iter()
            .enumerate()
            .map(|(i, api)| {
                let (live, counts, stop) = (&live, &counts, &observers_stop);
                s.spawn(move || {
                    let records = observe::observe(api, from, stop, &counts[i], || {
                        observe::update_min(live, counts)
                    });
                    if records.is_err() {
                        // Without this node's view nothing can be timed: stop.
                        live.stop.store(true, Ordering::Relaxed);
                    }
                    records
                })
            })
            .collect();
        let submitter = {
            let (batches, apis, live) = (&batches, &cluster.apis, &live);
            let connections = args.connections;
            s.spawn(move || load::submit(batches, apis, pace, connections, start, measure_to, live))
        };
        // Progress, and the resource samples at the window's edges.
        let progress = Progress::new(progress_name(n, pace), progress::Unit::Seconds, seconds);
        let mut last = (Instant::now(), 0u64, 0u64);
        while !submitter.is_finished() {
            std::thread::sleep(Duration::from_millis(200));
            observe::update_min(&live, &counts);
            let now = Instant::now();
            if usage_at_warmup.is_none() && now >= measure_from {
                usage_at_warmup = Some((sample_all(&cluster.pids), sample_self(), now));
            }
            if now.duration_since(last.0) >= Duration::from_secs(1) {
                let sent = live.sent.load(Ordering::Relaxed);
                let committed = live.committed.load(Ordering::Relaxed);
                let dt = now.duration_since(last.0).as_secs_f64();
                progress.update(
                    now.duration_since(start).as_secs_f64(),
                    &progress_detail(
                        (sent - last.1) as f64 / dt,
                        (committed.saturating_sub(last.2)) as f64 / dt,
                        now < measure_from,
                    ),
                );
                last = (now, sent, committed);
            }
        }
        usage_at_end = Some((sample_all(&cluster.pids), sample_self(), Instant::now()));
        let submitted = submitter
            .join()
            .map_err(|_| anyhow::anyhow!("the submitter thread panicked"))?;
        // Drain: give accepted transactions time to commit everywhere.
        observe::drain(&live, &counts, submitted.accepted, Duration::from_secs(15));
        progress.finish();
        observers_stop.store(true, Ordering::Relaxed);
        let per_node = observe::join_observers(observers)?;
        Ok((submitted, per_node))
    })?;
    let tentative = statuses
        .first()
        .and_then(|s| phalanx_runtime::registry::parse(&s.consensus).ok())
        .and_then(|k| phalanx_runtime::registry::fault_model(k).ok())
        .is_some_and(|m| !m.finalizes());
    let per_node = if tentative {
        observe::settled(&cluster.apis, from, 6)?
    } else {
        per_node
    };

    let statuses_after: Vec<u64> = cluster
        .apis
        .iter()
        .filter_map(|a| {
            phalanx_node::client::Client::new(a)
                .ok()?
                .get::<phalanx_node::api::types::NodeStatus>("/status")
                .ok()
                .map(|s| s.view)
        })
        .collect();
    let view_changes = statuses_after
        .iter()
        .max()
        .copied()
        .unwrap_or(view_before)
        .saturating_sub(view_before);

    // Resource use over the measured window.
    let (nodes, generator_cpu_percent) = match (usage_at_warmup, usage_at_end) {
        (Some((a, ga, ta)), Some((b, gb, tb))) => {
            let wall = tb.duration_since(ta).as_secs_f64().max(1e-3);
            let nodes = (0..n)
                .map(|i| NodeUsage {
                    index: i,
                    cpu_percent: match (a[i], b[i]) {
                        (Some(a), Some(b)) => Some((b.cpu_s - a.cpu_s) / wall * 100.0),
                        _ => None,
                    },
                    peak_rss_mib: b[i].map(|b| b.peak_rss as f64 / 1024.0 / 1024.0),
                })
                .collect();
            let gen = match (ga, gb) {
                (Some(a), Some(b)) => Some((b.cpu_s - a.cpu_s) / wall * 100.0),
                _ => None,
            };
            (nodes, gen)
        }
        _ => (Vec::new(), None),
    };

    let sent_total: u64 = submitted
        .sent_at
        .iter()
        .zip(&batches)
        .filter(|(t, _)| t.is_some())
        .map(|(_, b)| b.hashes.len() as u64)
        .sum();
    let window = (start_ms + args.warmup * 1000.0, start_ms + seconds * 1000.0);
    let sent_in_window: u64 = submitted
        .sent_at
        .iter()
        .zip(&batches)
        .filter(|(t, _)| t.is_some_and(|t| t >= window.0 && t < window.1))
        .map(|(_, b)| b.hashes.len() as u64)
        .sum();
    let mut sent_at = std::collections::HashMap::with_capacity(sent_total as usize);
    for (t, b) in submitted.sent_at.iter().zip(&batches) {
        if let Some(t) = t {
            for h in &b.hashes {
                sent_at.insert(*h, *t);
            }
        }
    }
    let (merged, divergence) = match observe::merge(&per_node) {
        Ok(m) => (m, None),
        Err(d) => (Vec::new(), Some(d)),
    };
    let mut latencies = Vec::new();
    let mut split: [Vec<f64>; 3] = Default::default();
    let mut committed = 0u64;
    let mut committed_in_window = 0u64;
    let mut blocks_in_window = 0u64;
    let mut txs_in_window_blocks = 0u64;
    let mut timeline: BTreeMap<u64, u64> = BTreeMap::new();
    for b in &merged {
        let in_window = b.all_committed_at >= window.0 && b.all_committed_at < window.1;
        if in_window {
            blocks_in_window += 1;
            txs_in_window_blocks += b.tx_hashes.len() as u64;
        }
        for h in &b.tx_hashes {
            let Some(t) = sent_at.get(h) else { continue };
            committed += 1;
            if in_window {
                committed_in_window += 1;
            }
            if *t >= window.0 && *t < window.1 {
                latencies.push(b.all_committed_at - t);
                split[0].push(b.proposed_at - t);
                split[1].push(b.first_committed_at - b.proposed_at);
                split[2].push(b.all_committed_at - b.first_committed_at);
            }
            let second = ((b.all_committed_at - start_ms) / 1000.0).max(0.0) as u64;
            *timeline.entry(second).or_default() += 1;
        }
    }
    Ok(RunResult {
        validators: n,
        mode: match pace {
            Pace::Rate(_) => "rate".into(),
            Pace::Max { .. } => "max".into(),
        },
        offered_tps: match pace {
            Pace::Rate(r) => Some(r),
            Pace::Max { .. } => None,
        },
        sent_tps: sent_in_window as f64 / args.duration,
        committed_tps: committed_in_window as f64 / args.duration,
        latency_samples: latencies.len(),
        latency_ms: observe::percentiles(&mut latencies),
        latency_split_ms: LatencySplit {
            to_proposal: observe::percentiles(&mut split[0]).p50,
            proposal_to_first_commit: observe::percentiles(&mut split[1]).p50,
            first_to_last_commit: observe::percentiles(&mut split[2]).p50,
        },
        blocks_per_s: blocks_in_window as f64 / args.duration,
        mean_block_txs: if blocks_in_window == 0 {
            0.0
        } else {
            txs_in_window_blocks as f64 / blocks_in_window as f64
        },
        view_changes,
        sent: sent_total,
        accepted: submitted.accepted,
        rejected: submitted.rejected,
        failed_requests: submitted.failed_requests,
        committed,
        warmup_s: args.warmup,
        duration_s: args.duration,
        nodes,
        generator_cpu_percent,
        timeline: timeline
            .into_iter()
            .map(|(s, c)| (s as f64, c as f64))
            .collect(),
        heights_compared: merged.len(),
        divergence,
    })
}

fn sample_all(pids: &[Option<u32>]) -> Vec<Option<ProcSample>> {
    pids.iter().map(|p| p.and_then(sample)).collect()
}

/// What `phalanx bench` reports beside its progress.
fn progress_detail(sent_per_s: f64, committed_per_s: f64, warming: bool) -> String {
    format!(
        "sent {} tx/s, committed {} tx/s{}",
        progress::count(sent_per_s),
        progress::count(committed_per_s),
        if warming { " (warm-up)" } else { "" }
    )
}

/// The name of a run's progress: "bench n=4 @ 2,000 tx/s".
fn progress_name(n: usize, pace: Pace) -> String {
    match pace {
        Pace::Rate(r) => format!("bench n={n} @ {} tx/s", progress::count(r)),
        Pace::Max { .. } => format!("bench n={n} @ max"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_says_what_was_sent_and_committed() {
        assert_eq!(
            progress_detail(1_000.4, 0.0, true),
            "sent 1,000 tx/s, committed 0 tx/s (warm-up)"
        );
        let line = progress::line(
            &progress_name(4, Pace::Rate(5_000.0)),
            progress::Unit::Seconds,
            9.0,
            20.0,
            &progress_detail(4_912.0, 4_870.6, false),
        );
        assert_eq!(
            line,
            "bench n=4 @ 5,000 tx/s: 45% 9.0/20.0 s, sent 4,912 tx/s, committed 4,871 tx/s"
        );
        assert_eq!(progress_name(7, Pace::Max { window: 0 }), "bench n=7 @ max");
    }
}
