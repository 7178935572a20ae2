//! The transport's traversal driver, in the simulated world: each host's
//! [`Traversal`] core runs next to the transport's real policy core
//! ([`PeerPolicy`]), and this file only does what the driver's I/O does
//! in a transport, against the model instead of sockets:
//!
//! - it keeps each host's path per peer (direct at an address, or through
//!   a relay) and its registered relays, as the path socket and the relay
//!   client would;
//! - it feeds the policy connections, path changes, punch outcomes and
//!   traffic counters, asks the core for the introductions the policy has
//!   due, and carries out the policy's answers (move to a punched path,
//!   fall back to a relay, probe a suspect path);
//! - once a second (the driver's tick) it samples each host's local
//!   address towards its relay and reads the traffic counters.
//!
//! Relayed packets from a peer whose path we hold direct are what the
//! path socket counts as "relayed while direct": here, a host that falls
//! back to a relay sends one (the driver's `NatInfo`) and the peer counts
//! it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use relay_proto::NodeId;
use relay_transport::traversal::peer_policy::{
    Attempt, DirectMove, FallBack, PeerPath, PeerPolicy, PolicyAction, Readiness, Traffic,
};
use relay_transport::traversal::{Traversal, TraversalEvent};

use super::{HostId, World};

/// The driver's period (activity report, local-address sample).
const TICK: Duration = Duration::from_secs(1);
/// Longest simulated stretch between two looks at the records.
const STEP: Duration = Duration::from_millis(10);

/// What the driver keeps for one host.
#[derive(Debug, Default)]
struct HostDriver {
    policy: PeerPolicy,
    /// The path of each connected peer.
    paths: BTreeMap<NodeId, PeerPath>,
    /// Whether we dialed each connected peer.
    outbound: BTreeMap<NodeId, bool>,
    /// Relays that serve this host.
    relays: Vec<NodeId>,
    /// Relayed packets received from each peer while its path is direct.
    relayed_while_direct: BTreeMap<NodeId, u64>,
}

/// A [`World`] whose hosts run the transport's policy (see the module
/// docs).
#[derive(Debug)]
pub struct Driven {
    /// The world.
    pub world: World,
    drivers: Vec<HostDriver>,
    /// Records acted on so far.
    seen: usize,
    next_tick: Duration,
}

impl Driven {
    /// Drives every host of `world` (hosts added later are driven too).
    pub fn new(world: World) -> Self {
        Self {
            world,
            drivers: Vec::new(),
            seen: 0,
            next_tick: Duration::ZERO,
        }
    }

    fn driver(&mut self, h: HostId) -> &mut HostDriver {
        if self.drivers.len() <= h {
            self.drivers.resize_with(h + 1, HostDriver::default);
        }
        &mut self.drivers[h]
    }

    /// `h`'s path to `peer`, as its driver knows it.
    pub fn path(&self, h: HostId, peer: &NodeId) -> PeerPath {
        self.drivers
            .get(h)
            .and_then(|d| d.paths.get(peer).copied())
            .unwrap_or(PeerPath::None)
    }

    /// `h`'s policy.
    pub fn policy(&self, h: HostId) -> Option<&PeerPolicy> {
        self.drivers.get(h).map(|d| &d.policy)
    }

    /// A connection `from` -> `to` on `path` (new, or its path changed).
    fn connected(&mut self, h: HostId, peer: NodeId, path: PeerPath, outbound: bool) {
        let now = self.world.now();
        let d = self.driver(h);
        let fresh = !d.paths.contains_key(&peer);
        let outbound = *d.outbound.entry(peer).or_insert(outbound);
        d.paths.insert(peer, path);
        let relayed = matches!(path, PeerPath::Relayed(_));
        d.policy
            .handle_connected(now, peer, relayed, outbound, fresh);
        self.attempts(h);
    }

    /// [`World::connect_direct`], seen by both drivers.
    pub fn connect_direct(&mut self, client: HostId, server: HostId) {
        let client_ext = self.world.connect_direct(client, server);
        let server_addr = self.world.hosts[server].local;
        let (cid, sid) = (self.world.hosts[client].id, self.world.hosts[server].id);
        self.connected(client, sid, PeerPath::Direct(server_addr), true);
        self.connected(server, cid, PeerPath::Direct(client_ext), false);
    }

    /// A connection from `a` to `b` through `relay`, which serves both.
    pub fn connect_relayed_via(&mut self, a: HostId, b: HostId, relay: HostId) {
        self.world.connect_relayed(a, b);
        let rid = self.world.hosts[relay].id;
        let (aid, bid) = (self.world.hosts[a].id, self.world.hosts[b].id);
        for h in [a, b] {
            let d = self.driver(h);
            if !d.relays.contains(&rid) {
                d.relays.push(rid);
                d.relays.sort();
            }
        }
        self.connected(a, bid, PeerPath::Relayed(rid), true);
        self.connected(b, aid, PeerPath::Relayed(rid), false);
    }

    /// Runs until `until` (from the start), acting on every event within
    /// [`STEP`] of it.
    pub fn run_until(&mut self, until: Duration) {
        while self.world.elapsed() < until {
            let now = self.world.elapsed();
            let mut next = (now + STEP).min(until);
            if self.next_tick > now {
                next = next.min(self.next_tick);
            }
            for d in &self.drivers {
                if let Some(at) = d.policy.poll_timeout() {
                    let at = now + at.saturating_duration_since(self.world.now());
                    if at > now {
                        next = next.min(at);
                    }
                }
            }
            self.world.run_until(next);
            self.act_on_records();
            if self.world.elapsed() >= self.next_tick {
                self.next_tick = self.world.elapsed() + TICK;
                self.tick();
            }
            for h in 0..self.drivers.len() {
                self.attempts(h);
            }
        }
    }

    /// Runs for `d` more.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.world.elapsed() + d;
        self.run_until(until);
    }

    fn act_on_records(&mut self) {
        let records: Vec<_> = self.world.records[self.seen..].to_vec();
        self.seen = self.world.records.len();
        for r in records {
            let now = self.world.now();
            let h = r.host;
            match r.event {
                TraversalEvent::DirectPathFound { peer, addr } => self.go_direct(h, peer, addr),
                TraversalEvent::DirectPathLost { peer, addr } => self.fall_back(h, peer, addr),
                TraversalEvent::PunchFailed { peer, .. } => {
                    self.driver(h).policy.handle_punch_failed(now, &peer);
                }
                TraversalEvent::Repunch { peer } => {
                    self.driver(h).policy.handle_request(now, peer);
                }
                _ => {}
            }
            self.attempts(h);
        }
    }

    fn go_direct(&mut self, h: HostId, peer: NodeId, addr: SocketAddr) {
        let current = self.path(h, &peer);
        match self
            .driver(h)
            .policy
            .handle_direct_found(&peer, addr, current)
        {
            DirectMove::Stay => {}
            DirectMove::Forget => self.world.hosts[h].core.forget_direct_path(&peer),
            DirectMove::Move => {
                self.driver(h).policy.handle_moved_direct(&peer, addr);
                self.connected(h, peer, PeerPath::Direct(addr), false);
            }
        }
    }

    fn fall_back(&mut self, h: HostId, peer: NodeId, addr: SocketAddr) {
        let current = self.path(h, &peer);
        let d = self.driver(h);
        let relay = match d.policy.handle_direct_lost(&peer, addr, current, &d.relays) {
            FallBack::Via(relay) => relay,
            FallBack::NotOnPath | FallBack::NoRelay => return,
        };
        let now = self.world.now();
        self.connected(h, peer, PeerPath::Relayed(relay), false);
        self.driver(h).policy.handle_fell_back(now, &peer);
        // The driver's NatInfo reaches the peer relayed.
        let me = self.world.hosts[h].id;
        if let Some(other) = self.world.host_of(&peer) {
            *self
                .driver(other)
                .relayed_while_direct
                .entry(me)
                .or_default() += 1;
        }
    }

    /// The driver's tick on every host.
    fn tick(&mut self) {
        let now = self.world.now();
        for h in 0..self.drivers.len() {
            if let Some(dest) = self.sample_towards(h) {
                let local: IpAddr = self.world.hosts[h].local.ip();
                self.world.hosts[h]
                    .core
                    .handle_local_addr(now, dest, Some(local));
            }
            let d = &mut self.drivers[h];
            let peers: Vec<NodeId> = d.policy.peers().copied().collect();
            for peer in peers {
                let direct = matches!(d.paths.get(&peer), Some(PeerPath::Direct(_)));
                let traffic = Traffic {
                    direct_rx: None,
                    relayed_while_direct: direct
                        .then(|| d.relayed_while_direct.get(&peer).copied().unwrap_or(0)),
                };
                d.policy.handle_traffic(&peer, traffic);
            }
            let core = &mut self.world.hosts[h].core;
            while let Some(action) = d.policy.poll_action() {
                match action {
                    PolicyAction::PathActive { peer } => core.handle_path_activity(now, &peer),
                    PolicyAction::SuspectDirect { peer } => {
                        core.suspect_direct_path(now, &peer);
                    }
                }
            }
        }
    }

    /// The IP `h` samples its local address towards: its lowest relay on
    /// a direct path (as `netwatch::destination`).
    fn sample_towards(&self, h: HostId) -> Option<IpAddr> {
        let d = self.drivers.get(h)?;
        d.relays.iter().find_map(|r| match d.paths.get(r) {
            Some(PeerPath::Direct(addr)) => Some(addr.ip()),
            _ => None,
        })
    }

    /// Asks `h`'s core for every introduction its policy has due.
    fn attempts(&mut self, h: HostId) {
        let now = self.world.now();
        let Some(d) = self.drivers.get_mut(h) else {
            return;
        };
        let core: &mut Traversal = &mut self.world.hosts[h].core;
        loop {
            let ready = |peer: &NodeId| match d.paths.get(peer) {
                Some(PeerPath::Relayed(relay)) => {
                    if core.is_punching(peer) || core.direct_path(peer).is_some() {
                        Readiness::Busy
                    } else {
                        Readiness::Via(*relay)
                    }
                }
                _ => Readiness::NotRelayed,
            };
            let Some(Attempt { peer, relay }) = d.policy.poll_attempt(now, ready) else {
                return;
            };
            if core.request_direct(now, peer, Some(relay)).is_err() {
                d.policy.handle_attempt_refused(now, &peer);
            }
        }
    }
}
