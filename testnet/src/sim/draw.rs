//! How a scenario draws its parts from the seed: the active faults, the
//! consensus parameters, the network, partitions, crashes, the Byzantine
//! validators and the twins' connectivity. Each part uses its own generator
//! stream (see [`super::scenario`]), so changing one never shifts another.

use super::faults::{Fault, FaultSet};
use super::rng::Rng;
use super::scenario::{
    account, keys, ByzantinePlan, CrashPlan, NetParams, Partition, SilentMode, Strategy, TwinEpoch,
    ACCOUNTS, ACCOUNT_BALANCE, CHAIN_ID, VIEW_CHANGE_TIMEOUT_MS,
};
use phalanx_ledger::{ConsensusParams, Genesis, GenesisAccount, ValidatorIndex, ValidatorInfo};

pub(super) fn choose_active(r: &mut Rng, requested: FaultSet, byzantine: usize) -> FaultSet {
    let mut active: FaultSet = requested.iter().filter(|_| r.chance(0.5)).collect();
    let byz_requested: Vec<Fault> = requested.byzantine().iter().collect();
    if byzantine == 0 {
        for f in byz_requested {
            active.remove(f);
        }
    } else if active.byzantine().is_empty() && !byz_requested.is_empty() {
        // Byzantine validators were asked for: give them something to do.
        active.insert(*r.pick(&byz_requested));
    }
    if active.is_empty() {
        let candidates: Vec<Fault> = requested
            .iter()
            .filter(|f| byzantine > 0 || !f.is_byzantine())
            .collect();
        if !candidates.is_empty() {
            active.insert(*r.pick(&candidates));
        }
    }
    active
}

pub(super) fn choose_params(r: &mut Rng) -> ConsensusParams {
    let checkpoint_interval = r.range(2, 4);
    ConsensusParams {
        max_block_txs: r.range(2, 8) as u32,
        batch_timeout_ms: r.range(5, 20),
        checkpoint_interval,
        watermark_window: checkpoint_interval * r.range(2, 4),
        view_change_timeout_ms: VIEW_CHANGE_TIMEOUT_MS,
        ..ConsensusParams::default()
    }
}

pub(super) fn make_genesis(n: usize, params: &ConsensusParams) -> Genesis {
    let k = keys();
    Genesis {
        chain_id: CHAIN_ID.into(),
        genesis_time_ms: 0,
        validators: (0..n)
            .map(|i| ValidatorInfo {
                name: format!("node{i}"),
                public_key: k.validators[i].public(),
                node_key: k.node_keys[i].public(),
                stake: 1,
                p2p_address: format!("/ip4/127.0.0.1/tcp/{}", 26000 + i),
                api_address: String::new(),
            })
            .collect(),
        accounts: (0..ACCOUNTS)
            .map(|i| GenesisAccount {
                address: account(i),
                balance: ACCOUNT_BALANCE,
            })
            .collect(),
        consensus: params.clone(),
    }
}

/// The shortest one-way delay under `slow`: half the view-change timeout.
const SLOW_MIN_DELAY_MS: u64 = super::scenario::VIEW_CHANGE_TIMEOUT_MS / 2;

pub(super) fn choose_net(r: &mut Rng, active: FaultSet) -> NetParams {
    let max_delay_ms = r.range(2, 25);
    // Slow: longer than the base view-change timeout allows (see Fault::Slow).
    let (min_delay_ms, max_delay_ms) = if active.contains(Fault::Slow) {
        (
            SLOW_MIN_DELAY_MS,
            r.range(2 * SLOW_MIN_DELAY_MS, 3 * SLOW_MIN_DELAY_MS),
        )
    } else {
        (1, max_delay_ms)
    };
    NetParams {
        min_delay_ms,
        max_delay_ms,
        spike_prob: if active.contains(Fault::Delay) {
            r.range(2, 15) as f64 / 100.0
        } else {
            0.0
        },
        spike_max_ms: r.range(150, 1_200),
        loss: if active.contains(Fault::Loss) {
            r.range(2, 25) as f64 / 100.0
        } else {
            0.0
        },
        dup: if active.contains(Fault::Dup) {
            r.range(2, 20) as f64 / 100.0
        } else {
            0.0
        },
        fifo: !active.contains(Fault::Reorder),
    }
}

pub(super) fn choose_partitions(r: &mut Rng, n: usize, heal_ms: u64) -> Vec<Partition> {
    let count = r.range(1, 2);
    (0..count)
        .map(|_| {
            let start_ms = r.range(0, heal_ms - 200);
            let end_ms = (start_ms + r.range(150, 1_200)).min(heal_ms);
            let group = match r.below(3) {
                // Isolate one validator.
                0 => {
                    let lone = r.index(n);
                    (0..n).map(|i| u8::from(i == lone)).collect()
                }
                // Three groups.
                1 => (0..n).map(|_| r.below(3) as u8).collect(),
                // Two random halves.
                _ => (0..n).map(|_| r.below(2) as u8).collect(),
            };
            Partition {
                start_ms,
                end_ms,
                group,
            }
        })
        .collect()
}

/// Adds `plan` unless its validator is already down (or just restarting)
/// during it under another plan.
fn push_unless_overlapping(plans: &mut Vec<CrashPlan>, plan: CrashPlan) {
    let overlaps = plans.iter().any(|p| {
        p.validator == plan.validator
            && plan.at_ms <= p.restart_ms + 1
            && p.at_ms <= plan.restart_ms + 1
    });
    if !overlaps {
        plans.push(plan);
    }
}

pub(super) fn choose_crashes(
    r: &mut Rng,
    honest: &[ValidatorIndex],
    heal_ms: u64,
) -> Vec<CrashPlan> {
    let mut plans: Vec<CrashPlan> = Vec::new();
    for _ in 0..r.range(1, 3) {
        let validator = *r.pick(honest);
        let at_ms = r.range(30, heal_ms - 100);
        let restart_ms = (at_ms + r.range(20, 800)).min(heal_ms);
        let mid_handle = if r.chance(0.5) {
            Some(r.range(0, 4) as usize)
        } else {
            None
        };
        push_unless_overlapping(
            &mut plans,
            CrashPlan {
                validator,
                at_ms,
                restart_ms,
                mid_handle,
            },
        );
    }
    // Sometimes every honest validator stops and starts again, as an
    // operator restarting a whole testnet does: no replica then remembers
    // anything it did not persist (the simulator found a replica left in
    // a view change alone because nobody could resend the NEW-VIEW it
    // missed, issue 22). The draws come after the single crashes so the
    // schedules drawn before this rule keep their single crashes.
    if r.chance(0.3) {
        let at_ms = r.range(30, heal_ms - 100);
        let restart_ms = (at_ms + r.range(20, 400)).min(heal_ms);
        for &validator in honest {
            push_unless_overlapping(
                &mut plans,
                CrashPlan {
                    validator,
                    at_ms,
                    restart_ms,
                    mid_handle: None,
                },
            );
        }
    }
    plans.sort_by_key(|p| p.at_ms);
    plans
}

pub(super) fn choose_byzantine(
    r: &mut Rng,
    n: usize,
    count: usize,
    active: FaultSet,
) -> Vec<ByzantinePlan> {
    let mut indices: Vec<usize> = (0..n).collect();
    r.shuffle(&mut indices);
    let mut chosen: Vec<usize> = indices[..count].to_vec();
    // Half the time the first primary is Byzantine, so an equivocating or
    // forging primary acts from the start.
    if count > 0 && !chosen.contains(&0) && r.chance(0.5) {
        chosen[0] = 0;
    }
    chosen.sort_unstable();
    let pool: Vec<Fault> = active
        .byzantine()
        .iter()
        .filter(|f| *f != Fault::Twins)
        .collect();
    let twins_active = active.contains(Fault::Twins);
    let mut plans = Vec::new();
    for (k, v) in chosen.into_iter().enumerate() {
        let validator = ValidatorIndex(v as u32);
        // With twins active, the first Byzantine validator is a twin pair;
        // the others are twins too when nothing else is active.
        let twins = twins_active && (k == 0 || pool.is_empty() || r.chance(0.3));
        let mut behaviours = Vec::new();
        if !twins && !pool.is_empty() {
            let mut picked: Vec<Fault> = pool.iter().copied().filter(|_| r.chance(0.5)).collect();
            if picked.is_empty() {
                picked.push(*r.pick(&pool));
            }
            for f in picked {
                behaviours.push(match f {
                    Fault::Equivocate => Strategy::Equivocate,
                    Fault::ConflictingVotes => Strategy::ConflictingVotes,
                    Fault::Silent => Strategy::Silent(choose_silent(r, n, validator)),
                    Fault::BadSig => Strategy::BadSig,
                    Fault::StaleReplay => Strategy::StaleReplay,
                    Fault::ForgedViewChange => Strategy::ForgedViewChange,
                    Fault::Flood => Strategy::Flood,
                    _ => Strategy::BadSync,
                });
            }
        }
        plans.push(ByzantinePlan {
            validator,
            twins,
            behaviours,
        });
    }
    plans
}

fn choose_silent(r: &mut Rng, n: usize, me: ValidatorIndex) -> SilentMode {
    match r.below(4) {
        0 => SilentMode::All,
        1 => {
            let towards: Vec<ValidatorIndex> = (0..n as u32)
                .map(ValidatorIndex)
                .filter(|v| *v != me && r.chance(0.5))
                .collect();
            SilentMode::Towards(towards)
        }
        2 => SilentMode::Commits,
        _ => SilentMode::Random,
    }
}

pub(super) fn choose_twin_epochs(r: &mut Rng, n: usize, heal_ms: u64) -> Vec<TwinEpoch> {
    let mut epochs = Vec::new();
    let mut t = 0;
    while t < heal_ms {
        epochs.push(TwinEpoch {
            start_ms: t,
            sees: (0..n).map(|_| r.range(1, 3) as u8).collect(),
        });
        t += r.range(200, 800);
    }
    // After healing the twins stay Byzantine: a last, fixed connectivity.
    epochs.push(TwinEpoch {
        start_ms: heal_ms,
        sees: (0..n).map(|_| r.range(1, 3) as u8).collect(),
    });
    epochs
}
