//! The driver: a tokio loop that owns the PBFT engine, feeds it inputs
//! (network messages, transactions, timers) and carries out its outputs in
//! order: persist (synced, before anything leaves the node), send, arm
//! timers, execute committed blocks into the store (STYLE §1).

use crate::metrics::DropReason;
use crate::p2p::{NetCommand, NetEvent};
use crate::shared::Shared;
use phalanx_consensus::{
    Cft, CftMessage, CftRecord, Config, ConfigError, Engine, Input, Output, Pbft, PbftMessage,
    Persisted, Restored, TimeoutKind,
};
use phalanx_crypto::Hash;
use phalanx_ledger::{
    execute, make_block, Block, Height, Justification, Payload, SignatureCheck, SignedTransaction,
    Store, ValidatorIndex,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Most transactions decoded from one batch pushed by a peer.
const MAX_PUSHED_BATCH: usize = 20_000;
/// Most transactions in one batch of resent client transactions.
const RESEND_BATCH: usize = 2_000;

/// Milliseconds since the Unix epoch (the engine's clock input).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The engine's persisted records, kept in the store's consensus column under
/// keys that make pruning at a stable checkpoint a range of known keys.
pub struct Wal {
    store: Arc<dyn Store>,
    /// Live keys by the seq they protect (view records under seq 0... kept forever).
    keys_by_seq: BTreeMap<Height, Vec<Vec<u8>>>,
    batch: Vec<(Vec<u8>, Vec<u8>)>,
    prune_up_to: Option<Height>,
}

fn wal_key(record: &Persisted) -> (Option<Height>, Vec<u8>) {
    match record {
        Persisted::Vote(v) => {
            let mut k = b"vote/".to_vec();
            k.extend_from_slice(&v.vote.seq.0.to_be_bytes());
            k.extend(phalanx_crypto::encode(&(v.vote.kind, v.vote.view)));
            (Some(v.vote.seq), k)
        }
        Persisted::View { .. } => (None, b"view".to_vec()),
        Persisted::Prepared(cert) => {
            let (_, seq, _) = cert.slot();
            let mut k = b"prep/".to_vec();
            k.extend_from_slice(&seq.0.to_be_bytes());
            (Some(seq), k)
        }
        Persisted::StableCheckpoint { .. } => (None, b"stable".to_vec()),
        // The CFT baseline: one hard state, entries by index (a rewrite of an
        // index replaces the record; pruned at compaction), the last
        // truncation. The engine restores them in any order (they carry a
        // write counter).
        Persisted::Cft(record) => match record {
            CftRecord::HardState { .. } => (None, b"cft/hard".to_vec()),
            CftRecord::Entry { payload, .. } => {
                let mut k = b"cft/entry/".to_vec();
                k.extend_from_slice(&payload.height.0.to_be_bytes());
                (Some(payload.height), k)
            }
            CftRecord::Truncate { .. } => (None, b"cft/truncate".to_vec()),
            CftRecord::Compacted { .. } => (None, b"cft/compacted".to_vec()),
        },
    }
}

impl Wal {
    /// Opens the log and returns what the engine restores from.
    pub fn open(store: Arc<dyn Store>) -> anyhow::Result<(Wal, Vec<Persisted>)> {
        let mut keys_by_seq: BTreeMap<Height, Vec<Vec<u8>>> = BTreeMap::new();
        let mut records = Vec::new();
        for (key, value) in store.consensus_entries()? {
            let record: Persisted = phalanx_crypto::decode(&value).map_err(|e| {
                anyhow::anyhow!(
                    "consensus record {} is corrupt: {e}",
                    String::from_utf8_lossy(&key)
                )
            })?;
            if let (Some(seq), k) = wal_key(&record) {
                keys_by_seq.entry(seq).or_default().push(k);
            }
            records.push(record);
        }
        Ok((
            Wal {
                store,
                keys_by_seq,
                batch: Vec::new(),
                prune_up_to: None,
            },
            records,
        ))
    }

    fn push(&mut self, record: &Persisted) {
        let (seq, key) = wal_key(record);
        if let Some(seq) = seq {
            self.keys_by_seq.entry(seq).or_default().push(key.clone());
        }
        match record {
            Persisted::StableCheckpoint { seq, .. } => self.prune_up_to = Some(*seq),
            Persisted::Cft(CftRecord::Compacted { index, .. }) => {
                self.prune_up_to = Some(*index);
            }
            _ => {}
        }
        self.batch.push((key, phalanx_crypto::encode(record)));
    }

    /// Writes the pending records in one synced batch (and prunes below a new
    /// stable checkpoint).
    fn flush(&mut self) -> anyhow::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut deletes = Vec::new();
        if let Some(stable) = self.prune_up_to.take() {
            let keep = self.keys_by_seq.split_off(&stable.next());
            for (_, keys) in std::mem::replace(&mut self.keys_by_seq, keep) {
                deletes.extend(keys);
            }
        }
        self.store.write_consensus(&self.batch, &deletes)?;
        self.batch.clear();
        Ok(())
    }
}

/// Signature verdicts from the node's verified cache, verifying only the rest.
struct CachedCheck<'a>(&'a Shared);

impl SignatureCheck for CachedCheck<'_> {
    fn verdicts(&self, txs: &[SignedTransaction]) -> Vec<bool> {
        self.0
            .verify_now(txs)
            .into_iter()
            .map(|(_, ok)| ok)
            .collect()
    }
}

/// What the driver needs of an engine besides [`Engine`]: how to configure
/// and restore it, and which votes its messages carry (for `--vote-log`).
pub trait NodeEngine: Engine<Message: Send + 'static> + Send + 'static {
    /// The engine's name in `/status` ("pbft", "cft").
    const NAME: &'static str;
    /// This validator's configuration from the genesis (fails on a bad one).
    fn config(genesis: &phalanx_ledger::Genesis, me: ValidatorIndex)
        -> Result<Config, ConfigError>;
    /// The engine rebuilt from its persisted records.
    fn restore(cfg: Config, key: phalanx_crypto::Keypair, restored: Restored) -> Self;
    /// The signed votes in an outgoing message.
    fn votes(message: &Self::Message) -> Vec<&phalanx_ledger::SignedVote>;
}

impl NodeEngine for Pbft {
    const NAME: &'static str = "pbft";
    fn config(
        genesis: &phalanx_ledger::Genesis,
        me: ValidatorIndex,
    ) -> Result<Config, ConfigError> {
        Config::from_genesis(genesis, me)
    }
    fn restore(cfg: Config, key: phalanx_crypto::Keypair, restored: Restored) -> Self {
        Pbft::restore(cfg, key, restored)
    }
    fn votes(message: &PbftMessage) -> Vec<&phalanx_ledger::SignedVote> {
        match message {
            PbftMessage::PrePrepare(pp) => vec![&pp.vote],
            PbftMessage::Prepare(v) | PbftMessage::Commit(v) | PbftMessage::Checkpoint(v) => {
                vec![v]
            }
            PbftMessage::NewView(nv) => nv.pre_prepares.iter().collect(),
            PbftMessage::ViewChange(_) | PbftMessage::Evidence(_) => Vec::new(),
        }
    }
}

impl NodeEngine for Cft {
    const NAME: &'static str = "cft";
    fn config(
        genesis: &phalanx_ledger::Genesis,
        me: ValidatorIndex,
    ) -> Result<Config, ConfigError> {
        Config::from_genesis_cft(genesis, me)
    }
    fn restore(cfg: Config, key: phalanx_crypto::Keypair, restored: Restored) -> Self {
        Cft::restore(cfg, key, restored)
    }
    /// CFT messages carry no PBFT votes (a crash-fault model signs, but
    /// nobody checks for equivocation).
    fn votes(_message: &CftMessage) -> Vec<&phalanx_ledger::SignedVote> {
        Vec::new()
    }
}

/// The driver's state.
pub struct Driver<E: NodeEngine> {
    shared: Arc<Shared>,
    engine: E,
    wal: Wal,
    latest: Block,
    net: mpsc::Sender<NetCommand>,
    timers: BTreeMap<TimeoutKind, Instant>,
    committed_since_tick: u64,
    last_summary: Instant,
    view_at_last_event: u64,
    vote_log: Option<std::io::BufWriter<std::fs::File>>,
}

impl<E: NodeEngine> Driver<E> {
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
            state.root() == latest.header.state_root,
            "store is inconsistent: state root {} does not match block {} ({})",
            state.root(),
            latest.height(),
            latest.header.state_root
        );
        *shared.state_mut() = state;
        let (wal, records) = Wal::open(store.clone())?;
        let cfg = E::config(&shared.genesis, shared.me)?;
        let mut recent_blocks = Vec::new();
        for h in Restored::recent_heights(&records, latest.height(), cfg.params.watermark_window) {
            if let Some(b) = store.block(Height(h))? {
                recent_blocks.push(b);
            }
        }
        let engine = E::restore(
            cfg,
            key,
            Restored {
                records,
                last_executed: latest.height(),
                last_block_hash: latest.hash(),
                recent_blocks,
            },
        );
        let view = engine.status().view;
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
            vote_log: None,
        })
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
        for v in E::votes(message) {
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
        mut events: mpsc::Receiver<NetEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        self.publish_status();
        self.step(Input::Start)?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
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
                _ = self.shared.new_txs() => self.on_new_txs()?,
                _ = sleep, if next_timer.is_some() => self.fire_timers()?,
                _ = tick.tick() => self.on_tick(),
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
            NetEvent::Consensus { from, bytes } => {
                match phalanx_crypto::decode::<E::Message>(&bytes) {
                    Ok(message) => self.step(Input::Message { from, message })?,
                    Err(_) => self.shared.metrics.dropped(DropReason::MalformedConsensus),
                }
            }
            NetEvent::Txs(bytes) => {
                // Decoding and signature checks run beside the loop, never in
                // it: consensus messages queued behind a pushed batch must not
                // wait for its verification (at n = 16 on two cores that wait
                // starved the primary). The task wakes the loop when done.
                let shared = self.shared.clone();
                tokio::spawn(async move {
                    match phalanx_crypto::decode::<Vec<SignedTransaction>>(&bytes) {
                        Ok(txs) if txs.len() <= MAX_PUSHED_BATCH => {
                            shared.metrics.pushed_txs_received.inc_by(txs.len() as u64);
                            let verdicts = shared.clone().verify(txs.clone()).await;
                            for (tx, (hash, ok)) in txs.into_iter().zip(verdicts) {
                                let _ = shared.insert_verified(tx, hash, ok);
                            }
                            shared.wake_driver();
                        }
                        _ => shared.metrics.dropped(DropReason::MalformedTxBatch),
                    }
                });
            }
            NetEvent::SyncBlocks(blocks) => self.step(Input::SyncBlocks(blocks))?,
            NetEvent::Peers(peers) => {
                let before = self.shared.status().peers;
                if peers.iter().any(|p| !before.contains(p)) {
                    // A peer (re)connected: it may hold blocks we missed
                    // (the engine verifies whatever comes back).
                    let from = self.latest.height().next();
                    let _ = self.net.try_send(NetCommand::Sync { from });
                }
                self.shared.metrics.peers.set(peers.len() as i64);
                self.shared.set_status(|s| s.peers = peers);
            }
            NetEvent::Dropped(reason) => self.shared.metrics.dropped(reason),
        }
        Ok(())
    }

    fn on_new_txs(&mut self) -> anyhow::Result<()> {
        let outbox = self.shared.take_outbox();
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
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let outputs = self.engine.handle(now_ms(), input);
            for output in outputs {
                self.carry_out(output, &mut inputs)?;
            }
            // Anything persisted is on disk before this step returns.
            self.wal.flush()?;
        }
        Ok(())
    }

    fn carry_out(
        &mut self,
        output: Output<E::Message>,
        inputs: &mut VecDeque<Input<E::Message>>,
    ) -> anyhow::Result<()> {
        match output {
            Output::Persist(record) => self.wal.push(&record),
            Output::Send { to, message } => {
                // Save before send: flush every pending record first.
                self.wal.flush()?;
                self.log_votes(&message)?;
                let bytes = Arc::new(phalanx_crypto::encode(&message));
                let _ = self.net.try_send(NetCommand::Send { to, bytes });
            }
            Output::Broadcast(message) => {
                self.wal.flush()?;
                self.log_votes(&message)?;
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
                let (height, hash) = self.execute(payload, justification)?;
                inputs.push_back(Input::BlockExecuted {
                    height,
                    block_hash: hash,
                });
            }
            Output::Evidence(evidence) => {
                if self.shared.store.put_evidence(&evidence)? {
                    self.shared.metrics.evidence.inc();
                    tracing::warn!(
                        offender = evidence.offender().0,
                        "equivocation evidence recorded"
                    );
                }
            }
            Output::RequestSync { from } => {
                let _ = self.net.try_send(NetCommand::Sync { from });
            }
            Output::ViewChanged { view, primary } => {
                if view != self.view_at_last_event {
                    self.view_at_last_event = view;
                    self.shared.metrics.view_changes.inc();
                }
                tracing::info!(view, primary = primary.0, "entered view");
            }
        }
        Ok(())
    }

    /// Executes a committed payload and stores the block, receipts and state
    /// in one synced write.
    fn execute(
        &mut self,
        payload: Payload,
        justification: Justification,
    ) -> anyhow::Result<(Height, Hash)> {
        let fee_to = self.shared.genesis.fee_recipient(payload.proposer);
        let proposed_at = payload.timestamp_ms;
        let executed = execute(
            &self.shared.state(),
            &payload,
            &fee_to,
            &CachedCheck(&self.shared),
        );
        let block = make_block(
            payload,
            self.latest.hash(),
            executed.diff.root,
            justification,
        );
        self.shared
            .store
            .append_block(&block, &executed.receipts, &executed.diff)?;
        self.shared.state_mut().apply(&executed.diff);
        for e in &block.evidence {
            if self.shared.store.put_evidence(e)? {
                self.shared.metrics.evidence.inc();
            }
        }
        {
            let state = self.shared.state();
            self.shared
                .mempool
                .on_commit(&block.txs, |a| state.account(a).copied());
        }
        let m = &self.shared.metrics;
        m.height.set(block.height().0 as i64);
        m.committed_txs.inc_by(block.txs.len() as u64);
        if proposed_at > 0 {
            m.round_duration
                .observe(now_ms().saturating_sub(proposed_at) as f64 / 1000.0);
        }
        self.committed_since_tick += block.txs.len() as u64;
        let (height, hash) = (block.height(), block.hash());
        self.shared.commits.push(crate::shared::CommitRecord {
            height: height.0,
            block_hash: hash,
            proposed_at_ms: proposed_at,
            committed_at_ms: now_ms(),
            tx_hashes: block.txs.iter().map(SignedTransaction::hash).collect(),
        });
        self.latest = block;
        self.publish_status();
        Ok((height, hash))
    }

    fn publish_status(&self) {
        let st = self.engine.status();
        let mempool = self.shared.mempool.len();
        let (height, hash) = (self.latest.height().0, self.latest.hash());
        self.shared.metrics.view.set(st.view as i64);
        self.shared.set_status(|s| {
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
        let shared = &self.shared;
        let again = shared.resend.due(now_ms(), |h| shared.mempool.get(h));
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
            let status = self.shared.status();
            tracing::info!(
                height = self.latest.height().0,
                view = st.view,
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
