//! State shared between the driver (the one writer) and the HTTP API
//! (readers and transaction submission).

use crate::api::types::{CommitRecord, NodeStatus};
use crate::home::NodeConfig;
use crate::mempool::{Mempool, MempoolError};
use crate::metrics::{Metrics, RejectReason};
use phalanx_crypto::Hash;
use phalanx_ledger::{Account, Address, Genesis, SignedTransaction, State, Store, ValidatorIndex};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{watch, Notify};

/// Hashes of transactions whose signatures this node has verified, so that
/// each is verified once (two generations, bounded).
#[derive(Debug, Default)]
pub struct VerifiedCache {
    inner: Mutex<(HashSet<Hash>, HashSet<Hash>)>,
}

/// Hashes per generation. Two generations of 200,000 cover 40 s at
/// 10,000 tx/s, far more than a transaction spends between its signature
/// check and its block; at 500,000 the two sets held up to ~66 MB, a fifth
/// of a node's peak RSS after a minute of `phalanx bench --max`.
const VERIFIED_GENERATION: usize = 200_000;

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

/// First resend of a client transaction still pending after this long.
pub const RESEND_AFTER_MS: u64 = 8_000;
/// The longest wait between resends of one transaction.
const RESEND_MAX_MS: u64 = 60_000;

/// Client transactions this node accepted, by when to push them to the
/// validators again if they are still pending then. The push is retried but
/// still best effort: a batch a peer did not get (given up after its
/// attempts, dropped from a full queue) leaves a nonce gap there that holds
/// back every later transaction of the sender, and if that peer is the
/// primary, nobody proposes them. The node a client chose resends its
/// transactions until they commit, waiting twice as long each time.
#[derive(Debug, Default)]
pub struct Resend {
    /// (due ms, wait ms, hash), soonest first.
    heap: Mutex<BinaryHeap<Reverse<(u64, u64, Hash)>>>,
}

impl Resend {
    /// Schedules the first resend of `hashes` accepted at `now_ms`
    /// (beyond `cap` scheduled transactions, newer ones are not tracked).
    pub fn schedule(&self, hashes: impl IntoIterator<Item = Hash>, now_ms: u64, cap: usize) {
        let mut heap = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        for h in hashes {
            if heap.len() >= cap {
                break;
            }
            heap.push(Reverse((now_ms + RESEND_AFTER_MS, RESEND_AFTER_MS, h)));
        }
    }

    /// The transactions due at `now_ms` that `pending` still returns (the
    /// rest committed or left the mempool and are forgotten); each is
    /// scheduled again after twice its last wait.
    pub fn due(
        &self,
        now_ms: u64,
        pending: impl Fn(&Hash) -> Option<SignedTransaction>,
    ) -> Vec<SignedTransaction> {
        let mut heap = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        let mut again = Vec::new();
        let mut out = Vec::new();
        while let Some(Reverse((due, wait, hash))) = heap.peek().copied() {
            if due > now_ms {
                break;
            }
            heap.pop();
            if let Some(tx) = pending(&hash) {
                out.push(tx);
                let wait = (wait * 2).min(RESEND_MAX_MS);
                again.push(Reverse((now_ms + wait, wait, hash)));
            }
        }
        heap.extend(again);
        out
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
    /// The executed state (every account), in memory: the driver executes
    /// against it and updates it after each stored block; the mempool reads
    /// senders from it (a RocksDB read per submitted transaction cost ~6 %
    /// of a node's CPU at 5,000 tx/s).
    state: RwLock<State>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Signature verdicts already computed.
    pub verified: VerifiedCache,
    /// Recent commits with their local times (`GET /commits`).
    pub commits: CommitLog,
    /// Client transactions to push again while they stay pending.
    pub resend: Resend,
    /// Signature checks, coalesced; at most one batch per core but one is
    /// checked at once, so one core is left for the rest (with one per
    /// core, n = 16 under `--max` still stalled).
    verifiers: crate::verify::VerifyQueue,
    status: watch::Sender<NodeStatus>,
    new_txs: Notify,
    /// Transactions accepted from clients, to be pushed to the validators by the driver.
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
            consensus: genesis.consensus.engine.name().into(),
            behaviour: "honest".into(),
            version: crate::version::VERSION.into(),
            git_commit: crate::version::GIT_COMMIT.into(),
            ..NodeStatus::default()
        };
        // The driver checks this state against the chain tip and fails the
        // start if it is broken; until then, an empty one.
        let state = store.load_state().unwrap_or_default();
        let metrics = Metrics::new();
        Shared {
            genesis,
            me,
            config,
            store,
            mempool,
            state: RwLock::new(state),
            metrics,
            verified: VerifiedCache::default(),
            commits: CommitLog::default(),
            resend: Resend::default(),
            verifiers: crate::verify::VerifyQueue::new(
                std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1)),
            ),
            status: watch::Sender::new(status),
            new_txs: Notify::new(),
            outbox: Mutex::new(Vec::new()),
        }
    }

    /// An account of the executed state.
    pub fn account(&self, address: &Address) -> Option<Account> {
        self.state().account(address).copied()
    }

    /// The executed state, for reading.
    pub fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The executed state, for the driver to replace or update.
    pub fn state_mut(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
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
        let mut accepted_hashes = Vec::new();
        for (i, tx) in txs.into_iter().enumerate() {
            let (hash, ok) = verdicts.get(i).copied().unwrap_or((tx.hash(), false));
            let result = self.insert_verified(tx.clone(), hash, ok).map(|_| ());
            if result.is_ok() {
                accepted.push(tx);
                accepted_hashes.push(hash);
            }
            results.push((hash, result));
        }
        if !accepted.is_empty() {
            self.resend.schedule(
                accepted_hashes,
                crate::clock::now_ms(),
                self.config.mempool.max_txs,
            );
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
    ///
    /// Batches queued at the same time are checked together (see
    /// [`crate::verify`]), and at most (cores − 1) checks run at once.
    /// Unbounded, a burst of pushed and client batches became as many blocking threads,
    /// all runnable, and the driver got a sliver of the CPU: at n = 16 under
    /// `phalanx bench --max` no vote got through in time, views changed and
    /// nothing committed. Waiting here also slows clients down (the answer
    /// to `POST /txs/batch` comes after the check) instead of queueing
    /// without bound.
    pub async fn verify(self: Arc<Self>, txs: Vec<SignedTransaction>) -> Vec<(Hash, bool)> {
        let me = self.clone();
        self.verifiers
            .verify(txs, move |txs: &[SignedTransaction]| me.verify_now(txs))
            .await
    }

    /// Synchronous part of [`Shared::verify`].
    pub fn verify_now(&self, txs: &[SignedTransaction]) -> Vec<(Hash, bool)> {
        let hashes: Vec<Hash> = txs.iter().map(SignedTransaction::hash).collect();
        // Each unknown transaction once, however often it appears (a
        // coalesced batch holds the same push from several peers).
        let mut first: std::collections::HashMap<Hash, usize> = std::collections::HashMap::new();
        let mut unknown: Vec<usize> = Vec::new();
        for (i, h) in hashes.iter().enumerate() {
            if !self.verified.contains(h) && !first.contains_key(h) {
                first.insert(*h, unknown.len());
                unknown.push(i);
            }
        }
        let subset: Vec<SignedTransaction> = unknown.iter().map(|i| txs[*i].clone()).collect();
        let verdicts = phalanx_ledger::verify_transactions(&subset);
        for (i, v) in unknown.iter().zip(&verdicts) {
            if *v {
                self.verified.insert(hashes[*i]);
            }
        }
        hashes
            .into_iter()
            .map(|h| {
                let ok = first.get(&h).is_none_or(|k| verdicts[*k]);
                (h, ok)
            })
            .collect()
    }

    /// Mempool insert after verification; counts refusals.
    pub fn insert_verified(
        &self,
        tx: SignedTransaction,
        hash: Hash,
        signature_ok: bool,
    ) -> Result<Hash, MempoolError> {
        if self.mempool.contains(&hash) {
            // Pushed again, or by several peers: skip the store lookup.
            self.metrics.rejected(RejectReason::Duplicate);
            return Err(MempoolError::Duplicate(hash));
        }
        let sender = self.account(&tx.tx.from);
        let result = self.mempool.insert(tx, hash, signature_ok, sender);
        match &result {
            Ok(_) => {
                self.metrics.mempool_size.set(self.mempool.len() as i64);
            }
            Err(e) => self.metrics.rejected(e.reason()),
        };
        result
    }

    /// Takes the client transactions waiting to be pushed (driver only).
    pub fn take_outbox(&self) -> Vec<SignedTransaction> {
        std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(nonce: u64) -> SignedTransaction {
        crate::testutil::self_transfer("resend", nonce)
    }

    #[test]
    fn resends_pending_transactions_with_doubling_waits_and_forgets_committed_ones() {
        let (a, b) = (tx(0), tx(1));
        let r = Resend::default();
        r.schedule([a.hash(), b.hash()], 1_000, 10);
        let both = |h: &Hash| [&a, &b].into_iter().find(|t| t.hash() == *h).cloned();
        assert!(
            r.due(1_000 + RESEND_AFTER_MS - 1, both).is_empty(),
            "not yet due"
        );
        let t1 = 1_000 + RESEND_AFTER_MS;
        let mut again = r.due(t1, both);
        again.sort_by_key(|t| t.tx.nonce);
        assert_eq!(again, vec![a.clone(), b.clone()]);
        // Next time after twice the wait; `a` committed meanwhile.
        let only_b = |h: &Hash| (*h == b.hash()).then(|| b.clone());
        assert!(r.due(t1 + 2 * RESEND_AFTER_MS - 1, only_b).is_empty());
        let t2 = t1 + 2 * RESEND_AFTER_MS;
        assert_eq!(r.due(t2, only_b), vec![b.clone()]);
        // `a` was forgotten: even if it were pending again it is not re-sent.
        assert_eq!(r.due(t2 + 4 * RESEND_AFTER_MS, both), vec![b.clone()]);
        // Once nothing is pending, nothing is left scheduled.
        assert!(r.due(u64::MAX / 2, |_| None).is_empty());
        assert!(r.due(u64::MAX / 2, both).is_empty());
    }

    #[test]
    fn resend_waits_are_capped_and_the_schedule_is_bounded() {
        let a = tx(0);
        let r = Resend::default();
        r.schedule([a.hash(), tx(1).hash(), tx(2).hash()], 0, 1);
        let pending = |h: &Hash| (*h == a.hash()).then(|| a.clone());
        let mut now = 0;
        let mut sends = Vec::new();
        while now < 10 * RESEND_MAX_MS {
            now += 500;
            if !r.due(now, pending).is_empty() {
                sends.push(now);
            }
        }
        let gaps: Vec<u64> = sends.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| *g <= RESEND_MAX_MS), "{gaps:?}");
        assert_eq!(gaps.last(), Some(&RESEND_MAX_MS));
        assert!(
            gaps.windows(2).all(|w| w[0] <= w[1]),
            "waits never shrink: {gaps:?}"
        );
    }
}
