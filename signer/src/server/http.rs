//! The operations listener (plain HTTP/1.1; keep it on a private address),
//! bound before the keys load ([`Ops`]):
//! `GET /metrics`, `GET /healthz` (the process is up), `GET /readyz` (the
//! database answers, keys are loaded, not shutting down), and `POST /reload`
//! (re-read TLS material, policy and keys, as SIGHUP does). It changes
//! nothing an operator did not already write to disk, but it costs work, so
//! by default only loopback may ask (`[server] metrics_reload`), and only
//! one reload runs at a time (409 for the rest).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Shared;
use super::starting::KeyLoad;
use crate::config::MetricsReload;
use crate::metrics::Metrics;
use crate::net::Slots;

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// What the operations listener answers for: the daemon while its keys
/// load (it is bound before they do, so an operator and an orchestrator can
/// see a long start progress), then the serving daemon.
#[derive(Debug)]
pub struct Ops {
    load: Arc<KeyLoad>,
    metrics: Arc<Metrics>,
    header_timeout: Duration,
    serving: OnceLock<Arc<Shared>>,
}

impl Ops {
    /// Answers for a daemon whose keys `load` counts.
    pub fn new(load: Arc<KeyLoad>, metrics: Arc<Metrics>, header_timeout: Duration) -> Self {
        Self {
            load,
            metrics,
            header_timeout,
            serving: OnceLock::new(),
        }
    }

    /// From now on, answers for the serving daemon.
    pub fn serving(&self, shared: Arc<Shared>) {
        let _ = self.serving.set(shared);
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

/// The answers while keys load: alive, not ready, and how far it has come.
fn starting(req: &Request<Incoming>, ops: &Ops) -> Response<Full<Bytes>> {
    let progress = ops.load.progress();
    let why = format!("starting: loading keys: {}", progress.line());
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => reply(StatusCode::OK, TEXT, "ok\n".into()),
        (&Method::GET, "/readyz") => {
            reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{why}\n"))
        }
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ops.metrics.encode(),
        ),
        (&Method::GET, "/status") => {
            let v = serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "ready": false,
                "stopping": false,
                "starting": {"phase": "loading keys", "keys": progress.json()},
                "checks": [{"name": "starting", "ok": false, "why": why}],
            });
            reply(StatusCode::OK, "application/json", format!("{v}\n"))
        }
        (_, "/metrics" | "/healthz" | "/readyz" | "/reload" | "/status" | "/keys/state") => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            format!("{why}; ask again once it is ready\n"),
        ),
        _ => reply(StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    }
}

async fn handle(
    req: Request<Incoming>,
    ops: Arc<Ops>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    match ops.serving.get() {
        Some(shared) => handle_serving(req, shared.clone(), peer).await,
        None => Ok(starting(&req, &ops)),
    }
}

async fn handle_serving(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = TEXT;
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            // `signer_ready` and `signer_db_durability` are set by the
            // readiness checks: run them now, so the scrape is current even
            // when nothing probes /readyz (systemd, bare metal).
            let s = shared.clone();
            let _ = tokio::task::spawn_blocking(move || s.readiness()).await;
            let stats = shared.pipeline.db().stats();
            let m = shared.pipeline.metrics();
            m.db_commits
                .set(i64::try_from(stats.commits).unwrap_or(i64::MAX));
            if let Some(cb) = shared.pipeline.commit_boost() {
                m.commit_boost_proxies
                    .set(i64::try_from(cb.proxies.len()).unwrap_or(i64::MAX));
            }
            let (written, anchored) = shared.pipeline.audit_positions();
            m.audit_records
                .set(i64::try_from(written).unwrap_or(i64::MAX));
            m.audit_anchored
                .set(anchored.map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX)));
            reply(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                m.encode(),
            )
        }
        (&Method::GET, "/healthz") => reply(StatusCode::OK, text, "ok\n".into()),
        (&Method::GET, "/readyz") => {
            let s = shared.clone();
            let checks = tokio::task::spawn_blocking(move || s.readiness())
                .await
                .unwrap_or_else(|_| vec![("probe", Err("readiness probe failed".into()))]);
            let ok = checks.iter().all(|(_, r)| r.is_ok());
            let body: String = checks
                .iter()
                .map(|(name, r)| match r {
                    Ok(()) => format!("{name}: ok\n"),
                    Err(e) => format!("{name}: {e}\n"),
                })
                .collect();
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(status, text, body)
        }
        (&Method::POST, "/reload") => {
            if let Err(why) = may_reload(shared.metrics_reload, peer) {
                tracing::warn!(%peer, "metrics listener: POST /reload refused: {why}");
                return Ok(reply(StatusCode::FORBIDDEN, text, format!("{why}\n")));
            }
            let s = shared.clone();
            match tokio::task::spawn_blocking(move || s.try_reload()).await {
                Ok(Some(report)) => {
                    let status = if report.ok() {
                        StatusCode::OK
                    } else {
                        StatusCode::INTERNAL_SERVER_ERROR
                    };
                    reply(status, text, report.to_string())
                }
                Ok(None) => reply(
                    StatusCode::CONFLICT,
                    text,
                    format!(
                        "a reload is already running (since {}); GET /reload says when it has ended, then ask again\n",
                        shared
                            .reloads
                            .running_since()
                            .unwrap_or_else(|| "a moment ago".into())
                    ),
                ),
                Err(_) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    text,
                    super::ReloadReport::failed("reload task failed").to_string(),
                ),
            }
        }
        // `signer keys disable|enable|retire` while this daemon holds SQLite.
        (&Method::POST, "/keys/state") => {
            let Some(control) = shared.control.as_ref() else {
                return Ok(reply(
                    StatusCode::NOT_FOUND,
                    text,
                    "this signer's database is shared (PostgreSQL): change key states in the database (signer keys … --config)\n".into(),
                ));
            };
            if !peer.ip().to_canonical().is_loopback() {
                return Ok(reply(
                    StatusCode::FORBIDDEN,
                    text,
                    "key states change from this host only (loopback)\n".into(),
                ));
            }
            let auth = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .map(|v| v.as_bytes().to_vec());
            if !control.admits(auth.as_deref()) {
                tracing::warn!(%peer, "POST /keys/state refused: no valid control token");
                return Ok(reply(
                    StatusCode::UNAUTHORIZED,
                    text,
                    "the control token (beside the SQLite database) is missing or wrong\n".into(),
                ));
            }
            let body = match http_body_util::Limited::new(req.into_body(), 64 * 1024)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return Ok(reply(
                        StatusCode::BAD_REQUEST,
                        text,
                        "body too large or cut\n".into(),
                    ));
                }
            };
            let change: super::control::StateChange = match serde_json::from_slice(&body) {
                Ok(c) => c,
                Err(e) => return Ok(reply(StatusCode::BAD_REQUEST, text, format!("{e}\n"))),
            };
            let s = shared.clone();
            match tokio::task::spawn_blocking(move || s.change_key_state(&change)).await {
                Ok((status, v)) => reply(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    "application/json",
                    format!("{v}\n"),
                ),
                Err(_) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    text,
                    "key state change failed\n".into(),
                ),
            }
        }
        // What the daemon sees, for `signer status`.
        (&Method::GET, "/status") => {
            let s = shared.clone();
            match tokio::task::spawn_blocking(move || s.status()).await {
                Ok(v) => reply(StatusCode::OK, "application/json", format!("{v}\n")),
                Err(_) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    text,
                    "status failed\n".into(),
                ),
            }
        }
        // The last reload's outcome (with the key diff), or that one runs.
        (&Method::GET, "/reload") => reply(
            StatusCode::OK,
            "application/json",
            format!("{}\n", shared.key_reload_status()),
        ),
        (_, "/metrics" | "/healthz" | "/readyz" | "/reload" | "/status" | "/keys/state") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            text,
            "method not allowed\n".into(),
        ),
        _ => reply(StatusCode::NOT_FOUND, text, "not found\n".into()),
    })
}

/// Whether `peer` may ask for a reload on this listener, or why not.
fn may_reload(setting: MetricsReload, peer: SocketAddr) -> Result<(), &'static str> {
    match setting {
        MetricsReload::Any => Ok(()),
        MetricsReload::Loopback if peer.ip().to_canonical().is_loopback() => Ok(()),
        MetricsReload::Loopback => Err(
            "POST /reload on the metrics listener is accepted from loopback only ([server] metrics_reload = \"loopback\"); send SIGHUP to the daemon, or POST /reload on the HTTPS listener",
        ),
        MetricsReload::Off => Err(
            "POST /reload is off on this listener ([server] metrics_reload = \"off\"); send SIGHUP to the daemon, or POST /reload on the HTTPS listener",
        ),
    }
}

/// Serves the operations endpoints until `stop` turns true. Connections
/// are bounded by `slots` (the oldest pushed out when full) and by the
/// header timeout (slow or idle peers are closed).
pub async fn serve(
    listener: TcpListener,
    ops: Arc<Ops>,
    slots: Arc<Slots>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let ops = ops.clone();
        let mut slot = slots.take_evicting();
        tokio::spawn(async move {
            let header_timeout = ops.header_timeout;
            let service = hyper::service::service_fn(move |req| handle(req, ops.clone(), peer));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(tcp), service);
            tokio::select! {
                _ = conn => {}
                () = slot.evicted() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_is_loopback_only_by_default() {
        let at = |a: &str| a.parse::<SocketAddr>().unwrap();
        let default = MetricsReload::default();
        for ok in [
            "127.0.0.1:5",
            "127.8.0.1:5",
            "[::1]:5",
            "[::ffff:127.0.0.1]:5",
        ] {
            assert_eq!(may_reload(default, at(ok)), Ok(()), "{ok}");
        }
        for no in [
            "10.0.0.1:5",
            "[::ffff:10.0.0.1]:5",
            "[fe80::1]:5",
            "0.0.0.0:5",
        ] {
            let why = may_reload(default, at(no)).unwrap_err();
            assert!(why.contains("loopback only"), "{no}: {why}");
        }
        assert_eq!(may_reload(MetricsReload::Any, at("10.0.0.1:5")), Ok(()));
        let why = may_reload(MetricsReload::Off, at("127.0.0.1:5")).unwrap_err();
        assert!(why.contains("metrics_reload = \"off\""), "{why}");
    }
}
