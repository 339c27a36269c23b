//! An in-memory [`Store`] for tests and the simulator.

use super::{
    check_append, check_finalize, check_revert, receipts_to_index, ConsensusEntry, Store,
    StoreError, TxLocation,
};
use crate::block::{Block, Justification, Receipt};
use crate::state::{Account, State, StateDiff, Undo};
use crate::types::{Address, Height};
use crate::vote::Evidence;
use phalanx_crypto::Hash;
use std::collections::{BTreeMap, HashMap};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Debug, Default)]
struct Inner {
    blocks: Vec<Block>,
    by_hash: HashMap<Hash, Height>,
    txs: HashMap<Hash, TxLocation>,
    state: State,
    /// Undo data of the tentative blocks, by height.
    undo: BTreeMap<Height, Undo>,
    consensus: BTreeMap<Vec<u8>, Vec<u8>>,
    evidence: BTreeMap<Hash, Evidence>,
    meta: BTreeMap<String, Vec<u8>>,
}

/// A [`Store`] that keeps everything in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-written
        // (every write below is a sequence of infallible inserts), so a
        // poisoned lock is still consistent.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn append(
        &self,
        block: &Block,
        receipts: &[Receipt],
        diff: &StateDiff,
        undo: Option<&Undo>,
    ) -> Result<(), StoreError> {
        let mut inner = self.write();
        check_append(inner.blocks.last(), block, receipts, diff)?;
        let height = block.height();
        let indexed = receipts_to_index(receipts, |h| {
            Ok(inner.txs.get(h).is_some_and(|l| l.receipt.is_success()))
        })?;
        inner.by_hash.insert(block.hash(), height);
        for r in indexed {
            inner.txs.insert(
                r.tx_hash,
                TxLocation {
                    height,
                    index: r.index,
                    receipt: r.clone(),
                },
            );
        }
        inner.state.apply(diff);
        inner.blocks.push(block.clone());
        if let Some(undo) = undo {
            inner.undo.insert(height, undo.clone());
        }
        Ok(())
    }
}

impl Store for MemoryStore {
    fn latest_height(&self) -> Result<Option<Height>, StoreError> {
        Ok(self.read().blocks.last().map(Block::height))
    }

    fn block(&self, height: Height) -> Result<Option<Block>, StoreError> {
        Ok(usize::try_from(height.0)
            .ok()
            .and_then(|h| self.read().blocks.get(h).cloned()))
    }

    fn block_by_hash(&self, hash: &Hash) -> Result<Option<Block>, StoreError> {
        let inner = self.read();
        Ok(inner
            .by_hash
            .get(hash)
            .and_then(|h| inner.blocks.get(h.0 as usize).cloned()))
    }

    fn tx(&self, hash: &Hash) -> Result<Option<TxLocation>, StoreError> {
        Ok(self.read().txs.get(hash).cloned())
    }

    fn account(&self, address: &Address) -> Result<Option<Account>, StoreError> {
        Ok(self.read().state.account(address).copied())
    }

    fn load_state(&self) -> Result<State, StoreError> {
        Ok(self.read().state.clone())
    }

    fn append_block(
        &self,
        block: &Block,
        receipts: &[Receipt],
        diff: &StateDiff,
    ) -> Result<(), StoreError> {
        self.append(block, receipts, diff, None)
    }

    fn append_tentative(
        &self,
        block: &Block,
        receipts: &[Receipt],
        diff: &StateDiff,
        undo: &Undo,
    ) -> Result<(), StoreError> {
        self.append(block, receipts, diff, Some(undo))
    }

    fn revert_latest(&self) -> Result<Block, StoreError> {
        let mut inner = self.write();
        let Some(latest) = inner.blocks.last().cloned() else {
            return Err(StoreError::Final {
                height: Height::GENESIS,
            });
        };
        let height = latest.height();
        let undo = match inner.undo.get(&height) {
            Some(u) if height > Height::GENESIS => u.clone(),
            _ => return Err(StoreError::Final { height }),
        };
        let parent = &inner.blocks[inner.blocks.len() - 2];
        check_revert(&latest, parent, &undo)?;
        inner.blocks.pop();
        inner.by_hash.remove(&latest.hash());
        for tx in &latest.txs {
            let h = tx.hash();
            if inner.txs.get(&h).is_some_and(|l| l.height == height) {
                inner.txs.remove(&h);
            }
        }
        inner.state.revert(&undo);
        inner.undo.remove(&height);
        Ok(latest)
    }

    fn finalize(&self, height: Height, justification: &Justification) -> Result<(), StoreError> {
        let mut inner = self.write();
        let latest = inner.blocks.last().map(Block::height);
        let lowest = inner.undo.keys().next().copied();
        check_finalize(height, latest, lowest)?;
        inner.blocks[height.0 as usize].justification = justification.clone();
        inner.undo.remove(&height);
        Ok(())
    }

    fn put_consensus(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write().consensus.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn consensus(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read().consensus.get(key).cloned())
    }

    fn consensus_entries(&self) -> Result<Vec<ConsensusEntry>, StoreError> {
        Ok(self
            .read()
            .consensus
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn write_consensus(
        &self,
        puts: &[(Vec<u8>, Vec<u8>)],
        deletes: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        let mut inner = self.write();
        for k in deletes {
            inner.consensus.remove(k);
        }
        for (k, v) in puts {
            inner.consensus.insert(k.clone(), v.clone());
        }
        Ok(())
    }

    fn put_evidence(&self, evidence: &Evidence) -> Result<bool, StoreError> {
        // Keep the first copy: a duplicate (possibly with its votes swapped) is not a write.
        let mut inner = self.write();
        let entry = inner.evidence.entry(evidence.id());
        let is_new = matches!(entry, std::collections::btree_map::Entry::Vacant(_));
        entry.or_insert_with(|| evidence.clone());
        Ok(is_new)
    }

    fn evidence(&self) -> Result<Vec<Evidence>, StoreError> {
        Ok(self.read().evidence.values().cloned().collect())
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.write().meta.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read().meta.get(key).cloned())
    }
}
