//! `phalanx bench --quick` end to end: it launches a 4-validator testnet,
//! drives it with pre-signed transfers, and writes a report whose figures
//! come from what every node committed.

use serde_json::Value;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_phalanx");

/// Ports from the pid, apart from the e2e test's (20000+) and below 32768.
fn base_port() -> u16 {
    12_000 + (std::process::id() % 35) as u16 * 200
}

/// Runs `phalanx bench --quick` with `args` into `out`; asserts it
/// succeeded and returns its stdout, its stderr and the parsed `bench.json`.
fn quick_bench(args: &[&str], port: u16, out: &std::path::Path) -> (String, String, Value) {
    let run = Command::new(BIN)
        .args(["bench", "--quick", "--min-tps", "50"])
        .args(args)
        .args(["--base-port", &port.to_string()])
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "bench failed:\n{stdout}\n{stderr}");
    let report =
        serde_json::from_str(&std::fs::read_to_string(out.join("bench.json")).unwrap()).unwrap();
    (stdout, stderr, report)
}

#[test]
fn quick_bench_commits_on_every_node_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let (stdout, stderr, report) = quick_bench(&["--rate", "400"], base_port(), &out);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(r["validators"], 4);
    assert!(r["divergence"].is_null(), "{r}");
    assert!(r["heights_compared"].as_u64().unwrap() > 0);
    // Every accepted transaction committed on all four nodes.
    assert!(r["accepted"].as_u64().unwrap() > 0);
    assert_eq!(r["committed"], r["accepted"], "{r}");
    assert!(r["rejected"].as_object().unwrap().is_empty(), "{r}");
    let tps = r["committed_tps"].as_f64().unwrap();
    assert!(tps > 50.0, "{tps}");
    // Latency: measured per transaction, ordered percentiles.
    assert!(r["latency_samples"].as_u64().unwrap() > 100);
    let lat = &r["latency_ms"];
    let (p50, p99) = (lat["p50"].as_f64().unwrap(), lat["p99"].as_f64().unwrap());
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= lat["max"].as_f64().unwrap());
    // Resources of every node, from /proc.
    let nodes = r["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4);
    for n in nodes {
        assert!(n["cpu_percent"].as_f64().unwrap() > 0.0, "{n}");
        assert!(n["peak_rss_mib"].as_f64().unwrap() > 1.0, "{n}");
    }
    assert!(!r["timeline"].as_array().unwrap().is_empty());

    let md = std::fs::read_to_string(out.join("bench.md")).unwrap();
    assert!(
        md.contains("committed tx/s") && md.contains("one chain"),
        "{md}"
    );
    // The binary that measured: its version and commit, in both reports.
    assert_eq!(report["version"], env!("CARGO_PKG_VERSION"));
    let commit = report["git_commit"].as_str().unwrap();
    assert!(!commit.is_empty());
    let binary = format!(
        "Binary: phalanx {} (git commit {commit})",
        env!("CARGO_PKG_VERSION")
    );
    assert!(md.contains(&binary), "{md}");
    // stderr is a pipe here: plain progress lines, no bar redrawn in place.
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("bench n=4 @ 400 tx/s: ")
                && l.contains("% ")
                && l.contains(" s, sent ")
                && l.contains(" tx/s, committed ")),
        "no progress line:\n{stderr}"
    );
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "{stderr:?}"
    );
    assert!(stdout.contains("# Phalanx benchmark"), "{stdout}");
    for svg in [
        "throughput-vs-load.svg",
        "latency-vs-load.svg",
        "throughput-over-time.svg",
    ] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(
            text.starts_with("<svg") || text.starts_with("<?xml"),
            "{svg}"
        );
        assert!(text.trim_end().ends_with("</svg>"), "{svg}");
        assert!(!text.contains("no data"), "{svg} is empty");
    }
    // The launched testnet is gone again (its processes were stopped).
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("testnet-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn bench_without_a_testnet_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = Command::new(BIN)
        .args(["bench", "--rate", "10", "--testnet"])
        .arg(dir.path().join("missing"))
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("testnet/local.sh up") && err.contains("--validators"),
        "{err}"
    );
}

#[test]
fn bench_refuses_nonsense_arguments() {
    for args in [
        &["bench", "--rate", "0", "--validators", "4"][..],
        &["bench", "--duration", "0", "--validators", "4"],
        &["bench", "--rate", "10", "--max"],
    ] {
        let run = Command::new(BIN).args(args).output().unwrap();
        assert!(!run.status.success(), "{args:?} was accepted");
        assert!(!run.stderr.is_empty());
    }
}

/// The crash-fault-tolerant baseline runs in real nodes too: a 3-validator
/// CFT testnet commits every accepted transfer on every node, one chain.
#[test]
fn quick_bench_runs_the_cft_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let (_, _, report) = quick_bench(
        &["--rate", "300", "--validators", "3", "--consensus", "cft"],
        base_port() + 20,
        &out,
    );
    let r = &report["runs"][0];
    assert_eq!(r["validators"], 3);
    assert!(r["divergence"].is_null(), "{r}");
    assert!(r["accepted"].as_u64().unwrap() > 0);
    assert_eq!(r["committed"], r["accepted"], "{r}");
}
