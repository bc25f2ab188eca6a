//! Transport security: the server side of mutual TLS.
//!
//! - rustls 0.23 with the aws-lc-rs provider, installed explicitly (rustls
//!   panics at the first handshake when two providers are compiled in and
//!   none is installed).
//! - TLS 1.3 only; a client certificate is required and verified by the
//!   standard WebPKI verifier against the configured client CAs, with
//!   optional CRLs.
//! - Reload keeps the old material when the new files do not load.
//! - Who the client is comes from its certificate ([`identity`]), matched
//!   against the policy's clients.

pub mod identity;
mod known;
pub mod listener;
pub mod pkcs12;

pub use known::KnownClients;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Installs aws-lc-rs as the process's rustls provider (idempotent).
pub fn install_crypto_provider() {
    // Err means one is installed already: fine.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The files of the server's TLS setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CAs that issue client certificates (PEM bundles).
    pub client_cas: Vec<PathBuf>,
    /// Certificate revocation lists of those CAs (PEM), optional.
    pub crls: Vec<PathBuf>,
    /// The server identity from a PKCS#12 keystore and its password file,
    /// instead of `cert` and `key`.
    pub pkcs12: Option<(PathBuf, PathBuf)>,
}

/// Why the TLS setup could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{}: {what}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// rustls refused the combination (key not matching the certificate, …).
    #[error("TLS configuration refused: {0}")]
    Config(String),
}

fn file_err(path: &Path, what: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        what: what.to_string(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// What differs between listeners sharing the same certificate files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// ALPN protocols offered.
    pub alpn: Vec<Vec<u8>>,
    /// Web3Signer's known-clients file: certificates accepted by SHA-256
    /// fingerprint (self-signed ones included), named by the file.
    pub known_clients: Option<PathBuf>,
}

impl ListenerTls {
    /// gRPC: HTTP/2, CA-verified clients only.
    pub fn grpc() -> Self {
        Self {
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            known_clients: None,
        }
    }
}

/// Builds the gRPC listener's server configuration from `files`.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_for(files, &ListenerTls::grpc()).map(|(c, _)| c)
}

/// Builds a listener's server configuration, with its known clients.
pub fn server_config_for(
    files: &TlsFiles,
    listener: &ListenerTls,
) -> Result<(Arc<ServerConfig>, Arc<KnownClients>), TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let (chain, key) = match &files.pkcs12 {
        Some((keystore, password_file)) => {
            let der = std::fs::read(keystore).map_err(|e| file_err(keystore, e))?;
            let password = crate::secret_file::read_password_file(password_file)
                .map_err(|e| file_err(password_file, e))?;
            pkcs12::read(&der, &password).map_err(|e| file_err(keystore, e))?
        }
        None => (
            certs(&files.cert)?,
            PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_err(&files.key, e))?,
        ),
    };
    if files.client_cas.is_empty() {
        return Err(TlsError::Config(
            "no client CA configured: every client would be refused".into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for ca in &files.client_cas {
        for cert in certs(ca)? {
            roots.add(cert).map_err(|e| file_err(ca, e))?;
        }
    }
    let mut crls = Vec::new();
    for path in &files.crls {
        for crl in
            CertificateRevocationListDer::pem_file_iter(path).map_err(|e| file_err(path, e))?
        {
            crls.push(crl.map_err(|e| file_err(path, e))?);
        }
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let known = Arc::new(match &listener.known_clients {
        Some(path) => KnownClients::load(path)?,
        None => KnownClients::default(),
    });
    let verifier = known::verifier(verifier, known.clone());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = listener.alpn.clone();
    Ok((Arc::new(config), known))
}

/// The current server configuration, replaceable without a restart. New
/// connections use the newest; existing ones keep theirs.
#[derive(Debug)]
pub struct ReloadableConfig {
    files: TlsFiles,
    listener: ListenerTls,
    current: RwLock<(Arc<ServerConfig>, Arc<KnownClients>)>,
}

impl ReloadableConfig {
    /// Loads `files`; refuses to start without a working setup.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        Self::load_for(files, ListenerTls::grpc())
    }

    /// Loads `files` for a listener of this kind.
    pub fn load_for(files: TlsFiles, listener: ListenerTls) -> Result<Self, TlsError> {
        let current = server_config_for(&files, &listener)?;
        Ok(Self {
            files,
            listener,
            current: RwLock::new(current),
        })
    }

    /// The known clients in force (empty unless configured).
    pub fn known_clients(&self) -> Arc<KnownClients> {
        match self.current.read() {
            Ok(c) => c.1.clone(),
            Err(poisoned) => poisoned.into_inner().1.clone(),
        }
    }

    /// The configuration for the next connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(c) => c.0.clone(),
            Err(poisoned) => poisoned.into_inner().0.clone(),
        }
    }

    /// Reads the files again. On failure the old configuration stays in force
    /// and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = server_config_for(&self.files, &self.listener)?;
        match self.current.write() {
            Ok(mut c) => *c = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }
}
