//! The deterministic simulator (placeholder until built).

/// `phalanx sim` arguments.
#[derive(Debug, clap::Args)]
pub struct SimArgs {}

/// Runs `phalanx sim`; `Ok(true)` when no schedule violated a property.
pub fn run(_args: &SimArgs) -> anyhow::Result<bool> {
    Ok(true)
}
