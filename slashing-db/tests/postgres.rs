//! What only the shared engine has to get right: several handles (signer
//! instances) on one database, a server that restarts under them, and
//! configurations that must be refused at open — each against a real
//! PostgreSQL started by the harness.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::pg::PgCluster;
use common::*;
use slashing_db::*;

fn pinned() -> Config {
    Config {
        genesis_root: Some(GENESIS),
        ..Config::default()
    }
}

/// `n` handles on one fresh schema, as `n` signer instances would hold.
fn instances(c: &Arc<PgCluster>, n: usize) -> (String, Vec<SlashingDb>) {
    let schema = c.new_schema();
    let dbs = (0..n)
        .map(|_| SlashingDb::open_postgres(&pg_options(c, &schema), pinned()).unwrap())
        .collect();
    (schema, dbs)
}

/// Races `make(i)` from `per` threads on each of `dbs` at once, `rounds`
/// times; returns how many were `Valid` in each round.
fn race(
    dbs: &[SlashingDb],
    per: usize,
    rounds: u64,
    make: impl Fn(u64, usize) -> Proposal + Sync,
) -> Vec<usize> {
    let mut valid_per_round = Vec::new();
    for round in 0..rounds {
        let barrier = Barrier::new(dbs.len() * per);
        let valid = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for (d, db) in dbs.iter().enumerate() {
                for t in 0..per {
                    // Built here, so a bad table panics this thread rather
                    // than leave the others waiting at the barrier.
                    let p = make(round, d * per + t);
                    let (barrier, valid) = (&barrier, &valid);
                    s.spawn(move || {
                        barrier.wait();
                        match db.check_and_record(p).unwrap() {
                            Ok(Safe::Valid) => {
                                valid.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            Ok(other) => panic!("round {round}: unexpected {other:?}"),
                            Err(
                                NotSafe::DoubleBlockProposal { .. }
                                | NotSafe::DoubleVote { .. }
                                | NotSafe::SurroundingVote { .. }
                                | NotSafe::SurroundedVote { .. }
                                | NotSafe::ConflictingSignBytes { .. }
                                | NotSafe::BlockBelowLowWatermark { .. }
                                | NotSafe::TargetBelowLowWatermark { .. },
                            ) => {}
                            Err(other) => panic!("round {round}: unexpected refusal {other:?}"),
                        }
                    });
                }
            }
        });
        valid_per_round.push(valid.into_inner());
    }
    valid_per_round
}

#[test]
fn three_instances_racing_conflicting_messages_sign_exactly_one_per_round() {
    let c = cluster();
    let (schema, dbs) = instances(&c, 3);
    let rounds = 8;
    // 3 instances × 8 threads: 24 different blocks for one slot per round.
    let blocks = race(&dbs, 8, rounds, |r, i| {
        block(pk(1), 100 + r, root(u8::try_from(i + 1).unwrap()))
    });
    // Different attestations for one target (double votes) ...
    let votes = race(&dbs, 8, rounds, |r, i| {
        att(
            pk(2),
            10 * r,
            10 * r + 5,
            root(u8::try_from(i + 1).unwrap()),
        )
    });
    // ... and a chain of surrounding votes on a fresh validator per round.
    let surround = race(&dbs, 8, rounds, |r, i| {
        let i = i as u64;
        att(pk(10 + r as u8), 30 - i, 31 + i, root(1))
    });
    // CometBFT: different prevotes at one height.
    let comet = race(&dbs, 8, rounds, |r, i| {
        let h = i64::try_from(r + 1).unwrap();
        comet(
            1,
            "chain-ha",
            vote_bytes(1, h, 0, &[u8::try_from(i + 1).unwrap(); 32], 1, "chain-ha"),
        )
    });
    for (what, got) in [
        ("blocks", blocks),
        ("double votes", votes),
        ("surrounds", surround),
        ("CometBFT", comet),
    ] {
        println!("{what}: valid per round {got:?}");
        assert!(
            got.iter().all(|&n| n == 1),
            "{what}: exactly one of 24 racing requests over 3 instances may be signed each round, got {got:?}"
        );
    }
    // What the database holds agrees: one block per slot, one vote per target.
    let exported = dbs[0].export_interchange().unwrap();
    for v in &exported.data {
        let mut slots: Vec<u64> = v.signed_blocks.iter().map(|b| b.slot).collect();
        slots.dedup();
        assert_eq!(slots.len(), v.signed_blocks.len());
    }
    drop(dbs);
    assert_consistent_pg(&c, &schema);
}

#[test]
fn instances_starting_at_the_same_instant_on_an_empty_database_create_one_schema() {
    let c = cluster();
    for _ in 0..3 {
        let schema = c.new_schema();
        let n = 6;
        let barrier = Barrier::new(n);
        let opened: Vec<Result<SlashingDb, DbError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let (barrier, c, schema) = (&barrier, &c, &schema);
                    s.spawn(move || {
                        barrier.wait();
                        SlashingDb::open_postgres(&pg_options(c, schema), pinned())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for o in &opened {
            assert!(o.is_ok(), "an instance failed to open: {o:?}");
        }
        let version = c.psql_in(
            "slashing",
            &format!("SELECT version FROM {schema}.signer_schema"),
        );
        assert_eq!(version, PG_SCHEMA_VERSION.to_string());
        let tables = c.psql_in(
            "slashing",
            &format!("SELECT count(*) FROM pg_tables WHERE schemaname = '{schema}'"),
        );
        // meta, validators, blocks, attestations, CometBFT, Gloas messages, and the version.
        assert_eq!(tables, "7", "one set of tables");
    }
}

#[test]
fn a_database_of_another_network_is_refused_at_open_and_left_as_it_was() {
    let c = cluster();
    let (schema, dbs) = instances(&c, 1);
    dbs[0]
        .check_and_record(block(pk(1), 1, root(1)))
        .unwrap()
        .unwrap();
    drop(dbs);
    let other = GenesisRoot([0x99; 32]);
    let err = SlashingDb::open_postgres(
        &pg_options(&c, &schema),
        Config {
            genesis_root: Some(other),
            ..Config::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, DbError::GenesisRootMismatch { stored, configured } if stored == GENESIS && configured == other),
        "{err:?}"
    );
    let blocks = c.psql_in(
        "slashing",
        &format!("SELECT count(*) FROM {schema}.signed_blocks"),
    );
    assert_eq!(blocks, "1");
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let c = cluster();
    let (schema, dbs) = instances(&c, 1);
    drop(dbs);
    c.psql_in(
        "slashing",
        &format!("UPDATE {schema}.signer_schema SET version = 99"),
    );
    let err = SlashingDb::open_postgres(&pg_options(&c, &schema), pinned()).unwrap_err();
    assert!(
        matches!(
            err,
            DbError::SchemaTooNew {
                found: 99,
                supported: PG_SCHEMA_VERSION
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade the signer"), "{err}");
    let version = c.psql_in(
        "slashing",
        &format!("SELECT version FROM {schema}.signer_schema"),
    );
    assert_eq!(version, "99");
}

#[test]
fn foreign_tables_are_not_taken_for_a_slashing_database() {
    let c = cluster();
    let schema = c.new_schema();
    c.psql_in(
        "slashing",
        &format!(
            "CREATE TABLE {schema}.validators (x int); GRANT ALL ON {schema}.validators TO signer"
        ),
    );
    let err = SlashingDb::open_postgres(&pg_options(&c, &schema), pinned()).unwrap_err();
    assert!(matches!(err, DbError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("not a database this signer created"),
        "{err}"
    );
}

#[test]
fn a_wrong_password_is_refused_with_the_servers_reason() {
    let c = cluster();
    let schema = c.new_schema();
    let mut opts = pg_options(&c, &schema);
    opts.config.password("not-the-password");
    let err = SlashingDb::open_postgres(&opts, pinned()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DbError::Connect { .. }), "{err:?}");
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(
        !text.contains("not-the-password"),
        "the password must not be echoed: {text}"
    );
}

#[test]
fn tls_required_but_the_server_has_none_is_refused() {
    let c = cluster();
    let schema = c.new_schema();
    let mut opts = pg_options(&c, &schema);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    opts.tls = Some(Arc::new(tls));
    let err = SlashingDb::open_postgres(&opts, pinned()).unwrap_err();
    assert!(matches!(err, DbError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[test]
fn fsync_off_is_always_refused() {
    let c = PgCluster::start("fsync = off");
    let schema = c.new_schema();
    let err = SlashingDb::open_postgres(&pg_options(&c, &schema), pinned()).unwrap_err();
    assert!(matches!(err, DbError::NotDurable { .. }), "{err:?}");
    assert!(err.to_string().contains("fsync = off"), "{err}");
    // Nothing was written: not even the schema.
    let tables = c.psql_in(
        "slashing",
        &format!("SELECT count(*) FROM pg_tables WHERE schemaname = '{schema}'"),
    );
    assert_eq!(tables, "0");
}

#[test]
fn requiring_synchronous_replication_without_a_standby_is_refused() {
    let c = cluster();
    let schema = c.new_schema();
    let mut opts = pg_options(&c, &schema);
    opts.require_synchronous_replication = true;
    let err = SlashingDb::open_postgres(&opts, pinned()).unwrap_err();
    assert!(matches!(err, DbError::NotDurable { .. }), "{err:?}");
    assert!(err.to_string().contains("no synchronous standby"), "{err}");
    // Without the requirement the same server serves, and says how durable it is.
    let db = SlashingDb::open_postgres(&pg_options(&c, &schema), pinned()).unwrap();
    let d = db
        .durability()
        .unwrap()
        .expect("PostgreSQL reports durability");
    assert!(d.fsync && d.primary);
    assert_eq!(d.level(), "local");
}

/// The server goes away under a serving handle: every request is refused
/// (never a hang, never a signature), and once the server is back the same
/// handle decides again from what the database holds.
#[test]
fn a_server_restart_is_refused_then_survived_without_reopening() {
    let mut c = PgCluster::start("");
    let schema = c.new_schema();
    let mut opts = pg_options(&c, &schema);
    opts.statement_timeout = Duration::from_secs(2);
    opts.connect_timeout = Duration::from_secs(2);
    let db = SlashingDb::open_postgres(&opts, pinned()).unwrap();
    assert_eq!(
        db.check_and_record(att(pk(1), 1, 2, root(1))).unwrap(),
        Ok(Safe::Valid)
    );
    c.kill();
    for target in 3..6 {
        let err = db
            .check_and_record(att(pk(1), target - 1, target, root(1)))
            .unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
    }
    c.launch();
    // Recorded before the kill: still protected.
    assert!(matches!(
        db.check_and_record(att(pk(1), 1, 2, root(2))).unwrap(),
        Err(NotSafe::DoubleVote { .. })
    ));
    // Refused while down: nothing was recorded, so it is decided afresh.
    assert_eq!(
        db.check_and_record(att(pk(1), 2, 3, root(1))).unwrap(),
        Ok(Safe::Valid)
    );
}

/// The one-round-trip path decides from assumed facts (nothing recorded in
/// the way) and the server checks them inside the write. Here every assumed
/// fact is false — another instance wrote the history — and each request
/// must still get exactly the refusal (or repeat) the rules give when the
/// facts are read.
#[test]
fn what_one_instance_assumes_is_checked_against_what_another_wrote() {
    let c = cluster();
    let (schema, dbs) = instances(&c, 2);
    let (a, b) = (&dbs[0], &dbs[1]);
    // B is warm: it knows the network and has decided before.
    assert_eq!(
        b.check_and_record(att(pk(9), 0, 1, root(1))).unwrap(),
        Ok(Safe::Valid)
    );
    assert_eq!(
        a.check_and_record(att(pk(1), 1, 10, root(1))).unwrap(),
        Ok(Safe::Valid)
    );
    assert_eq!(
        a.check_and_record(block(pk(1), 5, root(1))).unwrap(),
        Ok(Safe::Valid)
    );

    let cases: Vec<(Proposal, &str)> = vec![
        (att(pk(1), 1, 10, root(2)), "DoubleVote"),
        (att(pk(1), 1, 10, root(1)), "SameData"),
        (att(pk(1), 2, 5, root(1)), "SurroundedVote"),
        (att(pk(1), 0, 11, root(1)), "SurroundingVote"),
        (att(pk(1), 1, 9, root(1)), "TargetBelowLowWatermark"),
        (block(pk(1), 5, root(2)), "DoubleBlockProposal"),
        (block(pk(1), 5, root(1)), "SameData"),
        (block(pk(1), 4, root(1)), "BlockBelowLowWatermark"),
        (att(pk(1), 10, 11, root(1)), "Valid"),
    ];
    let name = |d: &Decision| -> String {
        let dbg = format!("{d:?}");
        let inner = dbg
            .trim_start_matches("Ok(")
            .trim_start_matches("Err(")
            .to_string();
        inner
            .split(|ch: char| !ch.is_alphanumeric())
            .next()
            .unwrap_or_default()
            .to_string()
    };
    for (p, want) in &cases {
        let got = b.check_and_record(p.clone()).unwrap();
        assert_eq!(name(&got), *want, "{p:?} → {got:?}");
    }
    // A still assumes its own view: B's new record must stop it.
    assert_eq!(
        name(&a.check_and_record(att(pk(1), 10, 11, root(2))).unwrap()),
        "DoubleVote"
    );
    // A batch where one request meets another instance's history and one is
    // new: each gets its own answer, and the new one is recorded.
    let answers = b
        .check_and_record_batch(vec![att(pk(2), 3, 4, root(1)), att(pk(1), 1, 10, root(3))])
        .unwrap();
    assert_eq!(name(&answers[0]), "Valid");
    assert_eq!(name(&answers[1]), "DoubleVote");
    assert_eq!(
        name(&a.check_and_record(att(pk(2), 3, 4, root(2))).unwrap()),
        "DoubleVote"
    );
    assert_consistent_pg(&c, &schema);
}

/// A database made by the first release (schema version 1) is brought to the
/// current version at open, history intact, and then decides on the
/// one-round-trip path.
#[test]
fn a_version_1_database_is_migrated_at_open_with_its_history() {
    let c = cluster();
    let (schema, dbs) = instances(&c, 1);
    assert_eq!(
        dbs[0].check_and_record(att(pk(1), 1, 2, root(1))).unwrap(),
        Ok(Safe::Valid)
    );
    drop(dbs);
    // Back to what version 1 had.
    c.psql_in(
        "slashing",
        &format!(
            "SET search_path = {schema};
             DROP FUNCTION signer_expect(boolean, text);
             DROP TABLE signed_messages;
             DROP FUNCTION signed_messages_monotonic();
             UPDATE signer_schema SET version = 1;"
        ),
    );
    let db = SlashingDb::open_postgres(&pg_options(&c, &schema), pinned()).unwrap();
    let version = c.psql_in(
        "slashing",
        &format!("SELECT version FROM {schema}.signer_schema"),
    );
    assert_eq!(version, PG_SCHEMA_VERSION.to_string());
    assert!(matches!(
        db.check_and_record(att(pk(1), 1, 2, root(2))).unwrap(),
        Err(NotSafe::DoubleVote { .. })
    ));
    assert_eq!(
        db.check_and_record(att(pk(1), 2, 3, root(1))).unwrap(),
        Ok(Safe::Valid)
    );
    // Version 3's table is there: Gloas messages are recorded.
    let ptc = Lane::PayloadAttestation;
    assert_eq!(
        db.check_and_record(message(pk(1), ptc, 9, root(1)))
            .unwrap(),
        Ok(Safe::Valid)
    );
    assert!(matches!(
        db.check_and_record(message(pk(1), ptc, 9, root(2)))
            .unwrap(),
        Err(NotSafe::Equivocation { .. })
    ));
    assert_consistent_pg(&c, &schema);
}

/// Pruning a shared database runs in parts of 64 validators, each its own
/// transaction (holding those validators' locks only while it runs), and
/// another instance refuses what was pruned.
#[test]
fn pruning_commits_in_parts_and_other_instances_refuse_what_it_removed() {
    let c = cluster();
    let (schema, dbs) = instances(&c, 2);
    let key = |i: u16| {
        let mut b = [0xc0; 48];
        b[46..].copy_from_slice(&i.to_be_bytes());
        BlsPublicKey(b)
    };
    for t in 1..=3 {
        let batch = (0..130).map(|i| att(key(i), t - 1, t, root(1))).collect();
        let answers = dbs[0].check_and_record_batch(batch).unwrap();
        assert!(answers.iter().all(|a| *a == Ok(Safe::Valid)));
    }
    let mut parts = Vec::new();
    let summary = dbs[0]
        .prune_with_progress(
            PruneConfig {
                keep_slots: 0,
                keep_epochs: 1,
            },
            |done, total| parts.push((done, total)),
        )
        .unwrap();
    assert_eq!(parts, [(64, 130), (128, 130), (130, 130)]);
    assert_eq!(summary.attestations, 130);
    for i in [0, 64, 129] {
        let got = dbs[1].check_and_record(att(key(i), 0, 1, root(1))).unwrap();
        assert!(
            matches!(
                got,
                Err(NotSafe::SourceBelowLowWatermark { .. }
                    | NotSafe::TargetBelowLowWatermark { .. })
            ),
            "validator {i}: a pruned attestation must stay refused: {got:?}"
        );
    }
    assert_consistent_pg(&c, &schema);
}

/// The same for CometBFT: a warm instance assumes nothing is stored at or
/// above a new position; another instance's record must still give exactly
/// the rules' answer — including in a batch whose first request is behind
/// and whose second is ahead of what the other instance stored.
#[test]
fn cometbft_positions_assumed_by_one_instance_are_checked_against_another() {
    let c = cluster();
    let (schema, dbs) = instances(&c, 2);
    let (a, b) = (&dbs[0], &dbs[1]);
    let chain = "assume-chain";
    let v = |kind, height, block: u8| {
        comet(
            1,
            chain,
            vote_bytes(kind, height, 0, &[block; 32], 1, chain),
        )
    };
    // B is warm on this key.
    assert_eq!(b.check_and_record(v(1, 1, 1)).unwrap(), Ok(Safe::Valid));
    // A moves the key to a precommit at height 10.
    assert_eq!(a.check_and_record(v(2, 10, 1)).unwrap(), Ok(Safe::Valid));

    let kind = |d: &Decision| match d {
        Ok(Safe::Valid) => "valid".to_owned(),
        Ok(other) => format!("{other:?}")
            .split(['(', ' ', '{'])
            .next()
            .unwrap()
            .to_owned(),
        Err(e) => e.reason().to_owned(),
    };
    assert_eq!(
        kind(&b.check_and_record(v(1, 10, 1)).unwrap()),
        "step_regression"
    );
    assert_eq!(
        kind(&b.check_and_record(v(2, 9, 1)).unwrap()),
        "height_regression"
    );
    assert_eq!(
        kind(&b.check_and_record(v(2, 10, 2)).unwrap()),
        "double_sign"
    );
    assert_eq!(kind(&b.check_and_record(v(2, 10, 1)).unwrap()), "Reserve");
    // Behind, then ahead, in one batch: the check uses the first.
    let answers = b
        .check_and_record_batch(vec![v(1, 10, 3), v(1, 11, 3)])
        .unwrap();
    assert_eq!(kind(&answers[0]), "step_regression");
    assert_eq!(kind(&answers[1]), "valid");
    // And A, still assuming its own view, meets B's record.
    assert_eq!(
        kind(&a.check_and_record(v(1, 11, 4)).unwrap()),
        "double_sign"
    );
    assert_eq!(kind(&a.check_and_record(v(2, 11, 4)).unwrap()), "valid");
    let stored = c.psql_in(
        "slashing",
        &format!("SELECT height, step FROM {schema}.cometbft_state"),
    );
    assert_eq!(stored, "11|3");
}

/// Before the network is pinned a batch is decided question by question.
/// Instances deciding their first batches at once — one asking about a
/// CometBFT key and then a validator, another the other way round — must not
/// take their locks crosswise (seen: three instances racing on every
/// frontend deadlocked, and a batch was refused as unavailable once its
/// retries ran out). Each trial is a fresh, unpinned schema; the server's log
/// must show no deadlock, and each trial signs exactly one attestation and
/// one vote.
#[test]
fn first_batches_before_the_network_is_pinned_never_deadlock() {
    // Detection after 20 ms, so a deadlock is found (and logged) within the
    // trial rather than after the default second.
    let c = PgCluster::start("deadlock_timeout = 20ms");
    let trials = 12;
    for trial in 0..trials {
        let schema = c.new_schema();
        let dbs: Vec<SlashingDb> = (0..3)
            .map(|_| {
                SlashingDb::open_postgres(&pg_options(&c, &schema), Config::default()).unwrap()
            })
            .collect();
        let barrier = Barrier::new(dbs.len());
        let answers: Vec<Vec<Decision>> = std::thread::scope(|s| {
            let handles: Vec<_> = dbs
                .iter()
                .enumerate()
                .map(|(i, db)| {
                    let n = u8::try_from(i + 1).unwrap();
                    let a = att(pk(1), 1, 2, root(n));
                    let v = comet(
                        1,
                        "pin-chain",
                        vote_bytes(1, 5, 0, &[n; 32], 1, "pin-chain"),
                    );
                    let batch = if i % 2 == 0 { vec![v, a] } else { vec![a, v] };
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        db.check_and_record_batch(batch)
                            .unwrap_or_else(|e| panic!("trial {trial}, instance {i}: {e}"))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let valid = answers
            .iter()
            .flatten()
            .filter(|d| matches!(d, Ok(Safe::Valid)))
            .count();
        assert_eq!(
            valid, 2,
            "trial {trial}: one attestation and one vote: {answers:?}"
        );
        drop(dbs);
        assert_consistent_pg(&c, &schema);
    }
    let log = std::fs::read_to_string(c.log_path()).unwrap();
    let deadlocks = log.matches("deadlock detected").count();
    println!(
        "{trials} trials of 3 instances deciding their first batch at once; {deadlocks} deadlocks"
    );
    assert_eq!(deadlocks, 0, "server log:\n{log}");
}
