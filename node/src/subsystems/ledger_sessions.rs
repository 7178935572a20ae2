//! When this node, relaying, records a `relay-session`: sessions its relay
//! server closed (`Transport::relay_sessions`), turned into ledger bodies
//! within bounds. Sans-IO: the driver hands it closed sessions and `now`.
//!
//! - A session that lasted at least [`MIN_SESSION`] gets its own entry
//!   (`phase: closed`, its counters and duration).
//! - Shorter sessions are **aggregated** per pair: their bytes, packets and
//!   durations are summed into one entry, written [`AGGREGATE_WINDOW`] after
//!   the first of them closed. A client reconnecting in a loop therefore
//!   costs one entry per window, not one per session.
//! - Appends are rate-limited to [`APPENDS_PER_SEC`] sustained, bursts of
//!   [`APPENDS_BURST`]; what waits is bounded ([`MAX_WAITING`] entries,
//!   [`MAX_PAIRS`] pairs aggregating), and anything beyond is dropped and
//!   counted. Retention then bounds what the ledger keeps (10,000
//!   `relay-session` entries per origin, 30 days).
//!
//! Only `closed` entries are written: one entry per session holds both its
//! end (`ts`) and its start (`ts - duration_ms`), at half the cost of an
//! `opened` entry and a `closed` one.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use relay_proto::ledger::body::{RelaySession, SessionPhase};
use relay_transport::{NodeId, RelaySessionEvent};

use crate::ledger::limits::TokenBucket;

/// Sessions shorter than this are aggregated per pair.
pub const MIN_SESSION: Duration = Duration::from_secs(10);
/// How long short sessions of one pair are summed before their entry.
pub const AGGREGATE_WINDOW: Duration = Duration::from_secs(60);
/// Sustained `relay-session` appends per second.
pub const APPENDS_PER_SEC: u64 = 1;
/// Appends in a burst.
pub const APPENDS_BURST: u64 = 60;
/// Most entries waiting for the rate limit.
pub const MAX_WAITING: usize = 1024;
/// Most pairs aggregating at once.
pub const MAX_PAIRS: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Sum {
    since: Instant,
    bytes: u64,
    packets: u64,
    duration_ms: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct SessionRecorder {
    waiting: VecDeque<RelaySession>,
    sums: BTreeMap<(NodeId, NodeId), Sum>,
    bucket: TokenBucket,
    dropped: u64,
}

impl Default for SessionRecorder {
    fn default() -> Self {
        Self::new()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl SessionRecorder {
    /// Nothing waiting.
    pub fn new() -> Self {
        Self {
            waiting: VecDeque::new(),
            sums: BTreeMap::new(),
            bucket: TokenBucket::new(APPENDS_PER_SEC, APPENDS_BURST),
            dropped: 0,
        }
    }

    /// Sessions dropped over a bound.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The relay server closed `ev` at `now`.
    pub fn handle_closed(&mut self, now: Instant, ev: &RelaySessionEvent) {
        if ev.duration >= MIN_SESSION {
            self.push(RelaySession {
                phase: SessionPhase::Closed,
                a: ev.a,
                b: ev.b,
                bytes: ev.bytes,
                packets: ev.packets,
                duration_ms: ms(ev.duration),
            });
            return;
        }
        let key = (ev.a, ev.b);
        if !self.sums.contains_key(&key) && self.sums.len() >= MAX_PAIRS {
            self.dropped += 1;
            return;
        }
        let s = self.sums.entry(key).or_insert(Sum {
            since: now,
            bytes: 0,
            packets: 0,
            duration_ms: 0,
        });
        s.bytes = s.bytes.saturating_add(ev.bytes);
        s.packets = s.packets.saturating_add(ev.packets);
        s.duration_ms = s.duration_ms.saturating_add(ms(ev.duration));
    }

    fn push(&mut self, body: RelaySession) {
        if self.waiting.len() >= MAX_WAITING {
            self.dropped += 1;
        } else {
            self.waiting.push_back(body);
        }
    }

    /// The next body to append now, if any (within the rate limit).
    pub fn poll_session(&mut self, now: Instant) -> Option<RelaySession> {
        let due: Vec<(NodeId, NodeId)> = self
            .sums
            .iter()
            .filter(|(_, s)| now >= s.since + AGGREGATE_WINDOW)
            .map(|(k, _)| *k)
            .collect();
        for (a, b) in due {
            if let Some(s) = self.sums.remove(&(a, b)) {
                self.push(RelaySession {
                    phase: SessionPhase::Closed,
                    a,
                    b,
                    bytes: s.bytes,
                    packets: s.packets,
                    duration_ms: s.duration_ms,
                });
            }
        }
        if self.waiting.is_empty() || !self.bucket.has(now, 1) {
            return None;
        }
        self.bucket.take(1);
        self.waiting.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;
    use relay_transport::relay::SessionEnd;

    fn id(seed: u8) -> NodeId {
        SecretKey::from_bytes(&[seed; 32]).node_id()
    }

    fn closed(a: u8, b: u8, secs: u64) -> RelaySessionEvent {
        RelaySessionEvent {
            a: id(a),
            b: id(b),
            bytes: 1000,
            packets: 10,
            duration: Duration::from_secs(secs),
            end: SessionEnd::Left,
        }
    }

    fn drain(r: &mut SessionRecorder, now: Instant) -> Vec<RelaySession> {
        std::iter::from_fn(|| r.poll_session(now)).collect()
    }

    #[test]
    fn a_long_session_is_one_entry_and_short_ones_are_summed_per_pair() {
        let t0 = Instant::now();
        let mut r = SessionRecorder::new();
        r.handle_closed(t0, &closed(1, 2, 30));
        let got = drain(&mut r, t0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].phase, SessionPhase::Closed);
        assert_eq!((got[0].bytes, got[0].duration_ms), (1000, 30_000));
        for i in 0..50 {
            r.handle_closed(t0 + Duration::from_millis(i * 100), &closed(1, 2, 1));
        }
        assert!(drain(&mut r, t0 + Duration::from_secs(59)).is_empty());
        let got = drain(&mut r, t0 + AGGREGATE_WINDOW);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].bytes, got[0].packets), (50_000, 500));
        assert_eq!(got[0].duration_ms, 50_000);
    }

    #[test]
    fn a_flood_is_rate_limited_and_bounded() {
        let t0 = Instant::now();
        let mut r = SessionRecorder::new();
        for _ in 0..(MAX_WAITING + 100) {
            r.handle_closed(t0, &closed(1, 2, 20));
        }
        assert_eq!(r.dropped(), 100);
        assert_eq!(drain(&mut r, t0).len() as u64, APPENDS_BURST);
        // One more per second after the burst.
        assert_eq!(drain(&mut r, t0 + Duration::from_secs(10)).len(), 10);
        // Too many pairs aggregating at once: dropped and counted.
        let mut r = SessionRecorder::new();
        for i in 0..(MAX_PAIRS + 5) {
            let mut seed = [9u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let b = SecretKey::from_bytes(&seed).node_id();
            r.handle_closed(
                t0,
                &RelaySessionEvent {
                    b,
                    ..closed(1, 2, 1)
                },
            );
        }
        assert_eq!(r.dropped(), 5);
    }
}
