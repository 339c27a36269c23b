//! Phalanx's testnet tools, run against real `phalanx node` processes:
//!
//! - [`testnet`]: `phalanx testnet init` and `twin`, the homes of a local or
//!   multi-host testnet (what `testnet/local.sh up` calls);
//! - [`bench`]: `phalanx bench`, throughput and latency of a testnet driven
//!   by pre-signed transfers;
//! - [`faults`]: `phalanx faults`, PBFT and the crash-fault baseline under
//!   crashes, pauses, Byzantine behaviours and partitions.
//!
//! They sit outside the validator (`phalanx-node`), which never imports them;
//! the charts and progress bars they draw are `phalanx_testnet::{chart,
//! progress}`, shared with the simulator and the generals demo.

#![forbid(unsafe_code)]

pub mod bench;
pub mod faults;
pub mod testnet;
