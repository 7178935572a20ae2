//! The ledger subsystem's synchronous core: the node's [`Ledger`] and its
//! [`Replica`] behind one lock, driven by connection events, message bytes
//! and `now`. Every call may touch redb, so the driver runs them off the
//! async runtime (`spawn_blocking`).

use std::time::Instant;

use relay_proto::ledger::body::NodeAnnouncement;
use relay_proto::ledger::{Body, EntryKind};
use relay_proto::{NetworkKey, NodeId};

use crate::ledger::replica::ReplicaStore;
use crate::ledger::{
    Filter, Lag, Ledger, LedgerError, Membership, MeshMembers, Replica, ReplicaConfig,
    ReplicaStats, StoredEntry, Transmit,
};

/// Most messages taken from the replica per call of
/// [`LedgerCore::poll_transmits`].
pub const TRANSMIT_BATCH: usize = 16;

/// See the module docs.
pub struct LedgerCore {
    ledger: Ledger,
    replica: Replica,
}

impl std::fmt::Debug for LedgerCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerCore")
            .field("ledger", &self.ledger)
            .field("replica", &self.replica)
            .finish()
    }
}

impl LedgerCore {
    /// A core over `ledger` in a mesh with network key `key`. Membership
    /// ([`MeshMembers`]): an origin is a member once a validly signed
    /// announcement of it carries its proof under `key`; the proofs already
    /// in the ledger count from the start. Without a key every origin is a
    /// member (docs/LEDGER.md, "Membership").
    pub fn new(ledger: Ledger, config: ReplicaConfig, key: Option<NetworkKey>) -> Self {
        let mut members = MeshMembers::new(key, ledger.node_id());
        let announcements = Filter {
            origin: None,
            kind: Some(EntryKind::NodeAnnouncement),
        };
        match ledger.read(None, usize::MAX, &announcements) {
            Ok(stored) => {
                for s in stored {
                    members.admit(&s.entry);
                }
            }
            Err(e) => tracing::warn!(error = %e, "ledger: reading members failed"),
        }
        Self {
            ledger,
            replica: Replica::with_membership(config, Box::new(members)),
        }
    }

    /// How far each connected peer and this node are apart, by peer.
    pub fn lags(&self) -> Result<Vec<(NodeId, Lag)>, LedgerError> {
        self.replica.lags(&self.ledger)
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The replica's counters.
    pub fn stats(&self) -> ReplicaStats {
        self.replica.stats()
    }

    /// A peer connected (or reconnected): it gets our vector.
    pub fn peer_connected(&mut self, now: Instant, peer: NodeId) -> Result<(), LedgerError> {
        self.replica.handle_peer_disconnected(&peer);
        self.replica.handle_peer_connected(now, peer, &self.ledger)
    }

    /// A peer went away.
    pub fn peer_disconnected(&mut self, peer: &NodeId) {
        self.replica.handle_peer_disconnected(peer);
    }

    /// A message from `peer`; the entries it stored (the ledger already
    /// published them to subscribers).
    pub fn message(
        &mut self,
        now: Instant,
        peer: NodeId,
        bytes: &[u8],
    ) -> Result<Vec<StoredEntry>, LedgerError> {
        self.replica
            .handle_message(now, peer, bytes, &mut self.ledger)
    }

    /// Entries this node appended: schedule them for peers.
    pub fn appended(&mut self, stored: &[StoredEntry]) {
        self.replica.handle_stored(stored);
    }

    /// The replica's timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.replica.poll_timeout()
    }

    /// Time passed.
    pub fn timeout(&mut self, now: Instant) -> Result<(), LedgerError> {
        self.replica.handle_timeout(now, &self.ledger)
    }

    /// Up to [`TRANSMIT_BATCH`] messages to send.
    pub fn poll_transmits(&mut self) -> Result<Vec<Transmit>, LedgerError> {
        let mut out = Vec::new();
        while out.len() < TRANSMIT_BATCH {
            match self.replica.poll_transmit(&self.ledger)? {
                Some(t) => out.push(t),
                None => break,
            }
        }
        Ok(out)
    }

    /// The seq of this node's latest entry, and whether a connected peer
    /// holds more of this node's feed than we do (then appending would
    /// fork it).
    pub fn own_state(&self) -> Result<(u64, bool), LedgerError> {
        let own = self.ledger.node_id();
        let frontier = self.ledger.origin(&own)?.map_or(0, |s| s.frontier);
        let ahead = self.replica.peer_ahead_on(&own, &self.ledger)?.is_some();
        Ok((frontier, ahead))
    }

    /// This node's latest announcement in the ledger.
    pub fn own_announcement(&self) -> Result<Option<NodeAnnouncement>, LedgerError> {
        let filter = Filter {
            origin: Some(self.ledger.node_id()),
            kind: Some(EntryKind::NodeAnnouncement),
        };
        let latest = self
            .ledger
            .read(None, usize::MAX, &filter)?
            .into_iter()
            .max_by_key(|s| s.entry.seq);
        Ok(latest.and_then(|s| match s.entry.body() {
            Ok(Body::NodeAnnouncement(a)) => Some(a),
            _ => None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::temp_dir;
    use relay_proto::SecretKey;
    use std::net::SocketAddr;
    use std::time::Duration;

    fn ann(port: u16) -> Body {
        Body::NodeAnnouncement(NodeAnnouncement {
            addrs: vec![SocketAddr::from(([127, 0, 0, 1], port))],
            nat: relay_proto::ledger::body::NatType::Unknown,
            relay: false,
            version: "v".into(),
            member_proof: None,
        })
    }

    fn core(name: &str, seed: u8) -> LedgerCore {
        let ledger = Ledger::open(&temp_dir(name), SecretKey::from_bytes(&[seed; 32])).unwrap();
        LedgerCore::new(ledger, ReplicaConfig::default(), None)
    }

    /// Delivers every queued message between two cores until both are idle.
    fn exchange(now: Instant, a: &mut LedgerCore, b: &mut LedgerCore) {
        let (ida, idb) = (a.ledger().node_id(), b.ledger().node_id());
        loop {
            let from_a = a.poll_transmits().unwrap();
            let from_b = b.poll_transmits().unwrap();
            if from_a.is_empty() && from_b.is_empty() {
                break;
            }
            for t in from_a {
                assert_eq!(t.peer, idb);
                b.message(now, ida, &t.bytes).unwrap();
            }
            for t in from_b {
                assert_eq!(t.peer, ida);
                a.message(now, idb, &t.bytes).unwrap();
            }
        }
    }

    #[tokio::test]
    async fn a_connected_peer_gets_our_announcement_and_a_live_append() {
        let now = Instant::now();
        let mut a = core("lcore-a", 1);
        let mut b = core("lcore-b", 2);
        let first = a.ledger().append_at(1, ann(1)).await.unwrap();
        a.appended(std::slice::from_ref(&first));
        assert_eq!(a.own_state().unwrap(), (1, false));
        let (ida, idb) = (a.ledger().node_id(), b.ledger().node_id());
        a.peer_connected(now, idb).unwrap();
        b.peer_connected(now, ida).unwrap();
        exchange(now, &mut a, &mut b);
        let announced = |c: &LedgerCore| {
            c.ledger()
                .read(
                    None,
                    10,
                    &Filter {
                        origin: Some(ida),
                        kind: None,
                    },
                )
                .unwrap()
                .iter()
                .map(|s| s.entry.seq)
                .max()
        };
        assert_eq!(announced(&b), Some(1));

        let second = a.ledger().append_at(2, ann(2)).await.unwrap();
        a.appended(std::slice::from_ref(&second));
        exchange(now, &mut a, &mut b);
        // Retention keeps the latest announcement per origin.
        assert_eq!(announced(&b), Some(2));
        assert_eq!(a.stats().sent, 2);
        assert_eq!(b.stats().replicated, 2);
        assert!(a.own_announcement().unwrap().is_some());
        a.ledger().close();
        b.ledger().close();
    }

    #[tokio::test]
    async fn a_peer_ahead_on_our_feed_is_seen_before_we_append() {
        let now = Instant::now();
        // The same identity twice: `old` is what peers hold, `fresh` a
        // node whose ledger file was moved aside.
        let mut old = core("lcore-old", 3);
        let mut fresh = core("lcore-fresh", 3);
        let peer = core("lcore-peer", 4);
        old.ledger().append_at(1, ann(1)).await.unwrap();
        let id = old.ledger().node_id();
        let mut peer = peer;
        old.peer_connected(now, peer.ledger().node_id()).unwrap();
        peer.peer_connected(now, id).unwrap();
        exchange(now, &mut old, &mut peer);
        peer.peer_disconnected(&id);

        // `fresh` has the same node id, so the peer sees it as `id` again.
        fresh.peer_connected(now, peer.ledger().node_id()).unwrap();
        peer.peer_connected(now + Duration::from_secs(1), id)
            .unwrap();
        // Only the peer's Hello first: then we know it is ahead.
        let hello = peer.poll_transmits().unwrap();
        for t in &hello[..1] {
            fresh
                .message(now, peer.ledger().node_id(), &t.bytes)
                .unwrap();
        }
        assert_eq!(fresh.own_state().unwrap(), (0, true));
        exchange(now, &mut fresh, &mut peer);
        assert_eq!(fresh.own_state().unwrap(), (1, false));
        for c in [&old, &fresh, &peer] {
            c.ledger().close();
        }
    }

    #[tokio::test]
    async fn only_feeds_proven_under_our_key_are_stored_and_proofs_survive_a_restart() {
        use relay_proto::ledger::body::{PathOutcome, TraversalOutcome};
        use relay_proto::ledger::MemberProof;
        use relay_proto::NetworkKey;
        let now = Instant::now();
        let mesh = NetworkKey::from_bytes([21; 32]);
        let other = NetworkKey::from_bytes([22; 32]);
        let open = |dir: &std::path::Path, seed: u8, key: &NetworkKey| {
            let ledger = Ledger::open(dir, SecretKey::from_bytes(&[seed; 32])).unwrap();
            LedgerCore::new(ledger, ReplicaConfig::default(), Some(key.clone()))
        };
        let proven = |c: &LedgerCore, key: &NetworkKey| {
            Body::NodeAnnouncement(NodeAnnouncement {
                addrs: vec![],
                nat: relay_proto::ledger::body::NatType::Unknown,
                relay: false,
                version: "v".into(),
                member_proof: Some(MemberProof::new(key, &c.ledger().node_id())),
            })
        };
        let event = Body::TraversalOutcome(TraversalOutcome {
            peer: SecretKey::from_bytes(&[30; 32]).node_id(),
            outcome: PathOutcome::Direct,
            time_to_direct_ms: Some(5),
            why: String::new(),
            birthday_packets: 0,
        });
        let dir_b = temp_dir("lcore-key-b");
        let mut a = open(&temp_dir("lcore-key-a"), 11, &mesh);
        let mut b = open(&dir_b, 12, &mesh);
        // c's proof is made under another mesh's key.
        let mut c = open(&temp_dir("lcore-key-c"), 13, &other);
        let s = a.ledger().append_at(1, proven(&a, &mesh)).await.unwrap();
        a.appended(std::slice::from_ref(&s));
        let s = c.ledger().append_at(1, proven(&c, &other)).await.unwrap();
        c.appended(std::slice::from_ref(&s));
        let (ida, idb, idc) = (
            a.ledger().node_id(),
            b.ledger().node_id(),
            c.ledger().node_id(),
        );
        a.peer_connected(now, idb).unwrap();
        b.peer_connected(now, ida).unwrap();
        exchange(now, &mut a, &mut b);
        c.peer_connected(now, idb).unwrap();
        b.peer_connected(now, idc).unwrap();
        exchange(now, &mut c, &mut b);
        let held = |core: &LedgerCore, origin: NodeId| {
            core.ledger()
                .origin(&origin)
                .unwrap()
                .map_or(0, |s| s.frontier)
        };
        assert_eq!(held(&b, ida), 1);
        assert_eq!(held(&b, idc), 0);
        assert_eq!(b.stats().not_member, 1);

        // b restarts: a's proof is read back from b's ledger, so b's Hello
        // names a's feed, and a sends only its new entry.
        assert_eq!(a.stats().sent, 1);
        b.ledger().close();
        drop(b);
        let mut b = open(&dir_b, 12, &mesh);
        let s = a.ledger().append_at(2, event).await.unwrap();
        a.appended(std::slice::from_ref(&s));
        a.peer_disconnected(&idb);
        a.peer_connected(now, idb).unwrap();
        b.peer_connected(now, ida).unwrap();
        exchange(now, &mut a, &mut b);
        assert_eq!(held(&b, ida), 2);
        assert_eq!(a.stats().sent, 2, "only seq 2 was sent again");
        assert_eq!(b.stats().not_member, 0);
        for core in [&a, &b, &c] {
            core.ledger().close();
        }
    }
}
