//! Key state changes through the running daemon, for a signer on SQLite.
//!
//! `signer keys disable|enable|retire` writes the state into the slashing
//! database, where every instance sharing it reads it. A SQLite database is
//! held by the one daemon serving from it, so the command cannot open it
//! while the signer serves — and a key suspected compromised must not wait
//! for a restart. The daemon therefore makes the change itself when asked on
//! its metrics listener (`POST /keys/state`, loopback only), authenticated
//! by a token it writes at start beside the database (`<database>.control`,
//! mode 0600, with the listener's address; removed at a clean stop):
//! whoever can read it could already open the database file, so no one
//! gains a power they did not have.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};
use slashing_db::{KeyState, Lifecycle};

use super::Shared;
use crate::pipeline::lifecycle::{Plan, plan};

/// The token file for the SQLite database at `database`.
pub fn token_file(database: &Path) -> PathBuf {
    let mut name = database.file_name().unwrap_or_default().to_os_string();
    name.push(".control");
    database.with_file_name(name)
}

/// The daemon's side: the token, and the file that holds it.
#[derive(Debug)]
pub struct Control {
    token: String,
    file: PathBuf,
}

impl Control {
    /// Writes a fresh token beside `database` (replacing a stale one), with
    /// where to send it: `{"token": …, "metrics": "HOST:PORT"}`.
    pub fn create(database: &Path, metrics: std::net::SocketAddr) -> Result<Self, String> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| e.to_string())?;
        let token = hex::encode(raw);
        let file = token_file(database);
        let _ = std::fs::remove_file(&file);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .and_then(|mut f| {
                f.write_all(
                    json!({"token": token, "metrics": metrics})
                        .to_string()
                        .as_bytes(),
                )
            })
            .map_err(|e| format!("{}: {e}", file.display()))?;
        Ok(Self { token, file })
    }

    /// The token file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Whether an `Authorization` header carries the token (compared in
    /// constant time).
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(given) = authorization.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        let want = self.token.as_bytes();
        given.len() == want.len()
            && given
                .iter()
                .zip(want)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// What the command asks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateChange {
    /// Public key, hex (with or without 0x).
    pub key: String,
    /// The state wanted.
    pub state: Lifecycle,
    /// Why.
    pub reason: String,
    /// Who (the operator's user name, as the command saw it).
    pub by: String,
    /// Say what would change; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl Shared {
    /// Makes (or, dry, describes) a key state change: (HTTP status, answer
    /// `{"before", "after", "changed"}` or `{"error"}`). Blocking.
    pub fn change_key_state(&self, c: &StateChange) -> (u16, Value) {
        let err = |status: u16, e: String| (status, json!({ "error": e }));
        let Ok(key) = hex::decode(c.key.trim_start_matches("0x")) else {
            return err(400, "key: not hex".into());
        };
        if c.reason.trim().len() < 10 {
            return err(400, "reason: at least 10 characters".into());
        }
        let db = self.pipeline.db();
        let before = match db.key_states() {
            Ok(states) => states.into_iter().find(|(k, _)| *k == key).map(|(_, s)| s),
            Err(e) => return err(503, format!("slashing database: {e}")),
        };
        let new = KeyState {
            state: c.state,
            reason: c.reason.trim().to_owned(),
            by: c.by.clone(),
            at: crate::audit::now(),
        };
        // The command reports the plan from `before`; only a change is made.
        if c.dry_run || plan(c.state, before.as_ref()) != Plan::Change {
            return (
                200,
                json!({"before": before, "after": new, "changed": false}),
            );
        }
        match db.set_key_state(&key, &new) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return err(409, e.to_string()),
            Err(e) => return err(503, format!("slashing database: {e}")),
        }
        // In force at once, and audited (as every instance records a change
        // it reads from the database).
        if let Err(e) = self.pipeline.refresh_key_states(false) {
            return err(503, format!("state written, not yet in force: {e}"));
        }
        let state = match c.state {
            Lifecycle::Enabled => "enabled",
            Lifecycle::Disabled => "disabled",
            Lifecycle::Retired => "retired",
        };
        tracing::info!(key = %c.key, state, by = %c.by, "key state changed through the metrics listener");
        (
            200,
            json!({"before": before, "after": new, "changed": true}),
        )
    }
}
