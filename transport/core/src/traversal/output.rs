//! What the traversal core asks its driver to send, and what it reports.

use std::net::SocketAddr;

use relay_proto::wire::traversal::TraversalMsg;
use relay_proto::NodeId;

use super::birthday::PortId;
use super::error::TraversalError;
use super::nat::NatReport;
use super::roam::AddressChange;

/// Something to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraversalTransmit {
    /// A UDP frame (probe or reply) from our path socket to a real address.
    Frame {
        /// Destination.
        dst: SocketAddr,
        /// The whole frame, type byte first.
        data: Vec<u8>,
    },
    /// A UDP frame from one of our extra probe ports (birthday probing,
    /// see `birthday`). The driver opens the port on first use.
    PortFrame {
        /// The probe port to send from.
        port: PortId,
        /// Destination.
        dst: SocketAddr,
        /// The whole frame, type byte first.
        data: Vec<u8>,
    },
    /// A control message on the connection to a peer.
    Control {
        /// The peer.
        to: NodeId,
        /// The message.
        msg: TraversalMsg,
    },
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraversalEvent {
    /// Our NAT classification or reflexive address changed.
    NatChanged(NatReport),
    /// A direct path to `peer` at `addr` is validated both ways and agreed
    /// on by both sides.
    DirectPathFound {
        /// The peer.
        peer: NodeId,
        /// Its address on the direct path.
        addr: SocketAddr,
    },
    /// Keepalives on a direct path went unanswered: use another path.
    DirectPathLost {
        /// The peer.
        peer: NodeId,
        /// The address that stopped answering.
        addr: SocketAddr,
    },
    /// Going direct to `peer` failed; it stays on its current path.
    PunchFailed {
        /// The peer.
        peer: NodeId,
        /// What failed.
        error: TraversalError,
        /// A short reason for status, e.g. "symmetric x symmetric" or
        /// "punch-failed: timeout".
        why: String,
    },
    /// `peer` answered at `addr` on probe port `port`: from now on every
    /// packet to `addr`, QUIC included, must leave from that port (the
    /// mapping it opened in our NAT is the only one `addr` accepts), and
    /// QUIC arriving there from `addr` belongs to `peer`.
    PortRoute {
        /// The peer.
        peer: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// The probe port.
        port: PortId,
    },
    /// These probe ports are no longer needed: close them and drop any
    /// route through them.
    ReleasePorts {
        /// The ports.
        ports: Vec<PortId>,
    },
    /// A failure not tied to one peer (e.g. `reflex-timeout`).
    Error(TraversalError),
    /// Our own address changed (see `roam`): direct paths are being
    /// probed, the NAT is re-learned, peers were told.
    AddressChanged(AddressChange),
    /// After an address change: ask for an introduction to `peer` now
    /// (its direct path was lost; see `roam`). Also after we got a port
    /// mapping, for each peer whose punch had failed (`mapped`).
    Repunch {
        /// The peer.
        peer: NodeId,
    },
}
