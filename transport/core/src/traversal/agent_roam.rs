//! The agent's side of address changes (see `roam`): feeding the
//! detector, and what happens once our own address changed.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use relay_proto::wire::traversal::TraversalMsg;
use relay_proto::NodeId;

use super::super::output::TraversalEvent;
use super::super::roam::AddressChange;
use super::Traversal;

impl Traversal {
    /// One sample of our local source IP towards `dest` (the driver takes
    /// one per tick; `None`: no route or no address). A confirmed change
    /// raises [`TraversalEvent::AddressChanged`] and starts the reaction
    /// (see `roam`).
    pub fn handle_local_addr(&mut self, now: Instant, dest: IpAddr, local: Option<IpAddr>) {
        if let Some(change) = self.watch.handle_local(now, dest, local) {
            self.address_changed(now, change);
        }
        self.drive(now);
    }

    /// Something suggests that `peer`'s direct path died (it reaches us
    /// through a relay, say): probe it now and fast, and lose it (raising
    /// [`TraversalEvent::DirectPathLost`]) if it does not answer. Returns
    /// whether `peer` has a direct path to probe.
    pub fn suspect_direct_path(&mut self, now: Instant, peer: &NodeId) -> bool {
        let interval = self.config.roam.probe_interval;
        let kept = self.keepalives.probe_now(now, peer, interval);
        self.drive(now);
        kept
    }

    /// Our confirmed local IP (see `roam`).
    pub fn local_ip(&self) -> Option<IpAddr> {
        self.watch.local()
    }

    /// An observer reported our address (after the classifier saw it).
    pub(super) fn roam_observed(
        &mut self,
        now: Instant,
        observer_ip: IpAddr,
        observed: SocketAddr,
    ) {
        if let Some(change) = self.watch.handle_reflexive(now, observer_ip, observed.ip()) {
            self.address_changed(now, change);
        }
        self.roaming.observed();
    }

    /// Our own address changed: probe every direct path at once, re-learn
    /// the NAT from fresh observations, tell every peer (which also sends
    /// a packet from the new address on every connection, so the peers
    /// that accepted ours migrate and observe us anew), and schedule
    /// re-punches for the direct paths that turn out lost.
    fn address_changed(&mut self, now: Instant, change: AddressChange) {
        self.stats.address_changes += 1;
        self.events
            .push_back(TraversalEvent::AddressChanged(change));
        self.nat.relearn(now);
        self.mapcheck.recheck_now(now);
        let interval = self.config.roam.probe_interval;
        let direct: Vec<NodeId> = self.direct.keys().copied().collect();
        for peer in &direct {
            self.keepalives.probe_now(now, peer, interval);
        }
        self.roaming.start(now, direct);
        let nat = self.nat.report().nat;
        let peers: Vec<NodeId> = self.links.values().map(|l| l.node).collect();
        for peer in peers {
            self.control(peer, TraversalMsg::NatInfo { nat });
            if let Some(addr) = self.mapped {
                self.control(peer, TraversalMsg::PortMapped { addr: Some(addr) });
            }
        }
    }

    /// Raises the re-punches that are due.
    pub(super) fn drive_roam(&mut self, now: Instant) {
        for peer in self.roaming.poll_due(now) {
            if self.direct.contains_key(&peer) {
                self.roaming.settled(now, &peer, true);
                continue;
            }
            if self.is_punching(&peer) {
                // Its outcome settles the re-punch.
                continue;
            }
            self.events.push_back(TraversalEvent::Repunch { peer });
        }
    }
}
