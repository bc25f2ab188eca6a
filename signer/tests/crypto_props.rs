//! Property tests: sign/verify round trips for the three schemes, and every
//! secp256k1 signature we emit is low-S with a correct recovery id.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;
use sha2::Digest;
use signer::crypto::bls::BlsSecretKey;
use signer::crypto::ed25519::{self, Ed25519SecretKey};
use signer::crypto::secp256k1::{self, Secp256k1SecretKey};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn bls_round_trip(key in any::<[u8; 32]>(), msg in any::<[u8; 32]>(), flip in 0usize..32) {
        let sk = BlsSecretKey::from_bytes(&key);
        prop_assume!(sk.is_ok()); // zero or ≥ r
        let sk = sk.unwrap();
        let sig = sk.sign(&msg);
        prop_assert!(sig.verify(&sk.public_key(), &msg).is_ok());
        let mut other = msg;
        other[flip] ^= 1;
        prop_assert!(sig.verify(&sk.public_key(), &other).is_err());
    }

    #[test]
    fn ed25519_round_trip(seed in any::<[u8; 32]>(), msg in proptest::collection::vec(any::<u8>(), 0..256), flip in 0usize..64) {
        let sk = Ed25519SecretKey::from_seed(&seed).unwrap();
        let sig = sk.sign(&msg);
        prop_assert!(ed25519::verify(&sk.public_key(), &msg, &sig).is_ok());
        let mut bad = sig;
        bad[flip] ^= 1;
        prop_assert!(ed25519::verify(&sk.public_key(), &msg, &bad).is_err());
    }

    #[test]
    fn secp256k1_is_always_low_s_and_recoverable(key in any::<[u8; 32]>(), digest in any::<[u8; 32]>()) {
        let sk = Secp256k1SecretKey::from_bytes(&key);
        prop_assume!(sk.is_ok());
        let sk = sk.unwrap();
        let sig = sk.sign_prehash(&digest);
        prop_assert_eq!(secp256k1::normalize(&sig.rs).unwrap(), sig.rs, "emitted a high-S signature");
        prop_assert!(secp256k1::verify_prehash(&sk.public_key(), &digest, &sig.rs).is_ok());
        prop_assert_eq!(secp256k1::recovery_id(&sk.public_key(), &digest, &sig.rs), Ok(sig.recovery_id));
        prop_assert_eq!(sig.to_ethereum_bytes()[64], 27 + sig.recovery_id);
        // Recovery is the check for signatures made elsewhere: another
        // digest, another key or a flipped bit is refused, not given an id.
        let mut other = digest;
        other[0] ^= 1;
        prop_assert!(secp256k1::recovery_id(&sk.public_key(), &other, &sig.rs).is_err());
        let mut bad = sig.rs;
        bad[40] ^= 1;
        prop_assert!(secp256k1::recovery_id(&sk.public_key(), &digest, &bad).is_err());
        let someone = Secp256k1SecretKey::from_bytes(&[9; 32]).unwrap().public_key();
        prop_assert!(secp256k1::recovery_id(&someone, &digest, &sig.rs).is_err());
        // A high-S copy is refused too (the caller normalises first).
        let high = high_s(&sig.rs);
        prop_assert_eq!(secp256k1::recovery_id(&sk.public_key(), &digest, &high), Err(signer::crypto::CryptoError::HighS));
    }

    #[test]
    fn secp256k1_cosmos_form_is_sha256(key in any::<[u8; 32]>(), msg in proptest::collection::vec(any::<u8>(), 0..256)) {
        let sk = Secp256k1SecretKey::from_bytes(&key);
        prop_assume!(sk.is_ok());
        let sk = sk.unwrap();
        let rs = sk.sign_sha256(&msg);
        prop_assert!(secp256k1::verify_prehash(&sk.public_key(), &sha2::Sha256::digest(&msg), &rs).is_ok());
    }
}

/// The same signature with s replaced by n − s.
fn high_s(rs: &[u8; 64]) -> [u8; 64] {
    let n =
        hex::decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141").unwrap();
    let mut out = *rs;
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(n[i]) - i16::from(rs[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        out[32 + i] = (d + 256 * borrow) as u8;
    }
    out
}
