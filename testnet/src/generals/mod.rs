//! The Two Generals and Byzantine Generals demonstrations behind
//! `phalanx generals` (issue 7).
//!
//! - [`two`]: the Two Generals problem over a lossy channel — a family of
//!   acknowledgement protocols, their outcome frequencies, and the
//!   last-message argument on a concrete run.
//! - [`oral`] and [`signed`]: Lamport, Shostak and Pease's OM(m) and SM(m)
//!   ("The Byzantine Generals Problem", ACM TOPLAS 4(3), 1982), with traitors
//!   driven by the finite strategy space of [`strategy`] and real ed25519
//!   signature chains ([`chain`]).
//! - [`search`] and [`sweep`]: every placement and strategy for small N, and
//!   the N × M table that shows oral agreement exactly when N > 3M and signed
//!   agreement for every N ≥ M + 2.
//!
//! Everything here is deterministic given `--seed`, runs in one process, and
//! never touches the network, a clock or the node runtime.

pub mod chain;
mod cli;
pub mod error;
pub mod model;
pub mod oral;
pub mod outcome;
mod report;
pub mod rng;
pub mod search;
pub mod signed;
pub mod strategy;
pub mod sweep;
pub mod two;
mod two_report;

pub use cli::{execute, run, scenario, ByzantineArgs, Format, GeneralsCommand, TwoArgs};
pub use error::ConfigError;
pub use model::{Algorithm, GeneralId, Order, Scenario};
pub use report::MAX_WIDTH;
