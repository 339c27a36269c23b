//! The `Store` conformance suite: the same tests, run on every store
//! implementation (`MemoryStore`, and `RocksStore` with the `rocksdb`
//! feature), plus what only a persistent store promises (reopening, refusing
//! corrupt bytes without panicking).

mod common;

use common::*;
use phalanx_crypto::Hash;
use phalanx_ledger::{
    Account, Address, Block, Genesis, Height, Justification, MemoryStore, RejectReason, State,
    Store, StoreError, Transaction, TxLocation, TxStatus, ValidatorIndex,
};

/// The fixture chain: genesis and three executed blocks.
struct Fixture {
    genesis: Genesis,
    chain: Vec<Appended>,
    /// The state after the last block, computed by applying the diffs.
    state: State,
}

fn status(a: &Appended, index: usize) -> &TxStatus {
    &a.receipts[index].status
}

/// Genesis, then: a block with two good transfers and one transaction of
/// each rejection kind; an empty block carrying evidence; a block with a
/// transfer to a new account, a self-transfer and a spend of collected fees.
fn fixture() -> Fixture {
    let genesis = genesis();
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let mut state = genesis.state();
    let mut chain = vec![genesis_appended(&genesis)];

    let wrong_chain = Transaction {
        chain_id: "other-chain".into(),
        from: addr("alice"),
        to: addr("bob"),
        amount: 1,
        nonce: 1,
        fee: 0,
    }
    .sign(&alice);
    let forged = Transaction {
        chain_id: CHAIN_ID.into(),
        from: addr("alice"),
        to: addr("bob"),
        amount: 9,
        nonce: 1,
        fee: 0,
    }
    .sign(&bob);
    let txs = vec![
        transfer(&alice, addr("bob"), 100, 0, 2),
        transfer(&bob, addr("carol"), 30, 0, 1),
        transfer(&alice, addr("dave"), 7, 0, 0),
        transfer(&user("stranger"), addr("alice"), 1, 0, 0),
        transfer(&carol, addr("alice"), 1_000, 0, 0),
        wrong_chain,
        forged,
    ];
    let b1 = build_block(&genesis, &state, &chain[0].block, 1, 0, txs, vec![]);
    assert_eq!(status(&b1, 0), &TxStatus::Success);
    assert_eq!(status(&b1, 1), &TxStatus::Success);
    assert_eq!(
        status(&b1, 2),
        &TxStatus::Failed(RejectReason::BadNonce {
            expected: 1,
            found: 0
        })
    );
    assert_eq!(
        status(&b1, 3),
        &TxStatus::Failed(RejectReason::UnknownSender)
    );
    assert_eq!(
        status(&b1, 4),
        &TxStatus::Failed(RejectReason::InsufficientFunds {
            balance: 80,
            needed: 1_000
        })
    );
    assert_eq!(
        status(&b1, 5),
        &TxStatus::Failed(RejectReason::WrongChainId {
            found: "other-chain".into()
        })
    );
    assert_eq!(
        status(&b1, 6),
        &TxStatus::Failed(RejectReason::BadSignature)
    );
    state.apply(&b1.diff);
    chain.push(b1);

    let b2 = build_block(
        &genesis,
        &state,
        &chain[1].block,
        2,
        1,
        vec![],
        vec![equivocation(3, 0, 1)],
    );
    state.apply(&b2.diff);
    chain.push(b2);

    let fee_collector = validator_key(1);
    let txs = vec![
        transfer(&bob, addr("erin"), 10, 1, 0),
        transfer(&alice, addr("alice"), 5, 1, 1),
        transfer(&fee_collector, addr("carol"), 3, 0, 0),
    ];
    let b3 = build_block(&genesis, &state, &chain[2].block, 3, 1, txs, vec![]);
    assert!(
        b3.receipts.iter().all(|r| r.is_success()),
        "{:?}",
        b3.receipts
    );
    state.apply(&b3.diff);
    chain.push(b3);

    assert_eq!(
        state.account(&addr("erin")),
        Some(&Account {
            balance: 10,
            nonce: 0
        })
    );
    assert_eq!(state.total_supply(), genesis.state().total_supply());
    Fixture {
        genesis,
        chain,
        state,
    }
}

fn append_all(store: &dyn Store, chain: &[Appended]) {
    for a in chain {
        store
            .append_block(&a.block, &a.receipts, &a.diff)
            .unwrap_or_else(|e| panic!("append at height {}: {e}", a.block.height()));
    }
}

/// Everything a reader can ask about `chain` (appended in full) and `state`.
fn check_chain(store: &dyn Store, chain: &[Appended], state: &State) {
    let last = chain.last().expect("a chain");
    assert_eq!(store.latest_height().unwrap(), Some(last.block.height()));
    assert_eq!(store.latest_block().unwrap().as_ref(), Some(&last.block));
    for a in chain {
        let height = a.block.height();
        assert_eq!(
            store.block(height).unwrap().as_ref(),
            Some(&a.block),
            "block {height}"
        );
        assert_eq!(
            store.block_by_hash(&a.block.hash()).unwrap().as_ref(),
            Some(&a.block),
            "block {height} by hash"
        );
        for (index, (tx, receipt)) in a.block.txs.iter().zip(&a.receipts).enumerate() {
            let expected = TxLocation {
                height,
                index: index as u32,
                receipt: receipt.clone(),
            };
            assert_eq!(
                store.tx(&tx.hash()).unwrap(),
                Some(expected),
                "tx {index} of block {height}"
            );
        }
    }
    assert_eq!(store.block(last.block.height().next()).unwrap(), None);
    assert_eq!(store.block(Height(u64::MAX)).unwrap(), None);
    assert_eq!(
        store
            .block_by_hash(&Hash::digest(b"no such block"))
            .unwrap(),
        None
    );
    assert_eq!(store.tx(&Hash::digest(b"no such tx")).unwrap(), None);
    for (address, account) in state.accounts() {
        assert_eq!(
            store.account(address).unwrap().as_ref(),
            Some(account),
            "account {address}"
        );
    }
    assert_eq!(store.account(&addr("nobody")).unwrap(), None);
    let loaded = store.load_state().unwrap();
    assert_eq!(loaded.root(), last.block.header.state_root);
    assert_eq!(&loaded, state);
}

// ---------------------------------------------------------------------------
// The suite. Each function gets a fresh, empty store.
// ---------------------------------------------------------------------------

fn empty_store(store: &dyn Store) {
    assert_eq!(store.latest_height().unwrap(), None);
    assert_eq!(store.latest_block().unwrap(), None);
    assert_eq!(store.block(Height::GENESIS).unwrap(), None);
    assert_eq!(
        store.block_by_hash(&genesis().block().hash()).unwrap(),
        None
    );
    assert_eq!(store.tx(&Hash::digest(b"tx")).unwrap(), None);
    assert_eq!(store.account(&addr("alice")).unwrap(), None);
    assert_eq!(store.load_state().unwrap(), State::default());
    assert_eq!(store.evidence().unwrap(), vec![]);
    assert_eq!(store.consensus(b"vote").unwrap(), None);
    assert_eq!(store.meta("anything").unwrap(), None);
}

fn genesis_only(store: &dyn Store) {
    let g = genesis();
    let appended = genesis_appended(&g);
    store
        .append_block(&appended.block, &[], &appended.diff)
        .unwrap();
    check_chain(store, &[appended], &g.state());
    assert_eq!(
        store.account(&addr("bob")).unwrap(),
        Some(Account {
            balance: 500,
            nonce: 0
        })
    );
    // An account created with a zero balance exists.
    assert_eq!(
        store.account(&addr("dave")).unwrap(),
        Some(Account {
            balance: 0,
            nonce: 0
        })
    );
}

fn chain_reads(store: &dyn Store) {
    let f = fixture();
    append_all(store, &f.chain);
    check_chain(store, &f.chain, &f.state);
    assert_eq!(
        store.block(Height::GENESIS).unwrap(),
        Some(f.genesis.block())
    );

    // A failed transaction is found, with its failed receipt and no fee.
    let b1 = &f.chain[1];
    let replay = store.tx(&b1.block.txs[2].hash()).unwrap().expect("stored");
    assert_eq!((replay.height, replay.index), (Height(1), 2));
    assert_eq!(
        replay.receipt.status,
        TxStatus::Failed(RejectReason::BadNonce {
            expected: 1,
            found: 0
        })
    );
    assert_eq!(replay.receipt.fee_paid, 0);
    assert!(!replay.receipt.is_success());
    let ok = store.tx(&b1.block.txs[0].hash()).unwrap().expect("stored");
    assert!(ok.receipt.is_success());
    assert_eq!(ok.receipt.fee_paid, 2);

    // The accounts the blocks changed read back with their new values; fees
    // went to each block's proposer.
    assert_eq!(
        store.account(&addr("alice")).unwrap(),
        Some(Account {
            balance: 897,
            nonce: 2
        })
    );
    assert_eq!(
        store.account(&addr("carol")).unwrap(),
        Some(Account {
            balance: 83,
            nonce: 0
        })
    );
    let fees1 = Address(validator_key(1).public());
    assert_eq!(
        store.account(&fees1).unwrap(),
        Some(Account {
            balance: 0,
            nonce: 1
        })
    );
    let fees3 = Address(validator_key(3).public());
    assert_eq!(
        store.account(&fees3).unwrap(),
        Some(Account {
            balance: 1,
            nonce: 0
        })
    );

    // The evidence inside block 2 comes back with the block.
    let b2 = store.block(Height(2)).unwrap().expect("stored");
    assert_eq!(b2.evidence, vec![equivocation(3, 0, 1)]);
    assert!(b2.body_matches_header());
}

/// What a refused append must leave as it was.
#[derive(Debug, PartialEq)]
struct Observed {
    latest_height: Option<Height>,
    latest_block: Option<Block>,
    state: State,
    probe_block: Option<Block>,
    probe_by_hash: Option<Block>,
    probe_txs: Vec<Option<TxLocation>>,
    probe_accounts: Vec<Option<Account>>,
}

fn observe(store: &dyn Store, probe: &Appended) -> Observed {
    Observed {
        latest_height: store.latest_height().unwrap(),
        latest_block: store.latest_block().unwrap(),
        state: store.load_state().unwrap(),
        probe_block: store.block(probe.block.height()).unwrap(),
        probe_by_hash: store.block_by_hash(&probe.block.hash()).unwrap(),
        probe_txs: probe
            .block
            .txs
            .iter()
            .map(|t| store.tx(&t.hash()).unwrap())
            .collect(),
        probe_accounts: probe
            .diff
            .changed
            .keys()
            .map(|a| store.account(a).unwrap())
            .collect(),
    }
}

fn refused_appends_change_nothing(store: &dyn Store) {
    let f = fixture();
    let (gen, b1, b2) = (&f.chain[0], &f.chain[1], &f.chain[2]);

    // Empty store: only genesis (height 0, zero parent) goes in.
    let before = observe(store, b1);
    let err = store
        .append_block(&b1.block, &b1.receipts, &b1.diff)
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotNext {
                expected: Height(0),
                got: Height(1)
            }
        ),
        "{err:?}"
    );
    let mut bad_genesis = gen.block.clone();
    bad_genesis.header.parent = Hash::digest(b"not zero");
    let err = store
        .append_block(&bad_genesis, &[], &gen.diff)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::WrongParent { height: Height(0) }),
        "{err:?}"
    );
    assert_eq!(observe(store, b1), before);
    assert_eq!(store.latest_height().unwrap(), None);

    store
        .append_block(&gen.block, &gen.receipts, &gen.diff)
        .unwrap();
    let before = observe(store, b1);
    let refuse =
        |block: &Block, receipts: &[phalanx_ledger::Receipt], diff: &phalanx_ledger::StateDiff| {
            let err = store.append_block(block, receipts, diff).unwrap_err();
            assert_eq!(
                observe(store, b1),
                before,
                "refused append ({err}) changed the store"
            );
            err
        };

    // Genesis again, and a block that skips a height.
    let err = refuse(&gen.block, &gen.receipts, &gen.diff);
    assert!(
        matches!(
            err,
            StoreError::NotNext {
                expected: Height(1),
                got: Height(0)
            }
        ),
        "{err:?}"
    );
    let err = refuse(&b2.block, &b2.receipts, &b2.diff);
    assert!(
        matches!(
            err,
            StoreError::NotNext {
                expected: Height(1),
                got: Height(2)
            }
        ),
        "{err:?}"
    );

    // Right height, wrong parent.
    let mut orphan = b1.block.clone();
    orphan.header.parent = Hash::digest(b"some other block");
    let err = refuse(&orphan, &b1.receipts, &b1.diff);
    assert!(
        matches!(err, StoreError::WrongParent { height: Height(1) }),
        "{err:?}"
    );

    // A diff that is not this block's: another height, another root.
    let mut diff = b1.diff.clone();
    diff.height = Height(2);
    assert!(matches!(
        refuse(&b1.block, &b1.receipts, &diff),
        StoreError::Inconsistent(_)
    ));
    let mut diff = b1.diff.clone();
    diff.root = Hash::digest(b"another root");
    assert!(matches!(
        refuse(&b1.block, &b1.receipts, &diff),
        StoreError::Inconsistent(_)
    ));

    // Receipts that are not this block's: one missing, out of order, for
    // another height, for another transaction.
    let receipts = &b1.receipts[..b1.receipts.len() - 1];
    assert!(matches!(
        refuse(&b1.block, receipts, &b1.diff),
        StoreError::Inconsistent(_)
    ));
    let mut receipts = b1.receipts.clone();
    receipts.swap(0, 1);
    assert!(matches!(
        refuse(&b1.block, &receipts, &b1.diff),
        StoreError::Inconsistent(_)
    ));
    let mut receipts = b1.receipts.clone();
    receipts[3].height = Height(7);
    assert!(matches!(
        refuse(&b1.block, &receipts, &b1.diff),
        StoreError::Inconsistent(_)
    ));
    let mut receipts = b1.receipts.clone();
    receipts[6].tx_hash = Hash::digest(b"another tx");
    assert!(matches!(
        refuse(&b1.block, &receipts, &b1.diff),
        StoreError::Inconsistent(_)
    ));

    // After all that, the right block still goes in, and the chain goes on.
    append_all(store, &f.chain[1..]);
    check_chain(store, &f.chain, &f.state);
    let err = store
        .append_block(&b2.block, &b2.receipts, &b2.diff)
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotNext {
                expected: Height(4),
                got: Height(2)
            }
        ),
        "{err:?}"
    );
}

fn consensus_and_meta(store: &dyn Store) {
    assert_eq!(store.consensus(b"view").unwrap(), None);
    store.put_consensus(b"view", &7u64.to_be_bytes()).unwrap();
    store.put_consensus(b"vote/3", b"prepare").unwrap();
    store.put_consensus(b"", b"empty key").unwrap();
    store.put_consensus(b"empty value", b"").unwrap();
    assert_eq!(
        store.consensus(b"view").unwrap(),
        Some(7u64.to_be_bytes().to_vec())
    );
    assert_eq!(
        store.consensus(b"vote/3").unwrap(),
        Some(b"prepare".to_vec())
    );
    assert_eq!(store.consensus(b"").unwrap(), Some(b"empty key".to_vec()));
    assert_eq!(store.consensus(b"empty value").unwrap(), Some(vec![]));
    assert_eq!(store.consensus(b"vote").unwrap(), None);
    store.put_consensus(b"view", &8u64.to_be_bytes()).unwrap();
    assert_eq!(
        store.consensus(b"view").unwrap(),
        Some(8u64.to_be_bytes().to_vec())
    );
    assert_eq!(
        store.consensus(b"vote/3").unwrap(),
        Some(b"prepare".to_vec())
    );

    // Metadata is its own key space.
    assert_eq!(store.meta("view").unwrap(), None);
    store.put_meta("view", b"meta").unwrap();
    assert_eq!(store.meta("view").unwrap(), Some(b"meta".to_vec()));
    assert_eq!(
        store.consensus(b"view").unwrap(),
        Some(8u64.to_be_bytes().to_vec())
    );
    store.put_meta("view", b"meta 2").unwrap();
    assert_eq!(store.meta("view").unwrap(), Some(b"meta 2".to_vec()));
    store.put_meta("", b"").unwrap();
    assert_eq!(store.meta("").unwrap(), Some(vec![]));

    // No metadata key, whatever its name, disturbs the chain the store keeps.
    let f = fixture();
    append_all(store, &f.chain[..2]);
    for key in [
        "tip",
        "chain/tip",
        "latest_height",
        "height",
        "state_root",
        "root",
    ] {
        store.put_meta(key, b"\xffgarbage").unwrap();
        assert_eq!(store.meta(key).unwrap(), Some(b"\xffgarbage".to_vec()));
    }
    append_all(store, &f.chain[2..]);
    check_chain(store, &f.chain, &f.state);
}

fn evidence_is_deduplicated(store: &dyn Store) {
    let e1 = equivocation(2, 0, 5);
    let e2 = equivocation(2, 1, 5);
    assert_ne!(e1.id(), e2.id());
    assert!(store.put_evidence(&e1).unwrap(), "new evidence");
    assert!(!store.put_evidence(&e1).unwrap(), "the same evidence again");
    // The same pair of votes in the other order is the same evidence.
    let swapped = phalanx_ledger::Evidence {
        first: e1.second,
        second: e1.first,
    };
    assert_eq!(swapped.id(), e1.id());
    assert!(
        !store.put_evidence(&swapped).unwrap(),
        "the same evidence, swapped"
    );
    assert!(store.put_evidence(&e2).unwrap(), "other evidence");
    let mut stored = store.evidence().unwrap();
    stored.sort_by_key(|e| e.id());
    let mut expected = vec![e1, e2];
    expected.sort_by_key(|e| e.id());
    assert_eq!(stored, expected);
}

/// Issue 18, finding 5: a transaction a Byzantine proposer repeats — in
/// the same block ([T, Z, T]) or a later one — fails the second time with
/// a bad nonce, and the index keeps the receipt of the transfer that
/// happened. A transaction that failed first and succeeded later (its
/// sender was funded in between) shows the success.
fn a_repeated_transaction_keeps_its_successful_receipt(store: &dyn Store) {
    let g = genesis();
    let first = genesis_appended(&g);
    let mut state = g.state();
    let t = transfer(&user("alice"), addr("bob"), 5, 0, 1);
    let z = transfer(&user("bob"), addr("carol"), 1, 0, 0);
    // carol holds 50: 60 is too much until bob's 20 below arrives.
    let late = transfer(&user("carol"), addr("dave"), 60, 0, 0);
    let b1 = build_block(
        &g,
        &state,
        &first.block,
        0,
        0,
        vec![t.clone(), z, t.clone(), late.clone()],
        vec![],
    );
    assert!(b1.receipts[0].is_success());
    assert!(matches!(
        status(&b1, 2),
        TxStatus::Failed(RejectReason::BadNonce { .. })
    ));
    assert!(matches!(
        status(&b1, 3),
        TxStatus::Failed(RejectReason::InsufficientFunds { .. })
    ));
    state.apply(&b1.diff);
    let fund = transfer(&user("bob"), addr("carol"), 20, 1, 0);
    let b2 = build_block(
        &g,
        &state,
        &b1.block,
        1,
        0,
        vec![t.clone(), fund, late.clone()],
        vec![],
    );
    assert!(!b2.receipts[0].is_success());
    assert!(b2.receipts[2].is_success(), "{:?}", b2.receipts[2]);
    append_all(store, &[first, b1, b2]);

    let t_at = store.tx(&t.hash()).unwrap().expect("indexed");
    assert_eq!((t_at.height, t_at.index), (Height(1), 0));
    assert!(t_at.receipt.is_success(), "{:?}", t_at.receipt);
    let late_at = store.tx(&late.hash()).unwrap().expect("indexed");
    assert_eq!((late_at.height, late_at.index), (Height(2), 2));
    assert!(late_at.receipt.is_success());
}

/// Readers running beside the writer see whole blocks: the state they load
/// is the state of one block (its root is that block's state root, and the
/// supply is intact), never half of one.
fn concurrent_reads_see_whole_blocks(store: &dyn Store) {
    let g = genesis();
    let supply = g.state().total_supply();
    let mut chain = vec![genesis_appended(&g)];
    let mut state = g.state();
    let (alice, bob) = (user("alice"), user("bob"));
    for i in 0..40u64 {
        let txs = vec![
            transfer(&alice, addr("bob"), 3 + i, i, 1),
            transfer(&bob, addr("carol"), 2 + i, 2 * i, 0),
            transfer(&bob, addr(&format!("new-{i}")), 1, 2 * i + 1, 0),
        ];
        let next = build_block(
            &g,
            &state,
            &chain.last().expect("genesis").block,
            (i % 4) as u32,
            0,
            txs,
            vec![],
        );
        assert!(
            next.receipts.iter().all(|r| r.is_success()),
            "{:?}",
            next.receipts
        );
        state.apply(&next.diff);
        chain.push(next);
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut seen = 0;
                    while !done.load(std::sync::atomic::Ordering::Acquire) {
                        // Read the tip first: the state loaded after it is
                        // at least that far (and so not the empty state).
                        if let Some(h) = store.latest_height().unwrap() {
                            let loaded = store.load_state().unwrap();
                            assert!(loaded.height() >= h);
                            let block = store
                                .block(loaded.height())
                                .unwrap()
                                .expect("block of the loaded state");
                            assert_eq!(block.header.state_root, loaded.root());
                            assert_eq!(loaded.total_supply(), supply);
                            seen += 1;
                        }
                    }
                    seen
                })
            })
            .collect();
        append_all(store, &chain);
        done.store(true, std::sync::atomic::Ordering::Release);
        for r in readers {
            r.join().expect("reader");
        }
    });
    check_chain(store, &chain, &state);
}

/// Tentative blocks (PoW, PoS) come back out exactly: after reverting to
/// a height, every read answers as if only the chain up to it had been
/// appended; a competing branch then goes on top; final blocks and
/// genesis are refused.
fn tentative_blocks_revert_exactly(store: &dyn Store) {
    let f = fixture();
    append_all(store, &f.chain[..2]);
    // Blocks 2 and 3 are tentative, stored with the undo of their diffs.
    let mut state = f.genesis.state();
    state.apply(&f.chain[1].diff);
    let before = state.clone();
    for a in &f.chain[2..] {
        let undo = state.undo_for(&a.diff);
        store
            .append_tentative(&a.block, &a.receipts, &a.diff, &undo)
            .unwrap();
        state.apply(&a.diff);
    }
    check_chain(store, &f.chain, &f.state);
    assert_eq!(store.revert_latest().unwrap(), f.chain[3].block);
    assert_eq!(store.revert_latest().unwrap(), f.chain[2].block);
    check_chain(store, &f.chain[..2], &before);
    for a in &f.chain[2..] {
        assert_eq!(store.block_by_hash(&a.block.hash()).unwrap(), None);
        for tx in &a.block.txs {
            assert_eq!(store.tx(&tx.hash()).unwrap(), None, "{tx:?}");
        }
    }
    // Erin's account was created by block 3 and is gone with it.
    assert_eq!(store.account(&addr("erin")).unwrap(), None);
    // Block 1 is final.
    assert!(matches!(
        store.revert_latest(),
        Err(StoreError::Final { height: Height(1) })
    ));
    check_chain(store, &f.chain[..2], &before);
    // A competing block 2 goes on top of block 1.
    let alice = user("alice");
    let other = build_block(
        &f.genesis,
        &before,
        &f.chain[1].block,
        3,
        7,
        vec![transfer(&alice, addr("frank"), 5, 1, 2)],
        vec![],
    );
    let undo = before.undo_for(&other.diff);
    store
        .append_tentative(&other.block, &other.receipts, &other.diff, &undo)
        .unwrap();
    assert!(other.receipts[0].is_success(), "{:?}", other.receipts);
    let mut after = before.clone();
    after.apply(&other.diff);
    let mut chain: Vec<Appended> = f.chain[..2].to_vec();
    chain.push(other);
    check_chain(store, &chain, &after);
}

/// A tentative block made final (PBFT finalizing a fallback branch) keeps
/// its hash and state, takes its new justification, and can no longer be
/// reverted; blocks are finalized in height order only.
fn finalized_blocks_stay(store: &dyn Store) {
    let f = fixture();
    append_all(store, &f.chain[..2]);
    let mut state = f.genesis.state();
    state.apply(&f.chain[1].diff);
    for a in &f.chain[2..] {
        let undo = state.undo_for(&a.diff);
        store
            .append_tentative(&a.block, &a.receipts, &a.diff, &undo)
            .unwrap();
        state.apply(&a.diff);
    }
    let cert = Justification::Cft {
        term: 9,
        leader: ValidatorIndex(2),
    };
    // Out of order, above the tip, or genesis: refused, nothing changes.
    for h in [3, 4, 0] {
        assert!(
            matches!(
                store.finalize(Height(h), &cert),
                Err(StoreError::Inconsistent(_))
            ),
            "finalize({h})"
        );
    }
    check_chain(store, &f.chain, &f.state);
    store.finalize(Height(2), &cert).unwrap();
    let two = store.block(Height(2)).unwrap().unwrap();
    assert_eq!(two.justification, cert);
    assert_eq!(two.hash(), f.chain[2].block.hash());
    assert_eq!(store.block_by_hash(&two.hash()).unwrap(), Some(two.clone()));
    // Block 3 is still tentative; block 2 now is not.
    assert_eq!(store.revert_latest().unwrap(), f.chain[3].block);
    assert!(matches!(
        store.revert_latest(),
        Err(StoreError::Final { height: Height(2) })
    ));
    assert_eq!(store.latest_block().unwrap(), Some(two));
    let mut at_two = f.genesis.state();
    for a in &f.chain[1..3] {
        at_two.apply(&a.diff);
    }
    assert_eq!(store.load_state().unwrap(), at_two);
}

/// Generates one `#[test]` per suite function for a store, given a function
/// returning `(guard, store)`; the guard (e.g. a temporary directory) lives
/// as long as the store and is dropped after it.
macro_rules! conformance_suite {
    ($module:ident, $open:path) => {
        mod $module {
            conformance_suite!(@tests $open;
                empty_store,
                genesis_only,
                chain_reads,
                refused_appends_change_nothing,
                consensus_and_meta,
                evidence_is_deduplicated,
                a_repeated_transaction_keeps_its_successful_receipt,
                concurrent_reads_see_whole_blocks,
                tentative_blocks_revert_exactly,
                finalized_blocks_stay,
            );
        }
    };
    (@tests $open:path; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                let (_guard, store) = $open();
                super::$test(&store);
            }
        )*
    };
}

fn open_memory() -> ((), MemoryStore) {
    ((), MemoryStore::new())
}

conformance_suite!(memory, super::open_memory);

#[cfg(feature = "rocksdb")]
conformance_suite!(rocks, super::rocks_only::open_rocks);

/// What only the RocksDB store promises: it survives a restart, and bytes
/// it cannot decode are errors that say what is broken.
#[cfg(feature = "rocksdb")]
mod rocks_only {
    use super::*;
    use phalanx_ledger::RocksStore;
    use std::path::Path;
    use tempfile::TempDir;

    pub fn open_rocks() -> (TempDir, RocksStore) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = RocksStore::open(dir.path()).expect("open a new store");
        (dir, store)
    }

    fn reopen(path: &Path) -> RocksStore {
        RocksStore::open(path).expect("reopen the store")
    }

    #[test]
    fn an_empty_store_reopens_empty() {
        let (dir, store) = open_rocks();
        drop(store);
        empty_store(&reopen(dir.path()));
    }

    #[test]
    fn open_creates_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("home").join("data");
        let store = RocksStore::open(&path).expect("open creates the database");
        assert_eq!(store.path(), path.as_path());
        genesis_only(&store);
    }

    #[test]
    fn everything_survives_reopen() {
        let (dir, store) = open_rocks();
        let f = fixture();
        append_all(&store, &f.chain);
        store.put_consensus(b"locked", b"view 3, digest d").unwrap();
        store.put_meta("node", b"node0").unwrap();
        let evidence = equivocation(1, 4, 9);
        assert!(store.put_evidence(&evidence).unwrap());
        drop(store);

        let store = reopen(dir.path());
        check_chain(&store, &f.chain, &f.state);
        assert_eq!(
            store.consensus(b"locked").unwrap(),
            Some(b"view 3, digest d".to_vec())
        );
        assert_eq!(store.meta("node").unwrap(), Some(b"node0".to_vec()));
        assert_eq!(store.evidence().unwrap(), vec![evidence.clone()]);
        assert!(
            !store.put_evidence(&evidence).unwrap(),
            "still known after a restart"
        );

        // Appending goes on from what is on disk: the parent check uses the
        // reopened chain's tip.
        let last = f.chain.last().unwrap();
        let next = build_block(
            &f.genesis,
            &f.state,
            &last.block,
            0,
            2,
            vec![transfer(&user("carol"), addr("dave"), 20, 0, 1)],
            vec![],
        );
        assert!(next.receipts[0].is_success());
        let mut orphan = next.block.clone();
        orphan.header.parent = f.chain[2].block.hash();
        let err = store
            .append_block(&orphan, &next.receipts, &next.diff)
            .unwrap_err();
        assert!(
            matches!(err, StoreError::WrongParent { height: Height(4) }),
            "{err:?}"
        );
        store
            .append_block(&next.block, &next.receipts, &next.diff)
            .unwrap();
        drop(store);

        let store = reopen(dir.path());
        let mut chain = f.chain.clone();
        let mut state = f.state.clone();
        state.apply(&next.diff);
        chain.push(next);
        check_chain(&store, &chain, &state);
    }

    /// Opens the database underneath a closed store, to damage it.
    fn raw_db(path: &Path) -> rocksdb::DB {
        let opts = rocksdb::Options::default();
        let cfs = rocksdb::DB::list_cf(&opts, path).expect("column families");
        rocksdb::DB::open_cf(&opts, path, cfs).expect("raw open")
    }

    fn damage(path: &Path, cf: &str, key: &[u8], value: &[u8]) {
        let db = raw_db(path);
        let handle = db
            .cf_handle(cf)
            .unwrap_or_else(|| panic!("no column family {cf}"));
        db.put_cf(handle, key, value).unwrap();
    }

    fn corrupt_message<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
        match result {
            Err(StoreError::Corrupt(message)) => message,
            other => panic!("expected a Corrupt error, got {other:?}"),
        }
    }

    #[test]
    fn undecodable_bytes_are_corrupt_errors() {
        let (dir, store) = open_rocks();
        let f = fixture();
        append_all(&store, &f.chain);
        drop(store);
        let path = dir.path();
        let tx_hash = f.chain[1].block.txs[0].hash();
        damage(path, "blocks", &1u64.to_be_bytes(), b"\x01\x02");
        damage(
            path,
            "blocks",
            &2u64.to_be_bytes(),
            &phalanx_crypto::encode(&f.chain[1].block),
        );
        damage(path, "block_hashes", &f.chain[3].block.hash().0, b"abc");
        damage(path, "txs", &tx_hash.0, b"\xff");
        damage(path, "accounts", &addr("alice").0 .0, b"");
        damage(path, "evidence", &[7; 32], b"not evidence");

        let store = reopen(path);
        assert!(corrupt_message(store.block(Height(1))).contains("block at height 1"));
        assert!(
            corrupt_message(store.block_by_hash(&f.chain[1].block.hash()))
                .contains("block at height 1")
        );
        assert!(corrupt_message(store.block(Height(2))).contains("says it is at height 1"));
        assert!(
            corrupt_message(store.block_by_hash(&f.chain[3].block.hash()))
                .contains("height of block")
        );
        assert!(corrupt_message(store.tx(&tx_hash)).contains(&tx_hash.to_string()));
        assert!(corrupt_message(store.account(&addr("alice"))).contains(&addr("alice").to_string()));
        assert!(corrupt_message(store.load_state()).contains("account"));
        assert!(corrupt_message(store.evidence()).contains("evidence"));
        // What is intact still reads.
        assert_eq!(
            store.block(Height(3)).unwrap().as_ref(),
            Some(&f.chain[3].block)
        );
        assert_eq!(
            store.account(&addr("bob")).unwrap().as_ref(),
            f.state.account(&addr("bob"))
        );
        drop(store);

        // A damaged tip: the store refuses to open rather than guess.
        damage(path, "meta", b"chain/tip", b"\x03");
        let err = RocksStore::open(path).unwrap_err();
        assert!(corrupt_message::<()>(Err(err)).contains("chain tip"));
    }
}
