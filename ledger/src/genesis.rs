//! The genesis file: chain id, validators, initial balances, consensus
//! parameters. Loading it checks every field and names the one that is wrong.

use crate::block::{Block, BlockHeader, Justification};
use crate::state::State;
use crate::types::{Address, Height, ValidatorIndex};
use phalanx_crypto::{merkle_root, Hash, PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which consensus engine runs the chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// PBFT (Byzantine fault tolerant, n ≥ 3f+1).
    #[default]
    Pbft,
    /// The crash-fault-tolerant baseline (n ≥ 2f+1).
    Cft,
    /// Proof of work.
    Pow,
    /// Proof of stake.
    Pos,
    /// PBFT, falling back to proof of work while it has no quorum.
    #[serde(rename = "pbft+pow")]
    PbftPow,
    /// PBFT, falling back to proof of stake while it has no quorum.
    #[serde(rename = "pbft+pos")]
    PbftPos,
}

impl EngineKind {
    /// Every kind a genesis may name.
    pub const ALL: [EngineKind; 6] = [
        EngineKind::Pbft,
        EngineKind::Cft,
        EngineKind::Pow,
        EngineKind::Pos,
        EngineKind::PbftPow,
        EngineKind::PbftPos,
    ];

    /// The name in genesis files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Pbft => "pbft",
            EngineKind::Cft => "cft",
            EngineKind::Pow => "pow",
            EngineKind::Pos => "pos",
            EngineKind::PbftPow => "pbft+pow",
            EngineKind::PbftPos => "pbft+pos",
        }
    }

    /// Whether validators hold stake (proof of stake, alone or as PBFT's
    /// fallback).
    pub fn staked(self) -> bool {
        matches!(self, EngineKind::Pos | EngineKind::PbftPos)
    }

    /// What PBFT falls back to under this engine.
    pub fn fallback(self) -> Fallback {
        match self {
            EngineKind::PbftPow => Fallback::Pow,
            EngineKind::PbftPos => Fallback::Pos,
            _ => Fallback::None,
        }
    }
}

/// What PBFT falls back to while it cannot reach a quorum (the genesis
/// `consensus.fallback`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Nothing: PBFT halts without a quorum.
    #[default]
    None,
    /// Proof of work.
    Pow,
    /// Proof of stake.
    Pos,
}

impl Fallback {
    /// The name in genesis files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fallback::None => "none",
            Fallback::Pow => "pow",
            Fallback::Pos => "pos",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The account holding validator `v`'s stake under proof of stake: an
/// address derived from the index, which no key signs for (so only
/// slashing moves what it holds).
pub fn stake_address(v: ValidatorIndex) -> Address {
    let h = Hash::of_parts(
        phalanx_crypto::Domain::StateEntry,
        &[b"phalanx/stake", &v.0.to_be_bytes()],
    );
    Address(PublicKey(h.0))
}

/// Where slashed stake goes: kept, not burnt, so the supply stays the
/// genesis supply.
pub fn slashed_address() -> Address {
    let h = Hash::of_parts(phalanx_crypto::Domain::StateEntry, &[b"phalanx/slashed"]);
    Address(PublicKey(h.0))
}

/// One validator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorInfo {
    /// A human name ("node0").
    pub name: String,
    /// The key that signs consensus messages; also the validator's fee account.
    pub public_key: PublicKey,
    /// The ed25519 key of the node's libp2p identity (its peer id).
    pub node_key: PublicKey,
    /// Voting weight (PoS); PBFT and CFT count validators, not stake.
    #[serde(default = "one")]
    pub stake: u64,
    /// Where peers reach it, as a libp2p multiaddr ("/ip4/127.0.0.1/tcp/26000").
    pub p2p_address: String,
    /// Its HTTP API ("127.0.0.1:8000"); informational, for tools.
    #[serde(default)]
    pub api_address: String,
}

fn one() -> u64 {
    1
}

/// An initial balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    /// The account.
    pub address: Address,
    /// Its balance at genesis.
    pub balance: u64,
}

/// Consensus parameters; every field has a default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusParams {
    /// The engine.
    pub engine: EngineKind,
    /// Most transactions in one block (the batch size B).
    pub max_block_txs: u32,
    /// How long the primary waits to fill a batch before proposing what it has.
    pub batch_timeout_ms: u64,
    /// A checkpoint every this many blocks (K).
    pub checkpoint_interval: u64,
    /// How many sequence numbers may be in flight past the last stable checkpoint.
    pub watermark_window: u64,
    /// How long a replica waits for a pending request to commit before a view change.
    pub view_change_timeout_ms: u64,
    /// The smallest fee a transaction may pay: below it, it is refused by
    /// the mempool and fails in a block (so that spam costs something).
    /// A genesis whose consensus section predates this parameter reads as
    /// 0, which keeps its chain's rules; a new genesis gets 1.
    #[serde(default)]
    pub min_fee: u64,
    /// Proof of work and proof of stake: the block interval aimed for, in
    /// milliseconds (PoW retargets toward it).
    pub block_time_ms: u64,
    /// Proof of work: the easiest target allowed, in Bitcoin's compact
    /// form; the first block's target. The default, `0x1f00ffff`, takes
    /// about 65,000 hashes per block.
    pub pow_limit: u32,
    /// Proof of stake: the length of a slot (one leader, at most one block).
    pub slot_ms: u64,
    /// Proof of stake: slots per epoch. The leaders of an epoch are drawn
    /// from a seed fixed at the end of the epoch before the one before.
    pub epoch_slots: u64,
    /// Proof of stake: the percent of its stake a validator caught signing
    /// two blocks for one slot loses (when the block carrying the evidence
    /// executes). Slashed stake leads no more slots.
    pub slash_percent: u64,
    /// What PBFT falls back to while it has no quorum: `"none"`, `"pow"`
    /// or `"pos"` (the engine then reads `pbft+pow` or `pbft+pos`).
    pub fallback: Fallback,
    /// PBFT falls back after this many timeouts without a new final block:
    /// view changes it started, or timeouts it complained on (a replica
    /// with fewer than f others in reach cannot change views).
    pub fallback_after_timeouts: u32,
}

impl ConsensusParams {
    /// Makes `engine` and `fallback` say the same thing: `"engine":
    /// "pbft"` with `"fallback": "pow"` reads as engine `pbft+pow`, and
    /// engine `pbft+pow` alone sets the fallback. A fallback under any
    /// other engine is refused.
    pub fn settle_fallback(&mut self) -> Result<(), GenesisError> {
        match (self.engine, self.fallback) {
            (_, Fallback::None) => self.fallback = self.engine.fallback(),
            (EngineKind::Pbft, Fallback::Pow) => self.engine = EngineKind::PbftPow,
            (EngineKind::Pbft, Fallback::Pos) => self.engine = EngineKind::PbftPos,
            (e, f) if e.fallback() == f => {}
            (e, f) => {
                return Err(invalid(
                    "consensus.fallback",
                    format!(
                        "{:?} does not go with engine {:?} (a fallback needs engine \"pbft\")",
                        f.name(),
                        e.name()
                    ),
                ))
            }
        }
        Ok(())
    }
}

impl Default for ConsensusParams {
    fn default() -> Self {
        ConsensusParams {
            engine: EngineKind::Pbft,
            max_block_txs: 2000,
            batch_timeout_ms: 50,
            checkpoint_interval: 16,
            watermark_window: 64,
            view_change_timeout_ms: 2000,
            min_fee: 1,
            block_time_ms: 1000,
            pow_limit: 0x1f00_ffff,
            slot_ms: 1000,
            epoch_slots: 16,
            slash_percent: 100,
            fallback: Fallback::None,
            fallback_after_timeouts: 2,
        }
    }
}

/// The genesis file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// The chain id every transaction and vote carries.
    pub chain_id: String,
    /// Genesis time, milliseconds since the Unix epoch.
    #[serde(default)]
    pub genesis_time_ms: u64,
    /// The validator set, in index order.
    pub validators: Vec<ValidatorInfo>,
    /// Initial balances.
    #[serde(default)]
    pub accounts: Vec<GenesisAccount>,
    /// Consensus parameters.
    #[serde(default)]
    pub consensus: ConsensusParams,
}

/// Why a genesis file was refused.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// It could not be read.
    #[error("cannot read genesis file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// It is not valid JSON of the right shape (the message names the field).
    #[error("genesis file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde's message, with the field, line and column.
        message: String,
    },
    /// A field has a value that is not allowed.
    #[error("genesis: {field}: {reason}")]
    Invalid {
        /// The field path, e.g. `validators[2].public_key`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> GenesisError {
    GenesisError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Genesis {
    /// Reads and validates a genesis file.
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        let text = std::fs::read_to_string(path).map_err(|source| GenesisError::Io {
            path: path.to_owned(),
            source,
        })?;
        Genesis::from_json(&text).map_err(|e| match e {
            GenesisError::Parse { message, .. } => GenesisError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates genesis JSON.
    pub fn from_json(text: &str) -> Result<Genesis, GenesisError> {
        let mut genesis: Genesis = serde_json::from_str(text).map_err(|e| GenesisError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        genesis.consensus.settle_fallback()?;
        genesis.validate()?;
        Ok(genesis)
    }

    /// Pretty JSON, as written by `phalanx testnet init`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), GenesisError> {
        if self.chain_id.is_empty() || self.chain_id.len() > 64 {
            return Err(invalid("chain_id", "must be 1 to 64 characters"));
        }
        if !self
            .chain_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(invalid(
                "chain_id",
                "may contain only letters, digits, '-', '_' and '.'",
            ));
        }
        if self.validators.is_empty() {
            return Err(invalid("validators", "at least one validator is needed"));
        }
        let mut keys = BTreeMap::new();
        let mut node_keys = BTreeMap::new();
        for (i, v) in self.validators.iter().enumerate() {
            let field = |f: &str| format!("validators[{i}].{f}");
            if let Err(e) = phalanx_crypto::PreparedKey::new(&v.public_key) {
                return Err(invalid(field("public_key"), e.to_string()));
            }
            if let Err(e) = phalanx_crypto::PreparedKey::new(&v.node_key) {
                return Err(invalid(field("node_key"), e.to_string()));
            }
            if let Some(j) = keys.insert(v.public_key, i) {
                return Err(invalid(
                    field("public_key"),
                    format!("same key as validators[{j}]"),
                ));
            }
            if let Some(j) = node_keys.insert(v.node_key, i) {
                return Err(invalid(
                    field("node_key"),
                    format!("same key as validators[{j}]"),
                ));
            }
            if v.stake == 0 {
                return Err(invalid(field("stake"), "must be positive"));
            }
            if !v.p2p_address.starts_with('/') {
                return Err(invalid(
                    field("p2p_address"),
                    "must be a multiaddr like /ip4/127.0.0.1/tcp/26000",
                ));
            }
        }
        let mut seen = BTreeMap::new();
        let mut supply: u64 = 0;
        for (i, a) in self.accounts.iter().enumerate() {
            if let Some(j) = seen.insert(a.address, i) {
                return Err(invalid(
                    format!("accounts[{i}].address"),
                    format!("same address as accounts[{j}]"),
                ));
            }
            supply = supply.checked_add(a.balance).ok_or_else(|| {
                invalid(
                    format!("accounts[{i}].balance"),
                    "total supply exceeds 2^64-1",
                )
            })?;
        }
        let c = &self.consensus;
        if c.fallback != c.engine.fallback() {
            return Err(invalid(
                "consensus.fallback",
                format!(
                    "{:?} does not go with engine {:?} (a fallback needs engine \"pbft\")",
                    c.fallback.name(),
                    c.engine.name()
                ),
            ));
        }
        if c.engine.fallback() != Fallback::None && c.fallback_after_timeouts == 0 {
            return Err(invalid(
                "consensus.fallback_after_timeouts",
                "must be positive",
            ));
        }
        if c.engine.staked() {
            for (i, v) in self.validators.iter().enumerate() {
                supply = supply.checked_add(v.stake).ok_or_else(|| {
                    invalid(
                        format!("validators[{i}].stake"),
                        "total supply with stakes exceeds 2^64-1",
                    )
                })?;
            }
            if c.slot_ms == 0 {
                return Err(invalid("consensus.slot_ms", "must be positive"));
            }
            if c.epoch_slots == 0 {
                return Err(invalid("consensus.epoch_slots", "must be positive"));
            }
            if c.slash_percent > 100 {
                return Err(invalid("consensus.slash_percent", "must be 0 to 100"));
            }
        }
        if c.max_block_txs == 0 {
            return Err(invalid("consensus.max_block_txs", "must be positive"));
        }
        if c.checkpoint_interval == 0 {
            return Err(invalid("consensus.checkpoint_interval", "must be positive"));
        }
        if c.watermark_window < c.checkpoint_interval {
            return Err(invalid(
                "consensus.watermark_window",
                "must be at least checkpoint_interval",
            ));
        }
        if c.view_change_timeout_ms == 0 {
            return Err(invalid(
                "consensus.view_change_timeout_ms",
                "must be positive",
            ));
        }
        Ok(())
    }

    /// The validators' consensus keys, in index order.
    pub fn validator_keys(&self) -> Vec<PublicKey> {
        self.validators.iter().map(|v| v.public_key).collect()
    }

    /// The fee account of a validator.
    pub fn fee_recipient(&self, proposer: ValidatorIndex) -> Address {
        self.validators
            .get(proposer.as_usize())
            .map(|v| Address(v.public_key))
            // Unreachable for blocks that passed consensus; burn to the zero key otherwise.
            .unwrap_or(Address(PublicKey([0; 32])))
    }

    /// The initial state (under proof of stake, with each validator's
    /// stake in its stake account).
    pub fn state(&self) -> State {
        let mut balances: BTreeMap<Address, u64> = self
            .accounts
            .iter()
            .map(|a| (a.address, a.balance))
            .collect();
        if self.consensus.engine.staked() {
            for (i, v) in self.validators.iter().enumerate() {
                balances.insert(stake_address(ValidatorIndex(i as u32)), v.stake);
            }
        }
        State::genesis(&balances)
    }

    /// The rules execution follows on this chain.
    pub fn rules(&self) -> crate::Rules {
        crate::Rules {
            min_fee: self.consensus.min_fee,
            slash_percent: if self.consensus.engine.staked() {
                self.consensus.slash_percent
            } else {
                0
            },
        }
    }

    /// The genesis block (height 0): no transactions, the genesis state root.
    pub fn block(&self) -> Block {
        Block {
            header: BlockHeader {
                chain_id: self.chain_id.clone(),
                height: Height::GENESIS,
                parent: Hash::ZERO,
                timestamp_ms: self.genesis_time_ms,
                proposer: ValidatorIndex(0),
                round: 0,
                tx_root: merkle_root(&[]),
                evidence_root: merkle_root(&[]),
                state_root: self.state().root(),
            },
            txs: Vec::new(),
            evidence: Vec::new(),
            justification: Justification::Genesis,
        }
    }
}
