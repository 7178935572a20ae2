//! The mux's counters: what each protocol accepted and dropped, and what
//! was refused before a protocol was known.

use std::sync::atomic::{AtomicU64, Ordering};

use super::id::ProtocolId;
use super::refuse::Refusal;

/// A snapshot of the mux's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MuxStats {
    /// One entry per registered protocol, sorted by id.
    pub protocols: Vec<ProtocolStats>,
    /// Streams and datagrams naming an id nobody registered.
    pub unknown_protocol: u64,
    /// Streams that ended or failed before their whole id, and datagrams
    /// shorter than the header.
    pub bad_header: u64,
    /// Streams whose id did not arrive in time.
    pub id_timeout: u64,
    /// Streams refused because too many awaited their id.
    pub too_many_pending: u64,
    /// Streams awaiting their id now.
    pub pending: usize,
}

/// The counters of one registered protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolStats {
    /// Its id.
    pub id: ProtocolId,
    /// Its name (for metrics labels and logs).
    pub name: &'static str,
    /// Streams handed to its queue (or its stream handler).
    pub streams_accepted: u64,
    /// Streams refused because its queue was full (or its stream handler
    /// handed them back).
    pub streams_dropped: u64,
    /// Datagrams handed to its queue.
    pub datagrams_accepted: u64,
    /// Datagrams dropped because its queue was full.
    pub datagrams_dropped: u64,
}

/// Live counters of one protocol.
#[derive(Debug, Default)]
pub(crate) struct ProtocolCounters {
    pub(crate) streams_accepted: AtomicU64,
    pub(crate) streams_dropped: AtomicU64,
    pub(crate) datagrams_accepted: AtomicU64,
    pub(crate) datagrams_dropped: AtomicU64,
}

impl ProtocolCounters {
    pub(crate) fn snapshot(&self, id: ProtocolId, name: &'static str) -> ProtocolStats {
        ProtocolStats {
            id,
            name,
            streams_accepted: self.streams_accepted.load(Ordering::Relaxed),
            streams_dropped: self.streams_dropped.load(Ordering::Relaxed),
            datagrams_accepted: self.datagrams_accepted.load(Ordering::Relaxed),
            datagrams_dropped: self.datagrams_dropped.load(Ordering::Relaxed),
        }
    }
}

/// Live counters of refusals before a protocol took the stream or datagram.
#[derive(Debug, Default)]
pub(crate) struct RefusalCounters {
    unknown_protocol: AtomicU64,
    bad_header: AtomicU64,
    id_timeout: AtomicU64,
    too_many_pending: AtomicU64,
}

impl RefusalCounters {
    /// Counts `refusal`. `busy` is counted per protocol instead, and a
    /// refusal during shutdown not at all.
    pub(crate) fn count(&self, refusal: &Refusal) {
        let counter = match refusal {
            Refusal::UnknownProtocol(_) => &self.unknown_protocol,
            Refusal::BadHeader(_) => &self.bad_header,
            Refusal::IdTimeout(_) => &self.id_timeout,
            Refusal::TooManyPending => &self.too_many_pending,
            Refusal::Busy(_) | Refusal::Shutdown => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Fills the refusal fields of `stats`.
    pub(crate) fn fill(&self, stats: &mut MuxStats) {
        stats.unknown_protocol = self.unknown_protocol.load(Ordering::Relaxed);
        stats.bad_header = self.bad_header.load(Ordering::Relaxed);
        stats.id_timeout = self.id_timeout.load(Ordering::Relaxed);
        stats.too_many_pending = self.too_many_pending.load(Ordering::Relaxed);
    }
}
