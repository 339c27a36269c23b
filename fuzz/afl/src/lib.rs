//! Coverage-guided fuzz targets for AFL++ (cargo-afl, stable toolchain).
//!
//! The decoders and their checks are `phalanx-fuzz`'s (fuzz/src/lib.rs),
//! used here without its `node` feature so that no target links RocksDB
//! (the config-file decoder lives in phalanx-node and stays with
//! `phalanx-fuzz`). What AFL++ adds is coverage feedback: it keeps every
//! input that reaches new branches and mutates those. An input must be
//! refused or accepted without a panic (AFL++ records a panic, an abort or
//! an overflow — cargo-afl builds with overflow checks and debug
//! assertions — as a crash), and an accepted value must encode to bytes
//! that decode to the same value.

#![forbid(unsafe_code)]

/// The targets: each is a binary of this package, named as in phalanx-fuzz.
pub const TARGETS: &[&str] = &[
    "pbft-message",
    "cft-message",
    "sync-blocks",
    "http-batch",
    "genesis",
];

/// The phalanx-fuzz target called `name`.
pub fn target(name: &str) -> &'static phalanx_fuzz::Target {
    phalanx_fuzz::target(name).unwrap_or_else(|| panic!("phalanx-fuzz has no target {name}"))
}
