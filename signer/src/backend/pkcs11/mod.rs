//! PKCS#11 HSMs (through cryptoki): Ed25519 (`CKM_EDDSA`) and secp256k1
//! (`CKM_ECDSA`) keys that never leave the token, and BLS keys sealed under
//! a token's AES key ([`seal`]).
//!
//! One module (shared library) is initialised once per process and shared by
//! every token on it. Each configured token has its own session pool
//! ([`token`]); a key may be on several tokens (an HSM cluster, or two HSMs
//! holding copies): signing tries healthy tokens first, in configuration
//! order, and fails over within the operation timeout. What comes back is
//! checked by [`crate::backend::Key`] before it is used.

pub mod admin;
pub mod seal;
pub mod token;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::Session;
use zeroize::Zeroizing;

use super::{BackendError, Key, RemoteKey, Scheme};
use crate::metrics::Metrics;
pub use token::{Locator, Mech, Selector, Token};

pub use crate::config::{Pkcs11Config, TokenConfig};

/// Which token of a module `t` names (label or serial, exactly one).
fn selector(t: &TokenConfig) -> Result<Selector, String> {
    match (&t.token_label, &t.token_serial) {
        (Some(l), None) => Ok(Selector::Label(l.clone())),
        (None, Some(s)) => Ok(Selector::Serial(s.clone())),
        _ => Err(format!(
            "pkcs11 token {:?}: give exactly one of token_label, token_serial",
            t.name
        )),
    }
}

/// Reads `t`'s PIN from its file or variable.
fn pin(t: &TokenConfig) -> Result<Zeroizing<String>, String> {
    read_pin(t.pin_file.as_deref(), t.pin_env.as_deref())
        .map_err(|e| format!("pkcs11 token {:?}: {e}", t.name))
}

/// A PIN from a file (its first line) or an environment variable.
pub fn read_pin(file: Option<&Path>, env: Option<&str>) -> Result<Zeroizing<String>, String> {
    match (file, env) {
        (Some(f), None) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?,
            );
            let pin = text.lines().next().unwrap_or_default();
            if pin.is_empty() {
                return Err(format!("{}: the PIN file is empty", f.display()));
            }
            Ok(Zeroizing::new(pin.to_owned()))
        }
        (None, Some(v)) => std::env::var(v)
            .map(Zeroizing::new)
            .map_err(|_| format!("environment variable {v} is not set")),
        _ => Err("give exactly one of pin_file, pin_env".into()),
    }
}

/// Loads (once per process) and initialises a PKCS#11 module. A module
/// another part of the process initialised already is fine.
pub fn open_module(path: &Path) -> Result<Pkcs11, String> {
    let ctx = Pkcs11::new(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(ctx),
        Err(e) => Err(format!("{}: {}", path.display(), token::describe(&e))),
    }
}

/// The configured tokens, with running session pools.
#[derive(Debug)]
pub struct Registry {
    tokens: Vec<Arc<Token>>,
    timeout: Duration,
}

impl Registry {
    /// Opens every module, finds every token, logs in once to check the PIN,
    /// and starts the session pools. A token that is absent at start is an
    /// error: starting without a configured HSM hides a broken setup.
    pub fn start(config: &Pkcs11Config, metrics: Option<Arc<Metrics>>) -> Result<Self, String> {
        Self::build(config, metrics, true)
    }

    /// [`Registry::start`] without session threads, for one-shot commands
    /// (`keys rotate`, `keys reseal`) that open sessions as they go. A
    /// command that started them and then exited raced those threads,
    /// still inside the module's calls, against the module's own exit-time
    /// destructors: SoftHSM crashed the process with a signal, about once
    /// in a full test run.
    pub fn open(config: &Pkcs11Config) -> Result<Self, String> {
        Self::build(config, None, false)
    }

    fn build(
        config: &Pkcs11Config,
        metrics: Option<Arc<Metrics>>,
        threads: bool,
    ) -> Result<Self, String> {
        let mut modules: HashMap<PathBuf, Pkcs11> = HashMap::new();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let settings = token::PoolSettings {
            sessions: match config.sessions_per_token {
                0 => cores,
                n => n,
            },
            keepalive: Duration::from_secs(config.keepalive_secs.max(1)),
        };
        let mut tokens = Vec::new();
        for t in &config.tokens {
            if tokens.iter().any(|x: &Arc<Token>| x.name == t.name) {
                return Err(format!("pkcs11 token {:?} is configured twice", t.name));
            }
            let ctx = match modules.get(&t.module) {
                Some(c) => c.clone(),
                None => {
                    let c = open_module(&t.module)?;
                    modules.insert(t.module.clone(), c.clone());
                    c
                }
            };
            let token = Arc::new(Token::new(
                t.name.clone(),
                ctx,
                selector(t)?,
                pin(t)?,
                settings,
                metrics.clone(),
            ));
            token
                .open_session(false)
                .map_err(|e| format!("pkcs11 token {:?}: {e}", t.name))?;
            if threads {
                token.start();
            }
            tokens.push(token);
        }
        Ok(Self {
            tokens,
            timeout: Duration::from_millis(config.operation_timeout_ms.max(1)),
        })
    }

    /// The tokens, in configuration order.
    pub fn tokens(&self) -> &[Arc<Token>] {
        &self.tokens
    }

    /// The named tokens (all of them when `names` is empty).
    fn select(&self, names: &[String]) -> Result<Vec<Arc<Token>>, String> {
        if names.is_empty() {
            return Ok(self.tokens.clone());
        }
        names
            .iter()
            .map(|n| {
                self.tokens
                    .iter()
                    .find(|t| &t.name == n)
                    .cloned()
                    .ok_or_else(|| format!("no pkcs11 token named {n:?}"))
            })
            .collect()
    }

    /// Finds a key pair on its tokens. Every token must hold it, with the
    /// same public key; the private key must be there and should be
    /// sensitive and not extractable (a warning says so when it is not).
    pub fn load_key(&self, locator: Locator, names: &[String]) -> Result<Key, String> {
        let tokens = self.select(names)?;
        let mut found: Option<(Scheme, Vec<u8>)> = None;
        for t in &tokens {
            let session = t
                .open_session(false)
                .map_err(|e| format!("pkcs11 token {:?}: {e}", t.name))?;
            let (scheme, pk) = read_public_key(&session, &locator)
                .map_err(|e| format!("pkcs11 token {:?}, key {locator}: {e}", t.name))?;
            check_private_key(&session, &locator, &t.name)?;
            match &found {
                None => found = Some((scheme, pk)),
                Some((_, first)) if *first != pk => {
                    return Err(format!(
                        "key {locator}: token {:?} holds a different key than the first token",
                        t.name
                    ));
                }
                Some(_) => {}
            }
        }
        let (scheme, public_key) = found.ok_or("no token to load the key from")?;
        Ok(Key::Remote(Arc::new(Pkcs11Key {
            scheme,
            public_key,
            locator: Arc::new(locator),
            tokens,
            timeout: self.timeout,
        })))
    }

    /// Unseals a BLS key file with the first of its tokens that can.
    pub fn unseal(&self, path: &Path, names: &[String]) -> Result<Key, String> {
        let json = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: seal::SealedKey =
            serde_json::from_slice(&json).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut errors = Vec::new();
        for t in self.select(names)? {
            let unsealed = t
                .open_session(false)
                .and_then(|s| seal::unseal(&s, &file).map_err(|e| e.to_string()));
            match unsealed {
                Ok(key) => return Ok(key),
                Err(e) => errors.push(format!("token {:?}: {e}", t.name)),
            }
        }
        Err(format!(
            "{}: cannot unseal: {}",
            path.display(),
            errors.join("; ")
        ))
    }

    /// The secret of a sealed file, from the first of `names` (every token
    /// when empty) that can unseal it (`signer keys reseal`).
    pub fn unseal_secret(
        &self,
        file: &seal::SealedKey,
        names: &[String],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
        let mut errors = Vec::new();
        for t in self.select(names)? {
            let secret = t
                .open_session(false)
                .and_then(|s| seal::unseal_secret(&s, file).map_err(|e| e.to_string()));
            match secret {
                Ok(secret) => return Ok(secret),
                Err(e) => errors.push(format!("token {:?}: {e}", t.name)),
            }
        }
        Err(format!("cannot unseal: {}", errors.join("; ")))
    }

    /// The token the configuration names `name`.
    fn named(&self, name: &str) -> Result<Arc<Token>, String> {
        self.select(&[name.to_owned()])?
            .into_iter()
            .next()
            .ok_or_else(|| format!("no pkcs11 token {name:?} in the configuration"))
    }

    /// Seals `secret` with token `name`'s AES key `label`.
    pub fn seal(
        &self,
        name: &str,
        label: &str,
        secret: &[u8],
        description: &str,
    ) -> Result<seal::SealedKey, String> {
        let token = self.named(name)?;
        let session = token.open_session(false)?;
        seal::seal(&session, label, secret, description).map_err(|e| format!("token {name:?}: {e}"))
    }

    /// Generates a key on token `name` (`signer keys rotate`); see
    /// [`admin::generate`].
    pub fn generate(
        &self,
        name: &str,
        kind: admin::KeyKind,
        label: &str,
    ) -> Result<admin::Generated, String> {
        let token = self.named(name)?;
        let session = token.open_session(true)?;
        admin::generate(&session, kind, label).map_err(|e| format!("token {name:?}: {e}"))
    }

    /// Imports a secret into token `name` (`signer keys rotate --move`);
    /// see [`admin::import`].
    pub fn import(
        &self,
        name: &str,
        scheme: crate::backend::Scheme,
        label: &str,
        secret: &[u8],
    ) -> Result<admin::Generated, String> {
        let token = self.named(name)?;
        let session = token.open_session(true)?;
        admin::import(&session, scheme, label, secret).map_err(|e| format!("token {name:?}: {e}"))
    }

    /// Token names and why each is down (`None`: up).
    pub fn health(&self) -> Vec<(String, Option<String>)> {
        self.tokens
            .iter()
            .map(|t| (t.name.clone(), t.down_reason()))
            .collect()
    }
}

/// A key pair on one or more tokens.
#[derive(Debug)]
pub struct Pkcs11Key {
    scheme: Scheme,
    public_key: Vec<u8>,
    locator: Arc<Locator>,
    tokens: Vec<Arc<Token>>,
    timeout: Duration,
}

impl Pkcs11Key {
    /// The names of its tokens.
    pub fn token_names(&self) -> Vec<String> {
        self.tokens.iter().map(|t| t.name.clone()).collect()
    }
}

impl RemoteKey for Pkcs11Key {
    fn scheme(&self) -> Scheme {
        self.scheme
    }

    fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    fn backend(&self) -> &'static str {
        "pkcs11"
    }

    fn servable(&self) -> bool {
        self.tokens.iter().any(|t| t.is_up())
    }

    fn sign_raw(&self, payload: &[u8]) -> Result<Vec<u8>, BackendError> {
        let mech = match self.scheme {
            Scheme::Ed25519 => Mech::Eddsa,
            Scheme::Secp256k1 => Mech::Ecdsa,
            Scheme::Bls => return Err(BackendError::WrongScheme("BLS keys are not in a token")),
        };
        let started = Instant::now();
        let deadline = started + self.timeout;
        // Healthy tokens first, in configuration order; a token that failed
        // goes last, except that once its failure is HALF_OPEN_AFTER old it
        // is tried in its place again (that is how it comes back up).
        let mut order: Vec<&Arc<Token>> = self.tokens.iter().collect();
        order.sort_by_key(|t| {
            !t.is_up()
                && t.since_failure()
                    .is_some_and(|d| d < token::HALF_OPEN_AFTER)
        });
        let mut failures = Vec::new();
        for (i, t) in order.iter().enumerate() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // Leave the later tokens half of what remains.
            let attempt = if i + 1 < order.len() {
                now + deadline.saturating_duration_since(now) / 2
            } else {
                deadline
            };
            match t.sign(&self.locator, mech, payload, attempt) {
                Ok(sig) => return Ok(sig),
                Err(token::SignFailure::Error(e)) => failures.push(e),
                Err(token::SignFailure::Timeout) => failures.push(format!(
                    "token {}: no answer within {} ms",
                    t.name,
                    attempt.saturating_duration_since(now).as_millis()
                )),
            }
        }
        if failures.is_empty() || Instant::now() >= deadline {
            return Err(BackendError::Timeout {
                backend: "pkcs11".into(),
                timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            });
        }
        Err(BackendError::Unavailable(failures.join("; ")))
    }
}

/// DER encodings of the curves we accept in `CKA_EC_PARAMS`.
pub mod curves {
    /// secp256k1: OID 1.3.132.0.10.
    pub const SECP256K1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
    /// Ed25519: OID 1.3.101.112 (RFC 8410).
    pub const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    /// Ed25519 as the PrintableString "edwards25519" (older PKCS#11 practice).
    pub const ED25519_NAME: &[u8] = b"\x13\x0cedwards25519";
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point on SoftHSM and most
/// HSMs; some return the bare point. Either way, the point.
pub fn strip_octet_string(b: &[u8], point_len: usize) -> Option<&[u8]> {
    match b {
        [0x04, len, rest @ ..] if usize::from(*len) == point_len && rest.len() == point_len => {
            Some(rest)
        }
        bare if bare.len() == point_len => Some(bare),
        _ => None,
    }
}

fn read_public_key(session: &Session, locator: &Locator) -> Result<(Scheme, Vec<u8>), String> {
    let handle = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            locator.attribute(),
        ])
        .map_err(|e| token::describe(&e))?
        .first()
        .copied()
        .ok_or("no public key object")?;
    let attrs = session
        .get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::EcParams,
                AttributeType::EcPoint,
            ],
        )
        .map_err(|e| token::describe(&e))?;
    let (mut kind, mut params, mut point) = (None, None, None);
    for a in attrs {
        match a {
            Attribute::KeyType(k) => kind = Some(k),
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    let point = point.ok_or("the public key has no CKA_EC_POINT")?;
    match kind {
        Some(k) if k == KeyType::EC_EDWARDS => {
            let p = strip_octet_string(&point, 32).ok_or("CKA_EC_POINT is not an Ed25519 point")?;
            Ok((Scheme::Ed25519, p.to_vec()))
        }
        Some(k) if k == KeyType::EC => {
            if params.as_deref() != Some(curves::SECP256K1) {
                return Err("an EC key on a curve other than secp256k1".into());
            }
            let p = strip_octet_string(&point, 65)
                .or_else(|| strip_octet_string(&point, 33))
                .ok_or("CKA_EC_POINT is not a secp256k1 point")?;
            let compressed =
                crate::crypto::secp256k1::compress(p).map_err(|e| format!("CKA_EC_POINT: {e}"))?;
            Ok((Scheme::Secp256k1, compressed.to_vec()))
        }
        _ => Err("neither an Ed25519 nor a secp256k1 key".into()),
    }
}

fn check_private_key(session: &Session, locator: &Locator, token: &str) -> Result<(), String> {
    let handle = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            locator.attribute(),
        ])
        .map_err(|e| token::describe(&e))?
        .first()
        .copied()
        .ok_or_else(|| format!("pkcs11 token {token:?}, key {locator}: no private key object"))?;
    let attrs = session
        .get_attributes(
            handle,
            &[AttributeType::Sensitive, AttributeType::Extractable],
        )
        .map_err(|e| token::describe(&e))?;
    let exposed = attrs.iter().any(|a| {
        matches!(a, Attribute::Sensitive(false)) || matches!(a, Attribute::Extractable(true))
    });
    if exposed {
        tracing::warn!(token, key = %locator, "the private key is extractable or not sensitive: it can leave the HSM");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_points_are_taken_out_of_their_octet_string_or_as_they_are() {
        let point = [7u8; 32];
        let wrapped = [&[0x04, 32][..], &point].concat();
        assert_eq!(strip_octet_string(&wrapped, 32), Some(&point[..]));
        assert_eq!(strip_octet_string(&point, 32), Some(&point[..]));
        // A wrong length inside or outside the wrapper is no point.
        assert_eq!(strip_octet_string(&wrapped[..33], 32), None);
        assert_eq!(strip_octet_string(&[0x04, 31, 1, 2], 32), None);
        let mut full = [0u8; 65];
        full[0] = 0x04;
        let wrapped = [&[0x04, 65][..], &full].concat();
        assert_eq!(strip_octet_string(&wrapped, 65), Some(&full[..]));
        assert_eq!(strip_octet_string(&full, 65), Some(&full[..]));
    }

    #[test]
    fn return_values_are_named_as_the_standard_names_them() {
        assert_eq!(token::ckr_name(RvError::DeviceError), "CKR_DEVICE_ERROR");
        assert_eq!(
            token::ckr_name(RvError::SessionHandleInvalid),
            "CKR_SESSION_HANDLE_INVALID"
        );
        assert_eq!(token::ckr_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
    }

    #[test]
    fn pins_come_from_exactly_one_place_and_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pin");
        std::fs::write(&f, "1234\nignored\n").unwrap();
        assert_eq!(read_pin(Some(&f), None).unwrap().as_str(), "1234");
        std::fs::write(&f, "\n").unwrap();
        assert!(read_pin(Some(&f), None).unwrap_err().contains("empty"));
        assert!(read_pin(None, Some("SIGNER_TEST_SURELY_UNSET_VAR")).is_err());
        assert!(read_pin(Some(&f), Some("X")).is_err());
        assert!(read_pin(None, None).is_err());
    }
}
