//! `hsm-sim kms`: a KMS endpoint speaking the AWS JSON 1.1 protocol
//! (`X-Amz-Target: TrentService.<Operation>`), for what no local emulator
//! does: Ed25519 keys (`ECC_NIST_EDWARDS25519`, `ED25519_SHA_512`, RAW),
//! `MessageType=DIGEST` signing that does not hash again, and injected
//! faults. moto is used wherever it is faithful; a cross-check test runs the
//! same secp256k1 scenario against both.
//!
//! Operations: `CreateKey`, `CreateAlias`, `DescribeKey`, `DisableKey`,
//! `EnableKey`, `GetPublicKey`, `Sign`, `Verify`, `Encrypt`, `Decrypt`,
//! `GenerateDataKey`, `ListKeys`, `ListResourceTags`. Requests are not
//! authenticated (the SigV4 header is ignored); this is a test double.
//!
//! Faults come from a JSON file re-read when it changes:
//!
//! ```json
//! {"faults": [
//!   {"op": "Sign", "error": "ThrottlingException", "probability": 0.3},
//!   {"op": "*", "latency_ms": 500},
//!   {"op": "*", "status": 503},
//!   {"op": "*", "drop": true}
//! ]}
//! ```
//!
//! `error`: a KMS error type, answered with its HTTP status (400, or 500 for
//! `KMSInternalException`); `status`: a bare 5xx; `drop`: the connection is
//! closed without an answer; `latency_ms`: a delay first. `probability`
//! defaults to 1. With `--canned`, `Sign` answers a fixed signature without
//! looking at the key or the message: the floor of an HTTP round trip.
//!
//! One concept, the simulated KMS endpoint: the JSON protocol of the calls
//! the signer makes, the keys, and the fault scenario applied to each call.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const ACCOUNT: &str = "111122223333";
const REGION: &str = "us-east-1";

/// One fault rule.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KmsFault {
    /// Operation name (`Sign`, …) or `*`.
    pub op: String,
    /// A KMS error type to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A bare HTTP status to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Close the connection without answering.
    #[serde(default)]
    pub drop: bool,
    /// Delay before anything else.
    #[serde(default)]
    pub latency_ms: u64,
    /// Chance of firing (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

/// The fault file.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KmsFaults {
    /// Rules, all applied in order.
    #[serde(default)]
    pub faults: Vec<KmsFault>,
}

impl KmsFaults {
    /// Writes the file atomically.
    pub fn write(&self, path: &std::path::Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, path)
    }
}

enum Material {
    Secp256k1(k256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    Aes([u8; 32]),
}

struct SimKey {
    id: String,
    spec: &'static str,
    usage: &'static str,
    enabled: bool,
    tags: Vec<(String, String)>,
    description: String,
    created: f64,
    material: Material,
}

impl SimKey {
    fn arn(&self) -> String {
        format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/{}", self.id)
    }

    fn signing_algorithms(&self) -> Vec<&'static str> {
        match self.material {
            Material::Secp256k1(_) => vec!["ECDSA_SHA_256"],
            Material::Ed25519(_) => vec!["ED25519_SHA_512"],
            Material::Aes(_) => Vec::new(),
        }
    }

    fn metadata(&self) -> Value {
        let mut m = json!({
            "AWSAccountId": ACCOUNT,
            "KeyId": self.id,
            "Arn": self.arn(),
            "CreationDate": self.created,
            "Enabled": self.enabled,
            "Description": self.description,
            "KeyUsage": self.usage,
            "KeyState": if self.enabled { "Enabled" } else { "Disabled" },
            "Origin": "AWS_KMS",
            "KeyManager": "CUSTOMER",
            "CustomerMasterKeySpec": self.spec,
            "KeySpec": self.spec,
            "MultiRegion": false,
        });
        if let Material::Aes(_) = self.material {
            set(&mut m, "EncryptionAlgorithms", json!(["SYMMETRIC_DEFAULT"]));
        } else {
            set(
                &mut m,
                "SigningAlgorithms",
                json!(self.signing_algorithms()),
            );
        }
        m
    }
}

/// The simulator's state.
pub struct Kms {
    keys: Mutex<Vec<SimKey>>,
    aliases: Mutex<HashMap<String, String>>,
    faults: Option<PathBuf>,
    loaded: Mutex<(Option<SystemTime>, KmsFaults, Instant)>,
    rng: Mutex<u64>,
    canned: bool,
}

impl std::fmt::Debug for Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kms")
    }
}

/// A KMS error: type and message.
struct KmsError(StatusCode, &'static str, String);

fn err(kind: &'static str, msg: impl Into<String>) -> KmsError {
    let status = if kind == "KMSInternalException" {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    KmsError(status, kind, msg.into())
}

fn b64(v: &Value, field: &str) -> Result<Vec<u8>, KmsError> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| err("ValidationException", format!("{field} is required")))?;
    B64.decode(s)
        .map_err(|_| err("ValidationException", format!("{field} is not base64")))
}

fn text<'a>(v: &'a Value, field: &str) -> Result<&'a str, KmsError> {
    v.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| err("ValidationException", format!("{field} is required")))
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // getrandom fails only without an OS RNG; the simulator cannot run then.
    let _ = getrandom::fill(&mut b);
    b
}

fn set(v: &mut Value, field: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(field.to_owned(), value);
    }
}

fn der_len(n: usize) -> Vec<u8> {
    if n < 128 {
        vec![n as u8]
    } else {
        vec![0x81, n as u8]
    }
}

fn der(tag: u8, body: &[u8]) -> Vec<u8> {
    [&[tag][..], &der_len(body.len()), body].concat()
}

/// SubjectPublicKeyInfo DER, as KMS's `GetPublicKey` returns it.
fn spki(m: &Material) -> Option<Vec<u8>> {
    let (alg, point) = match m {
        Material::Secp256k1(k) => {
            let point = k.verifying_key().to_sec1_point(false);
            // ecPublicKey (1.2.840.10045.2.1), secp256k1 (1.3.132.0.10)
            let alg = [
                der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
                der(0x06, &[0x2b, 0x81, 0x04, 0x00, 0x0a]),
            ]
            .concat();
            (alg, point.as_bytes().to_vec())
        }
        Material::Ed25519(k) => (
            der(0x06, &[0x2b, 0x65, 0x70]),
            k.verifying_key().to_bytes().to_vec(),
        ),
        Material::Aes(_) => return None,
    };
    let bits = [&[0u8][..], &point].concat();
    Some(der(0x30, &[der(0x30, &alg), der(0x03, &bits)].concat()))
}

/// The simulator's own ciphertext: key id, IV, AES-256-CTR, HMAC-SHA256 over
/// the context and the rest (opaque to clients, as KMS's is).
fn seal(key: &SimKey, aes: &[u8; 32], plain: &[u8], context: &str) -> Vec<u8> {
    use aes::cipher::{KeyIvInit, StreamCipher};
    use hmac::{KeyInit, Mac};
    let iv: [u8; 16] = random();
    let mut ct = plain.to_vec();
    let mut cipher = ctr::Ctr128BE::<aes::Aes256>::new(aes.into(), &iv.into());
    cipher.apply_keystream(&mut ct);
    let id = key.id.as_bytes();
    let mut blob = [&[id.len() as u8][..], id, &iv, &ct].concat();
    let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(aes) else {
        return blob;
    };
    mac.update(context.as_bytes());
    mac.update(&blob);
    blob.extend_from_slice(&mac.finalize().into_bytes());
    blob
}

fn blob_key_id(blob: &[u8]) -> Option<String> {
    let n = usize::from(*blob.first()?);
    String::from_utf8(blob.get(1..1 + n)?.to_vec()).ok()
}

fn open(aes: &[u8; 32], blob: &[u8], context: &str) -> Option<Vec<u8>> {
    use aes::cipher::{KeyIvInit, StreamCipher};
    use hmac::{KeyInit, Mac};
    let (body, tag) = blob.split_at(blob.len().checked_sub(32)?);
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(aes).ok()?;
    mac.update(context.as_bytes());
    mac.update(body);
    mac.verify_slice(tag).ok()?;
    let n = usize::from(*body.first()?);
    let iv: [u8; 16] = body.get(1 + n..17 + n)?.try_into().ok()?;
    let mut pt = body.get(17 + n..)?.to_vec();
    let mut cipher = ctr::Ctr128BE::<aes::Aes256>::new(aes.into(), &iv.into());
    cipher.apply_keystream(&mut pt);
    Some(pt)
}

/// A stable text form of an encryption context (sorted).
fn context_of(v: &Value) -> String {
    let mut pairs: Vec<(String, String)> = v
        .get("EncryptionContext")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v};")).collect()
}

impl Kms {
    /// A simulator; faults from `faults` if given.
    pub fn new(faults: Option<PathBuf>, canned: bool) -> Self {
        Self {
            keys: Mutex::new(Vec::new()),
            aliases: Mutex::new(HashMap::new()),
            faults,
            loaded: Mutex::new((None, KmsFaults::default(), Instant::now())),
            rng: Mutex::new(u64::from_le_bytes(random()) | 1),
            canned,
        }
    }

    fn dice(&self) -> f64 {
        let Ok(mut r) = self.rng.lock() else {
            return 0.0;
        };
        *r ^= *r << 13;
        *r ^= *r >> 7;
        *r ^= *r << 17;
        (*r >> 11) as f64 / (1u64 << 53) as f64
    }

    fn current_faults(&self) -> Vec<KmsFault> {
        let Some(path) = &self.faults else {
            return Vec::new();
        };
        let Ok(mut l) = self.loaded.lock() else {
            return Vec::new();
        };
        if l.2.elapsed() > Duration::from_millis(5) || l.0.is_none() {
            l.2 = Instant::now();
            let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if modified != l.0 {
                if let Some(f) = std::fs::read(path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<KmsFaults>(&b).ok())
                {
                    l.1 = f;
                }
                l.0 = modified;
            }
        }
        l.1.faults.clone()
    }

    fn resolve(&self, id: &str) -> Result<String, KmsError> {
        let id = if let Some(alias) = id.strip_prefix("alias/").map(|a| format!("alias/{a}")) {
            self.aliases
                .lock()
                .ok()
                .and_then(|a| a.get(&alias).cloned())
                .ok_or_else(|| err("NotFoundException", format!("Alias {alias} is not found.")))?
        } else if let Some((_, rest)) = id.split_once(":key/") {
            rest.to_owned()
        } else if let Some((_, rest)) = id.split_once(":alias/") {
            return self.resolve(&format!("alias/{rest}"));
        } else {
            id.to_owned()
        };
        Ok(id)
    }

    fn with_key<T>(
        &self,
        id: &str,
        usable: bool,
        f: impl FnOnce(&mut SimKey) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let id = self.resolve(id)?;
        let mut keys = self
            .keys
            .lock()
            .map_err(|_| err("KMSInternalException", "lock"))?;
        let key = keys
            .iter_mut()
            .find(|k| k.id == id)
            .ok_or_else(|| err("NotFoundException", format!("Key '{id}' does not exist")))?;
        if usable && !key.enabled {
            return Err(err(
                "DisabledException",
                format!("{} is disabled.", key.arn()),
            ));
        }
        f(key)
    }

    /// Answers one operation.
    fn call(&self, op: &str, v: &Value) -> Result<Value, KmsError> {
        match op {
            "CreateKey" => {
                let spec = v
                    .get("KeySpec")
                    .and_then(Value::as_str)
                    .unwrap_or("SYMMETRIC_DEFAULT");
                let (spec, usage, material) = match spec {
                    "ECC_SECG_P256K1" => (
                        "ECC_SECG_P256K1",
                        "SIGN_VERIFY",
                        Material::Secp256k1(
                            k256::ecdsa::SigningKey::from_slice(&random::<32>())
                                .map_err(|_| err("KMSInternalException", "key generation"))?,
                        ),
                    ),
                    "ECC_NIST_EDWARDS25519" => (
                        "ECC_NIST_EDWARDS25519",
                        "SIGN_VERIFY",
                        Material::Ed25519(ed25519_dalek::SigningKey::from_bytes(&random())),
                    ),
                    "SYMMETRIC_DEFAULT" => (
                        "SYMMETRIC_DEFAULT",
                        "ENCRYPT_DECRYPT",
                        Material::Aes(random()),
                    ),
                    other => {
                        return Err(err(
                            "UnsupportedOperationException",
                            format!("KeySpec {other} is not simulated"),
                        ));
                    }
                };
                let id = hex_uuid(&random::<16>());
                let tags = v
                    .get("Tags")
                    .and_then(Value::as_array)
                    .map(|t| {
                        t.iter()
                            .filter_map(|t| {
                                Some((
                                    t.get("TagKey")?.as_str()?.to_owned(),
                                    t.get("TagValue")?.as_str()?.to_owned(),
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let key = SimKey {
                    id,
                    spec,
                    usage,
                    enabled: true,
                    tags,
                    description: v
                        .get("Description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    created: SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64()),
                    material,
                };
                let out = json!({"KeyMetadata": key.metadata()});
                self.keys
                    .lock()
                    .map_err(|_| err("KMSInternalException", "lock"))?
                    .push(key);
                Ok(out)
            }
            "CreateAlias" => {
                let alias = text(v, "AliasName")?.to_owned();
                let target = self.resolve(text(v, "TargetKeyId")?)?;
                self.with_key(&target, false, |_| Ok(()))?;
                self.aliases
                    .lock()
                    .map_err(|_| err("KMSInternalException", "lock"))?
                    .insert(alias, target);
                Ok(json!({}))
            }
            "DescribeKey" => self.with_key(text(v, "KeyId")?, false, |k| {
                Ok(json!({"KeyMetadata": k.metadata()}))
            }),
            "DisableKey" | "EnableKey" => self.with_key(text(v, "KeyId")?, false, |k| {
                k.enabled = op == "EnableKey";
                Ok(json!({}))
            }),
            "GetPublicKey" => self.with_key(text(v, "KeyId")?, true, |k| {
                let der = spki(&k.material)
                    .ok_or_else(|| err("UnsupportedOperationException", "not an asymmetric key"))?;
                Ok(json!({
                    "KeyId": k.arn(),
                    "PublicKey": B64.encode(der),
                    "KeySpec": k.spec,
                    "CustomerMasterKeySpec": k.spec,
                    "KeyUsage": k.usage,
                    "SigningAlgorithms": k.signing_algorithms(),
                }))
            }),
            "Sign" | "Verify" => {
                if self.canned && op == "Sign" {
                    return Ok(json!({
                        "KeyId": text(v, "KeyId")?,
                        "Signature": B64.encode([0u8; 64]),
                        "SigningAlgorithm": text(v, "SigningAlgorithm")?,
                    }));
                }
                let message = b64(v, "Message")?;
                let kind = v
                    .get("MessageType")
                    .and_then(Value::as_str)
                    .unwrap_or("RAW");
                let algorithm = text(v, "SigningAlgorithm")?.to_owned();
                if message.len() > 4096 {
                    return Err(err("ValidationException", "Message exceeds 4096 bytes"));
                }
                self.with_key(text(v, "KeyId")?, true, |k| {
                    // moto answers a ValidationException here; so do we
                    // (the cross-check test compares).
                    if !k.signing_algorithms().contains(&algorithm.as_str()) {
                        return Err(err(
                            "ValidationException",
                            format!("{algorithm} is not valid for {}", k.spec),
                        ));
                    }
                    let signature = match (&k.material, kind) {
                        (Material::Secp256k1(sk), "RAW" | "DIGEST") => {
                            let digest: [u8; 32] = if kind == "RAW" {
                                Sha256::digest(&message).into()
                            } else {
                                message.as_slice().try_into().map_err(|_| {
                                    err("ValidationException", "a DIGEST for ECDSA_SHA_256 is 32 bytes")
                                })?
                            };
                            if op == "Verify" {
                                use k256::ecdsa::signature::hazmat::PrehashVerifier;
                                // Either S verifies, as with KMS (k256 alone
                                // refuses high-S).
                                let sig = k256::ecdsa::Signature::from_der(&b64(v, "Signature")?)
                                    .map_err(|_| err("KMSInvalidSignatureException", ""))?
                                    .normalize_s();
                                sk.verifying_key()
                                    .verify_prehash(&digest, &sig)
                                    .map_err(|_| err("KMSInvalidSignatureException", ""))?;
                                None
                            } else {
                                // Either S at random, as KMS signs: the
                                // client must normalise.
                                use k256::ecdsa::signature::hazmat::PrehashSigner;
                                let sig: k256::ecdsa::Signature = sk
                                    .sign_prehash(&digest)
                                    .map_err(|_| err("KMSInternalException", "signing"))?;
                                let sig = if random::<1>()[0] & 1 == 1 { flip_s(&sig) } else { sig };
                                Some(sig.to_der().as_bytes().to_vec())
                            }
                        }
                        (Material::Ed25519(sk), "RAW") => {
                            if op == "Verify" {
                                let sig = ed25519_dalek::Signature::from_slice(&b64(v, "Signature")?)
                                    .map_err(|_| err("KMSInvalidSignatureException", ""))?;
                                sk.verifying_key()
                                    .verify_strict(&message, &sig)
                                    .map_err(|_| err("KMSInvalidSignatureException", ""))?;
                                None
                            } else {
                                use ed25519_dalek::Signer;
                                Some(sk.sign(&message).to_bytes().to_vec())
                            }
                        }
                        (Material::Ed25519(_), _) => {
                            return Err(err(
                                "ValidationException",
                                "ED25519_SHA_512 requires MessageType RAW",
                            ));
                        }
                        _ => return Err(err("ValidationException", format!("MessageType {kind}"))),
                    };
                    Ok(match signature {
                        Some(s) => json!({"KeyId": k.arn(), "Signature": B64.encode(s), "SigningAlgorithm": algorithm}),
                        None => json!({"KeyId": k.arn(), "SignatureValid": true, "SigningAlgorithm": algorithm}),
                    })
                })
            }
            "Encrypt" | "GenerateDataKey" => {
                let context = context_of(v);
                let plain = if op == "Encrypt" {
                    b64(v, "Plaintext")?
                } else {
                    let n = v.get("NumberOfBytes").and_then(Value::as_u64).unwrap_or(32);
                    (0..n).map(|_| random::<1>()[0]).collect()
                };
                self.with_key(text(v, "KeyId")?, true, |k| {
                    let Material::Aes(aes) = &k.material else {
                        return Err(err("InvalidKeyUsageException", "not an ENCRYPT_DECRYPT key"));
                    };
                    let blob = seal(k, aes, &plain, &context);
                    let mut out = json!({"KeyId": k.arn(), "CiphertextBlob": B64.encode(blob), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"});
                    if op == "GenerateDataKey" {
                        set(&mut out, "Plaintext", json!(B64.encode(&plain)));
                    }
                    Ok(out)
                })
            }
            "Decrypt" => {
                let blob = b64(v, "CiphertextBlob")?;
                let context = context_of(v);
                let id = blob_key_id(&blob).ok_or_else(|| err("InvalidCiphertextException", ""))?;
                self.with_key(&id, true, |k| {
                    let Material::Aes(aes) = &k.material else {
                        return Err(err("InvalidCiphertextException", ""));
                    };
                    let plain = open(aes, &blob, &context).ok_or_else(|| err("InvalidCiphertextException", ""))?;
                    Ok(json!({"KeyId": k.arn(), "Plaintext": B64.encode(plain), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}))
                })
            }
            "ListKeys" => {
                let keys = self
                    .keys
                    .lock()
                    .map_err(|_| err("KMSInternalException", "lock"))?;
                let list: Vec<Value> = keys
                    .iter()
                    .map(|k| json!({"KeyId": k.id, "KeyArn": k.arn()}))
                    .collect();
                Ok(json!({"Keys": list, "Truncated": false}))
            }
            "ListResourceTags" => self.with_key(text(v, "KeyId")?, false, |k| {
                let tags: Vec<Value> = k
                    .tags
                    .iter()
                    .map(|(t, v)| json!({"TagKey": t, "TagValue": v}))
                    .collect();
                Ok(json!({"Tags": tags, "Truncated": false}))
            }),
            other => Err(err(
                "UnsupportedOperationException",
                format!("{other} is not simulated"),
            )),
        }
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Dropped> {
        let op = req
            .headers()
            .get("x-amz-target")
            .and_then(|h| h.to_str().ok())
            .and_then(|t| t.strip_prefix("TrentService."))
            .unwrap_or_default()
            .to_owned();
        for f in self.current_faults() {
            if f.op != "*" && f.op != op {
                continue;
            }
            if f.probability.is_some_and(|p| self.dice() >= p) {
                continue;
            }
            if f.latency_ms > 0 {
                tokio::time::sleep(Duration::from_millis(f.latency_ms)).await;
            }
            if f.drop {
                return Err(Dropped);
            }
            if let Some(status) = f.status {
                return Ok(reply(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    json!({}),
                ));
            }
            if let Some(kind) = &f.error {
                let status = if kind == "KMSInternalException" {
                    500
                } else {
                    400
                };
                return Ok(reply(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                    json!({"__type": kind, "message": "injected by hsm-sim"}),
                ));
            }
        }
        let body = req
            .into_body()
            .collect()
            .await
            .map_err(|_| Dropped)?
            .to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let me = Arc::clone(&self);
        // Crypto off the reactor threads.
        let answer = tokio::task::spawn_blocking(move || me.call(&op, &v))
            .await
            .map_err(|_| Dropped)?;
        Ok(match answer {
            Ok(v) => reply(StatusCode::OK, v),
            Err(KmsError(status, kind, message)) => {
                reply(status, json!({"__type": kind, "message": message}))
            }
        })
    }
}

/// The connection is to be closed without an answer.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dropped by a fault")
    }
}

impl std::error::Error for Dropped {}

fn reply(status: StatusCode, v: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    r
}

/// The same signature with s replaced by n − s (KMS returns either form).
fn flip_s(sig: &k256::ecdsa::Signature) -> k256::ecdsa::Signature {
    let (r, s) = sig.split_scalars();
    let negated = -k256::Scalar::from(s);
    k256::ecdsa::Signature::from_scalars(k256::Scalar::from(r).to_bytes(), negated.to_bytes())
        .unwrap_or(*sig)
}

fn hex_uuid(b: &[u8; 16]) -> String {
    let n = u128::from_be_bytes(*b);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        n >> 96,
        (n >> 80) & 0xffff,
        (n >> 64) & 0xffff,
        (n >> 48) & 0xffff,
        n & 0xffff_ffff_ffff
    )
}

/// Serves until the process ends; prints `ready http://ADDR` once listening.
pub async fn serve(
    listen: SocketAddr,
    faults: Option<PathBuf>,
    canned: bool,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("ready http://{}", listener.local_addr()?);
    let kms = Arc::new(Kms::new(faults, canned));
    loop {
        let (stream, _) = listener.accept().await?;
        let kms = Arc::clone(&kms);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| Arc::clone(&kms).handle(req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
