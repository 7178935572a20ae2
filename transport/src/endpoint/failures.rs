//! Failed handshakes, sans-IO: the last failure with each peer we dial
//! (shown as its `why` in status while it is not connected), the last
//! failure of all (status' `handshake` section), and a rate limit so each
//! peer or address gets one warning per [`WARN_EVERY`], not one per
//! redial.
//!
//! Bounded: at most [`MAX_TRACKED`] peers and [`MAX_TRACKED`] warning keys
//! are remembered (inbound failures come from unauthenticated addresses);
//! beyond that the oldest half is forgotten.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use relay_proto::NodeId;

use crate::DialErrorKind;

/// One warning per peer or address per this long.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(60);
/// Peers and warning keys remembered, at most.
pub(crate) const MAX_TRACKED: usize = 1024;

/// One failed handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeFailure {
    /// Stable kind.
    pub kind: DialErrorKind,
    /// Human detail.
    pub detail: String,
    /// The peer, when known (always for dials; for inbound attempts once
    /// its message 1 was read).
    pub peer: Option<NodeId>,
    /// The real address, when known.
    pub addr: Option<SocketAddr>,
    /// Whether we dialed (false: an inbound attempt).
    pub outbound: bool,
    /// When it happened.
    pub at: SystemTime,
}

impl HandshakeFailure {
    /// `kind: detail`, as `why` shows it.
    pub fn why(&self) -> String {
        format!("{}: {}", self.kind, self.detail)
    }
}

/// Who a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum WarnKey {
    Peer(NodeId),
    Addr(SocketAddr),
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct HandshakeFailures {
    by_peer: HashMap<NodeId, HandshakeFailure>,
    warned: HashMap<WarnKey, Instant>,
    last: Option<HandshakeFailure>,
    total: u64,
}

impl HandshakeFailures {
    /// Records a failure; returns whether to log a warning for it now (the
    /// first for its peer, else its address, within [`WARN_EVERY`]).
    pub(crate) fn record(&mut self, now: Instant, failure: HandshakeFailure) -> bool {
        self.total += 1;
        let key = match (failure.peer, failure.addr) {
            (Some(peer), _) => Some(WarnKey::Peer(peer)),
            (None, Some(addr)) => Some(WarnKey::Addr(addr)),
            (None, None) => None,
        };
        if let (true, Some(peer)) = (failure.outbound, failure.peer) {
            bound(&mut self.by_peer, |f| f.at);
            self.by_peer.insert(peer, failure.clone());
        }
        self.last = Some(failure);
        let Some(key) = key else {
            return true;
        };
        let due = self
            .warned
            .get(&key)
            .is_none_or(|at| now.saturating_duration_since(*at) >= WARN_EVERY);
        if due {
            bound(&mut self.warned, |at| *at);
            self.warned.insert(key, now);
        }
        due
    }

    /// A dial to `peer` succeeded: its failure is history.
    pub(crate) fn clear(&mut self, peer: &NodeId) {
        self.by_peer.remove(peer);
    }

    /// The last failed dial to `peer`, until one succeeds.
    pub(crate) fn of(&self, peer: &NodeId) -> Option<&HandshakeFailure> {
        self.by_peer.get(peer)
    }

    /// The last failure of all, and how many were recorded.
    pub(crate) fn last(&self) -> (Option<&HandshakeFailure>, u64) {
        (self.last.as_ref(), self.total)
    }
}

/// Forgets the older half of `map` when it is full.
fn bound<K: Clone + Eq + std::hash::Hash, V, T: Ord + Copy>(
    map: &mut HashMap<K, V>,
    age: impl Fn(&V) -> T,
) {
    if map.len() < MAX_TRACKED {
        return;
    }
    let mut ages: Vec<T> = map.values().map(&age).collect();
    ages.sort_unstable();
    if let Some(cut) = ages.get(ages.len() / 2).copied() {
        map.retain(|_, v| age(v) > cut);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use relay_proto::SecretKey;

    fn failure(peer: Option<NodeId>, addr: Option<SocketAddr>, outbound: bool) -> HandshakeFailure {
        HandshakeFailure {
            kind: DialErrorKind::NetworkKeyMismatch,
            detail: "the peer holds another network key".into(),
            peer,
            addr,
            outbound,
            at: SystemTime::now(),
        }
    }

    #[test]
    fn one_warning_per_peer_per_period_and_why_until_success() {
        let mut f = HandshakeFailures::default();
        let now = Instant::now();
        let peer = SecretKey::generate().node_id();
        assert!(f.record(now, failure(Some(peer), None, true)));
        assert!(!f.record(
            now + Duration::from_secs(1),
            failure(Some(peer), None, true)
        ));
        assert!(f.record(now + WARN_EVERY, failure(Some(peer), None, true)));
        assert_eq!(
            f.of(&peer).unwrap().why(),
            "network-key-mismatch: the peer holds another network key"
        );
        let other = SecretKey::generate().node_id();
        assert!(f.record(now, failure(Some(other), None, true)), "per peer");
        f.clear(&peer);
        assert!(f.of(&peer).is_none());
        assert_eq!(f.last().1, 4);
    }

    #[test]
    fn inbound_failures_warn_per_address_and_are_bounded() {
        let mut f = HandshakeFailures::default();
        let now = Instant::now();
        let addr: SocketAddr = "192.0.2.1:9".parse().unwrap();
        assert!(f.record(now, failure(None, Some(addr), false)));
        assert!(!f.record(now, failure(None, Some(addr), false)));
        assert!(f.by_peer.is_empty(), "inbound failures set no why");
        for port in 0..5000u16 {
            let a = SocketAddr::from(([198, 51, 100, 1], port));
            f.record(
                now + Duration::from_millis(u64::from(port)),
                failure(None, Some(a), false),
            );
        }
        assert!(f.warned.len() <= MAX_TRACKED);
        assert_eq!(f.last().0.unwrap().addr.unwrap().port(), 4999);
    }
}
