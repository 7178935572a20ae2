//! A token bucket on simulated time (unix ms), in thousandths of a token so
//! that whole-millisecond steps refill exactly.

/// `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    rate: u64,
    cap_milli: u64,
    milli: u64,
    last_ms: u64,
    slow: u64,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn new(rate: u64, burst: u64, now_ms: u64) -> Self {
        let cap_milli = burst.max(1).saturating_mul(1000);
        Self {
            rate: rate.max(1),
            cap_milli,
            milli: cap_milli,
            last_ms: now_ms,
            slow: 1,
        }
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        // `rate` tokens per second is `rate` thousandths per millisecond;
        // a slowed bucket counts only every `slow`-th millisecond, and
        // keeps the remainder for later.
        let steps = elapsed / self.slow;
        self.milli = self
            .milli
            .saturating_add(steps.saturating_mul(self.rate))
            .min(self.cap_milli);
        self.last_ms = self.last_ms.max(self.last_ms + steps * self.slow);
    }

    /// The same bucket refilling `factor` times slower (one token per
    /// `factor` seconds at rate 1).
    pub(crate) fn slowed(mut self, factor: u64) -> Self {
        self.slow = factor.max(1);
        self
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }

    /// Whether a token is there (without taking it).
    pub(crate) fn has(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        self.milli >= 1000
    }

    /// When the next whole token is there.
    pub(crate) fn next_at(&self) -> u64 {
        let missing = 1000u64.saturating_sub(self.milli);
        self.last_ms + missing.div_ceil(self.rate) * self.slow
    }

    /// Whether the bucket is full (nothing to remember).
    pub(crate) fn is_full(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        self.milli >= self.cap_milli
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_at_the_rate() {
        let mut b = Bucket::new(10, 2, 0);
        assert!(b.take(0));
        assert!(b.take(0));
        assert!(!b.take(0));
        assert_eq!(b.next_at(), 100);
        assert!(!b.take(99));
        assert!(b.take(100));
        assert!(b.is_full(10_000));
    }
}
