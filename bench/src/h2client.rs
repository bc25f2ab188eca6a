//! The load generator's gRPC client: unary `Sign` and `SignBatch` calls on
//! the `h2` crate directly, over one mTLS connection per client.
//!
//! Why not tonic's client: it hands the HEADERS frame to the connection
//! before the message body is polled, so each call leaves in two TCP
//! writes and the server wakes twice per call (`strace -c` on the daemon
//! showed two `recvfrom` per call). Here a call's HEADERS and DATA frames
//! are queued together and leave in one write, as from any client that has
//! the whole message at hand, so the figures measure the signer rather than
//! the load generator's framing. It also costs the load generator less CPU
//! per call (it shares the cores with the daemon). The daemon's side is
//! unchanged: tonic.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Bytes;
use prost::Message;
use proto::v1 as pb;
use rustls::ClientConfig;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One connection to the daemon's gRPC listener.
#[derive(Clone)]
pub(super) struct Client {
    send: h2::client::SendRequest<Bytes>,
}

/// A request in gRPC's length-prefixed framing, built before timing.
pub(super) fn frame(request: &impl Message) -> Bytes {
    let len = request.encoded_len();
    let mut out = Vec::with_capacity(5 + len);
    out.push(0); // not compressed
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    request.encode_raw(&mut out);
    Bytes::from(out)
}

impl Client {
    /// Connects (TCP_NODELAY, TLS with ALPN `h2`) and completes the HTTP/2
    /// handshake; the connection is driven by a task of its own.
    pub async fn connect(addr: SocketAddr, tls: Arc<ClientConfig>) -> Result<Self, BoxError> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await?;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 24)
            .handshake(stream)
            .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { send })
    }

    /// One `Sign` call with a `SignRequest` made by [`frame`].
    pub async fn sign(&mut self, framed: Bytes) -> Result<pb::SignResponse, BoxError> {
        self.unary("https://localhost/signer.v1.Signer/Sign", framed)
            .await
    }

    /// One `grpc.health.v1.Health/Check` call for the whole server: the
    /// cheapest gRPC round trip through the daemon's TLS and HTTP/2 stack
    /// (no pipeline, no key): the transport part of a signing call.
    pub async fn health_check(&mut self) -> Result<i32, BoxError> {
        /// `grpc.health.v1.HealthCheckRequest` (the server: empty name).
        #[derive(Clone, PartialEq, prost::Message)]
        struct HealthCheckRequest {
            #[prost(string, tag = "1")]
            service: String,
        }
        /// `grpc.health.v1.HealthCheckResponse`.
        #[derive(Clone, PartialEq, prost::Message)]
        struct HealthCheckResponse {
            #[prost(int32, tag = "1")]
            status: i32,
        }
        let framed = frame(&HealthCheckRequest::default());
        let r: HealthCheckResponse = self
            .unary("https://localhost/grpc.health.v1.Health/Check", framed)
            .await?;
        Ok(r.status)
    }

    /// One `SignBatch` call with a `SignBatchRequest` made by [`frame`].
    pub async fn sign_batch(&mut self, framed: Bytes) -> Result<pb::SignBatchResponse, BoxError> {
        self.unary("https://localhost/signer.v1.Signer/SignBatch", framed)
            .await
    }

    async fn unary<R: Message + Default>(
        &mut self,
        uri: &'static str,
        framed: Bytes,
    ) -> Result<R, BoxError> {
        let mut send = self.send.clone().ready().await?;
        let request = hyper::Request::builder()
            .method(hyper::Method::POST)
            .uri(uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())?;
        let (response, mut stream) = send.send_request(request, false)?;
        stream.send_data(framed, true)?;
        let response = response.await?;
        if response.status() != hyper::StatusCode::OK {
            return Err(format!("HTTP status {}", response.status()).into());
        }
        // A trailers-only answer (an error) carries grpc-status in the headers.
        let early = response.headers().get("grpc-status").cloned();
        let mut body = response.into_body();
        let mut message = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            message.extend_from_slice(&chunk);
        }
        let status = match early {
            Some(s) => Some(s),
            None => body
                .trailers()
                .await?
                .and_then(|t| t.get("grpc-status").cloned()),
        };
        if status.as_ref().map(|s| s.as_bytes()) != Some(b"0") {
            return Err(format!("grpc-status {status:?}").into());
        }
        let payload = message
            .get(5..)
            .filter(|_| message.first() == Some(&0))
            .ok_or("malformed gRPC message")?;
        Ok(R::decode(payload)?)
    }
}
