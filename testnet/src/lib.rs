//! Phalanx's tools around the node: the Two/Byzantine Generals demo, the
//! deterministic simulator, fault injection and benchmarks.
//!
//! This crate never links the node runtime; it drives real nodes as processes
//! over their HTTP API, and runs the consensus engines in-process only in the
//! simulator.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod chart;
pub mod generals;
pub mod progress;
pub mod sim;
