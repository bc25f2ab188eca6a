//! CometBFT canonical sign-bytes vectors (CometBFT's `types/vote_test.go`,
//! tendermint-rs) read by the sign-bytes parser the database relies on.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use serde_json::Value;
use slashing_db::rules::sign_bytes::{parse, same_except_timestamp};
use slashing_db::*;

fn vectors() -> Value {
    let p = common::vectors_dir().join("cometbft/sign_bytes_and_privval_vectors.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

#[test]
fn sign_bytes_vectors_parse_to_their_height_round_step_and_chain() {
    let v = vectors();
    let (mut parsed, mut refused) = (0, 0);
    for (list, body) in [
        ("vote_sign_bytes", "vote"),
        ("proposal_sign_bytes", "proposal"),
    ] {
        for case in v[list].as_array().unwrap() {
            let id = case["id"].as_str().unwrap();
            let bytes = if let Some(h) = case["sign_bytes_hex"].as_str() {
                hex::decode(h).unwrap()
            } else {
                let m = hex::decode(
                    case["canonical_vote_hex_no_length_prefix"]
                        .as_str()
                        .unwrap(),
                )
                .unwrap();
                let mut b = Vec::new();
                common::put_uvarint(&mut b, m.len() as u64);
                b.extend_from_slice(&m);
                b
            };
            let msg = &case[body];
            let kind = msg["type"].as_u64().unwrap();
            let result = parse(&bytes);
            if kind == 0 {
                // Upstream encodes "unknown type" votes; a validator never signs one.
                assert_eq!(result, Err(SignBytesError::UnknownType(0)), "{id}");
                refused += 1;
                continue;
            }
            let p = result.unwrap_or_else(|e| panic!("{id}: {e}"));
            let step = match kind {
                1 => Step::Prevote,
                2 => Step::Precommit,
                32 => Step::Propose,
                other => panic!("{id}: type {other}"),
            };
            let want = Hrs {
                height: Height(msg["height"].as_u64().unwrap()),
                round: u32::try_from(msg["round"].as_u64().unwrap()).unwrap(),
                step,
            };
            assert_eq!(p.hrs, want, "{id}");
            assert_eq!(
                p.chain_id,
                case["chain_id"].as_str().unwrap().as_bytes(),
                "{id}"
            );
            assert!(same_except_timestamp(&bytes, &bytes), "{id}");
            parsed += 1;
        }
    }
    println!("CometBFT sign-bytes vectors: {parsed} parsed, {refused} refused as unknown type");
    assert_eq!((parsed, refused), (8, 4));
}

/// Changing only the timestamp of a vector keeps it "the same"; changing any
/// other byte of its body does not.
#[test]
fn only_the_timestamp_may_differ() {
    let v = vectors();
    let case = v["vote_sign_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "tendermint-rs-test_vote_serialization")
        .unwrap();
    let bytes = hex::decode(case["sign_bytes_hex"].as_str().unwrap()).unwrap();
    // The timestamp field is `2a 0b 08 b1d381d205 10 809dca6f` in this vector.
    let ts_at = bytes
        .windows(3)
        .position(|w| w == [0x2a, 0x0b, 0x08])
        .unwrap();
    let mut later = bytes.clone();
    later[ts_at + 4] ^= 0x01; // a different second, same length
    assert!(parse(&later).is_ok());
    assert_ne!(later, bytes);
    assert!(same_except_timestamp(&bytes, &later));
    let mut checked = 0;
    for i in 1..bytes.len() {
        if (ts_at..ts_at + 13).contains(&i) {
            continue;
        }
        let mut other = bytes.clone();
        other[i] ^= 0x01;
        assert!(
            !same_except_timestamp(&bytes, &other),
            "flipping byte {i} must make a different message"
        );
        checked += 1;
    }
    assert!(checked > 100);
}
