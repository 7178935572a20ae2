//! The peer table: one entry per known NodeId with its live connection (at
//! most one), its in-flight dial and, for persistent peers, the redial
//! settings. Also the duplicate-connection tie-break.
//!
//! The table sits behind a `std::sync::Mutex`; callers hold it only for map
//! operations, never across an `.await`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use relay_proto::NodeId;
use tokio::sync::{watch, Notify};

use super::channel::ControlChannel;
use crate::DialError;

/// What an in-flight dial reports: `None` while running.
pub(crate) type DialStatus = Option<Result<(), DialError>>;

/// A live connection to a peer.
#[derive(Debug, Clone)]
pub(crate) struct LiveConn {
    pub(crate) conn: quinn::Connection,
    /// We initiated it.
    pub(crate) outbound: bool,
    /// When it was established; unchanged by path changes.
    pub(crate) since: SystemTime,
    /// Path changes so far.
    pub(crate) path_changes: Arc<AtomicU32>,
    /// Why this node closed it, when the close code alone does not say.
    pub(crate) close_note: Arc<Mutex<Option<String>>>,
    /// Its reliable control channel.
    pub(crate) control: Arc<ControlChannel>,
}

impl LiveConn {
    /// A freshly established connection.
    pub(crate) fn new(
        conn: quinn::Connection,
        outbound: bool,
        control: Arc<ControlChannel>,
    ) -> Self {
        Self {
            control,
            conn,
            outbound,
            since: SystemTime::now(),
            path_changes: Arc::default(),
            close_note: Arc::default(),
        }
    }

    pub(crate) fn count_path_change(&self) {
        self.path_changes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn path_change_count(&self) -> u32 {
        self.path_changes.load(Ordering::Relaxed)
    }

    /// Records why we close it (reported instead of `local-close`).
    pub(crate) fn set_close_note(&self, note: String) {
        *self.close_note.lock().unwrap_or_else(|e| e.into_inner()) = Some(note);
    }

    pub(crate) fn close_note(&self) -> Option<String> {
        self.close_note
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.conn.close_reason().is_none()
    }

    /// The mapped address quinn uses for the peer.
    pub(crate) fn mapped(&self) -> SocketAddr {
        self.conn.remote_address()
    }
}

/// Redial settings of a persistent peer.
#[derive(Debug)]
pub(crate) struct Persistent {
    /// Where to redial: tried in turn, one address per attempt.
    pub(crate) addrs: Vec<SocketAddr>,
    /// Woken when the connection is lost.
    pub(crate) wake: Arc<Notify>,
}

/// Everything known about one peer.
#[derive(Debug, Default)]
pub(crate) struct PeerEntry {
    pub(crate) conn: Option<LiveConn>,
    pub(crate) persistent: Option<Persistent>,
    /// The running dial, shared by every caller of `connect`.
    pub(crate) dial: Option<watch::Receiver<DialStatus>>,
}

impl PeerEntry {
    /// The live connection, if any.
    pub(crate) fn live(&self) -> Option<&LiveConn> {
        self.conn.as_ref().filter(|c| c.is_alive())
    }

    /// Whether nothing keeps this entry: no connection, no dial, not
    /// persistent.
    pub(crate) fn is_idle(&self) -> bool {
        self.live().is_none() && self.dial.is_none() && self.persistent.is_none()
    }
}

/// The table itself.
#[derive(Debug, Default)]
pub(crate) struct PeerTable {
    pub(crate) peers: foldhash::HashMap<NodeId, PeerEntry>,
    /// Set once the transport closes; nothing new is admitted.
    pub(crate) closed: bool,
}

/// Whether a new connection should replace the current one to the same peer.
///
/// With different initiators, the connection initiated by the lower NodeId
/// wins; both sides compute the same answer from their own view. With the
/// same initiator, the newer one wins: the initiator only dials again once it
/// considers the old connection gone.
pub(crate) fn new_wins(
    local: &NodeId,
    peer: &NodeId,
    current_outbound: bool,
    new_outbound: bool,
) -> bool {
    if current_outbound == new_outbound {
        return true;
    }
    let initiator = |outbound: bool| if outbound { local } else { peer };
    initiator(new_outbound) < initiator(current_outbound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;

    fn ordered() -> (NodeId, NodeId) {
        let a = SecretKey::generate().node_id();
        let b = SecretKey::generate().node_id();
        if a < b {
            (a, b)
        } else {
            (b, a)
        }
    }

    #[test]
    fn lower_initiator_wins_on_both_sides() {
        let (low, high) = ordered();
        // On the low side: its own dial (outbound) beats the inbound one,
        // whichever arrived first.
        assert!(new_wins(&low, &high, false, true));
        assert!(!new_wins(&low, &high, true, false));
        // On the high side: the inbound one (initiated by low) wins.
        assert!(new_wins(&high, &low, true, false));
        assert!(!new_wins(&high, &low, false, true));
    }

    #[test]
    fn same_initiator_newer_wins() {
        let (low, high) = ordered();
        assert!(new_wins(&low, &high, true, true));
        assert!(new_wins(&high, &low, false, false));
    }
}
