//! `[commit_boost]` at start and reload: the proxy store opened (every proxy
//! decrypted, or the daemon does not start) and the modules' token secrets
//! read. A reload (SIGHUP, `/reload`) reads the secrets again, so a module's
//! secret is rotated by replacing its file.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::backend::Key;
use crate::backend::kms::Kms;
use crate::backend::pkcs11::admin::KeyKind;
use crate::backend::pkcs11::{Locator, Registry};
use crate::backend::proxies::{ProxyStore, ProxyVault};
use crate::config::{self, ProxyVaultSetting};
use crate::pipeline::{CommitBoost, CommitBoostModule};

/// Shortest module secret accepted: an HS256 key of fewer bytes is guessable.
const MIN_SECRET: usize = 16;

/// The configured modules with their secrets, or the first that cannot be read.
pub(super) fn modules(cb: &config::CommitBoost) -> Result<Vec<CommitBoostModule>, String> {
    cb.modules
        .iter()
        .map(|m| {
            let file = &m.jwt_secret_file;
            let secret = crate::secret_file::read_password_file(file).map_err(|e| {
                format!(
                    "commit_boost module {:?}: jwt_secret_file {}: {e}",
                    m.id,
                    file.display()
                )
            })?;
            if secret.len() < MIN_SECRET {
                return Err(format!(
                    "commit_boost module {:?}: jwt_secret_file {} holds {} bytes; use at least {MIN_SECRET} random ones (e.g. openssl rand -hex 32)",
                    m.id,
                    file.display(),
                    secret.len()
                ));
            }
            let signing_id = m
                .signing_id_bytes()
                .ok_or_else(|| format!("commit_boost module {:?}: bad signing_id", m.id))?;
            Ok(CommitBoostModule::new(
                m.id.clone(),
                signing_id,
                m.client.clone(),
                Zeroizing::new(secret.as_bytes().to_vec()),
            ))
        })
        .collect()
}

/// The pipeline's Commit-Boost settings for `cb` on the network of
/// `genesis_fork_version`.
pub(super) fn settings(
    cb: &config::CommitBoost,
    genesis_fork_version: [u8; 4],
    backends: &super::Backends,
) -> Result<CommitBoost, String> {
    let vault: Option<Box<dyn ProxyVault>> = match (cb.ecdsa_proxy_vault(), backends) {
        (None, _) => None,
        (
            Some(Ok(ProxyVaultSetting::Pkcs11(token))),
            super::Backends {
                pkcs11: Some(registry),
                ..
            },
        ) => Some(Box::new(TokenVault {
            registry: registry.clone(),
            token: token.to_owned(),
        })),
        (Some(Ok(ProxyVaultSetting::Kms)), super::Backends { kms: Some(kms), .. }) => {
            Some(Box::new(KmsVault { kms: kms.clone() }))
        }
        (Some(_), _) => {
            return Err(format!(
                "commit_boost.ecdsa_proxy_vault {:?}: its backend is not configured",
                cb.ecdsa_proxy_vault
            ));
        }
    };
    let chain_id = cb
        .chain_id_for(genesis_fork_version)
        .ok_or("commit_boost: set chain_id")?;
    let modules = modules(cb)?;
    let proxies = ProxyStore::open(&cb.proxy_dir, &cb.proxy_password_file, vault)
        .map_err(|e| format!("commit_boost proxy store: {e}"))?;
    tracing::info!(
        chain_id,
        modules = modules.len(),
        proxies = proxies.len(),
        dir = %cb.proxy_dir.display(),
        "Commit-Boost signer API on the HTTPS listener"
    );
    Ok(CommitBoost::new(chain_id, Arc::new(proxies), modules))
}

/// secp256k1 proxies inside one PKCS#11 token.
#[derive(Debug)]
struct TokenVault {
    registry: Arc<Registry>,
    token: String,
}

impl ProxyVault for TokenVault {
    fn kind(&self) -> &'static str {
        "pkcs11"
    }

    fn name(&self) -> &str {
        &self.token
    }

    fn generate_secp256k1(&self, label: &str) -> Result<(Key, String), String> {
        self.registry
            .generate(&self.token, KeyKind::Secp256k1, label)?;
        Ok((self.load(label)?, label.to_owned()))
    }

    fn load(&self, label: &str) -> Result<Key, String> {
        self.registry.load_key(
            Locator::Label(label.to_owned()),
            std::slice::from_ref(&self.token),
        )
    }
}

/// secp256k1 proxies as KMS keys (`ECC_SECG_P256K1`), tagged with their
/// label and module.
#[derive(Debug)]
struct KmsVault {
    kms: Arc<Kms>,
}

impl ProxyVault for KmsVault {
    fn kind(&self) -> &'static str {
        "kms"
    }

    fn name(&self) -> &str {
        "kms"
    }

    fn generate_secp256k1(&self, label: &str) -> Result<(Key, String), String> {
        let arn = self.kms.create_secp256k1(
            &format!("Commit-Boost ECDSA proxy {label} (made by the signer)"),
            &[("commit-boost-proxy", label)],
        )?;
        Ok((self.kms.load_key(&arn)?, arn))
    }

    fn load(&self, reference: &str) -> Result<Key, String> {
        self.kms.load_key(reference)
    }
}
