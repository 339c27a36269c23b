//! The proof-of-stake engine: slot leaders drawn in proportion to stake,
//! longest chain, slashing of leaders that sign two blocks for one slot —
//! a deterministic state machine behind the same [`Engine`] interface.
//!
//! - *Slots.* Time since genesis is cut into slots of `slot_ms`; slot `s`
//!   belongs to epoch `s / epoch_slots`. The engine asks for a
//!   [`TimeoutKind::Slot`] at every slot boundary; if it leads the slot on
//!   its head's branch it makes one block, signs it and sends it to every
//!   validator. An empty slot (its leader down or slow) just passes: the
//!   next leader builds on what it has.
//! - *Leaders.* The leader of slot `s` is drawn from a hash of (the epoch
//!   seed, `s`) in proportion to stake on the branch. The seed of epoch
//!   `e` is fixed when epoch `e - 2` ends: a hash over the per-slot
//!   randomness of that epoch's blocks. A block's randomness is its
//!   leader's signature over (chain id, slot) — deterministic (ed25519),
//!   so a leader cannot vary it, only withhold its block; it cannot grind
//!   the seed by trying payloads.
//! - *Blocks.* `Justification::Pos { parent, slot, leader, rand, signature }`.
//!   The block's id is the digest over (parent, payload digest, slot); the
//!   signature is a `PosBlock` [`Vote`] for (slot, slot) on that id, so two
//!   blocks one leader signs for one slot are [`Evidence`].
//! - *Checks before anything is kept:* chain id, `round` equal to the slot,
//!   the proposer the slot's leader on the parent's branch (with stake),
//!   the slot after the parent's and at most one slot ahead of this node's
//!   clock, both signatures, at most `max_block_txs` transactions, and
//!   every piece of evidence valid. Failures are dropped and counted.
//! - *Fork choice:* the longest chain; a tie goes to the lowest id, the
//!   same on every node.
//! - *Slashing:* evidence is spread (`PosMessage::Evidence`) and put in the
//!   next block this node leads; when that block executes, the ledger
//!   moves `slash_percent` of the offender's stake to the slashed-stake
//!   account (`phalanx_ledger::execute`), and from the next block on the
//!   offender's stake on that branch counts that much less — so slashed
//!   stake leads no more slots.
//! - *Save before send:* the engine persists the last slot it signed a
//!   block for before the block leaves; after a restart it never signs
//!   that slot (or an earlier one) again.
//! - *Nothing is final.* [`Engine::final_height`] is genesis.

use crate::chain::{
    unstored, Orphans, PeerScores, Pending, Refused, Stored, TieBreak, Tree, ASK_BACK_GAP_MS,
};
use crate::config::{Config, ConfigError, Quorums};
use crate::engine::{
    Engine, EngineStatus, FaultModel, Input, Message, Output, Promise, Protocol, Record, RecordKey,
    Restored, Statement, Summary, TimeoutKind,
};
use phalanx_crypto::{Domain, Hash, Keypair, Signature};
use phalanx_ledger::{
    Block, EngineKind, Evidence, Genesis, Height, Justification, Payload, SignedVote,
    ValidatorIndex, Vote, VoteKind,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// How many blocks below the head the tree keeps (the deepest reorg).
pub const KEEP_DEPTH: u64 = 256;
/// Most pieces of evidence held for inclusion.
pub const MAX_EVIDENCE: usize = 64;
const ANCHOR_LAG: u64 = 32;
const ANCHOR_EVERY: u64 = 24;

/// The output type of the PoS engine.
pub type PosOutput = Output<PosMessage, PosRecord>;

/// The PoS wire messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PosMessage {
    /// A block, sent by its leader to every validator.
    Block {
        /// What it orders.
        payload: Payload,
        /// Its leader's signatures.
        justification: Justification,
    },
    /// Proof that a leader signed two blocks for one slot.
    Evidence(Evidence),
}

impl Message for PosMessage {
    const KINDS: &'static [&'static str] = &["block", "evidence"];

    fn summary(&self) -> Summary {
        match self {
            PosMessage::Block { payload, .. } => Summary {
                kind: "block",
                view: payload.round,
                seq: payload.height.0,
                signer: payload.proposer,
                digest: None,
            },
            PosMessage::Evidence(e) => Summary {
                kind: "evidence",
                view: e.first.vote.view,
                seq: e.first.vote.seq.0,
                signer: e.offender(),
                digest: None,
            },
        }
    }

    /// A leader promises one block per slot.
    fn promises(&self, sender: ValidatorIndex) -> Vec<Promise> {
        match self {
            PosMessage::Block {
                payload,
                justification: j @ Justification::Pos { slot, leader, .. },
            } if *leader == sender => block_id(payload, j)
                .map(|id| vec![slot_promise(*slot, id)])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn statements(&self) -> Vec<Statement> {
        match self {
            PosMessage::Block {
                payload,
                justification:
                    j @ Justification::Pos {
                        slot,
                        leader,
                        signature,
                        ..
                    },
            } => block_id(payload, j)
                .map(|id| {
                    let vote = block_vote(*slot, id, *leader);
                    vec![Statement::of(*leader, "pos-block", &(vote, signature))]
                })
                .unwrap_or_default(),
            PosMessage::Block { .. } => Vec::new(),
            PosMessage::Evidence(e) => [&e.first, &e.second]
                .into_iter()
                .map(|v| Statement::of(v.vote.voter, "pos-block", &(v.vote, v.signature)))
                .collect(),
        }
    }

    fn describe(&self) -> String {
        match self {
            PosMessage::Block {
                payload,
                justification,
            } => {
                let id = block_id(payload, justification).map_or_else(|| "?".into(), |h| short(&h));
                format!(
                    "block {id} at {} slot {} by {} ({} txs, {} evidence)",
                    payload.height,
                    payload.round,
                    payload.proposer,
                    payload.txs.len(),
                    payload.evidence.len()
                )
            }
            PosMessage::Evidence(e) => format!(
                "evidence: validator {} signed two blocks for slot {}",
                e.offender(),
                e.first.vote.view
            ),
        }
    }
}

fn slot_promise(slot: u64, id: Hash) -> Promise {
    Promise {
        what: "pos-block",
        view: slot,
        seq: slot,
        digest: id,
    }
}

/// What a PoS validator persists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PosRecord {
    /// The last slot this validator signed a block for, and the block
    /// (written before the block is sent: save before send).
    Signed {
        /// The slot.
        slot: u64,
        /// The block's id.
        id: Hash,
    },
    /// Blocks up to `height` need not be restored; `meta` is what the
    /// block at `height` on the stored branch carries for the blocks
    /// after it (epoch randomness, who was slashed).
    Anchor {
        /// The height.
        height: Height,
        /// Its block's chain metadata.
        meta: Meta,
    },
    /// A block of another branch than the stored one (received, or taken
    /// out of the store by a reorg): a restart puts it back in the tree.
    Side {
        /// What it orders.
        payload: Payload,
        /// Its leader's signatures.
        justification: Justification,
    },
}

impl Record for PosRecord {
    fn key(&self) -> RecordKey {
        match self {
            PosRecord::Signed { .. } => RecordKey::single(b"pos/signed"),
            PosRecord::Anchor { .. } => RecordKey::single(b"pos/anchor"),
            PosRecord::Side {
                payload,
                justification,
            } => {
                let id = block_id(payload, justification).unwrap_or(Hash::ZERO);
                RecordKey::at(b"pos/side/", payload.height, &id.0)
            }
        }
    }

    fn prunes_up_to(&self) -> Option<Height> {
        match self {
            PosRecord::Anchor { height, .. } => Some(*height),
            PosRecord::Signed { .. } | PosRecord::Side { .. } => None,
        }
    }

    fn promises(&self) -> Vec<Promise> {
        match self {
            PosRecord::Signed { slot, id } => vec![slot_promise(*slot, *id)],
            PosRecord::Anchor { .. } | PosRecord::Side { .. } => Vec::new(),
        }
    }
}

/// What each block carries forward along its branch: its slot, the epoch
/// randomness accumulated so far, and the validators slashed on the
/// branch up to and including it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The block's slot (0 for genesis).
    pub slot: u64,
    /// Randomness of this block's epoch so far on the branch.
    pub acc_cur: Hash,
    /// Final randomness of the epoch before it.
    pub acc_prev: Hash,
    /// Final randomness of the epoch before that.
    pub acc_prev2: Hash,
    /// Validators slashed on the branch (evidence executed).
    pub slashed: BTreeSet<ValidatorIndex>,
}

/// The id of a PoS block: the digest its leader signs.
pub fn block_id(payload: &Payload, justification: &Justification) -> Option<Hash> {
    match justification {
        Justification::Pos { parent, slot, .. } => Some(Hash::of(
            Domain::PosBlock,
            &(parent, payload.digest(), *slot),
        )),
        _ => None,
    }
}

/// The vote a leader signs for its block.
fn block_vote(slot: u64, id: Hash, leader: ValidatorIndex) -> Vote {
    Vote {
        kind: VoteKind::PosBlock,
        view: slot,
        seq: Height(slot),
        digest: id,
        voter: leader,
    }
}

/// What a leader signs for its slot's randomness.
#[derive(Serialize)]
struct RandMessage<'a> {
    what: &'static str,
    chain_id: &'a str,
    slot: u64,
}

fn rand_message(chain_id: &str, slot: u64) -> RandMessage<'_> {
    RandMessage {
        what: "pos-slot-randomness",
        chain_id,
        slot,
    }
}

fn short(h: &Hash) -> String {
    h.to_string()[..8].to_owned()
}

/// What the PoS engine counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PosCounters {
    /// Blocks this node made as slot leader.
    pub produced: u64,
    /// Blocks received and added to the tree.
    pub accepted: u64,
    /// Blocks dropped as invalid.
    pub invalid: u64,
    /// Blocks dropped because they fork below the tree's root.
    pub too_deep: u64,
    /// Orphans received.
    pub orphans: u64,
    /// Reorgs.
    pub reorgs: u64,
    /// The deepest reorg.
    pub deepest_reorg: u64,
    /// Equivocations detected (new evidence).
    pub equivocations: u64,
}

/// The proof-of-stake engine of one validator.
#[derive(Debug)]
pub struct Pos {
    cfg: Config,
    key: Keypair,
    now_ms: u64,
    tree: Tree,
    /// Chain metadata of the tree's blocks and of its root.
    meta: HashMap<Hash, Meta>,
    stored: Stored,
    executed: Height,
    anchor: Height,
    pending: Pending,
    /// Evidence to include, by id.
    evidence: BTreeMap<Hash, Evidence>,
    /// The first block seen from each (leader, slot): (id, signed vote).
    by_slot: HashMap<(ValidatorIndex, u64), (Hash, SignedVote)>,
    orphans: Orphans,
    sync_back: u64,
    /// When the engine last asked for blocks below an orphan.
    last_ask_ms: Option<u64>,
    /// The last slot this validator signed (persisted).
    signed_slot: Option<u64>,
    seed0: Hash,
    /// Blocks added during the current input (see the PoW engine).
    added: Vec<(Height, Hash)>,
    counters: PosCounters,
    scores: PeerScores,
}

impl Pos {
    /// The engine rebuilt from its records and the stored chain.
    pub fn restore(cfg: Config, key: Keypair, restored: Restored<PosRecord>) -> Pos {
        let mut anchor = (Height::GENESIS, Meta::default());
        let mut signed_slot = None;
        let mut sides = Vec::new();
        for r in &restored.records {
            match r {
                PosRecord::Anchor { height, meta } => anchor = (*height, meta.clone()),
                PosRecord::Signed { slot, .. } => signed_slot = Some(*slot),
                PosRecord::Side {
                    payload,
                    justification,
                } => sides.push((payload.clone(), justification.clone())),
            }
        }
        sides.sort_by_key(|(p, _): &(Payload, Justification)| p.height);
        let blocks: Vec<&Block> = restored
            .recent_blocks
            .iter()
            .filter(|b| b.height() > anchor.0 && b.height() <= restored.last_executed)
            .collect();
        let (root, root_height) = match blocks.first() {
            Some(b) => match &b.justification {
                Justification::Pos { parent, .. } => (*parent, Height(b.height().0 - 1)),
                _ => (restored.last_block_hash, restored.last_executed),
            },
            None => (restored.last_block_hash, restored.last_executed),
        };
        let seed0 = Hash::of(
            Domain::PosBlock,
            &("phalanx/pos-seed", &cfg.chain_id, cfg.genesis_time_ms),
        );
        let max_pending = cfg.max_pending_txs;
        let mut engine = Pos {
            cfg,
            key,
            now_ms: 0,
            tree: Tree::new(root, root_height, TieBreak::LowestId),
            meta: HashMap::from([(root, anchor.1.clone())]),
            stored: Stored::default(),
            executed: restored.last_executed,
            anchor: anchor.0,
            pending: Pending::new(max_pending),
            evidence: BTreeMap::new(),
            by_slot: HashMap::new(),
            orphans: Orphans::default(),
            sync_back: 1,
            last_ask_ms: None,
            signed_slot,
            seed0,
            added: Vec::new(),
            counters: PosCounters::default(),
            scores: PeerScores::default(),
        };
        let mut parent = root;
        for b in blocks {
            let payload = Arc::new(b.payload());
            let Some(id) = block_id(&payload, &b.justification) else {
                break;
            };
            let Some(meta) = engine.child_meta(&parent, &payload, &b.justification) else {
                break;
            };
            if engine
                .tree
                .insert(id, payload.clone(), b.justification.clone(), parent, 1)
                .is_err()
            {
                break;
            }
            engine.meta.insert(id, meta);
            engine.stored.restore(b.height(), id, &payload);
            parent = id;
        }
        // Side branches, lowest first (parents before children).
        for (payload, j) in sides {
            let (Some(id), Justification::Pos { parent, .. }) = (block_id(&payload, &j), &j) else {
                continue;
            };
            let Some(meta) = engine.child_meta(parent, &payload, &j) else {
                continue;
            };
            if engine
                .tree
                .insert(id, Arc::new(payload), j.clone(), *parent, 1)
                .is_ok()
            {
                engine.meta.insert(id, meta);
            }
        }
        engine.added.clear();
        engine
    }

    /// What it counted.
    pub fn counters(&self) -> &PosCounters {
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

    /// Whether this engine runs as PBFT's fallback.
    fn is_fallback(&self) -> bool {
        self.cfg.params.engine == EngineKind::PbftPos
    }

    fn slot_ms(&self) -> u64 {
        self.cfg.params.slot_ms.max(1)
    }

    fn epoch_slots(&self) -> u64 {
        self.cfg.params.epoch_slots.max(1)
    }

    /// The slot at `now` (0 before genesis).
    fn slot_at(&self, now: u64) -> u64 {
        now.saturating_sub(self.cfg.genesis_time_ms) / self.slot_ms()
    }

    /// Milliseconds from `now` to the next slot boundary.
    fn until_next_slot(&self, now: u64) -> u64 {
        let g = self.cfg.genesis_time_ms;
        if now < g {
            return g - now;
        }
        self.slot_ms() - (now - g) % self.slot_ms()
    }

    /// The stake of each validator on the branch ending at `meta`'s block.
    fn stakes(&self, meta: &Meta) -> Vec<u64> {
        if self.is_fallback() {
            // PBFT's fallback: stake changes in tentative blocks take
            // effect only once final (the schedule is the genesis one).
            return self.cfg.stakes.clone();
        }
        let pct = self.cfg.params.slash_percent.min(100);
        self.cfg
            .stakes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if meta.slashed.contains(&ValidatorIndex(i as u32)) {
                    s - (u128::from(*s) * u128::from(pct) / 100) as u64
                } else {
                    *s
                }
            })
            .collect()
    }

    /// The seed of epoch `epoch` for a block whose parent carries `parent`.
    fn seed(&self, epoch: u64, parent: &Meta) -> Hash {
        // As PBFT's fallback, every node must draw the same leaders
        // whichever final block its tree starts from (it restarts from the
        // latest one), so the seeds cannot depend on the blocks' history.
        if epoch < 2 || self.is_fallback() {
            return Hash::of(Domain::PosBlock, &(self.seed0, epoch));
        }
        let pe = parent.slot / self.epoch_slots();
        let acc = match epoch - pe {
            0 => parent.acc_prev2,
            1 => parent.acc_prev,
            2 => parent.acc_cur,
            _ => Hash::ZERO,
        };
        Hash::of(Domain::PosBlock, &(self.seed0, epoch, acc))
    }

    /// The leader of `slot` on the branch whose tip carries `parent`.
    fn leader(&self, slot: u64, parent: &Meta) -> Option<ValidatorIndex> {
        let stakes = self.stakes(parent);
        let total: u128 = stakes.iter().map(|s| u128::from(*s)).sum();
        if total == 0 {
            return None;
        }
        let seed = self.seed(slot / self.epoch_slots(), parent);
        let h = Hash::of(Domain::PosBlock, &(seed, slot));
        let draw = u128::from_be_bytes(h.0[..16].try_into().unwrap_or([0; 16])) % total;
        let mut acc = 0u128;
        for (i, s) in stakes.iter().enumerate() {
            acc += u128::from(*s);
            if draw < acc {
                return Some(ValidatorIndex(i as u32));
            }
        }
        None
    }

    /// The metadata a child of `parent` with this payload would carry
    /// (`None` when the parent's is unknown).
    fn child_meta(&self, parent: &Hash, payload: &Payload, j: &Justification) -> Option<Meta> {
        let Justification::Pos { slot, rand, .. } = j else {
            return None;
        };
        let p = self.meta.get(parent)?;
        let (pe, e) = (p.slot / self.epoch_slots(), slot / self.epoch_slots());
        let r = Hash::digest(&rand.0);
        let mix = |acc: &Hash| Hash::of(Domain::PosBlock, &(acc, r));
        let (acc_cur, acc_prev, acc_prev2) = match e.saturating_sub(pe) {
            0 => (mix(&p.acc_cur), p.acc_prev, p.acc_prev2),
            1 => (mix(&Hash::ZERO), p.acc_cur, p.acc_prev),
            2 => (mix(&Hash::ZERO), Hash::ZERO, p.acc_cur),
            _ => (mix(&Hash::ZERO), Hash::ZERO, Hash::ZERO),
        };
        let mut slashed = p.slashed.clone();
        slashed.extend(payload.evidence.iter().map(Evidence::offender));
        Some(Meta {
            slot: *slot,
            acc_cur,
            acc_prev,
            acc_prev2,
            slashed,
        })
    }

    fn receive(&mut self, payload: Payload, j: Justification, out: &mut Vec<PosOutput>) {
        let Some(id) = block_id(&payload, &j) else {
            self.counters.invalid += 1;
            return;
        };
        if self.tree.knows(&id) {
            return;
        }
        let Justification::Pos {
            parent,
            slot,
            leader,
            rand,
            signature,
        } = &j
        else {
            return;
        };
        let (parent, slot, leader) = (*parent, *slot, *leader);
        let Some(key) = self.cfg.key(leader).copied() else {
            self.counters.invalid += 1;
            return;
        };
        let vote = block_vote(slot, id, leader);
        let signed = SignedVote {
            vote,
            signature: *signature,
        };
        if payload.chain_id != self.cfg.chain_id
            || payload.round != slot
            || payload.proposer != leader
            || payload.txs.len() > self.cfg.params.max_block_txs as usize
            || slot > self.slot_at(self.now_ms) + 1
            || signed.verify(&self.cfg.chain_id, &key).is_err()
            || key
                .verify(
                    Domain::PosBlock,
                    &rand_message(&self.cfg.chain_id, slot),
                    rand,
                )
                .is_err()
        {
            self.counters.invalid += 1;
            return;
        }
        // Correctly signed by its leader: a second block for the slot is evidence.
        match self.by_slot.get(&(leader, slot)) {
            Some((other, first)) if *other != id => {
                let e = Evidence {
                    first: *first,
                    second: signed,
                };
                self.add_evidence(e, out);
            }
            Some(_) => {}
            None => {
                self.by_slot.insert((leader, slot), (id, signed));
            }
        }
        let payload = Arc::new(payload);
        if !self.tree.knows(&parent) {
            if payload.height <= self.tree.root_height() {
                self.counters.too_deep += 1;
                return;
            }
            self.counters.orphans += 1;
            self.orphans.hold(id, parent, payload.clone(), j);
            self.ask_back(payload.height, out);
            return;
        }
        if self.add(id, payload, j) {
            self.adopt_orphans(id);
        }
    }

    /// The checks against the parent's branch, then into the tree.
    fn add(&mut self, id: Hash, payload: Arc<Payload>, j: Justification) -> bool {
        let Justification::Pos {
            parent,
            slot,
            leader,
            ..
        } = &j
        else {
            return false;
        };
        let Some(p) = self.meta.get(parent) else {
            return false;
        };
        let valid_evidence = payload.evidence.iter().all(|e| {
            e.verify(&self.cfg.chain_id, &self.cfg.validators).is_ok()
                && e.first.vote.kind == VoteKind::PosBlock
        }) && payload.evidence.len() <= MAX_EVIDENCE;
        if *slot <= p.slot || self.leader(*slot, p) != Some(*leader) || !valid_evidence {
            self.counters.invalid += 1;
            return false;
        }
        let Some(meta) = self.child_meta(parent, &payload, &j) else {
            return false;
        };
        let parent = *parent;
        let height = payload.height;
        match self.tree.insert(id, payload, j, parent, 1) {
            Ok(_) => {
                self.meta.insert(id, meta);
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

    fn ask_back(&mut self, height: Height, out: &mut Vec<PosOutput>) {
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

    fn add_evidence(&mut self, e: Evidence, out: &mut Vec<PosOutput>) {
        if e.first.vote.kind != VoteKind::PosBlock
            || e.verify(&self.cfg.chain_id, &self.cfg.validators).is_err()
        {
            return;
        }
        let id = e.id();
        if self.evidence.contains_key(&id) || self.evidence.len() >= MAX_EVIDENCE {
            return;
        }
        self.counters.equivocations += 1;
        self.evidence.insert(id, e.clone());
        out.push(Output::Evidence(e.clone()));
        out.push(Output::Broadcast(PosMessage::Evidence(e)));
    }

    /// Leads this slot if it is this validator's on the head's branch.
    fn on_slot(&mut self, out: &mut Vec<PosOutput>) {
        let slot = self.slot_at(self.now_ms);
        out.push(Output::ScheduleTimeout {
            kind: TimeoutKind::Slot,
            after_ms: self.until_next_slot(self.now_ms),
        });
        if self.signed_slot.is_some_and(|s| s >= slot) {
            return;
        }
        let parent = self.tree.head();
        let Some(p) = self.meta.get(&parent).cloned() else {
            return;
        };
        if slot <= p.slot || self.leader(slot, &p) != Some(self.cfg.me) {
            return;
        }
        // Evidence this branch has not slashed yet.
        let evidence: Vec<Evidence> = self
            .evidence
            .values()
            .filter(|e| !p.slashed.contains(&e.offender()))
            .take(MAX_EVIDENCE)
            .cloned()
            .collect();
        let height = self
            .tree
            .height_of(&parent)
            .unwrap_or(self.tree.root_height())
            .next();
        let payload = Payload {
            chain_id: self.cfg.chain_id.clone(),
            height,
            round: slot,
            proposer: self.cfg.me,
            timestamp_ms: self.now_ms,
            txs: self.pending.oldest(self.cfg.params.max_block_txs as usize),
            evidence,
        };
        let id = Hash::of(Domain::PosBlock, &(parent, payload.digest(), slot));
        let signature = block_vote(slot, id, self.cfg.me)
            .sign(&self.cfg.chain_id, &self.key)
            .signature;
        let rand = self
            .key
            .sign(Domain::PosBlock, &rand_message(&self.cfg.chain_id, slot));
        let j = Justification::Pos {
            parent,
            slot,
            leader: self.cfg.me,
            rand,
            signature,
        };
        // Save before send: never a second block for this slot, even
        // after a restart.
        self.signed_slot = Some(slot);
        out.push(Output::Persist(PosRecord::Signed { slot, id }));
        let payload = Arc::new(payload);
        if !self.add(id, payload.clone(), j.clone()) {
            return;
        }
        self.by_slot.insert(
            (self.cfg.me, slot),
            (
                id,
                SignedVote {
                    vote: block_vote(slot, id, self.cfg.me),
                    signature,
                },
            ),
        );
        self.counters.produced += 1;
        out.push(Output::Broadcast(PosMessage::Block {
            payload: (*payload).clone(),
            justification: j,
        }));
    }

    fn follow_head(&mut self, out: &mut Vec<PosOutput>) {
        if self.tree.head() == self.stored.tip(&self.tree) {
            return;
        }
        let (tree, meta, anchor) = (&self.tree, &self.meta, &mut self.anchor);
        let reorg = self
            .stored
            .follow(&self.tree, &mut self.pending, out, |fork, abandoned| {
                let mut first = Vec::new();
                let lower = Height(fork.0.saturating_sub(ANCHOR_LAG));
                if lower < *anchor {
                    if let Some(m) = anchor_at(tree, lower).and_then(|at| meta.get(&at)) {
                        *anchor = lower;
                        first.push(Output::Persist(PosRecord::Anchor {
                            height: lower,
                            meta: m.clone(),
                        }));
                    }
                }
                for id in abandoned {
                    if let Some(e) = tree.get(id) {
                        first.push(Output::Persist(PosRecord::Side {
                            payload: (*e.payload).clone(),
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
        let before = self.tree.root_height();
        self.tree.prune(KEEP_DEPTH + 64);
        let root = self.tree.root_height();
        if root > before {
            self.stored.prune(root);
            let tree = &self.tree;
            let root_id = tree.root();
            self.meta
                .retain(|id, _| *id == root_id || tree.get(id).is_some());
            let oldest_slot = self.meta.get(&root_id).map_or(0, |m| m.slot);
            self.by_slot.retain(|(_, s), _| *s >= oldest_slot);
        }
    }

    fn on_sync_blocks(&mut self, blocks: Vec<Block>, out: &mut Vec<PosOutput>) {
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
        self.slot_ms().saturating_mul(4).max(500)
    }
}

/// The id of the head-branch block at `height` (the root if it is there).
fn anchor_at(tree: &Tree, height: Height) -> Option<Hash> {
    if height == tree.root_height() {
        return Some(tree.root());
    }
    tree.ancestors(&tree.head())
        .find(|e| e.height == height)
        .map(|e| e.id)
}

impl Engine for Pos {
    type Message = PosMessage;
    type Record = PosRecord;

    fn handle(&mut self, now_ms: u64, input: Input<PosMessage>) -> Vec<PosOutput> {
        self.now_ms = self.now_ms.max(now_ms);
        let mut out = Vec::new();
        match input {
            Input::Start => {
                out.push(Output::ScheduleTimeout {
                    kind: TimeoutKind::Slot,
                    after_ms: self.until_next_slot(self.now_ms),
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
                    match message {
                        PosMessage::Block {
                            payload,
                            justification,
                        } => self.receive(payload, justification, &mut out),
                        PosMessage::Evidence(e) => self.add_evidence(e, &mut out),
                    }
                    self.score(from, before);
                }
            }
            Input::Transactions(txs) => {
                for tx in txs {
                    if !self.stored.holds(&tx.hash()) {
                        self.pending.add(tx);
                    }
                }
            }
            Input::Timeout(TimeoutKind::Slot) => self.on_slot(&mut out),
            Input::Timeout(TimeoutKind::Sync) => {
                out.push(Output::RequestSync {
                    from: self.tree.head_height().next(),
                });
                out.push(Output::ScheduleTimeout {
                    kind: TimeoutKind::Sync,
                    after_ms: self.sync_interval(),
                });
            }
            Input::Timeout(_) | Input::Mined { .. } => {}
            Input::BlockExecuted { height, .. } => {
                self.executed = height;
                if height.0 >= self.anchor.0 + ANCHOR_LAG + ANCHOR_EVERY {
                    let lower = Height(height.0 - ANCHOR_LAG);
                    if let Some(meta) =
                        anchor_at(&self.tree, lower).and_then(|id| self.meta.get(&id).cloned())
                    {
                        self.anchor = lower;
                        out.push(Output::Persist(PosRecord::Anchor {
                            height: lower,
                            meta,
                        }));
                    }
                }
            }
            Input::SyncBlocks(blocks) => self.on_sync_blocks(blocks, &mut out),
            Input::Forget(hashes) => {
                for h in hashes {
                    self.pending.remove(&h);
                }
            }
        }
        let mut follow = Vec::new();
        self.follow_head(&mut follow);
        out.extend(follow);
        let added = std::mem::take(&mut self.added);
        for e in unstored(&self.tree, &self.stored, added) {
            out.push(Output::Persist(PosRecord::Side {
                payload: (*e.payload).clone(),
                justification: e.justification.clone(),
            }));
        }
        out
    }

    fn status(&self) -> EngineStatus {
        let head = self.tree.get(&self.tree.head());
        EngineStatus {
            view: self.slot_at(self.now_ms),
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
        if !self.meta.contains_key(&self.tree.head()) {
            return Err("the head has no chain metadata".into());
        }
        if self.orphans.len() > Orphans::MAX {
            return Err(format!("{} orphans held", self.orphans.len()));
        }
        Ok(())
    }

    fn final_height(&self) -> Height {
        Height::GENESIS
    }
}

impl Protocol for Pos {
    const KIND: EngineKind = EngineKind::Pos;
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
        params.watermark_window = params.watermark_window.max(64);
        params.checkpoint_interval = params.checkpoint_interval.min(params.watermark_window);
        if params.slot_ms == 0 || params.epoch_slots == 0 {
            return Err(ConfigError::BadParam {
                name: "slot_ms",
                reason: "slot_ms and epoch_slots must be positive",
            });
        }
        let mut cfg = Config::with_quorums(
            &genesis.chain_id,
            genesis.validator_keys(),
            me,
            params,
            quorums,
        )?;
        cfg.genesis_time_ms = genesis.genesis_time_ms;
        cfg.stakes = genesis.validators.iter().map(|v| v.stake).collect();
        Ok(cfg)
    }

    fn restore(cfg: Config, key: Keypair, restored: Restored<PosRecord>) -> Pos {
        Pos::restore(cfg, key, restored)
    }
}

/// Makes `key` sign a second block for `slot` on `parent` (a test and
/// adversary helper: what an equivocating leader sends).
pub fn sign_block(
    chain_id: &str,
    key: &Keypair,
    leader: ValidatorIndex,
    parent: Hash,
    payload: &Payload,
) -> Justification {
    let slot = payload.round;
    let id = Hash::of(Domain::PosBlock, &(parent, payload.digest(), slot));
    let signature = block_vote(slot, id, leader).sign(chain_id, key).signature;
    let rand: Signature = key.sign(Domain::PosBlock, &rand_message(chain_id, slot));
    Justification::Pos {
        parent,
        slot,
        leader,
        rand,
        signature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_ledger::ConsensusParams;

    const N: usize = 4;
    const SLOT: u64 = 1_000;

    fn keys() -> Vec<Keypair> {
        (0..N as u8)
            .map(|i| Keypair::from_seed([i + 1; 32]))
            .collect()
    }

    fn cfg(me: u32, stakes: &[u64]) -> Config {
        let params = ConsensusParams {
            engine: EngineKind::Pos,
            slot_ms: SLOT,
            epoch_slots: 4,
            slash_percent: 100,
            watermark_window: 64,
            ..ConsensusParams::default()
        };
        let mut c = Config::with_quorums(
            "pos-test",
            keys().iter().map(Keypair::public).collect(),
            ValidatorIndex(me),
            params,
            Quorums {
                n: N,
                f: 1,
                quorum: 3,
                weak: 1,
            },
        )
        .unwrap();
        c.stakes = stakes.to_vec();
        c
    }

    fn engine(me: u32, stakes: &[u64]) -> Pos {
        Pos::restore(
            cfg(me, stakes),
            keys()[me as usize].clone(),
            Restored::genesis(Hash([9; 32])),
        )
    }

    fn blocks(out: &[PosOutput]) -> Vec<PosMessage> {
        out.iter()
            .filter_map(|o| match o {
                Output::Broadcast(m @ PosMessage::Block { .. }) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// Runs `slots` slots on `nodes`, delivering every block to everyone
    /// at once; returns every block made.
    fn run(nodes: &mut [Pos], from: u64, slots: u64) -> Vec<PosMessage> {
        let mut made = Vec::new();
        for s in from..from + slots {
            let now = s * SLOT;
            let mut sent = Vec::new();
            for n in nodes.iter_mut() {
                sent.extend(blocks(&n.handle(now, Input::Timeout(TimeoutKind::Slot))));
            }
            for m in &sent {
                for n in nodes.iter_mut() {
                    n.handle(
                        now + 10,
                        Input::Message {
                            from: ValidatorIndex(0),
                            message: m.clone(),
                        },
                    );
                }
            }
            made.extend(sent);
        }
        for n in nodes.iter() {
            n.check_invariants().unwrap();
        }
        made
    }

    #[test]
    fn leaders_are_drawn_in_proportion_to_stake() {
        let e = engine(0, &[1, 2, 3, 4]);
        let mut count = [0u64; N];
        let meta = Meta::default();
        for slot in 1..=10_000 {
            let l = e.leader(slot, &meta).unwrap();
            count[l.as_usize()] += 1;
        }
        for (i, c) in count.iter().enumerate() {
            let expected = 1_000 * (i as u64 + 1);
            assert!(
                c.abs_diff(expected) < 150,
                "validator {i}: {c} of 10,000 slots, expected about {expected}"
            );
        }
    }

    #[test]
    fn every_node_follows_one_chain_of_its_slot_leaders() {
        let stakes = [1, 1, 1, 1];
        let mut nodes: Vec<Pos> = (0..N as u32).map(|i| engine(i, &stakes)).collect();
        let made = run(&mut nodes, 1, 40);
        assert!(made.len() >= 30, "{} blocks in 40 slots", made.len());
        let head = nodes[0].tree().head();
        assert!(nodes.iter().all(|n| n.tree().head() == head));
        // Each block's proposer led its slot on its parent's branch, and
        // stake 1 each: everyone led some.
        let mut led = [0; N];
        for m in made {
            let PosMessage::Block {
                payload,
                justification: Justification::Pos { parent, slot, .. },
            } = m
            else {
                unreachable!()
            };
            let meta = &nodes[0].meta[&parent];
            assert_eq!(nodes[0].leader(slot, meta), Some(payload.proposer));
            led[payload.proposer.as_usize()] += 1;
        }
        assert!(led.iter().all(|c| *c > 0), "{led:?}");
    }

    #[test]
    fn a_leader_that_signs_two_blocks_for_a_slot_is_caught_and_slashed() {
        let stakes = [1, 1, 1, 1];
        let mut nodes: Vec<Pos> = (0..N as u32).map(|i| engine(i, &stakes)).collect();
        run(&mut nodes, 1, 3);
        // Find a slot validator 3 leads on the common head, and make it
        // sign two blocks for it.
        let head = nodes[0].tree().head();
        let meta = nodes[0].meta[&head].clone();
        let slot = (4..200)
            .find(|s| nodes[0].leader(*s, &meta) == Some(ValidatorIndex(3)))
            .unwrap();
        let height = nodes[0].tree().head_height().next();
        let mk = |ts: u64| Payload {
            chain_id: "pos-test".into(),
            height,
            round: slot,
            proposer: ValidatorIndex(3),
            timestamp_ms: ts,
            txs: vec![],
            evidence: vec![],
        };
        let key = &keys()[3];
        let (a, b) = (mk(1), mk(2));
        let ja = sign_block("pos-test", key, ValidatorIndex(3), head, &a);
        let jb = sign_block("pos-test", key, ValidatorIndex(3), head, &b);
        let now = slot * SLOT;
        nodes[0].handle(
            now,
            Input::Message {
                from: ValidatorIndex(3),
                message: PosMessage::Block {
                    payload: a,
                    justification: ja,
                },
            },
        );
        let out = nodes[0].handle(
            now,
            Input::Message {
                from: ValidatorIndex(3),
                message: PosMessage::Block {
                    payload: b,
                    justification: jb,
                },
            },
        );
        let evidence: Vec<&Evidence> = out
            .iter()
            .filter_map(|o| match o {
                Output::Evidence(e) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(evidence.len(), 1);
        assert_eq!(evidence[0].offender(), ValidatorIndex(3));
        assert_eq!(nodes[0].counters().equivocations, 1);
        let spread: Vec<PosMessage> = out
            .iter()
            .filter_map(|o| match o {
                Output::Broadcast(m @ PosMessage::Evidence(_)) => Some(m.clone()),
                _ => None,
            })
            .collect();
        for n in nodes.iter_mut().skip(1) {
            for m in &spread {
                n.handle(
                    now,
                    Input::Message {
                        from: ValidatorIndex(0),
                        message: m.clone(),
                    },
                );
            }
        }
        // The next honest leaders put the evidence in a block; from then on
        // validator 3 (slashed to nothing) leads no slot on that branch.
        let made = run(&mut nodes, slot + 1, 30);
        let carrying = made
            .iter()
            .position(
                |m| matches!(m, PosMessage::Block { payload, .. } if !payload.evidence.is_empty()),
            )
            .expect("the evidence goes into a block");
        let after: Vec<ValidatorIndex> = made[carrying + 1..]
            .iter()
            .map(|m| match m {
                PosMessage::Block { payload, .. } => payload.proposer,
                _ => unreachable!(),
            })
            .collect();
        assert!(!after.is_empty());
        assert!(after.iter().all(|p| *p != ValidatorIndex(3)), "{after:?}");
        let head = nodes[1].tree().head();
        assert!(nodes[1].meta[&head].slashed.contains(&ValidatorIndex(3)));
    }

    #[test]
    fn a_restarted_leader_never_signs_its_slot_again() {
        let stakes = [1, 0, 0, 0];
        let mut e = engine(0, &stakes);
        let out = e.handle(5 * SLOT, Input::Timeout(TimeoutKind::Slot));
        let signed: Vec<PosRecord> = out
            .iter()
            .filter_map(|o| match o {
                Output::Persist(r @ PosRecord::Signed { .. }) => Some(r.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(signed.len(), 1);
        assert_eq!(blocks(&out).len(), 1);
        // Restarted from its records (and a store that lost the block):
        // same slot, nothing; next slot, a block.
        let mut again = Pos::restore(
            cfg(0, &stakes),
            keys()[0].clone(),
            Restored {
                records: signed,
                ..Restored::genesis(Hash([9; 32]))
            },
        );
        assert!(
            blocks(&again.handle(5 * SLOT + 500, Input::Timeout(TimeoutKind::Slot))).is_empty()
        );
        assert_eq!(
            blocks(&again.handle(6 * SLOT, Input::Timeout(TimeoutKind::Slot))).len(),
            1
        );
    }
}
