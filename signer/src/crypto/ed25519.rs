//! Ed25519 (RFC 8032, pure) on ed25519-dalek, verifying strictly: canonical
//! encodings, no small-order keys or R (what CometBFT and Cosmos expect).

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use super::{CryptoError, exact};

/// An Ed25519 secret key (the 32-byte seed). Not printable, zeroized on drop.
pub struct Ed25519SecretKey(SigningKey);

impl std::fmt::Debug for Ed25519SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Ed25519SecretKey(public: 0x{})",
            hex::encode(self.public_key())
        )
    }
}

impl Ed25519SecretKey {
    /// From the 32-byte seed.
    pub fn from_seed(seed: &[u8]) -> Result<Self, CryptoError> {
        let seed = zeroize::Zeroizing::new(exact::<32>("Ed25519 seed", seed)?);
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Signs `msg` (deterministic).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}

/// Strict verification of `sig` over `msg` by the 32-byte public key `pk`.
pub fn verify(pk: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    let pk = exact::<32>("Ed25519 public key", pk)?;
    let sig = exact::<64>("Ed25519 signature", sig)?;
    let key = VerifyingKey::from_bytes(&pk)
        .map_err(|_| CryptoError::BadEncoding("Ed25519 public key"))?;
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    key.verify_strict(msg, &sig)
        .map_err(|_| CryptoError::Verification)
}
