//! The live page: `GET /` (and its script and style, embedded in the
//! binary: the page loads nothing from the internet) and `GET /events`,
//! the Server-Sent Events stream the page reads from every validator.
//!
//! `/events` sends `hello` (who this node is and where every validator's
//! API is), then `status` (the `/status` answer) on connect and on change,
//! at most every [`STATUS_EVERY`], and `batch`: a JSON array of
//! [`WatchEvent`]s gathered for [`BATCH_EVERY`], at most [`BATCH_MAX`] per
//! message. A client that falls behind gets `lagged` with the count it
//! missed (see [`crate::watch`] for the bounds). The stream is readable
//! from other origins (a page served by one validator reads them all); it
//! carries nothing `/status` and the chain do not already make public.

use super::error::ApiError;
use crate::shared::Shared;
use crate::watch::{Next, WatchEvent, Watcher};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long events gather before they go out together.
pub const BATCH_EVERY: Duration = Duration::from_millis(100);

/// Most events in one `batch` message (the rest go in the next).
pub const BATCH_MAX: usize = 1000;

/// Least time between two `status` messages.
pub const STATUS_EVERY: Duration = Duration::from_millis(250);

const INDEX_HTML: &str = include_str!("../page/index.html");
const APP_JS: &str = include_str!("../page/app.js");
const STYLE_CSS: &str = include_str!("../page/style.css");

/// The page may connect to other validators' streams and admin routes;
/// everything else only from itself.
const PAGE_CSP: &str = "default-src 'self'; connect-src *; style-src 'self'; img-src 'self' data:";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(PAGE_CSP),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub(super) async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub(super) async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// The first message on `/events`.
#[derive(Clone, Debug, Serialize)]
pub struct Hello {
    /// This validator.
    pub validator_index: u32,
    /// Validators in the set.
    pub n: usize,
    /// The chain.
    pub chain_id: String,
    /// This node's name.
    pub moniker: String,
    /// The engine ("pbft", "pbft+pos", ...).
    pub consensus: String,
    /// Whether this node's admin routes may change anything.
    pub allow_fault_injection: bool,
    /// The node's version.
    pub version: String,
    /// Every validator and its API (from the genesis; `None` if it has none).
    pub nodes: Vec<NodeApi>,
}

/// Where a validator's API answers.
#[derive(Clone, Debug, Serialize)]
pub struct NodeApi {
    /// Its index.
    pub index: u32,
    /// `http://host:port`.
    pub api: Option<String>,
}

fn hello(shared: &Shared) -> Hello {
    Hello {
        validator_index: shared.me.0,
        n: shared.genesis.validators.len(),
        chain_id: shared.genesis.chain_id.clone(),
        moniker: shared.config.moniker.clone(),
        consensus: shared.genesis.consensus.engine.name().into(),
        allow_fault_injection: shared.config.faults.allow_fault_injection,
        version: crate::version::VERSION.into(),
        nodes: shared
            .genesis
            .validators
            .iter()
            .enumerate()
            .map(|(i, v)| NodeApi {
                index: i as u32,
                api: (!v.api_address.is_empty()).then(|| format!("http://{}", v.api_address)),
            })
            .collect(),
    }
}

fn json_event(name: &str, value: &impl Serialize) -> Event {
    let data = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
    Event::default().event(name).data(data)
}

/// One client's stream.
struct Feed {
    watcher: Watcher,
    status: tokio::sync::watch::Receiver<crate::api::types::NodeStatus>,
    last_status: Instant,
    /// The status changed since the last `status` message.
    status_dirty: bool,
    /// The last `status` sent.
    last_status_json: String,
    out: VecDeque<Event>,
}

impl Feed {
    /// The next message for the client; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.out.pop_front() {
                return Some(e);
            }
            // A status change waits out STATUS_EVERY, then goes out even
            // if nothing else happens.
            let status_due = self.status_dirty.then(|| self.last_status + STATUS_EVERY);
            let first = tokio::select! {
                n = self.watcher.next() => Some(n),
                changed = self.status.changed() => {
                    changed.ok()?;
                    self.status_dirty = true;
                    None
                }
                () = async {
                    match status_due {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => None,
            };
            // Let events gather: one message per BATCH_EVERY, not per event.
            tokio::time::sleep(BATCH_EVERY).await;
            let mut items: Vec<Arc<WatchEvent>> = Vec::new();
            let mut missed = 0;
            let mut next = first;
            loop {
                match next {
                    Some(Next::Event(e)) => items.push(e),
                    Some(Next::Missed(n)) => missed += n,
                    None => {}
                }
                if items.len() >= BATCH_MAX {
                    break;
                }
                next = self.watcher.try_next();
                if next.is_none() {
                    break;
                }
            }
            if self.status.has_changed().unwrap_or(false) {
                self.status_dirty = true;
            }
            if self.status_dirty && self.last_status.elapsed() >= STATUS_EVERY {
                self.status_dirty = false;
                self.last_status = Instant::now();
                let status = self.status.borrow_and_update().clone();
                // The driver republishes unchanged statuses (every tick):
                // only news goes out.
                let json = serde_json::to_string(&status).unwrap_or_default();
                if json != self.last_status_json {
                    self.out
                        .push_back(Event::default().event("status").data(json.clone()));
                    self.last_status_json = json;
                }
            }
            if !items.is_empty() {
                let items: Vec<&WatchEvent> = items.iter().map(|e| &**e).collect();
                self.out.push_back(json_event("batch", &items));
            }
            if missed > 0 {
                self.out.push_back(json_event(
                    "lagged",
                    &serde_json::json!({ "missed": missed }),
                ));
            }
        }
    }
}

pub(super) async fn events(State(shared): State<Arc<Shared>>) -> Response {
    let Some(watcher) = shared.watch.subscribe() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_watchers",
            format!(
                "{} clients already watch this node's /events; close one and retry",
                crate::watch::MAX_WATCHERS
            ),
        )
        .into_response();
    };
    let mut status = shared.status.subscribe();
    let first = serde_json::to_string(&*status.borrow_and_update()).unwrap_or_default();
    let feed = Feed {
        watcher,
        status,
        last_status: Instant::now(),
        status_dirty: false,
        last_status_json: first.clone(),
        out: VecDeque::from([
            json_event("hello", &hello(&shared)),
            Event::default().event("status").data(first),
        ]),
    };
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok::<_, Infallible>(event), feed))
    });
    (
        [(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        )],
        Sse::new(stream).keep_alive(KeepAlive::default()),
    )
        .into_response()
}
