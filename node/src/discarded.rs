//! Blocks this node reverted (a reorg, or a tentative branch PBFT did not
//! finalize), kept in memory so that `GET /blocks/{hash}` and `GET
//! /txs/{hash}` can answer "discarded" instead of "unknown" for a while.
//! Bounded: the newest [`KEEP`] blocks, and their transactions.

use phalanx_crypto::Hash;
use phalanx_ledger::{Block, Height, SignedTransaction};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Discarded blocks remembered (the oldest are forgotten first).
pub const KEEP: usize = 256;

/// One discarded block.
#[derive(Clone, Debug)]
pub struct DiscardedBlock {
    /// The block as it was.
    pub block: Block,
    /// When this node reverted it (Unix ms).
    pub at_ms: u64,
}

#[derive(Debug, Default)]
struct Inner {
    blocks: VecDeque<(Hash, DiscardedBlock)>,
    /// Transaction hash → hash of the newest discarded block holding it.
    txs: HashMap<Hash, Hash>,
}

/// The log; shared between the driver (writes) and the API (reads).
#[derive(Debug, Default)]
pub struct DiscardedLog(Mutex<Inner>);

impl DiscardedLog {
    /// Remembers `block`, reverted at `at_ms`, forgetting the oldest beyond [`KEEP`].
    pub fn record(&self, block: Block, at_ms: u64) {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let hash = block.hash();
        for tx in &block.txs {
            inner.txs.insert(tx.hash(), hash);
        }
        inner
            .blocks
            .push_back((hash, DiscardedBlock { block, at_ms }));
        while inner.blocks.len() > KEEP {
            let Some((old, b)) = inner.blocks.pop_front() else {
                break;
            };
            for tx in &b.block.txs {
                let h = tx.hash();
                if inner.txs.get(&h) == Some(&old) {
                    inner.txs.remove(&h);
                }
            }
        }
    }

    /// The discarded block with this hash, if remembered.
    pub fn block(&self, hash: &Hash) -> Option<DiscardedBlock> {
        let inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .blocks
            .iter()
            .rev()
            .find(|(h, _)| h == hash)
            .map(|(_, b)| b.clone())
    }

    /// The transaction with this hash from a remembered discarded block:
    /// the block's height and hash, and the transaction.
    pub fn tx(&self, hash: &Hash) -> Option<(Height, Hash, SignedTransaction)> {
        let inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let block_hash = inner.txs.get(hash)?;
        let (_, b) = inner.blocks.iter().rev().find(|(h, _)| h == block_hash)?;
        let tx = b.block.txs.iter().find(|t| t.hash() == *hash)?;
        Some((b.block.height(), *block_hash, tx.clone()))
    }

    /// Blocks remembered.
    pub fn len(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .blocks
            .len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::self_transfer;
    use phalanx_ledger::{BlockHeader, Justification, ValidatorIndex};

    fn block(height: u64, nonce: u64) -> Block {
        Block {
            header: BlockHeader {
                chain_id: "c".into(),
                height: Height(height),
                parent: Hash::ZERO,
                timestamp_ms: nonce,
                proposer: ValidatorIndex(0),
                round: 0,
                tx_root: Hash::ZERO,
                evidence_root: Hash::ZERO,
                state_root: Hash::ZERO,
            },
            txs: vec![self_transfer("discarded-test", nonce)],
            evidence: Vec::new(),
            justification: Justification::Genesis,
        }
    }

    #[test]
    fn remembers_blocks_and_their_transactions_within_the_bound() {
        let log = DiscardedLog::default();
        let first = block(5, 0);
        let first_tx = first.txs[0].hash();
        log.record(first.clone(), 10);
        assert_eq!(log.block(&first.hash()).unwrap().at_ms, 10);
        let (height, block_hash, tx) = log.tx(&first_tx).unwrap();
        assert_eq!((height, block_hash), (Height(5), first.hash()));
        assert_eq!(tx.hash(), first_tx);
        for k in 1..=KEEP as u64 {
            log.record(block(6, k), 11);
        }
        assert_eq!(log.len(), KEEP);
        assert!(
            log.block(&first.hash()).is_none(),
            "the oldest is forgotten"
        );
        assert!(log.tx(&first_tx).is_none(), "and its transactions");
        assert!(log.tx(&block(6, KEEP as u64).txs[0].hash()).is_some());
    }
}
