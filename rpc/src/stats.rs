//! Call statistics a service reports through its built-in `stats` verb:
//! calls, errors, in flight, and latency quantiles from a log-linear
//! histogram ([`Latency`]: 8 buckets per power of two of microseconds, so a
//! quantile is within 12.5% of the truth, in fixed memory).

use std::time::Duration;

const SUB: usize = 8;
const BUCKETS: usize = 62 * SUB;

/// A latency histogram.
#[derive(Debug, Clone)]
pub struct Latency {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }
}

fn bucket(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let power = 63 - us.leading_zeros() as usize; // >= 3
    let sub = ((us >> (power - 3)) & (SUB as u64 - 1)) as usize;
    ((power - 2) * SUB + sub).min(BUCKETS - 1)
}

fn bucket_low(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let power = i / SUB + 2;
    let sub = (i % SUB) as u64;
    (1u64 << power) | (sub << (power - 3))
}

impl Latency {
    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(us)] += 1;
        self.total += 1;
    }

    /// Adds `other`'s samples.
    pub fn merge(&mut self, other: &Latency) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (0..=1; the lower bound of its bucket), or `None`
    /// with no sample.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_micros(bucket_low(i)));
            }
        }
        None
    }
}

/// One service's counters.
#[derive(Debug, Clone, Default)]
pub struct ServiceStats {
    /// Calls started.
    pub calls: u64,
    /// Calls that ended with a status other than `ok`.
    pub errors: u64,
    /// Calls running now.
    pub in_flight: u64,
    /// Calls refused past the queue.
    pub rejected: u64,
    /// Latency of finished calls.
    pub latency: Latency,
}

impl ServiceStats {
    /// A call started.
    pub fn started(&mut self) {
        self.calls += 1;
        self.in_flight += 1;
    }

    /// A started call ended after `took`.
    pub fn finished(&mut self, took: Duration, ok: bool) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if !ok {
            self.errors += 1;
        }
        self.latency.record(took);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_bucket() {
        let mut l = Latency::default();
        assert_eq!(l.quantile(0.5), None);
        for us in 1..=1000u64 {
            l.record(Duration::from_micros(us));
        }
        let p50 = l.quantile(0.5).unwrap().as_micros() as f64;
        let p99 = l.quantile(0.99).unwrap().as_micros() as f64;
        assert!((440.0..=500.0).contains(&p50), "{p50}");
        assert!((870.0..=990.0).contains(&p99), "{p99}");
        l.record(Duration::from_secs(1 << 40));
        assert!(l.quantile(1.0).is_some());
        for i in 0..BUCKETS {
            assert_eq!(bucket(bucket_low(i)), i, "bucket {i}");
        }
    }

    #[test]
    fn counters_follow_calls() {
        let mut s = ServiceStats::default();
        s.started();
        s.started();
        assert_eq!(s.in_flight, 2);
        s.finished(Duration::from_micros(10), true);
        s.finished(Duration::from_micros(20), false);
        assert_eq!((s.calls, s.errors, s.in_flight), (2, 1, 0));
    }
}
