//! Block execution: a pure function `(state, payload) -> (diff, receipts)`.
//!
//! Each transaction is applied in order or rejected, deterministically, with a
//! reason in its receipt: bad signature, wrong chain id, unknown sender, nonce
//! not equal to the sender's next nonce (replay or gap), or overspend. A
//! rejected transaction changes nothing (no fee, no nonce).
//!
//! Fee rule: fees go to the block's proposer (the validator's key is its fee
//! account), so the total supply is constant — exactly the genesis supply.
//!
//! Slashing (proof of stake): each piece of equivocation evidence in the
//! block moves [`Rules::slash_percent`] of its offender's stake account
//! ([`crate::stake_address`]) to the slashed-stake account, the first time
//! that validator is caught (its stake account's nonce then reads 1). A
//! chain without stake accounts (PBFT, CFT, PoW) records evidence and
//! changes nothing.

use crate::block::{Payload, Receipt, RejectReason, TxStatus};
use crate::state::{Account, State, StateDiff};
use crate::tx::{verify_transactions, SignedTransaction};
use crate::types::Address;
use std::collections::BTreeMap;

/// The chain rules execution follows, from the genesis
/// ([`crate::Genesis::rules`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// The smallest fee a transaction may pay.
    pub min_fee: u64,
    /// Percent of an equivocator's stake slashed (proof of stake).
    pub slash_percent: u64,
}

impl From<u64> for Rules {
    /// Only a minimum fee (no slashing).
    fn from(min_fee: u64) -> Rules {
        Rules {
            min_fee,
            slash_percent: 0,
        }
    }
}

/// Supplies signature verdicts for a block's transactions, so a node that
/// already verified a transaction (in its mempool) does not verify it again.
pub trait SignatureCheck {
    /// One verdict per transaction: whether its signature is valid.
    fn verdicts(&self, txs: &[SignedTransaction]) -> Vec<bool>;
}

/// Verifies every signature (in one batch).
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyAll;

impl SignatureCheck for VerifyAll {
    fn verdicts(&self, txs: &[SignedTransaction]) -> Vec<bool> {
        verify_transactions(txs)
    }
}

/// The result of executing a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    /// The state changes, with the new root.
    pub diff: StateDiff,
    /// One receipt per transaction.
    pub receipts: Vec<Receipt>,
}

/// Executes `payload` on `state`. `fee_recipient` is the proposer's account;
/// a transaction paying less than the minimum fee (the genesis parameter)
/// fails; evidence slashes under proof of stake (see the module
/// documentation). `rules` is a [`Rules`] or just the minimum fee. Does
/// not modify `state`; apply `diff` to move it forward.
pub fn execute(
    state: &State,
    payload: &Payload,
    fee_recipient: &Address,
    rules: impl Into<Rules>,
    signatures: &dyn SignatureCheck,
) -> Executed {
    let rules: Rules = rules.into();
    let min_fee = rules.min_fee;
    let height = payload.height;
    let verdicts = signatures.verdicts(&payload.txs);
    let mut changed: BTreeMap<Address, Account> = BTreeMap::new();
    let mut receipts = Vec::with_capacity(payload.txs.len());
    for (index, (stx, sig_ok)) in payload.txs.iter().zip(verdicts).enumerate() {
        let status = match apply_tx(
            state,
            &mut changed,
            stx,
            sig_ok,
            &payload.chain_id,
            fee_recipient,
            min_fee,
        ) {
            Ok(()) => TxStatus::Success,
            Err(reason) => TxStatus::Failed(reason),
        };
        let fee_paid = if status == TxStatus::Success {
            stx.tx.fee
        } else {
            0
        };
        receipts.push(Receipt {
            tx_hash: stx.hash(),
            height,
            index: index as u32,
            status,
            fee_paid,
        });
    }
    if rules.slash_percent > 0 {
        for e in &payload.evidence {
            slash(state, &mut changed, e.offender(), rules.slash_percent);
        }
    }
    Executed {
        diff: state.diff(height, changed),
        receipts,
    }
}

/// Moves `percent` of `offender`'s stake to the slashed-stake account, if
/// it has a stake account not slashed before.
fn slash(
    state: &State,
    changed: &mut BTreeMap<Address, Account>,
    offender: crate::types::ValidatorIndex,
    percent: u64,
) {
    let at = crate::stake_address(offender);
    let Some(stake) = current(state, changed, &at).filter(|a| a.nonce == 0) else {
        return;
    };
    let cut = (u128::from(stake.balance) * u128::from(percent.min(100)) / 100) as u64;
    let pool_at = crate::slashed_address();
    let mut pool = current(state, changed, &pool_at).unwrap_or_default();
    let Some(total) = pool.balance.checked_add(cut) else {
        return;
    };
    pool.balance = total;
    changed.insert(
        at,
        Account {
            balance: stake.balance - cut,
            nonce: 1,
        },
    );
    changed.insert(pool_at, pool);
}

fn current(state: &State, changed: &BTreeMap<Address, Account>, a: &Address) -> Option<Account> {
    changed.get(a).or_else(|| state.account(a)).copied()
}

/// Applies one transaction to the overlay `changed`, or leaves it untouched
/// and says why not.
fn apply_tx(
    state: &State,
    changed: &mut BTreeMap<Address, Account>,
    stx: &SignedTransaction,
    sig_ok: bool,
    chain_id: &str,
    fee_recipient: &Address,
    min_fee: u64,
) -> Result<(), RejectReason> {
    let tx = &stx.tx;
    if !sig_ok {
        return Err(RejectReason::BadSignature);
    }
    if tx.chain_id != chain_id {
        return Err(RejectReason::WrongChainId {
            found: tx.chain_id.clone(),
        });
    }
    if tx.fee < min_fee {
        return Err(RejectReason::FeeTooLow {
            fee: tx.fee,
            min_fee,
        });
    }
    let sender = current(state, changed, &tx.from).ok_or(RejectReason::UnknownSender)?;
    if tx.nonce != sender.nonce {
        return Err(RejectReason::BadNonce {
            expected: sender.nonce,
            found: tx.nonce,
        });
    }
    let cost = tx.total_cost().unwrap_or(u64::MAX);
    if tx.total_cost().is_none() || cost > sender.balance {
        return Err(RejectReason::InsufficientFunds {
            balance: sender.balance,
            needed: cost,
        });
    }
    // Stage the (at most three) touched accounts so that an overflow —
    // impossible while the supply fits in u64, but checked anyway — leaves
    // nothing half-applied.
    let mut staged: Vec<(Address, Account)> = Vec::with_capacity(3);
    let debit = Account {
        balance: sender.balance - cost,
        nonce: sender.nonce + 1,
    };
    staged.push((tx.from, debit));
    for (who, units) in [(tx.to, tx.amount), (*fee_recipient, tx.fee)] {
        let mut acct = match staged.iter().find(|(a, _)| *a == who) {
            Some((_, acct)) => *acct,
            None => current(state, changed, &who).unwrap_or_default(),
        };
        acct.balance = acct
            .balance
            .checked_add(units)
            .ok_or(RejectReason::Overflow)?;
        match staged.iter_mut().find(|(a, _)| *a == who) {
            Some(slot) => slot.1 = acct,
            None => staged.push((who, acct)),
        }
    }
    changed.extend(staged);
    Ok(())
}
