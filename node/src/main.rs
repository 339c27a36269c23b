//! `phalanx`: the Phalanx validator node, its CLI, and the testnet tools.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Phalanx: a Byzantine-fault-tolerant ledger node (PBFT over libp2p).
#[derive(Debug, Parser)]
#[command(name = "phalanx", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Two Generals and Byzantine Generals (OM(m), SM(m)) demonstrations.
    #[command(subcommand)]
    Generals(phalanx_testnet::generals::GeneralsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
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
