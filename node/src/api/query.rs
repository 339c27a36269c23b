//! Read-only routes: they read the store, the genesis and the published
//! status, and never block on consensus.

use super::error::ApiError;
use super::types::{
    AccountResponse, BlockResponse, EvidenceResponse, Finality, HealthResponse, TxResponse,
    TxState, ValidatorResponse,
};
use crate::api::types::NodeStatus;
use crate::metrics::Format;
use crate::shared::Shared;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use phalanx_crypto::Hash;
use phalanx_ledger::{Address, Block, Height, ValidatorIndex};
use std::sync::Arc;

type AppState = State<Arc<Shared>>;

/// A path parameter, with axum's rejection turned into our JSON error.
fn param(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(s)| s)
        .map_err(|e| ApiError::bad_request("bad_request", e.body_text()))
}

pub(super) async fn status(State(shared): AppState) -> Json<NodeStatus> {
    Json(shared.status.get())
}

pub(super) async fn health(State(shared): AppState) -> (StatusCode, Json<HealthResponse>) {
    let status = shared.status.get();
    let code = if status.stopped.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let health = HealthResponse {
        ok: status.stopped.is_none(),
        height: status.height,
        error: status.stopped,
    };
    (code, Json(health))
}

pub(super) async fn latest_block(State(shared): AppState) -> Result<Json<BlockResponse>, ApiError> {
    let block = latest(&shared)?;
    let head = block.height();
    Ok(Json(BlockResponse::new(block, head)))
}

fn latest(shared: &Shared) -> Result<Block, ApiError> {
    shared.store.latest_block()?.ok_or_else(|| {
        ApiError::not_found(
            "unknown_block",
            "this node has no blocks yet (not even genesis): is it still starting?",
        )
    })
}

/// How a block is named in `/blocks/{id}`.
#[derive(Debug, PartialEq, Eq)]
enum BlockId {
    Latest,
    Safe,
    Finalized,
    Height(Height),
    Hash(Hash),
}

/// Confirmations that make a tentative block `safe` (Ethereum's tag: not
/// expected to be reverted while most producers are honest and messages
/// arrive in time).
pub const SAFE_CONFIRMATIONS: u64 = 6;

fn parse_block_id(s: &str) -> Result<BlockId, ApiError> {
    match s {
        "latest" => return Ok(BlockId::Latest),
        "safe" => return Ok(BlockId::Safe),
        "finalized" => return Ok(BlockId::Finalized),
        _ => {}
    }
    // A 64-character id is a hash even if it happens to be all digits.
    if s.len() == 64 || s.starts_with("0x") {
        return s.parse::<Hash>().map(BlockId::Hash).map_err(|e| {
            ApiError::bad_request("bad_hex", format!("{s:?} is not a block hash: {e}"))
        });
    }
    s.parse::<u64>()
        .map(|h| BlockId::Height(Height(h)))
        .map_err(|_| {
            ApiError::bad_request(
                "bad_request",
                format!(
                    "{s:?} is not a block height, `latest`, `safe`, `finalized` or a 64-hex block hash"
                ),
            )
        })
}

pub(super) async fn block(
    State(shared): AppState,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<BlockResponse>, ApiError> {
    let at = |h: Height| {
        shared
            .store
            .block(h)?
            .ok_or_else(|| ApiError::not_found("unknown_block", format!("no block at height {h}")))
    };
    let block = match parse_block_id(&param(id)?)? {
        BlockId::Latest => latest(&shared)?,
        // The last final block (a PBFT or CFT certificate, or genesis).
        BlockId::Finalized => at(Height(shared.status.get().final_height))?,
        // The final block, or the head's ancestor with
        // SAFE_CONFIRMATIONS confirmations if that is higher.
        BlockId::Safe => {
            let st = shared.status.get();
            let deep = st.height.saturating_sub(SAFE_CONFIRMATIONS - 1);
            at(Height(st.final_height.max(deep).min(st.height)))?
        }
        BlockId::Height(h) => shared.store.block(h)?.ok_or_else(|| {
            let latest = shared
                .store
                .latest_height()
                .ok()
                .flatten()
                .map_or("none".into(), |h| h.to_string());
            ApiError::not_found(
                "unknown_block",
                format!("no block at height {h}: the latest height is {latest}"),
            )
        })?,
        BlockId::Hash(hash) => match shared.store.block_by_hash(&hash)? {
            Some(block) => block,
            None => {
                let Some(d) = shared.discarded.block(&hash) else {
                    return Err(ApiError::not_found(
                        "unknown_block",
                        format!("no block with hash {hash}"),
                    ));
                };
                let mut answer = BlockResponse::new(d.block, head_height(&shared));
                answer.finality = Finality::Discarded;
                answer.confirmations = None;
                return Ok(Json(answer));
            }
        },
    };
    Ok(Json(BlockResponse::new(block, head_height(&shared))))
}

/// The height of this node's latest block (for confirmations).
fn head_height(shared: &Shared) -> Height {
    Height(shared.status.get().height)
}

fn parse_hash(s: &str, what: &str) -> Result<Hash, ApiError> {
    s.parse::<Hash>()
        .map_err(|e| ApiError::bad_request("bad_hex", format!("{s:?} is not a {what}: {e}")))
}

pub(super) async fn tx(
    State(shared): AppState,
    hash: Result<Path<String>, PathRejection>,
) -> Result<Json<TxResponse>, ApiError> {
    let hash = parse_hash(&param(hash)?, "transaction hash")?;
    if let Some(loc) = shared.store.tx(&hash)? {
        let block = shared.store.block(loc.height)?;
        let tx = block
            .as_ref()
            .and_then(|b| b.txs.get(loc.index as usize))
            .cloned();
        return Ok(Json(TxResponse {
            tx_hash: hash,
            status: TxState::Committed,
            height: Some(loc.height),
            discarded_block: None,
            index: Some(loc.index),
            finality: block.as_ref().map(|b| Finality::of(&b.justification)),
            confirmations: block.as_ref().and_then(|b| {
                Finality::of(&b.justification).confirmations(b.height(), head_height(&shared))
            }),
            receipt: Some(loc.receipt),
            tx,
        }));
    }
    if shared.mempool.contains(&hash) {
        return Ok(Json(TxResponse {
            tx_hash: hash,
            status: TxState::Pending,
            height: None,
            discarded_block: None,
            index: None,
            finality: None,
            confirmations: None,
            receipt: None,
            tx: None,
        }));
    }
    if let Some((height, block, tx)) = shared.discarded.tx(&hash) {
        return Ok(Json(TxResponse {
            tx_hash: hash,
            status: TxState::Discarded,
            height: Some(height),
            discarded_block: Some(block),
            index: None,
            finality: Some(Finality::Discarded),
            confirmations: None,
            receipt: None,
            tx: Some(tx),
        }));
    }
    Err(ApiError::not_found(
        "unknown_tx",
        format!("transaction {hash} is unknown to this node: it is neither committed nor in its mempool"),
    ))
}

pub(super) async fn account(
    State(shared): AppState,
    address: Result<Path<String>, PathRejection>,
) -> Result<Json<AccountResponse>, ApiError> {
    let text = param(address)?;
    let address: Address = text.parse().map_err(|e| {
        ApiError::bad_request(
            "bad_hex",
            format!("{text:?} is not an address (64 hex characters): {e}"),
        )
    })?;
    let account = shared.store.account(&address)?.ok_or_else(|| {
        ApiError::not_found(
            "unknown_account",
            format!("account {address} does not exist: it has never received funds on this chain"),
        )
    })?;
    Ok(Json(AccountResponse {
        address,
        balance: account.balance,
        next_nonce: account.nonce,
    }))
}

pub(super) async fn validators(State(shared): AppState) -> Json<Vec<ValidatorResponse>> {
    let pos = shared.genesis.consensus.engine.staked();
    Json(
        shared
            .genesis
            .validators
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let index = ValidatorIndex(i as u32);
                let live = pos
                    .then(|| {
                        shared
                            .executed
                            .account(&phalanx_ledger::stake_address(index))
                    })
                    .flatten();
                ValidatorResponse {
                    index,
                    name: v.name.clone(),
                    public_key: v.public_key,
                    node_key: v.node_key,
                    p2p_address: v.p2p_address.clone(),
                    api_address: v.api_address.clone(),
                    stake: live.map_or(v.stake, |a| a.balance),
                    slashed: live.is_some_and(|a| a.nonce > 0),
                }
            })
            .collect(),
    )
}

pub(super) async fn evidence(
    State(shared): AppState,
) -> Result<Json<Vec<EvidenceResponse>>, ApiError> {
    let list = shared.store.evidence()?;
    Ok(Json(
        list.into_iter()
            .map(|e| EvidenceResponse {
                id: e.id(),
                offender: e.offender(),
                evidence: e,
            })
            .collect(),
    ))
}

/// OpenMetrics when the client asks for it (Prometheus does), the classic
/// text format otherwise (see [`Format::negotiate`]).
pub(super) async fn metrics(State(shared): AppState, headers: HeaderMap) -> impl IntoResponse {
    // Several Accept headers are one list.
    let accept: Vec<&str> = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let format = Format::negotiate((!accept.is_empty()).then(|| accept.join(",")).as_deref());
    (
        [(CONTENT_TYPE, format.content_type())],
        shared.metrics.render(format),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids() {
        assert_eq!(parse_block_id("latest").unwrap(), BlockId::Latest);
        assert_eq!(parse_block_id("17").unwrap(), BlockId::Height(Height(17)));
        assert_eq!(parse_block_id("safe").unwrap(), BlockId::Safe);
        assert_eq!(parse_block_id("finalized").unwrap(), BlockId::Finalized);
        let digits = "1".repeat(64);
        assert!(
            matches!(parse_block_id(&digits).unwrap(), BlockId::Hash(_)),
            "64 chars is a hash"
        );
        assert_eq!(parse_block_id("zz").unwrap_err().code, "bad_request");
        assert_eq!(parse_block_id(&"g".repeat(64)).unwrap_err().code, "bad_hex");
    }
}

/// The query string of `GET /commits`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CommitsParams {
    /// First height wanted (default 1).
    #[serde(default)]
    from: Option<u64>,
    /// Most records returned (default and cap 1000).
    #[serde(default)]
    limit: Option<usize>,
    /// If nothing at `from` is committed yet, wait up to this long (cap 10 s).
    #[serde(default)]
    wait_ms: Option<u64>,
}

/// `GET /commits?from=H[&limit=L][&wait_ms=W]`: recent commits with the time
/// this node executed each and its transaction hashes (for benchmarks and
/// monitors); long-polls when `wait_ms` is given.
pub(super) async fn commits(
    State(shared): AppState,
    params: Result<axum::extract::Query<CommitsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<super::types::CommitsResponse>, ApiError> {
    let axum::extract::Query(params) = params.map_err(|e| {
        ApiError::bad_request(
            "bad_query",
            format!(
                "{}; parameters: from=HEIGHT, limit=N, wait_ms=MS",
                e.body_text()
            ),
        )
    })?;
    let from = params.from.unwrap_or(1).max(1);
    let limit = params.limit.unwrap_or(1000).clamp(1, 1000);
    let wait = std::time::Duration::from_millis(params.wait_ms.unwrap_or(0).min(10_000));
    let mut changes = shared.status.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    while changes.borrow_and_update().height < from {
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let latest = shared.status.get().height;
    let (commits, oldest_kept) = shared.commits.since(from, limit);
    Ok(Json(super::types::CommitsResponse {
        latest,
        oldest_kept,
        commits,
    }))
}
