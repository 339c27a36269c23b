//! SM(m), the signed-messages algorithm of LSP'82 §4, in synchronous rounds:
//! round r delivers the orders carrying r signatures. Each lieutenant keeps
//! the set V of orders it accepted; a loyal one relays an order the first
//! time it accepts its value, if the chain is at most m long, to every
//! lieutenant that has not signed it, and finally obeys choice(V).

use super::chain::{KeyRing, SignedOrder};
use super::model::{Algorithm, GeneralId, Order, Scenario};
use super::outcome::{finish, Delivery, MessageLog, Outcome, SignatureStats};
use super::strategy::Adversary;
use std::collections::{BTreeMap, BTreeSet};

/// LSP'82 §4: choice(V) — the single element when V has one, RETREAT when it
/// is empty or holds both orders.
pub fn choice(v: &BTreeSet<Order>) -> Order {
    match (v.len(), v.first()) {
        (1, Some(&only)) => only,
        _ => Order::DEFAULT,
    }
}

/// Runs SM(m) for `scenario` with fresh deterministic keys, keeping every
/// message for the trace.
pub fn run_sm(scenario: &Scenario) -> Outcome {
    run_sm_with(scenario, &mut KeyRing::new(scenario.generals()), true)
}

/// Runs SM(m) for `scenario` with the given keys (which must cover every
/// general; a memoising key ring speeds up searches), keeping the messages
/// themselves only if `keep_messages`.
pub fn run_sm_with(scenario: &Scenario, keys: &mut KeyRing, keep_messages: bool) -> Outcome {
    let (signed_before, checked_before) = keys.counters();
    let m = scenario.m();
    let lieutenants = scenario.lieutenants();
    let mut adversary = Adversary::new(scenario);
    let mut log = MessageLog::new(m, keep_messages);
    let mut rejected_chains = 0;
    // V for every lieutenant; for a traitor, the values it has reacted to.
    let mut v: BTreeMap<GeneralId, BTreeSet<Order>> =
        lieutenants.iter().map(|&g| (g, BTreeSet::new())).collect();

    // Round 1 — step (1): the commander signs and sends its order.
    let mut inbox: Vec<Envelope> = Vec::new();
    let mut issued: BTreeMap<Order, SignedOrder> = BTreeMap::new();
    for &to in &lieutenants {
        match adversary.send(GeneralId::COMMANDER, to, scenario.order()) {
            Some(value) => {
                let order = issued
                    .entry(value)
                    .or_insert_with(|| keys.issue(value))
                    .clone();
                inbox.push(Envelope {
                    from: GeneralId::COMMANDER,
                    to,
                    order,
                });
            }
            None => {
                let path = [GeneralId::COMMANDER];
                log.push(
                    1,
                    (GeneralId::COMMANDER, to),
                    None,
                    &path,
                    true,
                    Delivery::Withheld,
                );
            }
        }
    }

    for round in 1..=m + 1 {
        let mut next = Vec::new();
        for env in inbox {
            let verdict = keys.verify(&env.order, env.from, env.to, m + 1);
            let value = env.order.value;
            let from_traitor = adversary.is_traitor(env.from);
            let is_new = verdict.is_ok() && v.get_mut(&env.to).is_some_and(|set| set.insert(value));
            let delivery = match (&verdict, adversary.is_traitor(env.to)) {
                (_, true) => Delivery::ToTraitor,
                (Err(e), false) => {
                    rejected_chains += 1;
                    Delivery::Rejected(e.clone())
                }
                (Ok(()), false) if is_new => Delivery::Accepted,
                (Ok(()), false) => Delivery::Known,
            };
            let signers = env.order.signers();
            log.push(
                round,
                (env.from, env.to),
                Some(value),
                &signers,
                from_traitor,
                delivery,
            );
            // Step (2)(A): a new value with fewer than m lieutenant signatures
            // (chain length ≤ m) goes, signed, to every lieutenant not in it.
            if !is_new || env.order.chain.len() > m {
                continue;
            }
            let recipients = lieutenants
                .iter()
                .copied()
                .filter(|&j| j != env.to && !env.order.is_signed_by(j));
            let mut honest: Option<SignedOrder> = None;
            for j in recipients {
                match adversary.send(env.to, j, value) {
                    None => {
                        // The chain it would have sent.
                        let mut path = signers.clone();
                        path.push(env.to);
                        log.push(
                            round + 1,
                            (env.to, j),
                            None,
                            &path,
                            true,
                            Delivery::Withheld,
                        );
                    }
                    Some(sent) if sent == value => {
                        let order = honest
                            .get_or_insert_with(|| keys.relay(&env.order, env.to))
                            .clone();
                        next.push(Envelope {
                            from: env.to,
                            to: j,
                            order,
                        });
                    }
                    Some(other) => {
                        // A traitor changes the order: it can re-sign only
                        // traitors' links (LSP'82 §4, assumption A4).
                        let forged = keys.tamper(&env.order, other, |g| adversary.is_traitor(g));
                        next.push(Envelope {
                            from: env.to,
                            to: j,
                            order: keys.relay(&forged, env.to),
                        });
                    }
                }
            }
        }
        inbox = next;
    }

    // Step (3): every loyal lieutenant obeys choice(V).
    let decisions: BTreeMap<GeneralId, (Order, Vec<Order>)> = v
        .into_iter()
        .map(|(g, set)| (g, (choice(&set), set.into_iter().collect())))
        .collect();
    let (signed, checked) = keys.counters();
    let stats = SignatureStats {
        signed: signed - signed_before,
        checked: checked - checked_before,
        rejected_chains,
    };
    finish(scenario, Algorithm::Sm, log, &decisions, Some(stats))
}

/// A signed order in flight.
struct Envelope {
    from: GeneralId,
    to: GeneralId,
    order: SignedOrder,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_is_the_single_value_or_retreat() {
        let mut v = BTreeSet::new();
        assert_eq!(choice(&v), Order::Retreat);
        v.insert(Order::Attack);
        assert_eq!(choice(&v), Order::Attack);
        v.insert(Order::Retreat);
        assert_eq!(choice(&v), Order::Retreat);
    }
}
