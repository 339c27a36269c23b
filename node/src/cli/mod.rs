//! CLI subcommands other than `node`, `sim` and `generals`.

pub mod init;
pub mod keys;
pub mod names;
pub mod query;
pub mod testnet;
pub mod tx;
