//! Proof-of-work arithmetic (issue 19): 256-bit targets in compact form,
//! the seal check, the work a target stands for, and the timestamp rule.
//!
//! A block's seal hash is SHA-256 over the `PowHeader` domain tag, the
//! block hash and the nonce; the block is sealed when that hash, read as a
//! big-endian 256-bit number, is at most the target. Targets travel in
//! Bitcoin's compact form (one exponent byte, a 23-bit mantissa), so a
//! target is always one of the values a `u32` can name and every node
//! rounds it the same way.

use phalanx_crypto::{Domain, Hash};
use std::cmp::Ordering;

/// An unsigned 256-bit number, four 64-bit limbs, most significant first.
/// Only what targets need: compare, shift, multiply and divide by a `u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct U256(pub [u64; 4]);

impl U256 {
    /// Zero.
    pub const ZERO: U256 = U256([0; 4]);
    /// 2^256 − 1.
    pub const MAX: U256 = U256([u64::MAX; 4]);

    /// A 32-byte big-endian number (a hash).
    pub fn from_be_bytes(b: &[u8; 32]) -> U256 {
        let mut limbs = [0u64; 4];
        for (i, limb) in limbs.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            *limb = u64::from_be_bytes(w);
        }
        U256(limbs)
    }

    /// The 32-byte big-endian form.
    pub fn to_be_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, limb) in self.0.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&limb.to_be_bytes());
        }
        b
    }

    /// A small number.
    pub fn from_u64(v: u64) -> U256 {
        U256([0, 0, 0, v])
    }

    /// Whether it is zero.
    pub fn is_zero(self) -> bool {
        self == U256::ZERO
    }

    /// The number of significant bits (0 for zero).
    pub fn bits(self) -> u32 {
        for (i, limb) in self.0.iter().enumerate() {
            if *limb != 0 {
                return (4 - i as u32) * 64 - limb.leading_zeros();
            }
        }
        0
    }

    /// `self << by` (bits shifted out are lost).
    pub fn shift_left(self, by: u32) -> U256 {
        if by >= 256 {
            return U256::ZERO;
        }
        let (words, bits) = ((by / 64) as usize, by % 64);
        let mut out = [0u64; 4];
        for (i, limb) in out.iter_mut().enumerate() {
            let src = i + words;
            if src < 4 {
                *limb = self.0[src] << bits;
                if bits > 0 && src + 1 < 4 {
                    *limb |= self.0[src + 1] >> (64 - bits);
                }
            }
        }
        U256(out)
    }

    /// `self >> by`.
    pub fn shift_right(self, by: u32) -> U256 {
        if by >= 256 {
            return U256::ZERO;
        }
        let (words, bits) = ((by / 64) as usize, by % 64);
        let mut out = [0u64; 4];
        for i in (0..4).rev() {
            if i >= words {
                let src = i - words;
                out[i] = self.0[src] >> bits;
                if bits > 0 && src >= 1 {
                    out[i] |= self.0[src - 1] << (64 - bits);
                }
            }
        }
        U256(out)
    }

    /// `self * m`, or `None` on overflow.
    pub fn checked_mul_u64(self, m: u64) -> Option<U256> {
        let mut out = [0u64; 4];
        let mut carry: u128 = 0;
        for i in (0..4).rev() {
            let p = u128::from(self.0[i]) * u128::from(m) + carry;
            out[i] = p as u64;
            carry = p >> 64;
        }
        (carry == 0).then_some(U256(out))
    }

    /// `self / d` (rounded down); `d` must not be zero.
    pub fn div_u64(self, d: u64) -> U256 {
        assert!(d != 0, "division by zero");
        let mut out = [0u64; 4];
        let mut rem: u128 = 0;
        for (limb, src) in out.iter_mut().zip(self.0) {
            let cur = (rem << 64) | u128::from(src);
            *limb = (cur / u128::from(d)) as u64;
            rem = cur % u128::from(d);
        }
        U256(out)
    }

    /// The top 128 bits (`self >> 128`).
    fn high_u128(self) -> u128 {
        (u128::from(self.0[0]) << 64) | u128::from(self.0[1])
    }
}

impl Ord for U256 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

impl PartialOrd for U256 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a compact target is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompactError {
    /// The sign bit (0x0080_0000) is set: targets are never negative.
    #[error("compact target {0:#010x} is negative")]
    Negative(u32),
    /// The target does not fit in 256 bits.
    #[error("compact target {0:#010x} overflows 256 bits")]
    Overflow(u32),
    /// A zero target can never be met.
    #[error("compact target {0:#010x} is zero")]
    Zero(u32),
}

/// A target in compact form: `mantissa * 256^(exponent - 3)`, the exponent
/// in the top byte and a 23-bit mantissa below (bit 23 is a sign bit and
/// must be clear), as Bitcoin's `nBits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Compact(pub u32);

impl Compact {
    /// The 256-bit target it names.
    pub fn target(self) -> Result<U256, CompactError> {
        let exponent = self.0 >> 24;
        let mantissa = self.0 & 0x007f_ffff;
        if self.0 & 0x0080_0000 != 0 && mantissa != 0 {
            return Err(CompactError::Negative(self.0));
        }
        let target = if exponent <= 3 {
            U256::from_u64(u64::from(mantissa >> (8 * (3 - exponent))))
        } else {
            let shift = 8 * (exponent - 3);
            let m = U256::from_u64(u64::from(mantissa));
            if m.bits() + shift > 256 {
                return Err(CompactError::Overflow(self.0));
            }
            m.shift_left(shift)
        };
        if target.is_zero() {
            return Err(CompactError::Zero(self.0));
        }
        Ok(target)
    }

    /// The compact form of `target`, rounded down to what 23 bits of
    /// mantissa can say (so the named target is never easier).
    pub fn from_target(target: U256) -> Compact {
        let mut size = target.bits().div_ceil(8);
        let mut mantissa = if size <= 3 {
            (target.0[3] << (8 * (3 - size))) as u32
        } else {
            target.shift_right(8 * (size - 3)).0[3] as u32
        };
        // Bit 23 would read as a sign: move one byte into the exponent.
        if mantissa & 0x0080_0000 != 0 {
            mantissa >>= 8;
            size += 1;
        }
        Compact((size << 24) | mantissa)
    }
}

/// What a block's proof of work covers: its parent's seal hash, its
/// payload digest and the target it claims (compact form).
pub fn header_hash(parent: &Hash, payload_digest: &Hash, bits: Compact) -> Hash {
    Hash::of_parts(
        Domain::PowHeader,
        &[&parent.0, &payload_digest.0, &bits.0.to_be_bytes()],
    )
}

/// The hash a proof of work is judged by: the [`header_hash`] and the
/// nonce under the `PowHeader` domain tag. It is also the block's
/// identity in the PoW chain.
pub fn seal_hash(header: &Hash, nonce: u64) -> Hash {
    Hash::of_parts(Domain::PowHeader, &[&header.0, &nonce.to_le_bytes()])
}

/// Tries `count` nonces from `start` (wrapping) and returns the first
/// whose seal meets `target`: what a driver's mining thread runs, a
/// slice at a time.
pub fn search(header: &Hash, target: U256, start: u64, count: u64) -> Option<u64> {
    (0..count)
        .map(|i| start.wrapping_add(i))
        .find(|n| meets(&seal_hash(header, *n), target))
}

/// Whether `hash`, read as a big-endian number, is at most `target`.
pub fn meets(hash: &Hash, target: U256) -> bool {
    U256::from_be_bytes(&hash.0) <= target
}

/// The expected number of hashes to meet `target`, about
/// 2^256 / (target + 1), computed on the top 128 bits so that it fits a `u128`: exact
/// enough to compare chains, never larger for an easier target, and the
/// same on every node. Targets below 2^128 (harder than any chain here
/// can reach) all count as `u128::MAX`.
pub fn work(target: U256) -> u128 {
    match target.high_u128().checked_add(1) {
        Some(d) => u128::MAX / d,
        None => 1,
    }
}

/// The target whose [`work`] is about `w` (the inverse, rounded to the
/// same 128-bit precision).
pub fn target_for_work(w: u128) -> U256 {
    let high = u128::MAX / w.max(1);
    let high = high.saturating_sub(1);
    U256([(high >> 64) as u64, high as u64, u64::MAX, u64::MAX])
}

/// The median of the last (at most) [`MEDIAN_SPAN`] timestamps: a new
/// block's timestamp must be above it (Bitcoin's median-time-past rule), so
/// one miner's clock cannot drag the retarget's notion of time backwards.
pub fn median_time_past(recent: &[u64]) -> u64 {
    let start = recent.len().saturating_sub(MEDIAN_SPAN);
    let mut last: Vec<u64> = recent[start..].to_vec();
    if last.is_empty() {
        return 0;
    }
    last.sort_unstable();
    last[last.len() / 2]
}

/// How many recent blocks the median-time-past rule looks at.
pub const MEDIAN_SPAN: usize = 11;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn u(hex: &str) -> U256 {
        let mut b = [0u8; 32];
        let bytes = hex::decode(format!("{hex:0>64}")).unwrap();
        b.copy_from_slice(&bytes);
        U256::from_be_bytes(&b)
    }

    #[test]
    fn bitcoins_genesis_bits_name_its_target() {
        let t = Compact(0x1d00_ffff).target().unwrap();
        assert_eq!(
            t,
            u("00000000ffff0000000000000000000000000000000000000000000000000000")
        );
        assert_eq!(Compact::from_target(t), Compact(0x1d00_ffff));
        // Small exponents shift the mantissa down.
        assert_eq!(
            Compact(0x0312_3456).target().unwrap(),
            U256::from_u64(0x12_3456)
        );
        assert_eq!(
            Compact(0x0212_3456).target().unwrap(),
            U256::from_u64(0x1234)
        );
        assert_eq!(Compact(0x0112_3456).target().unwrap(), U256::from_u64(0x12));
    }

    #[test]
    fn bad_compact_targets_are_refused() {
        assert_eq!(
            Compact(0x0480_0001).target(),
            Err(CompactError::Negative(0x0480_0001))
        );
        assert_eq!(
            Compact(0x2201_0000).target(),
            Err(CompactError::Overflow(0x2201_0000))
        );
        assert_eq!(
            Compact(0x0100_0012).target(),
            Err(CompactError::Zero(0x0100_0012))
        );
        assert_eq!(Compact(0).target(), Err(CompactError::Zero(0)));
        // The largest target: 0x7fffff * 256^29 fits; 0xffff * 256^30 too.
        assert!(Compact(0x207f_ffff).target().is_ok());
        assert!(Compact(0x2100_ffff).target().is_ok());
    }

    #[test]
    fn the_seal_is_checked_against_the_target() {
        let block = Hash([7; 32]);
        let easy = Compact(0x207f_ffff).target().unwrap(); // about half of all hashes
        let found = (0..64u64)
            .find(|n| meets(&seal_hash(&block, *n), easy))
            .expect("an easy target is met within 64 tries");
        assert!(meets(&seal_hash(&block, found), easy));
        // The same nonce on another block, or with a hard target, fails.
        let hard = Compact(0x0300_0001).target().unwrap();
        assert!(!meets(&seal_hash(&block, found), hard));
        assert_ne!(seal_hash(&block, found), seal_hash(&Hash([8; 32]), found));
        // The boundary: a hash equal to the target meets it.
        let h = Hash(easy.to_be_bytes());
        assert!(meets(&h, easy));
        assert!(!meets(
            &Hash(easy.checked_mul_u64(2).unwrap().to_be_bytes()),
            easy
        ));
    }

    #[test]
    fn median_time_past_looks_at_the_last_eleven() {
        assert_eq!(median_time_past(&[]), 0);
        assert_eq!(median_time_past(&[5]), 5);
        assert_eq!(median_time_past(&[3, 1, 2]), 2);
        let ts: Vec<u64> = (0..30).collect();
        assert_eq!(median_time_past(&ts), 24);
        // One wild clock moves the median by at most one place.
        let mut wild = ts.clone();
        wild[29] = 1_000_000;
        assert_eq!(median_time_past(&wild), 24);
    }

    proptest! {
        #[test]
        fn compact_round_trips_and_never_rounds_up(limbs in any::<[u64; 4]>(), shift in 0u32..255) {
            let t = U256(limbs).shift_right(shift);
            prop_assume!(!t.is_zero());
            let c = Compact::from_target(t);
            let back = c.target().unwrap();
            prop_assert!(back <= t, "rounded up: {t:?} -> {c:?} -> {back:?}");
            // At most the 23-bit mantissa's precision is lost.
            prop_assert!(t.shift_right(t.bits().saturating_sub(16)) == back.shift_right(t.bits().saturating_sub(16)));
            prop_assert_eq!(Compact::from_target(back), c);
        }

        #[test]
        fn work_never_grows_with_an_easier_target(a in any::<[u64; 4]>(), b in any::<[u64; 4]>()) {
            let (a, b) = (U256(a), U256(b));
            let (easy, hard) = if a >= b { (a, b) } else { (b, a) };
            prop_assert!(work(easy) <= work(hard));
            prop_assert!(work(easy) >= 1);
        }

        #[test]
        fn target_for_work_inverts_work(hi in (1u128 << 20)..u128::MAX / 2) {
            let t = U256([(hi >> 64) as u64, hi as u64, 0, 0]);
            let w = work(t);
            let back = work(target_for_work(w));
            // Within the precision of the 128-bit division.
            let diff = back.abs_diff(w);
            prop_assert!(diff <= w / (1u128 << 20) + 1, "{w} -> {back}");
        }

        #[test]
        fn shifts_multiplication_and_division_agree(v in any::<u64>(), m in 1u64..u64::MAX, s in 0u32..192) {
            let x = U256::from_u64(v).shift_left(s);
            prop_assert_eq!(x.shift_right(s), U256::from_u64(v));
            if let Some(p) = x.checked_mul_u64(m) {
                prop_assert_eq!(p.div_u64(m), x);
            }
        }
    }
}
