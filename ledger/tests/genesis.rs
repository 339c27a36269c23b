//! Loading genesis.json: a good file round-trips, and every kind of bad file
//! is refused with an error that names the field (or the file) at fault.

mod common;

use phalanx_crypto::Keypair;
use phalanx_ledger::{Genesis, GenesisError};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The fixture genesis as JSON.
fn good() -> Value {
    serde_json::from_str(&common::genesis().to_json()).expect("fixture JSON")
}

fn write(dir: &Path, value: &Value) -> PathBuf {
    let path = dir.join("genesis.json");
    std::fs::write(&path, serde_json::to_string_pretty(value).unwrap())
        .expect("write genesis.json");
    path
}

/// Loads `value` from a file, expecting an error.
fn load_err(value: &Value) -> (GenesisError, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), value);
    match Genesis::load(&path) {
        Ok(g) => panic!("accepted a bad genesis: {g:?}"),
        Err(e) => (e, path),
    }
}

/// Expects a validation error for exactly `field`.
fn assert_invalid(value: &Value, field: &str) -> String {
    let (err, _) = load_err(value);
    let message = err.to_string();
    match err {
        GenesisError::Invalid { field: f, .. } => assert_eq!(f, field, "{message}"),
        other => panic!("expected an invalid {field}, got {other:?}"),
    }
    assert!(
        message.contains(field),
        "message does not name {field}: {message}"
    );
    message
}

/// Expects a parse error naming `needle` (a field) and the file.
fn assert_parse_error(value: &Value, needle: &str) -> String {
    let (err, path) = load_err(value);
    let message = err.to_string();
    assert!(
        matches!(err, GenesisError::Parse { .. }),
        "expected a parse error, got {err:?}"
    );
    assert!(
        message.contains(needle),
        "message does not name {needle}: {message}"
    );
    assert!(
        message.contains(&path.display().to_string()),
        "message does not name the file: {message}"
    );
    message
}

#[test]
fn a_good_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let genesis = common::genesis();
    let path = dir.path().join("genesis.json");
    std::fs::write(&path, genesis.to_json()).unwrap();
    let loaded = Genesis::load(&path).expect("load");
    assert_eq!(loaded, genesis);
    assert_eq!(loaded.to_json(), genesis.to_json());
    assert_eq!(loaded.block().hash(), genesis.block().hash());
    assert_eq!(loaded.state(), genesis.state());
}

#[test]
fn omitted_optional_fields_take_their_defaults() {
    let mut v = good();
    let obj = v.as_object_mut().unwrap();
    obj.remove("genesis_time_ms");
    obj.remove("accounts");
    obj.remove("consensus");
    v["validators"][0].as_object_mut().unwrap().remove("stake");
    v["validators"][0]
        .as_object_mut()
        .unwrap()
        .remove("api_address");
    let dir = tempfile::tempdir().unwrap();
    let g = Genesis::load(&write(dir.path(), &v)).expect("load");
    assert_eq!(g.genesis_time_ms, 0);
    assert!(g.accounts.is_empty());
    assert_eq!(g.consensus, Default::default());
    assert_eq!(g.validators[0].stake, 1);
    assert_eq!(g.validators[0].api_address, "");
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config").join("genesis.json");
    let err = Genesis::load(&path).unwrap_err();
    assert!(matches!(err, GenesisError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn not_json_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("genesis.json");
    std::fs::write(&path, "{ not json").unwrap();
    let err = Genesis::load(&path).unwrap_err();
    assert!(matches!(err, GenesisError::Parse { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn missing_required_fields_are_named() {
    for field in ["chain_id", "validators"] {
        let mut v = good();
        v.as_object_mut().unwrap().remove(field);
        assert_parse_error(&v, field);
    }
    for field in ["name", "public_key", "node_key", "p2p_address"] {
        let mut v = good();
        v["validators"][1].as_object_mut().unwrap().remove(field);
        assert_parse_error(&v, field);
    }
    let mut v = good();
    v["accounts"][0].as_object_mut().unwrap().remove("balance");
    assert_parse_error(&v, "balance");
}

#[test]
fn unknown_fields_are_named() {
    let mut v = good();
    v["chain_idd"] = json!("typo");
    assert_parse_error(&v, "chain_idd");
    let mut v = good();
    v["consensus"]["checkpoint_intervall"] = json!(3);
    assert_parse_error(&v, "checkpoint_intervall");
}

/// A key that is not 64 hex digits.
fn bad_hex_cases() -> [(String, &'static str); 3] {
    [
        ("zz".repeat(32), "not hex"),
        ("ab".repeat(31), "too short"),
        ("ab".repeat(33), "too long"),
    ]
}

#[test]
fn bad_hex_keys_are_refused_with_file_and_position() {
    for (bad, why) in bad_hex_cases() {
        let mut v = good();
        v["validators"][2]["public_key"] = json!(bad);
        let message = assert_parse_error(&v, "hex");
        assert!(
            message.contains("line") && message.contains("column"),
            "{why}: {message}"
        );
    }
    let mut v = good();
    v["accounts"][1]["address"] = json!("0xnothex");
    assert_parse_error(&v, "hex");
}

/// serde_json's message for an error raised inside a value (here: the hex
/// parser of `PublicKey`) gives line and column but not the field's path.
/// Fix in `Genesis::from_json`: deserialize through `serde_path_to_error`
/// (already in Cargo.lock via axum) and put `e.path()` in the message.
#[test]
#[ignore = "genesis.rs does not yet name the field of a bad hex key (see the doc comment)"]
fn bad_hex_keys_are_named() {
    for (bad, why) in bad_hex_cases() {
        let mut v = good();
        v["validators"][2]["public_key"] = json!(bad);
        let message = assert_parse_error(&v, "public_key");
        assert!(message.contains("validators[2]"), "{why}: {message}");
    }
    let mut v = good();
    v["accounts"][1]["address"] = json!("0xnothex");
    assert_parse_error(&v, "accounts[1].address");
}

#[test]
fn keys_that_are_not_curve_points_are_named() {
    // Valid hex, but not a canonical point encoding (y = p, the field prime).
    let mut not_a_point = [0xffu8; 32];
    not_a_point[0] = 0xed;
    not_a_point[31] = 0x7f;
    let mut v = good();
    v["validators"][2]["public_key"] = json!(hex_string(&not_a_point));
    assert_invalid(&v, "validators[2].public_key");
    let mut v = good();
    v["validators"][0]["node_key"] = json!(hex_string(&not_a_point));
    assert_invalid(&v, "validators[0].node_key");
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn duplicate_validator_keys_are_named() {
    let mut v = good();
    v["validators"][3]["public_key"] = v["validators"][1]["public_key"].clone();
    let message = assert_invalid(&v, "validators[3].public_key");
    assert!(message.contains("validators[1]"), "{message}");
    let mut v = good();
    v["validators"][2]["node_key"] = v["validators"][0]["node_key"].clone();
    assert_invalid(&v, "validators[2].node_key");
}

#[test]
fn zero_stake_is_named() {
    let mut v = good();
    v["validators"][1]["stake"] = json!(0);
    assert_invalid(&v, "validators[1].stake");
}

#[test]
fn supply_overflow_is_named() {
    let mut v = good();
    // 1_000 + 500 + (2^64-1 - 2_000) fits; adding 1_000 more does not.
    v["accounts"][2]["balance"] = json!(u64::MAX - 2_000);
    v["accounts"][3]["balance"] = json!(1_000);
    let message = assert_invalid(&v, "accounts[3].balance");
    assert!(message.contains("supply"), "{message}");
    // Exactly u64::MAX in all is allowed.
    let mut v = good();
    let others: u64 = 1_000 + 500 + 50;
    v["accounts"][3]["balance"] = json!(u64::MAX - others);
    let dir = tempfile::tempdir().unwrap();
    let g = Genesis::load(&write(dir.path(), &v)).expect("a supply of exactly 2^64-1 is allowed");
    assert_eq!(g.state().total_supply(), u64::MAX as u128);
}

#[test]
fn duplicate_accounts_are_named() {
    let mut v = good();
    v["accounts"][2]["address"] = v["accounts"][0]["address"].clone();
    assert_invalid(&v, "accounts[2].address");
}

#[test]
fn bad_chain_ids_are_named() {
    for bad in ["", "has space", "slash/ed", "ünïcode", &"x".repeat(65)] {
        let mut v = good();
        v["chain_id"] = json!(bad);
        assert_invalid(&v, "chain_id");
    }
    let mut v = good();
    v["chain_id"] = json!("x".repeat(64));
    let dir = tempfile::tempdir().unwrap();
    Genesis::load(&write(dir.path(), &v)).expect("64 characters are allowed");
}

#[test]
fn no_validators_is_refused() {
    let mut v = good();
    v["validators"] = json!([]);
    assert_invalid(&v, "validators");
}

#[test]
fn bad_consensus_params_are_named() {
    let mut v = good();
    v["consensus"]["checkpoint_interval"] = json!(32);
    v["consensus"]["watermark_window"] = json!(31);
    let message = assert_invalid(&v, "consensus.watermark_window");
    assert!(message.contains("checkpoint_interval"), "{message}");
    // Equal is enough.
    let mut v = good();
    v["consensus"]["checkpoint_interval"] = json!(32);
    v["consensus"]["watermark_window"] = json!(32);
    let dir = tempfile::tempdir().unwrap();
    Genesis::load(&write(dir.path(), &v)).expect("watermark = checkpoint interval is allowed");

    for field in [
        "max_block_txs",
        "checkpoint_interval",
        "view_change_timeout_ms",
    ] {
        let mut v = good();
        v["consensus"][field] = json!(0);
        assert_invalid(&v, &format!("consensus.{field}"));
    }
    let mut v = good();
    v["consensus"]["engine"] = json!("raft");
    assert_parse_error(&v, "raft");
}

#[test]
fn bad_p2p_address_is_named() {
    let mut v = good();
    v["validators"][0]["p2p_address"] = json!("127.0.0.1:26000");
    assert_invalid(&v, "validators[0].p2p_address");
}

#[test]
fn a_key_file_public_key_is_accepted() {
    // Keys written by tools (hex of a real key) load.
    let mut v = good();
    let key = Keypair::from_label("fresh validator").public();
    v["validators"][0]["public_key"] = json!(key.to_string());
    let dir = tempfile::tempdir().unwrap();
    let g = Genesis::load(&write(dir.path(), &v)).expect("load");
    assert_eq!(g.validators[0].public_key, key);
}

/// Issue 18, finding 4: `min_fee` is new. A genesis written before it
/// (with a consensus section, as every `phalanx testnet init` wrote) keeps
/// its chain's rules: no minimum. A new genesis gets a minimum fee of 1.
#[test]
fn a_genesis_from_before_min_fee_has_no_minimum() {
    let mut v = good();
    v["consensus"].as_object_mut().unwrap().remove("min_fee");
    let dir = tempfile::tempdir().unwrap();
    let g = Genesis::load(&write(dir.path(), &v)).expect("load");
    assert_eq!(g.consensus.min_fee, 0);
    assert_eq!(phalanx_ledger::ConsensusParams::default().min_fee, 1);
    let mut v = good();
    v["consensus"]["min_fee"] = json!(5);
    let g = Genesis::load(&write(dir.path(), &v)).expect("load");
    assert_eq!(g.consensus.min_fee, 5);
}
