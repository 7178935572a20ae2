//! `GET /v1/health?nonce=HEX`: the node signs the client's nonce with its
//! identity key over the canonical health-proof encoding
//! ([`relay_proto::signing::health_proof`]), so a client can tell it
//! reached the running node of the identity it expects.

use relay_proto::signing::{health_proof, SigningError};
use relay_proto::{NodeId, SecretKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::error::ApiError;
use super::request::{hex_decode, hex_encode, query_param};

/// Largest nonce, in bytes.
pub const MAX_NONCE: usize = 64;

/// The answer to a health request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthProof {
    /// The node's NodeId.
    pub node_id: String,
    /// The nonce, lowercase hex.
    pub nonce: String,
    /// The ed25519 signature over the health-proof encoding, lowercase hex.
    pub signature: String,
    /// The node's version.
    pub version: String,
}

/// The nonce of a health request's query.
pub fn parse_nonce(query: Option<&str>) -> Result<Vec<u8>, ApiError> {
    let text = query_param(query, "nonce")
        .ok_or_else(|| ApiError::BadRequest("missing ?nonce=HEX".into()))?;
    let nonce = hex_decode(text).ok_or_else(|| {
        ApiError::BadRequest("the nonce is not an even number of hex digits".into())
    })?;
    if nonce.is_empty() || nonce.len() > MAX_NONCE {
        return Err(ApiError::BadRequest(format!(
            "the nonce must be 1 to {MAX_NONCE} bytes, got {}",
            nonce.len()
        )));
    }
    Ok(nonce)
}

/// Signs `nonce` as `key`'s node.
pub fn prove(key: &SecretKey, nonce: &[u8]) -> Result<HealthProof, ApiError> {
    let node_id = key.node_id();
    let encoding = health_proof(&node_id, nonce).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HealthProof {
        node_id: node_id.to_string(),
        nonce: hex_encode(nonce),
        signature: hex_encode(&encoding.sign(key)),
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// A health proof did not check out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// The answer is not well-formed.
    #[error("bad-proof: {0}")]
    Malformed(String),
    /// Another nonce came back.
    #[error("bad-proof: the nonce in the answer is not the one sent")]
    Nonce,
    /// Another node answered.
    #[error("wrong-node: expected {expected}, the socket is served by {got}")]
    WrongNode {
        /// The NodeId expected.
        expected: String,
        /// The NodeId that answered.
        got: String,
    },
    /// The signature does not verify.
    #[error("bad-proof: {0}")]
    Signature(#[from] SigningError),
}

impl ProofError {
    /// The stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::WrongNode { .. } => "wrong-node",
            _ => "bad-proof",
        }
    }
}

/// Checks a proof for `nonce`, and that it came from `expected` when given;
/// returns the prover's NodeId.
pub fn verify(
    proof: &HealthProof,
    nonce: &[u8],
    expected: Option<&NodeId>,
) -> Result<NodeId, ProofError> {
    let node_id: NodeId = proof
        .node_id
        .parse()
        .map_err(|e| ProofError::Malformed(format!("node_id: {e}")))?;
    if let Some(expected) = expected {
        if *expected != node_id {
            return Err(ProofError::WrongNode {
                expected: expected.to_string(),
                got: node_id.to_string(),
            });
        }
    }
    if hex_decode(&proof.nonce).as_deref() != Some(nonce) {
        return Err(ProofError::Nonce);
    }
    let signature: [u8; 64] = hex_decode(&proof.signature)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| ProofError::Malformed("signature is not 64 bytes of hex".into()))?;
    health_proof(&node_id, nonce)?.verify(&node_id, &signature)?;
    Ok(node_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces() {
        assert_eq!(parse_nonce(Some("nonce=0aFF")).unwrap(), vec![0x0a, 0xff]);
        for bad in [
            None,
            Some(""),
            Some("nonce="),
            Some("nonce=abc"),
            Some("nonce=zz"),
        ] {
            assert_eq!(
                parse_nonce(bad).unwrap_err().kind(),
                "bad-request",
                "{bad:?}"
            );
        }
        let long = format!("nonce={}", "ab".repeat(MAX_NONCE + 1));
        assert_eq!(parse_nonce(Some(&long)).unwrap_err().kind(), "bad-request");
        let max = format!("nonce={}", "ab".repeat(MAX_NONCE));
        assert_eq!(parse_nonce(Some(&max)).unwrap().len(), MAX_NONCE);
    }

    #[test]
    fn proofs_verify_and_tampering_fails() {
        let key = SecretKey::generate();
        let id = key.node_id();
        let proof = prove(&key, b"\x01\x02").unwrap();
        assert_eq!(proof.nonce, "0102");
        assert_eq!(proof.signature.len(), 128);
        assert_eq!(verify(&proof, b"\x01\x02", Some(&id)).unwrap(), id);
        assert_eq!(
            verify(&proof, b"\x01\x03", None).unwrap_err(),
            ProofError::Nonce
        );
        let mut tampered = proof.clone();
        tampered.nonce = "0103".into();
        assert_eq!(
            verify(&tampered, b"\x01\x03", None).unwrap_err().kind(),
            "bad-proof"
        );
        let mut tampered = proof.clone();
        let flipped = if tampered.signature.starts_with('0') {
            "1"
        } else {
            "0"
        };
        tampered.signature.replace_range(..1, flipped);
        assert!(matches!(
            verify(&tampered, b"\x01\x02", None),
            Err(ProofError::Signature(_))
        ));
        let other = SecretKey::generate().node_id();
        assert_eq!(
            verify(&proof, b"\x01\x02", Some(&other))
                .unwrap_err()
                .kind(),
            "wrong-node"
        );
        // A proof relabelled with another NodeId fails the signature.
        let mut relabelled = proof;
        relabelled.node_id = other.to_string();
        assert!(matches!(
            verify(&relabelled, b"\x01\x02", None),
            Err(ProofError::Signature(_))
        ));
    }
}
