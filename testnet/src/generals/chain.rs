//! Signed orders for SM(m) (LSP'82 §4): an order with the chain of ed25519
//! signatures it collected on its way from the commander ("v:0:j1:…:jk"), the
//! generals' keys, and the check every loyal recipient makes.
//!
//! Link k signs the order, all earlier links and its own signer id, in
//! [`Domain::GeneralsOrder`], so no signature can be moved to another order,
//! another position or another protocol. This module only signs with the key
//! of the general that signs; a traitor changing an order can re-sign only the
//! links of traitors (they collude and share keys), never a loyal one's.

use super::model::{GeneralId, Order};
use phalanx_crypto::{signing_bytes, Domain, Keypair, PublicKey, Signature};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One signature of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Who signed.
    pub signer: GeneralId,
    /// The signature over the order, the earlier links and `signer`.
    pub signature: Signature,
}

/// An order with its signature chain, commander first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOrder {
    /// The order.
    pub value: Order,
    /// The signatures, in the order they were added.
    pub chain: Vec<Link>,
}

impl SignedOrder {
    /// The signers, commander first.
    pub fn signers(&self) -> Vec<GeneralId> {
        self.chain.iter().map(|l| l.signer).collect()
    }

    /// Whether `g` has signed this order.
    pub fn is_signed_by(&self, g: GeneralId) -> bool {
        self.chain.iter().any(|l| l.signer == g)
    }
}

/// What link k signs: the order, the k earlier links, and the signer's id.
#[derive(Serialize)]
struct LinkPayload<'a> {
    value: Order,
    prior: &'a [Link],
    signer: GeneralId,
}

/// Why a loyal general refuses a signed order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// No signature at all.
    #[error("no signatures")]
    Empty,
    /// The chain does not start with the commander (LSP'82 §4: "v:0:…").
    #[error("first signer is {0}, not the commander")]
    NotFromCommander(GeneralId),
    /// A general signed twice.
    #[error("{0} signed twice")]
    RepeatedSigner(GeneralId),
    /// A signer that is not one of the generals.
    #[error("{0} is not a general")]
    UnknownSigner(GeneralId),
    /// The last signature is not the sender's.
    #[error("sent by {sender} but last signed by {last}")]
    NotSignedBySender {
        /// Who sent it.
        sender: GeneralId,
        /// The last signer.
        last: GeneralId,
    },
    /// The recipient already signed it (loyal generals never send it back).
    #[error("{0} already signed it")]
    AlreadySigned(GeneralId),
    /// Longer than m + 1 signatures.
    #[error("{len} signatures, more than m+1 = {max}")]
    TooLong {
        /// Signatures in the chain.
        len: usize,
        /// m + 1.
        max: usize,
    },
    /// A signature does not verify (a forged or altered order).
    #[error("bad signature of {0}")]
    BadSignature(GeneralId),
}

/// The generals' ed25519 keys, with counters and, for searches that repeat
/// the same runs, a memo of signatures made and checked.
///
/// ed25519 signing is deterministic and verification a pure function, so a
/// memo returns exactly what recomputing would (the node likewise remembers
/// which signatures it has verified); it only saves time in `--exhaustive`
/// and `--sweep`. A single run uses no memo: every check is a curve check.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<Keypair>,
    publics: Vec<PublicKey>,
    memo: Option<Memo>,
    signed: u64,
    checked: u64,
}

#[derive(Debug, Default)]
struct Memo {
    signatures: HashMap<Vec<u8>, Signature>,
    verdicts: HashMap<(Vec<u8>, Signature), bool>,
}

impl KeyRing {
    /// Deterministic keys for generals G0..G(n−1) (label `phalanx/generals/Gi`).
    pub fn new(n: usize) -> KeyRing {
        let keys: Vec<Keypair> = GeneralId::all(n)
            .map(|g| Keypair::from_label(&format!("phalanx/generals/{g}")))
            .collect();
        let publics = keys.iter().map(Keypair::public).collect();
        KeyRing {
            keys,
            publics,
            memo: None,
            signed: 0,
            checked: 0,
        }
    }

    /// Like [`KeyRing::new`], memoising signatures and verdicts.
    pub fn with_memo(n: usize) -> KeyRing {
        KeyRing {
            memo: Some(Memo::default()),
            ..KeyRing::new(n)
        }
    }

    /// How many generals have keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// General `g`'s public key.
    pub fn public(&self, g: GeneralId) -> Option<PublicKey> {
        self.publics.get(g.index()).copied()
    }

    /// (signatures made, signatures checked) so far.
    pub fn counters(&self) -> (u64, u64) {
        (self.signed, self.checked)
    }

    /// The commander's signed order "v:0".
    pub fn issue(&mut self, value: Order) -> SignedOrder {
        self.relay(
            &SignedOrder {
                value,
                chain: Vec::new(),
            },
            GeneralId::COMMANDER,
        )
    }

    /// `order` with `signer`'s signature appended ("v:0:…:j").
    ///
    /// # Panics
    ///
    /// If `signer` is not one of the generals of this key ring.
    pub fn relay(&mut self, order: &SignedOrder, signer: GeneralId) -> SignedOrder {
        let mut out = order.clone();
        let signature = self.sign(order.value, &order.chain, signer);
        out.chain.push(Link { signer, signature });
        out
    }

    /// The best a coalition of traitors can do to change `order` to `value`:
    /// re-sign every link whose signer `is_traitor`, and keep the loyal
    /// signers' old signatures, which no longer match. The result verifies
    /// only if every signer in the chain is a traitor.
    pub fn tamper(
        &mut self,
        order: &SignedOrder,
        value: Order,
        is_traitor: impl Fn(GeneralId) -> bool,
    ) -> SignedOrder {
        let mut out = SignedOrder {
            value,
            chain: Vec::with_capacity(order.chain.len()),
        };
        for link in &order.chain {
            let known = link.signer.index() < self.keys.len();
            let signature = if known && is_traitor(link.signer) {
                self.sign(value, &out.chain, link.signer)
            } else {
                link.signature
            };
            out.chain.push(Link {
                signer: link.signer,
                signature,
            });
        }
        out
    }

    /// The check a loyal `receiver` makes on `order` from `sender` in SM(m)
    /// with at most `max_len` = m + 1 signatures (LSP'82 §4): the chain
    /// starts at the commander, has distinct known signers, was last signed
    /// by the sender, not yet by the receiver, and every signature verifies.
    pub fn verify(
        &mut self,
        order: &SignedOrder,
        sender: GeneralId,
        receiver: GeneralId,
        max_len: usize,
    ) -> Result<(), ChainError> {
        let first = order.chain.first().ok_or(ChainError::Empty)?;
        if !first.signer.is_commander() {
            return Err(ChainError::NotFromCommander(first.signer));
        }
        if order.chain.len() > max_len {
            return Err(ChainError::TooLong {
                len: order.chain.len(),
                max: max_len,
            });
        }
        for (k, link) in order.chain.iter().enumerate() {
            if link.signer.index() >= self.keys.len() {
                return Err(ChainError::UnknownSigner(link.signer));
            }
            if order.chain[..k].iter().any(|l| l.signer == link.signer) {
                return Err(ChainError::RepeatedSigner(link.signer));
            }
        }
        let last = order.chain[order.chain.len() - 1].signer;
        if last != sender {
            return Err(ChainError::NotSignedBySender { sender, last });
        }
        if order.is_signed_by(receiver) {
            return Err(ChainError::AlreadySigned(receiver));
        }
        for (k, link) in order.chain.iter().enumerate() {
            if !self.check(order.value, &order.chain[..k], link) {
                return Err(ChainError::BadSignature(link.signer));
            }
        }
        Ok(())
    }

    fn sign(&mut self, value: Order, prior: &[Link], signer: GeneralId) -> Signature {
        self.signed += 1;
        let payload = LinkPayload {
            value,
            prior,
            signer,
        };
        let key = &self.keys[signer.index()];
        match &mut self.memo {
            None => key.sign(Domain::GeneralsOrder, &payload),
            Some(memo) => *memo
                .signatures
                .entry(signing_bytes(Domain::GeneralsOrder, &payload))
                .or_insert_with(|| key.sign(Domain::GeneralsOrder, &payload)),
        }
    }

    fn check(&mut self, value: Order, prior: &[Link], link: &Link) -> bool {
        self.checked += 1;
        let payload = LinkPayload {
            value,
            prior,
            signer: link.signer,
        };
        let public = self.publics[link.signer.index()];
        let verify = || {
            public
                .verify(Domain::GeneralsOrder, &payload, &link.signature)
                .is_ok()
        };
        match &mut self.memo {
            None => verify(),
            // The payload names the signer, so the bytes fix the key too.
            Some(memo) => *memo
                .verdicts
                .entry((
                    signing_bytes(Domain::GeneralsOrder, &payload),
                    link.signature,
                ))
                .or_insert_with(verify),
        }
    }
}
