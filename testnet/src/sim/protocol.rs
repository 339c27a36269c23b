//! What the simulator needs to know about an engine beyond the engine
//! interface, so the same world loop, network, crashes, workload and
//! checkers run PBFT and the crash-fault-tolerant baseline alike.
//!
//! The world is generic over the engine under test. Its configuration,
//! restore, message summaries and promises (checked for save-before-send
//! and for never promising two different things, across restarts) come
//! from the engine interface itself and its adversary from
//! [`Adversarial`]; this module adds the scenario family. Byzantine
//! validators exist for PBFT only: the CFT baseline assumes crash faults,
//! and its scenarios draw none.

use phalanx_adversary::Adversarial;
use phalanx_consensus::{Cft, Pbft};

/// Which engine a schedule runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SimConsensus {
    /// PBFT: n ≥ 3f+1, Byzantine validators allowed.
    #[default]
    Pbft,
    /// The Raft-style baseline: n ≥ 2f+1, crash faults only.
    Cft,
}

impl SimConsensus {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SimConsensus::Pbft => "pbft",
            SimConsensus::Cft => "cft",
        }
    }

    /// The fewest validators a schedule may have.
    pub fn min_validators(self) -> usize {
        match self {
            SimConsensus::Pbft => 4,
            SimConsensus::Cft => 3,
        }
    }

    /// The quorum a commit needs with `n` validators, computed here rather
    /// than read from the engine under test: ⌈(n+f+1)/2⌉ for PBFT (2f+1
    /// when n = 3f+1), a majority for CFT.
    pub fn quorum(self, n: usize) -> usize {
        match self {
            SimConsensus::Pbft => (n + self.max_faulty(n) + 1).div_ceil(2),
            SimConsensus::Cft => n / 2 + 1,
        }
    }

    /// Faulty validators tolerated with `n` (Byzantine for PBFT, crashed
    /// for CFT).
    pub fn max_faulty(self, n: usize) -> usize {
        match self {
            SimConsensus::Pbft => n.saturating_sub(1) / 3,
            SimConsensus::Cft => n.saturating_sub(1) / 2,
        }
    }
}

/// What the simulator needs of an engine besides its [`Adversarial`]
/// protocol: which scenario family it runs.
pub trait SimProtocol: Adversarial {
    /// Which engine it is.
    const CONSENSUS: SimConsensus;
}

impl SimProtocol for Pbft {
    const CONSENSUS: SimConsensus = SimConsensus::Pbft;
}

impl SimProtocol for Cft {
    const CONSENSUS: SimConsensus = SimConsensus::Cft;
}

#[cfg(test)]
mod tests {
    use super::SimConsensus;

    #[test]
    fn checker_quorums_are_the_papers() {
        let pbft: Vec<usize> = [4, 5, 6, 7, 10, 16]
            .map(|n| SimConsensus::Pbft.quorum(n))
            .into();
        assert_eq!(pbft, vec![3, 4, 4, 5, 7, 11]);
        let cft: Vec<usize> = [1, 2, 3, 4, 5].map(|n| SimConsensus::Cft.quorum(n)).into();
        assert_eq!(cft, vec![1, 2, 2, 3, 3]);
    }
}
