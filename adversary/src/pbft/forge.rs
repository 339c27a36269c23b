//! Forged view changes: what a Byzantine validator can make of its own
//! VIEW-CHANGE and NEW-VIEW by rewriting them and signing again with its
//! key. Honest replicas must reject every forgery that recomputation
//! exposes, and survive the one it cannot (a validator lying about its own
//! prepared certificates).

use crate::rng::Rng;
use phalanx_consensus::pbft::messages::{NewView, ViewChange};
use phalanx_consensus::pbft::view_change::{null_payload, plan_new_view};
use phalanx_consensus::Config;
use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::{Height, SignedVote, Vote, VoteKind};

/// A rewritten copy of the validator's own VIEW-CHANGE, re-signed: hidden
/// prepared certificates, a false genesis checkpoint, or a certificate one
/// prepare short.
pub(super) fn view_change(
    rng: &mut Rng,
    cfg: &Config,
    key: &Keypair,
    vc: &ViewChange,
) -> ViewChange {
    let mut body = vc.body.clone();
    match rng.below(4) {
        // Hide every prepared certificate.
        0 => body.prepared.clear(),
        // Hide one.
        1 => {
            if !body.prepared.is_empty() {
                let i = rng.index(body.prepared.len());
                body.prepared.remove(i);
            } else {
                body.prepared.clear();
            }
        }
        // Claim to be at the genesis checkpoint.
        2 => {
            body.stable_seq = Height::GENESIS;
            body.checkpoint_proof.clear();
            let window = cfg.params.watermark_window;
            body.prepared.retain(|p| p.slot().1 .0 <= window);
        }
        // A prepared certificate one prepare short of a quorum.
        _ => match body.prepared.first_mut() {
            Some(p) => {
                p.prepares.pop();
            }
            None => body.prepared.clear(),
        },
    }
    ViewChange::sign(body, &cfg.chain_id, key)
}

/// A rewritten copy of the validator's own NEW-VIEW, re-signed: pre-prepares
/// that differ from recomputation, a VIEW-CHANGE left out, or — valid —
/// its own VIEW-CHANGE replaced by a lying one and everything recomputed.
pub(super) fn new_view(rng: &mut Rng, cfg: &Config, key: &Keypair, nv: &NewView) -> NewView {
    let me = cfg.me;
    let sign = |vote: Vote| vote.sign(&cfg.chain_id, key);
    let mut vcs = nv.view_changes.clone();
    let mut pps = nv.pre_prepares.clone();
    let view = nv.view;
    let next_seq = |pps: &[SignedVote]| {
        pps.last()
            .map_or_else(|| vcs_max_stable(&nv.view_changes), |p| p.vote.seq)
            .next()
    };
    match rng.below(5) {
        // Leave out the last pre-prepare (or add one where there are none).
        0 if !pps.is_empty() => {
            pps.pop();
        }
        // Swap one pre-prepare's digest.
        1 if !pps.is_empty() => {
            let i = rng.index(pps.len());
            pps[i] = sign(Vote {
                digest: Hash(rng.bytes32()),
                ..pps[i].vote
            });
        }
        // Drop a VIEW-CHANGE (the rest may be short of a quorum, or
        // recompute to something else).
        2 if vcs.len() > 1 => {
            let i = rng.index(vcs.len());
            vcs.remove(i);
        }
        // Lie in its own VIEW-CHANGE (hide its prepared certificates)
        // and recompute consistently: a NEW-VIEW honest replicas accept,
        // which PBFT must survive.
        3 => {
            if let Some(own) = vcs.iter_mut().find(|vc| vc.body.voter == me) {
                let mut body = own.body.clone();
                body.prepared.clear();
                *own = ViewChange::sign(body, &cfg.chain_id, key);
            }
            let plan = plan_new_view(cfg, view, &vcs);
            pps = plan
                .entries
                .iter()
                .map(|(seq, digest, _)| {
                    sign(Vote {
                        kind: VoteKind::PrePrepare,
                        view,
                        seq: *seq,
                        digest: *digest,
                        voter: me,
                    })
                })
                .collect();
        }
        // One pre-prepare more than recomputation gives (a null block).
        _ => {
            let seq = next_seq(&pps);
            let digest = null_payload(cfg, view, seq).digest();
            pps.push(sign(Vote {
                kind: VoteKind::PrePrepare,
                view,
                seq,
                digest,
                voter: me,
            }));
        }
    }
    NewView::sign(view, vcs, pps, &cfg.chain_id, key)
}

fn vcs_max_stable(vcs: &[ViewChange]) -> Height {
    vcs.iter()
        .map(|vc| vc.body.stable_seq)
        .max()
        .unwrap_or_default()
}
