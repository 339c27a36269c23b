//! The node's HTTP API (JSON, one port per node): status, health, blocks,
//! transactions (query and submit, optionally waiting for the commit),
//! accounts, validators, evidence, Prometheus `/metrics`, and the live page
//! (`/`, with its stream `/events`).
//!
//! The API only reads the store and submits to the mempool through
//! [`Shared`]; it never writes the store or drives consensus. Every error is
//! JSON `{"code", "message"}` (see [`error::ApiError`]); axum's plain-text
//! rejections are replaced, so clients can always parse what they get.

pub mod error;
mod live;
mod query;
mod submit;
pub mod types;

#[cfg(test)]
mod tests;

use crate::shared::Shared;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, Uri};
use axum::routing::get;
use error::ApiError;
use std::sync::Arc;

/// Largest request body accepted (a signed transfer is about 400 bytes of JSON).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Largest `POST /txs/batch` body (10,000 transfers of ~400 bytes).
pub const MAX_BATCH_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Routes, for error messages.
const ROUTES: &str = "GET / (the live page), /events (its stream), /status, /health, /blocks/latest, /blocks/{height|hash}, /txs/{hash}, \
                      /accounts/{address}, /validators, /evidence, /commits?from=H, /metrics; \
                      POST /txs[?wait=true], /txs/batch";

/// The API's routes.
pub fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/", get(live::index))
        .route("/page/app.js", get(live::app_js))
        .route("/page/style.css", get(live::style_css))
        .route("/events", get(live::events))
        .route("/status", get(query::status))
        .route("/health", get(query::health))
        .route("/blocks/latest", get(query::latest_block))
        .route("/blocks/{id}", get(query::block))
        .route("/txs", axum::routing::post(submit::submit_tx))
        .route(
            "/txs/batch",
            axum::routing::post(submit::submit_batch)
                .layer(DefaultBodyLimit::max(MAX_BATCH_BODY_BYTES))
                .layer(axum::middleware::from_fn_with_state(
                    shared.clone(),
                    submit::admit_batch,
                )),
        )
        .route("/commits", get(query::commits))
        .route("/txs/{hash}", get(query::tx))
        .route("/accounts/{address}", get(query::account))
        .route("/validators", get(query::validators))
        .route("/evidence", get(query::evidence))
        .route("/metrics", get(query::metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(
        "not_found",
        format!("no route {method} {}; the routes are {ROUTES}", uri.path()),
    )
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {}; the routes are {ROUTES}",
            uri.path()
        ),
    )
}
