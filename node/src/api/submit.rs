//! `POST /txs`: submit a signed transaction, optionally waiting for the
//! commit. The answer always carries the transaction hash, even when the
//! wait times out, so a client can keep asking with `GET /txs/{hash}`.

use super::error::ApiError;
use super::types::{BatchRejection, BatchSubmitResponse, SubmitResponse};
use crate::mempool::MempoolError;
use crate::shared::Shared;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use phalanx_crypto::Hash;
use phalanx_ledger::{SignedTransaction, TxLocation};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// The query string of `POST /txs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubmitParams {
    /// Wait (up to `api.wait_timeout_ms`) until the transaction is committed.
    #[serde(default)]
    wait: bool,
}

type Answer = Result<(StatusCode, Json<SubmitResponse>), ApiError>;

pub(super) async fn submit_tx(
    State(shared): State<Arc<Shared>>,
    params: Result<Query<SubmitParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let Query(params) = params.map_err(|e| {
        ApiError::bad_request(
            "bad_query",
            format!("{}; the only parameter is wait=true|false", e.body_text()),
        )
    })?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "request body is larger than {} bytes",
                    super::MAX_BODY_BYTES
                ),
            )
        } else {
            ApiError::bad_request(
                "malformed",
                format!("cannot read the request body: {}", e.body_text()),
            )
        }
    })?;
    let tx = parse_tx(&body)?;
    let hash = tx.hash();
    // Subscribe before submitting, so a commit that lands right after the
    // insert is still seen as a change.
    let mut changes = shared.status.subscribe();
    if let Err(e) = shared.submit(tx).await {
        // A resubmitted transaction may be committed already (its nonce is
        // then used) or still pending: answer what happened to it rather
        // than a refusal, so retrying a submission is harmless.
        if matches!(
            e,
            MempoolError::Duplicate(_) | MempoolError::NonceUsed { .. }
        ) {
            if let Some(loc) = shared.store.tx(&hash)? {
                return Ok(committed(hash, loc));
            }
        }
        if !(params.wait && matches!(e, MempoolError::Duplicate(_))) {
            return Err(e.into());
        }
    }
    if !params.wait {
        return Ok(pending(hash));
    }
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(shared.config.api.wait_timeout_ms);
    loop {
        if let Some(loc) = shared.store.tx(&hash)? {
            return Ok(committed(hash, loc));
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            // Timed out, or the driver is gone: the hash is still the answer.
            Ok(Err(_)) | Err(_) => return Ok(pending(hash)),
        }
    }
}

fn pending(hash: Hash) -> (StatusCode, Json<SubmitResponse>) {
    (
        StatusCode::ACCEPTED,
        Json(SubmitResponse {
            tx_hash: hash,
            committed: false,
            height: None,
            receipt: None,
        }),
    )
}

fn committed(hash: Hash, loc: TxLocation) -> (StatusCode, Json<SubmitResponse>) {
    (
        StatusCode::OK,
        Json(SubmitResponse {
            tx_hash: hash,
            committed: true,
            height: Some(loc.height),
            receipt: Some(loc.receipt),
        }),
    )
}

/// Parses the body as a `SignedTransaction`, with errors that say what is wrong.
fn parse_tx(body: &[u8]) -> Result<SignedTransaction, ApiError> {
    const SHAPE: &str =
        "expected {\"tx\": {\"chain_id\", \"from\", \"to\", \"amount\", \"nonce\", \"fee\"}, \
                         \"signature\": \"<128 hex>\"}";
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "malformed",
            format!("empty request body: {SHAPE}"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() && e.to_string().contains("hex") {
            ApiError::bad_request("bad_hex", format!("bad hex in the transaction: {e}"))
        } else if e.is_data() {
            ApiError::bad_request(
                "malformed",
                format!("the body is not a signed transaction: {e}; {SHAPE}"),
            )
        } else {
            ApiError::bad_request("malformed", format!("the body is not valid JSON: {e}"))
        }
    })
}

/// Most transactions in one `POST /txs/batch`.
pub const MAX_BATCH: usize = 10_000;

/// `POST /txs/batch`: a JSON array of signed transactions, checked with one
/// batch signature verification and queued together. Refusals are per
/// transaction; the request fails as a whole only if the body is not an array
/// of transactions or holds more than [`MAX_BATCH`].
/// Lets a `POST /txs/batch` through only while fewer than
/// `MAX_CLIENT_BATCHES_IN_FLIGHT` are being read and checked; otherwise
/// 503 `busy`, before the body is read.
pub(super) async fn admit_batch(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let Some(_permit) = shared.intake.admit_client_batch() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!(
                "{} transaction batches are being checked already; retry shortly",
                crate::intake::MAX_CLIENT_BATCHES_IN_FLIGHT
            ),
        )
        .into_response();
    };
    next.run(request).await
}

pub(super) async fn submit_batch(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BatchSubmitResponse>, ApiError> {
    let body = body.map_err(|e| {
        ApiError::new(
            e.status(),
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "malformed"
            },
            format!(
                "cannot read the request body (at most {} bytes): {}",
                super::MAX_BATCH_BODY_BYTES,
                e.body_text()
            ),
        )
    })?;
    let txs: Vec<SignedTransaction> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "malformed",
            format!("the body must be a JSON array of signed transactions: {e}"),
        )
    })?;
    if txs.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "{} transactions in one batch; at most {MAX_BATCH}",
                txs.len()
            ),
        ));
    }
    let total = txs.len();
    let results = shared.submit_batch(txs).await;
    let mut rejected = Vec::new();
    for (index, (tx_hash, result)) in results.into_iter().enumerate() {
        if let Err(e) = result {
            rejected.push(BatchRejection {
                index,
                tx_hash,
                code: e.code().to_owned(),
                message: e.to_string(),
            });
        }
    }
    Ok(Json(BatchSubmitResponse {
        accepted: total - rejected.len(),
        rejected,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_crypto::Keypair;
    use phalanx_ledger::{Address, Transaction};

    #[test]
    fn body_errors_are_classified() {
        assert_eq!(parse_tx(b"").unwrap_err().code, "malformed");
        assert_eq!(parse_tx(b"{\"tx\":").unwrap_err().code, "malformed");
        assert_eq!(parse_tx(b"[1,2]").unwrap_err().code, "malformed");
        let k = Keypair::from_label("a");
        let tx = Transaction {
            chain_id: "c".into(),
            from: Address(k.public()),
            to: Address(k.public()),
            amount: 1,
            nonce: 0,
            fee: 0,
        }
        .sign(&k);
        let good = serde_json::to_string(&tx).unwrap();
        assert_eq!(parse_tx(good.as_bytes()).unwrap(), tx);
        let bad = good.replace(&tx.signature.to_string(), "xyz");
        let err = parse_tx(bad.as_bytes()).unwrap_err();
        assert_eq!(
            (err.code, err.status),
            ("bad_hex", StatusCode::BAD_REQUEST),
            "{}",
            err.message
        );
    }
}
