//! Transaction batches pushed to every validator, acknowledged, retried.
//!
//! Validators are fully connected, so the node that accepted a client's
//! transactions sends each batch straight to every other validator over
//! request-response instead of gossiping it. Each batch then crosses the
//! wire n − 1 times (gossipsub's mesh forwarding sent it about three times
//! as often at n = 4 and about seven times at n = 16), and a batch a peer
//! did not acknowledge is known and sent again instead of silently lost
//! (a lost batch leaves a nonce gap that holds up every later transaction
//! of its senders until the 8 s resend, `shared::Resend`).
//!
//! This module is the bookkeeping only — per-peer queues with a cap on
//! batches in flight and on bytes waiting — so it is tested without a
//! network; `p2p.rs` drives it.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;

/// Batches in flight to one peer at once; more wait in its queue.
pub const IN_FLIGHT: usize = 32;
/// Bytes waiting for one peer (e.g. while it is unreachable) before the
/// oldest batches are dropped.
pub const QUEUE_BYTES: usize = 32 * 1024 * 1024;
/// Sends of one batch to one peer before it is given up (the resend of
/// pending client transactions still covers it).
pub const ATTEMPTS: u8 = 4;

#[derive(Debug)]
struct Batch {
    bytes: Arc<Vec<u8>>,
    attempts: u8,
}

#[derive(Debug)]
struct PeerQueue<K> {
    waiting: VecDeque<Batch>,
    waiting_bytes: usize,
    in_flight: HashMap<K, Batch>,
}

impl<K> Default for PeerQueue<K> {
    fn default() -> Self {
        Self {
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            in_flight: HashMap::new(),
        }
    }
}

/// Per-peer outgoing batches. `P` names a peer, `K` a request in flight.
#[derive(Debug)]
pub struct PushQueues<P, K> {
    peers: HashMap<P, PeerQueue<K>>,
    in_flight_cap: usize,
    queue_bytes: usize,
    attempts: u8,
}

impl<P: Hash + Eq + Clone, K: Hash + Eq> Default for PushQueues<P, K> {
    fn default() -> Self {
        Self::new(IN_FLIGHT, QUEUE_BYTES, ATTEMPTS)
    }
}

impl<P: Hash + Eq + Clone, K: Hash + Eq> PushQueues<P, K> {
    /// Queues with explicit caps (tests use small ones).
    pub fn new(in_flight_cap: usize, queue_bytes: usize, attempts: u8) -> Self {
        Self {
            peers: HashMap::new(),
            in_flight_cap: in_flight_cap.max(1),
            queue_bytes,
            attempts: attempts.max(1),
        }
    }

    /// Queues `bytes` for `peer`; returns how many older batches were
    /// dropped to stay within the byte cap.
    pub fn enqueue(&mut self, peer: P, bytes: Arc<Vec<u8>>) -> usize {
        let q = self.peers.entry(peer).or_default();
        q.waiting_bytes += bytes.len();
        q.waiting.push_back(Batch { bytes, attempts: 0 });
        let mut dropped = 0;
        while q.waiting_bytes > self.queue_bytes && q.waiting.len() > 1 {
            if let Some(old) = q.waiting.pop_front() {
                q.waiting_bytes -= old.bytes.len();
                dropped += 1;
            }
        }
        dropped
    }

    /// Sends waiting batches to `peer` while fewer than the cap are in
    /// flight; `send` starts one request and returns its id.
    pub fn pump(&mut self, peer: &P, mut send: impl FnMut(Arc<Vec<u8>>) -> K) {
        let Some(q) = self.peers.get_mut(peer) else {
            return;
        };
        while q.in_flight.len() < self.in_flight_cap {
            let Some(mut batch) = q.waiting.pop_front() else {
                break;
            };
            q.waiting_bytes -= batch.bytes.len();
            batch.attempts += 1;
            let id = send(batch.bytes.clone());
            q.in_flight.insert(id, batch);
        }
    }

    /// `peer` acknowledged request `id`.
    pub fn acked(&mut self, peer: &P, id: &K) {
        if let Some(q) = self.peers.get_mut(peer) {
            q.in_flight.remove(id);
        }
    }

    /// Request `id` to `peer` failed: the batch goes back to the front of
    /// the queue, unless it was sent `attempts` times already. Returns
    /// false when it was given up.
    pub fn failed(&mut self, peer: &P, id: &K) -> bool {
        let Some(q) = self.peers.get_mut(peer) else {
            return true;
        };
        let Some(batch) = q.in_flight.remove(id) else {
            return true;
        };
        if batch.attempts >= self.attempts {
            return false;
        }
        q.waiting_bytes += batch.bytes.len();
        q.waiting.push_front(batch);
        true
    }

    /// Batches waiting (not in flight) for `peer`.
    #[cfg(test)]
    pub fn waiting(&self, peer: &P) -> usize {
        self.peers.get(peer).map_or(0, |q| q.waiting.len())
    }

    /// Batches in flight to `peer`.
    #[cfg(test)]
    pub fn in_flight(&self, peer: &P) -> usize {
        self.peers.get(peer).map_or(0, |q| q.in_flight.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: u8, len: usize) -> Arc<Vec<u8>> {
        Arc::new(vec![n; len])
    }

    /// Sends through `q` to `peer`, numbering requests from `next`.
    fn pump(
        q: &mut PushQueues<&'static str, u32>,
        peer: &'static str,
        next: &mut u32,
    ) -> Vec<(u32, u8)> {
        let mut sent = Vec::new();
        q.pump(&peer, |b| {
            *next += 1;
            sent.push((*next, b[0]));
            *next
        });
        sent
    }

    #[test]
    fn batches_go_out_in_order_within_the_in_flight_cap() {
        let mut q = PushQueues::new(2, 1 << 20, 3);
        let mut id = 0;
        for n in 1..=5 {
            q.enqueue("a", batch(n, 10));
        }
        assert_eq!(pump(&mut q, "a", &mut id), vec![(1, 1), (2, 2)]);
        assert_eq!(pump(&mut q, "a", &mut id), vec![], "cap reached");
        q.acked(&"a", &1);
        assert_eq!(pump(&mut q, "a", &mut id), vec![(3, 3)]);
        assert_eq!((q.waiting(&"a"), q.in_flight(&"a")), (2, 2));
        assert_eq!(q.waiting(&"b"), 0, "other peers are independent");
    }

    #[test]
    fn a_failed_batch_is_resent_first_then_given_up_after_its_attempts() {
        let mut q = PushQueues::new(1, 1 << 20, 2);
        let mut id = 0;
        q.enqueue("a", batch(7, 10));
        q.enqueue("a", batch(8, 10));
        assert_eq!(pump(&mut q, "a", &mut id), vec![(1, 7)]);
        assert!(q.failed(&"a", &1), "first failure: requeued");
        assert_eq!(pump(&mut q, "a", &mut id), vec![(2, 7)], "resent before 8");
        assert!(!q.failed(&"a", &2), "second failure: given up");
        assert_eq!(pump(&mut q, "a", &mut id), vec![(3, 8)]);
        assert!(q.failed(&"a", &99), "an unknown id is not a give-up");
    }

    #[test]
    fn the_byte_cap_drops_the_oldest_waiting_batches() {
        let mut q = PushQueues::new(1, 25, 3);
        let mut id = 0;
        assert_eq!(q.enqueue("a", batch(1, 10)), 0);
        assert_eq!(q.enqueue("a", batch(2, 10)), 0);
        assert_eq!(q.enqueue("a", batch(3, 10)), 1, "30 bytes > 25: drop 1");
        assert_eq!(pump(&mut q, "a", &mut id), vec![(1, 2)]);
        // A single batch larger than the cap still goes out.
        let mut q = PushQueues::new(1, 5, 3);
        assert_eq!(q.enqueue("b", batch(4, 10)), 0);
        assert_eq!(pump(&mut q, "b", &mut id), vec![(2, 4)]);
    }
}
