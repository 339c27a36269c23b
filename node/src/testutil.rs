//! Fixtures shared by the node's unit tests.

use phalanx_crypto::Keypair;
use phalanx_ledger::{Address, SignedTransaction, Transaction};

/// A signed transfer of 1 (fee 1) from `label`'s key to itself on chain "c".
pub fn self_transfer(label: &str, nonce: u64) -> SignedTransaction {
    let k = Keypair::from_label(label);
    Transaction {
        chain_id: "c".into(),
        from: Address(k.public()),
        to: Address(k.public()),
        amount: 1,
        nonce,
        fee: 1,
    }
    .sign(&k)
}
