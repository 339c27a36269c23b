//! Catching up from certified blocks: a replica that is behind fetches
//! blocks with their commit certificates and applies each one only after
//! checking the certificate against the validator set, so a Byzantine peer
//! cannot feed it a wrong chain.

use super::messages::check_payload;
use super::{Pbft, PbftOutput};
use phalanx_ledger::Block;

impl Pbft {
    /// Applies the certified blocks that extend the committed chain, in
    /// order, stopping at the first one that does not check out.
    pub(crate) fn on_sync_blocks(&mut self, blocks: Vec<Block>, out: &mut Vec<PbftOutput>) {
        self.sync_outstanding = false;
        let mut applied = 0;
        for block in blocks {
            if block.height() <= self.last_committed {
                continue;
            }
            if block.height() != self.last_committed.next() {
                break;
            }
            let Some(cert) = block.justification.certificate() else {
                break;
            };
            let payload = block.payload();
            let digest = payload.digest();
            let ok = cert.seq == block.height()
                && cert.digest == digest
                && check_payload(&self.cfg, &payload, block.height(), &digest).is_ok()
                && cert
                    .verify(
                        &self.cfg.chain_id,
                        &self.cfg.validators,
                        self.cfg.quorums.quorum,
                    )
                    .is_ok();
            if !ok {
                self.counters.invalid += 1;
                break;
            }
            // Keep the certificate (not just the block): until a stable
            // checkpoint covers this height, our VIEW-CHANGEs must carry it,
            // or a new view could fill the slot with something else.
            if block.height() > self.stable.seq {
                let slot = self.slots.entry(block.height()).or_default();
                slot.payloads.insert(digest, payload.clone());
                slot.committed = Some(cert.clone());
            } else {
                self.slots.remove(&block.height());
            }
            let justification = block.justification.clone();
            self.hand_over(payload, justification, out);
            applied += 1;
        }
        if applied > 0 {
            // Slots we already hold above the synced range may now be executable.
            self.commit_in_order(out);
            // A response is capped: keep asking until one brings nothing new.
            self.request_sync(out);
        } else {
            self.check_behind(out);
        }
    }
}
