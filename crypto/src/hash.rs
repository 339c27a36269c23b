//! SHA-256 digests.

use crate::bytes::byte_newtype;
use crate::encoding::{encode_into, Domain};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

byte_newtype!(
    /// A SHA-256 digest. Block hashes, transaction hashes, Merkle roots and
    /// state commitments are all `Hash`es.
    Hash,
    32
);

impl Default for Hash {
    fn default() -> Self {
        Hash::ZERO
    }
}

impl Hash {
    /// The all-zero digest (the parent of the genesis block, an empty root).
    pub const ZERO: Hash = Hash([0; 32]);

    /// SHA-256 of raw bytes.
    pub fn digest(bytes: &[u8]) -> Hash {
        Hash(Sha256::digest(bytes).into())
    }

    /// SHA-256 of the canonical encoding of `value` in `domain`
    /// (the same bytes [`crate::signing_bytes`] returns).
    pub fn of<T: Serialize + ?Sized>(domain: Domain, value: &T) -> Hash {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(domain.tag().as_bytes());
        buf.push(0);
        encode_into(value, &mut buf);
        Hash::digest(&buf)
    }

    /// SHA-256 over several byte strings in `domain`, without building one buffer.
    pub fn of_parts(domain: Domain, parts: &[&[u8]]) -> Hash {
        let mut h = Sha256::new();
        h.update(domain.tag().as_bytes());
        h.update([0u8]);
        for p in parts {
            h.update(p);
        }
        Hash(h.finalize().into())
    }

    /// Whether this is [`Hash::ZERO`].
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answer() {
        // FIPS 180-2 test vector "abc".
        assert_eq!(
            Hash::digest(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn of_matches_signing_bytes() {
        let v = (1u8, 2u64);
        assert_eq!(
            Hash::of(Domain::Test, &v),
            Hash::digest(&crate::signing_bytes(Domain::Test, &v))
        );
        assert_ne!(Hash::of(Domain::Test, &v), Hash::of(Domain::TxHash, &v));
    }

    #[test]
    fn hex_round_trip_json_and_binary() {
        let h = Hash::digest(b"x");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{h}\""));
        assert_eq!(serde_json::from_str::<Hash>(&json).unwrap(), h);
        let bin = crate::encode(&h);
        assert_eq!(bin.len(), 32, "fixed width, no length prefix");
        assert_eq!(crate::decode::<Hash>(&bin).unwrap(), h);
        assert_eq!(h.to_string().parse::<Hash>().unwrap(), h);
        assert!("abc".parse::<Hash>().is_err());
    }
}
