//! `phalanx node --home DIR`: load the home, open the store, start the
//! network, the HTTP API and the driver; stop cleanly on SIGINT/SIGTERM.

use crate::driver::Driver;
use crate::home::Home;
use crate::shared::Shared;
use anyhow::Context as _;
use phalanx_adversary::Adversarial;
use phalanx_crypto::{read_key_file, KeyKind};
use phalanx_ledger::{Genesis, Height, RocksStore, State, Store, ValidatorIndex};
use phalanx_runtime::registry::{with_engine, WithEngine};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Log output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// `phalanx node` arguments.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  phalanx node --home testnet-data/node0\n\nThe home holds config/{config.toml,genesis.json,node_key.json,validator_key.json} and data/.\nCreate homes with `phalanx testnet init` or `phalanx init`. Stop with Ctrl-C (or SIGTERM);\nafter any stop, including kill -9, the node restarts from its home without losing a block."
)]
pub struct NodeArgs {
    /// The node's home directory.
    #[arg(long, env = "PHALANX_HOME")]
    pub home: PathBuf,
    /// Log format.
    #[arg(long, value_enum, default_value = "plain")]
    pub log_format: LogFormat,
    /// Log filter (tracing env-filter syntax), e.g. `info`, or
    /// `phalanx=debug` to also see every consensus message sent and received
    /// (`info,phalanx::consensus=debug` for those alone).
    #[arg(long, env = "PHALANX_LOG", default_value = "info")]
    pub log: String,
    /// Append every vote this node sends to FILE, one line each
    /// (`voter kind view seq digest`): an audit trail for checking that no
    /// validator ever signed two different votes for one slot.
    #[arg(long, value_name = "FILE")]
    pub vote_log: Option<PathBuf>,
    /// How this validator behaves (fault injection for test networks):
    /// honest; silent (sends no consensus messages); equivocate (conflicting
    /// proposals and votes to two halves of the validators); bad-sig
    /// (invalid signatures); stale-replay (resends old messages); delay:MS
    /// (everything it sends leaves MS milliseconds late). Overrides
    /// `[faults] behaviour` in config.toml.
    #[arg(long, value_name = "BEHAVIOUR")]
    pub behaviour: Option<crate::injection::Behaviour>,
    /// Let `POST /admin/behaviour`, `/admin/partition` and `/admin/latency`
    /// change this node at run time (what `phalanx faults` drives). Never
    /// on a production node.
    #[arg(long)]
    pub allow_fault_injection: bool,
    /// Proof of work: mining threads (0: validate and follow, never mine).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub mine_threads: usize,
    /// Proof of work: the most hashes per second this node computes, over
    /// all its threads (0: no cap). The default keeps four nodes on one
    /// machine within a small part of one core; a real miner raises it.
    #[arg(long, value_name = "HASHES", default_value_t = 100_000)]
    pub hash_rate: u64,
}

/// The filter `--log` sets (tracing env-filter syntax; `info` if it does
/// not parse). A directive's target matches every target it is a string
/// prefix of, so `phalanx=debug` covers the consensus message events
/// (target `phalanx::consensus`, see [`crate::driver::CONSENSUS_LOG`]), this
/// binary's modules (`phalanx::…`) and the `phalanx_*` library crates.
pub fn log_filter(spec: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_new(spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

fn init_logging(args: &NodeArgs) {
    let filter = log_filter(&args.log);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Opens the store, writing the genesis block into an empty one and
/// refusing a store that belongs to another chain.
pub fn open_store(home: &Home, genesis: &Genesis) -> anyhow::Result<Arc<dyn Store>> {
    let dir = home.data_dir();
    let store = RocksStore::open(&dir).with_context(|| {
        format!(
            "cannot open the database in {} (is another node running from this home?)",
            dir.display()
        )
    })?;
    let genesis_block = genesis.block();
    match store.block(Height::GENESIS)? {
        None => {
            // The genesis state (with the stake accounts under PoS).
            let changed = genesis
                .state()
                .accounts()
                .map(|(a, acct)| (*a, *acct))
                .collect();
            let diff = State::default().diff(Height::GENESIS, changed);
            store.append_block(&genesis_block, &[], &diff)?;
        }
        Some(stored) if stored.hash() != genesis_block.hash() => anyhow::bail!(
            "the database in {} belongs to another chain (genesis {}); this genesis.json has {}",
            dir.display(),
            stored.hash(),
            genesis_block.hash()
        ),
        Some(_) => {}
    }
    Ok(Arc::new(store))
}

/// Runs the node until SIGINT/SIGTERM.
pub fn run(args: &NodeArgs) -> anyhow::Result<()> {
    init_logging(args);
    let home = Home::new(&args.home);
    anyhow::ensure!(home.root().is_dir(), "home directory {} does not exist (create it with `phalanx testnet init` or `phalanx init`)", home.root().display());
    let config = home.load_config()?;
    let genesis = Genesis::load(&home.genesis_file())?;
    let validator_key = read_key_file(&home.validator_key_file(), KeyKind::Validator)?;
    let node_key = read_key_file(&home.node_key_file(), KeyKind::Node)?;
    let me = genesis
        .validators
        .iter()
        .position(|v| v.public_key == validator_key.public())
        .map(|i| ValidatorIndex(i as u32))
        .with_context(|| {
            format!(
                "the validator key in {} is not in genesis; this node cannot validate",
                home.validator_key_file().display()
            )
        })?;
    anyhow::ensure!(
        genesis.validators[me.as_usize()].node_key == node_key.public(),
        "node key {} does not match genesis validators[{}].node_key",
        home.node_key_file().display(),
        me
    );
    // Refuse bad configurations before touching the database.
    let engine = genesis.consensus.engine;
    check_engine_config(&genesis, me)?;
    let store = open_store(&home, &genesis)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let validators = genesis
            .validators
            .iter()
            .map(|v| -> anyhow::Result<_> {
                Ok((
                    crate::p2p::peer_id_of(&v.node_key)?,
                    v.p2p_address
                        .parse()
                        .with_context(|| format!("validator {} p2p_address", v.name))?,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let keypair = libp2p::identity::Keypair::ed25519_from_bytes(node_key.seed())?;
        let listen = config
            .p2p
            .listen
            .parse()
            .with_context(|| format!("p2p.listen {:?}", config.p2p.listen))?;
        let net_cfg = crate::p2p::NetConfig {
            keypair,
            listen,
            validators,
            me,
            max_message_bytes: config.p2p.max_message_bytes,
            max_connections: config.p2p.max_connections,
            peer_queue: config.p2p.peer_queue,
            inbound: crate::inbound::InboundBudget::new(
                genesis.validators.len(),
                config
                    .p2p
                    .max_message_bytes
                    .saturating_mul(crate::inbound::FRAMES_PER_PEER),
            ),
        };
        let api_listen = config.api.listen.clone();
        let behaviour = args.behaviour.unwrap_or(config.faults.behaviour);
        // The flag or the config: one answer for the admin routes and the
        // live page (which shows its fault buttons only where they work).
        let mut config = config;
        config.faults.allow_fault_injection |= args.allow_fault_injection;
        let control = Arc::new(crate::injection::FaultControl::new(
            behaviour,
            config.faults.allow_fault_injection,
        ));
        let n = genesis.validators.len();
        let origins = Arc::new(crate::injection::admin::page_origins(
            genesis.validators.iter().map(|v| v.api_address.as_str()),
        ));
        let shared = Arc::new(Shared::new(genesis, me, config, store.clone()));
        let (event_tx, event_rx) = mpsc::channel(8192);
        let net = crate::p2p::spawn(net_cfg, store, event_tx)?;
        let listener = tokio::net::TcpListener::bind(&api_listen)
            .await
            .with_context(|| format!("cannot listen for the API on {api_listen} (port in use?)"))?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let router = crate::api::router(shared.clone()).merge(crate::injection::admin::router(
            crate::injection::admin::AdminState {
                control: control.clone(),
                net: net.clone(),
                n,
                me,
                switches: shared.switches.clone(),
                origins,
            },
        ));
        let mut api_shutdown = shutdown_rx.clone();
        let api = tokio::spawn(async move {
            // The client's address, for the admin routes' local-only rule.
            let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, service)
                .with_graceful_shutdown(async move {
                    let _ = api_shutdown.changed().await;
                })
                .await
        });
        tracing::info!(
            validator = me.0,
            api = %api_listen,
            behaviour = %behaviour,
            fault_injection = control.allow_injection,
            "phalanx node started"
        );
        if behaviour != crate::injection::Behaviour::Honest {
            tracing::warn!(%behaviour, "this validator is Byzantine on purpose (--behaviour)");
        }
        let vote_log = args.vote_log.as_deref();
        let shared_switches = shared.switches.clone();
        let driver = with_engine(
            engine,
            StartDriver {
                shared,
                key: validator_key,
                net,
                control,
                vote_log,
                mining: crate::mining::MiningConfig {
                    threads: args.mine_threads,
                    hash_rate: args.hash_rate,
                },
                events: event_rx,
                shutdown: shutdown_rx,
            },
        )??;
        let switches = shared_switches;
        tokio::select! {
            () = wait_for_signal() => {}
            () = switches.stopped() => tracing::warn!("stop requested over the admin API"),
        }
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
        driver.await??;
        let _ = api.await;
        anyhow::Ok(())
    })
}

/// Refuses a genesis whose engine this build does not run, or whose
/// engine refuses validator `me`'s configuration (too few validators, bad
/// parameters).
pub fn check_engine_config(genesis: &Genesis, me: ValidatorIndex) -> anyhow::Result<()> {
    with_engine(genesis.consensus.engine, CheckConfig { genesis, me })??;
    Ok(())
}

/// Checks validator `me`'s configuration of the genesis engine.
struct CheckConfig<'a> {
    genesis: &'a Genesis,
    me: ValidatorIndex,
}

impl WithEngine for CheckConfig<'_> {
    type Output = Result<(), phalanx_consensus::ConfigError>;
    fn run<E: Adversarial>(self) -> Self::Output {
        E::config(self.genesis, self.me).map(drop)
    }
}

/// Builds the driver around the genesis engine and spawns its loop; its
/// outgoing messages pass the fault wrapper (a no-op for an honest node).
struct StartDriver<'a> {
    shared: Arc<Shared>,
    key: phalanx_crypto::Keypair,
    net: mpsc::Sender<crate::p2p::NetCommand>,
    control: Arc<crate::injection::FaultControl>,
    vote_log: Option<&'a std::path::Path>,
    mining: crate::mining::MiningConfig,
    events: mpsc::Receiver<crate::p2p::NetEvent>,
    shutdown: watch::Receiver<bool>,
}

impl WithEngine for StartDriver<'_> {
    type Output = anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>>;
    fn run<E: Adversarial>(self) -> Self::Output {
        let cfg = E::config(&self.shared.genesis, self.shared.me)?;
        let wrapper_key = phalanx_crypto::Keypair::from_seed(self.key.seed());
        let net = crate::injection::interpose::<E>(
            self.control,
            self.shared.clone(),
            cfg,
            wrapper_key,
            self.net,
        );
        let mut driver = Driver::<E>::new(self.shared, self.key, net)?;
        if let Some(path) = self.vote_log {
            driver.set_vote_log(path)?;
        }
        if matches!(
            E::KIND,
            phalanx_ledger::EngineKind::Pow | phalanx_ledger::EngineKind::PbftPow
        ) {
            tracing::info!(
                threads = self.mining.threads,
                hash_rate_cap = self.mining.hash_rate,
                "proof of work: mining{}",
                if self.mining.threads == 0 {
                    " is off (--mine-threads 0)"
                } else {
                    ""
                }
            );
            driver.set_mining(self.mining);
        }
        Ok(tokio::spawn(driver.run(self.events, self.shutdown)))
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
