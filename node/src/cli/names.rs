//! Accounts by name: wherever the CLI takes a key file or an address, a
//! name such as `account0` works too, so that a testnet's first transfer is
//! `phalanx tx transfer --key account0 --to account1 --amount 10`.
//!
//! A key argument is, in this order: a file that exists; otherwise a name
//! looked up as NAME.json in `--keys-dir` (or `$PHALANX_KEYS_DIR`), then in
//! `./testnet-data/accounts/` (what `testnet/local.sh up` writes), then in
//! `~/.phalanx/keys/`. An address argument is 64 hex characters, or else a
//! key argument whose public key is taken. Nothing here reads a secret it
//! does not need: an address lookup reads the key file only for its public
//! key, and checks that the file is a consistent account key.

use phalanx_crypto::{read_key_file, KeyKind};
use phalanx_ledger::Address;
use std::path::{Path, PathBuf};

/// The folder `testnet/local.sh` writes the prefunded account keys to,
/// relative to where the CLI runs (the repository root in the README).
pub const TESTNET_ACCOUNTS_DIR: &str = "testnet-data/accounts";

/// The `--keys-dir` option shared by the commands that take accounts.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct KeysDirArg {
    /// Where account names (e.g. `account0`) are looked up as NAME.json,
    /// before ./testnet-data/accounts and ~/.phalanx/keys.
    #[arg(long, value_name = "DIR", env = "PHALANX_KEYS_DIR")]
    pub keys_dir: Option<PathBuf>,
}

impl KeysDirArg {
    /// The folders names are looked up in, in order.
    pub fn search_dirs(&self) -> Vec<PathBuf> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        search_dirs(self.keys_dir.as_deref(), home.as_deref())
    }

    /// Resolves a key argument (file or name) to a key file path.
    pub fn key_file(&self, arg: &str) -> anyhow::Result<PathBuf> {
        resolve_key_file(arg, &self.search_dirs())
    }

    /// Resolves an address argument (hex, file or name) to an address.
    pub fn address(&self, arg: &str) -> anyhow::Result<Address> {
        resolve_address(arg, &self.search_dirs())
    }
}

/// The folders searched for NAME.json: `keys_dir`, the testnet's accounts
/// folder, then `HOME/.phalanx/keys`.
pub fn search_dirs(keys_dir: Option<&Path>, home: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    dirs.extend(keys_dir.map(Path::to_path_buf));
    dirs.push(PathBuf::from(TESTNET_ACCOUNTS_DIR));
    dirs.extend(home.map(|h| h.join(".phalanx").join("keys")));
    dirs
}

/// Whether `arg` can only be meant as a path (so it is never looked up as a name).
fn looks_like_path(arg: &str) -> bool {
    arg.contains('/') || arg.contains(std::path::MAIN_SEPARATOR) || arg.ends_with(".json")
}

/// A key file for `arg`: the file itself if it exists, else NAME.json in
/// the first of `dirs` that holds one.
pub fn resolve_key_file(arg: &str, dirs: &[PathBuf]) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(!arg.is_empty(), "an empty key name or file");
    let as_path = PathBuf::from(arg);
    if as_path.is_file() {
        return Ok(as_path);
    }
    if looks_like_path(arg) {
        // Reading it says that it is missing and how to make one.
        return Ok(as_path);
    }
    for dir in dirs {
        let candidate = dir.join(format!("{arg}.json"));
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    anyhow::bail!(
        "no key file or account named {arg:?}: looked for ./{arg} and {arg}.json in {} \
         (`phalanx keys list` shows the names; --keys-dir or PHALANX_KEYS_DIR adds a folder; \
         a testnet's accounts exist after `testnet/local.sh up`)",
        searched.join(", ")
    )
}

/// An address for `arg`: 64 hex characters as they are, otherwise the
/// public key of the account key file `arg` names.
pub fn resolve_address(arg: &str, dirs: &[PathBuf]) -> anyhow::Result<Address> {
    if let Ok(address) = arg.parse::<Address>() {
        return Ok(address);
    }
    let looks_hex = arg.len() >= 32 && arg.chars().all(|c| c.is_ascii_hexdigit());
    if looks_hex {
        anyhow::bail!(
            "{arg:?} is not an address: an address is 64 hex characters (this has {})",
            arg.len()
        );
    }
    let file = resolve_key_file(arg, dirs)
        .map_err(|e| anyhow::anyhow!("{e}; an address is 64 hex characters"))?;
    let key = read_key_file(&file, KeyKind::Account)?;
    Ok(Address(key.public()))
}

/// One account key found in a folder.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NamedAccount {
    /// The file name without `.json`.
    pub name: String,
    /// Its address.
    pub address: Address,
    /// The key file.
    pub key_file: PathBuf,
}

/// The account keys in `dir` (validator and node keys, and files that are
/// not key files, are skipped), sorted by name with numbers in order
/// (account2 before account10).
pub fn list_accounts(dir: &Path) -> anyhow::Result<Vec<NamedAccount>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", dir.display())),
    };
    let mut accounts = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        if let Ok(key) = read_key_file(&path, KeyKind::Account) {
            accounts.push(NamedAccount {
                name: name.to_string(),
                address: Address(key.public()),
                key_file: path.clone(),
            });
        }
    }
    accounts.sort_by_key(|a| natural_key(&a.name));
    Ok(accounts)
}

/// Sorts "account10" after "account2": the text, then the trailing number.
fn natural_key(name: &str) -> (String, u64, String) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (text, number) = name.split_at(name.len() - digits);
    (
        text.to_string(),
        number.parse().unwrap_or(0),
        name.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_crypto::{write_key_file, Keypair};

    /// A key file DIR/NAME.json; each (folder, name) pair gets its own key.
    fn key_in(dir: &Path, name: &str, kind: KeyKind) -> Address {
        let key = Keypair::from_label(&format!("{}/{name}/{kind}", dir.display()));
        write_key_file(&dir.join(format!("{name}.json")), kind, &key).unwrap();
        Address(key.public())
    }

    #[test]
    fn names_resolve_in_search_order_and_files_win() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let in_second = key_in(second.path(), "alice", KeyKind::Account);
        let dirs = vec![first.path().to_path_buf(), second.path().to_path_buf()];
        assert_eq!(
            resolve_key_file("alice", &dirs).unwrap(),
            second.path().join("alice.json")
        );
        assert_eq!(resolve_address("alice", &dirs).unwrap(), in_second);
        // The same name earlier in the search order wins.
        let in_first = key_in(first.path(), "alice", KeyKind::Account);
        assert_ne!(in_first, in_second);
        assert_eq!(resolve_address("alice", &dirs).unwrap(), in_first);
        // A path is taken as a path.
        let path = second.path().join("alice.json");
        assert_eq!(
            resolve_address(path.to_str().unwrap(), &dirs).unwrap(),
            in_second
        );
    }

    #[test]
    fn hex_addresses_pass_through_and_bad_ones_say_why() {
        let address = Address(Keypair::from_seed([9; 32]).public());
        let hex = address.to_string();
        assert_eq!(resolve_address(&hex, &[]).unwrap(), address);
        let err = resolve_address(&hex[..40], &[]).unwrap_err().to_string();
        assert!(err.contains("64 hex characters"), "{err}");
        let err = resolve_address("bob", &[PathBuf::from("/nonexistent")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no key file or account named \"bob\""),
            "{err}"
        );
        assert!(err.contains("/nonexistent"), "{err}");
    }

    #[test]
    fn a_missing_path_is_not_looked_up_as_a_name() {
        let dir = tempfile::tempdir().unwrap();
        key_in(dir.path(), "alice", KeyKind::Account);
        let dirs = vec![dir.path().to_path_buf()];
        assert_eq!(
            resolve_key_file("elsewhere/alice.json", &dirs).unwrap(),
            PathBuf::from("elsewhere/alice.json")
        );
        let err = resolve_address("elsewhere/alice.json", &dirs)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn an_address_from_a_validator_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        key_in(dir.path(), "validator_key", KeyKind::Validator);
        let err = resolve_address("validator_key", &[dir.path().to_path_buf()]).unwrap_err();
        assert!(err.to_string().contains("validator"), "{err}");
    }

    #[test]
    fn lists_account_keys_in_natural_order_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["account10", "account2", "account0"] {
            key_in(dir.path(), name, KeyKind::Account);
        }
        key_in(dir.path(), "node_key", KeyKind::Node);
        std::fs::write(dir.path().join("notes.json"), "{}").unwrap();
        let names: Vec<String> = list_accounts(dir.path())
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names, ["account0", "account2", "account10"]);
        assert!(list_accounts(&dir.path().join("missing"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn search_dirs_are_keys_dir_testnet_then_home() {
        let dirs = search_dirs(Some(Path::new("/k")), Some(Path::new("/h")));
        assert_eq!(
            dirs,
            [
                PathBuf::from("/k"),
                PathBuf::from(TESTNET_ACCOUNTS_DIR),
                PathBuf::from("/h/.phalanx/keys")
            ]
        );
    }
}
