//! The snow handshake state, the CRYPTO-stream framing of Noise messages and
//! the handshake payload codec.
//!
//! Each side sends exactly one Noise message in the CRYPTO stream, framed as
//! `[mode u8][length u16 BE][noise message]`. The mode byte says whether the
//! sender runs plain IK (`0x01`) or IKpsk2 with a network key (`0x02`), so a
//! mismatch can be reported precisely instead of as a failed decryption.
//!
//! The Noise payloads are `[version u8 = 1][node_id 32 (message 1 only)]
//! [QUIC transport parameters]`. The initiator sends its ed25519 NodeId
//! because an X25519 key cannot be mapped back to an ed25519 key; the
//! responder checks that the NodeId's X25519 form equals the Noise static
//! key it authenticated.

use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::Side;
use relay_proto::{NetworkKey, NodeId};
use snow::params::NoiseParams;
use snow::{Builder, HandshakeState};
use thiserror::Error;

use super::NoiseConfig;

/// The largest Noise message (Noise spec §3).
pub(crate) const MAX_NOISE_MSG: usize = 65535;
/// Frame header: mode byte + 16-bit length.
const FRAME_HEADER: usize = 3;
/// Version of the handshake payload layout: 2 adds the packet suite byte
/// after the version. Version 1 (no suite byte, ChaCha20-Poly1305 only) is
/// still read.
pub const PAYLOAD_VERSION: u8 = 2;
/// The payload layout without a suite byte.
const PAYLOAD_VERSION_1: u8 = 1;
/// The suite set a version-1 payload stands for: ChaCha20-Poly1305.
const SUITES_V1: u8 = 0x01;
/// Length of the NodeId carried in message 1.
const NODE_ID_LEN: usize = 32;
/// Domain separation for the Noise prologue; the QUIC version is appended.
const PROLOGUE: &[u8] = b"relay-node noise-in-quic v1";

/// Which Noise pattern a side runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `Noise_IK_25519_ChaChaPoly_BLAKE2s`.
    Ik,
    /// `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s`, psk = network key.
    IkPsk2,
}

impl Mode {
    /// The mode a config runs.
    pub(crate) fn of(network_key: Option<&NetworkKey>) -> Self {
        if network_key.is_some() {
            Self::IkPsk2
        } else {
            Self::Ik
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            Self::Ik => "Noise_IK_25519_ChaChaPoly_BLAKE2s",
            Self::IkPsk2 => "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s",
        }
    }

    fn to_byte(self) -> u8 {
        match self {
            Self::Ik => 0x01,
            Self::IkPsk2 => 0x02,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0x01 => Some(Self::Ik),
            0x02 => Some(Self::IkPsk2),
            _ => None,
        }
    }
}

fn prologue(version: u32) -> Vec<u8> {
    let mut p = PROLOGUE.to_vec();
    p.extend_from_slice(&version.to_be_bytes());
    p
}

/// Builds the snow state for our side. `remote_static` is required for the
/// initiator (IK) and ignored for the responder.
pub(crate) fn build_state(
    config: &NoiseConfig,
    version: u32,
    remote_static: Option<&[u8; 32]>,
) -> Result<HandshakeState, snow::Error> {
    let mode = Mode::of(config.network_key.as_ref());
    let params: NoiseParams = mode.pattern().parse()?;
    let local = config.secret_key.to_x25519_secret();
    let prologue = prologue(version);
    let mut builder = Builder::new(params)
        .local_private_key(&local)?
        .prologue(&prologue)?;
    if let Some(key) = config.network_key.as_ref() {
        builder = builder.psk(2, key.as_bytes())?;
    }
    match remote_static {
        Some(rs) => builder.remote_public_key(rs)?.build_initiator(),
        None => builder.build_responder(),
    }
}

/// Appends one framed Noise message to `out`.
pub(crate) fn encode_frame(mode: Mode, msg: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    let len = u16::try_from(msg.len()).map_err(|_| FrameError::TooLong)?;
    out.push(mode.to_byte());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    Ok(())
}

/// CRYPTO stream framing errors.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// A message longer than Noise allows.
    #[error("frame: message too long")]
    TooLong,
    /// An unknown mode byte.
    #[error("frame: unknown mode {0:#04x}")]
    UnknownMode(u8),
    /// Bytes after the one message this direction carries.
    #[error("frame: unexpected data after the handshake message")]
    Trailing,
}

/// One received Noise message.
#[derive(Debug)]
pub(crate) struct Frame {
    /// The sender's mode.
    pub(crate) mode: Mode,
    /// The Noise message.
    pub(crate) msg: Vec<u8>,
}

/// Reassembles the single Noise message of one direction from CRYPTO data.
/// Never buffers more than one maximal frame.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    done: bool,
}

impl FrameReader {
    /// Feeds in-order CRYPTO bytes; returns the message once complete.
    pub(crate) fn push(&mut self, data: &[u8]) -> Result<Option<Frame>, FrameError> {
        if data.is_empty() {
            return Ok(None);
        }
        if self.done {
            return Err(FrameError::Trailing);
        }
        if self.buf.len().saturating_add(data.len()) > FRAME_HEADER + MAX_NOISE_MSG {
            return Err(FrameError::Trailing);
        }
        self.buf.extend_from_slice(data);
        let Some(&mode) = self.buf.first() else {
            return Ok(None);
        };
        let mode = Mode::from_byte(mode).ok_or(FrameError::UnknownMode(mode))?;
        let (Some(&hi), Some(&lo)) = (self.buf.get(1), self.buf.get(2)) else {
            return Ok(None);
        };
        let total = FRAME_HEADER + usize::from(u16::from_be_bytes([hi, lo]));
        if self.buf.len() < total {
            return Ok(None);
        }
        if self.buf.len() > total {
            return Err(FrameError::Trailing);
        }
        self.done = true;
        let mut msg = std::mem::take(&mut self.buf);
        msg.drain(..FRAME_HEADER);
        Ok(Some(Frame { mode, msg }))
    }
}

/// Which handshake message a payload belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// Message 1 (initiator → responder): carries the initiator's NodeId.
    Initiator,
    /// Message 2 (responder → initiator).
    Responder,
}

/// A decoded handshake payload.
#[derive(Debug)]
pub struct HandshakePayload {
    /// The initiator's claimed NodeId (message 1 only; still to be checked
    /// against the Noise static key).
    pub node_id: Option<NodeId>,
    /// Packet suites as bits of `PacketSuite::bit`: those the initiator
    /// accepts for 1-RTT packets (message 1), or the one the responder
    /// chose (message 2).
    pub suites: u8,
    /// The sender's QUIC transport parameters.
    pub params: TransportParameters,
}

/// Handshake payload decoding errors.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PayloadError {
    /// No bytes at all.
    #[error("payload: empty")]
    Empty,
    /// A payload layout we do not know.
    #[error("payload: unknown version {0}")]
    Version(u8),
    /// Message 1 ended inside the suite byte or the NodeId.
    #[error("payload: truncated")]
    Truncated,
    /// The NodeId bytes are not an ed25519 public key.
    #[error("payload: invalid node id")]
    InvalidNodeId,
    /// The transport parameters did not decode.
    #[error("payload: transport parameters: {0}")]
    Params(#[from] quinn_proto::transport_parameters::Error),
}

/// Encodes a handshake payload (`node_id` only for message 1).
pub(crate) fn encode_payload(
    node_id: Option<&NodeId>,
    suites: u8,
    params: &TransportParameters,
) -> Vec<u8> {
    let mut out = vec![PAYLOAD_VERSION, suites];
    if let Some(id) = node_id {
        out.extend_from_slice(id.as_bytes());
    }
    params.write(&mut out);
    out
}

/// Decodes a handshake payload. Total on any input: never panics.
pub fn decode_payload(kind: PayloadKind, bytes: &[u8]) -> Result<HandshakePayload, PayloadError> {
    let (&version, rest) = bytes.split_first().ok_or(PayloadError::Empty)?;
    let (suites, rest) = match version {
        PAYLOAD_VERSION => {
            let (&suites, rest) = rest.split_first().ok_or(PayloadError::Truncated)?;
            (suites, rest)
        }
        PAYLOAD_VERSION_1 => (SUITES_V1, rest),
        other => return Err(PayloadError::Version(other)),
    };
    let (node_id, rest, reader) = match kind {
        PayloadKind::Initiator => {
            let (id, rest) = rest
                .split_first_chunk::<NODE_ID_LEN>()
                .ok_or(PayloadError::Truncated)?;
            let id = NodeId::from_bytes(id).map_err(|_| PayloadError::InvalidNodeId)?;
            (Some(id), rest, Side::Server)
        }
        PayloadKind::Responder => (None, rest, Side::Client),
    };
    let params = TransportParameters::read(reader, &mut &rest[..])?;
    Ok(HandshakePayload {
        node_id,
        suites,
        params,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use relay_proto::SecretKey;

    /// Non-default parameters: initial_max_data = 65536.
    fn params_bytes() -> TransportParameters {
        let raw = [0x04u8, 0x04, 0x80, 0x01, 0x00, 0x00];
        TransportParameters::read(Side::Server, &mut &raw[..]).unwrap()
    }

    #[test]
    fn payload_roundtrip() {
        let id = SecretKey::generate().node_id();
        let p = params_bytes();
        let enc = encode_payload(Some(&id), 0x03, &p);
        let dec = decode_payload(PayloadKind::Initiator, &enc).unwrap();
        assert_eq!(dec.node_id, Some(id));
        assert_eq!(dec.suites, 0x03);
        assert_eq!(dec.params, p);

        let enc = encode_payload(None, 0x02, &p);
        let dec = decode_payload(PayloadKind::Responder, &enc).unwrap();
        assert_eq!(dec.node_id, None);
        assert_eq!(dec.suites, 0x02);
        assert_eq!(dec.params, p);

        // Version 1 (no suite byte) reads as ChaCha20-Poly1305 only.
        let mut v1 = vec![PAYLOAD_VERSION_1];
        v1.extend_from_slice(&enc[2..]);
        let dec = decode_payload(PayloadKind::Responder, &v1).unwrap();
        assert_eq!(dec.suites, SUITES_V1);
        assert_eq!(dec.params, p);
    }

    #[test]
    fn payload_truncation_errors() {
        let id = SecretKey::generate().node_id();
        let enc = encode_payload(Some(&id), 0x01, &params_bytes());
        assert_eq!(
            decode_payload(PayloadKind::Initiator, &[]).unwrap_err(),
            PayloadError::Empty
        );
        assert_eq!(
            decode_payload(PayloadKind::Initiator, &[9]).unwrap_err(),
            PayloadError::Version(9)
        );
        for cut in 1..=NODE_ID_LEN + 1 {
            assert_eq!(
                decode_payload(PayloadKind::Initiator, &enc[..cut]).unwrap_err(),
                PayloadError::Truncated
            );
        }
        // Any truncation never panics, whatever it yields.
        for cut in 0..enc.len() {
            let _ = decode_payload(PayloadKind::Initiator, &enc[..cut]);
            let _ = decode_payload(PayloadKind::Responder, &enc[..cut]);
        }
    }

    #[test]
    fn garbage_params_error() {
        let mut enc = vec![PAYLOAD_VERSION, 0x01];
        enc.extend_from_slice(&[0x00, 0x40]); // id 0, length varint truncated
        assert!(decode_payload(PayloadKind::Responder, &enc).is_err());
    }

    #[test]
    fn frame_reader_reassembles_and_bounds() {
        let mut out = Vec::new();
        encode_frame(Mode::Ik, b"hello", &mut out).unwrap();
        let mut r = FrameReader::default();
        assert!(r.push(&out[..2]).unwrap().is_none());
        assert!(r.push(&out[2..4]).unwrap().is_none());
        let f = r.push(&out[4..]).unwrap().unwrap();
        assert_eq!(f.mode, Mode::Ik);
        assert_eq!(f.msg, b"hello");
        assert_eq!(r.push(b"x").unwrap_err(), FrameError::Trailing);

        let mut r = FrameReader::default();
        assert_eq!(r.push(&[7]).unwrap_err(), FrameError::UnknownMode(7));

        let mut r = FrameReader::default();
        let mut long = out.clone();
        long.push(0);
        assert_eq!(r.push(&long).unwrap_err(), FrameError::Trailing);

        let mut r = FrameReader::default();
        let huge = vec![1u8; FRAME_HEADER + MAX_NOISE_MSG + 1];
        assert_eq!(r.push(&huge).unwrap_err(), FrameError::Trailing);
        assert!(encode_frame(Mode::Ik, &huge, &mut Vec::new()).is_err());
    }
}
