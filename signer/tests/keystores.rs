//! EIP-2335 keystores: the EIP's two test vectors, and a refusal of its own for
//! each kind of bad keystore.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use serde_json::Value;
use signer::backend::soft::keystore::{self, KeystoreError};

const PASSWORD: &str = "𝔱𝔢𝔰𝔱𝔭𝔞𝔰𝔰𝔴𝔬𝔯𝔡🔑";
const SECRET: &str = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f";
const PUBKEY: &str = "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07";

fn vector(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors/eip2335")
        .join(name);
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[test]
fn eip2335_test_vectors_decrypt_to_the_stated_secret() {
    let mut n = 0;
    for name in ["scrypt.json", "pbkdf2.json"] {
        let ks = bytes(&vector(name));
        let d = keystore::decrypt(&ks, PASSWORD).unwrap();
        assert_eq!(hex::encode(&*d.secret), SECRET, "{name}");
        assert_eq!(d.pubkey.as_deref(), Some(PUBKEY));
        assert_eq!(d.key_type, None);
        let key = keystore::load_bls(&ks, PASSWORD).unwrap();
        assert_eq!(
            hex::encode(key.public_key().to_bytes()),
            PUBKEY,
            "{name}: the secret's public key"
        );
        n += 1;
    }
    println!("EIP-2335 test vectors: {n} keystores (scrypt, pbkdf2) decrypted");
    assert_eq!(n, 2);
}

#[test]
fn each_bad_keystore_gets_its_own_refusal() {
    let good = vector("pbkdf2.json"); // PBKDF2: cheaper than scrypt for the many cases
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        bytes(&v)
    };
    let mut cases = 0;

    assert!(matches!(
        keystore::load_bls(&bytes(&good), "testpassword"),
        Err(KeystoreError::ChecksumMismatch)
    ));
    cases += 1;

    // The checksum altered to another well-formed value.
    let altered = edit(&|v| {
        v["crypto"]["checksum"]["message"] =
            "8a9f5d9912ed7e75ea794bc5a89bca5f193721d30868ade6f73043c6ea6febf0".into()
    });
    assert!(matches!(
        keystore::load_bls(&altered, PASSWORD),
        Err(KeystoreError::ChecksumMismatch)
    ));
    // The ciphertext altered: the checksum catches it too.
    let altered = edit(&|v| {
        v["crypto"]["cipher"]["message"] =
            "cee03fde2af33149775b7223e7845e4fb2c8ae1792e5f99fe9ecf474cc8c16ae".into()
    });
    assert!(matches!(
        keystore::load_bls(&altered, PASSWORD),
        Err(KeystoreError::ChecksumMismatch)
    ));
    // A checksum that is not a SHA-256 at all.
    let short = edit(&|v| v["crypto"]["checksum"]["message"] = "8a9f5d99".into());
    assert!(matches!(
        keystore::load_bls(&short, PASSWORD),
        Err(KeystoreError::Malformed("checksum.message"))
    ));
    cases += 3;

    // Decrypts, but declares someone else's key.
    let other = signer::crypto::bls::BlsSecretKey::from_bytes(&[0x11; 32])
        .unwrap()
        .public_key();
    let other_hex = hex::encode(other.to_bytes());
    let lying = edit(&|v| v["pubkey"] = other_hex.clone().into());
    match keystore::load_bls(&lying, PASSWORD) {
        Err(KeystoreError::PublicKeyMismatch { declared, actual }) => {
            assert_eq!(declared, other_hex);
            assert_eq!(actual, PUBKEY);
        }
        other => panic!("expected PublicKeyMismatch, got {other:?}"),
    }
    cases += 1;

    let v3 = edit(&|v| v["version"] = 3.into());
    assert!(matches!(
        keystore::load_bls(&v3, PASSWORD),
        Err(KeystoreError::UnsupportedVersion(3))
    ));
    let gcm = edit(&|v| v["crypto"]["cipher"]["function"] = "aes-128-gcm".into());
    assert!(matches!(
        keystore::load_bls(&gcm, PASSWORD),
        Err(KeystoreError::UnsupportedFunction {
            module: "cipher",
            ..
        })
    ));
    let argon = edit(&|v| v["crypto"]["kdf"]["function"] = "argon2".into());
    assert!(matches!(
        keystore::load_bls(&argon, PASSWORD),
        Err(KeystoreError::UnsupportedFunction { module: "kdf", .. })
    ));
    cases += 3;

    // Parameters that would exhaust memory or time are refused before any work.
    let costly = edit(&|v| {
        v["crypto"]["kdf"]["function"] = "scrypt".into();
        v["crypto"]["kdf"]["params"] =
            serde_json::json!({"dklen": 32, "n": 1u64 << 30, "r": 8, "p": 1, "salt": "00"});
    });
    assert!(matches!(
        keystore::load_bls(&costly, PASSWORD),
        Err(KeystoreError::Malformed(_))
    ));
    let rounds = edit(&|v| v["crypto"]["kdf"]["params"]["c"] = (1u64 << 32).into());
    assert!(matches!(
        keystore::load_bls(&rounds, PASSWORD),
        Err(KeystoreError::Malformed("c"))
    ));
    let not_json = b"{\"crypto\": ".to_vec();
    assert!(matches!(
        keystore::load_bls(&not_json, PASSWORD),
        Err(KeystoreError::Json(_))
    ));
    cases += 3;

    println!("EIP-2335 refusals: {cases} bad keystores, each refused with its own error");
    assert_eq!(cases, 11);
}

#[test]
fn the_parallel_kdf_pass_opens_each_keystore_once_and_the_load_finds_it() {
    use signer::backend::Scheme;
    use signer::backend::soft::{SecretKey, write_key_file};
    use zeroize::Zeroizing;
    // Six keystores (scrypt, small n: the pass is what is tested, not speed),
    // one of them twice, and one with the wrong password.
    let mut jobs = Vec::new();
    let mut secrets = Vec::new();
    for i in 1..=6u8 {
        let secret = [i; 32];
        let key = SecretKey::from_secret(Scheme::Bls, &secret).unwrap();
        let json = write_key_file(&key, &secret, "pw", keystore::Kdf::Scrypt { log_n: 4 }, "")
            .unwrap()
            .into_bytes();
        jobs.push((json.clone(), Zeroizing::new("pw".to_owned())));
        secrets.push((json, secret));
    }
    jobs.push(jobs[0].clone());
    jobs.push((jobs[1].0.clone(), Zeroizing::new("wrong".to_owned())));

    let mut memo = keystore::KdfMemo::default();
    let heard = std::sync::Mutex::new((0, 0));
    memo.warm(&jobs, 3, &|ok| {
        let mut h = heard.lock().unwrap();
        if ok { h.0 += 1 } else { h.1 += 1 }
    });
    // Each distinct keystore through the KDF once; the wrong password failed.
    assert_eq!(*heard.lock().unwrap(), (6, 1));
    assert_eq!(memo.len(), 6);
    for (json, secret) in &secrets {
        assert_eq!(memo.decrypt(json, "pw").unwrap().secret.as_slice(), secret);
    }
    // The wrong password is not remembered as anything: refused again.
    assert!(matches!(
        memo.decrypt(&jobs[1].0, "wrong"),
        Err(KeystoreError::ChecksumMismatch)
    ));
    memo.sweep();
    // Each counted once, as decrypted, not also as reused (a failure is
    // not a decrypted keystore).
    assert_eq!(memo.last_round(), (0, 6));
    // A second pass over the same keystores runs no KDF.
    memo.warm(&jobs[..6], 3, &|_| panic!("no KDF should run"));
    for (json, _) in &secrets {
        memo.decrypt(json, "pw").unwrap();
    }
    memo.sweep();
    assert_eq!(memo.last_round(), (6, 0));
}
