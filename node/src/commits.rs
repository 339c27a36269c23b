//! The log of recent commits with this node's local times (`GET
//! /commits`): what a benchmark needs to time every transaction without
//! fetching whole blocks. The driver appends; the API reads.

use crate::api::types::CommitRecord;
use std::collections::VecDeque;
use std::sync::Mutex;

/// The most recent commits, bounded by block count and by transaction count.
#[derive(Debug, Default)]
pub struct CommitLog {
    inner: Mutex<(VecDeque<CommitRecord>, usize)>,
}

/// Blocks kept in the commit log.
pub const COMMIT_LOG_BLOCKS: usize = 20_000;
/// Transaction hashes kept in the commit log (32 bytes each: 16 MB).
pub const COMMIT_LOG_TXS: usize = 500_000;

impl CommitLog {
    /// Appends a commit, dropping the oldest beyond the bounds.
    pub fn push(&self, record: CommitRecord) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.1 += record.tx_hashes.len();
        g.0.push_back(record);
        while g.0.len() > COMMIT_LOG_BLOCKS || (g.1 > COMMIT_LOG_TXS && g.0.len() > 1) {
            if let Some(old) = g.0.pop_front() {
                g.1 -= old.tx_hashes.len();
            }
        }
    }

    /// Forgets the records above `height` (a reorg reverted those blocks;
    /// their heights are committed anew).
    pub fn truncate_above(&self, height: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while g.0.back().is_some_and(|r| r.height > height) {
            if let Some(r) = g.0.pop_back() {
                g.1 -= r.tx_hashes.len();
            }
        }
    }

    /// Up to `limit` records from height `from` on, and the lowest height
    /// still kept (0 if none).
    pub fn since(&self, from: u64, limit: usize) -> (Vec<CommitRecord>, u64) {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = g.0.front().map_or(0, |r| r.height);
        let skip = from.saturating_sub(oldest) as usize;
        (g.0.iter().skip(skip).take(limit).cloned().collect(), oldest)
    }
}
