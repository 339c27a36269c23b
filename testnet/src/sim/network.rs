//! The simulated network: per-message delay, loss, duplication and
//! reordering, partitions that heal, and the Twins connectivity that decides
//! which twin each peer talks to.
//!
//! Before the heal time the network misbehaves as the scenario says; from the
//! heal time on it only delays (by the base delay, in per-link order when
//! the scenario asks for FIFO) and never loses, duplicates or partitions —
//! except a partition with `end_ms = u64::MAX`, which a test uses to model a
//! network that never heals.

use super::rng::Rng;
use super::scenario::{NetParams, Partition, TwinEpoch};
use phalanx_ledger::ValidatorIndex;
use serde::Serialize;
use std::collections::BTreeMap;

/// Where a running engine sits in the network: its validator index, and for
/// a twin, which of the two it is (1 or 2; 0 = not a twin).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The validator.
    pub validator: ValidatorIndex,
    /// 0, or 1/2 for the first/second twin.
    pub twin: u8,
}

/// Network counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NetStats {
    /// Copies scheduled for delivery.
    pub sent: u64,
    /// Lost to the loss probability.
    pub lost: u64,
    /// Extra copies from duplication.
    pub duplicated: u64,
    /// Delayed by a spike.
    pub spiked: u64,
    /// Dropped because sender and receiver were cut off from each other.
    pub cut: u64,
}

/// The network of one schedule.
#[derive(Debug)]
pub struct Network {
    params: NetParams,
    partitions: Vec<Partition>,
    twin_epochs: BTreeMap<ValidatorIndex, Vec<TwinEpoch>>,
    heal_ms: u64,
    rng: Rng,
    last_on_link: BTreeMap<(usize, usize), u64>,
    /// Counters.
    pub stats: NetStats,
}

impl Network {
    /// A network following `params` until `heal_ms`.
    pub fn new(
        params: NetParams,
        partitions: Vec<Partition>,
        twin_epochs: BTreeMap<ValidatorIndex, Vec<TwinEpoch>>,
        heal_ms: u64,
        rng: Rng,
    ) -> Network {
        Network {
            params,
            partitions,
            twin_epochs,
            heal_ms,
            rng,
            last_on_link: BTreeMap::new(),
            stats: NetStats::default(),
        }
    }

    /// Whether `a` and `b` can exchange messages at time `t`.
    pub fn connected(&self, t: u64, a: Endpoint, b: Endpoint) -> bool {
        let cut = self.partitions.iter().any(|p| {
            p.start_ms <= t
                && t < p.end_ms
                && p.group[a.validator.as_usize()] != p.group[b.validator.as_usize()]
        });
        !cut && self.twin_sees(t, a, b) && self.twin_sees(t, b, a)
    }

    /// Whether peer `peer` is connected to `twin` (true if `twin` is no twin).
    fn twin_sees(&self, t: u64, twin: Endpoint, peer: Endpoint) -> bool {
        if twin.twin == 0 {
            return true;
        }
        let Some(epochs) = self.twin_epochs.get(&twin.validator) else {
            return true;
        };
        let epoch = epochs
            .iter()
            .rev()
            .find(|e| e.start_ms <= t)
            .or(epochs.first());
        epoch.is_none_or(|e| e.sees[peer.validator.as_usize()] & twin.twin != 0)
    }

    /// One base delay.
    fn base_delay(&mut self) -> u64 {
        self.rng
            .range(self.params.min_delay_ms, self.params.max_delay_ms)
    }

    /// The delivery times of one message sent at `now` on link
    /// (from_slot, to_slot): none if lost, two if duplicated.
    pub fn schedule(&mut self, now: u64, from_slot: usize, to_slot: usize) -> Vec<u64> {
        let faulty = now < self.heal_ms;
        if faulty && self.params.loss > 0.0 && self.rng.chance(self.params.loss) {
            self.stats.lost += 1;
            return Vec::new();
        }
        let mut at = now + self.base_delay();
        if faulty && self.params.spike_prob > 0.0 && self.rng.chance(self.params.spike_prob) {
            at += self.rng.range(1, self.params.spike_max_ms);
            self.stats.spiked += 1;
        }
        if self.params.fifo {
            let last = self.last_on_link.entry((from_slot, to_slot)).or_insert(0);
            at = at.max(*last);
            *last = at;
        }
        let mut times = vec![at];
        if faulty && self.params.dup > 0.0 && self.rng.chance(self.params.dup) {
            // The copy takes its own path: it may overtake the original.
            times.push(now + self.base_delay() + self.rng.range(0, 50));
            self.stats.duplicated += 1;
        }
        self.stats.sent += times.len() as u64;
        times
    }

    /// The delay of a request/response exchange step (sync), lossless.
    pub fn rpc_delay(&mut self) -> u64 {
        self.base_delay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(v: u32, twin: u8) -> Endpoint {
        Endpoint {
            validator: ValidatorIndex(v),
            twin,
        }
    }

    #[test]
    fn partitions_and_twins_cut_links_until_they_heal() {
        let params = NetParams {
            min_delay_ms: 1,
            max_delay_ms: 5,
            spike_prob: 0.0,
            spike_max_ms: 1,
            loss: 0.0,
            dup: 0.0,
            fifo: true,
        };
        let partitions = vec![Partition {
            start_ms: 10,
            end_ms: 20,
            group: vec![0, 0, 1, 1],
        }];
        let mut twins = BTreeMap::new();
        twins.insert(
            ValidatorIndex(3),
            vec![TwinEpoch {
                start_ms: 0,
                sees: vec![1, 2, 3, 0],
            }],
        );
        let net = Network::new(params, partitions, twins, 100, Rng::new(1));
        assert!(net.connected(5, ep(0, 0), ep(2, 0)));
        assert!(!net.connected(15, ep(0, 0), ep(2, 0)));
        assert!(net.connected(20, ep(0, 0), ep(2, 0)));
        assert!(net.connected(0, ep(0, 0), ep(3, 1)));
        assert!(!net.connected(0, ep(0, 0), ep(3, 2)));
        assert!(net.connected(0, ep(1, 0), ep(3, 2)));
        assert!(net.connected(0, ep(2, 0), ep(3, 1)) && net.connected(0, ep(2, 0), ep(3, 2)));
    }
}
