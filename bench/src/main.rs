//! `signer-bench`: starts a real daemon (a separate process, its own
//! directory on the real disk) and drives it over its real interfaces,
//! measuring each scenario's baseline in the same run.
//!
//! Scenarios so far:
//! - `cometbft-votes`: one Ed25519 key, prevote then precommit for each of
//!   `--heights` heights, sequentially over one connection, through gRPC and
//!   through the privval connector (SecretConnection, the signer dialing the
//!   benchmark's node). Figures: p50/p99/p999 round trip. Baseline: one raw
//!   `fdatasync` of a small write plus one raw Ed25519 signature, measured
//!   here on the same disk.
//!
//! - `eth2-burst`: `--validators` BLS keys (default 10,000, loaded from a
//!   Web3Signer raw-key directory) each ask for one attestation of a new
//!   epoch: through `SignBatch` (256 per call, 8 calls in flight on one
//!   connection), then through single `Sign` calls over 64 connections.
//!   Figures: signatures/s, p50/p99 latency per call, database commits, the
//!   load generator's CPU time. Baseline: raw BLS signing on every core in
//!   this process.
//!
//! - `startup`: time from process start to `ready`, and resident memory
//!   then, with `--startup-keys` BLS keys (default 10,000 and 100,000).
//!
//! - `many-chains`: `--chains` Ed25519 keys on as many chain ids, each
//!   chain voting as fast as answers come, through gRPC (a client each) and
//!   through the privval connector (a node each) ([`chains`]). Figures:
//!   signatures/s, p99. Baseline: raw Ed25519 signing on every core in this
//!   process.
//!
//! - `eth2-burst-http`: the same burst through the Web3Signer HTTP API, 64
//!   keep-alive HTTPS connections (runs with `eth2-burst`).
//!
//! - `kms`: raw Ed25519 signatures by a key in `hsm-sim kms` through the
//!   daemon, against the SDK's round trip to a canned-answer simulator
//!   ([`kms`]).
//!
//! - `pkcs11`: raw Ed25519 and secp256k1 signatures by keys in a SoftHSM
//!   token, through the daemon with a pool of one session and of one
//!   session per core ([`pkcs11`]). Baseline: SoftHSM's own rate with as
//!   many sessions, measured in the same run.
//!
//! With `--db postgres` the daemon keeps its slashing database in a
//! PostgreSQL cluster the benchmark starts ([`postgres`]), on the same disk;
//! `cometbft-votes` is then held to one INSERT + COMMIT round trip plus an
//! Ed25519 signature, and `eth2-burst` runs SignBatch on one instance and on
//! two instances sharing the database, each asked for half the validators.
//!
//! The gRPC load comes from [`h2client`] (HEADERS and DATA of a call in one
//! write, less CPU on the shared cores than tonic's client); the privval
//! load from nodes on this process's threads speaking the signer's own
//! privval codec over tendermint-p2p's SecretConnection.
//!
//! A crate of its own (decision in `docs/architecture.md`): the load
//! generator is not part of the production binary. It runs the `signer`
//! binary built next to it (`SIGNER_BIN` overrides), as an operator would.
//! This file is the run: arguments, which scenarios, the throughput window
//! they share, and the report. One file per scenario (`votes`, `burst`,
//! `startup`, `chains`, `kms`, `pkcs11`), the daemon under test in
//! `daemon`, PostgreSQL in `postgres`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod burst;
mod chains;
mod daemon;
mod h2client;
mod kms;
mod pkcs11;
mod postgres;
mod startup;
mod votes;

use burst::{
    Burst, bls_baseline, burst_batches, burst_http, burst_rows, burst_single, two_instances,
};
use clap::Parser;
use daemon::{
    AuditPlace, Daemon, StageReport, Stages, cpu_seconds, cpu_seconds_of, create_dev, metric,
    signer_bin, spawn, start, validator_secret,
};
use proto::v1 as pb;
use serde_json::{Value, json};
use startup::{startup, startup_rows};
use votes::{
    FloorRig, NodeConn, accept_signer, baseline, grpc_echo, grpc_votes, privval_votes, vote,
};

/// Benchmark a real signer daemon against the machine's own limits.
#[derive(Debug, Parser)]
#[command(name = "signer-bench", version, about)]
pub struct BenchArgs {
    /// Which scenario (default: all available).
    #[arg(long)]
    scenario: Option<String>,
    /// cometbft-votes: heights to vote at (two votes each); pkcs11 and kms
    /// vote with their remote key at this many, at most 320.
    #[arg(long, default_value_t = 5000)]
    heights: i64,
    /// cometbft-votes: heights voted at first, untimed, per variant (the
    /// database's write-ahead log reaches its steady size).
    #[arg(long, default_value_t = 500)]
    warmup: i64,
    /// eth2-burst: validators, each asking for one attestation per variant.
    #[arg(long, default_value_t = 10_000)]
    validators: usize,
    /// startup: the key counts to start with (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 100_000])]
    startup_keys: Vec<usize>,
    /// startup: EIP-2335 scrypt keystores to start with, each `N` or
    /// `N:LOG_N` (scrypt cost 2^LOG_N; default 18, EIP-2335's). Each runs a
    /// first start (KDF on every core) and a cached start (`[start_cache]`).
    /// A small LOG_N makes the first start of a large N take seconds, for
    /// measuring the cached start, which runs no KDF. Empty: none.
    #[arg(long, value_delimiter = ',', default_values_t = ["1000".to_owned(), "10000:10".to_owned()])]
    startup_keystores: Vec<String>,
    /// many-chains: chains (one Ed25519 key and one client each).
    #[arg(long, default_value_t = 64)]
    chains: usize,
    /// many-chains: heights each client votes at (two votes each).
    #[arg(long, default_value_t = 500)]
    chain_heights: i64,
    /// pkcs11: signatures per variant through the daemon (and per raw run).
    #[arg(long, default_value_t = 4000)]
    pkcs11_signs: usize,
    /// kms: signatures per variant.
    #[arg(long, default_value_t = 2000)]
    kms_signs: usize,
    /// Where the daemon keeps its slashing database: `sqlite` (its own
    /// file) or `postgres` (a local cluster the benchmark starts; runs
    /// cometbft-votes and eth2-burst).
    #[arg(long, value_enum, default_value_t = Db::Sqlite)]
    db: Db,
    /// SQLite: keep the slashing database in this directory instead of the
    /// daemon's (e.g. a tmpfs such as /dev/shm, to see what the signer costs
    /// beside durability); the cometbft-votes baselines are measured there
    /// too. The directory is created if missing; the database file
    /// (`slashing-<pid>.sqlite`) is left in it.
    #[arg(long)]
    db_dir: Option<PathBuf>,
    /// The daemon's `[audit] flush_interval_ms` (default: the daemon's, 5):
    /// how often its audit log is fsynced, which on a shared disk competes
    /// with the votes' commits.
    #[arg(long)]
    audit_flush_ms: Option<u64>,
    /// Put the daemon's audit log in this directory instead of beside the
    /// database (`audit-<pid>.jsonl`): with the database on a disk and this
    /// on another device, the log's appends and journal commits stop
    /// competing with the votes' commits.
    #[arg(long)]
    audit_dir: Option<PathBuf>,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Internal: measure SoftHSM's raw rate in a child process that has
    /// the benchmark's SOFTHSM2_CONF (a process cannot safely change its own
    /// environment). The value is the key's label.
    #[arg(long, hide = true)]
    pkcs11_raw: Option<String>,
    #[arg(long, hide = true)]
    pkcs11_module: Option<PathBuf>,
    #[arg(long, hide = true)]
    pkcs11_pin_file: Option<PathBuf>,
    #[arg(long, hide = true, default_value_t = 1)]
    pkcs11_sessions: usize,
}

/// The slashing database the benchmarked daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Db {
    Sqlite,
    Postgres,
}

/// One result row.
struct Row {
    scenario: &'static str,
    variant: &'static str,
    figure: &'static str,
    unit: &'static str,
    value: f64,
    baseline: Option<f64>,
    /// (target text, met) when the figure has a target.
    target: Option<(String, bool)>,
}

/// `n` load-generator clients of the dev client certificate (see
/// [`h2client`]), one connection each.
async fn connect_h2(
    d: &Daemon,
    n: usize,
) -> Result<Vec<h2client::Client>, Box<dyn std::error::Error>> {
    let tls = signer::client::ClientTls::dev(&d.dir)
        .config()
        .map_err(|e| e.to_string())?;
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(
            h2client::Client::connect(d.grpc, tls.clone())
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(clients)
}

/// A load-generating task: its latencies and the signatures it received.
type Task = tokio::task::JoinHandle<Result<(Vec<Duration>, usize), String>>;

/// What a throughput variant measures around its run: database commits,
/// the load generator's CPU, wall time.
struct Window {
    commits: f64,
    cpu: f64,
    daemon_cpu: f64,
    stages: Stages,
    started: Instant,
}

impl Window {
    fn open(d: &Daemon) -> Self {
        Self {
            commits: metric(d.metrics, "signer_db_commits"),
            cpu: cpu_seconds(),
            daemon_cpu: cpu_seconds_of(&d.child.id().to_string()),
            stages: Stages::scrape(d.metrics),
            started: Instant::now(),
        }
    }

    /// Joins the variant's tasks (each: latencies, signatures received) and
    /// checks that all `expected` were signed.
    async fn close(
        self,
        d: &Daemon,
        what: &str,
        tasks: Vec<Task>,
        expected: usize,
    ) -> Result<Burst, Box<dyn std::error::Error>> {
        let mut results = Vec::with_capacity(tasks.len());
        for t in tasks {
            results.push(t.await?);
        }
        self.finish(d, what, results, expected)
    }

    /// The same for results already joined (load generated by threads).
    fn finish(
        self,
        d: &Daemon,
        what: &str,
        results: Vec<Result<(Vec<Duration>, usize), String>>,
        expected: usize,
    ) -> Result<Burst, Box<dyn std::error::Error>> {
        let mut latencies = Vec::new();
        let mut signed = 0;
        for r in results {
            let (l, n) = r?;
            latencies.extend(l);
            signed += n;
        }
        let wall = self.started.elapsed().as_secs_f64();
        if signed != expected {
            return Err(format!("{what}: {signed} of {expected} signed").into());
        }
        Ok(Burst {
            rate: signed as f64 / wall,
            latencies,
            commits: metric(d.metrics, "signer_db_commits") - self.commits,
            loadgen_cpu: cpu_seconds() - self.cpu,
            daemon_cpu: cpu_seconds_of(&d.child.id().to_string()) - self.daemon_cpu,
            wall,
            stages: Stages::means_since(&self.stages, d.metrics),
        })
    }
}

fn is_signed(r: &pb::SignResponse) -> bool {
    matches!(r.outcome, Some(pb::sign_response::Outcome::Signature(_)))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted
        .get(i.min(sorted.len() - 1))
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

fn rows_for(variant: &'static str, mut times: Vec<Duration>, base: f64) -> Vec<Row> {
    times.sort();
    let p50 = percentile(&times, 0.5);
    let p99 = percentile(&times, 0.99);
    let p999 = percentile(&times, 0.999);
    let row = |figure, value, target| Row {
        scenario: "cometbft-votes",
        variant,
        figure,
        unit: "µs",
        value,
        baseline: Some(base),
        target,
    };
    vec![
        row(
            "p50",
            p50,
            Some(("≤ 2.5 × baseline".to_owned(), p50 <= 2.5 * base)),
        ),
        row("p99", p99, Some(("≤ 2000 µs".to_owned(), p99 <= 2000.0))),
        row("p999", p999, None),
    ]
}

/// The vote latencies against the floor of a durable vote ([`FloorRig`]):
/// privval p50 ≤ 1.25 × and p99 ≤ 2.5 × the floor's p50; gRPC p50 ≤ 1.5 ×
/// the floor plus a gRPC echo round trip through the daemon (`echo`, µs).
/// `ping`: a privval `Ping`'s p50, µs (the transport alone, beside the
/// floor's echo part).
fn floor_rows(
    grpc: &[Duration],
    privval: &[Duration],
    (floor_p50, floor_p99): (f64, f64),
    ping: f64,
    echo: f64,
) -> Vec<Row> {
    let sorted = |t: &[Duration]| {
        let mut t = t.to_vec();
        t.sort();
        t
    };
    // The votes alternate prevote, precommit: a prevote is signed once, as
    // the floor signs; a precommit twice (the vote and its extension).
    let kind = |first: usize| -> Vec<Duration> {
        sorted(
            &privval
                .iter()
                .skip(first)
                .step_by(2)
                .copied()
                .collect::<Vec<_>>(),
        )
    };
    let (prevotes, precommits) = (kind(0), kind(1));
    let (grpc, privval) = (sorted(grpc), sorted(privval));
    let row = |variant, figure, value, baseline, target| Row {
        scenario: "cometbft-votes",
        variant,
        figure,
        unit: "µs",
        value,
        baseline,
        target,
    };
    let p50 = percentile(&privval, 0.5);
    let p99 = percentile(&privval, 0.99);
    vec![
        row("floor", "p50", floor_p50, None, None),
        row("floor", "p99", floor_p99, None, None),
        row(
            "privval",
            "p50 vs floor",
            p50,
            Some(floor_p50),
            Some(("≤ 1.25 × floor".to_owned(), p50 <= 1.25 * floor_p50)),
        ),
        row(
            "privval",
            "p99 vs floor",
            p99,
            Some(floor_p50),
            Some(("≤ 2.5 × floor".to_owned(), p99 <= 2.5 * floor_p50)),
        ),
        row(
            "privval",
            "prevote p50 vs floor",
            percentile(&prevotes, 0.5),
            Some(floor_p50),
            None,
        ),
        row(
            "privval",
            "precommit p50 vs floor",
            percentile(&precommits, 0.5),
            Some(floor_p50),
            None,
        ),
        row("privval", "ping p50", ping, None, None),
        row("grpc", "echo p50", echo, None, None),
        {
            let p50 = percentile(&grpc, 0.5);
            let limit = 1.5 * floor_p50 + echo;
            row(
                "grpc",
                "p50 vs floor",
                p50,
                Some(floor_p50),
                Some((
                    format!("≤ 1.5 × floor + echo = {limit:.0} µs"),
                    p50 <= limit,
                )),
            )
        },
    ]
}

fn main() -> ExitCode {
    match run(BenchArgs::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("signer-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: BenchArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    signer::tls::install_crypto_provider();
    if let Some(label) = &a.pkcs11_raw {
        return pkcs11::raw_child(&a, label);
    }
    let (votes, burst, start_up, chains) = match a.scenario.as_deref() {
        None => (true, true, true, true),
        Some("cometbft-votes") => (true, false, false, false),
        Some("eth2-burst" | "eth2-burst-http") => (false, true, false, false),
        Some("startup") => (false, false, true, false),
        Some("many-chains") => (false, false, false, true),
        Some("pkcs11") => {
            let rows = pkcs11::rows(&a)?;
            return report(&a, rows, Vec::new(), None);
        }
        Some("kms") => {
            let rows = kms::rows(&a)?;
            return report(&a, rows, Vec::new(), None);
        }
        Some(other) => {
            return Err(format!(
                "unknown scenario {other:?} (available: eth2-burst, cometbft-votes, many-chains, startup, pkcs11, kms)"
            )
            .into());
        }
    };
    let postgres = a.db == Db::Postgres;
    if postgres
        && !matches!(
            a.scenario.as_deref(),
            None | Some("cometbft-votes" | "eth2-burst")
        )
    {
        return Err("--db postgres runs the cometbft-votes and eth2-burst scenarios only".into());
    }
    let (start_up, chains) = (start_up && !postgres, chains && !postgres);
    let pg = if postgres {
        let dir =
            std::env::temp_dir().join(format!("signer-bench-{}-postgres", std::process::id()));
        let pg = postgres::LocalPostgres::start(&dir)?;
        println!(
            "postgres: a cluster in {} (port {})",
            dir.display(),
            pg.port
        );
        Some(pg)
    } else {
        None
    };
    // Everything: the HSM and KMS scenarios too, when SoftHSM and the KMS
    // simulator are there.
    let mut hsm_rows = Vec::new();
    if a.scenario.is_none() && !postgres {
        match pkcs11::softhsm_module() {
            Ok(_) => hsm_rows.extend(pkcs11::rows(&a)?),
            Err(e) => println!("pkcs11: skipped ({e})"),
        }
        match kms::simulator() {
            Ok(_) => hsm_rows.extend(kms::rows(&a)?),
            Err(e) => println!("kms: skipped ({e})"),
        }
    }
    let mut startup_results = Vec::new();
    if start_up {
        for &n in &a.startup_keys {
            let (ready, rss) = startup(n)?;
            startup_results.extend(startup_rows(n, ready, rss));
        }
        for spec in a.startup_keystores.iter().filter(|s| !s.is_empty()) {
            let (n, log_n) = match spec.split_once(':') {
                Some((n, l)) => (n.parse()?, l.parse()?),
                None => (spec.parse()?, 18),
            };
            let s = startup::startup_keystores(n, log_n)?;
            println!("startup: cached start: {}", s.cached_line);
            startup_results.extend(startup::keystore_rows(&s));
        }
    }
    let validators: Vec<Vec<u8>> = if burst {
        (0..a.validators)
            .map(|i| {
                signer::crypto::bls::BlsSecretKey::from_bytes(&validator_secret(i))
                    .map(|k| k.public_key().to_bytes().to_vec())
            })
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let node_seed = [0x33; 32];
    let node = TcpListener::bind("127.0.0.1:0")?;
    let chain_nodes = if chains {
        Some(chains::ChainNodes::listen(a.chains, node_seed)?)
    } else {
        None
    };
    if a.db_dir.is_some() && postgres {
        return Err(
            "--db-dir places the SQLite database; it has no meaning with --db postgres".into(),
        );
    }
    let db_dir = made_dir("--db-dir", a.db_dir.as_deref())?;
    let audit_dir = made_dir("--audit-dir", a.audit_dir.as_deref())?;
    let daemon = start(
        &node,
        node_seed,
        &validators,
        chain_nodes.as_ref().map_or(&[][..], |n| &n.addrs[..]),
        pg.as_ref(),
        db_dir.as_deref(),
        &AuditPlace {
            flush_ms: a.audit_flush_ms,
            dir: audit_dir.as_deref(),
        },
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    let mut stage_reports = Vec::new();
    if burst && postgres {
        let base = bls_baseline();
        let batches = runtime.block_on(burst_batches(&daemon, &validators, 1))?;
        stage_reports.push((
            "eth2-burst signbatch (postgres)".into(),
            batches.stages.clone(),
        ));
        rows.extend(burst_rows("signbatch, postgres", batches, base, 0.85));
        let base = bls_baseline();
        rows.extend(two_instances(&runtime, &daemon, &validators, base)?);
    }
    if burst && !postgres {
        let base = bls_baseline();
        let batches = runtime.block_on(burst_batches(&daemon, &validators, 1))?;
        stage_reports.push(("eth2-burst signbatch".into(), batches.stages.clone()));
        rows.extend(burst_rows("signbatch", batches, base, 0.85));
        let single = runtime.block_on(burst_single(&daemon, &validators, 2))?;
        stage_reports.push(("eth2-burst 64 conns".into(), single.stages.clone()));
        rows.extend(burst_rows("64 conns", single, base, 0.70));
        let http = runtime.block_on(burst_http(&daemon, &validators, 3))?;
        stage_reports.push(("eth2-burst-http".into(), http.stages.clone()));
        let mut http_rows = burst_rows("64 conns", http, base, 0.70);
        for r in &mut http_rows {
            r.scenario = "eth2-burst-http";
        }
        rows.extend(http_rows);
    }
    if let Some(nodes) = chain_nodes {
        let (chain_rows, stages) = chains::rows(&runtime, &daemon, nodes, a.chain_heights)?;
        rows.extend(chain_rows);
        stage_reports.extend(stages);
    }
    if !votes {
        rows.extend(startup_results);
        rows.extend(hsm_rows);
        let code = report(&a, rows, stage_reports, Some(&daemon));
        daemon.finish();
        return code;
    }
    let base = match &pg {
        Some(pg) => pg.commit_baseline(1000)?,
        None => baseline(db_dir.as_deref().unwrap_or(&daemon.dir), 1000)?,
    };

    let ks: Value = serde_json::from_slice(&std::fs::read(daemon.dir.join("keys/ed25519.json"))?)?;
    let ed = hex::decode(ks.get("pubkey").and_then(Value::as_str).unwrap_or_default())?;
    // The floor (issue 21): transport round trip + one device write + one
    // signature, on the database's disk, in blocks between blocks of votes
    // of both runs ([`votes::FloorRig`] says why). Not measured against
    // PostgreSQL (its floor is a commit round trip, the baseline above).
    let mut rig = match pg {
        None => Some(FloorRig::new(db_dir.as_deref().unwrap_or(&daemon.dir))?),
        Some(_) => None,
    };
    let (grpc, stages) =
        runtime.block_on(grpc_votes(&daemon, ed, a.warmup, a.heights, rig.as_mut()))?;
    stage_reports.push(("cometbft-votes grpc".into(), stages));
    let (privval, stages, ping) =
        privval_votes(&daemon, &node, node_seed, a.warmup, a.heights, rig.as_mut())?;
    stage_reports.push(("cometbft-votes privval".into(), stages));
    let (g, p) = if postgres {
        ("grpc, postgres", "privval, postgres")
    } else {
        ("grpc", "privval")
    };
    let floor_rows = match rig {
        Some(rig) => {
            let f = rig.finish()?;
            stage_reports.push(("cometbft-votes floor, its parts".into(), f.parts()));
            let echo = runtime.block_on(grpc_echo(&daemon, 1000))?;
            floor_rows(&grpc, &privval, (f.p50, f.p99), ping, echo)
        }
        None => Vec::new(),
    };
    rows.extend(rows_for(g, grpc, base));
    rows.extend(rows_for(p, privval, base));
    rows.extend(floor_rows);
    rows.extend(startup_results);
    rows.extend(hsm_rows);
    let code = report(&a, rows, stage_reports, Some(&daemon));
    daemon.finish();
    code
}

/// The directory a flag names, created if missing, as an absolute path (the
/// daemon's configuration lives elsewhere).
fn made_dir(flag: &str, dir: Option<&Path>) -> Result<Option<PathBuf>, String> {
    dir.map(|d| {
        std::fs::create_dir_all(d)?;
        std::fs::canonicalize(d)
    })
    .transpose()
    .map_err(|e| format!("{flag}: {e}"))
}

fn report(
    a: &BenchArgs,
    rows: Vec<Row>,
    stage_reports: Vec<StageReport>,
    daemon: Option<&Daemon>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    println!(
        "{:<14} {:<10} {:<11} {:>14} {:>14} {:>6}  target",
        "scenario", "variant", "figure", "value", "baseline", "ratio"
    );
    // Small figures keep two decimals; large ones none.
    let num = |v: f64, unit: &str| {
        if v.abs() < 10.0 && v.fract() != 0.0 {
            format!("{v:.2} {unit}")
        } else {
            format!("{v:.0} {unit}")
        }
    };
    for r in &rows {
        let ratio = r.baseline.map(|b| r.value / b);
        println!(
            "{:<14} {:<10} {:<11} {:>14} {:>14} {:>6}  {}",
            r.scenario,
            r.variant,
            r.figure,
            num(r.value, r.unit),
            r.baseline.map_or("-".into(), |b| num(b, r.unit)),
            ratio.map_or("-".into(), |x| format!("{x:.2}")),
            r.target.as_ref().map_or("-".into(), |(t, met)| format!(
                "{t} ({})",
                if *met { "met" } else { "MISSED" }
            ))
        );
    }
    for (name, stages) in &stage_reports {
        let parts: Vec<String> = stages
            .iter()
            .map(|(s, us)| format!("{s} {us:.0}"))
            .collect();
        println!(
            "mean µs per request by stage ({name}): {}",
            parts.join(", ")
        );
    }
    if let Some(daemon) = daemon {
        println!(
            "baselines: eth2-burst, raw BLS signing on every core in this process; cometbft-votes, one fdatasync of a 100-byte append plus one Ed25519 signature, p50 of 1000, on the database's disk ({}); its floor, one SecretConnection echo on loopback + one 4 KiB O_DSYNC write into a preallocated file on that disk + one Ed25519 signature, p50 of as many rounds as measured heights, taken in blocks of 250 between blocks of 250 heights of the gRPC and privval runs",
            a.db_dir.as_deref().unwrap_or(&daemon.dir).display()
        );
    }
    if rows.iter().any(|r| r.scenario.starts_with("kms")) {
        println!(
            "baselines: kms, the same Sign calls from this process straight to a canned-answer KMS simulator (no crypto, no key lookup): the floor of an HTTP round trip through the AWS SDK"
        );
    }
    if rows.iter().any(|r| r.scenario.starts_with("pkcs11")) {
        println!(
            "baselines: pkcs11, SoftHSM's own signing rate with as many sessions (one thread each), C_Sign in a loop, in a separate process of this benchmark"
        );
    }
    if let Some(path) = &a.json {
        let v: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "scenario": r.scenario,
                    "variant": format!("{} {}", r.variant, r.figure),
                    "figure": r.value,
                    "unit": r.unit,
                    "baseline": r.baseline,
                    "ratio": r.baseline.map(|b| r.value / b),
                    "target": r.target.as_ref().map(|t| t.0.clone()),
                    "met": r.target.as_ref().map(|t| t.1),
                })
            })
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&v)?)?;
    }
    Ok(ExitCode::SUCCESS)
}
