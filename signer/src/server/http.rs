//! The operations listener (plain HTTP/1.1; keep it on a private address):
//! `GET /metrics`, `GET /healthz` (the process is up), `GET /readyz` (the
//! database answers, keys are loaded, not shutting down), and `POST /reload`
//! (re-read TLS material and policy, as SIGHUP does; it changes nothing an
//! operator did not already write to disk, so it needs no credentials).

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Shared;

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = "text/plain; charset=utf-8";
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let stats = shared.pipeline.db().stats();
            let m = shared.pipeline.metrics();
            m.db_commits
                .set(i64::try_from(stats.commits).unwrap_or(i64::MAX));
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
            let s = shared.clone();
            let report = tokio::task::spawn_blocking(move || s.reload())
                .await
                .unwrap_or_else(|_| super::ReloadReport::failed("reload task failed"));
            let status = if report.ok() {
                StatusCode::OK
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            reply(status, text, report.to_string())
        }
        (_, "/metrics" | "/healthz" | "/readyz" | "/reload") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            text,
            "method not allowed\n".into(),
        ),
        _ => reply(StatusCode::NOT_FOUND, text, "not found\n".into()),
    })
}

/// Serves the operations endpoints until `stop` turns true.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let (tcp, _) = tokio::select! {
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
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, shared.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
