//! Operator tasks on a token: generate keys inside it, list what it holds.
//! (`signer keys generate|list|seal --backend pkcs11`.)

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::token::describe;
use super::{Locator, curves, read_public_key};
use crate::backend::Scheme;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// An Ed25519 key pair.
    Ed25519,
    /// A secp256k1 key pair.
    Secp256k1,
    /// An AES-256 key that seals BLS keys.
    Aes256,
}

/// A generated key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// `CKA_ID` (random, 8 bytes).
    pub id: Vec<u8>,
    /// The public key (none for AES).
    pub public_key: Option<Vec<u8>>,
}

fn exists(session: &Session, label: &str) -> Result<bool, String> {
    session
        .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
        .map(|v| !v.is_empty())
        .map_err(|e| describe(&e))
}

/// Generates a key inside the token: private parts sensitive, never
/// extractable, stored on the token, usable only for signing (or, for AES,
/// encrypting and decrypting).
pub fn generate(session: &Session, kind: KeyKind, label: &str) -> Result<Generated, String> {
    if label.is_empty() {
        return Err("a key needs a label".into());
    }
    if exists(session, label)? {
        return Err(format!(
            "the token already has an object labelled {label:?}"
        ));
    }
    let mut id = vec![0u8; 8];
    getrandom::fill(&mut id).map_err(|e| e.to_string())?;
    let common = |private: bool| {
        vec![
            Attribute::Token(true),
            Attribute::Private(private),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ]
    };
    let secret_attrs = [Attribute::Sensitive(true), Attribute::Extractable(false)];
    if kind == KeyKind::Aes256 {
        let mut t = common(true);
        t.extend(secret_attrs.iter().cloned());
        t.extend([
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::ValueLen(32.into()),
        ]);
        session
            .generate_key(&Mechanism::AesKeyGen, &t)
            .map_err(|e| describe(&e))?;
        return Ok(Generated {
            id,
            public_key: None,
        });
    }
    let (mechanism, params): (Mechanism, &[&[u8]]) = match kind {
        KeyKind::Ed25519 => (
            Mechanism::EccEdwardsKeyPairGen,
            &[curves::ED25519_OID, curves::ED25519_NAME],
        ),
        _ => (Mechanism::EccKeyPairGen, &[curves::SECP256K1]),
    };
    first_accepted(params, |p| {
        let mut public = common(false);
        public.extend([Attribute::Verify(true), Attribute::EcParams(p.to_vec())]);
        let mut private = common(true);
        private.extend(secret_attrs.iter().cloned());
        private.push(Attribute::Sign(true));
        session.generate_key_pair(&mechanism, &public, &private)
    })?;
    let (_, pk) = read_public_key(session, &Locator::Id(id.clone()))?;
    Ok(Generated {
        id,
        public_key: Some(pk),
    })
}

/// Tokens disagree on how to name a curve in `CKA_EC_PARAMS` (Ed25519: the
/// RFC 8410 OID or the `edwards25519` string): runs `attempt` with each
/// encoding until the token accepts one; the result and the encoding used.
fn first_accepted<'p, T>(
    params: &[&'p [u8]],
    mut attempt: impl FnMut(&[u8]) -> Result<T, CkError>,
) -> Result<(T, &'p [u8]), String> {
    let mut last = "no curve encoding to try".to_owned();
    for p in params {
        match attempt(p) {
            Ok(v) => return Ok((v, p)),
            Err(
                e @ CkError::Pkcs11(
                    RvError::CurveNotSupported
                    | RvError::AttributeValueInvalid
                    | RvError::DomainParamsInvalid,
                    _,
                ),
            ) => last = describe(&e),
            Err(e) => return Err(describe(&e)),
        }
    }
    Err(last)
}

/// Imports an existing Ed25519 or secp256k1 secret into the token as a
/// sensitive, non-extractable key pair (migrating a file key into an HSM,
/// or putting one key on the tokens of two HSMs that cannot replicate).
/// The secret is gone from disk only when the operator deletes the file.
pub fn import(
    session: &Session,
    scheme: Scheme,
    label: &str,
    secret: &[u8],
) -> Result<Generated, String> {
    if label.is_empty() {
        return Err("a key needs a label".into());
    }
    if exists(session, label)? {
        return Err(format!(
            "the token already has an object labelled {label:?}"
        ));
    }
    let key = crate::backend::SecretKey::from_secret(scheme, secret).map_err(|e| e.to_string())?;
    let public_key = key.public_key();
    let (key_type, params, point): (KeyType, &[&[u8]], Vec<u8>) = match scheme {
        Scheme::Ed25519 => (
            KeyType::EC_EDWARDS,
            &[curves::ED25519_OID, curves::ED25519_NAME],
            [&[0x04, 32][..], &public_key].concat(),
        ),
        Scheme::Secp256k1 => {
            let full =
                crate::crypto::secp256k1::uncompressed(&public_key).map_err(|e| e.to_string())?;
            (
                KeyType::EC,
                &[curves::SECP256K1],
                [&[0x04, 65][..], &full].concat(),
            )
        }
        Scheme::Bls => return Err("BLS keys are sealed (keys seal), not imported".into()),
    };
    let mut id = vec![0u8; 8];
    getrandom::fill(&mut id).map_err(|e| e.to_string())?;
    let common = |class, p: &[u8]| {
        vec![
            Attribute::Class(class),
            Attribute::KeyType(key_type),
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
            Attribute::EcParams(p.to_vec()),
        ]
    };
    let (private_handle, p) = first_accepted(params, |p| {
        let mut private = common(ObjectClass::PRIVATE_KEY, p);
        private.extend([
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Value(secret.to_vec()),
        ]);
        // The attribute list holding the secret is dropped when this returns.
        session.create_object(&private)
    })?;
    let mut public = common(ObjectClass::PUBLIC_KEY, p);
    public.extend([
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::EcPoint(point),
    ]);
    if let Err(e) = session.create_object(&public) {
        let _ = session.destroy_object(private_handle);
        return Err(describe(&e));
    }
    let (_, pk) = read_public_key(session, &Locator::Id(id.clone()))?;
    if pk != public_key {
        return Err("the token reports a different public key than the imported secret's".into());
    }
    Ok(Generated {
        id,
        public_key: Some(pk),
    })
}

/// One key on a token, as `signer keys list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`.
    pub id: Vec<u8>,
    /// `ed25519`, `secp256k1`, `aes`, or what else the token holds.
    pub kind: String,
    /// The public key, for key pairs we can use.
    pub public_key: Option<Vec<u8>>,
    /// Sensitive and not extractable.
    pub protected: bool,
}

/// Lists the private and secret keys on the token.
pub fn list(session: &Session) -> Result<Vec<Listed>, String> {
    let mut out = Vec::new();
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::SECRET_KEY] {
        let handles = session
            .find_objects(&[Attribute::Class(class)])
            .map_err(|e| describe(&e))?;
        for h in handles {
            out.push(describe_object(session, h)?);
        }
    }
    out.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(out)
}

fn describe_object(session: &Session, h: ObjectHandle) -> Result<Listed, String> {
    let attrs = session
        .get_attributes(
            h,
            &[
                AttributeType::Label,
                AttributeType::Id,
                AttributeType::KeyType,
                AttributeType::Sensitive,
                AttributeType::Extractable,
            ],
        )
        .map_err(|e| describe(&e))?;
    let mut l = Listed {
        label: String::new(),
        id: Vec::new(),
        kind: "unknown".into(),
        public_key: None,
        protected: false,
    };
    let (mut sensitive, mut extractable) = (false, true);
    let mut key_type = None;
    for a in attrs {
        match a {
            Attribute::Label(b) => l.label = String::from_utf8_lossy(&b).into_owned(),
            Attribute::Id(b) => l.id = b,
            Attribute::KeyType(k) => key_type = Some(k),
            Attribute::Sensitive(b) => sensitive = b,
            Attribute::Extractable(b) => extractable = b,
            _ => {}
        }
    }
    l.protected = sensitive && !extractable;
    if key_type == Some(KeyType::AES) {
        l.kind = "aes".into();
    } else if let Ok((scheme, pk)) = read_public_key(session, &Locator::Id(l.id.clone()))
        .or_else(|_| read_public_key(session, &Locator::Label(l.label.clone())))
    {
        l.kind = match scheme {
            Scheme::Ed25519 => "ed25519",
            Scheme::Secp256k1 => "secp256k1",
            Scheme::Bls => "bls",
        }
        .into();
        l.public_key = Some(pk);
    } else if let Some(k) = key_type {
        l.kind = format!("{k}");
    }
    Ok(l)
}
