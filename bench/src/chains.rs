//! `many-chains`: `--chains` Ed25519 keys on as many chain ids, each chain
//! voting (prevote, precommit) height after height as fast as answers come,
//! through two frontends in turn:
//!
//! - `grpc`: one gRPC client (own mTLS connection) per chain;
//! - `privval`: one CometBFT node per chain, dialed by the signer's privval
//!   connector over SecretConnection, as a validator's nodes are. The
//!   nodes are threads of this process; each takes the signer's connection
//!   as soon as the daemon starts, then waits for its turn.
//!
//! Figures: signatures/s, p99, database commits, the load generator's CPU.
//! Baseline: raw Ed25519 signing on every core in this process.

use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use proto::v1 as pb;
use signer::api::privval::connector::{read_frame, write_frame};
use signer::api::privval::{Request, Response, WireVote, decode_response, encode_request};
use signer::cometbft::{ProtocolVersion, VoteType};

use super::{
    Burst, Daemon, NodeConn, Row, StageReport, Window, accept_signer, connect_h2, h2client,
};

/// The target: signatures per second, every one durably recorded.
const TARGET: f64 = 20_000.0;

/// The seed of the many-chains scenario's key for chain `i`.
pub(super) fn chain_seed(i: usize) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(format!("signer bench chain key {i}")).into()
}

/// The chain id of chain `i`.
pub(super) fn chain_id(i: usize) -> String {
    format!("bench-chain-{i}")
}

/// Raw Ed25519 signing rate of this machine: every core signing, no I/O.
fn ed25519_baseline() -> f64 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_thread = 20_000;
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..cores {
            s.spawn(move || {
                if let Ok(k) = signer::crypto::ed25519::Ed25519SecretKey::from_seed(&chain_seed(t))
                {
                    for i in 0..per_thread {
                        std::hint::black_box(k.sign(&(i as u64).to_le_bytes()));
                    }
                }
            });
        }
    });
    (cores * per_thread) as f64 / started.elapsed().as_secs_f64()
}

/// The benchmark's CometBFT nodes: one listener per chain, each with a
/// thread that takes the signer's connection (and completes the
/// SecretConnection handshake) as soon as the daemon dials.
pub(super) struct ChainNodes {
    /// Where each chain's node listens (the daemon's configuration).
    pub addrs: Vec<SocketAddr>,
    conns: Vec<Receiver<Result<NodeConn, String>>>,
}

impl ChainNodes {
    /// `n` nodes, all with the node key `seed`.
    pub fn listen(n: usize, seed: [u8; 32]) -> std::io::Result<Self> {
        let mut addrs = Vec::with_capacity(n);
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            addrs.push(listener.local_addr()?);
            let (tx, rx) = sync_channel(1);
            std::thread::Builder::new()
                .name(format!("bench-node-{i}"))
                .spawn(move || {
                    let _ = tx.send(accept_signer(&listener, seed));
                })?;
            conns.push(rx);
        }
        Ok(Self { addrs, conns })
    }
}

/// Runs both variants and returns their rows and per-stage means.
pub(super) fn rows(
    runtime: &tokio::runtime::Runtime,
    d: &Daemon,
    nodes: ChainNodes,
    heights: i64,
) -> Result<(Vec<Row>, Vec<StageReport>), Box<dyn std::error::Error>> {
    let base = ed25519_baseline();
    let keys: Vec<Vec<u8>> = (0..nodes.addrs.len())
        .map(|i| {
            signer::crypto::ed25519::Ed25519SecretKey::from_seed(&chain_seed(i))
                .map(|k| k.public_key().to_vec())
        })
        .collect::<Result<_, _>>()?;
    let grpc = runtime.block_on(grpc(d, &keys, heights))?;
    // The privval nodes go on from where the gRPC clients stopped.
    let privval = privval(d, nodes, heights + 1, heights)?;
    let stages = vec![
        ("many-chains grpc".to_owned(), grpc.stages.clone()),
        ("many-chains privval".to_owned(), privval.stages.clone()),
    ];
    let mut rows = variant_rows("grpc", grpc, base);
    rows.extend(variant_rows("privval", privval, base));
    Ok((rows, stages))
}

fn variant_rows(variant: &'static str, r: Burst, base: f64) -> Vec<Row> {
    let verdict = (format!("≥ {TARGET} sig/s"), r.rate >= TARGET);
    r.rows("many-chains", variant, base, verdict, &[("p99", 0.99)])
}

/// One gRPC connection per chain, each voting (prevote, precommit) at
/// heights `1..=heights` as fast as answers come.
async fn grpc(
    d: &Daemon,
    keys: &[Vec<u8>],
    heights: i64,
) -> Result<Burst, Box<dyn std::error::Error>> {
    let clients = connect_h2(d, keys.len()).await?;
    let requests: Vec<Vec<hyper::body::Bytes>> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let chain = chain_id(i);
            (1..=heights)
                .flat_map(|h| {
                    [pb::VoteType::Prevote, pb::VoteType::Precommit].map(|kind| {
                        h2client::frame(&signer::client::vote_request(
                            key,
                            &chain,
                            kind,
                            (h, 0),
                            0xab,
                            1_700_000_000 + h,
                        ))
                    })
                })
                .collect()
        })
        .collect();
    let window = Window::open(d);
    let mut tasks = Vec::new();
    for (i, (mut c, requests)) in clients.into_iter().zip(requests).enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(requests.len());
            for req in requests {
                let t = Instant::now();
                let out = c.sign(req).await.map_err(|e| e.to_string())?;
                lat.push(t.elapsed());
                if !super::is_signed(&out) {
                    return Err(format!("chain {i}: {out:?}"));
                }
            }
            let n = lat.len();
            Ok((lat, n))
        }));
    }
    let expected = 2 * keys.len() * usize::try_from(heights).unwrap_or(0);
    window.close(d, "many-chains grpc", tasks, expected).await
}

/// Each chain's node asks for prevote and precommit at heights
/// `first..first + heights` over its SecretConnection, as fast as answers
/// come.
fn privval(
    d: &Daemon,
    nodes: ChainNodes,
    first: i64,
    heights: i64,
) -> Result<Burst, Box<dyn std::error::Error>> {
    let version = ProtocolVersion::V0_38;
    let n = nodes.conns.len();
    let go = Arc::new(Barrier::new(n + 1));
    let mut threads = Vec::with_capacity(n);
    for (i, rx) in nodes.conns.into_iter().enumerate() {
        let mut conn = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| format!("chain {i}: the signer did not connect within 30 s"))??;
        let requests = (first..first + heights)
            .flat_map(|h| [VoteType::Prevote, VoteType::Precommit].map(|kind| (h, kind)))
            .map(|(h, kind)| {
                encode_request(
                    version,
                    &Request::SignVote {
                        chain_id: chain_id(i),
                        vote: WireVote {
                            vote: super::vote(kind, h),
                            validator_address: vec![1; 20],
                            validator_index: 0,
                            signature: Vec::new(),
                            extension_signature: Vec::new(),
                        },
                        skip_extension_signing: false,
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let go = go.clone();
        threads.push(std::thread::spawn(
            move || -> Result<(Vec<Duration>, usize), String> {
                go.wait();
                let mut lat = Vec::with_capacity(requests.len());
                for bytes in requests {
                    let t = Instant::now();
                    write_frame(&mut conn, &bytes).map_err(|e| e.to_string())?;
                    let frame = read_frame(&mut conn)
                        .map_err(|e| e.to_string())?
                        .ok_or("the signer hung up")?;
                    lat.push(t.elapsed());
                    match decode_response(version, &frame) {
                        Ok(Response::SignedVote(Ok(_))) => {}
                        other => return Err(format!("chain {i}: {other:?}")),
                    }
                }
                let n = lat.len();
                Ok((lat, n))
            },
        ));
    }
    let window = Window::open(d);
    go.wait();
    let results = threads
        .into_iter()
        .map(|t| {
            t.join()
                .unwrap_or_else(|_| Err("a node thread panicked".into()))
        })
        .collect();
    let expected = 2 * n * usize::try_from(heights).unwrap_or(0);
    window.finish(d, "many-chains privval", results, expected)
}
