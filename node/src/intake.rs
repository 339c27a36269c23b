//! Taking in transactions: which signatures were already checked, the
//! queue that checks the rest off the async threads, the client
//! transactions waiting to be pushed to the validators, and when to push
//! the ones still pending again. The composite steps (check, then the
//! mempool's pre-checks against executed state) are `Shared::submit` and
//! `Shared::insert_verified`.

use phalanx_crypto::Hash;
use phalanx_ledger::SignedTransaction;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Most transaction batches pushed by peers that are decoded, queued for
/// their signature check or being checked at once. A batch over this is
/// dropped (counted as `tx_batch_busy`): pushing is best effort, a
/// proposal carries its transactions anyway, and before this bound every
/// pushed batch became a task of its own, queued without limit.
pub const MAX_PUSHED_IN_FLIGHT: usize = 16;

/// Most `POST /txs/batch` requests read and checked at once (each up to
/// 8 MiB of JSON). One more is answered 503 `busy` before its body is
/// read: the client retries, instead of the node buffering without limit.
pub const MAX_CLIENT_BATCHES_IN_FLIGHT: usize = 32;

/// What the node does with transactions before the mempool has them.
#[derive(Debug)]
pub struct Intake {
    /// Signature verdicts already computed.
    pub verified: VerifiedCache,
    /// Signature checks, coalesced; at most one batch per core but one is
    /// checked at once, so one core is left for the rest (with one per
    /// core, n = 16 under `--max` still stalled).
    pub(crate) verifiers: crate::verify::VerifyQueue,
    /// Client transactions to push again while they stay pending.
    pub resend: Resend,
    /// Transactions accepted from clients, to be pushed to the validators
    /// by the driver.
    outbox: Mutex<Vec<SignedTransaction>>,
    new_txs: Notify,
    /// Permits for pushed batches in flight ([`MAX_PUSHED_IN_FLIGHT`]).
    pushed: Arc<Semaphore>,
    /// Permits for client batches ([`MAX_CLIENT_BATCHES_IN_FLIGHT`]).
    client_batches: Arc<Semaphore>,
}

impl Default for Intake {
    fn default() -> Intake {
        Intake {
            verified: VerifiedCache::default(),
            verifiers: crate::verify::VerifyQueue::new(
                std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1)),
            ),
            resend: Resend::default(),
            outbox: Mutex::new(Vec::new()),
            new_txs: Notify::new(),
            pushed: Arc::new(Semaphore::new(MAX_PUSHED_IN_FLIGHT)),
            client_batches: Arc::new(Semaphore::new(MAX_CLIENT_BATCHES_IN_FLIGHT)),
        }
    }
}

impl Intake {
    /// Room for one more pushed batch, held until its transactions are in
    /// the mempool; `None` when [`MAX_PUSHED_IN_FLIGHT`] are in flight.
    pub fn admit_pushed(&self) -> Option<OwnedSemaphorePermit> {
        self.pushed.clone().try_acquire_owned().ok()
    }

    /// Room for one more client batch, held until it is answered; `None`
    /// when [`MAX_CLIENT_BATCHES_IN_FLIGHT`] are in flight.
    pub fn admit_client_batch(&self) -> Option<OwnedSemaphorePermit> {
        self.client_batches.clone().try_acquire_owned().ok()
    }

    /// Tells the driver that transactions were added to the mempool.
    pub fn wake_driver(&self) {
        self.new_txs.notify_one();
    }

    /// Resolves when transactions were added (driver only).
    pub async fn new_txs(&self) {
        self.new_txs.notified().await
    }

    /// Queues accepted client transactions for the driver to push.
    pub fn to_push(&self, txs: Vec<SignedTransaction>) {
        self.outbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(txs);
        self.new_txs.notify_one();
    }

    /// Takes the client transactions waiting to be pushed (driver only).
    pub fn take_outbox(&self) -> Vec<SignedTransaction> {
        std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Checks signatures now, on this thread, skipping ones already
    /// verified; returns (hash, valid) per transaction.
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
}

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
