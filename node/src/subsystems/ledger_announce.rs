//! When this node appends its `node-announcement`, and what it says: the
//! addresses peers can dial (reflexive and observed addresses, then bound
//! addresses that are not unspecified), the NAT type, the relay offer, the
//! version and this node's membership proof. Pure: the driver reads the
//! transport and the clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use relay_proto::ledger::body::{NatType, NodeAnnouncement, MAX_ADDRS};
use relay_proto::ledger::MemberProof;
use relay_proto::wire::traversal::NatType as ObservedNat;

/// How long a node whose ledger has no entry of its own waits for its
/// peers' vectors before announcing (a re-synced node must not fork its
/// own feed by appending seq 1 again).
pub const FRESH_GRACE: Duration = Duration::from_secs(2);
/// Least time between two announcements (addresses may flap).
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);

/// What the transport says about this node right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reachability {
    /// Bound addresses.
    pub listen: Vec<SocketAddr>,
    /// Our reflexive address, if classified.
    pub reflexive: Option<SocketAddr>,
    /// Addresses connected peers see us at.
    pub observed: Vec<SocketAddr>,
    /// The NAT type.
    pub nat: ObservedNat,
    /// Whether this node relays for members.
    pub relay: bool,
}

/// The announcement for `r`: dialable addresses, best first, no
/// duplicate, and `member_proof` (this node's proof under the network key,
/// if the mesh has one).
pub fn announcement(
    r: &Reachability,
    version: &str,
    member_proof: Option<MemberProof>,
) -> NodeAnnouncement {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let candidates = r
        .reflexive
        .iter()
        .chain(r.observed.iter())
        .chain(r.listen.iter());
    for a in candidates {
        if a.ip().is_unspecified() || a.port() == 0 || addrs.contains(a) {
            continue;
        }
        if addrs.len() == MAX_ADDRS {
            break;
        }
        addrs.push(*a);
    }
    let nat = match r.nat {
        ObservedNat::Unknown => NatType::Unknown,
        ObservedNat::Open => NatType::Open,
        ObservedNat::Cone => NatType::Cone,
        ObservedNat::Symmetric => NatType::Symmetric,
    };
    let mut version = version.to_string();
    version.truncate(relay_proto::ledger::body::MAX_VERSION);
    NodeAnnouncement {
        addrs,
        nat,
        relay: r.relay,
        version,
        member_proof,
    }
}

/// Decides when to announce. Sans-IO: `now` comes from the caller.
#[derive(Debug, Clone)]
pub struct Announcer {
    started: Instant,
    last: Option<NodeAnnouncement>,
    last_at: Option<Instant>,
}

impl Announcer {
    /// Started at `now`; `last` is the latest announcement of this node
    /// already in the ledger, if any.
    pub fn new(now: Instant, last: Option<NodeAnnouncement>) -> Self {
        Self {
            started: now,
            last,
            last_at: None,
        }
    }

    /// The announcement to append now, if any: `current` differs from the
    /// last one, the last one is not too recent, and appending cannot fork
    /// this node's feed (`own_frontier` is the seq of our latest entry;
    /// `peer_ahead` whether a connected peer holds more of our feed).
    pub fn poll(
        &self,
        now: Instant,
        current: &NodeAnnouncement,
        own_frontier: u64,
        peer_ahead: bool,
    ) -> Option<NodeAnnouncement> {
        if peer_ahead || self.last.as_ref() == Some(current) {
            return None;
        }
        if own_frontier == 0 && now < self.started + FRESH_GRACE {
            return None;
        }
        if self.last_at.is_some_and(|at| now < at + MIN_INTERVAL) {
            return None;
        }
        Some(current.clone())
    }

    /// `sent` was appended at `now`.
    pub fn appended(&mut self, now: Instant, sent: NodeAnnouncement) {
        self.last = Some(sent);
        self.last_at = Some(now);
    }

    /// When [`Self::poll`] may next say yes on time alone.
    pub fn next_check(&self, now: Instant) -> Instant {
        let fresh = self.started + FRESH_GRACE;
        let spaced = self.last_at.map_or(now, |at| at + MIN_INTERVAL);
        fresh.max(spaced).max(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_dialable_deduplicated_and_reflexive_first() {
        let r = Reachability {
            listen: vec![addr("0.0.0.0:7420"), addr("127.0.0.1:7420")],
            reflexive: Some(addr("192.0.2.1:4000")),
            observed: vec![addr("192.0.2.1:4000"), addr("198.51.100.2:5000")],
            nat: ObservedNat::Cone,
            relay: true,
        };
        let a = announcement(&r, "0.1.0", None);
        assert_eq!(
            a.addrs,
            vec![
                addr("192.0.2.1:4000"),
                addr("198.51.100.2:5000"),
                addr("127.0.0.1:7420")
            ]
        );
        assert_eq!(a.nat, NatType::Cone);
        assert!(a.relay);
        assert_eq!(a.version, "0.1.0");
    }

    #[test]
    fn at_most_max_addrs() {
        let r = Reachability {
            observed: (1..40u16)
                .map(|p| SocketAddr::from(([10, 0, 0, 1], p)))
                .collect(),
            ..Reachability::default()
        };
        assert_eq!(announcement(&r, "v", None).addrs.len(), MAX_ADDRS);
    }

    fn ann(port: u16) -> NodeAnnouncement {
        announcement(
            &Reachability {
                listen: vec![SocketAddr::from(([127, 0, 0, 1], port))],
                ..Reachability::default()
            },
            "v",
            None,
        )
    }

    #[test]
    fn a_fresh_feed_waits_for_the_grace_and_for_peers_that_are_ahead() {
        let t0 = Instant::now();
        let mut a = Announcer::new(t0, None);
        assert_eq!(a.poll(t0, &ann(1), 0, false), None);
        let later = t0 + FRESH_GRACE;
        assert_eq!(a.poll(later, &ann(1), 0, true), None);
        assert_eq!(a.poll(later, &ann(1), 0, false), Some(ann(1)));
        a.appended(later, ann(1));
        // Unchanged: nothing; changed too soon: nothing; then yes.
        assert_eq!(a.poll(later + MIN_INTERVAL, &ann(1), 1, false), None);
        assert_eq!(a.poll(later, &ann(2), 1, false), None);
        assert_eq!(a.next_check(later), later + MIN_INTERVAL);
        assert_eq!(
            a.poll(later + MIN_INTERVAL, &ann(2), 1, false),
            Some(ann(2))
        );
    }

    #[test]
    fn a_feed_with_entries_announces_a_change_at_once() {
        let t0 = Instant::now();
        let a = Announcer::new(t0, Some(ann(1)));
        assert_eq!(a.poll(t0, &ann(1), 3, false), None);
        assert_eq!(a.poll(t0, &ann(2), 3, false), Some(ann(2)));
    }
}
