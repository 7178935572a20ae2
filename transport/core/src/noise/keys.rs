//! Packet and header protection keys, and the key schedule that feeds them.
//!
//! Every packet space is protected the same way: an AEAD over the payload
//! (header as associated data, nonce = IV XOR packet number) and header
//! protection with the matching cipher. The AEAD is ChaCha20-Poly1305,
//! except that 1-RTT packets use AES-256-GCM when both sides run AES in
//! hardware and said so in the handshake ([`PacketSuite`]). Only the
//! secrets differ:
//!
//! - Initial: HKDF from the client's first destination connection ID and a
//!   version-specific salt (obfuscation only: anyone can compute it).
//! - Handshake: HKDF from the Noise raw split after message 1.
//! - 1-RTT: HKDF from the Noise raw split after message 2; each key update
//!   derives the next secret from the current one. Header keys never rotate.
//!
//! Key derivation can only fail on impossible lengths; where quinn's API
//! leaves no room for an error, a failed derivation yields a [`DeadKey`] that
//! refuses to decrypt and never emits plaintext.

use bytes::BytesMut;
use quinn_proto::crypto::{CryptoError, HeaderKey, KeyPair, Keys, PacketKey};
use quinn_proto::{ConnectionId, Side};
use ring::aead::{self, quic, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::error::Unspecified;
use ring::hkdf::{self, Prk, Salt, HKDF_SHA256};

/// The AEAD (and header protection cipher) of a packet space.
///
/// ChaCha20-Poly1305 is the default and the only suite of the Initial and
/// Handshake spaces. AES-256-GCM protects 1-RTT packets when both sides
/// offer it, which a node does only where AES runs in hardware: there it
/// costs a fraction of ChaCha20-Poly1305 per byte, elsewhere more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketSuite {
    /// ChaCha20-Poly1305, ChaCha20 header protection.
    ChaCha20Poly1305,
    /// AES-256-GCM, AES-256 header protection.
    Aes256Gcm,
}

impl PacketSuite {
    /// The suite's bit in a handshake payload's suite set.
    pub fn bit(self) -> u8 {
        match self {
            Self::ChaCha20Poly1305 => 0x01,
            Self::Aes256Gcm => 0x02,
        }
    }

    /// The suite a single bit names.
    pub fn from_bit(bit: u8) -> Option<Self> {
        match bit {
            0x01 => Some(Self::ChaCha20Poly1305),
            0x02 => Some(Self::Aes256Gcm),
            _ => None,
        }
    }

    /// Whether this machine runs AES-GCM in hardware (AES and carry-less
    /// multiply instructions), so that offering AES-256-GCM pays.
    pub fn aes_in_hardware() -> bool {
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        {
            std::arch::is_x86_feature_detected!("aes")
                && std::arch::is_x86_feature_detected!("pclmulqdq")
        }
        #[cfg(target_arch = "aarch64")]
        {
            std::arch::is_aarch64_feature_detected!("aes")
                && std::arch::is_aarch64_feature_detected!("pmull")
        }
        #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
        {
            false
        }
    }

    fn aead(self) -> &'static aead::Algorithm {
        match self {
            Self::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
            Self::Aes256Gcm => &aead::AES_256_GCM,
        }
    }

    fn header(self) -> &'static quic::Algorithm {
        match self {
            Self::ChaCha20Poly1305 => &quic::CHACHA20,
            Self::Aes256Gcm => &quic::AES_256,
        }
    }

    /// Packets one key may seal (RFC 9001 §6.6: 2^23 for AES-GCM; no
    /// practical limit for ChaCha20-Poly1305). quinn updates the key
    /// before it is reached.
    fn confidentiality_limit(self) -> u64 {
        match self {
            Self::ChaCha20Poly1305 => DEFAULT_CONFIDENTIALITY_LIMIT,
            Self::Aes256Gcm => AES_GCM_CONFIDENTIALITY_LIMIT,
        }
    }

    /// Forged packets tolerated per key (RFC 9001 §6.6).
    fn integrity_limit(self) -> u64 {
        match self {
            Self::ChaCha20Poly1305 => INTEGRITY_LIMIT,
            Self::Aes256Gcm => AES_GCM_INTEGRITY_LIMIT,
        }
    }
}

/// Length of every secret in the schedule.
pub(crate) const SECRET_LEN: usize = 32;
/// A traffic secret for one direction.
pub(crate) type Secret = [u8; SECRET_LEN];

/// AEAD tag length (16 for both suites).
const TAG_LEN: usize = 16;
/// Header protection samples 16 bytes (both suites).
const SAMPLE_LEN: usize = 16;
/// Confidentiality limit for ChaCha20-Poly1305 (RFC 9001 §6.6: larger than
/// any packet number space).
const DEFAULT_CONFIDENTIALITY_LIMIT: u64 = 1 << 62;
/// Integrity limit for ChaCha20-Poly1305 (RFC 9001 §6.6).
const INTEGRITY_LIMIT: u64 = 1 << 36;
/// Confidentiality limit for AES-GCM (RFC 9001 §6.6).
const AES_GCM_CONFIDENTIALITY_LIMIT: u64 = 1 << 23;
/// Integrity limit for AES-GCM (RFC 9001 §6.6).
const AES_GCM_INTEGRITY_LIMIT: u64 = 1 << 52;

/// Base salt for Initial secrets; the version number is appended.
const INITIAL_SALT: &[u8] = b"relay-node initial salt 2024-v1";

const LABEL_INITIAL_CLIENT: &[u8] = b"relay-node initial client";
const LABEL_INITIAL_SERVER: &[u8] = b"relay-node initial server";
const LABEL_KEY: &[u8] = b"relay-node quic key";
const LABEL_IV: &[u8] = b"relay-node quic iv";
const LABEL_HP: &[u8] = b"relay-node quic hp";
const LABEL_KU: &[u8] = b"relay-node quic ku";

/// An HKDF output length.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand of `prk` with `info` into a fixed-size array.
pub(crate) fn expand<const N: usize>(prk: &Prk, info: &[&[u8]]) -> Result<[u8; N], Unspecified> {
    let mut out = [0u8; N];
    prk.expand(info, Len(N))?.fill(&mut out)?;
    Ok(out)
}

/// HKDF-Expand of `prk` with `info` into a caller buffer of any length.
pub(crate) fn expand_into(prk: &Prk, info: &[&[u8]], out: &mut [u8]) -> Result<(), Unspecified> {
    prk.expand(info, Len(out.len()))?.fill(out)
}

/// HKDF-Extract then Expand: a secret from input keying material and a salt.
pub(crate) fn derive_secret(salt: &[u8], ikm: &[u8], label: &[u8]) -> Result<Secret, Unspecified> {
    let prk = Salt::new(HKDF_SHA256, salt).extract(ikm);
    expand(&prk, &[label])
}

/// Expands a traffic secret (used as an HKDF PRK) under a label.
fn expand_secret<const N: usize>(secret: &Secret, label: &[u8]) -> Result<[u8; N], Unspecified> {
    expand(&Prk::new_less_safe(HKDF_SHA256, secret), &[label])
}

/// The next generation of a traffic secret (key update).
fn next_secret(secret: &Secret) -> Result<Secret, Unspecified> {
    expand_secret(secret, LABEL_KU)
}

/// Packet protection for one direction, with one [`PacketSuite`].
pub(crate) struct NoisePacketKey {
    key: LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    confidentiality_limit: u64,
    integrity_limit: u64,
}

impl NoisePacketKey {
    /// Derives a packet key of `suite` from a traffic secret (both suites
    /// take a 32-byte key). `confidentiality_limit` overrides the suite's.
    pub(crate) fn from_secret(
        secret: &Secret,
        suite: PacketSuite,
        confidentiality_limit: Option<u64>,
    ) -> Result<Self, Unspecified> {
        let key: [u8; 32] = expand_secret(secret, LABEL_KEY)?;
        let iv = expand_secret(secret, LABEL_IV)?;
        Ok(Self {
            key: LessSafeKey::new(UnboundKey::new(suite.aead(), &key)?),
            iv,
            confidentiality_limit: confidentiality_limit
                .unwrap_or_else(|| suite.confidentiality_limit()),
            integrity_limit: suite.integrity_limit(),
        })
    }

    fn nonce(&self, packet: u64) -> Nonce {
        let mut nonce = self.iv;
        for (n, p) in nonce[aead::NONCE_LEN - 8..]
            .iter_mut()
            .zip(packet.to_be_bytes())
        {
            *n ^= p;
        }
        Nonce::assume_unique_for_key(nonce)
    }
}

impl PacketKey for NoisePacketKey {
    fn encrypt(&self, packet: u64, buf: &mut [u8], header_len: usize) {
        let Some(payload_end) = buf.len().checked_sub(TAG_LEN) else {
            fail_closed(buf, header_len);
            return;
        };
        if header_len > payload_end {
            fail_closed(buf, header_len);
            return;
        }
        let (header, rest) = buf.split_at_mut(header_len);
        let (payload, tag_out) = rest.split_at_mut(payload_end - header_len);
        match self
            .key
            .seal_in_place_separate_tag(self.nonce(packet), Aad::from(&*header), payload)
        {
            Ok(tag) => tag_out.copy_from_slice(tag.as_ref()),
            Err(Unspecified) => fail_closed(buf, header_len),
        }
    }

    fn decrypt(
        &self,
        packet: u64,
        header: &[u8],
        payload: &mut BytesMut,
    ) -> Result<(), CryptoError> {
        let plain_len = self
            .key
            .open_in_place(self.nonce(packet), Aad::from(header), payload.as_mut())?
            .len();
        payload.truncate(plain_len);
        Ok(())
    }

    fn tag_len(&self) -> usize {
        TAG_LEN
    }

    fn confidentiality_limit(&self) -> u64 {
        self.confidentiality_limit
    }

    fn integrity_limit(&self) -> u64 {
        self.integrity_limit
    }
}

/// Never lets plaintext out when sealing is impossible: the payload is wiped
/// (the peer will drop the packet as unauthenticated).
fn fail_closed(buf: &mut [u8], header_len: usize) {
    tracing::error!("packet protection failed; payload wiped");
    let start = header_len.min(buf.len());
    buf[start..].fill(0);
}

/// ChaCha20 header protection (RFC 9001 §5.4) for one direction.
pub(crate) struct NoiseHeaderKey {
    key: quic::HeaderProtectionKey,
}

impl NoiseHeaderKey {
    /// Derives a header key of `suite` from a traffic secret.
    pub(crate) fn from_secret(secret: &Secret, suite: PacketSuite) -> Result<Self, Unspecified> {
        let key: [u8; 32] = expand_secret(secret, LABEL_HP)?;
        Ok(Self {
            key: quic::HeaderProtectionKey::new(suite.header(), &key)?,
        })
    }

    fn mask(&self, pn_offset: usize, packet: &[u8]) -> Option<[u8; 5]> {
        let start = pn_offset.checked_add(4)?;
        let sample = packet.get(start..start.checked_add(SAMPLE_LEN)?)?;
        self.key.new_mask(sample).ok()
    }

    fn apply(mask: &[u8; 5], pn_offset: usize, packet: &mut [u8], pn_len: usize) {
        if let Some(first) = packet.first_mut() {
            let bits = if *first & 0x80 != 0 { 0x0f } else { 0x1f };
            *first ^= mask[0] & bits;
        }
        let end = pn_offset.saturating_add(pn_len).min(packet.len());
        if let Some(pn) = packet.get_mut(pn_offset..end) {
            for (b, m) in pn.iter_mut().zip(&mask[1..]) {
                *b ^= m;
            }
        }
    }
}

impl HeaderKey for NoiseHeaderKey {
    fn decrypt(&self, pn_offset: usize, packet: &mut [u8]) {
        let Some(mask) = self.mask(pn_offset, packet) else {
            return;
        };
        let Some(first) = packet.first().copied() else {
            return;
        };
        let bits = if first & 0x80 != 0 { 0x0f } else { 0x1f };
        let pn_len = usize::from((first ^ (mask[0] & bits)) & 0x03) + 1;
        Self::apply(&mask, pn_offset, packet, pn_len);
    }

    fn encrypt(&self, pn_offset: usize, packet: &mut [u8]) {
        let Some(mask) = self.mask(pn_offset, packet) else {
            return;
        };
        let Some(first) = packet.first().copied() else {
            return;
        };
        let pn_len = usize::from(first & 0x03) + 1;
        Self::apply(&mask, pn_offset, packet, pn_len);
    }

    fn sample_size(&self) -> usize {
        SAMPLE_LEN
    }
}

/// A key that only exists because a derivation failed where quinn allows no
/// error: it seals nothing readable and opens nothing.
pub(crate) struct DeadKey;

impl PacketKey for DeadKey {
    fn encrypt(&self, _packet: u64, buf: &mut [u8], header_len: usize) {
        fail_closed(buf, header_len);
    }

    fn decrypt(&self, _: u64, _: &[u8], _: &mut BytesMut) -> Result<(), CryptoError> {
        Err(CryptoError)
    }

    fn tag_len(&self) -> usize {
        TAG_LEN
    }

    fn confidentiality_limit(&self) -> u64 {
        DEFAULT_CONFIDENTIALITY_LIMIT
    }

    fn integrity_limit(&self) -> u64 {
        0
    }
}

impl HeaderKey for DeadKey {
    fn decrypt(&self, _: usize, _: &mut [u8]) {}

    fn encrypt(&self, _: usize, _: &mut [u8]) {}

    fn sample_size(&self) -> usize {
        SAMPLE_LEN
    }
}

/// The two traffic secrets of one packet space (or 1-RTT generation).
#[derive(Clone)]
pub(crate) struct SpaceSecrets {
    /// Protects what the client sends.
    pub(crate) client: Secret,
    /// Protects what the server sends.
    pub(crate) server: Secret,
    /// The AEAD both directions use.
    pub(crate) suite: PacketSuite,
}

impl SpaceSecrets {
    /// Initial secrets for a version and the client's first DCID.
    pub(crate) fn initial(version: u32, dst_cid: &ConnectionId) -> Result<Self, Unspecified> {
        let mut salt = INITIAL_SALT.to_vec();
        salt.extend_from_slice(&version.to_be_bytes());
        let prk = Salt::new(HKDF_SHA256, &salt).extract(dst_cid);
        Ok(Self {
            client: expand(&prk, &[LABEL_INITIAL_CLIENT])?,
            server: expand(&prk, &[LABEL_INITIAL_SERVER])?,
            suite: PacketSuite::ChaCha20Poly1305,
        })
    }

    fn local_remote(&self, side: Side) -> (&Secret, &Secret) {
        match side {
            Side::Client => (&self.client, &self.server),
            Side::Server => (&self.server, &self.client),
        }
    }

    /// Full key set (header + packet) for our side.
    pub(crate) fn keys(&self, side: Side, limit: Option<u64>) -> Result<Keys, Unspecified> {
        let (local, remote) = self.local_remote(side);
        Ok(Keys {
            header: KeyPair {
                local: Box::new(NoiseHeaderKey::from_secret(local, self.suite)?),
                remote: Box::new(NoiseHeaderKey::from_secret(remote, self.suite)?),
            },
            packet: self.packet_keys(side, limit)?,
        })
    }

    /// Packet keys only (key updates keep the header keys).
    pub(crate) fn packet_keys(
        &self,
        side: Side,
        limit: Option<u64>,
    ) -> Result<KeyPair<Box<dyn PacketKey>>, Unspecified> {
        let (local, remote) = self.local_remote(side);
        Ok(KeyPair {
            local: Box::new(NoisePacketKey::from_secret(local, self.suite, limit)?),
            remote: Box::new(NoisePacketKey::from_secret(remote, self.suite, limit)?),
        })
    }

    /// The secrets of the next key phase.
    pub(crate) fn next(&self) -> Result<Self, Unspecified> {
        Ok(Self {
            client: next_secret(&self.client)?,
            server: next_secret(&self.server)?,
            suite: self.suite,
        })
    }
}

/// Keys that refuse everything, for the unreachable derivation failure.
pub(crate) fn dead_keys() -> Keys {
    Keys {
        header: KeyPair {
            local: Box::new(DeadKey),
            remote: Box::new(DeadKey),
        },
        packet: dead_packet_keys(),
    }
}

/// Packet keys that refuse everything.
pub(crate) fn dead_packet_keys() -> KeyPair<Box<dyn PacketKey>> {
    KeyPair {
        local: Box::new(DeadKey),
        remote: Box::new(DeadKey),
    }
}

/// Initial keys for a side, never failing (see [`DeadKey`]).
pub(crate) fn initial_keys(version: u32, dst_cid: &ConnectionId, side: Side) -> Keys {
    match SpaceSecrets::initial(version, dst_cid).and_then(|s| s.keys(side, None)) {
        Ok(keys) => keys,
        Err(Unspecified) => {
            tracing::error!("initial key derivation failed");
            dead_keys()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const SUITES: [PacketSuite; 2] = [PacketSuite::ChaCha20Poly1305, PacketSuite::Aes256Gcm];

    fn pair(suite: PacketSuite) -> (NoisePacketKey, NoisePacketKey) {
        let secret = [7u8; 32];
        (
            NoisePacketKey::from_secret(&secret, suite, None).unwrap(),
            NoisePacketKey::from_secret(&secret, suite, None).unwrap(),
        )
    }

    fn sealed(key: &NoisePacketKey, pn: u64, header: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut buf = header.to_vec();
        buf.extend_from_slice(payload);
        buf.extend_from_slice(&[0u8; TAG_LEN]);
        key.encrypt(pn, &mut buf, header.len());
        buf
    }

    #[test]
    fn seal_open_roundtrip() {
        for suite in SUITES {
            let (tx, rx) = pair(suite);
            let header = [0x40u8, 1, 2, 3, 4];
            let payload = b"hello over noise".to_vec();
            let buf = sealed(&tx, 42, &header, &payload);
            assert_ne!(
                &buf[header.len()..header.len() + payload.len()],
                &payload[..]
            );
            let mut body = BytesMut::from(&buf[header.len()..]);
            rx.decrypt(42, &header, &mut body).unwrap();
            assert_eq!(&body[..], &payload[..]);
        }
    }

    #[test]
    fn suites_do_not_interoperate_and_have_their_limits() {
        let (chacha, _) = pair(PacketSuite::ChaCha20Poly1305);
        let (_, aes) = pair(PacketSuite::Aes256Gcm);
        let buf = sealed(&chacha, 1, &[0x40], b"x");
        let mut body = BytesMut::from(&buf[1..]);
        assert!(aes.decrypt(1, &[0x40], &mut body).is_err());
        assert_eq!(aes.confidentiality_limit(), 1 << 23);
        assert_eq!(aes.integrity_limit(), 1 << 52);
        assert_eq!(chacha.integrity_limit(), 1 << 36);
        for suite in SUITES {
            assert_eq!(PacketSuite::from_bit(suite.bit()), Some(suite));
        }
        assert_eq!(PacketSuite::from_bit(0x03), None);
    }

    #[test]
    fn tamper_fails() {
        let (tx, rx) = pair(PacketSuite::ChaCha20Poly1305);
        let header = [0x40u8, 9, 9];
        let buf = sealed(&tx, 7, &header, b"payload bytes");
        for i in 0..buf.len() - header.len() {
            let mut body = BytesMut::from(&buf[header.len()..]);
            body[i] ^= 0x01;
            assert!(rx.decrypt(7, &header, &mut body).is_err(), "byte {i}");
        }
        let mut body = BytesMut::from(&buf[header.len()..]);
        assert!(rx.decrypt(7, &[0x40, 9, 8], &mut body).is_err());
        let mut body = BytesMut::from(&buf[header.len()..]);
        assert!(rx.decrypt(8, &header, &mut body).is_err());
    }

    #[test]
    fn short_buffer_never_leaks() {
        let (tx, _) = pair(PacketSuite::Aes256Gcm);
        let mut buf = vec![0x40, 0xaa, 0xbb];
        tx.encrypt(1, &mut buf, 1);
        assert_eq!(buf, vec![0x40, 0, 0]);
    }

    #[test]
    fn header_protection_roundtrip() {
        for suite in SUITES {
            let key = NoiseHeaderKey::from_secret(&[3u8; 32], suite).unwrap();
            let mut packet: Vec<u8> = (0..40u8).collect();
            packet[0] = 0x41; // short header, 2-byte packet number
            let orig = packet.clone();
            key.encrypt(5, &mut packet);
            assert_ne!(packet, orig);
            key.decrypt(5, &mut packet);
            assert_eq!(packet, orig);
            // A too-short packet is left alone rather than panicking.
            let mut tiny = vec![0x41, 1, 2];
            key.encrypt(1, &mut tiny);
            key.decrypt(1, &mut tiny);
            assert_eq!(tiny, vec![0x41, 1, 2]);
        }
    }

    #[test]
    fn key_update_changes_keys() {
        let s = SpaceSecrets {
            client: [1; 32],
            server: [2; 32],
            suite: PacketSuite::Aes256Gcm,
        };
        let n = s.next().unwrap();
        assert_ne!(n.client, s.client);
        assert_ne!(n.server, s.server);
        assert_eq!(n.suite, s.suite, "a key update keeps the suite");
        let old = NoisePacketKey::from_secret(&s.client, s.suite, None).unwrap();
        let new = NoisePacketKey::from_secret(&n.client, n.suite, None).unwrap();
        let buf = sealed(&old, 1, &[0x40], b"x");
        let mut body = BytesMut::from(&buf[1..]);
        assert!(new.decrypt(1, &[0x40], &mut body).is_err());
    }

    #[test]
    fn initial_keys_depend_on_version_and_cid() {
        let cid = ConnectionId::new(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let a = SpaceSecrets::initial(1, &cid).unwrap();
        let b = SpaceSecrets::initial(2, &cid).unwrap();
        let c = SpaceSecrets::initial(1, &ConnectionId::new(&[9; 8])).unwrap();
        assert_ne!(a.client, b.client);
        assert_ne!(a.client, c.client);
        assert_ne!(a.client, a.server);
    }
}
