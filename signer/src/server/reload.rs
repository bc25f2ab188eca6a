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

/// The state of the last reload (`GET /reload` on either listener).
#[derive(Debug, Clone, Default)]
pub(super) struct KeyReload {
    running: bool,
    outcome: Option<Result<KeyDiff, String>>,
    time: Option<String>,
}

/// What a key reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KeyDiff {
    /// Keys in service after the reload.
    pub loaded: usize,
    /// Public keys (0x hex) in service now that were not before.
    pub added: Vec<String>,
    /// Public keys no longer in service: refused from now on.
    pub removed: Vec<String>,
    /// Keys in service before and after (they signed on throughout).
    pub unchanged: usize,
    /// Key sources that did not load, each with why (what loaded is in service).
    pub failed: Vec<String>,
}

impl KeyDiff {
    fn between(
        before: &crate::pipeline::Keyring,
        after: &crate::pipeline::Keyring,
        failed: Vec<String>,
    ) -> Self {
        let hex = |pk: &[u8]| format!("0x{}", hex::encode(pk));
        let mut added: Vec<String> = after
            .entries()
            .filter(|(pk, _)| !before.contains(pk))
            .map(|(pk, _)| hex(pk))
            .collect();
        let mut removed: Vec<String> = before
            .entries()
            .filter(|(pk, _)| !after.contains(pk))
            .map(|(pk, _)| hex(pk))
            .collect();
        added.sort();
        removed.sort();
        Self {
            loaded: after.len(),
            unchanged: after.len() - added.len(),
            added,
            removed,
            failed,
        }
    }
}

impl fmt::Display for KeyDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// Keys listed per kind; the rest are counted.
        const SHOWN: usize = 20;
        writeln!(
            f,
            "keys: {} loaded ({} added, {} removed, {} unchanged, {} failed)",
            self.loaded,
            self.added.len(),
            self.removed.len(),
            self.unchanged,
            self.failed.len()
        )?;
        for (sign, list) in [
            ("+", &self.added),
            ("-", &self.removed),
            ("failed:", &self.failed),
        ] {
            for item in list.iter().take(SHOWN) {
                writeln!(f, "  {sign} {item}")?;
            }
            if list.len() > SHOWN {
                writeln!(f, "  {sign} … and {} more", list.len() - SHOWN)?;
            }
        }
        Ok(())
    }
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
    pub(super) memo: Mutex<KdfMemo>,
    /// `[start_cache]`: written again when a reload changes what the memo holds.
    start_cache: Option<super::start_cache::StartCache>,
}

impl Reloads {
    pub(super) fn new(memo: KdfMemo, start_cache: Option<super::start_cache::StartCache>) -> Self {
        Self {
            memo: Mutex::new(memo),
            start_cache,
            ..Self::default()
        }
    }

    /// Records that a reload started (`None`) or ended with `outcome`.
    fn mark(&self, outcome: Option<Result<KeyDiff, String>>) {
        if let Ok(mut state) = self.state.lock() {
            state.running = outcome.is_none();
            if outcome.is_some() {
                state.outcome = outcome;
            }
            state.time = Some(crate::audit::now());
        }
    }

    /// When the running reload started, if one runs.
    pub(super) fn running_since(&self) -> Option<String> {
        self.state
            .lock()
            .ok()
            .filter(|s| s.running)
            .and_then(|s| s.time.clone())
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
    /// Keys: what changed (sources that failed are listed in it; what
    /// loaded is in use), or why the reload could not run at all.
    pub keys: Result<KeyDiff, String>,
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
        self.tls.is_ok()
            && self.policy.is_ok()
            && self.keys.as_ref().is_ok_and(|d| d.failed.is_empty())
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
            Ok(d) => write!(f, "{d}"),
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
    fn reload_keys(&self) -> Result<KeyDiff, String> {
        let ((keys, errors), (reused, decrypted)) = match self.reloads.memo.lock() {
            Ok(mut memo) => (
                load_keys_with(
                    &self.key_sources,
                    &self.backends,
                    &mut memo,
                    &super::starting::KeyLoad::new(&self.key_sources),
                ),
                {
                    if let Some(cache) = &self.reloads.start_cache {
                        cache.store(&memo);
                    }
                    memo.last_round()
                },
            ),
            Err(_) => return Err("key reload: internal state poisoned; restart the signer".into()),
        };
        for e in &errors {
            tracing::error!(error = %e, "key reload: a key did not load");
        }
        let diff = KeyDiff::between(&self.pipeline.keys(), &keys, errors);
        record_keys(self.pipeline.metrics(), &keys);
        // One swap: removed keys refuse from the next request on, unchanged
        // ones never stop signing.
        self.pipeline.set_keys(keys);
        self.pipeline
            .metrics()
            .reload("keys", diff.failed.is_empty());
        tracing::info!(
            keys = diff.loaded,
            added = diff.added.len(),
            removed = diff.removed.len(),
            unchanged = diff.unchanged,
            failed = diff.failed.len(),
            keystores_unchanged = reused,
            keystores_decrypted = decrypted,
            "keys reloaded"
        );
        Ok(diff)
    }

    /// Reloads keys now, waiting (up to a minute) for a reload that runs to
    /// end first (the Keymanager API: its answer must reflect the reload).
    pub(super) fn reload_keys_waiting(&self) -> Result<KeyDiff, String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let guard = loop {
            if let Some(g) = self.reloads.begin() {
                break g;
            }
            if std::time::Instant::now() > deadline {
                return Err("another reload has run for over a minute; try again".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        self.reloads.mark(None);
        let outcome = self.reload_keys();
        let result = match &outcome {
            Ok(d) => Ok(d.clone()),
            Err(e) => Err(e.clone()),
        };
        self.reloads.mark(Some(outcome));
        drop(guard);
        result
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
        self.reloads.mark(None);
        tracing::info!(client, "key reload requested");
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            {
                // Taken over from the compare-exchange above.
                let _held = ReloadGuard(&me.reloads);
                me.reloads.mark(Some(me.reload_keys()));
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
            (false, Some(Ok(d))) if d.failed.is_empty() => "completed",
            (false, Some(_)) => "completed_with_errors",
        };
        let mut v = serde_json::json!({ "status": status });
        if let Some(obj) = v.as_object_mut() {
            if let Some(t) = state.time {
                obj.insert("lastOperationTime".into(), t.into());
            }
            match state.outcome {
                Some(Ok(d)) => {
                    if let Some(e) = d.failed.first() {
                        let n = d.failed.len();
                        obj.insert(
                            "lastError".into(),
                            format!(
                                "{} keys loaded; {n} key loading error(s), first: {e}",
                                d.loaded
                            )
                            .into(),
                        );
                    }
                    obj.insert("keys".into(), serde_json::to_value(d).unwrap_or_default());
                }
                Some(Err(e)) => {
                    obj.insert("lastError".into(), e.into());
                }
                None => {}
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
            self.reloads.mark(None);
            let report = self.reload_now();
            self.reloads.mark(Some(report.keys.clone()));
            last = Some(report);
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

    /// Re-reads the Commit-Boost modules' token secrets (with the policy:
    /// both say who may ask what).
    fn reload_module_secrets(&self) -> Result<(), String> {
        let (Some(cb), Some(settings)) = (&self.commit_boost, self.pipeline.commit_boost()) else {
            return Ok(());
        };
        let modules = super::commit_boost::modules(cb)?;
        settings.set_modules(modules);
        tracing::info!("Commit-Boost module secrets reloaded");
        Ok(())
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
        let policy = load_policy(&self.policy_file)
            .map(|p| self.pipeline.set_policy(p))
            .and_then(|()| self.reload_module_secrets());
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
