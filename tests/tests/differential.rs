//! Differential: for every request type, the daemon's signature (over gRPC,
//! typed messages, real TLS) equals the signing core's for the same input,
//! called directly in this process. Ethereum inputs are the 25 request
//! examples of Web3Signer's API (with their team-derived signatures where
//! reproducible); CometBFT and raw inputs are built here.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::result_large_err
)]

use proto::v1 as pb;
use serde_json::Value;
use signer::crypto::bls::BlsSecretKey;
use signer::crypto::ed25519::Ed25519SecretKey;
use signer::crypto::secp256k1::Secp256k1SecretKey;
use signer::eth2::containers::{BeaconBlock, BeaconBlockBodyAltair, BeaconBlockBodyPhase0};
use signer::eth2::preset::Minimal;
use tests::daemon::{BLS_SECRET, CHAIN, ED25519_SECRET, SECP256K1_SECRET, Setup};
use tree_hash::TreeHash;

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.strip_prefix("0x").unwrap_or(s)).unwrap()
}

/// A field under any of its spellings.
fn f<'a>(v: &'a Value, names: &[&str]) -> &'a Value {
    names
        .iter()
        .find_map(|n| v.get(*n))
        .unwrap_or_else(|| panic!("none of {names:?} in {v}"))
}
fn b(v: &Value, names: &[&str]) -> Vec<u8> {
    unhex(f(v, names).as_str().unwrap())
}
fn n(v: &Value, names: &[&str]) -> u64 {
    match f(v, names) {
        Value::String(s) => s.parse().unwrap(),
        x => x.as_u64().unwrap(),
    }
}

fn fork_name(s: &str) -> pb::ForkName {
    match s {
        "PHASE0" => pb::ForkName::Phase0,
        "ALTAIR" => pb::ForkName::Altair,
        "BELLATRIX" => pb::ForkName::Bellatrix,
        "CAPELLA" => pb::ForkName::Capella,
        "DENEB" => pb::ForkName::Deneb,
        "ELECTRA" => pb::ForkName::Electra,
        "FULU" => pb::ForkName::Fulu,
        other => panic!("fork {other}"),
    }
}

fn data(v: &Value) -> pb::AttestationData {
    let cp = |c: &Value| pb::Checkpoint {
        epoch: n(c, &["epoch"]),
        root: b(c, &["root"]),
    };
    pb::AttestationData {
        slot: n(v, &["slot"]),
        index: n(v, &["index"]),
        beacon_block_root: b(v, &["beacon_block_root", "beaconBlockRoot"]),
        source: Some(cp(f(v, &["source"]))),
        target: Some(cp(f(v, &["target"]))),
    }
}

fn header_of_full_block(block: &Value, fork: &str) -> pb::BeaconBlockHeader {
    let (slot, proposer_index, parent_root, state_root, body_root) = if fork == "ALTAIR" {
        let bb: BeaconBlock<BeaconBlockBodyAltair<Minimal>> =
            serde_json::from_value(block.clone()).unwrap();
        (
            bb.slot,
            bb.proposer_index,
            bb.parent_root,
            bb.state_root,
            bb.body.tree_hash_root(),
        )
    } else {
        let bb: BeaconBlock<BeaconBlockBodyPhase0<Minimal>> =
            serde_json::from_value(block.clone()).unwrap();
        (
            bb.slot,
            bb.proposer_index,
            bb.parent_root,
            bb.state_root,
            bb.body.tree_hash_root(),
        )
    };
    pb::BeaconBlockHeader {
        slot,
        proposer_index,
        parent_root: parent_root.to_vec(),
        state_root: state_root.to_vec(),
        body_root: body_root.to_vec(),
    }
}

/// A Web3Signer request body as a typed `Eth2Request` (test-side, by hand).
fn typed(r: &Value, with_root: bool) -> pb::Eth2Request {
    use pb::eth2_request::Message as M;
    let kind = r["type"].as_str().unwrap();
    let message = match kind {
        "BLOCK" => M::Block(header_of_full_block(&r["block"], "PHASE0")),
        "BLOCK_V2" => {
            let bb = &r["beacon_block"];
            let fork = bb["version"].as_str().unwrap();
            match bb.get("block_header") {
                Some(h) => M::Block(pb::BeaconBlockHeader {
                    slot: n(h, &["slot"]),
                    proposer_index: n(h, &["proposer_index"]),
                    parent_root: b(h, &["parent_root"]),
                    state_root: b(h, &["state_root"]),
                    body_root: b(h, &["body_root"]),
                }),
                None => M::Block(header_of_full_block(&bb["block"], fork)),
            }
        }
        "ATTESTATION" => M::Attestation(data(&r["attestation"])),
        "AGGREGATION_SLOT" => M::AggregationSlot(pb::AggregationSlot {
            slot: n(&r["aggregation_slot"], &["slot"]),
        }),
        "AGGREGATE_AND_PROOF" | "AGGREGATE_AND_PROOF_V2" => {
            let (fork, ap) = if kind == "AGGREGATE_AND_PROOF" {
                ("PHASE0", &r["aggregate_and_proof"])
            } else {
                let x = &r["aggregate_and_proof"];
                (x["version"].as_str().unwrap(), &x["data"])
            };
            let a = &ap["aggregate"];
            M::AggregateAndProof(pb::AggregateAndProof {
                fork: fork_name(fork) as i32,
                aggregator_index: n(ap, &["aggregator_index"]),
                aggregate: Some(pb::Attestation {
                    aggregation_bits: b(a, &["aggregation_bits"]),
                    data: Some(data(&a["data"])),
                    signature: b(a, &["signature"]),
                    committee_bits: a
                        .get("committee_bits")
                        .map(|_| b(a, &["committee_bits"]))
                        .unwrap_or_default(),
                }),
                selection_proof: b(ap, &["selection_proof"]),
            })
        }
        "RANDAO_REVEAL" => M::RandaoReveal(pb::RandaoReveal {
            epoch: n(&r["randao_reveal"], &["epoch"]),
        }),
        "VOLUNTARY_EXIT" => M::VoluntaryExit(pb::VoluntaryExit {
            epoch: n(&r["voluntary_exit"], &["epoch"]),
            validator_index: n(&r["voluntary_exit"], &["validator_index"]),
        }),
        "SYNC_COMMITTEE_MESSAGE" => {
            let m = &r["sync_committee_message"];
            M::SyncCommitteeMessage(pb::SyncCommitteeMessage {
                beacon_block_root: b(m, &["beacon_block_root"]),
                slot: n(m, &["slot"]),
            })
        }
        "SYNC_COMMITTEE_SELECTION_PROOF" => {
            let d = &r["sync_aggregator_selection_data"];
            M::SyncCommitteeSelectionProof(pb::SyncAggregatorSelectionData {
                slot: n(d, &["slot"]),
                subcommittee_index: n(d, &["subcommittee_index"]),
            })
        }
        "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF" => {
            let cp = &r["contribution_and_proof"];
            let c = &cp["contribution"];
            M::SyncCommitteeContributionAndProof(pb::ContributionAndProof {
                aggregator_index: n(cp, &["aggregator_index"]),
                selection_proof: b(cp, &["selection_proof"]),
                contribution: Some(pb::SyncCommitteeContribution {
                    slot: n(c, &["slot"]),
                    beacon_block_root: b(c, &["beacon_block_root"]),
                    subcommittee_index: n(c, &["subcommittee_index"]),
                    aggregation_bits: b(c, &["aggregation_bits"]),
                    signature: b(c, &["signature"]),
                }),
            })
        }
        "DEPOSIT" => {
            let d = &r["deposit"];
            M::Deposit(pb::Deposit {
                pubkey: b(d, &["pubkey"]),
                withdrawal_credentials: b(d, &["withdrawal_credentials"]),
                amount: n(d, &["amount"]),
                genesis_fork_version: b(d, &["genesis_fork_version"]),
            })
        }
        "VALIDATOR_REGISTRATION" => {
            let v = &r["validator_registration"];
            M::ValidatorRegistration(pb::ValidatorRegistration {
                fee_recipient: b(v, &["fee_recipient"]),
                gas_limit: n(v, &["gas_limit"]),
                timestamp: n(v, &["timestamp"]),
                pubkey: b(v, &["pubkey"]),
            })
        }
        other => panic!("no typed form for {other}"),
    };
    let fork_info = r.get("fork_info").map(|fi| {
        let fork = &fi["fork"];
        pb::ForkInfo {
            fork: Some(pb::Fork {
                previous_version: b(fork, &["previous_version", "previousVersion"]),
                current_version: b(fork, &["current_version", "currentVersion"]),
                epoch: n(fork, &["epoch"]),
            }),
            genesis_validators_root: b(fi, &["genesis_validators_root", "genesisValidatorsRoot"]),
        }
    });
    pb::Eth2Request {
        fork_info,
        signing_root: if with_root {
            b(r, &["signingRoot", "signing_root"])
        } else {
            Vec::new()
        },
        message: Some(message),
    }
}

fn outcome(r: pb::SignResponse) -> Result<pb::Signature, pb::Refusal> {
    match r.outcome.unwrap() {
        pb::sign_response::Outcome::Signature(s) => Ok(s),
        pb::sign_response::Outcome::Refusal(r) => Err(r),
    }
}

const GRANT_EVERYTHING: &str = r#"
[key_groups.raw-secp]
keys = ["0x{secp}"]

[[grant]]
clients = ["vc"]
operations = ["eth2.voluntary_exit", "eth2.deposit"]
key_groups = ["validators"]
networks = ["test-eth"]

[[grant]]
clients = ["vc"]
operations = ["raw.secp256k1"]
key_groups = ["raw-secp"]

[[grant]]
clients = ["node"]
operations = ["cometbft.raw", "raw.ed25519"]
key_groups = ["consensus"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ethereum_request_type_signs_as_the_signing_core_does() {
    let setup = Setup::new();
    setup.write_policy(
        &setup.policy_with(&GRANT_EVERYTHING.replace("{secp}", &hex::encode(&setup.secp256k1))),
    );
    let vectors: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/vectors/web3signer/sign_examples.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let examples = vectors["examples"].as_array().unwrap();
    let network = signer::eth2::Network {
        preset: signer::eth2::PresetKind::Minimal,
        genesis_fork_version: [0, 0, 0, 1],
        gloas_fork_epoch: None,
        clock: None,
    };
    let key = BlsSecretKey::from_bytes(&unhex(BLS_SECRET)).unwrap();
    let (mut matched_vectors, mut refused_mismatch, mut refused_undecodable) = (0, 0, 0);
    // Every block example is at slot 0: each gets a fresh database, or the
    // second would (rightly) be refused as a double proposal.
    let mut daemon: Option<tests::daemon::Daemon> = None;
    for e in examples {
        let name = e["name"].as_str().unwrap();
        let request = &e["request"];
        let is_block = request["type"].as_str().unwrap().starts_with("BLOCK");
        if is_block || daemon.is_none() {
            if let Some(d) = daemon.take() {
                assert!(d.stop().success());
            }
            let _ = std::fs::remove_dir_all(setup.path("data"));
            std::fs::create_dir_all(setup.path("data")).unwrap();
            daemon = Some(setup.start());
        }
        let d = daemon.as_ref().unwrap();
        let mut vc = d.client(setup.client_tls("vc")).await;

        let sign = |with_root| pb::SignRequest {
            public_key: setup.bls.clone(),
            message: Some(pb::sign_request::Message::Eth2(typed(request, with_root))),
        };
        // The signing core, directly, on the JSON without the client's root.
        let mut body = request.clone();
        body.as_object_mut().unwrap().remove("signingRoot");
        let core = signer::eth2::decode(body.to_string().as_bytes(), &network);

        let core_sig = match core {
            Ok(c) => key.sign(c.signing_root.as_slice()).to_bytes().to_vec(),
            Err(error) => {
                // Not decodable by the core under this preset (the Electra
                // examples carry mainnet-sized committee bits): the daemon
                // refuses it with the same reason.
                assert!(!e["reproducible"].as_bool().unwrap(), "{name}: {error}");
                let r = outcome(vc.sign(sign(true)).await.unwrap().into_inner()).unwrap_err();
                assert_eq!(r.reason(), pb::Reason::InvalidRequest, "{name}");
                assert!(
                    r.message.contains(&error.to_string()),
                    "{name}: {} vs {error}",
                    r.message
                );
                refused_undecodable += 1;
                continue;
            }
        };
        if e["reproducible"].as_bool().unwrap() {
            let got = outcome(vc.sign(sign(true)).await.unwrap().into_inner())
                .unwrap_or_else(|r| panic!("{name}: refused {r:?}"));
            assert_eq!(got.signature, core_sig, "{name}");
            assert_eq!(
                got.signature,
                b(e, &["expected_signature"]),
                "{name}: vector"
            );
            matched_vectors += 1;
        } else {
            // The example's signingRoot is not its body's: refused as such…
            let r = outcome(vc.sign(sign(true)).await.unwrap().into_inner()).unwrap_err();
            assert_eq!(r.reason(), pb::Reason::InvalidRequest, "{name}");
            assert!(
                r.message.contains("signing root mismatch"),
                "{name}: {}",
                r.message
            );
            refused_mismatch += 1;
            // …and signed as the core does without it.
            let got = outcome(vc.sign(sign(false)).await.unwrap().into_inner()).unwrap();
            assert_eq!(got.signature, core_sig, "{name}");
        }
    }
    println!(
        "{} examples: {matched_vectors} equal to the core and the vector, {refused_mismatch} refused for their illustrative root and equal to the core without it, {refused_undecodable} refused as the core refuses them",
        examples.len()
    );
    assert_eq!(
        matched_vectors + refused_mismatch + refused_undecodable,
        examples.len()
    );
    assert_eq!(matched_vectors, 23);
    assert_eq!(examples.len(), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cometbft_and_raw_requests_sign_as_the_signing_core_does() {
    use signer::cometbft::{BlockId, ProtocolVersion, Timestamp, Vote, VoteType};
    let setup = Setup::new();
    setup.write_policy(
        &setup.policy_with(&GRANT_EVERYTHING.replace("{secp}", &hex::encode(&setup.secp256k1))),
    );
    let daemon = setup.start();
    let mut node = daemon.client(setup.client_tls("node")).await;
    let mut vc = daemon.client(setup.client_tls("vc")).await;
    let ed = Ed25519SecretKey::from_seed(&unhex(ED25519_SECRET)).unwrap();
    let secp = Secp256k1SecretKey::from_bytes(&unhex(SECP256K1_SECRET)).unwrap();
    let block = BlockId {
        hash: vec![0xab; 32],
        part_set_total: 2,
        part_set_hash: vec![0xcd; 32],
    };
    let pb_block = pb::BlockId {
        hash: block.hash.clone(),
        part_set_total: 2,
        part_set_hash: block.part_set_hash.clone(),
    };
    let ts = pb::Timestamp {
        seconds: 1_700_000_123,
        nanos: 456,
    };
    let mut count = 0;
    for (height, version, pb_version) in [
        (100, ProtocolVersion::V0_34, pb::CometBftVersion::V034),
        (200, ProtocolVersion::V0_37, pb::CometBftVersion::V037),
        (300, ProtocolVersion::V0_38, pb::CometBftVersion::V038),
        (400, ProtocolVersion::V1, pb::CometBftVersion::V1),
    ] {
        // Proposal, prevote, precommit (with an extension where the protocol has them).
        let proposal = pb::SignRequest {
            public_key: setup.ed25519.clone(),
            message: Some(pb::sign_request::Message::CometbftProposal(
                pb::CometBftProposal {
                    chain_id: CHAIN.into(),
                    height,
                    round: 0,
                    pol_round: -1,
                    block_id: Some(pb_block.clone()),
                    timestamp: Some(ts),
                },
            )),
        };
        let got = outcome(node.sign(proposal).await.unwrap().into_inner()).unwrap();
        let core = signer::cometbft::proposal_sign_bytes(
            CHAIN,
            &signer::cometbft::Proposal {
                height,
                round: 0,
                pol_round: -1,
                block_id: block.clone(),
                timestamp: Timestamp {
                    seconds: ts.seconds,
                    nanos: ts.nanos,
                },
            },
        )
        .unwrap();
        assert_eq!(
            got.signature,
            ed.sign(&core).to_vec(),
            "proposal {version:?}"
        );
        assert_eq!(got.timestamp, Some(ts));
        count += 1;
        for (kind, pb_kind) in [
            (VoteType::Prevote, pb::VoteType::Prevote),
            (VoteType::Precommit, pb::VoteType::Precommit),
        ] {
            let extension = if kind == VoteType::Precommit && version.has_vote_extensions() {
                b"extension bytes".to_vec()
            } else {
                Vec::new()
            };
            let vote = Vote {
                kind,
                height,
                round: 0,
                block_id: block.clone(),
                timestamp: Timestamp {
                    seconds: ts.seconds,
                    nanos: ts.nanos,
                },
                extension: extension.clone(),
            };
            let request = pb::SignRequest {
                public_key: setup.ed25519.clone(),
                message: Some(pb::sign_request::Message::CometbftVote(pb::CometBftVote {
                    chain_id: CHAIN.into(),
                    version: pb_version as i32,
                    r#type: pb_kind as i32,
                    height,
                    round: 0,
                    block_id: Some(pb_block.clone()),
                    timestamp: Some(ts),
                    extension,
                })),
            };
            let got = outcome(node.sign(request).await.unwrap().into_inner()).unwrap();
            let core = signer::cometbft::vote_sign_bytes(CHAIN, &vote).unwrap();
            assert_eq!(
                got.signature,
                ed.sign(&core).to_vec(),
                "{kind:?} {version:?}"
            );
            let ext = signer::cometbft::vote_extension_sign_bytes(version, CHAIN, &vote).unwrap();
            assert_eq!(
                got.extension_signature,
                ext.map(|e| ed.sign(&e).to_vec()).unwrap_or_default(),
                "{kind:?} {version:?} extension"
            );
            count += 1;
        }
    }
    // CometBFT raw bytes and raw Ed25519: pure Ed25519 over the bytes.
    for message in [
        pb::sign_request::Message::CometbftRaw(pb::CometBftRaw {
            value: b"raw bytes".to_vec(),
        }),
        pb::sign_request::Message::RawEd25519(pb::RawEd25519 {
            message: b"raw bytes".to_vec(),
        }),
    ] {
        let got = outcome(
            node.sign(pb::SignRequest {
                public_key: setup.ed25519.clone(),
                message: Some(message),
            })
            .await
            .unwrap()
            .into_inner(),
        )
        .unwrap();
        assert_eq!(got.signature, ed.sign(b"raw bytes").to_vec());
        count += 1;
    }
    // secp256k1 over a digest, with the recovery id.
    let digest = [0x5au8; 32];
    let got = outcome(
        vc.sign(pb::SignRequest {
            public_key: setup.secp256k1.clone(),
            message: Some(pb::sign_request::Message::RawSecp256k1(pb::RawSecp256k1 {
                digest: digest.to_vec(),
            })),
        })
        .await
        .unwrap()
        .into_inner(),
    )
    .unwrap();
    let core = secp.sign_prehash(&digest);
    assert_eq!(got.signature, core.rs.to_vec());
    assert_eq!(got.recovery_id, Some(u32::from(core.recovery_id)));
    count += 1;
    println!("{count} CometBFT and raw requests equal to the core");
}
