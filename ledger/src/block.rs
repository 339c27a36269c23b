//! Blocks, what makes them final, and transaction receipts.
//!
//! Phalanx orders first and executes after (as PBFT does): consensus agrees on
//! a *payload* — height, round, proposer, timestamp, transactions, evidence —
//! identified by its payload digest. Every node then executes the payload and
//! completes the header with the parent hash and the state commitment, which
//! are the same on every honest node because execution is deterministic. The
//! PBFT commit certificate signs the payload digest; the block hash covers the
//! whole header.

use crate::tx::SignedTransaction;
use crate::types::{Height, ValidatorIndex};
use crate::vote::{CommitCertificate, Evidence};
use phalanx_crypto::{merkle_root, Domain, Hash, Signature};
use serde::{Deserialize, Serialize};

/// A block header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// The chain.
    pub chain_id: String,
    /// Height; genesis is 0.
    pub height: Height,
    /// Hash of the block at `height - 1` ([`Hash::ZERO`] for genesis).
    pub parent: Hash,
    /// Proposer's clock when proposing, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The validator that proposed the block.
    pub proposer: ValidatorIndex,
    /// Engine round: PBFT view, CFT term, PoS slot, PoW 0.
    pub round: u64,
    /// Merkle root of the transaction hashes.
    pub tx_root: Hash,
    /// Merkle root of the evidence ids.
    pub evidence_root: Hash,
    /// State commitment after executing this block (see [`crate::State::root`]).
    pub state_root: Hash,
}

/// The fields of a header that consensus agrees on before execution.
#[derive(Serialize)]
struct PayloadFields<'a> {
    chain_id: &'a str,
    height: Height,
    timestamp_ms: u64,
    proposer: ValidatorIndex,
    round: u64,
    tx_root: Hash,
    evidence_root: Hash,
}

impl BlockHeader {
    /// The block hash.
    pub fn hash(&self) -> Hash {
        Hash::of(Domain::BlockHeader, self)
    }

    /// The digest consensus agreed on for this block.
    pub fn payload_digest(&self) -> Hash {
        Hash::of(
            Domain::BlockPayload,
            &PayloadFields {
                chain_id: &self.chain_id,
                height: self.height,
                timestamp_ms: self.timestamp_ms,
                proposer: self.proposer,
                round: self.round,
                tx_root: self.tx_root,
                evidence_root: self.evidence_root,
            },
        )
    }
}

/// What consensus orders: a batch of transactions (and evidence) for a height.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// The chain.
    pub chain_id: String,
    /// The height (PBFT sequence number) it is proposed for.
    pub height: Height,
    /// Engine round (PBFT view).
    pub round: u64,
    /// The proposer.
    pub proposer: ValidatorIndex,
    /// Proposer's clock, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The transactions, in execution order.
    pub txs: Vec<SignedTransaction>,
    /// Equivocation evidence to record on chain.
    pub evidence: Vec<Evidence>,
}

impl Payload {
    /// Merkle root of the transaction hashes.
    pub fn tx_root(&self) -> Hash {
        let hashes: Vec<Hash> = self.txs.iter().map(SignedTransaction::hash).collect();
        merkle_root(&hashes)
    }

    /// Merkle root of the evidence ids.
    pub fn evidence_root(&self) -> Hash {
        let ids: Vec<Hash> = self.evidence.iter().map(Evidence::id).collect();
        merkle_root(&ids)
    }

    /// The payload digest, equal to [`BlockHeader::payload_digest`] of the
    /// block made from this payload.
    pub fn digest(&self) -> Hash {
        Hash::of(
            Domain::BlockPayload,
            &PayloadFields {
                chain_id: &self.chain_id,
                height: self.height,
                timestamp_ms: self.timestamp_ms,
                proposer: self.proposer,
                round: self.round,
                tx_root: self.tx_root(),
                evidence_root: self.evidence_root(),
            },
        )
    }
}

/// What makes a block final (or valid) under its engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Justification {
    /// The genesis block needs none.
    Genesis,
    /// PBFT: 2f+1 signed COMMITs for the payload digest.
    Pbft(CommitCertificate),
    /// Crash-fault-tolerant baseline: committed by a majority in `term`.
    Cft {
        /// The leader's term.
        term: u64,
        /// The leader.
        leader: ValidatorIndex,
    },
    /// Proof of work. The seal covers the parent's seal, the payload
    /// digest and the target (`bits`, compact form); `nonce` makes its
    /// hash meet the target. The seal hash is the block's identity in the
    /// PoW chain (the link the next block's `parent` names): consensus
    /// orders payloads before execution, so the seal does not cover the
    /// state root, which every node derives by executing the chain.
    Pow {
        /// The seal hash of the parent block (the genesis block's hash
        /// for the first block).
        parent: Hash,
        /// The target the block claims, in Bitcoin's compact form; it must
        /// be the retarget's answer for its parent.
        bits: u32,
        /// The nonce found.
        nonce: u64,
    },
    /// Proof of stake: the slot leader's signed block. The block's id in
    /// the PoS chain is the digest the leader signs, over (`parent`,
    /// payload digest, `slot`); the signature is a [`crate::Vote`] of kind
    /// `PosBlock` for (view = slot, seq = slot), so two blocks one leader
    /// signs for one slot make [`crate::Evidence`].
    Pos {
        /// The id of the parent block (the genesis block's hash for the first).
        parent: Hash,
        /// The slot.
        slot: u64,
        /// The slot leader.
        leader: ValidatorIndex,
        /// The leader's signature over its deterministic per-slot
        /// randomness message (chain id, slot): what the epoch seeds are
        /// made of, one value per (leader, slot) that the leader cannot
        /// vary, only withhold.
        rand: Signature,
        /// The leader's signature over the block vote.
        signature: Signature,
    },
    /// A tentative block PBFT finalized as it was, after a fallback: the
    /// commit certificate over its payload, and the seal (`Pow`) or leader
    /// signature (`Pos`) it was made with — every node derives the
    /// block's id in the fallback chain from it, so a fallback started
    /// later on top of it links to it the same way everywhere.
    Finalized {
        /// Quorum COMMITs for the payload digest.
        certificate: CommitCertificate,
        /// How the block was sealed before.
        sealed: Box<Justification>,
    },
}

impl Justification {
    /// The PBFT commit certificate that makes the block final, if one does
    /// ([`Justification::Pbft`], [`Justification::Finalized`]).
    pub fn certificate(&self) -> Option<&CommitCertificate> {
        match self {
            Justification::Pbft(c) | Justification::Finalized { certificate: c, .. } => Some(c),
            _ => None,
        }
    }

    /// Whether the block is tentative: sealed by a longest-chain engine
    /// and not (yet) finalized.
    pub fn is_tentative(&self) -> bool {
        matches!(self, Justification::Pow { .. } | Justification::Pos { .. })
    }
}

/// A block: header, body and justification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// The transactions, in execution order (failed ones included, with failed receipts).
    pub txs: Vec<SignedTransaction>,
    /// Evidence recorded in this block.
    pub evidence: Vec<Evidence>,
    /// What makes it final.
    pub justification: Justification,
}

impl Block {
    /// The block hash (the header hash).
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// The block's height.
    pub fn height(&self) -> Height {
        self.header.height
    }

    /// The payload this block was made from.
    pub fn payload(&self) -> Payload {
        Payload {
            chain_id: self.header.chain_id.clone(),
            height: self.header.height,
            round: self.header.round,
            proposer: self.header.proposer,
            timestamp_ms: self.header.timestamp_ms,
            txs: self.txs.clone(),
            evidence: self.evidence.clone(),
        }
    }

    /// Whether the header's roots match the body.
    pub fn body_matches_header(&self) -> bool {
        let hashes: Vec<Hash> = self.txs.iter().map(SignedTransaction::hash).collect();
        let ids: Vec<Hash> = self.evidence.iter().map(Evidence::id).collect();
        self.header.tx_root == merkle_root(&hashes)
            && self.header.evidence_root == merkle_root(&ids)
    }
}

/// Why a transaction in a block was not applied. Every honest node reaches
/// the same reason for the same transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The signature does not verify against `from`.
    #[error("bad signature")]
    BadSignature,
    /// The transaction is for another chain.
    #[error("wrong chain id {found:?}")]
    WrongChainId {
        /// The chain id in the transaction.
        found: String,
    },
    /// The sender has no account.
    #[error("unknown sender")]
    UnknownSender,
    /// The nonce is not the sender's next nonce (a replay, or a gap).
    #[error("bad nonce: expected {expected}, got {found}")]
    BadNonce {
        /// The account's next nonce.
        expected: u64,
        /// The transaction's nonce.
        found: u64,
    },
    /// `amount + fee` exceeds the sender's balance.
    #[error("insufficient funds: balance {balance}, needs {needed}")]
    InsufficientFunds {
        /// The sender's balance.
        balance: u64,
        /// amount + fee (saturated).
        needed: u64,
    },
    /// Crediting the recipient or proposer would overflow a balance.
    #[error("balance overflow")]
    Overflow,
    /// The fee is below the chain's minimum (genesis `min_fee`).
    #[error("fee {fee} is below the minimum {min_fee}")]
    FeeTooLow {
        /// The transaction's fee.
        fee: u64,
        /// The chain's minimum.
        min_fee: u64,
    },
}

/// The outcome of one transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    /// Applied: amount moved, fee paid, nonce advanced.
    Success,
    /// Skipped: no state changed.
    Failed(RejectReason),
}

/// The record of one transaction's execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The transaction hash.
    pub tx_hash: Hash,
    /// The block height it was included at.
    pub height: Height,
    /// Its position in the block.
    pub index: u32,
    /// What happened.
    pub status: TxStatus,
    /// Fee paid to the proposer (0 when failed).
    pub fee_paid: u64,
}

impl Receipt {
    /// Whether the transaction was applied.
    pub fn is_success(&self) -> bool {
        self.status == TxStatus::Success
    }
}
