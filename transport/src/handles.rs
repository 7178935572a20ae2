//! The narrow handles the endpoint passes to its drivers.
//!
//! A driver (traversal, relay server, relay client, port mapping) never
//! reaches into the endpoint's internals: it gets one of these traits,
//! which the endpoint implements, exposing exactly the operations that
//! driver uses: the path socket for its I/O, the shutdown signal, and a
//! few calls on the endpoint's peers (look up a live connection, send a
//! control message, move a peer to a path). So the endpoint depends on
//! the drivers and the drivers depend only on this file.

use std::net::SocketAddr;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use relay_proto::wire::control::ControlMsg;
use relay_proto::NodeId;
use tokio::sync::watch;

use crate::socket::{Path, PathSocket};
use crate::{PeerEvent, StreamError};

/// A live connection to a peer, as a driver sees it.
#[derive(Debug, Clone)]
pub(crate) struct LivePeer {
    /// The connection.
    pub(crate) conn: quinn::Connection,
    /// We initiated it.
    pub(crate) outbound: bool,
}

impl LivePeer {
    /// The peer's mapped address (what quinn sees).
    pub(crate) fn mapped(&self) -> SocketAddr {
        self.conn.remote_address()
    }
}

/// What every driver uses: its I/O and when to stop.
pub(crate) trait DriverIo: Send + Sync {
    /// The path socket.
    fn socket(&self) -> &Arc<PathSocket>;
    /// Turns `true` when the transport closes.
    fn shutdown(&self) -> watch::Receiver<bool>;
}

/// Sending on a peer's reliable control channel.
pub(crate) trait SendControl: Send + Sync {
    /// Queues `msg` for connected `to`; false when `to` is not connected.
    fn send_control(&self, to: &NodeId, msg: &ControlMsg) -> bool;
}

/// The endpoint's peers, as the drivers that move paths see them.
pub(crate) trait PeerPaths: DriverIo {
    /// `peer`'s live connection.
    fn live(&self, peer: &NodeId) -> Option<LivePeer>;
    /// Moves connected `peer` onto `path` (no new handshake) and reports
    /// the change.
    fn change_path(&self, peer: NodeId, path: Path) -> Result<(), StreamError>;
}

/// The handle of the traversal driver (and its address sampling).
pub(crate) trait TraversalHost: PeerPaths + SendControl {
    /// The relays that confirmed our registration.
    fn registered_relays(&self) -> Vec<NodeId>;
    /// Every peer with a live connection.
    fn live_peers(&self) -> Vec<NodeId>;
    /// What each peer observes for us.
    fn observed(&self) -> Vec<(NodeId, SocketAddr)>;
    /// Sets the QUIC keepalive interval of new connections; false when it
    /// is unchanged.
    fn set_keep_alive(&self, keep_alive: Duration) -> bool;
}

/// The handle of the relay client.
pub(crate) trait RelayClientHost: PeerPaths {
    /// The relay client's state, which the endpoint keeps for it (the
    /// client names its own type, so this file does not depend on it).
    type Clients;
    /// The relays we use and the relayed dials in progress, locked (never
    /// across an `.await`).
    fn relay_clients(&self) -> MutexGuard<'_, Self::Clients>;
    /// Bumped whenever the set of relays changes.
    fn relays_changed(&self) -> &watch::Sender<u64>;
    /// How long a dial may take.
    fn dial_timeout(&self) -> Duration;
    /// Every connected peer on a relayed path, with that path.
    fn relayed_peers(&self) -> Vec<(NodeId, Path)>;
    /// Reports an event to subscribers.
    fn emit(&self, event: PeerEvent);
    /// Closes `node`'s connection as gone, with `note` as the reason.
    fn close_with_note(&self, node: &NodeId, note: String);
}

/// The handle of the relay server's driver.
pub(crate) trait RelayServerHost: DriverIo + SendControl {}

/// The handle of the port-mapping driver.
pub(crate) trait PortMapHost: DriverIo {
    /// Our port-mapped address changed: traversal publishes it.
    fn set_port_mapping(&self, addr: Option<SocketAddr>);
}
