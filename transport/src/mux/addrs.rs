//! The addresses the mux may dial a NodeId at when it has no connection
//! (from `--peer`, a join ticket, or what an upper layer learned).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use relay_proto::NodeId;

/// Most addresses kept; beyond it new NodeIds are not remembered (known
/// ones can still change their address).
pub const MAX_KNOWN_ADDRS: usize = 4096;

/// One dialable address per NodeId, bounded by [`MAX_KNOWN_ADDRS`].
#[derive(Debug, Default)]
pub(crate) struct AddrBook {
    addrs: Mutex<HashMap<NodeId, SocketAddr>>,
}

impl AddrBook {
    fn addrs(&self) -> MutexGuard<'_, HashMap<NodeId, SocketAddr>> {
        self.addrs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers `addr` for `peer`; false when the book is full.
    pub(crate) fn remember(&self, peer: NodeId, addr: SocketAddr) -> bool {
        let mut addrs = self.addrs();
        if addrs.len() >= MAX_KNOWN_ADDRS && !addrs.contains_key(&peer) {
            return false;
        }
        addrs.insert(peer, addr);
        true
    }

    /// The address remembered for `peer`.
    pub(crate) fn get(&self, peer: &NodeId) -> Option<SocketAddr> {
        self.addrs().get(peer).copied()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use relay_proto::SecretKey;

    #[test]
    fn bounded_but_known_peers_can_move() {
        let book = AddrBook::default();
        let first = SecretKey::generate().node_id();
        let addr: SocketAddr = "192.0.2.1:7420".parse().unwrap();
        assert!(book.remember(first, addr));
        for _ in 1..MAX_KNOWN_ADDRS {
            assert!(book.remember(SecretKey::generate().node_id(), addr));
        }
        let stranger = SecretKey::generate().node_id();
        assert!(!book.remember(stranger, addr), "full");
        assert_eq!(book.get(&stranger), None);
        let moved: SocketAddr = "192.0.2.2:7420".parse().unwrap();
        assert!(book.remember(first, moved), "a known peer may move");
        assert_eq!(book.get(&first), Some(moved));
    }
}
