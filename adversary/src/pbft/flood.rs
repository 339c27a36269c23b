//! Floods and malformed messages: what one Byzantine validator can send to
//! make honest replicas check or hold more than they should (issue 18).
//! Each is something a real Byzantine validator can produce with its own
//! key; every honest replica must drop it within a bound, and the others
//! must keep committing.
//!
//! On its clock ticks a `Flood` validator sends some of:
//! - evidence against itself (two PREPAREs it signed for one slot), a new
//!   piece each time (from the start, or only after 1.5 s);
//! - PRE-PREPAREs for later views it will lead, with padded payloads;
//! - a PRE-PREPARE for the current view although it is not its primary;
//! - a VIEW-CHANGE signed with its key under another validator's name;
//! - VIEW-CHANGEs for the next view, every tick (no timeout backoff).
//!
//! It also rewrites what its engine sends: a VIEW-CHANGE whose checkpoint
//! proof or prepared certificates are padded with repeats of one vote, and
//! (as primary) a PRE-PREPARE whose payload is not the one it signed.

use super::PbftAdversary;
use crate::Ctx;
use phalanx_consensus::pbft::messages::{PrePrepare, ViewChange, ViewChangeBody};
use phalanx_consensus::PbftMessage;
use phalanx_crypto::Hash;
use phalanx_ledger::{
    Address, Evidence, Height, Payload, Transaction, ValidatorIndex, Vote, VoteKind,
};

/// Copies of one vote added to a padded certificate.
const PADDING: usize = 64;

/// When a flooder that starts late sends evidence against itself (ms).
const LATE_EVIDENCE_MS: u64 = 1_500;

/// Bytes of padding in each transaction of a flooded payload.
const TX_PADDING: usize = 2_048;

impl PbftAdversary {
    /// What a `Flood` validator sends on its own on one tick.
    pub(super) fn flood_tick(
        &mut self,
        ctx: &mut Ctx<'_>,
        view: u64,
        peers: &[ValidatorIndex],
    ) -> Vec<PbftMessage> {
        let mut out = Vec::new();
        let rng = &mut *ctx.rng;
        // Evidence against itself, a new piece each time — in half of the
        // schedules from the start, in the other half only late: once
        // proven faulty its other messages are ignored unread, so the
        // attacks below need time before it incriminates itself.
        let evidence_from = *self.flood_evidence_from_ms.get_or_insert_with(|| {
            if rng.chance(0.5) {
                0
            } else {
                LATE_EVIDENCE_MS
            }
        });
        let pieces = if ctx.now >= evidence_from {
            rng.range(1, 4)
        } else {
            0
        };
        for _ in 0..pieces {
            let seq = Height(1 + rng.below(1_000));
            let vote = |digest| {
                self.sign(Vote {
                    kind: VoteKind::Prepare,
                    view,
                    seq,
                    digest,
                    voter: self.me,
                })
            };
            out.push(PbftMessage::Evidence(Evidence {
                first: vote(Hash(rng.bytes32())),
                second: vote(Hash(rng.bytes32())),
            }));
        }
        // PRE-PREPAREs for a later view it leads, padded.
        let n = self.cfg.n() as u64;
        if let Some(ahead) = (1..=2 * n).find(|k| self.cfg.primary(view + k) == self.me) {
            for _ in 0..rng.range(1, 4) {
                let seq = Height(1 + rng.below(64));
                out.push(self.pre_prepare(view + ahead, seq, rng.bytes32(), true));
            }
        }
        // A PRE-PREPARE for the current view from a validator that is not
        // its primary.
        // It names the next slot or the one after, with a plausible
        // timestamp, so that only the signer check stops it.
        if self.cfg.primary(view) != self.me {
            let seq = Height(self.highest_seq.0 + 1 + rng.below(2));
            let mut salt = rng.bytes32();
            salt[8..16].copy_from_slice(&ctx.now.to_le_bytes());
            out.push(self.pre_prepare(view, seq, salt, false));
        }
        // A VIEW-CHANGE under another validator's name, and one of its own
        // for the next view (sent every tick: no backoff).
        let impostor = *rng.pick(peers);
        for voter in [impostor, self.me] {
            let body = ViewChangeBody {
                new_view: view + 1,
                stable_seq: Height::GENESIS,
                stable_digest: self.genesis_hash,
                checkpoint_proof: Vec::new(),
                prepared: Vec::new(),
                committed: Vec::new(),
                voter,
            };
            out.push(PbftMessage::ViewChange(ViewChange::sign(
                body,
                &self.cfg.chain_id,
                &self.key,
            )));
        }
        ctx.stats.floods += out.len() as u64;
        out
    }

    /// A signed PRE-PREPARE by this validator for (view, seq), its payload
    /// padded when `heavy`.
    fn pre_prepare(&self, view: u64, seq: Height, salt: [u8; 32], heavy: bool) -> PbftMessage {
        let txs = if heavy {
            let from = Address(self.key.public());
            let tx = Transaction {
                chain_id: "x".repeat(TX_PADDING),
                from,
                to: from,
                amount: 0,
                nonce: u64::from_le_bytes(salt[..8].try_into().unwrap_or_default()),
                fee: 0,
            }
            .sign(&self.key);
            vec![tx; self.cfg.params.max_block_txs as usize]
        } else {
            Vec::new()
        };
        let payload = Payload {
            chain_id: self.cfg.chain_id.clone(),
            height: seq,
            round: view,
            proposer: self.me,
            timestamp_ms: u64::from_le_bytes(salt[8..16].try_into().unwrap_or_default()),
            txs,
            evidence: Vec::new(),
        };
        let vote = self.sign(Vote {
            kind: VoteKind::PrePrepare,
            view,
            seq,
            digest: payload.digest(),
            voter: self.me,
        });
        PbftMessage::PrePrepare(PrePrepare { vote, payload })
    }

    /// Rewrites one message its engine sends: a VIEW-CHANGE with padded
    /// certificates, or a PRE-PREPARE whose payload is not the signed one.
    pub(super) fn flood_rewrite(&self, ctx: &mut Ctx<'_>, m: &PbftMessage) -> Option<PbftMessage> {
        match m {
            PbftMessage::ViewChange(vc) if vc.body.voter == self.me => {
                let mut body = vc.body.clone();
                if let Some(v) = body.checkpoint_proof.first().copied() {
                    body.checkpoint_proof
                        .extend(std::iter::repeat_n(v, PADDING));
                } else if let Some(p) = body.prepared.first_mut() {
                    if let Some(v) = p.prepares.first().copied() {
                        p.prepares.extend(std::iter::repeat_n(v, PADDING));
                    }
                } else {
                    return None;
                }
                ctx.stats.floods += 1;
                Some(PbftMessage::ViewChange(ViewChange::sign(
                    body,
                    &self.cfg.chain_id,
                    &self.key,
                )))
            }
            PbftMessage::PrePrepare(pp) if pp.vote.vote.voter == self.me && ctx.rng.chance(0.3) => {
                let mut pp = pp.clone();
                pp.payload.timestamp_ms ^= 1;
                ctx.stats.floods += 1;
                Some(PbftMessage::PrePrepare(pp))
            }
            _ => None,
        }
    }
}
