//! Introductions and control messages that arrive before their peer's
//! connection.
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
//!
//! Control messages can be early too: the driver reads a peer's messages
//! and its connection events from separate queues, so a message sent
//! right after the handshake (a `NatInfo`, a `PortMapped` announcing the
//! sender's port mapping, sent once) may reach the core before the
//! connection it came on. [`EarlyMsgs`] holds those per sender, bounded
//! the same way (at most [`EARLY_MSGS_PER_PEER`] per sender, the oldest
//! going), and the core replays them in order when the connection shows
//! up, or drops them when it closes unreported.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use relay_proto::wire::traversal::{Introduction, TraversalMsg};
use relay_proto::NodeId;

/// At most this many early introductions are held, and early control
/// messages from at most this many senders.
pub const EARLY_CAP: usize = 16;
/// An early introduction or control message is kept this long.
pub const EARLY_TTL: Duration = Duration::from_secs(3);
/// At most this many early control messages are held per sender (the
/// newest win).
pub const EARLY_MSGS_PER_PEER: usize = 8;

/// A bounded, expiring table of what arrived early, per peer: at most
/// `cap` entries, each dropped `ttl` after the instant it carries, the
/// oldest going first when full.
#[derive(Debug)]
struct Held<V> {
    cap: usize,
    ttl: Duration,
    held: BTreeMap<NodeId, (Instant, V)>,
}

impl<V> Held<V> {
    fn new(cap: usize, ttl: Duration) -> Self {
        Self {
            cap: cap.max(1),
            ttl,
            held: BTreeMap::new(),
        }
    }

    /// The entry of `peer`, made at `now` (after dropping the oldest if
    /// full) when there is none.
    fn entry(
        &mut self,
        now: Instant,
        peer: NodeId,
        empty: impl FnOnce() -> V,
    ) -> &mut (Instant, V) {
        self.expire(now);
        if !self.held.contains_key(&peer) && self.held.len() >= self.cap {
            let oldest = self
                .held
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(peer, _)| *peer);
            if let Some(peer) = oldest {
                self.held.remove(&peer);
            }
        }
        self.held.entry(peer).or_insert_with(|| (now, empty()))
    }

    fn take(&mut self, now: Instant, peer: &NodeId) -> Option<(Instant, V)> {
        self.expire(now);
        self.held.remove(peer)
    }

    fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.held
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
    }
}

/// Held introductions, keyed by the peer they introduce. Sans-IO.
#[derive(Debug)]
pub struct EarlyIntros {
    held: Held<Option<Introduction>>,
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
            held: Held::new(cap, ttl),
        }
    }

    /// Holds `intro`, which arrived at `now` for a peer we have no
    /// connection to yet.
    pub fn push(&mut self, now: Instant, intro: Introduction) {
        let entry = self.held.entry(now, intro.peer, || None);
        *entry = (now, Some(intro));
    }

    /// The introduction held for `peer`, with the instant it arrived,
    /// unless it expired.
    pub fn take(&mut self, now: Instant, peer: &NodeId) -> Option<(Instant, Introduction)> {
        let (at, intro) = self.held.take(now, peer)?;
        intro.map(|i| (at, i))
    }

    /// Drops what is older than the ttl.
    pub fn expire(&mut self, now: Instant) {
        self.held.expire(now);
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.held.held.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.held.held.is_empty()
    }
}

/// Control messages from a peer whose connection the core does not know
/// yet, keyed by that sender, each with the instant it arrived. Sans-IO.
#[derive(Debug)]
pub struct EarlyMsgs {
    held: Held<Vec<(Instant, TraversalMsg)>>,
    per_peer: usize,
}

impl Default for EarlyMsgs {
    fn default() -> Self {
        Self::new(EARLY_CAP, EARLY_MSGS_PER_PEER, EARLY_TTL)
    }
}

impl EarlyMsgs {
    /// A buffer for at most `cap` senders, `per_peer` messages each, kept
    /// `ttl` after the first of them arrived.
    pub fn new(cap: usize, per_peer: usize, ttl: Duration) -> Self {
        Self {
            held: Held::new(cap, ttl),
            per_peer: per_peer.max(1),
        }
    }

    /// Holds `msg`, which arrived at `now` from `from`.
    pub fn push(&mut self, now: Instant, from: NodeId, msg: TraversalMsg) {
        let per_peer = self.per_peer;
        let (_, msgs) = self.held.entry(now, from, Vec::new);
        if msgs.len() >= per_peer {
            msgs.remove(0);
        }
        msgs.push((now, msg));
    }

    /// The messages held from `from`, oldest first, unless they expired.
    pub fn take(&mut self, now: Instant, from: &NodeId) -> Vec<(Instant, TraversalMsg)> {
        self.held
            .take(now, from)
            .map(|(_, msgs)| msgs)
            .unwrap_or_default()
    }

    /// Forgets what `from` sent (its connection closed unreported).
    pub fn forget(&mut self, from: &NodeId) {
        self.held.held.remove(from);
    }

    /// How many senders are held.
    pub fn len(&self) -> usize {
        self.held.held.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.held.held.is_empty()
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

    #[test]
    fn early_messages_in_order_bounded_per_sender_and_in_senders() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let nat = |n: u8| TraversalMsg::NatInfo {
            nat: if n.is_multiple_of(2) {
                NatType::Cone
            } else {
                NatType::Symmetric
            },
        };
        let mut early = EarlyMsgs::new(2, 2, EARLY_TTL);
        early.push(t0, node(1), nat(0));
        early.push(t0 + ms(1), node(1), nat(1));
        early.push(t0 + ms(2), node(1), nat(2));
        early.push(t0 + ms(3), node(2), nat(3));
        // A third sender makes room by dropping the oldest (node 1).
        early.push(t0 + ms(4), node(3), nat(4));
        assert_eq!(early.len(), 2);
        assert!(early.take(t0 + ms(5), &node(1)).is_empty());
        assert_eq!(early.take(t0 + ms(5), &node(2)), vec![(t0 + ms(3), nat(3))]);
        early.forget(&node(3));
        assert!(early.is_empty());
        // Per sender: the newest two, oldest first; gone after the ttl.
        let mut early = EarlyMsgs::new(2, 2, EARLY_TTL);
        for n in 0..3 {
            early.push(t0 + ms(u64::from(n)), node(1), nat(n));
        }
        let mut again = EarlyMsgs::new(2, 2, EARLY_TTL);
        again.push(t0, node(1), nat(0));
        assert_eq!(
            early.take(t0 + ms(5), &node(1)),
            vec![(t0 + ms(1), nat(1)), (t0 + ms(2), nat(2))]
        );
        assert!(again.take(t0 + EARLY_TTL, &node(1)).is_empty());
    }
}
