//! Jittered exponential backoff, and `Retry-After`.
//!
//! After an outage every agent of the fleet retries at once; without jitter they would
//! come back in lock-step and knock the controller over again. Each delay is drawn
//! uniformly between the base and the current exponential ceiling ("full jitter" with a
//! floor, so a retry never spins). A `Retry-After` from the controller is a floor: the
//! agent waits at least that long, plus up to half of it again, spread at random.

use std::time::Duration;

use rand::Rng;

/// How persistently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first delay's ceiling, and every delay's floor.
    pub base: Duration,
    /// No delay is longer than this (before `Retry-After`).
    pub cap: Duration,
    /// Give up after this many attempts (None: never).
    pub max_attempts: Option<u32>,
    /// Give up once this much time has passed since the first attempt (None: never).
    pub max_elapsed: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(60),
            max_attempts: None,
            max_elapsed: None,
        }
    }
}

impl RetryPolicy {
    /// A few quick tries, for calls a tick waits on (placement).
    pub fn quick() -> Self {
        Self {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            max_attempts: Some(4),
            max_elapsed: Some(Duration::from_secs(10)),
        }
    }
}

/// The delays of one retried call.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    failures: u32,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            failures: 0,
        }
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Success: the next failure starts from the base again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The ceiling of the next delay, without jitter.
    pub fn ceiling(&self) -> Duration {
        let base = self.policy.base.max(Duration::from_millis(1));
        let shift = self.failures.min(30);
        base.saturating_mul(1u32 << shift)
            .min(self.policy.cap.max(base))
    }

    /// Record a failure and say how long to wait before the next attempt.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let mut rng = rand::rng();
        let floor = self.policy.base.min(ceiling);
        let jittered = if ceiling > floor {
            rng.random_range(floor..=ceiling)
        } else {
            floor
        };
        match retry_after {
            Some(after) if !after.is_zero() => {
                let spread = rng.random_range(Duration::ZERO..=after / 2);
                (after + spread).max(jittered.min(after))
            }
            _ => jittered,
        }
    }
}

/// `Retry-After` as delta-seconds (what the controller sends). HTTP dates are not
/// understood and count as absent.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_jittered_and_capped() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        let mut b = Backoff::new(policy);
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            let ceiling = b.ceiling();
            let d = b.next_delay(None);
            assert!(
                d >= Duration::from_millis(100) && d <= ceiling,
                "{d:?} {ceiling:?}"
            );
            ceilings.push(ceiling.as_millis());
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn retry_after_is_a_floor_with_spread() {
        let mut b = Backoff::new(RetryPolicy::default());
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let d = b.next_delay(Some(Duration::from_secs(2)));
            assert!(
                d >= Duration::from_secs(2) && d <= Duration::from_secs(3),
                "{d:?}"
            );
            seen.insert(d.as_millis());
        }
        assert!(seen.len() > 10, "jittered: {seen:?}");
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
