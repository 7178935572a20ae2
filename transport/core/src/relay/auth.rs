//! Per-client relay frame authentication, sans-IO.
//!
//! Each client<->relay connection yields two keys from its
//! `export_keying_material` ([`FrameKeys::from_exporter`]): one for
//! relay-send frames (client to relay), one for relay-recv frames (relay
//! to client). A sender stamps each frame with the next sequence number
//! and a tag ([`Sealer`]); a receiver checks the tag and rejects a
//! sequence number it has seen ([`Opener`], a sliding window of
//! [`WINDOW`] frames). The tag is AES-128-GCM over the bytes
//! `relay_proto::wire::relay::auth_input` lays out, with an empty
//! plaintext and the nonce `0^4 || seq`: a sender never reuses a sequence
//! number under one key (each sealer counts up from a random start below
//! 2^62), so a nonce is never reused. An on-path attacker
//! who can spoof a client's address still cannot make the relay forward a
//! frame the client did not send, nor one it sent twice.

use std::sync::atomic::{AtomicU64, Ordering};

use relay_proto::wire::relay::{
    self, RelayFrame, AUTH_INPUT_MAX, HEADER_LEN, SEQ_OFFSET, TAG_LEN, TAG_OFFSET,
};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use thiserror::Error;

/// Exporter label of the frame keys.
const LABEL: &[u8] = b"relay-node relay frame keys v1";
/// Exporter context of the client-to-relay key.
const CONTEXT_SEND: &[u8] = b"client to relay";
/// Exporter context of the relay-to-client key.
const CONTEXT_RECV: &[u8] = b"relay to client";
/// Key length (AES-128).
const KEY_LEN: usize = 16;
/// Sequence numbers a receiver remembers behind the highest seen.
pub const WINDOW: u64 = 128;

/// Why a frame failed authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AuthError {
    /// The tag does not match.
    #[error("bad-tag: the frame's MAC does not verify")]
    BadTag,
    /// The sequence number was seen already, or is too old to tell.
    #[error("replay: frame {0} was seen already or is older than the window")]
    Replay(u64),
    /// The frame buffer is shorter than a header.
    #[error("truncated: no room for a relay header")]
    Truncated,
}

impl AuthError {
    /// Stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadTag => "bad-tag",
            Self::Replay(_) => "replay",
            Self::Truncated => "truncated",
        }
    }
}

/// The two frame keys of one client<->relay connection.
#[derive(Clone, PartialEq, Eq)]
pub struct FrameKeys {
    send: [u8; KEY_LEN],
    recv: [u8; KEY_LEN],
}

impl std::fmt::Debug for FrameKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameKeys(..)")
    }
}

impl FrameKeys {
    /// The keys of a connection, from its `export_keying_material`
    /// (`export(output, label, context)`), or `None` when that fails
    /// (before the handshake finished). The async side passes the
    /// connection's exporter (`relay_transport::relay::ConnectionKeys`).
    pub fn from_exporter<E>(
        mut export: impl FnMut(&mut [u8], &[u8], &[u8]) -> Result<(), E>,
    ) -> Option<Self> {
        let mut send = [0u8; KEY_LEN];
        let mut recv = [0u8; KEY_LEN];
        export(&mut send, LABEL, CONTEXT_SEND).ok()?;
        export(&mut recv, LABEL, CONTEXT_RECV).ok()?;
        Some(Self { send, recv })
    }

    /// Keys from raw bytes (tests and benchmarks).
    pub fn from_bytes(send: [u8; KEY_LEN], recv: [u8; KEY_LEN]) -> Self {
        Self { send, recv }
    }

    /// The client's side: seals relay-send frames, opens relay-recv ones.
    /// `None` only if the AEAD cannot be set up (never with a 16-byte key).
    pub fn client(&self) -> Option<(Sealer, Opener)> {
        Some((Sealer::new(&self.send)?, Opener::new(&self.recv)?))
    }

    /// The relay's side: opens relay-send frames, seals relay-recv ones.
    pub fn relay(&self) -> Option<(Sealer, Opener)> {
        Some((Sealer::new(&self.recv)?, Opener::new(&self.send)?))
    }
}

fn aead_key(key: &[u8; KEY_LEN]) -> Option<LessSafeKey> {
    UnboundKey::new(&aead::AES_128_GCM, key)
        .ok()
        .map(LessSafeKey::new)
}

fn nonce(seq: u64) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&seq.to_be_bytes());
    Nonce::assume_unique_for_key(nonce)
}

/// The tag of a frame: `head` is its first [`TAG_OFFSET`] bytes.
fn tag(key: &LessSafeKey, head: &[u8; TAG_OFFSET], packet: &[u8], seq: u64) -> [u8; TAG_LEN] {
    let mut input = [0u8; AUTH_INPUT_MAX];
    let n = relay::auth_input(head, packet, &mut input);
    let mut out = [0u8; TAG_LEN];
    let aad = Aad::from(input.get(..n).unwrap_or(&input));
    if let Ok(t) = key.seal_in_place_separate_tag(nonce(seq), aad, &mut []) {
        out.copy_from_slice(t.as_ref());
    }
    out
}

/// Whether `frame`'s tag verifies (ring compares in constant time: an
/// empty ciphertext followed by the tag opens only if the tag is right).
fn verify(key: &LessSafeKey, frame: &RelayFrame<'_>) -> bool {
    let mut input = [0u8; AUTH_INPUT_MAX];
    let n = relay::auth_input(&frame.auth_head(), frame.packet, &mut input);
    let aad = Aad::from(input.get(..n).unwrap_or(&input));
    let mut sealed = frame.tag;
    key.open_in_place(nonce(frame.seq), aad, &mut sealed)
        .is_ok()
}

/// Stamps frames with sequence numbers and tags. Thread-safe; a sequence
/// number is never handed out twice.
pub struct Sealer {
    key: LessSafeKey,
    next: AtomicU64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    fn new(key: &[u8; KEY_LEN]) -> Option<Self> {
        // A random start below 2^62: should the same keys ever get a new
        // sealer (a relay forgotten and offered again on the same
        // connection), its numbers do not repeat the old one's (a repeated
        // GCM nonce under one key would leak the MAC key), and they never
        // wrap.
        Some(Self {
            key: aead_key(key)?,
            next: AtomicU64::new(rand::random::<u64>() >> 2),
        })
    }

    /// Seals the frame that fills `frame` (header from
    /// `relay::emit_header`, then the packet): writes the next sequence
    /// number and the tag into its header.
    pub fn seal(&self, frame: &mut [u8]) -> Result<(), AuthError> {
        if frame.len() < HEADER_LEN {
            return Err(AuthError::Truncated);
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let (header, packet) = frame.split_at_mut(HEADER_LEN);
        header[SEQ_OFFSET..TAG_OFFSET].copy_from_slice(&seq.to_be_bytes());
        let mut head = [0u8; TAG_OFFSET];
        head.copy_from_slice(&header[..TAG_OFFSET]);
        let t = tag(&self.key, &head, packet, seq);
        header[TAG_OFFSET..].copy_from_slice(&t);
        Ok(())
    }
}

/// Checks frames: tag, then sequence number against the window.
pub struct Opener {
    key: LessSafeKey,
    window: ReplayWindow,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Opener {
    fn new(key: &[u8; KEY_LEN]) -> Option<Self> {
        Some(Self {
            key: aead_key(key)?,
            window: ReplayWindow::default(),
        })
    }

    /// Accepts `frame` once: its tag must verify and its sequence number
    /// be new.
    pub fn open(&mut self, frame: &RelayFrame<'_>) -> Result<(), AuthError> {
        if !self.window.is_new(frame.seq) {
            return Err(AuthError::Replay(frame.seq));
        }
        if !verify(&self.key, frame) {
            return Err(AuthError::BadTag);
        }
        self.window.mark(frame.seq);
        Ok(())
    }
}

/// Which sequence numbers were seen: the highest, and a bitmap of the
/// [`WINDOW`] below it.
#[derive(Debug, Default, Clone, Copy)]
struct ReplayWindow {
    /// Highest seen plus one (0: none yet).
    top: u64,
    /// Bit `i` set: `top - 1 - i` was seen.
    seen: u128,
}

impl ReplayWindow {
    fn is_new(&self, seq: u64) -> bool {
        // `top` is the highest seen plus one: u64::MAX has no room above it
        // (a sender starts below 2^62 and never gets there; a peer's frame
        // numbered so is refused as a replay rather than overflowing).
        if seq == u64::MAX {
            return false;
        }
        if seq >= self.top {
            return true;
        }
        let behind = self.top - 1 - seq;
        behind < WINDOW && self.seen & (1u128 << behind) == 0
    }

    fn mark(&mut self, seq: u64) {
        if seq >= self.top {
            // Saturating: `open` marks only what `is_new` took (never
            // u64::MAX), but a mark must not panic either way.
            let shift = (seq - self.top).saturating_add(1);
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.top = seq.saturating_add(1);
        } else {
            let behind = self.top - 1 - seq;
            if behind < WINDOW {
                self.seen |= 1u128 << behind;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use relay_proto::wire::relay::{emit_header, RelayFrameKind};
    use relay_proto::SecretKey;

    use super::*;

    fn keys() -> FrameKeys {
        FrameKeys::from_bytes([1; KEY_LEN], [2; KEY_LEN])
    }

    fn frame(sealer: &Sealer, kind: RelayFrameKind, packet: &[u8]) -> Vec<u8> {
        let peer = SecretKey::from_bytes(&[3; 32]).node_id();
        let mut out = Vec::new();
        emit_header(kind, peer.as_bytes(), 0, &mut out);
        out.extend_from_slice(packet);
        sealer.seal(&mut out).unwrap();
        out
    }

    #[test]
    fn both_directions_verify_once() {
        let k = keys();
        let (c_seal, mut c_open) = k.client().unwrap();
        let (r_seal, mut r_open) = k.relay().unwrap();
        let packet = vec![0x41u8; 1200];
        let up = frame(&c_seal, RelayFrameKind::Send, &packet);
        let parsed = RelayFrame::parse(&up).unwrap();
        r_open.open(&parsed).unwrap();
        assert_eq!(r_open.open(&parsed), Err(AuthError::Replay(parsed.seq)));
        let down = frame(&r_seal, RelayFrameKind::Recv, &packet);
        c_open.open(&RelayFrame::parse(&down).unwrap()).unwrap();
        // A client's own key does not open what it sent.
        let mut c_open2 = k.client().unwrap().1;
        let second = frame(&c_seal, RelayFrameKind::Send, &packet);
        assert_eq!(
            c_open2.open(&RelayFrame::parse(&second).unwrap()),
            Err(AuthError::BadTag)
        );
    }

    #[test]
    fn any_change_to_covered_bytes_fails() {
        let k = keys();
        let (seal, _) = k.client().unwrap();
        let packet: Vec<u8> = (0..300u16).map(|i| (i as u8) | 0x40).collect();
        let good = frame(&seal, RelayFrameKind::Send, &packet);
        let covered = (0..HEADER_LEN)
            .chain(HEADER_LEN..HEADER_LEN + 32)
            .chain(good.len() - 16..good.len());
        for i in covered {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            let Ok(parsed) = RelayFrame::parse(&bad) else {
                continue;
            };
            let mut open = k.relay().unwrap().1;
            assert!(open.open(&parsed).is_err(), "byte {i} is not covered");
        }
        // Truncating or extending changes the length, which is covered.
        let mut open = k.relay().unwrap().1;
        let cut = &good[..good.len() - 1];
        assert!(open.open(&RelayFrame::parse(cut).unwrap()).is_err());
        // Another connection's keys reject it.
        let other = FrameKeys::from_bytes([9; KEY_LEN], [2; KEY_LEN]);
        assert_eq!(
            other
                .relay()
                .unwrap()
                .1
                .open(&RelayFrame::parse(&good).unwrap()),
            Err(AuthError::BadTag)
        );
        let mut open = k.relay().unwrap().1;
        open.open(&RelayFrame::parse(&good).unwrap()).unwrap();
    }

    #[test]
    fn window_takes_reordering_and_rejects_old_and_seen() {
        let mut w = ReplayWindow::default();
        assert!(w.is_new(0));
        w.mark(5);
        assert!(w.is_new(0) && w.is_new(4) && !w.is_new(5) && w.is_new(6));
        w.mark(3);
        assert!(!w.is_new(3));
        w.mark(5 + WINDOW);
        assert!(!w.is_new(5), "now outside the window");
        assert!(w.is_new(6 + 1));
        assert!(!w.is_new(5 + WINDOW));
        w.mark(1000 + 10 * WINDOW);
        assert!(!w.is_new(1000));
        assert!(w.is_new(1000 + 10 * WINDOW - 1));
    }

    #[test]
    fn window_refuses_the_last_sequence_number_without_overflowing() {
        let mut w = ReplayWindow::default();
        assert!(!w.is_new(u64::MAX));
        w.mark(u64::MAX - 1);
        assert!(!w.is_new(u64::MAX - 1) && !w.is_new(u64::MAX));
        assert!(w.is_new(u64::MAX - 2));
    }

    #[test]
    fn sealer_never_repeats_a_sequence_number() {
        let (seal, _) = keys().client().unwrap();
        let seqs: Vec<u64> = (0..5)
            .map(|_| {
                RelayFrame::parse(&frame(&seal, RelayFrameKind::Send, &[0x40]))
                    .unwrap()
                    .seq
            })
            .collect();
        let first = seqs[0];
        assert!(first < 1 << 62);
        assert_eq!(seqs, (first..first + 5).collect::<Vec<_>>());
        let (again, _) = keys().client().unwrap();
        let other = RelayFrame::parse(&frame(&again, RelayFrameKind::Send, &[0x40]))
            .unwrap()
            .seq;
        assert!(!seqs.contains(&other), "a new sealer starts elsewhere");
        assert_eq!(seal.seal(&mut [0u8; 10]), Err(AuthError::Truncated));
    }
}
