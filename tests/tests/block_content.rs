//! Full and blinded blocks of every fork with an execution payload: the
//! signing root the signer computes equals the one Lodestar's SSZ types
//! (`@lodestar/types` from npm, an independent implementation) compute, on
//! random blocks of both presets; and a block-content policy signs blocks
//! and registrations that satisfy it and refuses the rest, naming the field.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use tests::daemon::GVR;

const FORK_VERSION: &str = "0x00000001";

fn lodestar_dir() -> &'static Path {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/lodestar"));
    assert!(
        dir.join("node_modules/@lodestar/types").exists(),
        "Lodestar's SSZ types are missing: run `npm ci` in {} (scripts/test does)",
        dir.display()
    );
    dir
}

/// `per_kind` random blocks of each fork, full and blinded, from Lodestar.
fn lodestar_blocks(preset: &str, per_kind: usize, seed: u32) -> Vec<Value> {
    let dir = lodestar_dir();
    let out = std::process::Command::new("node")
        .arg(dir.join("blocks.mjs"))
        .current_dir(dir)
        .env("LODESTAR_PRESET", preset)
        .env("BLOCKS_PER_KIND", per_kind.to_string())
        .env("BLOCKS_SEED", seed.to_string())
        .env("BLOCKS_FORK_VERSION", FORK_VERSION)
        .env("BLOCKS_GVR", GVR)
        .output()
        .unwrap_or_else(|e| {
            panic!("node cannot run ({e}): install Debian's nodejs (scripts/test does)")
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A BLOCK_V2 request for a Lodestar block line, full or blinded as it is.
fn request_for(line: &Value) -> Value {
    let field = if line["blinded"] == true {
        "blinded_block"
    } else {
        "block"
    };
    json!({
        "type": "BLOCK_V2",
        "fork_info": {
            "fork": {"previous_version": FORK_VERSION, "current_version": FORK_VERSION, "epoch": "0"},
            "genesis_validators_root": GVR,
        },
        "beacon_block": {
            "version": line["fork"].as_str().unwrap().to_uppercase(),
            field: line["block"],
        },
    })
}

#[test]
fn block_roots_equal_lodestars_for_every_payload_fork_full_and_blinded_in_both_presets() {
    let mut counts: BTreeMap<(String, String, bool), usize> = BTreeMap::new();
    for (preset, kind, seed) in [
        ("mainnet", signer::eth2::PresetKind::Mainnet, 11),
        ("minimal", signer::eth2::PresetKind::Minimal, 12),
    ] {
        let network = signer::eth2::Network {
            preset: kind,
            genesis_fork_version: [0, 0, 0, 1],
            clock: None,
        };
        for line in lodestar_blocks(preset, 100, seed) {
            let request = request_for(&line);
            let s = signer::eth2::decode_value(&request, &network).unwrap_or_else(|e| {
                panic!(
                    "{preset} {} blinded={}: {e}\n{request}",
                    line["fork"], line["blinded"]
                )
            });
            assert_eq!(
                format!("{}", s.signing_root),
                line["signing_root"].as_str().unwrap(),
                "{preset} {} blinded={}: {request}",
                line["fork"],
                line["blinded"]
            );
            // What a content policy reads is what the block says.
            let payload = if line["blinded"] == true {
                &line["block"]["body"]["execution_payload_header"]
            } else {
                &line["block"]["body"]["execution_payload"]
            };
            match s.content {
                signer::eth2::Content::Block {
                    graffiti,
                    payload: Some((fee_recipient, gas_limit)),
                    blinded,
                } => {
                    assert_eq!(format!("{graffiti}"), line["block"]["body"]["graffiti"]);
                    assert_eq!(
                        format!("{fee_recipient}").to_lowercase(),
                        payload["fee_recipient"].as_str().unwrap().to_lowercase()
                    );
                    assert_eq!(gas_limit.to_string(), payload["gas_limit"]);
                    assert_eq!(blinded, line["blinded"] == true);
                }
                other => panic!("{other:?}"),
            }
            *counts
                .entry((
                    preset.to_owned(),
                    line["fork"].as_str().unwrap().to_owned(),
                    line["blinded"] == true,
                ))
                .or_default() += 1;
        }
    }
    for ((preset, fork, blinded), n) in &counts {
        println!("{preset} {fork} blinded={blinded}: {n} roots equal Lodestar's");
    }
    assert_eq!(counts.len(), 2 * 5 * 2);
    assert!(counts.values().all(|&n| n == 100), "{counts:?}");
}

#[test]
fn a_header_sent_beside_a_block_must_be_that_blocks_and_block_forms_are_exclusive() {
    let network = signer::eth2::Network {
        preset: signer::eth2::PresetKind::Minimal,
        genesis_fork_version: [0, 0, 0, 1],
        clock: None,
    };
    let line = lodestar_blocks("minimal", 1, 5)
        .into_iter()
        .find(|l| l["fork"] == "deneb" && l["blinded"] == false)
        .unwrap();
    let mut request = request_for(&line);
    let block = line["block"].clone();
    let header = json!({
        "slot": block["slot"], "proposer_index": block["proposer_index"],
        "parent_root": block["parent_root"], "state_root": block["state_root"],
        "body_root": format!("0x{}", "00".repeat(32)),
    });
    request["beacon_block"]["block_header"] = header;
    let e = signer::eth2::decode_value(&request, &network)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("block_header (root")
            && e.contains("is not the header of the block sent beside it"),
        "{e}"
    );
    let mut both = request_for(&line);
    both["beacon_block"]["blinded_block"] = block;
    assert_eq!(
        signer::eth2::decode_value(&both, &network)
            .unwrap_err()
            .to_string(),
        "beacon_block carries block and blinded_block: send one"
    );
}
