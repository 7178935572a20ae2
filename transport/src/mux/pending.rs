//! Admission of incoming streams that still await their protocol id: a
//! bound for all peers together and one per peer, so neither memory nor
//! another peer's streams suffer from a peer that opens streams and sends
//! nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use relay_proto::NodeId;

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_peer: HashMap<NodeId, usize>,
}

/// Counts the streams awaiting their id.
#[derive(Debug)]
pub(crate) struct Pending {
    max_total: usize,
    max_per_peer: usize,
    counts: Mutex<Counts>,
}

impl Pending {
    /// Bounds of `max_total` streams in all and `max_per_peer` per peer
    /// (each at least 1).
    pub(crate) fn new(max_total: usize, max_per_peer: usize) -> Self {
        Self {
            max_total: max_total.max(1),
            max_per_peer: max_per_peer.max(1),
            counts: Mutex::default(),
        }
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for one more stream of `peer`, released when dropped; `None`
    /// when either bound is reached.
    pub(crate) fn admit(self: &Arc<Self>, peer: NodeId) -> Option<PendingSlot> {
        let mut counts = self.counts();
        if counts.total >= self.max_total {
            return None;
        }
        let mine = counts.per_peer.entry(peer).or_default();
        if *mine >= self.max_per_peer {
            return None;
        }
        *mine += 1;
        counts.total += 1;
        Some(PendingSlot {
            pending: self.clone(),
            peer,
        })
    }

    /// Streams awaiting their id now.
    pub(crate) fn count(&self) -> usize {
        self.counts().total
    }

    fn release(&self, peer: &NodeId) {
        let mut counts = self.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(mine) = counts.per_peer.get_mut(peer) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                counts.per_peer.remove(peer);
            }
        }
    }
}

/// One admitted stream; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct PendingSlot {
    pending: Arc<Pending>,
    peer: NodeId,
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.pending.release(&self.peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;

    #[test]
    fn per_peer_bound_leaves_room_for_others() {
        let pending = Arc::new(Pending::new(4, 2));
        let a = SecretKey::generate().node_id();
        let b = SecretKey::generate().node_id();
        let a1 = pending.admit(a);
        let a2 = pending.admit(a);
        assert!(a1.is_some() && a2.is_some());
        assert!(pending.admit(a).is_none(), "a has used its share");
        let b1 = pending.admit(b);
        assert!(b1.is_some(), "b is not held up by a");
        assert_eq!(pending.count(), 3);
        drop(a1);
        assert!(
            pending.admit(a).is_some(),
            "the slot a released is free again"
        );
    }

    #[test]
    fn total_bound_holds_and_slots_come_back() {
        let pending = Arc::new(Pending::new(2, 2));
        let peers: Vec<NodeId> = (0..3).map(|_| SecretKey::generate().node_id()).collect();
        let s0 = pending.admit(peers[0]);
        let s1 = pending.admit(peers[1]);
        assert!(s0.is_some() && s1.is_some());
        assert!(pending.admit(peers[2]).is_none(), "total reached");
        drop(s0);
        drop(s1);
        assert_eq!(pending.count(), 0);
        assert!(pending.counts().per_peer.is_empty(), "no state left behind");
        assert!(pending.admit(peers[2]).is_some());
    }
}
