//! CFT wire messages, their signatures, and the records the engine persists.
//!
//! Every message is signed by the validator it names as its sender, over
//! the one CFT domain tag plus (chain id, body); the body is an enum, so a
//! vote can never be replayed as an append acknowledgement. The signer is
//! checked against the validator set, never against the transport sender.
//! That is all the checking a crash-fault model does: a correctly signed
//! message is believed (no equivocation detection — a leader that signs two
//! different entries for one index makes followers diverge, which is what
//! the crash-vs-Byzantine comparison shows).

use crate::config::Config;
use crate::engine::{Message, Promise, Record, RecordKey, Summary};
use phalanx_crypto::{Domain, Hash, Keypair, Signature};
use phalanx_ledger::{Height, Payload, ValidatorIndex};
use serde::{Deserialize, Serialize};

/// A signed CFT message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CftMessage {
    /// What it says.
    pub body: CftBody,
    /// The sender's signature over `(chain_id, body)` in [`Domain::CftMessage`].
    pub signature: Signature,
}

/// The content of a CFT message (Ongaro & Ousterhout 2014, Figure 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CftBody {
    /// A candidate asks for votes (§5.2).
    RequestVote(RequestVote),
    /// The answer to a [`RequestVote`].
    Vote(VoteReply),
    /// The leader replicates log entries, or just asserts its leadership (§5.3).
    AppendEntries(AppendEntries),
    /// The answer to an [`AppendEntries`].
    AppendAck(AppendAck),
}

/// RequestVote RPC arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestVote {
    /// The candidate's term.
    pub term: u64,
    /// The candidate.
    pub candidate: ValidatorIndex,
    /// Index of the candidate's last log entry.
    pub last_log_index: Height,
    /// Term of the candidate's last log entry.
    pub last_log_term: u64,
}

/// RequestVote RPC result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteReply {
    /// The voter's current term (for the candidate to update itself).
    pub term: u64,
    /// The voter.
    pub voter: ValidatorIndex,
    /// The candidate asked.
    pub candidate: ValidatorIndex,
    /// Whether the candidate received the vote.
    pub granted: bool,
}

/// AppendEntries RPC arguments. Entries are payloads: an entry's index is
/// its `height`, its term is its `round`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendEntries {
    /// The leader's term.
    pub term: u64,
    /// The leader.
    pub leader: ValidatorIndex,
    /// Index of the entry immediately preceding `entries`.
    pub prev_log_index: Height,
    /// Term of that entry.
    pub prev_log_term: u64,
    /// Entries to store, in index order (empty for a heartbeat).
    pub entries: Vec<Payload>,
    /// The leader's commit index.
    pub leader_commit: Height,
}

/// AppendEntries RPC result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendAck {
    /// The follower's current term (for the leader to update itself).
    pub term: u64,
    /// The follower.
    pub follower: ValidatorIndex,
    /// Whether the follower's log matched `prev_log_index`/`prev_log_term`.
    pub success: bool,
    /// On success, the last index known to match the leader's log; on
    /// failure, a hint: the leader should retry from `last_index + 1`.
    pub last_index: Height,
}

impl CftBody {
    /// The validator that must have signed this body.
    pub fn sender(&self) -> ValidatorIndex {
        match self {
            CftBody::RequestVote(m) => m.candidate,
            CftBody::Vote(m) => m.voter,
            CftBody::AppendEntries(m) => m.leader,
            CftBody::AppendAck(m) => m.follower,
        }
    }

    /// The sender's term.
    pub fn term(&self) -> u64 {
        match self {
            CftBody::RequestVote(m) => m.term,
            CftBody::Vote(m) => m.term,
            CftBody::AppendEntries(m) => m.term,
            CftBody::AppendAck(m) => m.term,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CftBody::RequestVote(_) => "request_vote",
            CftBody::Vote(_) => "vote",
            CftBody::AppendEntries(_) => "append_entries",
            CftBody::AppendAck(_) => "append_ack",
        }
    }
}

/// The promise a granted vote makes: one candidate per term (§5.2).
fn vote_promise(term: u64, candidate: ValidatorIndex) -> Promise {
    Promise {
        what: "vote",
        view: term,
        seq: 0,
        digest: Hash::digest(&candidate.0.to_le_bytes()),
    }
}

/// The promise an entry makes: one payload per (term, index) — only the
/// leader of a term creates entries of that term, one per index (§5.3,
/// Log Matching).
fn entry_promise(payload: &Payload) -> Promise {
    Promise {
        what: "entry",
        view: payload.round,
        seq: payload.height.0,
        digest: payload.digest(),
    }
}

impl Message for CftMessage {
    /// In variant order of [`CftBody`] (the first byte of the encoding:
    /// the body is the message's first field).
    const KINDS: &'static [&'static str] =
        &["request_vote", "vote", "append_entries", "append_ack"];

    /// No digest: a CFT entry's would have to be computed from its payload.
    fn summary(&self) -> Summary {
        let seq = match &self.body {
            CftBody::RequestVote(m) => m.last_log_index.0,
            CftBody::Vote(_) => 0,
            CftBody::AppendEntries(m) => m.prev_log_index.0 + m.entries.len() as u64,
            CftBody::AppendAck(m) => m.last_index.0,
        };
        Summary {
            kind: self.body.kind(),
            view: self.body.term(),
            seq,
            signer: self.body.sender(),
            digest: None,
        }
    }

    /// Raft's promises (§5.2, §5.3): a vote granted in a term, and each
    /// entry a leader sends.
    fn promises(&self, sender: ValidatorIndex) -> Vec<Promise> {
        match &self.body {
            CftBody::Vote(v) if v.voter == sender && v.granted => {
                vec![vote_promise(v.term, v.candidate)]
            }
            CftBody::AppendEntries(a) if a.leader == sender => {
                a.entries.iter().map(entry_promise).collect()
            }
            _ => Vec::new(),
        }
    }

    fn describe(&self) -> String {
        let by = self.body.sender();
        match &self.body {
            CftBody::RequestVote(m) => format!(
                "request-vote t{} by {by} (last {} t{})",
                m.term, m.last_log_index, m.last_log_term
            ),
            CftBody::Vote(m) => format!(
                "vote t{} by {by} for {}: {}",
                m.term,
                m.candidate,
                if m.granted { "granted" } else { "refused" }
            ),
            CftBody::AppendEntries(m) => format!(
                "append-entries t{} by {by} after {} ({} entries, commit {})",
                m.term,
                m.prev_log_index,
                m.entries.len(),
                m.leader_commit
            ),
            CftBody::AppendAck(m) => format!(
                "append-ack t{} by {by}: {} at {}",
                m.term,
                if m.success { "ok" } else { "refused" },
                m.last_index
            ),
        }
    }
}

/// Why a message was dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CftMessageError {
    /// The named sender is not a validator.
    #[error("signer {0} is not a validator")]
    UnknownSigner(ValidatorIndex),
    /// The signature does not verify.
    #[error("bad signature from {0}")]
    BadSignature(ValidatorIndex),
}

#[derive(Serialize)]
struct Signed<'a> {
    chain_id: &'a str,
    body: &'a CftBody,
}

impl CftMessage {
    /// Signs `body` with this validator's key.
    pub fn sign(body: CftBody, chain_id: &str, key: &Keypair) -> CftMessage {
        let signature = key.sign(
            Domain::CftMessage,
            &Signed {
                chain_id,
                body: &body,
            },
        );
        CftMessage { body, signature }
    }

    /// Checks that the validator the body names as sender signed it.
    pub fn verify(&self, cfg: &Config) -> Result<(), CftMessageError> {
        let signer = self.body.sender();
        let key = cfg
            .key(signer)
            .ok_or(CftMessageError::UnknownSigner(signer))?;
        key.verify(
            Domain::CftMessage,
            &Signed {
                chain_id: &cfg.chain_id,
                body: &self.body,
            },
            &self.signature,
        )
        .map_err(|_| CftMessageError::BadSignature(signer))
    }
}

/// What the CFT engine makes durable.
///
/// Restoring must not depend on the order a store returns records in (the
/// node's write-ahead log reads them back in key order): the hard state only
/// grows, and log writes carry a write counter `write` so that entries and
/// truncations replay in the order they happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CftRecord {
    /// The current term and the vote cast in it (Figure 2 "persistent
    /// state"); persisted before any message that depends on it is sent.
    HardState {
        /// The current term.
        term: u64,
        /// The candidate voted for in `term`, if any.
        voted_for: Option<ValidatorIndex>,
    },
    /// A log entry (index = `payload.height`, term = `payload.round`).
    Entry {
        /// Write counter: later writes win.
        write: u64,
        /// The entry.
        payload: Payload,
    },
    /// Entries at `from` and above written before this record are void (§5.3).
    Truncate {
        /// Write counter.
        write: u64,
        /// The first index removed.
        from: Height,
    },
    /// Entries up to `index` are executed and in the block store; records
    /// of them may be pruned.
    Compacted {
        /// The last compacted index.
        index: Height,
        /// Its term.
        term: u64,
    },
}

impl Record for CftRecord {
    /// One hard state, entries by index (a rewrite of an index replaces
    /// the record; pruned at compaction), the last truncation, the last
    /// compaction. Restore takes them in any order (they carry a write
    /// counter).
    fn key(&self) -> RecordKey {
        match self {
            CftRecord::HardState { .. } => RecordKey::single(b"cft/hard"),
            CftRecord::Entry { payload, .. } => RecordKey::at(b"cft/entry/", payload.height, &[]),
            CftRecord::Truncate { .. } => RecordKey::single(b"cft/truncate"),
            CftRecord::Compacted { .. } => RecordKey::single(b"cft/compacted"),
        }
    }

    fn prunes_up_to(&self) -> Option<Height> {
        match self {
            CftRecord::Compacted { index, .. } => Some(*index),
            _ => None,
        }
    }

    fn promises(&self) -> Vec<Promise> {
        match self {
            CftRecord::HardState {
                term,
                voted_for: Some(candidate),
            } => vec![vote_promise(*term, *candidate)],
            CftRecord::Entry { payload, .. } => vec![entry_promise(payload)],
            _ => Vec::new(),
        }
    }
}
