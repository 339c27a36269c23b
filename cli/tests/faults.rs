//! `phalanx faults --quick` end to end, on real node processes: PBFT n = 4
//! with its primary crashed, PBFT n = 4 with its primary equivocating, and
//! the CFT baseline (n = 3) with its leader equivocating. PBFT must keep one
//! chain and keep committing; CFT must fork; the report must be complete.

use serde_json::Value;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_phalanx");

/// Ports from the pid, apart from the bench test's (12000 + pid%35*200).
fn base_port() -> u16 {
    20_000 + (std::process::id() % 40) as u16 * 250
}

/// One fault run at a time: they would compete for ports and for two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `phalanx <args> --out <out>`, asserts it succeeded, returns its
/// stdout, its stderr and the parsed `faults.json`.
fn run_faults(args: &[&str], out: &std::path::Path) -> (String, String, Value) {
    let run = Command::new(BIN)
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "faults failed:\n{stdout}\n{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("faults.json")).unwrap()).unwrap();
    (stdout, stderr, report)
}

fn well_formed_svg(text: &str) -> bool {
    let t = text.trim();
    let opens = t.matches("<svg").count();
    let closes = t.matches("</svg>").count();
    (t.starts_with("<svg") || t.starts_with("<?xml"))
        && t.ends_with("</svg>")
        && opens == closes
        && opens >= 1
        && t.matches("<text").count() == t.matches("</text>").count()
        && !t.contains("NaN")
}

#[test]
fn quick_fault_matrix_pbft_survives_and_cft_forks() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let (stdout, stderr, report) = run_faults(
        &["faults", "--quick", "--base-port", &base_port().to_string()],
        &out,
    );
    let cells = report["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3, "{report}");
    assert!(report["partition_method"]
        .as_str()
        .unwrap()
        .contains("transport"));

    for c in cells {
        let engine = c["setup"]["consensus"].as_str().unwrap();
        let fault = c["fault"].as_str().unwrap();
        assert_eq!(c["faulty_nodes"].as_array().unwrap().len(), 1, "{c}");
        if engine == "pbft" {
            // One chain on every honest node, compared height by height.
            assert!(c["fork"].is_null(), "PBFT forked: {c}");
            assert!(c["heights_compared"].as_u64().unwrap() > 5, "{c}");
            assert!(c["nodes_compared"].as_array().unwrap().len() >= 3, "{c}");
            // It keeps committing with f = 1 faulty node: blocks proposed
            // after the fault commit on every live node, after one view
            // change away from the faulty primary.
            assert!(
                c["recovery_ms"].as_f64().is_some(),
                "no commit after the fault: {c}"
            );
            assert!(c["view_changes"].as_u64().unwrap() >= 1, "{c}");
            assert!(c["committed_tps"].as_f64().unwrap() > 20.0, "{c}");
            let after_fault: f64 = c["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p[0].as_f64().unwrap() > 0.0)
                .map(|p| p[1].as_f64().unwrap())
                .sum();
            assert!(after_fault > 0.0, "nothing committed after the fault: {c}");
            if fault == "equivocate" {
                // Caught: evidence stored and the primary marked faulty.
                assert!(c["evidence"].as_u64().unwrap() >= 1, "{c}");
                let faulty = &c["faulty_nodes"][0];
                assert!(
                    c["marked_faulty"].as_array().unwrap().contains(faulty),
                    "{c}"
                );
            } else {
                assert_eq!(fault, "crash");
                assert_eq!(c["evidence"], 0, "a crash is no equivocation: {c}");
            }
        } else {
            assert_eq!((engine, fault), ("cft", "equivocate"));
            let fork = &c["fork"];
            assert!(
                fork.is_object(),
                "CFT did not fork under a lying leader: {c}"
            );
            assert!(fork["height"].as_u64().unwrap() >= 1);
            assert_ne!(fork["a"][1], fork["b"][1]);
            // The fork is between the two honest followers.
            let liar = &c["faulty_nodes"][0];
            assert_ne!(&fork["a"][0], liar);
            assert_ne!(&fork["b"][0], liar);
        }
    }

    let md = std::fs::read_to_string(out.join("faults.md")).unwrap();
    for needle in [
        "| setup | fault |",
        "PBFT n=4",
        "CFT n=3",
        "FORK at",
        "one chain",
        "quorum",
        "n > 3f",
    ] {
        assert!(md.contains(needle), "faults.md lacks {needle:?}:\n{md}");
    }
    assert!(stdout.contains("| setup | fault |"), "{stdout}");
    // The binary that measured: its version and commit, in both reports.
    assert_eq!(report["version"], env!("CARGO_PKG_VERSION"));
    let commit = report["git_commit"].as_str().unwrap();
    assert!(!commit.is_empty());
    let binary = format!(
        "Binary: phalanx {} (git commit {commit})",
        env!("CARGO_PKG_VERSION")
    );
    assert!(md.contains(&binary), "{md}");
    // stderr is a pipe here: plain progress lines naming each cell, no bar.
    for cell in [
        "faults [1/3] PBFT n=4 · f crashed: ",
        "faults [2/3] PBFT n=4 · f equivocating: ",
        "faults [3/3] CFT n=3 · f equivocating: ",
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(cell) && l.contains(" s, committed ")),
            "no progress line for {cell:?}:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "{stderr:?}"
    );
    for svg in [
        "throughput.svg",
        "latency.svg",
        "timeline-pbft-4.svg",
        "timeline-cft-3.svg",
    ] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(well_formed_svg(&text), "{svg} is not a well-formed SVG");
        assert!(!text.contains("no data"), "{svg} is empty");
    }
    // The cells' testnets were stopped and removed.
    let left = out.join("testnets");
    let leftovers = std::fs::read_dir(&left).map_or(0, |d| d.count());
    assert_eq!(leftovers, 0);
}

/// The longest-chain rows (issue 19) on real processes: PoW n = 4 split
/// 2|2 and healed — both halves mine, the report shows one chain (below
/// the tentative tip) and the reorg the losing half went through; PoS
/// n = 4 with an equivocating leader — evidence, and its stake slashed.
#[test]
fn longest_chain_rows_show_the_reorg_after_a_partition_and_the_slashing() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let base = base_port().to_string();
    let (_, _, report) = run_faults(
        &[
            "faults",
            "--setups",
            "pow-4",
            "--faults",
            "partition",
            // A split of about 14 s: each half mines several blocks of its
            // own (at about half a block a second each, a half that finds
            // none has a chance of e^-7).
            "--duration",
            "40",
            "--warmup",
            "1",
            "--rate",
            "50",
            "--base-port",
            &base,
        ],
        &out,
    );
    let c = &report["cells"][0];
    assert_eq!(
        c["faulty_nodes"].as_array().unwrap().len(),
        2,
        "a 2|2 split: {c}"
    );
    assert!(c["fork"].is_null(), "{c}");
    assert!(c["heights_compared"].as_u64().unwrap() >= 3, "{c}");
    assert!(
        c["reorgs"].as_u64().unwrap() >= 1,
        "no reorg after the heal: {c}"
    );
    assert!(c["deepest_reorg"].as_u64().unwrap() >= 1, "{c}");
    let md = std::fs::read_to_string(out.join("faults.md")).unwrap();
    assert!(md.contains("reorg(s), deepest"), "{md}");
    assert!(md.contains("Longest chains converge"), "{md}");

    let out = dir.path().join("results-pos");
    let (_, _, report) = run_faults(
        &[
            "faults",
            "--setups",
            "pos-4",
            "--faults",
            "equivocate",
            "--duration",
            "16",
            "--warmup",
            "1",
            "--rate",
            "50",
            "--base-port",
            &base,
        ],
        &out,
    );
    let c = &report["cells"][0];
    assert!(c["fork"].is_null(), "{c}");
    assert!(c["evidence"].as_u64().unwrap() >= 1, "{c}");
    let faulty = &c["faulty_nodes"][0];
    assert!(c["slashed"].as_array().unwrap().contains(faulty), "{c}");
}

/// The cells where PBFT alone halts (issue 20), on real processes: f+1 of
/// 4 validators SIGKILLed, restarted after about 17 s. PBFT alone makes no
/// block in the outage and commits again after the restart; PBFT+PoS
/// makes tentative blocks on the two survivors and, once the quorum is
/// back, finalizes them: every node ends with nothing tentative, one final
/// chain, and the report has the table and the chart.
#[test]
fn without_a_quorum_pbft_alone_halts_and_pbft_with_a_fallback_finalizes_after() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let (stdout, _, report) = run_faults(
        &[
            "faults",
            "--setups",
            "pbft-4,pbft+pos-4",
            "--faults",
            "quorum-crash",
            "--duration",
            "50",
            "--warmup",
            "1",
            "--rate",
            "50",
            "--base-port",
            &base_port().to_string(),
        ],
        &out,
    );
    let cells = report["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2, "{report}");
    for c in cells {
        assert_eq!(c["faulty_nodes"].as_array().unwrap().len(), 2, "f+1: {c}");
        assert!(c["fork"].is_null(), "{c}");
        let fin = &c["finality"];
        assert!(
            fin["finalize_again_ms"].is_number(),
            "not final again after the restart: {c}"
        );
        assert!(
            fin["final_at_end"].as_u64().unwrap() > fin["final_at_fault"].as_u64().unwrap(),
            "{fin}"
        );
    }
    let (alone, hybrid) = (&cells[0]["finality"], &cells[1]["finality"]);
    assert_eq!(cells[0]["setup"]["consensus"], "pbft", "{report}");
    assert_eq!(alone["tentative_blocks"], 0, "PBFT alone halts: {alone}");
    assert_eq!(alone["max_finality_lag"], 0, "{alone}");
    assert_eq!(cells[1]["setup"]["consensus"], "pbft+pos", "{report}");
    assert!(
        hybrid["tentative_blocks"].as_u64().unwrap() >= 1,
        "the fallback made no block in the outage: {hybrid}"
    );
    // The heights over time show the head running ahead of the final
    // height during the outage, and both meeting again by the end.
    let heights = hybrid["heights"].as_array().unwrap();
    assert!(
        heights.iter().any(|p| p[1].as_u64() > p[2].as_u64()),
        "{hybrid}"
    );
    let last = heights.last().unwrap();
    assert_eq!(
        last[1], last[2],
        "tentative blocks left at the end: {hybrid}"
    );

    let md = std::fs::read_to_string(out.join("faults.md")).unwrap();
    assert!(md.contains("## Without a quorum"), "{md}");
    assert!(md.contains("PBFT alone halts without a quorum"), "{md}");
    assert!(md.contains("PBFT with a fallback keeps going"), "{md}");
    assert!(
        stdout.contains("tentative blocks in the outage"),
        "{stdout}"
    );
    let svg = std::fs::read_to_string(out.join("finality-quorum-crash.svg")).unwrap();
    assert!(well_formed_svg(&svg), "{svg}");
    assert!(svg.contains("PBFT+PoS n=4 head"), "{svg}");
}

#[test]
fn bad_fault_arguments_are_refused_with_a_clear_message() {
    for (args, expect) in [
        (&["faults", "--setups", "pbft-3"][..], "pbft-4"),
        (&["faults", "--faults", "meteor"], "unknown fault"),
        (&["faults", "--duration", "1"], "--duration"),
        (&["faults", "--rate", "0"], "--rate"),
        (&["faults", "--fallback", "--quick"], "cannot be used with"),
        (
            &["node", "--home", "/nonexistent", "--behaviour", "lying"],
            "honest, silent",
        ),
        (
            &[
                "node",
                "--home",
                "/nonexistent",
                "--behaviour",
                "delay:soon",
            ],
            "delay:200",
        ),
    ] {
        let run = Command::new(BIN).args(args).output().unwrap();
        assert!(!run.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

/// Twins: the primary's keys run in a second process started mid-run.
/// PBFT must keep one chain on the honest nodes and keep committing.
#[test]
fn pbft_keeps_one_chain_when_its_primary_runs_twice() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    // Below the ephemeral range and clear of the other tests' ports.
    let base = 3_000 + (std::process::id() % 20) as u16 * 400;
    let base = base.to_string();
    let (_, _, report) = run_faults(
        &[
            "faults",
            "--setups",
            "pbft-4",
            "--faults",
            "twins",
            "--duration",
            "8",
            "--warmup",
            "1",
            "--rate",
            "300",
            "--base-port",
            &base,
            "--keep-testnets",
        ],
        &out,
    );
    let c = &report["cells"][0];
    assert_eq!(c["fault"], "twins", "{c}");
    assert_eq!(c["faulty_nodes"], serde_json::json!([0]), "{c}");
    assert!(c["fork"].is_null(), "PBFT forked under Twins: {c}");
    assert!(c["nodes_compared"].as_array().unwrap().len() >= 3, "{c}");
    assert!(c["heights_compared"].as_u64().unwrap() > 5, "{c}");
    let after_fault: f64 = c["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0].as_f64().unwrap() > 0.0)
        .map(|p| p[1].as_f64().unwrap())
        .sum();
    assert!(after_fault > 0.0, "nothing committed after the twin: {c}");
    // The twin really ran, as validator 0.
    let log = std::fs::read_to_string(out.join("testnets/pbft-4-twins/logs/node0-twin.log"))
        .expect("the twin's log");
    assert!(log.contains("phalanx node started validator=0"), "{log}");
    let md = std::fs::read_to_string(out.join("faults.md")).unwrap();
    assert!(md.contains("Twins: one key, two processes"), "{md}");
}
