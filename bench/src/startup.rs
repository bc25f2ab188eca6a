//! `startup`: time to `ready` and resident memory with many BLS keys.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::Row;
use super::daemon::{create_dev, signer_bin, validator_secret};

/// Start-up with `n` BLS keys (raw Web3Signer key files, the fast-loading
/// form): seconds from process start to `ready`, and resident memory then.
pub(crate) fn startup(n: usize) -> Result<(f64, f64), Box<dyn std::error::Error>> {
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

pub(crate) fn startup_rows(n: usize, ready: f64, rss_mib: f64) -> Vec<Row> {
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

/// One EIP-2335 keystore decryption, in this process: the best of three
/// (seconds). The KDF dominates; `log_n` is scrypt's cost.
pub(crate) fn keystore_decrypt_time(log_n: u8) -> Result<f64, Box<dyn std::error::Error>> {
    let (docs, _) = keystores(1, log_n, 1_000_000)?;
    let doc = docs.first().ok_or("no keystore")?;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        signer::backend::soft::keystore::load_bls(doc.as_bytes(), PASSWORD)?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(best)
}

const PASSWORD: &str = "signer bench keystores";

/// `n` EIP-2335 keystores (scrypt `2^log_n`, r 8, p 1) of validator keys
/// `first..first + n`, and the seconds it took to write them. To make them
/// in seconds rather than hours, every keystore shares one salt, so scrypt
/// runs once here; the daemon cannot know that (each keystore differs in
/// its secret, IV and checksum) and runs the KDF for every one.
fn keystores(
    n: usize,
    log_n: u8,
    first: usize,
) -> Result<(Vec<String>, f64), Box<dyn std::error::Error>> {
    use aes::cipher::{KeyIvInit, StreamCipher};
    use sha2::Digest;
    let started = Instant::now();
    let salt = [0x5a_u8; 32];
    let params = scrypt::Params::new(log_n, 8, 1)?;
    let mut dk = [0u8; 32];
    scrypt::scrypt(PASSWORD.as_bytes(), &salt, &params, &mut dk)?;
    let (aes_key, check_key) = dk.split_at(16);
    let aes_key: [u8; 16] = aes_key.try_into()?;
    let mut out = Vec::with_capacity(n);
    for i in first..first + n {
        let secret = validator_secret(i);
        let pubkey = signer::crypto::bls::BlsSecretKey::from_bytes(&secret)?
            .public_key()
            .to_bytes();
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let mut ciphertext = secret.to_vec();
        ctr::Ctr128BE::<aes::Aes128>::new(&aes_key.into(), &iv.into())
            .apply_keystream(&mut ciphertext);
        let checksum = sha2::Sha256::new()
            .chain_update(check_key)
            .chain_update(&ciphertext)
            .finalize();
        let doc = serde_json::json!({
            "crypto": {
                "kdf": {"function": "scrypt", "params": {"dklen": 32, "n": 1u64 << log_n, "r": 8, "p": 1, "salt": hex::encode(salt)}, "message": ""},
                "checksum": {"function": "sha256", "params": {}, "message": hex::encode(checksum)},
                "cipher": {"function": "aes-128-ctr", "params": {"iv": hex::encode(iv)}, "message": hex::encode(&ciphertext)}
            },
            "description": format!("signer bench keystore {i}"),
            "pubkey": hex::encode(pubkey),
            "path": "",
            "uuid": format!("00000000-0000-4000-8000-{i:012x}"),
            "version": 4
        });
        out.push(doc.to_string());
    }
    Ok((out, started.elapsed().as_secs_f64()))
}

/// What [`startup_keystores`] measured.
pub(crate) struct KeystoreStart {
    pub(crate) n: usize,
    pub(crate) log_n: u8,
    /// One keystore's decryption in this process, seconds (best of 3).
    pub(crate) decrypt: f64,
    pub(crate) cores: usize,
    /// Seconds to `ready`: no cache (the KDF for every keystore), then with
    /// the cache the first start wrote.
    pub(crate) first: f64,
    pub(crate) cached: f64,
    /// The cached start's "keys loaded" line (its KDF count).
    pub(crate) cached_line: String,
}

/// Start-up with `n` EIP-2335 scrypt keystores in a Web3Signer directory
/// and a password-sealed `[start_cache]`: a first start (every keystore
/// through the KDF, on every core) and a second, cached one. The machine's
/// single-keystore decrypt time is measured first, in this process.
pub(crate) fn startup_keystores(
    n: usize,
    log_n: u8,
) -> Result<KeystoreStart, Box<dyn std::error::Error>> {
    let decrypt = keystore_decrypt_time(log_n)?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let dir = std::env::temp_dir().join(format!(
        "signer-bench-keystores-{}-{n}-{log_n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    create_dev(&dir)?;
    let ks = dir.join("keys/w3s");
    std::fs::create_dir_all(&ks)?;
    let (docs, made) = keystores(n, log_n, 0)?;
    std::fs::write(ks.join("password.txt"), PASSWORD)?;
    let mut yaml = String::with_capacity(n * 120);
    for (i, doc) in docs.iter().enumerate() {
        let name = format!("keystore-{i:06}.json");
        std::fs::write(ks.join(&name), doc)?;
        yaml.push_str(&format!(
            "---\ntype: \"file-keystore\"\nkeyType: \"BLS\"\nkeystoreFile: \"{name}\"\nkeystorePasswordFile: \"password.txt\"\n"
        ));
    }
    std::fs::write(ks.join("validators.yaml"), yaml)?;
    std::fs::write(dir.join("cache.pass"), "signer bench start cache")?;
    std::fs::write(
        dir.join("signer.toml"),
        "[server]\ngrpc_listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\n[tls]\ncert = \"tls/server.pem\"\nkey = \"tls/server.key\"\nclient_cas = [\"tls/ca.pem\"]\n\n[policy]\nfile = \"policy.toml\"\n\n[slashing]\ndatabase = \"data/slashing.sqlite\"\n\n[start_cache]\nfile = \"data/start-cache.json\"\npassword_file = \"cache.pass\"\n\n[[keys]]\ntype = \"web3signer_dir\"\npath = \"keys/w3s\"\n",
    )?;
    println!(
        "startup: {n} keystores (scrypt 2^{log_n}) written in {made:.1} s; one decrypts in {decrypt:.3} s here; first start expected near {:.0} s on {cores} cores",
        n as f64 * decrypt / cores as f64
    );
    let (first, _) = time_to_ready(&dir)?;
    let (cached, log) = time_to_ready(&dir)?;
    let cached_line = log
        .lines()
        .find(|l| l.contains("keys loaded"))
        .unwrap_or("")
        .to_owned();
    // SIGNER_BENCH_KEEP=1 leaves the directory, to look at a start by hand.
    if std::env::var_os("SIGNER_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(KeystoreStart {
        n,
        log_n,
        decrypt,
        cores,
        first,
        cached,
        cached_line,
    })
}

/// Starts the daemon in `dir`, waits for `ready`, stops it: seconds to
/// ready and its log.
fn time_to_ready(dir: &std::path::Path) -> Result<(f64, String), Box<dyn std::error::Error>> {
    let log_path = dir.join("bench-daemon.log");
    let log = std::fs::File::create(&log_path)?;
    let started = Instant::now();
    let mut child = Command::new(signer_bin()?)
        .args(["serve", "--config"])
        .arg(dir.join("signer.toml"))
        .env("SIGNER_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let ready = started.elapsed().as_secs_f64();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    if !line.starts_with("ready ") {
        return Err(format!("start-up failed: {line:?}\n{log}").into());
    }
    Ok((ready, log))
}

pub(crate) fn keystore_rows(s: &KeystoreStart) -> Vec<Row> {
    let variant: &'static str = Box::leak(format!("{} ks 2^{}", s.n, s.log_n).into_boxed_str());
    let ideal = s.n as f64 * s.decrypt / s.cores as f64;
    let full_cost = s.log_n >= 18;
    vec![
        Row {
            scenario: "startup",
            variant,
            figure: "decrypt one",
            unit: "s",
            value: s.decrypt,
            baseline: None,
            target: None,
        },
        Row {
            scenario: "startup",
            variant,
            figure: "first start",
            unit: "s",
            value: s.first,
            baseline: Some(ideal),
            target: full_cost.then(|| ("≤ 1.1 × n·t/cores".to_owned(), s.first <= 1.1 * ideal)),
        },
        Row {
            scenario: "startup",
            variant,
            figure: "cached start",
            unit: "s",
            value: s.cached,
            baseline: Some(s.decrypt),
            target: (s.n >= 10_000).then(|| ("≤ 2 s".to_owned(), s.cached <= 2.0)),
        },
    ]
}
