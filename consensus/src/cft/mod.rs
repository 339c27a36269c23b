//! The crash-fault-tolerant baseline: Raft (Ongaro & Ousterhout, "In Search
//! of an Understandable Consensus Algorithm", USENIX ATC 2014) as a
//! deterministic state machine behind the same [`Engine`] interface as PBFT.
//!
//! n = 2f+1 validators tolerate f crashes with majority quorums. It exists
//! for the crash-vs-Byzantine comparison: it is cheaper than PBFT when
//! faults are crashes, and it believes every correctly signed message, so a
//! leader that equivocates makes followers commit different blocks.
//!
//! Layout: [`messages`] (wire types, signatures, persisted records), [`log`]
//! (the replicated log), [`election`] (§5.2 terms and elections, §5.4.1
//! election restriction), [`replication`] (§5.3 log replication, §5.4.2
//! commit rule, batching, catch-up). This file holds the state, restart and
//! the dispatch.
//!
//! Mapping onto the shared interface: the log index is the block height,
//! an entry is a [`phalanx_ledger::Payload`] whose `round` is the term it
//! was created in; `TimeoutKind::Progress { view: term }` is the election
//! timer and `TimeoutKind::Batch` the leader's batch-and-heartbeat timer;
//! `TimeoutKind::Sync` retries catch-up. Election-timeout jitter is a hash
//! of (validator, term), so nodes time out at different times without a
//! random source.
//!
//! Catch-up: log replication covers a follower that is behind while the
//! leader still holds the entries. Below the leader's compaction point a
//! follower asks for blocks (`Output::RequestSync`) and accepts those
//! justified by [`phalanx_ledger::Justification::Cft`] that extend its
//! committed chain — trusting the peer, as a crash-fault model does.
//!
//! This module must never read a clock, a random source, the disk or the
//! network; all of that arrives as [`Input`] and leaves as [`Output`].

pub mod election;
pub mod log;
pub mod messages;
pub mod replication;

use crate::config::Config;
use crate::config::ConfigError;
use crate::engine::{Engine, EngineStatus, FaultModel, Input, Output, Protocol, Restored};
use log::Log;
use messages::{CftBody, CftMessage, CftRecord};
use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::{Height, SignedTransaction, ValidatorIndex};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

/// The output type of the CFT engine.
pub type CftOutput = Output<CftMessage, CftRecord>;

/// What this validator is doing in its current term (§5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Answers leaders and candidates.
    Follower,
    /// Asking for votes.
    Candidate,
    /// Replicating its log.
    Leader,
}

/// Counters of things dropped or noticed, for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CftCounters {
    /// Messages dropped because the signer is unknown or the signature is bad.
    pub bad_signature: u64,
    /// Messages dropped as malformed or inconsistent.
    pub invalid: u64,
    /// Messages from an earlier term (rejected).
    pub stale: u64,
    /// Transactions dropped because the pending queue was full.
    pub pending_overflow: u64,
    /// Elections this validator started.
    pub elections: u64,
    /// AppendEntries dropped because they contradict a committed entry
    /// (only an equivocating leader or a corrupt store can cause this).
    pub conflicts_with_committed: u64,
    /// Pending transactions dropped because their nonce was used
    /// ([`Input::Forget`]).
    pub forgotten: u64,
}

/// The CFT engine of one validator.
pub struct Cft {
    pub(crate) cfg: Config,
    pub(crate) key: Keypair,
    /// Current term and the vote cast in it (durable).
    pub(crate) term: u64,
    pub(crate) voted_for: Option<ValidatorIndex>,
    /// The last hard state handed to the driver to persist.
    pub(crate) persisted_hard: (u64, Option<ValidatorIndex>),
    pub(crate) role: Role,
    /// The leader of `term`, once known.
    pub(crate) leader: Option<ValidatorIndex>,
    pub(crate) log: Log,
    /// Next write counter for entry/truncate records.
    pub(crate) next_write: u64,
    /// Highest index known committed.
    pub(crate) commit_index: Height,
    /// The last height handed to the driver with `Output::Commit`.
    pub(crate) last_committed: Height,
    /// The payload digest handed over at `last_committed` (committed prefix check).
    pub(crate) last_committed_digest: Option<Hash>,
    /// The last height the driver reported executed.
    pub(crate) last_executed: Height,
    /// Votes granted to this candidate in `term`.
    pub(crate) votes: BTreeSet<ValidatorIndex>,
    /// Leader: next index to send to each validator (§5.3).
    pub(crate) next_index: Vec<Height>,
    /// Leader: highest index known replicated on each validator.
    pub(crate) match_index: Vec<Height>,
    /// Leader: `match_index` at the previous heartbeat (to notice a stall).
    pub(crate) heartbeat_match: Vec<Height>,
    pub(crate) pending: VecDeque<Hash>,
    pub(crate) pending_txs: HashMap<Hash, SignedTransaction>,
    /// Pending transactions in this leader's uncommitted entries.
    pub(crate) proposed: HashSet<Hash>,
    /// The election timer fires no earlier than this.
    pub(crate) election_deadline_ms: u64,
    /// The term of the election timer armed with the driver, if any.
    pub(crate) election_timer: Option<u64>,
    /// Elections this validator started since it last heard from a leader
    /// or became one (each doubles the election timeout; not persisted).
    pub(crate) elections_in_a_row: u32,
    /// Leader: when the next heartbeat is due.
    pub(crate) heartbeat_due_ms: u64,
    /// Leader: when a partial batch is due, if one is waiting.
    pub(crate) batch_due_ms: Option<u64>,
    /// Leader: when the armed `Batch` timer fires, if armed.
    pub(crate) leader_timer_ms: Option<u64>,
    pub(crate) sync_outstanding: bool,
    pub(crate) now_ms: u64,
    pub(crate) counters: CftCounters,
}

impl std::fmt::Debug for Cft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cft")
            .field("me", &self.cfg.me)
            .field("term", &self.term)
            .field("role", &self.role)
            .field("leader", &self.leader)
            .field("last_index", &self.log.last_index())
            .field("commit_index", &self.commit_index)
            .finish_non_exhaustive()
    }
}

impl Cft {
    /// A fresh engine at genesis. `cfg` should come from
    /// [`Config::from_genesis_cft`] (majority quorums).
    pub fn new(cfg: Config, key: Keypair, genesis_hash: Hash) -> Cft {
        Cft::restore(cfg, key, Restored::genesis(genesis_hash))
    }

    /// An engine restarted from persisted records and the store's last
    /// block. It restarts as a follower in its persisted term with its
    /// persisted vote, so it never votes twice in one term (§5.2), and with
    /// every entry it acknowledged (§5.3).
    pub fn restore(cfg: Config, key: Keypair, restored: Restored<CftRecord>) -> Cft {
        let mut hard = (0u64, None);
        let mut base = (Height::GENESIS, 0u64);
        let mut writes = Vec::new();
        for record in restored.records {
            match record {
                CftRecord::HardState { term, voted_for } => {
                    // The hard state only grows: a later term, or a vote
                    // cast in the same term.
                    if (term, voted_for.is_some()) > (hard.0, hard.1.is_some()) {
                        hard = (term, voted_for);
                    }
                }
                CftRecord::Compacted { index, term } => {
                    if index > base.0 {
                        base = (index, term);
                    }
                }
                CftRecord::Entry { write, payload } => writes.push((write, Some(payload), None)),
                CftRecord::Truncate { write, from } => writes.push((write, None, Some(from))),
            }
        }
        writes.sort_by_key(|(w, _, _)| *w);
        let next_write = writes.last().map_or(0, |(w, _, _)| w + 1);
        let mut entries: BTreeMap<Height, phalanx_ledger::Payload> = BTreeMap::new();
        for (_, payload, from) in writes {
            match (payload, from) {
                (Some(p), _) => {
                    // A write at an index voids what was above it then.
                    entries.split_off(&p.height.next());
                    entries.insert(p.height, p);
                }
                (None, Some(from)) => {
                    entries.split_off(&from);
                }
                (None, None) => {}
            }
        }
        let last_executed = restored.last_executed;
        if base.0 > last_executed {
            // Cannot happen with a driver that persists in order; fall back to
            // what the store holds and catch up from peers.
            base = (last_executed, 0);
        }
        let mut log = Log::new(base.0, base.1);
        for (_, payload) in entries.range(base.0.next()..) {
            if log.append(payload.clone()).is_err() {
                break;
            }
        }
        if log.last_index() < last_executed {
            // The store is ahead of the records (it cannot be when records
            // are persisted before the commits they lead to): restart the
            // log at the last stored block.
            let term = restored
                .recent_blocks
                .iter()
                .find(|b| b.height() == last_executed)
                .map_or(log.last_term(), |b| b.header.round);
            log = Log::new(last_executed, term);
        }
        let n = cfg.n();
        let last_committed_digest = log.get(last_executed).map(|p| p.digest());
        let mut engine = Cft {
            key,
            term: hard.0,
            voted_for: hard.1,
            persisted_hard: hard,
            role: Role::Follower,
            leader: None,
            log,
            next_write,
            commit_index: last_executed,
            last_committed: last_executed,
            last_committed_digest,
            last_executed,
            votes: BTreeSet::new(),
            next_index: vec![Height::GENESIS; n],
            match_index: vec![Height::GENESIS; n],
            heartbeat_match: vec![Height::GENESIS; n],
            pending: VecDeque::new(),
            pending_txs: HashMap::new(),
            proposed: HashSet::new(),
            election_deadline_ms: 0,
            election_timer: None,
            elections_in_a_row: 0,
            heartbeat_due_ms: 0,
            batch_due_ms: None,
            leader_timer_ms: None,
            sync_outstanding: false,
            now_ms: 0,
            counters: CftCounters::default(),
            cfg,
        };
        engine.election_deadline_ms = engine.election_timeout_ms();
        engine
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Drop and event counters.
    pub fn counters(&self) -> &CftCounters {
        &self.counters
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The vote cast in the current term.
    pub fn voted_for(&self) -> Option<ValidatorIndex> {
        self.voted_for
    }

    /// The leader of the current term, if known.
    pub fn leader(&self) -> Option<ValidatorIndex> {
        self.leader
    }

    /// The replicated log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The highest index known committed.
    pub fn commit_index(&self) -> Height {
        self.commit_index
    }

    pub(crate) fn me(&self) -> ValidatorIndex {
        self.cfg.me
    }

    /// Signs a body with this validator's key.
    pub(crate) fn sign(&self, body: CftBody) -> CftMessage {
        CftMessage::sign(body, &self.cfg.chain_id, &self.key)
    }

    /// Persists the hard state if it changed (save before send: callers
    /// push this before any message that depends on it).
    pub(crate) fn persist_hard_state(&mut self, out: &mut Vec<CftOutput>) {
        let hard = (self.term, self.voted_for);
        if hard != self.persisted_hard {
            self.persisted_hard = hard;
            out.push(Output::Persist(CftRecord::HardState {
                term: self.term,
                voted_for: self.voted_for,
            }));
        }
    }

    /// Persists a log entry (before any acknowledgement or send of it).
    pub(crate) fn persist_entry(
        &mut self,
        payload: phalanx_ledger::Payload,
        out: &mut Vec<CftOutput>,
    ) {
        let write = self.next_write;
        self.next_write += 1;
        out.push(Output::Persist(CftRecord::Entry { write, payload }));
    }

    /// Removes entries from `from` on, durably.
    pub(crate) fn truncate_log(&mut self, from: Height, out: &mut Vec<CftOutput>) {
        self.log.truncate_from(from);
        let write = self.next_write;
        self.next_write += 1;
        out.push(Output::Persist(CftRecord::Truncate { write, from }));
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

    fn on_transactions(&mut self, txs: Vec<SignedTransaction>, out: &mut Vec<CftOutput>) {
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
    }

    fn on_message(&mut self, message: CftMessage, out: &mut Vec<CftOutput>) {
        if message.verify(&self.cfg).is_err() {
            self.counters.bad_signature += 1;
            return;
        }
        if message.body.sender() == self.me() {
            self.counters.invalid += 1;
            return;
        }
        match message.body {
            CftBody::RequestVote(m) => self.on_request_vote(m, out),
            CftBody::Vote(m) => self.on_vote(m, out),
            CftBody::AppendEntries(m) => self.on_append_entries(m, out),
            CftBody::AppendAck(m) => self.on_append_ack(m, out),
        }
    }

    fn on_start(&mut self, out: &mut Vec<CftOutput>) {
        // Timers do not survive a restart: arm the election timer afresh.
        self.election_timer = None;
        self.leader_timer_ms = None;
        self.reset_election_timer(out);
        if self.role == Role::Leader {
            self.send_heartbeats(out);
        }
    }

    fn on_timeout(&mut self, kind: crate::engine::TimeoutKind, out: &mut Vec<CftOutput>) {
        use crate::engine::TimeoutKind;
        match kind {
            TimeoutKind::Progress { view } => self.on_election_timeout(view, out),
            TimeoutKind::Batch => self.on_leader_timer(out),
            TimeoutKind::Sync => {
                self.sync_outstanding = false;
            }
            TimeoutKind::ViewChange { .. }
            | TimeoutKind::Slot
            | TimeoutKind::FallbackBatch
            | TimeoutKind::FallbackSync => {}
        }
    }
}

impl Protocol for Cft {
    const KIND: phalanx_ledger::EngineKind = phalanx_ledger::EngineKind::Cft;
    const FAULT_MODEL: FaultModel = FaultModel::Crash;

    fn config(
        genesis: &phalanx_ledger::Genesis,
        me: ValidatorIndex,
    ) -> Result<Config, ConfigError> {
        Config::from_genesis_cft(genesis, me)
    }

    fn restore(cfg: Config, key: Keypair, restored: Restored<CftRecord>) -> Cft {
        Cft::restore(cfg, key, restored)
    }
}

impl Engine for Cft {
    type Message = CftMessage;
    type Record = CftRecord;

    fn handle(&mut self, now_ms: u64, input: Input<CftMessage>) -> Vec<CftOutput> {
        self.now_ms = self.now_ms.max(now_ms);
        let mut out = Vec::new();
        match input {
            Input::Start => self.on_start(&mut out),
            Input::Message { message, .. } => self.on_message(message, &mut out),
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
            view: self.term,
            primary: self
                .leader
                .or(self.voted_for)
                .unwrap_or_else(|| self.cfg.primary(self.term)),
            view_changing: self.leader.is_none(),
            last_executed: self.last_executed,
            stable_checkpoint: self.log.base().0,
            pending_txs: self.pending_txs.len(),
            diverged_at: None,
        }
    }

    fn check_invariants(&self) -> Result<(), String> {
        if self.last_executed > self.last_committed || self.last_committed > self.commit_index {
            return Err(format!(
                "executed {} / handed over {} / commit index {} out of order",
                self.last_executed, self.last_committed, self.commit_index
            ));
        }
        if self.commit_index > self.log.last_index() {
            return Err(format!(
                "commit index {} beyond the log's last index {}",
                self.commit_index,
                self.log.last_index()
            ));
        }
        // At most one vote per term, and it is durable before anyone hears of it.
        if (self.term, self.voted_for) != self.persisted_hard {
            return Err(format!(
                "hard state (term {}, vote {:?}) not persisted (last persisted {:?})",
                self.term, self.voted_for, self.persisted_hard
            ));
        }
        if self.role == Role::Leader
            && (self.leader != Some(self.me()) || self.voted_for != Some(self.me()))
        {
            return Err("a leader that did not vote for itself".into());
        }
        if self.role == Role::Candidate && self.voted_for != Some(self.me()) {
            return Err("a candidate that did not vote for itself".into());
        }
        // The committed prefix never changes.
        if let (Some(digest), Some(entry)) = (
            self.last_committed_digest,
            self.log.get(self.last_committed),
        ) {
            if entry.digest() != digest {
                return Err(format!(
                    "committed entry {} changed in the log",
                    self.last_committed
                ));
            }
        }
        let mut expected = self.log.base().0;
        let mut term = self.log.base().1;
        for entry in self.log.iter() {
            expected = expected.next();
            if entry.height != expected || entry.round < term {
                return Err(format!("log entry {} out of place", entry.height));
            }
            term = entry.round;
        }
        if let Some(h) = self
            .proposed
            .iter()
            .find(|h| !self.pending_txs.contains_key(*h))
        {
            return Err(format!("proposed set holds {h}, which is not pending"));
        }
        Ok(())
    }
}
