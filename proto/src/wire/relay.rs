//! Relay frames: how a relayed QUIC packet travels on the UDP port.
//!
//! ```text
//! relay-send (client -> relay): [0x01][destination NodeId, 32][seq, 8][tag, 16][inner QUIC packet]
//! relay-recv (relay -> client): [0x02][source NodeId, 32][seq, 8][tag, 16][inner QUIC packet]
//! ```
//!
//! The inner packet is one QUIC packet of the end-to-end connection between
//! the two clients, already encrypted by them: a relay never sees plaintext.
//! Its first byte is a QUIC first byte (`>= 0x40`), and it is at most
//! [`MAX_PACKET`] bytes so that a frame ([`HEADER_LEN`] more) fits a UDP
//! datagram on a 1500-byte MTU IPv4 path (1472 bytes of payload).
//!
//! ## Authentication
//!
//! Every frame is authenticated per client: `seq` (big-endian) numbers the
//! frames one sender sends under one key, and `tag` is a keyed MAC with
//! the key of that direction of the client's connection to the relay
//! (derived from the connection's `export_keying_material`; relay-node
//! uses AES-128-GCM with an empty plaintext, nonce `0^4 || seq`). The MAC
//! covers the bytes [`auth_input`] lays out:
//!
//! ```text
//! type, NodeId, seq (the first 41 bytes) || packet length (u16 BE)
//!   || the packet's first 32 bytes || its last 16 bytes
//! ```
//!
//! (for packets shorter than 48 bytes the two ranges overlap). The last
//! 16 bytes of a QUIC packet are its end-to-end AEAD tag and the first
//! ones its header, so every byte in between is authenticated by the
//! inner connection, which the destination checks. Receivers reject a
//! `seq` they have seen (sliding window), so a frame is forwarded at most
//! once. Reason for not covering every byte: the relay checks one tag and
//! makes one per forwarded frame, and a MAC over 1200 bytes would cost
//! about 20 % of its per-frame CPU; this one measured about 6 %
//! (docs/PERFORMANCE.md, section 4).
//!
//! [`RelayFrame::parse`] is total: every input gives a frame or a typed
//! [`RelayFrameError`]. The NodeId bytes are not validated while parsing
//! (that costs a curve point decompression per packet); relays look them up
//! as raw bytes among their authenticated clients, and
//! [`RelayFrame::peer_id`] validates when a real [`NodeId`] is needed.

use thiserror::Error;

use crate::NodeId;

/// First byte of a relay-send frame (client -> relay).
pub const RELAY_SEND: u8 = 0x01;
/// First byte of a relay-recv frame (relay -> client).
pub const RELAY_RECV: u8 = 0x02;
/// Offset of the sequence number.
pub const SEQ_OFFSET: usize = 33;
/// Offset of the tag.
pub const TAG_OFFSET: usize = 41;
/// Length of the tag.
pub const TAG_LEN: usize = 16;
/// Bytes before the inner packet: type byte, NodeId, seq and tag.
pub const HEADER_LEN: usize = TAG_OFFSET + TAG_LEN;
/// Bytes of the packet's start the tag covers.
pub const AUTH_HEAD: usize = 32;
/// Bytes of the packet's end the tag covers.
pub const AUTH_TAIL: usize = 16;
/// Most bytes [`auth_input`] writes.
pub const AUTH_INPUT_MAX: usize = TAG_OFFSET + 2 + AUTH_HEAD + AUTH_TAIL;
/// Largest UDP payload a frame may fill (1500-byte IPv4 MTU).
pub const MAX_FRAME: usize = 1472;
/// Largest inner packet a frame may carry.
pub const MAX_PACKET: usize = MAX_FRAME - HEADER_LEN;

/// Which way a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayFrameKind {
    /// Client to relay; the NodeId names the destination.
    Send,
    /// Relay to client; the NodeId names the source.
    Recv,
}

impl RelayFrameKind {
    /// The frame's first byte.
    pub fn type_byte(self) -> u8 {
        match self {
            Self::Send => RELAY_SEND,
            Self::Recv => RELAY_RECV,
        }
    }
}

/// A parsed relay frame, borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayFrame<'a> {
    /// Direction.
    pub kind: RelayFrameKind,
    /// Destination (send) or source (recv) NodeId, unvalidated bytes.
    pub peer: [u8; 32],
    /// The sender's frame number under its key.
    pub seq: u64,
    /// The MAC (see the module docs).
    pub tag: [u8; TAG_LEN],
    /// The inner QUIC packet.
    pub packet: &'a [u8],
}

/// Why a datagram is not a relay frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RelayFrameError {
    /// Zero bytes.
    #[error("empty datagram")]
    Empty,
    /// The first byte is not a relay frame type.
    #[error("type byte {0:#04x} is not a relay frame")]
    UnknownType(u8),
    /// Shorter than the header.
    #[error("{0} bytes is shorter than the {HEADER_LEN}-byte relay header")]
    Truncated(usize),
    /// No inner packet.
    #[error("no inner packet")]
    EmptyPacket,
    /// The inner packet does not start like a QUIC packet.
    #[error("inner packet starts with {0:#04x}, not a QUIC first byte")]
    NotQuic(u8),
    /// The inner packet is longer than [`MAX_PACKET`].
    #[error("inner packet of {0} bytes exceeds {MAX_PACKET}")]
    TooLong(usize),
    /// The NodeId bytes are not a valid key.
    #[error("invalid NodeId")]
    InvalidNodeId,
    /// The output buffer is too small.
    #[error("buffer of {have} bytes cannot hold a {need}-byte frame")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}

impl RelayFrameError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        "invalid-relay-frame"
    }
}

/// Whether `first` is the first byte of a relay frame.
pub fn is_relay_frame(first: u8) -> bool {
    first == RELAY_SEND || first == RELAY_RECV
}

impl<'a> RelayFrame<'a> {
    /// A frame to emit, with seq 0 and an all-zero tag (see
    /// [`Self::with_auth`]).
    pub fn new(kind: RelayFrameKind, peer: &NodeId, packet: &'a [u8]) -> Self {
        Self {
            kind,
            peer: *peer.as_bytes(),
            seq: 0,
            tag: [0; TAG_LEN],
            packet,
        }
    }

    /// The same frame with this sequence number and tag.
    pub fn with_auth(self, seq: u64, tag: [u8; TAG_LEN]) -> Self {
        Self { seq, tag, ..self }
    }

    /// The first [`TAG_OFFSET`] bytes: type, NodeId, seq.
    pub fn auth_head(&self) -> [u8; TAG_OFFSET] {
        let mut head = [0u8; TAG_OFFSET];
        head[0] = self.kind.type_byte();
        head[1..SEQ_OFFSET].copy_from_slice(&self.peer);
        head[SEQ_OFFSET..].copy_from_slice(&self.seq.to_be_bytes());
        head
    }

    /// Parses one datagram.
    pub fn parse(data: &'a [u8]) -> Result<Self, RelayFrameError> {
        let first = *data.first().ok_or(RelayFrameError::Empty)?;
        let kind = match first {
            RELAY_SEND => RelayFrameKind::Send,
            RELAY_RECV => RelayFrameKind::Recv,
            other => return Err(RelayFrameError::UnknownType(other)),
        };
        let truncated = || RelayFrameError::Truncated(data.len());
        let (Some(id), Some(seq), Some(tag), Some(packet)) = (
            data.get(1..SEQ_OFFSET),
            data.get(SEQ_OFFSET..TAG_OFFSET),
            data.get(TAG_OFFSET..HEADER_LEN),
            data.get(HEADER_LEN..),
        ) else {
            return Err(truncated());
        };
        let peer: [u8; 32] = id.try_into().map_err(|_| truncated())?;
        let seq = u64::from_be_bytes(seq.try_into().map_err(|_| truncated())?);
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| truncated())?;
        check_packet(packet)?;
        Ok(Self {
            kind,
            peer,
            seq,
            tag,
            packet,
        })
    }

    /// The NodeId, validated.
    pub fn peer_id(&self) -> Result<NodeId, RelayFrameError> {
        NodeId::from_bytes(&self.peer).map_err(|_| RelayFrameError::InvalidNodeId)
    }

    /// Length of the emitted frame.
    pub fn len(&self) -> usize {
        HEADER_LEN + self.packet.len()
    }

    /// Whether the frame is empty (never: it always has a header).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the frame to the start of `out`; returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, RelayFrameError> {
        check_packet(self.packet)?;
        let need = self.len();
        let Some(dst) = out.get_mut(..need) else {
            return Err(RelayFrameError::BufferTooSmall {
                need,
                have: out.len(),
            });
        };
        dst[..TAG_OFFSET].copy_from_slice(&self.auth_head());
        dst[TAG_OFFSET..HEADER_LEN].copy_from_slice(&self.tag);
        dst[HEADER_LEN..].copy_from_slice(self.packet);
        Ok(need)
    }

    /// Appends the frame to `out`.
    pub fn emit_to_vec(&self, out: &mut Vec<u8>) -> Result<(), RelayFrameError> {
        check_packet(self.packet)?;
        out.reserve(self.len());
        out.extend_from_slice(&self.auth_head());
        out.extend_from_slice(&self.tag);
        out.extend_from_slice(self.packet);
        Ok(())
    }
}

/// Appends just a header with an all-zero tag; the caller appends the
/// inner packet (which must satisfy the rules [`RelayFrame::parse`]
/// checks) and then writes the tag at [`TAG_OFFSET`] from the header's
/// start.
pub fn emit_header(kind: RelayFrameKind, peer: &[u8; 32], seq: u64, out: &mut Vec<u8>) {
    out.push(kind.type_byte());
    out.extend_from_slice(peer);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&[0; TAG_LEN]);
}

/// Lays out the bytes the tag covers (see the module docs) for a frame
/// whose first [`TAG_OFFSET`] bytes are `head` and whose inner packet is
/// `packet`; returns how many bytes of `out` it filled.
pub fn auth_input(head: &[u8; TAG_OFFSET], packet: &[u8], out: &mut [u8; AUTH_INPUT_MAX]) -> usize {
    // A packet is at most MAX_PACKET bytes, so its length fits in a u16.
    let len = u16::try_from(packet.len()).unwrap_or(u16::MAX);
    let first = packet.get(..AUTH_HEAD.min(packet.len())).unwrap_or(&[]);
    let last = packet
        .get(packet.len().saturating_sub(AUTH_TAIL)..)
        .unwrap_or(&[]);
    let mut n = 0;
    for part in [&head[..], &len.to_be_bytes()[..], first, last] {
        if let Some(dst) = out.get_mut(n..n + part.len()) {
            dst.copy_from_slice(part);
            n += part.len();
        }
    }
    n
}

fn check_packet(packet: &[u8]) -> Result<(), RelayFrameError> {
    let first = *packet.first().ok_or(RelayFrameError::EmptyPacket)?;
    if first < 0x40 {
        return Err(RelayFrameError::NotQuic(first));
    }
    if packet.len() > MAX_PACKET {
        return Err(RelayFrameError::TooLong(packet.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;
    use proptest::prelude::*;

    #[test]
    fn roundtrip() {
        let id = SecretKey::generate().node_id();
        let packet = [0x41, 1, 2, 3];
        let frame = RelayFrame::new(RelayFrameKind::Send, &id, &packet);
        let frame = frame.with_auth(0x0102_0304_0506_0708, [9; TAG_LEN]);
        let mut buf = [0u8; 80];
        let n = frame.emit(&mut buf).unwrap();
        assert_eq!(n, HEADER_LEN + 4);
        assert_eq!(buf[0], RELAY_SEND);
        let parsed = RelayFrame::parse(&buf[..n]).unwrap();
        assert_eq!(parsed, frame);
        assert_eq!(parsed.peer_id().unwrap(), id);
        let mut v = Vec::new();
        RelayFrame::new(RelayFrameKind::Recv, &id, &packet)
            .emit_to_vec(&mut v)
            .unwrap();
        assert_eq!(v[0], RELAY_RECV);
        assert_eq!(&v[1..SEQ_OFFSET], &buf[1..SEQ_OFFSET]);
        assert_eq!(&buf[SEQ_OFFSET..TAG_OFFSET], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&buf[TAG_OFFSET..HEADER_LEN], &[9; TAG_LEN]);
        assert_eq!(&v[HEADER_LEN..], &packet);
        let mut h = Vec::new();
        emit_header(
            RelayFrameKind::Send,
            id.as_bytes(),
            0x0102_0304_0506_0708,
            &mut h,
        );
        assert_eq!(&h[..TAG_OFFSET], &buf[..TAG_OFFSET]);
        assert_eq!(h.len(), HEADER_LEN);
    }

    #[test]
    fn auth_input_covers_header_length_and_both_ends() {
        let id = SecretKey::generate().node_id();
        let packet: Vec<u8> = (0..200u8).map(|b| b | 0x40).collect();
        let frame = RelayFrame::new(RelayFrameKind::Send, &id, &packet).with_auth(7, [0; TAG_LEN]);
        let mut out = [0u8; AUTH_INPUT_MAX];
        let n = auth_input(&frame.auth_head(), frame.packet, &mut out);
        assert_eq!(n, AUTH_INPUT_MAX);
        assert_eq!(&out[..TAG_OFFSET], &frame.auth_head());
        assert_eq!(&out[TAG_OFFSET..TAG_OFFSET + 2], &200u16.to_be_bytes());
        assert_eq!(&out[TAG_OFFSET + 2..TAG_OFFSET + 34], &packet[..32]);
        assert_eq!(&out[TAG_OFFSET + 34..], &packet[184..]);
        // Short packets: both ranges are the whole packet.
        let short = [0x41u8; 5];
        let n = auth_input(&frame.auth_head(), &short, &mut out);
        assert_eq!(n, TAG_OFFSET + 2 + 5 + 5);
    }

    #[test]
    fn typed_errors() {
        assert_eq!(RelayFrame::parse(&[]), Err(RelayFrameError::Empty));
        assert_eq!(
            RelayFrame::parse(&[0x10, 0]),
            Err(RelayFrameError::UnknownType(0x10))
        );
        assert_eq!(
            RelayFrame::parse(&[0x01; 20]),
            Err(RelayFrameError::Truncated(20))
        );
        assert_eq!(
            RelayFrame::parse(&[0x01; 56]),
            Err(RelayFrameError::Truncated(56))
        );
        assert_eq!(
            RelayFrame::parse(&[0x01; HEADER_LEN]),
            Err(RelayFrameError::EmptyPacket)
        );
        assert_eq!(
            RelayFrame::parse(&[0x01; HEADER_LEN + 1]),
            Err(RelayFrameError::NotQuic(0x01))
        );
        let mut long = vec![0x02u8; HEADER_LEN];
        long.extend(std::iter::repeat_n(0x40, MAX_PACKET + 1));
        assert_eq!(
            RelayFrame::parse(&long),
            Err(RelayFrameError::TooLong(MAX_PACKET + 1))
        );
        // y = 2 is not on the curve.
        let mut bad = vec![0x01, 2];
        bad.extend([0u8; 31 + 8 + TAG_LEN]);
        bad.push(0x40);
        let frame = RelayFrame::parse(&bad).unwrap();
        assert_eq!(frame.peer_id(), Err(RelayFrameError::InvalidNodeId));
        let id = SecretKey::generate().node_id();
        let small = RelayFrame::new(RelayFrameKind::Send, &id, &[0x40; 10]).emit(&mut [0u8; 40]);
        assert_eq!(
            small,
            Err(RelayFrameError::BufferTooSmall {
                need: HEADER_LEN + 10,
                have: 40
            })
        );
    }

    proptest! {
        #[test]
        fn parse_is_total(data in proptest::collection::vec(any::<u8>(), 0..1600)) {
            if let Ok(frame) = RelayFrame::parse(&data) {
                let mut out = Vec::new();
                frame.emit_to_vec(&mut out).unwrap();
                prop_assert_eq!(out, data);
            }
        }
    }
}
