//! Probe authentication: a truncated HMAC-SHA256 keyed per peer pair.
//!
//! Both ends of a pair hold the same 32-byte key (the transport derives it
//! from the pair's own connection). The tag covers a domain label and every
//! byte of the frame before the tag: type, flags, tx id, sender and address.
//! Since the type byte is covered, a probe cannot pass as a reply; since the
//! sender is covered and a node holds no key for itself, its own probe
//! reflected back to it is dropped.

use relay_proto::wire::probe::{ProbeError, ProbeFrame, PROBE_LEN, TAG_LEN};
use ring::hmac;
use subtle::ConstantTimeEq;

const LABEL: &[u8] = b"relay-node traversal probe v1";

/// The shared key of one peer pair. Its bytes never reach a log.
#[derive(Clone)]
pub struct ProbeKey(hmac::Key);

impl std::fmt::Debug for ProbeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProbeKey(..)")
    }
}

impl ProbeKey {
    /// A key from 32 shared bytes.
    pub fn new(bytes: &[u8; 32]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    fn tag(&self, signed: &[u8]) -> [u8; TAG_LEN] {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(LABEL);
        ctx.update(signed);
        let full = ctx.sign();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full.as_ref()[..TAG_LEN]);
        tag
    }

    /// Encodes `frame` with a fresh tag (its `tag` field is ignored).
    pub fn seal(&self, frame: &ProbeFrame) -> Result<[u8; PROBE_LEN], ProbeError> {
        let mut bytes = frame.to_bytes()?;
        let tag = self.tag(ProbeFrame::signed_bytes(&bytes));
        bytes[PROBE_LEN - TAG_LEN..].copy_from_slice(&tag);
        Ok(bytes)
    }

    /// Whether the tag of an encoded frame is right (constant time).
    pub fn verify(&self, bytes: &[u8; PROBE_LEN]) -> bool {
        let expected = self.tag(ProbeFrame::signed_bytes(bytes));
        let got = &bytes[PROBE_LEN - TAG_LEN..];
        expected.as_slice().ct_eq(got).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::wire::probe::{ProbeKind, FLAG_NOMINATE};

    fn frame() -> ProbeFrame {
        ProbeFrame {
            kind: ProbeKind::Probe,
            flags: 0,
            tx: [1; 12],
            sender: [2; 32],
            addr: "203.0.113.9:5000".parse().unwrap(),
            tag: [0; TAG_LEN],
        }
    }

    #[test]
    fn seal_then_verify() {
        let key = ProbeKey::new(&[5; 32]);
        let bytes = key.seal(&frame()).unwrap();
        assert!(key.verify(&bytes));
        assert!(!ProbeKey::new(&[6; 32]).verify(&bytes));
    }

    #[test]
    fn every_covered_byte_matters() {
        let key = ProbeKey::new(&[5; 32]);
        let bytes = key.seal(&frame()).unwrap();
        for i in 0..PROBE_LEN {
            let mut bad = bytes;
            bad[i] ^= 0x01;
            assert!(!key.verify(&bad), "flip at {i} accepted");
        }
        // A flag change (e.g. forging a nomination) breaks the tag.
        let mut nominated = frame();
        nominated.flags = FLAG_NOMINATE;
        let mut forged = nominated.to_bytes().unwrap();
        forged[PROBE_LEN - TAG_LEN..].copy_from_slice(&bytes[PROBE_LEN - TAG_LEN..]);
        assert!(!key.verify(&forged));
    }

    #[test]
    fn debug_is_redacted() {
        assert_eq!(format!("{:?}", ProbeKey::new(&[7; 32])), "ProbeKey(..)");
    }
}
