//! Key backends: where a key lives and how it signs.
//!
//! - [`soft`]: keys in local encrypted files, decrypted into process memory;
//! - [`pkcs11`]: Ed25519 and secp256k1 keys that never leave a PKCS#11
//!   token, and BLS keys sealed under a token's AES key (unsealed at load);
//! - [`kms`]: the same with AWS KMS.
//!
//! The pipeline sees one type, [`Key`]. Whatever a remote backend (HSM, KMS)
//! returns is checked here, in one place, before it becomes a signature:
//! Ed25519 signatures are verified, ECDSA signatures are normalised to low-S
//! and verified, and the Ethereum recovery id is computed from the key.

pub mod kms;
pub mod locked;
pub mod pkcs11;
pub mod proxies;
pub mod soft;

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::crypto::bls::BlsSecretKey;
use crate::crypto::secp256k1::{self, RecoverableSignature};
use crate::crypto::{CryptoError, ed25519};
pub use soft::{Scheme, SecretKey};

/// Why a backend could not sign. Reported to clients as `BACKEND_UNAVAILABLE`
/// (the detail goes to the log, not to the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// No token / service answered within the operation timeout.
    #[error("{backend}: no answer within {timeout_ms} ms")]
    Timeout {
        /// Which backend.
        backend: String,
        /// The limit.
        timeout_ms: u64,
    },
    /// Every place holding the key failed; the last failure.
    #[error("{0}")]
    Unavailable(String),
    /// The backend answered with something that is not a valid signature by this key.
    #[error("{backend} returned an invalid signature: {why}")]
    BadSignature {
        /// Which backend.
        backend: String,
        /// What was wrong.
        why: CryptoError,
    },
    /// The key cannot do this (a BLS key asked for ECDSA, …).
    #[error("the key cannot sign this: {0}")]
    WrongScheme(&'static str),
}

/// A key held outside the process: the backend signs, we check.
pub trait RemoteKey: Send + Sync + std::fmt::Debug {
    /// Ed25519 or secp256k1 (BLS has no remote form: it is sealed instead).
    fn scheme(&self) -> Scheme;
    /// 32-byte Ed25519 or 33-byte compressed secp256k1 public key.
    fn public_key(&self) -> &[u8];
    /// Short name for logs and metrics (`pkcs11`, `kms`).
    fn backend(&self) -> &'static str;
    /// Ed25519: the signature over `payload` (pure Ed25519). secp256k1: `r‖s`
    /// (either S) over the 32-byte digest `payload`.
    fn sign_raw(&self, payload: &[u8]) -> Result<Vec<u8>, BackendError>;
    /// secp256k1 over SHA-256(`msg`), hashed by the backend (KMS's RAW),
    /// when it can; `None` to have the caller hash and sign the digest.
    fn sign_sha256_message(&self, _msg: &[u8]) -> Option<Result<Vec<u8>, BackendError>> {
        None
    }
    /// False while no place holding the key answers (readiness).
    fn servable(&self) -> bool {
        true
    }
}

/// A signing key as the pipeline uses it.
#[derive(Debug)]
pub enum Key {
    /// The secret is in process memory (key files).
    Local(SecretKey),
    /// A secret unsealed by an HSM or KMS: boxed so that its address stays
    /// put, and its pages `mlock`ed where permitted.
    Unsealed(Box<SecretKey>, Option<locked::Lock>),
    /// The secret never leaves its backend.
    Remote(Arc<dyn RemoteKey>),
}

impl From<SecretKey> for Key {
    fn from(k: SecretKey) -> Self {
        Self::Local(k)
    }
}

/// A remote backend's answer that is not a valid signature by its key.
fn bad_answer(r: &dyn RemoteKey, why: CryptoError) -> BackendError {
    BackendError::BadSignature {
        backend: r.backend().into(),
        why,
    }
}

impl Key {
    /// The secret, when it is in process memory.
    fn local(&self) -> Option<&SecretKey> {
        match self {
            Self::Local(k) => Some(k),
            Self::Unsealed(k, _) => Some(k),
            Self::Remote(_) => None,
        }
    }

    /// Which scheme.
    pub fn scheme(&self) -> Scheme {
        match self {
            Self::Local(k) => k.scheme(),
            Self::Unsealed(k, _) => k.scheme(),
            Self::Remote(r) => r.scheme(),
        }
    }

    /// The public key (see [`SecretKey::public_key`] for the encodings).
    pub fn public_key(&self) -> Vec<u8> {
        match self {
            Self::Local(k) => k.public_key(),
            Self::Unsealed(k, _) => k.public_key(),
            Self::Remote(r) => r.public_key().to_vec(),
        }
    }

    /// Where the key lives: `local`, `unsealed` or the remote backend's name.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Local(_) => "local",
            Self::Unsealed(..) => "unsealed",
            Self::Remote(r) => r.backend(),
        }
    }

    /// The remote key, if the secret is held elsewhere.
    pub fn remote(&self) -> Option<&Arc<dyn RemoteKey>> {
        match self {
            Self::Remote(r) => Some(r),
            _ => None,
        }
    }

    /// The BLS secret, if this is a BLS key (always in memory).
    pub fn bls(&self) -> Option<&BlsSecretKey> {
        match self.local() {
            Some(SecretKey::Bls(k)) => Some(k),
            _ => None,
        }
    }

    /// Pure Ed25519 over `msg`.
    pub fn sign_ed25519(&self, msg: &[u8]) -> Result<[u8; 64], BackendError> {
        match (self.local(), self) {
            (Some(SecretKey::Ed25519(k)), _) => Ok(k.sign(msg)),
            (None, Self::Remote(r)) if r.scheme() == Scheme::Ed25519 => {
                let sig = r.sign_raw(msg)?;
                let bad = |why| bad_answer(r.as_ref(), why);
                ed25519::verify(r.public_key(), msg, &sig).map_err(bad)?;
                <[u8; 64]>::try_from(sig.as_slice())
                    .map_err(|_| bad(CryptoError::BadEncoding("Ed25519 signature")))
            }
            _ => Err(BackendError::WrongScheme("not an Ed25519 key")),
        }
    }

    /// secp256k1 over a 32-byte digest: low-S, with the recovery id.
    pub fn sign_secp256k1(&self, digest: &[u8; 32]) -> Result<RecoverableSignature, BackendError> {
        match (self.local(), self) {
            (Some(SecretKey::Secp256k1(k)), _) => Ok(k.sign_prehash(digest)),
            (None, Self::Remote(r)) if r.scheme() == Scheme::Secp256k1 => {
                let raw = r.sign_raw(digest)?;
                let bad = |why| bad_answer(r.as_ref(), why);
                let rs = secp256k1::normalize(&raw).map_err(bad)?;
                // `recovery_id` verifies the signature on the way.
                let recovery_id =
                    secp256k1::recovery_id(r.public_key(), digest, &rs).map_err(bad)?;
                Ok(RecoverableSignature { rs, recovery_id })
            }
            _ => Err(BackendError::WrongScheme("not a secp256k1 key")),
        }
    }

    /// Signs as CometBFT verifies a consensus key: Ed25519 over the sign
    /// bytes, or secp256k1 (low-S `r‖s`) over their SHA-256.
    pub fn sign_comet(&self, msg: &[u8]) -> Result<Vec<u8>, BackendError> {
        match self.scheme() {
            Scheme::Ed25519 => self.sign_ed25519(msg).map(|s| s.to_vec()),
            Scheme::Secp256k1 => {
                let digest: [u8; 32] = Sha256::digest(msg).into();
                match (self.local(), self) {
                    (Some(SecretKey::Secp256k1(k)), _) => Ok(k.sign_prehash(&digest).rs.to_vec()),
                    (None, Self::Remote(r)) => {
                        let raw = match r.sign_sha256_message(msg) {
                            Some(signed) => signed?,
                            None => r.sign_raw(&digest)?,
                        };
                        let bad = |why| bad_answer(r.as_ref(), why);
                        let rs = secp256k1::normalize(&raw).map_err(bad)?;
                        secp256k1::verify_prehash(r.public_key(), &digest, &rs).map_err(bad)?;
                        Ok(rs.to_vec())
                    }
                    _ => Err(BackendError::WrongScheme("not a secp256k1 key")),
                }
            }
            Scheme::Bls => Err(BackendError::WrongScheme(
                "BLS keys do not sign CometBFT messages here",
            )),
        }
    }
}
