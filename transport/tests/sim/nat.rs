//! Modelled NATs for the traversal simulator, after RFC 4787's terms.
//!
//! | kind                | mapping                     | filtering                    |
//! |---------------------|-----------------------------|------------------------------|
//! | full cone           | endpoint-independent        | endpoint-independent         |
//! | address-restricted  | endpoint-independent        | address-dependent            |
//! | port-restricted     | endpoint-independent        | address-and-port-dependent   |
//! | symmetric           | address-and-port-dependent, | address-and-port-dependent   |
//! |                     | random ports (seeded)       |                              |
//!
//! No hairpinning. Bindings expire `timeout` after the last outbound packet
//! (outbound refresh only, RFC 4787 REQ-6); a flush drops them all (a NAT
//! reboot).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;

/// How a site reaches the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatKind {
    /// No NAT: the host has a public address.
    Open,
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    AddressRestricted,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestricted,
    /// Endpoint-dependent mapping with random ports.
    Symmetric,
}

#[derive(Debug, Clone)]
struct Binding {
    internal: SocketAddr,
    external_port: u16,
    /// Remote endpoints this binding has sent to.
    sent_to: BTreeSet<SocketAddr>,
    last_out: Instant,
}

/// One NAT box with one public IP.
#[derive(Debug)]
pub struct Nat {
    /// Its behaviour.
    pub kind: NatKind,
    /// Its public IP.
    pub public_ip: Ipv4Addr,
    /// Binding lifetime without outbound traffic.
    pub timeout: Duration,
    /// Key: (internal, destination for endpoint-dependent mapping).
    bindings: BTreeMap<(SocketAddr, Option<SocketAddr>), Binding>,
    next_port: u16,
    rng: StdRng,
}

impl Nat {
    /// A NAT of `kind` at `public_ip`.
    pub fn new(kind: NatKind, public_ip: Ipv4Addr, timeout: Duration, rng: StdRng) -> Self {
        Self {
            kind,
            public_ip,
            timeout,
            bindings: BTreeMap::new(),
            next_port: 40_000,
            rng,
        }
    }

    /// Forgets every binding (a reboot, or a conntrack flush).
    pub fn flush(&mut self) {
        self.bindings.clear();
    }

    fn expire(&mut self, now: Instant) {
        let timeout = self.timeout;
        self.bindings
            .retain(|_, b| now.saturating_duration_since(b.last_out) < timeout);
    }

    fn port_in_use(&self, port: u16) -> bool {
        self.bindings.values().any(|b| b.external_port == port)
    }

    fn allocate(&mut self) -> u16 {
        match self.kind {
            NatKind::Symmetric => loop {
                let port = self.rng.gen_range(1024..=65535u16);
                if !self.port_in_use(port) {
                    return port;
                }
            },
            _ => loop {
                let port = self.next_port;
                self.next_port = self.next_port.wrapping_add(1).max(1024);
                if !self.port_in_use(port) {
                    return port;
                }
            },
        }
    }

    /// Translates a packet from `internal` to `dst`; returns its external
    /// source.
    pub fn outbound(&mut self, now: Instant, internal: SocketAddr, dst: SocketAddr) -> SocketAddr {
        self.expire(now);
        let key = match self.kind {
            NatKind::Symmetric => (internal, Some(dst)),
            _ => (internal, None),
        };
        if !self.bindings.contains_key(&key) {
            let external_port = self.allocate();
            self.bindings.insert(
                key,
                Binding {
                    internal,
                    external_port,
                    sent_to: BTreeSet::new(),
                    last_out: now,
                },
            );
        }
        let ip = self.public_ip;
        let binding = self
            .bindings
            .get_mut(&key)
            .expect("binding was just inserted");
        binding.sent_to.insert(dst);
        binding.last_out = now;
        SocketAddr::new(IpAddr::V4(ip), binding.external_port)
    }

    /// Translates a packet from `src` to our external `port`; returns the
    /// internal destination if a binding exists and the filter lets it in.
    pub fn inbound(&mut self, now: Instant, src: SocketAddr, port: u16) -> Option<SocketAddr> {
        self.expire(now);
        let binding = self.bindings.values().find(|b| b.external_port == port)?;
        let allowed = match self.kind {
            NatKind::Open | NatKind::FullCone => true,
            NatKind::AddressRestricted => binding.sent_to.iter().any(|d| d.ip() == src.ip()),
            NatKind::PortRestricted | NatKind::Symmetric => binding.sent_to.contains(&src),
        };
        allowed.then_some(binding.internal)
    }

    /// Whether an inbound packet would pass, without side effects other
    /// than expiry.
    pub fn would_accept(&mut self, now: Instant, src: SocketAddr, port: u16) -> bool {
        self.inbound(now, src, port).is_some()
    }
}
