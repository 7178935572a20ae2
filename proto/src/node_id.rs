//! NodeId: a node's ed25519 public key, printed as 52 lowercase base32 chars.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::ParseNodeIdError;

/// Length of the canonical text form.
const TEXT_LEN: usize = 52;

/// A node's identity: its ed25519 public key.
///
/// The canonical text form is 52 lowercase base32 characters (RFC 4648
/// alphabet, no padding). Parsing is strict: one key has one text form.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId([u8; 32]);

/// The key as four 8-byte words: the same input as the derived hash (all
/// 32 bytes; equal ids hash equal), without the byte-slice path (a length
/// prefix, then the hasher's long-input loop) that made NodeIds the
/// costliest keys of the channels' per-message map lookups.
impl std::hash::Hash for NodeId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for word in self.0.chunks_exact(8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            state.write_u64(u64::from_le_bytes(w));
        }
    }
}

impl NodeId {
    /// Checks that the bytes are a valid ed25519 public key (each thread
    /// remembers the last few keys that passed: `valid_keys.rs`).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, ParseNodeIdError> {
        if !crate::valid_keys::is_valid(bytes, |b| VerifyingKey::from_bytes(b).is_ok()) {
            return Err(ParseNodeIdError::InvalidKey);
        }
        Ok(Self(*bytes))
    }

    pub(crate) fn from_verifying_key(key: &VerifyingKey) -> Self {
        Self(key.to_bytes())
    }

    /// The raw public key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The X25519 (Montgomery) form of this key: the peer's Noise static key.
    pub fn to_x25519_public(&self) -> [u8; 32] {
        match VerifyingKey::from_bytes(&self.0) {
            Ok(key) => key.to_montgomery().to_bytes(),
            // Unreachable for a constructed NodeId; an all-zero key fails every
            // handshake rather than panicking.
            Err(_) => [0u8; 32],
        }
    }

    /// Verifies an ed25519 signature made by this node.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        key.verify(message, &Signature::from_bytes(signature))
            .is_ok()
    }

    /// A short prefix for logs and tables.
    pub fn fmt_short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(10);
        s
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::base32_encode(&self.0))
    }
}

impl std::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeId({})", self.fmt_short())
    }
}

impl std::str::FromStr for NodeId {
    type Err = ParseNodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != TEXT_LEN {
            return Err(ParseNodeIdError::Length(s.len()));
        }
        let bytes = crate::base32_decode(s)?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| ParseNodeIdError::Length(s.len()))?;
        Self::from_bytes(&arr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;

    #[test]
    fn text_roundtrip_is_canonical() {
        let id = SecretKey::generate().node_id();
        let text = id.to_string();
        assert_eq!(text.len(), 52);
        assert_eq!(text.parse::<NodeId>(), Ok(id));
        assert!(text.to_uppercase().parse::<NodeId>().is_err());
        assert!(format!(" {text}").parse::<NodeId>().is_err());
        assert!(text[..51].parse::<NodeId>().is_err());
    }

    #[test]
    fn rejects_invalid_points() {
        // y = 2 is not on the curve.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        assert_eq!(
            NodeId::from_bytes(&bytes),
            Err(ParseNodeIdError::InvalidKey)
        );
    }

    #[test]
    fn ordering_is_bytewise() {
        let a = SecretKey::from_bytes(&[1; 32]).node_id();
        let b = SecretKey::from_bytes(&[2; 32]).node_id();
        assert_eq!(a < b, a.as_bytes() < b.as_bytes());
    }
}
