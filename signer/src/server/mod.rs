//! The daemon: loads the configuration, policy, keys, database, audit log
//! and TLS material; serves gRPC over mutual TLS and the operations
//! endpoints; reloads on SIGHUP; shuts down gracefully on SIGTERM/SIGINT.
//!
//! Start-up refuses to serve with anything missing or wrong (a key that
//! does not decrypt, a policy with errors, a database in use): a signer
//! running with fewer keys or a looser policy than configured is worse than
//! one that does not start.

pub mod http;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use slashing_db::GenesisRoot;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::grpc::SignerService;
use crate::audit::AuditLog;
use crate::backend::kms::Kms;
use crate::backend::pkcs11::{Locator, Registry as Pkcs11Registry};
use crate::backend::soft::{self, keystore, web3signer};
use crate::backend::{Key, SecretKey};
use crate::config::{Config, KeySource};
use crate::metrics::Metrics;
use crate::pipeline::{Keyring, Pipeline};
use crate::policy::{Policy, Severity};
use crate::pool::Pool;
use crate::tls::listener;
use crate::tls::{self, ReloadableConfig};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Command-line overrides of the configuration.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--grpc-listen`.
    pub grpc_listen: Option<SocketAddr>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// `--http-listen` (enables the Web3Signer API if the file does not).
    pub http_listen: Option<SocketAddr>,
}

/// What the daemon's tasks share.
#[derive(Debug)]
pub struct Shared {
    /// The pipeline.
    pub pipeline: Arc<Pipeline>,
    tls: Arc<ReloadableConfig>,
    tls_files: tls::TlsFiles,
    policy_file: PathBuf,
    stopping: AtomicBool,
    health: tonic_health::server::HealthReporter,
    pool: Arc<Pool>,
    max_wait: Duration,
    http_tls: Option<Arc<ReloadableConfig>>,
    key_sources: Vec<KeySource>,
    /// Remote backends (they outlive key reloads).
    backends: Backends,
    key_reload: std::sync::Mutex<KeyReload>,
    /// CometBFT chains and their nodes' labels, for readiness.
    privval_nodes: Vec<(String, Vec<String>)>,
}

/// The state of the last key reload (Web3Signer's `GET /reload`).
#[derive(Debug, Clone, Default)]
struct KeyReload {
    running: bool,
    outcome: Option<Result<usize, String>>,
    time: Option<String>,
}

/// What a reload did.
#[derive(Debug)]
pub struct ReloadReport {
    /// TLS material.
    pub tls: Result<(), String>,
    /// The policy.
    pub policy: Result<(), String>,
    /// Keys: how many loaded, or why some did not (the ones that loaded are in use).
    pub keys: Result<usize, String>,
}

impl ReloadReport {
    fn failed(why: &str) -> Self {
        Self {
            tls: Err(why.to_owned()),
            policy: Err(why.to_owned()),
            keys: Err(why.to_owned()),
        }
    }

    /// True when every part reloaded.
    pub fn ok(&self) -> bool {
        self.tls.is_ok() && self.policy.is_ok() && self.keys.is_ok()
    }
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (what, r) in [("tls", &self.tls), ("policy", &self.policy)] {
            match r {
                Ok(()) => writeln!(f, "{what}: reloaded")?,
                Err(e) => writeln!(f, "{what}: kept the previous one: {e}")?,
            }
        }
        match &self.keys {
            Ok(n) => writeln!(f, "keys: {n} loaded"),
            Err(e) => writeln!(f, "keys: {e}"),
        }
    }
}

fn load_policy(path: &Path) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (policy, findings) = Policy::load(&text).map_err(|e| match e {
        crate::policy::PolicyError::Invalid(findings) => findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    })?;
    for f in findings {
        tracing::warn!(file = %path.display(), "policy: {f}");
    }
    Ok(policy)
}

impl Shared {
    /// The worker pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Longest wait in the queue.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// The HTTP listener's TLS setup, when it has one.
    pub fn http_tls(&self) -> Option<&ReloadableConfig> {
        self.http_tls.as_deref()
    }

    /// Loads the configured keys again and puts them in force: keys whose
    /// files are gone stop signing, new ones start. Sources that fail are
    /// reported (Web3Signer's "completed with errors"); what loaded is used.
    pub fn reload_keys(&self) -> Result<usize, String> {
        let (keys, errors) = load_keys(&self.key_sources, &self.backends);
        let n = keys.len();
        record_keys(self.pipeline.metrics(), &keys);
        self.pipeline.set_keys(keys);
        self.pipeline.metrics().reload("keys", errors.is_empty());
        if errors.is_empty() {
            tracing::info!(keys = n, "keys reloaded");
            Ok(n)
        } else {
            for e in &errors {
                tracing::error!(error = %e, "key reload: a key did not load");
            }
            Err(format!(
                "{n} keys loaded; {} key loading error(s), first: {}",
                errors.len(),
                errors.first().map_or("", String::as_str)
            ))
        }
    }

    /// Starts a key reload in the background (Web3Signer's `POST /reload`);
    /// false when one is already running.
    pub fn start_key_reload(self: &Arc<Self>, client: &str) -> bool {
        {
            let Ok(mut state) = self.key_reload.lock() else {
                return false;
            };
            if state.running {
                return false;
            }
            state.running = true;
            state.time = Some(crate::audit::rfc3339(std::time::SystemTime::now()));
        }
        tracing::info!(client, "key reload requested");
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = me.reload_keys();
            if let Ok(mut state) = me.key_reload.lock() {
                state.running = false;
                state.outcome = Some(outcome);
                state.time = Some(crate::audit::rfc3339(std::time::SystemTime::now()));
            }
        });
        true
    }

    /// Web3Signer's `GET /reload` body.
    pub fn key_reload_status(&self) -> serde_json::Value {
        let state = self
            .key_reload
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let status = match (&state.running, &state.outcome) {
            (true, _) => "running",
            (false, None) => "idle",
            (false, Some(Ok(_))) => "completed",
            (false, Some(Err(_))) => "completed_with_errors",
        };
        let mut v = serde_json::json!({ "status": status });
        if let Some(obj) = v.as_object_mut() {
            if let Some(t) = state.time {
                obj.insert("lastOperationTime".into(), t.into());
            }
            if let Some(Err(e)) = state.outcome {
                obj.insert("lastError".into(), e.into());
            }
        }
        v
    }

    /// Re-reads TLS material, the policy and the keys; TLS or a policy that
    /// fails keeps the old one.
    pub fn reload(&self) -> ReloadReport {
        let metrics = self.pipeline.metrics();
        let tls =
            self.tls
                .reload()
                .map_err(|e| e.to_string())
                .and_then(|()| match &self.http_tls {
                    Some(h) => h.reload().map_err(|e| format!("HTTP listener: {e}")),
                    None => Ok(()),
                });
        match &tls {
            Ok(()) => {
                tracing::info!("TLS material reloaded");
                record_expiry(metrics, &self.tls_files);
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS reload failed; the previous certificates stay in force")
            }
        }
        metrics.reload("tls", tls.is_ok());
        let policy = load_policy(&self.policy_file).map(|p| self.pipeline.set_policy(p));
        match &policy {
            Ok(()) => tracing::info!(file = %self.policy_file.display(), "policy reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "policy reload failed; the previous policy stays in force")
            }
        }
        metrics.reload("policy", policy.is_ok());
        let keys = self.reload_keys();
        ReloadReport { tls, policy, keys }
    }

    /// The remote backends' checks: PKCS#11 is `Err` when some key has no
    /// token up (naming the tokens that are down; a token down while another
    /// holds its keys shows in `signer_backend_up`, not here); KMS is `Err`
    /// while its circuit breaker is open.
    fn backend_readiness(&self) -> Vec<(&'static str, Result<(), String>)> {
        let mut checks = Vec::new();
        let keys = self.pipeline.keys();
        let stranded = |backend: &str| {
            keys.iter()
                .filter_map(|k| k.remote())
                .filter(|r| r.backend() == backend && !r.servable())
                .count()
        };
        if let Some(registry) = &self.backends.pkcs11 {
            let down: Vec<String> = registry
                .health()
                .into_iter()
                .filter_map(|(name, why)| why.map(|w| format!("token {name} down: {w}")))
                .collect();
            let n = stranded("pkcs11");
            checks.push((
                "pkcs11",
                if n > 0 {
                    Err(format!("{n} key(s) have no token up ({})", down.join("; ")))
                } else {
                    Ok(())
                },
            ));
        }
        if let Some(kms) = &self.backends.kms {
            checks.push((
                "kms",
                if kms.breaker_open() {
                    Err("KMS unreachable: circuit breaker open".into())
                } else {
                    Ok(())
                },
            ));
        }
        checks
    }

    /// Readiness checks, each `Ok` or why not (blocking: it asks the database).
    pub fn readiness(&self) -> Vec<(&'static str, Result<(), String>)> {
        let serving = if self.stopping.load(Ordering::Relaxed) {
            Err("shutting down".into())
        } else {
            Ok(())
        };
        // SQLite: a transaction on the file. PostgreSQL: a round trip that
        // also re-reads the server's durability (a failover to a server
        // without a synchronous standby turns readiness red).
        let metrics = self.pipeline.metrics();
        let durability = self.pipeline.db().durability();
        let level = match &durability {
            Ok(None) => "file",
            Ok(Some(d)) => d.level(),
            Err(_) => "unavailable",
        };
        for l in ["file", "local", "synchronous", "unavailable"] {
            metrics
                .db_durability
                .get_or_create(&vec![("level", l.to_owned())])
                .set(i64::from(l == level));
        }
        // The check's name carries the durability level on PostgreSQL.
        let db_check = match &durability {
            Ok(Some(d)) if d.level() == "synchronous" => "database (postgres, synchronous standby)",
            Ok(Some(_)) => "database (postgres, primary's disk only)",
            _ => "database",
        };
        let db = durability.map(|_| ()).map_err(|e| e.to_string());
        let keys = if self.pipeline.keys().is_empty() {
            Err("no keys loaded".into())
        } else {
            Ok(())
        };
        // A chain with no node connected is not signing: not ready.
        let mut privval = Ok(());
        let mut lines = Vec::new();
        for (chain, nodes) in &self.privval_nodes {
            let up = nodes
                .iter()
                .filter(|n| {
                    metrics
                        .privval_connected
                        .get_or_create(&vec![("chain", chain.clone()), ("node", (*n).clone())])
                        .get()
                        == 1
                })
                .count();
            lines.push(format!("{chain} {up}/{} nodes", nodes.len()));
            if up == 0 {
                privval = Err(String::new());
            }
        }
        let privval = match privval {
            Ok(()) => Ok(()),
            Err(_) => Err(format!(
                "a chain has no node connected ({})",
                lines.join(", ")
            )),
        };
        // Keys held only by tokens that are all down cannot sign: not ready.
        // A token down while another holds its keys is shown, not fatal.
        let backends = self.backend_readiness();
        let ready = serving.is_ok()
            && db.is_ok()
            && keys.is_ok()
            && privval.is_ok()
            && backends.iter().all(|(_, r)| r.is_ok());
        metrics.ready.set(i64::from(ready));
        let mut checks = vec![("serving", serving), (db_check, db), ("keys", keys)];
        checks.extend(backends);
        if !self.privval_nodes.is_empty() {
            checks.push(("privval", privval));
        }
        checks
    }
}

/// Records notAfter of the server certificate and the client CAs.
fn record_expiry(metrics: &Metrics, files: &tls::TlsFiles) {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let record = |label: String, path: &Path| {
        let Ok(iter) = CertificateDer::pem_file_iter(path) else {
            return;
        };
        for (i, cert) in iter.flatten().enumerate() {
            if let Ok((_, x)) = X509Certificate::from_der(cert.as_ref()) {
                let name = if i == 0 {
                    label.clone()
                } else {
                    format!("{label}#{i}")
                };
                metrics
                    .cert_expiry
                    .get_or_create(&vec![("certificate", name)])
                    .set(x.validity().not_after.timestamp() as f64);
            }
            if label == "server" {
                break;
            }
        }
    };
    record("server".into(), &files.cert);
    for ca in &files.client_cas {
        record(format!("client_ca:{}", ca.display()), ca);
    }
}

/// Every configured key that loads, and why each that did not.
/// The remote backends keys may come from.
#[derive(Debug, Default, Clone)]
pub struct Backends {
    /// PKCS#11 tokens and their session pools.
    pub pkcs11: Option<Arc<Pkcs11Registry>>,
    /// The AWS KMS client.
    pub kms: Option<Arc<Kms>>,
}

impl Backends {
    /// Starts what the configuration names.
    pub fn start(config: &Config, metrics: &Arc<Metrics>) -> Result<Self, String> {
        Ok(Self {
            pkcs11: match &config.pkcs11 {
                Some(c) => Some(Arc::new(
                    Pkcs11Registry::start(c, Some(metrics.clone()))
                        .map_err(|e| format!("pkcs11: {e}"))?,
                )),
                None => None,
            },
            kms: match &config.kms {
                Some(c) => Some(Kms::new(c, Some(metrics.clone()))?),
                None => None,
            },
        })
    }
}

/// Loads every configured key; the keys that loaded, and what did not.
pub fn load_keys(sources: &[KeySource], backends: &Backends) -> (Keyring, Vec<String>) {
    let pkcs11 = backends.pkcs11.as_deref();
    let kms = backends.kms.as_ref();
    let need_kms = |what: &str| format!("{what}: a kms key needs a [kms] section");
    let mut loaded: Vec<Key> = Vec::new();
    let mut errors = Vec::new();
    let mut add = |key: Key, from: &Path| {
        tracing::debug!(from = %from.display(), scheme = key.scheme().key_type(), backend = key.backend(), "key loaded");
        loaded.push(key);
    };
    let file_key = |path: &Path, password_file: &Path| -> Result<SecretKey, String> {
        let json = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let password = keystore::read_password_file(password_file).map_err(|e| e.to_string())?;
        soft::load_key_file(&json, &password).map_err(|e| format!("{}: {e}", path.display()))
    };
    for source in sources {
        match source {
            KeySource::File {
                path,
                password_file,
            } => match file_key(path, password_file) {
                Ok(key) => add(key.into(), path),
                Err(e) => errors.push(e),
            },
            KeySource::Web3signerDir { path } => match web3signer::load_dir(path) {
                Ok(report) => {
                    for (file, e) in report.errors {
                        errors.push(format!("{}: {e}", file.display()));
                    }
                    for (file, key) in report.keys {
                        add(key.into(), &file);
                    }
                }
                Err(e) => errors.push(e.to_string()),
            },
            KeySource::PrivValidatorKey { path } => {
                let key = std::fs::read(path)
                    .map_err(|e| e.to_string())
                    .and_then(|json| {
                        soft::cometbft::load_priv_validator_key(&json).map_err(|e| e.to_string())
                    });
                match key {
                    Ok(key) => {
                        tracing::warn!(file = %path.display(), "priv_validator_key.json is not encrypted; move the key into a key file");
                        add(key.into(), path);
                    }
                    Err(e) => errors.push(format!("{}: {e}", path.display())),
                }
            }
            KeySource::Pkcs11 { label, id, tokens } => {
                let locator = match (label, id) {
                    (Some(l), None) => Ok(Locator::Label(l.clone())),
                    (None, Some(h)) => hex::decode(h.trim_start_matches("0x"))
                        .map(Locator::Id)
                        .map_err(|_| format!("pkcs11 key id {h:?} is not hex")),
                    _ => Err("a pkcs11 key needs exactly one of label, id".to_owned()),
                };
                let key = locator.and_then(|l| match pkcs11 {
                    Some(r) => r.load_key(l, tokens),
                    None => Err("a pkcs11 key needs a [pkcs11] section".into()),
                });
                match key {
                    Ok(key) => add(key, Path::new("pkcs11")),
                    Err(e) => errors.push(e),
                }
            }
            KeySource::Kms { key_id } => {
                match kms
                    .ok_or_else(|| need_kms(key_id))
                    .and_then(|k| k.load_key(key_id))
                {
                    Ok(key) => add(key, Path::new("kms")),
                    Err(e) => errors.push(e),
                }
            }
            KeySource::KmsTags { tags } => {
                match kms
                    .ok_or_else(|| need_kms("kms_tags"))
                    .and_then(|k| k.keys_by_tags(tags))
                {
                    Ok(keys) if keys.is_empty() => {
                        errors.push(format!("kms_tags {tags:?}: no key carries these tags"));
                    }
                    Ok(keys) => {
                        for key in keys {
                            add(key, Path::new("kms"));
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
            KeySource::KmsSealed { path } => {
                let key = kms
                    .ok_or_else(|| need_kms(&path.display().to_string()))
                    .and_then(|k| {
                        let json = std::fs::read(path).map_err(|e| e.to_string())?;
                        let file = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
                        k.unseal(&file)
                    })
                    .map_err(|e| format!("{}: {e}", path.display()));
                match key {
                    Ok(key) => add(key, path),
                    Err(e) => errors.push(e),
                }
            }
            KeySource::Pkcs11Sealed { path, tokens } => {
                let key = match pkcs11 {
                    Some(r) => r.unseal(path, tokens),
                    None => Err(format!(
                        "{}: a sealed key needs a [pkcs11] section",
                        path.display()
                    )),
                };
                match key {
                    Ok(key) => add(key, path),
                    Err(e) => errors.push(e),
                }
            }
        }
    }
    let mut ring = Keyring::default();
    ring.extend(loaded);
    (ring, errors)
}

fn record_keys(metrics: &Metrics, keys: &Keyring) {
    for scheme in ["bls", "ed25519", "secp256k1"] {
        let n = keys
            .iter()
            .filter(|k| k.scheme().key_type() == scheme)
            .count();
        metrics
            .keys_loaded
            .get_or_create(&vec![("scheme", scheme.to_owned())])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// Starts one connector thread per configured CometBFT node.
fn start_privval(
    config: &Config,
    pipeline: &Arc<Pipeline>,
    pool: &Arc<Pool>,
) -> Result<(), BoxError> {
    use crate::api::privval::connector::{self, Chain, Context, NodeAddr};
    if config.cometbft.is_empty() {
        return Ok(());
    }
    let identity = match &config.privval {
        Some(p) => {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(&p.identity_key)
                    .map_err(|e| format!("{}: {e}", p.identity_key.display()))?,
            );
            let bytes = zeroize::Zeroizing::new(
                hex::decode(text.trim().trim_start_matches("0x"))
                    .map_err(|_| format!("{}: expected 64 hex digits", p.identity_key.display()))?,
            );
            let seed: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| format!("{}: expected 64 hex digits", p.identity_key.display()))?;
            Some(Arc::new(zeroize::Zeroizing::new(seed)))
        }
        None => None,
    };
    let ctx = Context {
        pipeline: pipeline.clone(),
        pool: pool.clone(),
        max_wait: Duration::from_millis(config.server.max_queue_wait_ms),
        identity,
    };
    let keys = pipeline.keys();
    for c in &config.cometbft {
        let key_bytes = hex::decode(c.key.trim_start_matches("0x"))
            .map_err(|_| format!("cometbft {}: key is not hex", c.chain_id))?;
        let key = keys
            .entries()
            .find(|(pk, _)| *pk == key_bytes.as_slice())
            .map(|(_, k)| k)
            .and_then(connector::pub_key_of)
            .ok_or_else(|| {
                format!(
                    "cometbft {}: no Ed25519 or secp256k1 key {} is loaded",
                    c.chain_id, c.key
                )
            })?;
        let chain = Chain {
            chain_id: c.chain_id.clone(),
            version: crate::cometbft::ProtocolVersion::parse(&c.protocol)
                .ok_or_else(|| format!("cometbft {}: unknown protocol", c.chain_id))?,
            key,
            sign_extensions: c.sign_extensions,
            max_height: c.max_height,
        };
        for n in &c.nodes {
            let node = NodeAddr::parse(n)?;
            let (ctx, chain) = (ctx.clone(), chain.clone());
            std::thread::Builder::new()
                .name(format!("privval-{}", c.chain_id))
                .spawn(move || connector::run_node(ctx, chain, node))?;
        }
        tracing::info!(chain = %c.chain_id, nodes = c.nodes.len(), "privval: dialing nodes");
    }
    Ok(())
}

fn genesis_root(config: &Config) -> Result<Option<GenesisRoot>, String> {
    config
        .slashing
        .genesis_validators_root
        .as_deref()
        .map(|s| GenesisRoot::from_hex(s).map_err(|e| e.to_string()))
        .transpose()
}

async fn wait_for_signals(shared: Arc<Shared>) -> Result<(), BoxError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading TLS material and policy");
                let s = shared.clone();
                let _ = tokio::task::spawn_blocking(move || s.reload()).await;
            }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return Ok(()); }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return Ok(()); }
        }
    }
}

/// A two-service router: `grpc.health.v1.Health` and `signer.v1.Signer`
/// (tonic's own router needs axum; this is all we route).
#[derive(Debug, Clone)]
struct Routes<A, B> {
    health: A,
    signer: B,
}

impl<A, B> tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>>
    for Routes<A, B>
where
    A: tonic::codegen::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    A::Future: Send + 'static,
    B: tonic::codegen::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    B::Future: Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path().starts_with("/grpc.health.v1.Health/") {
            let mut h = self.health.clone();
            Box::pin(async move { h.call(req).await })
        } else {
            let mut s = self.signer.clone();
            Box::pin(async move { s.call(req).await })
        }
    }
}

impl<A, B> tonic::server::NamedService for Routes<A, B> {
    const NAME: &'static str = "signer";
}

/// Runs the daemon until SIGTERM or SIGINT. Prints `ready grpc=ADDR
/// metrics=ADDR` on stdout once both listeners accept.
pub fn run(mut config: Config, overrides: Overrides) -> Result<(), BoxError> {
    if let Some(a) = overrides.grpc_listen {
        config.server.grpc_listen = a;
    }
    if let Some(a) = overrides.metrics_listen {
        config.server.metrics_listen = a;
    }
    if let Some(listen) = overrides.http_listen {
        match &mut config.http {
            Some(h) => h.listen = listen,
            None => {
                config.http = Some(crate::config::Http {
                    listen,
                    known_clients_file: None,
                    insecure_plaintext: false,
                })
            }
        }
    }
    tls::install_crypto_provider();

    let policy_file = config.policy.file.clone();
    let policy = load_policy(&policy_file).map_err(|e| format!("policy: {e}"))?;
    // At start every configured key must load: a signer running with fewer
    // keys than configured would miss duties silently.
    let metrics = Arc::new(Metrics::new());
    let backends = Backends::start(&config, &metrics)?;
    let (keys, errors) = load_keys(&config.keys, &backends);
    if let Some(first) = errors.first() {
        return Err(format!("keys: {first} ({} key source error(s))", errors.len()).into());
    }
    record_keys(&metrics, &keys);
    tracing::info!(keys = keys.len(), "keys loaded");
    let network = config
        .ethereum
        .network()
        .ok_or("ethereum: invalid genesis_fork_version")?;
    let db = crate::storage::open(&config.slashing, genesis_root(&config)?)
        .map_err(|e| format!("slashing database: {e}"))?;
    let audit_file = config
        .audit
        .as_ref()
        .map(|a| a.file.clone())
        .ok_or("audit: no file")?;
    let audit = AuditLog::open(&audit_file).map_err(|e| format!("audit log: {e}"))?;
    let pipeline = Arc::new(
        Pipeline::new(policy, keys, db, audit, network)
            .map_err(|e| format!("audit log: {e}"))?
            .with_metrics(metrics.clone()),
    );
    let tls_files = config.tls.files();
    let tls = Arc::new(ReloadableConfig::load(tls_files.clone())?);
    record_expiry(&metrics, &tls_files);

    let workers = match config.server.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let pool = Arc::new(Pool::start(
        pipeline.clone(),
        workers,
        config.server.queue_capacity,
        config.server.max_batch,
    )?);

    start_privval(&config, &pipeline, &pool)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.clamp(1, 4))
        .thread_name("signer-net")
        .enable_all()
        .build()?;
    let result = runtime.block_on(serve(
        config,
        workers,
        pipeline.clone(),
        pool.clone(),
        Loaded {
            tls,
            tls_files,
            policy_file,
            backends,
        },
    ));
    // In-flight calls have been answered; let the workers finish, then the
    // last reference to the pipeline closes the database (WAL checkpoint).
    pool.shutdown();
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(pool);
    drop(pipeline);
    tracing::info!("stopped");
    result
}

/// What `run` loaded before the runtime started.
struct Loaded {
    tls: Arc<ReloadableConfig>,
    tls_files: tls::TlsFiles,
    policy_file: PathBuf,
    backends: Backends,
}

async fn serve(
    config: Config,
    workers: usize,
    pipeline: Arc<Pipeline>,
    pool: Arc<Pool>,
    loaded: Loaded,
) -> Result<(), BoxError> {
    let Loaded {
        tls,
        tls_files,
        policy_file,
        backends,
    } = loaded;
    let grpc_listener = TcpListener::bind(config.server.grpc_listen)
        .await
        .map_err(|e| format!("grpc listener {}: {e}", config.server.grpc_listen))?;
    let metrics_listener = TcpListener::bind(config.server.metrics_listen)
        .await
        .map_err(|e| format!("metrics listener {}: {e}", config.server.metrics_listen))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let metrics_addr = metrics_listener.local_addr()?;
    let http_listener = match &config.http {
        Some(h) => Some(
            TcpListener::bind(h.listen)
                .await
                .map_err(|e| format!("http listener {}: {e}", h.listen))?,
        ),
        None => None,
    };
    let http_addr = http_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    // The HTTP listener shares the server certificate and client CAs, speaks
    // HTTP/1.1 only, and may accept Web3Signer's known clients.
    let http_tls = match &config.http {
        Some(h) if !h.insecure_plaintext => Some(Arc::new(ReloadableConfig::load_for(
            tls_files.clone(),
            tls::ListenerTls {
                alpn: vec![b"http/1.1".to_vec()],
                known_clients: h.known_clients_file.clone(),
            },
        )?)),
        _ => None,
    };
    let max_wait = Duration::from_millis(config.server.max_queue_wait_ms);

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<proto::v1::signer_server::SignerServer<SignerService>>()
        .await;
    let shared = Arc::new(Shared {
        pipeline: pipeline.clone(),
        tls: tls.clone(),
        tls_files,
        policy_file,
        stopping: AtomicBool::new(false),
        health: health.clone(),
        pool: pool.clone(),
        max_wait,
        http_tls: http_tls.clone(),
        key_sources: config.keys.clone(),
        backends,
        key_reload: std::sync::Mutex::new(KeyReload::default()),
        privval_nodes: config
            .cometbft
            .iter()
            .map(|c| {
                let nodes = c
                    .nodes
                    .iter()
                    .filter_map(|n| crate::api::privval::connector::NodeAddr::parse(n).ok())
                    .map(|n| n.label())
                    .collect();
                (c.chain_id.clone(), nodes)
            })
            .collect(),
    });
    let _ = shared.readiness();

    let (stop_tx, stop_rx) = watch::channel(false);
    let incoming = listener::incoming(
        grpc_listener,
        tls,
        pipeline.metrics().clone(),
        stop_rx.clone(),
    );
    let service = SignerService::new(pipeline.clone(), pool, max_wait);
    let routes = Routes {
        health: health_service,
        signer: proto::v1::signer_server::SignerServer::new(service),
    };
    let mut grpc_stop = stop_rx.clone();
    let grpc = tokio::spawn(
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .serve_with_incoming_shutdown(
                routes,
                tokio_stream::wrappers::ReceiverStream::new(incoming),
                async move {
                    let _ = grpc_stop.changed().await;
                },
            ),
    );
    let ops = tokio::spawn(http::serve(
        metrics_listener,
        shared.clone(),
        stop_rx.clone(),
    ));
    let web3signer = http_listener.map(|l| {
        tokio::spawn(crate::api::web3signer::serve(
            l,
            shared.clone() as Arc<dyn crate::api::web3signer::Host>,
            http_tls,
            stop_rx,
        ))
    });

    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let http = http_addr.map(|a| format!(" http={a}")).unwrap_or_default();
        writeln!(out, "ready grpc={grpc_addr} metrics={metrics_addr}{http}")?;
        out.flush()?;
    }
    tracing::info!(grpc = %grpc_addr, metrics = %metrics_addr, http = ?http_addr, workers, "ready");

    let signals = wait_for_signals(shared.clone()).await;
    shared.stopping.store(true, Ordering::Relaxed);
    shared
        .health
        .set_not_serving::<proto::v1::signer_server::SignerServer<SignerService>>()
        .await;
    let _ = stop_tx.send(true);
    // tonic stops accepting and waits for in-flight calls to be answered.
    match tokio::time::timeout(Duration::from_secs(30), grpc).await {
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "gRPC server error"),
        Err(_) => tracing::warn!("in-flight calls did not finish within 30 s"),
        _ => {}
    }
    ops.abort();
    if let Some(w) = web3signer {
        // The accept loop has stopped; connections finish on the runtime.
        let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
    }
    signals
}

/// The Web3Signer frontend's narrow view of the daemon.
impl crate::api::web3signer::Host for Shared {
    fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    fn pool(&self) -> &Pool {
        Shared::pool(self)
    }

    fn max_wait(&self) -> Duration {
        Shared::max_wait(self)
    }

    fn http_tls(&self) -> Option<&ReloadableConfig> {
        Shared::http_tls(self)
    }

    fn readiness(&self) -> Vec<(&'static str, Result<(), String>)> {
        Shared::readiness(self)
    }

    fn start_key_reload(self: Arc<Self>, client: &str) -> bool {
        Shared::start_key_reload(&self, client)
    }

    fn key_reload_status(&self) -> serde_json::Value {
        Shared::key_reload_status(self)
    }
}
