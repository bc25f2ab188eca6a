//! Reading a server identity (certificate chain and private key) from a
//! PKCS#12 keystore, as Web3Signer's `--tls-keystore-file` takes it.
//!
//! Supported: what OpenSSL 3 and current Java `keytool` write by default —
//! bags encrypted with PBES2 (PBKDF2 with HMAC-SHA-256 or -SHA-1, AES-128/
//! 192/256-CBC) and an HMAC-SHA-256 integrity MAC, which is checked before
//! anything is decrypted. The legacy algorithms (RC2, 3DES, SHA-1 MACs) are
//! refused with the command that re-exports the keystore; they protect the
//! key poorly and would need three more cipher crates.
//!
//! A small DER reader is enough here: PKCS#12 is a handful of nested
//! sequences (RFC 7292), and every length is checked.

use aes::cipher::{BlockModeDecrypt, KeyIvInit, block_padding::Pkcs7};
use hmac::{KeyInit, Mac};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Why a keystore could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pkcs12Error {
    /// Not DER of the expected shape.
    #[error("not a PKCS#12 keystore: {0}")]
    Malformed(&'static str),
    /// The integrity MAC does not match: wrong password, or a damaged file.
    #[error("the keystore's MAC does not verify: wrong password or damaged file")]
    BadMac,
    /// An algorithm this reader does not support.
    #[error(
        "{0} is not supported; re-export with: openssl pkcs12 -export -keypbe AES-256-CBC -certpbe AES-256-CBC -macalg sha256 …"
    )]
    Unsupported(&'static str),
    /// Decryption failed (wrong password, damaged data).
    #[error("a bag does not decrypt: wrong password or damaged file")]
    Decrypt,
    /// No private key, or no certificate, in the keystore.
    #[error("the keystore holds {0}")]
    Missing(&'static str),
}

use Pkcs12Error::{Malformed, Unsupported};

/// One DER element: tag, content.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
}

/// Reads DER elements one after another.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn next(&mut self) -> Result<Tlv<'a>, Pkcs12Error> {
        let (&tag, rest) = self.0.split_first().ok_or(Malformed("truncated"))?;
        let (&first, mut rest) = rest.split_first().ok_or(Malformed("truncated"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(Malformed("length"));
            }
            let (bytes, r) = rest.split_at_checked(n).ok_or(Malformed("truncated"))?;
            rest = r;
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        let (content, r) = rest.split_at_checked(len).ok_or(Malformed("truncated"))?;
        self.0 = r;
        Ok(Tlv { tag, content })
    }

    /// The next element, which must have `tag` (`what` names it in the error).
    fn take(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], Pkcs12Error> {
        let t = self.next()?;
        if t.tag == tag {
            Ok(t.content)
        } else {
            Err(Malformed(what))
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OCTETS: u8 = 0x04;
const OID: u8 = 0x06;
const INTEGER: u8 = 0x02;
const EXPLICIT0: u8 = 0xa0;
const IMPLICIT0: u8 = 0x80;

// Object identifiers, DER content bytes.
const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
const ENCRYPTED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x06];
const KEY_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x01,
];
const SHROUDED_KEY_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x02,
];
const CERT_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x03,
];
const X509_CERT: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x16, 0x01];
const LOCAL_KEY_ID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x15];
const PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
const PBKDF2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c];
const HMAC_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x07];
const HMAC_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09];
const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const AES128_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02];
const AES192_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x16];
const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];

/// Largest PBKDF2 or MAC iteration count accepted (a crafted file must not
/// stall start-up).
const MAX_ITERATIONS: u32 = 10_000_000;

fn small_uint(content: &[u8]) -> Result<u32, Pkcs12Error> {
    if content.is_empty() || content.len() > 5 || content.first().is_some_and(|b| b & 0x80 != 0) {
        return Err(Malformed("integer"));
    }
    let v = content
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    u32::try_from(v).map_err(|_| Malformed("integer"))
}

/// RFC 7292 appendix B.2 key derivation (the MAC key, ID 3), with SHA-256.
fn pkcs12_kdf_sha256(password: &str, salt: &[u8], iterations: u32) -> Zeroizing<[u8; 32]> {
    const V: usize = 64;
    // The password as a BMPString with its terminating NUL.
    let mut pw = Zeroizing::new(Vec::new());
    for unit in password.encode_utf16().chain(std::iter::once(0)) {
        pw.extend_from_slice(&unit.to_be_bytes());
    }
    let fill = |src: &[u8]| -> Vec<u8> {
        if src.is_empty() {
            return Vec::new();
        }
        let n = V * src.len().div_ceil(V);
        src.iter().copied().cycle().take(n).collect()
    };
    let mut input = Zeroizing::new(fill(salt));
    input.extend_from_slice(&fill(&pw));
    let mut hasher = Sha256::new();
    hasher.update([3u8; V]);
    hasher.update(input.as_slice());
    let mut a = hasher.finalize();
    for _ in 1..iterations {
        a = Sha256::digest(a);
    }
    // 32 bytes are one hash output: no further rounds needed.
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&a);
    out
}

/// Checks the MAC over `auth_safe` (the `data` content's octets).
fn check_mac(mac_data: &[u8], auth_safe: &[u8], password: &str) -> Result<(), Pkcs12Error> {
    let mut d = Der(mac_data);
    let digest_info = d.take(SEQUENCE, "macData.mac")?;
    let salt = d.take(OCTETS, "macData.salt")?;
    let iterations = if d.is_empty() {
        1
    } else {
        small_uint(d.take(INTEGER, "macData.iterations")?)?
    };
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(Malformed("MAC iterations"));
    }
    let mut di = Der(digest_info);
    let mut alg = Der(di.take(SEQUENCE, "mac algorithm")?);
    let digest = di.take(OCTETS, "mac digest")?;
    if alg.take(OID, "mac algorithm")? != SHA256 {
        return Err(Unsupported("a MAC other than HMAC-SHA-256"));
    }
    let key = pkcs12_kdf_sha256(password, salt, iterations);
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key.as_slice())
        .map_err(|_| Pkcs12Error::BadMac)?;
    mac.update(auth_safe);
    mac.verify_slice(digest).map_err(|_| Pkcs12Error::BadMac)
}

/// Decrypts PBES2 `ciphertext` given the algorithm's parameters.
fn pbes2_decrypt(
    params: &[u8],
    ciphertext: &[u8],
    password: &str,
) -> Result<Zeroizing<Vec<u8>>, Pkcs12Error> {
    let mut p = Der(params);
    let mut kdf = Der(p.take(SEQUENCE, "PBES2 kdf")?);
    let mut scheme = Der(p.take(SEQUENCE, "PBES2 scheme")?);
    if kdf.take(OID, "kdf")? != PBKDF2 {
        return Err(Unsupported("a PBES2 key derivation other than PBKDF2"));
    }
    let mut kp = Der(kdf.take(SEQUENCE, "PBKDF2 params")?);
    let salt = kp.take(OCTETS, "PBKDF2 salt")?;
    let iterations = small_uint(kp.take(INTEGER, "PBKDF2 iterations")?)?;
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(Malformed("PBKDF2 iterations"));
    }
    let mut prf = HMAC_SHA1;
    while !kp.is_empty() {
        let t = kp.next()?;
        if t.tag == SEQUENCE {
            prf = Der(t.content).take(OID, "PBKDF2 prf")?;
        }
        // An INTEGER here is the optional key length, implied by the cipher.
    }
    let cipher = scheme.take(OID, "cipher")?;
    let iv = scheme.take(OCTETS, "cipher IV")?;
    let key_len = match cipher {
        AES128_CBC => 16,
        AES192_CBC => 24,
        AES256_CBC => 32,
        _ => return Err(Unsupported("a PBES2 cipher other than AES-CBC")),
    };
    let mut key = Zeroizing::new(vec![0u8; key_len]);
    match prf {
        HMAC_SHA256 => {
            pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut key)
        }
        _ => return Err(Unsupported("a PBKDF2 PRF other than HMAC-SHA-256")),
    }
    let plain = match key_len {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(&key, iv)
            .map_err(|_| Malformed("IV"))?
            .decrypt_padded_vec::<Pkcs7>(ciphertext),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(&key, iv)
            .map_err(|_| Malformed("IV"))?
            .decrypt_padded_vec::<Pkcs7>(ciphertext),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, iv)
            .map_err(|_| Malformed("IV"))?
            .decrypt_padded_vec::<Pkcs7>(ciphertext),
    };
    plain.map(Zeroizing::new).map_err(|_| Pkcs12Error::Decrypt)
}

/// Decrypts an `AlgorithmIdentifier` + ciphertext pair.
fn decrypt(
    alg: &[u8],
    ciphertext: &[u8],
    password: &str,
) -> Result<Zeroizing<Vec<u8>>, Pkcs12Error> {
    let mut a = Der(alg);
    if a.take(OID, "encryption algorithm")? != PBES2 {
        return Err(Unsupported("a legacy PKCS#12 encryption (RC2 or 3DES)"));
    }
    pbes2_decrypt(a.take(SEQUENCE, "PBES2 params")?, ciphertext, password)
}

/// A bag's `localKeyId` attribute, which pairs a key with its certificate.
type KeyId = Option<Vec<u8>>;

/// What the bags held.
#[derive(Default)]
struct Found {
    /// Certificates (DER).
    certs: Vec<(KeyId, Vec<u8>)>,
    /// The private key (PKCS#8 DER).
    key: Option<(KeyId, Zeroizing<Vec<u8>>)>,
}

fn local_key_id(attributes: Option<&[u8]>) -> Result<KeyId, Pkcs12Error> {
    let Some(attrs) = attributes else {
        return Ok(None);
    };
    let mut set = Der(attrs);
    while !set.is_empty() {
        let mut attr = Der(set.take(SEQUENCE, "attribute")?);
        let oid = attr.take(OID, "attribute type")?;
        let values = attr.take(SET, "attribute values")?;
        if oid == LOCAL_KEY_ID {
            return Ok(Some(Der(values).take(OCTETS, "localKeyId")?.to_vec()));
        }
    }
    Ok(None)
}

fn read_bags(safe_contents: &[u8], password: &str, found: &mut Found) -> Result<(), Pkcs12Error> {
    let mut bags = Der(Der(safe_contents).take(SEQUENCE, "SafeContents")?);
    while !bags.is_empty() {
        let mut bag = Der(bags.take(SEQUENCE, "SafeBag")?);
        let id = bag.take(OID, "bagId")?;
        let value = bag.take(EXPLICIT0, "bagValue")?;
        let attributes = if bag.is_empty() {
            None
        } else {
            Some(bag.take(SET, "bagAttributes")?)
        };
        let key_id = local_key_id(attributes)?;
        match id {
            CERT_BAG => {
                let mut cb = Der(Der(value).take(SEQUENCE, "CertBag")?);
                if cb.take(OID, "certId")? == X509_CERT {
                    let der = Der(cb.take(EXPLICIT0, "certValue")?).take(OCTETS, "certificate")?;
                    found.certs.push((key_id, der.to_vec()));
                }
            }
            SHROUDED_KEY_BAG => {
                let mut epki = Der(Der(value).take(SEQUENCE, "EncryptedPrivateKeyInfo")?);
                let alg = epki.take(SEQUENCE, "key encryption algorithm")?;
                let data = epki.take(OCTETS, "encrypted key")?;
                found.key = Some((key_id, decrypt(alg, data, password)?));
            }
            KEY_BAG => {
                // An unencrypted PrivateKeyInfo: take the whole element back as DER.
                found.key = Some((key_id, Zeroizing::new(value.to_vec())));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Reads the certificate chain (the key's certificate first) and the private key.
pub fn read(
    der: &[u8],
    password: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Pkcs12Error> {
    let mut pfx = Der(Der(der).take(SEQUENCE, "PFX")?);
    if small_uint(pfx.take(INTEGER, "version")?)? != 3 {
        return Err(Malformed("version"));
    }
    let mut auth_safe_info = Der(pfx.take(SEQUENCE, "authSafe")?);
    if auth_safe_info.take(OID, "authSafe type")? != DATA {
        return Err(Unsupported("a public-key-protected keystore"));
    }
    let auth_safe =
        Der(auth_safe_info.take(EXPLICIT0, "authSafe content")?).take(OCTETS, "authSafe data")?;
    if pfx.is_empty() {
        return Err(Unsupported("a keystore without an integrity MAC"));
    }
    check_mac(pfx.take(SEQUENCE, "macData")?, auth_safe, password)?;

    let mut found = Found::default();
    let mut infos = Der(Der(auth_safe).take(SEQUENCE, "AuthenticatedSafe")?);
    while !infos.is_empty() {
        let mut info = Der(infos.take(SEQUENCE, "ContentInfo")?);
        let kind = info.take(OID, "content type")?;
        let content = info.take(EXPLICIT0, "content")?;
        match kind {
            DATA => read_bags(Der(content).take(OCTETS, "data")?, password, &mut found)?,
            ENCRYPTED_DATA => {
                let mut ed = Der(Der(content).take(SEQUENCE, "EncryptedData")?);
                ed.take(INTEGER, "EncryptedData version")?;
                let mut eci = Der(ed.take(SEQUENCE, "EncryptedContentInfo")?);
                eci.take(OID, "content type")?;
                let alg = eci.take(SEQUENCE, "content encryption algorithm")?;
                let data = eci.take(IMPLICIT0, "encrypted content")?;
                let plain = decrypt(alg, data, password)?;
                read_bags(&plain, password, &mut found)?;
            }
            _ => return Err(Unsupported("a public-key-encrypted bag")),
        }
    }

    let (key_id, key) = found.key.ok_or(Pkcs12Error::Missing("no private key"))?;
    if found.certs.is_empty() {
        return Err(Pkcs12Error::Missing("no certificate"));
    }
    // The key's own certificate first (matched by localKeyId), then the rest.
    let leaf = found
        .certs
        .iter()
        .position(|(id, _)| id.is_some() && *id == key_id)
        .unwrap_or(0);
    let mut chain = Vec::with_capacity(found.certs.len());
    let first = found.certs.remove(leaf);
    chain.push(CertificateDer::from(first.1));
    chain.extend(
        found
            .certs
            .into_iter()
            .map(|(_, der)| CertificateDer::from(der)),
    );
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec()));
    Ok((chain, key))
}
