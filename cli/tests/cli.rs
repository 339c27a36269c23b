//! The `phalanx` binary's CLI without a running node: keys, init, testnet
//! init, usage errors (exit code 2), and runtime errors (exit code 1) whose
//! messages say what to do.

use phalanx_crypto::{read_key_file, KeyKind};
use phalanx_ledger::Genesis;
use std::path::Path;
use std::process::{Command, Output};

fn phalanx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phalanx"))
        .args(args)
        .env_remove("PHALANX_NODE")
        .env_remove("PHALANX_HOME")
        .env_remove("PHALANX_KEYS_DIR")
        .output()
        .expect("run phalanx")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let o = phalanx(args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{args:?}\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs a command that must fail with `code`; returns stderr.
#[track_caller]
fn fails(code: i32, args: &[&str]) -> String {
    let o = phalanx(args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{args:?}\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    stderr(&o)
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn secret_of(path: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["secret_key"].as_str().unwrap().to_owned()
}

#[test]
fn keys_generate_show_and_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alice.json");
    let out = ok(&["keys", "generate", "--output", p(&file)]);
    let key = read_key_file(&file, KeyKind::Account).expect("an account key file");
    let address = key.public().to_string();
    assert!(out.contains(&format!("address:    {address}")), "{out}");
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o600);
    let secret = secret_of(&file);
    assert!(!out.contains(&secret), "generate never prints the secret");

    let shown = ok(&["keys", "show", "--key", p(&file)]);
    assert!(
        shown.contains(&address) && shown.contains("account"),
        "{shown}"
    );
    assert!(!shown.contains(&secret), "show never prints the secret");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["keys", "show", "--key", p(&file), "--json"])).unwrap();
    assert_eq!(json["address"], address.as_str());
    assert!(!json.to_string().contains(&secret));

    let before = std::fs::read_to_string(&file).unwrap();
    let err = fails(1, &["keys", "generate", "--output", p(&file)]);
    assert!(
        err.contains("already exists") && err.contains("refusing to overwrite"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        before,
        "the old key is kept"
    );

    let err = fails(
        1,
        &["keys", "show", "--key", p(&file), "--kind", "validator"],
    );
    assert!(
        err.contains("holds a account key, but a validator key is needed"),
        "{err}"
    );
    let err = fails(
        1,
        &["keys", "show", "--key", p(&dir.path().join("missing.json"))],
    );
    assert!(
        err.contains("does not exist") && err.contains("phalanx keys generate"),
        "{err}"
    );
    std::fs::write(dir.path().join("junk.json"), "{not json").unwrap();
    let err = fails(
        1,
        &["keys", "show", "--key", p(&dir.path().join("junk.json"))],
    );
    assert!(err.contains("malformed"), "{err}");
}

#[test]
fn node_and_validator_keys() {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node_key.json");
    let out = ok(&["keys", "generate", "--output", p(&node), "--kind", "node"]);
    assert!(
        out.contains("peer id:    12D3KooW"),
        "a node key shows its libp2p peer id: {out}"
    );
    read_key_file(&node, KeyKind::Node).unwrap();
    let shown = ok(&["keys", "show", "--key", p(&node)]);
    assert!(
        shown.contains("kind:       node") && shown.contains("12D3KooW"),
        "{shown}"
    );

    let validator = dir.path().join("v.json");
    ok(&[
        "keys",
        "generate",
        "--output",
        p(&validator),
        "--kind",
        "validator",
    ]);
    read_key_file(&validator, KeyKind::Validator).unwrap();
    fails(
        2,
        &[
            "keys",
            "generate",
            "--output",
            p(&dir.path().join("x.json")),
            "--kind",
            "wizard",
        ],
    );
}

#[test]
fn init_writes_keys_and_config_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("alpha");
    let out = ok(&["init", "--home", p(&home)]);
    let config = home.join("config");
    for f in ["config.toml", "node_key.json", "validator_key.json"] {
        assert!(config.join(f).is_file(), "{f} written");
    }
    assert!(
        !config.join("genesis.json").exists(),
        "no one-validator genesis"
    );
    assert!(
        out.contains("at least 4 validators") && out.contains("phalanx testnet init"),
        "{out}"
    );
    let toml = std::fs::read_to_string(config.join("config.toml")).unwrap();
    assert!(
        toml.contains("moniker = \"alpha\""),
        "moniker defaults to the directory name: {toml}"
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&config.join("node_key.json")), 0o600);
        assert_eq!(mode(&config.join("validator_key.json")), 0o600);
    }
    let validator = read_key_file(&config.join("validator_key.json"), KeyKind::Validator).unwrap();
    assert!(
        out.contains(&validator.public().to_string()),
        "prints the genesis entry: {out}"
    );

    let keys_before = std::fs::read_to_string(config.join("validator_key.json")).unwrap();
    let again = ok(&["init", "--home", p(&home), "--moniker", "beta"]);
    assert!(
        again.contains("kept") && again.contains("never overwritten"),
        "{again}"
    );
    assert_eq!(
        std::fs::read_to_string(config.join("validator_key.json")).unwrap(),
        keys_before
    );
    assert_eq!(
        std::fs::read_to_string(config.join("config.toml")).unwrap(),
        toml,
        "config kept"
    );

    // A genesis that does not list this validator is refused, with the entry to add.
    let net = dir.path().join("net");
    ok(&["testnet", "init", "--validators", "4", "--output", p(&net)]);
    let err = fails(
        1,
        &[
            "init",
            "--home",
            p(&home),
            "--genesis",
            p(&net.join("genesis.json")),
        ],
    );
    assert!(
        err.contains("does not list this node's validator key"),
        "{err}"
    );
    assert!(!config.join("genesis.json").exists());
}

#[test]
fn init_accepts_a_genesis_listing_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    ok(&[
        "testnet",
        "init",
        "--validators",
        "4",
        "--output",
        p(&net),
        "--chain-id",
        "alpha-1",
    ]);
    // Re-running init on a testnet home keeps everything and confirms membership.
    let node2 = net.join("node2");
    let out = ok(&["init", "--home", p(&node2), "--chain-id", "alpha-1"]);
    assert!(out.contains("member  validator 2"), "{out}");
    let err = fails(1, &["init", "--home", p(&node2), "--chain-id", "beta-1"]);
    assert!(
        err.contains("is for chain \"alpha-1\", not \"beta-1\""),
        "{err}"
    );

    // A fresh home whose keys are copied in, then given the shared genesis.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir_all(fresh.join("config")).unwrap();
    for f in ["node_key.json", "validator_key.json"] {
        std::fs::copy(
            net.join("node3/config").join(f),
            fresh.join("config").join(f),
        )
        .unwrap();
    }
    let out = ok(&[
        "init",
        "--home",
        p(&fresh),
        "--genesis",
        p(&net.join("genesis.json")),
    ]);
    assert!(out.contains("member  validator 3"), "{out}");
    assert_eq!(
        Genesis::load(&fresh.join("config/genesis.json")).unwrap(),
        Genesis::load(&net.join("genesis.json")).unwrap()
    );
}

#[test]
fn testnet_init_writes_homes_genesis_and_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("t");
    let out = ok(&[
        "testnet",
        "init",
        "--validators",
        "5",
        "--output",
        p(&out_dir),
        "--base-port",
        "27000",
        "--accounts",
        "3",
        "--balance",
        "777",
    ]);
    assert!(out.contains("http://127.0.0.1:27100"), "{out}");
    let genesis = Genesis::load(&out_dir.join("genesis.json")).expect("a valid genesis");
    assert_eq!(genesis.chain_id, "phalanx-testnet");
    assert_eq!(genesis.validators.len(), 5);
    for (i, v) in genesis.validators.iter().enumerate() {
        let home = out_dir.join(format!("node{i}"));
        let config = home.join("config");
        assert_eq!(
            Genesis::load(&config.join("genesis.json")).unwrap(),
            genesis,
            "every home has the same genesis"
        );
        let vk = read_key_file(&config.join("validator_key.json"), KeyKind::Validator).unwrap();
        let nk = read_key_file(&config.join("node_key.json"), KeyKind::Node).unwrap();
        assert_eq!((v.public_key, v.node_key), (vk.public(), nk.public()));
        assert_eq!(v.name, format!("node{i}"));
        assert_eq!(v.p2p_address, format!("/ip4/127.0.0.1/tcp/{}", 27000 + i));
        assert_eq!(v.api_address, format!("127.0.0.1:{}", 27100 + i));
        let toml = std::fs::read_to_string(config.join("config.toml")).unwrap();
        assert!(
            toml.contains(&format!("listen = \"{}\"", v.p2p_address)),
            "{toml}"
        );
        assert!(
            toml.contains(&format!("listen = \"{}\"", v.api_address)),
            "{toml}"
        );
    }
    assert_eq!(genesis.accounts.len(), 3);
    for (j, a) in genesis.accounts.iter().enumerate() {
        let key = read_key_file(
            &out_dir.join(format!("accounts/account{j}.json")),
            KeyKind::Account,
        )
        .unwrap();
        assert_eq!((a.address.0, a.balance), (key.public(), 777));
    }

    let err = fails(
        1,
        &[
            "testnet",
            "init",
            "--validators",
            "4",
            "--output",
            p(&out_dir),
        ],
    );
    assert!(err.contains("is not empty"), "{err}");

    let default_ports = dir.path().join("d");
    let out = ok(&["testnet", "init", "--output", p(&default_ports)]);
    assert!(
        out.contains("http://127.0.0.1:26100"),
        "node0's API is where --node points by default: {out}"
    );
}

#[test]
fn testnet_init_refuses_too_few_validators() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("t");
    let err = fails(
        1,
        &[
            "testnet",
            "init",
            "--validators",
            "3",
            "--output",
            p(&out_dir),
        ],
    );
    assert!(err.contains("PBFT needs at least 4 validators"), "{err}");
    assert!(!out_dir.exists(), "nothing written");
}

/// Every `--consensus` flag takes the engines of the registry, and an
/// unknown one is a usage error that lists them.
#[test]
fn an_unknown_engine_is_refused_with_the_engines_this_build_runs() {
    for args in [
        &["testnet", "init", "--consensus", "raft", "--output", "x"][..],
        &["sim", "--consensus", "raft", "--seeds", "1"][..],
        &["bench", "--consensus", "raft"][..],
    ] {
        let err = fails(2, args);
        assert!(
            err.contains("unknown consensus engine \"raft\"") && err.contains("pbft, cft"),
            "{args:?}: {err}"
        );
    }
    // A known one is taken: the CFT baseline, one crash tolerated.
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("t");
    let out = ok(&[
        "testnet",
        "init",
        "--consensus",
        "cft",
        "--validators",
        "3",
        "--output",
        p(&out_dir),
    ]);
    assert!(out.contains("CFT, tolerates f = 1 crashed"), "{out}");
    let genesis = std::fs::read_to_string(out_dir.join("node0/config/genesis.json")).unwrap();
    assert!(genesis.contains("\"engine\": \"cft\""), "{genesis}");
}

#[test]
fn testnet_init_with_hosts_puts_each_node_on_its_machine() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("hosts");
    let out = ok(&[
        "testnet",
        "init",
        "--validators",
        "4",
        "--output",
        p(&out_dir),
        "--hosts",
        "192.0.2.10+",
    ]);
    for i in 0..4 {
        let host = format!("192.0.2.{}", 10 + i);
        assert!(
            out.contains(&format!(
                "node{i}  home {}/node{i}  p2p /ip4/{host}/tcp/26000  api http://{host}:26100",
                out_dir.display()
            )),
            "{out}"
        );
        let toml =
            std::fs::read_to_string(out_dir.join(format!("node{i}/config/config.toml"))).unwrap();
        assert!(
            toml.contains(&format!("listen = \"/ip4/{host}/tcp/26000\"")),
            "{toml}"
        );
        assert!(
            toml.contains(&format!("listen = \"{host}:26100\"")),
            "{toml}"
        );
    }
    assert!(out.contains("Copy each home to its host"), "{out}");

    let mismatch = dir.path().join("mismatch");
    let err = fails(
        1,
        &[
            "testnet",
            "init",
            "--validators",
            "4",
            "--output",
            p(&mismatch),
            "--hosts",
            "192.0.2.1,192.0.2.2",
        ],
    );
    assert!(
        err.contains("--hosts lists 2 addresses but --validators is 4"),
        "{err}"
    );
    assert!(!mismatch.exists(), "nothing written");
    let err = fails(
        1,
        &[
            "testnet",
            "init",
            "--output",
            p(&mismatch),
            "--hosts",
            "a.example,b.example,c.example,d.example",
        ],
    );
    assert!(err.contains("\"a.example\" is not an IP address"), "{err}");
}

#[test]
fn usage_errors_exit_with_2() {
    fails(
        2,
        &["testnet", "init", "--validators", "many", "--output", "x"],
    );
    fails(2, &["tx", "transfer", "--amount", "1"]);
    // An unknown account name is a runtime error that says where it looked.
    let err = fails(
        1,
        &[
            "tx",
            "transfer",
            "--key",
            "k.json",
            "--to",
            "not-an-address",
            "--amount",
            "1",
        ],
    );
    assert!(err.contains("key file k.json does not exist"), "{err}");
    fails(
        2,
        &[
            "tx",
            "transfer",
            "--key",
            "k.json",
            "--to",
            &"ab".repeat(32),
            "--amount",
            "1",
            "--nonce",
            "soon",
        ],
    );
    fails(
        2,
        &[
            "tx",
            "transfer",
            "--key",
            "k.json",
            "--to",
            &"ab".repeat(32),
            "--amount",
            "1",
            "--count",
            "0",
        ],
    );
    fails(2, &["query", "block"]);
    fails(2, &["query", "tx", "1234"]);
    fails(2, &["query", "nothing"]);
    fails(2, &["keys"]);
}

#[test]
fn help_has_examples() {
    for cmd in [
        &["keys", "generate"][..],
        &["keys", "show"],
        &["init"],
        &["testnet", "init"],
        &["tx", "transfer"],
        &["tx", "wait"],
        &["keys", "list"],
        &["completions"],
        &["query", "status"],
        &["query", "block"],
        &["query", "tx"],
        &["query", "account"],
        &["query", "validators"],
        &["query", "evidence"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = ok(&args);
        assert!(
            out.contains("Examples:"),
            "{cmd:?} --help shows examples:\n{out}"
        );
    }
    let init = ok(&["init", "--help"]);
    assert!(
        init.contains("n >= 4"),
        "init --help explains why it writes no genesis: {init}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn without_a_node_errors_say_what_to_do() {
    let url = format!("http://127.0.0.1:{}", free_port());
    for args in [
        &["query", "status", "--node", url.as_str()][..],
        &["query", "block", "latest", "--node", url.as_str(), "--json"],
        &["query", "account", &"ab".repeat(32), "--node", url.as_str()],
    ] {
        let err = fails(1, args);
        assert!(
            err.contains(&format!("cannot reach node at {url}")),
            "{err}"
        );
        assert!(err.contains("testnet/local.sh up"), "{err}");
    }

    // PHALANX_NODE is the default --node.
    let o = Command::new(env!("CARGO_BIN_EXE_phalanx"))
        .args(["query", "validators"])
        .env("PHALANX_NODE", &url)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("cannot reach node at {url}")),
        "{}",
        stderr(&o)
    );

    let err = fails(1, &["query", "status", "--node", "https://127.0.0.1:1"]);
    assert!(err.contains("plain http"), "{err}");
    let err = fails(1, &["query", "block", "../x", "--node", url.as_str()]);
    assert!(err.contains("not a block height"), "{err}");

    // The key file is read before the node is asked anything.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nobody.json");
    let to = "ab".repeat(32);
    let err = fails(
        1,
        &[
            "tx",
            "transfer",
            "--node",
            url.as_str(),
            "--key",
            p(&missing),
            "--to",
            &to,
            "--amount",
            "1",
        ],
    );
    assert!(
        err.contains("does not exist") && err.contains("phalanx keys generate"),
        "{err}"
    );

    let key = dir.path().join("k.json");
    ok(&["keys", "generate", "--output", p(&key)]);
    let err = fails(
        1,
        &[
            "tx",
            "transfer",
            "--node",
            url.as_str(),
            "--key",
            p(&key),
            "--to",
            &to,
            "--amount",
            "1",
        ],
    );
    assert!(err.contains("cannot reach node"), "{err}");
}

#[test]
fn version_names_the_commit() {
    let out = ok(&["--version"]);
    // "phalanx 0.1.0 (abc123def456)" or "(unknown)" outside a git checkout.
    let rest = out
        .trim()
        .strip_prefix(&format!("phalanx {} (", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{out}"));
    let commit = rest.strip_suffix(')').unwrap_or_else(|| panic!("{out}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{out}"
    );
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef phalanx"),
        ("fish", "complete -c phalanx"),
    ] {
        let out = ok(&["completions", shell]);
        assert!(out.contains(marker), "{shell}: {out}");
        // Subcommands and their flags are in it.
        assert!(
            out.contains("transfer") && out.contains("keys-dir"),
            "{shell}"
        );
    }
    fails(2, &["completions", "cmd.exe"]);
}

#[test]
fn keys_list_and_accounts_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    ok(&[
        "testnet",
        "init",
        "--validators",
        "4",
        "--output",
        p(&net),
        "--accounts",
        "3",
    ]);
    let accounts = net.join("accounts");
    let listed: serde_json::Value = serde_json::from_str(&ok(&[
        "keys",
        "list",
        p(&accounts),
        "--genesis",
        p(&net.join("genesis.json")),
        "--json",
    ]))
    .unwrap();
    let rows = listed.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["account0", "account1", "account2"]);
    let genesis = Genesis::load(&net.join("genesis.json")).unwrap();
    for row in rows {
        let address = row["address"].as_str().unwrap();
        let funded = genesis
            .accounts
            .iter()
            .find(|a| a.address.to_string() == address)
            .expect("a prefunded account");
        assert_eq!(row["balance"].as_u64(), Some(funded.balance));
    }
    // `keys show` takes the name with --keys-dir, and prints the same address.
    let shown = ok(&[
        "keys",
        "show",
        "--key",
        "account2",
        "--keys-dir",
        p(&accounts),
    ]);
    assert!(
        shown.contains(rows[2]["address"].as_str().unwrap()),
        "{shown}"
    );
    // The table has a header and one line per account.
    let table = ok(&["keys", "list", "--keys-dir", p(&accounts)]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("account1"), "{table}");
    // An unknown name says where it looked and what to do.
    let err = fails(
        1,
        &[
            "keys",
            "show",
            "--key",
            "account9",
            "--keys-dir",
            p(&accounts),
        ],
    );
    assert!(
        err.contains("account9") && err.contains("phalanx keys list"),
        "{err}"
    );
}

#[test]
fn init_serves_the_api_where_the_cli_looks() {
    let dir = tempfile::tempdir().unwrap();
    ok(&["init", "--home", p(dir.path())]);
    let config = std::fs::read_to_string(dir.path().join("config/config.toml")).unwrap();
    assert!(config.contains("\"127.0.0.1:26100\""), "{config}");
}
