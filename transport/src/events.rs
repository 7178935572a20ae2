//! What the transport reports upward: peer events, peer snapshots, and
//! incoming streams and datagrams.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use relay_proto::NodeId;

/// The last connection generation handed out.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The next connection generation: strictly increasing within the process,
/// starting at 1, so a larger number for the same peer is a newer
/// connection.
pub(crate) fn next_generation() -> u64 {
    GENERATION.fetch_add(1, Ordering::Relaxed) + 1
}

pub use relay_transport_core::PathKind;

/// Connection state of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerState {
    /// A live connection.
    Connected,
    /// Dialing, or waiting to redial.
    Connecting,
    /// Known but not connected and not dialing.
    Disconnected,
}

impl PeerState {
    /// Stable text: "connected" | "connecting" | "disconnected".
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Connecting => "connecting",
            Self::Disconnected => "disconnected",
        }
    }
}

/// A change in a peer's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// A connection to the peer is up.
    Connected {
        /// The peer.
        node_id: NodeId,
        /// The path it uses.
        path: PathKind,
        /// The real remote address.
        remote_addr: Option<SocketAddr>,
        /// This connection's generation: every connection this process
        /// makes or accepts gets the next number of one counter, from 1.
        /// A `Connected` with a new generation for a peer is a reconnect
        /// (streams of the old connection are gone); a path change keeps
        /// the generation and is reported as [`PeerEvent::PathChanged`].
        generation: u64,
    },
    /// The path under a live connection changed.
    PathChanged {
        /// The peer.
        node_id: NodeId,
        /// The new path.
        path: PathKind,
        /// The new real remote address.
        remote_addr: Option<SocketAddr>,
    },
    /// A relay reports that `node_id` left it, or is not its client.
    /// Emitted whether or not a connection to the peer exists; a
    /// connection relayed through that relay then moves to another relay
    /// or closes with reason `peer-gone: ...`.
    PeerGone {
        /// The peer.
        node_id: NodeId,
        /// The relay that reported it.
        relay: NodeId,
        /// "left" | "unknown".
        reason: String,
    },
    /// A peer told us the address it observes for us (our reflexive
    /// address as seen from it); emitted when it changes.
    ObservedAddr {
        /// The observing peer.
        node_id: NodeId,
        /// Our address as it sees it.
        addr: SocketAddr,
    },
    /// The connection is gone.
    Disconnected {
        /// The peer.
        node_id: NodeId,
        /// Why, as `kind: detail`.
        reason: String,
    },
}

/// A snapshot of one peer, for status.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer.
    pub node_id: NodeId,
    /// Connection state.
    pub state: PeerState,
    /// Current path.
    pub path: PathKind,
    /// The real address the path goes to (direct paths).
    pub remote_addr: Option<SocketAddr>,
    /// The relay carrying the path (relayed paths).
    pub via: Option<NodeId>,
    /// How often the current connection changed paths.
    pub path_changes: u32,
    /// The address this peer observes for us (our reflexive address as
    /// seen from it), if it told us.
    pub observed_addr: Option<SocketAddr>,
    /// Smoothed RTT of the connection.
    pub rtt: Option<Duration>,
    /// UDP payload bytes sent on the current connection.
    pub bytes_sent: u64,
    /// UDP payload bytes received on the current connection.
    pub bytes_received: u64,
    /// When the current connection was established.
    pub since: Option<SystemTime>,
    /// Whether we initiated the current connection.
    pub outbound: bool,
    /// Why a connected peer is not on a direct path, when traversal runs:
    /// the last failure ("symmetric x symmetric", "punch-failed: timeout",
    /// "direct path lost", ...), else "punching" or "punch pending".
    /// For a peer that is not connected: why the last dial to it failed
    /// (`kind: detail`, e.g. `network-key-mismatch: ...`), until one
    /// succeeds. `None` on a direct path.
    pub why: Option<String>,
}

/// Something a peer opened or sent to us.
#[derive(Debug)]
pub enum Incoming {
    /// A bidirectional stream.
    Bi {
        /// The peer.
        from: NodeId,
        /// Our send half.
        send: quinn::SendStream,
        /// Our receive half.
        recv: quinn::RecvStream,
    },
    /// A unidirectional stream.
    Uni {
        /// The peer.
        from: NodeId,
        /// The receive half.
        recv: quinn::RecvStream,
    },
    /// An unreliable datagram.
    Datagram {
        /// The peer.
        from: NodeId,
        /// Its payload.
        data: Bytes,
    },
}

impl Incoming {
    /// The peer that opened or sent it.
    pub fn from(&self) -> NodeId {
        match self {
            Self::Bi { from, .. } | Self::Uni { from, .. } | Self::Datagram { from, .. } => *from,
        }
    }
}
