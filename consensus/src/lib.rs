//! Phalanx consensus engines: pure, deterministic state machines.
//!
//! Every engine implements [`Engine`]: `handle(now, Input) -> Vec<Output>`.
//! This crate depends on no async runtime, no network and no database, and
//! never reads a clock or a random source it was not handed — which is what
//! lets the simulator run the very code that ships.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cft;
pub mod chain;
pub mod config;
pub mod engine;
pub mod hybrid;
pub mod pbft;
pub mod pos;
pub mod pow;

pub use cft::messages::{CftMessage, CftRecord};
pub use cft::Cft;
pub use config::{Config, ConfigError, Quorums};
pub use engine::{
    Engine, EngineStatus, FaultModel, Input, Message, MineJob, Output, Promise, Protocol, Record,
    RecordKey, Restored, Statement, Summary, TimeoutKind, SYNC_MAX_BLOCKS,
};
pub use hybrid::{Hybrid, HybridMessage, HybridRecord, PbftPos, PbftPow};
pub use pbft::messages::PbftMessage;
pub use pbft::record::PbftRecord;
pub use pbft::Pbft;
pub use pos::{Pos, PosMessage, PosRecord};
pub use pow::{Pow, PowMessage, PowRecord};
