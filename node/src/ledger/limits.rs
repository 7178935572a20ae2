//! Per-peer inbound limits for replication: a token bucket on entries and
//! one on bytes, refilled on simulated or real time.

use std::time::Instant;

/// A token bucket: `rate` tokens per second up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    tokens: u64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u64, burst: u64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last);
            let add = (elapsed.as_micros().saturating_mul(u128::from(self.rate)) / 1_000_000)
                .min(u128::from(self.burst));
            let add = u64::try_from(add).unwrap_or(self.burst);
            if add == 0 {
                return;
            }
            self.tokens = self.tokens.saturating_add(add).min(self.burst);
        }
        self.last = Some(now);
    }

    /// Whether `n` tokens are available now (without taking them).
    pub fn has(&mut self, now: Instant, n: u64) -> bool {
        self.refill(now);
        self.tokens >= n
    }

    /// Takes `n` tokens (callers check [`TokenBucket::has`] first).
    pub fn take(&mut self, n: u64) {
        self.tokens = self.tokens.saturating_sub(n);
    }
}

/// The per-peer replication limits (docs/LEDGER.md, "Limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLimits {
    /// Sustained entries per second accepted from one peer.
    pub entries_per_sec: u64,
    /// Entries one peer may send in a burst (covers a full initial sync).
    pub burst_entries: u64,
    /// Sustained bytes per second accepted from one peer.
    pub bytes_per_sec: u64,
    /// Bytes one peer may send in a burst.
    pub burst_bytes: u64,
}

impl Default for PeerLimits {
    fn default() -> Self {
        Self {
            entries_per_sec: 20_000,
            burst_entries: 250_000,
            bytes_per_sec: 16 * 1024 * 1024,
            burst_bytes: 256 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refills_at_rate_up_to_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 50);
        assert!(b.has(t0, 50));
        b.take(50);
        assert!(!b.has(t0, 1));
        assert!(b.has(t0 + Duration::from_millis(100), 10));
        assert!(!b.has(t0 + Duration::from_millis(100), 11));
        assert!(b.has(t0 + Duration::from_secs(60), 50));
        assert!(!b.has(t0 + Duration::from_secs(60), 51));
    }
}
