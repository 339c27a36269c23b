//! Proof of work (issue 19), built in steps. So far the arithmetic every
//! PoW node must agree on: compact targets, the seal check, the work a
//! target stands for, median-time-past and the per-block retarget. The
//! engine (mining as an output the driver carries out, fork choice by
//! cumulative work) comes next, on the chain machinery it needs.

pub mod retarget;
pub mod work;

pub use retarget::{next_target, RetargetParams};
pub use work::{median_time_past, meets, seal_hash, work, Compact, CompactError, U256};
