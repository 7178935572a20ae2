//! Limits of the mux and of each protocol's queues.

use std::time::Duration;

/// Limits of the mux as a whole.
#[derive(Debug, Clone)]
pub struct MuxConfig {
    /// How long a peer may take to send a new stream's protocol id; then
    /// the stream is reset with [`super::RESET_ID_TIMEOUT`].
    pub id_timeout: Duration,
    /// How many streams (of all peers) may await their protocol id at once;
    /// beyond it new streams are reset with
    /// [`super::RESET_TOO_MANY_PENDING`].
    pub max_pending: usize,
    /// How many streams of one peer may await their protocol id at once.
    pub max_pending_per_peer: usize,
}

impl Default for MuxConfig {
    fn default() -> Self {
        Self {
            id_timeout: Duration::from_secs(5),
            max_pending: 256,
            max_pending_per_peer: 16,
        }
    }
}

/// The bounds of one protocol's queues. Streams and datagrams queue
/// separately, so a datagram flood never crowds out streams. What does not
/// fit is refused and counted: a stream is reset with
/// [`super::RESET_BUSY`], a datagram dropped.
///
/// A queued stream still counts against its opener's limit of concurrent
/// streams on the connection (quinn's default: 100 of each direction), so
/// one peer's share of a queue stays well below that.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// Streams (bidirectional and unidirectional) waiting for the handler.
    pub streams: usize,
    /// How many of those may come from one peer.
    pub streams_per_peer: usize,
    /// Datagrams waiting for the handler.
    pub datagrams: usize,
    /// How many of those may come from one peer.
    pub datagrams_per_peer: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            streams: 64,
            streams_per_peer: 8,
            datagrams: 256,
            datagrams_per_peer: 64,
        }
    }
}

impl QueueConfig {
    /// The same bounds with every value at least 1 and each per-peer share
    /// at most its queue.
    pub(crate) fn normalized(self) -> Self {
        let streams = self.streams.max(1);
        let datagrams = self.datagrams.max(1);
        Self {
            streams,
            streams_per_peer: self.streams_per_peer.clamp(1, streams),
            datagrams,
            datagrams_per_peer: self.datagrams_per_peer.clamp(1, datagrams),
        }
    }
}
