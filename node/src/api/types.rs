//! The JSON bodies of the HTTP API, shared by the server (`api`) and the
//! CLI's client, so both sides agree on every field name.

use phalanx_crypto::{Hash, PublicKey};
use phalanx_ledger::{
    Address, Block, Evidence, Height, Justification, Receipt, SignedTransaction, ValidatorIndex,
};
use serde::{Deserialize, Serialize};

/// Every error response: `{"code": "...", "message": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable short code ("malformed", "unknown_tx", "nonce_used", ...).
    pub code: String,
    /// What went wrong and, where possible, what to do.
    pub message: String,
}

/// `GET /health`: 200 with `ok: true` while the node runs consensus, 503
/// with `ok: false` and the reason once its driver has stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// Whether the node takes part in consensus.
    pub ok: bool,
    /// Latest committed height.
    pub height: u64,
    /// Why it does not, when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a block can still be replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finality {
    /// Committed by a quorum certificate (PBFT, CFT) or genesis: never reverted.
    Final,
    /// Produced by a fallback engine (PoW, PoS): a later PBFT quorum may discard it.
    Tentative,
    /// Taken out of this node's chain: a heavier branch replaced it, or
    /// PBFT finalized another (answered for the blocks a node reverted
    /// recently, and their transactions that can no longer apply).
    Discarded,
}

impl Finality {
    /// The finality a block's justification gives it.
    pub fn of(justification: &Justification) -> Finality {
        match justification {
            Justification::Genesis
            | Justification::Pbft(_)
            | Justification::Finalized { .. }
            | Justification::Cft { .. } => Finality::Final,
            Justification::Pow { .. } | Justification::Pos { .. } => Finality::Tentative,
        }
    }
}

impl Finality {
    /// A tentative block's confirmations at `height` on a chain whose
    /// head is at `head` (`None` for a final block).
    pub fn confirmations(self, height: Height, head: Height) -> Option<u64> {
        (self == Finality::Tentative).then(|| head.0.saturating_sub(height.0) + 1)
    }
}

impl std::fmt::Display for Finality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Finality::Final => "final",
            Finality::Tentative => "tentative",
            Finality::Discarded => "discarded",
        })
    }
}

/// `GET /blocks/latest`, `GET /blocks/{height|hash}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockResponse {
    /// The block hash.
    pub hash: Hash,
    /// The block height.
    pub height: Height,
    /// Final or tentative.
    pub finality: Finality,
    /// Tentative blocks (proof of work, proof of stake): how many blocks,
    /// this one included, the node's chain has from it to its head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmations: Option<u64>,
    /// The hashes of `block.txs`, in order.
    pub tx_hashes: Vec<Hash>,
    /// The block itself.
    pub block: Block,
}

impl BlockResponse {
    /// The response for a stored block, on a chain whose latest block is
    /// at `head`.
    pub fn new(block: Block, head: Height) -> BlockResponse {
        let finality = Finality::of(&block.justification);
        BlockResponse {
            hash: block.hash(),
            height: block.height(),
            finality,
            confirmations: finality.confirmations(block.height(), head),
            tx_hashes: block.txs.iter().map(SignedTransaction::hash).collect(),
            block,
        }
    }
}

/// Where a transaction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxState {
    /// In a committed block (its receipt says whether it succeeded).
    Committed,
    /// In this node's mempool, waiting to be ordered.
    Pending,
    /// Was in a block this node discarded (see [`Finality::Discarded`])
    /// and is neither in its chain nor in its mempool: it can no longer
    /// apply (another transaction used its nonce), or the mempool refused
    /// it back.
    Discarded,
}

/// `GET /txs/{hash}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxResponse {
    /// The transaction hash.
    pub tx_hash: Hash,
    /// Committed, pending or discarded.
    pub status: TxState,
    /// The block height (committed, or discarded: the height of the
    /// discarded block).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<Height>,
    /// The hash of the discarded block that held it (discarded only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discarded_block: Option<Hash>,
    /// Position in the block (committed only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Finality of the block (committed only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finality: Option<Finality>,
    /// Confirmations of its block, when tentative (see [`BlockResponse`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmations: Option<u64>,
    /// What execution did (committed only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
    /// The signed transaction (committed or discarded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx: Option<SignedTransaction>,
}

/// `POST /txs` (and `?wait=true`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// The transaction hash, always, even when a wait timed out.
    pub tx_hash: Hash,
    /// Whether the transaction is in a committed block.
    pub committed: bool,
    /// The block height (when committed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<Height>,
    /// The receipt (when committed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
}

/// `GET /accounts/{address}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountResponse {
    /// The account.
    pub address: Address,
    /// Committed balance.
    pub balance: u64,
    /// The nonce the account's next transaction must carry (committed state;
    /// transactions still in a mempool are not counted).
    pub next_nonce: u64,
}

/// One entry of `GET /validators`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorResponse {
    /// Position in the genesis validator list.
    pub index: ValidatorIndex,
    /// Its name.
    pub name: String,
    /// Consensus key (also its fee account).
    pub public_key: PublicKey,
    /// libp2p identity key.
    pub node_key: PublicKey,
    /// libp2p multiaddr.
    pub p2p_address: String,
    /// HTTP API address.
    pub api_address: String,
    /// Voting weight: the genesis stake, or under proof of stake what its
    /// stake account holds now (slashing takes from it).
    pub stake: u64,
    /// Proof of stake: whether it was slashed for signing two blocks in
    /// one slot.
    #[serde(default)]
    pub slashed: bool,
}

/// One entry of `GET /evidence`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceResponse {
    /// Stable id of the evidence.
    pub id: Hash,
    /// The validator that signed two conflicting votes.
    pub offender: ValidatorIndex,
    /// The two votes.
    pub evidence: Evidence,
}

/// `POST /txs/batch`: what happened to each transaction of the batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSubmitResponse {
    /// Transactions queued in the mempool.
    pub accepted: usize,
    /// The refused ones (the rest were accepted), in batch order.
    pub rejected: Vec<BatchRejection>,
}

/// One refused transaction of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRejection {
    /// Its position in the batch.
    pub index: usize,
    /// Its hash.
    pub tx_hash: Hash,
    /// The error code (as `POST /txs` would answer).
    pub code: String,
    /// Why.
    pub message: String,
}

/// `GET /commits?from=H`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitsResponse {
    /// This node's latest height.
    pub latest: u64,
    /// The lowest height the node still remembers commit times for
    /// (older ones can only be read with `GET /blocks/{height}`).
    pub oldest_kept: u64,
    /// Commits from `from` on, in height order.
    pub commits: Vec<CommitRecord>,
}

/// What `GET /status` reports; the driver publishes a new one on every change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The chain.
    pub chain_id: String,
    /// This node's name.
    pub moniker: String,
    /// This node's validator index.
    pub validator_index: u32,
    /// Latest committed height.
    pub height: u64,
    /// Reorgs this node went through since it started (proof of work,
    /// proof of stake: tentative blocks reverted for a heavier branch).
    #[serde(default)]
    pub reorgs: u64,
    /// The last reorg, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reorg: Option<ReorgRecord>,
    /// Tentative blocks this node reverted since it started (every reorg's
    /// depth, summed: the losing side of a split, or a branch PBFT did not
    /// finalize).
    #[serde(default)]
    pub discarded_blocks: u64,
    /// Transactions of those blocks put back in the mempool since it started.
    #[serde(default)]
    pub returned_txs: u64,
    /// The highest height that can never be reverted: `height` under PBFT
    /// and CFT, genesis under proof of work and proof of stake (whose
    /// blocks are tentative, with confirmations).
    #[serde(default)]
    pub final_height: u64,
    /// Hash of the block at `final_height`.
    #[serde(default)]
    pub final_hash: Hash,
    /// Blocks above the final one (`height − final_height`).
    #[serde(default)]
    pub finality_lag: u64,
    /// When `final_height` last moved (Unix ms, this node's clock; 0: not
    /// since the node started).
    #[serde(default)]
    pub last_final_at_ms: u64,
    /// PBFT with a fallback: "pbft" (ordering, every block final),
    /// "fallback" (no quorum: tentative blocks) or "recovering" (PBFT
    /// finalizes the tentative blocks); empty for other engines.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// Hash of the latest block.
    pub latest_block_hash: Hash,
    /// Current view.
    pub view: u64,
    /// The primary of `view`.
    pub primary: u32,
    /// Whether a view change is under way.
    pub view_changing: bool,
    /// Connected validator peers (their validator indices).
    pub peers: Vec<u32>,
    /// Transactions in the mempool.
    pub mempool_size: usize,
    /// The consensus engine the driver runs ("pbft", "cft").
    pub consensus: String,
    /// How this node behaves towards its peers ("honest" unless started
    /// with `--behaviour` or changed by fault injection).
    #[serde(default)]
    pub behaviour: String,
    /// Validators this node has proven faulty (equivocation evidence) and
    /// whose consensus messages it ignores.
    #[serde(default)]
    pub faulty_peers: Vec<u32>,
    /// The node's version ("0.1.0").
    #[serde(default)]
    pub version: String,
    /// The git commit the node was built from, or "unknown".
    #[serde(default)]
    pub git_commit: String,
    /// While a pause injected by `POST /admin/pause` lasts: when it ends
    /// (Unix ms); 0 otherwise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub paused_until_ms: u64,
    /// Why the consensus driver stopped, if it did (a full disk, say): the
    /// node still answers reads but no longer takes part in consensus, and
    /// `/health` fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

/// A reorg, as `/status` reports the last one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReorgRecord {
    /// The height of the head before.
    pub from_height: u64,
    /// The common ancestor's height: the blocks above it were reverted.
    pub to_height: u64,
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
    /// Transactions of the reverted blocks put back in the mempool.
    pub returned_txs: u64,
}

/// One committed block as `GET /commits` reports it: when this node
/// executed it and which transactions it holds (what a benchmark needs to
/// time every transaction without fetching whole blocks).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    /// The height.
    pub height: u64,
    /// The block hash.
    pub block_hash: Hash,
    /// The proposer's timestamp (ms since the Unix epoch).
    pub proposed_at_ms: u64,
    /// When this node had executed and stored it (ms since the Unix epoch).
    pub committed_at_ms: u64,
    /// The transaction hashes, in block order.
    pub tx_hashes: Vec<Hash>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
