//! Opens the slashing-protection database the configuration names: the local
//! SQLite file, or the shared PostgreSQL database (password from a file or
//! the environment, TLS verified with rustls against `ca_file`). Used by the
//! daemon and by the operator commands, so both read `[slashing]` the same way.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use slashing_db::{GenesisRoot, PostgresOptions, SlashingDb, SqliteOptions};
use zeroize::Zeroizing;

use crate::config::{PostgresTls, Slashing, SlashingEngine};

/// Opens the configured database, pinned to `genesis_root` when given.
pub fn open(s: &Slashing, genesis_root: Option<GenesisRoot>) -> Result<SlashingDb, String> {
    let config = slashing_db::Config {
        genesis_root,
        sqlite: SqliteOptions {
            integrity_check: s.integrity_check_on_open,
        },
        ..slashing_db::Config::default()
    };
    match s.engine {
        SlashingEngine::Sqlite => {
            let path = s
                .database
                .as_deref()
                .ok_or("slashing.database is not set")?;
            SlashingDb::open(path, config).map_err(|e| e.to_string())
        }
        SlashingEngine::Postgres => {
            let opts = postgres_options(s)?;
            SlashingDb::open_postgres(&opts, config).map_err(|e| e.to_string())
        }
    }
}

/// The PostgreSQL connection options of `[slashing.postgres]`.
pub fn postgres_options(s: &Slashing) -> Result<PostgresOptions, String> {
    let pg = s
        .postgres
        .as_ref()
        .ok_or("engine postgres needs [slashing.postgres]")?;
    let mut opts = PostgresOptions::from_url(&pg.url)?;
    if let Some(file) = &pg.password_file {
        let text = Zeroizing::new(
            std::fs::read(file).map_err(|e| format!("password_file {}: {e}", file.display()))?,
        );
        let end = text
            .iter()
            .rposition(|b| !b"\r\n".contains(b))
            .map_or(0, |i| i + 1);
        opts.set_password(text.get(..end).unwrap_or_default());
    }
    if let Some(var) = &pg.password_env {
        let value = Zeroizing::new(std::env::var(var).map_err(|_| {
            format!("password_env: the environment variable {var} is not set (or not UTF-8)")
        })?);
        opts.set_password(value.as_bytes());
    }
    if pg.tls == PostgresTls::VerifyFull {
        let ca = pg
            .ca_file
            .as_deref()
            .ok_or("tls = \"verify-full\" needs ca_file")?;
        opts.tls = Some(tls_config(ca)?);
    }
    opts.statement_timeout = Duration::from_millis(pg.statement_timeout_ms);
    opts.connect_timeout = Duration::from_millis(pg.connect_timeout_ms);
    opts.require_synchronous_replication = pg.require_synchronous_replication;
    Ok(opts)
}

/// A rustls client configuration that trusts exactly the roots in `ca`.
fn tls_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
    for c in certs {
        let c = c.map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "ca_file {}: no certificate in the file",
            ca.display()
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
