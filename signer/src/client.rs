//! A `signer.v1` client over mutual TLS, and sample requests (for `signer
//! client`, the tests and the benchmark). TLS 1.3, the server verified against a given CA, our
//! certificate presented; tonic runs HTTP/2 over the stream we connect.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use proto::v1 as pb;
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
    Ok(SignerClient::new(channel(addr, server_name, tls).await?))
}

/// Why a call to the signer at `addr` failed, in words an operator can act
/// on. tonic reports every connection failure as `transport error`; the
/// cause (refused, certificate not trusted, our certificate refused) is
/// further down the error's chain, and each needs a different fix.
///
/// `after_handshake`: the connection was made and the TLS handshake
/// completed on our side. With TLS 1.3 the server judges our certificate
/// only then, and a server that refuses it may just close the connection.
pub fn explain(
    addr: SocketAddr,
    e: &(dyn std::error::Error + 'static),
    after_handshake: bool,
) -> String {
    let mut chain: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(e) = next {
        // A status's Display is its Debug dump; its message is the text.
        let text = match e.downcast_ref::<tonic::Status>() {
            Some(s) => s.message().to_owned(),
            None => e.to_string(),
        };
        if !chain.iter().any(|c| c.contains(&text)) {
            chain.push(text);
        }
        next = e.source();
    }
    let all = chain.join(": ");
    let has = |s: &str| all.contains(s);
    let hint = if has("Connection refused") {
        format!(
            "no signer is listening on {addr} (connection refused): is `signer serve` running, and is this its gRPC address?"
        )
    } else if has("UnknownIssuer") || has("BadSignature") {
        format!(
            "the server at {addr} presented a certificate that the --ca file does not trust: pass the CA that issued the signer's server certificate"
        )
    } else if has("NotValidForName") || has("not valid for name") {
        "the server's certificate is not issued for the --server-name given: pass the name its certificate carries".to_owned()
    } else if has("Expired") || has("NotValidYet") {
        "the server's certificate has expired (or is not valid yet): renew it on the signer"
            .to_owned()
    } else if has("UnknownCA")
        || has("BadCertificate")
        || has("CertificateRequired")
        || has("CertificateUnknown")
        || has("AccessDenied")
        || has("DecryptError")
    {
        format!(
            "the signer at {addr} refused our client certificate: pass a --cert (and --key) issued by a CA in the signer's [tls] client_cas"
        )
    } else if after_handshake
        && (has("broken pipe") || has("connection closed") || has("Connection reset"))
    {
        format!(
            "the signer at {addr} closed the connection after the TLS handshake: it most likely refused our client certificate (its log says why); pass a --cert (and --key) issued by a CA in the signer's [tls] client_cas and named in its policy"
        )
    } else if has("timed out") || has("deadline has elapsed") {
        format!(
            "no answer from {addr} in time: a firewall drops the packets, or the signer is overloaded"
        )
    } else {
        return all;
    };
    let cause = e.source().map_or_else(
        || all.clone(),
        |_| chain.last().cloned().unwrap_or_default(),
    );
    format!("{hint} ({cause})")
}

/// An HTTP/2 channel over mutual TLS to `addr` (what [`connect`] wraps).
pub async fn channel(
    addr: SocketAddr,
    server_name: &str,
    tls: Arc<ClientConfig>,
) -> Result<Channel, BoxError> {
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
    Ok(channel)
}

/// A `raw.ed25519` request: pure Ed25519 over `message`.
pub fn raw_ed25519_request(public_key: &[u8], message: Vec<u8>) -> pb::SignRequest {
    pb::SignRequest {
        public_key: public_key.to_vec(),
        message: Some(pb::sign_request::Message::RawEd25519(pb::RawEd25519 {
            message,
        })),
    }
}

/// A `raw.secp256k1` request: ECDSA over a 32-byte digest the caller computed.
pub fn raw_secp256k1_request(public_key: &[u8], digest: Vec<u8>) -> pb::SignRequest {
    pb::SignRequest {
        public_key: public_key.to_vec(),
        message: Some(pb::sign_request::Message::RawSecp256k1(pb::RawSecp256k1 {
            digest,
        })),
    }
}

/// An attestation from `source` to `target` on the dev network (genesis
/// validators root and fork versions zero), the beacon block root filled
/// with `block` (vary it to make a conflicting vote).
pub fn dev_attestation(public_key: &[u8], source: u64, target: u64, block: u8) -> pb::SignRequest {
    let cp = |epoch| pb::Checkpoint {
        epoch,
        root: vec![0; 32],
    };
    pb::SignRequest {
        public_key: public_key.to_vec(),
        message: Some(pb::sign_request::Message::Eth2(pb::Eth2Request {
            fork_info: Some(pb::ForkInfo {
                fork: Some(pb::Fork {
                    previous_version: vec![0; 4],
                    current_version: vec![0; 4],
                    epoch: 0,
                }),
                genesis_validators_root: vec![0; 32],
            }),
            signing_root: Vec::new(),
            message: Some(pb::eth2_request::Message::Attestation(
                pb::AttestationData {
                    slot: target * 32,
                    index: 0,
                    beacon_block_root: vec![block; 32],
                    source: Some(cp(source)),
                    target: Some(cp(target)),
                },
            )),
        })),
    }
}

/// A CometBFT v0.38 vote for the block whose hashes are filled with `block`,
/// timestamped `seconds`.
pub fn vote_request(
    public_key: &[u8],
    chain_id: &str,
    kind: pb::VoteType,
    (height, round): (i64, i32),
    block: u8,
    seconds: i64,
) -> pb::SignRequest {
    pb::SignRequest {
        public_key: public_key.to_vec(),
        message: Some(pb::sign_request::Message::CometbftVote(pb::CometBftVote {
            chain_id: chain_id.to_owned(),
            version: pb::CometBftVersion::V038 as i32,
            r#type: kind as i32,
            height,
            round,
            block_id: Some(pb::BlockId {
                hash: vec![block; 32],
                part_set_total: 1,
                part_set_hash: vec![block; 32],
            }),
            timestamp: Some(pb::Timestamp { seconds, nanos: 0 }),
            extension: Vec::new(),
        })),
    }
}
