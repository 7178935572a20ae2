//! Secret material: the node's ed25519 identity and the mesh network key.
//!
//! Neither type prints its bytes through `Debug`, so secrets never reach a log.

use ed25519_dalek::{Signer, SigningKey};
use rand::RngCore;

use crate::NodeId;

/// A node's ed25519 signing key. Its public half is the [`NodeId`]; its
/// X25519 form is the Noise static key.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// Generates a new random identity from the OS RNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(SigningKey::from_bytes(&bytes))
    }

    /// Builds a key from its 32-byte seed.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(bytes))
    }

    /// The 32-byte seed. Handle with care: this is the secret.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// This key's public identity.
    pub fn node_id(&self) -> NodeId {
        NodeId::from_verifying_key(&self.0.verifying_key())
    }

    /// The 32-byte seed, borrowed (for deriving the expanded key without a
    /// copy). Handle with care: this is the secret.
    pub(crate) fn seed_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The X25519 private key (clamped scalar) for the Noise handshake.
    pub fn to_x25519_secret(&self) -> [u8; 32] {
        self.0.to_scalar_bytes()
    }

    /// Signs a message with ed25519.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.node_id())
    }
}

/// The 32-byte mesh network key: the Noise PSK that makes a mesh private.
#[derive(Clone, PartialEq, Eq)]
pub struct NetworkKey([u8; 32]);

impl NetworkKey {
    /// Generates a new random network key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NetworkKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x25519_form_matches_montgomery_public_key() {
        let sk = SecretKey::generate();
        let secret = x25519_base(&sk.to_x25519_secret());
        assert_eq!(secret, sk.node_id().to_x25519_public());
    }

    fn x25519_base(scalar: &[u8; 32]) -> [u8; 32] {
        x25519_dalek::x25519(*scalar, x25519_dalek::X25519_BASEPOINT_BYTES)
    }

    #[test]
    fn debug_redacts() {
        let nk = NetworkKey::generate();
        assert_eq!(format!("{nk:?}"), "NetworkKey(<redacted>)");
        let sk = SecretKey::from_bytes(&[7u8; 32]);
        let dbg = format!("{sk:?}");
        assert!(dbg.starts_with("SecretKey("));
        assert!(!dbg.contains("0707"));
    }

    #[test]
    fn signatures_verify_under_node_id() {
        let sk = SecretKey::generate();
        let sig = sk.sign(b"hello");
        assert!(sk.node_id().verify(b"hello", &sig));
        assert!(!sk.node_id().verify(b"hellO", &sig));
    }
}
