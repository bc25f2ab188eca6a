//! Readiness (`/readyz`): every part the daemon needs to sign, checked
//! now; and the certificate expiry gauges.

use std::sync::atomic::Ordering;

use super::Shared;
use crate::metrics::Metrics;
use crate::tls::{self};

impl Shared {
    /// The remote backends' checks: PKCS#11 is `Err` when some key has no
    /// token up (naming the tokens that are down; a token down while another
    /// holds its keys shows in `signer_backend_up`, not here); KMS is `Err`
    /// while its circuit breaker is open.
    fn backend_readiness(&self) -> Vec<(&'static str, Result<(), String>)> {
        let mut checks = Vec::new();
        let keys = self.pipeline.keys();
        let stranded = |backend: &str| {
            keys.iter()
                .filter_map(|k| k.remote())
                .filter(|r| r.backend() == backend && !r.servable())
                .count()
        };
        if let Some(registry) = &self.backends.pkcs11 {
            let down: Vec<String> = registry
                .health()
                .into_iter()
                .filter_map(|(name, why)| why.map(|w| format!("token {name} down: {w}")))
                .collect();
            let n = stranded("pkcs11");
            checks.push((
                "pkcs11",
                if n > 0 {
                    Err(format!("{n} key(s) have no token up ({})", down.join("; ")))
                } else {
                    Ok(())
                },
            ));
        }
        if let Some(kms) = &self.backends.kms {
            checks.push((
                "kms",
                if kms.breaker_open() {
                    Err("KMS unreachable: circuit breaker open".into())
                } else {
                    Ok(())
                },
            ));
        }
        checks
    }

    /// Readiness checks, each `Ok` or why not (blocking: it asks the database).
    pub fn readiness(&self) -> Vec<(&'static str, Result<(), String>)> {
        let serving = if self.stopping.load(Ordering::Relaxed) {
            Err("shutting down".into())
        } else {
            Ok(())
        };
        // SQLite: a transaction on the file. PostgreSQL: a round trip that
        // also re-reads the server's durability (a failover to a server
        // without a synchronous standby turns readiness red).
        let metrics = self.pipeline.metrics();
        let durability = self.pipeline.db().durability();
        let level = match &durability {
            Ok(None) => "file",
            Ok(Some(d)) => d.level(),
            Err(_) => "unavailable",
        };
        for l in ["file", "local", "synchronous", "unavailable"] {
            metrics
                .db_durability
                .get_or_create(&vec![("level", l.to_owned())])
                .set(i64::from(l == level));
        }
        // The check's name carries the durability level on PostgreSQL.
        let db_check = match &durability {
            Ok(Some(d)) if d.level() == "synchronous" => "database (postgres, synchronous standby)",
            Ok(Some(_)) => "database (postgres, primary's disk only)",
            _ => "database",
        };
        let db = durability.map(|_| ()).map_err(|e| e.to_string());
        let audit = self.pipeline.audit_health();
        let keys = if self.pipeline.keys().is_empty() {
            Err("no keys loaded".into())
        } else {
            Ok(())
        };
        // A chain with no node connected is not signing: not ready.
        let mut privval = Ok(());
        let mut lines = Vec::new();
        for (chain, nodes) in &self.privval_nodes {
            let up = nodes
                .iter()
                .filter(|n| {
                    metrics
                        .privval_connected
                        .get_or_create(&vec![("chain", chain.clone()), ("node", (*n).clone())])
                        .get()
                        == 1
                })
                .count();
            lines.push(format!("{chain} {up}/{} nodes", nodes.len()));
            if up == 0 {
                privval = Err(String::new());
            }
        }
        let privval = match privval {
            Ok(()) => Ok(()),
            Err(_) => Err(format!(
                "a chain has no node connected ({})",
                lines.join(", ")
            )),
        };
        // Keys held only by tokens that are all down cannot sign: not ready.
        // A token down while another holds its keys is shown, not fatal.
        let backends = self.backend_readiness();
        let ready = serving.is_ok()
            && db.is_ok()
            && keys.is_ok()
            && audit.is_ok()
            && privval.is_ok()
            && backends.iter().all(|(_, r)| r.is_ok());
        metrics.ready.set(i64::from(ready));
        let mut checks = vec![
            ("serving", serving),
            (db_check, db),
            ("keys", keys),
            ("audit log", audit),
        ];
        checks.extend(backends);
        if !self.privval_nodes.is_empty() {
            checks.push(("privval", privval));
        }
        checks
    }
}

/// Records notAfter of the server certificate and the client CAs.
pub(super) fn record_expiry(metrics: &Metrics, files: &tls::TlsFiles) {
    for (name, not_after) in super::status::expiry(files) {
        metrics
            .cert_expiry
            .get_or_create(&vec![("certificate", name)])
            .set(not_after as f64);
    }
}
