//! Why a request was not signed: one [`Refusal`] per class, and the one
//! place that turns a refusal into what a client is told.

use std::sync::Arc;

use slashing_db::{DbError, Lifecycle, NotSafe};

use crate::audit::SinkError;
use crate::backend::BackendError;
use crate::policy::{Verdict, Violation};

/// Why a request was not signed. Frontends map these to their wire codes
/// and tell the client [`Refusal::client_message`], nothing else.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    /// Signing could be slashable; the stored record that conflicts is the evidence.
    #[error("slashable: {0}")]
    Slashable(NotSafe),
    /// The policy does not allow this client this operation on this key and network.
    #[error("not allowed by policy: {0}")]
    NotAllowed(Verdict),
    /// Allowed, but what it would sign is outside its grant's block-content
    /// constraints (fee recipient, gas limit, graffiti, registration values).
    #[error("policy violation: {0}")]
    PolicyViolation(Violation),
    /// No key with this public key is loaded.
    #[error("unknown key")]
    UnknownKey,
    /// The request is malformed, or its signing root is not the message's.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The slashing database, a key backend or the audit log failed; nothing was signed.
    #[error("backend unavailable: {0}")]
    BackendUnavailable(Unavailable),
    /// Outside what the connection serves: another chain, or above the
    /// chain's `max_height`.
    #[error("{0}")]
    OutOfScope(OutOfScope),
    /// The client is over its policy's `max_requests_per_second`.
    #[error("over this client's rate limit of {0} requests/s")]
    RateLimited(u32),
    /// An operator took the key out of service (`signer keys disable` or
    /// `retire`); the reason stays in the audit log, not in the answer.
    #[error("{}", match .0 {
        Lifecycle::Retired => "key retired by the operator",
        Lifecycle::Disabled | Lifecycle::Enabled => "key disabled by the operator",
    })]
    KeyDisabled(Lifecycle),
}

impl Refusal {
    /// The stable name used in metrics and audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Slashable(_) => "slashable",
            Self::NotAllowed(_) => "not_allowed",
            Self::PolicyViolation(_) => "policy_violation",
            Self::UnknownKey => "unknown_key",
            Self::InvalidRequest(_) => "invalid_request",
            Self::BackendUnavailable(_) => "backend_unavailable",
            Self::OutOfScope(_) => "out_of_scope",
            Self::RateLimited(_) => "rate_limited",
            Self::KeyDisabled(_) => "key_disabled",
        }
    }

    /// What a client is told, for every frontend: the refusal without the
    /// daemon's internals. A failure's detail (database address, file path,
    /// PKCS#11 function, PIN source, KMS error) goes to the log here and
    /// never to the caller, who learns which part failed, that nothing was
    /// signed, and to retry.
    pub fn client_message(&self) -> String {
        match self {
            Self::BackendUnavailable(u) => {
                tracing::warn!(detail = %u, "request refused: backend unavailable");
                format!(
                    "{} unavailable: nothing was signed; retry later or on another signer",
                    u.part()
                )
            }
            other => other.to_string(),
        }
    }
}

/// How a request fell outside its connection's [`super::Scope`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutOfScope {
    /// The connection serves another chain.
    #[error("this signer serves chain {served} on this connection, not {asked}")]
    OtherChain {
        /// The connection's chain.
        served: String,
        /// The chain the request named.
        asked: String,
    },
    /// The height is above the chain's `max_height`.
    #[error("height {height} is above this chain's max_height {max_height}")]
    AboveMaxHeight {
        /// The requested height.
        height: i64,
        /// The configured limit.
        max_height: i64,
    },
}

/// What failed when a request could not be decided or signed: typed, so the
/// detail stays in the log ([`Refusal::client_message`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unavailable {
    /// The slashing database could not decide (shared by a whole batch).
    #[error("slashing database: {0}")]
    Database(Arc<DbError>),
    /// A key backend could not sign.
    #[error("key backend: {0}")]
    Backend(BackendError),
    /// The audit record could not be written: nothing is answered without it.
    #[error("audit log: {0}")]
    Audit(SinkError),
    /// The signer's own machinery (a poisoned lock, a lost answer).
    #[error("signer: {0}")]
    Internal(&'static str),
}

impl Unavailable {
    /// Which part failed, as the client may learn it.
    pub fn part(&self) -> &'static str {
        match self {
            Self::Database(_) => "slashing database",
            Self::Backend(_) => "key backend",
            Self::Audit(_) => "audit log",
            Self::Internal(_) => "signer",
        }
    }
}

/// A backend failure as the client sees it: a key that cannot do this is
/// the request's fault; anything else is the backend's (details are logged).
pub(super) fn backend_refusal(e: BackendError) -> Refusal {
    match e {
        BackendError::WrongScheme(why) => Refusal::InvalidRequest(why.into()),
        other => {
            tracing::warn!(error = %other, "backend could not sign");
            Refusal::BackendUnavailable(Unavailable::Backend(other))
        }
    }
}
