//! What one Byzantine validator can make an honest PBFT replica hold or
//! check is bounded before any signature is checked (issue 18, findings 1,
//! 2 and 8): certificates hold at most one vote per validator, a NEW-VIEW
//! exactly a quorum of VIEW-CHANGEs, a payload at most one piece of
//! evidence per validator, and a replica keeps one piece per offender.

mod common;

use common::*;
use phalanx_consensus::pbft::messages::check_payload;
use phalanx_consensus::pbft::messages::{MessageError, NewView, ViewChange, ViewChangeBody};
use phalanx_consensus::{Engine, Input, Output, PbftMessage, TimeoutKind};
use phalanx_crypto::{Hash, Signature};
use phalanx_ledger::{Evidence, Height, SignedVote, ValidatorIndex, VoteKind};

/// A block hash to checkpoint at seq 4 (the fixture's checkpoint interval).
fn checkpoint_digest() -> Hash {
    Hash([4; 32])
}

/// A VIEW-CHANGE to view 1 from `voter` whose stable checkpoint (seq 4) is
/// proven by `proof`.
fn view_change_with_proof(voter: usize, proof: Vec<SignedVote>) -> ViewChange {
    ViewChange::sign(
        ViewChangeBody {
            new_view: 1,
            stable_seq: Height(4),
            stable_digest: checkpoint_digest(),
            checkpoint_proof: proof,
            prepared: vec![],
            committed: vec![],
            voter: ValidatorIndex(voter as u32),
        },
        CHAIN,
        &validator_key(voter),
    )
}

fn checkpoint_votes(voters: &[usize]) -> Vec<SignedVote> {
    voters
        .iter()
        .map(|&v| vote(VoteKind::Checkpoint, 0, 4, checkpoint_digest(), v))
        .collect()
}

/// Finding 1: the review's 16.8 MB VIEW-CHANGE was three real CHECKPOINT
/// votes plus copies of the sender's own; each copy cost a signature check.
#[test]
fn a_view_change_padded_with_copies_of_one_vote_is_refused_unchecked() {
    let cfg = engine(4, 1).config().clone();
    let honest = view_change_with_proof(3, checkpoint_votes(&[0, 2, 3]));
    assert_eq!(honest.verify(&cfg), Ok(()));

    let mut proof = checkpoint_votes(&[0, 2, 3]);
    let own = proof[2];
    proof.extend(std::iter::repeat_n(own, 10_000));
    let padded = view_change_with_proof(3, proof);
    assert_eq!(
        padded.verify(&cfg),
        Err(MessageError::Repeated("checkpoint proof"))
    );
    // A repeat with a garbage signature is refused as a repeat: the shape
    // is looked at before any signature.
    let mut proof = checkpoint_votes(&[0, 2, 3]);
    let mut garbage = proof[0];
    garbage.signature = Signature([9; 64]);
    proof.push(garbage);
    assert_eq!(
        view_change_with_proof(3, proof).verify(&cfg),
        Err(MessageError::Repeated("checkpoint proof"))
    );
    // Short of a quorum with garbage signatures: the count is reported.
    let mut short = checkpoint_votes(&[0, 2]);
    short[1].signature = Signature([9; 64]);
    assert_eq!(
        view_change_with_proof(3, short).verify(&cfg),
        Err(MessageError::NoQuorum("checkpoint proof"))
    );

    // The engine drops the padded one and keeps the honest one.
    let mut e = engine(4, 1);
    e.handle(0, msg(3, PbftMessage::ViewChange(padded)));
    assert_eq!(e.counters().bad_signature, 1);
    e.handle(0, msg(3, PbftMessage::ViewChange(honest)));
    assert_eq!(e.counters().bad_signature, 1);
}

/// More complaints than validators ride outside the signature: refused.
#[test]
fn a_view_change_with_more_complaints_than_validators_is_refused() {
    let cfg = engine(4, 1).config().clone();
    let PbftMessage::ViewChange(mut vc) = empty_view_change(1, 2) else {
        unreachable!()
    };
    let PbftMessage::Complaint(c) = complaint_about(0, 3) else {
        unreachable!()
    };
    vc.justification = vec![c; 5];
    assert_eq!(
        vc.verify(&cfg),
        Err(MessageError::Malformed("more complaints than validators"))
    );
}

fn complaint_about(view: u64, voter: usize) -> PbftMessage {
    PbftMessage::Complaint(phalanx_consensus::pbft::messages::Complaint::sign(
        view,
        ValidatorIndex(voter as u32),
        CHAIN,
        &validator_key(voter),
    ))
}

fn view_changes_to_1(voters: &[usize]) -> Vec<ViewChange> {
    voters
        .iter()
        .map(|&v| match empty_view_change(1, v) {
            PbftMessage::ViewChange(vc) => vc,
            _ => unreachable!(),
        })
        .collect()
}

/// Finding 1: a NEW-VIEW carries exactly a quorum of VIEW-CHANGEs (a copy
/// of every VIEW-CHANGE the primary held could exceed the frame cap).
#[test]
fn a_new_view_carries_exactly_a_quorum_of_view_changes() {
    let backup = engine(4, 2);
    let sign = |vcs| NewView::sign(1, vcs, vec![], CHAIN, &validator_key(1));
    assert!(backup
        .verify_new_view(&sign(view_changes_to_1(&[1, 2, 3])))
        .is_ok());
    assert_eq!(
        backup
            .verify_new_view(&sign(view_changes_to_1(&[0, 1, 2, 3])))
            .err(),
        Some("a new-view carries exactly a quorum of view changes")
    );
    assert!(backup
        .verify_new_view(&sign(view_changes_to_1(&[1, 2])))
        .is_err());
    // Signed under another validator's name (2 is not view 1's primary).
    let forged = NewView::sign(
        1,
        view_changes_to_1(&[1, 2, 3]),
        vec![],
        CHAIN,
        &validator_key(2),
    );
    assert_eq!(
        backup.verify_new_view(&forged).err(),
        Some("bad new-view signature")
    );

    // The honest primary of view 1 sends one with exactly a quorum even
    // when it holds every replica's VIEW-CHANGE.
    let mut primary = engine(4, 1);
    let mut sent = None;
    for vc in view_changes_to_1(&[0, 2, 3]) {
        let from = vc.body.voter.as_usize();
        for o in primary.handle(0, msg(from, PbftMessage::ViewChange(vc))) {
            if let Output::Broadcast(PbftMessage::NewView(nv)) = o {
                sent = Some(nv);
            }
        }
    }
    let nv = sent.expect("new-view sent");
    assert_eq!(nv.view_changes.len(), 3);
    assert!(nv
        .view_changes
        .iter()
        .any(|vc| vc.body.voter == ValidatorIndex(1)));
}

/// Finding 8: a VIEW-CHANGE signed under another validator's name is no
/// request for help: a replica in a later view answers only signed ones.
#[test]
fn straggler_help_answers_only_a_signed_view_change() {
    let mut e = engine(4, 1);
    for vc in view_changes_to_1(&[2, 3]) {
        let from = vc.body.voter.as_usize();
        e.handle(0, msg(from, PbftMessage::ViewChange(vc)));
    }
    assert_eq!(e.status().view, 1);
    // Validator 0 "asks" for view 1 in a message validator 3 signed.
    let mut forged = view_changes_to_1(&[3]).remove(0);
    forged.body.voter = ValidatorIndex(0);
    let out = e.handle(10, msg(3, PbftMessage::ViewChange(forged.clone())));
    assert!(
        !out.iter().any(|o| matches!(o, Output::Send { .. })),
        "{out:?}"
    );
    assert_eq!(
        forged.verify(e.config()),
        Err(MessageError::BadSignature(ValidatorIndex(0)))
    );
    // Really signed by 0: it gets the NEW-VIEW.
    let real = view_changes_to_1(&[0]).remove(0);
    let out = e.handle(20, msg(0, PbftMessage::ViewChange(real)));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Send { to, message: PbftMessage::NewView(_) } if *to == ValidatorIndex(0)
    )));
}

/// Validator `voter` signing PREPAREs for two digests in slot (0, seq).
fn equivocation(voter: usize, seq: u64) -> Evidence {
    Evidence {
        first: vote(VoteKind::Prepare, 0, seq, Hash([1; 32]), voter),
        second: vote(VoteKind::Prepare, 0, seq, Hash([2; 32]), voter),
    }
}

/// Finding 2: a validator can sign any number of distinct pieces of
/// evidence against itself; a replica keeps, persists and sends on one.
#[test]
fn evidence_is_kept_once_per_offender() {
    let mut e = engine(4, 2);
    let mut recorded = 0;
    let mut sent = 0;
    for seq in 1..=100 {
        for o in e.handle(0, msg(3, PbftMessage::Evidence(equivocation(3, seq)))) {
            match o {
                Output::Evidence(_) => recorded += 1,
                Output::Broadcast(PbftMessage::Evidence(_)) => sent += 1,
                _ => {}
            }
        }
    }
    assert_eq!((recorded, sent), (1, 1));
    assert_eq!(e.counters().redundant_evidence, 99);
    // Evidence against another validator still counts.
    let out = e.handle(0, msg(0, PbftMessage::Evidence(equivocation(0, 1))));
    assert!(out.iter().any(|o| matches!(o, Output::Evidence(_))));
}

/// Finding 2: the primary proposes at most one piece per offender, and a
/// payload with two against one validator (or more than n) is invalid.
#[test]
fn a_payload_holds_at_most_one_piece_of_evidence_per_validator() {
    let cfg = engine(4, 0).config().clone();
    let mut p = payload(0, 1, 0);
    p.evidence = vec![equivocation(3, 1)];
    assert_eq!(check_payload(&cfg, &p, Height(1), &p.digest()), Ok(()));
    p.evidence.push(equivocation(3, 2));
    assert_eq!(
        check_payload(&cfg, &p, Height(1), &p.digest()),
        Err(MessageError::Repeated("a payload's evidence"))
    );
    // A backup refuses such a PRE-PREPARE: no PREPARE.
    let mut backup = engine(4, 1);
    let out = backup.handle(0, msg(0, pre_prepare(0, 1, &p)));
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Broadcast(PbftMessage::Prepare(_)))),
        "{out:?}"
    );

    // The primary, handed 20 pieces against validator 3, proposes one.
    let mut primary = engine(4, 0);
    let mut outputs = Vec::new();
    for seq in 1..=20 {
        outputs.extend(primary.handle(0, msg(3, PbftMessage::Evidence(equivocation(3, seq)))));
    }
    outputs.extend(primary.handle(100, Input::Timeout(TimeoutKind::Batch)));
    let proposed: Vec<usize> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Broadcast(PbftMessage::PrePrepare(pp)) => Some(pp.payload.evidence.len()),
            _ => None,
        })
        .collect();
    assert_eq!(proposed, vec![1], "one proposal with one piece");
}

/// A payload of `txs` transactions of about `bytes_each` bytes (the
/// transaction's chain id is padding: the payload rules do not read it).
fn heavy_payload(view: u64, seq: u64, txs: usize, bytes_each: usize) -> phalanx_ledger::Payload {
    let mut p = payload(view, seq, 0);
    let tx = phalanx_ledger::Transaction {
        chain_id: "x".repeat(bytes_each),
        from: phalanx_ledger::Address(account_key(0).public()),
        to: phalanx_ledger::Address(account_key(1).public()),
        amount: 1,
        nonce: seq,
        fee: 1,
    }
    .sign(&account_key(0));
    p.txs = vec![tx; txs];
    p
}

/// Finding 3: PRE-PREPAREs for a later view are kept until that view
/// starts, within a budget per signer. The review's flood (2,000 one-MiB
/// PRE-PREPAREs for the next view) took a replica from 5 MiB to 2 GiB.
#[test]
fn messages_for_later_views_are_bounded_per_signer() {
    use phalanx_consensus::pbft::future::{MAX_BYTES_PER_SIGNER, VIEW_HORIZON};
    let mut e = engine(4, 2);
    // Validator 1, primary of view 1, sends 40 PRE-PREPAREs of ~1 MiB.
    let mut offered = 0;
    for seq in 1..=40 {
        let p = heavy_payload(1, seq, 10, 100_000);
        offered += phalanx_crypto::encode(&p).len();
        e.handle(0, msg(1, pre_prepare(1, seq, &p)));
    }
    let (held, bytes) = e.future_buffered();
    assert!(offered > 2 * MAX_BYTES_PER_SIGNER);
    assert!(bytes <= MAX_BYTES_PER_SIGNER, "{bytes} bytes held");
    assert!(held > 0 && held < 40, "{held} messages held");
    let dropped = e.counters().future_dropped;
    assert_eq!(dropped, 40 - held as u64);
    // Another validator's messages for view 1 are still kept.
    let digest = heavy_payload(1, 1, 10, 100_000).digest();
    e.handle(
        0,
        msg(
            3,
            PbftMessage::Prepare(vote(VoteKind::Prepare, 1, 1, digest, 3)),
        ),
    );
    assert_eq!(e.future_buffered().0, held + 1);
    // (Two validators in view 1 are f+1: this replica has asked for it.)
    // Beyond the horizon nothing is kept.
    let far = e.status().view + VIEW_HORIZON + 1;
    e.handle(
        0,
        msg(
            3,
            PbftMessage::Prepare(vote(VoteKind::Prepare, far, 1, digest, 3)),
        ),
    );
    assert_eq!(e.future_buffered().0, held + 1);
    assert_eq!(e.counters().future_dropped, dropped + 1);
    // A later-view PRE-PREPARE whose payload does not match its vote is
    // not kept at all.
    let mut e = engine(4, 2);
    let p = payload(1, 1, 1);
    let mut lying = p.clone();
    lying.timestamp_ms += 1;
    let PbftMessage::PrePrepare(mut pp) = pre_prepare(1, 1, &p) else {
        unreachable!()
    };
    pp.payload = lying;
    e.handle(0, msg(1, PbftMessage::PrePrepare(pp)));
    assert_eq!(e.future_buffered(), (0, 0));
    assert_eq!(e.counters().invalid, 1);
}

/// Issue 18, finding 8: a replica whose own block differs from the one a
/// quorum certified at a checkpoint (here: its state was altered under it,
/// as a corrupt store would) says so in its status, for its driver to stop.
#[test]
fn a_replica_whose_block_differs_from_a_stable_checkpoint_reports_it() {
    let mut c = Cluster::new(4, params());
    let tampered = {
        let s = &c.nodes[2].state;
        let changed = [(
            phalanx_ledger::Address(account_key(3).public()),
            phalanx_ledger::Account {
                balance: 7,
                nonce: 0,
            },
        )]
        .into_iter()
        .collect();
        s.diff(s.height(), changed)
    };
    c.nodes[2].state.apply(&tampered);
    let interval = params().checkpoint_interval;
    for k in 0..interval {
        c.submit(vec![transfer(0, 1, 1, k)]);
        assert!(c.run_until(20_000, |c| (0..4).all(|i| c.height(i) > k)));
    }
    c.run();
    for i in [0, 1, 3] {
        assert_eq!(c.nodes[i].engine.status().diverged_at, None, "node {i}");
    }
    assert_eq!(
        c.nodes[2].engine.status().diverged_at,
        Some(Height(interval)),
        "node 2 executed differently"
    );
}
