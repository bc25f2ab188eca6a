//! Commit-Boost proposer commitments: the signing roots and signatures this
//! signer makes for every kind the Commit-Boost signer API serves (consensus
//! BLS, proxy BLS, proxy ECDSA, and the delegations of both proxy kinds)
//! equal and verify under an implementation written in Python from the
//! specification text (`tests/commit_boost/reference.py`: py_ecc, eth-keys),
//! over random chains, nonces (with 0 and 2^64 − 1), signing ids and keys; a
//! tampered case is refused there, so the check can fail.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

use alloy_primitives::{B256, keccak256};
use serde_json::{Value, json};
use signer::crypto::bls::BlsSecretKey;
use signer::crypto::secp256k1::{Secp256k1SecretKey, uncompressed};
use signer::eth2::commit_boost::{Commitment, Proxy, delegation_root};

/// xorshift64: deterministic, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.next() as u8)
    }
}

fn hex0x(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

fn address(key: &Secp256k1SecretKey) -> [u8; 20] {
    let point = uncompressed(&key.public_key()).unwrap();
    let hash = keccak256(&point[1..]);
    hash[12..].try_into().unwrap()
}

fn reference(cases: &[Value]) -> Vec<Value> {
    let mut cmd = Command::new("python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/commit_boost/reference.py"
    ));
    tests::independent::json_lines(
        cmd,
        cases.iter().map(|c| format!("{c}\n")).collect(),
        "python3 with the pip packages py_ecc and eth-account (scripts/test installs them)",
    )
}

#[test]
fn roots_and_signatures_equal_an_implementation_written_from_the_specification() {
    let mut rng = Rng(0x5eed_c0de_1234_5678);
    let mut cases = Vec::new();
    // Public networks' genesis fork versions and EVM chain ids, then random ones.
    let networks = [
        ([0u8, 0, 0, 0], 1u64),
        ([0x01, 0x01, 0x70, 0x00], 17_000),
        ([0x10, 0x00, 0x09, 0x10], 560_048),
    ];
    for i in 0..40usize {
        let (gfv, chain_id) = match networks.get((i / 4) % 4) {
            Some(n) => *n,
            None => (rng.bytes(), rng.next()),
        };
        let nonce = match i % 5 {
            0 => 0,
            1 => u64::MAX,
            _ => rng.next(),
        };
        let consensus = BlsSecretKey::from_bytes(&{
            let mut s: [u8; 32] = rng.bytes();
            s[0] &= 0x3f; // below the group order
            s
        })
        .unwrap();
        let delegator = consensus.public_key().to_bytes();
        let commitment = Commitment {
            object_root: B256::from(rng.bytes::<32>()),
            module_signing_id: B256::from(rng.bytes::<32>()),
            nonce,
            chain_id,
        };
        let root = commitment.signing_root(gfv);
        let base = json!({
            "genesis_fork_version": hex0x(&gfv),
            "chain_id": chain_id,
            "module_signing_id": hex0x(commitment.module_signing_id.as_slice()),
            "nonce": nonce,
            "object_root": hex0x(commitment.object_root.as_slice()),
        });
        let with = |kind: &str, extra: Value, root: B256| {
            let mut c = base.clone();
            c["kind"] = json!(kind);
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            (c, root)
        };
        match i % 4 {
            // Consensus BLS (every kind gets 10 cases; BLS verification in
            // pure Python takes most of a second each).
            0 => cases.push(with(
                "bls",
                json!({"key": hex0x(&delegator), "signature": hex0x(&consensus.sign(root.as_slice()).to_bytes())}),
                root,
            )),
            1 => {
                let proxy = BlsSecretKey::from_bytes(&{
                    let mut s: [u8; 32] = rng.bytes();
                    s[0] &= 0x3f;
                    s
                })
                .unwrap();
                let proxy_pk = proxy.public_key().to_bytes();
                cases.push(with(
                    "proxy_bls",
                    json!({"key": hex0x(&proxy_pk), "signature": hex0x(&proxy.sign(root.as_slice()).to_bytes())}),
                    root,
                ));
                let d = delegation_root(&delegator, Proxy::Bls(proxy_pk), gfv);
                cases.push(with(
                    "delegation_bls",
                    json!({"delegator": hex0x(&delegator), "proxy": hex0x(&proxy_pk), "signature": hex0x(&consensus.sign(d.as_slice()).to_bytes())}),
                    d,
                ));
            }
            _ => {
                let proxy = Secp256k1SecretKey::from_bytes(&rng.bytes::<32>()).unwrap();
                let addr = address(&proxy);
                let sig = proxy.sign_prehash(&root.0).to_ethereum_bytes();
                cases.push(with(
                    "proxy_ecdsa",
                    json!({"key": hex0x(&addr), "signature": hex0x(&sig)}),
                    root,
                ));
                if i % 4 == 2 {
                    let d = delegation_root(&delegator, Proxy::Ecdsa(addr), gfv);
                    cases.push(with(
                        "delegation_ecdsa",
                        json!({"delegator": hex0x(&delegator), "proxy": hex0x(&addr), "signature": hex0x(&consensus.sign(d.as_slice()).to_bytes())}),
                        d,
                    ));
                }
            }
        }
    }
    // Tampered: the signature of one case checked against another nonce, and
    // an ECDSA signature with its v flipped. The reference must refuse both.
    let mut wrong_nonce = cases[0].0.clone();
    wrong_nonce["nonce"] = json!(wrong_nonce["nonce"].as_u64().unwrap() ^ 1);
    let mut wrong_v = cases
        .iter()
        .find(|(c, _)| c["kind"] == "proxy_ecdsa")
        .unwrap()
        .0
        .clone();
    let sig = wrong_v["signature"].as_str().unwrap().to_owned();
    let flipped = if sig.ends_with("1b") { "1c" } else { "1b" };
    wrong_v["signature"] = json!(format!("{}{flipped}", &sig[..sig.len() - 2]));

    let input: Vec<Value> = cases
        .iter()
        .map(|(c, _)| c.clone())
        .chain([wrong_nonce, wrong_v])
        .collect();
    let answers = reference(&input);
    assert_eq!(answers.len(), input.len());
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for ((case, root), answer) in cases.iter().zip(&answers) {
        assert_eq!(answer["signing_root"], format!("{root}"), "{case}");
        assert_eq!(answer["valid"], true, "{case}");
        *counts
            .entry(case["kind"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        answers[cases.len()]["valid"],
        false,
        "a signature for another nonce"
    );
    assert_eq!(
        answers[cases.len() + 1]["valid"],
        false,
        "an ECDSA signature with the wrong v"
    );
    for (kind, n) in &counts {
        println!("{kind}: {n} roots and signatures agree with the Python reference");
    }
    assert_eq!(counts.len(), 5);
}

/// Module tokens made by PyJWT, as Commit-Boost's documentation makes them:
/// the verifier accepts the right ones and refuses each wrong one with its
/// own reason (missing, malformed, another algorithm, unknown module,
/// another module's secret, expired, another route, no or another body
/// hash).
#[test]
fn module_tokens_made_by_pyjwt_are_accepted_or_refused_with_the_reason() {
    use signer::api::commit_boost::jwt::{JwtError, verify};
    let secrets = [
        ("preconf", b"preconf-secret".as_slice()),
        ("other", b"other-secret".as_slice()),
    ];
    let secret = |m: &str| secrets.iter().find(|(n, _)| *n == m).map(|(_, s)| *s);
    let now = 1_800_000_000u64;
    let get = "/signer/v1/get_pubkeys";
    let sign = "/signer/v1/request_signature/bls";
    let body = r#"{"pubkey":"0xaa","object_root":"0xbb","nonce":0}"#;
    let claims =
        |module: &str, route: &str, exp: u64| json!({"module": module, "route": route, "exp": exp});
    // (token request, route, body, expected)
    type Case<'a> = (Value, &'a str, Option<&'a str>, Result<&'a str, JwtError>);
    let cases: Vec<Case> = vec![
        (
            json!({"claims": claims("preconf", get, now + 60), "secret": "preconf-secret", "alg": "HS256"}),
            get,
            None,
            Ok("preconf"),
        ),
        (
            json!({"claims": claims("preconf", sign, now + 60), "secret": "preconf-secret", "alg": "HS256", "body": body}),
            sign,
            Some(body),
            Ok("preconf"),
        ),
        (
            json!({"claims": claims("preconf", get, now - 10), "secret": "preconf-secret", "alg": "HS256"}),
            get,
            None,
            Err(JwtError::Expired(10)),
        ),
        (
            json!({"claims": claims("preconf", get, now + 60), "secret": "other-secret", "alg": "HS256"}),
            get,
            None,
            Err(JwtError::BadSignature("preconf".into())),
        ),
        (
            json!({"claims": claims("stranger", get, now + 60), "secret": "preconf-secret", "alg": "HS256"}),
            get,
            None,
            Err(JwtError::UnknownModule("stranger".into())),
        ),
        (
            json!({"claims": claims("preconf", get, now + 60), "secret": "preconf-secret", "alg": "HS256"}),
            sign,
            None,
            Err(JwtError::WrongRoute {
                got: get.into(),
                expected: sign.into(),
            }),
        ),
        (
            json!({"claims": claims("preconf", sign, now + 60), "secret": "preconf-secret", "alg": "HS256", "body": body}),
            sign,
            Some(r#"{"pubkey":"0xaa","object_root":"0xcc","nonce":0}"#),
            Err(JwtError::PayloadMismatch),
        ),
        (
            json!({"claims": claims("preconf", sign, now + 60), "secret": "preconf-secret", "alg": "HS256"}),
            sign,
            Some(body),
            Err(JwtError::PayloadHashMissing),
        ),
        (
            json!({"claims": claims("preconf", get, now + 60), "secret": "", "alg": "none"}),
            get,
            None,
            Err(JwtError::Algorithm("none".into())),
        ),
        (
            json!({"claims": claims("preconf", get, now + 60), "secret": "preconf-secret", "alg": "HS512"}),
            get,
            None,
            Err(JwtError::Algorithm("HS512".into())),
        ),
    ];
    let mut cmd = Command::new("python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/commit_boost/tokens.py"
    ));
    let tokens = tests::independent::json_lines(
        cmd,
        cases.iter().map(|(c, ..)| format!("{c}\n")).collect(),
        "python3 with the pip packages pyjwt and eth-account (scripts/test installs them)",
    );
    assert_eq!(tokens.len(), cases.len());
    for ((request, route, body, expected), token) in cases.iter().zip(&tokens) {
        let header = format!("Bearer {}", token["token"].as_str().unwrap());
        let got = verify(Some(&header), secret, route, body.map(str::as_bytes), now);
        assert_eq!(
            got.as_ref()
                .map(|c| c.module.as_str())
                .map_err(Clone::clone),
            expected.clone(),
            "{request}"
        );
        if let Err(e) = got {
            println!("refused: {e}");
        }
    }
    // No header, another scheme, and a token that is not one.
    assert_eq!(verify(None, secret, get, None, now), Err(JwtError::Missing));
    assert_eq!(
        verify(Some("Basic dXNlcjpwdw=="), secret, get, None, now),
        Err(JwtError::Missing)
    );
    assert_eq!(
        verify(Some("Bearer not.a.jwt"), secret, get, None, now),
        Err(JwtError::Malformed)
    );
}
