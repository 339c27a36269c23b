//! Account state and its incremental commitment.
//!
//! The state commitment is a hash chain over per-block state changes:
//! `root(h) = SHA-256(StateEntry, root(h-1), h, changed accounts sorted by address)`,
//! with `root(0)` over the genesis accounts. A block costs one hash over the
//! accounts it touched — not a rehash of every account — and since the state at
//! `h` is a function of genesis and the changes up to `h`, two honest nodes
//! have the same root exactly when they went through the same state changes.
//! Checkpoints compare it. What it cannot do is prove one account's balance
//! without the history (that would need a Merkle map; not needed yet).

use crate::types::{Address, Height};
use phalanx_crypto::{Domain, Hash};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// One account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Spendable units.
    pub balance: u64,
    /// The nonce its next transaction must carry.
    pub nonce: u64,
}

/// The accounts changed by one block, and the resulting commitment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDiff {
    /// The height the diff produces.
    pub height: Height,
    /// New values of every account the block touched.
    pub changed: BTreeMap<Address, Account>,
    /// The state root after the diff.
    pub root: Hash,
}

/// The commitment step shared by genesis and every block.
fn chain_root(prev: &Hash, height: Height, changed: &BTreeMap<Address, Account>) -> Hash {
    // BTreeMap serializes in address order: the same set gives the same bytes.
    Hash::of(Domain::StateEntry, &(prev, height, changed))
}

/// What [`State::revert`] needs to undo one applied [`StateDiff`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undo {
    /// The height before the diff.
    pub height: Height,
    /// The state root before the diff.
    pub root: Hash,
    /// Each account the diff changes, as it was (`None`: it did not exist).
    pub previous: BTreeMap<Address, Option<Account>>,
}

/// All accounts at some height, with the state root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    accounts: HashMap<Address, Account>,
    height: Height,
    root: Hash,
}

impl State {
    /// The state at genesis: the given balances, nonces 0.
    pub fn genesis(balances: &BTreeMap<Address, u64>) -> State {
        let changed: BTreeMap<Address, Account> = balances
            .iter()
            .map(|(a, b)| {
                (
                    *a,
                    Account {
                        balance: *b,
                        nonce: 0,
                    },
                )
            })
            .collect();
        let root = chain_root(&Hash::ZERO, Height::GENESIS, &changed);
        State {
            accounts: changed.into_iter().collect(),
            height: Height::GENESIS,
            root,
        }
    }

    /// Rebuilds a state from stored parts (a store's accounts column).
    pub fn from_parts(accounts: HashMap<Address, Account>, height: Height, root: Hash) -> State {
        State {
            accounts,
            height,
            root,
        }
    }

    /// An account, if it exists.
    pub fn account(&self, address: &Address) -> Option<&Account> {
        self.accounts.get(address)
    }

    /// All accounts.
    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.accounts.iter()
    }

    /// The height of the last applied block.
    pub fn height(&self) -> Height {
        self.height
    }

    /// The state commitment.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// The sum of all balances (fits in u64 by the genesis supply check; u128
    /// here so a bug would show as a wrong number rather than a wrap).
    pub fn total_supply(&self) -> u128 {
        self.accounts.values().map(|a| a.balance as u128).sum()
    }

    /// The diff that sets `changed` at `height` on top of this state.
    pub fn diff(&self, height: Height, changed: BTreeMap<Address, Account>) -> StateDiff {
        let root = chain_root(&self.root, height, &changed);
        StateDiff {
            height,
            changed,
            root,
        }
    }

    /// Applies a diff made by [`State::diff`] on this state.
    pub fn apply(&mut self, diff: &StateDiff) {
        for (address, account) in &diff.changed {
            self.accounts.insert(*address, *account);
        }
        self.height = diff.height;
        self.root = diff.root;
    }

    /// What undoes `diff` once applied to this state: the height, the root
    /// and every account `diff` changes as they are now (`None` for one
    /// `diff` creates). Taken before [`State::apply`]; a chain that keeps
    /// tentative blocks keeps one per block, so a reorg rolls state back
    /// exactly (issue 19).
    pub fn undo_for(&self, diff: &StateDiff) -> Undo {
        Undo {
            height: self.height,
            root: self.root,
            previous: diff
                .changed
                .keys()
                .map(|a| (*a, self.accounts.get(a).copied()))
                .collect(),
        }
    }

    /// Rolls back the last applied diff with the [`Undo`] taken before it.
    pub fn revert(&mut self, undo: &Undo) {
        for (address, before) in &undo.previous {
            match before {
                Some(account) => {
                    self.accounts.insert(*address, *account);
                }
                None => {
                    self.accounts.remove(address);
                }
            }
        }
        self.height = undo.height;
        self.root = undo.root;
    }
}
