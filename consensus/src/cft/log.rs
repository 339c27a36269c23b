//! The replicated log: entries above a compaction point, indexed by height.
//!
//! Entries at or below the compaction point (`base`) are executed and live
//! in the block store; the log remembers only the base's index and term, as
//! Raft's snapshot metadata does (Ongaro & Ousterhout 2014, §7).

use phalanx_ledger::{Height, Payload};
use std::collections::VecDeque;

/// A contiguous run of entries after `(base_index, base_term)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Log {
    base_index: Height,
    base_term: u64,
    entries: VecDeque<Payload>,
}

impl Log {
    /// An empty log after `(index, term)`.
    pub fn new(base_index: Height, base_term: u64) -> Log {
        Log {
            base_index,
            base_term,
            entries: VecDeque::new(),
        }
    }

    /// The compaction point.
    pub fn base(&self) -> (Height, u64) {
        (self.base_index, self.base_term)
    }

    /// Index of the last entry (the base if none).
    pub fn last_index(&self) -> Height {
        Height(self.base_index.0 + self.entries.len() as u64)
    }

    /// Term of the last entry (the base's if none).
    pub fn last_term(&self) -> u64 {
        self.entries.back().map_or(self.base_term, |p| p.round)
    }

    /// The term at `index`: `None` below the base or past the end.
    pub fn term_at(&self, index: Height) -> Option<u64> {
        if index == self.base_index {
            return Some(self.base_term);
        }
        self.get(index).map(|p| p.round)
    }

    /// The entry at `index`, if held.
    pub fn get(&self, index: Height) -> Option<&Payload> {
        let offset = index.0.checked_sub(self.base_index.0 + 1)?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// Appends an entry; it must be for the next index.
    pub fn append(&mut self, payload: Payload) -> Result<(), Payload> {
        if payload.height != self.last_index().next() || payload.round < self.last_term() {
            return Err(payload);
        }
        self.entries.push_back(payload);
        Ok(())
    }

    /// Removes every entry at `from` and above (never the base).
    pub fn truncate_from(&mut self, from: Height) {
        let keep = from.0.saturating_sub(self.base_index.0 + 1);
        self.entries
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
    }

    /// Forgets entries up to `index` (which must be held).
    pub fn compact_to(&mut self, index: Height) {
        let Some(term) = self.term_at(index) else {
            return;
        };
        while self.base_index < index {
            self.entries.pop_front();
            self.base_index = self.base_index.next();
        }
        self.base_term = term;
    }

    /// Up to `max` entries from `from` on.
    pub fn entries_from(&self, from: Height, max: usize) -> Vec<Payload> {
        let Some(offset) = from.0.checked_sub(self.base_index.0 + 1) else {
            return Vec::new();
        };
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        self.entries
            .iter()
            .skip(offset)
            .take(max)
            .cloned()
            .collect()
    }

    /// The entries held, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Payload> {
        self.entries.iter()
    }

    /// §5.4.1: a log ending in `(last_term, last_index)` is at least as up
    /// to date as this one — a later last term, or the same term and at
    /// least as long.
    pub fn is_up_to_date(&self, last_term: u64, last_index: Height) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// The first index of the run of entries with the same term as `index`
    /// (where a follower tells a leader to retry from after a conflict).
    pub fn first_index_of_term_at(&self, index: Height) -> Height {
        let Some(term) = self.term_at(index) else {
            return index;
        };
        let mut first = index;
        while first > self.base_index.next() && self.term_at(Height(first.0 - 1)) == Some(term) {
            first = Height(first.0 - 1);
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Payload {
        Payload {
            chain_id: "c".into(),
            height: Height(index),
            round: term,
            proposer: phalanx_ledger::ValidatorIndex(0),
            timestamp_ms: 0,
            txs: Vec::new(),
            evidence: Vec::new(),
        }
    }

    #[test]
    fn append_truncate_compact() {
        let mut log = Log::new(Height(0), 0);
        for (i, t) in [(1, 1), (2, 1), (3, 2)] {
            log.append(entry(i, t)).unwrap();
        }
        assert!(log.append(entry(5, 2)).is_err(), "gap");
        assert!(log.append(entry(4, 1)).is_err(), "term going back");
        assert_eq!((log.last_index(), log.last_term()), (Height(3), 2));
        assert_eq!(log.first_index_of_term_at(Height(2)), Height(1));
        log.truncate_from(Height(3));
        assert_eq!(log.last_index(), Height(2));
        log.compact_to(Height(1));
        assert_eq!(log.base(), (Height(1), 1));
        assert_eq!(log.term_at(Height(0)), None);
        assert_eq!(log.entries_from(Height(2), 8).len(), 1);
        assert!(log.is_up_to_date(1, Height(2)));
        assert!(!log.is_up_to_date(1, Height(1)));
        assert!(log.is_up_to_date(2, Height(0)));
    }
}
