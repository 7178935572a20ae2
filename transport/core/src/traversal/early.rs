//! Introductions that arrive before their peer's connection.
//!
//! The introducer answers both sides at once. The side that did not ask
//! may get its introduction before its own end of the relayed connection
//! to the requester is registered with the core (the requester dialed,
//! and the accept has not been reported yet). Dropping it would leave that
//! side silent until the requester's retry a second later. So such an
//! introduction is held here for a short while and replayed, with the
//! instant it arrived, when the connection shows up.
//!
//! Only introductions that came over an authenticated connection land
//! here, and the buffer is bounded: at most `cap` entries, one per peer
//! (the newest wins), each dropped `ttl` after it arrived. When the buffer
//! is full the oldest entry goes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use relay_proto::wire::traversal::Introduction;
use relay_proto::NodeId;

/// At most this many early introductions are held.
pub const EARLY_CAP: usize = 16;
/// An early introduction is kept this long.
pub const EARLY_TTL: Duration = Duration::from_secs(3);

/// Held introductions, keyed by the peer they introduce. Sans-IO.
#[derive(Debug)]
pub struct EarlyIntros {
    cap: usize,
    ttl: Duration,
    held: BTreeMap<NodeId, (Instant, Introduction)>,
}

impl Default for EarlyIntros {
    fn default() -> Self {
        Self::new(EARLY_CAP, EARLY_TTL)
    }
}

impl EarlyIntros {
    /// A buffer of at most `cap` introductions, each kept `ttl`.
    pub fn new(cap: usize, ttl: Duration) -> Self {
        Self {
            cap: cap.max(1),
            ttl,
            held: BTreeMap::new(),
        }
    }

    /// Holds `intro`, which arrived at `now` for a peer we have no
    /// connection to yet.
    pub fn push(&mut self, now: Instant, intro: Introduction) {
        self.expire(now);
        if !self.held.contains_key(&intro.peer) && self.held.len() >= self.cap {
            let oldest = self
                .held
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(peer, _)| *peer);
            if let Some(peer) = oldest {
                self.held.remove(&peer);
            }
        }
        self.held.insert(intro.peer, (now, intro));
    }

    /// The introduction held for `peer`, with the instant it arrived,
    /// unless it expired.
    pub fn take(&mut self, now: Instant, peer: &NodeId) -> Option<(Instant, Introduction)> {
        self.expire(now);
        self.held.remove(peer)
    }

    /// Drops what is older than the ttl.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.held
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::wire::traversal::NatType;
    use relay_proto::SecretKey;

    fn node(seed: u8) -> NodeId {
        SecretKey::from_bytes(&[seed; 32]).node_id()
    }

    fn intro(peer: NodeId, req: u64) -> Introduction {
        Introduction {
            req,
            requester: peer,
            peer,
            candidates: Vec::new(),
            peer_nat: NatType::Unknown,
            fire_in_ms: 20,
        }
    }

    #[test]
    fn held_until_taken_then_gone() {
        let t0 = Instant::now();
        let mut early = EarlyIntros::default();
        early.push(t0, intro(node(1), 7));
        let (at, got) = early
            .take(t0 + Duration::from_millis(500), &node(1))
            .unwrap();
        assert_eq!((at, got.req), (t0, 7));
        assert!(early.take(t0, &node(1)).is_none());
    }

    #[test]
    fn expires_after_ttl() {
        let t0 = Instant::now();
        let mut early = EarlyIntros::default();
        early.push(t0, intro(node(1), 7));
        assert!(early.take(t0 + EARLY_TTL, &node(1)).is_none());
        assert!(early.is_empty());
    }

    #[test]
    fn newest_per_peer_and_bounded() {
        let t0 = Instant::now();
        let mut early = EarlyIntros::new(2, EARLY_TTL);
        early.push(t0, intro(node(1), 1));
        early.push(t0 + Duration::from_millis(1), intro(node(1), 2));
        assert_eq!(early.len(), 1);
        early.push(t0 + Duration::from_millis(2), intro(node(2), 3));
        early.push(t0 + Duration::from_millis(3), intro(node(3), 4));
        assert_eq!(early.len(), 2);
        // The oldest (peer 1) made room.
        let now = t0 + Duration::from_millis(4);
        assert!(early.take(now, &node(1)).is_none());
        assert_eq!(early.take(now, &node(2)).unwrap().1.req, 3);
        assert_eq!(early.take(now, &node(3)).unwrap().1.req, 4);
    }
}
