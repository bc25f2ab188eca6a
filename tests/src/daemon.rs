//! A real signer daemon for end-to-end tests: a complete setup in a temp
//! directory (a PKI made with rcgen, key files, policy, configuration), the
//! `signer` binary started on port 0, and clients over real mutual TLS.
//!
//! Cargo only gives `CARGO_BIN_EXE_<name>` to the tests of the package that
//! owns the binary, so the binary is found next to this crate's test
//! executables (`target/<profile>/signer`), or at `$SIGNER_BIN`. A
//! workspace build (`scripts/test`, `cargo nextest run --workspace`) builds
//! it; when it is missing the tests fail saying so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use proto::v1 as pb;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber, date_time_ymd,
};
use signer::backend::soft::keystore::Kdf;
use signer::backend::soft::{self, Scheme, SecretKey};

/// The Web3Signer examples' key (`tests/vectors/web3signer/sign_examples.json`).
pub const BLS_SECRET: &str = "3ee2224386c82ffea477e2adf28a2929f5c349165a4196158c7f3a2ecca40f35";
/// A second BLS key, loaded but granted to nobody by the default policy.
pub const BLS_SECRET_2: &str = "263dbd792f5b1be47ed85f8938c0f29586af0d3ac7b977f21c278fe1462040e3";
/// Fixed Ed25519 and secp256k1 secrets (any valid scalars do).
pub const ED25519_SECRET: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
/// secp256k1 secret.
pub const SECP256K1_SECRET: &str =
    "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
/// The Web3Signer examples' network.
pub const GVR: &str = "0x04700007fabc8282644aed6d1c7c9e21d38a03a0c4ba193f3afe428824b3a673";
/// The CometBFT chain of the default policy.
pub const CHAIN: &str = "test-chain";
/// Serial number the CRL revokes.
const REVOKED_SERIAL: u64 = 666;

/// The validator client's identity.
pub const VC: &str = "spiffe://signer.test/vc";
/// The CometBFT node's identity.
pub const NODE: &str = "spiffe://signer.test/node";

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.strip_prefix("0x").unwrap_or(s)).unwrap_or_default()
}

/// The `signer` binary.
pub fn signer_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SIGNER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/<profile>/signer
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("signer"))
        .unwrap_or_default();
    assert!(
        bin.exists(),
        "the signer binary is missing at {}: build the workspace (scripts/test or `cargo build -p signer`), or set SIGNER_BIN",
        bin.display()
    );
    bin
}

/// The `signer-bench` binary beside the signer's (built by scripts/test, or
/// `cargo build -p signer-bench`).
pub fn bench_bin() -> PathBuf {
    let bin = signer_bin().with_file_name("signer-bench");
    assert!(
        bin.exists(),
        "the signer-bench binary is missing at {}: build it (scripts/test does, or `cargo build -p signer-bench`)",
        bin.display()
    );
    bin
}

/// An attestation request on the setup's network (minimal preset, GVR of the examples).
pub fn attestation(key: &[u8], source: u64, target: u64, block: u8) -> pb::SignRequest {
    let cp = |epoch| pb::Checkpoint {
        epoch,
        root: vec![0xcc; 32],
    };
    pb::SignRequest {
        public_key: key.to_vec(),
        message: Some(pb::sign_request::Message::Eth2(pb::Eth2Request {
            fork_info: Some(fork_info()),
            signing_root: Vec::new(),
            message: Some(pb::eth2_request::Message::Attestation(
                pb::AttestationData {
                    slot: target * 8,
                    index: 0,
                    beacon_block_root: vec![block; 32],
                    source: Some(cp(source)),
                    target: Some(cp(target)),
                },
            )),
        })),
    }
}

/// The setup's fork info.
/// Round `r` of `rounds`: every client asks at the same moment for its own
/// attestation (source `r`, target `10 + r`, a different block each) — all
/// conflicting. Returns, per round, how many were signed and the reasons of
/// the refusals.
pub async fn race_conflicting_attestations(
    clients: &[pb::signer_client::SignerClient<tonic::transport::Channel>],
    key: &[u8],
    rounds: u64,
) -> Vec<(usize, Vec<pb::Reason>)> {
    let mut out = Vec::new();
    for round in 0..rounds {
        let barrier = Arc::new(tokio::sync::Barrier::new(clients.len()));
        let mut tasks = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            let mut c = c.clone();
            let req = attestation(key, round, 10 + round, u8::try_from(i).unwrap_or(u8::MAX));
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                c.sign(req).await
            }));
        }
        let (mut signed, mut refused) = (0, Vec::new());
        for t in tasks {
            let answer = t
                .await
                .unwrap_or_else(|e| panic_str(&e.to_string()))
                .unwrap_or_else(|e| panic_str(&e.to_string()))
                .into_inner();
            match answer.outcome {
                Some(pb::sign_response::Outcome::Signature(_)) => signed += 1,
                Some(pb::sign_response::Outcome::Refusal(r)) => refused.push(r.reason()),
                None => panic_str("an answer without an outcome"),
            }
        }
        out.push((signed, refused));
    }
    out
}

pub fn fork_info() -> pb::ForkInfo {
    pb::ForkInfo {
        fork: Some(pb::Fork {
            previous_version: vec![0, 0, 0, 1],
            current_version: vec![0, 0, 0, 1],
            epoch: 0,
        }),
        genesis_validators_root: unhex(GVR),
    }
}

/// The signature of an answer that must be one (panics on a refusal).
#[allow(clippy::panic, clippy::expect_used)]
pub fn signature_of(r: pb::SignResponse) -> pb::Signature {
    match r.outcome.expect("an outcome") {
        pb::sign_response::Outcome::Signature(s) => s,
        pb::sign_response::Outcome::Refusal(r) => panic!("refused: {r:?}"),
    }
}

/// `None` for a signature, else the refusal's reason.
#[allow(clippy::expect_used)]
pub fn refusal_of(r: pb::SignResponse) -> Option<pb::Reason> {
    match r.outcome.expect("an outcome") {
        pb::sign_response::Outcome::Signature(_) => None,
        pb::sign_response::Outcome::Refusal(r) => Some(r.reason()),
    }
}

/// A field of `/proc/PID/status` in KiB (`VmRSS:`, `VmHWM:`).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or_else(|| panic_str(&format!("no {field} in /proc/{pid}/status")))
}

/// The same attestation as Web3Signer JSON, decoded and signed by the
/// signing core directly (not through the daemon or its converters).
pub fn core_attestation_signature(secret: &str, source: u64, target: u64, block: u8) -> Vec<u8> {
    let body = serde_json::json!({
        "type": "ATTESTATION",
        "fork_info": {
            "fork": {"previous_version": "0x00000001", "current_version": "0x00000001", "epoch": "0"},
            "genesis_validators_root": GVR,
        },
        "attestation": {
            "slot": (target * 8).to_string(), "index": "0",
            "beacon_block_root": format!("0x{}", hex::encode([block; 32])),
            "source": {"epoch": source.to_string(), "root": format!("0x{}", "cc".repeat(32))},
            "target": {"epoch": target.to_string(), "root": format!("0x{}", "cc".repeat(32))},
        },
    });
    let network = signer::eth2::Network {
        preset: signer::eth2::PresetKind::Minimal,
        genesis_fork_version: [0, 0, 0, 1],
        gloas_fork_epoch: None,
        clock: None,
    };
    let s = signer::eth2::decode(body.to_string().as_bytes(), &network)
        .unwrap_or_else(|e| panic_str(&e.to_string()));
    let key = signer::crypto::bls::BlsSecretKey::from_bytes(&unhex(secret))
        .unwrap_or_else(|e| panic_str(&e.to_string()));
    key.sign(s.signing_root.as_slice()).to_bytes().to_vec()
}

/// A certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate (PEM).
    pub pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca")
    }
}

impl Ca {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap_or_default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap_or_else(|e| panic_str(&e.to_string()));
        let cert = params
            .self_signed(&key)
            .unwrap_or_else(|e| panic_str(&e.to_string()));
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate and its key (PEM), with these SANs.
    pub fn leaf(&self, sans: Vec<SanType>, serial: u64, expired: bool) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap_or_default();
        params.subject_alt_names = sans;
        params.serial_number = Some(SerialNumber::from(serial));
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap_or_else(|e| panic_str(&e.to_string()));
        let cert = params
            .signed_by(&key, &self.issuer)
            .unwrap_or_else(|e| panic_str(&e.to_string()));
        (cert.pem(), key.serialize_pem())
    }

    fn crl(&self, revoked: u64) -> String {
        CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(revoked),
                revocation_time: date_time_ymd(2024, 6, 1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .and_then(|c| c.pem())
        .unwrap_or_else(|e| panic_str(&e.to_string()))
    }
}

#[allow(clippy::panic)]
pub(crate) fn panic_str(s: &str) -> ! {
    panic!("{s}")
}

/// A URI SAN.
pub fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap_or_else(|_| panic_str("bad URI")))
}

/// A complete setup in a temporary directory.
pub struct Setup {
    /// The directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// The CA of servers and clients.
    pub ca: Ca,
    /// The BLS key's public key.
    pub bls: Vec<u8>,
    /// The second BLS key's public key.
    pub bls2: Vec<u8>,
    /// The Ed25519 key's public key.
    pub ed25519: Vec<u8>,
    /// The secp256k1 key's public key (compressed).
    pub secp256k1: Vec<u8>,
    /// Extra environment for the daemon (`SOFTHSM2_CONF`, `HSM_SIM_SCENARIO`).
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Setup({})", self.dir.path().display())
    }
}

impl Default for Setup {
    fn default() -> Self {
        Self::new()
    }
}

impl Setup {
    /// Writes everything; the default policy grants `vc` the Ethereum duties
    /// on the first BLS key and `node` CometBFT consensus on the Ed25519 key.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic_str(&e.to_string()));
        let ca = Ca::new("signer e2e CA");
        let mut s = Self {
            dir,
            ca,
            bls: Vec::new(),
            bls2: Vec::new(),
            ed25519: Vec::new(),
            secp256k1: Vec::new(),
            env: Vec::new(),
        };
        for d in ["tls", "keys", "data"] {
            std::fs::create_dir_all(s.path(d)).unwrap_or_default();
        }
        s.write("tls/ca.pem", &s.ca.pem.clone());
        s.write("tls/crl.pem", &s.ca.crl(REVOKED_SERIAL));
        s.new_server_cert();
        let clients: [(&str, Vec<SanType>, u64, bool); 4] = [
            ("vc", vec![uri(VC)], 10, false),
            ("node", vec![uri(NODE)], 11, false),
            (
                "stranger",
                vec![uri("spiffe://signer.test/stranger")],
                12,
                false,
            ),
            ("expired", vec![uri(VC)], 13, true),
        ];
        for (name, sans, serial, expired) in clients {
            let (cert, key) = s.ca.leaf(sans, serial, expired);
            s.write(&format!("tls/{name}.pem"), &cert);
            s.write(&format!("tls/{name}.key"), &key);
        }
        let (cert, key) = s.ca.leaf(vec![uri(VC)], REVOKED_SERIAL, false);
        s.write("tls/revoked.pem", &cert);
        s.write("tls/revoked.key", &key);
        let other = Ca::new("someone else's CA");
        let (cert, key) = other.leaf(vec![uri(VC)], 10, false);
        s.write("tls/foreign.pem", &cert);
        s.write("tls/foreign.key", &key);

        let mut entries = String::new();
        for (name, scheme, secret) in [
            ("bls", Scheme::Bls, BLS_SECRET),
            ("bls2", Scheme::Bls, BLS_SECRET_2),
            ("ed25519", Scheme::Ed25519, ED25519_SECRET),
            ("secp256k1", Scheme::Secp256k1, SECP256K1_SECRET),
        ] {
            let secret = unhex(secret);
            let key = SecretKey::from_secret(scheme, &secret)
                .unwrap_or_else(|e| panic_str(&e.to_string()));
            // A cheap KDF: these keys are public test values, and start-up stays fast.
            let file = soft::write_key_file(&key, &secret, "pw", Kdf::Pbkdf2 { rounds: 2 }, name)
                .unwrap_or_else(|e| panic_str(&e.to_string()));
            s.write(&format!("keys/{name}.json"), &file);
            s.write(&format!("keys/{name}.pass"), "pw");
            entries.push_str(&format!(
                "\n[[keys]]\ntype = \"file\"\npath = \"keys/{name}.json\"\npassword_file = \"keys/{name}.pass\"\n"
            ));
            let pk = key.public_key();
            match name {
                "bls" => s.bls = pk,
                "bls2" => s.bls2 = pk,
                "ed25519" => s.ed25519 = pk,
                _ => s.secp256k1 = pk,
            }
        }
        s.write_policy(&s.default_policy());
        s.write(
            "signer.toml",
            &format!(
                r#"[server]
grpc_listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"

[tls]
cert = "tls/server.pem"
key = "tls/server.key"
client_cas = ["tls/ca.pem"]
crls = ["tls/crl.pem"]

[policy]
file = "policy.toml"

[slashing]
database = "data/slashing.sqlite"

[ethereum]
preset = "minimal"
genesis_fork_version = "0x00000001"

[logging]
level = "info"
{entries}"#
            ),
        );
        s
    }

    /// The default policy's text.
    pub fn default_policy(&self) -> String {
        self.policy_with("")
    }

    /// The default policy plus `extra` TOML (more grants or denies).
    pub fn policy_with(&self, extra: &str) -> String {
        format!(
            r#"[clients.vc]
identity = "{VC}"

[clients.node]
identity = "{NODE}"

[networks.test-eth]
genesis_validators_root = "{GVR}"

[networks.test-chain]
chain_id = "{CHAIN}"

[key_groups.validators]
keys = ["0x{bls}"]

[key_groups.consensus]
keys = ["0x{ed}"]

[[grant]]
clients = ["vc"]
operations = ["eth2.duties"]
key_groups = ["validators"]
networks = ["test-eth"]

[[grant]]
clients = ["node"]
operations = ["cometbft.consensus"]
key_groups = ["consensus"]
networks = ["test-chain"]
{extra}"#,
            bls = hex::encode(&self.bls),
            ed = hex::encode(&self.ed25519),
        )
    }

    /// A path inside the setup.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file inside the setup.
    pub fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).unwrap_or_default();
    }

    /// Replaces the policy file.
    pub fn write_policy(&self, text: &str) {
        self.write("policy.toml", text);
    }

    /// Issues a new server certificate (localhost, 127.0.0.1); returns its PEM.
    pub fn new_server_cert(&self) -> String {
        let (cert, key) = self.ca.leaf(
            vec![
                SanType::DnsName("localhost".try_into().unwrap_or_else(|_| panic_str("dns"))),
                SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
            ],
            1,
            false,
        );
        self.write("tls/server.pem", &cert);
        self.write("tls/server.key", &key);
        cert
    }

    /// The rustls client configuration for client certificate `name` (`vc`, `node`, …).
    pub fn client_tls(&self, name: &str) -> Arc<rustls::ClientConfig> {
        signer::tls::install_crypto_provider();
        signer::client::ClientTls {
            ca: self.path("tls/ca.pem"),
            cert: self.path(&format!("tls/{name}.pem")),
            key: self.path(&format!("tls/{name}.key")),
        }
        .config()
        .unwrap_or_else(|e| panic_str(&e.to_string()))
    }

    /// Adds an `[http]` section (the Web3Signer API on a free port) with
    /// `extra` lines in it.
    pub fn enable_http(&self, extra: &str) {
        let config = std::fs::read_to_string(self.path("signer.toml")).unwrap_or_default();
        let (head, keys) = config.split_once("\n[[keys]]").unwrap_or((&config, ""));
        self.write(
            "signer.toml",
            &format!("{head}\n[http]\nlisten = \"127.0.0.1:0\"\n{extra}\n\n[[keys]]{keys}"),
        );
    }

    /// Adds a CometBFT chain served by the privval connector, dialing
    /// `nodes`, with the Ed25519 key as consensus key; each node (by its
    /// identity: node id or `unix://` URL) is a policy client granted
    /// consensus signing (and raw bytes) on that chain.
    pub fn enable_cometbft(&self, chain_id: &str, protocol: &str, nodes: &[(String, String)]) {
        self.write("keys/privval-identity.hex", &"5a".repeat(32));
        let list: Vec<String> = nodes
            .iter()
            .map(|(addr, _)| format!("\"{addr}\""))
            .collect();
        let config = std::fs::read_to_string(self.path("signer.toml")).unwrap_or_default();
        self.write(
            "signer.toml",
            &format!(
                "{config}\n[privval]\nidentity_key = \"keys/privval-identity.hex\"\n\n[[cometbft]]\nchain_id = \"{chain_id}\"\nprotocol = \"{protocol}\"\nkey = \"0x{}\"\nnodes = [{}]\n",
                hex::encode(&self.ed25519),
                list.join(", ")
            ),
        );
        let mut extra = format!("\n[networks.privval-chain]\nchain_id = \"{chain_id}\"\n");
        let mut names = Vec::new();
        for (i, (_, identity)) in nodes.iter().enumerate() {
            extra.push_str(&format!(
                "\n[clients.cometbft-node-{i}]\nidentity = \"{identity}\"\n"
            ));
            names.push(format!("\"cometbft-node-{i}\""));
        }
        extra.push_str(&format!(
            "\n[[grant]]\nclients = [{n}]\noperations = [\"cometbft.consensus\"]\nkey_groups = [\"consensus\"]\nnetworks = [\"privval-chain\"]\n\n[[grant]]\nclients = [{n}]\noperations = [\"cometbft.raw\"]\nkey_groups = [\"consensus\"]\n",
            n = names.join(", ")
        ));
        self.write_policy(&self.policy_with(&extra));
    }

    /// Takes the key file `keys/NAME.json` out of the configuration (the
    /// key is then served from elsewhere: an HSM, KMS, a sealed file).
    pub fn drop_file_key(&self, name: &str) {
        let config = std::fs::read_to_string(self.path("signer.toml")).unwrap_or_default();
        let entry = format!(
            "[[keys]]\ntype = \"file\"\npath = \"keys/{name}.json\"\npassword_file = \"keys/{name}.pass\"\n"
        );
        assert!(
            config.contains(&entry),
            "no file key {name} in the configuration"
        );
        self.write("signer.toml", &config.replace(&entry, ""));
    }

    /// Grants client `vc` Ethereum duties by `bls2` (configured by the test
    /// from a sealed source), starts the daemon, and checks that an
    /// attestation is signed exactly as the signing core signs it.
    #[allow(clippy::unwrap_used)]
    pub async fn check_bls2_signs(&self) {
        self.write_policy(&self.policy_with(&format!(
            "\n[key_groups.sealed]\nkeys = [\"0x{}\"]\n\n[[grant]]\nclients = [\"vc\"]\noperations = [\"eth2.duties\"]\nkey_groups = [\"sealed\"]\nnetworks = [\"test-eth\"]\n",
            hex::encode(&self.bls2)
        )));
        let daemon = self.start();
        let mut vc = daemon.client(self.client_tls("vc")).await;
        let got = signature_of(
            vc.sign(attestation(&self.bls2, 1, 2, 7))
                .await
                .unwrap()
                .into_inner(),
        );
        assert_eq!(
            got.signature,
            core_attestation_signature(BLS_SECRET_2, 1, 2, 7)
        );
    }

    /// Starts the daemon on this setup.
    pub fn start(&self) -> Daemon {
        Daemon::start_with_env(
            &self.path("signer.toml"),
            &self.path("daemon.log"),
            &self.env,
        )
    }
}

/// A running `signer serve`. Killed (SIGKILL) on drop if still running.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    /// gRPC address.
    pub grpc: SocketAddr,
    /// Metrics address.
    pub metrics: SocketAddr,
    /// The Web3Signer API's address, when enabled.
    pub http_api: Option<SocketAddr>,
    log: PathBuf,
}

impl Daemon {
    /// Starts `signer serve --config CONFIG` on free ports and waits for `ready`.
    pub fn start(config: &Path, log: &Path) -> Self {
        Self::start_with_env(config, log, &[])
    }

    /// [`Daemon::start`] with extra environment variables.
    pub fn start_with_env(config: &Path, log: &Path, env: &[(String, String)]) -> Self {
        Self::start_wrapped(config, log, env, &[])
    }

    /// [`Daemon::start_with_env`] run by `wrapper` (a command and its
    /// arguments that runs the rest, such as `prlimit --nofile=1024:1024`).
    pub fn start_wrapped(
        config: &Path,
        log: &Path,
        env: &[(String, String)],
        wrapper: &[&str],
    ) -> Self {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic_str(&e.to_string()));
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(signer_bin());
                c
            }
            None => Command::new(signer_bin()),
        };
        let mut child = command
            .args(["serve", "--config"])
            .arg(config)
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic_str(&e.to_string()));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic_str("no stdout"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep reading so the daemon never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(Ok(l))) => l,
            other => {
                let _ = child.kill();
                let log = std::fs::read_to_string(log).unwrap_or_default();
                panic_str(&format!(
                    "the daemon did not get ready ({other:?}); its log:\n{log}"
                ))
            }
        };
        let addr = |key: &str| -> SocketAddr {
            line.split(' ')
                .find_map(|f| f.strip_prefix(key))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic_str(&format!("bad ready line {line:?}")))
        };
        Self {
            grpc: addr("grpc="),
            metrics: addr("metrics="),
            http_api: line
                .split(' ')
                .find_map(|f| f.strip_prefix("http="))
                .and_then(|a| a.parse().ok()),
            child,
            log: log.to_owned(),
        }
    }

    /// A `signer.v1` client with the given client TLS configuration (one connection).
    pub async fn client(
        &self,
        tls: Arc<rustls::ClientConfig>,
    ) -> proto::v1::signer_client::SignerClient<tonic::transport::Channel> {
        signer::client::connect(self.grpc, "localhost", tls)
            .await
            .unwrap_or_else(|e| panic_str(&e.to_string()))
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`, `KILL`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{name} failed");
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for exit.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        self.child
            .wait()
            .unwrap_or_else(|e| panic_str(&e.to_string()))
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path` on the metrics listener: (status, body).
    pub fn http(&self, method: &str, path: &str) -> (u16, String) {
        plain_http(self.metrics, method, path)
    }

    /// The value of one metric line (`name{labels}` exactly as exported), or 0.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.http("GET", "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// A failing test shows what each of its daemons logged last: the reason
/// for a refusal is in the log, not in the answer the client saw.
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of {} ---", self.log.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A TLS 1.3 client configuration trusting `ca`, presenting `cert` (and its
/// key) if given, offering one ALPN protocol; errors as text.
pub fn client_config(
    ca: &Path,
    cert: Option<(&Path, &Path)>,
    alpn: &[u8],
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    signer::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match cert {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| e.to_string())?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| e.to_string())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// One plain HTTP/1.1 request (the metrics listener): (status, body).
pub fn plain_http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic_str(&e.to_string()));
    let _ = write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A blocking HTTPS request over a fresh connection with client certificate
/// `cert` (`None`: none) from this setup: (status, body), or the TLS error.
pub fn https(
    setup: &Setup,
    addr: SocketAddr,
    cert: Option<&str>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String), String> {
    let ca = setup.path("tls/ca.pem");
    let pair = cert.map(|name| {
        (
            setup.path(&format!("tls/{name}.pem")),
            setup.path(&format!("tls/{name}.key")),
        )
    });
    https_with(
        &ca,
        pair.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        addr,
        method,
        path,
        headers,
        body,
    )
}

/// [`https`] with explicit files: the server's CA, and our certificate and key.
pub fn https_with(
    ca: &Path,
    cert: Option<(&Path, &Path)>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String), String> {
    use rustls::pki_types::ServerName;
    let config = client_config(ca, cert, b"http/1.1")?;
    let conn = rustls::ClientConnection::new(
        config,
        ServerName::try_from("localhost").map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let io = |e: std::io::Error| {
        e.get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .map_or_else(|| e.to_string(), |t| format!("{t:?}"))
    };
    tls.write_all(request.as_bytes()).map_err(io)?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        // The server may close without close_notify after `Connection: close`.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(io(e)),
    }
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {out:?}"))?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
