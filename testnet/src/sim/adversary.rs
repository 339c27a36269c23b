//! Byzantine validators, built around unmodified honest engines.
//!
//! An [`Adversary`] sits between a Byzantine validator's honest engine and
//! the network: it rewrites what the engine sends (re-signing with the
//! validator's own key, which a Byzantine validator has), withholds it,
//! invents messages on its own clock ticks, and lies when serving catch-up.
//! It never reaches into an engine and never signs with another validator's
//! key, so everything it produces is something a real Byzantine validator
//! could produce. (Twins need no adversary: they are two honest engines
//! with one key, and the network decides who sees which.)

use super::forge;
use super::rng::Rng;
use super::scenario::{Behaviour, SilentMode};
use phalanx_consensus::pbft::messages::{PrePrepare, ViewChange};
use phalanx_consensus::{Config, PbftMessage};
use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::{Block, Height, Justification, Payload, SignedVote, ValidatorIndex, Vote};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// Recorded messages kept for stale replays.
const HISTORY: usize = 256;

/// What the adversaries did (summed over a schedule's Byzantine validators).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AdversaryStats {
    /// PRE-PREPAREs sent in two versions.
    pub equivocations: u64,
    /// Votes sent in two versions.
    pub conflicting_votes: u64,
    /// Messages withheld.
    pub withheld: u64,
    /// Messages sent with a corrupted signature or a false signer.
    pub bad_signatures: u64,
    /// Old messages resent.
    pub stale_replays: u64,
    /// VIEW-CHANGEs forged (rewritten or invented) and re-signed.
    pub forged_view_changes: u64,
    /// NEW-VIEWs forged and re-signed.
    pub forged_new_views: u64,
    /// Catch-up answers tampered with.
    pub bad_sync: u64,
}

impl AdversaryStats {
    /// Adds another schedule's counts.
    pub fn add(&mut self, other: &AdversaryStats) {
        self.equivocations += other.equivocations;
        self.conflicting_votes += other.conflicting_votes;
        self.withheld += other.withheld;
        self.bad_signatures += other.bad_signatures;
        self.stale_replays += other.stale_replays;
        self.forged_view_changes += other.forged_view_changes;
        self.forged_new_views += other.forged_new_views;
        self.bad_sync += other.bad_sync;
    }
}

/// Knowledge the Byzantine validators of one schedule share (they collude):
/// the digests of equivocated proposals, so a conflicting voter can vote
/// for the other version rather than for a random digest.
#[derive(Debug, Default)]
pub struct Collusion {
    variants: BTreeMap<(u64, Height), Vec<Hash>>,
}

/// One Byzantine validator's misbehaviour.
#[derive(Debug)]
pub struct Adversary {
    me: ValidatorIndex,
    behaviours: Vec<Behaviour>,
    key: Keypair,
    cfg: Config,
    history: VecDeque<(u64, PbftMessage)>,
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
    }
}

impl Adversary {
    /// The adversary of validator `cfg.me` with these behaviours.
    pub fn new(cfg: Config, key: Keypair, behaviours: Vec<Behaviour>) -> Adversary {
        Adversary {
            me: cfg.me,
            behaviours,
            key,
            cfg,
            history: VecDeque::new(),
        }
    }

    fn has(&self, want: impl Fn(&Behaviour) -> bool) -> bool {
        self.behaviours.iter().any(want)
    }

    /// Whether it acts on its own clock (replays, invented view changes).
    pub fn wants_ticks(&self) -> bool {
        self.has(|b| matches!(b, Behaviour::StaleReplay | Behaviour::ForgedViewChange))
    }

    fn remember(&mut self, now: u64, m: &PbftMessage) {
        if self.has(|b| *b == Behaviour::StaleReplay) {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back((now, m.clone()));
        }
    }

    /// A message the validator received (recorded for later replay).
    pub fn incoming(&mut self, now: u64, m: &PbftMessage) {
        self.remember(now, m);
    }

    fn sign(&self, vote: Vote) -> SignedVote {
        vote.sign(&self.cfg.chain_id, &self.key)
    }

    /// Rewrites one message the honest engine sends to `dests` into what
    /// actually goes on the wire.
    pub fn outgoing(
        &mut self,
        rng: &mut Rng,
        collusion: &mut Collusion,
        stats: &mut AdversaryStats,
        now: u64,
        message: PbftMessage,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, PbftMessage)> {
        self.remember(now, &message);
        let mut wire: Vec<(ValidatorIndex, PbftMessage)> =
            dests.into_iter().map(|d| (d, message.clone())).collect();
        let behaviours = self.behaviours.clone();
        for b in &behaviours {
            wire = match b {
                Behaviour::ForgedViewChange => self.forge(rng, stats, wire),
                Behaviour::Equivocate => self.equivocate(rng, collusion, stats, wire),
                Behaviour::ConflictingVotes => self.conflict(rng, collusion, stats, wire),
                Behaviour::BadSig => self.corrupt(rng, stats, wire),
                Behaviour::Silent(mode) => {
                    let before = wire.len();
                    wire.retain(|(to, m)| match mode {
                        SilentMode::All => false,
                        SilentMode::Towards(set) => !set.contains(to),
                        SilentMode::Commits => {
                            !matches!(m, PbftMessage::Commit(_) | PbftMessage::Checkpoint(_))
                        }
                        SilentMode::Random => rng.chance(0.5),
                    });
                    stats.withheld += (before - wire.len()) as u64;
                    wire
                }
                Behaviour::StaleReplay | Behaviour::BadSync => wire,
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
        rng: &mut Rng,
        collusion: &mut Collusion,
        stats: &mut AdversaryStats,
        mut wire: Vec<(ValidatorIndex, PbftMessage)>,
    ) -> Vec<(ValidatorIndex, PbftMessage)> {
        let Some((_, PbftMessage::PrePrepare(pp))) = wire.first() else {
            return wire;
        };
        if pp.vote.vote.voter != self.me || wire.len() < 2 {
            return wire;
        }
        let payload = variant_payload(rng, &pp.payload);
        let vote = self.sign(Vote {
            digest: payload.digest(),
            ..pp.vote.vote
        });
        collusion
            .variants
            .entry((vote.vote.view, vote.vote.seq))
            .or_default()
            .push(vote.vote.digest);
        let variant = PbftMessage::PrePrepare(PrePrepare { vote, payload });
        let split = Self::halves(rng, &wire);
        for ((_, m), second) in wire.iter_mut().zip(split) {
            if second {
                *m = variant.clone();
            }
        }
        stats.equivocations += 1;
        wire
    }

    /// Conflicting votes: the honest vote to one half, a re-signed vote for
    /// another digest (a colluding primary's variant if there is one) to the other.
    fn conflict(
        &self,
        rng: &mut Rng,
        collusion: &mut Collusion,
        stats: &mut AdversaryStats,
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
        let digest = collusion
            .variants
            .get(&(vote.vote.view, vote.vote.seq))
            .and_then(|ds| ds.iter().find(|d| **d != vote.vote.digest))
            .copied()
            .unwrap_or_else(|| Hash(rng.bytes32()));
        let other = wrap(self.sign(Vote {
            digest,
            ..vote.vote
        }));
        let split = Self::halves(rng, &wire);
        for ((_, m), second) in wire.iter_mut().zip(split) {
            if second {
                *m = other.clone();
            }
        }
        stats.conflicting_votes += 1;
        wire
    }

    /// Bad signatures: some messages go out with a flipped signature bit or
    /// a false signer, sometimes followed by the genuine message.
    fn corrupt(
        &self,
        rng: &mut Rng,
        stats: &mut AdversaryStats,
        wire: Vec<(ValidatorIndex, PbftMessage)>,
    ) -> Vec<(ValidatorIndex, PbftMessage)> {
        let mut out = Vec::with_capacity(wire.len() + 1);
        for (to, m) in wire {
            if !rng.chance(0.4) {
                out.push((to, m));
                continue;
            }
            let impostor = ValidatorIndex(rng.index(self.cfg.n()) as u32);
            let bad = corrupt_message(rng, &m, impostor);
            stats.bad_signatures += 1;
            out.push((to, bad));
            if rng.chance(0.5) {
                out.push((to, m));
            }
        }
        out
    }

    /// Forged view changes: rewrite the engine's own VIEW-CHANGE or NEW-VIEW
    /// and re-sign it; the forgery goes to everyone or to one half.
    fn forge(
        &self,
        rng: &mut Rng,
        stats: &mut AdversaryStats,
        mut wire: Vec<(ValidatorIndex, PbftMessage)>,
    ) -> Vec<(ValidatorIndex, PbftMessage)> {
        let forged = match wire.first() {
            Some((_, PbftMessage::ViewChange(vc))) if vc.body.voter == self.me => {
                stats.forged_view_changes += 1;
                PbftMessage::ViewChange(forge::view_change(rng, &self.cfg, &self.key, vc))
            }
            Some((_, PbftMessage::NewView(nv))) if self.cfg.primary(nv.view) == self.me => {
                stats.forged_new_views += 1;
                PbftMessage::NewView(forge::new_view(rng, &self.cfg, &self.key, nv))
            }
            _ => return wire,
        };
        let everyone = rng.chance(0.5);
        let split = Self::halves(rng, &wire);
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
    pub fn tick(
        &mut self,
        rng: &mut Rng,
        stats: &mut AdversaryStats,
        now: u64,
        current_view: u64,
        genesis_hash: Hash,
    ) -> Vec<(ValidatorIndex, PbftMessage)> {
        let mut out = Vec::new();
        let peers: Vec<ValidatorIndex> = (0..self.cfg.n() as u32)
            .map(ValidatorIndex)
            .filter(|v| *v != self.me)
            .collect();
        if self.has(|b| *b == Behaviour::StaleReplay) && !self.history.is_empty() {
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
        if self.has(|b| *b == Behaviour::ForgedViewChange) && rng.chance(0.2) {
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
        out
    }

    /// Answers a catch-up request: `None` to stay silent, or the blocks to
    /// send (tampered with, for a `BadSync` validator).
    pub fn serve_sync(
        &self,
        rng: &mut Rng,
        stats: &mut AdversaryStats,
        mut blocks: Vec<Block>,
    ) -> Option<Vec<Block>> {
        if self.has(|b| *b == Behaviour::Silent(SilentMode::All)) {
            return None;
        }
        if !self.has(|b| *b == Behaviour::BadSync) || blocks.is_empty() || rng.chance(0.2) {
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

fn flip(rng: &mut Rng, sig: &mut phalanx_crypto::Signature) {
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
                flip(rng, &mut pp.vote.signature);
            }
        }
        PbftMessage::Prepare(v) | PbftMessage::Commit(v) | PbftMessage::Checkpoint(v) => {
            if impersonate && v.vote.voter != impostor {
                v.vote.voter = impostor;
            } else {
                flip(rng, &mut v.signature);
            }
        }
        PbftMessage::ViewChange(vc) => {
            if impersonate && vc.body.voter != impostor {
                vc.body.voter = impostor;
            } else {
                flip(rng, &mut vc.signature);
            }
        }
        PbftMessage::NewView(nv) => flip(rng, &mut nv.signature),
        PbftMessage::Evidence(e) => flip(rng, &mut e.second.signature),
        PbftMessage::Complaint(c) => {
            if impersonate && c.voter != impostor {
                c.voter = impostor;
            } else {
                flip(rng, &mut c.signature);
            }
        }
    }
    m
}
