//! Fixtures shared by the ledger's integration tests: a genesis with four
//! validators and a few funded accounts, signed transfers, PBFT commit
//! certificates, and blocks built by really executing their transactions.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::{
    execute, make_block, Address, Block, CommitCertificate, Evidence, Genesis, GenesisAccount,
    Height, Justification, Payload, Receipt, SignedTransaction, SignedVote, State, StateDiff,
    Transaction, ValidatorIndex, ValidatorInfo, VerifyAll, Vote, VoteKind,
};

/// The chain id of every fixture.
pub const CHAIN_ID: &str = "phalanx-test";

/// Validators in the fixture genesis (n = 4, f = 1, quorum 3).
pub const VALIDATORS: usize = 4;

/// The funded accounts of the fixture genesis, with their balances.
pub const FUNDED: [(&str, u64); 4] = [("alice", 1_000), ("bob", 500), ("carol", 50), ("dave", 0)];

/// The consensus key of validator `i` (also its fee account).
pub fn validator_key(i: usize) -> Keypair {
    Keypair::from_label(&format!("validator-{i}"))
}

/// A user's key.
pub fn user(name: &str) -> Keypair {
    Keypair::from_label(&format!("user-{name}"))
}

/// A user's address.
pub fn addr(name: &str) -> Address {
    Address(user(name).public())
}

/// The fixture genesis: four validators and the [`FUNDED`] accounts.
pub fn genesis() -> Genesis {
    let validators = (0..VALIDATORS)
        .map(|i| ValidatorInfo {
            name: format!("node{i}"),
            public_key: validator_key(i).public(),
            node_key: Keypair::from_label(&format!("node-{i}")).public(),
            stake: 1,
            p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 26000 + i),
            api_address: format!("127.0.0.1:{}", 8000 + i),
        })
        .collect();
    let accounts = FUNDED
        .iter()
        .map(|(name, balance)| GenesisAccount {
            address: addr(name),
            balance: *balance,
        })
        .collect();
    Genesis {
        chain_id: CHAIN_ID.to_owned(),
        genesis_time_ms: 1_700_000_000_000,
        validators,
        accounts,
        // Fee-0 transfers are part of the fixtures; the minimum fee has
        // its own test (execution.rs).
        consensus: phalanx_ledger::ConsensusParams {
            min_fee: 0,
            ..Default::default()
        },
    }
}

/// A transfer on [`CHAIN_ID`] signed by `from`.
pub fn transfer(
    from: &Keypair,
    to: Address,
    amount: u64,
    nonce: u64,
    fee: u64,
) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN_ID.to_owned(),
        from: Address(from.public()),
        to,
        amount,
        nonce,
        fee,
    }
    .sign(from)
}

/// COMMITs for `digest` at (`view`, `seq`) from validators 0, 1 and 2 (a quorum of 4).
pub fn commit_certificate(view: u64, seq: Height, digest: Hash) -> CommitCertificate {
    let commits = (0..3u32)
        .map(|i| {
            let vote = Vote {
                kind: VoteKind::Commit,
                view,
                seq,
                digest,
                voter: ValidatorIndex(i),
            };
            (
                ValidatorIndex(i),
                vote.sign(CHAIN_ID, &validator_key(i as usize)).signature,
            )
        })
        .collect();
    CommitCertificate {
        view,
        seq,
        digest,
        commits,
    }
}

/// Validator `voter` signing PREPAREs for two different digests in one slot.
pub fn equivocation(voter: u32, view: u64, seq: u64) -> Evidence {
    let key = validator_key(voter as usize);
    let vote = |label: &str| -> SignedVote {
        Vote {
            kind: VoteKind::Prepare,
            view,
            seq: Height(seq),
            digest: Hash::digest(label.as_bytes()),
            voter: ValidatorIndex(voter),
        }
        .sign(CHAIN_ID, &key)
    };
    Evidence {
        first: vote("one"),
        second: vote("two"),
    }
}

/// A block with everything a store is given when it is appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The block.
    pub block: Block,
    /// Its receipts.
    pub receipts: Vec<Receipt>,
    /// The state change it makes.
    pub diff: StateDiff,
}

/// The genesis block, as appended to an empty store: its diff sets every
/// genesis account on top of the empty state.
pub fn genesis_appended(genesis: &Genesis) -> Appended {
    let state = genesis.state();
    let changed = state.accounts().map(|(a, acct)| (*a, *acct)).collect();
    let diff = State::default().diff(Height::GENESIS, changed);
    assert_eq!(
        diff.root,
        state.root(),
        "genesis root = one diff step from the empty state"
    );
    Appended {
        block: genesis.block(),
        receipts: Vec::new(),
        diff,
    }
}

/// Executes `txs` (and `evidence`) on `state` as the next block after
/// `parent`, proposed by `proposer` in view `round`, with a PBFT commit
/// certificate. Does not change `state`.
pub fn build_block(
    genesis: &Genesis,
    state: &State,
    parent: &Block,
    proposer: u32,
    round: u64,
    txs: Vec<SignedTransaction>,
    evidence: Vec<Evidence>,
) -> Appended {
    let height = parent.height().next();
    let payload = Payload {
        chain_id: genesis.chain_id.clone(),
        height,
        round,
        proposer: ValidatorIndex(proposer),
        timestamp_ms: genesis.genesis_time_ms + height.0 * 1000,
        txs,
        evidence,
    };
    let fee_recipient = genesis.fee_recipient(payload.proposer);
    let executed = execute(
        state,
        &payload,
        &fee_recipient,
        genesis.consensus.min_fee,
        &VerifyAll,
    );
    let justification = Justification::Pbft(commit_certificate(round, height, payload.digest()));
    let block = make_block(payload, parent.hash(), executed.diff.root, justification);
    Appended {
        block,
        receipts: executed.receipts,
        diff: executed.diff,
    }
}
