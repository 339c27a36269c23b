//! Prometheus metrics (`phalanx_` prefix, base units, counters end in
//! `_total`, every series present from start-up).
//!
//! `GET /metrics` speaks two text formats (see [`Format`]): OpenMetrics 1.0
//! to a client that asks for it in `Accept` (Prometheus does), the classic
//! Prometheus text format 0.0.4 to everyone else (curl, `promtool check
//! metrics`, Telegraf, older scrapers). Both come from one registry: the
//! classic text is the OpenMetrics text with the three differences between
//! the grammars rewritten (see [`to_classic`]).
//!
//! Every labelled family has a fixed set of label values (enums below, and
//! the engine's message kinds) and all of them are created at zero at
//! start-up, so a rate or an alert over them works before the first event.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::fmt::Write as _;

/// An enum whose variants are the values of one label: `ALL` lists them
/// (to create every series at start-up), `as_str` is the label value.
macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $value:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            #[allow(dead_code)] // Not every label needs the list outside tests.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $value,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
                encoder.write_str(self.as_str())
            }
        }
    };
}

label_values! {
    /// Why a message from a peer (or to one) was dropped.
    DropReason {
        /// Consensus bytes that do not decode as the engine's message.
        MalformedConsensus => "malformed_consensus",
        /// A pushed transaction batch that does not decode or is too large.
        MalformedTxBatch => "malformed_tx_batch",
        /// A pushed transaction batch that arrived while the most allowed
        /// were already being checked.
        TxBatchBusy => "tx_batch_busy",
        /// The channel to the network task was full.
        NetQueueFull => "net_queue_full",
        /// Too many consensus messages outstanding to one peer.
        PeerQueueFull => "peer_queue_full",
        /// A validator's consensus messages waiting for the driver
        /// already held its byte budget (`inbound.rs`).
        PeerInboundFull => "peer_inbound_full",
        /// A peer's transaction push queue overflowed (oldest batch dropped).
        TxsQueueFull => "txs_queue_full",
        /// A transaction batch was given up after its send attempts.
        TxsSendFailed => "txs_send_failed",
        /// An inbound request failed (timeout, connection closed, bad frame).
        InboundFailure => "inbound_failure",
        /// A consensus message from a peer that is not a validator.
        NotAValidator => "not_a_validator",
        /// An incoming connection failed (e.g. a failed handshake).
        IncomingConnectionError => "incoming_connection_error",
        /// A block sync request that does not decode.
        MalformedSyncRequest => "malformed_sync_request",
        /// A block sync response that does not decode.
        MalformedSyncResponse => "malformed_sync_response",
    }
}

label_values! {
    /// Why the mempool refused a transaction (the API's error codes).
    RejectReason {
        /// Already in the mempool.
        Duplicate => "duplicate",
        /// The signature does not verify.
        BadSignature => "bad_signature",
        /// Signed for another chain.
        WrongChainId => "wrong_chain_id",
        /// The sender never received funds.
        UnknownAccount => "unknown_account",
        /// The nonce was used already.
        NonceUsed => "nonce_used",
        /// The nonce is too far ahead.
        NonceTooHigh => "nonce_too_high",
        /// The sender cannot pay.
        InsufficientFunds => "insufficient_funds",
        /// Another pending transaction has the sender and nonce.
        NonceTaken => "nonce_taken",
        /// The mempool is full.
        MempoolFull => "mempool_full",
        /// The fee is below the chain's minimum.
        FeeTooLow => "fee_too_low",
    }
}

label_values! {
    /// Which way a consensus message went.
    Direction {
        /// Handed to the network for a peer.
        Sent => "sent",
        /// Received from a peer and handed to the engine.
        Received => "received",
    }
}

/// `reason` label of the dropped-message counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// Why it was dropped.
    pub reason: DropReason,
}

/// `reason` label of the refused-transaction counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// Why it was refused.
    pub reason: RejectReason,
}

/// Labels of the consensus message counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    /// Sent or received.
    pub direction: Direction,
    /// The message kind: one of the engine's `Message::KINDS`.
    pub kind: &'static str,
}

/// Labels of `phalanx_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// The classic Prometheus text format's content type.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The OpenMetrics text format's content type.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A text exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4: what every scraper and `promtool`
    /// reads, so the default.
    Classic,
    /// OpenMetrics 1.0.0, for clients that ask for it (Prometheus lists it
    /// first in its `Accept`).
    OpenMetrics,
}

impl Format {
    /// The format for a request's `Accept` header: OpenMetrics when the
    /// client names `application/openmetrics-text` (version 1.0.0 or no
    /// version) with a quality at least that of the best classic match
    /// (`text/plain`, `text/*`, `*/*`); classic otherwise, including
    /// without the header. Wildcards never select OpenMetrics: a client
    /// that does not name it may not parse it.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Classic;
        };
        let (mut openmetrics, mut classic) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let (mut q, mut version) = (1.0f32, None);
            for p in parts {
                if let Some((k, v)) = p.split_once('=') {
                    let v = v.trim().trim_matches('"');
                    match k.trim().to_ascii_lowercase().as_str() {
                        "q" => q = v.parse().unwrap_or(0.0),
                        "version" => version = Some(v.to_owned()),
                        _ => {}
                    }
                }
            }
            match media.as_str() {
                "application/openmetrics-text"
                    if version.as_deref().is_none_or(|v| v == "1.0.0") =>
                {
                    openmetrics = openmetrics.max(q);
                }
                "text/plain" | "text/*" | "*/*" => classic = classic.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= classic {
            Format::OpenMetrics
        } else {
            Format::Classic
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Classic => CLASSIC_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
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
    /// Reorgs (proof of work, proof of stake): the head moved to another branch.
    pub reorgs: Counter,
    /// Blocks reverted per reorg.
    pub reorg_depth: Histogram,
    /// Tentative blocks reverted (reorgs, and branches PBFT did not finalize).
    pub discarded_blocks: Counter,
    /// Tentative blocks PBFT made final as they were.
    pub finalized_blocks: Counter,
    /// The last final height.
    pub final_height: Gauge,
    /// Blocks above the last final one (the finality lag).
    pub finality_lag: Gauge,
    /// Transactions refused at submission or push, by reason.
    rejected_txs: Family<RejectLabels, Counter>,
    /// Peer messages dropped, by reason.
    dropped_messages: Family<DropLabels, Counter>,
    /// Consensus messages sent and received, by kind.
    consensus_messages: Family<MessageLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// All series registered, at zero (the consensus message counters
    /// once [`Metrics::message_kinds`] names the kinds).
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
            reorgs: Counter::default(),
            reorg_depth: Histogram::new([1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 64.0, 128.0]),
            discarded_blocks: Counter::default(),
            finalized_blocks: Counter::default(),
            final_height: Gauge::default(),
            finality_lag: Gauge::default(),
            rejected_txs: Family::default(),
            dropped_messages: Family::default(),
            consensus_messages: Family::default(),
            registry: Registry::default(),
        };
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: crate::version::VERSION,
                commit: crate::version::GIT_COMMIT,
            })
            .set(1);
        for reason in RejectReason::ALL {
            let _ = m
                .rejected_txs
                .get_or_create(&RejectLabels { reason: *reason });
        }
        for reason in DropReason::ALL {
            let _ = m
                .dropped_messages
                .get_or_create(&DropLabels { reason: *reason });
        }
        registry.register(
            "build_info",
            "The node's version and the git commit it was built from (always 1)",
            build_info,
        );
        registry.register("height", "Latest committed block height", m.height.clone());
        registry.register("view", "Current consensus view", m.view.clone());
        registry.register("view_changes", "View changes", m.view_changes.clone());
        registry.register(
            "reorgs",
            "Reorgs: tentative blocks reverted to follow a heavier branch",
            m.reorgs.clone(),
        );
        registry.register(
            "reorg_depth_blocks",
            "Blocks reverted per reorg",
            m.reorg_depth.clone(),
        );
        registry.register(
            "discarded_blocks",
            "Tentative blocks reverted (reorgs, branches not finalized)",
            m.discarded_blocks.clone(),
        );
        registry.register(
            "finalized_blocks",
            "Tentative blocks made final by PBFT after a fallback",
            m.finalized_blocks.clone(),
        );
        registry.register(
            "final_height",
            "The last final block height",
            m.final_height.clone(),
        );
        registry.register(
            "finality_lag_blocks",
            "Blocks above the last final one",
            m.finality_lag.clone(),
        );
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
        registry.register(
            "consensus_messages",
            "Consensus messages sent to peers (one per recipient) and received from them, by kind",
            m.consensus_messages.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a dropped peer message.
    pub fn dropped(&self, reason: DropReason) {
        self.dropped_messages
            .get_or_create(&DropLabels { reason })
            .inc();
    }

    /// Counts a refused transaction.
    pub fn rejected(&self, reason: RejectReason) {
        self.rejected_txs
            .get_or_create(&RejectLabels { reason })
            .inc();
    }

    /// Creates the consensus message counters of these kinds at zero, both
    /// ways (the driver names its engine's kinds at start-up).
    pub fn message_kinds(&self, kinds: &[&'static str]) {
        for kind in kinds {
            for direction in Direction::ALL {
                let _ = self.consensus_messages.get_or_create(&MessageLabels {
                    direction: *direction,
                    kind,
                });
            }
        }
    }

    /// Counts `count` consensus messages of `kind` going `direction`.
    pub fn consensus_message(&self, direction: Direction, kind: &'static str, count: u64) {
        self.consensus_messages
            .get_or_create(&MessageLabels { direction, kind })
            .inc_by(count);
    }

    /// The exposition in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        match format {
            Format::OpenMetrics => out,
            Format::Classic => to_classic(&out),
        }
    }
}

/// Rewrites prometheus-client's OpenMetrics text into the classic text
/// format. For the metric types registered here (counters, gauges,
/// histograms, no units, no exemplars) the grammars differ in three ways:
/// a counter family is named after its samples, `X_total`, in HELP and
/// TYPE (OpenMetrics names it `X`; a classic parser then sees samples of an
/// undeclared family, without help or type); there is no `# UNIT`; and
/// there is no `# EOF` terminator.
pub fn to_classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            // Held until its TYPE says whether the name needs `_total`.
            help = Some(rest);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, text)| text);
                let _ = writeln!(out, "# HELP {name} {text}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A classic text format parser for tests: the grammar rules a Prometheus
/// text scraper relies on, checked strictly.
#[cfg(test)]
pub mod classic {
    use std::collections::{BTreeMap, BTreeSet};

    /// One metric family.
    #[derive(Debug, Default)]
    pub struct Family {
        /// HELP text.
        pub help: String,
        /// TYPE: counter, gauge, histogram, summary or untyped.
        pub kind: String,
        /// Samples: (sample name, labels, value).
        pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
    }

    impl Family {
        /// The value of the sample named `name` with exactly `labels`.
        pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            let want: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            self.samples
                .iter()
                .find(|(n, l, _)| n == name && *l == want)
                .map(|(_, _, v)| *v)
        }
    }

    fn metric_name_ok(s: &str) -> bool {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
    }

    fn label_name_ok(s: &str) -> bool {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
            && !s.starts_with("__")
    }

    /// `{a="x",b="y"}` (after the name) → labels and the rest of the line.
    fn labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
        let mut out = BTreeMap::new();
        let Some(mut rest) = s.strip_prefix('{') else {
            return Ok((out, s));
        };
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                return Ok((out, r));
            }
            let (name, r) = rest
                .split_once("=\"")
                .ok_or_else(|| format!("label without =\": {rest}"))?;
            if !label_name_ok(name) {
                return Err(format!("bad label name {name:?}"));
            }
            let mut value = String::new();
            let mut chars = r.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("bad escape {other:?} in {r}")),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("unterminated label value: {r}")),
                }
            };
            if out.insert(name.to_owned(), value).is_some() {
                return Err(format!("label {name} twice"));
            }
            rest = &r[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }

    /// The family a sample belongs to, given the declared families.
    fn family_of<'a>(sample: &'a str, kinds: &BTreeMap<String, String>) -> Option<&'a str> {
        if kinds.contains_key(sample) {
            return Some(sample);
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix) {
                let ok = match kinds.get(base).map(String::as_str) {
                    Some("histogram") => true,
                    Some("summary") => suffix != "_bucket",
                    _ => false,
                };
                if ok {
                    return Some(base);
                }
            }
        }
        None
    }

    /// Parses `text` with the classic grammar; fails on anything a strict
    /// classic parser would reject or misread: a sample before (or without)
    /// its family's HELP and TYPE, a family declared twice or interleaved
    /// with another, a counter not named `_total`, a non-counter named
    /// `_total`, comment lines other than HELP and TYPE (`# EOF`, `# UNIT`),
    /// blank lines, bad names, escapes or values, duplicate series,
    /// histograms whose buckets are not cumulative up to `+Inf` = `_count`,
    /// no final newline.
    pub fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
        if !text.ends_with('\n') {
            return Err("no newline at the end".into());
        }
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        let mut kinds: BTreeMap<String, String> = BTreeMap::new();
        let mut current: Option<String> = None;
        let mut closed: BTreeSet<String> = BTreeSet::new();
        let mut series: BTreeSet<(String, BTreeMap<String, String>)> = BTreeSet::new();
        for (n, line) in text.lines().enumerate() {
            let err = |m: String| format!("line {}: {m}: {line:?}", n + 1);
            if line.is_empty() {
                return Err(err("blank line".into()));
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest
                    .split_once(' ')
                    .ok_or_else(|| err("HELP without text".into()))?;
                if !metric_name_ok(name) || families.contains_key(name) {
                    return Err(err("bad or repeated family".into()));
                }
                if help.trim().is_empty() {
                    return Err(err("empty help".into()));
                }
                if let Some(c) = current.replace(name.to_owned()) {
                    closed.insert(c);
                }
                families.insert(
                    name.to_owned(),
                    Family {
                        help: help.to_owned(),
                        ..Family::default()
                    },
                );
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .ok_or_else(|| err("TYPE without a type".into()))?;
                if current.as_deref() != Some(name) || kinds.contains_key(name) {
                    return Err(err("TYPE not right after its HELP".into()));
                }
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(err(format!("type {kind} is not classic")));
                }
                if (kind == "counter") != name.ends_with("_total") {
                    return Err(err("counters, and only counters, end in _total".into()));
                }
                kinds.insert(name.to_owned(), kind.to_owned());
                families.get_mut(name).expect("declared").kind = kind.to_owned();
                continue;
            }
            if line.starts_with('#') {
                return Err(err("a comment other than HELP and TYPE".into()));
            }
            let name_end = line
                .find(['{', ' '])
                .ok_or_else(|| err("sample without a value".into()))?;
            let name = &line[..name_end];
            if !metric_name_ok(name) {
                return Err(err("bad metric name".into()));
            }
            let (labels, rest) = labels(&line[name_end..]).map_err(err)?;
            let value = rest
                .strip_prefix(' ')
                .ok_or_else(|| err("no space before the value".into()))?;
            if value.contains(' ') {
                return Err(err("timestamps are not expected".into()));
            }
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v.parse().map_err(|_| err("bad value".into()))?,
            };
            let family = family_of(name, &kinds)
                .ok_or_else(|| err("sample of no declared family".into()))?;
            if current.as_deref() != Some(family) || closed.contains(family) {
                return Err(err("sample outside its family's group".into()));
            }
            if name.ends_with("_bucket") && !labels.contains_key("le") {
                return Err(err("bucket without le".into()));
            }
            if !series.insert((name.to_owned(), labels.clone())) {
                return Err(err("duplicate series".into()));
            }
            families.get_mut(family).expect("declared").samples.push((
                name.to_owned(),
                labels,
                value,
            ));
        }
        for (name, f) in &families {
            if f.kind.is_empty() {
                return Err(format!("{name}: HELP without TYPE"));
            }
            if f.kind == "histogram" {
                check_histogram(name, f)?;
            }
        }
        Ok(families)
    }

    fn check_histogram(name: &str, f: &Family) -> Result<(), String> {
        let count = f
            .value(&format!("{name}_count"), &[])
            .ok_or_else(|| format!("{name}: no _count"))?;
        f.value(&format!("{name}_sum"), &[])
            .ok_or_else(|| format!("{name}: no _sum"))?;
        let mut buckets: Vec<(f64, f64)> = f
            .samples
            .iter()
            .filter(|(n, _, _)| n.ends_with("_bucket"))
            .map(|(_, l, v)| {
                let le = match l["le"].as_str() {
                    "+Inf" => f64::INFINITY,
                    s => s.parse().unwrap_or(f64::NAN),
                };
                (le, *v)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if buckets.windows(2).any(|w| w[0].1 > w[1].1) {
            return Err(format!("{name}: buckets not cumulative"));
        }
        match buckets.last() {
            Some((le, v)) if le.is_infinite() && *v == count => Ok(()),
            _ => Err(format!("{name}: the +Inf bucket must equal _count")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(m: &Metrics) -> std::collections::BTreeMap<String, classic::Family> {
        let text = m.render(Format::Classic);
        classic::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// Kinds as a driver names them (the metrics know no engine).
    const KINDS: &[&str] = &["pre_prepare", "prepare", "commit", "view_change"];

    #[test]
    fn the_classic_text_parses_with_every_series_at_zero() {
        let m = Metrics::new();
        m.message_kinds(KINDS);
        let f = parsed(&m);
        let names: Vec<&str> = f.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "phalanx_build_info",
                "phalanx_committed_txs_total",
                "phalanx_consensus_messages_total",
                "phalanx_consensus_round_duration_seconds",
                "phalanx_discarded_blocks_total",
                "phalanx_dropped_messages_total",
                "phalanx_evidence_total",
                "phalanx_final_height",
                "phalanx_finality_lag_blocks",
                "phalanx_finalized_blocks_total",
                "phalanx_height",
                "phalanx_mempool_size",
                "phalanx_mempool_waiting_txs",
                "phalanx_peers",
                "phalanx_pushed_txs_received_total",
                "phalanx_rejected_txs_total",
                "phalanx_reorg_depth_blocks",
                "phalanx_reorgs_total",
                "phalanx_txs_resent_total",
                "phalanx_view",
                "phalanx_view_changes_total",
            ]
        );
        let dropped = &f["phalanx_dropped_messages_total"];
        assert_eq!(dropped.samples.len(), DropReason::ALL.len());
        for r in DropReason::ALL {
            let v = dropped.value("phalanx_dropped_messages_total", &[("reason", r.as_str())]);
            assert_eq!(v, Some(0.0), "{r}");
        }
        let rejected = &f["phalanx_rejected_txs_total"];
        assert_eq!(rejected.samples.len(), RejectReason::ALL.len());
        for r in RejectReason::ALL {
            let v = rejected.value("phalanx_rejected_txs_total", &[("reason", r.as_str())]);
            assert_eq!(v, Some(0.0), "{r}");
        }
        let messages = &f["phalanx_consensus_messages_total"];
        assert_eq!(messages.samples.len(), 2 * KINDS.len());
        for kind in KINDS {
            for direction in ["sent", "received"] {
                let v = messages.value(
                    "phalanx_consensus_messages_total",
                    &[("direction", direction), ("kind", kind)],
                );
                assert_eq!(v, Some(0.0), "{direction} {kind}");
            }
        }
        assert_eq!(
            f["phalanx_consensus_round_duration_seconds"].kind,
            "histogram"
        );
        assert_eq!(f["phalanx_height"].kind, "gauge");
        assert_eq!(f["phalanx_height"].help, "Latest committed block height.");
        assert_eq!(
            f["phalanx_view_changes_total"].value("phalanx_view_changes_total", &[]),
            Some(0.0)
        );
    }

    #[test]
    fn only_the_kinds_named_are_exposed() {
        let m = Metrics::new();
        m.message_kinds(&["request_vote", "vote", "append_entries", "append_ack"]);
        let f = parsed(&m);
        let kinds: std::collections::BTreeSet<&str> = f["phalanx_consensus_messages_total"]
            .samples
            .iter()
            .map(|(_, l, _)| l["kind"].as_str())
            .collect();
        assert_eq!(
            kinds,
            ["append_ack", "append_entries", "request_vote", "vote"]
                .into_iter()
                .collect()
        );
    }

    #[test]
    fn build_info_carries_the_version_and_commit() {
        let f = parsed(&Metrics::new());
        let info = &f["phalanx_build_info"];
        assert_eq!(info.kind, "gauge");
        assert_eq!(info.samples.len(), 1);
        assert_eq!(
            info.value(
                "phalanx_build_info",
                &[
                    ("version", crate::version::VERSION),
                    ("commit", crate::version::GIT_COMMIT)
                ]
            ),
            Some(1.0)
        );
        assert!(!crate::version::GIT_COMMIT.is_empty());
    }

    #[test]
    fn recorded_values_show_in_both_formats() {
        let m = Metrics::new();
        m.message_kinds(KINDS);
        m.dropped(DropReason::MalformedTxBatch);
        m.dropped(DropReason::MalformedTxBatch);
        m.rejected(RejectReason::NonceUsed);
        m.consensus_message(Direction::Sent, "prepare", 3);
        m.consensus_message(Direction::Received, "view_change", 1);
        m.pushed_txs_received.inc_by(7);
        m.txs_resent.inc_by(2);
        m.committed_txs.inc_by(5);
        m.height.set(4);
        m.round_duration.observe(0.02);
        m.round_duration.observe(20.0);
        let f = parsed(&m);
        let v = |family: &str, sample: &str, labels: &[(&str, &str)]| {
            f[family].value(sample, labels).unwrap_or(-1.0)
        };
        let c = |family: &str, labels: &[(&str, &str)]| v(family, family, labels);
        assert_eq!(
            c(
                "phalanx_dropped_messages_total",
                &[("reason", "malformed_tx_batch")]
            ),
            2.0
        );
        assert_eq!(
            c(
                "phalanx_dropped_messages_total",
                &[("reason", "net_queue_full")]
            ),
            0.0
        );
        assert_eq!(
            c("phalanx_rejected_txs_total", &[("reason", "nonce_used")]),
            1.0
        );
        assert_eq!(
            c(
                "phalanx_consensus_messages_total",
                &[("direction", "sent"), ("kind", "prepare")]
            ),
            3.0
        );
        assert_eq!(
            c(
                "phalanx_consensus_messages_total",
                &[("direction", "received"), ("kind", "view_change")]
            ),
            1.0
        );
        assert_eq!(
            c(
                "phalanx_consensus_messages_total",
                &[("direction", "received"), ("kind", "prepare")]
            ),
            0.0
        );
        assert_eq!(c("phalanx_pushed_txs_received_total", &[]), 7.0);
        assert_eq!(c("phalanx_txs_resent_total", &[]), 2.0);
        assert_eq!(c("phalanx_committed_txs_total", &[]), 5.0);
        assert_eq!(c("phalanx_height", &[]), 4.0);
        let h = "phalanx_consensus_round_duration_seconds";
        assert_eq!(v(h, &format!("{h}_count"), &[]), 2.0);
        assert_eq!(v(h, &format!("{h}_bucket"), &[("le", "0.025")]), 1.0);
        assert_eq!(v(h, &format!("{h}_bucket"), &[("le", "+Inf")]), 2.0);

        // The same values in OpenMetrics, which names counter families
        // without `_total` and ends in `# EOF`.
        let om = m.render(Format::OpenMetrics);
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(
            om.contains("# TYPE phalanx_committed_txs counter\n"),
            "{om}"
        );
        assert!(om.contains("\nphalanx_committed_txs_total 5\n"), "{om}");
        assert!(
            om.contains("\nphalanx_dropped_messages_total{reason=\"malformed_tx_batch\"} 2\n"),
            "{om}"
        );
        let classic = m.render(Format::Classic);
        assert!(!classic.contains("# EOF"), "{classic}");
        assert!(
            classic.contains("# TYPE phalanx_committed_txs_total counter\n"),
            "{classic}"
        );
    }

    #[test]
    fn to_classic_renames_counter_families_and_drops_unit_and_eof() {
        let om = "# HELP a_seconds Time.\n# TYPE a_seconds counter\n# UNIT a_seconds seconds\n\
                  a_seconds_total 1\n# HELP b B.\n# TYPE b gauge\nb 2\n# HELP c C.\n\
                  # TYPE c unknown\nc 3\n# EOF\n";
        assert_eq!(
            to_classic(om),
            "# HELP a_seconds_total Time.\n# TYPE a_seconds_total counter\n\
             a_seconds_total 1\n# HELP b B.\n# TYPE b gauge\nb 2\n# HELP c C.\n\
             # TYPE c untyped\nc 3\n"
        );
    }

    #[test]
    fn the_parser_rejects_what_a_classic_scraper_misreads() {
        let bad = [
            // OpenMetrics counter naming: samples of an undeclared family.
            "# HELP x_c C.\n# TYPE x_c counter\nx_c_total 1\n",
            "# HELP x G.\n# TYPE x gauge\nx 1\n# EOF\n",
            "x 1\n",
            "# HELP x G.\n# TYPE x gauge\nx{a=\"1\"} 1\nx{a=\"1\"} 2\n",
            "# HELP x G.\n# TYPE x gauge\n# HELP y G.\n# TYPE y gauge\ny 1\nx 1\n",
            "# HELP x G.\n# TYPE x gauge\nx 1",
            "# HELP x_total G.\n# TYPE x_total gauge\nx_total 1\n",
            "# HELP x G.\n# TYPE x gauge\nx{a=\"\\t\"} 1\n",
            "# HELP h H.\n# TYPE h histogram\nh_sum 1\nh_count 2\nh_bucket{le=\"1\"} 2\n",
        ];
        for text in bad {
            assert!(classic::parse(text).is_err(), "accepted:\n{text}");
        }
        let good = "# HELP x_total C.\n# TYPE x_total counter\nx_total{a=\"q\\\"\\\\\\n\"} 1\n\
                    # HELP h H.\n# TYPE h histogram\nh_sum 1.5\nh_count 2\n\
                    h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n";
        let f = classic::parse(good).unwrap();
        assert_eq!(
            f["x_total"].value("x_total", &[("a", "q\"\\\n")]),
            Some(1.0)
        );
    }

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_classic() {
        let cases = [
            (None, Format::Classic),
            (Some("*/*"), Format::Classic),
            (Some("text/plain"), Format::Classic),
            // Prometheus 2.x.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                     version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                Format::OpenMetrics,
            ),
            // Prometheus 3.x.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,\
                     application/openmetrics-text;version=0.0.1;q=0.4,text/plain;\
                     version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,\
                     */*;q=0.1",
                ),
                Format::OpenMetrics,
            ),
            // Telegraf: protobuf first, then the classic text.
            (
                Some(
                    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
                     encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3",
                ),
                Format::Classic,
            ),
            (
                Some("text/plain;q=0.9, application/openmetrics-text;q=0.5"),
                Format::Classic,
            ),
            (
                Some("application/openmetrics-text; version=0.0.1"),
                Format::Classic,
            ),
            (
                Some("application/openmetrics-text;q=0, */*"),
                Format::Classic,
            ),
            (
                Some("Application/OpenMetrics-Text; Version=\"1.0.0\""),
                Format::OpenMetrics,
            ),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(
            Format::Classic.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }
}
