//! The vocabulary of the Byzantine Generals problem (Lamport, Shostak and
//! Pease, "The Byzantine Generals Problem", TOPLAS 1982, §1): generals,
//! orders, the two algorithms, and a validated scenario (who is a traitor and
//! how it behaves). This module runs no algorithm.

use super::error::ConfigError;
use super::strategy::Strategy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The most generals a run may have (ids must fit the trace and the tables).
pub const MAX_GENERALS: usize = 64;

/// The most message deliveries one command may simulate; beyond it the
/// command is refused with [`ConfigError::TooMuchWork`] instead of hanging.
pub const MAX_WORK: u128 = 20_000_000;

/// A general's number. General 0 is the commander, 1..N−1 are lieutenants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GeneralId(pub u16);

impl GeneralId {
    /// The commander (LSP'82 §1: "a commanding general").
    pub const COMMANDER: GeneralId = GeneralId(0);

    /// Whether this is the commander.
    pub fn is_commander(self) -> bool {
        self == GeneralId::COMMANDER
    }

    /// Whether the id is odd (strategies treat odd and even recipients apart).
    pub fn is_odd(self) -> bool {
        self.0 % 2 == 1
    }

    /// The id as an index.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// All `n` generals, commander first.
    pub fn all(n: usize) -> impl Iterator<Item = GeneralId> {
        (0..n).map(|i| GeneralId(i as u16))
    }
}

impl fmt::Display for GeneralId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "G{}", self.0)
    }
}

/// An order: the only two values in the paper.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Attack.
    Attack,
    /// Retreat (also what a lieutenant assumes for a missing message, a
    /// tie, or conflicting signed orders).
    Retreat,
}

impl Order {
    /// The value used for a missing message, a tie, or a set of conflicting
    /// signed orders (LSP'82 §3 and §4).
    pub const DEFAULT: Order = Order::Retreat;

    /// The other order.
    pub fn flipped(self) -> Order {
        match self {
            Order::Attack => Order::Retreat,
            Order::Retreat => Order::Attack,
        }
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Order::Attack => "attack",
            Order::Retreat => "retreat",
        })
    }
}

/// Which of the paper's two solutions runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// OM(m), oral messages (LSP'82 sec. 3).
    Om,
    /// SM(m), ed25519-signed messages (LSP'82 sec. 4).
    Sm,
}

impl Algorithm {
    /// "OM(m)" or "SM(m)".
    pub fn label(self, m: usize) -> String {
        match self {
            Algorithm::Om => format!("OM({m})"),
            Algorithm::Sm => format!("SM({m})"),
        }
    }

    /// "oral messages" or "signed messages".
    pub fn messages(self) -> &'static str {
        match self {
            Algorithm::Om => "oral messages",
            Algorithm::Sm => "signed messages",
        }
    }
}

/// One validated run: how many generals, the commander's order, the `m` of
/// OM(m)/SM(m), and each traitor's strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    generals: usize,
    m: usize,
    order: Order,
    traitors: BTreeMap<GeneralId, Strategy>,
    seed: u64,
}

impl Scenario {
    /// A scenario with `m` = the number of traitors (capped at N − 2, the
    /// deepest relay N generals allow), as in the paper's theorems.
    pub fn new(
        generals: usize,
        order: Order,
        traitors: &[(GeneralId, Strategy)],
        seed: u64,
    ) -> Result<Scenario, ConfigError> {
        check_generals(generals)?;
        let m = traitors.len().min(generals.saturating_sub(2));
        Scenario::with_depth(generals, m, order, traitors, seed)
    }

    /// A scenario running OM(m)/SM(m) for an explicit `m`.
    pub fn with_depth(
        generals: usize,
        m: usize,
        order: Order,
        traitors: &[(GeneralId, Strategy)],
        seed: u64,
    ) -> Result<Scenario, ConfigError> {
        check_generals(generals)?;
        if traitors.len() >= generals {
            return Err(ConfigError::TooManyTraitors {
                traitors: traitors.len(),
                generals,
            });
        }
        if m + 2 > generals {
            return Err(ConfigError::DepthTooLarge { m, generals });
        }
        let mut map = BTreeMap::new();
        for &(id, strategy) in traitors {
            if id.index() >= generals {
                return Err(ConfigError::TraitorIdOutOfRange {
                    id: id.index(),
                    generals,
                });
            }
            if map.insert(id, strategy).is_some() {
                return Err(ConfigError::DuplicateTraitorId { id: id.index() });
            }
        }
        Ok(Scenario {
            generals,
            m,
            order,
            traitors: map,
            seed,
        })
    }

    /// N, the number of generals including the commander.
    pub fn generals(&self) -> usize {
        self.generals
    }

    /// The `m` of OM(m)/SM(m).
    pub fn m(&self) -> usize {
        self.m
    }

    /// The order a loyal commander gives.
    pub fn order(&self) -> Order {
        self.order
    }

    /// The seed for the `random` strategy.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Traitors and their strategies, by id.
    pub fn traitors(&self) -> &BTreeMap<GeneralId, Strategy> {
        &self.traitors
    }

    /// Whether `g` is loyal.
    pub fn is_loyal(&self, g: GeneralId) -> bool {
        !self.traitors.contains_key(&g)
    }

    /// The lieutenants, G1..G(N−1).
    pub fn lieutenants(&self) -> Vec<GeneralId> {
        GeneralId::all(self.generals).skip(1).collect()
    }
}

fn check_generals(generals: usize) -> Result<(), ConfigError> {
    if generals < 2 {
        return Err(ConfigError::TooFewGenerals { generals });
    }
    if generals > MAX_GENERALS {
        return Err(ConfigError::TooManyGenerals {
            generals,
            max: MAX_GENERALS,
        });
    }
    Ok(())
}

/// Messages OM(m) sends in round `round` (1-based) with `n` generals when
/// nobody is silent: (N−1)(N−2)…(N−round). Round 1 is the commander's; the
/// last round, m+1, sends (N−1)(N−2)…(N−m−1), the figure LSP'82 §3 gives
/// for the cost of OM(m).
pub fn om_round_messages(n: usize, round: usize) -> u128 {
    // Saturates rather than overflowing: callers compare it with a limit.
    (1..=round).fold(1u128, |acc, i| {
        acc.saturating_mul(n.saturating_sub(i) as u128)
    })
}

/// All messages OM(m) sends with `n` generals when nobody is silent
/// (saturating at `u128::MAX`).
pub fn om_total_messages(n: usize, m: usize) -> u128 {
    (1..=m + 1).fold(0u128, |acc, r| acc.saturating_add(om_round_messages(n, r)))
}
