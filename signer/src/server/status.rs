//! `GET /status` on the metrics listener: what the daemon sees, as JSON, for
//! `signer status` (and scripts): readiness and why not, keys by backend and
//! scheme and those out of service, chains and their nodes, the slashing
//! database and its durability, the audit log and its anchor, certificate
//! expiry, and the last reload.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use super::Shared;

/// (name, notAfter as Unix seconds) of the server certificate and each
/// client CA certificate.
pub(super) fn expiry(files: &crate::tls::TlsFiles) -> Vec<(String, i64)> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let mut out = Vec::new();
    let mut read = |label: String, path: &Path, first_only: bool| {
        let Ok(iter) = CertificateDer::pem_file_iter(path) else {
            return;
        };
        for (i, cert) in iter.flatten().enumerate() {
            if let Ok((_, x)) = X509Certificate::from_der(cert.as_ref()) {
                let name = if i == 0 {
                    label.clone()
                } else {
                    format!("{label}#{i}")
                };
                out.push((name, x.validity().not_after.timestamp()));
            }
            if first_only {
                break;
            }
        }
    };
    read("server".into(), &files.cert, true);
    for ca in &files.client_cas {
        read(format!("client_ca:{}", ca.display()), ca, false);
    }
    out
}

impl Shared {
    /// The status document (blocking: readiness asks the database).
    pub fn status(&self) -> Value {
        let checks = self.readiness();
        let ready = checks.iter().all(|(_, r)| r.is_ok());
        let checks: Vec<Value> = checks
            .iter()
            .map(|(name, r)| match r {
                Ok(()) => json!({"name": name, "ok": true}),
                Err(why) => json!({"name": name, "ok": false, "why": why}),
            })
            .collect();

        let keys = self.pipeline.keys();
        let mut by_backend: BTreeMap<&str, usize> = BTreeMap::new();
        let mut by_scheme: BTreeMap<&str, usize> = BTreeMap::new();
        for k in keys.iter() {
            *by_backend.entry(k.backend()).or_default() += 1;
            *by_scheme.entry(k.scheme().key_type()).or_default() += 1;
        }
        let out_of_service: Vec<Value> = self
            .pipeline
            .out_of_service()
            .into_iter()
            .map(|(k, s)| {
                json!({
                    "key": format!("0x{}", hex::encode(&k)),
                    "loaded": keys.contains(&k),
                    "state": s.state,
                    "by": s.by,
                    "reason": s.reason,
                    "at": s.at,
                })
            })
            .collect();

        let metrics = self.pipeline.metrics();
        let chains: Vec<Value> = self
            .privval_nodes
            .iter()
            .map(|(chain, nodes)| {
                let nodes: Vec<Value> = nodes
                    .iter()
                    .map(|n| {
                        let up = metrics
                            .privval_connected
                            .get_or_create(&vec![("chain", chain.clone()), ("node", n.clone())])
                            .get()
                            == 1;
                        json!({"node": n, "connected": up})
                    })
                    .collect();
                json!({"chain": chain, "nodes": nodes})
            })
            .collect();

        let mut backends: Vec<Value> = Vec::new();
        if let Some(registry) = &self.backends.pkcs11 {
            for (name, why) in registry.health() {
                backends.push(match why {
                    None => json!({"backend": "pkcs11", "target": name, "up": true}),
                    Some(w) => json!({"backend": "pkcs11", "target": name, "up": false, "why": w}),
                });
            }
        }
        if let Some(kms) = &self.backends.kms {
            backends.push(match kms.breaker_open() {
                false => json!({"backend": "kms", "target": "kms", "up": true}),
                true => json!({"backend": "kms", "target": "kms", "up": false, "why": "circuit breaker open"}),
            });
        }

        let durability = match self.pipeline.db().durability() {
            Ok(None) => json!({"engine": "sqlite", "durability": "file"}),
            Ok(Some(d)) => json!({"engine": "postgres", "durability": d.level()}),
            Err(e) => json!({"durability": "unavailable", "why": e.to_string()}),
        };
        let (records, anchored) = self.pipeline.audit_positions();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let certificates: Vec<Value> = expiry(&self.tls_files)
            .into_iter()
            .map(|(name, not_after)| {
                json!({
                    "certificate": name,
                    "not_after": not_after,
                    "days_left": (not_after - now).div_euclid(86_400),
                })
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "ready": ready,
            "stopping": self.stopping.load(Ordering::Relaxed),
            "checks": checks,
            "keys": {
                "loaded": keys.len(),
                "by_backend": by_backend,
                "by_scheme": by_scheme,
                "out_of_service": out_of_service,
            },
            "backends": backends,
            "chains": chains,
            "database": durability,
            "audit": {"records": records, "anchored": anchored},
            "certificates": certificates,
            "last_reload": self.key_reload_status(),
        })
    }
}
