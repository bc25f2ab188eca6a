//! Every rule, as tables of steps with the expected answer per step. The
//! tables run against each engine in `engines()`: SQLite and PostgreSQL (a
//! real server the harness starts), from the same tables.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use slashing_db::*;

use common::*;

/// What a step must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Valid,
    SameData,
    /// CometBFT re-serve; the flag is `timestamp_only`.
    Reserve(bool),
    /// Refused with this [`NotSafe::reason`].
    Refused(&'static str),
}

use Expect::*;

fn classify(d: &Decision) -> Expect {
    match d {
        Ok(Safe::Valid) => Valid,
        Ok(Safe::SameData) => SameData,
        Ok(Safe::Reserve { timestamp_only, .. }) => Reserve(*timestamp_only),
        Err(n) => Refused(n.reason()),
    }
}

fn engines() -> Vec<(&'static str, TempDb)> {
    ENGINES
        .iter()
        .map(|e| (*e, TempDb::of(e, Some(GENESIS))))
        .collect()
}

fn run_table(name: &str, steps: &[(Proposal, Expect)]) {
    for (engine, t) in engines() {
        for (i, (p, want)) in steps.iter().enumerate() {
            let d = t.db.check_and_record(p.clone()).unwrap();
            assert_eq!(
                classify(&d),
                *want,
                "{engine}: {name}, step {i}: {p:?} answered {d:?}"
            );
        }
    }
}

const A: u8 = 1;
const B: u8 = 2;

#[test]
fn blocks() {
    let v = pk(1);
    run_table(
        "blocks",
        &[
            (block(v, 100, root(A)), Valid),
            (block(v, 100, root(A)), SameData),
            (block(v, 100, root(B)), Refused("double_block_proposal")),
            (block(v, 101, root(B)), Valid),
            (block(v, 99, root(A)), Refused("block_below_low_watermark")),
            (block(v, 100, root(B)), Refused("double_block_proposal")),
            // The lowest recorded slot is the watermark: at it, only a repeat passes.
            (block(v, 100, root(A)), SameData),
            (block(v, 200, root(A)), Valid),
            (block(v, 150, root(A)), Valid), // complete history: a gap above the bottom is fine
            // Other validators are independent.
            (block(pk(2), 100, root(B)), Valid),
            (
                block(pk(2), 50, root(B)),
                Refused("block_below_low_watermark"),
            ),
        ],
    );
}

#[test]
fn attestations() {
    let v = pk(1);
    run_table(
        "attestations",
        &[
            (att(v, 10, 11, root(A)), Valid),
            (att(v, 10, 11, root(A)), SameData),
            (att(v, 10, 11, root(B)), Refused("double_vote")),
            (att(v, 9, 11, root(A)), Refused("double_vote")),
            (att(v, 12, 11, root(A)), Refused("source_exceeds_target")),
            (att(v, 11, 12, root(A)), Valid),
            (att(v, 12, 20, root(A)), Valid),
            // Surrounded by (12, 20).
            (att(v, 13, 19, root(A)), Refused("surrounded_vote")),
            // Surrounds (12, 20).
            (att(v, 11, 21, root(A)), Refused("surrounding_vote")),
            (att(v, 20, 21, root(A)), Valid),
            // Below the lowest recorded source (10); the source bound is checked first.
            (
                att(v, 9, 10, root(A)),
                Refused("source_below_low_watermark"),
            ),
            // At or below the lowest recorded target (11).
            (
                att(v, 10, 10, root(A)),
                Refused("target_below_low_watermark"),
            ),
        ],
    );
    let w = pk(2);
    run_table(
        "attestation source watermark",
        &[
            (att(w, 5, 10, root(A)), Valid),
            (att(w, 4, 7, root(A)), Refused("source_below_low_watermark")),
            (att(w, 5, 9, root(A)), Refused("target_below_low_watermark")),
            (att(w, 5, 11, root(A)), Valid),
            (att(w, 10, 10, root(A)), Refused("double_vote")),
            (att(w, 11, 12, root(A)), Valid),
        ],
    );
}

#[test]
fn refusals_carry_the_conflicting_record_as_evidence() {
    for engine in ENGINES {
        let t = TempDb::of(engine, Some(GENESIS));
        let v = pk(1);
        t.db.check_and_record(block(v, 7, root(A)))
            .unwrap()
            .unwrap();
        t.db.check_and_record(att(v, 3, 8, root(A)))
            .unwrap()
            .unwrap();
        let prev_block = SignedBlock {
            slot: Slot(7),
            signing_root: Some(root(A)),
        };
        let prev_att = SignedAttestation {
            source: Epoch(3),
            target: Epoch(8),
            signing_root: Some(root(A)),
        };
        assert_eq!(
            t.db.check_and_record(block(v, 7, root(B))).unwrap(),
            Err(NotSafe::DoubleBlockProposal { prev: prev_block })
        );
        assert_eq!(
            t.db.check_and_record(att(v, 3, 8, root(B))).unwrap(),
            Err(NotSafe::DoubleVote {
                prev: prev_att.clone()
            })
        );
        assert_eq!(
            t.db.check_and_record(att(v, 2, 9, root(B))).unwrap(),
            Err(NotSafe::SurroundingVote {
                prev: prev_att.clone()
            })
        );
        assert_eq!(
            t.db.check_and_record(att(v, 4, 7, root(B))).unwrap(),
            Err(NotSafe::SurroundedVote { prev: prev_att })
        );
        assert_eq!(
            t.db.check_and_record(block(v, 6, root(B))).unwrap(),
            Err(NotSafe::BlockBelowLowWatermark {
                slot: Slot(6),
                low_watermark: Slot(7)
            })
        );
    }
}

#[test]
fn one_database_protects_one_network() {
    let other = GenesisRoot([0x99; 32]);
    let mut p = block(pk(1), 1, root(A));
    if let Proposal::Block(b) = &mut p {
        b.genesis_root = other;
    }
    for (engine, t) in engines() {
        assert_eq!(
            t.db.check_and_record(p.clone()).unwrap(),
            Err(NotSafe::WrongGenesisRoot {
                expected: GENESIS,
                got: other
            }),
            "{engine}"
        );
    }
    // Without a configured root, the first request pins it.
    for engine in ENGINES {
        let t = TempDb::of(engine, None);
        assert_eq!(t.db.genesis_root().unwrap(), None);
        assert_eq!(t.db.check_and_record(p.clone()).unwrap(), Ok(Safe::Valid));
        assert_eq!(t.db.genesis_root().unwrap(), Some(other));
        assert_eq!(
            t.db.check_and_record(block(pk(1), 2, root(A))).unwrap(),
            Err(NotSafe::WrongGenesisRoot {
                expected: other,
                got: GENESIS
            }),
            "{engine}"
        );
    }
}

#[test]
fn a_batch_is_decided_in_order_and_allows_at_most_one_of_a_conflict() {
    for engine in ENGINES {
        let t = TempDb::of(engine, Some(GENESIS));
        let v = pk(1);
        let answers =
            t.db.check_and_record_batch(vec![
                block(v, 5, root(A)),
                block(v, 5, root(B)),
                att(v, 1, 2, root(A)),
                att(v, 0, 3, root(A)),
                att(v, 1, 2, root(A)),
                block(pk(2), 5, root(B)),
            ])
            .unwrap();
        let got: Vec<Expect> = answers.iter().map(classify).collect();
        assert_eq!(
            got,
            [
                Valid,
                Refused("double_block_proposal"),
                Valid,
                Refused("surrounding_vote"),
                SameData,
                Valid
            ]
        );
        assert_eq!(
            t.db.stats().commits,
            1,
            "one durable commit for the whole batch"
        );
    }
}

/// Gloas payload attestations and envelopes: one message per key, lane and
/// slot, slots only rising; lanes and keys independent of each other and of
/// blocks at the same slot.
#[test]
fn gloas_messages_are_one_per_slot_and_never_go_back() {
    let (v, w) = (pk(1), pk(2));
    let ptc = Lane::PayloadAttestation;
    let env = Lane::PayloadEnvelope;
    run_table(
        "gloas messages",
        &[
            (message(v, ptc, 10, root(A)), Valid),
            (message(v, ptc, 10, root(A)), SameData),
            (message(v, ptc, 10, root(B)), Refused("equivocation")),
            (message(v, ptc, 9, root(A)), Refused("stale_message")),
            (message(v, env, 10, root(B)), Valid),
            (message(w, ptc, 10, root(B)), Valid),
            (block(v, 10, root(B)), Valid),
            (message(v, ptc, 11, root(B)), Valid),
            // The slot-10 record is replaced by slot 11: slot 10 is now stale, not a repeat.
            (message(v, ptc, 10, root(A)), Refused("stale_message")),
            (message(v, env, 10, root(A)), Refused("equivocation")),
        ],
    );
}

/// A batch mixing Gloas messages with blocks, attestations and CometBFT
/// votes is decided in order, in one commit (PostgreSQL decides such a batch
/// question by question, with its locks taken up front).
#[test]
fn a_batch_with_gloas_messages_is_decided_in_order_in_one_commit() {
    for engine in ENGINES {
        let t = TempDb::of(engine, Some(GENESIS));
        let v = pk(1);
        let ptc = Lane::PayloadAttestation;
        let answers =
            t.db.check_and_record_batch(vec![
                block(v, 5, root(A)),
                message(v, ptc, 5, root(A)),
                message(v, ptc, 5, root(B)),
                att(v, 1, 2, root(A)),
                message(pk(2), ptc, 5, root(B)),
                message(v, ptc, 5, root(A)),
            ])
            .unwrap();
        let got: Vec<Expect> = answers.iter().map(classify).collect();
        assert_eq!(
            got,
            [
                Valid,
                Valid,
                Refused("equivocation"),
                Valid,
                Valid,
                SameData
            ],
            "{engine}"
        );
        assert_eq!(t.db.stats().commits, 1, "{engine}: one durable commit");
        // And it is durable: the next batch sees it.
        assert_eq!(
            classify(&t.db.check_and_record(message(v, ptc, 5, root(B))).unwrap()),
            Refused("equivocation"),
            "{engine}"
        );
    }
}

/// CometBFT: the double-sign rule of CometBFT's own file signer.
#[test]
fn cometbft_height_round_step() {
    let h = b"block-hash-aaaaaaaaaaaaaaaaaaaaa!";
    let g = b"block-hash-bbbbbbbbbbbbbbbbbbbbb!";
    const PREVOTE: u8 = 1;
    const PRECOMMIT: u8 = 2;
    let c = "cosmoshub-4";
    run_table(
        "cometbft",
        &[
            (comet(1, c, proposal_bytes(10, 0, h, 1000, c)), Valid),
            (
                comet(1, c, proposal_bytes(10, 0, h, 1000, c)),
                Reserve(false),
            ),
            (
                comet(1, c, proposal_bytes(10, 0, h, 1001, c)),
                Reserve(true),
            ),
            (
                comet(1, c, proposal_bytes(10, 0, g, 1000, c)),
                Refused("double_sign"),
            ),
            (comet(1, c, vote_bytes(PREVOTE, 10, 0, h, 1002, c)), Valid),
            (
                comet(1, c, vote_bytes(PREVOTE, 10, 0, h, 1002, c)),
                Reserve(false),
            ),
            (
                comet(1, c, vote_bytes(PREVOTE, 10, 0, h, 1003, c)),
                Reserve(true),
            ),
            (
                comet(1, c, vote_bytes(PREVOTE, 10, 0, g, 1002, c)),
                Refused("double_sign"),
            ),
            // A nil prevote (no block id) is a different message too.
            (
                comet(1, c, vote_bytes(PREVOTE, 10, 0, b"", 1002, c)),
                Refused("double_sign"),
            ),
            (
                comet(1, c, proposal_bytes(10, 0, h, 1000, c)),
                Refused("step_regression"),
            ),
            (comet(1, c, vote_bytes(PRECOMMIT, 10, 0, h, 1004, c)), Valid),
            (
                comet(1, c, vote_bytes(PREVOTE, 10, 0, h, 1002, c)),
                Refused("step_regression"),
            ),
            (comet(1, c, vote_bytes(PREVOTE, 10, 1, g, 1005, c)), Valid),
            (
                comet(1, c, vote_bytes(PRECOMMIT, 10, 0, h, 1004, c)),
                Refused("round_regression"),
            ),
            (
                comet(1, c, vote_bytes(PREVOTE, 9, 5, h, 1006, c)),
                Refused("height_regression"),
            ),
            (comet(1, c, vote_bytes(PREVOTE, 11, 0, h, 1007, c)), Valid),
            // Other chains and other keys are independent.
            (
                comet(1, "osmosis-1", vote_bytes(PREVOTE, 3, 0, h, 1, "osmosis-1")),
                Valid,
            ),
            (comet(2, c, vote_bytes(PREVOTE, 1, 0, h, 1, c)), Valid),
        ],
    );
}

#[test]
fn cometbft_reserve_returns_the_stored_bytes() {
    for engine in ENGINES {
        let t = TempDb::of(engine, None);
        let c = "cosmoshub-4";
        let first = vote_bytes(2, 7, 0, b"block-hash-aaaaaaaaaaaaaaaaaaaaa!", 1000, c);
        assert_eq!(
            t.db.check_and_record(comet(1, c, first.clone())).unwrap(),
            Ok(Safe::Valid)
        );
        // Timestamp-only change before the signature is stored: re-sign the stored bytes.
        let later = vote_bytes(2, 7, 0, b"block-hash-aaaaaaaaaaaaaaaaaaaaa!", 2000, c);
        match t.db.check_and_record(comet(1, c, later.clone())).unwrap() {
            Ok(Safe::Reserve {
                stored,
                timestamp_only: true,
            }) => {
                assert_eq!(
                    stored.sign_bytes, first,
                    "the stored timestamp is served, not the new one"
                );
                assert_eq!(stored.signature, None);
            }
            other => panic!("expected a timestamp-only re-serve, got {other:?}"),
        }
        // The same bytes again (a node that lost the answer): re-served as
        // they are, nothing new recorded.
        match t.db.check_and_record(comet(1, c, first.clone())).unwrap() {
            Ok(Safe::Reserve {
                stored,
                timestamp_only: false,
            }) => assert_eq!(stored.sign_bytes, first),
            other => panic!("expected an exact re-serve, got {other:?}"),
        }
        let states = t.db.cometbft_states().unwrap();
        assert_eq!(states.len(), 1);
        assert_eq!(
            states[0].2.hrs,
            Hrs {
                height: Height(7),
                round: 0,
                step: Step::Precommit
            }
        );
    }
}

#[test]
fn cometbft_sign_bytes_must_name_the_chain_they_are_for() {
    let bytes = vote_bytes(1, 5, 0, b"h", 1, "chain-a");
    assert_eq!(
        CometProposal::from_sign_bytes(comet_key(1), chain("chain-b"), bytes),
        Err(SignBytesError::ChainIdMismatch)
    );
}

/// History for the pruning tests: blocks at slots 10..=30 and attestations
/// (t-1, t) for t in 10..=30, recorded in one batch.
fn history(t: &TempDb) {
    history_of(t, pk(1));
}

fn history_of(t: &TempDb, v: BlsPublicKey) {
    let mut batch: Vec<Proposal> = (10..=30).map(|s| block(v, s, root(A))).collect();
    batch.extend((10..=30).map(|t| att(v, t - 1, t, root(A))));
    for d in t.db.check_and_record_batch(batch).unwrap() {
        assert_eq!(d, Ok(Safe::Valid));
    }
}

#[test]
fn pruning_deletes_old_history_and_raises_watermarks() {
    for engine in ENGINES {
        let t = TempDb::of(engine, Some(GENESIS));
        history(&t);
        let summary =
            t.db.prune(PruneConfig {
                keep_slots: 5,
                keep_epochs: 5,
            })
            .unwrap();
        assert_eq!(
            summary,
            PruneSummary {
                blocks: 15,
                attestations: 15
            }
        );
        let t = t.reopen();
        let v = pk(1);
        let exported = t.db.export_interchange().unwrap();
        let blocks: Vec<u64> = exported.data[0]
            .signed_blocks
            .iter()
            .map(|b| b.slot)
            .collect();
        // Slot 24 is the watermark (highest deleted), exported as a root-less record.
        assert_eq!(blocks, [24, 25, 26, 27, 28, 29, 30]);
        assert_eq!(exported.data[0].signed_blocks[0].signing_root, None);
        let targets: Vec<u64> = exported.data[0]
            .signed_attestations
            .iter()
            .map(|a| a.target_epoch)
            .collect();
        assert_eq!(targets, [24, 25, 26, 27, 28, 29, 30]);
        let want = [
            (block(v, 12, root(A)), Refused("block_below_low_watermark")),
            (block(v, 24, root(A)), Refused("block_below_low_watermark")),
            (block(v, 25, root(B)), Refused("double_block_proposal")),
            (block(v, 25, root(A)), SameData),
            (block(v, 31, root(B)), Valid),
            (
                att(v, 23, 24, root(B)),
                Refused("source_below_low_watermark"),
            ),
            (
                att(v, 24, 24, root(B)),
                Refused("target_below_low_watermark"),
            ),
            (att(v, 5, 40, root(B)), Refused("surrounding_vote")),
            (att(v, 30, 31, root(B)), Valid),
        ];
        for (i, (p, e)) in want.iter().enumerate() {
            assert_eq!(
                classify(&t.db.check_and_record(p.clone()).unwrap()),
                *e,
                "after prune, step {i}: {p:?}"
            );
        }
    }
}

/// The property behind pruning: on copies of the same history, every message
/// refused before pruning is refused after it, and by a database that
/// imported the pruned export. Each probe has a validator of its own (with
/// the same history), so one set of three databases serves all probes.
#[test]
fn pruning_never_makes_a_refused_message_signable() {
    #[derive(Clone, Copy)]
    enum Probe {
        Block(u64, u8),
        Att(u64, u64, u8),
    }
    let make = |p: Probe, v: BlsPublicKey| match p {
        Probe::Block(slot, r) => block(v, slot, root(r)),
        Probe::Att(s, t, r) => att(v, s, t, root(r)),
    };
    let mut probes = Vec::new();
    for slot in (0..=34).step_by(2) {
        probes.push(Probe::Block(slot, A));
        probes.push(Probe::Block(slot, B));
    }
    for source in (0..=33).step_by(3) {
        for target in (source..=35).step_by(4) {
            probes.push(Probe::Att(source, target, A));
            probes.push(Probe::Att(source, target, B));
        }
    }
    assert!(probes.len() < 255, "one validator (pk) per probe");
    let validator = |i: usize| pk(u8::try_from(i + 1).unwrap());
    for engine in ENGINES {
        let full = TempDb::of(engine, Some(GENESIS));
        let pruned = TempDb::of(engine, Some(GENESIS));
        for (i, _) in probes.iter().enumerate() {
            history_of(&full, validator(i));
            history_of(&pruned, validator(i));
        }
        pruned
            .db
            .prune(PruneConfig {
                keep_slots: 5,
                keep_epochs: 5,
            })
            .unwrap();
        let imported = TempDb::of(engine, None);
        imported
            .db
            .import_interchange(pruned.db.export_interchange().unwrap())
            .unwrap();
        let (mut refused, mut stricter) = (0, 0);
        for (i, probe) in probes.iter().enumerate() {
            let p = make(*probe, validator(i));
            let before = full.db.check_and_record(p.clone()).unwrap();
            let after = pruned.db.check_and_record(p.clone()).unwrap();
            let elsewhere = imported.db.check_and_record(p.clone()).unwrap();
            if before.is_err() {
                refused += 1;
                assert!(
                    after.is_err(),
                    "{engine}: {p:?}: refused before pruning ({before:?}) but {after:?} after"
                );
                assert!(
                    elsewhere.is_err(),
                    "{engine}: {p:?}: refused before pruning ({before:?}) but {elsewhere:?} after export"
                );
            } else if after.is_err() {
                stricter += 1;
            }
        }
        println!(
            "pruning property ({engine}): {} probes, {refused} refused before and after, {stricter} newly refused",
            probes.len()
        );
        assert!(
            refused > 50 && stricter > 0,
            "the probes must exercise both sides"
        );
        full.close_and_check();
        pruned.close_and_check();
        imported.close_and_check();
    }
}

#[test]
fn import_merges_conflicting_roots_into_unknown() {
    for engine in ENGINES {
        let t = TempDb::of(engine, Some(GENESIS));
        let v = pk(1);
        t.db.check_and_record(block(v, 10, root(A)))
            .unwrap()
            .unwrap();
        t.db.check_and_record(att(v, 1, 2, root(A)))
            .unwrap()
            .unwrap();
        let file = format!(
            r#"{{"metadata": {{"interchange_format_version": "5", "genesis_validators_root": "{}"}},
                "data": [{{"pubkey": "{}",
                          "signed_blocks": [{{"slot": "10", "signing_root": "{}"}}, {{"slot": "12"}}],
                          "signed_attestations": [{{"source_epoch": "1", "target_epoch": "2", "signing_root": "{}"}}]}}]}}"#,
            GENESIS,
            v,
            root(B),
            root(A)
        );
        let summary =
            t.db.import_interchange(Interchange::from_reader(file.as_bytes()).unwrap())
                .unwrap();
        assert_eq!(
            summary,
            ImportSummary {
                validators: 1,
                blocks: 2,
                attestations: 1
            }
        );
        // Slot 10 now has two known roots: nothing may be signed there any more.
        assert_eq!(
            classify(&t.db.check_and_record(block(v, 10, root(A))).unwrap()),
            Refused("double_block_proposal")
        );
        // Identical attestation: still a repeat.
        assert_eq!(
            classify(&t.db.check_and_record(att(v, 1, 2, root(A))).unwrap()),
            SameData
        );
        assert_eq!(
            classify(&t.db.check_and_record(block(v, 12, root(A))).unwrap()),
            Refused("double_block_proposal")
        );
    }
}

/// A vote costs exactly one commit (one fsync): nothing is written after
/// signing (decision 0012). What was recorded survives a close, and a
/// repeat after reopening is re-served from it.
#[test]
fn a_cometbft_vote_costs_one_commit_and_survives_close() {
    for engine in ENGINES {
        let t = TempDb::of(engine, None);
        let c = "chain-s";
        let mut commits = t.db.stats().commits;
        for height in 1..=5 {
            for step in [1, 2] {
                let bytes = vote_bytes(
                    step,
                    height,
                    0,
                    b"block-hash-aaaaaaaaaaaaaaaaaaaaa!",
                    1000,
                    c,
                );
                assert_eq!(
                    t.db.check_and_record(comet(1, c, bytes)).unwrap(),
                    Ok(Safe::Valid)
                );
                let now = t.db.stats().commits;
                assert_eq!(now, commits + 1, "{engine}: one commit per vote");
                commits = now;
            }
        }
        let last = vote_bytes(2, 5, 0, b"block-hash-aaaaaaaaaaaaaaaaaaaaa!", 1000, c);
        let t = t.reopen();
        match t.db.check_and_record(comet(1, c, last.clone())).unwrap() {
            Ok(Safe::Reserve {
                stored,
                timestamp_only: false,
            }) => {
                assert_eq!(stored.sign_bytes, last);
                assert_eq!(stored.signature, None, "no signature is stored");
            }
            other => panic!("expected a re-serve of the recorded vote, got {other:?}"),
        }
        t.close_and_check();
    }
}

#[test]
fn audit_anchors_move_only_from_what_the_mover_last_saw() {
    for (engine, t) in engines() {
        let a = |records: u64, byte: u8| AuditAnchor {
            records,
            head: [byte; 32],
        };
        assert_eq!(
            t.db.audit_anchor("host-a:/var/audit.jsonl").unwrap(),
            None,
            "{engine}"
        );
        assert!(
            t.db.set_audit_anchor("host-a:/var/audit.jsonl", None, &a(3, 1))
                .unwrap()
        );
        // A second "first" anchor under the same name loses.
        assert!(
            !t.db
                .set_audit_anchor("host-a:/var/audit.jsonl", None, &a(9, 9))
                .unwrap(),
            "{engine}"
        );
        // Moving from a stale position loses and writes nothing.
        assert!(
            !t.db
                .set_audit_anchor("host-a:/var/audit.jsonl", Some(&a(2, 1)), &a(9, 9))
                .unwrap()
        );
        assert!(
            t.db.set_audit_anchor("host-a:/var/audit.jsonl", Some(&a(3, 1)), &a(5, 2))
                .unwrap()
        );
        assert!(
            t.db.set_audit_anchor("host-b:/var/audit.jsonl", None, &a(1, 7))
                .unwrap()
        );
        assert_eq!(
            t.db.audit_anchor("host-a:/var/audit.jsonl").unwrap(),
            Some(a(5, 2)),
            "{engine}"
        );
        assert_eq!(
            t.db.audit_anchors().unwrap(),
            vec![
                ("host-a:/var/audit.jsonl".to_owned(), a(5, 2)),
                ("host-b:/var/audit.jsonl".to_owned(), a(1, 7)),
            ],
            "{engine}: listed by name, and the network pin in `meta` is not one"
        );
        // The history is untouched by anchors, and the network pin stays.
        assert_eq!(t.db.genesis_root().unwrap(), Some(GENESIS), "{engine}");
    }
}

#[test]
fn key_states_are_shared_through_the_database_and_retirement_is_final() {
    for (engine, t) in engines() {
        let state = |state, reason: &str| KeyState {
            state,
            reason: reason.into(),
            by: "ops".into(),
            at: "2026-12-06T00:00:00.000Z".into(),
        };
        let (a, b) = (vec![1u8; 48], vec![2u8; 32]);
        assert_eq!(t.db.key_states().unwrap(), vec![], "{engine}");
        let disabled = state(Lifecycle::Disabled, "exiting");
        assert!(disabled.refuses());
        assert_eq!(t.db.set_key_state(&a, &disabled).unwrap(), Ok(None));
        let retired = state(Lifecycle::Retired, "rotated");
        assert!(retired.refuses());
        assert_eq!(t.db.set_key_state(&b, &retired).unwrap(), Ok(None));
        assert_eq!(
            t.db.key_states().unwrap(),
            vec![(a.clone(), disabled.clone()), (b.clone(), retired.clone())],
            "{engine}"
        );
        // Enabled again: the state before is returned, who enabled it kept.
        let enabled = state(Lifecycle::Enabled, "exit cancelled");
        assert!(!enabled.refuses());
        assert_eq!(
            t.db.set_key_state(&a, &enabled).unwrap(),
            Ok(Some(disabled)),
            "{engine}"
        );
        // Retired stays retired, whatever is asked.
        for new in [&enabled, &state(Lifecycle::Disabled, "x")] {
            assert!(
                matches!(
                    t.db.set_key_state(&b, new).unwrap(),
                    Err(KeyStateError::Retired { ref reason, .. }) if reason == "rotated"
                ),
                "{engine}"
            );
        }
        assert_eq!(
            t.db.key_states().unwrap(),
            vec![(a.clone(), enabled.clone()), (b.clone(), retired)],
            "{engine}"
        );
        // The history and the network pin are not touched.
        assert_eq!(t.db.genesis_root().unwrap(), Some(GENESIS), "{engine}");
        assert_eq!(t.db.audit_anchors().unwrap(), vec![], "{engine}");
    }
}

/// The database's CometBFT decisions equal the rules' own, applied to a model
/// that keeps the last record in memory: random votes over a few heights,
/// rounds, steps, blocks and timestamps, for two keys, on both engines.
#[test]
fn cometbft_decisions_match_the_rules_on_random_votes() {
    use slashing_db::rules::cometbft;
    use std::collections::HashMap;
    for engine in ENGINES {
        let t = TempDb::of(engine, None);
        let c = "chain-m";
        let mut model: HashMap<u8, slashing_db::CometRecord> = HashMap::new();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut seen = HashMap::new();
        for i in 0..600 {
            let key = 1 + next(2) as u8;
            // Heights creep up so that later positions, repeats and
            // regressions all occur.
            let height = 1 + (i / 40) as i64 + next(3) as i64 - 1;
            let (kind, round) = (1 + next(2) as u8, next(2) as i64);
            let block: &[u8] = if next(4) == 0 { b"block-b" } else { b"block-a" };
            let ts = 1000 + next(2);
            let p = comet(key, c, vote_bytes(kind, height.max(1), round, block, ts, c));
            let Proposal::CometBft(cp) = &p else {
                unreachable!()
            };
            let expected = cometbft::check(cp, model.get(&key));
            let got = t.db.check_and_record(p.clone()).unwrap();
            assert_eq!(
                got,
                expected,
                "{engine}: vote {i} (key {key}, {:?})",
                cp.hrs()
            );
            if expected == Ok(Safe::Valid) {
                model.insert(
                    key,
                    slashing_db::CometRecord {
                        hrs: cp.hrs(),
                        sign_bytes: cp.sign_bytes().to_vec(),
                        signature: None,
                    },
                );
            }
            let kind = match &got {
                Ok(Safe::Valid) => "valid",
                Ok(Safe::Reserve { .. }) => "reserve",
                Ok(_) => "other safe",
                Err(_) => "refused",
            };
            *seen.entry(kind).or_insert(0) += 1;
        }
        println!("CometBFT model check ({engine}): 600 votes, {seen:?}");
        for kind in ["valid", "reserve", "refused"] {
            assert!(
                seen.get(kind).copied().unwrap_or(0) >= 20,
                "{engine}: too few {kind}: {seen:?}"
            );
        }
        t.close_and_check();
    }
}
