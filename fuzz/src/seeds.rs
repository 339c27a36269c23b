//! Valid inputs for each target: real values, signed with fixture keys,
//! encoded the way peers, clients and the tools encode them.

use phalanx_consensus::cft::messages::{AppendAck, AppendEntries, CftBody, RequestVote, VoteReply};
use phalanx_consensus::pbft::messages::{
    Complaint, NewView, PrePrepare, PreparedCert, ViewChange, ViewChangeBody,
};
use phalanx_consensus::{CftMessage, PbftMessage, PosMessage, PowMessage};
use phalanx_crypto::{encode, Hash, KeyKind, Keypair};
use phalanx_ledger::{
    Address, Block, ConsensusParams, Evidence, Genesis, GenesisAccount, Height, Justification,
    Payload, SignedTransaction, SignedVote, Transaction, ValidatorIndex, ValidatorInfo, Vote,
    VoteKind,
};

const CHAIN: &str = "fuzz-chain";

fn key(i: usize) -> Keypair {
    Keypair::from_label(&format!("fuzz-validator-{i}"))
}

fn tx(nonce: u64) -> SignedTransaction {
    let from = Keypair::from_label("fuzz-account");
    Transaction {
        chain_id: CHAIN.into(),
        from: Address(from.public()),
        to: Address(key(0).public()),
        amount: 5,
        nonce,
        fee: 1,
    }
    .sign(&from)
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

fn evidence() -> Evidence {
    Evidence {
        first: vote(VoteKind::Prepare, 0, 3, Hash([1; 32]), 3),
        second: vote(VoteKind::Prepare, 0, 3, Hash([2; 32]), 3),
    }
}

fn payload(seq: u64) -> Payload {
    Payload {
        chain_id: CHAIN.into(),
        height: Height(seq),
        round: 0,
        proposer: ValidatorIndex(0),
        timestamp_ms: 1_700_000_000_000,
        txs: vec![tx(0), tx(1)],
        evidence: vec![evidence()],
    }
}

fn view_change(voter: usize) -> ViewChange {
    let p = payload(5);
    let digest = p.digest();
    ViewChange::sign(
        ViewChangeBody {
            new_view: 1,
            stable_seq: Height(4),
            stable_digest: Hash([4; 32]),
            checkpoint_proof: (0..3)
                .map(|v| vote(VoteKind::Checkpoint, 0, 4, Hash([4; 32]), v))
                .collect(),
            prepared: vec![PreparedCert {
                pre_prepare: vote(VoteKind::PrePrepare, 0, 5, digest, 0),
                prepares: (1..3)
                    .map(|v| vote(VoteKind::Prepare, 0, 5, digest, v))
                    .collect(),
            }],
            committed: vec![],
            voter: ValidatorIndex(voter as u32),
        },
        CHAIN,
        &key(voter),
    )
}

pub(crate) fn pbft_messages() -> Vec<Vec<u8>> {
    let p = payload(1);
    let d = p.digest();
    let mut vc = view_change(2);
    vc.justification = vec![Complaint::sign(0, ValidatorIndex(3), CHAIN, &key(3))];
    let nv = NewView::sign(
        1,
        (1..4).map(view_change).collect(),
        vec![vote(VoteKind::PrePrepare, 1, 5, Hash([5; 32]), 1)],
        CHAIN,
        &key(1),
    );
    [
        PbftMessage::PrePrepare(PrePrepare {
            vote: vote(VoteKind::PrePrepare, 0, 1, d, 0),
            payload: p,
        }),
        PbftMessage::Prepare(vote(VoteKind::Prepare, 0, 1, d, 1)),
        PbftMessage::Commit(vote(VoteKind::Commit, 0, 1, d, 2)),
        PbftMessage::Checkpoint(vote(VoteKind::Checkpoint, 0, 4, Hash([4; 32]), 3)),
        PbftMessage::ViewChange(vc),
        PbftMessage::NewView(nv),
        PbftMessage::Evidence(evidence()),
        PbftMessage::Complaint(Complaint::sign(0, ValidatorIndex(1), CHAIN, &key(1))),
        PbftMessage::Echo(vote(VoteKind::PrePrepare, 0, 1, d, 0)),
    ]
    .iter()
    .map(encode)
    .collect()
}

pub(crate) fn cft_messages() -> Vec<Vec<u8>> {
    let v = ValidatorIndex;
    [
        CftBody::RequestVote(RequestVote {
            term: 2,
            candidate: v(1),
            last_log_index: Height(7),
            last_log_term: 1,
        }),
        CftBody::Vote(VoteReply {
            term: 2,
            voter: v(0),
            candidate: v(1),
            granted: true,
        }),
        CftBody::AppendEntries(AppendEntries {
            term: 2,
            leader: v(1),
            prev_log_index: Height(7),
            prev_log_term: 1,
            entries: vec![payload(8), payload(9)],
            leader_commit: Height(7),
        }),
        CftBody::AppendAck(AppendAck {
            term: 2,
            follower: v(2),
            success: true,
            last_index: Height(9),
        }),
    ]
    .into_iter()
    .map(|body| encode(&CftMessage::sign(body, CHAIN, &key(1))))
    .collect()
}

pub(crate) fn tx_batches() -> Vec<Vec<u8>> {
    vec![
        encode(&Vec::<SignedTransaction>::new()),
        encode(&vec![tx(0)]),
        encode(&(0..8).map(tx).collect::<Vec<_>>()),
    ]
}

pub(crate) fn sync_requests() -> Vec<Vec<u8>> {
    let locator = vec![
        (Height(9), Hash([9; 32])),
        (Height(8), Hash([8; 32])),
        (Height(6), Hash([6; 32])),
        (Height(2), Hash([2; 32])),
        (Height(0), Hash([0; 32])),
    ];
    vec![
        encode(&(Height(1), 64u64, Vec::<(Height, Hash)>::new())),
        encode(&(Height(10), 64u64, locator)),
        encode(&(Height(u64::MAX), 0u64, Vec::<(Height, Hash)>::new())),
    ]
}

pub(crate) fn pow_messages() -> Vec<Vec<u8>> {
    [(0u32, 0x1f00_ffffu32, 7u64), (1, 0x2100_ffff, u64::MAX)]
        .into_iter()
        .map(|(i, bits, nonce)| {
            encode(&PowMessage::Block {
                payload: payload(u64::from(i) + 1),
                justification: phalanx_ledger::Justification::Pow {
                    parent: Hash([i as u8; 32]),
                    bits,
                    nonce,
                },
            })
        })
        .collect()
}

pub(crate) fn pos_messages() -> Vec<Vec<u8>> {
    let leader = ValidatorIndex(1);
    let mut p = payload(3);
    p.round = 5;
    p.proposer = leader;
    let j = phalanx_consensus::pos::sign_block(CHAIN, &key(1), leader, Hash([3; 32]), &p);
    let mut q = p.clone();
    q.timestamp_ms += 1;
    let jq = phalanx_consensus::pos::sign_block(CHAIN, &key(1), leader, Hash([3; 32]), &q);
    let vote = |j: &phalanx_ledger::Justification, payload: &Payload| {
        let phalanx_ledger::Justification::Pos { signature, .. } = j else {
            unreachable!("a PoS justification")
        };
        let id = phalanx_consensus::pos::block_id(payload, j).expect("a PoS block");
        phalanx_ledger::SignedVote {
            vote: phalanx_ledger::Vote {
                kind: phalanx_ledger::VoteKind::PosBlock,
                view: 5,
                seq: Height(5),
                digest: id,
                voter: leader,
            },
            signature: *signature,
        }
    };
    let evidence = phalanx_ledger::Evidence {
        first: vote(&j, &p),
        second: vote(&jq, &q),
    };
    vec![
        encode(&PosMessage::Block {
            payload: p,
            justification: j,
        }),
        encode(&PosMessage::Evidence(evidence)),
    ]
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 1_700_000_000_000,
        validators: (0..4)
            .map(|i| ValidatorInfo {
                name: format!("node{i}"),
                public_key: key(i).public(),
                node_key: Keypair::from_label(&format!("fuzz-node-{i}")).public(),
                stake: 1,
                p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 26000 + i),
                api_address: format!("127.0.0.1:{}", 26100 + i),
            })
            .collect(),
        accounts: vec![GenesisAccount {
            address: Address(Keypair::from_label("fuzz-account").public()),
            balance: 1_000_000,
        }],
        consensus: ConsensusParams::default(),
    }
}

pub(crate) fn blocks() -> Vec<Vec<u8>> {
    let g = genesis();
    let p = payload(1);
    let d = p.digest();
    let cert = phalanx_ledger::CommitCertificate {
        view: 0,
        seq: Height(1),
        digest: d,
        commits: (0..3)
            .map(|v| {
                (
                    ValidatorIndex(v as u32),
                    vote(VoteKind::Commit, 0, 1, d, v).signature,
                )
            })
            .collect(),
    };
    let b1 = phalanx_ledger::make_block(
        p,
        g.block().hash(),
        Hash([9; 32]),
        Justification::Pbft(cert),
    );
    vec![
        encode(&Vec::<Block>::new()),
        encode(&vec![g.block()]),
        encode(&vec![b1.clone(), b1]),
    ]
}

pub(crate) fn http_txs() -> Vec<Vec<u8>> {
    vec![
        serde_json::to_vec(&tx(0)).expect("json"),
        serde_json::to_vec_pretty(&tx(7)).expect("json"),
    ]
}

pub(crate) fn http_batches() -> Vec<Vec<u8>> {
    vec![
        serde_json::to_vec(&(0..3).map(tx).collect::<Vec<_>>()).expect("json"),
        b"[]".to_vec(),
    ]
}

pub(crate) fn key_files() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    [KeyKind::Account, KeyKind::Validator, KeyKind::Node]
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            let path = dir.path().join(format!("{i}.json"));
            phalanx_crypto::write_key_file(&path, kind, &key(i)).expect("write a key file");
            std::fs::read(&path).expect("read it back")
        })
        .collect()
}

pub(crate) fn genesis_files() -> Vec<Vec<u8>> {
    vec![genesis().to_json().into_bytes()]
}

#[cfg(feature = "node")]
pub(crate) fn config_files() -> Vec<Vec<u8>> {
    vec![
        phalanx_node::home::NodeConfig::default()
            .to_toml()
            .into_bytes(),
        b"[p2p]\npeer_queue = 10\n[mempool]\nmax_txs = 5\n".to_vec(),
    ]
}
