//! A deterministic, single-threaded world for the traversal core.
//!
//! Hosts run [`Traversal`] cores. Each sits either on the "internet"
//! (198.51.100.0/24, open) or on a LAN (10.x) behind a modelled [`Nat`]
//! with a public address in 203.0.113.0/24. Packets (probe frames and
//! control messages) travel with a fixed one-way latency and seeded random
//! loss; time is simulated (an `Instant` base plus offsets), so a run takes
//! microseconds of real time and replays exactly for a given seed.
//!
//! Connections are modelled, not run: `connect_direct` stands for a QUIC
//! connection from a (possibly NATed) host to a public one, which creates
//! the NAT binding, lets each side observe the other's address, and gives
//! both a shared probe key; `connect_relayed` stands for a connection
//! through a relay, which shares a key but observes no address. Control
//! messages go over those connections (encoded and decoded with the real
//! codec), with the same latency and loss as probes.
//!
//! Probe ports (birthday probing) are modelled as further local ports of
//! the host, opened on first use and closed on `ReleasePorts`; like the
//! real path socket, packets to an address the core routes through a
//! probe port leave from that port. A public host has its alternate port
//! (`mapcheck::ALT_PORT`) open from the start, as the driver opens it.
//!
//! [`driver::Driven`] adds what the transport's traversal driver does
//! around each core, with the transport's own policy core
//! (`PeerPolicy`): paths per peer, introductions when due, moves to
//! punched paths, fallback to relays, suspicion from relayed packets,
//! local-address samples once a second.

#![allow(dead_code)]

pub mod driver;
pub mod nat;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use relay_proto::{NodeId, SecretKey};
use relay_transport::traversal::mapcheck::ALT_PORT;
use relay_transport::traversal::{
    ConnectionInfo, PortId, Traversal, TraversalConfig, TraversalEvent, TraversalMsg,
    TraversalTransmit,
};

pub use nat::{Nat, NatKind};

/// A host index.
pub type HostId = usize;

/// One simulated node.
#[derive(Debug)]
pub struct Host {
    /// Its NodeId.
    pub id: NodeId,
    /// The address its socket is bound to (LAN or public).
    pub local: SocketAddr,
    /// The NAT in front of it, if any.
    pub nat: Option<usize>,
    /// Its traversal core.
    pub core: Traversal,
    /// Probe ports open now.
    pub ports: BTreeSet<PortId>,
    /// Probe ports ever opened.
    pub ports_opened: u64,
}

/// The local address of probe port `port` of a host bound at `local`.
pub fn port_local(local: SocketAddr, port: PortId) -> SocketAddr {
    SocketAddr::new(local.ip(), 20_000 + (port % 40_000) as u16)
}

#[derive(Debug, Clone)]
enum Packet {
    Udp {
        src: SocketAddr,
        dst: SocketAddr,
        data: Vec<u8>,
    },
    Control {
        from: HostId,
        to: HostId,
        bytes: Vec<u8>,
    },
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Simulated time since the start.
    pub at: Duration,
    /// Which host.
    pub host: HostId,
    /// What happened.
    pub event: TraversalEvent,
}

/// Network impairments.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    /// One-way delay of every packet.
    pub latency: Duration,
    /// Probability that a packet is lost.
    pub loss: f64,
}

impl Default for Impairment {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(40),
            loss: 0.02,
        }
    }
}

/// The world. See the module docs.
#[derive(Debug)]
pub struct World {
    base: Instant,
    now: Instant,
    rng: StdRng,
    net: Impairment,
    /// Every host.
    pub hosts: Vec<Host>,
    /// Every NAT.
    pub nats: Vec<Nat>,
    queue: BTreeMap<(Instant, u64), Packet>,
    seq: u64,
    /// Connections and their hop count (1 direct, 2 through a relay).
    connections: BTreeMap<(HostId, HostId), u32>,
    /// Every event, in order.
    pub records: Vec<Record>,
    /// UDP packets dropped by NAT filters or for want of a binding.
    pub filtered: u64,
    /// Packets lost to random loss.
    pub lost: u64,
    next_public: u8,
    next_site: u8,
    /// Drop this many of the introductions addressed to a host (a lossy
    /// control channel at its worst).
    pub drop_introductions: BTreeMap<HostId, u32>,
}

impl World {
    /// An empty world.
    pub fn new(seed: u64, net: Impairment) -> Self {
        let base = Instant::now();
        Self {
            base,
            now: base,
            rng: StdRng::seed_from_u64(seed),
            net,
            hosts: Vec::new(),
            nats: Vec::new(),
            queue: BTreeMap::new(),
            seq: 0,
            connections: BTreeMap::new(),
            records: Vec::new(),
            filtered: 0,
            lost: 0,
            next_public: 1,
            next_site: 1,
            drop_introductions: BTreeMap::new(),
        }
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// The current simulated instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    fn new_core(&mut self, n: u8, config: TraversalConfig) -> (NodeId, Traversal) {
        let id = SecretKey::from_bytes(&[n; 32]).node_id();
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        (id, Traversal::new(id, config, seed))
    }

    /// Adds a host on the public internet.
    pub fn add_public(&mut self, config: TraversalConfig) -> HostId {
        let n = self.next_public;
        self.next_public += 1;
        let local = SocketAddr::from(([198, 51, 100, n], 7000));
        let (id, mut core) = self.new_core(n, config);
        core.handle_alt_port(Some(port_local(local, ALT_PORT).port()));
        self.hosts.push(Host {
            id,
            local,
            nat: None,
            core,
            ports: BTreeSet::from([ALT_PORT]),
            ports_opened: 0,
        });
        self.hosts.len() - 1
    }

    /// Adds a host behind a new NAT of `kind` (or on the internet when
    /// `kind` is open).
    pub fn add_site(
        &mut self,
        kind: NatKind,
        timeout: Duration,
        config: TraversalConfig,
    ) -> HostId {
        if kind == NatKind::Open {
            return self.add_public(config);
        }
        let s = self.next_site;
        self.next_site += 1;
        let mut nat_seed = [0u8; 32];
        self.rng.fill_bytes(&mut nat_seed);
        self.nats.push(Nat::new(
            kind,
            Ipv4Addr::new(203, 0, 113, s),
            timeout,
            StdRng::from_seed(nat_seed),
        ));
        // Every LAN host uses the same private address and port: the NAT
        // must not rely on ports being distinct.
        let local = SocketAddr::from(([10, 0, s, 2], 5000));
        let (id, core) = self.new_core(100 + s, config);
        self.hosts.push(Host {
            id,
            local,
            nat: Some(self.nats.len() - 1),
            core,
            ports: BTreeSet::new(),
            ports_opened: 0,
        });
        self.hosts.len() - 1
    }

    /// Moves `host` behind a new NAT of `kind` (a new site: a new LAN
    /// address and a new public IP), as when a laptop changes networks.
    /// Its core is not told: it has to notice. Returns the new NAT's
    /// public IP.
    pub fn move_host(&mut self, host: HostId, kind: NatKind, timeout: Duration) -> Ipv4Addr {
        let s = self.next_site;
        self.next_site += 1;
        let mut nat_seed = [0u8; 32];
        self.rng.fill_bytes(&mut nat_seed);
        let public_ip = Ipv4Addr::new(203, 0, 113, s);
        self.nats.push(Nat::new(
            kind,
            public_ip,
            timeout,
            StdRng::from_seed(nat_seed),
        ));
        self.hosts[host].nat = Some(self.nats.len() - 1);
        self.hosts[host].local = SocketAddr::from(([10, 0, s, 2], 5000));
        public_ip
    }

    /// The host with NodeId `id`.
    pub fn host_of(&self, id: &NodeId) -> Option<HostId> {
        self.hosts.iter().position(|h| h.id == *id)
    }

    fn key(&mut self) -> [u8; 32] {
        let mut key = [0u8; 32];
        self.rng.fill_bytes(&mut key);
        key
    }

    fn rtt(&self, hops: u32) -> Duration {
        self.net.latency * 2 * hops
    }

    /// Sends one packet from `from`'s socket to `dst` through its NAT, as a
    /// connection's traffic would (no loss). Returns the external source.
    fn egress(&mut self, from: HostId, dst: SocketAddr) -> Option<SocketAddr> {
        let local = self.hosts[from].local;
        self.egress_from(from, local, dst)
    }

    /// [`Self::egress`] from a given local address of `from` (its socket or
    /// one of its probe ports).
    fn egress_from(
        &mut self,
        from: HostId,
        local: SocketAddr,
        dst: SocketAddr,
    ) -> Option<SocketAddr> {
        match self.hosts[from].nat {
            None => Some(local),
            Some(n) => {
                // No hairpinning: a NAT drops packets to its own address.
                if dst.ip() == IpAddr::V4(self.nats[n].public_ip) {
                    return None;
                }
                let now = self.now;
                Some(self.nats[n].outbound(now, local, dst))
            }
        }
    }

    /// Where a packet from `src` to `dst` lands, if anywhere: the host and
    /// the probe port it arrives on (`None`: its own socket).
    fn ingress_port(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Option<(HostId, Option<PortId>)> {
        let now = self.now;
        let (nat, internal) = match self
            .nats
            .iter()
            .position(|n| IpAddr::V4(n.public_ip) == dst.ip())
        {
            Some(n) => (Some(n), self.nats[n].inbound(now, src, dst.port())?),
            None => (None, dst),
        };
        for (h, host) in self.hosts.iter().enumerate() {
            if host.nat != nat || host.local.ip() != internal.ip() {
                continue;
            }
            if host.local == internal {
                return Some((h, None));
            }
            if let Some(port) = host
                .ports
                .iter()
                .find(|p| port_local(host.local, **p) == internal)
            {
                return Some((h, Some(*port)));
            }
        }
        None
    }

    /// Where a packet from `src` to `dst` lands on a host's own socket.
    fn ingress(&mut self, src: SocketAddr, dst: SocketAddr) -> Option<HostId> {
        match self.ingress_port(src, dst)? {
            (h, None) => Some(h),
            (_, Some(_)) => None,
        }
    }

    /// Models a QUIC connection from `client` to the public host `server`:
    /// the client's NAT gets a binding, each side observes the other, both
    /// share a fresh probe key. Returns the client's address as the server
    /// sees it.
    pub fn connect_direct(&mut self, client: HostId, server: HostId) -> SocketAddr {
        let server_addr = self.hosts[server].local;
        let client_ext = self
            .egress(client, server_addr)
            .expect("server is reachable");
        assert_eq!(self.ingress(client_ext, server_addr), Some(server));
        let key = self.key();
        let now = self.now;
        let rtt = self.rtt(1);
        let (cid, sid) = (self.hosts[client].id, self.hosts[server].id);
        let client_local = self.hosts[client].local;
        self.hosts[client].core.handle_connection(
            now,
            sid,
            ConnectionInfo {
                probe_key: key,
                observed: Some(server_addr),
                rtt,
            },
        );
        self.hosts[server].core.handle_connection(
            now,
            cid,
            ConnectionInfo {
                probe_key: key,
                observed: Some(client_ext),
                rtt,
            },
        );
        // Each side reports what it observes of the other.
        self.hosts[client].core.handle_observed_addr(
            now,
            sid,
            server_addr.ip(),
            client_ext,
            client_local,
        );
        self.hosts[server].core.handle_observed_addr(
            now,
            cid,
            client_ext.ip(),
            server_addr,
            server_addr,
        );
        self.connections
            .insert((client.min(server), client.max(server)), 1);
        client_ext
    }

    /// Models a connection between `a` and `b` through a relay: a shared
    /// probe key, no observed address, two hops of RTT.
    pub fn connect_relayed(&mut self, a: HostId, b: HostId) {
        let key = self.key();
        let now = self.now;
        let rtt = self.rtt(2);
        let (aid, bid) = (self.hosts[a].id, self.hosts[b].id);
        for (me, peer) in [(a, bid), (b, aid)] {
            self.hosts[me].core.handle_connection(
                now,
                peer,
                ConnectionInfo {
                    probe_key: key,
                    observed: None,
                    rtt,
                },
            );
        }
        self.connections.insert((a.min(b), a.max(b)), 2);
    }

    fn enqueue(&mut self, delay: Duration, packet: Packet) {
        if self.rng.gen_bool(self.net.loss) {
            self.lost += 1;
            return;
        }
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), packet);
    }

    /// Drains every host's transmits and events.
    fn flush(&mut self) {
        for h in 0..self.hosts.len() {
            while let Some(tx) = self.hosts[h].core.poll_transmit() {
                match tx {
                    TraversalTransmit::Frame { dst, data } => {
                        let Some(src) = self.egress(h, dst) else {
                            self.filtered += 1;
                            continue;
                        };
                        self.enqueue(self.net.latency, Packet::Udp { src, dst, data });
                    }
                    TraversalTransmit::PortFrame { port, dst, data } => {
                        if self.hosts[h].ports.insert(port) {
                            self.hosts[h].ports_opened += 1;
                        }
                        let local = port_local(self.hosts[h].local, port);
                        let Some(src) = self.egress_from(h, local, dst) else {
                            self.filtered += 1;
                            continue;
                        };
                        self.enqueue(self.net.latency, Packet::Udp { src, dst, data });
                    }
                    TraversalTransmit::Control { to, msg } => {
                        let Some(to) = self.host_of(&to) else {
                            continue;
                        };
                        let Some(&hops) = self.connections.get(&(h.min(to), h.max(to))) else {
                            continue;
                        };
                        if matches!(msg, TraversalMsg::Introduce(_)) {
                            if let Some(left) = self.drop_introductions.get_mut(&to) {
                                if *left > 0 {
                                    *left -= 1;
                                    self.lost += 1;
                                    continue;
                                }
                            }
                        }
                        let bytes = msg.encode().expect("valid message");
                        self.enqueue(
                            self.net.latency * hops,
                            Packet::Control { from: h, to, bytes },
                        );
                    }
                }
            }
            while let Some(event) = self.hosts[h].core.poll_event() {
                if let TraversalEvent::ReleasePorts { ports } = &event {
                    for port in ports {
                        self.hosts[h].ports.remove(port);
                    }
                }
                self.records.push(Record {
                    at: self.now - self.base,
                    host: h,
                    event,
                });
            }
        }
    }

    fn deliver(&mut self, packet: Packet) {
        let now = self.now;
        match packet {
            Packet::Udp { src, dst, data } => match self.ingress_port(src, dst) {
                Some((h, None)) => {
                    self.hosts[h].core.handle_frame(now, src, &data);
                }
                Some((h, Some(port))) => {
                    self.hosts[h].core.handle_port_frame(now, port, src, &data);
                }
                None => self.filtered += 1,
            },
            Packet::Control { from, to, bytes } => {
                let msg = TraversalMsg::decode(&bytes).expect("valid message");
                let from_id = self.hosts[from].id;
                self.hosts[to].core.handle_control(now, from_id, msg);
            }
        }
    }

    /// Runs until simulated time `until` (relative to the start).
    pub fn run_until(&mut self, until: Duration) {
        let end = self.base + until;
        for _ in 0..10_000_000u64 {
            self.flush();
            let next_packet = self.queue.keys().next().map(|(t, _)| *t);
            let next_timer = self
                .hosts
                .iter()
                .filter_map(|h| h.core.poll_timeout())
                .min();
            let next = match (next_packet, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            if next_packet.is_some_and(|t| t <= self.now) {
                if let Some((_, packet)) = self.queue.pop_first() {
                    self.deliver(packet);
                }
                continue;
            }
            let now = self.now;
            for h in &mut self.hosts {
                if h.core.poll_timeout().is_some_and(|t| t <= now) {
                    h.core.handle_timeout(now);
                }
            }
        }
        self.flush();
        self.now = self.now.max(end);
    }

    /// Runs for `d` more.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.elapsed() + d;
        self.run_until(until);
    }

    /// Where a packet from `from`'s socket to `dst` would land right now
    /// (without loss; it does refresh `from`'s NAT binding like real
    /// traffic would).
    pub fn reachable(&mut self, from: HostId, dst: SocketAddr) -> Option<HostId> {
        // Like the path socket: through the probe port the core routes
        // `dst` through, if any.
        let local = match self.hosts[from].core.port_route(&dst) {
            Some(port) => port_local(self.hosts[from].local, port),
            None => self.hosts[from].local,
        };
        let src = self.egress_from(from, local, dst)?;
        self.ingress_port(src, dst).map(|(h, _)| h)
    }

    /// Flushes the NAT in front of `host` (a reboot / rebinding).
    pub fn flush_nat(&mut self, host: HostId) {
        if let Some(n) = self.hosts[host].nat {
            self.nats[n].flush();
        }
    }
}
