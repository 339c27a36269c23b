//! Measures what one Byzantine validator's inputs cost an honest PBFT
//! replica (issue 18, findings 1–3): bytes, seconds, memory held.
//!
//!   cargo run --release -p phalanx-consensus --example bounds
//!
//! "Before" is what the replica did without the bounds: check every
//! signature in a certificate (measured here by checking them), keep every
//! piece of evidence, buffer every later-view message.

use phalanx_consensus::pbft::messages::{PrePrepare, PreparedCert, ViewChange, ViewChangeBody};
use phalanx_consensus::{Config, Engine, Input, Output, Pbft, PbftMessage};
use phalanx_crypto::{encode, Hash, Keypair};
use phalanx_ledger::{
    Address, ConsensusParams, Evidence, Genesis, Height, Payload, SignedVote, Transaction,
    ValidatorIndex, ValidatorInfo, Vote, VoteKind,
};
use std::time::Instant;

const CHAIN: &str = "bounds";

fn key(i: usize) -> Keypair {
    Keypair::from_label(&format!("bounds-{i}"))
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 0,
        validators: (0..4)
            .map(|i| ValidatorInfo {
                name: format!("node{i}"),
                public_key: key(i).public(),
                node_key: Keypair::from_label(&format!("bounds-node-{i}")).public(),
                stake: 1,
                p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 26000 + i),
                api_address: String::new(),
            })
            .collect(),
        accounts: vec![],
        consensus: ConsensusParams::default(),
    }
}

fn engine(me: usize) -> Pbft {
    let g = genesis();
    Pbft::new(
        Config::from_genesis(&g, ValidatorIndex(me as u32)).unwrap(),
        key(me),
        g.block().hash(),
    )
}

fn vote(kind: VoteKind, view: u64, seq: u64, digest: Hash, voter: usize) -> SignedVote {
    Vote {
        kind,
        view,
        seq: Height(seq),
        digest,
        voter: ValidatorIndex(voter as u32),
    }
    .sign(CHAIN, &key(voter))
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn main() {
    let cfg = engine(1).config().clone();

    // Finding 1: a VIEW-CHANGE whose checkpoint proof holds 3 real votes
    // plus 167,767 copies of the sender's own (the review's 16.8 MB).
    let digest = Hash([4; 32]);
    let mut proof: Vec<SignedVote> = (0..3)
        .map(|v| vote(VoteKind::Checkpoint, 0, 16, digest, v))
        .collect();
    proof.extend(std::iter::repeat_n(proof[2], 167_767));
    let vc = ViewChange::sign(
        ViewChangeBody {
            new_view: 1,
            stable_seq: Height(16),
            stable_digest: digest,
            checkpoint_proof: proof.clone(),
            prepared: vec![],
            committed: vec![],
            voter: ValidatorIndex(2),
        },
        CHAIN,
        &key(2),
    );
    let bytes = encode(&PbftMessage::ViewChange(vc.clone())).len();
    let t = Instant::now();
    let before: usize = proof
        .iter()
        .filter(|v| {
            v.verify(CHAIN, &key(v.vote.voter.as_usize()).public())
                .is_ok()
        })
        .count();
    let before_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let verdict = vc.verify(&cfg);
    let after_s = t.elapsed().as_secs_f64();
    println!(
        "padded VIEW-CHANGE: {:.1} MB; checking every vote: {before} signatures in {before_s:.2} s; now: {verdict:?} in {:.2} ms",
        bytes as f64 / 1e6,
        after_s * 1e3
    );

    // Finding 2: 85,000 distinct pieces of evidence against validator 3.
    let mut e = engine(2);
    let (mut recorded, mut sent) = (0, 0);
    let t = Instant::now();
    for seq in 1..=85_000u64 {
        let ev = Evidence {
            first: vote(VoteKind::Prepare, 0, seq, Hash([1; 32]), 3),
            second: vote(VoteKind::Prepare, 0, seq, Hash([2; 32]), 3),
        };
        for o in e.handle(
            0,
            Input::Message {
                from: ValidatorIndex(3),
                message: PbftMessage::Evidence(ev),
            },
        ) {
            match o {
                Output::Evidence(_) => recorded += 1,
                Output::Broadcast(PbftMessage::Evidence(_)) => sent += 1,
                _ => {}
            }
        }
    }
    println!(
        "85,000 pieces of evidence against one validator: {recorded} recorded (synced write), {sent} sent on, {} dropped as redundant, in {:.1} s",
        e.counters().redundant_evidence,
        t.elapsed().as_secs_f64()
    );

    // Finding 3: 2,000 PRE-PREPAREs of about 1 MiB for the next view.
    let mut e = engine(2);
    let from = Keypair::from_label("bounds-account");
    let tx = Transaction {
        chain_id: "x".repeat(100_000),
        from: Address(from.public()),
        to: Address(from.public()),
        amount: 1,
        nonce: 0,
        fee: 1,
    }
    .sign(&from);
    let mut offered = 0usize;
    for seq in 1..=2_000u64 {
        let payload = Payload {
            chain_id: CHAIN.into(),
            height: Height(seq),
            round: 1,
            proposer: ValidatorIndex(1),
            timestamp_ms: seq,
            txs: vec![tx.clone(); 10],
            evidence: vec![],
        };
        let pp = PrePrepare {
            vote: vote(VoteKind::PrePrepare, 1, seq, payload.digest(), 1),
            payload,
        };
        let m = PbftMessage::PrePrepare(pp);
        offered += encode(&m).len();
        e.handle(
            0,
            Input::Message {
                from: ValidatorIndex(1),
                message: m,
            },
        );
    }
    let (held, held_bytes) = e.future_buffered();
    println!(
        "2,000 later-view PRE-PREPAREs ({:.0} MiB offered): {held} kept, {:.1} MiB held, {} dropped",
        mib(offered),
        mib(held_bytes),
        e.counters().future_dropped
    );

    // An honest VIEW-CHANGE carried the whole payload of every prepared
    // slot above its stable checkpoint: with the default parameters (2,000
    // transactions a block, a 64-slot window) a full window was above the
    // 16 MiB frame a peer accepts, and the NEW-VIEW carries a quorum of
    // them. Prepared certificates now name digests only.
    let p = ConsensusParams::default();
    let from = key(9);
    let payload = |seq: u64| Payload {
        chain_id: CHAIN.into(),
        height: Height(seq),
        round: 0,
        proposer: ValidatorIndex(0),
        timestamp_ms: seq,
        txs: (0..p.max_block_txs as u64)
            .map(|nonce| {
                Transaction {
                    chain_id: CHAIN.into(),
                    from: Address(from.public()),
                    to: Address(key(8).public()),
                    amount: 1_000 + nonce,
                    nonce,
                    fee: 1,
                }
                .sign(&from)
            })
            .collect(),
        evidence: vec![],
    };
    let one = payload(1);
    let mut payload_bytes = 0;
    let prepared: Vec<PreparedCert> = (1..=p.watermark_window)
        .map(|seq| {
            let body = Payload {
                height: Height(seq),
                ..one.clone()
            };
            payload_bytes += encode(&body).len();
            let d = body.digest();
            PreparedCert {
                pre_prepare: vote(VoteKind::PrePrepare, 0, seq, d, 0),
                prepares: (1..3)
                    .map(|v| vote(VoteKind::Prepare, 0, seq, d, v))
                    .collect(),
            }
        })
        .collect();
    let vc = ViewChange::sign(
        ViewChangeBody {
            new_view: 1,
            stable_seq: Height::GENESIS,
            stable_digest: Hash::ZERO,
            checkpoint_proof: vec![],
            prepared,
            committed: vec![],
            voter: ValidatorIndex(1),
        },
        CHAIN,
        &key(1),
    );
    let vc_bytes = encode(&PbftMessage::ViewChange(vc)).len();
    let before = vc_bytes + payload_bytes;
    let quorum = cfg.quorums.quorum;
    println!(
        "honest VIEW-CHANGE with a full window ({} prepared slots of {} transactions): {:.1} MiB with payloads (NEW-VIEW {:.1} MiB, over the 16 MiB frame); now digests only: {:.1} KiB (NEW-VIEW {:.1} KiB)",
        p.watermark_window,
        p.max_block_txs,
        mib(before),
        mib(before * quorum),
        vc_bytes as f64 / 1024.0,
        (vc_bytes * quorum) as f64 / 1024.0
    );
}
