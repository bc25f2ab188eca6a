//! Module authentication of the Commit-Boost signer API: every request
//! carries `Authorization: Bearer <JWT>`, an HS256 token signed with the
//! module's own secret, whose claims say which module (`module`), for which
//! request path (`route`), until when (`exp`, Unix seconds) and, for a
//! request with a body, for which body (`payload_hash`: `0x` + the
//! keccak-256 of the body as sent), so a token cannot be replayed on another
//! route or with another body (commit-boost-client, `signer-api.md`).
//!
//! The module named in the token is read before the signature is checked
//! (its secret is what checks it) and trusted only after. Every refusal
//! says which check failed; none echoes a secret.

use alloy_primitives::keccak256;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The module (its id in the configuration).
    pub module: String,
    /// The request path it is for.
    pub route: String,
    /// When it expires (Unix seconds).
    pub exp: u64,
}

/// Why a request is not authenticated (HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// No `Authorization: Bearer` header.
    #[error("no module token: send Authorization: Bearer <JWT>")]
    Missing,
    /// Not three base64url parts of JSON.
    #[error("the module token is not a JWT (header.claims.signature, base64url JSON)")]
    Malformed,
    /// Another algorithm than HS256 (including `none`).
    #[error("the module token is signed with {0:?}; only HS256 is accepted")]
    Algorithm(String),
    /// A claim is missing or of the wrong type.
    #[error("the module token's claims are not {{module, route, exp[, payload_hash]}}: {0}")]
    Claims(String),
    /// The module is not configured.
    #[error("the module token names module {0:?}, which is not configured here")]
    UnknownModule(String),
    /// The signature does not verify with that module's secret.
    #[error("the module token's signature does not verify with module {0:?}'s secret")]
    BadSignature(String),
    /// `exp` is past.
    #[error("the module token expired {0} s ago: make a new one")]
    Expired(u64),
    /// The token is for another path.
    #[error("the module token is for route {got:?}, not {expected:?}")]
    WrongRoute {
        /// What the token says.
        got: String,
        /// The path requested.
        expected: String,
    },
    /// A request with a body and no `payload_hash`.
    #[error("the module token has no payload_hash; a request with a body needs one")]
    PayloadHashMissing,
    /// `payload_hash` is not the body's.
    #[error("the module token's payload_hash is not the keccak-256 of this body")]
    PayloadMismatch,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Other claims (`iat`, …) are ignored.
#[derive(Deserialize)]
struct RawClaims {
    module: String,
    route: String,
    exp: u64,
    #[serde(default)]
    payload_hash: Option<String>,
}

fn part<T: for<'de> Deserialize<'de>>(b64: &str) -> Result<T, JwtError> {
    let bytes = B64URL.decode(b64).map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// Verifies the `Authorization` header of a request to `route` with `body`
/// (`None` or empty: none) at Unix time `now`; `secret` gives a configured
/// module's secret.
pub fn verify<'s>(
    authorization: Option<&str>,
    secret: impl Fn(&str) -> Option<&'s [u8]>,
    route: &str,
    body: Option<&[u8]>,
    now: u64,
) -> Result<Claims, JwtError> {
    let token = authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(JwtError::Missing)?;
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: Header = part(h)?;
    if header.alg != "HS256" {
        return Err(JwtError::Algorithm(header.alg));
    }
    let claims: RawClaims = {
        let bytes = B64URL.decode(c).map_err(|_| JwtError::Malformed)?;
        serde_json::from_slice(&bytes).map_err(|e| JwtError::Claims(e.to_string()))?
    };
    let key =
        secret(&claims.module).ok_or_else(|| JwtError::UnknownModule(claims.module.clone()))?;
    let signature = B64URL.decode(s).map_err(|_| JwtError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .map_err(|_| JwtError::BadSignature(claims.module.clone()))?;
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(c.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| JwtError::BadSignature(claims.module.clone()))?;
    // Signed by the module: its claims can be read now.
    if claims.exp <= now {
        return Err(JwtError::Expired(now - claims.exp));
    }
    if claims.route != route {
        return Err(JwtError::WrongRoute {
            got: claims.route,
            expected: route.to_owned(),
        });
    }
    if let Some(body) = body.filter(|b| !b.is_empty()) {
        let expected = format!("0x{}", hex::encode(keccak256(body)));
        match &claims.payload_hash {
            None => return Err(JwtError::PayloadHashMissing),
            Some(got) if !got.eq_ignore_ascii_case(&expected) => {
                return Err(JwtError::PayloadMismatch);
            }
            Some(_) => {}
        }
    }
    Ok(Claims {
        module: claims.module,
        route: claims.route,
        exp: claims.exp,
    })
}
