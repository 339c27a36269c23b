//! ed25519 keys and signatures.
//!
//! # Verification rule
//!
//! Phalanx accepts a signature `(R, S)` by key `A` on message `M` exactly when:
//!
//! 1. `S` is canonical (`S < ℓ`), so signatures are not malleable;
//! 2. `A` and `R` are canonical encodings of curve points (re-compressing the
//!    decoded point gives the same 32 bytes);
//! 3. `A` is not of small order (a small-order key would let anybody "sign"
//!    anything with `S = 0`);
//! 4. the **cofactored** equation holds: `[8]([S]B − R − [k]A) = 0`, with
//!    `k = SHA-512(R || A || M) mod ℓ`.
//!
//! The equation is the one of ZIP-215; the encoding checks are stricter. It is
//! chosen because the batch equation, a random linear combination of the single
//! ones, is also checked cofactored: a batch of signatures that each pass alone
//! passes, and a batch with any failing member fails (except with probability
//! 2⁻¹²⁸), whereas ed25519-dalek's cofactorless `verify`/`verify_strict` and its
//! batch check can disagree on keys or `R`s with a torsion component. Every
//! signature ed25519-dalek (or any RFC 8032 signer) produces passes this rule.
//! Batch and single verification share the parsing step and the equation, and a
//! failed batch is resolved into per-item verdicts by single verification, so
//! [`verify_batch`] returns exactly the verdicts of [`PublicKey::verify_bytes`].

use crate::bytes::byte_newtype;
use crate::encoding::{signing_bytes, Domain};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::Signer as _;
use serde::Serialize;
use sha2::{Digest as _, Sha512};
use std::collections::HashMap;
use std::sync::Mutex;

byte_newtype!(
    /// An ed25519 public key (32 bytes, compressed Edwards y).
    PublicKey,
    32
);

byte_newtype!(
    /// An ed25519 signature: `R` (32 bytes) then `S` (32 bytes).
    Signature,
    64
);

/// Why a signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The public key is not a canonical encoding of a curve point.
    #[error("public key is not a valid curve point")]
    MalformedKey,
    /// The public key is a point of small order.
    #[error("public key has small order")]
    SmallOrderKey,
    /// `R` is not a canonical encoding of a curve point, or `S` is not reduced.
    #[error("signature is not canonically encoded")]
    MalformedSignature,
    /// The verification equation does not hold.
    #[error("signature does not match key and message")]
    Invalid,
}

/// An ed25519 signing key with its public key.
pub struct Keypair {
    signing: ed25519_dalek::SigningKey,
    public: PublicKey,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Keypair")
            .field("public", &self.public)
            .finish()
    }
}

impl Clone for Keypair {
    fn clone(&self) -> Self {
        Keypair::from_seed(self.seed())
    }
}

impl Keypair {
    /// A fresh keypair from the operating system's random source.
    pub fn generate() -> Result<Keypair, getrandom::Error> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)?;
        Ok(Keypair::from_seed(seed))
    }

    /// The keypair for a 32-byte secret seed (RFC 8032 secret key).
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = PublicKey(signing.verifying_key().to_bytes());
        Keypair { signing, public }
    }

    /// A deterministic keypair for tests and the simulator: the seed is
    /// SHA-256 of `label`.
    pub fn from_label(label: &str) -> Keypair {
        Keypair::from_seed(crate::Hash::digest(label.as_bytes()).0)
    }

    /// The 32-byte secret seed. Handle with care.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Signs the canonical encoding of `value` in `domain`.
    pub fn sign<T: Serialize + ?Sized>(&self, domain: Domain, value: &T) -> Signature {
        self.sign_bytes(&signing_bytes(domain, value))
    }

    /// Signs raw message bytes (already carrying their domain tag).
    pub fn sign_bytes(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }
}

/// A public key decoded and checked once, for keys that verify many signatures.
#[derive(Clone, Copy, Debug)]
pub struct PreparedKey {
    bytes: PublicKey,
    point: EdwardsPoint,
}

/// Keys decoded before, shared by every verification in the process.
/// Decoding a key costs a field square root, about a quarter of a batched
/// verification, and the same accounts and validators sign again and again.
/// Only keys that passed the checks are kept; cleared when full.
static KEY_CACHE: Mutex<Option<HashMap<PublicKey, EdwardsPoint>>> = Mutex::new(None);

/// Most keys [`KEY_CACHE`] holds (about 10 MB).
const KEY_CACHE_MAX: usize = 65_536;

/// [`PreparedKey::new`] for each key, through [`KEY_CACHE`] (one lock to
/// look up, one to remember the new ones).
fn prepare_keys<'a>(
    keys: impl Iterator<Item = &'a PublicKey>,
) -> Vec<Result<PreparedKey, SignatureError>> {
    let keys: Vec<&PublicKey> = keys.collect();
    let known: Vec<Option<EdwardsPoint>> = {
        let guard = KEY_CACHE.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .map(|k| guard.as_ref().and_then(|m| m.get(*k).copied()))
            .collect()
    };
    let mut fresh = Vec::new();
    let out: Vec<_> = keys
        .iter()
        .zip(known)
        .map(|(key, known)| match known {
            Some(point) => Ok(PreparedKey {
                bytes: **key,
                point,
            }),
            None => {
                let prepared = PreparedKey::new(key);
                if let Ok(p) = &prepared {
                    fresh.push(*p);
                }
                prepared
            }
        })
        .collect();
    if !fresh.is_empty() {
        let mut guard = KEY_CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let map = guard.get_or_insert_with(HashMap::new);
        if map.len() + fresh.len() > KEY_CACHE_MAX {
            map.clear();
        }
        for p in fresh {
            map.insert(p.bytes, p.point);
        }
    }
    out
}

impl PreparedKey {
    /// The key these bytes encode, if it passes rules 2 and 3.
    pub fn new(key: &PublicKey) -> Result<PreparedKey, SignatureError> {
        let point = decode_point(&key.0).ok_or(SignatureError::MalformedKey)?;
        if point.is_small_order() {
            return Err(SignatureError::SmallOrderKey);
        }
        Ok(PreparedKey { bytes: *key, point })
    }

    /// Verifies `signature` on the raw `message` bytes.
    pub fn verify_bytes(
        &self,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let parsed = ParsedSig::new(self, message, signature)?;
        let lhs =
            EdwardsPoint::vartime_double_scalar_mul_basepoint(&parsed.k, &-self.point, &parsed.s);
        if (lhs - parsed.r).mul_by_cofactor().is_identity() {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }
}

impl PublicKey {
    /// Verifies `signature` on the canonical encoding of `value` in `domain`.
    pub fn verify<T: Serialize + ?Sized>(
        &self,
        domain: Domain,
        value: &T,
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        self.verify_bytes(&signing_bytes(domain, value), signature)
    }

    /// Verifies `signature` on raw message bytes (already carrying their domain tag).
    pub fn verify_bytes(
        &self,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let key = prepare_keys(std::iter::once(self)).pop();
        key.unwrap_or(Err(SignatureError::MalformedKey))?
            .verify_bytes(message, signature)
    }
}

/// Decodes a point, rejecting non-canonical encodings.
fn decode_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    if !is_canonical_encoding(bytes) {
        return None;
    }
    CompressedEdwardsY(*bytes).decompress()
}

/// Whether decoding `bytes` and compressing the point again would give the
/// same bytes, decided on the bytes alone (a re-compression costs a field
/// inversion, a third of a verification's decoding work).
///
/// Decompression accepts two kinds of encodings that compress differently:
/// `y ≥ p` (it reduces `y` mod `p = 2²⁵⁵ − 19`), and a set sign bit when
/// `x = 0`, which happens exactly for `y = ±1` (`x² = (y² − 1)/(dy² + 1)`).
fn is_canonical_encoding(bytes: &[u8; 32]) -> bool {
    let sign = bytes[31] >> 7;
    let mut y = *bytes;
    y[31] &= 0x7f;
    // p little-endian: ed ff … ff 7f. y ≥ p iff the top 31 bytes are all at
    // their maximum and the lowest byte is ≥ 0xed.
    let top_max = y[31] == 0x7f && y[1..31].iter().all(|&b| b == 0xff);
    if top_max && y[0] >= 0xed {
        return false;
    }
    if sign == 1 {
        let is_one = y[0] == 1 && y[1..].iter().all(|&b| b == 0);
        let is_minus_one = top_max && y[0] == 0xec;
        if is_one || is_minus_one {
            return false;
        }
    }
    true
}

/// A signature after the encoding checks, with its challenge `k`.
struct ParsedSig {
    r: EdwardsPoint,
    r_bytes: [u8; 32],
    s: Scalar,
    k: Scalar,
}

impl ParsedSig {
    fn new(
        key: &PreparedKey,
        message: &[u8],
        sig: &Signature,
    ) -> Result<ParsedSig, SignatureError> {
        let (r_bytes, s_bytes) = sig.0.split_at(32);
        let r_bytes: [u8; 32] = r_bytes
            .try_into()
            .map_err(|_| SignatureError::MalformedSignature)?;
        let s_bytes: [u8; 32] = s_bytes
            .try_into()
            .map_err(|_| SignatureError::MalformedSignature)?;
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
            .ok_or(SignatureError::MalformedSignature)?;
        let r = decode_point(&r_bytes).ok_or(SignatureError::MalformedSignature)?;
        let mut h = Sha512::new();
        h.update(r_bytes);
        h.update(key.bytes.0);
        h.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        Ok(ParsedSig { r, r_bytes, s, k })
    }
}

/// One signature to check in a batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchItem<'a> {
    /// The claimed signer.
    pub key: &'a PublicKey,
    /// The signed bytes (with their domain tag, as from [`signing_bytes`]).
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a Signature,
}

/// Verifies many signatures at once; returns one verdict per item, each equal
/// to what [`PublicKey::verify_bytes`] returns for that item alone.
///
/// The random weights of the batch equation are derived from a hash of the
/// whole batch, so the result is deterministic.
pub fn verify_batch(items: &[BatchItem<'_>]) -> Vec<bool> {
    let mut verdicts = vec![false; items.len()];
    // Parse everything first: encoding failures are per-item verdicts.
    let mut parsed: Vec<(usize, EdwardsPoint, ParsedSig)> = Vec::with_capacity(items.len());
    let keys = prepare_keys(items.iter().map(|item| item.key));
    for (i, (item, key)) in items.iter().zip(keys).enumerate() {
        let Ok(key) = key else {
            continue;
        };
        if let Ok(p) = ParsedSig::new(&key, item.message, item.signature) {
            parsed.push((i, key.point, p));
        }
    }
    resolve(&parsed, &mut verdicts);
    verdicts
}

/// Below this many signatures a failed batch is resolved one by one.
const SPLIT_BELOW: usize = 8;

/// Marks every item of `batch` in `verdicts`: all true if the batch equation
/// holds, otherwise by splitting the batch in halves down to single checks.
fn resolve(batch: &[(usize, EdwardsPoint, ParsedSig)], verdicts: &mut [bool]) {
    if batch.is_empty() {
        return;
    }
    if batch.len() < SPLIT_BELOW {
        for (i, a, p) in batch {
            let lhs = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &-a, &p.s);
            verdicts[*i] = (lhs - p.r).mul_by_cofactor().is_identity();
        }
        return;
    }
    if batch_equation_holds(batch) {
        for (i, _, _) in batch {
            verdicts[*i] = true;
        }
        return;
    }
    let (left, right) = batch.split_at(batch.len() / 2);
    resolve(left, verdicts);
    resolve(right, verdicts);
}

/// `[8]([Σ zᵢSᵢ]B − Σ [zᵢ]Rᵢ − Σ [zᵢkᵢ]Aᵢ) = 0` with 128-bit weights `zᵢ`
/// taken from a hash of the whole batch.
fn batch_equation_holds(batch: &[(usize, EdwardsPoint, ParsedSig)]) -> bool {
    let mut transcript = Sha512::new();
    transcript.update(b"phalanx/v1/batch-verify");
    for (_, _, p) in batch {
        transcript.update(p.k.as_bytes());
        transcript.update(p.s.as_bytes());
        transcript.update(p.r_bytes);
    }
    let seed = transcript.finalize();
    let weights: Vec<Scalar> = (0..batch.len() as u64)
        .map(|i| {
            let mut h = Sha512::new();
            h.update(seed);
            h.update(i.to_le_bytes());
            let mut z = [0u8; 32];
            z[..16].copy_from_slice(&h.finalize()[..16]);
            Scalar::from_bytes_mod_order(z)
        })
        .collect();
    let b_coeff: Scalar = batch
        .iter()
        .zip(&weights)
        .map(|((_, _, p), z)| z * p.s)
        .sum();
    let scalars = std::iter::once(b_coeff)
        .chain(weights.iter().map(|z| -z))
        .chain(batch.iter().zip(&weights).map(|((_, _, p), z)| -(z * p.k)));
    let points = std::iter::once(curve25519_dalek::constants::ED25519_BASEPOINT_POINT)
        .chain(batch.iter().map(|(_, _, p)| p.r))
        .chain(batch.iter().map(|(_, a, _)| *a));
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition the fast check replaces: decode, re-compress, compare.
    fn roundtrips(bytes: &[u8; 32]) -> Option<bool> {
        let point = CompressedEdwardsY(*bytes).decompress()?;
        Some(point.compress().0 == *bytes)
    }

    fn le(low: u8, top: u8, fill: u8) -> [u8; 32] {
        let mut b = [fill; 32];
        b[0] = low;
        b[31] = top;
        b
    }

    /// Every encoding near the edges: y around 0, ±1 and p, with and without
    /// the sign bit. The fast check must agree with the re-compression
    /// wherever decompression succeeds.
    #[test]
    fn canonical_check_matches_recompression_at_the_edges() {
        let mut cases = Vec::new();
        for low in 0..=255u8 {
            cases.push(le(low, 0x00, 0x00)); // y small (0, 1, 2, …)
            cases.push(le(low, 0x7f, 0xff)); // y near p and above it
        }
        let mut checked = 0;
        let mut rejected = 0;
        for case in cases {
            for sign in [0u8, 0x80] {
                let mut b = case;
                b[31] |= sign;
                if let Some(expected) = roundtrips(&b) {
                    checked += 1;
                    assert_eq!(is_canonical_encoding(&b), expected, "{}", hex::encode(b));
                    if !expected {
                        rejected += 1;
                    }
                }
            }
        }
        // y = 1 and y = p − 1 with the sign bit, and the y ≥ p encodings that
        // decode, were all seen and rejected.
        assert!(rejected >= 4, "only {rejected} non-canonical cases decoded");
        assert!(checked > 100);
    }

    /// Verdicts do not depend on whether a key came from the cache: a key
    /// verifies the same before and after it is cached, a bad signature by a
    /// cached key still fails, and a rejected key is never cached.
    #[test]
    fn cached_keys_give_the_same_verdicts() {
        let key = Keypair::from_label("cache-test");
        let public = key.public();
        let good = key.sign_bytes(b"m");
        let mut bad = good;
        bad.0[40] ^= 1;
        for _ in 0..3 {
            assert_eq!(public.verify_bytes(b"m", &good), Ok(()));
            assert!(public.verify_bytes(b"m", &bad).is_err());
            assert!(public.verify_bytes(b"other", &good).is_err());
        }
        let cached = KEY_CACHE
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|m| m.contains_key(&public));
        assert!(cached);
        // The identity point: small order, refused every time, never cached.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = PublicKey(identity);
        for _ in 0..2 {
            assert_eq!(
                weak.verify_bytes(b"m", &good),
                Err(SignatureError::SmallOrderKey)
            );
        }
        let cached = KEY_CACHE
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|m| m.contains_key(&weak));
        assert!(!cached);
    }

    proptest! {
        #[test]
        fn canonical_check_matches_recompression(bytes in proptest::array::uniform32(any::<u8>())) {
            if let Some(expected) = roundtrips(&bytes) {
                prop_assert_eq!(is_canonical_encoding(&bytes), expected);
            }
        }

        #[test]
        fn real_keys_and_nonces_are_canonical(seed in proptest::array::uniform32(any::<u8>())) {
            let key = Keypair::from_seed(seed);
            prop_assert!(is_canonical_encoding(&key.public().0));
            let sig = key.sign_bytes(b"m");
            let r: [u8; 32] = sig.0[..32].try_into().unwrap();
            prop_assert!(is_canonical_encoding(&r));
        }
    }
}
