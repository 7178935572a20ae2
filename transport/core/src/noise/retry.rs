//! Retry integrity tags and the endpoint's keyed MACs.
//!
//! The Retry tag follows the idea of RFC 9001 §5.8 (an AEAD tag over the
//! original destination CID and the Retry packet) with our own fixed key and
//! nonce, and the QUIC version mixed into the associated data. It proves
//! nothing but that the sender speaks our protocol and saw the Initial.
//!
//! Stateless reset tokens use an HMAC key, and retry/address tokens an HKDF
//! PRK (quinn-proto's `ring` feature implements its `HmacKey` /
//! `HandshakeTokenKey` traits for ring's types). The token key is random
//! per endpoint. The reset key is derived from the node's secret key
//! ([`reset_key_for`]): a node restarted after a crash computes the same
//! reset tokens it handed out before, so it resets its peers' stale
//! connections with the first packet they send it instead of leaving them
//! to the idle timeout (RFC 9000 §10.3.2: one static key per endpoint,
//! derived so the token reveals nothing of it).

use std::sync::Arc;

use quinn_proto::crypto::{HandshakeTokenKey, HmacKey};
use quinn_proto::ConnectionId;
use relay_proto::SecretKey;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::{hkdf, hmac};

/// Fixed, public Retry integrity key (not a secret: integrity only).
const RETRY_KEY: [u8; 32] = *b"relay-node retry integrity key!!";
/// Fixed Retry integrity nonce.
const RETRY_NONCE: [u8; 12] = *b"relay-retry1";
/// Tag length.
const TAG_LEN: usize = 16;

/// The associated data the tag covers.
fn pseudo_packet(version: u32, orig_dst_cid: &ConnectionId, packet: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(5 + orig_dst_cid.len() + packet.len());
    p.extend_from_slice(&version.to_be_bytes());
    // A CID is at most 20 bytes, so its length fits in a byte.
    p.push(u8::try_from(orig_dst_cid.len()).unwrap_or(u8::MAX));
    p.extend_from_slice(orig_dst_cid);
    p.extend_from_slice(packet);
    p
}

fn tag(version: u32, orig_dst_cid: &ConnectionId, packet: &[u8]) -> Option<[u8; TAG_LEN]> {
    let key = LessSafeKey::new(UnboundKey::new(&aead::CHACHA20_POLY1305, &RETRY_KEY).ok()?);
    let aad = pseudo_packet(version, orig_dst_cid, packet);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(RETRY_NONCE),
            Aad::from(&aad),
            &mut [],
        )
        .ok()?;
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    Some(out)
}

/// The integrity tag for a Retry packet (everything but the tag).
pub(crate) fn retry_tag(version: u32, orig_dst_cid: &ConnectionId, packet: &[u8]) -> [u8; 16] {
    // On the impossible failure an all-zero tag simply fails validation.
    tag(version, orig_dst_cid, packet).unwrap_or([0; TAG_LEN])
}

/// Checks a received Retry packet: `payload` ends with the tag.
pub(crate) fn is_valid_retry(
    version: u32,
    orig_dst_cid: &ConnectionId,
    header: &[u8],
    payload: &[u8],
) -> bool {
    let Some(tag_start) = payload.len().checked_sub(TAG_LEN) else {
        return false;
    };
    let (body, received) = payload.split_at(tag_start);
    let mut packet = Vec::with_capacity(header.len() + body.len());
    packet.extend_from_slice(header);
    packet.extend_from_slice(body);
    match tag(version, orig_dst_cid, &packet) {
        // The key is public, so the tag is no secret: a plain compare is fine.
        Some(expected) => expected[..] == *received,
        None => false,
    }
}

/// Context label of the reset key derivation; no other key uses it.
const RESET_KEY_LABEL: &[u8] = b"relay-node stateless reset key v1";

/// The stateless reset key of a node: HMAC-SHA256 keyed with its secret
/// key over [`RESET_KEY_LABEL`], never the secret itself. quinn computes
/// each token as HMAC(reset key, connection ID), so tokens are stable
/// across restarts of the same identity and unrelated between identities.
pub(crate) fn reset_key_for(secret: &SecretKey) -> Arc<dyn HmacKey> {
    let seed = hmac::Key::new(hmac::HMAC_SHA256, &secret.to_bytes());
    let derived = hmac::sign(&seed, RESET_KEY_LABEL);
    Arc::new(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
}

/// Context label of the connection-ID key derivation.
const CID_KEY_LABEL: &[u8] = b"relay-node connection id key v1";

/// The key of the node's connection-ID generator (quinn's hashed
/// generator, which tags each CID it issues and answers only packets whose
/// CID carries a valid tag). Derived from the secret key like the reset
/// key, so a restarted node still recognizes the CIDs it issued before and
/// answers them with a stateless reset. The tag only filters non-QUIC
/// noise; it is not a security boundary.
pub(crate) fn cid_key_for(secret: &SecretKey) -> u64 {
    let seed = hmac::Key::new(hmac::HMAC_SHA256, &secret.to_bytes());
    let derived = hmac::sign(&seed, CID_KEY_LABEL);
    let mut key = [0u8; 8];
    key.copy_from_slice(&derived.as_ref()[..8]);
    u64::from_le_bytes(key)
}

/// A random HMAC key for stateless reset tokens (an endpoint without an
/// identity to derive from: tests, benchmarks).
pub(crate) fn reset_key() -> Arc<dyn HmacKey> {
    Arc::new(hmac::Key::new(
        hmac::HMAC_SHA256,
        &rand::random::<[u8; 32]>(),
    ))
}

/// A random HKDF key for retry and address-validation tokens.
pub(crate) fn token_key() -> Arc<dyn HandshakeTokenKey> {
    Arc::new(hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(&rand::random::<[u8; 32]>()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn token(key: &dyn HmacKey, cid: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; key.signature_len()];
        key.sign(cid, &mut out);
        out
    }

    #[test]
    fn reset_key_is_stable_per_identity_and_never_the_raw_secret() {
        let secret = SecretKey::from_bytes(&[5; 32]);
        let cid = [9u8; 8];
        let a = reset_key_for(&secret);
        let b = reset_key_for(&SecretKey::from_bytes(&[5; 32]));
        assert_eq!(token(&*a, &cid), token(&*b, &cid), "a restart keeps tokens");
        assert_ne!(token(&*a, &cid), token(&*a, &[8u8; 8]));
        let other = reset_key_for(&SecretKey::from_bytes(&[6; 32]));
        assert_ne!(token(&*a, &cid), token(&*other, &cid));
        let raw = hmac::Key::new(hmac::HMAC_SHA256, &secret.to_bytes());
        assert_ne!(token(&*a, &cid), token(&raw, &cid), "derived, not raw");
        assert_ne!(token(&*reset_key(), &cid), token(&*reset_key(), &cid));
        let cid_key = cid_key_for(&secret);
        assert_eq!(cid_key, cid_key_for(&SecretKey::from_bytes(&[5; 32])));
        assert_ne!(cid_key, cid_key_for(&SecretKey::from_bytes(&[6; 32])));
    }

    #[test]
    fn retry_tag_validates_and_detects_tamper() {
        let odcid = ConnectionId::new(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let header = [0xf0u8, 0, 0, 0, 1, 4, 9, 9, 9, 9];
        let token = b"retry-token-bytes";
        let mut packet = header.to_vec();
        packet.extend_from_slice(token);
        let t = retry_tag(7, &odcid, &packet);
        let mut payload = token.to_vec();
        payload.extend_from_slice(&t);
        assert!(is_valid_retry(7, &odcid, &header, &payload));
        assert!(!is_valid_retry(8, &odcid, &header, &payload));
        assert!(!is_valid_retry(
            7,
            &ConnectionId::new(&[0; 8]),
            &header,
            &payload
        ));
        payload[0] ^= 1;
        assert!(!is_valid_retry(7, &odcid, &header, &payload));
        assert!(!is_valid_retry(7, &odcid, &header, &[1, 2, 3]));
    }
}
