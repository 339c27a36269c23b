//! The PRE-PREPARE echo: how an equivocating primary is caught.
//!
//! An equivocating primary sends one PRE-PREPARE to half the replicas and
//! another to the other half. PBFT stays safe (neither version gathers a
//! quorum, a view change follows), but no honest replica holds both signed
//! proposals, so nobody can prove what happened and the primary is never
//! marked faulty: measured on real nodes, not one piece of evidence came
//! out of it.
//!
//! So a replica that accepts the primary's signed PRE-PREPARE vote for a
//! slot the first time sends that vote (about 150 bytes, no payload) to the
//! other backups in an ECHO. A replica compares every primary vote it sees,
//! in a PRE-PREPARE or an ECHO, with the one it holds for the slot: two
//! with different digests are evidence, handled like any other (the
//! primary is marked faulty, the evidence gossiped and put into a block,
//! the view left). An ECHO carries the primary's signature and nothing
//! else to trust: a replica checks it before it keeps the vote (unless it
//! already holds exactly that signed vote), so a forged echo can neither
//! fill a slot nor accuse anyone. The cost is n−2 small messages per block
//! per replica.

use super::messages::{verify_vote, PbftMessage};
use super::{Pbft, PbftOutput};
use crate::engine::Output;
use phalanx_ledger::{Evidence, SignedVote, ValidatorIndex, VoteKind};

/// Slots whose primary vote a replica remembers (the oldest go first).
pub(crate) const REMEMBERED: usize = 4096;

impl Pbft {
    /// Echoes an accepted PRE-PREPARE's vote to the other backups, once
    /// per slot (after this replica's own PREPARE, which matters more).
    pub(crate) fn echo_pre_prepare(&mut self, vote: SignedVote, out: &mut Vec<PbftOutput>) {
        let slot = (vote.vote.view, vote.vote.seq);
        match self.primary_votes.get_mut(&slot) {
            Some((held, echoed)) if *held == vote && !*echoed => *echoed = true,
            _ => return,
        }
        let me = self.me();
        for to in (0..self.cfg.n() as u32).map(ValidatorIndex) {
            if to != me && to != vote.vote.voter {
                out.push(Output::Send {
                    to,
                    message: PbftMessage::Echo(vote),
                });
            }
        }
    }

    /// An ECHO from another replica.
    pub(crate) fn on_echo(&mut self, vote: SignedVote, out: &mut Vec<PbftOutput>) {
        let v = vote.vote;
        if v.kind != VoteKind::PrePrepare || v.voter != self.cfg.primary(v.view) {
            self.counters.invalid += 1;
            return;
        }
        if self.faulty.contains(&v.voter) {
            return;
        }
        if self
            .primary_votes
            .get(&(v.view, v.seq))
            .is_some_and(|(held, _)| *held == vote)
        {
            // Exactly the signed vote it holds (verified then): nothing new.
            return;
        }
        if verify_vote(&self.cfg, &vote, VoteKind::PrePrepare).is_err() {
            self.counters.bad_signature += 1;
            return;
        }
        self.note_primary_vote(vote, out);
    }

    /// Keeps a verified primary vote (from a PRE-PREPARE or an ECHO), or
    /// finds it conflicts with the one kept for its slot. Returns whether
    /// it proved the primary faulty.
    pub(crate) fn note_primary_vote(
        &mut self,
        vote: SignedVote,
        out: &mut Vec<PbftOutput>,
    ) -> bool {
        let slot = (vote.vote.view, vote.vote.seq);
        match self.primary_votes.get(&slot) {
            Some((first, _)) if first.vote.digest != vote.vote.digest => {
                let evidence = Evidence {
                    first: *first,
                    second: vote,
                };
                self.on_evidence_found(evidence, out);
                true
            }
            Some(_) => false,
            None => {
                self.primary_votes.insert(slot, (vote, false));
                while self.primary_votes.len() > REMEMBERED {
                    self.primary_votes.pop_first();
                }
                false
            }
        }
    }
}
