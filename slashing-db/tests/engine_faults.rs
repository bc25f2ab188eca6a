//! Faults no real disk here can produce on cue: an I/O error during commit
//! (a failed fsync). A fault-injecting engine wraps the real SQLite engine
//! behind the same `Engine` seam.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use slashing_db::engine::{Bounds, ValidatorId, Watermarks};
use slashing_db::*;

use common::*;

/// Delegates to SQLite; `fail_commit` makes the next commits fail like an
/// `fsync` returning EIO (after rolling the real transaction back).
struct Faulty {
    inner: SqliteEngine,
    fail_commit: Arc<AtomicBool>,
}

macro_rules! delegate {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(fn $name(&mut self, $($arg: $ty),*) -> Result<$ret, DbError> { self.inner.$name($($arg),*) })*
    };
}

impl Engine for Faulty {
    fn commit(&mut self) -> Result<(), DbError> {
        if self.fail_commit.load(Ordering::SeqCst) {
            self.inner.rollback()?;
            return Err(DbError::EngineIo {
                context: "committing",
                source: "injected: fsync returned EIO".into(),
            });
        }
        self.inner.commit()
    }

    fn in_transaction(&self) -> bool {
        self.inner.in_transaction()
    }

    delegate! {
        begin() -> ();
        rollback() -> ();
        savepoint() -> ();
        release_savepoint() -> ();
        rollback_to_savepoint() -> ();
        genesis_root() -> Option<GenesisRoot>;
        set_genesis_root(root: &GenesisRoot) -> ();
        validator(pubkey: &BlsPublicKey) -> Option<ValidatorId>;
        message_last(v: ValidatorId, lane: slashing_db::Lane) -> Option<slashing_db::SignedMessage>;
        messages_all() -> Vec<(BlsPublicKey, slashing_db::Lane, slashing_db::SignedMessage)>;
        message_store(v: ValidatorId, lane: slashing_db::Lane, m: &slashing_db::SignedMessage) -> ();
        insert_validator(pubkey: &BlsPublicKey) -> ValidatorId;
        validators() -> Vec<(ValidatorId, BlsPublicKey)>;
        bounds(v: ValidatorId) -> Bounds;
        set_watermarks(v: ValidatorId, w: &Watermarks) -> ();
        block_at(v: ValidatorId, slot: Slot) -> Option<SignedBlock>;
        max_block_slot(v: ValidatorId) -> Option<Slot>;
        insert_block(v: ValidatorId, b: &SignedBlock) -> ();
        merge_block(v: ValidatorId, b: &SignedBlock) -> ();
        blocks(v: ValidatorId) -> Vec<SignedBlock>;
        delete_blocks_below(v: ValidatorId, slot: Slot) -> (u64, Option<Slot>);
        attestation_for_target(v: ValidatorId, target: Epoch) -> Option<SignedAttestation>;
        attestation_surrounded_by(v: ValidatorId, source: Epoch, target: Epoch) -> Option<SignedAttestation>;
        attestation_surrounding(v: ValidatorId, source: Epoch, target: Epoch) -> Option<SignedAttestation>;
        max_target_epoch(v: ValidatorId) -> Option<Epoch>;
        recount_minimums(v: ValidatorId) -> ();
        insert_attestation(v: ValidatorId, a: &SignedAttestation) -> ();
        merge_attestation(v: ValidatorId, a: &SignedAttestation) -> ();
        attestations(v: ValidatorId) -> Vec<SignedAttestation>;
        delete_attestations_below(v: ValidatorId, target: Epoch) -> (u64, Option<(Epoch, Epoch)>);
        cometbft_last(key: &ConsensusKey, chain: &ChainId) -> Option<CometRecord>;
        cometbft_store(key: &ConsensusKey, chain: &ChainId, r: &CometRecord) -> ();
        meta(key: &str) -> Option<Vec<u8>>;
        set_meta(key: &str, value: &[u8]) -> ();
        meta_with_prefix(prefix: &str) -> Vec<(String, Vec<u8>)>;
        cometbft_all() -> Vec<(ConsensusKey, ChainId, CometRecord)>;
    }
}

#[test]
fn an_io_error_in_commit_refuses_that_request_and_everything_after_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slashing.sqlite");
    let fail = Arc::new(AtomicBool::new(false));
    let engine = Faulty {
        inner: SqliteEngine::open(&path, &SqliteOptions::default()).unwrap(),
        fail_commit: fail.clone(),
    };
    let db = SlashingDb::with_engine(
        Box::new(engine),
        &Config {
            genesis_root: Some(GENESIS),
            ..Config::default()
        },
    )
    .unwrap();
    assert_eq!(
        db.check_and_record(block(pk(1), 1, root(1))).unwrap(),
        Ok(Safe::Valid)
    );

    fail.store(true, Ordering::SeqCst);
    match db.check_and_record(block(pk(1), 2, root(1))) {
        Err(DbError::EngineIo {
            context: "committing",
            ..
        }) => {}
        other => panic!("expected the commit's I/O error, got {other:?}"),
    }
    // The fault is gone, but the state on disk is uncertain: refuse until reopened.
    fail.store(false, Ordering::SeqCst);
    for _ in 0..2 {
        match db.check_and_record(block(pk(1), 3, root(1))) {
            Err(DbError::Poisoned(why)) => assert!(why.contains("EIO"), "{why}"),
            other => panic!("expected Poisoned, got {other:?}"),
        }
    }
    assert!(matches!(db.export_interchange(), Err(DbError::Poisoned(_))));
    drop(db);

    // Reopened: the block before the fault is there; the failed one is not.
    let db = SlashingDb::open(&path, Config::default()).unwrap();
    assert_eq!(
        db.check_and_record(block(pk(1), 1, root(2)))
            .unwrap()
            .unwrap_err()
            .reason(),
        "double_block_proposal"
    );
    assert_eq!(
        db.check_and_record(block(pk(1), 2, root(2))).unwrap(),
        Ok(Safe::Valid)
    );
    db.close();
    assert_consistent(&path);
}

/// One caller's failure in a shared batch does not cost the others their
/// decisions; a failed commit costs everyone in the batch (nothing recorded).
#[test]
fn a_callers_own_error_does_not_fail_the_rest_of_its_batch() {
    let t = TempDb::new(Some(GENESIS));
    let db = Arc::new(t.db);
    let barrier = Arc::new(std::sync::Barrier::new(16));
    let handles: Vec<_> = (0..16u8)
        .map(|i| {
            let (db, barrier) = (db.clone(), barrier.clone());
            std::thread::spawn(move || {
                // Odd threads ask for a slot SQLite cannot store.
                let slot = if i % 2 == 1 {
                    u64::MAX
                } else {
                    u64::from(i) + 1
                };
                barrier.wait();
                (i, db.check_and_record(block(pk(i), slot, root(1))))
            })
        })
        .collect();
    for h in handles {
        match h.join().unwrap() {
            (i, Ok(Ok(Safe::Valid))) if i % 2 == 0 => {}
            (i, Err(DbError::OutOfRange { what: "slot", .. })) if i % 2 == 1 => {}
            (i, other) => panic!("thread {i}: {other:?}"),
        }
    }
    let exported = db.export_interchange().unwrap();
    assert_eq!(
        exported
            .data
            .iter()
            .map(|v| v.signed_blocks.len())
            .sum::<usize>(),
        8
    );
}
