//! Retry integrity tags and the endpoint's keyed MACs.
//!
//! The Retry tag follows the idea of RFC 9001 §5.8 (an AEAD tag over the
//! original destination CID and the Retry packet) with our own fixed key and
//! nonce, and the QUIC version mixed into the associated data. It proves
//! nothing but that the sender speaks our protocol and saw the Initial.
//!
//! Stateless reset tokens use an HMAC key, and retry/address tokens an HKDF
//! PRK, both random per endpoint (quinn-proto's `ring` feature implements
//! its `HmacKey` / `HandshakeTokenKey` traits for ring's types).

use std::sync::Arc;

use quinn_proto::crypto::{HandshakeTokenKey, HmacKey};
use quinn_proto::ConnectionId;
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

/// A random HMAC key for stateless reset tokens.
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
