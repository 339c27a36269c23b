//! The crash-fault-tolerant baseline against the Raft paper (Ongaro &
//! Ousterhout, "In Search of an Understandable Consensus Algorithm", USENIX
//! ATC 2014): §5.2 leader election, §5.3 log replication, §5.4.1 election
//! restriction, §5.4.2 commit rule. Cluster tests run n engines over a tiny
//! in-order network with a fake clock; handler tests feed one engine exact
//! inputs and assert on its outputs.

mod common;

use common::{account_key, genesis, params, transfer, validator_key};
use phalanx_consensus::cft::messages::{
    AppendAck, AppendEntries, CftBody, CftMessage, CftRecord, RequestVote, VoteReply,
};
use phalanx_consensus::cft::Role;
use phalanx_consensus::{Cft, Config, Engine, Input, Output, Restored, TimeoutKind};
use phalanx_crypto::{Keypair, Signature};
use phalanx_ledger::{
    execute, make_block, Address, Block, ConsensusParams, Genesis, Height, Justification, Payload,
    SignedTransaction, State, ValidatorIndex, VerifyAll,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

type Out = Output<CftMessage, CftRecord>;

struct Node {
    engine: Cft,
    blocks: Vec<Block>,
    state: State,
    records: Vec<CftRecord>,
    timers: BTreeMap<TimeoutKind, u64>,
    up: bool,
}

/// n CFT engines, a FIFO network that loses messages to and from crashed
/// or cut-off nodes, and a fake clock that jumps to the next timer.
struct Cluster {
    genesis: Genesis,
    nodes: Vec<Node>,
    net: VecDeque<(usize, usize, CftMessage)>,
    now: u64,
    /// Nodes cut off from everyone (messages to and from them are lost).
    isolated: BTreeSet<usize>,
    /// Election Safety (§5.2): the leader each term had, across the run.
    leaders: BTreeMap<u64, usize>,
    /// Every vote granted: (voter, term) -> candidate, across restarts.
    votes: BTreeMap<(usize, u64), ValidatorIndex>,
    sync_requests: usize,
    /// A seeded hostile network, if any (otherwise FIFO and instant).
    chaos: Option<Chaos>,
}

/// Seeded network faults before `heal_ms`: delay, spikes, loss,
/// duplication (and so reordering). After it, only a small delay.
struct Chaos {
    rng: u64,
    heal_ms: u64,
    seq: u64,
    /// (deliver at, seq) -> (from, to, message).
    queue: BTreeMap<(u64, u64), (usize, usize, CftMessage)>,
}

impl Chaos {
    /// splitmix64: the test's only randomness, from the seed.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn config(g: &Genesis, i: usize) -> Config {
    Config::from_genesis_cft(g, ValidatorIndex(i as u32)).unwrap()
}

impl Cluster {
    fn new(n: usize, params: ConsensusParams) -> Cluster {
        let genesis = genesis(n, params);
        let nodes = (0..n)
            .map(|i| Node {
                engine: Cft::new(
                    config(&genesis, i),
                    validator_key(i),
                    genesis.block().hash(),
                ),
                blocks: vec![genesis.block()],
                state: genesis.state(),
                records: Vec::new(),
                timers: BTreeMap::new(),
                up: true,
            })
            .collect();
        let mut c = Cluster {
            genesis,
            nodes,
            net: VecDeque::new(),
            now: 0,
            isolated: BTreeSet::new(),
            leaders: BTreeMap::new(),
            votes: BTreeMap::new(),
            sync_requests: 0,
            chaos: None,
        };
        for i in 0..n {
            c.input(i, Input::Start);
        }
        c
    }

    fn n(&self) -> usize {
        self.nodes.len()
    }

    fn input(&mut self, i: usize, input: Input<CftMessage>) {
        if !self.nodes[i].up {
            return;
        }
        let outputs = self.nodes[i].engine.handle(self.now, input);
        self.nodes[i].engine.check_invariants().unwrap();
        self.apply(i, outputs);
    }

    fn send(&mut self, from: usize, to: usize, message: CftMessage) {
        // Save before send (§5.2 votedFor is persistent): a granted vote
        // is durable before it leaves.
        if let CftBody::Vote(v) = &message.body {
            if v.granted {
                let durable = self.nodes[from].records.iter().any(|r| {
                    matches!(r, CftRecord::HardState { term, voted_for }
                        if *term == v.term && *voted_for == Some(v.candidate))
                });
                assert!(durable, "node {from} sent a vote it had not persisted");
                let prev = self.votes.insert((from, v.term), v.candidate);
                assert!(
                    prev.is_none_or(|c| c == v.candidate),
                    "node {from} voted twice in term {}",
                    v.term
                );
            }
        }
        if self.isolated.contains(&from) || self.isolated.contains(&to) {
            return;
        }
        let now = self.now;
        let Some(chaos) = self.chaos.as_mut() else {
            self.net.push_back((from, to, message));
            return;
        };
        let copies = if now >= chaos.heal_ms {
            1
        } else if chaos.below(100) < 5 {
            0
        } else if chaos.below(100) < 3 {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = 1 + chaos.below(25);
            if now < chaos.heal_ms && chaos.below(100) < 2 {
                delay += chaos.below(600);
            }
            chaos.seq += 1;
            let key = (now + delay, chaos.seq);
            chaos.queue.insert(key, (from, to, message.clone()));
        }
    }

    fn apply(&mut self, i: usize, outputs: Vec<Out>) {
        for o in outputs {
            match o {
                Output::Send { to, message } => self.send(i, to.as_usize(), message),
                Output::Broadcast(message) => {
                    for j in 0..self.n() {
                        if j != i {
                            self.send(i, j, message.clone());
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
                    assert!(matches!(justification, Justification::Cft { .. }));
                    let node = &mut self.nodes[i];
                    assert_eq!(payload.height, node.blocks.last().unwrap().height().next());
                    let fee_to = self.genesis.fee_recipient(payload.proposer);
                    let executed =
                        execute(&node.state, &payload, &fee_to, params().min_fee, &VerifyAll);
                    node.state.apply(&executed.diff);
                    let parent = node.blocks.last().unwrap().hash();
                    let block = make_block(payload, parent, executed.diff.root, justification);
                    let (height, block_hash) = (block.height(), block.hash());
                    node.blocks.push(block);
                    self.input(i, Input::BlockExecuted { height, block_hash });
                }
                Output::RequestSync { from } => {
                    self.sync_requests += 1;
                    let best = (0..self.n())
                        .filter(|j| *j != i && self.nodes[*j].up && !self.isolated.contains(j))
                        .max_by_key(|j| self.nodes[*j].blocks.len());
                    if let Some(j) = best {
                        let blocks: Vec<Block> = self.nodes[j]
                            .blocks
                            .iter()
                            .skip(from.0 as usize)
                            .take(8)
                            .cloned()
                            .collect();
                        if !blocks.is_empty() {
                            self.input(i, Input::SyncBlocks(blocks));
                        }
                    }
                }
                Output::ViewChanged { view, primary } => {
                    if primary.as_usize() == i {
                        let prev = self.leaders.insert(view, i);
                        assert!(prev.is_none_or(|l| l == i), "two leaders in term {view}");
                    }
                }
                Output::Evidence(_) => panic!("CFT produces no evidence"),
                Output::Revert { .. } | Output::Mine(_) | Output::Finalize { .. } => {
                    panic!("CFT's blocks are final: it never reverts or mines")
                }
            }
        }
    }

    fn run(&mut self) {
        let mut steps = 0;
        while let Some((from, to, message)) = self.net.pop_front() {
            steps += 1;
            assert!(steps < 1_000_000, "message storm");
            self.input(
                to,
                Input::Message {
                    from: ValidatorIndex(from as u32),
                    message,
                },
            );
        }
    }

    fn fire_next_timer(&mut self) -> bool {
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

    fn run_until(&mut self, max_ms: u64, mut done: impl FnMut(&Cluster) -> bool) -> bool {
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

    /// Processes the earliest of the next delayed message and the next
    /// timer, until `until_ms`; false when nothing is left to do.
    fn step_chaos(&mut self, until_ms: u64) -> bool {
        let chaos = self.chaos.as_mut().expect("a chaos network");
        let next_msg = chaos.queue.keys().next().copied();
        let next_timer = self
            .nodes
            .iter()
            .filter(|n| n.up)
            .flat_map(|n| n.timers.values().copied())
            .min();
        match (next_msg, next_timer) {
            (Some((at, _)), t) if t.is_none_or(|t| at <= t) && at <= until_ms => {
                let (from, to, message) = chaos.queue.pop_first().unwrap().1;
                self.now = self.now.max(at);
                if !self.isolated.contains(&from) && !self.isolated.contains(&to) {
                    self.input(
                        to,
                        Input::Message {
                            from: ValidatorIndex(from as u32),
                            message,
                        },
                    );
                }
                true
            }
            (_, Some(t)) if t <= until_ms => self.fire_next_timer(),
            _ => {
                self.now = self.now.max(until_ms);
                false
            }
        }
    }

    fn submit(&mut self, txs: Vec<SignedTransaction>) {
        for i in 0..self.n() {
            self.input(i, Input::Transactions(txs.clone()));
        }
    }

    /// The node every live node agrees is leader, if there is one.
    fn leader(&self) -> Option<usize> {
        let up: Vec<usize> = (0..self.n())
            .filter(|i| self.nodes[*i].up && !self.isolated.contains(i))
            .collect();
        let l = up
            .iter()
            .copied()
            .find(|i| self.nodes[*i].engine.role() == Role::Leader)?;
        let term = self.nodes[l].engine.term();
        up.iter()
            .all(|i| {
                let e = &self.nodes[*i].engine;
                e.term() == term && e.leader() == Some(ValidatorIndex(l as u32))
            })
            .then_some(l)
    }

    fn committed_tx_count(&self, i: usize) -> usize {
        self.nodes[i].blocks.iter().map(|b| b.txs.len()).sum()
    }

    /// §5.3 State Machine Safety: the same block at every common height.
    fn assert_agreement(&self) {
        for a in &self.nodes {
            for b in &self.nodes {
                for (x, y) in a.blocks.iter().zip(&b.blocks) {
                    assert_eq!(x.hash(), y.hash(), "fork at height {}", x.height());
                }
            }
        }
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
        self.nodes[i].timers.clear();
        self.net.retain(|(_, to, _)| *to != i);
        if let Some(chaos) = self.chaos.as_mut() {
            chaos.queue.retain(|_, (_, to, _)| *to != i);
        }
    }

    fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let last = node.blocks.last().unwrap();
        node.engine = Cft::restore(
            config(&self.genesis, i),
            validator_key(i),
            Restored {
                records: node.records.clone(),
                last_executed: last.height(),
                last_block_hash: last.hash(),
                recent_blocks: Vec::new(),
            },
        );
        node.timers.clear();
        node.up = true;
        self.input(i, Input::Start);
    }
}

fn balance(c: &Cluster, i: usize, account: usize) -> u64 {
    c.nodes[i]
        .state
        .account(&Address(account_key(account).public()))
        .unwrap()
        .balance
}

// ---------------------------------------------------------------- §5.2

/// §5.2: with no leader, election timeouts (jittered per validator and
/// term) make one candidate win a majority; everyone follows it.
#[test]
fn leader_elected_among_three_and_five() {
    for n in [3, 5] {
        let mut c = Cluster::new(n, params());
        assert!(c.run_until(20_000, |c| c.leader().is_some()), "n = {n}");
        let l = c.leader().unwrap();
        let term = c.nodes[l].engine.term();
        assert!(term >= 1);
        for node in &c.nodes {
            let s = node.engine.status();
            assert_eq!((s.view, s.primary), (term, ValidatorIndex(l as u32)));
            assert!(!s.view_changing);
        }
        // A stable leader's heartbeats keep followers from starting elections.
        let elections: u64 = c.nodes.iter().map(|n| n.engine.counters().elections).sum();
        let at = c.now;
        c.run_until(10_000, |c| c.now > at + 10_000);
        assert_eq!(c.leader(), Some(l));
        let after: u64 = c.nodes.iter().map(|n| n.engine.counters().elections).sum();
        assert_eq!(elections, after, "n = {n}: elections while a leader is up");
    }
}

/// §5.2: election timeouts differ between validators (no clock or RNG:
/// the jitter is a hash of validator and term).
#[test]
fn election_timeouts_are_spread_deterministically() {
    let g = genesis(5, params());
    let mut firsts = BTreeSet::new();
    for i in 0..5 {
        let mut e = Cft::new(config(&g, i), validator_key(i), g.block().hash());
        let out = e.handle(0, Input::Start);
        let again =
            Cft::new(config(&g, i), validator_key(i), g.block().hash()).handle(0, Input::Start);
        assert_eq!(out, again, "same inputs, same outputs");
        let after = out
            .iter()
            .find_map(|o| match o {
                Output::ScheduleTimeout {
                    kind: TimeoutKind::Progress { view: 0 },
                    after_ms,
                } => Some(*after_ms),
                _ => None,
            })
            .expect("a follower arms its election timer");
        assert!((1000..2000).contains(&after), "{after}");
        firsts.insert(after);
    }
    assert!(firsts.len() >= 4, "{firsts:?}");
}

/// §5.2 (Figure 2, votedFor is persistent): a follower restarted from its
/// records never votes for a second candidate in a term it already voted in.
#[test]
fn restarted_follower_does_not_vote_twice_in_a_term() {
    let g = genesis(3, params());
    let mut e = Cft::new(config(&g, 0), validator_key(0), g.block().hash());
    e.handle(0, Input::Start);
    let out = e.handle(10, request_vote(1, 1, 0, 0));
    // Persist of (term 1, voted for 1) comes before the granted vote.
    let persisted = out.iter().position(|o| {
        *o == Output::Persist(CftRecord::HardState {
            term: 1,
            voted_for: Some(ValidatorIndex(1)),
        })
    });
    let sent = out.iter().position(|o| vote_granted(o) == Some(true));
    assert!(persisted.unwrap() < sent.unwrap(), "{out:?}");
    let records: Vec<CftRecord> = persisted_records(&out);

    let mut restarted = Cft::restore(
        config(&g, 0),
        validator_key(0),
        Restored {
            records,
            last_executed: Height::GENESIS,
            last_block_hash: g.block().hash(),
            recent_blocks: Vec::new(),
        },
    );
    restarted.handle(100, Input::Start);
    assert_eq!(
        (restarted.term(), restarted.voted_for()),
        (1, Some(ValidatorIndex(1)))
    );
    let out = restarted.handle(110, request_vote(2, 1, 0, 0));
    assert_eq!(sent_votes(&out), vec![false], "{out:?}");
    // The same candidate asking again gets the same answer.
    let out = restarted.handle(120, request_vote(1, 1, 0, 0));
    assert_eq!(sent_votes(&out), vec![true]);
    // A later term is a fresh vote.
    let out = restarted.handle(130, request_vote(2, 2, 0, 0));
    assert_eq!(sent_votes(&out), vec![true]);
}

/// §5.4.1 election restriction: a voter denies a candidate whose log is
/// less up to date (lower last term, or same last term and shorter).
#[test]
fn vote_denied_to_candidate_with_stale_log() {
    let g = genesis(3, params());
    let mut e = Cft::new(config(&g, 0), validator_key(0), g.block().hash());
    // Node 0 stores entries 1 (term 1) and 2 (term 2) from leader 1.
    e.handle(0, append(1, 1, 0, 0, vec![entry(&g, 1, 1)], 0));
    e.handle(0, append(1, 2, 1, 1, vec![entry(&g, 2, 2)], 0));
    assert_eq!((e.log().last_index(), e.log().last_term()), (Height(2), 2));
    // Longer log but an older last term: denied.
    assert_eq!(
        sent_votes(&e.handle(0, request_vote(2, 3, 5, 1))),
        vec![false]
    );
    // Same last term, shorter: denied.
    assert_eq!(
        sent_votes(&e.handle(0, request_vote(2, 4, 1, 2))),
        vec![false]
    );
    // Same last term, as long: granted.
    assert_eq!(
        sent_votes(&e.handle(0, request_vote(2, 5, 2, 2))),
        vec![true]
    );
}

// ---------------------------------------------------------------- §5.3

/// §5.3: transactions commit on every node, in the same order, each block
/// once and in height order; execution gives every node the same state.
#[test]
fn transactions_commit_in_same_order_on_all_nodes() {
    for n in [3, 5] {
        let mut c = Cluster::new(n, params());
        assert!(c.run_until(20_000, |c| c.leader().is_some()));
        // Spread over several batches and submissions.
        for round in 0..5 {
            let txs = (0..7).map(|k| transfer(0, 1, 10, round * 7 + k)).collect();
            c.submit(txs);
            c.run();
        }
        assert!(
            c.run_until(20_000, |c| (0..n).all(|i| c.committed_tx_count(i) == 35)),
            "n = {n}"
        );
        c.assert_agreement();
        let order: Vec<_> = c.nodes[0]
            .blocks
            .iter()
            .flat_map(|b| b.txs.iter().map(|t| t.tx.nonce))
            .collect();
        assert_eq!(order, (0..35).collect::<Vec<_>>());
        for i in 0..n {
            assert_eq!(balance(&c, i, 1), 1_000_350);
            assert_eq!(c.nodes[i].engine.status().pending_txs, 0);
        }
    }
}

/// A single validator is a valid cluster (quorum 1): it elects itself and commits.
#[test]
fn single_validator_commits_alone() {
    let mut c = Cluster::new(1, params());
    c.submit((0..25).map(|k| transfer(0, 1, 10, k)).collect());
    assert!(c.run_until(10_000, |c| c.committed_tx_count(0) == 25));
    assert_eq!(c.nodes[0].engine.role(), Role::Leader);
}

/// §5.2–§5.3: when the leader crashes, the others elect a new leader in a
/// later term and commits continue; the old leader rejoins as a follower
/// and catches up.
#[test]
fn leader_crash_elects_new_leader_and_commits_continue() {
    for n in [3, 5] {
        let mut c = Cluster::new(n, params());
        assert!(c.run_until(20_000, |c| c.leader().is_some()));
        c.submit((0..5).map(|k| transfer(0, 1, 10, k)).collect());
        assert!(c.run_until(10_000, |c| (0..n).all(|i| c.committed_tx_count(i) == 5)));
        let old = c.leader().unwrap();
        let old_term = c.nodes[old].engine.term();
        c.crash(old);
        c.submit((5..10).map(|k| transfer(0, 1, 10, k)).collect());
        let live: Vec<usize> = (0..n).filter(|i| *i != old).collect();
        let live2 = live.clone();
        assert!(
            c.run_until(30_000, move |c| live2
                .iter()
                .all(|i| c.committed_tx_count(*i) == 10)),
            "n = {n}"
        );
        let new = c.leader().unwrap();
        assert_ne!(new, old);
        assert!(c.nodes[new].engine.term() > old_term);
        c.restart(old);
        assert!(c.run_until(30_000, |c| (0..n).all(|i| c.committed_tx_count(i) == 10)));
        assert_eq!(c.nodes[old].engine.role(), Role::Follower);
        c.assert_agreement();
    }
}

/// §5.3 with crashes of a minority: f of 2f+1 validators down, the rest
/// still commit; restarted from their records they catch up. With the log
/// compacted behind the leader, they catch up from stored blocks.
#[test]
fn minority_crash_and_restart_with_compaction_catches_up() {
    let mut p = params();
    p.watermark_window = 4;
    p.checkpoint_interval = 2;
    p.max_block_txs = 2;
    let mut c = Cluster::new(5, p);
    assert!(c.run_until(20_000, |c| c.leader().is_some()));
    let leader = c.leader().unwrap();
    let down: Vec<usize> = (0..5).filter(|i| *i != leader).take(2).collect();
    for &i in &down {
        c.crash(i);
    }
    c.submit((0..40).map(|k| transfer(0, 1, 10, k)).collect());
    let up: Vec<usize> = (0..5).filter(|i| !down.contains(i)).collect();
    assert!(c.run_until(30_000, move |c| up
        .iter()
        .all(|i| c.committed_tx_count(*i) == 40)));
    assert!(
        c.nodes[leader].engine.log().base().0 > Height(0),
        "leader compacted"
    );
    for &i in &down {
        c.restart(i);
    }
    assert!(c.run_until(30_000, |c| (0..5).all(|i| c.committed_tx_count(i) == 40)));
    assert!(
        c.sync_requests > 0,
        "caught up below the compaction point from blocks"
    );
    c.assert_agreement();
    // Everyone still has the one leader.
    assert!(c.run_until(5_000, |c| c.leader().is_some()));
}

/// §5.1: stale-term messages are rejected — AppendEntries of an old term
/// gets a failure carrying the current term and stores nothing; an old
/// RequestVote is denied; an old vote is ignored.
#[test]
fn stale_term_messages_rejected() {
    let g = genesis(3, params());
    let mut e = Cft::new(config(&g, 0), validator_key(0), g.block().hash());
    e.handle(0, request_vote(1, 3, 0, 0));
    assert_eq!(e.term(), 3);
    let out = e.handle(0, append(2, 2, 0, 0, vec![entry(&g, 1, 2)], 1));
    assert!(!out
        .iter()
        .any(|o| matches!(o, Output::Persist(_) | Output::Commit { .. })));
    let acks: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Send { message, .. } => match &message.body {
                CftBody::AppendAck(a) => Some(a.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(acks.len(), 1);
    assert!(!acks[0].success);
    assert_eq!(acks[0].term, 3);
    assert_eq!(e.log().last_index(), Height(0));
    assert_eq!(
        sent_votes(&e.handle(0, request_vote(2, 2, 9, 9))),
        vec![false]
    );
    assert_eq!(e.voted_for(), Some(ValidatorIndex(1)));
    let out = e.handle(
        0,
        signed(
            2,
            CftBody::Vote(VoteReply {
                term: 2,
                voter: ValidatorIndex(2),
                candidate: ValidatorIndex(0),
                granted: true,
            }),
        ),
    );
    assert!(out.is_empty());
    assert!(e.counters().stale >= 3);
}

/// §5.3: a follower whose log conflicts with the leader's drops the
/// conflicting entry and all after it, durably (Truncate before the new
/// Entry, both before the ack), and its log then restarts to the same
/// state whatever order the store returns the records in.
#[test]
fn conflicting_log_suffix_is_truncated() {
    let g = genesis(3, params());
    let mut e = Cft::new(config(&g, 0), validator_key(0), g.block().hash());
    // Leader 1 of term 1 sends entries 1..=3, commits only 1.
    let out1 = e.handle(
        0,
        append(1, 1, 0, 0, (1..=3).map(|h| entry(&g, h, 1)).collect(), 1),
    );
    assert_eq!(e.log().last_index(), Height(3));
    assert_eq!(e.commit_index(), Height(1));
    // Leader 2 of term 2 disagrees from index 2 on.
    let out2 = e.handle(0, append(2, 2, 1, 1, vec![entry(&g, 2, 2)], 1));
    assert_eq!((e.log().last_index(), e.log().last_term()), (Height(2), 2));
    let truncate = out2.iter().position(
        |o| matches!(o, Output::Persist(CftRecord::Truncate { from, .. }) if *from == Height(2)),
    );
    let stored = out2.iter().position(
        |o| matches!(o, Output::Persist(CftRecord::Entry { payload, .. }) if payload.round == 2),
    );
    let acked = out2.iter().position(|o| {
        matches!(o, Output::Send { message, .. }
        if matches!(&message.body, CftBody::AppendAck(a) if a.success && a.last_index == Height(2)))
    });
    assert!(
        truncate.unwrap() < stored.unwrap() && stored.unwrap() < acked.unwrap(),
        "{out2:?}"
    );

    // A log-inconsistency is answered with a failure and a hint (§5.3).
    let out3 = e.handle(0, append(2, 2, 3, 2, vec![entry(&g, 4, 2)], 1));
    assert!(out3.iter().any(|o| matches!(o, Output::Send { message, .. }
        if matches!(&message.body, CftBody::AppendAck(a) if !a.success && a.last_index == Height(2)))));

    // Restart from the records in write order and in reverse order.
    let mut records = persisted_records(&out1);
    records.extend(persisted_records(&out2));
    // (The node's write-ahead log returns records in key order, not write order.)
    let mut reversed = records.clone();
    reversed.reverse();
    for recs in [records, reversed] {
        let r = Cft::restore(
            config(&g, 0),
            validator_key(0),
            Restored {
                records: recs,
                last_executed: Height(0),
                last_block_hash: g.block().hash(),
                recent_blocks: Vec::new(),
            },
        );
        assert_eq!(r.log(), e.log());
        assert_eq!(r.term(), 2);
    }
}

// ---------------------------------------------------------------- §5.4.2

/// §5.4.2: a leader never commits an entry of an earlier term by counting
/// replicas; it commits it only with an entry of its own term.
#[test]
fn only_current_term_entries_commit_by_counting() {
    let g = genesis(3, params());
    let old = entry(&g, 1, 1);
    let records = vec![
        CftRecord::HardState {
            term: 2,
            voted_for: Some(ValidatorIndex(0)),
        },
        CftRecord::Entry {
            write: 0,
            payload: old.clone(),
        },
    ];
    let mut e = Cft::restore(
        config(&g, 0),
        validator_key(0),
        Restored {
            records,
            last_executed: Height(0),
            last_block_hash: g.block().hash(),
            recent_blocks: Vec::new(),
        },
    );
    let start = e.handle(0, Input::Start);
    let timeout = start
        .iter()
        .find_map(|o| match o {
            Output::ScheduleTimeout { kind, after_ms } => Some((*kind, *after_ms)),
            _ => None,
        })
        .unwrap();
    e.handle(timeout.1, Input::Timeout(timeout.0));
    assert_eq!((e.role(), e.term()), (Role::Candidate, 3));
    let out = e.handle(
        timeout.1,
        signed(
            1,
            CftBody::Vote(VoteReply {
                term: 3,
                voter: ValidatorIndex(1),
                candidate: ValidatorIndex(0),
                granted: true,
            }),
        ),
    );
    assert_eq!(e.role(), Role::Leader);
    // The new leader appended an entry of its own term after the old one.
    assert_eq!((e.log().last_index(), e.log().last_term()), (Height(2), 3));
    assert!(!out.iter().any(|o| matches!(o, Output::Commit { .. })));
    // A majority (0 and 1) holds the term-1 entry: still not committed.
    let out = e.handle(0, ack(1, 3, true, 1));
    assert!(
        !out.iter().any(|o| matches!(o, Output::Commit { .. })),
        "{out:?}"
    );
    assert_eq!(e.commit_index(), Height(0));
    // A majority holds the term-3 entry: both commit, in order.
    let out = e.handle(0, ack(1, 3, true, 2));
    let commits: Vec<(Height, Justification)> = out
        .iter()
        .filter_map(|o| match o {
            Output::Commit {
                payload,
                justification,
            } => Some((payload.height, justification.clone())),
            _ => None,
        })
        .collect();
    let j = Justification::Cft {
        term: 3,
        leader: ValidatorIndex(0),
    };
    assert_eq!(commits, vec![(Height(1), j.clone()), (Height(2), j)]);
}

// ---------------------------------------------------------------- crash schedules

/// §5.2–§5.4 under crash faults, seeded: a network that delays, loses,
/// duplicates and reorders, nodes cut off and crashed (any number of them,
/// at any time) and restarted from their records, until a heal time. Then
/// every node is up and connected and is handed the transactions its chain
/// lacks. Safety: no two nodes ever hold different blocks at a height, no
/// vote is sent unpersisted or twice in a term, one leader per term,
/// `check_invariants` after every input. Liveness: every submitted
/// transaction is in every node's chain soon after the heal.
#[test]
fn seeded_crash_schedules_keep_agreement_and_liveness() {
    let (mut terms, mut txs) = (0, 0);
    for n in [3, 5] {
        for seed in 0..50 {
            let (t, x) = run_crash_schedule(n, seed);
            terms += t;
            txs += x;
        }
    }
    // The schedules bite: leaders are lost and replaced many times, and work gets done.
    assert!(terms > 100 * 3, "only {terms} terms in 100 schedules");
    assert!(txs > 100 * 30, "only {txs} transactions in 100 schedules");
}

/// Runs one schedule; returns (highest term reached, transactions committed).
fn run_crash_schedule(n: usize, seed: u64) -> (u64, usize) {
    const HEAL_MS: u64 = 3_000;
    let mut p = params();
    p.view_change_timeout_ms = 200;
    p.max_block_txs = 4;
    p.watermark_window = 8;
    p.checkpoint_interval = 2;
    let mut c = Cluster::new(n, p);
    c.chaos = Some(Chaos {
        rng: seed.wrapping_mul(1_000_003) ^ n as u64,
        heal_ms: HEAL_MS,
        seq: 0,
        queue: BTreeMap::new(),
    });
    let mut wanted: Vec<SignedTransaction> = Vec::new();
    let mut nonces = [0u64; 4];
    let mut t = 0;
    while t < HEAL_MS {
        let chaos = c.chaos.as_mut().unwrap();
        t += 50 + chaos.below(350);
        let action = chaos.below(100);
        let who = chaos.below(n as u64) as usize;
        while c.step_chaos(t) {}
        match action {
            0..=29 => c.crash(who),
            30..=54 if !c.nodes[who].up => c.restart(who),
            55..=69 if !c.isolated.remove(&who) => {
                c.isolated.insert(who);
            }
            _ => {}
        }
        // Clients keep submitting, to whichever node they reach.
        let to = c.chaos.as_mut().unwrap().below(n as u64) as usize;
        let from = (t as usize) % 4;
        let txs: Vec<_> = (0..3)
            .map(|_| {
                nonces[from] += 1;
                transfer(from, (from + 1) % 4, 1, nonces[from] - 1)
            })
            .collect();
        wanted.extend(txs.clone());
        c.input(to, Input::Transactions(txs));
    }
    while c.step_chaos(HEAL_MS) {}
    c.isolated.clear();
    for i in 0..n {
        if !c.nodes[i].up {
            c.restart(i);
        }
        let have = tx_hashes(&c, i);
        let missing: Vec<_> = wanted
            .iter()
            .filter(|tx| !have.contains(&tx.hash()))
            .cloned()
            .collect();
        c.input(i, Input::Transactions(missing));
    }
    let deadline = HEAL_MS + 20_000;
    let all_in = |c: &Cluster| {
        (0..n).all(|i| {
            let have = tx_hashes(c, i);
            wanted.iter().all(|tx| have.contains(&tx.hash()))
        })
    };
    while !all_in(&c) && (c.step_chaos(deadline) || c.now < deadline) {}
    c.assert_agreement();
    assert!(
        all_in(&c),
        "n = {n}, seed {seed}: not live after the heal; heights {:?}",
        (0..n)
            .map(|i| c.nodes[i].blocks.len() - 1)
            .collect::<Vec<_>>()
    );
    let term = c.nodes.iter().map(|x| x.engine.term()).max().unwrap_or(0);
    (term, wanted.len())
}

fn tx_hashes(c: &Cluster, i: usize) -> BTreeSet<phalanx_crypto::Hash> {
    c.nodes[i]
        .blocks
        .iter()
        .flat_map(|b| b.txs.iter().map(SignedTransaction::hash))
        .collect()
}

// ---------------------------------------------------------------- signatures

/// Messages are signed; a bad signature, an unknown signer or a signature
/// by another validator's key is dropped without effect and never panics.
#[test]
fn bad_signatures_are_dropped() {
    let g = genesis(3, params());
    let mut e = Cft::new(config(&g, 0), validator_key(0), g.block().hash());
    let good = request_vote(1, 1, 0, 0);
    let Input::Message { message, .. } = good else {
        unreachable!()
    };
    let mut tampered = message.clone();
    tampered.signature = Signature([7; 64]);
    let mut forged = message.clone();
    forged.body = CftBody::RequestVote(RequestVote {
        term: 9,
        candidate: ValidatorIndex(1),
        last_log_index: Height(0),
        last_log_term: 0,
    });
    let unknown = CftMessage::sign(
        CftBody::RequestVote(RequestVote {
            term: 1,
            candidate: ValidatorIndex(7),
            last_log_index: Height(0),
            last_log_term: 0,
        }),
        common::CHAIN,
        &Keypair::from_label("stranger"),
    );
    let wrong_key = CftMessage::sign(
        CftBody::RequestVote(RequestVote {
            term: 1,
            candidate: ValidatorIndex(2),
            last_log_index: Height(0),
            last_log_term: 0,
        }),
        common::CHAIN,
        &validator_key(1),
    );
    let other_chain = CftMessage::sign(
        CftBody::RequestVote(RequestVote {
            term: 1,
            candidate: ValidatorIndex(1),
            last_log_index: Height(0),
            last_log_term: 0,
        }),
        "another-chain",
        &validator_key(1),
    );
    for m in [tampered, forged, unknown, wrong_key, other_chain] {
        let out = e.handle(
            0,
            Input::Message {
                from: ValidatorIndex(1),
                message: m,
            },
        );
        assert!(out.is_empty(), "{out:?}");
    }
    assert_eq!(e.counters().bad_signature, 5);
    assert_eq!((e.term(), e.voted_for()), (0, None));
    // The genuine message still works.
    let out = e.handle(
        0,
        Input::Message {
            from: ValidatorIndex(1),
            message,
        },
    );
    assert_eq!(sent_votes(&out), vec![true]);
}

/// Malformed AppendEntries (wrong chain, gaps, entry terms above the
/// message's term) are dropped without touching the log.
#[test]
fn malformed_entries_are_dropped() {
    let g = genesis(3, params());
    let mut e = Cft::new(config(&g, 0), validator_key(0), g.block().hash());
    let mut wrong_chain = entry(&g, 1, 1);
    wrong_chain.chain_id = "x".into();
    for entries in [
        vec![wrong_chain],
        vec![entry(&g, 2, 1)],
        vec![entry(&g, 1, 5)],
        vec![entry(&g, 1, 1), entry(&g, 3, 1)],
    ] {
        let out = e.handle(0, append(1, 1, 0, 0, entries, 0));
        assert!(out.is_empty(), "{out:?}");
    }
    assert_eq!(e.log().last_index(), Height(0));
    assert_eq!(e.counters().invalid, 4);
}

// ---------------------------------------------------------------- helpers

fn signed(from: usize, body: CftBody) -> Input<CftMessage> {
    Input::Message {
        from: ValidatorIndex(from as u32),
        message: CftMessage::sign(body, common::CHAIN, &validator_key(from)),
    }
}

fn request_vote(candidate: usize, term: u64, last_index: u64, last_term: u64) -> Input<CftMessage> {
    signed(
        candidate,
        CftBody::RequestVote(RequestVote {
            term,
            candidate: ValidatorIndex(candidate as u32),
            last_log_index: Height(last_index),
            last_log_term: last_term,
        }),
    )
}

fn append(
    leader: usize,
    term: u64,
    prev: u64,
    prev_term: u64,
    entries: Vec<Payload>,
    commit: u64,
) -> Input<CftMessage> {
    signed(
        leader,
        CftBody::AppendEntries(AppendEntries {
            term,
            leader: ValidatorIndex(leader as u32),
            prev_log_index: Height(prev),
            prev_log_term: prev_term,
            entries,
            leader_commit: Height(commit),
        }),
    )
}

fn ack(follower: usize, term: u64, success: bool, last: u64) -> Input<CftMessage> {
    signed(
        follower,
        CftBody::AppendAck(AppendAck {
            term,
            follower: ValidatorIndex(follower as u32),
            success,
            last_index: Height(last),
        }),
    )
}

fn entry(g: &Genesis, height: u64, term: u64) -> Payload {
    Payload {
        chain_id: g.chain_id.clone(),
        height: Height(height),
        round: term,
        proposer: ValidatorIndex(1),
        timestamp_ms: height,
        txs: vec![transfer(0, 1, 1, height - 1)],
        evidence: Vec::new(),
    }
}

fn vote_granted(o: &Out) -> Option<bool> {
    match o {
        Output::Send { message, .. } => match &message.body {
            CftBody::Vote(v) => Some(v.granted),
            _ => None,
        },
        _ => None,
    }
}

fn sent_votes(out: &[Out]) -> Vec<bool> {
    out.iter().filter_map(vote_granted).collect()
}

fn persisted_records(out: &[Out]) -> Vec<CftRecord> {
    out.iter()
        .filter_map(|o| match o {
            Output::Persist(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// Issue 18, finding 4: a transaction whose nonce another one used leaves
/// the engine when the driver says so ([`Input::Forget`]); the others stay.
#[test]
fn forgotten_transactions_leave_the_pending_queue() {
    let g = genesis(3, params());
    let mut e = Cft::new(config(&g, 1), validator_key(1), g.block().hash());
    e.handle(0, Input::Start);
    let (lost, kept) = (transfer(0, 1, 5, 0), transfer(0, 1, 5, 1));
    e.handle(1, Input::Transactions(vec![lost.clone(), kept]));
    assert_eq!(e.status().pending_txs, 2);
    e.handle(2, Input::Forget(vec![lost.hash(), lost.hash()]));
    assert_eq!(e.status().pending_txs, 1);
    assert_eq!(e.counters().forgotten, 1);
}
