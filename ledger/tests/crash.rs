//! The crash test: a child process appends blocks to a `RocksStore` as fast
//! as it can and is killed with SIGKILL at random moments; after each kill the
//! store must hold a whole prefix of the chain — every block complete, with
//! its receipts and exactly the state it produces — and appending must go on.
//!
//! The child is this very test binary, re-run with `--exact crash_child` and
//! `PHALANX_CRASH_CHILD_DIR` set; without that variable `crash_child` returns
//! at once. Set `PHALANX_CRASH_SEED` to replay a run's kill times.

#![cfg(all(unix, feature = "rocksdb"))]

mod common;

use common::*;
use phalanx_crypto::Hash;
use phalanx_ledger::{execute, Block, Genesis, Height, RocksStore, State, Store, VerifyAll};
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "PHALANX_CRASH_CHILD_DIR";
const SEED_ENV: &str = "PHALANX_CRASH_SEED";
const KILLS: usize = 24;
const NAMES: [&str; 4] = ["alice", "bob", "carol", "dave"];

/// The fixture genesis with balances big enough for thousands of blocks of
/// transfers whose amounts grow with the height (dave still starts empty, so
/// some of his early transfers fail).
fn crash_genesis() -> Genesis {
    let mut g = genesis();
    for a in &mut g.accounts {
        if a.balance > 0 {
            a.balance = 1_000_000_000_000;
        }
    }
    g.validate().expect("valid genesis");
    g
}

/// The block after `parent`, a function of the height and the state only:
/// three transfers between the named accounts (amounts unique per height,
/// so every transaction hash is unique), now and then a replay (rejected
/// for its nonce), a transfer to a new account, and evidence.
fn next_block(g: &Genesis, state: &State, parent: &Block) -> Appended {
    let h = parent.height().next().0;
    let nonce = |name: &str| state.account(&addr(name)).map_or(0, |a| a.nonce);
    let mut txs = Vec::new();
    for k in 0..3u64 {
        let from = NAMES[((h + k) % 4) as usize];
        let to = NAMES[((h + k + 1 + h % 2) % 4) as usize];
        txs.push(transfer(
            &user(from),
            addr(to),
            h * 4 + k,
            nonce(from),
            h % 3,
        ));
    }
    if h.is_multiple_of(5) {
        let from = NAMES[(h % 4) as usize];
        txs.push(transfer(
            &user(from),
            addr("bob"),
            h * 4 + 3,
            nonce(from).wrapping_sub(1),
            0,
        ));
    }
    if h.is_multiple_of(7) {
        let from = NAMES[((h + 3) % 4) as usize];
        txs.push(transfer(
            &user(from),
            addr(&format!("new-{h}")),
            h * 4 + 3,
            nonce(from),
            1,
        ));
    }
    let evidence = if h.is_multiple_of(11) {
        vec![equivocation((h % 4) as u32, h, h)]
    } else {
        vec![]
    };
    build_block(g, state, parent, (h % 4) as u32, h / 10, txs, evidence)
}

/// Appends the next deterministic block (genesis if the store is empty) and
/// returns its height.
fn append_next(g: &Genesis, store: &dyn Store) -> Height {
    let next = match store.latest_block().expect("read tip") {
        None => genesis_appended(g),
        Some(tip) => next_block(g, &store.load_state().expect("load state"), &tip),
    };
    store
        .append_block(&next.block, &next.receipts, &next.diff)
        .expect("append");
    next.block.height()
}

/// The child: append forever, logging `begin h` / `done h` around each append.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let parent = std::os::unix::process::parent_id();
    let g = crash_genesis();
    let store = RocksStore::open(Path::new(&dir)).expect("child: open store");
    let mut out = std::io::stdout();
    writeln!(out, "ready").expect("log");
    let mut state = store.load_state().expect("child: load state");
    let mut tip = store.latest_block().expect("child: read tip");
    // Stop if the parent is gone (it died without killing us).
    while std::os::unix::process::parent_id() == parent {
        let next = match &tip {
            None => genesis_appended(&g),
            Some(tip) => next_block(&g, &state, tip),
        };
        let h = next.block.height();
        writeln!(out, "begin {h}").expect("log");
        store
            .append_block(&next.block, &next.receipts, &next.diff)
            .expect("child: append");
        writeln!(out, "done {h}").expect("log");
        state.apply(&next.diff);
        tip = Some(next.block);
    }
}

/// splitmix64: enough randomness for kill times, and replayable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// Kills the child if the parent panics before it does.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the stored chain must be: the deterministic chain (regenerated here,
/// independently of the store), and the state reached by re-executing the
/// blocks actually stored.
struct Checker {
    genesis: Genesis,
    /// The deterministic chain, generated as far as needed.
    expected: Vec<Appended>,
    /// The state after `expected`'s last block.
    expected_state: State,
    /// The state after re-executing the stored blocks `0..replayed`.
    replay: State,
    replayed: u64,
}

impl Checker {
    fn new(genesis: Genesis) -> Checker {
        let first = genesis_appended(&genesis);
        let state = genesis.state();
        Checker {
            genesis,
            expected: vec![first],
            expected_state: state.clone(),
            replay: state,
            replayed: 0,
        }
    }

    fn expected(&mut self, height: u64) -> &Appended {
        while self.expected.len() as u64 <= height {
            let parent = &self.expected.last().expect("genesis").block;
            let next = next_block(&self.genesis, &self.expected_state, parent);
            self.expected_state.apply(&next.diff);
            self.expected.push(next);
        }
        &self.expected[height as usize]
    }

    /// Checks everything about the store; returns its latest height.
    fn check(&mut self, store: &RocksStore) -> Option<Height> {
        let Some(latest) = store.latest_height().expect("latest height") else {
            assert_eq!(store.block(Height::GENESIS).expect("read"), None);
            assert_eq!(store.load_state().expect("load state"), State::default());
            assert_eq!(self.replayed, 0, "the chain shrank to nothing");
            return None;
        };
        assert!(
            latest.0 + 1 >= self.replayed,
            "the chain shrank below {}",
            self.replayed
        );
        let mut parent_hash = Hash::ZERO;
        for h in 0..=latest.0 {
            let block = store
                .block(Height(h))
                .expect("read block")
                .unwrap_or_else(|| panic!("block {h} missing below the tip {latest}"));
            assert_eq!(block.header.parent, parent_hash, "block {h} does not chain");
            parent_hash = block.hash();
            assert_eq!(
                store
                    .block_by_hash(&parent_hash)
                    .expect("read")
                    .map(|b| b.height()),
                Some(Height(h)),
                "hash index of block {h}"
            );
            let expected = self.expected(h).clone();
            assert_eq!(
                block, expected.block,
                "block {h} is not the deterministic block"
            );
            for (i, tx) in block.txs.iter().enumerate() {
                let location = store
                    .tx(&tx.hash())
                    .expect("read tx")
                    .unwrap_or_else(|| panic!("tx {i} of block {h} has no location"));
                assert_eq!((location.height, location.index), (Height(h), i as u32));
                assert_eq!(
                    location.receipt, expected.receipts[i],
                    "receipt of tx {i} of block {h}"
                );
            }
            if h == self.replayed {
                self.replay_block(&block, store);
            }
        }
        assert_eq!(
            store.block(latest.next()).expect("read"),
            None,
            "a block above the tip"
        );
        let loaded = store.load_state().expect("load state");
        assert_eq!(loaded.height(), latest);
        assert_eq!(
            loaded.root(),
            store
                .block(latest)
                .expect("read")
                .expect("tip")
                .header
                .state_root
        );
        assert_eq!(
            loaded, self.replay,
            "stored state differs from the replayed blocks' state"
        );
        for (address, account) in self.replay.accounts() {
            assert_eq!(
                store.account(address).expect("read").as_ref(),
                Some(account)
            );
        }
        assert_eq!(loaded.total_supply(), self.genesis.state().total_supply());
        Some(latest)
    }

    /// Re-executes a stored block on the replayed state.
    fn replay_block(&mut self, block: &Block, store: &RocksStore) {
        if block.height() == Height::GENESIS {
            assert_eq!(block, &self.genesis.block());
        } else {
            let fee_recipient = self.genesis.fee_recipient(block.header.proposer);
            let executed = execute(
                &self.replay,
                &block.payload(),
                &fee_recipient,
                self.genesis.consensus.min_fee,
                &VerifyAll,
            );
            assert_eq!(
                executed.diff.root,
                block.header.state_root,
                "replayed root of block {}",
                block.height()
            );
            for (tx, receipt) in block.txs.iter().zip(&executed.receipts) {
                let stored = store.tx(&tx.hash()).expect("read tx").expect("located");
                assert_eq!(
                    &stored.receipt, receipt,
                    "stored receipt differs from the replayed one"
                );
            }
            self.replay.apply(&executed.diff);
        }
        self.replayed += 1;
    }
}

/// The last `begin h` / `done h` the child logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastStep {
    NotReady,
    Ready,
    Begun(u64),
    Done(u64),
}

fn last_step(log: &str) -> LastStep {
    let mut step = LastStep::NotReady;
    for line in log.lines() {
        let parse = |s: &str| s.trim().parse::<u64>().ok();
        if line == "ready" {
            step = LastStep::Ready;
        } else if let Some(h) = line.strip_prefix("begin ").and_then(parse) {
            step = LastStep::Begun(h);
        } else if let Some(h) = line.strip_prefix("done ").and_then(parse) {
            step = LastStep::Done(h);
        }
    }
    step
}

fn spawn_child(db: &Path, log: &Path) -> ChildGuard {
    let exe = std::env::current_exe().expect("test binary path");
    let out = std::fs::File::create(log).expect("child log");
    let child = Command::new(exe)
        .args(["--exact", "crash_child", "--test-threads=1", "--quiet"])
        .env(CHILD_ENV, db)
        .stdout(out)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    ChildGuard(child)
}

/// Waits until the child has opened the store (its log says `ready`).
fn wait_ready(log: &Path, child: &mut ChildGuard) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::fs::read_to_string(log).is_ok_and(|s| s.lines().any(|l| l == "ready")) {
            return;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("child exited before opening the store: {status}");
        }
        assert!(Instant::now() < deadline, "child not ready after 30 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn killed_writers_leave_a_whole_chain_prefix() {
    let started = Instant::now();
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c4a5);
    eprintln!("crash test seed {seed} (set {SEED_ENV} to replay)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("temporary directory");
    let db: PathBuf = dir.path().join("db");
    let g = crash_genesis();
    let mut checker = Checker::new(g.clone());

    let mut latest: Option<Height> = None;
    let (mut grew, mut mid_append, mut after_done, mut during_start) = (0, 0, 0, 0);
    let mut child_blocks = 0u64;
    for run in 0..KILLS {
        let log = dir.path().join(format!("child-{run}.log"));
        let mut child = spawn_child(&db, &log);
        // One run in four is killed at a random moment from its start, which
        // may be while RocksDB is still opening (recovering) the database;
        // the others once the child has opened the store.
        if run % 4 != 3 {
            wait_ready(&log, &mut child);
        }
        std::thread::sleep(Duration::from_millis(rng.between(5, 150)));
        child.0.kill().expect("SIGKILL the child");
        let status = child.0.wait().expect("reap the child");
        if status.signal() != Some(9) {
            let mut stderr = String::new();
            if let Some(mut e) = child.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
            }
            panic!("run {run}: the child was not killed but exited ({status}):\n{stderr}");
        }
        let step = last_step(&std::fs::read_to_string(&log).expect("read child log"));

        let store = RocksStore::open(&db).expect("reopen after the kill");
        let now = checker.check(&store);
        assert!(
            now >= latest,
            "run {run}: the chain went back from {latest:?} to {now:?}"
        );
        let next = |h: Option<Height>| h.map_or(0, |h| h.0 + 1);
        match step {
            LastStep::NotReady | LastStep::Ready => {
                during_start += 1;
                assert_eq!(
                    now, latest,
                    "run {run}: blocks appeared that the child never began"
                );
            }
            LastStep::Begun(h) => {
                // Killed inside append_block (or just around it): block h is
                // either all there or not there at all.
                mid_append += 1;
                assert!(
                    now == Some(Height(h)) || next(now) == h,
                    "run {run}: began {h}, store at {now:?}"
                );
            }
            LastStep::Done(h) => {
                after_done += 1;
                assert_eq!(
                    now,
                    Some(Height(h)),
                    "run {run}: finished {h}, store at {now:?}"
                );
            }
        }
        if now > latest {
            grew += 1;
            child_blocks += next(now) - next(latest);
        }

        // Appending continues where the child stopped.
        let appended = append_next(&g, &store);
        assert_eq!(
            Some(appended),
            now.map(Height::next).or(Some(Height::GENESIS))
        );
        latest = Some(appended);
        drop(store);
    }
    let store = RocksStore::open(&db).expect("final reopen");
    assert_eq!(checker.check(&store), latest);

    eprintln!(
        "crash test: {KILLS} kills in {:.1?}: {grew} runs grew the chain by {child_blocks} blocks in all; \
         {mid_append} kills inside an append, {after_done} between appends, {during_start} before the \
         first append; tip at height {}",
        started.elapsed(),
        latest.map_or(0, |h| h.0),
    );
    assert!(
        child_blocks > 0,
        "no kill came after an append: the test tested nothing"
    );
    assert!(
        grew >= KILLS / 3,
        "only {grew} of {KILLS} runs appended anything before the kill"
    );
    assert!(mid_append > 0, "no kill landed inside an append");
    assert!(
        latest.map_or(0, |h| h.0) > KILLS as u64,
        "the chain must outgrow the parent's own appends"
    );
}
