//! The agent's side of birthday-paradox probing (see `birthday`): frames
//! on probe ports, starting runs when they are due, sending what the
//! node-wide budget allows, and keeping or releasing probe ports when a
//! run ends.

use std::net::SocketAddr;
use std::time::Instant;

use relay_proto::wire::probe::{ProbeFrame, ProbeKind, TAG_LEN};
use relay_proto::wire::traversal::NatType;
use relay_proto::NodeId;

use super::super::birthday::{self, BirthdayRun, PortId, Role};
use super::super::output::{TraversalEvent, TraversalTransmit};
use super::super::punch::{CandidateOrigin, ProbeOut};
use super::Traversal;

impl Traversal {
    /// A frame arrived from `src` on our probe port `port` (birthday
    /// probing). Returns `false` when it is not a traversal frame. Only an
    /// authenticated frame from the peer the port was opened for counts;
    /// the first such source is routed through the port from then on
    /// ([`TraversalEvent::PortRoute`]).
    pub fn handle_port_frame(
        &mut self,
        now: Instant,
        port: PortId,
        src: SocketAddr,
        data: &[u8],
    ) -> bool {
        if !ProbeFrame::is_probe_frame(data) {
            return false;
        }
        let Some((peer, frame)) = self.authenticate(data) else {
            self.stats.probes_invalid += 1;
            return true;
        };
        if port == super::super::mapcheck::ALT_PORT {
            self.alt_port_frame(now, peer, src, &frame);
            self.drive(now);
            return true;
        }
        if self.lifetime.owns_port(port) {
            self.lifetime_port_frame(now, port, peer, src, &frame);
            self.drive(now);
            return true;
        }
        let owned = self.birthday.get(&peer).is_some_and(|r| r.owns_port(port))
            || self.held_ports.get(&peer) == Some(&port);
        if !owned {
            self.stats.probes_invalid += 1;
            return true;
        }
        self.stats.probes_received += 1;
        if let std::collections::btree_map::Entry::Vacant(e) = self.port_routes.entry(src) {
            e.insert(port);
            self.events.push_back(TraversalEvent::PortRoute {
                peer,
                addr: src,
                port,
            });
        }
        match frame.kind {
            ProbeKind::Probe => self.on_probe(now, peer, src, &frame),
            ProbeKind::Reply => self.on_reply(now, peer, src, &frame),
        }
        self.drive(now);
        true
    }

    /// Sends a probe from probe port `port` (an opening packet).
    pub(super) fn send_port_probe(&mut self, peer: NodeId, port: PortId, probe: ProbeOut) {
        let frame = ProbeFrame {
            kind: ProbeKind::Probe,
            flags: probe.flags,
            tx: probe.tx,
            sender: *self.me.as_bytes(),
            addr: probe.addr,
            tag: [0; TAG_LEN],
        };
        let Some(link) = self.links.get(peer.as_bytes()) else {
            return;
        };
        if let Ok(bytes) = link.key.seal(&frame) {
            self.stats.probes_sent += 1;
            self.transmits.push_back(TraversalTransmit::PortFrame {
                port,
                dst: probe.addr,
                data: bytes.to_vec(),
            });
        }
    }

    /// Starts due birthday runs and sends what the budget allows.
    pub(super) fn drive_birthday(&mut self, now: Instant) {
        let due: Vec<NodeId> = self
            .birthday_due
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in due {
            self.birthday_due.remove(&peer);
            self.begin_birthday(now, peer);
        }
        let mut sends = Vec::new();
        for (peer, run) in &mut self.birthday {
            // Once the punch is nominating or done, probing stops.
            if !self.sessions.get(peer).is_some_and(|s| s.is_probing()) {
                continue;
            }
            let mut out = Vec::new();
            run.handle_timeout(now, &mut self.limiter, &mut self.rng, &mut out);
            sends.extend(out.into_iter().map(|o| (*peer, o)));
        }
        for (peer, out) in sends {
            let Some(session) = self.sessions.get_mut(&peer) else {
                continue;
            };
            let Some(probe) = session.extra_probe(&mut self.rng, out.addr) else {
                continue;
            };
            self.stats.birthday_packets += 1;
            match out.port {
                Some(port) => self.send_port_probe(peer, port, probe),
                None => self.send_probe(peer, probe),
            }
        }
    }

    /// Decides, at its due time, whether `peer`'s session gets a birthday
    /// run: only for cone x symmetric, only if the ordinary punch has seen
    /// nothing from the peer, and within `max_runs`.
    pub(super) fn begin_birthday(&mut self, now: Instant, peer: NodeId) {
        let Some(session) = self.sessions.get(&peer) else {
            return;
        };
        if session.has_progress() || self.birthday.contains_key(&peer) {
            return;
        }
        let ours = self.nat.report().nat;
        let theirs = self
            .peer_nat(&peer)
            .filter(|nat| *nat != NatType::Unknown)
            .unwrap_or(session.peer_nat());
        let Some(role) = birthday::role(ours, theirs) else {
            return;
        };
        if self.birthday.len() >= self.config.birthday.max_runs {
            return;
        }
        // Opener: the peer's one mapped address; prober: the peer's IP.
        let target = session
            .candidates()
            .find(|(_, origin)| *origin == CandidateOrigin::Introduced)
            .map(|(addr, _)| addr);
        let first_port = self.next_port;
        let mut run = BirthdayRun::new(role, now, first_port, &self.config.birthday);
        if role == Role::Opener {
            self.next_port = self
                .next_port
                .wrapping_add(PortId::from(self.config.birthday.ports));
        }
        run.begin(target);
        if run.cancelled() {
            return;
        }
        self.stats.birthday_runs += 1;
        let until = run.deadline() + self.config.punch_grace;
        if let Some(session) = self.sessions.get_mut(&peer) {
            session.extend(until);
        }
        self.birthday.insert(peer, run);
    }

    /// `peer`'s plain punch just failed: starts birthday probing at once
    /// when it is on, none ran in this session yet, nothing came from the
    /// peer, and the NAT types leave a direct path possible
    /// ([`birthday::escalation_role`]). Returns whether the session goes
    /// on.
    pub(super) fn escalate(&mut self, now: Instant, peer: NodeId) -> bool {
        if !self.config.birthday.enabled
            || self.birthday.contains_key(&peer)
            || self.birthday.len() >= self.config.birthday.max_runs
        {
            return false;
        }
        let Some(session) = self.sessions.get(&peer) else {
            return false;
        };
        if session.heard_from_peer() {
            return false;
        }
        let ours = self.nat.report().nat;
        let theirs = self
            .peer_nat(&peer)
            .filter(|nat| *nat != NatType::Unknown)
            .unwrap_or(session.peer_nat());
        let Some(role) = birthday::escalation_role(ours, theirs, self.me < peer) else {
            return false;
        };
        let target = session
            .candidates()
            .find(|(_, origin)| *origin == CandidateOrigin::Introduced)
            .map(|(addr, _)| addr);
        let first_port = self.next_port;
        let mut run = BirthdayRun::new(role, now, first_port, &self.config.birthday);
        run.begin(target);
        if run.cancelled() {
            return false;
        }
        let until = run.deadline() + self.config.punch_grace;
        let resumed = self
            .sessions
            .get_mut(&peer)
            .is_some_and(|s| s.resume(until));
        if !resumed {
            return false;
        }
        if role == Role::Opener {
            self.next_port = self
                .next_port
                .wrapping_add(PortId::from(self.config.birthday.ports));
        }
        self.stats.birthday_runs += 1;
        self.stats.birthday_escalations += 1;
        self.birthday.insert(peer, run);
        true
    }

    /// Ends `peer`'s birthday run, if any: counts it, keeps the probe port
    /// a direct path at `direct` runs on, and releases the others.
    pub(super) fn end_birthday(&mut self, peer: &NodeId, direct: Option<SocketAddr>) {
        self.birthday_due.remove(peer);
        let Some(run) = self.birthday.remove(peer) else {
            return;
        };
        if direct.is_some() && run.sent() > 0 {
            self.stats.birthday_successes += 1;
            self.stats.birthday_packets_won += u64::from(run.sent());
        }
        let keep = direct
            .and_then(|addr| self.port_routes.get(&addr).copied())
            .filter(|port| run.owns_port(*port));
        if let Some(port) = keep {
            if let Some(old) = self.held_ports.insert(*peer, port) {
                self.release(vec![old]);
            }
        }
        let ports: Vec<PortId> = run.port_ids().filter(|p| Some(*p) != keep).collect();
        self.release(ports);
    }

    /// Releases the probe port a direct path to `peer` ran on.
    pub(super) fn release_held(&mut self, peer: &NodeId) {
        if let Some(port) = self.held_ports.remove(peer) {
            self.release(vec![port]);
        }
    }

    pub(super) fn release(&mut self, ports: Vec<PortId>) {
        if ports.is_empty() {
            return;
        }
        self.port_routes.retain(|_, p| !ports.contains(p));
        self.events
            .push_back(TraversalEvent::ReleasePorts { ports });
    }
}
