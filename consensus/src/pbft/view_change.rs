//! View changes (PBFT §4.4) and their liveness rules (§4.5.2).
//!
//! A replica that gives up on its view sends VIEW-CHANGE with its stable
//! checkpoint proof and its prepared certificates. The new primary collects a
//! quorum of them and sends NEW-VIEW with the pre-prepares that carry every
//! possibly-committed request into the new view (null blocks for gaps).
//! Replicas accept NEW-VIEW only if recomputing it from the same VIEW-CHANGEs
//! gives the same pre-prepares.

use super::messages::{
    CommittedProof, Complaint, NewView, PbftMessage, PreparedCert, ViewChange, ViewChangeBody,
};
use super::record::PbftRecord;
use super::{Pbft, PbftOutput, StableCheckpoint};
use crate::config::Config;
use crate::engine::{Output, TimeoutKind};
use phalanx_crypto::Hash;
use phalanx_ledger::{Height, Payload, SignedVote, ValidatorIndex, Vote, VoteKind};
use std::collections::{BTreeMap, BTreeSet};

/// Complaints about views further than this above ours are dropped (bounded memory).
const MAX_VIEWS_AHEAD: u64 = 64;

/// What a NEW-VIEW must contain, computed from its VIEW-CHANGEs (§4.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewViewPlan {
    /// The latest stable checkpoint among the view changes (min-s) and its proof.
    pub checkpoint: StableCheckpoint,
    /// For each seq in (min-s, max-s]: the digest to re-propose (of the
    /// commit certificate, else the prepared certificate of the highest
    /// view) — or a null block, whose payload everyone computes.
    pub entries: Vec<(Height, Hash, Option<Payload>)>,
}

/// The null block for a gap at `seq` in `view`: no transactions, proposed by
/// the new primary, timestamp 0 so that every replica computes the same digest.
pub fn null_payload(cfg: &Config, view: u64, seq: Height) -> Payload {
    Payload {
        chain_id: cfg.chain_id.clone(),
        height: seq,
        round: view,
        proposer: cfg.primary(view),
        timestamp_ms: 0,
        txs: Vec::new(),
        evidence: Vec::new(),
    }
}

/// Computes the NEW-VIEW content for `view` from (already verified) VIEW-CHANGEs.
pub fn plan_new_view(cfg: &Config, view: u64, vcs: &[ViewChange]) -> NewViewPlan {
    let best = vcs.iter().max_by_key(|vc| vc.body.stable_seq);
    let checkpoint = best.map_or(
        StableCheckpoint {
            seq: Height::GENESIS,
            digest: Hash::ZERO,
            proof: Vec::new(),
        },
        |vc| StableCheckpoint {
            seq: vc.body.stable_seq,
            digest: vc.body.stable_digest,
            proof: vc.body.checkpoint_proof.clone(),
        },
    );
    let min_s = checkpoint.seq;
    // For each seq: a committed block if any view change proves one (it is
    // decided; with at most f faulty no other digest can hold a certificate),
    // else the prepared certificate with the highest view. Ties and the
    // impossible case of two commit certificates resolve by (view, digest)
    // so every replica recomputes the same plan.
    let mut committed: BTreeMap<Height, &CommittedProof> = BTreeMap::new();
    for c in vcs.iter().flat_map(|vc| &vc.body.committed) {
        let seq = c.cert.seq;
        if seq <= min_s {
            continue;
        }
        let key = (c.cert.view, c.cert.digest);
        if committed
            .get(&seq)
            .is_none_or(|d| (d.cert.view, d.cert.digest) < key)
        {
            committed.insert(seq, c);
        }
    }
    let mut chosen: BTreeMap<Height, &PreparedCert> = BTreeMap::new();
    for cert in vcs.iter().flat_map(|vc| &vc.body.prepared) {
        let (v, seq, d) = cert.slot();
        if seq <= min_s {
            continue;
        }
        if chosen
            .get(&seq)
            .is_none_or(|c| (c.slot().0, c.slot().2) < (v, d))
        {
            chosen.insert(seq, cert);
        }
    }
    let max_s = chosen
        .keys()
        .chain(committed.keys())
        .max()
        .copied()
        .unwrap_or(min_s);
    let entries = (min_s.0 + 1..=max_s.0)
        .map(Height)
        .map(|seq| match (committed.get(&seq), chosen.get(&seq)) {
            (Some(c), _) => (seq, c.cert.digest, None),
            (None, Some(cert)) => (seq, cert.slot().2, None),
            (None, None) => {
                let p = null_payload(cfg, view, seq);
                (seq, p.digest(), Some(p))
            }
        })
        .collect();
    NewViewPlan {
        checkpoint,
        entries,
    }
}

impl Pbft {
    /// Moves to `target` and sends VIEW-CHANGE (§4.4). Never moves back.
    pub(crate) fn start_view_change(&mut self, target: u64, out: &mut Vec<PbftOutput>) {
        if target < self.view || (target == self.view && self.view_active) {
            return;
        }
        if target == self.view && self.has_own_view_change(target) {
            return;
        }
        self.view = target;
        self.view_active = false;
        self.progress_mark = None;
        self.batch_due = false;
        self.counters.view_changes += 1;
        out.push(Output::Persist(PbftRecord::View {
            view: target,
            active: false,
        }));
        // P of the paper, plus commit certificates for committed slots (which
        // a replica that caught up by sync may hold without having prepared).
        // Only within the window, as receivers check.
        let top = Height(self.stable.seq.0 + self.cfg.params.watermark_window);
        let mut prepared: Vec<PreparedCert> = Vec::new();
        let mut committed: Vec<CommittedProof> = Vec::new();
        for (_, slot) in self.slots.range(self.stable.seq.next()..=top) {
            if let Some(cert) = slot.committed.as_ref() {
                if cert.view < target {
                    committed.push(CommittedProof { cert: cert.clone() });
                    continue;
                }
            }
            if let Some(p) = slot.prepared.as_ref().filter(|p| p.slot().0 < target) {
                prepared.push(p.clone());
            }
        }
        let body = ViewChangeBody {
            new_view: target,
            stable_seq: self.stable.seq,
            stable_digest: self.stable.digest,
            checkpoint_proof: self.stable.proof.clone(),
            prepared,
            committed,
            voter: self.me(),
        };
        let mut vc = ViewChange::sign(body, &self.cfg.chain_id, &self.key);
        self.complaints.retain(|v, _| *v + 1 >= target);
        vc.justification = self.justification_for(target);
        if !vc.justification.is_empty() {
            out.push(Output::Persist(PbftRecord::ViewJustification(
                vc.justification.clone(),
            )));
        }
        let me = self.me();
        self.view_changes
            .entry(target)
            .or_default()
            .insert(me, vc.clone());
        out.push(Output::Broadcast(PbftMessage::ViewChange(vc)));
        out.push(Output::ScheduleTimeout {
            kind: TimeoutKind::ViewChange { view: target },
            after_ms: self.timeout_ms(),
        });
        self.consecutive_view_changes = self.consecutive_view_changes.saturating_add(1);
        self.maybe_send_new_view(out);
    }

    /// f+1 complaints about the view before `target`, if we hold them: what
    /// makes a VIEW-CHANGE to `target` one the others join.
    pub(crate) fn justification_for(&self, target: u64) -> Vec<Complaint> {
        let Some(before) = target.checked_sub(1) else {
            return Vec::new();
        };
        match self.complaints.get(&before) {
            Some(m) if m.len() >= self.cfg.quorums.weak => {
                m.values().take(self.cfg.quorums.weak).cloned().collect()
            }
            _ => Vec::new(),
        }
    }

    /// Our timer fired in `view`: broadcast our complaint (again, if we
    /// sent it before: it may have been lost) and leave the view if f+1
    /// validators now complain about it.
    pub(crate) fn complain(&mut self, view: u64, out: &mut Vec<PbftOutput>) {
        self.counters.complaints += 1;
        let me = self.me();
        let own = self
            .complaints
            .get(&view)
            .and_then(|m| m.get(&me))
            .cloned()
            .unwrap_or_else(|| Complaint::sign(view, me, &self.cfg.chain_id, &self.key));
        self.complaints
            .entry(view)
            .or_default()
            .insert(me, own.clone());
        out.push(Output::Broadcast(PbftMessage::Complaint(own)));
        self.maybe_leave(view, out);
    }

    /// Keeps a verified complaint about our view or a later one; false if
    /// it is stale, known or badly signed. A complaint from a validator
    /// proven faulty still counts: f+1 complaints mean one honest replica
    /// whoever the f others are, and every replica must count the same
    /// justification the same way. (The simulator found Twins splitting the
    /// honest replicas: one that did not hold the evidence moved on with
    /// the twin's complaint, the others ignored the same complaint.)
    fn record_complaint(&mut self, c: Complaint) -> bool {
        if c.view.saturating_add(1) < self.view
            || c.view > self.view.saturating_add(MAX_VIEWS_AHEAD)
            || self
                .complaints
                .get(&c.view)
                .is_some_and(|m| m.contains_key(&c.voter))
        {
            return false;
        }
        if c.verify(&self.cfg).is_err() {
            self.counters.bad_signature += 1;
            return false;
        }
        self.complaints
            .entry(c.view)
            .or_default()
            .insert(c.voter, c);
        true
    }

    /// A COMPLAINT from another replica. About an earlier view while we
    /// run a later one: the sender missed the NEW-VIEW, send it ours.
    pub(crate) fn on_complaint(&mut self, c: Complaint, out: &mut Vec<PbftOutput>) {
        if c.view < self.view {
            self.counters.stale += 1;
            if self.view_active && c.voter != self.me() && self.cfg.key(c.voter).is_some() {
                self.send_new_view_to(c.voter, c.view, out);
            }
            return;
        }
        let view = c.view;
        if self.record_complaint(c) {
            self.maybe_leave(view, out);
        }
    }

    /// f+1 validators complained about `view` (our view or a later one):
    /// at least one honest replica saw it fail, so move past it.
    fn maybe_leave(&mut self, view: u64, out: &mut Vec<PbftOutput>) {
        if view < self.view {
            return;
        }
        let count = self.complaints.get(&view).map_or(0, BTreeMap::len);
        if count >= self.cfg.quorums.weak {
            self.start_view_change(view + 1, out);
        }
    }

    /// Sends the NEW-VIEW of our (active) view to a replica stuck in view
    /// `their_view`, at most once per view-change timeout.
    fn send_new_view_to(&mut self, to: ValidatorIndex, their_view: u64, out: &mut Vec<PbftOutput>) {
        let gap = self.cfg.params.view_change_timeout_ms;
        if self
            .straggler_answers
            .get(&to)
            .is_some_and(|(v, at)| *v == their_view && self.now_ms < at.saturating_add(gap))
        {
            return;
        }
        if let Some(nv) = self
            .last_new_view
            .as_ref()
            .filter(|nv| nv.view == self.view)
        {
            self.straggler_answers.insert(to, (their_view, self.now_ms));
            out.push(Output::Send {
                to,
                message: PbftMessage::NewView(nv.clone()),
            });
        }
    }

    /// A replica asks for a view we already left (or entered): it missed
    /// messages. Send it what moves it on: the NEW-VIEW of the view we are
    /// in (when it asks for that view or an earlier one: a NEW-VIEW for a
    /// later view than its own moves it there directly; the NEW-VIEW is
    /// persisted, so this works after both restarted), or our own
    /// VIEW-CHANGE for the view it wants (with its own and
    /// the others' resends that completes its quorum, so its timer can move
    /// it up instead of waiting for f+1 of us above it). Only messages we
    /// already signed are sent, at most one per straggler and view per
    /// view-change timeout, and none to a replica we know moved past that
    /// view (two replicas that both left a view must not bounce their old
    /// VIEW-CHANGEs back and forth: the simulator found that storm).
    fn help_straggler(&mut self, vc: &ViewChange, out: &mut Vec<PbftOutput>) {
        let (to, target) = (vc.body.voter, vc.body.new_view);
        if to == self.me() || self.cfg.key(to).is_none() {
            return;
        }
        let moved_on = self
            .view_changes
            .range(target + 1..)
            .any(|(_, m)| m.contains_key(&to));
        if moved_on {
            return;
        }
        // Only for a request its sender really signed: otherwise anyone
        // could make us send on behalf of a validator that never asked.
        if vc.verify_signature(&self.cfg).is_err() {
            self.counters.bad_signature += 1;
            return;
        }
        if target <= self.view && self.view_active {
            self.send_new_view_to(to, target, out);
            return;
        }
        let gap = self.cfg.params.view_change_timeout_ms;
        if self
            .straggler_answers
            .get(&to)
            .is_some_and(|(v, at)| *v == target && self.now_ms < at.saturating_add(gap))
        {
            return;
        }
        self.straggler_answers.insert(to, (target, self.now_ms));
        if let Some(own) = self
            .view_changes
            .get(&target)
            .and_then(|m| m.get(&self.me()))
        {
            out.push(Output::Send {
                to,
                message: PbftMessage::ViewChange(own.clone()),
            });
        }
    }

    /// `Some(w)` when the replicas that want `view` or a later view make up a
    /// quorum but those that want `view` itself do not: the ones above never
    /// come back (views only grow), so `view` cannot complete. `w` is the
    /// lowest later view some other replica asked for.
    pub(crate) fn view_is_abandoned(&self, view: u64) -> Option<u64> {
        let here = self.view_changes.get(&view).map_or(0, BTreeMap::len);
        if here >= self.cfg.quorums.quorum {
            return None;
        }
        let mut voters: BTreeSet<ValidatorIndex> = BTreeSet::new();
        let mut lowest_above = None;
        for (v, m) in self.view_changes.range(view..) {
            voters.extend(m.keys().copied());
            // Only a view an honest replica is known to be in: f+1 others
            // there, or f+1 complaints about the view before it. A view
            // only Byzantine validators claim would leave us alone in it
            // (the simulator found a forged VIEW-CHANGE to a far view
            // pulling a replica past the view the others then entered).
            let others = m.keys().filter(|voter| **voter != self.me()).count();
            let justified =
                others >= self.cfg.quorums.weak || !self.justification_for(*v).is_empty();
            if *v > view && others > 0 && justified {
                lowest_above.get_or_insert(*v);
            }
        }
        lowest_above.filter(|_| voters.len() >= self.cfg.quorums.quorum)
    }

    fn has_own_view_change(&self, view: u64) -> bool {
        self.view_changes
            .get(&view)
            .is_some_and(|m| m.contains_key(&self.me()))
    }

    /// §4.4 / §4.5.2: collect VIEW-CHANGEs; join on f+1 for higher views;
    /// the new primary answers a quorum with NEW-VIEW.
    pub(crate) fn on_view_change(&mut self, vc: ViewChange, out: &mut Vec<PbftOutput>) {
        let target = vc.body.new_view;
        if target < self.view || (target == self.view && self.view_active) {
            self.counters.stale += 1;
            self.help_straggler(&vc, out);
            return;
        }
        if self
            .view_changes
            .get(&target)
            .is_some_and(|m| m.contains_key(&vc.body.voter))
        {
            return;
        }
        if self.view_changes.len() > 64 && !self.view_changes.contains_key(&target) {
            // Bounded: keep only the nearest views.
            let far = *self.view_changes.keys().next_back().unwrap_or(&target);
            if target > far {
                return;
            }
            self.view_changes.remove(&far);
        }
        if let Err(_e) = vc.verify(&self.cfg) {
            self.counters.bad_signature += 1;
            return;
        }
        if self.faulty.contains(&vc.body.voter) {
            return;
        }
        // Its justification: f+1 complaints about the view before `target`.
        // They end that view for us too, so a replica that moved on is
        // never left ahead alone.
        let before = target.saturating_sub(1);
        for c in vc.justification.iter().take(self.cfg.validators.len()) {
            if c.view == before {
                self.record_complaint(c.clone());
            }
        }
        self.view_changes
            .entry(target)
            .or_default()
            .insert(vc.body.voter, vc);
        if self.complaints.get(&before).map_or(0, BTreeMap::len) >= self.cfg.quorums.weak {
            self.maybe_leave(before, out);
            if self.view >= target {
                self.maybe_send_new_view(out);
                return;
            }
        }
        // §4.5.2: f+1 replicas want views above ours: join the smallest.
        let current = self.view;
        let mut voters = BTreeSet::new();
        let mut smallest = None;
        for (v, m) in self.view_changes.range(current + 1..) {
            for voter in m.keys() {
                if *voter != self.me() {
                    voters.insert(*voter);
                }
            }
            smallest.get_or_insert(*v);
        }
        if voters.len() >= self.cfg.quorums.weak {
            if let Some(v) = smallest {
                self.start_view_change(v, out);
            }
        }
        self.maybe_send_new_view(out);
    }

    /// The new primary sends NEW-VIEW once it has a quorum of VIEW-CHANGEs
    /// for the view it is moving to.
    fn maybe_send_new_view(&mut self, out: &mut Vec<PbftOutput>) {
        let view = self.view;
        if self.view_active || self.cfg.primary(view) != self.me() {
            return;
        }
        let Some(vcs) = self.view_changes.get(&view) else {
            return;
        };
        if vcs.len() < self.cfg.quorums.quorum || !vcs.contains_key(&self.me()) {
            return;
        }
        // Exactly a quorum (§4.4's V): our own and the others' in index
        // order; any quorum gives a safe plan, and a fixed size keeps a
        // NEW-VIEW bounded (a backup refuses any other count).
        // Justifications stay out of it: the view change is done.
        let me = self.me();
        let vcs: Vec<ViewChange> = vcs
            .get(&me)
            .into_iter()
            .chain(vcs.iter().filter(|(v, _)| **v != me).map(|(_, vc)| vc))
            .take(self.cfg.quorums.quorum)
            .map(|vc| ViewChange {
                justification: Vec::new(),
                ..vc.clone()
            })
            .collect();
        let plan = plan_new_view(&self.cfg, view, &vcs);
        let mut pre_prepares = Vec::with_capacity(plan.entries.len());
        for (seq, digest, _) in &plan.entries {
            let vote = Vote {
                kind: VoteKind::PrePrepare,
                view,
                seq: *seq,
                digest: *digest,
                voter: self.me(),
            };
            match self.sign_vote(vote, out) {
                Some(signed) => pre_prepares.push(signed),
                // Cannot happen for a fresh view; never sign a conflicting pre-prepare.
                None => return,
            }
        }
        let nv = NewView::sign(view, vcs, pre_prepares, &self.cfg.chain_id, &self.key);
        out.push(Output::Broadcast(PbftMessage::NewView(nv.clone())));
        self.enter_view(nv, plan, out);
    }

    /// §4.4: a backup accepts NEW-VIEW if it is signed by the new primary,
    /// carries a quorum of valid VIEW-CHANGEs for the view, and its
    /// pre-prepares are exactly what recomputation gives.
    pub(crate) fn on_new_view(&mut self, nv: NewView, out: &mut Vec<PbftOutput>) {
        if nv.view < self.view || (nv.view == self.view && self.view_active) || nv.view == 0 {
            self.counters.stale += 1;
            return;
        }
        match self.verify_new_view(&nv) {
            Ok(plan) => {
                if nv.view > self.view {
                    out.push(Output::Persist(PbftRecord::View {
                        view: nv.view,
                        active: false,
                    }));
                    self.view = nv.view;
                }
                self.enter_view(nv, plan, out);
            }
            Err(_) => self.counters.invalid += 1,
        }
    }

    /// Checks a NEW-VIEW by recomputation; returns the plan it follows.
    pub fn verify_new_view(&self, nv: &NewView) -> Result<NewViewPlan, &'static str> {
        // The shape before any signature: exactly a quorum of VIEW-CHANGEs
        // for this view from distinct validators, and no more pre-prepares
        // than the watermark window holds.
        if nv.view_changes.len() != self.cfg.quorums.quorum {
            return Err("a new-view carries exactly a quorum of view changes");
        }
        if nv.pre_prepares.len() as u64 > self.cfg.params.watermark_window {
            return Err("more pre-prepares than the watermark window");
        }
        let mut voters = BTreeSet::new();
        for vc in &nv.view_changes {
            if vc.body.new_view != nv.view {
                return Err("view change for another view");
            }
            if !voters.insert(vc.body.voter) {
                return Err("two view changes from one validator");
            }
        }
        nv.verify_signature(&self.cfg)
            .map_err(|_| "bad new-view signature")?;
        for vc in &nv.view_changes {
            vc.verify(&self.cfg).map_err(|_| "invalid view change")?;
        }
        let plan = plan_new_view(&self.cfg, nv.view, &nv.view_changes);
        if plan.entries.len() != nv.pre_prepares.len() {
            return Err("pre-prepares do not match recomputation");
        }
        let primary = self.cfg.primary(nv.view);
        for ((seq, digest, _), pp) in plan.entries.iter().zip(&nv.pre_prepares) {
            let v = &pp.vote;
            if v.kind != VoteKind::PrePrepare
                || v.view != nv.view
                || v.seq != *seq
                || v.digest != *digest
                || v.voter != primary
            {
                return Err("pre-prepares do not match recomputation");
            }
            super::messages::verify_vote(&self.cfg, pp, VoteKind::PrePrepare)
                .map_err(|_| "bad pre-prepare signature")?;
        }
        Ok(plan)
    }

    /// Starts `nv.view`: adopt its checkpoint, install its pre-prepares,
    /// prepare them, and replay messages buffered for this view.
    fn enter_view(&mut self, nv: NewView, plan: NewViewPlan, out: &mut Vec<PbftOutput>) {
        let view = nv.view;
        out.push(Output::Persist(PbftRecord::NewView(nv.clone())));
        self.last_new_view = Some(nv.clone());
        self.view = view;
        self.view_active = true;
        self.progress_mark = None;
        out.push(Output::Persist(PbftRecord::View { view, active: true }));
        out.push(Output::ViewChanged {
            view,
            primary: self.cfg.primary(view),
        });
        self.view_changes.retain(|v, _| *v > view);
        self.complaints.retain(|v, _| *v >= view);
        self.proposed.clear();
        self.proposed_evidence.clear();
        if plan.checkpoint.seq > self.stable.seq {
            self.make_stable(plan.checkpoint.clone(), out);
        }
        let max_s = plan
            .entries
            .last()
            .map_or(plan.checkpoint.seq, |(s, _, _)| *s);
        for ((seq, digest, payload), pp) in plan.entries.into_iter().zip(nv.pre_prepares) {
            if seq <= self.stable.seq {
                continue;
            }
            // The payload: a null block's is computed; a re-proposal's is
            // the one this replica holds for the digest, if any.
            let payload = payload.or_else(|| {
                self.slots
                    .get(&seq)
                    .and_then(|s| s.payloads.get(&digest))
                    .cloned()
            });
            // Only what is still pending: a re-proposed transaction this
            // replica never saw (or already committed) must not count
            // against what the primary can propose.
            if let Some(payload) = &payload {
                for tx in &payload.txs {
                    let h = tx.hash();
                    if self.pending_txs.contains_key(&h) {
                        self.proposed.insert(h);
                    }
                }
                for e in &payload.evidence {
                    self.proposed_evidence.insert(e.id());
                }
            }
            self.accept_pre_prepare(pp, payload, out);
        }
        self.next_seq = max_s.max(self.last_committed).max(self.stable.seq).next();
        // Retire per-view state of older views.
        for slot in self.slots.values_mut() {
            slot.prepares.retain_from(view);
            slot.commits.retain_from(view);
            slot.pre_prepares.retain(|v, _| *v >= view);
            if slot.commit_sent.is_some_and(|v| v < view) {
                slot.commit_sent = None;
            }
        }
        self.replay_future(out);
        self.maybe_propose(out);
        self.arm_progress_timer(out);
    }
}

/// The validators whose VIEW-CHANGEs a NEW-VIEW used (for tests and logs).
pub fn view_change_senders(nv: &NewView) -> Vec<ValidatorIndex> {
    nv.view_changes.iter().map(|vc| vc.body.voter).collect()
}

/// A pre-prepare vote of a NEW-VIEW, for tests.
pub fn new_view_pre_prepares(nv: &NewView) -> &[SignedVote] {
    &nv.pre_prepares
}
