//! Local key files: our key file (EIP-2335 container + key_type) round trips
//! for every scheme; CometBFT's priv_validator_key.json; Web3Signer key
//! configuration directories.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use base64::Engine as _;
use sha2::Digest;
use signer::backend::soft::cometbft::{self, PrivValidatorKeyError};
use signer::backend::soft::keystore::{Kdf, KeystoreError};
use signer::backend::soft::web3signer::{self, KeyConfigError};
use signer::backend::soft::{self, Scheme, SecretKey};

const CHEAP: Kdf = Kdf::Pbkdf2 { rounds: 1_000 };

#[test]
fn our_key_file_round_trips_every_scheme() {
    let mut n = 0;
    for (scheme, secret) in [
        (Scheme::Bls, [0x11u8; 32]),
        (Scheme::Ed25519, [0x22; 32]),
        (Scheme::Secp256k1, [0x33; 32]),
    ] {
        let key = SecretKey::from_secret(scheme, &secret).unwrap();
        for kdf in [CHEAP, Kdf::Scrypt { log_n: 10 }] {
            let file =
                soft::write_key_file(&key, &secret, "correct horse", kdf, "test key").unwrap();
            let back = soft::load_key_file(file.as_bytes(), "correct horse").unwrap();
            assert_eq!(back.scheme(), scheme);
            assert_eq!(back.public_key(), key.public_key());
            assert!(matches!(
                soft::load_key_file(file.as_bytes(), "wrong"),
                Err(KeystoreError::ChecksumMismatch)
            ));
            assert!(
                !file.contains(&hex::encode(secret)),
                "the secret appears in the file"
            );
            n += 1;
        }
    }
    // BLS key files are plain EIP-2335: no key_type field.
    let bls = SecretKey::from_secret(Scheme::Bls, &[0x11; 32]).unwrap();
    let file = soft::write_key_file(&bls, &[0x11; 32], "pw", CHEAP, "").unwrap();
    assert!(!file.contains("key_type"));
    println!("key files: {n} round trips (3 schemes × 2 KDFs)");
    assert_eq!(n, 6);
}

#[test]
fn a_key_file_with_an_unknown_type_or_a_foreign_public_key_is_refused() {
    let key = SecretKey::from_secret(Scheme::Ed25519, &[0x22; 32]).unwrap();
    let file = soft::write_key_file(&key, &[0x22; 32], "pw", CHEAP, "").unwrap();
    let unknown = file.replace("\"ed25519\"", "\"sr25519\"");
    assert!(matches!(
        soft::load_key_file(unknown.as_bytes(), "pw"),
        Err(KeystoreError::UnsupportedFunction {
            module: "key_type",
            ..
        })
    ));
    let other = SecretKey::from_secret(Scheme::Ed25519, &[0x23; 32]).unwrap();
    let foreign = file.replace(
        &hex::encode(key.public_key()),
        &hex::encode(other.public_key()),
    );
    assert!(matches!(
        soft::load_key_file(foreign.as_bytes(), "pw"),
        Err(KeystoreError::PublicKeyMismatch { .. })
    ));
}

/// The key of CometBFT's privval test fixture (seed = SHA-256("it's a secret"),
/// public key from the vector file), written the way CometBFT writes it.
#[test]
fn cometbft_priv_validator_key_json() {
    let vectors: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/vectors/cometbft/sign_bytes_and_privval_vectors.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let want_pk = hex::decode(
        vectors["privval_fixture"]["pubkey_ed25519_hex"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let seed = sha2::Sha256::digest(b"it's a secret");
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let file = |address: &str, pk: &[u8], sk: &[u8]| {
        serde_json::json!({
            "address": address,
            "pub_key": {"type": "tendermint/PubKeyEd25519", "value": b64(pk)},
            "priv_key": {"type": "tendermint/PrivKeyEd25519", "value": b64(sk)}
        })
        .to_string()
    };
    let address = hex::encode_upper(&sha2::Sha256::digest(&want_pk)[..20]);
    let full: Vec<u8> = [seed.as_slice(), &want_pk].concat();
    let key =
        cometbft::load_priv_validator_key(file(&address, &want_pk, &full).as_bytes()).unwrap();
    assert_eq!(key.scheme(), Scheme::Ed25519);
    assert_eq!(key.public_key(), want_pk);

    let other_pk = SecretKey::from_secret(Scheme::Ed25519, &[9; 32])
        .unwrap()
        .public_key();
    assert!(matches!(
        cometbft::load_priv_validator_key(file(&address, &other_pk, &full).as_bytes()),
        Err(PrivValidatorKeyError::Mismatch("pub_key"))
    ));
    assert!(matches!(
        cometbft::load_priv_validator_key(
            file("00112233445566778899AABBCCDDEEFF00112233", &want_pk, &full).as_bytes()
        ),
        Err(PrivValidatorKeyError::Mismatch("address"))
    ));
    let wrong_half: Vec<u8> = [seed.as_slice(), &other_pk].concat();
    assert!(matches!(
        cometbft::load_priv_validator_key(file(&address, &want_pk, &wrong_half).as_bytes()),
        Err(PrivValidatorKeyError::Mismatch(
            "the public half of priv_key"
        ))
    ));
    let sr = file(&address, &want_pk, &full)
        .replace("tendermint/PrivKeyEd25519", "tendermint/PrivKeySr25519");
    assert!(matches!(
        cometbft::load_priv_validator_key(sr.as_bytes()),
        Err(PrivValidatorKeyError::UnsupportedType(_))
    ));
}

#[test]
fn web3signer_key_configuration_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let eip =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/eip2335/pbkdf2.json");
    std::fs::copy(&eip, d.join("keystore.json")).unwrap();
    std::fs::write(d.join("keystore.pass"), "𝔱𝔢𝔰𝔱𝔭𝔞𝔰𝔰𝔴𝔬𝔯𝔡🔑\n").unwrap();
    // The same keystore claiming another public key.
    let mut lying: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&eip).unwrap()).unwrap();
    lying["pubkey"] = "aa".repeat(48).into();
    std::fs::write(d.join("lying.json"), lying.to_string()).unwrap();
    let bls_raw = SecretKey::from_secret(Scheme::Bls, &[0x11; 32]).unwrap();
    let k1_raw = SecretKey::from_secret(Scheme::Secp256k1, &[0x33; 32]).unwrap();
    let files = [
        ("a-raw.yaml", format!("# a raw BLS key\ntype: \"file-raw\"\nkeyType: \"BLS\"\nprivateKey: \"0x{}\"\n", "11".repeat(32))),
        ("b-keystore.yaml", "type: file-keystore\nkeyType: BLS\nkeystoreFile: keystore.json\nkeystorePasswordFile: 'keystore.pass'\n".into()),
        ("c-multi.yml", format!("---\ntype: file-raw\nkeyType: SECP256K1\nprivateKey: {}\n---\ntype: aws-kms\nkeyType: SECP256K1\n", "33".repeat(32))),
        ("d-nested.yaml", "type: file-raw\nprivateKey:\n  value: 0x00\n".into()),
        ("e-bad-key.yaml", "type: file-raw\nkeyType: BLS\nprivateKey: \"0x00\"\n".into()),
        ("f-wrong-password.yaml", "type: file-keystore\nkeystoreFile: keystore.json\nkeystorePasswordFile: missing.pass\n".into()),
        ("g-lying.yaml", "type: file-keystore\nkeystoreFile: lying.json\nkeystorePasswordFile: keystore.pass\n".into()),
        ("ignored.txt", "type: file-raw\n".into()),
    ];
    for (name, body) in &files {
        std::fs::write(d.join(name), body).unwrap();
    }
    let report = web3signer::load_dir(d).unwrap();
    let loaded: Vec<(String, Vec<u8>)> = report
        .keys
        .iter()
        .map(|(p, k)| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                k.public_key(),
            )
        })
        .collect();
    let eip_pk = hex::decode("9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07").unwrap();
    assert_eq!(
        loaded,
        [
            ("a-raw.yaml".to_owned(), bls_raw.public_key()),
            ("b-keystore.yaml".to_owned(), eip_pk),
            ("c-multi.yml".to_owned(), k1_raw.public_key()),
        ]
    );
    let errors: Vec<(String, String)> = report
        .errors
        .iter()
        .map(|(p, e)| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                format!("{e:?}"),
            )
        })
        .collect();
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(matches!(&report.errors[0].1, KeyConfigError::UnsupportedType(t) if t == "aws-kms"));
    assert!(matches!(
        &report.errors[1].1,
        KeyConfigError::Yaml { line: 2, .. }
    ));
    assert!(matches!(&report.errors[2].1, KeyConfigError::InvalidKey(_)));
    assert!(matches!(
        &report.errors[3].1,
        KeyConfigError::Keystore(KeystoreError::Io { .. })
    ));
    // A keystore that is not its secret's names the keystore file, not only
    // the YAML that points at it.
    assert!(matches!(
        &report.errors[4].1,
        KeyConfigError::KeystoreFile { path, source: KeystoreError::PublicKeyMismatch { .. } }
            if path.ends_with("lying.json")
    ));
    let text = report.errors[4].1.to_string();
    assert!(
        text.starts_with(&format!("keystore {}: ", d.join("lying.json").display())),
        "{text}"
    );
    // Secrets never reach error messages.
    for (_, e) in &report.errors {
        assert!(!e.to_string().contains(&"33".repeat(32)));
    }
    println!(
        "Web3Signer key configs: {} keys loaded, {} files refused with their reason",
        report.keys.len(),
        report.errors.len()
    );
}

#[test]
fn flat_yaml_parser_reads_the_subset_and_refuses_the_rest() {
    let docs = web3signer::parse_documents(
        "a: plain # comment\nb: \"q \\\" d\"\nc: 'it''s'\n---\n\nd: x\r\n",
    )
    .unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["a"].as_str(), "plain");
    assert_eq!(docs[0]["b"].as_str(), "q \" d");
    assert_eq!(docs[0]["c"].as_str(), "it's");
    assert_eq!(docs[1]["d"].as_str(), "x");
    for (text, line) in [
        ("a: 1\na: 2\n", 2),
        ("a: [1, 2]\n", 1),
        ("a: &anchor x\n", 1),
        ("a: |\n  block\n", 1),
        ("ok: 1\n  nested: 2\n", 2),
        ("a: \"\\n\"\n", 1),
        ("a:b\n", 1),
        ("just text\n", 1),
    ] {
        match web3signer::parse_documents(text) {
            Err(KeyConfigError::Yaml { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
            other => panic!("{text:?}: expected a YAML refusal, got {other:?}"),
        }
    }
}
