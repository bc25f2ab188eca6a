//! The AWS KMS backend against `hsm-sim kms` and moto: keys in KMS signing
//! through the daemon (secp256k1 DIGEST and Ed25519 RAW from the simulator,
//! secp256k1 RAW from moto), sealed BLS keys, a cross-check that keeps the
//! simulator honest against moto, and faults (throttling, latency, KMS down).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::result_large_err
)]

use std::time::{Duration, Instant};

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, MessageType, SigningAlgorithmSpec};
use k256::ecdsa::VerifyingKey;
use proto::v1 as pb;
use sha2::Digest;
use tests::daemon::{BLS_SECRET_2, CHAIN, Setup, signature_of};
use tests::hsm::{Answer, Voting, add_key, check_recoverable, check_remote_ed25519};
use tests::kms::{aws_env, client, configure_kms, create_key, fault_file, moto, set_faults, sim};

fn refused(r: pb::SignResponse) -> pb::Reason {
    match r.outcome.expect("an outcome") {
        pb::sign_response::Outcome::Signature(_) => panic!("signed"),
        pb::sign_response::Outcome::Refusal(r) => r.reason(),
    }
}

fn raw_secp(pk: &[u8], digest: &[u8; 32]) -> pb::SignRequest {
    signer::client::raw_secp256k1_request(pk, digest.to_vec())
}

async fn public_key(c: &aws_sdk_kms::Client, id: &str) -> Vec<u8> {
    let der = c.get_public_key().key_id(id).send().await.unwrap();
    signer::backend::kms::parse_spki(der.public_key().unwrap().as_ref())
        .unwrap()
        .1
}

fn eth_address(key: &VerifyingKey) -> [u8; 20] {
    let point = key.to_sec1_point(false);
    let hash = alloy_primitives::keccak256(&point.as_bytes()[1..]);
    hash[12..].try_into().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_keys_sign_through_the_daemon_low_s_with_recovery_ids() {
    let kms = sim(None, false);
    let c = client(&kms.url).await;
    let k1_arn = create_key(&c, KeySpec::EccSecgP256K1, &[]).await;
    c.create_alias()
        .alias_name("alias/oracle")
        .target_key_id(&k1_arn)
        .send()
        .await
        .unwrap();
    let ed_arn = create_key(&c, KeySpec::EccNistEdwards25519, &[("role", "consensus")]).await;
    create_key(&c, KeySpec::EccNistEdwards25519, &[("role", "other")]).await;
    let k1 = public_key(&c, &k1_arn).await;
    let ed = public_key(&c, &ed_arn).await;

    // The operator's view: every key, its scheme, public key and tags.
    let out = std::process::Command::new(tests::daemon::signer_bin())
        .args([
            "keys",
            "list",
            "--backend",
            "kms",
            "--kms-endpoint",
            &kms.url,
        ])
        .envs(aws_env())
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(listing.lines().count(), 3, "{listing}");
    for (arn, pk, tags) in [(&k1_arn, &k1, "[]"), (&ed_arn, &ed, "[role=consensus]")] {
        let line = listing
            .lines()
            .find(|l| l.contains(arn.as_str()))
            .unwrap_or_else(|| panic!("{arn} not listed:\n{listing}"));
        assert!(
            line.contains(&hex::encode(pk)) && line.ends_with(tags),
            "{line}"
        );
    }

    let mut setup = Setup::new();
    configure_kms(&setup, &kms.url, "");
    add_key(&setup, "type = \"kms\"\nkey_id = \"alias/oracle\"");
    add_key(
        &setup,
        "type = \"kms_tags\"\ntags = { role = \"consensus\" }",
    );
    setup.write_policy(&setup.policy_with(&format!(
        "\n[key_groups.kms-consensus]\nkeys = [\"0x{ed}\"]\n\n[key_groups.kms-raw]\nkeys = [\"0x{k1}\", \"0x{ed}\"]\n\n[[grant]]\nclients = [\"node\"]\noperations = [\"cometbft.consensus\"]\nkey_groups = [\"kms-consensus\"]\nnetworks = [\"test-chain\"]\n\n[[grant]]\nclients = [\"vc\"]\noperations = [\"raw.secp256k1\", \"raw.ed25519\"]\nkey_groups = [\"kms-raw\"]\n",
        ed = hex::encode(&ed),
        k1 = hex::encode(&k1)
    )));
    setup.env = aws_env();
    let daemon = setup.start();
    let mut vc = daemon.client(setup.client_tls("vc")).await;
    let mut node = daemon.client(setup.client_tls("node")).await;

    // The alias's key and the one key tagged role=consensus were loaded
    // (next to the setup's BLS key); the key tagged otherwise was not.
    let listed = vc
        .list_keys(pb::ListKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    // Each listed with the operations its scheme can do (the grant names
    // both raw operations for both keys).
    for k in &listed.keys {
        let want: &[&str] = if k.public_key == k1 {
            &["raw.secp256k1"]
        } else if k.public_key == ed {
            &["raw.ed25519"]
        } else {
            continue;
        };
        assert_eq!(k.operations, want, "{k:?}");
    }
    let mut got: Vec<Vec<u8>> = listed.keys.into_iter().map(|k| k.public_key).collect();
    let mut want = vec![setup.bls.clone(), k1.clone(), ed.clone()];
    got.sort();
    want.sort();
    assert_eq!(got, want);

    // secp256k1, DIGEST: 100 signatures, all low-S (the simulator returns
    // high-S half the time), verified by k256, and v recovers the address.
    let address = eth_address(&VerifyingKey::from_sec1_bytes(&k1).unwrap());
    for i in 0..100u32 {
        let digest: [u8; 32] = alloy_primitives::keccak256(i.to_be_bytes()).0;
        let got = signature_of(vc.sign(raw_secp(&k1, &digest)).await.unwrap().into_inner());
        let recovered = check_recoverable(&k1, &digest, &got);
        assert_eq!(eth_address(&recovered), address, "signature {i}");
    }

    // Ed25519, RAW: raw bytes and consensus votes (checked in VoteLoad).
    check_remote_ed25519(&mut vc, &mut node, &ed, b"kms ed25519").await;
    assert_eq!(
        daemon.metric("signer_backend_up{backend=\"kms\",name=\"endpoint\"}"),
        1.0
    );
    assert_eq!(daemon.http("GET", "/readyz").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_moto_secp256k1_signs_on_the_raw_path_and_a_wrong_digest_answer_is_caught() {
    let kms = moto();
    let c = client(&kms.url).await;
    let arn = create_key(&c, KeySpec::EccSecgP256K1, &[]).await;
    let k1 = public_key(&c, &arn).await;

    let mut setup = Setup::new();
    configure_kms(&setup, &kms.url, "");
    add_key(&setup, &format!("type = \"kms\"\nkey_id = \"{arn}\""));
    setup.write_policy(&setup.policy_with(&format!(
        "\n[key_groups.moto]\nkeys = [\"0x{k1}\"]\n\n[[grant]]\nclients = [\"node\"]\noperations = [\"cometbft.consensus\"]\nkey_groups = [\"moto\"]\nnetworks = [\"test-chain\"]\n\n[[grant]]\nclients = [\"vc\"]\noperations = [\"raw.secp256k1\"]\nkey_groups = [\"moto\"]\n",
        k1 = hex::encode(&k1)
    )));
    setup.env = aws_env();
    let daemon = setup.start();
    let mut node = daemon.client(setup.client_tls("node")).await;
    let mut vc = daemon.client(setup.client_tls("vc")).await;

    // A CometBFT vote with a secp256k1 consensus key: KMS signs SHA-256 of
    // the sign bytes (RAW), which moto does faithfully.
    for height in 1..=3 {
        let req = signer::client::vote_request(
            &k1,
            CHAIN,
            pb::VoteType::Prevote,
            (height, 0),
            1,
            1_700_000_000,
        );
        let got = signature_of(node.sign(req).await.unwrap().into_inner());
        let vote = signer::cometbft::Vote {
            kind: signer::cometbft::VoteType::Prevote,
            height,
            round: 0,
            block_id: signer::cometbft::BlockId {
                hash: vec![1; 32],
                part_set_total: 1,
                part_set_hash: vec![1; 32],
            },
            timestamp: signer::cometbft::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            },
            extension: Vec::new(),
        };
        let bytes = signer::cometbft::vote_sign_bytes(CHAIN, &vote).unwrap();
        let digest = sha2::Sha256::digest(&bytes);
        signer::crypto::secp256k1::verify_prehash(&k1, &digest, &got.signature).unwrap();
    }
    // moto treats MessageType=DIGEST as RAW (it hashes again): the answer is
    // not a signature of our digest, and the daemon's check refuses it
    // rather than returning it.
    let digest = [7u8; 32];
    assert_eq!(
        refused(vc.sign(raw_secp(&k1, &digest)).await.unwrap().into_inner()),
        pb::Reason::BackendUnavailable
    );
    assert!(
        daemon.log().contains("invalid signature"),
        "{}",
        daemon.log()
    );
}

/// What a secp256k1 RAW scenario shows of an endpoint.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    spec: String,
    usage: String,
    algorithms: Vec<String>,
    signature_verifies: bool,
    verify_api_accepts: bool,
    verify_api_rejects_other_message: bool,
    unknown_key: Option<String>,
    wrong_algorithm: Option<String>,
}

async fn scenario(url: &str) -> Observed {
    let c = client(url).await;
    let arn = create_key(&c, KeySpec::EccSecgP256K1, &[]).await;
    let meta = c.describe_key().key_id(&arn).send().await.unwrap();
    let meta = meta.key_metadata().unwrap();
    let pk = public_key(&c, &arn).await;
    let message = b"cross-check message".to_vec();
    let sign = |id: String, alg: SigningAlgorithmSpec| {
        c.sign()
            .key_id(id)
            .message(Blob::new(message.clone()))
            .message_type(MessageType::Raw)
            .signing_algorithm(alg)
            .send()
    };
    let sig = sign(arn.clone(), SigningAlgorithmSpec::EcdsaSha256)
        .await
        .unwrap();
    let der = sig.signature().unwrap().as_ref().to_vec();
    let rs = signer::crypto::secp256k1::from_der(&der).unwrap();
    let low = signer::crypto::secp256k1::normalize(&rs).unwrap();
    let digest = sha2::Sha256::digest(&message);
    let verify = |msg: Vec<u8>| {
        c.verify()
            .key_id(&arn)
            .message(Blob::new(msg))
            .message_type(MessageType::Raw)
            .signature(Blob::new(der.clone()))
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
    };
    // An invalid signature: AWS (and hsm-sim) answer KMSInvalidSignatureException;
    // moto answers SignatureValid = false. Both mean "rejected".
    let rejected = match verify(b"another message".to_vec()).await {
        Ok(o) => !o.signature_valid(),
        Err(e) => {
            aws_sdk_kms::error::ProvideErrorMetadata::code(&e)
                == Some("KMSInvalidSignatureException")
        }
    };
    let code = |r: Result<_, aws_sdk_kms::error::SdkError<_>>| -> Option<String> {
        r.err().and_then(
            |e: aws_sdk_kms::error::SdkError<aws_sdk_kms::operation::sign::SignError>| {
                aws_sdk_kms::error::ProvideErrorMetadata::code(&e).map(str::to_owned)
            },
        )
    };
    let unknown = code(
        sign(
            "11111111-2222-3333-4444-555555555555".into(),
            SigningAlgorithmSpec::EcdsaSha256,
        )
        .await,
    );
    let wrong = code(sign(arn.clone(), SigningAlgorithmSpec::EcdsaSha384).await);
    // Not compared: moto keeps signing with a disabled key (AWS answers
    // DisabledException, as hsm-sim does; `a_kms_sealed_bls_key…` checks
    // the daemon's side of it).
    Observed {
        spec: meta
            .key_spec()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        usage: meta
            .key_usage()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        algorithms: meta
            .signing_algorithms()
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect(),
        signature_verifies: signer::crypto::secp256k1::verify_prehash(&pk, &digest, &low).is_ok(),
        verify_api_accepts: verify(message.clone())
            .await
            .map(|o| o.signature_valid())
            .unwrap_or(false),
        verify_api_rejects_other_message: rejected,
        unknown_key: unknown,
        wrong_algorithm: wrong,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_behaves_as_moto_does_for_secp256k1_raw() {
    let m = moto();
    let s = sim(None, false);
    let from_moto = scenario(&m.url).await;
    let from_sim = scenario(&s.url).await;
    assert_eq!(from_sim, from_moto);
    // And the scenario itself says something: a signature that verifies,
    // typed refusals.
    assert!(from_moto.signature_verifies && from_moto.verify_api_accepts);
    assert!(from_moto.verify_api_rejects_other_message);
    assert_eq!(from_moto.unknown_key.as_deref(), Some("NotFoundException"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_sealed_bls_key_signs_and_is_useless_without_decrypt() {
    let kms = sim(None, false);
    let c = client(&kms.url).await;
    let seal_key = create_key(&c, KeySpec::SymmetricDefault, &[]).await;
    c.create_alias()
        .alias_name("alias/bls-seal")
        .target_key_id(&seal_key)
        .send()
        .await
        .unwrap();
    let mut setup = Setup::new();
    let sealed = setup.path("keys/bls2.kms.json");
    let out = std::process::Command::new(tests::daemon::signer_bin())
        .args([
            "keys",
            "seal",
            "--backend",
            "kms",
            "--kms-key",
            "alias/bls-seal",
            "--kms-endpoint",
            &kms.url,
        ])
        .arg("--keystore")
        .arg(setup.path("keys/bls2.json"))
        .arg("--password-file")
        .arg(setup.path("keys/bls2.pass"))
        .arg("--out")
        .arg(&sealed)
        .envs(aws_env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = std::fs::read_to_string(&sealed).unwrap();
    assert!(!file.contains(BLS_SECRET_2));

    setup.drop_file_key("bls2");
    configure_kms(&setup, &kms.url, "");
    add_key(
        &setup,
        "type = \"kms_sealed\"\npath = \"keys/bls2.kms.json\"",
    );
    setup.env = aws_env();
    setup.check_bls2_signs().await;

    let start_fails = |setup: &Setup| {
        let out = std::process::Command::new(tests::daemon::signer_bin())
            .args(["serve", "--config"])
            .arg(setup.path("signer.toml"))
            .envs(aws_env())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The blob moved into another key's file: KMS refuses the context.
    let mut moved: serde_json::Value = serde_json::from_str(&file).unwrap();
    moved["public_key"] = format!("0x{}", hex::encode(&setup.bls)).into();
    std::fs::write(&sealed, moved.to_string()).unwrap();
    let err = start_fails(&setup);
    assert!(err.contains("InvalidCiphertextException"), "{err}");
    // The KMS key disabled: loading fails, saying so.
    std::fs::write(&sealed, &file).unwrap();
    c.disable_key().key_id(&seal_key).send().await.unwrap();
    let err = start_fails(&setup);
    assert!(
        err.contains("bls2.kms.json") && err.contains("DisabledException"),
        "{err}"
    );
}

/// A daemon whose consensus key is an Ed25519 key in the simulator, with a
/// fault file.
struct Faulty {
    v: Voting,
    _kms: tests::kms::Endpoint,
    faults: std::path::PathBuf,
}

impl std::ops::Deref for Faulty {
    type Target = Voting;
    fn deref(&self) -> &Voting {
        &self.v
    }
}

impl std::ops::DerefMut for Faulty {
    fn deref_mut(&mut self) -> &mut Voting {
        &mut self.v
    }
}

const TIMEOUT_MS: u64 = 2000;

async fn faulty() -> Faulty {
    let mut setup = Setup::new();
    let faults = fault_file(setup.dir.path());
    let kms = sim(Some(&faults), false);
    let c = client(&kms.url).await;
    let arn = create_key(&c, KeySpec::EccNistEdwards25519, &[]).await;
    let ed = public_key(&c, &arn).await;
    configure_kms(
        &setup,
        &kms.url,
        &format!(
            "operation_timeout_ms = {TIMEOUT_MS}\nattempt_timeout_ms = 700\nbreaker_failures = 3\nbreaker_open_ms = 500"
        ),
    );
    add_key(&setup, &format!("type = \"kms\"\nkey_id = \"{arn}\""));
    setup.write_policy(&setup.policy_with(&format!(
        "\n[key_groups.kms]\nkeys = [\"0x{}\"]\n\n[[grant]]\nclients = [\"node\"]\noperations = [\"cometbft.consensus\"]\nkey_groups = [\"kms\"]\nnetworks = [\"test-chain\"]\n",
        hex::encode(&ed)
    )));
    setup.env = aws_env();
    Faulty {
        v: Voting::start(setup, ed, Duration::from_millis(TIMEOUT_MS)).await,
        _kms: kms,
        faults,
    }
}

impl Faulty {
    fn ops(&self, outcome: &str) -> f64 {
        self.v.ops("kms", None, outcome)
    }

    fn finish(self) {
        self.v.finish();
    }
}

fn kms_fault(op: &str) -> hsm_sim::kms::KmsFault {
    hsm_sim::kms::KmsFault {
        op: op.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_throttling_is_retried_within_the_deadline() {
    let mut f = faulty().await;
    let mut t = kms_fault("Sign");
    t.error = Some("ThrottlingException".into());
    t.probability = Some(0.3);
    set_faults(&f.faults, vec![t]);
    let answers = f.heights(40).await;
    let signed = answers.iter().filter(|a| **a == Answer::Signed).count();
    // p = 0.3 per attempt, several attempts per request within 2 s.
    assert!(signed >= 76, "{signed} of 80 signed: {answers:?}");
    assert!(f.ops("throttled") >= 5.0, "{}", f.ops("throttled"));
    assert!(f.ops("retried") >= 5.0);
    // Throttling means KMS is there: the breaker stays closed, ready.
    assert_eq!(f.daemon.http("GET", "/readyz").0, 200);
    set_faults(&f.faults, Vec::new());
    assert_eq!(f.heights(3).await, vec![Answer::Signed; 6]);
    f.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_ms_of_latency_is_slow_but_signs() {
    let mut f = faulty().await;
    let mut l = kms_fault("Sign");
    l.latency_ms = 500;
    set_faults(&f.faults, vec![l]);
    assert_eq!(f.heights(3).await, vec![Answer::Signed; 6]);
    assert!(f.load.slowest >= Duration::from_millis(500));
    let (_, body) = f.daemon.http("GET", "/metrics");
    let sum: f64 = body
        .lines()
        .filter(|l| l.starts_with("signer_backend_seconds_sum{backend=\"kms\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(sum >= 6.0 * 0.5, "{sum}");
    assert_eq!(f.daemon.http("GET", "/readyz").0, 200);
    set_faults(&f.faults, Vec::new());
    assert_eq!(f.heights(2).await, vec![Answer::Signed; 4]);
    f.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_down_for_five_seconds_fails_fast_then_recovers_by_itself() {
    let mut f = faulty().await;
    assert_eq!(f.heights(2).await, vec![Answer::Signed; 4]);
    let mut down = kms_fault("*");
    down.drop = true;
    set_faults(&f.faults, vec![down]);
    let outage = Instant::now();
    let mut answers = Vec::new();
    let mut saw_open = false;
    while outage.elapsed() < Duration::from_secs(5) {
        answers.extend(f.heights(1).await);
        let (status, body) = f.daemon.http("GET", "/readyz");
        if status == 503 {
            assert!(body.contains("circuit breaker open"), "{body}");
            saw_open = true;
        }
    }
    assert!(
        answers
            .iter()
            .all(|a| *a == Answer::Refused(pb::Reason::BackendUnavailable)),
        "{answers:?}"
    );
    assert!(saw_open, "readiness never showed the outage");
    assert_eq!(
        f.daemon
            .metric("signer_backend_up{backend=\"kms\",name=\"endpoint\"}"),
        0.0
    );
    assert!(
        f.ops("breaker_open") >= 1.0,
        "the breaker never failed a request fast"
    );
    set_faults(&f.faults, Vec::new());
    f.until_signed(Duration::from_secs(10)).await;
    assert_eq!(f.daemon.http("GET", "/readyz").0, 200);
    assert_eq!(
        f.daemon
            .metric("signer_backend_up{backend=\"kms\",name=\"endpoint\"}"),
        1.0
    );
    f.finish();
}
