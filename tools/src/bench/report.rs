//! The benchmark's outputs: a Markdown summary, the JSON of every figure,
//! and SVG charts.

use super::{BenchReport, RunResult};
use phalanx_testnet::chart::{LineChart, Series};
use std::fmt::Write as _;
use std::path::Path;

/// The files written into the output folder.
pub const FILES: [&str; 5] = [
    "bench.md",
    "bench.json",
    "throughput-vs-load.svg",
    "latency-vs-load.svg",
    "throughput-over-time.svg",
];

/// One line per run for the terminal.
pub fn one_line(r: &RunResult) -> String {
    format!(
        "n = {:>2} {:>12}: committed {:>7.0} tx/s (sent {:>7.0}), latency p50 {:>5.0} ms p99 {:>6.0} ms, \
         {:.1} blocks/s of {:.0} txs, {} view changes{}\n        \
         p50 split: {:.0} ms to the proposal, {:.0} ms to the first commit, {:.0} ms to the last node",
        r.validators,
        offered(r),
        r.committed_tps,
        r.sent_tps,
        r.latency_ms.p50,
        r.latency_ms.p99,
        r.blocks_per_s,
        r.mean_block_txs,
        r.view_changes,
        if r.divergence.is_some() {
            "  FORK!"
        } else {
            ""
        },
        r.latency_split_ms.to_proposal,
        r.latency_split_ms.proposal_to_first_commit,
        r.latency_split_ms.first_to_last_commit,
    )
}

fn offered(r: &RunResult) -> String {
    match r.offered_tps {
        Some(t) => format!("{t:.0} tx/s"),
        None => "max".into(),
    }
}

/// Writes every file of [`FILES`] into `out`; returns the Markdown summary.
pub fn write(report: &BenchReport, out: &Path) -> anyhow::Result<String> {
    let md = markdown(report);
    let files: [(&str, String); 5] = [
        (FILES[0], md.clone()),
        (FILES[1], serde_json::to_string_pretty(report)?),
        (FILES[2], throughput_vs_load(report)),
        (FILES[3], latency_vs_load(report)),
        (FILES[4], throughput_over_time(report)),
    ];
    for (name, text) in files {
        let path = out.join(name);
        std::fs::write(&path, text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(md)
}

/// The Markdown summary.
pub fn markdown(report: &BenchReport) -> String {
    let m = &report.machine;
    let mut s = String::new();
    let _ = writeln!(s, "# Phalanx benchmark\n");
    let _ = writeln!(s, "Command: `{}`  ", report.command);
    let _ = writeln!(
        s,
        "Binary: phalanx {} (git commit {})  ",
        report.version, report.git_commit
    );
    let _ = writeln!(
        s,
        "Machine: {} ({} cores, {:.0} GiB), {} build; all validators and the load generator on it.\n",
        m.cpu, m.cores, m.memory_gib, m.build
    );
    let _ = writeln!(
        s,
        "| n | offered | sent tx/s | committed tx/s | p50 ms | p90 ms | p99 ms | blocks/s | txs/block | view changes | node CPU % (max) | node peak RSS MiB (max) | generator CPU % | refused | safety |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in &report.runs {
        let cpu = r
            .nodes
            .iter()
            .filter_map(|n| n.cpu_percent)
            .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
        let rss = r
            .nodes
            .iter()
            .filter_map(|n| n.peak_rss_mib)
            .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
        let refused: u64 = r.rejected.values().sum();
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | **{:.0}** | {:.0} | {:.0} | {:.0} | {:.1} | {:.0} | {} | {} | {} | {} | {} | {} |",
            r.validators,
            offered(r),
            r.sent_tps,
            r.committed_tps,
            r.latency_ms.p50,
            r.latency_ms.p90,
            r.latency_ms.p99,
            r.blocks_per_s,
            r.mean_block_txs,
            r.view_changes,
            cpu.map_or("–".into(), |c| format!("{c:.0}")),
            rss.map_or("–".into(), |c| format!("{c:.0}")),
            r.generator_cpu_percent
                .map_or("–".into(), |c| format!("{c:.0}")),
            refused,
            match &r.divergence {
                None => format!("one chain ({} heights)", r.heights_compared),
                Some(d) => format!("FORK at height {}", d.height),
            }
        );
    }
    let _ = writeln!(
        s,
        "\nCommitted tx/s counts transactions in blocks that every node executed during the \
         measured window ({} s after {} s of warm-up); latency runs from the start of the \
         request that carried a transaction to the moment the last node executed its block.",
        report.runs.first().map_or(0.0, |r| r.duration_s),
        report.runs.first().map_or(0.0, |r| r.warmup_s),
    );
    let _ = writeln!(
        s,
        "\nWhere the latency goes (medians of each stage, ms; the proposer's clock marks the \
         proposal):\n\n| n | offered | request → proposal | proposal → first node executed | \
         first → last node |\n|---|---|---|---|---|"
    );
    for r in &report.runs {
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.0} | {:.0} |",
            r.validators,
            offered(r),
            r.latency_split_ms.to_proposal,
            r.latency_split_ms.proposal_to_first_commit,
            r.latency_split_ms.first_to_last_commit,
        );
    }
    s
}

fn by_validators(report: &BenchReport) -> Vec<(usize, Vec<&RunResult>)> {
    let mut groups: Vec<(usize, Vec<&RunResult>)> = Vec::new();
    for r in &report.runs {
        match groups.iter_mut().find(|(n, _)| *n == r.validators) {
            Some((_, v)) => v.push(r),
            None => groups.push((r.validators, vec![r])),
        }
    }
    groups
}

fn throughput_vs_load(report: &BenchReport) -> String {
    let series = by_validators(report)
        .into_iter()
        .map(|(n, runs)| Series {
            name: format!("n = {n}"),
            points: runs.iter().map(|r| (r.sent_tps, r.committed_tps)).collect(),
        })
        .collect();
    LineChart {
        title: "Committed throughput vs offered load".into(),
        x_label: "sent (tx/s)".into(),
        y_label: "committed on every node (tx/s)".into(),
        series,
        markers: Vec::new(),
        y_from_zero: true,
    }
    .to_svg()
}

fn latency_vs_load(report: &BenchReport) -> String {
    let mut series = Vec::new();
    for (n, runs) in by_validators(report) {
        for (name, pick) in [
            (
                "p50",
                (|r: &RunResult| r.latency_ms.p50) as fn(&RunResult) -> f64,
            ),
            ("p90", |r: &RunResult| r.latency_ms.p90),
            ("p99", |r: &RunResult| r.latency_ms.p99),
        ] {
            series.push(Series {
                name: format!("n = {n} {name}"),
                points: runs.iter().map(|r| (r.sent_tps, pick(r))).collect(),
            });
        }
    }
    LineChart {
        title: "Submit→commit latency vs offered load".into(),
        x_label: "sent (tx/s)".into(),
        y_label: "latency (ms)".into(),
        series,
        markers: Vec::new(),
        y_from_zero: true,
    }
    .to_svg()
}

fn throughput_over_time(report: &BenchReport) -> String {
    let series = report
        .runs
        .iter()
        .map(|r| Series {
            name: format!("n = {} @ {}", r.validators, offered(r)),
            points: r.timeline.clone(),
        })
        .collect();
    let warmup = report.runs.first().map_or(0.0, |r| r.warmup_s);
    LineChart {
        title: "Throughput over time".into(),
        x_label: "seconds since the load started".into(),
        y_label: "committed on every node (tx/s)".into(),
        series,
        markers: vec![(warmup, "end of warm-up".into())],
        y_from_zero: true,
    }
    .to_svg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_node::version::{GIT_COMMIT, VERSION};

    #[test]
    fn the_report_names_the_version_and_commit_that_measured() {
        let dir = tempfile::tempdir().unwrap();
        let report = BenchReport::new("phalanx bench --quick".into());
        let summary = write(&report, dir.path()).unwrap();
        let md = std::fs::read_to_string(dir.path().join("bench.md")).unwrap();
        assert_eq!(md, summary);
        let header: Vec<&str> = md.lines().skip(2).take(3).map(str::trim_end).collect();
        assert_eq!(header[0], "Command: `phalanx bench --quick`");
        assert_eq!(
            header[1],
            format!("Binary: phalanx {VERSION} (git commit {GIT_COMMIT})")
        );
        assert!(header[2].starts_with("Machine: "), "{md}");

        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("bench.json")).unwrap())
                .unwrap();
        assert_eq!(json["version"], VERSION);
        assert_eq!(json["git_commit"], GIT_COMMIT);
        assert!(!VERSION.is_empty() && !GIT_COMMIT.is_empty());
    }
}
