//! Loading keys from their sources (key files, keystores, PKCS#11 tokens,
//! KMS) into a [`Keyring`], with the remote backends they need.

use std::path::Path;
use std::sync::Arc;

use super::starting::KeyLoad;
use crate::backend::kms::Kms;
use crate::backend::pkcs11::{Locator, Registry as Pkcs11Registry};
use crate::backend::soft::{self, keystore, web3signer};
use crate::backend::{Key, SecretKey};
use crate::config::{Config, KeySource};
use crate::metrics::Metrics;
use crate::pipeline::Keyring;

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
    load_keys_with(
        sources,
        backends,
        &mut keystore::KdfMemo::default(),
        &KeyLoad::new(sources),
    )
}

/// [`load_keys`], reusing the keystores `memo` already decrypted (a reload
/// runs no KDF for an unchanged file); `memo` keeps only what this load used.
pub fn load_keys_with(
    sources: &[KeySource],
    backends: &Backends,
    memo: &mut keystore::KdfMemo,
    progress: &KeyLoad,
) -> (Keyring, Vec<String>) {
    // Every keystore through the KDF first, on as many threads as cores and
    // memory allow; the pass below then takes them from the memo.
    let jobs: Vec<_> = sources
        .iter()
        .flat_map(|s| match s {
            KeySource::File {
                path,
                password_file,
            } => web3signer::keystore_job(path, password_file)
                .into_iter()
                .collect(),
            KeySource::Web3signerDir { path } => web3signer::keystore_jobs(path),
            _ => Vec::new(),
        })
        .collect();
    memo.warm(&jobs, kdf_threads(), &|ok| progress.decrypted(ok));
    let pkcs11 = backends.pkcs11.as_deref();
    let kms = backends.kms.as_ref();
    let need_kms = |what: &str| format!("{what}: a kms key needs a [kms] section");
    let mut loaded: Vec<Key> = Vec::new();
    let mut errors = Vec::new();
    // `counted`: progress already heard of it (a directory counts its own).
    let mut add = |key: Key, from: &Path, counted: bool| {
        tracing::debug!(from = %from.display(), scheme = key.scheme().key_type(), backend = key.backend(), "key loaded");
        if !counted {
            progress.loaded();
        }
        loaded.push(key);
    };
    let failed = |errors: &mut Vec<String>, e: String| {
        progress.failed();
        errors.push(e);
    };
    let file_key = |memo: &mut keystore::KdfMemo,
                    path: &Path,
                    password_file: &Path|
     -> Result<SecretKey, String> {
        let json = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let password = keystore::read_password_file(password_file).map_err(|e| e.to_string())?;
        soft::load_key_file_with(memo, &json, &password)
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    for source in sources {
        match source {
            KeySource::File {
                path,
                password_file,
            } => match file_key(memo, path, password_file) {
                Ok(key) => add(key.into(), path, false),
                Err(e) => failed(&mut errors, e),
            },
            KeySource::Web3signerDir { path } => {
                // Counted as each key decrypts: a directory may hold thousands.
                let mut each = |ok: bool| {
                    if ok {
                        progress.loaded();
                    } else {
                        progress.failed();
                    }
                };
                match web3signer::load_dir_with(path, memo, &mut each) {
                    Ok(report) => {
                        for (file, e) in report.errors {
                            errors.push(format!("{}: {e}", file.display()));
                        }
                        for (file, key) in report.keys {
                            add(key.into(), &file, true);
                        }
                    }
                    Err(e) => failed(&mut errors, e.to_string()),
                }
            }
            KeySource::PrivValidatorKey { path } => {
                let key = std::fs::read(path)
                    .map_err(|e| e.to_string())
                    .and_then(|json| {
                        soft::cometbft::load_priv_validator_key(&json).map_err(|e| e.to_string())
                    });
                match key {
                    Ok(key) => {
                        tracing::warn!(file = %path.display(), "priv_validator_key.json is not encrypted; move the key into a key file");
                        add(key.into(), path, false);
                    }
                    Err(e) => failed(&mut errors, format!("{}: {e}", path.display())),
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
                    Ok(key) => add(key, Path::new("pkcs11"), false),
                    Err(e) => failed(&mut errors, e),
                }
            }
            KeySource::Kms { key_id } => {
                match kms
                    .ok_or_else(|| need_kms(key_id))
                    .and_then(|k| k.load_key(key_id))
                {
                    Ok(key) => add(key, Path::new("kms"), false),
                    Err(e) => failed(&mut errors, e),
                }
            }
            KeySource::KmsTags { tags } => {
                match kms
                    .ok_or_else(|| need_kms("kms_tags"))
                    .and_then(|k| k.keys_by_tags(tags))
                {
                    Ok(keys) if keys.is_empty() => {
                        failed(
                            &mut errors,
                            format!("kms_tags {tags:?}: no key carries these tags"),
                        );
                    }
                    Ok(keys) => {
                        for key in keys {
                            add(key, Path::new("kms"), false);
                        }
                    }
                    Err(e) => failed(&mut errors, e),
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
                    Ok(key) => add(key, path, false),
                    Err(e) => failed(&mut errors, e),
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
                    Ok(key) => add(key, path, false),
                    Err(e) => failed(&mut errors, e),
                }
            }
        }
    }
    memo.sweep();
    let mut ring = Keyring::default();
    ring.extend(loaded);
    (ring, errors)
}

/// Threads for the KDF pass: one per core, but no more than memory holds
/// at 512 MiB each (EIP-2335's scrypt takes 256 MiB; the rest is margin).
pub(super) fn kdf_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let available_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<usize>().ok())
    });
    match available_kib {
        Some(kib) => cores.min(kib / (512 * 1024)).max(1),
        None => cores,
    }
}

pub(super) fn record_keys(metrics: &Metrics, keys: &Keyring) {
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
