//! The part of running a consensus engine that the node and the simulator
//! share, so that a simulated crash and restart goes through the same code,
//! with the same limits, as a real one (docs/architecture.md, "The node's
//! runtime" and "The simulator").
//!
//! - [`wal`]: the engine's persisted records in a [`phalanx_ledger::Store`]'s
//!   consensus column — one key per record that may be overwritten,
//!   pruning at a stable checkpoint — and reading them back on restart.
//! - [`restored`]: what an engine is rebuilt from after a restart.
//! - [`SYNC_MAX_BLOCKS`]: the most blocks one catch-up answer carries.
//! - [`registry`]: the engines this build runs, and the one match on the
//!   engine a genesis names.
//!
//! No async runtime, no network: the node's tokio driver and the
//! simulator's event loop each call into this crate from their own loop.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod registry;
pub mod wal;

pub use wal::{Wal, WalError};

use phalanx_consensus::{Record, Restored};
use phalanx_crypto::Hash;
use phalanx_ledger::{Block, Height};

/// The most blocks one catch-up answer carries, in the node's sync
/// protocol and in the simulator alike (engines ask for more when an
/// answer is this long).
pub const SYNC_MAX_BLOCKS: u64 = phalanx_consensus::SYNC_MAX_BLOCKS;

/// What an engine is rebuilt from: its records as the log returned them
/// (key order, overwritten and pruned: not the order written), the last
/// stored block, and the stored blocks above the last stable checkpoint
/// among the records (at most `window` of them), read with `block`.
pub fn restored<R: Record>(
    records: Vec<R>,
    last_executed: Height,
    last_block_hash: Hash,
    window: u64,
    mut block: impl FnMut(Height) -> Option<Block>,
) -> Restored<R> {
    let recent_blocks = Restored::recent_heights(&records, last_executed, window)
        .filter_map(|h| block(Height(h)))
        .collect();
    Restored {
        records,
        last_executed,
        last_block_hash,
        recent_blocks,
    }
}
