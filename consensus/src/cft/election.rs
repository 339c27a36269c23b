//! Terms and leader election (Ongaro & Ousterhout 2014, §5.1, §5.2, §5.4.1).
//!
//! A follower that hears from no leader within its election timeout becomes
//! a candidate in the next term, votes for itself (durably) and asks for
//! votes; a validator grants at most one vote per term, and only to a
//! candidate whose log is at least as up to date as its own. A majority of
//! votes makes a leader. The timeout is jittered by a hash of (validator,
//! term) instead of a random number, so split votes resolve and runs replay.

use super::messages::{CftBody, RequestVote, VoteReply};
use super::{Cft, CftOutput, Role};
use crate::engine::{Output, TimeoutKind};
use phalanx_crypto::{Domain, Hash};
use phalanx_ledger::{Height, ValidatorIndex};

impl Cft {
    /// The election timeout for this validator in the current term: the
    /// configured base plus a deterministic jitter in [0, base) (§5.2
    /// "randomized election timeouts"), the base doubled for each election
    /// this validator started in a row without a leader emerging (at most
    /// 64 times). Raft needs broadcast time ≪ election timeout; on a
    /// network slower than the configured timeout the doubling finds a
    /// timeout that holds instead of running elections forever (the
    /// simulator's `slow` fault).
    pub(crate) fn election_timeout_ms(&self) -> u64 {
        let shift = self.elections_in_a_row.min(6);
        let base = self.cfg.params.view_change_timeout_ms.max(1) << shift;
        let h = Hash::of(
            Domain::CftMessage,
            &("election-timeout", self.me(), self.term),
        );
        let mut word = [0u8; 8];
        word.copy_from_slice(&h.as_bytes()[..8]);
        base + u64::from_le_bytes(word) % base
    }

    /// The leader's heartbeat interval: well below the election timeout.
    pub(crate) fn heartbeat_ms(&self) -> u64 {
        (self.cfg.params.view_change_timeout_ms / 4).max(1)
    }

    /// Restarts the election countdown. The driver's timer is armed once per
    /// term; when it fires early (because the countdown was restarted since),
    /// it is re-armed for the rest.
    pub(crate) fn reset_election_timer(&mut self, out: &mut Vec<CftOutput>) {
        if self.role == Role::Leader {
            return;
        }
        let timeout = self.election_timeout_ms();
        self.election_deadline_ms = self.now_ms.saturating_add(timeout);
        if self.election_timer != Some(self.term) {
            self.election_timer = Some(self.term);
            out.push(Output::ScheduleTimeout {
                kind: TimeoutKind::Progress { view: self.term },
                after_ms: timeout,
            });
        }
    }

    pub(crate) fn on_election_timeout(&mut self, term: u64, out: &mut Vec<CftOutput>) {
        if term != self.term || self.election_timer != Some(term) {
            // Armed in an earlier term: the current term has its own timer.
            return;
        }
        self.election_timer = None;
        if self.role == Role::Leader {
            return;
        }
        if self.now_ms < self.election_deadline_ms {
            self.election_timer = Some(self.term);
            out.push(Output::ScheduleTimeout {
                kind: TimeoutKind::Progress { view: self.term },
                after_ms: self.election_deadline_ms - self.now_ms,
            });
            return;
        }
        self.start_election(out);
    }

    /// §5.2: increment the term, vote for self, ask everyone else.
    pub(crate) fn start_election(&mut self, out: &mut Vec<CftOutput>) {
        self.elections_in_a_row = self.elections_in_a_row.saturating_add(1);
        self.term += 1;
        self.voted_for = Some(self.me());
        self.role = Role::Candidate;
        self.leader = None;
        self.votes.clear();
        self.votes.insert(self.me());
        self.proposed.clear();
        self.counters.elections += 1;
        // Save before send: the vote for ourselves is durable before anyone
        // can count it.
        self.persist_hard_state(out);
        self.reset_election_timer(out);
        let request = self.sign(CftBody::RequestVote(RequestVote {
            term: self.term,
            candidate: self.me(),
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
        }));
        out.push(Output::Broadcast(request));
        self.check_election_won(out);
    }

    /// §5.1: a message with a later term makes this validator a follower in
    /// that term, with no vote cast yet.
    pub(crate) fn observe_term(&mut self, term: u64, out: &mut Vec<CftOutput>) {
        if term <= self.term {
            return;
        }
        self.term = term;
        self.voted_for = None;
        self.leader = None;
        self.become_follower(out);
        self.persist_hard_state(out);
    }

    /// Steps down to follower in the current term.
    pub(crate) fn become_follower(&mut self, out: &mut Vec<CftOutput>) {
        let was_leader = self.role == Role::Leader;
        self.role = Role::Follower;
        self.votes.clear();
        self.proposed.clear();
        self.batch_due_ms = None;
        if was_leader {
            // The election timer is not armed while leading.
            self.election_timer = None;
        }
        self.reset_election_timer(out);
    }

    /// §5.2 RequestVote receiver: grant if the term is current, no other
    /// candidate got our vote in it, and (§5.4.1) the candidate's log is at
    /// least as up to date as ours.
    pub(crate) fn on_request_vote(&mut self, m: RequestVote, out: &mut Vec<CftOutput>) {
        if m.term < self.term {
            self.counters.stale += 1;
        }
        self.observe_term(m.term, out);
        let granted = m.term == self.term
            && self.voted_for.is_none_or(|v| v == m.candidate)
            && self.log.is_up_to_date(m.last_log_term, m.last_log_index);
        if granted {
            self.voted_for = Some(m.candidate);
            // Save before send: the vote is durable before it leaves.
            self.persist_hard_state(out);
            // A validator that just granted a vote gives that candidate time.
            self.reset_election_timer(out);
        }
        let reply = self.sign(CftBody::Vote(VoteReply {
            term: self.term,
            voter: self.me(),
            candidate: m.candidate,
            granted,
        }));
        out.push(Output::Send {
            to: m.candidate,
            message: reply,
        });
    }

    /// §5.2: a candidate counts votes of its term; a majority makes it leader.
    pub(crate) fn on_vote(&mut self, m: VoteReply, out: &mut Vec<CftOutput>) {
        if m.term < self.term {
            self.counters.stale += 1;
            return;
        }
        self.observe_term(m.term, out);
        if self.role != Role::Candidate || m.candidate != self.me() || !m.granted {
            return;
        }
        self.votes.insert(m.voter);
        self.check_election_won(out);
    }

    fn check_election_won(&mut self, out: &mut Vec<CftOutput>) {
        if self.role == Role::Candidate && self.votes.len() >= self.cfg.quorums.quorum {
            self.become_leader(out);
        }
    }

    /// §5.2–§5.3: a new leader starts every follower at the end of its own
    /// log, asserts itself with AppendEntries at once, and (§5.4.2, §8)
    /// appends an entry of its own term when earlier terms left entries
    /// uncommitted, since only an entry of the current term commits by
    /// counting replicas.
    pub(crate) fn become_leader(&mut self, out: &mut Vec<CftOutput>) {
        self.role = Role::Leader;
        self.leader = Some(self.me());
        self.elections_in_a_row = 0;
        self.votes.clear();
        self.election_timer = None;
        let next = self.log.last_index().next();
        for v in 0..self.cfg.n() {
            self.next_index[v] = next;
            self.match_index[v] = Height::GENESIS;
            self.heartbeat_match[v] = Height::GENESIS;
        }
        let me = self.me().as_usize();
        self.match_index[me] = self.log.last_index();
        self.proposed = self
            .log
            .entries_from(self.commit_index.next(), usize::MAX)
            .iter()
            .flat_map(|p| p.txs.iter().map(|tx| tx.hash()))
            .filter(|h| self.pending_txs.contains_key(h))
            .collect();
        out.push(Output::ViewChanged {
            view: self.term,
            primary: self.me(),
        });
        if self.log.last_index() > self.commit_index && self.log.last_term() < self.term {
            self.propose(true, out);
        }
        self.maybe_propose(out);
        self.send_heartbeats(out);
        self.advance_commit_index(out);
    }

    /// Records the leader of the current term when first heard from.
    pub(crate) fn learn_leader(&mut self, leader: ValidatorIndex, out: &mut Vec<CftOutput>) {
        self.elections_in_a_row = 0;
        if self.leader != Some(leader) {
            self.leader = Some(leader);
            out.push(Output::ViewChanged {
                view: self.term,
                primary: leader,
            });
        }
    }
}
