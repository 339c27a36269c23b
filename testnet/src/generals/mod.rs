//! The Two Generals and Byzantine Generals demo (placeholder until built).

/// `phalanx generals` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum GeneralsCommand {}

/// Runs a `phalanx generals` subcommand.
pub fn run(cmd: &GeneralsCommand) -> anyhow::Result<()> {
    match *cmd {}
}
