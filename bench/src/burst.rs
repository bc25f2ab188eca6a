//! `eth2-burst`: every validator's next attestation through `SignBatch`,
//! single `Sign` calls on 64 connections, the Web3Signer HTTP API, and (on
//! PostgreSQL) two instances; against raw BLS signing on every core.

use std::time::{Duration, Instant};

use proto::v1 as pb;
use serde_json::json;

use super::daemon::{Daemon, StageMeans, spawn_config, validator_secret};
use super::{Row, Window, connect_h2, h2client, is_signed, percentile};

/// Every validator's attestation for `target` through the Web3Signer HTTP
/// API: 64 keep-alive HTTPS connections, requests pre-built as JSON.
pub(crate) async fn burst_http(
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
pub(crate) fn bls_baseline() -> f64 {
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

/// One eth2-burst variant's measurements.
pub(crate) struct Burst {
    pub(crate) rate: f64,
    pub(crate) latencies: Vec<Duration>,
    pub(crate) commits: f64,
    pub(crate) loadgen_cpu: f64,
    /// The daemon's CPU time (user + system) during the run.
    pub(crate) daemon_cpu: f64,
    pub(crate) wall: f64,
    /// Mean µs per request in each pipeline stage, this variant's requests only.
    pub(crate) stages: StageMeans,
}

/// Every validator's attestation for `target`, in SignBatch calls of 256
/// (8 in flight on one connection).
pub(crate) async fn burst_batches(
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
pub(crate) async fn burst_single(
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
pub(crate) fn two_instances(
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

pub(crate) fn burst_rows(variant: &'static str, b: Burst, base: f64, target: f64) -> Vec<Row> {
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
    pub(crate) fn rows(
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
