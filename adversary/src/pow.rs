//! Misbehaviour of a proof-of-work miner: block withholding (selfish
//! mining, Eyal & Sirer, "Majority Is Not Enough", 2014). The miner keeps
//! the blocks it mines to itself and mines on its private branch; when an
//! honest block arrives at a height its private branch reaches, it
//! publishes its private blocks up to that height (a race), and when the
//! honest chain would overtake it, everything. Honest nodes then see
//! branches appear all at once and reorg: what the simulator's common
//! prefix and chain-quality checkers must survive.

use crate::{to_each, Adversarial, Adversary, Behaviour, Ctx, Strategy};
use phalanx_consensus::{Config, Pow, PowMessage};
use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::ValidatorIndex;

impl Adversarial for Pow {
    fn simulated(
        cfg: Config,
        _key: Keypair,
        strategies: Vec<Strategy>,
        _genesis_hash: Hash,
    ) -> Box<dyn Adversary<PowMessage>> {
        let others = (0..cfg.n() as u32)
            .map(ValidatorIndex)
            .filter(|v| *v != cfg.me)
            .collect();
        if strategies.is_empty() {
            return Box::new(PassThrough);
        }
        Box::new(Withhold {
            me: cfg.me,
            others,
            private: Vec::new(),
            pending_release: 0,
        })
    }

    fn injected(
        _behaviour: Behaviour,
        _cfg: &Config,
        _key: &Keypair,
    ) -> Option<Box<dyn Adversary<PowMessage>>> {
        // Silent and delay work for any engine; PoW blocks carry no
        // signature to corrupt and no vote to equivocate with.
        None
    }
}

/// Sends what the engine sends.
#[derive(Debug)]
struct PassThrough;

impl Adversary<PowMessage> for PassThrough {
    fn outgoing(
        &mut self,
        _ctx: &mut Ctx<'_>,
        message: PowMessage,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, PowMessage)> {
        to_each(&message, dests)
    }
}

/// Selfish mining. See the module documentation.
#[derive(Debug)]
struct Withhold {
    me: ValidatorIndex,
    others: Vec<ValidatorIndex>,
    /// Own blocks not yet published, lowest height first.
    private: Vec<PowMessage>,
    /// Publish private blocks up to this height at the next tick.
    pending_release: u64,
}

fn height(m: &PowMessage) -> u64 {
    let PowMessage::Block { payload, .. } = m;
    payload.height.0
}

impl Withhold {
    /// Publishes the private blocks up to `up_to`.
    fn release(&mut self, up_to: u64) -> Vec<(ValidatorIndex, PowMessage)> {
        let split = self.private.partition_point(|m| height(m) <= up_to);
        let out: Vec<PowMessage> = self.private.drain(..split).collect();
        out.into_iter()
            .flat_map(|m| to_each(&m, self.others.clone()))
            .collect()
    }
}

impl Adversary<PowMessage> for Withhold {
    fn outgoing(
        &mut self,
        ctx: &mut Ctx<'_>,
        message: PowMessage,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, PowMessage)> {
        let PowMessage::Block { payload, .. } = &message;
        if payload.proposer != self.me {
            return to_each(&message, dests);
        }
        ctx.stats.withheld += dests.len() as u64;
        self.private.push(message);
        Vec::new()
    }

    fn incoming(&mut self, _now: u64, message: &PowMessage) {
        let PowMessage::Block { payload, .. } = message;
        if payload.proposer == self.me {
            return;
        }
        // Remember the honest height; the next tick answers it.
        let h = payload.height.0;
        if let Some(last) = self.private.last() {
            let lead = height(last).saturating_sub(h);
            // Lead of one: publish everything (override); otherwise match.
            let up_to = if lead <= 1 { u64::MAX } else { h };
            self.pending_release = self.pending_release.max(up_to);
        }
    }

    fn wants_ticks(&self) -> bool {
        true
    }

    fn tick(&mut self, _ctx: &mut Ctx<'_>, _view: u64) -> Vec<(ValidatorIndex, PowMessage)> {
        let up_to = std::mem::take(&mut self.pending_release);
        if up_to == 0 {
            return Vec::new();
        }
        self.release(up_to)
    }
}
