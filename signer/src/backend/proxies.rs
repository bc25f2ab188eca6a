//! Commit-Boost proxy keys: keys the signer makes for a module, each
//! delegated to by one consensus key, kept encrypted in a directory
//! (`[commit_boost] proxy_dir`):
//!
//! ```text
//! <proxy_dir>/<module>/<consensus key, hex>/bls/<proxy public key, hex>.json
//! <proxy_dir>/<module>/<consensus key, hex>/ecdsa/<proxy address, hex>.json
//! ```
//!
//! Each file is our key file (the EIP-2335 container; `key_type =
//! "secp256k1"` for ECDSA proxies), encrypted under the proxy password,
//! with one more field, `commit_boost`: the module, the delegator, the
//! proxy and the delegation signature the module was given. A proxy is
//! written (to a temporary, fsynced, renamed, the directory fsynced) before
//! its delegation is answered, so a module never holds a delegation to a
//! key the signer lost.
//!
//! With a vault (`[commit_boost] ecdsa_proxy_vault`: a PKCS#11 token or
//! AWS KMS), secp256k1 proxies are generated inside it and never leave it;
//! their file then holds no secret, only where the key is (`"vault":
//! {"kind", "name", "reference"}`: a token's key label, or a KMS key ARN)
//! beside the same `commit_boost` object. (BLS proxies stay encrypted
//! files: neither PKCS#11 nor KMS signs BLS.)
//!
//! Every file must load at start: a proxy that does not decrypt, is not in
//! its token, or whose place in the tree does not match what it says of
//! itself, stops the daemon, as a key source would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Key;
use super::soft::keystore::{Kdf, KeystoreError};
use super::soft::{self as soft, SecretKey};
use crate::crypto::bls::BlsSecretKey;
use crate::crypto::secp256k1::Secp256k1SecretKey;

/// PBKDF2 rounds for proxy keystores: a proxy is made while its module
/// waits, and every proxy is decrypted at start (~0.1 s each here).
const KDF: Kdf = Kdf::Pbkdf2 { rounds: 262_144 };

/// A proxy's signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProxyScheme {
    /// BLS12-381; named by its 48-byte public key.
    Bls,
    /// secp256k1; named by its 20-byte Ethereum address.
    Ecdsa,
}

impl ProxyScheme {
    /// `bls` or `ecdsa`, as the API and the directory tree spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bls => "bls",
            Self::Ecdsa => "ecdsa",
        }
    }
}

/// One proxy key.
#[derive(Debug)]
pub struct ProxyKey {
    /// The module it was made for.
    pub module: String,
    /// The consensus key that delegated to it.
    pub delegator: [u8; 48],
    /// Its scheme.
    pub scheme: ProxyScheme,
    /// Its name: a BLS public key (48 bytes) or an address (20 bytes).
    pub id: Vec<u8>,
    /// The delegation's signature by the consensus key.
    pub delegation: [u8; 96],
    /// The key: in memory, or in the vault.
    pub key: Key,
}

/// A backend that generates and holds secp256k1 proxies (the server builds
/// one from `[commit_boost] ecdsa_proxy_vault`).
pub trait ProxyVault: Send + Sync + std::fmt::Debug {
    /// `pkcs11` or `kms`.
    fn kind(&self) -> &'static str;
    /// Its name in the configuration (a token's; `kms` for KMS).
    fn name(&self) -> &str;
    /// Generates a secp256k1 key named `label` inside it; returns the key
    /// and what finds it again (the label, or the KMS key's ARN).
    fn generate_secp256k1(&self, label: &str) -> Result<(Key, String), String>;
    /// The key `reference` finds.
    fn load(&self, reference: &str) -> Result<Key, String>;
}

/// Where a new proxy's secret is.
#[derive(Debug)]
enum Held {
    /// In memory: its bytes, to be encrypted into the file.
    Local(Zeroizing<[u8; 32]>),
    /// In the vault, found again by this reference.
    Vault(String),
}

/// A new proxy, not yet stored.
#[derive(Debug)]
pub struct NewProxy {
    /// Its scheme.
    pub scheme: ProxyScheme,
    /// Its name (public key or address).
    pub id: Vec<u8>,
    key: Key,
    held: Held,
}

impl NewProxy {
    /// The key, to sign the delegation's proof or test with.
    pub fn key(&self) -> &Key {
        &self.key
    }
}

/// Where a vault-held proxy is, in its file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InVault {
    kind: String,
    name: String,
    reference: String,
}

/// Why the proxy store failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A file or directory could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What happened.
        message: String,
    },
    /// A proxy file does not decrypt or is not a proxy.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No randomness or no valid key.
    #[error("generating a proxy key: {0}")]
    Generate(String),
}

/// What a proxy file says of itself, beside the keystore.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    module: String,
    delegator: String,
    scheme: String,
    proxy: String,
    delegation_signature: String,
}

#[derive(Deserialize)]
struct File {
    commit_boost: Meta,
    #[serde(default)]
    vault: Option<InVault>,
}

/// A proxy as its file describes it, read without the password
/// (`signer commit-boost proxies`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The module.
    pub module: String,
    /// The consensus key (0x hex).
    pub delegator: String,
    /// `bls` or `ecdsa`.
    pub scheme: String,
    /// The proxy (0x hex: public key or address).
    pub proxy: String,
    /// Where its secret is: `file` (encrypted in it), or the vault and reference.
    pub held: String,
    /// The file.
    pub path: PathBuf,
}

/// Every proxy file under `dir`, described without decrypting anything;
/// a file that cannot be read as one is an error naming it.
pub fn list(dir: &Path) -> Result<Vec<Listing>, ProxyError> {
    proxy_files(dir)?
        .into_iter()
        .map(|path| {
            let json = std::fs::read(&path).map_err(|e| io(&path, e))?;
            let file = serde_json::from_slice::<File>(&json).map_err(|e| ProxyError::Invalid {
                path: path.clone(),
                message: format!("not a proxy key file: {e}"),
            })?;
            let held = match &file.vault {
                None => "file".to_owned(),
                Some(v) if v.kind == "kms" => format!("kms {}", v.reference),
                Some(v) => format!("{}:{} {}", v.kind, v.name, v.reference),
            };
            let m = file.commit_boost;
            Ok(Listing {
                module: m.module,
                delegator: m.delegator,
                scheme: m.scheme,
                proxy: m.proxy,
                held,
                path,
            })
        })
        .collect()
}

/// Every `*.json` four levels down `dir` (module / delegator / scheme / file).
fn proxy_files(dir: &Path) -> Result<Vec<PathBuf>, ProxyError> {
    let mut out = Vec::new();
    let mut level = vec![dir.to_owned()];
    for depth in 0..4 {
        let mut next = Vec::new();
        for d in level {
            let entries = std::fs::read_dir(&d).map_err(|e| io(&d, e))?;
            for e in entries {
                let path = e.map_err(|e| io(&d, e))?.path();
                let is_dir = path.is_dir();
                match depth {
                    3 if !is_dir && path.extension().is_some_and(|x| x == "json") => out.push(path),
                    0..3 if is_dir => next.push(path),
                    _ => {}
                }
            }
        }
        level = next;
    }
    out.sort();
    Ok(out)
}

/// A proxy's place: module, scheme, name.
type Slot = (String, ProxyScheme, Vec<u8>);

/// The proxies, by module and name.
#[derive(Debug)]
pub struct ProxyStore {
    dir: PathBuf,
    password: Zeroizing<String>,
    keys: RwLock<BTreeMap<Slot, Arc<ProxyKey>>>,
    vault: Option<Box<dyn ProxyVault>>,
    /// When the directory was last looked at for proxies written by another
    /// instance (one scan at a time).
    scanned: std::sync::Mutex<std::time::Instant>,
}

/// How often a shared `proxy_dir` is looked at again, at most.
const RESCAN: std::time::Duration = std::time::Duration::from_secs(1);

fn io(path: &Path, e: impl std::fmt::Display) -> ProxyError {
    ProxyError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    hex::decode(s.strip_prefix("0x").unwrap_or(s))
        .ok()?
        .try_into()
        .ok()
}

impl ProxyStore {
    /// Opens `dir` (created, 0700, if missing) and decrypts every proxy in
    /// it with the password in `password_file`, finding those a vault holds
    /// in `vault`; new secp256k1 proxies are made in `vault` when given.
    pub fn open(
        dir: &Path,
        password_file: &Path,
        vault: Option<Box<dyn ProxyVault>>,
    ) -> Result<Self, ProxyError> {
        let password = crate::secret_file::read_password_file(password_file).map_err(|e| {
            io(
                password_file,
                format!("{e} (the proxy keystores' password)"),
            )
        })?;
        if password.is_empty() {
            return Err(ProxyError::Invalid {
                path: password_file.to_owned(),
                message: "empty: proxy keys need a password to be stored encrypted".into(),
            });
        }
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io(dir, e))?;
        }
        let store = Self {
            dir: dir.to_owned(),
            password,
            keys: RwLock::new(BTreeMap::new()),
            vault,
            scanned: std::sync::Mutex::new(std::time::Instant::now()),
        };
        let mut keys = BTreeMap::new();
        for path in store.files()? {
            let key = store.load(&path)?;
            keys.insert(
                (key.module.clone(), key.scheme, key.id.clone()),
                Arc::new(key),
            );
        }
        *store.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        Ok(store)
    }

    fn files(&self) -> Result<Vec<PathBuf>, ProxyError> {
        proxy_files(&self.dir)
    }

    fn load(&self, path: &Path) -> Result<ProxyKey, ProxyError> {
        let invalid = |message: String| ProxyError::Invalid {
            path: path.to_owned(),
            message,
        };
        let json = std::fs::read(path).map_err(|e| io(path, e))?;
        let file = serde_json::from_slice::<File>(&json)
            .map_err(|e| invalid(format!("not a proxy key file: {e}")))?;
        let meta = file.commit_boost;
        let key: Key = match (&file.vault, &self.vault) {
            (None, _) => soft::load_key_file(&json, &self.password)
                .map_err(|e| match e {
                    KeystoreError::ChecksumMismatch => invalid(
                        "does not decrypt with the proxy password (proxy_password_file)".into(),
                    ),
                    other => invalid(other.to_string()),
                })?
                .into(),
            (Some(at), Some(vault)) if at.kind == vault.kind() && at.name == vault.name() => vault
                .load(&at.reference)
                .map_err(|e| invalid(format!("its key {:?} is not usable: {e}", at.reference)))?,
            (Some(at), _) => {
                let setting = match at.kind.as_str() {
                    "kms" => "\"kms\"".to_owned(),
                    kind => format!("\"{kind}:{}\"", at.name),
                };
                return Err(invalid(format!(
                    "its key is held by {} {:?} ({}): set [commit_boost] ecdsa_proxy_vault = {setting}",
                    at.kind, at.name, at.reference
                )));
            }
        };
        let scheme = match (meta.scheme.as_str(), key.scheme()) {
            ("bls", super::Scheme::Bls) => ProxyScheme::Bls,
            ("ecdsa", super::Scheme::Secp256k1) => ProxyScheme::Ecdsa,
            (s, k) => {
                return Err(invalid(format!(
                    "says scheme {s:?} but holds a {} key",
                    k.key_type()
                )));
            }
        };
        let id = match scheme {
            ProxyScheme::Bls => key.public_key(),
            ProxyScheme::Ecdsa => crate::crypto::secp256k1::address_of(&key.public_key())
                .map_err(|e| invalid(e.to_string()))?
                .to_vec(),
        };
        let delegator = unhex::<48>(&meta.delegator)
            .ok_or_else(|| invalid("commit_boost.delegator is not a BLS public key".into()))?;
        let delegation = unhex::<96>(&meta.delegation_signature).ok_or_else(|| {
            invalid("commit_boost.delegation_signature is not a BLS signature".into())
        })?;
        if hex::decode(meta.proxy.strip_prefix("0x").unwrap_or(&meta.proxy)).ok()
            != Some(id.clone())
        {
            return Err(invalid(format!(
                "commit_boost.proxy says {} but the key is 0x{}",
                meta.proxy,
                hex::encode(&id)
            )));
        }
        // Where it is must agree with what it says.
        if path != self.path_of(&meta.module, &delegator, scheme, &id) {
            return Err(invalid(format!(
                "belongs at {} (module {:?}, delegator {}): moved by hand?",
                self.path_of(&meta.module, &delegator, scheme, &id)
                    .display(),
                meta.module,
                meta.delegator
            )));
        }
        Ok(ProxyKey {
            module: meta.module,
            delegator,
            scheme,
            id,
            delegation,
            key,
        })
    }

    fn path_of(
        &self,
        module: &str,
        delegator: &[u8; 48],
        scheme: ProxyScheme,
        id: &[u8],
    ) -> PathBuf {
        self.dir
            .join(module)
            .join(hex::encode(delegator))
            .join(scheme.name())
            .join(format!("{}.json", hex::encode(id)))
    }

    /// Loads the proxies another instance sharing `proxy_dir` wrote since
    /// this one last looked (at most once a second; only files not held
    /// yet, each decrypted once). One that does not load is logged and
    /// skipped: at start it would have stopped the daemon. Returns how many
    /// were added.
    pub fn refresh(&self) -> usize {
        let Ok(mut scanned) = self.scanned.try_lock() else {
            return 0; // another thread is scanning
        };
        if scanned.elapsed() < RESCAN {
            return 0;
        }
        *scanned = std::time::Instant::now();
        let held: std::collections::HashSet<PathBuf> = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|k| self.path_of(&k.module, &k.delegator, k.scheme, &k.id))
            .collect();
        let files = match self.files() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "Commit-Boost proxy store: cannot look for new proxies");
                return 0;
            }
        };
        let mut added = 0;
        for path in files.into_iter().filter(|p| !held.contains(p)) {
            match self.load(&path) {
                Ok(key) => {
                    tracing::info!(file = %path.display(), "Commit-Boost proxy written by another instance loaded");
                    self.keys.write().unwrap_or_else(|p| p.into_inner()).insert(
                        (key.module.clone(), key.scheme, key.id.clone()),
                        Arc::new(key),
                    );
                    added += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Commit-Boost proxy store: a new proxy file does not load; skipped")
                }
            }
        }
        added
    }

    fn held(&self, module: &str, scheme: ProxyScheme, id: &[u8]) -> Option<Arc<ProxyKey>> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(module.to_owned(), scheme, id.to_vec()))
            .cloned()
    }

    /// The proxy of `module` named `id`, if there is one (looking in the
    /// directory again when it is not held: another instance may have made it).
    pub fn find(&self, module: &str, scheme: ProxyScheme, id: &[u8]) -> Option<Arc<ProxyKey>> {
        self.held(module, scheme, id).or_else(|| {
            (self.refresh() > 0)
                .then(|| self.held(module, scheme, id))
                .flatten()
        })
    }

    /// Every proxy of `module` (the directory looked at again first).
    pub fn of_module(&self, module: &str) -> Vec<Arc<ProxyKey>> {
        self.refresh();
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|k| k.module == module)
            .cloned()
            .collect()
    }

    /// How many proxies are held.
    pub fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes a proxy of `scheme` for `module`: a secp256k1 one in the vault
    /// when there is one, otherwise a random key in memory.
    pub fn generate(&self, module: &str, scheme: ProxyScheme) -> Result<NewProxy, ProxyError> {
        let bad = |e: crate::crypto::CryptoError| ProxyError::Generate(e.to_string());
        Ok(match (scheme, &self.vault) {
            (ProxyScheme::Bls, _) => {
                let (k, secret) = BlsSecretKey::generate().map_err(bad)?;
                NewProxy {
                    scheme,
                    id: k.public_key().to_bytes().to_vec(),
                    key: SecretKey::Bls(k).into(),
                    held: Held::Local(secret),
                }
            }
            (ProxyScheme::Ecdsa, None) => {
                let (k, secret) = Secp256k1SecretKey::generate().map_err(bad)?;
                NewProxy {
                    scheme,
                    id: k.address().to_vec(),
                    key: SecretKey::Secp256k1(k).into(),
                    held: Held::Local(secret),
                }
            }
            (ProxyScheme::Ecdsa, Some(vault)) => {
                let mut tag = [0u8; 8];
                getrandom::fill(&mut tag).map_err(|e| ProxyError::Generate(e.to_string()))?;
                let label = format!("commit-boost-proxy-{module}-{}", hex::encode(tag));
                let (key, reference) = vault.generate_secp256k1(&label).map_err(|e| {
                    ProxyError::Generate(format!("in {} {:?}: {e}", vault.kind(), vault.name()))
                })?;
                let id = crate::crypto::secp256k1::address_of(&key.public_key())
                    .map_err(bad)?
                    .to_vec();
                NewProxy {
                    scheme,
                    id,
                    key,
                    held: Held::Vault(reference),
                }
            }
        })
    }

    /// Encrypts `proxy` and writes it durably for `module` under `delegator`
    /// with its delegation `signature`; from then on it can sign.
    pub fn store(
        &self,
        module: &str,
        delegator: &[u8; 48],
        proxy: NewProxy,
        signature: [u8; 96],
    ) -> Result<Arc<ProxyKey>, ProxyError> {
        let path = self.path_of(module, delegator, proxy.scheme, &proxy.id);
        let description = format!(
            "Commit-Boost {} proxy of module {module}",
            proxy.scheme.name()
        );
        let mut doc: serde_json::Value = match (&proxy.held, proxy.key.local(), &self.vault) {
            (Held::Local(secret), Some(local), _) => serde_json::from_str(
                &soft::write_key_file(local, &**secret, &self.password, KDF, &description)
                    .map_err(|e| io(&path, e))?,
            )
            .map_err(|e| io(&path, e))?,
            (Held::Vault(reference), _, Some(vault)) => serde_json::json!({
                "description": description,
                "pubkey": hex::encode(proxy.key.public_key()),
                "key_type": "secp256k1",
                "vault": InVault {
                    kind: vault.kind().to_owned(),
                    name: vault.name().to_owned(),
                    reference: reference.clone(),
                },
            }),
            _ => {
                return Err(ProxyError::Generate(
                    "a proxy with neither a secret nor a vault".into(),
                ));
            }
        };
        let meta = Meta {
            module: module.to_owned(),
            delegator: format!("0x{}", hex::encode(delegator)),
            scheme: proxy.scheme.name().to_owned(),
            proxy: format!("0x{}", hex::encode(&proxy.id)),
            delegation_signature: format!("0x{}", hex::encode(signature)),
        };
        if let Some(obj) = doc.as_object_mut() {
            obj.insert(
                "commit_boost".into(),
                serde_json::to_value(&meta).map_err(|e| io(&path, e))?,
            );
        }
        let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| io(&path, e))?;
        let parent = path.parent().unwrap_or(&self.dir).to_owned();
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&parent)
                .map_err(|e| io(&parent, e))?;
        }
        // The new directories' entries are made durable by fsyncing each
        // parent up to the store's root.
        crate::secret_file::replace(&path, &crate::secret_file::beside(&path, ".tmp"), &bytes)
            .map_err(|e| io(&path, e))?;
        let mut d = parent.as_path();
        while let Some(up) = d.parent().filter(|_| d != self.dir) {
            std::fs::File::open(up)
                .and_then(|f| f.sync_all())
                .map_err(|e| io(up, e))?;
            d = up;
        }
        let key = Arc::new(ProxyKey {
            module: module.to_owned(),
            delegator: *delegator,
            scheme: proxy.scheme,
            id: proxy.id,
            delegation: signature,
            key: proxy.key,
        });
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((module.to_owned(), key.scheme, key.id.clone()), key.clone());
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> ProxyStore {
        std::fs::write(dir.join("pw"), "proxy password\n").unwrap();
        ProxyStore::open(&dir.join("proxies"), &dir.join("pw"), None).unwrap()
    }

    #[test]
    fn proxies_are_stored_encrypted_and_load_again() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        assert!(s.is_empty());
        let delegator = [0xa1; 48];
        let bls = s.generate("PRECONF", ProxyScheme::Bls).unwrap();
        let ecdsa = s.generate("PRECONF", ProxyScheme::Ecdsa).unwrap();
        let (bls_id, ecdsa_id) = (bls.id.clone(), ecdsa.id.clone());
        assert_eq!((bls_id.len(), ecdsa_id.len()), (48, 20));
        s.store("PRECONF", &delegator, bls, [7; 96]).unwrap();
        s.store("PRECONF", &delegator, ecdsa, [8; 96]).unwrap();
        let file = dir
            .path()
            .join("proxies/PRECONF")
            .join(hex::encode(delegator))
            .join("ecdsa")
            .join(format!("{}.json", hex::encode(&ecdsa_id)));
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("\"key_type\": \"secp256k1\""), "{text}");

        let again = store(dir.path());
        assert_eq!(again.len(), 2);
        let b = again.find("PRECONF", ProxyScheme::Bls, &bls_id).unwrap();
        assert_eq!((b.delegator, b.delegation), (delegator, [7; 96]));
        assert!(b.key.bls().is_some());
        let e = again
            .find("PRECONF", ProxyScheme::Ecdsa, &ecdsa_id)
            .unwrap();
        assert_eq!(
            crate::crypto::secp256k1::address_of(&e.key.public_key()).unwrap()[..],
            ecdsa_id[..]
        );
        // Another module does not see them.
        assert!(again.find("OTHER", ProxyScheme::Bls, &bls_id).is_none());
        assert!(again.of_module("OTHER").is_empty());
        assert_eq!(again.of_module("PRECONF").len(), 2);

        // The wrong password, and a file moved to another module, stop the load.
        std::fs::write(dir.path().join("pw2"), "wrong").unwrap();
        let e = ProxyStore::open(&dir.path().join("proxies"), &dir.path().join("pw2"), None)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("does not decrypt with the proxy password"),
            "{e}"
        );
        let moved = dir
            .path()
            .join("proxies/OTHER")
            .join(hex::encode(delegator))
            .join("ecdsa");
        std::fs::create_dir_all(&moved).unwrap();
        std::fs::rename(&file, moved.join(file.file_name().unwrap())).unwrap();
        let e = ProxyStore::open(&dir.path().join("proxies"), &dir.path().join("pw"), None)
            .unwrap_err();
        assert!(e.to_string().contains("moved by hand?"), "{e}");
    }
}
