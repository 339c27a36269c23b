//! `phalanx faults`: break real nodes on purpose and measure what Byzantine
//! tolerance buys. The same signed-transfer workload runs over a matrix of
//! {PBFT n = 4, 7; CFT n = 3, 5} × {no fault, f crashed, f paused then
//! resumed, f silent, f equivocating, f invalid-signature, a partition that
//! heals}; each cell reports throughput, latency, view changes or
//! elections, recovery time, evidence and a safety verdict from comparing
//! every honest node's chain height by height.
//!
//! The cells launch testnets with `phalanx bench`'s cluster, load and
//! observers; faults come from outside the nodes (SIGKILL, SIGSTOP/SIGCONT)
//! or through each node's fault-injection admin routes (behaviours,
//! transport-level partitions). This module never changes how an honest
//! node works.

mod cell;
mod report;

use phalanx_consensus::FaultModel;
use phalanx_ledger::EngineKind;
use phalanx_runtime::registry;
use serde::Serialize;
use std::path::PathBuf;

pub use cell::CellResult;

/// One testnet shape of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Setup {
    /// The engine.
    pub consensus: EngineKind,
    /// Validators.
    pub n: u32,
}

impl Setup {
    /// The faults its engine tolerates (setups are parsed from runnable
    /// engines only).
    pub fn model(&self) -> FaultModel {
        registry::fault_model(self.consensus).unwrap_or(FaultModel::Byzantine)
    }

    /// Faults tolerated: ⌊(n−1)/3⌋ Byzantine, ⌊(n−1)/2⌋ crashed.
    pub fn f(&self) -> u32 {
        self.model().max_faulty(self.n as usize) as u32
    }

    /// `pbft-4`, `cft-3`, ...
    pub fn name(&self) -> String {
        format!("{}-{}", self.consensus, self.n)
    }

    /// `PBFT n=4`, `PBFT+PoS n=4`, for tables and charts.
    pub fn label(&self) -> String {
        let name = self.consensus.name().to_uppercase();
        format!(
            "{} n={}",
            name.replace("POW", "PoW").replace("POS", "PoS"),
            self.n
        )
    }
}

impl std::str::FromStr for Setup {
    type Err = String;
    fn from_str(s: &str) -> Result<Setup, String> {
        let bad = || {
            format!(
                "setup {s:?}: write ENGINE-N, e.g. pbft-4, pbft-7, cft-3, cft-5, pow-4, pos-4 \
                 (PBFT needs n >= 4, CFT n >= 3)"
            )
        };
        let (engine, n) = s.trim().split_once('-').ok_or_else(bad)?;
        let n: u32 = n.parse().map_err(|_| bad())?;
        let consensus = registry::parse(engine).map_err(|e| format!("{}: {e}", bad()))?;
        let min = registry::fault_model(consensus)
            .map_err(|e| e.to_string())?
            .min_validators() as u32;
        if !(min..=16).contains(&n) {
            return Err(bad());
        }
        Ok(Setup { consensus, n })
    }
}

/// One fault of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Nothing breaks (the baseline).
    None,
    /// f nodes SIGKILLed (restarted after `--restart-after`, if given).
    Crash,
    /// f nodes SIGSTOPped, SIGCONTed later.
    Pause,
    /// f nodes stop sending consensus messages.
    Silent,
    /// f nodes equivocate (the primary/leader among them).
    Equivocate,
    /// f nodes sign everything wrongly.
    BadSig,
    /// The f nodes with the primary/leader are cut off from the rest, then healed.
    Partition,
    /// f validators (the primary/leader first) start a second process
    /// with the same keys and an empty database (Twins).
    Twins,
    /// f+1 nodes (the primary first) SIGKILLed, restarted at the heal:
    /// no quorum is left, PBFT alone halts.
    QuorumCrash,
    /// The validators split in two halves (2|2 at n = 4), neither holding
    /// a quorum; healed later. Load goes to both halves.
    QuorumPartition,
}

/// Every fault, in table order.
pub const ALL_FAULTS: [Fault; 10] = [
    Fault::None,
    Fault::Crash,
    Fault::Pause,
    Fault::Silent,
    Fault::Equivocate,
    Fault::BadSig,
    Fault::Partition,
    Fault::Twins,
    Fault::QuorumCrash,
    Fault::QuorumPartition,
];

impl Fault {
    /// The name on the command line and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Crash => "crash",
            Fault::Pause => "pause",
            Fault::Silent => "silent",
            Fault::Equivocate => "equivocate",
            Fault::BadSig => "bad-sig",
            Fault::Partition => "partition",
            Fault::Twins => "twins",
            Fault::QuorumCrash => "quorum-crash",
            Fault::QuorumPartition => "quorum-partition",
        }
    }

    /// What the cell does, for the table.
    pub fn describe(self) -> &'static str {
        match self {
            Fault::None => "no fault",
            Fault::Crash => "f crashed",
            Fault::Pause => "f paused, resumed",
            Fault::Silent => "f silent",
            Fault::Equivocate => "f equivocating",
            Fault::BadSig => "f invalid signatures",
            Fault::Partition => "partition, healed",
            Fault::Twins => "f run twice (twins)",
            Fault::QuorumCrash => "f+1 crashed, then restarted",
            Fault::QuorumPartition => "partition without a quorum, healed",
        }
    }

    /// Whether the fault leaves no quorum: PBFT alone halts until the heal,
    /// PBFT with a fallback makes tentative blocks.
    pub fn loses_quorum(self) -> bool {
        matches!(self, Fault::QuorumCrash | Fault::QuorumPartition)
    }

    /// Whether the faulty nodes are Byzantine (their chains are not
    /// compared: a liar's own chain proves nothing).
    pub fn byzantine(self) -> bool {
        matches!(
            self,
            Fault::Silent | Fault::Equivocate | Fault::BadSig | Fault::Twins
        )
    }
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Fault, String> {
        ALL_FAULTS
            .into_iter()
            .find(|f| f.name() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown fault {s:?}; choose from none, crash, pause, silent, equivocate, \
                     bad-sig, partition, twins, quorum-crash, quorum-partition"
                )
            })
    }
}

/// `phalanx faults` arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  phalanx faults                                   the whole matrix (28 cells, about 17 minutes)
  phalanx faults --quick                           3 cells in well under a minute (what CI runs)
  phalanx faults --setups pbft-4,cft-3 --faults none,crash,equivocate --duration 10
  phalanx faults --fallback                        PBFT alone vs PBFT+PoW vs PBFT+PoS without a
                                                   quorum (6 cells, about 7 minutes)

Faults are injected on real processes: SIGKILL (crash), SIGSTOP/SIGCONT (pause), and
behaviours and partitions switched through each node's admin API (nodes are started
with --allow-fault-injection). Partitions are cut at the transport (libp2p refuses the
peers), because this machine offers network namespaces but no tc netem or iptables.

Output (--out, default ./faults-results): faults.md, faults.json, throughput.svg,
latency.svg, timeline-<setup>.svg, and finality-<fault>.svg for the cells without a
quorum. Exit status 1 if any PBFT cell loses agreement (on final blocks, for PBFT with
a fallback), the CFT equivocation cell does not fork, or PBFT with a fallback does not
finalize again after a quorum-loss cell heals.

Cells without a quorum (quorum-crash, quorum-partition) measure at least 50 s, so that
PBFT has time to give up (two view changes) and the fallback to make blocks.")]
pub struct FaultsArgs {
    /// A short run for CI: PBFT n=4 crash and equivocate, CFT n=3 equivocate.
    #[arg(long)]
    pub quick: bool,
    /// The cells where PBFT alone halts: pbft-4, pbft+pow-4 and pbft+pos-4
    /// × quorum-crash, quorum-partition (replaces --setups and --faults).
    #[arg(long, conflicts_with = "quick")]
    pub fallback: bool,
    /// Testnet shapes to run (ENGINE-N, comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "pbft-4,pbft-7,cft-3,cft-5"
    )]
    pub setups: Vec<Setup>,
    /// Faults to run (comma-separated): none, crash, pause, silent,
    /// equivocate, bad-sig, partition, twins, quorum-crash,
    /// quorum-partition (twins and the quorum-loss faults are not in the
    /// default matrix, which keeps the full run within 20 minutes).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "none,crash,pause,silent,equivocate,bad-sig,partition"
    )]
    pub faults: Vec<Fault>,
    /// Measured seconds per cell (the fault comes at 30 %, heals at 65 %).
    #[arg(long, value_name = "SECS", default_value_t = 20.0)]
    pub duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub warmup: f64,
    /// Offered load, transactions per second (open loop, to the nodes that
    /// stay correct).
    #[arg(long, value_name = "TX/S", default_value_t = 500.0)]
    pub rate: f64,
    /// Restart crashed nodes this many seconds after the crash (default: they stay down).
    #[arg(long, value_name = "SECS")]
    pub restart_after: Option<f64>,
    /// Funded accounts of each testnet.
    #[arg(long, default_value_t = 64)]
    pub accounts: u32,
    /// Where to write the report.
    #[arg(long, value_name = "DIR", default_value = "faults-results")]
    pub out: PathBuf,
    /// P2P port of node0 (node i: base+i, API base+100+i; cells rotate
    /// through base..base+49 and base+100..base+149; twins use
    /// base+200..base+249 and base+300..base+349).
    #[arg(long, default_value_t = 27500)]
    pub base_port: u16,
    /// Keep each cell's testnet directory (data and logs).
    #[arg(long)]
    pub keep_testnets: bool,
}

/// Everything `phalanx faults` measured.
#[derive(Clone, Debug, Serialize)]
pub struct FaultsReport {
    /// The command line.
    pub command: String,
    /// The phalanx version that measured.
    pub version: String,
    /// The git commit that phalanx was built from.
    pub git_commit: String,
    /// Where it ran.
    pub machine: crate::bench::Machine,
    /// How partitions were made.
    pub partition_method: String,
    /// Offered load, tx/s.
    pub rate: f64,
    /// Measured seconds per cell.
    pub duration_s: f64,
    /// One per cell.
    pub cells: Vec<CellResult>,
}

impl FaultsReport {
    /// An empty report of `command`, run on this machine by this binary.
    pub fn new(command: String, partition_method: String, rate: f64, duration_s: f64) -> Self {
        FaultsReport {
            command,
            version: phalanx_node::version::VERSION.into(),
            git_commit: phalanx_node::version::GIT_COMMIT.into(),
            machine: crate::bench::Machine::detect(),
            partition_method,
            rate,
            duration_s,
            cells: Vec::new(),
        }
    }
}

/// How partitions are made on this machine (checked, not assumed).
fn partition_method() -> String {
    let tc = std::process::Command::new("tc")
        .args(["qdisc", "show"])
        .output()
        .is_ok_and(|o| o.status.success());
    let netem = std::path::Path::new("/sys/module/sch_netem").exists();
    format!(
        "transport level: each node's libp2p allow-list drops and refuses the peers on the \
         other side (POST /admin/partition); network namespaces are available here but tc \
         {} and netem {} and iptables {}, so real packet-level partitions and delays were \
         not used",
        if tc { "exists" } else { "is missing" },
        if netem {
            "is loaded"
        } else {
            "is not available"
        },
        if which("iptables") || which("nft") {
            "exists"
        } else {
            "is missing"
        }
    )
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The cells the arguments ask for.
pub fn plan(args: &FaultsArgs) -> Vec<(Setup, Fault)> {
    if args.quick {
        let pbft = Setup {
            consensus: EngineKind::Pbft,
            n: 4,
        };
        let cft = Setup {
            consensus: EngineKind::Cft,
            n: 3,
        };
        return vec![
            (pbft, Fault::Crash),
            (pbft, Fault::Equivocate),
            (cft, Fault::Equivocate),
        ];
    }
    if args.fallback {
        let setups = [EngineKind::Pbft, EngineKind::PbftPow, EngineKind::PbftPos]
            .map(|consensus| Setup { consensus, n: 4 });
        return [Fault::QuorumCrash, Fault::QuorumPartition]
            .into_iter()
            .flat_map(|f| setups.map(|s| (s, f)))
            .collect();
    }
    args.setups
        .iter()
        .flat_map(|s| args.faults.iter().map(move |f| (*s, *f)))
        .collect()
}

/// Runs `phalanx faults`.
pub fn run(args: &FaultsArgs) -> anyhow::Result<()> {
    let mut args = args.clone();
    if args.quick {
        args.duration = 8.0;
        args.warmup = 1.0;
        args.rate = args.rate.min(300.0);
        args.accounts = args.accounts.min(32);
    }
    anyhow::ensure!(
        args.duration >= 3.0,
        "--duration must be at least 3 seconds (the fault comes at 30 % of it)"
    );
    anyhow::ensure!(
        args.warmup >= 0.0 && args.warmup.is_finite(),
        "--warmup must not be negative"
    );
    anyhow::ensure!(
        args.rate > 0.0 && args.rate <= 20_000.0,
        "--rate must be between 1 and 20000 tx/s"
    );
    anyhow::ensure!(args.accounts > 0, "--accounts must be at least 1");
    anyhow::ensure!(
        args.base_port >= 1024 && args.base_port <= 65_000,
        "--base-port must be between 1024 and 65000"
    );
    if let Some(r) = args.restart_after {
        anyhow::ensure!(
            r >= 0.0 && r.is_finite(),
            "--restart-after must not be negative"
        );
    }
    let cells = plan(&args);
    anyhow::ensure!(
        !cells.is_empty(),
        "no cells to run (--setups or --faults is empty)"
    );
    std::fs::create_dir_all(&args.out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", args.out.display()))?;
    let method = partition_method();
    let per_cell = |f: &Fault| args.warmup + cell::duration(&args, *f) + 12.0;
    let total: f64 = cells.iter().map(|(_, f)| per_cell(f)).sum();
    eprintln!(
        "==> {} cells, about {:.0} s each ({:.1} minutes); partitions: transport level",
        cells.len(),
        total / cells.len() as f64,
        total / 60.0
    );
    let mut report = FaultsReport::new(
        std::env::args().collect::<Vec<_>>().join(" "),
        method,
        args.rate,
        args.duration,
    );
    for (k, (setup, fault)) in cells.iter().enumerate() {
        let label = format!(
            "[{}/{}] {} · {}",
            k + 1,
            cells.len(),
            setup.label(),
            fault.describe()
        );
        let base = args.base_port + (k as u16 % 5) * 10;
        let result = cell::run(&args, *setup, *fault, base, &label)?;
        eprintln!("    {}", report::one_line(&result));
        report.cells.push(result);
        // Write as we go: a long run interrupted still leaves a report.
        report::write(&report, &args.out)?;
    }
    let summary = report::write(&report, &args.out)?;
    println!("{summary}");
    let mut failures = Vec::new();
    for c in &report.cells {
        if c.setup.model().byzantine() {
            if let Some(fork) = &c.fork {
                failures.push(format!(
                    "SAFETY: {} {}: honest nodes committed different blocks at height {}",
                    c.setup.label(),
                    c.fault.describe(),
                    fork.height
                ));
            }
        }
        if c.setup.model() == FaultModel::Hybrid
            && c.fault.loses_quorum()
            && c.finality
                .as_ref()
                .is_none_or(|f| f.finalize_again_ms.is_none())
        {
            failures.push(format!(
                "{} {}: PBFT did not finalize again within {} s of the heal",
                c.setup.label(),
                c.fault.describe(),
                cell::FINALITY_WAIT.as_secs()
            ));
        }
        if !c.setup.model().byzantine() && c.fault == Fault::Equivocate && c.fork.is_none() {
            failures.push(format!(
                "{} with an equivocating leader did not fork: the comparison expects it to",
                c.setup.label()
            ));
        }
    }
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
