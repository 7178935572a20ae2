//! Per-peer circuit breakers.
//!
//! - **Closed**: calls flow. [`BreakerConfig::failure_threshold`]
//!   consecutive node failures ([`crate::Status::is_node_failure`]) open it.
//! - **Open**: calls to the peer fail at once with `breaker-open` (pickers
//!   skip it) for [`BreakerConfig::open_for`].
//! - **Half-open**: after that, [`BreakerConfig::half_open_probes`] calls
//!   may go through. A success closes the breaker; a failure opens it again
//!   for another `open_for`.
//!
//! Defaults: 5 consecutive failures, open 5 s, 1 probe.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use relay_proto::NodeId;

/// Most peers with a breaker; past it, new peers are not tracked (their
/// calls flow).
pub const MAX_PEERS: usize = 4096;

/// Thresholds (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive node failures that open a closed breaker.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls.
    pub open_for: Duration,
    /// Calls let through at once when half-open.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
            half_open_probes: 1,
        }
    }
}

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow; consecutive node failures so far.
    Closed {
        /// Consecutive node failures.
        failures: u32,
    },
    /// Calls are refused until `until`.
    Open {
        /// When it half-opens.
        until: Instant,
    },
    /// Probing; probes in flight.
    HalfOpen {
        /// Probes in flight.
        in_flight: u32,
    },
}

impl BreakerState {
    /// "closed" | "open" | "half-open".
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Closed { .. } => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen { .. } => "half-open",
        }
    }
}

/// One peer's breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    opened: u64,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: BreakerState::Closed { failures: 0 },
            opened: 0,
        }
    }

    /// The state at `now` (an open breaker whose time is up reads
    /// half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            BreakerState::Open { until } if now >= until => BreakerState::HalfOpen { in_flight: 0 },
            s => s,
        }
    }

    /// How often it opened.
    pub fn opened(&self) -> u64 {
        self.opened
    }

    /// Whether a call may go through at `now` (without taking a probe).
    pub fn allows(&self, now: Instant) -> bool {
        match self.state(now) {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { .. } => false,
            BreakerState::HalfOpen { in_flight } => in_flight < self.config.half_open_probes,
        }
    }

    /// Takes a slot for one call at `now`; false: refuse it.
    pub fn acquire(&mut self, now: Instant) -> bool {
        self.state = self.state(now);
        match &mut self.state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { .. } => false,
            BreakerState::HalfOpen { in_flight } => {
                if *in_flight < self.config.half_open_probes {
                    *in_flight += 1;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// A call that acquired a slot was cancelled before its outcome.
    pub fn release(&mut self) {
        if let BreakerState::HalfOpen { in_flight } = &mut self.state {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// A call's outcome at `now`: `node_failure` or not.
    pub fn record(&mut self, now: Instant, node_failure: bool) {
        self.state = match (self.state, node_failure) {
            (BreakerState::Closed { .. }, false) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, true) => {
                let failures = failures + 1;
                if failures >= self.config.failure_threshold {
                    self.open(now)
                } else {
                    BreakerState::Closed { failures }
                }
            }
            (BreakerState::HalfOpen { .. }, false) => BreakerState::Closed { failures: 0 },
            (BreakerState::HalfOpen { .. }, true) => self.open(now),
            // A late outcome of a call made before it opened.
            (open @ BreakerState::Open { .. }, _) => open,
        };
    }

    fn open(&mut self, now: Instant) -> BreakerState {
        self.opened += 1;
        BreakerState::Open {
            until: now + self.config.open_for,
        }
    }
}

/// A breaker per peer, bounded by [`MAX_PEERS`].
#[derive(Debug, Clone, Default)]
pub struct Breakers {
    config: BreakerConfig,
    by_peer: HashMap<NodeId, Breaker>,
}

impl Breakers {
    /// Breakers of `config`.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            by_peer: HashMap::new(),
        }
    }

    /// The thresholds.
    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    /// Whether `peer` takes calls at `now`.
    pub fn allows(&self, now: Instant, peer: &NodeId) -> bool {
        self.by_peer.get(peer).is_none_or(|b| b.allows(now))
    }

    /// Takes a slot for a call to `peer`.
    pub fn acquire(&mut self, now: Instant, peer: &NodeId) -> bool {
        match self.by_peer.get_mut(peer) {
            Some(b) => b.acquire(now),
            None => true,
        }
    }

    /// A call to `peer` was cancelled before its outcome.
    pub fn release(&mut self, peer: &NodeId) {
        if let Some(b) = self.by_peer.get_mut(peer) {
            b.release();
        }
    }

    /// A call's outcome.
    pub fn record(&mut self, now: Instant, peer: NodeId, node_failure: bool) {
        if !self.by_peer.contains_key(&peer) {
            if !node_failure || self.by_peer.len() >= MAX_PEERS {
                return;
            }
            self.by_peer.insert(peer, Breaker::new(self.config));
        }
        if let Some(b) = self.by_peer.get_mut(&peer) {
            b.record(now, node_failure);
            if b.state == (BreakerState::Closed { failures: 0 }) {
                self.by_peer.remove(&peer);
            }
        }
    }

    /// Every tracked peer's breaker state and open count, for `status`.
    pub fn snapshot(&self, now: Instant) -> Vec<(NodeId, BreakerState, u64)> {
        let mut out: Vec<_> = self
            .by_peer
            .iter()
            .map(|(id, b)| (*id, b.state(now), b.opened()))
            .collect();
        out.sort_by_key(|(id, _, _)| *id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;

    #[test]
    fn opens_after_threshold_half_opens_after_cooldown_and_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig::default());
        for _ in 0..4 {
            b.record(t0, true);
        }
        assert!(b.allows(t0));
        b.record(t0, false);
        assert_eq!(b.state(t0), BreakerState::Closed { failures: 0 });
        for _ in 0..5 {
            assert!(b.acquire(t0));
            b.record(t0, true);
        }
        assert_eq!(b.state(t0).as_str(), "open");
        assert!(!b.acquire(t0 + Duration::from_secs(4)));
        let t5 = t0 + Duration::from_secs(5);
        assert_eq!(b.state(t5).as_str(), "half-open");
        // One probe at a time.
        assert!(b.acquire(t5));
        assert!(!b.acquire(t5));
        assert!(!b.allows(t5));
        // The probe fails: open again for 5 s.
        b.record(t5, true);
        assert!(!b.allows(t5 + Duration::from_secs(4)));
        let t10 = t5 + Duration::from_secs(5);
        assert!(b.acquire(t10));
        b.record(t10, false);
        assert_eq!(b.state(t10), BreakerState::Closed { failures: 0 });
        assert_eq!(b.opened(), 2);
    }

    #[test]
    fn a_cancelled_probe_frees_its_slot() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig {
            failure_threshold: 1,
            ..BreakerConfig::default()
        });
        b.record(t0, true);
        let t = t0 + Duration::from_secs(5);
        assert!(b.acquire(t));
        b.release();
        assert!(b.acquire(t));
    }

    #[test]
    fn breakers_track_only_failing_peers() {
        let t0 = Instant::now();
        let a = SecretKey::from_bytes(&[1; 32]).node_id();
        let mut all = Breakers::new(BreakerConfig::default());
        all.record(t0, a, false);
        assert!(all.snapshot(t0).is_empty());
        for _ in 0..5 {
            all.record(t0, a, true);
        }
        assert!(!all.allows(t0, &a));
        assert_eq!(all.snapshot(t0)[0].1.as_str(), "open");
        let t5 = t0 + Duration::from_secs(5);
        assert!(all.acquire(t5, &a));
        all.record(t5, a, false);
        assert!(all.snapshot(t5).is_empty());
    }
}
