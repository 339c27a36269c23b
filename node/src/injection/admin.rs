//! The fault-injection admin routes a harness drives:
//!
//! - `GET  /admin/faults`     what this node does: behaviour, blocked peers, added latency, counts
//! - `POST /admin/behaviour`  `{"behaviour": "equivocate"}` (any of [`super::BEHAVIOURS`])
//! - `POST /admin/partition`  `{"blocked": [2, 3]}`: drop every connection to these
//!   validators and refuse new ones; `{"blocked": []}` heals
//! - `POST /admin/latency`    `{"ms": 100}`: added latency on everything this node sends
//!
//! Changes are refused (403) unless the node was started with
//! `--allow-fault-injection`: a production node must never let an HTTP
//! client make it lie. Even then the routes answer only clients on the
//! node's own machine (a loopback address; 403 otherwise), and changes must
//! be sent as `Content-Type: application/json` (415 otherwise), which a web
//! page cannot do across origins without a preflight the node never
//! grants: a page open in a browser cannot make a local test node lie.

use super::{Behaviour, FaultControl, MischiefStats};
use crate::api::error::ApiError;
use crate::p2p::NetCommand;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use phalanx_ledger::ValidatorIndex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What the admin routes act on.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The node's fault state.
    pub control: Arc<FaultControl>,
    /// The network task (for partitions).
    pub net: mpsc::Sender<NetCommand>,
    /// Validators in the set.
    pub n: usize,
    /// This validator.
    pub me: ValidatorIndex,
}

/// `GET /admin/faults`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultsView {
    /// Whether the admin routes may change anything.
    pub allow_fault_injection: bool,
    /// The current behaviour.
    pub behaviour: Behaviour,
    /// Validators this node is cut off from.
    pub blocked: Vec<u32>,
    /// Latency added to everything this node sends, ms.
    pub latency_ms: u64,
    /// What the wrapper did so far.
    pub stats: MischiefStats,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BehaviourBody {
    behaviour: Behaviour,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionBody {
    blocked: Vec<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyBody {
    ms: u64,
}

/// The admin routes. Serve them with
/// `into_make_service_with_connect_info::<SocketAddr>()`: without the
/// client's address every request is refused as not local.
pub fn router(state: AdminState) -> axum::Router {
    axum::Router::new()
        .route("/admin/faults", get(view))
        .route("/admin/behaviour", post(set_behaviour))
        .route("/admin/partition", post(partition))
        .route("/admin/latency", post(latency))
        .layer(axum::middleware::from_fn(guard))
        .with_state(state)
}

/// Who may use the admin routes, and how (see the module note).
pub fn check_request(
    peer: Option<SocketAddr>,
    method: &Method,
    content_type: Option<&str>,
) -> Result<(), ApiError> {
    if !peer.is_some_and(|p| p.ip().is_loopback() || p.ip().to_canonical().is_loopback()) {
        let from = peer.map_or_else(|| "an unknown address".to_owned(), |p| p.ip().to_string());
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_local_only",
            format!("the admin routes answer only clients on this machine, not {from}"),
        ));
    }
    if *method != Method::GET {
        let json = content_type
            .and_then(|c| c.split(';').next())
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "json_only",
                "send the body as JSON with `Content-Type: application/json` \
                 (curl: -H 'content-type: application/json')",
            ));
        }
    }
    Ok(())
}

async fn guard(request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    match check_request(peer, request.method(), content_type) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

fn snapshot(c: &FaultControl) -> FaultsView {
    FaultsView {
        allow_fault_injection: c.allow_injection,
        behaviour: c.behaviour(),
        blocked: c.blocked().into_iter().collect(),
        latency_ms: c.latency_ms(),
        stats: c.stats(),
    }
}

async fn view(State(s): State<AdminState>) -> Json<FaultsView> {
    Json(snapshot(&s.control))
}

fn allowed(s: &AdminState) -> Result<(), ApiError> {
    if s.control.allow_injection {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "fault_injection_disabled",
            "fault injection is disabled on this node; start it with \
             `phalanx node --allow-fault-injection` (test networks only)",
        ))
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes, example: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("bad_request", format!("{e}; expected JSON like {example}"))
    })
}

async fn set_behaviour(
    State(s): State<AdminState>,
    body: Bytes,
) -> Result<Json<FaultsView>, ApiError> {
    allowed(&s)?;
    let b: BehaviourBody = parse(&body, r#"{"behaviour": "silent"}"#)?;
    tracing::warn!(behaviour = %b.behaviour, "fault injection: behaviour set over the admin API");
    s.control.set_behaviour(b.behaviour);
    Ok(Json(snapshot(&s.control)))
}

async fn partition(State(s): State<AdminState>, body: Bytes) -> Result<Json<FaultsView>, ApiError> {
    allowed(&s)?;
    let p: PartitionBody = parse(&body, r#"{"blocked": [2, 3]}"#)?;
    let mut set = BTreeSet::new();
    for v in p.blocked {
        if v as usize >= s.n || v == s.me.0 {
            return Err(ApiError::bad_request(
                "bad_validator",
                format!(
                    "cannot block validator {v}: the set has validators 0..{} and this node is {}",
                    s.n, s.me.0
                ),
            ));
        }
        set.insert(v);
    }
    tracing::warn!(blocked = ?set, "fault injection: partition set over the admin API");
    s.net
        .send(NetCommand::Block(
            set.iter().map(|v| ValidatorIndex(*v)).collect(),
        ))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the network task has stopped",
            )
        })?;
    s.control.set_blocked(set);
    Ok(Json(snapshot(&s.control)))
}

async fn latency(State(s): State<AdminState>, body: Bytes) -> Result<Json<FaultsView>, ApiError> {
    allowed(&s)?;
    let l: LatencyBody = parse(&body, r#"{"ms": 100}"#)?;
    if l.ms > 60_000 {
        return Err(ApiError::bad_request(
            "bad_latency",
            "latency must be at most 60000 ms",
        ));
    }
    s.control.set_latency_ms(l.ms);
    Ok(Json(snapshot(&s.control)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(addr: &str) -> Option<SocketAddr> {
        Some(addr.parse().unwrap())
    }

    fn code(r: Result<(), ApiError>) -> Option<(StatusCode, &'static str)> {
        r.err().map(|e| (e.status, e.code))
    }

    /// Issue 18, finding 8: a flag alone guarded the admin routes.
    #[test]
    fn only_local_json_requests_pass() {
        let json = Some("application/json");
        let post = Method::POST;
        for local in [
            "127.0.0.1:5000",
            "127.8.9.10:1",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:9",
        ] {
            assert_eq!(code(check_request(at(local), &post, json)), None, "{local}");
            assert_eq!(
                code(check_request(at(local), &Method::GET, None)),
                None,
                "{local}"
            );
        }
        for remote in [
            "10.0.0.2:5000",
            "192.168.1.4:80",
            "[2001:db8::1]:1",
            "0.0.0.0:1",
        ] {
            assert_eq!(
                code(check_request(at(remote), &post, json)),
                Some((StatusCode::FORBIDDEN, "admin_local_only")),
                "{remote}"
            );
            assert_eq!(
                code(check_request(at(remote), &Method::GET, None)),
                Some((StatusCode::FORBIDDEN, "admin_local_only"))
            );
        }
        assert_eq!(
            code(check_request(None, &post, json)),
            Some((StatusCode::FORBIDDEN, "admin_local_only"))
        );
        // A form post (what a web page can send without a preflight) or
        // no content type at all: refused.
        for ct in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
        ] {
            assert_eq!(
                code(check_request(at("127.0.0.1:1"), &post, ct)),
                Some((StatusCode::UNSUPPORTED_MEDIA_TYPE, "json_only")),
                "{ct:?}"
            );
        }
        assert_eq!(
            code(check_request(
                at("127.0.0.1:1"),
                &post,
                Some("Application/JSON; charset=utf-8")
            )),
            None
        );
    }
}
