//! The agent's side of binding-lifetime measurement (see `lifetime`):
//! choosing an observer, carrying the measurement's probes and checks,
//! answering other nodes' checks as their observer, and applying the
//! derived keepalive interval.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use relay_proto::wire::probe::{ProbeFrame, ProbeKind, FLAG_BINDING, TAG_LEN, TX_LEN};
use relay_proto::wire::traversal::NatType;
use relay_proto::NodeId;

use super::super::birthday::PortId;
use super::super::lifetime::{LifetimeOut, LifetimeReport, Observer};
use super::super::output::{TraversalEvent, TraversalTransmit};
use super::{Traversal, TraversalMsg};

/// What the measurement last saw of our NAT: (type, reflexive IP).
pub(super) type NatSeen = (NatType, Option<IpAddr>);

impl Traversal {
    /// The binding-lifetime measurement and the keepalive interval in use.
    pub fn binding_lifetime(&self) -> LifetimeReport {
        let mut report = self.lifetime.report();
        report.keepalive = self.keepalives.interval();
        report
    }

    /// The keepalive interval for idle connections, once it follows from a
    /// measurement (or from our NAT being open); `None` before.
    pub fn learned_keepalive(&self) -> Option<std::time::Duration> {
        self.lifetime
            .has_result()
            .then(|| self.keepalives.interval())
    }

    /// The best observer for a measurement: a peer we reach directly that
    /// is not behind a symmetric NAT, open ones first, then the lowest RTT.
    fn pick_observer(&self) -> Option<Observer> {
        let rank = |nat: NatType| match nat {
            NatType::Open => Some(0u8),
            NatType::Unknown => Some(1),
            NatType::Cone => Some(2),
            NatType::Symmetric => None,
        };
        self.links
            .values()
            .filter(|l| l.node != self.me)
            .filter_map(|l| {
                let addr = l.observed?;
                Some(((rank(l.nat)?, l.rtt), l.node, addr, l.rtt))
            })
            .min_by_key(|(key, ..)| *key)
            .map(|(_, node, addr, rtt)| Observer { node, addr, rtt })
    }

    /// Starts a due measurement, follows NAT changes, applies the
    /// keepalive interval. Called from `drive`.
    pub(super) fn drive_lifetime(&mut self, now: Instant) {
        let report = self.nat.report();
        let seen: NatSeen = (report.nat, report.reflex_addr.map(|a| a.ip()));
        if seen != self.lifetime_nat {
            let (before, after) = (self.lifetime_nat.0, seen.0);
            // Learning the type (from unknown) is no change, except to open.
            let changed = match (before, after) {
                (_, NatType::Open) => before != NatType::Open,
                (NatType::Open, _) => after != NatType::Unknown,
                (NatType::Unknown, _) | (_, NatType::Unknown) => false,
                _ => true,
            };
            self.lifetime_nat = seen;
            if changed {
                let mut out = Vec::new();
                self.lifetime
                    .nat_changed(now, after == NatType::Open, &mut out);
                self.apply_lifetime(out);
            }
        }
        if self.lifetime.due(now) {
            match self.pick_observer() {
                Some(observer) => {
                    let first = self.next_port;
                    let n = self.lifetime.config().ports_per_measurement();
                    self.next_port = self
                        .next_port
                        .wrapping_add(PortId::try_from(n).unwrap_or(PortId::MAX));
                    let mut out = Vec::new();
                    self.lifetime
                        .start(now, observer, first, &mut self.rng, &mut out);
                    self.apply_lifetime(out);
                }
                None => self.lifetime.no_observer(),
            }
        }
        let mut out = Vec::new();
        self.lifetime.handle_timeout(now, &mut out);
        self.apply_lifetime(out);
        self.keepalives.set_interval(self.lifetime.keepalive());
    }

    /// A connection's facts arrived: a direct peer may serve as observer;
    /// the running measurement's observer must still be where it was.
    pub(super) fn lifetime_connection(&mut self, now: Instant, peer: NodeId) {
        let Some(link) = self.links.get(peer.as_bytes()) else {
            return;
        };
        let observed = link.observed;
        if observed.is_some() {
            self.lifetime.observer_available(now);
        }
        if self.lifetime.running_observer() == Some(peer) && observed.is_none() {
            self.lifetime_disconnect(now, &peer);
        }
    }

    /// `peer` is gone: its check budget, and the measurement if it was
    /// the observer.
    pub(super) fn lifetime_disconnect(&mut self, now: Instant, peer: &NodeId) {
        self.check_budget.forget(peer);
        let mut out = Vec::new();
        self.lifetime.observer_lost(now, peer, &mut out);
        self.apply_lifetime(out);
    }

    /// A `BINDING` frame on a probe port the measurement owns.
    pub(super) fn lifetime_port_frame(
        &mut self,
        now: Instant,
        port: PortId,
        peer: NodeId,
        src: SocketAddr,
        frame: &ProbeFrame,
    ) {
        if !frame.has(FLAG_BINDING) {
            self.stats.probes_invalid += 1;
            return;
        }
        self.stats.probes_received += 1;
        let mut out = Vec::new();
        let reply = frame.kind == ProbeKind::Reply;
        self.lifetime.handle_port_frame(
            now, port, &peer, src, reply, &frame.tx, frame.addr, &mut out,
        );
        self.apply_lifetime(out);
        self.keepalives.set_interval(self.lifetime.keepalive());
    }

    /// Observer side: a `BINDING` probe on our socket gets a reply with
    /// the address we saw it from, nothing else (no session, no path).
    pub(super) fn answer_binding_probe(
        &mut self,
        peer: NodeId,
        src: SocketAddr,
        frame: &ProbeFrame,
    ) {
        let reply = ProbeFrame {
            kind: ProbeKind::Reply,
            flags: FLAG_BINDING,
            tx: frame.tx,
            sender: *self.me.as_bytes(),
            addr: src,
            tag: [0; TAG_LEN],
        };
        self.send_sealed(peer, src, &reply);
    }

    /// Observer side: `from` asks for one probe to `addr`. Answered only
    /// for a connected peer we observe directly, only on the IP we observe
    /// it at, and within its budget.
    pub(super) fn on_binding_check(
        &mut self,
        now: Instant,
        from: NodeId,
        tx: [u8; TX_LEN],
        addr: SocketAddr,
    ) {
        let observed = self
            .links
            .get(from.as_bytes())
            .and_then(|l| l.observed)
            .map(|a| a.ip().to_canonical());
        if observed != Some(addr.ip().to_canonical()) || !self.check_budget.allow(now, from) {
            self.stats.binding_checks_refused += 1;
            return;
        }
        self.stats.binding_checks_answered += 1;
        let probe = ProbeFrame {
            kind: ProbeKind::Probe,
            flags: FLAG_BINDING,
            tx,
            sender: *self.me.as_bytes(),
            addr,
            tag: [0; TAG_LEN],
        };
        self.send_sealed(from, addr, &probe);
    }

    /// Carries out what the measurement asked for.
    fn apply_lifetime(&mut self, out: Vec<LifetimeOut>) {
        for o in out {
            match o {
                LifetimeOut::Open { port, dst, tx } => {
                    let Some(observer) = self.lifetime.running_observer() else {
                        continue;
                    };
                    let frame = ProbeFrame {
                        kind: ProbeKind::Probe,
                        flags: FLAG_BINDING,
                        tx,
                        sender: *self.me.as_bytes(),
                        addr: dst,
                        tag: [0; TAG_LEN],
                    };
                    let Some(link) = self.links.get(observer.as_bytes()) else {
                        continue;
                    };
                    if let Ok(bytes) = link.key.seal(&frame) {
                        self.stats.probes_sent += 1;
                        self.stats.lifetime_packets += 1;
                        self.transmits.push_back(TraversalTransmit::PortFrame {
                            port,
                            dst,
                            data: bytes.to_vec(),
                        });
                    }
                }
                LifetimeOut::Check { to, tx, addr } => {
                    self.stats.lifetime_packets += 1;
                    self.control(to, TraversalMsg::BindingCheck { tx, addr });
                }
                LifetimeOut::Release(ports) => {
                    if !ports.is_empty() {
                        self.events
                            .push_back(TraversalEvent::ReleasePorts { ports });
                    }
                }
            }
        }
    }
}
