//! A small blocking HTTP client for the CLI (`phalanx tx`, `phalanx query`)
//! over ureq: plain http, JSON bodies, and the API's JSON errors turned into
//! messages that say what to do.

use crate::api::types::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// The API of node0 of a testnet made by `phalanx testnet init` with default ports.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:26100";

/// Largest response body read (a full block of small transfers is well below).
const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

/// Connect timeout: a node on loopback or a LAN answers at once or not at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whole-request timeout for ordinary requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The `--node URL` option shared by `phalanx tx` and `phalanx query`.
#[derive(Clone, Debug, clap::Args)]
pub struct NodeArg {
    /// The node's HTTP API, e.g. http://127.0.0.1:26100 (node0 of a default testnet).
    #[arg(long, value_name = "URL", env = "PHALANX_NODE", default_value = DEFAULT_NODE)]
    pub node: String,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL cannot be used.
    #[error("invalid node URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection (refused, timed out, unknown host).
    #[error(
        "cannot reach node at {url}: {reason}. Is it running? Start a local testnet with \
         `testnet/local.sh up`, or point --node (or PHALANX_NODE) at a running node"
    )]
    Unreachable {
        /// The node's URL.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// The node answered with an error (its JSON `{code, message}`).
    #[error("the node refused: {message} ({code}, HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// The API's message.
        message: String,
    },
    /// The answer is not what a Phalanx node sends.
    #[error("unexpected answer from {url}: {reason} (is this a Phalanx node's API?)")]
    BadResponse {
        /// The request URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

impl ClientError {
    /// The API error code, when the node answered with an error.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A client of one node's API.
#[derive(Debug)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client for the node at `node` (`http://host:port`; `host:port` is
    /// taken as http).
    pub fn new(node: &str) -> Result<Client, ClientError> {
        let base = normalize_url(node)?;
        let config = ureq::Agent::config_builder()
            // Our error bodies are JSON: read them instead of failing on the status.
            .http_status_as_error(false)
            // Nodes are on loopback or a LAN: talk to them directly, whatever
            // proxy the environment names.
            .proxy(None)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build();
        Ok(Client {
            base,
            agent: config.new_agent(),
        })
    }

    /// `GET path` (path starts with `/`), decoding a JSON answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let result = self.agent.get(&url).call();
        self.finish(&url, result)
    }

    /// `POST path` with a JSON body, decoding a JSON answer; `timeout` bounds
    /// the whole request (longer for requests that wait for a commit).
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let result = self
            .agent
            .post(&url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send_json(body);
        self.finish(&url, result)
    }

    fn finish<T: DeserializeOwned>(
        &self,
        url: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let mut response = result.map_err(|e| self.transport_error(url, e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_string()
            .map_err(|e| self.transport_error(url, e))?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| ClientError::BadResponse {
                url: url.to_owned(),
                reason: format!("HTTP {status}: {e}"),
            });
        }
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => ClientError::Api {
                status,
                code: body.code,
                message: body.message,
            },
            Err(_) => ClientError::BadResponse {
                url: url.to_owned(),
                reason: format!(
                    "HTTP {status}: {}",
                    text.chars().take(200).collect::<String>()
                ),
            },
        })
    }

    fn transport_error(&self, url: &str, e: ureq::Error) -> ClientError {
        match e {
            ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed => ClientError::Unreachable {
                url: self.base.clone(),
                reason: e.to_string(),
            },
            ureq::Error::BadUri(reason) => ClientError::BadUrl {
                url: url.to_owned(),
                reason,
            },
            other => ClientError::BadResponse {
                url: url.to_owned(),
                reason: other.to_string(),
            },
        }
    }
}

/// `host:port` → `http://host:port`; no trailing slash; http only.
fn normalize_url(node: &str) -> Result<String, ClientError> {
    let bad = |reason: &str| ClientError::BadUrl {
        url: node.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = node.trim();
    if trimmed.is_empty() {
        return Err(bad("it is empty; use e.g. http://127.0.0.1:26100"));
    }
    let host = match trimmed.split_once("://") {
        None => trimmed,
        Some(("http", rest)) => rest,
        Some(("https", _)) => {
            return Err(bad(
                "https is not supported: node APIs speak plain http (use http://)",
            ))
        }
        Some(_) => return Err(bad("the scheme must be http://")),
    };
    let host = host.trim_end_matches('/');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad("expected http://HOST:PORT"));
    }
    let url = format!("http://{host}");
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalized() {
        assert_eq!(
            normalize_url("127.0.0.1:26100").unwrap(),
            "http://127.0.0.1:26100"
        );
        assert_eq!(
            normalize_url("http://localhost:1/").unwrap(),
            "http://localhost:1"
        );
        assert!(normalize_url("https://x:1")
            .unwrap_err()
            .to_string()
            .contains("plain http"));
        assert!(normalize_url("ftp://x").is_err());
        assert!(normalize_url("  ").is_err());
        assert!(normalize_url("http://").is_err());
    }

    #[test]
    fn unreachable_node_says_what_to_do() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::new(&format!("127.0.0.1:{port}")).unwrap();
        let err = client.get::<serde_json::Value>("/status").unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("cannot reach node at http://127.0.0.1:{port}")),
            "{msg}"
        );
        assert!(msg.contains("testnet/local.sh up"), "{msg}");
    }
}
