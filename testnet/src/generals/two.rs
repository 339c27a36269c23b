//! The Two Generals problem over a lossy messenger channel (Gray, "Notes on
//! Data Base Operating Systems", 1978; Akkoyunlu, Ekanadham and Huber 1975).
//!
//! Protocol k (k = 0, 1, 2, …): general A sends the order "attack at dawn"
//! (messenger 1); then B and A take turns acknowledging, each messenger sent
//! only when the previous one arrived, up to messenger k + 1 (k
//! acknowledgements). A general attacks exactly when it holds every message
//! protocol k sends it — A the acknowledgements with even messenger numbers,
//! B the order and the odd ones — so each general decides from what it
//! received, as a real protocol must. Each messenger is lost independently
//! with probability P, drawn from the seeded generator.
//!
//! Whatever k, the run in which only the last messenger is lost ends with its
//! sender attacking alone: the sender cannot tell that run from the one in
//! which the messenger arrived (the last-message argument).

use super::error::ConfigError;
use super::model::MAX_WORK;
use super::rng::SplitMix64;
use serde::Serialize;
use std::fmt;

/// The largest k the table shows.
pub const MAX_ACKS: usize = 20;
/// The most trials per protocol.
pub const MAX_TRIALS: u64 = 10_000_000;

/// One of the two generals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Side {
    /// The general who proposes the attack and sends messenger 1.
    A,
    /// The other general.
    B,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::A => "A",
            Side::B => "B",
        })
    }
}

/// The parameters of `phalanx generals two`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TwoConfig {
    /// Probability P that a messenger is lost.
    pub loss: f64,
    /// Protocols k = 0..=max_acks are simulated.
    pub max_acks: usize,
    /// Runs per protocol.
    pub trials: u64,
    /// Seed of the channel's losses.
    pub seed: u64,
}

impl TwoConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(ConfigError::LossOutOfRange { loss: self.loss });
        }
        if self.trials == 0 {
            return Err(ConfigError::NoTrials);
        }
        if self.trials > MAX_TRIALS {
            return Err(ConfigError::TooManyTrials {
                trials: self.trials,
                max: MAX_TRIALS,
            });
        }
        if self.max_acks > MAX_ACKS {
            return Err(ConfigError::TooManyAcks {
                max_acks: self.max_acks,
                max: MAX_ACKS,
            });
        }
        // At most (k+1) messengers per run of protocol k.
        let k = self.max_acks as u128;
        let work = u128::from(self.trials) * (k + 1) * (k + 2) / 2;
        if work > 5 * MAX_WORK {
            return Err(ConfigError::TooMuchWork {
                what: format!("{} trials of protocols 0..={}", self.trials, self.max_acks),
                work,
                limit: 5 * MAX_WORK,
            });
        }
        Ok(())
    }
}

/// One messenger of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Messenger {
    /// 1 for the order, 2.. for the acknowledgements.
    pub number: usize,
    /// Who sent it.
    pub from: Side,
    /// Whether it arrived.
    pub delivered: bool,
}

impl Messenger {
    /// Who it was sent to.
    pub fn to(&self) -> Side {
        match self.from {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// One run of protocol k.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TwoRun {
    /// The protocol.
    pub k: usize,
    /// The messengers sent, in order; sending stops after the first loss.
    pub messengers: Vec<Messenger>,
    /// Whether A attacks.
    pub a_attacks: bool,
    /// Whether B attacks.
    pub b_attacks: bool,
}

/// The sender of messenger `number` (1-based): A sends the odd ones.
pub fn sender(number: usize) -> Side {
    if number % 2 == 1 {
        Side::A
    } else {
        Side::B
    }
}

/// Plays protocol k over a channel that loses messenger i when `lost(i)`.
pub fn play(k: usize, mut lost: impl FnMut(usize) -> bool) -> TwoRun {
    let mut messengers = Vec::with_capacity(k + 1);
    for number in 1..=k + 1 {
        let delivered = !lost(number);
        messengers.push(Messenger {
            number,
            from: sender(number),
            delivered,
        });
        if !delivered {
            // The addressee never learns of it, so never answers.
            break;
        }
    }
    // A general attacks once it holds every message protocol k sends it.
    let holds_all = |side: Side| {
        (1..=k + 1)
            .filter(|&n| sender(n) != side)
            .all(|n| messengers.get(n - 1).is_some_and(|m| m.delivered))
    };
    TwoRun {
        k,
        a_attacks: holds_all(Side::A),
        b_attacks: holds_all(Side::B),
        messengers,
    }
}

/// Outcomes of protocol k over all trials.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProtocolStats {
    /// Acknowledgements the protocol sends.
    pub k: usize,
    /// Messengers in a run where none is lost (k + 1).
    pub messengers: usize,
    /// Fraction of runs where both attack.
    pub both: f64,
    /// Fraction where neither attacks.
    pub neither: f64,
    /// Fraction where exactly one attacks.
    pub one_alone: f64,
    /// Who it is that can attack alone in protocol k.
    pub alone: Side,
    /// (1 − P)^(k+1).
    pub exact_both: f64,
    /// 1 − (1 − P)^k (0 when k = 0).
    pub exact_neither: f64,
    /// (1 − P)^k · P: exactly the last messenger lost.
    pub exact_one_alone: f64,
}

/// Where the run shown for the last-message argument comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunSource {
    /// A run of the simulation: trial number (from 1) of the largest k.
    Seeded {
        /// The trial.
        trial: u64,
    },
    /// No simulated run lost exactly the last messenger (e.g. P = 0), so the
    /// run is built by hand; any channel that can lose a messenger allows it.
    Constructed,
}

/// Everything `phalanx generals two` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TwoReport {
    /// P.
    pub loss: f64,
    /// Runs per protocol.
    pub trials: u64,
    /// The seed.
    pub seed: u64,
    /// One row per k = 0..=K.
    pub protocols: Vec<ProtocolStats>,
    /// A run of protocol K whose last messenger is lost.
    pub last_message_run: TwoRun,
    /// Where that run comes from.
    pub last_message_source: RunSource,
}

/// Simulates protocols 0..=K, `trials` runs each.
pub fn simulate(cfg: &TwoConfig) -> Result<TwoReport, ConfigError> {
    cfg.validate()?;
    let mut protocols = Vec::with_capacity(cfg.max_acks + 1);
    let mut witness = None;
    for k in 0..=cfg.max_acks {
        // One stream per k: changing K never changes the rows below it.
        let mut rng = SplitMix64::fork(cfg.seed, k as u64);
        let (mut both, mut neither, mut alone) = (0u64, 0u64, 0u64);
        for trial in 1..=cfg.trials {
            let run = play(k, |_| rng.next_f64() < cfg.loss);
            match (run.a_attacks, run.b_attacks) {
                (true, true) => both += 1,
                (false, false) => neither += 1,
                _ => alone += 1,
            }
            let last_lost = run.messengers.len() == k + 1 && !run.messengers[k].delivered;
            if k == cfg.max_acks && last_lost && witness.is_none() {
                witness = Some((RunSource::Seeded { trial }, run));
            }
        }
        let t = cfg.trials as f64;
        let q = 1.0 - cfg.loss;
        protocols.push(ProtocolStats {
            k,
            messengers: k + 1,
            both: both as f64 / t,
            neither: neither as f64 / t,
            one_alone: alone as f64 / t,
            alone: sender(k + 1),
            exact_both: q.powi(k as i32 + 1),
            exact_neither: 1.0 - q.powi(k as i32),
            exact_one_alone: q.powi(k as i32) * cfg.loss,
        });
    }
    let k = cfg.max_acks;
    let (source, run) =
        witness.unwrap_or_else(|| (RunSource::Constructed, play(k, |number| number == k + 1)));
    Ok(TwoReport {
        loss: cfg.loss,
        trials: cfg.trials,
        seed: cfg.seed,
        protocols,
        last_message_run: run,
        last_message_source: source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_agrees_without_losses() {
        for k in 0..6 {
            let run = play(k, |_| false);
            assert!(run.a_attacks && run.b_attacks, "k={k}");
            assert_eq!(run.messengers.len(), k + 1);
        }
    }

    #[test]
    fn losing_the_last_messenger_leaves_its_sender_alone() {
        for k in 0..6 {
            let run = play(k, |n| n == k + 1);
            let alone = sender(k + 1);
            assert_eq!(run.a_attacks, alone == Side::A, "k={k}");
            assert_eq!(run.b_attacks, alone == Side::B, "k={k}");
        }
    }

    #[test]
    fn losing_an_earlier_messenger_stops_both() {
        for k in 1..6 {
            for lost in 1..=k {
                let run = play(k, |n| n == lost);
                assert!(!run.a_attacks && !run.b_attacks, "k={k} lost={lost}");
                assert_eq!(run.messengers.len(), lost);
            }
        }
    }
}
