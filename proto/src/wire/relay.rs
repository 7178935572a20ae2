//! Relay frames: how a relayed QUIC packet travels on the UDP port.
//!
//! ```text
//! relay-send (client -> relay): [0x01][destination NodeId, 32 bytes][inner QUIC packet]
//! relay-recv (relay -> client): [0x02][source NodeId, 32 bytes][inner QUIC packet]
//! ```
//!
//! The inner packet is one QUIC packet of the end-to-end connection between
//! the two clients, already encrypted by them: a relay never sees plaintext.
//! Its first byte is a QUIC first byte (`>= 0x40`), and it is at most
//! [`MAX_PACKET`] bytes so that a frame ([`HEADER_LEN`] more) fits a UDP
//! datagram on a 1500-byte MTU IPv4 path (1472 bytes of payload).
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
/// Bytes before the inner packet: type byte and NodeId.
pub const HEADER_LEN: usize = 33;
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
    /// A frame to emit.
    pub fn new(kind: RelayFrameKind, peer: &NodeId, packet: &'a [u8]) -> Self {
        Self {
            kind,
            peer: *peer.as_bytes(),
            packet,
        }
    }

    /// Parses one datagram.
    pub fn parse(data: &'a [u8]) -> Result<Self, RelayFrameError> {
        let first = *data.first().ok_or(RelayFrameError::Empty)?;
        let kind = match first {
            RELAY_SEND => RelayFrameKind::Send,
            RELAY_RECV => RelayFrameKind::Recv,
            other => return Err(RelayFrameError::UnknownType(other)),
        };
        let (Some(id), Some(packet)) = (data.get(1..HEADER_LEN), data.get(HEADER_LEN..)) else {
            return Err(RelayFrameError::Truncated(data.len()));
        };
        let peer: [u8; 32] = id
            .try_into()
            .map_err(|_| RelayFrameError::Truncated(data.len()))?;
        check_packet(packet)?;
        Ok(Self { kind, peer, packet })
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
        dst[0] = self.kind.type_byte();
        dst[1..HEADER_LEN].copy_from_slice(&self.peer);
        dst[HEADER_LEN..].copy_from_slice(self.packet);
        Ok(need)
    }

    /// Appends the frame to `out`.
    pub fn emit_to_vec(&self, out: &mut Vec<u8>) -> Result<(), RelayFrameError> {
        check_packet(self.packet)?;
        out.reserve(self.len());
        out.push(self.kind.type_byte());
        out.extend_from_slice(&self.peer);
        out.extend_from_slice(self.packet);
        Ok(())
    }
}

/// Appends just a header; the caller appends the inner packet (which must
/// satisfy the rules [`RelayFrame::parse`] checks).
pub fn emit_header(kind: RelayFrameKind, peer: &[u8; 32], out: &mut Vec<u8>) {
    out.push(kind.type_byte());
    out.extend_from_slice(peer);
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
        let mut buf = [0u8; 64];
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
        assert_eq!(&v[1..], &buf[1..n]);
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
            RelayFrame::parse(&[0x01; 33]),
            Err(RelayFrameError::EmptyPacket)
        );
        assert_eq!(
            RelayFrame::parse(&[0x01; 34]),
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
        bad.extend([0u8; 31]);
        bad.push(0x40);
        let frame = RelayFrame::parse(&bad).unwrap();
        assert_eq!(frame.peer_id(), Err(RelayFrameError::InvalidNodeId));
        let id = SecretKey::generate().node_id();
        let small = RelayFrame::new(RelayFrameKind::Send, &id, &[0x40; 10]).emit(&mut [0u8; 40]);
        assert_eq!(
            small,
            Err(RelayFrameError::BufferTooSmall { need: 43, have: 40 })
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
