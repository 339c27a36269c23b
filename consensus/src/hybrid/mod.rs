//! PBFT with a longest-chain fallback: PBFT orders while it can; while it
//! cannot reach a quorum, a proof-of-work or proof-of-stake engine keeps
//! producing tentative blocks on top of the last final block; once PBFT
//! works again it finalizes one branch of them, block by block, as they
//! are (docs/architecture.md, "PBFT with a fallback").
//!
//! One composite engine, [`Hybrid`], runs an unmodified [`Pbft`] and a
//! fallback engine side by side. Its mode changes only on its inputs:
//!
//! - *pbft*: only PBFT runs; every committed block is final. Fallback
//!   messages are dropped unread (counted): a Byzantine validator cannot
//!   push a live node into falling back.
//! - *fallback*: this replica started `fallback_after_timeouts` view
//!   changes without a new final block, or complained on as many
//!   timeouts (a replica cut off with fewer than f others never gathers
//!   the complaints that change views). The fallback engine starts on the
//!   last final block F (its tree's root and floor) and commits tentative
//!   blocks above it; PBFT keeps trying view changes in the background.
//! - *recovering*: PBFT committed again while tentative blocks remain.
//!   Mining pauses; PBFT goes on finalizing the branch.
//!
//! Finalizing a branch: PBFT is told the payloads of the tentative blocks
//! this replica holds ([`Pbft::set_adoptable`]). A primary proposes them
//! unchanged at their heights; a backup accepts at those heights only the
//! block it holds itself — never a fresh proposal that would discard its
//! branch — and the fallback's gossip makes the replicas converge on the
//! heaviest branch meanwhile. When PBFT commits the payload of the
//! tentative block at F+1, that block becomes final as it is
//! ([`Output::Finalize`]: same hash, same state, a PBFT certificate
//! instead of its seal) and becomes the fallback tree's floor, which no
//! reorg can cross. A prepared value from before the outage wins over the
//! branch (PBFT's view change carries it): the tentative blocks from that
//! height are reverted and PBFT's block commits instead. Safety of final
//! blocks is PBFT's alone — the fallback only supplies payloads.

use crate::chain::Tree;

/// Outside PBFT mode, PBFT's timeouts back off to at most this many times
/// the base view-change timeout (see `Hybrid::bounded_backoff`).
pub const BACKOFF_CAP: u64 = 8;
use crate::config::{Config, ConfigError};
use crate::engine::{
    Engine, EngineStatus, FaultModel, Input, Message, Output, Promise, Protocol, Record, RecordKey,
    Restored, Statement, Summary, TimeoutKind,
};
use crate::pbft::messages::PbftMessage;
use crate::pbft::record::PbftRecord;
use crate::pbft::Pbft;
use crate::{Pos, PosMessage, Pow, PowMessage};
use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::{
    Block, EngineKind, Genesis, Height, Justification, Payload, SignedVote, ValidatorIndex,
};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// A longest-chain engine PBFT can fall back to.
pub trait Fallback: Protocol {
    /// The engine kind of PBFT with this fallback.
    const HYBRID_KIND: EngineKind;

    /// The id under which this engine's blocks name a block as parent.
    fn block_id(payload: &Payload, justification: &Justification) -> Option<Hash>;

    /// Block `id` at `height` is final: no block that does not descend
    /// from it is accepted from now on (see [`Tree::set_floor`]).
    fn set_floor(&mut self, height: Height, id: Hash) -> bool;

    /// The block tree.
    fn tree(&self) -> &Tree;

    /// The message that carries a block.
    fn block_message(payload: Payload, justification: Justification) -> Self::Message;

    /// The block a message carries, if it carries one.
    fn block_of(message: &Self::Message) -> Option<(&Payload, &Justification)>;
}

impl Fallback for Pow {
    const HYBRID_KIND: EngineKind = EngineKind::PbftPow;

    fn block_id(payload: &Payload, justification: &Justification) -> Option<Hash> {
        crate::pow::block_id(payload, justification)
    }

    fn set_floor(&mut self, height: Height, id: Hash) -> bool {
        Pow::set_floor(self, height, id)
    }

    fn tree(&self) -> &Tree {
        Pow::tree(self)
    }

    fn block_message(payload: Payload, justification: Justification) -> PowMessage {
        PowMessage::Block {
            payload,
            justification,
        }
    }

    fn block_of(message: &PowMessage) -> Option<(&Payload, &Justification)> {
        let PowMessage::Block {
            payload,
            justification,
        } = message;
        Some((payload, justification))
    }
}

impl Fallback for Pos {
    const HYBRID_KIND: EngineKind = EngineKind::PbftPos;

    fn block_id(payload: &Payload, justification: &Justification) -> Option<Hash> {
        crate::pos::block_id(payload, justification)
    }

    fn set_floor(&mut self, height: Height, id: Hash) -> bool {
        Pos::set_floor(self, height, id)
    }

    fn tree(&self) -> &Tree {
        Pos::tree(self)
    }

    fn block_message(payload: Payload, justification: Justification) -> PosMessage {
        PosMessage::Block {
            payload,
            justification,
        }
    }

    fn block_of(message: &PosMessage) -> Option<(&Payload, &Justification)> {
        match message {
            PosMessage::Block {
                payload,
                justification,
            } => Some((payload, justification)),
            PosMessage::Evidence(_) => None,
        }
    }
}

/// The hybrid's wire message: PBFT's or the fallback engine's. (PBFT's
/// messages are the common ones: boxing them would cost an allocation per
/// vote to save bytes on the rarer fallback blocks.)
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HybridMessage<M> {
    /// A PBFT message.
    Pbft(PbftMessage),
    /// A fallback engine's message.
    Fallback(M),
}

/// The hybrid's record: PBFT's, the fallback engine's, or where the
/// current fallback stands on the final chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HybridRecord<R> {
    /// A PBFT record.
    Pbft(PbftRecord),
    /// A fallback engine's record.
    Fallback(R),
    /// The last final block under tentative ones: `None` while no
    /// fallback runs (every stored block is final).
    Base(Option<Base>),
}

/// The final block a fallback builds on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    /// Its height.
    pub height: Height,
    /// Its hash in the store.
    pub hash: Hash,
    /// Its id in the fallback chain (what a child names as parent).
    pub id: Hash,
}

impl<R: Record> Record for HybridRecord<R> {
    fn key(&self) -> RecordKey {
        let (prefix, inner) = match self {
            HybridRecord::Pbft(r) => (b'p', r.key()),
            HybridRecord::Fallback(r) => (b'f', r.key()),
            HybridRecord::Base(_) => return RecordKey::single(b"hybrid/base"),
        };
        let mut bytes = vec![prefix];
        bytes.extend_from_slice(&inner.bytes);
        RecordKey {
            seq: inner.seq,
            bytes,
        }
    }

    /// PBFT's stable checkpoints prune (fallback records at or below a
    /// final height are obsolete with it); the fallback's own anchors do
    /// not, or they would delete PBFT's prepared records above the last
    /// final block.
    fn prunes_up_to(&self) -> Option<Height> {
        match self {
            HybridRecord::Pbft(r) => r.prunes_up_to(),
            HybridRecord::Fallback(_) | HybridRecord::Base(_) => None,
        }
    }

    fn promises(&self) -> Vec<Promise> {
        match self {
            HybridRecord::Pbft(r) => r.promises(),
            HybridRecord::Fallback(r) => r.promises(),
            HybridRecord::Base(_) => Vec::new(),
        }
    }
}

impl<M: Message> Message for HybridMessage<M> {
    // PBFT's kinds, then the fallbacks' (one list for both fallbacks: a
    // trait constant cannot be built from two generic ones).
    const KINDS: &'static [&'static str] = &[
        "pre_prepare",
        "prepare",
        "commit",
        "checkpoint",
        "view_change",
        "new_view",
        "evidence",
        "complaint",
        "pre_prepare_echo",
        "fallback_block",
        "fallback_evidence",
    ];

    fn summary(&self) -> Summary {
        match self {
            HybridMessage::Pbft(m) => m.summary(),
            HybridMessage::Fallback(m) => {
                let mut s = m.summary();
                s.kind = fallback_kind(s.kind);
                s
            }
        }
    }

    fn votes(&self) -> Vec<&SignedVote> {
        match self {
            HybridMessage::Pbft(m) => m.votes(),
            HybridMessage::Fallback(m) => m.votes(),
        }
    }

    fn evidence_offender(&self) -> Option<ValidatorIndex> {
        match self {
            HybridMessage::Pbft(m) => m.evidence_offender(),
            HybridMessage::Fallback(m) => m.evidence_offender(),
        }
    }

    fn promises(&self, sender: ValidatorIndex) -> Vec<Promise> {
        match self {
            HybridMessage::Pbft(m) => m.promises(sender),
            HybridMessage::Fallback(m) => m.promises(sender),
        }
    }

    fn statements(&self) -> Vec<Statement> {
        match self {
            HybridMessage::Pbft(m) => m.statements(),
            HybridMessage::Fallback(m) => m.statements(),
        }
    }

    fn describe(&self) -> String {
        match self {
            HybridMessage::Pbft(m) => m.describe(),
            HybridMessage::Fallback(m) => format!("fallback {}", m.describe()),
        }
    }

    fn wire_kind(bytes: &[u8]) -> Option<&'static str> {
        match bytes.first()? {
            0 => PbftMessage::wire_kind(bytes.get(1..)?),
            1 => M::wire_kind(bytes.get(1..)?).map(fallback_kind),
            _ => None,
        }
    }
}

/// A fallback message kind as the hybrid names it.
fn fallback_kind(kind: &'static str) -> &'static str {
    match kind {
        "block" => "fallback_block",
        "evidence" => "fallback_evidence",
        _ => "fallback_other",
    }
}

/// What the hybrid is doing (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// PBFT orders; every block is final.
    Pbft,
    /// PBFT has no quorum: the fallback makes tentative blocks.
    Fallback,
    /// PBFT is back and finalizes the tentative blocks.
    Recovering,
}

impl Mode {
    /// The name in `/status`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pbft => "pbft",
            Mode::Fallback => "fallback",
            Mode::Recovering => "recovering",
        }
    }
}

/// What the hybrid counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HybridCounters {
    /// Times this replica fell back.
    pub fallbacks: u64,
    /// Tentative blocks made final as they were.
    pub finalized: u64,
    /// Tentative blocks reverted because PBFT committed another block at
    /// their height (a prepared value from before the outage, or a fresh
    /// proposal to a replica that did not hold them).
    pub discarded: u64,
    /// Fallback messages dropped because no fallback was running.
    pub fallback_dropped: u64,
    /// Reverts the fallback asked for below the final block (refused;
    /// never expected, since the floor keeps the fork choice above it).
    pub refused_reverts: u64,
}

#[derive(Clone, Debug)]
struct Tentative {
    payload: Payload,
    justification: Justification,
    id: Hash,
    /// Its hash in the store, once executed.
    hash: Option<Hash>,
}

/// Which engine a `Commit` came from (the driver reports executions in
/// the order of the commits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Pbft,
    Fallback,
}

type HOut<F> = Output<HybridMessage<<F as Engine>::Message>, HybridRecord<<F as Engine>::Record>>;

/// PBFT with fallback `F`. See the module documentation.
pub struct Hybrid<F: Fallback> {
    fb_cfg: Config,
    key: Keypair,
    pbft: Pbft,
    fb: Option<F>,
    mode: Mode,
    now_ms: u64,
    final_height: Height,
    final_hash: Hash,
    final_id: Hash,
    /// Whether `final_id` is a fallback id (not the store hash to come).
    final_id_known: bool,
    tentative: Vec<Tentative>,
    awaiting: VecDeque<Source>,
    /// PBFT's counts of view changes started and of complaints, at the
    /// last final block.
    view_changes_at_final: u64,
    complaints_at_final: u64,
    fallback_after: u64,
    /// PBFT's view-change and progress timeouts, at most, while the
    /// fallback runs (see [`BACKOFF_CAP`]).
    backoff_cap_ms: u64,
    /// Stored blocks a restart could not read back: reverted at start.
    truncate_to: Option<Height>,
    counters: HybridCounters,
    /// When the last block became final (this replica's clock).
    last_final_ms: u64,
    /// Transactions of tentative blocks PBFT discarded, to hand back to it
    /// at the end of the input (`flush_returned`).
    returned: Vec<phalanx_ledger::SignedTransaction>,
    /// Transactions PBFT committed during the current input.
    committed_now: std::collections::HashSet<Hash>,
}

impl<F: Fallback> std::fmt::Debug for Hybrid<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hybrid")
            .field("mode", &self.mode)
            .field("final_height", &self.final_height)
            .field("tentative", &self.tentative.len())
            .finish_non_exhaustive()
    }
}

/// A block as a fallback engine's restore reads it: only the payload and
/// the justification matter there (the state root is the driver's).
fn as_block(t: &Tentative, parent: Hash) -> Block {
    phalanx_ledger::make_block(
        t.payload.clone(),
        parent,
        Hash::ZERO,
        t.justification.clone(),
    )
}

fn is_tentative(j: &Justification) -> bool {
    j.is_tentative()
}

/// The id under which a fallback links to a final block: the id it had in
/// a fallback chain, for a block PBFT finalized as it was (its seal is
/// kept in [`Justification::Finalized`]), else its hash in the store.
fn fallback_id<F: Fallback>(payload: &Payload, justification: &Justification) -> Option<Hash> {
    match justification {
        Justification::Finalized { sealed, .. } => F::block_id(payload, sealed),
        _ => None,
    }
}

impl<F: Fallback> Hybrid<F> {
    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// What it counted.
    pub fn counters(&self) -> &HybridCounters {
        &self.counters
    }

    /// The PBFT engine inside.
    pub fn pbft(&self) -> &Pbft {
        &self.pbft
    }

    /// The fallback engine, while one runs.
    pub fn fallback(&self) -> Option<&F> {
        self.fb.as_ref()
    }

    /// The hash of the last final block (zero until it is executed).
    pub fn final_hash(&self) -> Hash {
        self.final_hash
    }

    /// When the last block became final, on this replica's clock (0: not
    /// since the engine started).
    pub fn last_final_ms(&self) -> u64 {
        self.last_final_ms
    }

    fn restore(cfg: Config, key: Keypair, restored: Restored<HybridRecord<F::Record>>) -> Self {
        let mut pbft_records = Vec::new();
        let mut fb_records = Vec::new();
        let mut base = None;
        for r in restored.records {
            match r {
                HybridRecord::Pbft(r) => pbft_records.push(r),
                HybridRecord::Fallback(r) => fb_records.push(r),
                HybridRecord::Base(b) => base = b,
            }
        }
        // The fallback runs with PBFT's configuration: the engine kind
        // (`pbft+pos`) tells proof of stake to draw leaders from a
        // schedule that does not depend on tentative history.
        let fb_cfg = cfg.clone();
        // The last final block: the store's word first (a crash between a
        // PBFT commit and the record that follows it must not make a
        // final block look tentative), the record's where the restored
        // window holds no final block.
        let newest_final = restored
            .recent_blocks
            .iter()
            .filter(|b| !is_tentative(&b.justification) && b.height() <= restored.last_executed)
            .max_by_key(|b| b.height());
        let (final_height, final_hash, final_id) = match (base, newest_final) {
            (b, Some(block)) if b.is_none_or(|b| block.height() >= b.height) => {
                let id = fallback_id::<F>(&block.payload(), &block.justification)
                    .or_else(|| b.filter(|b| b.height == block.height()).map(|b| b.id))
                    .unwrap_or_else(|| block.hash());
                (block.height(), block.hash(), id)
            }
            (Some(b), _) => (b.height, b.hash, b.id),
            (None, _) => (
                restored.last_executed,
                restored.last_block_hash,
                restored.last_block_hash,
            ),
        };
        let mut tentative = Vec::new();
        for b in restored
            .recent_blocks
            .iter()
            .filter(|b| b.height() > final_height && b.height() <= restored.last_executed)
        {
            if b.height() != Height(final_height.0 + 1 + tentative.len() as u64)
                || !is_tentative(&b.justification)
            {
                break;
            }
            let payload = b.payload();
            let Some(id) = F::block_id(&payload, &b.justification) else {
                break;
            };
            tentative.push(Tentative {
                payload,
                justification: b.justification.clone(),
                id,
                hash: Some(b.hash()),
            });
        }
        let falling_back = base.is_some() || !tentative.is_empty();
        let top = Height(final_height.0 + tentative.len() as u64);
        let truncate_to = (top < restored.last_executed).then_some(top);
        let pbft = Pbft::restore(
            cfg.clone(),
            key.clone(),
            Restored {
                records: pbft_records,
                last_executed: final_height,
                last_block_hash: final_hash,
                recent_blocks: restored
                    .recent_blocks
                    .iter()
                    .filter(|b| b.height() <= final_height)
                    .cloned()
                    .collect(),
            },
        );
        let fallback_after = u64::from(cfg.params.fallback_after_timeouts.max(1));
        let backoff_cap_ms = cfg
            .params
            .view_change_timeout_ms
            .saturating_mul(BACKOFF_CAP);
        let mut engine = Hybrid {
            backoff_cap_ms,
            fb_cfg,
            key,
            view_changes_at_final: pbft.counters().view_changes,
            complaints_at_final: pbft.counters().complaints,
            pbft,
            fb: None,
            mode: Mode::Pbft,
            now_ms: 0,
            final_height,
            final_hash,
            final_id,
            final_id_known: true,
            tentative,
            awaiting: VecDeque::new(),
            fallback_after,
            truncate_to,
            counters: HybridCounters::default(),
            last_final_ms: 0,
            returned: Vec::new(),
            committed_now: std::collections::HashSet::new(),
        };
        if falling_back {
            engine.mode = Mode::Fallback;
            engine.fb = Some(engine.build_fallback(fb_records));
        }
        engine
    }

    /// A fallback engine on the final block, holding the tentative blocks.
    fn build_fallback(&self, records: Vec<F::Record>) -> F {
        let mut parent = self.final_id;
        let blocks: Vec<Block> = self
            .tentative
            .iter()
            .map(|t| {
                let b = as_block(t, parent);
                parent = t.id;
                b
            })
            .collect();
        let tip = self.tentative.last().map_or(self.final_id, |t| t.id);
        let mut fb = F::restore(
            self.fb_cfg.clone(),
            self.key.clone(),
            Restored {
                records,
                last_executed: Height(self.final_height.0 + self.tentative.len() as u64),
                last_block_hash: tip,
                recent_blocks: blocks,
            },
        );
        fb.set_floor(self.final_height, self.final_id);
        fb
    }

    fn base(&self) -> Base {
        Base {
            height: self.final_height,
            hash: self.final_hash,
            id: self.final_id,
        }
    }

    /// Starts the fallback on the last final block.
    fn fall_back(&mut self, out: &mut Vec<HOut<F>>) {
        self.mode = Mode::Fallback;
        self.counters.fallbacks += 1;
        out.push(Output::Persist(HybridRecord::Base(Some(self.base()))));
        self.fb = Some(self.build_fallback(Vec::new()));
        let start = self.fb_handle(Input::Start);
        self.after_fb(start, out);
        let txs = self.pbft.pending_transactions();
        if !txs.is_empty() {
            let o = self.fb_handle(Input::Transactions(txs));
            self.after_fb(o, out);
        }
    }

    /// A peer's tentative block extends the last final block while PBFT
    /// here is idle (it missed the block before returning to PBFT alone,
    /// or never fell back): take it, without mining, so that PBFT can
    /// finalize it. Only a block on the final tip starts this, so a
    /// Byzantine validator cannot feed a node old branches; what it can do
    /// is what any block producer can — have its valid block finalized.
    fn follow(&mut self, out: &mut Vec<HOut<F>>) {
        self.mode = Mode::Recovering;
        out.push(Output::Persist(HybridRecord::Base(Some(self.base()))));
        self.fb = Some(self.build_fallback(Vec::new()));
        let start = self.fb_handle(Input::Start);
        self.after_fb(start, out);
    }

    /// Whether `message` carries a block on the last final block.
    fn extends_final(&self, message: &F::Message) -> bool {
        let Some((payload, justification)) = F::block_of(message) else {
            return false;
        };
        let parent = match justification {
            Justification::Pow { parent, .. } | Justification::Pos { parent, .. } => parent,
            _ => return false,
        };
        payload.height == self.final_height.next() && *parent == self.final_id
    }

    /// Back to PBFT alone: nothing tentative is left.
    fn stop_fallback(&mut self, out: &mut Vec<HOut<F>>) {
        self.mode = Mode::Pbft;
        self.fb = None;
        out.push(Output::Mine(None));
        out.push(Output::Persist(HybridRecord::Base(None)));
        self.offer_branch(out);
    }

    fn fb_handle(&mut self, input: Input<F::Message>) -> Vec<Output<F::Message, F::Record>> {
        match self.fb.as_mut() {
            Some(fb) => fb.handle(self.now_ms, input),
            None => Vec::new(),
        }
    }

    fn pbft_handle(&mut self, input: Input<PbftMessage>, out: &mut Vec<HOut<F>>) {
        let o = self.pbft.handle(self.now_ms, input);
        self.after_pbft(o, out);
    }

    /// Tells PBFT the branch this replica holds.
    fn offer_branch(&mut self, out: &mut Vec<HOut<F>>) {
        let payloads = self.tentative.iter().map(|t| t.payload.clone()).collect();
        let o = self.pbft.set_adoptable(payloads);
        self.after_pbft(o, out);
    }

    fn after_pbft(
        &mut self,
        outputs: Vec<Output<PbftMessage, PbftRecord>>,
        out: &mut Vec<HOut<F>>,
    ) {
        for o in outputs {
            match o {
                Output::Send { to, message } => out.push(Output::Send {
                    to,
                    message: HybridMessage::Pbft(message),
                }),
                Output::Broadcast(m) => out.push(Output::Broadcast(HybridMessage::Pbft(m))),
                Output::Persist(r) => out.push(Output::Persist(HybridRecord::Pbft(r))),
                Output::ScheduleTimeout { kind, after_ms } => {
                    let after_ms = self.bounded_backoff(kind, after_ms);
                    out.push(Output::ScheduleTimeout { kind, after_ms })
                }
                Output::Commit {
                    payload,
                    justification,
                } => self.on_final(payload, justification, out),
                Output::Evidence(e) => out.push(Output::Evidence(e)),
                Output::RequestSync { from } => out.push(Output::RequestSync { from }),
                Output::ViewChanged { view, primary } => {
                    out.push(Output::ViewChanged { view, primary })
                }
                // PBFT never reverts, mines or finalizes.
                Output::Revert { .. } | Output::Mine(_) | Output::Finalize { .. } => {}
            }
        }
        self.maybe_fall_back(out);
    }

    /// Hands PBFT back the transactions of the tentative blocks it
    /// discarded during this input, but none it committed meanwhile (it
    /// forgot those when it committed them, before their commit reached
    /// the hybrid).
    fn flush_returned(&mut self, out: &mut Vec<HOut<F>>) {
        if self.returned.is_empty() {
            self.committed_now.clear();
            return;
        }
        let committed = std::mem::take(&mut self.committed_now);
        let txs: Vec<_> = std::mem::take(&mut self.returned)
            .into_iter()
            .filter(|t| !committed.contains(&t.hash()))
            .collect();
        let o = self.pbft.return_transactions(txs);
        self.after_pbft(o, out);
        self.committed_now.clear();
    }

    /// PBFT committed `payload`: final.
    fn on_final(&mut self, payload: Payload, justification: Justification, out: &mut Vec<HOut<F>>) {
        let height = payload.height;
        if !self.returned.is_empty() || !self.tentative.is_empty() {
            self.committed_now
                .extend(payload.txs.iter().map(|t| t.hash()));
        }
        self.final_height = height;
        self.view_changes_at_final = self.pbft.counters().view_changes;
        self.complaints_at_final = self.pbft.counters().complaints;
        self.last_final_ms = self.now_ms;
        let adopted = self
            .tentative
            .first()
            .is_some_and(|t| t.payload.height == height && t.payload == payload);
        if adopted {
            let t = self.tentative.remove(0);
            self.counters.finalized += 1;
            self.final_id = t.id;
            // Executed when the fallback committed it (a PBFT commit
            // takes messages, and every execution is reported at once).
            self.final_hash = t.hash.unwrap_or(Hash::ZERO);
            if let Some(fb) = self.fb.as_mut() {
                fb.set_floor(height, t.id);
            }
            out.push(Output::Persist(HybridRecord::Base(Some(self.base()))));
            let justification = match justification {
                Justification::Pbft(certificate) => Justification::Finalized {
                    certificate,
                    sealed: Box::new(t.justification.clone()),
                },
                other => other,
            };
            out.push(Output::Finalize {
                height,
                justification,
            });
            if self.mode == Mode::Fallback {
                self.mode = Mode::Recovering;
            }
            if let Some(hash) = t.hash {
                self.pbft_handle(
                    Input::BlockExecuted {
                        height,
                        block_hash: hash,
                    },
                    out,
                );
            }
        } else {
            if !self.tentative.is_empty() {
                self.counters.discarded += self.tentative.len() as u64;
                let abandoned = std::mem::take(&mut self.tentative);
                out.push(Output::Revert {
                    to: Height(height.0 - 1),
                });
                // (Handed back at the end of the input, without what PBFT
                // committed meanwhile: see `flush_returned`.)
                self.returned
                    .extend(abandoned.into_iter().flat_map(|t| t.payload.txs));
            }
            self.awaiting.push_back(Source::Pbft);
            self.final_hash = Hash::ZERO;
            // Known now for a finalized tentative block (caught up by
            // sync), else its store hash once executed.
            self.final_id_known = match fallback_id::<F>(&payload, &justification) {
                Some(id) => {
                    self.final_id = id;
                    true
                }
                None => false,
            };
            out.push(Output::Commit {
                payload,
                justification,
            });
        }
        if self.mode != Mode::Pbft && self.tentative.is_empty() {
            self.stop_fallback(out);
        } else if self.mode != Mode::Pbft {
            self.offer_branch(out);
        }
    }

    fn after_fb(&mut self, outputs: Vec<Output<F::Message, F::Record>>, out: &mut Vec<HOut<F>>) {
        let mut branch_changed = false;
        for o in outputs {
            match o {
                Output::Send { to, message } => out.push(Output::Send {
                    to,
                    message: HybridMessage::Fallback(message),
                }),
                Output::Broadcast(m) => out.push(Output::Broadcast(HybridMessage::Fallback(m))),
                Output::Persist(r) => out.push(Output::Persist(HybridRecord::Fallback(r))),
                Output::ScheduleTimeout { kind, after_ms } => {
                    let kind = match kind {
                        TimeoutKind::Batch => TimeoutKind::FallbackBatch,
                        TimeoutKind::Sync => TimeoutKind::FallbackSync,
                        other => other,
                    };
                    out.push(Output::ScheduleTimeout { kind, after_ms })
                }
                Output::Commit {
                    payload,
                    justification,
                } => {
                    let Some(id) = F::block_id(&payload, &justification) else {
                        continue;
                    };
                    self.tentative.push(Tentative {
                        payload: payload.clone(),
                        justification: justification.clone(),
                        id,
                        hash: None,
                    });
                    self.awaiting.push_back(Source::Fallback);
                    branch_changed = true;
                    out.push(Output::Commit {
                        payload,
                        justification,
                    });
                }
                Output::Revert { to } => {
                    if to < self.final_height {
                        self.counters.refused_reverts += 1;
                        continue;
                    }
                    let abandoned = self
                        .tentative
                        .split_off((to.0 - self.final_height.0) as usize);
                    branch_changed = true;
                    out.push(Output::Revert { to });
                    self.give_back(abandoned, out);
                }
                Output::Mine(job) => {
                    let job = job.filter(|_| self.mode == Mode::Fallback);
                    out.push(Output::Mine(job));
                }
                Output::Evidence(e) => out.push(Output::Evidence(e)),
                Output::RequestSync { from } => out.push(Output::RequestSync { from }),
                Output::ViewChanged { .. } | Output::Finalize { .. } => {}
            }
        }
        if branch_changed {
            self.offer_branch(out);
        }
    }

    /// The transactions of reverted tentative blocks go back to PBFT (it
    /// may have been told to forget them when they were included).
    fn give_back(&mut self, abandoned: Vec<Tentative>, out: &mut Vec<HOut<F>>) {
        let txs: Vec<_> = abandoned.into_iter().flat_map(|t| t.payload.txs).collect();
        let o = self.pbft.return_transactions(txs);
        self.after_pbft(o, out);
    }

    /// Falls back after enough view changes without a new final block.
    fn maybe_fall_back(&mut self, out: &mut Vec<HOut<F>>) {
        if self.mode != Mode::Pbft {
            // PBFT lost its quorum again while finalizing. Twice the
            // patience: a view change or two while replicas converge on
            // one branch is expected, and mining meanwhile would only
            // move the tip it is converging on.
            if self.mode == Mode::Recovering && self.stalled(2 * self.fallback_after) {
                self.mode = Mode::Fallback;
            }
            return;
        }
        if self.stalled(self.fallback_after) {
            self.fall_back(out);
        }
    }

    /// Whether PBFT timed out `timeouts` times without a new final block:
    /// view changes started, or — for a replica that cannot change views,
    /// too few of the others being in reach — timeouts it complained on
    /// (progress timeouts, view changes without a NEW-VIEW).
    /// PBFT doubles its timeouts per view change in a row (up to 64×,
    /// 128 s at the default 2 s) so that honest replicas end up long
    /// enough in one view. While the fallback keeps the chain going, a
    /// long wait only delays finality once the quorum is back (measured
    /// on real nodes: 87 s after a restart, or never within a minute), so
    /// the hybrid caps PBFT's view-change and progress timers at
    /// [`BACKOFF_CAP`]× the base outside PBFT mode. Timers decide
    /// liveness only, never safety.
    fn bounded_backoff(&self, kind: TimeoutKind, after_ms: u64) -> u64 {
        let capped = matches!(
            kind,
            TimeoutKind::ViewChange { .. } | TimeoutKind::Progress { .. }
        );
        if capped && self.mode != Mode::Pbft {
            after_ms.min(self.backoff_cap_ms)
        } else {
            after_ms
        }
    }

    fn stalled(&self, timeouts: u64) -> bool {
        let c = self.pbft.counters();
        c.view_changes >= self.view_changes_at_final + timeouts
            || c.complaints >= self.complaints_at_final + timeouts
    }

    fn on_sync_blocks(&mut self, blocks: Vec<Block>, out: &mut Vec<HOut<F>>) {
        let (certified, rest): (Vec<Block>, Vec<Block>) = blocks
            .into_iter()
            .partition(|b| !is_tentative(&b.justification));
        if !certified.is_empty() || rest.is_empty() {
            self.pbft_handle(Input::SyncBlocks(certified), out);
        }
        if !rest.is_empty() && self.fb.is_some() {
            let o = self.fb_handle(Input::SyncBlocks(rest));
            self.after_fb(o, out);
        }
    }
}

impl<F: Fallback> Engine for Hybrid<F> {
    type Message = HybridMessage<F::Message>;
    type Record = HybridRecord<F::Record>;

    fn handle(&mut self, now_ms: u64, input: Input<Self::Message>) -> Vec<HOut<F>> {
        self.now_ms = self.now_ms.max(now_ms);
        let mut out = Vec::new();
        match input {
            Input::Start => {
                if let Some(to) = self.truncate_to.take() {
                    out.push(Output::Revert { to });
                }
                if self.last_final_ms == 0 {
                    self.last_final_ms = self.now_ms;
                }
                self.pbft_handle(Input::Start, &mut out);
                if self.fb.is_some() {
                    let o = self.fb_handle(Input::Start);
                    self.after_fb(o, &mut out);
                    self.offer_branch(&mut out);
                }
            }
            Input::Message { from, message } => match message {
                HybridMessage::Pbft(message) => {
                    self.pbft_handle(Input::Message { from, message }, &mut out)
                }
                HybridMessage::Fallback(message) => {
                    if self.fb.is_none() && self.extends_final(&message) {
                        self.follow(&mut out);
                    }
                    if self.fb.is_none() {
                        self.counters.fallback_dropped += 1;
                    } else {
                        let o = self.fb_handle(Input::Message { from, message });
                        self.after_fb(o, &mut out);
                    }
                }
            },
            Input::Transactions(txs) => {
                if self.fb.is_some() {
                    let o = self.fb_handle(Input::Transactions(txs.clone()));
                    self.after_fb(o, &mut out);
                }
                self.pbft_handle(Input::Transactions(txs), &mut out);
            }
            Input::Forget(hashes) => {
                if self.fb.is_some() {
                    let o = self.fb_handle(Input::Forget(hashes.clone()));
                    self.after_fb(o, &mut out);
                }
                self.pbft_handle(Input::Forget(hashes), &mut out);
            }
            Input::Timeout(kind) => match kind {
                TimeoutKind::FallbackBatch | TimeoutKind::FallbackSync | TimeoutKind::Slot => {
                    let kind = match kind {
                        TimeoutKind::FallbackBatch => TimeoutKind::Batch,
                        TimeoutKind::FallbackSync => TimeoutKind::Sync,
                        other => other,
                    };
                    let o = self.fb_handle(Input::Timeout(kind));
                    self.after_fb(o, &mut out);
                }
                other => {
                    self.pbft_handle(Input::Timeout(other), &mut out);
                    // PBFT found the branch not final in time: peers that
                    // missed its lowest block (and so cannot vote for it)
                    // get it again.
                    if matches!(other, TimeoutKind::Progress { .. }) {
                        if let Some(t) = self.tentative.first() {
                            let m = F::block_message(t.payload.clone(), t.justification.clone());
                            out.push(Output::Broadcast(HybridMessage::Fallback(m)));
                        }
                    }
                }
            },
            Input::BlockExecuted { height, block_hash } => {
                let source = self.awaiting.pop_front();
                if source == Some(Source::Pbft) || height <= self.final_height {
                    // A PBFT block, or a fallback block that PBFT made
                    // final before its execution was reported.
                    if height == self.final_height {
                        self.final_hash = block_hash;
                        if source == Some(Source::Pbft) && !self.final_id_known {
                            self.final_id = block_hash;
                        }
                    }
                    self.pbft_handle(Input::BlockExecuted { height, block_hash }, &mut out);
                } else {
                    let i = height.0.saturating_sub(self.final_height.0 + 1) as usize;
                    if let Some(t) = self.tentative.get_mut(i) {
                        t.hash = Some(block_hash);
                    }
                    let o = self.fb_handle(Input::BlockExecuted { height, block_hash });
                    self.after_fb(o, &mut out);
                }
            }
            Input::SyncBlocks(blocks) => self.on_sync_blocks(blocks, &mut out),
            Input::Mined { job, nonce } => {
                let o = self.fb_handle(Input::Mined { job, nonce });
                self.after_fb(o, &mut out);
            }
        }
        self.flush_returned(&mut out);
        out
    }

    fn status(&self) -> EngineStatus {
        let mut s = self.pbft.status();
        s.last_executed = Height(self.final_height.0 + self.tentative.len() as u64);
        s
    }

    fn check_invariants(&self) -> Result<(), String> {
        self.pbft.check_invariants()?;
        if let Some(fb) = &self.fb {
            fb.check_invariants()?;
        }
        if (self.mode == Mode::Pbft) != self.fb.is_none() {
            return Err(format!(
                "mode {} with{} a fallback engine",
                self.mode.name(),
                if self.fb.is_none() { "out" } else { "" }
            ));
        }
        for (i, t) in self.tentative.iter().enumerate() {
            if t.payload.height.0 != self.final_height.0 + 1 + i as u64 {
                return Err(format!(
                    "tentative block {i} is at height {}, above final height {}",
                    t.payload.height, self.final_height
                ));
            }
        }
        Ok(())
    }

    fn final_height(&self) -> Height {
        self.final_height
    }

    fn mode(&self) -> Option<&'static str> {
        Some(self.mode.name())
    }
}

impl<F: Fallback> Protocol for Hybrid<F> {
    const KIND: EngineKind = F::HYBRID_KIND;
    const FAULT_MODEL: FaultModel = FaultModel::Hybrid;

    /// PBFT's configuration, with what the fallback reads too: the
    /// genesis time (PoS slots) and the validators' stakes.
    fn config(genesis: &Genesis, me: ValidatorIndex) -> Result<Config, ConfigError> {
        let mut cfg = <Pbft as Protocol>::config(genesis, me)?;
        cfg.genesis_time_ms = genesis.genesis_time_ms;
        cfg.stakes = genesis.validators.iter().map(|v| v.stake).collect();
        Ok(cfg)
    }

    fn restore(cfg: Config, key: Keypair, restored: Restored<Self::Record>) -> Self {
        Hybrid::restore(cfg, key, restored)
    }
}

/// PBFT falling back to proof of work.
pub type PbftPow = Hybrid<Pow>;
/// PBFT falling back to proof of stake.
pub type PbftPos = Hybrid<Pos>;
