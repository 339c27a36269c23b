//! What a traitor does: the finite strategy space the demo (and `--exhaustive`)
//! draws from. A traitor in LSP'82 may send anything or nothing; here, each
//! time it would send a message, it reacts to the value a loyal general would
//! send in its place ("held": the order it received, or its own order as
//! commander). A fixed strategy picks one reaction for even-numbered and one for
//! odd-numbered recipients, the same in every round: 5 × 5 = 25 strategies.
//! `random` draws attack/retreat/silent per message from the seeded generator.

use super::model::{GeneralId, Order, Scenario};
use super::rng::SplitMix64;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// How a traitor answers when a loyal general would send `held`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reaction {
    /// Send `held`, as a loyal general would.
    Relay,
    /// Send the opposite of `held`.
    Flip,
    /// Send attack whatever it holds.
    Attack,
    /// Send retreat whatever it holds.
    Retreat,
    /// Send nothing.
    Silent,
}

impl Reaction {
    /// Every reaction, in the order the strategy space enumerates them.
    pub const ALL: [Reaction; 5] = [
        Reaction::Relay,
        Reaction::Flip,
        Reaction::Attack,
        Reaction::Retreat,
        Reaction::Silent,
    ];

    /// The message sent (`None`: nothing) when a loyal general would send `held`.
    pub fn apply(self, held: Order) -> Option<Order> {
        match self {
            Reaction::Relay => Some(held),
            Reaction::Flip => Some(held.flipped()),
            Reaction::Attack => Some(Order::Attack),
            Reaction::Retreat => Some(Order::Retreat),
            Reaction::Silent => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Reaction::Relay => "relay",
            Reaction::Flip => "flip",
            Reaction::Attack => "attack",
            Reaction::Retreat => "retreat",
            Reaction::Silent => "silent",
        }
    }
}

impl FromStr for Reaction {
    type Err = String;
    fn from_str(s: &str) -> Result<Reaction, String> {
        Reaction::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown reaction {s:?} (relay|flip|attack|retreat|silent)"))
    }
}

/// A traitor's strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// One reaction for even-numbered recipients, one for odd-numbered ones.
    Fixed {
        /// Reaction toward G0, G2, G4, …
        even: Reaction,
        /// Reaction toward G1, G3, G5, …
        odd: Reaction,
    },
    /// Attack, retreat or silence, drawn uniformly per message from the seed.
    Random,
}

/// The names `--strategy` accepts besides `EVEN/ODD` pairs and `random`.
const NAMED: [(&str, Strategy); 6] = [
    ("lie", Strategy::fixed(Reaction::Flip, Reaction::Flip)),
    (
        "split",
        Strategy::fixed(Reaction::Attack, Reaction::Retreat),
    ),
    (
        "silent",
        Strategy::fixed(Reaction::Silent, Reaction::Silent),
    ),
    ("honest", Strategy::fixed(Reaction::Relay, Reaction::Relay)),
    (
        "attack",
        Strategy::fixed(Reaction::Attack, Reaction::Attack),
    ),
    (
        "retreat",
        Strategy::fixed(Reaction::Retreat, Reaction::Retreat),
    ),
];

/// `--help` text for `--strategy` (line breaks kept by clap).
pub const STRATEGY_HELP: &str = "\
Traitor strategy: one for all traitors, or a comma-separated list with one
per traitor in id order.

Whenever a traitor would send a message, it reacts to the value a loyal
general would send in its place: relay it, flip it, send attack, send
retreat, or stay silent. A fixed strategy picks one reaction for even- and
one for odd-numbered recipients, written EVEN/ODD (e.g. flip/silent): 25
strategies, the space --exhaustive enumerates. Names:
  lie     = flip/flip          honest  = relay/relay
  split   = attack/retreat     attack  = attack/attack
  silent  = silent/silent      retreat = retreat/retreat
  random  = attack, retreat or silent per message, drawn from --seed
With --algorithm sm a traitor cannot forge a loyal general's signature: an
order it changes keeps the loyal signatures over the old value, and loyal
generals reject it.";

/// One line describing the space `--exhaustive` enumerates.
pub const SPACE_SUMMARY: &str = "per traitor, one reaction (relay|flip|attack|retreat|silent) \
for even-numbered and one for odd-numbered recipients: 25 strategies";

impl Strategy {
    /// Honest behaviour (a traitor may follow the protocol).
    pub const HONEST: Strategy = Strategy::fixed(Reaction::Relay, Reaction::Relay);
    /// Always send the opposite of what a loyal general would.
    pub const LIE: Strategy = Strategy::fixed(Reaction::Flip, Reaction::Flip);
    /// Attack to even-numbered recipients, retreat to odd-numbered ones.
    pub const SPLIT: Strategy = Strategy::fixed(Reaction::Attack, Reaction::Retreat);
    /// Never send anything.
    pub const SILENT: Strategy = Strategy::fixed(Reaction::Silent, Reaction::Silent);

    /// The fixed strategy with these reactions.
    pub const fn fixed(even: Reaction, odd: Reaction) -> Strategy {
        Strategy::Fixed { even, odd }
    }

    /// The 25 fixed strategies `--exhaustive` enumerates, named ones first.
    pub fn space() -> Vec<Strategy> {
        let mut out: Vec<Strategy> = NAMED.iter().map(|&(_, s)| s).collect();
        for even in Reaction::ALL {
            for odd in Reaction::ALL {
                let s = Strategy::fixed(even, odd);
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        out
    }

    /// What a traitor with this strategy sends to `to` where a loyal general
    /// would send `held` (`None`: nothing).
    pub fn choose(&self, to: GeneralId, held: Order, rng: &mut SplitMix64) -> Option<Order> {
        match *self {
            Strategy::Fixed { even, odd } => {
                if to.is_odd() {
                    odd.apply(held)
                } else {
                    even.apply(held)
                }
            }
            Strategy::Random => match rng.below(3) {
                0 => Some(Order::Attack),
                1 => Some(Order::Retreat),
                _ => None,
            },
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((name, _)) = NAMED.iter().find(|(_, s)| s == self) {
            return f.write_str(name);
        }
        match self {
            Strategy::Fixed { even, odd } => write!(f, "{}/{}", even.name(), odd.name()),
            Strategy::Random => f.write_str("random"),
        }
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Strategy, String> {
        let s = s.trim();
        if s == "random" {
            return Ok(Strategy::Random);
        }
        if let Some((_, strategy)) = NAMED.iter().find(|(name, _)| *name == s) {
            return Ok(*strategy);
        }
        match s.split_once('/') {
            Some((even, odd)) => Ok(Strategy::fixed(even.parse()?, odd.parse()?)),
            None => Err(format!(
                "unknown strategy {s:?}: use lie, split, silent, random, honest, \
                 attack, retreat or EVEN/ODD (e.g. flip/silent)"
            )),
        }
    }
}

impl Serialize for Strategy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The traitors of one run, each with its strategy and its own random stream.
#[derive(Debug)]
pub(crate) struct Adversary {
    traitors: BTreeMap<GeneralId, (Strategy, SplitMix64)>,
}

impl Adversary {
    /// The traitors of `scenario`; traitor `g` draws from stream `g` of the seed.
    pub(crate) fn new(scenario: &Scenario) -> Adversary {
        let traitors = scenario
            .traitors()
            .iter()
            .map(|(&g, &s)| (g, (s, SplitMix64::fork(scenario.seed(), u64::from(g.0)))))
            .collect();
        Adversary { traitors }
    }

    /// Whether `g` is a traitor.
    pub(crate) fn is_traitor(&self, g: GeneralId) -> bool {
        self.traitors.contains_key(&g)
    }

    /// What `from` sends to `to` where a loyal general would send `held`
    /// (`None`: nothing). Loyal generals always send `held`.
    pub(crate) fn send(&mut self, from: GeneralId, to: GeneralId, held: Order) -> Option<Order> {
        match self.traitors.get_mut(&from) {
            None => Some(held),
            Some((strategy, rng)) => strategy.choose(to, held, rng),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_has_25_distinct_fixed_strategies_named_first() {
        let space = Strategy::space();
        assert_eq!(space.len(), 25);
        let distinct: std::collections::HashSet<_> = space.iter().collect();
        assert_eq!(distinct.len(), 25);
        assert_eq!(space[0], Strategy::LIE);
        assert!(!space.contains(&Strategy::Random));
    }

    #[test]
    fn every_strategy_round_trips_through_its_name() {
        for s in Strategy::space().into_iter().chain([Strategy::Random]) {
            assert_eq!(s.to_string().parse::<Strategy>(), Ok(s));
        }
        assert_eq!(
            "flip/silent"
                .parse::<Strategy>()
                .map(|s| s.to_string())
                .as_deref(),
            Ok("flip/silent")
        );
        assert!("bogus".parse::<Strategy>().is_err());
        assert!("flip/bogus".parse::<Strategy>().is_err());
    }

    #[test]
    fn split_depends_on_recipient_parity() {
        let mut rng = SplitMix64::new(0);
        let s = Strategy::SPLIT;
        assert_eq!(
            s.choose(GeneralId(2), Order::Retreat, &mut rng),
            Some(Order::Attack)
        );
        assert_eq!(
            s.choose(GeneralId(1), Order::Attack, &mut rng),
            Some(Order::Retreat)
        );
        assert_eq!(
            Strategy::LIE.choose(GeneralId(1), Order::Attack, &mut rng),
            Some(Order::Retreat)
        );
        assert_eq!(
            Strategy::SILENT.choose(GeneralId(1), Order::Attack, &mut rng),
            None
        );
    }
}
