//! Prometheus metrics (`phalanx_` prefix, base units, counters end in
//! `_total`, every series present from start-up).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label set for dropped-message counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why it was dropped.
    pub reason: String,
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    /// Latest committed height.
    pub height: Gauge,
    /// Current view.
    pub view: Gauge,
    /// View changes this node went through.
    pub view_changes: Counter,
    /// Transactions committed (successful or failed receipts).
    pub committed_txs: Counter,
    /// Transactions in the mempool.
    pub mempool_size: Gauge,
    /// Mempool transactions held back behind a missing earlier nonce of
    /// their sender (not released to consensus until the gap fills).
    pub mempool_waiting: Gauge,
    /// Transactions received in batches pushed by other validators (before
    /// any check).
    pub pushed_txs_received: Counter,
    /// Client transactions pushed to the validators again because they
    /// stayed pending.
    pub txs_resent: Counter,
    /// Connected validator peers.
    pub peers: Gauge,
    /// Equivocation evidence recorded.
    pub evidence: Counter,
    /// Seconds from a block's proposal timestamp to its commit here.
    pub round_duration: Histogram,
    /// Transactions refused at submission or push, by reason.
    pub rejected_txs: Family<ReasonLabel, Counter>,
    /// Peer messages dropped, by reason.
    pub dropped_messages: Family<ReasonLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// All series registered, at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("phalanx");
        let m = Metrics {
            height: Gauge::default(),
            view: Gauge::default(),
            view_changes: Counter::default(),
            committed_txs: Counter::default(),
            mempool_size: Gauge::default(),
            mempool_waiting: Gauge::default(),
            pushed_txs_received: Counter::default(),
            txs_resent: Counter::default(),
            peers: Gauge::default(),
            evidence: Counter::default(),
            round_duration: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            rejected_txs: Family::default(),
            dropped_messages: Family::default(),
            registry: Registry::default(),
        };
        registry.register("height", "Latest committed block height", m.height.clone());
        registry.register("view", "Current consensus view", m.view.clone());
        registry.register("view_changes", "View changes", m.view_changes.clone());
        registry.register(
            "committed_txs",
            "Transactions committed",
            m.committed_txs.clone(),
        );
        registry.register(
            "mempool_size",
            "Transactions in the mempool",
            m.mempool_size.clone(),
        );
        registry.register(
            "mempool_waiting_txs",
            "Mempool transactions waiting for an earlier nonce of their sender",
            m.mempool_waiting.clone(),
        );
        registry.register(
            "pushed_txs_received",
            "Transactions received in batches pushed by other validators, before any check",
            m.pushed_txs_received.clone(),
        );
        registry.register(
            "txs_resent",
            "Client transactions pushed to the validators again because they stayed pending",
            m.txs_resent.clone(),
        );
        registry.register("peers", "Connected validator peers", m.peers.clone());
        registry.register(
            "evidence",
            "Equivocation evidence recorded",
            m.evidence.clone(),
        );
        registry.register(
            "consensus_round_duration_seconds",
            "Seconds from proposal to commit",
            m.round_duration.clone(),
        );
        registry.register(
            "rejected_txs",
            "Transactions refused, by reason",
            m.rejected_txs.clone(),
        );
        registry.register(
            "dropped_messages",
            "Peer messages dropped, by reason",
            m.dropped_messages.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a dropped peer message.
    pub fn dropped(&self, reason: &str) {
        self.dropped_messages
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts a refused transaction.
    pub fn rejected(&self, reason: &str) {
        self.rejected_txs
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
