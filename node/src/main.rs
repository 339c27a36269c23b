//! `phalanx`: the Phalanx validator node, its CLI, and the testnet tools.
//!
//! Exit codes: 0 success, 2 usage error (from clap), 1 runtime error (with a
//! message that says what to do).

#![forbid(unsafe_code)]

// The validator runtime (feature `runtime`, off by default until verified).
#[cfg(feature = "runtime")]
mod api;
#[cfg(feature = "runtime")]
mod cli;
#[cfg(feature = "runtime")]
mod client;
#[cfg(feature = "runtime")]
mod driver;
#[cfg(feature = "runtime")]
mod home;
#[cfg(feature = "runtime")]
mod mempool;
#[cfg(feature = "runtime")]
mod metrics;
#[cfg(feature = "runtime")]
mod p2p;
#[cfg(feature = "runtime")]
mod run;
#[cfg(feature = "runtime")]
mod shared;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Phalanx: a Byzantine-fault-tolerant ledger node (PBFT over libp2p).
#[derive(Debug, Parser)]
#[command(name = "phalanx", version, about, propagate_version = true)]
#[command(
    after_help = "Start a local 4-node testnet with `testnet/local.sh up`, then try\n  phalanx query status --node http://127.0.0.1:26100"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[cfg(feature = "runtime")]
    /// Run a validator node from its home directory.
    Node(run::NodeArgs),
    #[cfg(feature = "runtime")]
    /// Create a node home directory (keys, config, genesis).
    Init(cli::init::InitArgs),
    #[cfg(feature = "runtime")]
    /// Generate or show key files.
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    #[cfg(feature = "runtime")]
    /// Create the homes of a local multi-node testnet.
    #[command(subcommand)]
    Testnet(cli::testnet::TestnetCommand),
    #[cfg(feature = "runtime")]
    /// Sign and submit transactions.
    #[command(subcommand)]
    Tx(cli::tx::TxCommand),
    #[cfg(feature = "runtime")]
    /// Query a node's HTTP API.
    #[command(subcommand)]
    Query(cli::query::QueryCommand),
    /// Run the deterministic simulator over many seeded hostile schedules.
    Sim(phalanx_testnet::sim::SimArgs),
    /// Two Generals and Byzantine Generals (OM(m), SM(m)) demonstrations.
    #[command(subcommand)]
    Generals(phalanx_testnet::generals::GeneralsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        #[cfg(feature = "runtime")]
        Command::Node(args) => run::run(args),
        #[cfg(feature = "runtime")]
        Command::Init(args) => cli::init::run(args),
        #[cfg(feature = "runtime")]
        Command::Keys(cmd) => cli::keys::run(cmd),
        #[cfg(feature = "runtime")]
        Command::Testnet(cmd) => cli::testnet::run(cmd),
        #[cfg(feature = "runtime")]
        Command::Tx(cmd) => cli::tx::run(cmd),
        #[cfg(feature = "runtime")]
        Command::Query(cmd) => cli::query::run(cmd),
        Command::Sim(args) => match phalanx_testnet::sim::run(args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::Generals(cmd) => phalanx_testnet::generals::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
