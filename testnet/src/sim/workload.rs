//! The client workload of a schedule: signed transfers between the funded
//! accounts, handed to some or all validators' drivers, with invalid ones
//! mixed in — bad signatures, replays, double spends, overspends, another
//! chain's transactions, an unfunded sender — so that validity has
//! something to reject.

use super::rng::Rng;
use super::scenario::{account, account_key, Submission, ACCOUNTS, ACCOUNT_BALANCE, CHAIN_ID};
use phalanx_ledger::{SignedTransaction, Transaction, ValidatorIndex};

/// An unsigned transfer between funded accounts `from` and `to` (fee 1).
pub fn transfer(from: usize, to: usize, amount: u64, nonce: u64) -> Transaction {
    Transaction {
        chain_id: CHAIN_ID.into(),
        from: account(from),
        to: account(to),
        amount,
        nonce,
        fee: 1,
    }
}

/// A workload of signed transfers between the funded accounts, with
/// invalid ones mixed in: bad signatures, replays, double spends (a second
/// transaction for a used nonce), overspends, a wrong chain id, an unfunded
/// sender; and conflicting pairs (two valid transfers for one nonce, handed
/// to disjoint sets of validators at once).
pub(super) fn generate(r: &mut Rng, n: usize, heal_ms: u64) -> Vec<Submission> {
    let mut nonces = [0u64; ACCOUNTS];
    let mut sent: Vec<SignedTransaction> = Vec::new();
    let mut subs = Vec::new();
    let count = r.range(4, 9);
    let mut times: Vec<u64> = (0..count).map(|_| r.range(0, heal_ms * 4 / 5)).collect();
    times.sort_unstable();
    for at_ms in times {
        let mut txs = Vec::new();
        for _ in 0..r.range(1, 2) {
            let from = r.index(ACCOUNTS);
            let to = (from + 1 + r.index(ACCOUNTS - 1)) % ACCOUNTS;
            let amount = r.range(1, 150);
            let roll = r.below(100);
            let tx = if roll < 70 || sent.is_empty() {
                let nonce = nonces[from];
                nonces[from] += 1;
                transfer(from, to, amount, nonce).sign(account_key(from))
            } else {
                match roll {
                    // Signed with somebody else's key.
                    70..=74 => transfer(from, to, amount, nonces[from]).sign(account_key(to)),
                    // A valid signature with a flipped bit.
                    75..=78 => {
                        let mut t =
                            transfer(from, to, amount, nonces[from]).sign(account_key(from));
                        t.signature.0[r.index(64)] ^= 1 << r.below(8);
                        t
                    }
                    // The very same transaction again.
                    79..=84 => r.pick(&sent).clone(),
                    // A double spend: another transaction for a used nonce.
                    85..=89 => {
                        let old = r.pick(&sent).tx.clone();
                        let who = (0..ACCOUNTS).find(|i| account(*i) == old.from).unwrap_or(0);
                        Transaction {
                            amount: old.amount + 1,
                            ..old
                        }
                        .sign(account_key(who))
                    }
                    // More than the account holds (the nonce is the next one,
                    // so it competes with the next valid transfer).
                    90..=95 => transfer(from, to, ACCOUNT_BALANCE * 2, nonces[from])
                        .sign(account_key(from)),
                    // Another chain.
                    96..=97 => Transaction {
                        chain_id: "other-chain".into(),
                        ..transfer(from, to, amount, nonces[from])
                    }
                    .sign(account_key(from)),
                    // An account that was never funded.
                    _ => {
                        let stranger = ACCOUNTS;
                        Transaction {
                            from: account(stranger),
                            ..transfer(from, to, amount, 0)
                        }
                        .sign(account_key(stranger))
                    }
                }
            };
            sent.push(tx.clone());
            txs.push(tx);
        }
        let targets: Vec<ValidatorIndex> = if r.chance(0.4) {
            (0..n as u32).map(ValidatorIndex).collect()
        } else {
            let mut t: Vec<ValidatorIndex> = (0..n as u32)
                .map(ValidatorIndex)
                .filter(|_| r.chance(0.5))
                .collect();
            if t.is_empty() {
                t.push(ValidatorIndex(r.index(n) as u32));
            }
            t
        };
        subs.push(Submission {
            at_ms,
            targets,
            txs,
        });
        // A conflicting-nonce client: two valid transfers for one nonce,
        // one to some validators and the other to the rest (finding 4 of
        // issue 18). One commits; every engine that holds the other must
        // let it go.
        if n >= 2 && r.chance(0.25) {
            let from = r.index(ACCOUNTS);
            let nonce = nonces[from];
            nonces[from] += 1;
            let to = (from + 1) % ACCOUNTS;
            let amount = r.range(1, 50);
            let first = transfer(from, to, amount, nonce).sign(account_key(from));
            let second = transfer(from, to, amount + 1, nonce).sign(account_key(from));
            let split = 1 + r.index(n - 1);
            let (one, other): (Vec<ValidatorIndex>, Vec<ValidatorIndex>) = (0..n as u32)
                .map(ValidatorIndex)
                .partition(|v| (v.0 as usize) < split);
            sent.push(first.clone());
            sent.push(second.clone());
            subs.push(Submission {
                at_ms,
                targets: one,
                txs: vec![first],
            });
            subs.push(Submission {
                at_ms,
                targets: other,
                txs: vec![second],
            });
        }
    }
    subs
}
