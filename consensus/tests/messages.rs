//! Every engine's wire messages through the engine-neutral [`Message`]
//! interface the runtime, the metrics and the simulator use: summaries,
//! wire kinds and promises.

use phalanx_consensus::cft::messages::{CftBody, CftMessage};
use phalanx_consensus::{Message, PbftMessage};
use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::{Height, ValidatorIndex};

const CHAIN: &str = "messages-test";

fn vote(kind: phalanx_ledger::VoteKind, view: u64, seq: u64) -> phalanx_ledger::SignedVote {
    phalanx_ledger::Vote {
        kind,
        view,
        seq: Height(seq),
        digest: Hash::digest(&[seq as u8]),
        voter: ValidatorIndex(1),
    }
    .sign(CHAIN, &Keypair::from_label("v1"))
}

/// Every message kind: what a node logs and counts about it (decoded) and
/// what its fault wrapper counts (the first byte on the wire) agree.
#[test]
fn summaries_and_wire_kinds_agree_for_every_message() {
    use phalanx_consensus::cft::messages::{AppendAck, AppendEntries, RequestVote, VoteReply};
    use phalanx_consensus::pbft::messages::{NewView, PrePrepare, ViewChange, ViewChangeBody};
    use phalanx_ledger::{Evidence, Payload, VoteKind};
    let payload = Payload {
        chain_id: CHAIN.into(),
        height: Height(7),
        round: 2,
        proposer: ValidatorIndex(2),
        timestamp_ms: 1,
        txs: Vec::new(),
        evidence: Vec::new(),
    };
    let view_change = ViewChange {
        body: ViewChangeBody {
            new_view: 3,
            stable_seq: Height(4),
            stable_digest: Hash::digest(b"stable"),
            checkpoint_proof: Vec::new(),
            prepared: Vec::new(),
            committed: Vec::new(),
            voter: ValidatorIndex(1),
        },
        signature: phalanx_crypto::Signature([0; 64]),
        justification: Vec::new(),
    };
    let pbft = [
        (
            PbftMessage::PrePrepare(PrePrepare {
                vote: vote(VoteKind::PrePrepare, 2, 7),
                payload,
            }),
            ("pre_prepare", 2, 7, true),
        ),
        (
            PbftMessage::Prepare(vote(VoteKind::Prepare, 2, 7)),
            ("prepare", 2, 7, true),
        ),
        (
            PbftMessage::Commit(vote(VoteKind::Commit, 2, 7)),
            ("commit", 2, 7, true),
        ),
        (
            PbftMessage::Checkpoint(vote(VoteKind::Checkpoint, 2, 8)),
            ("checkpoint", 2, 8, true),
        ),
        (
            PbftMessage::ViewChange(view_change.clone()),
            ("view_change", 3, 4, true),
        ),
        (
            PbftMessage::NewView(NewView {
                view: 3,
                view_changes: vec![view_change],
                pre_prepares: vec![
                    vote(VoteKind::PrePrepare, 3, 5),
                    vote(VoteKind::PrePrepare, 3, 6),
                ],
                signature: phalanx_crypto::Signature([0; 64]),
            }),
            ("new_view", 3, 6, false),
        ),
        (
            PbftMessage::Evidence(Evidence {
                first: vote(VoteKind::Prepare, 1, 9),
                second: vote(VoteKind::Prepare, 1, 9),
            }),
            ("evidence", 1, 9, true),
        ),
        (
            PbftMessage::Complaint(phalanx_consensus::pbft::messages::Complaint {
                view: 5,
                voter: ValidatorIndex(2),
                signature: phalanx_crypto::Signature([0; 64]),
            }),
            ("complaint", 5, 0, false),
        ),
        (
            PbftMessage::Echo(vote(VoteKind::PrePrepare, 2, 7)),
            ("pre_prepare_echo", 2, 7, true),
        ),
    ];
    for (m, (kind, view, seq, digest)) in pbft {
        let s = m.summary();
        assert_eq!(
            (s.kind, s.view, s.seq, s.digest.is_some()),
            (kind, view, seq, digest),
            "{m:?}"
        );
        assert_eq!(s.short_digest().len(), if digest { 8 } else { 1 });
        assert_eq!(
            PbftMessage::wire_kind(&phalanx_crypto::encode(&m)),
            Some(kind)
        );
        assert!(PbftMessage::KINDS.contains(&kind));
    }
    let cft = [
        (
            CftBody::RequestVote(RequestVote {
                term: 5,
                candidate: ValidatorIndex(1),
                last_log_index: Height(9),
                last_log_term: 4,
            }),
            ("request_vote", 9),
        ),
        (
            CftBody::Vote(VoteReply {
                term: 5,
                voter: ValidatorIndex(1),
                candidate: ValidatorIndex(2),
                granted: true,
            }),
            ("vote", 0),
        ),
        (
            CftBody::AppendEntries(AppendEntries {
                term: 5,
                leader: ValidatorIndex(1),
                prev_log_index: Height(9),
                prev_log_term: 4,
                entries: Vec::new(),
                leader_commit: Height(8),
            }),
            ("append_entries", 9),
        ),
        (
            CftBody::AppendAck(AppendAck {
                term: 5,
                follower: ValidatorIndex(1),
                success: true,
                last_index: Height(11),
            }),
            ("append_ack", 11),
        ),
    ];
    for (body, (kind, seq)) in cft {
        let m = CftMessage::sign(body, CHAIN, &Keypair::from_label("v1"));
        let s = m.summary();
        assert_eq!(
            (s.kind, s.view, s.seq, s.digest, s.signer),
            (kind, 5, seq, None, ValidatorIndex(1))
        );
        assert_eq!(
            CftMessage::wire_kind(&phalanx_crypto::encode(&m)),
            Some(kind)
        );
        assert!(CftMessage::KINDS.contains(&kind));
    }
    assert_eq!(PbftMessage::wire_kind(&[]), None);
    assert_eq!(PbftMessage::wire_kind(&[9]), None);
    assert_eq!(CftMessage::wire_kind(&[4]), None);
}

/// What a message promises is only what its sender signed: a relayed
/// NEW-VIEW's pre-prepares are the primary's, an echo's vote is the
/// primary's, evidence is about somebody else.
#[test]
fn promises_are_only_the_senders_own() {
    use phalanx_ledger::{Evidence, VoteKind};
    let prepare = PbftMessage::Prepare(vote(VoteKind::Prepare, 2, 7));
    let p = prepare.promises(ValidatorIndex(1));
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].what, p[0].view, p[0].seq), ("prepare", 2, 7));
    assert!(prepare.promises(ValidatorIndex(2)).is_empty());
    let echo = PbftMessage::Echo(vote(VoteKind::PrePrepare, 2, 7));
    assert!(echo.promises(ValidatorIndex(1)).is_empty());
    let evidence = PbftMessage::Evidence(Evidence {
        first: vote(VoteKind::Prepare, 1, 9),
        second: vote(VoteKind::Prepare, 1, 9),
    });
    assert!(evidence.promises(ValidatorIndex(1)).is_empty());
    assert_eq!(evidence.evidence_offender(), Some(ValidatorIndex(1)));
}
