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
