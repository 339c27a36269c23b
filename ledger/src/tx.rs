//! Transactions and their signatures.

use crate::types::Address;
use phalanx_crypto::{Domain, Hash, Keypair, Signature, SignatureError};
use serde::{Deserialize, Serialize};

/// A transfer of `amount` from `from` to `to`, paying `fee` to the block's proposer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Transaction {
    /// The chain this transaction is for; it is rejected on any other chain.
    pub chain_id: String,
    /// The sender, who signs.
    pub from: Address,
    /// The recipient.
    pub to: Address,
    /// Units moved to `to`.
    pub amount: u64,
    /// The sender's next nonce: 0 for its first transaction, then 1, 2, ...
    pub nonce: u64,
    /// Units paid to the block proposer.
    pub fee: u64,
}

impl Transaction {
    /// Signs this transaction with the sender's key.
    ///
    /// The key is not checked against `from`; a mismatch gives a transaction
    /// whose signature does not verify (useful for tests of rejection).
    pub fn sign(self, key: &Keypair) -> SignedTransaction {
        let signature = key.sign(Domain::Transaction, &self);
        SignedTransaction {
            tx: self,
            signature,
        }
    }

    /// What the sender must hold: `amount + fee`, or `None` on overflow.
    pub fn total_cost(&self) -> Option<u64> {
        self.amount.checked_add(self.fee)
    }
}

/// A transaction with the sender's signature over
/// `Domain::Transaction || encode(tx)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedTransaction {
    /// The transaction.
    pub tx: Transaction,
    /// The signature of `tx.from`.
    pub signature: Signature,
}

impl SignedTransaction {
    /// The transaction's identifier: SHA-256 over the signed transaction.
    pub fn hash(&self) -> Hash {
        Hash::of(Domain::TxHash, self)
    }

    /// The bytes the sender signed.
    pub fn signing_bytes(&self) -> Vec<u8> {
        phalanx_crypto::signing_bytes(Domain::Transaction, &self.tx)
    }

    /// Checks the signature against `tx.from`.
    pub fn verify(&self) -> Result<(), SignatureError> {
        self.tx
            .from
            .public_key()
            .verify(Domain::Transaction, &self.tx, &self.signature)
    }
}

/// Verifies many transactions' signatures at once (see
/// [`phalanx_crypto::verify_batch`]); one verdict per transaction.
pub fn verify_transactions(txs: &[SignedTransaction]) -> Vec<bool> {
    let messages: Vec<Vec<u8>> = txs.iter().map(SignedTransaction::signing_bytes).collect();
    let items: Vec<phalanx_crypto::BatchItem<'_>> = txs
        .iter()
        .zip(&messages)
        .map(|(t, m)| phalanx_crypto::BatchItem {
            key: t.tx.from.public_key(),
            message: m,
            signature: &t.signature,
        })
        .collect();
    phalanx_crypto::verify_batch(&items)
}
