//! The message log of one sequence number (PBFT §4.2): the pre-prepare, the
//! prepares and commits per view, the payloads seen, and the certificates
//! they add up to. Pure bookkeeping; the handlers decide what to do with it.

use super::messages::PreparedCert;
use phalanx_crypto::Hash;
use phalanx_ledger::{CommitCertificate, Evidence, Payload, SignedVote, ValidatorIndex};
use std::collections::BTreeMap;

/// Votes of one kind for one (view, seq), by voter. Only the first vote of a
/// voter counts; a second one with another digest is evidence.
#[derive(Clone, Debug, Default)]
pub struct VoteSet {
    votes: BTreeMap<(u64, ValidatorIndex), SignedVote>,
}

/// What inserting a vote did.
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    /// A new vote.
    New,
    /// The same vote again.
    Duplicate,
    /// A different digest from the same voter for the same slot.
    Equivocation(Box<Evidence>),
}

impl VoteSet {
    /// Records a vote (already verified).
    pub fn insert(&mut self, vote: SignedVote) -> Inserted {
        let key = (vote.vote.view, vote.vote.voter);
        match self.votes.get(&key) {
            None => {
                self.votes.insert(key, vote);
                Inserted::New
            }
            Some(first) if first.vote.digest == vote.vote.digest => Inserted::Duplicate,
            Some(first) => Inserted::Equivocation(Box::new(Evidence {
                first: *first,
                second: vote,
            })),
        }
    }

    /// The votes in `view` for `digest`, excluding `excluded`.
    pub fn matching(
        &self,
        view: u64,
        digest: &Hash,
        excluded: Option<ValidatorIndex>,
    ) -> Vec<SignedVote> {
        self.votes
            .range((view, ValidatorIndex(0))..=(view, ValidatorIndex(u32::MAX)))
            .map(|(_, v)| *v)
            .filter(|v| v.vote.digest == *digest && Some(v.vote.voter) != excluded)
            .collect()
    }

    /// Digests with at least one vote in `view`.
    pub fn digests(&self, view: u64) -> Vec<Hash> {
        let mut ds: Vec<Hash> = self
            .votes
            .range((view, ValidatorIndex(0))..=(view, ValidatorIndex(u32::MAX)))
            .map(|(_, v)| v.vote.digest)
            .collect();
        ds.sort();
        ds.dedup();
        ds
    }

    /// Forgets votes of views below `view`.
    pub fn retain_from(&mut self, view: u64) {
        self.votes.retain(|(v, _), _| *v >= view);
    }
}

/// Everything known about one sequence number.
#[derive(Clone, Debug, Default)]
pub struct Slot {
    /// The accepted pre-prepare per view: the primary's signed vote.
    pub pre_prepares: BTreeMap<u64, SignedVote>,
    /// Payloads seen for this seq, by digest.
    pub payloads: BTreeMap<Hash, Payload>,
    /// PREPARE votes.
    pub prepares: VoteSet,
    /// COMMIT votes.
    pub commits: VoteSet,
    /// The prepared certificate of the highest view this replica prepared in.
    pub prepared: Option<PreparedCert>,
    /// The views in which this replica sent COMMIT.
    pub commit_sent: Option<u64>,
    /// Set once the slot is committed: the certificate.
    pub committed: Option<CommitCertificate>,
}

impl Slot {
    /// The pre-prepared digest in `view`, if any.
    pub fn digest_in(&self, view: u64) -> Option<Hash> {
        self.pre_prepares.get(&view).map(|v| v.vote.digest)
    }

    /// Keeps `cert` unless a prepared certificate of a later view is held.
    pub fn keep_prepared(&mut self, cert: PreparedCert) {
        if self
            .prepared
            .as_ref()
            .is_none_or(|p| p.slot().0 < cert.slot().0)
        {
            self.prepared = Some(cert);
        }
    }

    /// The committed payload, if the slot is committed and the payload known.
    pub fn committed_payload(&self) -> Option<(&CommitCertificate, &Payload)> {
        let cert = self.committed.as_ref()?;
        Some((cert, self.payloads.get(&cert.digest)?))
    }
}
