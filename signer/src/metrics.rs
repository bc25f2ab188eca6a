//! Prometheus metrics, served on the metrics listener at `/metrics`.
//!
//! Names (all prefixed `signer_`):
//! - `requests_total{frontend,operation,outcome}`: every answered item;
//!   outcome is `signed` or a refusal reason (`slashable`, `not_allowed`,
//!   `unknown_key`, `invalid_request`, `out_of_scope`, `backend_unavailable`,
//!   `rate_limited`, `overloaded`, `key_disabled`; and for the Commit-Boost
//!   API, `unauthorized`: a bad module token, `operation="commit_boost.auth"`).
//! - `stage_seconds{stage}`: per-request time in `queue`, `decode`, `policy`,
//!   `slashing_db`, `backend`, `audit`, and `total` (from arrival to answer).
//!   An item of a batch is observed with the batch's database and audit time:
//!   that is how long it waited for them.
//! - `queue_depth`: items waiting for a worker.
//! - `db_batch_size`: items decided per slashing-database call.
//! - `db_commits`: transactions the slashing database committed (each one fsync).
//! - `tls_handshake_failures_total{reason}`, `connections_total`.
//! - `build_info{version,commit}` (always 1).
//! - `audit_write_failures_total`; `audit_records` (records in the audit
//!   log) and `audit_anchored_records` (how many of them the slashing
//!   database anchors; it trails by about a second — a growing gap means
//!   the anchor cannot be stored, decision 0008).
//! - `commit_boost_proxies`: Commit-Boost proxy keys held (all modules).
//! - `certificate_expiry_timestamp_seconds{certificate}`: notAfter of the
//!   server certificate and of each client CA.
//! - `reloads_total{what,result}`, `keys_loaded{scheme}`, `ready` (1 or 0;
//!   the readiness checks run at every scrape, so it is current without
//!   /readyz probes).
//! - `db_durability{level}`: 1 for the slashing database's durability at the
//!   last readiness probe — `file` (SQLite, fsync per commit), `local`
//!   (PostgreSQL, the primary's disk only), `synchronous` (a standby
//!   acknowledges every commit), `unavailable`.
//! - `backend_up{backend,name}`: 1 while an HSM token (or KMS endpoint)
//!   answers, 0 after a failure until an operation succeeds again;
//!   `backend_operations_total{backend,name,outcome}` (`ok`, `error`,
//!   `timeout`, `retried`, `skipped`) and `backend_seconds{backend,name}`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels as (name, value) pairs.
pub type Labels = Vec<(&'static str, String)>;

fn latency_histogram() -> Histogram {
    // 10 µs … ~10 s, factor 2: BLS signing is ~0.4 ms, an fsync 0.1–10 ms.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1e-5, 2.0, 21,
    ))
}

fn batch_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1.0, 2.0, 14,
    ))
}

/// Every metric the signer exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Answered items.
    pub requests: Family<Labels, Counter>,
    /// Per-stage latency.
    pub stages: Family<Labels, Histogram, fn() -> Histogram>,
    /// Items waiting for a worker.
    pub queue_depth: Gauge,
    /// Items per slashing-database call.
    pub db_batch_size: Histogram,
    /// Committed slashing-database transactions (set at scrape time).
    pub db_commits: Gauge,
    /// Failed TLS handshakes by reason.
    pub tls_failures: Family<Labels, Counter>,
    /// Accepted TLS connections.
    pub connections: Counter,
    /// Audit records that could not be written (their requests refused).
    pub audit_failures: Counter,
    /// Records in the audit log (set at scrape).
    pub audit_records: Gauge,
    /// Records the slashing database anchors (set at scrape).
    pub audit_anchored: Gauge,
    /// `commit_boost_proxies`: Commit-Boost proxy keys held.
    pub commit_boost_proxies: Gauge,
    /// Certificate notAfter times.
    pub cert_expiry: Family<Labels, Gauge<f64, AtomicU64>>,
    /// Reloads by what and result.
    pub reloads: Family<Labels, Counter>,
    /// Loaded keys by scheme.
    pub keys_loaded: Family<Labels, Gauge>,
    /// 1 when ready.
    pub ready: Gauge,
    /// 1 for the slashing database's durability level now (set by readiness).
    pub db_durability: Family<Labels, Gauge>,
    /// CometBFT node connections: 1 connected, 0 not.
    pub privval_connected: Family<Labels, Gauge>,
    /// CometBFT node connections that failed or were refused.
    pub privval_failures: Family<Labels, Counter>,
    /// Backend targets (HSM tokens, KMS endpoints): 1 up, 0 down.
    pub backend_up: Family<Labels, Gauge>,
    /// Backend operations by outcome.
    pub backend_operations: Family<Labels, Counter>,
    /// Backend operation latency.
    pub backend_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// The stage histograms, resolved once: observing one is then a lookup
    /// in a short list, not a label allocation and a map lock per request.
    stage_handles: Vec<(&'static str, Histogram)>,
}

/// The stages a request passes through. `queue` is the worker pool's (not
/// privval's: it signs on the node connection's thread); `reply` is
/// privval's answer on the wire (encoding, encryption, the send), after
/// `total`.
pub const STAGES: [&str; 8] = [
    "queue",
    "decode",
    "policy",
    "slashing_db",
    "backend",
    "audit",
    "total",
    "reply",
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("signer");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "Answered signing requests by frontend, operation and outcome",
            requests.clone(),
        );
        let stages: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "stage_seconds",
            "Time per request in each pipeline stage",
            stages.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Items waiting for a signing worker",
            queue_depth.clone(),
        );
        let db_batch_size = batch_histogram();
        registry.register(
            "db_batch_size",
            "Items decided per slashing-database call",
            db_batch_size.clone(),
        );
        let db_commits = Gauge::default();
        registry.register(
            "db_commits",
            "Transactions committed by the slashing database since start (one fsync each)",
            db_commits.clone(),
        );
        let tls_failures = Family::<Labels, Counter>::default();
        registry.register(
            "tls_handshake_failures",
            "Refused or failed TLS handshakes by reason",
            tls_failures.clone(),
        );
        let connections = Counter::default();
        registry.register(
            "connections",
            "Accepted mutual-TLS connections",
            connections.clone(),
        );
        let audit_failures = Counter::default();
        registry.register(
            "audit_write_failures",
            "Batches whose audit records could not be written (every request in them refused)",
            audit_failures.clone(),
        );
        let audit_records = Gauge::default();
        registry.register(
            "audit_records",
            "Records in the audit log",
            audit_records.clone(),
        );
        let audit_anchored = Gauge::default();
        registry.register(
            "audit_anchored_records",
            "Records of the audit log the slashing database anchors (trails by about a second)",
            audit_anchored.clone(),
        );
        let commit_boost_proxies = Gauge::default();
        registry.register(
            "commit_boost_proxies",
            "Commit-Boost proxy keys held (all modules)",
            commit_boost_proxies.clone(),
        );
        let build_info = Family::<Labels, Gauge>::default();
        registry.register(
            "build_info",
            "Always 1; the labels say which release and commit runs",
            build_info.clone(),
        );
        build_info
            .get_or_create(&vec![
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
                ("commit", crate::COMMIT.to_owned()),
            ])
            .set(1);
        let cert_expiry = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the server certificate and the client CAs (Unix time)",
            cert_expiry.clone(),
        );
        let reloads = Family::<Labels, Counter>::default();
        registry.register(
            "reloads",
            "Reloads of TLS material and policy by result",
            reloads.clone(),
        );
        let keys_loaded = Family::<Labels, Gauge>::default();
        registry.register("keys_loaded", "Loaded keys by scheme", keys_loaded.clone());
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when the database is writable and every backend answers",
            ready.clone(),
        );
        let db_durability = Family::<Labels, Gauge>::default();
        registry.register(
            "db_durability",
            "1 for the slashing database's durability level at the last readiness probe",
            db_durability.clone(),
        );
        let privval_connected = Family::<Labels, Gauge>::default();
        registry.register(
            "privval_connected",
            "CometBFT node connections by chain and node: 1 connected, 0 not",
            privval_connected.clone(),
        );
        let privval_failures = Family::<Labels, Counter>::default();
        registry.register(
            "privval_connection_failures",
            "CometBFT node connections that failed, were refused or dropped",
            privval_failures.clone(),
        );
        let backend_up = Family::<Labels, Gauge>::default();
        registry.register(
            "backend_up",
            "HSM tokens and KMS endpoints: 1 answering, 0 failed until an operation succeeds",
            backend_up.clone(),
        );
        let backend_operations = Family::<Labels, Counter>::default();
        registry.register(
            "backend_operations",
            "Backend operations by target and outcome (ok, error, timeout, retried, skipped)",
            backend_operations.clone(),
        );
        let backend_seconds: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "backend_seconds",
            "Backend operation latency by target",
            backend_seconds.clone(),
        );
        let stage_handles = STAGES
            .iter()
            .map(|&name| {
                let h = stages
                    .get_or_create(&vec![("stage", name.to_owned())])
                    .clone();
                (name, h)
            })
            .collect();
        Self {
            backend_up,
            backend_operations,
            backend_seconds,
            privval_connected,
            privval_failures,
            stage_handles,
            registry,
            requests,
            stages,
            queue_depth,
            db_batch_size,
            db_commits,
            tls_failures,
            connections,
            audit_failures,
            audit_records,
            audit_anchored,
            commit_boost_proxies,
            cert_expiry,
            reloads,
            keys_loaded,
            ready,
            db_durability,
        }
    }

    /// Observes `d` in `stage`.
    pub fn stage(&self, stage: &'static str, d: Duration) {
        match self.stage_handles.iter().find(|(name, _)| *name == stage) {
            Some((_, h)) => h.observe(d.as_secs_f64()),
            None => self
                .stages
                .get_or_create(&vec![("stage", stage.to_owned())])
                .observe(d.as_secs_f64()),
        }
    }

    /// Counts one answered item.
    pub fn request(&self, frontend: &'static str, operation: &str, outcome: &str) {
        self.requests
            .get_or_create(&vec![
                ("frontend", frontend.to_owned()),
                ("operation", operation.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    /// Counts a reload.
    pub fn reload(&self, what: &'static str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads
            .get_or_create(&vec![
                ("what", what.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
