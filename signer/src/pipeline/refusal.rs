//! Why a request was not signed: one [`Refusal`] per class, and the one
//! place that turns a refusal into what a client is told.

use slashing_db::NotSafe;

use crate::backend::BackendError;
use crate::policy::Verdict;

/// Why a request was not signed. Frontends map these to their wire codes.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Signing could be slashable; the stored record that conflicts is the evidence.
    #[error("slashable: {0}")]
    Slashable(NotSafe),
    /// The policy does not allow this client this operation on this key and network.
    #[error("not allowed by policy ({0:?})")]
    NotAllowed(Verdict),
    /// No key with this public key is loaded.
    #[error("unknown key")]
    UnknownKey,
    /// The request is malformed, or its signing root is not the message's.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The slashing database, a key backend or the audit log failed; nothing was signed.
    #[error("backend unavailable: {0}")]
    BackendUnavailable(String),
    /// The client is over its policy's `max_requests_per_second`.
    #[error("over this client's rate limit of {0} requests/s")]
    RateLimited(u32),
}

impl Refusal {
    /// The stable name used in metrics and audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Slashable(_) => "slashable",
            Self::NotAllowed(_) => "not_allowed",
            Self::UnknownKey => "unknown_key",
            Self::InvalidRequest(_) => "invalid_request",
            Self::BackendUnavailable(_) => "backend_unavailable",
            Self::RateLimited(_) => "rate_limited",
        }
    }

    /// What a client is told, for every frontend: the refusal without the
    /// daemon's internals. A backend failure's detail (database address,
    /// file path, PKCS#11 function, PIN source, KMS error) goes to the log
    /// here and never to the caller, who learns only that nothing was
    /// signed and to retry.
    pub fn client_message(&self) -> String {
        match self {
            Self::BackendUnavailable(detail) => {
                tracing::warn!(%detail, "request refused: backend unavailable");
                "backend unavailable: nothing was signed; retry later or on another signer".into()
            }
            other => other.to_string(),
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
            Refusal::BackendUnavailable(other.to_string())
        }
    }
}

/// Refusals of preparation are answered as they are; they own no resources.
pub(super) fn clone_refusal(r: &Refusal) -> Refusal {
    match r {
        Refusal::Slashable(n) => Refusal::Slashable(n.clone()),
        Refusal::NotAllowed(v) => Refusal::NotAllowed(*v),
        Refusal::UnknownKey => Refusal::UnknownKey,
        Refusal::InvalidRequest(s) => Refusal::InvalidRequest(s.clone()),
        Refusal::BackendUnavailable(s) => Refusal::BackendUnavailable(s.clone()),
        Refusal::RateLimited(n) => Refusal::RateLimited(*n),
    }
}
