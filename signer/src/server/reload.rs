//! Reloading while serving: the policy and TLS on SIGHUP / `POST /reload`,
//! the keys on the Keymanager-style `/reload` (polled with `GET`).

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::Shared;
use super::keys::{load_keys_with, record_keys};
use super::readiness::record_expiry;
use crate::backend::soft::keystore::KdfMemo;
use crate::policy::{Policy, Severity};

/// The state of the last key reload (Web3Signer's `GET /reload`).
#[derive(Debug, Clone, Default)]
pub(super) struct KeyReload {
    running: bool,
    outcome: Option<Result<usize, String>>,
    time: Option<String>,
}

/// Reloads, one at a time whoever asks (SIGHUP, `POST /reload` on either
/// listener): a reload decrypts keystores and talks to backends, so two at
/// once only cost memory and settle nothing. A SIGHUP that arrives while one
/// runs is not lost: the running reload goes round once more when it ends.
#[derive(Debug, Default)]
pub(super) struct Reloads {
    running: AtomicBool,
    again: AtomicBool,
    /// The last key reload, for `GET /reload`.
    state: Mutex<KeyReload>,
    /// Keystores in service, decrypted (no KDF for an unchanged file).
    memo: Mutex<KdfMemo>,
}

impl Reloads {
    pub(super) fn new(memo: KdfMemo) -> Self {
        Self {
            memo: Mutex::new(memo),
            ..Self::default()
        }
    }

    /// The right to reload, if no reload is running.
    fn begin(&self) -> Option<ReloadGuard<'_>> {
        self.running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| ReloadGuard(self))
    }
}

/// Held while a reload runs; lets the next one start when dropped.
struct ReloadGuard<'a>(&'a Reloads);

impl Drop for ReloadGuard<'_> {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

/// What a reload did.
#[derive(Debug)]
pub struct ReloadReport {
    /// TLS material.
    pub tls: Result<(), String>,
    /// The policy.
    pub policy: Result<(), String>,
    /// Keys: how many loaded, or why some did not (the ones that loaded are in use).
    pub keys: Result<usize, String>,
}

impl ReloadReport {
    pub(super) fn failed(why: &str) -> Self {
        Self {
            tls: Err(why.to_owned()),
            policy: Err(why.to_owned()),
            keys: Err(why.to_owned()),
        }
    }

    /// True when every part reloaded.
    pub fn ok(&self) -> bool {
        self.tls.is_ok() && self.policy.is_ok() && self.keys.is_ok()
    }
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (what, r) in [("tls", &self.tls), ("policy", &self.policy)] {
            match r {
                Ok(()) => writeln!(f, "{what}: reloaded")?,
                Err(e) => writeln!(f, "{what}: kept the previous one: {e}")?,
            }
        }
        match &self.keys {
            Ok(n) => writeln!(f, "keys: {n} loaded"),
            Err(e) => writeln!(f, "keys: {e}"),
        }
    }
}

pub(super) fn load_policy(path: &Path) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (policy, findings) = Policy::load(&text).map_err(|e| match e {
        crate::policy::PolicyError::Invalid(findings) => findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    })?;
    for f in findings {
        tracing::warn!(file = %path.display(), "policy: {f}");
    }
    Ok(policy)
}

impl Shared {
    /// Loads the configured keys again and puts them in force: keys whose
    /// files are gone stop signing, new ones start. Sources that fail are
    /// reported (Web3Signer's "completed with errors"); what loaded is used.
    /// Unchanged keystores are not decrypted again. Call with the reload
    /// gate held.
    fn reload_keys(&self) -> Result<usize, String> {
        let ((keys, errors), (reused, decrypted)) = match self.reloads.memo.lock() {
            Ok(mut memo) => (
                load_keys_with(&self.key_sources, &self.backends, &mut memo),
                memo.last_round(),
            ),
            Err(_) => return Err("key reload: internal state poisoned; restart the signer".into()),
        };
        let n = keys.len();
        record_keys(self.pipeline.metrics(), &keys);
        self.pipeline.set_keys(keys);
        self.pipeline.metrics().reload("keys", errors.is_empty());
        if errors.is_empty() {
            tracing::info!(
                keys = n,
                keystores_unchanged = reused,
                keystores_decrypted = decrypted,
                "keys reloaded"
            );
            Ok(n)
        } else {
            for e in &errors {
                tracing::error!(error = %e, "key reload: a key did not load");
            }
            Err(format!(
                "{n} keys loaded; {} key loading error(s), first: {}",
                errors.len(),
                errors.first().map_or("", String::as_str)
            ))
        }
    }

    /// Starts a key reload in the background (Web3Signer's `POST /reload`);
    /// false when a reload (of any kind) is already running.
    pub fn start_key_reload(self: &Arc<Self>, client: &str) -> bool {
        if self
            .reloads
            .running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        if let Ok(mut state) = self.reloads.state.lock() {
            state.running = true;
            state.time = Some(crate::audit::rfc3339(std::time::SystemTime::now()));
        }
        tracing::info!(client, "key reload requested");
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            {
                // Taken over from the compare-exchange above.
                let _held = ReloadGuard(&me.reloads);
                let outcome = me.reload_keys();
                if let Ok(mut state) = me.reloads.state.lock() {
                    state.running = false;
                    state.outcome = Some(outcome);
                    state.time = Some(crate::audit::rfc3339(std::time::SystemTime::now()));
                }
            }
            if me.reloads.again.load(Ordering::Acquire) {
                let _ = me.try_reload();
            }
        });
        true
    }

    /// Web3Signer's `GET /reload` body.
    pub fn key_reload_status(&self) -> serde_json::Value {
        let state = self
            .reloads
            .state
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let status = match (&state.running, &state.outcome) {
            (true, _) => "running",
            (false, None) => "idle",
            (false, Some(Ok(_))) => "completed",
            (false, Some(Err(_))) => "completed_with_errors",
        };
        let mut v = serde_json::json!({ "status": status });
        if let Some(obj) = v.as_object_mut() {
            if let Some(t) = state.time {
                obj.insert("lastOperationTime".into(), t.into());
            }
            if let Some(Err(e)) = state.outcome {
                obj.insert("lastError".into(), e.into());
            }
        }
        v
    }

    /// Re-reads TLS material, the policy and the keys, unless a reload is
    /// already running (`None`: the caller answers 409). TLS or a policy that
    /// fails keeps the old one.
    pub fn try_reload(&self) -> Option<ReloadReport> {
        let mut last = None;
        loop {
            let Some(_held) = self.reloads.begin() else {
                return last;
            };
            self.reloads.again.store(false, Ordering::Release);
            last = Some(self.reload_now());
            drop(_held);
            // A SIGHUP that found this reload running asked for one more.
            if !self.reloads.again.load(Ordering::Acquire) {
                return last;
            }
        }
    }

    /// SIGHUP: reload now, or — if a reload is running — once more when it
    /// ends (the files may have changed after it read them).
    pub fn reload_on_signal(&self) {
        self.reloads.again.store(true, Ordering::Release);
        if self.try_reload().is_none() {
            tracing::info!("SIGHUP: a reload is running; it will reload once more when it ends");
        }
    }

    fn reload_now(&self) -> ReloadReport {
        let metrics = self.pipeline.metrics();
        let tls =
            self.tls
                .reload()
                .map_err(|e| e.to_string())
                .and_then(|()| match &self.http_tls {
                    Some(h) => h.reload().map_err(|e| format!("HTTP listener: {e}")),
                    None => Ok(()),
                });
        match &tls {
            Ok(()) => {
                tracing::info!("TLS material reloaded");
                record_expiry(metrics, &self.tls_files);
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS reload failed; the previous certificates stay in force")
            }
        }
        metrics.reload("tls", tls.is_ok());
        let policy = load_policy(&self.policy_file).map(|p| self.pipeline.set_policy(p));
        match &policy {
            Ok(()) => tracing::info!(file = %self.policy_file.display(), "policy reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "policy reload failed; the previous policy stays in force")
            }
        }
        metrics.reload("policy", policy.is_ok());
        let keys = self.reload_keys();
        ReloadReport { tls, policy, keys }
    }
}
