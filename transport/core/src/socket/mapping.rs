//! The mapped-address table: which real path stands behind each address
//! quinn sees.
//!
//! quinn only ever sees *mapped* addresses: one stable IPv6 ULA address per
//! peer, taken from [`MAPPED_NET`] with a counter in the low 64 bits and the
//! fixed port [`MAPPED_PORT`]. This table maps
//!
//! - mapped address -> the peer's current [`Path`] (for sending),
//! - real address -> mapped address (for receiving on direct paths),
//! - NodeId -> mapped address (so redials reuse the peer's address, and
//!   relayed packets, which name their source NodeId, find it).
//!
//! Entries come from two places:
//!
//! - **Outbound dials** allocate (or reuse) the NodeId's address; such entries
//!   are *adopted* (owned by that NodeId) from the start.
//! - **Inbound packets** from an unknown real address allocate an
//!   *un-adopted* entry. Once the handshake proves who is behind it, the
//!   endpoint adopts it for the NodeId. Un-adopted entries come from
//!   unauthenticated packets, so they are bounded: at most
//!   `max_unadopted` exist (the oldest is evicted first) and each expires
//!   after `unadopted_ttl`.
//! - **Relayed packets** from a source NodeId with no address allocate an
//!   un-adopted entry on a relayed path back through the relay they came
//!   from, *claimed* for that NodeId (the relay vouches for the source; the
//!   handshake still proves it). They share the same bound and expiry.
//!
//! The table is pure data: callers pass the clock in, so it is unit tested
//! without sockets.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use relay_proto::NodeId;

use crate::PathKind;

/// The /64 network mapped addresses are taken from (`fd52:4e00::/64`).
pub const MAPPED_NET: [u16; 4] = [0xfd52, 0x4e00, 0, 0];
/// The port every mapped address carries.
pub const MAPPED_PORT: u16 = 1;

/// Default bound on un-adopted (unauthenticated) entries.
pub const DEFAULT_MAX_UNADOPTED: usize = 1024;
/// Extra receive addresses (aliases) one entry may hold.
pub const MAX_ALIASES: usize = 4;

/// The real path behind a mapped address.
///
/// quinn never sees this type; adding variants (punched paths, several
/// candidate paths) changes only the socket's send side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    /// Straight to this UDP address.
    Direct(SocketAddr),
    /// Through a relay node: each packet goes to the relay's current real
    /// address inside a relay-send frame naming the peer.
    Relayed {
        /// The relay carrying the packets.
        relay: NodeId,
    },
}

impl Path {
    /// The kind reported upward.
    pub fn kind(&self) -> PathKind {
        match self {
            Self::Direct(_) => PathKind::Direct,
            Self::Relayed { .. } => PathKind::Relayed,
        }
    }

    /// The real address, for a direct path.
    pub fn direct_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Direct(addr) => Some(*addr),
            Self::Relayed { .. } => None,
        }
    }

    /// The relay, for a relayed path.
    pub fn relay(&self) -> Option<NodeId> {
        match self {
            Self::Relayed { relay } => Some(*relay),
            Self::Direct(_) => None,
        }
    }
}

/// Whether `addr` lies in the mapped range.
pub fn is_mapped(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V6(v6) => v6.ip().segments()[..4] == MAPPED_NET,
        SocketAddr::V4(_) => false,
    }
}

/// The mapped address with counter `n`.
fn mapped_addr(n: u64) -> SocketAddr {
    let [a, b, c, d] = MAPPED_NET;
    let low = n.to_be_bytes();
    let seg = |i: usize| u16::from_be_bytes([low[i], low[i + 1]]);
    SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::new(a, b, c, d, seg(0), seg(2), seg(4), seg(6)),
        MAPPED_PORT,
        0,
        0,
    ))
}

/// Normalizes a real address: IPv4-mapped IPv6 becomes plain IPv4, so one
/// peer has one key whatever the socket family.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[derive(Debug)]
struct Entry {
    path: Path,
    owner: Option<NodeId>,
    /// The direct address of the path before the last change: packets
    /// still in flight on it keep arriving under this mapped address.
    previous: Option<SocketAddr>,
    /// The NodeId relayed packets on this entry are for, while no owner
    /// is proven (un-adopted relayed entries).
    claimed: Option<NodeId>,
    /// Further real addresses whose packets map here (oldest first).
    aliases: Vec<SocketAddr>,
    /// Receive batches that came from the current direct path's address.
    direct_rx: AtomicU64,
    /// Relayed packets that arrived while the path was direct (the peer
    /// reaches us through a relay: our direct path may be dead).
    relayed_rx: AtomicU64,
}

/// The table. See the module docs.
#[derive(Debug)]
pub struct MappedTable {
    entries: HashMap<SocketAddr, Entry>,
    by_real: HashMap<SocketAddr, SocketAddr>,
    by_node: HashMap<NodeId, SocketAddr>,
    /// Un-adopted entries reached through a relay, by claimed NodeId.
    by_claimed: HashMap<NodeId, SocketAddr>,
    /// Un-adopted entries in allocation order, with their expiry. May hold
    /// stale items (since adopted or removed); they are skipped lazily.
    unadopted: VecDeque<(SocketAddr, Instant)>,
    unadopted_count: usize,
    next: u64,
    max_unadopted: usize,
    unadopted_ttl: Duration,
}

impl MappedTable {
    /// An empty table.
    pub fn new(max_unadopted: usize, unadopted_ttl: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            by_real: HashMap::new(),
            by_node: HashMap::new(),
            by_claimed: HashMap::new(),
            unadopted: VecDeque::new(),
            unadopted_count: 0,
            next: 1,
            max_unadopted: max_unadopted.max(1),
            unadopted_ttl,
        }
    }

    fn allocate(&mut self, path: Path, owner: Option<NodeId>) -> SocketAddr {
        let mapped = mapped_addr(self.next);
        self.next = self.next.wrapping_add(1).max(1);
        self.entries.insert(
            mapped,
            Entry {
                path,
                owner,
                previous: None,
                claimed: None,
                aliases: Vec::new(),
                direct_rx: AtomicU64::new(0),
                relayed_rx: AtomicU64::new(0),
            },
        );
        if let Path::Direct(real) = path {
            self.by_real.insert(real, mapped);
        }
        mapped
    }

    /// The path behind a mapped address (send side).
    pub fn route(&self, mapped: &SocketAddr) -> Option<Path> {
        self.entries.get(mapped).map(|e| e.path)
    }

    /// The mapped address for a real source, if known (receive side).
    pub fn lookup_real(&self, real: &SocketAddr) -> Option<SocketAddr> {
        self.by_real.get(real).copied()
    }

    /// [`Self::lookup_real`] for a received batch, counting it for the
    /// entry when it came from the entry's current direct path (see
    /// [`Self::direct_received`]). Takes only a shared borrow.
    pub fn receive_from(&self, real: &SocketAddr) -> Option<SocketAddr> {
        let mapped = self.by_real.get(real)?;
        if let Some(entry) = self.entries.get(mapped) {
            if entry.path == Path::Direct(*real) {
                entry.direct_rx.fetch_add(1, Ordering::Relaxed);
            }
        }
        Some(*mapped)
    }

    /// How many receive batches arrived on `mapped`'s direct path (only
    /// while it was the current path; relayed packets never count).
    pub fn direct_received(&self, mapped: &SocketAddr) -> Option<u64> {
        self.entries
            .get(mapped)
            .map(|e| e.direct_rx.load(Ordering::Relaxed))
    }

    /// Counts a relayed packet handed to quinn under `mapped` when its
    /// path is direct (see [`Self::relayed_while_direct`]). Takes only a
    /// shared borrow.
    pub fn note_relayed(&self, mapped: &SocketAddr) {
        if let Some(entry) = self.entries.get(mapped) {
            if matches!(entry.path, Path::Direct(_)) {
                entry.relayed_rx.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// How many relayed packets arrived for `mapped` while its path was
    /// direct.
    pub fn relayed_while_direct(&self, mapped: &SocketAddr) -> Option<u64> {
        self.entries
            .get(mapped)
            .map(|e| e.relayed_rx.load(Ordering::Relaxed))
    }

    /// The mapped address for a real source, allocating an un-adopted entry
    /// for an unknown one (evicting the oldest if the bound is reached).
    pub fn inbound(&mut self, real: SocketAddr, now: Instant) -> SocketAddr {
        if let Some(mapped) = self.by_real.get(&real) {
            return *mapped;
        }
        self.allocate_unadopted(Path::Direct(real), now)
    }

    /// The mapped address for a packet relayed from `src`, if one exists:
    /// the node's own address, else its claimed un-adopted entry.
    pub fn lookup_relayed(&self, src: &NodeId) -> Option<SocketAddr> {
        self.by_node
            .get(src)
            .or_else(|| self.by_claimed.get(src))
            .copied()
    }

    /// The mapped address for a packet relayed from `src` through `relay`,
    /// allocating an un-adopted entry claimed for `src` on a relayed path
    /// back through `relay` if there is none.
    pub fn inbound_relayed(&mut self, src: NodeId, relay: NodeId, now: Instant) -> SocketAddr {
        if let Some(mapped) = self.lookup_relayed(&src) {
            return mapped;
        }
        let mapped = self.allocate_unadopted(Path::Relayed { relay }, now);
        if let Some(entry) = self.entries.get_mut(&mapped) {
            entry.claimed = Some(src);
        }
        self.by_claimed.insert(src, mapped);
        mapped
    }

    /// Every entry relayed through `relay`, with the NodeId it is for.
    pub fn relayed_through(&self, relay: &NodeId) -> Vec<(SocketAddr, Option<NodeId>)> {
        self.entries
            .iter()
            .filter(|(_, e)| e.path == Path::Relayed { relay: *relay })
            .map(|(m, e)| (*m, e.owner.or(e.claimed)))
            .collect()
    }

    /// The NodeId relayed packets sent to `mapped` are addressed to: its
    /// owner, else the NodeId it was claimed for.
    pub fn relay_target(&self, mapped: &SocketAddr) -> Option<NodeId> {
        let entry = self.entries.get(mapped)?;
        entry.owner.or(entry.claimed)
    }

    /// The mapped address to dial `node` through `relay` with: the node's
    /// own address (moved onto the relay) or a new adopted one.
    pub fn outbound_relayed(&mut self, node: NodeId, relay: NodeId) -> SocketAddr {
        let path = Path::Relayed { relay };
        if let Some(mapped) = self.by_node.get(&node).copied() {
            if self.entries.contains_key(&mapped) {
                self.set_path(&mapped, path);
                return mapped;
            }
            self.by_node.remove(&node);
        }
        if let Some(mapped) = self.by_claimed.get(&node).copied() {
            self.adopt(&mapped, node);
            self.set_path(&mapped, path);
            return mapped;
        }
        let mapped = self.allocate(path, Some(node));
        self.by_node.insert(node, mapped);
        mapped
    }

    /// Allocates an un-adopted entry (within the bound).
    fn allocate_unadopted(&mut self, path: Path, now: Instant) -> SocketAddr {
        self.expire(now);
        while self.unadopted_count >= self.max_unadopted {
            if !self.evict_oldest() {
                break;
            }
        }
        let mapped = self.allocate(path, None);
        self.unadopted_count += 1;
        self.unadopted.push_back((mapped, now + self.unadopted_ttl));
        if self.unadopted.len() > self.max_unadopted.saturating_mul(2) {
            let entries = &self.entries;
            self.unadopted
                .retain(|(m, _)| entries.get(m).is_some_and(|e| e.owner.is_none()));
        }
        mapped
    }

    /// The mapped address to dial `node` at `real` with: the node's own
    /// address (re-pointed at `real`), or the un-adopted entry already
    /// receiving from `real` (adopted now), or a new one.
    pub fn outbound(&mut self, node: NodeId, real: SocketAddr) -> SocketAddr {
        if let Some(mapped) = self.by_node.get(&node).copied() {
            if self.entries.contains_key(&mapped) {
                self.set_path(&mapped, Path::Direct(real));
                return mapped;
            }
            self.by_node.remove(&node);
        }
        if let Some(mapped) = self.by_real.get(&real).copied() {
            let unadopted = self.entries.get(&mapped).is_some_and(|e| e.owner.is_none());
            if unadopted {
                self.adopt(&mapped, node);
                return mapped;
            }
        }
        let mapped = self.allocate(Path::Direct(real), Some(node));
        self.by_node.insert(node, mapped);
        mapped
    }

    /// Marks `mapped` as `node`'s address. Returns false for an unknown
    /// address.
    pub fn adopt(&mut self, mapped: &SocketAddr, node: NodeId) -> bool {
        let Some(entry) = self.entries.get_mut(mapped) else {
            return false;
        };
        if entry.owner.is_none() {
            self.unadopted_count = self.unadopted_count.saturating_sub(1);
        }
        entry.owner = Some(node);
        if let Some(claimed) = entry.claimed.take() {
            if self.by_claimed.get(&claimed) == Some(mapped) {
                self.by_claimed.remove(&claimed);
            }
        }
        self.by_node.insert(node, *mapped);
        true
    }

    /// Changes the path behind `mapped`; returns the previous path, or
    /// `None` if the address is unknown.
    ///
    /// Packets from the old direct address still map to `mapped` until the
    /// next change (in-flight packets are not lost on a switch); the one
    /// before that is unlinked.
    pub fn set_path(&mut self, mapped: &SocketAddr, path: Path) -> Option<Path> {
        let entry = self.entries.get_mut(mapped)?;
        let old = entry.path;
        entry.path = path;
        let stale = entry.previous.take();
        if old != path {
            entry.previous = old.direct_addr();
        } else {
            entry.previous = stale;
        }
        let keep = [path.direct_addr(), old.direct_addr()];
        if let Some(stale) = stale.filter(|s| !keep.contains(&Some(*s))) {
            self.unlink_real(&stale, mapped);
        }
        if let Path::Direct(real) = path {
            self.by_real.insert(real, *mapped);
        }
        Some(old)
    }

    /// Maps packets from `real` to `mapped` too, without changing where
    /// `mapped` sends: for an address its (authenticated) owner was seen
    /// at, so that the owner's packets from there reach the same
    /// connection before the send path moves to it. Only an address no
    /// entry receives from yet is taken, and an entry keeps at most
    /// [`MAX_ALIASES`] (the oldest is dropped first). Returns whether
    /// `real` now maps to `mapped`.
    pub fn alias(&mut self, mapped: &SocketAddr, real: SocketAddr) -> bool {
        match self.by_real.get(&real) {
            Some(m) => return m == mapped,
            None if !self.entries.contains_key(mapped) => return false,
            None => {}
        }
        self.by_real.insert(real, *mapped);
        let dropped = match self.entries.get_mut(mapped) {
            Some(entry) => {
                entry.aliases.push(real);
                if entry.aliases.len() > MAX_ALIASES {
                    Some(entry.aliases.remove(0))
                } else {
                    None
                }
            }
            None => None,
        };
        if let Some(old) = dropped {
            let in_use = self
                .entries
                .get(mapped)
                .is_some_and(|e| e.path.direct_addr() == Some(old) || e.previous == Some(old));
            if !in_use {
                self.unlink_real(&old, mapped);
            }
        }
        true
    }

    /// Removes the real -> mapped link if it points at `mapped`, re-pointing
    /// it at another entry on the same real address if one exists.
    fn unlink_real(&mut self, real: &SocketAddr, mapped: &SocketAddr) {
        if self.by_real.get(real) != Some(mapped) {
            return;
        }
        self.by_real.remove(real);
        let other = self
            .entries
            .iter()
            .filter(|(m, e)| *m != mapped && e.path == Path::Direct(*real))
            .max_by_key(|(_, e)| e.owner.is_some())
            .map(|(m, _)| *m);
        if let Some(other) = other {
            self.by_real.insert(*real, other);
        }
    }

    /// Removes an entry entirely.
    pub fn remove(&mut self, mapped: &SocketAddr) {
        let Some(entry) = self.entries.remove(mapped) else {
            return;
        };
        match entry.owner {
            None => self.unadopted_count = self.unadopted_count.saturating_sub(1),
            Some(node) => {
                if self.by_node.get(&node) == Some(mapped) {
                    self.by_node.remove(&node);
                }
            }
        }
        if let Path::Direct(real) = entry.path {
            self.unlink_real(&real, mapped);
        }
        if let Some(previous) = entry.previous {
            self.unlink_real(&previous, mapped);
        }
        for alias in &entry.aliases {
            self.unlink_real(alias, mapped);
        }
        if let Some(claimed) = entry.claimed {
            if self.by_claimed.get(&claimed) == Some(mapped) {
                self.by_claimed.remove(&claimed);
            }
        }
    }

    /// Hands an adopted entry back to the un-adopted pool: it keeps routing
    /// (a handshake in flight on it may still adopt it again) but now
    /// expires like any un-adopted entry. Used when a connection ends.
    pub fn demote(&mut self, mapped: &SocketAddr, now: Instant) {
        let Some(entry) = self.entries.get_mut(mapped) else {
            return;
        };
        let Some(node) = entry.owner.take() else {
            return;
        };
        let relayed = matches!(entry.path, Path::Relayed { .. });
        if relayed {
            // Late relayed packets from the node still land here.
            entry.claimed = Some(node);
        }
        if self.by_node.get(&node) == Some(mapped) {
            self.by_node.remove(&node);
        }
        if relayed && !self.by_claimed.contains_key(&node) {
            self.by_claimed.insert(node, *mapped);
        }
        self.expire(now);
        while self.unadopted_count >= self.max_unadopted {
            if !self.evict_oldest() {
                break;
            }
        }
        self.unadopted_count += 1;
        self.unadopted
            .push_back((*mapped, now + self.unadopted_ttl));
    }

    /// Demotes `node`'s current address.
    pub fn demote_node(&mut self, node: &NodeId, now: Instant) {
        if let Some(mapped) = self.by_node.get(node).copied() {
            self.demote(&mapped, now);
        }
    }

    /// Demotes `mapped` unless it is its owner's current address.
    pub fn demote_retired(&mut self, mapped: &SocketAddr, now: Instant) {
        let retired = match self.entries.get(mapped) {
            Some(Entry {
                owner: Some(node), ..
            }) => self.by_node.get(node) != Some(mapped),
            _ => false,
        };
        if retired {
            self.demote(mapped, now);
        }
    }

    /// Removes `node`'s current address.
    pub fn remove_node(&mut self, node: &NodeId) {
        if let Some(mapped) = self.by_node.get(node).copied() {
            self.remove(&mapped);
        }
    }

    /// `node`'s current mapped address.
    pub fn mapped_of(&self, node: &NodeId) -> Option<SocketAddr> {
        self.by_node.get(node).copied()
    }

    /// The owner of a mapped address.
    pub fn owner(&self, mapped: &SocketAddr) -> Option<NodeId> {
        self.entries.get(mapped).and_then(|e| e.owner)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of un-adopted entries.
    pub fn unadopted_len(&self) -> usize {
        self.unadopted_count
    }

    /// Removes every un-adopted entry whose TTL has run out by `now`;
    /// returns how many went. Allocation does this too, but only while new
    /// unauthenticated packets arrive: after a flood stops, the driver's
    /// periodic sweep (see [`super::PathSocket::sweep_expired`]) calls this
    /// so the table shrinks back to the authenticated entries.
    pub fn expire_due(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        self.expire(now);
        before - self.entries.len()
    }

    /// When the oldest un-adopted entry expires (`None`: there is none).
    /// May be early when that entry was adopted or removed since.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.unadopted.front().map(|(_, expires)| *expires)
    }

    /// Drops expired un-adopted entries (and stale queue items) at the front.
    fn expire(&mut self, now: Instant) {
        while let Some((mapped, expires)) = self.unadopted.front().copied() {
            let live = self.entries.get(&mapped).is_some_and(|e| e.owner.is_none());
            if !live {
                self.unadopted.pop_front();
            } else if expires <= now {
                self.unadopted.pop_front();
                self.remove(&mapped);
            } else {
                break;
            }
        }
    }

    /// Evicts the oldest live un-adopted entry. False if there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((mapped, _)) = self.unadopted.pop_front() {
            if self.entries.get(&mapped).is_some_and(|e| e.owner.is_none()) {
                self.remove(&mapped);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::SecretKey;

    fn node() -> NodeId {
        SecretKey::generate().node_id()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn table() -> MappedTable {
        MappedTable::new(4, Duration::from_secs(30))
    }

    #[test]
    fn mapped_addresses_are_in_range_and_distinct() {
        let a = mapped_addr(1);
        let b = mapped_addr(2);
        assert!(is_mapped(&a) && is_mapped(&b));
        assert_ne!(a, b);
        assert_eq!(a.port(), MAPPED_PORT);
        assert!(!is_mapped(&addr("127.0.0.1:1")));
        assert!(!is_mapped(&addr("[fd52:4e01::1]:1")));
    }

    #[test]
    fn canonical_unmaps_v4() {
        assert_eq!(canonical(addr("[::ffff:10.0.0.1]:5")), addr("10.0.0.1:5"));
        assert_eq!(canonical(addr("[::1]:5")), addr("[::1]:5"));
    }

    #[test]
    fn outbound_reuses_the_node_address() {
        let mut t = table();
        let n = node();
        let m1 = t.outbound(n, addr("10.0.0.1:1"));
        let m2 = t.outbound(n, addr("10.0.0.2:2"));
        assert_eq!(m1, m2);
        assert_eq!(t.route(&m1), Some(Path::Direct(addr("10.0.0.2:2"))));
        assert_eq!(t.lookup_real(&addr("10.0.0.2:2")), Some(m1));
        assert_eq!(t.mapped_of(&n), Some(m1));
        assert_eq!(t.unadopted_len(), 0);
    }

    #[test]
    fn inbound_then_adopt() {
        let mut t = table();
        let now = Instant::now();
        let n = node();
        let real = addr("10.0.0.1:1");
        let m = t.inbound(real, now);
        assert_eq!(t.inbound(real, now), m, "same source, same address");
        assert_eq!(t.unadopted_len(), 1);
        assert!(t.adopt(&m, n));
        assert_eq!(t.unadopted_len(), 0);
        assert_eq!(t.owner(&m), Some(n));
        // A later dial to the same node reuses it.
        assert_eq!(t.outbound(n, real), m);
    }

    #[test]
    fn outbound_adopts_pending_inbound_on_same_address() {
        let mut t = table();
        let real = addr("10.0.0.1:1");
        let m = t.inbound(real, Instant::now());
        let n = node();
        assert_eq!(t.outbound(n, real), m);
        assert_eq!(t.owner(&m), Some(n));
        assert_eq!(t.unadopted_len(), 0);
    }

    #[test]
    fn unadopted_entries_are_bounded() {
        let mut t = table();
        let now = Instant::now();
        let first = t.inbound(addr("10.0.0.1:1"), now);
        for port in 2..100 {
            t.inbound(addr(&format!("10.0.0.1:{port}")), now);
        }
        assert_eq!(t.unadopted_len(), 4);
        assert_eq!(t.len(), 4);
        assert_eq!(t.route(&first), None, "oldest evicted");
        assert!(t.unadopted.len() <= 8);
    }

    #[test]
    fn adopted_entries_are_never_evicted() {
        let mut t = table();
        let now = Instant::now();
        let n = node();
        let m = t.inbound(addr("10.0.0.1:1"), now);
        t.adopt(&m, n);
        for port in 2..100 {
            t.inbound(addr(&format!("10.0.0.1:{port}")), now);
        }
        assert_eq!(t.route(&m), Some(Path::Direct(addr("10.0.0.1:1"))));
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn unadopted_entries_expire() {
        let mut t = MappedTable::new(100, Duration::from_secs(10));
        let now = Instant::now();
        let old = t.inbound(addr("10.0.0.1:1"), now);
        let later = now + Duration::from_secs(11);
        let fresh = t.inbound(addr("10.0.0.1:2"), later);
        assert_eq!(t.route(&old), None);
        assert!(t.route(&fresh).is_some());
        assert_eq!(t.unadopted_len(), 1);
    }

    #[test]
    fn a_flood_of_unadopted_entries_expires_without_new_packets() {
        let ttl = Duration::from_secs(30);
        let mut t = MappedTable::new(1024, ttl);
        let now = Instant::now();
        let n = node();
        let peer = t.outbound(n, addr("10.0.0.1:1"));
        assert_eq!(t.len(), 1, "baseline: one authenticated entry");
        assert_eq!(t.next_expiry(), None);
        // A garbage flood from 5000 sources fills the bound.
        for i in 0..5000u32 {
            let src = SocketAddr::from(([198, 51, (i >> 8) as u8, i as u8], 9));
            t.inbound(src, now + Duration::from_millis(u64::from(i) / 10));
        }
        assert_eq!(t.unadopted_len(), 1024);
        assert_eq!(t.len(), 1025);
        // Nothing is due before the TTL of the oldest.
        assert_eq!(t.expire_due(now + ttl - Duration::from_secs(1)), 0);
        assert_eq!(t.len(), 1025);
        assert!(t.next_expiry().is_some_and(|e| e > now));
        // Once every TTL has run out, a sweep with no new packet empties
        // the un-adopted pool and the authenticated entry stays.
        assert_eq!(t.expire_due(now + ttl + Duration::from_secs(1)), 1024);
        assert_eq!(t.unadopted_len(), 0);
        assert_eq!(t.len(), 1, "back to the baseline");
        assert_eq!(t.owner(&peer), Some(n));
        assert_eq!(t.next_expiry(), None);
        assert_eq!(t.expire_due(now + ttl * 10), 0);
    }

    #[test]
    fn set_path_moves_the_receive_link() {
        let mut t = table();
        let n = node();
        let m = t.outbound(n, addr("10.0.0.1:1"));
        let old = t.set_path(&m, Path::Direct(addr("10.0.0.9:9")));
        assert_eq!(old, Some(Path::Direct(addr("10.0.0.1:1"))));
        assert_eq!(t.route(&m), Some(Path::Direct(addr("10.0.0.9:9"))));
        assert_eq!(t.lookup_real(&addr("10.0.0.9:9")), Some(m));
        assert_eq!(
            t.lookup_real(&addr("10.0.0.1:1")),
            Some(m),
            "in-flight packets on the old path still arrive"
        );
        let relay = node();
        t.set_path(&m, Path::Relayed { relay });
        assert_eq!(t.route(&m), Some(Path::Relayed { relay }));
        assert_eq!(t.lookup_real(&addr("10.0.0.1:1")), None, "two changes ago");
        assert_eq!(t.lookup_real(&addr("10.0.0.9:9")), Some(m));
        t.set_path(&m, Path::Direct(addr("10.0.0.1:1")));
        assert_eq!(t.lookup_real(&addr("10.0.0.9:9")), None);
        assert_eq!(t.lookup_real(&addr("10.0.0.1:1")), Some(m));
        t.remove(&m);
        assert_eq!(t.lookup_real(&addr("10.0.0.1:1")), None);
        assert_eq!(t.set_path(&addr("[::1]:1"), Path::Relayed { relay }), None);
    }

    #[test]
    fn aliases_map_inbound_only_free_addresses_and_are_bounded() {
        let mut t = table();
        let relay = node();
        let n = node();
        let m = t.outbound_relayed(n, relay);
        let other = t.outbound(node(), addr("10.0.0.9:9"));
        assert!(t.alias(&m, addr("10.0.0.1:1")));
        assert_eq!(t.lookup_real(&addr("10.0.0.1:1")), Some(m));
        assert_eq!(
            t.route(&m),
            Some(Path::Relayed { relay }),
            "send path unchanged"
        );
        assert!(!t.alias(&m, addr("10.0.0.9:9")), "taken by another entry");
        assert_eq!(t.lookup_real(&addr("10.0.0.9:9")), Some(other));
        for port in 2..=5 {
            assert!(t.alias(&m, addr(&format!("10.0.0.1:{port}"))));
        }
        assert_eq!(t.lookup_real(&addr("10.0.0.1:1")), None, "oldest dropped");
        assert_eq!(t.lookup_real(&addr("10.0.0.1:5")), Some(m));
        t.set_path(&m, Path::Direct(addr("10.0.0.1:5")));
        t.remove(&m);
        for port in 2..=5 {
            assert_eq!(t.lookup_real(&addr(&format!("10.0.0.1:{port}"))), None);
        }
        assert!(!t.alias(&m, addr("10.0.0.1:1")), "unknown entry");
    }

    #[test]
    fn only_packets_on_the_direct_path_count() {
        let mut t = table();
        let m = t.outbound_relayed(node(), node());
        assert!(t.alias(&m, addr("10.0.0.1:1")));
        assert_eq!(t.receive_from(&addr("10.0.0.1:1")), Some(m));
        assert_eq!(t.direct_received(&m), Some(0), "not the current path");
        t.set_path(&m, Path::Direct(addr("10.0.0.1:1")));
        t.receive_from(&addr("10.0.0.1:1"));
        t.receive_from(&addr("10.0.0.1:1"));
        assert_eq!(t.direct_received(&m), Some(2));
        assert_eq!(t.receive_from(&addr("10.0.0.7:7")), None);
    }

    #[test]
    fn remove_restores_the_other_owner_of_a_real_address() {
        let mut t = table();
        let real = addr("10.0.0.1:1");
        let a = node();
        let b = node();
        let ma = t.outbound(a, real);
        let mb = t.outbound(b, real);
        assert_ne!(ma, mb);
        assert_eq!(t.lookup_real(&real), Some(mb), "newest dial wins");
        t.remove_node(&b);
        assert_eq!(t.lookup_real(&real), Some(ma));
        assert_eq!(t.mapped_of(&b), None);
    }

    #[test]
    fn demote_retired_keeps_current() {
        let mut t = table();
        let n = node();
        let now = Instant::now();
        let m1 = t.outbound(n, addr("10.0.0.1:1"));
        let m2 = t.inbound(addr("10.0.0.2:2"), now);
        t.adopt(&m2, n);
        t.demote_retired(&m2, now);
        assert_eq!(t.owner(&m2), Some(n));
        t.demote_retired(&m1, now);
        assert_eq!(t.owner(&m1), None);
        assert_eq!(t.unadopted_len(), 1);
        assert_eq!(t.mapped_of(&n), Some(m2));
    }

    #[test]
    fn relayed_inbound_is_claimed_bounded_and_adopted() {
        let mut t = table();
        let now = Instant::now();
        let (src, relay) = (node(), node());
        let m = t.inbound_relayed(src, relay, now);
        assert_eq!(t.inbound_relayed(src, relay, now), m, "same source");
        assert_eq!(t.route(&m), Some(Path::Relayed { relay }));
        assert_eq!(t.relay_target(&m), Some(src));
        assert_eq!(t.owner(&m), None);
        assert_eq!(t.unadopted_len(), 1);
        for _ in 0..10 {
            t.inbound_relayed(node(), relay, now);
        }
        assert_eq!(t.unadopted_len(), 4, "shares the un-adopted bound");
        let m = t.inbound_relayed(src, relay, now);
        assert!(t.adopt(&m, src));
        assert_eq!(t.mapped_of(&src), Some(m));
        assert_eq!(t.lookup_relayed(&src), Some(m));
        assert_eq!(t.relay_target(&m), Some(src));
    }

    #[test]
    fn relayed_outbound_reuses_and_moves() {
        let mut t = table();
        let (n, r1, r2) = (node(), node(), node());
        let m = t.outbound_relayed(n, r1);
        assert_eq!(t.route(&m), Some(Path::Relayed { relay: r1 }));
        assert_eq!(t.relay_target(&m), Some(n));
        assert_eq!(t.outbound_relayed(n, r2), m);
        assert_eq!(t.route(&m), Some(Path::Relayed { relay: r2 }));
        // A direct dial later reuses the same address.
        assert_eq!(t.outbound(n, addr("10.0.0.1:1")), m);
        assert_eq!(t.lookup_relayed(&n), Some(m));
        // An outbound relayed dial adopts a pending claimed entry.
        let other = node();
        let pending = t.inbound_relayed(other, r1, Instant::now());
        assert_eq!(t.outbound_relayed(other, r2), pending);
        assert_eq!(t.owner(&pending), Some(other));
        assert_eq!(t.unadopted_len(), 0);
    }

    #[test]
    fn demoted_relayed_entry_stays_claimed() {
        let mut t = table();
        let now = Instant::now();
        let (n, r) = (node(), node());
        let m = t.outbound_relayed(n, r);
        t.demote_node(&n, now);
        assert_eq!(t.mapped_of(&n), None);
        assert_eq!(t.lookup_relayed(&n), Some(m));
        assert_eq!(t.relay_target(&m), Some(n));
        t.remove(&m);
        assert_eq!(t.lookup_relayed(&n), None);
    }

    #[test]
    fn demoted_entries_route_until_they_expire_or_are_adopted_again() {
        let mut t = MappedTable::new(10, Duration::from_secs(10));
        let n = node();
        let now = Instant::now();
        let real = addr("10.0.0.1:1");
        let m = t.outbound(n, real);
        t.demote_node(&n, now);
        assert_eq!(t.mapped_of(&n), None);
        assert_eq!(t.lookup_real(&real), Some(m), "still routes");
        assert!(t.adopt(&m, n));
        assert_eq!(t.unadopted_len(), 0);
        t.demote_node(&n, now);
        // A later inbound packet after the TTL expires it.
        t.inbound(addr("10.0.0.2:2"), now + Duration::from_secs(11));
        assert_eq!(t.route(&m), None);
        assert_eq!(t.unadopted_len(), 1);
    }
}
