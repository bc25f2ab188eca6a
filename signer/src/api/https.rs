//! What the HTTPS listener's APIs share: the daemon's narrow view ([`Host`]),
//! who the caller is, reading bodies within limits, queueing work on the
//! pipeline's worker pool, and plain and JSON replies. The Web3Signer API
//! ([`super::web3signer`]) serves the listener and hands `/signer/v1/…` to
//! the Commit-Boost API ([`super::commit_boost`]); both use these.

use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode, header};

use crate::pipeline::{self, Refusal};
use crate::policy::{ClientId, LOOPBACK_PLAINTEXT};
use crate::pool::{Answer, Job, Pool, Rejected};
use crate::tls::ReloadableConfig;
use crate::tls::identity::PeerIdentity;
use crate::tls::listener::PeerInfo;

/// A reply.
pub(crate) type Reply = Response<Full<Bytes>>;

pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub(crate) fn json_reply(status: StatusCode, v: &serde_json::Value) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The policy client behind a connection (`None`: plain HTTP), or why it is not one.
pub(crate) fn identify(shared: &dyn Host, peer: Option<&PeerInfo>) -> Result<ClientId, String> {
    let identity = match peer {
        None => PeerIdentity {
            uris: vec![LOOPBACK_PLAINTEXT.to_owned()],
            dns_names: Vec::new(),
            fingerprint: [0; 32],
        },
        Some(p) => match shared.http_tls().and_then(|t| {
            t.known_clients()
                .name(&p.identity.fingerprint)
                .map(str::to_owned)
        }) {
            // A known-clients certificate is the policy client named by the file.
            Some(name) => PeerIdentity {
                uris: vec![name],
                dns_names: Vec::new(),
                fingerprint: p.identity.fingerprint,
            },
            None => (*p.identity).clone(),
        },
    };
    shared.pipeline().identify(&identity).map_err(|e| {
        tracing::info!(peer = ?peer.map(|p| p.addr), error = %e, "HTTP caller is not a policy client");
        e.to_string()
    })
}

/// Reads a request body within `limit` bytes and `[server] body_timeout_ms`;
/// `Err` is the status and text to answer.
pub(crate) async fn read_body(
    req: Request<Incoming>,
    shared: &dyn Host,
    limit: usize,
) -> Result<Bytes, (StatusCode, String)> {
    let body_timeout = shared.http_timeouts().body;
    match tokio::time::timeout(body_timeout, Limited::new(req.into_body(), limit).collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) => Err((StatusCode::BAD_REQUEST, format!("request body: {e}"))),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not received within {} ms ([server] body_timeout_ms)",
                body_timeout.as_millis()
            ),
        )),
    }
}

/// A body-read failure as a text reply (a timed-out connection is closed).
pub(crate) fn body_failure((status, why): (StatusCode, String)) -> Reply {
    let mut r = text(status, why);
    if status == StatusCode::REQUEST_TIMEOUT {
        r.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    r
}

/// Queues `items` as one job (one pipeline batch) and waits for the
/// answers, one per item; `Err` is the whole request's refusal.
pub(crate) async fn run_job(
    shared: &dyn Host,
    frontend: &'static str,
    items: Vec<pipeline::Request>,
) -> Result<Vec<Answer>, Reply> {
    let n = items.len();
    let deadline = Instant::now() + shared.max_wait();
    let (job, rx) = Job::new(items, frontend, deadline);
    let metrics = shared.pipeline().metrics().clone();
    if let Err((why, _)) = shared.pool().submit(job) {
        for _ in 0..n {
            metrics.request(frontend, "any", "overloaded");
        }
        let why = match why {
            Rejected::Full => "the signing queue is full",
            Rejected::Closed => "the signer is shutting down",
        };
        return Err(text(StatusCode::SERVICE_UNAVAILABLE, why));
    }
    match rx.await {
        Ok(answers) if answers.len() == n => Ok(answers),
        _ => Err(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the signer lost the answer; nothing is known to be signed — retry",
        )),
    }
}

/// What a Keymanager API request asks (`/eth/v1/keystores`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeymanagerOp {
    /// `GET`: the keys served, and which were imported here.
    List,
    /// `POST`: import keystores (and their history).
    Import,
    /// `DELETE`: stop keys and return their history.
    Delete,
}

/// What this frontend needs from the daemon that runs it. The server
/// implements it; the frontend never imports the server.
pub trait Host: Send + Sync + 'static {
    /// The signing pipeline.
    fn pipeline(&self) -> &pipeline::Pipeline;
    /// The worker pool requests are queued on.
    fn pool(&self) -> &Pool;
    /// How long a request may wait for a worker.
    fn max_wait(&self) -> std::time::Duration;
    /// The HTTP listener's TLS setup, when it has its own (known clients).
    fn http_tls(&self) -> Option<&ReloadableConfig>;
    /// How long a peer may take to send headers and bodies.
    fn http_timeouts(&self) -> crate::net::HttpTimeouts;
    /// Readiness checks, each `Ok` or why not (blocking).
    fn readiness(&self) -> Vec<(&'static str, Result<(), String>)>;
    /// Starts a key reload for `client`; false if one is already running.
    fn start_key_reload(self: Arc<Self>, client: &str) -> bool;
    /// The last key reload's state, as Web3Signer's `GET /reload` shows it.
    fn key_reload_status(&self) -> serde_json::Value;
    /// A Keymanager API request of `client` (blocking): status and JSON.
    fn keymanager(
        &self,
        op: KeymanagerOp,
        client: &ClientId,
        authorization: Option<&[u8]>,
        body: &[u8],
    ) -> (u16, serde_json::Value);
}

/// A refusal as the HTTPS APIs answer it (Web3Signer's statuses, which
/// Commit-Boost's follow too): the status its clients
/// act on, and [`Refusal::client_message`].
pub(crate) fn refusal_reply(r: &Refusal) -> (StatusCode, String) {
    let status = match r {
        Refusal::Slashable(_) => StatusCode::PRECONDITION_FAILED,
        Refusal::NotAllowed(_)
        | Refusal::PolicyViolation(_)
        | Refusal::OutOfScope(_)
        | Refusal::KeyDisabled(_) => StatusCode::FORBIDDEN,
        Refusal::UnknownKey => StatusCode::NOT_FOUND,
        Refusal::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        Refusal::BackendUnavailable(_) | Refusal::RateLimited(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, r.client_message())
}
