//! What one Byzantine Generals run produced: the message log, per-round
//! counts, each lieutenant's decision, and the verdict on the interactive
//! consistency conditions (LSP'82 §1):
//!
//! - IC1: all loyal lieutenants obey the same order;
//! - IC2: if the commander is loyal, every loyal lieutenant obeys the order
//!   it sends.
//!
//! Shared by OM(m) and SM(m); it never decides anything itself.

use super::chain::ChainError;
use super::model::{om_round_messages, Algorithm, GeneralId, Order, Scenario};
use super::strategy::Strategy;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "reason")]
pub enum Delivery {
    /// An oral message, handed to its recipient.
    Delivered,
    /// A traitor sent nothing where the protocol sends a message.
    Withheld,
    /// SM: a valid chain with a value new to the recipient's set V.
    Accepted,
    /// SM: a valid chain with a value already in V.
    Known,
    /// SM: an invalid chain, discarded by a loyal recipient.
    #[serde(serialize_with = "as_display")]
    Rejected(ChainError),
    /// SM: delivered to a traitor.
    ToTraitor,
}

fn as_display<S: Serializer>(e: &ChainError, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(e)
}

/// One message (or one withheld message) of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageRecord {
    /// The round, from 1 (the commander's) to m + 1.
    pub round: usize,
    /// The sender.
    pub from: GeneralId,
    /// The recipient.
    pub to: GeneralId,
    /// The order sent; `None` when withheld.
    pub value: Option<Order>,
    /// OM: the generals the value passed through, commander first, ending
    /// with `from`. SM: the signers of the chain, commander first.
    pub path: Vec<GeneralId>,
    /// Whether the sender is a traitor.
    pub from_traitor: bool,
    /// What happened to it.
    pub delivery: Delivery,
}

/// Message counts for one round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoundStats {
    /// The round, from 1.
    pub round: usize,
    /// Messages sent.
    pub sent: u64,
    /// Messages a traitor withheld.
    pub withheld: u64,
    /// Messages a loyal recipient rejected (SM only).
    pub rejected: u64,
    /// OM: (N−1)(N−2)…(N−round), the count when nobody is silent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formula: Option<u128>,
}

/// One lieutenant's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LieutenantDecision {
    /// The lieutenant.
    pub general: GeneralId,
    /// Whether it is loyal.
    pub loyal: bool,
    /// The order it obeys (loyal lieutenants only).
    pub decision: Option<Order>,
    /// OM: the values v1…v(N−1) fed to majority (LSP'82 §3 step 3).
    /// SM: the set V of accepted orders (LSP'82 §4).
    pub inputs: Vec<Order>,
}

/// A traitor and its strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraitorInfo {
    /// The traitor.
    pub general: GeneralId,
    /// Its strategy.
    pub strategy: Strategy,
}

/// Signature work in an SM(m) run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SignatureStats {
    /// ed25519 signatures made.
    pub signed: u64,
    /// Signatures checked by recipients.
    pub checked: u64,
    /// Chains rejected by loyal recipients.
    pub rejected_chains: u64,
}

/// Everything one run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// OM or SM.
    pub algorithm: Algorithm,
    /// The m of OM(m)/SM(m).
    pub m: usize,
    /// N.
    pub generals: usize,
    /// The order a loyal commander gives.
    pub order: Order,
    /// Whether the commander is loyal.
    pub commander_loyal: bool,
    /// The traitors, by id.
    pub traitors: Vec<TraitorInfo>,
    /// Counts per round, 1..=m+1.
    pub rounds: Vec<RoundStats>,
    /// Messages sent in all rounds.
    pub total_sent: u64,
    /// OM: the formula's total when nobody is silent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_formula: Option<u128>,
    /// Every lieutenant, by id.
    pub lieutenants: Vec<LieutenantDecision>,
    /// IC1: all loyal lieutenants obey the same order.
    pub ic1: bool,
    /// IC2: if the commander is loyal, every loyal lieutenant obeys it
    /// (true when the commander is a traitor).
    pub ic2: bool,
    /// SM only: signature work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signatures: Option<SignatureStats>,
    /// Who told whom what, by round (empty when the run was made without
    /// keeping its messages).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageRecord>,
}

impl Outcome {
    /// Whether both interactive consistency conditions hold.
    pub fn agreement(&self) -> bool {
        self.ic1 && self.ic2
    }

    /// The decision of loyal lieutenant `g`, if `g` is one.
    pub fn decision_of(&self, g: GeneralId) -> Option<Order> {
        self.lieutenants
            .iter()
            .find(|d| d.general == g)
            .and_then(|d| d.decision)
    }
}

/// The messages of a run as it goes: per-round counts always, the records
/// themselves only when asked for (searches run thousands of cases and keep
/// only the counts).
#[derive(Debug)]
pub(crate) struct MessageLog {
    keep: bool,
    /// (sent, withheld, rejected) for rounds 1..=m+1.
    counts: Vec<(u64, u64, u64)>,
    records: Vec<MessageRecord>,
}

impl MessageLog {
    /// A log for rounds 1..=m+1.
    pub(crate) fn new(m: usize, keep: bool) -> MessageLog {
        MessageLog {
            keep,
            counts: vec![(0, 0, 0); m + 1],
            records: Vec::new(),
        }
    }

    /// Logs one message; `value` is `None` when a traitor withheld it.
    pub(crate) fn push(
        &mut self,
        round: usize,
        (from, to): (GeneralId, GeneralId),
        value: Option<Order>,
        path: &[GeneralId],
        from_traitor: bool,
        delivery: Delivery,
    ) {
        if let Some(c) = self.counts.get_mut(round - 1) {
            match (&value, &delivery) {
                (None, _) => c.1 += 1,
                (Some(_), Delivery::Rejected(_)) => {
                    c.0 += 1;
                    c.2 += 1;
                }
                (Some(_), _) => c.0 += 1,
            }
        }
        if self.keep {
            self.records.push(MessageRecord {
                round,
                from,
                to,
                value,
                path: path.to_vec(),
                from_traitor,
                delivery,
            });
        }
    }
}

/// Builds the outcome of a run from its message log and the loyal
/// lieutenants' (decision, inputs).
pub(crate) fn finish(
    scenario: &Scenario,
    algorithm: Algorithm,
    log: MessageLog,
    decisions: &BTreeMap<GeneralId, (Order, Vec<Order>)>,
    signatures: Option<SignatureStats>,
) -> Outcome {
    let MessageLog {
        counts,
        mut records,
        ..
    } = log;
    // Messages are logged in the order the algorithm makes them; show them
    // by round, as the synchronous rounds of the paper deliver them.
    records.sort_by_key(|r| r.round);
    let n = scenario.generals();
    let is_oral = algorithm == Algorithm::Om;
    let rounds: Vec<RoundStats> = counts
        .into_iter()
        .enumerate()
        .map(|(i, (sent, withheld, rejected))| RoundStats {
            round: i + 1,
            sent,
            withheld,
            rejected,
            formula: is_oral.then(|| om_round_messages(n, i + 1)),
        })
        .collect();
    let lieutenants: Vec<LieutenantDecision> = scenario
        .lieutenants()
        .into_iter()
        .map(|g| {
            let loyal = scenario.is_loyal(g);
            let (decision, inputs) = match decisions.get(&g) {
                Some((d, inputs)) if loyal => (Some(*d), inputs.clone()),
                _ => (None, Vec::new()),
            };
            LieutenantDecision {
                general: g,
                loyal,
                decision,
                inputs,
            }
        })
        .collect();
    let loyal: Vec<Order> = lieutenants.iter().filter_map(|d| d.decision).collect();
    let commander_loyal = scenario.is_loyal(GeneralId::COMMANDER);
    // LSP'82 §1, IC1 and IC2.
    let ic1 = loyal.windows(2).all(|w| w[0] == w[1]);
    let ic2 = !commander_loyal || loyal.iter().all(|&d| d == scenario.order());
    Outcome {
        algorithm,
        m: scenario.m(),
        generals: n,
        order: scenario.order(),
        commander_loyal,
        traitors: scenario
            .traitors()
            .iter()
            .map(|(&general, &strategy)| TraitorInfo { general, strategy })
            .collect(),
        total_sent: rounds.iter().map(|r| r.sent).sum(),
        total_formula: is_oral.then(|| rounds.iter().filter_map(|r| r.formula).sum()),
        rounds,
        lieutenants,
        ic1,
        ic2,
        signatures,
        messages: records,
    }
}
