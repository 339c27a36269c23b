//! The driver: a tokio loop that owns the engine (any registered one),
//! feeds it inputs (network messages, transactions, timers) and carries out
//! its outputs in order: persist (synced, before anything leaves the node),
//! send, arm timers, execute committed blocks into the store
//! (docs/architecture.md, "The node's runtime").

use crate::clock::now_ms;
use crate::metrics::{Direction, DropReason};
use crate::p2p::{NetCommand, NetEvent};
use crate::shared::Shared;
use crate::watch::WatchEvent;
use phalanx_consensus::{Input, Message, Output, Protocol, TimeoutKind};
use phalanx_crypto::Hash;
use phalanx_ledger::{
    execute, make_block, Block, Height, Justification, Payload, SignatureCheck, SignedTransaction,
};
use phalanx_runtime::Wal;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Most transactions decoded from one batch pushed by a peer.
const MAX_PUSHED_BATCH: usize = 20_000;
/// Most transactions in one batch of resent client transactions.
const RESEND_BATCH: usize = 2_000;

/// The tracing target of the debug event for each consensus message sent
/// and received: `--log phalanx=debug` shows them (with any other debug
/// event whose target starts with `phalanx`), `--log
/// info,phalanx::consensus=debug` only these. An explicit target, so the
/// filter does not depend on where the code lives (its module path is
/// `phalanx::driver`, after the binary). "sending" is what the engine
/// sends; a node under fault injection may then withhold or rewrite it
/// (`phalanx_consensus_messages_total` counts what actually leaves).
pub const CONSENSUS_LOG: &str = "phalanx::consensus";

/// Signature verdicts from the node's verified cache, verifying only the rest.
struct CachedCheck<'a>(&'a Shared);

impl SignatureCheck for CachedCheck<'_> {
    fn verdicts(&self, txs: &[SignedTransaction]) -> Vec<bool> {
        self.0
            .intake
            .verify_now(txs)
            .into_iter()
            .map(|(_, ok)| ok)
            .collect()
    }
}

/// The next nonce the mining threads found (never, without them).
async fn next_found(
    miner: &mut Option<(crate::mining::Miner, mpsc::Receiver<crate::mining::Found>)>,
) -> Option<crate::mining::Found> {
    match miner {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The driver's state.
pub struct Driver<E: Protocol> {
    shared: Arc<Shared>,
    engine: E,
    wal: Wal<E::Record>,
    latest: Block,
    net: mpsc::Sender<NetCommand>,
    timers: BTreeMap<TimeoutKind, Instant>,
    committed_since_tick: u64,
    last_summary: Instant,
    view_at_last_event: u64,
    /// The (view, view change under way) last logged, so every change of
    /// either is logged once at info level.
    logged_view: (u64, bool),
    vote_log: Option<std::io::BufWriter<std::fs::File>>,
    /// The mining threads (proof of work only), and where they report.
    miner: Option<(crate::mining::Miner, mpsc::Receiver<crate::mining::Found>)>,
}

impl<E: Protocol> Driver<E> {
    /// Builds the driver around a restored engine.
    pub fn new(
        shared: Arc<Shared>,
        key: phalanx_crypto::Keypair,
        net: mpsc::Sender<NetCommand>,
    ) -> anyhow::Result<Driver<E>> {
        let store = shared.store.clone();
        let latest = store
            .latest_block()?
            .ok_or_else(|| anyhow::anyhow!("store has no genesis block"))?;
        let state = store.load_state()?;
        anyhow::ensure!(
            state.height() == latest.height() && state.root() == latest.header.state_root,
            "the store is corrupt: its accounts are at height {} with state root {}, \
             its latest block is {} with state root {}; move the data directory away \
             and let the node sync the chain again",
            state.height(),
            state.root(),
            latest.height(),
            latest.header.state_root
        );
        // Transfers move units and fees go to proposers: the supply never
        // changes. Balances that do not add up mean lost or altered records.
        let supply = shared.genesis.state().total_supply();
        anyhow::ensure!(
            state.total_supply() == supply,
            "the store is corrupt: its {} accounts hold {} units in all, the genesis \
             supply is {supply}; move the data directory away and let the node sync \
             the chain again",
            state.accounts().count(),
            state.total_supply()
        );
        *shared.executed.write() = state;
        shared.status.set(|s| s.consensus = E::KIND.name().into());
        shared.metrics.message_kinds(E::Message::KINDS);
        let (wal, records) = Wal::open(store.clone())?;
        let cfg = E::config(&shared.genesis, shared.me)?;
        let mut missing = None;
        let restored = phalanx_runtime::restored(
            records,
            latest.height(),
            latest.hash(),
            cfg.params.watermark_window,
            |h| match store.block(h) {
                Ok(b) => b,
                Err(e) => {
                    missing.get_or_insert(e);
                    None
                }
            },
        );
        if let Some(e) = missing {
            anyhow::bail!("cannot read the blocks a restart needs: {e}");
        }
        let engine = E::restore(cfg, key, restored);
        let st = engine.status();
        let view = st.view;
        tracing::info!(
            view,
            primary = st.primary.0,
            view_changing = st.view_changing,
            height = latest.height().0,
            "restored consensus state{}",
            if st.view_changing {
                ": a view change is under way"
            } else {
                ""
            }
        );
        Ok(Driver {
            shared,
            engine,
            wal,
            latest,
            net,
            timers: BTreeMap::new(),
            committed_since_tick: 0,
            last_summary: Instant::now(),
            view_at_last_event: view,
            logged_view: (view, st.view_changing),
            vote_log: None,
            miner: None,
        })
    }

    /// Mines with these settings when the engine asks for it (`Output::Mine`).
    pub fn set_mining(&mut self, config: crate::mining::MiningConfig) {
        let (tx, rx) = mpsc::channel(16);
        self.miner = Some((crate::mining::Miner::start(config, tx), rx));
    }

    /// Appends every vote sent from now on to `path` (`--vote-log`).
    pub fn set_vote_log(&mut self, path: &std::path::Path) -> anyhow::Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot open vote log {}: {e}", path.display()))?;
        self.vote_log = Some(std::io::BufWriter::new(file));
        Ok(())
    }

    /// Writes the votes in an outgoing message to the vote log, if any.
    fn log_votes(&mut self, message: &E::Message) -> anyhow::Result<()> {
        use std::io::Write as _;
        let Some(log) = self.vote_log.as_mut() else {
            return Ok(());
        };
        for v in message.votes() {
            let v = &v.vote;
            writeln!(
                log,
                "{} {:?} {} {} {}",
                v.voter.0, v.kind, v.view, v.seq.0, v.digest
            )?;
        }
        log.flush()?;
        Ok(())
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(
        mut self,
        events: mpsc::Receiver<NetEvent>,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let result = self.run_loop(events, shutdown).await;
        if let Err(e) = &result {
            // A write that failed (a full disk, say) stops consensus here;
            // say so where operators look instead of answering "ok".
            let reason = format!("{e:#}");
            tracing::error!(error = %reason, "the consensus driver stopped: this node no longer takes part in consensus");
            self.shared.status.set(|s| s.stopped = Some(reason));
        }
        result
    }

    async fn run_loop(
        &mut self,
        mut events: mpsc::Receiver<NetEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        self.publish_status();
        self.step(Input::Start)?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            // An injected pause (`POST /admin/pause`): no input at all
            // until it ends, as if the process were stopped.
            if let Some(left) = self.shared.switches.paused_for() {
                let until = now_ms() + left.as_millis() as u64;
                self.shared.status.set(|s| s.paused_until_ms = until);
                tracing::warn!(ms = left.as_millis() as u64, "paused by fault injection");
                tokio::select! {
                    _ = shutdown.changed() => break,
                    () = tokio::time::sleep(left) => {}
                }
                self.shared.status.set(|s| s.paused_until_ms = 0);
                tracing::info!("pause over");
                continue;
            }
            let next_timer = self.timers.values().min().copied();
            let sleep = tokio::time::sleep_until(
                next_timer.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                _ = shutdown.changed() => break,
                event = events.recv() => match event {
                    Some(event) => self.on_net_event(event).await?,
                    None => break,
                },
                _ = self.shared.intake.new_txs() => self.on_new_txs()?,
                _ = sleep, if next_timer.is_some() => self.fire_timers()?,
                _ = tick.tick() => self.on_tick(),
                found = next_found(&mut self.miner) => {
                    if let Some(f) = found {
                        tracing::debug!(target: CONSENSUS_LOG, job = %&f.job.to_string()[..8], nonce = f.nonce, "mined");
                        self.step(Input::Mined { job: f.job, nonce: f.nonce })?;
                    }
                }
            }
        }
        self.wal.flush()?;
        tracing::info!(height = self.latest.height().0, "driver stopped cleanly");
        Ok(())
    }

    fn fire_timers(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        let due: Vec<TimeoutKind> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| *k)
            .collect();
        for kind in due {
            self.timers.remove(&kind);
            self.step(Input::Timeout(kind))?;
        }
        Ok(())
    }

    async fn on_net_event(&mut self, event: NetEvent) -> anyhow::Result<()> {
        match event {
            // The bytes stay counted against the sender until `event`'s
            // budget share is dropped, after the engine has handled it.
            NetEvent::Consensus { from, bytes, .. } => {
                match phalanx_crypto::decode::<E::Message>(&bytes) {
                    Ok(message) => {
                        let s = message.summary();
                        self.shared
                            .metrics
                            .consensus_message(Direction::Received, s.kind, 1);
                        tracing::debug!(
                            target: CONSENSUS_LOG,
                            kind = %s.kind,
                            view = s.view,
                            seq = s.seq,
                            digest = %s.short_digest(),
                            from = from.0,
                            "received"
                        );
                        self.step(Input::Message { from, message })?
                    }
                    Err(_) => self.shared.metrics.dropped(DropReason::MalformedConsensus),
                }
            }
            NetEvent::Txs(bytes) => {
                // Decoding and signature checks run beside the loop, never in
                // it: consensus messages queued behind a pushed batch must not
                // wait for its verification (at n = 16 on two cores that wait
                // starved the primary). The task wakes the loop when done.
                // A bounded number at once: a flood of pushed batches is
                // dropped and counted, not queued without limit.
                let Some(permit) = self.shared.intake.admit_pushed() else {
                    self.shared.metrics.dropped(DropReason::TxBatchBusy);
                    return Ok(());
                };
                let shared = self.shared.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match phalanx_crypto::decode::<Vec<SignedTransaction>>(&bytes) {
                        Ok(txs) if txs.len() <= MAX_PUSHED_BATCH => {
                            shared.metrics.pushed_txs_received.inc_by(txs.len() as u64);
                            let verdicts = shared.clone().verify(txs.clone()).await;
                            for (tx, (hash, ok)) in txs.into_iter().zip(verdicts) {
                                let _ = shared.insert_verified(tx, hash, ok);
                            }
                            shared.intake.wake_driver();
                        }
                        _ => shared.metrics.dropped(DropReason::MalformedTxBatch),
                    }
                });
            }
            NetEvent::SyncBlocks(blocks) => self.step(Input::SyncBlocks(blocks))?,
            NetEvent::Peers(peers) => {
                let before = self.shared.status.get().peers;
                if peers.iter().any(|p| !before.contains(p)) {
                    // A peer (re)connected: it may hold blocks we missed
                    // (the engine verifies whatever comes back).
                    let from = self.latest.height().next();
                    let _ = self.net.try_send(NetCommand::Sync { from });
                }
                self.shared.metrics.peers.set(peers.len() as i64);
                self.shared.status.set(|s| s.peers = peers);
            }
            NetEvent::Dropped(reason) => self.shared.metrics.dropped(reason),
        }
        Ok(())
    }

    fn on_new_txs(&mut self) -> anyhow::Result<()> {
        let outbox = self.shared.intake.take_outbox();
        if !outbox.is_empty() {
            let _ = self
                .net
                .try_send(NetCommand::PushTxs(phalanx_crypto::encode(&outbox)));
        }
        self.release_ready()
    }

    fn release_ready(&mut self) -> anyhow::Result<()> {
        if self.shared.mempool.is_empty() {
            return Ok(());
        }
        let ready = self.shared.mempool.take_ready();
        self.shared
            .metrics
            .mempool_size
            .set(self.shared.mempool.len() as i64);
        if !ready.is_empty() {
            self.step(Input::Transactions(ready))?;
        }
        Ok(())
    }

    /// Feeds one input and carries out the outputs (and the inputs they cause).
    fn step(&mut self, input: Input<E::Message>) -> anyhow::Result<()> {
        if let Input::Timeout(kind) = &input {
            self.shared.watch.record(|| {
                let (kind, view) = crate::watch::timeout_name(*kind);
                WatchEvent::Timeout {
                    t: now_ms(),
                    kind,
                    view,
                }
            });
        }
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let outputs = self.engine.handle(now_ms(), input);
            for output in outputs {
                self.carry_out(output, &mut inputs)?;
            }
            // Anything persisted is on disk before this step returns.
            self.wal.flush()?;
        }
        if let Some(h) = self.engine.status().diverged_at {
            let ours = self.shared.store.block(h)?.map(|b| b.hash());
            anyhow::bail!(
                "this node's block at height {h} ({}) is not the one a quorum of validators \
                 certified there: its store is corrupt or it executes differently. Stop it, \
                 move its data directory away and let it sync the chain again",
                ours.map_or_else(|| "missing".to_owned(), |h| h.to_string())
            );
        }
        self.log_view_state();
        Ok(())
    }

    /// Logs, at info level, a view change starting and a view being entered
    /// (the engine's `ViewChanged` covers only the second, and a restart
    /// none), so an operator can see what a replica is doing.
    fn log_view_state(&mut self) {
        let st = self.engine.status();
        let now = (st.view, st.view_changing);
        if now == self.logged_view {
            return;
        }
        self.logged_view = now;
        if st.view_changing {
            tracing::info!(
                view = st.view,
                primary = st.primary.0,
                "view change started: waiting for view {} to begin (its NEW-VIEW, or an elected leader)",
                st.view
            );
        }
    }

    fn carry_out(
        &mut self,
        output: Output<E::Message, E::Record>,
        inputs: &mut VecDeque<Input<E::Message>>,
    ) -> anyhow::Result<()> {
        match output {
            Output::Persist(record) => self.wal.push(&record),
            Output::Send { to, message } => {
                // Save before send: flush every pending record first.
                self.wal.flush()?;
                self.log_votes(&message)?;
                if tracing::enabled!(target: CONSENSUS_LOG, tracing::Level::DEBUG) {
                    let s = message.summary();
                    tracing::debug!(
                        target: CONSENSUS_LOG,
                        kind = %s.kind,
                        view = s.view,
                        seq = s.seq,
                        digest = %s.short_digest(),
                        to = to.0,
                        "sending"
                    );
                }
                let bytes = Arc::new(phalanx_crypto::encode(&message));
                if self.net.try_send(NetCommand::Send { to, bytes }).is_err() {
                    self.shared.metrics.dropped(DropReason::NetQueueFull);
                }
            }
            Output::Broadcast(message) => {
                self.wal.flush()?;
                self.log_votes(&message)?;
                if tracing::enabled!(target: CONSENSUS_LOG, tracing::Level::DEBUG) {
                    let s = message.summary();
                    tracing::debug!(
                        target: CONSENSUS_LOG,
                        kind = %s.kind,
                        view = s.view,
                        seq = s.seq,
                        digest = %s.short_digest(),
                        to = %"all",
                        "sending"
                    );
                }
                let bytes = Arc::new(phalanx_crypto::encode(&message));
                if self.net.try_send(NetCommand::Broadcast(bytes)).is_err() {
                    self.shared.metrics.dropped(DropReason::NetQueueFull);
                }
            }
            Output::ScheduleTimeout { kind, after_ms } => {
                self.timers
                    .insert(kind, Instant::now() + Duration::from_millis(after_ms));
            }
            Output::Commit {
                payload,
                justification,
            } => {
                self.wal.flush()?;
                let (height, hash, lost) = self.execute(payload, justification)?;
                inputs.push_back(Input::BlockExecuted {
                    height,
                    block_hash: hash,
                });
                if !lost.is_empty() {
                    inputs.push_back(Input::Forget(lost));
                }
            }
            Output::Evidence(evidence) => {
                if self.shared.store.put_evidence(&evidence)? {
                    self.shared.metrics.evidence.inc();
                    self.shared.watch.record(|| WatchEvent::Evidence {
                        t: now_ms(),
                        offender: evidence.offender().0,
                    });
                    tracing::warn!(
                        offender = evidence.offender().0,
                        "equivocation evidence recorded"
                    );
                }
            }
            Output::RequestSync { from } => {
                let _ = self.net.try_send(NetCommand::Sync { from });
            }
            Output::Revert { to } => {
                self.wal.flush()?;
                let lost = self.revert(to)?;
                if !lost.is_empty() {
                    inputs.push_back(Input::Forget(lost));
                }
            }
            Output::Finalize {
                height,
                justification,
            } => {
                self.wal.flush()?;
                self.finalize(height, justification)?;
            }
            Output::Mine(job) => {
                tracing::debug!(
                    target: CONSENSUS_LOG,
                    job = %job.map_or_else(|| "none".to_owned(), |j| j.header.to_string()[..8].to_owned()),
                    "mining job"
                );
                if let Some((miner, _)) = &self.miner {
                    miner.set(job);
                }
            }
            Output::ViewChanged { view, primary } => {
                self.shared.watch.record(|| WatchEvent::View {
                    t: now_ms(),
                    view,
                    primary: primary.0,
                });
                if view != self.view_at_last_event {
                    self.view_at_last_event = view;
                    self.shared.metrics.view_changes.inc();
                }
                tracing::info!(
                    view,
                    primary = primary.0,
                    "entered view (its NEW-VIEW is in)"
                );
            }
        }
        Ok(())
    }

    /// PBFT finalized the tentative block at `height` as it is: the store
    /// keeps it, with PBFT's certificate, for good.
    fn finalize(&mut self, height: Height, justification: Justification) -> anyhow::Result<()> {
        self.shared.store.finalize(height, &justification)?;
        if self.latest.height() == height {
            self.latest.justification = justification;
        }
        self.shared.metrics.finalized_blocks.inc();
        self.shared.watch.record(|| WatchEvent::Finalized {
            t: now_ms(),
            height: height.0,
        });
        self.publish_status();
        tracing::debug!(
            target: CONSENSUS_LOG,
            height = height.0,
            "tentative block finalized"
        );
        Ok(())
    }

    /// A reorg: takes the tentative blocks above `to` out of the store
    /// (each with its exact state undo), puts their transactions back in
    /// the mempool — those that can still apply will be mined again, the
    /// others fail their nonce check there — and reloads the state.
    /// Returns the reverted transactions that can no longer apply (a
    /// block below used their nonce): the engine must forget them.
    fn revert(&mut self, to: Height) -> anyhow::Result<Vec<Hash>> {
        let from = self.latest.height();
        let mut abandoned = Vec::new();
        while self.latest.height() > to {
            let block = self.shared.store.revert_latest()?;
            abandoned.extend(block.txs.iter().cloned());
            self.shared.discarded.record(block, now_ms());
            self.latest = self
                .shared
                .store
                .latest_block()?
                .ok_or_else(|| anyhow::anyhow!("the store lost its genesis block"))?;
        }
        *self.shared.executed.write() = self.shared.store.load_state()?;
        self.shared.commits.truncate_above(self.latest.height().0);
        let mut returned = 0;
        let mut lost = Vec::new();
        for tx in abandoned {
            let hash = tx.hash();
            let used = self
                .shared
                .executed
                .read()
                .account(&tx.tx.from)
                .is_some_and(|a| a.nonce > tx.tx.nonce);
            if used {
                lost.push(hash);
            } else if self.shared.insert_verified(tx, hash, true).is_ok() {
                returned += 1;
            }
        }
        self.shared.metrics.reorgs.inc();
        self.shared
            .metrics
            .discarded_blocks
            .inc_by(from.0 - self.latest.height().0);
        self.shared
            .metrics
            .reorg_depth
            .observe((from.0 - self.latest.height().0) as f64);
        let record = crate::api::types::ReorgRecord {
            from_height: from.0,
            to_height: to.0,
            at_ms: now_ms(),
            returned_txs: returned,
        };
        let depth = from.0 - self.latest.height().0;
        self.shared.watch.record(|| WatchEvent::Reverted {
            t: now_ms(),
            from: from.0,
            to: self.latest.height().0,
        });
        self.shared.status.set(|s| {
            s.reorgs += 1;
            s.discarded_blocks += depth;
            s.returned_txs += returned;
            s.last_reorg = Some(record);
        });
        tracing::info!(
            from = from.0,
            to = to.0,
            returned,
            "reorg: reverted {} tentative block(s) (a heavier branch, or PBFT finalized another)",
            from.0 - self.latest.height().0
        );
        self.publish_status();
        Ok(lost)
    }

    /// Executes a committed payload and stores the block, receipts and state
    /// in one synced write.
    fn execute(
        &mut self,
        payload: Payload,
        justification: Justification,
    ) -> anyhow::Result<(Height, Hash, Vec<Hash>)> {
        let fee_to = self.shared.genesis.fee_recipient(payload.proposer);
        let proposed_at = payload.timestamp_ms;
        let executed = execute(
            &self.shared.executed.read(),
            &payload,
            &fee_to,
            self.shared.genesis.rules(),
            &CachedCheck(&self.shared),
        );
        let block = make_block(
            payload,
            self.latest.hash(),
            executed.diff.root,
            justification,
        );
        // Tentative: sealed by a longest-chain engine (PoW, PoS, or
        // PBFT's fallback); a later `Finalize` may make it final.
        if matches!(
            block.justification,
            Justification::Pow { .. } | Justification::Pos { .. }
        ) {
            let undo = self.shared.executed.read().undo_for(&executed.diff);
            self.shared.store.append_tentative(
                &block,
                &executed.receipts,
                &executed.diff,
                &undo,
            )?;
        } else {
            self.shared
                .store
                .append_block(&block, &executed.receipts, &executed.diff)?;
        }
        self.shared.executed.write().apply(&executed.diff);
        for e in &block.evidence {
            if self.shared.store.put_evidence(e)? {
                self.shared.metrics.evidence.inc();
                self.shared.watch.record(|| WatchEvent::Evidence {
                    t: now_ms(),
                    offender: e.offender().0,
                });
            }
        }
        let lost = {
            let state = self.shared.executed.read();
            self.shared
                .mempool
                .on_commit(&block.txs, |a| state.account(a).copied())
        };
        let m = &self.shared.metrics;
        m.height.set(block.height().0 as i64);
        m.committed_txs.inc_by(block.txs.len() as u64);
        if proposed_at > 0 {
            m.round_duration
                .observe(now_ms().saturating_sub(proposed_at) as f64 / 1000.0);
        }
        self.committed_since_tick += block.txs.len() as u64;
        let (height, hash) = (block.height(), block.hash());
        self.shared.watch.record(|| WatchEvent::Block {
            t: now_ms(),
            height: height.0,
            hash: hash.to_string(),
            proposer: block.header.proposer.0,
            txs: block.txs.len(),
            tentative: block.justification.is_tentative(),
            latency_ms: now_ms().saturating_sub(proposed_at),
        });
        self.shared.commits.push(crate::api::types::CommitRecord {
            height: height.0,
            block_hash: hash,
            proposed_at_ms: proposed_at,
            committed_at_ms: now_ms(),
            tx_hashes: block.txs.iter().map(SignedTransaction::hash).collect(),
        });
        self.latest = block;
        self.publish_status();
        Ok((height, hash, lost))
    }

    fn publish_status(&self) {
        // The latest block is final if its justification says so, even
        // before the engine hears it was executed (its `final_height`
        // follows `BlockExecuted`): /status must not show a PBFT block as
        // one block behind final.
        let mut final_height = self.engine.final_height().0;
        if !self.latest.justification.is_tentative() {
            final_height = final_height.max(self.latest.height().0);
        }
        let mode = self.engine.mode().unwrap_or_default();
        let final_hash = if final_height == self.latest.height().0 {
            Some(self.latest.hash())
        } else {
            self.shared
                .store
                .block(Height(final_height))
                .ok()
                .flatten()
                .map(|b| b.hash())
        };
        let lag = self.latest.height().0.saturating_sub(final_height);
        self.shared.metrics.final_height.set(final_height as i64);
        self.shared.metrics.finality_lag.set(lag as i64);
        let st = self.engine.status();
        let mempool = self.shared.mempool.len();
        let (height, hash) = (self.latest.height().0, self.latest.hash());
        self.shared.metrics.view.set(st.view as i64);
        // One update: a reader never sees the head and the final block
        // from two different moments.
        self.shared.status.set(|s| {
            if s.final_height != final_height || s.last_final_at_ms == 0 {
                s.last_final_at_ms = now_ms();
            }
            s.final_height = final_height;
            s.finality_lag = lag;
            if let Some(h) = final_hash {
                s.final_hash = h;
            }
            if s.mode != mode {
                s.mode = mode.to_owned();
            }
            s.height = height;
            s.latest_block_hash = hash;
            s.view = st.view;
            s.primary = st.primary.0;
            s.view_changing = st.view_changing;
            s.mempool_size = mempool;
        });
    }

    fn on_tick(&mut self) {
        self.publish_status();
        self.shared.watch.second(self.latest.height().0);
        let shared = &self.shared;
        let again = shared
            .intake
            .resend
            .due(now_ms(), |h| shared.mempool.get(h));
        if !again.is_empty() {
            shared.metrics.txs_resent.inc_by(again.len() as u64);
            for chunk in again.chunks(RESEND_BATCH) {
                let _ = self
                    .net
                    .try_send(NetCommand::PushTxs(phalanx_crypto::encode(chunk)));
            }
        }
        let waiting = self.shared.mempool.waiting();
        self.shared.metrics.mempool_waiting.set(waiting as i64);
        let elapsed = self.last_summary.elapsed();
        if elapsed >= Duration::from_secs(5) {
            let st = self.engine.status();
            let status = self.shared.status.get();
            tracing::info!(
                height = self.latest.height().0,
                view = st.view,
                view_changing = st.view_changing,
                primary = st.primary.0,
                peers = status.peers.len(),
                mempool = self.shared.mempool.len(),
                waiting,
                tx_per_s = format!(
                    "{:.1}",
                    self.committed_since_tick as f64 / elapsed.as_secs_f64()
                ),
                "summary"
            );
            self.committed_since_tick = 0;
            self.last_summary = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    //! Four drivers in one process, each behind the real (honest) fault
    //! wrapper, wired to each other by hand: real engines, real metrics,
    //! real debug events, and a clock that moves only when a test fires a
    //! timer.

    use super::*;
    use crate::home::NodeConfig;
    use crate::injection::{interpose, Behaviour, FaultControl};
    use crate::metrics::{classic, Format};
    use phalanx_consensus::{Cft, Engine, Pbft, PbftMessage};
    use phalanx_crypto::Keypair;
    use phalanx_ledger::Store;
    use phalanx_ledger::ValidatorIndex;
    use phalanx_ledger::{
        Address, Genesis, GenesisAccount, MemoryStore, State, Transaction, ValidatorInfo,
    };
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    const CHAIN: &str = "driver-test";
    const N: u32 = 4;

    fn key(label: &str) -> Keypair {
        Keypair::from_label(&format!("driver-test-{label}"))
    }

    fn genesis() -> phalanx_ledger::Genesis {
        Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: 1_700_000_000_000,
            validators: (0..N)
                .map(|i| ValidatorInfo {
                    name: format!("node{i}"),
                    public_key: key(&format!("v{i}")).public(),
                    node_key: key(&format!("n{i}")).public(),
                    stake: 1,
                    p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 26000 + i),
                    api_address: format!("127.0.0.1:{}", 26100 + i),
                })
                .collect(),
            accounts: vec![GenesisAccount {
                address: Address(key("alice").public()),
                balance: 1000,
            }],
            consensus: Default::default(),
        }
    }

    fn transfer(nonce: u64) -> SignedTransaction {
        let alice = key("alice");
        Transaction {
            chain_id: CHAIN.into(),
            from: Address(alice.public()),
            to: Address(alice.public()),
            amount: 1,
            nonce,
            fee: 1,
        }
        .sign(&alice)
    }

    /// `/status` names the engine the driver runs, not always "pbft" (issue 17).
    #[tokio::test]
    async fn status_names_the_engine_that_runs() {
        let pbft = node(0);
        assert_eq!(pbft.shared.status.get().consensus, "pbft");
        let shared = shared_at_genesis(ValidatorIndex(1));
        let (net, _wire) = mpsc::channel(16);
        let _cft = Driver::<Cft>::new(shared.clone(), key("v1"), net).unwrap();
        assert_eq!(shared.status.get().consensus, "cft");
    }

    /// One validator: its driver, and what its fault wrapper hands to the
    /// network.
    struct Node {
        driver: Driver<Pbft>,
        shared: Arc<Shared>,
        control: Arc<FaultControl>,
        wire: mpsc::Receiver<NetCommand>,
    }

    /// Validator `me`'s shared state over a memory store holding genesis.
    fn shared_at_genesis(me: ValidatorIndex) -> Arc<Shared> {
        let genesis = genesis();
        let store = MemoryStore::new();
        let changed = genesis
            .state()
            .accounts()
            .map(|(a, acct)| (*a, *acct))
            .collect();
        let diff = State::default().diff(Height::GENESIS, changed);
        store.append_block(&genesis.block(), &[], &diff).unwrap();
        Arc::new(Shared::new(
            genesis,
            me,
            NodeConfig::default(),
            Arc::new(store),
        ))
    }

    fn node(i: u32) -> Node {
        node_over(i, shared_at_genesis(ValidatorIndex(i)))
    }

    fn node_over(i: u32, shared: Arc<Shared>) -> Node {
        let me = ValidatorIndex(i);
        let (net, wire) = mpsc::channel(4096);
        let cfg = <Pbft as Protocol>::config(&shared.genesis, me).unwrap();
        let control = Arc::new(FaultControl::new(Behaviour::Honest, false));
        let net = interpose::<Pbft>(
            control.clone(),
            shared.clone(),
            cfg,
            key(&format!("v{i}")),
            net,
        );
        let driver = Driver::new(shared.clone(), key(&format!("v{i}")), net).unwrap();
        Node {
            driver,
            shared,
            control,
            wire,
        }
    }

    struct Cluster {
        nodes: Vec<Node>,
        /// Validators cut off from everyone.
        cut: BTreeSet<u32>,
        /// Messages lost at the cut, by kind.
        lost: BTreeMap<&'static str, u64>,
    }

    impl Cluster {
        fn new() -> Cluster {
            Cluster {
                nodes: (0..N).map(node).collect(),
                cut: BTreeSet::new(),
                lost: BTreeMap::new(),
            }
        }

        /// Delivers consensus messages until none are left.
        async fn settle(&mut self) {
            loop {
                // The wrappers are tasks on this thread: let them forward.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let mut deliveries = Vec::new();
                for from in 0..N {
                    while let Ok(cmd) = self.nodes[from as usize].wire.try_recv() {
                        let (dests, bytes): (Vec<u32>, _) = match cmd {
                            NetCommand::Send { to, bytes } => (vec![to.0], bytes),
                            NetCommand::Broadcast(bytes) => {
                                ((0..N).filter(|v| *v != from).collect(), bytes)
                            }
                            _ => continue,
                        };
                        for to in dests {
                            if self.cut.contains(&from) || self.cut.contains(&to) {
                                let kind = PbftMessage::wire_kind(&bytes).unwrap();
                                *self.lost.entry(kind).or_default() += 1;
                            } else {
                                deliveries.push((from, to, bytes.clone()));
                            }
                        }
                    }
                }
                if deliveries.is_empty() {
                    return;
                }
                for (from, to, bytes) in deliveries {
                    let event = NetEvent::Consensus {
                        from: ValidatorIndex(from),
                        bytes: bytes.to_vec(),
                        _held: None,
                    };
                    self.nodes[to as usize]
                        .driver
                        .on_net_event(event)
                        .await
                        .unwrap();
                }
            }
        }

        /// Starts every node and has primary 0 propose a transfer.
        async fn first_block(&mut self) {
            for n in &mut self.nodes {
                n.driver.step(Input::Start).unwrap();
            }
            self.settle().await;
            self.nodes[0]
                .driver
                .step(Input::Transactions(vec![transfer(0)]))
                .unwrap();
            self.fire(0, |k| *k == TimeoutKind::Batch);
            self.settle().await;
        }

        /// A live-page watcher on every node.
        fn watch_all(&self) -> Vec<crate::watch::Watcher> {
            self.nodes
                .iter()
                .map(|n| n.shared.watch.subscribe().expect("room for a watcher"))
                .collect()
        }

        /// Fires node `i`'s armed timers that `which` selects, now.
        fn fire(&mut self, i: usize, which: impl Fn(&TimeoutKind) -> bool) {
            let d = &mut self.nodes[i].driver;
            let due: Vec<TimeoutKind> = d.timers.keys().copied().filter(|k| which(k)).collect();
            for kind in due {
                d.timers.remove(&kind);
                d.step(Input::Timeout(kind)).unwrap();
            }
        }

        fn counted(&self, i: usize, direction: &str, kind: &str) -> f64 {
            let text = self.nodes[i].shared.metrics.render(Format::Classic);
            let families = classic::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            families["phalanx_consensus_messages_total"]
                .value(
                    "phalanx_consensus_messages_total",
                    &[("direction", direction), ("kind", kind)],
                )
                .unwrap_or_else(|| panic!("no {direction} {kind} series:\n{text}"))
        }
    }

    /// Log lines written through a real fmt subscriber.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Logs {
        /// A subscriber like the node's (`run::log_filter` on the `--log`
        /// value, plain format) that writes here.
        fn subscriber(&self, log: &str) -> impl tracing::Subscriber + Send + Sync {
            let logs = self.clone();
            tracing_subscriber::fmt()
                .with_env_filter(crate::run::log_filter(log))
                .with_writer(move || logs.clone())
                .with_ansi(false)
                .finish()
        }

        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// Block 1 through the normal case, then a view change away from a
    /// primary cut off from everyone.
    async fn a_block_and_a_view_change() -> Cluster {
        block_and_view_change(Cluster::new()).await
    }

    async fn block_and_view_change(mut c: Cluster) -> Cluster {
        c.first_block().await;
        for n in &c.nodes {
            assert_eq!(n.driver.latest.height(), Height(1), "block 1 everywhere");
            // A PBFT block is final as soon as /status shows it.
            let s = n.shared.status.get();
            assert_eq!((s.height, s.final_height, s.finality_lag), (1, 1, 0));
        }
        // The primary goes silent while the backups hold a transaction.
        c.cut.insert(0);
        for i in 1..N as usize {
            c.nodes[i]
                .driver
                .step(Input::Transactions(vec![transfer(1)]))
                .unwrap();
        }
        // A progress timer armed for block 1 first sees that block 1
        // committed and re-arms; the next one finds no progress.
        for _ in 0..2 {
            for i in 1..N as usize {
                c.fire(i, |k| matches!(k, TimeoutKind::Progress { .. }));
            }
            c.settle().await;
        }
        for n in &c.nodes[1..] {
            let st = n.driver.engine.status();
            assert_eq!((st.view, st.view_changing), (1, false), "in view 1");
        }
        c
    }

    /// Every event each watcher holds, per node.
    fn drain(watchers: &mut [crate::watch::Watcher]) -> Vec<Vec<crate::watch::WatchEvent>> {
        use crate::watch::Next;
        watchers
            .iter_mut()
            .map(|w| {
                let mut all = Vec::new();
                while let Some(n) = w.try_next() {
                    match n {
                        Next::Event(e) => all.push((*e).clone()),
                        Next::Missed(n) => panic!("missed {n} events"),
                    }
                }
                all
            })
            .collect()
    }

    /// What the live page sees of the same run: every node's own sends
    /// (as they left its wrapper), blocks, timers and views.
    #[tokio::test]
    async fn the_live_page_sees_sends_blocks_timeouts_and_views() {
        use crate::watch::WatchEvent as W;
        let c = Cluster::new();
        let mut watchers = c.watch_all();
        let _c = block_and_view_change(c).await;
        let seen = drain(&mut watchers);
        let sent = |i: usize, kind: &str, view: u64| -> Vec<(Option<u32>, u64, String)> {
            seen[i]
                .iter()
                .filter_map(|e| match e {
                    W::Msg {
                        from,
                        to,
                        kind: k,
                        view: v,
                        seq,
                        digest,
                        ..
                    } if *k == kind && *v == view => {
                        assert_eq!(
                            *from, i as u32,
                            "a send recorded by node {i} names another sender"
                        );
                        Some((*to, *seq, digest.clone()))
                    }
                    _ => None,
                })
                .collect()
        };
        // The primary's proposal of block 1, broadcast; every backup
        // prepares and everyone commits the same digest.
        let pp = sent(0, "pre_prepare", 0);
        assert_eq!(pp.len(), 1, "{:?}", seen[0]);
        let (to, seq, digest) = &pp[0];
        assert_eq!((*to, *seq, digest.len()), (None, 1, 8));
        for i in 1..N as usize {
            let prepares = sent(i, "prepare", 0);
            assert!(
                prepares.iter().any(|(_, s, d)| *s == 1 && d == digest),
                "node {i}: {prepares:?}"
            );
        }
        for (i, events) in seen.iter().enumerate() {
            assert!(sent(i, "commit", 0)
                .iter()
                .any(|(_, s, d)| *s == 1 && d == digest));
            let blocks: Vec<(u64, u32, usize, bool)> = events
                .iter()
                .filter_map(|e| match e {
                    W::Block {
                        height,
                        proposer,
                        txs,
                        tentative,
                        ..
                    } => Some((*height, *proposer, *txs, *tentative)),
                    _ => None,
                })
                .collect();
            // Block 1 from primary 0 everywhere; the backups then commit
            // block 2 from the new primary, 1.
            let want = if i == 0 {
                vec![(1, 0, 1, false)]
            } else {
                vec![(1, 0, 1, false), (2, 1, 1, false)]
            };
            assert_eq!(blocks, want, "node {i}");
        }
        // The cut-off primary records nothing of the view change; each
        // backup records its progress timeout, its VIEW-CHANGE and view 1,
        // and the new primary its NEW-VIEW.
        for (i, events) in seen.iter().enumerate().skip(1) {
            assert!(
                events.iter().any(|e| matches!(
                    e,
                    W::Timeout {
                        kind: "progress",
                        ..
                    }
                )),
                "node {i}: {events:?}"
            );
            assert_eq!(sent(i, "view_change", 1).len(), 1, "node {i}");
            let views: Vec<(u64, u32)> = events
                .iter()
                .filter_map(|e| match e {
                    W::View { view, primary, .. } => Some((*view, *primary)),
                    _ => None,
                })
                .collect();
            assert_eq!(views, [(1, 1)], "node {i}");
        }
        assert_eq!(sent(1, "new_view", 1).len(), 1);
        assert!(!seen[0].iter().any(|e| matches!(e, W::View { .. })));
    }

    /// The page sees what leaves the fault wrapper, not what the honest
    /// engine meant to send: an equivocating primary's two proposals for
    /// one slot, each to its half, and nothing from a silent replica.
    #[tokio::test]
    async fn the_live_page_sees_what_leaves_the_fault_wrapper() {
        use crate::watch::WatchEvent as W;
        let mut c = Cluster::new();
        c.nodes[0].control.set_behaviour(Behaviour::Equivocate);
        c.nodes[2].control.set_behaviour(Behaviour::Silent);
        let mut watchers = c.watch_all();
        c.first_block().await;
        let seen = drain(&mut watchers);
        let proposals: BTreeSet<(Option<u32>, String)> = seen[0]
            .iter()
            .filter_map(|e| match e {
                W::Msg {
                    kind: "pre_prepare",
                    seq: 1,
                    to,
                    digest,
                    ..
                } => Some((*to, digest.clone())),
                _ => None,
            })
            .collect();
        let digests: BTreeSet<&String> = proposals.iter().map(|(_, d)| d).collect();
        assert!(
            digests.len() >= 2,
            "one digest for slot 1 from the equivocating primary: {proposals:?}"
        );
        assert!(
            proposals.iter().all(|(to, _)| to.is_some()),
            "an equivocation goes to each half on its own: {proposals:?}"
        );
        assert!(
            !seen[2].iter().any(|e| matches!(e, W::Msg { .. })),
            "the silent replica sent nothing, yet recorded: {:?}",
            seen[2]
        );
        assert!(seen[1].iter().any(|e| matches!(e, W::Msg { .. })));
    }

    fn vote(kind: phalanx_ledger::VoteKind, view: u64, seq: u64) -> phalanx_ledger::SignedVote {
        phalanx_ledger::Vote {
            kind,
            view,
            seq: Height(seq),
            digest: Hash::digest(&[seq as u8]),
            voter: ValidatorIndex(1),
        }
        .sign(CHAIN, &key("v1"))
    }

    /// Sent messages are counted as they leave the fault wrapper: one per
    /// recipient, none for what a misbehaving node withholds.
    #[tokio::test]
    async fn what_the_fault_wrapper_withholds_is_not_counted_as_sent() {
        let mut c = Cluster::new();
        // Nothing is delivered (the drivers' debug events are left to the
        // test below), only counted as it leaves node 1.
        c.cut.insert(1);
        let prepare = Arc::new(phalanx_crypto::encode(&PbftMessage::Prepare(vote(
            phalanx_ledger::VoteKind::Prepare,
            0,
            1,
        ))));
        let send = |c: &Cluster, cmd| c.nodes[1].driver.net.try_send(cmd).unwrap();
        send(
            &c,
            NetCommand::Send {
                to: ValidatorIndex(2),
                bytes: prepare.clone(),
            },
        );
        send(&c, NetCommand::Broadcast(prepare.clone()));
        c.settle().await;
        assert_eq!(c.counted(1, "sent", "prepare"), 4.0, "1 + 3 recipients");
        assert_eq!(c.lost["prepare"], 4, "on the wire");
        c.nodes[1].control.set_behaviour(Behaviour::Silent);
        send(
            &c,
            NetCommand::Send {
                to: ValidatorIndex(2),
                bytes: prepare.clone(),
            },
        );
        send(&c, NetCommand::Broadcast(prepare));
        c.settle().await;
        assert_eq!(c.counted(1, "sent", "prepare"), 4.0, "withheld");
        assert_eq!(c.lost["prepare"], 4, "nothing on the wire");
    }

    /// One test, so that no other thread hits these callsites meanwhile:
    /// tracing caches whether a callsite is enabled across threads, and
    /// tests with different subscribers racing on one callsite can see a
    /// stale answer.
    #[tokio::test]
    async fn consensus_messages_are_logged_at_phalanx_debug_and_counted() {
        let logs = Logs::default();
        let guard = tracing::subscriber::set_default(logs.subscriber("phalanx=debug"));
        let c = a_block_and_a_view_change().await;
        drop(guard);
        check_debug_events(&logs.lines());
        check_counts(&c);

        let logs = Logs::default();
        let guard = tracing::subscriber::set_default(logs.subscriber("info"));
        let _ = a_block_and_a_view_change().await;
        drop(guard);
        let lines = logs.lines();
        assert!(
            !lines.iter().any(|l| l.contains("phalanx::consensus")),
            "no consensus events at info: {lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("entered view")),
            "info events still show: {lines:#?}"
        );
    }

    fn check_debug_events(lines: &[String]) {
        let find = |what: &str, kind: &str| -> &String {
            lines
                .iter()
                .find(|l| {
                    l.contains(" DEBUG phalanx::consensus: ")
                        && l.contains(what)
                        && l.contains(&format!(" kind={kind} "))
                })
                .unwrap_or_else(|| panic!("no {what} {kind} event in:\n{}", lines.join("\n")))
        };
        for kind in [
            "pre_prepare",
            "prepare",
            "commit",
            "view_change",
            "new_view",
        ] {
            let sent = find("sending", kind);
            let received = find("received", kind);
            assert!(sent.contains(" to="), "{sent}");
            assert!(received.contains(" from="), "{received}");
            for l in [sent, received] {
                assert!(l.contains(" view=") && l.contains(" seq="), "{l}");
                assert!(l.contains(" digest="), "{l}");
            }
        }
        // The primary's proposal of block 1, as a backup received it.
        let pp = find("received", "pre_prepare");
        assert!(pp.contains(" view=0 seq=1 digest="), "{pp}");
        assert!(pp.ends_with(" from=0"), "{pp}");
        let digest = pp
            .split(" digest=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert_eq!(digest.len(), 8, "{pp}");
        assert!(digest.chars().all(|c| c.is_ascii_hexdigit()), "{pp}");
        let prepare = find("sending", "prepare");
        assert!(prepare.ends_with(" to=all"), "a broadcast: {prepare}");
        let nv = find("sending", "new_view");
        assert!(nv.contains(" view=1 "), "{nv}");
    }

    fn check_counts(c: &Cluster) {
        // Validator 0 proposed block 1 to its three backups, then was cut
        // off; 1, 2 and 3 each asked for view 1 (a broadcast: three sent,
        // two of the others' received), and 1, its primary, started it.
        assert_eq!(c.counted(0, "sent", "pre_prepare"), 3.0);
        assert_eq!(c.counted(1, "received", "pre_prepare"), 1.0);
        for i in 1..4 {
            assert_eq!(c.counted(i, "sent", "view_change"), 3.0, "node {i}");
            assert_eq!(c.counted(i, "received", "view_change"), 2.0, "node {i}");
        }
        assert_eq!(c.counted(1, "sent", "new_view"), 3.0);
        assert_eq!(c.counted(2, "received", "new_view"), 1.0);
        assert_eq!(c.counted(3, "received", "new_view"), 1.0);
        assert_eq!(c.counted(0, "received", "new_view"), 0.0, "cut off");
        // Per kind, every message sent to a peer was received there or lost
        // at the cut.
        for kind in PbftMessage::KINDS {
            let k = *kind;
            let sent: f64 = (0..4).map(|i| c.counted(i, "sent", k)).sum();
            let received: f64 = (0..4).map(|i| c.counted(i, "received", k)).sum();
            let cut = *c.lost.get(k).unwrap_or(&0) as f64;
            assert_eq!(sent, received + cut, "{k}");
        }
        assert!(c.counted(1, "sent", "commit") > 0.0);
    }

    /// A store whose writes fail once `full` is set, like a full disk.
    struct FullDisk {
        inner: MemoryStore,
        full: std::sync::atomic::AtomicBool,
    }

    impl FullDisk {
        fn check(&self) -> Result<(), phalanx_ledger::StoreError> {
            if self.full.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(phalanx_ledger::StoreError::Backend(
                    "No space left on device (os error 28)".into(),
                ));
            }
            Ok(())
        }
    }

    impl Store for FullDisk {
        fn latest_height(&self) -> Result<Option<Height>, phalanx_ledger::StoreError> {
            self.inner.latest_height()
        }
        fn block(
            &self,
            h: Height,
        ) -> Result<Option<phalanx_ledger::Block>, phalanx_ledger::StoreError> {
            self.inner.block(h)
        }
        fn block_by_hash(
            &self,
            h: &phalanx_crypto::Hash,
        ) -> Result<Option<phalanx_ledger::Block>, phalanx_ledger::StoreError> {
            self.inner.block_by_hash(h)
        }
        fn tx(
            &self,
            h: &phalanx_crypto::Hash,
        ) -> Result<Option<phalanx_ledger::TxLocation>, phalanx_ledger::StoreError> {
            self.inner.tx(h)
        }
        fn account(
            &self,
            a: &Address,
        ) -> Result<Option<phalanx_ledger::Account>, phalanx_ledger::StoreError> {
            self.inner.account(a)
        }
        fn load_state(&self) -> Result<State, phalanx_ledger::StoreError> {
            self.inner.load_state()
        }
        fn append_block(
            &self,
            block: &phalanx_ledger::Block,
            receipts: &[phalanx_ledger::Receipt],
            diff: &phalanx_ledger::StateDiff,
        ) -> Result<(), phalanx_ledger::StoreError> {
            self.check()?;
            self.inner.append_block(block, receipts, diff)
        }
        fn append_tentative(
            &self,
            block: &phalanx_ledger::Block,
            receipts: &[phalanx_ledger::Receipt],
            diff: &phalanx_ledger::StateDiff,
            undo: &phalanx_ledger::Undo,
        ) -> Result<(), phalanx_ledger::StoreError> {
            self.check()?;
            self.inner.append_tentative(block, receipts, diff, undo)
        }
        fn revert_latest(&self) -> Result<phalanx_ledger::Block, phalanx_ledger::StoreError> {
            self.check()?;
            self.inner.revert_latest()
        }
        fn finalize(
            &self,
            height: phalanx_ledger::Height,
            justification: &Justification,
        ) -> Result<(), phalanx_ledger::StoreError> {
            self.check()?;
            self.inner.finalize(height, justification)
        }
        fn put_consensus(&self, k: &[u8], v: &[u8]) -> Result<(), phalanx_ledger::StoreError> {
            self.check()?;
            self.inner.put_consensus(k, v)
        }
        fn consensus(&self, k: &[u8]) -> Result<Option<Vec<u8>>, phalanx_ledger::StoreError> {
            self.inner.consensus(k)
        }
        fn consensus_entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>, phalanx_ledger::StoreError> {
            self.inner.consensus_entries()
        }
        fn write_consensus(
            &self,
            puts: &[(Vec<u8>, Vec<u8>)],
            deletes: &[Vec<u8>],
        ) -> Result<(), phalanx_ledger::StoreError> {
            self.check()?;
            self.inner.write_consensus(puts, deletes)
        }
        fn put_evidence(
            &self,
            e: &phalanx_ledger::Evidence,
        ) -> Result<bool, phalanx_ledger::StoreError> {
            self.check()?;
            self.inner.put_evidence(e)
        }
        fn evidence(&self) -> Result<Vec<phalanx_ledger::Evidence>, phalanx_ledger::StoreError> {
            self.inner.evidence()
        }
        fn put_meta(&self, k: &str, v: &[u8]) -> Result<(), phalanx_ledger::StoreError> {
            self.check()?;
            self.inner.put_meta(k, v)
        }
        fn meta(&self, k: &str) -> Result<Option<Vec<u8>>, phalanx_ledger::StoreError> {
            self.inner.meta(k)
        }
    }

    /// Issue 18, finding 8: a write that fails (a full disk) stops the
    /// driver, and the node says so in `/status` (and so `/health`) instead
    /// of answering "ok" while it no longer takes part in consensus.
    #[tokio::test]
    async fn a_failed_write_stops_the_driver_and_the_status_says_why() {
        let inner = MemoryStore::new();
        let g = genesis().block();
        let diff = State::default().diff(
            Height::GENESIS,
            genesis()
                .state()
                .accounts()
                .map(|(a, acct)| (*a, *acct))
                .collect(),
        );
        inner.append_block(&g, &[], &diff).unwrap();
        let disk = Arc::new(FullDisk {
            inner,
            full: std::sync::atomic::AtomicBool::new(false),
        });
        let shared = Arc::new(Shared::new(
            genesis(),
            ValidatorIndex(1),
            NodeConfig::default(),
            disk.clone(),
        ));
        let Node {
            driver: backup,
            shared: backup_shared,
            ..
        } = node_over(1, shared);

        // The primary proposes block 1; take its PRE-PREPARE off the wire.
        let mut primary = node(0);
        primary.driver.step(Input::Start).unwrap();
        primary
            .driver
            .step(Input::Transactions(vec![transfer(0)]))
            .unwrap();
        primary.driver.timers.remove(&TimeoutKind::Batch);
        primary
            .driver
            .step(Input::Timeout(TimeoutKind::Batch))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut pre_prepare = None;
        while let Ok(cmd) = primary.wire.try_recv() {
            if let NetCommand::Broadcast(bytes) = cmd {
                if PbftMessage::wire_kind(&bytes) == Some("pre_prepare") {
                    pre_prepare = Some(bytes.to_vec());
                }
            }
        }
        let bytes = pre_prepare.expect("the primary's PRE-PREPARE");

        // The backup's disk fills; the PREPARE it must save cannot be saved.
        disk.full.store(true, std::sync::atomic::Ordering::SeqCst);
        let (events, events_rx) = mpsc::channel(16);
        let (_stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(backup.run(events_rx, stop_rx));
        events
            .send(NetEvent::Consensus {
                from: ValidatorIndex(0),
                bytes,
                _held: None,
            })
            .await
            .unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the driver stops")
            .unwrap();
        let err = format!("{:#}", result.expect_err("the driver fails"));
        assert!(err.contains("No space left"), "{err}");
        let stopped = backup_shared
            .status
            .get()
            .stopped
            .expect("status says stopped");
        assert!(stopped.contains("No space left"), "{stopped}");
    }

    /// Issue 18, finding 4: a client sends A to the primary and A' (same
    /// sender and nonce) to the backups. A commits; the backups' engines
    /// must forget A', or they stay busy with it forever and complain the
    /// primary out of its view on an idle chain.
    #[tokio::test]
    async fn a_transaction_that_lost_its_nonce_leaves_every_engine() {
        let mut c = Cluster::new();
        for n in &mut c.nodes {
            n.driver.step(Input::Start).unwrap();
        }
        c.settle().await;
        let alice = key("alice");
        let conflicting = Transaction {
            chain_id: CHAIN.into(),
            from: Address(alice.public()),
            to: Address(key("bob").public()),
            amount: 2,
            nonce: 0,
            fee: 1,
        }
        .sign(&alice);
        for i in 1..N as usize {
            let shared = c.nodes[i].shared.clone();
            let account = shared.executed.account(&conflicting.tx.from);
            shared
                .mempool
                .insert(conflicting.clone(), conflicting.hash(), true, account)
                .unwrap();
            c.nodes[i]
                .driver
                .step(Input::Transactions(vec![conflicting.clone()]))
                .unwrap();
            assert_eq!(c.nodes[i].driver.engine.status().pending_txs, 1);
        }
        c.nodes[0]
            .driver
            .step(Input::Transactions(vec![transfer(0)]))
            .unwrap();
        c.fire(0, |k| *k == TimeoutKind::Batch);
        c.settle().await;
        for (i, n) in c.nodes.iter().enumerate() {
            assert_eq!(n.driver.latest.height(), Height(1), "block 1 at {i}");
            assert_eq!(
                n.driver.engine.status().pending_txs,
                0,
                "node {i} forgot A'"
            );
            assert!(!n.shared.mempool.contains(&conflicting.hash()));
        }
        // Nothing left to wait for: a progress timer finds no work, and
        // nobody complains about the primary.
        for i in 1..N as usize {
            c.fire(i, |k| matches!(k, TimeoutKind::Progress { .. }));
        }
        c.settle().await;
        for n in &c.nodes {
            let st = n.driver.engine.status();
            assert_eq!((st.view, st.view_changing), (0, false));
        }
    }

    /// Issue 18, finding 6: pushed transaction batches are checked a
    /// bounded number at a time; one more while the most are in flight is
    /// dropped and counted, and taken again once there is room.
    #[tokio::test]
    async fn pushed_batches_beyond_the_bound_are_dropped_and_counted() {
        let mut n = node(1);
        let held: Vec<_> = (0..crate::intake::MAX_PUSHED_IN_FLIGHT)
            .map(|_| n.shared.intake.admit_pushed().expect("room"))
            .collect();
        assert!(n.shared.intake.admit_pushed().is_none());
        let batch = phalanx_crypto::encode(&vec![transfer(0)]);
        n.driver
            .on_net_event(NetEvent::Txs(batch.clone()))
            .await
            .unwrap();
        let busy = |n: &Node| {
            let text = n.shared.metrics.render(Format::Classic);
            classic::parse(&text).unwrap()["phalanx_dropped_messages_total"]
                .value(
                    "phalanx_dropped_messages_total",
                    &[("reason", "tx_batch_busy")],
                )
                .unwrap()
        };
        assert_eq!(busy(&n), 1.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(n.shared.mempool.is_empty());
        drop(held);
        n.driver.on_net_event(NetEvent::Txs(batch)).await.unwrap();
        for _ in 0..100 {
            if !n.shared.mempool.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(n.shared.mempool.len(), 1, "taken once there is room");
        assert_eq!(busy(&n), 1.0);
    }

    /// Issue 18, finding 8: the start-up check compared the state root with
    /// itself. A store whose balances no longer add up to the genesis
    /// supply (a record lost or altered) now refuses to start, and says so.
    #[tokio::test]
    async fn a_store_whose_balances_do_not_add_up_refuses_to_start() {
        let shared = shared_at_genesis(ValidatorIndex(1));
        let g = genesis();
        let state = g.state();
        let alice = Address(key("alice").public());
        let mut minted = *state.account(&alice).unwrap();
        minted.balance += 1_000;
        let diff = state.diff(Height(1), [(alice, minted)].into_iter().collect());
        let payload = phalanx_ledger::Payload {
            chain_id: CHAIN.into(),
            height: Height(1),
            round: 0,
            proposer: ValidatorIndex(0),
            timestamp_ms: 1,
            txs: vec![],
            evidence: vec![],
        };
        let block = phalanx_ledger::make_block(
            payload,
            g.block().hash(),
            diff.root,
            phalanx_ledger::Justification::Genesis,
        );
        shared.store.append_block(&block, &[], &diff).unwrap();
        let (net, _wire) = mpsc::channel(16);
        let err = Driver::<Pbft>::new(shared, key("v1"), net)
            .err()
            .expect("refused");
        let text = format!("{err:#}");
        assert!(
            text.contains("the store is corrupt") && text.contains("genesis supply"),
            "{text}"
        );
    }
}
