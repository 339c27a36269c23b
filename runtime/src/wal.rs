//! The consensus write-ahead log: an engine's [`Persisted`] records in the
//! store's consensus column.
//!
//! Each record has a key. Records that replace their predecessor (the
//! current view, the stable checkpoint, the last NEW-VIEW, the CFT hard
//! state) share one key; a vote is keyed by (seq, kind, view) and a
//! prepared certificate by seq, so pruning at a stable checkpoint deletes a
//! known range of keys. [`Wal::push`] queues a record, [`Wal::flush`]
//! writes everything queued in one synced batch — the driver flushes
//! before anything the records protect leaves the node (save before send)
//! and at the end of every engine step. Records queued but not flushed
//! when the process dies are lost, as they would be on a real disk.
//!
//! [`Wal::open`] returns the records in key order, each key once, pruned:
//! not the order they were written. Every engine's `restore` must accept
//! that, and the simulator restarts engines through this same code.

use phalanx_consensus::{CftRecord, Persisted};
use phalanx_ledger::{Height, Store, StoreError};
use std::collections::BTreeMap;
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

/// The log of one engine over a store.
pub struct Wal {
    store: Arc<dyn Store>,
    /// Live keys by the seq they protect (records kept forever have none).
    keys_by_seq: BTreeMap<Height, Vec<Vec<u8>>>,
    batch: Vec<(Vec<u8>, Vec<u8>)>,
    prune_up_to: Option<Height>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("queued", &self.batch.len())
            .field("seqs", &self.keys_by_seq.len())
            .finish_non_exhaustive()
    }
}

/// A record's key, and the seq at or below which a stable checkpoint prunes
/// it (`None`: never pruned, only overwritten).
pub fn key(record: &Persisted) -> (Option<Height>, Vec<u8>) {
    let at = |prefix: &[u8], seq: Height, rest: &[u8]| {
        let mut k = prefix.to_vec();
        k.extend_from_slice(&seq.0.to_be_bytes());
        k.extend_from_slice(rest);
        (Some(seq), k)
    };
    match record {
        Persisted::Vote(v) => at(
            b"vote/",
            v.vote.seq,
            &phalanx_crypto::encode(&(v.vote.kind, v.vote.view)),
        ),
        Persisted::View { .. } => (None, b"view".to_vec()),
        Persisted::Prepared(cert) => at(b"prep/", cert.slot().1, &[]),
        Persisted::StableCheckpoint { .. } => (None, b"stable".to_vec()),
        Persisted::NewView(_) => (None, b"newview".to_vec()),
        Persisted::ViewJustification(_) => (None, b"complaints".to_vec()),
        // The CFT baseline: one hard state, entries by index (a rewrite of
        // an index replaces the record; pruned at compaction), the last
        // truncation, the last compaction. Its restore takes them in any
        // order (they carry a write counter).
        Persisted::Cft(record) => match record {
            CftRecord::HardState { .. } => (None, b"cft/hard".to_vec()),
            CftRecord::Entry { payload, .. } => at(b"cft/entry/", payload.height, &[]),
            CftRecord::Truncate { .. } => (None, b"cft/truncate".to_vec()),
            CftRecord::Compacted { .. } => (None, b"cft/compacted".to_vec()),
        },
    }
}

impl Wal {
    /// Opens the log and returns what the engine restores from.
    pub fn open(store: Arc<dyn Store>) -> Result<(Wal, Vec<Persisted>), WalError> {
        let mut keys_by_seq: BTreeMap<Height, Vec<Vec<u8>>> = BTreeMap::new();
        let mut records = Vec::new();
        for (k, value) in store.consensus_entries()? {
            let record: Persisted =
                phalanx_crypto::decode(&value).map_err(|e| WalError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    error: e.to_string(),
                })?;
            if let (Some(seq), k) = key(&record) {
                keys_by_seq.entry(seq).or_default().push(k);
            }
            records.push(record);
        }
        Ok((
            Wal {
                store,
                keys_by_seq,
                batch: Vec::new(),
                prune_up_to: None,
            },
            records,
        ))
    }

    /// Queues a record for the next [`Wal::flush`].
    pub fn push(&mut self, record: &Persisted) {
        let (seq, k) = key(record);
        if let Some(seq) = seq {
            let keys = self.keys_by_seq.entry(seq).or_default();
            if !keys.contains(&k) {
                keys.push(k.clone());
            }
        }
        match record {
            Persisted::StableCheckpoint { seq, .. } => self.prune_up_to = Some(*seq),
            Persisted::Cft(CftRecord::Compacted { index, .. }) => {
                self.prune_up_to = Some(*index);
            }
            _ => {}
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
