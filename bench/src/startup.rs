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
