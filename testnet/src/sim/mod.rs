//! The deterministic simulator: not in this build yet (issue 3; the PBFT
//! engine it drives is in `phalanx-consensus` and tested there).

/// `phalanx sim` arguments.
#[derive(Debug, clap::Args)]
pub struct SimArgs {}

/// Runs `phalanx sim`.
pub fn run(_args: &SimArgs) -> anyhow::Result<bool> {
    anyhow::bail!("the simulator is not in this build yet; the PBFT engine's tests run with `cargo test -p phalanx-consensus`")
}
