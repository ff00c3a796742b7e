//! Per-token rate limits for the customer API: a token bucket per token id, refilled
//! at `per_second` up to `burst`. A request that finds the bucket empty is answered
//! `429` with the whole seconds until a token is back, before any database work.
//! Per replica: behind a load balancer of n replicas a token gets up to n times the
//! rate, which bounds the load each replica takes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets idle longer than this are forgotten (they would be full anyway).
const IDLE: Duration = Duration::from_secs(600);
const MAX_BUCKETS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 20.0,
            burst: 40.0,
        }
    }
}

#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// Takes one request's token for `key`; `Err(seconds to wait)` when there is none.
    pub fn take(&self, key: &str, limit: RateLimit) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            // A panic elsewhere poisoned the map: limit nothing rather than refuse all.
            return Ok(());
        };
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, (_, at)| now.duration_since(*at) < IDLE);
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((limit.burst, now));
        let refilled =
            (*tokens + now.duration_since(*at).as_secs_f64() * limit.per_second).min(limit.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            let wait = (1.0 - refilled) / limit.per_second.max(1e-3);
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_then_429_with_the_wait() {
        let l = RateLimiter::default();
        let limit = RateLimit {
            per_second: 1.0,
            burst: 3.0,
        };
        for _ in 0..3 {
            assert_eq!(l.take("a", limit), Ok(()));
        }
        assert_eq!(l.take("a", limit), Err(1));
        // Another token has its own bucket.
        assert_eq!(l.take("b", limit), Ok(()));
    }
}
