//! The N × M table of `--sweep`: for every number of generals N and traitors
//! M, search OM(M) and SM(M) for a violation of IC1 or IC2 and compare with
//! the paper's theorems — oral messages reach agreement exactly when
//! N > 3M (LSP'82 §3, Theorem 1, and §2's impossibility result), signed
//! messages for any N ≥ M + 2 (§4, Theorem 2).

use super::error::ConfigError;
use super::model::{Algorithm, MAX_GENERALS, MAX_WORK};
use super::search::{representative_placements, run_cost, search, Coverage};
use super::strategy::{Strategy, SPACE_SUMMARY};
use serde::Serialize;

/// The most traitor columns (keeps the table within 80 columns).
pub const MAX_SWEEP_TRAITORS: usize = 7;

/// One algorithm's result in one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CellResult {
    /// Whether IC1 and IC2 held in every case searched.
    pub holds: bool,
    /// What the theorem says.
    pub expected: bool,
    /// Cases searched.
    pub cases: u64,
}

/// One (N, M) cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SweepCell {
    /// N.
    pub generals: usize,
    /// M.
    pub traitors: usize,
    /// OM(M), or `None` when N < M + 2 (no loyal general to disagree with).
    pub oral: Option<CellResult>,
    /// SM(M), or `None` when N < M + 2.
    pub signed: Option<CellResult>,
}

/// The whole table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepReport {
    /// Rows N = 3..=max_generals.
    pub max_generals: usize,
    /// Columns M = 0..=max_traitors.
    pub max_traitors: usize,
    /// What a traitor may do.
    pub strategy_space: &'static str,
    /// Which strategy combinations each cell covers.
    pub coverage: Coverage,
    /// Every cell, row by row.
    pub cells: Vec<SweepCell>,
    /// Cases run in all.
    pub cases: u64,
    /// Whether every cell agrees with the theorems.
    pub matches_theory: bool,
}

/// Oral messages: agreement exactly when N > 3M (LSP'82 Theorem 1 and §2).
pub fn oral_theory(generals: usize, traitors: usize) -> bool {
    generals > 3 * traitors
}

/// Signed messages: agreement for every N ≥ M + 2 (LSP'82 Theorem 2).
pub fn signed_theory(generals: usize, traitors: usize) -> bool {
    generals >= traitors + 2
}

/// Sweeps N = 3..=max_generals, M = 0..=max_traitors. Each cell searches
/// with [`Coverage::Reduced`]: one placement per parity class, each
/// strategy of the space shared by all traitors, both orders.
pub fn sweep(max_generals: usize, max_traitors: usize) -> Result<SweepReport, ConfigError> {
    if max_generals < 3 {
        return Err(ConfigError::TooFewGenerals {
            generals: max_generals,
        });
    }
    if max_generals > MAX_GENERALS {
        return Err(ConfigError::TooManyGenerals {
            generals: max_generals,
            max: MAX_GENERALS,
        });
    }
    if max_traitors > MAX_SWEEP_TRAITORS {
        return Err(ConfigError::SweepTooWide {
            traitors: max_traitors,
            max: MAX_SWEEP_TRAITORS,
        });
    }
    let coverage = Coverage::Reduced;
    let cells_to_run: Vec<(usize, usize)> = (3..=max_generals)
        .flat_map(|n| (0..=max_traitors).map(move |t| (n, t)))
        .collect();
    // Refuse the whole sweep up front rather than failing half-way.
    let work: u128 = cells_to_run
        .iter()
        .filter(|&&(n, t)| t + 2 <= n)
        .map(|&(n, t)| {
            let cases = representative_placements(n, t).len() as u128
                * if t == 0 {
                    1
                } else {
                    Strategy::space().len() as u128
                }
                * 2;
            cases * (run_cost(Algorithm::Om, n, t) + run_cost(Algorithm::Sm, n, t))
        })
        .sum();
    if work > MAX_WORK {
        return Err(ConfigError::TooMuchWork {
            what: format!("--sweep up to N={max_generals}, M={max_traitors}"),
            work,
            limit: MAX_WORK,
        });
    }
    let mut cells = Vec::with_capacity(cells_to_run.len());
    let mut cases = 0;
    let mut matches_theory = true;
    for (n, t) in cells_to_run {
        if t + 2 > n {
            cells.push(SweepCell {
                generals: n,
                traitors: t,
                oral: None,
                signed: None,
            });
            continue;
        }
        let mut cell = |algorithm: Algorithm, expected: bool| -> Result<CellResult, ConfigError> {
            let report = search(algorithm, n, t, coverage)?;
            cases += report.cases;
            matches_theory &= report.holds == expected;
            Ok(CellResult {
                holds: report.holds,
                expected,
                cases: report.cases,
            })
        };
        let oral = cell(Algorithm::Om, oral_theory(n, t))?;
        let signed = cell(Algorithm::Sm, signed_theory(n, t))?;
        cells.push(SweepCell {
            generals: n,
            traitors: t,
            oral: Some(oral),
            signed: Some(signed),
        });
    }
    Ok(SweepReport {
        max_generals,
        max_traitors,
        strategy_space: SPACE_SUMMARY,
        coverage,
        cells,
        cases,
        matches_theory,
    })
}
