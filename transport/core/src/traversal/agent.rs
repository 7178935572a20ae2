//! The traversal agent: one node's whole traversal state, composed of the
//! NAT classifier, the introducer, punch sessions and keepalives.
//!
//! It is sans-IO in the style of quinn-proto: the driver feeds inputs with
//! `handle_*(now, ..)`, sends what [`Traversal::poll_transmit`] yields,
//! reacts to [`Traversal::poll_event`], and calls
//! [`Traversal::handle_timeout`] at [`Traversal::poll_timeout`]. Nothing in
//! here reads a clock, touches a socket or spawns a task; randomness comes
//! from a seeded generator, so a simulated world replays exactly.
//!
//! Probe frames are only acted on when their tag verifies with the key of
//! the peer they claim to come from; anything else is counted and dropped
//! without allocating state. Replies are the same size as probes.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use relay_proto::wire::probe::{
    ProbeFrame, ProbeKind, FLAG_BINDING, FLAG_KEEPALIVE, FLAG_NOMINATE, PROBE_LEN, TAG_LEN,
};
use relay_proto::wire::traversal::{Introduction, NatType, RejectReason, TraversalMsg};
use relay_proto::NodeId;

use super::auth::ProbeKey;
use super::birthday::{BirthdayRun, PortId, RateLimiter};
use super::config::TraversalConfig;
use super::early::{EarlyIntros, EarlyMsgs};
use super::error::{TraversalError, TraversalErrorKind};
use super::introducer::{Introducer, Side};
use super::keepalive::Keepalives;
use super::lifetime::{CheckBudget, LifetimeProbe};
use super::mapcheck::{MappingProbe, OfferBudget};
use super::mapped::{add_mapped_candidate, mapped_probe_delay};
use super::nat::{NatClassifier, NatReport, Observation};
use super::output::{TraversalEvent, TraversalTransmit};
use super::punch::{Outcome, ProbeOut, PunchSession, PunchTiming};
use super::roam::{AddressWatch, Roaming};
use super::stats::TraversalStats;

/// What the driver knows about one live connection.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The pair's shared probe key (the transport exports it from the
    /// connection's handshake).
    pub probe_key: [u8; 32],
    /// The real address we see the peer at, when the connection runs on a
    /// direct path (`None` when relayed).
    pub observed: Option<SocketAddr>,
    /// The connection's smoothed RTT.
    pub rtt: Duration,
}

#[derive(Debug)]
struct Link {
    node: NodeId,
    key: ProbeKey,
    /// Tells the connection the key came from apart from a later one.
    key_id: [u8; 8],
    observed: Option<SocketAddr>,
    rtt: Duration,
    nat: NatType,
    why: Option<String>,
    last_session_end: Option<Instant>,
    /// The port-mapped address the peer published.
    mapped: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    req: u64,
    via: NodeId,
    attempts: u32,
    next: Instant,
    /// Our introduction arrived; the request stays open until a probe from
    /// the peer shows that its half arrived too.
    introduced: bool,
}

/// The short status reason for a failed punch.
pub fn failure_why(ours: NatType, theirs: NatType) -> String {
    if ours == NatType::Symmetric || theirs == NatType::Symmetric {
        format!("{ours} x {theirs}")
    } else {
        "punch-failed: timeout".to_string()
    }
}

/// One node's traversal core. See the module docs.
#[derive(Debug)]
pub struct Traversal {
    me: NodeId,
    config: TraversalConfig,
    rng: StdRng,
    nat: NatClassifier,
    introducer: Introducer,
    keepalives: Keepalives,
    links: BTreeMap<[u8; 32], Link>,
    sessions: BTreeMap<NodeId, PunchSession>,
    pending: BTreeMap<NodeId, Pending>,
    direct: BTreeMap<NodeId, SocketAddr>,
    /// Our own port-mapped address (see [`super::mapped`]).
    mapped: Option<SocketAddr>,
    transmits: VecDeque<TraversalTransmit>,
    events: VecDeque<TraversalEvent>,
    stats: TraversalStats,
    /// When each session's birthday run is due to be considered.
    birthday_due: BTreeMap<NodeId, Instant>,
    /// Birthday runs, by peer (at most `birthday.max_runs`).
    birthday: BTreeMap<NodeId, BirthdayRun>,
    /// The node-wide budget of birthday packets.
    limiter: RateLimiter,
    /// The next probe port id to hand out.
    next_port: PortId,
    /// Addresses that must be sent to from a probe port.
    port_routes: BTreeMap<SocketAddr, PortId>,
    /// The probe port a direct path found by birthday probing runs on.
    held_ports: BTreeMap<NodeId, PortId>,
    /// The latest instant seen by `drive`.
    last_now: Option<Instant>,
    /// Introductions that arrived before their peer's connection.
    early: EarlyIntros,
    /// Control messages that arrived before their sender's connection.
    early_msgs: EarlyMsgs,
    /// Binding-lifetime measurement (`lifetime`).
    lifetime: LifetimeProbe,
    /// Our NAT as the measurement last saw it.
    lifetime_nat: lifetime_glue::NatSeen,
    /// Observer side: binding checks each peer may still ask for.
    check_budget: CheckBudget,
    /// Notices changes of our own address (see `roam`).
    watch: AddressWatch,
    /// Re-punches after an address change.
    roaming: Roaming,
    /// Mapping checks we ask for (`mapcheck`).
    mapcheck: MappingProbe,
    /// Observer side: mapping checks we offer.
    offers: OfferBudget,
    /// Our alternate UDP port, if the driver opened one.
    alt_port: Option<u16>,
}

impl Traversal {
    /// A core for node `me`. `seed` drives transaction ids and request ids;
    /// give it fresh randomness outside tests.
    pub fn new(me: NodeId, config: TraversalConfig, seed: [u8; 32]) -> Self {
        let nat = NatClassifier::new(
            config.public_addr,
            config.reclassify_interval,
            config.observation_ttl,
            config.reflex_timeout,
        );
        let introducer = Introducer::new(
            config.introducer,
            config.intro_burst,
            config.intro_refill,
            config.fire_margin,
        );
        let keepalives = Keepalives::new(
            config.keepalive_interval,
            config.keepalive_retry,
            config.keepalive_misses,
        );
        let lifetime = LifetimeProbe::new(config.lifetime.clone(), config.keepalive_interval);
        let check_budget =
            CheckBudget::new(config.lifetime.check_burst, config.lifetime.check_refill);
        let limiter = RateLimiter::new(config.birthday.rate, config.birthday.burst);
        let watch = AddressWatch::new(&config.roam);
        let roaming = Roaming::new(&config.roam);
        let mapcheck = MappingProbe::new(config.mapping.clone());
        let offers = OfferBudget::new(&config.mapping);
        Self {
            me,
            config,
            rng: StdRng::from_seed(seed),
            nat,
            introducer,
            keepalives,
            links: BTreeMap::new(),
            sessions: BTreeMap::new(),
            pending: BTreeMap::new(),
            direct: BTreeMap::new(),
            mapped: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: TraversalStats::default(),
            birthday_due: BTreeMap::new(),
            birthday: BTreeMap::new(),
            limiter,
            next_port: 0,
            port_routes: BTreeMap::new(),
            held_ports: BTreeMap::new(),
            last_now: None,
            early: EarlyIntros::default(),
            early_msgs: EarlyMsgs::default(),
            lifetime,
            lifetime_nat: (NatType::Unknown, None),
            check_budget,
            watch,
            roaming,
            mapcheck,
            offers,
            alt_port: None,
        }
    }

    // ---- queries -------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &TraversalConfig {
        &self.config
    }

    /// Our NAT type and reflexive address.
    pub fn nat(&self) -> NatReport {
        self.nat.report()
    }

    /// Every live observation of our address (for `netcheck`).
    pub fn observations(&self) -> impl Iterator<Item = (&NodeId, &Observation)> {
        self.nat.observations()
    }

    /// Counters.
    pub fn stats(&self) -> &TraversalStats {
        &self.stats
    }

    /// The direct path found for `peer`, if any.
    pub fn direct_path(&self, peer: &NodeId) -> Option<SocketAddr> {
        self.direct.get(peer).copied()
    }

    /// Why `peer` is not direct, after a failure ("symmetric x symmetric",
    /// "punch-failed: timeout", ...).
    pub fn why(&self, peer: &NodeId) -> Option<&str> {
        self.links.get(peer.as_bytes())?.why.as_deref()
    }

    /// The NAT type `peer` reported.
    pub fn peer_nat(&self, peer: &NodeId) -> Option<NatType> {
        self.links.get(peer.as_bytes()).map(|l| l.nat)
    }

    /// Our port-mapped address, if we hold a mapping.
    pub fn port_mapping(&self) -> Option<SocketAddr> {
        self.mapped
    }

    /// The port-mapped address `peer` published.
    pub fn peer_mapping(&self, peer: &NodeId) -> Option<SocketAddr> {
        self.links.get(peer.as_bytes())?.mapped
    }

    /// The probe port packets to `addr` must leave from, if any (a direct
    /// path found by birthday probing).
    pub fn port_route(&self, addr: &SocketAddr) -> Option<PortId> {
        self.port_routes.get(addr).copied()
    }

    /// Whether a birthday run towards `peer` is sending.
    pub fn is_birthday_probing(&self, peer: &NodeId) -> bool {
        self.birthday
            .get(peer)
            .is_some_and(|r| r.started() && !r.cancelled())
    }

    /// Whether a punch towards `peer` is in progress.
    pub fn is_punching(&self, peer: &NodeId) -> bool {
        self.sessions.contains_key(peer) || self.pending.contains_key(peer)
    }

    // ---- outputs -------------------------------------------------------

    /// The next thing to send.
    pub fn poll_transmit(&mut self) -> Option<TraversalTransmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TraversalEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut at = self.nat.poll_timeout();
        let mut take = |t: Option<Instant>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        take(self.keepalives.poll_timeout());
        take(self.lifetime.poll_timeout());
        take(self.roaming.poll_timeout());
        if self.config.public_addr.is_none() {
            take(self.mapcheck.poll_timeout());
        }
        for s in self.sessions.values() {
            take(s.poll_timeout());
        }
        for p in self.pending.values() {
            take(Some(p.next));
        }
        for due in self.birthday_due.values() {
            take(Some(*due));
        }
        if let Some(now) = self.last_now {
            for (peer, run) in &self.birthday {
                if self.sessions.get(peer).is_some_and(|s| s.is_probing()) {
                    take(run.poll_timeout(now, &self.limiter));
                }
            }
        }
        at
    }

    // ---- inputs --------------------------------------------------------

    /// A peer reports the address it sees our socket at. `observer_ip` is
    /// the observer's own IP, `local` the address our traffic left from.
    pub fn handle_observed_addr(
        &mut self,
        now: Instant,
        observer: NodeId,
        observer_ip: IpAddr,
        observed: SocketAddr,
        local: SocketAddr,
    ) {
        // First: an observation that confirms our move starts re-learning
        // before it is classified.
        self.roam_observed(now, observer_ip, observed);
        self.mapcheck.observer_available(now);
        if let Some(report) =
            self.nat
                .handle_observation(now, observer, observer_ip, observed, local)
        {
            self.nat_changed(report);
        }
        self.drive(now);
    }

    /// A connection to `peer` is up, or its facts changed.
    pub fn handle_connection(&mut self, now: Instant, peer: NodeId, info: ConnectionInfo) {
        self.nat.start(now);
        if peer == self.me {
            return;
        }
        let key = ProbeKey::new(&info.probe_key);
        let key_id = connection_id(&info.probe_key);
        match self.links.get_mut(peer.as_bytes()) {
            Some(link) => {
                let replaced = link.key_id != key_id;
                link.key = key;
                link.key_id = key_id;
                link.observed = info.observed;
                link.rtt = info.rtt;
                if replaced {
                    // A new connection replaced the one this link knew (a
                    // dial completed twice, e.g. when a lossy handshake
                    // made the first one time out at the dialer). A punch
                    // begun on the old one has spent its schedule, and
                    // would swallow the next introduction and end soon:
                    // start afresh.
                    link.last_session_end = None;
                    self.sessions.remove(&peer);
                    self.pending.remove(&peer);
                }
            }
            None => {
                self.links.insert(
                    *peer.as_bytes(),
                    Link {
                        node: peer,
                        key,
                        key_id,
                        observed: info.observed,
                        rtt: info.rtt,
                        nat: NatType::Unknown,
                        why: None,
                        last_session_end: None,
                        mapped: None,
                    },
                );
                let nat = self.nat.report().nat;
                self.control(peer, TraversalMsg::NatInfo { nat });
                if let Some(addr) = self.mapped {
                    self.control(peer, TraversalMsg::PortMapped { addr: Some(addr) });
                }
                // Its introduction, and its own first messages, may have
                // beaten the connection here (early.rs).
                if let Some((at, intro)) = self.early.take(now, &peer) {
                    self.on_introduce(at, intro);
                }
                for (at, msg) in self.early_msgs.take(now, &peer) {
                    self.dispatch_control(now, at, peer, msg);
                }
                self.drive(now);
            }
        }
        self.lifetime_connection(now, peer);
        match self.links.get(peer.as_bytes()).and_then(|l| l.observed) {
            Some(_) => self.mapcheck.observer_available(now),
            None => self.mapcheck.observer_lost(&peer),
        }
        self.drive(now);
    }

    /// Our port mapping changed: `Some(external address)` while we hold
    /// one. Every peer is told, so introducers can hand it out.
    pub fn handle_port_mapping(&mut self, now: Instant, addr: Option<SocketAddr>) {
        let addr = addr.filter(super::mapped::valid_mapped);
        if addr == self.mapped {
            return;
        }
        self.mapped = addr;
        let peers: Vec<NodeId> = self.links.values().map(|l| l.node).collect();
        for peer in peers {
            self.control(peer, TraversalMsg::PortMapped { addr });
        }
        if addr.is_some() {
            // A way in that the failed punches did not have: try those
            // peers again now (their requests carry the mapping to the
            // introducer first), not a retry period later.
            let failed: Vec<NodeId> = self
                .links
                .values()
                .filter(|l| l.why.is_some())
                .map(|l| l.node)
                .filter(|p| !self.is_punching(p) && !self.direct.contains_key(p))
                .collect();
            for peer in failed {
                self.events.push_back(TraversalEvent::Repunch { peer });
            }
        }
        self.drive(now);
    }

    /// The connection to `peer` is gone: forget everything about it.
    pub fn handle_disconnect(&mut self, now: Instant, peer: &NodeId) {
        self.links.remove(peer.as_bytes());
        self.early_msgs.forget(peer);
        self.sessions.remove(peer);
        self.pending.remove(peer);
        self.direct.remove(peer);
        self.keepalives.remove(peer);
        self.introducer.forget(peer);
        self.roaming.forget(peer);
        self.end_birthday(peer, None);
        self.release_held(peer);
        self.lifetime_disconnect(now, peer);
        self.mapcheck.observer_lost(peer);
        self.offers.forget(peer);
        if let Some(report) = self.nat.remove_observer(peer) {
            self.nat_changed(report);
        }
        self.drive(now);
    }

    /// Traffic from `peer` arrived on its direct path (keeps keepalives
    /// quiet while the path is busy).
    pub fn handle_path_activity(&mut self, now: Instant, peer: &NodeId) {
        self.keepalives.activity(now, peer, None);
    }

    /// The driver moved `peer` off its direct path: stop keeping it.
    pub fn forget_direct_path(&mut self, peer: &NodeId) {
        self.direct.remove(peer);
        self.keepalives.remove(peer);
        self.release_held(peer);
    }

    /// Asks introducer `via` to introduce us to `peer`. Progress and
    /// failures arrive as events; immediate refusals are returned.
    pub fn request_direct(
        &mut self,
        now: Instant,
        peer: NodeId,
        via: Option<NodeId>,
    ) -> Result<(), TraversalError> {
        self.nat.start(now);
        if peer == self.me {
            return Err(TraversalError::new(
                TraversalErrorKind::Unsupported,
                "cannot punch towards ourselves",
            ));
        }
        if !self.links.contains_key(peer.as_bytes()) {
            return Err(TraversalError::new(
                TraversalErrorKind::PeerNotReachable,
                format!("no connection to {} to key probes with", peer.fmt_short()),
            ));
        }
        let Some(via) = via else {
            return Err(TraversalError::new(
                TraversalErrorKind::RendezvousNoRelay,
                "no introducer connected to both sides",
            ));
        };
        if via == peer || via == self.me || !self.links.contains_key(via.as_bytes()) {
            return Err(TraversalError::new(
                TraversalErrorKind::RendezvousNoRelay,
                format!("introducer {} is not connected", via.fmt_short()),
            ));
        }
        if self.is_punching(&peer) {
            return Ok(());
        }
        let req = self.rng.next_u64();
        self.pending.insert(
            peer,
            Pending {
                req,
                via,
                attempts: 1,
                next: now + self.config.request_retry,
                introduced: false,
            },
        );
        // Control messages are unreliable: refresh the introducer's copy of
        // our NAT type and mapping with every request, so a lost
        // announcement costs one retry, not the mapped candidate or the
        // NAT type the introduction carries (birthday probing needs it).
        let nat = self.nat.report().nat;
        self.control(via, TraversalMsg::NatInfo { nat });
        if let Some(addr) = self.mapped {
            self.control(via, TraversalMsg::PortMapped { addr: Some(addr) });
        }
        self.control(via, TraversalMsg::ReachRequest { req, target: peer });
        Ok(())
    }

    /// A traversal control message from a connected peer.
    pub fn handle_control(&mut self, now: Instant, from: NodeId, msg: TraversalMsg) {
        if from == self.me || msg.validate().is_err() {
            return;
        }
        if !self.links.contains_key(from.as_bytes()) {
            // Its connection is not reported yet: hold it (early.rs).
            self.early_msgs.push(now, from, msg);
            return;
        }
        self.dispatch_control(now, now, from, msg);
        self.drive(now);
    }

    /// Acts on `msg` from the linked peer `from`, which arrived at `at`
    /// (earlier than `now` when it was held for its connection).
    fn dispatch_control(&mut self, now: Instant, at: Instant, from: NodeId, msg: TraversalMsg) {
        match msg {
            TraversalMsg::NatInfo { nat } => {
                if let Some(link) = self.links.get_mut(from.as_bytes()) {
                    link.nat = nat;
                }
            }
            TraversalMsg::ReachRequest { req, target } => self.introduce(now, from, req, target),
            TraversalMsg::PortMapped { addr } => {
                if let Some(link) = self.links.get_mut(from.as_bytes()) {
                    link.mapped = addr.filter(super::mapped::valid_mapped);
                }
            }
            TraversalMsg::Introduce(intro) => self.on_introduce(at, intro),
            TraversalMsg::BindingCheck { tx, addr } => self.on_binding_check(now, from, tx, addr),
            TraversalMsg::MappingCheck { tx } => self.on_mapping_check(now, from, tx),
            TraversalMsg::MappingPort { tx, port } => self.on_mapping_port(now, from, tx, port),
            TraversalMsg::Rejected {
                req,
                target,
                reason,
            } => self.on_rejected(from, req, target, reason),
        }
    }

    /// One of our UDP frames arrived from `src`. Returns `false` when it is
    /// not a traversal frame (the caller may hand it elsewhere).
    pub fn handle_frame(&mut self, now: Instant, src: SocketAddr, data: &[u8]) -> bool {
        if !ProbeFrame::is_probe_frame(data) {
            return false;
        }
        let Some((peer, frame)) = self.authenticate(data) else {
            self.stats.probes_invalid += 1;
            return true;
        };
        self.stats.probes_received += 1;
        match frame.kind {
            // Binding-lifetime probes are answered and nothing else.
            ProbeKind::Probe if frame.has(FLAG_BINDING) => {
                self.answer_binding_probe(peer, src, &frame)
            }
            ProbeKind::Reply if frame.has(FLAG_BINDING) => {
                self.on_binding_reply(now, peer, src, &frame)
            }
            ProbeKind::Probe => self.on_probe(now, peer, src, &frame),
            ProbeKind::Reply => self.on_reply(now, peer, src, &frame),
        }
        self.drive(now);
        true
    }

    /// Timers are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.drive(now);
    }

    // ---- internals -----------------------------------------------------

    fn control(&mut self, to: NodeId, msg: TraversalMsg) {
        self.transmits
            .push_back(TraversalTransmit::Control { to, msg });
    }

    fn nat_changed(&mut self, report: NatReport) {
        self.events.push_back(TraversalEvent::NatChanged(report));
        let peers: Vec<NodeId> = self.links.values().map(|l| l.node).collect();
        for peer in peers {
            self.control(peer, TraversalMsg::NatInfo { nat: report.nat });
        }
    }

    fn record_failure(&mut self, peer: NodeId, error: TraversalError, why: String) {
        if let Some(now) = self.last_now {
            self.roaming.settled(now, &peer, false);
        }
        self.stats.relay_fallbacks += 1;
        self.stats.last_error = Some(error.to_string());
        if let Some(link) = self.links.get_mut(peer.as_bytes()) {
            link.why = Some(why.clone());
        }
        self.events
            .push_back(TraversalEvent::PunchFailed { peer, error, why });
    }

    fn side(&self, node: &NodeId) -> Option<Side> {
        self.links.get(node.as_bytes()).map(|l| Side {
            node: l.node,
            observed: l.observed,
            rtt: l.rtt,
            nat: l.nat,
        })
    }

    fn introduce(&mut self, now: Instant, from: NodeId, req: u64, target: NodeId) {
        let Some(requester) = self.side(&from) else {
            return;
        };
        let target_side = if target == from || target == self.me {
            None
        } else {
            self.side(&target)
        };
        match self
            .introducer
            .handle_request(now, req, &requester, target_side.as_ref())
        {
            Ok((mut to_requester, mut to_target)) => {
                // Port-mapped candidates, on the IP we observe (mapped.rs).
                let target_link = self.links.get(target.as_bytes());
                add_mapped_candidate(
                    &mut to_requester.candidates,
                    target_link.and_then(|l| l.observed),
                    target_link.and_then(|l| l.mapped),
                );
                let requester_link = self.links.get(from.as_bytes());
                add_mapped_candidate(
                    &mut to_target.candidates,
                    requester_link.and_then(|l| l.observed),
                    requester_link.and_then(|l| l.mapped),
                );
                self.stats.introductions += 1;
                self.control(from, TraversalMsg::Introduce(to_requester));
                self.control(target, TraversalMsg::Introduce(to_target));
            }
            Err(reason) => {
                self.stats.introductions_rejected += 1;
                self.control(
                    from,
                    TraversalMsg::Rejected {
                        req,
                        target,
                        reason,
                    },
                );
            }
        }
    }

    fn on_introduce(&mut self, now: Instant, intro: Introduction) {
        let peer = intro.peer;
        if peer == self.me {
            return;
        }
        if !self.links.contains_key(peer.as_bytes()) {
            // Only the side that did not ask can be told before its end of
            // the connection is up: hold it until then (early.rs).
            if intro.requester == peer {
                self.early.push(now, intro);
            }
            return;
        }
        let mut fire_at = now + Duration::from_millis(u64::from(intro.fire_in_ms));
        if self.mapped.is_some() {
            // Let the peer's probes reach our mapping first (mapped.rs).
            let rtt = self.links.get(peer.as_bytes()).map(|l| l.rtt);
            fire_at += mapped_probe_delay(rtt.unwrap_or_default());
        }
        if intro.requester == self.me {
            let retry = self.config.request_retry;
            match self.pending.get_mut(&peer) {
                Some(p) if p.req == intro.req => {
                    // If no probe from the peer shows up soon after the fire
                    // time, its half was lost: ask again (free of budget).
                    if !p.introduced {
                        p.introduced = true;
                        p.next = fire_at + retry;
                    }
                }
                // The peer's probes started a session first: merge below.
                _ if self.sessions.contains_key(&peer) => {}
                _ => return,
            }
        } else if intro.requester != peer {
            return;
        }
        if let Some(link) = self.links.get_mut(peer.as_bytes()) {
            if intro.peer_nat != NatType::Unknown {
                link.nat = intro.peer_nat;
            }
        }
        if let Some(session) = self.sessions.get_mut(&peer) {
            // Running already (a duplicate, or started by the peer's
            // probes): the introduced candidates join it.
            session.add_introduced(fire_at, &intro.candidates);
            return;
        }
        self.start_session(peer, intro.req, &intro.candidates, intro.peer_nat, fire_at);
    }

    fn start_session(
        &mut self,
        peer: NodeId,
        req: u64,
        candidates: &[SocketAddr],
        peer_nat: NatType,
        fire_at: Instant,
    ) {
        if self.sessions.len() >= self.config.max_sessions {
            return;
        }
        let timing = PunchTiming {
            schedule: self.config.probe_schedule.clone(),
            grace: self.config.punch_grace,
            nominate_attempts: self.config.nominate_attempts,
            nominate_interval: self.config.nominate_interval,
            peer_reflexive: self.config.peer_reflexive,
        };
        let session = PunchSession::new(
            fire_at,
            peer,
            req,
            self.me < peer,
            candidates,
            peer_nat,
            timing,
        );
        self.stats.punches_attempted += 1;
        self.sessions.insert(peer, session);
        if self.config.birthday.enabled {
            self.birthday_due
                .insert(peer, fire_at + self.config.birthday.start_delay);
        }
        // Tell the peer our NAT type directly too (its `why` on failure
        // depends on it).
        let nat = self.nat.report().nat;
        self.control(peer, TraversalMsg::NatInfo { nat });
    }

    /// Whether a valid probe from `peer` at `src` may start a session: its
    /// introduction may have been lost on the way to us. Not for
    /// keepalives, not on the current direct path, not while or shortly
    /// after another session with the peer.
    fn may_answer_with_session(
        &self,
        now: Instant,
        peer: &NodeId,
        src: SocketAddr,
        flags: u8,
    ) -> bool {
        if flags & FLAG_KEEPALIVE != 0
            || self.sessions.contains_key(peer)
            || self.direct.get(peer) == Some(&src)
            || !self.config.peer_reflexive
        {
            return false;
        }
        let quiet = self
            .config
            .probe_schedule
            .last()
            .copied()
            .unwrap_or_default()
            + self.config.punch_grace;
        match self.links.get(peer.as_bytes()) {
            Some(link) => link.last_session_end.is_none_or(|t| now >= t + quiet),
            None => false,
        }
    }

    fn on_rejected(&mut self, from: NodeId, req: u64, target: NodeId, reason: RejectReason) {
        match self.pending.get(&target) {
            Some(p) if p.req == req && p.via == from => {}
            _ => return,
        }
        self.pending.remove(&target);
        let kind = match reason {
            RejectReason::NotConnected => TraversalErrorKind::PeerNotReachable,
            RejectReason::Budget | RejectReason::NoObservedAddr | RejectReason::Disabled => {
                TraversalErrorKind::RendezvousRejected
            }
        };
        let error = TraversalError::new(
            kind,
            format!("introducer {}: {}", from.fmt_short(), reason.as_str()),
        );
        let why = error.to_string();
        self.record_failure(target, error, why);
    }

    fn authenticate(&self, data: &[u8]) -> Option<(NodeId, ProbeFrame)> {
        let bytes: &[u8; PROBE_LEN] = data.try_into().ok()?;
        let frame = ProbeFrame::parse(bytes).ok()?;
        let link = self.links.get(&frame.sender)?;
        if !link.key.verify(bytes) {
            return None;
        }
        Some((link.node, frame))
    }

    fn on_probe(&mut self, now: Instant, peer: NodeId, src: SocketAddr, frame: &ProbeFrame) {
        // The peer is probing: whatever we requested has reached it.
        self.pending.remove(&peer);
        if self.may_answer_with_session(now, &peer, src, frame.flags) {
            let peer_nat = self.peer_nat(&peer).unwrap_or_default();
            self.start_session(peer, 0, &[], peer_nat, now);
        }
        let direct = self.direct.get(&peer).copied();
        let (accepted, known) = match self.sessions.get_mut(&peer) {
            Some(session) => {
                let accepted = session.on_probe(now, src, frame.flags);
                let known = session.candidates().any(|(a, _)| a == src);
                (accepted, known)
            }
            None => (
                frame.has(FLAG_NOMINATE) && direct == Some(src),
                direct == Some(src),
            ),
        };
        if direct == Some(src) {
            self.keepalives.activity(now, &peer, Some(src));
        }
        // Without peer-reflexive learning a node only answers addresses it
        // was told about; with it, it answers wherever the probe came from.
        if !self.config.peer_reflexive && !known {
            return;
        }
        let mut flags = frame.flags & FLAG_KEEPALIVE;
        if accepted {
            flags |= FLAG_NOMINATE;
        }
        let reply = ProbeFrame {
            kind: ProbeKind::Reply,
            flags,
            tx: frame.tx,
            sender: *self.me.as_bytes(),
            addr: src,
            tag: [0; TAG_LEN],
        };
        self.send_sealed(peer, src, &reply);
    }

    fn on_reply(&mut self, now: Instant, peer: NodeId, src: SocketAddr, frame: &ProbeFrame) {
        if let Some(session) = self.sessions.get_mut(&peer) {
            if session.on_reply(now, src, &frame.tx, frame.flags) {
                return;
            }
        }
        self.keepalives.on_reply(now, &peer, src, &frame.tx);
    }

    fn send_sealed(&mut self, peer: NodeId, dst: SocketAddr, frame: &ProbeFrame) {
        let Some(link) = self.links.get(peer.as_bytes()) else {
            return;
        };
        if let Ok(bytes) = link.key.seal(frame) {
            self.stats.probes_sent += 1;
            let data = bytes.to_vec();
            let transmit = match self.port_routes.get(&dst) {
                Some(port) => TraversalTransmit::PortFrame {
                    port: *port,
                    dst,
                    data,
                },
                None => TraversalTransmit::Frame { dst, data },
            };
            self.transmits.push_back(transmit);
        }
    }

    fn send_probe(&mut self, peer: NodeId, probe: ProbeOut) {
        let frame = ProbeFrame {
            kind: ProbeKind::Probe,
            flags: probe.flags,
            tx: probe.tx,
            sender: *self.me.as_bytes(),
            addr: probe.addr,
            tag: [0; TAG_LEN],
        };
        self.send_sealed(peer, probe.addr, &frame);
    }

    /// Runs every timer due at `now` and settles finished sessions.
    fn drive(&mut self, now: Instant) {
        let (changed, error) = self.nat.handle_timeout(now);
        if let Some(report) = changed {
            self.nat_changed(report);
        }
        if let Some(error) = error {
            self.stats.last_error = Some(error.to_string());
            self.events.push_back(TraversalEvent::Error(error));
        }

        self.drive_pending(now);
        self.last_now = Some(self.last_now.map_or(now, |t| t.max(now)));
        self.drive_birthday(now);
        self.drive_lifetime(now);
        self.drive_mapcheck(now);

        let mut probes = Vec::new();
        let mut finished = Vec::new();
        for (peer, session) in &mut self.sessions {
            let mut out = Vec::new();
            session.handle_timeout(now, &mut self.rng, &mut out);
            probes.extend(out.into_iter().map(|p| (*peer, p)));
            if let Some(outcome) = session.outcome() {
                finished.push((*peer, outcome, session.peer_nat()));
            }
        }
        let mut lost = Vec::new();
        self.keepalives
            .handle_timeout(now, &mut self.rng, &mut probes, &mut lost);
        for (peer, probe) in probes {
            self.send_probe(peer, probe);
        }
        for (peer, addr) in lost {
            self.direct.remove(&peer);
            self.release_held(&peer);
            let error = TraversalError::new(
                TraversalErrorKind::PunchFailed,
                format!("direct path {addr} stopped answering keepalives"),
            );
            self.stats.relay_fallbacks += 1;
            self.stats.last_error = Some(error.to_string());
            if let Some(link) = self.links.get_mut(peer.as_bytes()) {
                link.why = Some("direct path lost".to_string());
            }
            self.roaming.lost(&peer);
            self.events
                .push_back(TraversalEvent::DirectPathLost { peer, addr });
        }
        for (peer, outcome, peer_nat) in finished {
            if matches!(outcome, Outcome::Failed { .. }) && self.escalate(now, peer) {
                // Birthday probing goes on in the same session.
                continue;
            }
            self.sessions.remove(&peer);
            self.settle(now, peer, outcome, peer_nat);
        }
        self.drive_roam(now);
    }

    fn drive_pending(&mut self, now: Instant) {
        let due: Vec<NodeId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.next <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in due {
            let Some(p) = self.pending.get_mut(&peer) else {
                continue;
            };
            if p.introduced && p.attempts >= self.config.request_attempts {
                // The session decides the outcome.
                self.pending.remove(&peer);
                continue;
            }
            if p.attempts >= self.config.request_attempts {
                let via = p.via;
                self.pending.remove(&peer);
                let error = TraversalError::new(
                    TraversalErrorKind::PeerNotReachable,
                    format!("introducer {} did not answer", via.fmt_short()),
                );
                let why = error.to_string();
                self.record_failure(peer, error, why);
                continue;
            }
            p.attempts += 1;
            p.next = now + self.config.request_retry;
            let (req, via) = (p.req, p.via);
            // Control messages are unreliable: refresh the introducer's copy of
            // our mapping with every request, so a lost announcement costs one
            // retry, not the mapped candidate.
            if let Some(addr) = self.mapped {
                self.control(via, TraversalMsg::PortMapped { addr: Some(addr) });
            }
            self.control(via, TraversalMsg::ReachRequest { req, target: peer });
        }
    }

    fn settle(&mut self, now: Instant, peer: NodeId, outcome: Outcome, peer_nat: NatType) {
        self.pending.remove(&peer);
        let birthday_sent = self.birthday.get(&peer).map(|r| r.sent());
        let direct = match outcome {
            Outcome::Direct(addr) => Some(addr),
            Outcome::Failed { .. } => None,
        };
        if direct.is_some() {
            // A new direct path replaces the old one and its probe port.
            self.release_held(&peer);
        }
        self.end_birthday(&peer, direct);
        if let Some(link) = self.links.get_mut(peer.as_bytes()) {
            link.last_session_end = Some(now);
        }
        match outcome {
            Outcome::Direct(addr) => {
                self.stats.punches_succeeded += 1;
                if self.direct.get(&peer) != Some(&addr) {
                    self.stats.direct_upgrades += 1;
                }
                self.direct.insert(peer, addr);
                self.keepalives.insert(now, peer, addr);
                self.roaming.settled(now, &peer, true);
                if let Some(link) = self.links.get_mut(peer.as_bytes()) {
                    link.why = None;
                }
                self.events
                    .push_back(TraversalEvent::DirectPathFound { peer, addr });
            }
            Outcome::Failed { probes, candidates } => {
                let ours = self.nat.report().nat;
                let peer_nat = self.peer_nat(&peer).unwrap_or(peer_nat);
                let why = match birthday_sent {
                    Some(_) => format!("punch-failed, birthday-failed: {ours} x {peer_nat}"),
                    None => failure_why(ours, peer_nat),
                };
                let birthday = match birthday_sent {
                    Some(sent) => format!(", {sent} birthday packets"),
                    None => String::new(),
                };
                let error = TraversalError::new(
                    TraversalErrorKind::PunchFailed,
                    format!(
                        "timeout after {probes} probes to {candidates} candidates ({ours} x {peer_nat}){birthday}"
                    ),
                );
                self.record_failure(peer, error, why);
            }
        }
    }
}

/// A short public fingerprint of a connection's probe key (a digest, so it
/// reveals nothing of the key), to notice a replaced connection.
fn connection_id(probe_key: &[u8; 32]) -> [u8; 8] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"relay-node traversal connection id");
    ctx.update(probe_key);
    let mut id = [0u8; 8];
    id.copy_from_slice(&ctx.finish().as_ref()[..8]);
    id
}

#[path = "agent_birthday.rs"]
mod birthday_glue;

#[path = "agent_lifetime.rs"]
mod lifetime_glue;
#[path = "agent_mapcheck.rs"]
mod mapcheck_glue;
#[path = "agent_rebind.rs"]
mod rebind_glue;
#[path = "agent_roam.rs"]
mod roam_glue;

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;
