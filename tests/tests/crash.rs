//! Crash safety with real processes: a child hammers the database and reports
//! each `Valid` decision only after the call returned; the parent SIGKILLs it
//! at a random moment, 50 times. After every kill, every decision ever
//! reported must still be in the database: a conflicting message is refused
//! with exactly the reported record as evidence.
//!
//! Set `CRASH_SEED` to replay a run (the seed is printed).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use slashing_db::*;

const KILLS: u64 = 50;
const THREADS: &str = "8";

/// A reported decision.
#[derive(Debug, Clone)]
enum Reported {
    Block {
        key: usize,
        slot: u64,
        root: SigningRoot,
    },
    Attestation {
        key: usize,
        source: u64,
        target: u64,
        root: SigningRoot,
    },
}

fn parse(line: &str) -> Reported {
    let f: Vec<&str> = line.split(' ').collect();
    match f.as_slice() {
        ["B", key, slot, root] => Reported::Block {
            key: key.parse().unwrap(),
            slot: slot.parse().unwrap(),
            root: SigningRoot::from_hex(root).unwrap(),
        },
        ["A", key, source, target, root] => Reported::Attestation {
            key: key.parse().unwrap(),
            source: source.parse().unwrap(),
            target: target.parse().unwrap(),
            root: SigningRoot::from_hex(root).unwrap(),
        },
        _ => panic!("child printed a line it should not: {line:?}"),
    }
}

/// xorshift64*: enough randomness for kill times, reproducible from a seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn sigkill_never_loses_a_reported_decision() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("crash test seed: CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slashing.sqlite");
    let mut reported: Vec<Reported> = Vec::new();
    let mut torn_lines = 0;
    for run in 0..KILLS {
        let base = (run + 1) * 1_000_000;
        let mut child = Command::new(env!("CARGO_BIN_EXE_slashing-hammer"))
            .arg(&path)
            .arg(base.to_string())
            .arg(THREADS)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = stdout.read_to_string(&mut buf);
            buf
        });
        std::thread::sleep(Duration::from_millis(10 + rng.next() % 90));
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("run {run}: the hammer exited by itself ({status}): {err}");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let out = reader.join().unwrap();
        // A line cut by the kill was never fully reported: ignore it.
        let complete = match out.rfind('\n') {
            Some(end) => &out[..end],
            None => "",
        };
        if complete.len() + 1 < out.len() {
            torn_lines += 1;
        }
        reported.extend(complete.lines().filter(|l| !l.is_empty()).map(parse));
        verify(&path, &reported, run);
    }
    println!(
        "crash test: {KILLS} SIGKILLs, {} reported decisions all present after every restart ({torn_lines} torn last lines ignored)",
        reported.len()
    );
    assert!(
        reported.len() > 500,
        "too few decisions to mean anything: {}",
        reported.len()
    );
}

/// Reopens the database (after the kill) and checks that every reported
/// decision is present: a conflicting message is refused with it as evidence.
fn verify(path: &std::path::Path, reported: &[Reported], run: u64) {
    let db = SlashingDb::open(
        path,
        Config {
            genesis_root: Some(tests::GENESIS),
            ..Config::default()
        },
    )
    .unwrap_or_else(|e| panic!("run {run}: database does not reopen after SIGKILL: {e}"));
    let other = SigningRoot([0xee; 32]);
    let probes: Vec<Proposal> = reported
        .iter()
        .map(|r| match *r {
            Reported::Block { key, slot, .. } => tests::block(key, slot, other),
            Reported::Attestation {
                key,
                source,
                target,
                ..
            } => tests::attestation(key, source, target, other),
        })
        .collect();
    let answers = db.check_and_record_batch(probes).unwrap();
    for (r, answer) in reported.iter().zip(answers) {
        match (r, answer) {
            (Reported::Block { slot, root, .. }, Err(NotSafe::DoubleBlockProposal { prev })) => {
                assert_eq!(
                    prev,
                    SignedBlock {
                        slot: Slot(*slot),
                        signing_root: Some(*root)
                    },
                    "run {run}"
                );
            }
            (
                Reported::Attestation {
                    source,
                    target,
                    root,
                    ..
                },
                Err(NotSafe::DoubleVote { prev }),
            ) => {
                assert_eq!(
                    prev,
                    SignedAttestation {
                        source: Epoch(*source),
                        target: Epoch(*target),
                        signing_root: Some(*root)
                    },
                    "run {run}"
                );
            }
            (r, answer) => {
                panic!("run {run}: reported {r:?} is not protected after SIGKILL: {answer:?}")
            }
        }
    }
    db.close();
}
