//! The agent's side of mapping checks (see `mapcheck`): choosing an
//! observer, carrying a check's messages and probes, feeding its result to
//! the classifier, and, as an observer, offering our alternate port and
//! answering on it.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use relay_proto::wire::probe::{ProbeFrame, ProbeKind, FLAG_BINDING, TAG_LEN, TX_LEN};
use relay_proto::wire::traversal::NatType;
use relay_proto::NodeId;

use super::super::mapcheck::{CheckObserver, MapCheckOut, ALT_PORT};
use super::super::output::TraversalTransmit;
use super::{Traversal, TraversalMsg};

impl Traversal {
    /// Our alternate UDP port (a second socket on our IP), or `None` when
    /// there is none. Only a node with one offers mapping checks.
    pub fn handle_alt_port(&mut self, port: Option<u16>) {
        self.alt_port = port.filter(|p| *p != 0);
    }

    /// Our alternate port, if any.
    pub fn alt_port(&self) -> Option<u16> {
        self.alt_port
    }

    /// The best peer to check with: one that reached us directly and
    /// reported where it sees us, not behind a NAT of its own as far as we
    /// know (open first, then unknown), at a public address before a
    /// private one (a peer on our own LAN sees us untranslated), lowest
    /// RTT first; not one that refused lately.
    fn pick_check_observer(&self) -> Option<CheckObserver> {
        let rank = |nat: NatType| match nat {
            NatType::Open => Some(0u8),
            NatType::Unknown => Some(1),
            NatType::Cone | NatType::Symmetric => None,
        };
        self.nat
            .observations()
            .filter(|(node, _)| !self.mapcheck.is_excluded(node))
            .filter_map(|(node, _)| {
                let link = self.links.get(node.as_bytes())?;
                let addr = link.observed?;
                let key = (is_private(addr.ip()), rank(link.nat)?, link.rtt, link.node);
                Some((key, addr))
            })
            .min_by_key(|(key, _)| *key)
            .map(|((_, _, _, node), addr)| CheckObserver { node, addr })
    }

    /// Starts a due check and sends what a running one needs. Called
    /// from `drive`.
    pub(super) fn drive_mapcheck(&mut self, now: Instant) {
        if self.config.public_addr.is_some() {
            return;
        }
        let mut out = Vec::new();
        if self.mapcheck.due(now) {
            match self.pick_check_observer() {
                Some(observer) => self.mapcheck.start(now, observer, &mut self.rng, &mut out),
                None => self.mapcheck.no_observer(now),
            }
        }
        self.mapcheck.handle_timeout(now, &mut out);
        self.apply_mapcheck(out);
    }

    /// Asking side: `MappingPort` from `from`.
    pub(super) fn on_mapping_port(
        &mut self,
        now: Instant,
        from: NodeId,
        tx: [u8; TX_LEN],
        port: Option<u16>,
    ) {
        let mut out = Vec::new();
        self.mapcheck
            .handle_port(now, &from, &tx, port, &mut self.rng, &mut out);
        self.apply_mapcheck(out);
    }

    /// Asking side: a `BINDING` reply on our main socket. Feeds a
    /// finished check to the classifier.
    pub(super) fn on_binding_reply(
        &mut self,
        now: Instant,
        peer: NodeId,
        src: SocketAddr,
        frame: &ProbeFrame,
    ) {
        let (mine, result) = self
            .mapcheck
            .handle_reply(now, &peer, src, &frame.tx, frame.addr);
        if !mine {
            return;
        }
        let Some(result) = result else {
            return;
        };
        self.stats.mapping_checks += 1;
        // Our address as the observer's main port's connection left from.
        let local = self
            .nat
            .observations()
            .find(|(node, _)| **node == peer)
            .map(|(_, o)| o.local);
        let Some(local) = local else {
            return;
        };
        if let Some(report) = self.nat.handle_mapping_check(now, result, local) {
            self.nat_changed(report);
        }
    }

    /// Observer side: `from` asks for our alternate port. Offered only
    /// when `from` reports seeing us at our own address (then
    /// `ip:alt_port` is where it reaches the alternate port), and within
    /// its budget. Before its report arrives we stay silent (it asks
    /// again); over budget, too.
    pub(super) fn on_mapping_check(&mut self, now: Instant, from: NodeId, tx: [u8; TX_LEN]) {
        if !self.config.mapping.enabled {
            self.stats.mapping_refused += 1;
            self.control(from, TraversalMsg::MappingPort { tx, port: None });
            return;
        }
        let direct = self
            .links
            .get(from.as_bytes())
            .is_some_and(|l| l.observed.is_some());
        let seen = self
            .nat
            .observations()
            .find(|(node, _)| **node == from)
            .map(|(_, o)| o.observed == o.local);
        let port = match (self.alt_port, direct, seen) {
            (_, true, None) => return,
            (Some(port), true, Some(true)) if self.config.public_addr.is_none() => Some(port),
            _ => None,
        };
        if port.is_some() && self.offers.offer(now, from, tx).is_err() {
            self.stats.mapping_refused += 1;
            return;
        }
        if port.is_some() {
            self.stats.mapping_offers += 1;
        } else {
            self.stats.mapping_refused += 1;
        }
        self.control(from, TraversalMsg::MappingPort { tx, port });
    }

    /// Observer side: a frame on our alternate port. Only a `BINDING`
    /// probe from a peer holding a live offer is answered, from the same
    /// port and no larger; everything else is dropped.
    pub(super) fn alt_port_frame(
        &mut self,
        now: Instant,
        peer: NodeId,
        src: SocketAddr,
        frame: &ProbeFrame,
    ) {
        if frame.kind != ProbeKind::Probe
            || !frame.has(FLAG_BINDING)
            || !self.offers.answer(now, &peer)
        {
            self.stats.probes_invalid += 1;
            return;
        }
        self.stats.probes_received += 1;
        let reply = ProbeFrame {
            kind: ProbeKind::Reply,
            flags: FLAG_BINDING,
            tx: frame.tx,
            sender: *self.me.as_bytes(),
            addr: src,
            tag: [0; TAG_LEN],
        };
        let Some(link) = self.links.get(peer.as_bytes()) else {
            return;
        };
        if let Ok(bytes) = link.key.seal(&reply) {
            self.stats.probes_sent += 1;
            self.transmits.push_back(TraversalTransmit::PortFrame {
                port: ALT_PORT,
                dst: src,
                data: bytes.to_vec(),
            });
        }
    }

    /// Carries out what the check asked for.
    fn apply_mapcheck(&mut self, out: Vec<MapCheckOut>) {
        for o in out {
            match o {
                MapCheckOut::Ask { to, tx } => self.control(to, TraversalMsg::MappingCheck { tx }),
                MapCheckOut::Probe { to, dst, tx } => {
                    let frame = ProbeFrame {
                        kind: ProbeKind::Probe,
                        flags: FLAG_BINDING,
                        tx,
                        sender: *self.me.as_bytes(),
                        addr: dst,
                        tag: [0; TAG_LEN],
                    };
                    self.send_sealed(to, dst, &frame);
                }
            }
        }
    }
}

/// Whether `ip` is a private, shared (carrier-grade NAT), loopback or
/// link-local address: a peer there is on our side of some NAT.
fn is_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_private;

    #[test]
    fn private_addresses_are_told_apart() {
        for ip in [
            "10.1.0.2",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.3.2",
            "127.0.0.1",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
            "::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "198.51.100.1",
            "203.0.113.10",
            "8.8.8.8",
            "100.128.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
