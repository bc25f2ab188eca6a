//! `[commit_boost]` at start and reload: the proxy store opened (every proxy
//! decrypted, or the daemon does not start) and the modules' token secrets
//! read. A reload (SIGHUP, `/reload`) reads the secrets again, so a module's
//! secret is rotated by replacing its file.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::backend::Key;
use crate::backend::pkcs11::admin::KeyKind;
use crate::backend::pkcs11::{Locator, Registry};
use crate::backend::proxies::{ProxyStore, ProxyVault};
use crate::config;
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
    pkcs11: Option<&Arc<Registry>>,
) -> Result<CommitBoost, String> {
    let vault: Option<Box<dyn ProxyVault>> = match (&cb.ecdsa_proxy_token, pkcs11) {
        (None, _) => None,
        (Some(token), Some(registry)) => Some(Box::new(TokenVault {
            registry: registry.clone(),
            token: token.clone(),
        })),
        (Some(token), None) => {
            return Err(format!(
                "commit_boost.ecdsa_proxy_token {token:?}: no [pkcs11] section"
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
    fn name(&self) -> &str {
        &self.token
    }

    fn generate_secp256k1(&self, label: &str) -> Result<Key, String> {
        self.registry
            .generate(&self.token, KeyKind::Secp256k1, label)?;
        self.load(label)
    }

    fn load(&self, label: &str) -> Result<Key, String> {
        self.registry.load_key(
            Locator::Label(label.to_owned()),
            std::slice::from_ref(&self.token),
        )
    }
}
