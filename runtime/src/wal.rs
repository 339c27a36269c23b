//! The consensus write-ahead log: an engine's [`Record`]s in the store's
//! consensus column.
//!
//! Each record names its key ([`Record::key`]). Records that replace their
//! predecessor (PBFT's current view and stable checkpoint, the CFT hard
//! state) share one key; a record that protects a height (a PBFT vote, a
//! CFT entry) is keyed by it, so a pruning record ([`Record::prunes_up_to`]:
//! a stable checkpoint, a compaction) deletes a known range of keys. [`Wal::push`] queues a record, [`Wal::flush`]
//! writes everything queued in one synced batch — the driver flushes
//! before anything the records protect leaves the node (save before send)
//! and at the end of every engine step. Records queued but not flushed
//! when the process dies are lost, as they would be on a real disk.
//!
//! [`Wal::open`] returns the records in key order, each key once, pruned:
//! not the order they were written. Every engine's `restore` must accept
//! that, and the simulator restarts engines through this same code.

use phalanx_consensus::Record;
use phalanx_ledger::{Height, Store, StoreError};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

/// Why the log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record does not decode.
    #[error("consensus record {key} is corrupt: {error}")]
    Corrupt {
        /// The record's key, readable.
        key: String,
        /// What the decoder said.
        error: String,
    },
}

/// The log of one engine's records `R` over a store.
pub struct Wal<R> {
    store: Arc<dyn Store>,
    records: PhantomData<fn(R)>,
    /// Live keys by the seq they protect (records kept forever have none).
    keys_by_seq: BTreeMap<Height, Vec<Vec<u8>>>,
    batch: Vec<(Vec<u8>, Vec<u8>)>,
    prune_up_to: Option<Height>,
}

impl<R> std::fmt::Debug for Wal<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("queued", &self.batch.len())
            .field("seqs", &self.keys_by_seq.len())
            .finish_non_exhaustive()
    }
}

impl<R: Record> Wal<R> {
    /// Opens the log and returns what the engine restores from.
    pub fn open(store: Arc<dyn Store>) -> Result<(Wal<R>, Vec<R>), WalError> {
        let mut keys_by_seq: BTreeMap<Height, Vec<Vec<u8>>> = BTreeMap::new();
        let mut records = Vec::new();
        for (k, value) in store.consensus_entries()? {
            let record: R = phalanx_crypto::decode(&value).map_err(|e| WalError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                error: e.to_string(),
            })?;
            if let Some(seq) = record.key().seq {
                keys_by_seq.entry(seq).or_default().push(k);
            }
            records.push(record);
        }
        Ok((
            Wal {
                store,
                records: PhantomData,
                keys_by_seq,
                batch: Vec::new(),
                prune_up_to: None,
            },
            records,
        ))
    }

    /// Queues a record for the next [`Wal::flush`].
    pub fn push(&mut self, record: &R) {
        let key = record.key();
        let k = key.bytes;
        if let Some(seq) = key.seq {
            let keys = self.keys_by_seq.entry(seq).or_default();
            if !keys.contains(&k) {
                keys.push(k.clone());
            }
        }
        if let Some(seq) = record.prunes_up_to() {
            self.prune_up_to = Some(seq);
        }
        self.batch.push((k, phalanx_crypto::encode(record)));
    }

    /// How many records are queued and not yet durable.
    pub fn queued(&self) -> usize {
        self.batch.len()
    }

    /// Writes the queued records in one synced batch, deleting the records
    /// at or below a stable checkpoint queued since the last flush.
    pub fn flush(&mut self) -> Result<(), WalError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut deletes = Vec::new();
        if let Some(stable) = self.prune_up_to.take() {
            let keep = self.keys_by_seq.split_off(&stable.next());
            for (_, keys) in std::mem::replace(&mut self.keys_by_seq, keep) {
                deletes.extend(keys);
            }
            // A record queued in this very batch for a pruned seq goes too.
            self.batch.retain(|(k, _)| !deletes.contains(k));
        }
        self.store.write_consensus(&self.batch, &deletes)?;
        self.batch.clear();
        Ok(())
    }
}
