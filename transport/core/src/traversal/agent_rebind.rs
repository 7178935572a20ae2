//! The agent's side of NAT rebinding: a direct path that moved to a new
//! address without a punch (the peer's NAT rebound and the transport
//! followed it by connection ID, or quinn migrated on the accepting side)
//! is still ours to keep alive.
//!
//! Without this the core would forget the path as "moved off by someone
//! else", and nothing would send keepalives on it or notice when it dies:
//! the connection would then time out instead of falling back to a relay.

use std::net::SocketAddr;
use std::time::Instant;

use relay_proto::NodeId;

use super::Traversal;

impl Traversal {
    /// `peer`'s direct path, found earlier by a punch, now runs to `addr`
    /// (a rebinding followed, or a migration). Keepalives move there, with
    /// a fresh miss count. A probe port the old path ran on is released:
    /// its route was for the old address. Returns `false` (and changes
    /// nothing) when the core keeps no direct path for `peer` or it is
    /// already `addr`.
    pub fn handle_direct_moved(&mut self, now: Instant, peer: &NodeId, addr: SocketAddr) -> bool {
        match self.direct.get(peer) {
            Some(old) if *old != addr => {}
            _ => return false,
        }
        self.release_held(peer);
        self.direct.insert(*peer, addr);
        self.keepalives.insert(now, *peer, addr);
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use relay_proto::SecretKey;

    use super::super::{ConnectionInfo, TraversalConfig, TraversalEvent, TraversalTransmit};
    use super::*;

    fn id(n: u8) -> NodeId {
        SecretKey::from_bytes(&[n; 32]).node_id()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A core with a direct path to `peer` at `addr`, as a punch leaves it.
    fn direct_core(now: Instant, peer: NodeId, addr: SocketAddr) -> Traversal {
        let mut core = Traversal::new(id(1), TraversalConfig::default(), [1; 32]);
        core.handle_connection(
            now,
            peer,
            ConnectionInfo {
                probe_key: [42; 32],
                observed: Some(addr),
                rtt: Duration::from_millis(20),
            },
        );
        core.direct.insert(peer, addr);
        core.keepalives.insert(now, peer, addr);
        while core.poll_transmit().is_some() {}
        core
    }

    /// Runs the core until `until`, returning the frames' destinations
    /// and the events.
    fn run(core: &mut Traversal, until: Instant) -> (Vec<SocketAddr>, Vec<TraversalEvent>) {
        let (mut dsts, mut events) = (Vec::new(), Vec::new());
        while let Some(at) = core.poll_timeout().filter(|t| *t <= until) {
            core.handle_timeout(at);
            while let Some(t) = core.poll_transmit() {
                if let TraversalTransmit::Frame { dst, .. } = t {
                    dsts.push(dst);
                }
            }
            events.extend(std::iter::from_fn(|| core.poll_event()));
        }
        (dsts, events)
    }

    #[test]
    fn keepalives_follow_a_moved_direct_path_and_its_loss_names_it() {
        let now = Instant::now();
        let peer = id(2);
        let (old, new) = (sa("198.51.100.11:40000"), sa("198.51.100.11:41000"));
        let mut core = direct_core(now, peer, old);

        assert!(core.handle_direct_moved(now, &peer, new));
        assert_eq!(core.direct_path(&peer), Some(new));
        // Already there, or no direct path at all: nothing to move.
        assert!(!core.handle_direct_moved(now, &peer, new));
        assert!(!core.handle_direct_moved(now, &id(3), new));

        // Unanswered keepalives go to the new address only, and the loss
        // names it.
        let (dsts, events) = run(&mut core, now + Duration::from_secs(200));
        assert!(dsts.len() >= 3, "{dsts:?}");
        assert!(dsts.iter().all(|d| *d == new), "{dsts:?}");
        assert!(
            events.contains(&TraversalEvent::DirectPathLost { peer, addr: new }),
            "{events:?}"
        );
        assert_eq!(core.direct_path(&peer), None);
    }
}
