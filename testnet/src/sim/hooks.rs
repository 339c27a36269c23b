//! What a run is given besides its scenario — the engine factory, the
//! executor, an optional output tamper — and what it returns.
//!
//! The hooks exist so that tests (and mutation runs of the engine) can hand
//! the simulator something other than the shipped code without touching
//! it: a mutant engine, a broken executor, a driver that misbehaves.

use super::checkers::Violation;
use super::network::NetStats;
use super::node::{factory, EngineFactory};
use phalanx_adversary::AdversaryStats;
use phalanx_consensus::{Engine, Output, Protocol};
use phalanx_crypto::Keypair;
use phalanx_ledger::{execute, Address, Executed, Payload, State, ValidatorIndex, VerifyAll};
use serde::Serialize;

/// Executes a committed payload on a state, given the fee recipient and
/// the chain's minimum fee (the default is the ledger's `execute` with
/// every signature checked). A test can hand in a broken one to see the
/// validity checker object.
pub type Executor = fn(&State, &Payload, &Address, phalanx_ledger::Rules) -> Executed;

/// The ledger's own execution.
pub fn ledger_executor(
    state: &State,
    payload: &Payload,
    fee_to: &Address,
    rules: phalanx_ledger::Rules,
) -> Executed {
    execute(state, payload, fee_to, rules, &VerifyAll)
}

/// What a [`Tamper`] is told about the node whose outputs it sees.
#[derive(Debug)]
pub struct TamperCtx<'a> {
    /// The node's position in the world.
    pub node: usize,
    /// Its validator.
    pub validator: ValidatorIndex,
    /// The simulated time.
    pub now_ms: u64,
    /// Its key (a tamper may sign with it).
    pub key: &'a Keypair,
    /// The chain id.
    pub chain_id: &'a str,
}

/// Rewrites an honest engine's outputs before its driver carries them out:
/// the hook tests use to plant violations the checkers must catch (it
/// never touches the engine itself).
pub trait Tamper<E: Engine> {
    /// Called with every output list of every honest node.
    fn outputs(&mut self, ctx: &TamperCtx<'_>, outputs: &mut Vec<Output<E::Message, E::Record>>);
}

/// Everything about a run that is not the scenario: the engine under test,
/// the executor, an optional tamper, and how to report.
pub struct Hooks<E: Engine> {
    /// Builds engines.
    pub engine: EngineFactory<E>,
    /// Executes committed payloads.
    pub executor: Executor,
    /// Rewrites honest outputs (tests only).
    pub tamper: Option<Box<dyn Tamper<E>>>,
    /// Stop at the end of the first step that breaks a property (default);
    /// false runs on to collect every violation.
    pub stop_on_violation: bool,
    /// Keep a readable trace.
    pub verbose: bool,
    /// Keep the final chain of the honest node furthest ahead in the
    /// outcome ([`Outcome::final_chain`]; off in sweeps, which keep every
    /// outcome).
    pub keep_chain: bool,
}

impl<E: Protocol> Default for Hooks<E> {
    fn default() -> Hooks<E> {
        Hooks {
            engine: factory::<E>(),
            executor: ledger_executor,
            tamper: None,
            stop_on_violation: true,
            verbose: false,
            keep_chain: false,
        }
    }
}

impl<E: Engine> std::fmt::Debug for Hooks<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("tamper", &self.tamper.is_some())
            .field("stop_on_violation", &self.stop_on_violation)
            .field("verbose", &self.verbose)
            .finish_non_exhaustive()
    }
}

/// What happened in one schedule, in numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Events carried out.
    pub events: u64,
    /// Messages handed to engines.
    pub delivered: u64,
    /// Network counters.
    pub net: NetStats,
    /// What the Byzantine validators did.
    pub adversary: AdversaryStats,
    /// Twin engines running.
    pub twin_nodes: u64,
    /// The highest height an honest node reached.
    pub height: u64,
    /// Transactions submitted (counting resubmissions once).
    pub submitted: u64,
    /// Successful transactions on the longest honest chain.
    pub txs_succeeded: u64,
    /// Failed (rejected at execution) transactions on the longest honest chain.
    pub txs_failed: u64,
    /// The highest view an honest node entered.
    pub max_view: u64,
    /// Views entered by honest nodes (`ViewChanged` outputs).
    pub view_changes: u64,
    /// Equivocation evidence honest engines reported.
    pub evidence: u64,
    /// Transactions engines were told to forget (their nonce was used by
    /// a conflicting one).
    pub forgotten: u64,
    /// Crashes of honest nodes (and those of them mid-way through outputs).
    pub crashes: u64,
    /// Of which struck between two outputs of one input.
    pub mid_output_crashes: u64,
    /// Restarts from persisted state.
    pub restarts: u64,
    /// Catch-up requests.
    pub sync_requests: u64,
    /// Catch-up answers delivered.
    pub sync_answers: u64,
    /// When the run ended (simulated ms).
    pub end_ms: u64,
    /// How long after healing every honest node had every valid transaction.
    pub heal_to_live_ms: Option<u64>,
    /// Blocks mined (proof of work).
    pub mined: u64,
    /// Validators whose stake the longest honest chain slashed (PoS).
    pub slashed: u64,
    /// Longest-chain engines: the share of blocks made by honest
    /// validators in the settled part of the longest honest chain, in
    /// percent (`None` when it is too short to tell).
    pub chain_quality_pct: Option<u64>,
    /// Reorgs on honest nodes, by depth (blocks reverted): index d counts
    /// reorgs of depth d (the last bucket: that deep or deeper).
    pub reorg_depths: Vec<u64>,
    /// PBFT with a fallback: tentative blocks honest nodes made final as
    /// they were.
    pub finalized: u64,
    /// PBFT with a fallback: times honest nodes fell back.
    pub fallbacks: u64,
    /// Views honest replicas were in, or changing to, from the heal until
    /// the run was live: the views of the recovery (with the engine's
    /// primary rule, who led them).
    pub recovery_views: std::collections::BTreeSet<u64>,
}

/// The result of one schedule.
#[derive(Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Broken properties (empty: the schedule passed).
    pub violations: Vec<Violation>,
    /// The hash of the delivered-event trace.
    pub trace_hash: u64,
    /// Counters.
    pub stats: Stats,
    /// The readable trace (with `verbose`).
    pub trace: Vec<String>,
    /// Wall-clock milliseconds the schedule took (not part of the trace).
    pub wall_ms: u64,
    /// With [`Hooks::keep_chain`]: the final blocks (every block, for
    /// engines without finality) of the honest node with the highest final
    /// height, genesis first.
    pub final_chain: Vec<phalanx_ledger::Block>,
    /// With [`Hooks::keep_chain`]: that node's state after its head (its
    /// final block, once the run is live: every head is final then).
    pub final_state: Option<State>,
}
