//! BLS keys sealed with a KMS symmetric key (envelope encryption without
//! the envelope: a 32-byte secret fits KMS `Encrypt` directly).
//!
//! The file (`kind = "kms-encrypt"`) holds KMS's ciphertext blob of the
//! secret, made with the encryption context `{"signer:bls-public-key":
//! "0x…"}`: KMS refuses to decrypt it under any other context, so a blob
//! cannot be moved into another key's file. At load, `Decrypt` (which needs
//! the IAM permission, an enabled key and a reachable KMS) returns the
//! secret into a boxed, zeroized, `mlock`ed key. As with PKCS#11 sealing,
//! the file and its backups are useless without KMS access; the unsealed
//! key lives in the signer's memory while it runs.

use std::sync::Arc;
use std::time::Instant;

use aws_sdk_kms::primitives::Blob;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Kms;
use crate::backend::{Key, SecretKey, locked};
use crate::crypto::bls::BlsSecretKey;

/// The `kind` written and read.
pub const KIND: &str = "kms-encrypt";
const CONTEXT_KEY: &str = "signer:bls-public-key";

/// A sealed key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsSealedKey {
    /// 1.
    pub version: u32,
    /// [`KIND`].
    pub kind: String,
    /// `bls`.
    pub scheme: String,
    /// `0x` + hex.
    pub public_key: String,
    /// The KMS key (ARN) that encrypted it.
    pub kms_key: String,
    /// KMS's ciphertext blob, base64.
    pub ciphertext: String,
}

impl Kms {
    /// Encrypts a BLS secret with `key_id` (a symmetric key).
    pub fn seal_bls(self: &Arc<Self>, key_id: &str, secret: &[u8]) -> Result<KmsSealedKey, String> {
        let key = BlsSecretKey::from_bytes(secret).map_err(|e| e.to_string())?;
        let public_key = format!("0x{}", hex::encode(key.public_key().to_bytes()));
        let deadline = Instant::now() + self.timeout();
        let (id, plain, context) = (
            key_id.to_owned(),
            Zeroizing::new(secret.to_vec()),
            public_key.clone(),
        );
        let out = self
            .call(key_id, deadline, move |c| {
                let (id, plain, context) = (id.clone(), plain.to_vec(), context.clone());
                async move {
                    c.encrypt()
                        .key_id(id)
                        .plaintext(Blob::new(plain))
                        .encryption_context(CONTEXT_KEY, context)
                        .send()
                        .await
                }
            })
            .map_err(|e| format!("kms Encrypt with {key_id}: {e}"))?;
        let blob = out
            .ciphertext_blob()
            .ok_or("kms Encrypt returned no ciphertext")?;
        Ok(KmsSealedKey {
            version: 1,
            kind: KIND.into(),
            scheme: "bls".into(),
            public_key,
            kms_key: out.key_id().unwrap_or(key_id).to_owned(),
            ciphertext: B64.encode(blob.as_ref()),
        })
    }

    /// Decrypts a sealed file into a locked in-memory key.
    pub fn unseal(self: &Arc<Self>, file: &KmsSealedKey) -> Result<Key, String> {
        let plain = self.unseal_secret(file)?;
        let key = Box::new(SecretKey::Bls(
            BlsSecretKey::from_bytes(&plain).map_err(|e| format!("unsealed secret: {e}"))?,
        ));
        let lock = locked::lock(&*key);
        Ok(Key::Unsealed(key, lock))
    }

    /// The sealed secret itself, checked against the file's public key: for
    /// moving it under another wrapping key (`signer keys reseal`) only.
    pub fn unseal_secret(
        self: &Arc<Self>,
        file: &KmsSealedKey,
    ) -> Result<Zeroizing<Vec<u8>>, String> {
        if file.version != 1 || file.kind != KIND || file.scheme != "bls" {
            return Err(format!(
                "not a KMS-sealed BLS key (version {} kind {:?})",
                file.version, file.kind
            ));
        }
        let blob = B64
            .decode(&file.ciphertext)
            .map_err(|_| "ciphertext is not base64".to_owned())?;
        let deadline = Instant::now() + self.timeout();
        let (id, context) = (file.kms_key.clone(), file.public_key.clone());
        let out = self
            .call(&file.kms_key, deadline, move |c| {
                let (id, blob, context) = (id.clone(), blob.clone(), context.clone());
                async move {
                    c.decrypt()
                        .key_id(id)
                        .ciphertext_blob(Blob::new(blob))
                        .encryption_context(CONTEXT_KEY, context)
                        .send()
                        .await
                }
            })
            .map_err(|e| format!("kms Decrypt with {}: {e}", file.kms_key))?;
        let plain = Zeroizing::new(
            out.plaintext()
                .ok_or("kms Decrypt returned no plaintext")?
                .as_ref()
                .to_vec(),
        );
        let key = BlsSecretKey::from_bytes(&plain).map_err(|e| format!("unsealed secret: {e}"))?;
        if format!("0x{}", hex::encode(key.public_key().to_bytes())) != file.public_key {
            return Err("the unsealed key does not match the file's public key".into());
        }
        Ok(plain)
    }
}
