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
/// Period of the activity report and the punch retries.
const TICK: Duration = Duration::from_secs(1);
/// How long the accepting side of a relayed connection leaves the
/// dialing side to ask for an introduction first.
const ACCEPTOR_DELAY: Duration = Duration::from_secs(2);
/// First delay before asking again after a punch failed.
const RETRY_MIN: Duration = Duration::from_secs(15);
/// Delay before punching again after a direct path that worked was lost:
/// the usual cause (a NAT that rebound or forgot our binding, a peer
/// whose address changed) leaves a fresh punch good odds, and the relay
/// already observes the new mapping. A failure then backs off as usual.
const RETRY_AFTER_LOSS: Duration = Duration::from_secs(2);
/// Longest delay between punch attempts.
const RETRY_MAX: Duration = Duration::from_secs(300);
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

/// What the driver tracks per connected peer.
#[derive(Debug, Default)]
struct Track {
    /// When to ask for an introduction next (relayed peers).
    next_try: Option<Instant>,
    /// Delay after the next failure.
    backoff: Duration,
    /// The relay a direct path fell back to.
    backup: Option<NodeId>,
    /// Receive batches seen on the peer's direct path at the last tick.
    rx: u64,
    /// Relayed packets from the peer while direct, at the last tick.
    relayed_rx: u64,
    /// The direct address we moved the connection to (a punch's).
    punched: Option<SocketAddr>,
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
    peers: HashMap<NodeId, Track>,
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
        peers: HashMap::new(),
        ports: HashMap::new(),
        port_frames,
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    driver.open_alt_port();
    driver.resync().await;
    loop {
        let deadline = driver.service.core().poll_timeout().map(Instant::from_std);
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
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
            () = timer => driver.service.core().handle_timeout(now_std(Instant::now())),
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
        let track = self.peers.entry(peer).or_default();
        if fresh {
            track.backoff = RETRY_MIN;
        }
        if matches!(path, Some(Path::Relayed { .. })) && (fresh || track.next_try.is_none()) {
            track.next_try = Some(if outbound { now } else { now + ACCEPTOR_DELAY });
        }
        if fresh && outbound {
            self.try_direct(peer, now);
        }
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
        self.peers.remove(&peer);
        self.core()
            .handle_disconnect(now_std(Instant::now()), &peer);
    }

    /// Re-reads every connection and observation (after lagging events).
    async fn resync(&mut self) {
        let live: Vec<NodeId> = self.shared.live_peers();
        let gone: Vec<NodeId> = self
            .peers
            .keys()
            .filter(|p| !live.contains(p))
            .copied()
            .collect();
        for peer in gone {
            self.disconnected(peer);
        }
        for peer in live {
            let fresh = !self.peers.contains_key(&peer);
            self.connected(peer, fresh);
        }
        let observed: Vec<(NodeId, SocketAddr)> = self.shared.observed();
        for (observer, addr) in observed {
            self.observed(observer, addr).await;
        }
    }

    /// Asks `peer`'s relay to introduce us, if `peer` is relayed, not
    /// direct, not being punched, and due.
    fn try_direct(&mut self, peer: NodeId, now: Instant) {
        let Some(track) = self.peers.get_mut(&peer) else {
            return;
        };
        if track.next_try.is_none_or(|t| t > now) {
            return;
        }
        let relay = self
            .shared
            .live(&peer)
            .and_then(|l| self.shared.socket().path(&l.mapped()))
            .and_then(|p| p.relay());
        let Some(relay) = relay else {
            track.next_try = None;
            return;
        };
        let mut core = self.service.core();
        if core.is_punching(&peer) || core.direct_path(&peer).is_some() {
            return;
        }
        track.next_try = None;
        match core.request_direct(now_std(now), peer, Some(relay)) {
            Ok(()) => {
                tracing::debug!(peer = %peer.fmt_short(), via = %relay.fmt_short(), "asking for an introduction");
            }
            Err(e) => {
                tracing::debug!(peer = %peer.fmt_short(), error = %e, "cannot punch yet");
                track.next_try = Some(now + track.backoff);
                track.backoff = (track.backoff * 2).min(RETRY_MAX);
            }
        }
    }

    /// An explicit request to go direct to `peer` now.
    fn direct_now(&mut self, peer: NodeId) {
        if self.shared.live(&peer).is_none() {
            return;
        }
        let now = Instant::now();
        let track = self.peers.entry(peer).or_default();
        track.next_try = Some(now);
        track.backoff = RETRY_MIN;
        self.try_direct(peer, now);
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
        let peers: Vec<NodeId> = self.peers.keys().copied().collect();
        if let Some(dest) = netwatch::destination(&*self.shared, &peers) {
            let local = netwatch::source_ip(self.shared.socket().real_local_addr(), dest).await;
            self.core().handle_local_addr(now_std(now), dest, local);
        }
        for peer in peers {
            self.report_activity(peer, now);
            self.check_relayed(peer, now);
            self.try_direct(peer, now);
        }
    }

    /// A peer on a direct path that sends to us through a relay has
    /// probably lost that path (its address changed, say): probe ours now.
    fn check_relayed(&mut self, peer: NodeId, now: Instant) {
        let Some(relayed) = self.shared.socket().relayed_while_direct(&peer) else {
            return;
        };
        let Some(track) = self.peers.get_mut(&peer) else {
            return;
        };
        let more = relayed > track.relayed_rx;
        track.relayed_rx = relayed;
        if more && self.service.core().suspect_direct_path(now_std(now), &peer) {
            tracing::debug!(peer = %peer.fmt_short(), "peer reaches us relayed: probing the direct path now");
        }
    }

    /// Tells the core when the peer's direct path carried anything since
    /// the last tick, so keepalives only go out on idle paths.
    fn report_activity(&mut self, peer: NodeId, now: Instant) {
        let Some(rx) = self.shared.socket().direct_received(&peer) else {
            return;
        };
        let Some(track) = self.peers.get_mut(&peer) else {
            return;
        };
        let active = rx > track.rx;
        track.rx = rx;
        if active {
            // Counted only on the current direct path; the core ignores
            // peers it keeps no direct path for.
            self.service
                .core()
                .handle_path_activity(now_std(now), &peer);
        }
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
                if let Some(track) = self.peers.get_mut(&peer) {
                    track.next_try = Some(Instant::now() + track.backoff);
                    track.backoff = (track.backoff * 2).min(RETRY_MAX);
                }
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
                tracing::debug!(peer = %peer.fmt_short(), "re-punching after our address changed");
                self.direct_now(peer);
            }
        }
    }

    /// A punch found `addr` for `peer`: move the live connection there.
    fn go_direct(&mut self, peer: NodeId, addr: SocketAddr) {
        let Some(live) = self.shared.live(&peer) else {
            return;
        };
        let current = self.shared.socket().path(&live.mapped());
        match current {
            Some(Path::Relayed { relay }) => {
                if let Some(track) = self.peers.get_mut(&peer) {
                    track.backup = Some(relay);
                    track.next_try = None;
                    track.backoff = RETRY_MIN;
                }
            }
            Some(Path::Direct(now)) if now == addr => return,
            // A path an earlier punch found, replaced by this one (the
            // peer's address changed): move.
            Some(Path::Direct(now))
                if self.peers.get(&peer).and_then(|t| t.punched) == Some(now) => {}
            // Already direct elsewhere (dialed by address): keep that.
            _ => {
                self.core().forget_direct_path(&peer);
                return;
            }
        }
        self.shared.socket().alias_inbound(&peer, addr);
        match self.shared.change_path(peer, Path::Direct(addr)) {
            Ok(()) => {
                if let Some(track) = self.peers.get_mut(&peer) {
                    track.punched = Some(addr);
                }
                tracing::info!(peer = %peer.fmt_short(), %addr, "relayed -> direct")
            }
            Err(e) => {
                tracing::debug!(peer = %peer.fmt_short(), error = %e, "direct path not taken")
            }
        }
    }

    /// Keepalives on `peer`'s direct path went unanswered: back to a relay.
    fn fall_back(&mut self, peer: NodeId, addr: SocketAddr) {
        let Some(live) = self.shared.live(&peer) else {
            return;
        };
        if self.shared.socket().path(&live.mapped()) != Some(Path::Direct(addr)) {
            return;
        }
        let registered = self.shared.registered_relays();
        let backup = self.peers.get(&peer).and_then(|t| t.backup);
        let relay = backup
            .filter(|r| registered.contains(r))
            .or_else(|| registered.iter().copied().find(|r| *r != peer));
        let Some(relay) = relay else {
            tracing::info!(peer = %peer.fmt_short(), %addr, "direct path lost and no relay to fall back to");
            return;
        };
        match self.shared.change_path(peer, Path::Relayed { relay }) {
            Ok(()) => {
                tracing::info!(peer = %peer.fmt_short(), %addr, via = %relay.fmt_short(), "direct path lost; relayed again");
                // Something to send now: quinn's loss recovery, backed off
                // while the path was dead, hears from the peer at once.
                let nat = self.core().nat().nat;
                self.shared
                    .send_control(&peer, &ControlMsg::Traversal(TraversalMsg::NatInfo { nat }));
                if let Some(track) = self.peers.get_mut(&peer) {
                    track.next_try = Some(Instant::now() + RETRY_AFTER_LOSS);
                    track.backoff = RETRY_MIN;
                }
            }
            Err(e) => tracing::debug!(peer = %peer.fmt_short(), error = %e, "fallback failed"),
        }
    }
}
