//! Text rendering of Byzantine Generals results: one run, a search, and the
//! sweep table. Every line fits an 80-column terminal. JSON output does not
//! come through here; it serialises the same report types directly.

use super::model::{Algorithm, GeneralId, Order};
use super::outcome::{Delivery, MessageRecord, Outcome};
use super::search::{Coverage, SearchReport};
use super::sweep::{CellResult, SweepReport};
use std::fmt::Write as _;

/// The widest line any table may print.
pub const MAX_WIDTH: usize = 80;

/// Words of `text` wrapped to [`MAX_WIDTH`], continuation lines indented.
pub(crate) fn wrap(text: &str, indent: &str) -> String {
    wrap_indented(text, "", indent)
}

/// Words of `text` wrapped to [`MAX_WIDTH`]: the first line starts with
/// `first`, the others with `rest`.
pub(crate) fn wrap_indented(text: &str, first: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    let mut fresh = true;
    for word in text.split_whitespace() {
        if !fresh && line.len() + 1 + word.len() > MAX_WIDTH - 2 {
            out.push_str(&line);
            out.push('\n');
            line = rest.to_string();
            fresh = true;
        }
        if !fresh {
            line.push(' ');
        }
        line.push_str(word);
        fresh = false;
    }
    out.push_str(&line);
    out.push('\n');
    out
}

fn paper_section(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::Om => "oral messages (Lamport, Shostak & Pease 1982, sec. 3)",
        Algorithm::Sm => "signed messages, ed25519 (Lamport, Shostak & Pease 1982, sec. 4)",
    }
}

/// "(N-1)(N-2)…(N-round)".
fn formula_label(round: usize) -> String {
    (1..=round).map(|i| format!("(N-{i})")).collect()
}

fn verdict(holds: bool) -> &'static str {
    if holds {
        "holds"
    } else {
        "VIOLATED"
    }
}

/// One run, with the message trace when `trace` is set.
pub(crate) fn render_outcome(out: &Outcome, trace: bool) -> String {
    let mut s = String::new();
    let n = out.generals;
    let _ = writeln!(
        s,
        "{}: {}",
        out.algorithm.label(out.m),
        paper_section(out.algorithm)
    );
    let _ = writeln!(
        s,
        "N = {n} generals: commander G0, lieutenants G1..G{}; order: {}",
        n - 1,
        out.order
    );
    let traitors: Vec<String> = out
        .traitors
        .iter()
        .map(|t| format!("{} {}", t.general, t.strategy))
        .collect();
    let line = if traitors.is_empty() {
        "traitors: none".to_string()
    } else {
        format!("traitors ({}): {}", traitors.len(), traitors.join(", "))
    };
    s.push_str(&wrap(&line, "  "));
    s.push('\n');

    match out.algorithm {
        Algorithm::Om => {
            let _ = writeln!(s, "round       sent  withheld   formula");
            for r in &out.rounds {
                let _ = writeln!(
                    s,
                    "{:<6} {:>9} {:>9} {:>9}  {}",
                    r.round,
                    r.sent,
                    r.withheld,
                    r.formula.unwrap_or(0),
                    formula_label(r.round)
                );
            }
            let withheld: u64 = out.rounds.iter().map(|r| r.withheld).sum();
            let _ = writeln!(
                s,
                "{:<6} {:>9} {:>9} {:>9}",
                "total",
                out.total_sent,
                withheld,
                out.total_formula.unwrap_or(0)
            );
        }
        Algorithm::Sm => {
            let _ = writeln!(s, "round       sent  withheld  rejected");
            for r in &out.rounds {
                let _ = writeln!(
                    s,
                    "{:<6} {:>9} {:>9} {:>9}",
                    r.round, r.sent, r.withheld, r.rejected
                );
            }
            let withheld: u64 = out.rounds.iter().map(|r| r.withheld).sum();
            let rejected: u64 = out.rounds.iter().map(|r| r.rejected).sum();
            let _ = writeln!(
                s,
                "{:<6} {:>9} {:>9} {:>9}",
                "total", out.total_sent, withheld, rejected
            );
            if let Some(sig) = &out.signatures {
                let _ = writeln!(
                    s,
                    "signatures: {} made, {} checked; {} chain(s) rejected",
                    sig.signed, sig.checked, sig.rejected_chains
                );
            }
        }
    }
    s.push('\n');

    let _ = writeln!(s, "lieutenant  status   decision  because");
    for d in &out.lieutenants {
        match d.decision {
            Some(decision) => {
                let because = match out.algorithm {
                    Algorithm::Om => {
                        let attack = d.inputs.iter().filter(|&&v| v == Order::Attack).count();
                        format!(
                            "majority of {attack} attack, {} retreat",
                            d.inputs.len() - attack
                        )
                    }
                    Algorithm::Sm => {
                        let v: Vec<String> = d.inputs.iter().map(Order::to_string).collect();
                        format!("choice(V), V = {{{}}}", v.join(", "))
                    }
                };
                let _ = writeln!(
                    s,
                    "{:<11} {:<8} {:<9} {because}",
                    d.general.to_string(),
                    "loyal",
                    decision.to_string()
                );
            }
            None => {
                let _ = writeln!(s, "{:<11} {:<8} -", d.general.to_string(), "traitor");
            }
        }
    }
    s.push('\n');
    let ic2 = match (out.commander_loyal, out.ic2) {
        (false, _) => "holds (vacuously: traitor commander)",
        (true, holds) => verdict(holds),
    };
    let _ = writeln!(
        s,
        "IC1 loyal lieutenants agree:           {}",
        verdict(out.ic1)
    );
    let _ = writeln!(s, "IC2 loyal commander's order is obeyed: {ic2}");
    if trace {
        s.push('\n');
        s.push_str(&render_trace(&out.messages));
    }
    s
}

/// LSP'82's notation: the value, then the generals it passed through.
fn value_path(value: Option<Order>, path: &[GeneralId]) -> String {
    let mut out = match value {
        Some(v) => v.to_string(),
        None => "(silent)".to_string(),
    };
    for g in path {
        let _ = write!(out, ":{}", g.0);
    }
    out
}

/// Who told whom what, round by round.
pub(crate) fn render_trace(messages: &[MessageRecord]) -> String {
    let mut s = String::from(
        "trace (r = round, * = traitor, value:0:i:j = value as passed by G0, Gi, Gj):\n",
    );
    for m in messages {
        let from = format!("{}{}", m.from, if m.from_traitor { "*" } else { "" });
        let status = match &m.delivery {
            Delivery::Delivered | Delivery::Withheld => String::new(),
            Delivery::Accepted => "accepted".to_string(),
            Delivery::Known => "already in V".to_string(),
            Delivery::Rejected(why) => format!("REJECTED: {why}"),
            Delivery::ToTraitor => "to traitor".to_string(),
        };
        let line = format!(
            "r{:<2} {:>4} -> {:<4} {:<20} {status}",
            m.round,
            from,
            m.to.to_string(),
            value_path(m.value, &m.path)
        );
        let _ = writeln!(s, "{}", line.trim_end());
    }
    s
}

/// The command line that replays `out`.
pub(crate) fn replay_command(out: &Outcome) -> String {
    let algorithm = match out.algorithm {
        Algorithm::Om => "om",
        Algorithm::Sm => "sm",
    };
    let ids: Vec<String> = out
        .traitors
        .iter()
        .map(|t| t.general.0.to_string())
        .collect();
    let strategies: Vec<String> = out
        .traitors
        .iter()
        .map(|t| t.strategy.to_string())
        .collect();
    let mut cmd = format!(
        "  phalanx generals byzantine --algorithm {algorithm} --generals {} \\\n    --traitors {}",
        out.generals,
        out.traitors.len()
    );
    if !ids.is_empty() {
        let _ = write!(
            cmd,
            " --traitor-ids {} --strategy {}",
            ids.join(","),
            strategies.join(",")
        );
    }
    let _ = write!(cmd, " --order {} --trace", out.order);
    cmd
}

/// The result of `--exhaustive`.
pub(crate) fn render_search(r: &SearchReport, trace: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Exhaustive search: {}, {}, N = {}, M = {}",
        r.algorithm.label(r.m),
        r.algorithm.messages(),
        r.generals,
        r.traitors
    );
    s.push_str(&wrap(
        &format!("strategy space: {}", r.strategy_space),
        "  ",
    ));
    let combos = match r.coverage {
        Coverage::Full => "strategy combinations",
        Coverage::Reduced => "shared strategies",
    };
    let _ = writeln!(
        s,
        "cases: {} placements x {} {combos} x {} orders = {}",
        r.placements,
        r.combinations,
        r.orders.len(),
        r.cases
    );
    let _ = writeln!(
        s,
        "IC1 violated in {} cases, IC2 violated in {} cases",
        r.ic1_violations, r.ic2_violations
    );
    if r.holds {
        let _ = writeln!(s, "result: agreement holds in all {} cases", r.cases);
    } else {
        let _ = writeln!(
            s,
            "result: agreement FAILS in {} of {} cases",
            r.failing_cases, r.cases
        );
    }
    if let Some(c) = &r.counterexample {
        s.push_str("\ncounterexample (the first found):\n\n");
        // The evidence: its trace, unless it is too long to read.
        s.push_str(&render_outcome(c, trace || c.messages.len() <= 30));
        s.push_str("\nreplay:\n");
        s.push_str(&replay_command(c));
        s.push('\n');
    }
    s
}

fn cell_text(c: Option<CellResult>) -> String {
    match c {
        None => "-".to_string(),
        Some(c) => format!(
            "{}{}",
            if c.holds { "ok" } else { "FAIL" },
            if c.holds == c.expected { "" } else { "!" }
        ),
    }
}

/// The `--sweep` table.
pub(crate) fn render_sweep(r: &SweepReport) -> String {
    let mut s = String::new();
    s.push_str("Agreement with N generals (rows) and M traitors (columns), using m = M\n");
    s.push_str(&wrap(
        "cell = OM(M)/SM(M): ok = IC1 and IC2 held in every case searched; FAIL = \
         a counterexample was found; - = N < M+2, fewer than two loyal generals; \
         a trailing ! would mark a result that contradicts the theory.",
        "",
    ));
    s.push_str(&wrap(
        &format!(
            "cases per cell: one placement of the traitors per class (commander \
             loyal or not, how many traitors among even- and odd-numbered \
             lieutenants) x each of the 25 strategies, shared by all traitors, x \
             both orders. Strategy space: {}. --exhaustive tries every placement \
             and every combination.",
            r.strategy_space
        ),
        "",
    ));
    s.push('\n');
    let mut header = String::from("  N ");
    for t in 0..=r.max_traitors {
        let _ = write!(header, " {:<9}", format!("M={t}"));
    }
    let _ = writeln!(s, "{}", header.trim_end());
    for n in 3..=r.max_generals {
        let mut row = format!("{n:>3} ");
        for c in r.cells.iter().filter(|c| c.generals == n) {
            let text = match (c.oral, c.signed) {
                (None, None) => "-".to_string(),
                (o, sg) => format!("{}/{}", cell_text(o), cell_text(sg)),
            };
            let _ = write!(row, " {text:<9}");
        }
        let _ = writeln!(s, "{}", row.trim_end());
    }
    s.push('\n');
    s.push_str("theory: oral agreement holds exactly when N > 3M (LSP'82 sec. 2, Thm 1);\n");
    s.push_str("signed agreement holds for every N >= M+2 (LSP'82 Theorem 2).\n");
    if r.matches_theory {
        let _ = writeln!(s, "every cell matches the theory ({} cases run).", r.cases);
    } else {
        let _ = writeln!(
            s,
            "cells marked ! differ from the theory ({} cases run).",
            r.cases
        );
    }
    s
}
