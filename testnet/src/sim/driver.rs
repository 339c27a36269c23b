//! Each node's driver, as the real node's driver: feed the engine one input
//! at a time and carry out its outputs in order — persist, send, arm
//! timers, execute committed blocks (reporting `BlockExecuted` before any
//! other input), fetch blocks for catch-up — with the checkers looking at
//! every output of every honest engine as it is carried out.

use super::checkers::{short, ViolationKind};
use super::hooks::TamperCtx;
use super::world::{panic_message, Event, World};
use phalanx_adversary::Adversarial;
use phalanx_adversary::Ctx;
use phalanx_consensus::{Input, Message, Output};
use phalanx_crypto::Hash;
use phalanx_ledger::{
    make_block, Block, EngineKind, Height, Justification, Payload, ValidatorIndex,
};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

/// The simulated hash rate of every mining node (hashes per ms): with the
/// simulator's genesis (500 ms blocks) four nodes settle at a few hundred
/// hashes a block, so blocks carry real work and still cost microseconds.
pub(super) const SIM_HASHES_PER_MS: f64 = 0.016;

/// Most blocks in one catch-up answer: the node's own limit.
const SYNC_MAX_BLOCKS: usize = phalanx_runtime::SYNC_MAX_BLOCKS as usize;

impl<E: Adversarial> World<E> {
    /// Feeds one input to a node, carries out its outputs in order, then
    /// the inputs they cause (block executed), like the node's driver.
    pub(super) fn step(&mut self, node: usize, input: Input<E::Message>) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let now = self.now;
            let n = &mut self.nodes[node];
            let Some(engine) = n.engine.as_mut() else {
                return;
            };
            let mode_before = engine.mode();
            let handled = catch_unwind(AssertUnwindSafe(|| engine.handle(now, input)));
            let broken = match &handled {
                Ok(_) if n.honest => engine.check_invariants().err(),
                _ => None,
            };
            let mode_after = engine.mode();
            if n.honest && self.healed && self.live_at.is_none() {
                // The view it is in or changing to: a view whose primary
                // never sends NEW-VIEW is never entered, but still had
                // to be got past.
                self.stats.recovery_views.insert(engine.status().view);
            }
            if mode_after != mode_before {
                if mode_after == Some("fallback") && mode_before == Some("pbft") && n.honest {
                    self.stats.fallbacks += 1;
                }
                self.trace.line(now, || {
                    format!("{node} mode {}", mode_after.unwrap_or_default())
                });
            }
            let mut outputs = match handled {
                Ok(o) => o,
                Err(p) => {
                    let detail = format!("node {node}'s engine panicked: {}", panic_message(&p));
                    self.violation(ViolationKind::Panic, detail);
                    self.nodes[node].crash();
                    return;
                }
            };
            if let Some(e) = broken {
                self.violation(ViolationKind::Invariant, format!("node {node}: {e}"));
            }
            let n = &self.nodes[node];
            if n.honest {
                if let Some(t) = self.hooks.tamper.as_mut() {
                    let ctx = TamperCtx {
                        node,
                        validator: n.endpoint.validator,
                        now_ms: now,
                        key: &n.key,
                        chain_id: &self.scenario.genesis.chain_id,
                    };
                    t.outputs(&ctx, &mut outputs);
                }
            }
            let limit = self.nodes[node].crash_after.take();
            for (i, output) in outputs.into_iter().enumerate() {
                if limit == Some(i) {
                    break;
                }
                self.carry_out(node, output, &mut inputs);
            }
            if limit.is_some() {
                self.stats.mid_output_crashes += 1;
                self.crash(node);
                return;
            }
            // Anything persisted is durable before the next input.
            self.nodes[node].flush();
        }
    }

    fn carry_out(
        &mut self,
        node: usize,
        output: Output<E::Message, E::Record>,
        inputs: &mut VecDeque<Input<E::Message>>,
    ) {
        match output {
            Output::Persist(record) => self.nodes[node].persist(record),
            Output::Send { to, message } => {
                // Save before send, as the node's driver: flush first.
                self.nodes[node].flush();
                self.send(node, vec![to], message);
            }
            Output::Broadcast(message) => {
                self.nodes[node].flush();
                let me = self.nodes[node].validator();
                let dests = (0..self.scenario.n as u32)
                    .map(ValidatorIndex)
                    .filter(|v| *v != me)
                    .collect();
                self.send(node, dests, message);
            }
            Output::ScheduleTimeout { kind, after_ms } => {
                let n = &mut self.nodes[node];
                let generation = n.timers.get(&kind).map_or(0, |g| g + 1);
                n.timers.insert(kind, generation);
                let incarnation = n.incarnation;
                self.push(
                    self.now + after_ms,
                    Event::Timer {
                        node,
                        incarnation,
                        kind,
                        generation,
                    },
                );
            }
            Output::Commit {
                payload,
                justification,
            } => {
                self.nodes[node].flush();
                if let Some((height, block_hash)) = self.commit(node, payload, justification) {
                    inputs.push_back(Input::BlockExecuted { height, block_hash });
                    let lost = self.nodes[node].settle_handed();
                    if !lost.is_empty() {
                        self.stats.forgotten += lost.len() as u64;
                        inputs.push_back(Input::Forget(lost));
                    }
                }
            }
            Output::Evidence(e) => {
                if self.nodes[node].honest {
                    self.stats.evidence += 1;
                    let offender = e.offender();
                    if self.scenario.byzantine_plan(offender).is_none() {
                        let detail = format!(
                            "node {node} holds evidence against honest validator {offender}"
                        );
                        self.violation(ViolationKind::FalseEvidence, detail);
                    }
                }
            }
            Output::RequestSync { from } => self.request_sync(node, from),
            Output::Revert { to } => {
                self.nodes[node].flush();
                self.revert(node, to);
                // Reverted transactions a block below already used the
                // nonce of: the engine must drop them (as the node does).
                let lost = self.nodes[node].settle_handed();
                if !lost.is_empty() {
                    self.stats.forgotten += lost.len() as u64;
                    inputs.push_back(Input::Forget(lost));
                }
                self.push_reverted(node);
            }
            Output::Finalize {
                height,
                justification,
            } => {
                self.nodes[node].flush();
                self.finalize(node, height, justification);
            }
            Output::Mine(job) => {
                let n = &mut self.nodes[node];
                n.mining += 1;
                let Some(job) = job else {
                    return;
                };
                let (generation, incarnation) = (n.mining, n.incarnation);
                let target = phalanx_consensus::pow::U256::from_be_bytes(&job.target);
                let work = phalanx_consensus::pow::work(target) as f64;
                // Exponential time to a block at the node's hash rate, from
                // the seeded source: a run stays a function of its seed.
                let mean_ms = work / SIM_HASHES_PER_MS;
                let u = (self.adversary_rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                let after = (-mean_ms * (1.0 - u).ln()).min(1e9) as u64;
                self.push(
                    self.now + after.max(1),
                    Event::Mined {
                        node,
                        incarnation,
                        generation,
                        job,
                    },
                );
            }
            Output::ViewChanged { view, .. } => {
                if self.nodes[node].honest {
                    self.stats.view_changes += 1;
                    self.stats.max_view = self.stats.max_view.max(view);
                }
                self.trace
                    .line(self.now, || format!("{node} enters view {view}"));
            }
        }
    }

    /// Sends an engine's message: checked (honest) or rewritten (Byzantine).
    fn send(&mut self, node: usize, dests: Vec<ValidatorIndex>, message: E::Message) {
        if self.nodes[node].honest {
            self.check_send(node, &message);
        }
        let wire = match self.nodes[node].adversary.as_mut() {
            Some(adv) => adv.outgoing(
                &mut Ctx {
                    rng: &mut self.adversary_rng,
                    collusion: &mut self.collusion,
                    stats: &mut self.stats.adversary,
                    now: self.now,
                },
                message,
                dests,
            ),
            None => {
                let message = Rc::new(message);
                for to in dests {
                    self.transmit_to_validator(node, to, message.clone());
                }
                return;
            }
        };
        for (to, m) in wire {
            self.transmit_to_validator(node, to, Rc::new(m));
        }
    }

    /// Save before send, no double-signing and no impersonation, for an
    /// honest node's message: every promise it makes is in a record the
    /// node persisted before, none contradicts one its validator made
    /// before (in this life or an earlier one, or as the other twin), and
    /// every statement it passes on in another honest validator's name is
    /// one that validator sent.
    fn check_send(&mut self, node: usize, message: &E::Message) {
        let n = &self.nodes[node];
        let me = n.validator();
        let mut problems = Vec::new();
        for p in message.promises(me) {
            if !n.persisted.contains(&p) {
                problems.push((
                    ViolationKind::SendBeforePersist,
                    format!(
                        "node {node} sent its {} for view {} seq {} before persisting it",
                        p.what, p.view, p.seq
                    ),
                ));
            }
            if let Some(prev) = self.safety.on_promise(me, p.what, p.view, p.seq, p.digest) {
                problems.push((
                    ViolationKind::DoubleSign,
                    format!(
                        "validator {me} signed two {}s for view {} seq {}: {} and {}",
                        p.what,
                        p.view,
                        p.seq,
                        short(&prev),
                        short(&p.digest)
                    ),
                ));
            }
        }
        if let Some((kind, size, bound)) = self.oversized(message) {
            problems.push((
                ViolationKind::MessageSize,
                format!("node {node} sent a {kind} of {size} bytes; the bound is {bound}"),
            ));
        }
        let scenario = &self.scenario;
        let forged = self.safety.on_statements(me, &message.statements(), |v| {
            scenario.byzantine_plan(v).is_none()
        });
        for s in forged {
            problems.push((
                ViolationKind::Impersonation,
                format!(
                    "node {node} passed on a {} in validator {}'s name that validator {} never sent",
                    s.what, s.signer, s.signer
                ),
            ));
        }
        for (kind, detail) in problems {
            self.violation(kind, detail);
        }
    }

    /// PBFT's messages other than PRE-PREPARE carry votes and digests, never
    /// payloads, so their size is bounded by the validator count and the
    /// watermark window alone (a VIEW-CHANGE names at most a window of
    /// slots, each with at most n+1 votes; a NEW-VIEW carries a quorum of
    /// them). The simulator's own bound, generous per vote; an honest
    /// message above it is a violation. Returns (kind, size, bound).
    fn oversized(&self, message: &E::Message) -> Option<(&'static str, usize, usize)> {
        if self.scenario.consensus != EngineKind::Pbft {
            return None;
        }
        let kind = message.summary().kind;
        const VOTE: usize = 160;
        let n = self.scenario.n;
        let window = self.scenario.genesis.consensus.watermark_window as usize;
        let view_change = 512 + (window + 2) * (n + 1) * VOTE;
        let bound = match kind {
            "pre_prepare" => return None,
            "view_change" => view_change,
            "new_view" => 512 + n * view_change + window * VOTE,
            _ => 512,
        };
        let size = phalanx_crypto::encode(message).len();
        (size > bound).then_some((kind, size, bound))
    }

    pub(super) fn transmit_to_validator(
        &mut self,
        from: usize,
        to: ValidatorIndex,
        message: Rc<E::Message>,
    ) {
        for target in self.nodes_of(to) {
            if target == from {
                continue;
            }
            let (a, b) = (self.nodes[from].endpoint, self.nodes[target].endpoint);
            if !self.network.connected(self.now, a, b) {
                self.network.stats.cut += 1;
                continue;
            }
            for at in self.network.schedule(self.now, from, target) {
                self.push(
                    at,
                    Event::Deliver {
                        to: target,
                        from,
                        message: message.clone(),
                    },
                );
            }
        }
    }

    /// A reorg on `node`: takes its blocks above `to` out, rolling state
    /// and the ledger model back, and returns their transactions to its
    /// mempool stand-in; then checks (honest nodes) that the state equals
    /// a replay of the remaining chain from genesis.
    /// PBFT made the tentative block at `height` final (S2: final only
    /// moves forward, one height at a time; S3: the final block is the
    /// block the node holds there; S1: honest nodes agree on it).
    fn finalize(&mut self, node: usize, height: Height, justification: Justification) {
        let honest = self.nodes[node].honest;
        let n = &mut self.nodes[node];
        let problem = if height != n.final_height.next() {
            Some(format!(
                "node {node} finalized height {height} after final height {}",
                n.final_height
            ))
        } else if n.chain.len() as u64 <= height.0 || n.undo.is_empty() {
            Some(format!(
                "node {node} finalized height {height}, which it holds no tentative block at"
            ))
        } else {
            None
        };
        if let Some(detail) = problem {
            if honest {
                self.violation(ViolationKind::Finality, detail);
            }
            return;
        }
        n.undo.remove(0);
        n.final_height = height;
        let honest = n.honest;
        let block = &mut n.chain[height.0 as usize];
        block.justification = justification;
        let block = block.clone();
        self.trace.words(&[self.now, 13, node as u64, height.0]);
        self.trace
            .line(self.now, || format!("{node} FINALIZES {height}"));
        if honest {
            self.committed_since_check = true;
            self.stats.finalized += 1;
            let quorum = E::FAULT_MODEL.quorum(self.scenario.n);
            let genesis = &self.scenario.genesis;
            if let Err(e) = self.certs.check(genesis, quorum, &block, E::FAULT_MODEL) {
                let detail = format!("node {node}: {e}");
                self.violation(ViolationKind::Certificate, detail);
            }
            if let Some(e) = self.safety.on_commit(node, &block) {
                self.violation(ViolationKind::Agreement, e);
            }
        }
    }

    /// PBFT with a fallback: the node's mempool pushes the transactions
    /// of the blocks it just reverted to its peers (the node resends what
    /// stays pending), so that they reach a primary — PBFT discarded the
    /// branch, and only the nodes that held it have them back.
    fn push_reverted(&mut self, node: usize) {
        let txs = std::mem::take(&mut self.nodes[node].reverted);
        if txs.is_empty() || E::FAULT_MODEL != phalanx_consensus::FaultModel::Hybrid {
            return;
        }
        let me = self.nodes[node].endpoint;
        for to in 0..self.nodes.len() {
            let peer = self.nodes[to].endpoint;
            if to != node && self.network.connected(self.now, me, peer) {
                self.push(
                    self.now + 50,
                    super::world::Event::Push {
                        to,
                        txs: txs.clone(),
                    },
                );
            }
        }
    }

    fn revert(&mut self, node: usize, to: Height) {
        let honest = self.nodes[node].honest;
        let height = self.nodes[node].height();
        if to < self.nodes[node].final_height {
            if honest {
                let detail = format!(
                    "node {node} reverted to {to}, below its final height {}",
                    self.nodes[node].final_height
                );
                self.violation(ViolationKind::Finality, detail);
            }
            return;
        }
        if to >= height {
            return;
        }
        if honest {
            let depth = (height.0 - to.0) as usize;
            let d = &mut self.stats.reorg_depths;
            let bucket = depth.min(16);
            if d.len() <= bucket {
                d.resize(bucket + 1, 0);
            }
            d[bucket] += 1;
        }
        self.trace.words(&[self.now, 12, node as u64, to.0]);
        self.trace
            .line(self.now, || format!("{node} REVERTS {height} -> {to}"));
        let n = &mut self.nodes[node];
        while n.height() > to {
            let (Some(block), Some((undo, model))) = (n.chain.pop(), n.undo.pop()) else {
                break;
            };
            n.state.revert(&undo);
            n.model = model;
            for tx in block.txs {
                let h = tx.hash();
                n.included.remove(&h);
                n.reverted.push(tx.clone());
                n.handed.insert(h, tx);
            }
        }
        if honest {
            let replayed = self.replay(node);
            if replayed != self.nodes[node].state {
                let detail = format!(
                    "node {node}: after reverting to {to} its state is not a replay of its chain"
                );
                self.violation(ViolationKind::Validity, detail);
            }
        }
    }

    /// The state a replay of `node`'s chain from genesis gives.
    fn replay(&self, node: usize) -> phalanx_ledger::State {
        let genesis = &self.scenario.genesis;
        let mut state = genesis.state();
        for b in self.nodes[node].chain.iter().skip(1) {
            let fee_to = genesis.fee_recipient(b.header.proposer);
            let executed = (self.hooks.executor)(&state, &b.payload(), &fee_to, genesis.rules());
            state.apply(&executed.diff);
        }
        state
    }

    /// Executes and stores a committed payload; checks it on honest nodes.
    fn commit(
        &mut self,
        node: usize,
        payload: Payload,
        justification: Justification,
    ) -> Option<(Height, Hash)> {
        let honest = self.nodes[node].honest;
        let expected = self.nodes[node].height().next();
        if payload.height != expected {
            if honest {
                let detail = format!(
                    "node {node} was handed height {} to execute after {}",
                    payload.height,
                    expected.0 - 1
                );
                self.violation(ViolationKind::CommitOrder, detail);
            }
            return None;
        }
        let genesis = &self.scenario.genesis;
        let fee_to = genesis.fee_recipient(payload.proposer);
        let n = &mut self.nodes[node];
        let executed = (self.hooks.executor)(&n.state, &payload, &fee_to, genesis.rules());
        let tentative = matches!(
            justification,
            Justification::Pow { .. } | Justification::Pos { .. }
        );
        if tentative {
            n.undo
                .push((n.state.undo_for(&executed.diff), n.model.clone()));
        }
        n.state.apply(&executed.diff);
        let ok = executed.receipts.iter().filter(|r| r.is_success()).count() as u64;
        n.succeeded += ok;
        n.failed += executed.receipts.len() as u64 - ok;
        let parent = n.chain.last().map(Block::hash).unwrap_or_default();
        let block = make_block(payload, parent, executed.diff.root, justification);
        let (height, hash) = (block.height(), block.hash());
        if !tentative {
            n.final_height = height;
        }
        for tx in &block.txs {
            n.included.insert(tx.hash());
        }
        self.trace.words(&[
            self.now,
            10,
            node as u64,
            height.0,
            u64::from_le_bytes(hash.0[..8].try_into().unwrap_or([0; 8])),
        ]);
        self.trace.line(self.now, || {
            let txs: Vec<String> = block
                .txs
                .iter()
                .map(|t| t.hash().to_string()[..8].to_owned())
                .collect();
            format!(
                "{node} COMMITS height {height} ({} txs) {} [{}]",
                block.txs.len(),
                &hash.to_string()[..8],
                txs.join(" ")
            )
        });
        if honest {
            self.committed_since_check = true;
            let mut problems = Vec::new();
            // The checker's own quorum, not the engine's configuration: a
            // mutation of the engine's quorum must not lower the bar its
            // certificates are checked against (the mutation runs found it).
            let quorum = E::FAULT_MODEL.quorum(self.scenario.n);
            if let Err(e) = self.certs.check(genesis, quorum, &block, E::FAULT_MODEL) {
                problems.push((ViolationKind::Certificate, format!("node {node}: {e}")));
            }
            // Tentative blocks may differ between nodes until the branches
            // resolve: the common-prefix check at the end covers them.
            if !tentative {
                if let Some(e) = self.safety.on_commit(node, &block) {
                    problems.push((ViolationKind::Agreement, e));
                }
            }
            if let Err(e) = n.model.on_block(
                &block,
                &executed.receipts,
                &n.state,
                &fee_to,
                &mut self.sigs,
            ) {
                problems.push((ViolationKind::Validity, format!("node {node}: {e}")));
            }
            for (kind, detail) in problems {
                self.violation(kind, detail);
            }
        }
        self.nodes[node].chain.push(block);
        Some((height, hash))
    }

    /// Asks the next peer in rotation for blocks from `from` on.
    pub(super) fn request_sync(&mut self, node: usize, from: Height) {
        self.stats.sync_requests += 1;
        let me = self.nodes[node].validator();
        let peers: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].validator() != me)
            .collect();
        let server = peers[self.nodes[node].sync_rotation % peers.len()];
        self.nodes[node].sync_rotation += 1;
        if !self.network.connected(
            self.now,
            self.nodes[node].endpoint,
            self.nodes[server].endpoint,
        ) {
            return;
        }
        let incarnation = self.nodes[node].incarnation;
        let chain = &self.nodes[node].chain;
        let locator = phalanx_runtime::locator(from, |h| chain.get(h.0 as usize).map(Block::hash));
        let at = self.now + self.network.rpc_delay();
        self.push(
            at,
            Event::SyncServe {
                server,
                requester: node,
                incarnation,
                from,
                locator,
            },
        );
    }

    pub(super) fn serve_sync(
        &mut self,
        server: usize,
        requester: usize,
        incarnation: u32,
        from: Height,
        locator: &[(Height, Hash)],
    ) {
        let (a, b) = (self.nodes[server].endpoint, self.nodes[requester].endpoint);
        if !self.nodes[server].is_up() || !self.network.connected(self.now, a, b) {
            return;
        }
        let chain = &self.nodes[server].chain;
        // As the node's sync server: from the fork point when the
        // requester is on another branch.
        let from = phalanx_runtime::sync_start(from, locator, |h| {
            chain.get(h.0 as usize).map(Block::hash)
        });
        let start = (from.0 as usize).max(1);
        let blocks: Vec<Block> = chain
            .iter()
            .skip(start)
            .take(SYNC_MAX_BLOCKS)
            .cloned()
            .collect();
        let blocks = match self.nodes[server].adversary.as_mut() {
            Some(adv) => {
                let mut ctx = Ctx {
                    rng: &mut self.adversary_rng,
                    collusion: &mut self.collusion,
                    stats: &mut self.stats.adversary,
                    now: self.now,
                };
                match adv.serve_sync(&mut ctx, blocks) {
                    Some(b) => b,
                    None => return,
                }
            }
            None => blocks,
        };
        if blocks.is_empty() {
            return;
        }
        let at = self.now + self.network.rpc_delay();
        self.push(
            at,
            Event::SyncReply {
                requester,
                incarnation,
                blocks,
            },
        );
    }
}
