//! BLS keys sealed under a token's AES key.
//!
//! PKCS#11 has no BLS12-381 mechanism, so a BLS secret cannot be used inside
//! the token. Instead it is stored as AES-256-GCM ciphertext made by the
//! token (`CKM_AES_GCM`) with an AES key that is sensitive and not
//! extractable: the file is useless without the token and its PIN. At load
//! the token decrypts it into zeroized, `mlock`ed memory and the signer
//! signs in process.
//!
//! What this protects: the key file, backups and copies of the disk (they
//! hold ciphertext only); a stolen file cannot be opened elsewhere, and
//! every unseal needs the PIN and the token. What it does not: a process
//! that can read the signer's memory while it runs (root, a debugger, a
//! kernel exploit) can read the unsealed key, as with local key files.
//!
//! File (JSON): `version`, `kind` = `pkcs11-aes-gcm`, `scheme` = `bls`,
//! `public_key` (0x hex), `wrapping_key_label`, `iv` (12 bytes, hex),
//! `ciphertext` (secret ‖ 16-byte tag, hex), `description`. The additional
//! authenticated data binds the public key: a ciphertext moved into another
//! file does not decrypt.

use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::token::describe;
use crate::backend::{Key, SecretKey, locked};
use crate::crypto::bls::BlsSecretKey;

/// The `kind` this module writes and reads.
pub const KIND: &str = "pkcs11-aes-gcm";
const AAD_PREFIX: &[u8] = b"signer/pkcs11-sealed/v1";

/// A sealed key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedKey {
    /// 1.
    pub version: u32,
    /// [`KIND`].
    pub kind: String,
    /// `bls`.
    pub scheme: String,
    /// The BLS public key, `0x` + hex.
    pub public_key: String,
    /// `CKA_LABEL` of the token's AES key.
    pub wrapping_key_label: String,
    /// GCM nonce, hex.
    pub iv: String,
    /// Ciphertext and tag, hex.
    pub ciphertext: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// Why sealing or unsealing failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The token has no AES key with that label.
    #[error("no AES key labelled {0:?} on this token")]
    NoWrappingKey(String),
    /// The token refused or failed.
    #[error("{0}")]
    Token(String),
    /// The file is not one of ours, or is damaged.
    #[error("not a sealed key file: {0}")]
    Format(String),
    /// Decrypted, but not the key the file names.
    #[error("the unsealed key does not match the file's public key")]
    Mismatch,
}

fn wrapping_key(session: &Session, label: &str) -> Result<ObjectHandle, SealError> {
    session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| SealError::Token(describe(&e)))?
        .first()
        .copied()
        .ok_or_else(|| SealError::NoWrappingKey(label.to_owned()))
}

fn aad(public_key: &[u8]) -> Vec<u8> {
    [AAD_PREFIX, public_key].concat()
}

/// Seals a BLS secret with the token's AES key `label`.
pub fn seal(
    session: &Session,
    label: &str,
    secret: &[u8],
    description: &str,
) -> Result<SealedKey, SealError> {
    let key = BlsSecretKey::from_bytes(secret).map_err(|e| SealError::Format(e.to_string()))?;
    let public_key = key.public_key().to_bytes();
    let wrap = wrapping_key(session, label)?;
    let mut iv = [0u8; 12];
    getrandom::fill(&mut iv).map_err(|e| SealError::Token(e.to_string()))?;
    let aad = aad(&public_key);
    let mut iv_param = iv;
    let params = GcmParams::new(&mut iv_param, &aad, 128.into())
        .map_err(|e| SealError::Token(e.to_string()))?;
    let ciphertext = session
        .encrypt(&Mechanism::AesGcm(params), wrap, secret)
        .map_err(|e| SealError::Token(describe(&e)))?;
    Ok(SealedKey {
        version: 1,
        kind: KIND.into(),
        scheme: "bls".into(),
        public_key: format!("0x{}", hex::encode(public_key)),
        wrapping_key_label: label.into(),
        iv: hex::encode(iv),
        ciphertext: hex::encode(ciphertext),
        description: description.into(),
    })
}

/// Unseals into a [`Key`] whose secret is in locked, zeroized memory.
pub fn unseal(session: &Session, file: &SealedKey) -> Result<Key, SealError> {
    let secret = unseal_secret(session, file)?;
    let key = Box::new(SecretKey::Bls(
        BlsSecretKey::from_bytes(&secret).map_err(|_| SealError::Mismatch)?,
    ));
    let lock = locked::lock(&*key);
    Ok(Key::Unsealed(key, lock))
}

/// The sealed secret itself, checked against the file's public key: for
/// moving it under another wrapping key (`signer keys reseal`) only.
pub fn unseal_secret(session: &Session, file: &SealedKey) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if file.version != 1 || file.kind != KIND || file.scheme != "bls" {
        return Err(SealError::Format(format!(
            "version {} kind {:?} scheme {:?}",
            file.version, file.kind, file.scheme
        )));
    }
    let public_key = file
        .public_key
        .strip_prefix("0x")
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| SealError::Format("public_key".into()))?;
    let mut iv: [u8; 12] = hex::decode(&file.iv)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| SealError::Format("iv".into()))?;
    let ciphertext =
        hex::decode(&file.ciphertext).map_err(|_| SealError::Format("ciphertext".into()))?;
    let wrap = wrapping_key(session, &file.wrapping_key_label)?;
    let aad = aad(&public_key);
    let params =
        GcmParams::new(&mut iv, &aad, 128.into()).map_err(|e| SealError::Token(e.to_string()))?;
    let secret = Zeroizing::new(
        session
            .decrypt(&Mechanism::AesGcm(params), wrap, &ciphertext)
            .map_err(|e| SealError::Token(describe(&e)))?,
    );
    let key = BlsSecretKey::from_bytes(&secret).map_err(|_| SealError::Mismatch)?;
    if key.public_key().to_bytes().as_slice() != public_key.as_slice() {
        return Err(SealError::Mismatch);
    }
    Ok(secret)
}
