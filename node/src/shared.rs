//! State shared between the driver (the one writer) and the HTTP API
//! (readers and transaction submission).

use crate::home::NodeConfig;
use crate::mempool::{Mempool, MempoolError};
use crate::metrics::Metrics;
use phalanx_crypto::Hash;
use phalanx_ledger::{Genesis, SignedTransaction, Store, ValidatorIndex};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};

/// What `GET /status` reports; the driver publishes a new one on every change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The chain.
    pub chain_id: String,
    /// This node's name.
    pub moniker: String,
    /// This node's validator index.
    pub validator_index: u32,
    /// Latest committed height.
    pub height: u64,
    /// Hash of the latest block.
    pub latest_block_hash: Hash,
    /// Current view.
    pub view: u64,
    /// The primary of `view`.
    pub primary: u32,
    /// Whether a view change is under way.
    pub view_changing: bool,
    /// Connected validator peers (their validator indices).
    pub peers: Vec<u32>,
    /// Transactions in the mempool.
    pub mempool_size: usize,
    /// The consensus engine ("pbft").
    pub consensus: String,
}

/// Hashes of transactions whose signatures this node has verified, so that
/// each is verified once (two generations, bounded).
#[derive(Debug, Default)]
pub struct VerifiedCache {
    inner: Mutex<(HashSet<Hash>, HashSet<Hash>)>,
}

const VERIFIED_GENERATION: usize = 500_000;

impl VerifiedCache {
    /// Remembers a verified transaction.
    pub fn insert(&self, hash: Hash) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.0.len() >= VERIFIED_GENERATION {
            g.1 = std::mem::take(&mut g.0);
        }
        g.0.insert(hash);
    }

    /// Whether a transaction was verified.
    pub fn contains(&self, hash: &Hash) -> bool {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0.contains(hash) || g.1.contains(hash)
    }
}

/// Shared node state.
pub struct Shared {
    /// The chain.
    pub genesis: Genesis,
    /// This validator.
    pub me: ValidatorIndex,
    /// config.toml.
    pub config: NodeConfig,
    /// The block store.
    pub store: Arc<dyn Store>,
    /// Pending transactions.
    pub mempool: Mempool,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Signature verdicts already computed.
    pub verified: VerifiedCache,
    status: watch::Sender<NodeStatus>,
    new_txs: Notify,
    /// Transactions accepted from clients, to be gossiped by the driver.
    outbox: Mutex<Vec<SignedTransaction>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Shared state for a node.
    pub fn new(
        genesis: Genesis,
        me: ValidatorIndex,
        config: NodeConfig,
        store: Arc<dyn Store>,
    ) -> Shared {
        let mempool = Mempool::new(
            &genesis.chain_id,
            config.mempool.max_txs,
            config.mempool.max_bytes,
        );
        let status = NodeStatus {
            chain_id: genesis.chain_id.clone(),
            moniker: config.moniker.clone(),
            validator_index: me.0,
            consensus: "pbft".into(),
            ..NodeStatus::default()
        };
        Shared {
            genesis,
            me,
            config,
            store,
            mempool,
            metrics: Metrics::new(),
            verified: VerifiedCache::default(),
            status: watch::Sender::new(status),
            new_txs: Notify::new(),
            outbox: Mutex::new(Vec::new()),
        }
    }

    /// The current status.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change (e.g. to wait for a height).
    pub fn subscribe_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.subscribe()
    }

    /// Publishes a new status (driver only).
    pub fn set_status(&self, f: impl FnOnce(&mut NodeStatus)) {
        self.status.send_modify(f);
    }

    /// Resolves when transactions were added (driver only).
    pub async fn new_txs(&self) {
        self.new_txs.notified().await
    }

    /// Checks and queues a transaction submitted by a client: the signature
    /// (on a blocking thread), then the mempool pre-checks against committed
    /// state. Returns the transaction hash.
    pub async fn submit(self: &Arc<Self>, tx: SignedTransaction) -> Result<Hash, MempoolError> {
        let mut verdicts = self.clone().verify(vec![tx.clone()]).await;
        let (hash, ok) = verdicts.pop().unwrap_or((tx.hash(), false));
        let result = self.insert_verified(tx.clone(), hash, ok);
        if result.is_ok() {
            self.outbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(tx);
            self.new_txs.notify_one();
        }
        result
    }

    /// Verifies signatures off the async threads, skipping ones already
    /// verified; returns (hash, valid) per transaction.
    pub async fn verify(self: Arc<Self>, txs: Vec<SignedTransaction>) -> Vec<(Hash, bool)> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.verify_now(&txs))
            .await
            .unwrap_or_default()
    }

    /// Synchronous part of [`Shared::verify`].
    pub fn verify_now(&self, txs: &[SignedTransaction]) -> Vec<(Hash, bool)> {
        let hashes: Vec<Hash> = txs.iter().map(SignedTransaction::hash).collect();
        let unknown: Vec<usize> = (0..txs.len())
            .filter(|i| !self.verified.contains(&hashes[*i]))
            .collect();
        let subset: Vec<SignedTransaction> = unknown.iter().map(|i| txs[*i].clone()).collect();
        let verdicts = phalanx_ledger::verify_transactions(&subset);
        let mut ok = vec![true; txs.len()];
        for (i, v) in unknown.into_iter().zip(verdicts) {
            ok[i] = v;
            if v {
                self.verified.insert(hashes[i]);
            }
        }
        hashes.into_iter().zip(ok).collect()
    }

    /// Mempool insert after verification; counts refusals.
    pub fn insert_verified(
        &self,
        tx: SignedTransaction,
        hash: Hash,
        signature_ok: bool,
    ) -> Result<Hash, MempoolError> {
        let sender = self.store.account(&tx.tx.from).ok().flatten();
        let result = self.mempool.insert(tx, hash, signature_ok, sender);
        match &result {
            Ok(_) => {
                self.metrics.mempool_size.set(self.mempool.len() as i64);
            }
            Err(e) => self.metrics.rejected(e.code()),
        };
        result
    }

    /// Takes the client transactions waiting to be gossiped (driver only).
    pub fn take_outbox(&self) -> Vec<SignedTransaction> {
        std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
