//! Log replication and commitment (Ongaro & Ousterhout 2014, §5.3, §5.4.2):
//! the leader batches pending transactions into entries, sends them with
//! AppendEntries, counts acknowledgements, commits entries of its own term
//! once a majority stores them; followers check the previous entry, drop a
//! conflicting suffix, store, acknowledge. Committed entries are handed to
//! the driver in index order, each once. Also compaction and catch-up from
//! stored blocks.

use super::messages::{AppendAck, AppendEntries, CftBody, CftRecord};
use super::{Cft, CftOutput, Role};
use crate::engine::{Output, TimeoutKind};
use phalanx_crypto::Hash;
use phalanx_ledger::{Block, Height, Justification, Payload, ValidatorIndex};

/// Most entries in one AppendEntries (a block can hold thousands of
/// transactions; this keeps a message well under the transport's cap).
pub const MAX_ENTRIES_PER_MESSAGE: usize = 4;

impl Cft {
    fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    /// Checks an entry a peer hands us against the rules every honest
    /// leader follows (not against equivocation: CFT trusts the signer).
    fn is_well_formed(&self, p: &Payload, height: Height, max_term: u64) -> bool {
        p.chain_id == self.cfg.chain_id
            && p.height == height
            && p.round <= max_term
            && p.txs.len() <= self.cfg.params.max_block_txs as usize
            && p.proposer.as_usize() < self.cfg.n()
            && p.evidence.is_empty()
    }

    /// The leader proposes a batch when it has a full one, when nothing is
    /// in flight, or when the batch timer fired — while fewer than the
    /// window's worth of entries await commitment.
    pub(crate) fn maybe_propose(&mut self, out: &mut Vec<CftOutput>) {
        if !self.is_leader() {
            return;
        }
        let max = self.cfg.params.max_block_txs as usize;
        loop {
            let in_flight = self.log.last_index().0 - self.commit_index.0;
            if in_flight >= self.cfg.params.watermark_window {
                return;
            }
            let available = self.pending_txs.len().saturating_sub(self.proposed.len());
            if available == 0 {
                self.batch_due_ms = None;
                return;
            }
            let due = self.batch_due_ms.is_some_and(|t| t <= self.now_ms);
            if available < max && in_flight > 0 && !due {
                if self.batch_due_ms.is_none() {
                    self.batch_due_ms = Some(self.now_ms + self.cfg.params.batch_timeout_ms);
                    self.arm_leader_timer(out);
                }
                return;
            }
            self.batch_due_ms = None;
            self.propose(false, out);
        }
    }

    /// Appends a new entry of this term with pending transactions (with
    /// none only when `force`d) and sends it to followers that are caught up.
    pub(crate) fn propose(&mut self, force: bool, out: &mut Vec<CftOutput>) {
        let max = self.cfg.params.max_block_txs as usize;
        let mut txs = Vec::new();
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
        if txs.is_empty() && !force {
            return;
        }
        for tx in &txs {
            self.proposed.insert(tx.hash());
        }
        let height = self.log.last_index().next();
        let payload = Payload {
            chain_id: self.cfg.chain_id.clone(),
            height,
            round: self.term,
            proposer: self.me(),
            timestamp_ms: self.now_ms,
            txs,
            evidence: Vec::new(),
        };
        if self.log.append(payload.clone()).is_err() {
            // Unreachable: the leader's term is at least its last entry's.
            self.counters.invalid += 1;
            return;
        }
        // Save before send: the entry is durable before any follower sees it.
        self.persist_entry(payload, out);
        let me = self.me().as_usize();
        self.match_index[me] = height;
        for v in 0..self.cfg.n() {
            if v != self.me().as_usize() && self.next_index[v] == height {
                self.send_append(v, out);
            }
        }
        self.advance_commit_index(out);
    }

    /// Sends validator `v` the entries from its next index (or a heartbeat).
    pub(crate) fn send_append(&mut self, v: usize, out: &mut Vec<CftOutput>) {
        let (base, _) = self.log.base();
        let next = self.next_index[v]
            .max(base.next())
            .min(self.log.last_index().next());
        let prev = Height(next.0 - 1);
        let Some(prev_term) = self.log.term_at(prev) else {
            return;
        };
        let entries = self.log.entries_from(next, MAX_ENTRIES_PER_MESSAGE);
        self.next_index[v] = Height(next.0 + entries.len() as u64);
        let message = self.sign(CftBody::AppendEntries(AppendEntries {
            term: self.term,
            leader: self.me(),
            prev_log_index: prev,
            prev_log_term: prev_term,
            entries,
            leader_commit: self.commit_index,
        }));
        out.push(Output::Send {
            to: ValidatorIndex(v as u32),
            message,
        });
    }

    /// §5.2: the leader sends AppendEntries to every follower periodically,
    /// resending from the last acknowledged index to a follower that made
    /// no progress since the previous heartbeat (a lost message).
    pub(crate) fn send_heartbeats(&mut self, out: &mut Vec<CftOutput>) {
        let last = self.log.last_index();
        for v in 0..self.cfg.n() {
            if v == self.me().as_usize() {
                continue;
            }
            let matched = self.match_index[v];
            if matched == self.heartbeat_match[v] && matched < last {
                self.next_index[v] = if matched == Height::GENESIS {
                    // Never heard from: probe at our end, its answer says where it is.
                    last.next()
                } else {
                    matched.next()
                };
            }
            self.heartbeat_match[v] = matched;
            self.send_append(v, out);
        }
        self.heartbeat_due_ms = self.now_ms + self.heartbeat_ms();
        self.arm_leader_timer(out);
    }

    /// Arms the leader's one timer (`Batch`) for the earlier of the next
    /// heartbeat and a waiting partial batch.
    pub(crate) fn arm_leader_timer(&mut self, out: &mut Vec<CftOutput>) {
        if !self.is_leader() {
            return;
        }
        let due = self
            .batch_due_ms
            .map_or(self.heartbeat_due_ms, |b| b.min(self.heartbeat_due_ms));
        if self.leader_timer_ms.is_none_or(|armed| armed > due) {
            self.leader_timer_ms = Some(due);
            out.push(Output::ScheduleTimeout {
                kind: TimeoutKind::Batch,
                after_ms: due.saturating_sub(self.now_ms).max(1),
            });
        }
    }

    pub(crate) fn on_leader_timer(&mut self, out: &mut Vec<CftOutput>) {
        self.leader_timer_ms = None;
        if !self.is_leader() {
            return;
        }
        self.maybe_propose(out);
        if self.heartbeat_due_ms <= self.now_ms {
            self.send_heartbeats(out);
        }
        self.arm_leader_timer(out);
    }

    /// §5.3 AppendEntries receiver.
    pub(crate) fn on_append_entries(&mut self, m: AppendEntries, out: &mut Vec<CftOutput>) {
        if m.term < self.term {
            // §5.1: reject a stale leader; our term makes it step down.
            self.counters.stale += 1;
            let ack = self.ack(false, self.log.last_index());
            out.push(Output::Send {
                to: m.leader,
                message: ack,
            });
            return;
        }
        let well_formed = m.prev_log_term <= m.term
            && m.entries.iter().enumerate().all(|(i, p)| {
                self.is_well_formed(p, Height(m.prev_log_index.0 + 1 + i as u64), m.term)
            })
            && m.entries.windows(2).all(|w| w[0].round <= w[1].round)
            && m.entries.first().is_none_or(|p| p.round >= m.prev_log_term);
        if !well_formed {
            self.counters.invalid += 1;
            return;
        }
        self.observe_term(m.term, out);
        if self.is_leader() {
            // Two leaders in one term: impossible among correct validators.
            self.counters.invalid += 1;
            return;
        }
        if self.role == Role::Candidate {
            // §5.2: a candidate that hears from the leader of its term steps down.
            self.become_follower(out);
        }
        self.learn_leader(m.leader, out);
        self.reset_election_timer(out);

        // Entries at or below the compaction point are committed and match.
        let (base, base_term) = self.log.base();
        let mut prev = m.prev_log_index;
        let mut prev_term = m.prev_log_term;
        let mut entries = m.entries;
        if prev < base {
            let skip = usize::try_from(base.0 - prev.0)
                .unwrap_or(usize::MAX)
                .min(entries.len());
            entries.drain(..skip);
            prev = Height(prev.0 + skip as u64);
            if prev < base {
                let ack = self.ack(true, prev);
                out.push(Output::Send {
                    to: m.leader,
                    message: ack,
                });
                return;
            }
            prev_term = base_term;
        }
        // §5.3: reply false if the log does not contain an entry at
        // prevLogIndex whose term matches prevLogTerm.
        match self.log.term_at(prev) {
            None => {
                if m.leader_commit > self.log.last_index() {
                    // Committed entries we do not have at all: if the
                    // leader compacted them, only stored blocks bring them.
                    self.request_sync(out);
                }
                let ack = self.ack(false, self.log.last_index());
                out.push(Output::Send {
                    to: m.leader,
                    message: ack,
                });
                return;
            }
            Some(t) if t != prev_term => {
                if prev <= self.commit_index {
                    self.counters.conflicts_with_committed += 1;
                    return;
                }
                let hint = Height(self.log.first_index_of_term_at(prev).0 - 1)
                    .max(self.commit_index)
                    .min(Height(prev.0 - 1));
                let ack = self.ack(false, hint);
                out.push(Output::Send {
                    to: m.leader,
                    message: ack,
                });
                return;
            }
            Some(_) => {}
        }
        let last_new = Height(prev.0 + entries.len() as u64);
        for entry in entries {
            match self.log.term_at(entry.height) {
                Some(t) if t == entry.round => continue,
                Some(_) => {
                    // §5.3: a conflicting entry and all that follow it go.
                    if entry.height <= self.commit_index {
                        self.counters.conflicts_with_committed += 1;
                        return;
                    }
                    self.truncate_log(entry.height, out);
                }
                None => {}
            }
            if self.log.append(entry.clone()).is_err() {
                self.counters.invalid += 1;
                return;
            }
            self.persist_entry(entry, out);
        }
        // §5.3: commitIndex = min(leaderCommit, index of last new entry).
        let learnt = m.leader_commit.min(last_new);
        if learnt > self.commit_index {
            self.commit_index = learnt;
        }
        // Save before send: the entries above are persisted before this ack.
        let ack = self.ack(true, last_new);
        out.push(Output::Send {
            to: m.leader,
            message: ack,
        });
        self.commit_in_order(out);
    }

    fn ack(&self, success: bool, last_index: Height) -> super::messages::CftMessage {
        self.sign(CftBody::AppendAck(AppendAck {
            term: self.term,
            follower: self.me(),
            success,
            last_index,
        }))
    }

    /// §5.3: the leader tracks each follower's progress; on a mismatch it
    /// retries from the follower's hint.
    pub(crate) fn on_append_ack(&mut self, m: AppendAck, out: &mut Vec<CftOutput>) {
        if m.term < self.term {
            self.counters.stale += 1;
            return;
        }
        self.observe_term(m.term, out);
        if !self.is_leader() || m.term != self.term {
            return;
        }
        let v = m.follower.as_usize();
        if m.success {
            if m.last_index > self.log.last_index() {
                self.counters.invalid += 1;
                return;
            }
            if m.last_index > self.match_index[v] {
                self.match_index[v] = m.last_index;
            }
            if self.next_index[v] <= self.match_index[v] {
                self.next_index[v] = self.match_index[v].next();
            }
            self.advance_commit_index(out);
            if self.next_index[v] <= self.log.last_index() {
                self.send_append(v, out);
            }
            self.maybe_propose(out);
        } else {
            let retry = m.last_index.next().max(self.match_index[v].next());
            if retry < self.next_index[v] {
                self.next_index[v] = retry;
            }
            if self.next_index[v] > self.log.base().0 {
                self.send_append(v, out);
            }
            // Otherwise we compacted what it lacks: it catches up from
            // stored blocks, and the next heartbeat probes again.
        }
    }

    /// §5.3–§5.4.2: the largest N with a majority of matchIndex ≥ N and
    /// log[N].term == currentTerm becomes the commit index; entries of
    /// earlier terms commit with it, never by counting alone.
    pub(crate) fn advance_commit_index(&mut self, out: &mut Vec<CftOutput>) {
        if !self.is_leader() {
            return;
        }
        let mut n = self.log.last_index();
        while n > self.commit_index {
            if self.log.term_at(n) != Some(self.term) {
                break;
            }
            let replicas = self.match_index.iter().filter(|m| **m >= n).count();
            if replicas >= self.cfg.quorums.quorum {
                self.commit_index = n;
                break;
            }
            n = Height(n.0 - 1);
        }
        self.commit_in_order(out);
    }

    /// Hands every committed entry after the last handed over to the driver.
    pub(crate) fn commit_in_order(&mut self, out: &mut Vec<CftOutput>) {
        while self.last_committed < self.commit_index {
            let next = self.last_committed.next();
            let Some(payload) = self.log.get(next).cloned() else {
                self.request_sync(out);
                break;
            };
            let justification = Justification::Cft {
                term: self.term,
                leader: self.leader.unwrap_or(payload.proposer),
            };
            self.hand_over(payload, justification, out);
        }
    }

    /// Passes one committed payload to the driver and forgets its transactions.
    fn hand_over(
        &mut self,
        payload: Payload,
        justification: Justification,
        out: &mut Vec<CftOutput>,
    ) {
        for tx in &payload.txs {
            let h = tx.hash();
            self.pending_txs.remove(&h);
            self.proposed.remove(&h);
        }
        self.last_committed = payload.height;
        self.last_committed_digest = Some(payload.digest());
        out.push(Output::Commit {
            payload,
            justification,
        });
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
    }

    /// The driver executed `height`: compact the log behind it, keeping a
    /// window of entries for followers that lag a little (§7).
    pub(crate) fn on_block_executed(
        &mut self,
        height: Height,
        _block_hash: Hash,
        out: &mut Vec<CftOutput>,
    ) {
        if height <= self.last_executed || height > self.last_committed {
            self.counters.invalid += 1;
            return;
        }
        self.last_executed = height;
        let keep = self.cfg.params.watermark_window;
        let (base, _) = self.log.base();
        if height.0 >= base.0 + keep + self.cfg.params.checkpoint_interval {
            let index = Height(height.0 - keep);
            self.log.compact_to(index);
            let (index, term) = self.log.base();
            out.push(Output::Persist(CftRecord::Compacted { index, term }));
        }
        self.maybe_propose(out);
    }

    /// Asks the driver for stored blocks after the last committed one.
    pub(crate) fn request_sync(&mut self, out: &mut Vec<CftOutput>) {
        if self.sync_outstanding {
            return;
        }
        self.sync_outstanding = true;
        out.push(Output::RequestSync {
            from: self.last_committed.next(),
        });
        out.push(Output::ScheduleTimeout {
            kind: TimeoutKind::Sync,
            after_ms: self.cfg.params.view_change_timeout_ms,
        });
    }

    /// Applies stored blocks that extend the committed chain, in order. A
    /// crash-fault model trusts its peers: a block justified by
    /// `Justification::Cft` was committed by a majority, so it replaces a
    /// conflicting uncommitted entry of ours.
    pub(crate) fn on_sync_blocks(&mut self, blocks: Vec<Block>, out: &mut Vec<CftOutput>) {
        self.sync_outstanding = false;
        let mut applied = 0;
        for block in blocks {
            let h = block.height();
            if h <= self.last_committed {
                continue;
            }
            if h != self.last_committed.next() {
                break;
            }
            let payload = block.payload();
            let max_term = payload.round.max(self.log.last_term());
            if !matches!(block.justification, Justification::Cft { .. })
                || !block.body_matches_header()
                || !self.is_well_formed(&payload, h, max_term)
                || self
                    .log
                    .term_at(self.last_committed)
                    .is_some_and(|t| t > payload.round)
            {
                self.counters.invalid += 1;
                break;
            }
            let stored = match self.log.get(h) {
                Some(ours) if ours.digest() == payload.digest() => true,
                Some(_) => {
                    self.truncate_log(h, out);
                    self.store_synced(payload.clone(), out)
                }
                None => self.store_synced(payload.clone(), out),
            };
            if !stored {
                self.counters.invalid += 1;
                break;
            }
            if h > self.commit_index {
                self.commit_index = h;
            }
            self.hand_over(payload, block.justification.clone(), out);
            applied += 1;
        }
        self.commit_in_order(out);
        if applied > 0 {
            // A response is capped: keep asking until one brings nothing new.
            self.request_sync(out);
        }
    }

    /// Appends a synced entry to the log, durably; false if it does not fit.
    fn store_synced(&mut self, payload: Payload, out: &mut Vec<CftOutput>) -> bool {
        if self.log.append(payload.clone()).is_err() {
            return false;
        }
        self.persist_entry(payload, out);
        true
    }
}
