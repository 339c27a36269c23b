//! Transactions and their signatures.

use crate::types::Address;
use phalanx_crypto::{Domain, Hash, Keypair, Signature, SignatureError};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

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
        SignedTransaction::new(self, signature)
    }

    /// What the sender must hold: `amount + fee`, or `None` on overflow.
    pub fn total_cost(&self) -> Option<u64> {
        self.amount.checked_add(self.fee)
    }
}

/// A transaction with the sender's signature over
/// `Domain::Transaction || encode(tx)`.
///
/// Cheap to clone and hashed once: the mempool, the engine, proposals,
/// blocks and receipts all hold the same shared copy, and [`hash`] is
/// computed the first time it is asked for and then remembered. Fields are
/// reached through `Deref` (`signed.tx.nonce`, `signed.signature`); changing
/// one (`DerefMut`) copies the transaction if it is shared and forgets the
/// remembered hash, so a hash can never describe other contents.
///
/// The encoding (postcard and JSON) is that of the plain struct
/// `{ tx, signature }`.
///
/// [`hash`]: SignedTransaction::hash
#[derive(Clone)]
pub struct SignedTransaction(Arc<SignedTransactionData>);

/// The contents of a [`SignedTransaction`].
#[derive(Clone, Debug)]
pub struct SignedTransactionData {
    /// The transaction.
    pub tx: Transaction,
    /// The signature of `tx.from`.
    pub signature: Signature,
    hash: OnceLock<Hash>,
}

impl std::ops::Deref for SignedTransaction {
    type Target = SignedTransactionData;
    fn deref(&self) -> &SignedTransactionData {
        &self.0
    }
}

impl std::ops::DerefMut for SignedTransaction {
    fn deref_mut(&mut self) -> &mut SignedTransactionData {
        let data = Arc::make_mut(&mut self.0);
        // The caller may change the contents: the hash must be recomputed.
        data.hash = OnceLock::new();
        data
    }
}

impl PartialEq for SignedTransaction {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || (self.tx == other.tx && self.signature == other.signature)
    }
}

impl Eq for SignedTransaction {}

impl std::hash::Hash for SignedTransaction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.tx.hash(state);
        self.signature.hash(state);
    }
}

impl std::fmt::Debug for SignedTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedTransaction")
            .field("tx", &self.tx)
            .field("signature", &self.signature)
            .finish()
    }
}

/// The wire form of a signed transaction (borrowed, for encoding).
#[derive(Serialize)]
#[serde(rename = "SignedTransaction")]
struct WireRef<'a> {
    tx: &'a Transaction,
    signature: &'a Signature,
}

/// The wire form of a signed transaction (owned, for decoding).
#[derive(Deserialize)]
#[serde(rename = "SignedTransaction")]
struct Wire {
    tx: Transaction,
    signature: Signature,
}

impl Serialize for SignedTransaction {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireRef {
            tx: &self.tx,
            signature: &self.signature,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SignedTransaction {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(deserializer)?;
        Ok(SignedTransaction::new(w.tx, w.signature))
    }
}

impl SignedTransaction {
    /// A signed transaction from its parts (the signature is not checked).
    pub fn new(tx: Transaction, signature: Signature) -> SignedTransaction {
        SignedTransaction(Arc::new(SignedTransactionData {
            tx,
            signature,
            hash: OnceLock::new(),
        }))
    }

    /// The transaction's identifier: SHA-256 over the signed transaction
    /// (computed once per transaction, then remembered).
    pub fn hash(&self) -> Hash {
        *self.0.hash.get_or_init(|| Hash::of(Domain::TxHash, self))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(nonce: u64) -> SignedTransaction {
        let k = Keypair::from_label("tx-tests");
        Transaction {
            chain_id: "c".into(),
            from: crate::types::Address(k.public()),
            to: crate::types::Address(k.public()),
            amount: 5,
            nonce,
            fee: 1,
        }
        .sign(&k)
    }

    /// The encoding before transactions were shared: the plain struct.
    #[derive(Serialize, Deserialize)]
    struct Plain {
        tx: Transaction,
        signature: Signature,
    }

    #[test]
    fn encodes_exactly_like_the_plain_struct_in_postcard_and_json() {
        let t = signed(3);
        let plain = Plain {
            tx: t.tx.clone(),
            signature: t.signature,
        };
        assert_eq!(phalanx_crypto::encode(&t), phalanx_crypto::encode(&plain));
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            serde_json::to_string(&plain).unwrap()
        );
        let back: SignedTransaction =
            phalanx_crypto::decode(&phalanx_crypto::encode(&plain)).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.hash(), t.hash());
        let back: SignedTransaction =
            serde_json::from_str(&serde_json::to_string(&plain).unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn the_remembered_hash_is_the_hash_of_the_contents() {
        let t = signed(3);
        let fresh = Hash::of(Domain::TxHash, &t);
        assert_eq!(t.hash(), fresh);
        assert_eq!(t.hash(), fresh, "asked twice, same answer");
        assert_eq!(t.clone().hash(), fresh, "a clone shares it");
    }

    #[test]
    fn changing_a_field_forgets_the_hash_and_leaves_other_copies_alone() {
        let original = signed(3);
        let before = original.hash();
        let mut changed = original.clone();
        changed.tx.amount += 1;
        assert_ne!(changed.hash(), before);
        assert_eq!(changed.hash(), Hash::of(Domain::TxHash, &changed));
        assert_eq!(changed.hash(), signed(3).hash_after(|t| t.tx.amount += 1));
        assert_eq!(original.hash(), before, "the shared copy is unchanged");
        assert_eq!(original.tx.amount, 5);
        let mut resigned = original.clone();
        resigned.signature.0[0] ^= 1;
        assert_ne!(resigned.hash(), before);
        assert!(resigned.verify().is_err());
        assert!(original.verify().is_ok());
    }

    impl SignedTransaction {
        /// The hash after changing a fresh, never-hashed copy.
        fn hash_after(mut self, f: impl FnOnce(&mut SignedTransactionData)) -> Hash {
            f(&mut self);
            self.hash()
        }
    }
}
