//! Real PKCS#11 tokens for end-to-end tests: SoftHSM 2 with a private
//! configuration and fresh tokens per test, keys made through the signer's
//! own CLI (`signer keys generate|import|seal`), hsm-sim scenarios around
//! SoftHSM, and a CometBFT vote load that checks every answer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hsm_sim::scenario::{Fault, Scenario};
use proto::v1 as pb;

use crate::daemon::{CHAIN, Daemon, Setup, signer_bin};

/// The user PIN of every test token.
pub const PIN: &str = "4321";

fn fail(msg: &str) -> ! {
    // Test helpers report problems by failing the test that called them.
    #[allow(clippy::panic)]
    {
        panic!("{msg}")
    }
}

/// SoftHSM's PKCS#11 module (Debian installs it under one of these).
pub fn softhsm_module() -> PathBuf {
    let candidates = [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            fail("SoftHSM 2 is missing (no libsofthsm2.so): install the Debian package softhsm2 (scripts/test does)")
        })
}

/// hsm-sim's module, built with the workspace next to the `signer` binary.
pub fn hsm_sim_module() -> PathBuf {
    let m = signer_bin()
        .parent()
        .map(|d| d.join("libhsm_sim.so"))
        .unwrap_or_default();
    if !m.exists() {
        fail(&format!(
            "hsm-sim's module is missing at {}: build the workspace (scripts/test, or `cargo build -p hsm-sim`)",
            m.display()
        ));
    }
    m
}

/// A SoftHSM installation of our own: its configuration, token directory and PIN file.
#[derive(Debug)]
pub struct SoftHsm {
    dir: tempfile::TempDir,
    /// `SOFTHSM2_CONF`.
    pub conf: PathBuf,
    /// A file holding [`PIN`].
    pub pin_file: PathBuf,
}

impl SoftHsm {
    /// Fresh tokens with these labels.
    pub fn new(labels: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&e.to_string()));
        let tokens = dir.path().join("tokens");
        std::fs::create_dir_all(&tokens).unwrap_or_else(|e| fail(&e.to_string()));
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap_or_else(|e| fail(&e.to_string()));
        let pin_file = dir.path().join("user.pin");
        std::fs::write(&pin_file, format!("{PIN}\n")).unwrap_or_else(|e| fail(&e.to_string()));
        let hsm = Self {
            dir,
            conf,
            pin_file,
        };
        softhsm_module();
        for label in labels {
            let out = Command::new("softhsm2-util")
                .args(["--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", "87654321"])
                .env("SOFTHSM2_CONF", &hsm.conf)
                .output()
                .unwrap_or_else(|e| {
                    fail(&format!("softhsm2-util cannot run ({e}): install the Debian package softhsm2 (scripts/test does)"))
                });
            if !out.status.success() {
                fail(&format!(
                    "softhsm2-util --init-token {label}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        hsm
    }

    /// The directory holding the configuration.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The environment a process needs to see these tokens.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("SOFTHSM2_CONF".into(), self.conf.display().to_string())]
    }

    /// Runs `signer keys ARGS --module M --token-label T --pin-file P`;
    /// returns its stdout, failing the test if it fails.
    pub fn keys(&self, module: &Path, token: &str, args: &[&str]) -> String {
        let (ok, out, err) = self.try_keys(module, token, args);
        if !ok {
            fail(&format!("signer keys {args:?}: {err}"));
        }
        out
    }

    /// Like [`SoftHsm::keys`], returning (success, stdout, stderr).
    pub fn try_keys(&self, module: &Path, token: &str, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(signer_bin())
            .arg("keys")
            .args(args)
            .arg("--module")
            .arg(module)
            .args(["--token-label", token, "--pin-file"])
            .arg(&self.pin_file)
            .envs(self.env())
            .output()
            .unwrap_or_else(|e| fail(&e.to_string()));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Generates a key pair in the token (real SoftHSM); its public key.
    pub fn generate(&self, token: &str, scheme: &str, label: &str) -> Vec<u8> {
        let out = self.keys(
            &softhsm_module(),
            token,
            &["generate", "--scheme", scheme, "--label", label],
        );
        public_key_of(&out)
    }

    /// Imports the setup's Ed25519 file key into `token` as `label`,
    /// checking the token holds the same public key.
    pub fn import_setup_ed25519(&self, setup: &crate::daemon::Setup, token: &str, label: &str) {
        let pk = self.import(
            token,
            label,
            &setup.path("keys/ed25519.json"),
            &setup.path("keys/ed25519.pass"),
        );
        if pk != setup.ed25519 {
            fail(&format!(
                "token {token} holds another key than the setup's Ed25519 key"
            ));
        }
    }

    /// Imports a key file into the token; its public key.
    pub fn import(
        &self,
        token: &str,
        label: &str,
        key_file: &Path,
        password_file: &Path,
    ) -> Vec<u8> {
        let (k, p) = (
            key_file.display().to_string(),
            password_file.display().to_string(),
        );
        let out = self.keys(
            &softhsm_module(),
            token,
            &[
                "import",
                "--label",
                label,
                "--key-file",
                &k,
                "--password-file",
                &p,
            ],
        );
        public_key_of(&out)
    }
}

fn public_key_of(out: &str) -> Vec<u8> {
    out.split_whitespace()
        .last()
        .and_then(|w| w.strip_prefix("0x"))
        .and_then(|h| hex::decode(h).ok())
        .unwrap_or_else(|| fail(&format!("no public key in {out:?}")))
}

/// An hsm-sim scenario file (changed while the signer runs).
#[derive(Debug)]
pub struct Sim {
    /// The scenario file.
    pub path: PathBuf,
    /// The counters file.
    pub counters: PathBuf,
}

impl Sim {
    /// A scenario without faults, forwarding to SoftHSM.
    pub fn new(dir: &Path) -> Self {
        let sim = Self {
            path: dir.join("scenario.json"),
            counters: dir.join("counters.json"),
        };
        sim.set(Vec::new(), Vec::new());
        sim
    }

    /// Replaces the faults and removed tokens.
    pub fn set(&self, faults: Vec<Fault>, removed_tokens: Vec<String>) {
        Scenario {
            module: softhsm_module(),
            counters: Some(self.counters.clone()),
            removed_tokens,
            faults,
        }
        .write(&self.path)
        .unwrap_or_else(|e| fail(&e.to_string()));
        // The module looks at the file at most every 5 ms.
        std::thread::sleep(Duration::from_millis(20));
    }

    /// Ends every fault.
    pub fn clear(&self) {
        self.set(Vec::new(), Vec::new());
    }

    /// The environment entry naming the scenario.
    pub fn env(&self) -> (String, String) {
        (
            hsm_sim::scenario::ENV.into(),
            self.path.display().to_string(),
        )
    }

    /// Calls and faults of `function` since the scenario last changed.
    pub fn count(&self, function: &str) -> hsm_sim::scenario::Count {
        hsm_sim::scenario::read_counters(&self.counters)
            .get(function)
            .copied()
            .unwrap_or_default()
    }
}

/// Appends a `[pkcs11]` section with these tokens (name, module, label).
pub fn configure_pkcs11(
    setup: &Setup,
    hsm: &SoftHsm,
    timeout_ms: u64,
    tokens: &[(&str, &Path, &str)],
) {
    let mut text = std::fs::read_to_string(setup.path("signer.toml")).unwrap_or_default();
    text.push_str(&format!(
        "\n[pkcs11]\noperation_timeout_ms = {timeout_ms}\nsessions_per_token = 2\nkeepalive_secs = 1\n"
    ));
    for (name, module, label) in tokens {
        text.push_str(&format!(
            "\n[[pkcs11.tokens]]\nname = \"{name}\"\nmodule = \"{}\"\ntoken_label = \"{label}\"\npin_file = \"{}\"\n",
            module.display(),
            hsm.pin_file.display()
        ));
    }
    setup.write("signer.toml", &text);
}

/// Appends a `[[keys]]` entry.
pub fn add_key(setup: &Setup, entry: &str) {
    let mut text = std::fs::read_to_string(setup.path("signer.toml")).unwrap_or_default();
    text.push_str(&format!("\n[[keys]]\n{entry}\n"));
    setup.write("signer.toml", &text);
}

/// What one request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A signature that verified over the expected sign bytes.
    Signed,
    /// A typed refusal.
    Refused(pb::Reason),
    /// No answer from the server within the client's deadline (a hang).
    NoAnswer(String),
}

type Client = pb::signer_client::SignerClient<tonic::transport::Channel>;

/// An Ed25519 key held outside the daemon (HSM, KMS) signs a raw message
/// for `vc` (verified by the signing core) and three heights of CometBFT
/// votes for `node` (each verified by [`VoteLoad`]).
#[allow(clippy::unwrap_used)]
pub async fn check_remote_ed25519(vc: &mut Client, node: &mut Client, key: &[u8], message: &[u8]) {
    let got = crate::daemon::signature_of(
        vc.sign(signer::client::raw_ed25519_request(key, message.to_vec()))
            .await
            .unwrap()
            .into_inner(),
    );
    signer::crypto::ed25519::verify(key, message, &got.signature).unwrap();
    let mut load = VoteLoad::new(key.to_vec());
    for _ in 0..3 {
        assert_eq!(load.step(node).await, vec![Answer::Signed; 2]);
    }
}

/// CometBFT votes with one Ed25519 consensus key, each signature checked.
#[derive(Debug)]
pub struct VoteLoad {
    /// The consensus key.
    pub key: Vec<u8>,
    /// Next height to vote at.
    pub height: i64,
    /// Signed messages by (height, step): block byte of what was signed.
    pub signed: HashMap<(i64, i32), u8>,
    /// The slowest answer seen.
    pub slowest: Duration,
}

/// The client's own deadline: far beyond any configured operation timeout,
/// so a request that hits it was hung by the server.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(15);

impl VoteLoad {
    /// Starts at height 1.
    pub fn new(key: Vec<u8>) -> Self {
        Self {
            key,
            height: 1,
            signed: HashMap::new(),
            slowest: Duration::ZERO,
        }
    }

    /// Sends one vote (`block` names the block voted for) and checks a
    /// signature against the canonical sign bytes with the signing core.
    pub async fn vote(
        &mut self,
        client: &mut pb::signer_client::SignerClient<tonic::transport::Channel>,
        height: i64,
        precommit: bool,
        block: u8,
    ) -> Answer {
        let kind = if precommit {
            pb::VoteType::Precommit
        } else {
            pb::VoteType::Prevote
        };
        let seconds = 1_700_000_000 + height;
        let req = signer::client::vote_request(&self.key, CHAIN, kind, (height, 0), block, seconds);
        let mut request = tonic::Request::new(req);
        request.set_timeout(CLIENT_DEADLINE);
        let started = Instant::now();
        let result = tokio::time::timeout(CLIENT_DEADLINE, client.sign(request)).await;
        self.slowest = self.slowest.max(started.elapsed());
        let response = match result {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => return Answer::NoAnswer(status.to_string()),
            Err(_) => return Answer::NoAnswer("client deadline".into()),
        };
        match response.outcome {
            Some(pb::sign_response::Outcome::Signature(s)) => {
                let vote = signer::cometbft::Vote {
                    kind: if precommit {
                        signer::cometbft::VoteType::Precommit
                    } else {
                        signer::cometbft::VoteType::Prevote
                    },
                    height,
                    round: 0,
                    block_id: signer::cometbft::BlockId {
                        hash: vec![block; 32],
                        part_set_total: 1,
                        part_set_hash: vec![block; 32],
                    },
                    timestamp: signer::cometbft::Timestamp { seconds, nanos: 0 },
                    extension: Vec::new(),
                };
                let bytes = signer::cometbft::vote_sign_bytes(CHAIN, &vote)
                    .unwrap_or_else(|e| fail(&e.to_string()));
                if let Err(e) = signer::crypto::ed25519::verify(&self.key, &bytes, &s.signature) {
                    fail(&format!(
                        "height {height}: the signature does not verify: {e}"
                    ));
                }
                let step = i32::from(precommit);
                if let Some(previous) = self.signed.insert((height, step), block)
                    && previous != block
                {
                    fail(&format!(
                        "DOUBLE SIGN: height {height} step {step}: blocks {previous} and {block}"
                    ));
                }
                Answer::Signed
            }
            Some(pb::sign_response::Outcome::Refusal(r)) => Answer::Refused(r.reason()),
            None => Answer::NoAnswer("empty response".into()),
        }
    }

    /// One height (prevote and precommit for block 1). After a refusal for
    /// an unavailable backend, tries a conflicting vote at the same step,
    /// which must be refused as slashable: the decision was recorded
    /// before the failed sign. Returns the answers.
    pub async fn step(
        &mut self,
        client: &mut pb::signer_client::SignerClient<tonic::transport::Channel>,
    ) -> Vec<Answer> {
        let h = self.height;
        self.height += 1;
        let mut answers = Vec::new();
        for precommit in [false, true] {
            let a = self.vote(client, h, precommit, 1).await;
            if a == Answer::Refused(pb::Reason::BackendUnavailable) {
                let conflict = self.vote(client, h, precommit, 2).await;
                if conflict != Answer::Refused(pb::Reason::Slashable) {
                    fail(&format!(
                        "height {h}: after a failed sign, a conflicting vote got {conflict:?}, not SLASHABLE"
                    ));
                }
            }
            answers.push(a);
        }
        answers
    }
}

/// The hsm-sim fault rule for `function` (other fields default).
pub fn fault(function: &str) -> Fault {
    Fault {
        function: function.into(),
        ..Fault::default()
    }
}

/// A daemon under a fault: its consensus client and vote load, with the
/// checks every fault test makes.
#[derive(Debug)]
pub struct Voting {
    /// The setup the daemon runs.
    pub setup: Setup,
    /// The daemon.
    pub daemon: Daemon,
    /// The `node` client.
    pub node: pb::signer_client::SignerClient<tonic::transport::Channel>,
    /// Votes with the consensus key.
    pub load: VoteLoad,
    /// The backend's operation timeout.
    pub timeout: Duration,
}

impl Voting {
    /// Starts the daemon on `setup`; `key` is the consensus key.
    pub async fn start(setup: Setup, key: Vec<u8>, timeout: Duration) -> Self {
        let daemon = setup.start();
        let node = daemon.client(setup.client_tls("node")).await;
        Self {
            setup,
            daemon,
            node,
            load: VoteLoad::new(key),
            timeout,
        }
    }

    /// `n` heights; every answer is a signature or a typed refusal.
    pub async fn heights(&mut self, n: usize) -> Vec<Answer> {
        let mut all = Vec::new();
        for _ in 0..n {
            for a in self.load.step(&mut self.node).await {
                if matches!(a, Answer::NoAnswer(_)) {
                    fail(&format!(
                        "a request hung or failed at the transport: {a:?}\n{}",
                        self.daemon.log()
                    ));
                }
                all.push(a);
            }
        }
        all
    }

    /// Heights until one is fully signed (the daemon recovered), within `limit`.
    pub async fn until_signed(&mut self, limit: Duration) {
        let started = Instant::now();
        while self.heights(1).await != vec![Answer::Signed; 2] {
            if started.elapsed() >= limit {
                fail(&format!(
                    "the daemon did not recover within {limit:?}\n{}",
                    self.daemon.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `/readyz`: status and body.
    pub fn ready(&self) -> (u16, String) {
        self.daemon.http("GET", "/readyz")
    }

    /// One metric series.
    pub fn metric(&self, series: &str) -> f64 {
        self.daemon.metric(series)
    }

    /// `signer_backend_operations_total` of `backend` with `outcome`, summed
    /// over names (or for one name).
    pub fn ops(&self, backend: &str, name: Option<&str>, outcome: &str) -> f64 {
        let (_, body) = self.daemon.http("GET", "/metrics");
        let prefix = format!("signer_backend_operations_total{{backend=\"{backend}\"");
        let name = name.map(|n| format!("name=\"{n}\""));
        body.lines()
            .filter(|l| l.starts_with(&prefix) && l.contains(&format!("outcome=\"{outcome}\"")))
            .filter(|l| name.as_ref().is_none_or(|n| l.contains(n.as_str())))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// `signer_backend_up` of one backend target.
    pub fn up(&self, backend: &str, name: &str) -> f64 {
        self.metric(&format!(
            "signer_backend_up{{backend=\"{backend}\",name=\"{name}\"}}"
        ))
    }

    /// Stops the daemon and checks what it left ([`stop_and_check`]).
    pub fn finish(self) {
        stop_and_check(self.daemon, &self.setup, &self.load, self.timeout);
    }
}

/// A secp256k1 answer for Ethereum: low-S, verified by k256 over `digest`,
/// and its recovery id recovers `public_key` (returned, for address checks).
pub fn check_recoverable(
    public_key: &[u8],
    digest: &[u8; 32],
    answer: &pb::Signature,
) -> k256::ecdsa::VerifyingKey {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
    let key = VerifyingKey::from_sec1_bytes(public_key).unwrap_or_else(|e| fail(&e.to_string()));
    let s = Signature::from_slice(&answer.signature).unwrap_or_else(|e| fail(&e.to_string()));
    if s.normalize_s() != s {
        fail("a high-S signature was returned");
    }
    if key.verify_prehash(digest, &s).is_err() {
        fail("the signature does not verify");
    }
    let id = answer
        .recovery_id
        .and_then(|v| u8::try_from(v).ok())
        .and_then(RecoveryId::from_byte)
        .unwrap_or_else(|| fail("no recovery id"));
    let recovered =
        VerifyingKey::recover_from_prehash(digest, &s, id).unwrap_or_else(|e| fail(&e.to_string()));
    if recovered != key {
        fail("the recovery id does not recover the key");
    }
    recovered
}

/// After a fault test: no answer took longer than the operation timeout
/// allows (a liveness bound with a wide margin for a loaded machine, not a
/// performance figure); the daemon stops cleanly; the consensus key's record
/// in the database is at the last height voted, with no signature stored
/// (decision 0012); something was signed at all.
pub fn stop_and_check(daemon: Daemon, setup: &Setup, load: &VoteLoad, timeout: Duration) {
    if load.slowest >= timeout + Duration::from_secs(3) {
        fail(&format!(
            "an answer took {:?} with a {timeout:?} operation timeout",
            load.slowest
        ));
    }
    let last = u64::try_from(load.height - 1).unwrap_or_default();
    if !daemon.stop().success() {
        fail("the daemon did not stop cleanly");
    }
    let db = slashing_db::SlashingDb::open(
        &setup.path("data/slashing.sqlite"),
        slashing_db::Config::default(),
    )
    .unwrap_or_else(|e| fail(&e.to_string()));
    let states = db
        .cometbft_states()
        .unwrap_or_else(|e| fail(&e.to_string()));
    let Some((_, chain, record)) = states
        .iter()
        .find(|(k, _, _)| k.as_bytes() == load.key.as_slice())
    else {
        fail("no record for the consensus key");
    };
    if chain.as_str() != CHAIN || record.hrs.height.0 != last {
        fail(&format!(
            "the record is at {chain:?} height {}, not {CHAIN} {last}",
            record.hrs.height.0
        ));
    }
    if record.signature.is_some() {
        fail("a signature was stored: nothing is written after signing (decision 0012)");
    }
    if load.signed.is_empty() {
        fail("nothing was signed: the test proved nothing");
    }
}
