//! A database written with schema version 1 (`fixtures/schema-v1.sqlite`, built
//! by the sqlite3 tool from `fixtures/schema-v1.sql`) opens with this build and
//! its history still protects. When the schema changes, this test is what
//! proves the migration keeps every record.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

use slashing_db::*;

use common::*;

fn open_fixture() -> (tempfile::TempDir, SlashingDb) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("slashing.sqlite");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-v1.sqlite"),
        &copy,
    )
    .unwrap();
    let db = open_pinned(&copy).unwrap();
    (dir, db)
}

#[test]
fn schema_v1_database_opens_and_still_protects() {
    let (dir, db) = open_fixture();
    let v = pk(1);
    assert_eq!(db.genesis_root().unwrap(), Some(GENESIS));
    assert_eq!(
        db.check_and_record(block(v, 100, SigningRoot([0x11; 32])))
            .unwrap(),
        Ok(Safe::SameData)
    );
    assert_eq!(
        db.check_and_record(block(v, 100, root(3))).unwrap(),
        Err(NotSafe::DoubleBlockProposal {
            prev: SignedBlock {
                slot: Slot(100),
                signing_root: Some(SigningRoot([0x11; 32]))
            }
        })
    );
    assert!(matches!(
        db.check_and_record(block(v, 101, root(3))).unwrap(),
        Err(NotSafe::DoubleBlockProposal { .. })
    ));
    assert_eq!(
        db.check_and_record(block(v, 40, root(3))).unwrap(),
        Err(NotSafe::BlockBelowLowWatermark {
            slot: Slot(40),
            low_watermark: Slot(100)
        })
    );
    assert_eq!(
        db.check_and_record(att(v, 10, 11, SigningRoot([0x22; 32])))
            .unwrap(),
        Ok(Safe::SameData)
    );
    assert!(matches!(
        db.check_and_record(att(v, 9, 12, root(3))).unwrap(),
        Err(NotSafe::SurroundingVote { .. })
    ));

    let c = "fixture-1";
    let same_vote = vote_bytes(1, 5, 0, &[b'f'; 32], 1000, c);
    match db.check_and_record(comet(1, c, same_vote.clone())).unwrap() {
        Ok(Safe::Reserve {
            stored,
            timestamp_only: false,
        }) => {
            assert_eq!(stored.sign_bytes, same_vote);
            assert_eq!(stored.signature, Some(vec![0xab; 64]));
        }
        other => panic!("expected the stored vote to be re-served, got {other:?}"),
    }
    assert!(matches!(
        db.check_and_record(comet(1, c, vote_bytes(1, 4, 0, &[b'f'; 32], 1000, c)))
            .unwrap(),
        Err(NotSafe::HeightRegression { .. })
    ));
    // Version 2's table (Gloas messages) is there.
    let ptc = Lane::PayloadAttestation;
    assert_eq!(
        db.check_and_record(message(v, ptc, 200, root(4))).unwrap(),
        Ok(Safe::Valid)
    );
    assert!(matches!(
        db.check_and_record(message(v, ptc, 200, root(5))).unwrap(),
        Err(NotSafe::Equivocation { .. })
    ));
    db.close();
    let c = rusqlite::Connection::open(dir.path().join("slashing.sqlite")).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
}

#[test]
fn schema_constraints_stop_what_the_rules_should_have() {
    // Bypass the rules and write to the file directly, as a buggy engine
    // might: the schema itself refuses a second block at a slot, a changed
    // root, and a CometBFT position that goes back.
    let (dir, db) = open_fixture();
    db.close();
    let c = rusqlite::Connection::open(dir.path().join("slashing.sqlite")).unwrap();
    let second_block = c.execute("INSERT INTO signed_blocks (validator_id, slot, signing_root) VALUES (1, 100, zeroblob(32))", []);
    assert!(second_block.unwrap_err().to_string().contains("UNIQUE"));
    c.execute(
        "INSERT INTO signed_messages (validator_id, lane, slot, signing_root) VALUES (1, 1, 50, zeroblob(32))",
        [],
    )
    .unwrap();
    let message_back = c.execute(
        "UPDATE signed_messages SET slot = 49 WHERE validator_id = 1 AND lane = 1",
        [],
    );
    assert!(
        message_back
            .unwrap_err()
            .to_string()
            .contains("may not go back")
    );
    let message_other_root = c.execute(
        "UPDATE signed_messages SET signing_root = randomblob(32) WHERE validator_id = 1 AND lane = 1",
        [],
    );
    assert!(
        message_other_root
            .unwrap_err()
            .to_string()
            .contains("may not go back")
    );
    let changed_root = c.execute(
        "UPDATE signed_attestations SET signing_root = zeroblob(32) WHERE target_epoch = 11",
        [],
    );
    assert!(
        changed_root
            .unwrap_err()
            .to_string()
            .contains("may not change")
    );
    let back = c.execute("UPDATE cometbft_state SET height = 4", []);
    assert!(back.unwrap_err().to_string().contains("may not go back"));
    let other_bytes = c.execute("UPDATE cometbft_state SET sign_bytes = X'00'", []);
    assert!(
        other_bytes
            .unwrap_err()
            .to_string()
            .contains("may not go back")
    );
    let orphan = c.execute("PRAGMA foreign_keys = ON", []).and_then(|_| {
        c.execute(
            "INSERT INTO signed_blocks (validator_id, slot, signing_root) VALUES (99, 1, NULL)",
            [],
        )
    });
    assert!(orphan.unwrap_err().to_string().contains("FOREIGN KEY"));
}
