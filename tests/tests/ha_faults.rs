//! Faults under load, each checked by the history checker (`tests::ha`):
//! signer instances SIGKILLed at random moments, PostgreSQL shut down fast,
//! immediately, or SIGKILLed, and the network to it stalled and cut. After
//! each: no two signatures any client received conflict, and every one is of
//! a message the database records.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use proto::v1 as pb;
use tests::daemon::Setup;
use tests::ha::{self, Instances, Load, Rng};
use tests::pg::PgCluster;
use tests::proxy::FaultProxy;

/// Ends the load, stops the instances and runs the checker; returns the tally.
async fn finish(load: Load, instances: Instances, pg: &PgCluster, schema: &str) -> ha::Tally {
    let tally = load.finish().await;
    let ed = instances.setup.ed25519.clone();
    instances.stop();
    let records = ha::records(pg, schema);
    match ha::check(&tally.signed, &records) {
        Ok(summary) => println!("checker: {summary}"),
        Err(e) => panic!("history checker: {e}"),
    }
    match ha::check_votes(&tally.votes, &ed, ha::stored_position(pg, schema)) {
        Ok(summary) => println!("checker: {summary}"),
        Err(e) => panic!("history checker (CometBFT): {e}"),
    }
    assert!(!tally.votes.is_empty(), "the load signed no CometBFT vote");
    println!(
        "refused: {:?}; transport errors: {}; slowest call: {:?}",
        tally.refused, tally.transport_errors, tally.slowest
    );
    // The load asked for conflicts all the time: some were refused as such.
    assert!(
        tally.refused(pb::Reason::Slashable) > 0,
        "{:?}",
        tally.refused
    );
    for reason in tally.refused.keys() {
        assert!(
            ["SLASHABLE", "BACKEND_UNAVAILABLE", "OVERLOADED"].contains(&reason.as_str()),
            "unexpected refusal {reason}: {:?}",
            tally.refused
        );
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sigkilled_20_times_at_random_moments_never_sign_a_conflict() {
    let pg = PgCluster::start("");
    let schema = pg.new_schema();
    let setup = Setup::new();
    let keys = vec![setup.bls.clone(), setup.bls2.clone()];
    let mut rng = Rng::seeded("sigkill");
    let mut instances = Instances::start(setup, &ha::local(pg.port), &schema, 3, 2000, "").await;
    let load = Load::start(&instances, keys, 12, &mut rng);
    let mut kills = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50 + rng.below(250))).await;
        let victim = rng.below(3) as usize;
        instances.kill(victim);
        kills += 1;
        instances.restart(victim).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = finish(load, instances, &pg, &schema).await;
    assert_eq!(kills, 20);
    assert!(
        tally.signed.len() >= 20,
        "the load signed too little to show anything: {}",
        tally.signed.len()
    );
}

#[derive(Debug, Clone, Copy)]
enum PgFault {
    Fast,
    Immediate,
    Kill,
}

/// PostgreSQL goes away under load and comes back: requests are refused
/// (never hang) while it is away, readiness is red, and the same instances
/// sign again afterwards without a restart.
async fn postgres_goes_away(fault: PgFault) {
    let mut pg = PgCluster::start("");
    let schema = pg.new_schema();
    let setup = Setup::new();
    let keys = vec![setup.bls.clone(), setup.bls2.clone()];
    let mut rng = Rng::seeded(&format!("{fault:?}"));
    let instances = Instances::start(setup, &ha::local(pg.port), &schema, 2, 1000, "").await;
    let load = Load::start(&instances, keys.clone(), 8, &mut rng);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pg = tokio::task::spawn_blocking(move || {
        match fault {
            PgFault::Fast => pg.stop_fast(),
            PgFault::Immediate => pg.stop_immediate(),
            PgFault::Kill => pg.kill(),
        }
        pg
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..2 {
        assert_eq!(
            instances.ready(i),
            503,
            "instance {i} ready while PostgreSQL is down"
        );
    }
    let mut pg = pg;
    let pg = tokio::task::spawn_blocking(move || {
        pg.launch();
        pg
    })
    .await
    .unwrap();
    ha::signs_again(&instances, &keys, 100_000).await;
    // Load after recovery too: the checker covers what is signed after.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let tally = finish(load, instances, &pg, &schema).await;
    assert!(
        tally.refused(pb::Reason::BackendUnavailable) > 0 || tally.transport_errors > 0,
        "nothing was refused while PostgreSQL was down: {:?}",
        tally.refused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fast_shutdown_and_restart_under_load() {
    postgres_goes_away(PgFault::Fast).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_immediate_shutdown_and_restart_under_load() {
    postgres_goes_away(PgFault::Immediate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigkilled_and_restarted_under_load() {
    postgres_goes_away(PgFault::Kill).await;
}

/// The network between the instances and PostgreSQL misbehaves (a proxy in
/// between): stalled, then blackholed (bytes silently dropped), then every
/// connection reset. Each time requests are refused within a few deadlines
/// (never a hang, never a signature without a commit), readiness turns red,
/// and the instances recover by themselves when the network does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_to_postgres_stalled_blackholed_and_reset_under_load() {
    let pg = PgCluster::start("");
    let schema = pg.new_schema();
    let proxy = FaultProxy::start(([127, 0, 0, 1], pg.port).into());
    let setup = Setup::new();
    let keys = vec![setup.bls.clone(), setup.bls2.clone()];
    let mut rng = Rng::seeded("network");
    let instances =
        Instances::start(setup, &ha::local(proxy.addr.port()), &schema, 2, 1000, "").await;
    let load = Load::start(&instances, keys.clone(), 8, &mut rng);
    for (round, fault) in ["stall", "blackhole", "reset"].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match fault {
            "stall" => proxy.pause(),
            "blackhole" => proxy.blackhole(),
            _ => proxy.reset_all(),
        }
        if fault != "reset" {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            for i in 0..2 {
                assert_eq!(instances.ready(i), 503, "{fault}: instance {i} still ready");
            }
            proxy.pass();
        }
        ha::signs_again(&instances, &keys, 100_000 * (round as u64 + 1)).await;
    }
    let tally = finish(load, instances, &pg, &schema).await;
    assert!(
        tally.refused(pb::Reason::BackendUnavailable) > 0,
        "nothing was refused while the network was down: {:?}",
        tally.refused
    );
    // Deadline 1 s per statement and per connect: a refusal takes a few of
    // them at most, never the stall's length.
    assert!(
        tally.slowest < Duration::from_secs(8),
        "a call took {:?}",
        tally.slowest
    );
}
