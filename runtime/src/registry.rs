//! The one place that lists the engines this build runs.
//!
//! Code that works for any engine is written once, generic over
//! `E: Adversarial` (an engine with its adversaries), and run for the
//! engine a genesis names through [`with_engine`]: the node's start-up,
//! the simulator, the command line and the fault tools all come through
//! here. Adding an engine means its folder under `consensus/src/`, its
//! adversary under `adversary/src/`, and one line in the match below.

use phalanx_adversary::Adversarial;
use phalanx_consensus::{Cft, Pbft};
use phalanx_ledger::EngineKind;

/// Code generic over the engine, to run for one named at run time.
pub trait WithEngine {
    /// What the code returns.
    type Output;
    /// Runs it for engine `E`.
    fn run<E: Adversarial>(self) -> Self::Output;
}

/// A genesis names an engine this build does not run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the genesis asks for consensus engine {kind}, which this node does not run yet (it runs {})",
    runnable_names()
)]
pub struct NotRunnable {
    /// The engine asked for.
    pub kind: EngineKind,
}

/// Runs `code` for engine `kind`.
pub fn with_engine<W: WithEngine>(kind: EngineKind, code: W) -> Result<W::Output, NotRunnable> {
    match kind {
        EngineKind::Pbft => Ok(code.run::<Pbft>()),
        EngineKind::Cft => Ok(code.run::<Cft>()),
        EngineKind::Pow | EngineKind::Pos => Err(NotRunnable { kind }),
    }
}

/// The engines this build runs.
pub fn runnable() -> Vec<EngineKind> {
    EngineKind::ALL
        .into_iter()
        .filter(|k| with_engine(*k, Name).is_ok())
        .collect()
}

/// Their names, for messages: "pbft, cft".
pub fn runnable_names() -> String {
    runnable()
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads an engine's own name.
struct Name;

impl WithEngine for Name {
    type Output = &'static str;
    fn run<E: Adversarial>(self) -> &'static str {
        E::NAME
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The genesis name of each kind is the name its engine reports (in
    /// `/status`, reports and logs).
    #[test]
    fn each_engine_answers_to_its_kinds_name() {
        assert!(runnable().len() >= 2);
        for kind in runnable() {
            assert_eq!(with_engine(kind, Name), Ok(kind.name()));
        }
        let err = with_engine(EngineKind::Pow, Name).unwrap_err().to_string();
        assert!(
            err.contains("engine pow") && err.contains("pbft, cft"),
            "{err}"
        );
    }
}
