//! The delivered-event trace: a running hash over every event the world
//! loop carries out (and, with `--verbose`, one line per event), so a replay
//! of a seed can be compared with the original by one number.
//!
//! The hash is an FNV-style running hash over 64-bit fields. It identifies
//! a trace, it protects nothing; messages enter it through their signatures, which
//! ed25519 makes a deterministic function of the signed content.

use phalanx_consensus::PbftMessage;
use phalanx_crypto::Hash;

/// The hash and, optionally, the readable lines of one schedule's trace.
#[derive(Debug)]
pub struct Trace {
    hash: u64,
    lines: Option<Vec<String>>,
}

/// A message's trace identity: kind tag, view, seq, signer and signature prefix.
pub fn fingerprint(m: &PbftMessage) -> (u8, u64, u64, u64, u64) {
    let prefix =
        |s: &phalanx_crypto::Signature| u64::from_le_bytes(s.0[..8].try_into().unwrap_or([0; 8]));
    match m {
        PbftMessage::PrePrepare(pp) => {
            let v = &pp.vote.vote;
            (
                0,
                v.view,
                v.seq.0,
                v.voter.0 as u64,
                prefix(&pp.vote.signature),
            )
        }
        PbftMessage::Prepare(s) => (
            1,
            s.vote.view,
            s.vote.seq.0,
            s.vote.voter.0 as u64,
            prefix(&s.signature),
        ),
        PbftMessage::Commit(s) => (
            2,
            s.vote.view,
            s.vote.seq.0,
            s.vote.voter.0 as u64,
            prefix(&s.signature),
        ),
        PbftMessage::Checkpoint(s) => (
            3,
            s.vote.view,
            s.vote.seq.0,
            s.vote.voter.0 as u64,
            prefix(&s.signature),
        ),
        PbftMessage::ViewChange(vc) => (
            4,
            vc.body.new_view,
            vc.body.stable_seq.0,
            vc.body.voter.0 as u64,
            prefix(&vc.signature),
        ),
        PbftMessage::NewView(nv) => (
            5,
            nv.view,
            nv.pre_prepares.len() as u64,
            0,
            prefix(&nv.signature),
        ),
        PbftMessage::Evidence(e) => (
            6,
            e.first.vote.view,
            e.first.vote.seq.0,
            e.first.vote.voter.0 as u64,
            prefix(&e.first.signature) ^ prefix(&e.second.signature),
        ),
        PbftMessage::Complaint(c) => (7, c.view, 0, c.voter.0 as u64, prefix(&c.signature)),
    }
}

/// One line describing a message, for `--verbose`.
pub fn describe(m: &PbftMessage) -> String {
    let (_, view, seq, voter, _) = fingerprint(m);
    match m {
        PbftMessage::PrePrepare(pp) => format!(
            "pre-prepare v{view} s{seq} by {voter} ({} txs) {}",
            pp.payload.txs.len(),
            short(&pp.vote.vote.digest)
        ),
        PbftMessage::Prepare(v) | PbftMessage::Commit(v) | PbftMessage::Checkpoint(v) => {
            format!(
                "{} v{view} s{seq} by {voter} {}",
                m.kind(),
                short(&v.vote.digest)
            )
        }
        PbftMessage::ViewChange(vc) => format!(
            "view-change to v{view} by {voter} (stable {}, {} prepared)",
            vc.body.stable_seq,
            vc.body.prepared.len()
        ),
        PbftMessage::NewView(nv) => format!(
            "new-view v{view} ({} view changes, {} pre-prepares)",
            nv.view_changes.len(),
            nv.pre_prepares.len()
        ),
        PbftMessage::Evidence(_) => format!("evidence against {voter} (v{view} s{seq})"),
        PbftMessage::Complaint(_) => format!("complaint about v{view} by {voter}"),
    }
}

fn short(h: &Hash) -> String {
    h.to_string()[..8].to_owned()
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
