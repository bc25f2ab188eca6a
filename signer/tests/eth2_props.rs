//! Decoding never panics, whatever JSON arrives: arbitrary values, and the
//! real example requests with one value replaced by arbitrary JSON.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::Value;
use signer::eth2::{self, Network, PresetKind};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(|n| Value::String(n.to_string())),
        "0x[0-9a-fA-F]{0,200}".prop_map(Value::String),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,24}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn examples() -> Vec<Value> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors/web3signer/sign_examples.json");
    let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    v["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request"].clone())
        .collect()
}

/// Replaces the `n`-th node (depth-first) of `v` with `new`.
fn replace_nth(v: &mut Value, n: &mut usize, new: &Value) -> bool {
    if *n == 0 {
        *v = new.clone();
        return true;
    }
    *n -= 1;
    match v {
        Value::Array(items) => items.iter_mut().any(|x| replace_nth(x, n, new)),
        Value::Object(map) => map.values_mut().any(|x| replace_nth(x, n, new)),
        _ => false,
    }
}

const NETS: [Network; 2] = [
    Network::MAINNET,
    Network {
        preset: PresetKind::Minimal,
        genesis_fork_version: [0, 0, 0, 1],
        gloas_fork_epoch: None,
        clock: None,
    },
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_json_never_panics(v in json_value(), kind in prop::sample::select(vec![
        "BLOCK", "BLOCK_V2", "ATTESTATION", "AGGREGATION_SLOT", "AGGREGATE_AND_PROOF", "AGGREGATE_AND_PROOF_V2",
        "DEPOSIT", "RANDAO_REVEAL", "VOLUNTARY_EXIT", "SYNC_COMMITTEE_MESSAGE", "SYNC_COMMITTEE_SELECTION_PROOF",
        "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF", "VALIDATOR_REGISTRATION"])) {
        let mut v = v;
        if let Value::Object(m) = &mut v {
            m.insert("type".into(), kind.into());
        }
        for net in &NETS {
            let _ = eth2::decode(&serde_json::to_vec(&v).unwrap(), net);
        }
    }

    #[test]
    fn mutated_real_requests_never_panic(which in 0usize..25, node in 0usize..400, new in json_value()) {
        let mut v = examples()[which % 25].clone();
        let mut n = node;
        replace_nth(&mut v, &mut n, &new);
        for net in &NETS {
            let _ = eth2::decode(&serde_json::to_vec(&v).unwrap(), net);
        }
    }
}
