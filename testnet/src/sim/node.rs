//! One running engine in the simulation (a validator, or one of two twins)
//! and what its driver keeps across crashes: the persisted records, the
//! chain and the state. The engine itself is dropped on a crash and rebuilt
//! with `restore` from exactly those. The records go through the node's own
//! write-ahead log ([`phalanx_runtime::Wal`]) over a memory store, so a
//! restart reads them back as a real node does: in key order, overwritten,
//! pruned, and without what was queued but not flushed when it crashed.

use super::checkers::Model;
use super::network::Endpoint;
use phalanx_adversary::Adversary;
use phalanx_consensus::{Config, Engine, Promise, Protocol, Record, Restored, TimeoutKind};
use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::{
    Block, Genesis, Height, MemoryStore, SignedTransaction, State, Store, ValidatorIndex,
};
use phalanx_runtime::Wal;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The engine under test, behind the trait (so a test or a mutation run can
/// hand the simulator any engine that speaks `E`'s messages and records).
pub type SimEngine<E> =
    Box<dyn Engine<Message = <E as Engine>::Message, Record = <E as Engine>::Record>>;

/// Builds (or rebuilds, after a crash) an engine from its configuration, key
/// and restored state. The default is [`factory`]: `E::restore`.
pub type EngineFactory<E> =
    Arc<dyn Fn(Config, Keypair, Restored<<E as Engine>::Record>) -> SimEngine<E> + Send + Sync>;

/// The factory of the shipped engine `E`.
pub fn factory<E: Protocol>() -> EngineFactory<E> {
    Arc::new(|cfg, key, restored| Box::new(E::restore(cfg, key, restored)))
}

/// One running engine and its driver's durable state.
pub struct Node<E: Engine> {
    /// Where it sits in the network.
    pub endpoint: Endpoint,
    /// Whether its validator is honest (checked) or Byzantine (not checked).
    pub honest: bool,
    /// The engine configuration.
    pub cfg: Config,
    /// The validator key.
    pub key: Keypair,
    /// The engine; `None` while crashed.
    pub engine: Option<SimEngine<E>>,
    /// Bumped on every crash: events of an earlier life are ignored.
    pub incarnation: u32,
    /// The stored chain (survives crashes).
    pub chain: Vec<Block>,
    /// The state after the last block (survives crashes).
    pub state: State,
    /// Per stored block above genesis, what reverts it and the ledger
    /// model before it (tentative engines: a reorg takes blocks out).
    pub undo: Vec<(phalanx_ledger::Undo, Model)>,
    /// The last final height (survives crashes, as the store's final
    /// blocks do): `undo` holds one entry per block above it.
    pub final_height: Height,
    /// Transactions of the blocks the last revert took out (pushed to
    /// peers under PBFT with a fallback).
    pub reverted: Vec<SignedTransaction>,
    /// The current mining job's generation (a later `Mine` replaces it).
    pub mining: u64,
    /// The store holding the persisted records (survives crashes).
    pub store: Arc<MemoryStore>,
    /// The write-ahead log over `store`; `None` while crashed (what it had
    /// queued and not flushed is lost with it).
    pub wal: Option<Wal<E::Record>>,
    /// Every promise a record it queued made (in any life), for the
    /// save-before-send check.
    pub persisted: BTreeSet<Promise>,
    /// The armed generation of each timer (a later schedule replaces it).
    pub timers: BTreeMap<TimeoutKind, u64>,
    /// The independent ledger model (honest nodes).
    pub model: Model,
    /// Hashes of the transactions in `chain`.
    pub included: BTreeSet<Hash>,
    /// Transactions handed to the engine that are neither in `chain` nor
    /// forgotten: the simulator's stand-in for the node's mempool, which
    /// tells the engine to forget one once its sender's nonce is used by
    /// another (`Input::Forget`).
    pub handed: BTreeMap<Hash, SignedTransaction>,
    /// The Byzantine wrapper, if any.
    pub adversary: Option<Box<dyn Adversary<E::Message>>>,
    /// Round-robin position for choosing whom to ask for blocks.
    pub sync_rotation: usize,
    /// A crash armed to strike after this many outputs of the next input.
    pub crash_after: Option<usize>,
    /// Transactions in `chain` that succeeded.
    pub succeeded: u64,
    /// Transactions in `chain` that failed.
    pub failed: u64,
}

impl<E: Engine> std::fmt::Debug for Node<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("validator", &self.endpoint.validator)
            .field("twin", &self.endpoint.twin)
            .field("honest", &self.honest)
            .field("up", &self.engine.is_some())
            .field("height", &self.height())
            .finish_non_exhaustive()
    }
}

impl<E: Engine> Node<E> {
    /// A node at genesis (not started).
    pub fn new(
        genesis: &Genesis,
        endpoint: Endpoint,
        honest: bool,
        cfg: Config,
        key: Keypair,
        adversary: Option<Box<dyn Adversary<E::Message>>>,
    ) -> Node<E> {
        Node {
            endpoint,
            honest,
            cfg,
            key,
            engine: None,
            incarnation: 0,
            chain: vec![genesis.block()],
            state: genesis.state(),
            undo: Vec::new(),
            final_height: Height::GENESIS,
            reverted: Vec::new(),
            mining: 0,
            store: Arc::new(MemoryStore::new()),
            wal: None,
            persisted: BTreeSet::new(),
            timers: BTreeMap::new(),
            model: Model::new(genesis),
            included: BTreeSet::new(),
            handed: BTreeMap::new(),
            adversary,
            sync_rotation: 0,
            crash_after: None,
            succeeded: 0,
            failed: 0,
        }
    }

    /// Its validator.
    pub fn validator(&self) -> ValidatorIndex {
        self.endpoint.validator
    }

    /// Whether it is running.
    pub fn is_up(&self) -> bool {
        self.engine.is_some()
    }

    /// The height of its last stored block.
    pub fn height(&self) -> Height {
        self.chain.last().map_or(Height::GENESIS, Block::height)
    }

    /// (Re)builds the engine from the records and the stored chain, through
    /// the node's own restore path.
    pub fn boot(&mut self, factory: &EngineFactory<E>) {
        let store: Arc<dyn Store> = self.store.clone();
        let (wal, records) = Wal::open(store).expect("the memory store reads back what it holds");
        self.wal = Some(wal);
        let last = self.chain.last().expect("the chain holds genesis");
        let restored = phalanx_runtime::restored(
            records,
            last.height(),
            last.hash(),
            self.cfg.params.watermark_window,
            |h| self.chain.get(h.0 as usize).cloned(),
        );
        self.engine = Some(factory(self.cfg.clone(), self.key.clone(), restored));
    }

    /// Makes every record queued since the last flush durable (before a
    /// send or a commit, and at the end of each input, as the node does).
    pub fn flush(&mut self) {
        if let Some(wal) = self.wal.as_mut() {
            wal.flush().expect("the memory store cannot fail");
        }
    }

    /// Loses everything volatile: the engine, its timers, an armed crash.
    pub fn crash(&mut self) {
        self.engine = None;
        self.wal = None;
        self.incarnation += 1;
        self.timers.clear();
        self.crash_after = None;
    }

    /// After a commit, as the node's mempool does: drops what the chain
    /// now holds from `handed`, and returns (and drops) the transactions
    /// whose sender's nonce another transaction used — the engine must
    /// forget them.
    pub fn settle_handed(&mut self) -> Vec<Hash> {
        let (included, state) = (&self.included, &self.state);
        let mut lost = Vec::new();
        self.handed.retain(|h, tx| {
            if included.contains(h) {
                return false;
            }
            let used = nonce_used(state, tx);
            if used {
                lost.push(*h);
            }
            !used
        });
        lost
    }

    /// Queues a record for the next flush.
    pub fn persist(&mut self, record: E::Record) {
        self.persisted.extend(record.promises());
        if let Some(wal) = self.wal.as_mut() {
            wal.push(&record);
        }
    }
}

/// Whether `state` shows the sender of `tx` past its nonce (another
/// transaction used it).
pub(super) fn nonce_used(state: &State, tx: &SignedTransaction) -> bool {
    state
        .account(&tx.tx.from)
        .is_some_and(|a| a.nonce > tx.tx.nonce)
}
