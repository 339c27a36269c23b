//! The interface every consensus engine implements: a deterministic state
//! machine that turns inputs into outputs (docs/architecture.md, "Consensus:
//! the engine interface").
//!
//! The engine never reads a clock, a random source, the network or the disk.
//! The driver (the node's tokio loop, or the simulator) feeds it [`Input`]s —
//! with the current time — and carries out its [`Output`]s in order. Outputs
//! are ordered so that a [`Output::Persist`] comes before the send of the vote
//! it protects: a driver that persists and sends in the order given never lets
//! a vote leave the node before it is durable (save before send).

use phalanx_crypto::Hash;
use phalanx_ledger::{
    Block, Evidence, Height, Justification, Payload, SignedTransaction, SignedVote, ValidatorIndex,
};
use serde::{Deserialize, Serialize};

/// Something that happened, fed to an engine.
#[derive(Clone, Debug)]
pub enum Input<M> {
    /// The driver started (or restarted) the engine: arm timers, resend what
    /// must be resent.
    Start,
    /// A consensus message from the network. `from` is the transport-level
    /// sender and is not trusted: engines check who signed the message.
    Message {
        /// Who the transport says sent it.
        from: ValidatorIndex,
        /// The message.
        message: M,
    },
    /// New transactions from the mempool (already signature-checked by the driver).
    Transactions(Vec<SignedTransaction>),
    /// A timer armed with [`Output::ScheduleTimeout`] fired.
    Timeout(TimeoutKind),
    /// The driver executed and stored the block the engine committed at `height`.
    BlockExecuted {
        /// The height.
        height: Height,
        /// The hash of the stored block (covers its state root).
        block_hash: Hash,
    },
    /// Certified blocks fetched from peers after an [`Output::RequestSync`].
    /// Untrusted: the engine verifies every justification.
    SyncBlocks(Vec<Block>),
}

/// Something an engine asks its driver to do. Carry them out in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Output<M> {
    /// Send to one validator.
    Send {
        /// The recipient.
        to: ValidatorIndex,
        /// The message.
        message: M,
    },
    /// Send to every other validator.
    Broadcast(M),
    /// Make this durable before carrying out any later output.
    Persist(Persisted),
    /// Deliver `Input::Timeout(kind)` after `after_ms`. A later schedule of the
    /// same kind replaces the earlier one.
    ScheduleTimeout {
        /// Which timer.
        kind: TimeoutKind,
        /// Delay in milliseconds.
        after_ms: u64,
    },
    /// The payload at the next height is final: execute it, store the block
    /// with this justification, then report `Input::BlockExecuted`. Commits
    /// come in height order, each height once.
    Commit {
        /// What to execute.
        payload: Payload,
        /// What makes it final.
        justification: Justification,
    },
    /// A validator equivocated: store, count and gossip this.
    Evidence(Evidence),
    /// The engine is behind: fetch certified blocks from `from` upwards and
    /// deliver them with `Input::SyncBlocks`.
    RequestSync {
        /// The first missing height.
        from: Height,
    },
    /// The engine moved to a new view (for logs and metrics).
    ViewChanged {
        /// The new view.
        view: u64,
        /// Its primary.
        primary: ValidatorIndex,
    },
}

/// A timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TimeoutKind {
    /// The primary's batch timer: propose what is pending even if the batch is not full.
    Batch,
    /// Pending work has not committed in time: start a view change
    /// (armed in `view`; stale if the view moved on).
    Progress {
        /// The view it was armed in.
        view: u64,
    },
    /// A view change to `view` has not completed in time: try the next view.
    ViewChange {
        /// The view being changed to.
        view: u64,
    },
    /// Retry a sync request that got no useful answer.
    Sync,
}

/// State an engine needs to find again after a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Persisted {
    /// A vote this validator signed; it must never sign a different digest
    /// for the same (kind, view, seq).
    Vote(SignedVote),
    /// The view this validator has moved to (it never goes back); `active`
    /// is false while the view change to it is under way.
    View {
        /// The view.
        view: u64,
        /// Whether its NEW-VIEW was accepted.
        active: bool,
    },
    /// A prepared certificate, kept so a restarted replica still reports it
    /// in VIEW-CHANGE (persisted before the COMMIT it leads to is sent).
    Prepared(crate::pbft::messages::PreparedCert),
    /// A stable checkpoint with its proof: records at or below `seq` may be pruned.
    StableCheckpoint {
        /// The checkpoint height.
        seq: Height,
        /// The block hash at that height.
        digest: Hash,
        /// Quorum CHECKPOINT votes.
        proof: Vec<SignedVote>,
    },
    /// A record of the crash-fault-tolerant baseline (term and vote, log
    /// entries, truncations, compaction).
    Cft(crate::cft::messages::CftRecord),
    /// The NEW-VIEW of the view this PBFT replica entered last, kept so it
    /// can still hand it to a replica that missed it after both restarted
    /// (a replica restored in a view change otherwise waits alone while
    /// the others run the view: issue 22). Only the latest one matters.
    /// Last in the enum, so records written before it decode unchanged.
    NewView(crate::pbft::messages::NewView),
    /// The f+1 COMPLAINTs that justify the PBFT view change under way,
    /// kept so the VIEW-CHANGE resent after a restart still makes the
    /// replicas in the earlier view join it. Only the latest matters.
    ViewJustification(Vec<crate::pbft::messages::Complaint>),
}

/// What an engine restores from on restart.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    /// Every [`Persisted`] record not yet pruned, in the order written.
    pub records: Vec<Persisted>,
    /// The height of the last block in the store (0 = only genesis).
    pub last_executed: Height,
    /// The hash of that block.
    pub last_block_hash: Hash,
    /// Stored blocks above the last stable checkpoint among `records` (more
    /// is fine: older ones are ignored). Their commit certificates go into
    /// this replica's VIEW-CHANGEs after a restart, so a block it learnt by
    /// catch-up (and never prepared) still binds the next view.
    pub recent_blocks: Vec<phalanx_ledger::Block>,
}

impl Restored {
    /// The heights whose blocks `recent_blocks` should hold, given the
    /// records and the last stored height: above the last stable checkpoint
    /// in `records`, at most `window` of them.
    pub fn recent_heights(
        records: &[Persisted],
        last_executed: Height,
        window: u64,
    ) -> std::ops::RangeInclusive<u64> {
        let stable = records
            .iter()
            .filter_map(|r| match r {
                Persisted::StableCheckpoint { seq, .. } => Some(seq.0),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        stable + 1..=last_executed.0.min(stable.saturating_add(window))
    }
}

/// A snapshot of an engine's progress, for status pages and checkers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStatus {
    /// Current view (PBFT) or term (CFT).
    pub view: u64,
    /// The validator that leads `view`.
    pub primary: ValidatorIndex,
    /// Whether a view change is under way.
    pub view_changing: bool,
    /// The last height committed and executed.
    pub last_executed: Height,
    /// The last stable checkpoint.
    pub stable_checkpoint: Height,
    /// Transactions waiting to be ordered.
    pub pending_txs: usize,
}

/// A deterministic consensus engine.
pub trait Engine {
    /// The engine's wire message.
    type Message: Clone + std::fmt::Debug + Serialize + serde::de::DeserializeOwned;

    /// Handles one input at time `now_ms` (milliseconds on the driver's clock)
    /// and returns what to do, in order.
    fn handle(&mut self, now_ms: u64, input: Input<Self::Message>) -> Vec<Output<Self::Message>>;

    /// Progress snapshot.
    fn status(&self) -> EngineStatus;

    /// Checks the engine's internal invariants; the simulator and debug
    /// builds call it after every input.
    fn check_invariants(&self) -> Result<(), String>;
}
