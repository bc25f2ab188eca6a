//! CometBFT privval wire vectors (CometBFT's privval/msgs_test.go for
//! v0.34/v0.37, v0.38+ and v1.0): every message decodes into our types and
//! encodes back to the same bytes, and the main ones are also built from the
//! fixture's stated facts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use serde_json::Value;
use sha2::Digest;
use signer::api::privval::{self, PubKey, RemoteError, Request, Response, WireProposal, WireVote};
use signer::cometbft::{BlockId, Proposal, ProtocolVersion, Timestamp, Vote, VoteType};

fn vectors() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors/cometbft/sign_bytes_and_privval_vectors.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn versions_of(label: &str) -> Vec<ProtocolVersion> {
    if label.starts_with("v0.34/v0.37") {
        vec![ProtocolVersion::V0_34, ProtocolVersion::V0_37]
    } else if label.starts_with("v0.38") {
        vec![ProtocolVersion::V0_38]
    } else if label.starts_with("v1.0") {
        vec![ProtocolVersion::V1]
    } else {
        panic!("unknown version label {label}")
    }
}

#[test]
fn every_privval_vector_round_trips() {
    let v = vectors();
    let mut n = 0;
    for m in v["privval_messages"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let bytes = hex::decode(m["message_hex"].as_str().unwrap()).unwrap();
        for version in versions_of(m["versions"].as_str().unwrap()) {
            let again = if name.contains("request") || name.contains("Request") {
                let r = privval::decode_request(version, &bytes)
                    .unwrap_or_else(|e| panic!("{name} ({version:?}): {e}"));
                privval::encode_request(version, &r).unwrap()
            } else {
                let r = privval::decode_response(version, &bytes)
                    .unwrap_or_else(|e| panic!("{name} ({version:?}): {e}"));
                privval::encode_response(version, &r).unwrap()
            };
            assert_eq!(
                hex::encode(again),
                hex::encode(&bytes),
                "{name} ({version:?})"
            );
        }
        n += 1;
    }
    println!("privval wire vectors: {n} messages decoded and re-encoded byte for byte");
    assert_eq!(n, 24);
}

/// The fixture of CometBFT's privval tests, from its stated facts.
fn fixture_vote(kind: VoteType, extension: &[u8]) -> WireVote {
    WireVote {
        vote: Vote {
            kind,
            height: 3,
            round: 2,
            block_id: BlockId {
                hash: sha2::Sha256::digest(b"blockID_hash").to_vec(),
                part_set_total: 1_000_000,
                part_set_hash: sha2::Sha256::digest(b"blockID_part_set_header_hash").to_vec(),
            },
            timestamp: Timestamp {
                seconds: 1_570_983_284,
                nanos: 0,
            }, // 2019-10-13T16:14:44Z
            extension: extension.to_vec(),
        },
        validator_address: sha2::Sha256::digest(b"validator_address")[..20].to_vec(),
        validator_index: 56789,
        signature: Vec::new(),
        extension_signature: Vec::new(),
    }
}

fn vector(v: &Value, versions: &str, name: &str) -> String {
    v["privval_messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["versions"].as_str().unwrap().starts_with(versions) && m["name"] == name)
        .unwrap_or_else(|| panic!("no vector {versions} {name}"))["message_hex"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn fixture_messages_built_from_their_facts() {
    let v = vectors();
    let pk: [u8; 32] = hex::decode(v["privval_fixture"]["pubkey_ed25519_hex"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let err = RemoteError {
        code: 1,
        description: "it's a error".into(),
    };
    let cases: Vec<(ProtocolVersion, &str, &str, Vec<u8>)> = vec![
        (
            ProtocolVersion::V0_37,
            "v0.34/v0.37",
            "ping request",
            privval::encode_request(ProtocolVersion::V0_37, &Request::Ping).unwrap(),
        ),
        (
            ProtocolVersion::V0_37,
            "v0.34/v0.37",
            "pubKey request",
            privval::encode_request(
                ProtocolVersion::V0_37,
                &Request::PubKey {
                    chain_id: String::new(),
                },
            )
            .unwrap(),
        ),
        (
            ProtocolVersion::V0_37,
            "v0.34/v0.37",
            "pubKey response",
            privval::encode_response(
                ProtocolVersion::V0_37,
                &Response::PubKey(Ok(PubKey::Ed25519(pk))),
            )
            .unwrap(),
        ),
        (
            ProtocolVersion::V0_37,
            "v0.34/v0.37",
            "pubKey response with error",
            privval::encode_response(ProtocolVersion::V0_37, &Response::PubKey(Err(err.clone())))
                .unwrap(),
        ),
        (
            ProtocolVersion::V0_37,
            "v0.34/v0.37",
            "Vote Request",
            privval::encode_request(
                ProtocolVersion::V0_37,
                &Request::SignVote {
                    chain_id: String::new(),
                    vote: fixture_vote(VoteType::Prevote, b""),
                    skip_extension_signing: false,
                },
            )
            .unwrap(),
        ),
        (
            ProtocolVersion::V0_37,
            "v0.34/v0.37",
            "Vote Response with error",
            privval::encode_response(
                ProtocolVersion::V0_37,
                &Response::SignedVote(Err(err.clone())),
            )
            .unwrap(),
        ),
        (
            ProtocolVersion::V0_38,
            "v0.38",
            "Vote Request",
            privval::encode_request(
                ProtocolVersion::V0_38,
                &Request::SignVote {
                    chain_id: String::new(),
                    vote: fixture_vote(VoteType::Precommit, b"extension"),
                    skip_extension_signing: false,
                },
            )
            .unwrap(),
        ),
        (
            ProtocolVersion::V0_38,
            "v0.38",
            "Proposal Response with error",
            privval::encode_response(
                ProtocolVersion::V0_38,
                &Response::SignedProposal(Err(err.clone())),
            )
            .unwrap(),
        ),
        (
            ProtocolVersion::V1,
            "v1.0",
            "pubKey response",
            privval::encode_response(
                ProtocolVersion::V1,
                &Response::PubKey(Ok(PubKey::Ed25519(pk))),
            )
            .unwrap(),
        ),
        (
            ProtocolVersion::V1,
            "v1.0",
            "pubKey response with error",
            privval::encode_response(ProtocolVersion::V1, &Response::PubKey(Err(err))).unwrap(),
        ),
    ];
    for (version, label, name, ours) in &cases {
        assert_eq!(
            hex::encode(ours),
            vector(&v, label, name),
            "{name} ({version:?})"
        );
    }
    println!("privval fixture messages built from facts: {}", cases.len());
}

#[test]
fn generations_refuse_what_they_do_not_have() {
    let with_ext = fixture_vote(VoteType::Precommit, b"extension");
    let req = Request::SignVote {
        chain_id: "c".into(),
        vote: with_ext.clone(),
        skip_extension_signing: false,
    };
    assert_eq!(
        privval::encode_request(ProtocolVersion::V0_37, &req),
        Err(privval::PrivvalCodecError::NotInVersion("a vote extension"))
    );
    let v038 = privval::encode_request(ProtocolVersion::V0_38, &req).unwrap();
    assert_eq!(
        privval::decode_request(ProtocolVersion::V0_37, &v038),
        Err(privval::PrivvalCodecError::NotInVersion("a vote extension"))
    );
    assert_eq!(
        privval::encode_request(
            ProtocolVersion::V0_38,
            &Request::SignBytes { value: vec![1] }
        ),
        Err(privval::PrivvalCodecError::NotInVersion("SignBytes"))
    );
    let skip = Request::SignVote {
        chain_id: "c".into(),
        vote: with_ext,
        skip_extension_signing: true,
    };
    let v1 = privval::encode_request(ProtocolVersion::V1, &skip).unwrap();
    assert_eq!(
        privval::decode_request(ProtocolVersion::V1, &v1).unwrap(),
        skip
    );
    let raw = Request::SignBytes {
        value: b"raw".to_vec(),
    };
    assert_eq!(
        privval::decode_request(
            ProtocolVersion::V1,
            &privval::encode_request(ProtocolVersion::V1, &raw).unwrap()
        )
        .unwrap(),
        raw
    );
    // A proposal keeps the type the node sent (sign bytes always use 32).
    let p = Request::SignProposal {
        chain_id: "c".into(),
        proposal: WireProposal {
            wire_type: 32,
            proposal: Proposal {
                height: 1,
                round: 0,
                pol_round: -1,
                block_id: BlockId::default(),
                timestamp: Timestamp::GO_ZERO,
            },
            signature: vec![],
        },
    };
    assert_eq!(
        privval::decode_request(
            ProtocolVersion::V0_38,
            &privval::encode_request(ProtocolVersion::V0_38, &p).unwrap()
        )
        .unwrap(),
        p
    );
    // Garbage, empty and misdirected messages.
    assert!(matches!(
        privval::decode_request(ProtocolVersion::V0_38, &[0xff, 0xff]),
        Err(privval::PrivvalCodecError::Decode(_))
    ));
    assert_eq!(
        privval::decode_request(ProtocolVersion::V0_38, &[]),
        Err(privval::PrivvalCodecError::Empty)
    );
    let ping_response = privval::encode_response(ProtocolVersion::V0_38, &Response::Ping).unwrap();
    assert!(matches!(
        privval::decode_request(ProtocolVersion::V0_38, &ping_response),
        Err(privval::PrivvalCodecError::Unexpected(_))
    ));
    // A vote of type 0 ("unknown") cannot be signed.
    use prost::Message as _;
    use tendermint_proto::v0_38::privval as pv;
    let zero_type = pv::Message {
        sum: Some(pv::message::Sum::SignVoteRequest(pv::SignVoteRequest {
            vote: Some(tendermint_proto::v0_38::types::Vote {
                r#type: 0,
                height: 3,
                ..Default::default()
            }),
            chain_id: "c".into(),
        })),
    }
    .encode_to_vec();
    assert_eq!(
        privval::decode_request(ProtocolVersion::V0_38, &zero_type),
        Err(privval::PrivvalCodecError::Invalid(
            "vote type (not a prevote or precommit)"
        ))
    );
}

/// Found by the `privval_frame` fuzz target: a v0.34/v0.37 vote carrying an
/// extension *signature* (and no extension) decoded — the check looked at the
/// extension only — while the encoder refused it, so decode and encode
/// disagreed. Extension fields of either kind are now refused on decode.
#[test]
fn an_extension_signature_in_a_generation_without_extensions_is_refused() {
    const FOUND: &[u8] = &[
        26, 129, 1, 10, 127, 8, 2, 24, 3, 24, 2, 34, 74, 10, 32, 139, 1, 2, 51, 134, 195, 113, 119,
        142, 203, 99, 104, 87, 62, 255, 255, 255, 255, 255, 255, 255, 3, 47, 97, 78, 84, 254, 86,
        82, 244, 252, 128, 18, 38, 8, 192, 132, 61, 18, 32, 114, 219, 61, 149, 150, 53, 223, 241,
        187, 86, 123, 237, 170, 112, 87, 51, 146, 197, 21, 150, 102, 163, 248, 202, 241, 30, 65,
        58, 172, 82, 32, 122, 42, 6, 8, 244, 154, 141, 237, 5, 50, 20, 106, 241, 244, 17, 16, 130,
        239, 179, 136, 33, 27, 199, 44, 85, 188, 214, 30, 154, 195, 209, 56, 213, 187, 3, 82, 9,
        92, 120, 116, 101, 110, 115, 105, 111, 110,
    ];
    for v in [ProtocolVersion::V0_34, ProtocolVersion::V0_37] {
        assert_eq!(
            privval::decode_request(v, FOUND),
            Err(privval::PrivvalCodecError::NotInVersion("a vote extension")),
            "{v:?}"
        );
    }
    let request = privval::decode_request(ProtocolVersion::V0_38, FOUND).unwrap();
    let bytes = privval::encode_request(ProtocolVersion::V0_38, &request).unwrap();
    assert_eq!(
        privval::decode_request(ProtocolVersion::V0_38, &bytes).unwrap(),
        request
    );
    // Built by hand: a vote with only an extension signature.
    let mut only_signature = fixture_vote(VoteType::Precommit, b"");
    only_signature.extension_signature = vec![7; 64];
    let v038 = privval::encode_request(
        ProtocolVersion::V0_38,
        &Request::SignVote {
            chain_id: "c".into(),
            vote: only_signature,
            skip_extension_signing: false,
        },
    )
    .unwrap();
    assert_eq!(
        privval::decode_request(ProtocolVersion::V0_37, &v038),
        Err(privval::PrivvalCodecError::NotInVersion("a vote extension"))
    );
}
