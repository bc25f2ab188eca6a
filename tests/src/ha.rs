//! Several `signer serve` processes on one PostgreSQL database, a load that
//! keeps every signature any of them returned, and a history checker.
//!
//! The checker is written from the rules' statement (EIP-3076: no two
//! attestations of a key with one target and different data, none surrounding
//! another), not from the engine's code: it looks at what the *clients* were
//! given, and then at the database only to confirm that each returned
//! attestation signature's message is recorded there — by verifying the
//! returned BLS signature over the recorded signing root. For CometBFT: no
//! two votes at one height/round/step for different blocks, each signature
//! over its sign bytes, and the stored position at or past every vote.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use proto::v1 as pb;

use crate::daemon::{Daemon, Setup, attestation, panic_str};
use crate::pg::{PASSWORD, PgCluster, USER};

pub type Client = pb::signer_client::SignerClient<tonic::transport::Channel>;

/// Writes `signer-<name>.toml`: the setup's config with the shared database
/// at `hosts` (`127.0.0.1:port[,127.0.0.1:port…]`, read-write sessions only;
/// password from a file, plaintext on loopback, `timeout_ms` for statements
/// and connects, `extra` lines in `[slashing.postgres]`) and an audit log of
/// its own.
pub fn instance_config(
    setup: &Setup,
    hosts: &str,
    schema: &str,
    name: &str,
    timeout_ms: u64,
    extra: &str,
) -> PathBuf {
    let base = std::fs::read_to_string(setup.path("signer.toml")).unwrap_or_default();
    setup.write("data/pg-password", &format!("{PASSWORD}\n"));
    let url = format!(
        "postgresql://{USER}@{hosts}/slashing?target_session_attrs=read-write&options=-c%20search_path%3D{schema}"
    );
    let shared = format!(
        "[slashing]\nengine = \"postgres\"\n\n[slashing.postgres]\nurl = \"{url}\"\n\
         password_file = \"data/pg-password\"\ntls = \"disable\"\nstatement_timeout_ms = {timeout_ms}\n\
         connect_timeout_ms = {timeout_ms}\n{extra}\n[audit]\nfile = \"data/audit-{name}.jsonl\"\n"
    );
    let text = base.replace("[slashing]\ndatabase = \"data/slashing.sqlite\"\n", &shared);
    assert_ne!(text, base, "the setup's [slashing] section changed shape");
    let file = format!("signer-{name}.toml");
    setup.write(&file, &text);
    setup.path(&file)
}

/// `127.0.0.1:port`.
pub fn local(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// A small deterministic generator (xorshift64*), seeded per test so a
/// failure can be replayed (the seed is printed).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// A seed from the clock, printed.
    pub fn seeded(what: &str) -> Self {
        let seed = std::env::var("HA_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        println!("{what}: HA_SEED={seed}");
        Self::new(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Instances serving one database: their daemons, configs, and a client
/// per instance that the load shares (replaced when an instance restarts).
pub struct Instances {
    pub configs: Vec<PathBuf>,
    pub daemons: Vec<Option<Daemon>>,
    pub clients: Arc<RwLock<Vec<Option<Client>>>>,
    /// A client `node` (CometBFT consensus) per instance.
    pub node_clients: Arc<RwLock<Vec<Option<Client>>>>,
    starts: usize,
    /// Last: fields drop in order, and a failing test's daemons print their
    /// logs from this directory as they drop.
    pub setup: Setup,
}

impl std::fmt::Debug for Instances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instances")
            .field("configs", &self.configs)
            .field("starts", &self.starts)
            .finish_non_exhaustive()
    }
}

/// Adds to the setup's policy a grant of its second BLS key to `vc`, so the
/// load spreads over two validators (what the policy already has is kept).
pub fn grant_both_bls_keys(setup: &Setup) {
    let policy = std::fs::read_to_string(setup.path("policy.toml")).unwrap_or_default();
    if policy.contains("[key_groups.more]") {
        return;
    }
    setup.write_policy(&format!(
        "{policy}\n[key_groups.more]\nkeys = [\"0x{}\"]\n\n[[grant]]\nclients = [\"vc\"]\n\
         operations = [\"eth2.duties\"]\nkey_groups = [\"more\"]\nnetworks = [\"test-eth\"]\n",
        hex::encode(&setup.bls2)
    ));
}

impl Instances {
    /// `n` instances started at the same moment on `schema` at `hosts`,
    /// both BLS keys granted to the client `vc`.
    pub async fn start(
        setup: Setup,
        hosts: &str,
        schema: &str,
        n: usize,
        timeout_ms: u64,
        extra: &str,
    ) -> Self {
        grant_both_bls_keys(&setup);
        let configs: Vec<PathBuf> = (0..n)
            .map(|i| instance_config(&setup, hosts, schema, &format!("i{i}"), timeout_ms, extra))
            .collect();
        let daemons: Vec<Daemon> = std::thread::scope(|s| {
            let handles: Vec<_> = configs
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let log = setup.path(&format!("daemon-i{i}.log"));
                    s.spawn(move || Daemon::start(c, &log))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| panic_str("an instance did not start"))
                })
                .collect()
        });
        let (tls, node_tls) = (setup.client_tls("vc"), setup.client_tls("node"));
        let (mut clients, mut node_clients) = (Vec::new(), Vec::new());
        for d in &daemons {
            clients.push(Some(d.client(tls.clone()).await));
            node_clients.push(Some(d.client(node_tls.clone()).await));
        }
        Self {
            setup,
            configs,
            daemons: daemons.into_iter().map(Some).collect(),
            clients: Arc::new(RwLock::new(clients)),
            node_clients: Arc::new(RwLock::new(node_clients)),
            starts: n,
        }
    }

    /// SIGKILLs instance `i` (its client is withdrawn first).
    pub fn kill(&mut self, i: usize) {
        for clients in [&self.clients, &self.node_clients] {
            if let Ok(mut c) = clients.write()
                && let Some(slot) = c.get_mut(i)
            {
                *slot = None;
            }
        }
        if let Some(d) = self.daemons.get_mut(i).and_then(Option::take) {
            d.kill();
        }
    }

    /// Starts instance `i` again and gives the load a client for it.
    pub async fn restart(&mut self, i: usize) {
        self.starts += 1;
        let config = self.configs.get(i).cloned().unwrap_or_default();
        let log = self.setup.path(&format!("daemon-i{i}-{}.log", self.starts));
        let d = tokio::task::spawn_blocking(move || Daemon::start(&config, &log))
            .await
            .unwrap_or_else(|e| panic_str(&e.to_string()));
        let client = d.client(self.setup.client_tls("vc")).await;
        let node_client = d.client(self.setup.client_tls("node")).await;
        if let Some(slot) = self.daemons.get_mut(i) {
            *slot = Some(d);
        }
        for (clients, client) in [(&self.clients, client), (&self.node_clients, node_client)] {
            if let Ok(mut c) = clients.write()
                && let Some(slot) = c.get_mut(i)
            {
                *slot = Some(client);
            }
        }
    }

    /// `GET /readyz` of instance `i`: its status.
    pub fn ready(&self, i: usize) -> u16 {
        self.daemons
            .get(i)
            .and_then(Option::as_ref)
            .map_or(0, |d| d.http("GET", "/readyz").0)
    }

    /// Instance `i`'s daemon.
    pub fn daemon(&self, i: usize) -> &Daemon {
        self.daemons
            .get(i)
            .and_then(Option::as_ref)
            .unwrap_or_else(|| panic_str(&format!("instance {i} is not running")))
    }

    /// Stops every instance (SIGTERM); each must exit cleanly and none may
    /// have panicked.
    pub fn stop(mut self) {
        for d in self.daemons.iter_mut().filter_map(Option::take) {
            let log = d.log();
            assert!(!log.contains("panicked"), "{log}");
            assert!(d.stop().success(), "an instance did not exit cleanly");
        }
    }
}

/// Every instance signs a fresh attestation (epochs from `base`) within a
/// few seconds, on the same process, and is ready again.
pub async fn signs_again(instances: &Instances, keys: &[Vec<u8>], base: u64) {
    for i in 0..instances.configs.len() {
        let key = keys.get(i % keys.len().max(1)).cloned().unwrap_or_default();
        let mut client = instances
            .clients
            .read()
            .ok()
            .and_then(|c| c.get(i).cloned().flatten())
            .unwrap_or_else(|| panic_str("no client"));
        let mut ok = false;
        // What each attempt got, for the failure message.
        let mut answers: Vec<String> = Vec::new();
        for attempt in 0..50u64 {
            match client
                .sign(attestation(&key, base, base + 1 + attempt, 9))
                .await
            {
                Err(status) => answers.push(format!("transport: {status}")),
                Ok(r) => match r.into_inner().outcome {
                    Some(pb::sign_response::Outcome::Signature(_)) => {
                        ok = true;
                        break;
                    }
                    Some(pb::sign_response::Outcome::Refusal(f)) => {
                        answers.push(format!("{:?}: {}", f.reason(), f.message))
                    }
                    None => answers.push("no outcome".into()),
                },
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        answers.dedup();
        if !ok {
            // Its log now, before anything else is torn down: the reason
            // for a refusal is there, not in the answer.
            let log = instances.daemon(i).log();
            let mut last: Vec<&str> = log.lines().rev().take(400).collect();
            last.reverse();
            let mut seen = std::collections::BTreeSet::new();
            let reasons: Vec<&str> = last
                .into_iter()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .filter(|l| seen.insert(l.get(28..).unwrap_or(l)))
                .collect();
            panic_str(&format!(
                "instance {i} did not sign again after the fault ended; its answers: {answers:#?}\n\
                 its log (distinct warnings, last 400 lines):\n{}",
                reasons.join("\n")
            ));
        }
        assert_eq!(instances.ready(i), 200, "instance {i} not ready again");
    }
}

/// An attestation some instance signed, as the client asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub key: Vec<u8>,
    pub source: u64,
    pub target: u64,
    /// Which beacon block root (the data that differs between conflicting votes).
    pub block: u8,
    pub signature: Vec<u8>,
}

/// A CometBFT prevote or precommit some instance signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedVote {
    pub height: i64,
    /// 1 prevote, 2 precommit (`SignedMsgType`).
    pub kind: i32,
    pub block: u8,
    pub signature: Vec<u8>,
}

/// The chain the load's CometBFT votes are for (the setup's `test-chain`).
pub const VOTE_CHAIN: &str = crate::daemon::CHAIN;

/// The load's CometBFT vote: `kind` 1 prevote, 2 precommit; a block of
/// `block` bytes; round 0; timestamp 1000 s.
pub fn vote(height: i64, kind: i32, block: u8) -> signer::cometbft::Vote {
    use signer::cometbft::{BlockId, Timestamp, Vote, VoteType};
    Vote {
        kind: if kind == 1 {
            VoteType::Prevote
        } else {
            VoteType::Precommit
        },
        height,
        round: 0,
        block_id: BlockId {
            hash: vec![block; 32],
            part_set_total: 1,
            part_set_hash: vec![block; 32],
        },
        timestamp: Timestamp {
            seconds: 1000,
            nanos: 0,
        },
        extension: Vec::new(),
    }
}

/// [`vote`] as a `signer.v1` request for `key` on `chain` (v0.38).
pub fn vote_request(key: &[u8], chain: &str, height: i64, kind: i32, block: u8) -> pb::SignRequest {
    pb::SignRequest {
        public_key: key.to_vec(),
        message: Some(pb::sign_request::Message::CometbftVote(pb::CometBftVote {
            chain_id: chain.into(),
            version: pb::CometBftVersion::V038 as i32,
            r#type: kind,
            height,
            round: 0,
            block_id: Some(pb::BlockId {
                hash: vec![block; 32],
                part_set_total: 1,
                part_set_hash: vec![block; 32],
            }),
            timestamp: Some(pb::Timestamp {
                seconds: 1000,
                nanos: 0,
            }),
            extension: Vec::new(),
        })),
    }
}

/// Runs `signer serve --config config`, which must refuse to start; returns
/// (stdout, stderr).
pub fn serve_refused(config: &std::path::Path) -> (String, String) {
    serve_refused_with(config, &[])
}

/// [`serve_refused`] with extra environment (`SOFTHSM2_CONF`, …).
pub fn serve_refused_with(config: &std::path::Path, env: &[(String, String)]) -> (String, String) {
    let out = std::process::Command::new(crate::daemon::signer_bin())
        .args(["serve", "--config"])
        .arg(config)
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .envs(env.iter().cloned())
        .output()
        .unwrap_or_else(|e| panic_str(&e.to_string()));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    if out.status.success() {
        panic_str(&format!(
            "serve started (and exited cleanly) where it must refuse: {stderr}"
        ));
    }
    (stdout, stderr)
}

/// What the load saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub signed: Vec<Signed>,
    pub votes: Vec<SignedVote>,
    /// Refusals by reason.
    pub refused: BTreeMap<String, usize>,
    /// Calls that failed at the transport (an instance killed under them).
    pub transport_errors: usize,
    /// The longest any call took.
    pub slowest: Duration,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.signed.extend(other.signed);
        self.votes.extend(other.votes);
        for (k, v) in other.refused {
            *self.refused.entry(k).or_default() += v;
        }
        self.transport_errors += other.transport_errors;
        self.slowest = self.slowest.max(other.slowest);
    }

    pub fn refused(&self, reason: pb::Reason) -> usize {
        self.refused
            .get(reason.as_str_name())
            .copied()
            .unwrap_or_default()
    }
}

/// Workers sending conflicting attestations for `keys` to random instances
/// until stopped. Targets move forward with time (a new epoch every 100 ms);
/// around each, sources, targets and block roots are drawn so that double
/// votes and surrounds are asked for all the time, from several instances at
/// once.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
}

impl std::fmt::Debug for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Load")
            .field("workers", &self.tasks.len())
            .finish()
    }
}

/// A call that takes this long hangs: no request may.
pub const HANG: Duration = Duration::from_secs(20);

impl Load {
    /// `workers` tasks against `instances`: two in three requests are
    /// attestations by `keys` (through `vc`), one in three a CometBFT vote by
    /// the setup's Ed25519 key (through `node`).
    pub fn start(instances: &Instances, keys: Vec<Vec<u8>>, workers: usize, rng: &mut Rng) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let began = Instant::now();
        let ed = instances.setup.ed25519.clone();
        let tasks = (0..workers)
            .map(|_| {
                let mut rng = Rng::new(rng.next_u64());
                let (clients, nodes) = (instances.clients.clone(), instances.node_clients.clone());
                let (keys, ed, stop) = (keys.clone(), ed.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    while !stop.load(Ordering::Relaxed) {
                        let vote = rng.below(3) == 0;
                        let pool = if vote { &nodes } else { &clients };
                        let n = pool.read().map(|c| c.len()).unwrap_or(0) as u64;
                        let pick = rng.below(n) as usize;
                        let client = pool
                            .read()
                            .ok()
                            .and_then(|c| c.get(pick).cloned().flatten());
                        let Some(mut client) = client else {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        };
                        let epoch = 10 + began.elapsed().as_millis() as u64 / 100;
                        let block = rng.below(3) as u8;
                        let (request, asked_for) = if vote {
                            let height = epoch as i64 + rng.below(2) as i64;
                            let kind = 1 + rng.below(2) as i32;
                            (
                                vote_request(&ed, VOTE_CHAIN, height, kind, block),
                                Err((height, kind)),
                            )
                        } else {
                            let key = keys
                                .get(rng.below(keys.len() as u64) as usize)
                                .cloned()
                                .unwrap_or_default();
                            let target = epoch + rng.below(4);
                            let source = target.saturating_sub(1 + rng.below(4));
                            (
                                attestation(&key, source, target, block),
                                Ok((key, source, target)),
                            )
                        };
                        let asked = Instant::now();
                        let answer = tokio::time::timeout(HANG, client.sign(request)).await;
                        tally.slowest = tally.slowest.max(asked.elapsed());
                        match answer {
                            Err(_) => panic_str(&format!("a sign call hung for {HANG:?}")),
                            Ok(Err(_)) => tally.transport_errors += 1,
                            Ok(Ok(r)) => match r.into_inner().outcome {
                                Some(pb::sign_response::Outcome::Signature(s)) => match asked_for {
                                    Ok((key, source, target)) => tally.signed.push(Signed {
                                        key,
                                        source,
                                        target,
                                        block,
                                        signature: s.signature,
                                    }),
                                    Err((height, kind)) => tally.votes.push(SignedVote {
                                        height,
                                        kind,
                                        block,
                                        signature: s.signature,
                                    }),
                                },
                                Some(pb::sign_response::Outcome::Refusal(r)) => {
                                    *tally
                                        .refused
                                        .entry(r.reason().as_str_name().to_owned())
                                        .or_default() += 1;
                                }
                                None => panic_str("an answer without an outcome"),
                            },
                        }
                    }
                    tally
                })
            })
            .collect();
        Self { stop, tasks }
    }

    pub async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Tally::default();
        for t in self.tasks {
            all.merge(t.await.unwrap_or_else(|e| panic_str(&e.to_string())));
        }
        all
    }
}

/// The CometBFT half of the checker: no two votes at one height, round and
/// type for different blocks; each signature verifies (Ed25519, `key`) over
/// the vote's canonical sign bytes; the stored position is at or past every
/// vote signed (`stored`: height, round, step as `cometbft_state` has them).
pub fn check_votes(
    votes: &[SignedVote],
    key: &[u8],
    stored: Option<(i64, i64, i64)>,
) -> Result<String, String> {
    let mut by_position: BTreeMap<(i64, i32), &SignedVote> = BTreeMap::new();
    for v in votes {
        if let Some(other) = by_position.insert((v.height, v.kind), v)
            && other.block != v.block
        {
            return Err(format!("double sign: {other:?} and {v:?}"));
        }
    }
    let vk = ed25519_consensus::VerificationKey::try_from(key).map_err(|e| e.to_string())?;
    for v in votes {
        let vote = vote(v.height, v.kind, v.block);
        let bytes =
            signer::cometbft::vote_sign_bytes(VOTE_CHAIN, &vote).map_err(|e| e.to_string())?;
        let sig = ed25519_consensus::Signature::try_from(v.signature.as_slice())
            .map_err(|e| e.to_string())?;
        vk.verify(&sig, &bytes)
            .map_err(|e| format!("the signature of {v:?} is not over its sign bytes: {e}"))?;
    }
    // Steps as stored: prevote 2, precommit 3 (proposals are 1).
    if let Some(highest) = by_position
        .keys()
        .map(|&(h, k)| (h, 0, i64::from(k) + 1))
        .max()
    {
        match stored {
            Some(s) if s >= highest => {}
            other => {
                return Err(format!(
                    "votes signed up to {highest:?} but the database holds {other:?}"
                ));
            }
        }
    }
    Ok(format!(
        "{} votes returned ({} positions): no double sign, each verified over its sign bytes, the stored position at or past them",
        votes.len(),
        by_position.len()
    ))
}

/// The stored position (height, round, step) of the load's CometBFT key.
pub fn stored_position(pg: &PgCluster, schema: &str) -> Option<(i64, i64, i64)> {
    let out = pg.psql_in(
        "slashing",
        &format!(
            "SELECT height, round, step FROM {schema}.cometbft_state WHERE chain_id = '{VOTE_CHAIN}'"
        ),
    );
    let f: Vec<i64> = out
        .trim()
        .split('|')
        .filter_map(|x| x.parse().ok())
        .collect();
    match f.as_slice() {
        [h, r, s] => Some((*h, *r, *s)),
        _ => None,
    }
}

/// A record of the database.
#[derive(Debug, Clone)]
pub struct Record {
    pub source: u64,
    pub signing_root: Option<Vec<u8>>,
}

/// Every attestation record of `schema`, by (key, target).
pub fn records(pg: &PgCluster, schema: &str) -> BTreeMap<(Vec<u8>, u64), Record> {
    let out = pg.psql_in(
        "slashing",
        &format!(
            "SELECT encode(v.pubkey, 'hex'), a.source_epoch, a.target_epoch, coalesce(encode(a.signing_root, 'hex'), '')
             FROM {schema}.signed_attestations a JOIN {schema}.validators v ON v.id = a.validator_id"
        ),
    );
    let mut map = BTreeMap::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('|').collect();
        let [key, source, target, root] = f.as_slice() else {
            panic_str(&format!("unexpected row {line:?}"));
        };
        let key = hex::decode(key).unwrap_or_default();
        let root = (!root.is_empty()).then(|| hex::decode(root).unwrap_or_default());
        map.insert(
            (key, target.parse().unwrap_or(u64::MAX)),
            Record {
                source: source.parse().unwrap_or(u64::MAX),
                signing_root: root,
            },
        );
    }
    map
}

/// The checker: no two returned signatures conflict, and every one is of a
/// message the database records. Returns a summary for the test's output.
pub fn check(
    signed: &[Signed],
    records: &BTreeMap<(Vec<u8>, u64), Record>,
) -> Result<String, String> {
    let mut by_key: BTreeMap<&[u8], Vec<&Signed>> = BTreeMap::new();
    for s in signed {
        by_key.entry(&s.key).or_default().push(s);
    }
    for (key, list) in &by_key {
        for (i, a) in list.iter().enumerate() {
            for b in list.iter().skip(i + 1) {
                let same_data = a.source == b.source && a.target == b.target && a.block == b.block;
                if a.target == b.target && !same_data {
                    return Err(format!(
                        "double vote by {}: {a:?} and {b:?}",
                        hex::encode(key)
                    ));
                }
                let surrounds = |x: &Signed, y: &Signed| x.source < y.source && y.target < x.target;
                if surrounds(a, b) || surrounds(b, a) {
                    return Err(format!(
                        "surround vote by {}: {a:?} and {b:?}",
                        hex::encode(key)
                    ));
                }
            }
        }
    }
    for s in signed {
        let Some(r) = records.get(&(s.key.clone(), s.target)) else {
            return Err(format!("signed but not recorded: {s:?}"));
        };
        if r.source != s.source {
            return Err(format!(
                "signed {s:?} but the record has source {}",
                r.source
            ));
        }
        let Some(root) = &r.signing_root else {
            return Err(format!("signed {s:?} but the record has no signing root"));
        };
        let pk =
            signer::crypto::bls::BlsPublicKey::from_bytes(&s.key).map_err(|e| e.to_string())?;
        let sig = signer::crypto::bls::BlsSignature::from_bytes(&s.signature)
            .map_err(|e| e.to_string())?;
        sig.verify(&pk, root)
            .map_err(|e| format!("the signature of {s:?} is not over the recorded root: {e}"))?;
    }
    let distinct: std::collections::BTreeSet<_> =
        signed.iter().map(|s| (&s.key, s.target)).collect();
    Ok(format!(
        "{} signatures returned ({} distinct messages) over {} keys: no conflict, each verified over its recorded signing root",
        signed.len(),
        distinct.len(),
        by_key.len()
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn s(source: u64, target: u64, block: u8) -> Signed {
        Signed {
            key: vec![1; 48],
            source,
            target,
            block,
            signature: vec![0; 96],
        }
    }

    #[test]
    fn the_checker_finds_each_kind_of_conflict_and_a_missing_record() {
        let none = BTreeMap::new();
        let double = check(&[s(1, 2, 0), s(1, 2, 1)], &none).unwrap_err();
        assert!(double.starts_with("double vote"), "{double}");
        let other_source = check(&[s(1, 3, 0), s(2, 3, 0)], &none).unwrap_err();
        assert!(other_source.starts_with("double vote"), "{other_source}");
        let surround = check(&[s(1, 5, 0), s(2, 4, 0)], &none).unwrap_err();
        assert!(surround.starts_with("surround vote"), "{surround}");
        let missing = check(&[s(1, 2, 0), s(1, 2, 0)], &none).unwrap_err();
        assert!(missing.starts_with("signed but not recorded"), "{missing}");
        let mut records = BTreeMap::new();
        records.insert(
            (vec![1; 48], 2),
            Record {
                source: 0,
                signing_root: Some(vec![7; 32]),
            },
        );
        let moved = check(&[s(1, 2, 0)], &records).unwrap_err();
        assert!(moved.contains("the record has source 0"), "{moved}");
    }

    #[test]
    fn the_vote_checker_finds_a_double_sign_a_bad_signature_and_a_stale_record() {
        let key = ed25519_consensus::SigningKey::from([9u8; 32]);
        let pk = key.verification_key().to_bytes();
        let signed = |height: i64, kind: i32, block: u8| {
            let vote = vote(height, kind, block);
            let bytes = signer::cometbft::vote_sign_bytes(VOTE_CHAIN, &vote).unwrap();
            SignedVote {
                height,
                kind,
                block,
                signature: key.sign(&bytes).to_bytes().to_vec(),
            }
        };
        let fine = [signed(5, 1, 0), signed(5, 2, 0), signed(6, 1, 1)];
        assert!(check_votes(&fine, &pk, Some((6, 0, 2))).is_ok());
        let double = check_votes(&[signed(5, 1, 0), signed(5, 1, 1)], &pk, Some((9, 0, 3)));
        assert!(double.unwrap_err().starts_with("double sign"));
        let stale = check_votes(&fine, &pk, Some((6, 0, 1))).unwrap_err();
        assert!(stale.contains("the database holds"), "{stale}");
        let mut forged = signed(7, 1, 0);
        forged.block = 2;
        let bad = check_votes(&[forged], &pk, Some((9, 0, 3))).unwrap_err();
        assert!(bad.contains("not over its sign bytes"), "{bad}");
    }
}
