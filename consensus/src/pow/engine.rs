//! The proof-of-work engine: Nakamoto consensus as a deterministic state
//! machine behind the same [`Engine`] interface as PBFT and CFT.
//!
//! - *Blocks.* A block is a payload with a [`Justification::Pow`]: its
//!   parent's seal hash, the target it claims (`bits`) and a nonce. Its id
//!   is its seal hash. The seal covers the payload digest, not the state
//!   root (see [`phalanx_ledger::Block`]): the engine orders, the driver
//!   executes.
//! - *Mining* is an output: [`Output::Mine`] hands the driver a header and
//!   a target; the driver searches nonces (worker threads on a node; in the
//!   simulator, after a time drawn from the node's hash rate) and reports
//!   [`Input::Mined`]. The engine re-checks the seal, adds the block to its
//!   tree, broadcasts it and starts on the next one. A new head replaces
//!   the job.
//! - *Checks before anything is kept:* chain id, round 0, a proposer from
//!   the validator set, at most `max_block_txs` transactions, no evidence,
//!   `bits` equal to the retarget's answer for the parent, the seal under
//!   the target, a timestamp above the median of the last 11 and at most
//!   [`MAX_FUTURE_MS`] ahead of this node's clock. Failures are dropped
//!   and counted.
//! - *Fork choice:* most cumulative work; a tie keeps the block seen first.
//!   A new head on another branch is a reorg: [`Output::Revert`] to the
//!   common ancestor, then a `Commit` per block of the new branch.
//!   Transactions of abandoned blocks return to the pending pool.
//! - *Catch-up:* a block whose parent is unknown is kept as an orphan
//!   (bounded) and the engine asks for blocks. The request carries a block
//!   locator (the runtime's `locator`), so a peer on another branch
//!   answers from the fork point; should an answer still not connect, the
//!   engine asks from further back, doubling the distance each time.
//! - *Peers that send invalid blocks* lose score and are ignored for a
//!   while once it runs out ([`crate::chain::PeerScores`]).
//! - *Nothing is final*: [`Engine::final_height`] is genesis. Blocks are
//!   tentative with their number of confirmations. The tree keeps
//!   [`KEEP_DEPTH`] blocks below the head; a fork from deeper is refused.

use super::retarget::{next_target, RetargetParams, WINDOW};
use super::work::{header_hash, median_time_past, meets, seal_hash, work, Compact, MEDIAN_SPAN};
use crate::chain::{
    unstored, Orphans, PeerScores, Pending, Refused, Stored, TieBreak, Tree, ASK_BACK_GAP_MS,
};
use crate::config::{Config, ConfigError, Quorums};
use crate::engine::{
    Engine, EngineStatus, FaultModel, Input, Message, MineJob, Output, Promise, Protocol, Record,
    RecordKey, Restored, Summary, TimeoutKind,
};
use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::{
    Block, EngineKind, Genesis, Height, Justification, Payload, SignedTransaction, ValidatorIndex,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How far ahead of the local clock a block's timestamp may be.
pub const MAX_FUTURE_MS: u64 = 15_000;
/// How many blocks below the head the tree keeps (the deepest reorg).
pub const KEEP_DEPTH: u64 = 256;
/// Blocks a restart restores (at least the retarget's window, and the
/// runtime's restore window of 64 must cover the anchor's lag plus the
/// blocks between anchor writes).
const ANCHOR_LAG: u64 = 32;
const ANCHOR_EVERY: u64 = 24;

/// The output type of the PoW engine.
pub type PowOutput = Output<PowMessage, PowRecord>;

/// The PoW wire message: a block, sent by its miner to every validator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowMessage {
    /// A mined block.
    Block {
        /// What it orders.
        payload: Payload,
        /// Its seal.
        justification: Justification,
    },
}

impl Message for PowMessage {
    const KINDS: &'static [&'static str] = &["block"];

    fn summary(&self) -> Summary {
        let PowMessage::Block { payload, .. } = self;
        Summary {
            kind: "block",
            view: 0,
            seq: payload.height.0,
            signer: payload.proposer,
            digest: None,
        }
    }

    /// A miner signs nothing: PoW makes no promise to keep.
    fn promises(&self, _sender: ValidatorIndex) -> Vec<Promise> {
        Vec::new()
    }

    fn describe(&self) -> String {
        let PowMessage::Block {
            payload,
            justification,
        } = self;
        let id = block_id(payload, justification).map_or_else(|| "?".into(), |h| short(&h));
        format!(
            "block {id} at {} by {} ({} txs)",
            payload.height,
            payload.proposer,
            payload.txs.len()
        )
    }
}

/// What the PoW engine persists: how far back a restart must read the
/// chain, and the blocks of branches the store does not hold (nothing it
/// sends depends on a record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PowRecord {
    /// Blocks up to `height` need not be restored (side blocks at or
    /// below it are pruned with it).
    Anchor {
        /// The height.
        height: Height,
    },
    /// A block of another branch than the stored one — received, or
    /// taken out of the store by a reorg — so that a restart puts it back
    /// in the tree and a later reorg can still go back to it.
    Side {
        /// What it orders.
        payload: Box<Payload>,
        /// Its seal.
        justification: Justification,
    },
}

impl Record for PowRecord {
    fn key(&self) -> RecordKey {
        match self {
            PowRecord::Anchor { .. } => RecordKey::single(b"pow/anchor"),
            PowRecord::Side {
                payload,
                justification,
            } => {
                let id = block_id(payload, justification).unwrap_or(Hash::ZERO);
                RecordKey::at(b"pow/side/", payload.height, &id.0)
            }
        }
    }

    fn prunes_up_to(&self) -> Option<Height> {
        match self {
            PowRecord::Anchor { height } => Some(*height),
            PowRecord::Side { .. } => None,
        }
    }
}

/// The id of a PoW block (its seal hash), if its justification is PoW.
pub fn block_id(payload: &Payload, justification: &Justification) -> Option<Hash> {
    match justification {
        Justification::Pow {
            parent,
            bits,
            nonce,
        } => Some(seal_hash(
            &header_hash(parent, &payload.digest(), Compact(*bits)),
            *nonce,
        )),
        _ => None,
    }
}

fn short(h: &Hash) -> String {
    h.to_string()[..8].to_owned()
}

/// What the PoW engine counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PowCounters {
    /// Blocks this node mined.
    pub mined: u64,
    /// Blocks received and added to the tree.
    pub accepted: u64,
    /// Blocks dropped as invalid (bad seal, target, timestamp, shape).
    pub invalid: u64,
    /// Blocks dropped because they fork below the tree's root.
    pub too_deep: u64,
    /// Orphans received (their parent unknown at the time).
    pub orphans: u64,
    /// Reorgs (head moved to another branch).
    pub reorgs: u64,
    /// The deepest reorg (blocks reverted).
    pub deepest_reorg: u64,
}

/// The job being mined.
#[derive(Clone, Debug)]
struct Job {
    /// When it was made (its payload's timestamp).
    made_ms: u64,
    header: Hash,
    parent: Hash,
    bits: Compact,
    payload: Arc<Payload>,
}

/// The proof-of-work engine of one validator.
#[derive(Debug)]
pub struct Pow {
    cfg: Config,
    retarget: RetargetParams,
    now_ms: u64,
    tree: Tree,
    /// The stored chain as this engine has told the driver to make it.
    stored: Stored,
    /// The last height the driver reported executed.
    executed: Height,
    anchor: Height,
    /// Transactions waiting for a block.
    pending: Pending,
    /// Blocks whose parent is unknown, oldest first.
    orphans: Orphans,
    /// How far back the next catch-up request reaches below the head.
    sync_back: u64,
    /// When the engine last asked for blocks below an orphan.
    last_ask_ms: Option<u64>,
    job: Option<Job>,
    /// Blocks added to the tree during the current input (those that do
    /// not end up stored are persisted as side blocks).
    added: Vec<(Height, Hash)>,
    counters: PowCounters,
    scores: PeerScores,
}

impl Pow {
    /// The engine rebuilt from the stored chain.
    pub fn restore(cfg: Config, _key: Keypair, restored: Restored<PowRecord>) -> Pow {
        let retarget = retarget_params(&cfg.params);
        let anchor = restored
            .records
            .iter()
            .filter_map(Record::prunes_up_to)
            .max()
            .unwrap_or_default();
        let mut sides: Vec<(Payload, Justification)> = restored
            .records
            .iter()
            .filter_map(|r| match r {
                PowRecord::Side {
                    payload,
                    justification,
                } => Some(((**payload).clone(), justification.clone())),
                PowRecord::Anchor { .. } => None,
            })
            .collect();
        sides.sort_by_key(|(p, _)| p.height);
        let blocks: Vec<&Block> = restored
            .recent_blocks
            .iter()
            .filter(|b| b.height() > anchor && b.height() <= restored.last_executed)
            .collect();
        let (root, root_height) = match blocks.first() {
            Some(b) => match &b.justification {
                Justification::Pow { parent, .. } => (*parent, Height(b.height().0 - 1)),
                _ => (restored.last_block_hash, restored.last_executed),
            },
            None => (restored.last_block_hash, restored.last_executed),
        };
        let max_pending = cfg.max_pending_txs;
        let mut engine = Pow {
            cfg,
            retarget,
            now_ms: 0,
            tree: Tree::new(root, root_height, TieBreak::FirstSeen),
            stored: Stored::default(),
            executed: restored.last_executed,
            anchor,
            pending: Pending::new(max_pending),
            orphans: Orphans::default(),
            sync_back: 1,
            last_ask_ms: None,
            job: None,
            added: Vec::new(),
            counters: PowCounters::default(),
            scores: PeerScores::default(),
        };
        let mut parent = root;
        for b in blocks {
            let payload = Arc::new(b.payload());
            let Some(id) = block_id(&payload, &b.justification) else {
                break;
            };
            let own = match &b.justification {
                Justification::Pow { bits, .. } => Compact(*bits).target().map(work).unwrap_or(1),
                _ => 1,
            };
            if engine
                .tree
                .insert(id, payload.clone(), b.justification.clone(), parent, own)
                .is_err()
            {
                break;
            }
            engine.stored.restore(b.height(), id, &payload);
            parent = id;
        }
        // Side branches, lowest first (parents before children).
        for (payload, justification) in sides {
            let Some(id) = block_id(&payload, &justification) else {
                continue;
            };
            if let Justification::Pow { parent, bits, .. } = &justification {
                let own = Compact(*bits).target().map(work).unwrap_or(1);
                let _ =
                    engine
                        .tree
                        .insert(id, Arc::new(payload), justification.clone(), *parent, own);
            }
        }
        engine.added.clear();
        engine
    }

    /// What it counted.
    pub fn counters(&self) -> &PowCounters {
        &self.counters
    }

    /// The block tree.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// Block `id` at `height` is final (PBFT with a fallback): blocks that
    /// do not descend from it are refused from now on, so no reorg can
    /// cross it ([`Tree::set_floor`]). False if `id` is not on the head's
    /// branch (or was pruned below the root, where nothing can fork).
    pub fn set_floor(&mut self, height: Height, id: Hash) -> bool {
        self.tree.set_floor(height, id)
    }

    /// How much each peer's blocks are trusted.
    pub fn peer_scores(&self) -> &PeerScores {
        &self.scores
    }

    /// Scores `from` by what its message did to the counters.
    fn score(&mut self, from: ValidatorIndex, (invalid, accepted): (u64, u64)) {
        if self.counters.invalid > invalid {
            self.scores.invalid(from.0, self.now_ms);
        } else if self.counters.accepted > accepted {
            self.scores.valid(from.0);
        }
    }

    /// The target of the block after `parent`, from the tree's blocks on
    /// `parent`'s branch (`None` when the branch is too short to tell and
    /// does not reach genesis: the tree lost that history).
    fn next_bits(&self, parent: &Hash) -> Option<Compact> {
        if self.cfg.params.engine == EngineKind::PbftPow {
            // As PBFT's fallback the tree starts at the last final block,
            // which differs between nodes for a while: a retarget over
            // the blocks each one holds would differ too. Fallback
            // episodes are short; every block claims the limit.
            return Some(self.retarget.limit);
        }
        let need = WINDOW + 1;
        let mut recent: Vec<(u64, Compact)> = self
            .tree
            .ancestors(parent)
            .take(need)
            .filter_map(|e| match &e.justification {
                Justification::Pow { bits, .. } => Some((e.payload.timestamp_ms, Compact(*bits))),
                _ => None,
            })
            .collect();
        if recent.len() < need && self.tree.root_height() > Height::GENESIS {
            return None;
        }
        recent.reverse();
        Some(next_target(&self.retarget, &recent))
    }

    /// The median time past of `parent`'s branch.
    fn median_time(&self, parent: &Hash) -> u64 {
        let mut times: Vec<u64> = self
            .tree
            .ancestors(parent)
            .take(MEDIAN_SPAN)
            .map(|e| e.payload.timestamp_ms)
            .collect();
        times.reverse();
        median_time_past(&times)
    }

    /// Checks a block and adds it to the tree (with any orphans it
    /// unblocks). Returns whether it was new.
    fn receive(
        &mut self,
        payload: Payload,
        justification: Justification,
        out: &mut Vec<PowOutput>,
    ) {
        let Some(id) = block_id(&payload, &justification) else {
            self.counters.invalid += 1;
            return;
        };
        if self.tree.knows(&id) {
            return;
        }
        if !self.well_formed(&payload) {
            self.counters.invalid += 1;
            return;
        }
        let Justification::Pow { parent, .. } = &justification else {
            return;
        };
        let parent = *parent;
        let payload = Arc::new(payload);
        if !self.tree.knows(&parent) {
            if payload.height <= self.tree.root_height() {
                self.counters.too_deep += 1;
                return;
            }
            self.counters.orphans += 1;
            self.orphans
                .hold(id, parent, payload.clone(), justification);
            self.ask_back(payload.height, out);
            return;
        }
        if self.add(id, payload, justification) {
            self.adopt_orphans(id);
        }
    }

    /// The stateless checks.
    fn well_formed(&self, p: &Payload) -> bool {
        p.chain_id == self.cfg.chain_id
            && p.round == 0
            && p.proposer.as_usize() < self.cfg.n()
            && p.txs.len() <= self.cfg.params.max_block_txs as usize
            && p.evidence.is_empty()
            && p.timestamp_ms <= self.now_ms.saturating_add(MAX_FUTURE_MS)
    }

    /// The checks against the parent, then into the tree.
    fn add(&mut self, id: Hash, payload: Arc<Payload>, justification: Justification) -> bool {
        let Justification::Pow {
            parent,
            bits,
            nonce,
            ..
        } = justification
        else {
            return false;
        };
        let Some(expected) = self.next_bits(&parent) else {
            self.counters.too_deep += 1;
            return false;
        };
        let target = match Compact(bits).target() {
            Ok(t) if Compact(bits) == expected => t,
            _ => {
                self.counters.invalid += 1;
                return false;
            }
        };
        let header = header_hash(&parent, &payload.digest(), Compact(bits));
        if !meets(&seal_hash(&header, nonce), target)
            || payload.timestamp_ms <= self.median_time(&parent)
        {
            self.counters.invalid += 1;
            return false;
        }
        let height = payload.height;
        match self
            .tree
            .insert(id, payload, justification, parent, work(target))
        {
            Ok(_) => {
                self.counters.accepted += 1;
                self.added.push((height, id));
                true
            }
            // (A block on a branch below a final block is not the
            // sender's fault: it may not have learnt of the finality yet.)
            Err(Refused::Known | Refused::BelowFloor) => false,
            Err(_) => {
                self.counters.invalid += 1;
                false
            }
        }
    }

    /// Adds the orphans that hang (directly or through each other) from `id`.
    fn adopt_orphans(&mut self, id: Hash) {
        let mut parents = vec![id];
        while let Some(p) = parents.pop() {
            for (oid, payload, j) in self.orphans.children_of(&p) {
                if self.add(oid, payload, j) {
                    parents.push(oid);
                }
            }
        }
    }

    /// Asks for blocks reaching further below `height` each time an
    /// answer does not connect.
    fn ask_back(&mut self, height: Height, out: &mut Vec<PowOutput>) {
        // At most one question per [`ASK_BACK_GAP_MS`]: a reply full of
        // orphans asked once per orphan, and each answer did the same (a
        // storm the simulator found when PBFT's fallback synced blocks
        // built on a final block the node did not have yet). The next
        // block that does not connect asks again.
        if self
            .last_ask_ms
            .is_some_and(|t| self.now_ms < t.saturating_add(ASK_BACK_GAP_MS))
        {
            return;
        }
        self.last_ask_ms = Some(self.now_ms);
        let floor = self.tree.root_height().0 + 1;
        let from = height.0.saturating_sub(self.sync_back).max(floor);
        self.sync_back = self.sync_back.saturating_mul(2).min(KEEP_DEPTH);
        out.push(Output::RequestSync { from: Height(from) });
    }

    /// Makes the stored chain follow the tree's head (a revert to the
    /// fork point first if the head left the stored branch), then starts
    /// a new mining job.
    fn follow_head(&mut self, out: &mut Vec<PowOutput>) {
        if self.tree.head() == self.stored.tip(&self.tree) {
            return;
        }
        let (tree, anchor) = (&self.tree, &mut self.anchor);
        let reorg = self
            .stored
            .follow(&self.tree, &mut self.pending, out, |fork, abandoned| {
                let mut first = Vec::new();
                // A restart must still find the fork point's branch.
                let lower = Height(fork.0.saturating_sub(ANCHOR_LAG));
                if lower < *anchor {
                    *anchor = lower;
                    first.push(Output::Persist(PowRecord::Anchor { height: lower }));
                }
                // The abandoned blocks leave the store: keep them as side blocks.
                for id in abandoned {
                    if let Some(e) = tree.get(id) {
                        first.push(Output::Persist(PowRecord::Side {
                            payload: Box::new((*e.payload).clone()),
                            justification: e.justification.clone(),
                        }));
                    }
                }
                first
            });
        if let Some(r) = reorg {
            self.counters.reorgs += 1;
            self.counters.deepest_reorg = self.counters.deepest_reorg.max(r.depth);
        }
        self.sync_back = 1;
        self.prune();
        self.new_job(out);
    }

    fn prune(&mut self) {
        let before = self.tree.root_height();
        self.tree.prune(KEEP_DEPTH + 64);
        let root = self.tree.root_height();
        if root > before {
            self.stored.prune(root);
        }
    }

    fn add_pending(&mut self, tx: SignedTransaction) {
        if !self.stored.holds(&tx.hash()) {
            self.pending.add(tx);
        }
    }

    /// A new block template on the head, handed to the driver to mine.
    fn new_job(&mut self, out: &mut Vec<PowOutput>) {
        let parent = self.tree.head();
        let Some(bits) = self.next_bits(&parent) else {
            self.job = None;
            out.push(Output::Mine(None));
            return;
        };
        let height = self
            .tree
            .height_of(&parent)
            .unwrap_or(self.tree.root_height())
            .next();
        let timestamp_ms = self.now_ms.max(self.median_time(&parent) + 1);
        let txs = self.pending.oldest(self.cfg.params.max_block_txs as usize);
        let payload = Payload {
            chain_id: self.cfg.chain_id.clone(),
            height,
            round: 0,
            proposer: self.cfg.me,
            timestamp_ms,
            txs,
            evidence: Vec::new(),
        };
        let header = header_hash(&parent, &payload.digest(), bits);
        let target = bits.target().unwrap_or_default().to_be_bytes();
        self.job = Some(Job {
            made_ms: self.now_ms,
            header,
            parent,
            bits,
            payload: Arc::new(payload),
        });
        out.push(Output::Mine(Some(MineJob { header, target })));
    }

    fn on_mined(&mut self, job: Hash, nonce: u64, out: &mut Vec<PowOutput>) {
        let Some(j) = self.job.clone().filter(|j| j.header == job) else {
            return;
        };
        let justification = Justification::Pow {
            parent: j.parent,
            bits: j.bits.0,
            nonce,
        };
        let id = seal_hash(&j.header, nonce);
        if !self.add(id, j.payload.clone(), justification.clone()) {
            return;
        }
        self.counters.mined += 1;
        self.job = None;
        out.push(Output::Broadcast(PowMessage::Block {
            payload: (*j.payload).clone(),
            justification,
        }));
    }

    fn on_sync_blocks(&mut self, blocks: Vec<Block>, out: &mut Vec<PowOutput>) {
        let full = blocks.len() as u64 >= crate::engine::SYNC_MAX_BLOCKS;
        let mut last = None;
        for b in blocks {
            if !b.body_matches_header() {
                self.counters.invalid += 1;
                break;
            }
            last = Some(b.height());
            self.receive(b.payload(), b.justification, out);
        }
        if let (true, Some(h)) = (full, last) {
            out.push(Output::RequestSync { from: h.next() });
        }
    }

    fn sync_interval(&self) -> u64 {
        self.retarget.block_time_ms.saturating_mul(4).max(500)
    }

    /// How often the job is remade with the current time: a block's
    /// timestamp is then within this of when it was found (Bitcoin miners
    /// roll the header's time the same way). Timestamps of when a job was
    /// made, not found, shrink the spans the retarget measures.
    fn refresh_ms(&self) -> u64 {
        (self.retarget.block_time_ms / 4).max(50)
    }
}

/// The retarget parameters of a genesis's consensus section.
pub fn retarget_params(params: &phalanx_ledger::ConsensusParams) -> RetargetParams {
    RetargetParams {
        block_time_ms: params.block_time_ms.max(1),
        window: WINDOW,
        limit: Compact(params.pow_limit),
    }
}

impl Engine for Pow {
    type Message = PowMessage;
    type Record = PowRecord;

    fn handle(&mut self, now_ms: u64, input: Input<PowMessage>) -> Vec<PowOutput> {
        self.now_ms = self.now_ms.max(now_ms);
        let mut out = Vec::new();
        match input {
            Input::Start => {
                self.new_job(&mut out);
                out.push(Output::ScheduleTimeout {
                    kind: TimeoutKind::Batch,
                    after_ms: self.refresh_ms(),
                });
                out.push(Output::RequestSync {
                    from: self.tree.head_height().next(),
                });
                out.push(Output::ScheduleTimeout {
                    kind: TimeoutKind::Sync,
                    after_ms: self.sync_interval(),
                });
            }
            Input::Message { from, message } => {
                if self.scores.admit(from.0, self.now_ms) {
                    let before = (self.counters.invalid, self.counters.accepted);
                    let PowMessage::Block {
                        payload,
                        justification,
                    } = message;
                    self.receive(payload, justification, &mut out);
                    self.score(from, before);
                }
            }
            Input::Transactions(txs) => {
                let was_empty = self.job.as_ref().is_some_and(|j| j.payload.txs.is_empty());
                for tx in txs {
                    self.add_pending(tx);
                }
                if was_empty && !self.pending.is_empty() {
                    self.new_job(&mut out);
                }
            }
            Input::Timeout(TimeoutKind::Sync) => {
                out.push(Output::RequestSync {
                    from: self.tree.head_height().next(),
                });
                out.push(Output::ScheduleTimeout {
                    kind: TimeoutKind::Sync,
                    after_ms: self.sync_interval(),
                });
            }
            Input::Timeout(TimeoutKind::Batch) => {
                let stale = self
                    .job
                    .as_ref()
                    .is_some_and(|j| self.now_ms >= j.made_ms + self.refresh_ms());
                if stale {
                    self.new_job(&mut out);
                }
                out.push(Output::ScheduleTimeout {
                    kind: TimeoutKind::Batch,
                    after_ms: self.refresh_ms(),
                });
            }
            Input::Timeout(_) => {}
            Input::BlockExecuted { height, .. } => {
                self.executed = height;
                if height.0 >= self.anchor.0 + ANCHOR_LAG + ANCHOR_EVERY {
                    self.anchor = Height(height.0 - ANCHOR_LAG);
                    out.push(Output::Persist(PowRecord::Anchor {
                        height: self.anchor,
                    }));
                }
            }
            Input::SyncBlocks(blocks) => self.on_sync_blocks(blocks, &mut out),
            Input::Forget(hashes) => {
                for h in hashes {
                    self.pending.remove(&h);
                }
            }
            Input::Mined { job, nonce } => self.on_mined(job, nonce, &mut out),
        }
        // Whatever arrived may have moved the head.
        let mut follow = Vec::new();
        self.follow_head(&mut follow);
        out.extend(follow);
        // Blocks added that the store does not hold: side blocks, kept.
        let added = std::mem::take(&mut self.added);
        for e in unstored(&self.tree, &self.stored, added) {
            out.push(Output::Persist(PowRecord::Side {
                payload: Box::new((*e.payload).clone()),
                justification: e.justification.clone(),
            }));
        }
        out
    }

    fn status(&self) -> EngineStatus {
        let head = self.tree.get(&self.tree.head());
        EngineStatus {
            view: 0,
            primary: head.map_or(ValidatorIndex(0), |e| e.payload.proposer),
            view_changing: false,
            last_executed: self.executed,
            stable_checkpoint: Height::GENESIS,
            pending_txs: self.pending.len(),
            diverged_at: None,
        }
    }

    fn check_invariants(&self) -> Result<(), String> {
        self.pending.check()?;
        self.stored.check(&self.tree)?;
        if self.orphans.len() > Orphans::MAX {
            return Err(format!("{} orphans held", self.orphans.len()));
        }
        Ok(())
    }

    fn final_height(&self) -> Height {
        Height::GENESIS
    }
}

impl Protocol for Pow {
    const KIND: EngineKind = EngineKind::Pow;
    const FAULT_MODEL: FaultModel = FaultModel::Nakamoto;

    fn config(genesis: &Genesis, me: ValidatorIndex) -> Result<Config, ConfigError> {
        let n = genesis.validators.len();
        let quorums = Quorums {
            n,
            f: n.saturating_sub(1) / 2,
            quorum: n / 2 + 1,
            weak: 1,
        };
        let mut params = genesis.consensus.clone();
        // The restore window: what a restart reads back (see ANCHOR_LAG).
        params.watermark_window = params.watermark_window.max(64);
        params.checkpoint_interval = params.checkpoint_interval.min(params.watermark_window);
        if Compact(params.pow_limit).target().is_err() {
            return Err(ConfigError::BadParam {
                name: "pow_limit",
                reason: "is not a valid compact target",
            });
        }
        if params.block_time_ms == 0 {
            return Err(ConfigError::BadParam {
                name: "block_time_ms",
                reason: "must be positive",
            });
        }
        Config::with_quorums(
            &genesis.chain_id,
            genesis.validator_keys(),
            me,
            params,
            quorums,
        )
    }

    fn restore(cfg: Config, key: Keypair, restored: Restored<PowRecord>) -> Pow {
        Pow::restore(cfg, key, restored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::PeerScores;
    use crate::pow::work::{search, U256};
    use phalanx_crypto::Keypair;
    use phalanx_ledger::{ConsensusParams, Transaction};

    const N: usize = 3;

    fn cfg(me: u32) -> Config {
        let keys: Vec<_> = (0..N as u8)
            .map(|i| Keypair::from_seed([i; 32]).public())
            .collect();
        let params = ConsensusParams {
            engine: EngineKind::Pow,
            // About 16 hashes a block: tests mine for real, quickly.
            pow_limit: 0x2010_ffff,
            block_time_ms: 1000,
            watermark_window: 64,
            ..ConsensusParams::default()
        };
        Config::with_quorums(
            "pow-test",
            keys,
            ValidatorIndex(me),
            params,
            Quorums {
                n: N,
                f: 1,
                quorum: 2,
                weak: 1,
            },
        )
        .unwrap()
    }

    fn engine(me: u32) -> Pow {
        Pow::restore(
            cfg(me),
            Keypair::from_seed([me as u8; 32]),
            Restored::genesis(Hash([7; 32])),
        )
    }

    fn tx(nonce: u64) -> SignedTransaction {
        let k = Keypair::from_seed([42; 32]);
        Transaction {
            chain_id: "pow-test".into(),
            from: k.public().into(),
            to: Keypair::from_seed([43; 32]).public().into(),
            amount: 1,
            nonce,
            fee: 1,
        }
        .sign(&k)
    }

    /// A block message as a stored block (the engine reads only its
    /// payload and seal back).
    fn as_block(m: &PowMessage) -> Block {
        let PowMessage::Block {
            payload,
            justification,
        } = m;
        phalanx_ledger::make_block(
            payload.clone(),
            Hash::ZERO,
            Hash::ZERO,
            justification.clone(),
        )
    }

    /// The last mining job among `out`.
    fn job(out: &[PowOutput]) -> Option<MineJob> {
        out.iter().rev().find_map(|o| match o {
            Output::Mine(j) => Some((*j)?),
            _ => None,
        })
    }

    /// Mines the job for real and hands the nonce back; returns the
    /// outputs (the broadcast block among them).
    fn mine(e: &mut Pow, now: u64, j: MineJob) -> Vec<PowOutput> {
        let nonce = search(&j.header, U256::from_be_bytes(&j.target), 0, 1 << 20)
            .expect("an easy target is met");
        e.handle(
            now,
            Input::Mined {
                job: j.header,
                nonce,
            },
        )
    }

    fn blocks(out: &[PowOutput]) -> Vec<PowMessage> {
        out.iter()
            .filter_map(|o| match o {
                Output::Broadcast(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    fn commits(out: &[PowOutput]) -> Vec<u64> {
        out.iter()
            .filter_map(|o| match o {
                Output::Commit { payload, .. } => Some(payload.height.0),
                _ => None,
            })
            .collect()
    }

    /// Mines `count` blocks on `e`, each on the last; returns them.
    fn chain(e: &mut Pow, now: &mut u64, count: usize) -> Vec<PowMessage> {
        let mut out = e.handle(*now, Input::Start);
        let mut made = Vec::new();
        for _ in 0..count {
            *now += 1000;
            let j = job(&out).expect("a job on the head");
            out = mine(e, *now, j);
            made.extend(blocks(&out));
            e.check_invariants().unwrap();
        }
        made
    }

    #[test]
    fn a_mined_block_is_committed_by_its_miner_and_every_receiver() {
        let (mut a, mut b) = (engine(0), engine(1));
        let mut now = 1_000;
        b.handle(now, Input::Start);
        a.handle(now, Input::Start);
        let out = a.handle(now, Input::Transactions(vec![tx(0), tx(1)]));
        let j = job(&out).expect("new transactions refresh an empty job");
        now += 1000;
        let out = mine(&mut a, now, j);
        assert_eq!(commits(&out), vec![1]);
        let sent = blocks(&out);
        assert_eq!(sent.len(), 1);
        let PowMessage::Block { payload, .. } = &sent[0];
        assert_eq!(payload.txs.len(), 2);
        let out = b.handle(
            now,
            Input::Message {
                from: ValidatorIndex(0),
                message: sent[0].clone(),
            },
        );
        assert_eq!(commits(&out), vec![1]);
        assert!(job(&out).is_some(), "the receiver mines on the new head");
        assert_eq!(a.status().pending_txs, 0);
        assert_eq!(b.counters().accepted, 1);
    }

    #[test]
    fn the_heavier_branch_wins_and_the_lighter_side_reorgs_with_its_transactions_back() {
        let (mut a, mut b) = (engine(0), engine(1));
        let (mut ta, mut tb) = (1_000, 1_000);
        // Partitioned: a mines 2 blocks with a transaction, b mines 4.
        a.handle(ta, Input::Start);
        a.handle(ta, Input::Transactions(vec![tx(0)]));
        let from_a = chain(&mut a, &mut ta, 2);
        let from_b = chain(&mut b, &mut tb, 4);
        // Healed: a hears b's branch and reorgs onto it.
        let mut all = Vec::new();
        for m in from_b.clone() {
            all.extend(a.handle(
                ta,
                Input::Message {
                    from: ValidatorIndex(1),
                    message: m,
                },
            ));
        }
        let reverts: Vec<Height> = all
            .iter()
            .filter_map(|o| match o {
                Output::Revert { to } => Some(*to),
                _ => None,
            })
            .collect();
        assert_eq!(reverts, vec![Height(0)]);
        assert_eq!(commits(&all), vec![1, 2, 3, 4]);
        assert_eq!(a.counters().deepest_reorg, 2);
        // The abandoned transaction is pending again, and in a's next job.
        assert_eq!(a.status().pending_txs, 1);
        a.check_invariants().unwrap();
        // b ignores a's lighter branch.
        let mut out = Vec::new();
        for m in from_a {
            out.extend(b.handle(
                tb,
                Input::Message {
                    from: ValidatorIndex(0),
                    message: m,
                },
            ));
        }
        assert!(commits(&out).is_empty());
        assert_eq!(b.tree().head(), a.tree().head());
    }

    #[test]
    fn blocks_that_break_a_rule_are_dropped_and_counted() {
        let (mut a, mut b) = (engine(0), engine(1));
        let mut now = 1_000;
        b.handle(now, Input::Start);
        let good = chain(&mut a, &mut now, 1).remove(0);
        let PowMessage::Block {
            payload,
            justification,
        } = good.clone();
        let Justification::Pow {
            parent,
            bits,
            nonce,
        } = justification
        else {
            unreachable!()
        };
        let mut bad = Vec::new();
        // Another payload under the same seal.
        let mut p = payload.clone();
        p.timestamp_ms += 1;
        bad.push((p, justification.clone()));
        // A target easier than the retarget allows (with a nonce that meets it).
        let easy = Compact(0x2100_ffff);
        let header = header_hash(&parent, &payload.digest(), easy);
        let n = search(&header, easy.target().unwrap(), 0, 1000).unwrap();
        bad.push((
            payload.clone(),
            Justification::Pow {
                parent,
                bits: easy.0,
                nonce: n,
            },
        ));
        // From too far in the future.
        let mut p = payload.clone();
        p.timestamp_ms = now + MAX_FUTURE_MS + 1;
        bad.push((
            p,
            Justification::Pow {
                parent,
                bits,
                nonce,
            },
        ));
        // For another chain.
        let mut p = payload.clone();
        p.chain_id = "other".into();
        bad.push((
            p,
            Justification::Pow {
                parent,
                bits,
                nonce,
            },
        ));
        for (payload, justification) in bad {
            let out = b.handle(
                now,
                Input::Message {
                    from: ValidatorIndex(0),
                    message: PowMessage::Block {
                        payload,
                        justification,
                    },
                },
            );
            assert!(commits(&out).is_empty());
        }
        assert_eq!(b.counters().invalid, 4);
        assert_eq!(b.tree().len(), 0);
        let out = b.handle(
            now,
            Input::Message {
                from: ValidatorIndex(0),
                message: good,
            },
        );
        assert_eq!(commits(&out), vec![1]);
    }

    #[test]
    fn a_peer_that_floods_invalid_blocks_is_ignored_until_its_ban_ends() {
        let (mut a, mut b) = (engine(0), engine(1));
        let mut now = 1_000;
        b.handle(now, Input::Start);
        let good = chain(&mut a, &mut now, 1).remove(0);
        let PowMessage::Block {
            payload,
            justification,
        } = good.clone();
        let from = |v| Input::Message {
            from: ValidatorIndex(v),
            message: PowMessage::Block {
                payload: Payload {
                    timestamp_ms: payload.timestamp_ms + 1,
                    ..payload.clone()
                },
                justification: justification.clone(),
            },
        };
        let ban_after = (-PeerScores::BAN_AT / PeerScores::INVALID) as u64;
        for _ in 0..ban_after {
            b.handle(now, from(2));
        }
        assert_eq!(b.counters().invalid, ban_after);
        assert_eq!(b.peer_scores().bans, 1);
        // Banned: even a good block from it is not read...
        let out = b.handle(
            now,
            Input::Message {
                from: ValidatorIndex(2),
                message: good.clone(),
            },
        );
        assert!(commits(&out).is_empty());
        assert_eq!(b.peer_scores().ignored, 1);
        // ...the same block from another peer is.
        let out = b.handle(
            now,
            Input::Message {
                from: ValidatorIndex(0),
                message: good,
            },
        );
        assert_eq!(commits(&out), vec![1]);
        assert_eq!(b.counters().invalid, ban_after);
    }

    #[test]
    fn side_branches_are_kept_across_a_restart_and_a_reorg_keeps_what_it_abandons() {
        let (mut a, mut b) = (engine(0), engine(1));
        let (mut ta, mut tb) = (1_000, 1_000);
        let long = chain(&mut a, &mut ta, 3);
        let short = chain(&mut b, &mut tb, 2);
        // b hears a's heavier branch: its own two blocks are reverted, and
        // persisted as side blocks before the revert.
        let mut out = Vec::new();
        for m in long.clone() {
            out = b.handle(
                tb,
                Input::Message {
                    from: ValidatorIndex(0),
                    message: m,
                },
            );
        }
        let revert_at = out
            .iter()
            .position(|o| matches!(o, Output::Revert { .. }))
            .expect("the third block makes a reorg");
        let proposers: Vec<u32> = out[..revert_at]
            .iter()
            .filter_map(|o| match o {
                Output::Persist(PowRecord::Side { payload, .. }) => Some(payload.proposer.0),
                _ => None,
            })
            .collect();
        assert_eq!(proposers, vec![1, 1], "b's own blocks, kept");
        // a hears b's lighter branch: kept as side blocks, not stored.
        let mut out = Vec::new();
        for m in short {
            out.extend(a.handle(
                ta,
                Input::Message {
                    from: ValidatorIndex(1),
                    message: m,
                },
            ));
        }
        let a_sides: Vec<PowRecord> = out
            .iter()
            .filter_map(|o| match o {
                Output::Persist(r @ PowRecord::Side { .. }) => Some(r.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(a_sides.len(), 2);
        assert!(commits(&out).is_empty());
        // Restarted from its store (the long branch) and its records: the
        // side branch is back in the tree.
        let stored: Vec<Block> = long.iter().map(as_block).collect();
        let again = Pow::restore(
            cfg(0),
            Keypair::from_seed([0; 32]),
            Restored {
                records: a_sides,
                last_executed: Height(3),
                last_block_hash: Hash::ZERO,
                recent_blocks: stored,
            },
        );
        assert_eq!(again.tree().len(), 5);
        assert_eq!(again.tree().head(), a.tree().head());
        again.check_invariants().unwrap();
    }

    #[test]
    fn a_job_is_remade_with_the_current_time_while_it_is_mined() {
        let mut a = engine(0);
        let out = a.handle(1_000, Input::Start);
        let first = job(&out).unwrap();
        // Too soon: the same job.
        let out = a.handle(1_100, Input::Timeout(TimeoutKind::Batch));
        assert!(job(&out).is_none());
        // A quarter of the block time later: a new job, with the new time.
        let out = a.handle(1_250, Input::Timeout(TimeoutKind::Batch));
        let second = job(&out).expect("a fresh job");
        assert_ne!(second.header, first.header);
        assert_eq!(a.job.as_ref().unwrap().payload.timestamp_ms, 1_250);
        assert!(out.iter().any(|o| matches!(
            o,
            Output::ScheduleTimeout {
                kind: TimeoutKind::Batch,
                ..
            }
        )));
    }

    #[test]
    fn a_node_that_missed_blocks_asks_further_back_until_they_connect() {
        let (mut a, mut b) = (engine(0), engine(1));
        let mut now = 1_000;
        b.handle(now, Input::Start);
        let made = chain(&mut a, &mut now, 6);
        // b hears only the last block: an orphan, so it asks for blocks.
        let out = b.handle(
            now,
            Input::Message {
                from: ValidatorIndex(0),
                message: made[5].clone(),
            },
        );
        let asks: Vec<u64> = out
            .iter()
            .filter_map(|o| match o {
                Output::RequestSync { from } => Some(from.0),
                _ => None,
            })
            .collect();
        assert_eq!(asks, vec![5]);
        assert_eq!(b.counters().orphans, 1);
        // The answer (blocks 5..) does not connect either: it asks from
        // further back — but not twice within ASK_BACK_GAP_MS (an answer
        // full of orphans once asked once per orphan, and so did each
        // answer to those).
        let answer = || Input::SyncBlocks(vec![as_block(&made[4]), as_block(&made[5])]);
        let out = b.handle(now + 10, answer());
        assert!(!out.iter().any(|o| matches!(o, Output::RequestSync { .. })));
        let out = b.handle(now + ASK_BACK_GAP_MS, answer());
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::RequestSync { from } if from.0 < 5)));
        // From genesis up, everything connects, orphans included.
        let all: Vec<Block> = made.iter().map(as_block).collect();
        let out = b.handle(now, Input::SyncBlocks(all));
        assert_eq!(commits(&out), vec![1, 2, 3, 4, 5, 6]);
        b.check_invariants().unwrap();
    }

    #[test]
    fn a_restarted_node_rebuilds_its_branch_from_the_store() {
        let mut a = engine(0);
        let mut now = 1_000;
        let made = chain(&mut a, &mut now, 5);
        let stored: Vec<Block> = made.iter().map(as_block).collect();
        let restored = Restored {
            records: vec![],
            last_executed: Height(5),
            last_block_hash: Hash::ZERO,
            recent_blocks: stored,
        };
        let mut again = Pow::restore(cfg(0), Keypair::from_seed([0; 32]), restored);
        assert_eq!(again.tree().head(), a.tree().head());
        again.check_invariants().unwrap();
        // It mines on where it was, with the same target as before.
        let out = again.handle(now, Input::Start);
        let j = job(&out).unwrap();
        assert_eq!(
            Some(j.target),
            a.job
                .as_ref()
                .map(|j| j.bits.target().unwrap().to_be_bytes())
        );
    }
}
