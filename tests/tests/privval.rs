//! The CometBFT privval connector end to end: a real daemon dials test
//! nodes (the node side of the same protocol crates: the signer's privval
//! codec and tendermint-p2p's SecretConnection) and answers them through
//! the slashing database.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use serde_json::Value;
use signer::api::privval::connector::code;
use signer::api::privval::{self, PubKey, Request, Response, WireVote};
use signer::cometbft::{BlockId, ProtocolVersion, Timestamp, Vote, VoteType};
use tests::daemon::Setup;
use tests::privval_node::{NodeConn, TestNode};

const WAIT: Duration = Duration::from_secs(30);

fn vectors() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/vectors/cometbft/sign_bytes_and_privval_vectors.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The privval request vector `name` of the generation's label, decoded.
fn vector_request(version: ProtocolVersion, name: &str) -> Request {
    let label = match version {
        ProtocolVersion::V0_34 | ProtocolVersion::V0_37 => "v0.34/v0.37",
        // v1 keeps v0.38's field numbers; its vectors list only what changed.
        ProtocolVersion::V0_38 | ProtocolVersion::V1 => "v0.38",
    };
    let v = vectors();
    let m = v["privval_messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name && m["versions"].as_str().unwrap().starts_with(label))
        .unwrap_or_else(|| panic!("no vector {name} for {label}"));
    let bytes = hex::decode(m["message_hex"].as_str().unwrap()).unwrap();
    privval::decode_request(version, &bytes).unwrap()
}

fn verify(setup: &Setup, msg: &[u8], sig: &[u8]) {
    signer::crypto::ed25519::verify(&setup.ed25519, msg, sig)
        .unwrap_or_else(|e| panic!("signature does not verify: {e}"));
}

fn generation(p: &str) -> ProtocolVersion {
    ProtocolVersion::parse(p).unwrap()
}

#[test]
fn every_generation_signs_the_vector_requests_over_secret_connection_and_unix_sockets() {
    let mut ran = 0;
    for (protocol, unix) in [
        ("v0.34", false),
        ("v0.37", false),
        ("v0.38", false),
        ("v1", false),
        ("v0.38", true),
    ] {
        let version = generation(protocol);
        let setup = Setup::new();
        let node = if unix {
            TestNode::unix(setup.path("node.sock"), version).unwrap()
        } else {
            TestNode::tcp([7; 32], version).unwrap()
        };
        let Request::SignVote { vote, .. } = vector_request(version, "Vote Request") else {
            panic!("not a vote request")
        };
        // The vectors' chain id is empty; the vote is theirs.
        let chain_id = "vector-chain".to_owned();
        setup.enable_cometbft(&chain_id, protocol, &[(node.address(), node.identity())]);
        let daemon = setup.start();
        let mut conn = node
            .accept(WAIT)
            .unwrap_or_else(|e| panic!("{protocol}: {e}\n{}", daemon.log()));

        assert_eq!(conn.ask(&Request::Ping).unwrap(), Response::Ping);
        match conn
            .ask(&Request::PubKey {
                chain_id: chain_id.clone(),
            })
            .unwrap()
        {
            Response::PubKey(Ok(PubKey::Ed25519(pk))) => assert_eq!(pk.to_vec(), setup.ed25519),
            other => panic!("{protocol}: {other:?}"),
        }
        // Another chain's key: refused.
        match conn
            .ask(&Request::PubKey {
                chain_id: "other".into(),
            })
            .unwrap()
        {
            Response::PubKey(Err(e)) => assert_eq!(e.code, code::NOT_ALLOWED),
            other => panic!("{other:?}"),
        }

        // The vectors' proposal and vote share a height and round: the proposal comes first.
        let Request::SignProposal { proposal, .. } = vector_request(version, "Proposal Request")
        else {
            panic!("not a proposal request")
        };
        match conn
            .ask(&Request::SignProposal {
                chain_id: chain_id.clone(),
                proposal: proposal.clone(),
            })
            .unwrap()
        {
            Response::SignedProposal(Ok(p)) => verify(
                &setup,
                &signer::cometbft::proposal_sign_bytes(&chain_id, &p.proposal).unwrap(),
                &p.signature,
            ),
            other => panic!("{protocol}: {other:?}"),
        }
        let request = Request::SignVote {
            chain_id: chain_id.clone(),
            vote: vote.clone(),
            skip_extension_signing: false,
        };
        let signed = match conn.ask(&request).unwrap() {
            Response::SignedVote(Ok(v)) => v,
            other => panic!("{protocol}: {other:?}\n{}", daemon.log()),
        };
        verify(
            &setup,
            &signer::cometbft::vote_sign_bytes(&chain_id, &signed.vote).unwrap(),
            &signed.signature,
        );
        assert_eq!(
            signed.vote, vote.vote,
            "the node's vote comes back as signed"
        );
        if let Some(ext) =
            signer::cometbft::vote_extension_sign_bytes(version, &chain_id, &vote.vote).unwrap()
        {
            verify(&setup, &ext, &signed.extension_signature);
        } else {
            assert!(signed.extension_signature.is_empty());
        }

        if version == ProtocolVersion::V1 {
            match conn
                .ask(&Request::SignBytes {
                    value: b"raw bytes".to_vec(),
                })
                .unwrap()
            {
                Response::SignBytes(Ok(sig)) => verify(&setup, b"raw bytes", &sig),
                other => panic!("{other:?}"),
            }
        }
        assert!(daemon.stop().success());
        ran += 1;
    }
    println!(
        "{ran} node connections (4 generations over SecretConnection, 1 Unix socket) signed the vector requests"
    );
}

fn vote(kind: VoteType, height: i64, round: i32, block: u8, seconds: i64) -> WireVote {
    WireVote {
        vote: Vote {
            kind,
            height,
            round,
            block_id: BlockId {
                hash: vec![block; 32],
                part_set_total: 1,
                part_set_hash: vec![block; 32],
            },
            timestamp: Timestamp { seconds, nanos: 0 },
            extension: Vec::new(),
        },
        validator_address: vec![1; 20],
        validator_index: 0,
        signature: Vec::new(),
        extension_signature: Vec::new(),
    }
}

fn sign_vote(
    conn: &mut NodeConn,
    chain: &str,
    v: WireVote,
) -> Result<WireVote, privval::RemoteError> {
    let asked = conn.ask(&Request::SignVote {
        chain_id: chain.into(),
        vote: v,
        skip_extension_signing: false,
    });
    match asked.unwrap_or_else(|e| panic!("the signer did not answer: {e}")) {
        Response::SignedVote(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_nodes_of_one_chain_share_signatures_and_cannot_double_sign() {
    let setup = Setup::new();
    let a = TestNode::tcp([1; 32], ProtocolVersion::V0_37).unwrap();
    let b = TestNode::tcp([2; 32], ProtocolVersion::V0_37).unwrap();
    setup.enable_cometbft(
        "two-node-chain",
        "v0.37",
        &[(a.address(), a.identity()), (b.address(), b.identity())],
    );
    let daemon = setup.start();
    // Not ready until a node of the chain is connected.
    let (status, body) = daemon.http("GET", "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("privval: a chain has no node connected (two-node-chain 0/2 nodes)"),
        "{body}"
    );
    let mut ca = a.accept(WAIT).unwrap();
    let mut cb = b.accept(WAIT).unwrap();
    let chain = "two-node-chain";
    let ping = ca.ask(&Request::Ping);
    assert_eq!(ping, Ok(Response::Ping), "{}", daemon.log());

    // The same prevote from both: one signature, the same for both.
    let first = sign_vote(&mut ca, chain, vote(VoteType::Prevote, 10, 0, 0xaa, 1000))
        .unwrap_or_else(|e| panic!("{e:?}\n{}", daemon.log()));
    let second = sign_vote(&mut cb, chain, vote(VoteType::Prevote, 10, 0, 0xaa, 1000)).unwrap();
    assert_eq!(first.signature, second.signature);

    // Conflicting precommits at one height/round: exactly one is signed.
    let pa = sign_vote(&mut ca, chain, vote(VoteType::Precommit, 10, 0, 0xaa, 1001));
    let pb = sign_vote(&mut cb, chain, vote(VoteType::Precommit, 10, 0, 0xbb, 1001));
    assert!(pa.is_ok());
    let err = pb.unwrap_err();
    assert_eq!(err.code, code::DOUBLE_SIGN, "{}", err.description);
    assert!(
        err.description.contains("double sign"),
        "{}",
        err.description
    );

    assert_eq!(daemon.http("GET", "/readyz").0, 200);

    // Only the timestamp differs: the recorded vote signed again (Ed25519 is
    // deterministic: the same signature) with the stored timestamp.
    let again = sign_vote(&mut cb, chain, vote(VoteType::Precommit, 10, 0, 0xaa, 2002)).unwrap();
    let pa = pa.unwrap();
    assert_eq!(again.signature, pa.signature);
    assert_eq!(
        again.vote.timestamp,
        Timestamp {
            seconds: 1001,
            nanos: 0
        }
    );
    verify(
        &setup,
        &signer::cometbft::vote_sign_bytes(chain, &again.vote).unwrap(),
        &again.signature,
    );

    // Going back a height: refused as a double sign too.
    let back = sign_vote(&mut ca, chain, vote(VoteType::Prevote, 9, 0, 0xcc, 999)).unwrap_err();
    assert_eq!(back.code, code::DOUBLE_SIGN);
    assert_eq!(
        daemon.metric(r#"signer_requests_total{frontend="privval",operation="cometbft.vote",outcome="signed"}"#),
        4.0
    );
}

#[test]
fn wrong_node_ids_are_refused_restarted_nodes_reconnected_and_garbage_disconnected() {
    let setup = Setup::new();
    let good = TestNode::tcp([3; 32], ProtocolVersion::V0_38).unwrap();
    let other = TestNode::tcp([4; 32], ProtocolVersion::V0_38).unwrap();
    // `impostor` listens where the configuration expects node [5; 32].
    let impostor = TestNode::tcp([6; 32], ProtocolVersion::V0_38).unwrap();
    let expected_id = signer::api::privval::connector::node_id(
        &ed25519_consensus::SigningKey::from([5u8; 32])
            .verification_key()
            .to_bytes(),
    );
    let impostor_addr = impostor.address();
    let at = impostor_addr.split('@').nth(1).unwrap();
    setup.enable_cometbft(
        "chain-x",
        "v0.38",
        &[
            (good.address(), good.identity()),
            (other.address(), other.identity()),
            (format!("tcp://{expected_id}@{at}"), expected_id.clone()),
        ],
    );
    let daemon = setup.start();
    let mut g = good.accept(WAIT).unwrap();
    let mut o = other.accept(WAIT).unwrap();

    // The impostor completes a handshake, then the signer hangs up on it.
    let mut imp = impostor.accept(WAIT).unwrap();
    assert!(
        imp.ask(&Request::Ping).is_err(),
        "an impostor got an answer"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        daemon.log().contains("not the configured"),
        "{}",
        daemon.log()
    );

    // Garbage from one node: that connection is dropped, the other is unaffected.
    assert!(o.send_garbage_and_see_hangup(&[0x05, 0xff, 0xff, 0xff, 0xff, 0xff]));
    assert_eq!(g.ask(&Request::Ping).unwrap(), Response::Ping);
    assert!(sign_vote(&mut g, "chain-x", vote(VoteType::Prevote, 5, 0, 1, 10)).is_ok());

    // The dropped node is dialed again, as is a node that restarts.
    let mut o = other.accept(WAIT).unwrap();
    assert_eq!(o.ask(&Request::Ping).unwrap(), Response::Ping);
    drop(g);
    let mut g = good.accept(WAIT).unwrap();
    assert_eq!(g.ask(&Request::Ping).unwrap(), Response::Ping);
    let series = format!(
        "signer_privval_connection_failures_total{{chain=\"chain-x\",node=\"tcp://{expected_id}@{at}\"}}"
    );
    assert!(daemon.metric(&series) >= 1.0, "{series}");
    let connected = format!(
        "signer_privval_connected{{chain=\"chain-x\",node=\"{}\"}}",
        good.address()
    );
    assert_eq!(daemon.metric(&connected), 1.0, "{connected}");
}

#[test]
fn after_sigkill_no_height_round_step_is_ever_signed_twice() {
    let setup = Setup::new();
    let a = TestNode::tcp([8; 32], ProtocolVersion::V0_34).unwrap();
    let b = TestNode::tcp([9; 32], ProtocolVersion::V0_34).unwrap();
    setup.enable_cometbft(
        "kill-chain",
        "v0.34",
        &[(a.address(), a.identity()), (b.address(), b.identity())],
    );
    // The expected answer to every request, from CometBFT's rule alone: the
    // last position signed (height, step) and its block. A request above it
    // is signed; at it with the same block it is signed again (the same
    // vote); anything else is refused with the double-sign code. Requests
    // are sequential and a kill happens between requests, so the model is
    // exact — also across restarts (the position is durable before signing).
    let mut last: Option<((i64, u8), u8)> = None;
    let (mut received, mut refused) = (0, 0);
    let mut height = 1;
    let mut ask = |conn: &mut NodeConn, height: i64, step: u8, kind: VoteType, block: u8| {
        let expect_signed = match last {
            None => true,
            Some((pos, b)) => (height, step) > pos || ((height, step) == pos && b == block),
        };
        match sign_vote(
            conn,
            "kill-chain",
            vote(kind, height, 0, block, height * 10),
        ) {
            Ok(signed) => {
                assert!(
                    expect_signed,
                    "{height}/0/{step} block {block:#x} signed after {last:?}"
                );
                let bytes = signer::cometbft::vote_sign_bytes("kill-chain", &signed.vote).unwrap();
                verify(&setup, &bytes, &signed.signature);
                last = Some(((height, step), block));
                received += 1;
            }
            Err(e) => {
                assert!(
                    !expect_signed,
                    "{height}/0/{step} block {block:#x} refused after {last:?}: {}",
                    e.description
                );
                assert_eq!(e.code, code::DOUBLE_SIGN, "{}", e.description);
                refused += 1;
            }
        }
    };
    for round in 0..3 {
        let daemon = setup.start();
        let mut ca = a.accept(WAIT).unwrap();
        let mut cb = b.accept(WAIT).unwrap();
        let kill_after = 40 + 13 * round;
        for i in 0..200 {
            if i == kill_after {
                daemon.kill();
                break;
            }
            // Both nodes ask at every step; B's block differs at odd heights (a conflict).
            for (step, kind) in [(2u8, VoteType::Prevote), (3, VoteType::Precommit)] {
                ask(&mut ca, height, step, kind, 0xaa);
                ask(
                    &mut cb,
                    height,
                    step,
                    kind,
                    if height % 2 == 1 { 0xbb } else { 0xaa },
                );
            }
            height += 1;
        }
        // After the restart, the heights signed before the kill stay protected.
        height -= 3;
    }
    // A final run: the last heights again, conflicting.
    let _daemon = setup.start();
    let mut ca = a.accept(WAIT).unwrap();
    for h in 1..height {
        ask(&mut ca, h, 2, VoteType::Prevote, 0xcc);
    }
    // 40 + 53 + 66 iterations of four requests (minus the three rewound
    // heights after each restart, refused), then the final run.
    assert!(received > 200, "only {received} signatures received");
    assert!(refused > 100, "only {refused} refusals");
    println!(
        "{received} signatures and {refused} double-sign refusals over 3 kills, each as CometBFT's rule predicts"
    );
}

#[test]
fn max_height_and_vote_extension_settings_are_honoured() {
    let setup = Setup::new();
    let node = TestNode::tcp([10; 32], ProtocolVersion::V1).unwrap();
    setup.enable_cometbft("ext-chain", "v1", &[(node.address(), node.identity())]);
    // The [[cometbft]] table is the file's last: add a height limit to it.
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    setup.write("signer.toml", &format!("{config}max_height = 50\n"));
    let daemon = setup.start();
    let mut conn = node.accept(WAIT).unwrap();
    let chain = "ext-chain";
    let mut precommit = vote(VoteType::Precommit, 10, 0, 0xaa, 100);
    precommit.vote.extension = b"ext".to_vec();

    // Extensions are signed on v1 precommits for a block…
    let signed = sign_vote(&mut conn, chain, precommit.clone()).unwrap();
    let ext =
        signer::cometbft::vote_extension_sign_bytes(ProtocolVersion::V1, chain, &precommit.vote)
            .unwrap()
            .unwrap();
    verify(&setup, &ext, &signed.extension_signature);
    // …unless the node asks to skip them.
    let mut next = vote(VoteType::Precommit, 11, 0, 0xaa, 110);
    next.vote.extension = b"ext".to_vec();
    let asked = conn
        .ask(&Request::SignVote {
            chain_id: chain.into(),
            vote: next,
            skip_extension_signing: true,
        })
        .unwrap();
    match asked {
        Response::SignedVote(Ok(v)) => {
            assert!(v.extension_signature.is_empty());
            verify(
                &setup,
                &signer::cometbft::vote_sign_bytes(chain, &v.vote).unwrap(),
                &v.signature,
            );
        }
        other => panic!("{other:?}"),
    }
    // Above max_height: refused, and nothing recorded (a lower height still signs).
    let high = sign_vote(&mut conn, chain, vote(VoteType::Prevote, 51, 0, 0xaa, 510)).unwrap_err();
    assert_eq!(high.code, code::NOT_ALLOWED);
    assert!(
        high.description.contains("max_height"),
        "{}",
        high.description
    );
    assert!(sign_vote(&mut conn, chain, vote(VoteType::Prevote, 50, 0, 0xaa, 500)).is_ok());
    drop(daemon);
}
