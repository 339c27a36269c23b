//! A node's home directory (CometBFT-like):
//!
//! ```text
//! HOME/config/config.toml        listen addresses, limits
//! HOME/config/genesis.json       the chain
//! HOME/config/node_key.json      libp2p identity (ed25519)
//! HOME/config/validator_key.json consensus signing key
//! HOME/data/                     RocksDB
//! ```
//!
//! Keys are written 0600 and never overwritten.

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Paths inside a home directory.
#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }
    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `config/`.
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }
    /// `config/config.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir().join("config.toml")
    }
    /// `config/genesis.json`.
    pub fn genesis_file(&self) -> PathBuf {
        self.config_dir().join("genesis.json")
    }
    /// `config/node_key.json`.
    pub fn node_key_file(&self) -> PathBuf {
        self.config_dir().join("node_key.json")
    }
    /// `config/validator_key.json`.
    pub fn validator_key_file(&self) -> PathBuf {
        self.config_dir().join("validator_key.json")
    }
    /// `data/` (the RocksDB directory).
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Reads `config/config.toml` (a missing file means all defaults).
    pub fn load_config(&self) -> anyhow::Result<NodeConfig> {
        let path = self.config_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => NodeConfig::from_toml(&text)
                .with_context(|| format!("config file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NodeConfig::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read config file {}", path.display())),
        }
    }
}

/// `config.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// A name for logs.
    pub moniker: String,
    /// Peer-to-peer settings.
    pub p2p: P2pConfig,
    /// HTTP API settings.
    pub api: ApiConfig,
    /// Mempool limits.
    pub mempool: MempoolConfig,
    /// Fault injection (test networks only).
    pub faults: FaultsConfig,
}

/// `[faults]`: how a test validator misbehaves (`phalanx node --behaviour`
/// and `--allow-fault-injection` override these).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultsConfig {
    /// honest, silent, equivocate, bad-sig, stale-replay or delay:MS.
    pub behaviour: phalanx_adversary::Behaviour,
    /// Whether `POST /admin/*` may change the behaviour, partition the node
    /// or add latency.
    pub allow_fault_injection: bool,
}

impl Default for FaultsConfig {
    fn default() -> Self {
        FaultsConfig {
            behaviour: phalanx_adversary::Behaviour::Honest,
            allow_fault_injection: false,
        }
    }
}

/// `[p2p]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct P2pConfig {
    /// Multiaddr to listen on.
    pub listen: String,
    /// Largest consensus message or transaction batch accepted, in bytes.
    pub max_message_bytes: usize,
    /// Most established connections.
    pub max_connections: u32,
    /// Most messages queued for one peer before new ones are dropped.
    pub peer_queue: usize,
}

/// `[api]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// How long `POST /txs?wait=true` waits for the commit, in milliseconds.
    pub wait_timeout_ms: u64,
}

/// `[mempool]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MempoolConfig {
    /// Most transactions held.
    pub max_txs: usize,
    /// Most bytes (encoded transactions) held.
    pub max_bytes: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            moniker: "phalanx".into(),
            p2p: P2pConfig::default(),
            api: ApiConfig::default(),
            mempool: MempoolConfig::default(),
            faults: FaultsConfig::default(),
        }
    }
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            listen: "/ip4/127.0.0.1/tcp/26000".into(),
            max_message_bytes: 16 * 1024 * 1024,
            max_connections: 64,
            peer_queue: 4096,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            // What the CLI's --node defaults to: a node made by `phalanx init`
            // answers `phalanx query status` with no flags.
            listen: "127.0.0.1:26100".into(),
            wait_timeout_ms: 10_000,
        }
    }
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_txs: 200_000,
            max_bytes: 128 * 1024 * 1024,
        }
    }
}

impl NodeConfig {
    /// Parses config.toml (errors name the key and line).
    pub fn from_toml(text: &str) -> anyhow::Result<NodeConfig> {
        let config: NodeConfig = toml::from_str(text)?;
        anyhow::ensure!(
            config.p2p.max_message_bytes >= 1024,
            "p2p.max_message_bytes must be at least 1024"
        );
        anyhow::ensure!(
            config.mempool.max_txs > 0,
            "mempool.max_txs must be positive"
        );
        // Zero would not mean "unbounded": it would drop every message
        // (or transaction, or connection) without a word.
        anyhow::ensure!(
            config.p2p.peer_queue > 0,
            "p2p.peer_queue must be positive (it is how many messages may wait for one peer)"
        );
        anyhow::ensure!(
            config.p2p.max_connections > 0,
            "p2p.max_connections must be positive"
        );
        anyhow::ensure!(
            config.mempool.max_bytes > 0,
            "mempool.max_bytes must be positive"
        );
        Ok(config)
    }

    /// The TOML text (with a header comment).
    pub fn to_toml(&self) -> String {
        format!(
            "# Phalanx node configuration. Every key is optional; missing keys take defaults.\n{}",
            toml::to_string_pretty(self).unwrap_or_default()
        )
    }
}

/// A node's API port is this far above its P2P port, in the default config
/// and in the homes `phalanx testnet init` writes.
pub const API_PORT_OFFSET: u16 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18, finding 8: a zero that would silently drop everything is
    /// refused with the key's name.
    #[test]
    fn zero_limits_are_refused_by_name() {
        for (section, key) in [
            ("p2p", "peer_queue"),
            ("p2p", "max_connections"),
            ("mempool", "max_bytes"),
            ("mempool", "max_txs"),
        ] {
            let err = NodeConfig::from_toml(&format!("[{section}]\n{key} = 0\n"))
                .expect_err(key)
                .to_string();
            assert!(err.contains(&format!("{section}.{key}")), "{err}");
        }
        assert!(NodeConfig::from_toml("").is_ok());
    }

    #[test]
    fn a_default_home_serves_its_api_where_the_cli_looks() {
        let api = ApiConfig::default().listen;
        assert_eq!(format!("http://{api}"), crate::client::DEFAULT_NODE);
        // And the API port is the P2P port + 100, as in `phalanx testnet init`.
        let p2p_port: u16 = P2pConfig::default()
            .listen
            .rsplit('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let api_port: u16 = api.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(api_port, p2p_port + API_PORT_OFFSET, "{api}");
    }
}
