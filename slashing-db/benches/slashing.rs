//! `cargo bench -p slashing-db [-- --validators N --attestations M --seconds S]`
//!
//! Prints, in one run and on one disk (the target directory's, not a tmpfs):
//! 1. the raw durable-commit rate: overwrite 4 KiB and `fdatasync`, in a loop —
//!    the baseline, what any durable database on this disk can at best do;
//! 2. decisions/s with one caller (target ≥ 0.8 × the raw rate);
//! 3. decisions/s with 64 concurrent callers through group commit (target ≥ 20,000/s);
//! 4. the time to parse and import an EIP-3076 interchange of N validators with
//!    M attestations each (default 10,000 × 1,000), and the one-caller rate on
//!    the resulting database.
//!
//! With `-- --engine postgres` instead: a PostgreSQL cluster started in the
//! target directory (same disk), its baseline (one autocommit `INSERT`, i.e.
//! one round trip and one durable commit, in a loop from one client), and
//! figures 2 and 3 on the PostgreSQL engine.
//!
//! No assertions: figures and ratios go to `docs/performance.md`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use slashing_db::interchange::{InterchangeAttestation, Metadata, ValidatorHistory};
use slashing_db::*;

const GENESIS: GenesisRoot = GenesisRoot([0x42; 32]);

#[path = "../tests/common/pg.rs"]
mod pg;

struct Args {
    postgres: bool,
    validators: u64,
    attestations: u64,
    seconds: f64,
}

fn args() -> Args {
    let mut a = Args {
        postgres: false,
        validators: 10_000,
        attestations: 1_000,
        seconds: 3.0,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let next = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--validators" => a.validators = next.parse().expect("--validators N"),
            "--attestations" => a.attestations = next.parse().expect("--attestations M"),
            "--seconds" => a.seconds = next.parse().expect("--seconds S"),
            "--engine" => a.postgres = next == "postgres",
            _ => {
                i += 1;
                continue; // cargo passes --bench
            }
        }
        i += 2;
    }
    a
}

fn pubkey(i: u64) -> BlsPublicKey {
    let mut b = [0x8a; 48];
    b[..8].copy_from_slice(&i.to_be_bytes());
    BlsPublicKey(b)
}

fn root(i: u64, j: u64) -> SigningRoot {
    let mut r = [0x11; 32];
    r[..8].copy_from_slice(&i.to_be_bytes());
    r[8..16].copy_from_slice(&j.to_be_bytes());
    SigningRoot(r)
}

fn attestation(v: u64, target: u64) -> Proposal {
    Proposal::Attestation(AttestationProposal {
        pubkey: pubkey(v),
        genesis_root: GENESIS,
        source: Epoch(target - 1),
        target: Epoch(target),
        signing_root: root(v, target),
    })
}

fn open(path: &Path) -> SlashingDb {
    SlashingDb::open(
        path,
        Config {
            genesis_root: Some(GENESIS),
            ..Config::default()
        },
    )
    .unwrap()
}

/// Overwrite one 4 KiB block and fdatasync, for `secs`: durable commits/s.
fn raw_fdatasync(dir: &Path, secs: f64) -> f64 {
    let path = dir.join("raw-fsync");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.write_all(&[0u8; 1 << 20]).unwrap();
    f.sync_all().unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let block = [0x5au8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        f.write_all_at(&block, (n % 256) * 4096).unwrap();
        f.sync_data().unwrap();
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    fs::remove_file(&path).unwrap();
    rate
}

/// One caller, one decision at a time, for `secs`; validators rotate so that
/// the working set is realistic. Returns decisions/s.
fn one_caller(db: &SlashingDb, first_target: u64, validators: u64, secs: f64) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let v = n % validators;
        let target = first_target + n / validators;
        assert_eq!(
            db.check_and_record(attestation(v, target)).unwrap(),
            Ok(Safe::Valid)
        );
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// `callers` threads, each its own validator, `per_caller` attestations each.
fn many_callers(db: &Arc<SlashingDb>, callers: u64, per_caller: u64) -> (f64, u64, u64) {
    let before = db.stats();
    let barrier = Arc::new(Barrier::new(callers as usize + 1));
    let handles: Vec<_> = (0..callers)
        .map(|c| {
            let (db, barrier) = (db.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for t in 1..=per_caller {
                    assert_eq!(
                        db.check_and_record(attestation(1_000_000 + c, t)).unwrap(),
                        Ok(Safe::Valid)
                    );
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = db.stats();
    (
        (callers * per_caller) as f64 / elapsed,
        after.commits - before.commits,
        after.decisions - before.decisions,
    )
}

fn write_interchange(path: &Path, validators: u64, attestations: u64) -> u64 {
    let file = Interchange {
        metadata: Metadata {
            interchange_format_version: "5".into(),
            genesis_validators_root: GENESIS,
        },
        data: (0..validators)
            .map(|v| ValidatorHistory {
                pubkey: pubkey(v),
                signed_blocks: Vec::new(),
                signed_attestations: (1..=attestations)
                    .map(|t| InterchangeAttestation {
                        source_epoch: t - 1,
                        target_epoch: t,
                        signing_root: Some(root(v, t)),
                    })
                    .collect(),
            })
            .collect(),
    };
    file.to_writer(fs::File::create(path).unwrap()).unwrap();
    fs::metadata(path).unwrap().len()
}

fn line(figure: &str, value: String, baseline: String, ratio: &str, target: &str, met: &str) {
    println!("{figure:<44} {value:>14} {baseline:>14} {ratio:>7} {target:>12} {met:>4}");
}

fn fmt_rate(r: f64) -> String {
    let n = r.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out + "/s"
}

/// One autocommit INSERT per round trip, for `secs`: durable commits/s.
/// Autocommit `insert` ($1 = a counter) after `setup`, one at a time, for
/// `secs`: one round trip and one WAL flush each. Returns commits/s.
fn pg_commits(c: &pg::PgCluster, schema: &str, setup: &str, insert: &str, secs: f64) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = c
            .config(schema)
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("SET synchronous_commit = on; {setup}"))
            .await
            .unwrap();
        let st = client.prepare(insert).await.unwrap();
        let start = Instant::now();
        let mut n = 0i64;
        while start.elapsed().as_secs_f64() < secs {
            client.execute(&st, &[&n]).await.unwrap();
            n += 1;
        }
        n as f64 / start.elapsed().as_secs_f64()
    })
}

/// Rows 2 and 3 for `db`: one caller (after a warm-up that registers the
/// validators), then 64 callers with `per_caller` decisions each.
fn decision_rows(db: SlashingDb, raw: f64, what: &str, per_caller: u64, secs: f64) {
    one_caller(&db, 1, 64, 0.5);
    let single = one_caller(&db, 1_000, 64, secs);
    let ratio = single / raw;
    line(
        &format!("decisions/s, 1 caller ({what})"),
        fmt_rate(single),
        fmt_rate(raw),
        &format!("{ratio:.2}"),
        "≥ 0.80×",
        if ratio >= 0.8 { "yes" } else { "no" },
    );
    let db = Arc::new(db);
    let (rate, commits, decisions) = many_callers(&db, 64, per_caller);
    line(
        &format!("decisions/s, 64 callers ({what})"),
        fmt_rate(rate),
        fmt_rate(raw),
        &format!("{:.1}", rate / raw),
        "≥ 20,000/s",
        if rate >= 20_000.0 { "yes" } else { "no" },
    );
    println!(
        "    {decisions} decisions in {commits} commits: {:.1} decisions per commit",
        decisions as f64 / commits as f64
    );
}

fn postgres_figures(base: &Path, secs: f64) {
    // On the target directory's disk, like the SQLite figures.
    let cluster = pg::PgCluster::start_in(base, "");
    println!(
        "postgres: cluster in {} (port {})",
        cluster.dir.path().display(),
        cluster.port
    );
    let raw_schema = cluster.new_schema();
    let raw = pg_commits(
        &cluster,
        &raw_schema,
        "CREATE TABLE raw_commits (n bigint)",
        "INSERT INTO raw_commits VALUES ($1)",
        secs,
    );
    line(
        "raw INSERT + COMMIT round trip",
        fmt_rate(raw),
        "-".into(),
        "-",
        "-",
        "-",
    );
    let config = || Config {
        genesis_root: Some(GENESIS),
        ..Config::default()
    };
    // The floor the schema itself sets: the same round trip into
    // signed_attestations (primary key, foreign key, minimum trigger).
    let floor_schema = cluster.new_schema();
    drop(
        SlashingDb::open_postgres(
            &PostgresOptions::new(cluster.config(&floor_schema)),
            config(),
        )
        .unwrap(),
    );
    let floor = pg_commits(
        &cluster,
        &floor_schema,
        "INSERT INTO validators (pubkey) VALUES (decode(repeat('ab', 48), 'hex'))",
        "INSERT INTO signed_attestations (validator_id, source_epoch, target_epoch)
         SELECT id, $1, $1 FROM validators",
        secs,
    );
    line(
        "  the same into signed_attestations (its triggers)",
        fmt_rate(floor),
        fmt_rate(raw),
        &format!("{:.2}", floor / raw),
        "-",
        "-",
    );
    let schema = cluster.new_schema();
    let opts = PostgresOptions::new(cluster.config(&schema));
    let db = SlashingDb::open_postgres(&opts, config()).unwrap();
    decision_rows(db, raw, "postgres", 200, secs);
}

/// The table's column names.
fn header() {
    line(
        "figure",
        "value".into(),
        "baseline".into(),
        "ratio",
        "target",
        "met",
    );
}

fn main() {
    let a = args();
    if a.postgres {
        let base: PathBuf = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(&base).unwrap();
        header();
        postgres_figures(&base, a.seconds);
        return;
    }
    let base: PathBuf = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    println!(
        "slashing-db benchmark: files in {} ({} cores)",
        dir.path().display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    header();

    let raw = raw_fdatasync(dir.path(), a.seconds);
    line(
        "raw 4 KiB overwrite + fdatasync",
        fmt_rate(raw),
        "-".into(),
        "-",
        "-",
        "-",
    );

    let db_path = dir.path().join("decisions.sqlite");
    let db = open(&db_path);
    // Warm up: register the validators, grow the WAL to its steady size.
    decision_rows(db, raw, "group commit", 1_000, a.seconds);

    let json = dir.path().join("interchange.json");
    let t = Instant::now();
    let bytes = write_interchange(&json, a.validators, a.attestations);
    println!();
    println!(
        "interchange: {} validators × {} attestations = {} records, {:.1} MB JSON (written in {:.1} s)",
        a.validators,
        a.attestations,
        a.validators * a.attestations,
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let import_path = dir.path().join("imported.sqlite");
    let db = open(&import_path);
    let t = Instant::now();
    let file = Interchange::from_reader(fs::File::open(&json).unwrap()).unwrap();
    let parse = t.elapsed();
    let t = Instant::now();
    let summary = db.import_interchange(file).unwrap();
    let import = t.elapsed();
    let records = summary.attestations + summary.blocks;
    line(
        "import: parse + merge, one transaction",
        format!("{:.1} s", (parse + import).as_secs_f64()),
        "-".into(),
        "-",
        "-",
        "-",
    );
    println!(
        "    parse {:.1} s, merge {:.1} s ({}), database {:.0} MB",
        parse.as_secs_f64(),
        import.as_secs_f64(),
        fmt_rate(records as f64 / import.as_secs_f64()).replace("/s", " records/s"),
        fs::metadata(&import_path).unwrap().len() as f64 / 1e6
    );
    let big = one_caller(&db, a.attestations + 10, a.validators.min(64), a.seconds);
    line(
        "decisions/s, 1 caller, on the imported db",
        fmt_rate(big),
        fmt_rate(raw),
        &format!("{:.2}", big / raw),
        "-",
        "-",
    );
    db.close();
}
