//! The delivered-event trace: a running hash over every event the world
//! loop carries out (and, with `--verbose`, one line per event), so a replay
//! of a seed can be compared with the original by one number.
//!
//! The hash is an FNV-style running hash over 64-bit fields. It identifies
//! a trace, it protects nothing; messages enter it through their summaries
//! (kind, view, seq, signer, digest prefix).

/// The hash and, optionally, the readable lines of one schedule's trace.
#[derive(Debug)]
pub struct Trace {
    hash: u64,
    lines: Option<Vec<String>>,
}

impl Trace {
    /// An empty trace; `verbose` keeps readable lines too.
    pub fn new(verbose: bool) -> Trace {
        Trace {
            hash: 0xcbf2_9ce4_8422_2325,
            lines: verbose.then(Vec::new),
        }
    }

    /// Mixes fields into the hash (a word at a time: FNV-style multiply,
    /// then a shift so high bits reach the low ones).
    pub fn words(&mut self, words: &[u64]) {
        for w in words {
            self.hash = (self.hash ^ w).wrapping_mul(0x0000_0100_0000_01b3);
            self.hash ^= self.hash >> 29;
        }
    }

    /// Whether readable lines are kept.
    pub fn is_verbose(&self) -> bool {
        self.lines.is_some()
    }

    /// Adds a readable line (only when verbose; `line` is not evaluated otherwise).
    pub fn line(&mut self, at_ms: u64, line: impl FnOnce() -> String) {
        if let Some(lines) = &mut self.lines {
            lines.push(format!("{at_ms:>8} ms  {}", line()));
        }
    }

    /// The hash so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The readable lines.
    pub fn take_lines(&mut self) -> Vec<String> {
        self.lines.take().unwrap_or_default()
    }
}
