//! `phalanx tx`: sign transactions with an account key file and submit them
//! to a node's API.

use super::names::KeysDirArg;
use crate::api::types::NodeStatus;
use crate::api::types::{AccountResponse, Finality, SubmitResponse, TxResponse, TxState};
use crate::client::{Client, ClientError, NodeArg};
use anyhow::Context as _;
use phalanx_crypto::Hash;
use phalanx_crypto::{read_key_file, KeyKind};
use phalanx_ledger::{Address, Receipt, Transaction, TxStatus};
use std::time::{Duration, Instant};

/// How long a `?wait=true` request may take; the node answers earlier
/// (after its `api.wait_timeout_ms`, 10 s by default) with the hash and
/// `committed: false`, and the CLI then polls `/txs/{hash}` until `--timeout`.
const WAIT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// A plain submission should be answered at once.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a wait asks the node about a transaction.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// `--timeout` when not given (seconds): long enough for a view change or two.
const DEFAULT_WAIT_SECS: &str = "60";

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("expected a number of seconds, got {s:?}"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("expected 0 < seconds ≤ 86400, got {s}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

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
    /// Sign a transfer with an account key and submit it to a node.
    #[command(after_help = "\
Examples:
  phalanx tx transfer --key account0 --to account1 --amount 10 --wait     # testnet accounts by name
  phalanx tx transfer --node http://127.0.0.1:26101 --key alice.json --to <ADDRESS> --amount 5 --fee 1
  phalanx tx transfer --key account0 --to account1 --amount 1 --count 1000   # 1000 transfers, nonces n..n+999

--key and --to take a key file, an account name (`phalanx keys list`; looked up in --keys-dir,
./testnet-data/accounts and ~/.phalanx/keys) or, for --to, a 64-hex address.
The chain id comes from the node's /status unless --chain-id is given; --nonce auto asks the
node for the account's next committed nonce. Prints each transaction's hash before sending it,
so a lost connection never loses it; with --wait, then its block height and result. Exit code 1
when a waited transaction failed or did not commit within --timeout (follow it with
`phalanx tx wait HASH` or `phalanx query tx HASH`).")]
    Transfer(TransferArgs),
    /// Wait until a transaction sent earlier is committed; print its block and result.
    #[command(after_help = "\
Examples:
  phalanx tx wait <TX_HASH>
  phalanx tx wait <TX_HASH> --timeout 300 --node http://127.0.0.1:26102

Exit code 0 when the transaction committed and succeeded; 1 when it failed, or did not
commit within --timeout (it may still commit later).")]
    Wait(WaitArgs),
}

/// `phalanx tx transfer` arguments.
#[derive(Debug, clap::Args)]
pub struct TransferArgs {
    /// The node to submit to.
    #[command(flatten)]
    pub node: NodeArg,
    /// The sender: an account key file or an account name (e.g. `account0`).
    #[arg(long, value_name = "FILE|NAME")]
    pub key: String,
    /// The recipient: a 64-hex address, an account name or an account key file.
    #[arg(long, value_name = "ADDRESS|NAME|FILE")]
    pub to: String,
    /// Where account names are looked up.
    #[command(flatten)]
    pub keys: KeysDirArg,
    /// Units to move.
    #[arg(long)]
    pub amount: u64,
    /// Units paid to the block's proposer; at least the chain's minimum
    /// fee (genesis `min_fee`, 1 in a genesis `phalanx testnet init` writes).
    #[arg(long, default_value_t = 1)]
    pub fee: u64,
    /// The nonce: `auto` (the account's next nonce, from the node) or a number.
    #[arg(long, value_parser = parse_nonce, default_value = "auto", value_name = "auto|N")]
    pub nonce: NonceArg,
    /// Wait for each transaction (up to --timeout): `final` (the default)
    /// until its block is final — under PBFT at once, after a fallback
    /// once PBFT finalized it, under PoW and PoS (which never finalize)
    /// until it is in a block; `tentative` until it is in a block.
    #[arg(long, num_args = 0..=1, default_missing_value = "final", value_name = "final|tentative", value_parser = parse_wait)]
    pub wait: Option<WaitFor>,
    /// Seconds to wait for each transaction with --wait.
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout, default_value = DEFAULT_WAIT_SECS, requires = "wait")]
    pub timeout: Duration,
    /// The chain id (default: the node's, from /status).
    #[arg(long, value_name = "ID")]
    pub chain_id: Option<String>,
    /// Send this many transfers, one after another, with consecutive nonces.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Print each answer as one line of JSON (hashes before sending go to stderr).
    #[arg(long)]
    pub json: bool,
}

/// What `--wait` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitFor {
    /// The transaction's block is final.
    Final,
    /// The transaction is in a block (final or tentative).
    Tentative,
}

fn parse_wait(s: &str) -> Result<WaitFor, String> {
    match s {
        "final" => Ok(WaitFor::Final),
        "tentative" => Ok(WaitFor::Tentative),
        other => Err(format!(
            "--wait {other:?}: wait for `final` (the default) or `tentative`"
        )),
    }
}

/// `phalanx tx wait` arguments.
#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// The transaction hash (printed by `phalanx tx transfer`).
    #[arg(value_name = "HASH")]
    pub hash: Hash,
    /// The node to ask.
    #[command(flatten)]
    pub node: NodeArg,
    /// Seconds to wait before giving up.
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout, default_value = DEFAULT_WAIT_SECS)]
    pub timeout: Duration,
    /// What to wait for: `final` (its block is final; on PoW and PoS
    /// chains, which never finalize, in a block) or `tentative` (in a block).
    #[arg(long = "for", value_name = "final|tentative", value_parser = parse_wait, default_value = "final")]
    pub wait_for: WaitFor,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `phalanx tx`.
pub fn run(cmd: &TxCommand) -> anyhow::Result<()> {
    match cmd {
        TxCommand::Transfer(args) => transfer(args),
        TxCommand::Wait(args) => wait_command(args),
    }
}

fn transfer(args: &TransferArgs) -> anyhow::Result<()> {
    let key_file = args.keys.key_file(&args.key)?;
    let key = read_key_file(&key_file, KeyKind::Account)?;
    let from = Address(key.public());
    let to = args.keys.address(&args.to)?;
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
                key_file.display()
            ),
            Err(e) => return Err(e.into()),
        },
    };
    // Chains whose engine never finalizes (PoW, PoS alone): inclusion is
    // all there is to wait for.
    let wait = match args.wait {
        Some(WaitFor::Final) if !finalizes(&client)? => Some(WaitFor::Tentative),
        w => w,
    };
    let path = if wait.is_some() {
        "/txs?wait=true"
    } else {
        "/txs"
    };
    let timeout = if wait.is_some() {
        WAIT_REQUEST_TIMEOUT
    } else {
        SUBMIT_TIMEOUT
    };
    let started = Instant::now();
    let mut failures = Vec::new();
    for i in 0..args.count {
        let nonce = first_nonce.checked_add(i).context("nonce overflow")?;
        let started_tx = Instant::now();
        let tx = Transaction {
            chain_id: chain_id.clone(),
            from,
            to,
            amount: args.amount,
            nonce,
            fee: args.fee,
        }
        .sign(&key);
        // The hash first: if the connection drops or the answer times out,
        // the user can still follow the transaction.
        let hash = tx.hash();
        if args.json {
            eprintln!("{hash}  nonce {nonce}  sending");
        } else {
            println!("{hash}  nonce {nonce}  sending");
        }
        let mut answer: SubmitResponse = client
            .post(path, &tx, timeout)
            .map_err(|e| submit_error(e, nonce, i, hash))?;
        let mut finality = None;
        if let Some(w) = wait {
            // Until committed (final, for a final wait), and to learn its
            // finality; --timeout counts from the submission (the node's
            // own wait included).
            let deadline = started_tx + args.timeout;
            if let Some((a, f)) = wait_until(&client, hash, deadline, w)? {
                answer = a;
                finality = Some(f);
            }
        }
        if args.json {
            println!("{}", serde_json::to_string(&answer)?);
        } else {
            println!("{}", describe(&answer, nonce, wait.is_some(), finality));
        }
        if let Some(w) = wait {
            if let Some(problem) = wait_problem(&answer, w, finality) {
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
fn submit_error(e: ClientError, nonce: u64, sent: u64, hash: Hash) -> anyhow::Error {
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
    if matches!(e, ClientError::Api { .. }) {
        anyhow::anyhow!("transaction with nonce {nonce} refused{progress}: {e}{hint}")
    } else {
        // No answer: the node may have taken it before the connection broke.
        anyhow::anyhow!(
            "transaction {hash} (nonce {nonce}){progress}: no answer from the node: {e}. \
             It may still commit: check with `phalanx tx wait {hash}`"
        )
    }
}

/// Whether the node's engine finalizes blocks (every engine but PoW and
/// PoS alone).
fn finalizes(client: &Client) -> anyhow::Result<bool> {
    let status: crate::api::types::NodeStatus = client.get("/status")?;
    Ok(!matches!(status.consensus.as_str(), "pow" | "pos"))
}

/// A committed transaction's finality, and its confirmations if tentative.
type Seen = (Finality, Option<u64>);

/// " (final)", " (tentative, 3 confirmations)" or nothing.
fn finality_note(finality: Option<Seen>) -> String {
    match finality {
        Some((Finality::Final, _)) => " (final)".into(),
        Some((Finality::Tentative, Some(k))) => format!(
            " (tentative, {k} confirmation{})",
            if k == 1 { "" } else { "s" }
        ),
        Some((Finality::Tentative, None)) => " (tentative)".into(),
        Some((Finality::Discarded, _)) => " (discarded)".into(),
        None => String::new(),
    }
}

fn describe(answer: &SubmitResponse, nonce: u64, waited: bool, finality: Option<Seen>) -> String {
    let hash = answer.tx_hash;
    match (&answer.height, &answer.receipt) {
        (Some(height), Some(receipt)) => format!(
            "{hash}  nonce {nonce}  committed at height {height}{}: {}",
            finality_note(finality),
            outcome(receipt)
        ),
        _ if waited => format!("{hash}  nonce {nonce}  pending: not committed in time"),
        _ => format!("{hash}  nonce {nonce}  accepted"),
    }
}

fn outcome(receipt: &Receipt) -> String {
    match &receipt.status {
        TxStatus::Success => "success".into(),
        TxStatus::Failed(reason) => format!("failed ({reason})"),
    }
}

/// Why a waited-for transaction is not a success, if it is not.
fn wait_problem(answer: &SubmitResponse, wait: WaitFor, finality: Option<Seen>) -> Option<String> {
    let hash = answer.tx_hash;
    match &answer.receipt {
        Some(r) if r.is_success() && wait == WaitFor::Final && finality.is_some_and(|(f, _)| f == Finality::Tentative) => {
            Some(format!(
                "transaction {hash} is in a tentative block that did not turn final within --timeout \
                 (PBFT has no quorum yet?): follow it with `phalanx tx wait {hash}`"
            ))
        }
        Some(r) if r.is_success() => None,
        Some(r) => Some(format!(
            "transaction {hash} was included but failed: {}",
            outcome(r)
        )),
        None => Some(format!(
            "transaction {hash} was not committed within --timeout; it may still commit: \
             wait longer with `phalanx tx wait {hash} --timeout 300`"
        )),
    }
}

/// Polls `/txs/{hash}` until the transaction is committed — in a final
/// block, for `WaitFor::Final` — and returns its answer and finality, or
/// `None` once `deadline` passes (the last answer seen, if it was
/// committed, for a final wait that timed out on a tentative block). A
/// node that does not know the hash yet (it may still be on its way from
/// another node) is asked again.
fn wait_until(
    client: &Client,
    hash: Hash,
    deadline: Instant,
    wait: WaitFor,
) -> anyhow::Result<Option<(SubmitResponse, Seen)>> {
    let mut seen = None;
    loop {
        match client.get::<TxResponse>(&format!("/txs/{hash}")) {
            Ok(TxResponse {
                status: TxState::Committed,
                height,
                receipt,
                finality,
                confirmations,
                ..
            }) => {
                let finality = finality.unwrap_or(Finality::Final);
                let answer = SubmitResponse {
                    tx_hash: hash,
                    committed: true,
                    height,
                    receipt,
                };
                if wait == WaitFor::Tentative || finality == Finality::Final {
                    return Ok(Some((answer, (finality, confirmations))));
                }
                seen = Some((answer, (finality, confirmations)));
            }
            Ok(TxResponse {
                status: TxState::Discarded,
                height,
                discarded_block,
                ..
            }) => {
                anyhow::bail!(
                    "transaction {hash} was in block {} at height {}, which this node discarded \
                     (PBFT finalized another branch, or a heavier one won), and it can no longer \
                     apply: another transaction used its nonce. Check the account's next nonce \
                     with `phalanx query account` and send it again if it is still wanted",
                    discarded_block.map_or("?".into(), |b| b.to_string()),
                    height.map_or("?".into(), |h| h.to_string()),
                );
            }
            Ok(_) => {}
            Err(e) if e.api_code() == Some("unknown_tx") => {}
            // A node that restarts or is briefly unreachable: keep asking until the deadline.
            Err(ClientError::Unreachable { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(seen);
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

fn wait_command(args: &WaitArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.node.node)?;
    let deadline = Instant::now() + args.timeout;
    // A first answer straight away: a hash the node has never seen is
    // more likely a typo or the wrong node than a slow commit.
    match client.get::<TxResponse>(&format!("/txs/{}", args.hash)) {
        Err(e) if e.api_code() == Some("unknown_tx") => eprintln!(
            "{}: not known to {} yet (not in its mempool nor in a block); waiting up to {:.0} s",
            args.hash,
            args.node.node,
            args.timeout.as_secs_f64()
        ),
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    let wait = if finalizes(&client)? {
        args.wait_for
    } else {
        WaitFor::Tentative
    };
    match wait_until(&client, args.hash, deadline, wait)? {
        Some((answer, finality)) => {
            if args.json {
                println!("{}", serde_json::to_string(&answer)?);
            } else {
                let height = answer.height.map_or("?".to_string(), |h| h.to_string());
                let result = answer.receipt.as_ref().map_or("?".to_string(), outcome);
                println!(
                    "{}  committed at height {height}{}: {result}",
                    args.hash,
                    finality_note(Some(finality))
                );
            }
            match wait_problem(&answer, wait, Some(finality)) {
                None => Ok(()),
                Some(problem) => anyhow::bail!("{problem}"),
            }
        }
        None => anyhow::bail!(
            "transaction {} did not commit within {:.0} s; it may still commit: wait longer with --timeout",
            args.hash,
            args.timeout.as_secs_f64()
        ),
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

    #[test]
    fn timeout_argument() {
        assert_eq!(parse_timeout("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "-3", "soon", "NaN", "1e9"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
        assert!(parse_timeout(DEFAULT_WAIT_SECS).is_ok());
    }
}
