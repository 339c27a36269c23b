//! Pause and stop, for fault injection (`POST /admin/pause`,
//! `POST /admin/stop`): what `kill -STOP` and `kill -TERM` do to a node,
//! reachable from the live page.
//!
//! A pause holds the consensus driver (not the engine: it only stops being
//! handed inputs): for its length the node handles no message, fires no
//! timer and sends nothing; what peers send it waits in the bounded queue
//! to the driver (beyond it, dropped and counted, as a stopped process's
//! socket buffers would), and it carries on when the pause ends. The API
//! keeps answering, so watchers see the pause in `/status`.

use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Longest pause one request may ask for.
pub const MAX_PAUSE_MS: u64 = 120_000;

/// The node's pause and stop switches.
#[derive(Debug, Default)]
pub struct Switches {
    paused_until: Mutex<Option<Instant>>,
    stop: Notify,
}

impl Switches {
    /// Pauses the driver for `ms` from now (0 resumes it at once).
    pub fn pause(&self, ms: u64) {
        let until = (ms > 0).then(|| Instant::now() + Duration::from_millis(ms));
        *self.paused_until.lock().unwrap_or_else(|e| e.into_inner()) = until;
    }

    /// How long the pause still lasts, if one is on.
    pub fn paused_for(&self) -> Option<Duration> {
        let until = (*self.paused_until.lock().unwrap_or_else(|e| e.into_inner()))?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// Asks the node to shut down as on SIGTERM.
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    /// Resolves once [`Switches::stop`] was called (even before this).
    pub async fn stopped(&self) {
        self.stop.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pause_lasts_its_length_and_zero_resumes() {
        let s = Switches::default();
        assert_eq!(s.paused_for(), None);
        s.pause(10_000);
        let left = s.paused_for().expect("paused");
        assert!(left > Duration::from_secs(9) && left <= Duration::from_secs(10));
        s.pause(0);
        assert_eq!(s.paused_for(), None);
        s.pause(30);
        assert!(s.paused_for().is_some());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(s.paused_for(), None, "the pause outlived its length");
    }

    #[tokio::test]
    async fn a_stop_asked_before_anyone_waits_is_not_lost() {
        let s = Switches::default();
        s.stop();
        tokio::time::timeout(Duration::from_secs(5), s.stopped())
            .await
            .expect("the stop was lost");
    }
}
