//! [`Deadline`]: when a call must be over, on injected time.

use std::time::{Duration, Instant};

/// A call's deadline (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline.
    pub const NONE: Deadline = Deadline(None);

    /// `timeout` from `now`.
    pub fn after(now: Instant, timeout: Duration) -> Self {
        Self(now.checked_add(timeout))
    }

    /// At `at`.
    pub fn at(at: Instant) -> Self {
        Self(Some(at))
    }

    /// The instant, if any.
    pub fn instant(&self) -> Option<Instant> {
        self.0
    }

    /// Time left at `now` (`None`: no deadline).
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.0.map(|d| d.saturating_duration_since(now))
    }

    /// Whether it has passed at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.0.is_some_and(|d| now >= d)
    }

    /// The call header's deadline field at `now`: remaining milliseconds,
    /// rounded up, at least 1 (0 on the wire means none).
    pub fn wire_ms(&self, now: Instant) -> u32 {
        match self.remaining(now) {
            None => 0,
            Some(left) => {
                let ms = left.as_micros().div_ceil(1000).max(1);
                u32::try_from(ms).unwrap_or(u32::MAX)
            }
        }
    }

    /// The deadline a server sets on receipt of `wire_ms` at `now`, capped
    /// at `max` (0 on the wire: `max`).
    pub fn from_wire(now: Instant, wire_ms: u32, max: Duration) -> Self {
        let asked = if wire_ms == 0 {
            max
        } else {
            Duration::from_millis(u64::from(wire_ms)).min(max)
        };
        Self::after(now, asked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_time_travels_rounded_up() {
        let t0 = Instant::now();
        let d = Deadline::after(t0, Duration::from_micros(1500));
        assert_eq!(d.wire_ms(t0), 2);
        assert_eq!(d.wire_ms(t0 + Duration::from_secs(1)), 1);
        assert!(d.expired(t0 + Duration::from_millis(2)));
        assert!(!d.expired(t0));
        assert_eq!(Deadline::NONE.wire_ms(t0), 0);
        let max = Duration::from_secs(60);
        assert_eq!(Deadline::from_wire(t0, 0, max).remaining(t0), Some(max));
        assert_eq!(
            Deadline::from_wire(t0, 250, max).remaining(t0),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            Deadline::from_wire(t0, u32::MAX, max).remaining(t0),
            Some(max)
        );
    }
}
