//! What a PBFT replica persists, and the log keys of each record.

use super::messages::{Complaint, NewView, PreparedCert};
use crate::engine::{Promise, Record, RecordKey};
use phalanx_crypto::Hash;
use phalanx_ledger::{Height, Payload, SignedVote, VoteKind};
use serde::{Deserialize, Serialize};

/// State a PBFT replica needs to find again after a restart.
///
/// The variant order is the encoding (postcard writes the variant index):
/// index 4 belonged to the CFT baseline when all engines shared one record
/// type and is kept unused, so a log written before decodes unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PbftRecord {
    /// A vote this validator signed; it must never sign a different digest
    /// for the same (kind, view, seq).
    Vote(SignedVote),
    /// The view this validator has moved to (it never goes back); `active`
    /// is false while the view change to it is under way.
    View {
        /// The view.
        view: u64,
        /// Whether its NEW-VIEW was accepted.
        active: bool,
    },
    /// A prepared certificate with its payload, kept so a restarted
    /// replica still reports it in VIEW-CHANGE and can still execute (and
    /// serve) the payload (persisted before the COMMIT it leads to is
    /// sent). Encoded as the certificate followed by the payload, as
    /// before certificates lost their payloads.
    Prepared(PreparedRecord),
    /// A stable checkpoint with its proof: records at or below `seq` may be pruned.
    StableCheckpoint {
        /// The checkpoint height.
        seq: Height,
        /// The block hash at that height.
        digest: Hash,
        /// Quorum CHECKPOINT votes.
        proof: Vec<SignedVote>,
    },
    /// Never written (see the type's note); ignored on restore.
    #[doc(hidden)]
    Unused,
    /// The NEW-VIEW of the view this replica entered last, kept so it can
    /// still hand it to a replica that missed it after both restarted (a
    /// replica restored in a view change otherwise waits alone while the
    /// others run the view: issue 22). Only the latest one matters.
    NewView(NewView),
    /// The f+1 COMPLAINTs that justify the view change under way, kept so
    /// the VIEW-CHANGE resent after a restart still makes the replicas in
    /// the earlier view join it. Only the latest matters.
    ViewJustification(Vec<Complaint>),
    /// A prepared certificate for a payload this replica has not received
    /// (it prepared a NEW-VIEW's re-proposal by digest): same key as
    /// `Prepared`.
    PreparedDigest(PreparedCert),
}

/// A prepared certificate and the payload it certifies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedRecord {
    /// The certificate.
    pub cert: PreparedCert,
    /// The payload whose digest the certificate names.
    pub payload: Payload,
}

/// The promise a signed PBFT vote makes: one digest per (kind, view, seq).
pub(crate) fn vote_promise(v: &SignedVote) -> Promise {
    Promise {
        what: match v.vote.kind {
            VoteKind::PrePrepare => "pre-prepare",
            VoteKind::Prepare => "prepare",
            VoteKind::Commit => "commit",
            VoteKind::Checkpoint => "checkpoint",
            VoteKind::CftAppend => "cft-append",
            VoteKind::PosBlock => "pos-block",
        },
        view: v.vote.view,
        seq: v.vote.seq.0,
        digest: v.vote.digest,
    }
}

/// The promise a VIEW-CHANGE makes: this replica left every view below.
pub(crate) fn view_promise(view: u64) -> Promise {
    Promise {
        what: "view",
        view,
        seq: 0,
        digest: Hash::ZERO,
    }
}

impl Record for PbftRecord {
    /// Votes by (seq, kind, view) and prepared certificates by seq, so a
    /// stable checkpoint prunes a known range; the rest one key each.
    fn key(&self) -> RecordKey {
        match self {
            PbftRecord::Vote(v) => RecordKey::at(
                b"vote/",
                v.vote.seq,
                &phalanx_crypto::encode(&(v.vote.kind, v.vote.view)),
            ),
            PbftRecord::View { .. } => RecordKey::single(b"view"),
            PbftRecord::Prepared(PreparedRecord { cert, .. })
            | PbftRecord::PreparedDigest(cert) => RecordKey::at(b"prep/", cert.slot().1, &[]),
            PbftRecord::StableCheckpoint { .. } => RecordKey::single(b"stable"),
            PbftRecord::Unused => RecordKey::single(b"unused"),
            PbftRecord::NewView(_) => RecordKey::single(b"newview"),
            PbftRecord::ViewJustification(_) => RecordKey::single(b"complaints"),
        }
    }

    fn prunes_up_to(&self) -> Option<Height> {
        match self {
            PbftRecord::StableCheckpoint { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    fn promises(&self) -> Vec<Promise> {
        match self {
            PbftRecord::Vote(v) => vec![vote_promise(v)],
            PbftRecord::View { view, .. } => vec![view_promise(*view)],
            _ => Vec::new(),
        }
    }
}
