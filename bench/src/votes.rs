//! `cometbft-votes`: sequential prevotes and precommits through gRPC and
//! through the privval connector, against one `fdatasync` plus one Ed25519
//! signature measured on the same disk, and against the floor of a durable
//! vote ([`floor`]).

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use proto::v1 as pb;
use signer::api::privval::connector::{FrameReader, read_frame, write_frame};
use signer::api::privval::{Request, Response, WireVote, decode_response, encode_request};
use signer::cometbft::{BlockId, ProtocolVersion, Timestamp, Vote, VoteType};

use super::daemon::{Daemon, StageMeans, Stages};
use super::{connect_h2, h2client, is_signed, percentile};

pub(crate) fn vote(kind: VoteType, height: i64) -> Vote {
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
pub(crate) fn baseline(dir: &Path, rounds: usize) -> Result<f64, Box<dyn std::error::Error>> {
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

/// The floor's figures: p50 and p99 of the whole in µs, and the mean µs of
/// its parts (echo, write, sign), to set beside the daemon's stage means.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Floor {
    pub p50: f64,
    pub p99: f64,
    pub means: [f64; 3],
}

impl Floor {
    /// The parts as a stage report line's means.
    pub fn parts(&self) -> StageMeans {
        ["echo", "write", "sign"]
            .iter()
            .zip(self.means)
            .map(|(name, us)| ((*name).to_owned(), us))
            .collect()
    }
}

/// Heights of votes between two blocks of floor rounds (as many rounds as
/// heights): a block takes a few tenths of a second.
pub(crate) const FLOOR_BLOCK: i64 = 250;

/// The floor of a durable privval vote on this machine: one SecretConnection
/// round trip on loopback (a vote-sized frame echoed by a thread), one 4 KiB
/// `O_DSYNC` write into a preallocated file on the disk of the directory it
/// was made in (a write that changes no file metadata: the device write
/// alone), and one Ed25519 signature, in sequence: one [`FloorRig::round`].
///
/// Its rounds are taken in blocks between blocks of votes
/// ([`FLOOR_BLOCK`]), so that the floor and the votes sample the same
/// disk. This VM's disk wanders: the p50 of 500 `O_DSYNC` writes read
/// 138–213 µs from one quarter second to the next. A floor taken as the
/// best of three short passes caught the disk's best moment, while the
/// votes ran through all of them; the ratios swung 1.26–1.82 between
/// identical runs. Not one round per height either: the floor's write then
/// met the daemon's audit flushes and its threads slept deeper between
/// rounds (write 213–266 µs mean against 159–195 alone), and privval read
/// 0.89–1.14 × that "floor" — a limit measured badly.
pub(crate) struct FloorRig {
    conn: NodeConn,
    echo: Option<std::thread::JoinHandle<Result<(), String>>>,
    file: std::fs::File,
    path: std::path::PathBuf,
    key: signer::crypto::ed25519::Ed25519SecretKey,
    times: Vec<Duration>,
    parts: [Duration; 3],
}

/// Preallocated 4 KiB blocks the floor's writes go round.
const FLOOR_SLOTS: u64 = 256;

impl FloorRig {
    /// The echo thread, its SecretConnection and the preallocated file in `dir`.
    pub(crate) fn new(dir: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        use std::os::unix::fs::OpenOptionsExt;
        let key = signer::crypto::ed25519::Ed25519SecretKey::from_seed(&[7; 32])?;
        let path = dir.join("floor");
        {
            let mut f = std::fs::File::create(&path)?;
            f.write_all(&vec![0u8; (FLOOR_SLOTS * 4096) as usize])?;
            f.sync_all()?;
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DSYNC)
            .open(&path)?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let echo = std::thread::spawn(move || -> Result<(), String> {
            let (tcp, _) = listener.accept().map_err(|e| e.to_string())?;
            tcp.set_nodelay(true).map_err(|e| e.to_string())?;
            let sc = tendermint_p2p::secret_connection::SecretConnection::new(
                tcp,
                ed25519_consensus::SigningKey::from([9; 32]),
                tendermint_p2p::secret_connection::Version::V0_34,
            )
            .map_err(|e| e.to_string())?;
            let mut conn = FrameReader::new(sc);
            // Until the client hangs up (SecretConnection reports that as a
            // short read); a failure in between shows on the client's side.
            while let Ok(Some(frame)) = read_frame(&mut conn) {
                write_frame(&mut conn, &frame).map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let tcp = std::net::TcpStream::connect(addr)?;
        tcp.set_nodelay(true)?;
        let sc = tendermint_p2p::secret_connection::SecretConnection::new(
            tcp,
            ed25519_consensus::SigningKey::from([8; 32]),
            tendermint_p2p::secret_connection::Version::V0_34,
        )
        .map_err(|e| format!("floor: SecretConnection handshake: {e}"))?;
        Ok(Self {
            conn: FrameReader::new(sc),
            echo: Some(echo),
            file,
            path,
            key,
            times: Vec::new(),
            parts: [Duration::ZERO; 3],
        })
    }

    /// `rounds` rounds: echo, write, sign.
    pub(crate) fn rounds(&mut self, rounds: i64) -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::FileExt;
        // A vote request is about 160 bytes on the wire.
        let frame = [0x5a; 160];
        let block = [0xa5; 4096];
        for _ in 0..rounds {
            let i = self.times.len();
            let started = Instant::now();
            write_frame(&mut self.conn, &frame).map_err(|e| format!("floor: sending: {e}"))?;
            read_frame(&mut self.conn)
                .map_err(|e| format!("floor: reading the echo: {e}"))?
                .ok_or("floor: the echo thread hung up")?;
            let echoed = Instant::now();
            self.file
                .write_all_at(&block, (i as u64 % FLOOR_SLOTS) * 4096)
                .map_err(|e| format!("floor: O_DSYNC write: {e}"))?;
            let written = Instant::now();
            std::hint::black_box(self.key.sign(&[i as u8; 120]));
            let signed = Instant::now();
            self.parts[0] += echoed - started;
            self.parts[1] += written - echoed;
            self.parts[2] += signed - written;
            self.times.push(signed - started);
        }
        Ok(())
    }

    /// The figures of every round, and the rig taken down.
    pub(crate) fn finish(mut self) -> Result<Floor, Box<dyn std::error::Error>> {
        let rounds = self.times.len();
        if rounds == 0 {
            return Err("floor: no rounds were taken".into());
        }
        let mut times = std::mem::take(&mut self.times);
        times.sort();
        let mean = |d: Duration| d.as_secs_f64() * 1e6 / rounds as f64;
        let floor = Floor {
            p50: percentile(&times, 0.5),
            p99: percentile(&times, 0.99),
            means: self.parts.map(mean),
        };
        let echo = self.echo.take();
        drop(self);
        if let Some(echo) = echo {
            echo.join()
                .map_err(|_| "floor: the echo thread panicked")?
                .map_err(|e| format!("floor: echo thread: {e}"))?;
        }
        Ok(floor)
    }
}

impl Drop for FloorRig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes a block of floor rounds before every [`FLOOR_BLOCK`]th measured
/// height (`h`, the first measured being `first`), if there is a rig.
fn floor_block(
    rig: Option<&mut FloorRig>,
    h: i64,
    first: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    match rig {
        Some(rig) if h >= first && (h - first) % FLOOR_BLOCK == 0 => rig.rounds(FLOOR_BLOCK),
        _ => Ok(()),
    }
}

/// The gRPC round trip the signer's own transport costs: `Health/Check` on
/// one connection, `rounds` times; the best p50 of three passes, µs.
pub(crate) async fn grpc_echo(
    d: &Daemon,
    rounds: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut c = connect_h2(d, 1).await?.pop().ok_or("no client")?;
    let mut best = f64::INFINITY;
    for _pass in 0..3 {
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let started = Instant::now();
            let status = c.health_check().await.map_err(|e| e.to_string())?;
            times.push(started.elapsed());
            if status != 1 {
                return Err(format!("health check answered status {status}, not SERVING").into());
            }
        }
        times.sort();
        best = best.min(percentile(&times, 0.5));
    }
    Ok(best)
}

/// Sequential prevotes and precommits over gRPC; with a floor rig, its
/// blocks of rounds between blocks of heights.
pub(crate) async fn grpc_votes(
    d: &Daemon,
    ed: Vec<u8>,
    warmup: i64,
    heights: i64,
    mut floor: Option<&mut FloorRig>,
) -> Result<(Vec<Duration>, StageMeans), Box<dyn std::error::Error>> {
    let mut c = connect_h2(d, 1).await?.pop().ok_or("no client")?;
    let mut times = Vec::with_capacity(2 * heights as usize);
    let mut stages = None;
    for h in 1..=warmup + heights {
        floor_block(floor.as_deref_mut(), h, warmup + 1)?;
        if h == warmup + 1 {
            stages = Some(Stages::scrape(d.metrics));
        }
        for kind in [pb::VoteType::Prevote, pb::VoteType::Precommit] {
            let took = grpc_vote(&mut c, &ed, kind, h).await?;
            if h > warmup {
                times.push(took);
            }
        }
    }
    let stages = stages.map_or_else(Vec::new, |s| Stages::means_since(&s, d.metrics));
    Ok((times, stages))
}

/// One vote by `public_key` on the dev chain at height `h`, round 0, over
/// gRPC: how long its answer took; an error unless it was signed.
async fn grpc_vote(
    c: &mut h2client::Client,
    public_key: &[u8],
    kind: pb::VoteType,
    h: i64,
) -> Result<Duration, String> {
    let req = h2client::frame(&signer::client::vote_request(
        public_key,
        "signer-dev-1",
        kind,
        (h, 0),
        0xab,
        1_700_000_000 + h,
    ));
    let started = Instant::now();
    let r = c.sign(req).await.map_err(|e| e.to_string())?;
    let took = started.elapsed();
    if is_signed(&r) {
        Ok(took)
    } else {
        Err(format!("{kind:?} at height {h}: not signed: {r:?}"))
    }
}

/// A benchmark node's end of the signer's privval connection.
pub(crate) type NodeConn =
    FrameReader<tendermint_p2p::secret_connection::SecretConnection<std::net::TcpStream>>;

/// Takes the signer's privval connection on `node`. The signer dials at
/// start and may have given up on a handshake nobody answered in time:
/// takes connections until one completes.
pub(crate) fn accept_signer(node: &TcpListener, node_seed: [u8; 32]) -> Result<NodeConn, String> {
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

/// Sequential prevotes and precommits over the privval connection; with a
/// floor rig, its blocks of rounds between blocks of heights. Also the p50
/// of a `Ping` on the same connection afterwards.
pub(crate) fn privval_votes(
    d: &Daemon,
    node: &TcpListener,
    node_seed: [u8; 32],
    warmup: i64,
    heights: i64,
    mut floor: Option<&mut FloorRig>,
) -> Result<(Vec<Duration>, StageMeans, f64), Box<dyn std::error::Error>> {
    let mut conn = accept_signer(node, node_seed)?;
    let version = ProtocolVersion::V0_38;
    let mut times = Vec::with_capacity(2 * heights as usize);
    let mut stages = None;
    for h in 1..=warmup + heights {
        floor_block(floor.as_deref_mut(), h, warmup + 1)?;
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
    Ok((times, stages, privval_ping(&mut conn, version, 1000)?))
}

/// The p50 in µs of `rounds` privval `Ping`s on `conn`: the transport and
/// the codec through the daemon, without the pipeline — to set beside the
/// floor's echo.
fn privval_ping(
    conn: &mut NodeConn,
    version: ProtocolVersion,
    rounds: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let bytes = encode_request(version, &Request::Ping)?;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        write_frame(conn, &bytes)?;
        let frame = read_frame(conn)?.ok_or("the signer hung up")?;
        times.push(started.elapsed());
        match decode_response(version, &frame)? {
            Response::Ping => {}
            other => return Err(format!("ping: {other:?}").into()),
        }
    }
    times.sort();
    Ok(percentile(&times, 0.5))
}

/// Most heights [`grpc_votes_by_kind`] votes at: with a key in an HSM or
/// KMS a vote takes about a millisecond here, and a p50 needs no more.
pub(crate) const BY_KIND_MAX_HEIGHTS: i64 = 320;

/// The policy lines that let the dev client vote with `public_key` on the
/// dev chain.
pub(crate) fn consensus_grant(group: &str, public_key: &[u8]) -> String {
    format!(
        "\n[key_groups.{group}]\nkeys = [\"0x{}\"]\n\n[[grant]]\nclients = [\"dev\"]\noperations = [\"cometbft.consensus\"]\nkey_groups = [\"{group}\"]\nnetworks = [\"dev-chain\"]\n",
        hex::encode(public_key)
    )
}

/// Sequential prevotes and precommits by `public_key` over gRPC on one
/// connection, at `heights` heights from `first` (the first sixteenth, at
/// most 20, as warm-up, not counted): the latencies of each kind, sorted. A precommit signs its (empty) extension too, as
/// CometBFT v0.38 asks: with a key in an HSM or KMS, the ratio of the two
/// says what the second signature adds.
pub(crate) async fn grpc_votes_by_kind(
    d: &Daemon,
    public_key: &[u8],
    first: i64,
    heights: i64,
) -> Result<(Vec<Duration>, Vec<Duration>), Box<dyn std::error::Error>> {
    let warmup = (heights / 16).min(20);
    let mut c = connect_h2(d, 1).await?.pop().ok_or("no client")?;
    let (mut prevotes, mut precommits) = (Vec::new(), Vec::new());
    for h in first..first + heights {
        for kind in [pb::VoteType::Prevote, pb::VoteType::Precommit] {
            let took = grpc_vote(&mut c, public_key, kind, h).await?;
            if h >= first + warmup {
                match kind {
                    pb::VoteType::Prevote => prevotes.push(took),
                    _ => precommits.push(took),
                }
            }
        }
    }
    prevotes.sort();
    precommits.sort();
    Ok((prevotes, precommits))
}

/// Rows for [`grpc_votes_by_kind`]: prevote p50, and precommit p50 against it.
pub(crate) fn by_kind_rows(
    scenario: &'static str,
    variant: &'static str,
    prevotes: &[Duration],
    precommits: &[Duration],
) -> [super::Row; 2] {
    let prevote = percentile(prevotes, 0.5);
    let row = |figure, value, baseline| super::Row {
        scenario,
        variant,
        figure,
        unit: "µs",
        value,
        baseline,
        target: None,
    };
    [
        row("prevote p50", prevote, None),
        row("precommit p50", percentile(precommits, 0.5), Some(prevote)),
    ]
}
