//! The start cache (`[start_cache]`): the secrets of decrypted keystores,
//! kept in one sealed file so that a restart with an unchanged key set runs
//! no KDF. EIP-2335's scrypt costs about a second and 256 MiB per keystore;
//! with 10,000 keystores that is tens of minutes of start on any machine.
//!
//! **What is cached.** Exactly what the [`KdfMemo`] holds after a load: per
//! keystore in service, its memo id (SHA-256 over the keystore's bytes and
//! its password) and its decrypted secret. A keystore or password that
//! changes has another id, so it misses and goes through the KDF; one that
//! is removed leaves the memo at the load's sweep and the cache at the next
//! write. The cache is rewritten only when the set of ids changes.
//!
//! **How it is sealed.** The whole list, ids included (an id would let a
//! password be tested with SHA-256 instead of scrypt), is encrypted with
//! AES-256-CTR and authenticated with HMAC-SHA256 (encrypt-then-MAC), under
//! two keys derived by HMAC from 32 bytes of key material. The material is
//! - `password_file`: scrypt (2^18, 8, 1, as EIP-2335) of the file's secret
//!   and a random salt stored in the file; derived once per process;
//! - `pkcs11` / `kms`: random, made afresh at every write and stored sealed
//!   beside the ciphertext by the token's AES key (`CKM_AES_GCM`) or KMS
//!   `Encrypt`. The material is generated as a valid BLS scalar (top two
//!   bits clear: 254 random bits) so that it goes through the same sealing
//!   code, and the same checks, as sealed BLS keys.
//!
//! **Failure is never fatal.** A cache that is missing, damaged, sealed
//! under a key this signer cannot reach, or made with another password is
//! reported in the log and ignored: every keystore goes through the KDF (as
//! with no cache) and the cache is written again. What it protects and what
//! not: see `docs/keys.md`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::keys::Backends;
use crate::backend::kms::seal::KmsSealedKey;
use crate::backend::pkcs11::seal::SealedKey;
use crate::backend::soft::keystore::{Decrypted, KdfMemo};
use crate::config;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;
type HmacSha256 = Hmac<Sha256>;
/// Decrypted keystores by memo id.
type Entries = Vec<([u8; 32], Decrypted)>;

const KIND: &str = "signer-start-cache";
const MAC_PREFIX: &[u8] = b"signer/start-cache/v1";
/// EIP-2335's scrypt parameters: ~1 s and 256 MiB, once per start.
const SCRYPT: (u8, u32, u32) = (18, 8, 1);

/// How the file's key material was sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum Sealing {
    /// Derived from `password_file`.
    Password {
        /// Hex.
        salt: String,
        log_n: u8,
        r: u32,
        p: u32,
    },
    /// Sealed by a token's AES key.
    Pkcs11 { token: String, sealed: SealedKey },
    /// Sealed by KMS.
    Kms { sealed: KmsSealedKey },
}

/// The file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheFile {
    version: u32,
    kind: String,
    sealing: Sealing,
    /// When written (UTC, RFC 3339).
    written: String,
    /// Hex, 16 bytes.
    iv: String,
    /// Hex.
    ciphertext: String,
    /// HMAC-SHA256 over [`MAC_PREFIX`] ‖ iv ‖ ciphertext, hex.
    mac: String,
}

/// The two keys derived from the material.
struct Keys {
    enc: Zeroizing<[u8; 32]>,
    mac: Zeroizing<[u8; 32]>,
}

impl Keys {
    fn derive(material: &[u8]) -> Result<Self, String> {
        let one = |label: &[u8]| -> Result<Zeroizing<[u8; 32]>, String> {
            let mut m = HmacSha256::new_from_slice(material).map_err(|e| e.to_string())?;
            m.update(label);
            Ok(Zeroizing::new(m.finalize().into_bytes().into()))
        };
        Ok(Self {
            enc: one(b"signer start cache: encryption")?,
            mac: one(b"signer start cache: authentication")?,
        })
    }

    fn tag(&self, iv: &[u8], ciphertext: &[u8]) -> Result<[u8; 32], String> {
        let mut m = HmacSha256::new_from_slice(&*self.mac).map_err(|e| e.to_string())?;
        m.update(MAC_PREFIX);
        m.update(iv);
        m.update(ciphertext);
        Ok(m.finalize().into_bytes().into())
    }
}

/// The cache of one daemon.
pub(super) struct StartCache {
    config: config::StartCache,
    backends: Backends,
    /// With `password_file`: the salt and the keys derived from it, once
    /// derived (by a read or the first write).
    password: Mutex<Option<(Vec<u8>, Arc<Keys>)>>,
    /// The ids the file holds (as read or last written).
    written: Mutex<Vec<[u8; 32]>>,
}

impl std::fmt::Debug for StartCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartCache")
            .field("file", &self.config.file)
            .finish_non_exhaustive()
    }
}

impl StartCache {
    pub(super) fn new(config: config::StartCache, backends: Backends) -> Self {
        Self {
            config,
            backends,
            password: Mutex::new(None),
            written: Mutex::new(Vec::new()),
        }
    }

    /// Puts what the file holds into `memo`, logging the outcome. Never
    /// fails: a cache that cannot be used only means the KDF runs.
    pub(super) fn prime(&self, memo: &mut KdfMemo) {
        let file = self.config.file.display();
        let started = Instant::now();
        match self.read() {
            Ok(None) => tracing::info!(
                %file,
                "start cache: none yet; it is written once the keys have loaded"
            ),
            Ok(Some(entries)) => {
                tracing::info!(
                    %file,
                    keystores = entries.len(),
                    took = %super::starting::human(started.elapsed()),
                    "start cache: opened; unchanged keystores need no KDF run"
                );
                if let Ok(mut w) = self.written.lock() {
                    *w = entries.iter().map(|(id, _)| *id).collect();
                }
                memo.prime(entries);
            }
            Err(e) => tracing::warn!(
                %file,
                error = %e,
                "start cache: not used; every keystore goes through the KDF and the cache is written again"
            ),
        }
    }

    /// Writes what `memo` holds, if that is not what the file holds.
    pub(super) fn store(&self, memo: &KdfMemo) {
        let held = memo.held();
        let ids: Vec<[u8; 32]> = held.iter().map(|(id, _)| *id).collect();
        if self.written.lock().is_ok_and(|w| *w == ids) {
            return;
        }
        let started = Instant::now();
        match self.write(&held) {
            Ok(()) => {
                tracing::info!(
                    file = %self.config.file.display(),
                    keystores = held.len(),
                    took = %super::starting::human(started.elapsed()),
                    "start cache written"
                );
                if let Ok(mut w) = self.written.lock() {
                    *w = ids;
                }
            }
            Err(e) => tracing::warn!(
                file = %self.config.file.display(),
                error = %e,
                "start cache: not written; the next start decrypts the keystores the cache lacks"
            ),
        }
    }

    fn read(&self) -> Result<Option<Entries>, String> {
        let text = match std::fs::read(&self.config.file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let file: CacheFile = serde_json::from_slice(&text).map_err(|e| format!("damaged: {e}"))?;
        if file.version != 1 || file.kind != KIND {
            return Err(format!(
                "not a start cache (version {} kind {:?})",
                file.version, file.kind
            ));
        }
        let keys = self.open_sealing(&file.sealing)?;
        let iv = hex::decode(&file.iv).map_err(|_| "damaged: iv is not hex".to_owned())?;
        let mut plain = Zeroizing::new(
            hex::decode(&file.ciphertext).map_err(|_| "damaged: ciphertext is not hex")?,
        );
        let mac = hex::decode(&file.mac).map_err(|_| "damaged: mac is not hex".to_owned())?;
        let expected = keys.tag(&iv, &plain)?;
        if !crate::secret_file::constant_time_eq(&expected, &mac) {
            return Err(match file.sealing {
                Sealing::Password { .. } => {
                    "it does not open with this password_file (changed since it was written?) or was altered".into()
                }
                _ => "its authentication tag does not match: altered or damaged".into(),
            });
        }
        let iv: [u8; 16] = iv
            .try_into()
            .map_err(|_| "damaged: iv is not 16 bytes".to_owned())?;
        Aes256Ctr::new(&(*keys.enc).into(), &iv.into()).apply_keystream(&mut plain);
        decode_entries(&plain).map(Some)
    }

    /// The keys for a file sealed as `sealing`.
    fn open_sealing(&self, sealing: &Sealing) -> Result<Arc<Keys>, String> {
        match sealing {
            Sealing::Password { salt, log_n, r, p } => {
                let salt = hex::decode(salt).map_err(|_| "damaged: salt is not hex".to_owned())?;
                self.password_keys(Some((salt, (*log_n, *r, *p))))
            }
            Sealing::Pkcs11 { token, sealed } => {
                let registry = self.backends.pkcs11.as_ref().ok_or(
                    "sealed by a PKCS#11 token, and the configuration has no [pkcs11] section",
                )?;
                let material = registry
                    .unseal_secret(sealed, std::slice::from_ref(token))
                    .map_err(|e| format!("token {token:?}: {e}"))?;
                Keys::derive(&material).map(Arc::new)
            }
            Sealing::Kms { sealed } => {
                let kms = self
                    .backends
                    .kms
                    .as_ref()
                    .ok_or("sealed by KMS, and the configuration has no [kms] section")?;
                let material = kms.unseal_secret(sealed)?;
                Keys::derive(&material).map(Arc::new)
            }
        }
    }

    /// With `password_file`: the keys for `salt` (a file's), or for the salt
    /// already derived (or a new one) when `None`.
    fn password_keys(&self, salt: Option<(Vec<u8>, (u8, u32, u32))>) -> Result<Arc<Keys>, String> {
        let path = self
            .config
            .password_file
            .as_deref()
            .ok_or("sealed with a password, and [start_cache] has no password_file now")?;
        let mut held = self
            .password
            .lock()
            .map_err(|_| "internal state poisoned".to_owned())?;
        let (salt, params) = match (salt, held.as_ref()) {
            (Some((s, params)), Some((h, keys))) if *h == s && params == SCRYPT => {
                return Ok(keys.clone());
            }
            (Some(given), _) => given,
            (None, Some((_, keys))) => return Ok(keys.clone()),
            (None, None) => {
                let mut s = vec![0u8; 32];
                getrandom::fill(&mut s).map_err(|e| e.to_string())?;
                (s, SCRYPT)
            }
        };
        let password = read_secret(path)?;
        let (log_n, r, p) = params;
        let scrypt_params =
            scrypt::Params::new(log_n, r, p).map_err(|e| format!("scrypt parameters: {e}"))?;
        let mut material = Zeroizing::new([0u8; 32]);
        scrypt::scrypt(password.as_bytes(), &salt, &scrypt_params, &mut *material)
            .map_err(|e| format!("scrypt: {e}"))?;
        let keys = Arc::new(Keys::derive(&*material)?);
        if params == SCRYPT {
            *held = Some((salt, keys.clone()));
        }
        Ok(keys)
    }

    fn write(&self, entries: &[([u8; 32], Decrypted)]) -> Result<(), String> {
        let (sealing, keys) = self.new_sealing()?;
        let mut iv = [0u8; 16];
        getrandom::fill(&mut iv).map_err(|e| e.to_string())?;
        let mut data = encode_entries(entries)?;
        Aes256Ctr::new(&(*keys.enc).into(), &iv.into()).apply_keystream(&mut data);
        let mac = keys.tag(&iv, &data)?;
        let file = CacheFile {
            version: 1,
            kind: KIND.into(),
            sealing,
            written: crate::audit::now(),
            iv: hex::encode(iv),
            ciphertext: hex::encode(&*data),
            mac: hex::encode(mac),
        };
        let text = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
        let tmp = crate::secret_file::beside(&self.config.file, ".tmp");
        crate::secret_file::replace(&self.config.file, &tmp, &text)
    }

    /// The sealing the configuration asks for, and its keys.
    fn new_sealing(&self) -> Result<(Sealing, Arc<Keys>), String> {
        if self.config.password_file.is_some() {
            let keys = self.password_keys(None)?;
            let salt = self
                .password
                .lock()
                .ok()
                .and_then(|h| h.as_ref().map(|(s, _)| hex::encode(s)))
                .ok_or("no salt derived")?;
            let (log_n, r, p) = SCRYPT;
            return Ok((Sealing::Password { salt, log_n, r, p }, keys));
        }
        let material = material()?;
        let keys = Arc::new(Keys::derive(&*material)?);
        if let Some((token, label)) = self.config.pkcs11_target() {
            let registry = self
                .backends
                .pkcs11
                .as_ref()
                .ok_or("the configuration has no [pkcs11] section")?;
            let sealed = registry.seal(token, label, &*material, "signer start cache key")?;
            return Ok((
                Sealing::Pkcs11 {
                    token: token.into(),
                    sealed,
                },
                keys,
            ));
        }
        if let Some(key) = &self.config.kms {
            let kms = self
                .backends
                .kms
                .as_ref()
                .ok_or("the configuration has no [kms] section")?;
            let sealed = kms.seal_bls(key, &*material)?;
            return Ok((Sealing::Kms { sealed }, keys));
        }
        Err("[start_cache] names no key to seal under".into())
    }
}

/// 32 random bytes that are also a valid BLS secret (big-endian, below the
/// group order: the top two bits cleared leave 254 random bits, and zero is
/// drawn again), so that the sealing code for BLS keys takes them.
fn material() -> Result<Zeroizing<[u8; 32]>, String> {
    let mut m = Zeroizing::new([0u8; 32]);
    loop {
        getrandom::fill(&mut *m).map_err(|e| e.to_string())?;
        if let Some(top) = m.first_mut() {
            *top &= 0x3f;
        }
        if m.iter().any(|b| *b != 0) {
            return Ok(m);
        }
    }
}

fn read_secret(path: &Path) -> Result<Zeroizing<String>, String> {
    let s = crate::secret_file::read_password_file(path)
        .map_err(|e| format!("password_file {}: {e}", path.display()))?;
    if s.is_empty() {
        return Err(format!("password_file {} is empty", path.display()));
    }
    Ok(s)
}

/// Per entry: id (32) ‖ secret length (u16 BE) ‖ secret ‖ declared public
/// key length (u8) ‖ it ‖ key type length (u8) ‖ it.
fn encode_entries(entries: &[([u8; 32], Decrypted)]) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut out = Zeroizing::new(Vec::with_capacity(entries.len() * 160));
    for (id, d) in entries {
        let secret_len = u16::try_from(d.secret.len()).map_err(|_| "secret too long")?;
        out.extend_from_slice(id);
        out.extend_from_slice(&secret_len.to_be_bytes());
        out.extend_from_slice(&d.secret);
        for text in [&d.pubkey, &d.key_type] {
            let t = text.as_deref().unwrap_or("").as_bytes();
            out.push(u8::try_from(t.len()).map_err(|_| "field too long")?);
            out.extend_from_slice(t);
        }
    }
    Ok(out)
}

fn decode_entries(mut b: &[u8]) -> Result<Entries, String> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if b.len() < n {
            return Err("damaged: entries end early".into());
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    let text = |b: &mut &[u8]| -> Result<Option<String>, String> {
        let n = usize::from(*take(b, 1)?.first().unwrap_or(&0));
        let t = std::str::from_utf8(take(b, n)?).map_err(|_| "damaged: not UTF-8")?;
        Ok((!t.is_empty()).then(|| t.to_owned()))
    };
    let mut out = Vec::new();
    while !b.is_empty() {
        let id: [u8; 32] = take(&mut b, 32)?
            .try_into()
            .map_err(|_| "damaged: id".to_owned())?;
        let len = take(&mut b, 2)?;
        let len = usize::from(u16::from_be_bytes([
            *len.first().unwrap_or(&0),
            *len.get(1).unwrap_or(&0),
        ]));
        let secret = Zeroizing::new(take(&mut b, len)?.to_vec());
        let pubkey = text(&mut b)?;
        let key_type = text(&mut b)?;
        out.push((
            id,
            Decrypted {
                secret,
                pubkey,
                key_type,
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_truncation_is_refused() {
        let entries = vec![
            (
                [7u8; 32],
                Decrypted {
                    secret: Zeroizing::new(vec![1, 2, 3]),
                    pubkey: Some("ab".into()),
                    key_type: None,
                },
            ),
            (
                [9u8; 32],
                Decrypted {
                    secret: Zeroizing::new(vec![4; 32]),
                    pubkey: None,
                    key_type: Some("ed25519".into()),
                },
            ),
        ];
        let bytes = encode_entries(&entries).unwrap();
        let back = decode_entries(&bytes).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].0, [7u8; 32]);
        assert_eq!(*back[0].1.secret, vec![1, 2, 3]);
        assert_eq!(back[0].1.pubkey.as_deref(), Some("ab"));
        assert_eq!(back[1].1.key_type.as_deref(), Some("ed25519"));
        assert!(back[1].1.pubkey.is_none());
        let cut = &bytes[..bytes.len() - 1];
        assert_eq!(
            decode_entries(cut).unwrap_err(),
            "damaged: entries end early"
        );
    }

    #[test]
    fn material_is_a_bls_secret() {
        for _ in 0..64 {
            let m = material().unwrap();
            assert!(m[0] < 0x40);
            crate::crypto::bls::BlsSecretKey::from_bytes(&*m).unwrap();
        }
    }
}
