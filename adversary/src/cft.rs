//! Misbehaviour of a validator running the crash-fault-tolerant baseline.
//! The CFT engine believes every correctly signed message, so a leader that
//! signs two different entries for one index makes its followers commit
//! different blocks: the fork the crash-vs-Byzantine comparison shows.

//!
//! The simulator draws no Byzantine validators for the baseline (it
//! assumes crash faults), so its simulated adversary passes everything on.

use crate::{flip, second_half, to_each, Adversarial, Adversary, Behaviour, Ctx, Strategy};
use phalanx_consensus::cft::messages::CftBody;
use phalanx_consensus::{Cft, CftMessage, Config};
use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::{Payload, ValidatorIndex};
use std::collections::VecDeque;

/// Messages kept for stale replays.
const HISTORY: usize = 128;

impl Adversarial for Cft {
    fn simulated(
        _cfg: Config,
        _key: Keypair,
        _strategies: Vec<Strategy>,
        _genesis_hash: Hash,
    ) -> Box<dyn Adversary<CftMessage>> {
        Box::new(PassThrough)
    }

    fn injected(
        behaviour: Behaviour,
        cfg: &Config,
        key: &Keypair,
    ) -> Option<Box<dyn Adversary<CftMessage>>> {
        let key = Keypair::from_seed(key.seed());
        let me = cfg.me;
        let chain_id = cfg.chain_id.clone();
        let others: Vec<ValidatorIndex> = (0..cfg.n() as u32)
            .map(ValidatorIndex)
            .filter(|v| *v != me)
            .collect();
        match behaviour {
            Behaviour::Equivocate => Some(Box::new(Equivocate {
                key,
                chain_id,
                others,
            })),
            Behaviour::BadSig => Some(Box::new(BadSig)),
            Behaviour::StaleReplay => Some(Box::new(StaleReplay {
                history: VecDeque::new(),
                others,
                turn: 0,
            })),
            _ => None,
        }
    }
}

/// Sends what the engine sends.
#[derive(Debug)]
struct PassThrough;

impl Adversary<CftMessage> for PassThrough {
    fn outgoing(
        &mut self,
        _ctx: &mut Ctx<'_>,
        message: CftMessage,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, CftMessage)> {
        to_each(&message, dests)
    }
}

/// The other version of an entry: one transaction fewer (or, for an empty
/// entry, another timestamp). A pure function of the entry, so a resent
/// AppendEntries carries the same lie as the first.
pub fn variant(p: &Payload) -> Payload {
    let mut q = p.clone();
    if q.txs.pop().is_none() {
        q.timestamp_ms += 1;
    }
    q
}

/// Leader: the honest entries to the first half of the followers, re-signed
/// variants to the second half. Follower: grants every vote it is asked for.
struct Equivocate {
    key: Keypair,
    chain_id: String,
    others: Vec<ValidatorIndex>,
}

impl Adversary<CftMessage> for Equivocate {
    fn outgoing(
        &mut self,
        ctx: &mut Ctx<'_>,
        message: CftMessage,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, CftMessage)> {
        match &message.body {
            CftBody::AppendEntries(ae) if !ae.entries.is_empty() => dests
                .into_iter()
                .map(|to| {
                    if second_half(&self.others, to) {
                        let mut lie = ae.clone();
                        lie.entries = ae.entries.iter().map(variant).collect();
                        ctx.stats.equivocations += 1;
                        let body = CftBody::AppendEntries(lie);
                        (to, CftMessage::sign(body, &self.chain_id, &self.key))
                    } else {
                        (to, message.clone())
                    }
                })
                .collect(),
            CftBody::Vote(v) if !v.granted => {
                let mut yes = v.clone();
                yes.granted = true;
                ctx.stats.conflicting_votes += 1;
                let m = CftMessage::sign(CftBody::Vote(yes), &self.chain_id, &self.key);
                to_each(&m, dests)
            }
            _ => to_each(&message, dests),
        }
    }
}

/// Every message goes out with one signature bit flipped.
struct BadSig;

impl Adversary<CftMessage> for BadSig {
    fn outgoing(
        &mut self,
        ctx: &mut Ctx<'_>,
        mut message: CftMessage,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, CftMessage)> {
        flip(&mut message.signature);
        ctx.stats.bad_signatures += dests.len() as u64;
        to_each(&message, dests)
    }
}

/// Sends what the engine sends, and keeps resending old messages.
struct StaleReplay {
    history: VecDeque<(u64, CftMessage)>,
    others: Vec<ValidatorIndex>,
    turn: usize,
}

impl Adversary<CftMessage> for StaleReplay {
    fn outgoing(
        &mut self,
        ctx: &mut Ctx<'_>,
        message: CftMessage,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, CftMessage)> {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((ctx.now, message.clone()));
        to_each(&message, dests)
    }

    fn wants_ticks(&self) -> bool {
        true
    }

    fn tick(&mut self, ctx: &mut Ctx<'_>, term: u64) -> Vec<(ValidatorIndex, CftMessage)> {
        let now_ms = ctx.now;
        let stale: Vec<&CftMessage> = self
            .history
            .iter()
            .filter(|(at, m)| m.body.term() < term || at + 1_000 < now_ms)
            .map(|(_, m)| m)
            .collect();
        if stale.is_empty() || self.others.is_empty() {
            return Vec::new();
        }
        self.turn = self.turn.wrapping_add(1);
        let m = stale[self.turn % stale.len()].clone();
        let to = self.others[self.turn % self.others.len()];
        ctx.stats.stale_replays += 1;
        vec![(to, m)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{injected, AdversaryStats, Collusion, Rng};
    use phalanx_consensus::cft::messages::{AppendEntries, VoteReply};
    use phalanx_ledger::Height;

    /// Runs `f` with a node's own context.
    fn with_ctx<T>(stats: &mut AdversaryStats, f: impl FnOnce(&mut Ctx<'_>) -> T) -> T {
        let (mut rng, mut collusion) = (Rng::new(0), Collusion::default());
        f(&mut Ctx {
            rng: &mut rng,
            collusion: &mut collusion,
            stats,
            now: 0,
        })
    }

    fn setup(n: usize) -> (Config, Vec<Keypair>) {
        let keys: Vec<Keypair> = (0..n)
            .map(|i| Keypair::from_label(&format!("cft-behaviour-{i}")))
            .collect();
        let cfg = Config::cft(
            "cft-test",
            keys.iter().map(Keypair::public).collect(),
            ValidatorIndex(0),
            phalanx_ledger::ConsensusParams::default(),
        )
        .unwrap();
        (cfg, keys)
    }

    fn append(cfg: &Config, key: &Keypair) -> CftMessage {
        let entry = Payload {
            chain_id: cfg.chain_id.clone(),
            height: Height(1),
            round: 1,
            proposer: ValidatorIndex(0),
            timestamp_ms: 5,
            txs: Vec::new(),
            evidence: Vec::new(),
        };
        CftMessage::sign(
            CftBody::AppendEntries(AppendEntries {
                term: 1,
                leader: ValidatorIndex(0),
                prev_log_index: Height(0),
                prev_log_term: 0,
                entries: vec![entry],
                leader_commit: Height(0),
            }),
            &cfg.chain_id,
            key,
        )
    }

    #[test]
    fn an_equivocating_leader_sends_another_validly_signed_entry_to_half_the_followers() {
        let (cfg, keys) = setup(5);
        let mut m = injected::<Cft>(Behaviour::Equivocate, &cfg, &keys[0]).unwrap();
        let mut stats = AdversaryStats::default();
        let honest = append(&cfg, &keys[0]);
        let mut sent = Vec::new();
        // The engine sends AppendEntries to each follower separately.
        for to in 1..5 {
            sent.extend(with_ctx(&mut stats, |c| {
                m.outgoing(c, honest.clone(), vec![ValidatorIndex(to)])
            }));
        }
        for (_, msg) in &sent {
            msg.verify(&cfg).expect("re-signed with its own key");
        }
        let lied: Vec<u32> = sent
            .iter()
            .filter(|(_, msg)| *msg != honest)
            .map(|(to, _)| to.0)
            .collect();
        assert_eq!(lied, vec![3, 4]);
        assert_eq!(stats.equivocations, 2);
        // A resend carries the same lie.
        let again = with_ctx(&mut stats, |c| {
            m.outgoing(c, honest.clone(), vec![ValidatorIndex(4)])
        });
        assert_eq!(again[0].1, sent[3].1);
    }

    #[test]
    fn an_equivocating_follower_grants_every_vote() {
        let (cfg, keys) = setup(3);
        let mut m = injected::<Cft>(Behaviour::Equivocate, &cfg, &keys[0]).unwrap();
        let no = CftMessage::sign(
            CftBody::Vote(VoteReply {
                term: 2,
                voter: ValidatorIndex(0),
                candidate: ValidatorIndex(2),
                granted: false,
            }),
            &cfg.chain_id,
            &keys[0],
        );
        let mut stats = AdversaryStats::default();
        let out = with_ctx(&mut stats, |c| m.outgoing(c, no, vec![ValidatorIndex(2)]));
        let CftBody::Vote(v) = &out[0].1.body else {
            panic!()
        };
        assert!(v.granted);
        out[0].1.verify(&cfg).unwrap();
    }

    #[test]
    fn bad_sig_messages_fail_verification() {
        let (cfg, keys) = setup(3);
        let mut m = injected::<Cft>(Behaviour::BadSig, &cfg, &keys[0]).unwrap();
        let mut stats = AdversaryStats::default();
        let out = with_ctx(&mut stats, |c| {
            m.outgoing(c, append(&cfg, &keys[0]), vec![ValidatorIndex(1)])
        });
        assert!(out[0].1.verify(&cfg).is_err());
    }
}
