//! High availability end to end: several `signer serve` processes with the
//! same keys on one real PostgreSQL database (started by the harness), driven
//! over real mutual TLS.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proto::v1 as pb;
use tests::daemon::{Daemon, Setup, attestation, race_conflicting_attestations};
use tests::ha::{instance_config, local};
use tests::pg::PgCluster;

type Client = pb::signer_client::SignerClient<tonic::transport::Channel>;

async fn ask(c: &mut Client, r: pb::SignRequest) -> Result<Vec<u8>, pb::Reason> {
    match c.sign(r).await.unwrap().into_inner().outcome.unwrap() {
        pb::sign_response::Outcome::Signature(s) => Ok(s.signature),
        pb::sign_response::Outcome::Refusal(r) => Err(r.reason()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_database_sign_one_of_32_conflicting_requests_per_round() {
    let pg = PgCluster::start("");
    let schema = pg.new_schema();
    let setup = Setup::new();
    // All three start at once on the empty database (one creates the schema).
    let configs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| instance_config(&setup, &local(pg.port), &schema, n, 3000, ""))
        .collect();
    let daemons: Vec<Daemon> = std::thread::scope(|s| {
        let handles: Vec<_> = configs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let log = setup.path(&format!("daemon-{i}.log"));
                s.spawn(move || Daemon::start(c, &log))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let tls = setup.client_tls("vc");
    let mut clients = Vec::new();
    for i in 0..32 {
        clients.push(daemons[i % 3].client(tls.clone()).await);
    }
    let rounds = race_conflicting_attestations(&clients, &setup.bls, 5).await;
    for (round, (signed, refused)) in rounds.iter().enumerate() {
        assert_eq!(
            *signed, 1,
            "round {round}: exactly one of 32 requests over 3 instances"
        );
        assert!(
            refused.iter().all(|r| *r == pb::Reason::Slashable),
            "round {round}: {refused:?}"
        );
    }
    for d in daemons {
        assert!(d.stop().success());
    }
    let rows = pg.psql_in(
        "slashing",
        &format!("SELECT count(*) FROM {schema}.signed_attestations"),
    );
    assert_eq!(rows, "5", "one attestation per round recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_is_down_requests_are_refused_unavailable_and_service_resumes() {
    let mut pg = PgCluster::start("");
    let schema = pg.new_schema();
    let setup = Setup::new();
    setup.enable_http("");
    let config = instance_config(&setup, &local(pg.port), &schema, "a", 3000, "");
    let daemon = Daemon::start(&config, &setup.path("daemon.log"));
    let mut vc = daemon.client(setup.client_tls("vc")).await;
    ask(&mut vc, attestation(&setup.bls, 0, 1, 1))
        .await
        .unwrap();
    assert_eq!(daemon.http("GET", "/readyz").0, 200);

    pg.kill();
    for t in 2..5 {
        let got = ask(&mut vc, attestation(&setup.bls, t - 1, t, 1)).await;
        assert_eq!(got, Err(pb::Reason::BackendUnavailable), "target {t}");
    }
    // The caller learns that nothing was signed, not where the database is:
    // the detail is in the daemon's log only.
    let secret_bits = [
        format!("{}", pg.port),
        "127.0.0.1".to_owned(),
        "postgres".to_owned(),
        schema.clone(),
    ];
    let answer = vc
        .sign(attestation(&setup.bls, 5, 6, 1))
        .await
        .unwrap()
        .into_inner();
    let Some(pb::sign_response::Outcome::Refusal(r)) = answer.outcome else {
        panic!("signed while the database is down");
    };
    let (status, body) = tests::daemon::https(
        &setup,
        daemon.http_api.unwrap(),
        Some("vc"),
        "POST",
        &format!("/api/v1/eth2/sign/0x{}", hex::encode(&setup.bls)),
        &[("content-type", "application/json")],
        &serde_json::json!({
            "type": "ATTESTATION",
            "fork_info": {
                "fork": {"previous_version": "0x00000001", "current_version": "0x00000001", "epoch": "0"},
                "genesis_validators_root": tests::daemon::GVR,
            },
            "attestation": {
                "slot": "56", "index": "0",
                "beacon_block_root": format!("0x{}", "01".repeat(32)),
                "source": {"epoch": "6", "root": format!("0x{}", "cc".repeat(32))},
                "target": {"epoch": "7", "root": format!("0x{}", "cc".repeat(32))},
            },
        })
        .to_string(),
    )
    .unwrap();
    assert_eq!(status, 503, "{body}");
    for text in [&r.message, &body] {
        assert!(text.contains("nothing was signed"), "{text}");
        for bit in &secret_bits {
            assert!(
                !text.contains(bit.as_str()),
                "{bit:?} told to the client: {text}"
            );
        }
    }
    let log = daemon.log();
    assert!(
        log.contains("request refused: backend unavailable"),
        "{log}"
    );
    let (status, body) = daemon.http("GET", "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("slashing database unavailable"), "{body}");
    let log = daemon.log();
    assert!(!log.contains("panicked"), "{log}");

    pg.launch();
    // Recorded before: still refused as slashable; new work signs again,
    // on the same process (no restart).
    assert_eq!(
        ask(&mut vc, attestation(&setup.bls, 0, 1, 2)).await,
        Err(pb::Reason::Slashable)
    );
    ask(&mut vc, attestation(&setup.bls, 1, 2, 1))
        .await
        .unwrap();
    assert!(daemon.stop().success());
}

fn signer(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = std::process::Command::new(tests::daemon::signer_bin())
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_sqlite_history_is_refused_by_instances_on_postgres() {
    let pg = PgCluster::start("");
    let schema = pg.new_schema();
    let setup = Setup::new();
    // History on SQLite, as a single signer made it.
    let daemon = setup.start();
    let mut vc = daemon.client(setup.client_tls("vc")).await;
    for t in 1..=20 {
        ask(&mut vc, attestation(&setup.bls, t - 1, t, 1))
            .await
            .unwrap();
    }
    assert!(daemon.stop().success());
    // A Gloas payload attestation recorded there too: not in interchange
    // files, so migrate copies it on its own.
    let sqlite = setup.path("data/slashing.sqlite");
    {
        let db = slashing_db::SlashingDb::open(&sqlite, slashing_db::Config::default()).unwrap();
        let gvr: [u8; 32] = hex::decode(&tests::daemon::GVR[2..])
            .unwrap()
            .try_into()
            .unwrap();
        let proposal = slashing_db::Proposal::Message(slashing_db::MessageProposal {
            pubkey: slashing_db::BlsPublicKey::from_slice(&setup.bls).unwrap(),
            genesis_root: slashing_db::GenesisRoot(gvr),
            lane: slashing_db::Lane::PayloadAttestation,
            slot: slashing_db::Slot(777),
            signing_root: slashing_db::SigningRoot([0x77; 32]),
        });
        assert_eq!(
            db.check_and_record(proposal).unwrap(),
            Ok(slashing_db::Safe::Valid)
        );
        // And a key retired on the single signer: it must stay retired.
        let retired = slashing_db::KeyState {
            state: slashing_db::Lifecycle::Retired,
            reason: "moved to another operator".into(),
            by: "ops".into(),
            at: "2026-12-06T00:00:00Z".into(),
        };
        assert_eq!(db.set_key_state(&setup.bls2, &retired).unwrap(), Ok(None));
    }

    let config = instance_config(&setup, &local(pg.port), &schema, "a", 3000, "");
    let (ok, out) = signer(&[
        "slashing".as_ref(),
        "migrate".as_ref(),
        "--from".as_ref(),
        sqlite.as_os_str(),
        "--to-config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("migrated and verified: 0 blocks, 20 attestations"),
        "{out}"
    );
    assert!(out.contains(", 1 Gloas messages, 1 key states;"), "{out}");
    let state = pg.psql_in(
        "slashing",
        &format!(
            "SELECT convert_from(value, 'UTF8') FROM {schema}.meta WHERE key = 'key_state/{}'",
            hex::encode(&setup.bls2)
        ),
    );
    assert!(
        state.contains("\"state\":\"retired\""),
        "the retired key is retired in PostgreSQL too: {state:?}"
    );
    assert_eq!(
        pg.psql_in(
            "slashing",
            &format!("SELECT slot, encode(signing_root, 'hex') FROM {schema}.signed_messages")
        ),
        format!("777|{}", "77".repeat(32))
    );
    let (ok, out) = signer(&[
        "slashing".as_ref(),
        "inspect".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("durability:   local"), "{out}");
    assert!(out.contains("20 attestations"), "{out}");

    // Everything SQLite refused, the instance on PostgreSQL refuses.
    let daemon = Daemon::start(&config, &setup.path("daemon-pg.log"));
    let mut vc = daemon.client(setup.client_tls("vc")).await;
    for t in 1..=20 {
        assert_eq!(
            ask(&mut vc, attestation(&setup.bls, t - 1, t, 2)).await,
            Err(pb::Reason::Slashable),
            "double vote at target {t}"
        );
    }
    assert_eq!(
        ask(&mut vc, attestation(&setup.bls, 0, 25, 1)).await,
        Err(pb::Reason::Slashable),
        "surrounding vote"
    );
    ask(&mut vc, attestation(&setup.bls, 20, 21, 1))
        .await
        .unwrap();
    assert!(daemon.stop().success());

    // A history of another network is refused before anything is written.
    let foreign = setup.path("data/foreign.json");
    std::fs::write(
        &foreign,
        format!(
            r#"{{"metadata": {{"interchange_format_version": "5", "genesis_validators_root": "0x{}"}}, "data": []}}"#,
            "99".repeat(32)
        ),
    )
    .unwrap();
    let other_sqlite = setup.path("data/other.sqlite");
    let (ok, out) = signer(&[
        "slashing".as_ref(),
        "import".as_ref(),
        "--db".as_ref(),
        other_sqlite.as_os_str(),
        foreign.as_os_str(),
    ]);
    assert!(ok, "{out}");
    let (ok, out) = signer(&[
        "slashing".as_ref(),
        "migrate".as_ref(),
        "--from".as_ref(),
        other_sqlite.as_os_str(),
        "--to-config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("genesis validators root"), "{out}");
    let rows = pg.psql_in(
        "slashing",
        &format!("SELECT count(*) FROM {schema}.signed_attestations"),
    );
    assert_eq!(rows, "21", "nothing written by the refused migration");
}

/// Round `r` of the cross-frontend race: what each request was and how it
/// came back.
#[derive(Debug, Default)]
struct RaceRound {
    attestations_signed: usize,
    blocks_signed: usize,
    votes_signed: usize,
    refusals: Vec<String>,
}

fn block_request(key: &[u8], slot: u64, body: u8) -> pb::SignRequest {
    pb::SignRequest {
        public_key: key.to_vec(),
        message: Some(pb::sign_request::Message::Eth2(pb::Eth2Request {
            fork_info: Some(tests::daemon::fork_info()),
            signing_root: Vec::new(),
            message: Some(pb::eth2_request::Message::Block(pb::BeaconBlockHeader {
                slot,
                proposer_index: 3,
                parent_root: vec![0x11; 32],
                state_root: vec![0x22; 32],
                body_root: vec![body; 32],
            })),
        })),
    }
}

/// Three instances, every frontend at once: per round, conflicting
/// attestations over gRPC and the Web3Signer HTTP API, conflicting blocks
/// over both, and conflicting CometBFT prevotes over gRPC and over the
/// privval connections every instance holds to the same node. Exactly one of
/// each kind is signed per round; the others are refused as slashable
/// (HTTP 412, privval double-sign error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frontend_of_three_instances_races_and_one_of_each_kind_is_signed_per_round() {
    use signer::api::privval::connector::code;
    use signer::api::privval::{Request, Response, WireVote};
    use signer::cometbft::ProtocolVersion;
    use tests::privval_node::TestNode;

    const CHAIN: &str = "race-chain";
    let pg = PgCluster::start("");
    let schema = pg.new_schema();
    let setup = Setup::new();
    setup.enable_http("");
    let node = TestNode::tcp([7; 32], ProtocolVersion::V0_38).unwrap();
    setup.enable_cometbft(CHAIN, "v0.38", &[(node.address(), node.identity())]);
    // The gRPC client `node` signs on the same chain as the privval node.
    let policy = std::fs::read_to_string(setup.path("policy.toml")).unwrap();
    setup.write_policy(&format!(
        "{policy}\n[[grant]]\nclients = [\"node\"]\noperations = [\"cometbft.consensus\"]\n\
         key_groups = [\"consensus\"]\nnetworks = [\"privval-chain\"]\n"
    ));
    let instances = tests::ha::Instances::start(setup, &local(pg.port), &schema, 3, 3000, "").await;
    let setup = &instances.setup;
    let mut conns: Vec<_> = (0..3)
        .map(|_| node.accept(std::time::Duration::from_secs(30)).unwrap())
        .collect();
    let (vc_tls, node_tls) = (setup.client_tls("vc"), setup.client_tls("node"));
    let mut vc = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..3 {
        vc.push(instances.daemon(i).client(vc_tls.clone()).await);
        nodes.push(instances.daemon(i).client(node_tls.clone()).await);
    }
    let http: Vec<_> = (0..3)
        .map(|i| instances.daemon(i).http_api.unwrap())
        .collect();
    let bls = setup.bls.clone();
    let path = format!("/api/v1/eth2/sign/0x{}", hex::encode(&bls));

    for round in 0..5u64 {
        let height = 10 + round as i64;
        let mut grpc = Vec::new();
        for i in 0..3 {
            let (mut c, mut c2, mut n) = (vc[i].clone(), vc[i].clone(), nodes[i].clone());
            let (a, b, v) = (
                attestation(&bls, round, 10 + round, i as u8),
                block_request(&bls, 100 + round, i as u8),
                tests::ha::vote_request(&setup.ed25519, CHAIN, height, 1, i as u8),
            );
            grpc.push(tokio::spawn(async move {
                let (a, b, v) = tokio::join!(c.sign(a), c2.sign(b), n.sign(v));
                [("attestation", a), ("block", b), ("vote", v)]
                    .map(|(k, r)| (k, r.unwrap().into_inner().outcome.unwrap()))
            }));
        }
        let mut blocking = Vec::new();
        for (i, addr) in http.iter().enumerate() {
            for (kind, body) in [
                (
                    "attestation",
                    serde_json::json!({
                        "type": "ATTESTATION",
                        "fork_info": {
                            "fork": {"previous_version": "0x00000001", "current_version": "0x00000001", "epoch": "0"},
                            "genesis_validators_root": tests::daemon::GVR,
                        },
                        "attestation": {
                            "slot": ((10 + round) * 8).to_string(), "index": "0",
                            "beacon_block_root": format!("0x{}", hex::encode([10 + i as u8; 32])),
                            "source": {"epoch": round.to_string(), "root": format!("0x{}", "cc".repeat(32))},
                            "target": {"epoch": (10 + round).to_string(), "root": format!("0x{}", "cc".repeat(32))},
                        },
                    }),
                ),
                (
                    "block",
                    serde_json::json!({
                        "type": "BLOCK_V2",
                        "fork_info": {
                            "fork": {"previous_version": "0x00000001", "current_version": "0x00000001", "epoch": "0"},
                            "genesis_validators_root": tests::daemon::GVR,
                        },
                        "beacon_block": {"version": "DENEB", "block_header": {
                            "slot": (100 + round).to_string(), "proposer_index": "3",
                            "parent_root": format!("0x{}", "11".repeat(32)),
                            "state_root": format!("0x{}", "22".repeat(32)),
                            "body_root": format!("0x{}", hex::encode([10 + i as u8; 32])),
                        }},
                    }),
                ),
            ] {
                let (addr, path) = (*addr, path.clone());
                let ca = setup.path("tls/ca.pem");
                let (cert, key) = (setup.path("tls/vc.pem"), setup.path("tls/vc.key"));
                blocking.push(tokio::task::spawn_blocking(move || {
                    let (status, text) = tests::daemon::https_with(
                        &ca,
                        Some((cert.as_path(), key.as_path())),
                        addr,
                        "POST",
                        &path,
                        &[("content-type", "application/json")],
                        &body.to_string(),
                    )
                    .unwrap();
                    (kind, status, text)
                }));
            }
        }
        let mut privval = Vec::new();
        for (i, mut conn) in std::mem::take(&mut conns).into_iter().enumerate() {
            let v = WireVote {
                vote: tests::ha::vote(height, 1, 20 + i as u8),
                validator_address: vec![1; 20],
                validator_index: 0,
                signature: Vec::new(),
                extension_signature: Vec::new(),
            };
            privval.push(tokio::task::spawn_blocking(move || {
                let r = conn.ask(&Request::SignVote {
                    chain_id: CHAIN.into(),
                    vote: v,
                    skip_extension_signing: false,
                });
                (conn, r)
            }));
        }

        let mut r = RaceRound::default();
        for t in grpc {
            for (kind, outcome) in t.await.unwrap() {
                match outcome {
                    pb::sign_response::Outcome::Signature(_) => match kind {
                        "attestation" => r.attestations_signed += 1,
                        "block" => r.blocks_signed += 1,
                        _ => r.votes_signed += 1,
                    },
                    pb::sign_response::Outcome::Refusal(f) => {
                        assert_eq!(f.reason(), pb::Reason::Slashable, "gRPC {kind}: {f:?}");
                        r.refusals.push(format!("grpc {kind}"));
                    }
                }
            }
        }
        for t in blocking {
            let (kind, status, text) = t.await.unwrap();
            match status {
                200 if kind == "attestation" => r.attestations_signed += 1,
                200 => r.blocks_signed += 1,
                412 => r.refusals.push(format!("http {kind}")),
                other => panic!("HTTP {kind}: {other} {text}"),
            }
        }
        for t in privval {
            let (conn, answer) = t.await.unwrap();
            conns.push(conn);
            match answer.unwrap() {
                Response::SignedVote(Ok(_)) => r.votes_signed += 1,
                Response::SignedVote(Err(e)) => {
                    assert_eq!(e.code, code::DOUBLE_SIGN, "{}", e.description);
                    r.refusals.push("privval vote".into());
                }
                other => panic!("privval: {other:?}"),
            }
        }
        assert_eq!(
            (r.attestations_signed, r.blocks_signed, r.votes_signed),
            (1, 1, 1),
            "round {round}: one of each kind signed over every frontend; {r:?}"
        );
        // 6 requests of each kind (3 gRPC + 3 HTTP or privval), 1 signed each.
        assert_eq!(r.refusals.len(), 15, "round {round}: {r:?}");
    }
    instances.stop();
}

/// TLS to PostgreSQL with `verify-full`: a server certificate that chains to
/// `ca_file` and names the host dialled (127.0.0.1) serves, over TLS (the
/// server's `pg_stat_ssl` says so); one that names another host, or chains
/// to another CA, is refused at start with the reason, before anything is
/// sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgres_is_verified_and_a_certificate_that_does_not_match_is_refused() {
    use rcgen::SanType;
    use std::net::{IpAddr, Ipv4Addr};

    let mut pg = PgCluster::start("");
    let schema = pg.new_schema();
    let setup = Setup::new();
    let ca = tests::daemon::Ca::new("postgres test CA");
    let stranger = tests::daemon::Ca::new("another CA");
    setup.write("tls/pg-ca.pem", &ca.pem);
    let config = instance_config(&setup, &local(pg.port), &schema, "a", 3000, "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "tls = \"disable\"",
        "tls = \"verify-full\"\nca_file = \"tls/pg-ca.pem\"",
    );
    std::fs::write(&config, text).unwrap();
    let ip = SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let dns = |n: &str| SanType::DnsName(n.try_into().unwrap());

    // Installs `(cert, key)` as the server's and restarts it.
    fn serve_with(pg: &mut PgCluster, (cert, key): (String, String)) {
        let (c, k) = (
            pg.dir.path().join("server.crt"),
            pg.dir.path().join("server.key"),
        );
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        if let Some(user) = &pg.run_as {
            for f in [&c, &k] {
                let ok = std::process::Command::new("chown")
                    .arg(format!("{user}:"))
                    .arg(f)
                    .status()
                    .unwrap();
                assert!(ok.success());
            }
        }
        std::fs::set_permissions(&k, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(pg.data_dir().join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(
            &mut conf,
            format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                c.display(),
                k.display()
            )
            .as_bytes(),
        )
        .unwrap();
        pg.stop_fast();
        pg.launch();
    }
    let refused = |config: &std::path::Path| tests::ha::serve_refused(config).1;

    serve_with(
        &mut pg,
        ca.leaf(vec![ip.clone(), dns("localhost")], 1, false),
    );
    let daemon = Daemon::start(&config, &setup.path("daemon-tls.log"));
    let mut vc = daemon.client(setup.client_tls("vc")).await;
    ask(&mut vc, attestation(&setup.bls, 0, 1, 1))
        .await
        .unwrap();
    let over_tls = pg.psql(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.application_name = 'signer' AND s.ssl",
    );
    assert_ne!(over_tls, "0", "the signer's sessions are not over TLS");
    assert!(daemon.stop().success());

    serve_with(&mut pg, ca.leaf(vec![dns("db.example")], 2, false));
    let err = refused(&config);
    println!("refused: {err}");
    assert!(
        err.contains("not valid for name \"127.0.0.1\"") && err.contains("must name the host"),
        "a certificate for another host: {err}"
    );

    serve_with(&mut pg, stranger.leaf(vec![ip], 3, false));
    let err = refused(&config);
    println!("refused: {err}");
    assert!(
        err.contains("UnknownIssuer")
            && err.contains("does not chain to a root in slashing.postgres.ca_file"),
        "a certificate of another CA: {err}"
    );
}
