//! Why a generals command was refused: every bad argument becomes one of these
//! typed errors (and then an `anyhow` error with this message), never a panic.

/// A generals command's arguments do not describe a run we can do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// Fewer generals than a commander and one lieutenant.
    #[error("--generals must be at least 2 (a commander and one lieutenant), got {generals}")]
    TooFewGenerals {
        /// The number asked for.
        generals: usize,
    },
    /// More generals than the demo represents.
    #[error("--generals must be at most {max}, got {generals}")]
    TooManyGenerals {
        /// The number asked for.
        generals: usize,
        /// The largest supported number.
        max: usize,
    },
    /// At least one general must be loyal.
    #[error(
        "--traitors {traitors} must be less than --generals {generals} \
         (at least one general has to be loyal)"
    )]
    TooManyTraitors {
        /// Traitors asked for.
        traitors: usize,
        /// Generals in the run.
        generals: usize,
    },
    /// A `--traitor-ids` entry names no general.
    #[error(
        "--traitor-ids: general {id} does not exist; with --generals {generals} \
         the ids are 0..={last} (0 is the commander)",
        last = generals - 1
    )]
    TraitorIdOutOfRange {
        /// The bad id.
        id: usize,
        /// Generals in the run.
        generals: usize,
    },
    /// A `--traitor-ids` entry appears twice.
    #[error("--traitor-ids: general {id} is listed twice")]
    DuplicateTraitorId {
        /// The repeated id.
        id: usize,
    },
    /// `--traitor-ids` and `--traitors` disagree.
    #[error("--traitor-ids lists {listed} generals but --traitors is {traitors}")]
    TraitorCountMismatch {
        /// Ids listed.
        listed: usize,
        /// `--traitors`.
        traitors: usize,
    },
    /// `--commander-traitor` with a `--traitor-ids` list that omits 0.
    #[error("--commander-traitor is set but --traitor-ids does not include 0 (the commander)")]
    CommanderNotListed,
    /// `--commander-traitor` with no traitors at all.
    #[error("--commander-traitor needs --traitors of at least 1")]
    CommanderTraitorWithoutTraitors,
    /// `--strategy` gives a list whose length is neither 1 nor the traitor count.
    #[error(
        "--strategy lists {listed} strategies; give one for all traitors or \
         exactly one per traitor ({traitors})"
    )]
    StrategyCountMismatch {
        /// Strategies listed.
        listed: usize,
        /// Traitors in the run.
        traitors: usize,
    },
    /// The `m` of OM(m)/SM(m) needs more generals than there are.
    #[error(
        "--depth {m} needs at least {needed} generals (OM(m) and SM(m) relay \
         through m lieutenants), got {generals}",
        needed = m + 2
    )]
    DepthTooLarge {
        /// The requested m.
        m: usize,
        /// Generals in the run.
        generals: usize,
    },
    /// The run would send too many messages to simulate quickly.
    #[error(
        "{what} would take {work} message deliveries; the limit is {limit}. \
         Use fewer generals or traitors"
    )]
    TooMuchWork {
        /// What was asked for.
        what: String,
        /// Its cost in delivered messages.
        work: u128,
        /// The limit.
        limit: u128,
    },
    /// `--loss` is not a probability.
    #[error("--loss must be a probability in [0, 1], got {loss}")]
    LossOutOfRange {
        /// The value given.
        loss: f64,
    },
    /// `--trials 0`.
    #[error("--trials must be at least 1")]
    NoTrials,
    /// Too many trials.
    #[error("--trials must be at most {max}, got {trials}")]
    TooManyTrials {
        /// The value given.
        trials: u64,
        /// The largest supported value.
        max: u64,
    },
    /// `--max-acks` beyond what the table shows.
    #[error("--max-acks must be at most {max}, got {max_acks}")]
    TooManyAcks {
        /// The value given.
        max_acks: usize,
        /// The largest supported value.
        max: usize,
    },
    /// A sweep wider than an 80-column terminal.
    #[error("--sweep shows at most {max} traitor columns, got --traitors {traitors}")]
    SweepTooWide {
        /// `--traitors`.
        traitors: usize,
        /// The most columns.
        max: usize,
    },
    /// A single run without `--generals`/`--traitors`.
    #[error("{flag} is required (unless --sweep)")]
    Missing {
        /// The missing flag.
        flag: &'static str,
    },
}
