//! The transport endpoint: owns the quinn endpoint, the path socket and the
//! peer table, and implements the public [`Transport`] API.
//!
//! The work is split by job:
//!
//! - [`peers`]: the peer table and the duplicate tie-break;
//! - [`dial`]: outbound dials (coalesced per peer), persistent peers and
//!   their capped exponential backoff;
//! - [`accept`]: the accept loop for inbound handshakes;
//! - [`conn`]: what happens to an authenticated connection: registration,
//!   stream/datagram forwarding into [`Transport::accept`], path and close
//!   watching, and the events that go with them;
//! - [`control`]: what the control channel of each connection carries;
//! - [`channel`]: the driver of each connection's reliable control channel,
//!   around the sans-IO core in [`reliable`];
//! - [`paths`]: moving a live connection to another path;
//! - [`runtime`]: the tokio runtime quinn gets, whose driver tasks step
//!   back once per wake-up so concurrent stream writes share packets.

mod accept;
mod admission;
pub(crate) mod channel;
pub(crate) mod conn;
pub(crate) mod control;
mod dial;
mod failures;
mod handles;
pub(crate) mod paths;
mod peers;
pub(crate) mod quic;
pub(crate) mod rebind;
mod runtime;
pub(crate) use relay_transport_core::redial;
pub(crate) use relay_transport_core::reliable;

pub use channel::ChannelStats;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use relay_proto::wire::control::{ControlMsg, DATAGRAM_APP};
use relay_proto::wire::traversal::TraversalMsg;
use relay_proto::NodeId;
use tokio::sync::{broadcast, mpsc, watch};

use crate::noise::{self, NoiseConfig, NoiseStats};
use crate::portmap::driver::{self as portmap_driver, PortMapService};
use crate::portmap::PortMapStatus;
use crate::relay::client::RelayClients;
use crate::relay::driver::{self, RelayService};
use crate::relay::{RelayStats, RelayStatus};
use crate::socket::{Frame, Path, PathSocket, SocketOptions, SocketStats};
use crate::traversal::driver::{self as traversal_driver, TraversalService};
use crate::traversal::{TraversalError, TraversalErrorKind, TraversalSnapshot};
use crate::{
    BindError, DialError, DialErrorKind, Incoming, PathKind, PeerEvent, PeerInfo, PeerState,
    StreamError, TransportConfig, CLOSE_SHUTDOWN,
};

use dial::Route;
pub use failures::HandshakeFailure;
use failures::HandshakeFailures;

use peers::{LiveConn, PeerTable};

/// Capacity of the queue behind [`Transport::accept`]. When it is full the
/// per-connection stream forwarders wait (back-pressure reaches quinn's own
/// bounded stream limits), and application datagrams are dropped and
/// counted ([`ChannelStats::app_datagrams_dropped`]): control messages,
/// read by the same task, never wait for a slow reader.
const INCOMING_QUEUE: usize = 1024;
/// Takes each stream a peer opens as it is accepted, on that connection's
/// forwarding task, ahead of the accept queue: returns the stream when it
/// leaves it to the queue. It must not wait (the forwarder accepts the
/// connection's next stream only after it returns).
pub type StreamHook = Arc<dyn Fn(Incoming) -> Option<Incoming> + Send + Sync>;

/// Capacity of the event channel; slow subscribers see `Lagged`.
const EVENT_QUEUE: usize = 256;
/// How long [`Transport::close`] waits for connections to drain. Every
/// CONNECTION_CLOSE is already sent by then; draining only absorbs late
/// packets, and a dial refused before any RTT sample drains for seconds.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Capacity of the queues handing frames and traversal messages to the
/// traversal layer; beyond it they are dropped.
const TRAVERSAL_QUEUE: usize = 1024;

/// State shared by the transport's handles and background tasks.
pub(crate) struct Shared {
    pub(crate) node_id: NodeId,
    pub(crate) config: TransportConfig,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) socket: Arc<PathSocket>,
    /// quinn's client and server configs (keepalive interval included).
    pub(crate) quic: quic::QuicConfigs,
    pub(crate) noise_stats: Arc<NoiseStats>,
    /// Counters of the control channels and application datagrams.
    pub(crate) channel_counters: Arc<channel::ChannelCounters>,
    pub(crate) peers: Mutex<PeerTable>,
    pub(crate) events: broadcast::Sender<PeerEvent>,
    /// Taken on close, so [`Transport::accept`] ends once the forwarders
    /// are gone.
    pub(crate) incoming_tx: Mutex<Option<mpsc::Sender<Incoming>>>,
    incoming_rx: tokio::sync::Mutex<mpsc::Receiver<Incoming>>,
    /// Takes streams ahead of the accept queue, while installed.
    pub(crate) stream_hook: RwLock<Option<StreamHook>>,
    /// Becomes `true` when the transport closes.
    pub(crate) shutdown: watch::Sender<bool>,
    /// The relay server, when this node relays.
    pub(crate) relay_server: Option<Arc<RelayService>>,
    /// The relays this node uses.
    pub(crate) relays: Mutex<RelayClients>,
    /// Bumped whenever the set of relays changes.
    pub(crate) relays_changed: watch::Sender<u64>,
    /// What each peer observes for us.
    pub(crate) observed: Mutex<HashMap<NodeId, SocketAddr>>,
    /// Traversal messages received, for the traversal layer.
    pub(crate) traversal_tx: mpsc::Sender<(NodeId, TraversalMsg)>,
    traversal_rx: Mutex<Option<mpsc::Receiver<(NodeId, TraversalMsg)>>>,
    /// Our frames other than relay frames, for the traversal layer.
    other_frames_rx: Mutex<Option<mpsc::Receiver<Frame>>>,
    /// The traversal core, when traversal runs.
    pub(crate) traversal: Option<Arc<TraversalService>>,
    /// Port mapping, when it runs.
    pub(crate) portmap: Option<Arc<PortMapService>>,
    /// Failed handshakes, for status and rate-limited warnings.
    failures: Mutex<HandshakeFailures>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("node_id", &self.node_id)
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The peer table, locked. Never hold the guard across an `.await`.
    pub(crate) fn table(&self) -> MutexGuard<'_, PeerTable> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The failed-handshake record, locked (never across an `.await`).
    pub(crate) fn failures(&self) -> MutexGuard<'_, HandshakeFailures> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends an event; having no subscriber is fine.
    pub(crate) fn emit(&self, event: PeerEvent) {
        let _ = self.events.send(event);
    }

    /// A sender for the accept queue, unless closed.
    pub(crate) fn incoming_sender(&self) -> Option<mpsc::Sender<Incoming>> {
        self.incoming_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The live connection to `node_id`.
    pub(crate) fn live(&self, node_id: &NodeId) -> Option<LiveConn> {
        self.table().peers.get(node_id)?.live().cloned()
    }

    /// Stops everything without waiting: no new connections or dials, every
    /// connection and the endpoint closed with [`CLOSE_SHUTDOWN`].
    fn shutdown_now(&self) {
        let conns: Vec<quinn::Connection> = {
            let mut table = self.table();
            table.closed = true;
            table
                .peers
                .values()
                .filter_map(|e| e.conn.as_ref().map(|c| c.conn.clone()))
                .collect()
        };
        self.shutdown.send_replace(true);
        let code = quinn::VarInt::from_u32(CLOSE_SHUTDOWN);
        for conn in conns {
            conn.close(code, b"shutdown");
        }
        self.endpoint.close(code, b"shutdown");
    }
}

/// The last user handle: dropping it shuts the transport down.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.shutdown_now();
        self.shared
            .incoming_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

/// A running endpoint. Cheap to clone; all clones share one endpoint.
#[derive(Debug, Clone)]
pub struct Transport {
    handle: Arc<Handle>,
}

impl Transport {
    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Binds the UDP socket and starts accepting connections.
    pub async fn bind(config: TransportConfig) -> Result<Self, BindError> {
        let options = SocketOptions {
            unadopted_ttl: config.idle_timeout,
            ..SocketOptions::default()
        };
        let socket = PathSocket::bind(config.listen, &options).map_err(|source| BindError::Io {
            addr: config.listen,
            source,
        })?;
        let socket = Arc::new(socket);

        let transport =
            quic::transport_config(config.idle_timeout, config.keep_alive, &config.quic)
                .map_err(BindError::Config)?;
        let transport = Arc::new(transport);

        let noise_config = NoiseConfig::new(config.secret_key.clone(), config.network_key.clone());
        let noise_stats = noise_config.stats.clone();
        let server_config = noise::server_config(&noise_config, transport.clone());
        let client_config = noise::client_config(&noise_config, transport);
        let quic = quic::QuicConfigs::new(
            config.idle_timeout,
            config.quic.clone(),
            config.keep_alive,
            client_config,
            server_config.clone(),
        );
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            noise::endpoint_config_for(&config.secret_key),
            Some(server_config),
            socket.clone(),
            Arc::new(runtime::DriverRuntime(quinn::TokioRuntime)),
        )
        .map_err(|source| BindError::Io {
            addr: config.listen,
            source,
        })?;

        let (events, _) = broadcast::channel(EVENT_QUEUE);
        let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
        let node_id = config.secret_key.node_id();
        let relay_server = config
            .relay
            .then(|| Arc::new(RelayService::new(config.relay_limits)));
        let (traversal_tx, traversal_rx) = mpsc::channel(TRAVERSAL_QUEUE);
        let (other_tx, other_rx) = mpsc::channel(TRAVERSAL_QUEUE);
        let frames = socket.take_frames();
        let traversal = config.traversal.then(|| {
            Arc::new(TraversalService::new(
                node_id,
                config.public_addr,
                config.idle_timeout,
                config.birthday,
            ))
        });
        let portmap = config
            .port_map
            .enabled
            .then(|| Arc::new(PortMapService::new(config.port_map.clone())));
        let shared = Arc::new(Shared {
            node_id,
            config,
            endpoint,
            socket,
            quic,
            noise_stats,
            channel_counters: Arc::default(),
            peers: Mutex::new(PeerTable::default()),
            events,
            incoming_tx: Mutex::new(Some(incoming_tx)),
            incoming_rx: tokio::sync::Mutex::new(incoming_rx),
            stream_hook: RwLock::new(None),
            shutdown: watch::Sender::new(false),
            relay_server,
            relays: Mutex::default(),
            relays_changed: watch::Sender::new(0),
            observed: Mutex::default(),
            traversal_tx,
            traversal_rx: Mutex::new(Some(traversal_rx)),
            other_frames_rx: Mutex::new(Some(other_rx)),
            traversal,
            portmap,
            failures: Mutex::default(),
        });
        if let Some(service) = &shared.traversal {
            let frames = shared
                .other_frames_rx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            let messages = shared
                .traversal_rx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            let commands = service.take_commands();
            if let (Some(frames), Some(messages), Some(commands)) = (frames, messages, commands) {
                let inputs = traversal_driver::Inputs {
                    frames,
                    messages,
                    events: shared.events.subscribe(),
                    commands,
                };
                tokio::spawn(traversal_driver::run(
                    shared.clone(),
                    service.clone(),
                    inputs,
                ));
            }
        }
        if let Some(service) = &shared.portmap {
            tokio::spawn(portmap_driver::run(shared.clone(), service.clone()));
        }
        tokio::spawn(accept::accept_loop(shared.clone()));
        tokio::spawn(
            shared
                .socket
                .clone()
                .sweep_expired(shared.shutdown.subscribe()),
        );
        if let Some(frames) = frames {
            tokio::spawn(driver::frame_loop(
                shared.clone(),
                shared.relay_server.clone(),
                frames,
                other_tx,
            ));
        }
        tracing::info!(
            node = %node_id.fmt_short(),
            addr = %shared.socket.real_local_addr(),
            relay = shared.relay_server.is_some(),
            "transport bound"
        );
        Ok(Self {
            handle: Arc::new(Handle { shared }),
        })
    }

    /// This node's identity.
    pub fn node_id(&self) -> NodeId {
        self.shared().node_id
    }

    /// The addresses the UDP socket is bound to (with the real port).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        vec![self.shared().socket.real_local_addr()]
    }

    /// Dials `node_id` at `addr` once; returns when connected (or already
    /// connected). Leaves no state behind on failure.
    pub async fn connect(&self, node_id: NodeId, addr: SocketAddr) -> Result<(), DialError> {
        dial::connect(self.shared(), node_id, Route::Addr(addr)).await
    }

    /// Dials `node_id` knowing only its NodeId: through a connected relay
    /// that serves us (waiting up to the dial timeout for a registration in
    /// progress). Returns when connected (or already connected). Fails with
    /// `no-relay` when no relay serves us and `peer-not-reachable` when no
    /// relay knows the peer. The connection starts relayed; a later
    /// [`Transport::set_path`] may move it to a direct path.
    pub async fn connect_relayed(&self, node_id: NodeId) -> Result<(), DialError> {
        dial::connect(self.shared(), node_id, Route::Relay).await
    }

    /// Dials `node_id` by the best route known: through a relay that serves
    /// us when there is one (so the first bytes flow at once; traversal then
    /// upgrades the path to direct), falling back to `addr` when no relay
    /// knows the peer; straight to `addr` when no relay serves us. With
    /// neither a relay nor an address, fails with `no-relay`.
    pub async fn connect_best(
        &self,
        node_id: NodeId,
        addr: Option<SocketAddr>,
    ) -> Result<(), DialError> {
        dial::connect_best(self.shared(), node_id, addr).await
    }

    /// The relays that serve us now (connected, registration confirmed).
    pub fn relays(&self) -> Vec<NodeId> {
        self.shared()
            .relays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .registered()
    }

    /// This node's relay server: enabled, limits, counters.
    pub fn relay_status(&self) -> RelayStatus {
        let shared = self.shared();
        match &shared.relay_server {
            Some(relay) => RelayStatus {
                enabled: true,
                limits: relay.limits(),
                stats: relay.stats(),
            },
            None => RelayStatus {
                enabled: false,
                limits: shared.config.relay_limits,
                stats: RelayStats::default(),
            },
        }
    }

    /// Relay sessions this node's relay server closed since the last call
    /// (a client left, or the pair was idle; see [`crate::relay::sessions`]),
    /// oldest first. Empty when this node does not relay. Whoever keeps
    /// account of relayed traffic polls this.
    pub fn relay_sessions(&self) -> Vec<crate::relay::RelaySessionEvent> {
        match &self.shared().relay_server {
            Some(relay) => relay.closed_sessions(),
            None => Vec::new(),
        }
    }

    /// The mesh network key peers authenticate with (`None`: an open mesh).
    pub fn network_key(&self) -> Option<relay_proto::NetworkKey> {
        self.shared().config.network_key.clone()
    }

    /// The addresses connected peers observe for us (our reflexive
    /// addresses as each of them sees them), sorted by peer.
    pub fn observed_addrs(&self) -> Vec<(NodeId, SocketAddr)> {
        let mut out: Vec<(NodeId, SocketAddr)> = self
            .shared()
            .observed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, addr)| (*id, *addr))
            .collect();
        out.sort();
        out
    }

    /// Sends a control message to a connected peer, reliably: it is
    /// acknowledged and retransmitted after about an RTT until it is, and
    /// the peer handles it once, in the order sent. Never waits.
    pub fn send_control(&self, node_id: NodeId, msg: &ControlMsg) -> Result<(), StreamError> {
        if control::send_to(self.shared(), &node_id, msg) {
            Ok(())
        } else {
            Err(StreamError::NotConnected(node_id.to_string()))
        }
    }

    /// The receiver of traversal control messages from peers. Only the
    /// first caller gets it; until then they are dropped. With
    /// [`TransportConfig::traversal`] on, the transport's own traversal
    /// takes it and this returns `None`.
    pub fn take_traversal_messages(&self) -> Option<mpsc::Receiver<(NodeId, TraversalMsg)>> {
        self.shared()
            .traversal_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The receiver of our own UDP frames other than relay frames
    /// (traversal probes). The transport owns the path socket's frame
    /// channel; this is the way to them. Only the first caller gets it;
    /// until then they are dropped. With [`TransportConfig::traversal`] on,
    /// the transport's own traversal takes it and this returns `None`.
    pub fn take_frames(&self) -> Option<mpsc::Receiver<Frame>> {
        self.shared()
            .other_frames_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Keeps `node_id` connected: dials `addr` now and redials with capped
    /// exponential backoff whenever the connection is lost.
    pub fn add_peer(&self, node_id: NodeId, addr: SocketAddr) {
        dial::add_peer(self.shared(), node_id, vec![addr]);
    }

    /// Like [`Transport::add_peer`] with several addresses (for example all
    /// of a join ticket's): each redial attempt tries the next one in turn.
    pub fn add_peer_addrs(&self, node_id: NodeId, addrs: Vec<SocketAddr>) {
        dial::add_peer(self.shared(), node_id, addrs);
    }

    fn connection(&self, node_id: &NodeId) -> Result<quinn::Connection, StreamError> {
        self.shared()
            .live(node_id)
            .map(|c| c.conn)
            .ok_or_else(|| StreamError::NotConnected(node_id.to_string()))
    }

    /// Opens a bidirectional stream to a connected peer.
    pub async fn open_bi(
        &self,
        node_id: NodeId,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), StreamError> {
        let conn = self.connection(&node_id)?;
        conn.open_bi()
            .await
            .map_err(|e| StreamError::ConnectionLost(conn::describe(&e)))
    }

    /// Opens a unidirectional stream to a connected peer.
    pub async fn open_uni(&self, node_id: NodeId) -> Result<quinn::SendStream, StreamError> {
        let conn = self.connection(&node_id)?;
        conn.open_uni()
            .await
            .map_err(|e| StreamError::ConnectionLost(conn::describe(&e)))
    }

    /// Sends an unreliable datagram to a connected peer.
    pub fn send_datagram(&self, node_id: NodeId, data: Bytes) -> Result<(), StreamError> {
        let conn = self.connection(&node_id)?;
        let mut framed = BytesMut::with_capacity(data.len() + 1);
        framed.put_u8(DATAGRAM_APP);
        framed.put_slice(&data);
        conn.send_datagram(framed.freeze()).map_err(|e| match e {
            quinn::SendDatagramError::ConnectionLost(e) => {
                StreamError::ConnectionLost(conn::describe(&e))
            }
            other => StreamError::Datagram(other.to_string()),
        })
    }

    /// Installs `hook` (in place of any other) to take the streams peers
    /// open before they reach the accept queue; what it hands back is
    /// queued as before. For the protocol mux, which routes most streams
    /// without waiting, so they skip the queue and a task wake-up each.
    pub fn set_stream_hook(&self, hook: StreamHook) {
        *self
            .shared()
            .stream_hook
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Removes `hook` if it is the one installed: streams queue again.
    pub fn remove_stream_hook(&self, hook: &StreamHook) {
        let mut installed = self
            .shared()
            .stream_hook
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if installed.as_ref().is_some_and(|h| Arc::ptr_eq(h, hook)) {
            *installed = None;
        }
    }

    /// The next stream or datagram a peer opened or sent. `None` once closed.
    pub async fn accept(&self) -> Option<Incoming> {
        self.shared().incoming_rx.lock().await.recv().await
    }

    /// Peer events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.shared().events.subscribe()
    }

    /// A snapshot of every known peer.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let shared = self.shared();
        let observed = shared
            .observed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let failures: HashMap<NodeId, String> = {
            let record = shared.failures();
            shared
                .table()
                .peers
                .keys()
                .filter_map(|id| record.of(id).map(|f| (*id, f.why())))
                .collect()
        };
        let snapshot: Vec<(NodeId, Option<LiveConn>, bool)> = shared
            .table()
            .peers
            .iter()
            .map(|(id, e)| {
                let trying = e.dial.is_some() || e.persistent.is_some();
                (*id, e.live().cloned(), trying)
            })
            .collect();
        let mut infos: Vec<PeerInfo> = snapshot
            .into_iter()
            .map(|(node_id, live, trying)| match live {
                Some(live) => {
                    let path = shared.socket.path(&live.mapped());
                    let stats = live.conn.stats();
                    let why = match (path, &shared.traversal) {
                        (Some(Path::Direct(_)), _) | (_, None) => None,
                        (_, Some(t)) => Some(t.why(&node_id)),
                    };
                    PeerInfo {
                        node_id,
                        state: PeerState::Connected,
                        path: path.map_or(PathKind::None, |p| p.kind()),
                        remote_addr: path.and_then(|p| p.direct_addr()),
                        via: path.as_ref().and_then(paths::relay_of),
                        path_changes: live.path_change_count(),
                        observed_addr: observed.get(&node_id).copied(),
                        rtt: Some(live.conn.rtt()),
                        bytes_sent: stats.udp_tx.bytes,
                        bytes_received: stats.udp_rx.bytes,
                        since: Some(live.since),
                        outbound: live.outbound,
                        why,
                    }
                }
                None => PeerInfo {
                    node_id,
                    state: if trying {
                        PeerState::Connecting
                    } else {
                        PeerState::Disconnected
                    },
                    path: PathKind::None,
                    remote_addr: None,
                    via: None,
                    path_changes: 0,
                    observed_addr: None,
                    rtt: None,
                    bytes_sent: 0,
                    bytes_received: 0,
                    since: None,
                    outbound: false,
                    why: failures.get(&node_id).cloned(),
                },
            })
            .collect();
        infos.sort_by_key(|p| p.node_id);
        infos
    }

    /// Moves a connected peer to another path under its live connection:
    /// no new handshake, streams carry on. Emits [`PeerEvent::PathChanged`].
    /// Traversal and relaying use this; so do tests.
    pub fn set_path(&self, node_id: NodeId, path: Path) -> Result<(), StreamError> {
        paths::change(self.shared(), node_id, path)
    }

    /// Asks traversal to try a direct path to a connected, relayed peer now
    /// instead of at its next scheduled attempt (a no-op when the peer is
    /// direct or a punch is running). Progress shows in
    /// [`PeerEvent::PathChanged`] and [`Transport::traversal_snapshot`].
    pub fn request_direct(&self, node_id: NodeId) -> Result<(), TraversalError> {
        let shared = self.shared();
        let Some(traversal) = &shared.traversal else {
            return Err(TraversalError::new(
                TraversalErrorKind::Unsupported,
                "traversal is off on this node",
            ));
        };
        if shared.live(&node_id).is_none() {
            return Err(TraversalError::new(
                TraversalErrorKind::PeerNotReachable,
                format!("not connected to {}", node_id.fmt_short()),
            ));
        }
        if !traversal.request_direct(node_id) {
            return Err(TraversalError::new(
                TraversalErrorKind::Transport,
                "traversal is busy; try again",
            ));
        }
        Ok(())
    }

    /// NAT type, reflexive address, traversal counters, why each connected
    /// peer not on a direct path is not direct, and the observations
    /// behind the NAT type.
    /// All defaults (`enabled: false`) when traversal is off.
    pub fn traversal_snapshot(&self) -> TraversalSnapshot {
        let shared = self.shared();
        let Some(traversal) = &shared.traversal else {
            return TraversalSnapshot::default();
        };
        let live: Vec<(NodeId, SocketAddr)> = shared
            .table()
            .peers
            .iter()
            .filter_map(|(id, e)| e.live().map(|c| (*id, c.mapped())))
            .collect();
        let not_direct: Vec<NodeId> = live
            .into_iter()
            .filter(|(_, mapped)| !matches!(shared.socket.path(mapped), Some(Path::Direct(_))))
            .map(|(id, _)| id)
            .collect();
        let mut snapshot = traversal.snapshot(&not_direct);
        snapshot.quic_keep_alive = shared.quic.keep_alive();
        snapshot
    }

    /// Port mapping: the protocol that holds a mapping of our UDP port on
    /// the gateway, the mapped address and its time left, or why there is
    /// none (`port-map-unavailable: ...`). `state` is "off" when
    /// [`TransportConfig::port_map`] is disabled.
    pub fn port_map_status(&self) -> PortMapStatus {
        match &self.shared().portmap {
            Some(service) => service.status(),
            None => PortMapStatus::off(),
        }
    }

    /// Counters of the path socket.
    pub fn socket_stats(&self) -> SocketStats {
        self.shared().socket.stats()
    }

    /// Failed handshakes: how many, the last one (dialed or inbound),
    /// and the inbound admission counters (Retries sent, attempts
    /// dropped). A peer whose last dial failed also shows it as its
    /// [`PeerInfo::why`] until a dial succeeds.
    pub fn handshake_status(&self) -> HandshakeStatus {
        let shared = self.shared();
        let (last, failures) = {
            let record = shared.failures();
            let (last, total) = record.last();
            (last.cloned(), total)
        };
        let stats = &shared.noise_stats;
        HandshakeStatus {
            failures,
            last,
            retries_sent: stats
                .retries_sent
                .load(std::sync::atomic::Ordering::Relaxed),
            attempts_dropped: stats
                .attempts_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Counters of the control channels (sent, retransmitted, delivered)
    /// and of application datagrams dropped because nobody read them.
    pub fn channel_stats(&self) -> ChannelStats {
        self.shared().channel_counters.snapshot()
    }

    /// Counters of the Noise layer.
    pub fn noise_stats(&self) -> &NoiseStats {
        &self.shared().noise_stats
    }

    /// The path socket, for layers that send their own frames on it
    /// (traversal, relay).
    pub fn path_socket(&self) -> &Arc<PathSocket> {
        &self.shared().socket
    }

    /// Closes every connection cleanly and stops the endpoint.
    pub async fn close(&self) {
        let shared = self.shared();
        shared.shutdown_now();
        if let Some(portmap) = &shared.portmap {
            // Releasing the mapping takes one exchange with the gateway.
            portmap.wait_stopped(portmap_driver::RELEASE_BUDGET).await;
        }
        let _ = tokio::time::timeout(CLOSE_WAIT, shared.endpoint.wait_idle()).await;
        shared
            .incoming_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        tracing::info!(node = %shared.node_id.fmt_short(), "transport closed");
    }
}

/// Failed handshakes as status shows them; see
/// [`Transport::handshake_status`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandshakeStatus {
    /// Failed handshakes recorded (dialed and inbound; key mismatches,
    /// refusals and timeouts of dials).
    pub failures: u64,
    /// The most recent one.
    pub last: Option<HandshakeFailure>,
    /// Inbound attempts answered with a QUIC Retry.
    pub retries_sent: u64,
    /// Inbound attempts dropped unanswered.
    pub attempts_dropped: u64,
}

/// A dial error for a closed transport.
pub(crate) fn closed_error() -> DialError {
    DialError::new(DialErrorKind::EndpointClosed, "the transport is closed")
}
