//! The traversal driver: runs the sans-IO [`Traversal`] core inside a
//! transport (`TransportConfig::traversal`, on by default).
//!
//! One task owns the clock and feeds the core, which sits behind a mutex
//! only so that status can read it; the lock is never held across an
//! `.await`. Its inputs, all bounded:
//!
//! - our UDP frames other than relay frames (probes and replies) from the
//!   transport's frame loop: [`Traversal::handle_frame`]. The source of
//!   every authenticated one becomes an inbound alias of that peer's
//!   mapped address, so that its QUIC packets from there reach the same
//!   connection as soon as it switches (never a new peer to quinn);
//! - traversal control messages from peers: [`Traversal::handle_control`];
//! - peer events (connected, path changed, observed address,
//!   disconnected), which become `handle_connection` (with a probe key
//!   exported from that connection's handshake), `handle_observed_addr`
//!   and `handle_disconnect`. When the event channel lags, the whole state
//!   is re-read from the peer table;
//! - the core's own deadline ([`Traversal::poll_timeout`]) and a 1 s tick
//!   that reports traffic on direct paths (keepalives only fire on idle
//!   paths) and retries punches.
//!
//! What the core asks for goes out at once: probes with the path socket's
//! `send_frame`, control messages on the peer's connection.
//!
//! ## Probe ports
//!
//! Birthday probing (`birthday`) sends from extra UDP sockets. The driver
//! opens one on the first `PortFrame` for its id, runs a reader task for
//! it (its frames come back here tagged with the port:
//! [`Traversal::handle_port_frame`]), installs the path socket's route
//! when the core reports `PortRoute` (the peer's connection then leaves
//! from that port), and closes ports on `ReleasePorts` and at shutdown.
//!
//! ## Going direct
//!
//! A connection on a relayed path asks the relay, connected to both sides,
//! to introduce it (every node introduces its own peers). The dialing side
//! asks at once, the accepting side a little later in case the dialer
//! cannot; after a failure the request is repeated with backoff. When the
//! core reports `DirectPathFound`, the live connection moves to the direct
//! address with `set_path`: no new handshake, streams carry on. The relay
//! stays the backup: on `DirectPathLost` the connection moves back to it
//! (or another registered relay).
//!
//! Every one of those decisions (when to ask, backoff, whether to take a
//! punched path, which relay to fall back to, when relayed packets from a
//! direct peer mean its path died) is the sans-IO [`PeerPolicy`]'s; the
//! driver reads the facts it needs (paths, counters, registered relays)
//! and carries out its answers.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::RngCore;
use relay_proto::wire::control::ControlMsg;
use relay_proto::wire::probe::{ProbeFrame, FLAG_BINDING};
use relay_proto::wire::traversal::TraversalMsg;
use relay_proto::NodeId;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::birthday::{BirthdayConfig, PortId};
use super::lifetime::LifetimeConfig;
use super::mapcheck::ALT_PORT;
use super::netwatch;
use super::peer_policy::{
    Attempt, DirectMove, FallBack, PeerPath, PeerPolicy, PolicyAction, Readiness, Traffic,
};
use super::{
    ConnectionInfo, Traversal, TraversalConfig, TraversalEvent, TraversalSnapshot,
    TraversalTransmit,
};
use crate::handles::TraversalHost;
use crate::socket::{run_probe_port, Frame, Path, PortFrame};
use crate::PeerEvent;

/// The label the probe key is exported with from each connection.
pub const PROBE_KEY_LABEL: &[u8] = b"relay-node probe key";
/// Inputs of one kind handled before the others get a turn.
const BATCH: usize = 64;
/// Period of the traffic report (read by the policy) and the local
/// address sample.
const TICK: Duration = Duration::from_secs(1);
/// Capacity of the command queue.
const COMMAND_QUEUE: usize = 64;
/// Capacity of the queue of frames received on probe ports.
const PORT_FRAME_QUEUE: usize = 1024;

/// The traversal core of one transport, shared between its driver task
/// and status readers.
#[derive(Debug)]
pub(crate) struct TraversalService {
    core: Mutex<Traversal>,
    /// "Try to go direct to this peer now" ([`Self::request_direct`]).
    commands: mpsc::Sender<NodeId>,
    commands_rx: Mutex<Option<mpsc::Receiver<NodeId>>>,
    /// Our port-mapped address, from the port-mapping driver.
    mapped: watch::Sender<Option<SocketAddr>>,
}

impl TraversalService {
    /// A core for node `me`. Keepalives are timed so that a dead direct
    /// path is noticed well within the connection's idle timeout `idle`,
    /// and the relay takes over before quinn gives up: a tenth of it until
    /// the NAT binding lifetime is measured, then half the lifetime,
    /// between 1 s and a third of `idle` (3 misses, 1 s apart, add 3 s).
    pub(crate) fn new(
        me: NodeId,
        public_addr: Option<SocketAddr>,
        idle: Duration,
        birthday: bool,
    ) -> Self {
        let keepalive = (idle / 10).clamp(Duration::from_millis(300), Duration::from_secs(20));
        let config = TraversalConfig {
            public_addr,
            keepalive_interval: keepalive,
            lifetime: LifetimeConfig {
                keepalive_max: (idle / 3).max(Duration::from_secs(1)),
                ..LifetimeConfig::default()
            },
            birthday: BirthdayConfig {
                enabled: birthday,
                ..BirthdayConfig::default()
            },
            ..TraversalConfig::default()
        };
        let mut seed = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut seed);
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        Self {
            core: Mutex::new(Traversal::new(me, config, seed)),
            commands,
            commands_rx: Mutex::new(Some(commands_rx)),
            mapped: watch::Sender::new(None),
        }
    }

    /// Our port mapping changed (`crate::portmap`): the driver hands it to
    /// the core, which tells every peer.
    pub(crate) fn set_port_mapping(&self, addr: Option<SocketAddr>) {
        self.mapped.send_if_modified(|current| {
            let changed = *current != addr;
            *current = addr;
            changed
        });
    }

    /// The command receiver, for the driver (once).
    pub(crate) fn take_commands(&self) -> Option<mpsc::Receiver<NodeId>> {
        self.commands_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Asks the driver to try a direct path to `peer` now (it is skipped
    /// when the peer is not relayed or a punch is running). Returns false
    /// when the driver's queue is full.
    pub(crate) fn request_direct(&self, peer: NodeId) -> bool {
        self.commands.try_send(peer).is_ok()
    }

    fn core(&self) -> MutexGuard<'_, Traversal> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything status needs, read at once; `why` for `not_direct`
    /// (the connected peers not on a direct path).
    pub(crate) fn snapshot(&self, not_direct: &[NodeId]) -> TraversalSnapshot {
        let core = self.core();
        let why: BTreeMap<NodeId, String> = not_direct
            .iter()
            .map(|p| (*p, why_not_direct(&core, p)))
            .collect();
        TraversalSnapshot {
            enabled: true,
            nat: core.nat(),
            stats: core.stats().clone(),
            why,
            observations: core.observations().map(|(id, o)| (*id, *o)).collect(),
            lifetime: core.binding_lifetime(),
            quic_keep_alive: Duration::ZERO,
        }
    }

    /// Why `peer`, connected but not on a direct path, is not direct.
    pub(crate) fn why(&self, peer: &NodeId) -> String {
        why_not_direct(&self.core(), peer)
    }
}

/// The last failure's reason ("symmetric x symmetric", "punch-failed:
/// timeout", "direct path lost", ...), else "punching" while a punch
/// runs, else "punch pending" (not tried yet, or waiting for a retry).
fn why_not_direct(core: &Traversal, peer: &NodeId) -> String {
    match core.why(peer) {
        Some(why) => why.to_owned(),
        None if core.is_punching(peer) => "punching".to_owned(),
        None => "punch pending".to_owned(),
    }
}

/// The receivers the driver takes from the transport.
pub(crate) struct Inputs {
    pub(crate) frames: mpsc::Receiver<Frame>,
    pub(crate) messages: mpsc::Receiver<(NodeId, TraversalMsg)>,
    pub(crate) events: broadcast::Receiver<PeerEvent>,
    pub(crate) commands: mpsc::Receiver<NodeId>,
}

struct Driver {
    shared: Arc<dyn TraversalHost>,
    service: Arc<TraversalService>,
    /// When to punch, and what to do with what punches find.
    policy: PeerPolicy,
    /// Open probe ports and their reader tasks.
    ports: HashMap<PortId, JoinHandle<()>>,
    /// Where the reader tasks put the frames they receive.
    port_frames: mpsc::Sender<PortFrame>,
}

fn now_std(now: Instant) -> std::time::Instant {
    now.into_std()
}

/// Runs the driver until the transport closes.
pub(crate) async fn run(
    shared: Arc<dyn TraversalHost>,
    service: Arc<TraversalService>,
    inputs: Inputs,
) {
    let Inputs {
        mut frames,
        mut messages,
        mut events,
        mut commands,
    } = inputs;
    let mut shutdown = shared.shutdown();
    let mut mapped = service.mapped.subscribe();
    let (port_frames, mut port_frames_rx) = mpsc::channel(PORT_FRAME_QUEUE);
    let mut driver = Driver {
        shared,
        service,
        policy: PeerPolicy::default(),
        ports: HashMap::new(),
        port_frames,
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    driver.open_alt_port();
    driver.resync().await;
    loop {
        let deadline = driver.service.core().poll_timeout().map(Instant::from_std);
        let policy_deadline = driver.policy.poll_timeout().map(Instant::from_std);
        tokio::select! {
            // (The guard `wait_for` returns must not live across the
            // awaits in the other arms.)
            () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
            frame = frames.recv() => {
                let Some(frame) = frame else { break };
                driver.on_frame(&frame);
                for _ in 1..BATCH {
                    match frames.try_recv() {
                        Ok(frame) => driver.on_frame(&frame),
                        Err(_) => break,
                    }
                }
            }
            Some(frame) = port_frames_rx.recv() => {
                driver.on_port_frame(&frame);
                for _ in 1..BATCH {
                    match port_frames_rx.try_recv() {
                        Ok(frame) => driver.on_port_frame(&frame),
                        Err(_) => break,
                    }
                }
            }
            msg = messages.recv() => {
                let Some((from, msg)) = msg else { break };
                let now = now_std(Instant::now());
                let mut core = driver.service.core();
                core.handle_control(now, from, msg);
                for _ in 1..BATCH {
                    match messages.try_recv() {
                        Ok((from, msg)) => core.handle_control(now, from, msg),
                        Err(_) => break,
                    }
                }
            }
            event = events.recv() => match event {
                Ok(event) => driver.on_event(event).await,
                Err(broadcast::error::RecvError::Lagged(_)) => driver.resync().await,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            peer = commands.recv() => {
                let Some(peer) = peer else { break };
                driver.direct_now(peer);
            }
            () = sleep_until(deadline) => driver.service.core().handle_timeout(now_std(Instant::now())),
            () = sleep_until(policy_deadline) => driver.attempts(Instant::now()),
            Ok(()) = mapped.changed() => {
                let addr = *mapped.borrow_and_update();
                driver.service.core().handle_port_mapping(now_std(Instant::now()), addr);
            }
            _ = tick.tick() => driver.on_tick().await,
        }
        driver.flush().await;
    }
    let ports: Vec<PortId> = driver.ports.keys().copied().collect();
    driver.close_ports(&ports);
    tracing::debug!("traversal driver stopped");
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    fn core(&self) -> MutexGuard<'_, Traversal> {
        self.service.core()
    }

    /// One of our frames arrived.
    fn on_frame(&mut self, frame: &Frame) {
        let now = now_std(Instant::now());
        let (valid, sender) = {
            let mut core = self.core();
            let before = core.stats().probes_received;
            if !core.handle_frame(now, frame.src, &frame.data) {
                tracing::trace!(src = %frame.src, "unknown frame type dropped");
                return;
            }
            let valid = core.stats().probes_received > before;
            (
                valid,
                valid.then(|| ProbeFrame::parse(&frame.data).ok()).flatten(),
            )
        };
        // Binding-lifetime probes come from ports that carry no path.
        let sender = sender.filter(|f| !f.has(FLAG_BINDING));
        let Some(sender) = sender.and_then(|f| NodeId::from_bytes(&f.sender).ok()) else {
            return;
        };
        if valid && self.shared.socket().alias_inbound(&sender, frame.src) {
            tracing::trace!(peer = %sender.fmt_short(), src = %frame.src, "probe source mapped to the peer");
        }
    }

    /// One of our frames arrived on a probe port.
    fn on_port_frame(&mut self, frame: &PortFrame) {
        let now = now_std(Instant::now());
        let mut core = self.core();
        if !core.handle_port_frame(now, frame.port, frame.src, &frame.data) {
            tracing::trace!(src = %frame.src, port = frame.port, "unknown frame type on a probe port dropped");
        }
    }

    /// Opens our alternate port (`mapcheck`): a second UDP socket on our
    /// IP whose number the core offers to peers that check their NAT's
    /// mapping with us. It stays open until the transport closes.
    fn open_alt_port(&mut self) {
        if !self.core().config().mapping.enabled || !self.ensure_port(ALT_PORT) {
            return;
        }
        let port = self
            .shared
            .socket()
            .probe_port_addr(ALT_PORT)
            .map(|a| a.port());
        tracing::debug!(?port, "alternate port for mapping checks");
        self.core().handle_alt_port(port);
    }

    /// Opens probe port `port` unless it is open; false if it cannot be.
    fn ensure_port(&mut self, port: PortId) -> bool {
        if self.ports.contains_key(&port) {
            return true;
        }
        match self.shared.socket().open_probe_port(port) {
            Ok(io) => {
                let task = tokio::spawn(run_probe_port(
                    self.shared.socket().clone(),
                    port,
                    io,
                    self.port_frames.clone(),
                ));
                self.ports.insert(port, task);
                true
            }
            Err(e) => {
                tracing::debug!(port, error = %e, "probe port not opened");
                false
            }
        }
    }

    fn close_ports(&mut self, ports: &[PortId]) {
        for port in ports {
            if let Some(task) = self.ports.remove(port) {
                task.abort();
            }
            self.shared.socket().close_probe_port(*port);
        }
    }

    /// A peer event from the transport.
    async fn on_event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Connected { node_id, .. } => self.connected(node_id, true),
            PeerEvent::PathChanged { node_id, .. } => self.path_changed(node_id),
            PeerEvent::ObservedAddr { node_id, addr } => self.observed(node_id, addr).await,
            PeerEvent::Disconnected { node_id, .. } => self.disconnected(node_id),
            PeerEvent::PeerGone { .. } => {}
        }
    }

    /// The facts of `peer`'s live connection for the core.
    fn info(&self, peer: &NodeId) -> Option<(ConnectionInfo, Option<Path>, bool)> {
        let live = self.shared.live(peer)?;
        let mut probe_key = [0u8; 32];
        live.conn
            .export_keying_material(&mut probe_key, PROBE_KEY_LABEL, b"")
            .ok()?;
        let path = self.shared.socket().path(&live.mapped());
        let info = ConnectionInfo {
            probe_key,
            observed: path.and_then(|p| p.direct_addr()),
            rtt: live.conn.rtt(),
        };
        Some((info, path, live.outbound))
    }

    /// A connection to `peer` is up (or its facts changed).
    fn connected(&mut self, peer: NodeId, fresh: bool) {
        let Some((info, path, outbound)) = self.info(&peer) else {
            return;
        };
        let now = Instant::now();
        self.core().handle_connection(now_std(now), peer, info);
        let relayed = matches!(path, Some(Path::Relayed { .. }));
        self.policy
            .handle_connected(now_std(now), peer, relayed, outbound, fresh);
        self.attempts(now);
    }

    /// `peer`'s path changed (by us, by relay failover or by migration).
    fn path_changed(&mut self, peer: NodeId) {
        let path = self
            .shared
            .live(&peer)
            .and_then(|l| self.shared.socket().path(&l.mapped()));
        {
            let mut core = self.core();
            if let Some(direct) = core.direct_path(&peer) {
                match path {
                    Some(Path::Direct(addr)) if addr != direct => {
                        // A rebinding followed, or a migration: still
                        // our direct path (agent_rebind.rs).
                        core.handle_direct_moved(now_std(Instant::now()), &peer, addr);
                    }
                    Some(Path::Direct(_)) => {}
                    // Moved off the punched path by someone else.
                    _ => core.forget_direct_path(&peer),
                }
            }
        }
        self.connected(peer, false);
    }

    /// `observer` reports the address it sees us at.
    async fn observed(&mut self, observer: NodeId, addr: SocketAddr) {
        let observer_ip = self
            .shared
            .live(&observer)
            .and_then(|l| self.shared.socket().path(&l.mapped()))
            .and_then(|p| p.direct_addr())
            .map(|a| a.ip());
        let Some(observer_ip) = observer_ip else {
            // Only direct connections observe anything real.
            return;
        };
        let local =
            netwatch::local_towards(self.shared.socket().real_local_addr(), observer_ip).await;
        self.core().handle_observed_addr(
            now_std(Instant::now()),
            observer,
            observer_ip,
            addr,
            local,
        );
    }

    fn disconnected(&mut self, peer: NodeId) {
        if self.shared.live(&peer).is_some() {
            // A duplicate closed; the live connection carries on.
            self.connected(peer, true);
            return;
        }
        self.policy.handle_disconnected(&peer);
        self.core()
            .handle_disconnect(now_std(Instant::now()), &peer);
    }

    /// Re-reads every connection and observation (after lagging events).
    async fn resync(&mut self) {
        let live: Vec<NodeId> = self.shared.live_peers();
        let gone: Vec<NodeId> = self
            .policy
            .peers()
            .filter(|p| !live.contains(p))
            .copied()
            .collect();
        for peer in gone {
            self.disconnected(peer);
        }
        for peer in live {
            let fresh = !self.policy.peers().any(|p| *p == peer);
            self.connected(peer, fresh);
        }
        let observed: Vec<(NodeId, SocketAddr)> = self.shared.observed();
        for (observer, addr) in observed {
            self.observed(observer, addr).await;
        }
    }

    /// Asks for every introduction the policy has due: a peer that is
    /// relayed, not direct and not being punched goes through its relay.
    fn attempts(&mut self, now: Instant) {
        let now = now_std(now);
        let (shared, service) = (&self.shared, &self.service);
        let ready = |peer: &NodeId| {
            let relay = shared
                .live(peer)
                .and_then(|l| shared.socket().path(&l.mapped()))
                .and_then(|p| p.relay());
            let Some(relay) = relay else {
                return Readiness::NotRelayed;
            };
            let core = service.core();
            if core.is_punching(peer) || core.direct_path(peer).is_some() {
                return Readiness::Busy;
            }
            Readiness::Via(relay)
        };
        while let Some(Attempt { peer, relay }) = self.policy.poll_attempt(now, ready) {
            match self.service.core().request_direct(now, peer, Some(relay)) {
                Ok(()) => {
                    tracing::debug!(peer = %peer.fmt_short(), via = %relay.fmt_short(), "asking for an introduction");
                }
                Err(e) => {
                    tracing::debug!(peer = %peer.fmt_short(), error = %e, "cannot punch yet");
                    self.policy.handle_attempt_refused(now, &peer);
                }
            }
        }
    }

    /// An explicit request to go direct to `peer` now.
    fn direct_now(&mut self, peer: NodeId) {
        if self.shared.live(&peer).is_none() {
            return;
        }
        let now = Instant::now();
        self.policy.handle_request(now_std(now), peer);
        self.attempts(now);
    }

    /// Once a second: our local address, traffic on direct paths, due
    /// punch retries, the learned keepalive interval for new connections.
    async fn on_tick(&mut self) {
        let now = Instant::now();
        let learned = self.core().learned_keepalive();
        if let Some(keep_alive) = learned {
            if self.shared.set_keep_alive(keep_alive) {
                tracing::debug!(?keep_alive, "keepalive interval for new connections");
            }
        }
        let peers: Vec<NodeId> = self.policy.peers().copied().collect();
        if let Some(dest) = netwatch::destination(&*self.shared, &peers) {
            let local = netwatch::source_ip(self.shared.socket().real_local_addr(), dest).await;
            self.core().handle_local_addr(now_std(now), dest, local);
        }
        for peer in &peers {
            let traffic = Traffic {
                direct_rx: self.shared.socket().direct_received(peer),
                relayed_while_direct: self.shared.socket().relayed_while_direct(peer),
            };
            self.policy.handle_traffic(peer, traffic);
        }
        while let Some(action) = self.policy.poll_action() {
            let mut core = self.service.core();
            match action {
                PolicyAction::PathActive { peer } => {
                    core.handle_path_activity(now_std(now), &peer);
                }
                PolicyAction::SuspectDirect { peer } => {
                    if core.suspect_direct_path(now_std(now), &peer) {
                        tracing::debug!(peer = %peer.fmt_short(), "peer reaches us relayed: probing the direct path now");
                    }
                }
            }
        }
        self.attempts(now);
    }

    /// Sends what the core wants sent and acts on what it reports.
    async fn flush(&mut self) {
        loop {
            let (transmits, events) = {
                let mut core = self.core();
                let transmits: Vec<TraversalTransmit> =
                    std::iter::from_fn(|| core.poll_transmit()).collect();
                let events: Vec<TraversalEvent> =
                    std::iter::from_fn(|| core.poll_event()).collect();
                (transmits, events)
            };
            if transmits.is_empty() && events.is_empty() {
                return;
            }
            for transmit in transmits {
                self.transmit(transmit).await;
            }
            for event in events {
                self.on_traversal_event(event);
            }
        }
    }

    async fn transmit(&mut self, transmit: TraversalTransmit) {
        match transmit {
            TraversalTransmit::Frame { dst, data } => {
                if let Err(e) = self.shared.socket().send_frame(dst, &data).await {
                    tracing::debug!(%dst, error = %e, "transport: probe not sent");
                }
            }
            TraversalTransmit::PortFrame { port, dst, data } => {
                if !self.ensure_port(port) {
                    return;
                }
                let sent = self
                    .shared
                    .socket()
                    .send_frame_from_port(port, dst, &data)
                    .await;
                if let Err(e) = sent {
                    tracing::trace!(%dst, port, error = %e, "probe from a probe port not sent");
                }
            }
            TraversalTransmit::Control { to, msg } => {
                if !self.shared.send_control(&to, &ControlMsg::Traversal(msg)) {
                    tracing::trace!(peer = %to.fmt_short(), "traversal message to a peer no longer connected");
                }
            }
        }
    }

    fn on_traversal_event(&mut self, event: TraversalEvent) {
        match event {
            TraversalEvent::DirectPathFound { peer, addr } => self.go_direct(peer, addr),
            TraversalEvent::DirectPathLost { peer, addr } => self.fall_back(peer, addr),
            TraversalEvent::PunchFailed { peer, error, why } => {
                tracing::info!(peer = %peer.fmt_short(), %error, %why, "staying relayed");
                self.policy
                    .handle_punch_failed(now_std(Instant::now()), &peer);
            }
            TraversalEvent::NatChanged(report) => {
                tracing::info!(nat = %report.nat, reflex = ?report.reflex_addr, "NAT classified");
            }
            TraversalEvent::Error(error) => tracing::debug!(%error, "traversal"),
            TraversalEvent::PortRoute { peer, addr, port } => {
                if self.shared.socket().route_via_port(addr, port) {
                    tracing::debug!(peer = %peer.fmt_short(), %addr, port, "birthday probe hit: peer routed through a probe port");
                    self.shared.socket().alias_inbound(&peer, addr);
                }
            }
            TraversalEvent::ReleasePorts { ports } => self.close_ports(&ports),
            TraversalEvent::AddressChanged(change) => {
                tracing::info!(
                    "our address changed: {} -> {} ({}); probing direct paths, re-learning the NAT",
                    change.old,
                    change.new,
                    change.cause.as_str()
                );
            }
            TraversalEvent::Repunch { peer } => {
                tracing::debug!(peer = %peer.fmt_short(), "re-punching (our address changed, or a port mapping came)");
                self.direct_now(peer);
            }
        }
    }

    /// Where `peer`'s live connection runs now.
    fn peer_path(&self, peer: &NodeId) -> PeerPath {
        let path = self
            .shared
            .live(peer)
            .and_then(|l| self.shared.socket().path(&l.mapped()));
        match path {
            Some(Path::Direct(addr)) => PeerPath::Direct(addr),
            Some(Path::Relayed { relay }) => PeerPath::Relayed(relay),
            None => PeerPath::None,
        }
    }

    /// A punch found `addr` for `peer`: move the live connection there if
    /// the policy says so.
    fn go_direct(&mut self, peer: NodeId, addr: SocketAddr) {
        if self.shared.live(&peer).is_none() {
            return;
        }
        let current = self.peer_path(&peer);
        match self.policy.handle_direct_found(&peer, addr, current) {
            DirectMove::Stay => return,
            DirectMove::Forget => {
                self.core().forget_direct_path(&peer);
                return;
            }
            DirectMove::Move => {}
        }
        self.shared.socket().alias_inbound(&peer, addr);
        match self.shared.change_path(peer, Path::Direct(addr)) {
            Ok(()) => {
                self.policy.handle_moved_direct(&peer, addr);
                tracing::info!(peer = %peer.fmt_short(), %addr, "relayed -> direct")
            }
            Err(e) => {
                tracing::debug!(peer = %peer.fmt_short(), error = %e, "direct path not taken")
            }
        }
    }

    /// Keepalives on `peer`'s direct path went unanswered: back to a relay.
    fn fall_back(&mut self, peer: NodeId, addr: SocketAddr) {
        let current = self.peer_path(&peer);
        let registered = self.shared.registered_relays();
        let relay = match self
            .policy
            .handle_direct_lost(&peer, addr, current, &registered)
        {
            FallBack::NotOnPath => return,
            FallBack::NoRelay => {
                tracing::info!(peer = %peer.fmt_short(), %addr, "direct path lost and no relay to fall back to");
                return;
            }
            FallBack::Via(relay) => relay,
        };
        match self.shared.change_path(peer, Path::Relayed { relay }) {
            Ok(()) => {
                tracing::info!(peer = %peer.fmt_short(), %addr, via = %relay.fmt_short(), "direct path lost; relayed again");
                // Something to send now: quinn's loss recovery, backed off
                // while the path was dead, hears from the peer at once.
                let nat = self.core().nat().nat;
                self.shared
                    .send_control(&peer, &ControlMsg::Traversal(TraversalMsg::NatInfo { nat }));
                self.policy.handle_fell_back(now_std(Instant::now()), &peer);
            }
            Err(e) => tracing::debug!(peer = %peer.fmt_short(), error = %e, "fallback failed"),
        }
    }
}
