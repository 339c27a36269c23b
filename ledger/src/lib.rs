//! The Phalanx ledger: transactions, blocks, account state, execution, the
//! genesis file, and block stores (in memory and RocksDB).
//!
//! Everything here is deterministic; the ledger never decides what to commit —
//! consensus engines do — it only says what a committed block does.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod block;
mod execute;
mod genesis;
mod state;
pub mod store;
mod tx;
mod types;
mod vote;

pub use block::{Block, BlockHeader, Justification, Payload, Receipt, RejectReason, TxStatus};
pub use execute::{execute, Executed, Rules, SignatureCheck, VerifyAll};
pub use genesis::{
    slashed_address, stake_address, ConsensusParams, EngineKind, Fallback, Genesis, GenesisAccount,
    GenesisError, ValidatorInfo,
};
pub use state::{Account, State, StateDiff, Undo};
#[cfg(feature = "rocksdb")]
pub use store::RocksStore;
pub use store::{MemoryStore, Store, StoreError, TxLocation};
pub use tx::{verify_transactions, SignedTransaction, SignedTransactionData, Transaction};
pub use types::{Address, Height, ValidatorIndex};
pub use vote::{CommitCertificate, Evidence, ProofError, SignedVote, Vote, VoteKind};

/// Builds the block for an executed payload.
pub fn make_block(
    payload: Payload,
    parent: phalanx_crypto::Hash,
    state_root: phalanx_crypto::Hash,
    justification: Justification,
) -> Block {
    let header = BlockHeader {
        tx_root: payload.tx_root(),
        evidence_root: payload.evidence_root(),
        chain_id: payload.chain_id,
        height: payload.height,
        parent,
        timestamp_ms: payload.timestamp_ms,
        proposer: payload.proposer,
        round: payload.round,
        state_root,
    };
    Block {
        header,
        txs: payload.txs,
        evidence: payload.evidence,
        justification,
    }
}
