//! The fault-injection admin routes a harness drives:
//!
//! - `GET  /admin/faults`     what this node does: behaviour, blocked peers, added latency, counts
//! - `POST /admin/behaviour`  `{"behaviour": "equivocate"}` (any of [`super::BEHAVIOURS`])
//! - `POST /admin/partition`  `{"blocked": [2, 3]}`: drop every connection to these
//!   validators and refuse new ones; `{"blocked": []}` heals
//! - `POST /admin/latency`    `{"ms": 100}`: added latency on everything this node sends
//! - `POST /admin/pause`      `{"ms": 10000}`: the node handles nothing for that long, as
//!   if stopped with SIGSTOP (`{"ms": 0}` resumes it); see [`super::switches`]
//! - `POST /admin/stop`       `{}`: the node shuts down as on SIGTERM
//!
//! Changes are refused (403) unless the node was started with
//! `--allow-fault-injection`: a production node must never let an HTTP
//! client make it lie. Even then the routes answer only clients on the
//! node's own machine (a loopback address; 403 otherwise), and changes must
//! be sent as `Content-Type: application/json` (415 otherwise), which a web
//! page cannot do across origins without a preflight the node never
//! grants to other origins: a page open in a browser cannot make a local
//! test node lie. The live page, served by the testnet's own nodes, may:
//! a request that carries an `Origin` (a browser's) must come from one of
//! the validators' API origins in the genesis (`http://<api_address>`, and
//! `http://localhost:<port>` for a loopback one), and only those get an
//! answer to the CORS preflight.

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
    /// Pause and stop.
    pub switches: Arc<super::switches::Switches>,
    /// Browser origins allowed (the validators' API origins).
    pub origins: Arc<BTreeSet<String>>,
}

/// The origins of the validators' APIs, as a browser names them: the live
/// page of any validator may drive the others' admin routes.
pub fn page_origins<'a>(api_addresses: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let mut origins = BTreeSet::new();
    for a in api_addresses {
        let Ok(addr) = a.parse::<SocketAddr>() else {
            continue;
        };
        origins.insert(format!("http://{addr}"));
        if addr.ip().is_loopback() {
            origins.insert(format!("http://localhost:{}", addr.port()));
        }
        if addr.ip().is_unspecified() {
            origins.insert(format!("http://127.0.0.1:{}", addr.port()));
            origins.insert(format!("http://localhost:{}", addr.port()));
        }
    }
    origins
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StopBody {}

/// The admin routes. Serve them with
/// `into_make_service_with_connect_info::<SocketAddr>()`: without the
/// client's address every request is refused as not local.
pub fn router(state: AdminState) -> axum::Router {
    axum::Router::new()
        .route("/admin/faults", get(view))
        .route("/admin/behaviour", post(set_behaviour))
        .route("/admin/partition", post(partition))
        .route("/admin/latency", post(latency))
        .route("/admin/pause", post(pause))
        .route("/admin/stop", post(stop))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
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

/// A browser's request: its origin must be one of the testnet's nodes.
pub fn check_origin(origin: Option<&str>, allowed: &BTreeSet<String>) -> Result<(), ApiError> {
    match origin {
        None => Ok(()),
        Some(o) if allowed.contains(o) => Ok(()),
        Some(o) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            format!(
                "the admin routes answer pages of this testnet's nodes only, not {o:?} \
                 (open the live page on a validator's API port)"
            ),
        )),
    }
}

async fn guard(State(s): State<AdminState>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let origin = header_string(&request, header::ORIGIN);
    let content_type = header_string(&request, header::CONTENT_TYPE);
    if let Err(e) = check_origin(origin.as_deref(), &s.origins) {
        return e.into_response();
    }
    // The CORS preflight of a page of this testnet (checked just above).
    if request.method() == Method::OPTIONS {
        if let Err(e) = check_request(peer, &Method::GET, None) {
            return e.into_response();
        }
        let mut response = StatusCode::NO_CONTENT.into_response();
        let h = response.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            header::HeaderValue::from_static("GET, POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            header::HeaderValue::from_static("content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            header::HeaderValue::from_static("600"),
        );
        return with_origin(response, origin.as_deref());
    }
    let response = match check_request(peer, request.method(), content_type.as_deref()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    };
    with_origin(response, origin.as_deref())
}

fn header_string(request: &Request, name: header::HeaderName) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Lets the (allowed) page that asked read the answer.
fn with_origin(mut response: Response, origin: Option<&str>) -> Response {
    if let Some(v) = origin.and_then(|o| header::HeaderValue::from_str(o).ok()) {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::VARY, header::HeaderValue::from_static("origin"));
    }
    response
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

async fn pause(State(s): State<AdminState>, body: Bytes) -> Result<Json<FaultsView>, ApiError> {
    allowed(&s)?;
    let p: PauseBody = parse(&body, r#"{"ms": 10000}"#)?;
    let max = super::switches::MAX_PAUSE_MS;
    if p.ms > max {
        return Err(ApiError::bad_request(
            "bad_pause",
            format!("a pause lasts at most {max} ms (0 resumes the node)"),
        ));
    }
    tracing::warn!(ms = p.ms, "fault injection: pause set over the admin API");
    s.switches.pause(p.ms);
    Ok(Json(snapshot(&s.control)))
}

async fn stop(State(s): State<AdminState>, body: Bytes) -> Result<Json<FaultsView>, ApiError> {
    allowed(&s)?;
    let _: StopBody = parse(&body, "{}")?;
    tracing::warn!("fault injection: stop requested over the admin API");
    s.switches.stop();
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

    /// The admin routes served on loopback, as `phalanx node` serves them.
    struct Served {
        url: String,
        switches: Arc<crate::injection::switches::Switches>,
        control: Arc<FaultControl>,
        _runtime: tokio::runtime::Runtime,
    }

    const PAGE: &str = "http://127.0.0.1:26101";

    fn serve(allow: bool) -> Served {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let control = Arc::new(FaultControl::new(Behaviour::Honest, allow));
        let switches = Arc::new(crate::injection::switches::Switches::default());
        let (net, mut wire) = mpsc::channel(16);
        let state = AdminState {
            control: control.clone(),
            net,
            n: 4,
            me: ValidatorIndex(0),
            switches: switches.clone(),
            origins: Arc::new(page_origins(
                (0..4)
                    .map(|i| format!("127.0.0.1:{}", 26100 + i))
                    .collect::<Vec<_>>()
                    .iter()
                    .map(String::as_str),
            )),
        };
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let service = router(state).into_make_service_with_connect_info::<SocketAddr>();
        runtime.spawn(async move { axum::serve(listener, service).await });
        runtime.spawn(async move { while wire.recv().await.is_some() {} });
        Served {
            url,
            switches,
            control,
            _runtime: runtime,
        }
    }

    /// (status, allow-origin header, JSON body or null).
    fn request(
        s: &Served,
        method: &str,
        path: &str,
        origin: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Option<String>, serde_json::Value) {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .new_agent();
        let url = format!("{}{path}", s.url);
        let result = match method {
            "OPTIONS" => {
                let mut r = agent
                    .options(&url)
                    .header("access-control-request-method", "POST")
                    .header("access-control-request-headers", "content-type");
                if let Some(o) = origin {
                    r = r.header("origin", o);
                }
                r.call()
            }
            _ => {
                let mut r = agent.post(&url).content_type("application/json");
                if let Some(o) = origin {
                    r = r.header("origin", o);
                }
                r.send(body.unwrap_or("{}"))
            }
        };
        let mut response = result.unwrap();
        let allow_origin = response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (
            response.status().as_u16(),
            allow_origin,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Issue 21: the live page of any of the testnet's nodes may drive the
    /// admin routes (CORS preflight granted to those origins only); any
    /// other origin is refused before anything changes.
    #[test]
    fn the_testnets_pages_may_drive_admin_routes_other_origins_may_not() {
        let s = serve(true);
        for origin in [PAGE, "http://localhost:26103", "http://127.0.0.1:26100"] {
            let (status, allow, _) = request(&s, "OPTIONS", "/admin/pause", Some(origin), None);
            assert_eq!((status, allow.as_deref()), (204, Some(origin)), "{origin}");
        }
        for evil in [
            "http://evil.example",
            "http://127.0.0.1:26104",
            "https://127.0.0.1:26101",
            "null",
        ] {
            let (status, allow, body) =
                request(&s, "OPTIONS", "/admin/behaviour", Some(evil), None);
            assert_eq!((status, allow), (403, None), "{evil}");
            assert_eq!(body["code"], "cross_origin");
            let (status, _, body) = request(
                &s,
                "POST",
                "/admin/behaviour",
                Some(evil),
                Some(r#"{"behaviour":"silent"}"#),
            );
            assert_eq!((status, body["code"].as_str()), (403, Some("cross_origin")));
        }
        assert_eq!(
            s.control.behaviour(),
            Behaviour::Honest,
            "a refused request changed it"
        );
        let (status, allow, _) = request(
            &s,
            "POST",
            "/admin/behaviour",
            Some(PAGE),
            Some(r#"{"behaviour":"silent"}"#),
        );
        assert_eq!((status, allow.as_deref()), (200, Some(PAGE)));
        assert_eq!(s.control.behaviour(), Behaviour::Silent);
    }

    /// Issue 21: pause and stop, bounded, refused without
    /// `--allow-fault-injection`.
    #[test]
    fn pause_and_stop() {
        let s = serve(true);
        let (status, _, body) =
            request(&s, "POST", "/admin/pause", None, Some(r#"{"ms": 999999}"#));
        assert_eq!((status, body["code"].as_str()), (400, Some("bad_pause")));
        assert_eq!(s.switches.paused_for(), None);
        let (status, _, _) = request(
            &s,
            "POST",
            "/admin/pause",
            Some(PAGE),
            Some(r#"{"ms": 5000}"#),
        );
        assert_eq!(status, 200);
        assert!(s.switches.paused_for().is_some());
        let (status, _, _) = request(&s, "POST", "/admin/pause", None, Some(r#"{"ms": 0}"#));
        assert_eq!(status, 200);
        assert_eq!(s.switches.paused_for(), None);
        let (status, _, body) = request(&s, "POST", "/admin/stop", None, Some(r#"{"now": 1}"#));
        assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")));
        let (status, _, _) = request(&s, "POST", "/admin/stop", Some(PAGE), Some("{}"));
        assert_eq!(status, 200);
        s._runtime
            .block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(5), s.switches.stopped()).await
            })
            .expect("the stop request did not reach the node");

        let locked = serve(false);
        for (path, body) in [("/admin/pause", r#"{"ms": 100}"#), ("/admin/stop", "{}")] {
            let (status, _, answer) = request(&locked, "POST", path, None, Some(body));
            assert_eq!(
                (status, answer["code"].as_str()),
                (403, Some("fault_injection_disabled")),
                "{path}"
            );
        }
        assert_eq!(locked.switches.paused_for(), None);
    }
}
