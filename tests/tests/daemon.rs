//! The daemon end to end: a real `signer serve` process, real mutual TLS,
//! the `signer.v1` API. What each test shows is in its name.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::result_large_err
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use proto::v1 as pb;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use slashing_db::SlashingDb;
use tests::daemon::{BLS_SECRET, Setup, fork_info, race_conflicting_attestations};

/// An attestation request with `source → target`; `block` varies the root.
fn attestation(key: &[u8], source: u64, target: u64, block: u8) -> pb::SignRequest {
    tests::daemon::attestation(key, source, target, block)
}

fn core_signature(source: u64, target: u64, block: u8) -> Vec<u8> {
    tests::daemon::core_attestation_signature(BLS_SECRET, source, target, block)
}

/// Signature bytes, or the refusal's reason and evidence.
fn outcome(r: pb::SignResponse) -> Result<Vec<u8>, (pb::Reason, Option<pb::Evidence>)> {
    match r.outcome.expect("an outcome") {
        pb::sign_response::Outcome::Signature(s) => Ok(s.signature),
        pb::sign_response::Outcome::Refusal(r) => Err((r.reason(), r.evidence)),
    }
}

type Client = pb::signer_client::SignerClient<tonic::transport::Channel>;

/// Sends one `Sign` (the call itself must succeed) and returns its outcome.
async fn ask(
    c: &mut Client,
    r: pb::SignRequest,
) -> Result<Vec<u8>, (pb::Reason, Option<pb::Evidence>)> {
    outcome(c.sign(r).await.unwrap().into_inner())
}

fn reason(r: pb::SignResponse) -> pb::Reason {
    outcome(r).expect_err("a refusal").0
}

fn attestations_in(db: &std::path::Path) -> usize {
    let db = SlashingDb::open(db, slashing_db::Config::default()).unwrap();
    let x = db.export_interchange().unwrap();
    x.data.iter().map(|v| v.signed_attestations.len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_client_signs_and_every_refusal_is_typed_and_records_nothing() {
    let setup = Setup::new();
    let daemon = setup.start();
    let mut vc = daemon.client(setup.client_tls("vc")).await;

    // Signs, exactly as the signing core does.
    let sig = ask(&mut vc, attestation(&setup.bls, 0, 1, 1)).await;
    assert_eq!(sig.unwrap(), core_signature(0, 1, 1));

    // The same message again: not slashable, signed again.
    let again = ask(&mut vc, attestation(&setup.bls, 0, 1, 1)).await;
    assert_eq!(again.unwrap(), core_signature(0, 1, 1));

    // A different attestation for the same target: SLASHABLE, with the stored one as evidence.
    let (why, evidence) = ask(&mut vc, attestation(&setup.bls, 0, 1, 2))
        .await
        .unwrap_err();
    assert_eq!(why, pb::Reason::Slashable);
    let evidence = evidence.expect("evidence");
    assert_eq!(evidence.kind, "double_vote");
    assert_eq!(
        (evidence.source_epoch, evidence.target_epoch),
        (Some(0), Some(1))
    );
    assert_eq!(evidence.signing_root.len(), 32);

    // A key outside the client's policy (loaded, granted to nobody): NOT_ALLOWED.
    assert_eq!(
        ask(&mut vc, attestation(&setup.bls2, 0, 5, 1))
            .await
            .unwrap_err()
            .0,
        pb::Reason::NotAllowed
    );
    // An operation outside it (exits are not duties).
    let exit = pb::SignRequest {
        public_key: setup.bls.clone(),
        message: Some(pb::sign_request::Message::Eth2(pb::Eth2Request {
            fork_info: Some(fork_info()),
            signing_root: Vec::new(),
            message: Some(pb::eth2_request::Message::VoluntaryExit(
                pb::VoluntaryExit {
                    epoch: 1,
                    validator_index: 7,
                },
            )),
        })),
    };
    assert_eq!(
        ask(&mut vc, exit).await.unwrap_err().0,
        pb::Reason::NotAllowed
    );
    // Another client's operation (CometBFT votes belong to `node`).
    let vote = pb::SignRequest {
        public_key: setup.ed25519.clone(),
        message: Some(pb::sign_request::Message::CometbftVote(pb::CometBftVote {
            chain_id: tests::daemon::CHAIN.into(),
            version: pb::CometBftVersion::V038 as i32,
            r#type: pb::VoteType::Prevote as i32,
            height: 10,
            round: 0,
            block_id: None,
            timestamp: None,
            extension: Vec::new(),
        })),
    };
    assert_eq!(
        ask(&mut vc, vote).await.unwrap_err().0,
        pb::Reason::NotAllowed
    );

    // A supplied signing root that is not the message's: INVALID_REQUEST.
    let mut lying = attestation(&setup.bls, 0, 6, 1);
    if let Some(pb::sign_request::Message::Eth2(e)) = &mut lying.message {
        e.signing_root = vec![0x11; 32];
    }
    assert_eq!(
        ask(&mut vc, lying).await.unwrap_err().0,
        pb::Reason::InvalidRequest
    );
    // Malformed: a root of the wrong length; no message at all.
    let mut short = attestation(&setup.bls, 0, 7, 1);
    if let Some(pb::sign_request::Message::Eth2(pb::Eth2Request {
        message: Some(pb::eth2_request::Message::Attestation(a)),
        ..
    })) = &mut short.message
    {
        a.beacon_block_root = vec![1; 31];
    }
    assert_eq!(
        ask(&mut vc, short).await.unwrap_err().0,
        pb::Reason::InvalidRequest
    );
    let empty = pb::SignRequest {
        public_key: setup.bls.clone(),
        message: None,
    };
    assert_eq!(
        ask(&mut vc, empty).await.unwrap_err().0,
        pb::Reason::InvalidRequest
    );

    // ListKeys: only what the policy grants this client.
    let keys = vc
        .list_keys(pb::ListKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].public_key, setup.bls);
    assert_eq!(keys[0].scheme, "bls");
    assert!(keys[0].operations.contains(&"eth2.attestation".to_owned()));
    assert!(
        !keys[0]
            .operations
            .contains(&"eth2.voluntary_exit".to_owned())
    );

    // A certificate from the right CA whose identity no policy client has.
    let mut stranger = daemon.client(setup.client_tls("stranger")).await;
    let status = stranger
        .sign(attestation(&setup.bls, 0, 8, 1))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);

    // Offline tools refuse while the daemon holds the database.
    let out = std::process::Command::new(tests::daemon::signer_bin())
        .args(["slashing", "inspect", "--db"])
        .arg(setup.path("data/slashing.sqlite"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));

    let m = |s: &str| daemon.metric(s);
    assert_eq!(
        m(
            r#"signer_requests_total{frontend="grpc",operation="eth2.attestation",outcome="signed"}"#
        ),
        2.0
    );
    assert_eq!(
        m(
            r#"signer_requests_total{frontend="grpc",operation="eth2.attestation",outcome="slashable"}"#
        ),
        1.0
    );

    // Operations endpoints.
    assert_eq!(daemon.http("GET", "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(
        daemon.http("GET", "/readyz"),
        (
            200,
            "serving: ok\ndatabase: ok\nkeys: ok\naudit log: ok\n".to_owned()
        )
    );
    assert_eq!(daemon.http("GET", "/nope").0, 404);
    assert_eq!(daemon.http("DELETE", "/reload").0, 405);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(m(r#"signer_certificate_expiry_timestamp_seconds{certificate="server"}"#) > now);
    assert_eq!(m(r#"signer_keys_loaded{scheme="bls"}"#), 2.0);
    assert_eq!(m("signer_ready"), 1.0);

    // Graceful stop; the database holds exactly the one signed attestation.
    assert!(daemon.stop().success());
    assert_eq!(attestations_in(&setup.path("data/slashing.sqlite")), 1);
}

/// Handshakes with raw rustls (no HTTP/2) and returns the server's alert, if any.
fn handshake(setup: &Setup, addr: std::net::SocketAddr, cert: Option<&str>) -> Result<(), String> {
    let (pem, key) = cert.map_or_else(Default::default, |name| {
        (
            setup.path(&format!("tls/{name}.pem")),
            setup.path(&format!("tls/{name}.key")),
        )
    });
    let config = tests::daemon::client_config(
        &setup.path("tls/ca.pem"),
        cert.map(|_| (pem.as_path(), key.as_path())),
        b"h2",
    )
    .unwrap();
    let mut conn =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let io = |e: std::io::Error| {
        e.get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .map_or_else(|| e.to_string(), |t| format!("{t:?}"))
    };
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .map_err(io)?;
    let mut buf = [0u8; 9];
    tls.read_exact(&mut buf).map_err(io)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_are_refused_during_the_handshake_with_the_reason() {
    let setup = Setup::new();
    let daemon = setup.start();
    let addr = daemon.grpc;
    assert_eq!(
        handshake(&setup, addr, Some("vc")),
        Ok(()),
        "a valid client completes"
    );
    let cases = [
        (None, "CertificateRequired", "no_client_certificate"),
        (Some("foreign"), "UnknownCA", "unknown_ca"),
        (Some("expired"), "CertificateExpired", "expired"),
        (Some("revoked"), "CertificateRevoked", "revoked"),
    ];
    for (cert, alert, label) in cases {
        let got = handshake(&setup, addr, cert).expect_err("refused");
        assert_eq!(got, format!("AlertReceived({alert})"), "{cert:?}");
        let series = format!("signer_tls_handshake_failures_total{{reason=\"{label}\"}}");
        // The server counts the refusal once its side of the handshake ends.
        let mut n = 0.0;
        for _ in 0..50 {
            n = daemon.metric(&series);
            if n > 0.0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(n, 1.0, "{series}");
    }
    // The refusals did not disturb service.
    let mut vc = daemon.client(setup.client_tls("vc")).await;
    assert!(ask(&mut vc, attestation(&setup.bls, 0, 1, 1)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_conflicting_requests_on_separate_connections_yield_one_signature() {
    let setup = Setup::new();
    let daemon = setup.start();
    let tls = setup.client_tls("vc");
    let mut clients = Vec::new();
    for _ in 0..32 {
        clients.push(daemon.client(tls.clone()).await);
    }
    let rounds = race_conflicting_attestations(&clients, &setup.bls, 5).await;
    for (round, (signed, refused)) in rounds.iter().enumerate() {
        assert_eq!(*signed, 1, "round {round}");
        assert!(
            refused.iter().all(|r| *r == pb::Reason::Slashable),
            "round {round}: {refused:?}"
        );
    }
    assert!(daemon.stop().success());
    assert_eq!(attestations_in(&setup.path("data/slashing.sqlite")), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_answered_per_item_in_order_in_one_transaction() {
    let setup = Setup::new();
    let daemon = setup.start();
    let mut vc = daemon.client(setup.client_tls("vc")).await;
    let commits_before = daemon.metric("signer_db_commits");
    let mut requests: Vec<pb::SignRequest> = (1..=100)
        .map(|t| attestation(&setup.bls, t - 1, t, 1))
        .collect();
    requests.push(attestation(&setup.bls, 0, 50, 9)); // conflicts with target 50 above
    requests.push(attestation(&setup.bls2, 0, 1, 1)); // not granted
    let responses = vc
        .sign_batch(pb::SignBatchRequest { requests })
        .await
        .unwrap()
        .into_inner()
        .responses;
    assert_eq!(responses.len(), 102);
    for (i, r) in responses[..100].iter().enumerate() {
        let t = i as u64 + 1;
        assert_eq!(
            outcome(r.clone()).unwrap(),
            core_signature(t - 1, t, 1),
            "item {i}"
        );
    }
    assert_eq!(reason(responses[100].clone()), pb::Reason::Slashable);
    assert_eq!(reason(responses[101].clone()), pb::Reason::NotAllowed);
    // One transaction for the batch (the metrics scrape itself commits nothing).
    assert_eq!(daemon.metric("signer_db_commits") - commits_before, 1.0);
}

fn exit_request(key: &[u8]) -> pb::SignRequest {
    pb::SignRequest {
        public_key: key.to_vec(),
        message: Some(pb::sign_request::Message::Eth2(pb::Eth2Request {
            fork_info: Some(fork_info()),
            signing_root: Vec::new(),
            message: Some(pb::eth2_request::Message::VoluntaryExit(
                pb::VoluntaryExit {
                    epoch: 3,
                    validator_index: 7,
                },
            )),
        })),
    }
}

/// Waits until `series` reaches `want` (reloads run on the daemon's own time).
fn wait_metric(daemon: &tests::daemon::Daemon, series: &str, want: f64) {
    for _ in 0..200 {
        if daemon.metric(series) >= want {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("{series} never reached {want}; log:\n{}", daemon.log());
}

const EXIT_GRANT: &str = r#"
[[grant]]
clients = ["vc"]
operations = ["eth2.voluntary_exit"]
key_groups = ["validators"]
networks = ["test-eth"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reloads_on_sighup_without_dropping_connections_and_a_broken_one_is_not_used() {
    let setup = Setup::new();
    let daemon = setup.start();
    let mut vc = daemon.client(setup.client_tls("vc")).await;
    assert_eq!(
        ask(&mut vc, exit_request(&setup.bls)).await.unwrap_err().0,
        pb::Reason::NotAllowed
    );
    let connections = daemon.metric("signer_connections_total");

    setup.write_policy(&setup.policy_with(EXIT_GRANT));
    daemon.signal("HUP");
    wait_metric(
        &daemon,
        r#"signer_reloads_total{what="policy",result="ok"}"#,
        1.0,
    );
    assert!(ask(&mut vc, exit_request(&setup.bls)).await.is_ok());

    // A policy that does not parse, then one that parses but has errors: the
    // last good one stays in force.
    setup.write_policy("[clients.vc\nidentity = ");
    daemon.signal("HUP");
    wait_metric(
        &daemon,
        r#"signer_reloads_total{what="policy",result="failed"}"#,
        1.0,
    );
    // The SIGHUP reload goes on to the keys after the policy: wait for its
    // end, or the POST below races it and gets 409 (one reload at a time).
    wait_metric(
        &daemon,
        r#"signer_reloads_total{what="keys",result="ok"}"#,
        2.0,
    );
    assert!(ask(&mut vc, exit_request(&setup.bls)).await.is_ok());
    setup.write_policy(&setup.policy_with("[[grant]]\nclients = [\"nobody\"]\noperations = [\"eth2.block\"]\nkey_groups = [\"validators\"]\nnetworks = [\"test-eth\"]\n"));
    let (status, body) = daemon.http("POST", "/reload");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("policy: kept the previous one"), "{body}");
    assert!(ask(&mut vc, exit_request(&setup.bls)).await.is_ok());
    assert!(daemon.log().contains("policy reload failed"));

    // All of it over the connection opened before the first reload.
    assert_eq!(daemon.metric("signer_connections_total"), connections);
}

/// The certificate the server presents to a new connection.
fn served_certificate(setup: &Setup, addr: std::net::SocketAddr) -> Vec<u8> {
    let config = setup.client_tls("vc");
    let mut conn =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    conn.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_server_certificate_is_served_after_reload_and_bad_files_keep_the_old_one() {
    let setup = Setup::new();
    let daemon = setup.start();
    let pem_der = |pem: &str| {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    };
    let first = std::fs::read_to_string(setup.path("tls/server.pem")).unwrap();
    assert_eq!(served_certificate(&setup, daemon.grpc), pem_der(&first));
    let mut vc = daemon.client(setup.client_tls("vc")).await;

    let second = setup.new_server_cert();
    // Written, not yet reloaded: still the first.
    assert_eq!(served_certificate(&setup, daemon.grpc), pem_der(&first));
    let (status, body) = daemon.http("POST", "/reload");
    assert_eq!(status, 200, "{body}");
    assert_eq!(served_certificate(&setup, daemon.grpc), pem_der(&second));

    // A key that does not match: refused, the second stays.
    let (_, stray_key) = setup
        .ca
        .leaf(vec![tests::daemon::uri("spiffe://x")], 99, false);
    setup.write("tls/server.key", &stray_key);
    daemon.signal("HUP");
    wait_metric(
        &daemon,
        r#"signer_reloads_total{what="tls",result="failed"}"#,
        1.0,
    );
    assert_eq!(served_certificate(&setup, daemon.grpc), pem_der(&second));
    // The connection opened before the reloads still works.
    assert!(ask(&mut vc, attestation(&setup.bls, 0, 1, 1)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_every_decision_verifies_and_shows_tampering() {
    let setup = Setup::new();
    let daemon = setup.start();
    let mut vc = daemon.client(setup.client_tls("vc")).await;
    for target in 1..=5 {
        ask(&mut vc, attestation(&setup.bls, 0, target, 1))
            .await
            .unwrap();
    }
    assert_eq!(
        ask(&mut vc, attestation(&setup.bls, 0, 5, 2))
            .await
            .unwrap_err()
            .0,
        pb::Reason::Slashable
    );
    assert_eq!(
        ask(&mut vc, exit_request(&setup.bls)).await.unwrap_err().0,
        pb::Reason::NotAllowed
    );
    assert!(daemon.stop().success());

    let log = setup.path("data/audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[4]["outcome"], "signed");
    assert_eq!(lines[4]["position"], 5);
    assert_eq!(lines[5]["outcome"], "refused:double_vote");
    assert_eq!(lines[6]["request"], "eth2.voluntary_exit");
    assert_eq!(lines[6]["outcome"], "refused:not_allowed");
    assert_eq!(lines[6]["client"], "vc");

    let verify = || {
        std::process::Command::new(tests::daemon::signer_bin())
            .args(["audit", "verify"])
            .arg(&log)
            .output()
            .unwrap()
    };
    let ok = verify();
    assert_eq!(ok.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("7 records, chain intact"));
    std::fs::write(&log, text.replacen("refused:double_vote", "signed", 1)).unwrap();
    let bad = verify();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("line 7"),
        "{:?}",
        bad
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_every_signature_a_client_received_stays_protected() {
    let setup = Setup::new();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    println!("seed {seed}");
    let mut received: Vec<u64> = Vec::new();
    for kill in 0..4u64 {
        let daemon = setup.start();
        let tls = setup.client_tls("vc");
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let mut c = daemon.client(tls.clone()).await;
            let key = setup.bls.clone();
            let got = got.clone();
            tasks.push(tokio::spawn(async move {
                // Disjoint target ranges per kill round and task; source = target - 1.
                for n in 1.. {
                    let target = 1_000_000 * (kill + 1) + 10_000 * t + n;
                    match c.sign(attestation(&key, target - 1, target, 1)).await {
                        Ok(r) => {
                            if outcome(r.into_inner()).is_ok() {
                                got.lock().unwrap().push(target);
                            }
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
        let wait = 150 + (seed.wrapping_mul(kill + 7) % 400);
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        daemon.kill();
        for t in tasks {
            t.await.unwrap();
        }
        let got = got.lock().unwrap().clone();
        assert!(
            !got.is_empty(),
            "round {kill}: nothing was signed before the kill"
        );
        received.extend(got);
    }
    // Restart: every received signature is in the database.
    let daemon = setup.start();
    let mut vc = daemon.client(setup.client_tls("vc")).await;
    let requests: Vec<pb::SignRequest> = received
        .iter()
        .map(|&t| attestation(&setup.bls, t - 1, t, 2))
        .collect();
    for chunk in requests.chunks(1000) {
        let responses = vc
            .sign_batch(pb::SignBatchRequest {
                requests: chunk.to_vec(),
            })
            .await
            .unwrap()
            .into_inner()
            .responses;
        for r in responses {
            let (why, evidence) = outcome(r).unwrap_err();
            assert_eq!(why, pb::Reason::Slashable);
            assert_eq!(evidence.unwrap().kind, "double_vote");
        }
    }
    println!(
        "{} received signatures checked after 4 kills",
        received.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_what_is_in_flight_exits_cleanly_and_logs_json_without_secrets() {
    let setup = Setup::new();
    let config = std::fs::read_to_string(setup.path("signer.toml")).unwrap();
    setup.write(
        "signer.toml",
        &config.replace("[logging]\n", "[logging]\nformat = \"json\"\n"),
    );
    let daemon = setup.start();
    let tls = setup.client_tls("vc");
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let mut c = daemon.client(tls.clone()).await;
        let key = setup.bls.clone();
        let got = got.clone();
        tasks.push(tokio::spawn(async move {
            for n in 1.. {
                let target = 10_000 * (t + 1) + n;
                match c.sign(attestation(&key, target - 1, target, 1)).await {
                    Ok(r) => match outcome(r.into_inner()) {
                        Ok(_) => got.lock().unwrap().push(target),
                        // The tasks' target ranges interleave in time: a
                        // source or target below the lowest recorded is refused
                        // (the low-watermark rules). Not a shutdown effect.
                        Err((pb::Reason::Slashable, Some(e)))
                            if e.kind.ends_with("_below_low_watermark") => {}
                        Err((why, _)) => {
                            // The only other refusal a shutdown may cause.
                            assert_eq!(why, pb::Reason::Overloaded);
                            return;
                        }
                    },
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log_path = setup.path("daemon.log");
    let status = tokio::task::spawn_blocking(move || daemon.stop())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");
    for t in tasks {
        t.await.unwrap();
    }
    let got = got.lock().unwrap().clone();
    assert!(!got.is_empty());

    // Every signature a client received is in the cleanly closed database.
    let db = SlashingDb::open(
        &setup.path("data/slashing.sqlite"),
        slashing_db::Config::default(),
    )
    .unwrap();
    let x = db.export_interchange().unwrap();
    let stored: std::collections::HashSet<u64> = x
        .data
        .iter()
        .flat_map(|v| v.signed_attestations.iter().map(|a| a.target_epoch))
        .collect();
    for t in &got {
        assert!(
            stored.contains(t),
            "target {t} was answered but is not recorded"
        );
    }

    // JSON logs: one object per line, the shutdown in them, no key material.
    let log = std::fs::read_to_string(log_path).unwrap();
    let mut lines = 0;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some(), "{line}");
        lines += 1;
    }
    assert!(
        log.contains("SIGTERM: shutting down") && log.contains("\"stopped\""),
        "{log}"
    );
    assert!(!log.contains(BLS_SECRET) && !log.contains(tests::daemon::ED25519_SECRET));
    assert!(lines >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_limit_is_answered_overloaded_and_others_are_not() {
    let setup = Setup::new();
    setup.write_policy(&setup.policy_with(
        r#"
[clients.stranger]
identity = "spiffe://signer.test/stranger"
max_requests_per_second = 5

[[grant]]
clients = ["stranger"]
operations = ["eth2.randao_reveal"]
key_groups = ["validators"]
networks = ["test-eth"]
"#,
    ));
    let daemon = setup.start();
    let randao = |epoch| pb::SignRequest {
        public_key: setup.bls.clone(),
        message: Some(pb::sign_request::Message::Eth2(pb::Eth2Request {
            fork_info: Some(fork_info()),
            signing_root: Vec::new(),
            message: Some(pb::eth2_request::Message::RandaoReveal(pb::RandaoReveal {
                epoch,
            })),
        })),
    };
    let requests: Vec<pb::SignRequest> = (0..20).map(randao).collect();
    let mut limited = daemon.client(setup.client_tls("stranger")).await;
    let responses = limited
        .sign_batch(pb::SignBatchRequest {
            requests: requests.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .responses;
    let mut signed = 0;
    for r in responses {
        match r.outcome.unwrap() {
            pb::sign_response::Outcome::Signature(_) => signed += 1,
            pb::sign_response::Outcome::Refusal(r) => {
                assert_eq!(r.reason(), pb::Reason::Overloaded);
                assert!(
                    r.message.contains("rate limit of 5 requests/s"),
                    "{}",
                    r.message
                );
            }
        }
    }
    // A burst of one second's worth (a sixth token may refill while the batch is read).
    assert!((5..=6).contains(&signed), "{signed} signed");
    // The unlimited client is not affected.
    let mut vc = daemon.client(setup.client_tls("vc")).await;
    let responses = vc
        .sign_batch(pb::SignBatchRequest { requests })
        .await
        .unwrap()
        .into_inner()
        .responses;
    assert!(responses.into_iter().all(|r| outcome(r).is_ok()));
    assert!(
        daemon.metric(r#"signer_requests_total{frontend="grpc",operation="eth2.request",outcome="rate_limited"}"#)
            >= 14.0
    );
}

/// Bytes that are not a `SignRequest` are the caller's error:
/// `INVALID_ARGUMENT` (tonic-prost's default is `INTERNAL`, which clients
/// and dashboards read as the signer failing), and the daemon goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protobuf_is_invalid_argument() {
    let setup = Setup::new();
    let daemon = setup.start();
    let channel = signer::client::channel(daemon.grpc, "localhost", setup.client_tls("vc"))
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    // Field 1 (public_key) as a length-delimited value that claims 100 bytes
    // and carries 2; then an invalid wire type.
    for (bytes, why) in [
        (vec![0x0a, 100, 1, 2], "buffer underflow"),
        (vec![0x0f], "invalid wire type"),
    ] {
        grpc.ready().await.unwrap();
        let status = grpc
            .unary(
                tonic::Request::new(bytes.clone()),
                tonic::codegen::http::uri::PathAndQuery::from_static("/signer.v1.Signer/Sign"),
                RawCodec,
            )
            .await
            .expect_err("refused");
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{bytes:?}: {status:?}"
        );
        assert!(
            status
                .message()
                .starts_with("malformed protobuf message: failed to decode Protobuf message"),
            "{status:?}"
        );
        assert!(status.message().contains(why), "{status:?}");
    }
    let mut vc = daemon.client(setup.client_tls("vc")).await;
    assert!(ask(&mut vc, attestation(&setup.bls, 0, 1, 1)).await.is_ok());
}

/// Sends raw bytes as the request; reads the answer as a `SignResponse`.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = pb::SignResponse;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<pb::SignResponse>;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        Default::default()
    }
}

#[derive(Debug, Clone)]
struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}
