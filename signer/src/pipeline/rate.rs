//! Per-client rate limits (`max_requests_per_second` in the policy).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::policy::Policy;

use super::{Refusal, Unavailable};

/// A client's token bucket: `rate` tokens per second, at most `rate` saved.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Every limited client's bucket.
#[derive(Debug, Default)]
pub(super) struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Takes a token from the client's bucket, if its policy limits it.
    pub(super) fn admit(&self, policy: &Policy, client: &str) -> Result<(), Refusal> {
        let Some(limit) = policy
            .client(client)
            .and_then(|c| c.max_requests_per_second)
        else {
            return Ok(());
        };
        let rate = f64::from(limit);
        let mut buckets = self.buckets.lock().map_err(|_| {
            Refusal::BackendUnavailable(Unavailable::Internal("rate limiter lock poisoned"))
        })?;
        let now = Instant::now();
        let b = buckets.entry(client.to_owned()).or_insert(Bucket {
            tokens: rate,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Refusal::RateLimited(limit))
        }
    }
}
