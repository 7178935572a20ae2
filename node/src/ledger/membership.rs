//! Who is a mesh member, as far as the ledger is concerned: whose feeds the
//! replica stores and forwards (docs/LEDGER.md, "Membership").
//!
//! In a mesh with a network key, an origin is a member once this node
//! holds a validly signed `node-announcement` of that origin carrying the
//! origin's [`MemberProof`] under the network key. Only key holders can
//! compute a proof, and the origin signs it, so a feed from outside the
//! mesh (a made-up identity of a non-member, a feed carried over from
//! another mesh) is refused however it arrives, directly or through other
//! members. This node itself is always a member. In a mesh without a
//! network key there is nothing to prove: every origin is a member.
//!
//! The replica asks [`Membership::is_member`] before storing a feed,
//! offers every validly signed entry it meets to [`Membership::admit`], and
//! sends [`Membership::proof`] ahead of a feed to a peer that holds
//! nothing of it, so the proof arrives first even when retention has
//! dropped the origin's first announcement.

use std::collections::HashMap;

use relay_proto::ledger::{Body, Entry, EntryKind};
use relay_proto::{NetworkKey, NodeId};

/// Most members remembered with their proof. An origin beyond it is not
/// admitted (and its entries count as `not_member`); only key holders can
/// make proofs, so reaching it takes a member minting identities.
pub const MAX_MEMBERS: usize = 16_384;

/// Decides whose feeds the replica accepts.
pub trait Membership: Send {
    /// Whether entries of `origin` are accepted.
    fn is_member(&self, origin: &NodeId) -> bool;
    /// `entry`'s signature is valid: if it proves its origin a member,
    /// admit the origin. Returns whether the origin is a member now.
    fn admit(&mut self, entry: &Entry) -> bool;
    /// The entry that shows a peer `origin` is a member, if any.
    fn proof(&self, origin: &NodeId) -> Option<Entry>;
}

/// A plain predicate (simulations and tests): nothing to admit or prove.
impl<F: Fn(&NodeId) -> bool + Send> Membership for F {
    fn is_member(&self, origin: &NodeId) -> bool {
        self(origin)
    }

    fn admit(&mut self, entry: &Entry) -> bool {
        self(&entry.origin)
    }

    fn proof(&self, _origin: &NodeId) -> Option<Entry> {
        None
    }
}

/// The rule of a running node. See the module docs.
#[derive(Debug)]
pub struct MeshMembers {
    key: Option<NetworkKey>,
    own: NodeId,
    /// The latest proving announcement per member.
    proofs: HashMap<NodeId, Entry>,
    max: usize,
}

impl MeshMembers {
    /// The rule for node `own` in a mesh with `key` (`None`: no key, every
    /// origin is a member).
    pub fn new(key: Option<NetworkKey>, own: NodeId) -> Self {
        Self {
            key,
            own,
            proofs: HashMap::new(),
            max: MAX_MEMBERS,
        }
    }

    /// With at most `max` members remembered (tests).
    pub fn with_max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// Members proven so far (this node counts once it has announced).
    pub fn len(&self) -> usize {
        self.proofs.len()
    }

    /// Whether no member is proven yet.
    pub fn is_empty(&self) -> bool {
        self.proofs.is_empty()
    }

    fn proves(&self, entry: &Entry) -> bool {
        let Some(key) = &self.key else {
            return true;
        };
        if entry.kind != EntryKind::NodeAnnouncement {
            return false;
        }
        match entry.body() {
            Ok(Body::NodeAnnouncement(a)) => {
                a.member_proof.is_some_and(|p| p.verify(key, &entry.origin))
            }
            _ => false,
        }
    }
}

impl Membership for MeshMembers {
    fn is_member(&self, origin: &NodeId) -> bool {
        self.key.is_none() || *origin == self.own || self.proofs.contains_key(origin)
    }

    fn admit(&mut self, entry: &Entry) -> bool {
        if self.key.is_none() {
            return true;
        }
        if entry.kind == EntryKind::NodeAnnouncement && self.proves(entry) {
            let origin = entry.origin;
            let newer = self.proofs.get(&origin).is_none_or(|p| p.seq < entry.seq);
            let room = self.proofs.contains_key(&origin) || self.proofs.len() < self.max;
            if newer && room {
                self.proofs.insert(origin, entry.clone());
            }
        }
        self.is_member(&entry.origin)
    }

    fn proof(&self, origin: &NodeId) -> Option<Entry> {
        self.proofs.get(origin).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::ledger::body::{NatType, NodeAnnouncement};
    use relay_proto::ledger::{EntryHash, MemberProof};
    use relay_proto::SecretKey;

    fn announcement(proof: Option<MemberProof>) -> Body {
        Body::NodeAnnouncement(NodeAnnouncement {
            addrs: vec![],
            nat: NatType::Unknown,
            relay: false,
            version: "v".into(),
            member_proof: proof,
        })
    }

    fn signed(key: &SecretKey, seq: u64, body: &Body) -> Entry {
        Entry::sign(key, seq, EntryHash::ZERO, 1, body).unwrap()
    }

    #[test]
    fn only_a_proof_under_our_key_admits() {
        let mesh = NetworkKey::from_bytes([1; 32]);
        let other = NetworkKey::from_bytes([2; 32]);
        let me = SecretKey::from_bytes(&[10; 32]);
        let a = SecretKey::from_bytes(&[11; 32]);
        let mut m = MeshMembers::new(Some(mesh.clone()), me.node_id());
        assert!(m.is_member(&me.node_id()));
        assert!(!m.is_member(&a.node_id()));
        // No proof, a proof under another key, a proof for another NodeId.
        assert!(!m.admit(&signed(&a, 1, &announcement(None))));
        let foreign = MemberProof::new(&other, &a.node_id());
        assert!(!m.admit(&signed(&a, 1, &announcement(Some(foreign)))));
        let borrowed = MemberProof::new(&mesh, &me.node_id());
        assert!(!m.admit(&signed(&a, 1, &announcement(Some(borrowed)))));
        assert!(m.is_empty());
        let good = signed(
            &a,
            1,
            &announcement(Some(MemberProof::new(&mesh, &a.node_id()))),
        );
        assert!(m.admit(&good));
        assert!(m.is_member(&a.node_id()));
        assert_eq!(m.proof(&a.node_id()), Some(good));
    }

    #[test]
    fn without_a_key_everyone_is_a_member_and_the_set_is_bounded() {
        let a = SecretKey::from_bytes(&[11; 32]);
        let m = MeshMembers::new(None, a.node_id());
        assert!(m.is_member(&SecretKey::from_bytes(&[12; 32]).node_id()));

        let mesh = NetworkKey::from_bytes([1; 32]);
        let mut m = MeshMembers::new(Some(mesh.clone()), a.node_id()).with_max(1);
        let prove = |k: &SecretKey| {
            signed(
                k,
                1,
                &announcement(Some(MemberProof::new(&mesh, &k.node_id()))),
            )
        };
        let (b, c) = (
            SecretKey::from_bytes(&[12; 32]),
            SecretKey::from_bytes(&[13; 32]),
        );
        assert!(m.admit(&prove(&b)));
        assert!(!m.admit(&prove(&c)), "beyond the bound");
        assert_eq!(m.len(), 1);
    }
}
