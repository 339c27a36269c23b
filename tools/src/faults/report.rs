//! The fault report: `faults.md` (the table and what it means), `faults.json`,
//! `throughput.svg`, `latency.svg` and one `timeline-<setup>.svg` per setup.

use super::cell::{short, CellResult};
use super::{Fault, FaultsReport, Setup, ALL_FAULTS};
use phalanx_consensus::FaultModel;
use phalanx_testnet::chart::{BarChart, BarGroup, LineChart, Series};
use std::fmt::Write as _;
use std::path::Path;

/// One line per finished cell, for the console.
pub fn one_line(c: &CellResult) -> String {
    let mut line = format!(
        "{} · {}: {:.0} tx/s, p50 {:.0} ms, p99 {:.0} ms, {} view changes, recovery {}, \
         evidence {}, {}",
        c.setup.label(),
        c.fault.describe(),
        c.committed_tps,
        c.latency_ms.p50,
        c.latency_ms.p99,
        c.view_changes,
        recovery(c),
        c.evidence,
        c.verdict()
    );
    if c.fault.loses_quorum() {
        let f = c.finality.clone().unwrap_or_default();
        let _ = write!(
            line,
            "; {} tentative block(s) in the outage, final again {} after the heal, {} discarded, \
             {} transaction(s) returned",
            f.tentative_blocks,
            ms_or_never(f.finalize_again_ms),
            f.discarded_blocks,
            f.returned_txs
        );
    }
    line
}

fn recovery(c: &CellResult) -> String {
    match c.recovery_ms {
        Some(ms) => format!("{ms:.0} ms"),
        None => "never".into(),
    }
}

fn setups(r: &FaultsReport) -> Vec<Setup> {
    let mut out: Vec<Setup> = Vec::new();
    for c in &r.cells {
        if !out.contains(&c.setup) {
            out.push(c.setup);
        }
    }
    out
}

fn faults(r: &FaultsReport) -> Vec<Fault> {
    ALL_FAULTS
        .into_iter()
        .filter(|f| r.cells.iter().any(|c| c.fault == *f))
        .collect()
}

fn cell(r: &FaultsReport, s: Setup, f: Fault) -> Option<&CellResult> {
    r.cells.iter().find(|c| c.setup == s && c.fault == f)
}

/// The Markdown table.
pub fn table(r: &FaultsReport) -> String {
    let mut out = String::from(
        "| setup | fault | faulty nodes | committed tx/s | p50 ms | p99 ms | view changes / elections | fault → commit ms | evidence | safety |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for c in &r.cells {
        let faulty = if c.faulty_nodes.is_empty() {
            "-".to_owned()
        } else {
            c.faulty_nodes
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} |",
            c.setup.label(),
            c.fault.describe(),
            faulty,
            c.committed_tps,
            c.latency_ms.p50,
            c.latency_ms.p99,
            c.view_changes,
            recovery(c),
            c.evidence,
            c.verdict()
        );
    }
    out
}

/// The cells without a quorum.
fn quorum_cells(r: &FaultsReport) -> Vec<&CellResult> {
    r.cells.iter().filter(|c| c.fault.loses_quorum()).collect()
}

fn ms_or_never(ms: Option<f64>) -> String {
    ms.map_or("never".into(), |ms| format!("{:.1} s", ms / 1000.0))
}

/// The table of the cells without a quorum: what PBFT alone and PBFT with
/// a fallback did through the outage and after the heal.
pub fn quorum_table(r: &FaultsReport) -> String {
    let mut out = String::from(
        "| setup | fault | tentative blocks in the outage | most blocks not final | heal → all final | discarded blocks | returned txs | final height: fault → end | committed tx/s | safety |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for c in quorum_cells(r) {
        let fin = c.finality.clone().unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} → {} | {:.0} | {} |",
            c.setup.label(),
            c.fault.describe(),
            fin.tentative_blocks,
            fin.max_finality_lag,
            ms_or_never(fin.finalize_again_ms),
            fin.discarded_blocks,
            fin.returned_txs,
            fin.final_at_fault,
            fin.final_at_end,
            c.committed_tps,
            c.verdict()
        );
    }
    out
}

/// What the cells without a quorum show, from what was measured.
fn explain_quorum(r: &FaultsReport) -> String {
    let cells = quorum_cells(r);
    let mut out = String::new();
    let alone: Vec<&&CellResult> = cells
        .iter()
        .filter(|c| c.setup.model() == FaultModel::Byzantine)
        .collect();
    let hybrid: Vec<&&CellResult> = cells
        .iter()
        .filter(|c| c.setup.model() == FaultModel::Hybrid)
        .collect();
    let fig = |c: &CellResult| c.finality.clone().unwrap_or_default();
    if !alone.is_empty() {
        let halted = alone
            .iter()
            .filter(|c| fig(c).tentative_blocks == 0)
            .count();
        let resumed = alone
            .iter()
            .filter(|c| fig(c).finalize_again_ms.is_some())
            .count();
        let _ = writeln!(
            out,
            "* **PBFT alone halts without a quorum.** With f+1 of 3f+1 validators down, or the \
             validators split so that no side holds 2f+1, no block can gather a commit \
             certificate: PBFT chooses safety over liveness, as CometBFT does. {halted} of {} \
             PBFT-alone cell(s) made no block during the outage; {resumed} committed again \
             after the heal.",
            alone.len()
        );
    }
    if !hybrid.is_empty() {
        let produced = hybrid
            .iter()
            .filter(|c| fig(c).tentative_blocks > 0)
            .count();
        let finalized = hybrid
            .iter()
            .filter(|c| fig(c).finalize_again_ms.is_some())
            .count();
        let forks = hybrid.iter().filter(|c| c.fork.is_some()).count();
        let each: Vec<String> = hybrid
            .iter()
            .map(|c| {
                let f = fig(c);
                format!(
                    "{} {}: {} tentative block(s), final again {} after the heal, {} discarded, \
                     {} transaction(s) returned",
                    c.setup.label(),
                    c.fault.describe(),
                    f.tentative_blocks,
                    ms_or_never(f.finalize_again_ms),
                    f.discarded_blocks,
                    f.returned_txs
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "* **PBFT with a fallback keeps going, then finalizes.** After two view changes \
             without a new final block, proof of work or proof of stake makes tentative blocks \
             on the last final one; once a quorum is back, PBFT finalizes the surviving branch \
             as it is and the nodes on another branch discard theirs, their transactions going \
             back to the mempool. {produced} of {} cell(s) made tentative blocks during the \
             outage, {finalized} finalized again after the heal, {} kept one final chain. {}.",
            hybrid.len(),
            hybrid.len() - forks,
            each.join("; ")
        );
    }
    out
}

/// The plain sentences under the table, from what was measured.
fn explain(r: &FaultsReport) -> String {
    let mut out = String::new();
    let pbft: Vec<&CellResult> = r
        .cells
        .iter()
        .filter(|c| c.setup.model() == FaultModel::Byzantine && !c.fault.loses_quorum())
        .collect();
    let cft: Vec<&CellResult> = r
        .cells
        .iter()
        .filter(|c| c.setup.model() == FaultModel::Crash)
        .collect();
    let chains: Vec<&CellResult> = r
        .cells
        .iter()
        .filter(|c| c.setup.model() == FaultModel::Nakamoto)
        .collect();
    if !chains.is_empty() {
        let forks = chains.iter().filter(|c| c.fork.is_some()).count();
        let _ = writeln!(
            out,
            "* **Longest chains converge, finalize nothing.** Proof of work and proof of stake              keep producing through crashes and partitions — each side of a split grows its own              branch — and after the heal the lighter (or shorter) side reverts its blocks and              follows the other: {} reorg(s) in {} cell(s), the deepest {} block(s). Every block              stays tentative (confirmations, never final); {} of {} cells ended with honest              nodes agreeing on all but the last {} blocks.",
            chains.iter().map(|c| c.reorgs).sum::<u64>(),
            chains.len(),
            chains.iter().map(|c| c.deepest_reorg).max().unwrap_or(0),
            chains.len() - forks,
            chains.len(),
            super::cell::TENTATIVE_TIP
        );
        if let Some(c) = chains.iter().find(|c| !c.slashed.is_empty()) {
            let _ = writeln!(
                out,
                "* **A PoS leader that signs two blocks for one slot is slashed.** In {} the                  equivocating validator(s) {:?} were caught ({} piece(s) of evidence), the                  evidence went into a block, and their stake was slashed on the chain, so they                  lead no more slots.",
                c.setup.label(),
                c.slashed,
                c.evidence
            );
        }
    }
    if !pbft.is_empty() {
        let forks = pbft.iter().filter(|c| c.fork.is_some()).count();
        let live = pbft
            .iter()
            .filter(|c| c.fault != Fault::None && c.recovery_ms.is_some())
            .count();
        let faulted = pbft.iter().filter(|c| c.fault != Fault::None).count();
        let _ = writeln!(
            out,
            "* **PBFT keeps one chain.** With n > 3f, a quorum is 2f+1 of 3f+1 validators, and any \
             two quorums share at least f+1 validators, so at least one honest one, which never \
             signs two different blocks for one height: two conflicting blocks can never both be \
             certified. Measured: {} of {} PBFT cells kept one chain on every honest node, and \
             {} of {} cells with f faulty nodes committed new blocks after the fault.",
            pbft.len() - forks,
            pbft.len(),
            live,
            faulted
        );
        let evid: Vec<&&CellResult> = pbft
            .iter()
            .filter(|c| c.fault == Fault::Equivocate)
            .collect();
        if let Some(c) = evid.first() {
            let _ = writeln!(
                out,
                "* **Equivocation is caught, not just survived.** The equivocating primary sent two \
                 PRE-PREPAREs to two halves; neither gathered a quorum, honest replicas compared the \
                 primary's signed votes (the PRE-PREPARE echo), stored the two signatures as \
                 evidence ({} piece(s) in {}), put it into a block, marked validator(s) {:?} \
                 faulty and moved to a new view ({} view change(s)).",
                c.evidence,
                c.setup.label(),
                c.marked_faulty,
                c.view_changes
            );
        }
    }
    if !cft.is_empty() {
        if let Some(c) = cft.iter().find(|c| c.fault == Fault::Equivocate) {
            let what = match &c.fork {
                Some(f) => format!(
                    "honest followers committed different blocks at height {} (node{} {} vs \
                     node{} {})",
                    f.height,
                    f.a.0,
                    short(&f.a.1),
                    f.b.0,
                    short(&f.b.1)
                ),
                None => "no fork was observed this time (unexpected)".into(),
            };
            let _ = writeln!(
                out,
                "* **CFT forks under a lying leader.** Raft-style majorities (f+1 of 2f+1) \
                 intersect in one validator, enough to survive crashes, but that one may be the \
                 liar: an equivocating leader sent one entry to half its followers and another to \
                 the other half, each half acknowledged, and {what}. CFT has no signatures to \
                 compare and no notion of evidence, so nobody noticed."
            );
        }
        let crashes: Vec<&&CellResult> = cft
            .iter()
            .filter(|c| matches!(c.fault, Fault::Crash | Fault::Pause))
            .collect();
        let crash_ok = crashes
            .iter()
            .all(|c| c.fork.is_none() && c.recovery_ms.is_some());
        if !crashes.is_empty() {
            let _ = writeln!(
            out,
            "* **CFT is enough for crashes.** Crashed and paused nodes {} (an election replaces \
             a dead leader); CFT needs only a majority and one round trip per entry.",
            if crash_ok {
                "cost a leader election and nothing else: one chain, commits resumed"
            } else {
                "did not all recover in this run (see the table)"
            }
        );
        }
    }
    let base_p = r
        .cells
        .iter()
        .find(|c| c.setup.model().byzantine() && c.fault == Fault::None);
    let base_c = r
        .cells
        .iter()
        .find(|c| !c.setup.model().byzantine() && c.fault == Fault::None);
    if let (Some(p), Some(c)) = (base_p, base_c) {
        let _ = writeln!(
            out,
            "* **What Byzantine tolerance costs.** Without faults, {} committed {:.0} tx/s with \
             p50 {:.0} ms, {} {:.0} tx/s with p50 {:.0} ms (same offered load {:.0} tx/s): PBFT \
             spends three message rounds and 2f+1 signatures per block where CFT spends one round.",
            p.setup.label(),
            p.committed_tps,
            p.latency_ms.p50,
            c.setup.label(),
            c.committed_tps,
            c.latency_ms.p50,
            r.rate
        );
        if p.latency_ms.p50 < c.latency_ms.p50 {
            let _ = writeln!(
                out,
                "  Here PBFT's p50 is the lower one: latency runs until the last node has \
                 executed a block, and a CFT follower learns that an entry committed only from \
                 the leader's next message (the next batch or heartbeat), while every PBFT \
                 replica sees the COMMIT quorum itself. At this load the extra rounds show in \
                 messages and signatures per block, not in p50."
            );
        }
    }
    if r.cells.iter().any(|c| c.fault == Fault::Partition) {
        let _ = writeln!(
            out,
            "* **Partitions: which side halts, which side diverges (CAP).** The f validators \
             with the primary/leader were cut off from the other n−f. The n−f side still holds \
             a quorum, elects or views-changes to a new leader and keeps committing; the f side \
             cannot form a quorum and halts — it chooses consistency over availability. Nobody \
             diverges; after the heal the cut-off nodes fetch the certified blocks they missed. \
             Partitions here are cut at the transport ({}).",
            r.partition_method
        );
    }
    let twins: Vec<&CellResult> = r.cells.iter().filter(|c| c.fault == Fault::Twins).collect();
    if !twins.is_empty() {
        let each: Vec<String> = twins
            .iter()
            .map(|c| {
                format!(
                    "{}: {}, {} evidence, {} view change(s)/election(s), {:.0} tx/s",
                    c.setup.label(),
                    c.verdict(),
                    c.evidence,
                    c.view_changes,
                    c.committed_tps
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "* **Twins: one key, two processes.** f validators (the primary/leader first) get a \
             second process with the same keys and an empty database, as a failover gone wrong \
             would start. The twin syncs the chain and runs the honest code; the other nodes \
             see one peer with two connections and spread its messages over both, so each \
             process hears part of the conversation. Safety needs nothing new: a PBFT quorum \
             is 2f+1 distinct validator keys however many processes hold one, and two \
             different proposals signed for one slot are evidence (a twin still catching up \
             proposes for slots already decided, which are dropped, so there may be none). \
             The cost is liveness: the original misses part of the transaction batches and \
             waits on nonce gaps, and a twinned primary proposes less until a view change. \
             Measured: {}.",
            each.join("; ")
        );
    }
    out
}

/// `faults.md`: the header, the table and what the cells show.
pub fn markdown(r: &FaultsReport) -> String {
    let mut md =
        String::from("# Phalanx under faults: PBFT beside a crash-fault-tolerant baseline\n\n");
    let _ = writeln!(md, "Command: `{}`  ", r.command);
    let _ = writeln!(
        md,
        "Binary: phalanx {} (git commit {})  ",
        r.version, r.git_commit
    );
    let _ = writeln!(
        md,
        "Machine: {} ({} cores, {:.0} GiB, {} build); every node and the load generator on it.  ",
        r.machine.cpu, r.machine.cores, r.machine.memory_gib, r.machine.build
    );
    let _ = writeln!(
        md,
        "Workload: signed transfers at {:.0} tx/s to the nodes the fault does not touch, \
         {:.0} s measured per cell; the fault comes at 30 % of the window and heals (pause, \
         partition) at 65 %. f = ⌊(n−1)/3⌋ for PBFT, ⌊(n−1)/2⌋ for CFT; the first faulty \
         node is the primary/leader.  ",
        r.rate, r.duration_s
    );
    let _ = writeln!(md, "Partitions: {}.\n", r.partition_method);
    md.push_str(&table(r));
    md.push_str(
        "\nCommitted tx/s and latency count a transaction once every node the fault did not touch \
         has executed it. \"fault → commit\" runs from the fault until every such node committed \
         a block proposed after it. Safety compares the chains of every honest node still \
         running at the end (paused, restarted and partitioned nodes included, Byzantine ones \
         not), height by height.\n\n## What the cells show\n\n",
    );
    md.push_str(&explain(r));
    if !quorum_cells(r).is_empty() {
        md.push_str(
            "\n## Without a quorum: PBFT alone and PBFT with a fallback\n\n\
             From every node's `/status` twice a second. \"Tentative blocks in the outage\": \
             blocks above the final one on the longest branch just before the heal. \
             \"Heal → all final\": until every node answered with nothing tentative, back in \
             PBFT mode, with a final block above the highest one at the heal. Discarded blocks and \
             returned transactions are summed over the nodes. Safety compares final blocks \
             only. Charts: `finality-<fault>.svg` (final height and head over time).\n\n",
        );
        md.push_str(&quorum_table(r));
        md.push('\n');
        md.push_str(&explain_quorum(r));
    }
    md.push_str(
        "\nCharts: `throughput.svg`, `latency.svg`, `timeline-<setup>.svg` (commits around the fault).\n",
    );
    md
}

/// `finality-<fault>.svg`: the highest head and the highest final height
/// over time, per setup, for one fault without a quorum.
fn finality_chart(r: &FaultsReport, fault: Fault) -> Option<LineChart> {
    let cells: Vec<&CellResult> = r.cells.iter().filter(|c| c.fault == fault).collect();
    let first = cells.first()?;
    let mut markers = vec![(0.0, "fault".to_owned())];
    if let Some(h) = first.heal_at_s {
        markers.push((h - first.fault_at_s, "heal".into()));
    }
    let mut series = Vec::new();
    for c in &cells {
        let fin = c.finality.clone().unwrap_or_default();
        let base = fin.final_at_fault as f64;
        series.push(Series::new(
            format!("{} final", c.setup.label()),
            fin.heights
                .iter()
                .map(|(t, _, f)| (*t, *f as f64 - base))
                .collect(),
        ));
        series.push(Series::new(
            format!("{} head", c.setup.label()),
            fin.heights
                .iter()
                .map(|(t, h, _)| (*t, *h as f64 - base))
                .collect(),
        ));
    }
    Some(LineChart {
        title: format!("{}: final height and head", fault.describe()),
        x_label: "seconds since the fault".into(),
        y_label: "blocks above the final height at the fault".into(),
        series,
        markers,
        y_from_zero: false,
    })
}

/// Writes every file; returns the Markdown summary.
pub fn write(r: &FaultsReport, out: &Path) -> anyhow::Result<String> {
    write_file(&out.join("faults.md"), &markdown(r))?;
    write_file(&out.join("faults.json"), &serde_json::to_string_pretty(r)?)?;

    let setups = setups(r);
    let faults = faults(r);
    let bars = |title: &str, y: &str, value: &dyn Fn(&CellResult) -> f64| BarChart {
        title: title.into(),
        y_label: y.into(),
        series_names: setups.iter().map(Setup::label).collect(),
        groups: faults
            .iter()
            .map(|f| BarGroup {
                label: f.describe().into(),
                values: setups
                    .iter()
                    .map(|s| cell(r, *s, *f).map_or(f64::NAN, value))
                    .collect(),
            })
            .collect(),
        decimals: 0,
    };
    write_file(
        &out.join("throughput.svg"),
        &bars(
            "Committed throughput per cell",
            "tx/s committed on every live node",
            &|c| c.committed_tps,
        )
        .to_svg(),
    )?;
    write_file(
        &out.join("latency.svg"),
        &bars(
            "p99 latency per cell (submit to committed everywhere)",
            "ms",
            &|c| c.latency_ms.p99,
        )
        .to_svg(),
    )?;
    for s in &setups {
        let cells: Vec<&CellResult> = r.cells.iter().filter(|c| c.setup == *s).collect();
        let mut markers = vec![(0.0, "fault".to_owned())];
        if let Some(c) = cells.iter().find(|c| c.heal_at_s.is_some()) {
            if let Some(h) = c.heal_at_s {
                markers.push((h - c.fault_at_s, "heal".into()));
            }
        }
        let chart = LineChart {
            title: format!("{}: commits around the fault", s.label()),
            x_label: "seconds since the fault".into(),
            y_label: "tx/s committed on every live node".into(),
            series: cells
                .iter()
                .map(|c| Series::new(c.fault.describe(), c.timeline.clone()))
                .collect(),
            markers,
            y_from_zero: true,
        };
        write_file(
            &out.join(format!("timeline-{}.svg", s.name())),
            &chart.to_svg(),
        )?;
    }

    for f in faults.iter().filter(|f| f.loses_quorum()) {
        if let Some(chart) = finality_chart(r, *f) {
            write_file(
                &out.join(format!("finality-{}.svg", f.name())),
                &chart.to_svg(),
            )?;
        }
    }

    let mut summary = String::from("\n");
    summary.push_str(&table(r));
    summary.push('\n');
    summary.push_str(&explain(r));
    if !quorum_cells(r).is_empty() {
        summary.push('\n');
        summary.push_str(&quorum_table(r));
        summary.push('\n');
        summary.push_str(&explain_quorum(r));
    }
    let _ = write!(summary, "\nReport: {}", out.join("faults.md").display());
    Ok(summary)
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_node::version::{GIT_COMMIT, VERSION};

    #[test]
    fn the_report_names_the_version_and_commit_that_measured() {
        let dir = tempfile::tempdir().unwrap();
        let report = FaultsReport::new(
            "phalanx faults --quick".into(),
            "transport level".into(),
            300.0,
            8.0,
        );
        write(&report, dir.path()).unwrap();
        let md = std::fs::read_to_string(dir.path().join("faults.md")).unwrap();
        assert_eq!(md, markdown(&report));
        let header: Vec<&str> = md.lines().skip(2).take(3).map(str::trim_end).collect();
        assert_eq!(header[0], "Command: `phalanx faults --quick`");
        assert_eq!(
            header[1],
            format!("Binary: phalanx {VERSION} (git commit {GIT_COMMIT})")
        );
        assert!(header[2].starts_with("Machine: "), "{md}");

        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("faults.json")).unwrap())
                .unwrap();
        assert_eq!(json["version"], VERSION);
        assert_eq!(json["git_commit"], GIT_COMMIT);
        assert!(!VERSION.is_empty() && !GIT_COMMIT.is_empty());
    }
}
