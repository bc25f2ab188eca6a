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

    let config = instance_config(&setup, &local(pg.port), &schema, "a", 3000, "");
    let sqlite = setup.path("data/slashing.sqlite");
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
