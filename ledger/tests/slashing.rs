//! Proof-of-stake slashing in execution: evidence in a block moves the
//! genesis fraction of the offender's stake account to the slashed-stake
//! account, once per offender; the supply never changes; chains of other
//! engines (no stake accounts) record evidence and change nothing.

mod common;

use common::*;
use phalanx_ledger::{
    execute, slashed_address, stake_address, EngineKind, Genesis, Payload, Rules, State,
    ValidatorIndex, VerifyAll,
};

fn pos_genesis(slash_percent: u64) -> Genesis {
    let mut g = genesis();
    g.consensus.engine = EngineKind::Pos;
    g.consensus.slash_percent = slash_percent;
    for (i, v) in g.validators.iter_mut().enumerate() {
        v.stake = 100 * (i as u64 + 1);
    }
    g.validate().expect("a valid PoS genesis");
    g
}

fn run(g: &Genesis, state: &State, height: u64, evidence: Vec<phalanx_ledger::Evidence>) -> State {
    let payload = Payload {
        chain_id: g.chain_id.clone(),
        height: phalanx_ledger::Height(height),
        round: height,
        proposer: ValidatorIndex(0),
        timestamp_ms: height,
        txs: vec![],
        evidence,
    };
    let fee_to = g.fee_recipient(payload.proposer);
    let executed = execute(state, &payload, &fee_to, g.rules(), &VerifyAll);
    let mut next = state.clone();
    next.apply(&executed.diff);
    next
}

fn balance(s: &State, a: &phalanx_ledger::Address) -> u64 {
    s.account(a).map_or(0, |a| a.balance)
}

#[test]
fn evidence_slashes_the_genesis_fraction_once_and_keeps_the_supply() {
    let g = pos_genesis(40);
    let s0 = g.state();
    let offender = stake_address(ValidatorIndex(2));
    assert_eq!(balance(&s0, &offender), 300);
    let s1 = run(&g, &s0, 1, vec![equivocation(2, 5, 5)]);
    assert_eq!(balance(&s1, &offender), 180);
    assert_eq!(balance(&s1, &slashed_address()), 120);
    assert_eq!(s1.total_supply(), s0.total_supply());
    // Caught again (other evidence, later block): no second slash.
    let s2 = run(
        &g,
        &s1,
        2,
        vec![equivocation(2, 6, 6), equivocation(1, 6, 6)],
    );
    assert_eq!(balance(&s2, &offender), 180);
    assert_eq!(balance(&s2, &stake_address(ValidatorIndex(1))), 120);
    assert_eq!(balance(&s2, &slashed_address()), 200);
    assert_eq!(s2.total_supply(), s0.total_supply());
}

#[test]
fn chains_without_stake_accounts_record_evidence_and_change_nothing() {
    let g = genesis();
    assert_eq!(g.rules(), Rules::from(g.consensus.min_fee));
    let s0 = g.state();
    assert_eq!(s0.account(&stake_address(ValidatorIndex(0))), None);
    let s1 = run(&g, &s0, 1, vec![equivocation(2, 5, 5)]);
    // Only the height and root moved: no account changed.
    assert_eq!(
        s1.accounts().collect::<Vec<_>>().len(),
        s0.accounts().collect::<Vec<_>>().len()
    );
    assert_eq!(balance(&s1, &slashed_address()), 0);
    // Even with a slashing rule, no stake account means nothing to slash.
    let forced = Rules {
        min_fee: 0,
        slash_percent: 100,
    };
    let payload = Payload {
        chain_id: g.chain_id.clone(),
        height: phalanx_ledger::Height(1),
        round: 0,
        proposer: ValidatorIndex(0),
        timestamp_ms: 1,
        txs: vec![],
        evidence: vec![equivocation(2, 5, 5)],
    };
    let executed = execute(
        &s0,
        &payload,
        &g.fee_recipient(ValidatorIndex(0)),
        forced,
        &VerifyAll,
    );
    assert!(executed.diff.changed.is_empty());
}

#[test]
fn a_pos_genesis_with_bad_staking_parameters_is_refused() {
    let mut g = pos_genesis(100);
    g.consensus.slash_percent = 101;
    assert!(g
        .validate()
        .unwrap_err()
        .to_string()
        .contains("slash_percent"));
    let mut g = pos_genesis(100);
    g.consensus.slot_ms = 0;
    assert!(g.validate().unwrap_err().to_string().contains("slot_ms"));
}
