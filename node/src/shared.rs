//! State shared between the driver (the one writer) and the HTTP API
//! (readers and transaction submission), split by job: [`ExecutedState`],
//! the mempool, [`Intake`] (signature checks, the push of client
//! transactions), [`CommitLog`], [`StatusBoard`] and the metrics.

use crate::api::types::NodeStatus;
use crate::commits::CommitLog;
use crate::home::NodeConfig;
use crate::intake::Intake;
use crate::mempool::{Mempool, MempoolError};
use crate::metrics::{Metrics, RejectReason};
use phalanx_crypto::Hash;
use phalanx_ledger::{Account, Address, Genesis, SignedTransaction, State, Store, ValidatorIndex};
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// The node's shared state, one part per job: the chain it runs (genesis,
/// its index, its configuration, the store), the executed state, the
/// mempool, the intake of transactions, the commit log, the published
/// status and the metrics. The driver is the one writer of the store and
/// the executed state; the API reads them and submits transactions.
pub struct Shared {
    /// The chain.
    pub genesis: Genesis,
    /// This validator.
    pub me: ValidatorIndex,
    /// The node configuration.
    pub config: NodeConfig,
    /// Blocks, receipts, accounts, consensus records.
    pub store: Arc<dyn Store>,
    /// The state after the last stored block, in memory.
    pub executed: ExecutedState,
    /// Transactions waiting to be ordered.
    pub mempool: Mempool,
    /// Signature checks and the push of client transactions.
    pub intake: Intake,
    /// Recent commits with their local times (`GET /commits`).
    pub commits: CommitLog,
    /// What `GET /status` reports.
    pub status: StatusBoard,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Blocks this node reverted, for a while (the API answers "discarded").
    pub discarded: crate::discarded::DiscardedLog,
    /// What the live page watches (`GET /events`).
    pub watch: Arc<crate::watch::Watch>,
    /// Pause and stop (fault injection).
    pub switches: Arc<crate::injection::switches::Switches>,
}

/// The executed state: the accounts after the last stored block, kept in
/// memory (the mempool reads senders from it: a RocksDB read per submitted
/// transaction cost ~6 % of a node's CPU at 5,000 tx/s). The driver
/// validates blocks against it and updates it after each stored block.
#[derive(Debug, Default)]
pub struct ExecutedState(RwLock<State>);

impl ExecutedState {
    /// An account.
    pub fn account(&self, address: &Address) -> Option<Account> {
        self.read().account(address).copied()
    }

    /// For reading.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// For the driver to replace or update.
    pub fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The published status: the driver sets it, the API and waiting clients
/// read it.
#[derive(Debug)]
pub struct StatusBoard(watch::Sender<NodeStatus>);

impl StatusBoard {
    /// The current status.
    pub fn get(&self) -> NodeStatus {
        self.0.borrow().clone()
    }

    /// A receiver that sees every status change (e.g. to wait for a height).
    pub fn subscribe(&self) -> watch::Receiver<NodeStatus> {
        self.0.subscribe()
    }

    /// Publishes a new status (driver only).
    pub fn set(&self, f: impl FnOnce(&mut NodeStatus)) {
        self.0.send_modify(f);
    }
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
            genesis.consensus.min_fee,
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
        Shared {
            genesis,
            me,
            config,
            store,
            executed: ExecutedState(RwLock::new(state)),
            mempool,
            intake: Intake::default(),
            commits: CommitLog::default(),
            status: StatusBoard(watch::Sender::new(status)),
            metrics: Metrics::new(),
            discarded: Default::default(),
            watch: Default::default(),
            switches: Default::default(),
        }
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
            self.intake.resend.schedule(
                accepted_hashes,
                crate::clock::now_ms(),
                self.config.mempool.max_txs,
            );
            self.intake.to_push(accepted);
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
        self.intake
            .verifiers
            .verify(txs, move |txs: &[SignedTransaction]| {
                me.intake.verify_now(txs)
            })
            .await
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
        let sender = self.executed.account(&tx.tx.from);
        let result = self.mempool.insert(tx, hash, signature_ok, sender);
        match &result {
            Ok(_) => {
                self.metrics.mempool_size.set(self.mempool.len() as i64);
            }
            Err(e) => self.metrics.rejected(e.reason()),
        };
        result
    }
}
