//! Anchors of audit logs: the position (records, head hash) up to which an
//! audit log is known to have been written durably, kept in the slashing
//! database's `meta` table under `audit_anchor/<log name>` as the text
//! `<records> <head hex>` — readable with `SELECT key, convert_from(value,
//! 'UTF8') FROM meta` (PostgreSQL) or `SELECT key, CAST(value AS TEXT)`
//! (SQLite). Kept in `meta` rather than a table of its own so that the
//! schema did not change and an older signer still opens the database.
//!
//! The signer's audit module decides what a mismatch means; this module
//! only stores and compares. See `docs/decisions/0008-audit-anchor.md`.

use crate::engine::Engine;
use crate::error::DbError;

/// Where the anchors live in `meta`.
pub const PREFIX: &str = "audit_anchor/";

/// How far an audit log is known to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditAnchor {
    /// Records in the log (the next record's sequence number).
    pub records: u64,
    /// SHA-256 of the last of them (all zeros when there are none).
    pub head: [u8; 32],
}

impl AuditAnchor {
    fn encode(&self) -> Vec<u8> {
        format!("{} {}", self.records, hex::encode(self.head)).into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (records, head) = text.split_once(' ')?;
        let mut h = [0u8; 32];
        hex::decode_to_slice(head, &mut h).ok()?;
        Some(Self {
            records: records.parse().ok()?,
            head: h,
        })
    }
}

fn corrupt(log: &str) -> DbError {
    DbError::Engine {
        context: "reading an audit anchor",
        source: format!("the anchor of audit log {log:?} is not `<records> <hex hash>`").into(),
    }
}

pub(crate) fn get(e: &mut dyn Engine, log: &str) -> Result<Option<AuditAnchor>, DbError> {
    e.meta(&format!("{PREFIX}{log}"))?
        .map(|v| AuditAnchor::decode(&v).ok_or_else(|| corrupt(log)))
        .transpose()
}

pub(crate) fn all(e: &mut dyn Engine) -> Result<Vec<(String, AuditAnchor)>, DbError> {
    e.meta_with_prefix(PREFIX)?
        .into_iter()
        .map(|(k, v)| {
            let log = k.strip_prefix(PREFIX).unwrap_or(&k).to_owned();
            let a = AuditAnchor::decode(&v).ok_or_else(|| corrupt(&log))?;
            Ok((log, a))
        })
        .collect()
}

/// Sets the anchor if the stored one is still `expected`; `false` (nothing
/// written) when someone else moved it.
pub(crate) fn compare_and_set(
    e: &mut dyn Engine,
    log: &str,
    expected: Option<&AuditAnchor>,
    new: &AuditAnchor,
) -> Result<bool, DbError> {
    if get(e, log)?.as_ref() != expected {
        return Ok(false);
    }
    e.set_meta(&format!("{PREFIX}{log}"), &new.encode())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_refuses_garbage() {
        let a = AuditAnchor {
            records: 12_345,
            head: [0xab; 32],
        };
        assert_eq!(
            String::from_utf8(a.encode()).ok().as_deref(),
            Some("12345 abababababababababababababababababababababababababababababababab")
        );
        assert_eq!(AuditAnchor::decode(&a.encode()), Some(a));
        for bad in [&b""[..], b"12", b"x 00", b"1 abcd", b"-1 ", &[0xff, 0x20]] {
            assert_eq!(AuditAnchor::decode(bad), None, "{bad:?}");
        }
    }
}
