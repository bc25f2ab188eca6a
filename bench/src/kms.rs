//! The `kms` scenario: what the daemon adds to a KMS round trip.
//!
//! Two `hsm-sim kms` endpoints on loopback: one with real keys, behind the
//! daemon (an Ed25519 key, `raw.ed25519` requests over mTLS gRPC), and one
//! that answers `Sign` with a canned signature, called straight from this
//! process through the AWS SDK — the floor: HTTP, JSON and the SDK, with no
//! crypto and no signer. Both are driven the same way: one caller in
//! sequence (p50/p99 latency), then 16 callers (throughput). Then
//! sequential CometBFT votes by the KMS key: prevote and precommit p50 (a
//! precommit also signs its extension).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};

use super::{BenchArgs, Row, connect_h2, h2client, is_signed, percentile, spawn};

const CALLERS: usize = 16;

/// The `hsm-sim` binary next to this one, or how to build it.
pub(super) fn simulator() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe.with_file_name("hsm-sim");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "no hsm-sim next to {} (build it: cargo build --release -p hsm-sim --features testing)",
            exe.display()
        ))
    }
}

struct Sim {
    child: Child,
    url: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sim(canned: bool) -> Result<Sim, Box<dyn std::error::Error>> {
    use std::io::BufRead;
    let mut cmd = Command::new(simulator()?);
    cmd.arg("kms");
    if canned {
        cmd.arg("--canned");
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("ready ")
        .ok_or_else(|| format!("hsm-sim kms did not start: {line:?}"))?
        .to_owned();
    Ok(Sim { child, url })
}

const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "bench"),
    ("AWS_SECRET_ACCESS_KEY", "bench"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

fn client(url: &str) -> aws_sdk_kms::Client {
    let creds = aws_sdk_kms::config::Credentials::new("bench", "bench", None, None, "bench");
    aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .region(aws_sdk_kms::config::Region::new("us-east-1"))
            .credentials_provider(creds)
            .endpoint_url(url)
            .build(),
    )
}

/// Sequential latencies and concurrent rate of `op`, `signs` calls each.
async fn measure<F, Fut>(signs: usize, op: F) -> Result<(Vec<Duration>, f64), String>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let mut latencies = Vec::with_capacity(signs);
    for i in 0..signs {
        let started = Instant::now();
        op(0, i).await?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let per = (signs / CALLERS).max(1);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                for i in 0..per {
                    op(c, i).await?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok((
        latencies,
        (per * CALLERS) as f64 / started.elapsed().as_secs_f64(),
    ))
}

/// The scenario's rows.
pub(super) fn rows(a: &BenchArgs) -> Result<Vec<Row>, Box<dyn std::error::Error>> {
    let signs = a.kms_signs.max(CALLERS);
    let real = start_sim(false)?;
    let canned = start_sim(true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let admin = client(&real.url);
    let arn = runtime.block_on(async {
        admin
            .create_key()
            .key_spec(KeySpec::EccNistEdwards25519)
            .key_usage(KeyUsageType::SignVerify)
            .send()
            .await
            .map_err(|e| format!("CreateKey: {e:?}"))?
            .key_metadata()
            .and_then(|m| m.arn())
            .map(str::to_owned)
            .ok_or_else(|| "CreateKey: no ARN".to_owned())
    })?;
    let der = runtime.block_on(admin.get_public_key().key_id(&arn).send())?;
    let (_, public_key) =
        signer::backend::kms::parse_spki(der.public_key().ok_or("no public key")?.as_ref())?;

    // The floor: the SDK straight to the canned endpoint.
    let floor_client = client(&canned.url);
    let floor_arn = arn.clone();
    let (floor_lat, floor_rate) = runtime.block_on(measure(signs, move |c, i| {
        let (client, arn) = (floor_client.clone(), floor_arn.clone());
        async move {
            client
                .sign()
                .key_id(arn)
                .message(Blob::new(
                    [&(c as u32).to_be_bytes()[..], &(i as u32).to_be_bytes()].concat(),
                ))
                .message_type(MessageType::Raw)
                .signing_algorithm(SigningAlgorithmSpec::Ed25519Sha512)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:?}"))
        }
    }))?;

    // Through the daemon.
    let dir = std::env::temp_dir().join(format!("signer-bench-kms-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    super::create_dev(&dir)?;
    let config = std::fs::read_to_string(dir.join("signer.toml"))?
        .replace("127.0.0.1:9000", "127.0.0.1:0")
        .replace("127.0.0.1:9100", "127.0.0.1:0")
        .replace("127.0.0.1:9001", "127.0.0.1:0");
    std::fs::write(
        dir.join("signer.toml"),
        format!(
            "{config}\n[[keys]]\ntype = \"kms\"\nkey_id = \"{arn}\"\n\n[kms]\nregion = \"us-east-1\"\nendpoint = \"{}\"\n",
            real.url
        ),
    )?;
    let mut policy = std::fs::read_to_string(dir.join("policy.toml"))?;
    policy.push_str(&format!(
        "\n[key_groups.bench-kms]\nkeys = [\"0x{}\"]\n\n[[grant]]\nclients = [\"dev\"]\noperations = [\"raw.ed25519\"]\nkey_groups = [\"bench-kms\"]\n",
        hex::encode(&public_key)
    ));
    policy.push_str(&super::votes::consensus_grant(
        "bench-kms-consensus",
        &public_key,
    ));
    std::fs::write(dir.join("policy.toml"), policy)?;
    let env: Vec<(&str, &std::ffi::OsStr)> = AWS_ENV
        .iter()
        .map(|(k, v)| (*k, std::ffi::OsStr::new(*v)))
        .collect();
    let daemon = spawn(dir, &env)?;
    let clients = runtime.block_on(connect_h2(&daemon, CALLERS))?;
    let pk = public_key.clone();
    let (lat, rate) = runtime.block_on(measure(signs, move |c, i| {
        let mut client = clients.get(c).cloned();
        let pk = pk.clone();
        async move {
            let client = client.as_mut().ok_or("no client")?;
            let r = client
                .sign(h2client::frame(&signer::client::raw_ed25519_request(
                    &pk,
                    [&(c as u32).to_be_bytes()[..], &(i as u32).to_be_bytes()].concat(),
                )))
                .await
                .map_err(|e| e.to_string())?;
            if is_signed(&r) {
                Ok(())
            } else {
                Err(format!("not signed: {r:?}"))
            }
        }
    }))?;
    let (prevotes, precommits) = runtime.block_on(super::votes::grpc_votes_by_kind(
        &daemon,
        &public_key,
        1,
        a.heights.clamp(1, super::votes::BY_KIND_MAX_HEIGHTS),
    ))?;
    daemon.finish();
    let row = |variant, figure, unit, value, baseline| Row {
        scenario: "kms-ed25519",
        variant,
        figure,
        unit,
        value,
        baseline: Some(baseline),
        target: None,
    };
    Ok(vec![
        row(
            "1 caller",
            "p50",
            "µs",
            percentile(&lat, 0.5),
            percentile(&floor_lat, 0.5),
        ),
        row(
            "1 caller",
            "p99",
            "µs",
            percentile(&lat, 0.99),
            percentile(&floor_lat, 0.99),
        ),
        row("16 callers", "rate", "sig/s", rate, floor_rate),
    ]
    .into_iter()
    .chain(super::votes::by_kind_rows(
        "kms-ed25519",
        "votes",
        &prevotes,
        &precommits,
    ))
    .collect())
}
