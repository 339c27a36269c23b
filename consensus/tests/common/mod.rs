//! A tiny in-order cluster for handler tests: n PBFT engines, a FIFO
//! network, an executor that builds blocks like the node does. The real
//! adversarial simulator lives in testnet/; this one keeps paper-rule tests
//! short and exact.

#![allow(dead_code)]

use phalanx_consensus::pbft::messages::{PrePrepare, ViewChange, ViewChangeBody};
use phalanx_consensus::{
    Config, Engine, Input, Output, Pbft, PbftMessage, PbftRecord, Restored, TimeoutKind,
};
use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::{
    execute, make_block, Address, Block, ConsensusParams, Genesis, GenesisAccount, Height, Payload,
    SignedTransaction, SignedVote, State, Transaction, ValidatorIndex, ValidatorInfo, VerifyAll,
    Vote, VoteKind,
};
use std::collections::{BTreeMap, VecDeque};

pub const CHAIN: &str = "test-chain";

pub fn validator_key(i: usize) -> Keypair {
    Keypair::from_label(&format!("validator-{i}"))
}

pub fn account_key(i: usize) -> Keypair {
    Keypair::from_label(&format!("account-{i}"))
}

pub fn params() -> ConsensusParams {
    ConsensusParams {
        max_block_txs: 10,
        batch_timeout_ms: 10,
        checkpoint_interval: 4,
        watermark_window: 16,
        view_change_timeout_ms: 1000,
        ..ConsensusParams::default()
    }
}

pub fn genesis(n: usize, params: ConsensusParams) -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 0,
        validators: (0..n)
            .map(|i| ValidatorInfo {
                name: format!("node{i}"),
                public_key: validator_key(i).public(),
                node_key: Keypair::from_label(&format!("node-{i}")).public(),
                stake: 1,
                p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 26000 + i),
                api_address: String::new(),
            })
            .collect(),
        accounts: (0..4)
            .map(|i| GenesisAccount {
                address: Address(account_key(i).public()),
                balance: 1_000_000,
            })
            .collect(),
        consensus: params,
    }
}

pub fn transfer(from: usize, to: usize, amount: u64, nonce: u64) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN.into(),
        from: Address(account_key(from).public()),
        to: Address(account_key(to).public()),
        amount,
        nonce,
        fee: 1,
    }
    .sign(&account_key(from))
}

/// One node: engine, chain, state, persisted records, timers.
pub struct Node {
    pub engine: Pbft,
    pub blocks: Vec<Block>,
    pub state: State,
    pub records: Vec<PbftRecord>,
    pub timers: BTreeMap<TimeoutKind, u64>,
    pub sent: Vec<PbftMessage>,
    pub evidence: Vec<phalanx_ledger::Evidence>,
    pub up: bool,
}

pub struct Cluster {
    pub genesis: Genesis,
    pub nodes: Vec<Node>,
    pub net: VecDeque<(ValidatorIndex, ValidatorIndex, PbftMessage)>,
    pub now: u64,
    /// Messages from these senders are dropped (silent nodes).
    pub mute: Vec<usize>,
    pub sync_requests: Vec<(usize, Height)>,
}

impl Cluster {
    pub fn new(n: usize, params: ConsensusParams) -> Cluster {
        let genesis = genesis(n, params);
        let nodes = (0..n)
            .map(|i| {
                let cfg = Config::from_genesis(&genesis, ValidatorIndex(i as u32)).unwrap();
                Node {
                    engine: Pbft::new(cfg, validator_key(i), genesis.block().hash()),
                    blocks: vec![genesis.block()],
                    state: genesis.state(),
                    records: Vec::new(),
                    timers: BTreeMap::new(),
                    sent: Vec::new(),
                    evidence: Vec::new(),
                    up: true,
                }
            })
            .collect();
        let mut c = Cluster {
            genesis,
            nodes,
            net: VecDeque::new(),
            now: 0,
            mute: Vec::new(),
            sync_requests: Vec::new(),
        };
        for i in 0..n {
            c.input(i, Input::Start);
        }
        c
    }

    pub fn n(&self) -> usize {
        self.nodes.len()
    }

    /// Feeds one input to node i and carries out its outputs.
    pub fn input(
        &mut self,
        i: usize,
        input: Input<PbftMessage>,
    ) -> Vec<Output<PbftMessage, PbftRecord>> {
        if !self.nodes[i].up {
            return Vec::new();
        }
        let outputs = self.nodes[i].engine.handle(self.now, input);
        self.nodes[i].engine.check_invariants().unwrap();
        self.apply(i, outputs.clone());
        outputs
    }

    pub fn apply(&mut self, i: usize, outputs: Vec<Output<PbftMessage, PbftRecord>>) {
        let me = ValidatorIndex(i as u32);
        for o in outputs {
            match o {
                Output::Send { to, message } => {
                    self.nodes[i].sent.push(message.clone());
                    if !self.mute.contains(&i) {
                        self.net.push_back((me, to, message));
                    }
                }
                Output::Broadcast(message) => {
                    self.nodes[i].sent.push(message.clone());
                    if !self.mute.contains(&i) {
                        for j in 0..self.n() {
                            if j != i {
                                self.net
                                    .push_back((me, ValidatorIndex(j as u32), message.clone()));
                            }
                        }
                    }
                }
                Output::Persist(p) => self.nodes[i].records.push(p),
                Output::ScheduleTimeout { kind, after_ms } => {
                    self.nodes[i].timers.insert(kind, self.now + after_ms);
                }
                Output::Commit {
                    payload,
                    justification,
                } => {
                    let node = &mut self.nodes[i];
                    let fee_to = self.genesis.fee_recipient(payload.proposer);
                    let executed = execute(
                        &node.state,
                        &payload,
                        &fee_to,
                        self.genesis.consensus.min_fee,
                        &VerifyAll,
                    );
                    node.state.apply(&executed.diff);
                    let parent = node.blocks.last().unwrap().hash();
                    let block = make_block(payload, parent, executed.diff.root, justification);
                    let (height, hash) = (block.height(), block.hash());
                    node.blocks.push(block);
                    self.input(
                        i,
                        Input::BlockExecuted {
                            height,
                            block_hash: hash,
                        },
                    );
                }
                Output::Evidence(e) => self.nodes[i].evidence.push(e),
                Output::RequestSync { from } => {
                    self.sync_requests.push((i, from));
                    // Serve from the longest chain among the other live nodes.
                    let best = (0..self.n())
                        .filter(|j| *j != i && self.nodes[*j].up)
                        .max_by_key(|j| self.nodes[*j].blocks.len());
                    if let Some(j) = best {
                        let blocks: Vec<Block> = self.nodes[j]
                            .blocks
                            .iter()
                            .skip(from.0 as usize)
                            .cloned()
                            .collect();
                        if !blocks.is_empty() {
                            self.input(i, Input::SyncBlocks(blocks));
                        }
                    }
                }
                Output::ViewChanged { .. } => {}
                Output::Revert { .. } | Output::Mine(_) | Output::Finalize { .. } => {
                    panic!("PBFT's blocks are final: it never reverts or mines")
                }
            }
        }
    }

    /// Delivers queued messages until the network is empty.
    pub fn run(&mut self) {
        let mut steps = 0;
        while let Some((from, to, message)) = self.net.pop_front() {
            steps += 1;
            assert!(steps < 1_000_000, "message storm");
            self.input(to.as_usize(), Input::Message { from, message });
        }
    }

    /// Advances time to the earliest pending timer and fires it; false if none.
    pub fn fire_next_timer(&mut self) -> bool {
        let next = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.up)
            .flat_map(|(i, n)| n.timers.iter().map(move |(k, t)| (*t, i, *k)))
            .min();
        let Some((t, i, kind)) = next else {
            return false;
        };
        self.nodes[i].timers.remove(&kind);
        self.now = self.now.max(t);
        self.input(i, Input::Timeout(kind));
        true
    }

    /// Runs messages and timers until `done` holds or `max_ms` of simulated time pass.
    pub fn run_until(&mut self, max_ms: u64, mut done: impl FnMut(&Cluster) -> bool) -> bool {
        let deadline = self.now + max_ms;
        loop {
            self.run();
            if done(self) {
                return true;
            }
            if self.now > deadline || !self.fire_next_timer() {
                return done(self);
            }
        }
    }

    pub fn submit(&mut self, txs: Vec<SignedTransaction>) {
        for i in 0..self.n() {
            self.input(i, Input::Transactions(txs.clone()));
        }
    }

    pub fn height(&self, i: usize) -> u64 {
        self.nodes[i].blocks.len() as u64 - 1
    }

    /// Agreement: every pair of nodes has the same block hash at every common height.
    pub fn assert_agreement(&self) {
        for a in &self.nodes {
            for b in &self.nodes {
                for (x, y) in a.blocks.iter().zip(&b.blocks) {
                    assert_eq!(x.hash(), y.hash(), "fork at height {}", x.height());
                }
            }
        }
    }

    pub fn committed_tx_count(&self, i: usize) -> usize {
        self.nodes[i].blocks.iter().map(|b| b.txs.len()).sum()
    }

    /// Crashes node i (drops its volatile state) and restarts it from its records and chain.
    pub fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let cfg = node.engine.config().clone();
        let last = node.blocks.last().unwrap();
        node.engine = Pbft::restore(
            cfg,
            validator_key(i),
            Restored {
                records: node.records.clone(),
                last_executed: last.height(),
                last_block_hash: last.hash(),
                recent_blocks: node.blocks.clone(),
            },
        );
        node.timers.clear();
        node.up = true;
        self.input(i, Input::Start);
    }
}

pub fn hash_of_block(b: &Block) -> Hash {
    b.hash()
}

// Single-engine helpers for handler tests (pbft_paper.rs, bounds.rs).

pub fn engine(n: usize, me: usize) -> Pbft {
    let g = genesis(n, params());
    Pbft::new(
        Config::from_genesis(&g, ValidatorIndex(me as u32)).unwrap(),
        validator_key(me),
        g.block().hash(),
    )
}

pub fn payload(view: u64, seq: u64, txs: usize) -> Payload {
    Payload {
        chain_id: CHAIN.into(),
        height: Height(seq),
        round: view,
        proposer: ValidatorIndex((view % 4) as u32),
        timestamp_ms: 7,
        txs: (0..txs as u64).map(|k| transfer(0, 1, 1, k)).collect(),
        evidence: vec![],
    }
}

pub fn vote(kind: VoteKind, view: u64, seq: u64, digest: Hash, voter: usize) -> SignedVote {
    Vote {
        kind,
        view,
        seq: Height(seq),
        digest,
        voter: ValidatorIndex(voter as u32),
    }
    .sign(CHAIN, &validator_key(voter))
}

pub fn pre_prepare(view: u64, seq: u64, p: &Payload) -> PbftMessage {
    let primary = (view % 4) as usize;
    PbftMessage::PrePrepare(PrePrepare {
        vote: vote(VoteKind::PrePrepare, view, seq, p.digest(), primary),
        payload: p.clone(),
    })
}

pub fn msg(from: usize, message: PbftMessage) -> Input<PbftMessage> {
    Input::Message {
        from: ValidatorIndex(from as u32),
        message,
    }
}

pub fn broadcasts(out: &[Output<PbftMessage, PbftRecord>]) -> Vec<&PbftMessage> {
    out.iter()
        .filter_map(|o| match o {
            Output::Broadcast(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// A VIEW-CHANGE to `view` from `voter` with nothing prepared, at genesis.
pub fn empty_view_change(view: u64, voter: usize) -> PbftMessage {
    let g = genesis(4, params());
    PbftMessage::ViewChange(ViewChange::sign(
        ViewChangeBody {
            new_view: view,
            stable_seq: Height::GENESIS,
            stable_digest: g.block().hash(),
            checkpoint_proof: vec![],
            prepared: vec![],
            committed: vec![],
            voter: ValidatorIndex(voter as u32),
        },
        CHAIN,
        &validator_key(voter),
    ))
}
