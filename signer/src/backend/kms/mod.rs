//! AWS KMS (aws-sdk-kms): secp256k1 (`ECC_SECG_P256K1`, `ECDSA_SHA_256`) and
//! Ed25519 (`ECC_NIST_EDWARDS25519`, `ED25519_SHA_512` over the message,
//! `MessageType=RAW`) keys that never leave KMS, and BLS keys sealed with a
//! KMS symmetric key ([`seal`]).
//!
//! - secp256k1 signs the digest the signer computed (`MessageType=DIGEST`);
//!   a CometBFT message, signed as SHA-256 of its sign bytes, goes as RAW
//!   (KMS hashes it with SHA-256: the same signature, and the path moto
//!   implements faithfully).
//! - One SDK client on a small runtime of its own; the signing pipeline's
//!   threads hand it calls and wait no longer than the operation timeout.
//! - Throttling, 5xx, timeouts and connection failures are retried with
//!   full-jitter backoff while the deadline allows; anything else (a disabled
//!   or unknown key, a refused request) fails at once. A circuit breaker
//!   opens after consecutive failures to reach KMS: requests then fail fast
//!   (readiness red) until a trial call gets through.
//! - Credentials come from the standard AWS chain (environment, profile, web
//!   identity, instance role); nothing secret is in our configuration.
//!
//! What comes back is checked by [`crate::backend::Key`] (verify, low-S,
//! recovery id) like every remote backend's answer.
//!
//! One concept, a KMS key as a remote key: the client (deadlines, retries,
//! circuit breaker), the public key and the signing calls share the same
//! failure handling, so they are kept together; sealing is `seal.rs`.

pub mod seal;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};

use super::{BackendError, Key, RemoteKey, Scheme};
use crate::metrics::Metrics;

pub use crate::config::KmsConfig;

/// Why a call failed, as far as retrying is concerned.
#[derive(Debug)]
enum Failure {
    /// Throttled: KMS is there, asks us to slow down.
    Throttled(String),
    /// KMS could not be reached or failed (5xx, timeout, connection).
    Unreachable(String),
    /// KMS refused the request (disabled key, unknown key, …): final.
    Refused(String),
}

fn classify<E: ProvideErrorMetadata + std::fmt::Debug>(e: &SdkError<E>) -> Failure {
    let code = e.code().unwrap_or_default().to_owned();
    let status = e.raw_response().map(|r| r.status().as_u16());
    let what = match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_owned(),
        _ => match e {
            SdkError::TimeoutError(_) => "timeout".to_owned(),
            SdkError::DispatchFailure(_) => "cannot reach KMS".to_owned(),
            other => format!("{other:?}").chars().take(200).collect(),
        },
    };
    if code.contains("Throttl") || code == "TooManyRequestsException" || status == Some(429) {
        return Failure::Throttled(what);
    }
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::Unreachable(what)
        }
        _ if code == "KMSInternalException" || status.is_some_and(|s| s >= 500) => {
            Failure::Unreachable(what)
        }
        _ => Failure::Refused(what),
    }
}

#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
}

/// The KMS client, its runtime, its breaker and its metrics.
pub struct Kms {
    client: aws_sdk_kms::Client,
    /// Always `Some` until dropped (taken to shut down without blocking:
    /// the last reference may go away on an async runtime's thread).
    runtime: Option<tokio::runtime::Runtime>,
    config: KmsConfig,
    breaker: Mutex<BreakerState>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kms")
            .field("region", &self.config.region)
            .field("endpoint", &self.config.endpoint)
            .finish_non_exhaustive()
    }
}

/// Backoff before retry `n` (0-based): full jitter up to 25 ms × 2^n, ≤ 400 ms.
fn backoff(n: u32) -> Duration {
    let cap = 25u64.saturating_mul(1 << n.min(4)).min(400);
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    Duration::from_millis(u64::from_le_bytes(b) % (cap + 1))
}

impl Kms {
    /// Builds the client (no call is made).
    pub fn new(config: &KmsConfig, metrics: Option<Arc<Metrics>>) -> Result<Arc<Self>, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kms")
            .enable_all()
            .build()
            .map_err(|e| format!("kms runtime: {e}"))?;
        let c = config.clone();
        let sdk = runtime.block_on(async move {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .retry_config(aws_config::retry::RetryConfig::disabled())
                .timeout_config(
                    aws_config::timeout::TimeoutConfig::builder()
                        .operation_attempt_timeout(Duration::from_millis(
                            c.attempt_timeout_ms.max(1),
                        ))
                        .connect_timeout(Duration::from_millis(c.attempt_timeout_ms.max(1)))
                        .build(),
                );
            if let Some(r) = &c.region {
                loader = loader.region(aws_config::Region::new(r.clone()));
            }
            if let Some(e) = &c.endpoint {
                loader = loader.endpoint_url(e.clone());
            }
            loader.load().await
        });
        if sdk.region().is_none() {
            return Err("kms: no region (set [kms] region or AWS_REGION)".into());
        }
        Ok(Arc::new(Self {
            client: aws_sdk_kms::Client::new(&sdk),
            runtime: Some(runtime),
            config: config.clone(),
            breaker: Mutex::new(BreakerState::default()),
            metrics,
        }))
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.operation_timeout_ms.max(1))
    }

    /// Runs `f` on the KMS runtime and waits for it (from any thread).
    fn wait<T: Send + 'static>(
        &self,
        deadline: Instant,
        f: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.as_ref()?.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    }

    /// True while the breaker is open (fail fast).
    pub fn breaker_open(&self) -> bool {
        self.breaker
            .lock()
            .map_or(true, |b| b.open_until.is_some_and(|t| Instant::now() < t))
    }

    fn allow(&self) -> bool {
        !self.breaker_open()
    }

    fn succeeded(&self) {
        if let Ok(mut b) = self.breaker.lock() {
            if b.open_until.take().is_some() {
                tracing::info!("KMS reachable again; circuit breaker closed");
            }
            b.failures = 0;
        }
        self.set_up(true);
    }

    fn unreachable(&self, why: &str) {
        if let Ok(mut b) = self.breaker.lock() {
            b.failures += 1;
            if b.failures >= self.config.breaker_failures.max(1) {
                if b.open_until.is_none() {
                    tracing::warn!(reason = why, "KMS unreachable; circuit breaker open");
                }
                b.open_until =
                    Some(Instant::now() + Duration::from_millis(self.config.breaker_open_ms));
                drop(b);
                self.set_up(false);
            }
        }
    }

    fn set_up(&self, up: bool) {
        if let Some(m) = &self.metrics {
            m.backend_up
                .get_or_create(&vec![
                    ("backend", "kms".into()),
                    ("name", "endpoint".into()),
                ])
                .set(i64::from(up));
        }
    }

    fn count(&self, key: &str, outcome: &str) {
        if let Some(m) = &self.metrics {
            m.backend_operations
                .get_or_create(&vec![
                    ("backend", "kms".into()),
                    ("name", key.to_owned()),
                    ("outcome", outcome.to_owned()),
                ])
                .inc();
        }
    }

    /// One logical call with retries within `deadline`. `make` builds the
    /// future for one attempt.
    fn call<T, E, F, Fut>(&self, key: &str, deadline: Instant, make: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        E: ProvideErrorMetadata + std::fmt::Debug + Send + Sync + 'static,
        F: Fn(aws_sdk_kms::Client) -> Fut,
        Fut: Future<Output = Result<T, SdkError<E>>> + Send + 'static,
    {
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut last = String::from("no attempt");
        loop {
            if !self.allow() {
                self.count(key, "breaker_open");
                return Err(BackendError::Unavailable(format!(
                    "kms: circuit breaker open (last: {last})"
                )));
            }
            let Some(result) = self.wait(deadline, make(self.client.clone())) else {
                self.count(key, "timeout");
                self.unreachable("operation timeout");
                return Err(BackendError::Timeout {
                    backend: "kms".into(),
                    timeout_ms: u64::try_from(self.timeout().as_millis()).unwrap_or(u64::MAX),
                });
            };
            match result {
                Ok(v) => {
                    self.succeeded();
                    self.count(key, "ok");
                    if let Some(m) = &self.metrics {
                        m.backend_seconds
                            .get_or_create(&vec![
                                ("backend", "kms".into()),
                                ("name", key.to_owned()),
                            ])
                            .observe(started.elapsed().as_secs_f64());
                    }
                    return Ok(v);
                }
                Err(e) => match classify(&e) {
                    Failure::Refused(why) => {
                        self.count(key, "error");
                        return Err(BackendError::Unavailable(format!("kms: {why}")));
                    }
                    Failure::Throttled(why) => {
                        self.count(key, "throttled");
                        last = why;
                    }
                    Failure::Unreachable(why) => {
                        self.count(key, "error");
                        self.unreachable(&why);
                        last = why;
                    }
                },
            }
            let pause = backoff(attempt);
            attempt += 1;
            if Instant::now() + pause >= deadline {
                return Err(BackendError::Unavailable(format!(
                    "kms: {last} (gave up after {attempt} attempt(s) within the deadline)"
                )));
            }
            self.count(key, "retried");
            std::thread::sleep(pause);
        }
    }

    /// A key's scheme and public key (from `GetPublicKey`), by id, ARN or alias.
    pub fn describe(&self, key_id: &str) -> Result<(String, Scheme, Vec<u8>), String> {
        let deadline = Instant::now() + self.timeout();
        let id = key_id.to_owned();
        let out = self
            .call(key_id, deadline, move |c| {
                let id = id.clone();
                async move { c.get_public_key().key_id(id).send().await }
            })
            .map_err(|e| format!("kms key {key_id}: {e}"))?;
        let arn = out.key_id().unwrap_or(key_id).to_owned();
        let der = out
            .public_key()
            .ok_or_else(|| format!("kms key {key_id}: no public key"))?;
        let (scheme, pk) =
            parse_spki(der.as_ref()).map_err(|e| format!("kms key {key_id}: {e}"))?;
        Ok((arn, scheme, pk))
    }

    /// Creates a secp256k1 signing key (`ECC_SECG_P256K1`, `SIGN_VERIFY`)
    /// with `description` and `tags`; returns its ARN. Not retried: a
    /// retry after a lost answer would leave a second key.
    pub fn create_secp256k1(
        &self,
        description: &str,
        tags: &[(&str, &str)],
    ) -> Result<String, String> {
        use aws_sdk_kms::types::{KeySpec, KeyUsageType, Tag};
        let tags: Vec<Tag> = tags
            .iter()
            .filter_map(|(k, v)| Tag::builder().tag_key(*k).tag_value(*v).build().ok())
            .collect();
        let request = self
            .client
            .create_key()
            .key_spec(KeySpec::EccSecgP256K1)
            .key_usage(KeyUsageType::SignVerify)
            .description(description)
            .set_tags(Some(tags));
        let out = self
            .wait(Instant::now() + self.timeout(), request.send())
            .ok_or_else(|| {
                format!(
                    "kms CreateKey: no answer within {} ms ([kms] operation_timeout_ms)",
                    self.timeout().as_millis()
                )
            })?
            .map_err(|e| format!("kms CreateKey: {}", e.into_service_error()))?;
        out.key_metadata()
            .and_then(|m| m.arn().or(Some(m.key_id())))
            .map(str::to_owned)
            .ok_or_else(|| "kms CreateKey: no key id in the answer".to_owned())
    }

    /// Loads a signing key.
    pub fn load_key(self: &Arc<Self>, key_id: &str) -> Result<Key, String> {
        let (arn, scheme, public_key) = self.describe(key_id)?;
        Ok(Key::Remote(Arc::new(KmsKey {
            kms: Arc::clone(self),
            arn,
            scheme,
            public_key,
        })))
    }

    /// Every key's ARN (ListKeys, all pages).
    fn all_keys(&self) -> Result<Vec<String>, String> {
        let mut ids = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let deadline = Instant::now() + self.timeout();
            let m = marker.clone();
            let page = self
                .call("list", deadline, move |c| {
                    let m = m.clone();
                    async move { c.list_keys().set_marker(m).send().await }
                })
                .map_err(|e| format!("kms ListKeys: {e}"))?;
            ids.extend(
                page.keys()
                    .iter()
                    .filter_map(|k| k.key_arn().or(k.key_id()).map(str::to_owned)),
            );
            marker = page.next_marker().map(str::to_owned);
            if !page.truncated() || marker.is_none() {
                return Ok(ids);
            }
        }
    }

    /// A key's tags.
    fn tags(&self, id: &str) -> Result<BTreeMap<String, String>, String> {
        let deadline = Instant::now() + self.timeout();
        let key = id.to_owned();
        let out = self
            .call(id, deadline, move |c| {
                let key = key.clone();
                async move { c.list_resource_tags().key_id(key).send().await }
            })
            .map_err(|e| format!("kms ListResourceTags {id}: {e}"))?;
        Ok(out
            .tags()
            .iter()
            .map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned()))
            .collect())
    }

    /// Every key carrying all of `tags` (key and value), like Web3Signer's
    /// tag filters.
    pub fn keys_by_tags(
        self: &Arc<Self>,
        tags: &BTreeMap<String, String>,
    ) -> Result<Vec<Key>, String> {
        if tags.is_empty() {
            return Err("kms_tags: give at least one tag".into());
        }
        let mut keys = Vec::new();
        for id in self.all_keys()? {
            let have = self.tags(&id)?;
            if tags.iter().all(|(k, v)| have.get(k) == Some(v)) {
                keys.push(self.load_key(&id)?);
            }
        }
        Ok(keys)
    }

    /// Every key the caller may list, with its scheme and public key when it
    /// is a signing key we can use, and its tags (`signer keys list`).
    pub fn list(&self) -> Result<Vec<Listed>, String> {
        self.all_keys()?
            .into_iter()
            .map(|arn| {
                let tags = self.tags(&arn)?;
                let key = self.describe(&arn).ok().map(|(_, s, pk)| (s, pk));
                Ok(Listed { arn, key, tags })
            })
            .collect()
    }

    fn sign(
        &self,
        arn: &str,
        message: Vec<u8>,
        kind: MessageType,
        algorithm: SigningAlgorithmSpec,
    ) -> Result<Vec<u8>, BackendError> {
        let deadline = Instant::now() + self.timeout();
        let id = arn.to_owned();
        let out = self.call(arn, deadline, move |c| {
            let (id, message, kind, algorithm) =
                (id.clone(), message.clone(), kind.clone(), algorithm.clone());
            async move {
                c.sign()
                    .key_id(id)
                    .message(Blob::new(message))
                    .message_type(kind)
                    .signing_algorithm(algorithm)
                    .send()
                    .await
            }
        })?;
        out.signature()
            .map(|b| b.as_ref().to_vec())
            .ok_or_else(|| BackendError::Unavailable("kms: Sign returned no signature".into()))
    }
}

impl Drop for Kms {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// `SubjectPublicKeyInfo` DER (what `GetPublicKey` returns) → scheme and key
/// (Ed25519: 32 bytes; secp256k1: 33-byte compressed).
pub fn parse_spki(der: &[u8]) -> Result<(Scheme, Vec<u8>), String> {
    use x509_parser::prelude::FromDer;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der)
        .map_err(|e| format!("public key DER: {e}"))?;
    let alg = spki.algorithm.algorithm.to_id_string();
    let point = spki.subject_public_key.data.as_ref();
    match alg.as_str() {
        "1.3.101.112" if point.len() == 32 => Ok((Scheme::Ed25519, point.to_vec())),
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            if curve.as_deref() != Some("1.3.132.0.10") {
                return Err(format!("EC key on curve {curve:?}, not secp256k1"));
            }
            crate::crypto::secp256k1::compress(point)
                .map(|c| (Scheme::Secp256k1, c.to_vec()))
                .map_err(|e| e.to_string())
        }
        other => Err(format!("key algorithm {other} is neither Ed25519 nor EC")),
    }
}

/// A key as `signer keys list --backend kms` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its ARN.
    pub arn: String,
    /// Scheme and public key, for Ed25519 and secp256k1 signing keys.
    pub key: Option<(Scheme, Vec<u8>)>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// A key in KMS.
#[derive(Debug)]
pub struct KmsKey {
    kms: Arc<Kms>,
    arn: String,
    scheme: Scheme,
    public_key: Vec<u8>,
}

impl RemoteKey for KmsKey {
    fn scheme(&self) -> Scheme {
        self.scheme
    }

    fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    fn backend(&self) -> &'static str {
        "kms"
    }

    fn sign_raw(&self, payload: &[u8]) -> Result<Vec<u8>, BackendError> {
        match self.scheme {
            Scheme::Ed25519 => self.kms.sign(
                &self.arn,
                payload.to_vec(),
                MessageType::Raw,
                SigningAlgorithmSpec::Ed25519Sha512,
            ),
            Scheme::Secp256k1 => {
                let der = self.kms.sign(
                    &self.arn,
                    payload.to_vec(),
                    MessageType::Digest,
                    SigningAlgorithmSpec::EcdsaSha256,
                )?;
                der_to_rs(&der)
            }
            Scheme::Bls => Err(BackendError::WrongScheme("BLS keys are not in KMS")),
        }
    }

    fn sign_sha256_message(&self, msg: &[u8]) -> Option<Result<Vec<u8>, BackendError>> {
        (self.scheme == Scheme::Secp256k1 && msg.len() <= 4096).then(|| {
            self.kms
                .sign(
                    &self.arn,
                    msg.to_vec(),
                    MessageType::Raw,
                    SigningAlgorithmSpec::EcdsaSha256,
                )
                .and_then(|der| der_to_rs(&der))
        })
    }

    fn servable(&self) -> bool {
        !self.kms.breaker_open()
    }
}

fn der_to_rs(der: &[u8]) -> Result<Vec<u8>, BackendError> {
    crate::crypto::secp256k1::from_der(der)
        .map(|rs| rs.to_vec())
        .map_err(|why| BackendError::BadSignature {
            backend: "kms".into(),
            why,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(tag: u8, body: &[u8]) -> Vec<u8> {
        let len = u8::try_from(body.len()).unwrap();
        [&[tag, len][..], body].concat()
    }

    #[test]
    fn public_keys_are_read_from_subject_public_key_info() {
        // Ed25519 (RFC 8410): SEQ { SEQ { OID 1.3.101.112 }, BIT STRING }.
        let ed = [9u8; 32];
        let spki = der(
            0x30,
            &[
                der(0x30, &der(0x06, &[0x2b, 0x65, 0x70])),
                der(0x03, &[&[0][..], &ed].concat()),
            ]
            .concat(),
        );
        assert_eq!(parse_spki(&spki).unwrap(), (Scheme::Ed25519, ed.to_vec()));
        // secp256k1: ecPublicKey with the curve OID; the point compressed.
        let sk = crate::crypto::secp256k1::Secp256k1SecretKey::from_bytes(&[7; 32]).unwrap();
        let full = crate::crypto::secp256k1::uncompressed(&sk.public_key()).unwrap();
        let alg = [
            der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
            der(0x06, &[0x2b, 0x81, 0x04, 0x00, 0x0a]),
        ]
        .concat();
        let spki = der(
            0x30,
            &[der(0x30, &alg), der(0x03, &[&[0][..], &full].concat())].concat(),
        );
        assert_eq!(
            parse_spki(&spki).unwrap(),
            (Scheme::Secp256k1, sk.public_key().to_vec())
        );
        // P-256 (1.2.840.10045.3.1.7) is not secp256k1.
        let alg = [
            der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
            der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
        ]
        .concat();
        let spki = der(
            0x30,
            &[der(0x30, &alg), der(0x03, &[&[0][..], &full].concat())].concat(),
        );
        assert!(parse_spki(&spki).unwrap_err().contains("not secp256k1"));
        assert!(parse_spki(b"garbage").is_err());
    }

    #[test]
    fn backoff_is_bounded_and_jittered() {
        for n in 0..10 {
            assert!(backoff(n) <= Duration::from_millis(400));
        }
        assert!(backoff(0) <= Duration::from_millis(25));
        let spread: std::collections::HashSet<_> = (0..50).map(|_| backoff(4)).collect();
        assert!(spread.len() > 10, "no jitter: {spread:?}");
    }
}
