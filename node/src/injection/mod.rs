//! Fault injection on real nodes: the engine's adversary
//! (`phalanx_adversary`) and network faults put around the unmodified
//! honest engine (docs/architecture.md, "Fault injection": faults wrap the
//! engine's inputs and outputs or the network, never its code).
//!
//! The driver hands every outgoing consensus message to the network through
//! a channel; [`interpose`] puts a task on that channel that rewrites,
//! withholds, delays or replays what the honest engine sends, according to
//! the node's current [`Behaviour`] (`--behaviour`). Rewritten messages are re-signed with
//! this validator's own key only. The network task itself blocks peers for
//! partitions (`NetCommand::Block`), so a partition cuts every kind of
//! traffic, not just consensus.
//!
//! This module must never reach into an engine: it only sees the messages
//! an engine emits.

pub mod admin;
pub mod switches;

pub use phalanx_adversary::Behaviour;

use crate::metrics::{Direction, DropReason};
use crate::p2p::NetCommand;
use crate::shared::Shared;
use phalanx_adversary::{injected, Adversarial, Adversary, AdversaryStats, Collusion, Ctx, Rng};
use phalanx_consensus::{Config, Message};
use phalanx_crypto::Keypair;
use phalanx_ledger::ValidatorIndex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the misbehaving wrapper has done so far (`GET /admin/faults`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MischiefStats {
    /// Proposals (PRE-PREPARE, AppendEntries) sent in two versions.
    pub equivocations: u64,
    /// Votes sent in two versions (or granted to every candidate).
    pub conflicting_votes: u64,
    /// Messages withheld.
    pub withheld: u64,
    /// Messages sent with a corrupted signature.
    pub bad_signatures: u64,
    /// Old messages resent.
    pub stale_replays: u64,
    /// Messages sent late.
    pub delayed: u64,
}

/// The fault state of one node, shared by the wrapper, the HTTP admin
/// routes and `/status`.
#[derive(Debug)]
pub struct FaultControl {
    behaviour: Mutex<Behaviour>,
    /// Validators this node refuses to talk to (a partition).
    blocked: Mutex<BTreeSet<u32>>,
    /// Latency the harness added to everything this node sends, ms.
    latency_ms: AtomicU64,
    /// Whether the admin routes may change anything.
    pub allow_injection: bool,
    stats: Mutex<MischiefStats>,
}

impl FaultControl {
    /// A node that starts with `behaviour`.
    pub fn new(behaviour: Behaviour, allow_injection: bool) -> FaultControl {
        FaultControl {
            behaviour: Mutex::new(behaviour),
            blocked: Mutex::new(BTreeSet::new()),
            latency_ms: AtomicU64::new(0),
            allow_injection,
            stats: Mutex::new(MischiefStats::default()),
        }
    }

    /// The current behaviour.
    pub fn behaviour(&self) -> Behaviour {
        *self.behaviour.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Switches behaviour (the harness injects a fault at a chosen moment).
    pub fn set_behaviour(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap_or_else(|e| e.into_inner()) = b;
    }

    /// The blocked validators.
    pub fn blocked(&self) -> BTreeSet<u32> {
        self.blocked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the blocked set.
    pub fn set_blocked(&self, set: BTreeSet<u32>) {
        *self.blocked.lock().unwrap_or_else(|e| e.into_inner()) = set;
    }

    /// Latency added to everything sent, ms.
    pub fn latency_ms(&self) -> u64 {
        self.latency_ms.load(Ordering::Relaxed)
    }

    /// Sets the added latency.
    pub fn set_latency_ms(&self, ms: u64) {
        self.latency_ms.store(ms, Ordering::Relaxed);
    }

    /// What the wrapper did so far.
    pub fn stats(&self) -> MischiefStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn count(&self, f: impl FnOnce(&mut MischiefStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Total delay on outgoing traffic: the behaviour's plus the harness's.
    fn delay(&self) -> Duration {
        let own = match self.behaviour() {
            Behaviour::Delay(ms) => ms,
            _ => 0,
        };
        Duration::from_millis(own.saturating_add(self.latency_ms()))
    }
}

/// How often a node that replays stale messages does so.
const REPLAY_EVERY: Duration = Duration::from_millis(200);

/// Puts the fault wrapper between the driver and the network: returns the
/// sender the driver should use; what it receives goes on to `net` as the
/// current behaviour makes it.
pub fn interpose<E: Adversarial>(
    control: Arc<FaultControl>,
    shared: Arc<Shared>,
    cfg: Config,
    key: Keypair,
    net: mpsc::Sender<NetCommand>,
) -> mpsc::Sender<NetCommand> {
    let (tx, rx) = mpsc::channel(8192);
    let (late_tx, late_rx) = mpsc::unbounded_channel();
    tokio::spawn(forward_late(late_rx, net.clone()));
    let wrapper = Wrapper::<E> {
        control,
        shared,
        cfg,
        key,
        net,
        late: late_tx,
        current: None,
        installed: Behaviour::Honest,
        generation: 0,
        rng: Rng::new(0),
        collusion: Collusion::default(),
    };
    tokio::spawn(wrapper.run(rx));
    tx
}

/// Sends delayed commands in order once due (the delay is one value for
/// all, so arrival order is due order).
async fn forward_late(
    mut late: mpsc::UnboundedReceiver<(Instant, NetCommand)>,
    net: mpsc::Sender<NetCommand>,
) {
    let mut queue: VecDeque<(Instant, NetCommand)> = VecDeque::new();
    loop {
        if let Some((due, _)) = queue.front() {
            let due = *due;
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {
                    while queue.front().is_some_and(|(d, _)| *d <= Instant::now()) {
                        if let Some((_, cmd)) = queue.pop_front() {
                            let _ = net.try_send(cmd);
                        }
                    }
                }
                next = late.recv() => match next {
                    Some(item) => queue.push_back(item),
                    None => return,
                },
            }
        } else {
            match late.recv().await {
                Some(item) => queue.push_back(item),
                None => return,
            }
        }
    }
}

struct Wrapper<E: Adversarial> {
    control: Arc<FaultControl>,
    shared: Arc<Shared>,
    cfg: Config,
    key: Keypair,
    net: mpsc::Sender<NetCommand>,
    late: mpsc::UnboundedSender<(Instant, NetCommand)>,
    current: Option<Box<dyn Adversary<E::Message>>>,
    installed: Behaviour,
    generation: u64,
    /// The adversary's random source (reseeded per behaviour installed).
    rng: Rng,
    /// A lone Byzantine node colludes with nobody.
    collusion: Collusion,
}

impl<E: Adversarial> Wrapper<E> {
    async fn run(mut self, mut commands: mpsc::Receiver<NetCommand>) {
        self.refresh();
        let mut tick = tokio::time::interval(REPLAY_EVERY);
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => return,
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    /// Rebuilds the rewrite when the behaviour changed.
    fn refresh(&mut self) {
        let now = self.control.behaviour();
        if now != self.installed || self.generation == 0 {
            self.generation += 1;
            self.rng = Rng::new(u64::from(self.cfg.me.0) << 32 | self.generation);
            self.current = injected::<E>(now, &self.cfg, &self.key);
            self.installed = now;
            let name = now.to_string();
            self.shared.status.set(|s| s.behaviour = name);
            if now != Behaviour::Honest {
                tracing::warn!(behaviour = %now, "fault injection: this node now misbehaves");
            }
        }
    }

    fn others(&self) -> Vec<ValidatorIndex> {
        (0..self.cfg.n() as u32)
            .map(ValidatorIndex)
            .filter(|v| *v != self.cfg.me)
            .collect()
    }

    fn on_command(&mut self, cmd: NetCommand) {
        self.refresh();
        match cmd {
            NetCommand::Send { to, bytes } => self.on_consensus(bytes, vec![to]),
            NetCommand::Broadcast(bytes) => {
                if self.current.is_none() && self.control.delay().is_zero() {
                    self.note_evidence(&bytes);
                    let kind = E::Message::wire_kind(&bytes);
                    let watched = self.decode_if_watched(&bytes);
                    if self.net.try_send(NetCommand::Broadcast(bytes)).is_ok() {
                        self.count_sent(kind, self.cfg.n() as u64 - 1);
                        self.watch_sent(None, watched.as_ref(), Duration::ZERO);
                    } else {
                        self.shared.metrics.dropped(DropReason::NetQueueFull);
                    }
                } else {
                    let others = self.others();
                    self.on_consensus(bytes, others);
                }
            }
            other => {
                self.emit(other);
            }
        }
    }

    /// Records offenders of evidence the honest engine sends (it verified it).
    fn note_evidence(&self, bytes: &[u8]) {
        if E::Message::wire_kind(bytes) != Some("evidence") {
            return;
        }
        if let Ok(m) = phalanx_crypto::decode::<E::Message>(bytes) {
            self.note_offender(&m);
        }
    }

    fn note_offender(&self, m: &E::Message) {
        if let Some(offender) = m.evidence_offender() {
            self.shared.status.set(|s| {
                if !s.faulty_peers.contains(&offender.0) {
                    s.faulty_peers.push(offender.0);
                    s.faulty_peers.sort_unstable();
                    tracing::warn!(
                        offender = offender.0,
                        "validator proven faulty (equivocation): its messages are ignored"
                    );
                }
            });
        }
    }

    fn on_consensus(&mut self, bytes: Arc<Vec<u8>>, dests: Vec<ValidatorIndex>) {
        let decoded = if self.current.is_some() {
            phalanx_crypto::decode::<E::Message>(&bytes).ok()
        } else {
            None
        };
        // Honest (or our own bytes failed to decode, which cannot happen):
        // pass them on untouched.
        let Some(message) = decoded else {
            self.note_evidence(&bytes);
            let watched = self.decode_if_watched(&bytes);
            for to in dests {
                self.emit_message(to, bytes.clone(), watched.as_ref());
            }
            return;
        };
        self.note_offender(&message);
        let mut stats = AdversaryStats::default();
        let wire = match self.current.as_mut() {
            Some(adversary) => {
                let mut ctx = Ctx {
                    rng: &mut self.rng,
                    collusion: &mut self.collusion,
                    stats: &mut stats,
                    now: crate::clock::now_ms(),
                };
                adversary.outgoing(&mut ctx, message, dests)
            }
            None => Vec::new(),
        };
        self.control.count(|s| add(s, &stats));
        for (to, m) in wire {
            let bytes = Arc::new(phalanx_crypto::encode(&m));
            self.emit_message(to, bytes, Some(&m));
        }
    }

    fn on_tick(&mut self) {
        self.refresh();
        let view = self.shared.status.get().view;
        let Some(adversary) = self.current.as_mut().filter(|a| a.wants_ticks()) else {
            return;
        };
        let mut stats = AdversaryStats::default();
        let mut ctx = Ctx {
            rng: &mut self.rng,
            collusion: &mut self.collusion,
            stats: &mut stats,
            now: crate::clock::now_ms(),
        };
        let wire = adversary.tick(&mut ctx, view);
        self.control.count(|s| add(s, &stats));
        for (to, m) in wire {
            let bytes = Arc::new(phalanx_crypto::encode(&m));
            self.emit_message(to, bytes, Some(&m));
        }
    }

    /// The message, decoded, if somebody watches the node (the live page
    /// sees what really leaves it, after any rewrite).
    fn decode_if_watched(&self, bytes: &[u8]) -> Option<E::Message> {
        if self.shared.watch.watched() {
            phalanx_crypto::decode::<E::Message>(bytes).ok()
        } else {
            None
        }
    }

    /// Tells watchers about a consensus message that leaves (`to: None`:
    /// to every other validator), `delay` from now.
    fn watch_sent(
        &self,
        to: Option<ValidatorIndex>,
        message: Option<&E::Message>,
        delay: Duration,
    ) {
        let Some(message) = message.filter(|_| self.shared.watch.watched()) else {
            return;
        };
        let s = message.summary();
        if !self.shared.watch.samples(s.kind, s.seq) {
            return;
        }
        self.shared.watch.record(|| crate::watch::WatchEvent::Msg {
            t: crate::clock::now_ms() + delay.as_millis() as u64,
            from: self.cfg.me.0,
            to: to.map(|v| v.0),
            kind: s.kind,
            view: s.view,
            seq: s.seq,
            signer: s.signer.0,
            digest: s
                .digest
                .map_or_else(String::new, |d| hex::encode(&d.0[..4])),
        });
    }

    /// [`Wrapper::emit`] of a consensus message to one validator; `known`
    /// is the message, if decoded (for watchers).
    fn emit_message(&self, to: ValidatorIndex, bytes: Arc<Vec<u8>>, known: Option<&E::Message>) {
        let decoded = if known.is_none() {
            self.decode_if_watched(&bytes)
        } else {
            None
        };
        if self.emit(NetCommand::Send { to, bytes }) {
            self.watch_sent(Some(to), known.or(decoded.as_ref()), self.control.delay());
        }
    }

    /// Sends now, or late when a delay is configured; counts the
    /// consensus messages that leave. Whether it was handed over.
    fn emit(&self, cmd: NetCommand) -> bool {
        let kind = match &cmd {
            NetCommand::Send { bytes, .. } => Some(E::Message::wire_kind(bytes)),
            _ => None,
        };
        let delay = self.control.delay();
        let handed_over = if delay.is_zero() {
            self.net.try_send(cmd).is_ok()
        } else {
            self.control.count(|s| s.delayed += 1);
            self.late.send((Instant::now() + delay, cmd)).is_ok()
        };
        match kind {
            Some(kind) if handed_over => self.count_sent(kind, 1),
            Some(_) => self.shared.metrics.dropped(DropReason::NetQueueFull),
            None => {}
        }
        handed_over
    }

    fn count_sent(&self, kind: Option<&'static str>, recipients: u64) {
        if let Some(kind) = kind {
            self.shared
                .metrics
                .consensus_message(Direction::Sent, kind, recipients);
        }
    }
}

/// Adds what the adversary did to the node's counters.
fn add(total: &mut MischiefStats, s: &AdversaryStats) {
    total.equivocations += s.equivocations;
    total.conflicting_votes += s.conflicting_votes;
    total.withheld += s.withheld;
    total.bad_signatures += s.bad_signatures;
    total.stale_replays += s.stale_replays;
}
