//! Keys an operator has taken out of service: disabled (reversible) or
//! retired (final) — and enabled again — with who, why and when. Kept in the slashing database's
//! `meta` table under `key_state/<public key hex>` as JSON, so that every
//! signer instance sharing the database refuses the key; the key's signing
//! history is not touched (a retired key keeps it, for export).

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::DbError;

/// Where the states live in `meta`.
pub const PREFIX: &str = "key_state/";

/// Out of service, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// In service again after being disabled (kept: who enabled it, and why).
    Enabled,
    /// Refuses every request until enabled again.
    Disabled,
    /// Refuses every request, for good.
    Retired,
}

/// A key's state, as the operator set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyState {
    /// Disabled or retired.
    pub state: Lifecycle,
    /// Why (the operator's words).
    pub reason: String,
    /// Who (the operator's user name).
    pub by: String,
    /// When, RFC 3339 UTC.
    pub at: String,
}

impl KeyState {
    /// Whether the key refuses requests.
    pub fn refuses(&self) -> bool {
        self.state != Lifecycle::Enabled
    }
}

/// A change the rules do not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyStateError {
    /// Retirement is final.
    #[error("the key was retired ({at}, by {by}: {reason}); retirement is final")]
    Retired {
        /// When.
        at: String,
        /// Who.
        by: String,
        /// Why.
        reason: String,
    },
}

fn key(public_key: &[u8]) -> String {
    format!("{PREFIX}{}", hex::encode(public_key))
}

fn corrupt(what: &str) -> DbError {
    DbError::Engine {
        context: "reading key states",
        source: format!("{what} in meta is not a key state").into(),
    }
}

pub(crate) fn all(e: &mut dyn Engine) -> Result<Vec<(Vec<u8>, KeyState)>, DbError> {
    e.meta_with_prefix(PREFIX)?
        .into_iter()
        .map(|(k, v)| {
            let pk = k
                .strip_prefix(PREFIX)
                .and_then(|h| hex::decode(h).ok())
                .ok_or_else(|| corrupt(&k))?;
            let s = serde_json::from_slice(&v).map_err(|_| corrupt(&k))?;
            Ok((pk, s))
        })
        .collect()
}

/// Sets a key's state; a retired key cannot change. Returns the state
/// before.
pub(crate) fn set(
    e: &mut dyn Engine,
    public_key: &[u8],
    new: &KeyState,
) -> Result<Result<Option<KeyState>, KeyStateError>, DbError> {
    let k = key(public_key);
    let before: Option<KeyState> = e
        .meta(&k)?
        .map(|v| serde_json::from_slice(&v).map_err(|_| corrupt(&k)))
        .transpose()?;
    if let Some(b) = &before
        && b.state == Lifecycle::Retired
    {
        return Ok(Err(KeyStateError::Retired {
            at: b.at.clone(),
            by: b.by.clone(),
            reason: b.reason.clone(),
        }));
    }
    let v = serde_json::to_vec(new).map_err(|e| DbError::Engine {
        context: "writing a key state",
        source: e.into(),
    })?;
    e.set_meta(&k, &v)?;
    Ok(Ok(before))
}
