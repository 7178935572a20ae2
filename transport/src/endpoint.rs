//! The transport endpoint: owns the quinn endpoint, the path socket and the
//! peer table. STUB: signatures are the contract; bodies are being written.

use std::net::SocketAddr;

use bytes::Bytes;
use relay_proto::NodeId;
use tokio::sync::broadcast;

use crate::{BindError, DialError, Incoming, PeerEvent, PeerInfo, StreamError, TransportConfig};

/// A running endpoint. Cheap to clone; all clones share one endpoint.
#[derive(Debug, Clone)]
pub struct Transport {
    _private: (),
}

impl Transport {
    /// Binds the UDP socket and starts accepting connections.
    pub async fn bind(config: TransportConfig) -> Result<Self, BindError> {
        let _ = config;
        todo!()
    }

    /// This node's identity.
    pub fn node_id(&self) -> NodeId {
        todo!()
    }

    /// The addresses the UDP socket is bound to (with the real port).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        todo!()
    }

    /// Dials `node_id` at `addr` once; returns when connected (or already
    /// connected). Leaves no state behind on failure.
    pub async fn connect(&self, node_id: NodeId, addr: SocketAddr) -> Result<(), DialError> {
        let _ = (node_id, addr);
        todo!()
    }

    /// Keeps `node_id` connected: dials `addr` now and redials with capped
    /// exponential backoff whenever the connection is lost.
    pub fn add_peer(&self, node_id: NodeId, addr: SocketAddr) {
        let _ = (node_id, addr);
        todo!()
    }

    /// Opens a bidirectional stream to a connected peer.
    pub async fn open_bi(
        &self,
        node_id: NodeId,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), StreamError> {
        let _ = node_id;
        todo!()
    }

    /// Opens a unidirectional stream to a connected peer.
    pub async fn open_uni(&self, node_id: NodeId) -> Result<quinn::SendStream, StreamError> {
        let _ = node_id;
        todo!()
    }

    /// Sends an unreliable datagram to a connected peer.
    pub fn send_datagram(&self, node_id: NodeId, data: Bytes) -> Result<(), StreamError> {
        let _ = (node_id, data);
        todo!()
    }

    /// The next stream or datagram a peer opened or sent. `None` once closed.
    pub async fn accept(&self) -> Option<Incoming> {
        todo!()
    }

    /// Peer events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        todo!()
    }

    /// A snapshot of every known peer.
    pub fn peers(&self) -> Vec<PeerInfo> {
        todo!()
    }

    /// Closes every connection cleanly and stops the endpoint.
    pub async fn close(&self) {
        todo!()
    }
}
