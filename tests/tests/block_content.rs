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

use serde_json::{Value, json};
use tests::daemon::{BLS_SECRET, Daemon, GVR, Setup, https};

const FORK_VERSION: &str = "0x00000001";

/// `per_kind` random blocks of each fork, full and blinded, from Lodestar.
fn lodestar_blocks(preset: &str, per_kind: usize, seed: u32) -> Vec<Value> {
    let dir = tests::independent::lodestar_dir();
    let mut cmd = std::process::Command::new("node");
    cmd.arg(dir.join("blocks.mjs"))
        .current_dir(dir)
        .env("LODESTAR_PRESET", preset)
        .env("BLOCKS_PER_KIND", per_kind.to_string())
        .env("BLOCKS_SEED", seed.to_string())
        .env("BLOCKS_FORK_VERSION", FORK_VERSION)
        .env("BLOCKS_GVR", GVR);
    tests::independent::json_lines(
        cmd,
        String::new(),
        "install Debian's nodejs and run `npm ci` in tests/lodestar (scripts/test does)",
    )
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
            gloas_fork_epoch: None,
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
                    bid: false,
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
        gloas_fork_epoch: None,
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

const FEE_OK: &str = "0x388c818ca8b9251b393131c08a736a67ccb19297";
const FEE_BUILDER: &str = "0x1111111111111111111111111111111111111111";
const FEE_THIEF: &str = "0xdeaddeaddeaddeaddeaddeaddeaddeaddeaddead";

/// The setup's policy with `vc`'s grant holding block-content constraints.
fn constrained(setup: &Setup) -> String {
    let policy = setup.default_policy();
    let grant = "key_groups = [\"validators\"]\nnetworks = [\"test-eth\"]\n";
    assert!(policy.contains(grant));
    policy.replacen(
        grant,
        &format!(
            "{grant}fee_recipient = \"{FEE_OK}\"\ngas_limit = {{ min = 30000000, max = 60000000 }}\ngraffiti = \"ok*\"\nbuilder_registrations = {{ fee_recipient = \"{FEE_BUILDER}\" }}\n"
        ),
        1,
    )
}

fn graffiti(text: &str) -> String {
    let mut g = [0u8; 32];
    g[..text.len()].copy_from_slice(text.as_bytes());
    format!("0x{}", hex::encode(g))
}

/// A Lodestar block line as a request at `slot` with these contents.
fn block_request(line: &Value, slot: u64, fee: &str, gas: u64, graffiti_text: &str) -> Value {
    let mut r = request_for(line);
    let field = if line["blinded"] == true {
        "blinded_block"
    } else {
        "block"
    };
    let payload = if line["blinded"] == true {
        "execution_payload_header"
    } else {
        "execution_payload"
    };
    let b = &mut r["beacon_block"][field];
    b["slot"] = json!(slot.to_string());
    b["body"]["graffiti"] = json!(graffiti(graffiti_text));
    b["body"][payload]["fee_recipient"] = json!(fee);
    b["body"][payload]["gas_limit"] = json!(gas.to_string());
    r
}

fn registration(fee: &str, gas: u64) -> Value {
    json!({
        "type": "VALIDATOR_REGISTRATION",
        "validator_registration": {
            "fee_recipient": fee, "gas_limit": gas.to_string(), "timestamp": "1700000000",
            "pubkey": format!("0x{}", "aa".repeat(48)),
        },
    })
}

fn post(setup: &Setup, d: &Daemon, body: &Value) -> (u16, String) {
    https(
        setup,
        d.http_api.unwrap(),
        Some("vc"),
        "POST",
        &format!("/api/v1/eth2/sign/0x{}", hex::encode(&setup.bls)),
        &[("Content-Type", "application/json")],
        &body.to_string(),
    )
    .unwrap()
}

/// What the signing core signs for `request` (its root checked against
/// Lodestar's above), as the API's hex.
fn expected_signature(request: &Value) -> String {
    let network = signer::eth2::Network {
        preset: signer::eth2::PresetKind::Minimal,
        genesis_fork_version: [0, 0, 0, 1],
        gloas_fork_epoch: None,
        clock: None,
    };
    let s = signer::eth2::decode_value(request, &network).unwrap();
    let key =
        signer::crypto::bls::BlsSecretKey::from_bytes(&hex::decode(BLS_SECRET).unwrap()).unwrap();
    format!(
        "0x{}",
        hex::encode(key.sign(s.signing_root.as_slice()).to_bytes())
    )
}

#[test]
fn a_block_content_policy_signs_what_it_allows_and_refuses_the_rest_naming_the_field() {
    let setup = Setup::new();
    setup.enable_http("");
    setup.write_policy(&constrained(&setup));
    let d = setup.start();
    let lines = lodestar_blocks("minimal", 1, 21);
    assert_eq!(lines.len(), 10, "five forks, full and blinded");
    let grant = "grant #1";
    let mut slot = 100;
    let mut checked = 0;
    for line in &lines {
        let what = format!("{} blinded={}", line["fork"], line["blinded"]);
        slot += 1;
        // Each violation, at a slot nothing was signed for: refused, 403,
        // the field and what is allowed named.
        for (fee, gas, text, expected) in [
            (
                FEE_THIEF,
                36_000_000,
                "ok-1",
                format!(
                    "policy violation: execution_payload.fee_recipient is {FEE_THIEF}; {grant} allows {FEE_OK}"
                ),
            ),
            (
                FEE_OK,
                70_000_000,
                "ok-1",
                format!(
                    "policy violation: execution_payload.gas_limit is 70000000; {grant} allows 30000000 to 60000000"
                ),
            ),
            (
                FEE_OK,
                36_000_000,
                "evil",
                format!("policy violation: graffiti is \"evil\"; {grant} allows \"ok*\""),
            ),
        ] {
            let (status, body) = post(&setup, &d, &block_request(line, slot, fee, gas, text));
            assert_eq!((status, body.as_str()), (403, expected.as_str()), "{what}");
            checked += 1;
        }
        // The same slot with allowed contents: signed (the refusals recorded nothing).
        let ok = block_request(line, slot, FEE_OK, 36_000_000, "ok-node");
        let (status, body) = post(&setup, &d, &ok);
        assert_eq!(status, 200, "{what}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["signature"],
            expected_signature(&ok),
            "{what}"
        );
        checked += 1;
    }
    // A header alone shows nothing: refused, asking for the block.
    let header = json!({
        "type": "BLOCK_V2",
        "fork_info": request_for(&lines[0])["fork_info"],
        "beacon_block": {"version": "DENEB", "block_header": {
            "slot": "500", "proposer_index": "1",
            "parent_root": format!("0x{}", "11".repeat(32)),
            "state_root": format!("0x{}", "22".repeat(32)),
            "body_root": format!("0x{}", "33".repeat(32)),
        }},
    });
    assert_eq!(
        post(&setup, &d, &header),
        (
            403,
            format!(
                "policy violation: beacon_block is a block_header only; {grant} allows only blocks whose contents it can check: send beacon_block.block or .blinded_block"
            )
        )
    );
    // Registrations: held to builder_registrations' fee recipient, and to
    // the grant's gas limit (builder_registrations names none).
    assert_eq!(
        post(&setup, &d, &registration(FEE_BUILDER, 36_000_000)).0,
        200
    );
    assert_eq!(
        post(&setup, &d, &registration(FEE_OK, 36_000_000)),
        (
            403,
            format!(
                "policy violation: validator_registration.fee_recipient is {FEE_OK}; {grant} allows {FEE_BUILDER}"
            )
        )
    );
    assert_eq!(
        post(&setup, &d, &registration(FEE_BUILDER, 29_999_999)),
        (
            403,
            format!(
                "policy violation: validator_registration.gas_limit is 29999999; {grant} allows 30000000 to 60000000"
            )
        )
    );
    // Attestations are not blocks: untouched by the constraints.
    let attestation = json!({
        "type": "ATTESTATION",
        "fork_info": request_for(&lines[0])["fork_info"],
        "attestation": {
            "slot": "8", "index": "0",
            "beacon_block_root": format!("0x{}", "44".repeat(32)),
            "source": {"epoch": "0", "root": format!("0x{}", "00".repeat(32))},
            "target": {"epoch": "1", "root": format!("0x{}", "00".repeat(32))},
        },
    });
    assert_eq!(post(&setup, &d, &attestation).0, 200);
    println!(
        "{checked} block requests decided as the policy says, across 5 forks, full and blinded"
    );
    assert_eq!(checked, 40);
    assert!(d.stop().success());
    // Every violation is an audit event, with what was wrong.
    let audit = std::fs::read_to_string(setup.path("data/audit.jsonl")).unwrap();
    let violations: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["outcome"] == "refused:policy_violation")
        .collect();
    assert_eq!(violations.len(), 30 + 1 + 2, "{audit}");
    assert!(
        violations
            .iter()
            .any(|v| v["note"] == format!("graffiti is \"evil\"; {grant} allows \"ok*\"")),
        "{violations:?}"
    );
}

/// `per_preset` random Gloas beacon blocks from Lodestar (`gloas.mjs`,
/// `GLOAS_KINDS=block`): {data, signing_root} lines.
fn lodestar_gloas_blocks(preset: &str, n: usize, seed: u32) -> Vec<Value> {
    let dir = tests::independent::lodestar_dir();
    let mut cmd = std::process::Command::new("node");
    cmd.arg(dir.join("gloas.mjs"))
        .current_dir(dir)
        .env("LODESTAR_PRESET", preset)
        .env("GLOAS_MODE", "generate")
        .env("GLOAS_KINDS", "block")
        .env("GLOAS_SEED", seed.to_string())
        .env("GLOAS_PER_KIND", n.to_string())
        .env("GLOAS_FORK_VERSION", FORK_VERSION)
        .env("GLOAS_GENESIS_FORK_VERSION", FORK_VERSION)
        .env("GLOAS_GVR", GVR);
    tests::independent::json_lines(
        cmd,
        String::new(),
        "install Debian's nodejs and run `npm ci` in tests/lodestar (scripts/test does)",
    )
}

/// A BLOCK_V2 request for a Gloas block.
fn gloas_request(block: &Value) -> Value {
    json!({
        "type": "BLOCK_V2",
        "fork_info": {
            "fork": {"previous_version": FORK_VERSION, "current_version": FORK_VERSION, "epoch": "0"},
            "genesis_validators_root": GVR,
        },
        "beacon_block": {"version": "GLOAS", "block": block},
    })
}

/// From Gloas a block carries no execution payload but a builder's bid: the
/// block commits the payload to the bid's fee recipient and gas limit.
/// Random Gloas blocks of both presets from Lodestar hash to Lodestar's
/// signing roots, with the bid's fields as the block's content; through the
/// daemon, the grant's constraints hold the bid (the refusal names
/// `signed_execution_payload_bid.message.…`), a block within them is signed,
/// and a "blinded" Gloas block is refused as a form that does not exist.
#[test]
fn gloas_blocks_hash_as_lodestars_and_their_bid_is_held_to_the_grant() {
    let mut hashed = 0;
    for (preset, kind, seed) in [
        ("mainnet", signer::eth2::PresetKind::Mainnet, 41),
        ("minimal", signer::eth2::PresetKind::Minimal, 42),
    ] {
        let network = signer::eth2::Network {
            preset: kind,
            genesis_fork_version: [0, 0, 0, 1],
            gloas_fork_epoch: Some(0),
            clock: None,
        };
        for line in lodestar_gloas_blocks(preset, 100, seed) {
            let request = gloas_request(&line["data"]);
            let s = signer::eth2::decode_value(&request, &network)
                .unwrap_or_else(|e| panic!("{preset}: {e}\n{request}"));
            assert_eq!(
                format!("{}", s.signing_root),
                line["signing_root"].as_str().unwrap(),
                "{preset}"
            );
            let bid = &line["data"]["body"]["signed_execution_payload_bid"]["message"];
            match s.content {
                signer::eth2::Content::Block {
                    graffiti,
                    payload: Some((fee_recipient, gas_limit)),
                    blinded: false,
                    bid: true,
                } => {
                    assert_eq!(format!("{graffiti}"), line["data"]["body"]["graffiti"]);
                    assert_eq!(
                        format!("{fee_recipient:#x}"),
                        bid["fee_recipient"].as_str().unwrap().to_lowercase()
                    );
                    assert_eq!(gas_limit.to_string(), bid["gas_limit"]);
                }
                other => panic!("{preset}: content {other:?}"),
            }
            hashed += 1;
        }
    }
    println!("{hashed} Gloas blocks: signing roots and bids equal Lodestar's");
    assert_eq!(hashed, 200);

    let setup = Setup::new();
    setup.enable_http("");
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    setup.write(
        "signer.toml",
        &config.replacen("[ethereum]\n", "[ethereum]\ngloas_fork_epoch = 0\n", 1),
    );
    setup.write_policy(&constrained(&setup));
    let d = setup.start();
    let template = lodestar_gloas_blocks("minimal", 1, 43).remove(0)["data"].clone();
    let block = |slot: u64, fee: &str, gas: u64, text: &str| {
        let mut b = template.clone();
        b["slot"] = json!(slot.to_string());
        b["body"]["graffiti"] = json!(graffiti(text));
        let bid = &mut b["body"]["signed_execution_payload_bid"]["message"];
        bid["fee_recipient"] = json!(fee);
        bid["gas_limit"] = json!(gas.to_string());
        gloas_request(&b)
    };
    let grant = "grant #1";
    for (fee, gas, expected) in [
        (
            FEE_THIEF,
            36_000_000,
            format!(
                "policy violation: signed_execution_payload_bid.message.fee_recipient is {FEE_THIEF}; {grant} allows {FEE_OK}"
            ),
        ),
        (
            FEE_OK,
            70_000_000,
            format!(
                "policy violation: signed_execution_payload_bid.message.gas_limit is 70000000; {grant} allows 30000000 to 60000000"
            ),
        ),
    ] {
        assert_eq!(
            post(&setup, &d, &block(200, fee, gas, "ok-1")),
            (403, expected)
        );
    }
    let ok = block(200, FEE_OK, 36_000_000, "ok-gloas");
    let (status, body) = post(&setup, &d, &ok);
    assert_eq!(status, 200, "{body}");
    let network = signer::eth2::Network {
        preset: signer::eth2::PresetKind::Minimal,
        genesis_fork_version: [0, 0, 0, 1],
        gloas_fork_epoch: Some(0),
        clock: None,
    };
    let s = signer::eth2::decode_value(&ok, &network).unwrap();
    let key =
        signer::crypto::bls::BlsSecretKey::from_bytes(&hex::decode(BLS_SECRET).unwrap()).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["signature"],
        format!(
            "0x{}",
            hex::encode(key.sign(s.signing_root.as_slice()).to_bytes())
        )
    );
    let mut blinded = ok.clone();
    blinded["beacon_block"] = json!({"version": "GLOAS", "blinded_block": template});
    let (status, body) = post(&setup, &d, &blinded);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("a gloas block is never blinded"), "{body}");
}
