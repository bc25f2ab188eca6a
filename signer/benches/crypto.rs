//! `cargo bench -p signer --bench crypto`: per-operation cost of signing and
//! verifying with each scheme, one thread, plus BLS signing on all cores (the
//! ceiling for Ethereum bursts), and of turning a request into what is signed
//! (Ethereum signing roots from Web3Signer JSON, CometBFT sign bytes), so the
//! pipeline's overhead can be read against the crypto. Prints; asserts nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use signer::crypto::bls::BlsSecretKey;
use signer::crypto::ed25519::{self, Ed25519SecretKey};
use signer::crypto::secp256k1::{self, Secp256k1SecretKey};

/// Runs `f` repeatedly for about `secs`; returns seconds per call.
fn per_op(secs: f64, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        f(n);
        n += 1;
    }
    start.elapsed().as_secs_f64() / n as f64
}

fn row(name: &str, secs_per_op: f64) {
    println!(
        "{name:<40} {:>10.1} µs {:>12.0}/s",
        secs_per_op * 1e6,
        1.0 / secs_per_op
    );
}

fn main() {
    let secs = 1.0;
    let msg = [0x5au8; 32];
    let bls = BlsSecretKey::from_bytes(&[0x11; 32]).unwrap();
    let bls_pk = bls.public_key();
    let bls_sig = bls.sign(&msg);
    let ed = Ed25519SecretKey::from_seed(&[0x22; 32]).unwrap();
    let ed_sig = ed.sign(&msg);
    let k = Secp256k1SecretKey::from_bytes(&[0x33; 32]).unwrap();
    let k_sig = k.sign_prehash(&msg);
    println!(
        "{:<40} {:>13} {:>13}",
        "operation (1 thread)", "per op", "rate"
    );
    row(
        "BLS12-381 sign",
        per_op(secs, |n| {
            let mut m = msg;
            m[..8].copy_from_slice(&n.to_le_bytes());
            black_box(bls.sign(&m));
        }),
    );
    row(
        "BLS12-381 verify",
        per_op(secs, |_| {
            black_box(bls_sig.verify(&bls_pk, &msg)).unwrap();
        }),
    );
    row(
        "Ed25519 sign",
        per_op(secs, |_| {
            black_box(ed.sign(&msg));
        }),
    );
    row(
        "Ed25519 verify (strict)",
        per_op(secs, |_| {
            ed25519::verify(&ed.public_key(), &msg, &ed_sig).unwrap();
        }),
    );
    row(
        "secp256k1 sign (RFC 6979, low-S, rec. id)",
        per_op(secs, |_| {
            black_box(k.sign_prehash(&msg));
        }),
    );
    row(
        "secp256k1 verify",
        per_op(secs, |_| {
            secp256k1::verify_prehash(&k.public_key(), &msg, &k_sig.rs).unwrap();
        }),
    );
    row(
        "secp256k1 recovery id of a foreign sig",
        per_op(secs, |_| {
            black_box(secp256k1::recovery_id(&k.public_key(), &msg, &k_sig.rs)).unwrap();
        }),
    );
    let examples: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/vectors/web3signer/sign_examples.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let body = |name: &str| {
        let e = examples["examples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap();
        serde_json::to_vec(&e["request"]).unwrap()
    };
    let net = signer::eth2::Network {
        preset: signer::eth2::PresetKind::Minimal,
        genesis_fork_version: [0, 0, 0, 1],
        gloas_fork_epoch: None,
        clock: None,
    };
    for (name, label) in [
        ("ATTESTATION", "signing root: ATTESTATION (JSON → root)"),
        (
            "BLOCK_V2 (DENEB)",
            "signing root: BLOCK_V2 header (JSON → root)",
        ),
        (
            "BLOCK_V2 (ALTAIR)",
            "signing root: BLOCK_V2 altair full block",
        ),
    ] {
        let b = body(name);
        row(
            label,
            per_op(secs, |_| {
                black_box(signer::eth2::decode(&b, &net)).unwrap();
            }),
        );
    }
    let vote = signer::cometbft::Vote {
        kind: signer::cometbft::VoteType::Precommit,
        height: 1_000_000,
        round: 0,
        block_id: signer::cometbft::BlockId {
            hash: vec![1; 32],
            part_set_total: 1,
            part_set_hash: vec![2; 32],
        },
        timestamp: signer::cometbft::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        },
        extension: Vec::new(),
    };
    row(
        "CometBFT vote sign bytes",
        per_op(secs, |_| {
            black_box(signer::cometbft::vote_sign_bytes("cosmoshub-4", &vote)).unwrap();
        }),
    );
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let start = Instant::now();
    let per_thread = 2_000u64;
    std::thread::scope(|s| {
        for t in 0..threads {
            let bls = &bls;
            s.spawn(move || {
                for n in 0..per_thread {
                    let mut m = msg;
                    m[..8].copy_from_slice(&(n + t as u64 * per_thread).to_le_bytes());
                    black_box(bls.sign(&m));
                }
            });
        }
    });
    let rate = (per_thread * threads as u64) as f64 / start.elapsed().as_secs_f64();
    println!(
        "{:<40} {:>26.0}/s",
        format!("BLS12-381 sign, {threads} threads"),
        rate
    );
}
