//! Keys an operator took out of service (`signer keys disable`, `retire`)
//! or back into it (`enable`): the states live in the slashing database so
//! that every instance sharing it refuses the key; each instance keeps a copy,
//! read before it serves and about once a second after (the daemon calls
//! [`Pipeline::refresh_key_states`]), and records every change it sees in
//! its own audit log.

use std::collections::HashMap;

use slashing_db::{DbError, KeyState, Lifecycle};

use super::{Pipeline, Refusal};
use crate::audit::Entry;

/// Every key's state as last read, by public key.
pub(super) type KeyStates = HashMap<Vec<u8>, KeyState>;

/// What asking for a key state does, given the key's state now (`None`:
/// never set, so in service). One rule for the command and the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The key is retired: nothing can change it.
    Final,
    /// It is in that state already.
    Unchanged,
    /// The state changes.
    Change,
}

/// The [`Plan`] for `wanted` on a key whose state is `before`.
pub fn plan(wanted: Lifecycle, before: Option<&KeyState>) -> Plan {
    match (wanted, before.map(|s| s.state)) {
        (_, Some(Lifecycle::Retired)) => Plan::Final,
        (Lifecycle::Enabled, None) => Plan::Unchanged,
        (w, Some(b)) if w == b => Plan::Unchanged,
        _ => Plan::Change,
    }
}

/// What `signer keys disable|enable|retire` records as the audit request.
pub fn audit_request(state: Lifecycle) -> &'static str {
    match state {
        Lifecycle::Enabled => "key.enable",
        Lifecycle::Disabled => "key.disable",
        Lifecycle::Retired => "key.retire",
    }
}

/// The audit record of a state change.
pub fn audit_entry(public_key: &[u8], s: &KeyState, seen_by: &str) -> Entry {
    Entry {
        client: format!("operator:{}", s.by),
        frontend: Some(seen_by.to_owned()),
        key: hex::encode(public_key),
        request: audit_request(s.state).to_owned(),
        position: None,
        outcome: match s.state {
            Lifecycle::Enabled => "enabled",
            Lifecycle::Disabled => "disabled",
            Lifecycle::Retired => "retired",
        }
        .to_owned(),
        note: Some(format!("{} (set {})", s.reason, s.at)),
    }
}

impl Pipeline {
    /// Records events that are not signing requests (key imports and
    /// deletions). A failure turns the audit sink red (readiness) and is
    /// logged; the event itself has happened.
    pub fn audit_events(&self, entries: Vec<Entry>) {
        if !entries.is_empty()
            && let Err(e) = self.audit.write(entries)
        {
            tracing::error!(error = %e, "audit log: an event could not be recorded");
        }
    }

    /// `Err` when an operator took `key` out of service.
    pub(super) fn in_service(&self, key: &[u8]) -> Result<(), Refusal> {
        match self.key_states.load().get(key) {
            Some(s) if s.refuses() => Err(Refusal::KeyDisabled(s.state)),
            _ => Ok(()),
        }
    }

    /// Keys an operator took out of service (disabled or retired), as last read.
    pub fn out_of_service(&self) -> Vec<(Vec<u8>, KeyState)> {
        let mut v: Vec<(Vec<u8>, KeyState)> = self
            .key_states
            .load()
            .iter()
            .filter(|(_, s)| s.refuses())
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Reads the key states from the slashing database. Changes since the
    /// last read take effect at once, are logged, and — unless this is the
    /// first read, before serving — recorded in the audit log (`frontend`
    /// `database`: seen there, whoever made it). Returns how many changed.
    pub fn refresh_key_states(&self, first: bool) -> Result<usize, DbError> {
        let now: KeyStates = self.db.key_states()?.into_iter().collect();
        let before = self.key_states.load();
        if *before == now {
            return Ok(0);
        }
        let changed: Vec<(&Vec<u8>, &KeyState)> = now
            .iter()
            .filter(|(k, s)| before.get(*k) != Some(*s))
            .collect();
        for (k, s) in &changed {
            let key = hex::encode(k);
            match s.state {
                Lifecycle::Enabled if !first => {
                    tracing::warn!(key, by = %s.by, reason = %s.reason, "key back in service")
                }
                Lifecycle::Enabled => {}
                Lifecycle::Disabled => {
                    tracing::warn!(key, state = "disabled", by = %s.by, reason = %s.reason, "key out of service: every request for it is refused")
                }
                Lifecycle::Retired => {
                    tracing::warn!(key, state = "retired", by = %s.by, reason = %s.reason, "key out of service for good: every request for it is refused")
                }
            }
        }
        let n = changed.len();
        let entries: Vec<Entry> = if first {
            Vec::new()
        } else {
            changed
                .iter()
                .map(|(k, s)| audit_entry(k, s, "database"))
                .collect()
        };
        self.key_states.store(now);
        if !entries.is_empty()
            && let Err(e) = self.audit.write(entries)
        {
            // The audit sink is red now (readiness, refusals); the state
            // change itself is in force either way.
            tracing::error!(error = %e, "audit log: a key state change could not be recorded");
        }
        Ok(n)
    }
}
