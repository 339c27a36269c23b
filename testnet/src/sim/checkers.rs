//! The properties every schedule is checked against, after every step.
//!
//! - Agreement: no two honest validators commit different blocks at one
//!   height (block hashes cover the payload and the state root).
//! - Validity: an independent model of the ledger rules replays each honest
//!   validator's chain; a transaction may succeed only if it is correctly
//!   signed by its sender, for this chain, with the sender's next nonce and
//!   enough funds, and a failed one must change nothing.
//! - No honest double-signing, across restarts: every vote an honest
//!   validator ever sends is remembered; two for one (kind, view, seq) with
//!   different digests are a violation — and so is a vote sent before the
//!   `Persist` that protects it (save before send).
//! - Certificates, commit order, evidence: an honest validator commits each
//!   height once, in order, with a quorum certificate for that payload, and
//!   never accuses an honest validator of equivocation.
//! - Liveness is checked by the world loop (it needs the clock).
//!
//! This module only observes; it never changes what the simulation does.

use phalanx_consensus::{FaultModel, Statement};
use phalanx_crypto::Hash;
use phalanx_ledger::{
    Account, Address, Block, Genesis, Height, Justification, Receipt, SignedTransaction, State,
    ValidatorIndex,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Which property broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationKind {
    /// Two honest validators committed different blocks at one height.
    Agreement,
    /// A transaction changed state it must not have (or a valid one failed).
    Validity,
    /// An honest validator signed two digests for one (kind, view, seq).
    DoubleSign,
    /// An honest validator sent a vote before persisting it.
    SendBeforePersist,
    /// Honest validators did not commit every valid transaction in time.
    Liveness,
    /// `Engine::check_invariants` failed on an honest engine.
    Invariant,
    /// An honest engine committed out of height order.
    CommitOrder,
    /// An honest engine committed without a valid quorum certificate.
    Certificate,
    /// An honest engine accused an honest validator.
    FalseEvidence,
    /// An honest validator passed on, in another honest validator's name,
    /// a statement that validator never sent.
    Impersonation,
    /// An honest validator sent a message larger than its kind allows.
    MessageSize,
    /// Longest-chain engines: too few of the settled blocks of the
    /// longest honest chain were made by honest validators.
    ChainQuality,
    /// Something panicked.
    Panic,
    /// The schedule needed more events than any sane run (a message storm).
    EventBudget,
    /// A final block moved backwards or left the chain (PBFT with a
    /// fallback: S2, S3, S4).
    Finality,
}

impl ViolationKind {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            ViolationKind::Agreement => "agreement",
            ViolationKind::Validity => "validity",
            ViolationKind::DoubleSign => "double-sign",
            ViolationKind::SendBeforePersist => "send-before-persist",
            ViolationKind::Liveness => "liveness",
            ViolationKind::Invariant => "invariant",
            ViolationKind::CommitOrder => "commit-order",
            ViolationKind::Certificate => "certificate",
            ViolationKind::FalseEvidence => "false-evidence",
            ViolationKind::Impersonation => "impersonation",
            ViolationKind::MessageSize => "message-size",
            ViolationKind::ChainQuality => "chain-quality",
            ViolationKind::Panic => "panic",
            ViolationKind::EventBudget => "event-budget",
            ViolationKind::Finality => "finality",
        }
    }
}

/// One broken property, with when and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Which property.
    pub kind: ViolationKind,
    /// Simulated time.
    pub at_ms: u64,
    /// What exactly.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {} ms: {}",
            self.kind.name(),
            self.at_ms,
            self.detail
        )
    }
}

/// Cross-validator safety state: committed hashes by height and every
/// promise honest validators made.
#[derive(Debug, Default)]
pub struct Safety {
    committed: BTreeMap<Height, (Hash, usize)>,
    promises: BTreeMap<(ValidatorIndex, &'static str, u64, u64), Hash>,
    /// Every statement an honest validator signed and sent, by fingerprint.
    said: BTreeSet<(ValidatorIndex, Hash)>,
}

impl Safety {
    /// Agreement: `block` committed by honest slot `slot`.
    pub fn on_commit(&mut self, slot: usize, block: &Block) -> Option<String> {
        let (height, hash) = (block.height(), block.hash());
        match self.committed.get(&height) {
            None => {
                self.committed.insert(height, (hash, slot));
                None
            }
            Some((h, _)) if *h == hash => None,
            Some((h, other)) => Some(format!(
                "height {height}: node {slot} committed block {}, node {other} committed {}",
                short(&hash),
                short(h)
            )),
        }
    }

    /// No double-signing: records a promise of an honest validator (`what`
    /// at `round`, `slot` with `value`); returns the earlier value if it
    /// differs.
    pub fn on_promise(
        &mut self,
        voter: ValidatorIndex,
        what: &'static str,
        round: u64,
        slot: u64,
        value: Hash,
    ) -> Option<Hash> {
        match self.promises.entry((voter, what, round, slot)) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(value);
                None
            }
            std::collections::btree_map::Entry::Occupied(e) => {
                Some(*e.get()).filter(|prev| *prev != value)
            }
        }
    }

    /// No impersonation: records what honest validator `sender` signed in
    /// a message it sends, and returns each statement it passes on in the
    /// name of another honest validator (`honest`) that this validator
    /// never sent.
    pub fn on_statements(
        &mut self,
        sender: ValidatorIndex,
        statements: &[Statement],
        honest: impl Fn(ValidatorIndex) -> bool,
    ) -> Vec<Statement> {
        for s in statements.iter().filter(|s| s.signer == sender) {
            self.said.insert((sender, s.fingerprint));
        }
        statements
            .iter()
            .filter(|s| {
                s.signer != sender
                    && honest(s.signer)
                    && !self.said.contains(&(s.signer, s.fingerprint))
            })
            .copied()
            .collect()
    }

    /// The highest height some honest validator committed.
    pub fn max_height(&self) -> Height {
        self.committed
            .keys()
            .next_back()
            .copied()
            .unwrap_or_default()
    }
}

/// The first bytes of a hash, for messages.
pub fn short(h: &Hash) -> String {
    h.to_string()[..12].to_owned()
}

/// Checks a committed block's justification: a quorum certificate for
/// this height and payload from the primary of its round (or, under the crash-fault model, a leader that
/// is a validator).
pub fn check_certificate(
    genesis: &Genesis,
    quorum: usize,
    block: &Block,
    model: FaultModel,
) -> Result<(), String> {
    if let (FaultModel::Crash, Justification::Cft { leader, .. }) = (model, &block.justification) {
        // A crash-fault model commits on the leader's word: all a block can
        // show is a leader from the validator set.
        return if (leader.0 as usize) < genesis.validators.len() {
            Ok(())
        } else {
            Err(format!(
                "height {}: leader {leader} is not a validator",
                block.height()
            ))
        };
    }
    let longest = matches!(model, FaultModel::Nakamoto | FaultModel::Hybrid);
    if let (
        true,
        Justification::Pow {
            parent,
            bits,
            nonce,
        },
    ) = (longest, &block.justification)
    {
        // The checker's own seal check: the work is real and meets the
        // target the block claims (the engine checks the claim itself
        // against the retarget).
        use phalanx_consensus::pow::{header_hash, meets, seal_hash, Compact};
        let h = block.height();
        let target = Compact(*bits)
            .target()
            .map_err(|e| format!("height {h}: bad target: {e}"))?;
        let header = header_hash(parent, &block.header.payload_digest(), Compact(*bits));
        if !meets(&seal_hash(&header, *nonce), target) {
            return Err(format!("height {h}: the seal does not meet its target"));
        }
        if block.header.round != 0 || block.header.proposer.as_usize() >= genesis.validators.len() {
            return Err(format!("height {h}: not a PoW block of this chain"));
        }
        return Ok(());
    }
    if let (
        true,
        Justification::Pos {
            parent,
            slot,
            leader,
            signature,
            ..
        },
    ) = (longest, &block.justification)
    {
        // The checker's own check: signed by the leader it names, for the
        // slot it names, over the id it recomputes; the engine checks that
        // this leader leads that slot.
        let h = block.height();
        if block.header.proposer != *leader || block.header.round != *slot {
            return Err(format!(
                "height {h}: proposer or slot differ from the signature's"
            ));
        }
        let key = genesis
            .validators
            .get(leader.as_usize())
            .map(|v| v.public_key)
            .ok_or_else(|| format!("height {h}: leader {leader} is not a validator"))?;
        let id = Hash::of(
            phalanx_crypto::Domain::PosBlock,
            &(parent, block.header.payload_digest(), *slot),
        );
        let vote = phalanx_ledger::SignedVote {
            vote: phalanx_ledger::Vote {
                kind: phalanx_ledger::VoteKind::PosBlock,
                view: *slot,
                seq: Height(*slot),
                digest: id,
                voter: *leader,
            },
            signature: *signature,
        };
        return vote
            .verify(&genesis.chain_id, &key)
            .map_err(|e| format!("height {h}: the leader's signature does not verify: {e}"));
    }
    let Some(cert) = block.justification.certificate() else {
        return Err(format!("height {}: not a PBFT certificate", block.height()));
    };
    if let Justification::Finalized { sealed, .. } = &block.justification {
        if model != FaultModel::Hybrid || !sealed.is_tentative() {
            return Err(format!(
                "height {}: a finalized tentative block outside PBFT with a fallback",
                block.height()
            ));
        }
    }
    // PBFT rotates its primary round-robin: a block is proposed by the
    // primary of the round it names (re-proposals keep their round).
    let n = genesis.validators.len() as u64;
    let primary = ValidatorIndex((block.header.round % n.max(1)) as u32);
    // (PBFT with a fallback finalizes tentative blocks as they are: their
    // proposer is the miner or slot leader that made them.)
    if block.header.proposer != primary && model != FaultModel::Hybrid {
        return Err(format!(
            "height {}: proposed by validator {} in round {}, whose primary is {primary}",
            block.height(),
            block.header.proposer,
            block.header.round
        ));
    }
    let digest = block.header.payload_digest();
    if cert.seq != block.height() || cert.digest != digest {
        return Err(format!(
            "height {}: certificate is for seq {} digest {}, block digest is {}",
            block.height(),
            cert.seq,
            short(&cert.digest),
            short(&digest)
        ));
    }
    cert.verify(&genesis.chain_id, &genesis.validator_keys(), quorum)
        .map_err(|e| format!("height {}: {e}", block.height()))
}

/// Memoised certificate verdicts: honest nodes usually commit the same block
/// with the same certificate, which is checked once per schedule.
#[derive(Debug, Default)]
pub struct CertCache(BTreeMap<(Hash, Vec<u8>), Result<(), String>>);

impl CertCache {
    /// [`check_certificate`], remembered by block hash and justification.
    pub fn check(
        &mut self,
        genesis: &Genesis,
        quorum: usize,
        block: &Block,
        model: FaultModel,
    ) -> Result<(), String> {
        let key = (block.hash(), phalanx_crypto::encode(&block.justification));
        self.0
            .entry(key)
            .or_insert_with(|| check_certificate(genesis, quorum, block, model))
            .clone()
    }
}

/// Memoised signature verdicts (a transaction is checked once per schedule).
#[derive(Debug, Default)]
pub struct SigCache(BTreeMap<Hash, bool>);

impl SigCache {
    /// Whether `tx` is correctly signed by its sender.
    pub fn valid(&mut self, tx: &SignedTransaction) -> bool {
        *self
            .0
            .entry(tx.hash())
            .or_insert_with(|| tx.verify().is_ok())
    }
}

/// An independent, deliberately simple model of the ledger's transfer rules.
#[derive(Clone, Debug)]
pub struct Model {
    chain_id: String,
    accounts: BTreeMap<Address, Account>,
}

impl Model {
    /// The state at genesis.
    pub fn new(genesis: &Genesis) -> Model {
        Model {
            chain_id: genesis.chain_id.clone(),
            accounts: genesis
                .accounts
                .iter()
                .map(|a| {
                    (
                        a.address,
                        Account {
                            balance: a.balance,
                            nonce: 0,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Why `tx` must fail, or `None` if it must succeed.
    fn reject(
        &self,
        tx: &SignedTransaction,
        sig_ok: bool,
        fee_to: &Address,
    ) -> Option<&'static str> {
        let t = &tx.tx;
        if !sig_ok {
            return Some("it is not signed by its sender");
        }
        if t.chain_id != self.chain_id {
            return Some("it is for another chain");
        }
        let Some(sender) = self.accounts.get(&t.from) else {
            return Some("its sender has no account");
        };
        if t.nonce != sender.nonce {
            return Some("its nonce is not the sender's next nonce");
        }
        match t.amount.checked_add(t.fee) {
            Some(cost) if cost <= sender.balance => {}
            _ => return Some("the sender cannot pay for it"),
        }
        let credit = |who: &Address, units: u64| {
            let base = if who == &t.from {
                sender.balance - t.amount - t.fee
            } else {
                self.balance(who)
            };
            base.checked_add(units).is_none()
        };
        if credit(&t.to, t.amount) || credit(fee_to, t.fee) {
            return Some("a balance would overflow");
        }
        None
    }

    fn balance(&self, a: &Address) -> u64 {
        self.accounts.get(a).map_or(0, |x| x.balance)
    }

    fn apply(&mut self, tx: &SignedTransaction, fee_to: &Address) {
        let t = &tx.tx;
        let sender = self.accounts.entry(t.from).or_default();
        sender.balance -= t.amount + t.fee;
        sender.nonce += 1;
        self.accounts.entry(t.to).or_default().balance += t.amount;
        self.accounts.entry(*fee_to).or_default().balance += t.fee;
    }

    /// Replays a committed block against its receipts and the node's state
    /// after it.
    pub fn on_block(
        &mut self,
        block: &Block,
        receipts: &[Receipt],
        state: &State,
        fee_to: &Address,
        sigs: &mut SigCache,
    ) -> Result<(), String> {
        let h = block.height();
        if receipts.len() != block.txs.len() {
            return Err(format!(
                "height {h}: {} receipts for {} transactions",
                receipts.len(),
                block.txs.len()
            ));
        }
        let mut touched = BTreeSet::new();
        for (i, (tx, r)) in block.txs.iter().zip(receipts).enumerate() {
            if r.tx_hash != tx.hash() || r.index as usize != i || r.height != h {
                return Err(format!(
                    "height {h}: receipt {i} does not describe transaction {i}"
                ));
            }
            touched.extend([tx.tx.from, tx.tx.to, *fee_to]);
            let reason = self.reject(tx, sigs.valid(tx), fee_to);
            match (reason, r.is_success()) {
                (Some(why), true) => {
                    return Err(format!(
                        "height {h}: transaction {} succeeded although {why} (nonce {}, amount {})",
                        short(&r.tx_hash),
                        tx.tx.nonce,
                        tx.tx.amount
                    ))
                }
                (None, false) => {
                    return Err(format!(
                        "height {h}: valid transaction {} failed: {:?}",
                        short(&r.tx_hash),
                        r.status
                    ))
                }
                (None, true) => self.apply(tx, fee_to),
                (Some(_), false) => {
                    if r.fee_paid != 0 {
                        return Err(format!(
                            "height {h}: failed transaction {} paid a fee",
                            short(&r.tx_hash)
                        ));
                    }
                }
            }
        }
        for a in touched {
            let model = self.accounts.get(&a).copied();
            let node = state.account(&a).copied();
            if model.unwrap_or_default() != node.unwrap_or_default() {
                return Err(format!(
                    "height {h}: account {a:?} is {node:?} on the node, {model:?} in the model"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(signer: u32, what: &'static str, content: u8) -> Statement {
        Statement::of(ValidatorIndex(signer), what, &[content; 4])
    }

    #[test]
    fn only_what_an_honest_validator_sent_may_be_passed_on_in_its_name() {
        let mut safety = Safety::default();
        let honest = |v: ValidatorIndex| v.0 != 3;
        let said_by_1 = statement(1, "view-change", 7);
        // Validator 0 passes on a VIEW-CHANGE in 1's name that 1 never sent.
        let forged = safety.on_statements(ValidatorIndex(0), &[said_by_1], honest);
        assert_eq!(forged, vec![said_by_1]);
        // Once 1 has sent it, passing it on is fine; its own statements
        // are recorded whatever else the message carries.
        let own = statement(1, "prepare", 1);
        assert!(safety
            .on_statements(ValidatorIndex(1), &[said_by_1, own], honest)
            .is_empty());
        assert!(safety
            .on_statements(ValidatorIndex(0), &[said_by_1, own], honest)
            .is_empty());
        // Same kind, other content: a different statement.
        let other = statement(1, "view-change", 8);
        assert_eq!(
            safety.on_statements(ValidatorIndex(2), &[other], honest),
            vec![other]
        );
        // A Byzantine validator's statements may be anything.
        let byzantine = statement(3, "prepare", 9);
        assert!(safety
            .on_statements(ValidatorIndex(0), &[byzantine], honest)
            .is_empty());
    }
}
