//! Signed consensus votes, commit certificates and equivocation evidence.
//!
//! These are data the ledger stores (in blocks, in the evidence column, in
//! the consensus write-ahead state) and that anyone can check against the
//! validator set, so their signed form is defined here, once.

use crate::types::{Height, ValidatorIndex};
use phalanx_crypto::{Domain, Hash, Keypair, PublicKey, Signature, SignatureError};
use serde::{Deserialize, Serialize};

/// Which step of an engine a vote belongs to. Each has its own signing domain,
/// so a vote of one kind can never be replayed as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum VoteKind {
    /// PBFT PRE-PREPARE (the primary's proposal).
    PrePrepare,
    /// PBFT PREPARE.
    Prepare,
    /// PBFT COMMIT.
    Commit,
    /// PBFT CHECKPOINT (digest = block hash at the checkpoint height).
    Checkpoint,
    /// A CFT leader's append for a log slot (term = view).
    CftAppend,
    /// A PoS slot leader's block.
    PosBlock,
}

impl VoteKind {
    /// The signing domain of this kind.
    pub fn domain(self) -> Domain {
        match self {
            VoteKind::PrePrepare => Domain::PbftPrePrepare,
            VoteKind::Prepare => Domain::PbftPrepare,
            VoteKind::Commit => Domain::PbftCommit,
            VoteKind::Checkpoint => Domain::PbftCheckpoint,
            VoteKind::CftAppend => Domain::CftMessage,
            VoteKind::PosBlock => Domain::PosBlock,
        }
    }
}

/// The signed content of a vote: what a validator says about slot (view, seq).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vote {
    /// The step.
    pub kind: VoteKind,
    /// The view (PBFT), term (CFT) or slot (PoS).
    pub view: u64,
    /// The sequence number / height voted on.
    pub seq: Height,
    /// The digest voted for.
    pub digest: Hash,
    /// The voter.
    pub voter: ValidatorIndex,
}

/// What is actually signed: the chain id travels in the signed bytes so a
/// vote on one chain is worthless on another.
#[derive(Serialize)]
struct VoteSigningPayload<'a> {
    chain_id: &'a str,
    vote: &'a Vote,
}

impl Vote {
    /// Signs this vote for `chain_id`.
    pub fn sign(self, chain_id: &str, key: &Keypair) -> SignedVote {
        let signature = key.sign(
            self.kind.domain(),
            &VoteSigningPayload {
                chain_id,
                vote: &self,
            },
        );
        SignedVote {
            vote: self,
            signature,
        }
    }

    /// The bytes a voter signs for `chain_id`.
    pub fn signing_bytes(&self, chain_id: &str) -> Vec<u8> {
        phalanx_crypto::signing_bytes(
            self.kind.domain(),
            &VoteSigningPayload {
                chain_id,
                vote: self,
            },
        )
    }

    /// Whether two votes are for the same slot: same kind, view and sequence.
    pub fn same_slot(&self, other: &Vote) -> bool {
        self.kind == other.kind && self.view == other.view && self.seq == other.seq
    }
}

/// A vote with its signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedVote {
    /// The vote.
    pub vote: Vote,
    /// The voter's signature over [`Vote::signing_bytes`].
    pub signature: Signature,
}

impl SignedVote {
    /// Checks the signature against the voter's key.
    pub fn verify(&self, chain_id: &str, voter_key: &PublicKey) -> Result<(), SignatureError> {
        voter_key.verify_bytes(&self.vote.signing_bytes(chain_id), &self.signature)
    }
}

/// Proof that a block was committed by PBFT: 2f+1 signed COMMITs for
/// (view, seq, digest) from distinct validators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitCertificate {
    /// The view the commits were cast in.
    pub view: u64,
    /// The sequence number (= block height).
    pub seq: Height,
    /// The committed payload digest ([`crate::BlockHeader::payload_digest`]).
    pub digest: Hash,
    /// (voter, signature) pairs, sorted by voter.
    pub commits: Vec<(ValidatorIndex, Signature)>,
}

/// Why a certificate or evidence does not check out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Fewer distinct signers than the quorum.
    #[error("certificate has {valid} distinct signers, needs {quorum}")]
    NoQuorum {
        /// Distinct signers.
        valid: usize,
        /// Signers needed.
        quorum: usize,
    },
    /// A signer index is not in the validator set.
    #[error("signer {0} is not a validator")]
    UnknownSigner(ValidatorIndex),
    /// A signature does not verify.
    #[error("signature of validator {0} does not verify")]
    BadSignature(ValidatorIndex),
    /// Evidence whose two votes do not conflict.
    #[error("the two votes do not conflict")]
    NotConflicting,
    /// A validator's signature appears twice (a padded certificate).
    #[error("validator {0} signed the certificate twice")]
    RepeatedSigner(ValidatorIndex),
}

impl CommitCertificate {
    /// Checks that at least `quorum` distinct validators of `validators`
    /// signed COMMIT for (view, seq, digest) on `chain_id`.
    pub fn verify(
        &self,
        chain_id: &str,
        validators: &[PublicKey],
        quorum: usize,
    ) -> Result<(), ProofError> {
        // The shape first, before any signature is checked: at most one
        // signature per validator (so at most n), and enough of them. A
        // certificate padded with copies of one vote costs its receiver
        // nothing but this loop.
        let mut seen = std::collections::BTreeSet::new();
        for (voter, _) in &self.commits {
            if voter.as_usize() >= validators.len() {
                return Err(ProofError::UnknownSigner(*voter));
            }
            if !seen.insert(*voter) {
                return Err(ProofError::RepeatedSigner(*voter));
            }
        }
        if seen.len() < quorum {
            return Err(ProofError::NoQuorum {
                valid: seen.len(),
                quorum,
            });
        }
        for (voter, signature) in &self.commits {
            let key = &validators[voter.as_usize()];
            let vote = Vote {
                kind: VoteKind::Commit,
                view: self.view,
                seq: self.seq,
                digest: self.digest,
                voter: *voter,
            };
            SignedVote {
                vote,
                signature: *signature,
            }
            .verify(chain_id, key)
            .map_err(|_| ProofError::BadSignature(*voter))?;
        }
        Ok(())
    }
}

/// Proof that a validator signed two different digests for one slot.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Evidence {
    /// The first signed vote.
    pub first: SignedVote,
    /// The second, conflicting, signed vote.
    pub second: SignedVote,
}

impl Evidence {
    /// The accused validator.
    pub fn offender(&self) -> ValidatorIndex {
        self.first.vote.voter
    }

    /// A stable identifier (the same evidence from any node has the same id).
    pub fn id(&self) -> Hash {
        // Order the pair so (a, b) and (b, a) are one piece of evidence.
        let (a, b) = if self.first.signature.0 <= self.second.signature.0 {
            (&self.first, &self.second)
        } else {
            (&self.second, &self.first)
        };
        Hash::of(Domain::Evidence, &(a, b))
    }

    /// Checks that both votes are by the same validator, for the same slot,
    /// for different digests, and correctly signed.
    pub fn verify(&self, chain_id: &str, validators: &[PublicKey]) -> Result<(), ProofError> {
        let (a, b) = (&self.first.vote, &self.second.vote);
        if a.voter != b.voter || !a.same_slot(b) || a.digest == b.digest {
            return Err(ProofError::NotConflicting);
        }
        let key = validators
            .get(a.voter.as_usize())
            .ok_or(ProofError::UnknownSigner(a.voter))?;
        for v in [&self.first, &self.second] {
            v.verify(chain_id, key)
                .map_err(|_| ProofError::BadSignature(a.voter))?;
        }
        Ok(())
    }
}
