//! `phalanx init`: create (or complete) one node's home directory.
//!
//! PBFT needs at least four validators, so a home made alone cannot run a
//! chain by itself: `init` writes the node's keys and config, and takes the
//! shared genesis.json from `--genesis` (or finds one already in the home).
//! `phalanx testnet init` makes whole local testnets in one step. Keys are
//! never overwritten.

use crate::home::{Home, NodeConfig};
use anyhow::Context as _;
use phalanx_crypto::{read_key_file, write_key_file, KeyKind, Keypair, PublicKey};
use phalanx_ledger::{Genesis, ValidatorInfo};
use std::path::{Path, PathBuf};

/// `phalanx init` arguments.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Create a node home directory: HOME/config/config.toml, node_key.json and \
validator_key.json, and HOME/config/genesis.json when --genesis is given.

Existing files are kept: keys are never overwritten (a validator that silently got a \
new key would lose its identity), and an existing config.toml is left as it is, so \
running init again only fills in what is missing.

Why no genesis of its own: PBFT needs n >= 4 validators (n >= 3f+1), so a \
one-validator genesis could not run. init prints this node's validator entry for a \
shared genesis.json instead; pass that genesis with --genesis (or copy it to \
HOME/config/genesis.json). For a local testnet, `phalanx testnet init` writes every \
home and the genesis in one step.",
    after_help = "\
Examples:
  phalanx init --home ~/.phalanx --moniker alpha
  phalanx init --home ~/.phalanx --genesis genesis.json --chain-id phalanx-main
  phalanx testnet init --validators 4 --output ./testnet-data   # a whole local testnet instead

Without --genesis, init writes keys and config but no genesis: PBFT needs
n >= 4 validators, so a genesis.json lists the keys of all of them. Share
this node's public keys (`phalanx keys show`), build one genesis.json for
every validator, then run init again with --genesis."
)]
pub struct InitArgs {
    /// The home directory to create or complete.
    #[arg(long, value_name = "DIR", env = "PHALANX_HOME")]
    pub home: PathBuf,
    /// The node's name in logs and status (default: the home directory's name).
    #[arg(long, value_name = "NAME")]
    pub moniker: Option<String>,
    /// The chain this node must join: checked against the genesis.
    #[arg(long, value_name = "ID")]
    pub chain_id: Option<String>,
    /// A shared genesis.json to install in HOME/config (it must list this node's validator key).
    #[arg(long, value_name = "FILE")]
    pub genesis: Option<PathBuf>,
}

/// Runs `phalanx init`.
pub fn run(args: &InitArgs) -> anyhow::Result<()> {
    let home = Home::new(&args.home);
    std::fs::create_dir_all(home.config_dir())
        .with_context(|| format!("cannot create {}", home.config_dir().display()))?;
    println!("home: {}", home.root().display());

    let config = ensure_config(&home, args.moniker.as_deref())?;
    let validator = ensure_key(&home.validator_key_file(), KeyKind::Validator)?;
    let node = ensure_key(&home.node_key_file(), KeyKind::Node)?;

    let entry = ValidatorInfo {
        name: config.moniker.clone(),
        public_key: validator,
        node_key: node,
        stake: 1,
        p2p_address: config.p2p.listen.clone(),
        api_address: config.api.listen.clone(),
    };
    match install_genesis(&home, args, &entry)? {
        Some(genesis) => {
            println!(
                "  ready   chain {:?}, {} validators; start the node with `phalanx node --home {}`",
                genesis.chain_id,
                genesis.validators.len(),
                home.root().display()
            );
        }
        None => {
            println!("  missing config/genesis.json");
            println!();
            println!(
                "A PBFT chain needs at least 4 validators, so init does not make a chain of one."
            );
            println!(
                "Add this validator's entry to the chain's shared genesis.json (\"validators\"):"
            );
            println!("{}", serde_json::to_string_pretty(&entry)?);
            println!(
                "then install it with `phalanx init --home {} --genesis genesis.json`.",
                home.root().display()
            );
            println!("For a local testnet, `phalanx testnet init --validators 4 --output DIR` does all of this.");
        }
    }
    Ok(())
}

/// Loads config.toml, or writes a default one with `moniker`.
fn ensure_config(home: &Home, moniker: Option<&str>) -> anyhow::Result<NodeConfig> {
    let path = home.config_file();
    if path.exists() {
        let config = home.load_config()?;
        let note = match moniker {
            Some(m) if m != config.moniker => format!(
                " (its moniker {:?} is kept; edit the file to change it)",
                config.moniker
            ),
            _ => String::new(),
        };
        println!("  kept    {}{note}", path.display());
        return Ok(config);
    }
    let default_name = home
        .root()
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty() && !n.starts_with('.'));
    let config = NodeConfig {
        moniker: moniker.or(default_name).unwrap_or("phalanx").to_owned(),
        ..NodeConfig::default()
    };
    std::fs::write(&path, config.to_toml())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "  wrote   {} (moniker {:?})",
        path.display(),
        config.moniker
    );
    Ok(config)
}

/// Reads the key at `path`, or generates and writes one; never overwrites.
fn ensure_key(path: &Path, kind: KeyKind) -> anyhow::Result<PublicKey> {
    if path.exists() {
        let key = read_key_file(path, kind)?;
        println!(
            "  kept    {} (existing {kind} key {}; never overwritten)",
            path.display(),
            key.public()
        );
        return Ok(key.public());
    }
    let key = Keypair::generate().context("the operating system's random source failed")?;
    write_key_file(path, kind, &key)?;
    println!(
        "  wrote   {} ({kind} key {}, mode 0600)",
        path.display(),
        key.public()
    );
    Ok(key.public())
}

/// Installs `--genesis` (or checks the one already in the home); returns
/// the genesis, or `None` when the home has none yet.
fn install_genesis(
    home: &Home,
    args: &InitArgs,
    entry: &ValidatorInfo,
) -> anyhow::Result<Option<Genesis>> {
    let target = home.genesis_file();
    let (genesis, source) = match &args.genesis {
        Some(path) => (Genesis::load(path)?, path.clone()),
        None if target.exists() => (Genesis::load(&target)?, target.clone()),
        None => {
            if let Some(id) = &args.chain_id {
                println!("  note    chain id {id:?} will be checked once a genesis is installed");
            }
            return Ok(None);
        }
    };
    if let Some(id) = &args.chain_id {
        anyhow::ensure!(
            &genesis.chain_id == id,
            "{} is for chain {:?}, not {id:?}: use the genesis of the chain you mean to join",
            source.display(),
            genesis.chain_id
        );
    }
    let Some(index) = genesis
        .validators
        .iter()
        .position(|v| v.public_key == entry.public_key)
    else {
        anyhow::bail!(
            "{} does not list this node's validator key {}: add this entry to its \"validators\" (and give every node the same file):\n{}",
            source.display(),
            entry.public_key,
            serde_json::to_string_pretty(entry)?
        );
    };
    anyhow::ensure!(
        genesis.validators[index].node_key == entry.node_key,
        "{}: validators[{index}].node_key is {}, but this node's key ({}) is {}",
        source.display(),
        genesis.validators[index].node_key,
        home.node_key_file().display(),
        entry.node_key
    );
    if source != target {
        if target.exists() {
            let existing = Genesis::load(&target)?;
            anyhow::ensure!(
                existing == genesis,
                "{} already exists and differs from {}: this home belongs to another chain (remove the file first to switch chains)",
                target.display(),
                source.display()
            );
            println!(
                "  kept    {} (same as {})",
                target.display(),
                source.display()
            );
        } else {
            std::fs::write(&target, genesis.to_json())
                .with_context(|| format!("cannot write {}", target.display()))?;
            println!("  wrote   {} (from {})", target.display(), source.display());
        }
    } else {
        println!("  kept    {}", target.display());
    }
    println!(
        "  member  validator {index} ({:?}) of chain {:?}",
        genesis.validators[index].name, genesis.chain_id
    );
    Ok(Some(genesis))
}
