//! Exactly one of N racing conflicting requests is safe. 32 threads are
//! released together by a barrier, many rounds, so group commit sees the
//! conflicts both inside one batch and across batches.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::{Arc, Barrier};

use slashing_db::*;

use common::*;

const THREADS: usize = 32;
const ROUNDS: u64 = 20;

/// Runs `make(round, thread)` on THREADS threads at once, for ROUNDS rounds;
/// returns the decisions of each round.
fn race(
    db: &Arc<SlashingDb>,
    make: impl Fn(u64, usize) -> Proposal + Send + Sync + 'static,
) -> Vec<Vec<Decision>> {
    let make = Arc::new(make);
    (0..ROUNDS)
        .map(|round| {
            let barrier = Arc::new(Barrier::new(THREADS));
            let handles: Vec<_> = (0..THREADS)
                .map(|i| {
                    let (db, barrier, make) = (db.clone(), barrier.clone(), make.clone());
                    std::thread::spawn(move || {
                        let p = make(round, i);
                        barrier.wait();
                        db.check_and_record(p).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
        .collect()
}

fn exactly_one_valid(rounds: &[Vec<Decision>], refusals: &[&str]) {
    for (r, decisions) in rounds.iter().enumerate() {
        let valid = decisions
            .iter()
            .filter(|d| matches!(d, Ok(Safe::Valid)))
            .count();
        assert_eq!(
            valid, 1,
            "round {r}: {valid} of {THREADS} racing conflicting requests were signed: {decisions:?}"
        );
        for d in decisions.iter().filter(|d| d.is_err()) {
            let reason = d.as_ref().unwrap_err().reason();
            assert!(
                refusals.contains(&reason),
                "round {r}: unexpected refusal {reason}"
            );
        }
        assert_eq!(
            decisions.iter().filter(|d| d.is_err()).count(),
            THREADS - 1,
            "round {r}"
        );
    }
}

#[test]
fn racing_double_block_proposals() {
    let TempDb { dir, db, .. } = TempDb::new(Some(GENESIS));
    let db = Arc::new(db);
    let rounds = race(&db, |round, i| block(pk(1), 100 + round, root(i as u8 + 1)));
    exactly_one_valid(&rounds, &["double_block_proposal"]);
    let exported = db.export_interchange().unwrap();
    assert_eq!(exported.data[0].signed_blocks.len(), ROUNDS as usize);
    drop(db);
    assert_consistent(&dir.path().join("slashing.sqlite"));
}

#[test]
fn racing_double_votes() {
    let t = TempDb::new(Some(GENESIS));
    let db = Arc::new(t.db);
    let rounds = race(&db, |round, i| {
        att(pk(1), 10 * round, 10 * round + 5, root(i as u8 + 1))
    });
    exactly_one_valid(&rounds, &["double_vote"]);
}

#[test]
fn racing_surrounding_votes() {
    let t = TempDb::new(Some(GENESIS));
    let db = Arc::new(t.db);
    // Thread i votes (base + i, base + 100 - i): every pair surrounds one another.
    let rounds = race(&db, |round, i| {
        let base = 1000 * round;
        att(pk(1), base + i as u64, base + 100 - i as u64, root(1))
    });
    exactly_one_valid(&rounds, &["surrounding_vote", "surrounded_vote"]);
}

#[test]
fn racing_cometbft_double_signs() {
    let t = TempDb::new(None);
    let db = Arc::new(t.db);
    let c = "race-1";
    let rounds = race(&db, move |round, i| {
        let mut hash = [b'h'; 32];
        hash[0] = i as u8;
        comet(1, c, vote_bytes(1, 1 + round as i64, 0, &hash, 1000, c))
    });
    exactly_one_valid(&rounds, &["double_sign"]);
}

/// Two validator nodes asking for the very same vote: one records it, every
/// other gets the re-serve answer, none is refused.
#[test]
fn racing_identical_cometbft_votes_are_re_served() {
    let t = TempDb::new(None);
    let db = Arc::new(t.db);
    let c = "race-2";
    let rounds = race(&db, move |round, i| {
        // Same vote; half of the nodes have a later timestamp.
        comet(
            1,
            c,
            vote_bytes(
                2,
                1 + round as i64,
                0,
                &[b'x'; 32],
                1000 + (i % 2) as u64,
                c,
            ),
        )
    });
    for (r, decisions) in rounds.iter().enumerate() {
        let valid = decisions
            .iter()
            .filter(|d| matches!(d, Ok(Safe::Valid)))
            .count();
        let reserved = decisions
            .iter()
            .filter(|d| matches!(d, Ok(Safe::Reserve { .. })))
            .count();
        assert_eq!(
            (valid, reserved),
            (1, THREADS - 1),
            "round {r}: {decisions:?}"
        );
    }
}

/// Many validators at once (an epoch boundary): everyone is signed, and group
/// commit needs far fewer commits than decisions.
#[test]
fn many_validators_at_once_share_commits() {
    let t = TempDb::new(Some(GENESIS));
    let db = Arc::new(t.db);
    let rounds = race(&db, |round, i| att(pk(i as u8), round, round + 1, root(1)));
    for decisions in &rounds {
        assert!(
            decisions.iter().all(|d| *d == Ok(Safe::Valid)),
            "{decisions:?}"
        );
    }
    let stats = db.stats();
    assert_eq!(stats.decisions, THREADS as u64 * ROUNDS);
    assert!(
        stats.commits < stats.decisions,
        "no group commit happened: {stats:?}"
    );
}
