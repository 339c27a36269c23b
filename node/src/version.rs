//! What this binary is: its version and the git commit it was built from
//! (recorded by build.rs). Shown by `phalanx --version`, `/status`, the
//! `phalanx_build_info` metric and the bench and faults reports, so a figure
//! can always be traced to the code that produced it.

/// The crate version, e.g. "0.1.0".
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit HEAD was at when the binary was built (12 hex digits),
/// or "unknown" outside a git checkout.
pub const GIT_COMMIT: &str = env!("PHALANX_GIT_COMMIT");

/// "0.1.0 (abc123def456)": what `phalanx --version` prints after the name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PHALANX_GIT_COMMIT"),
    ")"
);
