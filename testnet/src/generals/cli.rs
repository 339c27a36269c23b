//! `phalanx generals two|byzantine`: the arguments, their validation into a
//! [`Scenario`] or [`TwoConfig`], and dispatch to the simulation and the
//! renderer. All output is built as a string so tests see exactly what the
//! terminal would.

use super::error::ConfigError;
use super::model::{om_total_messages, Algorithm, GeneralId, Order, Scenario, MAX_WORK};
use super::oral::run_om;
use super::report::{render_outcome, render_search, render_sweep};
use super::search::{run_cost, search, Coverage};
use super::signed::run_sm;
use super::strategy::{Strategy, STRATEGY_HELP};
use super::sweep::sweep;
use super::two::{simulate, TwoConfig};
use super::two_report::render_two;
use serde::Serialize;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Tables for an 80-column terminal.
    #[default]
    Table,
    /// Pretty-printed JSON.
    Json,
}

/// `phalanx generals` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum GeneralsCommand {
    /// Two Generals over a lossy messenger channel.
    ///
    /// For the protocols that attack after k = 0..K acknowledgements: how
    /// often both, neither, or one general alone attacks; then the
    /// last-message argument told on a concrete seeded run.
    Two(TwoArgs),
    /// Byzantine Generals: OM(m) oral and SM(m) signed messages.
    ///
    /// Lamport, Shostak & Pease 1982: one run of OM(m) (oral messages) or
    /// SM(m) (ed25519-signed messages), an exhaustive search over traitor
    /// placements and strategies (--exhaustive), or the N x M table of where
    /// agreement holds (--sweep).
    Byzantine(ByzantineArgs),
}

/// Arguments of `phalanx generals two`.
#[derive(Debug, Clone, clap::Args)]
pub struct TwoArgs {
    /// Probability that a messenger is lost, in [0, 1].
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    pub loss: f64,
    /// Largest number of acknowledgements K: protocols k = 0..=K are run.
    #[arg(long = "max-acks", short = 'k', default_value_t = 4)]
    pub max_acks: usize,
    /// Runs of each protocol.
    #[arg(long, default_value_t = 10_000)]
    pub trials: u64,
    /// Seed of the messengers' fate.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Arguments of `phalanx generals byzantine`.
#[derive(Debug, Clone, clap::Args)]
pub struct ByzantineArgs {
    /// N, the number of generals including the commander G0 (with --sweep:
    /// the largest N in the table, default 10).
    #[arg(long, required_unless_present = "sweep")]
    pub generals: Option<usize>,
    /// M, the number of traitors; the algorithm runs with m = M (with
    /// --sweep: the largest M in the table, default 3).
    #[arg(long, required_unless_present = "sweep")]
    pub traitors: Option<usize>,
    /// The commander G0 is one of the traitors (the others are the
    /// highest-numbered lieutenants unless --traitor-ids says otherwise).
    #[arg(long, conflicts_with_all = ["exhaustive", "sweep"])]
    pub commander_traitor: bool,
    /// Which generals are traitors, comma-separated (0 = commander). Default:
    /// the highest-numbered lieutenants.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["exhaustive", "sweep"])]
    pub traitor_ids: Vec<usize>,
    /// Traitor strategy: lie|split|silent|random (more with --help), one for
    /// all traitors or a comma-separated list, one per traitor.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "lie",
        long_help = STRATEGY_HELP,
        conflicts_with_all = ["exhaustive", "sweep"]
    )]
    pub strategy: Vec<Strategy>,
    /// Which algorithm runs.
    #[arg(long, value_enum, default_value_t = Algorithm::Om)]
    pub algorithm: Algorithm,
    /// The order a loyal commander gives.
    #[arg(long, value_enum, default_value_t = Order::Attack, conflicts_with_all = ["exhaustive", "sweep"])]
    pub order: Order,
    /// The m of OM(m)/SM(m) when it should differ from M (at most N-2).
    #[arg(long, conflicts_with_all = ["exhaustive", "sweep"])]
    pub depth: Option<usize>,
    /// Seed of the random strategy.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Show who told whom what, round by round.
    #[arg(long)]
    pub trace: bool,
    /// Run every traitor placement x every combination of strategies from
    /// the 25-strategy space (see --strategy) x both orders, and report
    /// whether IC1 and IC2 held in all, with a counterexample if not.
    #[arg(long, conflicts_with = "sweep")]
    pub exhaustive: bool,
    /// Print the N x M table of where OM(M) and SM(M) reach agreement.
    #[arg(long)]
    pub sweep: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Runs a `phalanx generals` subcommand and prints its output.
pub fn run(cmd: &GeneralsCommand) -> anyhow::Result<()> {
    print!("{}", execute(cmd)?);
    Ok(())
}

/// Runs a `phalanx generals` subcommand and returns what [`run`] prints.
pub fn execute(cmd: &GeneralsCommand) -> anyhow::Result<String> {
    match cmd {
        GeneralsCommand::Two(args) => {
            let report = simulate(&TwoConfig {
                loss: args.loss,
                max_acks: args.max_acks,
                trials: args.trials,
                seed: args.seed,
            })?;
            output(args.format, &report, || render_two(&report))
        }
        GeneralsCommand::Byzantine(args) if args.sweep => {
            let report = sweep(args.generals.unwrap_or(10), args.traitors.unwrap_or(3))?;
            output(args.format, &report, || render_sweep(&report))
        }
        GeneralsCommand::Byzantine(args) if args.exhaustive => {
            let generals = args
                .generals
                .ok_or(ConfigError::Missing { flag: "--generals" })?;
            let traitors = args
                .traitors
                .ok_or(ConfigError::Missing { flag: "--traitors" })?;
            let report = search(args.algorithm, generals, traitors, Coverage::Full)?;
            output(args.format, &report, || render_search(&report, args.trace))
        }
        GeneralsCommand::Byzantine(args) => {
            let scenario = scenario(args)?;
            let mut outcome = match args.algorithm {
                Algorithm::Om => run_om(&scenario),
                Algorithm::Sm => run_sm(&scenario),
            };
            if !args.trace {
                outcome.messages.clear();
            }
            output(args.format, &outcome, || {
                render_outcome(&outcome, args.trace)
            })
        }
    }
}

fn output<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce() -> String,
) -> anyhow::Result<String> {
    Ok(match format {
        Format::Table => table(),
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
    })
}

/// The scenario a single `byzantine` run describes, with every argument
/// checked.
pub fn scenario(args: &ByzantineArgs) -> Result<Scenario, ConfigError> {
    let generals = args
        .generals
        .ok_or(ConfigError::Missing { flag: "--generals" })?;
    let traitors = args
        .traitors
        .ok_or(ConfigError::Missing { flag: "--traitors" })?;
    if generals < 2 {
        return Err(ConfigError::TooFewGenerals { generals });
    }
    if traitors >= generals {
        return Err(ConfigError::TooManyTraitors { traitors, generals });
    }
    if args.commander_traitor && traitors == 0 {
        return Err(ConfigError::CommanderTraitorWithoutTraitors);
    }
    let ids = traitor_ids(args, generals, traitors)?;
    let strategies: Vec<Strategy> = match args.strategy.len() {
        _ if traitors == 0 => Vec::new(),
        1 => vec![args.strategy[0]; traitors],
        n if n == traitors => args.strategy.clone(),
        n => {
            return Err(ConfigError::StrategyCountMismatch {
                listed: n,
                traitors,
            })
        }
    };
    let assignment: Vec<(GeneralId, Strategy)> = ids.into_iter().zip(strategies).collect();
    let scenario = match args.depth {
        Some(m) => Scenario::with_depth(generals, m, args.order, &assignment, args.seed)?,
        None => Scenario::new(generals, args.order, &assignment, args.seed)?,
    };
    let work = match args.algorithm {
        Algorithm::Om => om_total_messages(generals, scenario.m()),
        Algorithm::Sm => run_cost(Algorithm::Sm, generals, scenario.m()),
    };
    if work > MAX_WORK {
        return Err(ConfigError::TooMuchWork {
            what: format!("{} with N={generals}", args.algorithm.label(scenario.m())),
            work,
            limit: MAX_WORK,
        });
    }
    Ok(scenario)
}

/// The traitors' ids, sorted: `--traitor-ids` checked, or the default
/// placement (the highest-numbered lieutenants, plus G0 with
/// `--commander-traitor`).
fn traitor_ids(
    args: &ByzantineArgs,
    generals: usize,
    traitors: usize,
) -> Result<Vec<GeneralId>, ConfigError> {
    if args.traitor_ids.is_empty() {
        let lieutenants = if args.commander_traitor {
            traitors - 1
        } else {
            traitors
        };
        let mut ids: Vec<GeneralId> = Vec::with_capacity(traitors);
        if args.commander_traitor {
            ids.push(GeneralId::COMMANDER);
        }
        ids.extend((generals - lieutenants..generals).map(|i| GeneralId(i as u16)));
        return Ok(ids);
    }
    let mut ids: Vec<usize> = Vec::with_capacity(args.traitor_ids.len());
    for &id in &args.traitor_ids {
        if id >= generals {
            return Err(ConfigError::TraitorIdOutOfRange { id, generals });
        }
        if ids.contains(&id) {
            return Err(ConfigError::DuplicateTraitorId { id });
        }
        ids.push(id);
    }
    if ids.len() != traitors {
        return Err(ConfigError::TraitorCountMismatch {
            listed: ids.len(),
            traitors,
        });
    }
    if args.commander_traitor && !ids.contains(&0) {
        return Err(ConfigError::CommanderNotListed);
    }
    ids.sort_unstable();
    Ok(ids.into_iter().map(|i| GeneralId(i as u16)).collect())
}
