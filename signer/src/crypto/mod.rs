//! Signature schemes: BLS12-381 (Ethereum consensus, Autonity), Ed25519
//! (CometBFT, generic) and secp256k1 ECDSA (Cosmos, Ethereum execution,
//! generic).
//!
//! Secret keys are types of their own: they cannot be printed (their `Debug`
//! shows only the public key), have no `Serialize`, and are zeroized on drop
//! (the libraries' own key types do that; we never copy the bytes out
//! except into `Zeroizing` buffers).

pub mod bls;
pub mod ed25519;
pub mod secp256k1;

/// Why a key, signature or point was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Wrong length for the type.
    #[error("{what}: expected {expected} bytes, got {got}")]
    Length {
        /// What was being decoded.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// A secret key of zero (or, for secp256k1, not below the group order).
    #[error("invalid secret key (zero or out of range)")]
    InvalidSecretKey,
    /// Bytes that are not a valid encoding of a point, or a point off the curve.
    #[error("{0}: not a valid point encoding")]
    BadEncoding(&'static str),
    /// A point outside the prime-order subgroup.
    #[error("{0}: point is not in the prime-order subgroup")]
    NotInSubgroup(&'static str),
    /// The identity point where a real key or signature is required.
    #[error("{0}: the point at infinity is not allowed here")]
    Infinity(&'static str),
    /// A secp256k1 signature with S in the upper half of the order.
    #[error("ECDSA signature is not low-S")]
    HighS,
    /// The signature does not verify.
    #[error("signature does not verify")]
    Verification,
}

fn exact<const N: usize>(what: &'static str, b: &[u8]) -> Result<[u8; N], CryptoError> {
    <[u8; N]>::try_from(b).map_err(|_| CryptoError::Length {
        what,
        expected: N,
        got: b.len(),
    })
}
