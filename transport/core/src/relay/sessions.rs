//! The relay server's record of the sessions it carries, for whoever
//! keeps account of them (the node's ledger). Sans-IO: the core tells it
//! what it forwarded and who left, with `now`; closed sessions come out of
//! [`SessionLog::poll_closed`].
//!
//! A session is a pair of clients the relay forwarded between. It opens at
//! the first frame queued between them and closes when either client
//! leaves, or when no frame passed for [`SESSION_IDLE`] (traffic after that
//! opens a new session). Its counters are the inner packet bytes and the
//! frames queued for forwarding, both ways; its duration runs from the first
//! frame to the last.
//!
//! Bounds: open sessions are a subset of the core's sessions, which
//! [`super::RelayLimits`] bounds; at most [`MAX_CLOSED`] closed sessions
//! wait to be taken, and any beyond are counted in
//! [`SessionLog::dropped`] and not kept.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use relay_proto::NodeId;

/// A session with no frame for this long is closed.
pub const SESSION_IDLE: Duration = Duration::from_secs(60);
/// Most closed sessions waiting to be taken.
pub const MAX_CLOSED: usize = 4096;

/// Why a session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEnd {
    /// One of the two clients left the relay.
    Left,
    /// No frame passed for [`SESSION_IDLE`].
    Idle,
}

/// One closed relay session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySessionEvent {
    /// One end (the lower NodeId).
    pub a: NodeId,
    /// The other end.
    pub b: NodeId,
    /// Inner packet bytes carried, both ways.
    pub bytes: u64,
    /// Frames carried, both ways.
    pub packets: u64,
    /// From the first frame to the last.
    pub duration: Duration,
    /// Why it closed.
    pub end: SessionEnd,
}

#[derive(Debug, Clone, Copy)]
struct Open {
    first: Instant,
    last: Instant,
    bytes: u64,
    packets: u64,
}

/// Hashes a pair of NodeIds by 8 bytes of each: every forwarded frame
/// looks its session up, and SipHash over 64 bytes would cost a sizeable
/// share of the relay's per-frame time. NodeIds are public keys of
/// authenticated clients, and the map is bounded by the relay's session
/// limits, so a crafted collision only slows its own lookups.
#[derive(Debug, Default, Clone, Copy)]
struct PairHasher(u64);

impl Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
            .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct SessionLog {
    open: HashMap<(NodeId, NodeId), Open, BuildHasherDefault<PairHasher>>,
    closed: VecDeque<RelaySessionEvent>,
    dropped: u64,
}

fn pair(x: NodeId, y: NodeId) -> (NodeId, NodeId) {
    if x <= y {
        (x, y)
    } else {
        (y, x)
    }
}

impl SessionLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A frame of `bytes` inner bytes was queued from `src` to `dst`.
    pub fn carried(&mut self, now: Instant, src: NodeId, dst: NodeId, bytes: usize) {
        let s = self.open.entry(pair(src, dst)).or_insert(Open {
            first: now,
            last: now,
            bytes: 0,
            packets: 0,
        });
        s.last = s.last.max(now);
        s.bytes = s.bytes.saturating_add(bytes as u64);
        s.packets = s.packets.saturating_add(1);
    }

    /// `x` or `y` left: their session, if open, is closed.
    pub fn left(&mut self, x: NodeId, y: NodeId) {
        let key = pair(x, y);
        if let Some(s) = self.open.remove(&key) {
            self.close(key, s, SessionEnd::Left);
        }
    }

    /// Closes the sessions idle for [`SESSION_IDLE`] at `now`.
    pub fn expire(&mut self, now: Instant) {
        let idle: Vec<(NodeId, NodeId)> = self
            .open
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last) >= SESSION_IDLE)
            .map(|(k, _)| *k)
            .collect();
        for key in idle {
            if let Some(s) = self.open.remove(&key) {
                self.close(key, s, SessionEnd::Idle);
            }
        }
    }

    fn close(&mut self, (a, b): (NodeId, NodeId), s: Open, end: SessionEnd) {
        if self.closed.len() >= MAX_CLOSED {
            self.dropped += 1;
            return;
        }
        self.closed.push_back(RelaySessionEvent {
            a,
            b,
            bytes: s.bytes,
            packets: s.packets,
            duration: s.last.saturating_duration_since(s.first),
            end,
        });
    }

    /// The next closed session, oldest first.
    pub fn poll_closed(&mut self) -> Option<RelaySessionEvent> {
        self.closed.pop_front()
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// Closed sessions not kept because [`MAX_CLOSED`] were waiting.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;

    fn id(seed: u8) -> NodeId {
        SecretKey::from_bytes(&[seed; 32]).node_id()
    }

    #[test]
    fn a_session_counts_both_ways_and_closes_when_a_client_leaves() {
        let t0 = Instant::now();
        let mut log = SessionLog::new();
        let (x, y) = (id(1), id(2));
        log.carried(t0, x, y, 100);
        log.carried(t0 + Duration::from_secs(3), y, x, 50);
        assert_eq!(log.open(), 1);
        assert_eq!(log.poll_closed(), None);
        log.left(y, x);
        let ev = log.poll_closed().unwrap();
        assert_eq!((ev.a, ev.b), pair(x, y));
        assert_eq!((ev.bytes, ev.packets), (150, 2));
        assert_eq!(ev.duration, Duration::from_secs(3));
        assert_eq!(ev.end, SessionEnd::Left);
        assert_eq!(log.open(), 0);
        // Leaving again closes nothing.
        log.left(x, y);
        assert_eq!(log.poll_closed(), None);
    }

    #[test]
    fn an_idle_session_closes_and_traffic_after_it_opens_a_new_one() {
        let t0 = Instant::now();
        let mut log = SessionLog::new();
        let (x, y) = (id(1), id(2));
        log.carried(t0, x, y, 10);
        log.expire(t0 + SESSION_IDLE - Duration::from_millis(1));
        assert_eq!(log.poll_closed(), None);
        log.expire(t0 + SESSION_IDLE);
        assert_eq!(log.poll_closed().unwrap().end, SessionEnd::Idle);
        log.carried(t0 + SESSION_IDLE * 2, x, y, 10);
        assert_eq!(log.open(), 1);
    }

    #[test]
    fn closed_sessions_waiting_are_bounded() {
        let t0 = Instant::now();
        let mut log = SessionLog::new();
        let x = id(1);
        for i in 0..(MAX_CLOSED + 10) {
            let mut seed = [3u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let y = SecretKey::from_bytes(&seed).node_id();
            log.carried(t0, x, y, 1);
            log.left(x, y);
        }
        assert_eq!(log.dropped(), 10);
        assert_eq!(std::iter::from_fn(|| log.poll_closed()).count(), MAX_CLOSED);
    }
}
