//! A `signer.v1` client over mutual TLS (for `signer client`, the tests and
//! the benchmark). TLS 1.3, the server verified against a given CA, our
//! certificate presented; tonic runs HTTP/2 over the stream we connect.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use proto::v1::signer_client::SignerClient;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client's TLS material.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The CA that issued the server's certificate (PEM).
    pub ca: std::path::PathBuf,
    /// Our certificate (PEM).
    pub cert: std::path::PathBuf,
    /// Our key (PEM).
    pub key: std::path::PathBuf,
}

impl ClientTls {
    /// The files `signer init --dev DIR` writes.
    pub fn dev(dir: &Path) -> Self {
        Self {
            ca: dir.join("tls/ca.pem"),
            cert: dir.join("tls/client.pem"),
            key: dir.join("tls/client.key"),
        }
    }

    /// A rustls client configuration (TLS 1.3, ALPN h2).
    pub fn config(&self) -> Result<Arc<ClientConfig>, BoxError> {
        let read = |p: &Path| -> Result<Vec<CertificateDer<'static>>, BoxError> {
            let certs = CertificateDer::pem_file_iter(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(certs)
        };
        let mut roots = RootCertStore::empty();
        for c in read(&self.ca)? {
            roots.add(c)?;
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| format!("{}: {e}", self.key.display()))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(read(&self.cert)?, key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Connects to the signer at `addr`, checking its certificate for `server_name`.
pub async fn connect(
    addr: SocketAddr,
    server_name: &str,
    tls: Arc<ClientConfig>,
) -> Result<SignerClient<Channel>, BoxError> {
    let name = ServerName::try_from(server_name.to_owned())?;
    let connector = TlsConnector::from(tls);
    // The URI is only a label: the connector below decides where and how to connect.
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_with_connector(tower::service_fn(move |_| {
            let connector = connector.clone();
            let name = name.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await?;
    Ok(SignerClient::new(channel))
}
