//! BLS12-381, "minimal public key" variant (48-byte keys, 96-byte signatures),
//! with Ethereum's proof-of-possession ciphersuite, on blst.

use blst::BLST_ERROR;
use blst::min_pk::{AggregateSignature, PublicKey, SecretKey, Signature};

use super::{CryptoError, exact};

/// The ciphersuite Ethereum signs with (`BLS_SIG_..._POP_`).
pub const DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

/// The compressed encoding of the point at infinity in G1 / G2.
fn is_infinity_encoding(b: &[u8]) -> bool {
    b.first() == Some(&0xc0) && b.iter().skip(1).all(|x| *x == 0)
}

fn point_error(what: &'static str, e: BLST_ERROR) -> CryptoError {
    match e {
        BLST_ERROR::BLST_POINT_NOT_IN_GROUP => CryptoError::NotInSubgroup(what),
        BLST_ERROR::BLST_PK_IS_INFINITY => CryptoError::Infinity(what),
        _ => CryptoError::BadEncoding(what),
    }
}

/// A BLS secret key. Not printable, not serialisable, zeroized on drop.
/// Its public key is derived once, when first asked for, and kept: the
/// derivation is a G1 scalar multiplication (~50 µs), and a keystore's load
/// asks for it (to check the declared key) before the keyring does (on
/// every core). Derived eagerly, 10,000 raw keys took 0.98 s to start
/// instead of 0.52 s: the keyring's parallel derivation became sequential.
pub struct BlsSecretKey(SecretKey, std::sync::OnceLock<BlsPublicKey>);

impl std::fmt::Debug for BlsSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlsSecretKey(public: {:?})", self.public_key())
    }
}

impl BlsSecretKey {
    /// From the 32-byte big-endian scalar. Zero and values ≥ r are refused.
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        exact::<32>("BLS secret key", b)?;
        SecretKey::from_bytes(b)
            .map(|sk| Self(sk, std::sync::OnceLock::new()))
            .map_err(|_| CryptoError::InvalidSecretKey)
    }

    /// A new random key (the IETF / EIP-2333 `KeyGen` over 32 bytes from
    /// the operating system), with its secret bytes for a keystore.
    pub fn generate() -> Result<(Self, zeroize::Zeroizing<[u8; 32]>), CryptoError> {
        let mut ikm = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *ikm).map_err(|_| CryptoError::InvalidSecretKey)?;
        let sk = SecretKey::key_gen(&*ikm, &[]).map_err(|_| CryptoError::InvalidSecretKey)?;
        let secret = zeroize::Zeroizing::new(sk.to_bytes());
        Ok((Self(sk, std::sync::OnceLock::new()), secret))
    }

    /// The public key.
    pub fn public_key(&self) -> BlsPublicKey {
        self.1
            .get_or_init(|| BlsPublicKey(self.0.sk_to_pk()))
            .clone()
    }

    /// Signs `msg` (for Ethereum: a 32-byte signing root).
    pub fn sign(&self, msg: &[u8]) -> BlsSignature {
        BlsSignature(self.0.sign(msg, DST, &[]))
    }
}

/// A BLS public key: a G1 point in the subgroup, not the identity.
#[derive(Clone, PartialEq, Eq)]
pub struct BlsPublicKey(PublicKey);

impl std::fmt::Debug for BlsPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlsPublicKey(0x{})", hex::encode(self.to_bytes()))
    }
}

impl BlsPublicKey {
    /// From the 48-byte compressed encoding (KeyValidate: on the curve, in the
    /// subgroup, not infinity).
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        exact::<48>("BLS public key", b)?;
        PublicKey::key_validate(b)
            .map(Self)
            .map_err(|e| point_error("BLS public key", e))
    }

    /// The 48-byte compressed encoding.
    pub fn to_bytes(&self) -> [u8; 48] {
        self.0.compress()
    }
}

/// A BLS signature: a G2 point in the subgroup (infinity allowed: it is the
/// aggregate of nothing and verifies against nothing).
#[derive(Clone, PartialEq, Eq)]
pub struct BlsSignature(Signature);

impl std::fmt::Debug for BlsSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlsSignature(0x{})", hex::encode(self.to_bytes()))
    }
}

impl BlsSignature {
    /// From the 96-byte compressed encoding, with the subgroup check.
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        exact::<96>("BLS signature", b)?;
        Signature::sig_validate(b, false)
            .map(Self)
            .map_err(|e| point_error("BLS signature", e))
    }

    /// The 96-byte compressed encoding.
    pub fn to_bytes(&self) -> [u8; 96] {
        self.0.compress()
    }

    /// Verifies a signature over `msg` by `pk`.
    pub fn verify(&self, pk: &BlsPublicKey, msg: &[u8]) -> Result<(), CryptoError> {
        match self.0.verify(false, msg, DST, &[], &pk.0, false) {
            BLST_ERROR::BLST_SUCCESS => Ok(()),
            _ => Err(CryptoError::Verification),
        }
    }

    /// Verifies an aggregate of signatures by all `pks` over the same `msg`.
    /// An empty key list never verifies.
    pub fn fast_aggregate_verify(
        &self,
        pks: &[BlsPublicKey],
        msg: &[u8],
    ) -> Result<(), CryptoError> {
        if pks.is_empty() {
            return Err(CryptoError::Verification);
        }
        let pks: Vec<&PublicKey> = pks.iter().map(|p| &p.0).collect();
        match self.0.fast_aggregate_verify(false, msg, DST, &pks) {
            BLST_ERROR::BLST_SUCCESS => Ok(()),
            _ => Err(CryptoError::Verification),
        }
    }

    /// Verifies an aggregate of signatures by `pks[i]` over `msgs[i]`.
    pub fn aggregate_verify(
        &self,
        pks: &[BlsPublicKey],
        msgs: &[&[u8]],
    ) -> Result<(), CryptoError> {
        if pks.is_empty() || pks.len() != msgs.len() {
            return Err(CryptoError::Verification);
        }
        let pks: Vec<&PublicKey> = pks.iter().map(|p| &p.0).collect();
        match self.0.aggregate_verify(false, msgs, DST, &pks, false) {
            BLST_ERROR::BLST_SUCCESS => Ok(()),
            _ => Err(CryptoError::Verification),
        }
    }

    /// Adds signatures up. At least one is needed.
    pub fn aggregate(sigs: &[BlsSignature]) -> Result<Self, CryptoError> {
        let sigs: Vec<&Signature> = sigs.iter().map(|s| &s.0).collect();
        AggregateSignature::aggregate(&sigs, false)
            .map(|a| Self(a.to_signature()))
            .map_err(|e| point_error("BLS signatures to aggregate", e))
    }
}

/// Decodes a compressed G1 point as the consensus specs do (the identity is a
/// valid point; the subgroup is checked). Keys use [`BlsPublicKey::from_bytes`].
pub fn g1_point_is_valid(b: &[u8]) -> bool {
    b.len() == 48
        && PublicKey::from_bytes(b).is_ok_and(|p| is_infinity_encoding(b) || p.validate().is_ok())
}

/// Decodes a compressed G2 point (identity allowed, subgroup checked).
pub fn g2_point_is_valid(b: &[u8]) -> bool {
    b.len() == 96 && Signature::sig_validate(b, false).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_secret_key_is_refused() {
        assert_eq!(
            BlsSecretKey::from_bytes(&[0; 32]).unwrap_err(),
            CryptoError::InvalidSecretKey
        );
    }

    #[test]
    fn secret_key_debug_shows_only_the_public_key() {
        let mut b = [0u8; 32];
        b[31] = 7;
        let sk = BlsSecretKey::from_bytes(&b).unwrap();
        let shown = format!("{sk:?}");
        assert!(
            shown.starts_with("BlsSecretKey(public: BlsPublicKey(0x"),
            "{shown}"
        );
        assert!(
            !shown.contains("0000000000000000000000000000000000000000000000000000000000000007")
        );
    }
}
