//! Gloas request types (bids, envelopes, payload attestations, proposer
//! preferences, builder request authorisations, and the Gloas form of an
//! aggregate-and-proof): signing roots equal those of Lodestar's SSZ types
//! (`@lodestar/types` from npm, an independent implementation of the
//! progressive merkleization these types use) on objects Lodestar generates,
//! and Lodestar's roots equal ours on objects generated here; through the
//! daemon, each type signs after the fork epoch and is refused before it,
//! over HTTP and gRPC alike, and proposer preferences obey the grant's fee
//! recipient and gas-limit constraints.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::process::Command;

use proto::v1 as pb;
use serde_json::{Value, json};
use tests::daemon::{BLS_SECRET, Daemon, GVR, Setup, https};
use tree_hash::TreeHash;

/// The fork version the requests' `fork_info` names (any value: the domain is
/// what is checked).
const FORK_VERSION: &str = "0x07000001";
const GENESIS_FORK_VERSION: &str = "0x00000001";

/// Request field → request type.
const KINDS: [(&str, &str); 6] = [
    ("execution_payload_bid", "EXECUTION_PAYLOAD_BID"),
    ("execution_payload_envelope", "EXECUTION_PAYLOAD_ENVELOPE"),
    ("payload_attestation_message", "PAYLOAD_ATTESTATION_MESSAGE"),
    ("proposer_preferences", "PROPOSER_PREFERENCES"),
    ("builder_request_auth", "BUILDER_REQUEST_AUTH"),
    ("aggregate_and_proof", "AGGREGATE_AND_PROOF_V2"),
];

fn node(preset: &str, mode: &str, seed: u32, per_kind: usize, stdin: Option<&str>) -> Vec<Value> {
    let dir = tests::independent::lodestar_dir();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("gloas.mjs"))
        .current_dir(dir)
        .env("LODESTAR_PRESET", preset)
        .env("GLOAS_MODE", mode)
        .env("GLOAS_SEED", seed.to_string())
        .env("GLOAS_PER_KIND", per_kind.to_string())
        .env("GLOAS_FORK_VERSION", FORK_VERSION)
        .env("GLOAS_GENESIS_FORK_VERSION", GENESIS_FORK_VERSION)
        .env("GLOAS_GVR", GVR);
    tests::independent::json_lines(
        cmd,
        stdin.unwrap_or_default().to_owned(),
        "install Debian's nodejs and run `npm ci` in tests/lodestar (scripts/test does)",
    )
}

fn network(preset: signer::eth2::PresetKind, gloas: Option<u64>) -> signer::eth2::Network {
    signer::eth2::Network {
        preset,
        genesis_fork_version: [0, 0, 0, 1],
        gloas_fork_epoch: gloas,
        clock: None,
    }
}

fn fork_info() -> Value {
    json!({
        "fork": {"previous_version": FORK_VERSION, "current_version": FORK_VERSION, "epoch": "0"},
        "genesis_validators_root": GVR,
    })
}

/// The Web3Signer request for a message of `field`'s kind.
fn request(field: &str, data: &Value) -> Value {
    let kind = KINDS.iter().find(|(f, _)| *f == field).unwrap().1;
    json!({
        "type": kind,
        "fork_info": fork_info(),
        field: {"version": "GLOAS", "data": data},
    })
}

#[test]
fn gloas_roots_equal_lodestars_for_every_kind_in_both_presets() {
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (preset, kind, seed) in [
        ("mainnet", signer::eth2::PresetKind::Mainnet, 31),
        ("minimal", signer::eth2::PresetKind::Minimal, 32),
    ] {
        let network = network(kind, Some(0));
        for line in node(preset, "generate", seed, 100, None) {
            let field = line["kind"].as_str().unwrap();
            let request = request(field, &line["data"]);
            let s = signer::eth2::decode_value(&request, &network)
                .unwrap_or_else(|e| panic!("{preset} {field}: {e}\n{request}"));
            assert_eq!(
                format!("{}", s.signing_root),
                line["signing_root"].as_str().unwrap(),
                "{preset} {field}: {request}"
            );
            *counts
                .entry((preset.to_owned(), field.to_owned()))
                .or_default() += 1;
        }
    }
    for ((preset, field), n) in &counts {
        println!("{preset} {field}: {n} signing roots equal Lodestar's");
        assert!(*n >= 100);
    }
    assert_eq!(counts.len(), 2 * KINDS.len());
}

/// A small deterministic generator (xorshift64), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn hex(&mut self, len: usize) -> String {
        let b: Vec<u8> = (0..len).map(|_| self.next() as u8).collect();
        format!("0x{}", hex::encode(b))
    }
    /// A number as the beacon API quotes it; below 2^53 where Lodestar
    /// holds the field as a JS number.
    fn num(&mut self, big: bool) -> String {
        if big {
            self.next().to_string()
        } else {
            (self.next() >> 11).to_string()
        }
    }
    fn list(&mut self, max: u64, mut item: impl FnMut(&mut Self) -> Value) -> Value {
        let n = self.below(max + 1);
        Value::Array((0..n).map(|_| item(self)).collect())
    }
}

/// Objects of every Gloas kind made here, with longer lists than Lodestar's
/// generator makes (up to 90 items, reaching the fifth progressive subtree;
/// 4,096 bytes) and 64-bit values where Lodestar keeps them exact.
fn our_objects(rng: &mut Rng) -> Vec<(&'static str, Value)> {
    let withdrawal = |r: &mut Rng| json!({"index": r.num(false), "validator_index": r.num(false), "address": r.hex(20), "amount": r.num(false)});
    let bid = json!({
        "parent_block_hash": rng.hex(32), "parent_block_root": rng.hex(32), "block_hash": rng.hex(32),
        "prev_randao": rng.hex(32), "fee_recipient": rng.hex(20), "gas_limit": rng.num(true),
        "builder_index": rng.num(false), "slot": rng.num(false), "value": rng.num(false),
        "execution_payment": rng.num(true),
        "blob_kzg_commitments": rng.list(90, |r| json!(r.hex(48))),
        "execution_requests_root": rng.hex(32),
    });
    let tx_bytes = rng.below(3000) as usize;
    let bal = rng.below(4096) as usize;
    let extra = rng.below(33) as usize;
    let envelope = json!({
        "payload": {
            "parent_hash": rng.hex(32), "fee_recipient": rng.hex(20), "state_root": rng.hex(32),
            "receipts_root": rng.hex(32), "logs_bloom": rng.hex(256), "prev_randao": rng.hex(32),
            "block_number": rng.num(false), "gas_limit": rng.num(false), "gas_used": rng.num(false),
            "timestamp": rng.num(false), "extra_data": rng.hex(extra),
            "base_fee_per_gas": format!("{}{}", rng.next(), rng.next()), "block_hash": rng.hex(32),
            "transactions": rng.list(90, |r| { let n = r.below(200) as usize; json!(r.hex(n)) }),
            "withdrawals": rng.list(16, withdrawal),
            "blob_gas_used": rng.num(false), "excess_blob_gas": rng.num(false),
            "block_access_list": rng.hex(bal + tx_bytes % 7),
            "slot_number": rng.num(false),
        },
        "execution_requests": {
            "deposits": rng.list(25, |r| json!({"pubkey": r.hex(48), "withdrawal_credentials": r.hex(32), "amount": r.num(false), "signature": r.hex(96), "index": r.num(false)})),
            "withdrawals": rng.list(16, |r| json!({"source_address": r.hex(20), "validator_pubkey": r.hex(48), "amount": r.num(false)})),
            "consolidations": rng.list(2, |r| json!({"source_address": r.hex(20), "source_pubkey": r.hex(48), "target_pubkey": r.hex(48)})),
            "builder_deposits": rng.list(64, |r| json!({"pubkey": r.hex(48), "withdrawal_credentials": r.hex(32), "amount": r.num(false), "signature": r.hex(96)})),
            "builder_exits": rng.list(16, |r| json!({"source_address": r.hex(20), "pubkey": r.hex(48)})),
        },
        "builder_index": rng.num(false), "beacon_block_root": rng.hex(32), "parent_beacon_block_root": rng.hex(32),
    });
    let ptc = json!({
        "beacon_block_root": rng.hex(32), "slot": rng.num(false),
        "payload_present": rng.below(2) == 1, "blob_data_available": rng.below(2) == 1,
    });
    let prefs = json!({
        "dependent_root": rng.hex(32), "proposal_slot": rng.num(false), "validator_index": rng.num(false),
        "fee_recipient": rng.hex(20), "target_gas_limit": rng.num(true),
    });
    let auth_len = rng.below(4097) as usize;
    let auth = json!({"data": rng.hex(auth_len), "slot": rng.num(false)});
    vec![
        ("execution_payload_bid", bid),
        ("execution_payload_envelope", envelope),
        ("payload_attestation_message", ptc),
        ("proposer_preferences", prefs),
        ("builder_request_auth", auth),
    ]
}

fn our_root(field: &str, data: &Value) -> String {
    use signer::eth2::gloas::*;
    macro_rules! root {
        ($t:ty) => {
            format!(
                "{}",
                serde_json::from_value::<$t>(data.clone())
                    .unwrap()
                    .tree_hash_root()
            )
        };
    }
    match field {
        "execution_payload_bid" => root!(ExecutionPayloadBid),
        "execution_payload_envelope" => {
            root!(ExecutionPayloadEnvelope<signer::eth2::preset::Mainnet>)
        }
        "payload_attestation_message" => root!(PayloadAttestationData),
        "proposer_preferences" => root!(ProposerPreferences),
        "builder_request_auth" => root!(BuilderRequestAuth),
        other => panic!("{other}"),
    }
}

#[test]
fn lodestars_roots_equal_ours_on_objects_made_here() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut objects = Vec::new();
    for _ in 0..100 {
        objects.extend(our_objects(&mut rng));
    }
    let input: String = objects
        .iter()
        .map(|(field, data)| format!("{}\n", json!({"kind": field, "data": data})))
        .collect();
    let theirs = node("mainnet", "hash", 0, 0, Some(&input));
    assert_eq!(theirs.len(), objects.len());
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for ((field, data), line) in objects.iter().zip(&theirs) {
        assert_eq!(line["kind"], *field);
        assert_eq!(our_root(field, data), line["root"], "{field}: {data}");
        *counts.entry(field).or_default() += 1;
    }
    for (field, n) in &counts {
        println!("{field}: {n} roots of objects made here equal Lodestar's");
    }
    assert_eq!(counts.len(), 5);
}

#[test]
fn without_a_scheduled_fork_or_before_it_gloas_messages_are_refused() {
    let ptc = request(
        "payload_attestation_message",
        &json!({"beacon_block_root": format!("0x{}", "11".repeat(32)), "slot": "20", "payload_present": true, "blob_data_available": true}),
    );
    let minimal = signer::eth2::PresetKind::Minimal;
    assert_eq!(
        signer::eth2::decode_value(&ptc, &network(minimal, None))
            .unwrap_err()
            .to_string(),
        "the payload attestation is a gloas message and this network has no gloas fork scheduled; \
         set [ethereum] gloas_fork_epoch once the network announces it"
    );
    assert_eq!(
        signer::eth2::decode_value(&ptc, &network(minimal, Some(3)))
            .unwrap_err()
            .to_string(),
        "the payload attestation is at epoch 2, before the gloas fork at epoch 3 ([ethereum] gloas_fork_epoch)"
    );
    assert!(signer::eth2::decode_value(&ptc, &network(minimal, Some(2))).is_ok());
    let mut fulu = ptc.clone();
    fulu["payload_attestation_message"]["version"] = json!("FULU");
    assert_eq!(
        signer::eth2::decode_value(&fulu, &network(minimal, Some(0)))
            .unwrap_err()
            .to_string(),
        "this message type exists from the gloas fork on: version must be GLOAS"
    );
    let mut bare = ptc.clone();
    bare["payload_attestation_message"] = bare["payload_attestation_message"]["data"].clone();
    assert_eq!(
        signer::eth2::decode_value(&bare, &network(minimal, Some(0)))
            .unwrap_err()
            .to_string(),
        "missing field version"
    );
}

// ------------------------------------------------------------ the daemon

const FEE_OK: &str = "0x388c818ca8b9251b393131c08a736a67ccb19297";
const FEE_THIEF: &str = "0xdeaddeaddeaddeaddeaddeaddeaddeaddeaddead";
/// Gloas at epoch 3 (slot 24 in the minimal preset).
const GLOAS_EPOCH: u64 = 3;

fn gloas_setup() -> Setup {
    let setup = Setup::new();
    setup.enable_http("");
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    setup.write(
        "signer.toml",
        &config.replace(
            "genesis_fork_version = \"0x00000001\"\n",
            &format!("genesis_fork_version = \"0x00000001\"\ngloas_fork_epoch = {GLOAS_EPOCH}\n"),
        ),
    );
    // The default grant (eth2.duties: payload attestations and proposer
    // preferences among them) has no content constraints; this one, on the
    // second key, holds proposer preferences to a fee recipient and a range.
    setup.write_policy(&setup.policy_with(&format!(
        r#"
[key_groups.builders]
keys = ["0x{bls2}"]

[[grant]]
clients = ["vc"]
operations = ["eth2.builder", "eth2.proposer_preferences"]
key_groups = ["builders"]
networks = ["test-eth"]
fee_recipient = "{FEE_OK}"
gas_limit = {{ min = 30000000, max = 60000000 }}

[[grant]]
clients = ["vc"]
operations = ["eth2.builder_request_auth"]
key_groups = ["validators"]
"#,
        bls2 = hex::encode(&setup.bls2)
    )));
    setup
}

fn post(setup: &Setup, d: &Daemon, key: &[u8], body: &Value) -> (u16, String) {
    https(
        setup,
        d.http_api.unwrap(),
        Some("vc"),
        "POST",
        &format!("/api/v1/eth2/sign/0x{}", hex::encode(key)),
        &[("Content-Type", "application/json")],
        &body.to_string(),
    )
    .unwrap()
}

/// What the signing core signs for `request` with `secret`, as the API's hex.
fn expected_signature(request: &Value, secret: &str) -> String {
    let s = signer::eth2::decode_value(
        request,
        &network(signer::eth2::PresetKind::Minimal, Some(GLOAS_EPOCH)),
    )
    .unwrap();
    let key = signer::crypto::bls::BlsSecretKey::from_bytes(&hex::decode(secret).unwrap()).unwrap();
    format!(
        "0x{}",
        hex::encode(key.sign(s.signing_root.as_slice()).to_bytes())
    )
}

/// `data` with every slot field set to `slot`.
fn at_slot(field: &str, data: &Value, slot: u64) -> Value {
    let mut d = data.clone();
    let s = json!(slot.to_string());
    match field {
        "execution_payload_bid" | "payload_attestation_message" | "builder_request_auth" => {
            d["slot"] = s
        }
        "execution_payload_envelope" => d["payload"]["slot_number"] = s,
        "proposer_preferences" => d["proposal_slot"] = s,
        "aggregate_and_proof" => d["aggregate"]["data"]["slot"] = s,
        other => panic!("{other}"),
    }
    d
}

#[test]
fn the_daemon_signs_each_gloas_kind_after_the_fork_and_refuses_it_before() {
    let setup = gloas_setup();
    let d = setup.start();
    let mut objects: BTreeMap<String, Value> = BTreeMap::new();
    for line in node("minimal", "generate", 41, 1, None) {
        objects.insert(
            line["kind"].as_str().unwrap().to_owned(),
            line["data"].clone(),
        );
    }
    let bls_secret_2 = tests::daemon::BLS_SECRET_2;
    let mut signed = 0;
    for (field, _) in KINDS {
        // Builders' messages go to the builder key; the rest to the validator key.
        let (key, secret) = match field {
            "execution_payload_bid" | "execution_payload_envelope" => {
                (setup.bls2.clone(), bls_secret_2)
            }
            _ => (setup.bls.clone(), BLS_SECRET),
        };
        let mut data = at_slot(field, &objects[field], 8 * GLOAS_EPOCH + 5);
        if field == "proposer_preferences" {
            data["fee_recipient"] = json!(FEE_OK);
            data["target_gas_limit"] = json!("36000000");
        }
        let ok = request(field, &data);
        let (status, body) = post(&setup, &d, &key, &ok);
        assert_eq!(status, 200, "{field}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["signature"],
            expected_signature(&ok, secret),
            "{field}"
        );
        signed += 1;
        // The last slot before the fork: 400, saying when the fork is.
        let early = request(field, &at_slot(field, &data, 8 * GLOAS_EPOCH - 1));
        let (status, body) = post(&setup, &d, &key, &early);
        let what = match field {
            "execution_payload_bid" => "the bid",
            "execution_payload_envelope" => "the envelope",
            "payload_attestation_message" => "the payload attestation",
            "proposer_preferences" => "the proposer preferences",
            "builder_request_auth" => "the builder request authorisation",
            _ => "the aggregate",
        };
        assert_eq!(
            (status, body.as_str()),
            (
                400,
                format!(
                    "invalid request: {what} is at epoch {}, before the gloas fork at epoch {GLOAS_EPOCH} ([ethereum] gloas_fork_epoch)",
                    GLOAS_EPOCH - 1
                )
                .as_str()
            ),
            "{field}"
        );
    }
    assert_eq!(signed, KINDS.len());

    // Proposer preferences under a grant with constraints: each breach is
    // refused naming the field; within them, signed.
    let prefs = at_slot(
        "proposer_preferences",
        &objects["proposer_preferences"],
        8 * GLOAS_EPOCH + 6,
    );
    for (fee, gas, expected) in [
        (
            FEE_THIEF,
            "36000000",
            format!(
                "policy violation: proposer_preferences.fee_recipient is {FEE_THIEF}; grant #3 allows {FEE_OK}"
            ),
        ),
        (
            FEE_OK,
            "90000000",
            "policy violation: proposer_preferences.target_gas_limit is 90000000; grant #3 allows 30000000 to 60000000".to_owned(),
        ),
    ] {
        let mut p = prefs.clone();
        p["fee_recipient"] = json!(fee);
        p["target_gas_limit"] = json!(gas);
        let (status, body) = post(&setup, &d, &setup.bls2, &request("proposer_preferences", &p));
        assert_eq!((status, body.as_str()), (403, expected.as_str()));
    }
    let mut p = prefs.clone();
    p["fee_recipient"] = json!(FEE_OK);
    p["target_gas_limit"] = json!("45000000");
    let ok = request("proposer_preferences", &p);
    let (status, body) = post(&setup, &d, &setup.bls2, &ok);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["signature"],
        expected_signature(&ok, bls_secret_2)
    );
    // A builder message is not a validator duty: the validator key may not sign one.
    let bid = request(
        "execution_payload_bid",
        &at_slot(
            "execution_payload_bid",
            &objects["execution_payload_bid"],
            8 * GLOAS_EPOCH + 7,
        ),
    );
    let (status, _) = post(&setup, &d, &setup.bls, &bid);
    assert_eq!(status, 403);

    // signer.v1 carries the same messages: the same signatures as over HTTP.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = d.client(setup.client_tls("vc")).await;
        for (field, key, secret) in [
            ("payload_attestation_message", &setup.bls, BLS_SECRET),
            ("proposer_preferences", &setup.bls, BLS_SECRET),
            ("builder_request_auth", &setup.bls, BLS_SECRET),
            ("execution_payload_bid", &setup.bls2, bls_secret_2),
            ("execution_payload_envelope", &setup.bls2, bls_secret_2),
        ] {
            let data = at_slot(field, &objects[field], 8 * GLOAS_EPOCH + 9);
            let message = grpc_message(field, &data);
            let response = client
                .sign(grpc_request(key.clone(), message))
                .await
                .unwrap()
                .into_inner();
            let Some(pb::sign_response::Outcome::Signature(s)) = response.outcome else {
                panic!("{field}: {response:?}");
            };
            assert_eq!(
                format!("0x{}", hex::encode(&s.signature)),
                expected_signature(&request(field, &data), secret),
                "{field} over gRPC"
            );
        }
    });
    d.stop();
}

/// A `signer.v1` request to sign a Gloas `message` with `key`, under the
/// tests' `fork_info`.
fn grpc_request(key: Vec<u8>, message: pb::eth2_request::Message) -> pb::SignRequest {
    pb::SignRequest {
        public_key: key,
        message: Some(pb::sign_request::Message::Eth2(pb::Eth2Request {
            fork_info: Some(pb::ForkInfo {
                fork: Some(pb::Fork {
                    previous_version: h(&json!(FORK_VERSION)),
                    current_version: h(&json!(FORK_VERSION)),
                    epoch: 0,
                }),
                genesis_validators_root: h(&json!(GVR)),
            }),
            signing_root: Vec::new(),
            message: Some(message),
        })),
    }
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap().trim_start_matches("0x")).unwrap()
}

fn n(v: &Value) -> u64 {
    v.as_str().unwrap().parse().unwrap()
}

fn hs(v: &Value) -> Vec<Vec<u8>> {
    v.as_array().unwrap().iter().map(h).collect()
}

/// The `signer.v1` form of a beacon-API JSON Gloas message.
fn grpc_message(field: &str, d: &Value) -> pb::eth2_request::Message {
    use pb::eth2_request::Message as M;
    match field {
        "payload_attestation_message" => M::PayloadAttestation(pb::PayloadAttestationData {
            beacon_block_root: h(&d["beacon_block_root"]),
            slot: n(&d["slot"]),
            payload_present: d["payload_present"].as_bool().unwrap(),
            blob_data_available: d["blob_data_available"].as_bool().unwrap(),
        }),
        "proposer_preferences" => M::ProposerPreferences(pb::ProposerPreferences {
            dependent_root: h(&d["dependent_root"]),
            proposal_slot: n(&d["proposal_slot"]),
            validator_index: n(&d["validator_index"]),
            fee_recipient: h(&d["fee_recipient"]),
            target_gas_limit: n(&d["target_gas_limit"]),
        }),
        "builder_request_auth" => M::BuilderRequestAuth(pb::BuilderRequestAuth {
            data: h(&d["data"]),
            slot: n(&d["slot"]),
        }),
        "execution_payload_bid" => M::ExecutionPayloadBid(pb::ExecutionPayloadBid {
            parent_block_hash: h(&d["parent_block_hash"]),
            parent_block_root: h(&d["parent_block_root"]),
            block_hash: h(&d["block_hash"]),
            prev_randao: h(&d["prev_randao"]),
            fee_recipient: h(&d["fee_recipient"]),
            gas_limit: n(&d["gas_limit"]),
            builder_index: n(&d["builder_index"]),
            slot: n(&d["slot"]),
            value: n(&d["value"]),
            execution_payment: n(&d["execution_payment"]),
            blob_kzg_commitments: hs(&d["blob_kzg_commitments"]),
            execution_requests_root: h(&d["execution_requests_root"]),
        }),
        "execution_payload_envelope" => {
            let p = &d["payload"];
            let r = &d["execution_requests"];
            let each = |v: &Value| v.as_array().unwrap().clone();
            M::ExecutionPayloadEnvelope(pb::ExecutionPayloadEnvelope {
                payload: Some(pb::ExecutionPayloadGloas {
                    parent_hash: h(&p["parent_hash"]),
                    fee_recipient: h(&p["fee_recipient"]),
                    state_root: h(&p["state_root"]),
                    receipts_root: h(&p["receipts_root"]),
                    logs_bloom: h(&p["logs_bloom"]),
                    prev_randao: h(&p["prev_randao"]),
                    block_number: n(&p["block_number"]),
                    gas_limit: n(&p["gas_limit"]),
                    gas_used: n(&p["gas_used"]),
                    timestamp: n(&p["timestamp"]),
                    extra_data: h(&p["extra_data"]),
                    base_fee_per_gas: p["base_fee_per_gas"].as_str().unwrap().to_owned(),
                    block_hash: h(&p["block_hash"]),
                    transactions: hs(&p["transactions"]),
                    withdrawals: each(&p["withdrawals"])
                        .iter()
                        .map(|w| pb::Withdrawal {
                            index: n(&w["index"]),
                            validator_index: n(&w["validator_index"]),
                            address: h(&w["address"]),
                            amount: n(&w["amount"]),
                        })
                        .collect(),
                    blob_gas_used: n(&p["blob_gas_used"]),
                    excess_blob_gas: n(&p["excess_blob_gas"]),
                    block_access_list: h(&p["block_access_list"]),
                    slot_number: n(&p["slot_number"]),
                }),
                execution_requests: Some(pb::ExecutionRequests {
                    deposits: each(&r["deposits"])
                        .iter()
                        .map(|x| pb::DepositRequest {
                            pubkey: h(&x["pubkey"]),
                            withdrawal_credentials: h(&x["withdrawal_credentials"]),
                            amount: n(&x["amount"]),
                            signature: h(&x["signature"]),
                            index: n(&x["index"]),
                        })
                        .collect(),
                    withdrawals: each(&r["withdrawals"])
                        .iter()
                        .map(|x| pb::WithdrawalRequest {
                            source_address: h(&x["source_address"]),
                            validator_pubkey: h(&x["validator_pubkey"]),
                            amount: n(&x["amount"]),
                        })
                        .collect(),
                    consolidations: each(&r["consolidations"])
                        .iter()
                        .map(|x| pb::ConsolidationRequest {
                            source_address: h(&x["source_address"]),
                            source_pubkey: h(&x["source_pubkey"]),
                            target_pubkey: h(&x["target_pubkey"]),
                        })
                        .collect(),
                    builder_deposits: each(&r["builder_deposits"])
                        .iter()
                        .map(|x| pb::BuilderDepositRequest {
                            pubkey: h(&x["pubkey"]),
                            withdrawal_credentials: h(&x["withdrawal_credentials"]),
                            amount: n(&x["amount"]),
                            signature: h(&x["signature"]),
                        })
                        .collect(),
                    builder_exits: each(&r["builder_exits"])
                        .iter()
                        .map(|x| pb::BuilderExitRequest {
                            source_address: h(&x["source_address"]),
                            pubkey: h(&x["pubkey"]),
                        })
                        .collect(),
                }),
                builder_index: n(&d["builder_index"]),
                beacon_block_root: h(&d["beacon_block_root"]),
                parent_beacon_block_root: h(&d["parent_beacon_block_root"]),
            })
        }
        other => panic!("{other}"),
    }
}

/// Payload attestations and envelopes are not slashable, but an equivocation
/// splits views (docs/eth2.md): a second, different message at a slot is
/// refused as slashable with the first one as evidence, a repeat is signed
/// again, an earlier slot is refused, and the database holds the first
/// message afterwards.
#[test]
fn the_daemon_refuses_gloas_equivocations_and_keeps_the_first_message() {
    let setup = gloas_setup();
    let d = setup.start();
    let slot = 8 * GLOAS_EPOCH + 3;
    let ptc = |present: bool, slot: u64| {
        request(
            "payload_attestation_message",
            &json!({
                "beacon_block_root": format!("0x{}", "ab".repeat(32)),
                "slot": slot.to_string(),
                "payload_present": present,
                "blob_data_available": true,
            }),
        )
    };
    let (status, first) = post(&setup, &d, &setup.bls, &ptc(true, slot));
    assert_eq!(status, 200, "{first}");
    // The same message again (a validator client retrying): the same signature.
    assert_eq!(
        post(&setup, &d, &setup.bls, &ptc(true, slot)),
        (200, first.clone())
    );
    // The other vote at the same slot: refused, naming the conflict.
    let (status, body) = post(&setup, &d, &setup.bls, &ptc(false, slot));
    assert_eq!(
        (status, body.as_str()),
        (
            412,
            format!(
                "slashable: equivocation: a different payload attestation was signed at slot {slot}"
            )
            .as_str()
        )
    );
    // An earlier slot: refused as stale.
    let (status, body) = post(&setup, &d, &setup.bls, &ptc(true, slot - 1));
    assert_eq!(
        (status, body.as_str()),
        (
            412,
            format!(
                "slashable: payload attestation at slot {} is older than the one signed at slot {slot}",
                slot - 1
            )
            .as_str()
        )
    );

    // A builder's envelope: one per slot, likewise (and independent of the
    // payload attestations of the same slot).
    let mut objects: BTreeMap<String, Value> = BTreeMap::new();
    for line in node("minimal", "generate", 43, 1, None) {
        objects.insert(
            line["kind"].as_str().unwrap().to_owned(),
            line["data"].clone(),
        );
    }
    let envelope = |block_root: &str| {
        let mut data = at_slot(
            "execution_payload_envelope",
            &objects["execution_payload_envelope"],
            slot,
        );
        data["beacon_block_root"] = json!(block_root);
        request("execution_payload_envelope", &data)
    };
    let one = format!("0x{}", "01".repeat(32));
    let other = format!("0x{}", "02".repeat(32));
    assert_eq!(post(&setup, &d, &setup.bls2, &envelope(&one)).0, 200);
    let (status, body) = post(&setup, &d, &setup.bls2, &envelope(&other));
    assert_eq!(
        (status, body.as_str()),
        (
            412,
            format!(
                "slashable: equivocation: a different payload envelope was signed at slot {slot}"
            )
            .as_str()
        )
    );

    // Over gRPC the refusal is SLASHABLE with the recorded message as evidence.
    let expected_root = signer::eth2::decode_value(
        &ptc(true, slot),
        &network(signer::eth2::PresetKind::Minimal, Some(GLOAS_EPOCH)),
    )
    .unwrap()
    .signing_root;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = d.client(setup.client_tls("vc")).await;
        let message = grpc_message(
            "payload_attestation_message",
            &ptc(false, slot)["payload_attestation_message"]["data"],
        );
        let response = client
            .sign(grpc_request(setup.bls.clone(), message))
            .await
            .unwrap()
            .into_inner();
        let Some(pb::sign_response::Outcome::Refusal(r)) = response.outcome else {
            panic!("{response:?}");
        };
        assert_eq!(r.reason(), pb::Reason::Slashable);
        let e = r.evidence.unwrap();
        assert_eq!(
            (e.kind.as_str(), e.slot, e.signing_root.as_slice()),
            ("equivocation", Some(slot), expected_root.as_slice())
        );
    });
    d.stop();

    // The database holds the first vote, whatever was asked after it.
    let db = slashing_db::SlashingDb::open(
        &setup.path("data/slashing.sqlite"),
        slashing_db::Config::default(),
    )
    .unwrap();
    let pk = slashing_db::BlsPublicKey::from_slice(&setup.bls).unwrap();
    assert_eq!(
        db.last_message(&pk, slashing_db::Lane::PayloadAttestation)
            .unwrap(),
        Some(slashing_db::SignedMessage {
            slot: slashing_db::Slot(slot),
            signing_root: slashing_db::SigningRoot(expected_root.0),
        })
    );
    assert_eq!(
        db.last_message(&pk, slashing_db::Lane::PayloadEnvelope)
            .unwrap(),
        None,
        "envelopes were signed with the builder key"
    );
}
