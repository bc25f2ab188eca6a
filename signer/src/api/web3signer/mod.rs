//! Web3Signer's eth2 remote-signing API over HTTP/1.1 (HTTPS with client
//! certificates, or plain HTTP on loopback when explicitly enabled), on the
//! same pipeline, worker pool, policy and audit log as gRPC. Every Ethereum
//! consensus client speaks this API, so replacing Web3Signer is a URL change.
//!
//! Endpoints (paths and status codes as `openapi-specs/eth2/web3signer.yaml`):
//! `POST /api/v1/eth2/sign/{identifier}`, `GET /api/v1/eth2/publicKeys`,
//! `GET /upcheck`, `GET /healthcheck`, `GET /api/v1/eth2/highWatermark`,
//! `POST /reload` and `GET /reload`; this signer's batch extension
//! `POST /api/v1/eth2/sign_batch`; and the Ethereum Keymanager API's
//! `GET/POST/DELETE /eth/v1/keystores` when `[keymanager]` is configured
//! (the daemon's side: `server::keymanager`); and the Commit-Boost signer
//! API under `/signer/v1/` when `[commit_boost]` is (`api::commit_boost`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use crate::net::{ListenerLimits, Slots};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::pipeline::{self, Message, Signature};
use crate::pool::Answer;
use crate::tls::ReloadableConfig;
use crate::tls::listener::{self, PeerInfo};

/// Largest request body accepted (a phase0 block with every list full is far smaller).
const MAX_BODY: usize = 4 << 20;

pub(crate) use super::https::refusal_reply;
pub use super::https::{Host, KeymanagerOp};
use super::https::{Reply, body_failure, identify, json_reply, read_body, run_job, text};

/// JSON unless the client asks for text/plain and does not accept JSON.
fn wants_text(req: &Request<Incoming>) -> bool {
    let Some(accept) = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let accept = accept.to_ascii_lowercase();
    accept.contains("text/plain") && !accept.contains("application/json") && !accept.contains("*/*")
}

fn parse_key(identifier: &str) -> Option<Vec<u8>> {
    let h = identifier
        .strip_prefix("0x")
        .or_else(|| identifier.strip_prefix("0X"))
        .unwrap_or(identifier);
    hex::decode(h).ok().filter(|k| k.len() == 48)
}

/// A signing request body as the pipeline takes it: parsed once here; a
/// body that is not JSON is still decided (refused as INVALID_REQUEST) and
/// audited by the pipeline like every request.
fn eth2_message(body: &[u8]) -> Message {
    match crate::eth2::parse_body(body) {
        Ok(v) => Message::Eth2(v),
        Err(e) => Message::Invalid {
            request: "eth2.request",
            reason: e.to_string(),
        },
    }
}

/// One answer as its status, and the signature or the reason.
fn answer_of(answer: Answer) -> (StatusCode, Result<String, String>) {
    match answer {
        Answer::Done(Ok(Signature::Bls(sig))) => {
            (StatusCode::OK, Ok(format!("0x{}", hex::encode(sig))))
        }
        Answer::Done(Ok(_)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Err("not a BLS signature".to_owned()),
        ),
        Answer::Done(Err(r)) => {
            let (status, message) = refusal_reply(&r);
            (status, Err(message))
        }
        Answer::Overloaded => (
            StatusCode::SERVICE_UNAVAILABLE,
            Err("waited past its deadline in the signing queue".to_owned()),
        ),
    }
}

async fn sign(
    req: Request<Incoming>,
    shared: Arc<dyn Host>,
    peer: Option<PeerInfo>,
    identifier: &str,
) -> Reply {
    let started = Instant::now();
    let as_text = wants_text(&req);
    let client = match identify(shared.as_ref(), peer.as_ref()) {
        Ok(c) => c,
        Err(e) => return text(StatusCode::FORBIDDEN, e),
    };
    let Some(public_key) = parse_key(identifier) else {
        return text(
            StatusCode::BAD_REQUEST,
            "identifier: expected a BLS public key (0x and 96 hex digits)",
        );
    };
    // Web3Signer answers 404 for a key it does not hold, whoever asks.
    if !shared.pipeline().keys().contains(&public_key) {
        shared
            .pipeline()
            .metrics()
            .request("http", "eth2.request", "unknown_key");
        return text(StatusCode::NOT_FOUND, "public key not found");
    }
    let body = match read_body(req, shared.as_ref(), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return body_failure(e),
    };
    let item = pipeline::Request {
        client,
        public_key: pipeline::KeyId::new(public_key),
        message: eth2_message(&body),
        scope: None,
    };
    let answer = run_job(shared.as_ref(), "http", vec![item]).await;
    shared
        .pipeline()
        .metrics()
        .stage("total", started.elapsed());
    let answer = match answer {
        Ok(mut a) => a.pop(),
        Err(reply) => return reply,
    };
    match answer.map(answer_of) {
        Some((status, Ok(sig))) if !as_text => json_reply(status, &json!({ "signature": sig })),
        Some((status, Ok(sig) | Err(sig))) => text(status, sig),
        None => text(StatusCode::SERVICE_UNAVAILABLE, "no answer"),
    }
}

/// Most items one batch request may carry.
pub const MAX_BATCH_ITEMS: usize = 4096;

/// Largest batch request body (4,096 attestations fit with room to spare).
const MAX_BATCH_BODY: usize = 16 << 20;

/// `POST /api/v1/eth2/sign_batch`, this signer's extension of the API
/// (docs/web3signer.md): many signing requests in one HTTP request, decided
/// as one pipeline batch — one slashing-database transaction — and answered
/// one item each, in order, with the status the single route would give.
/// Conflicting items of one batch are decided in order: the first is
/// signed, the others refused as slashable.
async fn sign_batch(
    req: Request<Incoming>,
    shared: Arc<dyn Host>,
    peer: Option<PeerInfo>,
) -> Reply {
    let started = Instant::now();
    let client = match identify(shared.as_ref(), peer.as_ref()) {
        Ok(c) => c,
        Err(e) => return text(StatusCode::FORBIDDEN, e),
    };
    let body = match read_body(req, shared.as_ref(), MAX_BATCH_BODY).await {
        Ok(b) => b,
        Err(e) => return body_failure(e),
    };
    let items = match batch_items(&body) {
        Ok(items) => items,
        Err(why) => return text(StatusCode::BAD_REQUEST, why),
    };
    // Items whose identifier is not a loaded key are answered here; the rest go
    // to the pipeline as one job, and come back in order.
    let mut answers: Vec<Option<(StatusCode, Result<String, String>)>> = Vec::new();
    let mut requests = Vec::new();
    let keys = shared.pipeline().keys();
    for (i, (identifier, request)) in items.into_iter().enumerate() {
        match parse_key(&identifier) {
            // As the single route: 404 for a key this signer does not hold.
            Some(public_key) if !keys.contains(&public_key) => {
                shared
                    .pipeline()
                    .metrics()
                    .request("http", "eth2.request", "unknown_key");
                answers.push(Some((
                    StatusCode::NOT_FOUND,
                    Err("public key not found".to_owned()),
                )));
            }
            Some(public_key) => {
                answers.push(None);
                requests.push(pipeline::Request {
                    client: client.clone(),
                    public_key: pipeline::KeyId::new(public_key),
                    message: match request {
                        serde_json::Value::Object(_) => Message::Eth2(request),
                        _ => Message::Invalid {
                            request: "eth2.request",
                            reason: format!("requests[{i}].request: expected a JSON object"),
                        },
                    },
                    scope: None,
                });
            }
            None => answers.push(Some((
                StatusCode::BAD_REQUEST,
                Err(format!(
                    "requests[{i}].identifier: expected a BLS public key (0x and 96 hex digits)"
                )),
            ))),
        }
    }
    drop(keys);
    let mut done = if requests.is_empty() {
        Vec::new().into_iter()
    } else {
        match run_job(shared.as_ref(), "http", requests).await {
            Ok(a) => a.into_iter(),
            Err(reply) => return reply,
        }
    };
    let responses: Vec<serde_json::Value> = answers
        .into_iter()
        .map(|a| {
            let (status, result) = a.unwrap_or_else(|| {
                done.next().map_or(
                    (StatusCode::SERVICE_UNAVAILABLE, Err("no answer".to_owned())),
                    answer_of,
                )
            });
            match result {
                Ok(sig) => json!({"status": status.as_u16(), "signature": sig}),
                Err(message) => json!({"status": status.as_u16(), "message": message}),
            }
        })
        .collect();
    shared
        .pipeline()
        .metrics()
        .stage("total", started.elapsed());
    json_reply(StatusCode::OK, &json!({ "responses": responses }))
}

/// `{"requests": [{"identifier": "0x…", "request": {…}}, …]}` as
/// (identifier, request) pairs, or what is wrong with it.
fn batch_items(body: &[u8]) -> Result<Vec<(String, serde_json::Value)>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        identifier: String,
        request: serde_json::Value,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Batch {
        requests: Vec<Item>,
    }
    let shape = |e: serde_json::Error| {
        format!(
            "expected {{\"requests\": [{{\"identifier\": \"0x…\", \"request\": {{…}}}}, …]}}: {e}"
        )
    };
    let batch: Batch =
        serde_json::from_value(crate::json::from_slice(body).map_err(shape)?).map_err(shape)?;
    match batch.requests.len() {
        0 => Err("requests: empty; send at least one item".to_owned()),
        n if n > MAX_BATCH_ITEMS => Err(format!(
            "requests: {n} items; at most {MAX_BATCH_ITEMS} per batch — split it"
        )),
        _ => Ok(batch
            .requests
            .into_iter()
            .map(|i| (i.identifier, i.request))
            .collect()),
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<dyn Host>,
    peer: Option<PeerInfo>,
) -> Result<Reply, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if let Some(identifier) = path.strip_prefix("/api/v1/eth2/sign/") {
        if method != Method::POST {
            return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "use POST"));
        }
        let identifier = identifier.to_owned();
        return Ok(sign(req, shared, peer, &identifier).await);
    }
    if path.starts_with("/signer/v1/") {
        return Ok(super::commit_boost::handle(req, shared, peer).await);
    }
    if path == "/api/v1/eth2/sign_batch" {
        if method != Method::POST {
            return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "use POST"));
        }
        return Ok(sign_batch(req, shared, peer).await);
    }
    if path == "/eth/v1/keystores" {
        let op = match method {
            Method::GET => KeymanagerOp::List,
            Method::POST => KeymanagerOp::Import,
            Method::DELETE => KeymanagerOp::Delete,
            _ => {
                return Ok(text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "use GET, POST or DELETE",
                ));
            }
        };
        return Ok(keymanager(req, shared, peer, op).await);
    }
    Ok(match (&method, path.as_str()) {
        // Remote keys are a validator client's: it names the signer that
        // holds them. This is that signer.
        (_, "/eth/v1/remotekeys") => json_reply(
            StatusCode::NOT_FOUND,
            &json!({"code": 404, "message": "this is a remote signer: /eth/v1/remotekeys belongs to validator clients; import keystores here with /eth/v1/keystores"}),
        ),
        (&Method::GET, "/upcheck") => text(StatusCode::OK, "OK"),
        (&Method::GET, "/healthcheck") => {
            let s = shared.clone();
            let checks = tokio::task::spawn_blocking(move || s.readiness())
                .await
                .unwrap_or_default();
            let up = |ok: bool| if ok { "UP" } else { "DOWN" };
            let all = !checks.is_empty() && checks.iter().all(|(_, r)| r.is_ok());
            let list: Vec<serde_json::Value> = checks
                .iter()
                .map(|(id, r)| json!({"id": id, "status": up(r.is_ok())}))
                .collect();
            let status = if all {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_reply(
                status,
                &json!({"status": up(all), "checks": list, "outcome": up(all)}),
            )
        }
        (&Method::GET, "/api/v1/eth2/publicKeys") => match identify(shared.as_ref(), peer.as_ref())
        {
            Ok(client) => {
                let keys: Vec<String> = shared
                    .pipeline()
                    .list_keys(&client)
                    .into_iter()
                    .filter(|k| k.scheme == "bls")
                    .map(|k| format!("0x{}", hex::encode(k.public_key)))
                    .collect();
                json_reply(StatusCode::OK, &json!(keys))
            }
            Err(e) => text(StatusCode::FORBIDDEN, e),
        },
        // This signer has no global high watermark: Web3Signer's answer for "none set".
        (&Method::GET, "/api/v1/eth2/highWatermark") => json_reply(StatusCode::OK, &json!({})),
        (&Method::POST, "/reload") => match identify(shared.as_ref(), peer.as_ref()) {
            Ok(client) => {
                if shared.clone().start_key_reload(client.as_str()) {
                    json_reply(
                        StatusCode::ACCEPTED,
                        &json!({"status": "accepted", "message": "Reload started; GET /reload for its status"}),
                    )
                } else {
                    json_reply(
                        StatusCode::CONFLICT,
                        &json!({"status": "running", "message": "A reload is already running"}),
                    )
                }
            }
            Err(e) => text(StatusCode::FORBIDDEN, e),
        },
        (&Method::GET, "/reload") => json_reply(StatusCode::OK, &shared.key_reload_status()),
        (_, "/upcheck" | "/healthcheck" | "/api/v1/eth2/publicKeys" | "/reload") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    })
}

/// Serves HTTP/1 on one connection until it closes.
async fn connection<IO>(io: IO, shared: Arc<dyn Host>, peer: Option<PeerInfo>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = shared.http_timeouts().header;
    let service = hyper::service::service_fn(move |req| handle(req, shared.clone(), peer.clone()));
    // The header timeout also closes a kept-alive connection that sits idle
    // that long between requests (hyper starts it when it waits for a head).
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// `/eth/v1/keystores`: the client (mutual TLS), then the daemon decides
/// (bearer token, policy) and does it, off the async threads.
async fn keymanager(
    req: Request<Incoming>,
    shared: Arc<dyn Host>,
    peer: Option<PeerInfo>,
    op: KeymanagerOp,
) -> Reply {
    let client = match identify(shared.as_ref(), peer.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            return json_reply(StatusCode::FORBIDDEN, &json!({"code": 403, "message": e}));
        }
    };
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let body = if op == KeymanagerOp::List {
        Bytes::new()
    } else {
        match read_body(req, shared.as_ref(), MAX_BODY).await {
            Ok(b) => b,
            Err((status, why)) => {
                return json_reply(status, &json!({"code": status.as_u16(), "message": why}));
            }
        }
    };
    let (status, answer) = tokio::task::spawn_blocking(move || {
        shared.keymanager(op, &client, authorization.as_deref(), &body)
    })
    .await
    .unwrap_or_else(|_| {
        (
            500,
            json!({"code": 500, "message": "the request failed inside the signer"}),
        )
    });
    json_reply(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &answer,
    )
}

/// Serves the API on `listener` until `stop` turns true: over mutual TLS
/// with `tls`, or plain HTTP when `tls` is `None` (loopback only; the
/// configuration refuses anything else).
pub async fn serve(
    listener: TcpListener,
    shared: Arc<dyn Host>,
    tls: Option<Arc<ReloadableConfig>>,
    limits: ListenerLimits,
    mut stop: watch::Receiver<bool>,
) {
    match tls {
        Some(tls) => {
            let host = shared.clone();
            let admit: listener::Admit =
                Arc::new(move |peer: &PeerInfo| identify(host.as_ref(), Some(peer)).is_ok());
            let mut incoming = listener::incoming(
                listener,
                tls,
                shared.pipeline().metrics().clone(),
                limits,
                admit,
                stop,
            );
            while let Some(conn) = incoming.recv().await {
                if let Ok(conn) = conn {
                    let peer = tonic::transport::server::Connected::connect_info(&conn);
                    tokio::spawn(connection(conn, shared.clone(), Some(peer)));
                }
            }
        }
        None => {
            // Loopback only (the configuration refuses anything else); still
            // bounded, the oldest pushed out when full.
            let slots = Slots::new("plain HTTP connections", limits.clients);
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop.changed() => return,
                };
                match accepted {
                    Ok((tcp, _)) => {
                        let _ = tcp.set_nodelay(true);
                        let mut slot = slots.take_evicting();
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            tokio::select! {
                                () = connection(tcp, shared, None) => {}
                                () = slot.evicted() => {}
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "HTTP listener: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }
}
