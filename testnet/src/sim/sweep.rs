//! Running many seeds: schedules spread over threads (each schedule runs on
//! one thread from start to end, so threads never change a trace), results
//! gathered in seed order, and the summary `phalanx sim` prints.

use super::checkers::ViolationKind;
use super::faults::{Fault, FaultSet};
use super::hooks::{Hooks, Outcome};
use super::scenario::{Scenario, ScenarioError};
use super::world::run_scenario;
use crate::progress::Progress;
use phalanx_adversary::Adversarial;
use phalanx_adversary::AdversaryStats;
use phalanx_ledger::EngineKind;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Which schedules to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepConfig {
    /// Validators.
    pub validators: usize,
    /// Byzantine validators per schedule.
    pub byzantine: usize,
    /// Faults to draw from.
    pub faults: FaultSet,
    /// The first seed.
    pub start_seed: u64,
    /// How many seeds.
    pub seeds: u64,
    /// Worker threads.
    pub threads: usize,
    /// Keep readable traces.
    pub verbose: bool,
    /// The engine under test.
    pub consensus: EngineKind,
}

/// The engine's name between `before` and `after`, or nothing for the
/// default engine (PBFT), as the command line and the summary spell it.
fn engine_flag(engine: EngineKind, before: &str, after: &str) -> String {
    if engine == EngineKind::default() {
        String::new()
    } else {
        format!("{before}{engine}{after}")
    }
}

impl SweepConfig {
    /// The command that replays `seed` of this sweep exactly.
    pub fn replay_command(&self, seed: u64) -> String {
        let engine = engine_flag(self.consensus, "--consensus ", " ");
        format!(
            "phalanx sim {engine}--validators {} --byzantine {} --faults {} --seeds 1 --start-seed {seed} --verbose",
            self.validators, self.byzantine, self.faults
        )
    }
}

/// What `phalanx sim` reports beside its progress: "2 violations, 41.5 schedules/s".
pub fn progress_detail(violations: u64, schedules_per_s: f64) -> String {
    format!(
        "{} violation{}, {schedules_per_s:.1} schedules/s",
        crate::progress::count(violations as f64),
        if violations == 1 { "" } else { "s" }
    )
}

/// Totals over a sweep.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    /// Schedules run.
    pub schedules: u64,
    /// Schedules with at least one violation.
    pub failed_schedules: u64,
    /// Violations by kind.
    pub violations: BTreeMap<&'static str, u64>,
    /// In how many schedules each fault was active.
    pub fault_schedules: BTreeMap<&'static str, u64>,
    /// Events carried out.
    pub events: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Messages lost / duplicated / delayed by spikes / cut by partitions.
    pub lost: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Spiked messages.
    pub spiked: u64,
    /// Messages cut by partitions or twin connectivity.
    pub cut: u64,
    /// Blocks on the longest honest chains.
    pub blocks: u64,
    /// Successful transactions on the longest honest chains.
    pub txs_succeeded: u64,
    /// Rejected transactions on the longest honest chains.
    pub txs_failed: u64,
    /// Views entered by honest nodes.
    pub view_changes: u64,
    /// Evidence reported by honest nodes.
    pub evidence: u64,
    /// Transactions engines were told to forget (conflicting nonces).
    pub forgotten: u64,
    /// Crashes (all restarted from persisted state).
    pub crashes: u64,
    /// Crashes between two outputs of one input.
    pub mid_output_crashes: u64,
    /// Catch-up answers delivered.
    pub sync_answers: u64,
    /// Twin engines run.
    pub twin_nodes: u64,
    /// What the Byzantine validators did (flattened into the JSON report).
    #[serde(flatten)]
    pub adversary: AdversaryStats,
    /// The longest time from healing to liveness (ms).
    pub max_heal_to_live_ms: u64,
    /// Reorgs on honest nodes by depth (index d: depth d; the last: that
    /// deep or deeper). Longest-chain engines only.
    pub reorg_depths: Vec<u64>,
    /// The lowest chain quality seen (share of honest blocks in the
    /// settled part of the longest honest chain), in percent.
    pub min_chain_quality_pct: Option<u64>,
    /// Simulated milliseconds in all.
    pub simulated_ms: u64,
}

impl Totals {
    fn add(&mut self, scenario_active: FaultSet, o: &Outcome) {
        let s = &o.stats;
        self.schedules += 1;
        if !o.violations.is_empty() {
            self.failed_schedules += 1;
        }
        for v in &o.violations {
            *self.violations.entry(v.kind.name()).or_default() += 1;
        }
        for f in scenario_active.iter() {
            *self.fault_schedules.entry(f.name()).or_default() += 1;
        }
        self.events += s.events;
        self.delivered += s.delivered;
        self.lost += s.net.lost;
        self.duplicated += s.net.duplicated;
        self.spiked += s.net.spiked;
        self.cut += s.net.cut;
        self.blocks += s.height;
        self.txs_succeeded += s.txs_succeeded;
        self.txs_failed += s.txs_failed;
        self.view_changes += s.view_changes;
        self.evidence += s.evidence;
        self.forgotten += s.forgotten;
        self.crashes += s.crashes;
        self.mid_output_crashes += s.mid_output_crashes;
        self.sync_answers += s.sync_answers;
        self.twin_nodes += s.twin_nodes;
        self.adversary.add(&s.adversary);
        self.max_heal_to_live_ms = self.max_heal_to_live_ms.max(s.heal_to_live_ms.unwrap_or(0));
        if self.reorg_depths.len() < s.reorg_depths.len() {
            self.reorg_depths.resize(s.reorg_depths.len(), 0);
        }
        for (d, n) in s.reorg_depths.iter().enumerate() {
            self.reorg_depths[d] += n;
        }
        if let Some(q) = s.chain_quality_pct {
            self.min_chain_quality_pct = Some(self.min_chain_quality_pct.map_or(q, |m| m.min(q)));
        }
        self.simulated_ms += s.end_ms;
    }

    /// Violations in all.
    pub fn violation_count(&self) -> u64 {
        self.violations.values().sum()
    }

    /// Schedules in which `fault` was active.
    pub fn active(&self, fault: Fault) -> u64 {
        self.fault_schedules.get(fault.name()).copied().unwrap_or(0)
    }

    /// Violations of one kind.
    pub fn of_kind(&self, kind: ViolationKind) -> u64 {
        self.violations.get(kind.name()).copied().unwrap_or(0)
    }
}

/// The result of a sweep.
#[derive(Debug)]
pub struct Sweep {
    /// What was run.
    pub config: SweepConfig,
    /// One outcome per seed, in seed order.
    pub outcomes: Vec<Outcome>,
    /// Totals.
    pub totals: Totals,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// A hash over every schedule's trace hash, in seed order.
    pub combined_trace: u64,
}

impl Sweep {
    /// Schedules per second of wall-clock time.
    pub fn rate(&self) -> f64 {
        self.totals.schedules as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The name of sweep worker threads.
const WORKER: &str = "phalanx-sim-worker";

/// A panic inside a schedule is caught and reported as a violation with
/// its seed; its default report (message and backtrace on stderr, once per
/// failing schedule) would only bury the summary. Installed once; panics on
/// any other thread are reported as before.
fn quiet_worker_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some(WORKER) {
                previous(info);
            }
        }));
    });
}

/// Runs seeds `start_seed .. start_seed + seeds` on `threads` threads;
/// `make_hooks` gives each schedule its hooks (engine, executor, tamper).
pub fn sweep<E: Adversarial>(
    config: &SweepConfig,
    make_hooks: &(dyn Fn() -> Hooks<E> + Sync),
) -> Result<Sweep, ScenarioError> {
    sweep_with_progress(config, make_hooks, None)
}

/// [`sweep`], updating `progress` as each schedule ends: schedules done,
/// violations so far and schedules per second. The caller finishes it.
pub fn sweep_with_progress<E: Adversarial>(
    config: &SweepConfig,
    make_hooks: &(dyn Fn() -> Hooks<E> + Sync),
    progress: Option<&Progress>,
) -> Result<Sweep, ScenarioError> {
    // Fail early on a bad configuration rather than in every worker.
    Scenario::generate_for(
        config.consensus,
        config.start_seed,
        config.validators,
        config.byzantine,
        config.faults,
    )?;
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let results: Mutex<Vec<(u64, FaultSet, Outcome)>> = Mutex::new(Vec::new());
    let violations_so_far = AtomicU64::new(0);
    let threads = config.threads.clamp(1, 256);
    quiet_worker_panics();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let worker = std::thread::Builder::new().name(WORKER.into());
            let spawned = worker.spawn_scoped(scope, || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= config.seeds {
                    break;
                }
                let seed = config.start_seed.wrapping_add(i);
                let scenario = Scenario::generate_for(
                    config.consensus,
                    seed,
                    config.validators,
                    config.byzantine,
                    config.faults,
                )
                .expect("validated above");
                let active = scenario.active;
                let mut hooks = make_hooks();
                hooks.verbose |= config.verbose;
                let outcome = run_scenario(scenario, hooks);
                let violations = outcome.violations.len() as u64;
                let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
                results.push((i, active, outcome));
                if let Some(progress) = progress {
                    // Under the lock, so the count never goes backwards.
                    let found =
                        violations_so_far.fetch_add(violations, Ordering::Relaxed) + violations;
                    let done = results.len() as f64;
                    progress.update(
                        done,
                        &progress_detail(found, done / started.elapsed().as_secs_f64().max(1e-9)),
                    );
                }
            });
            spawned.expect("spawning a simulator thread");
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _, _)| *i);
    let mut totals = Totals::default();
    let mut combined_trace: u64 = 0xcbf2_9ce4_8422_2325;
    for (_, active, o) in &results {
        totals.add(*active, o);
        for b in o.trace_hash.to_le_bytes() {
            combined_trace ^= b as u64;
            combined_trace = combined_trace.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    Ok(Sweep {
        config: config.clone(),
        outcomes: results.into_iter().map(|(_, _, o)| o).collect(),
        totals,
        elapsed: started.elapsed(),
        combined_trace,
    })
}

/// The human-readable report: failing seeds with replay commands, then one
/// summary line.
pub fn report_text(s: &Sweep) -> String {
    let c = &s.config;
    let mut out = String::new();
    let failing: Vec<&Outcome> = s
        .outcomes
        .iter()
        .filter(|o| !o.violations.is_empty())
        .collect();
    for o in failing.iter().take(20) {
        out.push_str(&format!(
            "FAIL seed {} (trace {:016x}):\n",
            o.seed, o.trace_hash
        ));
        for v in o.violations.iter().take(5) {
            out.push_str(&format!("  {v}\n"));
        }
        out.push_str(&format!("  replay: {}\n", c.replay_command(o.seed)));
    }
    if failing.len() > 20 {
        out.push_str(&format!(
            "... and {} more failing seeds\n",
            failing.len() - 20
        ));
    }
    if let [only] = s.outcomes.as_slice() {
        let st = &only.stats;
        out.push_str(&format!(
            "seed {}: trace {:016x}, height {}, {} txs ok / {} rejected, max view {}, {} events, healed-to-live {}\n",
            only.seed,
            only.trace_hash,
            st.height,
            st.txs_succeeded,
            st.txs_failed,
            st.max_view,
            st.events,
            st.heal_to_live_ms.map_or("-".into(), |ms| format!("{ms} ms")),
        ));
    }
    let t = &s.totals;
    if !t.violations.is_empty() {
        let kinds: Vec<String> = t
            .violations
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        out.push_str(&format!("violations by kind: {}\n", kinds.join(", ")));
    }
    if t.reorg_depths.iter().skip(1).any(|n| *n > 0) {
        let hist: Vec<String> = t
            .reorg_depths
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, n)| **n > 0)
            .map(|(d, n)| format!("{d}{}:{n}", if d == 16 { "+" } else { "" }))
            .collect();
        out.push_str(&format!(
            "reorgs by depth (blocks: count): {}; lowest chain quality {}\n",
            hist.join(" "),
            t.min_chain_quality_pct
                .map_or("-".into(), |q| format!("{q}% honest blocks"))
        ));
    }
    out.push_str(&format!(
        "phalanx sim: {} schedules ({}n={}, byzantine={}, faults={}, seeds {}..={}), {} violations in {} schedules, {:.1} schedules/s ({:.2} s on {} threads), traces {:016x}\n",
        t.schedules,
        engine_flag(c.consensus, "", ", "),
        c.validators,
        c.byzantine,
        c.faults,
        c.start_seed,
        c.start_seed.wrapping_add(c.seeds.saturating_sub(1)),
        t.violation_count(),
        t.failed_schedules,
        s.rate(),
        s.elapsed.as_secs_f64(),
        c.threads,
        s.combined_trace,
    ));
    out
}

/// Percentiles (50, 90, 99, 100) of the time from healing to liveness
/// over the schedules that reached it, in simulated ms.
pub fn heal_to_live_percentiles(s: &Sweep) -> [u64; 4] {
    let mut v: Vec<u64> = s
        .outcomes
        .iter()
        .filter_map(|o| o.stats.heal_to_live_ms)
        .collect();
    v.sort_unstable();
    let at = |p: usize| {
        v.get((v.len().saturating_sub(1)) * p / 100)
            .copied()
            .unwrap_or(0)
    };
    [at(50), at(90), at(99), at(100)]
}

/// The `k` schedules that took longest on the wall clock: (seed, ms).
pub fn slowest(s: &Sweep, k: usize) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = s.outcomes.iter().map(|o| (o.seed, o.wall_ms)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(k);
    v
}

/// The JSON report.
pub fn report_json(s: &Sweep) -> serde_json::Value {
    let c = &s.config;
    let failures: Vec<serde_json::Value> = s
        .outcomes
        .iter()
        .filter(|o| !o.violations.is_empty())
        .map(|o| {
            serde_json::json!({
                "seed": o.seed,
                "trace_hash": format!("{:016x}", o.trace_hash),
                "violations": o.violations,
                "replay": c.replay_command(o.seed),
            })
        })
        .collect();
    serde_json::json!({
        "consensus": c.consensus.name(),
        "validators": c.validators,
        "byzantine": c.byzantine,
        "faults": c.faults,
        "start_seed": c.start_seed,
        "seeds": c.seeds,
        "threads": c.threads,
        "schedules": s.totals.schedules,
        "violations": s.totals.violation_count(),
        "failed_schedules": s.totals.failed_schedules,
        "schedules_per_second": s.rate(),
        "elapsed_seconds": s.elapsed.as_secs_f64(),
        "trace_hash": format!("{:016x}", s.combined_trace),
        "slowest": slowest(s, 5),
        "heal_to_live_ms_p50_p90_p99_max": heal_to_live_percentiles(s),
        "seed_traces": s
            .outcomes
            .iter()
            .take(100)
            .map(|o| (o.seed, format!("{:016x}", o.trace_hash)))
            .collect::<Vec<_>>(),
        "totals": s.totals,
        "failures": failures,
    })
}
