//! Searching many runs for a violation of IC1 or IC2: `--exhaustive` (every
//! traitor placement × every combination of strategies from the 25-strategy
//! space × both orders of the commander) and the cells of `--sweep` (a
//! reduced set, see [`Coverage::Reduced`]).
//! Strategies of the space are deterministic, so every case replays exactly
//! with the command line the report prints.

use super::chain::KeyRing;
use super::error::ConfigError;
use super::model::{om_total_messages, Algorithm, GeneralId, Order, Scenario, MAX_WORK};
use super::oral::run_om_logged;
use super::outcome::Outcome;
use super::signed::run_sm_with;
use super::strategy::{Strategy, SPACE_SUMMARY};
use serde::Serialize;

/// Which placements and strategy combinations a search covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// `--exhaustive`: every placement of the M traitors among the N
    /// generals × every combination of strategies (25^M).
    Full,
    /// `--sweep`: one placement per parity class — commander loyal or not,
    /// and how many traitors sit on even- and on odd-numbered lieutenants
    /// (the highest-numbered ones) — × each strategy, shared by all traitors.
    /// Strategies see only a recipient's parity, so for OM relabelling the
    /// lieutenants within a parity maps every placement of a class onto the
    /// representative with the same outcome.
    Reduced,
}

/// The result of searching every placement and strategy combination for
/// one (algorithm, N, M).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchReport {
    /// OM or SM.
    pub algorithm: Algorithm,
    /// N.
    pub generals: usize,
    /// M, the number of traitors.
    pub traitors: usize,
    /// The m of OM(m)/SM(m).
    pub m: usize,
    /// What a traitor may do.
    pub strategy_space: &'static str,
    /// Which combinations of strategies were tried.
    pub coverage: Coverage,
    /// Traitor placements tried (M-subsets of the N generals, commander
    /// included).
    pub placements: u64,
    /// Strategy combinations per placement.
    pub combinations: u64,
    /// Commander orders tried (attack and retreat).
    pub orders: Vec<Order>,
    /// Runs made: placements × combinations × orders.
    pub cases: u64,
    /// Runs where IC1 failed.
    pub ic1_violations: u64,
    /// Runs where IC2 failed.
    pub ic2_violations: u64,
    /// Runs where IC1 or IC2 failed.
    pub failing_cases: u64,
    /// Whether IC1 and IC2 held in every run.
    pub holds: bool,
    /// The first failing run, with its message log.
    pub counterexample: Option<Outcome>,
}

/// Every M-subset of the N generals, in lexicographic order.
pub fn placements(generals: usize, traitors: usize) -> Vec<Vec<GeneralId>> {
    fn extend(
        start: usize,
        n: usize,
        k: usize,
        cur: &mut Vec<GeneralId>,
        out: &mut Vec<Vec<GeneralId>>,
    ) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            cur.push(GeneralId(i as u16));
            extend(i + 1, n, k, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    extend(
        0,
        generals,
        traitors,
        &mut Vec::with_capacity(traitors),
        &mut out,
    );
    out
}

/// One placement per parity class (see [`Coverage::Reduced`]).
pub fn representative_placements(generals: usize, traitors: usize) -> Vec<Vec<GeneralId>> {
    let evens: Vec<GeneralId> = GeneralId::all(generals)
        .skip(1)
        .filter(|g| !g.is_odd())
        .collect();
    let odds: Vec<GeneralId> = GeneralId::all(generals)
        .skip(1)
        .filter(|g| g.is_odd())
        .collect();
    let mut out = Vec::new();
    for commander in [false, true] {
        let Some(rest) = traitors.checked_sub(usize::from(commander)) else {
            continue;
        };
        for even in 0..=rest.min(evens.len()) {
            let odd = rest - even;
            if odd > odds.len() {
                continue;
            }
            let mut placement: Vec<GeneralId> = Vec::with_capacity(traitors);
            if commander {
                placement.push(GeneralId::COMMANDER);
            }
            placement.extend_from_slice(&evens[evens.len() - even..]);
            placement.extend_from_slice(&odds[odds.len() - odd..]);
            placement.sort_unstable();
            out.push(placement);
        }
    }
    out
}

/// Searches (algorithm, N, M) with m = min(M, N − 2), refusing searches
/// beyond [`MAX_WORK`] message deliveries.
pub fn search(
    algorithm: Algorithm,
    generals: usize,
    traitors: usize,
    coverage: Coverage,
) -> Result<SearchReport, ConfigError> {
    // Validates N and M (and gives the same errors as a single run).
    let probe: Vec<(GeneralId, Strategy)> = GeneralId::all(traitors)
        .map(|g| (g, Strategy::HONEST))
        .collect();
    let m = Scenario::new(generals, Order::Attack, &probe, 0)?.m();
    let space = Strategy::space();
    // Count before enumerating: a search too big to run is refused up front.
    let (placement_count, combinations): (u128, u128) = match coverage {
        Coverage::Full => (
            binomial(generals, traitors),
            (space.len() as u128).saturating_pow(traitors as u32),
        ),
        Coverage::Reduced => (
            representative_placements(generals, traitors).len() as u128,
            if traitors == 0 {
                1
            } else {
                space.len() as u128
            },
        ),
    };
    let orders = vec![Order::Attack, Order::Retreat];
    let cases = placement_count
        .saturating_mul(combinations)
        .saturating_mul(orders.len() as u128);
    let work = cases.saturating_mul(run_cost(algorithm, generals, m));
    if work > MAX_WORK {
        return Err(ConfigError::TooMuchWork {
            what: format!(
                "searching {} with N={generals}, M={traitors} ({cases} cases)",
                algorithm.label(m)
            ),
            work,
            limit: MAX_WORK,
        });
    }
    // Below the limit, every count fits easily in a u64.
    let (cases, combinations) = (cases as u64, combinations as u64);
    let placements = match coverage {
        Coverage::Full => placements(generals, traitors),
        Coverage::Reduced => representative_placements(generals, traitors),
    };
    let mut keys = KeyRing::with_memo(generals);
    let mut report = SearchReport {
        algorithm,
        generals,
        traitors,
        m,
        strategy_space: SPACE_SUMMARY,
        coverage,
        placements: placements.len() as u64,
        combinations,
        orders: orders.clone(),
        cases,
        ic1_violations: 0,
        ic2_violations: 0,
        failing_cases: 0,
        holds: true,
        counterexample: None,
    };
    for order in orders {
        for placement in &placements {
            for combo in 0..combinations {
                let assignment: Vec<(GeneralId, Strategy)> = placement
                    .iter()
                    .enumerate()
                    .map(|(i, &g)| (g, space[strategy_index(combo, i, coverage, space.len())]))
                    .collect();
                let scenario = Scenario::with_depth(generals, m, order, &assignment, 0)?;
                let run = |keys: &mut KeyRing, keep: bool| match algorithm {
                    Algorithm::Om => run_om_logged(&scenario, keep),
                    Algorithm::Sm => run_sm_with(&scenario, keys, keep),
                };
                let outcome = run(&mut keys, false);
                report.ic1_violations += u64::from(!outcome.ic1);
                report.ic2_violations += u64::from(!outcome.ic2);
                if !outcome.agreement() {
                    report.failing_cases += 1;
                    report.holds = false;
                    if report.counterexample.is_none() {
                        // Run it again, keeping its messages as evidence.
                        report.counterexample = Some(run(&mut keys, true));
                    }
                }
            }
        }
    }
    Ok(report)
}

/// C(n, k), saturating.
fn binomial(n: usize, k: usize) -> u128 {
    (0..k.min(n)).fold(1u128, |acc, i| {
        acc.saturating_mul((n - i) as u128) / (i as u128 + 1)
    })
}

/// The strategy index of traitor `i` in combination `combo` (mixed radix,
/// first traitor fastest).
fn strategy_index(combo: u64, i: usize, coverage: Coverage, space: usize) -> usize {
    match coverage {
        Coverage::Reduced => combo as usize,
        Coverage::Full => ((combo / (space as u64).pow(i as u32)) % space as u64) as usize,
    }
}

/// An upper bound on the message deliveries (and, for SM, signature checks)
/// one run costs.
pub(crate) fn run_cost(algorithm: Algorithm, n: usize, m: usize) -> u128 {
    match algorithm {
        Algorithm::Om => om_total_messages(n, m),
        Algorithm::Sm => {
            // Round 1: N−1 orders. Afterwards each lieutenant relays each of
            // the two values at most once, to at most N−2 others. Every
            // delivery checks at most m+1 signatures.
            let n = n as u128;
            let m = m as u128;
            ((n - 1) + 2 * (n - 1) * (n - 2)) * (m + 1)
        }
    }
}
