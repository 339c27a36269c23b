//! What the simulator needs to know about an engine's wire messages, so the
//! same world loop, network, crashes, workload and checkers run PBFT and the
//! crash-fault-tolerant baseline alike.
//!
//! The world is generic over the message type `M` of the engine under test.
//! Each protocol says how to build its configuration and engines, what an
//! honest sender promises in a message (checked for save-before-send and
//! for never promising two different things, across restarts), and how a
//! message enters the trace. Byzantine wrappers exist for PBFT only: the
//! CFT baseline assumes crash faults, and its scenarios draw none.

use super::adversary::{Adversary, AdversaryStats, Collusion};
use super::checkers::{own_votes, short, Safety, ViolationKind};
use super::node::{EngineFactory, Node};
use super::rng::Rng;
use super::trace;
use phalanx_consensus::cft::messages::{CftBody, CftMessage};
use phalanx_consensus::{Config, ConfigError, PbftMessage};
use phalanx_crypto::Hash;
use phalanx_ledger::{Genesis, ValidatorIndex};
use std::sync::Arc;

/// Which engine a schedule runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SimConsensus {
    /// PBFT: n ≥ 3f+1, Byzantine validators allowed.
    #[default]
    Pbft,
    /// The Raft-style baseline: n ≥ 2f+1, crash faults only.
    Cft,
}

impl SimConsensus {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SimConsensus::Pbft => "pbft",
            SimConsensus::Cft => "cft",
        }
    }

    /// The fewest validators a schedule may have.
    pub fn min_validators(self) -> usize {
        match self {
            SimConsensus::Pbft => 4,
            SimConsensus::Cft => 3,
        }
    }

    /// The quorum a commit needs with `n` validators, computed here rather
    /// than read from the engine under test: ⌈(n+f+1)/2⌉ for PBFT (2f+1
    /// when n = 3f+1), a majority for CFT.
    pub fn quorum(self, n: usize) -> usize {
        match self {
            SimConsensus::Pbft => (n + self.max_faulty(n) + 1).div_ceil(2),
            SimConsensus::Cft => n / 2 + 1,
        }
    }

    /// Faulty validators tolerated with `n` (Byzantine for PBFT, crashed
    /// for CFT).
    pub fn max_faulty(self, n: usize) -> usize {
        match self {
            SimConsensus::Pbft => n.saturating_sub(1) / 3,
            SimConsensus::Cft => n.saturating_sub(1) / 2,
        }
    }
}

/// A problem found in one message an honest node sends.
pub type SendProblem = (ViolationKind, String);

/// An engine's wire message, as the simulator sees it.
pub trait SimMessage:
    Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned + 'static
{
    /// Which engine speaks it.
    const CONSENSUS: SimConsensus;

    /// The engine configuration of validator `me`.
    fn config(genesis: &Genesis, me: ValidatorIndex) -> Result<Config, ConfigError>;

    /// The shipped engine.
    fn factory() -> EngineFactory<Self>;

    /// Checks what honest node `index` promises by sending `message`: each
    /// promise persisted before it is sent, and none contradicting one it
    /// sent before (in this life or an earlier one).
    fn check_send(
        index: usize,
        node: &Node<Self>,
        safety: &mut Safety,
        message: &Self,
    ) -> Vec<SendProblem>;

    /// The trace identity: kind tag, view, seq, signer and signature prefix.
    fn fingerprint(&self) -> (u8, u64, u64, u64, u64);

    /// One readable line.
    fn describe(&self) -> String;

    /// A Byzantine validator's rewrite of what its engine sends.
    fn byzantine_outgoing(
        adversary: &mut Adversary,
        rng: &mut Rng,
        collusion: &mut Collusion,
        stats: &mut AdversaryStats,
        now: u64,
        message: Self,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, Self)>;

    /// What a Byzantine validator learns from a message it receives.
    fn byzantine_incoming(adversary: &mut Adversary, now: u64, message: &Self);

    /// Messages a Byzantine validator invents on its own clock tick.
    fn byzantine_tick(
        adversary: &mut Adversary,
        rng: &mut Rng,
        stats: &mut AdversaryStats,
        now: u64,
        view: u64,
        genesis_hash: Hash,
    ) -> Vec<(ValidatorIndex, Self)>;
}

impl SimMessage for PbftMessage {
    const CONSENSUS: SimConsensus = SimConsensus::Pbft;

    fn config(genesis: &Genesis, me: ValidatorIndex) -> Result<Config, ConfigError> {
        Config::from_genesis(genesis, me)
    }

    fn factory() -> EngineFactory<Self> {
        Arc::new(|cfg, key, restored| {
            Box::new(phalanx_consensus::Pbft::restore(cfg, key, restored))
        })
    }

    fn check_send(
        index: usize,
        node: &Node<Self>,
        safety: &mut Safety,
        message: &Self,
    ) -> Vec<SendProblem> {
        let me = node.validator();
        let cfg = &node.cfg;
        let mut problems = Vec::new();
        for v in own_votes(me, |view| cfg.primary(view), message) {
            let key = (v.vote.kind, v.vote.view, v.vote.seq, v.vote.digest);
            if !node.persisted_votes.contains(&key) {
                problems.push((
                    ViolationKind::SendBeforePersist,
                    format!(
                        "node {index} sent {:?} view {} seq {} before persisting it",
                        v.vote.kind, v.vote.view, v.vote.seq
                    ),
                ));
            }
            if let Some(d) = safety.on_vote_sent(&v) {
                problems.push((ViolationKind::DoubleSign, d));
            }
        }
        if let PbftMessage::ViewChange(vc) = message {
            if vc.body.voter == me && !node.persisted_views.contains(&vc.body.new_view) {
                problems.push((
                    ViolationKind::SendBeforePersist,
                    format!(
                        "node {index} sent VIEW-CHANGE to view {} before persisting the view",
                        vc.body.new_view
                    ),
                ));
            }
        }
        problems
    }

    fn fingerprint(&self) -> (u8, u64, u64, u64, u64) {
        trace::fingerprint(self)
    }

    fn describe(&self) -> String {
        trace::describe(self)
    }

    fn byzantine_outgoing(
        adversary: &mut Adversary,
        rng: &mut Rng,
        collusion: &mut Collusion,
        stats: &mut AdversaryStats,
        now: u64,
        message: Self,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, Self)> {
        adversary.outgoing(rng, collusion, stats, now, message, dests)
    }

    fn byzantine_incoming(adversary: &mut Adversary, now: u64, message: &Self) {
        adversary.incoming(now, message);
    }

    fn byzantine_tick(
        adversary: &mut Adversary,
        rng: &mut Rng,
        stats: &mut AdversaryStats,
        now: u64,
        view: u64,
        genesis_hash: Hash,
    ) -> Vec<(ValidatorIndex, Self)> {
        adversary.tick(rng, stats, now, view, genesis_hash)
    }
}

impl SimMessage for CftMessage {
    const CONSENSUS: SimConsensus = SimConsensus::Cft;

    fn config(genesis: &Genesis, me: ValidatorIndex) -> Result<Config, ConfigError> {
        Config::from_genesis_cft(genesis, me)
    }

    fn factory() -> EngineFactory<Self> {
        Arc::new(|cfg, key, restored| Box::new(phalanx_consensus::Cft::restore(cfg, key, restored)))
    }

    /// Raft's promises (§5.2, §5.3): a vote granted in a term is the only
    /// one in that term and its `votedFor` is on disk first; an entry a
    /// leader sends for (term, index) is the only one it sends there and is
    /// in its own log on disk first.
    fn check_send(
        index: usize,
        node: &Node<Self>,
        safety: &mut Safety,
        message: &Self,
    ) -> Vec<SendProblem> {
        let me = node.validator();
        let mut problems = Vec::new();
        match &message.body {
            CftBody::Vote(v) if v.voter == me && v.granted => {
                if !node.persisted_hard.contains(&(v.term, Some(v.candidate))) {
                    problems.push((
                        ViolationKind::SendBeforePersist,
                        format!(
                            "node {index} granted its term-{} vote before persisting it",
                            v.term
                        ),
                    ));
                }
                let candidate = Hash::digest(&v.candidate.0.to_le_bytes());
                if let Some(prev) = safety.on_promise(me, "vote", v.term, 0, candidate) {
                    problems.push((
                        ViolationKind::DoubleSign,
                        format!(
                            "validator {me} voted twice in term {} ({} then candidate {})",
                            v.term,
                            short(&prev),
                            v.candidate
                        ),
                    ));
                }
            }
            CftBody::AppendEntries(a) if a.leader == me => {
                for (k, payload) in a.entries.iter().enumerate() {
                    let height = a.prev_log_index.0 + 1 + k as u64;
                    let digest = payload.digest();
                    if !node.persisted_entries.contains(&(height, digest)) {
                        problems.push((
                            ViolationKind::SendBeforePersist,
                            format!(
                                "node {index} sent entry {height} of term {} before persisting it",
                                a.term
                            ),
                        ));
                    }
                    if let Some(prev) = safety.on_promise(me, "entry", a.term, height, digest) {
                        problems.push((
                            ViolationKind::DoubleSign,
                            format!(
                                "leader {me} sent two entries for term {} index {height}: {} and {}",
                                a.term,
                                short(&prev),
                                short(&digest)
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
        problems
    }

    fn fingerprint(&self) -> (u8, u64, u64, u64, u64) {
        let (tag, seq) = match &self.body {
            CftBody::RequestVote(m) => (20, m.last_log_index.0),
            CftBody::Vote(m) => (21, u64::from(m.granted)),
            CftBody::AppendEntries(m) => (22, m.prev_log_index.0),
            CftBody::AppendAck(m) => (23, m.last_index.0),
        };
        let sig = u64::from_le_bytes(self.signature.0[..8].try_into().unwrap_or([0; 8]));
        (
            tag,
            self.body.term(),
            seq,
            u64::from(self.body.sender().0),
            sig,
        )
    }

    fn describe(&self) -> String {
        let by = self.body.sender();
        match &self.body {
            CftBody::RequestVote(m) => format!(
                "request-vote t{} by {by} (last {} t{})",
                m.term, m.last_log_index, m.last_log_term
            ),
            CftBody::Vote(m) => format!(
                "vote t{} by {by} for {}: {}",
                m.term,
                m.candidate,
                if m.granted { "granted" } else { "refused" }
            ),
            CftBody::AppendEntries(m) => format!(
                "append-entries t{} by {by} after {} ({} entries, commit {})",
                m.term,
                m.prev_log_index,
                m.entries.len(),
                m.leader_commit
            ),
            CftBody::AppendAck(m) => format!(
                "append-ack t{} by {by}: {} at {}",
                m.term,
                if m.success { "ok" } else { "refused" },
                m.last_index
            ),
        }
    }

    fn byzantine_outgoing(
        _adversary: &mut Adversary,
        _rng: &mut Rng,
        _collusion: &mut Collusion,
        _stats: &mut AdversaryStats,
        _now: u64,
        message: Self,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, Self)> {
        // CFT scenarios have no Byzantine validators; pass through.
        dests.into_iter().map(|d| (d, message.clone())).collect()
    }

    fn byzantine_incoming(_adversary: &mut Adversary, _now: u64, _message: &Self) {}

    fn byzantine_tick(
        _adversary: &mut Adversary,
        _rng: &mut Rng,
        _stats: &mut AdversaryStats,
        _now: u64,
        _view: u64,
        _genesis_hash: Hash,
    ) -> Vec<(ValidatorIndex, Self)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::SimConsensus;

    #[test]
    fn checker_quorums_are_the_papers() {
        let pbft: Vec<usize> = [4, 5, 6, 7, 10, 16]
            .map(|n| SimConsensus::Pbft.quorum(n))
            .into();
        assert_eq!(pbft, vec![3, 4, 4, 5, 7, 11]);
        let cft: Vec<usize> = [1, 2, 3, 4, 5].map(|n| SimConsensus::Cft.quorum(n)).into();
        assert_eq!(cft, vec![1, 2, 2, 3, 3]);
    }
}
