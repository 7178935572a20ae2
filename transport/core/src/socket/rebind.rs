//! NAT rebinding on the receive side: recognizing a known peer's packets
//! when they start arriving from a new real address.
//!
//! When the NAT in front of a peer rebinds (its flow gets a new external
//! port), the peer's packets arrive from an address no mapped entry knows.
//! The accepting side copes through quinn's own migration, but a dialing
//! quinn drops packets from an address that is not its connection's
//! remote. So the socket recognizes the peer by the packet's destination
//! connection ID (a CID this endpoint issued):
//!
//! Only dialed connections need this (an accepting quinn migrates on its
//! own, with path validation), so routing is switched on per mapped
//! address by the endpoint ([`CidRoutes::follow`]) for its client
//! connections.
//!
//! - **Learning.** For short-header packets arriving from an *adopted*
//!   entry's address that is followed, the destination CID is remembered
//!   as that entry's
//!   ([`CidRoutes::learn`]). The map is bounded ([`MAX_LEARNED_CIDS`]); when
//!   full it is cleared and relearned from live traffic.
//! - **Routing.** A short-header packet from an unknown address whose CID
//!   is known is handed to quinn under the peer's mapped address (no new
//!   entry is allocated), and the address is recorded as that entry's
//!   *rebind candidate* with a packet count. Nothing else changes: the
//!   packet is not trusted. quinn decrypts it or drops it.
//! - **Off-path aliases.** Traversal may already map the new address to
//!   the peer (an alias learned from an authenticated probe), so the
//!   packets reach quinn under the right address while the send path still
//!   points at the dead binding. Packets from such an address are recorded
//!   as the candidate too ([`CidRoutes::off_path`]).
//! - **Switching** happens in the endpoint (`endpoint/rebind.rs`), only once
//!   quinn shows it accepted packets that can only have come from the
//!   candidate; see there.
//!
//! State is bounded: at most [`MAX_LEARNED_CIDS`] learned CIDs, and at most
//! one candidate per mapped address that has a learned CID.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Length of the connection IDs this endpoint issues (quinn's default
/// generator).
pub const LOCAL_CID_LEN: usize = 8;
/// Bound on learned CIDs.
pub const MAX_LEARNED_CIDS: usize = 4096;

type Cid = [u8; LOCAL_CID_LEN];

/// A real address a peer's packets (by CID) arrived from, not yet its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebindCandidate {
    /// The new real source address.
    pub real: SocketAddr,
    /// Receive batches from it handed to quinn so far.
    pub received: u64,
}

#[derive(Debug, Default)]
struct Inner {
    by_cid: HashMap<Cid, SocketAddr>,
    /// Followed mapped addresses, with how many connections follow each.
    followed: HashMap<SocketAddr, u32>,
    candidates: HashMap<SocketAddr, RebindCandidate>,
}

impl Inner {
    /// Counts a batch for `mapped` from `real` as its candidate's.
    fn note(&mut self, mapped: SocketAddr, real: SocketAddr) {
        if self.candidates.len() >= MAX_LEARNED_CIDS && !self.candidates.contains_key(&mapped) {
            self.candidates.clear();
        }
        let candidate = self
            .candidates
            .entry(mapped)
            .or_insert(RebindCandidate { real, received: 0 });
        if candidate.real != real {
            *candidate = RebindCandidate { real, received: 0 };
        }
        candidate.received = candidate.received.saturating_add(1);
    }
}

/// CID -> mapped address routes and rebind candidates. See the module docs.
#[derive(Debug, Default)]
pub struct CidRoutes {
    inner: Mutex<Inner>,
    /// The CID learned last: the common case (same CID again) costs one
    /// atomic load, no lock.
    last: AtomicU64,
}

/// The destination CID of a short-header QUIC packet.
pub fn short_header_dcid(packet: &[u8]) -> Option<Cid> {
    let first = *packet.first()?;
    // Long headers have the top bit set; ours (0x00..=0x3f) never get here.
    if first & 0x80 != 0 || first & 0x40 == 0 {
        return None;
    }
    packet.get(1..1 + LOCAL_CID_LEN)?.try_into().ok()
}

impl CidRoutes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers that packets carrying `packet`'s CID belong to `mapped`
    /// (call only for packets from an adopted entry's address).
    pub fn learn(&self, packet: &[u8], mapped: SocketAddr) {
        let Some(cid) = short_header_dcid(packet) else {
            return;
        };
        let tag = u64::from_ne_bytes(cid);
        if self.last.load(Ordering::Relaxed) == tag {
            return;
        }
        let mut inner = self.lock();
        if !inner.followed.contains_key(&mapped) {
            return;
        }
        self.last.store(tag, Ordering::Relaxed);
        if inner.by_cid.get(&cid) == Some(&mapped) {
            return;
        }
        if inner.by_cid.len() >= MAX_LEARNED_CIDS {
            inner.by_cid.clear();
        }
        inner.by_cid.insert(cid, mapped);
    }

    /// The mapped address `packet` (from unknown `real`) belongs to, by
    /// its CID; records `real` as that address's rebind candidate.
    pub fn route_unknown(&self, packet: &[u8], real: SocketAddr) -> Option<SocketAddr> {
        let cid = short_header_dcid(packet)?;
        let mut inner = self.lock();
        let mapped = *inner.by_cid.get(&cid)?;
        inner.note(mapped, real);
        Some(mapped)
    }

    /// Packets for followed `mapped` arrived from `real`, an address the
    /// table maps to it (an alias) but not its current path: records it
    /// as the rebind candidate.
    pub fn off_path(&self, mapped: SocketAddr, real: SocketAddr) {
        let mut inner = self.lock();
        if inner.followed.contains_key(&mapped) {
            inner.note(mapped, real);
        }
    }

    /// `mapped`'s rebind candidate.
    pub fn candidate(&self, mapped: &SocketAddr) -> Option<RebindCandidate> {
        self.lock().candidates.get(mapped).copied()
    }

    /// Drops `mapped`'s candidate (taken or stale).
    pub fn clear_candidate(&self, mapped: &SocketAddr) {
        self.lock().candidates.remove(mapped);
    }

    /// Starts routing by CID for `mapped` (one more connection follows it).
    pub fn follow(&self, mapped: SocketAddr) {
        let mut inner = self.lock();
        let count = inner.followed.entry(mapped).or_insert(0);
        *count = count.saturating_add(1);
    }

    /// One connection on `mapped` stopped following it; the last one
    /// forgets its CIDs.
    pub fn unfollow(&self, mapped: &SocketAddr) {
        let mut inner = self.lock();
        let left = match inner.followed.get_mut(mapped) {
            Some(count) => {
                *count = count.saturating_sub(1);
                *count
            }
            None => return,
        };
        if left == 0 {
            drop(inner);
            self.forget(mapped);
        }
    }

    /// Forgets every CID routed to `mapped`.
    pub fn forget(&self, mapped: &SocketAddr) {
        let mut inner = self.lock();
        self.last.store(0, Ordering::Relaxed);
        inner.followed.remove(mapped);
        inner.by_cid.retain(|_, m| m != mapped);
        inner.candidates.remove(mapped);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn short(cid: u8) -> Vec<u8> {
        let mut p = vec![0x41];
        p.extend_from_slice(&[cid; LOCAL_CID_LEN]);
        p.extend_from_slice(&[0; 20]);
        p
    }

    #[test]
    fn routes_known_cids_and_records_candidates() {
        let routes = CidRoutes::default();
        let mapped: SocketAddr = "[fd52:4e00::1]:1".parse().unwrap();
        let new: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        routes.learn(&short(7), mapped);
        assert_eq!(routes.route_unknown(&short(7), new), None, "not followed");
        routes.follow(mapped);
        routes.learn(&short(7), mapped);
        assert_eq!(routes.route_unknown(&short(8), new), None);
        assert_eq!(routes.candidate(&mapped), None);
        assert_eq!(routes.route_unknown(&short(7), new), Some(mapped));
        assert_eq!(routes.route_unknown(&short(7), new), Some(mapped));
        assert_eq!(
            routes.candidate(&mapped),
            Some(RebindCandidate {
                real: new,
                received: 2
            })
        );
        routes.clear_candidate(&mapped);
        assert_eq!(routes.candidate(&mapped), None);
        routes.unfollow(&mapped);
        assert_eq!(routes.route_unknown(&short(7), new), None);
    }

    #[test]
    fn long_headers_and_frames_are_not_routed() {
        let routes = CidRoutes::default();
        let mapped: SocketAddr = "[fd52:4e00::1]:1".parse().unwrap();
        routes.follow(mapped);
        let mut long = short(7);
        long[0] = 0xc1;
        routes.learn(&long, mapped);
        routes.learn(&short(7)[..4], mapped);
        assert_eq!(routes.route_unknown(&short(7), mapped), None);
        assert_eq!(short_header_dcid(&[0x01; 16]), None);
    }

    #[test]
    fn learned_cids_are_bounded() {
        let routes = CidRoutes::default();
        let mapped: SocketAddr = "[fd52:4e00::1]:1".parse().unwrap();
        routes.follow(mapped);
        for i in 0..(MAX_LEARNED_CIDS as u32 + 10) {
            let mut p = vec![0x41];
            p.extend_from_slice(&u64::from(i).to_be_bytes());
            routes.learn(&p, mapped);
        }
        assert!(routes.lock().by_cid.len() <= MAX_LEARNED_CIDS);
    }
}
