//! Canonical encodings for signed data, and signing and verifying them.
//!
//! Every signed structure (the local API's health proof today; tokens and
//! ledger entries next) is signed over bytes built by [`Canonical`]:
//!
//! ```text
//! context   the structure's context string (ASCII, no NUL), then one 0x00 byte
//! field...  each field in a fixed order:
//!             fixed-size fields (keys, ids, integers) as their raw bytes
//!               (integers big-endian);
//!             variable-size fields as a u16 big-endian length, then the bytes.
//! ```
//!
//! The context string separates domains: a signature made for one kind of
//! structure never verifies as another, because their encodings start with
//! different contexts. One structure has exactly one encoding (no optional
//! fields, no maps, no floats), and verification uses ed25519
//! `verify_strict`, which refuses malleable and small-order signatures.
//!
//! Known contexts are the constants below ([`HEALTH_PROOF`]).

use ed25519_dalek::{Signature, VerifyingKey};
use thiserror::Error;

use crate::{NodeId, SecretKey};

/// A domain-separation context string. Construct with [`Context::new`]; the
/// known ones are constants of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context(&'static str);

impl Context {
    /// A context. It must be printable ASCII without NUL; [`Canonical::new`]
    /// refuses any other.
    pub const fn new(text: &'static str) -> Self {
        Self(text)
    }

    /// The context text.
    pub fn as_str(&self) -> &'static str {
        self.0
    }

    fn is_valid(&self) -> bool {
        !self.0.is_empty() && self.0.bytes().all(|b| (0x20..0x7f).contains(&b))
    }
}

/// The local API's health proof: `node_id` (32 bytes), then the client's
/// nonce (u16-BE length, then the bytes).
pub const HEALTH_PROOF: Context = Context::new("relay-node/v1/health-proof");

/// Building, signing or verifying a canonical encoding failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SigningError {
    /// The context string is empty or not printable ASCII.
    #[error("bad-context: {0:?} is not a printable ASCII context string")]
    BadContext(&'static str),
    /// A variable-size field is longer than a u16 length can say.
    #[error("field-too-long: a field of {0} bytes exceeds 65535")]
    FieldTooLong(usize),
    /// The signature does not verify for this key and encoding.
    #[error("bad-signature: the signature does not verify")]
    BadSignature,
    /// The signer's key is not a valid ed25519 public key.
    #[error("bad-key: the signer is not a valid ed25519 public key")]
    BadKey,
}

impl SigningError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadContext(_) => "bad-context",
            Self::FieldTooLong(_) => "field-too-long",
            Self::BadSignature => "bad-signature",
            Self::BadKey => "bad-key",
        }
    }
}

/// The canonical bytes of one signed structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    bytes: Vec<u8>,
}

impl Canonical {
    /// Starts an encoding with `context` and its NUL terminator.
    pub fn new(context: Context) -> Result<Self, SigningError> {
        if !context.is_valid() {
            return Err(SigningError::BadContext(context.0));
        }
        let mut bytes = Vec::with_capacity(context.0.len() + 64);
        bytes.extend_from_slice(context.0.as_bytes());
        bytes.push(0);
        Ok(Self { bytes })
    }

    /// Appends a fixed-size field as its raw bytes.
    pub fn fixed(mut self, field: &[u8]) -> Self {
        self.bytes.extend_from_slice(field);
        self
    }

    /// Appends a u64, big-endian.
    pub fn u64(self, value: u64) -> Self {
        self.fixed(&value.to_be_bytes())
    }

    /// Appends a variable-size field: u16 big-endian length, then the bytes.
    pub fn bytes(mut self, field: &[u8]) -> Result<Self, SigningError> {
        let len =
            u16::try_from(field.len()).map_err(|_| SigningError::FieldTooLong(field.len()))?;
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(field);
        Ok(self)
    }

    /// The encoded bytes (what is signed).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Signs the encoding with `key`.
    pub fn sign(&self, key: &SecretKey) -> [u8; 64] {
        key.sign(&self.bytes)
    }

    /// Verifies `signature` over the encoding by `signer`, strictly.
    pub fn verify(&self, signer: &NodeId, signature: &[u8; 64]) -> Result<(), SigningError> {
        let key = VerifyingKey::from_bytes(signer.as_bytes()).map_err(|_| SigningError::BadKey)?;
        key.verify_strict(&self.bytes, &Signature::from_bytes(signature))
            .map_err(|_| SigningError::BadSignature)
    }
}

/// The health-proof encoding for `node_id` and `nonce`.
pub fn health_proof(node_id: &NodeId, nonce: &[u8]) -> Result<Canonical, SigningError> {
    Canonical::new(HEALTH_PROOF)?
        .fixed(node_id.as_bytes())
        .bytes(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_proof_bytes_are_pinned() {
        let key = SecretKey::from_bytes(&[7u8; 32]);
        let id = key.node_id();
        let enc = health_proof(&id, &[0xaa, 0xbb, 0xcc]).unwrap();
        let mut expected = b"relay-node/v1/health-proof\0".to_vec();
        expected.extend_from_slice(id.as_bytes());
        expected.extend_from_slice(&[0x00, 0x03, 0xaa, 0xbb, 0xcc]);
        assert_eq!(enc.as_bytes(), &expected[..]);
        assert_eq!(enc.as_bytes().len(), 27 + 32 + 2 + 3);
    }

    #[test]
    fn sign_and_verify() {
        let key = SecretKey::generate();
        let id = key.node_id();
        let enc = health_proof(&id, b"nonce").unwrap();
        let sig = enc.sign(&key);
        assert_eq!(enc.verify(&id, &sig), Ok(()));
    }

    #[test]
    fn tampering_fails() {
        let key = SecretKey::generate();
        let id = key.node_id();
        let enc = health_proof(&id, b"nonce-1").unwrap();
        let sig = enc.sign(&key);
        // Another nonce.
        let other = health_proof(&id, b"nonce-2").unwrap();
        assert_eq!(other.verify(&id, &sig), Err(SigningError::BadSignature));
        // A flipped signature bit.
        let mut bad = sig;
        bad[10] ^= 1;
        assert_eq!(enc.verify(&id, &bad), Err(SigningError::BadSignature));
        // Another signer.
        let stranger = SecretKey::generate().node_id();
        assert_eq!(enc.verify(&stranger, &sig), Err(SigningError::BadSignature));
    }

    #[test]
    fn wrong_context_fails() {
        let key = SecretKey::generate();
        let id = key.node_id();
        let other = Context::new("relay-node/v1/other");
        let enc = Canonical::new(other)
            .unwrap()
            .fixed(id.as_bytes())
            .bytes(b"n")
            .unwrap();
        let sig = enc.sign(&key);
        let proof = health_proof(&id, b"n").unwrap();
        assert_eq!(proof.verify(&id, &sig), Err(SigningError::BadSignature));
        // The same fields signed raw (no context) do not verify either.
        let raw = key.sign(&proof.as_bytes()[HEALTH_PROOF.as_str().len() + 1..]);
        assert_eq!(proof.verify(&id, &raw), Err(SigningError::BadSignature));
    }

    #[test]
    fn length_prefix_separates_fields() {
        // "ab" + "c" and "a" + "bc" encode differently.
        let a = Canonical::new(HEALTH_PROOF)
            .unwrap()
            .bytes(b"ab")
            .unwrap()
            .bytes(b"c")
            .unwrap();
        let b = Canonical::new(HEALTH_PROOF)
            .unwrap()
            .bytes(b"a")
            .unwrap()
            .bytes(b"bc")
            .unwrap();
        assert_ne!(a.as_bytes(), b.as_bytes());
    }

    #[test]
    fn bad_contexts_and_fields_are_refused() {
        for text in ["", "a\0b", "caf\u{e9}", "tab\there"] {
            let leaked: &'static str = Box::leak(text.to_string().into_boxed_str());
            assert_eq!(
                Canonical::new(Context::new(leaked)).unwrap_err().kind(),
                "bad-context",
                "{text:?}"
            );
        }
        let big = vec![0u8; 65_536];
        let e = Canonical::new(HEALTH_PROOF)
            .unwrap()
            .bytes(&big)
            .unwrap_err();
        assert_eq!(e, SigningError::FieldTooLong(65_536));
        assert!(Canonical::new(HEALTH_PROOF)
            .unwrap()
            .bytes(&big[..65_535])
            .is_ok());
    }

    #[test]
    fn known_contexts_are_valid() {
        assert!(HEALTH_PROOF.is_valid());
    }

    #[test]
    fn small_order_key_is_refused_strictly() {
        // The identity point as key, with R = identity and s = 0: the lax
        // equation [s]B = R + [k]A holds for every message, so a lax check
        // accepts this forgery; verify_strict refuses small-order keys.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let id = NodeId::from_bytes(&identity).unwrap();
        let mut sig = [0u8; 64];
        sig[0] = 1;
        let enc = health_proof(&id, b"x").unwrap();
        assert!(id.verify(enc.as_bytes(), &sig), "lax verification accepts");
        assert_eq!(enc.verify(&id, &sig), Err(SigningError::BadSignature));
    }
}
