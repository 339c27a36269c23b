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

use crate::config::{Config, ConfigError};
use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::{
    Block, EngineKind, Evidence, Genesis, Height, Justification, Payload, SignedTransaction,
    SignedVote, ValidatorIndex,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The most blocks one catch-up answer carries (the node's sync protocol
/// and the simulator alike): an engine that gets this many asks for more.
pub const SYNC_MAX_BLOCKS: u64 = 64;

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
    /// Transactions handed in earlier that can no longer apply: a committed
    /// block used their sender's nonce (with another transaction, say a
    /// conflicting one a client sent elsewhere). The engine stops waiting
    /// for them; one it kept would hold it "busy" forever and make it
    /// complain about a primary that did nothing wrong.
    Forget(Vec<Hash>),
    /// The driver found a nonce for the job of an [`Output::Mine`]: the
    /// seal hash of (`job`, `nonce`) meets the job's target. Untrusted as
    /// far as the engine is concerned: it checks the seal again.
    Mined {
        /// The job's header hash.
        job: Hash,
        /// The nonce.
        nonce: u64,
    },
}

/// Proof-of-work search handed to the driver ([`Output::Mine`]): find a
/// `nonce` such that `pow::seal_hash(header, nonce)`, read as a
/// big-endian number, is at most `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MineJob {
    /// What the seal covers (parent, payload digest, target).
    pub header: Hash,
    /// The target, 256 bits big-endian.
    pub target: [u8; 32],
}

/// Something an engine asks its driver to do. Carry them out in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Output<M, R> {
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
    Persist(R),
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
    /// come in height order, each height once — except above
    /// [`Engine::final_height`] (proof of work, proof of stake), where a
    /// block is tentative and an [`Output::Revert`] may take it out again,
    /// after which the height is committed anew.
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
    /// A reorg: the stored tentative blocks above height `to` are
    /// abandoned. Take them out of the store, newest first, rolling the
    /// state back exactly; their transactions that can still apply go
    /// back to the mempool. The `Commit`s of the new branch follow. Never
    /// below [`Engine::final_height`].
    Revert {
        /// The height of the common ancestor, which stays.
        to: Height,
    },
    /// The tentative block stored at `height` is final now (PBFT agreed on
    /// its payload after a fallback): replace its justification with this
    /// one and make it irreversible. Its hash and state do not change.
    /// Heights are finalized in order, each above the last final block.
    Finalize {
        /// The height.
        height: Height,
        /// What makes it final (a PBFT commit certificate).
        justification: Justification,
    },
    /// Search for a nonce (on worker threads, or, in the simulator, after
    /// a time drawn from the node's hash rate) and report it with
    /// `Input::Mined`. Replaces the job before; `None` stops mining.
    Mine(Option<MineJob>),
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
    /// A new proof-of-stake slot begins.
    Slot,
    /// A fallback engine's [`TimeoutKind::Batch`] (PBFT with a fallback
    /// runs two engines; their timers must not replace each other's).
    FallbackBatch,
    /// A fallback engine's [`TimeoutKind::Sync`].
    FallbackSync,
}

/// A record an engine asks its driver to make durable (with
/// [`Output::Persist`]) and gets back on restart (in [`Restored`]). Each
/// engine has its own record type; the runtime's write-ahead log stores
/// any of them by the key the record names.
pub trait Record:
    Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The record's key in the log: a record replaces an earlier one with
    /// the same key.
    fn key(&self) -> RecordKey;

    /// Writing this record makes every record keyed at or below this
    /// height obsolete (a stable checkpoint, a log compaction).
    fn prunes_up_to(&self) -> Option<Height>;

    /// What an honest validator promises by having written this record
    /// (see [`Promise`]).
    fn promises(&self) -> Vec<Promise> {
        Vec::new()
    }
}

/// Where a [`Record`] lives in the log.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordKey {
    /// The height at or below which a pruning record deletes it (`None`:
    /// kept until overwritten).
    pub seq: Option<Height>,
    /// The key bytes (unique per record that must survive side by side).
    pub bytes: Vec<u8>,
}

impl RecordKey {
    /// A key that one record at a time holds (the current view, the last
    /// checkpoint): never pruned, only overwritten.
    pub fn single(name: &[u8]) -> RecordKey {
        RecordKey {
            seq: None,
            bytes: name.to_vec(),
        }
    }

    /// A key for a record that protects height `seq`: `prefix`, the
    /// height big-endian (so keys sort by height), then `rest`.
    pub fn at(prefix: &[u8], seq: Height, rest: &[u8]) -> RecordKey {
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(&seq.0.to_be_bytes());
        bytes.extend_from_slice(rest);
        RecordKey {
            seq: Some(seq),
            bytes,
        }
    }
}

/// Something an honest validator commits to when it signs a message: one
/// `digest` for the slot (`what`, `view`, `seq`) — a PBFT vote, a CFT
/// vote in a term, a CFT leader's entry. An honest validator never makes
/// two different promises for one slot, even across restarts, and has each
/// one on disk (in a [`Record`]) before the message carrying it leaves
/// (save before send). The simulator checks both for every engine through
/// [`Message::promises`] and [`Record::promises`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Promise {
    /// The kind of promise (a vote kind, "vote", "entry", "view").
    pub what: &'static str,
    /// The view or term.
    pub view: u64,
    /// The sequence number or log index (0 when the slot has none).
    pub seq: u64,
    /// What is promised.
    pub digest: Hash,
}

/// One signed statement inside a message (see [`Message::statements`]):
/// who signed it, what kind it is, and a fingerprint of what was signed
/// together with the signature — two statements are the same only if both
/// the content and the signature are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Statement {
    /// The validator whose signature it carries.
    pub signer: ValidatorIndex,
    /// The kind ("prepare", "view-change", ...).
    pub what: &'static str,
    /// SHA-256 of the encoded (content, signature).
    pub fingerprint: Hash,
}

impl Statement {
    /// The statement `signer` made by signing `signed` (content and
    /// signature, encoded together).
    pub fn of<T: Serialize + ?Sized>(
        signer: ValidatorIndex,
        what: &'static str,
        signed: &T,
    ) -> Statement {
        Statement {
            signer,
            what,
            fingerprint: Hash::digest(&phalanx_crypto::encode(signed)),
        }
    }
}

/// An engine's wire message, as the runtime, the metrics, the logs and the
/// simulator see it.
pub trait Message:
    Clone + std::fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Every kind this engine sends, indexed by the first byte of the
    /// encoding (postcard writes an enum's variant index first, and a
    /// struct's first enum field's): metrics list them from start-up, and
    /// [`Message::wire_kind`] reads an encoded message's kind without
    /// decoding it.
    const KINDS: &'static [&'static str];

    /// What the message is (cheap: no hashing).
    fn summary(&self) -> Summary;

    /// The signed votes it carries (whose signatures a node may cache).
    fn votes(&self) -> Vec<&SignedVote> {
        Vec::new()
    }

    /// The validator it proves faulty, if it is equivocation evidence.
    fn evidence_offender(&self) -> Option<ValidatorIndex> {
        None
    }

    /// What `sender` promises by sending it (only what `sender` itself
    /// signed: a NEW-VIEW, for one, relays others' VIEW-CHANGEs).
    fn promises(&self, sender: ValidatorIndex) -> Vec<Promise>;

    /// Every signed statement the message carries, its sender's own and
    /// the ones it passes on (votes in certificates, VIEW-CHANGEs in a
    /// NEW-VIEW, evidence). The simulator checks that an honest validator
    /// passes on, in another honest validator's name, only what that
    /// validator sent — an impersonation the engine let through shows up
    /// there whatever the engine's own checks say.
    fn statements(&self) -> Vec<Statement> {
        Vec::new()
    }

    /// One readable line (the simulator's `--verbose` trace).
    fn describe(&self) -> String;

    /// The kind of an encoded message, from its first byte.
    fn wire_kind(bytes: &[u8]) -> Option<&'static str> {
        Self::KINDS.get(usize::from(*bytes.first()?)).copied()
    }
}

/// What the metrics, the debug log and the simulator's trace say about one
/// consensus message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The kind, one of [`Message::KINDS`].
    pub kind: &'static str,
    /// The view (a PBFT VIEW-CHANGE's: the view it asks for) or term.
    pub view: u64,
    /// The sequence number or log index it is about (PBFT VIEW-CHANGE: its
    /// stable checkpoint; NEW-VIEW: the highest it proposes again; CFT: the
    /// last index an append or its acknowledgement covers).
    pub seq: u64,
    /// The validator that signed it.
    pub signer: ValidatorIndex,
    /// The digest voted for, when the message carries one.
    pub digest: Option<Hash>,
}

impl Summary {
    /// The first 4 bytes of the digest in hex, or "-".
    pub fn short_digest(&self) -> String {
        self.digest
            .map_or_else(|| "-".into(), |d| hex::encode(&d.0[..4]))
    }
}

/// What an engine restores from on restart.
#[derive(Clone, Debug)]
pub struct Restored<R> {
    /// The engine's records, as the log returns them: each key once (the
    /// last written), without pruned ones, in key order — not the order
    /// written. Every engine's `restore` must accept that.
    pub records: Vec<R>,
    /// The height of the last block in the store (0 = only genesis).
    pub last_executed: Height,
    /// The hash of that block.
    pub last_block_hash: Hash,
    /// Stored blocks above the last pruning record among `records` (more
    /// is fine: older ones are ignored). A PBFT replica puts their commit
    /// certificates into its VIEW-CHANGEs after a restart, so a block it
    /// learnt by catch-up (and never prepared) still binds the next view.
    pub recent_blocks: Vec<phalanx_ledger::Block>,
}

impl<R: Record> Restored<R> {
    /// A fresh engine's: no records, only the genesis block.
    pub fn genesis(genesis_hash: Hash) -> Restored<R> {
        Restored {
            records: Vec::new(),
            last_executed: Height::GENESIS,
            last_block_hash: genesis_hash,
            recent_blocks: Vec::new(),
        }
    }

    /// The heights whose blocks `recent_blocks` should hold, given the
    /// records and the last stored height: above the last pruning record
    /// in `records`, at most `window` of them.
    pub fn recent_heights(
        records: &[R],
        last_executed: Height,
        window: u64,
    ) -> std::ops::RangeInclusive<u64> {
        let stable = records
            .iter()
            .filter_map(|r| r.prunes_up_to().map(|h| h.0))
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
    /// A height where this replica's own block differs from the one a
    /// quorum certified (a stable checkpoint's digest): its store is
    /// corrupt or it executes differently. The driver must stop.
    #[serde(default)]
    pub diverged_at: Option<Height>,
}

/// A deterministic consensus engine: the state machine a driver runs.
///
/// Object-safe, so the simulator can box the engine under test and a test
/// can hand it any engine (a mutant, a wrapper); building one is
/// [`Protocol`]'s.
pub trait Engine: Send + 'static {
    /// The engine's wire message.
    type Message: Message;
    /// What it persists.
    type Record: Record;

    /// Handles one input at time `now_ms` (milliseconds on the driver's clock)
    /// and returns what to do, in order.
    fn handle(
        &mut self,
        now_ms: u64,
        input: Input<Self::Message>,
    ) -> Vec<Output<Self::Message, Self::Record>>;

    /// Progress snapshot.
    fn status(&self) -> EngineStatus;

    /// Checks the engine's internal invariants; the simulator and debug
    /// builds call it after every input.
    fn check_invariants(&self) -> Result<(), String>;

    /// The highest stored height that can never be reverted. Every
    /// committed block is final under PBFT and CFT; proof of work and
    /// proof of stake only make tentative blocks (a block is then
    /// "tentative with k confirmations": k blocks, itself included, on
    /// top of the parent it extends).
    fn final_height(&self) -> Height {
        self.status().last_executed
    }

    /// What an engine with modes is doing (PBFT with a fallback: "pbft",
    /// "fallback", "recovering"); `None` for engines without modes.
    fn mode(&self) -> Option<&'static str> {
        None
    }
}

/// The faults an engine tolerates, and what follows for n validators: the
/// simulator's checkers, the scenario generator and the fault tools work
/// from this, not from an engine's own configuration (so a mutant's
/// quorum cannot lower the bar it is checked against).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultModel {
    /// Up to f validators may lie or equivocate: n ≥ 3f+1, quorums of
    /// ⌈(n+f+1)/2⌉ (2f+1 when n = 3f+1).
    Byzantine,
    /// Up to f validators may crash, none lie: n ≥ 2f+1, majority quorums.
    Crash,
    /// PBFT with a longest-chain fallback: final blocks are as safe as
    /// PBFT's (f < n/3 Byzantine); while no quorum is reachable, tentative
    /// blocks keep coming (a Nakamoto chain above the last final block),
    /// and PBFT finalizes one branch of them once its quorum is back.
    Hybrid,
    /// Longest (heaviest) chain: safe and live while honest validators
    /// hold most of the hash rate or stake (here: f < n/2 validators with
    /// equal shares); nothing is final, blocks only gain confirmations
    /// (Nakamoto 2008; Garay, Kiayias & Leonardos, "The Bitcoin Backbone
    /// Protocol", 2015).
    Nakamoto,
}

impl FaultModel {
    /// Faulty validators tolerated with `n`.
    pub fn max_faulty(self, n: usize) -> usize {
        match self {
            FaultModel::Byzantine | FaultModel::Hybrid => n.saturating_sub(1) / 3,
            FaultModel::Crash | FaultModel::Nakamoto => n.saturating_sub(1) / 2,
        }
    }

    /// The votes a decision needs with `n` validators.
    pub fn quorum(self, n: usize) -> usize {
        match self {
            FaultModel::Byzantine | FaultModel::Hybrid => (n + self.max_faulty(n) + 1).div_ceil(2),
            FaultModel::Crash | FaultModel::Nakamoto => n / 2 + 1,
        }
    }

    /// The fewest validators that tolerate one fault.
    pub fn min_validators(self) -> usize {
        match self {
            FaultModel::Byzantine | FaultModel::Hybrid => 4,
            FaultModel::Crash => 3,
            FaultModel::Nakamoto => 1,
        }
    }

    /// Whether validators may be Byzantine (not merely crash).
    pub fn byzantine(self) -> bool {
        matches!(
            self,
            FaultModel::Byzantine | FaultModel::Hybrid | FaultModel::Nakamoto
        )
    }

    /// Whether every committed block is final (quorum engines) rather
    /// than tentative (longest-chain engines, and the hybrid while it
    /// falls back).
    pub fn finalizes(self) -> bool {
        matches!(self, FaultModel::Byzantine | FaultModel::Crash)
    }

    /// Whether the engine makes tentative blocks (at all times, or while
    /// it falls back).
    pub fn tentative(self) -> bool {
        matches!(self, FaultModel::Nakamoto | FaultModel::Hybrid)
    }
}

/// A consensus protocol: its engine, with what a runtime needs to name,
/// configure and (re)build it. The node and the simulator run any
/// `Protocol` the same way; the registry (`phalanx_runtime::registry`)
/// lists them.
pub trait Protocol: Engine + Sized {
    /// Which engine a genesis names to run this one; its name is the one
    /// in `/status`, reports and on the command line ("pbft", "cft").
    const KIND: EngineKind;

    /// The faults it tolerates.
    const FAULT_MODEL: FaultModel;

    /// Validator `me`'s configuration from a genesis (fails on one this
    /// engine cannot run, e.g. too few validators).
    fn config(genesis: &Genesis, me: ValidatorIndex) -> Result<Config, ConfigError>;

    /// The engine rebuilt from what it persisted and the stored chain
    /// ([`Restored::genesis`] for a fresh one).
    fn restore(cfg: Config, key: Keypair, restored: Restored<Self::Record>) -> Self;
}

#[cfg(test)]
mod tests {
    use super::FaultModel;

    #[test]
    fn fault_model_quorums_are_the_papers() {
        let byzantine: Vec<usize> = [4, 5, 6, 7, 10, 16]
            .map(|n| FaultModel::Byzantine.quorum(n))
            .into();
        assert_eq!(byzantine, vec![3, 4, 4, 5, 7, 11]);
        let crash: Vec<usize> = [1, 2, 3, 4, 5].map(|n| FaultModel::Crash.quorum(n)).into();
        assert_eq!(crash, vec![1, 2, 2, 3, 3]);
        assert_eq!(FaultModel::Byzantine.max_faulty(7), 2);
        assert_eq!(FaultModel::Crash.max_faulty(7), 3);
    }
}
