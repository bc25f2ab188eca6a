//! Interoperability: requests shaped exactly as Lighthouse's validator client
//! sends them to Web3Signer (its `SigningRequest`: `type`, optional
//! `fork_info`, always a camelCase `signingRoot`, the object under its
//! snake_case name, quoted integers; Electra aggregates under
//! `AGGREGATE_AND_PROOF` with `committee_bits`), plus the API's variants
//! (no `Accept`, `Accept: text/plain`, upper-case hex identifiers). Every
//! signature returned is verified by py_ecc, a BLS implementation
//! independent of the signer's blst (`tests/scripts/bls_verify.py`).
//!
//! The `signingRoot` a client sends is its own computation; here it comes
//! from the signer's core (whose roots the Web3Signer vectors check
//! independently), so the test is about shapes and signatures.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tests::daemon::{GVR, Setup, https};

fn h(byte: u8, n: usize) -> String {
    format!("0x{}", hex::encode(vec![byte; n]))
}

fn fork_info() -> Value {
    json!({
        "fork": {"previous_version": "0x00000001", "current_version": "0x00000001", "epoch": "0"},
        "genesis_validators_root": GVR,
    })
}

/// The point at infinity: a well-formed compressed G2 point.
fn sig() -> String {
    format!("0xc0{}", "00".repeat(95))
}

fn attestation_data(slot: u64, target: u64) -> Value {
    json!({
        "slot": slot.to_string(), "index": "0", "beacon_block_root": h(0x11, 32),
        "source": {"epoch": (target - 1).to_string(), "root": h(0x22, 32)},
        "target": {"epoch": target.to_string(), "root": h(0x33, 32)},
    })
}

/// (name, body without signingRoot) as Lighthouse builds them.
fn lighthouse_requests(validator_pubkey: &str) -> Vec<(&'static str, Value)> {
    let with_fork = |t: &str, field: &str, object: Value| json!({"type": t, "fork_info": fork_info(), field: object});
    vec![
        (
            "attestation",
            with_fork("ATTESTATION", "attestation", attestation_data(64, 8)),
        ),
        (
            "block (deneb header)",
            with_fork(
                "BLOCK_V2",
                "beacon_block",
                json!({"version": "DENEB", "block_header": {
                "slot": "72", "proposer_index": "5", "parent_root": h(1, 32),
                "state_root": h(2, 32), "body_root": h(3, 32)}}),
            ),
        ),
        (
            "randao reveal",
            with_fork("RANDAO_REVEAL", "randao_reveal", json!({"epoch": "9"})),
        ),
        (
            "aggregation slot",
            with_fork(
                "AGGREGATION_SLOT",
                "aggregation_slot",
                json!({"slot": "72"}),
            ),
        ),
        (
            "aggregate and proof (phase0 shape)",
            with_fork(
                "AGGREGATE_AND_PROOF",
                "aggregate_and_proof",
                json!({
                "aggregator_index": "7",
                "aggregate": {"aggregation_bits": "0x03", "data": attestation_data(64, 8), "signature": sig()},
                "selection_proof": sig()}),
            ),
        ),
        (
            "aggregate and proof (electra, under AGGREGATE_AND_PROOF)",
            with_fork(
                "AGGREGATE_AND_PROOF",
                "aggregate_and_proof",
                json!({
                "aggregator_index": "7",
                "aggregate": {"aggregation_bits": "0x03", "data": attestation_data(64, 8),
                              "signature": sig(), "committee_bits": "0x01"},
                "selection_proof": sig()}),
            ),
        ),
        (
            "sync committee message",
            with_fork(
                "SYNC_COMMITTEE_MESSAGE",
                "sync_committee_message",
                json!({"beacon_block_root": h(4, 32), "slot": "73"}),
            ),
        ),
        (
            "sync committee selection proof",
            with_fork(
                "SYNC_COMMITTEE_SELECTION_PROOF",
                "sync_aggregator_selection_data",
                json!({"slot": "73", "subcommittee_index": "1"}),
            ),
        ),
        (
            "sync committee contribution and proof",
            with_fork(
                "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF",
                "contribution_and_proof",
                json!({
                "aggregator_index": "7", "selection_proof": sig(),
                "contribution": {"slot": "73", "beacon_block_root": h(4, 32), "subcommittee_index": "1",
                                 "aggregation_bits": "0x01", "signature": sig()}}),
            ),
        ),
        (
            "voluntary exit",
            with_fork(
                "VOLUNTARY_EXIT",
                "voluntary_exit",
                json!({"epoch": "9", "validator_index": "5"}),
            ),
        ),
        (
            "validator registration",
            json!({"type": "VALIDATOR_REGISTRATION", "validator_registration": {
                "fee_recipient": h(0xfe, 20), "gas_limit": "30000000",
                "timestamp": "1700000000", "pubkey": validator_pubkey}}),
        ),
        (
            "deposit",
            json!({"type": "DEPOSIT", "deposit": {
                "pubkey": validator_pubkey, "withdrawal_credentials": h(0x01, 32),
                "amount": "32000000000", "genesis_fork_version": "0x00000001"}}),
        ),
    ]
}

#[test]
fn lighthouse_shaped_requests_sign_and_py_ecc_verifies_every_signature() {
    let setup = Setup::new();
    setup.enable_http("");
    setup.write_policy(&setup.policy_with(
        "\n[[grant]]\nclients = [\"vc\"]\noperations = [\"eth2.voluntary_exit\", \"eth2.deposit\"]\nkey_groups = [\"validators\"]\nnetworks = [\"test-eth\"]\n",
    ));
    let d = setup.start();
    let pubkey = format!("0x{}", hex::encode(&setup.bls));
    let network = signer::eth2::Network {
        preset: signer::eth2::PresetKind::Minimal,
        genesis_fork_version: [0, 0, 0, 1],
        gloas_fork_epoch: None,
        clock: None,
    };
    let mut to_verify = Vec::new();
    for (i, (name, mut body)) in lighthouse_requests(&pubkey).into_iter().enumerate() {
        let root = signer::eth2::decode(body.to_string().as_bytes(), &network)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .signing_root;
        body["signingRoot"] = json!(format!("{root}"));
        // Alternate what clients vary: the Accept header and the identifier's case.
        let (path, accept) = match i % 3 {
            0 => (format!("/api/v1/eth2/sign/{pubkey}"), None),
            1 => (format!("/api/v1/eth2/sign/{pubkey}"), Some("text/plain")),
            _ => (
                format!("/api/v1/eth2/sign/0x{}", hex::encode_upper(&setup.bls)),
                Some("application/json"),
            ),
        };
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = accept {
            headers.push(("Accept", a));
        }
        let (status, reply) = https(
            &setup,
            d.http_api.unwrap(),
            Some("vc"),
            "POST",
            &path,
            &headers,
            &body.to_string(),
        )
        .unwrap();
        assert_eq!(status, 200, "{name}: {reply}");
        let signature = if accept == Some("text/plain") {
            reply.clone()
        } else {
            serde_json::from_str::<Value>(&reply).unwrap()["signature"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        to_verify.push(json!({"name": name, "pubkey": pubkey, "message": format!("{root}"), "signature": signature}));
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bls_verify.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for the independent BLS check (scripts/test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::Array(to_verify.clone()).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "independent verification failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), format!("{} verified", to_verify.len()));
    println!(
        "{} Lighthouse-shaped requests signed; py_ecc verified all {}",
        to_verify.len(),
        to_verify.len()
    );

    // A tampered signature is caught by the checker (it can fail).
    let mut bad = to_verify[0].clone();
    bad["message"] = json!(h(0x99, 32));
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json!([bad]).to_string().as_bytes())
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(1));
}
