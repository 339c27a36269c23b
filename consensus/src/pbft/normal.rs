//! The normal case (PBFT §4.2): batching, PRE-PREPARE, PREPARE, COMMIT, and
//! handing committed payloads to the driver in sequence order.

use super::log::Inserted;
use super::messages::{
    check_payload, verify_vote, MessageError, PbftMessage, PrePrepare, PreparedCert,
};
use super::record::{PbftRecord, PreparedRecord};
use super::{Pbft, PbftOutput};
use crate::engine::{Output, TimeoutKind};
use phalanx_crypto::Hash;
use phalanx_ledger::{
    CommitCertificate, Height, Justification, Payload, SignedVote, ValidatorIndex, Vote, VoteKind,
};

/// Where a vote for (view, seq) stands relative to this replica.
enum Admit {
    /// Handle it now.
    Now,
    /// Keep it until that view starts.
    Later,
    /// Drop it.
    Drop,
}

impl Pbft {
    fn admit(&mut self, view: u64, seq: Height) -> Admit {
        if view < self.view || (view == self.view && !self.view_active && view != 0) {
            if view < self.view {
                // PBFT §4.2: replicas accept messages only for their current view.
                self.counters.stale += 1;
                return Admit::Drop;
            }
            return Admit::Later;
        }
        if view > self.view {
            return Admit::Later;
        }
        if !self.in_window(seq) {
            // §4.2: only sequence numbers between the watermarks.
            self.counters.invalid += 1;
            return Admit::Drop;
        }
        Admit::Now
    }

    /// §4.2: a backup accepts a pre-prepare signed by the primary of its view,
    /// for a seq within the watermarks, with a payload matching the digest, if
    /// it has not accepted a different one for (view, seq); then it prepares.
    pub(crate) fn on_pre_prepare(
        &mut self,
        from: ValidatorIndex,
        pp: PrePrepare,
        out: &mut Vec<PbftOutput>,
    ) {
        let v = pp.vote.vote;
        if verify_vote(&self.cfg, &pp.vote, VoteKind::PrePrepare).is_err()
            || v.voter != self.cfg.primary(v.view)
        {
            self.counters.bad_signature += 1;
            return;
        }
        if self.faulty.contains(&v.voter) {
            return;
        }
        if self.note_primary_vote(pp.vote, out) {
            return;
        }
        match self.admit(v.view, v.seq) {
            Admit::Drop => return,
            Admit::Later => {
                // Only a payload that could be accepted is worth its room.
                if self.check_proposal(&pp).is_err() {
                    self.counters.invalid += 1;
                    return;
                }
                return self.buffer_future(from, PbftMessage::PrePrepare(pp), out);
            }
            Admit::Now => {}
        }
        let slot = self.slots.entry(v.seq).or_default();
        if let Some(existing) = slot.pre_prepares.get(&v.view) {
            if existing.vote.digest != v.digest {
                // The primary signed two proposals for one slot.
                let evidence = phalanx_ledger::Evidence {
                    first: *existing,
                    second: pp.vote,
                };
                return self.on_evidence_found(evidence, out);
            }
            return;
        }
        if self.check_proposal(&pp).is_err() {
            self.counters.invalid += 1;
            return;
        }
        let vote = pp.vote;
        self.accept_pre_prepare(pp.vote, Some(pp.payload), out);
        self.echo_pre_prepare(vote, out);
    }

    /// A PRE-PREPARE's payload against its signed vote: the view-independent
    /// payload rules, and the round and proposer the vote implies.
    fn check_proposal(&self, pp: &PrePrepare) -> Result<(), MessageError> {
        let v = &pp.vote.vote;
        check_payload(&self.cfg, &pp.payload, v.seq, &v.digest)?;
        // A replica holding a tentative block here (PBFT with a fallback)
        // votes only to finalize that block as it is: a fresh proposal
        // would discard the branch it follows.
        if let Some((digest, _)) = self.adoptable.get(&v.seq) {
            if *digest == v.digest {
                return Ok(());
            }
            return Err(MessageError::BadPayload(
                "not the tentative block this replica holds there",
            ));
        }
        if pp.payload.round != v.view || pp.payload.proposer != v.voter {
            return Err(MessageError::BadPayload("round or proposer"));
        }
        Ok(())
    }

    /// Installs an accepted pre-prepare (from PRE-PREPARE or NEW-VIEW) and
    /// sends this backup's PREPARE. A NEW-VIEW re-proposal may come without
    /// its payload (`None`) when this replica never received it: it votes
    /// on the digest, and fetches the block by catch-up to execute it.
    pub(crate) fn accept_pre_prepare(
        &mut self,
        vote: SignedVote,
        payload: Option<Payload>,
        out: &mut Vec<PbftOutput>,
    ) {
        let (view, seq, digest) = (vote.vote.view, vote.vote.seq, vote.vote.digest);
        let slot = self.slots.entry(seq).or_default();
        slot.pre_prepares.insert(view, vote);
        if let Some(payload) = payload {
            slot.payloads.insert(digest, payload);
        }
        if self.cfg.primary(view) != self.me() {
            let prepare = Vote {
                kind: VoteKind::Prepare,
                view,
                seq,
                digest,
                voter: self.me(),
            };
            if let Some(signed) = self.sign_vote(prepare, out) {
                self.slots.entry(seq).or_default().prepares.insert(signed);
                out.push(Output::Broadcast(PbftMessage::Prepare(signed)));
            }
        }
        self.check_prepared(seq, out);
        self.check_committed(seq, out);
        self.arm_progress_timer(out);
    }

    /// §4.2: collect PREPAREs from backups.
    pub(crate) fn on_prepare(
        &mut self,
        from: ValidatorIndex,
        vote: SignedVote,
        out: &mut Vec<PbftOutput>,
    ) {
        let v = vote.vote;
        if verify_vote(&self.cfg, &vote, VoteKind::Prepare).is_err() {
            self.counters.bad_signature += 1;
            return;
        }
        if v.voter == self.cfg.primary(v.view) {
            // The primary's pre-prepare stands for its prepare (§4.2).
            self.counters.invalid += 1;
            return;
        }
        if self.faulty.contains(&v.voter) {
            return;
        }
        match self.admit(v.view, v.seq) {
            Admit::Drop => return,
            Admit::Later => return self.buffer_future(from, PbftMessage::Prepare(vote), out),
            Admit::Now => {}
        }
        match self.slots.entry(v.seq).or_default().prepares.insert(vote) {
            Inserted::New => self.check_prepared(v.seq, out),
            Inserted::Duplicate => {}
            Inserted::Equivocation(e) => self.on_evidence_found(*e, out),
        }
    }

    /// §4.2: collect COMMITs.
    pub(crate) fn on_commit(
        &mut self,
        from: ValidatorIndex,
        vote: SignedVote,
        out: &mut Vec<PbftOutput>,
    ) {
        let v = vote.vote;
        if verify_vote(&self.cfg, &vote, VoteKind::Commit).is_err() {
            self.counters.bad_signature += 1;
            return;
        }
        if self.faulty.contains(&v.voter) {
            return;
        }
        if v.seq > self.high_watermark() {
            // A validly signed COMMIT beyond our window: its sender is far
            // ahead. f+1 such senders mean we are behind.
            let claimed = self.claimed_progress.entry(v.voter).or_default();
            *claimed = (*claimed).max(v.seq);
            self.check_behind(out);
        }
        match self.admit(v.view, v.seq) {
            Admit::Drop => return,
            Admit::Later => return self.buffer_future(from, PbftMessage::Commit(vote), out),
            Admit::Now => {}
        }
        match self.slots.entry(v.seq).or_default().commits.insert(vote) {
            Inserted::New => self.check_committed(v.seq, out),
            Inserted::Duplicate => {}
            Inserted::Equivocation(e) => self.on_evidence_found(*e, out),
        }
    }

    /// prepared(m, v, n, i): the pre-prepare and quorum−1 matching prepares
    /// from distinct backups. Then persist the certificate and send COMMIT.
    fn check_prepared(&mut self, seq: Height, out: &mut Vec<PbftOutput>) {
        let view = self.view;
        let primary = self.cfg.primary(view);
        let needed = self.cfg.quorums.quorum - 1;
        let Some(slot) = self.slots.get_mut(&seq) else {
            return;
        };
        if slot.commit_sent == Some(view) {
            return;
        }
        let Some(pre_prepare) = slot.pre_prepares.get(&view).copied() else {
            return;
        };
        let digest = pre_prepare.vote.digest;
        let prepares = slot.prepares.matching(view, &digest, Some(primary));
        if prepares.len() < needed {
            return;
        }
        let cert = PreparedCert {
            pre_prepare,
            prepares,
        };
        slot.commit_sent = Some(view);
        slot.prepared = Some(cert.clone());
        // A NEW-VIEW's re-proposal is prepared by digest even when this
        // replica never received the payload (f+1 honest replicas hold it;
        // execution waits for catch-up).
        out.push(Output::Persist(match slot.payloads.get(&digest) {
            Some(payload) => PbftRecord::Prepared(PreparedRecord {
                cert,
                payload: payload.clone(),
            }),
            None => PbftRecord::PreparedDigest(cert),
        }));
        let commit = Vote {
            kind: VoteKind::Commit,
            view,
            seq,
            digest,
            voter: self.me(),
        };
        if let Some(signed) = self.sign_vote(commit, out) {
            self.slots.entry(seq).or_default().commits.insert(signed);
            out.push(Output::Broadcast(PbftMessage::Commit(signed)));
        }
        self.check_committed(seq, out);
    }

    /// committed-local: quorum matching COMMITs for a digest whose payload we
    /// hold. A quorum of COMMITs is also what a certified block carries, so a
    /// replica that missed the prepares can still execute.
    pub(crate) fn check_committed(&mut self, seq: Height, out: &mut Vec<PbftOutput>) {
        let view = self.view;
        let quorum = self.cfg.quorums.quorum;
        let Some(slot) = self.slots.get_mut(&seq) else {
            return;
        };
        if slot.committed.is_some() {
            return;
        }
        for digest in slot.commits.digests(view) {
            let commits = slot.commits.matching(view, &digest, None);
            if commits.len() >= quorum {
                let mut sigs: Vec<(ValidatorIndex, phalanx_crypto::Signature)> = commits
                    .iter()
                    .map(|c| (c.vote.voter, c.signature))
                    .collect();
                sigs.sort_by_key(|(v, _)| *v);
                slot.committed = Some(CommitCertificate {
                    view,
                    seq,
                    digest,
                    commits: sigs,
                });
                break;
            }
        }
        if slot.committed.is_some() {
            self.commit_in_order(out);
        }
    }

    /// §4.2: execute in sequence order — hand over every committed payload
    /// that directly follows the last one handed over.
    pub(crate) fn commit_in_order(&mut self, out: &mut Vec<PbftOutput>) {
        loop {
            let next = self.last_committed.next();
            let Some(slot) = self.slots.get(&next) else {
                break;
            };
            let Some((cert, payload)) = slot.committed_payload() else {
                if slot.committed.is_some() {
                    // Committed by a quorum but we never got the payload.
                    self.request_sync(out);
                }
                break;
            };
            let (cert, payload) = (cert.clone(), payload.clone());
            self.hand_over(payload, Justification::Pbft(cert), out);
        }
        if self
            .slots
            .range(self.last_committed.next()..)
            .any(|(s, slot)| *s > self.last_committed.next() && slot.committed.is_some())
        {
            // A later slot committed while the next one did not: we missed it.
            self.check_behind(out);
        }
        self.maybe_propose(out);
    }

    /// Passes one committed payload to the driver and forgets its transactions.
    pub(crate) fn hand_over(
        &mut self,
        payload: Payload,
        justification: Justification,
        out: &mut Vec<PbftOutput>,
    ) {
        if !self.adoptable.is_empty() {
            self.adoptable = self.adoptable.split_off(&payload.height.next());
        }
        for tx in &payload.txs {
            let h = tx.hash();
            self.pending_txs.remove(&h);
            self.proposed.remove(&h);
        }
        let committed_ids: Vec<Hash> = payload
            .evidence
            .iter()
            .map(phalanx_ledger::Evidence::id)
            .collect();
        // Committed evidence settles its offender: other pending pieces
        // against the same validator would only repeat it on chain.
        self.pending_evidence.retain(|e| {
            !payload
                .evidence
                .iter()
                .any(|c| c.offender() == e.offender())
        });
        // Evidence learnt from a committed block proves its offender faulty
        // as surely as evidence received directly; every honest replica
        // commits the block, so all leave an equivocating primary's view
        // together (the simulator found Twins' primary putting the evidence
        // against itself into a block: the replicas that learnt it only so
        // ran its view on, while the one that had it first waited alone).
        let mut primary_proven_faulty = false;
        for e in &payload.evidence {
            let offender = e.offender();
            if self.faulty.insert(offender) {
                primary_proven_faulty |= offender == self.cfg.primary(self.view);
            }
        }
        for id in committed_ids {
            self.proposed_evidence.remove(&id);
            self.known_evidence.insert(id);
        }

        self.last_committed = payload.height;
        self.next_seq = self.next_seq.max(self.last_committed.next());
        self.consecutive_view_changes = 0;
        out.push(Output::Commit {
            payload,
            justification,
        });
        // Drop the already-committed hashes from the front of the queue.
        while let Some(front) = self.pending.front() {
            if self.pending_txs.contains_key(front) {
                break;
            }
            self.pending.pop_front();
        }
        if self.pending.len() > 2 * self.pending_txs.len() + 1024 {
            let live = &self.pending_txs;
            self.pending.retain(|h| live.contains_key(h));
        }
        if primary_proven_faulty && self.view_active && !self.is_primary() {
            self.start_view_change(self.view + 1, out);
        }
    }

    /// The primary proposes a batch when it has B transactions, when the
    /// pipeline is idle, or when the batch timer fired (§4.2 batching),
    /// as long as the seq stays within the watermarks.
    pub(crate) fn maybe_propose(&mut self, out: &mut Vec<PbftOutput>) {
        if !self.view_active || !self.is_primary() {
            return;
        }
        let max = self.cfg.params.max_block_txs as usize;
        loop {
            let seq = self.next_seq;
            if seq > self.high_watermark() {
                return;
            }
            if let Some((_, adopted)) = self.adoptable.get(&seq) {
                let payload = adopted.clone();
                self.propose(payload, out);
                continue;
            }
            if !self.adoptable.is_empty() {
                // Nothing fresh on top of a branch not yet final: its
                // transactions are in it, and should PBFT commit something
                // else below (a value prepared before the outage), they
                // come back, in order, before anything proposed meanwhile.
                return;
            }
            let available = self.pending_txs.len().saturating_sub(self.proposed.len());
            let evidence_waiting = self
                .pending_evidence
                .iter()
                .any(|e| !self.proposed_evidence.contains(&e.id()));
            if available == 0 && !evidence_waiting {
                return;
            }
            let idle = self.last_committed.next() == seq;
            if available < max && !idle && !self.batch_due {
                if !self.batch_timer_armed {
                    self.batch_timer_armed = true;
                    out.push(Output::ScheduleTimeout {
                        kind: TimeoutKind::Batch,
                        after_ms: self.cfg.params.batch_timeout_ms,
                    });
                }
                return;
            }
            self.batch_due = false;
            let mut txs = Vec::with_capacity(available.min(max));
            for h in &self.pending {
                if txs.len() >= max {
                    break;
                }
                if self.proposed.contains(h) {
                    continue;
                }
                if let Some(tx) = self.pending_txs.get(h) {
                    txs.push(tx.clone());
                }
            }
            let evidence: Vec<_> = self
                .pending_evidence
                .iter()
                .filter(|e| !self.proposed_evidence.contains(&e.id()))
                .cloned()
                .collect();
            if txs.is_empty() && evidence.is_empty() {
                return;
            }
            let payload = Payload {
                chain_id: self.cfg.chain_id.clone(),
                height: seq,
                round: self.view,
                proposer: self.me(),
                timestamp_ms: self.now_ms,
                txs,
                evidence,
            };
            self.propose(payload, out);
        }
    }

    /// The primary signs and sends a PRE-PREPARE for `payload` at its
    /// height, the next seq (skipped if it pre-prepared something else
    /// there before a restart).
    fn propose(&mut self, payload: Payload, out: &mut Vec<PbftOutput>) {
        let seq = payload.height;
        let vote = Vote {
            kind: VoteKind::PrePrepare,
            view: self.view,
            seq,
            digest: payload.digest(),
            voter: self.me(),
        };
        let Some(signed) = self.sign_vote(vote, out) else {
            // Already pre-prepared something else here before a restart:
            // skip the seq. Its transactions stay available for the
            // next one (marking them proposed here left them pending
            // forever, unproposed: the simulator's drain check found it).
            self.next_seq = seq.next();
            return;
        };
        // (An adopted tentative block may carry transactions this replica
        // never had pending.)
        for tx in &payload.txs {
            let h = tx.hash();
            if self.pending_txs.contains_key(&h) {
                self.proposed.insert(h);
            }
        }
        for e in &payload.evidence {
            self.proposed_evidence.insert(e.id());
        }
        self.next_seq = seq.next();
        out.push(Output::Broadcast(PbftMessage::PrePrepare(PrePrepare {
            vote: signed,
            payload: payload.clone(),
        })));
        self.accept_pre_prepare(signed, Some(payload), out);
    }

    /// PBFT with a fallback: the payloads of the tentative blocks this
    /// replica holds above its last committed height, lowest first (the
    /// branch it follows). As primary it proposes them unchanged at their
    /// heights, so that the blocks become final as they are (same hash,
    /// same state); as a backup it accepts at those heights only the same
    /// payloads. Replaces what was set before; only heights within two
    /// watermark windows above the last commit are kept (set it again as
    /// commits move on).
    pub fn set_adoptable(&mut self, payloads: Vec<Payload>) -> Vec<PbftOutput> {
        let low = self.last_committed;
        let high = Height(low.0 + 2 * self.cfg.params.watermark_window);
        self.adoptable = payloads
            .into_iter()
            .filter(|p| p.height > low && p.height <= high)
            .map(|p| (p.height, (p.digest(), p)))
            .collect();
        let mut out = Vec::new();
        self.maybe_propose(&mut out);
        self.arm_progress_timer(&mut out);
        out
    }

    /// Transactions of tentative blocks that were reverted (PBFT with a
    /// fallback), in block order: they go to the front of the queue, so
    /// that a sender's transactions stay in nonce order ahead of later
    /// ones that were waiting (the simulator found a returned nonce-0
    /// transfer queued behind the same sender's nonce 1 and 2, which then
    /// failed).
    pub fn return_transactions(
        &mut self,
        txs: Vec<phalanx_ledger::SignedTransaction>,
    ) -> Vec<PbftOutput> {
        let mut out = Vec::new();
        if txs.is_empty() {
            return out;
        }
        let returned: std::collections::HashSet<Hash> = txs.iter().map(|t| t.hash()).collect();
        self.pending.retain(|h| !returned.contains(h));
        for tx in txs.into_iter().rev() {
            let h = tx.hash();
            self.proposed.remove(&h);
            self.pending_txs.insert(h, tx);
            self.pending.push_front(h);
        }
        self.maybe_propose(&mut out);
        self.arm_progress_timer(&mut out);
        out
    }

    /// The transactions waiting to be ordered, oldest first.
    pub fn pending_transactions(&self) -> Vec<phalanx_ledger::SignedTransaction> {
        self.pending
            .iter()
            .filter_map(|h| self.pending_txs.get(h).cloned())
            .collect()
    }
}
