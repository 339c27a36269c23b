//! Proof of work: the engine ([`engine`]) and the arithmetic every PoW
//! node must agree on — compact targets, the seal, the work a target
//! stands for, median-time-past ([`work`]) and the per-block retarget
//! ([`retarget`]).

pub mod engine;
pub mod retarget;
pub mod work;

pub use engine::{block_id, Pow, PowCounters, PowMessage, PowRecord};
pub use retarget::{next_target, RetargetParams};
pub use work::{
    header_hash, median_time_past, meets, seal_hash, search, target_for_work, work, Compact,
    CompactError, U256,
};
