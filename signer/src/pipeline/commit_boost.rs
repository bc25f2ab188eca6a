//! Commit-Boost requests in the pipeline: a module's commitment signed by a
//! consensus key or one of its proxies, and the making of a proxy (a new
//! key, its delegation signed by the consensus key, stored encrypted before
//! the answer). Every one is decided on the consensus key — the policy
//! grants `commit_boost.*` on it, and a key out of service takes its
//! proxies with it — and audited like any signature.
//!
//! The signing roots are `eth2::commit_boost`'s: bound to the module's
//! signing id (from the configuration, never the request), its nonce and
//! the configured EVM chain, under a domain no beacon-chain message uses.
//! Nothing here touches the slashing database.

use std::sync::Arc;
use std::time::Instant;

use zeroize::Zeroizing;

use crate::backend::proxies::{ProxyKey, ProxyScheme, ProxyStore};
use crate::crypto::bls::BlsSecretKey;
use crate::eth2::commit_boost::{self as cb, Commitment, Proxy};
use crate::policy::{Operation, Policy};

use super::refusal::{Unavailable, backend_refusal};
use super::{Keyring, Message, Outcome, Pipeline, Refusal, Request, Signature, Swap};

/// The Commit-Boost settings the pipeline needs.
#[derive(Debug)]
pub struct CommitBoost {
    /// The EVM chain id commitments are bound to.
    pub chain_id: u64,
    /// The proxy keys.
    pub proxies: Arc<ProxyStore>,
    modules: Swap<Vec<Module>>,
}

impl CommitBoost {
    /// Settings for `chain_id`, with `proxies` and these `modules`.
    pub fn new(chain_id: u64, proxies: Arc<ProxyStore>, modules: Vec<Module>) -> Self {
        Self {
            chain_id,
            proxies,
            modules: Swap::new(modules),
        }
    }

    /// The modules (a snapshot).
    pub fn modules(&self) -> Arc<Vec<Module>> {
        self.modules.load()
    }

    /// Replaces the modules (a reload re-reads their secrets).
    pub fn set_modules(&self, modules: Vec<Module>) {
        self.modules.store(modules);
    }
}

/// A module allowed to call, with the secret its tokens are signed with.
pub struct Module {
    /// Its id (its tokens' `module` claim).
    pub id: String,
    /// Its signing id.
    pub signing_id: [u8; 32],
    /// The policy client it is.
    pub client: String,
    secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Module({}, client {})", self.id, self.client)
    }
}

impl Module {
    /// A module and its token secret.
    pub fn new(
        id: String,
        signing_id: [u8; 32],
        client: String,
        secret: Zeroizing<Vec<u8>>,
    ) -> Self {
        Self {
            id,
            signing_id,
            client,
            secret,
        }
    }

    /// The secret its tokens are signed with.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }
}

/// What a module asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitBoostAsk {
    /// The module (configured id, from its verified token).
    pub module: String,
    /// Its signing id (from the configuration).
    pub signing_id: [u8; 32],
    /// What it wants.
    pub what: CommitBoostWhat,
}

/// A commitment or a new proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitBoostWhat {
    /// Sign `object_root` with nonce `nonce`: with the request's key
    /// (`by: None`, a consensus key) or with the module's proxy of that
    /// scheme the request names.
    Sign {
        /// `None`: the consensus key itself.
        by: Option<ProxyScheme>,
        /// The module's 32 bytes.
        object_root: [u8; 32],
        /// The module's nonce.
        nonce: u64,
    },
    /// Make a proxy of this scheme for the request's consensus key.
    Delegate(ProxyScheme),
}

impl CommitBoostWhat {
    /// The operation the policy must grant on the consensus key.
    pub fn operation(&self) -> Operation {
        match self {
            Self::Sign { by: None, .. } => Operation::CommitBoostSign,
            Self::Sign { by: Some(_), .. } => Operation::CommitBoostProxySign,
            Self::Delegate(_) => Operation::CommitBoostProxy,
        }
    }
}

impl CommitBoostAsk {
    /// The audit note of an answered request: the module, and what it got.
    pub(super) fn note(&self, outcome: &Outcome) -> String {
        match (&self.what, outcome) {
            (CommitBoostWhat::Delegate(s), Ok(Signature::Delegation { proxy, .. })) => format!(
                "module {}: new {} proxy 0x{}",
                self.module,
                s.name(),
                hex::encode(proxy)
            ),
            (
                CommitBoostWhat::Sign {
                    object_root, nonce, ..
                },
                Ok(_),
            ) => format!(
                "module {}: object_root 0x{}, nonce {nonce}",
                self.module,
                hex::encode(object_root)
            ),
            (_, Err(Refusal::NotAllowed(v))) => format!("module {}: {v}", self.module),
            (_, Err(r)) => format!("module {}: {}", self.module, r.client_message()),
            (_, Ok(_)) => format!("module {}", self.module),
        }
    }
}

/// How a Commit-Boost item is signed once prepared.
pub(super) enum CbPlan<'a> {
    /// A commitment by the consensus key.
    Consensus {
        key: &'a BlsSecretKey,
        root: [u8; 32],
    },
    /// A commitment by a proxy.
    Proxy {
        proxy: Arc<ProxyKey>,
        root: [u8; 32],
    },
    /// A new proxy for `delegator`, by `module`.
    Delegate {
        key: &'a BlsSecretKey,
        module: String,
        delegator: [u8; 48],
        scheme: ProxyScheme,
    },
}

impl Pipeline {
    /// The Commit-Boost settings, when the API is on.
    pub fn commit_boost(&self) -> Option<&CommitBoost> {
        self.commit_boost.as_ref()
    }

    /// Serves Commit-Boost requests with `settings`.
    pub fn with_commit_boost(mut self, settings: CommitBoost) -> Self {
        self.commit_boost = Some(settings);
        self
    }

    /// Decides `ask` on its consensus key and says how it will be signed.
    pub(super) fn plan_commit_boost<'a>(
        &self,
        keys: &'a Keyring,
        policy: &Policy,
        r: &Request,
        ask: &CommitBoostAsk,
    ) -> Result<CbPlan<'a>, Refusal> {
        let operation = ask.what.operation();
        let Some(settings) = &self.commit_boost else {
            return Err(Refusal::InvalidRequest(
                "the Commit-Boost API is not configured here ([commit_boost])".into(),
            ));
        };
        let gfv = self.network.genesis_fork_version;
        let commitment = |object_root: &[u8; 32], nonce: u64| {
            Commitment {
                object_root: (*object_root).into(),
                module_signing_id: ask.signing_id.into(),
                nonce,
                chain_id: settings.chain_id,
            }
            .signing_root(gfv)
            .0
        };
        // The consensus key everything is decided on.
        let (delegator, proxy) = match &ask.what {
            CommitBoostWhat::Sign {
                by: Some(scheme), ..
            } => {
                let proxy = settings
                    .proxies
                    .find(&ask.module, *scheme, &r.public_key)
                    .ok_or(Refusal::UnknownKey)?;
                (proxy.delegator, Some(proxy))
            }
            _ => (
                <[u8; 48]>::try_from(&*r.public_key).map_err(|_| Refusal::UnknownKey)?,
                None,
            ),
        };
        self.authorize(policy, r.client.as_str(), operation, &delegator, None)?;
        let key = keys.get(&delegator)?;
        let Some(bls) = key.bls() else {
            return Err(Refusal::InvalidRequest(
                "Commit-Boost signs with BLS consensus keys only".into(),
            ));
        };
        Ok(match (&ask.what, proxy) {
            (
                CommitBoostWhat::Sign {
                    object_root, nonce, ..
                },
                None,
            ) => CbPlan::Consensus {
                key: bls,
                root: commitment(object_root, *nonce),
            },
            (
                CommitBoostWhat::Sign {
                    object_root, nonce, ..
                },
                Some(proxy),
            ) => CbPlan::Proxy {
                proxy,
                root: commitment(object_root, *nonce),
            },
            (CommitBoostWhat::Delegate(scheme), _) => CbPlan::Delegate {
                key: bls,
                module: ask.module.clone(),
                delegator,
                scheme: *scheme,
            },
        })
    }

    /// Signs a prepared Commit-Boost item.
    pub(super) fn finish_commit_boost(&self, plan: &CbPlan<'_>) -> Outcome {
        let started = Instant::now();
        let out = match plan {
            CbPlan::Consensus { key, root } => Signature::Bls(key.sign(root).to_bytes()),
            CbPlan::Proxy { proxy, root } => match proxy.scheme {
                ProxyScheme::Bls => match proxy.key.bls() {
                    Some(k) => Signature::Bls(k.sign(root).to_bytes()),
                    None => {
                        return Err(Refusal::BackendUnavailable(Unavailable::Internal(
                            "a BLS proxy without its key",
                        )));
                    }
                },
                // In memory or in the vault (an HSM token).
                ProxyScheme::Ecdsa => {
                    let s = proxy.key.sign_secp256k1(root).map_err(backend_refusal)?;
                    Signature::Raw {
                        signature: s.rs.to_vec(),
                        recovery_id: Some(s.recovery_id),
                    }
                }
            },
            CbPlan::Delegate {
                key,
                module,
                delegator,
                scheme,
            } => {
                let store = self
                    .commit_boost
                    .as_ref()
                    .map(|c| c.proxies.clone())
                    .ok_or(Refusal::BackendUnavailable(Unavailable::Internal(
                        "no proxy store",
                    )))?;
                let fresh = store.generate(module, *scheme).map_err(|e| {
                    tracing::error!(error = %e, "Commit-Boost: generating a proxy failed");
                    Refusal::BackendUnavailable(Unavailable::Internal("proxy key generation"))
                })?;
                let odd =
                    || Refusal::BackendUnavailable(Unavailable::Internal("proxy key generation"));
                let target = match scheme {
                    ProxyScheme::Bls => {
                        Proxy::Bls(fresh.id.as_slice().try_into().map_err(|_| odd())?)
                    }
                    ProxyScheme::Ecdsa => {
                        Proxy::Ecdsa(fresh.id.as_slice().try_into().map_err(|_| odd())?)
                    }
                };
                let root =
                    cb::delegation_root(delegator, target, self.network.genesis_fork_version);
                let signature = key.sign(root.as_slice()).to_bytes();
                // Stored (durably) before the module learns of it.
                let stored = store.store(module, delegator, fresh, signature).map_err(|e| {
                    tracing::error!(error = %e, module, "Commit-Boost: storing a new proxy failed; nothing was answered");
                    Refusal::BackendUnavailable(Unavailable::Internal("the proxy key store"))
                })?;
                Signature::Delegation {
                    proxy: stored.id.clone(),
                    signature,
                }
            }
        };
        self.metrics.stage("backend", started.elapsed());
        Ok(out)
    }
}

/// The Commit-Boost request in a pipeline message, if it is one.
pub(super) fn ask_of(m: &Message) -> Option<&CommitBoostAsk> {
    match m {
        Message::CommitBoost(a) => Some(a),
        _ => None,
    }
}
