//! State shared between the driver (the one writer) and the HTTP API
//! (readers and transaction submission).

use crate::home::NodeConfig;
use crate::mempool::{Mempool, MempoolError};
use crate::metrics::Metrics;
use phalanx_crypto::Hash;
use phalanx_ledger::{Genesis, SignedTransaction, Store, ValidatorIndex};
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
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
    /// How this node behaves towards its peers ("honest" unless started
    /// with `--behaviour` or changed by fault injection).
    #[serde(default)]
    pub behaviour: String,
    /// Validators this node has proven faulty (equivocation evidence) and
    /// whose consensus messages it ignores.
    #[serde(default)]
    pub faulty_peers: Vec<u32>,
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

/// One committed block as `GET /commits` reports it: when this node
/// executed it and which transactions it holds (what a benchmark needs to
/// time every transaction without fetching whole blocks).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    /// The height.
    pub height: u64,
    /// The block hash.
    pub block_hash: Hash,
    /// The proposer's timestamp (ms since the Unix epoch).
    pub proposed_at_ms: u64,
    /// When this node had executed and stored it (ms since the Unix epoch).
    pub committed_at_ms: u64,
    /// The transaction hashes, in block order.
    pub tx_hashes: Vec<Hash>,
}

/// The most recent commits, bounded by block count and by transaction count.
#[derive(Debug, Default)]
pub struct CommitLog {
    inner: Mutex<(VecDeque<CommitRecord>, usize)>,
}

/// Blocks kept in the commit log.
pub const COMMIT_LOG_BLOCKS: usize = 20_000;
/// Transaction hashes kept in the commit log (32 bytes each: 16 MB).
pub const COMMIT_LOG_TXS: usize = 500_000;

impl CommitLog {
    /// Appends a commit, dropping the oldest beyond the bounds.
    pub fn push(&self, record: CommitRecord) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.1 += record.tx_hashes.len();
        g.0.push_back(record);
        while g.0.len() > COMMIT_LOG_BLOCKS || (g.1 > COMMIT_LOG_TXS && g.0.len() > 1) {
            if let Some(old) = g.0.pop_front() {
                g.1 -= old.tx_hashes.len();
            }
        }
    }

    /// Up to `limit` records from height `from` on, and the lowest height
    /// still kept (0 if none).
    pub fn since(&self, from: u64, limit: usize) -> (Vec<CommitRecord>, u64) {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = g.0.front().map_or(0, |r| r.height);
        let skip = from.saturating_sub(oldest) as usize;
        (g.0.iter().skip(skip).take(limit).cloned().collect(), oldest)
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
    /// Recent commits with their local times (`GET /commits`).
    pub commits: CommitLog,
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
            behaviour: "honest".into(),
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
            commits: CommitLog::default(),
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

    /// Tells the driver that transactions were added to the mempool.
    pub fn wake_driver(&self) {
        self.new_txs.notify_one();
    }

    /// Resolves when transactions were added (driver only).
    pub async fn new_txs(&self) {
        self.new_txs.notified().await
    }

    /// Checks and queues a transaction submitted by a client: the signature
    /// (on a blocking thread), then the mempool pre-checks against committed
    /// state. Returns the transaction hash.
    pub async fn submit(self: &Arc<Self>, tx: SignedTransaction) -> Result<Hash, MempoolError> {
        let hash = tx.hash();
        self.submit_batch(vec![tx])
            .await
            .pop()
            .map_or(Err(MempoolError::BadSignature), |(_, r)| r.map(|()| hash))
    }

    /// [`Shared::submit`] for many transactions at once: one batch signature
    /// check, one wake-up of the driver. One (hash, result) per transaction,
    /// in order.
    pub async fn submit_batch(
        self: &Arc<Self>,
        txs: Vec<SignedTransaction>,
    ) -> Vec<(Hash, Result<(), MempoolError>)> {
        let verdicts = self.clone().verify(txs.clone()).await;
        let mut results = Vec::with_capacity(txs.len());
        let mut accepted = Vec::new();
        for (i, tx) in txs.into_iter().enumerate() {
            let (hash, ok) = verdicts.get(i).copied().unwrap_or((tx.hash(), false));
            let result = self.insert_verified(tx.clone(), hash, ok).map(|_| ());
            if result.is_ok() {
                accepted.push(tx);
            }
            results.push((hash, result));
        }
        if !accepted.is_empty() {
            self.outbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(accepted);
            self.new_txs.notify_one();
        }
        results
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
