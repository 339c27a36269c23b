//! The world loop of one schedule: a simulated clock, an event queue
//! ordered by (time, insertion), the nodes, the network, the adversaries
//! and the checkers. What each node's driver does with its engine's
//! outputs lives in [`super::driver`].
//!
//! Nothing here reads a wall clock, iterates a `HashMap`, or depends on
//! threads: the run is a pure function of the scenario.

use super::checkers::{CertCache, Safety, SigCache, Violation, ViolationKind};
use super::hooks::{Hooks, Outcome, Stats};
use super::network::{Endpoint, Network};
use super::node::{nonce_used, Node};
use super::rng::Rng;
use super::scenario::{account, account_key, stream, validator_key, Scenario, ACCOUNTS, CHAIN_ID};
use super::trace::Trace;
use phalanx_adversary::Adversarial;
use phalanx_adversary::{Collusion, Ctx};
use phalanx_consensus::{FaultModel, Input, Message, TimeoutKind};
use phalanx_crypto::Hash;
use phalanx_ledger::{Block, Height, SignedTransaction, Transaction, ValidatorIndex};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

/// Events one schedule may take. A healthy schedule takes a few thousand;
/// one that takes this many is flooding the network, which is reported
/// rather than left to eat the machine.
pub const MAX_EVENTS: u64 = 1_000_000;

pub(super) enum Event<M> {
    Start(usize),
    Deliver {
        to: usize,
        from: usize,
        message: Rc<M>,
    },
    Timer {
        node: usize,
        incarnation: u32,
        kind: TimeoutKind,
        generation: u64,
    },
    Submit(usize),
    /// Transactions a node's mempool pushes to a peer (those of reverted
    /// tentative blocks that can still apply).
    Push {
        to: usize,
        txs: Vec<SignedTransaction>,
    },
    Crash {
        node: usize,
        mid_handle: Option<usize>,
    },
    CrashNow {
        node: usize,
        incarnation: u32,
    },
    Restart(usize),
    SyncServe {
        server: usize,
        requester: usize,
        incarnation: u32,
        from: Height,
        /// The requester's block locator (as the node's sync request).
        locator: Vec<(Height, Hash)>,
    },
    SyncReply {
        requester: usize,
        incarnation: u32,
        blocks: Vec<Block>,
    },
    Heal,
    Tick(usize),
    Deadline,
    /// A node's mining job found its block (proof of work).
    Mined {
        node: usize,
        incarnation: u32,
        generation: u64,
        job: phalanx_consensus::MineJob,
    },
}

struct Queued<M> {
    at: u64,
    seq: u64,
    event: Event<M>,
}

impl<M> PartialEq for Queued<M> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<M> Eq for Queued<M> {}
impl<M> PartialOrd for Queued<M> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<M> Ord for Queued<M> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// One schedule being run.
pub struct World<E: Adversarial> {
    pub(super) scenario: Scenario,
    pub(super) hooks: Hooks<E>,
    pub(super) now: u64,
    queue: BinaryHeap<Reverse<Queued<E::Message>>>,
    pub(super) next_seq: u64,
    pub(super) nodes: Vec<Node<E>>,
    pub(super) network: Network,
    pub(super) adversary_rng: Rng,
    pub(super) collusion: Collusion,
    pub(super) safety: Safety,
    pub(super) sigs: SigCache,
    pub(super) certs: CertCache,
    /// Correctly signed submitted transactions, in submission order: what
    /// liveness demands.
    pub(super) wanted: Vec<SignedTransaction>,
    pub(super) wanted_set: BTreeSet<Hash>,
    pub(super) healed: bool,
    pub(super) live_at: Option<u64>,
    pub(super) committed_since_check: bool,
    /// Every wanted transaction is in every honest chain (the probe
    /// included, once sent); liveness then waits for the views to agree.
    pub(super) all_committed: bool,
    /// The probe transfer handed to every node once everything wanted has
    /// committed after the heal: every honest replica must take part in
    /// the view that commits it.
    pub(super) probe: Option<Hash>,
    pub(super) trace: Trace,
    pub(super) stats: Stats,
    pub(super) violations: Vec<Violation>,
}

impl<E: Adversarial> std::fmt::Debug for World<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("seed", &self.scenario.seed)
            .field("now", &self.now)
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

/// Runs one schedule of engine `E` to its end and checks it.
///
/// # Panics
///
/// If the scenario was drawn for another engine.
pub fn run_scenario<E: Adversarial>(scenario: Scenario, hooks: Hooks<E>) -> Outcome {
    assert_eq!(
        scenario.consensus,
        E::KIND,
        "a {} scenario handed to the {} engine",
        scenario.consensus,
        E::KIND
    );
    let started = std::time::Instant::now();
    let mut outcome = run_caught(scenario, hooks);
    outcome.wall_ms = started.elapsed().as_millis() as u64;
    outcome
}

fn run_caught<E: Adversarial>(scenario: Scenario, hooks: Hooks<E>) -> Outcome {
    let seed = scenario.seed;
    let verbose = hooks.verbose;
    match catch_unwind(AssertUnwindSafe(move || World::new(scenario, hooks).run())) {
        Ok(outcome) => outcome,
        Err(panic) => Outcome {
            seed,
            violations: vec![Violation {
                kind: ViolationKind::Panic,
                at_ms: 0,
                detail: panic_message(&panic),
            }],
            trace_hash: 0,
            stats: Stats::default(),
            trace: if verbose {
                vec!["(panicked)".into()]
            } else {
                Vec::new()
            },
            wall_ms: 0,
            final_chain: Vec::new(),
            final_state: None,
        },
    }
}

pub(super) fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

impl<E: Adversarial> World<E> {
    /// Sets up nodes, network and adversaries for `scenario`.
    pub fn new(scenario: Scenario, hooks: Hooks<E>) -> World<E> {
        let genesis = &scenario.genesis;
        let genesis_hash = genesis.block().hash();
        let mut nodes = Vec::new();
        for i in 0..scenario.n {
            let v = ValidatorIndex(i as u32);
            let cfg = E::config(genesis, v).expect("the simulator builds valid configurations");
            let key = validator_key(i).clone();
            match scenario.byzantine_plan(v) {
                None => nodes.push(Node::new(
                    genesis,
                    Endpoint {
                        validator: v,
                        twin: 0,
                    },
                    true,
                    cfg,
                    key,
                    None,
                )),
                Some(plan) if plan.twins => {
                    for twin in [1, 2] {
                        let ep = Endpoint { validator: v, twin };
                        nodes.push(Node::new(
                            genesis,
                            ep,
                            false,
                            cfg.clone(),
                            key.clone(),
                            None,
                        ));
                    }
                }
                Some(plan) => {
                    let adv = E::simulated(
                        cfg.clone(),
                        key.clone(),
                        plan.behaviours.clone(),
                        genesis_hash,
                    );
                    let ep = Endpoint {
                        validator: v,
                        twin: 0,
                    };
                    nodes.push(Node::new(genesis, ep, false, cfg, key, Some(adv)));
                }
            }
        }
        let net_rng = Rng::fork(run_seed(&scenario), stream::RUN_NETWORK);
        let adversary_rng = Rng::fork(run_seed(&scenario), stream::RUN_ADVERSARY);
        let network = Network::new(
            scenario.net.clone(),
            scenario.partitions.clone(),
            scenario.twin_epochs.clone(),
            scenario.heal_ms,
            net_rng,
        );
        let twin_nodes = nodes.iter().filter(|n| n.endpoint.twin != 0).count() as u64;
        let verbose = hooks.verbose;
        World {
            scenario,
            hooks,
            now: 0,
            queue: BinaryHeap::new(),
            next_seq: 0,
            nodes,
            network,
            adversary_rng,
            collusion: Collusion::default(),
            safety: Safety::default(),
            sigs: SigCache::default(),
            certs: CertCache::default(),
            wanted: Vec::new(),
            wanted_set: BTreeSet::new(),
            healed: false,
            live_at: None,
            all_committed: false,
            probe: None,
            committed_since_check: false,
            trace: Trace::new(verbose),
            stats: Stats {
                twin_nodes,
                ..Stats::default()
            },
            violations: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, at: u64, event: Event<E::Message>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse(Queued { at, seq, event }));
    }

    pub(super) fn violation(&mut self, kind: ViolationKind, detail: String) {
        let at_ms = self.now;
        self.trace
            .line(at_ms, || format!("VIOLATION {}: {detail}", kind.name()));
        if self.violations.len() < 100 {
            self.violations.push(Violation {
                kind,
                at_ms,
                detail,
            });
        }
    }

    pub(super) fn nodes_of(&self, v: ValidatorIndex) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].validator() == v)
            .collect()
    }

    /// Runs the schedule.
    pub fn run(mut self) -> Outcome {
        if self.trace.is_verbose() {
            for line in self.scenario.describe() {
                self.trace.line(0, || line);
            }
            for (i, n) in self.nodes.iter().enumerate() {
                let (v, t, h) = (n.validator(), n.endpoint.twin, n.honest);
                self.trace.line(0, || {
                    format!("node {i} = validator {v} twin {t} honest {h}")
                });
            }
        }
        for i in 0..self.nodes.len() {
            self.push(0, Event::Start(i));
        }
        for i in 0..self.scenario.workload.len() {
            let at = self.scenario.workload[i].at_ms;
            self.push(at, Event::Submit(i));
        }
        for plan in self.scenario.crashes.clone() {
            for node in self.nodes_of(plan.validator) {
                self.push(
                    plan.at_ms,
                    Event::Crash {
                        node,
                        mid_handle: plan.mid_handle,
                    },
                );
                self.push(plan.restart_ms, Event::Restart(node));
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i]
                .adversary
                .as_ref()
                .is_some_and(|a| a.wants_ticks())
            {
                let at = self.adversary_rng.range(20, 80);
                self.push(at, Event::Tick(i));
            }
        }
        let heal = self.scenario.heal_ms;
        let deadline = heal.saturating_add(self.scenario.liveness_bound_ms);
        self.push(heal, Event::Heal);
        self.push(deadline, Event::Deadline);
        let mut end_at = u64::MAX;

        while let Some(Reverse(q)) = self.queue.pop() {
            if q.at > end_at {
                break;
            }
            self.now = q.at;
            self.stats.events += 1;
            if self.stats.events > MAX_EVENTS {
                let detail = format!(
                    "more than {MAX_EVENTS} events ({} queued)",
                    self.queue.len()
                );
                self.violation(ViolationKind::EventBudget, detail);
                break;
            }
            let stop = self.handle_event(q.event);
            if stop || (self.hooks.stop_on_violation && !self.violations.is_empty()) {
                break;
            }
            if self.healed && self.live_at.is_none() {
                if self.committed_since_check {
                    self.committed_since_check = false;
                    self.all_committed = self.missing().is_empty();
                    if self.all_committed && self.probe.is_none() {
                        self.send_probe();
                    }
                }
                // Committing everything is not enough: a replica that
                // executes what the others commit but sits in a view change
                // alone (or in an older view) no longer votes, and silently
                // uses up the fault budget (issue 22). Live means every honest
                // replica is active in one view, checked after every event
                // because a NEW-VIEW can arrive without a commit.
                // Longest-chain engines: also one common prefix (their
                // chains converge as blocks pile up on one branch).
                let converged = match E::FAULT_MODEL {
                    // PBFT with a fallback: finality caught up with the
                    // head everywhere (nothing tentative is left).
                    FaultModel::Hybrid => self.finality_caught_up(),
                    m if m.finalizes() => true,
                    _ => self.prefix_agrees_at_tips(),
                };
                if self.all_committed
                    && self.probe.is_some()
                    && self.views_disagree().is_none()
                    && converged
                {
                    self.live_at = Some(self.now);
                    self.stats.heal_to_live_ms = Some(self.now - heal);
                    self.trace.line(self.now, || "liveness reached".into());
                    end_at = self.now + self.scenario.settle_ms;
                }
            }
        }
        if self.live_at.is_none() && (self.violations.is_empty() || !self.hooks.stop_on_violation) {
            self.report_liveness();
        }
        self.finish()
    }

    /// Honest nodes missing wanted transactions: (node, how many). A
    /// transaction is settled on a node once its chain holds it, or holds
    /// another transaction of its sender with its nonce (it lost a race
    /// with a conflicting one: the node's mempool drops it, and so must
    /// every engine).
    fn missing(&self) -> Vec<(usize, usize)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.honest)
            .map(|(i, n)| {
                (
                    i,
                    self.wanted
                        .iter()
                        .filter(|t| {
                            !n.included.contains(&t.hash())
                                && !nonce_used(&n.state, t)
                                && !self.stranded(n, t)
                        })
                        .count(),
                )
            })
            .filter(|(_, k)| *k > 0)
            .collect()
    }

    /// Hands every node a fresh valid transfer (from the richest account,
    /// at its next nonce in an honest node's state) and adds it to what
    /// liveness demands, so each honest replica must take part in the view
    /// that commits it.
    fn send_probe(&mut self) {
        let Some(state) = self.nodes.iter().find(|n| n.honest).map(|n| &n.state) else {
            return;
        };
        let (from, nonce) = (0..ACCOUNTS)
            .map(|i| {
                let a = state.account(&account(i)).copied().unwrap_or_default();
                (a.balance, i, a.nonce)
            })
            .max()
            .map(|(_, i, nonce)| (i, nonce))
            .unwrap_or((0, 0));
        let tx = Transaction {
            chain_id: CHAIN_ID.into(),
            from: account(from),
            to: account((from + 1) % ACCOUNTS),
            amount: 1,
            nonce,
            fee: 1,
        }
        .sign(account_key(from));
        let hash = tx.hash();
        self.probe = Some(hash);
        self.all_committed = false;
        self.wanted_set.insert(hash);
        self.wanted.push(tx.clone());
        self.stats.submitted += 1;
        self.trace.words(&[self.now, 11]);
        self.trace.line(self.now, || {
            format!("probe {} submitted to every node", &hash.to_string()[..8])
        });
        for node in 0..self.nodes.len() {
            self.submit(node, vec![tx.clone()]);
        }
    }

    /// Why the honest replicas are not all active in one view, if they are not.
    fn views_disagree(&self) -> Option<String> {
        let mut views = BTreeSet::new();
        let mut odd = Vec::new();
        for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.honest) {
            match n.engine.as_ref().map(|e| e.status()) {
                None => odd.push(format!("node {i} is down")),
                Some(s) => {
                    views.insert(s.view);
                    if s.view_changing {
                        odd.push(format!("node {i} is changing view to {}", s.view));
                    }
                }
            }
        }
        if views.len() > 1 {
            let all: Vec<String> = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.honest)
                .map(|(i, n)| {
                    let v = n.engine.as_ref().map_or(0, |e| e.status().view);
                    format!("{i}@v{v}")
                })
                .collect();
            odd.push(format!(
                "honest replicas in different views ({})",
                all.join(" ")
            ));
        }
        (!odd.is_empty()).then(|| odd.join("; "))
    }

    fn report_liveness(&mut self) {
        let missing = self.missing();
        if missing.is_empty() && E::FAULT_MODEL == FaultModel::Hybrid && !self.finality_caught_up()
        {
            let lag: Vec<String> = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.honest && n.is_up() && n.final_height < n.height())
                .map(|(i, n)| format!("node {i} final {} head {}", n.final_height, n.height()))
                .collect();
            let detail = format!(
                "{} ms after the network healed (bound {} ms) every transaction is in, but finality has not caught up: {}",
                self.now.saturating_sub(self.scenario.heal_ms),
                self.scenario.liveness_bound_ms,
                lag.join("; ")
            );
            self.violation(ViolationKind::Liveness, detail);
            return;
        }
        if missing.is_empty() {
            let Some(why) = self.views_disagree() else {
                return;
            };
            let detail = format!(
                "{} ms after the network healed (bound {} ms) every transaction committed, but not every honest replica is active in one view: {why}",
                self.now.saturating_sub(self.scenario.heal_ms),
                self.scenario.liveness_bound_ms,
            );
            self.violation(ViolationKind::Liveness, detail);
            return;
        }
        let parts: Vec<String> = missing
            .iter()
            .map(|(i, k)| {
                let n = &self.nodes[*i];
                let status = n.engine.as_ref().map(|e| e.status());
                let lacking: Vec<String> = self
                    .wanted
                    .iter()
                    .map(SignedTransaction::hash)
                    .filter(|h| !n.included.contains(h))
                    .take(3)
                    .map(|h| h.to_string()[..8].to_owned())
                    .collect();
                format!(
                    "node {i} lacks {k} of {} transactions ({}) at height {}, view {}{}, {} pending in its engine",
                    self.wanted_set.len(),
                    lacking.join(" "),
                    n.height(),
                    status.as_ref().map_or(0, |s| s.view),
                    if status.as_ref().is_some_and(|s| s.view_changing) { " (changing view)" } else { "" },
                    status.as_ref().map_or(0, |s| s.pending_txs),
                )
            })
            .collect();
        let heights: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                let view = n.engine.as_ref().map_or(0, |e| e.status().view);
                format!("{}{}@v{view}", n.height(), if n.honest { "" } else { "b" })
            })
            .collect();
        let detail = format!(
            "{} ms after the network healed (bound {} ms): {} [heights {}]",
            self.now.saturating_sub(self.scenario.heal_ms),
            self.scenario.liveness_bound_ms,
            parts.join("; "),
            heights.join(" ")
        );
        self.violation(ViolationKind::Liveness, detail);
    }

    fn finish(mut self) -> Outcome {
        let mut quality = None;
        let longest_chain = E::FAULT_MODEL == FaultModel::Nakamoto;
        if self.live_at.is_some() && !longest_chain {
            self.check_drained();
        }
        if longest_chain {
            self.check_common_prefix();
        }
        if E::FAULT_MODEL == FaultModel::Hybrid {
            self.check_final_prefixes();
        }
        let honest: Vec<&Node<E>> = self.nodes.iter().filter(|n| n.honest).collect();
        if let Some(longest) = honest.iter().max_by_key(|n| n.height()) {
            if longest_chain {
                let settled = longest.chain.len().saturating_sub(self.common_prefix_k());
                let blocks = &longest.chain[1.min(settled)..settled];
                if blocks.len() >= CHAIN_QUALITY_MIN_BLOCKS {
                    let by_honest = blocks
                        .iter()
                        .filter(|b| self.scenario.byzantine_plan(b.header.proposer).is_none())
                        .count();
                    quality = Some((by_honest * 100 / blocks.len()) as u64);
                }
            }
            self.stats.slashed = (0..self.scenario.n as u32)
                .filter(|v| {
                    let at = phalanx_ledger::stake_address(ValidatorIndex(*v));
                    longest.state.account(&at).is_some_and(|a| a.nonce > 0)
                })
                .count() as u64;
            self.stats.height = longest.height().0;
            self.stats.txs_succeeded = longest.succeeded;
            self.stats.txs_failed = longest.failed;
        }
        self.stats.chain_quality_pct = quality;
        // Twins mine with two shares and compete with each other: their
        // schedules report chain quality but are not judged by this floor
        // (one of 2,000 PoW schedules fell to 18 % when the twins found 31
        // of 52 blocks, 2.9 standard deviations above their share).
        let judged = self.stats.twin_nodes == 0;
        if let Some(q) = quality.filter(|q| judged && *q < CHAIN_QUALITY_FLOOR_PCT) {
            let detail = format!(
                "only {q}% of the settled blocks of the longest honest chain are honest (floor {CHAIN_QUALITY_FLOOR_PCT}%)"
            );
            self.violation(ViolationKind::ChainQuality, detail);
        }
        self.stats.end_ms = self.now;
        self.stats.net = self.network.stats.clone();
        let furthest = self
            .nodes
            .iter()
            .filter(|n| n.honest && self.hooks.keep_chain)
            .max_by_key(|n| (n.final_height, n.height()));
        let final_chain = furthest.map_or_else(Vec::new, |n| {
            let keep = if E::FAULT_MODEL == FaultModel::Hybrid {
                n.final_height.0 as usize + 1
            } else {
                n.chain.len()
            };
            n.chain[..keep.min(n.chain.len())].to_vec()
        });
        let final_state = furthest.map(|n| n.state.clone());
        Outcome {
            seed: self.scenario.seed,
            violations: self.violations,
            trace_hash: self.trace.hash(),
            stats: self.stats,
            trace: self.trace.take_lines(),
            wall_ms: 0,
            final_chain,
            final_state,
        }
    }

    /// Common prefix (Garay, Kiayias & Leonardos 2015): at the end of a
    /// run, once the network has healed and the run has settled, the
    /// chains of the honest nodes that are up agree on every block except
    /// the last [`COMMON_PREFIX_K`] of the shortest.
    fn check_common_prefix(&mut self) {
        if let Some(p) = self.prefix_disagreement() {
            self.violation(ViolationKind::Agreement, p);
        }
    }

    /// PBFT with a fallback: whether `t`'s fate was decided by a failure:
    /// a transaction of its sender at its nonce or below failed in a
    /// block (a gap: it was committed ahead of the same sender's earlier
    /// one, which sat in a tentative block PBFT then discarded, or which
    /// the primary did not have). A client learns that its transfer
    /// failed, or that a later one cannot apply, and sends again; the
    /// ledger cannot apply `t` as it is, and no engine need hold it.
    fn stranded(&self, n: &Node<E>, t: &SignedTransaction) -> bool {
        if E::FAULT_MODEL != FaultModel::Hybrid {
            return false;
        }
        let next = n.state.account(&t.tx.from).map_or(0, |a| a.nonce);
        self.wanted.iter().any(|u| {
            u.tx.from == t.tx.from
                && u.tx.nonce >= next
                && u.tx.nonce <= t.tx.nonce
                && u.hash() != t.hash()
                && n.included.contains(&u.hash())
        })
    }

    /// PBFT with a fallback: whether every honest node that is up holds
    /// only final blocks.
    fn finality_caught_up(&self) -> bool {
        self.nodes
            .iter()
            .filter(|n| n.honest && n.is_up())
            .all(|n| n.final_height == n.height())
    }

    /// S3 and S4 at the end of a run: each honest node's final blocks are
    /// a prefix of its own chain (they are blocks it holds, with PBFT
    /// certificates), and of every other honest node's chain as far as
    /// that one reaches.
    fn check_final_prefixes(&mut self) {
        let honest: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].honest)
            .collect();
        let mut problem = None;
        'outer: for &a in &honest {
            let na = &self.nodes[a];
            if na.final_height > na.height() {
                problem = Some(format!(
                    "node {a}: final height {} above its head {}",
                    na.final_height,
                    na.height()
                ));
                break;
            }
            for &b in honest.iter().filter(|b| **b != a) {
                let nb = &self.nodes[b];
                // A node may hold tentative blocks it has not yet replaced
                // by final ones (it is behind, or fell back again after
                // the heal): S4 is judged once it synced, at liveness,
                // when every chain is final. Here: final against final.
                let upto = na.final_height.0.min(nb.final_height.0);
                for h in 1..=upto as usize {
                    if na.chain[h].hash() != nb.chain[h].hash() {
                        problem = Some(format!(
                            "node {a}'s final block at {h} is not node {b}'s block there"
                        ));
                        break 'outer;
                    }
                }
            }
        }
        if let Some(p) = problem {
            self.violation(ViolationKind::Finality, p);
        }
    }

    /// Whether every honest node that is up has the same head.
    fn prefix_agrees_at_tips(&self) -> bool {
        let mut heads = self
            .nodes
            .iter()
            .filter(|n| n.honest && n.is_up())
            .map(|n| n.chain.last().map(Block::hash));
        let first = heads.next().flatten();
        heads.all(|h| h == first)
    }

    /// The common-prefix parameter k of this schedule: [`COMMON_PREFIX_K`]
    /// among honest validators, [`COMMON_PREFIX_K_BYZANTINE`] when one of
    /// them is a selfish miner, an equivocating leader or twins.
    fn common_prefix_k(&self) -> usize {
        if self.scenario.byzantine_count > 0 {
            COMMON_PREFIX_K_BYZANTINE
        } else {
            COMMON_PREFIX_K
        }
    }

    /// Where two honest nodes that are up disagree more than
    /// [`COMMON_PREFIX_K`] blocks below the shortest head among them.
    fn prefix_disagreement(&self) -> Option<String> {
        let chains: Vec<(usize, &Vec<Block>)> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.honest && n.is_up())
            .map(|(i, n)| (i, &n.chain))
            .collect();
        let shortest = chains.iter().map(|(_, c)| c.len()).min()?;
        let k = self.common_prefix_k();
        let settled = shortest.saturating_sub(k);
        let (first, reference) = chains.first()?;
        for (i, c) in &chains[1..] {
            // Chains agree below a height once they agree at it.
            if settled == 0 || c[settled - 1].hash() == reference[settled - 1].hash() {
                continue;
            }
            let h = (0..settled)
                .find(|h| c[*h].hash() != reference[*h].hash())
                .unwrap_or(settled - 1);
            return Some(format!(
                "nodes {first} and {i} differ at height {h}, more than {k} blocks below the shortest honest head ({})",
                shortest - 1
            ));
        }
        None
    }

    /// Once everything is committed and the run has settled, no honest
    /// engine may still hold a transaction: each one is in the chain or
    /// was forgotten when its nonce was used (finding 4 of issue 18: a
    /// transaction that lost to a conflicting one stayed pending forever,
    /// and its replica changed views alone on an idle chain).
    fn check_drained(&mut self) {
        let mut stuck = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(engine) = n.engine.as_ref().filter(|_| n.honest) else {
                continue;
            };
            let pending = engine.status().pending_txs;
            if pending > 0 {
                let held: Vec<String> = n
                    .handed
                    .values()
                    .map(|t| format!("{}#{}", &t.tx.from.to_string()[..8], t.tx.nonce))
                    .collect();
                stuck.push(format!("node {i} holds {pending} [{}]", held.join(" ")));
            }
        }
        if !stuck.is_empty() {
            let detail = format!(
                "transactions still pending {} ms after liveness: {}",
                self.scenario.settle_ms,
                stuck.join(", ")
            );
            self.violation(ViolationKind::Liveness, detail);
        }
    }

    /// Carries out one event; true to stop the run.
    fn handle_event(&mut self, event: Event<E::Message>) -> bool {
        match event {
            Event::Start(i) => {
                self.trace.words(&[self.now, 1, i as u64]);
                self.trace.line(self.now, || format!("start node {i}"));
                let factory = self.hooks.engine.clone();
                self.nodes[i].boot(&factory);
                self.step(i, Input::Start);
            }
            Event::Deliver { to, from, message } => {
                let (a, b) = (self.nodes[from].endpoint, self.nodes[to].endpoint);
                if !self.nodes[to].is_up() || !self.network.connected(self.now, a, b) {
                    self.network.stats.cut += u64::from(self.nodes[to].is_up());
                    return false;
                }
                let m = message.summary();
                let kind = E::Message::KINDS.iter().position(|k| *k == m.kind);
                let digest = m.digest.map_or(0, |d| {
                    u64::from_le_bytes(d.0[..8].try_into().unwrap_or([0; 8]))
                });
                self.trace.words(&[
                    self.now,
                    2,
                    to as u64,
                    from as u64,
                    kind.unwrap_or(usize::MAX) as u64,
                    m.view,
                    m.seq,
                    u64::from(m.signer.0),
                    digest,
                ]);
                self.trace.line(self.now, || {
                    format!("{to} <- {from}  {}", message.describe())
                });
                self.stats.delivered += 1;
                if let Some(adv) = self.nodes[to].adversary.as_mut() {
                    adv.incoming(self.now, &message);
                }
                let input = Input::Message {
                    from: a.validator,
                    message: (*message).clone(),
                };
                self.step(to, input);
            }
            Event::Timer {
                node,
                incarnation,
                kind,
                generation,
            } => {
                let n = &self.nodes[node];
                if n.incarnation != incarnation || n.timers.get(&kind) != Some(&generation) {
                    return false;
                }
                self.nodes[node].timers.remove(&kind);
                self.trace
                    .words(&[self.now, 3, node as u64, timer_word(kind)]);
                self.trace
                    .line(self.now, || format!("{node} timeout {kind:?}"));
                self.step(node, Input::Timeout(kind));
            }
            Event::Push { to, txs } => self.submit(to, txs),
            Event::Submit(i) => {
                let sub = self.scenario.workload[i].clone();
                for tx in &sub.txs {
                    if self.sigs.valid(tx) && self.wanted_set.insert(tx.hash()) {
                        self.wanted.push(tx.clone());
                    }
                }
                self.stats.submitted += sub.txs.len() as u64;
                self.trace.words(&[self.now, 4, i as u64]);
                for v in sub.targets {
                    for node in self.nodes_of(v) {
                        self.submit(node, sub.txs.clone());
                    }
                }
            }
            Event::Crash { node, mid_handle } => {
                if !self.nodes[node].is_up() {
                    return false;
                }
                match mid_handle {
                    Some(k) => {
                        self.nodes[node].crash_after = Some(k);
                        let incarnation = self.nodes[node].incarnation;
                        self.push(self.now + 50, Event::CrashNow { node, incarnation });
                    }
                    None => self.crash(node),
                }
            }
            Event::CrashNow { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation && self.nodes[node].is_up() {
                    self.crash(node);
                }
            }
            Event::Restart(node) => self.restart(node),
            Event::SyncServe {
                server,
                requester,
                incarnation,
                from,
                locator,
            } => {
                self.serve_sync(server, requester, incarnation, from, &locator);
            }
            Event::SyncReply {
                requester,
                incarnation,
                blocks,
            } => {
                if self.nodes[requester].incarnation != incarnation
                    || !self.nodes[requester].is_up()
                {
                    return false;
                }
                self.stats.sync_answers += 1;
                let first = blocks.first().map_or(0, |b| b.height().0);
                self.trace
                    .words(&[self.now, 5, requester as u64, first, blocks.len() as u64]);
                self.trace.line(self.now, || {
                    format!("{requester} gets {} blocks from {first}", blocks.len())
                });
                self.step(requester, Input::SyncBlocks(blocks));
            }
            Event::Heal => self.heal(),
            Event::Tick(node) => self.tick(node),
            Event::Deadline => return true,
            Event::Mined {
                node,
                incarnation,
                generation,
                job,
            } => {
                let n = &self.nodes[node];
                if n.incarnation != incarnation || n.mining != generation || !n.is_up() {
                    return false;
                }
                // The block carries real work: search from a seeded start
                // (the sim's targets take a few hundred hashes).
                let target = phalanx_consensus::pow::U256::from_be_bytes(&job.target);
                let mut start = self.adversary_rng.next_u64();
                let nonce = loop {
                    if let Some(found) =
                        phalanx_consensus::pow::search(&job.header, target, start, 1 << 16)
                    {
                        break found;
                    }
                    start = start.wrapping_add(1 << 16);
                };
                self.stats.mined += 1;
                self.trace.words(&[self.now, 11, node as u64, nonce]);
                self.trace
                    .line(self.now, || format!("{node} mines a block"));
                self.step(
                    node,
                    Input::Mined {
                        job: job.header,
                        nonce,
                    },
                );
            }
        }
        false
    }

    fn submit(&mut self, node: usize, txs: Vec<SignedTransaction>) {
        if !self.nodes[node].is_up() {
            return;
        }
        // Admission, as the node's mempool does it: nothing the chain
        // already holds or whose nonce is used; and, when mempools verify,
        // nothing badly signed (Byzantine drivers never check).
        let verify = self.nodes[node].honest && self.scenario.mempool_verifies;
        let n = &self.nodes[node];
        let txs: Vec<SignedTransaction> = txs
            .into_iter()
            .filter(|t| !n.included.contains(&t.hash()) && !nonce_used(&n.state, t))
            .filter(|t| !verify || self.sigs.valid(t))
            .collect();
        if !txs.is_empty() {
            let n = &mut self.nodes[node];
            for tx in &txs {
                n.handed.insert(tx.hash(), tx.clone());
            }
            self.step(node, Input::Transactions(txs));
        }
    }

    pub(super) fn crash(&mut self, node: usize) {
        self.trace.words(&[self.now, 6, node as u64]);
        self.trace.line(self.now, || format!("{node} CRASHES"));
        self.stats.crashes += 1;
        self.nodes[node].crash();
    }

    pub(super) fn restart(&mut self, node: usize) {
        if self.nodes[node].is_up() {
            return;
        }
        self.trace.words(&[self.now, 7, node as u64]);
        self.trace.line(self.now, || {
            format!("{node} restarts at height {}", self.nodes[node].height())
        });
        self.stats.restarts += 1;
        let factory = self.hooks.engine.clone();
        self.nodes[node].boot(&factory);
        self.step(node, Input::Start);
    }

    /// The network heals and crashes stop: everyone is restarted, and the
    /// clients hand every node the valid transactions its chain lacks (as
    /// mempool gossip would; without verifying mempools, every transaction
    /// some node holds).
    fn heal(&mut self) {
        self.healed = true;
        self.committed_since_check = true;
        self.trace.words(&[self.now, 8]);
        self.trace.line(self.now, || "network heals".into());
        for node in 0..self.nodes.len() {
            self.restart(node);
        }
        for n in self.nodes.iter().filter(|n| n.honest) {
            if let Some(e) = &n.engine {
                self.stats.recovery_views.insert(e.status().view);
            }
        }
        // What gossip spreads: every wanted transaction, and when mempools
        // do not verify, whatever else some node holds.
        let mut known: Vec<SignedTransaction> = self.wanted.clone();
        if !self.scenario.mempool_verifies {
            let mut held: BTreeSet<Hash> = self.wanted_set.clone();
            for n in &self.nodes {
                for (h, tx) in &n.handed {
                    if held.insert(*h) {
                        known.push(tx.clone());
                    }
                }
            }
        }
        for node in 0..self.nodes.len() {
            let lacking: Vec<SignedTransaction> = known
                .iter()
                .filter(|t| !self.nodes[node].included.contains(&t.hash()))
                .cloned()
                .collect();
            if !lacking.is_empty() {
                self.submit(node, lacking);
            }
        }
    }

    fn tick(&mut self, node: usize) {
        let now = self.now;
        let next = now + self.adversary_rng.range(30, 90);
        self.push(next, Event::Tick(node));
        let Some(view) = self.nodes[node].engine.as_ref().map(|e| e.status().view) else {
            return;
        };
        let Some(adv) = self.nodes[node].adversary.as_mut() else {
            return;
        };
        let mut ctx = Ctx {
            rng: &mut self.adversary_rng,
            collusion: &mut self.collusion,
            stats: &mut self.stats.adversary,
            now,
        };
        let wire = adv.tick(&mut ctx, view);
        self.trace.words(&[now, 9, node as u64, wire.len() as u64]);
        for (to, m) in wire {
            self.transmit_to_validator(node, to, Rc::new(m));
        }
    }
}

/// Chain quality (Garay, Kiayias & Leonardos 2015): with one Byzantine
/// validator of four — a selfish miner or an equivocating leader —
/// honest validators must still have made at least this share of the
/// settled blocks. Theory gives about 1 − β/(1 − β), two thirds for
/// β = 1/4, in the limit; short runs vary, so the floor sits well below.
pub const CHAIN_QUALITY_FLOOR_PCT: u64 = 25;

/// Settled blocks needed before chain quality is judged.
pub const CHAIN_QUALITY_MIN_BLOCKS: usize = 16;

/// Blocks at the tip of a longest chain that honest nodes may still
/// disagree on when a run ends (the common-prefix parameter k).
pub const COMMON_PREFIX_K: usize = 6;

/// k with a Byzantine validator among four. Twins mine with two shares
/// of five (q = 0.4), where Nakamoto's own table needs dozens of blocks
/// for a small chance of a deeper fork; 1,000 PoW schedules with k = 6
/// had one honest pair split 8 blocks deep at the end, 40 s after the
/// heal, while the twins kept feeding both branches.
pub const COMMON_PREFIX_K_BYZANTINE: usize = 16;

fn timer_word(kind: TimeoutKind) -> u64 {
    match kind {
        TimeoutKind::Batch => 1,
        TimeoutKind::Progress { view } => 2 | (view << 4),
        TimeoutKind::ViewChange { view } => 3 | (view << 4),
        TimeoutKind::Sync => 4,
        TimeoutKind::Slot => 5,
        TimeoutKind::FallbackBatch => 6,
        TimeoutKind::FallbackSync => 7,
    }
}

/// Mixes the schedule's defining inputs for the run-time generators.
fn run_seed(s: &Scenario) -> u64 {
    s.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
        ^ ((s.n as u64) << 8)
        ^ ((s.byzantine_count as u64) << 16)
        ^ ((s.requested.bits() as u64) << 24)
}
