//! secp256k1 ECDSA on k256: RFC 6979 deterministic nonces, always low-S.
//!
//! Two output forms: the 64-byte `r‖s` Cosmos chains verify, and the Ethereum
//! recoverable form (`r‖s‖v`). HSMs and KMS return signatures with either S
//! (about half high); [`normalize`] and [`recovery_id`] turn such a signature
//! into what we emit, after checking it against the key.

use k256::ecdsa::signature::hazmat::PrehashVerifier;
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::{CryptoError, exact};

/// A secp256k1 secret key. Not printable, zeroized on drop.
pub struct Secp256k1SecretKey(SigningKey);

impl std::fmt::Debug for Secp256k1SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Secp256k1SecretKey(public: 0x{})",
            hex::encode(self.public_key())
        )
    }
}

/// A signature with its recovery id (0 or 1; Ethereum's legacy `v` is 27 + it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoverableSignature {
    /// `r‖s`, low-S.
    pub rs: [u8; 64],
    /// Recovery id: parity of R's y (R's x never exceeds the order in practice;
    /// such signatures are refused rather than given ids 2 or 3).
    pub recovery_id: u8,
}

impl RecoverableSignature {
    /// The 65-byte Ethereum form `r‖s‖v` with `v = 27 + recovery_id`.
    pub fn to_ethereum_bytes(&self) -> [u8; 65] {
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&self.rs);
        out[64] = 27 + self.recovery_id;
        out
    }
}

impl Secp256k1SecretKey {
    /// From the 32-byte big-endian scalar; zero and values ≥ n are refused.
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        exact::<32>("secp256k1 secret key", b)?;
        SigningKey::from_slice(b)
            .map(Self)
            .map_err(|_| CryptoError::InvalidSecretKey)
    }

    /// A new random key (32 bytes from the operating system, drawn again in
    /// the negligible case they are not a valid scalar), with its secret
    /// bytes for a keystore.
    pub fn generate() -> Result<(Self, zeroize::Zeroizing<[u8; 32]>), CryptoError> {
        loop {
            let mut secret = zeroize::Zeroizing::new([0u8; 32]);
            getrandom::fill(&mut *secret).map_err(|_| CryptoError::InvalidSecretKey)?;
            if let Ok(k) = Self::from_bytes(&*secret) {
                return Ok((k, secret));
            }
        }
    }

    /// The Ethereum address: the last 20 bytes of the keccak-256 of the
    /// uncompressed public key (without its 0x04 prefix).
    pub fn address(&self) -> [u8; 20] {
        let point = self.0.verifying_key().to_sec1_point(false);
        address_of_point(point.as_bytes())
    }

    /// The 33-byte compressed SEC1 public key.
    pub fn public_key(&self) -> [u8; 33] {
        // k256 encodes compressed (33 bytes) by default; a test pins that.
        let sec1 = self.0.verifying_key().to_sec1_bytes();
        let mut out = [0u8; 33];
        if let Some(b) = sec1.get(..33) {
            out.copy_from_slice(b);
        }
        out
    }

    /// Signs a 32-byte digest computed by the caller (keccak-256 for Ethereum).
    pub fn sign_prehash(&self, digest: &[u8; 32]) -> RecoverableSignature {
        let (sig, recid) = self.0.sign_prehash_recoverable(digest);
        // k256 already emits low-S and adjusts the id; normalising is idempotent.
        let (sig, recid) = match sig.normalize_s() {
            n if n == sig => (sig, recid),
            n => (n, RecoveryId::new(!recid.is_y_odd(), recid.is_x_reduced())),
        };
        RecoverableSignature {
            rs: sig.to_bytes().into(),
            recovery_id: recid.to_byte(),
        }
    }

    /// Signs SHA-256(`msg`), the form Cosmos SDK chains and CometBFT use.
    pub fn sign_sha256(&self, msg: &[u8]) -> [u8; 64] {
        self.sign_prehash(&Sha256::digest(msg).into()).rs
    }
}

fn verifying_key(pk: &[u8]) -> Result<VerifyingKey, CryptoError> {
    VerifyingKey::from_sec1_bytes(pk).map_err(|_| CryptoError::BadEncoding("secp256k1 public key"))
}

fn signature(rs: &[u8]) -> Result<Signature, CryptoError> {
    Signature::from_slice(rs).map_err(|_| CryptoError::BadEncoding("secp256k1 signature"))
}

/// Verifies `r‖s` over a 32-byte digest. High-S is refused (what we emit and
/// what Cosmos and Ethereum accept).
pub fn verify_prehash(pk: &[u8], digest: &[u8], rs: &[u8]) -> Result<(), CryptoError> {
    let key = verifying_key(pk)?;
    let sig = signature(rs)?;
    if sig.normalize_s() != sig {
        return Err(CryptoError::HighS);
    }
    key.verify_prehash(digest, &sig)
        .map_err(|_| CryptoError::Verification)
}

/// The 33-byte compressed form of a SEC1 public key (compressed or not).
pub fn compress(pk: &[u8]) -> Result<[u8; 33], CryptoError> {
    let sec1 = verifying_key(pk)?.to_sec1_bytes();
    let mut out = [0u8; 33];
    out.copy_from_slice(
        sec1.get(..33)
            .ok_or(CryptoError::BadEncoding("secp256k1 public key"))?,
    );
    Ok(out)
}

/// The Ethereum address of a public key in either SEC1 form.
pub fn address_of(pk: &[u8]) -> Result<[u8; 20], CryptoError> {
    Ok(address_of_point(&uncompressed(pk)?))
}

/// The address of an uncompressed SEC1 point (`0x04 ‖ x ‖ y`).
fn address_of_point(point: &[u8]) -> [u8; 20] {
    let hash = alloy_primitives::keccak256(point.get(1..).unwrap_or_default());
    let mut out = [0u8; 20];
    out.copy_from_slice(hash.get(12..).unwrap_or(&[0; 20]));
    out
}

/// The 65-byte uncompressed SEC1 form (`04‖x‖y`) of a public key.
pub fn uncompressed(pk: &[u8]) -> Result<[u8; 65], CryptoError> {
    let point = verifying_key(pk)?.to_sec1_point(false);
    let mut out = [0u8; 65];
    out.copy_from_slice(
        point
            .as_bytes()
            .get(..65)
            .ok_or(CryptoError::BadEncoding("secp256k1 public key"))?,
    );
    Ok(out)
}

/// Parses a strict-DER ECDSA signature (as HSMs and KMS return them) into `r‖s`.
pub fn from_der(der: &[u8]) -> Result<[u8; 64], CryptoError> {
    Signature::from_der(der)
        .map(|s| s.to_bytes().into())
        .map_err(|_| CryptoError::BadEncoding("secp256k1 DER signature"))
}

/// The low-S form of a signature (either form in; low-S out).
pub fn normalize(rs: &[u8]) -> Result<[u8; 64], CryptoError> {
    Ok(signature(rs)?.normalize_s().to_bytes().into())
}

/// The recovery id that recovers `pk` from a low-S `rs` over `digest`, for a
/// signature made elsewhere (HSM, KMS). This is also the signature's check:
/// a key recovered from (r, s) over z is Q = r⁻¹(sR − zG), and then
/// s⁻¹(zG + rQ) = R, whose x is r — exactly ECDSA's verification equation.
/// So no separate verify is needed (it would cost as much as a recovery).
pub fn recovery_id(pk: &[u8], digest: &[u8], rs: &[u8]) -> Result<u8, CryptoError> {
    let key = verifying_key(pk)?;
    let sig = signature(rs)?;
    if sig.normalize_s() != sig {
        return Err(CryptoError::HighS);
    }
    for parity in [false, true] {
        let id = RecoveryId::new(parity, false);
        if VerifyingKey::recover_from_prehash(digest, &sig, id).is_ok_and(|k| k == key) {
            return Ok(id.to_byte());
        }
    }
    Err(CryptoError::Verification)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_are_compressed_sec1() {
        let sk = Secp256k1SecretKey::from_bytes(&[7; 32]).unwrap();
        let pk = sk.public_key();
        assert!(pk[0] == 2 || pk[0] == 3, "{pk:?}");
        assert_eq!(sk.0.verifying_key().to_sec1_bytes().len(), 33);
        assert!(VerifyingKey::from_sec1_bytes(&pk).is_ok());
    }

    #[test]
    fn zero_and_order_are_not_secret_keys() {
        assert_eq!(
            Secp256k1SecretKey::from_bytes(&[0; 32]).unwrap_err(),
            CryptoError::InvalidSecretKey
        );
        let n = hex::decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
            .unwrap();
        assert_eq!(
            Secp256k1SecretKey::from_bytes(&n).unwrap_err(),
            CryptoError::InvalidSecretKey
        );
    }
}
