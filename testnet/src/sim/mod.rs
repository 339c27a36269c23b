//! The deterministic simulator (`phalanx sim`): n unmodified engines (PBFT,
//! or any engine in the registry) in
//! one process, a seeded hostile network, crashes and restarts from
//! persisted state, a client workload with invalid transactions, Byzantine
//! validators built around honest engines, and checkers for agreement,
//! validity, no honest double-signing (save before send) and liveness after
//! the network heals.
//!
//! # A schedule
//!
//! A schedule is a pure function of (seed, n, Byzantine count, faults): no
//! wall clock, no `HashMap` iteration, no thread interleaving reaches its
//! trace. From the seed it draws ([`scenario`]): which of the allowed faults
//! are active, consensus parameters (small batches, checkpoints every 2–4
//! blocks, a 200 ms view-change timeout), the network, partitions, crashes,
//! the Byzantine validators and what each does, and the client workload.
//! Time is simulated in milliseconds; events run in (time, insertion) order.
//!
//! - Until the heal time (1.0–2.5 s) the network ([`network`]) delays each
//!   message by 1–25 ms plus occasional spikes of up to 1.2 s, loses,
//!   duplicates and reorders messages, and partitions the validators into
//!   groups; honest validators crash (sometimes between two outputs of one
//!   input, e.g. after persisting a vote and before sending it) and restart
//!   from their persisted records and stored chain with `restore` + `Start`.
//!   Under `slow` every message takes 100–300 ms for the whole run, longer
//!   than the 200 ms base timeout allows: only timeouts that grow finish.
//! - At the heal time the network becomes reliable (base delay only),
//!   everyone is up, and clients hand every node the valid transactions its
//!   chain still lacks (as mempool gossip would). Byzantine validators keep
//!   misbehaving.
//! - Byzantine validators (`phalanx_adversary`) are honest engines whose outputs
//!   are rewritten and re-signed with their own key: equivocating
//!   pre-prepares, conflicting votes, withholding, corrupted signatures,
//!   stale replays, forged VIEW-CHANGE/NEW-VIEW, tampered catch-up answers,
//!   floods (padded certificates, evidence, later-view and non-primary
//!   PRE-PREPAREs, impersonated VIEW-CHANGEs);
//!   Twins are two honest engines sharing a key, each peer seeing one or
//!   both. Byzantine drivers skip the mempool's signature check, so forged
//!   transactions reach their proposals.
//!
//! # Checkers
//!
//! After every step ([`checkers`], [`world`]): agreement on block hashes per
//! height; validity against an independent model of the transfer rules;
//! every promise an honest validator's message makes (`Message::promises`:
//! a vote, a granted term vote, an entry) was persisted first and never
//! conflicts with another it made (across restarts); commits come in order
//! with quorum certificates from the primary of the block's round;
//! evidence never accuses an honest validator; an honest validator passes
//! on in another honest validator's name only statements that validator
//! sent (`Message::statements`: votes in certificates, VIEW-CHANGEs in a
//! NEW-VIEW — no impersonation gets through, whatever the engine's own
//! checks say); `check_invariants` holds on every honest engine (with its
//! bounds). Liveness: within [`LIVENESS_BOUND_MS`] of healing, every honest
//! node has committed (in a block, successful or rejected by execution)
//! every correctly signed transaction any client submitted, or another
//! transaction of its sender with its nonce; and once the run has settled
//! no honest engine still holds a transaction (the simulator plays the
//! mempool: after each commit it tells the engine to forget what lost a
//! nonce race, `Input::Forget`).
//!
//! A failing seed prints the command that replays it and the hash of its
//! delivered-event trace ([`trace`]), which a replay reproduces.
//!
//! Layout: [`rng`] (the only randomness), [`faults`] (the `--faults`
//! vocabulary), [`scenario`] (a schedule's script) and its [`workload`],
//! [`network`], [`node`] (one engine, its Byzantine wrapper if any, and its durable
//! state), [`checkers`], [`trace`], [`hooks`] (what a run is handed and
//! returns), [`world`] (the event loop) and its drivers, [`sweep`]
//! (many seeds on many threads, and the report).
//!
//! The same world runs the crash-fault-tolerant baseline (`--consensus
//! cft`, picked through `phalanx_runtime::registry`): n ≥ 3, no Byzantine validators, the network faults
//! and crashes above, and the same agreement, validity and liveness
//! checkers. Its promises are Raft's: one granted vote per term and one
//! entry per (term, index) from a leader, each persisted before it is sent.
//!
//! The simulator must never modify the engine to inject a fault: faults wrap
//! an engine's inputs and outputs, or live in the network. The engine under
//! test comes from an [`EngineFactory`], so a mutated engine can be handed in.

use phalanx_ledger::EngineKind;
use phalanx_runtime::registry;

pub mod checkers;
mod draw;
mod driver;
pub mod faults;
pub mod hooks;
pub mod network;
pub mod node;
pub use phalanx_adversary::rng;
pub mod scenario;
pub mod sweep;
pub mod trace;
pub mod workload;
pub mod world;

pub use checkers::{Violation, ViolationKind};
pub use faults::{Fault, FaultSet};
pub use hooks::{ledger_executor, Executor, Hooks, Outcome, Stats, Tamper, TamperCtx};
pub use node::{factory, EngineFactory, SimEngine};
pub use scenario::{Scenario, LIVENESS_BOUND_MS, VIEW_CHANGE_TIMEOUT_MS};
pub use sweep::{sweep, sweep_with_progress, Sweep, SweepConfig, Totals};
pub use world::run_scenario;

/// `phalanx sim` arguments.
#[derive(Clone, Debug, clap::Args)]
pub struct SimArgs {
    /// The engine under test: `pbft`, or `cft` (the crash-fault-tolerant
    /// baseline: no Byzantine validators, network faults and crashes only).
    #[arg(long, value_parser = registry::parse, default_value = "pbft")]
    pub consensus: EngineKind,
    /// Validators in every schedule (at least 4 for PBFT, 3 for CFT).
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// How many schedules (seeds) to run.
    #[arg(long, default_value_t = 100)]
    pub seeds: u64,
    /// The first seed; schedules use start-seed, start-seed+1, ...
    #[arg(long, default_value_t = 0)]
    pub start_seed: u64,
    /// Byzantine validators per schedule, at most f = (n-1)/3 [default: f;
    /// 0 with `--consensus cft`]. Twins count as one.
    #[arg(long)]
    pub byzantine: Option<usize>,
    /// Faults each schedule draws from: `all`, or a comma-separated list of
    /// delay, loss, dup, reorder, partition, crash, equivocate,
    /// conflicting-votes, silent, bad-sig, stale-replay, forged-view-change,
    /// twins, bad-sync, flood.
    #[arg(long, default_value = "all")]
    pub faults: FaultSet,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
    /// Worker threads [default: available parallelism].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print every schedule's event trace (meant for one seed).
    #[arg(long)]
    pub verbose: bool,
}

impl SimArgs {
    /// The sweep these arguments ask for.
    pub fn sweep_config(&self) -> SweepConfig {
        let threads = if self.verbose {
            1
        } else {
            self.threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            })
        };
        let byzantine = self
            .byzantine
            .unwrap_or(match registry::fault_model(self.consensus) {
                Ok(model) if model.byzantine() => scenario::max_faulty(self.validators.max(4)),
                _ => 0,
            });
        SweepConfig {
            validators: self.validators,
            byzantine,
            faults: self.faults,
            start_seed: self.start_seed,
            seeds: self.seeds,
            threads,
            verbose: self.verbose,
            consensus: self.consensus,
        }
    }
}

/// A sweep of the shipped engine the arguments name.
struct Sweeping<'a> {
    config: &'a SweepConfig,
    progress: &'a crate::progress::Progress,
}

impl registry::WithEngine for Sweeping<'_> {
    type Output = Result<Sweep, scenario::ScenarioError>;
    fn run<E: phalanx_adversary::Adversarial>(self) -> Self::Output {
        sweep::sweep_with_progress(self.config, &Hooks::<E>::default, Some(self.progress))
    }
}

/// Runs `phalanx sim`; `Ok(true)` when no schedule violated a property.
pub fn run(args: &SimArgs) -> anyhow::Result<bool> {
    let config = args.sweep_config();
    let progress = crate::progress::Progress::new(
        "sim",
        crate::progress::Unit::Count("schedules"),
        config.seeds as f64,
    );
    let result = registry::with_engine(
        config.consensus,
        Sweeping {
            config: &config,
            progress: &progress,
        },
    )?;
    progress.finish();
    let result = result?;
    if args.verbose {
        for o in &result.outcomes {
            println!("== seed {} ==", o.seed);
            for line in &o.trace {
                println!("{line}");
            }
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&sweep::report_json(&result))?
        );
    } else {
        print!("{}", sweep::report_text(&result));
    }
    Ok(result.totals.violation_count() == 0)
}
