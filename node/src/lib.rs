//! The Phalanx validator: what runs when you type `phalanx node`.
//!
//! A validator is one consensus engine (chosen from `phalanx_runtime::registry`)
//! driven by [`driver`], talking to its peers over libp2p ([`p2p`]),
//! taking transactions through a verified [`mempool`], storing blocks and its
//! vote log in RocksDB, and answering the HTTP API ([`api`]). Its home
//! directory ([`home`]) holds its keys and config. The commands that talk to
//! a validator (`phalanx tx`, `phalanx query`, `phalanx init`, `phalanx keys`)
//! are in [`cli`], and their HTTP [`client`].
//!
//! The `phalanx` binary is the `phalanx` package (`cli/`); the testnet tools
//! (`phalanx testnet`, `bench`, `faults`) are `phalanx-tools` (`tools/`),
//! outside the validator's path. docs/architecture.md draws the whole map.

#![forbid(unsafe_code)]

mod admission;
pub mod api;
pub mod cli;
pub mod client;
pub mod clock;
mod commits;
mod discarded;
mod driver;
pub mod home;
mod inbound;
mod injection;
mod intake;
mod mempool;
mod metrics;
pub mod mining;
mod p2p;
pub mod run;
mod shared;
#[cfg(test)]
mod testutil;
mod txpush;
mod verify;
pub mod version;
pub mod watch;
