//! OM(m), the oral-messages algorithm of LSP'82 §3, run synchronously in one
//! process. A loyal general relays exactly what it received; a traitor's
//! messages come from its strategy. The recursion follows the paper's
//! definition line by line; it never looks at who is loyal when deciding.

use super::model::{Algorithm, GeneralId, Order, Scenario};
use super::outcome::{finish, Delivery, MessageLog, Outcome};
use super::strategy::Adversary;
use std::collections::BTreeMap;

/// LSP'82 §3: "majority(v1, …, vn−1)" — the value most of the vᵢ hold, and
/// RETREAT when there is no majority (a tie).
pub fn majority(values: &[Order]) -> Order {
    let attack = values.iter().filter(|&&v| v == Order::Attack).count();
    if 2 * attack > values.len() {
        Order::Attack
    } else if 2 * attack < values.len() {
        Order::Retreat
    } else {
        Order::DEFAULT
    }
}

/// Runs OM(m) for `scenario` (m = `scenario.m()`), commander G0, keeping
/// every message for the trace.
pub fn run_om(scenario: &Scenario) -> Outcome {
    run_om_logged(scenario, true)
}

/// Runs OM(m), keeping the messages themselves only if `keep_messages`
/// (the counts are always kept).
pub fn run_om_logged(scenario: &Scenario, keep_messages: bool) -> Outcome {
    let mut run = OralRun {
        adversary: Adversary::new(scenario),
        log: MessageLog::new(scenario.m(), keep_messages),
    };
    let lieutenants = scenario.lieutenants();
    let mut path = vec![GeneralId::COMMANDER];
    let uses = run.om(scenario.m(), scenario.order(), &lieutenants, &mut path);
    let decisions: BTreeMap<GeneralId, (Order, Vec<Order>)> =
        lieutenants.into_iter().zip(uses).collect();
    finish(scenario, Algorithm::Om, run.log, &decisions, None)
}

struct OralRun {
    adversary: Adversary,
    log: MessageLog,
}

impl OralRun {
    /// OM(m) with commander `path.last()` holding `held`, among `lieutenants`.
    /// Returns, for each lieutenant (same order), the value it uses for this
    /// commander and the values it took the majority of.
    fn om(
        &mut self,
        m: usize,
        held: Order,
        lieutenants: &[GeneralId],
        path: &mut Vec<GeneralId>,
    ) -> Vec<(Order, Vec<Order>)> {
        let commander = *path.last().expect("path starts at the commander");
        let round = path.len();
        // Step (1): the commander sends its value to every lieutenant. A
        // lieutenant that receives nothing uses RETREAT (OM(0) step 2, and
        // "if no value is received" in OM(m) step 2).
        let received: Vec<Order> = lieutenants
            .iter()
            .map(|&to| {
                let value = self.adversary.send(commander, to, held);
                let delivery = if value.is_some() {
                    Delivery::Delivered
                } else {
                    Delivery::Withheld
                };
                let from_traitor = self.adversary.is_traitor(commander);
                self.log
                    .push(round, (commander, to), value, path, from_traitor, delivery);
                value.unwrap_or(Order::DEFAULT)
            })
            .collect();
        if m == 0 {
            // OM(0) step (2): each lieutenant uses the value it received.
            return received.into_iter().map(|v| (v, vec![v])).collect();
        }
        // Step (2): each lieutenant i acts as the commander in OM(m−1),
        // sending vᵢ to the n−2 other lieutenants.
        let relayed: Vec<Vec<(Order, Vec<Order>)>> = lieutenants
            .iter()
            .enumerate()
            .map(|(i, &lt)| {
                let others: Vec<GeneralId> =
                    lieutenants.iter().copied().filter(|&g| g != lt).collect();
                path.push(lt);
                let uses = self.om(m - 1, received[i], &others, path);
                path.pop();
                uses
            })
            .collect();
        // Step (3): lieutenant i uses majority(v1, …, vn−1), where vᵢ is what
        // it received from the commander and vⱼ what OM(m−1) gave it for j.
        (0..lieutenants.len())
            .map(|i| {
                let inputs: Vec<Order> = (0..lieutenants.len())
                    .map(|j| match j.cmp(&i) {
                        std::cmp::Ordering::Equal => received[i],
                        // In j's sub-run the lieutenants are ours minus j.
                        std::cmp::Ordering::Less => relayed[j][i - 1].0,
                        std::cmp::Ordering::Greater => relayed[j][i].0,
                    })
                    .collect();
                (majority(&inputs), inputs)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_defaults_to_retreat_on_ties() {
        use Order::*;
        assert_eq!(majority(&[Attack, Attack, Retreat]), Attack);
        assert_eq!(majority(&[Attack, Retreat]), Retreat);
        assert_eq!(majority(&[Retreat, Attack, Retreat]), Retreat);
        assert_eq!(majority(&[]), Retreat);
    }
}
