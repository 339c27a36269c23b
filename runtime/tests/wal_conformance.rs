//! The write-ahead log conforms on both stores: records written,
//! overwritten and pruned, with restarts (unflushed records lost) at
//! random points, read back exactly as an independent model of the log's
//! promise says — on the in-memory store the simulator uses and on the
//! RocksDB store the node uses.
//!
//! The promise: after a restart the log holds, for each record identity
//! (a vote's kind, view and seq; a prepared certificate's seq; a CFT
//! entry's index; otherwise the record kind), the last one flushed, except
//! records of seqs at or below the last stable checkpoint (or CFT
//! compaction) flushed with or before them.

use phalanx_consensus::{CftRecord, Persisted};
use phalanx_crypto::{Hash, Signature};
use phalanx_ledger::{
    Height, MemoryStore, Payload, RocksStore, SignedVote, Store, ValidatorIndex, Vote, VoteKind,
};
use phalanx_runtime::Wal;
use std::collections::BTreeMap;
use std::sync::Arc;

/// xorshift: a fixed sequence per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What makes two records the same slot in the log (the model's own
/// rule, written apart from the log's key layout), and the seq a
/// checkpoint prunes it at.
fn identity(r: &Persisted) -> (String, Option<u64>) {
    match r {
        Persisted::Vote(v) => (
            format!("vote {:?} {} {}", v.vote.kind, v.vote.view, v.vote.seq.0),
            Some(v.vote.seq.0),
        ),
        Persisted::Prepared(c) => (format!("prepared {}", c.slot().1 .0), Some(c.slot().1 .0)),
        Persisted::Cft(CftRecord::Entry { payload, .. }) => (
            format!("entry {}", payload.height.0),
            Some(payload.height.0),
        ),
        Persisted::Cft(CftRecord::HardState { .. }) => ("hard state".into(), None),
        Persisted::Cft(CftRecord::Truncate { .. }) => ("truncate".into(), None),
        Persisted::Cft(CftRecord::Compacted { .. }) => ("compacted".into(), None),
        Persisted::View { .. } => ("view".into(), None),
        Persisted::StableCheckpoint { .. } => ("stable".into(), None),
        Persisted::NewView(_) => ("new view".into(), None),
        Persisted::ViewJustification(_) => ("justification".into(), None),
    }
}

fn prune_point(r: &Persisted) -> Option<u64> {
    match r {
        Persisted::StableCheckpoint { seq, .. } => Some(seq.0),
        Persisted::Cft(CftRecord::Compacted { index, .. }) => Some(index.0),
        _ => None,
    }
}

fn vote(kind: VoteKind, view: u64, seq: u64, digest: u8) -> Persisted {
    Persisted::Vote(SignedVote {
        vote: Vote {
            kind,
            view,
            seq: Height(seq),
            digest: Hash([digest; 32]),
            voter: ValidatorIndex(1),
        },
        signature: Signature([digest; 64]),
    })
}

fn entry(write: u64, height: u64, round: u64) -> Persisted {
    Persisted::Cft(CftRecord::Entry {
        write,
        payload: Payload {
            chain_id: "wal-test".into(),
            height: Height(height),
            round,
            proposer: ValidatorIndex(0),
            timestamp_ms: write,
            txs: Vec::new(),
            evidence: Vec::new(),
        },
    })
}

/// The log's contents as the model says: identity -> encoded record.
type Model = BTreeMap<String, Vec<u8>>;

fn apply(model: &mut Model, flushed: &[Persisted]) {
    let mut prune = None;
    for r in flushed {
        model.insert(identity(r).0, phalanx_crypto::encode(r));
        if let Some(p) = prune_point(r) {
            prune = Some(p);
        }
    }
    if let Some(p) = prune {
        model.retain(|_, bytes| {
            let r: Persisted = phalanx_crypto::decode(bytes).unwrap();
            identity(&r).1.is_none_or(|s| s > p)
        });
    }
}

fn sorted(records: &[Persisted]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = records.iter().map(phalanx_crypto::encode).collect();
    v.sort();
    v
}

/// One run of writes, overwrites, prunes and restarts against `store`.
fn run(seed: u64, open: &dyn Fn() -> Arc<dyn Store>) -> (usize, usize) {
    let mut rng = Rng(seed | 1);
    let store = open();
    let (mut wal, records) = Wal::open(store.clone()).unwrap();
    assert!(records.is_empty());
    let mut model = Model::new();
    let mut queued: Vec<Persisted> = Vec::new();
    let (mut restarts, mut pruned) = (0, 0);
    let (mut top, mut stable, mut write) = (1u64, 0u64, 0u64);
    let kinds = [
        VoteKind::PrePrepare,
        VoteKind::Prepare,
        VoteKind::Commit,
        VoteKind::Checkpoint,
    ];
    for _ in 0..600 {
        let record = match rng.below(20) {
            0..=8 => {
                // A vote above the stable checkpoint, sometimes the same
                // slot again (an overwrite with the same identity).
                let seq = stable + 1 + rng.below(top - stable + 1);
                top = top.max(seq);
                let kind = kinds[rng.below(4) as usize];
                vote(kind, rng.below(3), seq, rng.below(3) as u8)
            }
            9..=10 => Persisted::View {
                view: rng.below(5),
                active: rng.below(2) == 0,
            },
            11 => {
                stable = (stable + 1 + rng.below(4)).min(top);
                pruned += 1;
                Persisted::StableCheckpoint {
                    seq: Height(stable),
                    digest: Hash([stable as u8; 32]),
                    proof: Vec::new(),
                }
            }
            12 => Persisted::Cft(CftRecord::HardState {
                term: rng.below(9),
                voted_for: Some(ValidatorIndex(rng.below(4) as u32)),
            }),
            13..=15 => {
                write += 1;
                let h = stable + 1 + rng.below(top - stable + 1);
                entry(write, h, rng.below(4))
            }
            16 => {
                write += 1;
                Persisted::Cft(CftRecord::Truncate {
                    write,
                    from: Height(stable + 1 + rng.below(3)),
                })
            }
            _ => {
                top += 1;
                continue;
            }
        };
        wal.push(&record);
        queued.push(record);
        if rng.below(4) == 0 {
            wal.flush().unwrap();
            apply(&mut model, &queued);
            queued.clear();
        }
        if rng.below(25) == 0 {
            // Restart: what was queued and not flushed is lost.
            drop(wal);
            queued.clear();
            restarts += 1;
            let (reopened, records) = Wal::open(store.clone()).unwrap();
            wal = reopened;
            let expected: Vec<Vec<u8>> = {
                let mut v: Vec<Vec<u8>> = model.values().cloned().collect();
                v.sort();
                v
            };
            assert_eq!(
                sorted(&records),
                expected,
                "seed {seed} after restart {restarts}"
            );
        }
    }
    wal.flush().unwrap();
    apply(&mut model, &queued);
    let (_, records) = Wal::open(store).unwrap();
    let mut expected: Vec<Vec<u8>> = model.values().cloned().collect();
    expected.sort();
    assert_eq!(sorted(&records), expected, "seed {seed} at the end");
    (restarts, pruned)
}

#[test]
fn the_log_keeps_its_promise_on_the_memory_store() {
    let (mut restarts, mut pruned) = (0, 0);
    for seed in 0..50 {
        let (r, p) = run(seed, &|| Arc::new(MemoryStore::new()));
        restarts += r;
        pruned += p;
    }
    assert!(
        restarts > 100 && pruned > 100,
        "{restarts} restarts, {pruned} checkpoints"
    );
}

#[test]
fn the_log_keeps_its_promise_on_rocksdb() {
    let (mut restarts, mut pruned) = (0, 0);
    for seed in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (r, p) = run(seed, &|| Arc::new(RocksStore::open(&path).unwrap()));
        restarts += r;
        pruned += p;
    }
    assert!(
        restarts > 20 && pruned > 20,
        "{restarts} restarts, {pruned} checkpoints"
    );
}

#[test]
fn a_corrupt_record_is_refused_with_its_key() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    store
        .write_consensus(&[(b"view".to_vec(), vec![0xff, 0xff, 0xff])], &[])
        .unwrap();
    let err = Wal::open(store).unwrap_err().to_string();
    assert!(err.contains("consensus record view is corrupt"), "{err}");
}
