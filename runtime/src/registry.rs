//! The one place that lists the engines this build runs.
//!
//! Code that works for any engine is written once, generic over
//! `E: Adversarial` (an engine with its adversaries), and run for the
//! engine a genesis names through [`with_engine`]: the node's start-up,
//! the simulator, the command line and the fault tools all come through
//! here. Adding an engine means its folder under `consensus/src/`, its
//! adversary under `adversary/src/`, and one line in the match below.

use phalanx_adversary::Adversarial;
use phalanx_consensus::{Cft, FaultModel, Pbft, PbftPos, PbftPow, Pos, Pow};
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
        EngineKind::Pow => Ok(code.run::<Pow>()),
        EngineKind::Pos => Ok(code.run::<Pos>()),
        EngineKind::PbftPow => Ok(code.run::<PbftPow>()),
        EngineKind::PbftPos => Ok(code.run::<PbftPos>()),
    }
}

/// The engines this build runs.
pub fn runnable() -> Vec<EngineKind> {
    EngineKind::ALL
        .into_iter()
        .filter(|k| with_engine(*k, Kind).is_ok())
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

/// Parses an engine name (command-line flags), listing the runnable
/// engines when it is not one.
pub fn parse(name: &str) -> Result<EngineKind, String> {
    runnable()
        .into_iter()
        .find(|k| k.name() == name.trim())
        .ok_or_else(|| {
            format!(
                "unknown consensus engine {name:?}; this build runs {}",
                runnable_names()
            )
        })
}

/// The faults engine `kind` tolerates.
pub fn fault_model(kind: EngineKind) -> Result<FaultModel, NotRunnable> {
    with_engine(kind, FaultModelOf)
}

struct FaultModelOf;

impl WithEngine for FaultModelOf {
    type Output = FaultModel;
    fn run<E: Adversarial>(self) -> FaultModel {
        E::FAULT_MODEL
    }
}

/// Reads the kind an engine answers to.
struct Kind;

impl WithEngine for Kind {
    type Output = EngineKind;
    fn run<E: Adversarial>(self) -> EngineKind {
        E::KIND
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind runs the engine that answers to it, and names parse back.
    #[test]
    fn each_kind_runs_its_own_engine() {
        assert!(runnable().len() >= 2);
        for kind in runnable() {
            assert_eq!(with_engine(kind, Kind), Ok(kind));
            assert_eq!(parse(kind.name()), Ok(kind));
        }
        assert_eq!(runnable_names(), "pbft, cft, pow, pos, pbft+pow, pbft+pos");
        let err = parse("raft").unwrap_err();
        assert!(
            err.contains("raft") && err.contains("pbft, cft, pow, pos, pbft+pow"),
            "{err}"
        );
        assert_eq!(fault_model(EngineKind::PbftPow), Ok(FaultModel::Hybrid));
        assert_eq!(fault_model(EngineKind::Pow), Ok(FaultModel::Nakamoto));
        assert_eq!(fault_model(EngineKind::Pos), Ok(FaultModel::Nakamoto));
        assert_eq!(fault_model(EngineKind::Pbft), Ok(FaultModel::Byzantine));
        assert_eq!(fault_model(EngineKind::Cft), Ok(FaultModel::Crash));
    }
}
