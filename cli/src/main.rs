//! `phalanx`: the Phalanx validator node, its CLI, and the testnet tools.
//!
//! Exit codes: 0 success, 2 usage error (from clap), 1 runtime error (with a
//! message that says what to do).

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use phalanx_node::{cli, run, version};
use phalanx_tools::{bench, faults, testnet};
use std::process::ExitCode;

/// Phalanx: a Byzantine-fault-tolerant ledger node (PBFT over libp2p).
#[derive(Debug, Parser)]
#[command(name = "phalanx", version = version::LONG_VERSION, about, propagate_version = true)]
#[command(
    after_help = "Start a local 4-node testnet with `testnet/local.sh up`, then try\n  phalanx query status --node http://127.0.0.1:26100"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a validator node from its home directory (alias: run).
    #[command(visible_alias = "run")]
    Node(run::NodeArgs),
    /// Create a node home directory (keys, config, genesis).
    Init(cli::init::InitArgs),
    /// Generate or show key files.
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// Create the homes of a local multi-node testnet.
    #[command(subcommand)]
    Testnet(testnet::TestnetCommand),
    /// Sign and submit transactions.
    #[command(subcommand)]
    Tx(cli::tx::TxCommand),
    /// Query a node's HTTP API.
    #[command(subcommand)]
    Query(cli::query::QueryCommand),
    /// Measure throughput and latency: drive a testnet with pre-signed transfers,
    /// write a Markdown/JSON/SVG report.
    Bench(bench::BenchArgs),
    /// Break real nodes on purpose: PBFT and the CFT baseline under crashes,
    /// pauses, Byzantine behaviours and partitions; a Markdown/JSON/SVG report.
    Faults(faults::FaultsArgs),
    /// Run the deterministic simulator over many seeded hostile schedules.
    Sim(phalanx_testnet::sim::SimArgs),
    /// Two Generals and Byzantine Generals (OM(m), SM(m)) demonstrations.
    #[command(subcommand)]
    Generals(phalanx_testnet::generals::GeneralsCommand),
    /// Print shell completions for phalanx.
    #[command(after_help = "\
Examples:
  phalanx completions bash > ~/.local/share/bash-completion/completions/phalanx
  phalanx completions zsh > ~/.zfunc/_phalanx      # with fpath+=(~/.zfunc) in ~/.zshrc
  phalanx completions fish > ~/.config/fish/completions/phalanx.fish")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Node(args) => run::run(args),
        Command::Init(args) => cli::init::run(args),
        Command::Keys(cmd) => cli::keys::run(cmd),
        Command::Testnet(cmd) => testnet::run(cmd),
        Command::Tx(cmd) => cli::tx::run(cmd),
        Command::Query(cmd) => cli::query::run(cmd),
        Command::Bench(args) => bench::run(args),
        Command::Faults(args) => faults::run(args),
        Command::Sim(args) => match phalanx_testnet::sim::run(args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::Generals(cmd) => phalanx_testnet::generals::run(cmd),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "phalanx", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
