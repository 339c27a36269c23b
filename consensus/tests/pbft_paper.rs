//! One test per PBFT rule, each citing Castro & Liskov (TOCS 2002). Handler
//! tests feed one input and compare the outputs (docs/testing.md).

mod common;

use common::*;
use phalanx_consensus::pbft::messages::{Complaint, PrePrepare, ViewChange};
use phalanx_consensus::pbft::view_change::{null_payload, plan_new_view};
use phalanx_consensus::{
    Config, Engine, Input, Output, Pbft, PbftMessage, PbftRecord, Restored, TimeoutKind,
};
use phalanx_crypto::Hash;
use phalanx_ledger::{Height, Justification, SignedVote, ValidatorIndex, VoteKind};

/// §4.2: a backup that accepts a PRE-PREPARE persists, then multicasts, its
/// PREPARE (and then echoes the primary's vote to the other backups).
#[test]
fn s4_2_backup_prepares_after_persisting() {
    let mut e = engine(4, 1);
    let p = payload(0, 1, 2);
    let pp = pre_prepare(0, 1, &p);
    let PbftMessage::PrePrepare(PrePrepare { vote: primary, .. }) = &pp else {
        unreachable!()
    };
    let primary = *primary;
    let out = e.handle(0, msg(0, pp));
    let prepare = vote(VoteKind::Prepare, 0, 1, p.digest(), 1);
    let echo = |to| Output::Send {
        to: ValidatorIndex(to),
        message: PbftMessage::Echo(primary),
    };
    assert_eq!(
        out,
        vec![
            Output::Persist(PbftRecord::Vote(prepare)),
            Output::Broadcast(PbftMessage::Prepare(prepare)),
            Output::ScheduleTimeout {
                kind: TimeoutKind::Progress { view: 0 },
                after_ms: 1000
            },
            echo(2),
            echo(3),
        ]
    );
}

/// §4.2: the primary assigns the next sequence number, persists and multicasts PRE-PREPARE.
#[test]
fn s4_2_primary_pre_prepares_in_sequence() {
    let mut e = engine(4, 0);
    let out = e.handle(5, Input::Transactions(vec![transfer(0, 1, 1, 0)]));
    let pps: Vec<_> = broadcasts(&out)
        .into_iter()
        .filter_map(|m| match m {
            PbftMessage::PrePrepare(pp) => Some(pp.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(pps.len(), 1);
    assert_eq!(
        (pps[0].vote.vote.view, pps[0].vote.vote.seq),
        (0, Height(1))
    );
    assert_eq!(pps[0].payload.digest(), pps[0].vote.vote.digest);
    // Save before send: the Persist of the vote precedes its broadcast.
    let persist_at = out
        .iter()
        .position(|o| *o == Output::Persist(PbftRecord::Vote(pps[0].vote)))
        .unwrap();
    let send_at = out
        .iter()
        .position(|o| matches!(o, Output::Broadcast(PbftMessage::PrePrepare(_))))
        .unwrap();
    assert!(persist_at < send_at);
}

/// §4.2: prepared = pre-prepare + 2f matching PREPAREs from distinct backups;
/// then the replica persists the certificate and multicasts COMMIT.
#[test]
fn s4_2_prepared_needs_2f_prepares_then_commits() {
    let mut e = engine(4, 1);
    let p = payload(0, 1, 1);
    let d = p.digest();
    e.handle(0, msg(0, pre_prepare(0, 1, &p)));
    // One other prepare (plus our own) = 2f = 2: prepared.
    // A PREPARE from the primary does not count (§4.2).
    let out = e.handle(
        0,
        msg(0, PbftMessage::Prepare(vote(VoteKind::Prepare, 0, 1, d, 0))),
    );
    assert!(out.is_empty());
    // A prepare for another digest does not count.
    let out = e.handle(
        0,
        msg(
            3,
            PbftMessage::Prepare(vote(VoteKind::Prepare, 0, 1, Hash::digest(b"x"), 3)),
        ),
    );
    assert!(out.is_empty());
    let out = e.handle(
        0,
        msg(2, PbftMessage::Prepare(vote(VoteKind::Prepare, 0, 1, d, 2))),
    );
    let commit = vote(VoteKind::Commit, 0, 1, d, 1);
    assert!(
        matches!(&out[0], Output::Persist(PbftRecord::Prepared(r)) if r.cert.slot() == (0, Height(1), d) && r.payload.digest() == d)
    );
    assert_eq!(out[1], Output::Persist(PbftRecord::Vote(commit)));
    assert_eq!(out[2], Output::Broadcast(PbftMessage::Commit(commit)));
    assert_eq!(out.len(), 3);
}

/// §4.2: committed-local with 2f+1 matching COMMITs; execution strictly in
/// sequence order, with the commit certificate as justification.
#[test]
fn s4_2_commit_quorum_and_in_order_execution() {
    let mut e = engine(4, 3);
    let (p1, p2) = (payload(0, 1, 1), payload(0, 2, 0));
    e.handle(0, msg(0, pre_prepare(0, 1, &p1)));
    e.handle(0, msg(0, pre_prepare(0, 2, &p2)));
    let commit_all = |e: &mut Pbft, seq: u64, d: Hash| -> Vec<Output<PbftMessage, PbftRecord>> {
        let mut out = Vec::new();
        for v in 0..3 {
            out.extend(e.handle(
                0,
                msg(v, PbftMessage::Commit(vote(VoteKind::Commit, 0, seq, d, v))),
            ));
        }
        out
    };
    let out2 = commit_all(&mut e, 2, p2.digest());
    assert!(
        !out2.iter().any(|o| matches!(o, Output::Commit { .. })),
        "seq 2 must wait for seq 1"
    );
    let out1 = commit_all(&mut e, 1, p1.digest());
    let commits: Vec<_> = out1
        .iter()
        .filter_map(|o| match o {
            Output::Commit {
                payload,
                justification: Justification::Pbft(cert),
            } => Some((payload.height, cert.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        commits.iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![Height(1), Height(2)]
    );
    for (_, cert) in &commits {
        assert_eq!(cert.commits.len(), 3);
        cert.verify(CHAIN, &e.config().validators, 3).unwrap();
    }
}

/// §4.2: PRE-PREPAREs are accepted only from the view's primary, in the
/// current view, between the watermarks, with a payload matching the digest.
#[test]
fn s4_2_pre_prepare_acceptance_conditions() {
    let mut e = engine(4, 1);
    let p = payload(0, 1, 1);
    // Signed by a non-primary.
    let forged = PbftMessage::PrePrepare(PrePrepare {
        vote: vote(VoteKind::PrePrepare, 0, 1, p.digest(), 2),
        payload: p.clone(),
    });
    assert!(e.handle(0, msg(2, forged)).is_empty());
    // Beyond the high watermark (h + window = 0 + 16).
    let far = payload(0, 17, 0);
    assert!(e.handle(0, msg(0, pre_prepare(0, 17, &far))).is_empty());
    // Payload not matching the digest.
    let other = payload(0, 1, 2);
    let mismatched = PbftMessage::PrePrepare(PrePrepare {
        vote: vote(VoteKind::PrePrepare, 0, 1, p.digest(), 0),
        payload: other,
    });
    assert!(e.handle(0, msg(0, mismatched)).is_empty());
    assert!(
        e.counters().bad_signature >= 1 && e.counters().invalid >= 2,
        "{:?}",
        e.counters()
    );
    // The genuine one is accepted.
    assert!(!e.handle(0, msg(0, pre_prepare(0, 1, &p))).is_empty());
}

/// §4.2 batching: the primary proposes at once when idle or with B
/// transactions; otherwise it waits for the batch timer.
#[test]
fn s4_2_batching_by_size_or_timer() {
    let mut e = engine(4, 0);
    let pp_count = |out: &[Output<PbftMessage, PbftRecord>]| {
        broadcasts(out)
            .iter()
            .filter(|m| matches!(m, PbftMessage::PrePrepare(_)))
            .count()
    };
    // Idle pipeline: propose the single transaction immediately.
    assert_eq!(
        pp_count(&e.handle(0, Input::Transactions(vec![transfer(0, 1, 1, 0)]))),
        1
    );
    // Block 1 in flight: 3 more transactions (< B = 10) wait, and the batch timer is armed.
    let out = e.handle(
        1,
        Input::Transactions((1..4).map(|k| transfer(0, 1, 1, k)).collect()),
    );
    assert_eq!(pp_count(&out), 0);
    assert!(out.contains(&Output::ScheduleTimeout {
        kind: TimeoutKind::Batch,
        after_ms: 10
    }));
    // The timer fires: propose what is there.
    let out = e.handle(11, Input::Timeout(TimeoutKind::Batch));
    assert_eq!(pp_count(&out), 1);
    // A full batch of B = 10 goes out without waiting.
    let out = e.handle(
        12,
        Input::Transactions((4..14).map(|k| transfer(0, 1, 1, k)).collect()),
    );
    assert_eq!(pp_count(&out), 1);
}

/// §4.2 watermarks: several sequence numbers in flight, but never beyond
/// h + window; §4.3: a stable checkpoint advances h and proposals resume.
#[test]
fn s4_2_watermark_window_bounds_in_flight_proposals() {
    let mut e = engine(4, 0);
    let mut proposed = 0;
    // 200 transactions, B = 10: 20 batches wanted, window = 16 allowed.
    for k in 0..200u64 {
        let out = e.handle(
            k,
            Input::Transactions(vec![transfer((k % 4) as usize, 1, 1, k / 4)]),
        );
        proposed += broadcasts(&out)
            .iter()
            .filter(|m| matches!(m, PbftMessage::PrePrepare(_)))
            .count();
        let out = e.handle(k, Input::Timeout(TimeoutKind::Batch));
        proposed += broadcasts(&out)
            .iter()
            .filter(|m| matches!(m, PbftMessage::PrePrepare(_)))
            .count();
    }
    assert_eq!(proposed, 16, "exactly the window is in flight");
}

/// §4.3: every K executed blocks a replica multicasts CHECKPOINT; 2f+1
/// matching ones make it stable and the log below is discarded.
#[test]
fn s4_3_checkpoints_become_stable_and_collect_garbage() {
    let mut c = Cluster::new(4, params());
    c.submit((0..45).map(|k| transfer(1, 2, 1, k)).collect());
    assert!(c.run_until(20_000, |c| (0..4).all(|i| c.committed_tx_count(i) == 45)));
    let height = c.height(0);
    assert!(height >= 5, "several blocks: {height}");
    for i in 0..4 {
        let s = c.nodes[i].engine.status();
        assert_eq!(s.stable_checkpoint.0, height / 4 * 4, "node {i}");
        assert!(c.nodes[i]
            .records
            .iter()
            .any(|r| matches!(r, PbftRecord::StableCheckpoint { proof, .. } if proof.len() >= 3)));
        // Checkpoint votes carry the block hash at that height.
        let cp = c.nodes[i].sent.iter().find_map(|m| match m {
            PbftMessage::Checkpoint(v) => Some(*v),
            _ => None,
        });
        let cp = cp.unwrap();
        assert_eq!(
            cp.vote.digest,
            c.nodes[i].blocks[cp.vote.seq.0 as usize].hash()
        );
    }
}

/// §4.4: on timeout a backup sends VIEW-CHANGE with its prepared
/// certificates; the new primary's NEW-VIEW re-proposes them and fills gaps
/// with null blocks; backups accept it by recomputation.
#[test]
fn s4_4_view_change_carries_prepared_certificates_and_null_blocks() {
    let mut c = Cluster::new(4, params());
    // Let seq 1 and 3 prepare everywhere but stop commits: mute nothing, but
    // drop every COMMIT from the network.
    let p1 = payload(0, 1, 1);
    let p3 = payload(0, 3, 1);
    for (seq, p) in [(1, &p1), (3, &p3)] {
        for i in 1..4 {
            c.input(i, msg(0, pre_prepare(0, seq, p)));
        }
    }
    while let Some((from, to, m)) = c.net.pop_front() {
        if !matches!(m, PbftMessage::Commit(_)) {
            c.input(to.as_usize(), Input::Message { from, message: m });
        }
    }
    // Replicas time out: each complains about view 0 and keeps working in
    // it (and asks peers whether it merely missed the commit).
    for i in 1..4 {
        let out = c.input(i, Input::Timeout(TimeoutKind::Progress { view: 0 }));
        assert!(
            broadcasts(&out)
                .iter()
                .any(|m| matches!(m, PbftMessage::Complaint(k) if k.view == 0)),
            "node {i} complained: {out:?}"
        );
        assert!(out.iter().any(|o| matches!(o, Output::RequestSync { .. })));
    }
    // The complaints meet: f+1 of them move each replica to view 1, whose
    // VIEW-CHANGE carries the prepared certificates and the complaints;
    // node 1 (primary of view 1) then sends NEW-VIEW.
    let mut new_view = None;
    let mut view_changes = std::collections::BTreeMap::new();
    while let Some((from, to, m)) = c.net.pop_front() {
        if let PbftMessage::NewView(nv) = &m {
            new_view = Some(nv.clone());
        }
        let i = to.as_usize();
        let out = c.input(i, Input::Message { from, message: m });
        // Node 0, the primary of view 0, joins too; the backups are checked.
        let Some(sent) = out
            .iter()
            .position(|o| matches!(o, Output::Broadcast(PbftMessage::ViewChange(_))))
            .filter(|_| i != 0)
        else {
            continue;
        };
        let Output::Broadcast(PbftMessage::ViewChange(vc)) = &out[sent] else {
            unreachable!()
        };
        assert_eq!(vc.body.new_view, 1);
        let seqs: Vec<u64> = vc.body.prepared.iter().map(|p| p.slot().1 .0).collect();
        assert_eq!(seqs, vec![1, 3], "node {i}");
        assert_eq!(vc.justification.len(), 2, "f+1 complaints justify it");
        assert!(vc.justification.iter().all(|k| k.view == 0));
        // Persisted view before the view change is sent.
        let persisted = out.iter().position(|o| {
            *o == Output::Persist(PbftRecord::View {
                view: 1,
                active: false,
            })
        });
        assert!(persisted.unwrap() < sent);
        view_changes.insert(i, vc.clone());
    }
    assert_eq!(view_changes.len(), 3, "every backup left view 0");
    let nv = new_view.expect("NEW-VIEW sent");
    let digests: Vec<(u64, Hash)> = nv
        .pre_prepares
        .iter()
        .map(|v| (v.vote.seq.0, v.vote.digest))
        .collect();
    let cfg = c.nodes[2].engine.config().clone();
    assert_eq!(
        digests,
        vec![
            (1, p1.digest()),
            (2, null_payload(&cfg, 1, Height(2)).digest()),
            (3, p3.digest())
        ]
    );
    assert_eq!(plan_new_view(&cfg, 1, &nv.view_changes).entries.len(), 3);
    // Everyone is in view 1 and commits seqs 1..3 (seq 2 as an empty block).
    assert!(c.run_until(10_000, |c| (0..4).all(|i| c.height(i) >= 3)));
    c.assert_agreement();
    assert!(c.nodes[2].blocks[2].txs.is_empty());
    assert_eq!(c.nodes[2].blocks[1].txs.len(), 1);
    // A NEW-VIEW whose pre-prepares differ from recomputation is refused.
    let mut forged = nv.clone();
    forged.pre_prepares.swap(0, 2);
    assert!(c.nodes[3].engine.verify_new_view(&forged).is_err());
    let mut short = nv;
    short.view_changes.truncate(2);
    assert!(c.nodes[3].engine.verify_new_view(&short).is_err());
}

/// §4.4 with digests only: a VIEW-CHANGE names prepared slots by digest
/// (no payloads, so its size does not grow with the blocks in flight), and
/// a replica that never received a re-proposed payload still prepares and
/// commits it by digest, then gets the block by catch-up to execute it.
#[test]
fn s4_4_a_payload_missing_at_the_view_change_is_voted_by_digest_and_fetched() {
    let mut c = Cluster::new(4, params());
    let p1 = payload(0, 1, 3);
    let d = p1.digest();
    // Node 3 never gets the PRE-PREPARE; nodes 1 and 2 prepare seq 1 (with
    // node 3 seeing their PREPAREs). No COMMIT gets through.
    for i in 1..3 {
        c.input(i, msg(0, pre_prepare(0, 1, &p1)));
    }
    while let Some((from, to, m)) = c.net.pop_front() {
        if !matches!(m, PbftMessage::Commit(_) | PbftMessage::Echo(_)) {
            c.input(to.as_usize(), Input::Message { from, message: m });
        }
    }
    assert!(c.nodes[3].engine.status().pending_txs == 0);
    assert!(c.nodes[1..3].iter().all(|n| n
        .records
        .iter()
        .any(|r| matches!(r, PbftRecord::Prepared(r) if r.cert.slot().2 == d))));
    // Everyone times out and moves to view 1 (primary: node 1).
    let mut sizes = Vec::new();
    for i in 1..4 {
        c.input(i, Input::Timeout(TimeoutKind::Progress { view: 0 }));
    }
    while let Some((from, to, m)) = c.net.pop_front() {
        if let PbftMessage::ViewChange(vc) = &m {
            sizes.push(phalanx_crypto::encode(&m).len());
            assert!(vc.body.prepared.iter().all(|p| p.slot().2 == d));
        }
        let to = to.as_usize();
        // Node 3 must learn the block from its peers, not from a COMMIT of
        // view 0 it could pair with a payload.
        c.input(to, Input::Message { from, message: m });
    }
    assert!(!sizes.is_empty());
    assert!(
        sizes.iter().all(|s| *s < 2_048),
        "a VIEW-CHANGE carries digests, not payloads: {sizes:?}"
    );
    // Node 3 prepared the re-proposal by digest (a digest-only record) and,
    // once committed, fetched the block by catch-up; all agree.
    assert!(c.run_until(10_000, |c| (0..4).all(|i| c.height(i) >= 1)));
    c.assert_agreement();
    assert_eq!(c.nodes[3].blocks[1].header.payload_digest(), d);
    assert!(c.nodes[3].records.iter().any(
        |r| matches!(r, PbftRecord::PreparedDigest(cert) if cert.slot() == (1, Height(1), d))
    ));
    assert!(c
        .sync_requests
        .iter()
        .any(|(i, from)| *i == 3 && *from == Height(1)));
}

/// §4.5.2: a replica that sees f+1 VIEW-CHANGEs for higher views joins the
/// smallest, even before its own timer fires.
#[test]
fn s4_5_2_joins_on_f_plus_1_view_changes() {
    let mut vcs: Vec<ViewChange> = Vec::new();
    // Without pending work a progress timeout does nothing.
    let mut idle = engine(4, 2);
    assert!(idle
        .handle(0, Input::Timeout(TimeoutKind::Progress { view: 0 }))
        .is_empty());
    // Two view changes to view 1 that carry no complaints.
    for voter in [2, 3] {
        if let PbftMessage::ViewChange(vc) = empty_view_change(1, voter) {
            vcs.push(vc);
        }
    }
    assert_eq!(vcs.len(), 2);
    let mut e1 = engine(4, 1);
    let out = e1.handle(0, msg(2, PbftMessage::ViewChange(vcs[0].clone())));
    assert!(
        broadcasts(&out).is_empty(),
        "one view change (f) is not enough"
    );
    let out = e1.handle(0, msg(3, PbftMessage::ViewChange(vcs[1].clone())));
    let sent: Vec<_> = broadcasts(&out).into_iter().map(|m| m.kind()).collect();
    // Joined view 1 and, as its primary with a quorum (2 + itself), started it.
    assert!(
        sent.contains(&"view_change") && sent.contains(&"new_view"),
        "{sent:?}"
    );
    assert_eq!(e1.status().view, 1);
    assert!(!e1.status().view_changing);
}

fn view_change_timer(out: &[Output<PbftMessage, PbftRecord>]) -> Option<(TimeoutKind, u64)> {
    out.iter().find_map(|o| match o {
        Output::ScheduleTimeout {
            kind: k @ TimeoutKind::ViewChange { .. },
            after_ms,
        } => Some((*k, *after_ms)),
        _ => None,
    })
}

/// A COMPLAINT about `view` from `voter`.
fn complaint(view: u64, voter: usize) -> PbftMessage {
    PbftMessage::Complaint(Complaint::sign(
        view,
        ValidatorIndex(voter as u32),
        CHAIN,
        &validator_key(voter),
    ))
}

/// Node 0 with a pending transfer, moved to view 1 by its own progress
/// timeout and one more complaint (f+1 = 2); returns the engine and the
/// outputs of the step that moved it.
fn moved_to_view_1() -> (Pbft, Vec<Output<PbftMessage, PbftRecord>>) {
    let mut e = engine(4, 0);
    e.handle(0, Input::Transactions(vec![transfer(0, 1, 1, 0)]));
    let out = e.handle(0, Input::Timeout(TimeoutKind::Progress { view: 0 }));
    assert!(
        view_change_timer(&out).is_none(),
        "one complaint moves nobody"
    );
    assert_eq!(e.status().view, 0);
    assert!(!e.status().view_changing, "it keeps working in view 0");
    let out = e.handle(0, msg(2, complaint(0, 2)));
    assert_eq!(e.status().view, 1);
    assert!(e.status().view_changing);
    (e, out)
}

/// §4.5.2: when a view's NEW-VIEW does not come in time, the replicas
/// waiting for it complain, and f+1 complaints move them to the next view
/// with the timeout doubled.
#[test]
fn s4_5_2_view_change_timeout_backs_off() {
    let (mut e, out) = moved_to_view_1();
    let (mut kind, first) = view_change_timer(&out).unwrap();
    let mut timeouts = vec![first];
    for target in 1..=2u64 {
        // Two others want `target` too, but not its primary: no NEW-VIEW.
        let others: Vec<usize> = (1..4).filter(|v| *v as u64 != target % 4).collect();
        for &voter in &others {
            e.handle(0, msg(voter, empty_view_change(target, voter)));
        }
        let out = e.handle(0, Input::Timeout(kind));
        assert!(broadcasts(&out)
            .iter()
            .any(|m| matches!(m, PbftMessage::Complaint(c) if c.view == target)));
        assert_eq!(
            e.status().view,
            target,
            "its complaint alone moves it nowhere"
        );
        let out = e.handle(0, msg(others[0], complaint(target, others[0])));
        let (k, after) = view_change_timer(&out).unwrap();
        assert_eq!(k, TimeoutKind::ViewChange { view: target + 1 });
        timeouts.push(after);
        kind = k;
    }
    assert_eq!(timeouts, vec![1000, 2000, 4000]);
    assert_eq!(e.status().view, 3);
}

/// A replica alone in a view change stays in it and resends its
/// VIEW-CHANGE (so an isolated replica does not climb views nobody else is
/// in); its own complaints cannot move it.
#[test]
fn s4_5_2_a_replica_alone_in_a_view_change_waits_and_resends() {
    let (mut e, out) = moved_to_view_1();
    let own = broadcasts(&out)
        .into_iter()
        .find(|m| matches!(m, PbftMessage::ViewChange(_)))
        .unwrap()
        .clone();
    let (kind, _) = view_change_timer(&out).unwrap();
    // One other replica (f) is not a quorum either.
    e.handle(0, msg(2, empty_view_change(1, 2)));
    for _ in 0..3 {
        let out = e.handle(0, Input::Timeout(kind));
        assert_eq!(
            e.status().view,
            1,
            "must not move on without f+1 complaints"
        );
        assert!(e.status().view_changing);
        assert!(broadcasts(&out).contains(&&own), "resends its VIEW-CHANGE");
        assert_eq!(view_change_timer(&out).map(|t| t.0), Some(kind));
    }
}

/// Issue 22: a replica that left a view on f+1 complaints is never left
/// ahead alone. Its VIEW-CHANGE carries the complaints, and a replica still
/// running the earlier view joins on that one message (moving up is always
/// safe; f+1 complaints mean an honest replica saw the view fail).
#[test]
fn a_justified_view_change_is_joined_by_a_replica_still_in_the_earlier_view() {
    let (_, out) = moved_to_view_1();
    let vc = broadcasts(&out)
        .into_iter()
        .find_map(|m| match m {
            PbftMessage::ViewChange(vc) => Some(vc.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(vc.justification.len(), 2);
    assert!(
        out.iter().any(
            |o| matches!(o, Output::Persist(PbftRecord::ViewJustification(j)) if j.len() == 2)
        ),
        "the justification is persisted for resends after a restart"
    );
    let mut e3 = engine(4, 3);
    let out = e3.handle(0, msg(0, PbftMessage::ViewChange(vc.clone())));
    assert_eq!(
        e3.status().view,
        1,
        "joined view 1 on one justified VIEW-CHANGE"
    );
    assert!(e3.status().view_changing);
    assert!(broadcasts(&out)
        .iter()
        .any(|m| matches!(m, PbftMessage::ViewChange(v) if v.body.new_view == 1)));
    // Without the complaints the same VIEW-CHANGE is one vote of f+1.
    let mut bare = vc.clone();
    bare.justification.clear();
    let mut e2 = engine(4, 2);
    e2.handle(0, msg(0, PbftMessage::ViewChange(bare)));
    assert_eq!(e2.status().view, 0);
    // Forged complaints (signed by another key) do not count.
    let mut forged = vc;
    for c in &mut forged.justification {
        c.signature.0[0] ^= 1;
    }
    let mut e1 = engine(4, 1);
    e1.handle(0, msg(0, PbftMessage::ViewChange(forged)));
    assert_eq!(e1.status().view, 0);
    assert!(!e1.status().view_changing);
}

/// Complaints a Byzantine validator can make up are dropped, not obeyed:
/// about a view far ahead (bounded memory; the largest view would overflow
/// naive arithmetic), with a bad signature, or from a stranger; and one
/// validator's complaint counts once however often it is sent.
#[test]
fn made_up_complaints_move_nobody() {
    let mut e = engine(4, 3);
    for view in [u64::MAX, 65, 1_000] {
        e.handle(0, msg(1, complaint(view, 1)));
        e.handle(0, msg(2, complaint(view, 2)));
    }
    let mut forged = complaint(0, 2);
    if let PbftMessage::Complaint(c) = &mut forged {
        c.signature.0[3] ^= 1;
    }
    e.handle(0, msg(2, forged));
    let stranger = PbftMessage::Complaint(Complaint::sign(
        0,
        ValidatorIndex(9),
        CHAIN,
        &validator_key(9),
    ));
    e.handle(0, msg(0, stranger));
    for _ in 0..3 {
        e.handle(0, msg(1, complaint(0, 1)));
    }
    assert_eq!(e.status().view, 0);
    assert!(!e.status().view_changing);
    // A second, genuine complainer makes f+1.
    e.handle(0, msg(2, complaint(0, 2)));
    assert_eq!(e.status().view, 1);
}

/// Issue 22: the NEW-VIEW a replica accepted survives its restart, so it can
/// still hand it to a replica that restarted in the view change and missed
/// it; and a replica in an earlier view gets it in answer to its complaint.
#[test]
fn a_restarted_replica_still_hands_out_the_new_view_it_entered() {
    // Nodes 1, 2, 3 move to view 1 (node 1 is its primary) without node 0.
    let mut c = Cluster::new(4, params());
    for i in 1..4 {
        c.input(i, Input::Transactions(vec![transfer(0, 1, 1, 0)]));
    }
    for i in 1..4 {
        c.input(i, Input::Timeout(TimeoutKind::Progress { view: 0 }));
    }
    while let Some((from, to, m)) = c.net.pop_front() {
        if to.as_usize() != 0 {
            c.input(to.as_usize(), Input::Message { from, message: m });
        }
    }
    assert!(
        (1..4)
            .all(|i| c.nodes[i].engine.status().view == 1
                && !c.nodes[i].engine.status().view_changing)
    );
    // Node 2 restarts from its records: the NEW-VIEW is among them.
    let records = c.nodes[2].records.clone();
    assert!(records
        .iter()
        .any(|r| matches!(r, PbftRecord::NewView(nv) if nv.view == 1)));
    let g = genesis(4, params());
    let mut restarted = Pbft::restore(
        Config::from_genesis(&g, ValidatorIndex(2)).unwrap(),
        validator_key(2),
        Restored {
            records,
            last_executed: Height(0),
            last_block_hash: g.block().hash(),
            recent_blocks: Vec::new(),
        },
    );
    restarted.handle(0, Input::Start);
    assert_eq!(restarted.status().view, 1);
    // Node 0 restarted in the view change to view 1 and asks for it.
    let out = restarted.handle(5_000, msg(0, empty_view_change(1, 0)));
    let nv = out.iter().find_map(|o| match o {
        Output::Send {
            to,
            message: PbftMessage::NewView(nv),
        } if to.0 == 0 => Some(nv.clone()),
        _ => None,
    });
    let nv = nv.expect("the restarted replica resends the NEW-VIEW of view 1");
    let mut lone = engine(4, 0);
    lone.handle(0, Input::Timeout(TimeoutKind::Progress { view: 0 }));
    lone.handle(0, msg(1, PbftMessage::NewView(nv)));
    assert_eq!(lone.status().view, 1);
    assert!(!lone.status().view_changing, "node 0 entered view 1");
    // A replica still in view 0 complains about it: it gets the NEW-VIEW too.
    let out = restarted.handle(20_000, msg(3, complaint(0, 3)));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Send { to, message: PbftMessage::NewView(nv) } if to.0 == 3 && nv.view == 1
    )));
}

/// §4.5.2 liveness when a view can no longer complete: this replica and one
/// other want view 1, a third has moved on to view 2. Views never go back,
/// so the replica must get to a view an honest replica is in — but only
/// to one: a lone VIEW-CHANGE to view 2 may be a Byzantine forgery, and
/// following it at the timer would leave the replica alone there (the
/// simulator found that). A VIEW-CHANGE to view 2 that carries f+1
/// complaints about view 1 proves it, and the replica joins on arrival.
#[test]
fn s4_5_2_a_view_that_cannot_complete_is_left_only_for_one_an_honest_replica_is_in() {
    let start_in_view_1 = || {
        let g = genesis(4, params());
        let cfg = Config::from_genesis(&g, ValidatorIndex(3)).unwrap();
        let mut e = Pbft::restore(
            cfg,
            validator_key(3),
            Restored {
                records: vec![PbftRecord::View {
                    view: 1,
                    active: false,
                }],
                last_executed: Height(0),
                last_block_hash: g.block().hash(),
                recent_blocks: Vec::new(),
            },
        );
        e.handle(0, Input::Start);
        e.handle(0, msg(1, empty_view_change(1, 1)));
        e
    };
    let wants = |out: &[Output<PbftMessage, PbftRecord>], view: u64| {
        broadcasts(out)
            .iter()
            .any(|m| matches!(m, PbftMessage::ViewChange(vc) if vc.body.new_view == view))
    };
    let timer = TimeoutKind::ViewChange { view: 1 };

    let mut e = start_in_view_1();
    // One replica above, with nothing that proves view 1 failed: no join
    // on arrival, nor at the timer (it resends and complains instead).
    let out = e.handle(0, msg(2, empty_view_change(2, 2)));
    assert_eq!(e.status().view, 1);
    assert!(!wants(&out, 2));
    let out = e.handle(0, Input::Timeout(timer));
    assert_eq!(e.status().view, 1, "{out:?}");
    assert!(wants(&out, 1) && !wants(&out, 2), "{out:?}");

    // The same VIEW-CHANGE with f+1 complaints about view 1: joined at once.
    let mut e = start_in_view_1();
    let PbftMessage::ViewChange(mut vc) = empty_view_change(2, 2) else {
        unreachable!()
    };
    for voter in [1, 2] {
        let PbftMessage::Complaint(c) = complaint(1, voter) else {
            unreachable!()
        };
        vc.justification.push(c);
    }
    let out = e.handle(0, msg(2, PbftMessage::ViewChange(vc)));
    assert_eq!(e.status().view, 2);
    assert!(wants(&out, 2), "{out:?}");
}

/// A replica can persist a stable checkpoint it has not executed up to (a
/// quorum proved it while it lagged). Restarted as primary, it must not
/// propose at or below that checkpoint: the record of what it signed there
/// is garbage-collected, so a proposal could be its second PRE-PREPARE for
/// the slot (the 100,000-schedule simulator run found exactly that). It
/// catches up by sync, retried on a timer, and proposes above the
/// checkpoint.
#[test]
fn s4_3_restart_behind_its_stable_checkpoint_never_proposes_below_it() {
    let g = genesis(4, params());
    let cfg = Config::from_genesis(&g, ValidatorIndex(0)).unwrap();
    let mut e = Pbft::restore(
        cfg,
        validator_key(0),
        Restored {
            records: vec![PbftRecord::StableCheckpoint {
                seq: Height(4),
                digest: Hash::ZERO,
                proof: vec![],
            }],
            last_executed: Height(2),
            last_block_hash: g.block().hash(),
            recent_blocks: Vec::new(),
        },
    );
    let out = e.handle(0, Input::Start);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::RequestSync { from } if *from == Height(3))));
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::ScheduleTimeout {
                kind: TimeoutKind::Sync,
                ..
            }
        )),
        "the sync is retried until the blocks arrive: {out:?}"
    );
    let mut out = e.handle(0, Input::Transactions(vec![transfer(0, 1, 1, 0)]));
    out.extend(e.handle(0, Input::Timeout(TimeoutKind::Batch)));
    let proposed: Vec<u64> = broadcasts(&out)
        .iter()
        .filter_map(|m| match m {
            PbftMessage::PrePrepare(pp) => Some(pp.vote.vote.seq.0),
            _ => None,
        })
        .collect();
    assert!(proposed.iter().all(|s| *s > 4), "proposed {proposed:?}");
}

/// Liveness after a partition heals: a replica still asking for a view the
/// others have left gets what moves it on. For a view we entered, the
/// NEW-VIEW; for a view we gave up on, our own VIEW-CHANGE for it (so its
/// quorum completes and its timer can move it up).
#[test]
fn s4_5_2_stragglers_get_the_new_view_or_our_view_change() {
    let sends_to = |out: &[Output<PbftMessage, PbftRecord>], to: usize| -> Vec<&'static str> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { to: t, message } if t.0 as usize == to => Some(message.kind()),
                _ => None,
            })
            .collect()
    };
    // Validator 1 leads view 1: it joins on f+1 and sends NEW-VIEW.
    let mut primary = engine(4, 1);
    primary.handle(0, msg(0, empty_view_change(1, 0)));
    primary.handle(0, msg(2, empty_view_change(1, 2)));
    assert_eq!(primary.status().view, 1);
    assert!(!primary.status().view_changing);
    let out = primary.handle(0, msg(3, empty_view_change(1, 3)));
    assert_eq!(sends_to(&out, 3), vec!["new_view"]);

    // Validator 0 went on to view 2; validator 3 still asks for view 1.
    let mut ahead = engine(4, 0);
    ahead.handle(0, msg(2, empty_view_change(1, 2)));
    ahead.handle(0, msg(3, empty_view_change(1, 3)));
    ahead.handle(0, msg(2, empty_view_change(2, 2)));
    ahead.handle(0, msg(1, empty_view_change(2, 1)));
    assert_eq!(ahead.status().view, 2);
    let out = ahead.handle(0, msg(3, empty_view_change(1, 3)));
    assert_eq!(sends_to(&out, 3), vec!["view_change"]);
    // Once per view-change timeout (1 s here), not once per copy.
    let out = ahead.handle(10, msg(3, empty_view_change(1, 3)));
    assert!(sends_to(&out, 3).is_empty());
    let out = ahead.handle(1_500, msg(3, empty_view_change(1, 3)));
    assert_eq!(sends_to(&out, 3), vec!["view_change"]);
    // Validator 1 already asked for view 2: an old VIEW-CHANGE of its is a
    // late copy, not a straggler (answering would bounce between two
    // replicas that both left view 1).
    let out = ahead.handle(1_600, msg(1, empty_view_change(1, 1)));
    assert!(sends_to(&out, 1).is_empty());
    // Nothing is sent for a view it never asked for.
    let out = ahead.handle(0, msg(3, empty_view_change(0, 3)));
    assert!(sends_to(&out, 3).is_empty());
}

/// A replica that missed a view change (down or cut off while the others
/// moved on) follows f+1 validators voting in a later view: it asks for that
/// view, and whoever is in it answers with the NEW-VIEW.
#[test]
fn s4_5_2_votes_of_f_plus_1_validators_in_a_later_view_pull_a_replica_up() {
    let mut e = engine(4, 3);
    let d = payload(2, 1, 1).digest();
    let out = e.handle(
        0,
        msg(1, PbftMessage::Prepare(vote(VoteKind::Prepare, 2, 1, d, 1))),
    );
    assert!(
        broadcasts(&out).is_empty(),
        "one validator (f) is not enough"
    );
    assert_eq!(e.status().view, 0);
    let out = e.handle(
        0,
        msg(0, PbftMessage::Commit(vote(VoteKind::Commit, 2, 1, d, 0))),
    );
    let vc = broadcasts(&out)
        .into_iter()
        .find_map(|m| match m {
            PbftMessage::ViewChange(vc) => Some(vc.clone()),
            _ => None,
        })
        .expect("asks for view 2");
    assert_eq!(vc.body.new_view, 2);
    assert_eq!(e.status().view, 2);
    // A replica in view 2 answers that VIEW-CHANGE with its NEW-VIEW.
    let mut primary = engine(4, 2);
    primary.handle(0, msg(0, empty_view_change(2, 0)));
    primary.handle(0, msg(1, empty_view_change(2, 1)));
    assert!(!primary.status().view_changing);
    let out = primary.handle(0, msg(3, PbftMessage::ViewChange(vc)));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Send { to, message: PbftMessage::NewView(_) } if to.0 == 3
    )));
}

/// Every message is signed with a domain tag: a PREPARE signature replayed
/// as a COMMIT does not verify; the signer is checked against the validator
/// set, not the transport sender.
#[test]
fn signatures_are_domain_separated_and_signer_checked() {
    let mut e = engine(4, 1);
    let p = payload(0, 1, 0);
    e.handle(0, msg(0, pre_prepare(0, 1, &p)));
    let prepare = vote(VoteKind::Prepare, 0, 1, p.digest(), 2);
    let mut as_commit = prepare;
    as_commit.vote.kind = VoteKind::Commit;
    assert!(e
        .handle(0, msg(2, PbftMessage::Commit(as_commit)))
        .is_empty());
    assert_eq!(e.counters().bad_signature, 1);
    // Signed by validator 2, claiming validator 3: dropped.
    let mut claimed = prepare;
    claimed.vote.voter = ValidatorIndex(3);
    assert!(e
        .handle(0, msg(3, PbftMessage::Prepare(claimed)))
        .is_empty());
    assert_eq!(e.counters().bad_signature, 2);
    // Validly signed by 2 but relayed by 3: accepted (it completes the prepared certificate).
    let out = e.handle(0, msg(3, PbftMessage::Prepare(prepare)));
    assert!(broadcasts(&out)
        .iter()
        .any(|m| matches!(m, PbftMessage::Commit(_))));
}

/// Equivocation: two signed PRE-PREPAREs for one (view, seq) with different
/// digests become evidence; the primary is treated as faulty and replaced.
#[test]
fn equivocating_primary_produces_evidence_and_a_view_change() {
    let mut e = engine(4, 2);
    let (a, b) = (payload(0, 1, 1), payload(0, 1, 2));
    e.handle(0, msg(0, pre_prepare(0, 1, &a)));
    let out = e.handle(0, msg(0, pre_prepare(0, 1, &b)));
    let ev = out.iter().find_map(|o| match o {
        Output::Evidence(ev) => Some(ev.clone()),
        _ => None,
    });
    let ev = ev.expect("evidence");
    assert_eq!(ev.offender(), ValidatorIndex(0));
    ev.verify(CHAIN, &e.config().validators).unwrap();
    assert!(broadcasts(&out)
        .iter()
        .any(|m| matches!(m, PbftMessage::Evidence(_))));
    assert!(broadcasts(&out)
        .iter()
        .any(|m| matches!(m, PbftMessage::ViewChange(_))));
    assert!(e.faulty().contains(&ValidatorIndex(0)));
    // Evidence is proposed in a block by the next primary.
    let mut c = Cluster::new(4, params());
    c.input(1, msg(0, pre_prepare(0, 1, &a)));
    c.input(1, msg(0, pre_prepare(0, 1, &b)));
    assert!(c.run_until(30_000, |c| (1..4)
        .all(|i| c.nodes[i].blocks.iter().any(|b| !b.evidence.is_empty()))));
    c.assert_agreement();
}

/// The echo: a backup passes the primary's PRE-PREPARE vote on to the
/// other backups, once per slot; two backups handed different proposals
/// each find out from the other's echo and hold verified evidence.
#[test]
fn an_echo_of_another_proposal_catches_an_equivocating_primary() {
    let (a, b) = (payload(0, 1, 1), payload(0, 1, 2));
    let (mut e2, mut e3) = (engine(4, 2), engine(4, 3));
    let echoes = |out: &[Output<PbftMessage, PbftRecord>]| -> Vec<(u32, SignedVote)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send {
                    to,
                    message: PbftMessage::Echo(v),
                } => Some((to.0, *v)),
                _ => None,
            })
            .collect()
    };
    let out2 = e2.handle(0, msg(0, pre_prepare(0, 1, &a)));
    let out3 = e3.handle(0, msg(0, pre_prepare(0, 1, &b)));
    // Sent to the other backups only (not back to the primary, not to itself).
    let (echo2, echo3) = (echoes(&out2), echoes(&out3));
    assert_eq!(
        echo2.iter().map(|(to, _)| *to).collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert_eq!(echo2[0].1.vote.digest, a.digest());
    // The same proposal again is not echoed again.
    assert!(echoes(&e2.handle(0, msg(0, pre_prepare(0, 1, &a)))).is_empty());
    let out = e2.handle(0, msg(3, PbftMessage::Echo(echo3[0].1)));
    let ev = out
        .iter()
        .find_map(|o| match o {
            Output::Evidence(ev) => Some(ev.clone()),
            _ => None,
        })
        .expect("evidence");
    assert_eq!(ev.offender(), ValidatorIndex(0));
    ev.verify(CHAIN, &e2.config().validators).unwrap();
    assert!(e2.faulty().contains(&ValidatorIndex(0)));
    // An echo can also come first: the PRE-PREPARE then conflicts with it.
    let out = e3.handle(0, msg(2, PbftMessage::Echo(echo2[0].1)));
    assert!(out.iter().any(|o| matches!(o, Output::Evidence(_))));
}

/// A matching echo is nothing new, and an echo cannot frame the primary:
/// a vote another validator signed, or one with a broken signature, is
/// dropped before it is kept.
#[test]
fn matching_and_forged_echoes_are_no_evidence() {
    let a = payload(0, 1, 1);
    let mut e = engine(4, 2);
    let out = e.handle(0, msg(0, pre_prepare(0, 1, &a)));
    let PbftMessage::PrePrepare(pp) = pre_prepare(0, 1, &a) else {
        unreachable!()
    };
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Send {
            message: PbftMessage::Echo(_),
            ..
        }
    )));
    assert!(e.handle(0, msg(3, PbftMessage::Echo(pp.vote))).is_empty());
    // Signed by validator 3, claiming to be the primary's.
    let mut forged = vote(VoteKind::PrePrepare, 0, 1, Hash([9; 32]), 3);
    forged.vote.voter = ValidatorIndex(0);
    // Validator 3's own vote, which names it (not the primary).
    let own = vote(VoteKind::PrePrepare, 0, 1, Hash([9; 32]), 3);
    // The primary's real vote for another digest, one bit flipped.
    let mut flipped = vote(VoteKind::PrePrepare, 0, 1, Hash([9; 32]), 0);
    flipped.signature.0[3] ^= 1;
    for echo in [forged, own, flipped] {
        let out = e.handle(0, msg(3, PbftMessage::Echo(echo)));
        assert!(
            !out.iter().any(|o| matches!(o, Output::Evidence(_))),
            "{echo:?}"
        );
    }
    assert!(e.faulty().is_empty());
    // A forged echo for a slot not seen yet does not take the slot: the
    // primary's real PRE-PREPARE is still accepted (and prepared).
    let b = payload(0, 2, 1);
    let mut forged = vote(VoteKind::PrePrepare, 0, 2, Hash([7; 32]), 3);
    forged.vote.voter = ValidatorIndex(0);
    e.handle(0, msg(3, PbftMessage::Echo(forged)));
    let out = e.handle(0, msg(0, pre_prepare(0, 2, &b)));
    assert!(broadcasts(&out)
        .iter()
        .any(|m| matches!(m, PbftMessage::Prepare(_))));
    assert!(e.faulty().is_empty());
}

/// Save before send, across a restart: a replica that PREPAREd one digest
/// for a slot never PREPAREs another for it after restarting.
#[test]
fn restart_never_double_signs() {
    let g = genesis(4, params());
    let cfg = Config::from_genesis(&g, ValidatorIndex(1)).unwrap();
    let mut e = Pbft::new(cfg.clone(), validator_key(1), g.block().hash());
    let (a, b) = (payload(0, 1, 1), payload(0, 1, 2));
    let out = e.handle(0, msg(0, pre_prepare(0, 1, &a)));
    let records: Vec<PbftRecord> = out
        .iter()
        .filter_map(|o| match o {
            Output::Persist(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    // Crash: volatile log gone, persisted records kept.
    let mut r = Pbft::restore(
        cfg,
        validator_key(1),
        Restored {
            records,
            last_executed: Height(0),
            last_block_hash: g.block().hash(),
            recent_blocks: Vec::new(),
        },
    );
    r.handle(1, Input::Start);
    let out = r.handle(1, msg(0, pre_prepare(0, 1, &b)));
    assert!(
        !broadcasts(&out)
            .iter()
            .any(|m| matches!(m, PbftMessage::Prepare(_))),
        "{out:?}"
    );
    assert_eq!(r.counters().refused_double_sign, 1);
}

/// Catch-up: certified blocks are applied only with a valid quorum certificate.
#[test]
fn sync_verifies_commit_certificates() {
    let mut c = Cluster::new(4, params());
    c.submit((0..12).map(|k| transfer(0, 1, 1, k)).collect());
    assert!(c.run_until(10_000, |c| (0..4).all(|i| c.committed_tx_count(i) == 12)));
    let good: Vec<_> = c.nodes[0].blocks[1..].to_vec();
    let mut fresh = engine(4, 3);
    // A forged block: same certificate, different transactions.
    let mut forged = good.clone();
    forged[0].txs.pop();
    let out = fresh.handle(0, Input::SyncBlocks(forged));
    assert!(!out.iter().any(|o| matches!(o, Output::Commit { .. })));
    // A certificate with too few signatures.
    let mut thin = good.clone();
    if let Justification::Pbft(cert) = &mut thin[0].justification {
        cert.commits.truncate(2);
    }
    let out = fresh.handle(0, Input::SyncBlocks(thin));
    assert!(!out.iter().any(|o| matches!(o, Output::Commit { .. })));
    let out = fresh.handle(0, Input::SyncBlocks(good.clone()));
    let heights: Vec<u64> = out
        .iter()
        .filter_map(|o| match o {
            Output::Commit { payload, .. } => Some(payload.height.0),
            _ => None,
        })
        .collect();
    assert_eq!(heights, (1..=good.len() as u64).collect::<Vec<_>>());
}

/// §4.4 safety with catch-up: a block a replica learnt by sync (so it never
/// prepared it) still binds the next view. Its VIEW-CHANGE carries the commit
/// certificate, also after a restart, and NEW-VIEW keeps the block instead
/// of filling the slot with a null block (the simulator found this fork).
#[test]
fn s4_4_a_synced_block_is_carried_into_the_next_view() {
    let mut c = Cluster::new(4, params());
    c.submit((0..4).map(|k| transfer(0, 1, 1, k)).collect());
    assert!(c.run_until(10_000, |c| (0..4).all(|i| c.committed_tx_count(i) == 4)));
    let block = c.nodes[0].blocks[1].clone();
    let digest = block.payload().digest();
    let g = genesis(4, params());
    let cfg = Config::from_genesis(&g, ValidatorIndex(3)).unwrap();

    let own_view_change = |e: &mut Pbft| -> ViewChange {
        // f+1 others want view 1: join it (§4.5.2) and send our VIEW-CHANGE.
        e.handle(0, msg(0, empty_view_change(1, 0)));
        let out = e.handle(0, msg(2, empty_view_change(1, 2)));
        broadcasts(&out)
            .into_iter()
            .find_map(|m| match m {
                PbftMessage::ViewChange(vc) => Some(vc.clone()),
                _ => None,
            })
            .expect("joined view 1")
    };

    let mut synced = engine(4, 3);
    let out = synced.handle(0, Input::SyncBlocks(vec![block.clone()]));
    assert!(out.iter().any(|o| matches!(o, Output::Commit { .. })));
    let restarted_from_store = Pbft::restore(
        cfg.clone(),
        validator_key(3),
        Restored {
            records: vec![],
            last_executed: Height(1),
            last_block_hash: block.hash(),
            recent_blocks: vec![block.clone()],
        },
    );
    for mut e in [synced, restarted_from_store] {
        let vc = own_view_change(&mut e);
        vc.verify(&cfg).unwrap();
        assert_eq!(vc.body.committed.len(), 1);
        assert_eq!(vc.body.committed[0].cert.digest, digest);
        // The other two in the quorum report nothing: the block survives.
        let (PbftMessage::ViewChange(a), PbftMessage::ViewChange(b)) =
            (empty_view_change(1, 0), empty_view_change(1, 2))
        else {
            unreachable!()
        };
        let plan = plan_new_view(&cfg, 1, &[a, b, vc.clone()]);
        assert_eq!(plan.entries.len(), 1);
        assert_eq!(plan.entries[0].1, digest, "not a null block");
        // A thinned certificate makes the VIEW-CHANGE invalid.
        let mut thin = vc;
        thin.body.committed[0].cert.commits.truncate(2);
        assert!(thin.verify(&cfg).is_err());
    }
}

/// Configuration is validated in one place: n ≥ 4, general n.
#[test]
fn config_validation() {
    for n in 1..4 {
        let g = genesis(n, params());
        let err = Config::from_genesis(&g, ValidatorIndex(0)).unwrap_err();
        assert!(err.to_string().contains("at least 4"), "{err}");
    }
    let g = genesis(5, params());
    assert_eq!(
        Config::from_genesis(&g, ValidatorIndex(0))
            .unwrap()
            .quorums
            .quorum,
        4
    );
    assert!(Config::from_genesis(&g, ValidatorIndex(5)).is_err());
    let mut bad = params();
    bad.watermark_window = 2;
    assert!(Config::from_genesis(&genesis(4, bad), ValidatorIndex(0)).is_err());
}

/// General n: n = 5, 6, 7 and 10 commit with their quorums.
#[test]
fn general_n_commits() {
    for n in [5usize, 6, 7, 10] {
        let mut c = Cluster::new(n, params());
        c.submit((0..6).map(|k| transfer(3, 0, 1, k)).collect());
        assert!(
            c.run_until(10_000, |c| (0..n).all(|i| c.committed_tx_count(i) == 6)),
            "n = {n}"
        );
        c.assert_agreement();
    }
}
