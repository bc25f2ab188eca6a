//! The `signer.v1` gRPC service: identifies the caller from its certificate
//! (under the policy in force), queues the items for the worker pool with a
//! deadline, and maps the answers to the wire.

pub mod convert;

use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::pipeline::{self, Pipeline};
use crate::policy::ClientId;
use crate::pool::{Answer, Job, Pool, Rejected};
use crate::tls::listener::PeerInfo;

/// Most items one `SignBatch` may carry.
pub const MAX_BATCH_ITEMS: usize = 4096;

/// The service.
#[derive(Debug, Clone)]
pub struct SignerService {
    pipeline: Arc<Pipeline>,
    pool: Arc<Pool>,
    max_wait: Duration,
}

/// Parses a `grpc-timeout` header value (`<digits><unit>`, unit one of H M S m u n).
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl SignerService {
    /// A service queueing onto `pool`; items wait at most `max_wait`.
    pub fn new(pipeline: Arc<Pipeline>, pool: Arc<Pool>, max_wait: Duration) -> Self {
        Self {
            pipeline,
            pool,
            max_wait,
        }
    }

    fn client<T>(&self, req: &Request<T>) -> Result<ClientId, Status> {
        let peer = req
            .extensions()
            .get::<PeerInfo>()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        self.pipeline.identify(&peer.identity).map_err(|e| {
            tracing::info!(peer = %peer.addr, error = %e, "caller is not a policy client");
            Status::permission_denied(e.to_string())
        })
    }

    fn deadline<T>(&self, req: &Request<T>) -> Instant {
        let asked = req
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let wait = asked.map_or(self.max_wait, |a| a.min(self.max_wait));
        Instant::now() + wait
    }

    async fn run(&self, items: Vec<pipeline::Request>, deadline: Instant) -> Vec<pb::SignResponse> {
        let started = Instant::now();
        let n = items.len();
        let metrics = self.pipeline.metrics().clone();
        let overloaded = |why: &str| {
            for _ in 0..n {
                metrics.request("grpc", "any", "overloaded");
            }
            (0..n).map(|_| convert::overloaded(why)).collect::<Vec<_>>()
        };
        let (job, rx) = Job::new(items, "grpc", deadline);
        if let Err((why, _)) = self.pool.submit(job) {
            return overloaded(match why {
                Rejected::Full => "the signing queue is full",
                Rejected::Closed => "the signer is shutting down",
            });
        }
        let answers = match rx.await {
            Ok(a) => a,
            Err(_) => return overloaded("the signing worker stopped"),
        };
        let out = answers
            .into_iter()
            .map(|a| match a {
                Answer::Done(o) => convert::response(o),
                Answer::Overloaded => convert::overloaded("waited past its deadline in the queue"),
            })
            .collect();
        let took = started.elapsed();
        for _ in 0..n {
            metrics.stage("total", took);
        }
        out
    }
}

fn item(client: &ClientId, r: pb::SignRequest) -> pipeline::Request {
    pipeline::Request {
        client: client.clone(),
        public_key: pipeline::KeyId::new(r.public_key),
        message: convert::message(r.message),
        scope: None,
    }
}

#[tonic::async_trait]
impl pb::signer_server::Signer for SignerService {
    async fn sign(
        &self,
        request: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        let client = self.client(&request)?;
        let deadline = self.deadline(&request);
        let mut answers = self
            .run(vec![item(&client, request.into_inner())], deadline)
            .await;
        let answer = answers.pop().ok_or_else(|| Status::internal("no answer"))?;
        Ok(Response::new(answer))
    }

    async fn sign_batch(
        &self,
        request: Request<pb::SignBatchRequest>,
    ) -> Result<Response<pb::SignBatchResponse>, Status> {
        let client = self.client(&request)?;
        let deadline = self.deadline(&request);
        let requests = request.into_inner().requests;
        if requests.len() > MAX_BATCH_ITEMS {
            return Err(Status::invalid_argument(format!(
                "a batch carries at most {MAX_BATCH_ITEMS} requests"
            )));
        }
        if requests.is_empty() {
            return Ok(Response::new(pb::SignBatchResponse::default()));
        }
        let items = requests.into_iter().map(|r| item(&client, r)).collect();
        let responses = self.run(items, deadline).await;
        Ok(Response::new(pb::SignBatchResponse { responses }))
    }

    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let client = self.client(&request)?;
        let keys = self
            .pipeline
            .list_keys(&client)
            .into_iter()
            .map(|k| pb::Key {
                public_key: k.public_key,
                scheme: k.scheme.to_owned(),
                operations: k.operations.iter().map(|o| o.name().to_owned()).collect(),
            })
            .collect();
        Ok(Response::new(pb::ListKeysResponse { keys }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_spec_says() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("10u"), Some(Duration::from_micros(10)));
        assert_eq!(parse_grpc_timeout("123456789S"), None, "at most 8 digits");
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
    }
}
