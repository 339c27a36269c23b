//! `phalanx keys`: generate and show key files (account, validator and node
//! keys). The secret never leaves the file: nothing here prints it.

use anyhow::Context as _;
use phalanx_crypto::{read_key_file, write_key_file, KeyKind, Keypair, PublicKey};
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
  phalanx keys show --key testnet/accounts/account0.json
  phalanx keys show --key ~/.phalanx/config/validator_key.json --kind validator
  phalanx keys show --key alice.json --json

Without --kind, the kind recorded in the file is shown; with --kind, a file of
another kind is an error.")]
    Show {
        /// The key file.
        #[arg(long, short, value_name = "FILE")]
        key: PathBuf,
        /// The kind the file must hold (default: whatever the file says).
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        /// Print JSON (`{"kind", "public_key", "address" | "peer_id"}`).
        #[arg(long)]
        json: bool,
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
        KeysCommand::Show { key, kind, json } => {
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
