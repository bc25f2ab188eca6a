//! KMS endpoints for end-to-end tests: `hsm-sim kms` (built with the
//! workspace, next to the `signer` binary) and moto's server (PyPI
//! `moto[server]`, installed by `scripts/test`), each on a free port, and an
//! AWS SDK client to set keys up with, the way an operator would.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kms::types::{KeySpec, KeyUsageType, Tag};

use crate::daemon::signer_bin;

fn fail(msg: &str) -> ! {
    #[allow(clippy::panic)]
    {
        panic!("{msg}")
    }
}

/// The environment a process needs to talk to a test endpoint.
pub fn aws_env() -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// A KMS endpoint process, killed on drop.
#[derive(Debug)]
pub struct Endpoint {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hsm-sim kms`, optionally with a fault file and in canned mode.
pub fn sim(faults: Option<&Path>, canned: bool) -> Endpoint {
    let bin = signer_bin()
        .parent()
        .map(|d| d.join("hsm-sim"))
        .unwrap_or_default();
    if !bin.exists() {
        fail(&format!(
            "the hsm-sim binary is missing at {}: build the workspace (scripts/test, or `cargo build -p hsm-sim`)",
            bin.display()
        ));
    }
    let mut cmd = Command::new(bin);
    cmd.arg("kms");
    if let Some(f) = faults {
        cmd.arg("--faults").arg(f);
    }
    if canned {
        cmd.arg("--canned");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| fail(&e.to_string()));
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap_or_else(|| fail("no stdout"));
    let mut reader = BufReader::new(stdout);
    let _ = reader.read_line(&mut line);
    std::thread::spawn(move || for _ in reader.lines() {});
    let url = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| fail(&format!("hsm-sim kms did not start: {line:?}")))
        .to_owned();
    Endpoint { child, url }
}

/// moto's server on a free port (fails saying what to install if missing).
pub fn moto() -> Endpoint {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| fail(&e.to_string()));
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            fail(&format!(
                "python3 cannot run ({e}); scripts/test installs it"
            ))
        });
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            fail(
                "moto's server did not start within 30 s: is PyPI's moto[server] installed? (scripts/test installs it)",
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Endpoint { child, url }
}

/// An SDK client for `url` with the test credentials.
pub async fn client(url: &str) -> aws_sdk_kms::Client {
    let creds = aws_sdk_kms::config::Credentials::new("testing", "testing", None, None, "tests");
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(url)
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

/// Creates a key (with tags) and returns its ARN.
pub async fn create_key(c: &aws_sdk_kms::Client, spec: KeySpec, tags: &[(&str, &str)]) -> String {
    let usage = if spec == KeySpec::SymmetricDefault {
        KeyUsageType::EncryptDecrypt
    } else {
        KeyUsageType::SignVerify
    };
    let mut req = c.create_key().key_spec(spec).key_usage(usage);
    for (k, v) in tags {
        req = req.tags(
            Tag::builder()
                .tag_key(*k)
                .tag_value(*v)
                .build()
                .unwrap_or_else(|e| fail(&e.to_string())),
        );
    }
    req.send()
        .await
        .unwrap_or_else(|e| fail(&format!("CreateKey: {e:?}")))
        .key_metadata()
        .and_then(|m| m.arn())
        .unwrap_or_else(|| fail("CreateKey returned no ARN"))
        .to_owned()
}

/// Appends a `[kms]` section for `url`.
pub fn configure_kms(setup: &crate::daemon::Setup, url: &str, extra: &str) {
    let mut text = std::fs::read_to_string(setup.path("signer.toml")).unwrap_or_default();
    text.push_str(&format!(
        "\n[kms]\nregion = \"us-east-1\"\nendpoint = \"{url}\"\n{extra}\n"
    ));
    setup.write("signer.toml", &text);
}

/// A fault file path inside `dir`, written empty.
pub fn fault_file(dir: &Path) -> PathBuf {
    let path = dir.join("kms-faults.json");
    hsm_sim::kms::KmsFaults::default()
        .write(&path)
        .unwrap_or_else(|e| fail(&e.to_string()));
    path
}

/// Replaces the faults (the simulator looks at the file every 5 ms).
pub fn set_faults(path: &Path, faults: Vec<hsm_sim::kms::KmsFault>) {
    hsm_sim::kms::KmsFaults { faults }
        .write(path)
        .unwrap_or_else(|e| fail(&e.to_string()));
    std::thread::sleep(Duration::from_millis(20));
}
