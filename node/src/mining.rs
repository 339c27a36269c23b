//! Proof-of-work mining on worker threads: the driver carries out the PoW
//! engine's `Output::Mine` here and feeds back `Input::Mined`.
//!
//! `threads` OS threads search nonces of the current job in slices; a new
//! job (the head moved, new transactions) replaces the old one at the next
//! slice boundary. A hash-rate cap keeps a local testnet usable: each
//! thread sleeps after a slice as long as its share of the cap requires,
//! so with the `phalanx node` defaults (1 thread, 100,000 hashes/s) four
//! nodes on one machine together use a small part of one core. With 0
//! threads the node does not mine (it still validates and follows).

use phalanx_consensus::pow::{search, U256};
use phalanx_consensus::MineJob;
use phalanx_crypto::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Nonces tried between looks at the job and the clock.
const SLICE: u64 = 2_000;

/// Mining settings (`phalanx node --mine-threads`, `--hash-rate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MiningConfig {
    /// Worker threads (0: do not mine).
    pub threads: usize,
    /// Most hashes per second over all threads (0: no cap).
    pub hash_rate: u64,
}

impl Default for MiningConfig {
    fn default() -> Self {
        MiningConfig {
            threads: 1,
            hash_rate: 100_000,
        }
    }
}

/// A nonce found for a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// The job's header.
    pub job: Hash,
    /// The nonce.
    pub nonce: u64,
}

#[derive(Debug, Default)]
struct Current {
    generation: u64,
    job: Option<MineJob>,
}

#[derive(Debug)]
struct Inner {
    current: Mutex<Current>,
    changed: Condvar,
    stop: AtomicBool,
    hashes: AtomicU64,
}

/// The mining threads. Dropping it stops them.
#[derive(Debug)]
pub struct Miner {
    inner: Arc<Inner>,
    threads: usize,
}

impl Miner {
    /// Starts `config.threads` threads; found nonces arrive on `found`.
    pub fn start(config: MiningConfig, found: mpsc::Sender<Found>) -> Miner {
        let inner = Arc::new(Inner {
            current: Mutex::new(Current::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            hashes: AtomicU64::new(0),
        });
        let per_thread = match (config.hash_rate, config.threads) {
            (0, _) | (_, 0) => 0,
            (rate, t) => (rate / t as u64).max(1),
        };
        for i in 0..config.threads {
            let inner = inner.clone();
            let found = found.clone();
            let _ = std::thread::Builder::new()
                .name(format!("phalanx-miner-{i}"))
                .spawn(move || work(&inner, i as u64, per_thread, &found));
        }
        Miner {
            inner,
            threads: config.threads,
        }
    }

    /// Replaces the job (`None`: stop searching).
    pub fn set(&self, job: Option<MineJob>) {
        let mut c = lock(&self.inner.current);
        c.generation += 1;
        c.job = job;
        self.inner.changed.notify_all();
    }

    /// Whether it mines at all.
    pub fn active(&self) -> bool {
        self.threads > 0
    }

    /// Hashes computed so far.
    pub fn hashes(&self) -> u64 {
        self.inner.hashes.load(Ordering::Relaxed)
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.changed.notify_all();
    }
}

fn lock(m: &Mutex<Current>) -> std::sync::MutexGuard<'_, Current> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One thread: search the current job a slice at a time, within its
/// share of the cap (`per_second` hashes, 0 = none).
fn work(inner: &Inner, thread: u64, per_second: u64, found: &mpsc::Sender<Found>) {
    // Threads (and nodes) start far apart in the nonce space.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let mut nonce = (thread << 56) ^ (seed << 20);
    let mut started = Instant::now();
    let mut done: u64 = 0;
    while !inner.stop.load(Ordering::SeqCst) {
        let (generation, job) = {
            let mut c = lock(&inner.current);
            let idle = c.job.is_none();
            while c.job.is_none() && !inner.stop.load(Ordering::SeqCst) {
                c = inner
                    .changed
                    .wait_timeout(c, Duration::from_millis(500))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            if idle {
                // Time spent idle is not credit to burst with later.
                (started, done) = (Instant::now(), 0);
            }
            match c.job {
                Some(j) => (c.generation, j),
                None => return,
            }
        };
        let target = U256::from_be_bytes(&job.target);
        if let Some(n) = search(&job.header, target, nonce, SLICE) {
            let still = lock(&inner.current).generation == generation;
            if still {
                let _ = found.blocking_send(Found {
                    job: job.header,
                    nonce: n,
                });
                // Wait for the next job rather than find the same block twice.
                let mut c = lock(&inner.current);
                while c.generation == generation && !inner.stop.load(Ordering::SeqCst) {
                    c = inner
                        .changed
                        .wait_timeout(c, Duration::from_millis(500))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                (started, done) = (Instant::now(), 0);
                continue;
            }
        }
        nonce = nonce.wrapping_add(SLICE);
        done += SLICE;
        inner.hashes.fetch_add(SLICE, Ordering::Relaxed);
        if per_second > 0 {
            // Stay at or under the cap: sleep until `done` hashes are due.
            let due = Duration::from_secs_f64(done as f64 / per_second as f64);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_consensus::pow::{meets, seal_hash, target_for_work};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finds_a_nonce_for_the_current_job_within_the_cap() {
        let (tx, mut rx) = mpsc::channel(4);
        let miner = Miner::start(
            MiningConfig {
                threads: 2,
                hash_rate: 200_000,
            },
            tx,
        );
        let target = target_for_work(1_000);
        let job = MineJob {
            header: Hash([3; 32]),
            target: target.to_be_bytes(),
        };
        miner.set(Some(job));
        let found = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("found in time")
            .expect("a nonce");
        assert_eq!(found.job, job.header);
        assert!(meets(&seal_hash(&job.header, found.nonce), target));
        // A cancelled job finds nothing more.
        miner.set(None);
        let before = miner.hashes();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle = miner.hashes() - before;
        assert!(idle <= 2 * SLICE * 2, "{idle} hashes while idle");
        // The cap holds: an impossible job for one second.
        let start = miner.hashes();
        let t0 = Instant::now();
        miner.set(Some(MineJob {
            header: Hash([4; 32]),
            target: [0; 32],
        }));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (done, secs) = (miner.hashes() - start, t0.elapsed().as_secs_f64());
        let allowed = 200_000.0 * secs + (4 * SLICE) as f64;
        assert!(
            done as f64 <= allowed,
            "{done} hashes in {secs:.2} s (cap 200,000/s)"
        );
        assert!(done >= 20_000, "{done} hashes in {secs:.2} s");
    }
}
