//! Byzantine validators, built around unmodified honest engines: what the
//! simulator's hostile schedules and fault-injected nodes (`phalanx node
//! --behaviour`) both run (docs/architecture.md, "Fault injection").
//!
//! An [`Adversary`] sits between a Byzantine validator's honest engine and
//! the network: it rewrites what the engine sends (re-signing with the
//! validator's own key, which a Byzantine validator has), withholds it,
//! invents messages on its own clock ticks, and lies when serving catch-up.
//! It never reaches into an engine and never signs with another
//! validator's key, so everything it produces is something a real
//! Byzantine validator could produce. (Twins need no adversary: they are
//! two honest engines with one key, and the network decides who sees
//! which.)
//!
//! Each engine has its adversary in a module of its own ([`pbft`],
//! [`cft`]), reached through [`Adversarial`]; the registry
//! (`phalanx_runtime::registry`) pairs engines with them.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cft;
pub mod hybrid;
pub mod pbft;
pub mod pos;
pub mod pow;
pub mod rng;

pub use rng::Rng;

use phalanx_consensus::{Config, Protocol};
use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::{Block, Height, ValidatorIndex};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One misbehaviour of a simulated Byzantine validator (the simulator
/// draws them per schedule; an engine's adversary ignores those that mean
/// nothing to it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// As primary (leader), different proposals to different halves.
    Equivocate,
    /// Votes for different digests to different halves.
    ConflictingVotes,
    /// Withholds messages.
    Silent(SilentMode),
    /// Corrupts signatures or claims another signer.
    BadSig,
    /// Resends recorded messages views later.
    StaleReplay,
    /// Forges VIEW-CHANGE / NEW-VIEW contents and re-signs them.
    ForgedViewChange,
    /// Serves catch-up requests with tampered blocks.
    BadSync,
    /// Floods and malformed messages: evidence against itself, padded
    /// certificates, PRE-PREPAREs for later views and from a non-primary,
    /// impersonated VIEW-CHANGEs, a payload that is not the signed one,
    /// view changes without backoff (`pbft::flood`).
    Flood,
}

/// What a [`Strategy::Silent`] validator withholds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SilentMode {
    /// Everything (and it serves no catch-up).
    All,
    /// Everything sent to these validators.
    Towards(Vec<ValidatorIndex>),
    /// Its COMMITs and CHECKPOINTs (it still pre-prepares and prepares).
    Commits,
    /// Each message with probability one half.
    Random,
}

/// How a real validator behaves towards its peers (`phalanx node
/// --behaviour`, `POST /admin/behaviour`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Sends what the honest engine sends.
    #[default]
    Honest,
    /// Sends no consensus messages at all.
    Silent,
    /// PBFT: as primary, different PRE-PREPAREs to two halves of the
    /// validators; as replica, conflicting PREPARE/COMMIT to two halves.
    /// CFT: as leader, different entries to two halves of the followers; as
    /// follower, grants every vote it is asked for.
    Equivocate,
    /// Every consensus message it sends carries an invalid signature.
    BadSig,
    /// Also resends messages it sent earlier (old views, old sequence numbers).
    StaleReplay,
    /// Everything it sends leaves this many milliseconds late.
    Delay(u64),
}

/// The accepted spellings of a [`Behaviour`], for error messages and `--help`.
pub const BEHAVIOURS: &str = "honest, silent, equivocate, bad-sig, stale-replay, delay:MS";

impl std::str::FromStr for Behaviour {
    type Err = String;

    fn from_str(s: &str) -> Result<Behaviour, String> {
        let s = s.trim();
        Ok(match s {
            "honest" => Behaviour::Honest,
            "silent" => Behaviour::Silent,
            "equivocate" => Behaviour::Equivocate,
            "bad-sig" => Behaviour::BadSig,
            "stale-replay" => Behaviour::StaleReplay,
            _ => match s.strip_prefix("delay:") {
                Some(ms) => match ms.parse::<u64>() {
                    Ok(ms) if ms <= 60_000 => Behaviour::Delay(ms),
                    _ => {
                        return Err(format!(
                            "behaviour {s:?}: the delay must be a whole number of milliseconds \
                             from 0 to 60000, e.g. delay:200"
                        ))
                    }
                },
                None => {
                    return Err(format!(
                        "unknown behaviour {s:?}; choose one of {BEHAVIOURS}"
                    ))
                }
            },
        })
    }
}

impl std::fmt::Display for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Behaviour::Honest => f.write_str("honest"),
            Behaviour::Silent => f.write_str("silent"),
            Behaviour::Equivocate => f.write_str("equivocate"),
            Behaviour::BadSig => f.write_str("bad-sig"),
            Behaviour::StaleReplay => f.write_str("stale-replay"),
            Behaviour::Delay(ms) => write!(f, "delay:{ms}"),
        }
    }
}

impl Serialize for Behaviour {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Behaviour {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Behaviour, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What the adversaries did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AdversaryStats {
    /// Proposals sent in two versions.
    pub equivocations: u64,
    /// Votes sent in two versions (or granted to every candidate).
    pub conflicting_votes: u64,
    /// Messages withheld.
    pub withheld: u64,
    /// Messages sent with a corrupted signature or a false signer.
    pub bad_signatures: u64,
    /// Old messages resent.
    pub stale_replays: u64,
    /// VIEW-CHANGEs forged (rewritten or invented) and re-signed.
    pub forged_view_changes: u64,
    /// NEW-VIEWs forged and re-signed.
    pub forged_new_views: u64,
    /// Catch-up answers tampered with.
    pub bad_sync: u64,
    /// Flooded or malformed messages sent (`Strategy::Flood`).
    pub floods: u64,
}

impl AdversaryStats {
    /// Adds another's counts.
    pub fn add(&mut self, other: &AdversaryStats) {
        self.equivocations += other.equivocations;
        self.conflicting_votes += other.conflicting_votes;
        self.withheld += other.withheld;
        self.bad_signatures += other.bad_signatures;
        self.stale_replays += other.stale_replays;
        self.forged_view_changes += other.forged_view_changes;
        self.forged_new_views += other.forged_new_views;
        self.bad_sync += other.bad_sync;
        self.floods += other.floods;
    }
}

/// Knowledge the Byzantine validators of one schedule share (they collude):
/// the digests of equivocated proposals by (view, height), so a
/// conflicting voter can vote for the other version rather than for a
/// random digest.
#[derive(Debug, Default)]
pub struct Collusion {
    variants: BTreeMap<(u64, Height), Vec<Hash>>,
}

impl Collusion {
    /// Shares a proposal variant.
    pub fn propose(&mut self, view: u64, height: Height, digest: Hash) {
        self.variants
            .entry((view, height))
            .or_default()
            .push(digest);
    }

    /// A shared variant for (view, height) other than `not`.
    pub fn other(&self, view: u64, height: Height, not: Hash) -> Option<Hash> {
        self.variants
            .get(&(view, height))
            .and_then(|ds| ds.iter().find(|d| **d != not))
            .copied()
    }
}

/// What an adversary acts with: the randomness, the colluders' shared
/// knowledge, its counters and the time. The simulator hands every
/// adversary of a schedule the same generator and collusion (so a run is a
/// function of its seed); a fault-injected node owns its own.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The random source.
    pub rng: &'a mut Rng,
    /// What the Byzantine validators share.
    pub collusion: &'a mut Collusion,
    /// Where to count what it does.
    pub stats: &'a mut AdversaryStats,
    /// The current time, ms.
    pub now: u64,
}

/// A Byzantine rewrite of one engine's traffic (messages `M`).
pub trait Adversary<M>: Send {
    /// What goes on the wire when the honest engine sends `message` to
    /// `dests` (each element one message to one validator).
    fn outgoing(
        &mut self,
        ctx: &mut Ctx<'_>,
        message: M,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, M)>;

    /// A message the validator received (some adversaries record them).
    fn incoming(&mut self, _now: u64, _message: &M) {}

    /// Whether it acts on its own clock ([`Adversary::tick`]).
    fn wants_ticks(&self) -> bool {
        false
    }

    /// Messages it sends on its own clock (stale replays, invented view
    /// changes); `view` is the engine's current view or term.
    fn tick(&mut self, _ctx: &mut Ctx<'_>, _view: u64) -> Vec<(ValidatorIndex, M)> {
        Vec::new()
    }

    /// Answers a catch-up request: `None` to stay silent, or the blocks to
    /// send (perhaps tampered with).
    fn serve_sync(&mut self, _ctx: &mut Ctx<'_>, blocks: Vec<Block>) -> Option<Vec<Block>> {
        Some(blocks)
    }
}

/// An engine with adversaries: the simulator's (drawn strategies) and a
/// fault-injected node's (a [`Behaviour`]).
pub trait Adversarial: Protocol {
    /// A simulated Byzantine validator with these strategies.
    /// `genesis_hash` anchors what it forges from nothing.
    fn simulated(
        cfg: Config,
        key: Keypair,
        strategies: Vec<Strategy>,
        genesis_hash: Hash,
    ) -> Box<dyn Adversary<Self::Message>>;

    /// A node's rewrite for `behaviour` (not called for honest, silent or
    /// delay: see [`injected`]); `None` leaves messages as they are.
    fn injected(
        behaviour: Behaviour,
        cfg: &Config,
        key: &Keypair,
    ) -> Option<Box<dyn Adversary<Self::Message>>>;
}

/// The rewrite a fault-injected node running `E` applies for `behaviour`:
/// none for honest and delay (the node delays everything itself), one that
/// withholds everything for silent, the engine's own for the rest.
pub fn injected<E: Adversarial>(
    behaviour: Behaviour,
    cfg: &Config,
    key: &Keypair,
) -> Option<Box<dyn Adversary<E::Message>>> {
    match behaviour {
        Behaviour::Honest | Behaviour::Delay(_) => None,
        Behaviour::Silent => Some(Box::new(Silent)),
        _ => E::injected(behaviour, cfg, key),
    }
}

/// Withholds everything, whatever the engine.
#[derive(Debug)]
pub struct Silent;

impl<M> Adversary<M> for Silent {
    fn outgoing(
        &mut self,
        ctx: &mut Ctx<'_>,
        _message: M,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, M)> {
        ctx.stats.withheld += dests.len() as u64;
        Vec::new()
    }

    fn serve_sync(&mut self, _ctx: &mut Ctx<'_>, _blocks: Vec<Block>) -> Option<Vec<Block>> {
        None
    }
}

/// Splits `dests` into a first and a second half, deterministically (the
/// same recipients always land in the same half), each non-empty when
/// there are two or more recipients.
pub fn second_half(dests: &[ValidatorIndex], v: ValidatorIndex) -> bool {
    let mut sorted: Vec<u32> = dests.iter().map(|d| d.0).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let pos = sorted.iter().position(|d| *d == v.0).unwrap_or(0);
    sorted.len() >= 2 && pos >= sorted.len() / 2
}

/// `message` to each of `dests`, unchanged: what an adversary sends when
/// it leaves a message alone.
pub fn to_each<M: Clone>(message: &M, dests: Vec<ValidatorIndex>) -> Vec<(ValidatorIndex, M)> {
    dests.into_iter().map(|d| (d, message.clone())).collect()
}

/// Flips one bit of a signature (always the same one, so tests can tell).
pub fn flip(sig: &mut phalanx_crypto::Signature) {
    sig.0[7] ^= 0x20;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviours_parse_and_print_the_same_way() {
        for s in [
            "honest",
            "silent",
            "equivocate",
            "bad-sig",
            "stale-replay",
            "delay:250",
        ] {
            let b: Behaviour = s.parse().unwrap();
            assert_eq!(b.to_string(), s);
        }
        assert_eq!("delay:0".parse::<Behaviour>(), Ok(Behaviour::Delay(0)));
        let err = "lying".parse::<Behaviour>().unwrap_err();
        assert!(err.contains("honest, silent"), "{err}");
        assert!("delay:".parse::<Behaviour>().is_err());
        assert!("delay:-5".parse::<Behaviour>().is_err());
        assert!("delay:99999999".parse::<Behaviour>().is_err());
    }

    #[test]
    fn halves_are_stable_and_both_non_empty() {
        let d: Vec<ValidatorIndex> = [3, 1, 2].into_iter().map(ValidatorIndex).collect();
        let second: Vec<bool> = d.iter().map(|v| second_half(&d, *v)).collect();
        // Sorted 1, 2, 3: 1 in the first half, 2 and 3 in the second.
        assert_eq!(second, vec![true, false, true]);
        let one = [ValidatorIndex(5)];
        assert!(!second_half(&one, ValidatorIndex(5)));
    }

    #[test]
    fn silent_withholds_everything_and_counts_it() {
        let (mut rng, mut collusion, mut stats) =
            (Rng::new(1), Collusion::default(), AdversaryStats::default());
        let mut ctx = Ctx {
            rng: &mut rng,
            collusion: &mut collusion,
            stats: &mut stats,
            now: 0,
        };
        let out = Adversary::<u8>::outgoing(
            &mut Silent,
            &mut ctx,
            7u8,
            vec![ValidatorIndex(1), ValidatorIndex(2)],
        );
        assert!(out.is_empty());
        assert!(Adversary::<u8>::serve_sync(&mut Silent, &mut ctx, Vec::new()).is_none());
        assert_eq!(stats.withheld, 2);
    }
}
