//! Misbehaviour of a proof-of-stake leader: slot equivocation. As leader
//! of a slot it signs two different blocks (the honest one, and one with
//! another timestamp) and sends one to each half of the validators. Any
//! node that sees both holds evidence; the next honest leader puts it in a
//! block, and the equivocator's stake is slashed when that block executes.

use crate::{second_half, to_each, Adversarial, Adversary, Behaviour, Ctx, Strategy};
use phalanx_consensus::pos::sign_block;
use phalanx_consensus::{Config, Pos, PosMessage};
use phalanx_crypto::{Hash, Keypair};
use phalanx_ledger::{Justification, Payload, ValidatorIndex};

impl Adversarial for Pos {
    fn simulated(
        cfg: Config,
        key: Keypair,
        strategies: Vec<Strategy>,
        _genesis_hash: Hash,
    ) -> Box<dyn Adversary<PosMessage>> {
        if strategies.is_empty() {
            return Box::new(PassThrough);
        }
        Box::new(Equivocate {
            key,
            chain_id: cfg.chain_id.clone(),
            me: cfg.me,
        })
    }

    fn injected(
        behaviour: Behaviour,
        cfg: &Config,
        key: &Keypair,
    ) -> Option<Box<dyn Adversary<PosMessage>>> {
        match behaviour {
            Behaviour::Equivocate => Some(Box::new(Equivocate {
                key: Keypair::from_seed(key.seed()),
                chain_id: cfg.chain_id.clone(),
                me: cfg.me,
            })),
            _ => None,
        }
    }
}

/// Sends what the engine sends.
#[derive(Debug)]
struct PassThrough;

impl Adversary<PosMessage> for PassThrough {
    fn outgoing(
        &mut self,
        _ctx: &mut Ctx<'_>,
        message: PosMessage,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, PosMessage)> {
        to_each(&message, dests)
    }
}

/// Two blocks for each slot it leads. See the module documentation.
struct Equivocate {
    key: Keypair,
    chain_id: String,
    me: ValidatorIndex,
}

impl std::fmt::Debug for Equivocate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Equivocate").field("me", &self.me).finish()
    }
}

/// The other version of a block: the same transactions a millisecond
/// later (a pure function of the block, so both halves always get the
/// same pair).
pub fn variant(p: &Payload) -> Payload {
    let mut q = p.clone();
    q.timestamp_ms += 1;
    q
}

impl Adversary<PosMessage> for Equivocate {
    fn outgoing(
        &mut self,
        ctx: &mut Ctx<'_>,
        message: PosMessage,
        dests: Vec<ValidatorIndex>,
    ) -> Vec<(ValidatorIndex, PosMessage)> {
        let PosMessage::Block {
            payload,
            justification: Justification::Pos { parent, leader, .. },
        } = &message
        else {
            return to_each(&message, dests);
        };
        if *leader != self.me || dests.len() < 2 {
            return to_each(&message, dests);
        }
        let other = variant(payload);
        let j = sign_block(&self.chain_id, &self.key, self.me, *parent, &other);
        let twin = PosMessage::Block {
            payload: other,
            justification: j,
        };
        ctx.stats.equivocations += 1;
        dests
            .iter()
            .map(|d| {
                let m = if second_half(&dests, *d) {
                    twin.clone()
                } else {
                    message.clone()
                };
                (*d, m)
            })
            .collect()
    }
}
