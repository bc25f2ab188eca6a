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

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use prost::Message as _;
use slashing_db::{
    AttestationProposal, BlockProposal, BlsPublicKey, ChainId, CometProposal, ConsensusKey,
    Decision, Epoch, GenesisRoot, NotSafe, Proposal, Safe, SigningRoot, SlashingDb, Slot,
};

use crate::audit::{AuditLog, Entry};
use crate::backend::{BackendError, Key, Scheme};
use crate::cometbft::{self, ProtocolVersion, Timestamp, Vote};
use crate::crypto::bls::BlsSecretKey;
use crate::eth2::{self, Network, RequestKind, SlashingFacts};
use crate::metrics::Metrics;
use crate::policy::{self, Operation, Policy, Verdict};
use crate::tls::identity::{self, IdentityError, PeerIdentity};

/// Why a request was not signed. Frontends map these to their wire codes.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Signing could be slashable; the stored record that conflicts is the evidence.
    #[error("slashable: {0}")]
    Slashable(NotSafe),
    /// The policy does not allow this client this operation on this key and network.
    #[error("not allowed by policy ({0:?})")]
    NotAllowed(Verdict),
    /// No key with this public key is loaded.
    #[error("unknown key")]
    UnknownKey,
    /// The request is malformed, or its signing root is not the message's.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The slashing database, a key backend or the audit log failed; nothing was signed.
    #[error("backend unavailable: {0}")]
    BackendUnavailable(String),
    /// The client is over its policy's `max_requests_per_second`.
    #[error("over this client's rate limit of {0} requests/s")]
    RateLimited(u32),
}

impl Refusal {
    /// The stable name used in metrics and audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Slashable(_) => "slashable",
            Self::NotAllowed(_) => "not_allowed",
            Self::UnknownKey => "unknown_key",
            Self::InvalidRequest(_) => "invalid_request",
            Self::BackendUnavailable(_) => "backend_unavailable",
            Self::RateLimited(_) => "rate_limited",
        }
    }

    /// What a client is told, for every frontend: the refusal without the
    /// daemon's internals. A backend failure's detail (database address,
    /// file path, PKCS#11 function, PIN source, KMS error) goes to the log
    /// here and never to the caller, who learns only that nothing was
    /// signed and to retry.
    pub fn client_message(&self) -> String {
        match self {
            Self::BackendUnavailable(detail) => {
                tracing::warn!(%detail, "request refused: backend unavailable");
                "backend unavailable: nothing was signed; retry later or on another signer".into()
            }
            other => other.to_string(),
        }
    }
}

/// A signature, and for CometBFT the timestamp to send back (the stored
/// one when an earlier message at this position is re-served).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// A BLS signature (Ethereum).
    Bls([u8; 96]),
    /// A CometBFT vote or proposal signature.
    CometBft {
        /// Signature over the sign bytes.
        signature: Vec<u8>,
        /// The timestamp that was signed (send it back in the vote/proposal).
        timestamp: Timestamp,
        /// Signature over the vote extension, when one was signed.
        extension_signature: Option<Vec<u8>>,
    },
    /// A raw signature: Ed25519 (64 bytes) or secp256k1 (r ‖ s, low-S).
    Raw {
        /// The signature.
        signature: Vec<u8>,
        /// secp256k1 over a digest: the recovery id.
        recovery_id: Option<u8>,
    },
}

impl Signature {
    /// The signature bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Bls(s) => s,
            Self::CometBft { signature, .. } | Self::Raw { signature, .. } => signature,
        }
    }
}

/// What one item of a batch asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A Web3Signer eth2 signing request body (JSON).
    Eth2(Vec<u8>),
    /// A CometBFT vote.
    CometVote {
        /// The chain's protocol generation (vote extensions from v0.38).
        version: ProtocolVersion,
        /// Chain id.
        chain_id: String,
        /// The vote.
        vote: Vote,
        /// Sign the vote extension where the protocol has one (a node may
        /// ask to skip it; a chain may not use extensions).
        sign_extension: bool,
    },
    /// A CometBFT proposal.
    CometProposal {
        /// Chain id.
        chain_id: String,
        /// The proposal.
        proposal: cometbft::Proposal,
    },
    /// CometBFT v1 `SignBytes`: arbitrary bytes with a consensus key.
    CometRaw(Vec<u8>),
    /// ECDSA over a 32-byte digest.
    RawSecp256k1(Vec<u8>),
    /// Pure Ed25519 over a message.
    RawEd25519(Vec<u8>),
    /// A request the frontend could not read: refused as `INVALID_REQUEST`
    /// and audited under `request` like every other decision.
    Invalid {
        /// What it looked like (`eth2.request`, `cometbft.vote`, …).
        request: &'static str,
        /// Why it was refused.
        reason: String,
    },
}

/// One item: who asks, with which key, for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The client's policy name.
    pub client: String,
    /// The key's public key bytes.
    pub public_key: Vec<u8>,
    /// The message.
    pub message: Message,
}

/// The answer to one item.
pub type Outcome = Result<Signature, Refusal>;

/// A key as `ListKeys` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Public key bytes.
    pub public_key: Vec<u8>,
    /// `bls`, `ed25519`, `secp256k1`.
    pub scheme: &'static str,
    /// What the caller may do with it.
    pub operations: Vec<Operation>,
}

/// Public key bytes → key.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: HashMap<Vec<u8>, Key>,
}

impl Keyring {
    /// Adds a key (a second copy of the same key replaces the first).
    pub fn insert(&mut self, key: impl Into<Key>) {
        let key = key.into();
        self.keys.insert(key.public_key(), key);
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is loaded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds many keys, deriving their public keys on every core (a BLS
    /// public key costs ~60 µs: 100,000 keys would take 6 s on one).
    pub fn extend(&mut self, keys: Vec<Key>) {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = keys.len().div_ceil(threads).max(1);
        let derived: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = keys
                .chunks(chunk)
                .map(|c| s.spawn(move || c.iter().map(Key::public_key).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        if derived.len() != keys.len() {
            // A deriving thread died: fall back to one at a time.
            for key in keys {
                self.insert(key);
            }
            return;
        }
        self.keys.extend(derived.into_iter().zip(keys));
    }

    /// Every key.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.values()
    }

    /// Every key with its public key (computed once, at load).
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &Key)> {
        self.keys.iter().map(|(pk, k)| (pk.as_slice(), k))
    }

    /// True when a key with this public key is loaded.
    pub fn contains(&self, public_key: &[u8]) -> bool {
        self.keys.contains_key(public_key)
    }

    fn get(&self, public_key: &[u8]) -> Result<&Key, Refusal> {
        self.keys.get(public_key).ok_or(Refusal::UnknownKey)
    }
}

/// How often appended audit records are made durable.
const AUDIT_FLUSH_INTERVAL: Duration = Duration::from_millis(5);

/// The audit log, shared by the workers. Records are appended (one
/// `write(2)` each) before a request is answered, so a process crash loses
/// none; a flusher thread makes them durable with one `fdatasync` every
/// [`AUDIT_FLUSH_INTERVAL`], off the signing path. Only a power loss can
/// lose the last few milliseconds of records — never a slashing decision,
/// which the database made durable before signing. See
/// `docs/decisions/0004-audit-fsync-off-the-signing-path.md`.
#[derive(Debug)]
struct AuditSink {
    log: Mutex<AuditLog>,
    flush: Arc<AuditFlush>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Debug)]
struct AuditFlush {
    file: File,
    appended: AtomicU64,
    synced: AtomicU64,
    stop: AtomicBool,
    /// The first fsync error; after one, every request is refused.
    failed: Mutex<Option<String>>,
    wake: (Mutex<()>, Condvar),
}

impl AuditFlush {
    fn sync(&self) {
        let target = self.appended.load(Ordering::Acquire);
        if self.synced.load(Ordering::Acquire) >= target {
            return;
        }
        match self.file.sync_data() {
            Ok(()) => self.synced.store(target, Ordering::Release),
            Err(e) => {
                if let Ok(mut f) = self.failed.lock() {
                    f.get_or_insert_with(|| format!("audit log fsync: {e}"));
                }
            }
        }
    }
}

impl AuditSink {
    fn new(log: AuditLog) -> Result<Self, crate::audit::AuditError> {
        let n = log.records();
        let flush = Arc::new(AuditFlush {
            file: log.sync_handle()?,
            appended: AtomicU64::new(n),
            synced: AtomicU64::new(n),
            stop: AtomicBool::new(false),
            failed: Mutex::new(None),
            wake: (Mutex::new(()), Condvar::new()),
        });
        let f = flush.clone();
        let flusher = std::thread::Builder::new()
            .name("signer-audit-flush".into())
            .spawn(move || {
                while !f.stop.load(Ordering::Acquire) {
                    if let Ok(g) = f.wake.0.lock() {
                        let _ = f.wake.1.wait_timeout(g, AUDIT_FLUSH_INTERVAL);
                    }
                    f.sync();
                }
            })
            .map_err(|e| crate::audit::AuditError::Io {
                path: "audit flusher thread".into(),
                source: e,
            })?;
        Ok(Self {
            log: Mutex::new(log),
            flush,
            flusher: Mutex::new(Some(flusher)),
        })
    }

    fn write(&self, entries: Vec<Entry>) -> Result<(), String> {
        if let Some(e) = self.flush.failed.lock().ok().and_then(|f| f.clone()) {
            return Err(e);
        }
        let mut log = self.log.lock().map_err(|_| "audit log lock poisoned")?;
        for e in entries {
            log.append(e).map_err(|e| e.to_string())?;
        }
        self.flush.appended.store(log.records(), Ordering::Release);
        Ok(())
    }
}

impl Drop for AuditSink {
    fn drop(&mut self) {
        self.flush.stop.store(true, Ordering::Release);
        self.flush.wake.1.notify_all();
        if let Some(t) = self.flusher.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
        // Whatever the flusher had not reached.
        self.flush.sync();
    }
}

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
    db: SlashingDb,
    audit: AuditSink,
    network: Network,
    metrics: Arc<Metrics>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// A client's token bucket: `rate` tokens per second, at most `rate` saved.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The audit name of a message before it is decoded.
fn request_name(m: &Message) -> &'static str {
    match m {
        Message::Eth2(_) => "eth2.request",
        Message::CometVote { .. } => Operation::CometVote.name(),
        Message::CometProposal { .. } => Operation::CometProposal.name(),
        Message::CometRaw(_) => Operation::CometRaw.name(),
        Message::RawSecp256k1(_) => Operation::RawSecp256k1.name(),
        Message::RawEd25519(_) => Operation::RawEd25519.name(),
        Message::Invalid { request, .. } => request,
    }
}

fn operation_of(kind: RequestKind) -> Operation {
    match kind {
        RequestKind::Block | RequestKind::BlockV2(_) => Operation::Eth2Block,
        RequestKind::Attestation => Operation::Eth2Attestation,
        RequestKind::AggregationSlot => Operation::Eth2AggregationSlot,
        RequestKind::AggregateAndProof | RequestKind::AggregateAndProofV2(_) => {
            Operation::Eth2AggregateAndProof
        }
        RequestKind::Deposit => Operation::Eth2Deposit,
        RequestKind::RandaoReveal => Operation::Eth2RandaoReveal,
        RequestKind::VoluntaryExit => Operation::Eth2VoluntaryExit,
        RequestKind::SyncCommitteeMessage => Operation::Eth2SyncCommitteeMessage,
        RequestKind::SyncCommitteeSelectionProof => Operation::Eth2SyncCommitteeSelectionProof,
        RequestKind::SyncCommitteeContributionAndProof => Operation::Eth2SyncCommitteeContribution,
        RequestKind::ValidatorRegistration => Operation::Eth2ValidatorRegistration,
    }
}

/// How a prepared item is signed once the database has decided.
enum Plan<'a> {
    Bls {
        key: &'a BlsSecretKey,
        root: [u8; 32],
        /// Index of its proposal in the batch's database call, if slashable.
        db: Option<usize>,
    },
    Comet {
        key: &'a Key,
        operation: Operation,
        consensus_key: ConsensusKey,
        chain: ChainId,
        asked: Vec<u8>,
        extension: Option<Vec<u8>>,
        db: usize,
    },
    Raw {
        key: &'a Key,
        payload: Raw,
    },
}

enum Raw {
    /// CometBFT `SignBytes`: signed like consensus messages.
    Comet(Vec<u8>),
    Digest([u8; 32]),
    Ed25519(Vec<u8>),
}

/// Most remote signatures of one batch waited for at once.
const REMOTE_LANES: usize = 16;

/// An item after decoding and authorization, before the database.
struct Prepared<'a> {
    /// The audit record's request name.
    request: &'static str,
    /// Slot, target epoch or height.
    position: Option<u64>,
    plan: Result<Plan<'a>, Refusal>,
}

/// True when a key of `scheme` can perform `op`.
fn applies_to(op: Operation, scheme: Scheme) -> bool {
    match op {
        Operation::CometVote | Operation::CometProposal | Operation::CometRaw => {
            matches!(scheme, Scheme::Ed25519 | Scheme::Secp256k1)
        }
        Operation::RawSecp256k1 => scheme == Scheme::Secp256k1,
        Operation::RawEd25519 => scheme == Scheme::Ed25519,
        Operation::Eth2Block
        | Operation::Eth2Attestation
        | Operation::Eth2AggregationSlot
        | Operation::Eth2AggregateAndProof
        | Operation::Eth2RandaoReveal
        | Operation::Eth2SyncCommitteeMessage
        | Operation::Eth2SyncCommitteeSelectionProof
        | Operation::Eth2SyncCommitteeContribution
        | Operation::Eth2ValidatorRegistration
        | Operation::Eth2VoluntaryExit
        | Operation::Eth2Deposit => scheme == Scheme::Bls,
    }
}

/// Signs with a consensus key as CometBFT verifies it.
fn comet_sign(key: &Key, msg: &[u8]) -> Result<Vec<u8>, Refusal> {
    key.sign_comet(msg).map_err(backend_refusal)
}

/// A backend failure as the client sees it: a key that cannot do this is
/// the request's fault; anything else is the backend's (details are logged).
fn backend_refusal(e: BackendError) -> Refusal {
    match e {
        BackendError::WrongScheme(why) => Refusal::InvalidRequest(why.into()),
        other => {
            tracing::warn!(error = %other, "backend could not sign");
            Refusal::BackendUnavailable(other.to_string())
        }
    }
}

impl Prepared<'_> {
    /// True when signing waits on a remote backend.
    fn is_remote(&self) -> bool {
        matches!(&self.plan, Ok(Plan::Comet { key, .. } | Plan::Raw { key, .. }) if key.remote().is_some())
    }
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
            db,
            audit: AuditSink::new(audit)?,
            network,
            metrics: Arc::new(Metrics::new()),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Reports into `metrics` instead.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
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
    pub fn identify(&self, peer: &PeerIdentity) -> Result<String, IdentityError> {
        identity::resolve(&self.policy(), peer).map(|c| c.name.clone())
    }

    /// The keys `client` may use, with what for.
    pub fn list_keys(&self, client: &str) -> Vec<KeyInfo> {
        let policy = self.policy();
        let keys = self.keys();
        let mut out: Vec<KeyInfo> = keys
            .entries()
            .filter_map(|(public_key, k)| {
                // What the policy grants and the key's scheme can do (a
                // grant may name operations for several schemes).
                let scheme = k.scheme();
                let operations: Vec<Operation> = policy
                    .granted_operations(client, public_key)
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
            .unwrap_or_else(|| Err(Refusal::BackendUnavailable("no answer".into())))
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
                Err(e) => db_failure = Some(e.to_string()),
            }
            let took = started.elapsed();
            self.metrics.db_batch_size.observe(n as f64);
            for _ in 0..n {
                self.metrics.stage("slashing_db", took);
            }
        }

        let outcomes = self.finish_all(&prepared, decisions, db_failure.as_deref());

        let entries = prepared
            .iter()
            .zip(&requests)
            .zip(&outcomes)
            .map(|((p, r), o)| Entry {
                client: r.client.clone(),
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
            Err(e) => outcomes
                .into_iter()
                .map(|_| Err(Refusal::BackendUnavailable(format!("audit log: {e}"))))
                .collect(),
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

    fn authorize(
        &self,
        policy: &Policy,
        client: &str,
        operation: Operation,
        key: &[u8],
        network: Option<&policy::Network>,
    ) -> Result<(), Refusal> {
        let started = Instant::now();
        let verdict = policy.decide(&policy::Request {
            client,
            operation,
            key,
            network,
        });
        self.metrics.stage("policy", started.elapsed());
        match verdict {
            Verdict::Allowed { .. } => Ok(()),
            other => Err(Refusal::NotAllowed(other)),
        }
    }

    /// Takes a token from the client's bucket, if its policy limits it.
    fn admit(&self, policy: &Policy, client: &str) -> Result<(), Refusal> {
        let Some(limit) = policy
            .client(client)
            .and_then(|c| c.max_requests_per_second)
        else {
            return Ok(());
        };
        let rate = f64::from(limit);
        let mut buckets = self
            .buckets
            .lock()
            .map_err(|_| Refusal::BackendUnavailable("rate limiter lock poisoned".into()))?;
        let now = Instant::now();
        let b = buckets.entry(client.to_owned()).or_insert(Bucket {
            tokens: rate,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Refusal::RateLimited(limit))
        }
    }

    fn prepare<'a>(
        &self,
        keys: &'a Keyring,
        policy: &Policy,
        r: &Request,
        proposals: &mut Vec<Proposal>,
    ) -> Prepared<'a> {
        if let Err(refusal) = self.admit(policy, &r.client) {
            return Prepared {
                request: request_name(&r.message),
                position: None,
                plan: Err(refusal),
            };
        }
        let started = Instant::now();
        match &r.message {
            Message::Eth2(body) => {
                let decoded = eth2::decode(body, &self.network);
                self.metrics.stage("decode", started.elapsed());
                match decoded {
                    // No trustworthy operation can be read from it: audited as `eth2.request`.
                    Err(e) => Prepared {
                        request: "eth2.request",
                        position: None,
                        plan: Err(Refusal::InvalidRequest(e.to_string())),
                    },
                    Ok(s) => {
                        let operation = operation_of(s.kind);
                        let position = match s.slashing {
                            SlashingFacts::Block { slot } => Some(slot),
                            SlashingFacts::Attestation { target, .. } => Some(target),
                            SlashingFacts::None => None,
                        };
                        Prepared {
                            request: operation.name(),
                            position,
                            plan: self.prepare_eth2(keys, policy, r, &s, operation, proposals),
                        }
                    }
                }
            }
            Message::CometVote {
                version,
                chain_id,
                vote,
                sign_extension,
            } => {
                let sign_bytes = cometbft::vote_sign_bytes(chain_id, vote).and_then(|b| {
                    cometbft::vote_extension_sign_bytes(*version, chain_id, vote)
                        .map(|e| (b, e.filter(|_| *sign_extension)))
                });
                self.metrics.stage("decode", started.elapsed());
                Prepared {
                    request: Operation::CometVote.name(),
                    position: u64::try_from(vote.height).ok(),
                    plan: sign_bytes
                        .map_err(|e| Refusal::InvalidRequest(e.to_string()))
                        .and_then(|(bytes, ext)| {
                            self.prepare_comet(
                                keys,
                                policy,
                                r,
                                Operation::CometVote,
                                chain_id,
                                bytes,
                                ext,
                                proposals,
                            )
                        }),
                }
            }
            Message::CometProposal { chain_id, proposal } => {
                let sign_bytes = cometbft::proposal_sign_bytes(chain_id, proposal);
                self.metrics.stage("decode", started.elapsed());
                Prepared {
                    request: Operation::CometProposal.name(),
                    position: u64::try_from(proposal.height).ok(),
                    plan: sign_bytes
                        .map_err(|e| Refusal::InvalidRequest(e.to_string()))
                        .and_then(|bytes| {
                            self.prepare_comet(
                                keys,
                                policy,
                                r,
                                Operation::CometProposal,
                                chain_id,
                                bytes,
                                None,
                                proposals,
                            )
                        }),
                }
            }
            Message::CometRaw(value) => Prepared {
                request: Operation::CometRaw.name(),
                position: None,
                plan: self
                    .authorize(policy, &r.client, Operation::CometRaw, &r.public_key, None)
                    .and_then(|()| keys.get(&r.public_key))
                    .and_then(|key| match key.scheme() {
                        Scheme::Bls => Err(Refusal::InvalidRequest(
                            "cometbft.raw needs an Ed25519 or secp256k1 key".into(),
                        )),
                        _ => Ok(Plan::Raw {
                            key,
                            payload: Raw::Comet(value.clone()),
                        }),
                    }),
            },
            Message::RawSecp256k1(digest) => Prepared {
                request: Operation::RawSecp256k1.name(),
                position: None,
                plan: <[u8; 32]>::try_from(digest.as_slice())
                    .map_err(|_| Refusal::InvalidRequest("a digest is 32 bytes".into()))
                    .and_then(|digest| {
                        self.authorize(
                            policy,
                            &r.client,
                            Operation::RawSecp256k1,
                            &r.public_key,
                            None,
                        )?;
                        match keys.get(&r.public_key)? {
                            key if key.scheme() == Scheme::Secp256k1 => Ok(Plan::Raw {
                                key,
                                payload: Raw::Digest(digest),
                            }),
                            _ => Err(Refusal::InvalidRequest("not a secp256k1 key".into())),
                        }
                    }),
            },
            Message::Invalid { request, reason } => Prepared {
                request,
                position: None,
                plan: Err(Refusal::InvalidRequest(reason.clone())),
            },
            Message::RawEd25519(message) => Prepared {
                request: Operation::RawEd25519.name(),
                position: None,
                plan: self
                    .authorize(
                        policy,
                        &r.client,
                        Operation::RawEd25519,
                        &r.public_key,
                        None,
                    )
                    .and_then(|()| match keys.get(&r.public_key)? {
                        key if key.scheme() == Scheme::Ed25519 => Ok(Plan::Raw {
                            key,
                            payload: Raw::Ed25519(message.clone()),
                        }),
                        _ => Err(Refusal::InvalidRequest("not an Ed25519 key".into())),
                    }),
            },
        }
    }

    fn prepare_eth2<'a>(
        &self,
        keys: &'a Keyring,
        policy: &Policy,
        r: &Request,
        s: &eth2::Signable,
        operation: Operation,
        proposals: &mut Vec<Proposal>,
    ) -> Result<Plan<'a>, Refusal> {
        let network = s
            .genesis_validators_root
            .map(|r| policy::Network::Ethereum(r.0));
        self.authorize(
            policy,
            &r.client,
            operation,
            &r.public_key,
            network.as_ref(),
        )?;
        let Some(key) = keys.get(&r.public_key)?.bls() else {
            return Err(Refusal::InvalidRequest("the key is not a BLS key".into()));
        };
        let validator = BlsPublicKey::from_slice(&r.public_key).ok_or(Refusal::UnknownKey)?;
        let proposal = match (s.slashing, s.genesis_validators_root) {
            (SlashingFacts::Block { slot }, Some(gvr)) => Some(Proposal::Block(BlockProposal {
                pubkey: validator,
                genesis_root: GenesisRoot(gvr.0),
                slot: Slot(slot),
                signing_root: SigningRoot(s.signing_root.0),
            })),
            (SlashingFacts::Attestation { source, target }, Some(gvr)) => {
                Some(Proposal::Attestation(AttestationProposal {
                    pubkey: validator,
                    genesis_root: GenesisRoot(gvr.0),
                    source: Epoch(source),
                    target: Epoch(target),
                    signing_root: SigningRoot(s.signing_root.0),
                }))
            }
            (SlashingFacts::None, _) => None,
            (_, None) => {
                return Err(Refusal::InvalidRequest(
                    "slashable message without fork_info".into(),
                ));
            }
        };
        let db = proposal.map(|p| {
            proposals.push(p);
            proposals.len() - 1
        });
        Ok(Plan::Bls {
            key,
            root: s.signing_root.0,
            db,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn prepare_comet<'a>(
        &self,
        keys: &'a Keyring,
        policy: &Policy,
        r: &Request,
        operation: Operation,
        chain_id: &str,
        bytes: Vec<u8>,
        extension: Option<Vec<u8>>,
        proposals: &mut Vec<Proposal>,
    ) -> Result<Plan<'a>, Refusal> {
        let network = policy::Network::CometBft(chain_id.to_owned());
        self.authorize(policy, &r.client, operation, &r.public_key, Some(&network))?;
        let key = keys.get(&r.public_key)?;
        if key.scheme() == Scheme::Bls {
            return Err(Refusal::InvalidRequest(
                "BLS keys do not sign CometBFT messages here".into(),
            ));
        }
        let consensus_key = ConsensusKey::new(r.public_key.clone()).ok_or(Refusal::UnknownKey)?;
        let chain = ChainId::new(chain_id)
            .ok_or_else(|| Refusal::InvalidRequest("chain id too long".into()))?;
        let proposal = CometProposal::from_sign_bytes(consensus_key.clone(), chain.clone(), bytes)
            .map_err(|e| Refusal::InvalidRequest(e.to_string()))?;
        let asked = proposal.sign_bytes().to_vec();
        proposals.push(Proposal::CometBft(proposal));
        Ok(Plan::Comet {
            key,
            operation,
            consensus_key,
            chain,
            asked,
            extension,
            db: proposals.len() - 1,
        })
    }

    /// Signs every prepared item. Items whose key is held by a remote
    /// backend (an HSM token, KMS) wait for it rather than compute: when a
    /// batch has several, they are signed on up to [`REMOTE_LANES`] threads
    /// at once, so one batch can keep every session of a token busy
    /// instead of queueing on one.
    fn finish_all(
        &self,
        prepared: &[Prepared<'_>],
        decisions: Vec<Option<Decision>>,
        db_failure: Option<&str>,
    ) -> Vec<Outcome> {
        let decisions = Mutex::new(decisions);
        let remote = prepared.iter().filter(|p| p.is_remote()).count();
        if remote < 2 {
            return prepared
                .iter()
                .map(|p| self.finish(p, &decisions, db_failure))
                .collect();
        }
        let lanes = remote.min(REMOTE_LANES);
        let mut outcomes: Vec<Option<Outcome>> = prepared.iter().map(|_| None).collect();
        std::thread::scope(|s| {
            let decisions = &decisions;
            let handles: Vec<_> = (1..lanes)
                .map(|lane| {
                    s.spawn(move || {
                        prepared
                            .iter()
                            .enumerate()
                            .skip(lane)
                            .step_by(lanes)
                            .map(|(i, p)| (i, self.finish(p, decisions, db_failure)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for (i, p) in prepared.iter().enumerate().step_by(lanes) {
                if let Some(o) = outcomes.get_mut(i) {
                    *o = Some(self.finish(p, decisions, db_failure));
                }
            }
            for h in handles {
                if let Ok(done) = h.join() {
                    for (i, o) in done {
                        if let Some(slot) = outcomes.get_mut(i) {
                            *slot = Some(o);
                        }
                    }
                }
            }
        });
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Err(Refusal::BackendUnavailable("signing lane failed".into())))
            })
            .collect()
    }

    /// Signs a prepared item after the database decided (or failed).
    fn finish(
        &self,
        p: &Prepared<'_>,
        decisions: &Mutex<Vec<Option<Decision>>>,
        db_failure: Option<&str>,
    ) -> Outcome {
        let plan = match &p.plan {
            Ok(plan) => plan,
            Err(r) => return Err(clone_refusal(r)),
        };
        let decision = |i: usize| -> Result<Safe, Refusal> {
            if let Some(e) = db_failure {
                return Err(Refusal::BackendUnavailable(format!(
                    "slashing database: {e}"
                )));
            }
            decisions
                .lock()
                .map_err(|_| Refusal::BackendUnavailable("decision list poisoned".into()))?
                .get_mut(i)
                .and_then(Option::take)
                .ok_or_else(|| {
                    Refusal::BackendUnavailable("slashing database gave no decision".into())
                })?
                .map_err(Refusal::Slashable)
        };
        match plan {
            Plan::Bls { key, root, db } => {
                if let Some(i) = db {
                    decision(*i)?;
                }
                let started = Instant::now();
                let signature = key.sign(root).to_bytes();
                self.metrics.stage("backend", started.elapsed());
                Ok(Signature::Bls(signature))
            }
            Plan::Comet {
                key,
                operation,
                consensus_key,
                chain,
                asked,
                extension,
                db,
            } => {
                let safe = decision(*db)?;
                let started = Instant::now();
                let (signed_bytes, signature) = match safe {
                    Safe::Reserve { stored, .. } => {
                        let sig = match stored.signature {
                            Some(s) => s,
                            None => comet_sign(key, &stored.sign_bytes)?,
                        };
                        (stored.sign_bytes, sig)
                    }
                    _ => (asked.clone(), comet_sign(key, asked)?),
                };
                let extension_signature =
                    extension.as_ref().map(|e| comet_sign(key, e)).transpose()?;
                self.metrics.stage("backend", started.elapsed());
                // Not needed for safety (re-signing the recorded bytes is the same message).
                let _ = self.db.record_cometbft_signature(
                    consensus_key.clone(),
                    chain.clone(),
                    signed_bytes.clone(),
                    signature.clone(),
                );
                let timestamp = signed_timestamp(*operation, &signed_bytes)?;
                Ok(Signature::CometBft {
                    signature,
                    timestamp,
                    extension_signature,
                })
            }
            Plan::Raw { key, payload } => {
                let started = Instant::now();
                let out = match (payload, key) {
                    (Raw::Comet(bytes), key) => Signature::Raw {
                        signature: comet_sign(key, bytes)?,
                        recovery_id: None,
                    },
                    (Raw::Digest(d), key) => {
                        let s = key.sign_secp256k1(d).map_err(backend_refusal)?;
                        Signature::Raw {
                            signature: s.rs.to_vec(),
                            recovery_id: Some(s.recovery_id),
                        }
                    }
                    (Raw::Ed25519(m), key) => Signature::Raw {
                        signature: key.sign_ed25519(m).map_err(backend_refusal)?.to_vec(),
                        recovery_id: None,
                    },
                };
                self.metrics.stage("backend", started.elapsed());
                Ok(out)
            }
        }
    }
}

/// Refusals of preparation are answered as they are; they own no resources.
fn clone_refusal(r: &Refusal) -> Refusal {
    match r {
        Refusal::Slashable(n) => Refusal::Slashable(n.clone()),
        Refusal::NotAllowed(v) => Refusal::NotAllowed(*v),
        Refusal::UnknownKey => Refusal::UnknownKey,
        Refusal::InvalidRequest(s) => Refusal::InvalidRequest(s.clone()),
        Refusal::BackendUnavailable(s) => Refusal::BackendUnavailable(s.clone()),
        Refusal::RateLimited(n) => Refusal::RateLimited(*n),
    }
}

/// The timestamp inside canonical vote or proposal sign bytes.
fn signed_timestamp(operation: Operation, bytes: &[u8]) -> Result<Timestamp, Refusal> {
    use tendermint_proto::v0_38::types::{CanonicalProposal, CanonicalVote};
    let bad = |e: prost::DecodeError| Refusal::InvalidRequest(e.to_string());
    let ts = if operation == Operation::CometProposal {
        CanonicalProposal::decode_length_delimited(bytes)
            .map_err(bad)?
            .timestamp
    } else {
        CanonicalVote::decode_length_delimited(bytes)
            .map_err(bad)?
            .timestamp
    };
    Ok(ts.map_or(Timestamp::GO_ZERO, |t| Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    }))
}
