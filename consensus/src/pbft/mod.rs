//! PBFT (Castro & Liskov, OSDI '99 / TOCS 2002) as a deterministic state machine.
//!
//! Layout: [`messages`] (wire types and validity), [`log`] (per-seq vote
//! bookkeeping), [`normal`] (§4.2 normal case, batching, execution order),
//! [`checkpoint`] (§4.3), [`view_change`] (§4.4–§4.5), [`sync`] (catch-up
//! from certified blocks). This file holds the state and the dispatch.
//!
//! This module must never read a clock, a random source, the disk or the
//! network; all of that arrives as [`Input`] and leaves as [`Output`].

pub mod checkpoint;
mod echo;
pub mod future;
pub mod log;
pub mod messages;
pub mod normal;
pub mod record;
pub mod sync;
pub mod view_change;

use crate::config::{Config, ConfigError};
use crate::engine::{
    Engine, EngineStatus, FaultModel, Input, Output, Protocol, Restored, TimeoutKind,
};
use log::Slot;
use messages::{Complaint, NewView, PbftMessage, ViewChange};
use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::{
    Evidence, Height, Payload, SignedTransaction, SignedVote, ValidatorIndex, Vote, VoteKind,
};
use record::{PbftRecord, PreparedRecord};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

/// The output type of the PBFT engine.
pub type PbftOutput = Output<PbftMessage, PbftRecord>;

/// The last stable checkpoint and its proof (§4.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StableCheckpoint {
    /// Its height (the low watermark h).
    pub seq: Height,
    /// The block hash there.
    pub digest: Hash,
    /// Quorum CHECKPOINT votes (empty at genesis).
    pub proof: Vec<SignedVote>,
}

/// Counters of things dropped or noticed, for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PbftCounters {
    /// Messages dropped because a signature or signer check failed.
    pub bad_signature: u64,
    /// Messages dropped as malformed, out of window, or inconsistent.
    pub invalid: u64,
    /// Messages for views already left (stale replays).
    pub stale: u64,
    /// Transactions dropped because the pending queue was full.
    pub pending_overflow: u64,
    /// View changes started by this replica.
    pub view_changes: u64,
    /// Timeouts on which this replica complained: a progress timeout with
    /// work pending and nothing committed, or a view change that got no
    /// NEW-VIEW in time. (A replica cut off with fewer than f others
    /// complains on and on without gathering the f+1 complaints that
    /// change views.)
    pub complaints: u64,
    /// Votes this replica refused to sign because it had signed another digest
    /// for the same slot (only after a restart with an inconsistent log).
    pub refused_double_sign: u64,
    /// Evidence dropped because its offender was already proven faulty.
    pub redundant_evidence: u64,
    /// Messages for later views not kept: beyond the view horizon, or
    /// over their signer's budget (see `future`).
    pub future_dropped: u64,
    /// Pending transactions dropped because their nonce was used
    /// ([`Input::Forget`]).
    pub forgotten: u64,
}

/// The PBFT engine of one validator.
pub struct Pbft {
    pub(crate) cfg: Config,
    pub(crate) key: Keypair,
    /// Current view; while `view_active` is false, a view change to it is under way.
    pub(crate) view: u64,
    pub(crate) view_active: bool,
    pub(crate) slots: BTreeMap<Height, Slot>,
    pub(crate) stable: StableCheckpoint,
    /// CHECKPOINT votes above the stable checkpoint: seq -> votes.
    pub(crate) checkpoint_votes: BTreeMap<Height, log::VoteSet>,
    /// Highest seq each validator has shown it reached — by a CHECKPOINT, or
    /// by a COMMIT beyond our high watermark (to notice we are behind).
    pub(crate) claimed_progress: BTreeMap<ValidatorIndex, Height>,
    /// The last height handed to the driver with `Output::Commit`.
    pub(crate) last_committed: Height,
    /// The last height the driver reported executed.
    pub(crate) last_executed: Height,
    /// The primary's next sequence number to propose.
    pub(crate) next_seq: Height,
    pub(crate) pending: VecDeque<Hash>,
    pub(crate) pending_txs: HashMap<Hash, SignedTransaction>,
    /// Pending transactions already in a proposal of this view that has not
    /// committed (not to be proposed again). Always a subset of
    /// `pending_txs`' keys, so `pending_txs.len() - proposed.len()` is the
    /// number of transactions the primary can still propose.
    pub(crate) proposed: HashSet<Hash>,
    /// Evidence ids already in a proposal of this view.
    pub(crate) proposed_evidence: HashSet<Hash>,
    /// The NEW-VIEW of the view we entered last (resent to stragglers).
    pub(crate) last_new_view: Option<NewView>,
    /// The last (view, time) we answered each straggler for (rate limit).
    pub(crate) straggler_answers: BTreeMap<ValidatorIndex, (u64, u64)>,
    /// COMPLAINTs by the view they are about and sender (views at or
    /// above the one before ours).
    pub(crate) complaints: BTreeMap<u64, BTreeMap<ValidatorIndex, Complaint>>,
    /// VIEW-CHANGE messages by target view and sender.
    pub(crate) view_changes: BTreeMap<u64, BTreeMap<ValidatorIndex, ViewChange>>,
    /// Every vote this validator signed (and did not prune): the save-before-send guard.
    pub(crate) signed: BTreeMap<(VoteKind, u64, Height), SignedVote>,
    pub(crate) known_evidence: BTreeSet<Hash>,
    pub(crate) pending_evidence: Vec<Evidence>,
    pub(crate) faulty: BTreeSet<ValidatorIndex>,
    /// The primary's PRE-PREPARE vote per (view, seq), from PRE-PREPAREs
    /// and ECHOes, verified, and whether this replica echoed it (see `echo`).
    pub(crate) primary_votes: BTreeMap<(u64, Height), (SignedVote, bool)>,
    pub(crate) future: future::FutureBuffer,
    /// The highest view each validator voted in among `future` (to notice
    /// that we missed a view change).
    pub(crate) future_views: BTreeMap<ValidatorIndex, u64>,
    /// View changes since the last commit (timeouts back off with it).
    pub(crate) consecutive_view_changes: u32,
    /// `last_committed` when the progress timer was armed, if it is armed.
    pub(crate) progress_mark: Option<Height>,
    pub(crate) batch_timer_armed: bool,
    pub(crate) batch_due: bool,
    pub(crate) sync_outstanding: bool,
    pub(crate) now_ms: u64,
    pub(crate) counters: PbftCounters,
    /// The first checkpoint height where our own block hash differed from
    /// the stable checkpoint's digest (see `checkpoint`).
    pub(crate) diverged_at: Option<Height>,
    /// Payloads of tentative blocks this replica holds above its last
    /// committed height (PBFT with a fallback, see [`Pbft::set_adoptable`]).
    pub(crate) adoptable: BTreeMap<Height, (Hash, Payload)>,
}

impl std::fmt::Debug for Pbft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pbft")
            .field("me", &self.cfg.me)
            .field("view", &self.view)
            .field("view_active", &self.view_active)
            .field("last_committed", &self.last_committed)
            .field("stable", &self.stable.seq)
            .finish_non_exhaustive()
    }
}

impl Pbft {
    /// A fresh engine at genesis.
    pub fn new(cfg: Config, key: Keypair, genesis_hash: Hash) -> Pbft {
        Pbft::restore(cfg, key, Restored::genesis(genesis_hash))
    }

    /// An engine restarted from persisted records and the store's last block.
    pub fn restore(cfg: Config, key: Keypair, restored: Restored<PbftRecord>) -> Pbft {
        let mut engine = Pbft {
            key,
            view: 0,
            view_active: true,
            slots: BTreeMap::new(),
            stable: StableCheckpoint {
                seq: Height::GENESIS,
                digest: Hash::ZERO,
                proof: Vec::new(),
            },
            checkpoint_votes: BTreeMap::new(),
            claimed_progress: BTreeMap::new(),
            last_committed: restored.last_executed,
            last_executed: restored.last_executed,
            next_seq: restored.last_executed.next(),
            pending: VecDeque::new(),
            pending_txs: HashMap::new(),
            proposed: HashSet::new(),
            proposed_evidence: HashSet::new(),
            last_new_view: None,
            straggler_answers: BTreeMap::new(),
            complaints: BTreeMap::new(),
            view_changes: BTreeMap::new(),
            signed: BTreeMap::new(),
            known_evidence: BTreeSet::new(),
            pending_evidence: Vec::new(),
            faulty: BTreeSet::new(),
            primary_votes: BTreeMap::new(),
            future: future::FutureBuffer::default(),
            future_views: BTreeMap::new(),
            consecutive_view_changes: 0,
            progress_mark: None,
            batch_timer_armed: false,
            batch_due: false,
            sync_outstanding: false,
            now_ms: 0,
            counters: PbftCounters::default(),
            diverged_at: None,
            adoptable: BTreeMap::new(),
            cfg,
        };
        if restored.last_executed == Height::GENESIS {
            engine.stable.digest = restored.last_block_hash;
        }
        for record in restored.records {
            match record {
                PbftRecord::Vote(v) => {
                    engine
                        .signed
                        .insert((v.vote.kind, v.vote.view, v.vote.seq), v);
                }
                PbftRecord::View { view, active } => {
                    if view > engine.view || (view == engine.view && !active) {
                        engine.view = view;
                        engine.view_active = active;
                    } else if view == engine.view && active {
                        engine.view_active = true;
                    }
                }
                PbftRecord::Prepared(PreparedRecord { cert, payload }) => {
                    let (_, seq, digest) = cert.slot();
                    let slot = engine.slots.entry(seq).or_default();
                    slot.payloads.insert(digest, payload);
                    slot.keep_prepared(cert);
                }
                PbftRecord::PreparedDigest(cert) => {
                    engine
                        .slots
                        .entry(cert.slot().1)
                        .or_default()
                        .keep_prepared(cert);
                }
                PbftRecord::StableCheckpoint { seq, digest, proof } => {
                    if seq > engine.stable.seq {
                        engine.stable = StableCheckpoint { seq, digest, proof };
                    }
                }
                PbftRecord::NewView(nv) => {
                    if engine
                        .last_new_view
                        .as_ref()
                        .is_none_or(|l| l.view < nv.view)
                    {
                        engine.last_new_view = Some(nv);
                    }
                }
                PbftRecord::ViewJustification(complaints) => {
                    for c in complaints {
                        engine
                            .complaints
                            .entry(c.view)
                            .or_default()
                            .insert(c.voter, c);
                    }
                }
                PbftRecord::Unused => {}
            }
        }
        let stable = engine.stable.seq;
        for block in restored.recent_blocks {
            let h = block.height();
            if h <= stable || h > restored.last_executed {
                continue;
            }
            if let Some(cert) = block.justification.certificate() {
                let payload = block.payload();
                if cert.seq == h && cert.digest == payload.digest() {
                    let slot = engine.slots.entry(h).or_default();
                    slot.payloads.insert(cert.digest, payload);
                    slot.committed = Some(cert.clone());
                }
            }
        }
        engine.slots.retain(|s, _| *s > stable);
        engine.signed.retain(|(_, _, s), _| *s > stable);
        // A replica may have persisted a stable checkpoint beyond what it
        // executed (2f+1 others proved it while this one lagged). Slots up
        // to it are gone, together with the record of what this replica
        // signed for them, so it must never propose there again: it catches
        // up by sync instead (the simulator found a restarted primary
        // signing a second PRE-PREPARE for the checkpointed slot).
        engine.next_seq = engine.next_seq.max(stable.next());
        // A restarted primary never proposes a second payload for a seq it
        // already pre-prepared in this view.
        let view = engine.view;
        if let Some(max_pp) = engine
            .signed
            .keys()
            .filter(|(k, v, _)| *k == VoteKind::PrePrepare && *v == view)
            .map(|(_, _, s)| *s)
            .max()
        {
            engine.next_seq = engine.next_seq.max(max_pp.next());
        }
        engine
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Drop and event counters.
    pub fn counters(&self) -> &PbftCounters {
        &self.counters
    }

    /// Messages for later views held, and their encoded bytes (bounded
    /// per signer: see `future`).
    pub fn future_buffered(&self) -> (usize, usize) {
        self.future.size()
    }

    /// Validators this replica treats as faulty (proven equivocators).
    pub fn faulty(&self) -> &BTreeSet<ValidatorIndex> {
        &self.faulty
    }

    pub(crate) fn me(&self) -> ValidatorIndex {
        self.cfg.me
    }

    pub(crate) fn is_primary(&self) -> bool {
        self.cfg.primary(self.view) == self.me()
    }

    /// The high watermark H = h + window (§4.2).
    pub(crate) fn high_watermark(&self) -> Height {
        Height(self.stable.seq.0 + self.cfg.params.watermark_window)
    }

    pub(crate) fn in_window(&self, seq: Height) -> bool {
        seq > self.stable.seq && seq <= self.high_watermark()
    }

    /// Signs a vote unless a different digest was already signed for its slot
    /// (save before send: the `Persist` goes out before the message).
    pub(crate) fn sign_vote(
        &mut self,
        vote: Vote,
        out: &mut Vec<PbftOutput>,
    ) -> Option<SignedVote> {
        let key = (vote.kind, vote.view, vote.seq);
        if let Some(prev) = self.signed.get(&key) {
            if prev.vote.digest == vote.digest {
                return Some(*prev);
            }
            self.counters.refused_double_sign += 1;
            return None;
        }
        let signed = vote.sign(&self.cfg.chain_id, &self.key);
        self.signed.insert(key, signed);
        out.push(Output::Persist(PbftRecord::Vote(signed)));
        Some(signed)
    }

    /// Whether `evidence` proves nothing new: its offender is already
    /// proven faulty (a piece not seen before is counted as redundant).
    fn is_redundant(&mut self, evidence: &Evidence) -> bool {
        if !self.faulty.contains(&evidence.offender()) {
            return false;
        }
        if !self.known_evidence.contains(&evidence.id()) {
            self.counters.redundant_evidence += 1;
        }
        true
    }

    /// Records evidence once per offender: persist/gossip it, mark the
    /// offender faulty, and leave the view if the offender is its primary.
    /// Later evidence against a validator already proven faulty proves
    /// nothing new and is dropped (counted): a Byzantine validator can sign
    /// any number of distinct pieces against itself, and each would cost a
    /// synced write, a broadcast and room in the next proposal.
    pub(crate) fn on_evidence_found(&mut self, evidence: Evidence, out: &mut Vec<PbftOutput>) {
        if self.is_redundant(&evidence) {
            return;
        }
        let offender = evidence.offender();
        self.known_evidence.insert(evidence.id());
        self.faulty.insert(offender);
        self.pending_evidence.push(evidence.clone());
        out.push(Output::Evidence(evidence.clone()));
        out.push(Output::Broadcast(PbftMessage::Evidence(evidence)));
        if self.view_active && offender == self.cfg.primary(self.view) && offender != self.me() {
            // An equivocating primary cannot be trusted to finish its view.
            self.start_view_change(self.view + 1, out);
        }
    }

    /// Arms the progress timer if there is work that should commit and it is not armed.
    pub(crate) fn arm_progress_timer(&mut self, out: &mut Vec<PbftOutput>) {
        if self.progress_mark.is_none() && self.view_active && self.has_pending_work() {
            self.progress_mark = Some(self.last_committed);
            out.push(Output::ScheduleTimeout {
                kind: TimeoutKind::Progress { view: self.view },
                after_ms: self.timeout_ms(),
            });
        }
    }

    /// The view-change timeout, doubled per consecutive view change (§4.5.2).
    pub(crate) fn timeout_ms(&self) -> u64 {
        let shift = self.consecutive_view_changes.min(6);
        self.cfg
            .params
            .view_change_timeout_ms
            .saturating_mul(1 << shift)
    }

    pub(crate) fn has_pending_work(&self) -> bool {
        // (Tentative blocks to finalize are work too: with nothing else
        // pending, a replica holding them must still see them final.)
        !self.pending_txs.is_empty()
            || !self.adoptable.is_empty()
            || self
                .slots
                .range(self.last_committed.next()..)
                .any(|(_, s)| !s.pre_prepares.is_empty() || s.committed.is_some())
    }

    fn on_timeout(&mut self, kind: TimeoutKind, out: &mut Vec<PbftOutput>) {
        match kind {
            TimeoutKind::Batch => {
                self.batch_timer_armed = false;
                self.batch_due = true;
                self.maybe_propose(out);
            }
            TimeoutKind::Progress { view } => {
                // A timer armed in an earlier view is stale; it must not
                // consume the current view's mark.
                if view != self.view || !self.view_active {
                    return;
                }
                let Some(mark) = self.progress_mark.take() else {
                    return;
                };
                if self.last_committed > mark {
                    // Progress was made; keep watching what is still pending.
                    self.arm_progress_timer(out);
                } else if self.has_pending_work() {
                    // Maybe the others committed it and we missed it: ask.
                    // (The simulator found replicas one block behind an idle
                    // cluster changing views alone forever.)
                    self.request_sync(out);
                    // PBFT §4.4: the request did not execute in time. Say so
                    // and keep working in this view: only f+1 complaints
                    // (one honest at least) end it, for everyone who sees
                    // them. Complain again each time the timer fires.
                    self.complain(self.view, out);
                    self.arm_progress_timer(out);
                }
            }
            TimeoutKind::ViewChange { view } => {
                if view == self.view && !self.view_active {
                    self.request_sync(out);
                    if let Some(higher) = self.view_is_abandoned(view) {
                        // Too few want `view` and enough have moved above it
                        // that it can never gather a quorum: join the lowest
                        // view someone is already in (never a fresh one, so
                        // replicas do not chase each other up the views).
                        // The simulator found two honest replicas resending
                        // VIEW-CHANGE(v) forever while the third, which had
                        // crashed and so lost its own VIEW-CHANGE(v), waited
                        // in v+1.
                        self.start_view_change(higher, out);
                    } else {
                        // No NEW-VIEW in time. Resend our VIEW-CHANGE (it
                        // may have been lost), with the complaints that
                        // justify it now, and complain about `view`: f+1
                        // complaints (one honest at least) move everyone to
                        // the next view together, so a replica never climbs
                        // views alone (§4.5.2 starts this timer only at a
                        // quorum for the same reason).
                        // If evidence against the previous view's primary
                        // moved us here, resend it: it moves the others as
                        // surely as f+1 complaints, and a replica that was
                        // cut off when we first sent it would otherwise run
                        // that view on while we wait alone (the simulator
                        // found that with Twins, seeds 8882 and 11428).
                        if let Some(prev) = view.checked_sub(1) {
                            let primary = self.cfg.primary(prev);
                            if let Some(e) = self
                                .pending_evidence
                                .iter()
                                .find(|e| e.offender() == primary)
                            {
                                out.push(Output::Broadcast(PbftMessage::Evidence(e.clone())));
                            }
                        }
                        let justification = self.justification_for(view);
                        if let Some(own) =
                            self.view_changes.get(&view).and_then(|m| m.get(&self.me()))
                        {
                            let mut own = own.clone();
                            own.justification = justification;
                            out.push(Output::Broadcast(PbftMessage::ViewChange(own)));
                        }
                        self.complain(view, out);
                        if self.view == view && !self.view_active {
                            out.push(Output::ScheduleTimeout {
                                kind: TimeoutKind::ViewChange { view },
                                after_ms: self.timeout_ms(),
                            });
                        }
                    }
                }
            }
            TimeoutKind::Sync => {
                self.sync_outstanding = false;
                self.check_behind(out);
            }
            TimeoutKind::Slot | TimeoutKind::FallbackBatch | TimeoutKind::FallbackSync => {}
        }
    }

    fn on_message(
        &mut self,
        from: ValidatorIndex,
        message: PbftMessage,
        out: &mut Vec<PbftOutput>,
    ) {
        match message {
            PbftMessage::PrePrepare(pp) => self.on_pre_prepare(from, pp, out),
            PbftMessage::Prepare(v) => self.on_prepare(from, v, out),
            PbftMessage::Commit(v) => self.on_commit(from, v, out),
            PbftMessage::Checkpoint(v) => self.on_checkpoint(v, out),
            PbftMessage::ViewChange(vc) => self.on_view_change(vc, out),
            PbftMessage::NewView(nv) => self.on_new_view(nv, out),
            PbftMessage::Complaint(c) => self.on_complaint(c, out),
            PbftMessage::Echo(v) => self.on_echo(v, out),
            PbftMessage::Evidence(e) => {
                // Dropped before its two signatures are checked.
                if self.is_redundant(&e) {
                    return;
                }
                if e.verify(&self.cfg.chain_id, &self.cfg.validators).is_ok() {
                    self.on_evidence_found(e, out);
                } else {
                    self.counters.invalid += 1;
                }
            }
        }
    }

    /// Keeps a message for a view this replica has not reached yet.
    pub(crate) fn buffer_future(
        &mut self,
        from: ValidatorIndex,
        message: PbftMessage,
        out: &mut Vec<PbftOutput>,
    ) {
        let vote = match &message {
            PbftMessage::PrePrepare(pp) => pp.vote.vote,
            PbftMessage::Prepare(v) | PbftMessage::Commit(v) => v.vote,
            _ => return,
        };
        let within = vote.view <= self.view.saturating_add(future::VIEW_HORIZON);
        if !(within && self.future.push(from, vote.voter, message)) {
            self.counters.future_dropped += 1;
        }
        // The vote is verified: it says its signer is in that view, even
        // when the message itself was not kept.
        if vote.view > self.view && vote.voter != self.me() {
            let h = self.future_views.entry(vote.voter).or_default();
            *h = (*h).max(vote.view);
            self.maybe_follow_higher_view(out);
        }
    }

    /// A replica that missed a view change (it was down, or cut off, while
    /// the others moved on) sees votes of a later view. Once f+1 validators
    /// (so at least one honest) vote in views at or above some view w above
    /// ours, ask for w: our VIEW-CHANGE makes those in w send us their
    /// NEW-VIEW (see `help_straggler`). Like §4.5.2's rule for VIEW-CHANGEs,
    /// applied to the (verified) votes we had to buffer.
    fn maybe_follow_higher_view(&mut self, out: &mut Vec<PbftOutput>) {
        let current = self.view;
        let mut views: Vec<u64> = self
            .future_views
            .values()
            .copied()
            .filter(|v| *v > current)
            .collect();
        views.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(&target) = views.get(self.cfg.quorums.weak - 1) {
            self.start_view_change(target, out);
        }
    }

    /// Re-handles buffered messages after entering a view.
    pub(crate) fn replay_future(&mut self, out: &mut Vec<PbftOutput>) {
        let buffered = self.future.take();
        self.future_views.clear();
        for (from, message) in buffered {
            self.on_message(from, message, out);
        }
    }

    /// Drops transactions that can no longer apply (see [`Input::Forget`]).
    fn forget(&mut self, hashes: &[Hash]) {
        for h in hashes {
            if self.pending_txs.remove(h).is_some() {
                self.proposed.remove(h);
                self.counters.forgotten += 1;
            }
        }
    }

    fn on_transactions(&mut self, txs: Vec<SignedTransaction>, out: &mut Vec<PbftOutput>) {
        for tx in txs {
            let hash = tx.hash();
            if self.pending_txs.contains_key(&hash) {
                continue;
            }
            if self.pending_txs.len() >= self.cfg.max_pending_txs {
                self.counters.pending_overflow += 1;
                continue;
            }
            self.pending_txs.insert(hash, tx);
            self.pending.push_back(hash);
        }
        self.maybe_propose(out);
        self.arm_progress_timer(out);
    }

    fn on_start(&mut self, out: &mut Vec<PbftOutput>) {
        // Whatever was committed while we were down: ask, verify, apply.
        // On an idle network nothing else would tell us we are behind. A
        // one-off question (no outstanding flag, no timer): if it is lost,
        // the usual signs of being behind still trigger a sync.
        if self.stable.seq > self.last_committed {
            // Provably behind (a stable checkpoint we never executed up to):
            // keep asking until the blocks arrive.
            self.request_sync(out);
        } else {
            out.push(Output::RequestSync {
                from: self.last_committed.next(),
            });
        }
        self.resend_checkpoints(out);
        if !self.view_active {
            // Resend our VIEW-CHANGE (rebuilt from persisted certificates; the
            // same content gives the same deterministic signature).
            self.start_view_change(self.view, out);
        } else {
            self.arm_progress_timer(out);
        }
    }
}

impl Protocol for Pbft {
    const KIND: phalanx_ledger::EngineKind = phalanx_ledger::EngineKind::Pbft;
    const FAULT_MODEL: FaultModel = FaultModel::Byzantine;

    fn config(
        genesis: &phalanx_ledger::Genesis,
        me: ValidatorIndex,
    ) -> Result<Config, ConfigError> {
        Config::from_genesis(genesis, me)
    }

    fn restore(cfg: Config, key: Keypair, restored: Restored<PbftRecord>) -> Pbft {
        Pbft::restore(cfg, key, restored)
    }
}

impl Engine for Pbft {
    type Message = PbftMessage;
    type Record = PbftRecord;

    fn handle(&mut self, now_ms: u64, input: Input<PbftMessage>) -> Vec<PbftOutput> {
        self.now_ms = self.now_ms.max(now_ms);
        let mut out = Vec::new();
        match input {
            Input::Start => self.on_start(&mut out),
            Input::Message { from, message } => self.on_message(from, message, &mut out),
            Input::Transactions(txs) => self.on_transactions(txs, &mut out),
            Input::Timeout(kind) => self.on_timeout(kind, &mut out),
            Input::BlockExecuted { height, block_hash } => {
                self.on_block_executed(height, block_hash, &mut out)
            }
            Input::SyncBlocks(blocks) => self.on_sync_blocks(blocks, &mut out),
            Input::Forget(hashes) => self.forget(&hashes),
            // Quorum engines never ask for mining.
            Input::Mined { .. } => {}
        }
        debug_assert!(
            self.check_invariants().is_ok(),
            "{:?}",
            self.check_invariants()
        );
        out
    }

    fn status(&self) -> EngineStatus {
        EngineStatus {
            view: self.view,
            primary: self.cfg.primary(self.view),
            view_changing: !self.view_active,
            last_executed: self.last_executed,
            stable_checkpoint: self.stable.seq,
            pending_txs: self.pending_txs.len(),
            diverged_at: self.diverged_at,
        }
    }

    fn check_invariants(&self) -> Result<(), String> {
        // What a Byzantine validator can make this replica hold is bounded
        // (issue 18): the simulator checks it after every step.
        let n = self.cfg.n();
        if self.pending_evidence.len() > n {
            return Err(format!(
                "{} pieces of evidence pending for {n} validators",
                self.pending_evidence.len()
            ));
        }
        if !self.future.within_budget() {
            return Err(format!(
                "messages for later views over their budget: {:?}",
                self.future.size()
            ));
        }
        if self.view_changes.len() > 65 || self.view_changes.values().any(|m| m.len() > n) {
            return Err("more VIEW-CHANGEs held than views × validators allow".into());
        }
        if self.last_executed > self.last_committed {
            return Err(format!(
                "executed {} beyond committed {}",
                self.last_executed, self.last_committed
            ));
        }
        if let Some((s, _)) = self.slots.iter().next() {
            if *s <= self.stable.seq {
                return Err(format!(
                    "slot {s} kept below stable checkpoint {}",
                    self.stable.seq
                ));
            }
        }
        for (seq, slot) in &self.slots {
            if let Some(cert) = &slot.committed {
                if cert.seq != *seq || cert.commits.len() < self.cfg.quorums.quorum {
                    return Err(format!("slot {seq} committed without a quorum certificate"));
                }
            }
            if let Some(p) = &slot.prepared {
                if p.slot().1 != *seq {
                    return Err(format!(
                        "slot {seq} holds a prepared certificate for another seq"
                    ));
                }
            }
        }
        if self.pending.len() < self.pending_txs.len() {
            return Err("pending order lost a transaction".into());
        }
        if let Some(h) = self
            .proposed
            .iter()
            .find(|h| !self.pending_txs.contains_key(*h))
        {
            return Err(format!("proposed set holds {h}, which is not pending"));
        }
        for ((kind, view, seq), v) in &self.signed {
            if v.vote.kind != *kind
                || v.vote.view != *view
                || v.vote.seq != *seq
                || v.vote.voter != self.me()
            {
                return Err("signed-vote index inconsistent".into());
            }
        }
        Ok(())
    }
}
