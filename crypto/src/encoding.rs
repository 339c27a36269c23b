//! The one canonical encoding of everything Phalanx hashes or signs.
//!
//! Every byte string that goes into a hash or a signature is produced here:
//! `tag(domain) || 0x00 || postcard(value)`. Postcard is deterministic for the
//! types we use (fixed-size arrays, integers as varints, `Vec`s with a length
//! prefix, enums by variant index) and has no maps with unordered keys, so two
//! honest nodes always produce the same bytes for the same value.
//!
//! The domain tag is what keeps a PREPARE from being replayed as a COMMIT, or a
//! transaction signature from being valid for anything but a transaction. This
//! module must never grow a second way to turn a value into signed bytes.

use serde::{de::DeserializeOwned, Serialize};

/// What a hashed or signed byte string is. Each variant has its own tag, so a
/// signature or digest made for one kind can never be taken for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Domain {
    /// A transaction body, signed by the sender.
    Transaction,
    /// The identifier of a signed transaction.
    TxHash,
    /// A block header; its hash is the block hash.
    BlockHeader,
    /// The part of a block consensus agrees on before execution.
    BlockPayload,
    /// A leaf of a Merkle tree.
    MerkleLeaf,
    /// An inner node of a Merkle tree.
    MerkleNode,
    /// One account's contribution to the incremental state commitment.
    StateEntry,
    /// PBFT PRE-PREPARE.
    PbftPrePrepare,
    /// PBFT PREPARE.
    PbftPrepare,
    /// PBFT COMMIT.
    PbftCommit,
    /// PBFT CHECKPOINT.
    PbftCheckpoint,
    /// PBFT VIEW-CHANGE.
    PbftViewChange,
    /// PBFT NEW-VIEW.
    PbftNewView,
    /// PBFT COMPLAINT: a replica's timer fired in a view.
    PbftComplaint,
    /// Any message of the crash-fault-tolerant baseline.
    CftMessage,
    /// A proof-of-stake block signed by its slot leader.
    PosBlock,
    /// Proof-of-work header hashing.
    PowHeader,
    /// Equivocation evidence and other accusations.
    Evidence,
    /// A signed order in the Byzantine Generals demo (SM(m)).
    GeneralsOrder,
    /// A message that only tests sign.
    Test,
}

impl Domain {
    /// The tag bytes that prefix every encoding made for this domain.
    pub const fn tag(self) -> &'static str {
        match self {
            Domain::Transaction => "phalanx/v1/tx",
            Domain::TxHash => "phalanx/v1/tx-hash",
            Domain::BlockHeader => "phalanx/v1/block-header",
            Domain::BlockPayload => "phalanx/v1/block-payload",
            Domain::MerkleLeaf => "phalanx/v1/merkle-leaf",
            Domain::MerkleNode => "phalanx/v1/merkle-node",
            Domain::StateEntry => "phalanx/v1/state-entry",
            Domain::PbftPrePrepare => "phalanx/v1/pbft/pre-prepare",
            Domain::PbftPrepare => "phalanx/v1/pbft/prepare",
            Domain::PbftCommit => "phalanx/v1/pbft/commit",
            Domain::PbftCheckpoint => "phalanx/v1/pbft/checkpoint",
            Domain::PbftViewChange => "phalanx/v1/pbft/view-change",
            Domain::PbftNewView => "phalanx/v1/pbft/new-view",
            Domain::PbftComplaint => "phalanx/v1/pbft/complaint",
            Domain::CftMessage => "phalanx/v1/cft",
            Domain::PosBlock => "phalanx/v1/pos/block",
            Domain::PowHeader => "phalanx/v1/pow/header",
            Domain::Evidence => "phalanx/v1/evidence",
            Domain::GeneralsOrder => "phalanx/v1/generals/order",
            Domain::Test => "phalanx/v1/test",
        }
    }

    /// Every domain, for tests that check the tags are distinct.
    pub const ALL: [Domain; 20] = [
        Domain::Transaction,
        Domain::TxHash,
        Domain::BlockHeader,
        Domain::BlockPayload,
        Domain::MerkleLeaf,
        Domain::MerkleNode,
        Domain::StateEntry,
        Domain::PbftPrePrepare,
        Domain::PbftPrepare,
        Domain::PbftCommit,
        Domain::PbftCheckpoint,
        Domain::PbftViewChange,
        Domain::PbftNewView,
        Domain::PbftComplaint,
        Domain::CftMessage,
        Domain::PosBlock,
        Domain::PowHeader,
        Domain::Evidence,
        Domain::GeneralsOrder,
        Domain::Test,
    ];
}

/// A value could not be decoded from its canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed encoding: {0}")]
pub struct DecodeError(String);

/// The canonical bytes of `value`, without a domain tag (for storage and the wire).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

/// Appends the canonical bytes of `value` to `out`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Postcard only fails for serde shapes Phalanx never uses (sequences of
    // unknown length) or for a full fixed buffer; a Vec never fills up.
    match postcard::to_extend(value, std::mem::take(out)) {
        Ok(v) => *out = v,
        Err(e) => unreachable!("postcard cannot encode a Phalanx type: {e}"),
    }
}

/// Decodes a value. Trailing bytes are an error. Postcard also accepts
/// over-long integer encodings (`0x81 0x00` reads as 1), so one value may
/// arrive as several byte strings (found by the AFL++ fuzzer): nothing may
/// key on received bytes. Nothing does — hashes, signatures and the
/// simulator's fingerprints are over [`encode`] of the decoded value, which
/// is canonical.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| DecodeError(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError(format!("{} trailing bytes", rest.len())));
    }
    Ok(value)
}

/// The bytes that are hashed or signed for `value` in `domain`:
/// `tag || 0x00 || encode(value)`. The zero byte ends the tag, so no tag can
/// be a prefix of another tag's message.
pub fn signing_bytes<T: Serialize + ?Sized>(domain: Domain, value: &T) -> Vec<u8> {
    let tag = domain.tag().as_bytes();
    let mut out = Vec::with_capacity(tag.len() + 1 + 64);
    out.extend_from_slice(tag);
    out.push(0);
    encode_into(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tags_are_distinct_and_zero_free() {
        let tags: HashSet<_> = Domain::ALL.iter().map(|d| d.tag()).collect();
        assert_eq!(tags.len(), Domain::ALL.len());
        assert!(tags.iter().all(|t| !t.as_bytes().contains(&0)));
    }

    #[test]
    fn same_value_different_domain_different_bytes() {
        let a = signing_bytes(Domain::PbftPrepare, &(1u64, 2u64));
        let b = signing_bytes(Domain::PbftCommit, &(1u64, 2u64));
        assert_ne!(a, b);
        assert!(a.ends_with(&encode(&(1u64, 2u64))));
    }

    #[test]
    fn decode_rejects_trailing_bytes_and_truncation() {
        let mut bytes = encode(&(7u32, [9u8; 4]));
        assert_eq!(decode::<(u32, [u8; 4])>(&bytes), Ok((7, [9; 4])));
        bytes.push(1);
        assert!(decode::<(u32, [u8; 4])>(&bytes).is_err());
        bytes.truncate(3);
        assert!(decode::<(u32, [u8; 4])>(&bytes).is_err());
    }
}
