//! A schedule's script: everything random about one simulated run, drawn
//! from (seed, n, Byzantine count, faults) and nothing else.
//!
//! The simulation itself ([`super::world`]) draws further numbers while it
//! runs (per-message delays, losses, which half gets an equivocation), but
//! only from generators forked from the same seed, so the whole run — and its
//! trace hash — is a pure function of the four inputs. Tests build a scenario
//! with [`Scenario::generate`] and then edit its public fields to stage a
//! particular situation (a partition that never heals, no faults at all).

use super::faults::{Fault, FaultSet};
use super::rng::Rng;
use phalanx_crypto::Keypair;
use phalanx_ledger::EngineKind;
use phalanx_ledger::{Address, ConsensusParams, Genesis, SignedTransaction, ValidatorIndex};
use phalanx_runtime::registry;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The simulated chain's id.
pub const CHAIN_ID: &str = "phalanx-sim";

/// The base view-change timeout in the simulator (the engine doubles it per
/// consecutive view change, up to 64×).
pub const VIEW_CHANGE_TIMEOUT_MS: u64 = 200;

/// How long after the network heals every honest validator must have
/// committed every submitted, correctly signed transaction.
///
/// Why this number: when the network heals, honest validators may sit in a
/// view change whose back-off timeout has grown during the faults (the
/// engine doubles the 200 ms base per consecutive view change, capping at
/// 64× = 12.8 s), and up to f of the next primaries may be Byzantine and
/// need their own timeout each. 30 s covers two full capped timeouts plus
/// the catch-up, which is what the measured worst cases need (see the
/// simulator's report in testnet/tests/sim.rs); a run that needs longer
/// points at a liveness bug, not at bad luck.
pub const LIVENESS_BOUND_MS: u64 = 30_000;

/// Extra simulated time run after liveness is reached, so late commits
/// (catch-up, view changes in flight) are still checked for safety.
pub const SETTLE_MS: u64 = 300;

/// Most validators the simulator supports (keys are precomputed).
pub const MAX_VALIDATORS: usize = 31;

/// Client accounts funded at genesis.
pub const ACCOUNTS: usize = 5;

/// Each account's genesis balance.
pub const ACCOUNT_BALANCE: u64 = 1_000;

pub(super) struct Keys {
    pub(super) validators: Vec<Keypair>,
    pub(super) node_keys: Vec<Keypair>,
    pub(super) accounts: Vec<Keypair>,
}

pub(super) fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        validators: (0..MAX_VALIDATORS)
            .map(|i| Keypair::from_label(&format!("sim-validator-{i}")))
            .collect(),
        node_keys: (0..MAX_VALIDATORS)
            .map(|i| Keypair::from_label(&format!("sim-node-{i}")))
            .collect(),
        accounts: (0..ACCOUNTS + 1)
            .map(|i| Keypair::from_label(&format!("sim-account-{i}")))
            .collect(),
    })
}

/// The consensus key of validator `i`.
pub fn validator_key(i: usize) -> &'static Keypair {
    &keys().validators[i]
}

/// The key of client account `i` (`i == ACCOUNTS` is an unfunded account).
pub fn account_key(i: usize) -> &'static Keypair {
    &keys().accounts[i]
}

/// The address of client account `i`.
pub fn account(i: usize) -> Address {
    Address(account_key(i).public())
}

/// The network's behaviour during the faulty phase (after healing: only the
/// base delay, no loss, duplication or spikes).
#[derive(Clone, Debug, PartialEq)]
pub struct NetParams {
    /// Smallest one-way delay.
    pub min_delay_ms: u64,
    /// Largest ordinary one-way delay.
    pub max_delay_ms: u64,
    /// Probability that a message is delayed by a spike.
    pub spike_prob: f64,
    /// Largest spike.
    pub spike_max_ms: u64,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub dup: f64,
    /// Whether each link delivers in order (false: reordering).
    pub fifo: bool,
}

/// A partition: validators in different groups cannot talk during [start, end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// When it starts.
    pub start_ms: u64,
    /// When it heals (`u64::MAX`: never).
    pub end_ms: u64,
    /// The group of each validator, by index.
    pub group: Vec<u8>,
}

/// A crash of an honest validator and its restart from persisted state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashPlan {
    /// Who.
    pub validator: ValidatorIndex,
    /// When it crashes.
    pub at_ms: u64,
    /// When it restarts (at most the heal time).
    pub restart_ms: u64,
    /// `Some(k)`: the crash strikes in the middle of the next input's
    /// outputs, after the first `k` were carried out (between a `Persist` and
    /// the send it protects, say); `None`: between two inputs.
    pub mid_handle: Option<usize>,
}

pub use phalanx_adversary::{SilentMode, Strategy};

/// A Byzantine validator: an unmodified honest engine (two, for twins)
/// wrapped in behaviours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ByzantinePlan {
    /// Which validator.
    pub validator: ValidatorIndex,
    /// Two honest copies share the key (Twins); no other behaviour then.
    pub twins: bool,
    /// Its misbehaviours.
    pub behaviours: Vec<Strategy>,
}

/// From `start_ms` on, which twin each peer is connected to: 1 = the first,
/// 2 = the second, 3 = both (by peer validator index; the twins' own entry
/// is unused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwinEpoch {
    /// When this connectivity starts.
    pub start_ms: u64,
    /// Per peer: 1, 2 or 3.
    pub sees: Vec<u8>,
}

/// Transactions a client hands to some validators' drivers at one time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    /// When.
    pub at_ms: u64,
    /// To whom (validator indices; both twins of a twin validator get it).
    pub targets: Vec<ValidatorIndex>,
    /// What.
    pub txs: Vec<SignedTransaction>,
}

/// The whole script of one schedule.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The seed.
    pub seed: u64,
    /// Validators.
    pub n: usize,
    /// Byzantine validators requested (twins count as one).
    pub byzantine_count: usize,
    /// The faults the command line allowed.
    pub requested: FaultSet,
    /// The faults this schedule actually injects (a seeded subset).
    pub active: FaultSet,
    /// Consensus parameters.
    pub params: ConsensusParams,
    /// The genesis (validators, funded accounts, parameters).
    pub genesis: Genesis,
    /// Network behaviour before healing.
    pub net: NetParams,
    /// Partitions.
    pub partitions: Vec<Partition>,
    /// Crashes of honest validators.
    pub crashes: Vec<CrashPlan>,
    /// The Byzantine validators.
    pub byzantine: Vec<ByzantinePlan>,
    /// Twin connectivity per twin validator.
    pub twin_epochs: BTreeMap<ValidatorIndex, Vec<TwinEpoch>>,
    /// The client workload.
    pub workload: Vec<Submission>,
    /// Whether honest drivers drop badly signed transactions before the
    /// engine sees them (as the node's mempool does). When false, they reach
    /// blocks and execution must reject them. Byzantine drivers never check.
    pub mempool_verifies: bool,
    /// When network faults and crashes stop (`u64::MAX`: never).
    pub heal_ms: u64,
    /// How long after healing liveness may take.
    pub liveness_bound_ms: u64,
    /// Simulated time run after liveness is reached.
    pub settle_ms: u64,
    /// The engine under test.
    pub consensus: EngineKind,
}

/// Why a scenario cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// The engine is not one this build runs.
    #[error(transparent)]
    Engine(#[from] registry::NotRunnable),
    /// n is out of range for the engine.
    #[error(
        "--validators {n}: the simulator runs {engine} with {min} to {MAX_VALIDATORS} validators"
    )]
    Validators {
        /// Requested.
        n: usize,
        /// The engine.
        engine: EngineKind,
        /// The fewest it runs with.
        min: usize,
    },
    /// A crash-fault engine (the CFT baseline) assumes crash faults only.
    #[error(
        "--byzantine {byzantine}: {engine} assumes crash faults only; use --byzantine 0 (or a Byzantine fault-tolerant engine)"
    )]
    ByzantineInCrashModel {
        /// Requested.
        byzantine: usize,
        /// The engine.
        engine: EngineKind,
    },
    /// More Byzantine validators than PBFT tolerates.
    #[error("--byzantine {byzantine}: PBFT with {n} validators tolerates at most f = {f} Byzantine validators")]
    TooManyByzantine {
        /// Requested.
        byzantine: usize,
        /// Validators.
        n: usize,
        /// The tolerated number.
        f: usize,
    },
}

/// f for n validators (n ≥ 4).
pub fn max_faulty(n: usize) -> usize {
    (n - 1) / 3
}

/// Mixes the four inputs that define a schedule into one generator seed.
fn schedule_seed(seed: u64, n: usize, byzantine: usize, faults: FaultSet) -> u64 {
    let mut x = seed;
    for v in [n as u64, byzantine as u64, faults.bits() as u64] {
        x = x.rotate_left(23) ^ v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    }
    x
}

/// Generator streams: one per concern, so they do not shift each other.
pub(crate) mod stream {
    pub const FAULTS: u64 = 1;
    pub const PARAMS: u64 = 2;
    pub const NET: u64 = 3;
    pub const PARTITIONS: u64 = 4;
    pub const CRASHES: u64 = 5;
    pub const BYZANTINE: u64 = 6;
    pub const TWINS: u64 = 7;
    pub const WORKLOAD: u64 = 8;
    pub const RUN_NETWORK: u64 = 9;
    pub const RUN_ADVERSARY: u64 = 10;
}

impl Scenario {
    /// The PBFT script for (seed, n, Byzantine count, faults).
    pub fn generate(
        seed: u64,
        n: usize,
        byzantine_count: usize,
        requested: FaultSet,
    ) -> Result<Scenario, ScenarioError> {
        Scenario::generate_for(EngineKind::default(), seed, n, byzantine_count, requested)
    }

    /// The script for (engine, seed, n, Byzantine count, faults). The CFT
    /// baseline takes no Byzantine validators, so its schedules draw only
    /// the network faults and crashes of `requested`; the same seed and n
    /// give it the same network, crashes and workload as PBFT without
    /// Byzantine validators.
    pub fn generate_for(
        consensus: EngineKind,
        seed: u64,
        n: usize,
        byzantine_count: usize,
        requested: FaultSet,
    ) -> Result<Scenario, ScenarioError> {
        let model = registry::fault_model(consensus)?;
        let min = model.min_validators();
        if !(min..=MAX_VALIDATORS).contains(&n) {
            return Err(ScenarioError::Validators {
                n,
                engine: consensus,
                min,
            });
        }
        if byzantine_count > 0 && !model.byzantine() {
            return Err(ScenarioError::ByzantineInCrashModel {
                byzantine: byzantine_count,
                engine: consensus,
            });
        }
        let f = max_faulty(n);
        if byzantine_count > f {
            return Err(ScenarioError::TooManyByzantine {
                byzantine: byzantine_count,
                n,
                f,
            });
        }
        let base = schedule_seed(seed, n, byzantine_count, requested);
        let rng = |s| Rng::fork(base, s);

        let active =
            super::draw::choose_active(&mut rng(stream::FAULTS), requested, byzantine_count);
        let params = super::draw::choose_params(&mut rng(stream::PARAMS));
        let mut genesis = super::draw::make_genesis(n, &params);
        if matches!(consensus, EngineKind::PbftPow | EngineKind::PbftPos) {
            genesis.consensus.engine = consensus;
            genesis.consensus.fallback = consensus.fallback();
        }
        if matches!(consensus, EngineKind::Pow | EngineKind::PbftPow) {
            // Short blocks and an easy limit: schedules of a few seconds
            // see dozens of blocks, each with a few hundred hashes of work.
            genesis.consensus.engine = consensus;
            genesis.consensus.block_time_ms = 2_000;
            genesis.consensus.pow_limit = 0x2007_ffff;
        }
        if matches!(consensus, EngineKind::Pos | EngineKind::PbftPos) {
            // Slots well above the network's delays, epochs short enough
            // that seeds change within a run, unequal stakes.
            genesis.consensus.engine = consensus;
            genesis.consensus.slot_ms = 2_000;
            genesis.consensus.epoch_slots = 8;
            for (i, v) in genesis.validators.iter_mut().enumerate() {
                v.stake = 1 + (i as u64 % 3);
            }
        }
        let mut r = rng(stream::NET);
        let heal_ms = r.range(1_000, 2_500);
        let net = super::draw::choose_net(&mut r, active);
        let byzantine =
            super::draw::choose_byzantine(&mut rng(stream::BYZANTINE), n, byzantine_count, active);
        let honest: Vec<ValidatorIndex> = (0..n as u32)
            .map(ValidatorIndex)
            .filter(|v| !byzantine.iter().any(|b| b.validator == *v))
            .collect();
        let partitions = if active.contains(Fault::Partition) {
            super::draw::choose_partitions(&mut rng(stream::PARTITIONS), n, heal_ms)
        } else {
            Vec::new()
        };
        let crashes = if active.contains(Fault::Crash) {
            super::draw::choose_crashes(&mut rng(stream::CRASHES), &honest, heal_ms)
        } else {
            Vec::new()
        };
        let mut twin_epochs = BTreeMap::new();
        let mut tr = rng(stream::TWINS);
        for b in byzantine.iter().filter(|b| b.twins) {
            twin_epochs.insert(
                b.validator,
                super::draw::choose_twin_epochs(&mut tr, n, heal_ms),
            );
        }
        let mut wr = rng(stream::WORKLOAD);
        let mempool_verifies = wr.chance(0.5);
        let workload = super::workload::generate(&mut wr, n, heal_ms);
        Ok(Scenario {
            seed,
            n,
            byzantine_count,
            requested,
            active,
            params,
            genesis,
            net,
            partitions,
            crashes,
            byzantine,
            twin_epochs,
            workload,
            mempool_verifies,
            heal_ms,
            // A longest chain commits a block per block interval, and a
            // partition's loser reorgs: give it the time of 60 blocks.
            liveness_bound_ms: if matches!(consensus, EngineKind::Pow | EngineKind::Pos) {
                LIVENESS_BOUND_MS.max(60 * 2_000)
            } else if matches!(consensus, EngineKind::PbftPow | EngineKind::PbftPos) {
                // PBFT's view changes back off while the quorum is gone;
                // after the heal they must reach a primary holding the
                // branch the quorum follows.
                LIVENESS_BOUND_MS.max(60_000)
            } else {
                LIVENESS_BOUND_MS
            },
            // Longest chains: run on for 20 more blocks, so that common
            // prefix and chain quality are judged on a chain that grew
            // after the heal.
            settle_ms: if matches!(consensus, EngineKind::Pow | EngineKind::Pos) {
                20 * 2_000
            } else if matches!(consensus, EngineKind::PbftPow | EngineKind::PbftPos) {
                // Transactions of a discarded branch return to the engines
                // of the nodes that held it, not necessarily the
                // primary's: they commit once a view change reaches a
                // primary that has them — or PBFT falls back again and a
                // miner holding them seals them.
                20_000
            } else {
                SETTLE_MS
            },
            consensus,
        })
    }

    /// A readable summary of the script (for `--verbose`).
    pub fn describe(&self) -> Vec<String> {
        let mut out = vec![format!(
            "seed {} {} n={} byzantine={} active faults: {} (requested {}); heal at {} ms; mempool verifies: {}",
            self.seed, self.consensus.name(), self.n, self.byzantine_count, self.active, self.requested, self.heal_ms, self.mempool_verifies
        )];
        let p = &self.params;
        out.push(format!(
            "params: block {} txs, batch {} ms, checkpoint every {}, window {}, view-change timeout {} ms",
            p.max_block_txs, p.batch_timeout_ms, p.checkpoint_interval, p.watermark_window, p.view_change_timeout_ms
        ));
        out.push(format!("network: {:?}", self.net));
        for b in &self.byzantine {
            out.push(format!(
                "byzantine validator {}: twins={} {:?}",
                b.validator, b.twins, b.behaviours
            ));
        }
        for (v, epochs) in &self.twin_epochs {
            for e in epochs {
                out.push(format!(
                    "twins {v} from {} ms: sees {:?}",
                    e.start_ms, e.sees
                ));
            }
        }
        for part in &self.partitions {
            out.push(format!(
                "partition {}..{} ms: groups {:?}",
                part.start_ms, part.end_ms, part.group
            ));
        }
        for c in &self.crashes {
            out.push(format!(
                "crash validator {} at {} ms, restart at {} ms, mid-handle {:?}",
                c.validator, c.at_ms, c.restart_ms, c.mid_handle
            ));
        }
        for s in &self.workload {
            let txs: Vec<String> = s
                .txs
                .iter()
                .map(|t| {
                    let from = (0..=ACCOUNTS)
                        .find(|i| account(*i) == t.tx.from)
                        .unwrap_or(99);
                    let to = (0..=ACCOUNTS)
                        .find(|i| account(*i) == t.tx.to)
                        .unwrap_or(99);
                    format!(
                        "{}:{from}->{to} amount {} nonce {}{}",
                        &t.hash().to_string()[..8],
                        t.tx.amount,
                        t.tx.nonce,
                        if t.verify().is_ok() {
                            ""
                        } else {
                            " (bad signature)"
                        }
                    )
                })
                .collect();
            out.push(format!(
                "submit at {} ms to {:?}: {}",
                s.at_ms,
                s.targets,
                txs.join(", ")
            ));
        }
        out
    }

    /// The honest validators.
    pub fn honest(&self) -> Vec<ValidatorIndex> {
        (0..self.n as u32)
            .map(ValidatorIndex)
            .filter(|v| self.byzantine_plan(*v).is_none())
            .collect()
    }

    /// The Byzantine plan of `v`, if it is Byzantine.
    pub fn byzantine_plan(&self, v: ValidatorIndex) -> Option<&ByzantinePlan> {
        self.byzantine.iter().find(|b| b.validator == v)
    }

    /// Turns the schedule into one whose network never heals: from the heal
    /// time on, the validators stay split into two groups, neither of which
    /// holds a quorum. A liveness violation is then the right verdict.
    pub fn never_heal(&mut self) {
        let half = self.n / 2;
        self.partitions.push(Partition {
            start_ms: 0,
            end_ms: u64::MAX,
            group: (0..self.n).map(|i| u8::from(i >= half)).collect(),
        });
        self.active.insert(Fault::Partition);
    }

    /// Removes every fault: a perfect network, no crashes, no Byzantine
    /// validators (the workload stays).
    pub fn without_faults(&mut self) {
        self.active = FaultSet::NONE;
        self.byzantine_count = 0;
        self.net = NetParams {
            spike_prob: 0.0,
            loss: 0.0,
            dup: 0.0,
            fifo: true,
            ..self.net.clone()
        };
        self.partitions.clear();
        self.crashes.clear();
        self.byzantine.clear();
        self.twin_epochs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_is_a_pure_function_of_its_inputs() {
        let a = Scenario::generate(42, 4, 1, FaultSet::all()).unwrap();
        let b = Scenario::generate(42, 4, 1, FaultSet::all()).unwrap();
        assert_eq!(a.workload, b.workload);
        assert_eq!(a.byzantine, b.byzantine);
        assert_eq!(a.partitions, b.partitions);
        assert_eq!(a.active, b.active);
        let c = Scenario::generate(43, 4, 1, FaultSet::all()).unwrap();
        assert!(a.workload != c.workload || a.active != c.active);
    }

    #[test]
    fn refuses_too_many_byzantine_validators() {
        let err = Scenario::generate(1, 4, 2, FaultSet::all()).unwrap_err();
        assert!(err.to_string().contains("at most f = 1"), "{err}");
        assert!(Scenario::generate(1, 3, 0, FaultSet::all()).is_err());
    }
}
