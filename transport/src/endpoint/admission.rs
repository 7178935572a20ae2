//! Admission of inbound handshakes, sans-IO: whether an inbound connection
//! attempt gets a handshake slot, a QUIC Retry, or nothing.
//!
//! Every handshake in progress holds a slot until it completes or times
//! out, and an unauthenticated peer can start one with a single Initial
//! packet whose Noise message never completes. So:
//!
//! - **Retry under load.** Once [`AdmissionLimits::retry_above`] slots are
//!   taken, an attempt whose source address is not validated yet gets a
//!   QUIC Retry instead of a slot. A Retry is stateless and no larger than
//!   the Initial that caused it; only a peer that really receives at its
//!   source address can come back with the token, so spoofed or
//!   fire-and-forget floods hold no slot at all.
//! - **A budget per source address.** A source (real `ip:port`, or the
//!   mapped address of a relayed source) with
//!   [`AdmissionLimits::retry_per_source`] attempts pending gets a Retry for
//!   the next unvalidated one, and with [`AdmissionLimits::max_per_source`]
//!   pending, further attempts are dropped even when validated. A flood from
//!   one address then holds at most that many slots.
//! - **A global bound** ([`AdmissionLimits::max_pending`]): beyond it every
//!   attempt is dropped unanswered.
//!
//! The driver (`accept`) asks [`Admission::decide`], then reports
//! [`Admission::started`] and [`Admission::finished`] for each slot.

use std::collections::HashMap;
use std::net::SocketAddr;

/// The admission limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AdmissionLimits {
    /// Handshakes in progress at once, at most.
    pub(crate) max_pending: usize,
    /// Above this many in progress, unvalidated sources get a Retry.
    pub(crate) retry_above: usize,
    /// With this many in progress from one source, its unvalidated
    /// attempts get a Retry.
    pub(crate) retry_per_source: usize,
    /// Handshakes in progress from one source, at most.
    pub(crate) max_per_source: usize,
}

impl Default for AdmissionLimits {
    /// 256 in all, Retry above 16 or from a source with 2 pending, at most
    /// 8 per source.
    fn default() -> Self {
        Self {
            max_pending: 256,
            retry_above: 16,
            retry_per_source: 2,
            max_per_source: 8,
        }
    }
}

/// What to do with one inbound attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Start the handshake (call [`Admission::started`]).
    Accept,
    /// Answer with a QUIC Retry (address validation); no state is kept.
    Retry,
    /// Drop it unanswered.
    Ignore,
}

/// Handshakes in progress, in all and per source.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: AdmissionLimits,
    pending: usize,
    per_source: HashMap<SocketAddr, usize>,
}

impl Admission {
    pub(crate) fn new(limits: AdmissionLimits) -> Self {
        Self {
            limits,
            pending: 0,
            per_source: HashMap::new(),
        }
    }

    /// Handshakes in progress now.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// The decision for an attempt from `source`; `validated` says whether
    /// quinn already validated its address (it came back with a Retry
    /// token), `may_retry` whether a Retry is still possible for it.
    pub(crate) fn decide(&self, source: &SocketAddr, validated: bool, may_retry: bool) -> Decision {
        let l = &self.limits;
        if self.pending >= l.max_pending {
            return Decision::Ignore;
        }
        let from_source = self.per_source.get(source).copied().unwrap_or(0);
        if from_source >= l.max_per_source {
            return Decision::Ignore;
        }
        let loaded = self.pending >= l.retry_above || from_source >= l.retry_per_source;
        match (loaded, validated, may_retry) {
            (false, _, _) | (true, true, _) => Decision::Accept,
            (true, false, true) => Decision::Retry,
            (true, false, false) => Decision::Ignore,
        }
    }

    /// A handshake from `source` took a slot.
    pub(crate) fn started(&mut self, source: SocketAddr) {
        self.pending += 1;
        *self.per_source.entry(source).or_insert(0) += 1;
    }

    /// A handshake from `source` ended (done, failed or timed out).
    pub(crate) fn finished(&mut self, source: &SocketAddr) {
        self.pending = self.pending.saturating_sub(1);
        if let Some(n) = self.per_source.get_mut(source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn src(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            max_pending: 10,
            retry_above: 4,
            retry_per_source: 2,
            max_per_source: 3,
        }
    }

    #[test]
    fn quiet_endpoint_accepts_without_retry() {
        let a = Admission::new(limits());
        assert_eq!(a.decide(&src(1), false, true), Decision::Accept);
    }

    #[test]
    fn one_source_is_retried_then_bounded() {
        let mut a = Admission::new(limits());
        let s = src(1);
        a.started(s);
        a.started(s);
        assert_eq!(a.decide(&s, false, true), Decision::Retry);
        assert_eq!(a.decide(&s, true, false), Decision::Accept);
        a.started(s);
        assert_eq!(a.decide(&s, true, false), Decision::Ignore, "over budget");
        assert_eq!(a.decide(&src(2), false, true), Decision::Accept);
        a.finished(&s);
        assert_eq!(a.decide(&s, true, false), Decision::Accept);
        a.finished(&s);
        a.finished(&s);
        assert!(a.per_source.is_empty());
        assert_eq!(a.pending(), 0);
        a.finished(&s);
        assert_eq!(a.pending(), 0, "never below zero");
    }

    #[test]
    fn under_load_unvalidated_sources_get_retry() {
        let mut a = Admission::new(limits());
        for port in 1..=4 {
            a.started(src(port));
        }
        assert_eq!(a.decide(&src(9), false, true), Decision::Retry);
        assert_eq!(a.decide(&src(9), true, false), Decision::Accept);
        // A Retry is not possible twice: such an attempt is dropped.
        assert_eq!(a.decide(&src(9), false, false), Decision::Ignore);
        for port in 5..=10 {
            a.started(src(port));
        }
        assert_eq!(a.decide(&src(11), true, false), Decision::Ignore, "full");
    }
}
