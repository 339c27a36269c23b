//! The mempool: transactions waiting to be ordered.
//!
//! Bounded by count and bytes, deduplicated by hash, pre-checked against the
//! committed state (signature, chain id, known sender, nonce not already
//! used, affordable), ordered by nonce per account, pruned on commit. Only
//! transactions whose nonces follow on from the sender's committed nonce
//! without a gap are released to the consensus engine, in nonce order, so a
//! primary never proposes nonce 5 before nonce 4.

use crate::metrics::RejectReason;
use phalanx_crypto::Hash;
use phalanx_ledger::{Account, Address, SignedTransaction};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// How far ahead of the committed nonce a sender may queue transactions.
pub const MAX_NONCE_AHEAD: u64 = 10_000;

/// Why a transaction was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    /// Already in the mempool (or already committed).
    #[error("transaction {0} is already known")]
    Duplicate(Hash),
    /// The signature does not verify against `from`.
    #[error("invalid signature: the transaction must be signed by the key of its `from` address")]
    BadSignature,
    /// For another chain.
    #[error("wrong chain id {found:?}: this node runs chain {expected:?}")]
    WrongChainId {
        /// In the transaction.
        found: String,
        /// This chain.
        expected: String,
    },
    /// The sender has no account.
    #[error("unknown account {0}: it has never received funds")]
    UnknownSender(Address),
    /// The nonce was already used.
    #[error("nonce {found} already used: the account's next nonce is {next}")]
    NonceUsed {
        /// In the transaction.
        found: u64,
        /// The account's next nonce.
        next: u64,
    },
    /// The nonce is too far ahead.
    #[error("nonce {found} is too far ahead of the account's next nonce {next}")]
    NonceTooHigh {
        /// In the transaction.
        found: u64,
        /// The account's next nonce.
        next: u64,
    },
    /// The sender cannot pay.
    #[error("insufficient funds: balance {balance}, amount + fee = {needed}")]
    InsufficientFunds {
        /// Committed balance.
        balance: u64,
        /// amount + fee.
        needed: u64,
    },
    /// Another transaction with the same sender and nonce is already queued.
    #[error("another transaction with nonce {0} from this account is already pending")]
    NonceTaken(u64),
    /// The mempool is full.
    #[error("mempool is full; retry later")]
    Full,
    /// The fee is below the chain's minimum.
    #[error("fee {fee} is below this chain's minimum fee {min_fee}")]
    FeeTooLow {
        /// In the transaction.
        fee: u64,
        /// The genesis `min_fee`.
        min_fee: u64,
    },
}

impl MempoolError {
    /// The reason, as the metrics count it.
    pub fn reason(&self) -> RejectReason {
        match self {
            MempoolError::Duplicate(_) => RejectReason::Duplicate,
            MempoolError::BadSignature => RejectReason::BadSignature,
            MempoolError::WrongChainId { .. } => RejectReason::WrongChainId,
            MempoolError::UnknownSender(_) => RejectReason::UnknownAccount,
            MempoolError::NonceUsed { .. } => RejectReason::NonceUsed,
            MempoolError::NonceTooHigh { .. } => RejectReason::NonceTooHigh,
            MempoolError::InsufficientFunds { .. } => RejectReason::InsufficientFunds,
            MempoolError::NonceTaken(_) => RejectReason::NonceTaken,
            MempoolError::Full => RejectReason::MempoolFull,
            MempoolError::FeeTooLow { .. } => RejectReason::FeeTooLow,
        }
    }

    /// A stable short code for APIs and metrics (the `reason` label).
    pub fn code(&self) -> &'static str {
        self.reason().as_str()
    }
}

#[derive(Debug, Default)]
struct Inner {
    txs: HashMap<Hash, (SignedTransaction, usize)>,
    by_account: HashMap<Address, BTreeMap<u64, Hash>>,
    /// Next nonce to release to the engine, per account with queued txs.
    release_from: HashMap<Address, u64>,
    bytes: usize,
}

/// The mempool. Shared between the API (inserts) and the driver (releases, prunes).
#[derive(Debug)]
pub struct Mempool {
    chain_id: String,
    min_fee: u64,
    max_txs: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

impl Mempool {
    /// An empty mempool for a chain and its minimum fee.
    pub fn new(chain_id: &str, min_fee: u64, max_txs: usize, max_bytes: usize) -> Mempool {
        Mempool {
            chain_id: chain_id.to_owned(),
            min_fee,
            max_txs,
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section leaves Inner consistent before it can panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Transactions held.
    pub fn len(&self) -> usize {
        self.lock().txs.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A held transaction, by hash.
    pub fn get(&self, hash: &Hash) -> Option<SignedTransaction> {
        self.lock().txs.get(hash).map(|(tx, _)| tx.clone())
    }

    /// Whether a transaction is held.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.lock().txs.contains_key(hash)
    }

    /// Pre-checks and inserts a transaction whose signature the caller has
    /// already checked (`signature_ok`), given the sender's committed account.
    pub fn insert(
        &self,
        tx: SignedTransaction,
        hash: Hash,
        signature_ok: bool,
        sender: Option<Account>,
    ) -> Result<Hash, MempoolError> {
        let t = &tx.tx;
        if t.chain_id != self.chain_id {
            return Err(MempoolError::WrongChainId {
                found: t.chain_id.clone(),
                expected: self.chain_id.clone(),
            });
        }
        if !signature_ok {
            return Err(MempoolError::BadSignature);
        }
        if t.fee < self.min_fee {
            return Err(MempoolError::FeeTooLow {
                fee: t.fee,
                min_fee: self.min_fee,
            });
        }
        let account = sender.ok_or(MempoolError::UnknownSender(t.from))?;
        if t.nonce < account.nonce {
            return Err(MempoolError::NonceUsed {
                found: t.nonce,
                next: account.nonce,
            });
        }
        if t.nonce >= account.nonce + MAX_NONCE_AHEAD {
            return Err(MempoolError::NonceTooHigh {
                found: t.nonce,
                next: account.nonce,
            });
        }
        let needed = t.total_cost().unwrap_or(u64::MAX);
        if needed > account.balance {
            return Err(MempoolError::InsufficientFunds {
                balance: account.balance,
                needed,
            });
        }
        let size = phalanx_crypto::encode(&tx).len();
        let mut inner = self.lock();
        if inner.txs.contains_key(&hash) {
            return Err(MempoolError::Duplicate(hash));
        }
        if inner.txs.len() >= self.max_txs || inner.bytes + size > self.max_bytes {
            return Err(MempoolError::Full);
        }
        let from = t.from;
        let nonce = t.nonce;
        let queue = inner.by_account.entry(from).or_default();
        if queue.contains_key(&nonce) {
            return Err(MempoolError::NonceTaken(nonce));
        }
        queue.insert(nonce, hash);
        let release = inner.release_from.entry(from).or_insert(account.nonce);
        if *release < account.nonce {
            *release = account.nonce;
        }
        inner.bytes += size;
        inner.txs.insert(hash, (tx, size));
        Ok(hash)
    }

    /// Releases, in nonce order, every queued transaction that directly
    /// follows what was released before for its sender.
    pub fn take_ready(&self) -> Vec<SignedTransaction> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut ready = Vec::new();
        for (from, queue) in &inner.by_account {
            let Some(next) = inner.release_from.get_mut(from) else {
                continue;
            };
            for (nonce, hash) in queue.range(*next..) {
                if *nonce != *next {
                    break;
                }
                if let Some((tx, _)) = inner.txs.get(hash) {
                    ready.push(tx.clone());
                }
                *next += 1;
            }
        }
        ready
    }

    /// Transactions held back because an earlier nonce of their sender is
    /// missing here (queued, not yet released to the engine). A large,
    /// lasting figure means transactions are not reaching this node.
    pub fn waiting(&self) -> usize {
        let inner = self.lock();
        inner
            .by_account
            .iter()
            .map(|(from, queue)| {
                let next = inner.release_from.get(from).copied().unwrap_or(0);
                queue.range(next..).count()
            })
            .sum()
    }

    /// Prunes after a commit: the block's transactions, and every queued
    /// transaction whose nonce is now used. `account` gives committed state.
    /// Returns the hashes pruned that the block did not hold: transactions
    /// that lost their nonce to another (the engine must forget them too).
    pub fn on_commit(
        &self,
        txs: &[SignedTransaction],
        account: impl Fn(&Address) -> Option<Account>,
    ) -> Vec<Hash> {
        let in_block: std::collections::HashSet<Hash> = txs.iter().map(|t| t.hash()).collect();
        let mut lost = Vec::new();
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut senders: Vec<Address> = txs.iter().map(|t| t.tx.from).collect();
        senders.sort();
        senders.dedup();
        for from in senders {
            let next = account(&from).map_or(0, |a| a.nonce);
            if let Some(queue) = inner.by_account.get_mut(&from) {
                let stale: Vec<u64> = queue.range(..next).map(|(n, _)| *n).collect();
                for n in stale {
                    if let Some(h) = queue.remove(&n) {
                        if let Some((_, size)) = inner.txs.remove(&h) {
                            inner.bytes -= size;
                        }
                        if !in_block.contains(&h) {
                            lost.push(h);
                        }
                    }
                }
                if queue.is_empty() {
                    inner.by_account.remove(&from);
                    inner.release_from.remove(&from);
                } else if let Some(r) = inner.release_from.get_mut(&from) {
                    *r = (*r).max(next);
                }
            }
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_crypto::Keypair;
    use phalanx_ledger::Transaction;

    fn tx(nonce: u64, amount: u64) -> SignedTransaction {
        let k = Keypair::from_label("sender");
        Transaction {
            chain_id: "c".into(),
            from: Address(k.public()),
            to: Address(Keypair::from_label("to").public()),
            amount,
            nonce,
            fee: 1,
        }
        .sign(&k)
    }

    fn acct(nonce: u64) -> Option<Account> {
        Some(Account {
            balance: 1000,
            nonce,
        })
    }

    #[test]
    fn releases_in_nonce_order_without_gaps_and_prunes() {
        let m = Mempool::new("c", 0, 100, 1 << 20);
        for n in [2u64, 0, 3] {
            let t = tx(n, 1);
            m.insert(t.clone(), t.hash(), true, acct(0)).unwrap();
        }
        let ready: Vec<u64> = m.take_ready().iter().map(|t| t.tx.nonce).collect();
        assert_eq!(ready, vec![0], "1 is missing, so 2 and 3 wait");
        assert_eq!(m.waiting(), 2);
        let t1 = tx(1, 1);
        m.insert(t1.clone(), t1.hash(), true, acct(0)).unwrap();
        let ready: Vec<u64> = m.take_ready().iter().map(|t| t.tx.nonce).collect();
        assert_eq!(ready, vec![1, 2, 3]);
        assert!(m.take_ready().is_empty(), "released once");
        assert_eq!(m.waiting(), 0);
        assert_eq!(m.on_commit(&[tx(0, 1), t1], |_| acct(2)), vec![]);
        assert_eq!(m.len(), 2);
    }

    /// Issue 18, finding 4: spam costs something. A fee under the chain's
    /// minimum is refused with both figures.
    #[test]
    fn a_fee_under_the_minimum_is_refused() {
        let m = Mempool::new("c", 2, 100, 1 << 20);
        let t = tx(0, 1);
        let err = m.insert(t.clone(), t.hash(), true, acct(0)).unwrap_err();
        assert_eq!(err, MempoolError::FeeTooLow { fee: 1, min_fee: 2 });
        assert_eq!(err.code(), "fee_too_low");
        assert!(m.is_empty());
        assert!(Mempool::new("c", 1, 100, 1 << 20)
            .insert(t.clone(), t.hash(), true, acct(0))
            .is_ok());
    }

    /// Issue 18, finding 4: a transaction that lost its nonce to another
    /// (a client sent A here and A' to the primary) is pruned and reported,
    /// so the driver can make the engine forget it too.
    #[test]
    fn a_transaction_that_lost_its_nonce_is_reported() {
        let m = Mempool::new("c", 0, 100, 1 << 20);
        let mine = tx(0, 5);
        let next = tx(1, 5);
        for t in [&mine, &next] {
            m.insert(t.clone(), t.hash(), true, acct(0)).unwrap();
        }
        let theirs = tx(0, 7);
        assert_ne!(theirs.hash(), mine.hash());
        assert_eq!(m.on_commit(&[theirs], |_| acct(1)), vec![mine.hash()]);
        assert!(!m.contains(&mine.hash()));
        assert!(m.contains(&next.hash()), "nonce 1 still applies");
    }

    #[test]
    fn refusals_have_reasons() {
        let m = Mempool::new("c", 0, 2, 1 << 20);
        let t = tx(0, 1);
        assert_eq!(
            m.insert(t.clone(), t.hash(), false, acct(0)),
            Err(MempoolError::BadSignature)
        );
        assert!(matches!(
            m.insert(t.clone(), t.hash(), true, None),
            Err(MempoolError::UnknownSender(_))
        ));
        assert_eq!(
            m.insert(t.clone(), t.hash(), true, acct(1)),
            Err(MempoolError::NonceUsed { found: 0, next: 1 })
        );
        let big = tx(0, 5000);
        assert!(matches!(
            m.insert(big.clone(), big.hash(), true, acct(0)),
            Err(MempoolError::InsufficientFunds { .. })
        ));
        m.insert(t.clone(), t.hash(), true, acct(0)).unwrap();
        assert_eq!(
            m.insert(t.clone(), t.hash(), true, acct(0)),
            Err(MempoolError::Duplicate(t.hash()))
        );
        let same_nonce = tx(0, 2);
        assert_eq!(
            m.insert(same_nonce.clone(), same_nonce.hash(), true, acct(0)),
            Err(MempoolError::NonceTaken(0))
        );
        let t1 = tx(1, 1);
        m.insert(t1.clone(), t1.hash(), true, acct(0)).unwrap();
        let t2 = tx(2, 1);
        assert_eq!(
            m.insert(t2.clone(), t2.hash(), true, acct(0)),
            Err(MempoolError::Full)
        );
        let mut other = tx(3, 1);
        other.tx.chain_id = "d".into();
        assert!(matches!(
            m.insert(other.clone(), other.hash(), true, acct(0)),
            Err(MempoolError::WrongChainId { .. })
        ));
    }
}
