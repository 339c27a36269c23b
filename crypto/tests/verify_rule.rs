//! The verification rule of `phalanx_crypto::keys`, edge case by edge case,
//! and the promise that batch verification gives the same verdict as single
//! verification on every input.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use phalanx_crypto::{
    verify_batch, BatchItem, Domain, Keypair, PublicKey, Signature, SignatureError,
};
use proptest::prelude::*;
use sha2::{Digest, Sha512};

/// The group order ℓ, little-endian.
const ELL: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn challenge(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(msg);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// Signs with secret scalar `a` but publishes key bytes `a_bytes` (which may
/// differ from `[a]B`, to build keys with a torsion component).
fn raw_sign(a: Scalar, a_bytes: [u8; 32], msg: &[u8], nonce_label: &[u8]) -> Signature {
    let r = Scalar::from_bytes_mod_order_wide(&Sha512::digest(nonce_label).into());
    let r_point = (B * r).compress().0;
    let k = challenge(&r_point, &a_bytes, msg);
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_point);
    sig[32..].copy_from_slice(s.as_bytes());
    Signature(sig)
}

/// A non-identity point of small order: `[ℓ]P` for a point `P` with a torsion part.
fn torsion_point() -> EdwardsPoint {
    for i in 0u32.. {
        let mut bytes: [u8; 32] = Sha512::digest(i.to_le_bytes())[..32].try_into().unwrap();
        bytes[31] &= 0x7f;
        let Some(p) = CompressedEdwardsY(bytes).decompress() else {
            continue;
        };
        // [ℓ]P = [ℓ-1]P + P, and ℓ-1 is the canonical form of -1.
        let t = p * (-Scalar::ONE) + p;
        if t != EdwardsPoint::default() {
            assert!(t.is_small_order());
            return t;
        }
    }
    unreachable!()
}

fn single(key: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
    key.verify_bytes(msg, sig).is_ok()
}

fn batch_of(cases: &[(PublicKey, Vec<u8>, Signature)]) -> Vec<bool> {
    let items: Vec<BatchItem<'_>> = cases
        .iter()
        .map(|(key, message, signature)| BatchItem {
            key,
            message,
            signature,
        })
        .collect();
    verify_batch(&items)
}

/// Mixes the edge cases into a batch of valid signatures and checks the batch
/// returns the single verdicts.
fn assert_batch_agrees(edge: Vec<(PublicKey, Vec<u8>, Signature)>) {
    let mut cases: Vec<_> = (0..20)
        .map(|i| {
            let kp = Keypair::from_label(&format!("k{i}"));
            let msg = format!("message {i}").into_bytes();
            let sig = kp.sign_bytes(&msg);
            (kp.public(), msg, sig)
        })
        .collect();
    for (n, e) in edge.into_iter().enumerate() {
        cases.insert((n * 7) % (cases.len() + 1), e);
    }
    let expected: Vec<bool> = cases.iter().map(|(k, m, s)| single(k, m, s)).collect();
    assert_eq!(batch_of(&cases), expected);
}

#[test]
fn honest_signatures_pass_with_domain_separation() {
    let kp = Keypair::from_label("alice");
    let sig = kp.sign(Domain::PbftPrepare, &(1u64, 2u64));
    assert_eq!(
        kp.public().verify(Domain::PbftPrepare, &(1u64, 2u64), &sig),
        Ok(())
    );
    // The same signature is worthless as a COMMIT or for another value.
    assert_eq!(
        kp.public().verify(Domain::PbftCommit, &(1u64, 2u64), &sig),
        Err(SignatureError::Invalid)
    );
    assert_eq!(
        kp.public().verify(Domain::PbftPrepare, &(1u64, 3u64), &sig),
        Err(SignatureError::Invalid)
    );
    // And ed25519-dalek's own RFC 8032 verifier agrees the signature is standard.
    let vk = ed25519_dalek::VerifyingKey::from_bytes(kp.public().as_bytes()).unwrap();
    let msg = phalanx_crypto::signing_bytes(Domain::PbftPrepare, &(1u64, 2u64));
    vk.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig.0))
        .unwrap();
}

#[test]
fn rfc8032_test_vector_1() {
    // RFC 8032 §7.1 TEST 1 (empty message).
    let seed = phalanx_crypto::parse_hex::<32>(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    )
    .unwrap();
    let kp = Keypair::from_seed(seed);
    assert_eq!(
        kp.public().to_string(),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
    let sig = kp.sign_bytes(b"");
    assert_eq!(
        sig.to_string(),
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    );
    assert!(single(&kp.public(), b"", &sig));
}

#[test]
fn non_canonical_s_is_rejected_by_both() {
    let kp = Keypair::from_label("s");
    let msg = b"pay 5".to_vec();
    let sig = kp.sign_bytes(&msg);
    // S + ℓ still satisfies the equation mod ℓ, but is a second encoding: malleable.
    let mut s_plus_l = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = sig.0[32 + i] as u16 + ELL[i] as u16 + carry;
        s_plus_l[i] = v as u8;
        carry = v >> 8;
    }
    let mut bad = sig;
    bad.0[32..].copy_from_slice(&s_plus_l);
    assert_eq!(
        kp.public().verify_bytes(&msg, &bad),
        Err(SignatureError::MalformedSignature)
    );
    assert_batch_agrees(vec![(kp.public(), msg, bad)]);
}

#[test]
fn small_order_keys_are_rejected_by_both() {
    // Identity key, identity R, S = 0: passes the bare cofactored equation for
    // every message, so the key itself must be refused.
    let identity = PublicKey(EdwardsPoint::default().compress().0);
    let mut forged = [0u8; 64];
    forged[..32].copy_from_slice(&identity.0);
    let forged = Signature(forged);
    assert_eq!(
        identity.verify_bytes(b"anything", &forged),
        Err(SignatureError::SmallOrderKey)
    );

    let t = PublicKey(torsion_point().compress().0);
    assert_eq!(
        t.verify_bytes(b"anything", &forged),
        Err(SignatureError::SmallOrderKey)
    );
    assert_batch_agrees(vec![
        (identity, b"anything".to_vec(), forged),
        (t, b"else".to_vec(), forged),
    ]);
}

#[test]
fn non_canonical_point_encodings_are_rejected_by_both() {
    let kp = Keypair::from_label("enc");
    let msg = b"m".to_vec();
    // y = p + 1 encodes the identity non-canonically.
    let mut noncanon_identity = [0xffu8; 32];
    noncanon_identity[0] = 0xee;
    noncanon_identity[31] = 0x7f;
    assert!(
        CompressedEdwardsY(noncanon_identity).decompress().is_some(),
        "decoder accepts it"
    );

    let mut bad_r = kp.sign_bytes(&msg);
    bad_r.0[..32].copy_from_slice(&noncanon_identity);
    assert_eq!(
        kp.public().verify_bytes(&msg, &bad_r),
        Err(SignatureError::MalformedSignature)
    );

    // A key whose x is 0 with the sign bit set ("negative zero") is non-canonical too.
    let mut neg_zero = EdwardsPoint::default().compress().0;
    neg_zero[31] |= 0x80;
    let key = PublicKey(neg_zero);
    assert_eq!(
        key.verify_bytes(&msg, &kp.sign_bytes(&msg)),
        Err(SignatureError::MalformedKey)
    );

    // Not a point at all.
    let not_point = (2u8..)
        .map(|b| {
            let mut bytes = [0u8; 32];
            bytes[0] = b;
            PublicKey(bytes)
        })
        .find(|k| CompressedEdwardsY(k.0).decompress().is_none())
        .unwrap();
    assert_eq!(
        not_point.verify_bytes(&msg, &kp.sign_bytes(&msg)),
        Err(SignatureError::MalformedKey)
    );

    assert_batch_agrees(vec![
        (kp.public(), msg.clone(), bad_r),
        (key, msg.clone(), kp.sign_bytes(&msg)),
        (not_point, msg.clone(), kp.sign_bytes(&msg)),
    ]);
}

#[test]
fn mixed_order_keys_follow_the_cofactored_equation_in_both() {
    // A' = [a]B + T: not small order, but with a torsion component. The
    // cofactored rule accepts a signature made with a; a cofactorless check
    // accepts it only when [k]T vanishes — the single/batch disagreement this
    // rule exists to avoid.
    let a = Scalar::from_bytes_mod_order_wide(&Sha512::digest(b"mixed").into());
    let key_point = B * a + torsion_point();
    let key = PublicKey(key_point.compress().0);
    let mut edge = Vec::new();
    let mut cofactorless_failures = 0;
    for i in 0..16 {
        let msg = format!("mixed {i}").into_bytes();
        let sig = raw_sign(a, key.0, &msg, &msg);
        assert_eq!(
            key.verify_bytes(&msg, &sig),
            Ok(()),
            "cofactored rule accepts"
        );
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.0).unwrap();
        if vk
            .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .is_err()
        {
            cofactorless_failures += 1;
        }
        edge.push((key, msg, sig));
    }
    assert!(
        cofactorless_failures > 0,
        "the case really separates the two rules"
    );
    // A signature by the mixed-order key on the wrong message still fails.
    let wrong = raw_sign(a, key.0, b"one", b"n");
    assert_eq!(
        key.verify_bytes(b"two", &wrong),
        Err(SignatureError::Invalid)
    );
    edge.push((key, b"two".to_vec(), wrong));
    assert_batch_agrees(edge);
}

#[test]
fn batch_isolates_every_bad_signature() {
    let mut cases: Vec<_> = (0..100)
        .map(|i| {
            let kp = Keypair::from_label(&format!("b{i}"));
            let msg = vec![i as u8; 10];
            let sig = kp.sign_bytes(&msg);
            (kp.public(), msg, sig)
        })
        .collect();
    for bad in [3usize, 4, 50, 99] {
        cases[bad].1[0] ^= 1;
    }
    let verdicts = batch_of(&cases);
    for (i, v) in verdicts.iter().enumerate() {
        assert_eq!(*v, ![3, 4, 50, 99].contains(&i), "item {i}");
    }
    assert!(verify_batch(&[]).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Random corruption of keys, messages and signatures: the batch always
    /// returns the single verdicts.
    #[test]
    fn batch_equals_single(
        n in 1usize..40,
        corruptions in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, 0usize..64, 0u8..8), 0..8),
    ) {
        let mut cases: Vec<_> = (0..n)
            .map(|i| {
                let kp = Keypair::from_label(&format!("p{i}"));
                let msg = format!("m{i}").into_bytes();
                let sig = kp.sign_bytes(&msg);
                (kp.public(), msg, sig)
            })
            .collect();
        for (idx, what, byte, bit) in corruptions {
            let c = &mut cases[idx.index(n)];
            match what {
                0 => c.0 .0[byte % 32] ^= 1 << bit,
                1 => c.1.push(bit),
                2 => c.2 .0[byte] ^= 1 << bit,
                _ => c.2 = Keypair::from_label("x").sign_bytes(&c.1),
            }
        }
        let expected: Vec<bool> = cases.iter().map(|(k, m, s)| single(k, m, s)).collect();
        prop_assert_eq!(batch_of(&cases), expected);
    }

    /// Flipping any bit of the message or the signature breaks a signature.
    #[test]
    fn any_bit_flip_breaks_signature(msg in prop::collection::vec(any::<u8>(), 0..200), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let kp = Keypair::from_label("flip");
        let sig = kp.sign_bytes(&msg);
        prop_assert!(single(&kp.public(), &msg, &sig));
        let mut bad = sig;
        bad.0[pos.index(64)] ^= 1 << bit;
        prop_assert!(!single(&kp.public(), &msg, &bad));
        if !msg.is_empty() {
            let mut m = msg.clone();
            m[pos.index(msg.len())] ^= 1 << bit;
            prop_assert!(!single(&kp.public(), &m, &sig));
        }
    }
}
