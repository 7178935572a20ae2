//! The redial policy of one persistent peer: when to dial next, which of
//! its addresses, and whether a failed direct dial should try a relay.
//!
//! Sans-IO: the redial task feeds outcomes (`handle_*`) with `now`, dials
//! what [`Redial::poll_dial`] returns and sleeps until
//! [`Redial::poll_timeout`]. No sockets, no clock, no tokio.
//!
//! - The first dial goes at once. A failed dial waits a backoff that
//!   starts at `min` and doubles up to `max`; a connection resets it.
//! - Each wait is jittered downwards by up to `jitter_percent` (from a
//!   seeded generator, so tests replay), so that peers that lost a common
//!   node do not all redial in step; the cap is never exceeded.
//! - Each dial takes the next address in turn; new addresses start over
//!   at the first.
//! - A lost connection redials after `min` (jittered), except after a
//!   stateless reset: the peer restarted and answers now, so the redial
//!   goes at once.
//! - A dial that failed for a reason a relay cannot fix (the peer holds
//!   another key, or another network key) does not try a relay; the
//!   transport closing stops redialing for good.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The constants of [`Redial`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedialConfig {
    /// First delay after a failure, and the delay after a lost connection.
    pub min: Duration,
    /// Longest delay.
    pub max: Duration,
    /// How much of each delay may be taken off at random, in percent.
    pub jitter_percent: u32,
}

/// Why a connection ended, as far as redialing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// A stateless reset: the peer restarted and is up.
    Reset,
    /// Anything else (timeout, close, ...).
    Other,
}

/// Why a dial failed, as far as redialing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialFailure {
    /// The transport is closing: stop.
    Closed,
    /// The peer is not who we expect, or not in our network: a relay
    /// reaches the same peer, so it would fail the same way.
    Identity,
    /// Anything else (timeout, unreachable, refused, ...).
    Other,
}

/// The redial state of one persistent peer (see the module docs).
#[derive(Debug, Clone)]
pub struct Redial {
    config: RedialConfig,
    addrs: Vec<SocketAddr>,
    /// Index of the address the next dial takes.
    next_addr: usize,
    /// The delay after the next failure, before jitter.
    backoff: Duration,
    /// When to dial next; `None` while connected, dialing or stopped.
    due: Option<Instant>,
    stopped: bool,
    rng: SplitMix64,
}

impl Redial {
    /// A peer at `addrs`, to dial at once (`now`); `seed` drives jitter.
    pub fn new(config: RedialConfig, addrs: Vec<SocketAddr>, seed: u64, now: Instant) -> Self {
        let config = RedialConfig {
            max: config.max.max(config.min),
            jitter_percent: config.jitter_percent.min(100),
            ..config
        };
        Self {
            config,
            addrs,
            next_addr: 0,
            backoff: config.min,
            due: Some(now),
            stopped: false,
            rng: SplitMix64(seed),
        }
    }

    /// New addresses: the next dial starts at the first.
    pub fn set_addrs(&mut self, addrs: Vec<SocketAddr>) {
        self.addrs = addrs;
        self.next_addr = 0;
    }

    /// The address to dial now, if a dial is due.
    pub fn poll_dial(&mut self, now: Instant) -> Option<SocketAddr> {
        if self.stopped || self.due.is_none_or(|t| t > now) || self.addrs.is_empty() {
            return None;
        }
        self.due = None;
        let addr = self.addrs[self.next_addr % self.addrs.len()];
        self.next_addr = self.next_addr.wrapping_add(1);
        Some(addr)
    }

    /// When the next dial is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.due.filter(|_| !self.stopped)
    }

    /// Whether redialing stopped for good.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Connected (by our dial or the peer's): no dial until it is lost.
    pub fn handle_connected(&mut self) {
        self.due = None;
        self.backoff = self.config.min;
    }

    /// The connection was lost.
    pub fn handle_disconnected(&mut self, now: Instant, why: Disconnect) {
        self.backoff = self.config.min;
        self.due = Some(match why {
            Disconnect::Reset => now,
            Disconnect::Other => now + self.next_delay(),
        });
    }

    /// Whether a failed direct dial should try a relay now, given whether
    /// a relay other than the peer serves us.
    pub fn try_relay(&self, failure: DialFailure, relay_available: bool) -> bool {
        relay_available && failure == DialFailure::Other
    }

    /// A dial (and its relay fallback, if any) failed: wait, or stop.
    pub fn handle_dial_failed(&mut self, now: Instant, failure: DialFailure) -> Option<Duration> {
        if failure == DialFailure::Closed {
            self.stopped = true;
            self.due = None;
            return None;
        }
        let delay = self.next_delay();
        self.due = Some(now + delay);
        Some(delay)
    }

    /// The current backoff, jittered; doubles the next one up to the cap.
    fn next_delay(&mut self) -> Duration {
        let base = self.backoff;
        self.backoff = base.saturating_mul(2).min(self.config.max);
        // jitter_percent is clamped to 100 (see `new`), so cut < span <= base.
        let span = base.saturating_mul(self.config.jitter_percent) / 100;
        let nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        let cut = match nanos {
            0 => 0,
            n => self.rng.next() % n,
        };
        base.saturating_sub(Duration::from_nanos(cut))
    }
}

/// A small seeded generator for jitter (SplitMix64): deterministic and
/// dependency-free; jitter needs spread, not secrecy.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
#[path = "redial_tests.rs"]
mod tests;
