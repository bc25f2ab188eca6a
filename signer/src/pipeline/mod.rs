//! The signing pipeline every frontend calls: authorize → compute what is
//! signed → slashing check and durable record → sign → audit → answer.
//!
//! Record before sign: nothing reaches a key until the slashing database has
//! committed the decision. Every refusal is a [`Refusal`] variant, mapped to
//! the wire by each frontend in one place. Calls block (the database and the
//! crypto are synchronous): frontends run them on a worker pool, never on an
//! async runtime's threads.
//!
//! The unit of work is a batch ([`Pipeline::sign_batch`]): every slashable
//! item of a batch is decided in one database call (one transaction, one
//! commit), and every audit record is appended before the answer; the audit
//! log's fsync is a flusher's, off the signing path (decision 0004). A single
//! request is a batch of one; the daemon's workers also batch single requests
//! that queue up together.

//!
//! One concept per file: [`request`] (what frontends send and get back),
//! [`refusal`] (why not, and what a client is told), [`keyring`], `rate`
//! (per-client limits), `prepare` (decode, authorize, compute what is
//! signed), `finish` (sign once decided); this file runs a batch through
//! them.

mod commit_boost;
mod finish;
mod keyring;
pub mod lifecycle;
mod prepare;
mod rate;
mod refusal;
mod request;

use std::sync::{Arc, RwLock};
use std::time::Instant;

use slashing_db::{Decision, SlashingDb};

pub use commit_boost::{CommitBoost, CommitBoostAsk, CommitBoostWhat, Module as CommitBoostModule};
pub use keyring::Keyring;
pub use refusal::{OutOfScope, Refusal, Unavailable};
pub use request::{KeyId, KeyInfo, Message, Outcome, Request, Scope, Signature};

use crate::audit::{AuditLog, AuditSink, Entry};
use crate::eth2::Network;
use crate::metrics::Metrics;
use crate::policy::{ClientId, Operation, Policy};
use crate::tls::identity::{self, IdentityError, PeerIdentity};
use prepare::{Prepared, applies_to};
use rate::RateLimiter;

/// A value replaced as a whole (policy, keys): readers take a snapshot that
/// stays valid while a reload swaps in the next one.
#[derive(Debug)]
struct Swap<T>(RwLock<Arc<T>>);

impl<T> Swap<T> {
    fn new(v: T) -> Self {
        Self(RwLock::new(Arc::new(v)))
    }

    fn load(&self) -> Arc<T> {
        match self.0.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn store(&self, v: T) {
        let v = Arc::new(v);
        match self.0.write() {
            Ok(mut slot) => *slot = v,
            Err(poisoned) => *poisoned.into_inner() = v,
        }
    }
}

/// The pipeline's state.
#[derive(Debug)]
pub struct Pipeline {
    policy: Swap<Policy>,
    keys: Swap<Keyring>,
    db: Arc<SlashingDb>,
    audit: AuditSink,
    network: Network,
    metrics: Arc<Metrics>,
    rate: RateLimiter,
    key_states: Swap<lifecycle::KeyStates>,
    commit_boost: Option<CommitBoost>,
}

impl Pipeline {
    /// Assembles a pipeline (with its own metrics; see [`Pipeline::with_metrics`]).
    pub fn new(
        policy: Policy,
        keys: Keyring,
        db: SlashingDb,
        audit: AuditLog,
        network: Network,
    ) -> Result<Self, crate::audit::AuditError> {
        Ok(Self {
            policy: Swap::new(policy),
            keys: Swap::new(keys),
            db: Arc::new(db),
            audit: AuditSink::new(audit)?,
            network,
            metrics: Arc::new(Metrics::new()),
            rate: RateLimiter::default(),
            key_states: Swap::new(Default::default()),
            commit_boost: None,
        })
    }

    /// Makes audit records durable every `interval` (`[audit]
    /// flush_interval_ms`; default 5 ms).
    pub fn with_audit_flush_interval(self, interval: std::time::Duration) -> Self {
        self.audit.set_flush_interval(interval);
        self
    }

    /// Reports into `metrics` instead.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Keeps the audit log's anchor in the slashing database under `name`,
    /// starting from `anchored` (what the start-up check accepted), and
    /// watches the log file (decision 0008).
    pub fn with_audit_anchor(
        self,
        name: String,
        anchored: Option<slashing_db::AuditAnchor>,
    ) -> Result<Self, crate::audit::AuditError> {
        self.audit.anchor(self.db.clone(), name, anchored)?;
        Ok(self)
    }

    /// Audit records written, and how many the slashing database anchors.
    pub fn audit_positions(&self) -> (u64, Option<u64>) {
        self.audit.positions()
    }

    /// `Err` while the audit log cannot take records (readiness).
    pub fn audit_health(&self) -> Result<(), String> {
        self.audit.health()
    }

    /// The metrics this pipeline reports into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The slashing database.
    pub fn db(&self) -> &SlashingDb {
        &self.db
    }

    /// The loaded keys.
    pub fn keys(&self) -> Arc<Keyring> {
        self.keys.load()
    }

    /// Replaces the loaded keys (a reload). Batches already running finish
    /// with the keys they started with; the old keys are dropped (and
    /// zeroized) when the last of them ends.
    pub fn set_keys(&self, keys: Keyring) {
        self.keys.store(keys);
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load()
    }

    /// Replaces the policy (after it loaded and linted cleanly).
    pub fn set_policy(&self, policy: Policy) {
        self.policy.store(policy);
    }

    /// The policy client a verified certificate belongs to, under the policy in force.
    pub fn identify(&self, peer: &PeerIdentity) -> Result<ClientId, IdentityError> {
        identity::resolve(&self.policy(), peer).map(|c| ClientId::new(c.name.clone()))
    }

    /// The keys `client` may use, with what for.
    pub fn list_keys(&self, client: &ClientId) -> Vec<KeyInfo> {
        let policy = self.policy();
        let keys = self.keys();
        let mut out: Vec<KeyInfo> = keys
            .entries()
            .filter_map(|(public_key, k)| {
                // What the policy grants and the key's scheme can do (a
                // grant may name operations for several schemes).
                let scheme = k.scheme();
                let operations: Vec<Operation> = policy
                    .granted_operations(client.as_str(), public_key)
                    .into_iter()
                    .filter(|op| applies_to(*op, scheme))
                    .collect();
                (!operations.is_empty()).then(|| KeyInfo {
                    public_key: public_key.to_vec(),
                    scheme: k.scheme().key_type(),
                    operations,
                })
            })
            .collect();
        out.sort_by(|a, b| a.public_key.cmp(&b.public_key));
        out
    }

    /// Signs one item.
    pub fn sign(&self, frontend: &'static str, request: Request) -> Outcome {
        self.sign_batch(frontend, vec![request])
            .pop()
            .unwrap_or_else(|| {
                Err(Refusal::BackendUnavailable(Unavailable::Internal(
                    "no answer",
                )))
            })
    }

    /// Signs a batch: one answer per request, in order. Every slashable item
    /// is decided in one database call before any key is used; the audit
    /// records of the whole batch are durable before anything is answered.
    pub fn sign_batch(&self, frontend: &'static str, requests: Vec<Request>) -> Vec<Outcome> {
        let policy = self.policy();
        let keys = self.keys();
        let mut proposals = Vec::new();
        let prepared: Vec<Prepared<'_>> = requests
            .iter()
            .map(|r| self.prepare(&keys, &policy, r, &mut proposals))
            .collect();

        // Record before sign.
        let n = proposals.len();
        let mut decisions: Vec<Option<Decision>> = Vec::new();
        let mut db_failure = None;
        if n > 0 {
            let started = Instant::now();
            match self.db.check_and_record_batch(proposals) {
                Ok(d) => decisions = d.into_iter().map(Some).collect(),
                Err(e) => db_failure = Some(Arc::new(e)),
            }
            let took = started.elapsed();
            self.metrics.db_batch_size.observe(n as f64);
            for _ in 0..n {
                self.metrics.stage("slashing_db", took);
            }
        }

        let outcomes = self.finish_all(&prepared, decisions, db_failure.as_ref());

        let entries = prepared
            .iter()
            .zip(&requests)
            .zip(&outcomes)
            .map(|((p, r), o)| Entry {
                // Which grant was missing (or which deny matched), for the auditor.
                note: match (commit_boost::ask_of(&r.message), o) {
                    (Some(ask), o) => Some(ask.note(o)),
                    (None, Err(Refusal::NotAllowed(v))) => Some(v.to_string()),
                    (None, Err(Refusal::PolicyViolation(v))) => Some(v.to_string()),
                    _ => None,
                },
                client: r.client.to_string(),
                frontend: Some(frontend.to_owned()),
                key: hex::encode(&r.public_key),
                request: p.request.to_owned(),
                position: p.position,
                outcome: match o {
                    Ok(_) => "signed".to_owned(),
                    Err(Refusal::Slashable(n)) => format!("refused:{}", n.reason()),
                    Err(r) => format!("refused:{}", r.reason()),
                },
            })
            .collect();
        let started = Instant::now();
        let audited = self.audit.write(entries);
        let took = started.elapsed();
        for _ in 0..prepared.len() {
            self.metrics.stage("audit", took);
        }
        let outcomes: Vec<Outcome> = match audited {
            Ok(()) => outcomes,
            // Without the audit record, nothing is answered.
            Err(e) => {
                self.metrics.audit_failures.inc();
                outcomes
                    .into_iter()
                    .map(|_| Err(Refusal::BackendUnavailable(Unavailable::Audit(e.clone()))))
                    .collect()
            }
        };
        for (p, o) in prepared.iter().zip(&outcomes) {
            let outcome = match o {
                Ok(_) => "signed",
                Err(r) => r.reason(),
            };
            self.metrics.request(frontend, p.request, outcome);
        }
        outcomes
    }
}
