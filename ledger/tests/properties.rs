//! Properties of the ledger's data and execution, checked on random inputs:
//! every stored or signed type round-trips through the canonical encoding
//! (and JSON); every signed field of a transaction is covered by its
//! signature; and execution of random, often invalid, transfers keeps the
//! supply constant and rejects exactly what an independent model rejects,
//! for the same reason.

mod common;

use common::*;
use phalanx_crypto::{decode, encode, Hash, Keypair, PublicKey, Signature};
use phalanx_ledger::{
    execute, verify_transactions, Address, Block, BlockHeader, CommitCertificate, ConsensusParams,
    EngineKind, Evidence, Genesis, GenesisAccount, Height, Justification, Payload, Receipt,
    RejectReason, SignedTransaction, SignedVote, Transaction, TxStatus, ValidatorIndex,
    ValidatorInfo, VerifyAll, Vote, VoteKind,
};
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn address() -> impl Strategy<Value = Address> {
    any::<[u8; 32]>().prop_map(|b| Address(PublicKey(b)))
}

fn signature() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(r, s)| {
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice(&s);
        Signature(sig)
    })
}

fn transaction() -> impl Strategy<Value = Transaction> {
    (
        ".{0,24}",
        address(),
        address(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(chain_id, from, to, amount, nonce, fee)| Transaction {
            chain_id,
            from,
            to,
            amount,
            nonce,
            fee,
        })
}

fn signed_transaction() -> impl Strategy<Value = SignedTransaction> {
    prop_oneof![
        (transaction(), signature())
            .prop_map(|(tx, signature)| SignedTransaction::new(tx, signature)),
        // Really signed, by a key whose address is `from`.
        (any::<[u8; 32]>(), transaction()).prop_map(|(seed, mut tx)| {
            let key = Keypair::from_seed(seed);
            tx.from = Address(key.public());
            tx.sign(&key)
        }),
    ]
}

fn vote_kind() -> impl Strategy<Value = VoteKind> {
    prop_oneof![
        Just(VoteKind::PrePrepare),
        Just(VoteKind::Prepare),
        Just(VoteKind::Commit),
        Just(VoteKind::Checkpoint),
        Just(VoteKind::CftAppend),
        Just(VoteKind::PosBlock),
    ]
}

fn signed_vote() -> impl Strategy<Value = SignedVote> {
    (
        vote_kind(),
        any::<u64>(),
        any::<u64>(),
        hash(),
        any::<u32>(),
        signature(),
    )
        .prop_map(|(kind, view, seq, digest, voter, signature)| SignedVote {
            vote: Vote {
                kind,
                view,
                seq: Height(seq),
                digest,
                voter: ValidatorIndex(voter),
            },
            signature,
        })
}

fn evidence() -> impl Strategy<Value = Evidence> {
    (signed_vote(), signed_vote()).prop_map(|(first, second)| Evidence { first, second })
}

fn certificate() -> impl Strategy<Value = CommitCertificate> {
    (
        any::<u64>(),
        any::<u64>(),
        hash(),
        prop::collection::vec((any::<u32>().prop_map(ValidatorIndex), signature()), 0..5),
    )
        .prop_map(|(view, seq, digest, commits)| CommitCertificate {
            view,
            seq: Height(seq),
            digest,
            commits,
        })
}

fn justification() -> impl Strategy<Value = Justification> {
    prop_oneof![
        Just(Justification::Genesis),
        certificate().prop_map(Justification::Pbft),
        (any::<u64>(), any::<u32>()).prop_map(|(term, leader)| Justification::Cft {
            term,
            leader: ValidatorIndex(leader)
        }),
        (hash(), any::<u32>(), any::<u64>()).prop_map(|(parent, bits, nonce)| {
            Justification::Pow {
                parent,
                bits,
                nonce,
            }
        }),
        (hash(), any::<u64>(), any::<u32>(), signature(), signature()).prop_map(
            |(parent, slot, leader, rand, signature)| Justification::Pos {
                parent,
                slot,
                leader: ValidatorIndex(leader),
                rand,
                signature,
            }
        ),
    ]
}

fn block() -> impl Strategy<Value = Block> {
    (
        (
            ".{0,16}",
            any::<u64>(),
            hash(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
        ),
        (hash(), hash(), hash()),
        prop::collection::vec(signed_transaction(), 0..4),
        prop::collection::vec(evidence(), 0..3),
        justification(),
    )
        .prop_map(
            |(
                (chain_id, height, parent, timestamp_ms, proposer, round),
                (tx_root, evidence_root, state_root),
                txs,
                evidence,
                justification,
            )| {
                Block {
                    header: BlockHeader {
                        chain_id,
                        height: Height(height),
                        parent,
                        timestamp_ms,
                        proposer: ValidatorIndex(proposer),
                        round,
                        tx_root,
                        evidence_root,
                        state_root,
                    },
                    txs,
                    evidence,
                    justification,
                }
            },
        )
}

fn reject_reason() -> impl Strategy<Value = RejectReason> {
    prop_oneof![
        Just(RejectReason::BadSignature),
        ".{0,16}".prop_map(|found| RejectReason::WrongChainId { found }),
        Just(RejectReason::UnknownSender),
        (any::<u64>(), any::<u64>())
            .prop_map(|(expected, found)| RejectReason::BadNonce { expected, found }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(balance, needed)| RejectReason::InsufficientFunds { balance, needed }),
        Just(RejectReason::Overflow),
        (any::<u64>(), any::<u64>())
            .prop_map(|(fee, min_fee)| RejectReason::FeeTooLow { fee, min_fee }),
    ]
}

fn receipt() -> impl Strategy<Value = Receipt> {
    (
        hash(),
        any::<u64>(),
        any::<u32>(),
        prop_oneof![
            Just(TxStatus::Success),
            reject_reason().prop_map(TxStatus::Failed)
        ],
        any::<u64>(),
    )
        .prop_map(|(tx_hash, height, index, status, fee_paid)| Receipt {
            tx_hash,
            height: Height(height),
            index,
            status,
            fee_paid,
        })
}

/// A genesis that passes validation, with every field varied.
fn valid_genesis() -> impl Strategy<Value = Genesis> {
    let validator = (
        any::<u64>(),
        ".{0,12}",
        // Small enough that stakes and balances together (PoS) fit a u64.
        1..=u64::MAX / 64,
        any::<u16>(),
        ".{0,20}",
    );
    let engine = prop_oneof![
        Just(EngineKind::Pbft),
        Just(EngineKind::Cft),
        Just(EngineKind::Pow),
        Just(EngineKind::Pos)
    ];
    let consensus = (
        engine,
        1..=u32::MAX,
        any::<u64>(),
        1..10_000u64,
        0..10_000u64,
        1..=u64::MAX,
        any::<u64>(),
    )
        .prop_map(
            |(
                engine,
                max_block_txs,
                batch_timeout_ms,
                checkpoint_interval,
                extra,
                view_change_timeout_ms,
                min_fee,
            )| {
                ConsensusParams {
                    engine,
                    max_block_txs,
                    batch_timeout_ms,
                    checkpoint_interval,
                    watermark_window: checkpoint_interval + extra,
                    view_change_timeout_ms,
                    min_fee,
                    block_time_ms: 1 + min_fee % 10_000,
                    pow_limit: 0x1f00_ffff,
                    ..ConsensusParams::default()
                }
            },
        );
    (
        "[A-Za-z0-9._-]{1,64}",
        any::<u64>(),
        prop::collection::vec(validator, 1..6),
        prop::collection::btree_map(any::<[u8; 32]>(), 0..=u64::MAX / 8, 0..6),
        consensus,
    )
        .prop_map(
            |(chain_id, genesis_time_ms, validators, accounts, consensus)| Genesis {
                chain_id,
                genesis_time_ms,
                validators: validators
                    .into_iter()
                    .enumerate()
                    .map(
                        |(i, (seed, name, stake, port, api_address))| ValidatorInfo {
                            name,
                            public_key: Keypair::from_label(&format!("v-{seed}-{i}")).public(),
                            node_key: Keypair::from_label(&format!("n-{seed}-{i}")).public(),
                            stake,
                            p2p_address: format!("/ip4/127.0.0.1/tcp/{port}"),
                            api_address,
                        },
                    )
                    .collect(),
                accounts: accounts
                    .into_iter()
                    .map(|(a, balance)| GenesisAccount {
                        address: Address(PublicKey(a)),
                        balance,
                    })
                    .collect(),
                consensus,
            },
        )
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

/// `value` survives the canonical encoding and JSON; its canonical bytes
/// are the only ones accepted (a byte less or a byte more is an error).
fn round_trips<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = encode(value);
    let back: T = decode(&bytes).map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
    prop_assert_eq!(&back, value);
    prop_assert_eq!(
        encode(&back),
        bytes.clone(),
        "re-encoding gives other bytes"
    );
    if !bytes.is_empty() {
        prop_assert!(
            decode::<T>(&bytes[..bytes.len() - 1]).is_err(),
            "a truncated encoding decoded"
        );
    }
    let mut longer = bytes;
    longer.push(0);
    prop_assert!(
        decode::<T>(&longer).is_err(),
        "trailing bytes were accepted"
    );
    let json =
        serde_json::to_string(value).map_err(|e| TestCaseError::fail(format!("to JSON: {e}")))?;
    let back: T = serde_json::from_str(&json)
        .map_err(|e| TestCaseError::fail(format!("from JSON {json}: {e}")))?;
    prop_assert_eq!(&back, value);
    Ok(())
}

proptest! {
    #[test]
    fn transaction_round_trips(tx in transaction()) {
        round_trips(&tx)?;
    }

    #[test]
    fn signed_transaction_round_trips(stx in signed_transaction()) {
        round_trips(&stx)?;
        let back: SignedTransaction = decode(&encode(&stx)).unwrap();
        prop_assert_eq!(back.hash(), stx.hash());
        prop_assert_eq!(back.verify().is_ok(), stx.verify().is_ok());
    }

    #[test]
    fn block_round_trips(block in block()) {
        round_trips(&block)?;
        let back: Block = decode(&encode(&block)).unwrap();
        prop_assert_eq!(back.hash(), block.hash());
        prop_assert_eq!(back.header.payload_digest(), block.header.payload_digest());
    }

    #[test]
    fn receipt_round_trips(receipt in receipt()) {
        round_trips(&receipt)?;
    }

    #[test]
    fn evidence_round_trips(evidence in evidence()) {
        round_trips(&evidence)?;
        let back: Evidence = decode(&encode(&evidence)).unwrap();
        prop_assert_eq!(back.id(), evidence.id());
    }

    #[test]
    fn genesis_json_round_trips(genesis in valid_genesis()) {
        genesis.validate().map_err(|e| TestCaseError::fail(format!("strategy made an invalid genesis: {e}")))?;
        let json = genesis.to_json();
        let back = Genesis::from_json(&json).map_err(|e| TestCaseError::fail(format!("{e}\n{json}")))?;
        prop_assert_eq!(&back, &genesis);
        prop_assert_eq!(back.to_json(), json);
        prop_assert_eq!(back.block(), genesis.block());
        // The supply is the accounts' balances, and under PoS the stakes.
        let mut supply: u128 = genesis.accounts.iter().map(|a| a.balance as u128).sum();
        if genesis.consensus.engine == phalanx_ledger::EngineKind::Pos {
            supply += genesis.validators.iter().map(|v| v.stake as u128).sum::<u128>();
        }
        prop_assert_eq!(back.state().total_supply(), supply);
    }
}

/// A real PBFT block (executed, with a verifying commit certificate) round-trips too.
#[test]
fn executed_pbft_block_round_trips() {
    let g = genesis();
    let txs = vec![transfer(&user("alice"), addr("bob"), 5, 0, 1)];
    let b = build_block(
        &g,
        &g.state(),
        &g.block(),
        1,
        0,
        txs,
        vec![equivocation(2, 0, 1)],
    );
    let Justification::Pbft(cert) = &b.block.justification else {
        panic!("a PBFT block")
    };
    cert.verify(CHAIN_ID, &g.validator_keys(), 3)
        .expect("certificate verifies");
    let back: Block = decode(&encode(&b.block)).expect("decodes");
    assert_eq!(back, b.block);
    let Justification::Pbft(cert) = &back.justification else {
        panic!("still PBFT")
    };
    cert.verify(CHAIN_ID, &g.validator_keys(), 3)
        .expect("decoded certificate verifies");
    assert_eq!(cert.digest, back.header.payload_digest());
    assert!(back.body_matches_header());
}

// ---------------------------------------------------------------------------
// Signatures cover every field
// ---------------------------------------------------------------------------

/// One change to one signed field.
#[derive(Debug, Clone)]
enum Tamper {
    ChainId(String),
    From([u8; 32]),
    To([u8; 32]),
    Amount(u64),
    Nonce(u64),
    Fee(u64),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        ".{1,8}".prop_map(Tamper::ChainId),
        any::<[u8; 32]>().prop_map(Tamper::From),
        any::<[u8; 32]>().prop_map(Tamper::To),
        (1..=u64::MAX).prop_map(Tamper::Amount),
        (1..=u64::MAX).prop_map(Tamper::Nonce),
        (1..=u64::MAX).prop_map(Tamper::Fee),
    ]
}

impl Tamper {
    /// Applies the change; every variant makes the field differ.
    fn apply(&self, tx: &mut Transaction) {
        match self {
            // Appending keeps the new id different from the old.
            Tamper::ChainId(s) => tx.chain_id.push_str(s),
            Tamper::From(seed) => {
                let other = Keypair::from_seed(*seed).public();
                tx.from = if other == tx.from.0 {
                    Address(Keypair::from_label("other").public())
                } else {
                    Address(other)
                };
            }
            Tamper::To(b) => {
                let mut b = *b;
                if b == tx.to.0 .0 {
                    b[0] ^= 1;
                }
                tx.to = Address(PublicKey(b));
            }
            Tamper::Amount(d) => tx.amount ^= d,
            Tamper::Nonce(d) => tx.nonce ^= d,
            Tamper::Fee(d) => tx.fee ^= d,
        }
    }
}

proptest! {
    #[test]
    fn changing_any_signed_field_invalidates_the_signature(
        seed in any::<[u8; 32]>(),
        tx in transaction(),
        change in tamper(),
    ) {
        let key = Keypair::from_seed(seed);
        let mut tx = tx;
        tx.from = Address(key.public());
        let signed = tx.clone().sign(&key);
        prop_assert!(signed.verify().is_ok());
        let mut changed = tx.clone();
        change.apply(&mut changed);
        prop_assert_ne!(&changed, &tx);
        let forged = SignedTransaction::new(changed, signed.signature);
        prop_assert!(forged.verify().is_err(), "{:?} kept the signature valid", change);
        prop_assert_ne!(forged.hash(), signed.hash());
        // The batch path agrees, in any position.
        prop_assert_eq!(verify_transactions(&[signed.clone(), forged.clone()]), vec![true, false]);
        prop_assert_eq!(verify_transactions(&[forged, signed]), vec![false, true]);
    }
}

// ---------------------------------------------------------------------------
// Execution against an independent model
// ---------------------------------------------------------------------------

/// Who takes part: the four funded users, two strangers without accounts,
/// and the four validators (fee recipients, who can spend their fees).
fn party_key(i: usize) -> Keypair {
    match i {
        0..=3 => user(FUNDED[i].0),
        4 | 5 => user(&format!("stranger-{i}")),
        _ => validator_key(i - 6),
    }
}
const PARTIES: usize = 6 + VALIDATORS;

#[derive(Debug, Clone)]
enum AmountChoice {
    Small(u64),
    /// `balance * n / 255` of the sender's balance at that moment.
    Fraction(u8),
    /// Exactly what the sender has left after the fee.
    AllOfIt,
    /// One unit more than that.
    OneTooMany,
    Any(u64),
}

#[derive(Debug, Clone)]
enum NonceChoice {
    Next,
    Replay(u64),
    Gap(u64),
    Any(u64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SigChoice {
    Good,
    /// Signed by a key that is not the sender's.
    WrongKey,
    /// A correct signature with one bit flipped.
    Flipped(usize),
}

#[derive(Debug, Clone)]
struct Intent {
    from: usize,
    /// `None`: a fresh address no one has used.
    to: Option<usize>,
    amount: AmountChoice,
    fee: AmountChoice,
    nonce: NonceChoice,
    wrong_chain: bool,
    sig: SigChoice,
}

fn amount_choice(small: u64) -> impl Strategy<Value = AmountChoice> {
    prop_oneof![
        4 => (0..=small).prop_map(AmountChoice::Small),
        2 => any::<u8>().prop_map(AmountChoice::Fraction),
        1 => Just(AmountChoice::AllOfIt),
        1 => Just(AmountChoice::OneTooMany),
        1 => any::<u64>().prop_map(AmountChoice::Any),
    ]
}

fn intent() -> impl Strategy<Value = Intent> {
    let nonce = prop_oneof![
        6 => Just(NonceChoice::Next),
        1 => (1..4u64).prop_map(NonceChoice::Replay),
        1 => (1..4u64).prop_map(NonceChoice::Gap),
        1 => any::<u64>().prop_map(NonceChoice::Any),
    ];
    let sig = prop_oneof![
        8 => Just(SigChoice::Good),
        1 => Just(SigChoice::WrongKey),
        1 => (0..512usize).prop_map(SigChoice::Flipped),
    ];
    (
        0..PARTIES,
        prop::option::weighted(0.9, 0..PARTIES),
        amount_choice(1_000),
        amount_choice(20),
        nonce,
        prop::bool::weighted(0.1),
        sig,
    )
        .prop_map(|(from, to, amount, fee, nonce, wrong_chain, sig)| Intent {
            from,
            to,
            amount,
            fee,
            nonce,
            wrong_chain,
            sig,
        })
}

/// The accounts as a plain map, and the rules written out once more, simply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Model {
    accounts: BTreeMap<Address, (u64, u64)>,
}

impl Model {
    fn balance(&self, a: &Address) -> u64 {
        self.accounts.get(a).map_or(0, |x| x.0)
    }

    fn nonce(&self, a: &Address) -> u64 {
        self.accounts.get(a).map_or(0, |x| x.1)
    }

    /// What executing `tx` does: apply it, or say why not.
    fn apply(
        &mut self,
        tx: &Transaction,
        signature_ok: bool,
        fee_to: Address,
        min_fee: u64,
    ) -> Result<(), RejectReason> {
        if !signature_ok {
            return Err(RejectReason::BadSignature);
        }
        if tx.chain_id != CHAIN_ID {
            return Err(RejectReason::WrongChainId {
                found: tx.chain_id.clone(),
            });
        }
        if tx.fee < min_fee {
            return Err(RejectReason::FeeTooLow {
                fee: tx.fee,
                min_fee,
            });
        }
        let Some(&(balance, nonce)) = self.accounts.get(&tx.from) else {
            return Err(RejectReason::UnknownSender);
        };
        if tx.nonce != nonce {
            return Err(RejectReason::BadNonce {
                expected: nonce,
                found: tx.nonce,
            });
        }
        let needed = tx.amount as u128 + tx.fee as u128;
        if needed > balance as u128 {
            return Err(RejectReason::InsufficientFunds {
                balance,
                needed: needed.min(u64::MAX as u128) as u64,
            });
        }
        let before = self.accounts.clone();
        self.accounts
            .insert(tx.from, (balance - needed as u64, nonce + 1));
        for (who, units) in [(tx.to, tx.amount), (fee_to, tx.fee)] {
            let (b, n) = self.accounts.get(&who).copied().unwrap_or((0, 0));
            match b.checked_add(units) {
                Some(b) => {
                    self.accounts.insert(who, (b, n));
                }
                None => {
                    self.accounts = before;
                    return Err(RejectReason::Overflow);
                }
            }
        }
        Ok(())
    }
}

fn resolve(choice: &AmountChoice, available: u64) -> u64 {
    match choice {
        AmountChoice::Small(x) => *x,
        AmountChoice::Fraction(n) => ((available as u128 * *n as u128) / 255) as u64,
        AmountChoice::AllOfIt => available,
        AmountChoice::OneTooMany => available.saturating_add(1),
        AmountChoice::Any(x) => *x,
    }
}

/// Builds the transaction `intent` describes against the model's current
/// accounts, and says whether its signature is valid.
fn make_tx(intent: &Intent, model: &Model, fresh: &mut u64) -> (SignedTransaction, bool) {
    let key = party_key(intent.from);
    let from = Address(key.public());
    let to = match intent.to {
        Some(i) => Address(party_key(i).public()),
        None => {
            *fresh += 1;
            addr(&format!("fresh-{fresh}"))
        }
    };
    let balance = model.balance(&from);
    let fee = resolve(&intent.fee, balance);
    let amount = resolve(&intent.amount, balance.saturating_sub(fee));
    let next = model.nonce(&from);
    let nonce = match intent.nonce {
        NonceChoice::Next => next,
        NonceChoice::Replay(k) => next.wrapping_sub(k),
        NonceChoice::Gap(k) => next.wrapping_add(k),
        NonceChoice::Any(n) => n,
    };
    let chain_id = if intent.wrong_chain {
        "phalanx-other".to_owned()
    } else {
        CHAIN_ID.to_owned()
    };
    let tx = Transaction {
        chain_id,
        from,
        to,
        amount,
        nonce,
        fee,
    };
    match intent.sig {
        SigChoice::Good => (tx.sign(&key), true),
        SigChoice::WrongKey => (tx.sign(&Keypair::from_label("mallory")), false),
        SigChoice::Flipped(bit) => {
            let mut signed = tx.sign(&key);
            signed.signature.0[bit / 8] ^= 1 << (bit % 8);
            (signed, false)
        }
    }
}

fn genesis_with(balances: &[u64; 4]) -> Genesis {
    let mut g = genesis();
    for (a, b) in g.accounts.iter_mut().zip(balances) {
        a.balance = *b;
    }
    g.validate().expect("valid genesis");
    g
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_transfers_keep_supply_and_match_the_model(
        balances in prop::array::uniform4(prop_oneof![0..2_000u64, 0..=u64::MAX / 4]),
        blocks in prop::collection::vec((0..VALIDATORS as u32, prop::collection::vec(intent(), 0..12)), 1..6),
        min_fee in prop_oneof![Just(0u64), 1..4u64],
    ) {
        let g = genesis_with(&balances);
        let supply = g.state().total_supply();
        let mut state = g.state();
        let mut model = Model {
            accounts: g.accounts.iter().map(|a| (a.address, (a.balance, 0))).collect(),
        };
        let mut fresh = 0;
        for (height, (proposer, intents)) in (1u64..).zip(&blocks) {
            let fee_to = g.fee_recipient(ValidatorIndex(*proposer));
            prop_assert_eq!(fee_to, Address(validator_key(*proposer as usize).public()));
            // Build the block and the model's verdicts together: each
            // transaction is made against the accounts as the ones before it
            // in the block left them.
            let mut txs = Vec::new();
            let mut verdicts = Vec::new();
            for intent in intents {
                let (stx, signature_ok) = make_tx(intent, &model, &mut fresh);
                verdicts.push(model.apply(&stx.tx, signature_ok, fee_to, min_fee));
                txs.push(stx);
            }
            let payload = Payload {
                chain_id: CHAIN_ID.to_owned(),
                height: Height(height),
                round: 0,
                proposer: ValidatorIndex(*proposer),
                timestamp_ms: height,
                txs,
                evidence: vec![],
            };
            let executed = execute(&state, &payload, &fee_to, min_fee, &VerifyAll);
            prop_assert_eq!(executed.receipts.len(), payload.txs.len());
            for (i, (receipt, verdict)) in executed.receipts.iter().zip(&verdicts).enumerate() {
                let stx = &payload.txs[i];
                prop_assert_eq!(receipt.tx_hash, stx.hash());
                prop_assert_eq!(receipt.height, Height(height));
                prop_assert_eq!(receipt.index, i as u32);
                let expected = match verdict {
                    Ok(()) => TxStatus::Success,
                    Err(reason) => TxStatus::Failed(reason.clone()),
                };
                prop_assert_eq!(&receipt.status, &expected, "tx {} of block {}: {:?}", i, height, stx.tx);
                let fee_paid = if verdict.is_ok() { stx.tx.fee } else { 0 };
                prop_assert_eq!(receipt.fee_paid, fee_paid);
            }
            prop_assert_eq!(executed.diff.height, Height(height));
            state.apply(&executed.diff);
            let accounts: BTreeMap<Address, (u64, u64)> =
                state.accounts().map(|(a, acct)| (*a, (acct.balance, acct.nonce))).collect();
            prop_assert_eq!(&accounts, &model.accounts, "accounts after block {}", height);
            prop_assert_eq!(state.total_supply(), supply, "supply after block {}", height);
            prop_assert!(state.accounts().all(|(_, a)| a.balance as u128 <= supply), "a balance wrapped");
            prop_assert_eq!(state.height(), Height(height));
        }
    }
}
