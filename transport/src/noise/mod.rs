//! Noise-in-QUIC on the async side: the sans-IO Noise session, keys and
//! configs are `relay_transport_core::noise` (re-exported here); this
//! module adds what needs quinn's async `Connection`.
//!
//! The dialer passes the peer's NodeId text as the server name; after the
//! handshake `quinn::Connection::peer_identity()` holds a `Box<NodeId>`
//! ([`peer_node_id`]).

pub use relay_transport_core::noise::*;

use relay_proto::NodeId;

/// The authenticated NodeId of a connection's peer.
pub fn peer_node_id(conn: &quinn::Connection) -> Option<NodeId> {
    conn.peer_identity()?
        .downcast::<NodeId>()
        .ok()
        .map(|id| *id)
}
