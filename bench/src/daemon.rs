//! The daemon under test: its setup (`signer init --dev` plus the
//! benchmark's keys), its process, its metrics and per-stage means, and the
//! CPU time of both sides.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use signer::api::privval::connector::node_id;

use super::{chains, postgres};

pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) grpc: SocketAddr,
    pub(crate) metrics: SocketAddr,
    pub(crate) http: Option<SocketAddr>,
    pub(crate) dir: PathBuf,
    /// Removes `dir` when dropped (not a second instance sharing it).
    pub(crate) owns_dir: bool,
    /// Set by [`Daemon::finish`]: the run succeeded. A daemon dropped
    /// without it (the benchmark failed) keeps its directory and says
    /// where: its log is the only account of why it refused.
    finished: bool,
}

/// The daemon's `/metrics` text.
pub(crate) fn scrape(metrics: SocketAddr) -> String {
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
pub(crate) fn series(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// One metric's current value (0 when absent).
pub(crate) fn metric(metrics: SocketAddr, name: &str) -> f64 {
    series(&scrape(metrics), name).unwrap_or(0.0)
}

/// Per-stage mean times per request, in µs, as reported.
pub(crate) type StageMeans = Vec<(String, f64)>;

/// A variant's name and its per-stage means.
pub(crate) type StageReport = (String, StageMeans);

/// The daemon's per-stage totals (`signer_stage_seconds` sum and count),
/// so that a variant reports the means of its own requests only.
pub(crate) struct Stages(pub(crate) Vec<(&'static str, f64, f64)>);

impl Stages {
    pub(crate) fn scrape(metrics: SocketAddr) -> Self {
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
    pub(crate) fn means_since(before: &Self, metrics: SocketAddr) -> StageMeans {
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

/// Where the daemon's audit log goes and how often it is synced (the
/// daemon's defaults when `None`).
pub(crate) struct AuditPlace<'a> {
    pub(crate) flush_ms: Option<u64>,
    pub(crate) dir: Option<&'a Path>,
}

impl Daemon {
    /// Stops the daemon after a successful run; its directory goes if it
    /// owns it.
    pub(crate) fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        if !self.owns_dir {
            return;
        }
        if self.finished {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "signer-bench: the daemon's directory is kept for its log: {}",
                self.dir.join("daemon.log").display()
            );
        }
    }
}

/// The benchmark's validator `i`: a deterministic BLS secret (below the
/// group order: the first byte is small).
pub(crate) fn validator_secret(i: usize) -> [u8; 32] {
    use sha2::Digest;
    let mut s: [u8; 32] = sha2::Sha256::digest(format!("signer bench validator {i}")).into();
    s[0] = 0x10;
    s
}

/// Writes a dev setup for the benchmark (plus `validators` BLS keys in a
/// Web3Signer key directory, the fast-loading raw form) and starts the daemon.
pub(crate) fn start(
    node: &TcpListener,
    node_seed: [u8; 32],
    validators: &[Vec<u8>],
    chain_nodes: &[SocketAddr],
    pg: Option<&postgres::LocalPostgres>,
    db_dir: Option<&Path>,
    audit: &AuditPlace<'_>,
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
    let audit_file = audit
        .dir
        .map(|d| d.join(format!("audit-{}.jsonl", std::process::id())));
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
        let file = audit_file
            .as_deref()
            .map_or("data/audit.jsonl".into(), |f| f.display().to_string());
        config.push_str(&pg.tables("data/pg-password", &file));
    }
    if let Some(db_dir) = db_dir {
        let sqlite = "[slashing]\ndatabase = \"data/slashing.sqlite\"\n";
        if !config.contains(sqlite) {
            return Err("the dev configuration's [slashing] section changed shape".into());
        }
        let db = db_dir.join(format!("slashing-{}.sqlite", std::process::id()));
        config = config.replace(
            sqlite,
            &format!("[slashing]\ndatabase = \"{}\"\n", db.display()),
        );
    }
    let flush = audit
        .flush_ms
        .map(|ms| format!("flush_interval_ms = {ms}\n"))
        .unwrap_or_default();
    match config.find("[audit]\n") {
        // PostgreSQL's section, which names the file already.
        Some(at) => config.insert_str(at + 8, &flush),
        None if audit_file.is_some() || !flush.is_empty() => {
            // The default place is beside the database.
            let file = audit_file
                .unwrap_or_else(|| db_dir.unwrap_or(Path::new("data")).join("audit.jsonl"));
            config.push_str(&format!(
                "\n[audit]\nfile = \"{}\"\n{flush}",
                file.display()
            ));
        }
        None => {}
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
pub(crate) fn bench_dir() -> PathBuf {
    std::env::temp_dir().join(format!("signer-bench-{}", std::process::id()))
}

/// Starts `signer serve` on the setup in `dir` (with extra environment)
/// and waits for its ready line.
pub(crate) fn spawn(
    dir: PathBuf,
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<Daemon, Box<dyn std::error::Error>> {
    spawn_config(dir, "signer.toml", "daemon.log", env)
}

/// [`spawn`] with another configuration file of the same setup.
pub(crate) fn spawn_config(
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
        finished: false,
    })
}

/// CPU seconds this process has used (user + system), from /proc (100 Hz ticks).
pub(crate) fn cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

/// CPU time (user + system) of process `pid` (or `self`), in seconds.
pub(crate) fn cpu_seconds_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the parenthesised name: state, ppid, …; utime and stime are
    // fields 14 and 15, the 12th and 13th here (the state is not a number).
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
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
