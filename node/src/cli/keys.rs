//! `phalanx keys`: generate and show key files (account, validator and node
//! keys). The secret never leaves the file: nothing here prints it.

use super::names::{list_accounts, KeysDirArg, NamedAccount};
use anyhow::Context as _;
use phalanx_crypto::{read_key_file, write_key_file, KeyKind, Keypair, PublicKey};
use phalanx_ledger::{Address, Genesis};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// What a key is for (the `kind` field of a key file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    /// Signs transactions; its public key is the account address.
    Account,
    /// Signs consensus messages (HOME/config/validator_key.json).
    Validator,
    /// The node's libp2p identity (HOME/config/node_key.json).
    Node,
}

impl From<KindArg> for KeyKind {
    fn from(k: KindArg) -> KeyKind {
        match k {
            KindArg::Account => KeyKind::Account,
            KindArg::Validator => KeyKind::Validator,
            KindArg::Node => KeyKind::Node,
        }
    }
}

/// `phalanx keys` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Generate a new key and write it to a new key file (mode 0600).
    #[command(after_help = "\
Examples:
  phalanx keys generate --output alice.json
  phalanx keys generate --output node_key.json --kind node

The file is never overwritten: if it exists the command fails and the old key is kept.
Prints the address (account) or public key (validator, node); never the secret.")]
    Generate {
        /// Where to write the key file (must not exist).
        #[arg(long, short, value_name = "FILE")]
        output: PathBuf,
        /// What the key is for.
        #[arg(long, value_enum, default_value_t = KindArg::Account)]
        kind: KindArg,
    },
    /// Show the address / public key of a key file (never the secret).
    #[command(after_help = "\
Examples:
  phalanx keys show --key account0                  # a testnet account by name
  phalanx keys show --key testnet-data/accounts/account0.json
  phalanx keys show --key ~/.phalanx/config/validator_key.json --kind validator
  phalanx keys show --key alice.json --json

Without --kind, the kind recorded in the file is shown; with --kind, a file of
another kind is an error.")]
    Show {
        /// The key file, or an account name such as `account0`.
        #[arg(long, short, value_name = "FILE|NAME")]
        key: String,
        /// The kind the file must hold (default: whatever the file says).
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        /// Print JSON (`{"kind", "public_key", "address" | "peer_id"}`).
        #[arg(long)]
        json: bool,
        /// Where account names are looked up.
        #[command(flatten)]
        keys: KeysDirArg,
    },
    /// List the account keys that names such as `account0` refer to.
    #[command(after_help = "\
Examples:
  phalanx keys list                                   # --keys-dir, ./testnet-data/accounts, ~/.phalanx/keys
  phalanx keys list testnet-data/accounts --genesis testnet-data/genesis.json   # with balances
  phalanx keys list --json

A name found in an earlier folder hides the same name in later ones; only the first is listed.")]
    List {
        /// List only this folder (default: every folder names are looked up in).
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Add each account's balance in this genesis file.
        #[arg(long, value_name = "FILE")]
        genesis: Option<PathBuf>,
        /// Print JSON: `[{"name", "address", "key_file", "balance"?}]`.
        #[arg(long)]
        json: bool,
        /// Where account names are looked up.
        #[command(flatten)]
        keys: KeysDirArg,
    },
}

/// Runs `phalanx keys`.
pub fn run(cmd: &KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Generate { output, kind } => {
            let kind = KeyKind::from(*kind);
            let keypair =
                Keypair::generate().context("the operating system's random source failed")?;
            write_key_file(output, kind, &keypair)?;
            println!("wrote a new {kind} key to {} (mode 0600)", output.display());
            print!("{}", describe(kind, &keypair.public()));
            Ok(())
        }
        KeysCommand::List {
            dir,
            genesis,
            json,
            keys,
        } => list(dir.as_deref(), genesis.as_deref(), *json, keys),
        KeysCommand::Show {
            key,
            kind,
            json,
            keys,
        } => {
            let key = &keys.key_file(key)?;
            let kind = match kind {
                Some(k) => KeyKind::from(*k),
                None => kind_in_file(key),
            };
            let keypair = read_key_file(key, kind)?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&describe_json(kind, &keypair.public()))?
                );
            } else {
                println!("kind:       {kind}");
                print!("{}", describe(kind, &keypair.public()));
            }
            Ok(())
        }
    }
}

/// One row of `phalanx keys list`.
#[derive(Debug, serde::Serialize)]
struct ListedAccount {
    #[serde(flatten)]
    account: NamedAccount,
    #[serde(skip_serializing_if = "Option::is_none")]
    balance: Option<u64>,
}

fn list(
    dir: Option<&Path>,
    genesis: Option<&Path>,
    json: bool,
    keys: &KeysDirArg,
) -> anyhow::Result<()> {
    let dirs = match dir {
        Some(d) => {
            anyhow::ensure!(d.is_dir(), "{} is not a folder", d.display());
            vec![d.to_path_buf()]
        }
        None => keys.search_dirs(),
    };
    let balances: Option<HashMap<Address, u64>> = match genesis {
        Some(path) => Some(
            Genesis::load(path)?
                .accounts
                .iter()
                .map(|a| (a.address, a.balance))
                .collect(),
        ),
        None => None,
    };
    let mut seen = HashSet::new();
    let mut rows = Vec::new();
    for d in &dirs {
        for account in list_accounts(d)? {
            if seen.insert(account.name.clone()) {
                let balance = balances
                    .as_ref()
                    .map(|b| b.get(&account.address).copied().unwrap_or(0));
                rows.push(ListedAccount { account, balance });
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        println!(
            "no account keys in {} (a testnet writes some: `testnet/local.sh up`; \
             make one with `phalanx keys generate --output DIR/NAME.json`)",
            searched.join(", ")
        );
        return Ok(());
    }
    let width = rows
        .iter()
        .map(|r| r.account.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let balance_width = rows
        .iter()
        .filter_map(|r| r.balance)
        .map(|b| b.to_string().len())
        .max()
        .unwrap_or(7)
        .max(7);
    if balances.is_some() {
        println!(
            "{:<width$}  {:<64}  {:>balance_width$}  KEY FILE",
            "NAME", "ADDRESS", "BALANCE"
        );
    } else {
        println!("{:<width$}  {:<64}  KEY FILE", "NAME", "ADDRESS");
    }
    for r in &rows {
        let a = &r.account;
        match r.balance {
            Some(b) => println!(
                "{:<width$}  {}  {:>balance_width$}  {}",
                a.name,
                a.address,
                b,
                a.key_file.display()
            ),
            None => println!(
                "{:<width$}  {}  {}",
                a.name,
                a.address,
                a.key_file.display()
            ),
        }
    }
    Ok(())
}

/// The kind a key file says it holds; `Account` when it cannot tell (then
/// `read_key_file` reports what is wrong with the file).
fn kind_in_file(path: &Path) -> KeyKind {
    #[derive(serde::Deserialize)]
    struct KindOnly {
        kind: KeyKind,
    }
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<KindOnly>(&text).ok())
        .map_or(KeyKind::Account, |k| k.kind)
}

/// The libp2p peer id of a node key.
pub fn peer_id(key: &PublicKey) -> anyhow::Result<String> {
    let ed = libp2p::identity::ed25519::PublicKey::try_from_bytes(key.as_bytes())?;
    Ok(libp2p::identity::PublicKey::from(ed)
        .to_peer_id()
        .to_string())
}

/// Human lines for a public key of `kind`.
fn describe(kind: KeyKind, key: &PublicKey) -> String {
    match kind {
        KeyKind::Account => format!("address:    {key}\n"),
        KeyKind::Validator => {
            format!("public key: {key}\n(also the validator's fee account address)\n")
        }
        KeyKind::Node => {
            let peer = peer_id(key).unwrap_or_else(|e| format!("<invalid: {e}>"));
            format!("public key: {key}\npeer id:    {peer}\n")
        }
    }
}

fn describe_json(kind: KeyKind, key: &PublicKey) -> serde_json::Value {
    let mut v = serde_json::json!({ "kind": kind, "public_key": key });
    match kind {
        KeyKind::Account | KeyKind::Validator => v["address"] = serde_json::json!(key),
        KeyKind::Node => v["peer_id"] = serde_json::json!(peer_id(key).ok()),
    }
    v
}
