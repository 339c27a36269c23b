//! `phalanx tx`: sign transactions with an account key file and submit them
//! to a node's API.

use crate::api::types::{AccountResponse, SubmitResponse};
use crate::client::{Client, ClientError, NodeArg};
use crate::shared::NodeStatus;
use anyhow::Context as _;
use phalanx_crypto::{read_key_file, KeyKind};
use phalanx_ledger::{Address, Receipt, Transaction, TxStatus};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a `?wait=true` request may take; the node answers earlier
/// (after its `api.wait_timeout_ms`) with the hash and `committed: false`.
const WAIT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// A plain submission should be answered at once.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// `--nonce auto|N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceArg {
    /// The account's next nonce, from the node.
    Auto,
    /// This nonce.
    Fixed(u64),
}

fn parse_nonce(s: &str) -> Result<NonceArg, String> {
    if s == "auto" {
        return Ok(NonceArg::Auto);
    }
    s.parse()
        .map(NonceArg::Fixed)
        .map_err(|_| format!("expected `auto` or a number, got {s:?}"))
}

/// `phalanx tx` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TxCommand {
    /// Sign a transfer with an account key file and submit it to a node.
    #[command(after_help = "\
Examples:
  phalanx tx transfer --key testnet-data/accounts/account0.json --to <ADDRESS> --amount 10 --wait
  phalanx tx transfer --node http://127.0.0.1:26101 --key alice.json --to <ADDRESS> --amount 5 --fee 1
  phalanx tx transfer --key alice.json --to <ADDRESS> --amount 1 --count 1000   # 1000 transfers, nonces n..n+999

The chain id comes from the node's /status unless --chain-id is given; --nonce auto asks the
node for the account's next committed nonce. Prints each transaction's hash; with --wait,
also its block height and result. Exit code 1 when a waited transaction failed or did not
commit in time (its hash is printed either way; follow it with `phalanx query tx HASH`).")]
    Transfer(TransferArgs),
}

/// `phalanx tx transfer` arguments.
#[derive(Debug, clap::Args)]
pub struct TransferArgs {
    /// The node to submit to.
    #[command(flatten)]
    pub node: NodeArg,
    /// The sender's account key file.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The recipient's address (64 hex characters).
    #[arg(long, value_name = "ADDRESS")]
    pub to: Address,
    /// Units to move.
    #[arg(long)]
    pub amount: u64,
    /// Units paid to the block's proposer.
    #[arg(long, default_value_t = 0)]
    pub fee: u64,
    /// The nonce: `auto` (the account's next nonce, from the node) or a number.
    #[arg(long, value_parser = parse_nonce, default_value = "auto", value_name = "auto|N")]
    pub nonce: NonceArg,
    /// Wait until each transaction is committed (up to the node's wait timeout).
    #[arg(long)]
    pub wait: bool,
    /// The chain id (default: the node's, from /status).
    #[arg(long, value_name = "ID")]
    pub chain_id: Option<String>,
    /// Send this many transfers, one after another, with consecutive nonces.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Print each answer as one line of JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `phalanx tx`.
pub fn run(cmd: &TxCommand) -> anyhow::Result<()> {
    match cmd {
        TxCommand::Transfer(args) => transfer(args),
    }
}

fn transfer(args: &TransferArgs) -> anyhow::Result<()> {
    let key = read_key_file(&args.key, KeyKind::Account)?;
    let from = Address(key.public());
    let client = Client::new(&args.node.node)?;
    let chain_id = match &args.chain_id {
        Some(id) => id.clone(),
        None => client.get::<NodeStatus>("/status")?.chain_id,
    };
    let first_nonce = match args.nonce {
        NonceArg::Fixed(n) => n,
        NonceArg::Auto => match client.get::<AccountResponse>(&format!("/accounts/{from}")) {
            Ok(account) => account.next_nonce,
            Err(e) if e.api_code() == Some("unknown_account") => anyhow::bail!(
                "account {from} (key {}) has no funds on chain {chain_id:?}: fund it with a transfer first \
                 (a testnet's prefunded keys are DIR/accounts/account<j>.json)",
                args.key.display()
            ),
            Err(e) => return Err(e.into()),
        },
    };
    let path = if args.wait { "/txs?wait=true" } else { "/txs" };
    let timeout = if args.wait {
        WAIT_REQUEST_TIMEOUT
    } else {
        SUBMIT_TIMEOUT
    };
    let started = Instant::now();
    let mut failures = Vec::new();
    for i in 0..args.count {
        let nonce = first_nonce.checked_add(i).context("nonce overflow")?;
        let tx = Transaction {
            chain_id: chain_id.clone(),
            from,
            to: args.to,
            amount: args.amount,
            nonce,
            fee: args.fee,
        }
        .sign(&key);
        let answer: SubmitResponse = client
            .post(path, &tx, timeout)
            .map_err(|e| submit_error(e, nonce, i))?;
        if args.json {
            println!("{}", serde_json::to_string(&answer)?);
        } else {
            println!("{}", describe(&answer, nonce, args.wait));
        }
        if args.wait {
            if let Some(problem) = wait_problem(&answer) {
                failures.push(problem);
            }
        }
    }
    if args.count > 1 && !args.json {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "sent {} transfers (nonces {first_nonce}..={}) in {secs:.2} s ({:.0} tx/s)",
            args.count,
            first_nonce + args.count - 1,
            args.count as f64 / secs.max(1e-9)
        );
    }
    match failures.len() {
        0 => Ok(()),
        1 => anyhow::bail!("{}", failures[0]),
        n => anyhow::bail!(
            "{n} of {} transactions did not succeed; first: {}",
            args.count,
            failures[0]
        ),
    }
}

/// Adds what to do to a refused submission.
fn submit_error(e: ClientError, nonce: u64, sent: u64) -> anyhow::Error {
    let hint = match e.api_code() {
        Some("nonce_used" | "nonce_taken") => {
            " (use --nonce auto, or the next nonce the message names)"
        }
        Some("wrong_chain_id") => " (drop --chain-id to use the node's chain)",
        Some("mempool_full") => " (the node is overloaded; retry later)",
        _ => "",
    };
    let progress = if sent > 0 {
        format!(" after {sent} transfers were accepted")
    } else {
        String::new()
    };
    anyhow::anyhow!("transaction with nonce {nonce} refused{progress}: {e}{hint}")
}

fn describe(answer: &SubmitResponse, nonce: u64, waited: bool) -> String {
    let hash = answer.tx_hash;
    match (&answer.height, &answer.receipt) {
        (Some(height), Some(receipt)) => format!(
            "{hash}  nonce {nonce}  committed at height {height}: {}",
            outcome(receipt)
        ),
        _ if waited => format!("{hash}  nonce {nonce}  pending: not committed yet"),
        _ => format!("{hash}  nonce {nonce}  submitted"),
    }
}

fn outcome(receipt: &Receipt) -> String {
    match &receipt.status {
        TxStatus::Success => "success".into(),
        TxStatus::Failed(reason) => format!("failed ({reason})"),
    }
}

/// Why a waited-for transaction is not a success, if it is not.
fn wait_problem(answer: &SubmitResponse) -> Option<String> {
    let hash = answer.tx_hash;
    match &answer.receipt {
        Some(r) if r.is_success() => None,
        Some(r) => Some(format!("transaction {hash} was included but failed: {}", outcome(r))),
        None => Some(format!(
            "transaction {hash} was not committed within the node's wait timeout; it may still commit: \
             check with `phalanx query tx {hash}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_argument() {
        assert_eq!(parse_nonce("auto"), Ok(NonceArg::Auto));
        assert_eq!(parse_nonce("7"), Ok(NonceArg::Fixed(7)));
        assert!(parse_nonce("-1").is_err());
    }
}
