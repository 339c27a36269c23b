//! Coverage-guided fuzz targets for AFL++ (cargo-afl, stable toolchain).
//!
//! Each target takes the bytes a peer, a client or an operator hands a
//! node and runs the decoder the node runs on them. An input must be
//! refused or accepted without a panic (AFL++ records a panic, an abort or
//! an overflow — cargo-afl builds with overflow checks and debug
//! assertions — as a crash), and an accepted value must encode to bytes
//! that decode to the same value. The checks are those of the mutation
//! fuzzer `phalanx-fuzz` (fuzz/src/lib.rs) for the same target names; what
//! AFL++ adds is coverage feedback: it keeps every input that reaches new
//! branches and mutates those.
//!
//! Only decoders in phalanx-crypto, -ledger and -consensus are here, so
//! that no target links RocksDB (the config-file decoder lives in
//! phalanx-node and stays with `phalanx-fuzz`).

#![forbid(unsafe_code)]

pub mod seeds;

use phalanx_consensus::{CftMessage, PbftMessage};
use phalanx_crypto::{decode, encode};
use phalanx_ledger::{Block, Genesis, SignedTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// The targets: each is a binary of this package and a function below.
pub const TARGETS: &[&str] = &[
    "pbft-message",
    "cft-message",
    "sync-blocks",
    "http-batch",
    "genesis",
];

/// Decodes a canonical (postcard) value; an accepted value must survive
/// encoding and decoding again.
fn canonical_round_trip<T>(bytes: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let value: T = decode(bytes).ok()?;
    let again: T = decode(&encode(&value)).expect("an encoded value decodes");
    assert_eq!(again, value, "a decoded value changed on re-encoding");
    Some(value)
}

/// `pbft-message`: a PBFT consensus message from a peer, as the node's
/// network layer decodes it, then the accessors logs and metrics call.
pub fn pbft_message(bytes: &[u8]) -> bool {
    use phalanx_consensus::Message as _;
    // The kind is read off the wire before decoding (for metrics).
    let _ = PbftMessage::wire_kind(bytes);
    match canonical_round_trip::<PbftMessage>(bytes) {
        Some(m) => {
            let _ = (m.summary(), m.describe(), m.kind());
            true
        }
        None => false,
    }
}

/// `cft-message`: a message of the crash-fault-tolerant baseline.
pub fn cft_message(bytes: &[u8]) -> bool {
    use phalanx_consensus::Message as _;
    match canonical_round_trip::<CftMessage>(bytes) {
        Some(m) => {
            let _ = (m.summary(), m.describe());
            true
        }
        None => false,
    }
}

/// `sync-blocks`: a catch-up answer (certified blocks from a peer), then
/// the hashing and body check the syncing node does first.
pub fn sync_blocks(bytes: &[u8]) -> bool {
    match canonical_round_trip::<Vec<Block>>(bytes) {
        Some(blocks) => {
            for b in &blocks {
                let _ = (b.hash(), b.body_matches_header());
            }
            true
        }
        None => false,
    }
}

/// `http-batch`: the JSON body of `POST /txs/batch`, then each
/// transaction's hash.
pub fn http_batch(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<Vec<SignedTransaction>>(bytes) {
        Ok(txs) => {
            for t in &txs {
                let _ = t.hash();
            }
            true
        }
        Err(_) => false,
    }
}

/// `genesis`: a genesis file, parsed and validated; a valid one also
/// builds its genesis block, as a node does at start.
pub fn genesis(bytes: &[u8]) -> bool {
    let Ok(g) = Genesis::from_json(&String::from_utf8_lossy(bytes)) else {
        return false;
    };
    if g.validate().is_err() {
        return false;
    }
    let _ = g.block().hash();
    true
}

/// The target function called `name`.
pub fn target(name: &str) -> Option<fn(&[u8]) -> bool> {
    Some(match name {
        "pbft-message" => pbft_message,
        "cft-message" => cft_message,
        "sync-blocks" => sync_blocks,
        "http-batch" => http_batch,
        "genesis" => genesis,
        _ => return None,
    })
}
