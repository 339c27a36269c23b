//! The RocksDB [`Store`] a node runs on.
//!
//! One column family per kind of record. Keys are fixed-width bytes (heights
//! big-endian, so iteration is in height order); values are the canonical
//! encoding ([`phalanx_crypto::encode`]). A block, its hash index, its
//! receipts, the accounts it changed and the new tip go in one synced
//! `WriteBatch`: after a crash the database holds a prefix of the chain, each
//! block with exactly the state it produced.
//!
//! This module must never panic on what it reads back: bytes that do not
//! decode are [`StoreError::Corrupt`], naming the record.

use super::{
    check_append, check_finalize, check_revert, receipts_to_index, ConsensusEntry, Store,
    StoreError, TxLocation,
};
use crate::block::{Block, Justification, Receipt};
use crate::state::{Account, State, StateDiff, Undo};
use crate::types::{Address, Height};
use crate::vote::Evidence;
use phalanx_crypto::{decode, encode, Hash, PublicKey};
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, IteratorMode, Options, WriteBatch,
    WriteOptions, DB,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Height (big-endian u64) -> `Block`.
const CF_BLOCKS: &str = "blocks";
/// Block hash -> height (big-endian u64).
const CF_BLOCK_HASHES: &str = "block_hashes";
/// Transaction hash -> `TxLocation`.
const CF_TXS: &str = "txs";
/// Address -> `Account`.
const CF_ACCOUNTS: &str = "accounts";
/// The engine's save-before-send state (opaque keys and values).
const CF_CONSENSUS: &str = "consensus";
/// Evidence id -> `Evidence`.
const CF_EVIDENCE: &str = "evidence";
/// The chain tip and callers' metadata, in separate key namespaces.
const CF_META: &str = "meta";
/// Height (big-endian u64) -> `Undo` of a tentative block (PoW, PoS).
const CF_UNDO: &str = "undo";

/// One memtable's size per column family.
const MEMTABLE_BYTES: usize = 16 << 20;
/// All memtables together.
const MEMTABLE_BUDGET: usize = 64 << 20;

const COLUMN_FAMILIES: [&str; 8] = [
    CF_BLOCKS,
    CF_BLOCK_HASHES,
    CF_TXS,
    CF_ACCOUNTS,
    CF_CONSENSUS,
    CF_EVIDENCE,
    CF_META,
    CF_UNDO,
];

/// Meta key of the chain tip. Callers' keys are prefixed with `USER_META`,
/// so no `put_meta` can overwrite the tip.
const TIP_KEY: &[u8] = b"chain/tip";
const USER_META: &[u8] = b"user/";

/// The latest block's height and hash and the state root after it, written in
/// the same batch as the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Tip {
    height: Height,
    hash: Hash,
    state_root: Hash,
}

/// A [`Store`] on RocksDB. See the module documentation.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
    /// The latest block, read from disk at open and replaced after each
    /// append. Holding this lock is what makes the store's writers take
    /// turns: an append's parent check and its write happen under it.
    latest: Mutex<Option<Block>>,
}

impl fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .finish()
    }
}

fn backend(e: rocksdb::Error) -> StoreError {
    StoreError::Backend(e.into_string())
}

fn height_key(height: Height) -> [u8; 8] {
    height.0.to_be_bytes()
}

fn decode_height(bytes: &[u8], what: &str) -> Result<Height, StoreError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| {
        StoreError::Corrupt(format!(
            "{what}: height has {} bytes, expected 8",
            bytes.len()
        ))
    })?;
    Ok(Height(u64::from_be_bytes(array)))
}

fn decode_value<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    decode(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn user_meta_key(key: &str) -> Vec<u8> {
    let mut k = USER_META.to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

fn synced() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(true);
    options
}

impl RocksStore {
    /// Opens the store at `path`, creating the database if it is missing.
    pub fn open(path: &Path) -> Result<RocksStore, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // Every open starts a new info log; keep a few, not one per restart.
        options.set_keep_log_file_num(8);
        // Built without compression codecs: say so, rather than let RocksDB
        // pick a default it cannot use.
        options.set_compression_type(DBCompressionType::None);
        // Memtables are the store's main memory cost: by default each
        // column family may hold two of 64 MiB, and blocks, transactions
        // and accounts are all written at once under load (one node's RSS
        // passed 300 MiB after a minute of `phalanx bench --max`). One
        // budget for all of them instead, and smaller tables.
        options.set_db_write_buffer_size(MEMTABLE_BUDGET);
        let descriptors = COLUMN_FAMILIES.iter().map(|name| {
            let mut cf_options = Options::default();
            cf_options.set_compression_type(DBCompressionType::None);
            cf_options.set_write_buffer_size(MEMTABLE_BYTES);
            ColumnFamilyDescriptor::new(*name, cf_options)
        });
        let db = DB::open_cf_descriptors(&options, path, descriptors).map_err(backend)?;
        let store = RocksStore {
            db,
            path: path.to_owned(),
            latest: Mutex::new(None),
        };
        let latest = store.read_latest_block()?;
        *store.lock_latest() = latest;
        Ok(store)
    }

    /// The directory the database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock_latest(&self) -> MutexGuard<'_, Option<Block>> {
        // The guarded value is only replaced after a successful write, with
        // one assignment, so a poisoned lock still holds a consistent value.
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Backend(format!("column family {name} is missing")))
    }

    fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.cf(cf)?, key).map_err(backend)
    }

    fn tip(&self) -> Result<Option<Tip>, StoreError> {
        self.get(CF_META, TIP_KEY)?
            .map(|bytes| decode_value(&bytes, "chain tip"))
            .transpose()
    }

    /// Appends a block (with `undo` when it is tentative) in one synced batch.
    fn append(
        &self,
        block: &Block,
        receipts: &[Receipt],
        diff: &StateDiff,
        undo: Option<&Undo>,
    ) -> Result<(), StoreError> {
        let mut latest = self.lock_latest();
        check_append(latest.as_ref(), block, receipts, diff)?;
        let height = block.height();
        let hash = block.hash();
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_BLOCKS)?, height_key(height), encode(block));
        batch.put_cf(self.cf(CF_BLOCK_HASHES)?, hash.0, height_key(height));
        let txs = self.cf(CF_TXS)?;
        let indexed = receipts_to_index(receipts, |h| {
            Ok(self.tx(h)?.is_some_and(|l| l.receipt.is_success()))
        })?;
        for r in indexed {
            let location = TxLocation {
                height,
                index: r.index,
                receipt: r.clone(),
            };
            batch.put_cf(txs, r.tx_hash.0, encode(&location));
        }
        let accounts = self.cf(CF_ACCOUNTS)?;
        for (address, account) in &diff.changed {
            batch.put_cf(accounts, address.0 .0, encode(account));
        }
        let tip = Tip {
            height,
            hash,
            state_root: diff.root,
        };
        batch.put_cf(self.cf(CF_META)?, TIP_KEY, encode(&tip));
        if let Some(undo) = undo {
            batch.put_cf(self.cf(CF_UNDO)?, height_key(height), encode(undo));
        }
        self.db.write_opt(batch, &synced()).map_err(backend)?;
        *latest = Some(block.clone());
        Ok(())
    }

    /// The latest block as stored on disk, checked against the tip record.
    fn read_latest_block(&self) -> Result<Option<Block>, StoreError> {
        let Some(tip) = self.tip()? else {
            return Ok(None);
        };
        let block = self.block(tip.height)?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "chain tip is at height {} but that block is missing",
                tip.height
            ))
        })?;
        if block.hash() != tip.hash || block.header.state_root != tip.state_root {
            return Err(StoreError::Corrupt(format!(
                "chain tip does not match the block at height {}",
                tip.height
            )));
        }
        Ok(Some(block))
    }
}

impl Store for RocksStore {
    fn latest_height(&self) -> Result<Option<Height>, StoreError> {
        Ok(self.tip()?.map(|t| t.height))
    }

    fn block(&self, height: Height) -> Result<Option<Block>, StoreError> {
        let Some(bytes) = self.get(CF_BLOCKS, &height_key(height))? else {
            return Ok(None);
        };
        let block: Block = decode_value(&bytes, &format!("block at height {height}"))?;
        if block.height() != height {
            return Err(StoreError::Corrupt(format!(
                "block stored at height {height} says it is at height {}",
                block.height()
            )));
        }
        Ok(Some(block))
    }

    fn block_by_hash(&self, hash: &Hash) -> Result<Option<Block>, StoreError> {
        let Some(bytes) = self.get(CF_BLOCK_HASHES, &hash.0)? else {
            return Ok(None);
        };
        let height = decode_height(&bytes, &format!("height of block {hash}"))?;
        self.block(height)
    }

    fn tx(&self, hash: &Hash) -> Result<Option<TxLocation>, StoreError> {
        self.get(CF_TXS, &hash.0)?
            .map(|bytes| decode_value(&bytes, &format!("location of transaction {hash}")))
            .transpose()
    }

    fn account(&self, address: &Address) -> Result<Option<Account>, StoreError> {
        self.get(CF_ACCOUNTS, &address.0 .0)?
            .map(|bytes| decode_value(&bytes, &format!("account {address}")))
            .transpose()
    }

    fn load_state(&self) -> Result<State, StoreError> {
        // One snapshot, so the accounts and the tip are from the same append.
        let snapshot = self.db.snapshot();
        let tip: Option<Tip> = snapshot
            .get_cf(self.cf(CF_META)?, TIP_KEY)
            .map_err(backend)?
            .map(|bytes| decode_value(&bytes, "chain tip"))
            .transpose()?;
        let mut accounts = HashMap::new();
        for item in snapshot.iterator_cf(self.cf(CF_ACCOUNTS)?, IteratorMode::Start) {
            let (key, value) = item.map_err(backend)?;
            let key: [u8; 32] = key.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt(format!("account key has {} bytes, expected 32", key.len()))
            })?;
            let address = Address(PublicKey(key));
            let account: Account = decode_value(&value, &format!("account {address}"))?;
            accounts.insert(address, account);
        }
        Ok(match tip {
            Some(tip) => State::from_parts(accounts, tip.height, tip.state_root),
            None if accounts.is_empty() => State::default(),
            None => {
                return Err(StoreError::Corrupt(format!(
                    "{} accounts stored but no chain tip",
                    accounts.len()
                )))
            }
        })
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
        let mut latest = self.lock_latest();
        let Some(block) = latest.clone() else {
            return Err(StoreError::Final {
                height: Height::GENESIS,
            });
        };
        let height = block.height();
        let undo: Undo = match self.get(CF_UNDO, &height_key(height))? {
            Some(bytes) if height > Height::GENESIS => {
                decode_value(&bytes, &format!("undo data of block {height}"))?
            }
            _ => return Err(StoreError::Final { height }),
        };
        let parent = self.block(Height(height.0 - 1))?.ok_or_else(|| {
            StoreError::Corrupt(format!("the block below height {height} is missing"))
        })?;
        check_revert(&block, &parent, &undo)?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_BLOCKS)?, height_key(height));
        batch.delete_cf(self.cf(CF_BLOCK_HASHES)?, block.hash().0);
        let txs = self.cf(CF_TXS)?;
        for tx in &block.txs {
            let h = tx.hash();
            if self.tx(&h)?.is_some_and(|l| l.height == height) {
                batch.delete_cf(txs, h.0);
            }
        }
        let accounts = self.cf(CF_ACCOUNTS)?;
        for (address, before) in &undo.previous {
            match before {
                Some(account) => batch.put_cf(accounts, address.0 .0, encode(account)),
                None => batch.delete_cf(accounts, address.0 .0),
            }
        }
        batch.delete_cf(self.cf(CF_UNDO)?, height_key(height));
        let tip = Tip {
            height: parent.height(),
            hash: parent.hash(),
            state_root: parent.header.state_root,
        };
        batch.put_cf(self.cf(CF_META)?, TIP_KEY, encode(&tip));
        self.db.write_opt(batch, &synced()).map_err(backend)?;
        *latest = Some(parent);
        Ok(block)
    }

    fn finalize(&self, height: Height, justification: &Justification) -> Result<(), StoreError> {
        let mut latest = self.lock_latest();
        let lowest = self
            .db
            .iterator_cf(self.cf(CF_UNDO)?, IteratorMode::Start)
            .next()
            .transpose()
            .map_err(backend)?
            .map(|(k, _)| decode_height(&k, "undo key"))
            .transpose()?;
        check_finalize(height, latest.as_ref().map(Block::height), lowest)?;
        let mut block = self.block(height)?.ok_or_else(|| {
            StoreError::Corrupt(format!("the block at height {height} is missing"))
        })?;
        block.justification = justification.clone();
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_BLOCKS)?, height_key(height), encode(&block));
        batch.delete_cf(self.cf(CF_UNDO)?, height_key(height));
        self.db.write_opt(batch, &synced()).map_err(backend)?;
        if let Some(l) = latest.as_mut().filter(|l| l.height() == height) {
            l.justification = justification.clone();
        }
        Ok(())
    }

    fn put_consensus(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        // Save before send: the caller sends the vote this protects as soon
        // as we return, so it must be on disk by then.
        self.db
            .put_cf_opt(self.cf(CF_CONSENSUS)?, key, value, &synced())
            .map_err(backend)
    }

    fn consensus(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(CF_CONSENSUS, key)
    }

    fn consensus_entries(&self) -> Result<Vec<ConsensusEntry>, StoreError> {
        let cf = self.cf(CF_CONSENSUS)?;
        self.db
            .iterator_cf(cf, IteratorMode::Start)
            .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(backend))
            .collect()
    }

    fn write_consensus(
        &self,
        puts: &[(Vec<u8>, Vec<u8>)],
        deletes: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        let cf = self.cf(CF_CONSENSUS)?;
        let mut batch = WriteBatch::default();
        for k in deletes {
            batch.delete_cf(cf, k);
        }
        for (k, v) in puts {
            batch.put_cf(cf, k, v);
        }
        self.db.write_opt(batch, &synced()).map_err(backend)
    }

    fn put_evidence(&self, evidence: &Evidence) -> Result<bool, StoreError> {
        // Under the writers' lock, so two callers cannot both see it as new.
        let _writer = self.lock_latest();
        let id = evidence.id();
        let cf = self.cf(CF_EVIDENCE)?;
        if self.db.get_pinned_cf(cf, id.0).map_err(backend)?.is_some() {
            return Ok(false);
        }
        self.db
            .put_cf_opt(cf, id.0, encode(evidence), &synced())
            .map_err(backend)?;
        Ok(true)
    }

    fn evidence(&self) -> Result<Vec<Evidence>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_EVIDENCE)?, IteratorMode::Start)
        {
            let (key, value) = item.map_err(backend)?;
            let what = match <[u8; 32]>::try_from(key.as_ref()) {
                Ok(id) => format!("evidence {}", Hash(id)),
                Err(_) => format!("evidence with a {}-byte key", key.len()),
            };
            out.push(decode_value(&value, &what)?);
        }
        Ok(out)
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.db
            .put_cf_opt(self.cf(CF_META)?, user_meta_key(key), value, &synced())
            .map_err(backend)
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(CF_META, &user_meta_key(key))
    }
}
