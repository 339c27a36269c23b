//! Byzantine behaviours and network faults for real nodes, built around the
//! unmodified honest engine (docs/architecture.md, "Fault injection": faults
//! wrap the engine's inputs and outputs or the network, never its code).
//!
//! The driver hands every outgoing consensus message to the network through
//! a channel; [`interpose`] puts a task on that channel that rewrites,
//! withholds, delays or replays what the honest engine sends, according to
//! the node's current [`Behaviour`]. Rewritten messages are re-signed with
//! this validator's own key only. The network task itself blocks peers for
//! partitions (`NetCommand::Block`), so a partition cuts every kind of
//! traffic, not just consensus.
//!
//! This module must never reach into an engine: it only sees the messages
//! an engine emits.

pub mod admin;
mod cft;
pub mod echo;
mod pbft;

use crate::metrics::{Direction, DropReason, MessageKind};
use crate::p2p::NetCommand;
use crate::shared::Shared;
use phalanx_consensus::Config;
use phalanx_crypto::Keypair;
use phalanx_ledger::ValidatorIndex;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How a validator behaves towards its peers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Sends what the honest engine sends.
    #[default]
    Honest,
    /// Sends no consensus messages at all.
    Silent,
    /// PBFT: as primary, different PRE-PREPAREs to two halves of the
    /// validators; as replica, conflicting PREPARE/COMMIT to two halves.
    /// CFT: as leader, different entries to two halves of the followers; as
    /// follower, grants every vote it is asked for.
    Equivocate,
    /// Every consensus message it sends carries an invalid signature.
    BadSig,
    /// Also resends messages it sent earlier (old views, old sequence numbers).
    StaleReplay,
    /// Everything it sends leaves this many milliseconds late.
    Delay(u64),
}

/// The accepted spellings, for error messages and `--help`.
pub const BEHAVIOURS: &str = "honest, silent, equivocate, bad-sig, stale-replay, delay:MS";

impl std::str::FromStr for Behaviour {
    type Err = String;

    fn from_str(s: &str) -> Result<Behaviour, String> {
        let s = s.trim();
        Ok(match s {
            "honest" => Behaviour::Honest,
            "silent" => Behaviour::Silent,
            "equivocate" => Behaviour::Equivocate,
            "bad-sig" => Behaviour::BadSig,
            "stale-replay" => Behaviour::StaleReplay,
            _ => match s.strip_prefix("delay:") {
                Some(ms) => match ms.parse::<u64>() {
                    Ok(ms) if ms <= 60_000 => Behaviour::Delay(ms),
                    _ => {
                        return Err(format!(
                            "behaviour {s:?}: the delay must be a whole number of milliseconds \
                             from 0 to 60000, e.g. delay:200"
                        ))
                    }
                },
                None => {
                    return Err(format!(
                        "unknown behaviour {s:?}; choose one of {BEHAVIOURS}"
                    ))
                }
            },
        })
    }
}

impl std::fmt::Display for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Behaviour::Honest => f.write_str("honest"),
            Behaviour::Silent => f.write_str("silent"),
            Behaviour::Equivocate => f.write_str("equivocate"),
            Behaviour::BadSig => f.write_str("bad-sig"),
            Behaviour::StaleReplay => f.write_str("stale-replay"),
            Behaviour::Delay(ms) => write!(f, "delay:{ms}"),
        }
    }
}

impl Serialize for Behaviour {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Behaviour {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Behaviour, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

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

/// A Byzantine rewrite of one engine's outgoing messages. Implementations
/// re-sign only with this validator's key.
pub trait Mischief<M>: Send {
    /// What goes on the wire when the honest engine sends `message` to
    /// `dests` (each element one message to one validator).
    fn outgoing(
        &mut self,
        now_ms: u64,
        message: M,
        dests: Vec<ValidatorIndex>,
        stats: &mut MischiefStats,
    ) -> Vec<(ValidatorIndex, M)>;

    /// Messages it sends on its own clock (stale replays); `view` is the
    /// engine's current view or term.
    fn tick(
        &mut self,
        _now_ms: u64,
        _view: u64,
        _stats: &mut MischiefStats,
    ) -> Vec<(ValidatorIndex, M)> {
        Vec::new()
    }
}

/// A consensus message type the wrapper can rewrite.
pub trait WireMessage: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The rewrite for `behaviour` (`None` for behaviours that leave
    /// messages as they are: honest, delay).
    fn mischief(
        behaviour: Behaviour,
        cfg: &Config,
        key: &Keypair,
        seed: u64,
    ) -> Option<Box<dyn Mischief<Self>>>;

    /// Whether encoded bytes may be equivocation evidence (a cheap check, so
    /// the honest path does not decode every message it forwards).
    fn is_evidence_bytes(bytes: &[u8]) -> bool;

    /// The validator this message proves faulty, if it is equivocation
    /// evidence (the honest engine only sends evidence it verified).
    fn evidence_offender(&self) -> Option<ValidatorIndex>;

    /// The kind of an encoded message, read from its first byte (postcard
    /// writes the enum's variant index first), so counting what goes out
    /// costs no decoding.
    fn wire_kind(bytes: &[u8]) -> Option<MessageKind>;
}

/// The message rewrite of `behaviour` over an honest engine's output.
pub fn mischief_for<M: WireMessage>(
    behaviour: Behaviour,
    cfg: &Config,
    key: &Keypair,
    seed: u64,
) -> Option<Box<dyn Mischief<M>>> {
    match behaviour {
        Behaviour::Honest | Behaviour::Delay(_) => None,
        Behaviour::Silent => Some(Box::new(Silent)),
        _ => M::mischief(behaviour, cfg, key, seed),
    }
}

/// Withholds everything.
struct Silent;

impl<M> Mischief<M> for Silent {
    fn outgoing(
        &mut self,
        _now_ms: u64,
        _message: M,
        dests: Vec<ValidatorIndex>,
        stats: &mut MischiefStats,
    ) -> Vec<(ValidatorIndex, M)> {
        stats.withheld += dests.len() as u64;
        Vec::new()
    }
}

/// Splits `dests` into a first and a second half, deterministically (the
/// same recipients always land in the same half), each non-empty when
/// there are two or more recipients.
pub fn second_half(dests: &[ValidatorIndex], v: ValidatorIndex) -> bool {
    let mut sorted: Vec<u32> = dests.iter().map(|d| d.0).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let pos = sorted.iter().position(|d| *d == v.0).unwrap_or(0);
    sorted.len() >= 2 && pos >= sorted.len() / 2
}

/// How often a node that replays stale messages does so.
const REPLAY_EVERY: Duration = Duration::from_millis(200);

/// Puts the fault wrapper between the driver and the network: returns the
/// sender the driver should use; what it receives goes on to `net` as the
/// current behaviour makes it.
pub fn interpose<M: WireMessage>(
    control: Arc<FaultControl>,
    shared: Arc<Shared>,
    cfg: Config,
    key: Keypair,
    net: mpsc::Sender<NetCommand>,
) -> mpsc::Sender<NetCommand> {
    let (tx, rx) = mpsc::channel(8192);
    let (late_tx, late_rx) = mpsc::unbounded_channel();
    tokio::spawn(forward_late(late_rx, net.clone()));
    let wrapper = Wrapper::<M> {
        control,
        shared,
        cfg,
        key,
        net,
        late: late_tx,
        current: None,
        installed: Behaviour::Honest,
        generation: 0,
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

struct Wrapper<M: WireMessage> {
    control: Arc<FaultControl>,
    shared: Arc<Shared>,
    cfg: Config,
    key: Keypair,
    net: mpsc::Sender<NetCommand>,
    late: mpsc::UnboundedSender<(Instant, NetCommand)>,
    current: Option<Box<dyn Mischief<M>>>,
    installed: Behaviour,
    generation: u64,
}

impl<M: WireMessage> Wrapper<M> {
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
            let seed = u64::from(self.cfg.me.0) << 32 | self.generation;
            self.current = mischief_for::<M>(now, &self.cfg, &self.key, seed);
            self.installed = now;
            let name = now.to_string();
            self.shared.set_status(|s| s.behaviour = name);
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
                    let kind = M::wire_kind(&bytes);
                    if self.net.try_send(NetCommand::Broadcast(bytes)).is_ok() {
                        self.count_sent(kind, self.cfg.n() as u64 - 1);
                    } else {
                        self.shared.metrics.dropped(DropReason::NetQueueFull);
                    }
                } else {
                    let others = self.others();
                    self.on_consensus(bytes, others);
                }
            }
            other => self.emit(other),
        }
    }

    /// Records offenders of evidence the honest engine sends (it verified it).
    fn note_evidence(&self, bytes: &[u8]) {
        if !M::is_evidence_bytes(bytes) {
            return;
        }
        if let Ok(m) = phalanx_crypto::decode::<M>(bytes) {
            self.note_offender(&m);
        }
    }

    fn note_offender(&self, m: &M) {
        if let Some(offender) = m.evidence_offender() {
            self.shared.set_status(|s| {
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
            phalanx_crypto::decode::<M>(&bytes).ok()
        } else {
            None
        };
        // Honest (or our own bytes failed to decode, which cannot happen):
        // pass them on untouched.
        let Some(message) = decoded else {
            self.note_evidence(&bytes);
            for to in dests {
                self.emit(NetCommand::Send {
                    to,
                    bytes: bytes.clone(),
                });
            }
            return;
        };
        self.note_offender(&message);
        let mut stats = MischiefStats::default();
        let wire = match self.current.as_mut() {
            Some(mischief) => mischief.outgoing(crate::clock::now_ms(), message, dests, &mut stats),
            None => Vec::new(),
        };
        self.control.count(|s| add(s, &stats));
        for (to, m) in wire {
            let bytes = Arc::new(phalanx_crypto::encode(&m));
            self.emit(NetCommand::Send { to, bytes });
        }
    }

    fn on_tick(&mut self) {
        self.refresh();
        let view = self.shared.status().view;
        let Some(mischief) = self.current.as_mut() else {
            return;
        };
        let mut stats = MischiefStats::default();
        let wire = mischief.tick(crate::clock::now_ms(), view, &mut stats);
        self.control.count(|s| add(s, &stats));
        for (to, m) in wire {
            let bytes = Arc::new(phalanx_crypto::encode(&m));
            self.emit(NetCommand::Send { to, bytes });
        }
    }

    /// Sends now, or late when a delay is configured; counts the
    /// consensus messages that leave.
    fn emit(&self, cmd: NetCommand) {
        let kind = match &cmd {
            NetCommand::Send { bytes, .. } => Some(M::wire_kind(bytes)),
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
    }

    fn count_sent(&self, kind: Option<MessageKind>, recipients: u64) {
        if let Some(kind) = kind {
            self.shared
                .metrics
                .consensus_message(Direction::Sent, kind, recipients);
        }
    }
}

fn add(total: &mut MischiefStats, s: &MischiefStats) {
    total.equivocations += s.equivocations;
    total.conflicting_votes += s.conflicting_votes;
    total.withheld += s.withheld;
    total.bad_signatures += s.bad_signatures;
    total.stale_replays += s.stale_replays;
    total.delayed += s.delayed;
}

/// Flips one bit of a signature (deterministically, so tests can tell).
pub fn flip(sig: &mut phalanx_crypto::Signature) {
    sig.0[7] ^= 0x20;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviours_parse_and_print_the_same_way() {
        for s in [
            "honest",
            "silent",
            "equivocate",
            "bad-sig",
            "stale-replay",
            "delay:250",
        ] {
            let b: Behaviour = s.parse().unwrap();
            assert_eq!(b.to_string(), s);
        }
        assert_eq!("delay:0".parse::<Behaviour>(), Ok(Behaviour::Delay(0)));
        let err = "lying".parse::<Behaviour>().unwrap_err();
        assert!(err.contains("honest, silent"), "{err}");
        assert!("delay:".parse::<Behaviour>().is_err());
        assert!("delay:-5".parse::<Behaviour>().is_err());
        assert!("delay:99999999".parse::<Behaviour>().is_err());
    }

    #[test]
    fn halves_are_stable_and_both_non_empty() {
        let d: Vec<ValidatorIndex> = [3, 1, 2].into_iter().map(ValidatorIndex).collect();
        let second: Vec<bool> = d.iter().map(|v| second_half(&d, *v)).collect();
        // Sorted 1, 2, 3: 1 in the first half, 2 and 3 in the second.
        assert_eq!(second, vec![true, false, true]);
        let one = [ValidatorIndex(5)];
        assert!(!second_half(&one, ValidatorIndex(5)));
    }

    #[test]
    fn silent_withholds_everything_and_counts_it() {
        let mut s = Silent;
        let mut stats = MischiefStats::default();
        let out = Mischief::<u8>::outgoing(
            &mut s,
            0,
            7u8,
            vec![ValidatorIndex(1), ValidatorIndex(2)],
            &mut stats,
        );
        assert!(out.is_empty());
        assert_eq!(stats.withheld, 2);
    }
}
