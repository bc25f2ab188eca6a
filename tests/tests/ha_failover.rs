//! Failover: a primary with a synchronous standby (streaming replication,
//! both local), instances on a multi-host connection string. The primary is
//! SIGKILLed under load and the standby promoted: every signature returned
//! before is recorded on the new primary, none conflicts afterwards, and the
//! same instances serve again once the new primary has a synchronous standby
//! of its own. With asynchronous replication and
//! `require_synchronous_replication = true`, an instance refuses to start.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use proto::v1 as pb;
use tests::daemon::Setup;
use tests::ha::{self, Instances, Load, Rng, local};
use tests::pg::PgCluster;

const REQUIRE_SYNC: &str = "require_synchronous_replication = true\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_and_standby_promoted_under_load_loses_nothing_acknowledged() {
    let mut primary = PgCluster::start("");
    let schema = primary.new_schema();
    let standby = primary.standby();
    primary.require_synchronous_standby();
    let hosts = format!("{},{}", local(primary.port), local(standby.port));

    let setup = Setup::new();
    let keys = vec![setup.bls.clone(), setup.bls2.clone()];
    let mut rng = Rng::seeded("failover");
    let instances = Instances::start(setup, &hosts, &schema, 2, 1000, REQUIRE_SYNC).await;
    for i in 0..2 {
        let (status, body) = instances.daemon(i).http("GET", "/readyz");
        assert_eq!(
            status, 200,
            "instance {i} with a synchronous standby: {body}"
        );
        assert!(
            body.contains("database (postgres, synchronous standby): ok"),
            "{body}"
        );
        assert_eq!(
            instances
                .daemon(i)
                .metric("signer_db_durability{level=\"synchronous\"}"),
            1.0
        );
    }
    let load = Load::start(&instances, keys.clone(), 8, &mut rng);
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let primary = tokio::task::spawn_blocking(move || {
        primary.kill();
        primary
    })
    .await
    .unwrap();
    standby.promote();
    // The new primary has no standby yet: with require_synchronous_replication
    // the instances refuse to sign and say so.
    let deadline = Instant::now() + Duration::from_secs(15);
    while (0..2).any(|i| instances.ready(i) != 503) {
        assert!(
            Instant::now() < deadline,
            "instances stayed ready on a primary without a synchronous standby"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, body) = instances.daemon(0).http("GET", "/readyz");
    assert!(
        body.contains("no synchronous standby acknowledges commits"),
        "{body}"
    );
    // The runbook: give the new primary a synchronous standby of its own.
    let standby = tokio::task::spawn_blocking(move || {
        let replacement = standby.standby();
        standby.require_synchronous_standby();
        (standby, replacement)
    })
    .await
    .unwrap();
    let (new_primary, _replacement) = standby;
    ha::signs_again(&instances, &keys, 100_000).await;
    // Load after recovery too: the checker covers what is signed after.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    drop(primary);

    let tally = load.finish().await;
    let ed = instances.setup.ed25519.clone();
    instances.stop();
    let records = ha::records(&new_primary, &schema);
    match ha::check(&tally.signed, &records) {
        Ok(summary) => println!("checker: {summary}"),
        Err(e) => panic!("history checker after failover: {e}"),
    }
    let stored = ha::stored_position(&new_primary, &schema);
    match ha::check_votes(&tally.votes, &ed, stored) {
        Ok(summary) => println!("checker: {summary}"),
        Err(e) => panic!("history checker (CometBFT) after failover: {e}"),
    }
    println!("refused: {:?}", tally.refused);
    assert!(
        tally.signed.len() >= 10,
        "too little signed: {}",
        tally.signed.len()
    );
    assert!(
        tally.refused(pb::Reason::BackendUnavailable) > 0,
        "{:?}",
        tally.refused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asynchronous_replication_with_synchronous_required_refuses_to_start() {
    let primary = PgCluster::start("");
    let schema = primary.new_schema();
    let standby = primary.standby();
    let setup = Setup::new();
    let config = ha::instance_config(
        &setup,
        &format!("{},{}", local(primary.port), local(standby.port)),
        &schema,
        "a",
        2000,
        REQUIRE_SYNC,
    );
    let (stdout, stderr) = ha::serve_refused(&config);
    assert!(
        stderr.contains("no synchronous standby acknowledges commits"),
        "{stderr}"
    );
    assert!(stdout.trim().is_empty(), "printed a ready line: {stdout}");
    let tables = primary.psql_in(
        "slashing",
        &format!("SELECT count(*) FROM pg_tables WHERE schemaname = '{schema}'"),
    );
    assert_eq!(tables, "0", "nothing written");
}
