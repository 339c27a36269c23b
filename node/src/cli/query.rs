//! `phalanx query`: read a node's API and print it for people (default) or
//! as the API's JSON (`--json`).

use super::names::KeysDirArg;
use crate::api::types::NodeStatus;
use crate::api::types::{
    AccountResponse, BlockResponse, EvidenceResponse, TxResponse, TxState, ValidatorResponse,
};
use crate::client::{Client, NodeArg};
use phalanx_crypto::Hash;
use phalanx_ledger::{Address, Justification, TxStatus};
use serde::de::DeserializeOwned;
use std::fmt::Write as _;

/// Options every query takes.
#[derive(Debug, clap::Args)]
pub struct QueryOpts {
    /// The node to ask.
    #[command(flatten)]
    pub node: NodeArg,
    /// Print the API's JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `phalanx query` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum QueryCommand {
    /// The node's status: chain, height, latest block, view, primary, peers.
    #[command(
        after_help = "Examples:\n  phalanx query status\n  phalanx query status --node http://127.0.0.1:26101 --json"
    )]
    Status(QueryOpts),
    /// A block by height, `latest`, or block hash.
    #[command(
        after_help = "Examples:\n  phalanx query block latest\n  phalanx query block 42 --json\n  phalanx query block <BLOCK_HASH>"
    )]
    Block {
        /// A height, a 64-hex block hash, or a tag: `latest` (the head),
        /// `finalized` (the last final block), `safe` (final, or 6
        /// confirmations deep if higher).
        #[arg(value_name = "HEIGHT|latest|safe|finalized|HASH")]
        id: String,
        /// Options.
        #[command(flatten)]
        opts: QueryOpts,
    },
    /// A transaction by hash: committed (with receipt) or pending.
    #[command(
        after_help = "Examples:\n  phalanx query tx <TX_HASH>\n  phalanx query tx <TX_HASH> --node http://127.0.0.1:26102 --json"
    )]
    Tx {
        /// The transaction hash (printed by `phalanx tx transfer`).
        #[arg(value_name = "HASH")]
        hash: Hash,
        /// Options.
        #[command(flatten)]
        opts: QueryOpts,
    },
    /// An account's balance and next nonce.
    #[command(
        after_help = "Examples:\n  phalanx query account account1            # a testnet account by name\n  phalanx query account <ADDRESS>\n  phalanx query account alice.json --node http://127.0.0.1:26102"
    )]
    Account {
        /// The address (64 hex characters), an account key file, or an
        /// account name such as `account1` (see `phalanx keys list`).
        #[arg(value_name = "ADDRESS|NAME|FILE")]
        account: String,
        /// Where account names are looked up.
        #[command(flatten)]
        keys: KeysDirArg,
        /// Options.
        #[command(flatten)]
        opts: QueryOpts,
    },
    /// The validator set from genesis.
    #[command(
        after_help = "Examples:\n  phalanx query validators\n  phalanx query validators --json"
    )]
    Validators(QueryOpts),
    /// Equivocation evidence the node has recorded.
    #[command(after_help = "Examples:\n  phalanx query evidence\n  phalanx query evidence --json")]
    Evidence(QueryOpts),
}

/// Runs `phalanx query`.
pub fn run(cmd: &QueryCommand) -> anyhow::Result<()> {
    match cmd {
        QueryCommand::Status(o) => show(o, "/status", |s: NodeStatus| format_status(&s)),
        QueryCommand::Block { id, opts } => {
            check_block_id(id)?;
            show(opts, &format!("/blocks/{id}"), |b: BlockResponse| {
                format_block(&b)
            })
        }
        QueryCommand::Tx { hash, opts } => {
            show(opts, &format!("/txs/{hash}"), |t: TxResponse| format_tx(&t))
        }
        QueryCommand::Account {
            account,
            keys,
            opts,
        } => {
            let address = keys.address(account)?;
            show(
                opts,
                &format!("/accounts/{address}"),
                |a: AccountResponse| format_account(&a),
            )
        }
        QueryCommand::Validators(o) => show(o, "/validators", |v: Vec<ValidatorResponse>| {
            format_validators(&v)
        }),
        QueryCommand::Evidence(o) => show(o, "/evidence", |e: Vec<EvidenceResponse>| {
            format_evidence(&e)
        }),
    }
}

/// Fetches `path` and prints it as JSON or through `text`.
fn show<T: DeserializeOwned>(
    opts: &QueryOpts,
    path: &str,
    text: impl FnOnce(T) -> String,
) -> anyhow::Result<()> {
    let client = Client::new(&opts.node.node)?;
    if opts.json {
        let value: serde_json::Value = client.get(path)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", text(client.get(path)?));
    }
    Ok(())
}

fn check_block_id(id: &str) -> anyhow::Result<()> {
    let ok = matches!(id, "latest" | "safe" | "finalized")
        || id.parse::<u64>().is_ok()
        || id.parse::<Hash>().is_ok();
    anyhow::ensure!(
        ok,
        "{id:?} is not a block height, `latest`, `safe`, `finalized` or a 64-hex block hash"
    );
    Ok(())
}

fn format_status(s: &NodeStatus) -> String {
    let mut out = String::new();
    let peers = if s.peers.is_empty() {
        "none connected".to_owned()
    } else {
        let list: Vec<String> = s.peers.iter().map(u32::to_string).collect();
        format!("{} ({} connected)", list.join(", "), s.peers.len())
    };
    let changing = if s.view_changing {
        ", view change under way"
    } else {
        ""
    };
    let tentative = s.height.saturating_sub(s.final_height);
    if s.consensus == "pow" || s.consensus == "pos" {
        let _ = writeln!(
            out,
            "height:     {} (final up to {}; {tentative} tentative)",
            s.height, s.final_height
        );
        match &s.last_reorg {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "reorgs:     {} (last: {} -> {}, {} transactions back to the mempool)",
                    s.reorgs, r.from_height, r.to_height, r.returned_txs
                );
            }
            None => {
                let _ = writeln!(out, "reorgs:     none");
            }
        }
    } else if !s.mode.is_empty() {
        // PBFT with a fallback.
        let what = match s.mode.as_str() {
            "fallback" => "no PBFT quorum: new blocks are tentative",
            "recovering" => "PBFT is back and finalizes the tentative blocks",
            _ => "PBFT orders; every block is final",
        };
        let _ = writeln!(out, "mode:       {} ({what})", s.mode);
        let _ = writeln!(
            out,
            "height:     {} (head; {tentative} tentative)",
            s.height
        );
        let since = if s.last_final_at_ms == 0 {
            String::new()
        } else {
            let secs = crate::clock::now_ms().saturating_sub(s.last_final_at_ms) / 1000;
            format!(", {secs} s ago")
        };
        let _ = writeln!(
            out,
            "final:      {} ({}{since}; finality lag {} blocks)",
            s.final_height, s.final_hash, s.finality_lag
        );
        let _ = writeln!(
            out,
            "view:       {} (primary {}{changing})",
            s.view, s.primary
        );
        if let Some(r) = &s.last_reorg {
            let _ = writeln!(
                out,
                "discarded:  {} time(s) (last: {} -> {}, {} transactions back to the mempool)",
                s.reorgs, r.from_height, r.to_height, r.returned_txs
            );
        }
    } else {
        let _ = writeln!(out, "height:     {}", s.height);
        let _ = writeln!(
            out,
            "view:       {} (primary {}{changing})",
            s.view, s.primary
        );
    }
    let _ = writeln!(out, "peers:      {peers}");
    let _ = writeln!(out, "chain:      {}", s.chain_id);
    let _ = writeln!(
        out,
        "node:       {} (validator {})",
        s.moniker, s.validator_index
    );
    let _ = writeln!(out, "latest:     {}", s.latest_block_hash);
    let _ = writeln!(out, "mempool:    {} transactions", s.mempool_size);
    let _ = writeln!(out, "consensus:  {}", s.consensus);
    if !s.behaviour.is_empty() && s.behaviour != "honest" {
        let _ = writeln!(out, "behaviour:  {} (fault injection)", s.behaviour);
    }
    if s.paused_until_ms > 0 {
        let left = s.paused_until_ms.saturating_sub(crate::clock::now_ms());
        let _ = writeln!(
            out,
            "paused:     {:.1} s more (fault injection: handles nothing until then)",
            left as f64 / 1000.0
        );
    }
    if !s.faulty_peers.is_empty() {
        let list: Vec<String> = s.faulty_peers.iter().map(u32::to_string).collect();
        let _ = writeln!(
            out,
            "faulty:     validators {} (proven equivocators, ignored)",
            list.join(", ")
        );
    }
    out
}

fn format_block(b: &BlockResponse) -> String {
    let h = &b.block.header;
    let mut out = String::new();
    let confirmations = b.confirmations.map_or(String::new(), |c| {
        format!(", {c} confirmation{}", if c == 1 { "" } else { "s" })
    });
    let _ = writeln!(
        out,
        "height:     {} ({}{confirmations})",
        b.height, b.finality
    );
    let _ = writeln!(out, "hash:       {}", b.hash);
    let _ = writeln!(out, "parent:     {}", h.parent);
    let _ = writeln!(
        out,
        "time:       {} ({} ms)",
        utc(h.timestamp_ms),
        h.timestamp_ms
    );
    let _ = writeln!(
        out,
        "proposer:   validator {} (round {})",
        h.proposer, h.round
    );
    let _ = writeln!(out, "state root: {}", h.state_root);
    let _ = writeln!(out, "justified:  {}", justification(&b.block.justification));
    let _ = writeln!(out, "evidence:   {}", b.block.evidence.len());
    let _ = writeln!(out, "txs:        {}", b.block.txs.len());
    for (hash, tx) in b.tx_hashes.iter().zip(&b.block.txs) {
        let t = &tx.tx;
        let _ = writeln!(
            out,
            "  {hash}  {} -> {}  amount {} fee {} nonce {}",
            short(&t.from),
            short(&t.to),
            t.amount,
            t.fee,
            t.nonce
        );
    }
    out
}

fn justification(j: &Justification) -> String {
    match j {
        Justification::Genesis => "genesis".into(),
        Justification::Pbft(c) => {
            let who: Vec<String> = c.commits.iter().map(|(v, _)| v.to_string()).collect();
            format!(
                "PBFT commit certificate, view {}, commits from validators {}",
                c.view,
                who.join(", ")
            )
        }
        Justification::Finalized {
            certificate: c,
            sealed,
        } => {
            let who: Vec<String> = c.commits.iter().map(|(v, _)| v.to_string()).collect();
            format!(
                "PBFT commit certificate, view {}, commits from validators {} (finalized after a fallback; made as: {})",
                c.view,
                who.join(", "),
                justification(sealed)
            )
        }
        Justification::Cft { term, leader } => format!("CFT, term {term}, leader {leader}"),
        Justification::Pow { bits, nonce, .. } => {
            format!("PoW, target {bits:#010x} (compact), nonce {nonce}")
        }
        Justification::Pos { slot, leader, .. } => {
            format!("PoS, slot {slot}, signed by its leader {leader}")
        }
    }
}

fn format_tx(t: &TxResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "hash:       {}", t.tx_hash);
    match t.status {
        TxState::Pending => {
            let _ = writeln!(
                out,
                "status:     pending (in the node's mempool, not committed yet)"
            );
        }
        TxState::Discarded => {
            let height = t.height.map_or("?".into(), |h| h.to_string());
            let block = t.discarded_block.map_or("?".into(), |b| b.to_string());
            let _ = writeln!(
                out,
                "status:     discarded (was in block {block} at height {height}, which this node \
                 reverted; it can no longer apply)"
            );
        }
        TxState::Committed => {
            let result = match t.receipt.as_ref().map(|r| &r.status) {
                Some(TxStatus::Success) => "success".to_owned(),
                Some(TxStatus::Failed(reason)) => format!("failed ({reason})"),
                None => "unknown".to_owned(),
            };
            let height = t.height.map_or("?".into(), |h| h.to_string());
            let confirmations = t.confirmations.map_or(String::new(), |c| {
                format!(" with {c} confirmation{}", if c == 1 { "" } else { "s" })
            });
            let finality = t
                .finality
                .map_or(String::new(), |f| format!(", {f}{confirmations}"));
            let _ = writeln!(
                out,
                "status:     committed at height {height}, index {}{finality}",
                t.index.unwrap_or(0)
            );
            let _ = writeln!(out, "result:     {result}");
            if let Some(r) = &t.receipt {
                let _ = writeln!(out, "fee paid:   {}", r.fee_paid);
            }
        }
    }
    if let Some(stx) = &t.tx {
        let tx = &stx.tx;
        let _ = writeln!(out, "from:       {}", tx.from);
        let _ = writeln!(out, "to:         {}", tx.to);
        let _ = writeln!(out, "amount:     {}", tx.amount);
        let _ = writeln!(out, "fee:        {}", tx.fee);
        let _ = writeln!(out, "nonce:      {}", tx.nonce);
        let _ = writeln!(out, "chain:      {}", tx.chain_id);
    }
    out
}

fn format_account(a: &AccountResponse) -> String {
    format!(
        "address:    {}\nbalance:    {}\nnext nonce: {}\n",
        a.address, a.balance, a.next_nonce
    )
}

fn format_validators(list: &[ValidatorResponse]) -> String {
    let mut out = format!(
        "{} validators (tolerates f = {} Byzantine)\n",
        list.len(),
        list.len().saturating_sub(1) / 3
    );
    for v in list {
        let _ = writeln!(
            out,
            "{:>3}  {}  stake {}  p2p {}  api {}",
            v.index, v.name, v.stake, v.p2p_address, v.api_address
        );
        let _ = writeln!(out, "     public key {}", v.public_key);
        let _ = writeln!(out, "     node key   {}", v.node_key);
    }
    out
}

fn format_evidence(list: &[EvidenceResponse]) -> String {
    if list.is_empty() {
        return "no evidence recorded\n".into();
    }
    let mut out = format!("{} pieces of evidence\n", list.len());
    for e in list {
        let (a, b) = (&e.evidence.first.vote, &e.evidence.second.vote);
        let _ = writeln!(
            out,
            "{}  validator {} equivocated: {:?} view {} seq {}: {} vs {}",
            e.id,
            e.offender,
            a.kind,
            a.view,
            a.seq,
            short_hash(&a.digest),
            short_hash(&b.digest)
        );
    }
    out
}

fn short(a: &Address) -> String {
    a.to_string()[..12].to_owned()
}

fn short_hash(h: &Hash) -> String {
    h.to_string()[..12].to_owned()
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS.mmm UTC`.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (H. Hinnant), for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(utc(951_782_400_000 + 1), "2000-02-29 00:00:00.001 UTC");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20.123 UTC");
    }

    #[test]
    fn a_paused_node_says_so_and_others_do_not() {
        let mut s = NodeStatus {
            behaviour: "honest".into(),
            ..NodeStatus::default()
        };
        assert!(!format_status(&s).contains("paused"));
        s.paused_until_ms = crate::clock::now_ms() + 5_000;
        let text = format_status(&s);
        let line = text
            .lines()
            .find(|l| l.starts_with("paused:"))
            .unwrap_or_else(|| panic!("no paused line in:\n{text}"));
        assert!(line.contains(" s more"), "{line}");
    }

    #[test]
    fn block_ids_are_checked_before_asking() {
        check_block_id("latest").unwrap();
        check_block_id("12").unwrap();
        check_block_id(&"ab".repeat(32)).unwrap();
        assert!(check_block_id("../status").is_err());
    }
}
