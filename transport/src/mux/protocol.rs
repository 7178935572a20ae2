//! The handler's end of a registration: the protocol's queue of incoming
//! streams and datagrams (protocol id already read and stripped).

use std::sync::Weak;

use bytes::Bytes;
use relay_proto::NodeId;

use super::id::ProtocolId;
use super::queue::QueueRx;
use super::refuse::{reset_bi, stop_uni, RESET_SHUTDOWN};
use super::registry::Registry;
use crate::Incoming;

/// What a registered protocol receives: bidirectional and unidirectional
/// streams positioned after their protocol id, and datagram payloads
/// without it. Streams and datagrams queue separately, each bounded (see
/// [`super::QueueConfig`]).
///
/// Dropping it unregisters the protocol; streams still queued are reset
/// with [`RESET_SHUTDOWN`].
#[derive(Debug)]
pub struct ProtocolRx {
    id: ProtocolId,
    registry: Weak<Registry>,
    token: u64,
    streams: QueueRx,
    datagrams: QueueRx,
}

impl ProtocolRx {
    pub(crate) fn new(
        id: ProtocolId,
        registry: Weak<Registry>,
        token: u64,
        streams: QueueRx,
        datagrams: QueueRx,
    ) -> Self {
        Self {
            id,
            registry,
            token,
            streams,
            datagrams,
        }
    }

    /// The protocol id.
    pub fn id(&self) -> ProtocolId {
        self.id
    }

    /// The next stream or datagram, whichever comes first. `None` once the
    /// mux has closed and both queues are drained.
    pub async fn next(&mut self) -> Option<Incoming> {
        tokio::select! {
            Some(item) = self.streams.recv() => Some(item),
            Some(item) = self.datagrams.recv() => Some(item),
            else => None,
        }
    }

    /// The next stream ([`Incoming::Bi`] or [`Incoming::Uni`]); datagrams
    /// stay queued (and, once their queue is full, are dropped and counted).
    pub async fn next_stream(&mut self) -> Option<Incoming> {
        self.streams.recv().await
    }

    /// The next datagram: its sender and its payload.
    pub async fn next_datagram(&mut self) -> Option<(NodeId, Bytes)> {
        loop {
            match self.datagrams.recv().await? {
                Incoming::Datagram { from, data } => return Some((from, data)),
                // Only datagrams are queued on this lane.
                Incoming::Bi { .. } | Incoming::Uni { .. } => continue,
            }
        }
    }
}

impl Drop for ProtocolRx {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.unregister(self.id, self.token);
        }
        while let Some(item) = self.streams.try_recv() {
            match item {
                Incoming::Bi {
                    mut send, mut recv, ..
                } => reset_bi(&mut send, &mut recv, RESET_SHUTDOWN),
                Incoming::Uni { mut recv, .. } => stop_uni(&mut recv, RESET_SHUTDOWN),
                Incoming::Datagram { .. } => {}
            }
        }
    }
}
