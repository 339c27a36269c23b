//! What the live page watches: the node's own events as they happen — the
//! consensus messages it sends (after fault injection: what really left
//! it), the blocks it stores, finality, reverts, timers that fire, views it
//! enters, evidence — streamed to browsers by `GET /events`
//! ([`crate::api`]) together with its status.
//!
//! Light on the node by construction: the driver records an event only
//! while somebody watches (one atomic load otherwise), an event is a few
//! words copied into a shared ring, and every watcher reads that one ring
//! at its own pace. A watcher that falls more than [`RING`] events behind
//! skips ahead and is told how many it missed; memory does not grow with
//! slow watchers, and at most [`MAX_WATCHERS`] watch at once.
//!
//! The page replays one slot every few seconds, so at high block rates the
//! node records the messages of every N-th slot only (sequence a multiple
//! of N, N a power of two chosen so that about [`SLOTS_PER_SECOND`] go
//! out; view changes, complaints and evidence always): what the browser
//! has to take in stays flat as the load grows. Nodes committing the same
//! blocks pick the same N, and where two differ for a moment, the slots of
//! the larger N are still complete from both (powers of two nest).

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Events kept for watchers that are behind (shared by all of them).
pub const RING: usize = 4096;

/// Watchers at once; more are refused (503).
pub const MAX_WATCHERS: usize = 16;

/// About how many slots a second have their messages recorded.
pub const SLOTS_PER_SECOND: u64 = 4;

/// Seconds of block counts the sampling rate is taken over.
const RATE_WINDOW: usize = 5;

/// Message kinds recorded whatever the sampling (rare, and what a view
/// change or a fault is made of).
const ALWAYS: &[&str] = &[
    "view_change",
    "new_view",
    "complaint",
    "evidence",
    "request_vote",
    "vote",
];

/// One thing the node did, for the live page. `t` is Unix milliseconds on
/// this node's clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchEvent {
    /// A consensus message this node sent; `to: None` is a broadcast.
    Msg {
        /// When.
        t: u64,
        /// This validator.
        from: u32,
        /// The one recipient, or every other validator.
        to: Option<u32>,
        /// The engine's name for the kind ("pre_prepare", "commit", ...).
        kind: &'static str,
        /// The view (a VIEW-CHANGE's: the view it asks for) or term.
        view: u64,
        /// The sequence number or height.
        seq: u64,
        /// Who signed it (an echoed or relayed message: not the sender).
        signer: u32,
        /// The first 8 hex digits of what it votes for ("" if nothing).
        digest: String,
    },
    /// A block this node stored.
    Block {
        /// When.
        t: u64,
        /// Its height.
        height: u64,
        /// Its hash (hex).
        hash: String,
        /// Who proposed it.
        proposer: u32,
        /// Transactions in it.
        txs: usize,
        /// Sealed by a longest-chain engine (not final yet).
        tentative: bool,
        /// From its proposal timestamp to its commit here.
        latency_ms: u64,
    },
    /// A tentative block became final.
    Finalized {
        /// When.
        t: u64,
        /// Its height.
        height: u64,
    },
    /// Tentative blocks above `to` were taken out (up to `from`).
    Reverted {
        /// When.
        t: u64,
        /// The head before.
        from: u64,
        /// The common ancestor kept.
        to: u64,
    },
    /// A consensus timer fired.
    Timeout {
        /// When.
        t: u64,
        /// Which ("progress", "view_change", "batch", ...).
        kind: &'static str,
        /// The view it concerns (0 for timers without one).
        view: u64,
    },
    /// This node entered a view (its NEW-VIEW is in).
    View {
        /// When.
        t: u64,
        /// The view.
        view: u64,
        /// Its primary.
        primary: u32,
    },
    /// This node recorded proof that `offender` equivocated.
    Evidence {
        /// When.
        t: u64,
        /// The validator it proves faulty.
        offender: u32,
    },
}

/// The sampling for `per_second` blocks a second: the smallest power of
/// two that brings the recorded slots to [`SLOTS_PER_SECOND`] or fewer.
pub fn sampling_for(per_second: u64) -> u64 {
    let mut every = 1;
    while per_second / every > SLOTS_PER_SECOND && every < 1 << 20 {
        every *= 2;
    }
    every
}

/// A timer's name for the page, and the view it concerns (0: none).
pub fn timeout_name(kind: phalanx_consensus::TimeoutKind) -> (&'static str, u64) {
    use phalanx_consensus::TimeoutKind as K;
    match kind {
        K::Batch => ("batch", 0),
        K::Progress { view } => ("progress", view),
        K::ViewChange { view } => ("view_change", view),
        K::Sync => ("sync", 0),
        K::Slot => ("slot", 0),
        K::FallbackBatch => ("fallback_batch", 0),
        K::FallbackSync => ("fallback_sync", 0),
    }
}

/// The feed: the driver records, `GET /events` reads.
#[derive(Debug)]
pub struct Watch {
    ring: broadcast::Sender<Arc<WatchEvent>>,
    watchers: AtomicUsize,
    /// The head height at each of the last seconds (the block rate is
    /// their difference).
    heads: Mutex<VecDeque<u64>>,
    /// Slots whose sequence is a multiple of this are recorded.
    every: AtomicU64,
}

impl Default for Watch {
    fn default() -> Self {
        Watch {
            ring: broadcast::Sender::new(RING),
            watchers: AtomicUsize::new(0),
            heads: Mutex::new(VecDeque::new()),
            every: AtomicU64::new(1),
        }
    }
}

impl Watch {
    /// Once a second (the driver's tick, watched or not: the sampling
    /// must be right when somebody starts watching), with the head
    /// height: takes the block rate over the last seconds and sets the
    /// sampling from it.
    pub fn second(&self, head: u64) {
        let mut heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        heads.push_back(head);
        while heads.len() > RATE_WINDOW + 1 {
            heads.pop_front();
        }
        let (first, last) = (heads[0], heads[heads.len() - 1]);
        let seconds = (heads.len() as u64 - 1).max(1);
        let per_second = last.saturating_sub(first) / seconds;
        self.every
            .store(sampling_for(per_second), Ordering::Relaxed);
    }

    /// Slots whose messages are recorded: sequence a multiple of this.
    pub fn every(&self) -> u64 {
        self.every.load(Ordering::Relaxed)
    }

    /// Whether a message of `kind` for sequence `seq` is recorded.
    pub fn samples(&self, kind: &str, seq: u64) -> bool {
        let every = self.every();
        every <= 1 || seq.is_multiple_of(every) || ALWAYS.contains(&kind)
    }

    /// Whether anybody watches (the driver skips building events if not).
    pub fn watched(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }

    /// Records an event if anybody watches; `make` runs only then.
    pub fn record(&self, make: impl FnOnce() -> WatchEvent) {
        if self.watched() {
            // No receiver left in between is fine: nobody missed it.
            let _ = self.ring.send(Arc::new(make()));
        }
    }

    /// A new watcher, or `None` if [`MAX_WATCHERS`] already watch. The
    /// watcher counts until it is dropped.
    pub fn subscribe(self: &Arc<Self>) -> Option<Watcher> {
        let taken = self
            .watchers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w < MAX_WATCHERS).then_some(w + 1)
            });
        taken.ok().map(|_| Watcher {
            events: self.ring.subscribe(),
            watch: self.clone(),
        })
    }

    /// Watchers now.
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }
}

/// One watcher's place in the feed.
#[derive(Debug)]
pub struct Watcher {
    events: broadcast::Receiver<Arc<WatchEvent>>,
    watch: Arc<Watch>,
}

/// What [`Watcher::next`] got.
#[derive(Debug)]
pub enum Next {
    /// The next event.
    Event(Arc<WatchEvent>),
    /// The watcher fell behind and skipped this many events.
    Missed(u64),
}

impl Watcher {
    /// Waits for the next event.
    pub async fn next(&mut self) -> Next {
        loop {
            match self.events.recv().await {
                Ok(e) => return Next::Event(e),
                Err(broadcast::error::RecvError::Lagged(n)) => return Next::Missed(n),
                // The sender lives in `Shared` as long as the node: only
                // at shutdown; wait for the connection to be dropped.
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }

    /// The next event if one is queued, without waiting.
    pub fn try_next(&mut self) -> Option<Next> {
        match self.events.try_recv() {
            Ok(e) => Some(Next::Event(e)),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Next::Missed(n)),
            Err(_) => None,
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.watch.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finalized(height: u64) -> WatchEvent {
        WatchEvent::Finalized { t: 1, height }
    }

    #[test]
    fn nothing_is_recorded_while_nobody_watches() {
        let w = Arc::new(Watch::default());
        let mut built = false;
        w.record(|| {
            built = true;
            finalized(1)
        });
        assert!(!built, "an event was built with nobody watching");
        let mut a = w.subscribe().expect("a watcher");
        w.record(|| finalized(2));
        match a.try_next() {
            Some(Next::Event(e)) => assert_eq!(*e, finalized(2)),
            other => panic!("expected the event, got {other:?}"),
        }
        assert!(a.try_next().is_none());
    }

    #[test]
    fn watchers_are_bounded_and_counted_until_dropped() {
        let w = Arc::new(Watch::default());
        let all: Vec<Watcher> = (0..MAX_WATCHERS)
            .map(|_| w.subscribe().expect("room"))
            .collect();
        assert!(w.subscribe().is_none(), "one watcher too many was let in");
        assert_eq!(w.watchers(), MAX_WATCHERS);
        drop(all);
        assert_eq!(w.watchers(), 0);
        assert!(!w.watched());
        assert!(w.subscribe().is_some());
    }

    #[test]
    fn a_slow_watcher_skips_ahead_and_is_told_how_much_it_missed() {
        let w = Arc::new(Watch::default());
        let mut slow = w.subscribe().expect("a watcher");
        let extra = 100;
        for h in 0..(RING as u64 + extra) {
            w.record(|| finalized(h));
        }
        match slow.try_next() {
            Some(Next::Missed(n)) => assert_eq!(n, extra),
            other => panic!("expected a miss, got {other:?}"),
        }
        // Then it reads on from the oldest event still in the ring.
        match slow.try_next() {
            Some(Next::Event(e)) => assert_eq!(*e, finalized(extra)),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn busy_chains_record_every_nth_slot_and_every_view_change() {
        assert_eq!(sampling_for(0), 1);
        assert_eq!(sampling_for(SLOTS_PER_SECOND), 1);
        assert_eq!(sampling_for(SLOTS_PER_SECOND + 1), 2);
        assert_eq!(sampling_for(100), 32);
        let w = Watch::default();
        assert!(w.samples("prepare", 7), "a quiet chain records every slot");
        let mut head = 0;
        for _ in 0..=RATE_WINDOW {
            head += 100;
            w.second(head);
        }
        assert_eq!(w.every(), 32);
        assert!(w.samples("commit", 64) && w.samples("pre_prepare", 96));
        assert!(!w.samples("commit", 65));
        assert!(w.samples("view_change", 65) && w.samples("new_view", 3));
        // The rate falls: back to every slot within the window.
        for _ in 0..RATE_WINDOW {
            w.second(head);
        }
        assert_eq!(w.every(), 1);
    }

    #[test]
    fn events_serialize_as_the_page_reads_them() {
        let m = WatchEvent::Msg {
            t: 5,
            from: 2,
            to: None,
            kind: "prepare",
            view: 3,
            seq: 118,
            signer: 2,
            digest: "a1b2c3d4".into(),
        };
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "msg", "t": 5, "from": 2, "to": null, "kind": "prepare",
                "view": 3, "seq": 118, "signer": 2, "digest": "a1b2c3d4"})
        );
        let v = serde_json::to_value(WatchEvent::View {
            t: 1,
            view: 4,
            primary: 0,
        })
        .unwrap();
        assert_eq!(v["type"], "view");
    }
}
