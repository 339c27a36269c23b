//! Seed corpora: valid encodings of real values, built with the crates'
//! public constructors and signed with fixed test keys, so that AFL++
//! starts from inputs every decoder accepts and mutates from there.

use phalanx_consensus::cft::messages::{AppendAck, AppendEntries, CftBody, RequestVote, VoteReply};
use phalanx_consensus::pbft::messages::{
    CommittedProof, Complaint, NewView, PrePrepare, PreparedCert, ViewChange, ViewChangeBody,
};
use phalanx_consensus::{CftMessage, PbftMessage};
use phalanx_crypto::{encode, Hash, Keypair};
use phalanx_ledger::{
    make_block, Address, Block, CommitCertificate, ConsensusParams, EngineKind, Evidence, Genesis,
    GenesisAccount, Height, Justification, Payload, SignedTransaction, SignedVote, Transaction,
    ValidatorIndex, ValidatorInfo, Vote, VoteKind,
};

const CHAIN: &str = "afl-seed-chain";
const VALIDATORS: usize = 4;

/// The seeds of target `name` (empty for an unknown name).
pub fn for_target(name: &str) -> Vec<Vec<u8>> {
    match name {
        "pbft-message" => pbft_messages(),
        "cft-message" => cft_messages(),
        "sync-blocks" => block_lists(),
        "http-batch" => http_batches(),
        "genesis" => genesis_files(),
        _ => Vec::new(),
    }
}

fn validator(i: usize) -> Keypair {
    Keypair::from_label(&format!("afl-seed-validator-{i}"))
}

fn account(i: u64) -> Keypair {
    Keypair::from_label(&format!("afl-seed-account-{i}"))
}

fn transfer(from: u64, nonce: u64, amount: u64) -> SignedTransaction {
    let key = account(from);
    Transaction {
        chain_id: CHAIN.to_owned(),
        from: Address(key.public()),
        to: Address(account(from + 1).public()),
        amount,
        nonce,
        fee: 2,
    }
    .sign(&key)
}

fn signed(kind: VoteKind, view: u64, seq: u64, digest: Hash, voter: usize) -> SignedVote {
    Vote {
        kind,
        view,
        seq: Height(seq),
        digest,
        voter: ValidatorIndex(voter as u32),
    }
    .sign(CHAIN, &validator(voter))
}

fn double_vote(voter: usize) -> Evidence {
    Evidence {
        first: signed(VoteKind::Commit, 2, 9, Hash([0xaa; 32]), voter),
        second: signed(VoteKind::Commit, 2, 9, Hash([0xbb; 32]), voter),
    }
}

fn proposal(height: u64, txs: u64, with_evidence: bool) -> Payload {
    Payload {
        chain_id: CHAIN.to_owned(),
        height: Height(height),
        round: 1,
        proposer: ValidatorIndex((height % VALIDATORS as u64) as u32),
        timestamp_ms: 1_750_000_000_000 + height,
        txs: (0..txs).map(|n| transfer(n % 3, n, 10 + n)).collect(),
        evidence: if with_evidence {
            vec![double_vote(2)]
        } else {
            vec![]
        },
    }
}

fn commit_certificate(view: u64, seq: u64, digest: Hash) -> CommitCertificate {
    CommitCertificate {
        view,
        seq: Height(seq),
        digest,
        commits: (0..3)
            .map(|v| {
                (
                    ValidatorIndex(v as u32),
                    signed(VoteKind::Commit, view, seq, digest, v).signature,
                )
            })
            .collect(),
    }
}

/// A VIEW-CHANGE to view 2 from a stable checkpoint at seq 6;
/// `with_certs` adds a prepared certificate (seq 7) and a committed slot
/// (seq 8), which name digests, not payloads.
fn view_change_from(voter: usize, with_certs: bool) -> ViewChange {
    let d = proposal(7, 1, false).digest();
    let (prepared, committed) = if with_certs {
        (
            vec![PreparedCert {
                pre_prepare: signed(VoteKind::PrePrepare, 1, 7, d, 1),
                prepares: [0, 2, 3]
                    .into_iter()
                    .map(|v| signed(VoteKind::Prepare, 1, 7, d, v))
                    .collect(),
            }],
            vec![CommittedProof {
                cert: commit_certificate(1, 8, proposal(8, 2, false).digest()),
            }],
        )
    } else {
        (vec![], vec![])
    };
    ViewChange::sign(
        ViewChangeBody {
            new_view: 2,
            stable_seq: Height(6),
            stable_digest: Hash([6; 32]),
            checkpoint_proof: (1..4)
                .map(|v| signed(VoteKind::Checkpoint, 1, 6, Hash([6; 32]), v))
                .collect(),
            prepared,
            committed,
            voter: ValidatorIndex(voter as u32),
        },
        CHAIN,
        &validator(voter),
    )
}

/// One of each PBFT message, some in two shapes.
pub fn pbft_messages() -> Vec<Vec<u8>> {
    let p = proposal(3, 3, true);
    let d = p.digest();
    let mut complained = view_change_from(0, true);
    complained.justification = (1..3)
        .map(|v| Complaint::sign(1, ValidatorIndex(v as u32), CHAIN, &validator(v)))
        .collect();
    let new_view = NewView::sign(
        2,
        (0..3).map(|v| view_change_from(v, v == 1)).collect(),
        vec![signed(VoteKind::PrePrepare, 2, 7, Hash([7; 32]), 2)],
        CHAIN,
        &validator(2),
    );
    let messages = [
        PbftMessage::PrePrepare(PrePrepare {
            vote: signed(VoteKind::PrePrepare, 1, 3, d, 3),
            payload: p,
        }),
        PbftMessage::PrePrepare(PrePrepare {
            vote: signed(VoteKind::PrePrepare, 0, 1, Hash([0; 32]), 1),
            payload: proposal(1, 0, false),
        }),
        PbftMessage::Prepare(signed(VoteKind::Prepare, 1, 3, d, 0)),
        PbftMessage::Commit(signed(VoteKind::Commit, 1, 3, d, 1)),
        PbftMessage::Checkpoint(signed(VoteKind::Checkpoint, 1, 6, Hash([6; 32]), 2)),
        PbftMessage::ViewChange(view_change_from(3, false)),
        PbftMessage::ViewChange(complained),
        PbftMessage::NewView(new_view),
        PbftMessage::Evidence(double_vote(1)),
        PbftMessage::Complaint(Complaint::sign(1, ValidatorIndex(3), CHAIN, &validator(3))),
        PbftMessage::Echo(signed(VoteKind::PrePrepare, 1, 3, d, 3)),
    ];
    messages.iter().map(encode).collect()
}

/// One of each CFT message body, signed by the leader.
pub fn cft_messages() -> Vec<Vec<u8>> {
    let bodies = [
        CftBody::RequestVote(RequestVote {
            term: 5,
            candidate: ValidatorIndex(2),
            last_log_index: Height(11),
            last_log_term: 4,
        }),
        CftBody::Vote(VoteReply {
            term: 5,
            voter: ValidatorIndex(3),
            candidate: ValidatorIndex(2),
            granted: false,
        }),
        CftBody::AppendEntries(AppendEntries {
            term: 5,
            leader: ValidatorIndex(2),
            prev_log_index: Height(11),
            prev_log_term: 4,
            entries: vec![proposal(12, 2, false), proposal(13, 0, true)],
            leader_commit: Height(11),
        }),
        CftBody::AppendEntries(AppendEntries {
            term: 5,
            leader: ValidatorIndex(2),
            prev_log_index: Height(13),
            prev_log_term: 5,
            entries: vec![],
            leader_commit: Height(13),
        }),
        CftBody::AppendAck(AppendAck {
            term: 5,
            follower: ValidatorIndex(0),
            success: false,
            last_index: Height(10),
        }),
    ];
    bodies
        .into_iter()
        .map(|body| encode(&CftMessage::sign(body, CHAIN, &validator(2))))
        .collect()
}

fn genesis_with(engine: EngineKind) -> Genesis {
    Genesis {
        chain_id: CHAIN.to_owned(),
        genesis_time_ms: 1_750_000_000_000,
        validators: (0..VALIDATORS)
            .map(|i| ValidatorInfo {
                name: format!("v{i}"),
                public_key: validator(i).public(),
                node_key: Keypair::from_label(&format!("afl-seed-node-{i}")).public(),
                stake: 1 + i as u64,
                p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 27000 + i),
                api_address: format!("127.0.0.1:{}", 27100 + i),
            })
            .collect(),
        accounts: (0..3)
            .map(|i| GenesisAccount {
                address: Address(account(i).public()),
                balance: 1_000 * (i + 1),
            })
            .collect(),
        consensus: ConsensusParams {
            engine,
            ..ConsensusParams::default()
        },
    }
}

/// Catch-up answers: no block, the genesis block, and blocks under each
/// kind of justification.
pub fn block_lists() -> Vec<Vec<u8>> {
    let g = genesis_with(EngineKind::Pbft).block();
    let p = proposal(1, 2, true);
    let d = p.digest();
    let certified = make_block(
        p,
        g.hash(),
        Hash([0x11; 32]),
        Justification::Pbft(commit_certificate(1, 1, d)),
    );
    let cft = make_block(
        proposal(2, 1, false),
        certified.hash(),
        Hash([0x22; 32]),
        Justification::Cft {
            term: 3,
            leader: ValidatorIndex(1),
        },
    );
    let pow = make_block(
        proposal(3, 0, false),
        cft.hash(),
        Hash([0x33; 32]),
        Justification::Pow {
            nonce: 12_345,
            difficulty_bits: 8,
        },
    );
    let pos = make_block(
        proposal(4, 1, false),
        pow.hash(),
        Hash([0x44; 32]),
        Justification::Pos {
            slot: 4,
            leader: ValidatorIndex(0),
            signature: validator(0).sign_bytes(b"afl seed block"),
        },
    );
    vec![
        encode(&Vec::<Block>::new()),
        encode(&vec![g.clone()]),
        encode(&vec![g, certified.clone()]),
        encode(&vec![certified, cft, pow, pos]),
    ]
}

/// `POST /txs/batch` bodies as clients send them.
pub fn http_batches() -> Vec<Vec<u8>> {
    let three: Vec<_> = (0..3).map(|n| transfer(n, n, 100)).collect();
    vec![
        serde_json::to_vec(&three).expect("JSON"),
        serde_json::to_vec_pretty(&vec![transfer(1, 0, 1)]).expect("JSON"),
        b"[]".to_vec(),
    ]
}

/// Genesis files as the tools write them, one per engine.
pub fn genesis_files() -> Vec<Vec<u8>> {
    [
        EngineKind::Pbft,
        EngineKind::Cft,
        EngineKind::Pow,
        EngineKind::Pos,
    ]
    .into_iter()
    .map(|e| genesis_with(e).to_json().into_bytes())
    .collect()
}
