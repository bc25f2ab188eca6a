//! The signing pipeline: authorize → compute → record → sign → audit.
//! Differential: every reproducible Web3Signer example signed through the
//! pipeline equals the signing core's signature. Refusals are typed, leave no
//! record, and are audited; CometBFT repeats are re-served.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::unhex;

use std::path::{Path, PathBuf};

use serde_json::Value;
use signer::api::privval::WireVote;
use signer::audit::{self, AuditLog};
use signer::backend::soft::{Scheme, SecretKey};
use signer::backend::{BackendError, Key, RemoteKey};
use signer::cometbft::{BlockId, ProtocolVersion, Timestamp, Vote, VoteType};
use signer::eth2::{Clock, Network, PresetKind};
use signer::pipeline::{Keyring, Message, Outcome, Pipeline, Refusal, Request, Signature};
use signer::policy::{ClientId, Miss, Operation, Policy, Verdict};
use slashing_db::NotSafe;

/// The calls these tests make, as one-item requests to `Pipeline::sign`.
trait Calls {
    fn sign_eth2(&self, client: &str, key: &[u8], body: &[u8]) -> Outcome;
    fn sign_vote(
        &self,
        client: &str,
        version: ProtocolVersion,
        chain_id: &str,
        key: &[u8],
        vote: &WireVote,
    ) -> Outcome;
}

impl Calls for Pipeline {
    fn sign_eth2(&self, client: &str, key: &[u8], body: &[u8]) -> Outcome {
        self.sign(
            "test",
            Request {
                client: ClientId::new(client),
                public_key: signer::pipeline::KeyId::new(key.to_vec()),
                message: match signer::eth2::parse_body(body) {
                    Ok(v) => Message::Eth2(v),
                    Err(e) => Message::Invalid {
                        request: "eth2.request",
                        reason: e.to_string(),
                    },
                },
                scope: None,
            },
        )
    }

    fn sign_vote(
        &self,
        client: &str,
        version: ProtocolVersion,
        chain_id: &str,
        key: &[u8],
        vote: &WireVote,
    ) -> Outcome {
        self.sign(
            "test",
            Request {
                client: ClientId::new(client),
                public_key: signer::pipeline::KeyId::new(key.to_vec()),
                message: Message::CometVote {
                    version,
                    chain_id: slashing_db::ChainId::new(chain_id).unwrap(),
                    vote: vote.vote.clone(),
                    sign_extension: true,
                },
                scope: None,
            },
        )
    }
}

const EX_GVR: &str = "0x04700007fabc8282644aed6d1c7c9e21d38a03a0c4ba193f3afe428824b3a673";
const SEED: &str = "9d834d3fcac4ee25536b70e15376febb697861ab573405d8b89290417fd16070";

fn examples() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors/web3signer/sign_examples.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    pipeline: Pipeline,
    bls: Vec<u8>,
    ed: Vec<u8>,
}

impl Fixture {
    fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }
}

fn fixture() -> Fixture {
    fixture_with(Network {
        preset: PresetKind::Minimal,
        genesis_fork_version: [0, 0, 0, 1],
        gloas_fork_epoch: None,
        clock: None,
    })
}

fn fixture_with(network: Network) -> Fixture {
    fixture_holding_ed25519(network, Key::from)
}

/// The fixture, with its Ed25519 key held as `hold` makes it (in memory, or
/// behind a [`RemoteKey`]).
fn fixture_holding_ed25519(network: Network, hold: impl FnOnce(SecretKey) -> Key) -> Fixture {
    let ex = examples();
    let bls =
        SecretKey::from_secret(Scheme::Bls, &unhex(ex["secret_key"].as_str().unwrap())).unwrap();
    let ed = SecretKey::from_secret(Scheme::Ed25519, &unhex(SEED)).unwrap();
    let (bls_pk, ed_pk) = (bls.public_key(), ed.public_key());
    let policy = format!(
        r#"
[clients.vc]
identity = "spiffe://test/vc"
[clients.node]
identity = "spiffe://test/node"
[networks.ex]
genesis_validators_root = "{EX_GVR}"
[networks.chain]
chain_id = "test-chain"
[key_groups.bls]
keys = ["0x{}"]
[key_groups.ed]
keys = ["0x{}"]
[[grant]]
clients = ["vc"]
operations = ["eth2.duties", "eth2.voluntary_exit", "eth2.deposit"]
key_groups = ["bls"]
networks = ["ex"]
[[grant]]
clients = ["node"]
operations = ["cometbft.consensus"]
key_groups = ["ed"]
networks = ["chain"]
"#,
        hex::encode(&bls_pk),
        hex::encode(&ed_pk)
    );
    let (policy, _) = Policy::load(&policy).unwrap();
    let mut keys = Keyring::default();
    keys.insert(bls);
    keys.insert(hold(ed));
    let dir = tempfile::tempdir().unwrap();
    let db = slashing_db::SlashingDb::open(
        &dir.path().join("slashing.sqlite"),
        slashing_db::Config::default(),
    )
    .unwrap();
    let audit = AuditLog::open(&dir.path().join("audit.jsonl")).unwrap();
    Fixture {
        pipeline: Pipeline::new(policy, keys, db, audit, network).unwrap(),
        dir,
        bls: bls_pk,
        ed: ed_pk,
    }
}

fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[test]
fn every_reproducible_example_signs_as_the_signing_core_does() {
    let ex = examples();
    let mut n = 0;
    for e in ex["examples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reproducible"] == true)
    {
        // A fresh database each: the examples' blocks share slot 0.
        let f = fixture();
        let got = f
            .pipeline
            .sign_eth2("vc", &f.bls, &body(&e["request"]))
            .unwrap_or_else(|r| panic!("{}: {r}", e["name"]));
        assert_eq!(
            got,
            Signature::Bls(
                unhex(e["expected_signature"].as_str().unwrap())
                    .try_into()
                    .unwrap()
            ),
            "{}",
            e["name"]
        );
        n += 1;
    }
    println!("pipeline differential: {n} examples signed as the signing core signs them");
    assert_eq!(n, 23);
}

fn attestation_request() -> Value {
    let ex = examples();
    ex["examples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "ATTESTATION")
        .unwrap()["request"]
        .clone()
}

#[test]
fn refusals_are_typed_leave_no_record_and_are_audited() {
    let f = fixture();
    let good = attestation_request();
    let mut conflicting = good.clone();
    conflicting.as_object_mut().unwrap().remove("signingRoot");
    conflicting["attestation"]["beacon_block_root"] = format!("0x{}", "11".repeat(32)).into();

    // Not allowed: the CometBFT node asks for an attestation. Nothing is recorded…
    match f.pipeline.sign_eth2("node", &f.bls, &body(&good)) {
        Err(Refusal::NotAllowed(Verdict::NotGranted(Miss::Operation(
            Operation::Eth2Attestation,
        )))) => {}
        other => panic!("expected NotAllowed, got {other:?}"),
    }
    // …so the conflicting attestation is still signable by the client that may.
    assert!(matches!(
        f.pipeline.sign_eth2("vc", &f.bls, &body(&conflicting)),
        Ok(Signature::Bls(_))
    ));
    // And now the first one is slashable, with the evidence.
    match f.pipeline.sign_eth2("vc", &f.bls, &body(&good)) {
        Err(Refusal::Slashable(NotSafe::DoubleVote { prev })) => assert_eq!(prev.target.0, 0),
        other => panic!("expected a double vote, got {other:?}"),
    }
    // A key the policy does not grant (loaded or not): not allowed. A wrong root.
    assert!(matches!(
        f.pipeline.sign_eth2("vc", &[0xaa; 48], &body(&good)),
        Err(Refusal::NotAllowed(Verdict::NotGranted(Miss::Key(
            Operation::Eth2Attestation
        ))))
    ));
    let mut wrong_root = good.clone();
    wrong_root["signingRoot"] = format!("0x{}", "22".repeat(32)).into();
    assert!(matches!(
        f.pipeline.sign_eth2("vc", &f.bls, &body(&wrong_root)),
        Err(Refusal::InvalidRequest(_))
    ));

    // Every decision, malformed requests included, is in the audit log, which verifies.
    let v = audit::verify(&f.audit_path()).unwrap().unwrap();
    assert_eq!(v.records, 5);
    let log = std::fs::read_to_string(f.audit_path()).unwrap();
    for outcome in [
        "refused:not_allowed",
        "signed",
        "refused:double_vote",
        "refused:invalid_request",
    ] {
        assert!(log.contains(outcome), "{outcome} missing from\n{log}");
    }
    // Policy refusals say which grant was missing, for the auditor.
    for note in [
        "\"note\":\"no grant gives this client eth2.attestation\"",
        "\"note\":\"no grant gives this client eth2.attestation for this key\"",
    ] {
        assert!(log.contains(note), "{note} missing from\n{log}");
    }
}

#[test]
fn unknown_keys_that_the_policy_grants_are_unknown_key() {
    // A policy may name a key that is not loaded (yet): the refusal says so.
    let f = fixture();
    let (policy, _) = Policy::load(&format!(
        "[clients.vc]\nidentity = \"spiffe://test/vc\"\n[networks.ex]\ngenesis_validators_root = \"{EX_GVR}\"\n[key_groups.g]\nkeys = [\"0x{}\"]\n[[grant]]\nclients = [\"vc\"]\noperations = [\"eth2.attestation\"]\nkey_groups = [\"g\"]\nnetworks = [\"ex\"]\n",
        "bb".repeat(48)
    ))
    .unwrap();
    f.pipeline.set_policy(policy);
    assert!(matches!(
        f.pipeline
            .sign_eth2("vc", &[0xbb; 48], &body(&attestation_request())),
        Err(Refusal::UnknownKey)
    ));
}

fn vote(seconds: i64, hash: u8) -> WireVote {
    WireVote {
        vote: Vote {
            kind: VoteType::Precommit,
            height: 100,
            round: 0,
            block_id: BlockId {
                hash: vec![hash; 32],
                part_set_total: 1,
                part_set_hash: vec![7; 32],
            },
            timestamp: Timestamp { seconds, nanos: 0 },
            extension: b"ext".to_vec(),
        },
        validator_address: vec![1; 20],
        validator_index: 0,
        signature: Vec::new(),
        extension_signature: Vec::new(),
    }
}

#[test]
fn cometbft_votes_are_signed_re_served_and_refused() {
    let f = fixture();
    let v38 = ProtocolVersion::V0_38;
    let first = f
        .pipeline
        .sign_vote("node", v38, "test-chain", &f.ed, &vote(1000, 1))
        .unwrap();
    let Signature::CometBft {
        signature,
        timestamp,
        extension_signature,
    } = first.clone()
    else {
        panic!()
    };
    assert_eq!(timestamp.seconds, 1000);
    // What was signed is the canonical vote; the key verifies it.
    let bytes = signer::cometbft::vote_sign_bytes("test-chain", &vote(1000, 1).vote).unwrap();
    signer::crypto::ed25519::verify(&f.ed, &bytes, &signature).unwrap();
    assert!(
        extension_signature.is_some(),
        "v0.38 precommits sign their extension"
    );

    // The same vote again: the same signature.
    let again = f
        .pipeline
        .sign_vote("node", v38, "test-chain", &f.ed, &vote(1000, 1))
        .unwrap();
    assert_eq!(again, first);
    // Only the timestamp differs: the stored signature and the stored timestamp.
    match f
        .pipeline
        .sign_vote("node", v38, "test-chain", &f.ed, &vote(2000, 1))
        .unwrap()
    {
        Signature::CometBft {
            signature: s,
            timestamp: t,
            ..
        } => {
            assert_eq!(s, signature);
            assert_eq!(t.seconds, 1000, "the stored timestamp is sent back");
        }
        other => panic!("{other:?}"),
    }
    // Another block at the same height/round/step: a double sign, refused.
    match f
        .pipeline
        .sign_vote("node", v38, "test-chain", &f.ed, &vote(1000, 2))
    {
        Err(Refusal::Slashable(NotSafe::ConflictingSignBytes { .. })) => {}
        other => panic!("expected a double-sign refusal, got {other:?}"),
    }
    // Another chain is not granted.
    assert!(matches!(
        f.pipeline
            .sign_vote("node", v38, "other-chain", &f.ed, &vote(1000, 1)),
        Err(Refusal::NotAllowed(_))
    ));
    // v0.37 has no extensions.
    assert!(matches!(
        f.pipeline.sign_vote(
            "node",
            ProtocolVersion::V0_37,
            "test-chain",
            &f.ed,
            &vote(1000, 3)
        ),
        Err(Refusal::InvalidRequest(_))
    ));
    assert_eq!(audit::verify(&f.audit_path()).unwrap().unwrap().records, 6);
}

/// An Ed25519 key behind a remote backend that answers a signature only
/// once two are being asked for at the same time (or after 10 s, too late
/// for the test below).
#[derive(Debug)]
struct Rendezvous {
    key: Key,
    public: Vec<u8>,
    /// (signatures being asked for now, most at once so far)
    asked: std::sync::Mutex<(usize, usize)>,
    changed: std::sync::Condvar,
}

impl RemoteKey for Rendezvous {
    fn scheme(&self) -> Scheme {
        Scheme::Ed25519
    }
    fn public_key(&self) -> &[u8] {
        &self.public
    }
    fn backend(&self) -> &'static str {
        "rendezvous"
    }
    fn sign_raw(&self, payload: &[u8]) -> Result<Vec<u8>, BackendError> {
        let mut asked = self.asked.lock().unwrap();
        asked.0 += 1;
        asked.1 = asked.1.max(asked.0);
        self.changed.notify_all();
        let (mut asked, _) = self
            .changed
            .wait_timeout_while(asked, std::time::Duration::from_secs(10), |a| a.1 < 2)
            .unwrap();
        asked.0 -= 1;
        drop(asked);
        Ok(self.key.sign_ed25519(payload)?.to_vec())
    }
}

/// A precommit's two signatures (the vote and its extension) by a key in an
/// HSM or KMS are asked for at once: one round trip to the backend, not
/// two. The backend here cannot answer one request alone, so signing them
/// one after the other fails the test (most at once stays 1).
#[test]
fn a_remote_key_signs_a_precommit_and_its_extension_at_once() {
    let network = Network {
        preset: PresetKind::Minimal,
        genesis_fork_version: [0, 0, 0, 1],
        gloas_fork_epoch: None,
        clock: None,
    };
    let remote = std::sync::Arc::new(std::sync::OnceLock::new());
    let kept = remote.clone();
    let f = fixture_holding_ed25519(network, move |ed| {
        let r = std::sync::Arc::new(Rendezvous {
            public: ed.public_key(),
            key: Key::from(ed),
            asked: Default::default(),
            changed: Default::default(),
        });
        kept.set(r.clone()).unwrap();
        Key::Remote(r)
    });
    let v38 = ProtocolVersion::V0_38;
    let Signature::CometBft {
        signature,
        extension_signature: Some(extension_signature),
        ..
    } = f
        .pipeline
        .sign_vote("node", v38, "test-chain", &f.ed, &vote(1000, 1))
        .unwrap()
    else {
        panic!("a v0.38 precommit signs its extension")
    };
    let most = remote.get().unwrap().asked.lock().unwrap().1;
    assert_eq!(
        most, 2,
        "the vote and its extension were signed one after the other"
    );
    let wire = vote(1000, 1);
    let bytes = signer::cometbft::vote_sign_bytes("test-chain", &wire.vote).unwrap();
    signer::crypto::ed25519::verify(&f.ed, &bytes, &signature).unwrap();
    let ext = signer::cometbft::vote_extension_sign_bytes(v38, "test-chain", &wire.vote)
        .unwrap()
        .unwrap();
    signer::crypto::ed25519::verify(&f.ed, &ext, &extension_signature).unwrap();
}

/// A privval connection serves one chain up to its `max_height`: requests
/// outside that are refused by the pipeline (not the connector), before the
/// policy and the database, audited with their height, and leave no record.
#[test]
fn a_connection_scope_refuses_other_chains_and_heights_above_its_limit() {
    use signer::pipeline::{OutOfScope, Scope};
    let f = fixture();
    let ask = |chain: &str, served: &str, height: i64| {
        let mut v = vote(1000, 1);
        v.vote.height = height;
        f.pipeline.sign(
            "privval",
            Request {
                client: ClientId::new("node"),
                public_key: signer::pipeline::KeyId::new(f.ed.to_vec()),
                message: Message::CometVote {
                    version: ProtocolVersion::V0_38,
                    chain_id: slashing_db::ChainId::new(chain).unwrap(),
                    vote: v.vote,
                    sign_extension: true,
                },
                scope: Some(Scope {
                    chain_id: served.into(),
                    max_height: Some(50),
                }),
            },
        )
    };
    // Granted by the policy, but not what this connection serves.
    match ask("test-chain", "another-chain", 10) {
        Err(Refusal::OutOfScope(OutOfScope::OtherChain { served, asked })) => {
            assert_eq!(
                (served.as_str(), asked.as_str()),
                ("another-chain", "test-chain")
            );
        }
        other => panic!("{other:?}"),
    }
    match ask("test-chain", "test-chain", 51) {
        Err(Refusal::OutOfScope(OutOfScope::AboveMaxHeight {
            height: 51,
            max_height: 50,
        })) => {}
        other => panic!("{other:?}"),
    }
    // Nothing was recorded: the limit itself still signs.
    assert!(ask("test-chain", "test-chain", 50).is_ok());
    let log = std::fs::read_to_string(f.audit_path()).unwrap();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused:out_of_scope"))
        .collect();
    assert_eq!(refused.len(), 2, "{log}");
    assert!(refused[1].contains("\"position\":51"), "{}", refused[1]);
    assert_eq!(audit::verify(&f.audit_path()).unwrap().unwrap().records, 3);
}

/// A slot or epoch beyond what slashing history stores (2^63 and up) is the
/// client's error — `INVALID_REQUEST`, audited — and refused before the
/// database, so the requests it shares a batch with are decided as usual
/// (before: `BACKEND_UNAVAILABLE` for the whole batch).
#[test]
fn numbers_beyond_the_storable_range_are_invalid_requests_not_outages() {
    let f = fixture();
    let good = attestation_request();
    let mut huge = good.clone();
    huge.as_object_mut().unwrap().remove("signingRoot");
    huge["attestation"]["target"]["epoch"] = (1u64 << 63).to_string().into();
    let request = |v: &Value| Request {
        client: ClientId::new("vc"),
        public_key: signer::pipeline::KeyId::new(f.bls.to_vec()),
        message: Message::Eth2(v.clone()),
        scope: None,
    };
    let answers = f
        .pipeline
        .sign_batch("test", vec![request(&huge), request(&good)]);
    match &answers[0] {
        Err(Refusal::InvalidRequest(why)) => {
            assert_eq!(
                why,
                "target epoch 9223372036854775808 is out of the storable range"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(answers[1], Ok(Signature::Bls(_))),
        "{:?}",
        answers[1]
    );
    let log = std::fs::read_to_string(f.audit_path()).unwrap();
    assert!(log.contains("refused:invalid_request"), "{log}");
}

/// With the network's clock known, a block or attestation far ahead of it is
/// refused before the slashing database — so it cannot raise the key's
/// watermarks — and the key goes on signing the present.
#[test]
fn slots_far_ahead_of_the_network_clock_are_refused_and_poison_nothing() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Minimal preset: 8 slots per epoch; the current slot is 1,000.
    let f = fixture_with(Network {
        preset: PresetKind::Minimal,
        genesis_fork_version: [0, 0, 0, 1],
        gloas_fork_epoch: None,
        clock: Some(Clock {
            genesis_time: now - 6_000,
            seconds_per_slot: 6,
            max_slots_ahead: 16,
        }),
    });
    let mut far = attestation_request();
    far.as_object_mut().unwrap().remove("signingRoot");
    far["attestation"]["target"]["epoch"] = "1000000".into();
    match f.pipeline.sign_eth2("vc", &f.bls, &body(&far)) {
        Err(Refusal::InvalidRequest(why)) => {
            assert!(
                why.starts_with("the target epoch is at slot 8000000, 799"),
                "{why}"
            );
            assert!(
                why.contains("at most 16 ahead are accepted ([ethereum] max_slots_ahead)"),
                "{why}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Epoch 126 starts at slot 1,008 (within 16 of 1,000): signed, and it
    // would have been refused as surrounded had epoch 1,000,000 been recorded.
    let mut near = far.clone();
    near["attestation"]["target"]["epoch"] = "126".into();
    assert!(matches!(
        f.pipeline.sign_eth2("vc", &f.bls, &body(&near)),
        Ok(Signature::Bls(_))
    ));
    // Epoch 128 starts at 1,024: refused.
    let mut next = far.clone();
    next["attestation"]["target"]["epoch"] = "128".into();
    assert!(matches!(
        f.pipeline.sign_eth2("vc", &f.bls, &body(&next)),
        Err(Refusal::InvalidRequest(_))
    ));
}

#[test]
fn the_public_networks_have_their_clock_by_default_and_it_can_be_turned_off() {
    use signer::config::Ethereum;
    let mut e = Ethereum::default();
    let clock = e.network().unwrap().clock.unwrap();
    assert_eq!(
        (
            clock.genesis_time,
            clock.seconds_per_slot,
            clock.max_slots_ahead
        ),
        (1_606_824_023, 12, 64)
    );
    e.genesis_fork_version = "0x10000910".into();
    assert_eq!(
        e.network().unwrap().clock.unwrap().genesis_time,
        1_742_213_400
    );
    e.genesis_fork_version = "0x12345678".into();
    assert_eq!(
        e.network().unwrap().clock,
        None,
        "an unknown network has no clock unless configured"
    );
    e.genesis_time = Some(1_700_000_000);
    assert_eq!(
        e.network().unwrap().clock.unwrap().genesis_time,
        1_700_000_000
    );
    let off: Ethereum = toml::from_str("max_slots_ahead = \"off\"").unwrap();
    assert_eq!(off.network().unwrap().clock, None);
    let bad = toml::from_str::<Ethereum>("max_slots_ahead = \"of\"").unwrap_err();
    assert!(
        bad.to_string().contains(
            "invalid value: string \"of\", expected a number of slots (0 or more) or \"off\""
        ),
        "{bad}"
    );
}
