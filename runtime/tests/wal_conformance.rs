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
//! compaction) flushed with or before them. Each engine's records run
//! through the log on their own, as each node runs one engine.

use phalanx_consensus::pbft::record::PreparedRecord;
use phalanx_consensus::{CftRecord, PbftRecord, Record};
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

/// One engine's records as the model sees them: what makes two records
/// the same slot in the log (the model's own rule, written apart from the
/// log's key layout), the seq a pruning record prunes it at, and a
/// generator of writes, overwrites and pruning records.
trait Model: Record {
    fn identity(&self) -> (String, Option<u64>);
    fn prune_point(&self) -> Option<u64>;
    /// A random record (`None`: just move the top on).
    fn draw(rng: &mut Rng, at: &mut Positions) -> Option<Self>;
}

/// Where the generator is: the highest seq written, the last prune point,
/// the CFT write counter.
#[derive(Default)]
struct Positions {
    top: u64,
    stable: u64,
    write: u64,
    pruned: usize,
}

impl Positions {
    /// A seq above the prune point, sometimes one written before.
    fn seq(&mut self, rng: &mut Rng) -> u64 {
        let seq = self.stable + 1 + rng.below(self.top - self.stable + 1);
        self.top = self.top.max(seq);
        seq
    }
}

impl Model for PbftRecord {
    fn identity(&self) -> (String, Option<u64>) {
        match self {
            PbftRecord::Vote(v) => (
                format!("vote {:?} {} {}", v.vote.kind, v.vote.view, v.vote.seq.0),
                Some(v.vote.seq.0),
            ),
            PbftRecord::Prepared(PreparedRecord { cert: c, .. })
            | PbftRecord::PreparedDigest(c) => {
                (format!("prepared {}", c.slot().1 .0), Some(c.slot().1 .0))
            }
            PbftRecord::View { .. } => ("view".into(), None),
            PbftRecord::StableCheckpoint { .. } => ("stable".into(), None),
            PbftRecord::NewView(_) => ("new view".into(), None),
            PbftRecord::ViewJustification(_) => ("justification".into(), None),
            PbftRecord::Unused => ("unused".into(), None),
        }
    }

    fn prune_point(&self) -> Option<u64> {
        match self {
            PbftRecord::StableCheckpoint { seq, .. } => Some(seq.0),
            _ => None,
        }
    }

    fn draw(rng: &mut Rng, at: &mut Positions) -> Option<PbftRecord> {
        const KINDS: [VoteKind; 4] = [
            VoteKind::PrePrepare,
            VoteKind::Prepare,
            VoteKind::Commit,
            VoteKind::Checkpoint,
        ];
        Some(match rng.below(16) {
            // A vote above the stable checkpoint, sometimes the same slot
            // again (an overwrite with the same identity).
            0..=8 => {
                let seq = at.seq(rng);
                let kind = KINDS[rng.below(4) as usize];
                let digest = rng.below(3) as u8;
                PbftRecord::Vote(SignedVote {
                    vote: Vote {
                        kind,
                        view: rng.below(3),
                        seq: Height(seq),
                        digest: Hash([digest; 32]),
                        voter: ValidatorIndex(1),
                    },
                    signature: Signature([digest; 64]),
                })
            }
            9..=10 => PbftRecord::View {
                view: rng.below(5),
                active: rng.below(2) == 0,
            },
            11 => {
                at.stable = (at.stable + 1 + rng.below(4)).min(at.top);
                at.pruned += 1;
                PbftRecord::StableCheckpoint {
                    seq: Height(at.stable),
                    digest: Hash([at.stable as u8; 32]),
                    proof: Vec::new(),
                }
            }
            _ => {
                at.top += 1;
                return None;
            }
        })
    }
}

impl Model for CftRecord {
    fn identity(&self) -> (String, Option<u64>) {
        match self {
            CftRecord::Entry { payload, .. } => (
                format!("entry {}", payload.height.0),
                Some(payload.height.0),
            ),
            CftRecord::HardState { .. } => ("hard state".into(), None),
            CftRecord::Truncate { .. } => ("truncate".into(), None),
            CftRecord::Compacted { .. } => ("compacted".into(), None),
        }
    }

    fn prune_point(&self) -> Option<u64> {
        match self {
            CftRecord::Compacted { index, .. } => Some(index.0),
            _ => None,
        }
    }

    fn draw(rng: &mut Rng, at: &mut Positions) -> Option<CftRecord> {
        Some(match rng.below(12) {
            0..=1 => CftRecord::HardState {
                term: rng.below(9),
                voted_for: Some(ValidatorIndex(rng.below(4) as u32)),
            },
            // An entry above the compaction point, sometimes rewritten.
            2..=6 => {
                at.write += 1;
                let height = at.seq(rng);
                CftRecord::Entry {
                    write: at.write,
                    payload: Payload {
                        chain_id: "wal-test".into(),
                        height: Height(height),
                        round: rng.below(4),
                        proposer: ValidatorIndex(0),
                        timestamp_ms: at.write,
                        txs: Vec::new(),
                        evidence: Vec::new(),
                    },
                }
            }
            7 => {
                at.write += 1;
                CftRecord::Truncate {
                    write: at.write,
                    from: Height(at.stable + 1 + rng.below(3)),
                }
            }
            8 => {
                at.stable = (at.stable + 1 + rng.below(4)).min(at.top);
                at.pruned += 1;
                CftRecord::Compacted {
                    index: Height(at.stable),
                    term: rng.below(4),
                }
            }
            _ => {
                at.top += 1;
                return None;
            }
        })
    }
}

/// The log's contents as the model says: identity -> encoded record.
type Contents = BTreeMap<String, Vec<u8>>;

fn apply<R: Model>(model: &mut Contents, flushed: &[R]) {
    let mut prune = None;
    for r in flushed {
        model.insert(r.identity().0, phalanx_crypto::encode(r));
        if let Some(p) = r.prune_point() {
            prune = Some(p);
        }
    }
    if let Some(p) = prune {
        model.retain(|_, bytes| {
            let r: R = phalanx_crypto::decode(bytes).unwrap();
            r.identity().1.is_none_or(|s| s > p)
        });
    }
}

fn sorted<R: Record>(records: &[R]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = records.iter().map(phalanx_crypto::encode).collect();
    v.sort();
    v
}

/// One run of writes, overwrites, prunes and restarts against `store`.
fn run<R: Model>(seed: u64, open: &dyn Fn() -> Arc<dyn Store>) -> (usize, usize) {
    let mut rng = Rng(seed | 1);
    let store = open();
    let (mut wal, records) = Wal::<R>::open(store.clone()).unwrap();
    assert!(records.is_empty());
    let mut model = Contents::new();
    let mut queued: Vec<R> = Vec::new();
    let mut restarts = 0;
    let mut at = Positions {
        top: 1,
        ..Positions::default()
    };
    for _ in 0..600 {
        let Some(record) = R::draw(&mut rng, &mut at) else {
            continue;
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
            let (reopened, records) = Wal::<R>::open(store.clone()).unwrap();
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
    let (_, records) = Wal::<R>::open(store).unwrap();
    let mut expected: Vec<Vec<u8>> = model.values().cloned().collect();
    expected.sort();
    assert_eq!(sorted(&records), expected, "seed {seed} at the end");
    (restarts, at.pruned)
}

/// Both engines' records, `seeds` runs each, on stores from `open`.
fn conforms(seeds: u64, open: &dyn Fn(u64) -> Arc<dyn Store>) -> (usize, usize) {
    let (mut restarts, mut pruned) = (0, 0);
    for seed in 0..seeds {
        for (r, p) in [
            run::<PbftRecord>(seed, &|| open(2 * seed)),
            run::<CftRecord>(seed, &|| open(2 * seed + 1)),
        ] {
            restarts += r;
            pruned += p;
        }
    }
    (restarts, pruned)
}

#[test]
fn the_log_keeps_its_promise_on_the_memory_store() {
    let (restarts, pruned) = conforms(50, &|_| Arc::new(MemoryStore::new()));
    assert!(
        restarts > 200 && pruned > 200,
        "{restarts} restarts, {pruned} prunes"
    );
}

#[test]
fn the_log_keeps_its_promise_on_rocksdb() {
    let dir = tempfile::tempdir().unwrap();
    let (restarts, pruned) = conforms(10, &|i| {
        Arc::new(RocksStore::open(&dir.path().join(format!("db{i}"))).unwrap())
    });
    assert!(
        restarts > 40 && pruned > 40,
        "{restarts} restarts, {pruned} prunes"
    );
}

/// A PBFT log written when every engine's records shared one enum (the
/// CFT baseline's at index 4) still decodes: the variant indices are kept.
#[test]
fn a_pbft_log_written_before_the_split_still_decodes() {
    // Postcard of the old `Persisted::View { view: 3, active: true }`, and
    // the old `Persisted::NewView`: its index (5), then the NEW-VIEW.
    let view: PbftRecord = phalanx_crypto::decode(&[1, 3, 1]).unwrap();
    assert_eq!(
        view,
        PbftRecord::View {
            view: 3,
            active: true
        }
    );
    let new_view = phalanx_consensus::pbft::messages::NewView {
        view: 2,
        view_changes: Vec::new(),
        pre_prepares: Vec::new(),
        signature: Signature([7; 64]),
    };
    let mut old = vec![5];
    old.extend(phalanx_crypto::encode(&new_view));
    let decoded: PbftRecord = phalanx_crypto::decode(&old).unwrap();
    assert_eq!(decoded, PbftRecord::NewView(new_view));
}

#[test]
fn a_corrupt_record_is_refused_with_its_key() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    store
        .write_consensus(&[(b"view".to_vec(), vec![0xff, 0xff, 0xff])], &[])
        .unwrap();
    let err = Wal::<PbftRecord>::open(store).unwrap_err().to_string();
    assert!(err.contains("consensus record view is corrupt"), "{err}");
}
