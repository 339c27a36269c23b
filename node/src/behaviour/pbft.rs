//! PBFT misbehaviour on real nodes. Equivocation and stale replays are the
//! simulator's [`Adversary`] (the same code the simulator's thousands of
//! hostile schedules run), fed the node's outgoing messages; invalid
//! signatures corrupt every message rather than the simulator's random
//! share, so a `bad-sig` node is as useless to its peers as a silent one,
//! only noisier.

use super::{flip, Behaviour, Mischief, MischiefStats, WireMessage};
use crate::metrics::MessageKind;
use phalanx_consensus::{Config, PbftMessage};
use phalanx_crypto::Keypair;
use phalanx_ledger::ValidatorIndex;
use phalanx_testnet::sim::adversary::{Adversary, AdversaryStats, Collusion};
use phalanx_testnet::sim::rng::Rng;
use phalanx_testnet::sim::scenario::Behaviour as SimBehaviour;

/// postcard's tag of `PbftMessage::Evidence` (the enum's seventh variant).
const EVIDENCE_TAG: u8 = 6;

impl WireMessage for PbftMessage {
    fn mischief(
        behaviour: Behaviour,
        cfg: &Config,
        key: &Keypair,
        seed: u64,
    ) -> Option<Box<dyn Mischief<PbftMessage>>> {
        let key = Keypair::from_seed(key.seed());
        let sim = match behaviour {
            Behaviour::Equivocate => vec![SimBehaviour::Equivocate, SimBehaviour::ConflictingVotes],
            Behaviour::StaleReplay => vec![SimBehaviour::StaleReplay],
            Behaviour::BadSig => return Some(Box::new(BadSig)),
            _ => return None,
        };
        Some(Box::new(SimAdversary {
            adversary: Adversary::new(cfg.clone(), key, sim),
            rng: Rng::new(seed),
            collusion: Collusion::default(),
            genesis: cfg.chain_id.clone(),
        }))
    }

    fn is_evidence_bytes(bytes: &[u8]) -> bool {
        bytes.first() == Some(&EVIDENCE_TAG)
    }

    fn evidence_offender(&self) -> Option<ValidatorIndex> {
        match self {
            PbftMessage::Evidence(e) => Some(e.offender()),
            _ => None,
        }
    }

    fn wire_kind(bytes: &[u8]) -> Option<MessageKind> {
        Some(match *bytes.first()? {
            0 => MessageKind::PrePrepare,
            1 => MessageKind::Prepare,
            2 => MessageKind::Commit,
            3 => MessageKind::Checkpoint,
            4 => MessageKind::ViewChange,
            5 => MessageKind::NewView,
            EVIDENCE_TAG => MessageKind::Evidence,
            7 => MessageKind::Complaint,
            _ => return None,
        })
    }
}

/// The simulator's adversary around this node's engine.
struct SimAdversary {
    adversary: Adversary,
    rng: Rng,
    collusion: Collusion,
    genesis: String,
}

fn count(stats: &mut MischiefStats, a: &AdversaryStats) {
    stats.equivocations += a.equivocations;
    stats.conflicting_votes += a.conflicting_votes;
    stats.withheld += a.withheld;
    stats.bad_signatures += a.bad_signatures;
    stats.stale_replays += a.stale_replays;
}

impl Mischief<PbftMessage> for SimAdversary {
    fn outgoing(
        &mut self,
        now_ms: u64,
        message: PbftMessage,
        dests: Vec<ValidatorIndex>,
        stats: &mut MischiefStats,
    ) -> Vec<(ValidatorIndex, PbftMessage)> {
        let mut a = AdversaryStats::default();
        let wire = self.adversary.outgoing(
            &mut self.rng,
            &mut self.collusion,
            &mut a,
            now_ms,
            message,
            dests,
        );
        count(stats, &a);
        wire
    }

    fn tick(
        &mut self,
        now_ms: u64,
        view: u64,
        stats: &mut MischiefStats,
    ) -> Vec<(ValidatorIndex, PbftMessage)> {
        if !self.adversary.wants_ticks() {
            return Vec::new();
        }
        // The adversary replays messages older than 100 ms of its clock or
        // from an older view; the genesis hash only matters for forged view
        // changes, which a node never asks for.
        let genesis_hash = phalanx_crypto::Hash::digest(self.genesis.as_bytes());
        let mut a = AdversaryStats::default();
        let wire = self
            .adversary
            .tick(&mut self.rng, &mut a, now_ms, view, genesis_hash);
        count(stats, &a);
        wire
    }
}

/// Every message goes out with one signature bit flipped.
struct BadSig;

impl Mischief<PbftMessage> for BadSig {
    fn outgoing(
        &mut self,
        _now_ms: u64,
        mut message: PbftMessage,
        dests: Vec<ValidatorIndex>,
        stats: &mut MischiefStats,
    ) -> Vec<(ValidatorIndex, PbftMessage)> {
        match &mut message {
            PbftMessage::PrePrepare(pp) => flip(&mut pp.vote.signature),
            PbftMessage::Prepare(v) | PbftMessage::Commit(v) | PbftMessage::Checkpoint(v) => {
                flip(&mut v.signature)
            }
            PbftMessage::ViewChange(vc) => flip(&mut vc.signature),
            PbftMessage::NewView(nv) => flip(&mut nv.signature),
            // Evidence carries other validators' signatures: corrupting it
            // only makes peers drop it, which they would do anyway.
            PbftMessage::Evidence(e) => flip(&mut e.second.signature),
            PbftMessage::Complaint(c) => flip(&mut c.signature),
        }
        stats.bad_signatures += dests.len() as u64;
        dests.into_iter().map(|d| (d, message.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_consensus::pbft::messages::PrePrepare;
    use phalanx_ledger::{Evidence, Height, Payload, Vote, VoteKind};

    fn cfg(n: usize, me: u32) -> (Config, Vec<Keypair>) {
        let keys: Vec<Keypair> = (0..n)
            .map(|i| Keypair::from_label(&format!("behaviour-test-{i}")))
            .collect();
        let cfg = Config::pbft(
            "test-chain",
            keys.iter().map(Keypair::public).collect(),
            ValidatorIndex(me),
            phalanx_ledger::ConsensusParams::default(),
        )
        .unwrap();
        (cfg, keys)
    }

    fn pre_prepare(cfg: &Config, key: &Keypair, seq: u64) -> PbftMessage {
        let payload = Payload {
            chain_id: cfg.chain_id.clone(),
            height: Height(seq),
            round: 0,
            proposer: cfg.me,
            timestamp_ms: 1_000,
            txs: Vec::new(),
            evidence: Vec::new(),
        };
        let vote = Vote {
            kind: VoteKind::PrePrepare,
            view: 0,
            seq: Height(seq),
            digest: payload.digest(),
            voter: cfg.me,
        }
        .sign(&cfg.chain_id, key);
        PbftMessage::PrePrepare(PrePrepare { vote, payload })
    }

    fn others(n: u32, me: u32) -> Vec<ValidatorIndex> {
        (0..n).filter(|i| *i != me).map(ValidatorIndex).collect()
    }

    #[test]
    fn an_equivocating_primary_sends_two_validly_signed_proposals() {
        let (cfg, keys) = cfg(4, 0);
        let mut m =
            PbftMessage::mischief(Behaviour::Equivocate, &cfg, &keys[0], 7).expect("a rewrite");
        let mut stats = MischiefStats::default();
        let wire = m.outgoing(5, pre_prepare(&cfg, &keys[0], 1), others(4, 0), &mut stats);
        assert_eq!(wire.len(), 3);
        let digests: std::collections::BTreeSet<_> = wire
            .iter()
            .map(|(_, m)| match m {
                PbftMessage::PrePrepare(pp) => {
                    // Re-signed with its own key only: every version verifies.
                    pp.vote
                        .verify(&cfg.chain_id, &keys[0].public())
                        .expect("valid signature");
                    assert_eq!(pp.payload.digest(), pp.vote.vote.digest);
                    pp.vote.vote.digest
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(digests.len(), 2, "two versions to two halves");
        assert_eq!(stats.equivocations, 1);
    }

    #[test]
    fn bad_sig_corrupts_every_message() {
        let (cfg, keys) = cfg(4, 0);
        let mut m = PbftMessage::mischief(Behaviour::BadSig, &cfg, &keys[0], 1).unwrap();
        let mut stats = MischiefStats::default();
        let wire = m.outgoing(0, pre_prepare(&cfg, &keys[0], 1), others(4, 0), &mut stats);
        assert_eq!(wire.len(), 3);
        for (_, msg) in wire {
            let PbftMessage::PrePrepare(pp) = msg else {
                panic!()
            };
            assert!(pp.vote.verify(&cfg.chain_id, &keys[0].public()).is_err());
        }
        assert_eq!(stats.bad_signatures, 3);
    }

    #[test]
    fn stale_replay_resends_what_it_sent_before() {
        let (cfg, keys) = cfg(4, 1);
        let mut m = PbftMessage::mischief(Behaviour::StaleReplay, &cfg, &keys[1], 3).unwrap();
        let mut stats = MischiefStats::default();
        let msg = pre_prepare(&cfg, &keys[1], 1);
        // Sent unchanged.
        let wire = m.outgoing(10, msg.clone(), others(4, 1), &mut stats);
        assert!(wire.iter().all(|(_, w)| *w == msg));
        // Seconds later, in a later view, it comes back.
        let replays = m.tick(5_000, 2, &mut stats);
        assert!(!replays.is_empty());
        assert!(replays.iter().all(|(to, w)| *w == msg && to.0 != 1));
        assert_eq!(stats.stale_replays, replays.len() as u64);
    }

    #[test]
    fn the_evidence_tag_is_the_evidence_variant() {
        let (cfg, keys) = cfg(4, 0);
        let PbftMessage::PrePrepare(a) = pre_prepare(&cfg, &keys[0], 1) else {
            panic!()
        };
        let e = PbftMessage::Evidence(Evidence {
            first: a.vote,
            second: a.vote,
        });
        let bytes = phalanx_crypto::encode(&e);
        assert!(PbftMessage::is_evidence_bytes(&bytes));
        assert_eq!(e.evidence_offender(), Some(ValidatorIndex(0)));
        let pp = phalanx_crypto::encode(&pre_prepare(&cfg, &keys[0], 1));
        assert!(!PbftMessage::is_evidence_bytes(&pp));
    }
}
