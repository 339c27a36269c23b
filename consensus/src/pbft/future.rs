//! Messages for views this replica has not reached yet, kept until it gets
//! there (a PRE-PREPARE can overtake the NEW-VIEW that starts its view).
//!
//! What one validator can make a replica hold here is bounded: messages
//! are kept by their signer (the transport sender is not trusted), at most
//! [`MAX_MESSAGES_PER_SIGNER`] and [`MAX_BYTES_PER_SIGNER`] per signer, and
//! only for views up to [`VIEW_HORIZON`] above the replica's own. A signer
//! over its budget has its new messages dropped (counted), so the honest
//! validators' messages stay. The issue-18 review filled a replica from
//! 5 MiB to 2 GiB with 2,000 one-MiB PRE-PREPAREs for a later view.

use super::messages::PbftMessage;
use phalanx_ledger::ValidatorIndex;
use std::collections::{BTreeMap, VecDeque};

/// Views further ahead than this are not buffered: a replica that far
/// behind catches up through the view change (`help_straggler`) and sync.
pub const VIEW_HORIZON: u64 = 16;

/// Messages kept per signer: a full watermark window of PRE-PREPAREs,
/// PREPAREs and COMMITs over a few views.
pub const MAX_MESSAGES_PER_SIGNER: usize = 1024;

/// Encoded bytes kept per signer: one largest frame's worth.
pub const MAX_BYTES_PER_SIGNER: usize = 16 << 20;

/// The buffer; see the module note.
#[derive(Debug, Default)]
pub(crate) struct FutureBuffer {
    messages: VecDeque<Buffered>,
    /// (messages, bytes) held per signer.
    held: BTreeMap<ValidatorIndex, (usize, usize)>,
}

#[derive(Debug)]
struct Buffered {
    from: ValidatorIndex,
    message: PbftMessage,
}

impl FutureBuffer {
    /// Keeps `message`, signed by `signer`, if the signer's budget has room.
    pub(crate) fn push(
        &mut self,
        from: ValidatorIndex,
        signer: ValidatorIndex,
        message: PbftMessage,
    ) -> bool {
        let bytes = phalanx_crypto::encode(&message).len();
        let (count, held) = self.held.get(&signer).copied().unwrap_or((0, 0));
        if count >= MAX_MESSAGES_PER_SIGNER || held + bytes > MAX_BYTES_PER_SIGNER {
            return false;
        }
        self.held.insert(signer, (count + 1, held + bytes));
        self.messages.push_back(Buffered { from, message });
        true
    }

    /// Everything kept, in arrival order, emptying the buffer.
    pub(crate) fn take(&mut self) -> Vec<(ValidatorIndex, PbftMessage)> {
        self.held.clear();
        std::mem::take(&mut self.messages)
            .into_iter()
            .map(|b| (b.from, b.message))
            .collect()
    }

    /// (messages, encoded bytes) held.
    pub(crate) fn size(&self) -> (usize, usize) {
        let bytes = self.held.values().map(|(_, b)| b).sum();
        (self.messages.len(), bytes)
    }

    /// Whether every signer is within its budget (for `check_invariants`).
    pub(crate) fn within_budget(&self) -> bool {
        self.held
            .values()
            .all(|(m, b)| *m <= MAX_MESSAGES_PER_SIGNER && *b <= MAX_BYTES_PER_SIGNER)
            && self.held.values().map(|(m, _)| m).sum::<usize>() == self.messages.len()
    }
}
