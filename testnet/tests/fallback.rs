//! PBFT with a fallback (issue 20): the named scenarios of the issue, each
//! across seeds and for both fallbacks (proof of work and proof of stake),
//! in the deterministic simulator. Every step checks S1–S4 (agreement on
//! final blocks, a final block never reverted, final a prefix of the head,
//! final chains agree after sync) and, after the heal, liveness: every
//! honest head final again and holding every transaction. On top of that,
//! each scenario asserts what it is about: that the nodes fell back and
//! finalized, that the minority discarded its branch, that a double spend
//! made across a split survives on one side only.
//!
//! A failing seed replays with `run_one` (or `phalanx sim --consensus
//! pbft+pos ...` for the random schedules).

use phalanx_consensus::{PbftPos, PbftPow};
use phalanx_crypto::Hash;
use phalanx_ledger::{EngineKind, Justification, SignedTransaction, ValidatorIndex};
use phalanx_testnet::sim::scenario::{
    account, account_key, ByzantinePlan, CrashPlan, Partition, SilentMode, Strategy, Submission,
};
use phalanx_testnet::sim::{run_scenario, workload, Fault, FaultSet, Hooks, Outcome, Scenario};

/// When the last fault ends (crashed validators restart, partitions heal).
const HEAL_MS: u64 = 12_000;

/// Seeds per scenario and fallback.
const SEEDS: u64 = 10;

fn transfer(from: usize, to: usize, amount: u64, nonce: u64) -> SignedTransaction {
    workload::transfer(from, to, amount, nonce).sign(account_key(from))
}

fn validators(range: std::ops::Range<usize>) -> Vec<ValidatorIndex> {
    range.map(|i| ValidatorIndex(i as u32)).collect()
}

/// A steady client load until the heal: account `a` sends a transfer
/// every 400 ms to the validators in `sides[a % sides.len()]`, so each
/// side of a split holds transactions of its own accounts (an account
/// split across sides would only leave nonce gaps). Accounts 0–3 carry
/// the load; account 4 is kept for the double spend. (At the heal the
/// simulator hands every node what it lacks, as mempool gossip would.)
fn load(sides: &[Vec<ValidatorIndex>]) -> (Vec<Submission>, Vec<Hash>) {
    let mut subs = Vec::new();
    let mut hashes = Vec::new();
    let mut nonces = [0u64; 4];
    for k in 0..(HEAL_MS / 400 - 1) {
        let from = (k % 4) as usize;
        let tx = transfer(from, (from + 1) % 4, 1 + k % 7, nonces[from]);
        nonces[from] += 1;
        hashes.push(tx.hash());
        subs.push(Submission {
            at_ms: 100 + k * 400,
            targets: sides[from % sides.len()].clone(),
            txs: vec![tx],
        });
    }
    (subs, hashes)
}

/// A scenario on a perfect network with nothing but what the caller adds.
fn base(kind: EngineKind, seed: u64, n: usize, sides: &[Vec<ValidatorIndex>]) -> Scenario {
    let mut s = Scenario::generate_for(kind, seed, n, 0, FaultSet::NONE).expect("scenario");
    s.without_faults();
    s.heal_ms = HEAL_MS;
    s.workload = load(sides).0;
    s
}

fn split(s: &mut Scenario, start_ms: u64, end_ms: u64, group: Vec<u8>) {
    s.partitions.push(Partition {
        start_ms,
        end_ms,
        group,
    });
    s.active.insert(Fault::Partition);
}

fn crash(s: &mut Scenario, v: usize, at_ms: u64, restart_ms: u64, mid_handle: Option<usize>) {
    s.crashes.push(CrashPlan {
        validator: ValidatorIndex(v as u32),
        at_ms,
        restart_ms,
        mid_handle,
    });
    s.active.insert(Fault::Crash);
}

fn byzantine(s: &mut Scenario, v: usize, strategy: Strategy, fault: Fault) {
    s.byzantine.push(ByzantinePlan {
        validator: ValidatorIndex(v as u32),
        twins: false,
        behaviours: vec![strategy],
    });
    s.byzantine_count = s.byzantine.len();
    s.active.insert(fault);
}

fn run_one(s: Scenario) -> Outcome {
    match s.consensus {
        EngineKind::PbftPow => run_scenario(
            s,
            Hooks::<PbftPow> {
                keep_chain: true,
                ..Hooks::default()
            },
        ),
        _ => run_scenario(
            s,
            Hooks::<PbftPos> {
                keep_chain: true,
                ..Hooks::default()
            },
        ),
    }
}

/// Runs `make(kind, seed)` for both fallbacks and `SEEDS` seeds on two
/// threads; every schedule must pass S1–S4 and liveness. Returns the
/// outcomes, per fallback.
fn run_named(
    name: &str,
    make: impl Fn(EngineKind, u64) -> Scenario + Sync,
) -> Vec<(EngineKind, Vec<Outcome>)> {
    run_seeds(name, SEEDS, make)
}

/// [`run_named`] on cases `0..seeds` (`make` picks the seed from the
/// case); the outcomes come back in case order.
fn run_seeds(
    name: &str,
    seeds: u64,
    make: impl Fn(EngineKind, u64) -> Scenario + Sync,
) -> Vec<(EngineKind, Vec<Outcome>)> {
    let mut all = Vec::new();
    for kind in [EngineKind::PbftPow, EngineKind::PbftPos] {
        let mut outcomes: Vec<(u64, Outcome)> = std::thread::scope(|t| {
            let make = &make;
            let halves: Vec<_> = [0, 1]
                .map(|h| {
                    t.spawn(move || {
                        (0..seeds)
                            .filter(|seed| seed % 2 == h)
                            .map(|seed| (seed, run_one(make(kind, seed))))
                            .collect::<Vec<_>>()
                    })
                })
                .into_iter()
                .collect();
            halves
                .into_iter()
                .flat_map(|h| h.join().expect("a schedule thread panicked"))
                .collect()
        });
        outcomes.sort_by_key(|(case, _)| *case);
        let outcomes: Vec<Outcome> = outcomes.into_iter().map(|(_, o)| o).collect();
        for o in &outcomes {
            assert!(
                o.violations.is_empty(),
                "{name}, {kind}, seed {}: {:?}",
                o.seed,
                o.violations
            );
            assert!(
                o.stats.heal_to_live_ms.is_some(),
                "{name}, {kind}, seed {}: not live after the heal",
                o.seed
            );
        }
        all.push((kind, outcomes));
    }
    all
}

fn total(outcomes: &[Outcome], f: impl Fn(&Outcome) -> u64) -> u64 {
    outcomes.iter().map(f).sum()
}

fn discarded(o: &Outcome) -> u64 {
    o.stats
        .reorg_depths
        .iter()
        .enumerate()
        .map(|(d, c)| d as u64 * c)
        .sum()
}

fn final_txs(o: &Outcome) -> Vec<Hash> {
    o.final_chain
        .iter()
        .flat_map(|b| b.txs.iter().map(SignedTransaction::hash))
        .collect()
}

/// Every schedule fell back somewhere and finalized tentative blocks.
fn assert_fell_back_and_finalized(name: &str, runs: &[(EngineKind, Vec<Outcome>)]) {
    for (kind, outcomes) in runs {
        for o in outcomes {
            assert!(
                o.stats.fallbacks > 0,
                "{name}, {kind}, seed {}: nobody fell back",
                o.seed
            );
        }
        assert!(
            total(outcomes, |o| o.stats.finalized) > 0,
            "{name}, {kind}: no tentative block was finalized"
        );
    }
}

/// Every transaction of the load is in the final chain at the end.
fn assert_load_final(name: &str, runs: &[(EngineKind, Vec<Outcome>)], load: &[Hash]) {
    for (kind, outcomes) in runs {
        for o in outcomes {
            let txs = final_txs(o);
            let missing = load.iter().filter(|h| !txs.contains(h)).count();
            assert_eq!(
                missing, 0,
                "{name}, {kind}, seed {}: {missing} transaction(s) not final",
                o.seed
            );
        }
    }
}

#[test]
fn f_plus_one_crash_then_restart() {
    let all = vec![validators(0..4)];
    let runs = run_named("f+1 crash", |kind, seed| {
        let mut s = base(kind, seed, 4, &all);
        // Two of four, the first one the primary of view 0 or not.
        let first = (seed % 4) as usize;
        crash(&mut s, first, 1_000, HEAL_MS, None);
        crash(&mut s, (first + 1) % 4, 1_200, HEAL_MS, None);
        s
    });
    assert_fell_back_and_finalized("f+1 crash", &runs);
    assert_load_final("f+1 crash", &runs, &load(&all).1);
}

#[test]
fn all_but_one_crash_then_restart() {
    let all = vec![validators(0..4)];
    let runs = run_named("all but one crash", |kind, seed| {
        let mut s = base(kind, seed, 4, &all);
        let survivor = (seed % 4) as usize;
        for (k, v) in (0..4).filter(|v| *v != survivor).enumerate() {
            crash(&mut s, v, 1_000 + 300 * k as u64, HEAL_MS, None);
        }
        s
    });
    assert_fell_back_and_finalized("all but one", &runs);
    assert_load_final("all but one", &runs, &load(&all).1);
}

/// A 2|2 split (n = 4) or 3|4 (n = 7): neither side holds a quorum, both
/// fall back and grow their own branch. After the heal exactly one branch
/// is finalized (S1, S4), and a double spend made across the split — one
/// transfer of account 4's nonce 0 to each side — survives on one side
/// only.
#[test]
fn splits_without_a_quorum_finalize_one_branch_and_one_side_of_a_double_spend() {
    for n in [4usize, 7] {
        let half = n / 2;
        let sides = vec![validators(0..half), validators(half..n)];
        // To the unfunded account 5, which nothing else pays.
        let spend_a = transfer(4, 5, 100, 0);
        let spend_b = transfer(4, 5, 200, 0);
        let name = format!("{half}|{} split", n - half);
        let runs = run_named(&name, |kind, seed| {
            let mut s = base(kind, seed, n, &sides);
            split(
                &mut s,
                800,
                HEAL_MS,
                (0..n).map(|i| u8::from(i >= half)).collect(),
            );
            for (side, tx) in sides.iter().zip([&spend_a, &spend_b]) {
                s.workload.push(Submission {
                    at_ms: 4_000,
                    targets: side.clone(),
                    txs: vec![tx.clone()],
                });
            }
            s
        });
        assert_fell_back_and_finalized(&name, &runs);
        assert_load_final(&name, &runs, &load(&sides).1);
        for (kind, outcomes) in &runs {
            for o in outcomes {
                let state = o.final_state.as_ref().expect("kept");
                let paid = state.account(&account(5)).map_or(0, |a| a.balance);
                assert!(
                    paid == 100 || paid == 200,
                    "{name}, {kind}, seed {}: account 5 holds {paid}: the double spend \
                     did not survive on exactly one side",
                    o.seed
                );
            }
            assert!(
                total(outcomes, discarded) > 0,
                "{name}, {kind}: no side discarded a branch"
            );
        }
    }
}

/// 5|2 at n = 7: the five hold a quorum and keep finalizing with PBFT
/// (blocks with plain commit certificates during the split); the two fall
/// back and discard their tentative blocks on the heal.
#[test]
fn a_five_two_split_keeps_pbft_on_the_majority_and_the_minority_discards() {
    let sides = vec![validators(0..5), validators(5..7)];
    let (_, load_hashes) = load(&sides);
    let runs = run_named("5|2 split", |kind, seed| {
        let mut s = base(kind, seed, 7, &sides);
        split(
            &mut s,
            800,
            HEAL_MS,
            (0..7).map(|i| u8::from(i >= 5)).collect(),
        );
        s
    });
    for (kind, outcomes) in &runs {
        for o in outcomes {
            // The majority's blocks of the split are PBFT's own.
            let certified_in_split = o
                .final_chain
                .iter()
                .filter(|b| matches!(b.justification, Justification::Pbft(_)))
                .filter(|b| b.header.timestamp_ms > 2_000 && b.header.timestamp_ms < HEAL_MS)
                .count();
            assert!(
                certified_in_split > 0,
                "5|2, {kind}, seed {}: the majority did not keep finalizing",
                o.seed
            );
        }
        assert!(
            total(outcomes, |o| o.stats.fallbacks) > 0,
            "5|2, {kind}: the minority never fell back"
        );
        assert!(
            total(outcomes, discarded) > 0,
            "5|2, {kind}: the minority discarded nothing"
        );
    }
    assert_load_final("5|2 split", &runs, &load_hashes);
}

/// Partitions that come and go: 2|2, healed, 1|3, healed, the other 2|2.
#[test]
fn flapping_partitions() {
    let all = vec![validators(0..4)];
    let runs = run_named("flapping", |kind, seed| {
        let mut s = base(kind, seed, 4, &all);
        let r = seed * 97 % 500;
        split(&mut s, 500, 3_500 + r, vec![0, 0, 1, 1]);
        split(&mut s, 4_500, 6_500 + r, vec![0, 1, 1, 1]);
        split(&mut s, 7_500, 10_500 + r, vec![0, 1, 0, 1]);
        s
    });
    assert_fell_back_and_finalized("flapping", &runs);
    assert_load_final("flapping", &runs, &load(&all).1);
}

/// A Byzantine validator during the outage and the recovery (2|2 split,
/// then healed): as primary it proposes another branch than the replicas
/// hold (equivocation: an inferior branch to some), signs wrongly (an
/// invalid one), withholds everything, or forges view changes. Its
/// fallback half misbehaves too (a selfish miner, an equivocating slot
/// leader). Every strategy runs with every validator as the liar, and for
/// every strategy and fallback at least one schedule must have the liar
/// lead a view of the recovery (a view honest replicas were in, or
/// changing to, between the heal and liveness): the Byzantine primary the
/// recovery has to get past, checked rather than hoped for.
#[test]
fn a_byzantine_validator_during_recovery() {
    let all = vec![validators(0..4)];
    let strategies = [
        (Strategy::Equivocate, Fault::Equivocate),
        (Strategy::BadSig, Fault::BadSig),
        (Strategy::Silent(SilentMode::All), Fault::Silent),
        (Strategy::ForgedViewChange, Fault::ForgedViewChange),
    ];
    // Case c: strategy c / 4 with validator c % 4 as the liar, all four
    // liars on one seed. The split lasts until the heal, so the recovery
    // (and `recovery_views`) starts there.
    let runs = run_seeds("Byzantine in recovery", 16, |kind, case| {
        let mut s = base(kind, case / 4, 4, &all);
        split(&mut s, 800, HEAL_MS, vec![0, 0, 1, 1]);
        let (strategy, fault) = strategies[(case / 4) as usize].clone();
        byzantine(&mut s, (case % 4) as usize, strategy, fault);
        s
    });
    for (kind, outcomes) in &runs {
        assert!(
            total(outcomes, |o| o.stats.finalized) > 0,
            "{kind}: nothing finalized"
        );
        for (k, (strategy, _)) in strategies.iter().enumerate() {
            let led: Vec<u64> = (0..4)
                .filter(|liar| {
                    outcomes[k * 4 + *liar as usize]
                        .stats
                        .recovery_views
                        .iter()
                        .any(|v| v % 4 == *liar)
                })
                .collect();
            assert!(
                !led.is_empty(),
                "{kind}, {strategy:?}: the liar never led a view of the recovery"
            );
        }
    }
}

/// A crash in the middle of finalizing: the quorum returns at 8 s and a
/// validator crashes while PBFT finalizes the branch — between inputs, or
/// in the middle of one input's outputs — and restarts at 12 s.
#[test]
fn a_crash_during_re_finalization() {
    let all = vec![validators(0..4)];
    let runs = run_named("crash in re-finalization", |kind, seed| {
        let mut s = base(kind, seed, 4, &all);
        split(&mut s, 800, 8_000, vec![0, 0, 1, 1]);
        let mid = (seed % 3 != 0).then_some((seed % 5) as usize);
        crash(
            &mut s,
            (seed % 4) as usize,
            8_100 + seed * 131 % 1_500,
            HEAL_MS,
            mid,
        );
        s
    });
    assert_fell_back_and_finalized("crash in re-finalization", &runs);
    assert_load_final("crash in re-finalization", &runs, &load(&all).1);
}

/// PBFT+PoS only: a slot leader that signs two blocks for its slots while
/// PBFT has no quorum (two validators crashed). The honest nodes catch it
/// (evidence) and still finalize one branch after the restart.
#[test]
fn pos_equivocation_during_the_fallback() {
    let all = vec![validators(0..4)];
    let mut outcomes = Vec::new();
    for seed in 0..SEEDS {
        let mut s = base(EngineKind::PbftPos, seed, 4, &all);
        let liar = (seed % 4) as usize;
        let crashed: Vec<usize> = (0..4).filter(|v| *v != liar).take(2).collect();
        for (k, v) in crashed.iter().enumerate() {
            crash(&mut s, *v, 1_000 + 200 * k as u64, HEAL_MS, None);
        }
        byzantine(&mut s, liar, Strategy::Equivocate, Fault::Equivocate);
        let o = run_one(s);
        assert!(o.violations.is_empty(), "seed {seed}: {:?}", o.violations);
        assert!(o.stats.heal_to_live_ms.is_some(), "seed {seed}: not live");
        outcomes.push(o);
    }
    assert!(
        total(&outcomes, |o| o.stats.evidence) > 0,
        "no equivocating slot leader was caught"
    );
    assert!(total(&outcomes, |o| o.stats.fallbacks) > 0);
    assert!(total(&outcomes, |o| o.stats.finalized) > 0);
}

/// The one seed of the 4,000 random hybrid schedules of session 14 that
/// failed: every replica crashed around the checkpoint at height 4 and
/// restarted; the CHECKPOINT votes in flight were lost, the checkpoint
/// never became stable, the watermark window stayed full and PBFT never
/// finalized again (final 4, head 34). A restarted replica now resends
/// its CHECKPOINT votes above the stable checkpoint.
#[test]
fn seed_515_restarted_replicas_resend_their_checkpoints() {
    for kind in [EngineKind::PbftPos, EngineKind::PbftPow] {
        let s = Scenario::generate_for(kind, 515, 4, 0, FaultSet::all()).expect("scenario");
        let o = run_one(s);
        assert!(o.violations.is_empty(), "{kind}: {:?}", o.violations);
        assert!(o.stats.heal_to_live_ms.is_some(), "{kind}: not live");
    }
}
