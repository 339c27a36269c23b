//! PBFT with a fallback: a Byzantine validator misbehaves in both engines
//! at once — PBFT's adversary rewrites its PBFT messages, the fallback's
//! (a selfish miner, an equivocating slot leader) its fallback blocks.

use crate::{to_each, Adversarial, Adversary, Behaviour, Ctx, Strategy};
use phalanx_consensus::hybrid::Fallback;
use phalanx_consensus::{Config, Hybrid, HybridMessage, Pbft, PbftMessage};
use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::{Block, ValidatorIndex};

/// Both engines' adversaries, each fed its own engine's traffic.
struct Both<M> {
    pbft: Box<dyn Adversary<PbftMessage>>,
    fallback: Box<dyn Adversary<M>>,
}

/// Leaves an engine's messages as they are.
struct Pass;

impl<M: Clone + Send> Adversary<M> for Pass {
    fn outgoing(
        &mut self,
        _ctx: &mut Ctx<'_>,
        message: M,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, M)> {
        to_each(&message, dests)
    }
}

impl<M: Clone + Send> Adversary<HybridMessage<M>> for Both<M> {
    fn outgoing(
        &mut self,
        ctx: &mut Ctx<'_>,
        message: HybridMessage<M>,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, HybridMessage<M>)> {
        match message {
            HybridMessage::Pbft(m) => self
                .pbft
                .outgoing(ctx, m, dests)
                .into_iter()
                .map(|(to, m)| (to, HybridMessage::Pbft(m)))
                .collect(),
            HybridMessage::Fallback(m) => self
                .fallback
                .outgoing(ctx, m, dests)
                .into_iter()
                .map(|(to, m)| (to, HybridMessage::Fallback(m)))
                .collect(),
        }
    }

    fn incoming(&mut self, now: u64, message: &HybridMessage<M>) {
        match message {
            HybridMessage::Pbft(m) => self.pbft.incoming(now, m),
            HybridMessage::Fallback(m) => self.fallback.incoming(now, m),
        }
    }

    fn wants_ticks(&self) -> bool {
        self.pbft.wants_ticks() || self.fallback.wants_ticks()
    }

    fn tick(&mut self, ctx: &mut Ctx<'_>, view: u64) -> Vec<(ValidatorIndex, HybridMessage<M>)> {
        let mut out: Vec<_> = self
            .pbft
            .tick(ctx, view)
            .into_iter()
            .map(|(to, m)| (to, HybridMessage::Pbft(m)))
            .collect();
        out.extend(
            self.fallback
                .tick(ctx, view)
                .into_iter()
                .map(|(to, m)| (to, HybridMessage::Fallback(m))),
        );
        out
    }

    fn serve_sync(&mut self, ctx: &mut Ctx<'_>, blocks: Vec<Block>) -> Option<Vec<Block>> {
        let blocks = self.pbft.serve_sync(ctx, blocks)?;
        self.fallback.serve_sync(ctx, blocks)
    }
}

impl<F: Fallback + Adversarial> Adversarial for Hybrid<F> {
    fn simulated(
        cfg: Config,
        key: Keypair,
        strategies: Vec<Strategy>,
        genesis_hash: Hash,
    ) -> Box<dyn Adversary<Self::Message>> {
        Box::new(Both {
            pbft: Pbft::simulated(cfg.clone(), key.clone(), strategies.clone(), genesis_hash),
            fallback: F::simulated(cfg, key, strategies, genesis_hash),
        })
    }

    fn injected(
        behaviour: Behaviour,
        cfg: &Config,
        key: &Keypair,
    ) -> Option<Box<dyn Adversary<Self::Message>>> {
        let pbft = Pbft::injected(behaviour, cfg, key);
        let fallback = F::injected(behaviour, cfg, key);
        if pbft.is_none() && fallback.is_none() {
            return None;
        }
        Some(Box::new(Both {
            pbft: pbft.unwrap_or_else(|| Box::new(Pass)),
            fallback: fallback.unwrap_or_else(|| Box::new(Pass)),
        }))
    }
}
