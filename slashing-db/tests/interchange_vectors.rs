//! The EIP-3076 interchange test suite (eth-clients/slashing-protection-interchange-tests
//! v5.3.0), run step by step against the "complete" strategy, directly and with
//! every interchange round-tripped through export → import.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::fs;

use serde::Deserialize;
use slashing_db::*;

use common::{ENGINES, TempDb};

#[derive(Deserialize)]
struct TestFile {
    name: String,
    genesis_validators_root: GenesisRoot,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
struct Step {
    should_succeed: bool,
    contains_slashable_data: bool,
    interchange: serde_json::Value,
    blocks: Vec<BlockCheck>,
    attestations: Vec<AttestationCheck>,
}

#[derive(Deserialize)]
struct BlockCheck {
    pubkey: BlsPublicKey,
    #[serde(deserialize_with = "quoted")]
    slot: u64,
    signing_root: Option<SigningRoot>,
    should_succeed_complete: bool,
}

#[derive(Deserialize)]
struct AttestationCheck {
    pubkey: BlsPublicKey,
    #[serde(deserialize_with = "quoted")]
    source_epoch: u64,
    #[serde(deserialize_with = "quoted")]
    target_epoch: u64,
    signing_root: Option<SigningRoot>,
    should_succeed_complete: bool,
}

fn quoted<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}

#[derive(Default, Debug, PartialEq, Eq)]
struct Counts {
    files: usize,
    steps: usize,
    blocks: usize,
    attestations: usize,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Direct,
    /// Each step's interchange is imported into a scratch database, exported,
    /// and the export is what the database under test imports.
    RoundTrip,
}

fn load_files() -> Vec<(String, TestFile)> {
    let dir = common::vectors_dir().join("eip3076");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let t: TestFile = serde_json::from_slice(&fs::read(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), t)
        })
        .collect()
}

fn import(
    engine: &str,
    db: &SlashingDb,
    genesis: GenesisRoot,
    file: Interchange,
    mode: Mode,
) -> Result<ImportSummary, InterchangeError> {
    match mode {
        Mode::Direct => db.import_interchange(file),
        Mode::RoundTrip => {
            let scratch = TempDb::of(engine, Some(genesis));
            scratch.db.import_interchange(file)?;
            let exported = scratch.db.export_interchange()?;
            // Through bytes, as a file would travel.
            let mut json = Vec::new();
            exported.to_writer(&mut json)?;
            db.import_interchange(Interchange::from_reader(json.as_slice())?)
        }
    }
}

fn run(engine: &str, mode: Mode) -> Counts {
    let mut counts = Counts::default();
    let mut failures = Vec::new();
    for (file_name, t) in load_files() {
        counts.files += 1;
        let under_test = TempDb::of(engine, Some(t.genesis_validators_root));
        for (i, step) in t.steps.iter().enumerate() {
            counts.steps += 1;
            let file: Interchange = serde_json::from_value(step.interchange.clone())
                .unwrap_or_else(|e| {
                    panic!("{file_name} step {i}: interchange does not parse: {e}")
                });
            let imported = import(
                engine,
                &under_test.db,
                t.genesis_validators_root,
                file,
                mode,
            );
            if imported.is_ok() != step.should_succeed {
                failures.push(format!(
                    "{file_name} ({}) step {i}: import {imported:?}, expected success={} (slashable data: {})",
                    t.name, step.should_succeed, step.contains_slashable_data
                ));
            }
            for b in &step.blocks {
                counts.blocks += 1;
                let p = Proposal::Block(BlockProposal {
                    pubkey: b.pubkey,
                    genesis_root: t.genesis_validators_root,
                    slot: Slot(b.slot),
                    signing_root: b.signing_root.unwrap_or(SigningRoot([0; 32])),
                });
                let d = under_test.db.check_and_record(p).expect("database error");
                if d.is_ok() != b.should_succeed_complete {
                    failures.push(format!(
                        "{file_name} step {i}: block slot {} root {:?}: got {d:?}, expected success={}",
                        b.slot, b.signing_root, b.should_succeed_complete
                    ));
                }
            }
            for a in &step.attestations {
                counts.attestations += 1;
                let p = Proposal::Attestation(AttestationProposal {
                    pubkey: a.pubkey,
                    genesis_root: t.genesis_validators_root,
                    source: Epoch(a.source_epoch),
                    target: Epoch(a.target_epoch),
                    signing_root: a.signing_root.unwrap_or(SigningRoot([0; 32])),
                });
                let d = under_test.db.check_and_record(p).expect("database error");
                if d.is_ok() != a.should_succeed_complete {
                    failures.push(format!(
                        "{file_name} step {i}: attestation {}→{} root {:?}: got {d:?}, expected success={}",
                        a.source_epoch, a.target_epoch, a.signing_root, a.should_succeed_complete
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} EIP-3076 checks failed ({engine}, {mode:?}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!(
        "EIP-3076 interchange vectors ({engine}, {mode:?}): {} files, {} steps, {} blocks, {} attestations — all as expected",
        counts.files, counts.steps, counts.blocks, counts.attestations
    );
    counts
}

/// The suite as published has exactly these many cases; a file that goes
/// missing or stops parsing shows up here.
const EXPECTED: Counts = Counts {
    files: 38,
    steps: 49,
    blocks: 71,
    attestations: 79,
};

#[test]
fn eip3076_vectors_complete_strategy() {
    assert_eq!(run("sqlite", Mode::Direct), EXPECTED);
}

#[test]
fn eip3076_vectors_round_tripped_through_export() {
    assert_eq!(run("sqlite", Mode::RoundTrip), EXPECTED);
}

#[test]
fn eip3076_vectors_complete_strategy_postgres() {
    assert_eq!(run("postgres", Mode::Direct), EXPECTED);
}

#[test]
fn eip3076_vectors_round_tripped_through_export_postgres() {
    assert_eq!(run("postgres", Mode::RoundTrip), EXPECTED);
}

/// Export is stable and complete: importing an export into an empty database
/// and exporting again gives the same file, for every vector's final state.
#[test]
fn export_import_export_is_a_fixed_point() {
    for engine in ENGINES {
        fixed_point(engine);
    }
}

fn fixed_point(engine: &str) {
    let mut n = 0;
    for (file_name, t) in load_files() {
        let a = TempDb::of(engine, Some(t.genesis_validators_root));
        for step in &t.steps {
            let _ =
                a.db.import_interchange(serde_json::from_value(step.interchange.clone()).unwrap());
        }
        let Ok(first) = a.db.export_interchange() else {
            continue;
        };
        let b = TempDb::of(engine, None);
        b.db.import_interchange(first.clone()).unwrap();
        let second = b.db.export_interchange().unwrap();
        assert_eq!(
            first, second,
            "{engine}: {file_name}: export → import → export changed the history"
        );
        n += 1;
    }
    // Every database here was pinned to a network at creation, so every one exports.
    assert_eq!(n, EXPECTED.files);
}
