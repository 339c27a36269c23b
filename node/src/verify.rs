//! Coalesced signature checks.
//!
//! Every batch of transactions that reaches a node (a client's `POST
//! /txs/batch`, a batch pushed by a peer) needs its signatures checked
//! once, off the async threads. Checking each batch on its own made the
//! batches as small as the senders chose (25 transactions per request at
//! 5,000 tx/s in `phalanx bench`), and a batch check costs less per
//! signature the larger it is (one multi-scalar multiplication for the
//! whole batch). So callers queue their batch here; whoever holds one of the
//! few verification permits takes everything queued (up to
//! [`MAX_COALESCED`] signatures) and checks it as one batch. Under light
//! load nothing waits and a batch is checked alone; under heavy load the
//! queue grows while a check runs, and the next check takes all of it.

use phalanx_crypto::Hash;
use phalanx_ledger::SignedTransaction;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::{oneshot, Semaphore};

/// Most signatures checked in one coalesced batch.
pub const MAX_COALESCED: usize = 4096;

struct Job {
    txs: Vec<SignedTransaction>,
    reply: oneshot::Sender<Vec<(Hash, bool)>>,
}

/// Queued signature checks and the permits to run them.
pub struct VerifyQueue {
    pending: Mutex<VecDeque<Job>>,
    permits: Semaphore,
}

impl std::fmt::Debug for VerifyQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyQueue")
            .field("permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl VerifyQueue {
    /// A queue checking at most `concurrent` coalesced batches at once.
    pub fn new(concurrent: usize) -> VerifyQueue {
        VerifyQueue {
            pending: Mutex::new(VecDeque::new()),
            permits: Semaphore::new(concurrent.max(1)),
        }
    }

    /// Checks `txs` with `check` (a blocking function from transactions to
    /// one (hash, valid) verdict each, in order), coalesced with whatever
    /// else is queued. Returns this batch's verdicts in order.
    pub async fn verify<F>(&self, txs: Vec<SignedTransaction>, check: F) -> Vec<(Hash, bool)>
    where
        F: Fn(&[SignedTransaction]) -> Vec<(Hash, bool)> + Clone + Send + 'static,
    {
        if txs.is_empty() {
            return Vec::new();
        }
        let (reply, mut answer) = oneshot::channel();
        self.lock().push_back(Job { txs, reply });
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = self.permits.acquire().await.ok();
        loop {
            // Done already (another holder took this batch with its own)?
            match answer.try_recv() {
                Ok(verdicts) => return verdicts,
                Err(oneshot::error::TryRecvError::Closed) => return Vec::new(),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let jobs = self.take();
            if jobs.is_empty() {
                // This batch is being checked by another holder.
                break;
            }
            let check = check.clone();
            let _ = tokio::task::spawn_blocking(move || run(jobs, &check)).await;
        }
        drop(permit);
        answer.await.unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The oldest queued jobs, at least one (if any), up to
    /// [`MAX_COALESCED`] signatures.
    fn take(&self) -> Vec<Job> {
        let mut pending = self.lock();
        let mut jobs = Vec::new();
        let mut count = 0;
        while let Some(job) = pending.front() {
            if !jobs.is_empty() && count + job.txs.len() > MAX_COALESCED {
                break;
            }
            count += job.txs.len();
            jobs.extend(pending.pop_front());
        }
        jobs
    }
}

/// Checks the jobs as one batch and answers each.
fn run<F>(jobs: Vec<Job>, check: &F)
where
    F: Fn(&[SignedTransaction]) -> Vec<(Hash, bool)>,
{
    let all: Vec<SignedTransaction> = jobs.iter().flat_map(|j| j.txs.iter().cloned()).collect();
    let mut verdicts = check(&all).into_iter();
    for job in jobs {
        let mine: Vec<(Hash, bool)> = verdicts.by_ref().take(job.txs.len()).collect();
        // A caller that went away no longer needs its answer.
        let _ = job.reply.send(mine);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_crypto::Keypair;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn tx(label: &str, nonce: u64, valid: bool) -> SignedTransaction {
        let mut t = crate::testutil::self_transfer(label, nonce);
        if !valid {
            let k = Keypair::from_label(label);
            // Re-sign a different amount with the same header: the signature
            // no longer matches.
            let mut other = t.tx.clone();
            other.amount = 2;
            let sig = other.sign(&k).signature;
            t = SignedTransaction::new(t.tx.clone(), sig);
        }
        t
    }

    fn real_check(
        calls: Arc<AtomicUsize>,
        sizes: Arc<Mutex<Vec<usize>>>,
    ) -> impl Fn(&[SignedTransaction]) -> Vec<(Hash, bool)> + Clone + Send + 'static {
        move |txs: &[SignedTransaction]| {
            calls.fetch_add(1, Ordering::SeqCst);
            sizes.lock().unwrap().push(txs.len());
            // Slow enough that concurrent callers queue up behind it.
            std::thread::sleep(std::time::Duration::from_millis(30));
            let ok = phalanx_ledger::verify_transactions(txs);
            txs.iter().map(SignedTransaction::hash).zip(ok).collect()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_batches_are_checked_together_and_each_gets_its_own_verdicts() {
        let queue = Arc::new(VerifyQueue::new(1));
        let calls = Arc::new(AtomicUsize::new(0));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let check = real_check(calls.clone(), sizes.clone());
        let mut tasks = Vec::new();
        for b in 0..16u64 {
            let queue = queue.clone();
            let check = check.clone();
            // Every third transaction of each batch carries a bad signature.
            let txs: Vec<SignedTransaction> = (0..10)
                .map(|i| tx(&format!("sender{b}"), i, i % 3 != 0))
                .collect();
            tasks.push(tokio::spawn(async move {
                let expect: Vec<(Hash, bool)> =
                    txs.iter().map(|t| (t.hash(), t.verify().is_ok())).collect();
                let got = queue.verify(txs, check).await;
                assert_eq!(got, expect, "batch {b} got another batch's verdicts");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(
            sizes.iter().sum::<usize>(),
            160,
            "every signature checked once"
        );
        assert!(
            calls.load(Ordering::SeqCst) < 16,
            "16 batches queued behind a slow check were not coalesced: sizes {sizes:?}"
        );
    }

    #[tokio::test]
    async fn a_lone_batch_is_checked_at_once_and_empty_batches_cost_nothing() {
        let queue = VerifyQueue::new(1);
        let calls = Arc::new(AtomicUsize::new(0));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let check = real_check(calls.clone(), sizes.clone());
        assert!(queue.verify(Vec::new(), check.clone()).await.is_empty());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        let t = tx("alone", 0, true);
        let got = queue.verify(vec![t.clone()], check).await;
        assert_eq!(got, vec![(t.hash(), true)]);
        assert_eq!(*sizes.lock().unwrap(), vec![1]);
    }

    #[test]
    fn take_respects_the_cap_but_always_takes_one() {
        let queue = VerifyQueue::new(1);
        let big = vec![tx("big", 0, true); MAX_COALESCED + 5];
        for txs in [big, vec![tx("small", 0, true)]] {
            let (reply, _answer) = oneshot::channel();
            queue.lock().push_back(Job { txs, reply });
        }
        // The oversized job alone, then the small one.
        assert_eq!(queue.take().len(), 1);
        assert_eq!(queue.take().len(), 1);
        assert!(queue.take().is_empty());
    }
}
