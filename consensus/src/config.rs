//! Validator-set configuration and quorum arithmetic, in one place.
//!
//! PBFT tolerates f Byzantine validators out of n when n ≥ 3f+1. With
//! f = ⌊(n−1)/3⌋ the quorum is ⌈(n+f+1)/2⌉, which is 2f+1 when n = 3f+1 and
//! grows with n otherwise, so that any two quorums intersect in at least f+1
//! validators, one of them honest (Castro & Liskov, TOCS 2002, §2–§4).
//!
//! The crash-fault-tolerant baseline tolerates f crashes out of n = 2f+1 with
//! majority quorums ([`Quorums::crash`]).

use phalanx_crypto::PublicKey;
use phalanx_ledger::{ConsensusParams, Genesis, ValidatorIndex};

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Too few validators for the engine to tolerate any fault.
    #[error("{engine} needs at least {min} validators to tolerate one fault, got {n}")]
    TooFewValidators {
        /// The engine.
        engine: &'static str,
        /// The smallest allowed n.
        min: usize,
        /// The n given.
        n: usize,
    },
    /// This node's index is outside the validator set.
    #[error("validator index {index} is outside the validator set of {n}")]
    NotAValidator {
        /// The index.
        index: ValidatorIndex,
        /// The set size.
        n: usize,
    },
    /// A parameter is out of range.
    #[error("consensus parameter {name}: {reason}")]
    BadParam {
        /// The parameter.
        name: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Fault threshold and quorum sizes for n validators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorums {
    /// Validators.
    pub n: usize,
    /// Faults tolerated.
    pub f: usize,
    /// Matching votes that make a quorum (2f+1 when n = 3f+1).
    pub quorum: usize,
    /// Votes that include at least one honest validator (f+1).
    pub weak: usize,
}

impl Quorums {
    /// The Byzantine quorums for n validators; n ≥ 4.
    pub fn byzantine(n: usize) -> Result<Quorums, ConfigError> {
        if n < 4 {
            return Err(ConfigError::TooFewValidators {
                engine: "PBFT",
                min: 4,
                n,
            });
        }
        let f = (n - 1) / 3;
        // ⌈(n+f+1)/2⌉: two quorums overlap in 2q−n ≥ f+1 validators.
        let quorum = (n + f + 1).div_ceil(2);
        Ok(Quorums {
            n,
            f,
            quorum,
            weak: f + 1,
        })
    }

    /// The crash-fault quorums for n validators (n = 2f+1 tolerates f
    /// crashes); n ≥ 1. The quorum is a majority, ⌊n/2⌋+1 — f+1 when n is
    /// odd — so any two quorums share a validator (Ongaro & Ousterhout 2014,
    /// §5.2, §5.4). n = 1 or 2 tolerates no crash but is a valid cluster.
    pub fn crash(n: usize) -> Result<Quorums, ConfigError> {
        if n < 1 {
            return Err(ConfigError::BadParam {
                name: "validators",
                reason: "the CFT baseline needs at least 1 validator",
            });
        }
        let f = (n - 1) / 2;
        Ok(Quorums {
            n,
            f,
            quorum: n / 2 + 1,
            weak: f + 1,
        })
    }
}

/// Everything an engine needs to know about the chain and itself.
#[derive(Clone, Debug)]
pub struct Config {
    /// The chain id (signed into every vote).
    pub chain_id: String,
    /// The validators' consensus keys, in index order.
    pub validators: Vec<PublicKey>,
    /// This node's index.
    pub me: ValidatorIndex,
    /// Thresholds.
    pub quorums: Quorums,
    /// Batch size, timers, checkpoint interval, window.
    pub params: ConsensusParams,
    /// Most transactions held pending in the engine before new ones are dropped.
    pub max_pending_txs: usize,
    /// The genesis time (ms since the Unix epoch): PoS counts slots from it.
    pub genesis_time_ms: u64,
    /// Each validator's genesis stake (PoS), in index order.
    pub stakes: Vec<u64>,
}

impl Config {
    /// A validated PBFT configuration.
    pub fn pbft(
        chain_id: &str,
        validators: Vec<PublicKey>,
        me: ValidatorIndex,
        params: ConsensusParams,
    ) -> Result<Config, ConfigError> {
        let quorums = Quorums::byzantine(validators.len())?;
        Config::with_quorums(chain_id, validators, me, params, quorums)
    }

    /// A validated configuration of the crash-fault-tolerant baseline
    /// (majority quorums, n ≥ 1).
    pub fn cft(
        chain_id: &str,
        validators: Vec<PublicKey>,
        me: ValidatorIndex,
        params: ConsensusParams,
    ) -> Result<Config, ConfigError> {
        let quorums = Quorums::crash(validators.len())?;
        Config::with_quorums(chain_id, validators, me, params, quorums)
    }

    /// A validated configuration with the given thresholds.
    pub fn with_quorums(
        chain_id: &str,
        validators: Vec<PublicKey>,
        me: ValidatorIndex,
        params: ConsensusParams,
        quorums: Quorums,
    ) -> Result<Config, ConfigError> {
        if me.as_usize() >= validators.len() {
            return Err(ConfigError::NotAValidator {
                index: me,
                n: validators.len(),
            });
        }
        let bad = |name, reason| Err(ConfigError::BadParam { name, reason });
        if params.max_block_txs == 0 {
            return bad("max_block_txs", "must be positive");
        }
        if params.checkpoint_interval == 0 {
            return bad("checkpoint_interval", "must be positive");
        }
        if params.watermark_window < params.checkpoint_interval {
            return bad("watermark_window", "must be at least checkpoint_interval");
        }
        if params.view_change_timeout_ms == 0 {
            return bad("view_change_timeout_ms", "must be positive");
        }
        Ok(Config {
            chain_id: chain_id.to_owned(),
            stakes: vec![1; validators.len()],
            validators,
            me,
            quorums,
            params,
            max_pending_txs: 200_000,
            genesis_time_ms: 0,
        })
    }

    /// The PBFT configuration of a genesis file for validator `me`.
    pub fn from_genesis(genesis: &Genesis, me: ValidatorIndex) -> Result<Config, ConfigError> {
        Config::pbft(
            &genesis.chain_id,
            genesis.validator_keys(),
            me,
            genesis.consensus.clone(),
        )
    }

    /// The CFT configuration of a genesis file for validator `me`.
    pub fn from_genesis_cft(genesis: &Genesis, me: ValidatorIndex) -> Result<Config, ConfigError> {
        Config::cft(
            &genesis.chain_id,
            genesis.validator_keys(),
            me,
            genesis.consensus.clone(),
        )
    }

    /// Number of validators.
    pub fn n(&self) -> usize {
        self.validators.len()
    }

    /// The primary of `view`: view mod n (PBFT §4.1).
    pub fn primary(&self, view: u64) -> ValidatorIndex {
        ValidatorIndex((view % self.n() as u64) as u32)
    }

    /// The key of validator `v`, if it is one.
    pub fn key(&self, v: ValidatorIndex) -> Option<&PublicKey> {
        self.validators.get(v.as_usize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_for_general_n() {
        // (n, f, quorum)
        for (n, f, q) in [
            (4, 1, 3),
            (5, 1, 4),
            (6, 1, 4),
            (7, 2, 5),
            (10, 3, 7),
            (16, 5, 11),
        ] {
            let qs = Quorums::byzantine(n).unwrap();
            assert_eq!((qs.f, qs.quorum, qs.weak), (f, q, f + 1), "n = {n}");
            // Any two quorums intersect in at least f+1 validators.
            assert!(2 * qs.quorum - n > qs.f, "n = {n}");
            // A quorum is reachable with f validators silent.
            assert!(qs.quorum <= n - qs.f, "n = {n}");
        }
    }

    #[test]
    fn too_few_validators_is_a_clear_error() {
        for n in 0..4 {
            let err = Quorums::byzantine(n).unwrap_err();
            assert!(err.to_string().contains("at least 4"), "{err}");
        }
    }

    #[test]
    fn crash_quorums_are_majorities() {
        // (n, f, quorum)
        for (n, f, q) in [
            (1, 0, 1),
            (2, 0, 2),
            (3, 1, 2),
            (4, 1, 3),
            (5, 2, 3),
            (7, 3, 4),
        ] {
            let qs = Quorums::crash(n).unwrap();
            assert_eq!((qs.f, qs.quorum), (f, q), "n = {n}");
            // Any two majorities intersect; f crashes leave a majority.
            assert!(2 * qs.quorum > n, "n = {n}");
            assert!(qs.quorum <= n - qs.f, "n = {n}");
        }
        let err = Quorums::crash(0).unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
    }
}
