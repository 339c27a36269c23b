//! PBFT wire messages and their validity checks (PBFT §4.2–§4.4).
//!
//! Every message is signed by the validator it claims to come from, over a
//! domain tag per message kind plus (chain id, view, seq, digest); validity is
//! checked against the validator set, never against the transport sender.

use super::record::{view_promise, vote_promise};
use crate::config::Config;
use crate::engine::{Message, Promise, Statement, Summary};
use phalanx_crypto::{Domain, Hash, Keypair, Signature};
use phalanx_ledger::{
    CommitCertificate, Evidence, Height, Payload, SignedVote, ValidatorIndex, Vote, VoteKind,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A PBFT message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PbftMessage {
    /// The primary's proposal for (view, seq) with the payload (§4.2).
    PrePrepare(PrePrepare),
    /// A backup accepted the pre-prepare (§4.2).
    Prepare(SignedVote),
    /// A replica is prepared (§4.2).
    Commit(SignedVote),
    /// A replica executed up to seq with this block hash (§4.3).
    Checkpoint(SignedVote),
    /// A replica wants to move to a new view (§4.4).
    ViewChange(ViewChange),
    /// The new primary starts its view (§4.4).
    NewView(NewView),
    /// Proof that a validator equivocated.
    Evidence(Evidence),
    /// A replica's timer fired in a view; f+1 of them end the view.
    Complaint(Complaint),
    /// The primary's PRE-PREPARE vote, passed on by a backup that received
    /// it, so that two backups handed different proposals find out (see
    /// the `echo` module).
    Echo(SignedVote),
}

impl PbftMessage {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        self.summary().kind
    }
}

impl Message for PbftMessage {
    /// In variant order (the first byte of the encoding).
    const KINDS: &'static [&'static str] = &[
        "pre_prepare",
        "prepare",
        "commit",
        "checkpoint",
        "view_change",
        "new_view",
        "evidence",
        "complaint",
        "pre_prepare_echo",
    ];

    fn summary(&self) -> Summary {
        let vote = |kind, v: &SignedVote| Summary {
            kind,
            view: v.vote.view,
            seq: v.vote.seq.0,
            signer: v.vote.voter,
            digest: Some(v.vote.digest),
        };
        match self {
            PbftMessage::PrePrepare(pp) => vote("pre_prepare", &pp.vote),
            PbftMessage::Prepare(v) => vote("prepare", v),
            PbftMessage::Commit(v) => vote("commit", v),
            PbftMessage::Checkpoint(v) => vote("checkpoint", v),
            PbftMessage::Evidence(e) => vote("evidence", &e.first),
            PbftMessage::Echo(v) => vote("pre_prepare_echo", v),
            PbftMessage::Complaint(c) => Summary {
                kind: "complaint",
                view: c.view,
                seq: 0,
                signer: c.voter,
                digest: None,
            },
            PbftMessage::ViewChange(vc) => Summary {
                kind: "view_change",
                view: vc.body.new_view,
                seq: vc.body.stable_seq.0,
                signer: vc.body.voter,
                digest: Some(vc.body.stable_digest),
            },
            PbftMessage::NewView(nv) => Summary {
                kind: "new_view",
                view: nv.view,
                seq: nv
                    .pre_prepares
                    .iter()
                    .map(|v| v.vote.seq.0)
                    .max()
                    .unwrap_or(0),
                signer: nv
                    .pre_prepares
                    .first()
                    .map_or(ValidatorIndex(u32::MAX), |v| v.vote.voter),
                digest: None,
            },
        }
    }

    fn votes(&self) -> Vec<&SignedVote> {
        match self {
            PbftMessage::PrePrepare(pp) => vec![&pp.vote],
            PbftMessage::Prepare(v) | PbftMessage::Commit(v) | PbftMessage::Checkpoint(v) => {
                vec![v]
            }
            PbftMessage::NewView(nv) => nv.pre_prepares.iter().collect(),
            // An echo carries the primary's vote, not the sender's.
            PbftMessage::ViewChange(_)
            | PbftMessage::Evidence(_)
            | PbftMessage::Complaint(_)
            | PbftMessage::Echo(_) => Vec::new(),
        }
    }

    fn evidence_offender(&self) -> Option<ValidatorIndex> {
        match self {
            PbftMessage::Evidence(e) => Some(e.offender()),
            _ => None,
        }
    }

    /// The votes `sender` signed in it (a NEW-VIEW relays the VIEW-CHANGEs
    /// of others but its pre-prepares are the new primary's), and the view
    /// a VIEW-CHANGE of its own moves to.
    fn promises(&self, sender: ValidatorIndex) -> Vec<Promise> {
        let mut promises: Vec<Promise> = self
            .votes()
            .into_iter()
            .filter(|v| v.vote.voter == sender)
            .map(vote_promise)
            .collect();
        if let PbftMessage::ViewChange(vc) = self {
            if vc.body.voter == sender {
                promises.push(view_promise(vc.body.new_view));
            }
        }
        promises
    }

    fn statements(&self) -> Vec<Statement> {
        let mut out = Vec::new();
        match self {
            PbftMessage::PrePrepare(pp) => out.push(vote_statement(&pp.vote)),
            PbftMessage::Prepare(v)
            | PbftMessage::Commit(v)
            | PbftMessage::Checkpoint(v)
            | PbftMessage::Echo(v) => out.push(vote_statement(v)),
            PbftMessage::ViewChange(vc) => view_change_statements(vc, &mut out),
            PbftMessage::NewView(nv) => {
                for vc in &nv.view_changes {
                    view_change_statements(vc, &mut out);
                }
                out.extend(nv.pre_prepares.iter().map(vote_statement));
            }
            PbftMessage::Evidence(e) => {
                out.push(vote_statement(&e.first));
                out.push(vote_statement(&e.second));
            }
            PbftMessage::Complaint(c) => out.push(Statement::of(c.voter, "complaint", c)),
        }
        out
    }

    fn describe(&self) -> String {
        let s = self.summary();
        let (voter, view, seq) = (s.signer, s.view, s.seq);
        match self {
            PbftMessage::PrePrepare(pp) => format!(
                "pre-prepare v{view} s{seq} by {voter} ({} txs, {})",
                pp.payload.txs.len(),
                s.short_digest()
            ),
            PbftMessage::Prepare(_) | PbftMessage::Commit(_) | PbftMessage::Checkpoint(_) => {
                format!("{} v{view} s{seq} by {voter} ({})", s.kind, s.short_digest())
            }
            PbftMessage::ViewChange(vc) => format!(
                "view-change to v{view} by {voter} (stable {seq}, {} prepared, {} committed, {} complaints)",
                vc.body.prepared.len(),
                vc.body.committed.len(),
                vc.justification.len()
            ),
            PbftMessage::NewView(nv) => format!(
                "new-view v{view} ({} view-changes, {} pre-prepares)",
                nv.view_changes.len(),
                nv.pre_prepares.len()
            ),
            PbftMessage::Evidence(_) => format!("evidence against {voter} (v{view} s{seq})"),
            PbftMessage::Complaint(_) => format!("complaint about v{view} by {voter}"),
            PbftMessage::Echo(_) => format!(
                "echo of {voter}'s pre-prepare v{view} s{seq} ({})",
                s.short_digest()
            ),
        }
    }
}

/// PRE-PREPARE: the primary's signed vote for (view, seq, digest) and the payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrePrepare {
    /// Signed by the primary of `vote.view`, kind `PrePrepare`.
    pub vote: SignedVote,
    /// The payload whose digest is `vote.digest`.
    pub payload: Payload,
}

/// A prepared certificate: a pre-prepare and quorum−1 matching prepares from
/// distinct backups (§4.2 "prepared(m, v, n, i)"). Digests only, as in the
/// paper: a VIEW-CHANGE carries no payloads, so its size does not grow
/// with the blocks in flight (a full window of 2,000-transaction blocks
/// made a 17 MiB VIEW-CHANGE and a 51 MiB NEW-VIEW when it did). A replica
/// that must execute a payload it never received gets the block by
/// catch-up; at least f+1 honest replicas checked and kept every payload a
/// certificate names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedCert {
    /// The primary's pre-prepare vote.
    pub pre_prepare: SignedVote,
    /// Matching prepares from distinct backups.
    pub prepares: Vec<SignedVote>,
}

/// A committed slot in a VIEW-CHANGE: its commit certificate (quorum signed
/// COMMITs). Stronger than a prepared certificate; a replica that learnt a
/// block by catch-up has this and no prepared certificate, and must still
/// make the next view keep that block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedProof {
    /// The commit certificate.
    pub cert: CommitCertificate,
}

impl CommittedProof {
    /// Checks the certificate against the validator set.
    pub fn verify(&self, cfg: &Config) -> Result<(), MessageError> {
        self.cert
            .verify(&cfg.chain_id, &cfg.validators, cfg.quorums.quorum)
            .map_err(|_| MessageError::NoQuorum("commit certificate"))
    }
}

/// The signed part of a VIEW-CHANGE.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewChangeBody {
    /// The view to move to (v+1 in the paper).
    pub new_view: u64,
    /// The sender's last stable checkpoint (n in the paper).
    pub stable_seq: Height,
    /// The block hash at `stable_seq`.
    pub stable_digest: Hash,
    /// Quorum CHECKPOINT votes proving it (empty for the genesis checkpoint).
    pub checkpoint_proof: Vec<SignedVote>,
    /// Prepared certificates for sequence numbers above `stable_seq` (P).
    pub prepared: Vec<PreparedCert>,
    /// Commit certificates for sequence numbers above `stable_seq`; a seq
    /// appears here or in `prepared`, not both.
    pub committed: Vec<CommittedProof>,
    /// The sender.
    pub voter: ValidatorIndex,
}

/// VIEW-CHANGE (§4.4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewChange {
    /// The content.
    pub body: ViewChangeBody,
    /// The sender's signature over `(chain_id, body)`.
    pub signature: Signature,
    /// Why the view before `body.new_view` ended: f+1 COMPLAINTs about it
    /// from distinct validators (so at least one honest replica's timer
    /// fired there). A replica in an earlier view that receives them joins
    /// the view change, so a replica is never left ahead alone. Outside
    /// the signature: each complaint is signed, and a resend may carry
    /// more than the first send. Empty when the view change has another
    /// reason (evidence against the primary, f+1 VIEW-CHANGEs, a restart).
    pub justification: Vec<Complaint>,
}

/// NEW-VIEW (§4.4): the view changes it was built from and the pre-prepares
/// (O) for the sequence numbers it carries over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewView {
    /// The new view.
    pub view: u64,
    /// Quorum valid VIEW-CHANGEs for `view` from distinct validators (V).
    pub view_changes: Vec<ViewChange>,
    /// Pre-prepare votes by the new primary, one per seq in (min-s, max-s] (O).
    pub pre_prepares: Vec<SignedVote>,
    /// The new primary's signature over `(chain_id, view, view-change hashes, pre_prepares)`.
    pub signature: Signature,
}

/// Why a message was dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The signer is not a validator.
    #[error("signer {0} is not a validator")]
    UnknownSigner(ValidatorIndex),
    /// A signature does not verify.
    #[error("bad signature from {0}")]
    BadSignature(ValidatorIndex),
    /// The vote is of the wrong kind for this message.
    #[error("wrong vote kind")]
    WrongKind,
    /// Signed by somebody other than the view's primary.
    #[error("not signed by the primary of view {0}")]
    NotPrimary(u64),
    /// The payload does not match the digest, height or chain.
    #[error("payload does not match: {0}")]
    BadPayload(&'static str),
    /// A certificate or proof lacks a quorum.
    #[error("not enough valid votes: {0}")]
    NoQuorum(&'static str),
    /// The content is inconsistent.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// One validator appears twice where each may appear once (a padded
    /// certificate or NEW-VIEW, two pieces of evidence against one
    /// validator in a payload).
    #[error("a validator appears twice in {0}")]
    Repeated(&'static str),
}

/// Checks a signed vote's kind, signer and signature.
pub fn verify_vote(cfg: &Config, vote: &SignedVote, kind: VoteKind) -> Result<(), MessageError> {
    if vote.vote.kind != kind {
        return Err(MessageError::WrongKind);
    }
    let key = cfg
        .key(vote.vote.voter)
        .ok_or(MessageError::UnknownSigner(vote.vote.voter))?;
    vote.verify(&cfg.chain_id, key)
        .map_err(|_| MessageError::BadSignature(vote.vote.voter))
}

/// Checks a payload against the (view-independent) rules for a seq and digest.
pub fn check_payload(
    cfg: &Config,
    payload: &Payload,
    seq: Height,
    digest: &Hash,
) -> Result<(), MessageError> {
    if payload.chain_id != cfg.chain_id {
        return Err(MessageError::BadPayload("chain id"));
    }
    if payload.height != seq {
        return Err(MessageError::BadPayload("height"));
    }
    if payload.txs.len() > cfg.params.max_block_txs as usize {
        return Err(MessageError::BadPayload("too many transactions"));
    }
    if payload.proposer.as_usize() >= cfg.n() {
        return Err(MessageError::BadPayload("proposer"));
    }
    // At most one piece of evidence per validator (so at most n), counted
    // before any of their signatures is checked: one is enough to prove a
    // validator faulty, and a Byzantine validator can sign any number of
    // distinct ones against itself.
    if payload.evidence.len() > cfg.n() {
        return Err(MessageError::BadPayload("more evidence than validators"));
    }
    let mut offenders = BTreeSet::new();
    for e in &payload.evidence {
        if !offenders.insert(e.offender()) {
            return Err(MessageError::Repeated("a payload's evidence"));
        }
    }
    for e in &payload.evidence {
        e.verify(&cfg.chain_id, &cfg.validators)
            .map_err(|_| MessageError::BadPayload("invalid evidence"))?;
    }
    if payload.digest() != *digest {
        return Err(MessageError::BadPayload("digest"));
    }
    Ok(())
}

/// Checks that `votes` hold at least `needed` valid votes of `kind` for
/// (view, seq, digest) from distinct validators, none of them in `excluded`.
///
/// The shape is checked before any signature: every vote is for the slot,
/// no validator appears twice (so there are at most n votes), and there
/// are enough of them. A certificate padded with copies of one real vote
/// is refused at the cost of this loop, not of a signature check per copy.
fn check_quorum(
    cfg: &Config,
    votes: &[SignedVote],
    kind: VoteKind,
    slot: (Option<u64>, Height, &Hash),
    excluded: Option<ValidatorIndex>,
    needed: usize,
    what: &'static str,
) -> Result<(), MessageError> {
    let mut voters = BTreeSet::new();
    for v in votes {
        let matches = slot.0.is_none_or(|view| v.vote.view == view)
            && v.vote.seq == slot.1
            && v.vote.digest == *slot.2;
        if !matches || Some(v.vote.voter) == excluded {
            return Err(MessageError::Malformed(what));
        }
        if v.vote.voter.as_usize() >= cfg.n() {
            return Err(MessageError::UnknownSigner(v.vote.voter));
        }
        if !voters.insert(v.vote.voter) {
            return Err(MessageError::Repeated(what));
        }
    }
    if voters.len() < needed {
        return Err(MessageError::NoQuorum(what));
    }
    for v in votes {
        verify_vote(cfg, v, kind)?;
    }
    Ok(())
}

impl PreparedCert {
    /// The (view, seq, digest) it certifies.
    pub fn slot(&self) -> (u64, Height, Hash) {
        let v = &self.pre_prepare.vote;
        (v.view, v.seq, v.digest)
    }

    /// Checks the certificate: a pre-prepare by the primary of its view and
    /// quorum−1 matching prepares from distinct backups.
    pub fn verify(&self, cfg: &Config) -> Result<(), MessageError> {
        let (view, seq, digest) = self.slot();
        verify_vote(cfg, &self.pre_prepare, VoteKind::PrePrepare)?;
        if self.pre_prepare.vote.voter != cfg.primary(view) {
            return Err(MessageError::NotPrimary(view));
        }
        check_quorum(
            cfg,
            &self.prepares,
            VoteKind::Prepare,
            (Some(view), seq, &digest),
            Some(cfg.primary(view)),
            cfg.quorums.quorum - 1,
            "prepared certificate",
        )
    }
}

/// COMPLAINT: the signed statement of `voter` that `view` failed for it
/// (its progress timer fired there with work pending, or its view-change
/// timer while waiting for the view's NEW-VIEW). Unlike a VIEW-CHANGE it
/// promises nothing: the sender keeps working in `view`. Once f+1
/// validators complained about a view (so at least one honest replica),
/// every replica that sees the complaints moves to the next view. A replica
/// whose link alone failed therefore stays in the view the others run,
/// instead of waiting alone in a view change nobody joins (issue 22).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Complaint {
    /// The view that failed.
    pub view: u64,
    /// Who complains.
    pub voter: ValidatorIndex,
    /// The voter's signature over `(chain_id, view, voter)`.
    pub signature: Signature,
}

impl Complaint {
    /// Signs a complaint about `view`.
    pub fn sign(view: u64, voter: ValidatorIndex, chain_id: &str, key: &Keypair) -> Complaint {
        let signature = key.sign(
            Domain::PbftComplaint,
            &Signed {
                chain_id,
                body: &(view, voter),
            },
        );
        Complaint {
            view,
            voter,
            signature,
        }
    }

    /// Checks that a validator signed it.
    pub fn verify(&self, cfg: &Config) -> Result<(), MessageError> {
        let key = cfg
            .key(self.voter)
            .ok_or(MessageError::UnknownSigner(self.voter))?;
        key.verify(
            Domain::PbftComplaint,
            &Signed {
                chain_id: &cfg.chain_id,
                body: &(self.view, self.voter),
            },
            &self.signature,
        )
        .map_err(|_| MessageError::BadSignature(self.voter))
    }
}

/// A signed vote as a [`Statement`].
fn vote_statement(v: &SignedVote) -> Statement {
    Statement::of(v.vote.voter, vote_promise(v).what, v)
}

/// A VIEW-CHANGE and every statement inside it: its checkpoint proof,
/// prepared certificates, commit certificates and complaints.
fn view_change_statements(vc: &ViewChange, out: &mut Vec<Statement>) {
    let b = &vc.body;
    out.push(Statement::of(b.voter, "view-change", &(b, &vc.signature)));
    out.extend(b.checkpoint_proof.iter().map(vote_statement));
    for p in &b.prepared {
        out.push(vote_statement(&p.pre_prepare));
        out.extend(p.prepares.iter().map(vote_statement));
    }
    for c in &b.committed {
        let cert = &c.cert;
        for (voter, signature) in &cert.commits {
            let vote = Vote {
                kind: VoteKind::Commit,
                view: cert.view,
                seq: cert.seq,
                digest: cert.digest,
                voter: *voter,
            };
            out.push(vote_statement(&SignedVote {
                vote,
                signature: *signature,
            }));
        }
    }
    for c in &vc.justification {
        out.push(Statement::of(c.voter, "complaint", c));
    }
}

#[derive(Serialize)]
struct Signed<'a, T> {
    chain_id: &'a str,
    body: &'a T,
}

impl ViewChange {
    /// Signs a view change.
    pub fn sign(body: ViewChangeBody, chain_id: &str, key: &Keypair) -> ViewChange {
        let signature = key.sign(
            Domain::PbftViewChange,
            &Signed {
                chain_id,
                body: &body,
            },
        );
        ViewChange {
            body,
            signature,
            justification: Vec::new(),
        }
    }

    /// Checks the sender's signature over the body (one check; what
    /// [`ViewChange::verify`] does first).
    pub fn verify_signature(&self, cfg: &Config) -> Result<(), MessageError> {
        let b = &self.body;
        let key = cfg
            .key(b.voter)
            .ok_or(MessageError::UnknownSigner(b.voter))?;
        key.verify(
            Domain::PbftViewChange,
            &Signed {
                chain_id: &cfg.chain_id,
                body: b,
            },
            &self.signature,
        )
        .map_err(|_| MessageError::BadSignature(b.voter))
    }

    /// Checks the signature, the checkpoint proof and every prepared
    /// certificate. Each certificate holds at most one vote per validator,
    /// and there is at most one per seq in the watermark window, so a
    /// valid VIEW-CHANGE is bounded whatever its sender wanted.
    pub fn verify(&self, cfg: &Config) -> Result<(), MessageError> {
        let b = &self.body;
        // Complaints travel outside the signature; at most one per validator.
        if self.justification.len() > cfg.n() {
            return Err(MessageError::Malformed("more complaints than validators"));
        }
        self.verify_signature(cfg)?;
        if b.stable_seq != Height::GENESIS {
            check_quorum(
                cfg,
                &b.checkpoint_proof,
                VoteKind::Checkpoint,
                (None, b.stable_seq, &b.stable_digest),
                None,
                cfg.quorums.quorum,
                "checkpoint proof",
            )?;
        }
        let mut seqs = BTreeSet::new();
        for p in &b.prepared {
            let (view, seq, _) = p.slot();
            if view >= b.new_view
                || seq <= b.stable_seq
                || seq.0 > b.stable_seq.0 + cfg.params.watermark_window
            {
                return Err(MessageError::Malformed("prepared certificate out of range"));
            }
            if !seqs.insert(seq) {
                return Err(MessageError::Malformed(
                    "two prepared certificates for one seq",
                ));
            }
            p.verify(cfg)?;
        }
        for c in &b.committed {
            let seq = c.cert.seq;
            if c.cert.view >= b.new_view
                || seq <= b.stable_seq
                || seq.0 > b.stable_seq.0 + cfg.params.watermark_window
            {
                return Err(MessageError::Malformed("commit certificate out of range"));
            }
            if !seqs.insert(seq) {
                return Err(MessageError::Malformed("two certificates for one seq"));
            }
            c.verify(cfg)?;
        }
        Ok(())
    }

    /// A digest identifying this view change (for the NEW-VIEW signature).
    pub fn id(&self) -> Hash {
        Hash::of(Domain::PbftViewChange, self)
    }
}

#[derive(Serialize)]
struct NewViewSigned<'a> {
    chain_id: &'a str,
    view: u64,
    view_changes: Vec<Hash>,
    pre_prepares: &'a [SignedVote],
}

impl NewView {
    fn signed_part<'a>(
        chain_id: &'a str,
        view: u64,
        vcs: &[ViewChange],
        pps: &'a [SignedVote],
    ) -> NewViewSigned<'a> {
        NewViewSigned {
            chain_id,
            view,
            view_changes: vcs.iter().map(ViewChange::id).collect(),
            pre_prepares: pps,
        }
    }

    /// Signs a NEW-VIEW.
    pub fn sign(
        view: u64,
        view_changes: Vec<ViewChange>,
        pre_prepares: Vec<SignedVote>,
        chain_id: &str,
        key: &Keypair,
    ) -> NewView {
        let signature = key.sign(
            Domain::PbftNewView,
            &NewView::signed_part(chain_id, view, &view_changes, &pre_prepares),
        );
        NewView {
            view,
            view_changes,
            pre_prepares,
            signature,
        }
    }

    /// Checks the new primary's signature (the content is checked by recomputation).
    pub fn verify_signature(&self, cfg: &Config) -> Result<(), MessageError> {
        let primary = cfg.primary(self.view);
        let key = cfg
            .key(primary)
            .ok_or(MessageError::UnknownSigner(primary))?;
        key.verify(
            Domain::PbftNewView,
            &NewView::signed_part(
                &cfg.chain_id,
                self.view,
                &self.view_changes,
                &self.pre_prepares,
            ),
            &self.signature,
        )
        .map_err(|_| MessageError::BadSignature(primary))
    }
}
