//! Keys in local files, decrypted into zeroized memory at load. Formats
//! (documented in `docs/keys.md`):
//!
//! - EIP-2335 keystores (BLS), and our key file: the same container with a
//!   `key_type` field for Ed25519 and secp256k1 keys ([`keystore`]);
//! - CometBFT's `priv_validator_key.json`, for migration ([`cometbft`]);
//! - Web3Signer key-configuration YAML files ([`web3signer`]).

pub mod cometbft;
pub mod keystore;
pub mod web3signer;

use crate::crypto::bls::BlsSecretKey;
use crate::crypto::ed25519::Ed25519SecretKey;
use crate::crypto::secp256k1::Secp256k1SecretKey;
use keystore::KeystoreError;

/// The signature scheme of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// BLS12-381 (min-pk).
    Bls,
    /// Ed25519.
    Ed25519,
    /// secp256k1 ECDSA.
    Secp256k1,
}

impl Scheme {
    /// The `key_type` spelling in our key files.
    pub fn key_type(self) -> &'static str {
        match self {
            Self::Bls => "bls",
            Self::Ed25519 => "ed25519",
            Self::Secp256k1 => "secp256k1",
        }
    }
}

/// A secret key of any scheme.
#[derive(Debug)]
pub enum SecretKey {
    /// BLS12-381.
    Bls(BlsSecretKey),
    /// Ed25519.
    Ed25519(Ed25519SecretKey),
    /// secp256k1.
    Secp256k1(Secp256k1SecretKey),
}

impl SecretKey {
    /// Which scheme.
    pub fn scheme(&self) -> Scheme {
        match self {
            Self::Bls(_) => Scheme::Bls,
            Self::Ed25519(_) => Scheme::Ed25519,
            Self::Secp256k1(_) => Scheme::Secp256k1,
        }
    }

    /// The public key: 48 bytes (BLS), 32 (Ed25519) or 33 (secp256k1, compressed).
    pub fn public_key(&self) -> Vec<u8> {
        match self {
            Self::Bls(k) => k.public_key().to_bytes().to_vec(),
            Self::Ed25519(k) => k.public_key().to_vec(),
            Self::Secp256k1(k) => k.public_key().to_vec(),
        }
    }

    /// Builds a key of `scheme` from its secret bytes.
    pub fn from_secret(scheme: Scheme, secret: &[u8]) -> Result<Self, crate::crypto::CryptoError> {
        Ok(match scheme {
            Scheme::Bls => Self::Bls(BlsSecretKey::from_bytes(secret)?),
            Scheme::Ed25519 => Self::Ed25519(Ed25519SecretKey::from_seed(secret)?),
            Scheme::Secp256k1 => Self::Secp256k1(Secp256k1SecretKey::from_bytes(secret)?),
        })
    }
}

/// Loads a key from an EIP-2335 keystore or our key file (the same container
/// with `key_type`), checking it against the declared public key.
pub fn load_key_file(json: &[u8], password: &str) -> Result<SecretKey, KeystoreError> {
    load_key_file_with(&mut keystore::KdfMemo::default(), json, password)
}

/// [`load_key_file`], reusing what `memo` already decrypted.
pub fn load_key_file_with(
    memo: &mut keystore::KdfMemo,
    json: &[u8],
    password: &str,
) -> Result<SecretKey, KeystoreError> {
    let d = memo.decrypt(json, password)?;
    let scheme = match d.key_type.as_deref() {
        None | Some("bls") => Scheme::Bls,
        Some("ed25519") => Scheme::Ed25519,
        Some("secp256k1") => Scheme::Secp256k1,
        Some(other) => {
            return Err(KeystoreError::UnsupportedFunction {
                module: "key_type",
                function: other.to_owned(),
            });
        }
    };
    let key = SecretKey::from_secret(scheme, &d.secret).map_err(KeystoreError::InvalidSecret)?;
    keystore::check_declared(d.pubkey, &key.public_key())?;
    Ok(key)
}

/// Writes `secret` of `scheme` as our key file (plain EIP-2335 for BLS).
pub fn write_key_file(
    key: &SecretKey,
    secret: &[u8],
    password: &str,
    kdf: keystore::Kdf,
    description: &str,
) -> Result<String, KeystoreError> {
    let key_type = match key.scheme() {
        Scheme::Bls => None,
        other => Some(other.key_type()),
    };
    keystore::encrypt(
        secret,
        password,
        kdf,
        &key.public_key(),
        key_type,
        description,
    )
}
