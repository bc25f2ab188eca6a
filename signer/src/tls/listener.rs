//! Accepting mutual-TLS connections: each TCP connection is handshaken with
//! the TLS configuration in force at that moment (so a reload applies to new
//! connections while existing ones continue), and handed to the gRPC server
//! with the verified client certificate's identity attached.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::metrics::Metrics;
use crate::net::{ListenerLimits, Slot, Slots};
use crate::tls::ReloadableConfig;
use crate::tls::identity::{PeerIdentity, peer_identity};

/// How long a client has to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The TCP peer.
    pub addr: SocketAddr,
    /// What its verified certificate says.
    pub identity: Arc<PeerIdentity>,
}

/// A TLS connection that knows its peer, holding its place among the
/// listener's connections (it reads as closed once told to make room).
#[derive(Debug)]
pub struct TlsConn {
    inner: TlsStream<TcpStream>,
    info: PeerInfo,
    slot: Slot,
}

impl Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.slot.poll_evicted(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for new connections",
            )));
        }
        Pin::new(&mut me.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Why a handshake failed, as a metrics label.
pub fn failure_reason(e: &io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) else {
        return if e.kind() == io::ErrorKind::UnexpectedEof {
            "closed"
        } else {
            "io"
        };
    };
    match tls {
        Error::NoCertificatesPresented => "no_client_certificate",
        Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => "unknown_ca",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not_yet_valid"
            }
            CertificateError::Revoked => "revoked",
            _ => "bad_certificate",
        },
        Error::PeerIncompatible(_) => "incompatible",
        Error::AlertReceived(_) => "alert_received",
        _ => "tls_error",
    }
}

/// Whether a verified peer is a policy client (its connection then takes
/// a client slot; otherwise a stranger's, which floods can push out).
pub type Admit = Arc<dyn Fn(&PeerInfo) -> bool + Send + Sync>;

/// Accepts connections on `listener` until `stop` turns true; yields the
/// completed handshakes. Connections are bounded by `limits` (see
/// [`crate::net`]): handshakes and strangers push out their oldest when
/// full, policy clients beyond their share are closed after the handshake.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ReloadableConfig>,
    metrics: Arc<Metrics>,
    limits: ListenerLimits,
    admit: Admit,
    mut stop: watch::Receiver<bool>,
) -> mpsc::Receiver<io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(64);
    let handshakes = Slots::new("TLS handshakes", limits.handshakes);
    let strangers = Slots::new("connections of non-policy clients", limits.strangers);
    let clients = Slots::new("connections of policy clients", limits.clients);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.changed() => break,
            };
            let (tcp, addr) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(tls.current());
            let tx = tx.clone();
            let metrics = metrics.clone();
            let mut handshake = handshakes.take_evicting();
            let (strangers, clients, admit) = (strangers.clone(), clients.clone(), admit.clone());
            tokio::spawn(async move {
                let refused = |reason: &'static str, detail: String| {
                    metrics
                        .tls_failures
                        .get_or_create(&vec![("reason", reason.to_owned())])
                        .inc();
                    tracing::info!(peer = %addr, reason, detail, "TLS handshake refused");
                };
                let done = tokio::select! {
                    r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => r,
                    () = handshake.evicted() => {
                        refused("evicted", "closed unfinished to make room for new handshakes".into());
                        return;
                    }
                };
                drop(handshake);
                match done {
                    Err(_) => refused("timeout", "handshake not completed in time".into()),
                    Ok(Err(e)) => refused(failure_reason(&e), e.to_string()),
                    Ok(Ok(stream)) => {
                        let cert = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(peer_identity);
                        let Some(Ok(identity)) = cert else {
                            refused("bad_certificate", "client certificate unreadable".into());
                            return;
                        };
                        let info = PeerInfo {
                            addr,
                            identity: Arc::new(identity),
                        };
                        let slot = if admit(&info) {
                            match clients.try_take() {
                                Some(slot) => slot,
                                None => {
                                    refused(
                                        "too_many_connections",
                                        format!(
                                            "all {} connection slots of policy clients are taken",
                                            clients.capacity()
                                        ),
                                    );
                                    return;
                                }
                            }
                        } else {
                            strangers.take_evicting()
                        };
                        metrics.connections.inc();
                        let _ = tx
                            .send(Ok(TlsConn {
                                inner: stream,
                                info,
                                slot,
                            }))
                            .await;
                    }
                }
            });
        }
    });
    rx
}
