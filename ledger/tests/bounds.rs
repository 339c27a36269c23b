//! What a Byzantine peer can put into the ledger's proofs is bounded before
//! any signature is checked (issue 18, finding 1): a commit certificate
//! holds at most one signature per validator, and one padded with copies
//! of a real vote is refused outright instead of costing a signature check
//! per copy.

mod common;

use common::*;
use phalanx_crypto::Signature;
use phalanx_ledger::{Height, ProofError, ValidatorIndex};
use proptest::prelude::*;

fn padded(copies: usize) -> phalanx_ledger::CommitCertificate {
    let digest = phalanx_crypto::Hash::of(phalanx_crypto::Domain::BlockPayload, &"block 7");
    let mut cert = commit_certificate(0, Height(7), digest);
    let own = cert.commits[0];
    cert.commits.extend(std::iter::repeat_n(own, copies));
    cert
}

#[test]
fn a_certificate_padded_with_copies_of_a_real_vote_is_refused() {
    let g = genesis();
    // Three real COMMITs (a quorum of four) verify; the same three plus
    // copies of validator 0's did too before the bound (each copy costing
    // one signature check: 167,767 of them took 5.9 s in the review).
    assert_eq!(padded(0).verify(CHAIN_ID, &g.validator_keys(), 3), Ok(()));
    for copies in [1, 1_000] {
        assert_eq!(
            padded(copies).verify(CHAIN_ID, &g.validator_keys(), 3),
            Err(ProofError::RepeatedSigner(ValidatorIndex(0))),
            "{copies} copies"
        );
    }
}

#[test]
fn the_shape_is_checked_before_any_signature() {
    let g = genesis();
    // A repeat whose signature is garbage: the answer names the repeat,
    // so no signature was looked at first.
    let mut cert = padded(0);
    cert.commits.push((ValidatorIndex(1), Signature([7; 64])));
    assert_eq!(
        cert.verify(CHAIN_ID, &g.validator_keys(), 3),
        Err(ProofError::RepeatedSigner(ValidatorIndex(1)))
    );
    // Too few distinct signers with garbage signatures: short of a quorum
    // is reported, not the bad signatures.
    let mut short = padded(0);
    short.commits.truncate(2);
    short.commits[1].1 = Signature([7; 64]);
    assert_eq!(
        short.verify(CHAIN_ID, &g.validator_keys(), 3),
        Err(ProofError::NoQuorum {
            valid: 2,
            quorum: 3
        })
    );
    // A signer outside the validator set, whatever it signed.
    let mut stranger = padded(0);
    stranger
        .commits
        .push((ValidatorIndex(4), Signature([0; 64])));
    assert_eq!(
        stranger.verify(CHAIN_ID, &g.validator_keys(), 3),
        Err(ProofError::UnknownSigner(ValidatorIndex(4)))
    );
}

proptest! {
    /// Whatever entry is repeated, wherever, the certificate is refused; a
    /// verified certificate therefore never holds more than n signatures.
    #[test]
    fn any_repeated_signer_is_refused(
        pick in 0usize..3,
        at in 0usize..4,
        garble in any::<bool>(),
    ) {
        let g = genesis();
        let mut cert = padded(0);
        let mut copy = cert.commits[pick];
        if garble {
            copy.1 = Signature([1; 64]);
        }
        let at = at.min(cert.commits.len());
        cert.commits.insert(at, copy);
        prop_assert_eq!(
            cert.verify(CHAIN_ID, &g.validator_keys(), 3),
            Err(ProofError::RepeatedSigner(copy.0))
        );
    }
}
