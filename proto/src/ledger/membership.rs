//! Membership proofs: how a feed shows that its origin holds the mesh's
//! network key.
//!
//! A proof is `HMAC-SHA256(network key, "relay-node/v1/ledger-member\0" ||
//! origin)`. Only holders of the network key can compute it, and it names
//! one NodeId. A node puts the proof for its own NodeId in every
//! `node-announcement` it signs, so the signed announcement says "the
//! holder of this NodeId's key also holds the network key". Another key
//! holder checks it by computing the same MAC; nobody learns the key from
//! it, and a proof is worth nothing for any other NodeId (docs/LEDGER.md,
//! "Membership").

use ring::hmac;

use crate::{NetworkKey, NodeId};

/// The proof's context string (NUL-terminated in the MAC input).
pub const MEMBER_PROOF_CONTEXT: &str = "relay-node/v1/ledger-member";

/// Length of a proof in bytes.
pub const MEMBER_PROOF_LEN: usize = 32;

/// A membership proof for one NodeId under one network key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemberProof(pub [u8; MEMBER_PROOF_LEN]);

impl std::fmt::Debug for MemberProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemberProof({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

fn message(origin: &NodeId) -> Vec<u8> {
    let mut m = Vec::with_capacity(MEMBER_PROOF_CONTEXT.len() + 1 + 32);
    m.extend_from_slice(MEMBER_PROOF_CONTEXT.as_bytes());
    m.push(0);
    m.extend_from_slice(origin.as_bytes());
    m
}

impl MemberProof {
    /// The proof for `origin` under `key`.
    pub fn new(key: &NetworkKey, origin: &NodeId) -> Self {
        let k = hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes());
        let tag = hmac::sign(&k, &message(origin));
        let mut out = [0u8; MEMBER_PROOF_LEN];
        out.copy_from_slice(tag.as_ref());
        Self(out)
    }

    /// Whether this is the proof for `origin` under `key` (constant time).
    pub fn verify(&self, key: &NetworkKey, origin: &NodeId) -> bool {
        let k = hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes());
        hmac::verify(&k, &message(origin), &self.0).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;

    #[test]
    fn a_proof_holds_for_its_origin_and_key_only() {
        let key = NetworkKey::from_bytes([3; 32]);
        let other_key = NetworkKey::from_bytes([4; 32]);
        let a = SecretKey::from_bytes(&[1; 32]).node_id();
        let b = SecretKey::from_bytes(&[2; 32]).node_id();
        let p = MemberProof::new(&key, &a);
        assert!(p.verify(&key, &a));
        assert!(!p.verify(&key, &b));
        assert!(!p.verify(&other_key, &a));
        assert_ne!(p, MemberProof::new(&other_key, &a));
        assert!(!format!("{p:?}").contains(&format!("{:?}", p.0)));
    }
}
