//! The node's one wall clock: milliseconds since the Unix epoch. The
//! driver hands it to the engine as `now_ms`; fault wrappers, the resend
//! schedule and `testnet init` read it too. Its own module so that none of
//! them imports the driver for it (that closed an import cycle, issue 17).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 before it, saturating far after).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
