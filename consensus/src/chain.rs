//! The block tree of a longest-chain engine (proof of work now, proof of
//! stake next): every block it knows within a window below the head, the
//! fork choice, and the path from one head to another that a reorg walks.
//!
//! Blocks are identified by their engine-level id (a PoW block by its seal
//! hash), not by the ledger's block hash: consensus orders payloads before
//! execution, so a block's id cannot depend on the state root its
//! execution produces. The tree never executes anything; the driver does,
//! along the branch the engine tells it to follow.
//!
//! The tree has a root: the parent of the oldest block it holds (genesis
//! on a fresh node; after a restart or pruning, an older block it keeps
//! only as an anchor). Scores are relative to the root — all branches the
//! tree compares descend from it, so comparing them is exact — and a block
//! whose parent is neither the root nor in the tree is an orphan.

use crate::engine::Output;
use phalanx_crypto::Hash;
use phalanx_ledger::{Height, Justification, Payload, SignedTransaction};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The shortest gap between two requests for the blocks below an orphan
/// (proof of work, proof of stake).
pub const ASK_BACK_GAP_MS: u64 = 100;

/// How a tie in score is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TieBreak {
    /// The block seen first stays head (Bitcoin).
    FirstSeen,
    /// The lower id wins, on every node alike (the PoS rule).
    LowestId,
}

/// One block in the tree.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its id.
    pub id: Hash,
    /// Its parent's id.
    pub parent: Hash,
    /// Its height.
    pub height: Height,
    /// What it orders.
    pub payload: Arc<Payload>,
    /// Its seal (or leader signature).
    pub justification: Justification,
    /// The sum of the scores of the blocks from the root to it (work for
    /// PoW, one per block for PoS).
    pub score: u128,
    /// Arrival order, for [`TieBreak::FirstSeen`].
    pub seen: u64,
}

/// The tree. See the module documentation.
#[derive(Clone, Debug)]
pub struct Tree {
    root: Hash,
    root_height: Height,
    blocks: HashMap<Hash, Entry>,
    by_height: BTreeMap<Height, Vec<Hash>>,
    head: Hash,
    seen: u64,
    tie: TieBreak,
    /// A block every block added must descend from (a final block).
    floor: Option<(Height, Hash)>,
}

/// Why a block was not added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Already in the tree.
    Known,
    /// Its parent is unknown (an orphan: fetch the branch).
    Orphan,
    /// Its height is not its parent's plus one.
    BadHeight,
    /// It does not descend from the floor (a final block): it forks below
    /// what can no longer be reverted.
    BelowFloor,
}

impl Tree {
    /// A tree holding only its root.
    pub fn new(root: Hash, root_height: Height, tie: TieBreak) -> Tree {
        Tree {
            root,
            root_height,
            blocks: HashMap::new(),
            by_height: BTreeMap::new(),
            head: root,
            seen: 0,
            tie,
            floor: None,
        }
    }

    /// Sets the floor: block `id` at `height`, on the head's branch, is
    /// final. From now on a block is added only if it descends from it,
    /// so the head never leaves it (branches that forked below it are
    /// kept but can no longer grow). Refused (false) unless `id` is the
    /// root or a block on the head's branch.
    pub fn set_floor(&mut self, height: Height, id: Hash) -> bool {
        let on_head = id == self.root || self.ancestors(&self.head).any(|e| e.id == id);
        if !on_head || self.height_of(&id) != Some(height) {
            return false;
        }
        self.floor = Some((height, id));
        true
    }

    /// The floor, if one is set.
    pub fn floor(&self) -> Option<(Height, Hash)> {
        self.floor
    }

    /// Whether a block at `height` on `parent` descends from the floor.
    fn above_floor(&self, parent: &Hash, height: Height) -> bool {
        let Some((floor_height, floor)) = self.floor else {
            return true;
        };
        if height <= floor_height {
            return false;
        }
        if self.root_height >= floor_height {
            // Pruned above the floor: whatever connects descends from it.
            return true;
        }
        let mut at = *parent;
        loop {
            if at == floor {
                return true;
            }
            match self.blocks.get(&at) {
                Some(e) if e.height > floor_height => at = e.parent,
                _ => return false,
            }
        }
    }

    /// The root's id.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// The root's height.
    pub fn root_height(&self) -> Height {
        self.root_height
    }

    /// The head's id (the root while the tree is empty).
    pub fn head(&self) -> Hash {
        self.head
    }

    /// The head's height.
    pub fn head_height(&self) -> Height {
        self.height_of(&self.head).unwrap_or(self.root_height)
    }

    /// A block.
    pub fn get(&self, id: &Hash) -> Option<&Entry> {
        self.blocks.get(id)
    }

    /// Whether `id` is the root or a block in the tree.
    pub fn knows(&self, id: &Hash) -> bool {
        *id == self.root || self.blocks.contains_key(id)
    }

    /// The height of the root or of a block in the tree.
    pub fn height_of(&self, id: &Hash) -> Option<Height> {
        if *id == self.root {
            return Some(self.root_height);
        }
        self.blocks.get(id).map(|e| e.height)
    }

    /// The score of the root (0) or of a block in the tree.
    pub fn score_of(&self, id: &Hash) -> Option<u128> {
        if *id == self.root {
            return Some(0);
        }
        self.blocks.get(id).map(|e| e.score)
    }

    /// How many blocks the tree holds (the root not counted).
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether it holds no block.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// `id` and its ancestors in the tree, newest first (the root not
    /// included).
    pub fn ancestors<'a>(&'a self, id: &Hash) -> impl Iterator<Item = &'a Entry> + 'a {
        let mut next = self.blocks.get(id);
        std::iter::from_fn(move || {
            let e = next?;
            next = self.blocks.get(&e.parent);
            Some(e)
        })
    }

    /// Adds a block whose parent is known, scoring it `own` on top of its
    /// parent, and moves the head if it is now the best. Returns whether
    /// the head moved.
    pub fn insert(
        &mut self,
        id: Hash,
        payload: Arc<Payload>,
        justification: Justification,
        parent: Hash,
        own: u128,
    ) -> Result<bool, Refused> {
        if self.knows(&id) {
            return Err(Refused::Known);
        }
        let (Some(parent_height), Some(parent_score)) =
            (self.height_of(&parent), self.score_of(&parent))
        else {
            return Err(Refused::Orphan);
        };
        if payload.height != parent_height.next() {
            return Err(Refused::BadHeight);
        }
        if !self.above_floor(&parent, payload.height) {
            return Err(Refused::BelowFloor);
        }
        self.seen += 1;
        let entry = Entry {
            id,
            parent,
            height: payload.height,
            payload,
            justification,
            score: parent_score.saturating_add(own),
            seen: self.seen,
        };
        let better = self.better(&entry);
        self.by_height.entry(entry.height).or_default().push(id);
        self.blocks.insert(id, entry);
        if better {
            self.head = id;
        }
        Ok(better)
    }

    /// Whether `e` beats the current head.
    fn better(&self, e: &Entry) -> bool {
        let Some(head) = self.blocks.get(&self.head) else {
            return true;
        };
        match e.score.cmp(&head.score) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => match self.tie {
                TieBreak::FirstSeen => false,
                TieBreak::LowestId => e.id < head.id,
            },
        }
    }

    /// The reorg from the branch ending at `from` to the one ending at
    /// `to`: the height of their common ancestor and the blocks of `to`'s
    /// branch above it, oldest first. `None` if either is unknown.
    pub fn path(&self, from: &Hash, to: &Hash) -> Option<(Height, Vec<Hash>)> {
        let (mut a, mut b) = (*from, *to);
        let (mut ha, mut hb) = (self.height_of(&a)?, self.height_of(&b)?);
        let mut forward = Vec::new();
        while hb > ha {
            forward.push(b);
            b = self.blocks.get(&b)?.parent;
            hb = self.height_of(&b)?;
        }
        while ha > hb {
            a = self.blocks.get(&a)?.parent;
            ha = self.height_of(&a)?;
        }
        while a != b {
            forward.push(b);
            a = self.blocks.get(&a)?.parent;
            b = self.blocks.get(&b)?.parent;
            ha = self.height_of(&a)?;
        }
        forward.reverse();
        Some((ha, forward))
    }

    /// Drops every block more than `depth` below the head: the head's
    /// ancestor at that height becomes the root (its branch's blocks
    /// above it stay; branches that forked below it go). Scores stay as
    /// they are — they only need to be comparable with each other.
    pub fn prune(&mut self, depth: u64) {
        let head_height = self.head_height();
        let Some(cut) = head_height.0.checked_sub(depth) else {
            return;
        };
        if cut <= self.root_height.0 {
            return;
        }
        let Some(new_root) = self.ancestors(&self.head).find(|e| e.height.0 == cut) else {
            return;
        };
        let new_root = new_root.id;
        self.cut(new_root, Height(cut));
    }

    /// Makes block `id` the root (a block that became final): only its
    /// descendants stay, so no fork choice can ever leave it. The head
    /// stays if it descends from `id`; otherwise the best block left (or
    /// the new root) becomes head. Returns false, changing nothing, if the
    /// tree does not hold `id`.
    pub fn reroot(&mut self, id: Hash) -> bool {
        if id == self.root {
            return true;
        }
        let Some(height) = self.height_of(&id) else {
            return false;
        };
        self.cut(id, height);
        if !self.knows(&self.head) {
            self.head = self.root;
            let mut best: Option<&Entry> = None;
            for e in self.blocks.values() {
                let better = match best {
                    None => true,
                    Some(b) => match e.score.cmp(&b.score) {
                        std::cmp::Ordering::Greater => true,
                        std::cmp::Ordering::Less => false,
                        std::cmp::Ordering::Equal => match self.tie {
                            TieBreak::FirstSeen => e.seen < b.seen,
                            TieBreak::LowestId => e.id < b.id,
                        },
                    },
                };
                if better {
                    best = Some(e);
                }
            }
            if let Some(b) = best {
                self.head = b.id;
            }
        }
        true
    }

    /// Keeps only what descends from `new_root` (at height `cut`), which
    /// becomes the root.
    fn cut(&mut self, new_root: Hash, cut: Height) {
        // Walk each block up to the cut height (memoising verdicts by id as
        // we go, heights ascending).
        let mut keep: HashMap<Hash, bool> = HashMap::from([(new_root, true)]);
        let heights: Vec<Height> = self.by_height.keys().copied().collect();
        for h in heights {
            for id in self.by_height.get(&h).cloned().unwrap_or_default() {
                let verdict = if h <= cut {
                    id == new_root
                } else {
                    let parent = self.blocks.get(&id).map(|e| e.parent);
                    parent.is_some_and(|p| keep.get(&p).copied().unwrap_or(false))
                };
                keep.insert(id, verdict);
            }
        }
        self.blocks
            .retain(|id, _| *id != new_root && keep.get(id).copied().unwrap_or(false));
        self.by_height.retain(|h, _| *h > cut);
        for ids in self.by_height.values_mut() {
            ids.retain(|id| keep.get(id).copied().unwrap_or(false));
        }
        self.root = new_root;
        self.root_height = cut;
    }

    /// Every block at `height`.
    pub fn at_height(&self, height: Height) -> &[Hash] {
        self.by_height.get(&height).map_or(&[], Vec::as_slice)
    }
}

/// How much each peer's blocks are trusted. A block that fails a check
/// costs its sender [`PeerScores::INVALID`] points, a block added to the
/// tree earns one back (up to 0); at [`PeerScores::BAN_AT`] the peer's
/// messages are dropped unread for [`PeerScores::BAN_MS`], then it starts
/// again halfway back. A validator that floods invalid blocks (each
/// costing a hash or a signature check) thus costs the node a bounded
/// amount of work per ban period.
#[derive(Clone, Debug, Default)]
pub struct PeerScores {
    score: BTreeMap<u32, i64>,
    banned_until: BTreeMap<u32, u64>,
    /// Messages dropped unread from banned peers.
    pub ignored: u64,
    /// Bans imposed.
    pub bans: u64,
}

impl PeerScores {
    /// Points an invalid block costs.
    pub const INVALID: i64 = 4;
    /// The score at which a peer is banned.
    pub const BAN_AT: i64 = -32;
    /// How long a ban lasts (ms).
    pub const BAN_MS: u64 = 30_000;

    /// Whether to read a message from `peer` at `now` (counts it if not).
    pub fn admit(&mut self, peer: u32, now: u64) -> bool {
        match self.banned_until.get(&peer) {
            Some(until) if now < *until => {
                self.ignored += 1;
                false
            }
            Some(_) => {
                self.banned_until.remove(&peer);
                self.score.insert(peer, Self::BAN_AT / 2);
                true
            }
            None => true,
        }
    }

    /// `peer` sent a block that failed a check.
    pub fn invalid(&mut self, peer: u32, now: u64) {
        let s = self.score.entry(peer).or_default();
        *s -= Self::INVALID;
        if *s <= Self::BAN_AT {
            self.banned_until.insert(peer, now + Self::BAN_MS);
            self.bans += 1;
        }
    }

    /// `peer` sent a block that was added.
    pub fn valid(&mut self, peer: u32) {
        let s = self.score.entry(peer).or_default();
        *s = (*s + 1).min(0);
    }

    /// A peer's score (0: nothing against it).
    pub fn score(&self, peer: u32) -> i64 {
        self.score.get(&peer).copied().unwrap_or(0)
    }
}

/// Blocks whose parent is not in the tree yet, held (bounded, the oldest
/// dropped first) while their branch is fetched.
#[derive(Clone, Debug, Default)]
pub struct Orphans {
    held: std::collections::VecDeque<(Hash, Hash, Arc<Payload>, Justification)>,
}

impl Orphans {
    /// Most held at once.
    pub const MAX: usize = 256;

    /// Holds block `id` (child of `parent`) unless it is held already.
    pub fn hold(&mut self, id: Hash, parent: Hash, payload: Arc<Payload>, j: Justification) {
        if self.held.iter().any(|(i, ..)| *i == id) {
            return;
        }
        if self.held.len() >= Self::MAX {
            self.held.pop_front();
        }
        self.held.push_back((id, parent, payload, j));
    }

    /// Takes out the held children of `parent`.
    pub fn children_of(&mut self, parent: &Hash) -> Vec<(Hash, Arc<Payload>, Justification)> {
        let (ready, rest): (Vec<_>, Vec<_>) =
            self.held.drain(..).partition(|(_, p, ..)| p == parent);
        self.held = rest.into();
        ready.into_iter().map(|(i, _, pl, j)| (i, pl, j)).collect()
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// The blocks added during one input (`added`) that the stored branch
/// does not hold: side blocks, which an engine persists so that a restart
/// puts them back in its tree.
pub fn unstored<'a>(
    tree: &'a Tree,
    stored: &'a Stored,
    added: Vec<(Height, Hash)>,
) -> impl Iterator<Item = &'a Entry> + 'a {
    added
        .into_iter()
        .filter(move |(h, id)| !stored.has(*h, id))
        .filter_map(move |(_, id)| tree.get(&id))
}

/// Transactions waiting for a block, in arrival order, bounded.
#[derive(Clone, Debug, Default)]
pub struct Pending {
    txs: BTreeMap<i64, SignedTransaction>,
    index: HashMap<Hash, i64>,
    next: i64,
    /// The key the next [`Pending::add_front`] takes (counts down).
    front: i64,
    max: usize,
}

impl Pending {
    /// An empty pool holding at most `max` transactions.
    pub fn new(max: usize) -> Pending {
        Pending {
            max,
            ..Pending::default()
        }
    }

    /// Adds `tx` unless it is there already or the pool is full.
    pub fn add(&mut self, tx: SignedTransaction) {
        let h = tx.hash();
        if self.index.contains_key(&h) || self.txs.len() >= self.max {
            return;
        }
        self.next += 1;
        self.index.insert(h, self.next);
        self.txs.insert(self.next, tx);
    }

    /// Puts `tx` before everything pending: a transaction of an abandoned
    /// block goes back ahead of what arrived after it, so one sender's
    /// transactions stay in nonce order (nonce 5 of a reverted block
    /// before nonce 6 still waiting) — otherwise the next block would
    /// carry 6 before 5 and 6 would fail.
    pub fn add_front(&mut self, tx: SignedTransaction) {
        let h = tx.hash();
        if self.index.contains_key(&h) || self.txs.len() >= self.max {
            return;
        }
        self.front -= 1;
        self.index.insert(h, self.front);
        self.txs.insert(self.front, tx);
    }

    /// Drops a transaction; whether it was there.
    pub fn remove(&mut self, h: &Hash) -> bool {
        match self.index.remove(h) {
            Some(seq) => self.txs.remove(&seq).is_some(),
            None => false,
        }
    }

    /// The oldest `n`.
    pub fn oldest(&self, n: usize) -> Vec<SignedTransaction> {
        self.txs.values().take(n).cloned().collect()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Whether the index and the pool agree.
    pub fn check(&self) -> Result<(), String> {
        if self.txs.len() != self.index.len() {
            return Err(format!(
                "{} pending transactions, {} indexed",
                self.txs.len(),
                self.index.len()
            ));
        }
        Ok(())
    }
}

/// A reorg the stored branch went through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reorg {
    /// The common ancestor's height.
    pub fork: Height,
    /// Blocks reverted.
    pub depth: u64,
}

/// The branch the driver stores (as the engine has told it to), above
/// the tree's root, and the transactions in it.
#[derive(Clone, Debug, Default)]
pub struct Stored {
    blocks: BTreeMap<Height, Hash>,
    on_chain: HashMap<Hash, Height>,
}

impl Stored {
    /// Records a block the driver already stores (restart).
    pub fn restore(&mut self, height: Height, id: Hash, payload: &Payload) {
        self.blocks.insert(height, id);
        for tx in &payload.txs {
            self.on_chain.insert(tx.hash(), height);
        }
    }

    /// The stored tip's id (the tree's root when nothing is stored above it).
    pub fn tip(&self, tree: &Tree) -> Hash {
        self.blocks
            .last_key_value()
            .map_or_else(|| tree.root(), |(_, id)| *id)
    }

    /// Whether the transaction is in a stored block.
    pub fn holds(&self, tx: &Hash) -> bool {
        self.on_chain.contains_key(tx)
    }

    /// Whether the stored branch holds block `id` at `height`.
    pub fn has(&self, height: Height, id: &Hash) -> bool {
        self.blocks.get(&height) == Some(id)
    }

    /// Makes the stored branch the tree's head branch: an
    /// `Output::Revert` to the fork point if the head left the stored
    /// branch (after whatever `before_revert` returns for the fork height
    /// and the blocks about to be abandoned — records that must be
    /// durable first), then a `Commit` per block of the new branch.
    /// Transactions of abandoned blocks go back to `pending`; those of new
    /// blocks leave it.
    pub fn follow<M, R>(
        &mut self,
        tree: &Tree,
        pending: &mut Pending,
        out: &mut Vec<Output<M, R>>,
        before_revert: impl FnOnce(Height, &[Hash]) -> Vec<Output<M, R>>,
    ) -> Option<Reorg> {
        let head = tree.head();
        let tip = self.tip(tree);
        if head == tip {
            return None;
        }
        let (fork, branch) = tree.path(&tip, &head)?;
        let tip_height = tree.height_of(&tip).unwrap_or_default();
        let mut reorg = None;
        if fork < tip_height {
            reorg = Some(Reorg {
                fork,
                depth: tip_height.0 - fork.0,
            });
            let abandoned: Vec<Hash> = self.blocks.split_off(&fork.next()).into_values().collect();
            out.extend(before_revert(fork, &abandoned));
            out.push(Output::Revert { to: fork });
            // Newest block first and each block's transactions backwards,
            // each put in front: they end up oldest first, in block order.
            for id in abandoned.iter().rev() {
                let Some(e) = tree.get(id) else { continue };
                for tx in e.payload.txs.iter().rev() {
                    self.on_chain.remove(&tx.hash());
                    pending.add_front(tx.clone());
                }
            }
        }
        for id in branch {
            let Some(e) = tree.get(&id) else { break };
            for tx in &e.payload.txs {
                let h = tx.hash();
                self.on_chain.insert(h, e.height);
                pending.remove(&h);
            }
            self.blocks.insert(e.height, id);
            out.push(Output::Commit {
                payload: (*e.payload).clone(),
                justification: e.justification.clone(),
            });
        }
        reorg
    }

    /// Forgets what is at or below the tree's new root.
    pub fn prune(&mut self, root: Height) {
        self.blocks = self.blocks.split_off(&root.next());
        self.on_chain.retain(|_, h| *h > root);
    }

    /// Whether the stored branch is the head's branch, height by height.
    pub fn check(&self, tree: &Tree) -> Result<(), String> {
        let branch: Vec<(Height, Hash)> = tree
            .ancestors(&tree.head())
            .map(|e| (e.height, e.id))
            .collect();
        let stored: Vec<(Height, Hash)> = self.blocks.iter().rev().map(|(h, i)| (*h, *i)).collect();
        if branch != stored {
            return Err(format!(
                "the stored chain ({} blocks) is not the head's branch ({} blocks)",
                stored.len(),
                branch.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_ledger::ValidatorIndex;

    fn payload(height: u64, tag: u8) -> Arc<Payload> {
        Arc::new(Payload {
            chain_id: "t".into(),
            height: Height(height),
            round: u64::from(tag),
            proposer: ValidatorIndex(0),
            timestamp_ms: 0,
            txs: vec![],
            evidence: vec![],
        })
    }

    fn id(tag: u8, height: u64) -> Hash {
        let mut b = [0u8; 32];
        b[0] = tag;
        b[1] = height as u8;
        Hash(b)
    }

    /// Adds a branch `tag` of `len` blocks on `parent` (each scoring
    /// `each`), returning its ids.
    fn branch(t: &mut Tree, parent: Hash, from: u64, len: u64, tag: u8, each: u128) -> Vec<Hash> {
        let mut ids = Vec::new();
        let mut p = parent;
        for h in from..from + len {
            let i = id(tag, h);
            t.insert(i, payload(h, tag), Justification::Genesis, p, each)
                .unwrap();
            ids.push(i);
            p = i;
        }
        ids
    }

    #[test]
    fn the_heaviest_branch_is_head_and_ties_keep_the_first_seen() {
        let root = Hash([0; 32]);
        let mut t = Tree::new(root, Height(0), TieBreak::FirstSeen);
        let a = branch(&mut t, root, 1, 3, 1, 10);
        assert_eq!(t.head(), a[2]);
        // A branch of equal work does not take over.
        let b = branch(&mut t, a[0], 2, 2, 2, 10);
        assert_eq!(t.head(), a[2]);
        // One more block does, and the path from the old head names the
        // fork point and the new branch.
        let b3 = branch(&mut t, b[1], 4, 1, 2, 10);
        assert_eq!(t.head(), b3[0]);
        assert_eq!(
            t.path(&a[2], &b3[0]),
            Some((Height(1), vec![b[0], b[1], b3[0]]))
        );
        // Fewer, heavier blocks beat more, lighter ones.
        let c = branch(&mut t, root, 1, 1, 3, 45);
        assert_eq!(t.head(), c[0]);
        assert_eq!(t.path(&b3[0], &c[0]), Some((Height(0), vec![c[0]])));
        assert_eq!(
            t.insert(c[0], payload(1, 3), Justification::Genesis, root, 1),
            Err(Refused::Known)
        );
        assert_eq!(
            t.insert(id(9, 9), payload(9, 9), Justification::Genesis, id(8, 8), 1),
            Err(Refused::Orphan)
        );
        assert_eq!(
            t.insert(id(9, 9), payload(5, 9), Justification::Genesis, root, 1),
            Err(Refused::BadHeight)
        );
    }

    #[test]
    fn lowest_id_breaks_ties_the_same_way_on_every_node() {
        let root = Hash([0; 32]);
        for order in [[5u8, 4], [4, 5]] {
            let mut t = Tree::new(root, Height(0), TieBreak::LowestId);
            for tag in order {
                branch(&mut t, root, 1, 1, tag, 1);
            }
            assert_eq!(t.head(), id(4, 1));
        }
    }

    #[test]
    fn transactions_of_abandoned_blocks_go_back_ahead_of_later_ones() {
        use phalanx_crypto::Keypair;
        let k = Keypair::from_seed([5; 32]);
        let tx = |nonce| {
            phalanx_ledger::Transaction {
                chain_id: "t".into(),
                from: k.public().into(),
                to: k.public().into(),
                amount: 1,
                nonce,
                fee: 1,
            }
            .sign(&k)
        };
        let nonces =
            |p: &Pending| -> Vec<u64> { p.oldest(10).iter().map(|t| t.tx.nonce).collect() };
        let mut p = Pending::new(10);
        p.add(tx(4));
        p.add(tx(5));
        // Nonces 2 and 3 come back from a reverted block, in block order.
        for t in [tx(3), tx(2)] {
            p.add_front(t);
        }
        assert_eq!(nonces(&p), vec![2, 3, 4, 5]);
        p.add_front(tx(4));
        assert_eq!(p.len(), 4, "no duplicate");
        assert!(p.remove(&tx(3).hash()));
        assert_eq!(nonces(&p), vec![2, 4, 5]);
        p.check().unwrap();
    }

    #[test]
    fn a_peer_that_sends_invalid_blocks_is_ignored_for_a_while() {
        let mut p = PeerScores::default();
        let ban_after = (-PeerScores::BAN_AT / PeerScores::INVALID) as usize;
        for _ in 0..ban_after - 1 {
            p.invalid(3, 0);
            assert!(p.admit(3, 0));
        }
        // Good blocks earn a little back, never above zero.
        p.valid(3);
        p.invalid(3, 0);
        assert!(p.admit(3, 1));
        p.invalid(3, 1_000);
        assert!(!p.admit(3, 1_001));
        assert!(!p.admit(3, 1_000 + PeerScores::BAN_MS - 1));
        assert_eq!((p.bans, p.ignored), (1, 2));
        // Others are unaffected; the ban ends, halfway back.
        assert!(p.admit(2, 1_001));
        assert!(p.admit(3, 1_000 + PeerScores::BAN_MS));
        assert_eq!(p.score(3), PeerScores::BAN_AT / 2);
        for _ in 0..100 {
            p.valid(2);
        }
        assert_eq!(p.score(2), 0);
    }

    #[test]
    fn pruning_keeps_the_heads_branch_and_what_forks_above_the_cut() {
        let root = Hash([0; 32]);
        let mut t = Tree::new(root, Height(0), TieBreak::FirstSeen);
        let main = branch(&mut t, root, 1, 10, 1, 1);
        let low_fork = branch(&mut t, main[1], 3, 2, 2, 1);
        let high_fork = branch(&mut t, main[7], 9, 1, 3, 1);
        t.prune(4);
        assert_eq!(t.root(), main[5]);
        assert_eq!(t.root_height(), Height(6));
        assert_eq!(t.head(), main[9]);
        assert!(main[6..].iter().all(|i| t.get(i).is_some()));
        assert!(main[..6].iter().all(|i| t.get(i).is_none()));
        assert!(low_fork.iter().all(|i| !t.knows(i)));
        assert!(t.get(&high_fork[0]).is_some());
        assert_eq!(t.len(), 5);
        assert_eq!(t.path(&high_fork[0], &main[9]).unwrap().0, Height(8));
        // Reaching below the new root is an orphan now.
        assert_eq!(
            t.insert(id(7, 3), payload(3, 7), Justification::Genesis, main[1], 1),
            Err(Refused::Orphan)
        );
    }
}
