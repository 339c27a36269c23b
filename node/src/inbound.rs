//! How many bytes of one validator's consensus messages may wait for the
//! driver.
//!
//! The p2p task hands each received message to the driver through one
//! channel of 8,192 events; a frame may be up to `p2p.max_message_bytes`
//! (16 MiB). Counted in messages alone, one Byzantine validator sending
//! large frames faster than the driver checks them could queue 128 GiB.
//! So each validator has a byte budget for what it has queued and the
//! driver has not yet handled: a message that would go over it is dropped
//! and counted (`peer_inbound_full`), as the network could have lost it.
//! The budget is released when the driver drops the event, whatever it did
//! with it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How many frames of the largest size one validator may have queued.
pub const FRAMES_PER_PEER: usize = 4;

/// Bytes queued per validator, against one budget each.
#[derive(Debug)]
pub struct InboundBudget {
    queued: Vec<AtomicUsize>,
    per_peer: usize,
}

/// Bytes of one queued message, given back to its sender's budget when
/// dropped.
#[derive(Debug)]
pub struct Held {
    budget: Arc<InboundBudget>,
    peer: usize,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.queued[self.peer].fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl InboundBudget {
    /// A budget of `per_peer` bytes for each of `validators`.
    pub fn new(validators: usize, per_peer: usize) -> Arc<InboundBudget> {
        Arc::new(InboundBudget {
            queued: (0..validators).map(|_| AtomicUsize::new(0)).collect(),
            per_peer,
        })
    }

    /// Takes `bytes` from `peer`'s budget, or `None` if that would exceed
    /// it (a message alone may always be as large as the whole budget).
    pub fn take(self: &Arc<Self>, peer: usize, bytes: usize) -> Option<Held> {
        let slot = self.queued.get(peer)?;
        let mut current = slot.load(Ordering::Acquire);
        loop {
            let next = current.checked_add(bytes)?;
            if next > self.per_peer && current > 0 {
                return None;
            }
            match slot.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    return Some(Held {
                        budget: self.clone(),
                        peer,
                        bytes,
                    })
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// Bytes `peer` has queued now.
    #[cfg(test)]
    pub fn queued(&self, peer: usize) -> usize {
        self.queued
            .get(peer)
            .map_or(0, |q| q.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_queues_at_most_its_budget_and_gets_it_back() {
        let budget = InboundBudget::new(3, 100);
        let a = budget.take(1, 60).expect("within the budget");
        let b = budget.take(1, 40).expect("exactly the budget");
        assert!(budget.take(1, 1).is_none(), "one byte over");
        // Other peers have their own budget.
        let c = budget.take(2, 100).expect("peer 2 is not affected");
        assert_eq!(budget.queued(1), 100);
        drop(a);
        assert_eq!(budget.queued(1), 40);
        let d = budget.take(1, 60).expect("released bytes are free again");
        drop((b, c, d));
        assert_eq!(budget.queued(1), 0);
        assert_eq!(budget.queued(2), 0);
        // A single message larger than the budget passes when nothing is
        // queued (the frame cap bounds it), but not behind another.
        let big = budget.take(0, 500).expect("alone");
        assert!(budget.take(0, 1).is_none());
        drop(big);
        // Not a validator index: refused.
        assert!(budget.take(7, 1).is_none());
    }

    #[test]
    fn concurrent_takers_never_exceed_the_budget() {
        let budget = InboundBudget::new(1, 1_000);
        let held = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1_000 {
                        if let Some(h) = budget.take(0, 7) {
                            held.lock().unwrap().push(h);
                        }
                        assert!(budget.queued(0) <= 1_000);
                    }
                });
            }
        });
        let kept = held.lock().unwrap().len();
        assert_eq!(kept, 1_000 / 7, "the budget filled exactly");
        held.lock().unwrap().clear();
        assert_eq!(budget.queued(0), 0);
    }
}
