//! Issue 7: the Two Generals and Byzantine Generals demo. Every test runs the
//! real simulation, most of them through the real command-line parser, and
//! checks the classic results of Lamport, Shostak and Pease (1982) and of the
//! Two Generals problem.

use clap::Parser;
use phalanx_crypto::{Domain, PublicKey};
use phalanx_testnet::generals::chain::{ChainError, KeyRing, Link, SignedOrder};
use phalanx_testnet::generals::model::{om_round_messages, om_total_messages};
use phalanx_testnet::generals::oral::run_om;
use phalanx_testnet::generals::search::{search, Coverage};
use phalanx_testnet::generals::signed::run_sm;
use phalanx_testnet::generals::strategy::Strategy;
use phalanx_testnet::generals::sweep::sweep;
use phalanx_testnet::generals::two::{simulate, RunSource, TwoConfig};
use phalanx_testnet::generals::{
    execute, Algorithm, GeneralId, GeneralsCommand, Order, Scenario, MAX_WIDTH,
};
use proptest::prelude::*;
use serde::Serialize;

/// `phalanx generals …` as the node binary parses it.
#[derive(Debug, Parser)]
#[command(name = "phalanx-generals")]
struct Cli {
    #[command(subcommand)]
    command: GeneralsCommand,
}

/// Runs `phalanx generals <args>` and returns what it prints.
fn cli(args: &str) -> anyhow::Result<String> {
    let argv = std::iter::once("phalanx-generals").chain(args.split_whitespace());
    let cli = Cli::try_parse_from(argv)?;
    execute(&cli.command)
}

fn ok(args: &str) -> String {
    cli(args).unwrap_or_else(|e| panic!("`{args}` failed: {e:#}"))
}

fn err(args: &str) -> String {
    match cli(args) {
        Ok(out) => panic!("`{args}` should fail, printed:\n{out}"),
        Err(e) => format!("{e:#}"),
    }
}

fn g(i: u16) -> GeneralId {
    GeneralId(i)
}

// ---------------------------------------------------------------- OM(m) ---

#[test]
fn om1_with_3_generals_has_a_counterexample_that_exhaustive_finds_and_prints() {
    let report = search(Algorithm::Om, 3, 1, Coverage::Full).unwrap();
    assert!(!report.holds);
    assert_eq!(report.cases, 3 * 25 * 2);
    assert!(report.failing_cases > 0);
    let c = report.counterexample.as_ref().expect("a counterexample");
    assert!(!c.agreement());
    // LSP'82 Fig. 1: a loyal commander, a lying lieutenant, and the loyal
    // lieutenant cannot tell who lies, so it defaults to retreat.
    assert!(c.commander_loyal);
    assert!(!c.ic2);

    let out = ok("byzantine --generals 3 --traitors 1 --exhaustive");
    assert!(out.contains("OM(1)"), "{out}");
    assert!(out.contains("agreement FAILS"), "{out}");
    assert!(out.contains("counterexample"), "{out}");
    assert!(out.contains("VIOLATED"), "{out}");
    assert!(out.contains("trace"), "{out}");

    // The printed replay command reproduces the violation.
    let replay = out
        .split("replay:\n")
        .nth(1)
        .expect("a replay command")
        .replace('\\', " ");
    let args = replay
        .trim()
        .strip_prefix("phalanx generals ")
        .expect("replay starts with the command");
    let again = ok(args);
    assert!(
        again.contains("IC2 loyal commander's order is obeyed: VIOLATED"),
        "{again}"
    );
}

#[test]
fn om1_with_4_generals_holds_for_every_placement_and_strategy() {
    let report = search(Algorithm::Om, 4, 1, Coverage::Full).unwrap();
    assert_eq!(report.placements, 4);
    assert_eq!(report.combinations, 25);
    assert_eq!(report.cases, 4 * 25 * 2);
    assert_eq!((report.ic1_violations, report.ic2_violations), (0, 0));
    assert!(report.holds && report.counterexample.is_none());
    let out = ok("byzantine --generals 4 --traitors 1 --exhaustive");
    assert!(out.contains("agreement holds in all 200 cases"), "{out}");
}

#[test]
fn om2_with_7_generals_holds_for_every_placement_and_strategy() {
    let started = std::time::Instant::now();
    let report = search(Algorithm::Om, 7, 2, Coverage::Full).unwrap();
    assert_eq!(report.m, 2);
    assert_eq!(report.placements, 21); // C(7, 2)
    assert_eq!(report.combinations, 625); // 25²
    assert_eq!(report.cases, 21 * 625 * 2);
    assert_eq!((report.ic1_violations, report.ic2_violations), (0, 0));
    assert!(report.holds);
    eprintln!(
        "OM(2), N=7: {} cases in {:?}",
        report.cases,
        started.elapsed()
    );
}

#[test]
fn om2_with_6_generals_fails_exhaustively() {
    // N = 3M: the boundary case of LSP'82 Theorem 1.
    let report = search(Algorithm::Om, 6, 2, Coverage::Full).unwrap();
    assert!(!report.holds);
    assert!(report.counterexample.is_some_and(|c| !c.agreement()));
}

#[test]
fn om_message_counts_match_the_formula() {
    // Every traitor sends something to everyone, so no message slot is empty.
    for (n, m) in [
        (3, 1),
        (4, 1),
        (5, 1),
        (5, 2),
        (6, 2),
        (7, 2),
        (7, 3),
        (8, 3),
    ] {
        for strategy in [Strategy::LIE, Strategy::SPLIT, Strategy::HONEST] {
            let traitors: Vec<(GeneralId, Strategy)> =
                (0..m).map(|i| (g((n - 1 - i) as u16), strategy)).collect();
            let s = Scenario::new(n, Order::Attack, &traitors, 0).unwrap();
            assert_eq!(s.m(), m);
            let out = run_om(&s);
            assert_eq!(out.rounds.len(), m + 1);
            let mut expected_total = 0u64;
            for (r, stats) in out.rounds.iter().enumerate() {
                // (N−1)(N−2)…(N−r), computed here independently.
                let expected: u64 = (1..=r as u64 + 1).map(|i| n as u64 - i).product();
                assert_eq!(stats.sent, expected, "N={n} m={m} round {}", r + 1);
                assert_eq!(stats.formula, Some(u128::from(expected)));
                expected_total += expected;
            }
            // LSP'82 §3: the last round sends (N−1)(N−2)…(N−m−1).
            let last: u64 = (1..=m as u64 + 1).map(|i| n as u64 - i).product();
            assert_eq!(out.rounds[m].sent, last);
            assert_eq!(out.total_sent, expected_total);
            assert_eq!(u128::from(expected_total), om_total_messages(n, m));
            assert_eq!(om_round_messages(n, m + 1), u128::from(last));
            // The trace holds exactly the messages counted.
            assert_eq!(out.messages.len() as u64, expected_total);
        }
    }
}

#[test]
fn silent_traitors_leave_slots_empty_but_never_add_messages() {
    let s = Scenario::new(
        7,
        Order::Attack,
        &[(g(5), Strategy::SILENT), (g(6), Strategy::SILENT)],
        0,
    )
    .unwrap();
    let out = run_om(&s);
    for r in &out.rounds {
        assert_eq!(u128::from(r.sent + r.withheld), r.formula.unwrap());
    }
    assert!(out.rounds[1].withheld > 0);
    assert!(out.agreement());
}

#[test]
fn om1_with_4_generals_keeps_ic1_and_ic2_under_every_named_strategy() {
    let mut strategies: Vec<Strategy> = ["lie", "split", "silent", "honest", "attack", "retreat"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    strategies.push(Strategy::Random);
    for strategy in strategies {
        for traitor in 0..4u16 {
            for order in [Order::Attack, Order::Retreat] {
                for seed in 0..if strategy == Strategy::Random { 20 } else { 1 } {
                    let s = Scenario::new(4, order, &[(g(traitor), strategy)], seed).unwrap();
                    let out = run_om(&s);
                    let case = format!("{strategy} traitor G{traitor} order {order} seed {seed}");
                    assert!(out.ic1, "IC1 fails: {case}");
                    assert!(out.ic2, "IC2 fails: {case}");
                    if traitor != 0 {
                        for d in out.lieutenants.iter().filter(|d| d.loyal) {
                            assert_eq!(d.decision, Some(order), "{case}");
                        }
                    }
                }
            }
        }
    }
    // The same through the CLI, one strategy per run.
    for strategy in ["lie", "split", "silent", "random"] {
        let out = ok(&format!(
            "byzantine --generals 4 --traitors 1 --strategy {strategy}"
        ));
        assert!(
            out.contains("IC1 loyal lieutenants agree:           holds"),
            "{out}"
        );
        assert!(
            out.contains("IC2 loyal commander's order is obeyed: holds"),
            "{out}"
        );
    }
}

#[test]
fn om1_with_3_generals_fails_the_way_figure_1_shows() {
    // Commander loyal (attack), lieutenant G2 lies to G1: G1 sees attack and
    // retreat, takes the default, and disobeys its loyal commander.
    let out = ok("byzantine --generals 3 --traitors 1 --traitor-ids 2 --strategy lie --trace");
    assert!(out.contains("G1          loyal    retreat"), "{out}");
    assert!(out.contains("VIOLATED"), "{out}");
    assert!(out.contains("G2* -> G1   retreat:0:2"), "{out}");
    // A traitorous commander cannot split the two loyal lieutenants of N=3
    // under OM(1): each takes the majority of the same two values.
    let out = ok("byzantine --generals 3 --traitors 1 --commander-traitor --strategy split");
    assert!(
        out.contains("IC1 loyal lieutenants agree:           holds"),
        "{out}"
    );
}

// ---------------------------------------------------------------- SM(m) ---

#[test]
fn sm1_with_3_generals_holds_for_every_placement_and_strategy() {
    let report = search(Algorithm::Sm, 3, 1, Coverage::Full).unwrap();
    assert_eq!(report.cases, 3 * 25 * 2);
    assert!(report.holds, "{:?}", report.counterexample);
    let out = ok("byzantine --generals 3 --traitors 1 --algorithm sm --exhaustive");
    assert!(out.contains("SM(1)"), "{out}");
    assert!(out.contains("agreement holds in all 150 cases"), "{out}");
    // N = M + 2 with two traitors, and the larger cases.
    for (n, m) in [(4, 2), (5, 2), (6, 2)] {
        let report = search(Algorithm::Sm, n, m, Coverage::Full).unwrap();
        assert!(report.holds, "SM({m}) N={n}: {:?}", report.counterexample);
    }
}

/// The bytes each link signs, declared independently of the crate: the
/// order, the earlier links, the signer.
#[derive(Serialize)]
struct Payload<'a> {
    value: Order,
    prior: &'a [Link],
    signer: GeneralId,
}

fn verify_by_hand(public: &PublicKey, order: &SignedOrder, k: usize) -> bool {
    let link = &order.chain[k];
    let payload = Payload {
        value: order.value,
        prior: &order.chain[..k],
        signer: link.signer,
    };
    public
        .verify(Domain::GeneralsOrder, &payload, &link.signature)
        .is_ok()
}

#[test]
fn sm_chains_carry_real_ed25519_signatures_and_tampering_is_rejected() {
    let mut keys = KeyRing::new(4);
    let order = keys.issue(Order::Attack);
    let relayed = keys.relay(&order, g(1));
    assert_eq!(relayed.signers(), vec![g(0), g(1)]);
    assert_eq!(keys.verify(&relayed, g(1), g(2), 2), Ok(()));
    // Each signature is an ed25519 signature by that general's key, checked
    // here with the crypto crate directly.
    for k in 0..2 {
        let public = keys.public(relayed.chain[k].signer).unwrap();
        assert!(verify_by_hand(&public, &relayed, k));
    }
    let g3 = keys.public(g(3)).unwrap();
    assert!(
        !verify_by_hand(&g3, &relayed, 0),
        "another key must not verify"
    );

    // Changing the value breaks the commander's signature.
    let mut changed = relayed.clone();
    changed.value = Order::Retreat;
    assert_eq!(
        keys.verify(&changed, g(1), g(2), 2),
        Err(ChainError::BadSignature(g(0)))
    );
    // A traitor G1 re-signing its own link cannot fix the loyal commander's.
    let forged = keys.tamper(&relayed, Order::Retreat, |x| x == g(1));
    assert!(verify_by_hand(&keys.public(g(1)).unwrap(), &forged, 1));
    assert_eq!(
        keys.verify(&forged, g(1), g(2), 2),
        Err(ChainError::BadSignature(g(0)))
    );
    // A flipped bit in a signature is caught.
    let mut flipped = relayed.clone();
    flipped.chain[1].signature.0[5] ^= 1;
    assert_eq!(
        keys.verify(&flipped, g(1), g(2), 2),
        Err(ChainError::BadSignature(g(1)))
    );
    // If the commander is a traitor too, the coalition can sign anything.
    let colluding = keys.tamper(&relayed, Order::Retreat, |x| x == g(0) || x == g(1));
    assert_eq!(keys.verify(&colluding, g(1), g(2), 2), Ok(()));

    // The structural rules of LSP'82 §4.
    assert_eq!(
        keys.verify(&relayed, g(2), g(3), 2),
        Err(ChainError::NotSignedBySender {
            sender: g(2),
            last: g(1)
        })
    );
    assert_eq!(
        keys.verify(&relayed, g(1), g(1), 2),
        Err(ChainError::AlreadySigned(g(1)))
    );
    assert_eq!(
        keys.verify(&relayed, g(1), g(2), 1),
        Err(ChainError::TooLong { len: 2, max: 1 })
    );
    let twice = keys.relay(&relayed, g(1));
    assert_eq!(
        keys.verify(&twice, g(1), g(2), 3),
        Err(ChainError::RepeatedSigner(g(1)))
    );
    let headless = SignedOrder {
        value: Order::Attack,
        chain: relayed.chain[1..].to_vec(),
    };
    assert_eq!(
        keys.verify(&headless, g(1), g(2), 2),
        Err(ChainError::NotFromCommander(g(1)))
    );
    let empty = SignedOrder {
        value: Order::Attack,
        chain: Vec::new(),
    };
    assert_eq!(keys.verify(&empty, g(1), g(2), 2), Err(ChainError::Empty));
}

#[test]
fn sm_loyal_lieutenants_reject_a_traitors_altered_orders() {
    let s = Scenario::new(4, Order::Attack, &[(g(3), Strategy::LIE)], 0).unwrap();
    let out = run_sm(&s);
    let sig = out.signatures.unwrap();
    assert_eq!(sig.rejected_chains, 2, "G3's two forged relays");
    assert!(sig.checked > 0 && sig.signed > 0);
    for d in out.lieutenants.iter().filter(|d| d.loyal) {
        assert_eq!(d.inputs, vec![Order::Attack], "V holds only the real order");
        assert_eq!(d.decision, Some(Order::Attack));
    }
    assert!(out.agreement());
    let text = ok("byzantine --generals 4 --traitors 1 --algorithm sm --trace");
    assert!(text.contains("REJECTED: bad signature of G0"), "{text}");
    assert!(text.contains("2 chain(s) rejected"), "{text}");
}

#[test]
fn sm_with_a_traitorous_commander_reaches_agreement_on_its_conflicting_orders() {
    for strategy in [
        Strategy::SPLIT,
        Strategy::LIE,
        Strategy::SILENT,
        Strategy::Random,
    ] {
        for n in 3..=6 {
            let s = Scenario::new(n, Order::Attack, &[(g(0), strategy)], 7).unwrap();
            let out = run_sm(&s);
            assert!(out.ic1, "SM(1) N={n} {strategy}");
        }
    }
    // N = 3, commander splits: both loyal lieutenants see both orders and
    // retreat together, where OM(1) has no way to know.
    let s = Scenario::new(3, Order::Attack, &[(g(0), Strategy::SPLIT)], 0).unwrap();
    let out = run_sm(&s);
    for d in out.lieutenants.iter() {
        assert_eq!(d.inputs, vec![Order::Attack, Order::Retreat]);
        assert_eq!(d.decision, Some(Order::Retreat));
    }
}

#[test]
fn sm_all_loyal_sends_n_minus_1_squared_messages() {
    // Round 1: N−1; round 2: every lieutenant relays the one value to the
    // N−2 others; nobody has anything new afterwards.
    for (n, m) in [(3, 1), (4, 2), (6, 3)] {
        let s = Scenario::with_depth(n, m, Order::Attack, &[], 0).unwrap();
        let out = run_sm(&s);
        assert_eq!(out.rounds[0].sent, (n - 1) as u64);
        assert_eq!(out.rounds[1].sent, ((n - 1) * (n - 2)) as u64);
        assert_eq!(out.total_sent, ((n - 1) * (n - 1)) as u64);
        assert!(out.agreement());
    }
}

// ---------------------------------------------------------------- sweep ---

#[test]
fn sweep_shows_oral_agreement_exactly_when_n_exceeds_3m_and_signed_always() {
    let report = sweep(10, 3).unwrap();
    assert!(report.matches_theory);
    let mut checked = 0;
    for cell in &report.cells {
        let (n, m) = (cell.generals, cell.traitors);
        match (cell.oral, cell.signed) {
            (Some(oral), Some(signed)) => {
                assert!(n >= m + 2);
                assert_eq!(oral.holds, n > 3 * m, "OM({m}) N={n}");
                assert!(signed.holds, "SM({m}) N={n}");
                checked += 1;
            }
            (None, None) => assert!(n < m + 2),
            _ => panic!("half a cell"),
        }
    }
    assert_eq!(checked, 8 + 8 + 7 + 6);
    let out = ok("byzantine --sweep --generals 7 --traitors 2");
    assert!(out.contains("  3  ok/ok     FAIL/ok   -"), "{out}");
    assert!(out.contains("  7  ok/ok     ok/ok     ok/ok"), "{out}");
    assert!(out.contains("every cell matches the theory"), "{out}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random placements and strategies (including `random`) never break
    /// OM(M) when N > 3M, nor SM(M) when N ≥ M + 2.
    #[test]
    fn agreement_holds_within_the_theorems(
        n in 3usize..=7,
        m_seed in 0usize..100,
        ids_seed in any::<u64>(),
        picks in proptest::collection::vec(0usize..26, 3),
        seed in any::<u64>(),
        attack in any::<bool>(),
    ) {
        let order = if attack { Order::Attack } else { Order::Retreat };
        let mut space = Strategy::space();
        space.push(Strategy::Random);
        let m = m_seed % (n - 1); // 0..=N−2
        // A pseudo-random M-subset of the generals.
        let mut ids: Vec<u16> = (0..n as u16).collect();
        let mut x = ids_seed;
        for i in (1..ids.len()).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ids.swap(i, (x >> 33) as usize % (i + 1));
        }
        let traitors: Vec<(GeneralId, Strategy)> =
            ids[..m].iter().zip(&picks).map(|(&i, &p)| (g(i), space[p])).collect();
        let s = Scenario::new(n, order, &traitors, seed).unwrap();
        let signed = run_sm(&s);
        prop_assert!(signed.agreement(), "SM: {:?}", signed);
        if n > 3 * m {
            let oral = run_om(&s);
            prop_assert!(oral.agreement(), "OM: {:?}", oral);
        }
    }
}

// --------------------------------------------------------- Two Generals ---

#[test]
fn two_generals_frequencies_match_the_exact_probabilities() {
    let loss = 0.2;
    let report = simulate(&TwoConfig {
        loss,
        max_acks: 5,
        trials: 20_000,
        seed: 3,
    })
    .unwrap();
    assert_eq!(report.protocols.len(), 6);
    for p in &report.protocols {
        let k = p.k as i32;
        assert!((p.both + p.neither + p.one_alone - 1.0).abs() < 1e-9);
        assert!((p.exact_both - 0.8f64.powi(k + 1)).abs() < 1e-12);
        assert!((p.exact_one_alone - 0.8f64.powi(k) * loss).abs() < 1e-12);
        for (measured, exact) in [
            (p.both, p.exact_both),
            (p.neither, p.exact_neither),
            (p.one_alone, p.exact_one_alone),
        ] {
            assert!(
                (measured - exact).abs() < 0.015,
                "k={k}: {measured} vs {exact}"
            );
        }
        // No protocol rules out disagreement.
        assert!(p.one_alone > 0.0, "k={k}");
    }
    // A reliable channel: everybody attacks. A channel that loses
    // everything: A attacks alone with k = 0, nobody attacks otherwise.
    let reliable = simulate(&TwoConfig {
        loss: 0.0,
        max_acks: 3,
        trials: 100,
        seed: 1,
    })
    .unwrap();
    assert!(reliable.protocols.iter().all(|p| p.both == 1.0));
    assert_eq!(reliable.last_message_source, RunSource::Constructed);
    let dead = simulate(&TwoConfig {
        loss: 1.0,
        max_acks: 3,
        trials: 100,
        seed: 1,
    })
    .unwrap();
    assert_eq!(dead.protocols[0].one_alone, 1.0);
    assert!(dead.protocols[1..].iter().all(|p| p.neither == 1.0));
}

#[test]
fn two_generals_prints_the_last_message_argument_for_every_k() {
    for k in 0..=6usize {
        let report = simulate(&TwoConfig {
            loss: 0.3,
            max_acks: k,
            trials: 2_000,
            seed: 9,
        })
        .unwrap();
        let run = &report.last_message_run;
        assert_eq!(run.k, k);
        assert!(matches!(
            report.last_message_source,
            RunSource::Seeded { .. }
        ));
        assert_eq!(run.messengers.len(), k + 1);
        let (last, earlier) = run.messengers.split_last().unwrap();
        assert!(!last.delivered && earlier.iter().all(|m| m.delivered));
        assert_ne!(run.a_attacks, run.b_attacks, "the generals disagree");
    }
    let out = ok("two --loss 0.1 --max-acks 3 --trials 1000 --seed 5");
    assert!(out.contains("Last-message argument, protocol k=3"), "{out}");
    assert!(out.contains("#4  B -> A  ack of #3"), "{out}");
    assert!(out.contains("LOST"), "{out}");
    assert!(out.contains("B attacks alone"), "{out}");
}

#[test]
fn seeded_runs_replay_exactly() {
    assert_eq!(ok("two --seed 11"), ok("two --seed 11"));
    assert_ne!(ok("two --seed 11"), ok("two --seed 12"));
    let random = "byzantine --generals 7 --traitors 2 --strategy random --seed 4 --trace";
    assert_eq!(ok(random), ok(random));
}

// ------------------------------------------------------ output formats ---

#[test]
fn json_output_parses() {
    let one: serde_json::Value =
        serde_json::from_str(&ok("byzantine --generals 4 --traitors 1 --format json")).unwrap();
    assert_eq!(one["ic1"], true);
    assert_eq!(one["ic2"], true);
    assert_eq!(one["total_sent"], 9);
    assert_eq!(one["rounds"][1]["formula"], 6);
    assert!(one.get("messages").is_none(), "no trace unless asked");

    let traced: serde_json::Value = serde_json::from_str(&ok(
        "byzantine --generals 4 --traitors 1 --algorithm sm --trace --format json",
    ))
    .unwrap();
    let messages = traced["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 9);
    assert!(messages
        .iter()
        .any(|m| m["delivery"]["kind"] == "rejected"
            && m["delivery"]["reason"] == "bad signature of G0"));
    assert_eq!(traced["signatures"]["rejected_chains"], 2);

    let search: serde_json::Value = serde_json::from_str(&ok(
        "byzantine --generals 3 --traitors 1 --exhaustive --format json",
    ))
    .unwrap();
    assert_eq!(search["holds"], false);
    assert_eq!(search["cases"], 150);
    assert_eq!(search["counterexample"]["ic2"], false);

    let table: serde_json::Value = serde_json::from_str(&ok(
        "byzantine --sweep --generals 5 --traitors 1 --format json",
    ))
    .unwrap();
    assert_eq!(table["matches_theory"], true);
    assert_eq!(table["cells"].as_array().unwrap().len(), 3 * 2);

    let two: serde_json::Value =
        serde_json::from_str(&ok("two --max-acks 2 --trials 500 --format json")).unwrap();
    assert_eq!(two["protocols"].as_array().unwrap().len(), 3);
    assert!(two["last_message_run"]["messengers"].is_array());
}

#[test]
fn tables_fit_80_columns() {
    for args in [
        "two",
        "two --loss 0 --max-acks 20 --trials 10",
        "two --loss 1 --max-acks 2 --trials 10",
        "byzantine --generals 3 --traitors 1 --trace",
        "byzantine --generals 10 --traitors 3 --strategy random --trace",
        "byzantine --generals 12 --traitors 3 --algorithm sm --commander-traitor --strategy split --trace",
        "byzantine --generals 5 --traitors 2 --commander-traitor --strategy lie,flip/silent --algorithm sm --trace",
        "byzantine --generals 3 --traitors 1 --exhaustive",
        "byzantine --generals 6 --traitors 2 --exhaustive --trace",
        "byzantine --sweep",
    ] {
        let out = ok(args);
        for line in out.lines() {
            assert!(
                line.chars().count() <= MAX_WIDTH,
                "`{args}`: {} columns:\n{line}",
                line.chars().count()
            );
        }
    }
}

// ---------------------------------------------------- argument errors ---

#[test]
fn bad_arguments_are_clear_errors_not_panics() {
    let cases = [
        (
            "byzantine --generals 3 --traitors 3",
            "--traitors 3 must be less than --generals 3",
        ),
        (
            "byzantine --generals 4 --traitors 5 --exhaustive",
            "--traitors 5 must be less than --generals 4",
        ),
        (
            "byzantine --generals 1 --traitors 0",
            "--generals must be at least 2",
        ),
        (
            "byzantine --generals 4 --traitors 1 --traitor-ids 4",
            "general 4 does not exist",
        ),
        (
            "byzantine --generals 4 --traitors 2 --traitor-ids 1,1",
            "general 1 is listed twice",
        ),
        (
            "byzantine --generals 4 --traitors 1 --traitor-ids 1,2",
            "lists 2 generals but --traitors is 1",
        ),
        (
            "byzantine --generals 4 --traitors 1 --traitor-ids 2 --commander-traitor",
            "does not include 0",
        ),
        (
            "byzantine --generals 4 --traitors 0 --commander-traitor",
            "needs --traitors of at least 1",
        ),
        (
            "byzantine --generals 5 --traitors 2 --strategy lie,split,silent",
            "lists 3 strategies",
        ),
        (
            "byzantine --generals 4 --traitors 1 --depth 3",
            "--depth 3 needs at least 5 generals",
        ),
        (
            "byzantine --generals 30 --traitors 5",
            "message deliveries; the limit is",
        ),
        (
            "byzantine --generals 10 --traitors 3 --exhaustive",
            "message deliveries; the limit is",
        ),
        (
            "byzantine --sweep --traitors 8",
            "at most 7 traitor columns",
        ),
        (
            "byzantine --generals 64 --traitors 40",
            "message deliveries; the limit is",
        ),
        (
            "byzantine --generals 64 --traitors 40 --algorithm sm --exhaustive",
            "message deliveries; the limit is",
        ),
        (
            "byzantine --generals 99 --traitors 1",
            "--generals must be at most 64",
        ),
        (
            "two --loss 1.5",
            "--loss must be a probability in [0, 1], got 1.5",
        ),
        (
            "two --loss -0.1",
            "--loss must be a probability in [0, 1], got -0.1",
        ),
        (
            "two --loss NaN",
            "--loss must be a probability in [0, 1], got NaN",
        ),
        ("two --trials 0", "--trials must be at least 1"),
        ("two --max-acks 21", "--max-acks must be at most 20"),
    ];
    for (args, expected) in cases {
        let message = err(args);
        assert!(message.contains(expected), "`{args}`: {message}");
    }
    // Usage errors come from clap itself (exit code 2 in the binary).
    for args in [
        "byzantine --traitors 1",
        "byzantine --generals 4 --traitors 1 --strategy bogus",
        "byzantine --generals 4 --traitors 1 --exhaustive --traitor-ids 1",
        "byzantine --generals 4 --traitors 1 --algorithm pbft",
    ] {
        let e = cli(args).unwrap_err();
        assert!(e.downcast_ref::<clap::Error>().is_some(), "`{args}`: {e:#}");
    }
}

// ------------------------------------------------------------- docs ---

#[test]
fn documented_examples_print_exactly_what_the_docs_show() {
    // docs/generals.md (linked from the README) is the documentation users
    // read; the README may show some of its examples too.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guide = std::fs::read_to_string(root.join("docs/generals.md")).expect("docs/generals.md");
    assert!(
        guide.contains("$ phalanx generals "),
        "docs/generals.md shows `phalanx generals` examples"
    );
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let text = format!("{guide}\n{readme}");
    let mut examples = 0;
    for block in text.split("```console\n").skip(1) {
        let block = block.split("```").next().unwrap();
        let Some(rest) = block.strip_prefix("$ phalanx generals ") else {
            continue;
        };
        let (args, shown) = rest.split_once('\n').unwrap();
        assert_eq!(ok(args), shown, "the docs' output of `{args}` is stale");
        examples += 1;
    }
    assert!(examples >= 4, "one example per command and mode");
}
