//! Checkpoints and garbage collection (PBFT §4.3), and noticing that this
//! replica has fallen behind.

use super::log::Inserted;
use super::messages::{verify_vote, PbftMessage};
use super::record::PbftRecord;
use super::{Pbft, PbftOutput, StableCheckpoint};
use crate::engine::{Output, TimeoutKind};
use phalanx_crypto::Hash;
use phalanx_ledger::{Height, SignedVote, Vote, VoteKind};

impl Pbft {
    /// The driver executed `height`: at every K-th height, sign and send a
    /// CHECKPOINT for the block hash (which covers the state root).
    pub(crate) fn on_block_executed(
        &mut self,
        height: Height,
        block_hash: Hash,
        out: &mut Vec<PbftOutput>,
    ) {
        if height <= self.last_executed || height > self.last_committed {
            return;
        }
        self.last_executed = height;
        if height == self.stable.seq && block_hash != self.stable.digest {
            // Caught up past a checkpoint a quorum certified, and our own
            // block there is another.
            self.diverged_at.get_or_insert(height);
        }
        if height.0.is_multiple_of(self.cfg.params.checkpoint_interval) {
            let vote = Vote {
                kind: VoteKind::Checkpoint,
                view: 0,
                seq: height,
                digest: block_hash,
                voter: self.me(),
            };
            if let Some(signed) = self.sign_vote(vote, out) {
                out.push(Output::Broadcast(PbftMessage::Checkpoint(signed)));
                self.record_checkpoint(signed, out);
            }
        }
    }

    /// After a restart: our CHECKPOINT votes above the stable checkpoint
    /// again (persisted before they were sent). The ones in flight when
    /// we went down are lost, and a checkpoint without a quorum of votes
    /// never becomes stable: the watermark window fills and the primary
    /// stops proposing. (The simulator found every replica restarted
    /// around one checkpoint and PBFT idle for good after it: PBFT+PoS,
    /// seed 515.)
    pub(crate) fn resend_checkpoints(&mut self, out: &mut Vec<PbftOutput>) {
        let own: Vec<SignedVote> = self
            .signed
            .range((VoteKind::Checkpoint, 0, self.stable.seq.next())..)
            .take_while(|((kind, view, _), _)| *kind == VoteKind::Checkpoint && *view == 0)
            .map(|(_, v)| *v)
            .collect();
        for vote in own {
            out.push(Output::Broadcast(PbftMessage::Checkpoint(vote)));
            self.record_checkpoint(vote, out);
        }
    }

    /// §4.3: collect CHECKPOINTs.
    pub(crate) fn on_checkpoint(&mut self, vote: SignedVote, out: &mut Vec<PbftOutput>) {
        let v = vote.vote;
        if verify_vote(&self.cfg, &vote, VoteKind::Checkpoint).is_err() {
            self.counters.bad_signature += 1;
            return;
        }
        if v.view != 0 || !v.seq.0.is_multiple_of(self.cfg.params.checkpoint_interval) {
            self.counters.invalid += 1;
            return;
        }
        let claimed = self.claimed_progress.entry(v.voter).or_default();
        *claimed = (*claimed).max(v.seq);
        if v.seq <= self.stable.seq {
            return;
        }
        // Keep votes for a bounded range above the stable checkpoint only;
        // claims further out are still counted above for catching up.
        if v.seq.0 <= self.stable.seq.0 + 4 * self.cfg.params.watermark_window {
            self.record_checkpoint(vote, out);
        }
        self.check_behind(out);
    }

    fn record_checkpoint(&mut self, vote: SignedVote, out: &mut Vec<PbftOutput>) {
        let seq = vote.vote.seq;
        match self.checkpoint_votes.entry(seq).or_default().insert(vote) {
            Inserted::New => {}
            Inserted::Duplicate => return,
            Inserted::Equivocation(e) => return self.on_evidence_found(*e, out),
        }
        let votes = &self.checkpoint_votes[&seq];
        for digest in votes.digests(0) {
            let proof = votes.matching(0, &digest, None);
            if proof.len() >= self.cfg.quorums.quorum {
                self.make_stable(StableCheckpoint { seq, digest, proof }, out);
                return;
            }
        }
    }

    /// A checkpoint with a quorum proof becomes stable: move the low
    /// watermark, discard the log up to it (§4.3).
    pub(crate) fn make_stable(&mut self, cp: StableCheckpoint, out: &mut Vec<PbftOutput>) {
        if cp.seq <= self.stable.seq {
            return;
        }
        let seq = cp.seq;
        // Our own CHECKPOINT there says what we executed; a quorum certified
        // another block hash, so our store or our execution is wrong.
        if self
            .signed
            .get(&(VoteKind::Checkpoint, 0, seq))
            .is_some_and(|own| own.vote.digest != cp.digest)
        {
            self.diverged_at.get_or_insert(seq);
        }
        out.push(Output::Persist(PbftRecord::StableCheckpoint {
            seq,
            digest: cp.digest,
            proof: cp.proof.clone(),
        }));
        self.stable = cp;
        // Never propose at or below the low watermark (the simulator found a
        // primary doing so after adopting a checkpoint while behind).
        self.next_seq = self.next_seq.max(seq.next());
        self.slots.retain(|s, _| *s > seq);
        self.checkpoint_votes.retain(|s, _| *s > seq);
        self.signed.retain(|(_, _, s), _| *s > seq);
        if self.last_committed < seq {
            // The others are past a point we never reached.
            self.check_behind(out);
        }
        self.maybe_propose(out);
    }

    /// Asks for certified blocks if this replica is evidently behind: a
    /// stable checkpoint or f+1 checkpoint claims beyond what it committed,
    /// or later slots committed while the next one is missing.
    pub(crate) fn check_behind(&mut self, out: &mut Vec<PbftOutput>) {
        let next = self.last_committed.next();
        let mut claims: Vec<Height> = self.claimed_progress.values().copied().collect();
        claims.sort_unstable_by(|a, b| b.cmp(a));
        let weak_claim = claims
            .get(self.cfg.quorums.weak - 1)
            .copied()
            .unwrap_or_default();
        let later_committed = self
            .slots
            .range(next..)
            .any(|(s, slot)| *s > next && slot.committed.is_some());
        let missing_payload = self
            .slots
            .get(&next)
            .is_some_and(|slot| slot.committed.is_some() && slot.committed_payload().is_none());
        if self.stable.seq > self.last_committed
            || weak_claim > self.last_committed
            || later_committed
            || missing_payload
        {
            self.request_sync(out);
        }
    }

    /// Emits one sync request at a time, retried by the sync timer.
    pub(crate) fn request_sync(&mut self, out: &mut Vec<PbftOutput>) {
        if self.sync_outstanding {
            return;
        }
        self.sync_outstanding = true;
        out.push(Output::RequestSync {
            from: self.last_committed.next(),
        });
        out.push(Output::ScheduleTimeout {
            kind: TimeoutKind::Sync,
            after_ms: self.cfg.params.view_change_timeout_ms / 2 + 1,
        });
    }
}
