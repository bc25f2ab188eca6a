//! Public test vectors for the three signature schemes. Each suite prints how
//! many cases ran and asserts the count, so a file that stops loading is noticed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::unhex;

use std::path::PathBuf;

use serde_json::Value;
use sha2::Digest;
use signer::crypto::bls::{self, BlsPublicKey, BlsSecretKey, BlsSignature};
use signer::crypto::{ed25519, secp256k1};

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors")
}

fn json(rel: &str) -> Value {
    let p = vectors().join(rel);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

/// Hex with or without `0x` (the suites use both).
fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

#[test]
fn bls_consensus_spec_cases() {
    let all = json("bls/consensus-spec/bls.json");
    let mut ran = std::collections::BTreeMap::new();
    for case in all["sign"].as_array().unwrap() {
        let sk = BlsSecretKey::from_bytes(&unhex(s(&case["input"]["privkey"])));
        let msg = unhex(s(&case["input"]["message"]));
        match (&case["output"], sk) {
            (Value::Null, Err(_)) => {}
            (Value::String(want), Ok(sk)) => assert_eq!(
                sk.sign(&msg).to_bytes().to_vec(),
                unhex(want),
                "{}",
                case["case"]
            ),
            (want, got) => panic!("{}: expected {want}, got {got:?}", case["case"]),
        }
        *ran.entry("sign").or_insert(0) += 1;
    }
    for case in all["verify"].as_array().unwrap() {
        let i = &case["input"];
        let ok = BlsPublicKey::from_bytes(&unhex(s(&i["pubkey"])))
            .ok()
            .zip(BlsSignature::from_bytes(&unhex(s(&i["signature"]))).ok())
            .is_some_and(|(pk, sig)| sig.verify(&pk, &unhex(s(&i["message"]))).is_ok());
        assert_eq!(Value::Bool(ok), case["output"], "{}", case["case"]);
        *ran.entry("verify").or_insert(0) += 1;
    }
    for case in all["aggregate"].as_array().unwrap() {
        let sigs: Option<Vec<BlsSignature>> = case["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| BlsSignature::from_bytes(&unhex(s(x))).ok())
            .collect();
        let got = sigs.and_then(|sigs| BlsSignature::aggregate(&sigs).ok());
        match (&case["output"], got) {
            (Value::Null, None) => {}
            (Value::String(want), Some(agg)) => {
                assert_eq!(agg.to_bytes().to_vec(), unhex(want), "{}", case["case"])
            }
            (want, got) => panic!("{}: expected {want}, got {got:?}", case["case"]),
        }
        *ran.entry("aggregate").or_insert(0) += 1;
    }
    for case in all["fast_aggregate_verify"].as_array().unwrap() {
        let i = &case["input"];
        let pks: Option<Vec<BlsPublicKey>> = i["pubkeys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| BlsPublicKey::from_bytes(&unhex(s(x))).ok())
            .collect();
        let ok = pks
            .zip(BlsSignature::from_bytes(&unhex(s(&i["signature"]))).ok())
            .is_some_and(|(pks, sig)| {
                sig.fast_aggregate_verify(&pks, &unhex(s(&i["message"])))
                    .is_ok()
            });
        assert_eq!(Value::Bool(ok), case["output"], "{}", case["case"]);
        *ran.entry("fast_aggregate_verify").or_insert(0) += 1;
    }
    for case in all["aggregate_verify"].as_array().unwrap() {
        let i = &case["input"];
        let pks: Option<Vec<BlsPublicKey>> = i["pubkeys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| BlsPublicKey::from_bytes(&unhex(s(x))).ok())
            .collect();
        let msgs: Vec<Vec<u8>> = i["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| unhex(s(x)))
            .collect();
        let msgs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        let ok = pks
            .zip(BlsSignature::from_bytes(&unhex(s(&i["signature"]))).ok())
            .is_some_and(|(pks, sig)| sig.aggregate_verify(&pks, &msgs).is_ok());
        assert_eq!(Value::Bool(ok), case["output"], "{}", case["case"]);
        *ran.entry("aggregate_verify").or_insert(0) += 1;
    }
    println!("BLS consensus-spec vectors: {ran:?}");
    let total: usize = ran.values().sum();
    assert_eq!(total, 33);
}

#[test]
fn bls_point_deserialisation_cases() {
    let mut counts = [0usize; 2];
    for (i, (dir, field, decode)) in [
        (
            "bls/deserialization_G1",
            "pubkey",
            bls::g1_point_is_valid as fn(&[u8]) -> bool,
        ),
        (
            "bls/deserialization_G2",
            "signature",
            bls::g2_point_is_valid,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        for entry in std::fs::read_dir(vectors().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let case: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let text = s(&case["input"][field]);
            // The same bytes with and without the 0x prefix.
            for form in [
                text.to_owned(),
                text.strip_prefix("0x")
                    .map_or(format!("0x{text}"), str::to_owned),
            ] {
                let ok =
                    hex::decode(form.strip_prefix("0x").unwrap_or(&form)).is_ok_and(|b| decode(&b));
                assert_eq!(
                    Value::Bool(ok),
                    case["output"],
                    "{} ({form})",
                    path.display()
                );
            }
            counts[i] += 1;
        }
    }
    println!(
        "BLS deserialisation vectors: {} G1, {} G2 (each with and without 0x)",
        counts[0], counts[1]
    );
    assert_eq!(counts, [16, 18]);
}

#[test]
fn ed25519_rfc8032_and_dalek_testvectors() {
    let rfc = json("ed25519/ed25519_rfc8032_section7.1.json");
    let mut n_rfc = 0;
    for v in rfc["vectors"].as_array().unwrap() {
        let sk = ed25519::Ed25519SecretKey::from_seed(&unhex(s(&v["secret_key"]))).unwrap();
        assert_eq!(
            sk.public_key().to_vec(),
            unhex(s(&v["public_key"])),
            "{}",
            v["name"]
        );
        let msg = unhex(s(&v["message"]));
        let sig = sk.sign(&msg);
        assert_eq!(sig.to_vec(), unhex(s(&v["signature"])), "{}", v["name"]);
        ed25519::verify(&sk.public_key(), &msg, &sig).unwrap();
        n_rfc += 1;
    }
    let mut n_dalek = 0;
    for line in std::fs::read_to_string(vectors().join("ed25519/dalek-TESTVECTORS"))
        .unwrap()
        .lines()
    {
        let f: Vec<&str> = line.split(':').collect();
        let (seed_pk, pk, msg, sig_msg) = (unhex(f[0]), unhex(f[1]), unhex(f[2]), unhex(f[3]));
        let sk = ed25519::Ed25519SecretKey::from_seed(&seed_pk[..32]).unwrap();
        assert_eq!(sk.public_key().to_vec(), pk);
        let sig = sk.sign(&msg);
        assert_eq!(sig.to_vec(), sig_msg[..64].to_vec(), "line {}", n_dalek + 1);
        ed25519::verify(&pk, &msg, &sig).unwrap();
        n_dalek += 1;
    }
    println!("Ed25519 vectors: {n_rfc} RFC 8032, {n_dalek} ed25519-dalek TESTVECTORS");
    assert_eq!((n_rfc, n_dalek), (5, 128));
}

#[test]
fn ed25519_wycheproof() {
    let w = json("ed25519/wycheproof_ed25519_test.json");
    let (mut valid, mut invalid) = (0, 0);
    for g in w["testGroups"].as_array().unwrap() {
        let pk = unhex(s(&g["publicKey"]["pk"]));
        for t in g["tests"].as_array().unwrap() {
            let ok = ed25519::verify(&pk, &unhex(s(&t["msg"])), &unhex(s(&t["sig"]))).is_ok();
            match s(&t["result"]) {
                "valid" => {
                    assert!(ok, "tcId {} should verify ({})", t["tcId"], t["comment"]);
                    valid += 1;
                }
                "invalid" => {
                    assert!(!ok, "tcId {} must not verify ({})", t["tcId"], t["comment"]);
                    invalid += 1;
                }
                other => panic!("tcId {}: result {other}", t["tcId"]),
            }
        }
    }
    println!("Wycheproof Ed25519: {valid} valid verified, {invalid} invalid refused");
    assert_eq!((valid, invalid), (88, 63));
}

/// Wycheproof's plain file treats high-S as valid (generic ECDSA): a signature
/// from an HSM is parsed, normalised, then verified. The bitcoin file says
/// high-S is invalid: our strict verifier must refuse exactly those.
#[test]
fn secp256k1_wycheproof_plain_and_bitcoin() {
    let mut summary = Vec::new();
    for (file, normalise_first, want_counts) in [
        (
            "secp256k1/ecdsa_secp256k1_sha256_test.json",
            true,
            (168, 308),
        ),
        (
            "secp256k1/ecdsa_secp256k1_sha256_bitcoin_test.json",
            false,
            (162, 301),
        ),
    ] {
        let w = json(file);
        let (mut valid, mut invalid, mut high_s_refused) = (0, 0, 0);
        for g in w["testGroups"].as_array().unwrap() {
            let pk = unhex(s(&g["publicKey"]["uncompressed"]));
            for t in g["tests"].as_array().unwrap() {
                let digest = sha2::Sha256::digest(unhex(s(&t["msg"])));
                let result = secp256k1::from_der(&unhex(s(&t["sig"]))).and_then(|rs| {
                    let rs = if normalise_first {
                        secp256k1::normalize(&rs)?
                    } else {
                        rs
                    };
                    secp256k1::verify_prehash(&pk, &digest, &rs)
                });
                let malleable = t["flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "SignatureMalleabilityBitcoin"));
                if malleable && !normalise_first {
                    assert_eq!(
                        result,
                        Err(signer::crypto::CryptoError::HighS),
                        "{file} tcId {}",
                        t["tcId"]
                    );
                }
                if result == Err(signer::crypto::CryptoError::HighS) {
                    high_s_refused += 1;
                }
                match s(&t["result"]) {
                    "valid" => {
                        assert_eq!(
                            result,
                            Ok(()),
                            "{file} tcId {} ({})",
                            t["tcId"],
                            t["comment"]
                        );
                        valid += 1;
                    }
                    "invalid" => {
                        assert!(
                            result.is_err(),
                            "{file} tcId {} must fail ({})",
                            t["tcId"],
                            t["comment"]
                        );
                        invalid += 1;
                    }
                    other => panic!("tcId {}: result {other}", t["tcId"]),
                }
            }
        }
        assert_eq!((valid, invalid), want_counts, "{file}");
        summary.push(format!(
            "{file}: {valid} valid, {invalid} invalid ({high_s_refused} refused as high-S)"
        ));
    }
    println!("Wycheproof secp256k1: {}", summary.join("; "));
}

/// noble-secp256k1's deterministic (RFC 6979) signatures: ours must be equal
/// after low-S normalisation of theirs, and verify with the recovery id we give.
#[test]
fn secp256k1_noble_rfc6979() {
    let v = json("secp256k1/noble-ecdsa.json");
    let mut signed = 0;
    for case in v["valid"].as_array().unwrap() {
        let sk = secp256k1::Secp256k1SecretKey::from_bytes(&unhex(s(&case["d"]))).unwrap();
        let digest: [u8; 32] = unhex(s(&case["m"])).try_into().unwrap();
        let ours = sk.sign_prehash(&digest);
        let theirs = secp256k1::normalize(&unhex(s(&case["signature"]))).unwrap();
        assert_eq!(ours.rs, theirs, "{}", case["description"]);
        assert_eq!(
            secp256k1::recovery_id(&sk.public_key(), &digest, &ours.rs),
            Ok(ours.recovery_id)
        );
        signed += 1;
    }
    let mut refused = 0;
    for case in v["invalid"]["sign"].as_array().unwrap() {
        assert!(
            secp256k1::Secp256k1SecretKey::from_bytes(&unhex(s(&case["d"]))).is_err(),
            "{}",
            case["description"]
        );
        refused += 1;
    }
    for case in v["invalid"]["verify"].as_array().unwrap() {
        let r = secp256k1::verify_prehash(
            &unhex(s(&case["Q"])),
            &unhex(s(&case["m"])),
            &unhex(s(&case["signature"])),
        );
        assert!(r.is_err(), "{}", case["description"]);
        refused += 1;
    }
    println!(
        "noble-secp256k1: {signed} RFC 6979 signatures reproduced, {refused} invalid keys/signatures refused"
    );
    assert_eq!((signed, refused), (2019, 29));
}
