//! Catching an equivocating PBFT primary: PRE-PREPARE echo.
//!
//! An equivocating primary sends one PRE-PREPARE to half the replicas and
//! another to the other half. PBFT stays safe (neither version gathers a
//! quorum, a view change follows), but no honest replica holds both signed
//! proposals, so nobody can prove what happened and the primary is never
//! marked faulty. Measured on real nodes, not one piece of evidence came out
//! of it.
//!
//! So each honest node, outside the engine, echoes the primary's signed
//! PRE-PREPARE *vote* (about 150 bytes, no payload) to the other validators
//! once per (view, seq). The echo travels as `PbftMessage::Evidence` with
//! both halves equal, which an engine would reject as invalid, but it never
//! reaches one: the receiving node's echo task consumes it and compares it
//! with the PRE-PREPARE vote it saw itself. Two votes of the primary for one
//! slot with different digests are real evidence, which the task hands to
//! the engine like any evidence message from a peer; the engine verifies
//! both signatures, marks the primary faulty, gossips the evidence, puts it
//! into a block and leaves the view. The cost is n−1 small messages per
//! block per replica.

use crate::metrics::{Direction, DropReason};
use crate::p2p::{NetCommand, NetEvent};
use crate::shared::Shared;
use phalanx_consensus::{Config, PbftMessage};
use phalanx_ledger::{Evidence, Height, SignedVote, ValidatorIndex, VoteKind};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// postcard's tag of `PbftMessage::PrePrepare` (the first variant).
const PRE_PREPARE_TAG: u8 = 0;
/// postcard's tag of `PbftMessage::Evidence`.
const EVIDENCE_TAG: u8 = 6;
/// Slots remembered (the oldest are forgotten first).
const REMEMBERED: usize = 4096;
/// The metrics label of an echo.
pub const ECHO_KIND: &str = "pre_prepare_echo";

/// What the echo task decides about one incoming message.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Hand it to the engine unchanged.
    Forward,
    /// Hand it to the engine and echo this vote to the other validators.
    ForwardAndEcho(SignedVote),
    /// An echo: consumed here.
    Consume,
}

/// The primary PRE-PREPARE votes one node has seen, per slot.
#[derive(Debug)]
pub struct EchoState {
    cfg: Config,
    seen: BTreeMap<(u64, Height), SignedVote>,
}

impl EchoState {
    /// Nothing seen yet.
    pub fn new(cfg: Config) -> EchoState {
        EchoState {
            cfg,
            seen: BTreeMap::new(),
        }
    }

    fn valid(&self, v: &SignedVote) -> bool {
        v.vote.kind == VoteKind::PrePrepare
            && v.vote.voter == self.cfg.primary(v.vote.view)
            && self
                .cfg
                .key(v.vote.voter)
                .is_some_and(|k| v.verify(&self.cfg.chain_id, k).is_ok())
    }

    /// Records `vote`; returns evidence if it conflicts with a vote seen before.
    pub fn observe(&mut self, vote: SignedVote) -> Option<Evidence> {
        let slot = (vote.vote.view, vote.vote.seq);
        match self.seen.get(&slot) {
            Some(first) if first.vote.digest != vote.vote.digest => {
                // Only now pay for signature checks: both must verify for
                // this to be evidence (a forged echo must not block the
                // slot, so an invalid first one is replaced).
                if !self.valid(&vote) {
                    return None;
                }
                if !self.valid(first) {
                    self.seen.insert(slot, vote);
                    return None;
                }
                Some(Evidence {
                    first: *first,
                    second: vote,
                })
            }
            Some(_) => None,
            None => {
                if vote.vote.voter == self.cfg.primary(vote.vote.view) {
                    self.seen.insert(slot, vote);
                    while self.seen.len() > REMEMBERED {
                        self.seen.pop_first();
                    }
                }
                None
            }
        }
    }

    /// Looks at one incoming consensus message; `found` receives evidence.
    pub fn on_message(&mut self, bytes: &[u8], found: &mut Vec<Evidence>) -> Verdict {
        match bytes.first() {
            Some(&PRE_PREPARE_TAG) => {
                // The signed vote is the first field of the PRE-PREPARE:
                // read it without decoding the (large) payload.
                let Ok((vote, _)) = postcard::take_from_bytes::<SignedVote>(&bytes[1..]) else {
                    return Verdict::Forward;
                };
                let first_time = !self.seen.contains_key(&(vote.vote.view, vote.vote.seq));
                found.extend(self.observe(vote));
                if first_time && vote.vote.voter == self.cfg.primary(vote.vote.view) {
                    Verdict::ForwardAndEcho(vote)
                } else {
                    Verdict::Forward
                }
            }
            Some(&EVIDENCE_TAG) => match phalanx_crypto::decode::<PbftMessage>(bytes) {
                Ok(PbftMessage::Evidence(e)) if e.first == e.second => {
                    found.extend(self.observe(e.first));
                    Verdict::Consume
                }
                _ => Verdict::Forward,
            },
            _ => Verdict::Forward,
        }
    }
}

/// The echo message for `vote`.
pub fn echo_bytes(vote: SignedVote) -> Arc<Vec<u8>> {
    Arc::new(phalanx_crypto::encode(&PbftMessage::Evidence(Evidence {
        first: vote,
        second: vote,
    })))
}

/// Puts the echo task between the network's events and the driver. Echoes
/// sent and consumed here are counted as `pre_prepare_echo` messages; the
/// driver counts everything else it hands to the engine, including the
/// evidence an echo reveals (as `evidence` received from the echo's sender).
pub fn interpose(
    cfg: Config,
    shared: Arc<Shared>,
    net: mpsc::Sender<NetCommand>,
    mut from_net: mpsc::Receiver<NetEvent>,
) -> mpsc::Receiver<NetEvent> {
    let (tx, rx) = mpsc::channel(8192);
    shared.metrics.message_kinds(&[ECHO_KIND]);
    tokio::spawn(async move {
        let me = cfg.me;
        let n = cfg.n() as u32;
        let mut state = EchoState::new(cfg);
        let mut found = Vec::new();
        while let Some(event) = from_net.recv().await {
            let NetEvent::Consensus { from, bytes } = event else {
                if tx.send(event).await.is_err() {
                    return;
                }
                continue;
            };
            let verdict = state.on_message(&bytes, &mut found);
            if let Verdict::ForwardAndEcho(vote) = &verdict {
                let echo = echo_bytes(*vote);
                for to in (0..n)
                    .map(ValidatorIndex)
                    .filter(|v| *v != me && *v != from)
                {
                    let cmd = NetCommand::Send {
                        to,
                        bytes: echo.clone(),
                    };
                    if net.try_send(cmd).is_ok() {
                        shared
                            .metrics
                            .consensus_message(Direction::Sent, ECHO_KIND, 1);
                    } else {
                        shared.metrics.dropped(DropReason::NetQueueFull);
                    }
                }
            }
            if verdict == Verdict::Consume {
                shared
                    .metrics
                    .consensus_message(Direction::Received, ECHO_KIND, 1);
            }
            if verdict != Verdict::Consume
                && tx.send(NetEvent::Consensus { from, bytes }).await.is_err()
            {
                return;
            }
            for e in found.drain(..) {
                tracing::warn!(
                    offender = e.offender().0,
                    view = e.first.vote.view,
                    seq = e.first.vote.seq.0,
                    "the primary signed two PRE-PREPAREs for one slot (caught by echo)"
                );
                let bytes = phalanx_crypto::encode(&PbftMessage::Evidence(e));
                if tx.send(NetEvent::Consensus { from, bytes }).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_consensus::pbft::messages::PrePrepare;
    use phalanx_crypto::{Hash, Keypair};
    use phalanx_ledger::{Payload, Vote};

    fn setup() -> (Config, Vec<Keypair>) {
        let keys: Vec<Keypair> = (0..4)
            .map(|i| Keypair::from_label(&format!("echo-{i}")))
            .collect();
        let cfg = Config::pbft(
            "echo-chain",
            keys.iter().map(Keypair::public).collect(),
            ValidatorIndex(2),
            phalanx_ledger::ConsensusParams::default(),
        )
        .unwrap();
        (cfg, keys)
    }

    fn pp(cfg: &Config, key: &Keypair, ts: u64) -> (Vec<u8>, SignedVote) {
        let payload = Payload {
            chain_id: cfg.chain_id.clone(),
            height: Height(1),
            round: 0,
            proposer: ValidatorIndex(0),
            timestamp_ms: ts,
            txs: Vec::new(),
            evidence: Vec::new(),
        };
        let vote = Vote {
            kind: VoteKind::PrePrepare,
            view: 0,
            seq: Height(1),
            digest: payload.digest(),
            voter: ValidatorIndex(0),
        }
        .sign(&cfg.chain_id, key);
        let m = PbftMessage::PrePrepare(PrePrepare { vote, payload });
        (phalanx_crypto::encode(&m), vote)
    }

    #[test]
    fn an_echo_of_another_proposal_for_the_slot_is_evidence() {
        let (cfg, keys) = setup();
        let mut s = EchoState::new(cfg.clone());
        let mut found = Vec::new();
        let (mine, my_vote) = pp(&cfg, &keys[0], 1);
        assert_eq!(
            s.on_message(&mine, &mut found),
            Verdict::ForwardAndEcho(my_vote)
        );
        // The same proposal again: nothing new.
        assert_eq!(s.on_message(&mine, &mut found), Verdict::Forward);
        // A peer echoes what the primary told it.
        let (_, other_vote) = pp(&cfg, &keys[0], 2);
        assert_eq!(
            s.on_message(&echo_bytes(other_vote), &mut found),
            Verdict::Consume
        );
        assert_eq!(found.len(), 1);
        let e = &found[0];
        assert_eq!(e.offender(), ValidatorIndex(0));
        assert!(e.verify(&cfg.chain_id, &cfg.validators).is_ok());
    }

    #[test]
    fn matching_echoes_and_forgeries_are_not_evidence() {
        let (cfg, keys) = setup();
        let mut s = EchoState::new(cfg.clone());
        let mut found = Vec::new();
        let (mine, vote) = pp(&cfg, &keys[0], 1);
        s.on_message(&mine, &mut found);
        assert_eq!(
            s.on_message(&echo_bytes(vote), &mut found),
            Verdict::Consume
        );
        // A replica cannot frame the primary: a vote it signed itself, or
        // one with a broken signature, is no evidence.
        let (_, mut forged) = pp(&cfg, &keys[3], 2);
        s.on_message(&echo_bytes(forged), &mut found);
        forged.vote.voter = ValidatorIndex(0);
        forged.vote.digest = Hash([9; 32]);
        s.on_message(&echo_bytes(forged), &mut found);
        assert!(found.is_empty());
    }
}
