//! Exact rollback (issue 19): a chain that keeps tentative blocks must be
//! able to undo applied state diffs and land on exactly the state (accounts,
//! height and root) it had, so that a reorg — undo to the common ancestor,
//! apply the other branch — gives the state a replay from genesis gives.

use phalanx_crypto::PublicKey;
use phalanx_ledger::{Account, Address, Height, State, StateDiff, Undo};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Eight addresses, so diffs both change existing accounts and create new ones.
fn address() -> impl Strategy<Value = Address> {
    (0u8..8).prop_map(|i| Address(PublicKey([i; 32])))
}

fn changes() -> impl Strategy<Value = BTreeMap<Address, (u64, u64)>> {
    prop::collection::btree_map(address(), (any::<u64>(), 0u64..100), 0..5)
}

fn genesis() -> State {
    State::genesis(&[(Address(PublicKey([0; 32])), 1_000)].into_iter().collect())
}

/// Applies one block's changes at the next height; returns its undo.
fn apply(state: &mut State, changes: &BTreeMap<Address, (u64, u64)>) -> Undo {
    let changed = changes
        .iter()
        .map(|(a, (balance, nonce))| {
            (
                *a,
                Account {
                    balance: *balance,
                    nonce: *nonce,
                },
            )
        })
        .collect();
    let diff: StateDiff = state.diff(state.height().next(), changed);
    let undo = state.undo_for(&diff);
    state.apply(&diff);
    undo
}

proptest! {
    #[test]
    fn undoing_every_block_returns_every_earlier_state(blocks in prop::collection::vec(changes(), 1..12)) {
        let mut state = genesis();
        let mut snapshots = vec![state.clone()];
        let mut undos = Vec::new();
        for b in &blocks {
            undos.push(apply(&mut state, b));
            snapshots.push(state.clone());
        }
        for undo in undos.iter().rev() {
            snapshots.pop();
            state.revert(undo);
            prop_assert_eq!(&state, snapshots.last().unwrap());
        }
        prop_assert_eq!(state.height(), Height::GENESIS);
    }

    #[test]
    fn a_reorg_lands_where_a_replay_of_the_winning_branch_does(
        common in prop::collection::vec(changes(), 0..6),
        losing in prop::collection::vec(changes(), 1..6),
        winning in prop::collection::vec(changes(), 1..6),
    ) {
        let mut state = genesis();
        for b in &common {
            apply(&mut state, b);
        }
        let fork = state.clone();
        let undos: Vec<Undo> = losing.iter().map(|b| apply(&mut state, b)).collect();
        for undo in undos.iter().rev() {
            state.revert(undo);
        }
        prop_assert_eq!(&state, &fork);
        for b in &winning {
            apply(&mut state, b);
        }
        let mut replay = genesis();
        for b in common.iter().chain(&winning) {
            apply(&mut replay, b);
        }
        prop_assert_eq!(state.root(), replay.root());
        prop_assert_eq!(&state, &replay);
    }
}

#[test]
fn an_account_a_block_created_is_gone_after_its_undo() {
    let mut state = genesis();
    let new = Address(PublicKey([5; 32]));
    let undo = apply(&mut state, &[(new, (7, 1))].into_iter().collect());
    assert_eq!(
        state.account(&new),
        Some(&Account {
            balance: 7,
            nonce: 1
        })
    );
    assert_eq!(undo.previous.get(&new), Some(&None));
    state.revert(&undo);
    assert_eq!(state.account(&new), None);
    assert_eq!(state, genesis());
}
