//! PBFT's adversary: equivocating proposals, conflicting votes, withheld
//! and corrupted messages, stale replays, forged view changes, tampered
//! catch-up answers — each a rewrite of what the honest engine sends.

mod flood;
mod forge;

use crate::{flip, to_each, Adversarial, Adversary, Behaviour, Ctx, Rng, SilentMode, Strategy};
use phalanx_consensus::pbft::messages::{PrePrepare, ViewChange};
use phalanx_consensus::{Config, Pbft, PbftMessage};
use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::{Block, Height, Justification, Payload, SignedVote, ValidatorIndex, Vote};
use std::collections::VecDeque;

/// Recorded messages kept for stale replays.
const HISTORY: usize = 256;

/// One simulated Byzantine PBFT validator.
#[derive(Debug)]
pub struct PbftAdversary {
    me: ValidatorIndex,
    behaviours: Vec<Strategy>,
    key: Keypair,
    cfg: Config,
    genesis_hash: Hash,
    history: VecDeque<(u64, PbftMessage)>,
    /// The highest sequence number seen in a proposal or vote, so that a
    /// forged proposal names a slot that is still open.
    highest_seq: Height,
    /// When a `Flood` validator starts sending evidence against itself
    /// (drawn on its first tick).
    flood_evidence_from_ms: Option<u64>,
}

/// A proposal's or vote's sequence number.
fn seq_of(m: &PbftMessage) -> u64 {
    match m {
        PbftMessage::PrePrepare(pp) => pp.vote.vote.seq.0,
        PbftMessage::Prepare(v) | PbftMessage::Commit(v) => v.vote.seq.0,
        _ => 0,
    }
}

/// A message's view, for deciding what is stale.
fn view_of(m: &PbftMessage) -> u64 {
    match m {
        PbftMessage::PrePrepare(pp) => pp.vote.vote.view,
        PbftMessage::Prepare(v) | PbftMessage::Commit(v) | PbftMessage::Checkpoint(v) => {
            v.vote.view
        }
        PbftMessage::ViewChange(vc) => vc.body.new_view,
        PbftMessage::NewView(nv) => nv.view,
        PbftMessage::Evidence(e) => e.first.vote.view,
        PbftMessage::Complaint(c) => c.view,
        PbftMessage::Echo(v) => v.vote.view,
    }
}

impl PbftAdversary {
    /// The adversary of validator `cfg.me` with these strategies.
    pub fn new(cfg: Config, key: Keypair, behaviours: Vec<Strategy>, genesis_hash: Hash) -> Self {
        PbftAdversary {
            me: cfg.me,
            behaviours,
            key,
            cfg,
            genesis_hash,
            history: VecDeque::new(),
            highest_seq: Height::GENESIS,
            flood_evidence_from_ms: None,
        }
    }

    fn has(&self, want: impl Fn(&Strategy) -> bool) -> bool {
        self.behaviours.iter().any(want)
    }

    fn remember(&mut self, now: u64, m: &PbftMessage) {
        if self.has(|b| *b == Strategy::StaleReplay) {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back((now, m.clone()));
        }
    }

    fn sign(&self, vote: Vote) -> SignedVote {
        vote.sign(&self.cfg.chain_id, &self.key)
    }

    /// Rewrites one message the honest engine sends to `dests` into what
    /// actually goes on the wire.
    fn rewrite(
        &mut self,
        ctx: &mut Ctx<'_>,
        message: PbftMessage,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, PbftMessage)> {
        self.remember(ctx.now, &message);
        let mut wire: Vec<(ValidatorIndex, PbftMessage)> = to_each(&message, dests);
        let behaviours = self.behaviours.clone();
        for b in &behaviours {
            wire = match b {
                Strategy::ForgedViewChange => self.forge(ctx, wire),
                Strategy::Equivocate => self.equivocate(ctx, wire),
                Strategy::ConflictingVotes => self.conflict(ctx, wire),
                Strategy::BadSig => self.corrupt(ctx, wire),
                Strategy::Silent(mode) => {
                    let before = wire.len();
                    wire.retain(|(to, m)| match mode {
                        SilentMode::All => false,
                        SilentMode::Towards(set) => !set.contains(to),
                        SilentMode::Commits => {
                            !matches!(m, PbftMessage::Commit(_) | PbftMessage::Checkpoint(_))
                        }
                        SilentMode::Random => ctx.rng.chance(0.5),
                    });
                    ctx.stats.withheld += (before - wire.len()) as u64;
                    wire
                }
                Strategy::Flood => {
                    for (_, m) in wire.iter_mut() {
                        if let Some(bad) = self.flood_rewrite(ctx, m) {
                            *m = bad;
                        }
                    }
                    wire
                }
                Strategy::StaleReplay | Strategy::BadSync => wire,
            };
        }
        wire
    }

    /// Splits recipients into two halves (each non-empty when there are two or more).
    fn halves(rng: &mut Rng, wire: &[(ValidatorIndex, PbftMessage)]) -> Vec<bool> {
        let len = wire.len();
        let mut second: Vec<bool> = (0..len).map(|_| rng.chance(0.5)).collect();
        if len >= 2 {
            if second.iter().all(|s| *s) {
                second[rng.index(len)] = false;
            }
            if second.iter().all(|s| !*s) {
                second[rng.index(len)] = true;
            }
        }
        second
    }

    /// Equivocating primary: the honest PRE-PREPARE to one half, a re-signed
    /// variant (other transactions or timestamp) to the other.
    fn equivocate(
        &self,
        ctx: &mut Ctx<'_>,
        mut wire: Vec<(ValidatorIndex, PbftMessage)>,
    ) -> Vec<(ValidatorIndex, PbftMessage)> {
        let Some((_, PbftMessage::PrePrepare(pp))) = wire.first() else {
            return wire;
        };
        if pp.vote.vote.voter != self.me || wire.len() < 2 {
            return wire;
        }
        let payload = variant_payload(ctx.rng, &pp.payload);
        let vote = self.sign(Vote {
            digest: payload.digest(),
            ..pp.vote.vote
        });
        ctx.collusion
            .propose(vote.vote.view, vote.vote.seq, vote.vote.digest);
        let variant = PbftMessage::PrePrepare(PrePrepare { vote, payload });
        let split = Self::halves(ctx.rng, &wire);
        for ((_, m), second) in wire.iter_mut().zip(split) {
            if second {
                *m = variant.clone();
            }
        }
        ctx.stats.equivocations += 1;
        wire
    }

    /// Conflicting votes: the honest vote to one half, a re-signed vote for
    /// another digest (a colluding primary's variant if there is one) to the other.
    fn conflict(
        &self,
        ctx: &mut Ctx<'_>,
        mut wire: Vec<(ValidatorIndex, PbftMessage)>,
    ) -> Vec<(ValidatorIndex, PbftMessage)> {
        let Some((_, first)) = wire.first() else {
            return wire;
        };
        let (vote, wrap): (SignedVote, fn(SignedVote) -> PbftMessage) = match first {
            PbftMessage::Prepare(v) => (*v, PbftMessage::Prepare),
            PbftMessage::Commit(v) => (*v, PbftMessage::Commit),
            PbftMessage::Checkpoint(v) => (*v, PbftMessage::Checkpoint),
            _ => return wire,
        };
        if vote.vote.voter != self.me || wire.len() < 2 {
            return wire;
        }
        let digest = ctx
            .collusion
            .other(vote.vote.view, vote.vote.seq, vote.vote.digest)
            .unwrap_or_else(|| Hash(ctx.rng.bytes32()));
        let other = wrap(self.sign(Vote {
            digest,
            ..vote.vote
        }));
        let split = Self::halves(ctx.rng, &wire);
        for ((_, m), second) in wire.iter_mut().zip(split) {
            if second {
                *m = other.clone();
            }
        }
        ctx.stats.conflicting_votes += 1;
        wire
    }

    /// Bad signatures: some messages go out with a flipped signature bit or
    /// a false signer, sometimes followed by the genuine message.
    fn corrupt(
        &self,
        ctx: &mut Ctx<'_>,
        wire: Vec<(ValidatorIndex, PbftMessage)>,
    ) -> Vec<(ValidatorIndex, PbftMessage)> {
        let mut out = Vec::with_capacity(wire.len() + 1);
        for (to, m) in wire {
            if !ctx.rng.chance(0.4) {
                out.push((to, m));
                continue;
            }
            let impostor = ValidatorIndex(ctx.rng.index(self.cfg.n()) as u32);
            let bad = corrupt_message(ctx.rng, &m, impostor);
            ctx.stats.bad_signatures += 1;
            out.push((to, bad));
            if ctx.rng.chance(0.5) {
                out.push((to, m));
            }
        }
        out
    }

    /// Forged view changes: rewrite the engine's own VIEW-CHANGE or NEW-VIEW
    /// and re-sign it; the forgery goes to everyone or to one half.
    fn forge(
        &self,
        ctx: &mut Ctx<'_>,
        mut wire: Vec<(ValidatorIndex, PbftMessage)>,
    ) -> Vec<(ValidatorIndex, PbftMessage)> {
        let forged = match wire.first() {
            Some((_, PbftMessage::ViewChange(vc))) if vc.body.voter == self.me => {
                ctx.stats.forged_view_changes += 1;
                PbftMessage::ViewChange(forge::view_change(ctx.rng, &self.cfg, &self.key, vc))
            }
            Some((_, PbftMessage::NewView(nv))) if self.cfg.primary(nv.view) == self.me => {
                ctx.stats.forged_new_views += 1;
                PbftMessage::NewView(forge::new_view(ctx.rng, &self.cfg, &self.key, nv))
            }
            _ => return wire,
        };
        let everyone = ctx.rng.chance(0.5);
        let split = Self::halves(ctx.rng, &wire);
        for ((_, m), second) in wire.iter_mut().zip(split) {
            if everyone || second {
                *m = forged.clone();
            }
        }
        wire
    }

    /// Acts on its own clock: replays recorded messages from earlier views,
    /// and invents VIEW-CHANGEs for views ahead (valid in form, alone short
    /// of the f+1 needed to pull anyone along).
    fn on_tick(
        &mut self,
        ctx: &mut Ctx<'_>,
        current_view: u64,
    ) -> Vec<(ValidatorIndex, PbftMessage)> {
        let (rng, stats, now) = (&mut *ctx.rng, &mut *ctx.stats, ctx.now);
        let genesis_hash = self.genesis_hash;
        let mut out = Vec::new();
        let peers: Vec<ValidatorIndex> = (0..self.cfg.n() as u32)
            .map(ValidatorIndex)
            .filter(|v| *v != self.me)
            .collect();
        if self.has(|b| *b == Strategy::StaleReplay) && !self.history.is_empty() {
            let stale: Vec<usize> = (0..self.history.len())
                .filter(|i| {
                    view_of(&self.history[*i].1) < current_view || self.history[*i].0 + 100 < now
                })
                .collect();
            for _ in 0..rng.range(1, 3) {
                if stale.is_empty() {
                    break;
                }
                let (_, m) = &self.history[*rng.pick(&stale)];
                let to = *rng.pick(&peers);
                out.push((to, m.clone()));
                stats.stale_replays += 1;
            }
        }
        if self.has(|b| *b == Strategy::ForgedViewChange) && rng.chance(0.2) {
            let body = phalanx_consensus::pbft::messages::ViewChangeBody {
                new_view: current_view + 1 + rng.below(4),
                stable_seq: Height::GENESIS,
                stable_digest: genesis_hash,
                checkpoint_proof: Vec::new(),
                prepared: Vec::new(),
                committed: Vec::new(),
                voter: self.me,
            };
            let vc = PbftMessage::ViewChange(ViewChange::sign(body, &self.cfg.chain_id, &self.key));
            stats.forged_view_changes += 1;
            out.extend(peers.iter().map(|p| (*p, vc.clone())));
        }
        if self.has(|b| *b == Strategy::Flood) {
            for m in self.flood_tick(ctx, current_view, &peers) {
                out.extend(peers.iter().map(|p| (*p, m.clone())));
            }
        }
        out
    }

    /// Answers a catch-up request: `None` to stay silent, or the blocks to
    /// send (tampered with, for a `BadSync` validator).
    fn answer_sync(&self, ctx: &mut Ctx<'_>, mut blocks: Vec<Block>) -> Option<Vec<Block>> {
        let (rng, stats) = (&mut *ctx.rng, &mut *ctx.stats);
        if self.has(|b| *b == Strategy::Silent(SilentMode::All)) {
            return None;
        }
        if !self.has(|b| *b == Strategy::BadSync) || blocks.is_empty() || rng.chance(0.2) {
            return Some(blocks);
        }
        stats.bad_sync += 1;
        let i = rng.index(blocks.len().min(2));
        let other_cert = blocks.iter().find_map(|b| match &b.justification {
            Justification::Pbft(c) if c.seq != blocks[i].height() => Some(c.clone()),
            _ => None,
        });
        let block = &mut blocks[i];
        match (rng.below(4), &mut block.justification) {
            // Change a transaction (or the timestamp) under a genuine certificate.
            (0, _) => match block.txs.first_mut() {
                Some(tx) => tx.tx.amount += 1,
                None => block.header.timestamp_ms += 1,
            },
            // Corrupt a signature of the certificate.
            (1, Justification::Pbft(cert)) if !cert.commits.is_empty() => {
                cert.commits[0].1 .0[0] ^= 1;
            }
            // Keep fewer signatures than a quorum.
            (2, Justification::Pbft(cert)) => {
                cert.commits.truncate(self.cfg.quorums.quorum - 1);
            }
            // Another height's certificate.
            _ => match other_cert {
                Some(c) => block.justification = Justification::Pbft(c),
                None => block.header.timestamp_ms += 1,
            },
        }
        Some(blocks)
    }
}

/// Another payload for the same slot: other transactions or another timestamp.
fn variant_payload(rng: &mut Rng, p: &Payload) -> Payload {
    let mut q = p.clone();
    match rng.below(3) {
        0 if !q.txs.is_empty() => {
            q.txs.pop();
        }
        1 if q.txs.len() >= 2 => q.txs.reverse(),
        _ => q.timestamp_ms += 1 + rng.below(1_000),
    }
    q
}

fn flip_random(rng: &mut Rng, sig: &mut phalanx_crypto::Signature) {
    sig.0[rng.index(64)] ^= 1 << rng.below(8);
}

/// A copy of `m` that must fail verification: a flipped signature bit, or
/// (for votes and view changes) another validator named as the signer.
fn corrupt_message(rng: &mut Rng, m: &PbftMessage, impostor: ValidatorIndex) -> PbftMessage {
    let mut m = m.clone();
    let impersonate = rng.chance(0.3);
    match &mut m {
        PbftMessage::PrePrepare(pp) => {
            if impersonate && pp.vote.vote.voter != impostor {
                pp.vote.vote.voter = impostor;
            } else {
                flip_random(rng, &mut pp.vote.signature);
            }
        }
        PbftMessage::Prepare(v) | PbftMessage::Commit(v) | PbftMessage::Checkpoint(v) => {
            if impersonate && v.vote.voter != impostor {
                v.vote.voter = impostor;
            } else {
                flip_random(rng, &mut v.signature);
            }
        }
        PbftMessage::ViewChange(vc) => {
            if impersonate && vc.body.voter != impostor {
                vc.body.voter = impostor;
            } else {
                flip_random(rng, &mut vc.signature);
            }
        }
        PbftMessage::NewView(nv) => flip_random(rng, &mut nv.signature),
        PbftMessage::Evidence(e) => flip_random(rng, &mut e.second.signature),
        PbftMessage::Complaint(c) => {
            if impersonate && c.voter != impostor {
                c.voter = impostor;
            } else {
                flip_random(rng, &mut c.signature);
            }
        }
        PbftMessage::Echo(v) => flip_random(rng, &mut v.signature),
    }
    m
}

impl Adversary<PbftMessage> for PbftAdversary {
    fn outgoing(
        &mut self,
        ctx: &mut Ctx<'_>,
        message: PbftMessage,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, PbftMessage)> {
        self.rewrite(ctx, message, dests)
    }

    /// Recorded for later replay; the highest slot in use noted.
    fn incoming(&mut self, now: u64, message: &PbftMessage) {
        if let PbftMessage::PrePrepare(_) | PbftMessage::Prepare(_) | PbftMessage::Commit(_) =
            message
        {
            self.highest_seq = self.highest_seq.max(Height(seq_of(message)));
        }
        self.remember(now, message);
    }

    /// Replays and invented view changes.
    fn wants_ticks(&self) -> bool {
        self.has(|b| {
            matches!(
                b,
                Strategy::StaleReplay | Strategy::ForgedViewChange | Strategy::Flood
            )
        })
    }

    fn tick(&mut self, ctx: &mut Ctx<'_>, view: u64) -> Vec<(ValidatorIndex, PbftMessage)> {
        self.on_tick(ctx, view)
    }

    fn serve_sync(&mut self, ctx: &mut Ctx<'_>, blocks: Vec<Block>) -> Option<Vec<Block>> {
        self.answer_sync(ctx, blocks)
    }
}

/// A fault-injected node's `bad-sig`: every message goes out with one
/// signature bit flipped (not the simulator's random share), so a `bad-sig`
/// node is as useless to its peers as a silent one, only noisier.
#[derive(Debug)]
struct BadSigAll;

impl Adversary<PbftMessage> for BadSigAll {
    fn outgoing(
        &mut self,
        ctx: &mut Ctx<'_>,
        mut message: PbftMessage,
        dests: Vec<ValidatorIndex>,
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
            PbftMessage::Echo(v) => flip(&mut v.signature),
        }
        ctx.stats.bad_signatures += dests.len() as u64;
        to_each(&message, dests)
    }
}

impl Adversarial for Pbft {
    fn simulated(
        cfg: Config,
        key: Keypair,
        strategies: Vec<Strategy>,
        genesis_hash: Hash,
    ) -> Box<dyn Adversary<PbftMessage>> {
        Box::new(PbftAdversary::new(cfg, key, strategies, genesis_hash))
    }

    /// Equivocation and stale replays are the simulator's adversary (the
    /// code the simulator's thousands of hostile schedules run), fed the
    /// node's outgoing messages.
    fn injected(
        behaviour: Behaviour,
        cfg: &Config,
        key: &Keypair,
    ) -> Option<Box<dyn Adversary<PbftMessage>>> {
        let strategies = match behaviour {
            Behaviour::Equivocate => vec![Strategy::Equivocate, Strategy::ConflictingVotes],
            Behaviour::StaleReplay => vec![Strategy::StaleReplay],
            Behaviour::BadSig => return Some(Box::new(BadSigAll)),
            _ => return None,
        };
        // A node never forges view changes, the one thing the genesis hash
        // anchors.
        let anchor = Hash::digest(cfg.chain_id.as_bytes());
        Some(Box::new(PbftAdversary::new(
            cfg.clone(),
            Keypair::from_seed(key.seed()),
            strategies,
            anchor,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{injected, AdversaryStats, Collusion};
    use phalanx_ledger::VoteKind;

    /// A node's own generator and collusion, as a fault-injected node has.
    struct Own {
        rng: Rng,
        collusion: Collusion,
        stats: AdversaryStats,
    }

    impl Own {
        fn new(seed: u64) -> Own {
            Own {
                rng: Rng::new(seed),
                collusion: Collusion::default(),
                stats: AdversaryStats::default(),
            }
        }

        fn ctx(&mut self, now: u64) -> Ctx<'_> {
            Ctx {
                rng: &mut self.rng,
                collusion: &mut self.collusion,
                stats: &mut self.stats,
                now,
            }
        }
    }

    fn cfg(n: usize, me: u32) -> (Config, Vec<Keypair>) {
        let keys: Vec<Keypair> = (0..n)
            .map(|i| Keypair::from_label(&format!("adversary-test-{i}")))
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
        let mut m = injected::<Pbft>(Behaviour::Equivocate, &cfg, &keys[0]).expect("a rewrite");
        let mut own = Own::new(7);
        let wire = m.outgoing(
            &mut own.ctx(5),
            pre_prepare(&cfg, &keys[0], 1),
            others(4, 0),
        );
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
        assert_eq!(own.stats.equivocations, 1);
    }

    #[test]
    fn bad_sig_corrupts_every_message() {
        let (cfg, keys) = cfg(4, 0);
        let mut m = injected::<Pbft>(Behaviour::BadSig, &cfg, &keys[0]).unwrap();
        let mut own = Own::new(1);
        let wire = m.outgoing(
            &mut own.ctx(0),
            pre_prepare(&cfg, &keys[0], 1),
            others(4, 0),
        );
        assert_eq!(wire.len(), 3);
        for (_, msg) in wire {
            let PbftMessage::PrePrepare(pp) = msg else {
                panic!()
            };
            assert!(pp.vote.verify(&cfg.chain_id, &keys[0].public()).is_err());
        }
        assert_eq!(own.stats.bad_signatures, 3);
    }

    #[test]
    fn stale_replay_resends_what_it_sent_before() {
        let (cfg, keys) = cfg(4, 1);
        let mut m = injected::<Pbft>(Behaviour::StaleReplay, &cfg, &keys[1]).unwrap();
        let mut own = Own::new(3);
        let msg = pre_prepare(&cfg, &keys[1], 1);
        // Sent unchanged.
        let wire = m.outgoing(&mut own.ctx(10), msg.clone(), others(4, 1));
        assert!(wire.iter().all(|(_, w)| *w == msg));
        // Seconds later, in a later view, it comes back.
        assert!(m.wants_ticks());
        let replays = m.tick(&mut own.ctx(5_000), 2);
        assert!(!replays.is_empty());
        assert!(replays.iter().all(|(to, w)| *w == msg && to.0 != 1));
        assert_eq!(own.stats.stale_replays, replays.len() as u64);
    }
}
