//! CometBFT's `priv_validator_key.json` (the file signer's key), read for
//! migration: `{"address", "pub_key": {"type", "value"}, "priv_key": {"type", "value"}}`
//! with base64 values. Ed25519 keys store seed ‖ public key (64 bytes);
//! secp256k1 keys store the 32-byte scalar.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{Scheme, SecretKey};

/// Why a `priv_validator_key.json` was refused.
#[derive(Debug, thiserror::Error)]
pub enum PrivValidatorKeyError {
    /// Not JSON of the expected shape.
    #[error("priv_validator_key.json is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A key type this signer does not sign with.
    #[error("unsupported key type {0:?}")]
    UnsupportedType(String),
    /// A value that is not base64 of the right length.
    #[error("{0} is not valid base64 of the right length")]
    Malformed(&'static str),
    /// The private key is not a valid key.
    #[error("invalid private key: {0}")]
    InvalidKey(crate::crypto::CryptoError),
    /// `pub_key` (or the Ed25519 key's embedded public half) is not the
    /// private key's public key, or `address` does not match it.
    #[error("{0} does not match the private key")]
    Mismatch(&'static str),
}

#[derive(Deserialize)]
struct File {
    address: String,
    pub_key: Typed,
    priv_key: Typed,
}

#[derive(Deserialize)]
struct Typed {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

fn b64(v: &str, what: &'static str) -> Result<Zeroizing<Vec<u8>>, PrivValidatorKeyError> {
    STANDARD
        .decode(v)
        .map(Zeroizing::new)
        .map_err(|_| PrivValidatorKeyError::Malformed(what))
}

/// Reads a `priv_validator_key.json`.
pub fn load_priv_validator_key(json: &[u8]) -> Result<SecretKey, PrivValidatorKeyError> {
    let (scheme, secret) = priv_validator_secret(json)?;
    SecretKey::from_secret(scheme, &secret).map_err(PrivValidatorKeyError::InvalidKey)
}

/// The scheme and secret (Ed25519 seed or secp256k1 scalar) of a
/// `priv_validator_key.json`, after checking its public key and address
/// (for `signer keys import`, which puts the secret into an HSM).
pub fn priv_validator_secret(
    json: &[u8],
) -> Result<(Scheme, Zeroizing<Vec<u8>>), PrivValidatorKeyError> {
    let f: File = serde_json::from_slice(json)?;
    let secret = b64(&f.priv_key.value, "priv_key.value")?;
    let public = b64(&f.pub_key.value, "pub_key.value")?;
    let (scheme, key_secret) = match (f.priv_key.kind.as_str(), f.pub_key.kind.as_str()) {
        ("tendermint/PrivKeyEd25519", "tendermint/PubKeyEd25519") => {
            if secret.len() != 64 {
                return Err(PrivValidatorKeyError::Malformed("priv_key.value"));
            }
            let (seed, embedded) = secret.split_at(32);
            let key = SecretKey::from_secret(Scheme::Ed25519, seed)
                .map_err(PrivValidatorKeyError::InvalidKey)?;
            if key.public_key() != embedded {
                return Err(PrivValidatorKeyError::Mismatch(
                    "the public half of priv_key",
                ));
            }
            // Ed25519 addresses are the first 20 bytes of SHA-256(pubkey).
            let address = Sha256::digest(key.public_key());
            if !f
                .address
                .eq_ignore_ascii_case(&hex::encode(address.get(..20).unwrap_or_default()))
            {
                return Err(PrivValidatorKeyError::Mismatch("address"));
            }
            (Scheme::Ed25519, Zeroizing::new(seed.to_vec()))
        }
        ("tendermint/PrivKeySecp256k1", "tendermint/PubKeySecp256k1") => {
            // (Its address is RIPEMD-160(SHA-256(pubkey)); not checked here.)
            (Scheme::Secp256k1, secret)
        }
        (p, _) => return Err(PrivValidatorKeyError::UnsupportedType(p.to_owned())),
    };
    let key =
        SecretKey::from_secret(scheme, &key_secret).map_err(PrivValidatorKeyError::InvalidKey)?;
    if key.public_key() != public.as_slice() {
        return Err(PrivValidatorKeyError::Mismatch("pub_key"));
    }
    Ok((scheme, key_secret))
}
