//! Phalanx cryptography: ed25519 keys and signatures (single and batch
//! verification under one documented rule), the canonical encoding of
//! everything hashed or signed, SHA-256 digests, Merkle roots, and key files.
//!
//! This crate owns every byte string that is hashed or signed; no other crate
//! builds signed bytes by hand.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bytes;
pub mod encoding;
mod hash;
pub mod keyfile;
mod keys;
pub mod merkle;

pub use bytes::parse_hex;
pub use encoding::{decode, encode, encode_into, signing_bytes, DecodeError, Domain};
pub use hash::Hash;
pub use keyfile::{read_key_file, write_key_file, KeyFileError, KeyKind};
pub use keys::{
    verify_batch, BatchItem, Keypair, PreparedKey, PublicKey, Signature, SignatureError,
};
pub use merkle::{merkle_proof, merkle_root, MerkleProof};
