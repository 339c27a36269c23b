//! `phalanx testnet init`: the homes of an N-validator testnet, their
//! shared genesis, and prefunded account keys.
//!
//! By default every node runs on 127.0.0.1: node i listens for peers on
//! `base_port + i` and serves its API on `base_port + 100 + i` (default base
//! port 26000, so node0's API is http://127.0.0.1:26100 — what `--node`
//! defaults to). With `--hosts H0,H1,…` node i listens on H_i instead and its
//! peers dial it there; nodes on distinct hosts all use the base port (and
//! base port + 100 for the API), and nodes sharing a host count up from it.

use anyhow::Context as _;
use phalanx_crypto::{write_key_file, KeyKind, Keypair};
use phalanx_ledger::{
    ConsensusParams, EngineKind, Fallback, Genesis, GenesisAccount, ValidatorIndex, ValidatorInfo,
};
use phalanx_node::home::{ApiConfig, Home, NodeConfig, P2pConfig};
use phalanx_runtime::registry;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub use phalanx_node::home::API_PORT_OFFSET;

/// `phalanx testnet` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TestnetCommand {
    /// Write N node homes (keys, config.toml with distinct ports, one shared genesis.json)
    /// and prefunded account keys into a new directory.
    #[command(after_help = "\
Layout written:
  DIR/genesis.json                 the shared genesis (also copied into each home)
  DIR/node<i>/config/              config.toml, genesis.json, node_key.json, validator_key.json
  DIR/accounts/account<j>.json     prefunded account keys (balances in the genesis)

Ports: node i listens for peers on 127.0.0.1:<base-port + i> and serves its HTTP API on
127.0.0.1:<base-port + 100 + i> (default: node0's API is http://127.0.0.1:26100).

Several machines (--hosts H0,H1,...): node i listens for peers on H_i:<base-port> and
serves its HTTP API on H_i:<base-port + 100> (default 26000 and 26100), and every peer
dials it at H_i. The API listens on the host's address, not on loopback, so that a
CLI on another machine reaches it (phalanx query status --node http://H_i:26100); it
has no authentication, so keep it behind a firewall on untrusted networks. Each H_i
must be an IP address of that machine (the node binds to it). Behind NAT (a cloud
VM's public IP), give the public addresses and change p2p.listen and api.listen in
that node's config.toml to /ip4/0.0.0.0/tcp/26000 and 0.0.0.0:26100. Nodes sharing a
host count their ports up from the base port. `--hosts 10.0.0.1+` means consecutive
addresses from 10.0.0.1, one per validator.

Examples:
  phalanx testnet init --validators 4 --output ./testnet-data
  phalanx testnet init --validators 7 --output /tmp/t7 --base-port 27000 --accounts 10 --balance 1000000
  phalanx testnet init --validators 4 --output ./net --hosts 10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4
  phalanx testnet init --validators 4 --output ./net --hosts 10.0.0.1+     # the same four
  phalanx node --home ./testnet-data/node0        # then start every node (testnet/local.sh up does it all)

With --hosts, copy DIR/node<i> to host H_i and run `phalanx node --home <that copy>`
there; testnet/netns.sh does this on one Linux machine with a network namespace per
validator.")]
    Init(InitArgs),
    /// Make a Twin of a validator: a second home holding the same validator
    /// and node keys with its own ports and an empty database. Started
    /// next to the original, the two sign conflicting messages with one key:
    /// the Byzantine fault of an operator whose failover started a backup
    /// while the primary still ran. For test networks only.
    #[command(after_help = "\
Examples:
  phalanx testnet twin --home ./testnet-data/node0 --output ./testnet-data/node0-twin \\
      --p2p-port 26050 --api-port 26150
  phalanx node --home ./testnet-data/node0-twin    # now validator 0 runs twice

The twin syncs the chain from the other validators, who accept it because it holds
validator 0's node key, and spread their messages for validator 0 over both
processes. PBFT stays safe (a quorum counts distinct keys) and records evidence when
the two sign different proposals for one slot; `phalanx faults --faults twins`
measures it beside the CFT baseline.")]
    Twin(TwinArgs),
}

/// `phalanx testnet twin` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct TwinArgs {
    /// The home of the validator to copy (its config/ is read).
    #[arg(long, value_name = "DIR")]
    pub home: PathBuf,
    /// The twin's home (must not exist or be empty).
    #[arg(long, short, value_name = "DIR")]
    pub output: PathBuf,
    /// The twin's P2P port (on 127.0.0.1).
    #[arg(long)]
    pub p2p_port: u16,
    /// The twin's HTTP API port (on 127.0.0.1).
    #[arg(long)]
    pub api_port: u16,
}

/// Writes the twin home `args` describes; returns its API address.
pub fn write_twin(args: &TwinArgs) -> anyhow::Result<String> {
    let original = Home::new(&args.home);
    for file in [
        original.genesis_file(),
        original.node_key_file(),
        original.validator_key_file(),
    ] {
        anyhow::ensure!(
            file.is_file(),
            "{} is not a node home: {} is missing",
            args.home.display(),
            file.display()
        );
    }
    anyhow::ensure!(
        args.p2p_port >= 1024 && args.api_port >= 1024 && args.p2p_port != args.api_port,
        "--p2p-port and --api-port must be two different ports from 1024 up"
    );
    check_output(&args.output)?;
    let mut config = original.load_config()?;
    config.moniker = format!("{}-twin", config.moniker);
    config.p2p.listen = format!("/ip4/127.0.0.1/tcp/{}", args.p2p_port);
    config.api.listen = format!("127.0.0.1:{}", args.api_port);
    let twin = Home::new(&args.output);
    write_file(&twin.config_file(), &config.to_toml())?;
    for (from, to) in [
        (original.genesis_file(), twin.genesis_file()),
        (original.node_key_file(), twin.node_key_file()),
        (original.validator_key_file(), twin.validator_key_file()),
    ] {
        // A copy keeps the key files' 0600 mode.
        std::fs::copy(&from, &to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    Ok(format!("http://{}", config.api.listen))
}

/// Parses `--fallback`.
pub fn parse_fallback(name: &str) -> Result<Fallback, String> {
    match name.trim() {
        "none" => Ok(Fallback::None),
        "pow" => Ok(Fallback::Pow),
        "pos" => Ok(Fallback::Pos),
        other => Err(format!(
            "unknown fallback {other:?}: PBFT falls back to none, pow or pos"
        )),
    }
}

/// `phalanx testnet init` arguments.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Number of validators (PBFT needs at least 4: n ≥ 3f+1 with f ≥ 1; CFT at least 1).
    #[arg(long, short = 'n', default_value_t = 4)]
    pub validators: u32,
    /// The consensus engine written into the genesis: pbft (Byzantine faults,
    /// n ≥ 3f+1) or cft (the crash-fault-tolerant baseline, n ≥ 2f+1).
    #[arg(long, value_parser = registry::parse, default_value = "pbft")]
    pub consensus: EngineKind,
    /// What PBFT falls back to while it has no quorum: none (it halts),
    /// pow or pos (tentative blocks until the quorum is back, then PBFT
    /// finalizes them). The same as `--consensus pbft+pow` / `pbft+pos`.
    #[arg(long, value_parser = parse_fallback, default_value = "none")]
    pub fallback: Fallback,
    /// The directory to create (it must not exist or be empty).
    #[arg(long, short, value_name = "DIR")]
    pub output: PathBuf,
    /// P2P port of node0; node i uses base-port + i for P2P and base-port + 100 + i for its API
    /// (with --hosts, every node on its own host uses base-port and base-port + 100).
    #[arg(long, default_value_t = 26000)]
    pub base_port: u16,
    /// The validators' machines: one IP address per validator, comma-separated
    /// (node i listens for peers and serves its API on H_i, and its peers dial it
    /// there), or FIRST+ for --validators consecutive addresses from FIRST.
    /// Default: every node on 127.0.0.1.
    #[arg(long, value_name = "H0,H1,...|FIRST+")]
    pub hosts: Option<String>,
    /// The chain id.
    #[arg(long, default_value = "phalanx-testnet")]
    pub chain_id: String,
    /// Prefunded accounts (key files DIR/accounts/account<j>.json).
    #[arg(long, default_value_t = 4)]
    pub accounts: u32,
    /// Genesis balance of each prefunded account.
    #[arg(long, default_value_t = 1_000_000_000)]
    pub balance: u64,
}

/// Runs `phalanx testnet`.
pub fn run(cmd: &TestnetCommand) -> anyhow::Result<()> {
    match cmd {
        TestnetCommand::Init(args) => init(args),
        TestnetCommand::Twin(args) => {
            let api = write_twin(args)?;
            println!(
                "Wrote a twin of {} into {} (API {api}).\n\
                 Start it with: phalanx node --home {}\n\
                 WARNING: the twin signs with the same validator key as the original. \
                 Running both is a Byzantine fault (double signing); never do it on a \
                 network you care about.",
                args.home.display(),
                args.output.display(),
                args.output.display()
            );
            Ok(())
        }
    }
}

/// Everything a testnet is made of, built in memory before anything is written.
struct Plan {
    genesis: Genesis,
    nodes: Vec<NodePlan>,
    accounts: Vec<Keypair>,
}

struct NodePlan {
    config: NodeConfig,
    validator_key: Keypair,
    node_key: Keypair,
}

/// "PBFT, tolerates f = 1 Byzantine" for `engine` with `n` validators.
fn tolerates(engine: EngineKind, n: usize) -> String {
    let name = engine.name().to_uppercase();
    match registry::fault_model(engine) {
        Ok(model) => format!(
            "{name}, tolerates f = {} {}",
            model.max_faulty(n),
            if model.byzantine() {
                "Byzantine"
            } else {
                "crashed"
            }
        ),
        Err(_) => name,
    }
}

fn check_args(args: &InitArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.validators >= 1,
        "a testnet needs at least 1 validator, got --validators 0"
    );
    anyhow::ensure!(
        args.validators <= u32::from(API_PORT_OFFSET),
        "at most {API_PORT_OFFSET} validators (node i's API port is base-port + {API_PORT_OFFSET} + i, so more would collide with P2P ports), got {}",
        args.validators
    );
    let highest = u32::from(args.base_port) + u32::from(API_PORT_OFFSET) + args.validators - 1;
    anyhow::ensure!(
        args.base_port >= 1024 && highest <= u32::from(u16::MAX),
        "--base-port {} gives ports {}..={highest}: choose a base port from 1024 to {}",
        args.base_port,
        args.base_port,
        u32::from(u16::MAX) + 1 - u32::from(API_PORT_OFFSET) - args.validators
    );
    anyhow::ensure!(
        u64::from(args.accounts).checked_mul(args.balance).is_some(),
        "--accounts {} × --balance {} exceeds the largest total supply (2^64 - 1); lower the balance",
        args.accounts,
        args.balance
    );
    Ok(())
}

/// The machine of each of `n` validators from `--hosts` (none: all on
/// 127.0.0.1): `H0,H1,…` with exactly `n` IP addresses, or `FIRST+` for `n`
/// consecutive addresses from FIRST.
fn parse_hosts(spec: Option<&str>, n: u32) -> anyhow::Result<Vec<IpAddr>> {
    let Some(spec) = spec else {
        return Ok(vec![Ipv4Addr::LOCALHOST.into(); n as usize]);
    };
    let spec = spec.trim();
    let hosts = if let Some(first) = spec.strip_suffix('+') {
        let first = parse_host(first)?;
        let hosts = (0..n)
            .map(|k| {
                nth_after(first, k).with_context(|| {
                    format!(
                        "--hosts {spec}: {n} consecutive addresses from {first} run past \
                         the last address"
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for ip in &hosts {
            check_host(*ip)?;
        }
        hosts
    } else {
        let hosts = spec
            .split(',')
            .map(parse_host)
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(
            hosts.len() == n as usize,
            "--hosts lists {} address{} but --validators is {n}: give one address per validator \
             (or FIRST+ for {n} consecutive addresses, e.g. --hosts 10.0.0.1+)",
            hosts.len(),
            if hosts.len() == 1 { "" } else { "es" }
        );
        hosts
    };
    Ok(hosts)
}

/// The address `k` after `ip`, if there is one.
fn nth_after(ip: IpAddr, k: u32) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(a) => u32::from(a)
            .checked_add(k)
            .map(|x| Ipv4Addr::from(x).into()),
        IpAddr::V6(a) => u128::from(a)
            .checked_add(k.into())
            .map(|x| Ipv6Addr::from(x).into()),
    }
}

/// One `--hosts` entry: an IP address a peer can dial.
fn parse_host(text: &str) -> anyhow::Result<IpAddr> {
    let text = text.trim();
    anyhow::ensure!(
        !text.is_empty(),
        "--hosts has an empty entry: give comma-separated IP addresses such as 10.0.0.1,10.0.0.2"
    );
    // Accept [v6] as well as bare v6.
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    let ip: IpAddr = bare.parse().map_err(|_| {
        if text.starts_with('[')
            || (text.contains(':') && text.contains('.'))
            || text.matches(':').count() == 1
        {
            anyhow::anyhow!(
                "--hosts: {text:?} is not an IP address (give addresses without ports; \
                 the ports come from --base-port)"
            )
        } else {
            anyhow::anyhow!(
                "--hosts: {text:?} is not an IP address (give IPv4 or IPv6 addresses such as \
                 10.0.0.1; host names are not accepted because each node binds to its address)"
            )
        }
    })?;
    check_host(ip)?;
    Ok(ip)
}

/// Refuses the addresses no peer can dial a node at.
fn check_host(ip: IpAddr) -> anyhow::Result<()> {
    anyhow::ensure!(
        !ip.is_unspecified(),
        "--hosts: {ip} is the unspecified address, which peers cannot dial: give each \
         machine's own address (to listen on every interface, edit p2p.listen and api.listen \
         in config.toml after init)"
    );
    anyhow::ensure!(
        !ip.is_multicast() && ip != IpAddr::from(Ipv4Addr::BROADCAST),
        "--hosts: {ip} is a multicast or broadcast address, not a machine's address"
    );
    Ok(())
}

/// Node i's (P2P, API) ports: the base port and base + 100 for the first node
/// on a host, one more for each earlier node sharing that host (so without
/// --hosts, node i uses base + i and base + 100 + i).
fn ports(hosts: &[IpAddr], i: usize, base_port: u16) -> (u16, u16) {
    let earlier = hosts[..i].iter().filter(|h| **h == hosts[i]).count();
    // check_args bounds every port below 65536 (earlier < validators).
    let p2p = base_port + earlier as u16;
    (p2p, p2p + API_PORT_OFFSET)
}

/// The multiaddr peers dial (and the node listens on) for `ip:port`.
fn p2p_multiaddr(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("/ip4/{a}/tcp/{port}"),
        IpAddr::V6(a) => format!("/ip6/{a}/tcp/{port}"),
    }
}

/// Keys, configs and genesis for `args`; fails before anything is written.
fn plan(args: &InitArgs) -> anyhow::Result<Plan> {
    check_args(args)?;
    let mut consensus = ConsensusParams {
        engine: args.consensus,
        fallback: args.fallback,
        ..ConsensusParams::default()
    };
    consensus
        .settle_fallback()
        .map_err(|e| anyhow::anyhow!("--fallback {}: {e}", args.fallback.name()))?;
    let engine = consensus.engine;
    let hosts = parse_hosts(args.hosts.as_deref(), args.validators)?;
    let random = || Keypair::generate().context("the operating system's random source failed");
    let mut nodes = Vec::new();
    let mut validators = Vec::new();
    for i in 0..args.validators {
        let host = hosts[i as usize];
        let (p2p_port, api_port) = ports(&hosts, i as usize, args.base_port);
        let p2p = p2p_multiaddr(host, p2p_port);
        let api = SocketAddr::new(host, api_port).to_string();
        let node = NodePlan {
            config: NodeConfig {
                moniker: format!("node{i}"),
                p2p: P2pConfig {
                    listen: p2p.clone(),
                    ..P2pConfig::default()
                },
                api: ApiConfig {
                    listen: api.clone(),
                    ..ApiConfig::default()
                },
                ..NodeConfig::default()
            },
            validator_key: random()?,
            node_key: random()?,
        };
        validators.push(ValidatorInfo {
            name: node.config.moniker.clone(),
            public_key: node.validator_key.public(),
            node_key: node.node_key.public(),
            // Under PoS the stake is also a balance (in the validator's
            // stake account); elsewhere only the count of validators matters.
            stake: if engine.staked() { 100 } else { 1 },
            p2p_address: p2p,
            api_address: api,
        });
        nodes.push(node);
    }
    let accounts: Vec<Keypair> = (0..args.accounts)
        .map(|_| random())
        .collect::<anyhow::Result<_>>()?;
    let genesis = Genesis {
        chain_id: args.chain_id.clone(),
        genesis_time_ms: phalanx_node::clock::now_ms(),
        validators,
        accounts: accounts
            .iter()
            .map(|k| GenesisAccount {
                address: k.public().into(),
                balance: args.balance,
            })
            .collect(),
        consensus,
    };
    // The engine's own rule on the validator set (PBFT needs n ≥ 4).
    phalanx_node::run::check_engine_config(&genesis, ValidatorIndex(0))
        .with_context(|| format!("--validators {}", args.validators))?;
    genesis
        .validate()
        .context("the testnet's genesis would be invalid")?;
    Ok(Plan {
        genesis,
        nodes,
        accounts,
    })
}

/// Refuses an output directory that holds anything (two testnets' keys must never mix).
fn check_output(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => anyhow::ensure!(
            entries.next().is_none(),
            "output directory {} is not empty: choose a new directory, or remove it to start a fresh testnet \
             (testnet init never writes into an existing testnet)",
            dir.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if dir.exists() && !dir.is_dir() => {
            anyhow::bail!("output {} exists and is not a directory ({e})", dir.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read output directory {}", dir.display())),
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn init(args: &InitArgs) -> anyhow::Result<()> {
    let plan = write(args)?;
    print_summary(args, &plan);
    Ok(())
}

/// Writes the testnet `args` describes without printing (for `phalanx bench`).
pub fn write_quietly(args: &InitArgs) -> anyhow::Result<()> {
    write(args).map(|_| ())
}

fn write(args: &InitArgs) -> anyhow::Result<Plan> {
    check_output(&args.output)?;
    let plan = plan(args)?;
    let genesis_json = plan.genesis.to_json();
    write_file(&args.output.join("genesis.json"), &genesis_json)?;
    for (i, node) in plan.nodes.iter().enumerate() {
        let home = Home::new(args.output.join(format!("node{i}")));
        write_file(&home.config_file(), &node.config.to_toml())?;
        write_file(&home.genesis_file(), &genesis_json)?;
        write_key_file(
            &home.validator_key_file(),
            KeyKind::Validator,
            &node.validator_key,
        )?;
        write_key_file(&home.node_key_file(), KeyKind::Node, &node.node_key)?;
    }
    for (j, key) in plan.accounts.iter().enumerate() {
        write_key_file(&account_file(&args.output, j), KeyKind::Account, key)?;
    }
    Ok(plan)
}

fn print_summary(args: &InitArgs, plan: &Plan) {
    let out = args.output.display();
    println!(
        "wrote a {}-validator testnet (chain {:?}, {}) to {out}",
        plan.nodes.len(),
        plan.genesis.chain_id,
        tolerates(args.consensus, plan.nodes.len())
    );
    for (i, v) in plan.genesis.validators.iter().enumerate() {
        println!(
            "  node{i}  home {out}/node{i}  p2p {}  api http://{}",
            v.p2p_address, v.api_address
        );
    }
    for (j, a) in plan.genesis.accounts.iter().enumerate() {
        println!(
            "  account{j}  {}  balance {}  key {}",
            a.address,
            a.balance,
            account_file(&args.output, j).display()
        );
    }
    println!();
    if args.hosts.is_some() {
        println!("Copy each home to its host and start it there:");
        println!(
            "  phalanx node --home node0    # on {}, ... through node{} (testnet/netns.sh runs them on one machine)",
            host_of(&plan.genesis.validators[0].api_address),
            plan.nodes.len() - 1
        );
    } else {
        println!("Start every node (or run `testnet/local.sh up`):");
        println!(
            "  phalanx node --home {out}/node0    # ... through node{}",
            plan.nodes.len() - 1
        );
    }
    println!("Then:");
    println!(
        "  phalanx query status --node http://{}",
        plan.genesis.validators[0].api_address
    );
}

/// The host part of an API address ("10.0.0.1:26100" → "10.0.0.1").
fn host_of(api: &str) -> String {
    api.parse::<SocketAddr>()
        .map_or_else(|_| api.to_owned(), |a| a.ip().to_string())
}

fn account_file(dir: &Path, j: usize) -> PathBuf {
    dir.join("accounts").join(format!("account{j}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(n: u32) -> InitArgs {
        InitArgs {
            validators: n,
            consensus: EngineKind::Pbft,
            fallback: Fallback::None,
            output: PathBuf::from("unused"),
            base_port: 26000,
            hosts: None,
            chain_id: "t".into(),
            accounts: 2,
            balance: 5,
        }
    }

    #[test]
    fn plan_gives_distinct_ports_and_a_valid_genesis() {
        let plan = plan(&args(5)).unwrap();
        let g = &plan.genesis;
        assert_eq!(g.validators.len(), 5);
        assert_eq!(g.validators[0].p2p_address, "/ip4/127.0.0.1/tcp/26000");
        assert_eq!(g.validators[0].api_address, "127.0.0.1:26100");
        assert_eq!(g.validators[4].api_address, "127.0.0.1:26104");
        assert_eq!(plan.nodes[4].config.p2p.listen, g.validators[4].p2p_address);
        assert_eq!(plan.nodes[4].config.api.listen, g.validators[4].api_address);
        assert_eq!(g.accounts.len(), 2);
        assert!(g.accounts.iter().all(|a| a.balance == 5));
        g.validate().unwrap();
    }

    #[test]
    fn hosts_put_each_node_on_its_machine_and_peers_dial_it_there() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("net");
        let hosts = ["10.77.0.1", "10.77.0.2", "10.77.0.3", "10.77.0.4"];
        write_quietly(&InitArgs {
            output: net.clone(),
            hosts: Some(hosts.join(",")),
            ..args(4)
        })
        .unwrap();
        // What the nodes read back: their own config and the genesis they dial peers from.
        let genesis = Genesis::load(&net.join("genesis.json")).unwrap();
        for (i, host) in hosts.iter().enumerate() {
            let home = Home::new(net.join(format!("node{i}")));
            let config = home.load_config().unwrap();
            // Distinct hosts: every node on the same ports.
            assert_eq!(config.p2p.listen, format!("/ip4/{host}/tcp/26000"));
            assert_eq!(config.api.listen, format!("{host}:26100"));
            assert_eq!(Genesis::load(&home.genesis_file()).unwrap(), genesis);
            for (j, peer) in genesis.validators.iter().enumerate() {
                assert_eq!(peer.p2p_address, format!("/ip4/{}/tcp/26000", hosts[j]));
                assert_eq!(peer.api_address, format!("{}:26100", hosts[j]));
            }
            // Each validator dials the others at their listen addresses.
            assert_eq!(genesis.validators[i].p2p_address, config.p2p.listen);
        }
    }

    #[test]
    fn consecutive_hosts_ipv6_and_shared_hosts() {
        let plan_with = |n, hosts: &str| {
            plan(&InitArgs {
                hosts: Some(hosts.into()),
                ..args(n)
            })
            .unwrap()
        };
        let p = plan_with(5, "10.0.0.254+");
        let got: Vec<&str> = p
            .genesis
            .validators
            .iter()
            .map(|v| v.p2p_address.as_str())
            .collect();
        assert_eq!(
            got,
            [
                "/ip4/10.0.0.254/tcp/26000",
                "/ip4/10.0.0.255/tcp/26000",
                "/ip4/10.0.1.0/tcp/26000",
                "/ip4/10.0.1.1/tcp/26000",
                "/ip4/10.0.1.2/tcp/26000"
            ]
        );
        let p = plan_with(4, "fd00::1, [fd00::2],fd00::3,fd00::4");
        assert_eq!(
            p.genesis.validators[1].p2p_address,
            "/ip6/fd00::2/tcp/26000"
        );
        assert_eq!(p.genesis.validators[1].api_address, "[fd00::2]:26100");
        assert_eq!(p.nodes[3].config.api.listen, "[fd00::4]:26100");
        // Two hosts with two nodes each: the second node on a host takes the next ports.
        let p = plan_with(4, "10.0.0.1,10.0.0.2,10.0.0.1,10.0.0.2");
        let got: Vec<(&str, &str)> = p
            .genesis
            .validators
            .iter()
            .map(|v| (v.p2p_address.as_str(), v.api_address.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("/ip4/10.0.0.1/tcp/26000", "10.0.0.1:26100"),
                ("/ip4/10.0.0.2/tcp/26000", "10.0.0.2:26100"),
                ("/ip4/10.0.0.1/tcp/26001", "10.0.0.1:26101"),
                ("/ip4/10.0.0.2/tcp/26001", "10.0.0.2:26101")
            ]
        );
    }

    #[test]
    fn bad_hosts_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let msg = |n, hosts: &str| {
            let out = dir.path().join(format!("net-{n}-{hosts}"));
            let err = write_quietly(&InitArgs {
                output: out.clone(),
                hosts: Some(hosts.into()),
                ..args(n)
            })
            .unwrap_err();
            assert!(!out.exists(), "nothing written for --hosts {hosts}");
            format!("{err:#}")
        };
        let m = msg(4, "10.0.0.1,10.0.0.2,10.0.0.3");
        assert!(m.contains("lists 3 addresses but --validators is 4"), "{m}");
        let m = msg(4, "10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5");
        assert!(m.contains("lists 5 addresses but --validators is 4"), "{m}");
        let m = msg(4, "10.0.0.1,10.0.0.300,10.0.0.3,10.0.0.4");
        assert!(m.contains("\"10.0.0.300\" is not an IP address"), "{m}");
        let m = msg(4, "node-a,node-b,node-c,node-d");
        assert!(m.contains("host names are not accepted"), "{m}");
        let m = msg(4, "10.0.0.1:26000,10.0.0.2,10.0.0.3,10.0.0.4");
        assert!(m.contains("without ports"), "{m}");
        let m = msg(4, "10.0.0.1,,10.0.0.3,10.0.0.4");
        assert!(m.contains("empty entry"), "{m}");
        let m = msg(4, "0.0.0.0,10.0.0.2,10.0.0.3,10.0.0.4");
        assert!(m.contains("unspecified address"), "{m}");
        let m = msg(4, "224.0.0.1+");
        assert!(m.contains("multicast"), "{m}");
        let m = msg(4, "255.255.255.253+");
        assert!(m.contains("run past the last address"), "{m}");
        let m = msg(4, "10.0.0.x+");
        assert!(m.contains("not an IP address"), "{m}");
    }

    #[test]
    fn bad_arguments_say_why() {
        let msg = |a: InitArgs| plan(&a).err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(msg(args(3)).contains("at least 4 validators"));
        // The crash-fault-tolerant baseline runs with 3 (f = 1) and writes cft.
        let cft = plan(&InitArgs {
            consensus: EngineKind::Cft,
            ..args(3)
        })
        .unwrap();
        assert_eq!(cft.genesis.consensus.engine, EngineKind::Cft);
        // PBFT with a fallback: `--fallback pos` is engine pbft+pos, with stake.
        let hybrid = plan(&InitArgs {
            fallback: Fallback::Pos,
            ..args(4)
        })
        .unwrap();
        assert_eq!(hybrid.genesis.consensus.engine, EngineKind::PbftPos);
        assert_eq!(hybrid.genesis.consensus.fallback, Fallback::Pos);
        assert_eq!(hybrid.genesis.validators[0].stake, 100);
        assert!(msg(InitArgs {
            consensus: EngineKind::Cft,
            fallback: Fallback::Pow,
            ..args(4)
        })
        .contains("does not go with engine"));
        assert!(msg(InitArgs {
            consensus: EngineKind::Cft,
            ..args(0)
        })
        .contains("at least 1 validator"));
        assert!(msg(InitArgs {
            base_port: 65500,
            ..args(4)
        })
        .contains("choose a base port"));
        assert!(msg(InitArgs {
            base_port: 80,
            ..args(4)
        })
        .contains("choose a base port"));
        assert!(msg(InitArgs {
            accounts: 3,
            balance: u64::MAX,
            ..args(4)
        })
        .contains("total supply"));
        assert!(msg(InitArgs {
            chain_id: "bad id!".into(),
            ..args(4)
        })
        .contains("chain_id"));
        assert!(msg(args(101)).contains("at most 100"));
    }

    #[test]
    fn a_twin_holds_the_same_keys_with_its_own_ports_and_no_data() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("net");
        write_quietly(&InitArgs {
            output: net.clone(),
            ..args(4)
        })
        .unwrap();
        let twin_args = TwinArgs {
            home: net.join("node2"),
            output: net.join("node2-twin"),
            p2p_port: 26050,
            api_port: 26150,
        };
        let api = write_twin(&twin_args).unwrap();
        assert_eq!(api, "http://127.0.0.1:26150");
        let (original, twin) = (
            Home::new(net.join("node2")),
            Home::new(net.join("node2-twin")),
        );
        for (a, b) in [
            (original.validator_key_file(), twin.validator_key_file()),
            (original.node_key_file(), twin.node_key_file()),
            (original.genesis_file(), twin.genesis_file()),
        ] {
            assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        }
        let config = twin.load_config().unwrap();
        assert_eq!(config.moniker, "node2-twin");
        assert_eq!(config.p2p.listen, "/ip4/127.0.0.1/tcp/26050");
        assert_eq!(config.api.listen, "127.0.0.1:26150");
        assert!(
            !twin.data_dir().exists(),
            "a twin starts from an empty store"
        );
        // Never over an existing home, never from something that is not one.
        let again = write_twin(&twin_args).unwrap_err();
        assert!(format!("{again:#}").contains("not empty"), "{again:#}");
        let nothing = write_twin(&TwinArgs {
            home: net.join("node9"),
            output: net.join("node9-twin"),
            ..twin_args.clone()
        })
        .unwrap_err();
        assert!(
            format!("{nothing:#}").contains("not a node home"),
            "{nothing:#}"
        );
    }
}
