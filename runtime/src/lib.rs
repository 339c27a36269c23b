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

/// A block locator (Bitcoin's getheaders idea): the hashes of a chain's
/// blocks at heights `from − 1`, `from − 2`, `from − 4`, … down to
/// genesis, read with `hash_at`. A sync request carries it so that a
/// server on another branch can answer from the fork point at once.
pub fn locator(from: Height, hash_at: impl Fn(Height) -> Option<Hash>) -> Vec<(Height, Hash)> {
    let mut out = Vec::new();
    let mut step = 1u64;
    let mut next = from.0.checked_sub(1);
    while let Some(h) = next {
        if let Some(hash) = hash_at(Height(h)) {
            out.push((Height(h), hash));
        }
        if h == 0 {
            break;
        }
        next = Some(h.saturating_sub(step));
        step = step.saturating_mul(2);
    }
    out
}

/// Most locator entries a server reads (2^64 heights need 65).
pub const MAX_LOCATOR: usize = 80;

/// Where a sync server answers from: `from` as asked — unless its own
/// block just below `from` differs from the requester's (they are on two
/// branches), then just above the highest locator entry it shares. A
/// server that is behind, or on the same branch, changes nothing.
pub fn sync_start(
    from: Height,
    locator: &[(Height, Hash)],
    ours: impl Fn(Height) -> Option<Hash>,
) -> Height {
    let forked = locator
        .first()
        .is_some_and(|(h, hash)| h.next() == from && ours(*h).is_some_and(|o| o != *hash));
    if !forked {
        return from;
    }
    locator
        .iter()
        .take(MAX_LOCATOR)
        .find(|(h, hash)| *h < from && ours(*h) == Some(*hash))
        .map_or(from, |(h, _)| h.next())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(branch: u8, h: u64) -> Hash {
        let mut b = [branch; 32];
        b[..8].copy_from_slice(&h.to_be_bytes());
        Hash(b)
    }

    /// A chain of heights 0..=len, branch `b` above `fork`.
    fn chain(len: u64, fork: u64, b: u8) -> impl Fn(Height) -> Option<Hash> {
        move |h: Height| (h.0 <= len).then(|| hash(if h.0 > fork { b } else { 0 }, h.0))
    }

    #[test]
    fn a_locator_reaches_back_exponentially_to_genesis() {
        let heights: Vec<u64> = locator(Height(11), chain(10, 10, 0))
            .iter()
            .map(|(h, _)| h.0)
            .collect();
        assert_eq!(heights, vec![10, 9, 7, 3, 0]);
        assert!(locator(Height(0), chain(10, 10, 0)).is_empty());
    }

    #[test]
    fn a_server_on_another_branch_answers_from_the_fork_point() {
        // The requester has 0..=20 with its own branch above 12.
        let loc = locator(Height(21), chain(20, 12, 1));
        // Same branch, or behind: as asked.
        assert_eq!(sync_start(Height(21), &loc, chain(30, 12, 1)), Height(21));
        assert_eq!(sync_start(Height(21), &loc, chain(15, 12, 1)), Height(21));
        // Another branch above 12: from the highest shared entry + 1
        // (entries at 20, 19, 17, 13, 5, 0: 5 is the highest shared).
        assert_eq!(sync_start(Height(21), &loc, chain(30, 12, 2)), Height(6));
        // Nothing in common but genesis.
        assert_eq!(sync_start(Height(21), &loc, chain(30, 0, 2)), Height(1));
        // No locator (an old requester): as asked.
        assert_eq!(sync_start(Height(21), &[], chain(30, 12, 2)), Height(21));
    }
}
