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
//! This file is the scenarios' driver (arguments, the daemon under test,
//! `cometbft-votes`, `eth2-burst`, `startup`, the report): one concept, the
//! run; each further backend or topology has its own file.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

mod chains;
mod h2client;
mod kms;
mod pkcs11;
mod postgres;

use clap::Parser;
use proto::v1 as pb;
use serde_json::{Value, json};
use signer::api::privval::connector::{FrameReader, node_id, read_frame, write_frame};
use signer::api::privval::{Request, Response, WireVote, decode_response, encode_request};
use signer::cometbft::{BlockId, ProtocolVersion, Timestamp, Vote, VoteType};

/// Benchmark a real signer daemon against the machine's own limits.
#[derive(Debug, Parser)]
#[command(name = "signer-bench", version, about)]
pub struct BenchArgs {
    /// Which scenario (default: all available).
    #[arg(long)]
    scenario: Option<String>,
    /// cometbft-votes: heights to vote at (two votes each).
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

struct Daemon {
    child: Child,
    grpc: SocketAddr,
    metrics: SocketAddr,
    http: Option<SocketAddr>,
    dir: PathBuf,
    /// Removes `dir` when dropped (not a second instance sharing it).
    owns_dir: bool,
}

/// The daemon's `/metrics` text.
fn scrape(metrics: SocketAddr) -> String {
    use std::io::Read;
    let mut body = String::new();
    if let Ok(mut s) = std::net::TcpStream::connect(metrics) {
        let _ = write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let _ = s.read_to_string(&mut body);
    }
    body
}

/// The value of one series (`name{labels}` exactly as exported) in `body`.
fn series(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// One metric's current value (0 when absent).
fn metric(metrics: SocketAddr, name: &str) -> f64 {
    series(&scrape(metrics), name).unwrap_or(0.0)
}

/// Per-stage mean times per request, in µs, as reported.
type StageMeans = Vec<(String, f64)>;

/// A variant's name and its per-stage means.
type StageReport = (String, StageMeans);

/// The daemon's per-stage totals (`signer_stage_seconds` sum and count),
/// so that a variant reports the means of its own requests only.
struct Stages(Vec<(&'static str, f64, f64)>);

impl Stages {
    fn scrape(metrics: SocketAddr) -> Self {
        let body = scrape(metrics);
        Self(
            signer::metrics::STAGES
                .iter()
                .map(|stage| {
                    let get = |what| {
                        series(
                            &body,
                            &format!("signer_stage_seconds_{what}{{stage=\"{stage}\"}}"),
                        )
                        .unwrap_or(0.0)
                    };
                    (*stage, get("sum"), get("count"))
                })
                .collect(),
        )
    }

    /// Mean time per request in each stage between `before` and now.
    fn means_since(before: &Self, metrics: SocketAddr) -> StageMeans {
        let now = Self::scrape(metrics);
        now.0
            .iter()
            .zip(&before.0)
            .filter_map(|((stage, sum, count), (_, sum0, count0))| {
                let n = count - count0;
                (n > 0.0).then(|| ((*stage).to_owned(), (sum - sum0) / n * 1e6))
            })
            .collect()
    }
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

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
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

fn vote(kind: VoteType, height: i64) -> Vote {
    Vote {
        kind,
        height,
        round: 0,
        block_id: BlockId {
            hash: vec![0xab; 32],
            part_set_total: 1,
            part_set_hash: vec![0xcd; 32],
        },
        timestamp: Timestamp {
            seconds: 1_700_000_000 + height,
            nanos: 0,
        },
        extension: Vec::new(),
    }
}

/// Raw fdatasync of a small write plus a raw Ed25519 signature, p50 in µs.
fn baseline(dir: &Path, rounds: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let key = signer::crypto::ed25519::Ed25519SecretKey::from_seed(&[7; 32])?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("baseline"))?;
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let started = Instant::now();
        f.write_all(&[i as u8; 100])?;
        f.sync_data()?;
        std::hint::black_box(key.sign(&[i as u8; 120]));
        times.push(started.elapsed());
    }
    times.sort();
    Ok(percentile(&times, 0.5))
}

/// The benchmark's validator `i`: a deterministic BLS secret (below the
/// group order: the first byte is small).
fn validator_secret(i: usize) -> [u8; 32] {
    use sha2::Digest;
    let mut s: [u8; 32] = sha2::Sha256::digest(format!("signer bench validator {i}")).into();
    s[0] = 0x10;
    s
}

/// Writes a dev setup for the benchmark (plus `validators` BLS keys in a
/// Web3Signer key directory, the fast-loading raw form) and starts the daemon.
fn start(
    node: &TcpListener,
    node_seed: [u8; 32],
    validators: &[Vec<u8>],
    chain_nodes: &[SocketAddr],
    pg: Option<&postgres::LocalPostgres>,
) -> Result<Daemon, Box<dyn std::error::Error>> {
    let dir = bench_dir();
    let _ = std::fs::remove_dir_all(&dir);
    create_dev(&dir)?;
    let ks: Value = serde_json::from_slice(&std::fs::read(dir.join("keys/ed25519.json"))?)?;
    let ed = ks
        .get("pubkey")
        .and_then(Value::as_str)
        .ok_or("dev key without pubkey")?
        .to_owned();
    let node_pk = ed25519_consensus::SigningKey::from(node_seed)
        .verification_key()
        .to_bytes();
    let id = node_id(&node_pk);
    std::fs::write(dir.join("keys/privval-identity.hex"), "42".repeat(32))?;
    std::fs::create_dir_all(dir.join("keys/w3s"))?;
    let mut docs = String::new();
    for i in 0..validators.len() {
        docs.push_str(&format!(
            "---\ntype: \"file-raw\"\nkeyType: \"BLS\"\nprivateKey: \"0x{}\"\n",
            hex::encode(validator_secret(i))
        ));
    }
    std::fs::write(dir.join("keys/w3s/validators.yaml"), docs)?;
    // many-chains: one Ed25519 key file per chain (a cheap KDF: throwaway keys).
    let mut chain_keys = String::new();
    let mut chain_pks = Vec::new();
    let mut cometbft = String::new();
    for (i, node) in chain_nodes.iter().enumerate() {
        let seed = chains::chain_seed(i);
        let key = signer::backend::soft::SecretKey::from_secret(
            signer::backend::soft::Scheme::Ed25519,
            &seed,
        )?;
        chain_pks.push(format!("\"0x{}\"", hex::encode(key.public_key())));
        let file = signer::backend::soft::write_key_file(
            &key,
            &seed,
            "bench",
            signer::backend::soft::keystore::Kdf::Pbkdf2 { rounds: 1 },
            "bench chain key",
        )?;
        std::fs::write(dir.join(format!("keys/chain-{i}.json")), file)?;
        std::fs::write(dir.join(format!("keys/chain-{i}.pass")), "bench")?;
        chain_keys.push_str(&format!(
            "\n[[keys]]\ntype = \"file\"\npath = \"keys/chain-{i}.json\"\npassword_file = \"keys/chain-{i}.pass\"\n"
        ));
        cometbft.push_str(&format!(
            "\n[[cometbft]]\nchain_id = \"{}\"\nprotocol = \"v0.38\"\nkey = \"0x{}\"\nnodes = [\"tcp://{id}@{node}\"]\n",
            chains::chain_id(i),
            hex::encode(key.public_key())
        ));
    }
    let mut config = std::fs::read_to_string(dir.join("signer.toml"))?;
    if let Some(pg) = pg {
        std::fs::create_dir_all(dir.join("data"))?;
        std::fs::write(
            dir.join("data/pg-password"),
            postgres::LocalPostgres::password(),
        )?;
        let sqlite = "[slashing]\ndatabase = \"data/slashing.sqlite\"\n";
        if !config.contains(sqlite) {
            return Err("the dev configuration's [slashing] section changed shape".into());
        }
        config = config.replace(sqlite, "[slashing]\nengine = \"postgres\"\n");
        config.push_str(&pg.tables("data/pg-password", "data/audit.jsonl"));
    }
    let config = config
        .replace("127.0.0.1:9000", "127.0.0.1:0")
        .replace("127.0.0.1:9100", "127.0.0.1:0")
        .replace("127.0.0.1:9001", "127.0.0.1:0");
    let config = format!(
        "{config}{chain_keys}\n[[keys]]\ntype = \"web3signer_dir\"\npath = \"keys/w3s\"\n\n[privval]\nidentity_key = \"keys/privval-identity.hex\"\n\n[[cometbft]]\nchain_id = \"bench-privval\"\nprotocol = \"v0.38\"\nkey = \"0x{ed}\"\nnodes = [\"tcp://{id}@{}\"]\n{cometbft}",
        node.local_addr()?
    );
    std::fs::write(dir.join("signer.toml"), config)?;
    let mut policy = std::fs::read_to_string(dir.join("policy.toml"))?;
    if !chain_nodes.is_empty() {
        let mut nets = Vec::new();
        for i in 0..chain_nodes.len() {
            policy.push_str(&format!(
                "\n[networks.bench-chain-{i}]\nchain_id = \"bench-chain-{i}\"\n"
            ));
            nets.push(format!("\"bench-chain-{i}\""));
        }
        policy.push_str(&format!(
            "\n[key_groups.bench-chains]\nkeys = [{}]\n\n[[grant]]\nclients = [\"dev\", \"bench-node\"]\noperations = [\"cometbft.consensus\"]\nkey_groups = [\"bench-chains\"]\nnetworks = [{}]\n",
            chain_pks.join(", "),
            nets.join(", ")
        ));
    }
    if !validators.is_empty() {
        let keys: Vec<String> = validators
            .iter()
            .map(|k| format!("\"0x{}\"", hex::encode(k)))
            .collect();
        policy.push_str(&format!(
            "\n[key_groups.bench-validators]\nkeys = [{}]\n\n[[grant]]\nclients = [\"dev\"]\noperations = [\"eth2.attestation\"]\nkey_groups = [\"bench-validators\"]\nnetworks = [\"dev-eth\"]\n",
            keys.join(", ")
        ));
    }
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            "{policy}\n[clients.bench-node]\nidentity = \"{id}\"\n\n[networks.bench-privval]\nchain_id = \"bench-privval\"\n\n[[grant]]\nclients = [\"bench-node\"]\noperations = [\"cometbft.consensus\"]\nkey_groups = [\"dev-ed25519\"]\nnetworks = [\"bench-privval\"]\n"
        ),
    )?;
    spawn(dir, &[])
}

/// The benchmark's directory (on the real disk, under the temp dir).
fn bench_dir() -> PathBuf {
    std::env::temp_dir().join(format!("signer-bench-{}", std::process::id()))
}

/// Starts `signer serve` on the setup in `dir` (with extra environment)
/// and waits for its ready line.
fn spawn(
    dir: PathBuf,
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<Daemon, Box<dyn std::error::Error>> {
    spawn_config(dir, "signer.toml", "daemon.log", env)
}

/// [`spawn`] with another configuration file of the same setup.
fn spawn_config(
    dir: PathBuf,
    config: &str,
    log: &str,
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<Daemon, Box<dyn std::error::Error>> {
    let log = std::fs::File::create(dir.join(log))?;
    let mut child = Command::new(signer_bin()?)
        .args(["serve", "--config"])
        .arg(dir.join(config))
        .env("SIGNER_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut reader = BufReader::new(stdout);
    reader.read_line(&mut line)?;
    std::thread::spawn(move || for _ in reader.lines() {});
    let addr = |key: &str| -> Result<SocketAddr, String> {
        line.split(' ')
            .find_map(|f| f.strip_prefix(key))
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| {
                format!(
                    "the daemon did not start: {line:?}; see {}",
                    dir.join("daemon.log").display()
                )
            })
    };
    let grpc = addr("grpc=")?;
    let metrics = addr("metrics=")?;
    let http = addr("http=").ok();
    Ok(Daemon {
        child,
        grpc,
        metrics,
        http,
        dir,
        owns_dir: config == "signer.toml",
    })
}

async fn grpc_votes(
    d: &Daemon,
    ed: Vec<u8>,
    warmup: i64,
    heights: i64,
) -> Result<(Vec<Duration>, StageMeans), Box<dyn std::error::Error>> {
    let mut c = connect_h2(d, 1).await?.pop().ok_or("no client")?;
    let mut times = Vec::with_capacity(2 * heights as usize);
    let mut stages = None;
    for h in 1..=warmup + heights {
        if h == warmup + 1 {
            stages = Some(Stages::scrape(d.metrics));
        }
        for kind in [pb::VoteType::Prevote, pb::VoteType::Precommit] {
            let req = h2client::frame(&signer::client::vote_request(
                &ed,
                "signer-dev-1",
                kind,
                (h, 0),
                0xab,
                1_700_000_000 + h,
            ));
            let started = Instant::now();
            let r = c.sign(req).await.map_err(|e| e.to_string())?;
            if h > warmup {
                times.push(started.elapsed());
            }
            if !is_signed(&r) {
                return Err(format!("height {h}: not signed: {r:?}").into());
            }
        }
    }
    let stages = stages.map_or_else(Vec::new, |s| Stages::means_since(&s, d.metrics));
    Ok((times, stages))
}

/// A benchmark node's end of the signer's privval connection.
type NodeConn =
    FrameReader<tendermint_p2p::secret_connection::SecretConnection<std::net::TcpStream>>;

/// Takes the signer's privval connection on `node`. The signer dials at
/// start and may have given up on a handshake nobody answered in time:
/// takes connections until one completes.
fn accept_signer(node: &TcpListener, node_seed: [u8; 32]) -> Result<NodeConn, String> {
    node.set_nonblocking(false).map_err(|e| e.to_string())?;
    for _ in 0..50 {
        let (tcp, _) = node.accept().map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        if let Ok(c) = tendermint_p2p::secret_connection::SecretConnection::new(
            tcp,
            ed25519_consensus::SigningKey::from(node_seed),
            tendermint_p2p::secret_connection::Version::V0_34,
        ) {
            return Ok(FrameReader::new(c));
        }
    }
    Err("the signer never completed a handshake".into())
}

fn privval_votes(
    d: &Daemon,
    node: &TcpListener,
    node_seed: [u8; 32],
    warmup: i64,
    heights: i64,
) -> Result<(Vec<Duration>, StageMeans), Box<dyn std::error::Error>> {
    let mut conn = accept_signer(node, node_seed)?;
    let version = ProtocolVersion::V0_38;
    let mut times = Vec::with_capacity(2 * heights as usize);
    let mut stages = None;
    for h in 1..=warmup + heights {
        if h == warmup + 1 {
            stages = Some(Stages::scrape(d.metrics));
        }
        for kind in [VoteType::Prevote, VoteType::Precommit] {
            let request = Request::SignVote {
                chain_id: "bench-privval".into(),
                vote: WireVote {
                    vote: vote(kind, h),
                    validator_address: vec![1; 20],
                    validator_index: 0,
                    signature: Vec::new(),
                    extension_signature: Vec::new(),
                },
                skip_extension_signing: false,
            };
            let bytes = encode_request(version, &request)?;
            let started = Instant::now();
            write_frame(&mut conn, &bytes)?;
            let frame = read_frame(&mut conn)?.ok_or("the signer hung up")?;
            if h > warmup {
                times.push(started.elapsed());
            }
            match decode_response(version, &frame)? {
                Response::SignedVote(Ok(_)) => {}
                other => return Err(format!("height {h}: {other:?}").into()),
            }
        }
    }
    let stages = stages.map_or_else(Vec::new, |s| Stages::means_since(&s, d.metrics));
    Ok((times, stages))
}

/// Start-up with `n` BLS keys (raw Web3Signer key files, the fast-loading
/// form): seconds from process start to `ready`, and resident memory then.
fn startup(n: usize) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("signer-bench-startup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    create_dev(&dir)?;
    std::fs::create_dir_all(dir.join("keys/w3s"))?;
    let mut docs = String::with_capacity(n * 120);
    for i in 0..n {
        docs.push_str(&format!(
            "---\ntype: \"file-raw\"\nkeyType: \"BLS\"\nprivateKey: \"0x{}\"\n",
            hex::encode(validator_secret(i))
        ));
    }
    std::fs::write(dir.join("keys/w3s/validators.yaml"), docs)?;
    // Only these keys (the dev setup's scrypt keystores would dominate).
    std::fs::write(
        dir.join("signer.toml"),
        "[server]\ngrpc_listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\n[tls]\ncert = \"tls/server.pem\"\nkey = \"tls/server.key\"\nclient_cas = [\"tls/ca.pem\"]\n\n[policy]\nfile = \"policy.toml\"\n\n[slashing]\ndatabase = \"data/slashing.sqlite\"\n\n[[keys]]\ntype = \"web3signer_dir\"\npath = \"keys/w3s\"\n",
    )?;
    let started = Instant::now();
    let mut child = Command::new(signer_bin()?)
        .args(["serve", "--config"])
        .arg(dir.join("signer.toml"))
        .env("SIGNER_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let ready = started.elapsed().as_secs_f64();
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    if !line.starts_with("ready ") {
        return Err(format!("start-up with {n} keys failed: {line:?}").into());
    }
    Ok((ready, rss_kib / 1024.0))
}

fn startup_rows(n: usize, ready: f64, rss_mib: f64) -> Vec<Row> {
    let variant: &'static str = Box::leak(format!("{n} keys").into_boxed_str());
    let big = n >= 100_000;
    vec![
        Row {
            scenario: "startup",
            variant,
            figure: "ready",
            unit: "s",
            value: ready,
            baseline: None,
            target: big.then(|| ("≤ 10 s".to_owned(), ready <= 10.0)),
        },
        Row {
            scenario: "startup",
            variant,
            figure: "rss",
            unit: "MiB",
            value: rss_mib,
            baseline: None,
            target: big.then(|| ("≤ 256 MiB".to_owned(), rss_mib <= 256.0)),
        },
    ]
}

/// Every validator's attestation for `target` through the Web3Signer HTTP
/// API: 64 keep-alive HTTPS connections, requests pre-built as JSON.
async fn burst_http(
    d: &Daemon,
    keys: &[Vec<u8>],
    target: u64,
) -> Result<Burst, Box<dyn std::error::Error>> {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let http = d.http.ok_or("the daemon has no HTTP listener")?;
    let mut tls = (*signer::client::ClientTls::dev(&d.dir)
        .config()
        .map_err(|e| e.to_string())?)
    .clone();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let mut senders = Vec::new();
    for _ in 0..64 {
        let tcp = tokio::net::TcpStream::connect(http).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let stream = connector.connect(name, tcp).await?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        senders.push(sender);
    }
    let bodies: std::sync::Arc<Vec<(String, Bytes)>> = std::sync::Arc::new(
        keys.iter()
            .map(|k| {
                let body = json!({
                    "type": "ATTESTATION",
                    "fork_info": {
                        "fork": {"previous_version": "0x00000000", "current_version": "0x00000000", "epoch": "0"},
                        "genesis_validators_root": format!("0x{}", "00".repeat(32)),
                    },
                    "attestation": {
                        "slot": (target * 32).to_string(), "index": "0",
                        "beacon_block_root": format!("0x{}", "55".repeat(32)),
                        "source": {"epoch": (target - 1).to_string(), "root": format!("0x{}", "77".repeat(32))},
                        "target": {"epoch": target.to_string(), "root": format!("0x{}", "77".repeat(32))},
                    },
                });
                (
                    format!("/api/v1/eth2/sign/0x{}", hex::encode(k)),
                    Bytes::from(body.to_string()),
                )
            })
            .collect(),
    );
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let window = Window::open(d);
    let mut tasks = Vec::new();
    for mut sender in senders {
        let (bodies, next) = (bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut signed = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((path, body)) = bodies.get(i) else {
                    break;
                };
                let req = hyper::Request::post(path.as_str())
                    .header("host", "localhost")
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                    .map_err(|e| e.to_string())?;
                let t = Instant::now();
                let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
                let ok = resp.status() == hyper::StatusCode::OK;
                let _ = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                lat.push(t.elapsed());
                if ok {
                    signed += 1;
                }
            }
            Ok((lat, signed))
        }));
    }
    window.close(d, "HTTP", tasks, keys.len()).await
}

/// Raw BLS signing rate of this machine: every core signing, no I/O.
fn bls_baseline() -> f64 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_thread = 400;
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..cores {
            s.spawn(move || {
                if let Ok(k) = signer::crypto::bls::BlsSecretKey::from_bytes(&validator_secret(t)) {
                    for i in 0..per_thread {
                        std::hint::black_box(k.sign(&[i as u8; 32]));
                    }
                }
            });
        }
    });
    (cores * per_thread) as f64 / started.elapsed().as_secs_f64()
}

/// CPU seconds this process has used (user + system), from /proc (100 Hz ticks).
fn cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

/// CPU time (user + system) of process `pid` (or `self`), in seconds.
fn cpu_seconds_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the parenthesised name: state, ppid, …; utime and stime are
    // fields 14 and 15, the 12th and 13th here (the state is not a number).
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// One eth2-burst variant's measurements.
struct Burst {
    rate: f64,
    latencies: Vec<Duration>,
    commits: f64,
    loadgen_cpu: f64,
    /// The daemon's CPU time (user + system) during the run.
    daemon_cpu: f64,
    wall: f64,
    /// Mean µs per request in each pipeline stage, this variant's requests only.
    stages: StageMeans,
}

/// Every validator's attestation for `target`, in SignBatch calls of 256
/// (8 in flight on one connection).
async fn burst_batches(
    d: &Daemon,
    keys: &[Vec<u8>],
    target: u64,
) -> Result<Burst, Box<dyn std::error::Error>> {
    let c = connect_h2(d, 1).await?.pop().ok_or("no client")?;
    let batches: Vec<hyper::body::Bytes> = keys
        .chunks(256)
        .map(|chunk| {
            h2client::frame(&pb::SignBatchRequest {
                requests: chunk
                    .iter()
                    .map(|k| signer::client::dev_attestation(k, target - 1, target, 0x55))
                    .collect(),
            })
        })
        .collect();
    let window = Window::open(d);
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = Vec::new();
    for b in batches {
        let mut c = c.clone();
        let permit = sem.clone().acquire_owned().await?;
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = c.sign_batch(b).await.map_err(|e| e.to_string());
            drop(permit);
            let r = r?;
            Ok((
                vec![t.elapsed()],
                r.responses.iter().filter(|x| is_signed(x)).count(),
            ))
        }));
    }
    window.close(d, "SignBatch", tasks, keys.len()).await
}

/// Every validator's attestation for `target`, as single `Sign` calls over
/// 64 connections.
async fn burst_single(
    d: &Daemon,
    keys: &[Vec<u8>],
    target: u64,
) -> Result<Burst, Box<dyn std::error::Error>> {
    let clients = connect_h2(d, 64).await?;
    let requests: std::sync::Arc<Vec<hyper::body::Bytes>> = std::sync::Arc::new(
        keys.iter()
            .map(|k| {
                h2client::frame(&signer::client::dev_attestation(
                    k,
                    target - 1,
                    target,
                    0x55,
                ))
            })
            .collect(),
    );
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let window = Window::open(d);
    let mut tasks = Vec::new();
    for mut c in clients {
        let (requests, next) = (requests.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut signed = 0usize;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(r) = requests.get(i) else { break };
                let t = Instant::now();
                let out = c.sign(r.clone()).await.map_err(|e| e.to_string())?;
                lat.push(t.elapsed());
                if is_signed(&out) {
                    signed += 1;
                }
            }
            Ok((lat, signed))
        }));
    }
    window.close(d, "Sign", tasks, keys.len()).await
}

/// eth2-burst with a second instance on the same PostgreSQL database: each
/// instance is asked, at the same time, for half the validators' next
/// attestation (SignBatch). The rate is all signatures over the wall time
/// of both; the target is 0.8 × the raw BLS rate of this machine.
fn two_instances(
    runtime: &tokio::runtime::Runtime,
    first: &Daemon,
    validators: &[Vec<u8>],
    base: f64,
) -> Result<Vec<Row>, Box<dyn std::error::Error>> {
    let config = std::fs::read_to_string(first.dir.join("signer.toml"))?;
    // Without the privval connector: the votes scenario's node accepts one signer.
    let (head, _) = config.split_once("\n[privval]").unwrap_or((&config, ""));
    std::fs::write(
        first.dir.join("signer-2.toml"),
        head.replace("data/audit.jsonl", "data/audit-2.jsonl"),
    )?;
    let second = spawn_config(first.dir.clone(), "signer-2.toml", "daemon-2.log", &[])?;
    let (a, b) = validators.split_at(validators.len() / 2);
    let started = Instant::now();
    let (ra, rb) = runtime
        .block_on(async { tokio::join!(burst_batches(first, a, 2), burst_batches(&second, b, 2)) });
    let wall = started.elapsed().as_secs_f64();
    let (ra, rb) = (ra?, rb?);
    let rate = validators.len() as f64 / wall;
    let row = |figure, unit, value, baseline, target| Row {
        scenario: "eth2-burst",
        variant: "signbatch, 2 instances, postgres",
        figure,
        unit,
        value,
        baseline,
        target,
    };
    Ok(vec![
        row(
            "rate",
            "sig/s",
            rate,
            Some(base),
            Some(("≥ 0.8 × baseline".to_owned(), rate >= 0.8 * base)),
        ),
        row("db commits", "", ra.commits + rb.commits, None, None),
        row("daemon cpu", "s", ra.daemon_cpu + rb.daemon_cpu, None, None),
        row("wall", "s", wall, None, None),
    ])
}

fn burst_rows(variant: &'static str, b: Burst, base: f64, target: f64) -> Vec<Row> {
    let verdict = (format!("≥ {target} × baseline"), b.rate >= target * base);
    b.rows(
        "eth2-burst",
        variant,
        base,
        verdict,
        &[("p50", 0.5), ("p99", 0.99)],
    )
}

impl Burst {
    /// A throughput variant's rows: the rate against `base` with its target
    /// (text, met), the latency `percentiles` (ms), database commits, the
    /// load generator's and the daemon's CPU, and the wall time.
    fn rows(
        mut self,
        scenario: &'static str,
        variant: &'static str,
        base: f64,
        target: (String, bool),
        percentiles: &[(&'static str, f64)],
    ) -> Vec<Row> {
        self.latencies.sort();
        let row = |figure, unit, value, baseline, target| Row {
            scenario,
            variant,
            figure,
            unit,
            value,
            baseline,
            target,
        };
        let mut rows = vec![row("rate", "sig/s", self.rate, Some(base), Some(target))];
        for &(figure, p) in percentiles {
            let ms = percentile(&self.latencies, p) / 1000.0;
            rows.push(row(figure, "ms", ms, None, None));
        }
        rows.extend([
            row("db commits", "", self.commits, None, None),
            row("loadgen cpu", "s", self.loadgen_cpu, None, None),
            row("daemon cpu", "s", self.daemon_cpu, None, None),
            row("wall", "s", self.wall, None, None),
        ]);
        rows
    }
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

fn main() -> ExitCode {
    match run(BenchArgs::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("signer-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The `signer` binary next to this one (`SIGNER_BIN` overrides it), or
/// how to build it.
pub(crate) fn signer_bin() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("SIGNER_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("SIGNER_BIN={} is not a file", p.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe.with_file_name("signer");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "no signer binary next to {} (build both: cargo build --release -p signer -p signer-bench)",
            exe.display()
        ))
    }
}

/// `signer init --dev DIR`: the setup every scenario starts from.
pub(crate) fn create_dev(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let out = Command::new(signer_bin()?)
        .args(["init", "--dev"])
        .arg(dir)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "signer init --dev {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
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
    let daemon = start(
        &node,
        node_seed,
        &validators,
        chain_nodes.as_ref().map_or(&[][..], |n| &n.addrs[..]),
        pg.as_ref(),
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
        return report(&a, rows, stage_reports, Some(&daemon));
    }
    let base = match &pg {
        Some(pg) => pg.commit_baseline(1000)?,
        None => baseline(&daemon.dir, 1000)?,
    };

    let ks: Value = serde_json::from_slice(&std::fs::read(daemon.dir.join("keys/ed25519.json"))?)?;
    let ed = hex::decode(ks.get("pubkey").and_then(Value::as_str).unwrap_or_default())?;
    let (grpc, stages) = runtime.block_on(grpc_votes(&daemon, ed, a.warmup, a.heights))?;
    stage_reports.push(("cometbft-votes grpc".into(), stages));
    let (privval, stages) = privval_votes(&daemon, &node, node_seed, a.warmup, a.heights)?;
    stage_reports.push(("cometbft-votes privval".into(), stages));
    let (g, p) = if postgres {
        ("grpc, postgres", "privval, postgres")
    } else {
        ("grpc", "privval")
    };
    rows.extend(rows_for(g, grpc, base));
    rows.extend(rows_for(p, privval, base));
    rows.extend(startup_results);
    rows.extend(hsm_rows);
    report(&a, rows, stage_reports, Some(&daemon))
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
            "baselines: eth2-burst, raw BLS signing on every core in this process; cometbft-votes, one fdatasync of a 100-byte append plus one Ed25519 signature, p50 of 1000, on the daemon's disk ({})",
            daemon.dir.display()
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
