//! Retry per gRFC A6: [`RetryPolicy`] (attempts, jittered exponential
//! backoff, retryable codes) and [`Throttle`], the token bucket per target
//! that stops retries when a target mostly fails.
//!
//! - At most [`MAX_ATTEMPTS`] attempts, all within the call's deadline.
//! - The n-th retry waits a uniform random time in
//!   `[0, min(initial * multiplier^(n-1), max))` ("full jitter").
//! - Server pushback (`retry-after` in the trailer) replaces the backoff
//!   for the next retry, and the backoff restarts from `initial` after it.
//! - Only retryable codes are retried. A call not marked idempotent is
//!   retried only on codes that prove its handler never ran: `no-route`,
//!   `unavailable` (the server refused it), `resource-exhausted` (it was
//!   refused past the queue) and `breaker-open`.
//! - The throttle: each target (service) holds up to `max_tokens` tokens,
//!   starting full. A failed attempt with a retryable code takes one; a
//!   success gives back `token_ratio`. Retries are allowed only while more
//!   than half the tokens are left.

use std::time::Duration;

use crate::jitter::Jitter;
use crate::status::Status;
use relay_proto::wire::rpc::Code;

/// The most attempts gRFC A6 allows for one call (first attempt included).
pub const MAX_ATTEMPTS: u32 = 5;
/// Most targets whose throttle is tracked; others are never throttled.
pub const MAX_TARGETS: usize = 1024;

/// How a call's failed attempts are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts at most, first included (clamped to 1..=[`MAX_ATTEMPTS`]).
    pub max_attempts: u32,
    /// Backoff bound of the first retry.
    pub initial_backoff: Duration,
    /// Largest backoff bound.
    pub max_backoff: Duration,
    /// Growth of the bound per retry.
    pub multiplier: f64,
    /// Codes that are retried.
    pub retryable: Vec<Code>,
}

impl Default for RetryPolicy {
    /// 5 attempts, 10 ms doubling to 1 s, retrying `unavailable`,
    /// `no-route`, `resource-exhausted` and `transport`.
    fn default() -> Self {
        Self {
            max_attempts: MAX_ATTEMPTS,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            retryable: vec![
                Code::Unavailable,
                Code::NoRoute,
                Code::ResourceExhausted,
                Code::Transport,
            ],
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Attempts allowed, first included.
    pub fn attempts(&self) -> u32 {
        self.max_attempts.clamp(1, MAX_ATTEMPTS)
    }

    /// Whether a failed attempt with `status` may be retried.
    pub fn retryable(&self, status: &Status, idempotent: bool) -> bool {
        let never_ran = matches!(
            status.code,
            Code::NoRoute | Code::Unavailable | Code::ResourceExhausted | Code::BreakerOpen
        );
        self.retryable.contains(&status.code) && (idempotent || never_ran)
    }

    /// The wait before retry number `n` (1 for the first retry), counted
    /// since the last pushback.
    pub fn backoff(&self, n: u32, jitter: &mut dyn Jitter) -> Duration {
        let exp = i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX);
        let bound = self.initial_backoff.as_secs_f64() * self.multiplier.max(1.0).powi(exp);
        let bound = bound.min(self.max_backoff.as_secs_f64());
        Duration::from_secs_f64(bound * jitter.unit())
    }
}

/// The token bucket's size and refill.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleConfig {
    /// Tokens when full (gRFC A6: at most 1000).
    pub max_tokens: f64,
    /// Tokens a success gives back.
    pub token_ratio: f64,
}

impl Default for ThrottleConfig {
    /// 10 tokens, 0.1 per success (gRFC A6's example).
    fn default() -> Self {
        Self {
            max_tokens: 10.0,
            token_ratio: 0.1,
        }
    }
}

/// One target's token bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Throttle {
    config: ThrottleConfig,
    tokens: f64,
}

impl Throttle {
    /// A full bucket.
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            tokens: config.max_tokens,
        }
    }

    /// A failed attempt with a retryable code.
    pub fn failure(&mut self) {
        self.tokens = (self.tokens - 1.0).max(0.0);
    }

    /// A successful attempt.
    pub fn success(&mut self) {
        self.tokens = (self.tokens + self.config.token_ratio).min(self.config.max_tokens);
    }

    /// Whether retries are allowed.
    pub fn allows_retry(&self) -> bool {
        self.tokens > self.config.max_tokens / 2.0
    }

    /// Tokens left.
    pub fn tokens(&self) -> f64 {
        self.tokens
    }
}

/// A throttle per target, bounded by [`MAX_TARGETS`].
#[derive(Debug, Clone, Default)]
pub struct Throttles {
    config: ThrottleConfig,
    by_target: foldhash::HashMap<String, Throttle>,
}

impl Throttles {
    /// Throttles of `config`.
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            by_target: foldhash::HashMap::default(),
        }
    }

    /// Records an attempt's outcome for `target`.
    pub fn record(&mut self, target: &str, success: bool, retryable_failure: bool) {
        if !success && !retryable_failure {
            return;
        }
        let apply = |t: &mut Throttle| {
            if success {
                t.success();
            } else {
                t.failure();
            }
        };
        // A known target is found without allocating its key.
        if let Some(t) = self.by_target.get_mut(target) {
            apply(t);
            return;
        }
        if self.by_target.len() >= MAX_TARGETS {
            return;
        }
        let config = self.config;
        apply(
            self.by_target
                .entry(target.to_string())
                .or_insert_with(|| Throttle::new(config)),
        );
    }

    /// Whether `target` may be retried now.
    pub fn allows_retry(&self, target: &str) -> bool {
        self.by_target
            .get(target)
            .is_none_or(Throttle::allows_retry)
    }

    /// Tokens left for `target`.
    pub fn tokens(&self, target: &str) -> f64 {
        self.by_target
            .get(target)
            .map_or(self.config.max_tokens, Throttle::tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(f64);
    impl Jitter for Fixed {
        fn unit(&mut self) -> f64 {
            self.0
        }
    }

    #[test]
    fn backoff_grows_exponentially_with_full_jitter_and_caps() {
        let p = RetryPolicy::default();
        let top = &mut Fixed(0.999_999);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        assert!((ms(p.backoff(1, top)) - 10.0).abs() < 0.01);
        assert!((ms(p.backoff(2, top)) - 20.0).abs() < 0.01);
        assert!((ms(p.backoff(4, top)) - 80.0).abs() < 0.01);
        assert!((ms(p.backoff(30, top)) - 1000.0).abs() < 0.01);
        assert_eq!(p.backoff(3, &mut Fixed(0.0)), Duration::ZERO);
        let half = p.backoff(3, &mut Fixed(0.5));
        assert_eq!(half, Duration::from_millis(20));
    }

    #[test]
    fn attempts_are_capped_at_five() {
        let p = RetryPolicy {
            max_attempts: 9,
            ..RetryPolicy::default()
        };
        assert_eq!(p.attempts(), 5);
        assert_eq!(RetryPolicy::none().attempts(), 1);
    }

    #[test]
    fn only_retryable_codes_and_non_idempotent_only_when_never_run() {
        let p = RetryPolicy::default();
        let s = |c| Status::new(c, "");
        assert!(p.retryable(&s(Code::Unavailable), false));
        assert!(p.retryable(&s(Code::Transport), true));
        assert!(!p.retryable(&s(Code::Transport), false));
        assert!(!p.retryable(&s(Code::InvalidArgument), true));
        assert!(!p.retryable(&s(Code::Timeout), true));
    }

    #[test]
    fn throttle_stops_retries_below_half_and_recovers() {
        let mut t = Throttles::new(ThrottleConfig::default());
        assert!(t.allows_retry("svc"));
        for _ in 0..5 {
            t.record("svc", false, true);
        }
        // 10 - 5 = 5: not more than half.
        assert!(!t.allows_retry("svc"));
        assert!(t.allows_retry("other"));
        // Non-retryable failures do not count.
        t.record("other", false, false);
        assert!((t.tokens("other") - 10.0).abs() < 1e-9);
        for _ in 0..11 {
            t.record("svc", true, false);
        }
        assert!(t.allows_retry("svc"));
        assert!(t.tokens("svc") <= 10.0);
    }
}
