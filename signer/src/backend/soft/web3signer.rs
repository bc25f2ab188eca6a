//! Web3Signer key-configuration files, so an operator can point this signer at
//! the directory they already have. Supported: `type: file-raw` (BLS or
//! SECP256K1 `privateKey`) and `type: file-keystore` (EIP-2335 BLS keystore
//! with `keystoreFile` and `keystorePasswordFile`; relative paths are taken
//! relative to the configuration file). Other types (vaults, cloud KMS) are
//! refused by name.
//!
//! These files are flat `key: value` YAML, possibly several documents per file
//! (`---`). They are read by a small strict parser for exactly that subset:
//! anything else (nesting, lists, anchors, block scalars, unknown escapes) is
//! refused with its line number rather than guessed at. (The usual Rust YAML
//! crate, serde_yaml, is no longer maintained; a subset this small does not
//! justify another.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::keystore::{self, KeystoreError};
use super::{Scheme, SecretKey};

/// Why a key-configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyConfigError {
    /// Reading a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// YAML outside the flat subset these files use.
    #[error("line {line}: {what} (only flat `key: value` YAML is read)")]
    Yaml {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// A required field is missing.
    #[error("missing field {0}")]
    Missing(&'static str),
    /// A key source this signer does not read from Web3Signer files.
    #[error("unsupported key configuration {0:?}")]
    UnsupportedType(String),
    /// A `keyType` other than BLS or SECP256K1.
    #[error("unsupported keyType {0:?}")]
    UnsupportedKeyType(String),
    /// `privateKey` is not a valid key.
    #[error("privateKey is not a valid key: {0}")]
    InvalidKey(crate::crypto::CryptoError),
    /// The keystore could not be loaded.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The keystore file the configuration names could not be used (wrong
    /// password, a public key that is not its secret's, …).
    #[error("keystore {}: {source}", path.display())]
    KeystoreFile {
        /// The keystore file.
        path: PathBuf,
        /// Why.
        source: KeystoreError,
    },
}

/// One document: key → value.
pub type Document = BTreeMap<String, Zeroizing<String>>;

fn unquote(raw: &str, line: usize) -> Result<String, KeyConfigError> {
    let err = |what| KeyConfigError::Yaml { line, what };
    if let Some(inner) = raw.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or(err("unterminated double-quoted value"))?;
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    _ => return Err(err("unsupported escape in a double-quoted value")),
                },
                '"' => return Err(err("stray double quote")),
                c => out.push(c),
            }
        }
        Ok(out)
    } else if let Some(inner) = raw.strip_prefix('\'') {
        let inner = inner
            .strip_suffix('\'')
            .ok_or(err("unterminated single-quoted value"))?;
        Ok(inner.replace("''", "'"))
    } else {
        // A plain scalar ends at " #" (a comment).
        let plain = raw.split(" #").next().unwrap_or_default().trim_end();
        if plain.is_empty() || plain.starts_with(['[', '{', '|', '>', '&', '*', '!', '%', '@', '`'])
        {
            return Err(err("unsupported value (only plain or quoted scalars)"));
        }
        Ok(plain.to_owned())
    }
}

/// Parses flat `key: value` YAML documents separated by `---`.
pub fn parse_documents(text: &str) -> Result<Vec<Document>, KeyConfigError> {
    let mut docs = Vec::new();
    let mut current = Document::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        let t = l.trim();
        if t == "---" {
            if !current.is_empty() {
                docs.push(std::mem::take(&mut current));
            }
            continue;
        }
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if l.starts_with([' ', '\t']) {
            return Err(KeyConfigError::Yaml {
                line,
                what: "indented line (nested values are not supported)",
            });
        }
        let (key, value) = l.split_once(':').ok_or(KeyConfigError::Yaml {
            line,
            what: "expected `key: value`",
        })?;
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(KeyConfigError::Yaml {
                line,
                what: "unsupported key",
            });
        }
        if !value.is_empty() && !value.starts_with(' ') {
            return Err(KeyConfigError::Yaml {
                line,
                what: "expected a space after the colon",
            });
        }
        let value = Zeroizing::new(unquote(value.trim(), line)?);
        if current.insert(key.to_owned(), value).is_some() {
            return Err(KeyConfigError::Yaml {
                line,
                what: "duplicate key",
            });
        }
    }
    if !current.is_empty() {
        docs.push(current);
    }
    Ok(docs)
}

fn field<'a>(doc: &'a Document, name: &'static str) -> Result<&'a str, KeyConfigError> {
    doc.get(name)
        .map(|v| v.as_str())
        .ok_or(KeyConfigError::Missing(name))
}

/// The EIP-2335 keystores (bytes, password) the `file-keystore` documents
/// of `dir` name, for [`keystore::KdfMemo::warm`]. What cannot be read is
/// left out (the load reports it), and so is a password that is not a
/// regular file (a pipe would be read twice).
pub fn keystore_jobs(dir: &Path) -> Vec<(Vec<u8>, Zeroizing<String>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut jobs = Vec::new();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if !path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path).map(Zeroizing::new) else {
            continue;
        };
        let base = path.parent().unwrap_or(dir);
        for doc in parse_documents(&text).unwrap_or_default() {
            let keystore = doc
                .get("type")
                .is_some_and(|t| t.as_str() == "file-keystore")
                && doc.get("keyType").is_none_or(|k| k.as_str() == "BLS");
            if let (true, Ok(ks), Ok(pw)) = (
                keystore,
                field(&doc, "keystoreFile"),
                field(&doc, "keystorePasswordFile"),
            ) {
                let (ks, pw) = (base.join(ks), base.join(pw));
                if let Some(job) = keystore_job(&ks, &pw) {
                    jobs.push(job);
                }
            }
        }
    }
    jobs
}

/// A keystore and its password, read for [`keystore::KdfMemo::warm`];
/// `None` when either cannot be read or the password is not a regular file.
pub fn keystore_job(keystore: &Path, password: &Path) -> Option<(Vec<u8>, Zeroizing<String>)> {
    if !std::fs::metadata(password).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let json = std::fs::read(keystore).ok()?;
    let password = keystore::read_password_file(password).ok()?;
    Some((json, password))
}

/// Loads the key one document describes; `base` resolves relative paths.
pub fn load_document(doc: &Document, base: &Path) -> Result<SecretKey, KeyConfigError> {
    load_document_with(doc, base, &mut keystore::KdfMemo::default())
}

/// [`load_document`], reusing what `memo` already decrypted.
pub fn load_document_with(
    doc: &Document,
    base: &Path,
    memo: &mut keystore::KdfMemo,
) -> Result<SecretKey, KeyConfigError> {
    let kind = field(doc, "type")?;
    let scheme = match doc.get("keyType").map(|v| v.as_str()).unwrap_or("BLS") {
        "BLS" => Scheme::Bls,
        "SECP256K1" => Scheme::Secp256k1,
        other => return Err(KeyConfigError::UnsupportedKeyType(other.to_owned())),
    };
    match kind {
        "file-raw" => {
            let hex_key = field(doc, "privateKey")?;
            let secret = Zeroizing::new(
                hex::decode(hex_key.strip_prefix("0x").unwrap_or(hex_key)).map_err(|_| {
                    KeyConfigError::InvalidKey(crate::crypto::CryptoError::InvalidSecretKey)
                })?,
            );
            SecretKey::from_secret(scheme, &secret).map_err(KeyConfigError::InvalidKey)
        }
        "file-keystore" => {
            if scheme != Scheme::Bls {
                // Web3Signer's SECP256K1 keystores are Web3 Secret Storage v3 (keccak MAC).
                return Err(KeyConfigError::UnsupportedType(
                    "file-keystore with keyType SECP256K1".into(),
                ));
            }
            let ks_path = base.join(field(doc, "keystoreFile")?);
            let pw_path = base.join(field(doc, "keystorePasswordFile")?);
            let json =
                Zeroizing::new(
                    std::fs::read(&ks_path).map_err(|source| KeyConfigError::Io {
                        path: ks_path.clone(),
                        source,
                    })?,
                );
            let password = keystore::read_password_file(&pw_path)?;
            keystore::load_bls_with(memo, &json, &password)
                .map(SecretKey::Bls)
                .map_err(|source| KeyConfigError::KeystoreFile {
                    path: ks_path,
                    source,
                })
        }
        other => Err(KeyConfigError::UnsupportedType(other.to_owned())),
    }
}

/// What [`load_dir`] found.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Keys loaded, with the file each came from.
    pub keys: Vec<(PathBuf, SecretKey)>,
    /// Files (or documents in them) that were refused, with why.
    pub errors: Vec<(PathBuf, KeyConfigError)>,
}

/// Loads every `*.yaml` / `*.yml` file of `dir` (not recursive), in name
/// order. A bad file does not stop the others; the caller decides what a
/// non-empty `errors` means (a daemon should refuse to start rather than run
/// with fewer keys than configured).
pub fn load_dir(dir: &Path) -> Result<LoadReport, KeyConfigError> {
    load_dir_with(dir, &mut keystore::KdfMemo::default(), &mut |_| {})
}

/// [`load_dir`], reusing what `memo` already decrypted; `each` hears of
/// every key as it loads (`true`) or fails (`false`), for progress.
pub fn load_dir_with(
    dir: &Path,
    memo: &mut keystore::KdfMemo,
    each: &mut dyn FnMut(bool),
) -> Result<LoadReport, KeyConfigError> {
    let io = |source| KeyConfigError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut report = LoadReport::default();
    for path in files {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Zeroizing::new(t),
            Err(source) => {
                each(false);
                report
                    .errors
                    .push((path.clone(), KeyConfigError::Io { path, source }));
                continue;
            }
        };
        let base = path.parent().unwrap_or(dir).to_owned();
        match parse_documents(&text) {
            Ok(docs) => {
                for doc in docs {
                    let loaded = load_document_with(&doc, &base, memo);
                    each(loaded.is_ok());
                    match loaded {
                        Ok(key) => report.keys.push((path.clone(), key)),
                        Err(e) => report.errors.push((path.clone(), e)),
                    }
                }
            }
            Err(e) => {
                each(false);
                report.errors.push((path, e));
            }
        }
    }
    Ok(report)
}
