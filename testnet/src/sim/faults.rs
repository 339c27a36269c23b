//! The fault vocabulary of `phalanx sim --faults`: network faults, crashes,
//! and Byzantine behaviours, and sets of them.

use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// One kind of fault the simulator can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Long-tailed message delays (spikes of hundreds of milliseconds).
    Delay,
    /// Messages lost.
    Loss,
    /// Messages delivered twice.
    Dup,
    /// Messages on one link overtake each other (no per-link FIFO).
    Reorder,
    /// The validators split into groups that cannot talk, then heal.
    Partition,
    /// Honest validators crash (possibly between persisting and sending)
    /// and restart from their persisted records and stored chain.
    Crash,
    /// A Byzantine primary sends different PRE-PREPAREs to different replicas.
    Equivocate,
    /// A Byzantine replica sends PREPARE/COMMIT/CHECKPOINT for different
    /// digests to different halves of the validators.
    ConflictingVotes,
    /// A Byzantine validator withholds some or all of its messages.
    Silent,
    /// A Byzantine validator sends messages with corrupted signatures or
    /// claiming another validator as signer.
    BadSig,
    /// A Byzantine validator records messages and resends them views later.
    StaleReplay,
    /// A Byzantine validator forges VIEW-CHANGE and NEW-VIEW contents
    /// (dropped prepared certificates, pre-prepares that differ from
    /// recomputation), re-signed with its own key.
    ForgedViewChange,
    /// Two honest engine copies share one validator key; each peer sees one
    /// twin or both.
    Twins,
    /// A Byzantine validator serves catch-up requests with tampered blocks.
    BadSync,
    /// A Byzantine validator floods: evidence against itself, padded
    /// certificates, PRE-PREPAREs for later views and from a non-primary,
    /// impersonated VIEW-CHANGEs, payloads that differ from their signed
    /// digest, view changes without backoff.
    Flood,
    /// A slow network for the whole run: every message takes 100–300 ms,
    /// so no request commits and no view completes within the base
    /// view-change timeout (200 ms); only timeouts that grow with each
    /// view change (§4.5.2) let the chain go on.
    Slow,
}

impl Fault {
    /// Every fault, in a fixed order.
    pub const ALL: [Fault; 16] = [
        Fault::Delay,
        Fault::Loss,
        Fault::Dup,
        Fault::Reorder,
        Fault::Partition,
        Fault::Crash,
        Fault::Equivocate,
        Fault::ConflictingVotes,
        Fault::Silent,
        Fault::BadSig,
        Fault::StaleReplay,
        Fault::ForgedViewChange,
        Fault::Twins,
        Fault::BadSync,
        Fault::Flood,
        Fault::Slow,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Delay => "delay",
            Fault::Loss => "loss",
            Fault::Dup => "dup",
            Fault::Reorder => "reorder",
            Fault::Partition => "partition",
            Fault::Crash => "crash",
            Fault::Equivocate => "equivocate",
            Fault::ConflictingVotes => "conflicting-votes",
            Fault::Silent => "silent",
            Fault::BadSig => "bad-sig",
            Fault::StaleReplay => "stale-replay",
            Fault::ForgedViewChange => "forged-view-change",
            Fault::Twins => "twins",
            Fault::BadSync => "bad-sync",
            Fault::Flood => "flood",
            Fault::Slow => "slow",
        }
    }

    /// Whether this fault is a behaviour of a Byzantine validator (as
    /// opposed to the network or a crash of an honest validator).
    pub fn is_byzantine(self) -> bool {
        !matches!(
            self,
            Fault::Delay
                | Fault::Loss
                | Fault::Dup
                | Fault::Reorder
                | Fault::Partition
                | Fault::Crash
                | Fault::Slow
        )
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Fault, String> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown fault {s:?}; expected `all` or a comma-separated list of {}",
                    names.join(", ")
                )
            })
    }
}

/// A set of faults (a bit set, so it is `Copy` and hashes into seeds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FaultSet(u32);

impl FaultSet {
    /// No faults.
    pub const NONE: FaultSet = FaultSet(0);

    /// Every fault.
    pub fn all() -> FaultSet {
        Fault::ALL.into_iter().collect()
    }

    /// Whether `fault` is in the set.
    pub fn contains(self, fault: Fault) -> bool {
        self.0 & fault.bit() != 0
    }

    /// Adds `fault`.
    pub fn insert(&mut self, fault: Fault) {
        self.0 |= fault.bit();
    }

    /// Removes `fault`.
    pub fn remove(&mut self, fault: Fault) {
        self.0 &= !fault.bit();
    }

    /// The faults in the set, in [`Fault::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Fault> {
        Fault::ALL.into_iter().filter(move |f| self.contains(*f))
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The raw bits (for seeding).
    pub fn bits(self) -> u32 {
        self.0
    }

    /// The Byzantine behaviours in the set.
    pub fn byzantine(self) -> FaultSet {
        self.iter().filter(|f| f.is_byzantine()).collect()
    }
}

impl FromIterator<Fault> for FaultSet {
    fn from_iter<I: IntoIterator<Item = Fault>>(iter: I) -> FaultSet {
        let mut set = FaultSet::NONE;
        for f in iter {
            set.insert(f);
        }
        set
    }
}

impl fmt::Display for FaultSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == FaultSet::all() {
            return f.write_str("all");
        }
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.iter().map(Fault::name).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for FaultSet {
    type Err = String;
    /// `all`, `none`, or a comma-separated list of fault names.
    fn from_str(s: &str) -> Result<FaultSet, String> {
        let s = s.trim();
        match s {
            "all" => return Ok(FaultSet::all()),
            "none" | "" => return Ok(FaultSet::NONE),
            _ => {}
        }
        s.split(',')
            .map(|name| name.trim().parse::<Fault>())
            .collect()
    }
}

impl Serialize for FaultSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_fault_lists() {
        assert_eq!("all".parse::<FaultSet>().unwrap(), FaultSet::all());
        let set: FaultSet = "loss, twins,crash".parse().unwrap();
        assert_eq!(set.to_string(), "loss,crash,twins");
        assert_eq!(set.to_string().parse::<FaultSet>().unwrap(), set);
        let err = "loss,tsunami".parse::<FaultSet>().unwrap_err();
        assert!(err.contains("unknown fault \"tsunami\""), "{err}");
        assert!(err.contains("bad-sync, flood"), "{err}");
        assert!(Fault::Twins.is_byzantine() && !Fault::Crash.is_byzantine());
        assert!(Fault::Flood.is_byzantine());
    }
}
