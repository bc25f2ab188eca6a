//! EIP-2335 keystores (version 4): scrypt or PBKDF2-HMAC-SHA256 derives a
//! decryption key from the password; SHA-256(key[16..32] ‖ ciphertext) checks
//! it; AES-128-CTR with key[0..16] decrypts the secret.
//!
//! Passwords are NFKD-normalised and stripped of C0, C1 and DEL control codes,
//! as the EIP says. KDF parameters are bounded (scrypt n ≤ 2^20 with r·p small,
//! PBKDF2 c ≤ 2^24): a keystore must not be able to exhaust the signer's memory
//! or stall its start.

use std::path::Path;

use aes::cipher::{KeyIvInit, StreamCipher};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::crypto::CryptoError;
use crate::crypto::bls::BlsSecretKey;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// Largest scrypt `n` accepted (2^20: 1 GiB with r = 8).
pub const MAX_SCRYPT_LOG_N: u8 = 20;
/// Largest PBKDF2 iteration count accepted.
pub const MAX_PBKDF2_ROUNDS: u32 = 1 << 24;

/// Why a keystore was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// Not JSON of the keystore shape.
    #[error("keystore is not valid EIP-2335 JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A version other than 4.
    #[error("keystore version {0} is not supported (only 4)")]
    UnsupportedVersion(u64),
    /// A KDF, checksum or cipher function this implementation does not know.
    #[error("keystore {module} function {function:?} is not supported")]
    UnsupportedFunction {
        /// `kdf`, `checksum` or `cipher`.
        module: &'static str,
        /// The function named.
        function: String,
    },
    /// A field is missing, not hex, of the wrong length, or out of bounds.
    #[error("keystore field {0} is missing or invalid")]
    Malformed(&'static str),
    /// The checksum does not match: the password is wrong, or the keystore's
    /// ciphertext or checksum was altered. (The two cannot be told apart: the
    /// checksum is the only thing the password is checked against.)
    #[error("wrong password, or the keystore was altered (checksum mismatch)")]
    ChecksumMismatch,
    /// The decrypted secret is not a valid key.
    #[error("keystore secret is not a valid key: {0}")]
    InvalidSecret(CryptoError),
    /// The secret decrypts, but to a key other than the declared `pubkey`.
    #[error("keystore declares public key {declared} but its secret belongs to {actual}")]
    PublicKeyMismatch {
        /// The `pubkey` field.
        declared: String,
        /// The public key of the decrypted secret.
        actual: String,
    },
    /// Reading the keystore or password file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
struct Keystore {
    crypto: Crypto,
    #[serde(default)]
    pubkey: Option<String>,
    version: u64,
    /// Our extension (see `docs/keys.md`): absent means BLS, as in EIP-2335.
    #[serde(default)]
    key_type: Option<String>,
}

/// What a keystore holds once decrypted.
#[derive(Clone)]
pub struct Decrypted {
    /// The secret bytes.
    pub secret: Zeroizing<Vec<u8>>,
    /// The declared public key, lower-case hex without `0x`, if any.
    pub pubkey: Option<String>,
    /// Our `key_type` extension (`bls`, `ed25519`, `secp256k1`), if present.
    pub key_type: Option<String>,
}

impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decrypted")
            .field("pubkey", &self.pubkey)
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Crypto {
    kdf: Module,
    checksum: Module,
    cipher: Module,
}

#[derive(Deserialize)]
struct Module {
    function: String,
    params: Value,
    message: String,
}

fn hex_field(v: &str, what: &'static str) -> Result<Vec<u8>, KeystoreError> {
    hex::decode(v.strip_prefix("0x").unwrap_or(v)).map_err(|_| KeystoreError::Malformed(what))
}

fn param_u64(params: &Value, name: &'static str) -> Result<u64, KeystoreError> {
    params
        .get(name)
        .and_then(Value::as_u64)
        .ok_or(KeystoreError::Malformed(name))
}

fn param_hex(params: &Value, name: &'static str) -> Result<Vec<u8>, KeystoreError> {
    hex_field(
        params
            .get(name)
            .and_then(Value::as_str)
            .ok_or(KeystoreError::Malformed(name))?,
        name,
    )
}

/// The EIP-2335 password transformation: NFKD, then drop C0, C1 and DEL.
pub fn normalise_password(password: &str) -> Zeroizing<String> {
    Zeroizing::new(
        password
            .nfkd()
            .filter(|c| !matches!(*c as u32, 0x00..=0x1f | 0x7f | 0x80..=0x9f))
            .collect(),
    )
}

/// Reads a password file, dropping one trailing newline (`\n` or `\r\n`), as
/// files written by editors and `echo` have.
pub fn read_password_file(path: &Path) -> Result<Zeroizing<String>, KeystoreError> {
    crate::secret_file::read_password_file(path).map_err(|source| KeystoreError::Io {
        path: path.to_owned(),
        source,
    })
}

fn decryption_key(kdf: &Module, password: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let p = &kdf.params;
    if param_u64(p, "dklen")? != 32 {
        return Err(KeystoreError::Malformed("dklen"));
    }
    let salt = param_hex(p, "salt")?;
    let mut key = Zeroizing::new([0u8; 32]);
    match kdf.function.as_str() {
        "scrypt" => {
            let n = param_u64(p, "n")?;
            let r = u32::try_from(param_u64(p, "r")?).map_err(|_| KeystoreError::Malformed("r"))?;
            let pp =
                u32::try_from(param_u64(p, "p")?).map_err(|_| KeystoreError::Malformed("p"))?;
            if !n.is_power_of_two() || n < 2 {
                return Err(KeystoreError::Malformed("n"));
            }
            let log_n =
                u8::try_from(n.trailing_zeros()).map_err(|_| KeystoreError::Malformed("n"))?;
            if log_n > MAX_SCRYPT_LOG_N || u64::from(r) * u64::from(pp) > 64 {
                return Err(KeystoreError::Malformed("scrypt parameters (too costly)"));
            }
            let params = scrypt::Params::new(log_n, r, pp)
                .map_err(|_| KeystoreError::Malformed("scrypt parameters"))?;
            scrypt::scrypt(password, &salt, &params, key.as_mut_slice())
                .map_err(|_| KeystoreError::Malformed("dklen"))?;
        }
        "pbkdf2" => {
            if p.get("prf").and_then(Value::as_str) != Some("hmac-sha256") {
                return Err(KeystoreError::Malformed("prf"));
            }
            let c = u32::try_from(param_u64(p, "c")?).map_err(|_| KeystoreError::Malformed("c"))?;
            if c == 0 || c > MAX_PBKDF2_ROUNDS {
                return Err(KeystoreError::Malformed("c"));
            }
            pbkdf2::pbkdf2_hmac::<Sha256>(password, &salt, c, key.as_mut_slice());
        }
        other => {
            return Err(KeystoreError::UnsupportedFunction {
                module: "kdf",
                function: other.to_owned(),
            });
        }
    }
    Ok(key)
}

/// Decrypts the secret of an EIP-2335 keystore.
pub fn decrypt(json: &[u8], password: &str) -> Result<Decrypted, KeystoreError> {
    let ks: Keystore = serde_json::from_slice(json)?;
    if ks.version != 4 {
        return Err(KeystoreError::UnsupportedVersion(ks.version));
    }
    let c = &ks.crypto;
    if c.checksum.function != "sha256" {
        return Err(KeystoreError::UnsupportedFunction {
            module: "checksum",
            function: c.checksum.function.clone(),
        });
    }
    if c.cipher.function != "aes-128-ctr" {
        return Err(KeystoreError::UnsupportedFunction {
            module: "cipher",
            function: c.cipher.function.clone(),
        });
    }
    let checksum = hex_field(&c.checksum.message, "checksum.message")?;
    if checksum.len() != 32 {
        return Err(KeystoreError::Malformed("checksum.message"));
    }
    let ciphertext = hex_field(&c.cipher.message, "cipher.message")?;
    let iv: [u8; 16] = param_hex(&c.cipher.params, "iv")?
        .try_into()
        .map_err(|_| KeystoreError::Malformed("iv"))?;
    let password = normalise_password(password);
    let key = decryption_key(&c.kdf, password.as_bytes())?;
    let (aes_key, check_key) = key.split_at(16);
    let mut hasher = Sha256::new();
    hasher.update(check_key);
    hasher.update(&ciphertext);
    if hasher.finalize().as_slice() != checksum.as_slice() {
        return Err(KeystoreError::ChecksumMismatch);
    }
    let mut secret = Zeroizing::new(ciphertext);
    let aes_key: [u8; 16] = aes_key
        .try_into()
        .map_err(|_| KeystoreError::Malformed("dklen"))?;
    Aes128Ctr::new(&aes_key.into(), &iv.into()).apply_keystream(&mut secret);
    let pubkey = ks
        .pubkey
        .map(|p| p.strip_prefix("0x").unwrap_or(&p).to_ascii_lowercase());
    Ok(Decrypted {
        secret,
        pubkey,
        key_type: ks.key_type,
    })
}

/// Loads a BLS key from an EIP-2335 keystore, refusing one whose secret does
/// not belong to its declared public key.
pub fn load_bls(json: &[u8], password: &str) -> Result<BlsSecretKey, KeystoreError> {
    load_bls_with(&mut KdfMemo::default(), json, password)
}

/// [`load_bls`], reusing what `memo` already decrypted.
pub fn load_bls_with(
    memo: &mut KdfMemo,
    json: &[u8],
    password: &str,
) -> Result<BlsSecretKey, KeystoreError> {
    let d = memo.decrypt(json, password)?;
    let key = BlsSecretKey::from_bytes(&d.secret).map_err(KeystoreError::InvalidSecret)?;
    check_declared(d.pubkey, &key.public_key().to_bytes())?;
    Ok(key)
}

/// What the memo knows a keystore by: its bytes and the password.
fn memo_id(json: &[u8], password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((json.len() as u64).to_le_bytes());
    h.update(json);
    h.update(password.as_bytes());
    h.finalize().into()
}

/// Keystores already decrypted, by content (keystore bytes and password).
///
/// A key reload that finds a keystore and its password unchanged takes the
/// secret from here instead of running the KDF again: scrypt with EIP-2335's
/// parameters costs ~256 MiB and about a second per key, and reloads that
/// re-ran it for every unchanged file took a daemon to gigabytes of RSS.
/// A changed file (or password) has another digest and is decrypted again;
/// a failed decryption is not remembered. [`KdfMemo::sweep`] after each
/// load forgets what that load did not use (removed or replaced files), so
/// the memo holds exactly the secrets in service.
#[derive(Default)]
pub struct KdfMemo {
    entries: std::collections::HashMap<[u8; 32], (Decrypted, bool)>,
    /// Put here by [`KdfMemo::warm`] this round and not asked for yet (their
    /// KDF run is already counted).
    warmed: std::collections::HashSet<[u8; 32]>,
    /// This round: (taken from the memo, decrypted).
    round: (usize, usize),
    last: (usize, usize),
}

impl std::fmt::Debug for KdfMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KdfMemo")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl KdfMemo {
    /// [`decrypt`], or what an earlier call with the same bytes returned.
    pub fn decrypt(&mut self, json: &[u8], password: &str) -> Result<Decrypted, KeystoreError> {
        let id = memo_id(json, password);
        if let Some((d, used)) = self.entries.get_mut(&id) {
            *used = true;
            if !self.warmed.remove(&id) {
                self.round.0 += 1;
            }
            return Ok(d.clone());
        }
        let d = decrypt(json, password)?;
        self.round.1 += 1;
        self.entries.insert(id, (d.clone(), true));
        Ok(d)
    }

    /// Decrypts the keystores of `jobs` (keystore bytes, password) that are
    /// not held yet, `threads` at a time, so that the loads that follow find
    /// them here: the KDF (scrypt: ~1 s and 256 MiB each) runs on every core
    /// instead of one. `each` hears of every KDF run as it ends (`true`: the
    /// keystore opened). Failures are not kept: the load that follows meets
    /// them again and reports them with their file.
    pub fn warm(
        &mut self,
        jobs: &[(Vec<u8>, Zeroizing<String>)],
        threads: usize,
        each: &(dyn Fn(bool) + Sync),
    ) {
        let mut todo: Vec<([u8; 32], &[u8], &str)> = Vec::new();
        for (json, password) in jobs {
            let id = memo_id(json, password);
            if !self.entries.contains_key(&id) && !todo.iter().any(|(t, ..)| *t == id) {
                todo.push((id, json, password));
            }
        }
        if todo.is_empty() {
            return;
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let opened = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..threads.clamp(1, todo.len()) {
                scope.spawn(|| {
                    while let Some((id, json, password)) =
                        todo.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        let result = decrypt(json, password);
                        each(result.is_ok());
                        if let Ok(d) = result {
                            opened
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .push((*id, d));
                        }
                    }
                });
            }
        });
        for (id, d) in opened
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            self.round.1 += 1;
            self.warmed.insert(id);
            self.entries.insert(id, (d, false));
        }
    }

    /// Adds keystores decrypted in an earlier run (the start cache), by
    /// their memo id. They count as taken from the memo when a load asks for
    /// them, and go at the next [`KdfMemo::sweep`] if none does.
    pub fn prime(&mut self, entries: Vec<([u8; 32], Decrypted)>) {
        for (id, d) in entries {
            self.entries.entry(id).or_insert((d, false));
        }
    }

    /// Everything held, by memo id (sorted), for the start cache.
    pub fn held(&self) -> Vec<([u8; 32], Decrypted)> {
        let mut out: Vec<_> = self
            .entries
            .iter()
            .map(|(id, (d, _))| (*id, d.clone()))
            .collect();
        out.sort_by_key(|a| a.0);
        out
    }

    /// Forgets every entry not used since the last sweep, and ends the round.
    pub fn sweep(&mut self) {
        self.warmed.clear();
        self.entries.retain(|_, (_, used)| std::mem::take(used));
        self.last = std::mem::take(&mut self.round);
    }

    /// The last round (up to [`KdfMemo::sweep`]): keystores taken from the
    /// memo, and keystores decrypted (the KDF ran).
    pub fn last_round(&self) -> (usize, usize) {
        self.last
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Refuses a keystore whose declared public key is not the secret's.
pub(crate) fn check_declared(declared: Option<String>, actual: &[u8]) -> Result<(), KeystoreError> {
    let actual = hex::encode(actual);
    match declared {
        Some(declared) if declared != actual => {
            Err(KeystoreError::PublicKeyMismatch { declared, actual })
        }
        _ => Ok(()),
    }
}

/// How [`encrypt`] derives the key from the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kdf {
    /// scrypt with n = 2^log_n, r = 8, p = 1.
    Scrypt {
        /// log2 of n (18 is what EIP-2335 tooling uses).
        log_n: u8,
    },
    /// PBKDF2-HMAC-SHA256 with this many rounds.
    Pbkdf2 {
        /// Iterations (262,144 in EIP-2335 tooling).
        rounds: u32,
    },
}

impl Kdf {
    /// What `staking-deposit-cli` and this signer write by default.
    pub const DEFAULT: Kdf = Kdf::Scrypt { log_n: 18 };
}

fn random<const N: usize>() -> Result<[u8; N], KeystoreError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| KeystoreError::Io {
        path: "getrandom".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(b)
}

/// Encrypts `secret` into a version-4 keystore. `key_type` is our extension
/// (None for a plain EIP-2335 BLS keystore); `pubkey` is stored so the key can
/// be listed without the password, and checked against the secret at load.
pub fn encrypt(
    secret: &[u8],
    password: &str,
    kdf: Kdf,
    pubkey: &[u8],
    key_type: Option<&str>,
    description: &str,
) -> Result<String, KeystoreError> {
    let salt: [u8; 32] = random()?;
    let iv: [u8; 16] = random()?;
    let mut id: [u8; 16] = random()?;
    id[6] = (id[6] & 0x0f) | 0x40; // UUID version 4
    id[8] = (id[8] & 0x3f) | 0x80; // RFC 4122 variant
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        hex::encode(&id[..4]),
        hex::encode(&id[4..6]),
        hex::encode(&id[6..8]),
        hex::encode(&id[8..10]),
        hex::encode(&id[10..])
    );
    let kdf_module = match kdf {
        Kdf::Scrypt { log_n } => serde_json::json!({
            "function": "scrypt",
            "params": {"dklen": 32, "n": 1u64 << log_n, "r": 8, "p": 1, "salt": hex::encode(salt)},
            "message": ""
        }),
        Kdf::Pbkdf2 { rounds } => serde_json::json!({
            "function": "pbkdf2",
            "params": {"dklen": 32, "c": rounds, "prf": "hmac-sha256", "salt": hex::encode(salt)},
            "message": ""
        }),
    };
    let module: Module = serde_json::from_value(kdf_module.clone())?;
    let password = normalise_password(password);
    let key = decryption_key(&module, password.as_bytes())?;
    let (aes_key, check_key) = key.split_at(16);
    let aes_key: [u8; 16] = aes_key
        .try_into()
        .map_err(|_| KeystoreError::Malformed("dklen"))?;
    let mut ciphertext = secret.to_vec();
    Aes128Ctr::new(&aes_key.into(), &iv.into()).apply_keystream(&mut ciphertext);
    let mut hasher = Sha256::new();
    hasher.update(check_key);
    hasher.update(&ciphertext);
    let mut doc = serde_json::json!({
        "crypto": {
            "kdf": kdf_module,
            "checksum": {"function": "sha256", "params": {}, "message": hex::encode(hasher.finalize())},
            "cipher": {"function": "aes-128-ctr", "params": {"iv": hex::encode(iv)}, "message": hex::encode(ciphertext)}
        },
        "description": description,
        "pubkey": hex::encode(pubkey),
        "path": "",
        "uuid": uuid,
        "version": 4
    });
    if let (Some(t), Some(obj)) = (key_type, doc.as_object_mut()) {
        obj.insert("key_type".into(), t.into());
    }
    Ok(serde_json::to_string_pretty(&doc)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_normalisation_follows_the_eip() {
        // The EIP's example: mathematical fraktur letters NFKD to ASCII; the key emoji stays.
        let p = normalise_password("𝔱𝔢𝔰𝔱𝔭𝔞𝔰𝔰𝔴𝔬𝔯𝔡🔑");
        assert_eq!(
            hex::encode(p.as_bytes()),
            "7465737470617373776f7264f09f9491"
        );
        assert_eq!(
            normalise_password("a\u{0}b\u{7f}c\u{85}d e").as_str(),
            "abcd e"
        );
    }

    #[test]
    fn password_files_lose_one_trailing_newline_only() {
        let dir = std::env::temp_dir().join(format!("pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (content, want) in [
            ("secret\n", "secret"),
            ("secret\r\n", "secret"),
            ("secret", "secret"),
            ("sec ret \n\n", "sec ret \n"),
        ] {
            let p = dir.join("pw");
            std::fs::write(&p, content).unwrap();
            assert_eq!(
                read_password_file(&p).unwrap().as_str(),
                want,
                "{content:?}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
