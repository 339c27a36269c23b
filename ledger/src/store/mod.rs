//! Block stores: the [`Store`] trait, an in-memory store for tests and the
//! simulator, and the RocksDB store nodes run on.
//!
//! A store holds the chain from genesis (height 0) up, the receipts and
//! location of every transaction, the current accounts, the engine's
//! save-before-send state, evidence, and a little metadata. A block, its
//! receipts and the state it produces go in with one atomic
//! [`Store::append_block`]: after a crash a store holds a prefix of the chain,
//! each block complete with its state.
//!
//! Stores are shared (`&self` everywhere, `Send + Sync`): the node's driver is
//! the one writer, its HTTP API reads concurrently.

mod memory;
#[cfg(feature = "rocksdb")]
mod rocks;

pub use memory::MemoryStore;
#[cfg(feature = "rocksdb")]
pub use rocks::RocksStore;

use crate::block::{Block, Justification, Receipt};
use crate::state::{Account, State, StateDiff, Undo};
use crate::types::{Address, Height};
use crate::vote::Evidence;
use phalanx_crypto::Hash;
use serde::{Deserialize, Serialize};

/// A consensus-state key and its value.
pub type ConsensusEntry = (Vec<u8>, Vec<u8>);

/// Where a transaction was committed, and what happened to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxLocation {
    /// The block height.
    pub height: Height,
    /// The position in the block.
    pub index: u32,
    /// The receipt.
    pub receipt: Receipt,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The block is not the next one (heights must go up by one from genesis).
    #[error("block at height {got} is not the next block (expected height {expected})")]
    NotNext {
        /// The height the store expects.
        expected: Height,
        /// The height given.
        got: Height,
    },
    /// The block's parent hash is not the hash of the store's latest block.
    #[error("block at height {height} does not extend the stored chain (parent hash mismatch)")]
    WrongParent {
        /// The height of the refused block.
        height: Height,
    },
    /// The latest block is final (or genesis): it cannot be reverted.
    #[error("the block at height {height} is final and cannot be reverted")]
    Final {
        /// Its height.
        height: Height,
    },
    /// The block, receipts and diff do not belong together.
    #[error("inconsistent append: {0}")]
    Inconsistent(String),
    /// Stored data could not be decoded.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error: {0}")]
    Backend(String),
}

/// A block store. See the module documentation.
pub trait Store: Send + Sync {
    /// Height of the latest block, or `None` if even genesis is missing.
    fn latest_height(&self) -> Result<Option<Height>, StoreError>;
    /// The block at `height`.
    fn block(&self, height: Height) -> Result<Option<Block>, StoreError>;
    /// The block with this hash.
    fn block_by_hash(&self, hash: &Hash) -> Result<Option<Block>, StoreError>;
    /// Where the transaction with this hash was committed.
    fn tx(&self, hash: &Hash) -> Result<Option<TxLocation>, StoreError>;
    /// An account's current state.
    fn account(&self, address: &Address) -> Result<Option<Account>, StoreError>;
    /// The whole current state (all accounts, height, root) for start-up.
    fn load_state(&self) -> Result<State, StoreError>;
    /// Atomically appends a block with its receipts and the state diff it
    /// produces. Refuses a block that is not the next height, does not extend
    /// the latest block, or whose diff/receipts do not match it.
    fn append_block(
        &self,
        block: &Block,
        receipts: &[Receipt],
        diff: &StateDiff,
    ) -> Result<(), StoreError>;
    /// [`Store::append_block`] for a block that is not final (proof of
    /// work, proof of stake): also keeps `undo` — the accounts as they
    /// were before `diff` ([`State::undo_for`]) — so that
    /// [`Store::revert_latest`] can take the block back out exactly.
    fn append_tentative(
        &self,
        block: &Block,
        receipts: &[Receipt],
        diff: &StateDiff,
        undo: &Undo,
    ) -> Result<(), StoreError>;
    /// Takes the latest block out (a reorg): the block, its hash, the
    /// transactions it indexed and its state changes, in one atomic write,
    /// and returns it. Only a block stored with [`Store::append_tentative`]
    /// can be taken out; a final block (or genesis) is refused.
    fn revert_latest(&self) -> Result<Block, StoreError>;
    /// Makes the tentative block at `height` final: it can no longer be
    /// reverted, and `justification` (what makes it final — a PBFT commit
    /// certificate over its payload) replaces the one it was stored with.
    /// The block's hash does not change (a header does not cover its
    /// justification). Blocks are finalized in height order: every block
    /// below `height` must already be final. Finalizing a final block
    /// again only replaces its justification.
    fn finalize(&self, height: Height, justification: &Justification) -> Result<(), StoreError>;
    /// Durably stores a consensus-state value (synced before returning).
    fn put_consensus(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// A consensus-state value.
    fn consensus(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every consensus-state entry, in key order (for an engine's restart).
    fn consensus_entries(&self) -> Result<Vec<ConsensusEntry>, StoreError>;
    /// Writes and deletes consensus-state entries in one synced batch: the
    /// driver persists all the records of one engine step at once, before it
    /// sends anything they protect.
    fn write_consensus(
        &self,
        puts: &[(Vec<u8>, Vec<u8>)],
        deletes: &[Vec<u8>],
    ) -> Result<(), StoreError>;
    /// Stores evidence; returns whether it was new.
    fn put_evidence(&self, evidence: &Evidence) -> Result<bool, StoreError>;
    /// All stored evidence.
    fn evidence(&self) -> Result<Vec<Evidence>, StoreError>;
    /// Stores a metadata value.
    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// A metadata value.
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// The latest block.
    fn latest_block(&self) -> Result<Option<Block>, StoreError> {
        match self.latest_height()? {
            Some(h) => self.block(h),
            None => Ok(None),
        }
    }
}

/// The receipts of a block that go into the transaction index, in order.
///
/// A transaction applies at most once (it uses its sender's nonce), so its
/// success is final: a later copy of it — repeated by a Byzantine proposer
/// in the same block or a later one — fails with a bad nonce, and that
/// receipt must not hide the transfer that happened. A failed receipt is
/// kept unless the transaction already succeeded (`succeeded_before` asks
/// the store about earlier blocks); a success always is.
pub(crate) fn receipts_to_index(
    receipts: &[Receipt],
    mut succeeded_before: impl FnMut(&Hash) -> Result<bool, StoreError>,
) -> Result<Vec<&Receipt>, StoreError> {
    let mut succeeded_here = std::collections::HashSet::new();
    let mut kept = Vec::with_capacity(receipts.len());
    for r in receipts {
        if r.is_success() {
            succeeded_here.insert(r.tx_hash);
        } else if succeeded_here.contains(&r.tx_hash) || succeeded_before(&r.tx_hash)? {
            continue;
        }
        kept.push(r);
    }
    Ok(kept)
}

/// The checks every store makes before finalizing the block at `height`,
/// given the lowest height that still has undo data.
pub(crate) fn check_finalize(
    height: Height,
    latest: Option<Height>,
    lowest_tentative: Option<Height>,
) -> Result<(), StoreError> {
    if latest.is_none_or(|l| l < height) || height == Height::GENESIS {
        return Err(StoreError::Inconsistent(format!(
            "cannot finalize height {height}: no tentative block is stored there"
        )));
    }
    if let Some(low) = lowest_tentative.filter(|l| *l < height) {
        return Err(StoreError::Inconsistent(format!(
            "cannot finalize height {height} before the tentative block at {low}"
        )));
    }
    Ok(())
}

/// The checks every store makes before taking `latest` out with `undo`,
/// given the block below it.
pub(crate) fn check_revert(latest: &Block, parent: &Block, undo: &Undo) -> Result<(), StoreError> {
    if undo.height != parent.height() || undo.root != parent.header.state_root {
        return Err(StoreError::Corrupt(format!(
            "the undo data of block {} does not lead back to block {}",
            latest.height(),
            parent.height()
        )));
    }
    if latest.header.parent != parent.hash() {
        return Err(StoreError::Corrupt(format!(
            "block {} does not name block {} as its parent",
            latest.height(),
            parent.height()
        )));
    }
    Ok(())
}

/// The checks every store makes before an append, given its latest block.
pub(crate) fn check_append(
    latest: Option<&Block>,
    block: &Block,
    receipts: &[Receipt],
    diff: &StateDiff,
) -> Result<(), StoreError> {
    let expected = latest.map_or(Height::GENESIS, |b| b.height().next());
    if block.height() != expected {
        return Err(StoreError::NotNext {
            expected,
            got: block.height(),
        });
    }
    let parent = latest.map_or(Hash::ZERO, Block::hash);
    if block.header.parent != parent {
        return Err(StoreError::WrongParent {
            height: block.height(),
        });
    }
    if diff.height != block.height() || diff.root != block.header.state_root {
        return Err(StoreError::Inconsistent(format!(
            "diff is for height {} with root {}, block {} has state root {}",
            diff.height,
            diff.root,
            block.height(),
            block.header.state_root
        )));
    }
    if receipts.len() != block.txs.len() {
        return Err(StoreError::Inconsistent(format!(
            "{} receipts for {} transactions",
            receipts.len(),
            block.txs.len()
        )));
    }
    for (i, (r, t)) in receipts.iter().zip(&block.txs).enumerate() {
        if r.index as usize != i || r.height != block.height() || r.tx_hash != t.hash() {
            return Err(StoreError::Inconsistent(format!(
                "receipt {i} does not match its transaction"
            )));
        }
    }
    Ok(())
}
