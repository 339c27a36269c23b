//! Merkle roots over lists of hashes, with inclusion proofs.
//!
//! Leaves and inner nodes are hashed in different domains (a leaf can never
//! pass for a subtree), and an odd node at the end of a level is carried up
//! unchanged rather than paired with itself, so two different lists never
//! share a root (the duplicated-last-leaf flaw of Bitcoin's tree, CVE-2012-2459).

use crate::encoding::Domain;
use crate::hash::Hash;
use serde::{Deserialize, Serialize};

fn leaf(h: &Hash) -> Hash {
    Hash::of_parts(Domain::MerkleLeaf, &[&h.0])
}

fn node(left: &Hash, right: &Hash) -> Hash {
    Hash::of_parts(Domain::MerkleNode, &[&left.0, &right.0])
}

fn next_level(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => node(l, r),
            [single] => *single,
            _ => unreachable!("chunks(2) yields one or two items"),
        })
        .collect()
}

/// The Merkle root of `items`; [`Hash::ZERO`] for an empty list.
pub fn merkle_root(items: &[Hash]) -> Hash {
    if items.is_empty() {
        return Hash::ZERO;
    }
    let mut level: Vec<Hash> = items.iter().map(leaf).collect();
    while level.len() > 1 {
        level = next_level(&level);
    }
    level[0]
}

/// Proof that one item is at a given position of a list with a given root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerkleProof {
    /// Position of the item in the list.
    pub index: u64,
    /// Number of items in the list.
    pub leaf_count: u64,
    /// Sibling hashes from the leaf level up.
    pub siblings: Vec<Hash>,
}

/// The inclusion proof for `items[index]`, or `None` if `index` is out of range.
pub fn merkle_proof(items: &[Hash], index: usize) -> Option<MerkleProof> {
    if index >= items.len() {
        return None;
    }
    let mut level: Vec<Hash> = items.iter().map(leaf).collect();
    let mut idx = index;
    let mut siblings = Vec::new();
    while level.len() > 1 {
        let sibling = idx ^ 1;
        if sibling < level.len() {
            siblings.push(level[sibling]);
        }
        level = next_level(&level);
        idx /= 2;
    }
    Some(MerkleProof {
        index: index as u64,
        leaf_count: items.len() as u64,
        siblings,
    })
}

impl MerkleProof {
    /// Whether this proof shows `item` at `self.index` under `root`.
    pub fn verify(&self, item: &Hash, root: &Hash) -> bool {
        if self.index >= self.leaf_count {
            return false;
        }
        let (mut idx, mut n) = (self.index, self.leaf_count);
        let mut h = leaf(item);
        let mut siblings = self.siblings.iter();
        while n > 1 {
            if idx % 2 == 1 {
                let Some(s) = siblings.next() else {
                    return false;
                };
                h = node(s, &h);
            } else if idx + 1 < n {
                let Some(s) = siblings.next() else {
                    return false;
                };
                h = node(&h, s);
            }
            idx /= 2;
            n = n.div_ceil(2);
        }
        siblings.next().is_none() && h == *root
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn items(n: usize) -> Vec<Hash> {
        (0..n as u64)
            .map(|i| Hash::digest(&i.to_le_bytes()))
            .collect()
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(merkle_root(&[]), Hash::ZERO);
        let one = items(1);
        assert_eq!(merkle_root(&one), leaf(&one[0]));
        assert!(merkle_proof(&one, 0)
            .unwrap()
            .verify(&one[0], &merkle_root(&one)));
    }

    #[test]
    fn odd_leaf_is_not_duplicated() {
        // [a, b, c] and [a, b, c, c] must have different roots.
        let three = items(3);
        let mut four = three.clone();
        four.push(three[2]);
        assert_ne!(merkle_root(&three), merkle_root(&four));
    }

    #[test]
    fn proof_fails_for_wrong_item_index_or_root() {
        let list = items(7);
        let root = merkle_root(&list);
        let p = merkle_proof(&list, 3).unwrap();
        assert!(p.verify(&list[3], &root));
        assert!(!p.verify(&list[4], &root));
        let mut moved = p.clone();
        moved.index = 2;
        assert!(!moved.verify(&list[3], &root));
        assert!(!p.verify(&list[3], &Hash::digest(b"other")));
        let mut short = p.clone();
        short.siblings.pop();
        assert!(!short.verify(&list[3], &root));
        assert!(merkle_proof(&list, 7).is_none());
    }

    proptest! {
        #[test]
        fn every_proof_verifies(n in 1usize..70, pick in any::<prop::sample::Index>()) {
            let list = items(n);
            let root = merkle_root(&list);
            let i = pick.index(n);
            let p = merkle_proof(&list, i).unwrap();
            prop_assert!(p.verify(&list[i], &root));
            // Changing any item changes the root.
            let mut changed = list.clone();
            changed[i] = Hash::digest(b"changed");
            prop_assert_ne!(merkle_root(&changed), root);
        }
    }
}
