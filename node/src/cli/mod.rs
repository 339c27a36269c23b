//! The commands that talk to one validator or its files: `phalanx init`,
//! `keys`, `tx` and `query`. (`phalanx testnet`, `bench` and `faults` are in
//! `phalanx-tools`; `sim` and `generals` in `phalanx-testnet`.)

pub mod init;
pub mod keys;
pub mod names;
pub mod query;
pub mod tx;
