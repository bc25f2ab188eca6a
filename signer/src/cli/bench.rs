//! `signer bench`: starts a real daemon (a separate process, its own
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
//! The remaining scenarios of the benchmark issue (eth2 bursts, many
//! chains, start-up) join this command.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use proto::v1 as pb;
use serde_json::{Value, json};
use signer::api::privval::connector::{FrameReader, node_id, read_frame, write_frame};
use signer::api::privval::{Request, Response, WireVote, decode_response, encode_request};
use signer::cometbft::{BlockId, ProtocolVersion, Timestamp, Vote, VoteType};

#[derive(Debug, Args)]
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
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
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
    dir: PathBuf,
}

/// Mean time per request in each pipeline stage, from the daemon's own
/// metrics (sum / count of `signer_stage_seconds`), in µs.
fn stage_means(metrics: SocketAddr) -> Vec<(String, f64)> {
    use std::io::Read;
    let mut body = String::new();
    if let Ok(mut s) = std::net::TcpStream::connect(metrics) {
        let _ = write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let _ = s.read_to_string(&mut body);
    }
    let value = |series: &str| -> Option<f64> {
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    };
    signer::metrics::STAGES
        .iter()
        .filter_map(|stage| {
            let sum = value(&format!("signer_stage_seconds_sum{{stage=\"{stage}\"}}"))?;
            let count = value(&format!("signer_stage_seconds_count{{stage=\"{stage}\"}}"))?;
            (count > 0.0).then(|| ((*stage).to_owned(), sum / count * 1e6))
        })
        .collect()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
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

/// Writes a dev setup for the benchmark and starts the daemon on it.
fn start(node: &TcpListener, node_seed: [u8; 32]) -> Result<Daemon, Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("signer-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    super::init::create_dev(&dir)?;
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
    let config = std::fs::read_to_string(dir.join("signer.toml"))?
        .replace("127.0.0.1:9000", "127.0.0.1:0")
        .replace("127.0.0.1:9100", "127.0.0.1:0")
        .replace("127.0.0.1:9001", "127.0.0.1:0");
    let config = format!(
        "{config}\n[privval]\nidentity_key = \"keys/privval-identity.hex\"\n\n[[cometbft]]\nchain_id = \"bench-privval\"\nprotocol = \"v0.38\"\nkey = \"0x{ed}\"\nnodes = [\"tcp://{id}@{}\"]\n",
        node.local_addr()?
    );
    std::fs::write(dir.join("signer.toml"), config)?;
    let policy = std::fs::read_to_string(dir.join("policy.toml"))?;
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            "{policy}\n[clients.bench-node]\nidentity = \"{id}\"\n\n[networks.bench-privval]\nchain_id = \"bench-privval\"\n\n[[grant]]\nclients = [\"bench-node\"]\noperations = [\"cometbft.consensus\"]\nkey_groups = [\"dev-ed25519\"]\nnetworks = [\"bench-privval\"]\n"
        ),
    )?;
    let log = std::fs::File::create(dir.join("daemon.log"))?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["serve", "--config"])
        .arg(dir.join("signer.toml"))
        .env("SIGNER_LOG", "warn")
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
    Ok(Daemon {
        child,
        grpc,
        metrics,
        dir,
    })
}

async fn grpc_votes(
    d: &Daemon,
    ed: Vec<u8>,
    warmup: i64,
    heights: i64,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let tls = signer::client::ClientTls::dev(&d.dir)
        .config()
        .map_err(|e| e.to_string())?;
    let mut c = signer::client::connect(d.grpc, "localhost", tls)
        .await
        .map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(2 * heights as usize);
    for h in 1..=warmup + heights {
        for kind in [pb::VoteType::Prevote, pb::VoteType::Precommit] {
            let v = vote(VoteType::Prevote, h);
            let req = pb::SignRequest {
                public_key: ed.clone(),
                message: Some(pb::sign_request::Message::CometbftVote(pb::CometBftVote {
                    chain_id: "signer-dev-1".into(),
                    version: pb::CometBftVersion::V038 as i32,
                    r#type: kind as i32,
                    height: h,
                    round: 0,
                    block_id: Some(pb::BlockId {
                        hash: v.block_id.hash,
                        part_set_total: 1,
                        part_set_hash: v.block_id.part_set_hash,
                    }),
                    timestamp: Some(pb::Timestamp {
                        seconds: v.timestamp.seconds,
                        nanos: 0,
                    }),
                    extension: Vec::new(),
                })),
            };
            let started = Instant::now();
            let r = c.sign(req).await?.into_inner();
            if h > warmup {
                times.push(started.elapsed());
            }
            if !matches!(r.outcome, Some(pb::sign_response::Outcome::Signature(_))) {
                return Err(format!("height {h}: not signed: {r:?}").into());
            }
        }
    }
    Ok(times)
}

fn privval_votes(
    node: &TcpListener,
    node_seed: [u8; 32],
    warmup: i64,
    heights: i64,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    node.set_nonblocking(false)?;
    // The signer dialed at start and may have given up on a handshake that
    // waited for the gRPC variant: take connections until one completes.
    let mut conn = None;
    for _ in 0..50 {
        let (tcp, _) = node.accept()?;
        tcp.set_nodelay(true)?;
        if let Ok(c) = tendermint_p2p::secret_connection::SecretConnection::new(
            tcp,
            ed25519_consensus::SigningKey::from(node_seed),
            tendermint_p2p::secret_connection::Version::V0_34,
        ) {
            conn = Some(c);
            break;
        }
    }
    let mut conn = FrameReader::new(conn.ok_or("the signer never completed a handshake")?);
    let version = ProtocolVersion::V0_38;
    let mut times = Vec::with_capacity(2 * heights as usize);
    for h in 1..=warmup + heights {
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
    Ok(times)
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

pub fn run(a: BenchArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    signer::tls::install_crypto_provider();
    match a.scenario.as_deref() {
        None | Some("cometbft-votes") => {}
        Some(other) => {
            return Err(format!("unknown scenario {other:?} (available: cometbft-votes)").into());
        }
    }
    let node_seed = [0x33; 32];
    let node = TcpListener::bind("127.0.0.1:0")?;
    let daemon = start(&node, node_seed)?;
    let base = baseline(&daemon.dir, 1000)?;
    let ks: Value = serde_json::from_slice(&std::fs::read(daemon.dir.join("keys/ed25519.json"))?)?;
    let ed = hex::decode(ks.get("pubkey").and_then(Value::as_str).unwrap_or_default())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let grpc = runtime.block_on(grpc_votes(&daemon, ed, a.warmup, a.heights))?;
    let grpc_stages = stage_means(daemon.metrics);
    let privval = privval_votes(&node, node_seed, a.warmup, a.heights)?;
    let all_stages = stage_means(daemon.metrics);
    let mut rows = rows_for("grpc", grpc, base);
    rows.extend(rows_for("privval", privval, base));

    println!(
        "{:<16} {:<8} {:<6} {:>10} {:>10} {:>7}  target",
        "scenario", "variant", "figure", "value", "baseline", "ratio"
    );
    for r in &rows {
        let ratio = r.baseline.map(|b| r.value / b);
        println!(
            "{:<16} {:<8} {:<6} {:>8.0}{} {:>8.0}{} {:>7}  {}",
            r.scenario,
            r.variant,
            r.figure,
            r.value,
            r.unit,
            r.baseline.unwrap_or(0.0),
            r.unit,
            ratio.map_or("-".into(), |x| format!("{x:.2}")),
            r.target.as_ref().map_or("-".into(), |(t, met)| format!(
                "{t} ({})",
                if *met { "met" } else { "MISSED" }
            ))
        );
    }
    let show = |name: &str, stages: &[(String, f64)]| {
        let parts: Vec<String> = stages
            .iter()
            .map(|(s, us)| format!("{s} {us:.0}"))
            .collect();
        println!(
            "mean µs per request by stage ({name}): {}",
            parts.join(", ")
        );
    };
    show("gRPC variant", &grpc_stages);
    show("both variants", &all_stages);
    println!(
        "baseline: one fdatasync of a 100-byte append plus one Ed25519 signature, p50 of 1000, same disk ({})",
        daemon.dir.display()
    );
    if let Some(path) = a.json {
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
