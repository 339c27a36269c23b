//! Identifiers and small newtypes shared by the ledger and the engines.

use phalanx_crypto::PublicKey;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An account address: the account's 32-byte ed25519 public key, shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Address(pub PublicKey);

impl Address {
    /// The public key that signs for this address.
    pub fn public_key(&self) -> &PublicKey {
        &self.0
    }
}

impl From<PublicKey> for Address {
    fn from(key: PublicKey) -> Self {
        Address(key)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", &self.0.to_string()[..8])
    }
}

impl std::str::FromStr for Address {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<PublicKey>().map(Address)
    }
}

/// A block height. Genesis is height 0; in PBFT, height = sequence number.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Height(pub u64);

impl Height {
    /// The genesis height.
    pub const GENESIS: Height = Height(0);

    /// The next height.
    pub fn next(self) -> Height {
        Height(self.0 + 1)
    }
}

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The position of a validator in the genesis validator list.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ValidatorIndex(pub u32);

impl ValidatorIndex {
    /// As a `usize`, for indexing.
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ValidatorIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
